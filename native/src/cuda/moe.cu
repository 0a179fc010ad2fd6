/* Mixture of experts: routing (vLLM's topk_softmax, DeepSeek-V3's sigmoid + grouped top-k), permute
 * (stable counting sort by expert) and unpermute (weighted combine). Everything is deterministic: no
 * result depends on thread scheduling (the only atomics count integers). */
#include "common.cuh"

namespace llmk_cu {
namespace {

/* ---- route ------------------------------------------------------------------------------------------------ */

struct RouteArgs {
    int64_t tokens;
    int32_t experts, top_k, groups, keep; /* groups == 1: no grouping */
    int32_t softmax, renormalize;
    float scale;
    int64_t logits_stride, weights_stride, ids_stride;
    int32_t warp_bytes; /* shared memory per warp */
};

/* Per-warp shared memory: score [experts], choice [experts], group score [groups] (f32), then taken
 * [experts] and group kept [groups] flags. */
inline int64_t route_warp_bytes(int64_t experts, int64_t groups) {
    return ((experts * 2 + groups) * (int64_t)sizeof(float) + experts + groups + 15) / 16 * 16;
}

/* The better of two candidates: higher value, ties (and unordered NaNs) to the lower index; index < 0
 * is no candidate. */
__device__ __forceinline__ void better(float& value, int32_t& index, float other_value, int32_t other_index) {
    if (other_index < 0)
        return;
    if (index < 0 || other_value > value || (!(other_value < value) && other_index < index)) {
        value = other_value;
        index = other_index;
    }
}

__device__ __forceinline__ void warp_argmax(float& value, int32_t& index) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, value, o);
        int32_t i = __shfl_xor_sync(0xffffffffu, index, o);
        better(value, index, v, i);
    }
    /* With NaNs the order is not total and lanes could disagree: lane 0 decides. */
    value = __shfl_sync(0xffffffffu, value, 0);
    index = __shfl_sync(0xffffffffu, index, 0);
}

