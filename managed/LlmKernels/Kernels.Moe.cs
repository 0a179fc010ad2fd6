using LlmKernels.Interop;

namespace LlmKernels;

/// <summary>Router parameters for <see cref="Kernels.MoeRoute"/>, named as in Hugging Face configs.</summary>
public static class MoeRouter
{
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
        scoring = (int)scoring,
        renormalize = renormalize ? 1 : 0,
        num_groups = numGroups,
        topk_groups = topkGroups,
        routed_scaling_factor = routedScalingFactor,
    };
}

public static unsafe partial class Kernels
{
    /// <summary>Picks top_k experts per token (llmk_moe_route): the weights are the unbiased scores of the chosen
    /// experts, the ids best first, ties to the lower id.</summary>
    /// <param name="logits">[tokens, experts], floating</param>
    /// <param name="correctionBias">[experts] f32 (e_score_correction_bias, steers the selection only), or null</param>
    /// <param name="weights">[tokens, top_k] f32</param>
    /// <param name="expertIds">[tokens, top_k] i32</param>
    public static void MoeRoute(Context ctx, Tensor logits, Tensor? correctionBias, in LlmkMoeRouterParams parameters,
                                Tensor weights, Tensor expertIds)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(expertIds);
        LlmkTensor ls = logits.Native, ws = weights.Native, es = expertIds.Native;
        LlmkTensor bs = correctionBias is null ? default : correctionBias.Native;
        LlmkMoeRouterParams p = parameters;
        Native.Check(NativeMethods.llmk_moe_route(ctx.Pointer, &ls, correctionBias is null ? null : &bs, &p, &ws, &es));
        GC.KeepAlive(ctx);
        GC.KeepAlive(logits);
        GC.KeepAlive(correctionBias);
        GC.KeepAlive(weights);
        GC.KeepAlive(expertIds);
    }

    /// <summary>Gathers token rows into expert-contiguous order (llmk_moe_permute): expert e's rows are
    /// permuted[expertOffsets[e] .. expertOffsets[e + 1]), in (token, slot) order.</summary>
    /// <param name="x">[tokens, hidden]</param>
    /// <param name="expertIds">[tokens, top_k] i32, each in [0, numExperts)</param>
    /// <param name="permuted">[tokens * top_k, hidden], x's dtype</param>
    /// <param name="expertOffsets">[numExperts + 1] i32</param>
    /// <param name="sourceRows">[tokens * top_k] i32: token * top_k + slot of each permuted row</param>
    /// <param name="permutedRows">[tokens, top_k] i32: the permuted row of each (token, slot)</param>
    public static void MoePermute(Context ctx, Tensor x, Tensor expertIds, int numExperts, Tensor permuted,
                                  Tensor expertOffsets, Tensor sourceRows, Tensor permutedRows)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(expertIds);
        ArgumentNullException.ThrowIfNull(permuted);
        ArgumentNullException.ThrowIfNull(expertOffsets);
        ArgumentNullException.ThrowIfNull(sourceRows);
        ArgumentNullException.ThrowIfNull(permutedRows);
        LlmkTensor xs = x.Native, es = expertIds.Native, ps = permuted.Native, os = expertOffsets.Native,
                   ss = sourceRows.Native, rs = permutedRows.Native;
        Native.Check(NativeMethods.llmk_moe_permute(ctx.Pointer, &xs, &es, numExperts, &ps, &os, &ss, &rs));
        GC.KeepAlive(ctx);
        GC.KeepAlive(x);
        GC.KeepAlive(expertIds);
        GC.KeepAlive(permuted);
        GC.KeepAlive(expertOffsets);
        GC.KeepAlive(sourceRows);
        GC.KeepAlive(permutedRows);
    }

    /// <summary>output[t] = sum over slots s, in order, of weights[t, s] * expertOut[permutedRows[t, s]]
    /// (llmk_moe_unpermute), accumulated in f32 without atomics.</summary>
    /// <param name="expertOut">[tokens * top_k, hidden]</param>
    /// <param name="weights">[tokens, top_k] f32</param>
    /// <param name="permutedRows">[tokens, top_k] i32, from <see cref="MoePermute"/></param>
    /// <param name="output">[tokens, hidden], expertOut's dtype</param>
    public static void MoeUnpermute(Context ctx, Tensor expertOut, Tensor weights, Tensor permutedRows, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(expertOut);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(permutedRows);
        ArgumentNullException.ThrowIfNull(output);
        LlmkTensor es = expertOut.Native, ws = weights.Native, rs = permutedRows.Native, os = output.Native;
        Native.Check(NativeMethods.llmk_moe_unpermute(ctx.Pointer, &es, &ws, &rs, &os));
        GC.KeepAlive(ctx);
        GC.KeepAlive(expertOut);
        GC.KeepAlive(weights);
        GC.KeepAlive(permutedRows);
        GC.KeepAlive(output);
    }
}
