/* LlmKernels: fused building blocks of modern LLM decoders, one C ABI for every backend.
 *
 * Conventions (read once, they hold for every entry point):
 * - Every function returns an llmk_status. On failure, llmk_last_error() gives a message for the calling
 *   thread, owned by the library and valid until that thread's next call. The library never aborts,
 *   exits or prints.
 * - Tensors are non-owning views (llmk_tensor): data pointer, dtype, device, rank <= 4, shape and strides
 *   in elements. Every view is validated before memory is touched. Kernels need the innermost dimension
 *   contiguous (stride 1) unless a parameter comment says otherwise.
 * - A context (llmk_context) is one backend: CPU, or one CUDA device with its stream. Every tensor passed
 *   with a context must live on that context's device.
 * - Inputs first, outputs last; in-place parameters say so. Shape comments name the dimensions.
 * - Floating tensors may be f32, f16 or bf16; arithmetic accumulates in f32. "Activations" (the tensors a
 *   kernel transforms) share one dtype; weights may have their own.
 * - Enum-valued fields and parameters are int32_t, so the ABI does not depend on the size of a C enum.
 */
#ifndef LLMK_H
#define LLMK_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(LLMK_BUILDING)
#    define LLMK_API __declspec(dllexport)
#  else
#    define LLMK_API __declspec(dllimport)
#  endif
#else
#  define LLMK_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define LLMK_VERSION_MAJOR 0
#define LLMK_VERSION_MINOR 1
#define LLMK_VERSION_PATCH 0
#define LLMK_MAX_RANK 4

/* ---------------------------------------------------------------------------------------------------- */
/* Status and errors                                                                                    */
/* ---------------------------------------------------------------------------------------------------- */

/* Values are explicit and only ever appended. */
typedef enum llmk_status {
    LLMK_STATUS_OK = 0,
    LLMK_STATUS_INVALID_ARGUMENT = 1, /* a value outside its domain (eps <= 0, top_k > experts, ...) */
    LLMK_STATUS_NULL_POINTER = 2,     /* a required pointer was NULL */
    LLMK_STATUS_SHAPE_MISMATCH = 3,   /* wrong rank, or dimensions that do not agree */
    LLMK_STATUS_DTYPE_MISMATCH = 4,   /* a dtype the kernel does not take, or dtypes that do not agree */
    LLMK_STATUS_BAD_STRIDE = 5,       /* negative strides, or a layout the kernel cannot read */
    LLMK_STATUS_OVERFLOW = 6,         /* a size whose element count or byte count overflows 64 bits */
    LLMK_STATUS_OUT_OF_MEMORY = 7,
    LLMK_STATUS_UNAVAILABLE = 8,      /* backend not compiled in, no device, driver too old */
    LLMK_STATUS_DEVICE_ERROR = 9,     /* an error reported by the device runtime; message carries its text */
    LLMK_STATUS_UNSUPPORTED = 10,     /* valid request this backend does not implement (e.g. a head dim) */
    LLMK_STATUS_WRONG_DEVICE = 11,    /* a tensor or buffer that does not belong to the context's device */
    LLMK_STATUS_OUT_OF_RANGE = 12,    /* an index in the data (token id, expert id, position) out of range */
    LLMK_STATUS_INTERNAL = 13,        /* a bug in the library; please report it */
    LLMK_STATUS_COUNT
} llmk_status;

/* Static name of a status ("LLMK_STATUS_SHAPE_MISMATCH"); "unknown status" for values out of range. */
LLMK_API const char* llmk_status_string(llmk_status status);

/* Message of the last failure on the calling thread ("" if none). Owned by the library. */
LLMK_API const char* llmk_last_error(void);

/* "MAJOR.MINOR.PATCH+backends", e.g. "0.1.0+cpu+cuda". Static string. */
LLMK_API const char* llmk_version(void);

/* ---------------------------------------------------------------------------------------------------- */
/* Tensors                                                                                              */
/* ---------------------------------------------------------------------------------------------------- */

