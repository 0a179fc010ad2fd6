/* GGUF's quantized blocks on CUDA: dequantizing rows (convert, embedding) and the 8-bit rounding of x that
 * llmk_linear's contract prescribes. The block decoder is core/quant.h's, compiled for the device. These are
 * plain one-chunk-per-thread kernels, checked in the host emulator; their speed is measured on a GPU. */
#pragma once

#include "common.cuh"
#include "quant.h"

namespace llmk_cu {

__host__ __device__ __forceinline__ float half_bits_to_float(uint16_t bits) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
}

/* out[r, :] = dequantized row ids[r] (or r without ids) of blocks whose rows are row_bytes apart; one thread
 * per 32 elements. */
template <class TO, class I>
__global__ void dequantize_rows_kernel(const char* blocks, int64_t row_bytes, int32_t dtype, const I* ids,
                                       int64_t id_stride, TO* out, int64_t out_stride, int64_t rows, int64_t chunks) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < rows * chunks;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / chunks, c = t % chunks;
        const int64_t source = ids ? (int64_t)ids[r * id_stride] : r;
        llmk_quant_chunk chunk;
        llmk_quant_chunk_at(dtype, blocks + source * row_bytes, c, &chunk);
        float values[32];
        llmk_quant_chunk_values(&chunk, half_bits_to_float(chunk.d), half_bits_to_float(chunk.dmin), values);
        TO* o = out + r * out_stride + 32 * c;
        for (int l = 0; l < 32; l++)
            o[l] = from_float<TO>(values[l]);
    }
}

template <class I>
llmk_status dequantize_rows(llmk_cuda_state* st, const char* llmk_fn, const llmk_tensor* blocks, const I* ids,
                            int64_t id_stride, llmk_tensor* out, int64_t rows) {
    const int64_t chunks = blocks->shape[blocks->rank - 1] / 32;
    const int64_t row_bytes = (int64_t)llmk_bytes_of(blocks->dtype, (uint64_t)blocks->strides[0]);
    const int block = 256;
    const unsigned grid = grid_for(rows * chunks, block, st);
    LLMK_DISPATCH_FLOAT(out->dtype, TO,
        dequantize_rows_kernel<TO, I><<<grid, block, 0, st->stream>>>(
            static_cast<const char*>(blocks->data), row_bytes, blocks->dtype, ids, id_stride,
            static_cast<TO*>(out->data), out->strides[0], rows, chunks);
        LLMK_CUDA_LAUNCH_CHECK();
        return LLMK_STATUS_OK;)
    return LLMK_STATUS_OK;
}

/* x rounded to 8 bits (llmk_linear's contract, the same f32 operations as core/quant.c) in groups of
 * group_blocks blocks of 32 (1, or 8 before a K-quant): one warp per group, a lane per element of each block. */
template <class T>
__global__ void round_x_kernel(const T* x, int64_t x_ld, int64_t rows, int64_t blocks, int group_blocks,
                               llmk_block_q8* out) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * blockDim.x / 32, groups = blocks / group_blocks;
    for (int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32; w < rows * groups; w += warps) {
        const int64_t r = w / groups, first = w % groups * group_blocks;
        float v[LLMK_QK_K / LLMK_QK];
        float amax = 0.0f;
        for (int b = 0; b < group_blocks; b++) {
            v[b] = to_float(x[r * x_ld + 32 * (first + b) + lane]);
            amax = fmaxf(amax, fabsf(v[b]));
        }
        const float d = warp_max(amax) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int b = 0; b < group_blocks; b++) {
            const int q = (int)rintf(v[b] * id);
            int half_sum = q; /* over the lane's half of the block */
            for (int m = 8; m > 0; m >>= 1)
                half_sum += __shfl_xor_sync(0xffffffffu, half_sum, m);
            llmk_block_q8* o = out + r * blocks + first + b;
            o->q[lane] = (int8_t)q;
            if (lane == 0) {
                o->d = d;
                o->sum[0] = (int16_t)half_sum;
            }
            if (lane == 16)
                o->sum[1] = (int16_t)half_sum;
        }
    }
}

} // namespace llmk_cu
