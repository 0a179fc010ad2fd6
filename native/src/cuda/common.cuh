/* The CUDA backend's internal helpers, shared by every .cu file of native/src/cuda.
 *
 * Layers, as ggml's norm.cu: kernel -> launcher (template on the dtype) -> entry point
 * (extern "C" llmk_cuda_<op>, arguments already validated by api/). Every entry point is written as
 *
 *     extern "C" llmk_status llmk_cuda_add(llmk_context* ctx, const llmk_tensor* a, ...) {
 *         LLMK_CUDA_ENTRY("llmk_add", ctx) {
 *             ...                                  // llmk_fn (the public name) and st (the state) in scope
 *             LLMK_CUDA_CHECK(cudaMemsetAsync(p, 0, n, st->stream));
 *             kernel<<<grid, block, 0, st->stream>>>(...);
 *             LLMK_CUDA_LAUNCH_CHECK();
 *             return LLMK_STATUS_OK;
 *         });
 *     }
 *
 * so that the right device is current, every CUDA error becomes a status with its text, and no C++
 * exception crosses the C ABI. Helpers that are not entry points take `const char* llmk_fn` so that the
 * same macros work in them. */
#ifndef LLMK_CUDA_COMMON_CUH
#define LLMK_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdio.h>

#include <exception>
#include <new>
#include <type_traits>

#include "internal.h"

/* Backend state of a CUDA context: (llmk_cuda_state*)ctx->backend. */
struct llmk_cuda_state {
    cudaStream_t stream;     /* non-blocking; every kernel, copy and cuBLAS call of the context goes here */
    cublasHandle_t cublas;   /* bound to stream */
    int sm_count;
    int cc_major, cc_minor;
    size_t l2_bytes;
    void* workspace;         /* scratch for one op at a time (see llmk_cu::Scratch); grows on demand */
    size_t workspace_bytes;
    /* Additions beyond the brief: */
    int device;              /* CUDA ordinal (== ctx->device_index) */
    size_t max_shared_optin; /* shared memory per block with cudaFuncAttributeMaxDynamicSharedMemorySize */
    unsigned long long* check_slot; /* one device word for data-dependent index checks (llmk_cu::check_indices) */
};

namespace llmk_cu {

/* ---- errors ---------------------------------------------------------------------------------------- */

/* Status for a CUDA runtime error: allocation failures are OUT_OF_MEMORY, a missing or unusable
 * driver/device UNAVAILABLE, everything else DEVICE_ERROR. */
inline llmk_status status_of(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return LLMK_STATUS_OK;
    case cudaErrorMemoryAllocation: return LLMK_STATUS_OUT_OF_MEMORY;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorStubLibrary:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorCallRequiresNewerDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoKernelImageForDevice: return LLMK_STATUS_UNAVAILABLE;
    default: return LLMK_STATUS_DEVICE_ERROR;
    }
}

/* Records "<fn>: <what>: <cudaErrorName>: <description>" and returns the status. Clears the runtime's
 * last-error slot so that a non-sticky error is not reported again by the next launch check. */
inline llmk_status fail_cuda(cudaError_t e, const char* fn, const char* what) {
    (void)cudaGetLastError();
    return llmk_fail(status_of(e), "%s: %s: %s: %s", fn, what, cudaGetErrorName(e), cudaGetErrorString(e));
}

inline llmk_status check_cuda(cudaError_t e, const char* fn, const char* what) {
    return e == cudaSuccess ? LLMK_STATUS_OK : fail_cuda(e, fn, what);
}

inline const char* cublas_status_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "unknown cuBLAS status";
    }
}

inline llmk_status check_cublas(cublasStatus_t s, const char* fn, const char* what) {
    if (s == CUBLAS_STATUS_SUCCESS)
        return LLMK_STATUS_OK;
    llmk_status status = s == CUBLAS_STATUS_ALLOC_FAILED      ? LLMK_STATUS_OUT_OF_MEMORY
                         : s == CUBLAS_STATUS_NOT_SUPPORTED   ? LLMK_STATUS_UNSUPPORTED
                         : s == CUBLAS_STATUS_ARCH_MISMATCH   ? LLMK_STATUS_UNSUPPORTED
                         : s == CUBLAS_STATUS_NOT_INITIALIZED ? LLMK_STATUS_UNAVAILABLE
                                                              : LLMK_STATUS_DEVICE_ERROR;
    return llmk_fail(status, "%s: %s: %s", fn, what, cublas_status_name(s));
}

} // namespace llmk_cu

