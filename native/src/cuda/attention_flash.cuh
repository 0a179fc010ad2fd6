/* The tensor-core attention kernel (FlashAttention-2 forward): mma.sync m16n8k16 with f32 accumulators,
 * ldmatrix fragments, K/V tiles double-buffered through shared memory with cp.async, online softmax in
 * registers. Device code only; attention_flash_launch.cuh launches and instantiates it.
 * Needs sm_80 (the host dispatch checks the device); compiled to an empty body for older targets. */
#ifndef LLMK_CUDA_ATTENTION_FLASH_CUH
#define LLMK_CUDA_ATTENTION_FLASH_CUH

#include "attention.cuh"
#include "attention_ptx.cuh"

namespace llmk_cu {
namespace attn {

/* ---- the kernel ------------------------------------------------------------------------------------ */

/* Shared-memory tiles are [rows][D] with the 16-byte chunks of row r XOR-swizzled by r & 7, so the 8 rows
 * an ldmatrix reads (same logical chunk) fall in 8 different bank groups. Offset in elements. */
template <int D> __device__ __forceinline__ int swz(int row, int chunk) {
    return row * D + ((chunk ^ (row & 7)) << 3);
}

/* The fragment loads: a thread's ldmatrix rows are always base + (lane & 7) + 8k, so row & 7 = lane & 7 and
 * the swizzled byte offset of an even chunk c plus the thread's half bit h is (c << 4) ^ ((h ^ (lane & 7)) << 4).
 * row_base: shared address of the thread's row; c: a compile-time even chunk; y16: (h ^ (lane & 7)) << 4. */
__device__ __forceinline__ uint32_t frag_addr(uint32_t row_base, int c, uint32_t y16) {
    /* Only the low 3 bits of c meet the XOR: 4 distinct values per thread, the rest an immediate offset. */
    return row_base + (uint32_t)((c & ~7) << 4) + ((uint32_t)((c & 7) << 4) ^ y16);
}

/* Grid: m_blocks x num_splits x kv_heads x batch, flattened into x (m_block fastest, so the blocks that
 * share a kv head run together and its K/V stay in L2). 128 threads. */
template <class T, int D, bool Decode>
__global__ void __launch_bounds__(128) flash_kernel(const Params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using S = FlashShape<D, Decode>;
    constexpr int BM = S::BM, BN = S::BN, kNW = S::kNW, kChunks = S::kChunks;
    constexpr int kNT = kNW / 8; /* n-tiles (8 keys) of a warp's scores */
    constexpr int kDT = D / 8;   /* n-tiles (8 dims) of the output */
    constexpr int kKS = D / 16;  /* k-steps over head_dim */

    extern __shared__ __align__(128) unsigned char smem[];
    T* const sQ = reinterpret_cast<T*>(smem);
    T* const sKV = sQ + BM * D; /* stage s: K at sKV + s * 2 * BN * D, V right after */

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % S::kWarpsM, wn = warp / S::kWarpsM;
    const int group = p.group;
    const int rows = p.q_len * group; /* packed rows of one kv head (host: fits int) */
    const int m_blocks = (rows + BM - 1) / BM;

    long long bid = blockIdx.x;
    const int m_raw = (int)(bid % m_blocks);
    bid /= m_blocks;
    const int split = (int)(bid % p.num_splits);
    bid /= p.num_splits;
    const int kvh = (int)(bid % p.kv_heads);
    const int b = (int)(bid / p.kv_heads);
    const int m0 = (m_blocks - 1 - m_raw) * BM; /* last rows first: under a causal mask they have the most keys */
    const int kv_len = kv_len_of(p, b);

    /* Keys any row of the block sees, [lo_first, hi_last), and the tiles of this split. */
    const int row_last = (m0 + BM < rows ? m0 + BM : rows) - 1;
    int lo_first, hi_first, lo_last, hi_last;
    visible_keys(p, kv_len, m0 / group, lo_first, hi_first);
    visible_keys(p, kv_len, row_last / group, lo_last, hi_last);
    int t_begin = 0, t_end = 0;
    if (hi_last > lo_first) {
        const int n_begin = lo_first / BN, n_end = (hi_last + BN - 1) / BN;
        const int per_split = (n_end - n_begin + p.num_splits - 1) / p.num_splits;
        t_begin = n_begin + split * per_split;
        t_end = t_begin + per_split < n_end ? t_begin + per_split : n_end;
    }

    /* This thread's two rows (g and g + 8 of its warp's 16): visible keys, diagonal, ALiBi slope. */
    int row_lo[2], row_hi[2];
    int row_diag[2]; /* i + kv_len - q_len, in (-q_len, kv_len) */
    float row_slope[2];
#pragma unroll
    for (int rs = 0; rs < 2; rs++) {
        const int r = m0 + wm * 16 + (lane >> 2) + rs * 8;
        row_lo[rs] = row_hi[rs] = 0; /* padding rows see nothing */
        row_diag[rs] = 0;
        row_slope[rs] = 0.0f;
        if (r < rows) {
            const int i = r / group;
            visible_keys(p, kv_len, i, row_lo[rs], row_hi[rs]);
            row_diag[rs] = i + kv_len - p.q_len;
            row_slope[rs] = slope_log2_of(p, kvh * group + r % group);
        }
    }

    float o[kDT][4];
#pragma unroll
    for (int dt = 0; dt < kDT; dt++)
        o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};

