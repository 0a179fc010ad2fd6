/* The sm80 path's tensor-core attention kernel (FlashAttention-2 forward): mma.sync m16n8k16 with f32
 * accumulators, ldmatrix fragments, K/V tiles double-buffered through shared memory with cp.async, online
 * softmax in registers. Device code only; attention_flash_launch.cuh launches and instantiates it.
 * Needs sm_80 (the host dispatch checks the device); compiled to an empty body for older targets. */
#ifndef LLMK_CUDA_ATTENTION_FLASH_CUH
#define LLMK_CUDA_ATTENTION_FLASH_CUH

#include "attention.cuh"
#include "attention_ptx.cuh"

namespace llmk_cu {
namespace attn {

/* ---- shared-memory addressing ------------------------------------------------------------------------ */

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

/* Two n-tiles (8 columns each) of one k-step from one ldmatrix.x4 of B: c0 += a . b[0..1], c1 += a . b[2..3]. */
template <class T>
__device__ __forceinline__ void mma_two_ntiles(float (&c0)[4], float (&c1)[4], const uint32_t (&a)[4],
                                               const uint32_t (&b)[4]) {
    mma16816<T>(c0, a, b[0], b[1]);
    mma16816<T>(c1, a, b[2], b[3]);
}

/* ---- the kernel's steps ------------------------------------------------------------------------------
 * flash_kernel_sm80 below is these steps in order; each is inlined, so the split names the steps without
 * changing an instruction. S is FlashShape<D, Decode>. */

/* Which part of the problem a block computes. Grid: m_blocks x num_splits x kv_heads x batch, flattened
 * into x with the m block fastest, so the blocks that share a kv head run together and its K/V stay in L2. */
struct BlockWork {
    int b, kvh, split;
    int rows;   /* packed rows of one kv head, q_len * group (the host checked that it fits int) */
    int m0;     /* the block's first packed row */
    int kv_len; /* keys of batch b */
};

template <class S> __device__ __forceinline__ BlockWork block_work(const Params& p) {
    constexpr int BM = S::BM;
    BlockWork w;
    w.rows = p.q_len * p.group;
    const int m_blocks = (w.rows + BM - 1) / BM;
    long long bid = blockIdx.x;
    const int m_raw = (int)(bid % m_blocks);
    bid /= m_blocks;
    w.split = (int)(bid % p.num_splits);
    bid /= p.num_splits;
    w.kvh = (int)(bid % p.kv_heads);
    w.b = (int)(bid / p.kv_heads);
    w.m0 = (m_blocks - 1 - m_raw) * BM; /* last rows first: under a causal mask they have the most keys */
    w.kv_len = kv_len_of(p, w.b);
    return w;
}

/* The key tiles [t_begin, t_end) of the block's split (within the keys any row of the block sees,
 * [lo_first, hi_last)), and the keys every row sees, [lo_last, hi_first): a tile inside them needs no mask. */
struct KeyTiles {
    int t_begin, t_end;
    int lo_last, hi_first;
};

template <class S> __device__ __forceinline__ KeyTiles key_tiles(const Params& p, const BlockWork& w) {
    constexpr int BM = S::BM, BN = S::BN;
    const int row_last = (w.m0 + BM < w.rows ? w.m0 + BM : w.rows) - 1;
    int lo_first, hi_first, lo_last, hi_last;
    visible_keys(p, w.kv_len, w.m0 / p.group, lo_first, hi_first);
    visible_keys(p, w.kv_len, row_last / p.group, lo_last, hi_last);
    KeyTiles t;
    t.t_begin = 0, t.t_end = 0;
    t.lo_last = lo_last, t.hi_first = hi_first;
    if (hi_last > lo_first) {
        const int n_begin = lo_first / BN, n_end = (hi_last + BN - 1) / BN;
        const int per_split = (n_end - n_begin + p.num_splits - 1) / p.num_splits;
        t.t_begin = n_begin + w.split * per_split;
        t.t_end = t.t_begin + per_split < n_end ? t.t_begin + per_split : n_end;
    }
    return t;
}

/* The thread's two rows of the mma fragments (g and g + 8 of its warp's 16): visible keys [lo, hi),
 * diagonal i + kv_len - q_len (in (-q_len, kv_len)) and ALiBi slope. Padding rows see nothing. (Plain
 * arrays, not a struct: with a struct, nvcc 11.8 gives the D = 128 prefill kernel 240 registers, not 212.) */
template <class S>
__device__ __forceinline__ void thread_rows(const Params& p, const BlockWork& w, int wm, int lane, int (&lo)[2],
                                            int (&hi)[2], int (&diag)[2], float (&slope)[2]) {
#pragma unroll
    for (int rs = 0; rs < 2; rs++) {
        const int r = w.m0 + wm * 16 + (lane >> 2) + rs * 8;
        lo[rs] = hi[rs] = 0;
        diag[rs] = 0;
        slope[rs] = 0.0f;
        if (r < w.rows) {
            const int i = r / p.group;
            visible_keys(p, w.kv_len, i, lo[rs], hi[rs]);
            diag[rs] = i + w.kv_len - p.q_len;
            slope[rs] = slope_log2_of(p, w.kvh * p.group + r % p.group);
        }
    }
}

/* Load tiles: Q's packed rows [m0, m0 + BM) into sQ; padding rows are zero-filled. Issued, not committed. */
template <class T, class S>
__device__ __forceinline__ void load_q_tile(const Params& p, const BlockWork& w, T* sQ, int tid) {
    constexpr int BM = S::BM, D = S::kD, kChunks = S::kChunks;
    const T* const q_base = static_cast<const T*>(p.q) + w.b * p.q_sb;
#pragma unroll
    for (int it = 0; it < BM * kChunks / 128; it++) {
        const int c = tid + it * 128, r = c / kChunks, ch = c % kChunks;
        const int pr = w.m0 + r;
        const bool ok = pr < w.rows;
        const T* src = q_base;
        if (ok)
            src = q_base + (int64_t)(pr / p.group) * p.q_sl + (int64_t)(w.kvh * p.group + pr % p.group) * p.q_sh +
                  ch * 8;
        cp_async16(smem_addr(sQ + swz<D>(r, ch)), src, ok);
    }
}

/* Load tiles: rows [tile * BN, tile * BN + BN) of K and V into a stage (K at sKV + stage * 2 * BN * D, V right
 * after); rows >= kv_len are zero-filled (never read: masked, and a zero V row keeps 0 * garbage from
 * making NaN). Issued, not committed. */
template <class T, class S>
__device__ __forceinline__ void load_kv_tile(const Params& p, const T* k_base, const T* v_base, int kv_len, T* sKV,
                                             int stage, int tile, int tid) {
    constexpr int BN = S::BN, D = S::kD, kChunks = S::kChunks;
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
}

/* The thread's ldmatrix row addresses (see frag_addr; set in the kernel body, where nvcc allocates them
 * best): A of Q and B^T of V take the half bit from lane >> 4, B of K from lane >> 3 & 1. k_row and v_row
 * are offsets from a stage's K and V tiles. */
struct FragRows {
    uint32_t y_qv, y_k;
    uint32_t q_row, k_row, v_row;
};

/* Q's A fragments of every k-step, into registers (the D <= 128 configurations). */
template <class S>
__device__ __forceinline__ void load_q_fragments(uint32_t (&qf)[S::kQInRegs ? S::kKS : 1][4], const FragRows& f) {
#pragma unroll
    for (int ks = 0; ks < (S::kQInRegs ? S::kKS : 1); ks++)
        ldsm_x4(qf[ks], frag_addr(f.q_row, 2 * ks, f.y_qv));
}

/* QK^T mma: s = Q K^T over this warp's kNW keys of the tile whose K starts at shared address sK; s[nt] is
 * the accumulator of n-tile nt (8 keys). Q from registers (qf) or, for D = 256, from shared memory. */
template <class T, class S>
__device__ __forceinline__ void qk_mma(float (&s)[S::kNT][4], const uint32_t (&qf)[S::kQInRegs ? S::kKS : 1][4],
                                       const FragRows& f, uint32_t sK) {
    constexpr int D = S::kD, kNW = S::kNW;
#pragma unroll
    for (int nt = 0; nt < S::kNT; nt++)
        s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < S::kKS; ks++) {
        uint32_t a[4];
        if (S::kQInRegs) {
#pragma unroll
            for (int x = 0; x < 4; x++)
                a[x] = qf[S::kQInRegs ? ks : 0][x];
        } else {
            ldsm_x4(a, frag_addr(f.q_row, 2 * ks, f.y_qv));
        }
#pragma unroll
        for (int np = 0; np < kNW / 16; np++) {
            uint32_t bk[4];
            ldsm_x4(bk, frag_addr(sK + f.k_row + np * 16 * D * 2, 2 * ks, f.y_k));
            mma_two_ntiles<T>(s[2 * np], s[2 * np + 1], a, bk);
        }
    }
}

/* Online softmax over one tile: each score becomes score_log2 (scale, softcap, ALiBi), -inf outside the
 * row's keys unless the tile is `full` (inside every row's window), then the running max grows (reduced
 * over the quad), the row sum and the accumulator o are rescaled by exp2(old max - new max), and each
 * score becomes p = exp2(s - max). A row that has seen no key yet keeps p = 0 instead of NaN. c0 is the
 * first key of this warp's columns. */
template <class S>
__device__ __forceinline__ void online_softmax(const Params& p, const int (&row_lo)[2], const int (&row_hi)[2],
                                               const int (&row_diag)[2], const float (&row_slope)[2],
                                               float (&s)[S::kNT][4], float (&o)[S::kDT][4], float (&row_max)[2],
                                               float (&row_sum)[2], int c0, bool full, int lane) {
#pragma unroll
    for (int rs = 0; rs < 2; rs++) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < S::kNT; nt++) {
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
        for (int dt = 0; dt < S::kDT; dt++) {
            o[dt][2 * rs] *= alpha;
            o[dt][2 * rs + 1] *= alpha;
        }
#pragma unroll
        for (int nt = 0; nt < S::kNT; nt++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float pr = exp2f(s[nt][2 * rs + e] - m_use);
                s[nt][2 * rs + e] = pr;
                row_sum[rs] += pr;
            }
        }
    }
}

