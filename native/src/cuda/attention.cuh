/* CUDA attention: the parameters every attention kernel shares, the masking/score rules written once,
 * and the seams of the tensor-core kernels: the one list of head dims (LLMK_ATTN_FLASH_HEAD_DIMS) and
 * one path per architecture (FlashPath<FlashArch, D>: sm80 today, the sm90 slot routed to it).
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

/* ---- the tensor-core kernel's shape (the sm80 path) -------------------------------------------- */

/* Two configurations of 4 warps over a tile of BM packed query rows (row r of a kv head's block is
 * query i = r / group, head kv_head * group + r % group, so the query heads sharing K/V read it once):
 *   prefill: 4 warps x 16 rows (BM = 64), each warp sweeps the whole BN-key tile;
 *   decode:  1 x 16 rows (BM = 16, for q_len * group <= 16), the 4 warps split each 64-key tile and
 *            their softmax states are merged at the end. */
template <int D, bool Decode> struct FlashShape {
    static constexpr int kD = D;
    static constexpr int kWarpsM = Decode ? 1 : 4;
    static constexpr int kWarpsN = 4 / kWarpsM;
    static constexpr int BM = 16 * kWarpsM;
    static constexpr int BN = Decode ? 64 : (D <= 128 ? 64 : 32);
    static constexpr int kNW = BN / kWarpsN;          /* keys per warp per tile, a multiple of 16 */
    static constexpr int kNT = kNW / 8;               /* n-tiles (8 keys) of a warp's scores */
    static constexpr int kDT = D / 8;                 /* n-tiles (8 dims) of the output */
    static constexpr int kKS = D / 16;                /* k-steps (16 dims) of Q K^T */
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
    static_assert(D % 64 == 0 && D <= 256, "the tiling takes head dims that are multiples of 64, up to 256");
    static_assert(BN * kChunks % 128 == 0 && BM * kChunks % 128 == 0, "tile loads are whole passes of 128 threads");
};

/* ---- head dims: the one list ---------------------------------------------------------------------- */

/* The head dims the tensor-core kernels are built for. Everything that enumerates head dims expands this
 * list: the instantiations (attention_flash_launch.cuh), their extern declarations (below), the dispatch
 * (visit_flash_head_dim, launch_flash) and the emulator's cases (tests/native/attention_emu). To add one,
 * add it here (FlashShape's static_asserts say what the tiling takes). A head dim not listed runs
 * simple_kernel; the tensor-core launcher refuses it with LLMK_STATUS_UNSUPPORTED, never another
 * instantiation. */
#define LLMK_ATTN_FLASH_HEAD_DIMS(X) X(64) X(128) X(256)

#define LLMK_ATTN_HEAD_DIM_TEXT_(D) " " #D
#define LLMK_ATTN_FLASH_HEAD_DIMS_TEXT LLMK_ATTN_FLASH_HEAD_DIMS(LLMK_ATTN_HEAD_DIM_TEXT_) /* " 64 128 256" */

template <int D> using HeadDim = std::integral_constant<int, D>;

/* The switch (as flash-attention's HEADDIM_SWITCH, but exact: no rounding up to a larger instantiation):
 * calls f(HeadDim<D>{}) for the listed D == head_dim and returns true; returns false for any other. */
template <class F> bool visit_flash_head_dim(int head_dim, F&& f) {
    switch (head_dim) {
#define LLMK_ATTN_HEAD_DIM_CASE_(D) \
    case D: f(HeadDim<D>{}); return true;
    LLMK_ATTN_FLASH_HEAD_DIMS(LLMK_ATTN_HEAD_DIM_CASE_)
#undef LLMK_ATTN_HEAD_DIM_CASE_
    default: return false;
    }
}

inline bool flash_head_dim_listed(int head_dim) { return visit_flash_head_dim(head_dim, [](auto) {}); }

/* ---- architectures: one tensor-core path each ------------------------------------------------------ */

enum class FlashArch { Sm80, Sm90 };

inline const char* flash_arch_name(FlashArch arch) { return arch == FlashArch::Sm90 ? "sm90" : "sm80"; }

/* The path for a device of compute capability cc_major.x: Sm90 on Hopper (9.x) when the library carries
 * sm_90a code (LLMK_CUDA_SM90A, defined by CMake when 90a is among the CUDA architectures: wgmma and TMA
 * exist only there), else Sm80, whose mma.sync kernel runs on every compute capability from 8.0 on. */
inline FlashArch flash_arch_for(int cc_major) {
#if defined(LLMK_CUDA_SM90A)
    if (cc_major == 9)
        return FlashArch::Sm90;
#endif
    (void)cc_major;
    return FlashArch::Sm80;
}

/* What the host needs of a path for one call: its configuration and the sizes that set the grid and
 * split-KV (block_m packed rows, block_n keys per tile) and the shared memory check. */
struct FlashPlan {
    bool decode;
    int block_m, block_n;
    size_t smem_bytes;
};

