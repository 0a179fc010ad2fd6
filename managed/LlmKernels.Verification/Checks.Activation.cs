using LlmKernels.Interop;
using LlmKernels.Verification.Oracle;

namespace LlmKernels.Verification;

/// <summary>One gated-activation case. Fused: llmk_gated_activation on [rows, 2d]; otherwise the split form, with
/// gate and up as strided column slices of one [rows, 2d + Padding] buffer when Strided, and the output written
/// over gate when InPlace.</summary>
public sealed record ActivationCase(string Name, LlmkActivation Activation, int Rows, int D, bool Fused = true,
                                    bool Strided = false, bool InPlace = false, int Padding = 0)
{
    public ErrorStats Run(Context ctx, LlmkDtype dtype, Random rng)
    {
        var owned = new List<Tensor>();
        Tensor Own(Tensor t)
        {
            owned.Add(t);
            return t;
        }
        try
        {
            // Gates over [-6, 6] cover both tails of the nonlinearity; up in [-2, 2].
            var values = RandomData.Floats(rng, Rows * (2 * D + Padding), 2);
            for (int r = 0; r < Rows; r++)
                for (int j = 0; j < D; j++)
                    values[r * (2 * D + Padding) + j] *= 3;
            var buffer = Own(ctx.FromFloats(values, dtype, Rows, 2 * D + Padding));
            Tensor gate, up;
            if (Fused || Strided)
            {
                gate = Own(buffer.Slice(1, 0, D));
                up = Own(buffer.Slice(1, D, D));
            }
            else
            {
                // The dense split form takes the same values, copied out into tensors of their own.
                gate = Own(ctx.FromFloats(Columns(values, 0), dtype, Rows, D));
                up = Own(ctx.FromFloats(Columns(values, D), dtype, Rows, D));
            }
            var gateIn = RandomData.ToDoubles(gate.ToFloatArray());
            var upIn = RandomData.ToDoubles(up.ToFloatArray());
            var output = InPlace ? gate : Own(ctx.Allocate(dtype, Rows, D));
            if (!InPlace)
                output.Poison();

            if (Fused)
                Kernels.GatedActivation(ctx, Activation, Padding == 0 ? buffer : Own(buffer.Slice(1, 0, 2 * D)), output);
            else
                Kernels.GatedActivationSplit(ctx, Activation, gate, up, output);
            return Errors.Compare(ActivationOracle.Gated(Activation, gateIn, upIn), output.ToFloatArray());
        }
        finally
        {
            foreach (var t in owned)
                t.Dispose();
        }
    }

    private float[] Columns(float[] values, int start)
    {
        var result = new float[Rows * D];
        for (int r = 0; r < Rows; r++)
            Array.Copy(values, r * (2 * D + Padding) + start, result, r * D, D);
        return result;
    }

    public override string ToString() => Name;
}

public static partial class Checks
{
    /// <summary>Both activations, fused and split, ragged d (1, 7, 4095, 5120) and rows (1..37), strided halves,
    /// in place.</summary>
    public static IEnumerable<ActivationCase> ActivationCases()
    {
        foreach (var act in new[] { LlmkActivation.Silu, LlmkActivation.GeluTanh })
        {
            string name = act == LlmkActivation.Silu ? "silu" : "gelu_tanh";
            yield return new($"{name} fused d 1, 37 rows", act, 37, 1);
            yield return new($"{name} fused d 7, 5 rows", act, 5, 7);
            yield return new($"{name} fused d 4095, 3 rows", act, 3, 4095);
            yield return new($"{name} fused d 5120, 1 row, padded rows", act, 1, 5120, Padding: 16);
            yield return new($"{name} split d 96, 9 rows", act, 9, 96, Fused: false);
            yield return new($"{name} split strided d 33, 12 rows", act, 12, 33, Fused: false, Strided: true, Padding: 5);
            yield return new($"{name} split in place d 64, 4 rows", act, 4, 64, Fused: false, InPlace: true);
        }
    }

    public static IEnumerable<KernelCheck> ActivationChecks() =>
        from c in ActivationCases()
        from dtype in new[] { LlmkDtype.F32, LlmkDtype.F16, LlmkDtype.Bf16 }
        select (KernelCheck)new DelegateCheck(c.Fused ? "gated_activation" : "gated_activation_split", c.Name, dtype,
                                              (check, ctx, rng) => CheckResult.Of(check, c.Run(ctx, dtype, rng)));
}
