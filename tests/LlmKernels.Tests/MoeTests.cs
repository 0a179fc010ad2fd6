namespace LlmKernels.Tests;

/// <summary>llmk_moe_route, llmk_moe_permute and llmk_moe_unpermute: the shared checks against the double-precision
/// oracle, properties of the CPU reference (round trips, thread-count independence), and every validation.</summary>
public class MoeTests : KernelFamilyTests<MoeTests>, IKernelFamily<MoeTests>
{
    public static IEnumerable<KernelCheck> CpuChecks() => Checks.MoeChecks();

    // ---- properties ----------------------------------------------------------------------------------------

    /// <summary>The tensors of one permute call, poisoned.</summary>
    private sealed class PermuteOutputs : IDisposable
    {
        public PermuteOutputs(Context ctx, LlmkDtype dtype, int tokens, int hidden, int topK, int experts)
        {
            Permuted = ctx.Allocate(dtype, tokens * topK, hidden);
            Offsets = ctx.Allocate(LlmkDtype.I32, experts + 1);
            SourceRows = ctx.Allocate(LlmkDtype.I32, tokens * topK);
            PermutedRows = ctx.Allocate(LlmkDtype.I32, tokens, topK);
            foreach (var t in All)
                t.Poison();
        }

        public Tensor Permuted { get; }
        public Tensor Offsets { get; }
        public Tensor SourceRows { get; }
        public Tensor PermutedRows { get; }
        public Tensor[] All => [Permuted, Offsets, SourceRows, PermutedRows];

        public void Dispose()
        {
            foreach (var t in All)
                t.Dispose();
        }
    }

    /// <summary>With top_k = 1 and weight 1, unpermute(permute(x)) is x bit for bit.</summary>
    [TestCase(LlmkDtype.F32)]
    [TestCase(LlmkDtype.F16)]
    [TestCase(LlmkDtype.Bf16)]
    public void PermuteThenUnpermuteWithTopOneIsIdentity(LlmkDtype dtype)
    {
        var rng = TestSupport.Rng($"{nameof(PermuteThenUnpermuteWithTopOneIsIdentity)} {dtype}");
        const int tokens = 45, hidden = 77, experts = 6;
        using var x = Cpu.FromFloats(RandomData.Floats(rng, tokens * hidden, 3), dtype, tokens, hidden);
        using var ids = Cpu.FromHost<int>(RandomData.Ints(rng, tokens, 0, experts), LlmkDtype.I32, tokens, 1);
        using var p = new PermuteOutputs(Cpu, dtype, tokens, hidden, 1, experts);
        using var weights = Cpu.FromFloats(Enumerable.Repeat(1f, tokens).ToArray(), LlmkDtype.F32, tokens, 1);
        using var output = Cpu.Allocate(dtype, tokens, hidden);
        output.Poison();
        Kernels.MoePermute(Cpu, x, ids, experts, p.Permuted, p.Offsets, p.SourceRows, p.PermutedRows);
        Kernels.MoeUnpermute(Cpu, p.Permuted, weights, p.PermutedRows, output);
        Assert.That(output.ToArray<byte>(), Is.EqualTo(x.ToArray<byte>()));
    }

    /// <summary>Identical expert outputs (each expert the identity) and weights summing to 1 give x back, up to f32
    /// rounding of the weighted sum.</summary>
    [Test]
    public void WeightsSummingToOneOnIdenticalExpertOutputsGiveX()
    {
        var rng = TestSupport.Rng();
        const int tokens = 33, hidden = 65, topK = 4, experts = 9;
        var xValues = RandomData.Floats(rng, tokens * hidden, 3);
        using var x = Cpu.FromFloats(xValues, LlmkDtype.F32, tokens, hidden);
        using var ids = Cpu.FromHost<int>(RandomData.Ints(rng, tokens * topK, 0, experts), LlmkDtype.I32, tokens, topK);
        var w = RandomData.Floats(rng, tokens * topK).Select(v => v + 1.5f).ToArray();
        for (int t = 0; t < tokens; t++)
        {
            float sum = w.AsSpan(t * topK, topK).ToArray().Sum();
            for (int s = 0; s < topK; s++)
                w[t * topK + s] /= sum;
        }
        using var weights = Cpu.FromFloats(w, LlmkDtype.F32, tokens, topK);
        using var p = new PermuteOutputs(Cpu, LlmkDtype.F32, tokens, hidden, topK, experts);
        using var output = Cpu.Allocate(LlmkDtype.F32, tokens, hidden);
        output.Poison();
        Kernels.MoePermute(Cpu, x, ids, experts, p.Permuted, p.Offsets, p.SourceRows, p.PermutedRows);
        Kernels.MoeUnpermute(Cpu, p.Permuted, weights, p.PermutedRows, output);
        var errors = Errors.Compare(RandomData.ToDoubles(xValues), output.ToFloatArray());
        TestContext.Out.WriteLine(errors.ToString());
        Assert.That(errors.Within(1e-6), Is.True, errors.ToString());
    }

