using LlmKernels.Interop;
using LlmKernels.Verification.Oracle;

namespace LlmKernels.Verification;

/// <summary>One llmk_rms_norm / llmk_add_rms_norm case. WeightDType null: the activations' dtype. InPlace writes the
/// output over x; RowPadding reads x from a wider buffer (row stride hidden + padding).</summary>
public sealed record NormCase(string Name, int Rows, int Hidden, bool Gemma = false, bool AddResidual = false,
                              bool InPlace = false, int RowPadding = 0, LlmkDtype? WeightDType = null, float Eps = 1e-6f)
{
    public ErrorStats Run(Context ctx, LlmkDtype dtype, Random rng)
    {
        var flags = Gemma ? LlmkNormFlags.Gemma : LlmkNormFlags.None;
        // Inputs of a few units, weights around their usual scale (Gemma's are offsets from 1).
        using var xBuffer = ctx.FromFloats(RandomData.Floats(rng, Rows * (Hidden + RowPadding), 3), dtype, Rows, Hidden + RowPadding);
        using var x = xBuffer.Slice(1, 0, Hidden);
        using var weight = ctx.FromFloats(RandomData.Floats(rng, Hidden, Gemma ? 0.5f : 1.5f), WeightDType ?? dtype, Hidden);
        using var residual = ctx.FromFloats(RandomData.Floats(rng, Rows * Hidden, 3), dtype, Rows, Hidden);
        using var separateOutput = ctx.Allocate(dtype, Rows, Hidden);
        var output = InPlace ? x : separateOutput;
        var xIn = RandomData.ToDoubles(x.ToFloatArray());
        var w = RandomData.ToDoubles(weight.ToFloatArray());
        var residualIn = RandomData.ToDoubles(residual.ToFloatArray());
        if (!InPlace)
            output.Poison();

        if (AddResidual)
        {
            Kernels.AddRmsNorm(ctx, x, residual, weight, Eps, flags, output);
            var (expected, expectedResidual) = NormOracle.AddRmsNorm(xIn, residualIn, Rows, Hidden, w, Eps, Gemma, dtype);
            return ErrorStats.Worst(Errors.Compare(expected, output.ToFloatArray()),
                                    Errors.Compare(expectedResidual, residual.ToFloatArray()));
        }
        Kernels.RmsNorm(ctx, x, weight, Eps, flags, output);
        return Errors.Compare(NormOracle.RmsNorm(xIn, Rows, Hidden, w, Eps, Gemma), output.ToFloatArray());
    }

    public override string ToString() => Name;
}

public static partial class Checks
{
    /// <summary>Ragged hidden sizes (1, 7, 4095, 5120) and row counts (1..37), Gemma's (1 + w), weights in another
    /// dtype, in place, strided rows, and the fused residual add.</summary>
    public static IEnumerable<NormCase> NormCases()
    {
        yield return new("rms hidden 1, 5 rows", 5, 1);
        yield return new("rms hidden 7, 37 rows", 37, 7);
        yield return new("rms hidden 4095, 3 rows", 3, 4095);
        yield return new("rms hidden 5120, 2 rows, f32 weight", 2, 5120, WeightDType: LlmkDtype.F32);
        yield return new("rms gemma hidden 128, 9 rows, eps 1e-5", 9, 128, Gemma: true, Eps: 1e-5f);
        yield return new("rms in place hidden 96, 4 rows", 4, 96, InPlace: true);
        yield return new("rms strided rows hidden 64 (+8), 6 rows", 6, 64, RowPadding: 8);
        yield return new("add_rms hidden 7, 1 row", 1, 7, AddResidual: true);
        yield return new("add_rms hidden 4095, 3 rows, bf16 weight", 3, 4095, AddResidual: true, WeightDType: LlmkDtype.Bf16);
        yield return new("add_rms gemma hidden 5120, 2 rows", 2, 5120, Gemma: true, AddResidual: true);
        yield return new("add_rms in place strided hidden 33 (+3), 17 rows", 17, 33, AddResidual: true, InPlace: true, RowPadding: 3);
        // Enough work (32K elements or more) for the fast path to split the rows over its threads.
        yield return new("rms hidden 768, 70 rows (rows over threads)", 70, 768);
        yield return new("add_rms in place strided hidden 1000 (+4), 41 rows (rows over threads)", 41, 1000, AddResidual: true, InPlace: true, RowPadding: 4);
    }

    public static IEnumerable<KernelCheck> NormChecks() =>
        from c in NormCases()
        from dtype in new[] { LlmkDtype.F32, LlmkDtype.F16, LlmkDtype.Bf16 }
        select (KernelCheck)new DelegateCheck(c.AddResidual ? "add_rms_norm" : "rms_norm", c.Name, dtype,
                                              (check, ctx, rng) => CheckResult.Of(check, c.Run(ctx, dtype, rng)));
}
