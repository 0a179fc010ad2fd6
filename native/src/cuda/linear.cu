/* Linear layer y = x W^T (+ bias) through cuBLAS, f32 accumulation (CUBLAS_COMPUTE_32F, no TF32).
 *
 * Row-major y [rows, out] is column-major Y (out x rows, ld = y's row stride), and likewise for x and W,
 * so y = x W^T is the column-major Y = W^T X: gemm(op(A) = T, op(B) = N, m = out, n = rows, k = in,
 * A = W, B = X). A weight of another dtype than x is first converted into the workspace. With a bias and
 * a 16-bit y, the product goes to an f32 scratch and one epilogue kernel adds the bias and rounds, so y
 * is rounded once, as in the CPU reference; an f32 y takes the bias in place. */
#include "common.cuh"
#include "quant.cuh"

#include <limits.h>

namespace llmk_cu {
namespace {

constexpr uint64_t kAccumulatorBudget = 64ull << 20; /* bytes of f32 scratch per GEMM chunk */

cudaDataType_t cuda_type(int32_t dtype) {
    switch (dtype) {
    case LLMK_DTYPE_F16: return CUDA_R_16F;
    case LLMK_DTYPE_BF16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
    }
}

/* y[r, o] = round(acc[r, o] + bias[o]); acc NULL means 0 (in_features == 0), bias NULL means 0. acc may
 * be y itself (f32 y). Grid: x over columns, y over rows. */
template <class TB, class TO>
__global__ void bias_epilogue_kernel(const float* acc, int64_t acc_ld, const TB* bias, TO* y, int64_t y_ld,
                                     int64_t rows, int64_t cols) {
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
        for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < cols;
             c += (int64_t)gridDim.x * blockDim.x) {
            float v = acc ? acc[r * acc_ld + c] : 0.0f;
            if (bias)
                v += to_float(bias[c]);
            y[r * y_ld + c] = from_float<TO>(v);
        }
}

llmk_status epilogue(llmk_cuda_state* st, const char* llmk_fn, const float* acc, int64_t acc_ld,
                     const llmk_tensor* bias, void* y, int32_t y_dtype, int64_t y_ld, int64_t rows, int64_t cols) {
    const int block = 256;
    int64_t bx = (cols + block - 1) / block;
    if (bx > 4096)
        bx = 4096;
    const int64_t by = rows < 65535 ? rows : 65535;
    const dim3 grid((unsigned)bx, (unsigned)by);
    const int32_t bias_dtype = bias ? bias->dtype : LLMK_DTYPE_F32;
    LLMK_DISPATCH_FLOAT(bias_dtype, TB,
        LLMK_DISPATCH_FLOAT(y_dtype, TO,
            bias_epilogue_kernel<TB, TO><<<grid, block, 0, st->stream>>>(
                acc, acc_ld, bias ? static_cast<const TB*>(bias->data) : nullptr, static_cast<TO*>(y), y_ld, rows,
                cols);
            LLMK_CUDA_LAUNCH_CHECK();
            return LLMK_STATUS_OK;))
    return LLMK_STATUS_OK;
}

/* Leading dimension of a row-major [rows, cols] operand: its row stride, or cols for a single row. */
int64_t leading_dimension(const llmk_tensor* t) {
    return t->shape[0] > 1 ? t->strides[0] : t->shape[1];
}

/* cuBLAS takes int sizes; a leading dimension below the row length (rows overlapping) is not allowed. */
bool gemm_ready(const llmk_tensor* t) {
    const int64_t ld = leading_dimension(t);
    return ld >= t->shape[1] && ld >= 1 && ld <= INT_MAX;
}

/* y[r, o] for a quantized weight and x rounded to 8 bits: one warp per output and group of up to QROWS rows,
 * each lane a strided share of the blocks, decoded once for the group's rows; integer products, f32 sums. */
constexpr int kQuantRows = 4;

template <class TY, class TB>
__global__ void linear_quantized_kernel(const llmk_block_q8* xq, int64_t rows, int64_t blocks, const char* w,
                                        int32_t wtype, int64_t w_row_bytes, const TB* bias, int64_t bias_stride,
                                        TY* y, int64_t y_ld, int64_t outs) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * blockDim.x / 32, groups = (rows + kQuantRows - 1) / kQuantRows;
    for (int64_t t = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32; t < outs * groups; t += warps) {
        const int64_t o = t % outs, r0 = t / outs * kQuantRows; /* neighbouring warps read neighbouring rows of W */
        const int count = rows - r0 < kQuantRows ? (int)(rows - r0) : kQuantRows;
        float acc[kQuantRows] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int64_t b = lane; b < blocks; b += 32) {
            llmk_quant_chunk chunk;
            llmk_quant_chunk_at(wtype, w + o * w_row_bytes, b, &chunk);
            const float d = half_bits_to_float(chunk.d), offset = half_bits_to_float(chunk.dmin) * (float)chunk.min;
            for (int i = 0; i < kQuantRows; i++) {
                if (i >= count)
                    break;
                acc[i] += llmk_quant_chunk_dot(&chunk, d, offset, xq + (r0 + i) * blocks + b);
            }
        }
        for (int i = 0; i < count; i++) { /* count is the same in every lane */
            const float v = warp_sum(acc[i]);
            if (lane == 0)
                y[(r0 + i) * y_ld + o] = from_float<TY>(v + (bias ? to_float(bias[o * bias_stride]) : 0.0f));
        }
    }
}

