/* The CUDA backend's context: device selection, stream, cuBLAS handle, workspace, memory operations,
 * and the device queries of the public API. */
#include "common.cuh"

#include <stdlib.h>

namespace llmk_cu {
namespace {

/* A kernel that does nothing: asking for its attributes tells whether this library carries code the
 * device can run. */
__global__ void probe_kernel() {}

constexpr uint64_t kAlignment = 256;                 /* llmk_malloc's promise; cudaMalloc gives >= 256 */
constexpr uint64_t kInitialWorkspace = 4ull << 20;   /* enough for the small ops; grown on demand */

/* The runtime this library was linked with (cudart is static, so it is the build's). */
int runtime_version() {
    int v = 0;
    if (cudaRuntimeGetVersion(&v) != cudaSuccess || v == 0)
        v = CUDART_VERSION;
    (void)cudaGetLastError();
    return v;
}

/* "12.4" from 12040. */
void format_version(int v, char* buffer, size_t capacity) {
    snprintf(buffer, capacity, "%d.%d", v / 1000, (v % 1000) / 10);
}

/* The architectures this library was compiled for, e.g. "sm_80 sm_90" (from nvcc's __CUDA_ARCH_LIST__,
 * "800,900"). */
void built_architectures(char* buffer, size_t capacity) {
#if defined(__CUDA_ARCH_LIST__)
#define LLMK_STR2(...) #__VA_ARGS__
#define LLMK_STR(...) LLMK_STR2(__VA_ARGS__)
    const char* list = LLMK_STR(__CUDA_ARCH_LIST__);
    size_t used = 0;
    buffer[0] = '\0';
    for (const char* p = list; *p && used < capacity;) {
        int arch = 0;
        while (*p >= '0' && *p <= '9')
            arch = arch * 10 + (*p++ - '0');
        int n = snprintf(buffer + used, capacity - used, used ? " sm_%d" : "sm_%d", arch / 10);
        used += n > 0 ? (size_t)n : 0;
        while (*p && (*p < '0' || *p > '9'))
            p++;
    }
#else
    snprintf(buffer, capacity, "the CMAKE_CUDA_ARCHITECTURES of its build");
#endif
}

/* Why CUDA cannot be used, from the error of the first runtime call, as UNAVAILABLE. */
llmk_status fail_unavailable(const char* llmk_fn, cudaError_t e) {
    (void)cudaGetLastError();
    int driver = 0, runtime = runtime_version();
    (void)cudaDriverGetVersion(&driver);
    char dv[16], rv[16];
    format_version(driver, dv, sizeof dv);
    format_version(runtime, rv, sizeof rv);
    switch (e) {
    case cudaErrorNoDevice:
        return llmk_fail(LLMK_STATUS_UNAVAILABLE, "%s: no CUDA-capable device is visible (driver %s, runtime %s; "
                         "check CUDA_VISIBLE_DEVICES)", llmk_fn, dv, rv);
    case cudaErrorInsufficientDriver:
        if (driver == 0)
            return llmk_fail(LLMK_STATUS_UNAVAILABLE,
                             "%s: no NVIDIA driver found (libcuda could not be loaded); CUDA runtime %s", llmk_fn, rv);
        return llmk_fail(LLMK_STATUS_UNAVAILABLE, "%s: driver too old (driver %s < runtime %s)", llmk_fn, dv, rv);
    default:
        return llmk_fail(status_of(e) == LLMK_STATUS_DEVICE_ERROR ? LLMK_STATUS_UNAVAILABLE : status_of(e),
                         "%s: CUDA cannot be used: %s: %s (driver %s, runtime %s)", llmk_fn, cudaGetErrorName(e),
                         cudaGetErrorString(e), dv, rv);
    }
}

/* Number of devices, or UNAVAILABLE with the reason. */
llmk_status device_count(const char* llmk_fn, int* count) {
    *count = 0;
    cudaError_t e = cudaGetDeviceCount(count);
    if (e != cudaSuccess) {
        *count = 0;
        return fail_unavailable(llmk_fn, e);
    }
    if (*count == 0)
        return fail_unavailable(llmk_fn, cudaErrorNoDevice);
    return LLMK_STATUS_OK;
}

/* Checks that device_index names a visible device. */
llmk_status check_ordinal(const char* llmk_fn, int32_t device_index) {
    int count = 0;
    LLMK_TRY(device_count(llmk_fn, &count));
    if (device_index < 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: device_index is %d; expected 0..%d", llmk_fn,
                         (int)device_index, count - 1);
    if (device_index >= count)
        return llmk_fail(LLMK_STATUS_UNAVAILABLE, "%s: there is no CUDA device %d (%d visible: 0..%d)", llmk_fn,
                         (int)device_index, count, count - 1);
    return LLMK_STATUS_OK;
}

/* ---- memory operations --------------------------------------------------------------------------------- */

llmk_status cuda_alloc(llmk_context* ctx, uint64_t bytes, void** out) {
    return guarded("llmk_malloc", ctx, [&]() -> llmk_status {
        const char* llmk_fn = "llmk_malloc";
        /* Zero bytes still gets a unique pointer; sizes are rounded so that views may read whole vectors. */
        uint64_t rounded = bytes == 0 ? kAlignment : (bytes + kAlignment - 1) / kAlignment * kAlignment;
        void* p = nullptr;
        cudaError_t e = cudaMalloc(&p, (size_t)rounded);
        if (e == cudaErrorMemoryAllocation) {
            (void)cudaGetLastError();
            size_t free_bytes = 0, total_bytes = 0;
            (void)cudaMemGetInfo(&free_bytes, &total_bytes);
            (void)cudaGetLastError();
            return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY,
                             "%s: could not allocate %llu bytes on CUDA device %d (%llu of %llu bytes free)", llmk_fn,
                             (unsigned long long)bytes, (int)ctx->device_index, (unsigned long long)free_bytes,
                             (unsigned long long)total_bytes);
        }
        LLMK_TRY(check_cuda(e, llmk_fn, "cudaMalloc"));
        if (reinterpret_cast<uintptr_t>(p) % kAlignment != 0) {
            (void)cudaFree(p);
            return llmk_fail(LLMK_STATUS_INTERNAL, "%s: cudaMalloc returned a pointer not aligned to %llu bytes",
                             llmk_fn, (unsigned long long)kAlignment);
        }
        *out = p;
        return LLMK_STATUS_OK;
    });
}

void cuda_release(llmk_context* ctx, void* pointer) {
    llmk_cuda_state* st = state_of(ctx);
    /* Work already queued may still read the buffer; errors here have no caller to go to. */
    if (cudaSetDevice(st->device) == cudaSuccess) {
        (void)cudaStreamSynchronize(st->stream);
        (void)cudaFree(pointer);
    }
    (void)cudaGetLastError();
}

llmk_status cuda_upload(llmk_context* ctx, void* dst, const void* src, uint64_t bytes) {
    return guarded("llmk_upload", ctx, [&]() -> llmk_status {
        const char* llmk_fn = "llmk_upload";
        cudaStream_t stream = state_of(ctx)->stream;
        LLMK_CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyHostToDevice, stream));
        LLMK_CUDA_CHECK(cudaStreamSynchronize(stream));
        return LLMK_STATUS_OK;
    });
}

