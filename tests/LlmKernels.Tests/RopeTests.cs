namespace LlmKernels.Tests;

/// <summary>llmk_rope and llmk_rope_frequencies: the shared checks against the double-precision oracle, the
/// frequencies of every scaling type, the geometric properties of a rotation, and every validation.</summary>
public class RopeTests : KernelFamilyTests<RopeTests>, IKernelFamily<RopeTests>
{
    public static IEnumerable<KernelCheck> CpuChecks() => Checks.RopeChecks();

    // ---- frequencies --------------------------------------------------------------------------------------

    private static IEnumerable<TestCaseData> Cases() => Checks.RopeCases().Select(c => new TestCaseData(c).SetName($"{{m}} {c.Name}"));

    /// <summary>llmk_rope_frequencies against the oracle's transformers formulas, to f32 rounding.</summary>
    [TestCaseSource(nameof(Cases))]
    public void FrequenciesMatchOracle(RopeCase c)
    {
        var (invFreq, attentionFactor) = c.Params.Frequencies(c.HeadDim);
        var (expected, expectedFactor) = RopeOracle.Frequencies(c.Params, c.HeadDim);
        Assert.That(invFreq, Has.Length.EqualTo(expected.Length));
        Assert.Multiple(() =>
        {
            for (int i = 0; i < expected.Length; i++)
                Assert.That(invFreq[i], Is.EqualTo(expected[i]).Within(1e-4).Percent, $"inv_freq[{i}]");
            Assert.That(attentionFactor, Is.EqualTo(expectedFactor).Within(1e-4).Percent, "attention factor");
        });
    }

    /// <summary>Values that follow from the definitions by hand, so the oracle itself is anchored.</summary>
    [Test]
    public void FrequenciesHaveKnownValues()
    {
        var (plain, plainFactor) = LlmkRopeParams.Create(10000).Frequencies(8);
        var (linear, _) = LlmkRopeParams.Create(10000, scaling: LlmkRopeScaling.Linear, factor: 4).Frequencies(8);
        // Llama 3.1: wavelengths above 8192 are divided by 8, those below 2048 kept.
        var llama3Params = LlmkRopeParams.Create(500000, scaling: LlmkRopeScaling.Llama3, factor: 8, originalMaxPosition: 8192);
        var (llama3, _) = llama3Params.Frequencies(128);
        var (unscaled, _) = LlmkRopeParams.Create(500000).Frequencies(128);
        var (_, yarnFactor) = LlmkRopeParams.Create(10000, scaling: LlmkRopeScaling.Yarn, factor: 4, originalMaxPosition: 4096).Frequencies(64);
        // dynamic NTK at seq_len <= original is the unscaled rope
        var (dynamicShort, _) = LlmkRopeParams.Create(10000, scaling: LlmkRopeScaling.Dynamic, factor: 2, originalMaxPosition: 2048, seqLen: 1000).Frequencies(64);
        var (default64, _) = LlmkRopeParams.Create(10000).Frequencies(64);
        Assert.Multiple(() =>
        {
            Assert.That(plain, Is.EqualTo(new[] { 1f, 0.1f, 0.01f, 0.001f }).Within(1e-4).Percent);
            Assert.That(plainFactor, Is.EqualTo(1f));
            Assert.That(linear, Is.EqualTo(new[] { 0.25f, 0.025f, 0.0025f, 0.00025f }).Within(1e-4).Percent);
            Assert.That(llama3[0], Is.EqualTo(unscaled[0]), "highest frequency kept");
            Assert.That(llama3[63], Is.EqualTo(unscaled[63] / 8).Within(1e-4).Percent, "lowest frequency / factor");
            Assert.That(yarnFactor, Is.EqualTo(0.1 * Math.Log(4) + 1).Within(1e-4).Percent);
            Assert.That(dynamicShort, Is.EqualTo(default64));
        });
    }

    // ---- properties ---------------------------------------------------------------------------------------