    const T* const k_base = static_cast<const T*>(p.k) + b * p.k_sb + kvh * p.k_sh;
    const T* const v_base = static_cast<const T*>(p.v) + b * p.v_sb + kvh * p.v_sh;

    /* Rows [n0, n0 + BN) of K and V into a stage; rows >= kv_len are zero-filled (never read: masked,
     * and a zero V row keeps 0 * garbage from making NaN). */
    auto load_kv = [&](int stage, int tile) {
        T* sK = sKV + stage * 2 * BN * D;
        T* sV = sK + BN * D;
        const int n0 = tile * BN;
        /* Not unrolled: unrolled, the compiler keeps every row's address offset live across the loop. */
#pragma unroll 1
        for (int it = 0; it < BN * kChunks / 128; it++) {
            const int c = tid + it * 128, r = c / kChunks, ch = c % kChunks;
            const bool ok = n0 + r < kv_len;
            const int64_t j = ok ? n0 + r : 0;
            cp_async16(smem_addr(sK + swz<D>(r, ch)), k_base + j * p.k_sl + ch * 8, ok);
            cp_async16(smem_addr(sV + swz<D>(r, ch)), v_base + j * p.v_sl + ch * 8, ok);
        }
    };

    if (t_begin < t_end) {
        /* Prologue: Q (packed rows; padding rows zero) and the first K/V tile. */
        const T* const q_base = static_cast<const T*>(p.q) + b * p.q_sb;
#pragma unroll
        for (int it = 0; it < BM * kChunks / 128; it++) {
            const int c = tid + it * 128, r = c / kChunks, ch = c % kChunks;
            const int pr = m0 + r;
            const bool ok = pr < rows;
            const T* src = q_base;
            if (ok)
                src = q_base + (int64_t)(pr / group) * p.q_sl + (int64_t)(kvh * group + pr % group) * p.q_sh + ch * 8;
            cp_async16(smem_addr(sQ + swz<D>(r, ch)), src, ok);
        }
        cp_async_commit();
        load_kv(0, t_begin);
        cp_async_commit();

        /* Per-thread ldmatrix rows (see frag_addr): A of Q and B^T of V take the half bit from lane >> 4,
         * B of K from lane >> 3 & 1. */
        const uint32_t y_qv = (uint32_t)(((lane >> 4) ^ (lane & 7)) << 4);
        const uint32_t y_k = (uint32_t)((((lane >> 3) & 1) ^ (lane & 7)) << 4);
        const uint32_t q_row = smem_addr(sQ) + (uint32_t)((wm * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * D * 2);
        const uint32_t k_row = (uint32_t)((wn * kNW + (lane & 7) + (lane >> 4) * 8) * D * 2);
        const uint32_t v_row = (uint32_t)((wn * kNW + (lane & 7) + ((lane >> 3) & 1) * 8) * D * 2);

        uint32_t qf[S::kQInRegs ? kKS : 1][4];
        if (S::kQInRegs) {
            cp_async_wait<1>();
            __syncthreads();
#pragma unroll
            for (int ks = 0; ks < (S::kQInRegs ? kKS : 1); ks++)
                ldsm_x4(qf[ks], frag_addr(q_row, 2 * ks, y_qv));
        }

        for (int t = t_begin; t < t_end; t++) {
            const int stage = (t - t_begin) & 1;
            if (t + 1 < t_end) {
                load_kv(stage ^ 1, t + 1); /* that stage was released by the barrier ending iteration t - 1 */
                cp_async_commit();
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();

            const uint32_t sK = smem_addr(sKV + stage * 2 * BN * D);
            const uint32_t sV = sK + BN * D * 2;
            const int n0 = t * BN;
            const int c0 = n0 + wn * kNW; /* first key of this warp's columns */

            /* S = Q K^T over this warp's kNW keys. */
            float s[kNT][4];
#pragma unroll
            for (int nt = 0; nt < kNT; nt++)
                s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < kKS; ks++) {
                uint32_t a[4];
                if (S::kQInRegs) {
#pragma unroll
                    for (int x = 0; x < 4; x++)
                        a[x] = qf[S::kQInRegs ? ks : 0][x];
                } else {
                    ldsm_x4(a, frag_addr(q_row, 2 * ks, y_qv));
                }
#pragma unroll
                for (int np = 0; np < kNW / 16; np++) {
                    uint32_t bk[4];
                    ldsm_x4(bk, frag_addr(sK + k_row + np * 16 * D * 2, 2 * ks, y_k));
                    mma16816<T>(s[2 * np], a, bk[0], bk[1]);
                    mma16816<T>(s[2 * np + 1], a, bk[2], bk[3]);
                }
            }

            /* Scores, the mask where this tile is not wholly visible to every row, online softmax. */
            const bool full = n0 >= lo_last && n0 + BN <= hi_first;
#pragma unroll
            for (int rs = 0; rs < 2; rs++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < kNT; nt++) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int j = c0 + nt * 8 + 2 * (lane & 3) + e;
                        float x = score_log2(p, s[nt][2 * rs + e], row_slope[rs], row_diag[rs], j);
                        if (!full && (j < row_lo[rs] || j >= row_hi[rs]))
                            x = -INFINITY;
                        s[nt][2 * rs + e] = x;
                        mx = fmaxf(mx, x);
                    }
                }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(row_max[rs], mx);
                const float m_use = m_new == -INFINITY ? 0.0f : m_new; /* nothing seen yet: all p = 0 */
                const float alpha = exp2f(row_max[rs] - m_use);
                row_max[rs] = m_new;
                row_sum[rs] *= alpha;
#pragma unroll
                for (int dt = 0; dt < kDT; dt++) {
                    o[dt][2 * rs] *= alpha;
                    o[dt][2 * rs + 1] *= alpha;
                }
#pragma unroll
                for (int nt = 0; nt < kNT; nt++) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float pr = exp2f(s[nt][2 * rs + e] - m_use);
                        s[nt][2 * rs + e] = pr;
                        row_sum[rs] += pr;
                    }
                }
            }

            /* O += P V: the score accumulators of two n-tiles are the A fragment of one k-step. */