/* PV mma: o += P V, the tile's V at shared address sV. The score accumulators of two n-tiles, rounded to T,
 * are the A fragment of one k-step. */
template <class T, class S>
__device__ __forceinline__ void pv_mma(float (&o)[S::kDT][4], const float (&s)[S::kNT][4], const FragRows& f,
                                       uint32_t sV) {
    constexpr int D = S::kD, kNW = S::kNW;
#pragma unroll
    for (int kk = 0; kk < kNW / 16; kk++) {
        const uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                               pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                               pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++) {
            uint32_t bv[4];
            ldsm_x4_trans(bv, frag_addr(sV + f.v_row + kk * 16 * D * 2, 2 * dp, f.y_qv));
            mma_two_ntiles<T>(o[2 * dp], o[2 * dp + 1], a, bv);
        }
    }
}

/* Store, first half: the row sums reduced over the quad, then every warp's unnormalized rows and (max, sum)
 * into shared memory (over the tiles, which are no longer read). A barrier must follow. */
template <class S>
__device__ __forceinline__ void stash_warp_rows(unsigned char* smem, const float (&o)[S::kDT][4],
                                                const float (&row_max)[2], float (&row_sum)[2], int lane, int wm,
                                                int wn) {
    constexpr int BM = S::BM;
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
        for (int dt = 0; dt < S::kDT; dt++)
            *reinterpret_cast<float2*>(sO + row * S::kEpiStride + dt * 8 + 2 * (lane & 3)) =
                make_float2(o[dt][2 * rs], o[dt][2 * rs + 1]);
        if ((lane & 3) == 0) {
            sMax[row] = row_max[rs];
            sSum[row] = row_sum[rs];
        }
    }
}

