/* CPU reference of RMSNorm: one row per iteration, f32 arithmetic, each row by one thread. */
#include "internal.h"

#include <math.h>

/* 1 / sqrt(mean(row^2) + eps). The sum of squares is accumulated in double so that long rows (hidden in the
 * thousands) keep f32 accuracy in the reference; the result is the same for any thread count. */
static float inverse_rms(const void* data, int32_t dtype, int64_t offset, int64_t hidden, float eps) {
    double sum = 0.0;
    for (int64_t j = 0; j < hidden; j++) {
        double v = llmk_load_float(data, dtype, offset + j);
        sum += v * v;
    }
    return (float)(1.0 / sqrt(sum / (double)hidden + (double)eps));
}

/* out[row] = src[row] * scale * (weight or 1 + weight). src may be out itself: each element is read before
 * it is written. */
static void scale_row(const void* src, int64_t src_offset, const llmk_tensor* weight, float scale, int32_t flags,
                      llmk_tensor* out, int64_t out_offset, int64_t hidden) {
    float shift = (flags & LLMK_NORM_FLAGS_GEMMA) ? 1.0f : 0.0f;
    for (int64_t j = 0; j < hidden; j++) {
        float w = llmk_load_float(weight->data, weight->dtype, j) + shift;
        float v = llmk_load_float(src, out->dtype, src_offset + j);
        llmk_store_float(out->data, out->dtype, out_offset + j, v * scale * w);
    }
}

llmk_status llmk_cpu_rms_norm(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight, float eps,
                              int32_t flags, llmk_tensor* out) {
    const int64_t rows = x->shape[0], hidden = x->shape[1];
    if (rows == 0 || hidden == 0)
        return LLMK_STATUS_OK;
#pragma omp parallel for num_threads(ctx->num_threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t xo = r * x->strides[0], oo = r * out->strides[0];
        float scale = inverse_rms(x->data, x->dtype, xo, hidden, eps);
        scale_row(x->data, xo, weight, scale, flags, out, oo, hidden);
    }
    return LLMK_STATUS_OK;
}

llmk_status llmk_cpu_add_rms_norm(llmk_context* ctx, const llmk_tensor* x, llmk_tensor* residual,
                                  const llmk_tensor* weight, float eps, int32_t flags, llmk_tensor* out) {
    const int64_t rows = x->shape[0], hidden = x->shape[1];
    if (rows == 0 || hidden == 0)
        return LLMK_STATUS_OK;
#pragma omp parallel for num_threads(ctx->num_threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t xo = r * x->strides[0], ro = r * residual->strides[0], oo = r * out->strides[0];
        /* As vLLM's fused_add_rms_norm: the sum is rounded to residual's dtype when stored, and the norm is
         * taken of that rounded residual, so it matches an unfused add followed by rms_norm. */
        for (int64_t j = 0; j < hidden; j++) {
            float sum = llmk_load_float(x->data, x->dtype, xo + j) +
                        llmk_load_float(residual->data, residual->dtype, ro + j);
            llmk_store_float(residual->data, residual->dtype, ro + j, sum);
        }
        float scale = inverse_rms(residual->data, residual->dtype, ro, hidden, eps);
        scale_row(residual->data, ro, weight, scale, flags, out, oo, hidden);
    }
    return LLMK_STATUS_OK;
}