    /// <summary>A rotation keeps each head's length (attention factor 1), in both styles and with partial rotary.</summary>
    [TestCase(LlmkRopeStyle.Neox, 0)]
    [TestCase(LlmkRopeStyle.Gptj, 0)]
    [TestCase(LlmkRopeStyle.Neox, 40)]
    [TestCase(LlmkRopeStyle.Gptj, 16)]
    public void PreservesHeadNorms(LlmkRopeStyle style, int rotaryDim)
    {
        var rng = TestSupport.Rng($"{nameof(PreservesHeadNorms)} {style} {rotaryDim}");
        const int tokens = 9, heads = 3, headDim = 64;
        var values = RandomData.Floats(rng, tokens * heads * headDim);
        using var positions = Cpu.FromHost<long>(RandomPositions(rng, tokens, 100_000), LlmkDtype.I64, tokens);
        using var q = Cpu.FromFloats(values, LlmkDtype.F32, tokens, heads, headDim);
        Kernels.Rope(Cpu, positions, LlmkRopeParams.Create(10000, style, rotaryDim), q);
        var rotated = q.ToFloatArray();
        Assert.Multiple(() =>
        {
            for (int h = 0; h < tokens * heads; h++)
            {
                double before = Norm(values.AsSpan(h * headDim, headDim)), after = Norm(rotated.AsSpan(h * headDim, headDim));
                Assert.That(after, Is.EqualTo(before).Within(1e-3).Percent, $"head {h}");
            }
        });
    }

    /// <summary>q.k after rotating q at m and k at n depends only on m - n: shifting both by s changes nothing.
    /// Holds for every scaling (the frequencies only set the speed; the attention factor scales both sides).</summary>
    [TestCase(LlmkRopeStyle.Neox, LlmkRopeScaling.Default)]
    [TestCase(LlmkRopeStyle.Gptj, LlmkRopeScaling.Default)]
    [TestCase(LlmkRopeStyle.Neox, LlmkRopeScaling.Llama3)]
    [TestCase(LlmkRopeStyle.Gptj, LlmkRopeScaling.Yarn)]
    public void DotProductDependsOnlyOnRelativePosition(LlmkRopeStyle style, LlmkRopeScaling scaling)
    {
        var rng = TestSupport.Rng($"{nameof(DotProductDependsOnlyOnRelativePosition)} {style} {scaling}");
        const int pairs = 6, headDim = 128;
        var p = LlmkRopeParams.Create(500000, style, scaling: scaling, factor: 8, originalMaxPosition: 8192);
        // token 2i holds the pair at (m, n), token 2i + 1 the same vectors at (m + s, n + s)
        var qValues = RandomData.Floats(rng, pairs * headDim);
        var kValues = RandomData.Floats(rng, pairs * headDim);
        var qPositions = new long[2 * pairs];
        var kPositions = new long[2 * pairs];
        var q = new float[2 * pairs * headDim];
        var k = new float[2 * pairs * headDim];
        for (int i = 0; i < pairs; i++)
        {
            long m = rng.Next(0, 50_000), n = rng.Next(0, 50_000), s = rng.Next(1, 50_000);
            (qPositions[2 * i], qPositions[2 * i + 1], kPositions[2 * i], kPositions[2 * i + 1]) = (m, m + s, n, n + s);
            for (int copy = 0; copy < 2; copy++)
            {
                qValues.AsSpan(i * headDim, headDim).CopyTo(q.AsSpan((2 * i + copy) * headDim));
                kValues.AsSpan(i * headDim, headDim).CopyTo(k.AsSpan((2 * i + copy) * headDim));
            }
        }
        var qRotated = RotateOneHead(q, qPositions, p, headDim);
        var kRotated = RotateOneHead(k, kPositions, p, headDim);
        Assert.Multiple(() =>
        {
            for (int i = 0; i < pairs; i++)
            {
                double at = Dot(qRotated.AsSpan(2 * i * headDim, headDim), kRotated.AsSpan(2 * i * headDim, headDim));
                double shifted = Dot(qRotated.AsSpan((2 * i + 1) * headDim, headDim), kRotated.AsSpan((2 * i + 1) * headDim, headDim));
                Assert.That(shifted, Is.EqualTo(at).Within(1e-4), $"pair {i}: positions ({qPositions[2 * i]}, {kPositions[2 * i]}) shifted by {qPositions[2 * i + 1] - qPositions[2 * i]}");
            }
        });
    }

