using LlmKernels.Interop;

namespace LlmKernels;

public static unsafe partial class Kernels
{
    /// <summary>output = a + b (llmk_add): same shapes, any floating dtypes, any strides. output may be a or b itself.</summary>
    public static void Add(Context ctx, Tensor a, Tensor b, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor @as = a.Native, bs = b.Native, os = output.Native;
        Native.Check(NativeMethods.llmk_add(ctx.Pointer, &@as, &bs, &os));
        GC.KeepAlive(ctx);
        GC.KeepAlive(a);
        GC.KeepAlive(b);
        GC.KeepAlive(output);
    }

    /// <summary>output = source converted to output's dtype (llmk_convert): floating to floating (round to nearest
    /// even) or integer to integer (an i64 that does not fit i32 is an error); any strides.</summary>
    public static void Convert(Context ctx, Tensor source, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor ss = source.Native, os = output.Native;
        Native.Check(NativeMethods.llmk_convert(ctx.Pointer, &ss, &os));
        GC.KeepAlive(ctx);
        GC.KeepAlive(source);
        GC.KeepAlive(output);
    }

    /// <summary>output[t, :] = table[ids[t], :] (llmk_embedding), converted to output's dtype.</summary>
    /// <param name="table">[vocab, hidden], floating</param>
    /// <param name="ids">[tokens] i32 or i64, each in [0, vocab)</param>
    /// <param name="output">[tokens, hidden], floating</param>
    public static void Embedding(Context ctx, Tensor table, Tensor ids, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor ts = table.Native, @is = ids.Native, os = output.Native;
        Native.Check(NativeMethods.llmk_embedding(ctx.Pointer, &ts, &@is, &os));
        GC.KeepAlive(ctx);
        GC.KeepAlive(table);
        GC.KeepAlive(ids);
        GC.KeepAlive(output);
    }
}
