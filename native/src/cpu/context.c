/* The CPU backend's memory: aligned host allocations, copies are memcpy. */
#include "internal.h"

#include <stdlib.h>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(_WIN32)
#include <malloc.h>
#else
#include <unistd.h>
#endif

enum { ALIGNMENT = 256 };

static llmk_status cpu_alloc(llmk_context* ctx, uint64_t bytes, void** out) {
    (void)ctx;
    size_t rounded = (size_t)((bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT);
    if (rounded == 0)
        rounded = ALIGNMENT;
#if defined(_WIN32)
    *out = _aligned_malloc(rounded, ALIGNMENT);
#else
    *out = aligned_alloc(ALIGNMENT, rounded);
#endif
    if (!*out)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_malloc: could not allocate %llu bytes of host memory",
                         (unsigned long long)bytes);
    return LLMK_STATUS_OK;
}

static void cpu_release(llmk_context* ctx, void* pointer) {
    (void)ctx;
#if defined(_WIN32)
    _aligned_free(pointer);
#else
    free(pointer);
#endif
}

static llmk_status cpu_copy(llmk_context* ctx, void* dst, const void* src, uint64_t bytes) {
    (void)ctx;
    memmove(dst, src, (size_t)bytes);
    return LLMK_STATUS_OK;
}

static llmk_status cpu_synchronize(llmk_context* ctx) {
    (void)ctx;
    return LLMK_STATUS_OK;
}

static const llmk_memory_ops cpu_ops = {
    cpu_alloc, cpu_release, cpu_copy, cpu_copy, cpu_copy, cpu_synchronize, NULL,
};

llmk_status llmk_cpu_context_init(llmk_context* ctx, int32_t num_threads) {
    if (num_threads <= 0) {
#if defined(_OPENMP)
        num_threads = omp_get_num_procs();
#elif defined(_SC_NPROCESSORS_ONLN)
        num_threads = (int32_t)sysconf(_SC_NPROCESSORS_ONLN);
#endif
        if (num_threads <= 0)
            num_threads = 1;
    }
    ctx->num_threads = num_threads;
    ctx->device_type = LLMK_DEVICE_TYPE_CPU;
    ctx->device_index = 0;
    ctx->ops = &cpu_ops;
    return LLMK_STATUS_OK;
}