    /// <summary>Every output of route, permute and unpermute is bit-identical for 1 to 4 threads.</summary>
    [Test]
    public void ResultsDoNotDependOnTheThreadCount()
    {
        var rng = TestSupport.Rng();
        var route = Checks.MoeRouteCases().Single(c => c.Experts == 256);
        var logitValues = route.DrawLogits(rng, LlmkDtype.F32, []);
        var biasValues = RandomData.Floats(rng, route.Experts, 0.05f);
        const int hidden = 130;
        var xValues = RandomData.Floats(rng, route.Tokens * hidden);
        var expertOutValues = RandomData.Floats(rng, route.Tokens * route.TopK * hidden);

        byte[][] Run(Context ctx)
        {
            using var logits = ctx.FromFloats(logitValues, LlmkDtype.F32, route.Tokens, route.Experts);
            using var bias = ctx.FromFloats(biasValues, LlmkDtype.F32, route.Experts);
            using var weights = ctx.Allocate(LlmkDtype.F32, route.Tokens, route.TopK);
            using var ids = ctx.Allocate(LlmkDtype.I32, route.Tokens, route.TopK);
            Kernels.MoeRoute(ctx, logits, bias, route.Params, weights, ids);
            using var x = ctx.FromFloats(xValues, LlmkDtype.Bf16, route.Tokens, hidden);
            using var p = new PermuteOutputs(ctx, LlmkDtype.Bf16, route.Tokens, hidden, route.TopK, route.Experts);
            Kernels.MoePermute(ctx, x, ids, route.Experts, p.Permuted, p.Offsets, p.SourceRows, p.PermutedRows);
            using var expertOut = ctx.FromFloats(expertOutValues, LlmkDtype.Bf16, route.Tokens * route.TopK, hidden);
            using var output = ctx.Allocate(LlmkDtype.Bf16, route.Tokens, hidden);
            Kernels.MoeUnpermute(ctx, expertOut, weights, p.PermutedRows, output);
            return [weights.ToArray<byte>(), ids.ToArray<byte>(), .. p.All.Select(t => t.ToArray<byte>()), output.ToArray<byte>()];
        }

        using var single = Context.CreateCpu(1);
        var reference = Run(single);
        for (int threads = 2; threads <= 4; threads++)
        {
            using var ctx = Context.CreateCpu(threads);
            Assert.That(Run(ctx), Is.EqualTo(reference), $"{threads} threads");
        }
    }

    /// <summary>The kernel's f32 weights, renormalized, sum to routed_scaling_factor (DeepSeek-V3 style).</summary>
    [Test]
    public void RenormalizedWeightsSumToTheScalingFactor()
    {
        var c = Checks.MoeRouteCases().Single(c => c.Experts == 256);
        var rng = TestSupport.Rng();
        using var logits = Cpu.FromFloats(c.DrawLogits(rng, LlmkDtype.F32, []), LlmkDtype.F32, c.Tokens, c.Experts);
        using var weights = Cpu.Allocate(LlmkDtype.F32, c.Tokens, c.TopK);
        using var ids = Cpu.Allocate(LlmkDtype.I32, c.Tokens, c.TopK);
        Kernels.MoeRoute(Cpu, logits, null, c.Params, weights, ids);
        var w = weights.ToFloatArray();
        for (int t = 0; t < c.Tokens; t++)
            Assert.That(w.AsSpan(t * c.TopK, c.TopK).ToArray().Sum(), Is.EqualTo(c.Scale).Within(1e-5), $"token {t}");
    }

