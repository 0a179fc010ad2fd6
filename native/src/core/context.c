/* Contexts and the memory API: the set of live contexts, and each context's buffers with their sizes, so that
 * a second destroy, a foreign or double free, a view or copy past a buffer's end and use after free are refused. */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>

/* ---- the live contexts ----------------------------------------------------------------------------
 * A set of the contexts created and not yet destroyed, so that a second destroy, or a call on a destroyed
 * context, is refused by comparing pointers only: a destroyed context's memory is never read (a magic field
 * inside it would be read after free, undefined behaviour that ASan reports). One lock guards the set and
 * every context's buffer lists: a .NET finalizer may free a buffer while another thread runs a kernel. The
 * sections are a few comparisons long, so a spin lock serves. */
static atomic_flag registry_lock = ATOMIC_FLAG_INIT;
static llmk_context** live_contexts;
static size_t live_count, live_capacity;

static void lock(void) {
    while (atomic_flag_test_and_set_explicit(&registry_lock, memory_order_acquire)) {
    }
}

static void unlock(void) { atomic_flag_clear_explicit(&registry_lock, memory_order_release); }

/* Index of ctx in live_contexts, or live_count; call locked. */
static size_t find_live(const llmk_context* ctx) {
    size_t i = 0;
    while (i < live_count && live_contexts[i] != ctx)
        i++;
    return i;
}

static llmk_status register_context(llmk_context* ctx) {
    llmk_status status = LLMK_STATUS_OK;
    lock();
    if (live_count == live_capacity) {
        size_t capacity = live_capacity ? live_capacity * 2 : 16;
        llmk_context** grown = (llmk_context**)realloc(live_contexts, capacity * sizeof *grown);
        if (grown) {
            live_contexts = grown;
            live_capacity = capacity;
        } else
            status = llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_context_create: out of host memory for bookkeeping");
    }
    if (status == LLMK_STATUS_OK)
        live_contexts[live_count++] = ctx;
    unlock();
    return status;
}

/* Removes ctx from the live set; false when it is not there. */
static bool unregister_context(const llmk_context* ctx) {
    lock();
    size_t i = find_live(ctx);
    bool found = i < live_count;
    if (found)
        live_contexts[i] = live_contexts[--live_count];
    unlock();
    return found;
}

llmk_status llmk_check_context(const llmk_context* ctx, const char* fn) {
    if (!ctx)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: context is NULL", fn);
    lock();
    bool live = find_live(ctx) < live_count;
    unlock();
    if (!live)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: context %p is not a live context (already destroyed, or not made by llmk_context_create)",
                         fn, (const void*)ctx);
    return LLMK_STATUS_OK;
}

/* ---- buffers --------------------------------------------------------------------------------------- */

static bool contains(const llmk_allocation* a, uintptr_t p) {
    /* A zero-byte buffer still owns its one address; begin 0 is an empty quarantine slot. */
    return a->begin && p >= a->begin && p - a->begin < (a->bytes ? a->bytes : 1);
}

/* The buffer among list[0..n) that contains p, or NULL. */
static const llmk_allocation* find_buffer(const llmk_allocation* list, size_t n, uintptr_t p) {
    for (size_t i = 0; i < n; i++)
        if (contains(&list[i], p))
            return &list[i];
    return NULL;
}

llmk_status llmk_check_memory(const llmk_context* ctx, const char* fn, const char* name, const void* pointer,
                              uint64_t bytes) {
    const uintptr_t p = (uintptr_t)pointer;
    lock();
    const llmk_allocation* live = find_buffer(ctx->allocations, ctx->allocation_count, p);
    const llmk_allocation buffer = live ? *live : (llmk_allocation){0, 0};
    const bool freed = !live && find_buffer(ctx->freed, LLMK_QUARANTINE_BUFFERS, p) != NULL;
    unlock();
    if (freed)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: %s (%p) points into a buffer that llmk_free has freed", fn,
                         name, pointer);
    if (live && bytes > buffer.bytes - (p - buffer.begin))
        return llmk_fail(LLMK_STATUS_OUT_OF_RANGE,
                         "%s: %s spans %llu bytes from offset %llu of its llmk_malloc buffer of %llu bytes at %p, "
                         "past its end",
                         fn, name, (unsigned long long)bytes, (unsigned long long)(p - buffer.begin),
                         (unsigned long long)buffer.bytes, (void*)buffer.begin);
    return LLMK_STATUS_OK;
}