llmk_status cuda_download(llmk_context* ctx, void* dst, const void* src, uint64_t bytes) {
    return guarded("llmk_download", ctx, [&]() -> llmk_status {
        const char* llmk_fn = "llmk_download";
        cudaStream_t stream = state_of(ctx)->stream;
        LLMK_CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost, stream));
        LLMK_CUDA_CHECK(cudaStreamSynchronize(stream));
        return LLMK_STATUS_OK;
    });
}

llmk_status cuda_copy(llmk_context* ctx, void* dst, const void* src, uint64_t bytes) {
    return guarded("llmk_copy", ctx, [&]() -> llmk_status {
        const char* llmk_fn = "llmk_copy";
        LLMK_CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice, state_of(ctx)->stream));
        return LLMK_STATUS_OK;
    });
}

llmk_status cuda_synchronize(llmk_context* ctx) {
    return guarded("llmk_context_synchronize", ctx, [&]() -> llmk_status {
        const char* llmk_fn = "llmk_context_synchronize";
        /* Faults of earlier kernels (illegal address, ...) surface here. */
        LLMK_CUDA_CHECK(cudaStreamSynchronize(state_of(ctx)->stream));
        return LLMK_STATUS_OK;
    });
}

/* Frees whatever of the state exists; used by destroy and by a failed init. */
void free_state(llmk_cuda_state* st) {
    if (!st)
        return;
    if (cudaSetDevice(st->device) == cudaSuccess) {
        if (st->stream)
            (void)cudaStreamSynchronize(st->stream);
        if (st->workspace)
            (void)cudaFree(st->workspace);
        if (st->check_slot)
            (void)cudaFree(st->check_slot);
        if (st->cublas)
            (void)cublasDestroy(st->cublas);
        if (st->stream)
            (void)cudaStreamDestroy(st->stream);
    }
    (void)cudaGetLastError();
    free(st);
}

