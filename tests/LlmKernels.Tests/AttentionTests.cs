namespace LlmKernels.Tests;

/// <summary>llmk_attention and llmk_attention_kvcache: the shared checks against the double-precision oracle
/// (CPU: both algorithms), properties of the CPU reference, and every validation.</summary>
public class AttentionTests : KernelFamilyTests<AttentionTests>, IKernelFamily<AttentionTests>
{
    public static IEnumerable<KernelCheck> CpuChecks() =>
        Checks.AttentionChecks(LlmkAttentionAlgorithm.Naive).Concat(Checks.AttentionChecks(LlmkAttentionAlgorithm.Flash));

    public static IEnumerable<KernelCheck> GpuChecks() =>
        Checks.AttentionChecks(LlmkAttentionAlgorithm.Auto).Concat(Checks.AttentionChecks(LlmkAttentionAlgorithm.Flash));

    // ---- properties of the CPU reference -------------------------------------------------------------------

    private static IEnumerable<TestCaseData> Cases() => Checks.AttentionCases.Select(c => new TestCaseData(c).SetName($"{{m}} {c.Name}"));

    /// <summary>The tiled online softmax is the same function as the materialized one, up to f32 summation order.</summary>
    [TestCaseSource(nameof(Cases))]
    public void FlashEqualsNaive(AttentionCase c)
    {
        using var run = new AttentionRun(Cpu, c, LlmkDtype.F32, TestSupport.Rng($"{nameof(FlashEqualsNaive)} {c.Name}"));
        var (naive, naiveLse) = run.Run(Cpu, LlmkAttentionAlgorithm.Naive);
        var (flash, flashLse) = run.Run(Cpu, LlmkAttentionAlgorithm.Flash);
        var output = Errors.Compare(RandomData.ToDoubles(naive), flash);
        var lse = Errors.Compare(RandomData.ToDoubles(naiveLse), flashLse);
        TestContext.Out.WriteLine($"output {output}, lse {lse}");
        Assert.Multiple(() =>
        {
            Assert.That(output.Within(1e-6), Is.True, $"output: {output}");
            Assert.That(lse.NonFinite, Is.Zero, $"lse: {lse}");
            Assert.That(lse.MaxAbs, Is.LessThanOrEqualTo(1e-5), $"lse: {lse}");
        });
    }

    /// <summary>lse on its own against the oracle, tightly (it is what split-KV combines and training keeps), and
    /// -inf exactly where a query sees no key.</summary>
    [TestCase(LlmkAttentionAlgorithm.Naive)]
    [TestCase(LlmkAttentionAlgorithm.Flash)]
    public void LseMatchesOracle(LlmkAttentionAlgorithm algorithm)
    {
        // q_len > kv_len with a causal mask: the first 15 queries see nothing; the window trims the rest.
        var c = new AttentionCase("lse", 2, 40, 25, 4, 2, 64, Causal: true, WindowLeft: 9, Softcap: 5, Alibi: true);
        using var run = new AttentionRun(Cpu, c, LlmkDtype.F32, TestSupport.Rng($"{nameof(LseMatchesOracle)} {algorithm}"));
        var (output, lse) = run.Run(Cpu, algorithm);
        var (expected, expectedLse) = run.Oracle();
        var errors = Errors.Compare(expectedLse, lse);
        TestContext.Out.WriteLine($"lse {errors}");
        Assert.Multiple(() =>
        {
            Assert.That(errors.NonFinite, Is.Zero);
            Assert.That(errors.MaxAbs, Is.LessThanOrEqualTo(1e-5));
            Assert.That(lse.Count(float.IsNegativeInfinity), Is.EqualTo(2 * 4 * 15), "rows that see no key");
            Assert.That(Errors.Compare(expected, output).Within(1e-5), Is.True);
        });
    }