    /// <summary>Position 0 is the identity (times the attention factor 1).</summary>
    [Test]
    public void PositionZeroIsIdentity()
    {
        var values = RandomData.Floats(TestSupport.Rng(), 4 * 2 * 32);
        using var positions = Cpu.FromHost<int>(new int[4], LlmkDtype.I32, 4);
        using var q = Cpu.FromFloats(values, LlmkDtype.F32, 4, 2, 32);
        Kernels.Rope(Cpu, positions, LlmkRopeParams.Create(10000), q);
        Assert.That(q.ToFloatArray(), Is.EqualTo(values));
    }

    /// <summary>positions may be strided (e.g. one column of a [tokens, 2] table): the same result as a dense copy.</summary>
    [Test]
    public void StridedPositionsAreRead()
    {
        var rng = TestSupport.Rng();
        var values = RandomData.Floats(rng, 5 * 2 * 16);
        var table = RandomPositions(rng, 10, 5000);
        using var positionTable = Cpu.FromHost<long>(table, LlmkDtype.I64, 5, 2);
        using var column = positionTable.Select(1, 1);
        using var dense = Cpu.FromHost<long>(Enumerable.Range(0, 5).Select(t => table[2 * t + 1]).ToArray(), LlmkDtype.I64, 5);
        using var fromColumn = Cpu.FromFloats(values, LlmkDtype.F32, 5, 2, 16);
        using var fromDense = Cpu.FromFloats(values, LlmkDtype.F32, 5, 2, 16);
        Kernels.Rope(Cpu, column, LlmkRopeParams.Create(10000), fromColumn);
        Kernels.Rope(Cpu, dense, LlmkRopeParams.Create(10000), fromDense);
        Assert.Multiple(() =>
        {
            Assert.That(fromColumn.ToFloatArray(), Is.EqualTo(fromDense.ToFloatArray()));
            Assert.That(fromDense.ToFloatArray(), Is.Not.EqualTo(values), "the positions rotated something");
        });
    }

    /// <summary>Thread count does not change a bit.</summary>
    [Test]
    public void SameBitsForAnyThreadCount()
    {
        var rng = TestSupport.Rng();
        var values = RandomData.Floats(rng, 37 * 4 * 64);
        var positions = RandomPositions(rng, 37, 10_000);
        float[] Run(int threads)
        {
            using var ctx = Context.CreateCpu(threads);
            using var pos = ctx.FromHost<long>(positions, LlmkDtype.I64, 37);
            using var q = ctx.FromFloats(values, LlmkDtype.Bf16, 37, 4, 64);
            Kernels.Rope(ctx, pos, LlmkRopeParams.Create(10000, LlmkRopeStyle.Gptj), q);
            return q.ToFloatArray();
        }
        Assert.That(Run(2), Is.EqualTo(Run(1)));
    }

    // ---- validation ---------------------------------------------------------------------------------------

