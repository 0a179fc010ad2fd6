/* CUDA attention entry points: llmk_cuda_attention and llmk_cuda_attention_kvcache (arguments validated
 * by api/attention.c). f16/bf16 with a listed head dim (LLMK_ATTN_FLASH_HEAD_DIMS) on sm_80+ run the
 * tensor-core path of the device's architecture (FlashPath, attention.cuh), with split-KV partitions merged
 * by combine_kernel; everything else (f32, other head dims, rows not 16-byte aligned) runs simple_kernel,
 * one warp per query row. docs/ATTENTION_CUDA.md. */
#include "attention_simple.cuh"

#include <math.h>

namespace llmk_cu {
namespace attn {
namespace {

/* Copies k_new/v_new[b, t] into the caches at row cache_seqlens[b] + t (already checked to fit). */
template <class T>
__global__ void append_kernel(const T* k_new, const T* v_new, Layout new_k, Layout new_v, T* k_cache, T* v_cache,
                              Layout cache_k, Layout cache_v, const int32_t* seqlens, int64_t seqlens_stride) {
    const int64_t n = new_k.shape[0] * new_k.shape[1] * new_k.shape[2] * new_k.shape[3];
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < n; x += (int64_t)gridDim.x * blockDim.x) {
        const int64_t d = x % new_k.shape[3], kvh = x / new_k.shape[3] % new_k.shape[2];
        const int64_t t = x / new_k.shape[3] / new_k.shape[2] % new_k.shape[1];
        const int64_t b = x / new_k.shape[3] / new_k.shape[2] / new_k.shape[1];
        const int64_t row = seqlens[b * seqlens_stride] + t;
        k_cache[b * cache_k.strides[0] + row * cache_k.strides[1] + kvh * cache_k.strides[2] + d * cache_k.strides[3]] =
            k_new[new_k.offset(x)];
        v_cache[b * cache_v.strides[0] + row * cache_v.strides[1] + kvh * cache_v.strides[2] + d * cache_v.strides[3]] =
            v_new[new_v.offset(x)];
    }
}

/* Split-KV partitions: params->num_splits when given, else enough (batch, kv head, row block) x split
 * blocks for about two waves, with at least two key tiles per split. */
int choose_splits(const llmk_attention_params* params, int64_t base_blocks, int64_t key_tiles, int sm_count) {
    int64_t splits;
    if (params->num_splits > 0) {
        splits = params->num_splits;
    } else {
        const int64_t want = (2 * (int64_t)(sm_count > 0 ? sm_count : 1) + base_blocks - 1) / base_blocks;
        const int64_t most = key_tiles / 2 > 1 ? key_tiles / 2 : 1;
        splits = want < most ? want : most;
    }
    if (splits > key_tiles)
        splits = key_tiles; /* a split beyond the last tile would only write -inf */
    if (splits > 256)
        splits = 256;
    return splits < 1 ? 1 : (int)splits;
}

/* The tensor-core path applies: f16/bf16, a listed head dim (LLMK_ATTN_FLASH_HEAD_DIMS), sm_80+, every row
 * 16-byte aligned, sizes that keep tile arithmetic inside int, and the shared memory the device grants to
 * the configuration the path plans (*plan). */
bool flash_applies(const llmk_cuda_state* st, FlashArch arch, const llmk_tensor* q, const llmk_tensor* k,
                   const llmk_tensor* v, const llmk_tensor* out, int64_t packed_rows, FlashPlan* plan) {
    const int64_t D = q->shape[3];
    if (q->dtype == LLMK_DTYPE_F32 || st->cc_major < 8)
        return false;
    if (!visit_flash_path(arch, (int)D, [&](auto path) { *plan = decltype(path)::plan(packed_rows); }))
        return false;
    if (!rows_aligned16(q, 2, D) || !rows_aligned16(k, 2, D) || !rows_aligned16(v, 2, D) || !rows_aligned16(out, 2, D))
        return false;
    if (packed_rows >= (1ll << 30) || k->shape[1] >= (1ll << 30))
        return false;
    return plan->smem_bytes <= st->max_shared_optin;
}

/* Attention of q over k/v (kv rows per batch: seqlens[b] + kv_add when seqlens, else k's dimension 1). */
llmk_status attend(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* q, const llmk_tensor* k,
                   const llmk_tensor* v, const int32_t* seqlens, int64_t seqlens_stride, int64_t kv_add,
                   const llmk_tensor* alibi_slopes, const llmk_attention_params* params, llmk_tensor* out,
                   llmk_tensor* lse) {
    llmk_cuda_state* st = state_of(ctx);
    const int64_t batch = q->shape[0], q_len = q->shape[1], heads = q->shape[2], D = q->shape[3];
    const int64_t kv_rows = k->shape[1], kv_heads = k->shape[2];
    if (batch == 0 || q_len == 0 || heads == 0)
        return LLMK_STATUS_OK;
    const int64_t kIntMax = 0x7fffffff;
    if (batch > kIntMax || q_len > kIntMax || heads > kIntMax || kv_rows > kIntMax || D > kIntMax)
        return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: a dimension of q or k exceeds 2^31 - 1", llmk_fn);

    Params p{};
    p.q = q->data;
    p.k = k->data;
    p.v = v->data;
    p.out = out->data;
    p.lse = lse ? static_cast<float*>(lse->data) : nullptr;
    p.q_sb = q->strides[0], p.q_sl = q->strides[1], p.q_sh = q->strides[2];
    p.k_sb = k->strides[0], p.k_sl = k->strides[1], p.k_sh = k->strides[2];
    p.v_sb = v->strides[0], p.v_sl = v->strides[1], p.v_sh = v->strides[2];
    p.o_sb = out->strides[0], p.o_sl = out->strides[1], p.o_sh = out->strides[2];
    if (lse)
        p.lse_sb = lse->strides[0], p.lse_sh = lse->strides[1], p.lse_sl = lse->strides[2];
    p.alibi = alibi_slopes ? static_cast<const float*>(alibi_slopes->data) : nullptr;
    p.alibi_stride = alibi_slopes ? alibi_slopes->strides[0] : 0;
    p.seqlens = seqlens;
    p.seqlens_stride = seqlens_stride;
    p.kv_add = (int)kv_add;
    p.batch = (int)batch, p.q_len = (int)q_len, p.kv_len = (int)kv_rows, p.heads = (int)heads;
    p.kv_heads = (int)kv_heads, p.group = (int)(heads / kv_heads), p.head_dim = (int)D;
    const float scale = params->scale > 0.0f ? params->scale : 1.0f / sqrtf((float)D);
    p.scale_log2 = scale * kLog2e;
    p.softcap = params->softcap > 0.0f;
    p.softcap_in = p.softcap ? scale / params->softcap : 0.0f;
    p.softcap_out = p.softcap ? params->softcap * kLog2e : 0.0f;
    p.window_left = params->window_left < 0 ? -1 : params->window_left;
    p.window_right = params->causal ? 0 : (params->window_right < 0 ? -1 : params->window_right);
    p.num_splits = 1;

    const int64_t packed_rows = q_len * p.group; /* query rows sharing one kv head */
    const bool naive = params->algorithm == LLMK_ATTENTION_ALGORITHM_NAIVE;
    const FlashArch arch = flash_arch_for(st->cc_major);
    FlashPlan plan{};
    if (!naive && flash_applies(st, arch, q, k, v, out, packed_rows, &plan)) {
        const int64_t bm = plan.block_m, bn = plan.block_n;
        const int64_t base_blocks = (packed_rows + bm - 1) / bm * kv_heads * batch;
        p.num_splits = choose_splits(params, base_blocks, (kv_rows + bn - 1) / bn, st->sm_count);
        if (p.num_splits > 1) {
            const int64_t rows = batch * heads * q_len;
            Scratch scratch;
            scratch.add(&p.o_part, (int64_t)p.num_splits * rows * D);
            scratch.add(&p.lse_part, (int64_t)p.num_splits * rows);
            LLMK_TRY(scratch.commit(ctx, llmk_fn));
        }
        LLMK_TRY(q->dtype == LLMK_DTYPE_F16 ? launch_flash<__half>(arch, p, plan, st->stream, llmk_fn)
                                            : launch_flash<__nv_bfloat16>(arch, p, plan, st->stream, llmk_fn));
        if (p.num_splits > 1) {
            const int64_t blocks = (batch * heads * q_len + kSimpleWarps - 1) / kSimpleWarps;
            if (blocks > kIntMax)
                return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: %lld query rows exceed the grid limit", llmk_fn,
                                 (long long)(batch * heads * q_len));
            LLMK_DISPATCH_FLOAT(q->dtype, T,
                combine_kernel<T><<<(unsigned)blocks, kSimpleWarps * 32, 0, st->stream>>>(p);
                LLMK_CUDA_LAUNCH_CHECK();)
        }
        return LLMK_STATUS_OK;
    }

