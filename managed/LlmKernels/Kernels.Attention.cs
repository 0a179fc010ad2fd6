using LlmKernels.Interop;

namespace LlmKernels;

/// <summary>Ready-made <see cref="LlmkAttentionParams"/>: a zeroed struct would mean a window of 0 on both
/// sides (each query sees only its diagonal key), so start from these.</summary>
public static class AttentionParams
{
    /// <summary>Full (bidirectional) attention: scale 1/sqrt(head_dim), unlimited windows, no softcap, the
    /// backend's fastest algorithm.</summary>
    public static LlmkAttentionParams Default => Create();

    /// <summary>Causal attention, diagonal aligned bottom-right, as decoders use it.</summary>
    public static LlmkAttentionParams Causal => Create(causal: true);

    /// <param name="scale">0 means 1 / sqrt(head_dim).</param>
    /// <param name="windowLeft">Keys a query sees before its diagonal; negative is unlimited.</param>
    /// <param name="windowRight">Keys a query sees after its diagonal; negative is unlimited (causal forces 0).</param>
    /// <param name="softcap">Scores become softcap * tanh(score / softcap); 0 is off.</param>
    /// <param name="numSplits">Split-KV partitions for KV-cache decode; 0 lets the backend choose.</param>
    public static LlmkAttentionParams Create(bool causal = false, float scale = 0, int windowLeft = -1, int windowRight = -1,
                                            float softcap = 0,
                                            LlmkAttentionAlgorithm algorithm = LlmkAttentionAlgorithm.Auto,
                                            int numSplits = 0) => new()
    {
        scale = scale,
        causal = causal ? 1 : 0,
        window_left = windowLeft,
        window_right = windowRight,
        softcap = softcap,
        algorithm = (int)algorithm,
        num_splits = numSplits,
    };
}

public static unsafe partial class Kernels
{
    /// <summary>output = softmax(mask(scale * q . k)) . v per batch and head (llmk_attention). GQA/MQA when the kv
    /// heads divide the query heads.</summary>
    /// <param name="q">[batch, q_len, heads, head_dim]</param>
    /// <param name="k">[batch, kv_len, kv_heads, head_dim]</param>
    /// <param name="v">[batch, kv_len, kv_heads, head_dim]</param>
    /// <param name="output">[batch, q_len, heads, head_dim], q's dtype</param>
    /// <param name="alibiSlopes">[heads] f32, or null</param>
    /// <param name="lse">[batch, heads, q_len] f32 log-sum-exp (natural log), or null</param>
    public static void Attention(Context ctx, Tensor q, Tensor k, Tensor v, Tensor output, LlmkAttentionParams p,
                                 Tensor? alibiSlopes = null, Tensor? lse = null)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor qs = q.Native, ks = k.Native, vs = v.Native, os = output.Native;
        LlmkTensor alibiView = alibiSlopes?.Native ?? default, lseView = lse?.Native ?? default;
        Native.Check(NativeMethods.llmk_attention(ctx.Pointer, &qs, &ks, &vs,
                                                  alibiSlopes is null ? null : &alibiView, &p, &os,
                                                  lse is null ? null : &lseView));
        GC.KeepAlive(ctx);
        GC.KeepAlive(q);
        GC.KeepAlive(k);
        GC.KeepAlive(v);
        GC.KeepAlive(output);
        GC.KeepAlive(alibiSlopes);
        GC.KeepAlive(lse);
    }

    /// <summary>One KV-cache step (llmk_attention_kvcache, as flash_attn_with_kvcache): appends kNew/vNew to each
    /// sequence's cache at row cacheSeqlens[b], then attends q over the first cacheSeqlens[b] + new_len rows.
    /// cacheSeqlens is not modified; a sequence that would overflow the cache throws (OutOfRange) with nothing
    /// written.</summary>
    /// <param name="q">[batch, q_len, heads, head_dim]</param>
    /// <param name="kCache">[batch, max_len, kv_heads, head_dim], updated in place</param>
    /// <param name="vCache">[batch, max_len, kv_heads, head_dim], updated in place</param>
    /// <param name="kNew">[batch, new_len, kv_heads, head_dim], or null (then vNew is null too)</param>
    /// <param name="vNew">[batch, new_len, kv_heads, head_dim], or null</param>
    /// <param name="cacheSeqlens">[batch] i32: rows already in each sequence's cache</param>
    /// <param name="output">[batch, q_len, heads, head_dim]</param>
    /// <param name="alibiSlopes">[heads] f32, or null</param>
    /// <param name="lse">[batch, heads, q_len] f32, or null</param>
    public static void AttentionKvCache(Context ctx, Tensor q, Tensor kCache, Tensor vCache, Tensor? kNew, Tensor? vNew,
                                        Tensor cacheSeqlens, Tensor output, LlmkAttentionParams p,
                                        Tensor? alibiSlopes = null, Tensor? lse = null)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(vCache);
        ArgumentNullException.ThrowIfNull(cacheSeqlens);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor qs = q.Native, kc = kCache.Native, vc = vCache.Native, sl = cacheSeqlens.Native, os = output.Native;
        LlmkTensor kn = kNew?.Native ?? default, vn = vNew?.Native ?? default;
        LlmkTensor alibiView = alibiSlopes?.Native ?? default, lseView = lse?.Native ?? default;
        Native.Check(NativeMethods.llmk_attention_kvcache(ctx.Pointer, &qs, &kc, &vc,
                                                          kNew is null ? null : &kn, vNew is null ? null : &vn, &sl,
                                                          alibiSlopes is null ? null : &alibiView, &p, &os,
                                                          lse is null ? null : &lseView));
        GC.KeepAlive(ctx);
        GC.KeepAlive(q);
        GC.KeepAlive(kCache);
        GC.KeepAlive(vCache);
        GC.KeepAlive(kNew);
        GC.KeepAlive(vNew);
        GC.KeepAlive(cacheSeqlens);
        GC.KeepAlive(output);
        GC.KeepAlive(alibiSlopes);
        GC.KeepAlive(lse);
    }
}
