/* Mixture of experts: validation of routing, permute and unpermute, then dispatch to the backend.
 * Expert ids found in the data are checked by the backend (they are only known there). */
#include "internal.h"

#include <math.h>

/* Row indices (token * top_k + slot, permuted rows) are stored as i32. */
static llmk_status check_row_count(const char* fn, int64_t tokens, int64_t top_k) {
    if (top_k > 0 && tokens > INT32_MAX / top_k)
        return llmk_fail(LLMK_STATUS_OVERFLOW,
                         "%s: tokens * top_k = %lld * %lld does not fit the i32 row indices (at most %d rows)", fn,
                         (long long)tokens, (long long)top_k, INT32_MAX);
    return LLMK_STATUS_OK;
}

static llmk_status check_router_params(const char* fn, const llmk_moe_router_params* p, int64_t experts) {
    if (p->top_k < 1 || p->top_k > experts)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params.top_k is %d; expected 1..%lld (the experts)", fn,
                         (int)p->top_k, (long long)experts);
    if (p->scoring < 0 || p->scoring >= LLMK_MOE_SCORING_COUNT)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params.scoring is %d; expected LLMK_MOE_SCORING_SOFTMAX (0) or _SIGMOID (1)", fn,
                         (int)p->scoring);
    if (p->renormalize != 0 && p->renormalize != 1)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params.renormalize is %d; expected 0 or 1", fn,
                         (int)p->renormalize);
    if (!isfinite(p->routed_scaling_factor) || p->routed_scaling_factor < 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params.routed_scaling_factor is %g; expected a finite value >= 0 (0 means 1)", fn,
                         (double)p->routed_scaling_factor);
    if (p->num_groups < 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params.num_groups is %d; expected >= 0 (0 or 1: no grouping)", fn, (int)p->num_groups);
    if (p->num_groups <= 1)
        return LLMK_STATUS_OK; /* topk_groups is unused without groups */
    if (experts % p->num_groups != 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params.num_groups = %d does not divide the %lld experts", fn, (int)p->num_groups,
                         (long long)experts);
    if (p->topk_groups < 1 || p->topk_groups > p->num_groups)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params.topk_groups is %d; expected 1..%d (num_groups)",
                         fn, (int)p->topk_groups, (int)p->num_groups);
    int64_t eligible = (int64_t)p->topk_groups * (experts / p->num_groups);
    if (eligible < p->top_k)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params.top_k = %d exceeds the %lld experts of the topk_groups = %d kept groups", fn,
                         (int)p->top_k, (long long)eligible, (int)p->topk_groups);
    return LLMK_STATUS_OK;
}

llmk_status llmk_moe_route(llmk_context* ctx, const llmk_tensor* logits, const llmk_tensor* correction_bias,
                           const llmk_moe_router_params* params, llmk_tensor* weights, llmk_tensor* expert_ids) {
    static const char fn[] = "llmk_moe_route";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "logits", logits, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    if (!params)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: params is NULL", fn);
    int64_t tokens = logits->shape[0], experts = logits->shape[1];
    if (experts > INT32_MAX)
        return llmk_fail(LLMK_STATUS_OVERFLOW, "%s: logits has %lld experts; expert ids are i32", fn,
                         (long long)experts);
    if (correction_bias) {
        LLMK_TRY(llmk_check_tensor(ctx, fn, "correction_bias", correction_bias, 1, LLMK_DTYPE_BIT(LLMK_DTYPE_F32),
                                   LLMK_CHECK_DEFAULT));
        LLMK_TRY(llmk_check_dim(fn, "correction_bias", correction_bias, 0, experts, "experts"));
    }
    LLMK_TRY(check_router_params(fn, params, experts));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "weights", weights, 2, LLMK_DTYPE_BIT(LLMK_DTYPE_F32), LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_dim(fn, "weights", weights, 0, tokens, "tokens"));
    LLMK_TRY(llmk_check_dim(fn, "weights", weights, 1, params->top_k, "top_k"));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "weights", weights));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "expert_ids", expert_ids, 2, LLMK_DTYPE_BIT(LLMK_DTYPE_I32),
                               LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_same_shape(fn, "expert_ids", expert_ids, "weights", weights));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "expert_ids", expert_ids));
    LLMK_TRY(llmk_check_no_overlap(fn, "logits", logits, "weights", weights, false));
    LLMK_TRY(llmk_check_no_overlap(fn, "logits", logits, "expert_ids", expert_ids, false));
    LLMK_TRY(llmk_check_no_overlap(fn, "weights", weights, "expert_ids", expert_ids, false));
    if (tokens == 0)
        return LLMK_STATUS_OK;
    return LLMK_DISPATCH(moe_route, ctx, logits, correction_bias, params, weights, expert_ids);
}