llmk_status linear_quantized(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* x, const llmk_tensor* weight,
                             const llmk_tensor* bias, llmk_tensor* y) {
    llmk_cuda_state* st = state_of(ctx);
    const int64_t rows = x->shape[0], in = x->shape[1], outs = weight->shape[0], blocks = in / 32;
    Scratch scratch;
    llmk_block_q8* xq = nullptr;
    scratch.add(&xq, rows * blocks);
    LLMK_TRY(scratch.commit(ctx, llmk_fn));
    const int block = 256;
    LLMK_DISPATCH_FLOAT(x->dtype, TX,
        round_x_kernel<TX><<<grid_for(rows * blocks * 32, block, st), block, 0, st->stream>>>(
            static_cast<const TX*>(x->data), x->strides[0], rows, blocks, (int)(llmk_q8_group(weight->dtype) / 32), xq);
        LLMK_CUDA_LAUNCH_CHECK();)
    const int64_t work = outs * ((rows + kQuantRows - 1) / kQuantRows) * 32;
    const int32_t bias_dtype = bias ? bias->dtype : LLMK_DTYPE_F32;
    LLMK_DISPATCH_FLOAT(bias_dtype, TB,
        LLMK_DISPATCH_FLOAT(y->dtype, TY,
            linear_quantized_kernel<TY, TB><<<grid_for(work, block, st), block, 0, st->stream>>>(
                xq, rows, blocks, static_cast<const char*>(weight->data), weight->dtype,
                (int64_t)llmk_bytes_of(weight->dtype, (uint64_t)weight->strides[0]),
                bias ? static_cast<const TB*>(bias->data) : nullptr, bias ? bias->strides[0] : 0,
                static_cast<TY*>(y->data), y->strides[0], outs);
            LLMK_CUDA_LAUNCH_CHECK();
            return LLMK_STATUS_OK;))
    return LLMK_STATUS_OK;
}