/* One warp per token. */
template <class T>
__global__ void route_kernel(const T* logits, const float* bias, float* weights, int32_t* expert_ids, RouteArgs a) {
    extern __shared__ __align__(16) unsigned char route_shared[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    unsigned char* mine = route_shared + (size_t)warp * a.warp_bytes;
    float* score = reinterpret_cast<float*>(mine);
    float* choice = score + a.experts;
    float* group_score = choice + a.experts;
    unsigned char* taken = reinterpret_cast<unsigned char*>(group_score + a.groups);
    unsigned char* group_kept = taken + a.experts;
    const int32_t group_size = a.experts / a.groups;

    for (int64_t t = (int64_t)blockIdx.x * warps + warp; t < a.tokens; t += (int64_t)gridDim.x * warps) {
        const T* row = logits + t * a.logits_stride;
        if (a.softmax) {
            float max = -INFINITY;
            for (int32_t e = lane; e < a.experts; e += 32)
                max = fmaxf(max, to_float(row[e]));
            max = warp_max(max);
            float sum = 0.0f;
            for (int32_t e = lane; e < a.experts; e += 32) {
                score[e] = expf(to_float(row[e]) - max);
                sum += score[e];
            }
            sum = warp_sum(sum);
            for (int32_t e = lane; e < a.experts; e += 32)
                score[e] /= sum;
        } else {
            for (int32_t e = lane; e < a.experts; e += 32)
                score[e] = 1.0f / (1.0f + expf(-to_float(row[e])));
        }
        /* The bias steers the selection only; the weights are the unbiased scores. */
        for (int32_t e = lane; e < a.experts; e += 32) {
            choice[e] = bias ? score[e] + bias[e] : score[e];
            taken[e] = 0;
        }
        __syncwarp();

        if (a.groups > 1) {
            /* A group's score: its best plus its second-best biased score (the best alone for size 1). */
            for (int32_t g = lane; g < a.groups; g += 32) {
                const float* member = choice + (int64_t)g * group_size;
                int32_t first = 0;
                for (int32_t e = 1; e < group_size; e++)
                    if (member[e] > member[first])
                        first = e;
                float s = member[first];
                if (group_size > 1) {
                    int32_t second = -1;
                    for (int32_t e = 0; e < group_size; e++)
                        if (e != first && (second < 0 || member[e] > member[second]))
                            second = e;
                    s += member[second];
                }
                group_score[g] = s;
                group_kept[g] = 0;
            }
            __syncwarp();
            for (int32_t i = 0; i < a.keep; i++) {
                float value = 0.0f;
                int32_t index = -1;
                for (int32_t g = lane; g < a.groups; g += 32)
                    if (!group_kept[g])
                        better(value, index, group_score[g], g);
                warp_argmax(value, index);
                if (lane == 0)
                    group_kept[index] = 1;
                __syncwarp();
            }
        }

        float* w = weights + t * a.weights_stride;
        int32_t* ids = expert_ids + t * a.ids_stride;
        float sum = 0.0f;
        for (int32_t i = 0; i < a.top_k; i++) {
            float value = 0.0f;
            int32_t index = -1;
            for (int32_t e = lane; e < a.experts; e += 32)
                if (!taken[e] && (a.groups == 1 || group_kept[e / group_size]))
                    better(value, index, choice[e], e);
            warp_argmax(value, index);
            const float picked = score[index];
            sum += picked; /* every lane, in selection order, as the CPU reference */
            if (lane == 0) {
                taken[index] = 1;
                ids[i] = index;
                w[i] = picked;
            }
            __syncwarp();
        }
        /* DeepSeek-V3 adds 1e-20 so that all-zero scores give zeros, not NaN. */
        const float denominator = a.renormalize ? sum + 1e-20f : 1.0f;
        for (int32_t i = lane; i < a.top_k; i += 32)
            w[i] = w[i] / denominator * a.scale;
        __syncwarp(); /* the next token reuses this warp's shared memory */
    }
}

llmk_status route(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* logits,
                  const llmk_tensor* correction_bias, const llmk_moe_router_params* params, llmk_tensor* weights,
                  llmk_tensor* expert_ids) {
    llmk_cuda_state* st = state_of(ctx);
    RouteArgs a;
    a.tokens = logits->shape[0];
    a.experts = (int32_t)logits->shape[1];
    if (a.tokens == 0)
        return LLMK_STATUS_OK;
    a.top_k = params->top_k;
    a.groups = params->num_groups > 1 ? params->num_groups : 1;
    a.keep = a.groups > 1 ? params->topk_groups : 1;
    a.softmax = params->scoring == LLMK_MOE_SCORING_SOFTMAX;
    a.renormalize = params->renormalize;
    a.scale = params->routed_scaling_factor == 0.0f ? 1.0f : params->routed_scaling_factor;
    a.logits_stride = logits->strides[0];
    a.weights_stride = weights->strides[0];
    a.ids_stride = expert_ids->strides[0];
    const int64_t warp_bytes = route_warp_bytes(a.experts, a.groups);
    if (warp_bytes > (int64_t)st->max_shared_optin)
        return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: %d experts need %lld bytes of shared memory per token; this "
                         "device has %zu per block", llmk_fn, (int)a.experts, (long long)warp_bytes,
                         st->max_shared_optin);
    a.warp_bytes = (int32_t)warp_bytes;
    const int64_t default_shared = 48 * 1024;
    int warps = warp_bytes * 4 <= default_shared ? 4 : (int)(default_shared / warp_bytes);
    if (warps < 1)
        warps = 1;
    const size_t shared = (size_t)(warps * warp_bytes);
    int64_t blocks = (a.tokens + warps - 1) / warps;
    if (blocks > 0x7fffffff)
        blocks = 0x7fffffff;
    const float* bias = correction_bias ? static_cast<const float*>(correction_bias->data) : nullptr;
    LLMK_DISPATCH_FLOAT(logits->dtype, T,
        if (shared > (size_t)default_shared)
            LLMK_CUDA_CHECK(cudaFuncSetAttribute(route_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 (int)shared));
        route_kernel<T><<<(unsigned)blocks, warps * 32, shared, st->stream>>>(
            static_cast<const T*>(logits->data), bias, static_cast<float*>(weights->data),
            static_cast<int32_t*>(expert_ids->data), a);
        LLMK_CUDA_LAUNCH_CHECK();
        return LLMK_STATUS_OK;)
    return LLMK_STATUS_OK;
}

/* ---- permute ---------------------------------------------------------------------------------------------- */
/* Entries i = token * top_k + slot are split into chunks, one per block. (1) each block counts its
 * chunk's entries per expert; (2) one block turns the counts into, per chunk and expert, the number of
 * earlier entries of that expert (a scan over chunks), and the expert offsets (a scan over experts);
 * (3) each block places its entries: row = offset[e] + earlier chunks' e + earlier e in this chunk,
 * the last count found by comparing ids within a 256-entry tile. So rows follow (token, slot) order
 * exactly, as the CPU's counting sort. (4) rows are gathered. */

