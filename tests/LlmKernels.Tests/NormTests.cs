namespace LlmKernels.Tests;

/// <summary>llmk_rms_norm and llmk_add_rms_norm: the shared checks against the double-precision oracle, the
/// in-place residual, and every validation.</summary>
public class NormTests : KernelFamilyTests<NormTests>, IKernelFamily<NormTests>
{
    public static IEnumerable<KernelCheck> CpuChecks() => Checks.NormChecks();

    // ---- properties ---------------------------------------------------------------------------------------

    /// <summary>The fused kernel is exactly residual += x (rounded to the dtype, as the unfused add stores it)
    /// followed by rms_norm of that residual: bit for bit.</summary>
    [TestCase(LlmkDtype.F32)]
    [TestCase(LlmkDtype.F16)]
    [TestCase(LlmkDtype.Bf16)]
    public void AddRmsNormUpdatesResidualInPlace(LlmkDtype dtype)
    {
        var rng = TestSupport.Rng($"{nameof(AddRmsNormUpdatesResidualInPlace)} {dtype}");
        const int rows = 11, hidden = 300;
        using var x = Cpu.FromFloats(RandomData.Floats(rng, rows * hidden, 4), dtype, rows, hidden);
        using var residual = Cpu.FromFloats(RandomData.Floats(rng, rows * hidden, 4), dtype, rows, hidden);
        using var weight = Cpu.FromFloats(RandomData.Floats(rng, hidden), LlmkDtype.F32, hidden);
        using var fused = Cpu.Allocate(dtype, rows, hidden);
        using var unfused = Cpu.Allocate(dtype, rows, hidden);
        fused.Poison();
        unfused.Poison();
        var xIn = x.ToFloatArray();
        var residualIn = residual.ToFloatArray();

        Kernels.AddRmsNorm(Cpu, x, residual, weight, 1e-5f, fused);
        var updated = residual.ToFloatArray();
        Kernels.RmsNorm(Cpu, residual, weight, 1e-5f, unfused);

        var expectedResidual = xIn.Select((v, i) => (float)DtypeRounding.Round((double)v + residualIn[i], dtype)).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(updated, Is.EqualTo(expectedResidual), "residual = x + residual, rounded once to the dtype");
            Assert.That(fused.ToFloatArray(), Is.EqualTo(unfused.ToFloatArray()), "output = rms_norm(updated residual)");
            Assert.That(x.ToFloatArray(), Is.EqualTo(xIn), "x is not written");
        });
    }

    /// <summary>Gemma's flag is rms_norm with weight + 1 (the same f32 sum, so the same bits).</summary>
    [Test]
    public void GemmaFlagAddsOneToTheWeight()
    {
        var rng = TestSupport.Rng();
        const int rows = 3, hidden = 70;
        var w = RandomData.Floats(rng, hidden, 0.3f);
        using var x = Cpu.FromFloats(RandomData.Floats(rng, rows * hidden), LlmkDtype.F32, rows, hidden);
        using var weight = Cpu.FromFloats(w, LlmkDtype.F32, hidden);
        using var shifted = Cpu.FromFloats(w.Select(v => v + 1).ToArray(), LlmkDtype.F32, hidden);
        using var gemma = Cpu.Allocate(LlmkDtype.F32, rows, hidden);
        using var plain = Cpu.Allocate(LlmkDtype.F32, rows, hidden);
        Kernels.RmsNorm(Cpu, x, weight, 1e-6f, LlmkNormFlags.Gemma, gemma);
        Kernels.RmsNorm(Cpu, x, shifted, 1e-6f, plain);
        Assert.That(gemma.ToFloatArray(), Is.EqualTo(plain.ToFloatArray()));
    }

    /// <summary>Thread count does not change a bit (enough rows for the fast path to split them over threads).</summary>
    [Test]
    public void SameBitsForAnyThreadCount()
    {
        var rng = TestSupport.Rng();
        var values = RandomData.Floats(rng, 97 * 513);
        var w = RandomData.Floats(rng, 513);
        float[] Run(int threads)
        {
            using var ctx = Context.CreateCpu(threads);
            using var x = ctx.FromFloats(values, LlmkDtype.F16, 97, 513);
            using var weight = ctx.FromFloats(w, LlmkDtype.F16, 513);
            Kernels.RmsNorm(ctx, x, weight, 1e-6f, x);
            return x.ToFloatArray();
        }
        Assert.That(Run(2), Is.EqualTo(Run(1)));
    }

    // ---- validation ---------------------------------------------------------------------------------------

    [Test]
    public void RejectsBadArguments()
    {
        const int rows = 4, hidden = 16;
        var xValues = RandomData.Floats(TestSupport.Rng(), rows * hidden);
        using var x = Cpu.FromFloats(xValues, LlmkDtype.F32, rows, hidden);
        using var weight = Cpu.FromFloats(RandomData.Floats(TestSupport.Rng(), hidden), LlmkDtype.Bf16, hidden);
        using var output = Cpu.Allocate(LlmkDtype.F32, rows, hidden);
        using var residual = Cpu.Allocate(LlmkDtype.F32, rows, hidden);
        residual.Fill(1);
        const string fn = "llmk_rms_norm", fnAdd = "llmk_add_rms_norm";

        void Both(LlmkStatus status, Tensor xx, Tensor w, float eps, Tensor o, string mention, LlmkNormFlags flags = LlmkNormFlags.None)
        {
            TestSupport.ExpectStatus(status, () => Kernels.RmsNorm(Cpu, xx, w, eps, flags, o), fn, mention);
            TestSupport.ExpectStatus(status, () => Kernels.AddRmsNorm(Cpu, xx, residual, w, eps, flags, o), fnAdd, mention);
        }

        using (var flat = x.Reshape(rows * hidden))
            Both(LlmkStatus.ShapeMismatch, flat, weight, 1e-6f, output, "x");
        using (var ints = Cpu.Allocate(LlmkDtype.I32, rows, hidden))
            Both(LlmkStatus.DtypeMismatch, ints, weight, 1e-6f, output, "x");
        using (var shortWeight = Cpu.Allocate(LlmkDtype.F32, hidden - 1))
            Both(LlmkStatus.ShapeMismatch, x, shortWeight, 1e-6f, output, "weight");
        using (var intWeight = Cpu.Allocate(LlmkDtype.I64, hidden))
            Both(LlmkStatus.DtypeMismatch, x, intWeight, 1e-6f, output, "weight");
        using (var fewerRows = Cpu.Allocate(LlmkDtype.F32, rows - 1, hidden))
            Both(LlmkStatus.ShapeMismatch, x, weight, 1e-6f, fewerRows, "out");
        using (var halfOutput = Cpu.Allocate(LlmkDtype.F16, rows, hidden))
            Both(LlmkStatus.DtypeMismatch, x, weight, 1e-6f, halfOutput, "out");
        foreach (float eps in new[] { 0f, -1e-6f, float.NaN, float.PositiveInfinity })
            Both(LlmkStatus.InvalidArgument, x, weight, eps, output, "eps");
        Both(LlmkStatus.InvalidArgument, x, weight, 1e-6f, output, "flags", (LlmkNormFlags)2);
        // out one element past x: overlaps without being x
        using (var shifted = Tensor.FromPointer(Cpu, x.DataPointer + 4, LlmkDtype.F32, [rows - 1, hidden], x))
        using (var xHead = x.Slice(0, 0, rows - 1))
            TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Kernels.RmsNorm(Cpu, xHead, weight, 1e-6f, shifted), fn, "out");
        // every row written to the same place
        using (var broadcast = Tensor.FromPointer(Cpu, output.DataPointer, LlmkDtype.F32, [rows, hidden], output, [0, 1]))
            Both(LlmkStatus.BadStride, x, weight, 1e-6f, broadcast, "out");
        using (var strided = Tensor.FromPointer(Cpu, output.DataPointer, LlmkDtype.F32, [rows, hidden / 2], output, [hidden, 2]))
        using (var xHalf = x.Slice(1, 0, hidden / 2))
        using (var wHalf = weight.Slice(0, 0, hidden / 2))
            Both(LlmkStatus.BadStride, xHalf, wHalf, 1e-6f, strided, "out");
        // the weight inside the output
        using (var f32Weight = output.Select(0, 1))
            Both(LlmkStatus.InvalidArgument, x, f32Weight, 1e-6f, output, "weight");

        // residual-specific
        void Add(LlmkStatus status, Tensor r, Tensor o, string mention) =>
            TestSupport.ExpectStatus(status, () => Kernels.AddRmsNorm(Cpu, x, r, weight, 1e-6f, o), fnAdd, mention);
        using (var wideResidual = Cpu.Allocate(LlmkDtype.F32, rows, hidden + 1))
            Add(LlmkStatus.ShapeMismatch, wideResidual, output, "residual");
        using (var halfResidual = Cpu.Allocate(LlmkDtype.F16, rows, hidden))
            Add(LlmkStatus.DtypeMismatch, halfResidual, output, "residual");
        Add(LlmkStatus.InvalidArgument, x, output, "residual");      // residual is x
        Add(LlmkStatus.InvalidArgument, residual, residual, "residual"); // out is residual

        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => RawRmsNorm(0, x.Native, weight.Native, output.Native), fn, "context");
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => RawRmsNorm(Cpu.Pointer, null, weight.Native, output.Native), fn, "x");
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => RawRmsNorm(Cpu.Pointer, x.Native, null, output.Native), fn, "weight");
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => RawRmsNorm(Cpu.Pointer, x.Native, weight.Native, null), fn, "out");
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => RawAddRmsNorm(Cpu.Pointer, x.Native, null, weight.Native, output.Native), fnAdd, "residual");
        var cudaOutput = output.Native;
        cudaOutput.device_type = LlmkDeviceType.Cuda;
        TestSupport.ExpectStatus(LlmkStatus.WrongDevice, () => RawAddRmsNorm(Cpu.Pointer, x.Native, residual.Native, weight.Native, cudaOutput), fnAdd, "out");

        Assert.Multiple(() =>
        {
            Assert.That(x.ToFloatArray(), Is.EqualTo(xValues), "x is untouched by every rejected call");
            Assert.That(residual.ToFloatArray(), Is.All.EqualTo(1f), "residual is untouched by every rejected call");
        });
    }

    /// <summary>llmk_rms_norm / llmk_add_rms_norm on raw views (eps 1e-6, no flags), null standing for NULL.</summary>
    private static unsafe void RawRmsNorm(nint ctx, LlmkTensor? x, LlmkTensor? weight, LlmkTensor? output)
    {
        LlmkTensor xs = x ?? default, ws = weight ?? default, os = output ?? default;
        Native.Check(NativeMethods.llmk_rms_norm(ctx, x is null ? null : &xs, weight is null ? null : &ws, 1e-6f, 0,
                                                 output is null ? null : &os));
    }

    private static unsafe void RawAddRmsNorm(nint ctx, LlmkTensor? x, LlmkTensor? residual, LlmkTensor? weight, LlmkTensor? output)
    {
        LlmkTensor xs = x ?? default, rs = residual ?? default, ws = weight ?? default, os = output ?? default;
        Native.Check(NativeMethods.llmk_add_rms_norm(ctx, x is null ? null : &xs, residual is null ? null : &rs,
                                                     weight is null ? null : &ws, 1e-6f, 0, output is null ? null : &os));
    }
}
