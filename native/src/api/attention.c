/* Attention entry points: validate every argument, then dispatch to the context's backend.
 * Cache overflow (cache_seqlens[b] + new_len > max_len) depends on data and is the backend's to check. */
#include "internal.h"

#include <math.h>

/* Dimensions shared by both entry points, read from q and the k-like tensor (k or k_cache). */
typedef struct attention_dims {
    int64_t batch, q_len, heads, head_dim, kv_len, kv_heads;
} attention_dims;

static llmk_status check_params(const char* fn, const llmk_attention_params* params) {
    if (!params)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: params is NULL", fn);
    if (params->algorithm < 0 || params->algorithm >= LLMK_ATTENTION_ALGORITHM_COUNT)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params->algorithm is %d; expected 0 (auto), 1 (naive) or 2 (flash)", fn,
                         (int)params->algorithm);
    if (!isfinite(params->scale) || params->scale < 0.0f)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params->scale is %g; expected a finite value >= 0 (0 means 1 / sqrt(head_dim))", fn,
                         (double)params->scale);
    if (!isfinite(params->softcap) || params->softcap < 0.0f)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params->softcap is %g; expected a finite value >= 0 (0 means off)", fn,
                         (double)params->softcap);
    if (params->causal != 0 && params->causal != 1)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params->causal is %d; expected 0 or 1", fn,
                         (int)params->causal);
    if (params->num_splits < 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params->num_splits is %d; expected >= 0 (0 lets the backend choose)", fn,
                         (int)params->num_splits);
    return LLMK_STATUS_OK;
}

/* The tensors of one call, for the memory checks; NULL entries (optional tensors) are skipped. */
typedef struct named_tensor {
    const char* name;
    const llmk_tensor* tensor;
    bool written;
} named_tensor;

/* Every tensor the call writes must give each element its own address and share no memory with any
 * other tensor of the call: outputs are written by many threads while the inputs are still read. */
static llmk_status check_memory(const char* fn, const named_tensor* tensors, int count) {
    for (int i = 0; i < count; i++) {
        if (!tensors[i].tensor || !tensors[i].written)
            continue;
        LLMK_TRY(llmk_check_no_self_overlap(fn, tensors[i].name, tensors[i].tensor));
        for (int j = 0; j < count; j++)
            if (j != i && tensors[j].tensor)
                LLMK_TRY(llmk_check_no_overlap(fn, tensors[j].name, tensors[j].tensor, tensors[i].name,
                                               tensors[i].tensor, false));
    }
    return LLMK_STATUS_OK;
}

/* q, k, v, out, alibi_slopes and lse as both entry points take them; k_name/v_name are "k"/"v" or
 * "k_cache"/"v_cache", whose dimension 1 is kv_len or max_len. */
static llmk_status check_attention_tensors(const llmk_context* ctx, const char* fn, const llmk_tensor* q,
                                           const char* k_name, const llmk_tensor* k, const char* v_name,
                                           const llmk_tensor* v, const llmk_tensor* alibi_slopes,
                                           const llmk_tensor* out, const llmk_tensor* lse, attention_dims* dims) {
    LLMK_TRY(llmk_check_tensor(ctx, fn, "q", q, 4, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, k_name, k, 4, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, v_name, v, 4, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "out", out, 4, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_same_dtype(fn, k_name, k, "q", q));
    LLMK_TRY(llmk_check_same_dtype(fn, v_name, v, "q", q));
    LLMK_TRY(llmk_check_same_dtype(fn, "out", out, "q", q));

    dims->batch = q->shape[0];
    dims->q_len = q->shape[1];
    dims->heads = q->shape[2];
    dims->head_dim = q->shape[3];
    dims->kv_len = k->shape[1];
    dims->kv_heads = k->shape[2];
    if (dims->head_dim < 1)
        return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH, "%s: q has head_dim (dimension 3) = 0; expected at least 1", fn);
    LLMK_TRY(llmk_check_dim(fn, k_name, k, 0, dims->batch, "batch of q"));
    LLMK_TRY(llmk_check_dim(fn, k_name, k, 3, dims->head_dim, "head_dim of q"));
    LLMK_TRY(llmk_check_same_shape(fn, v_name, v, k_name, k));
    LLMK_TRY(llmk_check_same_shape(fn, "out", out, "q", q));
    if (dims->heads > 0 && (dims->kv_heads == 0 || dims->heads % dims->kv_heads != 0))
        return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH,
                         "%s: q has %lld heads (dimension 2), not a multiple of the %lld kv_heads of %s; GQA/MQA "
                         "needs heads %% kv_heads == 0",
                         fn, (long long)dims->heads, (long long)dims->kv_heads, k_name);

    if (alibi_slopes) {
        LLMK_TRY(llmk_check_tensor(ctx, fn, "alibi_slopes", alibi_slopes, 1, LLMK_DTYPE_BIT(LLMK_DTYPE_F32),
                                   LLMK_CHECK_DEFAULT));
        LLMK_TRY(llmk_check_dim(fn, "alibi_slopes", alibi_slopes, 0, dims->heads, "heads"));
    }
    if (lse) {
        LLMK_TRY(llmk_check_tensor(ctx, fn, "lse", lse, 3, LLMK_DTYPE_BIT(LLMK_DTYPE_F32), LLMK_CHECK_DEFAULT));
        LLMK_TRY(llmk_check_dim(fn, "lse", lse, 0, dims->batch, "batch"));
        LLMK_TRY(llmk_check_dim(fn, "lse", lse, 1, dims->heads, "heads"));
        LLMK_TRY(llmk_check_dim(fn, "lse", lse, 2, dims->q_len, "q_len"));
    }
    return LLMK_STATUS_OK;
}

