/* The fast CPU kernels' thread pool: one per context, started on first use, reused by every kernel.
 *
 * Why not OpenMP's parallel for: its region ends in a barrier that waits for every thread of the team, so
 * when another process holds one core, each region waits for that thread's next time slice (milliseconds)
 * and a decode step has dozens of regions. Here a job is done when its items are done, not when every
 * thread has shown up: the caller claims items too, and a worker that wakes late finds nothing left. Only
 * an item already claimed by a preempted thread is waited for, and items are small.
 *
 * A job is published under the mutex with a new epoch; state packs (epoch << 32 | next item), so a worker
 * claims item i of its epoch with one compare-and-swap and can never claim an item of a later job. Idle
 * workers spin briefly (jobs of one decode step follow each other within microseconds), then yield, then
 * sleep on the condition variable. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime and CLOCK_MONOTONIC under -std=c11 */
#endif
#include "cpu_threads.h"
#include "internal.h"

#include <stdlib.h>

#if defined(_WIN32)
/* Windows builds have no OpenMP and no pool: jobs run on the caller. */
struct llmk_thread_pool {
    int unused;
};

void llmk_cpu_parallel(llmk_context* ctx, int64_t items, llmk_parallel_fn fn, void* arg) {
    (void)ctx;
    for (int64_t i = 0; i < items; i++)
        fn(arg, i, 0);
}

void llmk_thread_pool_destroy(llmk_thread_pool* pool) { (void)pool; }

#else
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ volatile("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

enum {
    SPIN_NS = 50 * 1000,      /* pause-spin this long after a job before yielding the core */
    YIELD_NS = 2 * 1000 * 1000 /* then sched_yield this long before sleeping */
};

struct llmk_thread_pool {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    _Atomic uint64_t state; /* epoch << 32 | next unclaimed item */
    _Atomic int64_t done;   /* items of the current job finished */
    _Atomic int stop;
    /* the current job, written under the mutex */
    llmk_parallel_fn fn;
    void* arg;
    int64_t items;
    uint32_t epoch;
    int started;
    pthread_t* threads;
};

typedef struct worker_start {
    llmk_thread_pool* pool;
    int index;
} worker_start;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Claims and runs items of epoch until none are left. */
static void run_items(llmk_thread_pool* pool, uint32_t epoch, int64_t items, llmk_parallel_fn fn, void* arg,
                      int thread) {
    uint64_t s = atomic_load_explicit(&pool->state, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(s >> 32) != epoch || (int64_t)(uint32_t)s >= items)
            return;
        if (!atomic_compare_exchange_weak_explicit(&pool->state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* s now holds the current state */
        fn(arg, (int64_t)(uint32_t)s, thread);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
        s = atomic_load_explicit(&pool->state, memory_order_acquire);
    }
}

static void* worker_main(void* start_arg) {
    worker_start start = *(worker_start*)start_arg;
    free(start_arg);
    llmk_thread_pool* pool = start.pool;
    uint32_t seen = 0;
    for (;;) {
        /* Wait for an epoch other than the last one seen: spin, yield, then sleep. */
        const int64_t began = now_ns();
        for (int64_t spins = 0;; spins++) {
            const uint64_t s = atomic_load_explicit(&pool->state, memory_order_acquire);
            if ((uint32_t)(s >> 32) != seen || atomic_load_explicit(&pool->stop, memory_order_acquire))
                break;
            const int64_t waited = (spins & 63) == 0 ? now_ns() - began : 0;
            if (waited > YIELD_NS) {
                pthread_mutex_lock(&pool->mutex);
                while (pool->epoch == seen && !atomic_load(&pool->stop))
                    pthread_cond_wait(&pool->wake, &pool->mutex);
                pthread_mutex_unlock(&pool->mutex);
            } else if (waited > SPIN_NS) {
                sched_yield();
            } else {
                CPU_RELAX();
            }
        }
        if (atomic_load_explicit(&pool->stop, memory_order_acquire))
            return NULL;
        pthread_mutex_lock(&pool->mutex);
        const uint32_t epoch = pool->epoch;
        const int64_t items = pool->items;
        llmk_parallel_fn fn = pool->fn;
        void* arg = pool->arg;
        pthread_mutex_unlock(&pool->mutex);
        seen = epoch;
        run_items(pool, epoch, items, fn, arg, start.index);
    }
}

/* Starts the pool's workers; false (and no pool) when threads cannot be had, so the caller runs jobs alone. */
static llmk_thread_pool* pool_create(int workers) {
    llmk_thread_pool* pool = (llmk_thread_pool*)calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->threads = (pthread_t*)calloc((size_t)workers, sizeof(pthread_t));
    if (!pool->threads || pthread_mutex_init(&pool->mutex, NULL) != 0) {
        free(pool->threads);
        free(pool);
        return NULL;
    }
    pthread_cond_init(&pool->wake, NULL);
    for (int i = 0; i < workers; i++) {
        worker_start* start = (worker_start*)malloc(sizeof *start);
        if (!start)
            break;
        start->pool = pool;
        start->index = i + 1;
        if (pthread_create(&pool->threads[i], NULL, worker_main, start) != 0) {
            free(start);
            break;
        }
        pool->started++;
    }
    return pool;
}

void llmk_thread_pool_destroy(llmk_thread_pool* pool) {
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 0; i < pool->started; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->threads);
    free(pool);
}

void llmk_cpu_parallel(llmk_context* ctx, int64_t items, llmk_parallel_fn fn, void* arg) {
    if (items > 1 && ctx->num_threads > 1 && !ctx->pool)
        ctx->pool = pool_create(ctx->num_threads - 1);
    llmk_thread_pool* pool = ctx->pool;
    if (items <= 1 || !pool || pool->started == 0 || items > UINT32_MAX) {
        for (int64_t i = 0; i < items; i++)
            fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&pool->mutex);
    pool->fn = fn;
    pool->arg = arg;
    pool->items = items;
    pool->epoch++;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->state, (uint64_t)pool->epoch << 32, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    const uint32_t epoch = pool->epoch;
    pthread_mutex_unlock(&pool->mutex);
    run_items(pool, epoch, items, fn, arg, 0);
    /* Items claimed by workers may still run; a preempted one gets the core back sooner if we yield. */
    for (int64_t spins = 0; atomic_load_explicit(&pool->done, memory_order_acquire) < items; spins++) {
        if (spins < 4096)
            CPU_RELAX();
        else
            sched_yield();
    }
}
#endif