/* Every CUDA runtime call: a failure returns from the enclosing function with the status and
 * "<llmk_fn>: <call>: <cudaErrorName>: <cudaGetErrorString>". Needs `const char* llmk_fn` in scope. */
#define LLMK_CUDA_CHECK(call) LLMK_TRY(::llmk_cu::check_cuda((call), llmk_fn, #call))
#define LLMK_CUBLAS_CHECK(call) LLMK_TRY(::llmk_cu::check_cublas((call), llmk_fn, #call))
/* After every <<<...>>>: a bad configuration (too many threads, too much shared memory) shows here;
 * faults inside the kernel show at the next synchronizing call. */
#define LLMK_CUDA_LAUNCH_CHECK() LLMK_TRY(::llmk_cu::check_cuda(cudaGetLastError(), llmk_fn, "kernel launch"))

namespace llmk_cu {

inline llmk_cuda_state* state_of(llmk_context* ctx) { return static_cast<llmk_cuda_state*>(ctx->backend); }

/* Makes ctx's device current on the calling thread (contexts may be used from any thread). */
inline llmk_status activate(llmk_context* ctx, const char* llmk_fn) {
    if (!ctx || ctx->device_type != LLMK_DEVICE_TYPE_CUDA || !ctx->backend)
        return llmk_fail(LLMK_STATUS_INTERNAL, "%s: not an initialized CUDA context", llmk_fn);
    LLMK_CUDA_CHECK(cudaSetDevice(state_of(ctx)->device));
    return LLMK_STATUS_OK;
}

/* Runs body() with the device current and every C++ exception turned into a status. */
template <class Body>
llmk_status guarded(const char* llmk_fn, llmk_context* ctx, Body&& body) noexcept {
    try {
        LLMK_TRY(activate(ctx, llmk_fn));
        return body();
    } catch (const std::bad_alloc&) {
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "%s: out of host memory", llmk_fn);
    } catch (const std::exception& e) {
        return llmk_fail(LLMK_STATUS_INTERNAL, "%s: unexpected C++ exception: %s", llmk_fn, e.what());
    } catch (...) {
        return llmk_fail(LLMK_STATUS_INTERNAL, "%s: unexpected C++ exception", llmk_fn);
    }
}

} // namespace llmk_cu

/* Opens the body of an extern "C" entry point (see the top of this file); close it with `});`: the
 * block becomes the body of a lambda run by llmk_cu::guarded. Defines llmk_fn (the public function name,
 * for messages) and st (the context's llmk_cuda_state*). */
