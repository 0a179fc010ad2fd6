using LlmKernels.Interop;

namespace LlmKernels.Verification.Oracle;

/// <summary>Mixture-of-experts routing and the permute / unpermute of token rows, in double, as HF transformers'
/// MixtralSparseMoeBlock (softmax, top-k, renormalize), Qwen2MoeSparseMoeBlock (norm_topk_prob) and DeepSeek-V3's
/// MoEGate (sigmoid, e_score_correction_bias for the choice only, group score = sum of the top-2 biased scores,
/// topk_group groups kept, then top-k, renormalize with + 1e-20, times routed_scaling_factor), and vLLM's
/// moe_permute / moe_unpermute row maps.</summary>
public static class MoeOracle
{
    /// <summary>The routing of one batch. Margin[t] is the smallest gap between two scores whose order decided
    /// token t's selection (group boundary, each rank of the chosen experts, the top-k boundary); 0 for an exact
    /// tie. A gap far below f32 resolution means f32 arithmetic may legitimately choose differently.</summary>
    public sealed record Routing(int[] ExpertIds, double[] Weights, double[] Margin);

    public static Routing Route(ReadOnlySpan<double> logits, int tokens, int experts, ReadOnlySpan<double> bias,
                                LlmkMoeRouterParams p)
    {
        int k = p.top_k;
        var ids = new int[tokens * k];
        var weights = new double[tokens * k];
        var margin = new double[tokens];
        for (int t = 0; t < tokens; t++)
        {
            var row = logits.Slice(t * experts, experts);
            var score = p.scoring == LlmkMoeScoring.Sigmoid ? Sigmoid(row) : Softmax(row);
            var choice = new double[experts];
            for (int e = 0; e < experts; e++)
                choice[e] = score[e] + (bias.IsEmpty ? 0 : bias[e]);

            double tokenMargin = double.PositiveInfinity;
            var eligible = Enumerable.Range(0, experts);
            if (p.num_groups > 1)
            {
                int size = experts / p.num_groups;
                // Each group scores its two best choices (a group of one: its only expert).
                var groupScore = Enumerable.Range(0, p.num_groups)
                    .Select(g => choice.Skip(g * size).Take(size).OrderByDescending(v => v).Take(2).Sum())
                    .ToArray();
                var groupRank = RankDescending(groupScore);
                if (p.topk_groups < p.num_groups)
                    tokenMargin = groupScore[groupRank[p.topk_groups - 1]] - groupScore[groupRank[p.topk_groups]];
                var kept = groupRank.Take(p.topk_groups).ToHashSet();
                eligible = eligible.Where(e => kept.Contains(e / size));
            }
            var candidates = eligible.ToArray();
            var rank = RankDescending(candidates.Select(e => choice[e]).ToArray()).Select(i => candidates[i]).ToArray();
            for (int i = 0; i < k && i + 1 < rank.Length; i++)
                tokenMargin = Math.Min(tokenMargin, choice[rank[i]] - choice[rank[i + 1]]);
            margin[t] = tokenMargin;

            double sum = 0;
            for (int i = 0; i < k; i++)
                sum += score[rank[i]];
            double denominator = p.renormalize != 0 ? sum + 1e-20 : 1;
            double scale = p.routed_scaling_factor == 0 ? 1 : p.routed_scaling_factor;
            for (int i = 0; i < k; i++)
            {
                ids[t * k + i] = rank[i];
                weights[t * k + i] = score[rank[i]] / denominator * scale;
            }
        }
        return new Routing(ids, weights, margin);
    }