#pragma unroll
            for (int kk = 0; kk < kNW / 16; kk++) {
                const uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                       pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                       pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
                for (int dp = 0; dp < D / 16; dp++) {
                    uint32_t bv[4];
                    ldsm_x4_trans(bv, frag_addr(sV + v_row + kk * 16 * D * 2, 2 * dp, y_qv));
                    mma16816<T>(o[2 * dp], a, bv[0], bv[1]);
                    mma16816<T>(o[2 * dp + 1], a, bv[2], bv[3]);
                }
            }
            __syncthreads(); /* the stage is refilled by the next iteration */
        }
    }
    cp_async_wait<0>();
    __syncthreads();

    /* Epilogue: every warp's unnormalized rows and (max, sum) to shared memory, then the warps that split
     * the keys are merged and each row is normalized and written with 16-byte stores. */
#pragma unroll
    for (int rs = 0; rs < 2; rs++) {
        row_sum[rs] += __shfl_xor_sync(0xffffffffu, row_sum[rs], 1);
        row_sum[rs] += __shfl_xor_sync(0xffffffffu, row_sum[rs], 2);
    }
    float* const sO = reinterpret_cast<float*>(smem);
    float* const sMax = reinterpret_cast<float*>(smem + S::kStatsOffset);
    float* const sSum = sMax + S::kWarpsN * BM;
