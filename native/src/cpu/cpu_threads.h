/* Threads of the CPU backend: OpenMP helpers for the reference (they compile to the serial case without
 * OpenMP), and the thread pool of the fast kernels. */
#ifndef LLMK_CPU_THREADS_H
#define LLMK_CPU_THREADS_H

#include "internal.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

/* Index of the calling thread inside a parallel region, to pick its slice of a scratch buffer. */
static inline int llmk_cpu_thread_index(void) {
#if defined(_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The thread team for an OpenMP loop of the reference over work elements (the bits do not depend on it):
 * one thread when the work is too small to pay for waking the others (a decode step's norms and ropes), and
 * always one in a fast context, whose threads are its pool's: OpenMP's workers spinning after a region
 * would take the cores the pool's workers need (these loops are a few percent of a prefill). */
static inline int llmk_cpu_team(const llmk_context* ctx, int64_t work) {
    return work < (1 << 15) || ctx->cpu_kernels != LLMK_CPU_KERNELS_REFERENCE ? 1 : ctx->num_threads;
}

/* Runs fn(arg, item, thread) for every item in [0, items) on the context's thread pool (thread_pool.c),
 * the caller included; thread < ctx->num_threads indexes per-thread scratch. Returns when all are done. */
typedef void (*llmk_parallel_fn)(void* arg, int64_t item, int thread);
void llmk_cpu_parallel(llmk_context* ctx, int64_t items, llmk_parallel_fn fn, void* arg);

#endif /* LLMK_CPU_THREADS_H */