typedef enum llmk_dtype {
    LLMK_DTYPE_F32 = 0,
    LLMK_DTYPE_F16 = 1,
    LLMK_DTYPE_BF16 = 2,
    LLMK_DTYPE_I32 = 3,
    LLMK_DTYPE_I64 = 4,
    LLMK_DTYPE_Q8_0 = 5, /* blocks of 32: f16 scale d, 32 x int8 q; x = d * q (34 bytes) */
    LLMK_DTYPE_Q4_0 = 6, /* blocks of 32: f16 d, 16 bytes of nibbles; x[i] = d * (q[i] - 8), i < 16 in the low
                            nibbles, i >= 16 in the high ones (18 bytes) */
    LLMK_DTYPE_Q4_K = 7, /* super-blocks of 256: f16 d and dmin, 8 x 6-bit scale and min, 4-bit q; x = d * scale *
                            q - dmin * min per 32 (144 bytes) */
    LLMK_DTYPE_Q6_K = 8, /* super-blocks of 256: 6-bit q in low and high planes, 16 x int8 scale, f16 d;
                            x = d * scale * (q - 32) per 16 (210 bytes) */
    LLMK_DTYPE_COUNT
} llmk_dtype;

typedef enum llmk_device_type {
    LLMK_DEVICE_TYPE_CPU = 0,
    LLMK_DEVICE_TYPE_CUDA = 1,
    LLMK_DEVICE_TYPE_COUNT
} llmk_device_type;

/* A non-owning view of memory. Dimensions beyond rank are ignored. */
typedef struct llmk_tensor {
    void* data;
    int32_t dtype;                    /* llmk_dtype */
    int32_t rank;                     /* 1..LLMK_MAX_RANK */
    int64_t shape[LLMK_MAX_RANK];     /* elements per dimension, >= 0 */
    int64_t strides[LLMK_MAX_RANK];   /* in elements, >= 0 */
    int32_t device_type;              /* llmk_device_type */
    int32_t device_index;             /* CUDA ordinal; 0 for the CPU */
} llmk_tensor;

/* Bytes per element of a dtype; 0 for an unknown or a block-quantized dtype (see llmk_dtype_block). */
LLMK_API size_t llmk_dtype_size(int32_t dtype);

/* Elements and bytes per block of a dtype: 1 and the element size for the plain dtypes, (32, 34) for Q8_0,
 * (32, 18) for Q4_0, (256, 144) for Q4_K, (256, 210) for Q6_K. LLMK_STATUS_DTYPE_MISMATCH for an unknown dtype. */
LLMK_API llmk_status llmk_dtype_block(int32_t dtype, int64_t* out_elements, int64_t* out_bytes);

/* A dtype's short name, as the error messages spell it ("f32", "bf16", "q4_k"); "unknown" for any other value.
 * A static string. */
LLMK_API const char* llmk_dtype_name(int32_t dtype);

/* ---------------------------------------------------------------------------------------------------- */
/* Contexts and memory                                                                                  */
/* ---------------------------------------------------------------------------------------------------- */

typedef struct llmk_context llmk_context;

/* The kernels a CPU context runs. The reference is the oracle: plain C, one fixed summation order, the same
 * bits for any thread count. The fast kernels (vectorized, FMA, weights widened in registers) answer to the
 * same oracles; their bits depend on the flavour, never on the thread count. Unlike the reference, a row
 * computed alone (decode) need not get the bits it gets inside a larger call (prefill): the two take
 * different tiles. Kernels without a fast version run the reference in every flavour. */
typedef enum llmk_cpu_kernels {
    LLMK_CPU_KERNELS_REFERENCE = 0,
    LLMK_CPU_KERNELS_FAST = 1,     /* the best flavour below that this CPU and build support */
    LLMK_CPU_KERNELS_PORTABLE = 2, /* fast kernels in portable C vectors (any CPU) */
    LLMK_CPU_KERNELS_AVX2 = 3,     /* x86-64 with AVX2, FMA and F16C */
    LLMK_CPU_KERNELS_AVX512 = 4,   /* x86-64 with AVX-512 F, BW and VL */
    LLMK_CPU_KERNELS_COUNT
} llmk_cpu_kernels;

/* A CPU context running the reference kernels; the same as llmk_context_create_cpu_kernels(num_threads,
 * LLMK_CPU_KERNELS_REFERENCE, out_context). num_threads <= 0 picks the physical cores this process may run
 * on; more than 8 x the logical CPUs (at least 64) gives LLMK_STATUS_INVALID_ARGUMENT. The reference's
 * results do not depend on the thread count. */
