using LlmKernels.Interop;

namespace LlmKernels;

/// <summary>RoPE parameters and frequencies. A zeroed <see cref="LlmkRopeParams"/> has theta 0, which is
/// invalid: start from <see cref="Create"/>.</summary>
public static class Rope
{
    /// <summary>Parameters as in a Hugging Face config (rope_theta, partial_rotary_factor, rope_scaling). Zero
    /// values of the optional arguments take transformers' defaults.</summary>
    /// <param name="theta">rope_theta (the base), e.g. 10000 or 500000.</param>
    /// <param name="rotaryDim">Features rotated per head (head_dim * partial_rotary_factor); 0 means head_dim.</param>
    /// <param name="factor">Scaling factor of linear, dynamic, llama3 and yarn.</param>
    /// <param name="originalMaxPosition">original_max_position_embeddings (dynamic: max_position_embeddings).</param>
    /// <param name="seqLen">Dynamic NTK: the sequence length the base is computed for.</param>
    /// <param name="truncate">YaRN: round the correction range (transformers' default, true).</param>
    public static LlmkRopeParams Create(float theta, LlmkRopeStyle style = LlmkRopeStyle.Neox, int rotaryDim = 0,
                                       LlmkRopeScaling scaling = LlmkRopeScaling.Default, float factor = 1,
                                       int originalMaxPosition = 0, int seqLen = 0,
                                       float lowFreqFactor = 0, float highFreqFactor = 0,
                                       float betaFast = 0, float betaSlow = 0, float mscale = 0, float mscaleAllDim = 0,
                                       float attentionFactor = 0, bool truncate = true) => new()
    {
        style = (int)style,
        rotary_dim = rotaryDim,
        theta = theta,
        scaling = (int)scaling,
        factor = factor,
        original_max_position = originalMaxPosition,
        seq_len = seqLen,
        low_freq_factor = lowFreqFactor,
        high_freq_factor = highFreqFactor,
        beta_fast = betaFast,
        beta_slow = betaSlow,
        mscale = mscale,
        mscale_all_dim = mscaleAllDim,
        attention_factor = attentionFactor,
        truncate = truncate ? 1 : 0,
    };

    /// <summary>The inverse frequencies [rotary_dim / 2] and the cos/sin multiplier (llmk_rope_frequencies), as
    /// transformers' ROPE_INIT_FUNCTIONS compute them for a head of <paramref name="headDim"/>.</summary>
    public static unsafe (float[] InvFreq, float AttentionFactor) Frequencies(LlmkRopeParams p, int headDim)
    {
        int rotaryDim = p.rotary_dim != 0 ? p.rotary_dim : headDim;
        // An invalid rotary_dim (< 2) is reported by the native call; the buffer only has to be non-null for it.
        var invFreq = new float[Math.Max(rotaryDim / 2, 1)];
        float attentionFactor;
        fixed (float* f = invFreq)
            Native.Check(NativeMethods.llmk_rope_frequencies(&p, headDim, f, &attentionFactor));
        return (invFreq, attentionFactor);
    }
}

public static unsafe partial class Kernels
{
    /// <summary>Rotates the first rotary_dim features of every head of q and k in place, each token at its
    /// position (llmk_rope). q and k may be strided views, e.g. slices of a fused qkv buffer.</summary>
    /// <param name="positions">[tokens] i32 or i64, &gt;= 0 (a negative one throws OutOfRange, nothing written)</param>
    /// <param name="q">[tokens, heads, head_dim], in place</param>
    /// <param name="k">[tokens, kv_heads, head_dim], in place, q's dtype; or null</param>
    public static void Rope(Context ctx, Tensor positions, LlmkRopeParams p, Tensor q, Tensor? k = null)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(positions);
        ArgumentNullException.ThrowIfNull(q);
        LlmkTensor ps = positions.Native, qs = q.Native, kView = k?.Native ?? default;
        Native.Check(NativeMethods.llmk_rope(ctx.Pointer, &ps, &p, &qs, k is null ? null : &kView));
        GC.KeepAlive(ctx);
        GC.KeepAlive(positions);
        GC.KeepAlive(q);
        GC.KeepAlive(k);
    }
}
