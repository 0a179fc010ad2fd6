namespace LlmKernels.Models;

/// <summary>
/// Back-of-the-envelope costs of a Llama-family decoder from its configuration: parameter counts, FLOPs per
/// token, KV-cache bytes and the decode speed that memory bandwidth allows. Counts follow the tensors
/// <see cref="LlamaModel"/> loads (transformers' names), so they can be checked against a checkpoint.
/// FLOPs count multiply-adds as 2 and only the matmuls and the attention products: norms, RoPE, softmax,
/// activations and residual adds are O(hidden) per token, well under 1% for real models.
/// </summary>
public sealed class ModelCost
{
    public ModelCost(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        var c = config;
        long hidden = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        long ffn = c.IntermediateSize;

        EmbeddingParameters = (long)c.VocabSize * hidden;
        LmHeadParameters = c.TieWordEmbeddings ? 0 : (long)c.VocabSize * hidden;
        // q, k, v: [q|kv, hidden]; o: [hidden, q].
        AttentionMatmulParametersPerLayer = hidden * q + 2 * hidden * kv + q * hidden;
        AttentionBiasParametersPerLayer = (c.QkvBias ? q + 2 * kv : 0) + (c.OutputBias ? hidden : 0);
        long expertMatmul = 3 * hidden * ffn;                              // gate, up [ffn, hidden]; down [hidden, ffn]
        if (c.IsMoe)
        {
            RouterParametersPerLayer = c.NumLocalExperts * hidden;          // gate [experts, hidden]
            MlpMatmulParametersPerLayer = c.NumLocalExperts * expertMatmul;
            ActiveMlpMatmulParametersPerLayer = c.NumExpertsPerTok * expertMatmul;
        }
        else
        {
            MlpMatmulParametersPerLayer = ActiveMlpMatmulParametersPerLayer = expertMatmul;
            MlpBiasParametersPerLayer = c.MlpBias ? 2 * ffn + hidden : 0;
        }
        NormParameters = (2L * c.NumHiddenLayers + 1) * hidden;            // input + post-attention per layer, final

        long perLayer = AttentionMatmulParametersPerLayer + AttentionBiasParametersPerLayer + RouterParametersPerLayer
                        + MlpMatmulParametersPerLayer + MlpBiasParametersPerLayer;
        Parameters = EmbeddingParameters + LmHeadParameters + c.NumHiddenLayers * perLayer + NormParameters;
        long activeMatmulPerLayer = AttentionMatmulParametersPerLayer + RouterParametersPerLayer + ActiveMlpMatmulParametersPerLayer;
        long activePerLayer = activeMatmulPerLayer + AttentionBiasParametersPerLayer + MlpBiasParametersPerLayer;
        ActiveParameters = EmbeddingParameters + LmHeadParameters + c.NumHiddenLayers * activePerLayer + NormParameters;
        // The LM head is a matmul with the embedding matrix when they are tied; the embedding itself is a gather.
        MatmulParametersPerToken = c.NumHiddenLayers * activeMatmulPerLayer + (long)c.VocabSize * hidden;
        // Decode reads every weight a token uses once: the matmuls, biases, norms, and one embedding row
        // (with tied embeddings that row is inside the LM head, which is read whole anyway).
        WeightParametersReadPerToken = MatmulParametersPerToken + c.NumHiddenLayers * (AttentionBiasParametersPerLayer + MlpBiasParametersPerLayer)
                                       + NormParameters + (c.TieWordEmbeddings ? 0 : hidden);
    }

    public ModelConfig Config { get; }

    /// <summary>embed_tokens: vocab x hidden.</summary>
    public long EmbeddingParameters { get; }

    /// <summary>lm_head: vocab x hidden, or 0 when tied to the embedding.</summary>
    public long LmHeadParameters { get; }

    /// <summary>q, k, v and o projection weights of one layer.</summary>
    public long AttentionMatmulParametersPerLayer { get; }

    public long AttentionBiasParametersPerLayer { get; }

    /// <summary>The MoE router (gate) of one layer; 0 for a dense MLP.</summary>
    public long RouterParametersPerLayer { get; }

    /// <summary>gate, up and down weights of one layer (every expert's, for MoE).</summary>
    public long MlpMatmulParametersPerLayer { get; }

    /// <summary>The MLP weights one token goes through (the top-k experts' for MoE).</summary>
    public long ActiveMlpMatmulParametersPerLayer { get; }

    public long MlpBiasParametersPerLayer { get; }

    /// <summary>Every RMSNorm weight: two per layer and the final one.</summary>
    public long NormParameters { get; }

    /// <summary>Every parameter of the checkpoint.</summary>
    public long Parameters { get; }

    /// <summary>Parameters one token uses (Mixtral: only its top-k experts).</summary>
    public long ActiveParameters { get; }

    /// <summary>Weights multiplied per token: the layers' projections (active experts) and the LM head.</summary>
    public long MatmulParametersPerToken { get; }