static llmk_status track(llmk_context* ctx, void* pointer, uint64_t bytes) {
    llmk_status status = LLMK_STATUS_OK;
    lock();
    if (ctx->allocation_count == ctx->allocation_capacity) {
        size_t capacity = ctx->allocation_capacity ? ctx->allocation_capacity * 2 : 64;
        llmk_allocation* grown = (llmk_allocation*)realloc(ctx->allocations, capacity * sizeof *grown);
        if (grown) {
            ctx->allocations = grown;
            ctx->allocation_capacity = capacity;
        } else
            status = llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_malloc: out of host memory for bookkeeping");
    }
    if (status == LLMK_STATUS_OK)
        ctx->allocations[ctx->allocation_count++] = (llmk_allocation){(uintptr_t)pointer, bytes};
    unlock();
    return status;
}

/* Moves the live buffer that starts at pointer into the quarantine; false when there is none. What that pushes
 * out (the oldest buffers, to keep within the ring and LLMK_QUARANTINE_BYTES; the buffer itself when it alone
 * is larger) goes to release[0..*released), for the caller to hand back to the backend outside the lock. */
static bool untrack(llmk_context* ctx, void* pointer, llmk_allocation release[LLMK_QUARANTINE_BUFFERS + 1],
                    size_t* released) {
    *released = 0;
    lock();
    size_t i = 0;
    while (i < ctx->allocation_count && ctx->allocations[i].begin != (uintptr_t)pointer)
        i++;
    const bool found = i < ctx->allocation_count;
    if (found) {
        const llmk_allocation freed = ctx->allocations[i];
        ctx->allocations[i] = ctx->allocations[--ctx->allocation_count];
        if (freed.bytes > LLMK_QUARANTINE_BYTES) {
            release[(*released)++] = freed;
        } else {
            /* The slot at freed_next is the oldest; later slots follow in age order. */
            for (size_t k = 0; k < LLMK_QUARANTINE_BUFFERS; k++) {
                if (k > 0 && ctx->freed_bytes + freed.bytes <= LLMK_QUARANTINE_BYTES)
                    break;
                llmk_allocation* old = &ctx->freed[(ctx->freed_next + k) % LLMK_QUARANTINE_BUFFERS];
                if (old->begin) {
                    ctx->freed_bytes -= old->bytes;
                    release[(*released)++] = *old;
                    *old = (llmk_allocation){0, 0};
                }
            }
            ctx->freed[ctx->freed_next] = freed;
            ctx->freed_bytes += freed.bytes;
            ctx->freed_next = (ctx->freed_next + 1) % LLMK_QUARANTINE_BUFFERS;
        }
    }
    unlock();
    return found;
}

static llmk_status create(int32_t device_type, llmk_context** out_context, llmk_context** ctx) {
    if (!out_context)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "llmk_context_create: out_context is NULL");
    *out_context = NULL;
    *ctx = (llmk_context*)calloc(1, sizeof(llmk_context));
    if (!*ctx)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_context_create: out of host memory");
    (*ctx)->device_type = device_type;
    return LLMK_STATUS_OK;
}

llmk_status llmk_context_create_cpu(int32_t num_threads, llmk_context** out_context) {
    return llmk_context_create_cpu_kernels(num_threads, LLMK_CPU_KERNELS_REFERENCE, out_context);
}

