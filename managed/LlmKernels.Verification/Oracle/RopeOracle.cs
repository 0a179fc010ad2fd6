using LlmKernels.Interop;

namespace LlmKernels.Verification.Oracle;

/// <summary>Rotary position embeddings in double, from Hugging Face transformers: the inverse frequencies of
/// modeling_rope_utils.py (ROPE_INIT_FUNCTIONS: default, linear, dynamic, llama3, yarn), and the rotation of
/// modeling_llama.apply_rotary_pos_emb (NeoX: rotate_half) or GPT-J's rotate_every_two.</summary>
public static class RopeOracle
{
    /// <summary>transformers' (inv_freq, attention_factor) for a head of <paramref name="headDim"/>; dim is the
    /// rotary dimension (head_dim * partial_rotary_factor), the dimension every formula uses. Zero fields of the
    /// parameters stand for transformers' defaults, as documented in llmk.h.</summary>
    public static (double[] InvFreq, double AttentionFactor) Frequencies(LlmkRopeParams p, int headDim)
    {
        int dim = p.rotary_dim != 0 ? p.rotary_dim : headDim;
        double theta = p.theta, factor = p.factor;
        // base ** (arange(0, dim, 2) / dim), the "pos_freqs" of transformers
        double[] PosFreqs(double b) => Enumerable.Range(0, dim / 2).Select(i => Math.Pow(b, 2.0 * i / dim)).ToArray();
        double[] Default(double b) => PosFreqs(b).Select(f => 1 / f).ToArray();

        switch (p.scaling)
        {
            case LlmkRopeScaling.Default:
                return (Default(theta), 1);
            case LlmkRopeScaling.Linear:
                return (Default(theta).Select(f => f / factor).ToArray(), 1);
            case LlmkRopeScaling.Dynamic:
            {
                double maxPositions = p.original_max_position;
                double seqLen = Math.Max(p.seq_len, maxPositions);
                double b = theta * Math.Pow(factor * seqLen / maxPositions - (factor - 1), (double)dim / (dim - 2));
                return (Default(b), 1);
            }
            case LlmkRopeScaling.Llama3:
            {
                double lowFreqFactor = p.low_freq_factor != 0 ? p.low_freq_factor : 1;
                double highFreqFactor = p.high_freq_factor != 0 ? p.high_freq_factor : 4;
                double oldContextLen = p.original_max_position;
                double lowFreqWavelen = oldContextLen / lowFreqFactor, highFreqWavelen = oldContextLen / highFreqFactor;
                var invFreq = Default(theta);
                var result = new double[invFreq.Length];
                for (int i = 0; i < invFreq.Length; i++)
                {
                    double wavelen = 2 * Math.PI / invFreq[i];
                    double llama = wavelen > lowFreqWavelen ? invFreq[i] / factor : invFreq[i];
                    bool medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
                    double smooth = (oldContextLen / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                    result[i] = medium ? (1 - smooth) * llama / factor + smooth * llama : llama;
                }
                return (result, 1);
            }
            case LlmkRopeScaling.Yarn:
            {
                static double GetMscale(double scale, double mscale = 1) => scale <= 1 ? 1 : 0.1 * mscale * Math.Log(scale) + 1;
                double attentionFactor = p.attention_factor != 0 ? p.attention_factor
                    : p.mscale != 0 && p.mscale_all_dim != 0 ? GetMscale(factor, p.mscale) / GetMscale(factor, p.mscale_all_dim)
                    : GetMscale(factor);
                double betaFast = p.beta_fast != 0 ? p.beta_fast : 32, betaSlow = p.beta_slow != 0 ? p.beta_slow : 1;
                double CorrectionDim(double rotations) =>
                    dim * Math.Log(p.original_max_position / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
                double low = CorrectionDim(betaFast), high = CorrectionDim(betaSlow);
                if (p.truncate != 0)
                {
                    low = Math.Floor(low);
                    high = Math.Ceiling(high);
                }
                low = Math.Max(low, 0);
                high = Math.Min(high, dim - 1);
                if (low == high)
                    high += 0.001;
                var pos = PosFreqs(theta);
                var result = new double[pos.Length];
                for (int i = 0; i < pos.Length; i++)
                {
                    double extrapolation = 1 / pos[i], interpolation = 1 / (factor * pos[i]);
                    double extrapolationFactor = 1 - Math.Clamp((i - low) / (high - low), 0, 1);
                    result[i] = interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
                }
                return (result, attentionFactor);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(p), p.scaling, "unknown scaling");
        }
    }

    /// <summary>Rotates x [tokens, heads, headDim] (flattened) at each token's position; features from rotaryDim on
    /// pass through. cos and sin are multiplied by the attention factor, as transformers does.</summary>
    public static double[] Apply(ReadOnlySpan<double> x, int tokens, int heads, int headDim, ReadOnlySpan<long> positions,
        ReadOnlySpan<double> invFreq, double attentionFactor, LlmkRopeStyle style, int rotaryDim)
    {
        var result = x.ToArray();
        int half = rotaryDim / 2;
        var cos = new double[rotaryDim];
        var sin = new double[rotaryDim];
        var rotated = new double[rotaryDim];
        for (int t = 0; t < tokens; t++)
        {
            // emb = cat(freqs, freqs) for NeoX, repeat_interleave(freqs, 2) for GPT-J
            for (int j = 0; j < rotaryDim; j++)
            {
                int f = style == LlmkRopeStyle.Neox ? j % half : j / 2;
                double angle = positions[t] * invFreq[f];
                cos[j] = Math.Cos(angle) * attentionFactor;
                sin[j] = Math.Sin(angle) * attentionFactor;
            }
            for (int h = 0; h < heads; h++)
            {
                var v = x.Slice((t * heads + h) * headDim, rotaryDim);
                // rotate_half: cat(-x2, x1); rotate_every_two: stack(-x[1::2], x[::2]) interleaved
                for (int j = 0; j < rotaryDim; j++)
                    rotated[j] = style == LlmkRopeStyle.Neox
                        ? (j < half ? -v[j + half] : v[j - half])
                        : (j % 2 == 0 ? -v[j + 1] : v[j - 1]);
                for (int j = 0; j < rotaryDim; j++)
                    result[(t * heads + h) * headDim + j] = v[j] * cos[j] + rotated[j] * sin[j];
            }
        }
        return result;
    }
}