    /// <summary>Tied logits: the lower expert id wins, ids best first (all equal: 0, 1, ..., top_k - 1).</summary>
    [Test]
    public void TiesGoToTheLowerExpertId()
    {
        using var logits = Cpu.FromFloats([0, 1, 1, 0, 1, 0, 0, 0, /* token 1: all equal */ 2, 2, 2, 2, 2, 2, 2, 2], LlmkDtype.F32, 2, 8);
        using var weights = Cpu.Allocate(LlmkDtype.F32, 2, 2);
        using var ids = Cpu.Allocate(LlmkDtype.I32, 2, 2);
        Kernels.MoeRoute(Cpu, logits, null, LlmkMoeRouterParams.Create(2), weights, ids);
        Assert.That(ids.ToArray<int>(), Is.EqualTo(new[] { 1, 2, 0, 1 }));
        Assert.That(weights.ToFloatArray(), Is.EqualTo(new[] { 0.5f, 0.5f, 0.5f, 0.5f }));
    }

    // ---- validation ----------------------------------------------------------------------------------------

    /// <summary>A valid route call whose pieces a test replaces one at a time.</summary>
    private sealed class RouteCall : IDisposable
    {
        private readonly Context _ctx;

        public RouteCall(Context ctx, int tokens = 3, int experts = 8, int topK = 2)
        {
            _ctx = ctx;
            Logits = ctx.FromFloats(RandomData.Floats(new Random(1), tokens * experts), LlmkDtype.F32, tokens, experts);
            Weights = ctx.Allocate(LlmkDtype.F32, tokens, topK);
            Ids = ctx.Allocate(LlmkDtype.I32, tokens, topK);
            Params = LlmkMoeRouterParams.Create(topK);
        }

        public Tensor Logits { get; set; }
        public Tensor? Bias { get; set; }
        public LlmkMoeRouterParams Params;
        public Tensor Weights { get; set; }
        public Tensor Ids { get; set; }

        public void Run() => Kernels.MoeRoute(_ctx, Logits, Bias, Params, Weights, Ids);

        public void Dispose()
        {
            Logits.Dispose();
            Weights.Dispose();
            Ids.Dispose();
            Bias?.Dispose();
        }
    }

    private static void ExpectRoute(LlmkStatus status, RouteCall call, params string[] mentions) =>
        TestSupport.ExpectStatus(status, call.Run, ["llmk_moe_route:", .. mentions]);

    [Test]
    public void RouteRejectsBadParameters()
    {
        using var call = new RouteCall(Cpu);
        void Expect(LlmkMoeRouterParams p, string mention)
        {
            call.Params = p;
            ExpectRoute(LlmkStatus.InvalidArgument, call, mention);
        }
        Expect(LlmkMoeRouterParams.Create(0), "params.top_k is 0");
        Expect(LlmkMoeRouterParams.Create(9), "params.top_k is 9");
        Expect(LlmkMoeRouterParams.Create(2, (LlmkMoeScoring)2), "params.scoring");
        Expect(LlmkMoeRouterParams.Create(2) with { renormalize = 2 }, "params.renormalize");
        Expect(LlmkMoeRouterParams.Create(2, routedScalingFactor: -1), "params.routed_scaling_factor");
        Expect(LlmkMoeRouterParams.Create(2, routedScalingFactor: float.NaN), "params.routed_scaling_factor");
        Expect(LlmkMoeRouterParams.Create(2, numGroups: -1), "params.num_groups");
        Expect(LlmkMoeRouterParams.Create(2, numGroups: 3, topkGroups: 1), "params.num_groups = 3 does not divide");
        Expect(LlmkMoeRouterParams.Create(2, numGroups: 4, topkGroups: 0), "params.topk_groups is 0");
        Expect(LlmkMoeRouterParams.Create(2, numGroups: 4, topkGroups: 5), "params.topk_groups is 5");
        Expect(LlmkMoeRouterParams.Create(3, numGroups: 4, topkGroups: 1), "params.top_k = 3 exceeds the 2 experts");
    }

