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

/* A linear's work items: row blocks of x times chunks of outputs. */
typedef struct fast_grid {
    int64_t rows, outs, row_block, row_blocks, chunk, chunks;
} fast_grid;

/* rows x outs in row blocks of row_block and output chunks sized so that every thread gets several items
 * (eight), clamped to [lo, hi] and rounded down to a multiple of unit (lo >= unit). A decode step (one row
 * block) takes as many chunks as give every thread an equal share, since a short last chunk leaves a thread
 * idle (1.1x on a 2-thread decode of a 768-wide model). */
static fast_grid fast_grid_of(const llmk_context* ctx, int64_t rows, int64_t outs, int64_t row_block, int64_t lo,
                              int64_t hi, int64_t unit) {
    const int64_t threads = ctx->num_threads, row_blocks = (rows + row_block - 1) / row_block;
    int64_t chunk = outs * row_blocks / (threads * 8);
    chunk = (chunk < lo ? lo : chunk > hi ? hi : chunk) / unit * unit;
    fast_grid g = {rows, outs, row_block, row_blocks, chunk, (outs + chunk - 1) / chunk};
    if (row_blocks == 1 && g.chunks % threads) {
        const int64_t chunks = g.chunks + threads - g.chunks % threads;
        g.chunk = ((outs + chunks - 1) / chunks + unit - 1) / unit * unit;
        g.chunks = (outs + g.chunk - 1) / g.chunk;
    }
    return g;
}

/* Item `item`'s rows [r0, r1) and outputs [o0, o1). */
static void fast_grid_item(const fast_grid* g, int64_t item, int64_t* r0, int64_t* r1, int64_t* o0, int64_t* o1) {
    const int64_t rb = item / g->chunks, c = item % g->chunks;
    *r0 = rb * g->row_block;
    *r1 = *r0 + g->row_block < g->rows ? *r0 + g->row_block : g->rows;
    *o0 = c * g->chunk;
    *o1 = *o0 + g->chunk < g->outs ? *o0 + g->chunk : g->outs;
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