    /// <summary>Parameters a decode step reads from memory.</summary>
    public long WeightParametersReadPerToken { get; }

    /// <summary>2 x matmul weights: every weight is one multiply and one add per token.</summary>
    public long MatmulFlopsPerToken => 2 * MatmulParametersPerToken;

    /// <summary>Keys that layer <paramref name="layer"/>'s attention reads for a query seeing <paramref name="keys"/>
    /// keys (itself included): all of them, or the sliding window.</summary>
    private long KeysRead(int layer, long keys) => Config.SlidingWindowFor(layer) is int w ? Math.Min(keys, w) : keys;

    /// <summary>
    /// Attention FLOPs of one query token that sees <paramref name="keys"/> keys: per layer and head, q.k over
    /// head_dim for each key and p.v over head_dim for each key: 2 x 2 x heads x head_dim x keys.
    /// </summary>
    public long AttentionFlops(long keys)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(keys);
        long perKey = 4L * Config.NumAttentionHeads * Config.HeadDim, total = 0;
        for (int l = 0; l < Config.NumHiddenLayers; l++) total += perKey * KeysRead(l, keys);
        return total;
    }

    /// <summary>FLOPs of one decode step at context <paramref name="context"/> (the new token is the
    /// context-th, so it attends to <paramref name="context"/> keys).</summary>
    public long DecodeFlopsPerToken(long context) => MatmulFlopsPerToken + AttentionFlops(context);

    /// <summary>
    /// FLOPs of a prefill of <paramref name="promptTokens"/> tokens: the matmuls for every token, and causal
    /// attention where token i (1-based) sees i keys, or min(i, W) under a sliding window W; the sum over i is
    /// n(n+1)/2, or W(W+1)/2 + (n - W)W once n passes W. Useful FLOPs: kernels that compute whole masked
    /// tiles do a little more.
    /// </summary>
    public long PrefillFlops(long promptTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(promptTokens);
        long n = promptTokens, perKey = 4L * Config.NumAttentionHeads * Config.HeadDim, attention = 0;
        for (int l = 0; l < Config.NumHiddenLayers; l++)
        {
            long keySum = Config.SlidingWindowFor(l) is int w && n > w ? (long)w * (w + 1) / 2 + (n - w) * w : n * (n + 1) / 2;
            attention += perKey * keySum;
        }
        return n * MatmulFlopsPerToken + attention;
    }

    /// <summary>Average prefill FLOPs per prompt token.</summary>
    public double PrefillFlopsPerToken(long promptTokens) => promptTokens == 0 ? 0 : (double)PrefillFlops(promptTokens) / promptTokens;

    /// <summary>Bytes one token adds to the KV cache: a key and a value of kv_heads x head_dim per layer.</summary>
    public long KvCacheBytesPerToken(int kvElementBytes) =>
        2L * Config.NumHiddenLayers * Config.NumKeyValueHeads * Config.HeadDim * kvElementBytes;

    /// <summary>KV cache of a <paramref name="context"/>-token sequence (the runner keeps every position, even
    /// under a sliding window).</summary>
    public long KvCacheBytes(long context, int kvElementBytes) => context * KvCacheBytesPerToken(kvElementBytes);

    /// <summary>KV bytes a decode step at <paramref name="context"/> reads: every cached key and value its
    /// layers attend to (the window's, under a sliding window).</summary>
    public long KvBytesReadPerToken(long context, int kvElementBytes)
    {
        long perKey = 2L * Config.NumKeyValueHeads * Config.HeadDim * kvElementBytes, total = 0;
        for (int l = 0; l < Config.NumHiddenLayers; l++) total += perKey * KeysRead(l, context);
        return total;
    }

    /// <summary>Bytes per element of a weight dtype, a fraction for block-quantized ones (Q8_0: 34 / 32).</summary>
    public static double ElementBytes(Interop.LlmkDtype dtype)
    {
        var (elements, bytes) = Tensor.BlockOf(dtype);
        return (double)bytes / elements;
    }

    /// <summary>Bytes a decode step at <paramref name="context"/> reads: the weights it uses plus the KV cache
    /// it attends to. Activations are a few KiB and stay in cache.</summary>
    public double DecodeBytesPerToken(long context, double weightElementBytes, int kvElementBytes) =>
        WeightParametersReadPerToken * weightElementBytes + KvBytesReadPerToken(context, kvElementBytes);

    /// <summary>
    /// Batch-1 decode is memory bound: each token reads <see cref="DecodeBytesPerToken"/>, so a memory system of
    /// <paramref name="bytesPerSecond"/> allows at most bytesPerSecond / bytesPerToken tokens per second.
    /// </summary>
    public double DecodeTokensPerSecondCeiling(double bytesPerSecond, long context, double weightElementBytes, int kvElementBytes) =>
        bytesPerSecond / DecodeBytesPerToken(context, weightElementBytes, kvElementBytes);
}