LLMK_API llmk_status llmk_context_create_cpu(int32_t num_threads, llmk_context** out_context);

/* A CPU context running the given kernels (llmk_cpu_kernels). A flavour this CPU or build cannot run gives
 * LLMK_STATUS_UNAVAILABLE with the reason; FAST always succeeds (PORTABLE at worst). A fast context keeps a
 * thread pool and scratch memory for its kernels, so it takes one kernel call at a time: a call made while
 * another thread's call runs on it fails with LLMK_STATUS_INVALID_ARGUMENT (use one context per thread). */
LLMK_API llmk_status llmk_context_create_cpu_kernels(int32_t num_threads, int32_t kernels,
                                                     llmk_context** out_context);

/* The kernels a CPU context runs (what FAST resolved to, never FAST itself) and its thread count. A CUDA
 * context gives LLMK_STATUS_INVALID_ARGUMENT. */
LLMK_API llmk_status llmk_context_cpu_kernels(const llmk_context* context, int32_t* out_kernels,
                                              int32_t* out_num_threads);

/* LLMK_STATUS_OK when this CPU and build can run the flavour; LLMK_STATUS_UNAVAILABLE with the reason if
 * not. FAST and REFERENCE are always available. */
LLMK_API llmk_status llmk_cpu_kernels_available(int32_t kernels);

/* Static name of a flavour: "reference", "fast", "portable", "avx2", "avx512"; "unknown" out of range. */
LLMK_API const char* llmk_cpu_kernels_name(int32_t kernels);

/* A CUDA context on device_index with a stream of its own. LLMK_STATUS_UNAVAILABLE, with the reason in
 * llmk_last_error(), when the library was built without CUDA, the driver is missing or too old, or
 * there is no such device. */
LLMK_API llmk_status llmk_context_create_cuda(int32_t device_index, llmk_context** out_context);

/* Frees the context and every buffer still allocated through it. NULL is accepted. A pointer that is not a
 * live context (destroyed already, or never created) gives LLMK_STATUS_INVALID_ARGUMENT and nothing is freed;
 * every other entry point refuses it the same way. */
LLMK_API llmk_status llmk_context_destroy(llmk_context* context);

/* The backend and device of a context. */
LLMK_API llmk_status llmk_context_device(const llmk_context* context, int32_t* out_device_type,
                                         int32_t* out_device_index);

/* Waits until all work queued on the context has finished; reports asynchronous device errors. */
LLMK_API llmk_status llmk_context_synchronize(llmk_context* context);

/* Number of CUDA devices visible; LLMK_STATUS_UNAVAILABLE with the reason when CUDA cannot be used. */
LLMK_API llmk_status llmk_cuda_device_count(int32_t* out_count);

/* Describes a CUDA device into buffer (NUL-terminated, truncated to capacity): name, compute
 * capability, memory, driver and runtime versions. */
LLMK_API llmk_status llmk_cuda_device_describe(int32_t device_index, char* buffer, size_t capacity);

/* Memory on the context's device, 256-byte aligned. bytes == 0 gives a valid unique pointer. The context
 * keeps each buffer's size: a tensor view or a copy that starts inside a buffer and runs past its end gives
 * LLMK_STATUS_OUT_OF_RANGE. Memory the context did not allocate (a mapped file, the caller's array) is
 * accepted as given. Every tensor's data pointer must be aligned to its dtype's element size
 * (LLMK_STATUS_INVALID_ARGUMENT otherwise). */
LLMK_API llmk_status llmk_malloc(llmk_context* context, uint64_t bytes, void** out_pointer);

/* Frees memory from llmk_malloc on this context. A pointer the context did not allocate (or already
 * freed) gives LLMK_STATUS_INVALID_ARGUMENT and nothing is freed. NULL is accepted. The most recently freed
 * buffers (32, up to 64 MiB) are held back for a while, so a call that still points into one is refused
 * with LLMK_STATUS_INVALID_ARGUMENT instead of touching freed memory. */
LLMK_API llmk_status llmk_free(llmk_context* context, void* pointer);

/* Host -> device, device -> host and device -> device copies, ordered on the context's stream;
 * upload and download return when the copy is complete. */
