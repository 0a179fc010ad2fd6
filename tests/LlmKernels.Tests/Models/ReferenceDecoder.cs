using LlmKernels.Models;

namespace LlmKernels.Tests.Models;

/// <summary>
/// An independent double-precision forward pass of the Llama family, written from the semantics of
/// transformers' modeling_llama / modeling_mistral / modeling_qwen2 / modeling_mixtral (eager attention),
/// not from the runner or the kernels: plain loops over the f32 weights, no KV cache, every position
/// recomputed from scratch.
/// </summary>
internal sealed class ReferenceDecoder(ModelConfig c, IReadOnlyDictionary<string, (float[] Values, long[] Shape)> weights)
{
    private float[] W(string name) => weights[name].Values;

    private float[]? Optional(string name) => weights.TryGetValue(name, out var w) ? w.Values : null;

    /// <summary>Logits [tokens, vocab] of every position.</summary>
    public double[] Forward(int[] tokens)
    {
        int n = tokens.Length, hidden = c.HiddenSize, hd = c.HeadDim;
        int heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads;

        // inputs_embeds = embed_tokens(input_ids)
        var x = new double[n][];
        var embed = W("model.embed_tokens.weight");
        for (int t = 0; t < n; t++) x[t] = Enumerable.Range(0, hidden).Select(i => (double)embed[(long)tokens[t] * hidden + i]).ToArray();

        var invFreq = InverseFrequencies();
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            var h = x.Select(r => RmsNorm(r, W(p + "input_layernorm.weight"))).ToArray();
            var q = h.Select(r => Linear(r, W(p + "self_attn.q_proj.weight"), Optional(p + "self_attn.q_proj.bias"), heads * hd)).ToArray();
            var k = h.Select(r => Linear(r, W(p + "self_attn.k_proj.weight"), Optional(p + "self_attn.k_proj.bias"), kvHeads * hd)).ToArray();
            var v = h.Select(r => Linear(r, W(p + "self_attn.v_proj.weight"), Optional(p + "self_attn.v_proj.bias"), kvHeads * hd)).ToArray();
            for (int t = 0; t < n; t++)
            {
                ApplyRotary(q[t], heads, t, invFreq);
                ApplyRotary(k[t], kvHeads, t, invFreq);
            }
            var attn = Attention(q, k, v, c.SlidingWindowFor(l));
            for (int t = 0; t < n; t++)
            {
                var o = Linear(attn[t], W(p + "self_attn.o_proj.weight"), Optional(p + "self_attn.o_proj.bias"), hidden);
                for (int i = 0; i < hidden; i++) x[t][i] += o[i];
            }
            for (int t = 0; t < n; t++)
            {
                var h2 = RmsNorm(x[t], W(p + "post_attention_layernorm.weight"));
                var m = c.IsMoe ? SparseMoe(h2, p + "block_sparse_moe.") : Mlp(h2, p + "mlp.gate_proj", p + "mlp.up_proj", p + "mlp.down_proj");
                for (int i = 0; i < hidden; i++) x[t][i] += m[i];
            }
        }