    /// <summary>Every output is computed by one thread in a fixed order, so the thread count does not change a bit.</summary>
    [Test]
    public void ResultsDoNotDependOnTheThreadCount([Values(LlmkAttentionAlgorithm.Naive, LlmkAttentionAlgorithm.Flash)] LlmkAttentionAlgorithm algorithm)
    {
        var c = Checks.AttentionCases.Single(x => x.Name.StartsWith("causal gqa4", StringComparison.Ordinal));
        using var one = Context.CreateCpu(1);
        using var three = Context.CreateCpu(3);
        using var run = new AttentionRun(Cpu, c, LlmkDtype.Bf16, TestSupport.Rng($"{nameof(ResultsDoNotDependOnTheThreadCount)} {algorithm}"));
        run.Run(one, algorithm);
        var bits1 = run.Output.ToArray<ushort>();
        var lse1 = run.Lse.ToArray<float>();
        run.Run(three, algorithm);
        Assert.That(run.Output.ToArray<ushort>(), Is.EqualTo(bits1));
        Assert.That(run.Lse.ToArray<float>(), Is.EqualTo(lse1));
    }

    /// <summary>Only rows [cache_seqlens[b], cache_seqlens[b] + new_len) of each sequence are written: with both caches
    /// poisoned everywhere, every other byte keeps its poison and the new rows hold k_new/v_new exactly.</summary>
    [TestCase(LlmkDtype.F32)]
    [TestCase(LlmkDtype.Bf16)]
    public void KvCacheWritesOnlyTheAppendedRows(LlmkDtype dtype)
    {
        var c = new KvCacheCase("rows", 3, 4, 4, 24, 4, 2, 40);
        using var run = new KvCacheRun(Cpu, c, dtype, TestSupport.Rng($"{nameof(KvCacheWritesOnlyTheAppendedRows)} {dtype}"));
        run.KCache.Poison();
        run.VCache.Poison();
        var (expectedK, expectedV) = run.ExpectedCaches();
        run.Run(Cpu, LlmkAttentionAlgorithm.Auto);
        Assert.That(run.KCache.ToArray<byte>(), Is.EqualTo(expectedK));
        Assert.That(run.VCache.ToArray<byte>(), Is.EqualTo(expectedV));
        Assert.That(expectedK.Count(x => x == 0xFF), Is.GreaterThan(expectedK.Length / 2), "most of the cache is poison");
    }

    /// <summary>A sequence whose cache would overflow (or a negative length) fails before anything is written.</summary>
    [TestCase(1, "cache_seqlens[1] = 23")]
    [TestCase(-1, "cache_seqlens[1] = -1")]
    public void KvCacheOverflowIsOutOfRangeAndWritesNothing(int lengthFix, string mention)
    {
        var c = new KvCacheCase("overflow", 3, 2, 2, 24, 4, 2, 16);
        using var run = new KvCacheRun(Cpu, c, LlmkDtype.F32, TestSupport.Rng(nameof(KvCacheOverflowIsOutOfRangeAndWritesNothing)));
        // Sequence 0 is valid, so a backend that writes while it checks would be caught.
        int bad = lengthFix > 0 ? c.MaxLen - c.NewLen + 1 : -1;
        using var seqlens = Cpu.FromHost<int>([0, bad, 3], LlmkDtype.I32, 3);
        var k = run.KCache.ToArray<byte>();
        var v = run.VCache.ToArray<byte>();
        run.Output.Poison();
        var output = run.Output.ToArray<byte>();
        TestSupport.ExpectStatus(LlmkStatus.OutOfRange,
            () => Kernels.AttentionKvcache(Cpu, run.Q, run.KCache, run.VCache, run.KNew, run.VNew, seqlens, null,
                                           LlmkAttentionParams.Causal, run.Output),
            "llmk_attention_kvcache", mention, "max_len = 24");
        Assert.That(run.KCache.ToArray<byte>(), Is.EqualTo(k));
        Assert.That(run.VCache.ToArray<byte>(), Is.EqualTo(v));
        Assert.That(run.Output.ToArray<byte>(), Is.EqualTo(output));
    }

