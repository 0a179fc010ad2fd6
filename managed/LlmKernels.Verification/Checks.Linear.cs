using LlmKernels.Interop;
using LlmKernels.Verification.Oracle;

namespace LlmKernels.Verification;

/// <summary>One llmk_linear case. WeightDType / BiasDType null: the activations' dtype. RowPadding stores x and y
/// in wider buffers (row strides in_features + padding and out_features + padding). A quantized weight gets
/// random blocks, and the oracle reads x as the contract rounds it (QuantOracle.RoundQ8).</summary>
public sealed record LinearCase(string Name, int Rows, int InFeatures, int OutFeatures, bool Bias = true,
                                LlmkDtype? WeightDType = null, LlmkDtype? BiasDType = null, int RowPadding = 0)
{
    public ErrorStats Run(Context ctx, LlmkDtype dtype, Random rng)
    {
        using var xBuffer = ctx.FromFloats(RandomData.Floats(rng, Rows * (InFeatures + RowPadding)), dtype, Rows, InFeatures + RowPadding);
        using var x = xBuffer.Slice(1, 0, InFeatures);
        // nn.Linear's initialization scale, so outputs stay of order one for any in_features.
        float scale = 1 / MathF.Sqrt(Math.Max(InFeatures, 1));
        var weightDtype = WeightDType ?? dtype;
        bool quantized = Tensor.IsQuantized(weightDtype);
        byte[]? blocks = quantized ? QuantOracle.RandomBlocks(rng, weightDtype, (long)OutFeatures * InFeatures, scale) : null;
        using var weight = blocks is not null
            ? ctx.FromHost<byte>(blocks, weightDtype, OutFeatures, InFeatures)
            : ctx.FromFloats(RandomData.Floats(rng, OutFeatures * InFeatures, scale), weightDtype, OutFeatures, InFeatures);
        using var bias = Bias ? ctx.FromFloats(RandomData.Floats(rng, OutFeatures), BiasDType ?? dtype, OutFeatures) : null;
        using var yBuffer = ctx.Allocate(dtype, Rows, OutFeatures + RowPadding);
        using var y = yBuffer.Slice(1, 0, OutFeatures);
        yBuffer.Poison();
        Kernels.Linear(ctx, x, weight, bias, y);
        var xIn = quantized ? QuantOracle.RoundQ8(x.ToFloatArray(), weightDtype) : RandomData.ToDoubles(x.ToFloatArray());
        var wIn = blocks is not null ? QuantOracle.Dequantize(weightDtype, blocks, (long)OutFeatures * InFeatures)
                                     : RandomData.ToDoubles(weight.ToFloatArray());
        var expected = LinearOracle.Linear(xIn, Rows, InFeatures, wIn, OutFeatures,
                                           bias is null ? [] : RandomData.ToDoubles(bias.ToFloatArray()));
        return Errors.Compare(expected, y.ToFloatArray());
    }

    public override string ToString() => Name;
}

public static partial class Checks
{
    /// <summary>Ragged shapes (1x1x1 to 67x257x129), a TinyLlama-sized reduction, weights and bias in their own
    /// dtypes, no bias, strided rows, and in_features 0 (y = bias).</summary>
    public static IEnumerable<LinearCase> LinearCases()
    {
        yield return new("1x1 -> 1", 1, 1, 1);
        yield return new("3x17 -> 33", 3, 17, 33);
        yield return new("67x257 -> 129", 67, 257, 129);
        yield return new("67x257 -> 129, no bias", 67, 257, 129, Bias: false);
        yield return new("5x2048 -> 67 (TinyLlama hidden)", 5, 2048, 67);
        yield return new("9x65 -> 31, bf16 weight, f32 bias", 9, 65, 31, WeightDType: LlmkDtype.Bf16, BiasDType: LlmkDtype.F32);
        yield return new("9x65 -> 31, f16 weight and bias", 9, 65, 31, WeightDType: LlmkDtype.F16, BiasDType: LlmkDtype.F16);
        yield return new("7x64 -> 70, f32 weight, bf16 bias", 7, 64, 70, WeightDType: LlmkDtype.F32, BiasDType: LlmkDtype.Bf16);
        yield return new("70x33 -> 17, strided rows (+5)", 70, 33, 17, RowPadding: 5);
        yield return new("1x775 -> 300, bf16 weight (decode)", 1, 775, 300, WeightDType: LlmkDtype.Bf16);
        yield return new("2x1000 -> 41, f16 weight (decode)", 2, 1000, 41, WeightDType: LlmkDtype.F16);
        yield return new("130x96 -> 50, f16 weight (three row blocks)", 130, 96, 50, WeightDType: LlmkDtype.F16, Bias: false);
        yield return new("33x700 -> 40, bf16 weight (k in blocks)", 33, 700, 40, WeightDType: LlmkDtype.Bf16);
        yield return new("4x0 -> 9 (y = bias)", 4, 0, 9);
        foreach (var q in QuantizedWeights)
        {
            int k = Tensor.BlockOf(q).Elements == 32 ? 96 : 512;
            yield return new($"1x{k} -> 37, {q} weight (decode)", 1, k, 37, WeightDType: q);
            yield return new($"3x{2 * k} -> 70, {q} weight, no bias (decode)", 3, 2 * k, 70, Bias: false, WeightDType: q);
            yield return new($"4x{k} -> 25, {q} weight (one prefill tile)", 4, k, 25, WeightDType: q, BiasDType: LlmkDtype.F32);
            yield return new($"67x{k} -> 129, {q} weight, strided rows (+3)", 67, k, 129, WeightDType: q, RowPadding: 3);
            yield return new($"9x4096 -> 33, {q} weight (Llama hidden)", 9, 4096, 33, WeightDType: q);
        }
    }

    /// <summary>GGUF's block formats that llmk_linear takes as weights.</summary>
    public static readonly LlmkDtype[] QuantizedWeights = [LlmkDtype.Q8_0, LlmkDtype.Q4_0, LlmkDtype.Q4_K, LlmkDtype.Q6_K];

    public static IEnumerable<KernelCheck> LinearChecks() =>
        from c in LinearCases()
        from dtype in new[] { LlmkDtype.F32, LlmkDtype.F16, LlmkDtype.Bf16 }
        select (KernelCheck)new DelegateCheck("linear", c.Name, dtype,
                                              (check, ctx, rng) => CheckResult.Of(check, c.Run(ctx, dtype, rng)));
}