constexpr int kPlaceTile = 256;
constexpr int kScanBlock = 1024;
constexpr uint64_t kCountBudget = 64ull << 20; /* bytes of per-chunk counters */

struct PermuteArgs {
    int64_t entries;          /* tokens * top_k */
    int64_t chunk;            /* entries per block, a multiple of kPlaceTile */
    int32_t chunks, experts, top_k;
    int64_t ids_stride, rows_stride;
};

__device__ __forceinline__ int32_t expert_of(const int32_t* ids, const PermuteArgs& a, int64_t i) {
    const int64_t t = i / a.top_k;
    return ids[t * a.ids_stride + (i - t * a.top_k)];
}

__global__ void permute_count_kernel(const int32_t* ids, int32_t* counts, PermuteArgs a) {
    const int64_t begin = (int64_t)blockIdx.x * a.chunk;
    const int64_t end = begin + a.chunk < a.entries ? begin + a.chunk : a.entries;
    int32_t* mine = counts + (int64_t)blockIdx.x * a.experts;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
        atomicAdd(&mine[expert_of(ids, a, i)], 1); /* integer counts: the order does not matter */
}

/* Exclusive scan over the block (kScanBlock threads) of one value each; returns the block total too. */
__device__ __forceinline__ int32_t block_exclusive_scan(int32_t v, int32_t* shared, int32_t* total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int32_t inclusive = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        int32_t n = __shfl_up_sync(0xffffffffu, inclusive, o);
        if (lane >= o)
            inclusive += n;
    }
    __syncthreads();
    if (lane == 31)
        shared[warp] = inclusive;
    __syncthreads();
    if (warp == 0) {
        int32_t w = lane < (int)(blockDim.x >> 5) ? shared[lane] : 0;
        int32_t wi = w;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            int32_t n = __shfl_up_sync(0xffffffffu, wi, o);
            if (lane >= o)
                wi += n;
        }
        shared[lane] = wi - w; /* exclusive prefix of the warp totals */
        if (lane == 31)
            shared[32] = wi;
    }
    __syncthreads();
    *total = shared[32];
    return shared[warp] + inclusive - v;
}

/* One block: counts[c][e] becomes the entries of expert e in chunks before c; offsets[e] the rows
 * before expert e; offsets[experts] = entries. */
__global__ void __launch_bounds__(kScanBlock) permute_scan_kernel(int32_t* counts, int32_t* offsets, PermuteArgs a) {
    __shared__ int32_t shared[33];
    int32_t carry = 0;
    for (int32_t base = 0; base < a.experts; base += blockDim.x) {
        const int32_t e = base + threadIdx.x;
        int32_t running = 0;
        if (e < a.experts)
#pragma unroll 4
            for (int32_t c = 0; c < a.chunks; c++) {
                int32_t* slot = counts + (int64_t)c * a.experts + e;
                const int32_t v = *slot;
                *slot = running;
                running += v;
            }
        int32_t total;
        const int32_t before = block_exclusive_scan(running, shared, &total);
        if (e < a.experts)
            offsets[e] = carry + before;
        carry += total;
    }
    if (threadIdx.x == 0)
        offsets[a.experts] = carry;
}

__global__ void __launch_bounds__(kPlaceTile) permute_place_kernel(const int32_t* ids, int32_t* counts, const int32_t* offsets,
                                     int32_t* source_rows, int32_t* permuted_rows, PermuteArgs a) {
    __shared__ int32_t tile[kPlaceTile];
    const int64_t begin = (int64_t)blockIdx.x * a.chunk;
    const int64_t end = begin + a.chunk < a.entries ? begin + a.chunk : a.entries;
    int32_t* mine = counts + (int64_t)blockIdx.x * a.experts;
    for (int64_t first = begin; first < end; first += kPlaceTile) {
        const int64_t i = first + threadIdx.x;
        const bool valid = i < end;
        const int32_t e = valid ? expert_of(ids, a, i) : -1;
        tile[threadIdx.x] = e;
        __syncthreads();
        int32_t before = 0, same = 0;
        if (valid)
            for (int j = 0; j < kPlaceTile; j++) {
                const bool match = tile[j] == e;
                before += match && j < (int)threadIdx.x;
                same += match;
            }
        if (valid) {
            const int32_t row = offsets[e] + mine[e] + before;
            source_rows[row] = (int32_t)i;
            const int64_t t = i / a.top_k;
            permuted_rows[t * a.rows_stride + (i - t * a.top_k)] = row;
        }
        __syncthreads(); /* every thread has read mine[e] */
        if (valid && before == same - 1)
            mine[e] += same; /* by the last entry of e in the tile only */
        __syncthreads(); /* the updated counters and the free tile for the next round */
    }
}

