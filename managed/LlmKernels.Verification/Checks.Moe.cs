using LlmKernels.Interop;
using LlmKernels.Verification.Oracle;

namespace LlmKernels.Verification;

/// <summary>One llmk_moe_route case. TiedLogits draws every logit from four values, so exact ties are everywhere
/// (they must go to the lower id); BiasScale > 0 adds a correction bias uniform in [-BiasScale, BiasScale].</summary>
public sealed record MoeRouteCase(string Name, int Tokens, int Experts, int TopK, LlmkMoeScoring Scoring,
                                  bool Renormalize = true, int Groups = 0, int TopkGroups = 0, float Scale = 0,
                                  float BiasScale = 0, bool TiedLogits = false)
{
    /// <summary>Scores closer than this (and not exactly tied) are near-ties that f32 cannot order reliably;
    /// such tokens are drawn again so the check compares ids exactly.</summary>
    public const double MinMargin = 1e-5;

    public LlmkMoeRouterParams Params => LlmkMoeRouterParams.Create(TopK, Scoring, Renormalize, Groups, TopkGroups, Scale);

    /// <summary>Logits (already rounded to <paramref name="dtype"/>) with no token whose selection hinges on a
    /// near-tie.</summary>
    public float[] DrawLogits(Random rng, LlmkDtype dtype, ReadOnlySpan<double> bias)
    {
        float[] tieValues = [0.25f, 0.5f, 1f, 2f]; // positive: no two different pairs of sigmoids sum alike
        var logits = new float[Tokens * Experts];
        for (int t = 0; t < Tokens; t++)
        {
            var row = logits.AsSpan(t * Experts, Experts);
            for (int attempt = 0; ; attempt++)
            {
                var fresh = TiedLogits
                    ? RandomData.Ints(rng, Experts, 0, tieValues.Length).Select(i => tieValues[i]).ToArray()
                    : RandomData.Floats(rng, Experts, 3);
                for (int e = 0; e < Experts; e++)
                    row[e] = (float)DtypeRounding.Round(fresh[e], dtype);
                double margin = MoeOracle.Route(RandomData.ToDoubles(row), 1, Experts, bias, Params).Margin[0];
                if (margin == 0 || margin >= MinMargin)
                    break;
                if (attempt == 1000)
                    throw new InvalidOperationException($"{Name}: no logits without a near-tie after 1000 draws");
            }
        }
        return logits;
    }

    public ErrorStats Run(Context ctx, LlmkDtype dtype, Random rng)
    {
        var biasValues = BiasScale > 0 ? RandomData.ToDoubles(RandomData.Floats(rng, Experts, BiasScale)) : [];
        using var bias = BiasScale > 0 ? ctx.FromFloats(biasValues.Select(v => (float)v).ToArray(), LlmkDtype.F32, Experts) : null;
        using var logits = ctx.FromFloats(DrawLogits(rng, dtype, biasValues), dtype, Tokens, Experts);
        using var weights = ctx.Allocate(LlmkDtype.F32, Tokens, TopK);
        using var ids = ctx.Allocate(LlmkDtype.I32, Tokens, TopK);
        weights.Poison();
        ids.Poison();
        Kernels.MoeRoute(ctx, logits, bias, Params, weights, ids);
        var expected = MoeOracle.Route(RandomData.ToDoubles(logits.ToFloatArray()), Tokens, Experts, biasValues, Params);
        return ErrorStats.Worst(Errors.Compare(expected.Weights, weights.ToFloatArray()),
                                Errors.CompareExact(expected.ExpertIds.Select(i => (long)i).ToArray(),
                                                    ids.ToArray<int>().Select(i => (long)i).ToArray()));
    }

    public override string ToString() => Name;
}

/// <summary>One llmk_moe_permute + llmk_moe_unpermute case: random expert ids (repeats and experts with no rows
/// included), then random expert outputs combined back with random weights.</summary>
public sealed record MoePermuteCase(string Name, int Tokens, int Hidden, int TopK, int Experts)
{
    public ErrorStats RunPermute(Context ctx, LlmkDtype dtype, Random rng)
    {
        using var x = ctx.FromFloats(RandomData.Floats(rng, Tokens * Hidden, 2), dtype, Tokens, Hidden);
        var expertIds = RandomData.Ints(rng, Tokens * TopK, 0, Experts);
        using var ids = ctx.FromHost<int>(expertIds, LlmkDtype.I32, Tokens, TopK);
        using var permuted = ctx.Allocate(dtype, Tokens * TopK, Hidden);
        using var offsets = ctx.Allocate(LlmkDtype.I32, Experts + 1);
        using var sourceRows = ctx.Allocate(LlmkDtype.I32, Tokens * TopK);
        using var permutedRows = ctx.Allocate(LlmkDtype.I32, Tokens, TopK);
        foreach (var t in new[] { permuted, offsets, sourceRows, permutedRows })
            t.Poison();
        Kernels.MoePermute(ctx, x, ids, Experts, permuted, offsets, sourceRows, permutedRows);

        var (expectedOffsets, expectedSources, expectedRows) = MoeOracle.Permute(expertIds, Tokens, TopK, Experts);
        var expectedPermuted = MoeOracle.Gather(RandomData.ToDoubles(x.ToFloatArray()), Hidden, expectedSources, TopK);
        return ErrorStats.Worst(Exact(expectedOffsets, offsets), Exact(expectedSources, sourceRows),
                                Exact(expectedRows, permutedRows), Errors.Compare(expectedPermuted, permuted.ToFloatArray()));
    }