#define LLMK_CUDA_ENTRY(name, ctx)                                                  \
    const char* const llmk_fn = (name);                                             \
    llmk_cuda_state* const st = ::llmk_cu::state_of(ctx);                           \
    (void)st;                                                                       \
    return ::llmk_cu::guarded(llmk_fn, (ctx), [&]() -> llmk_status

namespace llmk_cu {

/* ---- dtypes ---------------------------------------------------------------------------------------- */

/* Conversions: to f32 exactly, from f32 round-to-nearest-even (as llmk_store_float on the CPU). */
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

/* Rounds x to T and back: what storing in T and reloading gives (the CPU reference's rounding points). */
template <class T> __device__ __forceinline__ float round_to(float x) { return to_float(from_float<T>(x)); }

} // namespace llmk_cu

/* Runs the statements after T with `using T = float | __half | __nv_bfloat16` for a floating dtype.
 * Usage: LLMK_DISPATCH_FLOAT(x->dtype, T, return launch<T>(...););  Needs llmk_fn in scope. */
#define LLMK_DISPATCH_FLOAT(dtype, T, ...)                                                                \
    switch (dtype) {                                                                                      \
    case LLMK_DTYPE_F32: {                                                                                \
        using T = float;                                                                                  \
        __VA_ARGS__                                                                                       \
    } break;                                                                                              \
    case LLMK_DTYPE_F16: {                                                                                \
        using T = __half;                                                                                 \
        __VA_ARGS__                                                                                       \
    } break;                                                                                              \
    case LLMK_DTYPE_BF16: {                                                                               \
        using T = __nv_bfloat16;                                                                          \
        __VA_ARGS__                                                                                       \
    } break;                                                                                              \
    default:                                                                                              \
        return llmk_fail(LLMK_STATUS_INTERNAL, "%s: unexpected floating dtype %d", llmk_fn, (int)(dtype)); \
    }

/* The same for index dtypes: `using T = int32_t | int64_t`. */
#define LLMK_DISPATCH_INDEX(dtype, T, ...)                                                                \
    switch (dtype) {                                                                                      \
    case LLMK_DTYPE_I32: {                                                                                \
        using T = int32_t;                                                                                \
        __VA_ARGS__                                                                                       \
    } break;                                                                                              \
    case LLMK_DTYPE_I64: {                                                                                \
        using T = int64_t;                                                                                \
        __VA_ARGS__                                                                                       \
    } break;                                                                                              \
    default:                                                                                              \
        return llmk_fail(LLMK_STATUS_INTERNAL, "%s: unexpected index dtype %d", llmk_fn, (int)(dtype));   \
    }

namespace llmk_cu {

/* ---- 16-byte vectors --------------------------------------------------------------------------------- */

/* N = 16 / sizeof(T) elements moved as one 16-byte access. Use only where the address is 16-byte
 * aligned: check base pointers and row strides on the host with aligned16 / rows_aligned16 and keep a
 * scalar path for the rest. */
template <class T> struct alignas(16) Vec {
    static constexpr int N = 16 / (int)sizeof(T);
    T v[N];
};

template <class T> __device__ __forceinline__ Vec<T> load_vec(const T* p) {
    Vec<T> r;
    *reinterpret_cast<uint4*>(&r) = *reinterpret_cast<const uint4*>(p);
    return r;
}

template <class T> __device__ __forceinline__ void store_vec(T* p, const Vec<T>& r) {
    *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&r);
}

/* Vec loaded and widened to f32. */
template <class T> struct VecF {
    static constexpr int N = Vec<T>::N;
    float v[N];
};

template <class T> __device__ __forceinline__ VecF<T> load_vec_float(const T* p) {
    Vec<T> r = load_vec(p);
    VecF<T> f;
#pragma unroll
    for (int i = 0; i < Vec<T>::N; i++)
        f.v[i] = to_float(r.v[i]);
    return f;
}

template <class T> __device__ __forceinline__ void store_vec_float(T* p, const VecF<T>& f) {
    Vec<T> r;
#pragma unroll
    for (int i = 0; i < Vec<T>::N; i++)
        r.v[i] = from_float<T>(f.v[i]);
    store_vec(p, r);
}

/* N consecutive elements as f32: one 16-byte access when N * sizeof(T) == 16 (the caller has checked
 * alignment), else N scalar accesses. Lets one kernel body serve the vector and the scalar path. */
template <class T, int N> __device__ __forceinline__ void load_floats(const T* p, float (&out)[N]) {
    if constexpr (N * sizeof(T) == 16) {
        VecF<T> f = load_vec_float(p);
#pragma unroll
        for (int i = 0; i < N; i++)
            out[i] = f.v[i];
    } else {
#pragma unroll
        for (int i = 0; i < N; i++)
            out[i] = to_float(p[i]);
    }
}

template <class T, int N> __device__ __forceinline__ void store_floats(T* p, const float (&in)[N]) {
    if constexpr (N * sizeof(T) == 16) {
        VecF<T> f;
#pragma unroll
        for (int i = 0; i < N; i++)
            f.v[i] = in[i];
        store_vec_float(p, f);
    } else {
#pragma unroll
        for (int i = 0; i < N; i++)
            p[i] = from_float<T>(in[i]);
    }
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

/* True when every row of t (rows along dimension dim, the rest contiguous, row_length elements) starts
 * on a 16-byte boundary and row_length is a whole number of vectors: the vector path is then safe. */
inline bool rows_aligned16(const llmk_tensor* t, int32_t dim, int64_t row_length) {
    size_t size = llmk_dtype_size(t->dtype);
    if (size == 0 || !aligned16(t->data) || (row_length * (int64_t)size) % 16 != 0)
        return false;
    for (int32_t d = 0; d < t->rank - 1; d++)
        if (d <= dim && t->shape[d] > 1 && (t->strides[d] * (int64_t)size) % 16 != 0)
            return false;
    return true;
}

/* ---- strided indexing ------------------------------------------------------------------------------ */

/* A tensor's shape and strides by value, for kernels over arbitrary layouts. */
struct Layout {
    int32_t rank;
    int64_t shape[LLMK_MAX_RANK];
    int64_t strides[LLMK_MAX_RANK];

    /* Element offset of the linear (row-major) index i. */
    __host__ __device__ __forceinline__ int64_t offset(int64_t i) const {
        int64_t off = 0;
        /* Unrolled with constant indices, so shape and strides stay in registers (a loop bounded by rank
         * would index them dynamically, through local memory). */
#pragma unroll
        for (int32_t d = LLMK_MAX_RANK - 1; d > 0; d--) {
            if (d < rank) {
                const int64_t n = shape[d];
                off += (i % n) * strides[d];
                i /= n;
            }
        }
        return off + i * strides[0];
    }
};

inline Layout layout_of(const llmk_tensor* t) {
    Layout l{};
    l.rank = t->rank;
    for (int32_t d = 0; d < LLMK_MAX_RANK; d++) {
        l.shape[d] = d < t->rank ? t->shape[d] : 1;
        l.strides[d] = d < t->rank ? t->strides[d] : 0;
    }
    return l;
}

/* Row-major contiguous (size-1 dimensions may have any stride). */
inline bool is_contiguous(const llmk_tensor* t) {
    int64_t expected = 1;
    for (int32_t d = t->rank - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->strides[d] != expected)
            return false;
        expected *= t->shape[d];
    }
    return true;
}

/* ---- launch shapes and reductions ------------------------------------------------------------------- */

/* Blocks for a grid-stride loop over n items: enough to fill the device, never above the grid limit. */
inline unsigned grid_for(int64_t n, int block, const llmk_cuda_state* st, int blocks_per_sm = 32) {
    int64_t blocks = (n + block - 1) / block;
    int64_t cap = (int64_t)(st->sm_count > 0 ? st->sm_count : 1) * blocks_per_sm;
    if (blocks > cap)
        blocks = cap;
    return (unsigned)(blocks < 1 ? 1 : blocks);
}

/* Blocks for one-block-per-row kernels that loop `for (row = blockIdx.x; row < rows; row += gridDim.x)`. */
inline unsigned grid_rows(int64_t rows) {
    const int64_t max_grid = 0x7fffffff;
    return (unsigned)(rows < 1 ? 1 : (rows > max_grid ? max_grid : rows));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024), result in every thread. shared must hold 32
 * floats; the fixed tree order makes it deterministic. Contains __syncthreads: call from all threads. */
__device__ __forceinline__ float block_sum(float v, float* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* shared may still be read by a previous call */
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    v = lane < warps ? shared[lane] : 0.0f;
    return warp_sum(v);
}

/* ---- row gathers --------------------------------------------------------------------------------------- */

/* dst row r = src row (index[r * index_stride] / divisor), rows of row_bytes raw bytes copied in units of U
 * (uint4, uint2, unsigned, unsigned short: the widest that every address and stride allows). One block
 * per destination row. Used by embedding (index = ids) and moe_permute (index = source_rows, divisor =
 * top_k). */
template <class U, class I>
__global__ void gather_rows_kernel(const char* src, int64_t src_stride_bytes, char* dst, int64_t dst_stride_bytes,
                                   const I* index, int64_t index_stride, int64_t divisor, int64_t rows,
                                   int64_t units) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t from = (int64_t)index[r * index_stride] / divisor;
        const U* s = reinterpret_cast<const U*>(src + from * src_stride_bytes);
        U* d = reinterpret_cast<U*>(dst + r * dst_stride_bytes);
        for (int64_t u = threadIdx.x; u < units; u += blockDim.x)
            d[u] = s[u];
    }
}