llmk_status linear(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* x, const llmk_tensor* weight,
                   const llmk_tensor* bias, llmk_tensor* y) {
    llmk_cuda_state* st = state_of(ctx);
    if (llmk_is_quantized(weight->dtype))
        return linear_quantized(ctx, llmk_fn, x, weight, bias, y);
    const int64_t rows = x->shape[0], in = x->shape[1], out = weight->shape[0];
    if (rows == 0 || out == 0)
        return LLMK_STATUS_OK;
    if (in == 0) /* an empty sum: y = bias (or 0) */
        return epilogue(st, llmk_fn, nullptr, 0, bias, y->data, y->dtype, leading_dimension(y), rows, out);
    if (in > INT_MAX || out > INT_MAX || leading_dimension(y) > INT_MAX)
        return llmk_fail(LLMK_STATUS_UNSUPPORTED,
                         "%s: in_features = %lld, out_features = %lld or y's row stride %lld exceeds cuBLAS's int range",
                         llmk_fn, (long long)in, (long long)out, (long long)leading_dimension(y));
    const size_t element = llmk_dtype_size(x->dtype);
    if ((uint64_t)out * (uint64_t)in > (uint64_t)INT64_MAX / 8 || (uint64_t)rows * (uint64_t)in > (uint64_t)INT64_MAX / 8)
        return llmk_fail(LLMK_STATUS_OVERFLOW, "%s: the scratch copies of x [%lld, %lld] or weight [%lld, %lld] "
                         "would not fit 64 bits", llmk_fn, (long long)rows, (long long)in, (long long)out,
                         (long long)in);

    /* Operands cuBLAS cannot take as they are become contiguous copies in x's dtype. */
    const bool copy_weight = weight->dtype != x->dtype || !gemm_ready(weight);
    const bool copy_x = !gemm_ready(x);
    const bool via_f32 = bias && y->dtype != LLMK_DTYPE_F32;
    int64_t chunk = rows < INT_MAX ? rows : INT_MAX;
    if (via_f32) {
        int64_t budget_rows = (int64_t)(kAccumulatorBudget / ((uint64_t)out * sizeof(float)));
        chunk = budget_rows < 1 ? 1 : (budget_rows < chunk ? budget_rows : chunk);
    }
    Scratch scratch;
    char* weight_copy = nullptr;
    char* x_copy = nullptr;
    float* accumulator = nullptr;
    if (copy_weight)
        scratch.add(&weight_copy, out * in * (int64_t)element);
    if (copy_x)
        scratch.add(&x_copy, rows * in * (int64_t)element);
    if (via_f32)
        scratch.add(&accumulator, chunk * out);
    LLMK_TRY(scratch.commit(ctx, llmk_fn));

    const void* w_data = weight->data;
    int64_t w_ld = leading_dimension(weight);
    if (copy_weight) {
        llmk_tensor converted = *weight;
        converted.data = weight_copy;
        converted.dtype = x->dtype;
        converted.strides[0] = in;
        converted.strides[1] = 1;
        LLMK_TRY(convert(ctx, llmk_fn, weight, &converted));
        w_data = weight_copy;
        w_ld = in;
    }
    const char* x_data = static_cast<const char*>(x->data);
    int64_t x_ld = leading_dimension(x);
    if (copy_x) {
        llmk_tensor packed = *x;
        packed.data = x_copy;
        packed.strides[0] = in;
        packed.strides[1] = 1;
        LLMK_TRY(convert(ctx, llmk_fn, x, &packed));
        x_data = x_copy;
        x_ld = in;
    }

    const cudaDataType_t ab_type = cuda_type(x->dtype);
    const float alpha = 1.0f, beta = 0.0f;
    const int64_t y_ld = leading_dimension(y);
    char* y_data = static_cast<char*>(y->data);
    for (int64_t first = 0; first < rows; first += chunk) {
        const int64_t count = rows - first < chunk ? rows - first : chunk;
        void* c = via_f32 ? static_cast<void*>(accumulator) : y_data + first * y_ld * (int64_t)element;
        const int64_t c_ld = via_f32 ? out : y_ld;
        LLMK_CUBLAS_CHECK(cublasGemmEx(st->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)count, (int)in, &alpha,
                                       w_data, ab_type, (int)w_ld, x_data + first * x_ld * (int64_t)element, ab_type,
                                       (int)x_ld, &beta, c, via_f32 ? CUDA_R_32F : ab_type, (int)c_ld,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        if (via_f32)
            LLMK_TRY(epilogue(st, llmk_fn, accumulator, out, bias, y_data + first * y_ld * (int64_t)element,
                              y->dtype, y_ld, count, out));
    }
    if (bias && !via_f32) /* f32 y: the bias added in place, one rounding as on the CPU */
        LLMK_TRY(epilogue(st, llmk_fn, static_cast<const float*>(y->data), y_ld, bias, y->data, y->dtype, y_ld, rows,
                          out));
    return LLMK_STATUS_OK;
}

} // namespace
} // namespace llmk_cu

extern "C" llmk_status llmk_cuda_linear(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight,
                                        const llmk_tensor* bias, llmk_tensor* y) {
    LLMK_CUDA_ENTRY("llmk_linear", ctx) {
        return llmk_cu::linear(ctx, llmk_fn, x, weight, bias, y);
    });
}
