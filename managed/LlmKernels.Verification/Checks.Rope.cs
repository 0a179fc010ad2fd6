using LlmKernels.Interop;
using LlmKernels.Verification.Oracle;

namespace LlmKernels.Verification;

/// <summary>One llmk_rope case. KvHeads 0 passes no k. FusedQkv takes q and k as slices of one
/// [tokens, heads + 2 kv_heads, head_dim] buffer, whose v part must come back untouched.</summary>
public sealed record RopeCase(string Name, LlmkRopeParams Params, int Tokens, int Heads, int KvHeads, int HeadDim,
                              long MaxPosition = 4096, bool FusedQkv = false, bool Int32Positions = false)
{
    /// <summary>Inputs on ctx, llmk_rope on them, and the oracle's q and k (from its own frequencies).</summary>
    public ErrorStats Run(Context ctx, LlmkDtype dtype, Random rng)
    {
        var positions = new long[Tokens];
        for (int t = 0; t < Tokens; t++)
            positions[t] = rng.NextInt64(MaxPosition);
        using var pos = Int32Positions
            ? ctx.FromHost<int>(positions.Select(v => checked((int)v)).ToArray(), LlmkDtype.I32, Tokens)
            : ctx.FromHost<long>(positions, LlmkDtype.I64, Tokens);

        var owned = new List<Tensor>();
        try
        {
            Tensor q, k, v;
            if (FusedQkv)
            {
                int width = Heads + 2 * KvHeads;
                var qkv = Own(owned, ctx.FromFloats(RandomData.Floats(rng, Tokens * width * HeadDim), dtype, Tokens, width, HeadDim));
                q = Own(owned, qkv.Slice(1, 0, Heads));
                k = Own(owned, qkv.Slice(1, Heads, KvHeads));
                v = Own(owned, qkv.Slice(1, Heads + KvHeads, KvHeads));
            }
            else
            {
                q = Own(owned, ctx.FromFloats(RandomData.Floats(rng, Tokens * Heads * HeadDim), dtype, Tokens, Heads, HeadDim));
                k = Own(owned, ctx.FromFloats(RandomData.Floats(rng, Tokens * KvHeads * HeadDim), dtype, Tokens, KvHeads, HeadDim));
                v = k; // nothing else in the buffer
            }
            var qIn = RandomData.ToDoubles(q.ToFloatArray());
            var kIn = RandomData.ToDoubles(k.ToFloatArray());
            var vIn = RandomData.ToDoubles(v.ToFloatArray());

            Kernels.Rope(ctx, pos, Params, q, KvHeads > 0 ? k : null);

            var (invFreq, attentionFactor) = Frequencies(Params, HeadDim);
            int rotaryDim = Params.rotary_dim != 0 ? Params.rotary_dim : HeadDim;
            var style = Params.style;
            var qExpected = RopeOracle.Apply(qIn, Tokens, Heads, HeadDim, positions, invFreq, attentionFactor, style, rotaryDim);
            var kExpected = KvHeads > 0
                ? RopeOracle.Apply(kIn, Tokens, KvHeads, HeadDim, positions, invFreq, attentionFactor, style, rotaryDim)
                : kIn;
            return ErrorStats.Worst(
                Errors.Compare(qExpected, q.ToFloatArray()),
                Errors.Compare(kExpected, k.ToFloatArray()),
                Errors.Compare(FusedQkv ? vIn : kExpected, v.ToFloatArray()));
        }
        finally
        {
            foreach (var t in owned)
                t.Dispose();
        }
    }

    /// <summary>The oracle's frequencies, rounded to f32: transformers keeps inv_freq in an f32 buffer and the API
    /// passes f32, so the double angle position * inv_freq is taken from those values (at position 1e6 the
    /// rounding of inv_freq alone moves the angle by 0.06 rad).</summary>
    public static (double[] InvFreq, double AttentionFactor) Frequencies(LlmkRopeParams p, int headDim)
    {
        var (invFreq, attentionFactor) = RopeOracle.Frequencies(p, headDim);
        return (invFreq.Select(f => (double)(float)f).ToArray(), attentionFactor);
    }

    private static Tensor Own(List<Tensor> owned, Tensor t)
    {
        owned.Add(t);
        return t;
    }

    public override string ToString() => Name;
}