llmk_status llmk_context_create_cpu_kernels(int32_t num_threads, int32_t kernels, llmk_context** out_context) {
    llmk_context* ctx;
    LLMK_TRY(create(LLMK_DEVICE_TYPE_CPU, out_context, &ctx));
    llmk_status status = llmk_cpu_context_init(ctx, num_threads, kernels);
    if (status == LLMK_STATUS_OK)
        status = register_context(ctx);
    if (status != LLMK_STATUS_OK) {
        free(ctx);
        return status;
    }
    *out_context = ctx;
    return LLMK_STATUS_OK;
}

llmk_status llmk_context_create_cuda(int32_t device_index, llmk_context** out_context) {
#ifdef LLMK_WITH_CUDA
    llmk_context* ctx;
    LLMK_TRY(create(LLMK_DEVICE_TYPE_CUDA, out_context, &ctx));
    ctx->device_index = device_index;
    llmk_status status = llmk_cuda_context_init(ctx, device_index);
    if (status == LLMK_STATUS_OK) {
        status = register_context(ctx);
        if (status != LLMK_STATUS_OK)
            ctx->ops->destroy(ctx);
    }
    if (status != LLMK_STATUS_OK) {
        free(ctx);
        return status;
    }
    *out_context = ctx;
    return LLMK_STATUS_OK;
#else
    (void)device_index;
    if (out_context)
        *out_context = NULL;
    return llmk_fail(LLMK_STATUS_UNAVAILABLE,
                     "llmk_context_create_cuda: this build of libllmk has no CUDA backend (no usable CUDA toolkit "
                     "when it was built; the CUDA build is libllmk_cuda)");
#endif
}

llmk_status llmk_context_destroy(llmk_context* ctx) {
    if (!ctx)
        return LLMK_STATUS_OK;
    if (!unregister_context(ctx))
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "llmk_context_destroy: context %p is not a live context (already destroyed, or not made by "
                         "llmk_context_create); nothing was freed",
                         (void*)ctx);
    for (size_t i = 0; i < ctx->allocation_count; i++)
        ctx->ops->release(ctx, (void*)ctx->allocations[i].begin);
    for (size_t i = 0; i < LLMK_QUARANTINE_BUFFERS; i++)
        if (ctx->freed[i].begin)
            ctx->ops->release(ctx, (void*)ctx->freed[i].begin);
    free(ctx->allocations);
    if (ctx->ops->destroy)
        ctx->ops->destroy(ctx);
    free(ctx);
    return LLMK_STATUS_OK;
}

llmk_status llmk_context_device(const llmk_context* ctx, int32_t* out_device_type, int32_t* out_device_index) {
    LLMK_TRY(llmk_check_context(ctx, "llmk_context_device"));
    if (!out_device_type || !out_device_index)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "llmk_context_device: an output pointer is NULL");
    *out_device_type = ctx->device_type;
    *out_device_index = ctx->device_index;
    return LLMK_STATUS_OK;
}

llmk_status llmk_context_cpu_kernels(const llmk_context* ctx, int32_t* out_kernels, int32_t* out_num_threads) {
    LLMK_TRY(llmk_check_context(ctx, "llmk_context_cpu_kernels"));
    if (!out_kernels || !out_num_threads)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "llmk_context_cpu_kernels: an output pointer is NULL");
    if (ctx->device_type != LLMK_DEVICE_TYPE_CPU)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "llmk_context_cpu_kernels: the context is not a CPU context");
    *out_kernels = ctx->cpu_kernels;
    *out_num_threads = ctx->num_threads;
    return LLMK_STATUS_OK;
}

llmk_status llmk_context_synchronize(llmk_context* ctx) {
    LLMK_TRY(llmk_check_context(ctx, "llmk_context_synchronize"));
    return ctx->ops->synchronize(ctx);
}

#ifndef LLMK_WITH_CUDA
llmk_status llmk_cuda_device_count(int32_t* out_count) {
    if (out_count)
        *out_count = 0;
    return llmk_fail(LLMK_STATUS_UNAVAILABLE, "llmk_cuda_device_count: this build of libllmk has no CUDA backend");
}

