using LlmKernels.Interop;

namespace LlmKernels.Verification.Oracle;

/// <summary>Scaled dot-product attention in double precision, written from the FlashAttention semantics
/// (flash_attn_func / flash_attn_with_kvcache): bottom-right-aligned causal mask and local window, tanh softcap
/// applied before the ALiBi bias -slope * |i + kv_len - q_len - j|, softmax over the visible keys, and the
/// natural-log log-sum-exp of the (capped, biased) scores. A query that sees no key outputs zeros and lse -inf.</summary>
public static class AttentionOracle
{
    /// <summary>Attention of q over k and v, all dense row-major.</summary>
    /// <param name="q">[batch, qLen, heads, headDim]</param>
    /// <param name="k">[batch, kvRows, kvHeads, headDim]; sequence b uses its first kvLens[b] rows</param>
    /// <param name="v">like k</param>
    /// <param name="kvLens">[batch] keys per sequence, each at most kvRows</param>
    /// <param name="alibiSlopes">[heads], or null</param>
    /// <returns>Output [batch, qLen, heads, headDim] and lse [batch, heads, qLen].</returns>
    public static (double[] Output, double[] Lse) Attention(
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        int batch, int qLen, int heads, int headDim, int kvRows, int kvHeads, ReadOnlySpan<int> kvLens,
        LlmkAttentionParams p, ReadOnlySpan<float> alibiSlopes = default)
    {
        if (heads % kvHeads != 0)
            throw new ArgumentException($"heads {heads} is not a multiple of kvHeads {kvHeads}");
        var output = new double[(long)batch * qLen * heads * headDim];
        var lse = new double[(long)batch * heads * qLen];
        double scale = p.scale > 0 ? p.scale : 1.0 / Math.Sqrt(headDim);
        int groupSize = heads / kvHeads;
        var scores = new double[kvRows];
        var visible = new bool[kvRows];

        for (int b = 0; b < batch; b++)
        {
            int kvLen = kvLens[b];
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / groupSize;
                for (int i = 0; i < qLen; i++)
                {
                    // The query's position among the keys: the last query lines up with the last key.
                    long position = i + (long)kvLen - qLen;
                    long qBase = (((long)b * qLen + i) * heads + h) * headDim;
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < kvLen; j++)
                    {
                        visible[j] = Sees(p, position, j);
                        if (!visible[j])
                            continue;
                        long kBase = (((long)b * kvRows + j) * kvHeads + kvh) * headDim;
                        double s = 0;
                        for (int d = 0; d < headDim; d++)
                            s += (double)q[(int)(qBase + d)] * k[(int)(kBase + d)];
                        s *= scale;
                        if (p.softcap > 0)
                            s = p.softcap * Math.Tanh(s / p.softcap);
                        if (!alibiSlopes.IsEmpty)
                            s -= alibiSlopes[h] * Math.Abs(position - j);
                        scores[j] = s;
                        max = Math.Max(max, s);
                    }

                    double sum = 0;
                    for (int j = 0; j < kvLen; j++)
                        if (visible[j])
                            sum += Math.Exp(scores[j] - max);
                    lse[((long)b * heads + h) * qLen + i] = sum > 0 ? max + Math.Log(sum) : double.NegativeInfinity;
                    if (sum == 0)
                        continue; // no visible key: the output row stays zero
                    for (int j = 0; j < kvLen; j++)
                    {
                        if (!visible[j])
                            continue;
                        double weight = Math.Exp(scores[j] - max) / sum;
                        long vBase = (((long)b * kvRows + j) * kvHeads + kvh) * headDim;
                        for (int d = 0; d < headDim; d++)
                            output[qBase + d] += weight * v[(int)(vBase + d)];
                    }
                }
            }
        }
        return (output, lse);
    }

    /// <summary>Whether the query at <paramref name="position"/> (bottom-right aligned) sees key j.</summary>
    public static bool Sees(LlmkAttentionParams p, long position, int j)
    {
        int right = p.causal != 0 ? 0 : p.window_right;
        if (right >= 0 && j > position + right)
            return false;
        if (p.window_left >= 0 && j < position - p.window_left)
            return false;
        return true;
    }

    /// <summary>The ALiBi slopes of the paper (and HF's build_alibi_tensor) for a head count: 2^(-8 (h + 1) / n)
    /// over the closest power of two n, then the interleaved odd powers for the remaining heads.</summary>
    public static float[] AlibiSlopes(int heads)
    {
        int closest = 1;
        while (closest * 2 <= heads)
            closest *= 2;
        var slopes = new float[heads];
        double start = Math.Pow(2, -8.0 / closest);
        for (int h = 0; h < closest; h++)
            slopes[h] = (float)Math.Pow(start, h + 1);
        double extra = Math.Pow(2, -4.0 / closest);
        for (int h = closest; h < heads; h++)
            slopes[h] = (float)Math.Pow(extra, 2 * (h - closest) + 1);
        return slopes;
    }
}
