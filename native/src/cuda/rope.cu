/* Rotary position embeddings, q and k in one launch (vLLM's rotary_embedding). One block per token:
 * the block first computes cos/sin of each frequency once into shared memory, then every thread rotates
 * one (head, frequency) pair of q or k in place. The frequencies come from the host
 * (llmk_rope_frequencies), by value in the kernel parameters when they fit. */
#include "common.cuh"

namespace llmk_cu {
namespace {

constexpr int kMaxFreqByValue = 256; /* rotary_dim up to 512 travels in the kernel parameters (1 KiB) */

struct RopeFreqs {
    float v[kMaxFreqByValue];
};

struct RopeArgs {
    int64_t tokens;
    int64_t position_stride;
    int32_t half;            /* rotary_dim / 2 */
    int32_t q_heads, k_heads;
    int64_t q_token_stride, q_head_stride;
    int64_t k_token_stride, k_head_stride;
    float attention_factor;
    int32_t neox;            /* 1: pairs (i, i + half); 0: pairs (2i, 2i + 1) */
};

template <class T, class P>
__global__ void __launch_bounds__(512) rope_kernel(const P* positions, T* q, T* k, RopeFreqs freqs, const float* freqs_device, RopeArgs a) {
    extern __shared__ float trig[]; /* cos [half], then sin [half] */
    float* cos_t = trig;
    float* sin_t = trig + a.half;
    const int32_t pairs = (a.q_heads + a.k_heads) * a.half;
    for (int64_t t = blockIdx.x; t < a.tokens; t += gridDim.x) {
        const double position = (double)positions[t * a.position_stride];
        __syncthreads(); /* the previous token's rotations have read the tables */
        for (int32_t i = threadIdx.x; i < a.half; i += blockDim.x) {
            const float f = freqs_device ? freqs_device[i] : freqs.v[i];
            /* The angle in double, as the CPU reference: at large positions an f32 product would be off
             * by a sizeable fraction of a radian. */
            double s, c;
            sincos(position * (double)f, &s, &c);
            cos_t[i] = (float)c * a.attention_factor;
            sin_t[i] = (float)s * a.attention_factor;
        }
        __syncthreads();
        for (int32_t j = threadIdx.x; j < pairs; j += blockDim.x) {
            const int32_t head = j / a.half, i = j - head * a.half;
            T* base;
            if (head < a.q_heads)
                base = q + t * a.q_token_stride + head * a.q_head_stride;
            else
                base = k + t * a.k_token_stride + (head - a.q_heads) * a.k_head_stride;
            const int32_t first = a.neox ? i : 2 * i;
            const int32_t second = a.neox ? i + a.half : 2 * i + 1;
            const float x = to_float(base[first]), y = to_float(base[second]);
            const float c = cos_t[i], s = sin_t[i];
            base[first] = from_float<T>(x * c - y * s);
            base[second] = from_float<T>(y * c + x * s);
        }
    }
}

} // namespace
} // namespace llmk_cu

extern "C" llmk_status llmk_cuda_rope(llmk_context* ctx, const llmk_tensor* positions, const float* inv_freq,
                                      float attention_factor, int32_t style, int32_t rotary_dim, llmk_tensor* q,
                                      llmk_tensor* k) {
    LLMK_CUDA_ENTRY("llmk_rope", ctx) {
        using namespace llmk_cu;
        const int64_t tokens = q->shape[0];
        const int32_t half = rotary_dim / 2;
        /* Every position is checked before anything is written (even when there is nothing to rotate, as
         * the CPU reference). */
        LLMK_TRY(check_indices(ctx, llmk_fn, "positions", positions, 0, INT64_MAX, ""));
        if (tokens == 0 || half == 0 || (q->shape[1] == 0 && (!k || k->shape[1] == 0)))
            return LLMK_STATUS_OK;

        const int64_t heads = q->shape[1] + (k ? k->shape[1] : 0);
        if (heads * half > INT32_MAX)
            return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: (heads + kv_heads) * rotary_dim / 2 = %lld exceeds %d",
                             llmk_fn, (long long)(heads * half), INT32_MAX);
        RopeArgs a;
        a.tokens = tokens;
        a.position_stride = positions->strides[0];
        a.half = half;
        a.q_heads = (int32_t)q->shape[1];
        a.k_heads = k ? (int32_t)k->shape[1] : 0;
        a.q_token_stride = q->strides[0];
        a.q_head_stride = q->strides[1];
        a.k_token_stride = k ? k->strides[0] : 0;
        a.k_head_stride = k ? k->strides[1] : 0;
        a.attention_factor = attention_factor;
        a.neox = style == LLMK_ROPE_STYLE_NEOX;

        RopeFreqs freqs{};
        float* freqs_device = nullptr;
        if (half <= kMaxFreqByValue) {
            for (int32_t i = 0; i < half; i++)
                freqs.v[i] = inv_freq[i];
        } else {
            Scratch scratch;
            scratch.add(&freqs_device, half);
            LLMK_TRY(scratch.commit(ctx, llmk_fn));
            /* Pageable host -> device: staged before the call returns, so inv_freq may go right after. */
            LLMK_CUDA_CHECK(cudaMemcpyAsync(freqs_device, inv_freq, (size_t)half * sizeof(float),
                                            cudaMemcpyHostToDevice, st->stream));
        }

        const int64_t pairs = heads * half;
        int block = (int)((pairs + 31) / 32 * 32);
        block = block < 64 ? 64 : (block > 512 ? 512 : block);
        const size_t shared = 2 * (size_t)half * sizeof(float);
        if (shared > 48 * 1024)
            return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: rotary_dim %d is too large (at most %d)", llmk_fn,
                             (int)rotary_dim, 48 * 1024 / 4);
        LLMK_DISPATCH_FLOAT(q->dtype, T,
            LLMK_DISPATCH_INDEX(positions->dtype, P,
                rope_kernel<T, P><<<grid_rows(tokens), block, shared, st->stream>>>(
                    static_cast<const P*>(positions->data), static_cast<T*>(q->data),
                    k ? static_cast<T*>(k->data) : nullptr, freqs, freqs_device, a);
                LLMK_CUDA_LAUNCH_CHECK();
                return LLMK_STATUS_OK;))
        return LLMK_STATUS_OK;
    });
}
