using LlmKernels.Interop;
using LlmKernels.Verification.Oracle;

namespace LlmKernels.Verification;

/// <summary>One llmk_attention case. FusedQkv takes q, k and v as slices of one [batch, len, heads + 2 kv_heads,
/// head_dim] buffer and writes a padded output, so strides other than the dense ones are exercised.</summary>
public sealed record AttentionCase(string Name, int Batch, int QLen, int KvLen, int Heads, int KvHeads, int HeadDim,
                                   bool Causal = false, int WindowLeft = -1, int WindowRight = -1, float Scale = 0,
                                   float Softcap = 0, bool Alibi = false, bool FusedQkv = false)
{
    public LlmkAttentionParams Params(LlmkAttentionAlgorithm algorithm) =>
        LlmkAttentionParams.Create(Causal, Scale, WindowLeft, WindowRight, Softcap, algorithm);
}

/// <summary>One llmk_attention_kvcache case. NewLen 0 passes no k_new/v_new. Sequence 0 starts from an empty
/// cache and the last one fills it to max_len; the others start at random lengths.</summary>
public sealed record KvCacheCase(string Name, int Batch, int QLen, int NewLen, int MaxLen, int Heads, int KvHeads,
                                 int HeadDim, bool Causal = true, int WindowLeft = -1, float Softcap = 0,
                                 bool Alibi = false)
{
    public LlmkAttentionParams Params(LlmkAttentionAlgorithm algorithm) =>
        LlmkAttentionParams.Create(Causal, 0, WindowLeft, -1, Softcap, algorithm);
}

/// <summary>Random inputs of an attention case on a context, their values as the kernel sees them (rounded to
/// the dtype), and poisoned outputs.</summary>
public sealed class AttentionRun : TensorOwner
{

    public AttentionRun(Context ctx, AttentionCase c, LlmkDtype dtype, Random rng)
    {
        Case = c;
        int b = c.Batch, h = c.Heads, kvh = c.KvHeads, d = c.HeadDim;
        if (c.FusedQkv)
        {
            if (c.QLen != c.KvLen)
                throw new ArgumentException("a fused qkv buffer needs q_len == kv_len", nameof(c));
            var qkv = Own(ctx.FromFloats(RandomData.Floats(rng, b * c.QLen * (h + 2 * kvh) * d), dtype,
                                         b, c.QLen, h + 2 * kvh, d));
            Q = Own(qkv.Slice(2, 0, h));
            K = Own(qkv.Slice(2, h, kvh));
            V = Own(qkv.Slice(2, h + kvh, kvh));
            Output = Own(Own(ctx.Allocate(dtype, b, c.QLen, h, d + 3)).Slice(3, 0, d));
        }
        else
        {
            Q = Own(ctx.FromFloats(RandomData.Floats(rng, b * c.QLen * h * d), dtype, b, c.QLen, h, d));
            K = Own(ctx.FromFloats(RandomData.Floats(rng, b * c.KvLen * kvh * d), dtype, b, c.KvLen, kvh, d));
            V = Own(ctx.FromFloats(RandomData.Floats(rng, b * c.KvLen * kvh * d), dtype, b, c.KvLen, kvh, d));
            Output = Own(ctx.Allocate(dtype, b, c.QLen, h, d));
        }
        Lse = Own(ctx.Allocate(LlmkDtype.F32, b, h, c.QLen));
        if (c.Alibi)
        {
            Slopes = AttentionOracle.AlibiSlopes(h);
            AlibiSlopes = Own(ctx.FromFloats(Slopes, LlmkDtype.F32, h));
        }
        QValues = Q.ToFloatArray();
        KValues = K.ToFloatArray();
        VValues = V.ToFloatArray();
    }

    public AttentionCase Case { get; }
    public Tensor Q { get; }
    public Tensor K { get; }
    public Tensor V { get; }
    public Tensor Output { get; }
    public Tensor Lse { get; }
    public Tensor? AlibiSlopes { get; }
    public float[] QValues { get; }
    public float[] KValues { get; }
    public float[] VValues { get; }
    public float[] Slopes { get; } = [];