llmk_status llmk_moe_permute(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* expert_ids,
                             int32_t num_experts, llmk_tensor* permuted, llmk_tensor* expert_offsets,
                             llmk_tensor* source_rows, llmk_tensor* permuted_rows) {
    static const char fn[] = "llmk_moe_permute";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "x", x, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "expert_ids", expert_ids, 2, LLMK_DTYPE_BIT(LLMK_DTYPE_I32),
                               LLMK_CHECK_DEFAULT));
    int64_t tokens = x->shape[0], hidden = x->shape[1], top_k = expert_ids->shape[1];
    LLMK_TRY(llmk_check_dim(fn, "expert_ids", expert_ids, 0, tokens, "tokens"));
    LLMK_TRY(check_row_count(fn, tokens, top_k));
    if (num_experts < 1)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: num_experts is %d; expected >= 1", fn, (int)num_experts);
    LLMK_TRY(llmk_check_tensor(ctx, fn, "permuted", permuted, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_dim(fn, "permuted", permuted, 0, tokens * top_k, "tokens * top_k"));
    LLMK_TRY(llmk_check_dim(fn, "permuted", permuted, 1, hidden, "hidden"));
    LLMK_TRY(llmk_check_same_dtype(fn, "permuted", permuted, "x", x));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "permuted", permuted));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "expert_offsets", expert_offsets, 1, LLMK_DTYPE_BIT(LLMK_DTYPE_I32),
                               LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_dim(fn, "expert_offsets", expert_offsets, 0, (int64_t)num_experts + 1, "num_experts + 1"));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "source_rows", source_rows, 1, LLMK_DTYPE_BIT(LLMK_DTYPE_I32),
                               LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_dim(fn, "source_rows", source_rows, 0, tokens * top_k, "tokens * top_k"));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "permuted_rows", permuted_rows, 2, LLMK_DTYPE_BIT(LLMK_DTYPE_I32),
                               LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_same_shape(fn, "permuted_rows", permuted_rows, "expert_ids", expert_ids));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "permuted_rows", permuted_rows));
    /* The outputs are written while x and expert_ids are still being read. */
    const llmk_tensor* outputs[] = {permuted, expert_offsets, source_rows, permuted_rows};
    const char* output_names[] = {"permuted", "expert_offsets", "source_rows", "permuted_rows"};
    for (int i = 0; i < 4; i++) {
        LLMK_TRY(llmk_check_no_overlap(fn, "x", x, output_names[i], outputs[i], false));
        LLMK_TRY(llmk_check_no_overlap(fn, "expert_ids", expert_ids, output_names[i], outputs[i], false));
        for (int j = 0; j < i; j++)
            LLMK_TRY(llmk_check_no_overlap(fn, output_names[j], outputs[j], output_names[i], outputs[i], false));
    }
    return LLMK_DISPATCH(moe_permute, ctx, x, expert_ids, num_experts, permuted, expert_offsets, source_rows,
                         permuted_rows);
}

llmk_status llmk_moe_unpermute(llmk_context* ctx, const llmk_tensor* expert_out, const llmk_tensor* weights,
                               const llmk_tensor* permuted_rows, llmk_tensor* out) {
    static const char fn[] = "llmk_moe_unpermute";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "expert_out", expert_out, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "weights", weights, 2, LLMK_DTYPE_BIT(LLMK_DTYPE_F32), LLMK_CHECK_DEFAULT));
    int64_t tokens = weights->shape[0], top_k = weights->shape[1], hidden = expert_out->shape[1];
    LLMK_TRY(check_row_count(fn, tokens, top_k));
    LLMK_TRY(llmk_check_dim(fn, "expert_out", expert_out, 0, tokens * top_k, "tokens * top_k"));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "permuted_rows", permuted_rows, 2, LLMK_DTYPE_BIT(LLMK_DTYPE_I32),
                               LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_same_shape(fn, "permuted_rows", permuted_rows, "weights", weights));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "out", out, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_dim(fn, "out", out, 0, tokens, "tokens"));
    LLMK_TRY(llmk_check_dim(fn, "out", out, 1, hidden, "hidden"));
    LLMK_TRY(llmk_check_same_dtype(fn, "out", out, "expert_out", expert_out));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "out", out));
    LLMK_TRY(llmk_check_no_overlap(fn, "expert_out", expert_out, "out", out, false));
    LLMK_TRY(llmk_check_no_overlap(fn, "weights", weights, "out", out, false));
    LLMK_TRY(llmk_check_no_overlap(fn, "permuted_rows", permuted_rows, "out", out, false));
    return LLMK_DISPATCH(moe_unpermute, ctx, expert_out, weights, permuted_rows, out);
}