llmk_status permute(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* x, const llmk_tensor* expert_ids,
                    int32_t num_experts, llmk_tensor* permuted, llmk_tensor* expert_offsets,
                    llmk_tensor* source_rows, llmk_tensor* permuted_rows) {
    llmk_cuda_state* st = state_of(ctx);
    const int64_t tokens = x->shape[0], hidden = x->shape[1], top_k = expert_ids->shape[1];
    /* Every id is checked before anything is written. */
    LLMK_TRY(check_indices(ctx, llmk_fn, "expert_ids", expert_ids, 0, num_experts, " (num_experts - 1)"));
    int32_t* offsets = static_cast<int32_t*>(expert_offsets->data);
    PermuteArgs a;
    a.entries = tokens * top_k;
    if (a.entries == 0) {
        LLMK_CUDA_CHECK(cudaMemsetAsync(offsets, 0, ((size_t)num_experts + 1) * sizeof(int32_t), st->stream));
        return LLMK_STATUS_OK;
    }
    a.experts = num_experts;
    a.top_k = (int32_t)top_k;
    a.ids_stride = expert_ids->strides[0];
    a.rows_stride = permuted_rows->strides[0];
    /* Enough chunks to fill the device, within the counter budget, at least one tile each: the scan
     * walks the chunks serially per expert, so more would only slow it. */
    int64_t max_chunks = (int64_t)(kCountBudget / ((uint64_t)num_experts * sizeof(int32_t)));
    const int64_t fill = (int64_t)(st->sm_count > 0 ? st->sm_count : 1) * 8;
    if (max_chunks > fill)
        max_chunks = fill;
    if (max_chunks < 1)
        max_chunks = 1;
    int64_t chunks = (a.entries + kPlaceTile - 1) / kPlaceTile;
    if (chunks > max_chunks)
        chunks = max_chunks;
    a.chunk = ((a.entries + chunks - 1) / chunks + kPlaceTile - 1) / kPlaceTile * kPlaceTile;
    a.chunks = (int32_t)((a.entries + a.chunk - 1) / a.chunk);

    Scratch scratch;
    int32_t* counts = nullptr;
    scratch.add(&counts, (int64_t)a.chunks * num_experts);
    LLMK_TRY(scratch.commit(ctx, llmk_fn));
    LLMK_CUDA_CHECK(cudaMemsetAsync(counts, 0, (size_t)a.chunks * (size_t)num_experts * sizeof(int32_t), st->stream));

    const int32_t* ids = static_cast<const int32_t*>(expert_ids->data);
    permute_count_kernel<<<a.chunks, 256, 0, st->stream>>>(ids, counts, a);
    LLMK_CUDA_LAUNCH_CHECK();
    permute_scan_kernel<<<1, kScanBlock, 0, st->stream>>>(counts, offsets, a);
    LLMK_CUDA_LAUNCH_CHECK();
    int32_t* sources = static_cast<int32_t*>(source_rows->data);
    permute_place_kernel<<<a.chunks, kPlaceTile, 0, st->stream>>>(ids, counts, offsets, sources,
                                                                   static_cast<int32_t*>(permuted_rows->data), a);
    LLMK_CUDA_LAUNCH_CHECK();
    const int64_t size = (int64_t)llmk_dtype_size(x->dtype);
    return gather_rows<int32_t>(st, llmk_fn, x->data, x->strides[0] * size, permuted->data,
                                permuted->strides[0] * size, sources, 1, top_k, a.entries, hidden * size);
}

/* ---- unpermute -------------------------------------------------------------------------------------------- */

struct UnpermuteArgs {
    int64_t tokens, chunks; /* chunks of N elements per row */
    int32_t top_k;
    int64_t expert_stride, weights_stride, map_stride, out_stride;
};