    // ---- validation ---------------------------------------------------------------------------------------

    /// <summary>A valid call of both entry points (f32; batch 2, q_len 3, heads 4, head_dim 8; kv_len 5 and kv_heads
    /// 2; cache max_len 16 with 2 new rows), whose parts a test breaks one at a time.</summary>
    public sealed class Call : TensorOwner
    {
        private readonly Random _rng = new(1);

        public Call(Context ctx)
        {
            Ctx = ctx;
            Q = Make(LlmkDtype.F32, 2, 3, 4, 8);
            K = Make(LlmkDtype.F32, 2, 5, 2, 8);
            V = Make(LlmkDtype.F32, 2, 5, 2, 8);
            Out = Make(LlmkDtype.F32, 2, 3, 4, 8);
            Alibi = Make(LlmkDtype.F32, 4);
            Lse = Make(LlmkDtype.F32, 2, 4, 3);
            KCache = Make(LlmkDtype.F32, 2, 16, 2, 8);
            VCache = Make(LlmkDtype.F32, 2, 16, 2, 8);
            KNew = Make(LlmkDtype.F32, 2, 2, 2, 8);
            VNew = Make(LlmkDtype.F32, 2, 2, 2, 8);
            SeqLens = Own(ctx.FromHost<int>([3, 7], LlmkDtype.I32, 2));
        }

        public Context Ctx { get; }
        public Tensor Q, K, V, Out, KCache, VCache, SeqLens;
        public Tensor? Alibi, Lse, KNew, VNew;
        public LlmkAttentionParams P = LlmkAttentionParams.Causal;

        /// <summary>A tensor of small random values (never NaN, so a call that should pass does).</summary>
        public Tensor Make(LlmkDtype dtype, params long[] shape)
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            return dtype is LlmkDtype.I32 or LlmkDtype.I64
                ? Own(Zeros(dtype, shape))
                : Own(Ctx.FromFloats(RandomData.Floats(_rng, (int)count), dtype, shape));
        }

        /// <summary>A view with the given strides over a fresh buffer large enough for them.</summary>
        public Tensor Strided(long[] shape, long[] strides)
        {
            long extent = 1;
            for (int d = 0; d < shape.Length; d++)
                extent += (shape[d] - 1) * strides[d];
            var buffer = Make(LlmkDtype.F32, extent);
            return Tensor.FromPointer(Ctx, buffer.DataPointer, LlmkDtype.F32, shape, buffer, strides);
        }

        /// <summary>A dense f32 view of the given shape over the start of another tensor's memory.</summary>
        public Tensor Over(Tensor buffer, params long[] shape) =>
            Tensor.FromPointer(Ctx, buffer.DataPointer, LlmkDtype.F32, shape, buffer);

        public void Attention() => Kernels.Attention(Ctx, Q, K, V, Alibi, P, Out, Lse);

        public void KvCache() => Kernels.AttentionKvcache(Ctx, Q, KCache, VCache, KNew, VNew, SeqLens, Alibi, P, Out, Lse);

