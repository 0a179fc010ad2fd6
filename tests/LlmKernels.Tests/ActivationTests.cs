namespace LlmKernels.Tests;

/// <summary>llmk_gated_activation and llmk_gated_activation_split: the shared checks against the double-precision
/// oracle, the fused form against the split one, the tails of the nonlinearities, and every validation.</summary>
public class ActivationTests : KernelFamilyTests<ActivationTests>, IKernelFamily<ActivationTests>
{
    public static IEnumerable<KernelCheck> CpuChecks() => Checks.ActivationChecks();

    // ---- properties ---------------------------------------------------------------------------------------

    /// <summary>[rows, 2d] is exactly the split form on its two halves.</summary>
    [TestCase(LlmkActivation.Silu)]
    [TestCase(LlmkActivation.GeluTanh)]
    public void FusedEqualsSplit(LlmkActivation activation)
    {
        var rng = TestSupport.Rng($"{nameof(FusedEqualsSplit)} {activation}");
        const int rows = 6, d = 45;
        using var gateUp = Cpu.FromFloats(RandomData.Floats(rng, rows * 2 * d, 5), LlmkDtype.Bf16, rows, 2 * d);
        using var gate = gateUp.Slice(1, 0, d);
        using var up = gateUp.Slice(1, d, d);
        using var fused = Cpu.Allocate(LlmkDtype.Bf16, rows, d);
        using var split = Cpu.Allocate(LlmkDtype.Bf16, rows, d);
        fused.Poison();
        split.Poison();
        Kernels.GatedActivation(Cpu, activation, gateUp, fused);
        Kernels.GatedActivationSplit(Cpu, activation, gate, up, split);
        Assert.That(fused.ToFloatArray(), Is.EqualTo(split.ToFloatArray()));
    }

    /// <summary>Far tails: exp overflows in f32 for large negative gates, yet the result is the limit (0 or the gate
    /// times up), never NaN.</summary>
    [TestCase(LlmkActivation.Silu)]
    [TestCase(LlmkActivation.GeluTanh)]
    public void TailsAreFinite(LlmkActivation activation)
    {
        float[] gates = [-1e30f, -1e4f, -100f, -88.8f, -20f, 0f, 20f, 88.8f, 100f, 1e4f, 1e30f];
        float[] ups = gates.Select((_, i) => i % 2 == 0 ? 1f : -0.5f).ToArray();
        using var gate = Cpu.FromFloats(gates, LlmkDtype.F32, 1, gates.Length);
        using var up = Cpu.FromFloats(ups, LlmkDtype.F32, 1, gates.Length);
        using var output = Cpu.Allocate(LlmkDtype.F32, 1, gates.Length);
        output.Poison();
        Kernels.GatedActivationSplit(Cpu, activation, gate, up, output);
        var actual = output.ToFloatArray();
        Assert.Multiple(() =>
        {
            for (int i = 0; i < gates.Length; i++)
            {
                double expected = ActivationOracle.Apply(activation, gates[i]) * ups[i];
                Assert.That(actual[i], Is.EqualTo(expected).Within(1e-4).Percent.Or.EqualTo(expected).Within(1e-30), $"gate {gates[i]}");
            }
        });
    }

    // ---- validation ---------------------------------------------------------------------------------------

