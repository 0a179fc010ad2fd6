/* The CUDA-core attention kernels: simple_kernel (any floating dtype and head dim, any row alignment; the
 * f32 path and the fallback of the tensor-core kernel) and combine_kernel (merges split-KV partials).
 * Device code only; launched from attention.cu. */
#ifndef LLMK_CUDA_ATTENTION_SIMPLE_CUH
#define LLMK_CUDA_ATTENTION_SIMPLE_CUH

#include "attention.cuh"

namespace llmk_cu {
namespace attn {

constexpr int kSimpleWarps = 4;

/* One warp per (batch, query row, head); q and the accumulator in shared memory (2 * head_dim floats per
 * warp). Lane l scores key j0 + l of each chunk of 32, then the chunk's probabilities are broadcast while
 * the lanes accumulate p * v over their own dims. */
template <class T>
__global__ void __launch_bounds__(kSimpleWarps * 32) simple_kernel(const Params p) {
    extern __shared__ float simple_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t row = (int64_t)blockIdx.x * kSimpleWarps + warp;
    if (row >= (int64_t)p.batch * p.q_len * p.heads)
        return; /* the whole warp: no block-wide barrier below */
    const int h = (int)(row % p.heads);
    const int i = (int)(row / p.heads % p.q_len);
    const int b = (int)(row / p.heads / p.q_len);
    const int kvh = h / p.group, D = p.head_dim;
    float* const q = simple_smem + (size_t)warp * 2 * D;
    float* const acc = q + D;

    const T* const q_row = static_cast<const T*>(p.q) + b * p.q_sb + (int64_t)i * p.q_sl + (int64_t)h * p.q_sh;
    for (int d = lane; d < D; d += 32) {
        q[d] = to_float(q_row[d]);
        acc[d] = 0.0f;
    }
    __syncwarp();

    const int kv_len = kv_len_of(p, b);
    int lo, hi;
    visible_keys(p, kv_len, i, lo, hi);
    const int64_t diagonal = (int64_t)i + kv_len - p.q_len;
    const float slope = slope_log2_of(p, h);
    const T* const k_head = static_cast<const T*>(p.k) + b * p.k_sb + (int64_t)kvh * p.k_sh;
    const T* const v_head = static_cast<const T*>(p.v) + b * p.v_sb + (int64_t)kvh * p.v_sh;

    float m = -INFINITY, l = 0.0f;
    for (int j0 = lo; j0 < hi; j0 += 32) {
        const int j = j0 + lane;
        const bool valid = j < hi;
        float s = -INFINITY;
        if (valid) {
            const T* k_row = k_head + (int64_t)j * p.k_sl;
            float dot = 0.0f;
            for (int d = 0; d < D; d++)
                dot += q[d] * to_float(k_row[d]);
            s = score_log2(p, dot, slope, diagonal, j);
        }
        const float m_new = fmaxf(m, warp_max(s));
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = exp2f(m - m_use);
        const float prob = valid ? exp2f(s - m_use) : 0.0f;
        l = l * alpha + warp_sum(prob);
        m = m_new;
        for (int d = lane; d < D; d += 32)
            acc[d] *= alpha;
        const int count = hi - j0 < 32 ? hi - j0 : 32;
        for (int jj = 0; jj < count; jj++) {
            const float pj = __shfl_sync(0xffffffffu, prob, jj);
            const T* v_row = v_head + (int64_t)(j0 + jj) * p.v_sl;
            for (int d = lane; d < D; d += 32)
                acc[d] += pj * to_float(v_row[d]);
        }
    }

    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    T* const out_row = static_cast<T*>(p.out) + b * p.o_sb + (int64_t)i * p.o_sl + (int64_t)h * p.o_sh;
    for (int d = lane; d < D; d += 32)
        out_row[d] = from_float<T>(acc[d] * inv);
    if (p.lse && lane == 0)
        p.lse[b * p.lse_sb + (int64_t)h * p.lse_sh + (int64_t)i * p.lse_sl] = lse_of(m, l);
}

/* Merges the num_splits partial results of each (batch, head, query row), one warp per row:
 * out = sum_s exp(lse_s - max) o_s / sum_s exp(lse_s - max), lse = max + log(sum). */
template <class T>
__global__ void __launch_bounds__(kSimpleWarps * 32) combine_kernel(const Params p) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t rows = (int64_t)p.batch * p.heads * p.q_len;
    const int64_t row = (int64_t)blockIdx.x * kSimpleWarps + warp; /* ((b * heads + h) * q_len + i) */
    if (row >= rows)
        return;
    const int i = (int)(row % p.q_len);
    const int h = (int)(row / p.q_len % p.heads);
    const int b = (int)(row / p.q_len / p.heads);

    float m = -INFINITY;
    for (int s = lane; s < p.num_splits; s += 32)
        m = fmaxf(m, p.lse_part[s * rows + row]);
    m = warp_max(m);
    const float m_use = m == -INFINITY ? 0.0f : m;
    float sum = 0.0f;
    for (int s = lane; s < p.num_splits; s += 32)
        sum += expf(p.lse_part[s * rows + row] - m_use);
    sum = warp_sum(sum);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;

    T* const out_row = static_cast<T*>(p.out) + b * p.o_sb + (int64_t)i * p.o_sl + (int64_t)h * p.o_sh;
    for (int d = lane; d < p.head_dim; d += 32) {
        float v = 0.0f;
        for (int s = 0; s < p.num_splits; s++) {
            const float w = expf(p.lse_part[s * rows + row] - m_use); /* 0 for an empty split */
            if (w > 0.0f)
                v += w * p.o_part[(s * rows + row) * p.head_dim + d];
        }
        out_row[d] = from_float<T>(v * inv);
    }
    if (p.lse && lane == 0)
        p.lse[b * p.lse_sb + (int64_t)h * p.lse_sh + (int64_t)i * p.lse_sl] =
            sum > 0.0f ? m + logf(sum) : -INFINITY;
}

} // namespace attn
} // namespace llmk_cu

#endif /* LLMK_CUDA_ATTENTION_SIMPLE_CUH */
