using LlmKernels.Interop;
using LlmKernels.Verification.Oracle;

namespace LlmKernels.Verification;

/// <summary>Memory layouts of a test view: row-major; all dimensions reversed in memory (a transpose); or
/// row-major with every other element of the innermost dimension (stride 2).</summary>
public enum ViewLayout { Contiguous, Transposed, EveryOther }

/// <summary>A view of <see cref="Shape"/> in a given layout, over a buffer it owns.</summary>
public sealed class LayoutView : IDisposable
{
    private readonly Tensor _buffer;

    public LayoutView(Context ctx, LlmkDtype dtype, long[] shape, ViewLayout layout)
    {
        var memoryShape = layout switch
        {
            ViewLayout.Transposed => shape.Reverse().ToArray(),
            ViewLayout.EveryOther => shape.Take(shape.Length - 1).Append(shape[^1] * 2).ToArray(),
            _ => shape,
        };
        _buffer = ctx.Allocate(dtype, memoryShape);
        var strides = Tensor.ContiguousStrides(memoryShape);
        if (layout == ViewLayout.Transposed)
            strides = strides.Reverse().ToArray();
        if (layout == ViewLayout.EveryOther)
            strides[^1] = 2;
        _buffer.Poison(); // the gaps of EveryOther stay NaN: a kernel that reads them shows it
        View = Tensor.FromPointer(ctx, _buffer.DataPointer, dtype, shape, _buffer, strides);
    }

    public Tensor View { get; }

    public void Dispose() => _buffer.Dispose();
}

/// <summary>One llmk_add case: a in the check's dtype, b and out in their own, each in its layout; InPlace
/// writes over a.</summary>
public sealed record AddCase(string Name, long[] Shape, LlmkDtype? BDType = null, LlmkDtype? OutDType = null,
                             ViewLayout ALayout = ViewLayout.Contiguous, ViewLayout BLayout = ViewLayout.Contiguous,
                             ViewLayout OutLayout = ViewLayout.Contiguous, bool InPlace = false)
{
    public CheckResult Run(KernelCheck check, Context ctx, LlmkDtype dtype, Random rng)
    {
        int count = (int)Shape.Aggregate(1L, (p, n) => p * n);
        using var a = new LayoutView(ctx, dtype, Shape, ALayout);
        using var b = new LayoutView(ctx, BDType ?? dtype, Shape, BLayout);
        using var separate = new LayoutView(ctx, OutDType ?? dtype, Shape, OutLayout);
        a.View.CopyFromFloats(RandomData.Floats(rng, count, 4));
        b.View.CopyFromFloats(RandomData.Floats(rng, count, 4));
        var aIn = RandomData.ToDoubles(a.View.ToFloatArray());
        var bIn = RandomData.ToDoubles(b.View.ToFloatArray());
        var output = InPlace ? a.View : separate.View;
        Kernels.Add(ctx, a.View, b.View, output);
        var errors = Errors.Compare(ElementwiseOracle.Add(aIn, bIn), output.ToFloatArray());
        return CheckResult.Of(check, errors, Tolerance.For(output.DType));
    }

    public override string ToString() => Name;
}

/// <summary>One floating llmk_convert case: src in the check's dtype, out in OutDType. Conversion rounds once, so
/// the result must equal the oracle exactly.</summary>
public sealed record ConvertCase(string Name, long[] Shape, LlmkDtype OutDType, ViewLayout SrcLayout = ViewLayout.Contiguous,
                                 ViewLayout OutLayout = ViewLayout.Contiguous)
{
    public CheckResult Run(KernelCheck check, Context ctx, LlmkDtype dtype, Random rng)
    {
        int count = (int)Shape.Aggregate(1L, (p, n) => p * n);
        using var src = new LayoutView(ctx, dtype, Shape, SrcLayout);
        using var output = new LayoutView(ctx, OutDType, Shape, OutLayout);
        // Wide range (up to 1000, down to tiny values), so f16's and bf16's roundings both matter.
        src.View.CopyFromFloats(RandomData.Floats(rng, count, 1).Select(v => v * MathF.Pow(10, 3 * MathF.Abs(v) - 2)).ToArray());
        var srcIn = RandomData.ToDoubles(src.View.ToFloatArray());
        Kernels.Convert(ctx, src.View, output.View);
        return CheckResult.Of(check, Errors.Compare(ElementwiseOracle.Convert(srcIn, OutDType), output.View.ToFloatArray()), 0);
    }

    public override string ToString() => Name;
}

