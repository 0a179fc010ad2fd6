using LlmKernels.Interop;

namespace LlmKernels;

public static unsafe partial class Kernels
{
    /// <summary>output = act(gateUp[:, :d]) * gateUp[:, d:] (llmk_gated_activation, vLLM's silu_and_mul /
    /// gelu_tanh_and_mul).</summary>
    /// <param name="gateUp">[rows, 2 * d]</param>
    /// <param name="output">[rows, d], gateUp's dtype, not overlapping it</param>
    public static void GatedActivation(Context ctx, LlmkActivation activation, Tensor gateUp, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(gateUp);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor gus = gateUp.Native, os = output.Native;
        Native.Check(NativeMethods.llmk_gated_activation(ctx.Pointer, (int)activation, &gus, &os));
        GC.KeepAlive(ctx);
        GC.KeepAlive(gateUp);
        GC.KeepAlive(output);
    }

    /// <summary>output = act(gate) * up (llmk_gated_activation_split). output may be gate or up itself.</summary>
    /// <param name="gate">[rows, d]</param>
    /// <param name="up">[rows, d], gate's dtype</param>
    /// <param name="output">[rows, d], gate's dtype</param>
    public static void GatedActivationSplit(Context ctx, LlmkActivation activation, Tensor gate, Tensor up, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor gs = gate.Native, us = up.Native, os = output.Native;
        Native.Check(NativeMethods.llmk_gated_activation_split(ctx.Pointer, (int)activation, &gs, &us, &os));
        GC.KeepAlive(ctx);
        GC.KeepAlive(gate);
        GC.KeepAlive(up);
        GC.KeepAlive(output);
    }
}
