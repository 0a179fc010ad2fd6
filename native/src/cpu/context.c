/* The CPU backend's memory (aligned host allocations, copies are memcpy), its threads and its kernel tables. */
#if defined(__linux__)
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif
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
#if defined(__linux__)
#include <sched.h>
#include <stdio.h>
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

static void cpu_destroy(llmk_context* ctx) {
    llmk_thread_pool_destroy(ctx->pool);
    ctx->pool = NULL;
    free(ctx->cpu_scratch);
    ctx->cpu_scratch = NULL;
}

static const llmk_memory_ops cpu_ops = {
    cpu_alloc, cpu_release, cpu_copy, cpu_copy, cpu_copy, cpu_synchronize, cpu_destroy,
};

#define LLMK_REFERENCE_ENTRY(name, params) llmk_cpu_##name,
const llmk_cpu_kernel_table llmk_cpu_reference_kernels = {LLMK_BACKEND_OPS(LLMK_REFERENCE_ENTRY)};

/* Physical cores among the CPUs this process may run on (Linux: distinct (package, core) pairs of the
 * affinity mask, from sysfs); 0 when unknown. Hyperthread siblings share a core's FMA units and its load
 * ports, so a second thread per core only adds contention to memory-bound decode. */
static int32_t physical_cores(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    enum { MAX_CORES = 1024 };
    static const char* const topology = "/sys/devices/system/cpu/cpu%d/topology/%s";
    long seen[MAX_CORES];
    int32_t count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set))
            continue;
        long ids[2] = {-1, -1};
        const char* names[2] = {"physical_package_id", "core_id"};
        for (int i = 0; i < 2; i++) {
            char path[128];
            snprintf(path, sizeof path, topology, cpu, names[i]);
            FILE* f = fopen(path, "r");
            if (!f)
                return CPU_COUNT(&set); /* no topology: count the CPUs */
            if (fscanf(f, "%ld", &ids[i]) != 1)
                ids[i] = -1;
            fclose(f);
        }
        long key = ids[0] * 65536 + ids[1];
        bool known = false;
        for (int32_t i = 0; i < count && !known; i++)
            known = seen[i] == key;
        if (!known && count < MAX_CORES)
            seen[count++] = key;
    }
    return count;
#else
    return 0;
#endif
}

/* Logical CPUs online; 1 when unknown. */
static int32_t logical_cpus(void) {
    int32_t n = 0;
#if defined(_OPENMP)
    n = omp_get_num_procs();
#elif defined(_SC_NPROCESSORS_ONLN)
    n = (int32_t)sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n > 0 ? n : 1;
}

enum { THREADS_PER_CPU = 8, MIN_THREAD_LIMIT = 64 };

llmk_status llmk_cpu_context_init(llmk_context* ctx, int32_t num_threads, int32_t kernels) {
    const llmk_cpu_kernel_table* table = NULL;
    int32_t resolved = kernels;
    LLMK_TRY(llmk_cpu_kernels_table("llmk_context_create_cpu_kernels", kernels, &table, &resolved));
    /* More threads than this only oversubscribes the cores (and each costs a stack and scratch). */
    const int32_t cpus = logical_cpus();
    const int32_t limit = cpus * THREADS_PER_CPU > MIN_THREAD_LIMIT ? cpus * THREADS_PER_CPU : MIN_THREAD_LIMIT;
    if (num_threads > limit)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "llmk_context_create_cpu: num_threads = %d is more than %d (%d x the %d logical CPUs, at "
                         "least %d); 0 picks one per physical core",
                         (int)num_threads, (int)limit, THREADS_PER_CPU, (int)cpus, MIN_THREAD_LIMIT);
    if (num_threads <= 0) {
        num_threads = physical_cores();
        if (num_threads <= 0)
            num_threads = cpus;
    }
    ctx->num_threads = num_threads;
    ctx->device_type = LLMK_DEVICE_TYPE_CPU;
    ctx->device_index = 0;
    ctx->cpu_kernels = resolved;
    ctx->cpu = table;
    ctx->ops = &cpu_ops;
    return LLMK_STATUS_OK;
}

void* llmk_cpu_scratch(llmk_context* ctx, size_t bytes) {
    if (bytes > ctx->cpu_scratch_bytes) {
        free(ctx->cpu_scratch);
        ctx->cpu_scratch_bytes = 0;
        ctx->cpu_scratch = malloc(bytes);
        if (!ctx->cpu_scratch)
            return NULL;
        ctx->cpu_scratch_bytes = bytes;
    }
    return ctx->cpu_scratch;
}