    public ErrorStats RunUnpermute(Context ctx, LlmkDtype dtype, Random rng)
    {
        int rows = Tokens * TopK;
        using var expertOut = ctx.FromFloats(RandomData.Floats(rng, rows * Hidden, 2), dtype, rows, Hidden);
        using var weights = ctx.FromFloats(RandomData.Floats(rng, rows), LlmkDtype.F32, Tokens, TopK);
        // Any bijection of the rows is a valid map; a random one catches a kernel that assumes an order.
        var map = Enumerable.Range(0, rows).ToArray();
        rng.Shuffle(map);
        using var permutedRows = ctx.FromHost<int>(map, LlmkDtype.I32, Tokens, TopK);
        using var output = ctx.Allocate(dtype, Tokens, Hidden);
        output.Poison();
        Kernels.MoeUnpermute(ctx, expertOut, weights, permutedRows, output);
        var expected = MoeOracle.Unpermute(RandomData.ToDoubles(expertOut.ToFloatArray()), Hidden,
                                           RandomData.ToDoubles(weights.ToFloatArray()), map, Tokens, TopK);
        return Errors.Compare(expected, output.ToFloatArray());
    }

    private static ErrorStats Exact(int[] expected, Tensor actual) =>
        Errors.CompareExact(expected.Select(v => (long)v).ToArray(), actual.ToArray<int>().Select(v => (long)v).ToArray());

    public override string ToString() => Name;
}

/// <summary>A whole sparse MoE layer through the library: route, permute, one llmk_linear per expert on its
/// contiguous rows, unpermute; against the oracle's token-by-token sum over the chosen experts.</summary>
public sealed record MoeBlockCase(string Name, MoeRouteCase Route, int Hidden, int OutFeatures)
{
    public ErrorStats Run(Context ctx, LlmkDtype dtype, Random rng)
    {
        int tokens = Route.Tokens, experts = Route.Experts, topK = Route.TopK;
        using var x = ctx.FromFloats(RandomData.Floats(rng, tokens * Hidden), dtype, tokens, Hidden);
        using var logits = ctx.FromFloats(Route.DrawLogits(rng, dtype, []), dtype, tokens, experts);
        var expertWeights = Enumerable.Range(0, experts)
            .Select(_ => ctx.FromFloats(RandomData.Floats(rng, OutFeatures * Hidden, 1 / MathF.Sqrt(Hidden)), dtype, OutFeatures, Hidden))
            .ToList();
        try
        {
            using var weights = ctx.Allocate(LlmkDtype.F32, tokens, topK);
            using var ids = ctx.Allocate(LlmkDtype.I32, tokens, topK);
            using var permuted = ctx.Allocate(dtype, tokens * topK, Hidden);
            using var offsets = ctx.Allocate(LlmkDtype.I32, experts + 1);
            using var sourceRows = ctx.Allocate(LlmkDtype.I32, tokens * topK);
            using var permutedRows = ctx.Allocate(LlmkDtype.I32, tokens, topK);
            using var expertOut = ctx.Allocate(dtype, tokens * topK, OutFeatures);
            using var output = ctx.Allocate(dtype, tokens, OutFeatures);
            expertOut.Poison();
            output.Poison();
            Kernels.MoeRoute(ctx, logits, null, Route.Params, weights, ids);
            Kernels.MoePermute(ctx, x, ids, experts, permuted, offsets, sourceRows, permutedRows);
            var bounds = offsets.ToArray<int>();
            for (int e = 0; e < experts; e++)
            {
                using var rowsIn = permuted.Slice(0, bounds[e], bounds[e + 1] - bounds[e]);
                using var rowsOut = expertOut.Slice(0, bounds[e], bounds[e + 1] - bounds[e]);
                Kernels.Linear(ctx, rowsIn, expertWeights[e], null, rowsOut);
            }
            Kernels.MoeUnpermute(ctx, expertOut, weights, permutedRows, output);
            var expected = MoeOracle.SparseBlock(RandomData.ToDoubles(x.ToFloatArray()), tokens, Hidden,
                                                 RandomData.ToDoubles(logits.ToFloatArray()), experts, [], Route.Params,
                                                 expertWeights.Select(w => RandomData.ToDoubles(w.ToFloatArray())).ToList(), OutFeatures);
            return Errors.Compare(expected, output.ToFloatArray());
        }
        finally
        {
            foreach (var w in expertWeights)
                w.Dispose();
        }
    }