    /// <summary>Poisons the outputs, runs llmk_attention, and returns (output, lse) as read back.</summary>
    public (float[] Output, float[] Lse) Run(Context ctx, LlmkAttentionAlgorithm algorithm)
    {
        Output.Poison();
        Lse.Poison();
        Kernels.Attention(ctx, Q, K, V, AlibiSlopes, Case.Params(algorithm), Output, Lse);
        return (Output.ToFloatArray(), Lse.ToFloatArray());
    }

    public (double[] Output, double[] Lse) Oracle()
    {
        var kvLens = Enumerable.Repeat(Case.KvLen, Case.Batch).ToArray();
        return AttentionOracle.Attention(QValues, KValues, VValues, Case.Batch, Case.QLen, Case.Heads, Case.HeadDim,
                                         Case.KvLen, Case.KvHeads, kvLens, Case.Params(LlmkAttentionAlgorithm.Auto),
                                         Slopes);
    }
}

/// <summary>Random inputs of a KV-cache case. The cache rows a sequence already holds are random; the rows past
/// them are poisoned (NaN), so a kernel that reads beyond cache_seqlens + new_len gives NaN outputs.</summary>
public sealed class KvCacheRun : TensorOwner
{

    public KvCacheRun(Context ctx, KvCacheCase c, LlmkDtype dtype, Random rng)
    {
        Case = c;
        int b = c.Batch, h = c.Heads, kvh = c.KvHeads, d = c.HeadDim;
        SeqLens = new int[b];
        for (int s = 0; s < b; s++)
            SeqLens[s] = s == 0 ? 0 : s == b - 1 ? c.MaxLen - c.NewLen : rng.Next(0, c.MaxLen - c.NewLen + 1);
        Q = Own(ctx.FromFloats(RandomData.Floats(rng, b * c.QLen * h * d), dtype, b, c.QLen, h, d));
        KCache = Own(PartlyFilledCache(ctx, dtype, rng));
        VCache = Own(PartlyFilledCache(ctx, dtype, rng));
        if (c.NewLen > 0)
        {
            KNew = Own(ctx.FromFloats(RandomData.Floats(rng, b * c.NewLen * kvh * d), dtype, b, c.NewLen, kvh, d));
            VNew = Own(ctx.FromFloats(RandomData.Floats(rng, b * c.NewLen * kvh * d), dtype, b, c.NewLen, kvh, d));
        }
        CacheSeqlens = Own(ctx.FromHost<int>(SeqLens, LlmkDtype.I32, b));
        Output = Own(ctx.Allocate(dtype, b, c.QLen, h, d));
        Lse = Own(ctx.Allocate(LlmkDtype.F32, b, h, c.QLen));
        if (c.Alibi)
        {
            Slopes = AttentionOracle.AlibiSlopes(h);
            AlibiSlopes = Own(ctx.FromFloats(Slopes, LlmkDtype.F32, h));
        }
    }

    public KvCacheCase Case { get; }
    public int[] SeqLens { get; }
    public Tensor Q { get; }
    public Tensor KCache { get; }
    public Tensor VCache { get; }
    public Tensor? KNew { get; }
    public Tensor? VNew { get; }
    public Tensor CacheSeqlens { get; }
    public Tensor Output { get; }
    public Tensor Lse { get; }
    public Tensor? AlibiSlopes { get; }
    public float[] Slopes { get; } = [];

    /// <summary>The caches' bytes after the step, computed on the host: new rows copied into place.</summary>
    public (byte[] K, byte[] V) ExpectedCaches()
    {
        var k = KCache.ToArray<byte>();
        var v = VCache.ToArray<byte>();
        if (KNew is not null)
        {
            AppendRows(k, KNew!.ToArray<byte>());
            AppendRows(v, VNew!.ToArray<byte>());
        }
        return (k, v);
    }

