// Hand-written additions to the generated Kernels.g.cs (bindings/Generator writes that one from llmk.h): convenience
// overloads, and the ready-made parameter structs of the kernels, each as static members of its own struct.

namespace LlmKernels
{
    using LlmKernels.Interop;

    public static partial class Kernels
    {
        /// <summary><see cref="RmsNorm(Context, Tensor, Tensor, float, LlmkNormFlags, Tensor)"/> without flags:
        /// out = x / sqrt(mean(x^2) + eps) * weight.</summary>
        public static void RmsNorm(Context context, Tensor x, Tensor weight, float eps, Tensor @out) =>
            RmsNorm(context, x, weight, eps, LlmkNormFlags.None, @out);

        /// <summary><see cref="AddRmsNorm(Context, Tensor, Tensor, Tensor, float, LlmkNormFlags, Tensor)"/> without
        /// flags: residual += x, then out = RmsNorm(residual).</summary>
        public static void AddRmsNorm(Context context, Tensor x, Tensor residual, Tensor weight, float eps, Tensor @out) =>
            AddRmsNorm(context, x, residual, weight, eps, LlmkNormFlags.None, @out);
    }
}

namespace LlmKernels.Interop
{
    /// <summary>A zeroed struct would mean a window of 0 on both sides (each query sees only its diagonal key), so
    /// start from <see cref="Default"/>, <see cref="Causal"/> or <see cref="Create"/>.</summary>
    public partial struct LlmkAttentionParams
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
            algorithm = algorithm,
            num_splits = numSplits,
        };
    }

    /// <summary>A zeroed struct has theta 0, which is invalid: start from <see cref="Create"/>.</summary>
    public unsafe partial struct LlmkRopeParams
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
            style = style,
            rotary_dim = rotaryDim,
            theta = theta,
            scaling = scaling,
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
        public readonly (float[] InvFreq, float AttentionFactor) Frequencies(int headDim)
        {
            var p = this;
            int rotaryDim = p.rotary_dim != 0 ? p.rotary_dim : headDim;
            // An invalid rotary_dim (< 2) is reported by the native call; the buffer only has to be non-null for it.
            var invFreq = new float[Math.Max(rotaryDim / 2, 1)];
            float attentionFactor;
            fixed (float* f = invFreq)
                LlmKernels.Native.Check(NativeMethods.llmk_rope_frequencies(&p, headDim, f, &attentionFactor));
            return (invFreq, attentionFactor);
        }
    }

    /// <summary>Router parameters for <see cref="LlmKernels.Kernels.MoeRoute"/>: start from <see cref="Create"/>.</summary>
    public partial struct LlmkMoeRouterParams
    {
        /// <summary>Parameters named as in Hugging Face configs.</summary>
        /// <param name="topK">num_experts_per_tok, 1..experts.</param>
        /// <param name="scoring">Softmax (Mixtral, Qwen-MoE) or sigmoid (DeepSeek-V3).</param>
        /// <param name="renormalize">norm_topk_prob: divide the chosen weights by their sum.</param>
        /// <param name="numGroups">n_group; 0 or 1: no grouped top-k.</param>
        /// <param name="topkGroups">topk_group, 1..numGroups (unused without groups).</param>
        /// <param name="routedScalingFactor">Multiplies the weights after renormalization; 0 means 1.</param>
        public static LlmkMoeRouterParams Create(int topK, LlmkMoeScoring scoring = LlmkMoeScoring.Softmax,
                                                 bool renormalize = true, int numGroups = 0, int topkGroups = 0,
                                                 float routedScalingFactor = 0) => new()
        {
            top_k = topK,
            scoring = scoring,
            renormalize = renormalize ? 1 : 0,
            num_groups = numGroups,
            topk_groups = topkGroups,
            routed_scaling_factor = routedScalingFactor,
        };
    }
}