    [Test]
    public void RejectsBadArguments()
    {
        const int rows = 3, d = 8;
        var values = RandomData.Floats(TestSupport.Rng(), rows * 2 * d);
        using var gateUp = Cpu.FromFloats(values, LlmkDtype.F16, rows, 2 * d);
        using var gate = gateUp.Slice(1, 0, d);
        using var up = gateUp.Slice(1, d, d);
        using var output = Cpu.Allocate(LlmkDtype.F16, rows, d);
        const string fused = "llmk_gated_activation", split = "llmk_gated_activation_split";

        void Fused(LlmkStatus status, TestDelegate call, string mention) => TestSupport.ExpectStatus(status, call, fused, mention);
        void Split(LlmkStatus status, TestDelegate call, string mention) => TestSupport.ExpectStatus(status, call, split, mention);

        foreach (var bad in new[] { (LlmkActivation)(-1), LlmkActivation.Count })
        {
            Fused(LlmkStatus.InvalidArgument, () => Kernels.GatedActivation(Cpu, bad, gateUp, output), "activation");
            Split(LlmkStatus.InvalidArgument, () => Kernels.GatedActivationSplit(Cpu, bad, gate, up, output), "activation");
        }
        using (var odd = gateUp.Slice(1, 0, 2 * d - 1))
            Fused(LlmkStatus.ShapeMismatch, () => Kernels.GatedActivation(Cpu, LlmkActivation.Silu, odd, output), "gate_up");
        using (var flat = Cpu.Allocate(LlmkDtype.F16, rows * 2 * d))
            Fused(LlmkStatus.ShapeMismatch, () => Kernels.GatedActivation(Cpu, LlmkActivation.Silu, flat, output), "gate_up");
        using (var ints = Cpu.Allocate(LlmkDtype.I32, rows, 2 * d))
            Fused(LlmkStatus.DtypeMismatch, () => Kernels.GatedActivation(Cpu, LlmkActivation.Silu, ints, output), "gate_up");
        using (var wide = Cpu.Allocate(LlmkDtype.F16, rows, 2 * d))
            Fused(LlmkStatus.ShapeMismatch, () => Kernels.GatedActivation(Cpu, LlmkActivation.Silu, gateUp, wide), "out");
        using (var moreRows = Cpu.Allocate(LlmkDtype.F16, rows + 1, d))
            Fused(LlmkStatus.ShapeMismatch, () => Kernels.GatedActivation(Cpu, LlmkActivation.Silu, gateUp, moreRows), "out");
        using (var f32 = Cpu.Allocate(LlmkDtype.F32, rows, d))
        {
            Fused(LlmkStatus.DtypeMismatch, () => Kernels.GatedActivation(Cpu, LlmkActivation.Silu, gateUp, f32), "out");
            Split(LlmkStatus.DtypeMismatch, () => Kernels.GatedActivationSplit(Cpu, LlmkActivation.Silu, gate, up, f32), "out");
        }
        // the output over gate_up's own halves
        Fused(LlmkStatus.InvalidArgument, () => Kernels.GatedActivation(Cpu, LlmkActivation.Silu, gateUp, up), "out");
        using (var broadcast = Tensor.FromPointer(Cpu, output.DataPointer, LlmkDtype.F16, [rows, d], output, [0, 1]))
        {
            Fused(LlmkStatus.BadStride, () => Kernels.GatedActivation(Cpu, LlmkActivation.Silu, gateUp, broadcast), "out");
            Split(LlmkStatus.BadStride, () => Kernels.GatedActivationSplit(Cpu, LlmkActivation.Silu, gate, up, broadcast), "out");
        }

        using (var shortUp = up.Slice(1, 0, d - 1))
            Split(LlmkStatus.ShapeMismatch, () => Kernels.GatedActivationSplit(Cpu, LlmkActivation.Silu, gate, shortUp, output), "up");
        using (var f32Up = Cpu.Allocate(LlmkDtype.F32, rows, d))
            Split(LlmkStatus.DtypeMismatch, () => Kernels.GatedActivationSplit(Cpu, LlmkActivation.Silu, gate, f32Up, output), "up");
        using (var everyOther = Tensor.FromPointer(Cpu, gateUp.DataPointer, LlmkDtype.F16, [rows, d], gateUp, [2 * d, 2]))
            Split(LlmkStatus.BadStride, () => Kernels.GatedActivationSplit(Cpu, LlmkActivation.Silu, everyOther, up, output), "gate");
        // out half over gate, half over up: neither exactly
        using (var straddling = gateUp.Slice(1, d / 2, d))
            Split(LlmkStatus.InvalidArgument, () => Kernels.GatedActivationSplit(Cpu, LlmkActivation.Silu, gate, up, straddling), "out");

        Split(LlmkStatus.NullPointer, () => RawSplit(0, gate.Native, up.Native, output.Native), "context");
        Split(LlmkStatus.NullPointer, () => RawSplit(Cpu.Pointer, gate.Native, null, output.Native), "up");
        Fused(LlmkStatus.NullPointer, () => RawFused(Cpu.Pointer, null, output.Native), "gate_up");
        Fused(LlmkStatus.NullPointer, () => RawFused(Cpu.Pointer, gateUp.Native, null), "out");
        var cudaGateUp = gateUp.Native;
        cudaGateUp.device_type = LlmkDeviceType.Cuda;
        Fused(LlmkStatus.WrongDevice, () => RawFused(Cpu.Pointer, cudaGateUp, output.Native), "gate_up");

        Assert.That(gateUp.ToFloatArray(), Is.EqualTo(values.Select(v => (float)(Half)v).ToArray()), "gate_up is untouched by every rejected call");
    }

    /// <summary>The SiLU entry points on raw views, null standing for a NULL pointer.</summary>
    private static unsafe void RawSplit(nint ctx, LlmkTensor? gate, LlmkTensor? up, LlmkTensor? output)
    {
        LlmkTensor gs = gate ?? default, us = up ?? default, os = output ?? default;
        Native.Check(NativeMethods.llmk_gated_activation_split(ctx, (int)LlmkActivation.Silu, gate is null ? null : &gs,
                                                               up is null ? null : &us, output is null ? null : &os));
    }

    private static unsafe void RawFused(nint ctx, LlmkTensor? gateUp, LlmkTensor? output)
    {
        LlmkTensor gs = gateUp ?? default, os = output ?? default;
        Native.Check(NativeMethods.llmk_gated_activation(ctx, (int)LlmkActivation.Silu, gateUp is null ? null : &gs,
                                                         output is null ? null : &os));
    }
}