    /// <summary>Every invalid field of the parameters, through llmk_rope and llmk_rope_frequencies: the status and a
    /// message naming the field.</summary>
    private static IEnumerable<TestCaseData> BadParams()
    {
        TestCaseData Case(string name, LlmkRopeParams p, string mention, LlmkStatus status = LlmkStatus.InvalidArgument) =>
            new TestCaseData(p, status, mention).SetName($"{{m}} {name}");
        var yarn = LlmkRopeParams.Create(10000, scaling: LlmkRopeScaling.Yarn, factor: 4, originalMaxPosition: 4096);
        var llama3 = LlmkRopeParams.Create(500000, scaling: LlmkRopeScaling.Llama3, factor: 8, originalMaxPosition: 8192);
        var dynamic = LlmkRopeParams.Create(10000, scaling: LlmkRopeScaling.Dynamic, factor: 2, originalMaxPosition: 2048);
        yield return Case("style 2", LlmkRopeParams.Create(10000) with { style = (LlmkRopeStyle)2 }, "params->style");
        yield return Case("scaling -1", LlmkRopeParams.Create(10000) with { scaling = (LlmkRopeScaling)(-1) }, "params->scaling");
        yield return Case("rotary_dim odd", LlmkRopeParams.Create(10000, rotaryDim: 7), "params->rotary_dim");
        yield return Case("rotary_dim negative", LlmkRopeParams.Create(10000, rotaryDim: -2), "params->rotary_dim");
        yield return Case("rotary_dim over head_dim", LlmkRopeParams.Create(10000, rotaryDim: 34), "params->rotary_dim");
        yield return Case("theta 0", LlmkRopeParams.Create(0), "params->theta");
        yield return Case("theta NaN", LlmkRopeParams.Create(float.NaN), "params->theta");
        yield return Case("theta infinite", LlmkRopeParams.Create(float.PositiveInfinity), "params->theta");
        yield return Case("linear factor 0", LlmkRopeParams.Create(10000, scaling: LlmkRopeScaling.Linear, factor: 0), "params->factor");
        yield return Case("yarn factor negative", yarn with { factor = -4 }, "params->factor");
        yield return Case("dynamic original_max_position 0", dynamic with { original_max_position = 0 }, "params->original_max_position");
        yield return Case("dynamic seq_len negative", dynamic with { seq_len = -1 }, "params->seq_len");
        yield return Case("dynamic rotary_dim 2", dynamic with { rotary_dim = 2 }, "params->rotary_dim");
        yield return Case("llama3 original_max_position 0", llama3 with { original_max_position = 0 }, "params->original_max_position");
        yield return Case("llama3 low_freq_factor negative", llama3 with { low_freq_factor = -1 }, "params->low_freq_factor");
        yield return Case("llama3 high_freq_factor not above low", llama3 with { low_freq_factor = 4, high_freq_factor = 2 }, "params->high_freq_factor");
        yield return Case("yarn original_max_position negative", yarn with { original_max_position = -5 }, "params->original_max_position");
        yield return Case("yarn beta_fast negative", yarn with { beta_fast = -32 }, "params->beta_fast");
        yield return Case("yarn beta_slow NaN", yarn with { beta_slow = float.NaN }, "params->beta_slow");
        yield return Case("yarn mscale negative", yarn with { mscale = -1 }, "params->mscale");
        yield return Case("yarn attention_factor NaN", yarn with { attention_factor = float.NaN }, "params->attention_factor");
        yield return Case("yarn truncate 2", yarn with { truncate = 2 }, "params->truncate");
        yield return Case("yarn theta 1", yarn with { theta = 1 }, "params->theta");
        yield return Case("theta so small the frequencies overflow f32", LlmkRopeParams.Create(float.Epsilon), "inverse frequency");
    }

    [TestCaseSource(nameof(BadParams))]
    public void RejectsBadParams(LlmkRopeParams p, LlmkStatus status, string mention)
    {
        using var positions = Cpu.FromHost<long>(new long[] { 3, 4 }, LlmkDtype.I64, 2);
        var values = RandomData.Floats(TestSupport.Rng(), 2 * 2 * 32);
        using var q = Cpu.FromFloats(values, LlmkDtype.F32, 2, 2, 32);
        TestSupport.ExpectStatus(status, () => Kernels.Rope(Cpu, positions, p, q), "llmk_rope", mention);
        TestSupport.ExpectStatus(status, () => p.Frequencies(32), "llmk_rope_frequencies", mention);
        Assert.That(q.ToFloatArray(), Is.EqualTo(values), "q is untouched");
    }