/// <summary>One llmk_embedding case: table in the check's dtype, ids i32 or i64 (repeats included), out in
/// OutDType (null: the table's). A lookup with conversion rounds once, so the result is exact.</summary>
public sealed record EmbeddingCase(string Name, int Vocab, int Hidden, int Tokens, LlmkDtype IdDType, LlmkDtype? OutDType = null,
                                   LlmkDtype? TableDType = null)
{
    public CheckResult Run(KernelCheck check, Context ctx, LlmkDtype dtype, Random rng)
    {
        var outDtype = OutDType ?? dtype;
        var tableDtype = TableDType ?? dtype;
        byte[]? blocks = Tensor.IsQuantized(tableDtype) ? QuantOracle.RandomBlocks(rng, tableDtype, (long)Vocab * Hidden, 1) : null;
        using var table = blocks is not null ? ctx.FromHost<byte>(blocks, tableDtype, Vocab, Hidden)
                                             : ctx.FromFloats(RandomData.Floats(rng, Vocab * Hidden, 2), dtype, Vocab, Hidden);
        var ids = RandomData.Ints(rng, Tokens, 0, Vocab).Select(i => (long)i).ToArray();
        using var idTensor = IdDType == LlmkDtype.I64
            ? ctx.FromHost<long>(ids, LlmkDtype.I64, Tokens)
            : ctx.FromHost<int>(ids.Select(i => (int)i).ToArray(), LlmkDtype.I32, Tokens);
        using var output = ctx.Allocate(outDtype, Tokens, Hidden);
        output.Poison();
        Kernels.Embedding(ctx, table, idTensor, output);
        var tableValues = blocks is not null ? QuantOracle.Dequantize(tableDtype, blocks, (long)Vocab * Hidden)
                                             : RandomData.ToDoubles(table.ToFloatArray());
        var expected = ElementwiseOracle.Embedding(tableValues, Hidden, ids, outDtype);
        return CheckResult.Of(check, Errors.Compare(expected, output.ToFloatArray()), 0);
    }

    public override string ToString() => Name;
}

/// <summary>llmk_convert between a floating dtype (the check's) and a quantized one, [rows, cols] with cols whole
/// blocks. Dequantizing random blocks must match the oracle's reading of the bytes exactly; quantizing must leave
/// every element within the format's error bound (QuantOracle.QuantizeErrorBound, from the input alone) of its
/// value, and the dequantized result within a loose relative L2 of the input.</summary>
public sealed record QuantizedConvertCase(string Name, int Rows, int Cols, LlmkDtype Quantized, bool Quantize)
{
    public CheckResult Run(KernelCheck check, Context ctx, LlmkDtype dtype, Random rng)
    {
        long count = (long)Rows * Cols;
        if (!Quantize)
        {
            var blocks = QuantOracle.RandomBlocks(rng, Quantized, count, 1);
            using var src = ctx.FromHost<byte>(blocks, Quantized, Rows, Cols);
            using var output = ctx.Allocate(dtype, Rows, Cols);
            output.Poison();
            Kernels.Convert(ctx, src, output);
            var expected = ElementwiseOracle.Convert(QuantOracle.Dequantize(Quantized, blocks, count), dtype);
            return CheckResult.Of(check, Errors.Compare(expected, output.ToFloatArray()), 0);
        }
        // Rows of different magnitudes (1e-2 .. 1e2), so the scales' ranges matter.
        var values = new float[count];
        for (int r = 0; r < Rows; r++)
        {
            float magnitude = MathF.Pow(10, (float)(rng.NextDouble() * 4 - 2));
            RandomData.Floats(rng, Cols, magnitude).CopyTo(values, (long)r * Cols);
        }
        using var input = ctx.FromFloats(values, dtype, Rows, Cols);
        var x = input.ToFloatArray();
        using var quantized = ctx.Allocate(Quantized, Rows, Cols);
        quantized.Poison();
        Kernels.Convert(ctx, input, quantized);
        var back = QuantOracle.Dequantize(Quantized, quantized.ToArray<byte>(), count);
        var bound = QuantOracle.QuantizeErrorBound(Quantized, x);
        long outside = 0;
        for (long i = 0; i < count; i++)
            if (!(Math.Abs(back[i] - x[i]) <= bound[i])) outside++;
        var errors = Errors.Compare(RandomData.ToDoubles(x), back.Select(v => (float)v).ToArray());
        const double relL2 = 0.15; // 4-bit formats leave about 5-8 % on uniform data
        errors = errors with { NonFinite = errors.NonFinite + outside };
        return CheckResult.Of(check, errors, relL2);
    }