LLMK_API llmk_status llmk_upload(llmk_context* context, void* device_dst, const void* host_src, uint64_t bytes);
LLMK_API llmk_status llmk_download(llmk_context* context, void* host_dst, const void* device_src, uint64_t bytes);
LLMK_API llmk_status llmk_copy(llmk_context* context, void* device_dst, const void* device_src, uint64_t bytes);

/* ---------------------------------------------------------------------------------------------------- */
/* Elementwise and data movement                                                                        */
/* ---------------------------------------------------------------------------------------------------- */

/* out = a + b, same shapes, any floating dtypes (each may differ). out may alias a or b exactly. */
LLMK_API llmk_status llmk_add(llmk_context* context,
                              const llmk_tensor* a,   /* [d0, ..., dn] */
                              const llmk_tensor* b,   /* [d0, ..., dn] */
                              llmk_tensor* out);      /* [d0, ..., dn] */

/* out = src converted to out's dtype (floating <-> floating, or integer <-> integer), any strides. A quantized
 * dtype converts to a floating one (on CUDA: a [rows, cols] matrix) and, on the CPU, from one (a quantized
 * side follows the block rules above):
 * dequantizing is exact; quantizing Q8_0 and Q4_0 rounds as GGUF's reference quantizers do, Q4_K and Q6_K
 * take each block's scales from its range (no search). */
LLMK_API llmk_status llmk_convert(llmk_context* context,
                                  const llmk_tensor* src,  /* [d0, ..., dn] */
                                  llmk_tensor* out);       /* [d0, ..., dn] */

/* out[t, :] = table[ids[t], :]. An id outside [0, vocab) gives LLMK_STATUS_OUT_OF_RANGE. The table may be
 * quantized (its rows are dequantized). */
LLMK_API llmk_status llmk_embedding(llmk_context* context,
                                    const llmk_tensor* table,  /* [vocab, hidden] floating or quantized */
                                    const llmk_tensor* ids,    /* [tokens] i32 or i64 */
                                    llmk_tensor* out);         /* [tokens, hidden] floating */

/* ---------------------------------------------------------------------------------------------------- */
/* Matrix products                                                                                      */
/* ---------------------------------------------------------------------------------------------------- */

/* y = x . W^T (+ bias), the layout of torch.nn.Linear. x and y share a dtype; weight and bias may have
 * their own floating dtypes. Accumulates in f32.
 * The weight may be quantized, in_features a multiple of its block. Then x is first rounded to 8 bits
 * in groups of 32 (Q8_0, Q4_0) or 256 (Q4_K, Q6_K), as llama.cpp does for its integer dot products, and every
 * backend and flavour computes with that x: per group, in f32, d = max|x| / 127,
 * q = round-to-nearest-even(x * (1 / d)) (q = 0 when d = 0), x = d * q. */
LLMK_API llmk_status llmk_linear(llmk_context* context,
                                 const llmk_tensor* x,       /* [rows, in_features] */
                                 const llmk_tensor* weight,  /* [out_features, in_features] */
                                 const llmk_tensor* bias,    /* [out_features] or NULL */
                                 llmk_tensor* y);            /* [rows, out_features] */

/* ---------------------------------------------------------------------------------------------------- */
/* Normalization and activations                                                                        */
/* ---------------------------------------------------------------------------------------------------- */

typedef enum llmk_norm_flags {
    LLMK_NORM_FLAGS_NONE = 0,
    LLMK_NORM_FLAGS_GEMMA = 1 /* scale by (1 + weight), as Gemma does */
} llmk_norm_flags;

/* out = x / sqrt(mean(x^2) + eps) * weight. out may alias x exactly. eps > 0. */
LLMK_API llmk_status llmk_rms_norm(llmk_context* context,
                                   const llmk_tensor* x,       /* [rows, hidden] */
                                   const llmk_tensor* weight,  /* [hidden], any floating dtype */
                                   float eps,
                                   int32_t flags,              /* llmk_norm_flags */
                                   llmk_tensor* out);          /* [rows, hidden] */