    const int64_t blocks = (batch * q_len * heads + kSimpleWarps - 1) / kSimpleWarps;
    const size_t smem = (size_t)kSimpleWarps * 2 * (size_t)D * sizeof(float);
    if (blocks > kIntMax)
        return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: %lld query rows exceed the grid limit", llmk_fn,
                         (long long)(batch * q_len * heads));
    if (smem > st->max_shared_optin)
        return llmk_fail(LLMK_STATUS_UNSUPPORTED,
                         "%s: head_dim %lld needs %zu bytes of shared memory per block; the device allows %zu", llmk_fn,
                         (long long)D, smem, st->max_shared_optin);
    LLMK_DISPATCH_FLOAT(q->dtype, T,
        if (smem > 48 * 1024)
            LLMK_CUDA_CHECK(cudaFuncSetAttribute(simple_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        simple_kernel<T><<<(unsigned)blocks, kSimpleWarps * 32, smem, st->stream>>>(p);
        LLMK_CUDA_LAUNCH_CHECK();)
    return LLMK_STATUS_OK;
}

} // namespace
} // namespace attn
} // namespace llmk_cu

extern "C" llmk_status llmk_cuda_attention(llmk_context* ctx, const llmk_tensor* q, const llmk_tensor* k,
                                           const llmk_tensor* v, const llmk_tensor* alibi_slopes,
                                           const llmk_attention_params* params, llmk_tensor* out, llmk_tensor* lse) {
    LLMK_CUDA_ENTRY("llmk_attention", ctx) {
        return llmk_cu::attn::attend(ctx, llmk_fn, q, k, v, nullptr, 0, 0, alibi_slopes, params, out, lse);
    });
}