    public override string ToString() => Name;
}

public static partial class Checks
{
    public static IEnumerable<MoeRouteCase> MoeRouteCases()
    {
        yield return new("mixtral 8 experts top-2 softmax renormalized, 37 tokens", 37, 8, 2, LlmkMoeScoring.Softmax);
        yield return new("qwen 60 experts top-4 softmax not renormalized, 19 tokens", 19, 60, 4, LlmkMoeScoring.Softmax, Renormalize: false);
        yield return new("deepseek-v3 256 experts 8 groups top-4 groups top-8 sigmoid bias scaling 2.5, 23 tokens", 23, 256, 8,
                         LlmkMoeScoring.Sigmoid, Groups: 8, TopkGroups: 4, Scale: 2.5f, BiasScale: 0.05f);
        yield return new("1 expert top-1, 1 token", 1, 1, 1, LlmkMoeScoring.Softmax);
        yield return new("ties: 16 experts top-4 softmax, 29 tokens", 29, 16, 4, LlmkMoeScoring.Softmax, TiedLogits: true);
        yield return new("ties: 64 experts 8 groups top-3 groups top-6 sigmoid, 29 tokens", 29, 64, 6, LlmkMoeScoring.Sigmoid,
                         Groups: 8, TopkGroups: 3, TiedLogits: true);
        yield return new("softmax with bias and 4 groups of 1, top-2 groups top-2, 11 tokens", 11, 4, 2, LlmkMoeScoring.Softmax,
                         Groups: 4, TopkGroups: 2, BiasScale: 0.2f);
    }

    public static IEnumerable<MoePermuteCase> MoePermuteCases()
    {
        yield return new("1 token hidden 1 top-1 1 expert", 1, 1, 1, 1);
        yield return new("37 tokens hidden 19 top-2 8 experts", 37, 19, 2, 8);
        yield return new("23 tokens hidden 129 top-8 256 experts (most empty)", 23, 129, 8, 256);
        yield return new("67 tokens hidden 257 top-3 5 experts", 67, 257, 3, 5);
    }

    public static IEnumerable<MoeBlockCase> MoeBlockCases()
    {
        yield return new("mixtral-like block: 8 experts top-2, 21 tokens, hidden 48 -> 40",
                         new("route", 21, 8, 2, LlmkMoeScoring.Softmax), 48, 40);
        yield return new("deepseek-like block: 32 experts 4 groups top-2 groups top-4 sigmoid, 13 tokens, hidden 33 -> 17",
                         new("route", 13, 32, 4, LlmkMoeScoring.Sigmoid, Groups: 4, TopkGroups: 2, Scale: 2.5f), 33, 17);
    }

    private static readonly LlmkDtype[] MoeDtypes = [LlmkDtype.F32, LlmkDtype.F16, LlmkDtype.Bf16];

    public static IEnumerable<KernelCheck> MoeChecks() =>
        (from c in MoeRouteCases()
         from dtype in MoeDtypes
         // The weights are f32 outputs of f32 arithmetic whatever the logits' dtype.
         select (KernelCheck)new DelegateCheck("moe_route", c.Name, dtype,
             (check, ctx, rng) => CheckResult.Of(check, c.Run(ctx, dtype, rng), Tolerance.For(LlmkDtype.F32))))
        .Concat(
            from c in MoePermuteCases()
            from dtype in MoeDtypes
            from unpermute in new[] { false, true }
            select (KernelCheck)new DelegateCheck(unpermute ? "moe_unpermute" : "moe_permute", c.Name, dtype,
                // permute only moves elements: exact, so its tolerance is 0.
                (check, ctx, rng) => unpermute ? CheckResult.Of(check, c.RunUnpermute(ctx, dtype, rng))
                                               : CheckResult.Of(check, c.RunPermute(ctx, dtype, rng), 0)))
        .Concat(
            from c in MoeBlockCases()
            from dtype in MoeDtypes
            select (KernelCheck)new DelegateCheck("moe_block", c.Name, dtype,
                (check, ctx, rng) => CheckResult.Of(check, c.Run(ctx, dtype, rng))));
}