/* Widest copy unit (16, 8, 4 or 2 bytes) dividing every value. */
inline int copy_unit(uintptr_t a, uintptr_t b, uint64_t c, uint64_t d, uint64_t e) {
    uint64_t all = (uint64_t)a | (uint64_t)b | c | d | e;
    return (all & 15u) == 0 ? 16 : (all & 7u) == 0 ? 8 : (all & 3u) == 0 ? 4 : 2;
}

/* Launches gather_rows_kernel for rows of row_bytes (a multiple of 2) with strides in bytes. index is
 * i32 or i64 device memory. */
template <class I>
llmk_status gather_rows(llmk_cuda_state* st, const char* llmk_fn, const void* src, int64_t src_stride_bytes,
                        void* dst, int64_t dst_stride_bytes, const I* index, int64_t index_stride, int64_t divisor,
                        int64_t rows, int64_t row_bytes) {
    if (rows == 0 || row_bytes == 0)
        return LLMK_STATUS_OK;
    const int unit = copy_unit(reinterpret_cast<uintptr_t>(src), reinterpret_cast<uintptr_t>(dst),
                               (uint64_t)src_stride_bytes, (uint64_t)dst_stride_bytes, (uint64_t)row_bytes);
    const int64_t units = row_bytes / unit;
    int block = (int)((units + 31) / 32 * 32);
    block = block < 32 ? 32 : (block > 256 ? 256 : block);
    const char* s = static_cast<const char*>(src);
    char* d = static_cast<char*>(dst);
    switch (unit) {
    case 16:
        gather_rows_kernel<uint4, I><<<grid_rows(rows), block, 0, st->stream>>>(
            s, src_stride_bytes, d, dst_stride_bytes, index, index_stride, divisor, rows, units);
        break;
    case 8:
        gather_rows_kernel<uint2, I><<<grid_rows(rows), block, 0, st->stream>>>(
            s, src_stride_bytes, d, dst_stride_bytes, index, index_stride, divisor, rows, units);
        break;
    case 4:
        gather_rows_kernel<unsigned, I><<<grid_rows(rows), block, 0, st->stream>>>(
            s, src_stride_bytes, d, dst_stride_bytes, index, index_stride, divisor, rows, units);
        break;
    default:
        gather_rows_kernel<unsigned short, I><<<grid_rows(rows), block, 0, st->stream>>>(
            s, src_stride_bytes, d, dst_stride_bytes, index, index_stride, divisor, rows, units);
        break;
    }
    LLMK_CUDA_LAUNCH_CHECK();
    return LLMK_STATUS_OK;
}