llmk_status llmk_cuda_device_describe(int32_t device_index, char* buffer, size_t capacity) {
    (void)device_index;
    if (buffer && capacity)
        buffer[0] = '\0';
    return llmk_fail(LLMK_STATUS_UNAVAILABLE, "llmk_cuda_device_describe: this build of libllmk has no CUDA backend");
}
#endif

llmk_status llmk_malloc(llmk_context* ctx, uint64_t bytes, void** out_pointer) {
    LLMK_TRY(llmk_check_context(ctx, "llmk_malloc"));
    if (!out_pointer)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "llmk_malloc: out_pointer is NULL");
    *out_pointer = NULL;
    if (bytes > (uint64_t)INT64_MAX - 4096)
        return llmk_fail(LLMK_STATUS_OVERFLOW, "llmk_malloc: %llu bytes is not a valid size",
                         (unsigned long long)bytes);
    void* pointer = NULL;
    LLMK_TRY(ctx->ops->alloc(ctx, bytes, &pointer));
    llmk_status status = track(ctx, pointer, bytes);
    if (status != LLMK_STATUS_OK) {
        ctx->ops->release(ctx, pointer);
        return status;
    }
    *out_pointer = pointer;
    return LLMK_STATUS_OK;
}

llmk_status llmk_free(llmk_context* ctx, void* pointer) {
    LLMK_TRY(llmk_check_context(ctx, "llmk_free"));
    if (!pointer)
        return LLMK_STATUS_OK;
    llmk_allocation release[LLMK_QUARANTINE_BUFFERS + 1];
    size_t released;
    if (!untrack(ctx, pointer, release, &released))
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "llmk_free: %p was not allocated by this context, or was already freed", pointer);
    for (size_t i = 0; i < released; i++)
        ctx->ops->release(ctx, (void*)release[i].begin);
    return LLMK_STATUS_OK;
}

static llmk_status check_copy(const llmk_context* ctx, const char* fn, void* dst, const void* src, uint64_t bytes) {
    LLMK_TRY(llmk_check_context(ctx, fn));
    if (bytes > (uint64_t)INT64_MAX)
        return llmk_fail(LLMK_STATUS_OVERFLOW, "%s: %llu bytes is not a valid size", fn, (unsigned long long)bytes);
    if (bytes && (!dst || !src))
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: %s is NULL", fn, dst ? "source" : "destination");
    if (bytes) {
        /* Host pointers of a CUDA context are never in its (device) buffer list, so both sides are checked the
         * same way on every backend. */
        LLMK_TRY(llmk_check_memory(ctx, fn, "destination", dst, bytes));
        LLMK_TRY(llmk_check_memory(ctx, fn, "source", src, bytes));
    }
    return LLMK_STATUS_OK;
}

llmk_status llmk_upload(llmk_context* ctx, void* device_dst, const void* host_src, uint64_t bytes) {
    LLMK_TRY(check_copy(ctx, "llmk_upload", device_dst, host_src, bytes));
    return bytes ? ctx->ops->upload(ctx, device_dst, host_src, bytes) : LLMK_STATUS_OK;
}

llmk_status llmk_download(llmk_context* ctx, void* host_dst, const void* device_src, uint64_t bytes) {
    LLMK_TRY(check_copy(ctx, "llmk_download", host_dst, device_src, bytes));
    return bytes ? ctx->ops->download(ctx, host_dst, device_src, bytes) : LLMK_STATUS_OK;
}

llmk_status llmk_copy(llmk_context* ctx, void* device_dst, const void* device_src, uint64_t bytes) {
    LLMK_TRY(check_copy(ctx, "llmk_copy", device_dst, device_src, bytes));
    return bytes ? ctx->ops->copy(ctx, device_dst, device_src, bytes) : LLMK_STATUS_OK;
}