        private Tensor Zeros(LlmkDtype dtype, long[] shape)
        {
            var t = Ctx.Allocate(dtype, shape);
            t.CopyFrom<byte>(new byte[t.ElementCount * Tensor.ElementSize(dtype)]);
            return t;
        }
    }

    [Test]
    public void TheUnbrokenCallSucceeds()
    {
        using var call = new Call(Cpu);
        call.Attention();
        call.KvCache();
        Assert.That(call.Out.ToFloatArray().All(float.IsFinite), Is.True);
    }

    [TestCaseSource(nameof(AttentionBadInputs))]
    public void AttentionRejects(Action<Call> breakIt, LlmkStatus status, string[] mentions)
    {
        using var call = new Call(Cpu);
        breakIt(call);
        TestSupport.ExpectStatus(status, call.Attention, ["llmk_attention:", .. mentions]);
    }

    [TestCaseSource(nameof(KvCacheBadInputs))]
    public void AttentionKvCacheRejects(Action<Call> breakIt, LlmkStatus status, string[] mentions)
    {
        using var call = new Call(Cpu);
        breakIt(call);
        TestSupport.ExpectStatus(status, call.KvCache, ["llmk_attention_kvcache:", .. mentions]);
    }

    /// <summary>NULL where the managed API cannot pass one: the C entry points directly.</summary>
    [Test]
    public unsafe void NullPointersAreRefused()
    {
        using var call = new Call(Cpu);
        LlmkTensor q = call.Q.Native, k = call.K.Native, v = call.V.Native, o = call.Out.Native;
        LlmkTensor kc = call.KCache.Native, vc = call.VCache.Native, sl = call.SeqLens.Native;
        var p = call.P;
        nint ctx = Cpu.Pointer;
        // The status is taken here and turned into the exception at once: llmk_last_error() still holds its message.
        static void Expect(string mention, LlmkStatus status, string fn = "llmk_attention:") =>
            TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => Native.Check(status), fn, mention);
        Expect("context is NULL", NativeMethods.llmk_attention(0, &q, &k, &v, null, &p, &o, null));
        Expect("params is NULL", NativeMethods.llmk_attention(ctx, &q, &k, &v, null, null, &o, null));
        Expect("q is NULL", NativeMethods.llmk_attention(ctx, null, &k, &v, null, &p, &o, null));
        Expect("k is NULL", NativeMethods.llmk_attention(ctx, &q, null, &v, null, &p, &o, null));
        Expect("v is NULL", NativeMethods.llmk_attention(ctx, &q, &k, null, null, &p, &o, null));
        Expect("out is NULL", NativeMethods.llmk_attention(ctx, &q, &k, &v, null, &p, null, null));
        const string kv = "llmk_attention_kvcache:";
        Expect("context is NULL", NativeMethods.llmk_attention_kvcache(0, &q, &kc, &vc, null, null, &sl, null, &p, &o, null), kv);
        Expect("params is NULL", NativeMethods.llmk_attention_kvcache(ctx, &q, &kc, &vc, null, null, &sl, null, null, &o, null), kv);
        Expect("k_cache is NULL", NativeMethods.llmk_attention_kvcache(ctx, &q, null, &vc, null, null, &sl, null, &p, &o, null), kv);
        Expect("v_cache is NULL", NativeMethods.llmk_attention_kvcache(ctx, &q, &kc, null, null, null, &sl, null, &p, &o, null), kv);
        Expect("cache_seqlens is NULL", NativeMethods.llmk_attention_kvcache(ctx, &q, &kc, &vc, null, null, null, null, &p, &o, null), kv);
    }

    private static TestCaseData Bad(string name, Action<Call> breakIt, LlmkStatus status, params string[] mentions) =>
        new TestCaseData(breakIt, status, mentions).SetName(name);

    /// <summary>What both entry points validate the same way (q, out, alibi_slopes, lse, params).</summary>
    private static IEnumerable<TestCaseData> SharedBadInputs()
    {
        yield return Bad("q rank 3", c => c.Q = c.Make(LlmkDtype.F32, 2, 3, 32), LlmkStatus.ShapeMismatch, "q must have rank 4");
        yield return Bad("q dtype i32", c => c.Q = c.Make(LlmkDtype.I32, 2, 3, 4, 8), LlmkStatus.DtypeMismatch, "q has dtype i32");
        yield return Bad("out rank 3", c => c.Out = c.Make(LlmkDtype.F32, 2, 3, 32), LlmkStatus.ShapeMismatch, "out must have rank 4");
        yield return Bad("out dtype", c => c.Out = c.Make(LlmkDtype.F16, 2, 3, 4, 8), LlmkStatus.DtypeMismatch, "out has dtype f16 but q has dtype f32");
        yield return Bad("out shape", c => c.Out = c.Make(LlmkDtype.F32, 2, 3, 4, 9), LlmkStatus.ShapeMismatch, "out has shape [2, 3, 4, 9] but q has shape [2, 3, 4, 8]");
        yield return Bad("out strided last dim", c => c.Out = c.Strided([2, 3, 4, 8], [192, 64, 16, 2]), LlmkStatus.BadStride, "out must be contiguous in its last dimension");
        yield return Bad("out overlaps q", c => c.Out = c.Q, LlmkStatus.InvalidArgument, "out overlaps q");
        yield return Bad("out zero stride", c => c.Out = c.Strided([2, 3, 4, 8], [0, 32, 8, 1]), LlmkStatus.BadStride, "out (shape [2, 3, 4, 8]) has stride 0");
        yield return Bad("head_dim 0", c => { c.Q = c.Make(LlmkDtype.F32, 2, 3, 4, 0); c.Out = c.Make(LlmkDtype.F32, 2, 3, 4, 0); }, LlmkStatus.ShapeMismatch, "head_dim (dimension 3) = 0");
        yield return Bad("alibi rank 2", c => c.Alibi = c.Make(LlmkDtype.F32, 1, 4), LlmkStatus.ShapeMismatch, "alibi_slopes must have rank 1");
        yield return Bad("alibi f16", c => c.Alibi = c.Make(LlmkDtype.F16, 4), LlmkStatus.DtypeMismatch, "alibi_slopes has dtype f16");
        yield return Bad("alibi length", c => c.Alibi = c.Make(LlmkDtype.F32, 2), LlmkStatus.ShapeMismatch, "alibi_slopes has shape [2]", "heads = 4");
        yield return Bad("lse f16", c => c.Lse = c.Make(LlmkDtype.F16, 2, 4, 3), LlmkStatus.DtypeMismatch, "lse has dtype f16");
        yield return Bad("lse rank 2", c => c.Lse = c.Make(LlmkDtype.F32, 8, 3), LlmkStatus.ShapeMismatch, "lse must have rank 3");
        yield return Bad("lse batch", c => c.Lse = c.Make(LlmkDtype.F32, 1, 4, 3), LlmkStatus.ShapeMismatch, "lse has shape [1, 4, 3]", "batch = 2");
        yield return Bad("lse heads", c => c.Lse = c.Make(LlmkDtype.F32, 2, 2, 3), LlmkStatus.ShapeMismatch, "lse has shape [2, 2, 3]", "heads = 4");
        yield return Bad("lse q_len", c => c.Lse = c.Make(LlmkDtype.F32, 2, 4, 5), LlmkStatus.ShapeMismatch, "lse has shape [2, 4, 5]", "q_len = 3");
        yield return Bad("lse overlaps out", c => c.Lse = c.Over(c.Out, 2, 4, 3), LlmkStatus.InvalidArgument, "out overlaps lse");
        yield return Bad("algorithm 3", c => c.P.algorithm = (LlmkAttentionAlgorithm)3, LlmkStatus.InvalidArgument, "params->algorithm is 3");
        yield return Bad("algorithm -1", c => c.P.algorithm = (LlmkAttentionAlgorithm)(-1), LlmkStatus.InvalidArgument, "params->algorithm is -1");
        yield return Bad("scale negative", c => c.P.scale = -0.5f, LlmkStatus.InvalidArgument, "params->scale is -0.5");
        yield return Bad("scale NaN", c => c.P.scale = float.NaN, LlmkStatus.InvalidArgument, "params->scale");
        yield return Bad("scale infinite", c => c.P.scale = float.PositiveInfinity, LlmkStatus.InvalidArgument, "params->scale is inf");
        yield return Bad("softcap negative", c => c.P.softcap = -1, LlmkStatus.InvalidArgument, "params->softcap is -1");
        yield return Bad("softcap infinite", c => c.P.softcap = float.PositiveInfinity, LlmkStatus.InvalidArgument, "params->softcap is inf");
        yield return Bad("causal 2", c => c.P.causal = 2, LlmkStatus.InvalidArgument, "params->causal is 2");
        yield return Bad("num_splits -1", c => c.P.num_splits = -1, LlmkStatus.InvalidArgument, "params->num_splits is -1");
    }

    private static IEnumerable<TestCaseData> AttentionBadInputs() => SharedBadInputs().Concat(new[]
    {
        Bad("k rank 3", c => c.K = c.Make(LlmkDtype.F32, 2, 5, 16), LlmkStatus.ShapeMismatch, "k must have rank 4"),
        Bad("v rank 3", c => c.V = c.Make(LlmkDtype.F32, 2, 5, 16), LlmkStatus.ShapeMismatch, "v must have rank 4"),
        Bad("k dtype", c => c.K = c.Make(LlmkDtype.F16, 2, 5, 2, 8), LlmkStatus.DtypeMismatch, "k has dtype f16 but q has dtype f32"),
        Bad("v dtype", c => c.V = c.Make(LlmkDtype.Bf16, 2, 5, 2, 8), LlmkStatus.DtypeMismatch, "v has dtype bf16 but q has dtype f32"),
        Bad("heads not a multiple of kv_heads", c => { c.K = c.Make(LlmkDtype.F32, 2, 5, 3, 8); c.V = c.Make(LlmkDtype.F32, 2, 5, 3, 8); },
            LlmkStatus.ShapeMismatch, "q has 4 heads", "3 kv_heads of k"),
        Bad("k head_dim", c => c.K = c.Make(LlmkDtype.F32, 2, 5, 2, 16), LlmkStatus.ShapeMismatch, "k has shape [2, 5, 2, 16]", "head_dim of q = 8"),
        Bad("v head_dim", c => c.V = c.Make(LlmkDtype.F32, 2, 5, 2, 16), LlmkStatus.ShapeMismatch, "v has shape [2, 5, 2, 16] but k has shape [2, 5, 2, 8]"),
        Bad("v kv_len", c => c.V = c.Make(LlmkDtype.F32, 2, 6, 2, 8), LlmkStatus.ShapeMismatch, "v has shape [2, 6, 2, 8] but k has shape"),
        Bad("k batch", c => c.K = c.Make(LlmkDtype.F32, 3, 5, 2, 8), LlmkStatus.ShapeMismatch, "k has shape [3, 5, 2, 8]", "batch of q = 2"),
        Bad("k strided last dim", c => c.K = c.Strided([2, 5, 2, 8], [160, 32, 16, 2]), LlmkStatus.BadStride, "k must be contiguous in its last dimension"),
        Bad("out overlaps v", c => { var buffer = c.Make(LlmkDtype.F32, 192); c.V = c.Over(buffer, 2, 5, 2, 8); c.Out = c.Over(buffer, 2, 3, 4, 8); },
            LlmkStatus.InvalidArgument, "out overlaps v"),
    });

    private static IEnumerable<TestCaseData> KvCacheBadInputs() => SharedBadInputs().Concat(new[]
    {
        Bad("k_cache rank 3", c => c.KCache = c.Make(LlmkDtype.F32, 2, 16, 16), LlmkStatus.ShapeMismatch, "k_cache must have rank 4"),
        Bad("k_cache dtype", c => c.KCache = c.Make(LlmkDtype.Bf16, 2, 16, 2, 8), LlmkStatus.DtypeMismatch, "k_cache has dtype bf16 but q has dtype f32"),
        Bad("k_cache batch", c => c.KCache = c.Make(LlmkDtype.F32, 3, 16, 2, 8), LlmkStatus.ShapeMismatch, "k_cache has shape [3, 16, 2, 8]", "batch of q = 2"),
        Bad("k_cache head_dim", c => c.KCache = c.Make(LlmkDtype.F32, 2, 16, 2, 4), LlmkStatus.ShapeMismatch, "k_cache has shape [2, 16, 2, 4]", "head_dim of q = 8"),
        Bad("v_cache max_len", c => c.VCache = c.Make(LlmkDtype.F32, 2, 15, 2, 8), LlmkStatus.ShapeMismatch, "v_cache has shape [2, 15, 2, 8] but k_cache has shape [2, 16, 2, 8]"),
        Bad("heads not a multiple of kv_heads", c => { c.KCache = c.Make(LlmkDtype.F32, 2, 16, 3, 8); c.VCache = c.Make(LlmkDtype.F32, 2, 16, 3, 8); },
            LlmkStatus.ShapeMismatch, "q has 4 heads", "3 kv_heads of k_cache"),
        Bad("v_cache is k_cache", c => c.VCache = c.KCache, LlmkStatus.InvalidArgument, "overlaps", "k_cache", "v_cache"),
        Bad("k_new overlaps k_cache", c => c.KNew = c.KCache.Slice(1, 0, 2), LlmkStatus.InvalidArgument, "k_cache overlaps k_new"),
        Bad("k_new without v_new", c => c.VNew = null, LlmkStatus.NullPointer, "v_new is NULL but k_new is not"),
        Bad("v_new without k_new", c => c.KNew = null, LlmkStatus.NullPointer, "k_new is NULL but v_new is not"),
        Bad("k_new rank 3", c => c.KNew = c.Make(LlmkDtype.F32, 2, 2, 16), LlmkStatus.ShapeMismatch, "k_new must have rank 4"),
        Bad("k_new dtype", c => c.KNew = c.Make(LlmkDtype.F16, 2, 2, 2, 8), LlmkStatus.DtypeMismatch, "k_new has dtype f16 but k_cache has dtype f32"),
        Bad("v_new dtype", c => c.VNew = c.Make(LlmkDtype.F16, 2, 2, 2, 8), LlmkStatus.DtypeMismatch, "v_new has dtype f16 but v_cache has dtype f32"),
        Bad("k_new batch", c => c.KNew = c.Make(LlmkDtype.F32, 1, 2, 2, 8), LlmkStatus.ShapeMismatch, "k_new has shape [1, 2, 2, 8]", "batch of q = 2"),
        Bad("k_new kv_heads", c => c.KNew = c.Make(LlmkDtype.F32, 2, 2, 1, 8), LlmkStatus.ShapeMismatch, "k_new has shape [2, 2, 1, 8]", "kv_heads of k_cache = 2"),
        Bad("k_new head_dim", c => c.KNew = c.Make(LlmkDtype.F32, 2, 2, 2, 7), LlmkStatus.ShapeMismatch, "k_new has shape [2, 2, 2, 7]", "head_dim of q = 8"),
        Bad("v_new new_len", c => c.VNew = c.Make(LlmkDtype.F32, 2, 3, 2, 8), LlmkStatus.ShapeMismatch, "v_new has shape [2, 3, 2, 8] but k_new has shape [2, 2, 2, 8]"),
        Bad("cache_seqlens i64", c => c.SeqLens = c.Make(LlmkDtype.I64, 2), LlmkStatus.DtypeMismatch, "cache_seqlens has dtype i64"),
        Bad("cache_seqlens length", c => c.SeqLens = c.Make(LlmkDtype.I32, 3), LlmkStatus.ShapeMismatch, "cache_seqlens has shape [3]", "batch = 2"),
        Bad("cache_seqlens rank 2", c => c.SeqLens = c.Make(LlmkDtype.I32, 2, 1), LlmkStatus.ShapeMismatch, "cache_seqlens must have rank 1"),
        Bad("out overlaps v_cache", c => c.Out = c.Over(c.VCache, 2, 3, 4, 8), LlmkStatus.InvalidArgument, "v_cache overlaps out"),
    });
}