#pragma unroll
    for (int rs = 0; rs < 2; rs++) {
        const int row = wn * BM + wm * 16 + (lane >> 2) + rs * 8;
#pragma unroll
        for (int dt = 0; dt < kDT; dt++)
            *reinterpret_cast<float2*>(sO + row * S::kEpiStride + dt * 8 + 2 * (lane & 3)) =
                make_float2(o[dt][2 * rs], o[dt][2 * rs + 1]);
        if ((lane & 3) == 0) {
            sMax[row] = row_max[rs];
            sSum[row] = row_sum[rs];
        }
    }
    __syncthreads();

    for (int w = tid; w < BM * kChunks; w += 128) {
        const int r = w / kChunks, ch = w % kChunks;
        const int pr = m0 + r;
        if (pr >= rows)
            continue;
        float m = -INFINITY;
#pragma unroll
        for (int x = 0; x < S::kWarpsN; x++)
            m = fmaxf(m, sMax[x * BM + r]);
        const float m_use = m == -INFINITY ? 0.0f : m;
        float weight[S::kWarpsN], sum = 0.0f;
#pragma unroll
        for (int x = 0; x < S::kWarpsN; x++) {
            weight[x] = exp2f(sMax[x * BM + r] - m_use);
            sum += sSum[x * BM + r] * weight[x];
        }
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        float v[8];
#pragma unroll
        for (int e = 0; e < 8; e++)
            v[e] = 0.0f;
#pragma unroll
        for (int x = 0; x < S::kWarpsN; x++) {
            const float4* src = reinterpret_cast<const float4*>(sO + (x * BM + r) * S::kEpiStride + ch * 8);
            const float4 lo = src[0], hi = src[1];
            v[0] += lo.x * weight[x];
            v[1] += lo.y * weight[x];
            v[2] += lo.z * weight[x];
            v[3] += lo.w * weight[x];
            v[4] += hi.x * weight[x];
            v[5] += hi.y * weight[x];
            v[6] += hi.z * weight[x];
            v[7] += hi.w * weight[x];
        }
        const int i = pr / group, h = kvh * group + pr % group;
        if (p.num_splits == 1) {
            Vec<T> out;
#pragma unroll
            for (int e = 0; e < 8; e++)
                out.v[e] = from_float<T>(v[e] * inv);
            store_vec(static_cast<T*>(p.out) + b * p.o_sb + (int64_t)i * p.o_sl + (int64_t)h * p.o_sh + ch * 8, out);
            if (ch == 0 && p.lse)
                p.lse[b * p.lse_sb + h * p.lse_sh + (int64_t)i * p.lse_sl] = lse_of(m, sum);
        } else {
            const int64_t row_index = (((int64_t)split * p.batch + b) * p.heads + h) * p.q_len + i;
            float4* dst = reinterpret_cast<float4*>(p.o_part + row_index * D + ch * 8);
            dst[0] = make_float4(v[0] * inv, v[1] * inv, v[2] * inv, v[3] * inv);
            dst[1] = make_float4(v[4] * inv, v[5] * inv, v[6] * inv, v[7] * inv);
            if (ch == 0)
                p.lse_part[row_index] = lse_of(m, sum);
        }
    }
#endif
}

} // namespace attn
} // namespace llmk_cu

#endif /* LLMK_CUDA_ATTENTION_FLASH_CUH */