        var head = c.TieWordEmbeddings ? embed : W("lm_head.weight");
        var logits = new double[(long)n * c.VocabSize];
        for (int t = 0; t < n; t++)
        {
            var row = Linear(RmsNorm(x[t], W("model.norm.weight")), head, null, c.VocabSize);
            row.CopyTo(logits, (long)t * c.VocabSize);
        }
        return logits;
    }

    /// <summary>LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * weight.</summary>
    private double[] RmsNorm(double[] x, float[] weight)
    {
        double mean = x.Sum(v => v * v) / x.Length;
        double inv = 1 / Math.Sqrt(mean + c.RmsNormEps);
        return x.Select((v, i) => v * inv * weight[i]).ToArray();
    }

    /// <summary>nn.Linear: y = W x + b, W [out, in] row-major.</summary>
    private static double[] Linear(double[] x, float[] w, float[]? bias, int outFeatures)
    {
        int inFeatures = x.Length;
        var y = new double[outFeatures];
        for (int o = 0; o < outFeatures; o++)
        {
            double s = bias?[o] ?? 0;
            for (int i = 0; i < inFeatures; i++) s += (double)w[(long)o * inFeatures + i] * x[i];
            y[o] = s;
        }
        return y;
    }

    private static double Silu(double z) => z / (1 + Math.Exp(-z));

    /// <summary>LlamaMLP / MixtralBlockSparseTop2MLP: down(silu(gate(x)) * up(x)).</summary>
    private double[] Mlp(double[] x, string gate, string up, string down)
    {
        int ffn = c.IntermediateSize;
        var g = Linear(x, W(gate + ".weight"), Optional(gate + ".bias"), ffn);
        var u = Linear(x, W(up + ".weight"), Optional(up + ".bias"), ffn);
        var a = g.Select((gv, i) => Silu(gv) * u[i]).ToArray();
        return Linear(a, W(down + ".weight"), Optional(down + ".bias"), c.HiddenSize);
    }

    /// <summary>MixtralSparseMoeBlock: softmax over the router logits, top-k, weights renormalized to sum 1.</summary>
    private double[] SparseMoe(double[] x, string p)
    {
        int experts = c.NumLocalExperts;
        var logits = Linear(x, W(p + "gate.weight"), null, experts);
        double max = logits.Max();
        var probs = logits.Select(v => Math.Exp(v - max)).ToArray();
        double sum = probs.Sum();
        var top = Enumerable.Range(0, experts).OrderByDescending(e => probs[e]).ThenBy(e => e).Take(c.NumExpertsPerTok).ToArray();
        double topSum = top.Sum(e => probs[e]);
        var output = new double[c.HiddenSize];
        foreach (int e in top)
        {
            var y = Mlp(x, $"{p}experts.{e}.w1", $"{p}experts.{e}.w3", $"{p}experts.{e}.w2");
            double weight = probs[e] / sum / (topSum / sum);
            for (int i = 0; i < y.Length; i++) output[i] += weight * y[i];
        }
        return output;
    }

    /// <summary>ROPE_INIT_FUNCTIONS: default, linear (inv / factor) and llama3 (wavelength bands).</summary>
    private double[] InverseFrequencies()
    {
        int dim = c.HeadDim;
        var inv = Enumerable.Range(0, dim / 2).Select(i => 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / dim)).ToArray();
        var s = c.RopeScaling;
        if (s is null) return inv;
        switch (s.Type)
        {
            case RopeScalingType.Linear:
                return inv.Select(f => f / s.Factor).ToArray();
            case RopeScalingType.Llama3:
                double low = s.LowFreqFactor ?? 1, high = s.HighFreqFactor ?? 4, old = s.OriginalMaxPositionEmbeddings!.Value;
                double lowWavelen = old / low, highWavelen = old / high;
                return inv.Select(f =>
                {
                    double wavelen = 2 * Math.PI / f;
                    if (wavelen < highWavelen) return f;
                    if (wavelen > lowWavelen) return f / s.Factor;
                    double smooth = (old / wavelen - low) / (high - low);
                    return (1 - smooth) * f / s.Factor + smooth * f;
                }).ToArray();
            default:
                throw new NotSupportedException($"the reference has no {s.Type} scaling");
        }
    }

    /// <summary>apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1), per head.</summary>
    private void ApplyRotary(double[] x, int headCount, int position, double[] invFreq)
    {
        int hd = c.HeadDim, half = hd / 2;
        for (int h = 0; h < headCount; h++)
        {
            int b = h * hd;
            for (int i = 0; i < half; i++)
            {
                double angle = position * invFreq[i], cos = Math.Cos(angle), sin = Math.Sin(angle);
                double x1 = x[b + i], x2 = x[b + half + i];
                x[b + i] = x1 * cos - x2 * sin;
                x[b + half + i] = x2 * cos + x1 * sin;
            }
        }
    }

    /// <summary>eager_attention_forward with repeat_kv, the causal mask and (Mistral) kv_idx &gt; q_idx - window.</summary>
    private double[][] Attention(double[][] q, double[][] k, double[][] v, int? window)
    {
        int n = q.Length, hd = c.HeadDim, heads = c.NumAttentionHeads, groups = heads / c.NumKeyValueHeads;
        double scale = 1 / Math.Sqrt(hd);
        var output = new double[n][];
        for (int i = 0; i < n; i++)
        {
            output[i] = new double[heads * hd];
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / groups;
                var visible = Enumerable.Range(0, i + 1).Where(j => window is not int w || j > i - w).ToArray();
                var scores = visible.Select(j =>
                {
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += q[i][h * hd + d] * k[j][kvh * hd + d];
                    return s * scale;
                }).ToArray();
                double max = scores.Max();
                var p = scores.Select(s => Math.Exp(s - max)).ToArray();
                double sum = p.Sum();
                for (int s = 0; s < visible.Length; s++)
                    for (int d = 0; d < hd; d++)
                        output[i][h * hd + d] += p[s] / sum * v[visible[s]][kvh * hd + d];
            }
        }
        return output;
    }
}