    [Test]
    public void RouteRejectsBadTensors()
    {
        using var call = new RouteCall(Cpu);
        using (call.Bias = Cpu.Allocate(LlmkDtype.Bf16, 8))
            ExpectRoute(LlmkStatus.DtypeMismatch, call, "correction_bias", "bf16");
        using (call.Bias = Cpu.Allocate(LlmkDtype.F32, 7))
            ExpectRoute(LlmkStatus.ShapeMismatch, call, "correction_bias", "experts = 8");
        call.Bias = null;

        var good = call.Weights;
        using (call.Weights = Cpu.Allocate(LlmkDtype.F32, 3, 3))
            ExpectRoute(LlmkStatus.ShapeMismatch, call, "weights", "top_k = 2");
        using (call.Weights = Cpu.Allocate(LlmkDtype.F16, 3, 2))
            ExpectRoute(LlmkStatus.DtypeMismatch, call, "weights", "f16");
        using (call.Weights = Cpu.Allocate(LlmkDtype.F32, 6))
            ExpectRoute(LlmkStatus.ShapeMismatch, call, "weights", "rank 2");
        call.Weights = good;

        var goodIds = call.Ids;
        using (call.Ids = Cpu.Allocate(LlmkDtype.I64, 3, 2))
            ExpectRoute(LlmkStatus.DtypeMismatch, call, "expert_ids", "i64");
        using (call.Ids = Cpu.Allocate(LlmkDtype.I32, 4, 2))
            ExpectRoute(LlmkStatus.ShapeMismatch, call, "expert_ids");
        call.Ids = goodIds;

        var goodLogits = call.Logits;
        using (call.Logits = Cpu.Allocate(LlmkDtype.I32, 3, 8))
            ExpectRoute(LlmkStatus.DtypeMismatch, call, "logits", "i32");
        using (call.Logits = Tensor.FromPointer(Cpu, goodLogits.DataPointer, LlmkDtype.F32, [3, 8], goodLogits, [-8, 1]))
            ExpectRoute(LlmkStatus.BadStride, call, "logits", "negative stride");
        using (call.Logits = Tensor.FromPointer(Cpu, goodLogits.DataPointer, LlmkDtype.F32, [1L << 40, 1L << 40], goodLogits))
            ExpectRoute(LlmkStatus.Overflow, call, "logits", "overflows");
        using (call.Logits = Tensor.FromPointer(Cpu, 0, LlmkDtype.F32, [3, 8], null))
            ExpectRoute(LlmkStatus.NullPointer, call, "logits", "NULL data pointer");
        call.Logits = goodLogits;

        // An output with a zero row stride would have two tokens race for the same memory.
        using (call.Weights = Tensor.FromPointer(Cpu, good.DataPointer, LlmkDtype.F32, [3, 2], good, [0, 1]))
            ExpectRoute(LlmkStatus.BadStride, call, "weights", "share");
        call.Weights = good;
    }

    [Test]
    public unsafe void NullPointersAreRefused()
    {
        using var call = new RouteCall(Cpu);
        LlmkTensor l = call.Logits.Native, w = call.Weights.Native, e = call.Ids.Native;
        var p = call.Params;
        nint ctx = Cpu.Pointer;
        void Expect(string mention, LlmkStatus status, string fn) =>
            TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => Native.Check(status), fn, mention);
        const string route = "llmk_moe_route", permute = "llmk_moe_permute", unpermute = "llmk_moe_unpermute";
        Expect("context is NULL", NativeMethods.llmk_moe_route(0, &l, null, &p, &w, &e), route);
        Expect("logits is NULL", NativeMethods.llmk_moe_route(ctx, null, null, &p, &w, &e), route);
        Expect("params is NULL", NativeMethods.llmk_moe_route(ctx, &l, null, null, &w, &e), route);
        Expect("weights is NULL", NativeMethods.llmk_moe_route(ctx, &l, null, &p, null, &e), route);
        Expect("expert_ids is NULL", NativeMethods.llmk_moe_route(ctx, &l, null, &p, &w, null), route);