    [Test]
    public void RejectsBadFrequencyArguments()
    {
        var p = LlmkRopeParams.Create(10000);
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => p.Frequencies(-4), "llmk_rope_frequencies", "head_dim");
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => p.Frequencies(0), "llmk_rope_frequencies", "rotary_dim");
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => RawFrequencies(null, true, true), "llmk_rope_frequencies", "params");
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => RawFrequencies(p, false, true), "llmk_rope_frequencies", "out_inv_freq");
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => RawFrequencies(p, true, false), "llmk_rope_frequencies", "out_attention_factor");
        // head_dim 0 takes rotary_dim
        Assert.That(LlmkRopeParams.Create(10000, rotaryDim: 8).Frequencies(0).InvFreq, Has.Length.EqualTo(4));
    }

    /// <summary>Every tensor validation of llmk_rope; q must come back untouched each time.</summary>
    [Test]
    public void RejectsBadTensors()
    {
        var p = LlmkRopeParams.Create(10000);
        var values = RandomData.Floats(TestSupport.Rng(), 3 * 4 * 32);
        using var positions = Cpu.FromHost<long>(new long[] { 1, 2, 3 }, LlmkDtype.I64, 3);
        using var q = Cpu.FromFloats(values, LlmkDtype.F32, 3, 4, 32);
        using var k = Cpu.Allocate(LlmkDtype.F32, 3, 2, 32);
        k.Fill(0.5f);

        void Expect(LlmkStatus status, TestDelegate call, string mention) => TestSupport.ExpectStatus(status, call, "llmk_rope", mention);
        using (var floatPositions = Cpu.FromFloats([1f, 2f, 3f], LlmkDtype.F32, 3))
            Expect(LlmkStatus.DtypeMismatch, () => Kernels.Rope(Cpu, floatPositions, p, q, k), "positions");
        using (var shortPositions = Cpu.FromHost<long>(new long[] { 1, 2 }, LlmkDtype.I64, 2))
            Expect(LlmkStatus.ShapeMismatch, () => Kernels.Rope(Cpu, shortPositions, p, q, k), "positions");
        using (var columnPositions = Cpu.FromHost<long>(new long[] { 1, 2, 3 }, LlmkDtype.I64, 3, 1))
            Expect(LlmkStatus.ShapeMismatch, () => Kernels.Rope(Cpu, columnPositions, p, q, k), "positions");
        using (var negative = Cpu.FromHost<int>(new[] { 5, -1, 7 }, LlmkDtype.I32, 3))
            Expect(LlmkStatus.OutOfRange, () => Kernels.Rope(Cpu, negative, p, q, k), "positions[1]");
        using (var flat = q.Reshape(3, 128))
            Expect(LlmkStatus.ShapeMismatch, () => Kernels.Rope(Cpu, positions, p, flat, k), "q");
        using (var ints = Cpu.Allocate(LlmkDtype.I32, 3, 4, 32))
            Expect(LlmkStatus.DtypeMismatch, () => Kernels.Rope(Cpu, positions, p, ints, k), "q");
        using (var halfK = Cpu.Allocate(LlmkDtype.F16, 3, 2, 32))
            Expect(LlmkStatus.DtypeMismatch, () => Kernels.Rope(Cpu, positions, p, q, halfK), "k");
        using (var wideK = Cpu.Allocate(LlmkDtype.F32, 3, 2, 64))
            Expect(LlmkStatus.ShapeMismatch, () => Kernels.Rope(Cpu, positions, p, q, wideK), "k");
        using (var longK = Cpu.Allocate(LlmkDtype.F32, 4, 2, 32))
            Expect(LlmkStatus.ShapeMismatch, () => Kernels.Rope(Cpu, positions, p, q, longK), "k");
        using (var empty = Cpu.Allocate(LlmkDtype.F32, 3, 4, 0))
            Expect(LlmkStatus.ShapeMismatch, () => Kernels.Rope(Cpu, positions, p, empty), "head_dim");
        // every other feature: innermost stride 2
        using (var strided = Tensor.FromPointer(Cpu, q.DataPointer, LlmkDtype.F32, [3, 2, 32], q, [128, 64, 2]))
            Expect(LlmkStatus.BadStride, () => Kernels.Rope(Cpu, positions, p, strided), "q");
        // every head on the same memory: rotated several times over
        using (var broadcast = Tensor.FromPointer(Cpu, q.DataPointer, LlmkDtype.F32, [3, 4, 32], q, [128, 0, 1]))
            Expect(LlmkStatus.BadStride, () => Kernels.Rope(Cpu, positions, p, broadcast), "q");
        // k over q's last two heads
        using (var overlapping = q.Slice(1, 2, 2))
            Expect(LlmkStatus.InvalidArgument, () => Kernels.Rope(Cpu, positions, p, q, overlapping), "k");

        var cudaQ = q.Native;
        cudaQ.device_type = LlmkDeviceType.Cuda;
        Expect(LlmkStatus.WrongDevice, () => RawRope(Cpu.Pointer, positions.Native, p, cudaQ), "q");
        Expect(LlmkStatus.NullPointer, () => RawRope(0, positions.Native, p, q.Native), "context");
        Expect(LlmkStatus.NullPointer, () => RawRope(Cpu.Pointer, null, p, q.Native), "positions");
        Expect(LlmkStatus.NullPointer, () => RawRope(Cpu.Pointer, positions.Native, p, null), "q");
        Expect(LlmkStatus.NullPointer, () => RawRope(Cpu.Pointer, positions.Native, null, q.Native), "params");
        Assert.That(q.ToFloatArray(), Is.EqualTo(values), "q is untouched by every rejected call");
    }

    // ---- helpers ------------------------------------------------------------------------------------------

    /// <summary>llmk_rope on raw views, null standing for a NULL pointer.</summary>
    private static unsafe void RawRope(nint ctx, LlmkTensor? positions, LlmkRopeParams? p, LlmkTensor? q, LlmkTensor? k = null)
    {
        LlmkTensor ps = positions ?? default, qs = q ?? default, ks = k ?? default;
        LlmkRopeParams pp = p ?? default;
        Native.Check(NativeMethods.llmk_rope(ctx, positions is null ? null : &ps, p is null ? null : &pp,
                                             q is null ? null : &qs, k is null ? null : &ks));
    }

    /// <summary>llmk_rope_frequencies for a head of 32, with or without each output pointer.</summary>
    private static unsafe void RawFrequencies(LlmkRopeParams? p, bool invFreq, bool attentionFactor)
    {
        var freq = new float[16];
        float factor;
        LlmkRopeParams pp = p ?? default;
        fixed (float* f = freq)
            Native.Check(NativeMethods.llmk_rope_frequencies(p is null ? null : &pp, 32, invFreq ? f : null,
                                                             attentionFactor ? &factor : null));
    }

    private float[] RotateOneHead(float[] values, long[] positions, LlmkRopeParams p, int headDim)
    {
        using var pos = Cpu.FromHost<long>(positions, LlmkDtype.I64, positions.Length);
        using var t = Cpu.FromFloats(values, LlmkDtype.F32, positions.Length, 1, headDim);
        Kernels.Rope(Cpu, pos, p, t);
        return t.ToFloatArray();
    }

    private static long[] RandomPositions(Random rng, int count, long max) =>
        Enumerable.Range(0, count).Select(_ => rng.NextInt64(max)).ToArray();

    private static double Norm(ReadOnlySpan<float> v) => Math.Sqrt(Dot(v, v));

    private static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
            sum += (double)a[i] * b[i];
        return sum;
    }
}