/* Store, second half: the warps that split the keys (decode) are merged, each row is normalized and written
 * with 16-byte stores, and lse once per row; with split-KV, f32 partials of out and lse instead. */
template <class T, class S>
__device__ __forceinline__ void store_rows(const Params& p, const BlockWork& w, const unsigned char* smem, int tid) {
    constexpr int BM = S::BM, D = S::kD, kChunks = S::kChunks;
    const float* const sO = reinterpret_cast<const float*>(smem);
    const float* const sMax = reinterpret_cast<const float*>(smem + S::kStatsOffset);
    const float* const sSum = sMax + S::kWarpsN * BM;
    for (int x = tid; x < BM * kChunks; x += 128) {
        const int r = x / kChunks, ch = x % kChunks;
        const int pr = w.m0 + r;
        if (pr >= w.rows)
            continue;
        float m = -INFINITY;
#pragma unroll
        for (int k = 0; k < S::kWarpsN; k++)
            m = fmaxf(m, sMax[k * BM + r]);
        const float m_use = m == -INFINITY ? 0.0f : m;
        float weight[S::kWarpsN], sum = 0.0f;
#pragma unroll
        for (int k = 0; k < S::kWarpsN; k++) {
            weight[k] = exp2f(sMax[k * BM + r] - m_use);
            sum += sSum[k * BM + r] * weight[k];
        }
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        float v[8];
#pragma unroll
        for (int e = 0; e < 8; e++)
            v[e] = 0.0f;
#pragma unroll
        for (int k = 0; k < S::kWarpsN; k++) {
            const float4* src = reinterpret_cast<const float4*>(sO + (k * BM + r) * S::kEpiStride + ch * 8);
            const float4 lo = src[0], hi = src[1];
            v[0] += lo.x * weight[k];
            v[1] += lo.y * weight[k];
            v[2] += lo.z * weight[k];
            v[3] += lo.w * weight[k];
            v[4] += hi.x * weight[k];
            v[5] += hi.y * weight[k];
            v[6] += hi.z * weight[k];
            v[7] += hi.w * weight[k];
        }
        const int i = pr / p.group, h = w.kvh * p.group + pr % p.group;
        if (p.num_splits == 1) {
            Vec<T> out;
#pragma unroll
            for (int e = 0; e < 8; e++)
                out.v[e] = from_float<T>(v[e] * inv);
            store_vec(static_cast<T*>(p.out) + w.b * p.o_sb + (int64_t)i * p.o_sl + (int64_t)h * p.o_sh + ch * 8, out);
            if (ch == 0 && p.lse)
                p.lse[w.b * p.lse_sb + h * p.lse_sh + (int64_t)i * p.lse_sl] = lse_of(m, sum);
        } else {
            const int64_t row_index = (((int64_t)w.split * p.batch + w.b) * p.heads + h) * p.q_len + i;
            float4* dst = reinterpret_cast<float4*>(p.o_part + row_index * D + ch * 8);
            dst[0] = make_float4(v[0] * inv, v[1] * inv, v[2] * inv, v[3] * inv);
            dst[1] = make_float4(v[4] * inv, v[5] * inv, v[6] * inv, v[7] * inv);
            if (ch == 0)
                p.lse_part[row_index] = lse_of(m, sum);
        }
    }
}

