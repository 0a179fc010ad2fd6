namespace LlmKernels.Tests;

/// <summary>llmk_add, llmk_convert and llmk_embedding: the shared checks against the oracle, conversions bit for bit
/// against .NET's Half and an independent bf16 rounding (NaN, infinities, subnormals, ties), integer conversions,
/// and every validation.</summary>
public class ElementwiseTests : KernelFamilyTests<ElementwiseTests>, IKernelFamily<ElementwiseTests>
{
    public static IEnumerable<KernelCheck> CpuChecks() => Checks.ElementwiseChecks();

    // ---- conversions, bit for bit --------------------------------------------------------------------------

    /// <summary>Values where rounding is delicate, then random bit patterns (every exponent, NaNs included).</summary>
    private static float[] DelicateFloats(Random rng)
    {
        var values = new List<float>
        {
            0f, -0f, float.NaN, -float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.MinValue,
            float.Epsilon, -float.Epsilon, 1e-40f, -1e-39f,             // f32 subnormals
            65504f, 65519.99f, 65520f, -65520f, 1e6f,                    // f16 max, the overflow threshold
            6.1035156e-5f, 6.0e-5f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 8.9406967e-8f, 1e-9f, // f16 subnormals, halfway points
            1f + 1f / 2048, 1f + 3f / 2048, 1f + 1f / 256, 1f + 3f / 256, // f16 and bf16 ties to even
            BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000),
            BitConverter.UInt32BitsToSingle(0x3F808001), BitConverter.UInt32BitsToSingle(0x7F7FFFFF),
            BitConverter.UInt32BitsToSingle(0x7F800001), BitConverter.UInt32BitsToSingle(0xFFC12345), // NaN payloads
        };
        var bits = new byte[4];
        for (int i = 0; i < 4000; i++)
        {
            rng.NextBytes(bits);
            values.Add(BitConverter.ToSingle(bits));
        }
        for (int i = 0; i < 1000; i++) // and ordinary magnitudes, where most data lives
            values.Add((float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-30, 20))));
        return [.. values];
    }

    /// <summary>bf16 reference: truncate to the bf16 below (toward zero), then step up one ulp when the dropped
    /// half is more than half an ulp, or exactly half with an odd result. NaN stays NaN.</summary>
    private static ushort Bf16Reference(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
            return (ushort)(bits >> 16 | 0x40); // quiet
        uint kept = bits >> 16, dropped = bits & 0xFFFF;
        bool up = dropped > 0x8000 || (dropped == 0x8000 && (kept & 1) == 1);
        return (ushort)(up ? kept + 1 : kept); // carries into the exponent, up to infinity, as they should
    }

    private static bool IsNaN16(ushort bits, bool bf16) =>
        bf16 ? (bits & 0x7F80) == 0x7F80 && (bits & 0x7F) != 0 : (bits & 0x7C00) == 0x7C00 && (bits & 0x3FF) != 0;

    private static void AssertSameBits(float[] source, ushort[] expected, ushort[] actual, bool bf16)
    {
        Assert.Multiple(() =>
        {
            for (int i = 0; i < source.Length; i++)
            {
                string what = $"{source[i]:R} (0x{BitConverter.SingleToUInt32Bits(source[i]):X8})";
                if (IsNaN16(expected[i], bf16)) // NaN payloads are not specified; NaN-ness is
                    Assert.That(IsNaN16(actual[i], bf16), Is.True, $"{what} -> 0x{actual[i]:X4}, expected a NaN");
                else
                    Assert.That(actual[i], Is.EqualTo(expected[i]), $"{what}: 0x{actual[i]:X4} instead of 0x{expected[i]:X4}");
            }
        });
    }

    /// <summary>f32 narrowed as .NET's Half rounds (f16) and to nearest even (bf16), on the delicate values.</summary>
    [TestCase(LlmkDtype.F16)]
    [TestCase(LlmkDtype.Bf16)]
    public void F32NarrowsToNearestEven(LlmkDtype dtype)
    {
        var values = DelicateFloats(TestSupport.Rng());
        using var src = Cpu.FromHost<float>(values, LlmkDtype.F32, values.Length);
        using var output = Cpu.Allocate(dtype, values.Length);
        output.Poison();
        Kernels.Convert(Cpu, src, output);
        bool bf16 = dtype == LlmkDtype.Bf16;
        var expected = values.Select(v => bf16 ? Bf16Reference(v) : BitConverter.HalfToUInt16Bits((Half)v)).ToArray();
        AssertSameBits(values, expected, output.ToArray<ushort>(), bf16);
    }

    /// <summary>Every f16 and every bf16 bit pattern widens to f32 exactly (f16 as .NET's Half does).</summary>
    [TestCase(LlmkDtype.F16)]
    [TestCase(LlmkDtype.Bf16)]
    public void Every16BitPatternWidensExactly(LlmkDtype dtype)
    {
        var patterns = Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();
        using var src = Cpu.FromHost<ushort>(patterns, dtype, patterns.Length);
        using var output = Cpu.Allocate(LlmkDtype.F32, patterns.Length);
        output.Poison();
        Kernels.Convert(Cpu, src, output);
        var actual = output.ToArray<float>();
        Assert.Multiple(() =>
        {
            for (int i = 0; i < patterns.Length; i++)
            {
                float expected = dtype == LlmkDtype.F16
                    ? (float)BitConverter.UInt16BitsToHalf(patterns[i])
                    : BitConverter.UInt32BitsToSingle((uint)patterns[i] << 16);
                if (float.IsNaN(expected))
                    Assert.That(float.IsNaN(actual[i]), Is.True, $"0x{patterns[i]:X4}");
                else
                    Assert.That(BitConverter.SingleToUInt32Bits(actual[i]), Is.EqualTo(BitConverter.SingleToUInt32Bits(expected)),
                                $"0x{patterns[i]:X4}: {actual[i]:R} instead of {expected:R}");
            }
        });
    }

    /// <summary>Same dtype: a copy that keeps every bit, NaN payloads included.</summary>
    [Test]
    public void SameDtypeConversionKeepsTheBits()
    {
        var patterns = Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();
        using var src = Cpu.FromHost<ushort>(patterns, LlmkDtype.F16, 256, 256);
        using var output = Cpu.Allocate(LlmkDtype.F16, 256, 256);
        output.Poison();
        Kernels.Convert(Cpu, src, output);
        Assert.That(output.ToArray<ushort>(), Is.EqualTo(patterns));
    }

    [Test]
    public void IntegerConversionsWidenAndNarrow()
    {
        int[] narrow = [0, 1, -1, int.MaxValue, int.MinValue, 123456];
        using var i32 = Cpu.FromHost<int>(narrow, LlmkDtype.I32, 2, 3);
        using var i64 = Cpu.Allocate(LlmkDtype.I64, 2, 3);
        using var back = Cpu.Allocate(LlmkDtype.I32, 2, 3);
        i64.Poison();
        back.Poison();
        Kernels.Convert(Cpu, i32, i64);
        Kernels.Convert(Cpu, i64, back);
        Assert.That(i64.ToArray<long>(), Is.EqualTo(narrow.Select(v => (long)v).ToArray()));
        Assert.That(back.ToArray<int>(), Is.EqualTo(narrow));
    }

    [TestCase(1L << 31)]
    [TestCase(-(1L << 31) - 1)]
    public void I64ThatDoesNotFitI32IsOutOfRangeAndNothingIsWritten(long value)
    {
        using var i64 = Cpu.FromHost<long>([5, 6, value, 7], LlmkDtype.I64, 4);
        using var i32 = Cpu.Allocate(LlmkDtype.I32, 4);
        i32.Poison();
        TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Kernels.Convert(Cpu, i64, i32), "llmk_convert:", $"{value}", "element 2");
        Assert.That(i32.ToArray<int>(), Is.All.EqualTo(-1), "written before the values were checked");
    }

    [Test]
    public void FloatingToIntegerIsADtypeMismatch()
    {
        using var f = Cpu.Allocate(LlmkDtype.F32, 4);
        using var i = Cpu.Allocate(LlmkDtype.I32, 4);
        TestSupport.ExpectStatus(LlmkStatus.DtypeMismatch, () => Kernels.Convert(Cpu, f, i), "llmk_convert:", "src has dtype f32", "out has dtype i32");
        TestSupport.ExpectStatus(LlmkStatus.DtypeMismatch, () => Kernels.Convert(Cpu, i, f), "llmk_convert:", "src has dtype i32", "out has dtype f32");
    }

    // ---- add and embedding ---------------------------------------------------------------------------------

    [Test]
    public void AddInPlaceOverBIsExact()
    {
        var rng = TestSupport.Rng();
        var a = RandomData.Floats(rng, 300);
        var b = RandomData.Floats(rng, 300);
        using var at = Cpu.FromFloats(a, LlmkDtype.F32, 3, 100);
        using var bt = Cpu.FromFloats(b, LlmkDtype.F32, 3, 100);
        Kernels.Add(Cpu, at, bt, bt);
        Assert.That(bt.ToFloatArray(), Is.EqualTo(a.Zip(b, (x, y) => x + y).ToArray()));
    }

    [Test]
    public void EmbeddingRejectsIdsOutOfRangeBeforeWriting()
    {
        using var table = Cpu.FromFloats(RandomData.Floats(TestSupport.Rng(), 40), LlmkDtype.F32, 10, 4);
        using var output = Cpu.Allocate(LlmkDtype.F32, 4, 4);
        output.Poison();
        using var i32 = Cpu.FromHost<int>([1, 2, 3, 10], LlmkDtype.I32, 4);
        TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Kernels.Embedding(Cpu, table, i32, output), "llmk_embedding:", "ids[3] is 10", "0..9");
        using var i64 = Cpu.FromHost<long>([1, -5, 3, 0], LlmkDtype.I64, 4);
        TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Kernels.Embedding(Cpu, table, i64, output), "llmk_embedding:", "ids[1] is -5");
        Assert.That(output.ToArray<byte>(), Is.All.EqualTo(0xFF), "written before the ids were checked");
    }

    [Test]
    public void RejectsBadArguments()
    {
        using var a = Cpu.Allocate(LlmkDtype.F32, 3, 4);
        using var b = Cpu.Allocate(LlmkDtype.Bf16, 3, 4);
        using var output = Cpu.Allocate(LlmkDtype.F16, 3, 4);
        using var wide = Cpu.Allocate(LlmkDtype.F32, 3, 5);
        TestSupport.ExpectStatus(LlmkStatus.ShapeMismatch, () => Kernels.Add(Cpu, a, wide, output), "llmk_add:", "b has shape [3, 5] but a has shape [3, 4]");
        TestSupport.ExpectStatus(LlmkStatus.ShapeMismatch, () => Kernels.Add(Cpu, a, b, wide), "llmk_add:", "out has shape [3, 5]");
        using var ints = Cpu.Allocate(LlmkDtype.I64, 3, 4);
        TestSupport.ExpectStatus(LlmkStatus.DtypeMismatch, () => Kernels.Add(Cpu, a, ints, output), "llmk_add:", "b has dtype i64");
        using var negative = Tensor.FromPointer(Cpu, a.DataPointer, LlmkDtype.F32, [3, 4], a, [4, -1]);
        TestSupport.ExpectStatus(LlmkStatus.BadStride, () => Kernels.Add(Cpu, negative, b, output), "llmk_add:", "a has negative stride -1");
        using var huge = Tensor.FromPointer(Cpu, a.DataPointer, LlmkDtype.F32, [1L << 40, 1L << 40], a);
        TestSupport.ExpectStatus(LlmkStatus.Overflow, () => Kernels.Convert(Cpu, huge, huge), "llmk_convert:", "src", "overflows");
        using var nullData = Tensor.FromPointer(Cpu, 0, LlmkDtype.Bf16, [3, 4], null);
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => Kernels.Add(Cpu, a, nullData, output), "llmk_add:", "b has a NULL data pointer");
        // Outputs: no element twice, and in place only as exactly the same view.
        using var broadcast = Tensor.FromPointer(Cpu, output.DataPointer, LlmkDtype.F16, [3, 4], output, [0, 1]);
        TestSupport.ExpectStatus(LlmkStatus.BadStride, () => Kernels.Add(Cpu, a, b, broadcast), "llmk_add:", "out", "share an address");
        // Both views inside one buffer (wide has 15 floats), one element apart.
        using var front = Tensor.FromPointer(Cpu, wide.DataPointer, LlmkDtype.F32, [3, 4], wide);
        using var shifted = Tensor.FromPointer(Cpu, wide.DataPointer + 4, LlmkDtype.F32, [3, 4], wide);
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Kernels.Add(Cpu, front, b, shifted), "llmk_add:", "out partially overlaps a");
        // The same view one element further runs past the end of a's buffer.
        using var pastEnd = Tensor.FromPointer(Cpu, a.DataPointer + 4, LlmkDtype.F32, [3, 4], a);
        TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Kernels.Add(Cpu, a, b, pastEnd), "llmk_add:", "out spans 48 bytes from offset 4", "past its end");

        using var table = Cpu.Allocate(LlmkDtype.F32, 10, 4);
        using var ids = Cpu.FromHost<int>([1, 2, 3], LlmkDtype.I32, 3);
        using var floatIds = Cpu.Allocate(LlmkDtype.F32, 3);
        TestSupport.ExpectStatus(LlmkStatus.DtypeMismatch, () => Kernels.Embedding(Cpu, table, floatIds, a), "llmk_embedding:", "ids has dtype f32");
        TestSupport.ExpectStatus(LlmkStatus.ShapeMismatch, () => Kernels.Embedding(Cpu, table, ids, wide), "llmk_embedding:", "out", "hidden", "= 4");
        using var idMatrix = Cpu.Allocate(LlmkDtype.I32, 3, 1);
        TestSupport.ExpectStatus(LlmkStatus.ShapeMismatch, () => Kernels.Embedding(Cpu, table, idMatrix, a), "llmk_embedding:", "ids must have rank 1");
    }

    [Test]
    public unsafe void RanksOutside1To4AndNullPointersAreRefused()
    {
        using var a = Cpu.Allocate(LlmkDtype.F32, 2, 2);
        LlmkTensor good = a.Native, rank0 = a.Native, rank5 = a.Native;
        rank0.rank = 0;
        rank5.rank = 5;
        nint ctx = Cpu.Pointer;
        void Expect(LlmkStatus expected, LlmkStatus status, params string[] mentions) =>
            TestSupport.ExpectStatus(expected, () => Native.Check(status), mentions);
        Expect(LlmkStatus.ShapeMismatch, NativeMethods.llmk_add(ctx, &rank0, &good, &good), "llmk_add:", "a has rank 0", "1..4");
        Expect(LlmkStatus.ShapeMismatch, NativeMethods.llmk_convert(ctx, &good, &rank5), "llmk_convert:", "out has rank 5");
        Expect(LlmkStatus.NullPointer, NativeMethods.llmk_add(0, &good, &good, &good), "llmk_add:", "context is NULL");
        Expect(LlmkStatus.NullPointer, NativeMethods.llmk_add(ctx, &good, null, &good), "llmk_add:", "b is NULL");
        Expect(LlmkStatus.NullPointer, NativeMethods.llmk_add(ctx, &good, &good, null), "llmk_add:", "out is NULL");
        Expect(LlmkStatus.NullPointer, NativeMethods.llmk_convert(ctx, null, &good), "llmk_convert:", "src is NULL");
        Expect(LlmkStatus.NullPointer, NativeMethods.llmk_embedding(ctx, null, &good, &good), "llmk_embedding:", "table is NULL");
        Expect(LlmkStatus.NullPointer, NativeMethods.llmk_embedding(ctx, &good, null, &good), "llmk_embedding:", "ids is NULL");
    }
}
