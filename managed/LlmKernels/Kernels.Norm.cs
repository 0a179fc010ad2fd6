using LlmKernels.Interop;

namespace LlmKernels;

public static unsafe partial class Kernels
{
    /// <summary>output = x / sqrt(mean(x^2) + eps) * weight per row (llmk_rms_norm); with
    /// <see cref="LlmkNormFlags.Gemma"/> the scale is (1 + weight). output may be x itself.</summary>
    /// <param name="x">[rows, hidden]</param>
    /// <param name="weight">[hidden], any floating dtype</param>
    /// <param name="eps">&gt; 0</param>
    /// <param name="output">[rows, hidden], x's dtype</param>
    public static void RmsNorm(Context ctx, Tensor x, Tensor weight, float eps, Tensor output,
                               LlmkNormFlags flags = LlmkNormFlags.None)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor xs = x.Native, ws = weight.Native, os = output.Native;
        Native.Check(NativeMethods.llmk_rms_norm(ctx.Pointer, &xs, &ws, eps, (int)flags, &os));
        GC.KeepAlive(ctx);
        GC.KeepAlive(x);
        GC.KeepAlive(weight);
        GC.KeepAlive(output);
    }

    /// <summary>residual += x (stored in residual's dtype), then output = RmsNorm(residual)
    /// (llmk_add_rms_norm, vLLM's fused_add_rms_norm). output may be x itself.</summary>
    /// <param name="x">[rows, hidden]</param>
    /// <param name="residual">[rows, hidden], x's dtype, updated in place</param>
    /// <param name="weight">[hidden], any floating dtype</param>
    /// <param name="eps">&gt; 0</param>
    /// <param name="output">[rows, hidden], x's dtype</param>
    public static void AddRmsNorm(Context ctx, Tensor x, Tensor residual, Tensor weight, float eps, Tensor output,
                                  LlmkNormFlags flags = LlmkNormFlags.None)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(residual);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor xs = x.Native, rs = residual.Native, ws = weight.Native, os = output.Native;
        Native.Check(NativeMethods.llmk_add_rms_norm(ctx.Pointer, &xs, &rs, &ws, eps, (int)flags, &os));
        GC.KeepAlive(ctx);
        GC.KeepAlive(x);
        GC.KeepAlive(residual);
        GC.KeepAlive(weight);
        GC.KeepAlive(output);
    }
}