void cuda_destroy(llmk_context* ctx) {
    free_state(state_of(ctx));
    ctx->backend = nullptr;
}

const llmk_memory_ops cuda_ops = {
    cuda_alloc, cuda_release, cuda_upload, cuda_download, cuda_copy, cuda_synchronize, cuda_destroy,
};

/* Creates the state of a context on device_index (already current). On failure *out owns what was made. */
llmk_status create_state(const char* llmk_fn, int32_t device_index, llmk_cuda_state* st) {
    st->device = device_index;

    /* A device this build has no code for (e.g. a Turing GPU for an sm_80/sm_90 build) is unusable. */
    cudaFuncAttributes attributes;
    cudaError_t e = cudaFuncGetAttributes(&attributes, probe_kernel);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        int major = 0, minor = 0;
        (void)cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_index);
        (void)cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_index);
        (void)cudaGetLastError();
        char built[96];
        built_architectures(built, sizeof built);
        if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction ||
            e == cudaErrorInvalidPtx || e == cudaErrorUnsupportedPtxVersion)
            return llmk_fail(LLMK_STATUS_UNAVAILABLE,
                             "%s: libllmk_cuda has no code for CUDA device %d (compute capability %d.%d); it was "
                             "built for %s: %s", llmk_fn, (int)device_index, major, minor, built,
                             cudaGetErrorName(e));
        return fail_unavailable(llmk_fn, e);
    }

    int value = 0;
    LLMK_CUDA_CHECK(cudaDeviceGetAttribute(&st->sm_count, cudaDevAttrMultiProcessorCount, device_index));
    LLMK_CUDA_CHECK(cudaDeviceGetAttribute(&st->cc_major, cudaDevAttrComputeCapabilityMajor, device_index));
    LLMK_CUDA_CHECK(cudaDeviceGetAttribute(&st->cc_minor, cudaDevAttrComputeCapabilityMinor, device_index));
    LLMK_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrL2CacheSize, device_index));
    st->l2_bytes = (size_t)value;
    LLMK_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index));
    st->max_shared_optin = (size_t)value;

    LLMK_CUDA_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking));
    LLMK_CUBLAS_CHECK(cublasCreate(&st->cublas));
    LLMK_CUBLAS_CHECK(cublasSetStream(st->cublas, st->stream));
    /* f16/bf16 GEMMs reduce in f32 too (split-K included), as the CPU reference accumulates in f32. */
    LLMK_CUBLAS_CHECK(cublasSetMathMode(
        st->cublas, (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));

    void* slot = nullptr;
    LLMK_CUDA_CHECK(cudaMalloc(&slot, kAlignment));
    st->check_slot = static_cast<unsigned long long*>(slot);
    LLMK_CUDA_CHECK(cudaMalloc(&st->workspace, kInitialWorkspace));
    st->workspace_bytes = kInitialWorkspace;
    return LLMK_STATUS_OK;
}

} // namespace