/* residual += x (rounded to residual's dtype), then out = rms_norm(residual). out may alias x. */
LLMK_API llmk_status llmk_add_rms_norm(llmk_context* context,
                                       const llmk_tensor* x,         /* [rows, hidden] */
                                       llmk_tensor* residual,        /* [rows, hidden], updated in place */
                                       const llmk_tensor* weight,    /* [hidden] */
                                       float eps,
                                       int32_t flags,                /* llmk_norm_flags */
                                       llmk_tensor* out);            /* [rows, hidden] */

typedef enum llmk_activation {
    LLMK_ACTIVATION_SILU = 0,       /* SwiGLU: silu(gate) * up */
    LLMK_ACTIVATION_GELU_TANH = 1,  /* GeGLU: gelu_tanh(gate) * up */
    LLMK_ACTIVATION_COUNT
} llmk_activation;

/* out = act(gate_up[:, :d]) * gate_up[:, d:], as vLLM's silu_and_mul. */
LLMK_API llmk_status llmk_gated_activation(llmk_context* context,
                                           int32_t activation,        /* llmk_activation */
                                           const llmk_tensor* gate_up,/* [rows, 2 * d] */
                                           llmk_tensor* out);         /* [rows, d] */

/* out = act(gate) * up, gate and up as separate tensors. out may alias gate or up exactly. */
LLMK_API llmk_status llmk_gated_activation_split(llmk_context* context,
                                                 int32_t activation,  /* llmk_activation */
                                                 const llmk_tensor* gate, /* [rows, d] */
                                                 const llmk_tensor* up,   /* [rows, d] */
                                                 llmk_tensor* out);       /* [rows, d] */

/* ---------------------------------------------------------------------------------------------------- */
/* Rotary position embeddings                                                                           */
/* ---------------------------------------------------------------------------------------------------- */

typedef enum llmk_rope_style {
    LLMK_ROPE_STYLE_NEOX = 0, /* rotate halves: (x[i], x[i + rotary_dim/2]), as HF Llama */
    LLMK_ROPE_STYLE_GPTJ = 1, /* rotate pairs: (x[2i], x[2i + 1]) */
    LLMK_ROPE_STYLE_COUNT
} llmk_rope_style;

typedef enum llmk_rope_scaling {
    LLMK_ROPE_SCALING_DEFAULT = 0,
    LLMK_ROPE_SCALING_LINEAR = 1,   /* positions / factor */
    LLMK_ROPE_SCALING_DYNAMIC = 2,  /* dynamic NTK: base grows once seq_len > original_max_position */
    LLMK_ROPE_SCALING_LLAMA3 = 3,   /* Llama 3.1 wavelength-banded scaling */
    LLMK_ROPE_SCALING_YARN = 4,     /* YaRN ramp between interpolation and extrapolation */
    LLMK_ROPE_SCALING_COUNT
} llmk_rope_scaling;

/* The Hugging Face transformers rope parameters (ROPE_INIT_FUNCTIONS). Zero fields take the defaults
 * that transformers uses where a comment says "0 ->"; fields a scaling type does not use are ignored. */
typedef struct llmk_rope_params {
    int32_t style;                     /* llmk_rope_style */
    int32_t rotary_dim;                /* even, <= head_dim; 0 means head_dim */
    float theta;                       /* base, e.g. 10000 or 500000; > 0 */
    int32_t scaling;                   /* llmk_rope_scaling */
    float factor;                      /* linear, dynamic, llama3, yarn: > 0 (1 = no scaling) */
    int32_t original_max_position;     /* dynamic, llama3, yarn: original_max_position_embeddings */
    int32_t seq_len;                   /* dynamic: current sequence length the base is computed for */
    float low_freq_factor;             /* llama3; 0 -> 1 */
    float high_freq_factor;            /* llama3; 0 -> 4 */
    float beta_fast;                   /* yarn; 0 -> 32 */
    float beta_slow;                   /* yarn; 0 -> 1 */
    float mscale;                      /* yarn; 0 -> unused (DeepSeek's mscale) */
    float mscale_all_dim;              /* yarn; 0 -> unused */
    float attention_factor;            /* yarn cos/sin multiplier; 0 -> transformers' default */
    int32_t truncate;                  /* yarn: 1 rounds the correction range to integers, as transformers
                                          does by default; 0 for configs with "truncate": false. No default. */
} llmk_rope_params;