/* ---- scratch memory ---------------------------------------------------------------------------------- */

/* Device scratch carved from the context's workspace for the duration of one op (ops on a context are
 * ordered on its stream, so the next op may reuse it). Plan, then commit:
 *     Scratch s; float* w; int* flags;
 *     s.add(&w, n); s.add(&flags, 2);
 *     LLMK_TRY(s.commit(ctx, llmk_fn));   // grows the workspace when needed, then sets w and flags
 */
class Scratch {
public:
    template <class T> void add(T** out, int64_t count) {
        if (entries_ == kMaxEntries || count < 0) {
            bad_ = true;
            return;
        }
        uint64_t bytes = (uint64_t)count * sizeof(T);
        if (count != 0 && bytes / sizeof(T) != (uint64_t)count)
            bad_ = true;
        out_[entries_] = reinterpret_cast<void**>(out);
        offset_[entries_] = total_;
        entries_++;
        uint64_t rounded = (bytes + 255u) & ~uint64_t(255);
        if (rounded < bytes || total_ + rounded < total_)
            bad_ = true;
        total_ += rounded;
    }
    llmk_status commit(llmk_context* ctx, const char* llmk_fn);

private:
    static constexpr int kMaxEntries = 16;
    void** out_[kMaxEntries];
    uint64_t offset_[kMaxEntries];
    int entries_ = 0;
    uint64_t total_ = 0;
    bool bad_ = false;
};

/* Grows the workspace of ctx to at least bytes (defined in context.cu). Waits for queued work first,
 * since the old block may still be in use. */
llmk_status ensure_workspace(llmk_context* ctx, uint64_t bytes, const char* llmk_fn);

inline llmk_status Scratch::commit(llmk_context* ctx, const char* llmk_fn) {
    if (bad_)
        return llmk_fail(LLMK_STATUS_OVERFLOW, "%s: scratch memory request does not fit 64 bits", llmk_fn);
    LLMK_TRY(ensure_workspace(ctx, total_, llmk_fn));
    char* base = static_cast<char*>(state_of(ctx)->workspace);
    for (int i = 0; i < entries_; i++)
        *out_[i] = base + offset_[i];
    return LLMK_STATUS_OK;
}

/* ---- shared ops ------------------------------------------------------------------------------------------- */

/* out = src converted to out's dtype, any layouts (what llmk_convert does; elementwise.cu). For use
 * inside other ops, with their llmk_fn in messages. */
llmk_status convert(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* src, llmk_tensor* out);