    public override string ToString() => Name;
}

public static partial class Checks
{
    public static IEnumerable<AddCase> AddCases()
    {
        yield return new("[1]", [1]);
        yield return new("[3, 17, 33]", [3, 17, 33]);
        yield return new("[67, 257] b f32, out bf16", [67, 257], LlmkDtype.F32, LlmkDtype.Bf16);
        yield return new("[2, 3, 5, 7] a transposed, b every other, out f16", [2, 3, 5, 7], LlmkDtype.Bf16, LlmkDtype.F16,
                         ALayout: ViewLayout.Transposed, BLayout: ViewLayout.EveryOther);
        yield return new("[9, 31] out transposed f32", [9, 31], OutDType: LlmkDtype.F32, OutLayout: ViewLayout.Transposed);
        yield return new("[5, 129] in place over a", [5, 129], LlmkDtype.F32, InPlace: true);
    }

    public static IEnumerable<ConvertCase> ConvertCases()
    {
        foreach (var to in new[] { LlmkDtype.F32, LlmkDtype.F16, LlmkDtype.Bf16 })
        {
            yield return new($"[3, 17, 33] to {to}", [3, 17, 33], to);
            yield return new($"[2, 3, 5, 7] transposed to {to} every other", [2, 3, 5, 7], to, ViewLayout.Transposed, ViewLayout.EveryOther);
        }
        yield return new("[1] to f16", [1], LlmkDtype.F16);
    }

    public static IEnumerable<EmbeddingCase> EmbeddingCases()
    {
        yield return new("vocab 1 hidden 1, 1 token, i32", 1, 1, 1, LlmkDtype.I32);
        yield return new("vocab 257 hidden 33, 67 tokens, i64", 257, 33, 67, LlmkDtype.I64);
        yield return new("vocab 1000 hidden 129, 17 tokens, i32, out f32", 1000, 129, 17, LlmkDtype.I32, LlmkDtype.F32);
        yield return new("vocab 50 hidden 64, 9 tokens, i64, out bf16", 50, 64, 9, LlmkDtype.I64, LlmkDtype.Bf16);
        foreach (var q in QuantizedWeights)
            yield return new($"vocab 300 hidden 512, 33 tokens, i32, {q} table", 300, 512, 33, LlmkDtype.I32, TableDType: q);
    }

    public static IEnumerable<QuantizedConvertCase> QuantizedConvertCases() =>
        from q in QuantizedWeights
        from quantize in new[] { false, true }
        select new QuantizedConvertCase($"[7, 512] {(quantize ? "to" : "from")} {q}", 7, 512, q, quantize);

    public static IEnumerable<KernelCheck> ElementwiseChecks()
    {
        LlmkDtype[] dtypes = [LlmkDtype.F32, LlmkDtype.F16, LlmkDtype.Bf16];
        return (from c in AddCases() from d in dtypes
                select (KernelCheck)new DelegateCheck("add", c.Name, d, (check, ctx, rng) => c.Run(check, ctx, d, rng)))
            .Concat(from c in ConvertCases() from d in dtypes
                    select (KernelCheck)new DelegateCheck("convert", c.Name, d, (check, ctx, rng) => c.Run(check, ctx, d, rng)))
            .Concat(from c in QuantizedConvertCases() from d in dtypes
                    select (KernelCheck)new DelegateCheck("convert", c.Name, d, (check, ctx, rng) => c.Run(check, ctx, d, rng)))
            .Concat(from c in EmbeddingCases() from d in dtypes
                    select (KernelCheck)new DelegateCheck("embedding", c.Name, d, (check, ctx, rng) => c.Run(check, ctx, d, rng)));
    }
}
