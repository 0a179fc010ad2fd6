/* OpenMP helpers for the CPU backend files of the MoE, linear and elementwise families; they compile to
 * the serial case without OpenMP. */
#ifndef LLMK_CPU_THREADS_H
#define LLMK_CPU_THREADS_H

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

#endif /* LLMK_CPU_THREADS_H */