/* ---- data-dependent index checks -------------------------------------------------------------------- */

/* Finds the first element (row-major order) of an index tensor outside [lo, hi): atomicMin of its
 * linear index. The result does not depend on scheduling. */
template <class I>
__global__ void find_out_of_range_kernel(const I* data, Layout layout, int64_t n, int64_t lo, int64_t hi,
                                         unsigned long long* first_bad) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t v = (int64_t)data[layout.offset(i)];
        if (v < lo || v >= hi)
            atomicMin(first_bad, (unsigned long long)i);
    }
}

/* Checks that every element of the index tensor t (i32 or i64, any layout) lies in [lo, hi); otherwise
 * LLMK_STATUS_OUT_OF_RANGE with "<fn>: <name>[i, j] is v; expected lo..hi-1<what>" (hi = INT64_MAX:
 * "expected >= lo"). One stream
 * synchronization; run it before the op writes anything. what is appended to the message (e.g.
 * " (vocab - 1)"); may be "". */
inline llmk_status check_indices(llmk_context* ctx, const char* llmk_fn, const char* name, const llmk_tensor* t,
                                 int64_t lo, int64_t hi, const char* what) {
    llmk_cuda_state* st = state_of(ctx);
    int64_t n = llmk_numel(t);
    if (n == 0)
        return LLMK_STATUS_OK;
    const unsigned long long none = ~0ull;
    LLMK_CUDA_CHECK(cudaMemsetAsync(st->check_slot, 0xff, sizeof(unsigned long long), st->stream));
    const int block = 256;
    Layout layout = layout_of(t);
    LLMK_DISPATCH_INDEX(t->dtype, I,
        find_out_of_range_kernel<I><<<grid_for(n, block, st), block, 0, st->stream>>>(
            static_cast<const I*>(t->data), layout, n, lo, hi, st->check_slot);
        LLMK_CUDA_LAUNCH_CHECK();)
    unsigned long long first = none;
    LLMK_CUDA_CHECK(cudaMemcpyAsync(&first, st->check_slot, sizeof first, cudaMemcpyDeviceToHost, st->stream));
    LLMK_CUDA_CHECK(cudaStreamSynchronize(st->stream));
    if (first == none)
        return LLMK_STATUS_OK;
    /* Fetch the offending value for the message. */
    size_t size = llmk_dtype_size(t->dtype);
    int64_t value = 0;
    const char* at = static_cast<const char*>(t->data) + layout.offset((int64_t)first) * (int64_t)size;
    if (size == 4) {
        int32_t v32 = 0;
        LLMK_CUDA_CHECK(cudaMemcpy(&v32, at, 4, cudaMemcpyDeviceToHost));
        value = v32;
    } else {
        LLMK_CUDA_CHECK(cudaMemcpy(&value, at, 8, cudaMemcpyDeviceToHost));
    }
    char index[96];
    int64_t rem = (int64_t)first;
    int64_t idx[LLMK_MAX_RANK] = {0, 0, 0, 0};
    for (int32_t d = t->rank - 1; d >= 0; d--) {
        idx[d] = rem % t->shape[d];
        rem /= t->shape[d];
    }
    switch (t->rank) {
    case 1: snprintf(index, sizeof index, "[%lld]", (long long)idx[0]); break;
    case 2: snprintf(index, sizeof index, "[%lld, %lld]", (long long)idx[0], (long long)idx[1]); break;
    case 3:
        snprintf(index, sizeof index, "[%lld, %lld, %lld]", (long long)idx[0], (long long)idx[1], (long long)idx[2]);
        break;
    default:
        snprintf(index, sizeof index, "[%lld, %lld, %lld, %lld]", (long long)idx[0], (long long)idx[1],
                 (long long)idx[2], (long long)idx[3]);
        break;
    }
    if (hi == INT64_MAX)
        return llmk_fail(LLMK_STATUS_OUT_OF_RANGE, "%s: %s%s is %lld; expected >= %lld%s", llmk_fn, name, index,
                         (long long)value, (long long)lo, what ? what : "");
    return llmk_fail(LLMK_STATUS_OUT_OF_RANGE, "%s: %s%s is %lld; expected %lld..%lld%s", llmk_fn, name, index,
                     (long long)value, (long long)lo, (long long)hi - 1, what ? what : "");
}

} // namespace llmk_cu

#endif /* LLMK_CUDA_COMMON_CUH */