public static partial class Checks
{
    /// <summary>One case per scaling type (transformers' parameters of real models), both styles, partial rotary,
    /// GQA head counts, fused-qkv slices, ragged token counts, positions up to 1e6.</summary>
    public static IEnumerable<RopeCase> RopeCases()
    {
        var neox = LlmkRopeStyle.Neox;
        var gptj = LlmkRopeStyle.Gptj;
        yield return new("neox default 7 tokens 8/2 heads d64", LlmkRopeParams.Create(10000), 7, 8, 2, 64);
        yield return new("gptj default 13 tokens 3/1 heads d32", LlmkRopeParams.Create(10000, gptj), 13, 3, 1, 32);
        yield return new("neox partial rotary 24/64, 1 token", LlmkRopeParams.Create(10000, neox, rotaryDim: 24), 1, 4, 4, 64);
        yield return new("gptj partial rotary 16/80, 37 tokens", LlmkRopeParams.Create(10000, gptj, rotaryDim: 16), 37, 2, 1, 80);
        yield return new("neox q only, 5 tokens", LlmkRopeParams.Create(10000), 5, 6, 0, 64);
        yield return new("neox linear x4", LlmkRopeParams.Create(10000, scaling: LlmkRopeScaling.Linear, factor: 4), 9, 4, 2, 64,
                         MaxPosition: 16384);
        yield return new("neox dynamic x2 seq 4096 of 2048",
                         LlmkRopeParams.Create(10000, scaling: LlmkRopeScaling.Dynamic, factor: 2, originalMaxPosition: 2048, seqLen: 4096),
                         6, 4, 2, 64);
        yield return new("neox dynamic x2 seq below original",
                         LlmkRopeParams.Create(10000, scaling: LlmkRopeScaling.Dynamic, factor: 2, originalMaxPosition: 2048, seqLen: 100),
                         3, 2, 2, 32);
        yield return new("neox llama3.1 x8 theta 5e5 d128",
                         LlmkRopeParams.Create(500000, scaling: LlmkRopeScaling.Llama3, factor: 8, originalMaxPosition: 8192,
                                     lowFreqFactor: 1, highFreqFactor: 4),
                         5, 4, 1, 128, MaxPosition: 131072);
        yield return new("neox yarn x4 qwen theta 1e6 d128",
                         LlmkRopeParams.Create(1000000, scaling: LlmkRopeScaling.Yarn, factor: 4, originalMaxPosition: 32768),
                         4, 4, 2, 128, MaxPosition: 131072);
        yield return new("gptj yarn x40 deepseek mscale, rotary 64/96",
                         LlmkRopeParams.Create(10000, gptj, rotaryDim: 64, scaling: LlmkRopeScaling.Yarn, factor: 40, originalMaxPosition: 4096,
                                     mscale: 1, mscaleAllDim: 0.707f),
                         3, 2, 1, 96, MaxPosition: 163840);
        yield return new("neox yarn x32 gpt-oss untruncated, attention factor given",
                         LlmkRopeParams.Create(150000, scaling: LlmkRopeScaling.Yarn, factor: 32, originalMaxPosition: 4096,
                                     betaFast: 32, betaSlow: 1, attentionFactor: 1.25f, truncate: false),
                         4, 4, 1, 64, MaxPosition: 131072);
        yield return new("neox fused qkv slices 5 tokens 4/2 heads", LlmkRopeParams.Create(10000), 5, 4, 2, 64, FusedQkv: true);
        yield return new("gptj fused qkv partial 32/64 i32 positions", LlmkRopeParams.Create(10000, gptj, rotaryDim: 32), 11, 3, 1, 64,
                         FusedQkv: true, Int32Positions: true);
        yield return new("neox positions up to 1e6", LlmkRopeParams.Create(500000), 8, 2, 1, 128, MaxPosition: 1_000_000);
        yield return new("neox 300 tokens 8/2 heads d64 (tokens over threads)", LlmkRopeParams.Create(10000), 300, 8, 2, 64);
    }

    public static IEnumerable<KernelCheck> RopeChecks() =>
        from c in RopeCases()
        from dtype in new[] { LlmkDtype.F32, LlmkDtype.F16, LlmkDtype.Bf16 }
        select (KernelCheck)new DelegateCheck("rope", c.Name, dtype,
                                              (check, ctx, rng) => CheckResult.Of(check, c.Run(ctx, dtype, rng)));
}