LLMK_API llmk_status llmk_attention(llmk_context* context, const llmk_tensor* q, const llmk_tensor* k,
                                    const llmk_tensor* v, const llmk_tensor* alibi_slopes,
                                    const llmk_attention_params* params, llmk_tensor* out, llmk_tensor* lse) {
    static const char fn[] = "llmk_attention";
    LLMK_TRY(llmk_check_context(context, fn));
    LLMK_TRY(check_params(fn, params));
    attention_dims dims;
    LLMK_TRY(check_attention_tensors(context, fn, q, "k", k, "v", v, alibi_slopes, out, lse, &dims));
    const named_tensor tensors[] = {{"q", q, false},   {"k", k, false},     {"v", v, false},
                                    {"alibi_slopes", alibi_slopes, false}, {"out", out, true}, {"lse", lse, true}};
    LLMK_TRY(check_memory(fn, tensors, (int)(sizeof tensors / sizeof tensors[0])));
    return LLMK_DISPATCH(attention, context, q, k, v, alibi_slopes, params, out, lse);
}

LLMK_API llmk_status llmk_attention_kvcache(llmk_context* context, const llmk_tensor* q, llmk_tensor* k_cache,
                                            llmk_tensor* v_cache, const llmk_tensor* k_new, const llmk_tensor* v_new,
                                            const llmk_tensor* cache_seqlens, const llmk_tensor* alibi_slopes,
                                            const llmk_attention_params* params, llmk_tensor* out, llmk_tensor* lse) {
    static const char fn[] = "llmk_attention_kvcache";
    LLMK_TRY(llmk_check_context(context, fn));
    LLMK_TRY(check_params(fn, params));
    attention_dims dims;
    LLMK_TRY(check_attention_tensors(context, fn, q, "k_cache", k_cache, "v_cache", v_cache, alibi_slopes, out, lse,
                                     &dims));

    if ((k_new == NULL) != (v_new == NULL))
        return llmk_fail(LLMK_STATUS_NULL_POINTER,
                         "%s: %s is NULL but %s is not; pass both k_new and v_new, or neither",
                         fn, k_new ? "v_new" : "k_new", k_new ? "k_new" : "v_new");
    if (k_new) {
        LLMK_TRY(llmk_check_tensor(context, fn, "k_new", k_new, 4, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
        LLMK_TRY(llmk_check_tensor(context, fn, "v_new", v_new, 4, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
        LLMK_TRY(llmk_check_same_dtype(fn, "k_new", k_new, "k_cache", k_cache));
        LLMK_TRY(llmk_check_same_dtype(fn, "v_new", v_new, "v_cache", v_cache));
        LLMK_TRY(llmk_check_dim(fn, "k_new", k_new, 0, dims.batch, "batch of q"));
        LLMK_TRY(llmk_check_dim(fn, "k_new", k_new, 2, dims.kv_heads, "kv_heads of k_cache"));
        LLMK_TRY(llmk_check_dim(fn, "k_new", k_new, 3, dims.head_dim, "head_dim of q"));
        LLMK_TRY(llmk_check_same_shape(fn, "v_new", v_new, "k_new", k_new));
    }
    LLMK_TRY(llmk_check_tensor(context, fn, "cache_seqlens", cache_seqlens, 1, LLMK_DTYPE_BIT(LLMK_DTYPE_I32),
                               LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_dim(fn, "cache_seqlens", cache_seqlens, 0, dims.batch, "batch"));
    const named_tensor tensors[] = {
        {"q", q, false},          {"k_cache", k_cache, true}, {"v_cache", v_cache, true},
        {"k_new", k_new, false},  {"v_new", v_new, false},    {"cache_seqlens", cache_seqlens, false},
        {"alibi_slopes", alibi_slopes, false}, {"out", out, true}, {"lse", lse, true}};
    LLMK_TRY(check_memory(fn, tensors, (int)(sizeof tensors / sizeof tensors[0])));
    return LLMK_DISPATCH(attention_kvcache, context, q, k_cache, v_cache, k_new, v_new, cache_seqlens, alibi_slopes,
                         params, out, lse);
}
