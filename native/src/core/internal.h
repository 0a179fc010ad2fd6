/* Internal declarations shared by the API layer, the CPU reference and the CUDA backend.
 * Layers: api/ validates every argument and dispatches on the context's backend; cpu/ and cuda/ then
 * compute on arguments that are known to be valid. */
#ifndef LLMK_INTERNAL_H
#define LLMK_INTERNAL_H

#include "llmk.h"

#include <stdbool.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---------------------------------------------------------------------------------------- */

/* Records a formatted message for the calling thread and returns status. */
llmk_status llmk_fail(llmk_status status, const char* format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#define LLMK_TRY(expr)                        \
    do {                                      \
        llmk_status llmk_try_s_ = (expr);     \
        if (llmk_try_s_ != LLMK_STATUS_OK)    \
            return llmk_try_s_;               \
    } while (0)

/* ---- contexts -------------------------------------------------------------------------------------- */

/* What a backend provides for memory; kernels are dispatched by name (see LLMK_DISPATCH). */
typedef struct llmk_memory_ops {
    llmk_status (*alloc)(llmk_context* ctx, uint64_t bytes, void** out);
    void (*release)(llmk_context* ctx, void* pointer);
    llmk_status (*upload)(llmk_context* ctx, void* dst, const void* src, uint64_t bytes);
    llmk_status (*download)(llmk_context* ctx, void* dst, const void* src, uint64_t bytes);
    llmk_status (*copy)(llmk_context* ctx, void* dst, const void* src, uint64_t bytes);
    llmk_status (*synchronize)(llmk_context* ctx);
    void (*destroy)(llmk_context* ctx); /* backend state only; allocations are released before */
} llmk_memory_ops;

/* The CPU kernels of a context, one entry per backend op (LLMK_BACKEND_OPS, below): the reference's, with
 * the fast flavour's own entries in their place. */
typedef struct llmk_cpu_kernel_table llmk_cpu_kernel_table;
typedef struct llmk_thread_pool llmk_thread_pool;
void llmk_thread_pool_destroy(llmk_thread_pool* pool);

/* One buffer of llmk_malloc: [begin, begin + bytes). */
typedef struct llmk_allocation {
    uintptr_t begin;
    uint64_t bytes;
} llmk_allocation;

/* llmk_free keeps up to this many buffers (and LLMK_QUARANTINE_BYTES in all) from the backend for a while, so
 * a later call that still points into one is refused as use after free: while the memory is held, nothing
 * else can be allocated there, so the check has no false alarms (docs/DESIGN.md, "Misuse of the C API"). */
enum { LLMK_QUARANTINE_BUFFERS = 32 };
#define LLMK_QUARANTINE_BYTES ((uint64_t)64 << 20)

struct llmk_context {
    int32_t device_type;
    int32_t device_index;
    int32_t num_threads;            /* CPU worker threads */
    int32_t cpu_kernels;            /* llmk_cpu_kernels of a CPU context: REFERENCE or a fast flavour */
    const llmk_cpu_kernel_table* cpu;
    void* cpu_scratch;              /* fast kernels' per-thread scratch, grown on demand, kept between calls */
    size_t cpu_scratch_bytes;
    llmk_thread_pool* pool;         /* fast kernels' workers (cpu/thread_pool.c), started on first use */
    int32_t cpu_busy;               /* a fast kernel is running (atomic): scratch and pool serve one call */
    const llmk_memory_ops* ops;
    void* backend;                  /* backend state (CUDA: stream, cuBLAS handle, workspace) */
    llmk_allocation* allocations;   /* live llmk_malloc buffers with their sizes (core/context.c) */
    size_t allocation_count;
    size_t allocation_capacity;
    llmk_allocation freed[LLMK_QUARANTINE_BUFFERS]; /* recently freed buffers, not yet released (a ring) */
    size_t freed_next;
    uint64_t freed_bytes;
};

/* ---- tensor validation ----------------------------------------------------------------------------- */

#define LLMK_DTYPE_BIT(d) (1u << (d))
#define LLMK_FLOATING (LLMK_DTYPE_BIT(LLMK_DTYPE_F32) | LLMK_DTYPE_BIT(LLMK_DTYPE_F16) | LLMK_DTYPE_BIT(LLMK_DTYPE_BF16))
#define LLMK_INDEX (LLMK_DTYPE_BIT(LLMK_DTYPE_I32) | LLMK_DTYPE_BIT(LLMK_DTYPE_I64))

enum {
    LLMK_CHECK_DEFAULT = 0,
    LLMK_CHECK_ANY_STRIDE = 1  /* the innermost dimension need not be contiguous */
};

/* Validates a view for use with ctx in function fn: non-NULL, rank (rank > 0: exactly that), dtype in
 * dtype_mask, shape and strides >= 0, element and byte extents that fit 64 bits, data non-NULL unless
 * empty, device equal to the context's, innermost stride 1 unless LLMK_CHECK_ANY_STRIDE. name is the
 * parameter's name for the message. */
llmk_status llmk_check_tensor(const llmk_context* ctx, const char* fn, const char* name, const llmk_tensor* t,
                              int32_t rank, uint32_t dtype_mask, int32_t flags);

/* Dimension dim of t must equal expected; what names the expected quantity ("hidden", "heads"). */
llmk_status llmk_check_dim(const char* fn, const char* name, const llmk_tensor* t, int32_t dim, int64_t expected,
                           const char* what);

/* a and b must have the same rank and shape. */
llmk_status llmk_check_same_shape(const char* fn, const char* name_a, const llmk_tensor* a, const char* name_b,
                                  const llmk_tensor* b);

/* a and b must have the same dtype. */
llmk_status llmk_check_same_dtype(const char* fn, const char* name_a, const llmk_tensor* a, const char* name_b,
                                  const llmk_tensor* b);

/* Checks that ctx is a live context (created and not yet destroyed: core/context.c keeps the set); every
 * entry point calls it first. */
llmk_status llmk_check_context(const llmk_context* ctx, const char* fn);

/* Checks bytes at pointer against ctx's buffers: inside one live llmk_malloc buffer, or in memory the context
 * does not own (a mapped file, the caller's array: its extent is the caller's business). A range that starts
 * in a buffer and runs past its end, or points into a buffer freed by llmk_free, is refused. */
llmk_status llmk_check_memory(const llmk_context* ctx, const char* fn, const char* name, const void* pointer,
                              uint64_t bytes);

/* ---- dtypes: the one place sizes and alignments are known (core/tensor.c) -------------------------- */

/* Bytes a data pointer of dtype must be aligned to (the element size for the element dtypes, 2 for the
 * quantized blocks); 0 for an unknown dtype. */
size_t llmk_dtype_alignment(int32_t dtype);

/* *out_bytes = bytes of elements elements of dtype (whole blocks, rounded up, for a quantized dtype); false
 * when the dtype is unknown or the size overflows 64 bits. Every byte size computed from an element count
 * goes through here (llmk_bytes_of is its form for sizes already validated). */
bool llmk_dtype_bytes(int32_t dtype, uint64_t elements, uint64_t* out_bytes);

/* Writes "[2, 3, 4]" into buffer. */
void llmk_format_shape(const llmk_tensor* t, char* buffer, size_t capacity);

/* Elements per block: 1 for the plain dtypes, 32 or 256 for the quantized ones, 0 for an unknown dtype. */
int64_t llmk_block_elements(int32_t dtype);

/* llmk_dtype_bytes for a size already validated (0 where that would fail). */
uint64_t llmk_bytes_of(int32_t dtype, uint64_t elements);

int64_t llmk_numel(const llmk_tensor* t);

/* ---- aliasing between views (core/aliasing.c) ------------------------------------------------------ */

/* Same data pointer, dtype, rank, shape and strides: an exact alias, safe for elementwise in-place work. */
bool llmk_same_view(const llmk_tensor* a, const llmk_tensor* b);

/* Whether a and b may share an element. Disjoint byte ranges, or row-interleaved views with the same outer
 * stride whose rows occupy disjoint bytes (the q and k slices of a fused qkv buffer), do not overlap;
 * anything else that intersects is treated as overlapping. */
bool llmk_views_overlap(const llmk_tensor* a, const llmk_tensor* b);

/* Fails with LLMK_STATUS_INVALID_ARGUMENT ("b overlaps a") when b overlaps a; with alias_ok, b may be
 * exactly a (in-place use). */
llmk_status llmk_check_no_overlap(const char* fn, const char* name_a, const llmk_tensor* a, const char* name_b,
                                  const llmk_tensor* b, bool alias_ok);

/* An output must give every element its own address (no zero or interleaving strides): otherwise which write
 * lands would depend on thread timing. */
llmk_status llmk_check_no_self_overlap(const char* fn, const char* name, const llmk_tensor* t);

/* ---- scalar conversions (host) --------------------------------------------------------------------- */

static inline float llmk_bits_to_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint32_t llmk_float_to_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static inline float llmk_bf16_to_float(uint16_t h) { return llmk_bits_to_float((uint32_t)h << 16); }

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t llmk_float_to_bf16(float f) {
    uint32_t bits = llmk_float_to_bits(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

float llmk_f16_to_float(uint16_t h);
uint16_t llmk_float_to_f16(float f);

/* Element i (already strided) of a floating tensor's data, as f32. */
static inline float llmk_load_float(const void* data, int32_t dtype, int64_t i) {
    switch (dtype) {
    case LLMK_DTYPE_F32: return ((const float*)data)[i];
    case LLMK_DTYPE_F16: return llmk_f16_to_float(((const uint16_t*)data)[i]);
    default: return llmk_bf16_to_float(((const uint16_t*)data)[i]);
    }
}

static inline void llmk_store_float(void* data, int32_t dtype, int64_t i, float value) {
    switch (dtype) {
    case LLMK_DTYPE_F32: ((float*)data)[i] = value; break;
    case LLMK_DTYPE_F16: ((uint16_t*)data)[i] = llmk_float_to_f16(value); break;
    default: ((uint16_t*)data)[i] = llmk_float_to_bf16(value); break;
    }
}

/* Contiguous runs (innermost stride 1): data[offset .. offset + n) as f32 into dst, and src rounded into
 * data[offset .. offset + n). They switch on the dtype once per run, so the per-dtype loops vectorize;
 * the values are the same as element-wise llmk_load_float / llmk_store_float. dst and src are f32 scratch
 * that does not overlap data. Quantized dtypes (whole blocks: offset and n multiples of the block) are
 * dequantized and quantized (core/quant.c). */
void llmk_load_floats(const void* data, int32_t dtype, int64_t offset, int64_t n, float* dst);
void llmk_store_floats(void* data, int32_t dtype, int64_t offset, int64_t n, const float* src);

/* out[io .. io + n) = a[ia ..] + b[ib ..]: contiguous runs added in f32 and rounded once to out's dtype (out
 * may be a or b). */
void llmk_add_floats(const llmk_tensor* a, int64_t ia, const llmk_tensor* b, int64_t ib, llmk_tensor* out,
                     int64_t io, int64_t n);

/* data[offset .. offset + n) as f32: a pointer into data itself when it holds f32 (no copy), else the run
 * converted into buffer. */
static inline const float* llmk_floats_at(const void* data, int32_t dtype, int64_t offset, int64_t n,
                                          float* buffer) {
    if (dtype == LLMK_DTYPE_F32)
        return (const float*)data + offset;
    llmk_load_floats(data, dtype, offset, n, buffer);
    return buffer;
}

static inline int64_t llmk_load_index(const void* data, int32_t dtype, int64_t i) {
    return dtype == LLMK_DTYPE_I32 ? (int64_t)((const int32_t*)data)[i] : ((const int64_t*)data)[i];
}

/* ---- backends -------------------------------------------------------------------------------------- */

llmk_status llmk_cpu_context_init(llmk_context* ctx, int32_t num_threads, int32_t kernels);

/* The kernel table of a CPU flavour (llmk_cpu_kernels), with what FAST resolves to; UNAVAILABLE with the
 * reason when this CPU or build cannot run it (cpu_fast/flavors.c). fn names the caller in the message. */
llmk_status llmk_cpu_kernels_table(const char* fn, int32_t kernels, const llmk_cpu_kernel_table** out_table,
                                   int32_t* out_resolved);

/* KV-cache step of the reference (cpu/attention.c), shared with the fast kernels: checks that every
 * sequence fits, then writes k_new/v_new at rows [cache_seqlens[b], +new_len); kv_lens[b] = rows to attend. */
llmk_status llmk_cpu_kvcache_append(llmk_context* ctx, llmk_tensor* k_cache, llmk_tensor* v_cache,
                                    const llmk_tensor* k_new, const llmk_tensor* v_new,
                                    const llmk_tensor* cache_seqlens, int64_t batch, int64_t* kv_lens);

/* The context's scratch of at least bytes, kept between calls so steady-state decode does not allocate;
 * NULL when out of memory. Used by one op at a time (a context is not used from two threads at once). */
void* llmk_cpu_scratch(llmk_context* ctx, size_t bytes);
#ifdef LLMK_WITH_CUDA
llmk_status llmk_cuda_context_init(llmk_context* ctx, int32_t device_index);
#endif

/* Kernel entry points of each backend: the public signature, called only with validated arguments.
 * The CPU backend defines llmk_cpu_<op>, the CUDA backend llmk_cuda_<op>. */
#define LLMK_BACKEND_OPS(X)                                                                                  \
    X(add, (llmk_context * ctx, const llmk_tensor* a, const llmk_tensor* b, llmk_tensor* out))              \
    X(convert, (llmk_context * ctx, const llmk_tensor* src, llmk_tensor* out))                              \
    X(embedding, (llmk_context * ctx, const llmk_tensor* table, const llmk_tensor* ids, llmk_tensor* out))  \
    X(linear, (llmk_context * ctx, const llmk_tensor* x, const llmk_tensor* weight, const llmk_tensor* bias, \
               llmk_tensor* y))                                                                              \
    X(rms_norm, (llmk_context * ctx, const llmk_tensor* x, const llmk_tensor* weight, float eps,            \
                 int32_t flags, llmk_tensor* out))                                                           \
    X(add_rms_norm, (llmk_context * ctx, const llmk_tensor* x, llmk_tensor* residual,                       \
                     const llmk_tensor* weight, float eps, int32_t flags, llmk_tensor* out))                 \
    X(gated_activation_split, (llmk_context * ctx, int32_t activation, const llmk_tensor* gate,             \
                               const llmk_tensor* up, llmk_tensor* out))                                     \
    X(rope, (llmk_context * ctx, const llmk_tensor* positions, const float* inv_freq,                       \
             float attention_factor, int32_t style, int32_t rotary_dim, llmk_tensor* q, llmk_tensor* k))     \
    X(attention, (llmk_context * ctx, const llmk_tensor* q, const llmk_tensor* k, const llmk_tensor* v,     \
                  const llmk_tensor* alibi_slopes, const llmk_attention_params* params, llmk_tensor* out,    \
                  llmk_tensor* lse))                                                                         \
    X(attention_kvcache,                                                                                     \
      (llmk_context * ctx, const llmk_tensor* q, llmk_tensor* k_cache, llmk_tensor* v_cache,                \
       const llmk_tensor* k_new, const llmk_tensor* v_new, const llmk_tensor* cache_seqlens,                 \
       const llmk_tensor* alibi_slopes, const llmk_attention_params* params, llmk_tensor* out,               \
       llmk_tensor* lse))                                                                                    \
    X(moe_route, (llmk_context * ctx, const llmk_tensor* logits, const llmk_tensor* correction_bias,        \
                  const llmk_moe_router_params* params, llmk_tensor* weights, llmk_tensor* expert_ids))      \
    X(moe_permute, (llmk_context * ctx, const llmk_tensor* x, const llmk_tensor* expert_ids,                \
                    int32_t num_experts, llmk_tensor* permuted, llmk_tensor* expert_offsets,                 \
                    llmk_tensor* source_rows, llmk_tensor* permuted_rows))                                   \
    X(moe_unpermute, (llmk_context * ctx, const llmk_tensor* expert_out, const llmk_tensor* weights,        \
                      const llmk_tensor* permuted_rows, llmk_tensor* out))

#define LLMK_DECLARE_CPU_OP(name, params) llmk_status llmk_cpu_##name params;
#define LLMK_DECLARE_TABLE_ENTRY(name, params) llmk_status (*name) params;
struct llmk_cpu_kernel_table {
    LLMK_BACKEND_OPS(LLMK_DECLARE_TABLE_ENTRY)
};
extern const llmk_cpu_kernel_table llmk_cpu_reference_kernels;
#define LLMK_DECLARE_CUDA_OP(name, params) llmk_status llmk_cuda_##name params;
LLMK_BACKEND_OPS(LLMK_DECLARE_CPU_OP)
#ifdef LLMK_WITH_CUDA
LLMK_BACKEND_OPS(LLMK_DECLARE_CUDA_OP)
#define LLMK_CUDA_CALL(op, ...) llmk_cuda_##op(__VA_ARGS__)
#else
#define LLMK_CUDA_CALL(op, ...) llmk_fail(LLMK_STATUS_INTERNAL, "CUDA context without the CUDA backend")
#endif

/* Runs op on ctx's backend. The first argument after op must be ctx. */
#define LLMK_DISPATCH(op, ctx, ...)                                                   \
    ((ctx)->device_type == LLMK_DEVICE_TYPE_CUDA ? LLMK_CUDA_CALL(op, ctx, __VA_ARGS__) \
                                                 : (ctx)->cpu->op(ctx, __VA_ARGS__))

#ifdef __cplusplus
}
#endif

#endif /* LLMK_INTERNAL_H */
