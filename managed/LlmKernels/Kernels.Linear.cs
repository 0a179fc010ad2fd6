using LlmKernels.Interop;

namespace LlmKernels;

public static unsafe partial class Kernels
{
    /// <summary>y = x W^T + bias (llmk_linear), torch.nn.Linear's layout, accumulated in f32.</summary>
    /// <param name="x">[rows, in_features]</param>
    /// <param name="weight">[out_features, in_features], any floating dtype</param>
    /// <param name="bias">[out_features], any floating dtype, or null</param>
    /// <param name="y">[rows, out_features], x's dtype; must not overlap the inputs</param>
    public static void Linear(Context ctx, Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(y);
        LlmkTensor xs = x.Native, ws = weight.Native, ys = y.Native;
        LlmkTensor bs = bias is null ? default : bias.Native;
        Native.Check(NativeMethods.llmk_linear(ctx.Pointer, &xs, &ws, bias is null ? null : &bs, &ys));
        GC.KeepAlive(ctx);
        GC.KeepAlive(x);
        GC.KeepAlive(weight);
        GC.KeepAlive(bias);
        GC.KeepAlive(y);
    }
}