llmk_status ensure_workspace(llmk_context* ctx, uint64_t bytes, const char* llmk_fn) {
    llmk_cuda_state* st = state_of(ctx);
    if (bytes <= st->workspace_bytes)
        return LLMK_STATUS_OK;
    uint64_t grown = st->workspace_bytes * 2;
    uint64_t wanted = (bytes + (1ull << 20) - 1) & ~((1ull << 20) - 1);
    if (grown < wanted)
        grown = wanted;
    /* The old block may still be read by queued kernels. */
    LLMK_CUDA_CHECK(cudaStreamSynchronize(st->stream));
    LLMK_CUDA_CHECK(cudaFree(st->workspace));
    st->workspace = nullptr;
    st->workspace_bytes = 0;
    cudaError_t e = cudaMalloc(&st->workspace, (size_t)grown);
    if (e != cudaSuccess) {
        st->workspace = nullptr;
        (void)cudaGetLastError();
        return llmk_fail(status_of(e), "%s: could not allocate %llu bytes of scratch memory: %s: %s", llmk_fn,
                         (unsigned long long)grown, cudaGetErrorName(e), cudaGetErrorString(e));
    }
    st->workspace_bytes = (size_t)grown;
    return LLMK_STATUS_OK;
}

} // namespace llmk_cu

extern "C" llmk_status llmk_cuda_context_init(llmk_context* ctx, int32_t device_index) {
    const char* const llmk_fn = "llmk_context_create_cuda";
    try {
        LLMK_TRY(llmk_cu::check_ordinal(llmk_fn, device_index));
        LLMK_CUDA_CHECK(cudaSetDevice(device_index));
        llmk_cuda_state* st = static_cast<llmk_cuda_state*>(calloc(1, sizeof(llmk_cuda_state)));
        if (!st)
            return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "%s: out of host memory", llmk_fn);
        llmk_status status = llmk_cu::create_state(llmk_fn, device_index, st);
        if (status != LLMK_STATUS_OK) {
            llmk_cu::free_state(st);
            return status;
        }
        ctx->device_type = LLMK_DEVICE_TYPE_CUDA;
        ctx->device_index = device_index;
        ctx->num_threads = 1;
        ctx->ops = &llmk_cu::cuda_ops;
        ctx->backend = st;
        return LLMK_STATUS_OK;
    } catch (...) {
        return llmk_fail(LLMK_STATUS_INTERNAL, "%s: unexpected C++ exception", llmk_fn);
    }
}

extern "C" llmk_status llmk_cuda_device_count(int32_t* out_count) {
    const char* const llmk_fn = "llmk_cuda_device_count";
    try {
        if (!out_count)
            return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: out_count is NULL", llmk_fn);
        int count = 0;
        llmk_status status = llmk_cu::device_count(llmk_fn, &count);
        *out_count = count;
        return status;
    } catch (...) {
        return llmk_fail(LLMK_STATUS_INTERNAL, "%s: unexpected C++ exception", llmk_fn);
    }
}

extern "C" llmk_status llmk_cuda_device_describe(int32_t device_index, char* buffer, size_t capacity) {
    const char* const llmk_fn = "llmk_cuda_device_describe";
    try {
        if (!buffer && capacity)
            return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: buffer is NULL but capacity is %zu", llmk_fn, capacity);
        if (buffer && capacity)
            buffer[0] = '\0';
        LLMK_TRY(llmk_cu::check_ordinal(llmk_fn, device_index));
        cudaDeviceProp prop;
        LLMK_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_index));
        int driver = 0, runtime = llmk_cu::runtime_version();
        LLMK_CUDA_CHECK(cudaDriverGetVersion(&driver));
        char dv[16], rv[16];
        llmk_cu::format_version(driver, dv, sizeof dv);
        llmk_cu::format_version(runtime, rv, sizeof rv);
        if (buffer && capacity)
            snprintf(buffer, capacity,
                     "CUDA device %d: %s, compute capability %d.%d, %.1f GiB, %d SMs, L2 %d KiB, driver %s, "
                     "runtime %s",
                     (int)device_index, prop.name, prop.major, prop.minor,
                     (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), prop.multiProcessorCount,
                     prop.l2CacheSize / 1024, dv, rv);
        return LLMK_STATUS_OK;
    } catch (...) {
        return llmk_fail(LLMK_STATUS_INTERNAL, "%s: unexpected C++ exception", llmk_fn);
    }
}