/* ---- the kernel -------------------------------------------------------------------------------------- */

/* The sm80 path's kernel (FlashPath<FlashArch::Sm80, D>): one block of 128 threads per (m block, split,
 * kv head, batch); every barrier of the kernel is in this body. */
template <class T, int D, bool Decode>
__global__ void __launch_bounds__(128) flash_kernel_sm80(const Params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using S = FlashShape<D, Decode>;
    constexpr int BM = S::BM, BN = S::BN;

    extern __shared__ __align__(128) unsigned char smem[];
    T* const sQ = reinterpret_cast<T*>(smem);
    T* const sKV = sQ + BM * D; /* stage s: K at sKV + s * 2 * BN * D, V right after */

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % S::kWarpsM, wn = warp / S::kWarpsM;
    const BlockWork w = block_work<S>(p);
    const KeyTiles tiles = key_tiles<S>(p, w);
    int row_lo[2], row_hi[2], row_diag[2];
    float row_slope[2];
    thread_rows<S>(p, w, wm, lane, row_lo, row_hi, row_diag, row_slope);

    float o[S::kDT][4];
#pragma unroll
    for (int dt = 0; dt < S::kDT; dt++)
        o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};

    const T* const k_base = static_cast<const T*>(p.k) + w.b * p.k_sb + w.kvh * p.k_sh;
    const T* const v_base = static_cast<const T*>(p.v) + w.b * p.v_sb + w.kvh * p.v_sh;

    if (tiles.t_begin < tiles.t_end) {
        /* Prologue: Q and the first K/V tile. */
        load_q_tile<T, S>(p, w, sQ, tid);
        cp_async_commit();
        load_kv_tile<T, S>(p, k_base, v_base, w.kv_len, sKV, 0, tiles.t_begin, tid);
        cp_async_commit();

        FragRows f;
        f.y_qv = (uint32_t)(((lane >> 4) ^ (lane & 7)) << 4);
        f.y_k = (uint32_t)((((lane >> 3) & 1) ^ (lane & 7)) << 4);
        f.q_row = smem_addr(sQ) + (uint32_t)((wm * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * D * 2);
        f.k_row = (uint32_t)((wn * S::kNW + (lane & 7) + (lane >> 4) * 8) * D * 2);
        f.v_row = (uint32_t)((wn * S::kNW + (lane & 7) + ((lane >> 3) & 1) * 8) * D * 2);
        uint32_t qf[S::kQInRegs ? S::kKS : 1][4];
        if (S::kQInRegs) {
            cp_async_wait<1>();
            __syncthreads();
            load_q_fragments<S>(qf, f);
        }

        for (int t = tiles.t_begin; t < tiles.t_end; t++) {
            const int stage = (t - tiles.t_begin) & 1;
            if (t + 1 < tiles.t_end) {
                /* that stage was released by the barrier ending iteration t - 1 */
                load_kv_tile<T, S>(p, k_base, v_base, w.kv_len, sKV, stage ^ 1, t + 1, tid);
                cp_async_commit();
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();

            const uint32_t sK = smem_addr(sKV + stage * 2 * BN * D);
            const uint32_t sV = sK + BN * D * 2;
            const int n0 = t * BN;
            float s[S::kNT][4];
            qk_mma<T, S>(s, qf, f, sK);
            online_softmax<S>(p, row_lo, row_hi, row_diag, row_slope, s, o, row_max, row_sum, n0 + wn * S::kNW,
                              n0 >= tiles.lo_last && n0 + BN <= tiles.hi_first, lane);
            pv_mma<T, S>(o, s, f, sV);
            __syncthreads(); /* the stage is refilled by the next iteration */
        }
    }
    cp_async_wait<0>();
    __syncthreads();

    stash_warp_rows<S>(smem, o, row_max, row_sum, lane, wm, wn);
    __syncthreads();
    store_rows<T, S>(p, w, smem, tid);
#endif
}

} // namespace attn
} // namespace llmk_cu

#endif /* LLMK_CUDA_ATTENTION_FLASH_CUH */
