// The host side of the emulated CUDA backend (it replaces native/src/cuda/context.cu): a CUDA context whose
// memory is host memory, and the CUDA runtime and cuBLAS calls the launchers make (cublasGemmEx written from
// the cuBLAS documentation, column major).
#include "emu_runtime.h"

#include "common.cuh"

#include <cstdlib>

namespace {

llmk_status host_alloc(llmk_context*, uint64_t bytes, void** out) {
    size_t rounded = (size_t)((bytes + 255) / 256 * 256);
    *out = aligned_alloc(256, rounded ? rounded : 256);
    return *out ? LLMK_STATUS_OK : llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_malloc: emulated device out of memory");
}
void host_release(llmk_context*, void* p) { free(p); }
llmk_status host_copy(llmk_context*, void* dst, const void* src, uint64_t bytes) {
    memmove(dst, src, (size_t)bytes);
    return LLMK_STATUS_OK;
}
llmk_status host_sync(llmk_context*) { return LLMK_STATUS_OK; }
void host_destroy(llmk_context* ctx) {
    auto* st = static_cast<llmk_cuda_state*>(ctx->backend);
    if (st) {
        free(st->workspace);
        free(st->check_slot);
        free(st);
    }
}
const llmk_memory_ops ops = {host_alloc, host_release, host_copy, host_copy, host_copy, host_sync, host_destroy};

float load(const void* p, cudaDataType_t t, int64_t i) {
    switch (t) {
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: fprintf(stderr, "emu: cublasGemmEx: unexpected data type %d\n", (int)t); exit(5);
    }
}
void store(void* p, cudaDataType_t t, int64_t i, float v) {
    switch (t) {
    case CUDA_R_32F: static_cast<float*>(p)[i] = v; break;
    case CUDA_R_16F: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
    default: fprintf(stderr, "emu: cublasGemmEx: unexpected data type %d\n", (int)t); exit(5);
    }
}

} // namespace

namespace llmk_cu {
llmk_status ensure_workspace(llmk_context* ctx, uint64_t bytes, const char* llmk_fn) {
    llmk_cuda_state* st = state_of(ctx);
    if (bytes <= st->workspace_bytes)
        return LLMK_STATUS_OK;
    free(st->workspace);
    size_t rounded = (size_t)((bytes + 255) / 256 * 256);
    st->workspace = aligned_alloc(256, rounded);
    if (!st->workspace) {
        st->workspace_bytes = 0;
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "%s: emulated workspace", llmk_fn);
    }
    memset(st->workspace, 0xff, rounded); /* scratch starts as garbage */
    st->workspace_bytes = rounded;
    return LLMK_STATUS_OK;
}
} // namespace llmk_cu

extern "C" {

llmk_status llmk_cuda_context_init(llmk_context* ctx, int32_t device_index) {
    if (device_index != 0)
        return llmk_fail(LLMK_STATUS_UNAVAILABLE, "llmk_context_create_cuda: the emulator has device 0 only");
    auto* st = static_cast<llmk_cuda_state*>(calloc(1, sizeof(llmk_cuda_state)));
    st->sm_count = 4; /* small grids: grid-stride loops do several rounds */
    st->cc_major = 9;
    st->l2_bytes = 1 << 20;
    st->max_shared_optin = 227 * 1024;
    st->check_slot = static_cast<unsigned long long*>(aligned_alloc(256, 256));
    ctx->device_type = LLMK_DEVICE_TYPE_CUDA;
    ctx->device_index = 0;
    ctx->num_threads = 1;
    ctx->ops = &ops;
    ctx->backend = st;
    return LLMK_STATUS_OK;
}

llmk_status llmk_cuda_device_count(int32_t* out_count) {
    *out_count = 1;
    return LLMK_STATUS_OK;
}

llmk_status llmk_cuda_device_describe(int32_t, char* buffer, size_t capacity) {
    snprintf(buffer, capacity, "emulated CUDA device (host fibers)");
    return LLMK_STATUS_OK;
}

// ---- CUDA runtime ----
cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu::last_error;
    emu::last_error = cudaSuccess;
    return e;
}
const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated"; }
const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
    memset(p, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
    memcpy(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
    memcpy(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* entry, enum cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value > 227 * 1024)
            return emu::last_error = cudaErrorInvalidValue;
        emu::max_dynamic_shared[entry] = value;
    }
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
    *e = nullptr;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
    *ms = 1.0f;
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }

// ---- cuBLAS ----
cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
    *h = nullptr;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

/* C = alpha op(A) op(B) + beta C, column major: op(A) is m x k, op(B) k x n, C m x n (cuBLAS docs). */
cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
    if (compute != CUBLAS_COMPUTE_32F || m < 0 || n < 0 || k < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < (transa == CUBLAS_OP_N ? m : k) || ldb < (transb == CUBLAS_OP_N ? k : n) || ldc < m || lda < 1 ||
        ldb < 1 || ldc < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float sum = 0.0f;
            for (int p = 0; p < k; p++) {
                float x = load(A, Atype, transa == CUBLAS_OP_N ? i + (int64_t)p * lda : p + (int64_t)i * lda);
                float y = load(B, Btype, transb == CUBLAS_OP_N ? p + (int64_t)j * ldb : j + (int64_t)p * ldb);
                sum += x * y;
            }
            float v = a * sum;
            if (b != 0.0f)
                v += b * load(C, Ctype, i + (int64_t)j * ldc);
            store(C, Ctype, i + (int64_t)j * ldc, v);
        }
    return CUBLAS_STATUS_SUCCESS;
}

} // extern "C"
