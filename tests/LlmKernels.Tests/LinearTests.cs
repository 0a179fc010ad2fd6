namespace LlmKernels.Tests;

/// <summary>llmk_linear: the shared checks against the double-precision oracle, the fixed summation order
/// (thread count and batch independence), and every validation.</summary>
public class LinearTests : KernelFamilyTests<LinearTests>, IKernelFamily<LinearTests>
{
    public static IEnumerable<KernelCheck> CpuChecks() => Checks.LinearChecks();

    private static byte[] RunLinear(Context ctx, float[] x, int rows, float[] w, float[] b, int inFeatures, int outFeatures)
    {
        using var xs = ctx.FromFloats(x, LlmkDtype.F32, rows, inFeatures);
        using var ws = ctx.FromFloats(w, LlmkDtype.Bf16, outFeatures, inFeatures);
        using var bs = ctx.FromFloats(b, LlmkDtype.F32, outFeatures);
        using var y = ctx.Allocate(LlmkDtype.F32, rows, outFeatures);
        Kernels.Linear(ctx, xs, ws, bs, y);
        return y.ToArray<byte>();
    }

    /// <summary>Bit-identical outputs for 1 to 4 threads, on each CPU flavour; shapes that take every tile of the
    /// fast kernels (prefill tiles, decode tiles, edge columns and rows, the scalar tail of k).</summary>
    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.CpuFlavours))]
    public void ResultsDoNotDependOnTheThreadCount(LlmkCpuKernels kernels)
    {
        var rng = TestSupport.Rng();
        const int rows = 13, inFeatures = 300, outFeatures = 77;
        var x = RandomData.Floats(rng, rows * inFeatures);
        var w = RandomData.Floats(rng, outFeatures * inFeatures);
        var b = RandomData.Floats(rng, outFeatures);
        using var single = TestSupport.CpuOrIgnore(kernels, 1);
        var reference = RunLinear(single, x, rows, w, b, inFeatures, outFeatures);
        for (int threads = 2; threads <= 4; threads++)
        {
            using var ctx = Context.CreateCpu(threads, kernels);
            Assert.That(RunLinear(ctx, x, rows, w, b, inFeatures, outFeatures), Is.EqualTo(reference), $"{threads} threads");
        }
    }

    /// <summary>The reference: a row's result does not depend on the rows computed with it (decode equals prefill,
    /// bit for bit). The fast kernels promise less: a decode row and a prefill tile sum in different orders.</summary>
    [Test]
    public void EachRowIsIndependentOfTheBatch()
    {
        const LlmkCpuKernels kernels = LlmkCpuKernels.Reference;
        var rng = TestSupport.Rng();
        const int rows = 11, inFeatures = 129, outFeatures = 35;
        var x = RandomData.Floats(rng, rows * inFeatures);
        var w = RandomData.Floats(rng, outFeatures * inFeatures);
        var b = RandomData.Floats(rng, outFeatures);
        using var ctx = TestSupport.CpuOrIgnore(kernels);
        var batch = RunLinear(ctx, x, rows, w, b, inFeatures, outFeatures);
        int rowBytes = outFeatures * sizeof(float);
        for (int r = 0; r < rows; r++)
        {
            var alone = RunLinear(ctx, x.AsSpan(r * inFeatures, inFeatures).ToArray(), 1, w, b, inFeatures, outFeatures);
            Assert.That(alone, Is.EqualTo(batch.AsSpan(r * rowBytes, rowBytes).ToArray()), $"row {r}");
        }
    }

    /// <summary>A quantized weight: every CPU flavour gives an output the same bits whatever the thread count and
    /// whatever rows of x come with it (the fast kernels' eight-row panels and four-row tiles included), since
    /// its sum runs in one order. 77 outputs: nine panels and a tail; 13 rows: three tiles and a tail.</summary>
    [Test]
    public void QuantizedResultsDoNotDependOnThreadsOrBatch(
        [ValueSource(typeof(TestSupport), nameof(TestSupport.CpuFlavours))] LlmkCpuKernels kernels,
        [ValueSource(typeof(Checks), nameof(Checks.QuantizedWeights))] LlmkDtype dtype)
    {
        var rng = TestSupport.Rng($"{nameof(QuantizedResultsDoNotDependOnThreadsOrBatch)} {kernels} {dtype}");
        const int rows = 13, outFeatures = 77;
        int inFeatures = 2 * (int)Tensor.BlockOf(dtype).Elements;
        var x = RandomData.Floats(rng, rows * inFeatures);
        var blocks = QuantOracle.RandomBlocks(rng, dtype, (long)outFeatures * inFeatures, 0.1);
        var b = RandomData.Floats(rng, outFeatures);
        byte[] Run(Context ctx, int first, int count)
        {
            using var xs = ctx.FromFloats(x.AsSpan(first * inFeatures, count * inFeatures).ToArray(), LlmkDtype.F32, count, inFeatures);
            using var ws = ctx.FromHost<byte>(blocks, dtype, outFeatures, inFeatures);
            using var bs = ctx.FromFloats(b, LlmkDtype.F32, outFeatures);
            using var y = ctx.Allocate(LlmkDtype.F32, count, outFeatures);
            y.Poison();
            Kernels.Linear(ctx, xs, ws, bs, y);
            return y.ToArray<byte>();
        }
        using var single = TestSupport.CpuOrIgnore(kernels, 1);
        var batch = Run(single, 0, rows);
        for (int threads = 2; threads <= 3; threads++)
        {
            using var ctx = Context.CreateCpu(threads, kernels);
            Assert.That(Run(ctx, 0, rows), Is.EqualTo(batch), $"{threads} threads");
        }
        int rowBytes = outFeatures * sizeof(float);
        for (int r = 0; r < rows; r++)
            Assert.That(Run(single, r, 1), Is.EqualTo(batch.AsSpan(r * rowBytes, rowBytes).ToArray()), $"row {r} alone");
    }

    /// <summary>Every flavour rounds x to 8 bits the same way, to the bit: a weight whose row j is element j
    /// alone (code 1, scale 1) makes y[r, j] = d * q of x[r, j] exactly, whatever order a kernel sums in. x holds
    /// exact ties (a group whose max is 127, so d = 1), zeros, a negative zero, subnormals and magnitudes from
    /// 1e-30 to 1e30. Q8_0 rounds in groups of 32, Q4_K in groups of 256.</summary>
    [Test]
    public void EveryFlavourRoundsXTheSame([Values(LlmkDtype.Q8_0, LlmkDtype.Q4_K)] LlmkDtype dtype)
    {
        var rng = TestSupport.Rng($"{nameof(EveryFlavourRoundsXTheSame)} {dtype}");
        const int rows = 6, k = 512;
        var x = new float[rows * k];
        for (int i = 0; i < x.Length; i++)
            x[i] = (float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-30, 31)));
        for (int i = 0; i < k; i++) // row 0: a group max of 127 and exact ties
            x[i] = i % 32 == 0 ? 127f : rng.Next(-126, 126) + 0.5f;
        x[k] = 0f;
        x[k + 1] = -0f;
        x[k + 2] = 1e-40f;
        var blocks = IdentityBlocks(dtype, k);
        byte[]? expected = null;
        foreach (var kernels in TestSupport.CpuFlavours)
        {
            if (!Context.CpuKernelsAvailable(kernels, out _))
                continue;
            using var ctx = Context.CreateCpu(1, kernels);
            using var xs = ctx.FromFloats(x, LlmkDtype.F32, rows, k);
            using var ws = ctx.FromHost<byte>(blocks, dtype, k, k);
            using var y = ctx.Allocate(LlmkDtype.F32, rows, k);
            y.Poison();
            Kernels.Linear(ctx, xs, ws, null, y);
            var bits = y.ToArray<byte>();
            if (expected is null)
                expected = bits;
            else
                Assert.That(bits, Is.EqualTo(expected), $"{kernels} against the reference");
        }
        Assert.That(BitConverter.ToSingle(expected!, 4), Is.EqualTo(RoundedTie(x[1])), "a tie rounds to even");
    }

    /// <summary>The nearest-even code of a tie when d = 1.</summary>
    private static float RoundedTie(float v) => (float)Math.Round(v, MidpointRounding.ToEven);

    /// <summary>A k x k weight whose row j is 1 at element j and 0 elsewhere (scales 1, mins 0).</summary>
    private static byte[] IdentityBlocks(LlmkDtype dtype, int k)
    {
        var (elements, bytes) = Tensor.BlockOf(dtype);
        var w = new byte[(long)k * (k / elements) * bytes];
        const ushort one = 0x3C00; // f16 1.0
        for (int j = 0; j < k; j++)
            for (int b = 0; b < k / elements; b++)
            {
                var block = w.AsSpan((int)((j * (k / elements) + b) * bytes), (int)bytes);
                BitConverter.TryWriteBytes(block, one);
                int e = j - b * (int)elements;
                bool here = e >= 0 && e < elements;
                if (dtype == LlmkDtype.Q8_0)
                {
                    if (here)
                        block[2 + e] = 1;
                    continue;
                }
                // Q4_K: d = 1, dmin = 0, the 6-bit scales 1 and mins 0 (scales[0..3] and the low nibbles of
                // scales[8..11]), codes in 64-element groups of 32 bytes, low nibbles first.
                for (int s = 0; s < 4; s++)
                {
                    block[4 + s] = 1;
                    block[12 + s] = 1;
                }
                if (here)
                    block[16 + 32 * (e / 64) + e % 32] = (byte)(e % 64 < 32 ? 0x01 : 0x10);
            }
        return w;
    }

    [Test]
    public void RejectsBadArguments()
    {
        using var x = Cpu.Allocate(LlmkDtype.F32, 3, 8);
        using var w = Cpu.Allocate(LlmkDtype.Bf16, 5, 8);
        using var b = Cpu.Allocate(LlmkDtype.F32, 5);
        using var y = Cpu.Allocate(LlmkDtype.F32, 3, 5);
        void Expect(LlmkStatus status, TestDelegate call, params string[] mentions) =>
            TestSupport.ExpectStatus(status, call, ["llmk_linear:", .. mentions]);

        using var wNarrow = Cpu.Allocate(LlmkDtype.Bf16, 5, 7);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.Linear(Cpu, x, wNarrow, b, y), "weight", "in_features", "= 8");
        using var bShort = Cpu.Allocate(LlmkDtype.F32, 4);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.Linear(Cpu, x, w, bShort, y), "bias", "out_features", "= 5");
        using var yWrongRows = Cpu.Allocate(LlmkDtype.F32, 4, 5);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.Linear(Cpu, x, w, b, yWrongRows), "y", "rows", "= 3");
        using var yBf16 = Cpu.Allocate(LlmkDtype.Bf16, 3, 5);
        Expect(LlmkStatus.DtypeMismatch, () => Kernels.Linear(Cpu, x, w, b, yBf16), "y has dtype bf16 but x has dtype f32");
        using var xInt = Cpu.Allocate(LlmkDtype.I32, 3, 8);
        Expect(LlmkStatus.DtypeMismatch, () => Kernels.Linear(Cpu, xInt, w, b, y), "x has dtype i32");
        using var x3 = Cpu.Allocate(LlmkDtype.F32, 1, 3, 8);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.Linear(Cpu, x3, w, b, y), "x must have rank 2");
        using var wColumns = Tensor.FromPointer(Cpu, w.DataPointer, LlmkDtype.Bf16, [5, 4], w, [8, 2]);
        using var xHalf = x.Slice(1, 0, 4);
        Expect(LlmkStatus.BadStride, () => Kernels.Linear(Cpu, xHalf, wColumns, b, y), "weight", "contiguous");
        using var wNegative = Tensor.FromPointer(Cpu, w.DataPointer, LlmkDtype.Bf16, [5, 8], w, [-8, 1]);
        Expect(LlmkStatus.BadStride, () => Kernels.Linear(Cpu, x, wNegative, b, y), "weight", "negative stride");
        using var huge = Tensor.FromPointer(Cpu, x.DataPointer, LlmkDtype.F32, [1L << 40, 1L << 40], x);
        Expect(LlmkStatus.Overflow, () => Kernels.Linear(Cpu, huge, w, b, y), "x", "overflows");
        using var nullData = Tensor.FromPointer(Cpu, 0, LlmkDtype.Bf16, [5, 8], null);
        Expect(LlmkStatus.NullPointer, () => Kernels.Linear(Cpu, x, nullData, b, y), "weight has a NULL data pointer");
        // y over x's memory would overwrite inputs still to be read.
        using var yOverX = Tensor.FromPointer(Cpu, x.DataPointer, LlmkDtype.F32, [3, 5], x);
        Expect(LlmkStatus.InvalidArgument, () => Kernels.Linear(Cpu, x, w, b, yOverX), "y overlaps x");
    }

    [Test]
    public unsafe void NullPointersAreRefused()
    {
        using var x = Cpu.Allocate(LlmkDtype.F32, 3, 8);
        using var w = Cpu.Allocate(LlmkDtype.F32, 5, 8);
        using var y = Cpu.Allocate(LlmkDtype.F32, 3, 5);
        LlmkTensor xs = x.Native, ws = w.Native, ys = y.Native;
        void Expect(string mention, LlmkStatus status) =>
            TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => Native.Check(status), "llmk_linear", mention);
        Expect("context is NULL", NativeMethods.llmk_linear(0, &xs, &ws, null, &ys));
        Expect("x is NULL", NativeMethods.llmk_linear(Cpu.Pointer, null, &ws, null, &ys));
        Expect("weight is NULL", NativeMethods.llmk_linear(Cpu.Pointer, &xs, null, null, &ys));
        Expect("y is NULL", NativeMethods.llmk_linear(Cpu.Pointer, &xs, &ws, null, null));
    }

    /// <summary>A quantized weight follows the block rules: rows of whole blocks (in_features 48 is not whole Q8_0
    /// blocks of 32, nor 512 + 32 whole Q4_K super-blocks of 256), contiguous, row strides of whole blocks; an
    /// unknown dtype has no block.</summary>
    [Test]
    public unsafe void RejectsQuantizedWeightsThatBreakTheBlockRules()
    {
        void Expect(LlmkStatus status, TestDelegate call, params string[] mentions) =>
            TestSupport.ExpectStatus(status, call, ["llmk_linear:", .. mentions]);
        using var x48 = Cpu.Allocate(LlmkDtype.F32, 2, 48);
        using var y = Cpu.Allocate(LlmkDtype.F32, 2, 4);
        using var q8 = Cpu.Allocate(LlmkDtype.Q8_0, 4, 64); // 4 rows of 2 blocks
        using var partial = Tensor.FromPointer(Cpu, q8.DataPointer, LlmkDtype.Q8_0, [4, 48], q8, [64, 1]);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.Linear(Cpu, x48, partial, null, y), "weight", "multiple of 32");
        using var x544 = Cpu.Allocate(LlmkDtype.F32, 2, 544);
        using var q4k = Cpu.Allocate(LlmkDtype.Q4_K, 4, 768);
        using var q4kPartial = Tensor.FromPointer(Cpu, q4k.DataPointer, LlmkDtype.Q4_K, [4, 544], q4k, [768, 1]);
        Expect(LlmkStatus.ShapeMismatch, () => Kernels.Linear(Cpu, x544, q4kPartial, null, y), "weight", "multiple of 256");
        using var x32 = Cpu.Allocate(LlmkDtype.F32, 2, 32);
        using var offBlock = Tensor.FromPointer(Cpu, q8.DataPointer, LlmkDtype.Q8_0, [4, 32], q8, [48, 1]);
        Expect(LlmkStatus.BadStride, () => Kernels.Linear(Cpu, x32, offBlock, null, y), "weight", "stride 48", "block of 32");
        using var strided = Tensor.FromPointer(Cpu, q8.DataPointer, LlmkDtype.Q8_0, [2, 32], q8, [64, 2]);
        using var y2 = Cpu.Allocate(LlmkDtype.F32, 2, 2);
        Expect(LlmkStatus.BadStride, () => Kernels.Linear(Cpu, x32, strided, null, y2), "weight", "contiguous");

        TestSupport.ExpectStatus(LlmkStatus.DtypeMismatch, () => Tensor.BlockOf((LlmkDtype)99), "llmk_dtype_block", "unknown dtype 99");
        long bytes;
        var noElements = NativeMethods.llmk_dtype_block((int)LlmkDtype.Q8_0, null, &bytes);
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => Native.Check(noElements), "llmk_dtype_block", "NULL");
    }

    /// <summary>llmk_dtype_name: every dtype's short name, as the messages spell it, and "unknown" past them.</summary>
    [Test]
    public unsafe void DtypeNames()
    {
        string Name(int dtype) => System.Runtime.InteropServices.Marshal.PtrToStringUTF8((nint)NativeMethods.llmk_dtype_name(dtype))!;
        string[] expected = ["f32", "f16", "bf16", "i32", "i64", "q8_0", "q4_0", "q4_k", "q6_k"];
        Assert.That(Enumerable.Range(0, expected.Length).Select(Name), Is.EqualTo(expected));
        Assert.That(Enum.GetValues<LlmkDtype>().Where(d => d != LlmkDtype.Count).Select(d => Name((int)d)), Is.EqualTo(expected), "one name per dtype");
        Assert.That(Name(99), Is.EqualTo("unknown"));
        Assert.That(Name(-1), Is.EqualTo("unknown"));
    }

    /// <summary>Quantized to quantized is no conversion the library makes.</summary>
    [Test]
    public void ConvertRefusesQuantizedToQuantized()
    {
        using var q8 = Cpu.Allocate(LlmkDtype.Q8_0, 2, 256);
        using var q4k = Cpu.Allocate(LlmkDtype.Q4_K, 2, 256);
        TestSupport.ExpectStatus(LlmkStatus.DtypeMismatch, () => Kernels.Convert(Cpu, q8, q4k), "llmk_convert", "q8_0", "q4_k");
    }
}
