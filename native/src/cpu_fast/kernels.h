/* The fast CPU kernels of one flavour: included by avx512.c, avx2.c and portable.c, each compiled with its
 * ISA's flags, and exported as the table llmk_cpu_<flavour>_kernels (the reference fills every op the
 * flavour does not have). */
#include "simd.h"
#include "quant.h"
#include "cpu_threads.h"

#include <stdlib.h>

/* A fast context's scratch and pool serve one kernel call at a time: a second thread calling into the same
 * context meanwhile gets an error instead of sharing them. */
static llmk_status fast_enter(llmk_context* ctx, const char* fn) {
    if (__atomic_exchange_n(&ctx->cpu_busy, 1, __ATOMIC_ACQUIRE))
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: the context is running a kernel on another thread; a CPU context with fast kernels "
                         "takes one call at a time (use a context per thread)", fn);
    return LLMK_STATUS_OK;
}

static llmk_status fast_leave(llmk_context* ctx, llmk_status status) {
    __atomic_store_n(&ctx->cpu_busy, 0, __ATOMIC_RELEASE);
    return status;
}

/* How many output chunks a linear's work items take, *chunk outputs each (a multiple of unit): for a decode
 * step (one row block) as many as give every thread an equal share, since a short last chunk leaves a thread
 * idle (1.1x on a 2-thread decode of a 768-wide model). */
static int64_t fast_output_chunks(const llmk_context* ctx, int64_t outs, int64_t row_blocks, int64_t unit, int64_t* chunk) {
    int64_t chunks = (outs + *chunk - 1) / *chunk;
    const int64_t threads = ctx->num_threads;
    if (row_blocks == 1 && chunks % threads) {
        chunks += threads - chunks % threads;
        *chunk = ((outs + chunks - 1) / chunks + unit - 1) / unit * unit;
        chunks = (outs + *chunk - 1) / *chunk;
    }
    return chunks;
}

#include "linear_quantized.h"
#include "linear.h"
#include "attention.h"
#include "activation.h"
#include "rows.h"

#define LLMK_FAST_REFERENCE_ENTRY(name, params) .name = llmk_cpu_##name,
#define LLMK_FAST_TABLE(table)                                         \
    _Pragma("GCC diagnostic push")                                     \
    _Pragma("GCC diagnostic ignored \"-Woverride-init\"")              \
    const llmk_cpu_kernel_table table = {                              \
        LLMK_BACKEND_OPS(LLMK_FAST_REFERENCE_ENTRY)                    \
        .linear = fast_linear,                                         \
        .attention = fast_attention,                                   \
        .attention_kvcache = fast_attention_kvcache,                   \
        .gated_activation_split = fast_gated_activation_split,         \
        .rms_norm = fast_rms_norm,                                     \
        .add_rms_norm = fast_add_rms_norm,                             \
        .rope = fast_rope,                                             \
    };                                                                 \
    _Pragma("GCC diagnostic pop")
