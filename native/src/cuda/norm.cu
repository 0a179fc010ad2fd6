/* RMSNorm and the fused residual add + RMSNorm (vLLM's rms_norm / fused_add_rms_norm).
 * One block per row; each thread owns the same N-element chunks of the row in both passes, so in-place
 * use (out == x) and the residual round trip need no extra synchronization. Sums of squares accumulate
 * in f32 and are reduced by warp shuffles in a fixed order. */
#include "common.cuh"

namespace llmk_cu {
namespace {

struct NormRows {
    int64_t rows, hidden;
    int64_t x_stride, residual_stride, out_stride;
    float eps;
    float weight_shift; /* 1 for Gemma's (1 + weight), else 0 */
};

/* Residual: when non-null, residual += x (rounded to T) first and the norm is taken of the result. */
template <class T, class W, int N>
__global__ void __launch_bounds__(1024) rms_norm_kernel(const T* x, T* residual, const W* weight, T* out, NormRows p) {
    __shared__ float partial[32];
    const int64_t chunks = p.hidden / N;
    for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
        const T* xr = x + row * p.x_stride;
        T* rr = residual ? residual + row * p.residual_stride : nullptr;
        T* orow = out + row * p.out_stride;
        /* The source of the normalized values: the updated residual, or x. */
        const T* src = rr ? rr : xr;
        float sum = 0.0f;
        for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
            float v[N];
            load_floats<T, N>(xr + c * N, v);
            if (rr) {
                float r[N];
                load_floats<T, N>(rr + c * N, r);
#pragma unroll
                for (int i = 0; i < N; i++)
                    v[i] = round_to<T>(v[i] + r[i]); /* as stored: the norm sees the rounded residual */
                store_floats<T, N>(rr + c * N, v);
            }
#pragma unroll
            for (int i = 0; i < N; i++)
                sum += v[i] * v[i];
        }
        sum = block_sum(sum, partial);
        const float scale = rsqrtf(sum / (float)p.hidden + p.eps);
        for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
            float v[N];
            load_floats<T, N>(src + c * N, v);
#pragma unroll
            for (int i = 0; i < N; i++)
                v[i] = v[i] * scale * (to_float(weight[c * N + i]) + p.weight_shift);
            store_floats<T, N>(orow + c * N, v);
        }
        /* The next row's pass 1 may not overwrite partial before every thread has read this row's sum:
         * block_sum begins with a barrier. */
    }
}

template <class T, class W, int N>
llmk_status launch(llmk_cuda_state* st, const char* llmk_fn, const llmk_tensor* x, llmk_tensor* residual,
                   const llmk_tensor* weight, const NormRows& p, llmk_tensor* out) {
    int64_t chunks = p.hidden / N;
    int block = (int)((chunks + 31) / 32 * 32);
    block = block < 32 ? 32 : (block > 1024 ? 1024 : block);
    rms_norm_kernel<T, W, N><<<grid_rows(p.rows), block, 0, st->stream>>>(
        static_cast<const T*>(x->data), residual ? static_cast<T*>(residual->data) : nullptr,
        static_cast<const W*>(weight->data), static_cast<T*>(out->data), p);
    LLMK_CUDA_LAUNCH_CHECK();
    return LLMK_STATUS_OK;
}

llmk_status rms_norm(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* x, llmk_tensor* residual,
                     const llmk_tensor* weight, float eps, int32_t flags, llmk_tensor* out) {
    llmk_cuda_state* st = state_of(ctx);
    NormRows p;
    p.rows = x->shape[0];
    p.hidden = x->shape[1];
    if (p.rows == 0 || p.hidden == 0)
        return LLMK_STATUS_OK;
    p.x_stride = x->strides[0];
    p.residual_stride = residual ? residual->strides[0] : 0;
    p.out_stride = out->strides[0];
    p.eps = eps;
    p.weight_shift = (flags & LLMK_NORM_FLAGS_GEMMA) ? 1.0f : 0.0f;
    LLMK_DISPATCH_FLOAT(x->dtype, T,
        LLMK_DISPATCH_FLOAT(weight->dtype, W,
            constexpr int N = Vec<T>::N;
            bool vector = rows_aligned16(x, 0, p.hidden) && rows_aligned16(out, 0, p.hidden) &&
                          (!residual || rows_aligned16(residual, 0, p.hidden));
            return vector ? launch<T, W, N>(st, llmk_fn, x, residual, weight, p, out)
                          : launch<T, W, 1>(st, llmk_fn, x, residual, weight, p, out);))
    return LLMK_STATUS_OK;
}

} // namespace
} // namespace llmk_cu

extern "C" llmk_status llmk_cuda_rms_norm(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight,
                                          float eps, int32_t flags, llmk_tensor* out) {
    LLMK_CUDA_ENTRY("llmk_rms_norm", ctx) {
        return llmk_cu::rms_norm(ctx, llmk_fn, x, nullptr, weight, eps, flags, out);
    });
}

extern "C" llmk_status llmk_cuda_add_rms_norm(llmk_context* ctx, const llmk_tensor* x, llmk_tensor* residual,
                                              const llmk_tensor* weight, float eps, int32_t flags,
                                              llmk_tensor* out) {
    LLMK_CUDA_ENTRY("llmk_add_rms_norm", ctx) {
        return llmk_cu::rms_norm(ctx, llmk_fn, x, residual, weight, eps, flags, out);
    });
}