/* The inverse frequencies [rotary_dim / 2] and the cos/sin multiplier the parameters give, for a head of
 * head_dim (the dimension transformers scales with; rotary_dim if 0). Host memory; no context. */
LLMK_API llmk_status llmk_rope_frequencies(const llmk_rope_params* params,
                                           int32_t head_dim,
                                           float* out_inv_freq,          /* [rotary_dim / 2] */
                                           float* out_attention_factor); /* scalar */

/* Rotates the first rotary_dim features of every head of q and k, in place, at each token's position.
 * q and k may have different head counts and strides (slices of a fused qkv buffer are fine). */
LLMK_API llmk_status llmk_rope(llmk_context* context,
                               const llmk_tensor* positions,  /* [tokens] i32 or i64, >= 0 */
                               const llmk_rope_params* params,
                               llmk_tensor* q,                /* [tokens, heads, head_dim], in place */
                               llmk_tensor* k);               /* [tokens, kv_heads, head_dim], in place, or NULL */

/* ---------------------------------------------------------------------------------------------------- */
/* Attention                                                                                            */
/* ---------------------------------------------------------------------------------------------------- */

typedef enum llmk_attention_algorithm {
    LLMK_ATTENTION_ALGORITHM_AUTO = 0,  /* the backend's fastest */
    LLMK_ATTENTION_ALGORITHM_NAIVE = 1, /* scores materialized, plain softmax (CPU only) */
    LLMK_ATTENTION_ALGORITHM_FLASH = 2, /* tiled, online softmax */
    LLMK_ATTENTION_ALGORITHM_COUNT
} llmk_attention_algorithm;

/* Query i of q_len attends to key j of kv_len when, with the diagonal aligned bottom-right
 * (d = i + kv_len - q_len):  j <= d + window_right (causal forces window_right = 0)  and
 * j >= d - window_left. A negative window is unlimited. A row that sees no key outputs zeros and
 * log-sum-exp -inf. Scores: s = scale * q.k; with softcap c > 0, s = c * tanh(s / c); then with ALiBi,
 * as FlashAttention, s -= slope[h] * |d - j|. */
typedef struct llmk_attention_params {
    float scale;          /* 0 -> 1 / sqrt(head_dim) */
    int32_t causal;       /* 0 or 1 */
    int32_t window_left;  /* < 0: unlimited */
    int32_t window_right; /* < 0: unlimited */
    float softcap;        /* 0: off */
    int32_t algorithm;    /* llmk_attention_algorithm */
    int32_t num_splits;   /* KV-cache decode: split-KV partitions; 0 -> backend heuristic */
} llmk_attention_params;

/* out = softmax(mask(scores)) . v per batch and head; GQA/MQA when kv_heads divides heads
 * (query head h reads kv head h / (heads / kv_heads)). */
LLMK_API llmk_status llmk_attention(llmk_context* context,
                                    const llmk_tensor* q,             /* [batch, q_len, heads, head_dim] */
                                    const llmk_tensor* k,             /* [batch, kv_len, kv_heads, head_dim] */
                                    const llmk_tensor* v,             /* [batch, kv_len, kv_heads, head_dim] */
                                    const llmk_tensor* alibi_slopes,  /* [heads] f32, or NULL */
                                    const llmk_attention_params* params,
                                    llmk_tensor* out,                 /* [batch, q_len, heads, head_dim] */
                                    llmk_tensor* lse);                /* [batch, heads, q_len] f32 (natural log), or NULL */

/* KV-cache step, as flash_attn_with_kvcache: for each sequence b, writes k_new/v_new into the caches at
 * rows [cache_seqlens[b], cache_seqlens[b] + new_len), then attends q over the first
 * cache_seqlens[b] + new_len rows (q aligned bottom-right to them). cache_seqlens is not modified.
 * A sequence whose cache would overflow max_len gives LLMK_STATUS_OUT_OF_RANGE and nothing is written. */