        using var x = Cpu.Allocate(LlmkDtype.F32, 3, 4);
        using var outputs = new PermuteOutputs(Cpu, LlmkDtype.F32, 3, 4, 2, 8);
        LlmkTensor xs = x.Native, ps = outputs.Permuted.Native, os = outputs.Offsets.Native, ss = outputs.SourceRows.Native,
                   rs = outputs.PermutedRows.Native;
        Expect("x is NULL", NativeMethods.llmk_moe_permute(ctx, null, &e, 8, &ps, &os, &ss, &rs), permute);
        Expect("expert_ids is NULL", NativeMethods.llmk_moe_permute(ctx, &xs, null, 8, &ps, &os, &ss, &rs), permute);
        Expect("permuted is NULL", NativeMethods.llmk_moe_permute(ctx, &xs, &e, 8, null, &os, &ss, &rs), permute);
        Expect("expert_offsets is NULL", NativeMethods.llmk_moe_permute(ctx, &xs, &e, 8, &ps, null, &ss, &rs), permute);
        Expect("source_rows is NULL", NativeMethods.llmk_moe_permute(ctx, &xs, &e, 8, &ps, &os, null, &rs), permute);
        Expect("permuted_rows is NULL", NativeMethods.llmk_moe_permute(ctx, &xs, &e, 8, &ps, &os, &ss, null), permute);
        Expect("expert_out is NULL", NativeMethods.llmk_moe_unpermute(ctx, null, &w, &rs, &xs), unpermute);
        Expect("weights is NULL", NativeMethods.llmk_moe_unpermute(ctx, &ps, null, &rs, &xs), unpermute);
        Expect("permuted_rows is NULL", NativeMethods.llmk_moe_unpermute(ctx, &ps, &w, null, &xs), unpermute);
        Expect("out is NULL", NativeMethods.llmk_moe_unpermute(ctx, &ps, &w, &rs, null), unpermute);
    }

    /// <summary>An expert id out of range is reported with its position, and nothing is written.</summary>
    [TestCase(-1)]
    [TestCase(8)]
    public void PermuteRejectsExpertIdsOutOfRangeBeforeWriting(int badId)
    {
        var idValues = new[] { 0, 1, 2, 3, 4, badId };
        using var x = Cpu.FromFloats(RandomData.Floats(TestSupport.Rng(), 12), LlmkDtype.F32, 3, 4);
        using var ids = Cpu.FromHost<int>(idValues, LlmkDtype.I32, 3, 2);
        using var outputs = new PermuteOutputs(Cpu, LlmkDtype.F32, 3, 4, 2, 8);
        TestSupport.ExpectStatus(LlmkStatus.OutOfRange,
            () => Kernels.MoePermute(Cpu, x, ids, 8, outputs.Permuted, outputs.Offsets, outputs.SourceRows, outputs.PermutedRows),
            "llmk_moe_permute:", $"expert_ids[2, 1] is {badId}", "0..7");
        foreach (var t in outputs.All)
            Assert.That(t.ToArray<byte>(), Is.All.EqualTo(0xFF), "written before the ids were checked");
    }

    [Test]
    public void PermuteRejectsBadArguments()
    {
        using var x = Cpu.Allocate(LlmkDtype.F32, 3, 4);
        using var ids = Cpu.FromHost<int>([0, 1, 2, 3, 4, 5], LlmkDtype.I32, 3, 2);
        using var o = new PermuteOutputs(Cpu, LlmkDtype.F32, 3, 4, 2, 8);
        void Expect(LlmkStatus status, TestDelegate call, params string[] mentions) =>
            TestSupport.ExpectStatus(status, call, ["llmk_moe_permute:", .. mentions]);
        Expect(LlmkStatus.InvalidArgument, () => Kernels.MoePermute(Cpu, x, ids, 0, o.Permuted, o.Offsets, o.SourceRows, o.PermutedRows), "num_experts is 0");
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.MoePermute(Cpu, x, ids, 7, o.Permuted, o.Offsets, o.SourceRows, o.PermutedRows), "expert_offsets", "num_experts + 1 = 8");
        using var bf16 = Cpu.Allocate(LlmkDtype.Bf16, 6, 4);
        Expect(LlmkStatus.DtypeMismatch, () => Kernels.MoePermute(Cpu, x, ids, 8, bf16, o.Offsets, o.SourceRows, o.PermutedRows), "permuted", "bf16");
        using var shortRows = Cpu.Allocate(LlmkDtype.I32, 5);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.MoePermute(Cpu, x, ids, 8, o.Permuted, o.Offsets, shortRows, o.PermutedRows), "source_rows", "tokens * top_k = 6");
        using var i64Ids = Cpu.Allocate(LlmkDtype.I64, 3, 2);
        Expect(LlmkStatus.DtypeMismatch, () => Kernels.MoePermute(Cpu, x, i64Ids, 8, o.Permuted, o.Offsets, o.SourceRows, o.PermutedRows), "expert_ids", "i64");
        using var wrongTokens = Cpu.Allocate(LlmkDtype.I32, 4, 2);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.MoePermute(Cpu, x, wrongTokens, 8, o.Permuted, o.Offsets, o.SourceRows, o.PermutedRows), "expert_ids", "tokens = 3");
    }

    [Test]
    public void UnpermuteRejectsBadArguments()
    {
        using var expertOut = Cpu.FromFloats(RandomData.Floats(TestSupport.Rng(), 24), LlmkDtype.F32, 6, 4);
        using var weights = Cpu.FromFloats([1, 1, 1, 1, 1, 1], LlmkDtype.F32, 3, 2);
        using var rows = Cpu.FromHost<int>([0, 1, 2, 3, 4, 6], LlmkDtype.I32, 3, 2);
        using var output = Cpu.Allocate(LlmkDtype.F32, 3, 4);
        output.Poison();
        void Expect(LlmkStatus status, TestDelegate call, params string[] mentions) =>
            TestSupport.ExpectStatus(status, call, ["llmk_moe_unpermute:", .. mentions]);
        Expect(LlmkStatus.OutOfRange, () => Kernels.MoeUnpermute(Cpu, expertOut, weights, rows, output), "permuted_rows[2, 1] is 6", "0..5");
        Assert.That(output.ToArray<byte>(), Is.All.EqualTo(0xFF), "written before the rows were checked");

        using var goodRows = Cpu.FromHost<int>([0, 1, 2, 3, 4, 5], LlmkDtype.I32, 3, 2);
        using var f16Weights = Cpu.Allocate(LlmkDtype.F16, 3, 2);
        Expect(LlmkStatus.DtypeMismatch, () => Kernels.MoeUnpermute(Cpu, expertOut, f16Weights, goodRows, output), "weights", "f16");
        using var f16Out = Cpu.Allocate(LlmkDtype.F16, 3, 4);
        Expect(LlmkStatus.DtypeMismatch, () => Kernels.MoeUnpermute(Cpu, expertOut, weights, goodRows, f16Out), "out", "expert_out");
        using var wideOut = Cpu.Allocate(LlmkDtype.F32, 3, 5);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.MoeUnpermute(Cpu, expertOut, weights, goodRows, wideOut), "out", "hidden = 4");
        using var fewRows = Cpu.Allocate(LlmkDtype.F32, 5, 4);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.MoeUnpermute(Cpu, fewRows, weights, goodRows, output), "expert_out", "tokens * top_k = 6");
        using var outOverInput = Tensor.FromPointer(Cpu, expertOut.DataPointer, LlmkDtype.F32, [3, 4], expertOut);
        Expect(LlmkStatus.InvalidArgument, () => Kernels.MoeUnpermute(Cpu, expertOut, weights, goodRows, outOverInput), "out overlaps expert_out");
        using var badMap = Cpu.Allocate(LlmkDtype.I32, 3, 3);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.MoeUnpermute(Cpu, expertOut, weights, badMap, output), "permuted_rows");
    }
}
