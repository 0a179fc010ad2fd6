/* Contexts and the memory API, with allocation tracking so that a foreign or double free is refused. */
#include "internal.h"

#include <stdlib.h>

static llmk_status track(llmk_context* ctx, void* pointer) {
    if (ctx->allocation_count == ctx->allocation_capacity) {
        size_t capacity = ctx->allocation_capacity ? ctx->allocation_capacity * 2 : 64;
        void** grown = (void**)realloc(ctx->allocations, capacity * sizeof *grown);
        if (!grown)
            return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_malloc: out of host memory for bookkeeping");
        ctx->allocations = grown;
        ctx->allocation_capacity = capacity;
    }
    ctx->allocations[ctx->allocation_count++] = pointer;
    return LLMK_STATUS_OK;
}

/* Removes pointer from the live set; false if it is not there. */
static bool untrack(llmk_context* ctx, void* pointer) {
    for (size_t i = ctx->allocation_count; i-- > 0;) {
        if (ctx->allocations[i] == pointer) {
            ctx->allocations[i] = ctx->allocations[--ctx->allocation_count];
            return true;
        }
    }
    return false;
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
    for (size_t i = 0; i < ctx->allocation_count; i++)
        ctx->ops->release(ctx, ctx->allocations[i]);
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
    llmk_status status = track(ctx, pointer);
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
    if (!untrack(ctx, pointer))
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "llmk_free: %p was not allocated by this context, or was already freed", pointer);
    ctx->ops->release(ctx, pointer);
    return LLMK_STATUS_OK;
}

static llmk_status check_copy(const llmk_context* ctx, const char* fn, void* dst, const void* src, uint64_t bytes) {
    LLMK_TRY(llmk_check_context(ctx, fn));
    if (bytes > (uint64_t)INT64_MAX)
        return llmk_fail(LLMK_STATUS_OVERFLOW, "%s: %llu bytes is not a valid size", fn, (unsigned long long)bytes);
    if (bytes && (!dst || !src))
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: %s is NULL", fn, dst ? "source" : "destination");
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