LLMK_API llmk_status llmk_attention_kvcache(llmk_context* context,
                                            const llmk_tensor* q,             /* [batch, q_len, heads, head_dim] */
                                            llmk_tensor* k_cache,             /* [batch, max_len, kv_heads, head_dim], in place */
                                            llmk_tensor* v_cache,             /* [batch, max_len, kv_heads, head_dim], in place */
                                            const llmk_tensor* k_new,         /* [batch, new_len, kv_heads, head_dim], or NULL */
                                            const llmk_tensor* v_new,         /* [batch, new_len, kv_heads, head_dim], or NULL */
                                            const llmk_tensor* cache_seqlens, /* [batch] i32: rows already in the cache */
                                            const llmk_tensor* alibi_slopes,  /* [heads] f32, or NULL */
                                            const llmk_attention_params* params,
                                            llmk_tensor* out,                 /* [batch, q_len, heads, head_dim] */
                                            llmk_tensor* lse);                /* [batch, heads, q_len] f32, or NULL */

/* ---------------------------------------------------------------------------------------------------- */
/* Mixture of experts                                                                                   */
/* ---------------------------------------------------------------------------------------------------- */

typedef enum llmk_moe_scoring {
    LLMK_MOE_SCORING_SOFTMAX = 0, /* Mixtral, Qwen-MoE: softmax over all experts, then top-k */
    LLMK_MOE_SCORING_SIGMOID = 1, /* DeepSeek-V3: sigmoid per expert */
    LLMK_MOE_SCORING_COUNT
} llmk_moe_scoring;

typedef struct llmk_moe_router_params {
    int32_t top_k;                  /* experts per token, 1..experts */
    int32_t scoring;                /* llmk_moe_scoring */
    int32_t renormalize;            /* 1: weights /= their sum (norm_topk_prob) */
    int32_t num_groups;             /* grouped top-k (n_group); 0 or 1: no grouping */
    int32_t topk_groups;            /* groups kept (topk_group), 1..num_groups */
    float routed_scaling_factor;    /* weights *= it after renormalization; 0 -> 1 */
} llmk_moe_router_params;

/* Picks top_k experts per token. Selection uses score + correction_bias (DeepSeek-V3's
 * e_score_correction_bias); the weights are the scores without the bias. With groups, a group's score is
 * the sum of its two best biased scores, and only the topk_groups best groups are eligible. Ties go to
 * the lower expert (or group) id; ids are written best first. */
LLMK_API llmk_status llmk_moe_route(llmk_context* context,
                                    const llmk_tensor* logits,           /* [tokens, experts] floating */
                                    const llmk_tensor* correction_bias,  /* [experts] f32, or NULL */
                                    const llmk_moe_router_params* params,
                                    llmk_tensor* weights,                /* [tokens, top_k] f32 */
                                    llmk_tensor* expert_ids);            /* [tokens, top_k] i32 */

/* Gathers token rows into expert-contiguous order: the rows for expert e are
 * permuted[expert_offsets[e] .. expert_offsets[e + 1]), in ascending (token, slot) order.
 * source_rows[r] = token * top_k + slot of permuted row r; permuted_rows[token, slot] = r.
 * An expert id outside [0, num_experts) gives LLMK_STATUS_OUT_OF_RANGE. */
LLMK_API llmk_status llmk_moe_permute(llmk_context* context,
                                      const llmk_tensor* x,              /* [tokens, hidden] */
                                      const llmk_tensor* expert_ids,     /* [tokens, top_k] i32 */
                                      int32_t num_experts,
                                      llmk_tensor* permuted,             /* [tokens * top_k, hidden], x's dtype */
                                      llmk_tensor* expert_offsets,       /* [num_experts + 1] i32 */
                                      llmk_tensor* source_rows,          /* [tokens * top_k] i32 */
                                      llmk_tensor* permuted_rows);       /* [tokens, top_k] i32 */

/* out[t] = sum over slots s in order of weights[t, s] * expert_out[permuted_rows[t, s]]; accumulated in
 * f32, no atomics, so the bits do not depend on the thread count. */
LLMK_API llmk_status llmk_moe_unpermute(llmk_context* context,
                                        const llmk_tensor* expert_out,     /* [tokens * top_k, hidden] */
                                        const llmk_tensor* weights,        /* [tokens, top_k] f32 */
                                        const llmk_tensor* permuted_rows,  /* [tokens, top_k] i32 */
                                        llmk_tensor* out);                 /* [tokens, hidden] */

#ifdef __cplusplus
}
#endif

#endif /* LLMK_H */