    /// <summary>The row maps of moe_permute, from their definition: experts in order, and within an expert the
    /// (token, slot) pairs in order.</summary>
    public static (int[] Offsets, int[] SourceRows, int[] PermutedRows) Permute(ReadOnlySpan<int> expertIds, int tokens,
                                                                                int topK, int numExperts)
    {
        var offsets = new int[numExperts + 1];
        var sourceRows = new int[tokens * topK];
        var permutedRows = new int[tokens * topK];
        int row = 0;
        for (int e = 0; e < numExperts; e++)
        {
            offsets[e] = row;
            for (int i = 0; i < tokens * topK; i++)
            {
                if (expertIds[i] != e)
                    continue;
                sourceRows[row] = i;
                permutedRows[i] = row;
                row++;
            }
        }
        offsets[numExperts] = row;
        return (offsets, sourceRows, permutedRows);
    }

    /// <summary>permuted[r, :] = x[sourceRows[r] / topK, :].</summary>
    public static double[] Gather(ReadOnlySpan<double> x, int hidden, ReadOnlySpan<int> sourceRows, int topK)
    {
        var result = new double[sourceRows.Length * hidden];
        for (int r = 0; r < sourceRows.Length; r++)
            x.Slice(sourceRows[r] / topK * hidden, hidden).CopyTo(result.AsSpan(r * hidden, hidden));
        return result;
    }

    /// <summary>out[t, :] = sum over slots s of weights[t, s] * expertOut[permutedRows[t, s], :].</summary>
    public static double[] Unpermute(ReadOnlySpan<double> expertOut, int hidden, ReadOnlySpan<double> weights,
                                     ReadOnlySpan<int> permutedRows, int tokens, int topK)
    {
        var result = new double[tokens * hidden];
        for (int t = 0; t < tokens; t++)
            for (int s = 0; s < topK; s++)
            {
                double w = weights[t * topK + s];
                var source = expertOut.Slice(permutedRows[t * topK + s] * hidden, hidden);
                for (int h = 0; h < hidden; h++)
                    result[t * hidden + h] += w * source[h];
            }
        return result;
    }

    /// <summary>A sparse MoE block as HF's MixtralSparseMoeBlock computes it: route each token, then
    /// out[t] = sum over its chosen experts e of weight * (W_e x[t]), W_e of shape [outFeatures, hidden].</summary>
    public static double[] SparseBlock(ReadOnlySpan<double> x, int tokens, int hidden, ReadOnlySpan<double> logits,
                                       int experts, ReadOnlySpan<double> bias, LlmkMoeRouterParams p,
                                       IReadOnlyList<double[]> expertWeights, int outFeatures)
    {
        var routing = Route(logits, tokens, experts, bias, p);
        var result = new double[tokens * outFeatures];
        for (int t = 0; t < tokens; t++)
            for (int s = 0; s < p.top_k; s++)
            {
                double w = routing.Weights[t * p.top_k + s];
                var y = LinearOracle.Linear(x.Slice(t * hidden, hidden), 1, hidden, expertWeights[routing.ExpertIds[t * p.top_k + s]], outFeatures, []);
                for (int o = 0; o < outFeatures; o++)
                    result[t * outFeatures + o] += w * y[o];
            }
        return result;
    }

    private static double[] Softmax(ReadOnlySpan<double> logits)
    {
        double max = double.NegativeInfinity;
        foreach (double v in logits)
            max = Math.Max(max, v);
        var result = new double[logits.Length];
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
            sum += result[i] = Math.Exp(logits[i] - max);
        for (int i = 0; i < result.Length; i++)
            result[i] /= sum;
        return result;
    }

    private static double[] Sigmoid(ReadOnlySpan<double> logits)
    {
        var result = new double[logits.Length];
        for (int i = 0; i < logits.Length; i++)
            result[i] = 1 / (1 + Math.Exp(-logits[i]));
        return result;
    }

    /// <summary>Indices sorted by value, largest first, equal values by lower index (torch.topk's order on ties
    /// is unspecified; the library fixes it to the lower id).</summary>
    private static int[] RankDescending(double[] values) =>
        Enumerable.Range(0, values.Length).OrderByDescending(i => values[i]).ThenBy(i => i).ToArray();
}