/* The sm80 path's launcher: flash_kernel_sm80<T, D, decode> over p.num_splits partitions of the keys.
 * Defined in attention_flash_launch.cuh, instantiated per dtype in attention_flash_{f16,bf16}.cu. */
template <class T, int D>
llmk_status launch_flash_sm80(const Params& p, bool decode, cudaStream_t stream, const char* llmk_fn);

/* FlashPath<A, D>: the tensor-core path of architecture A for head dim D. plan(packed_rows) chooses its
 * configuration; launch<T>(p, plan, stream, llmk_fn) runs it. */
template <FlashArch A, int D> struct FlashPath;

/* sm80: mma.sync m16n8k16 with ldmatrix fragments and cp.async double buffering (attention_flash.cuh). */
template <int D> struct FlashPath<FlashArch::Sm80, D> {
    static FlashPlan plan(int64_t packed_rows) {
        using Decode = FlashShape<D, true>;
        using Prefill = FlashShape<D, false>;
        if (packed_rows <= Decode::BM)
            return FlashPlan{true, Decode::BM, Decode::BN, (size_t)Decode::kSmemBytes};
        return FlashPlan{false, Prefill::BM, Prefill::BN, (size_t)Prefill::kSmemBytes};
    }
    template <class T>
    static llmk_status launch(const Params& p, const FlashPlan& plan, cudaStream_t stream, const char* llmk_fn) {
        return launch_flash_sm80<T, D>(p, plan.decode, stream, llmk_fn);
    }
};

/* ==== THE SM90 SLOT ==================================================================================
 * Hopper's own path goes here: wgmma.mma_async (warpgroup MMA, operands from shared memory descriptors)
 * fed by TMA (cp.async.bulk.tensor with an mbarrier pipeline), producer/consumer warpgroups, as in
 * FlashAttention-3. It is not written yet, so FlashPath<Sm90, D> *is* the sm80 path: the mma.sync kernel
 * runs on sm_90 unchanged. To fill the slot:
 *   1. write the kernel (attention_flash_sm90.cuh), its body under `#if defined(__CUDA_ARCH_FEAT_SM90_ALL)`
 *      (sm_90a only; CMake adds 90a to the architectures with CUDA 12+, see cmake/LlmkCuda.cmake);
 *   2. replace the line below by a specialization with its own plan() (its tile shapes and shared memory)
 *      and a launch<T> that launches it, instantiated in attention_flash_{f16,bf16}.cu beside the sm80 one;
 *   3. check it on an H100/H200 against the CPU reference (llmk_gpu_bench --check-only, the Gpu tests)
 *      before anyone relies on it; flash_arch_for already routes compute capability 9.x here. */
template <int D> struct FlashPath<FlashArch::Sm90, D> : FlashPath<FlashArch::Sm80, D> {};

/* Calls f(FlashPath<arch, D>{}) for a listed head dim D == head_dim; false (f not called) otherwise. */
template <class F> bool visit_flash_path(FlashArch arch, int head_dim, F&& f) {
    return visit_flash_head_dim(head_dim, [&](auto d) {
        constexpr int D = decltype(d)::value;
        if (arch == FlashArch::Sm90)
            f(FlashPath<FlashArch::Sm90, D>{});
        else
            f(FlashPath<FlashArch::Sm80, D>{});
    });
}

/* The launcher templated on the architecture (through FlashPath) and the head dim (through the list):
 * runs FlashPath<arch, p.head_dim>::launch<T>. An unlisted head dim is LLMK_STATUS_UNSUPPORTED. */
template <class T>
llmk_status launch_flash(FlashArch arch, const Params& p, const FlashPlan& plan, cudaStream_t stream,
                         const char* llmk_fn) {
    llmk_status status = LLMK_STATUS_OK;
    const bool listed = visit_flash_path(arch, p.head_dim, [&](auto path) {
        status = decltype(path)::template launch<T>(p, plan, stream, llmk_fn);
    });
    if (!listed)
        return llmk_fail(LLMK_STATUS_UNSUPPORTED,
                         "%s: head_dim %d has no tensor-core attention kernel (%s path; built for head dims"
                         LLMK_ATTN_FLASH_HEAD_DIMS_TEXT ")", llmk_fn, p.head_dim, flash_arch_name(arch));
    return status;
}

#define LLMK_ATTN_DECLARE_FLASH_(D)                                                                          \
    extern template llmk_status launch_flash_sm80<__half, D>(const Params&, bool, cudaStream_t, const char*); \
    extern template llmk_status launch_flash_sm80<__nv_bfloat16, D>(const Params&, bool, cudaStream_t, const char*);
LLMK_ATTN_FLASH_HEAD_DIMS(LLMK_ATTN_DECLARE_FLASH_)
#undef LLMK_ATTN_DECLARE_FLASH_

} // namespace attn
} // namespace llmk_cu

#endif /* LLMK_CUDA_ATTENTION_CUH */