    public void Run(Context ctx, LlmkAttentionAlgorithm algorithm)
    {
        Output.Poison();
        Lse.Poison();
        Kernels.AttentionKvcache(ctx, Q, KCache, VCache, KNew, VNew, CacheSeqlens, AlibiSlopes, Case.Params(algorithm),
                                 Output, Lse);
    }

    /// <summary>The oracle over the caches as they should be after the step (read before the step).</summary>
    public (double[] Output, double[] Lse) Oracle(float[] kCacheAfter, float[] vCacheAfter)
    {
        var kvLens = SeqLens.Select(s => s + Case.NewLen).ToArray();
        return AttentionOracle.Attention(Q.ToFloatArray(), kCacheAfter, vCacheAfter, Case.Batch, Case.QLen, Case.Heads,
                                         Case.HeadDim, Case.MaxLen, Case.KvHeads, kvLens,
                                         Case.Params(LlmkAttentionAlgorithm.Auto), Slopes);
    }

    /// <summary>A [batch, max_len, kv_heads, head_dim] cache: random rows below each sequence's length, NaN
    /// (poison) above.</summary>
    private Tensor PartlyFilledCache(Context ctx, LlmkDtype dtype, Random rng)
    {
        var c = Case;
        var cache = ctx.Allocate(dtype, c.Batch, c.MaxLen, c.KvHeads, c.HeadDim);
        cache.Poison();
        for (int s = 0; s < c.Batch; s++)
            if (SeqLens[s] > 0)
                using (var rows = cache.Slice(0, s, 1).Slice(1, 0, SeqLens[s]))
                    rows.CopyFromFloats(RandomData.Floats(rng, SeqLens[s] * c.KvHeads * c.HeadDim));
        return cache;
    }

    private void AppendRows(byte[] cache, byte[] rows)
    {
        var c = Case;
        int rowBytes = c.KvHeads * c.HeadDim * Tensor.ElementSize(KCache.DType);
        for (int s = 0; s < c.Batch; s++)
            rows.AsSpan((s * c.NewLen) * rowBytes, c.NewLen * rowBytes)
                .CopyTo(cache.AsSpan((s * c.MaxLen + SeqLens[s]) * rowBytes));
    }
}

public static partial class Checks
{
    public static readonly LlmkDtype[] AttentionDtypes = [LlmkDtype.F32, LlmkDtype.F16, LlmkDtype.Bf16];

    /// <summary>Ragged shapes: q_len below and above kv_len, head dims 64/128 and odd ones, GQA ratios 1, 4, 8 and
    /// MQA, windows, softcap, ALiBi, several key blocks, strided views.</summary>
    public static readonly AttentionCase[] AttentionCases =
    [
        new("mha d64 q=kv", 2, 33, 33, 4, 4, 64),
        new("causal gqa4 d128 q<kv", 2, 17, 70, 8, 2, 128, Causal: true),
        new("causal gqa8 d80 q>kv (empty rows)", 1, 40, 25, 16, 2, 80, Causal: true),
        new("causal mqa d40 decode", 3, 1, 77, 6, 1, 40, Causal: true),
        new("window (16,4) gqa2 d64", 2, 50, 90, 4, 2, 64, WindowLeft: 16, WindowRight: 4),
        new("causal sliding window 8 d128", 1, 45, 60, 2, 1, 128, Causal: true, WindowLeft: 8),
        new("causal softcap 3 scale 0.5 alibi d80", 2, 24, 40, 4, 4, 80, Causal: true, Scale: 0.5f, Softcap: 3, Alibi: true),
        new("alibi gqa8 d64 bidirectional", 1, 20, 31, 16, 2, 64, Alibi: true),
        new("fused qkv strided d40 causal", 2, 21, 21, 4, 2, 40, Causal: true, FusedQkv: true),
        new("odd d3 window (0,0)", 1, 9, 9, 3, 1, 3, WindowLeft: 0, WindowRight: 0),
        new("long kv 300 causal d64", 1, 20, 300, 2, 1, 64, Causal: true),
        new("causal mqa32 d64 (more rows than a block)", 1, 19, 19, 32, 1, 64, Causal: true),
    ];

