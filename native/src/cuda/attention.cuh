/* CUDA attention: the parameters every attention kernel shares, the masking/score rules written once,
 * and the launchers of the tensor-core kernel (instantiated per dtype in attention_flash_*.cu).
 * See docs/ATTENTION_CUDA.md for the tiling. Semantics are those of llmk.h and native/src/cpu/attention.c:
 * bottom-right aligned diagonal, window [d - left, d + right], softcap before ALiBi, rows that see no key
 * give zeros and lse -inf. Scores are kept in the log2 domain (s * log2(e)) so that exp2f is the exp. */
#ifndef LLMK_CUDA_ATTENTION_CUH
#define LLMK_CUDA_ATTENTION_CUH

#include "common.cuh"

namespace llmk_cu {
namespace attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* One call's problem. Strides are in elements; the innermost dimension is contiguous. Tensors are
 * q/out [batch, q_len, heads, head_dim], k/v [batch, >= kv rows, kv_heads, head_dim], lse [batch, heads,
 * q_len]. Query head h reads kv head h / group. */
struct Params {
    const void* q;
    const void* k;
    const void* v;
    void* out;
    float* lse;                            /* NULL: not wanted */
    int64_t q_sb, q_sl, q_sh;
    int64_t k_sb, k_sl, k_sh;
    int64_t v_sb, v_sl, v_sh;
    int64_t o_sb, o_sl, o_sh;
    int64_t lse_sb, lse_sh, lse_sl;
    const float* alibi;                    /* [heads] slopes, or NULL */
    int64_t alibi_stride;
    const int32_t* seqlens;                /* KV cache: kv rows of batch b = seqlens[b] + kv_add; NULL: kv_len */
    int64_t seqlens_stride;
    int kv_add;
    int batch, q_len, kv_len, heads, kv_heads, group, head_dim;
    float scale_log2;                      /* scale * log2(e) */
    float softcap_in, softcap_out;         /* softcap > 0: s = softcap_out * tanh(qk * softcap_in) */
    bool softcap;
    int window_left, window_right;         /* < 0: unlimited; causal already folded into window_right = 0 */
    int num_splits;                        /* > 1: partial results go to o_part / lse_part */
    float* o_part;                         /* [num_splits][batch][heads][q_len][head_dim] */
    float* lse_part;                       /* [num_splits][batch][heads][q_len], natural log */
};

__device__ __forceinline__ int kv_len_of(const Params& p, int b) {
    return p.seqlens ? p.seqlens[b * p.seqlens_stride] + p.kv_add : p.kv_len;
}

/* Keys [lo, hi) that query row i sees (lo == hi: none). Both bounds are nondecreasing in i. */
__device__ __forceinline__ void visible_keys(const Params& p, int kv_len, int64_t i, int& lo, int& hi) {
    const int64_t d = i + kv_len - p.q_len; /* the diagonal, aligned bottom-right */
    int64_t l = p.window_left >= 0 ? d - p.window_left : 0;
    int64_t h = p.window_right >= 0 ? d + p.window_right + 1 : kv_len;
    l = l < 0 ? 0 : (l > kv_len ? kv_len : l);
    h = h > kv_len ? kv_len : (h < l ? l : h);
    lo = (int)l;
    hi = (int)h;
}

/* Score in the log2 domain from the raw dot product q.k: scale, softcap, then ALiBi. */
__device__ __forceinline__ float score_log2(const Params& p, float qk, float slope_log2, int64_t diagonal, int64_t j) {
    float s = p.softcap ? p.softcap_out * tanhf(qk * p.softcap_in) : qk * p.scale_log2;
    if (slope_log2 != 0.0f) {
        int64_t distance = diagonal - j;
        s -= slope_log2 * (float)(distance < 0 ? -distance : distance);
    }
    return s;
}

__device__ __forceinline__ float slope_log2_of(const Params& p, int h) {
    return p.alibi ? p.alibi[h * p.alibi_stride] * kLog2e : 0.0f;
}

/* Natural-log log-sum-exp from the running max (log2 domain) and the sum of exp2(s - max). */
__device__ __forceinline__ float lse_of(float max_log2, float sum) {
    return sum > 0.0f ? (max_log2 + log2f(sum)) * kLn2 : -INFINITY;
}

/* ---- the tensor-core kernel's shape ------------------------------------------------------------- */

/* Two configurations of 4 warps over a tile of BM packed query rows (row r of a kv head's block is
 * query i = r / group, head kv_head * group + r % group, so the query heads sharing K/V read it once):
 *   prefill: 4 warps x 16 rows (BM = 64), each warp sweeps the whole BN-key tile;
 *   decode:  1 x 16 rows (BM = 16, for q_len * group <= 16), the 4 warps split each 64-key tile and
 *            their softmax states are merged at the end. */
template <int D, bool Decode> struct FlashShape {
    static constexpr int kWarpsM = Decode ? 1 : 4;
    static constexpr int kWarpsN = 4 / kWarpsM;
    static constexpr int BM = 16 * kWarpsM;
    static constexpr int BN = Decode ? 64 : (D <= 128 ? 64 : 32);
    static constexpr int kNW = BN / kWarpsN;          /* keys per warp per tile, a multiple of 16 */
    static constexpr bool kQInRegs = D <= 128;        /* D = 256 rereads Q from shared memory */
    static constexpr int kChunks = D / 8;             /* 16-byte chunks per row */
    static constexpr int kQBytes = BM * D * 2;
    static constexpr int kTileBytes = BN * D * 2;
    static constexpr int kMainBytes = kQBytes + 4 * kTileBytes; /* Q + 2 stages x (K, V) */
    static constexpr int kEpiStride = D + 4;          /* floats per row of the f32 epilogue tile */
    static constexpr int kEpiBytes = kWarpsN * BM * kEpiStride * 4;
    static constexpr int kStatsOffset = kMainBytes > kEpiBytes ? kMainBytes : kEpiBytes;
    static constexpr int kSmemBytes = kStatsOffset + 2 * kWarpsN * BM * 4;
    static_assert(kNW % 16 == 0, "a warp's keys must be whole k-steps of the P.V product");
    static_assert(D % 64 == 0 && D <= 256, "head dims 64, 128, 256");
    static_assert(BN * kChunks % 128 == 0 && BM * kChunks % 128 == 0, "tile loads are whole passes of 128 threads");
};

inline int flash_block_m(bool decode) { return decode ? FlashShape<64, true>::BM : FlashShape<64, false>::BM; }

inline int flash_block_n(int head_dim, bool decode) {
    return decode ? FlashShape<64, true>::BN : (head_dim <= 128 ? FlashShape<64, false>::BN : FlashShape<256, false>::BN);
}

inline size_t flash_smem_bytes(int head_dim, bool decode) {
    switch (head_dim) {
    case 64: return decode ? FlashShape<64, true>::kSmemBytes : FlashShape<64, false>::kSmemBytes;
    case 128: return decode ? FlashShape<128, true>::kSmemBytes : FlashShape<128, false>::kSmemBytes;
    default: return decode ? FlashShape<256, true>::kSmemBytes : FlashShape<256, false>::kSmemBytes;
    }
}

/* Launches the tensor-core kernel for T (__half or __nv_bfloat16) and head dim D (64, 128, 256) with
 * p.num_splits partitions of the keys. Defined in attention_flash_f16.cu / attention_flash_bf16.cu. */
template <class T, int D>
llmk_status launch_flash(const Params& p, bool decode, cudaStream_t stream, const char* llmk_fn);

#define LLMK_ATTN_DECLARE_FLASH(T)                                                                      \
    extern template llmk_status launch_flash<T, 64>(const Params&, bool, cudaStream_t, const char*);   \
    extern template llmk_status launch_flash<T, 128>(const Params&, bool, cudaStream_t, const char*);  \
    extern template llmk_status launch_flash<T, 256>(const Params&, bool, cudaStream_t, const char*);
LLMK_ATTN_DECLARE_FLASH(__half)
LLMK_ATTN_DECLARE_FLASH(__nv_bfloat16)
#undef LLMK_ATTN_DECLARE_FLASH

} // namespace attn
} // namespace llmk_cu

#endif /* LLMK_CUDA_ATTENTION_CUH */
