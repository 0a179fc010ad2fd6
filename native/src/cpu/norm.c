/* CPU reference of RMSNorm: one row per iteration, f32 arithmetic, each row by one thread. Rows are walked in
 * chunks converted to f32 through a stack buffer, so every loop runs over plain f32 and vectorizes. */
#include "cpu_threads.h"
#include "internal.h"

#include <math.h>

enum { CHUNK = 1024, LANES = 16 };

/* Sum of squares of a chunk's n floats into the LANES partial sums: lane l sums elements l, l + LANES, ...
 * of the chunk (at most CHUNK / LANES of them, so f32 keeps ~1e-6 relative accuracy), a fixed order that the
 * compiler maps onto vector registers. */
static void add_squares(const float* v, int64_t n, double* sums) {
    float lanes[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            lanes[l] += v[j + l] * v[j + l];
    for (int l = 0; j < n; j++, l++)
        lanes[l] += v[j] * v[j];
    for (int l = 0; l < LANES; l++)
        sums[l] += lanes[l];
}

/* 1 / sqrt(mean(row^2) + eps). The chunks' lane sums are accumulated in double so that long rows (hidden in
 * the thousands) keep f32 accuracy in the reference; the order is fixed, so the result is the same for any
 * thread count. buffer: CHUNK floats. */
static float inverse_rms(const void* data, int32_t dtype, int64_t offset, int64_t hidden, float eps, float* buffer) {
    double sums[LANES] = {0};
    for (int64_t j0 = 0; j0 < hidden; j0 += CHUNK) {
        const int64_t n = hidden - j0 < CHUNK ? hidden - j0 : CHUNK;
        add_squares(llmk_floats_at(data, dtype, offset + j0, n, buffer), n, sums);
    }
    double sum = 0.0;
    for (int l = 0; l < LANES; l++)
        sum += sums[l];
    return (float)(1.0 / sqrt(sum / (double)hidden + (double)eps));
}

/* out[row] = src[row] * scale * (weight or 1 + weight). src may be out itself: each chunk is read before it is
 * written. src holds out's dtype. buffers: 2 * CHUNK floats. */
static void scale_row(const void* src, int64_t src_offset, const llmk_tensor* weight, float scale, int32_t flags,
                      llmk_tensor* out, int64_t out_offset, int64_t hidden, float* buffers) {
    const float shift = (flags & LLMK_NORM_FLAGS_GEMMA) ? 1.0f : 0.0f;
    float* result = buffers;
    for (int64_t j0 = 0; j0 < hidden; j0 += CHUNK) {
        const int64_t n = hidden - j0 < CHUNK ? hidden - j0 : CHUNK;
        const float* v = llmk_floats_at(src, out->dtype, src_offset + j0, n, buffers); /* may be result */
        const float* w = llmk_floats_at(weight->data, weight->dtype, j0, n, buffers + CHUNK);
        for (int64_t j = 0; j < n; j++)
            result[j] = v[j] * scale * (w[j] + shift);
        llmk_store_floats(out->data, out->dtype, out_offset + j0, n, result);
    }
}

/* rms_norm of x's rows; with a residual, of residual += x first. As vLLM's fused_add_rms_norm, the sum is
 * rounded to residual's dtype when stored and the norm taken of that rounded residual, so it matches an
 * unfused add followed by rms_norm. */
static llmk_status rms_norm_rows(llmk_context* ctx, const llmk_tensor* x, llmk_tensor* residual,
                                 const llmk_tensor* weight, float eps, int32_t flags, llmk_tensor* out) {
    const int64_t rows = x->shape[0], hidden = x->shape[1];
    if (rows == 0 || hidden == 0)
        return LLMK_STATUS_OK;
    const llmk_tensor* src = residual ? residual : x;
#pragma omp parallel for num_threads(llmk_cpu_team(ctx, rows * hidden)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float buffers[2 * CHUNK];
        const int64_t so = r * src->strides[0], oo = r * out->strides[0];
        if (residual)
            llmk_add_floats(x, r * x->strides[0], residual, so, residual, so, hidden);
        float scale = inverse_rms(src->data, src->dtype, so, hidden, eps, buffers);
        scale_row(src->data, so, weight, scale, flags, out, oo, hidden, buffers);
    }
    return LLMK_STATUS_OK;
}

llmk_status llmk_cpu_rms_norm(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight, float eps,
                              int32_t flags, llmk_tensor* out) {
    return rms_norm_rows(ctx, x, NULL, weight, eps, flags, out);
}

llmk_status llmk_cpu_add_rms_norm(llmk_context* ctx, const llmk_tensor* x, llmk_tensor* residual,
                                  const llmk_tensor* weight, float eps, int32_t flags, llmk_tensor* out) {
    return rms_norm_rows(ctx, x, residual, weight, eps, flags, out);
}