    /// <summary>Decode (new_len 1) and chunked append (new_len > 1), q_len equal to or different from new_len,
    /// no new rows, windows, softcap and ALiBi on the cache.</summary>
    public static readonly KvCacheCase[] KvCacheCases =
    [
        new("decode new=1 gqa4 d64", 3, 1, 1, 64, 8, 2, 64),
        new("decode new=1 mqa32 d128", 2, 1, 1, 90, 32, 1, 128),
        new("append new=5 gqa4 d128", 2, 5, 5, 80, 8, 2, 128),
        new("q_len 4 new=2 mqa d80", 3, 4, 2, 40, 4, 1, 80),
        new("no new rows d40", 2, 3, 0, 50, 4, 4, 40),
        new("chunk new=7 window 20 softcap alibi gqa4 d64", 2, 7, 7, 100, 4, 1, 64, WindowLeft: 20, Softcap: 4, Alibi: true),
    ];

    /// <summary>The attention family with the backend's default algorithm.</summary>
    public static IEnumerable<KernelCheck> AttentionChecks() => AttentionChecks(LlmkAttentionAlgorithm.Auto);

    /// <summary>The attention family with one algorithm (the CPU tests run both NAIVE and FLASH).</summary>
    public static IEnumerable<KernelCheck> AttentionChecks(LlmkAttentionAlgorithm algorithm)
    {
        string suffix = algorithm == LlmkAttentionAlgorithm.Auto ? "" : $" [{algorithm.ToString().ToLowerInvariant()}]";
        foreach (var dtype in AttentionDtypes)
        {
            foreach (var c in AttentionCases)
                yield return new DelegateCheck("attention", c.Name + suffix, dtype,
                                               (check, ctx, rng) => RunAttention(check, ctx, rng, c, algorithm));
            foreach (var c in KvCacheCases)
                yield return new DelegateCheck("attention_kvcache", c.Name + suffix, dtype,
                                               (check, ctx, rng) => RunKvCache(check, ctx, rng, c, algorithm));
        }
    }

    private static CheckResult RunAttention(KernelCheck check, Context ctx, Random rng, AttentionCase c,
                                            LlmkAttentionAlgorithm algorithm)
    {
        using var run = new AttentionRun(ctx, c, check.DType, rng);
        var (output, lse) = run.Run(ctx, algorithm);
        var (expected, expectedLse) = run.Oracle();
        return CheckResult.Of(check, ErrorStats.Worst(Errors.Compare(expected, output), Errors.Compare(expectedLse, lse)));
    }

    private static CheckResult RunKvCache(KernelCheck check, Context ctx, Random rng, KvCacheCase c,
                                          LlmkAttentionAlgorithm algorithm)
    {
        using var run = new KvCacheRun(ctx, c, check.DType, rng);
        var (expectedK, expectedV) = run.ExpectedCaches();
        run.Run(ctx, algorithm);
        var kAfter = run.KCache.ToArray<byte>();
        var vAfter = run.VCache.ToArray<byte>();
        // Caches must hold exactly the expected bytes: new rows in place, everything else untouched (poison too).
        static long[] Widen(byte[] bytes) => Array.ConvertAll(bytes, b => (long)b);
        var cacheErrors = ErrorStats.Worst(Errors.CompareExact(Widen(expectedK), Widen(kAfter)),
                                           Errors.CompareExact(Widen(expectedV), Widen(vAfter)));
        var (expected, expectedLse) = run.Oracle(run.KCache.ToFloatArray(), run.VCache.ToFloatArray());
        return CheckResult.Of(check, ErrorStats.Worst(Errors.Compare(expected, run.Output.ToFloatArray()),
                                                      Errors.Compare(expectedLse, run.Lse.ToFloatArray()), cacheErrors));
    }
}