extern "C" llmk_status llmk_cuda_attention_kvcache(llmk_context* ctx, const llmk_tensor* q, llmk_tensor* k_cache,
                                                   llmk_tensor* v_cache, const llmk_tensor* k_new,
                                                   const llmk_tensor* v_new, const llmk_tensor* cache_seqlens,
                                                   const llmk_tensor* alibi_slopes,
                                                   const llmk_attention_params* params, llmk_tensor* out,
                                                   llmk_tensor* lse) {
    LLMK_CUDA_ENTRY("llmk_attention_kvcache", ctx) {
        using namespace llmk_cu;
        const int64_t batch = q->shape[0], max_len = k_cache->shape[1], new_len = k_new ? k_new->shape[1] : 0;
        if (batch == 0)
            return LLMK_STATUS_OK;
        /* Every sequence must fit before anything is written: cache_seqlens[b] in [0, max_len - new_len].
         * This is the op's one host synchronization. */
        char what[160];
        snprintf(what, sizeof what, ": with new_len = %lld the sequence needs rows [0, cache_seqlens + %lld) of a "
                 "cache of max_len = %lld", (long long)new_len, (long long)new_len, (long long)max_len);
        LLMK_TRY(check_indices(ctx, llmk_fn, "cache_seqlens", cache_seqlens, 0, max_len - new_len + 1, what));

        const int32_t* seqlens = static_cast<const int32_t*>(cache_seqlens->data);
        if (new_len > 0 && llmk_numel(k_new) > 0) {
            const int block = 256;
            const unsigned grid = grid_for(llmk_numel(k_new), block, st);
            LLMK_DISPATCH_FLOAT(k_cache->dtype, T,
                attn::append_kernel<T><<<grid, block, 0, st->stream>>>(
                    static_cast<const T*>(k_new->data), static_cast<const T*>(v_new->data), layout_of(k_new),
                    layout_of(v_new), static_cast<T*>(k_cache->data), static_cast<T*>(v_cache->data),
                    layout_of(k_cache), layout_of(v_cache), seqlens, cache_seqlens->strides[0]);
                LLMK_CUDA_LAUNCH_CHECK();)
        }
        return attn::attend(ctx, llmk_fn, q, k_cache, v_cache, seqlens, cache_seqlens->strides[0], new_len,
                            alibi_slopes, params, out, lse);
    });
}