/* One block per token; out[t] = sum over slots in order of w[t, s] * expert_out[map[t, s]], f32. */
template <class T, int N>
__global__ void unpermute_kernel(const T* expert_out, const float* weights, const int32_t* map, T* out,
                                 UnpermuteArgs a) {
    for (int64_t t = blockIdx.x; t < a.tokens; t += gridDim.x) {
        const float* w = weights + t * a.weights_stride;
        const int32_t* rows = map + t * a.map_stride;
        T* o = out + t * a.out_stride;
        for (int64_t c = threadIdx.x; c < a.chunks; c += blockDim.x) {
            float sum[N];
#pragma unroll
            for (int i = 0; i < N; i++)
                sum[i] = 0.0f; /* top_k == 0: an empty sum */
            for (int32_t s = 0; s < a.top_k; s++) {
                float v[N];
                load_floats<T, N>(expert_out + (int64_t)rows[s] * a.expert_stride + c * N, v);
                const float ws = w[s];
#pragma unroll
                for (int i = 0; i < N; i++)
                    sum[i] = s == 0 ? ws * v[i] : sum[i] + ws * v[i]; /* top_k 1, weight 1: an exact copy */
            }
            store_floats<T, N>(o + c * N, sum);
        }
    }
}

llmk_status unpermute(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* expert_out,
                      const llmk_tensor* weights, const llmk_tensor* permuted_rows, llmk_tensor* out) {
    llmk_cuda_state* st = state_of(ctx);
    const int64_t tokens = weights->shape[0], top_k = weights->shape[1], hidden = expert_out->shape[1];
    LLMK_TRY(check_indices(ctx, llmk_fn, "permuted_rows", permuted_rows, 0, expert_out->shape[0],
                           " (expert_out rows - 1)"));
    if (tokens == 0 || hidden == 0)
        return LLMK_STATUS_OK;
    UnpermuteArgs a;
    a.tokens = tokens;
    a.top_k = (int32_t)top_k;
    a.expert_stride = expert_out->strides[0];
    a.weights_stride = weights->strides[0];
    a.map_stride = permuted_rows->strides[0];
    a.out_stride = out->strides[0];
    LLMK_DISPATCH_FLOAT(out->dtype, T,
        constexpr int N = Vec<T>::N;
        const bool vector = rows_aligned16(expert_out, 0, hidden) && rows_aligned16(out, 0, hidden);
        a.chunks = vector ? hidden / N : hidden;
        int block = (int)((a.chunks + 31) / 32 * 32);
        block = block < 32 ? 32 : (block > 512 ? 512 : block);
        const T* eo = static_cast<const T*>(expert_out->data);
        const float* w = static_cast<const float*>(weights->data);
        const int32_t* map = static_cast<const int32_t*>(permuted_rows->data);
        T* o = static_cast<T*>(out->data);
        if (vector)
            unpermute_kernel<T, N><<<grid_rows(tokens), block, 0, st->stream>>>(eo, w, map, o, a);
        else
            unpermute_kernel<T, 1><<<grid_rows(tokens), block, 0, st->stream>>>(eo, w, map, o, a);
        LLMK_CUDA_LAUNCH_CHECK();
        return LLMK_STATUS_OK;)
    return LLMK_STATUS_OK;
}

} // namespace
} // namespace llmk_cu

extern "C" llmk_status llmk_cuda_moe_route(llmk_context* ctx, const llmk_tensor* logits,
                                           const llmk_tensor* correction_bias, const llmk_moe_router_params* params,
                                           llmk_tensor* weights, llmk_tensor* expert_ids) {
    LLMK_CUDA_ENTRY("llmk_moe_route", ctx) {
        return llmk_cu::route(ctx, llmk_fn, logits, correction_bias, params, weights, expert_ids);
    });
}

extern "C" llmk_status llmk_cuda_moe_permute(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* expert_ids,
                                             int32_t num_experts, llmk_tensor* permuted,
                                             llmk_tensor* expert_offsets, llmk_tensor* source_rows,
                                             llmk_tensor* permuted_rows) {
    LLMK_CUDA_ENTRY("llmk_moe_permute", ctx) {
        return llmk_cu::permute(ctx, llmk_fn, x, expert_ids, num_experts, permuted, expert_offsets, source_rows,
                                permuted_rows);
    });
}

extern "C" llmk_status llmk_cuda_moe_unpermute(llmk_context* ctx, const llmk_tensor* expert_out,
                                               const llmk_tensor* weights, const llmk_tensor* permuted_rows,
                                               llmk_tensor* out) {
    LLMK_CUDA_ENTRY("llmk_moe_unpermute", ctx) {
        return llmk_cu::unpermute(ctx, llmk_fn, expert_out, weights, permuted_rows, out);
    });
}
