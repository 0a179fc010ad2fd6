/* Elementwise and data movement: add, convert, embedding. Views of any rank and strides; contiguous
 * views take a path without index arithmetic, and same-dtype aligned ones a 16-byte vector path. Each
 * element is read and written by one thread, so exact aliases (out == a) are safe. */
#include "common.cuh"
#include "quant.cuh"

namespace llmk_cu {
namespace {

constexpr int kBlock = 256;

/* ---- add ------------------------------------------------------------------------------------------------- */

template <class TA, class TB, class TO, bool Contiguous>
__global__ void add_kernel(const TA* a, Layout la, const TB* b, Layout lb, TO* out, Layout lo, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ia = Contiguous ? i : la.offset(i), ib = Contiguous ? i : lb.offset(i);
        const int64_t io = Contiguous ? i : lo.offset(i);
        out[io] = from_float<TO>(to_float(a[ia]) + to_float(b[ib]));
    }
}

/* All three contiguous, one dtype, 16-byte aligned: n / N vectors (the tail by add_kernel). */
template <class T>
__global__ void add_vec_kernel(const T* a, const T* b, T* out, int64_t vectors) {
    constexpr int N = Vec<T>::N;
    for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < vectors;
         v += (int64_t)gridDim.x * blockDim.x) {
        float x[N], y[N];
        load_floats<T, N>(a + v * N, x);
        load_floats<T, N>(b + v * N, y);
#pragma unroll
        for (int i = 0; i < N; i++)
            x[i] += y[i];
        store_floats<T, N>(out + v * N, x);
    }
}

template <class TA, class TB, class TO>
llmk_status launch_add(llmk_cuda_state* st, const char* llmk_fn, const llmk_tensor* a, const llmk_tensor* b,
                       llmk_tensor* out) {
    int64_t n = llmk_numel(out);
    const TA* pa = static_cast<const TA*>(a->data);
    const TB* pb = static_cast<const TB*>(b->data);
    TO* po = static_cast<TO*>(out->data);
    const bool contiguous = is_contiguous(a) && is_contiguous(b) && is_contiguous(out);
    if constexpr (std::is_same<TA, TB>::value && std::is_same<TA, TO>::value) {
        if (contiguous && aligned16(pa) && aligned16(pb) && aligned16(po)) {
            constexpr int N = Vec<TA>::N;
            const int64_t vectors = n / N;
            if (vectors > 0) {
                add_vec_kernel<TA><<<grid_for(vectors, kBlock, st), kBlock, 0, st->stream>>>(pa, pb, po, vectors);
                LLMK_CUDA_LAUNCH_CHECK();
            }
            const int64_t done = vectors * N;
            if (done == n)
                return LLMK_STATUS_OK;
            pa += done;
            pb += done;
            po += done;
            n -= done;
        }
    }
    const Layout la = layout_of(a), lb = layout_of(b), lo = layout_of(out);
    if (contiguous)
        add_kernel<TA, TB, TO, true><<<grid_for(n, kBlock, st), kBlock, 0, st->stream>>>(pa, la, pb, lb, po, lo, n);
    else
        add_kernel<TA, TB, TO, false><<<grid_for(n, kBlock, st), kBlock, 0, st->stream>>>(pa, la, pb, lb, po, lo, n);
    LLMK_CUDA_LAUNCH_CHECK();
    return LLMK_STATUS_OK;
}

/* ---- convert --------------------------------------------------------------------------------------------- */

/* Floating -> floating through f32 (exact widening, one rounding). */
template <class TS, class TO, bool Contiguous>
__global__ void convert_float_kernel(const TS* src, Layout ls, TO* out, Layout lo, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[Contiguous ? i : lo.offset(i)] = from_float<TO>(to_float(src[Contiguous ? i : ls.offset(i)]));
}

/* Same dtype (bits kept, NaN payloads included) or integer -> integer (i64 -> i32 after the range check). */
template <class US, class UO, bool Contiguous>
__global__ void convert_bits_kernel(const US* src, Layout ls, UO* out, Layout lo, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[Contiguous ? i : lo.offset(i)] = (UO)src[Contiguous ? i : ls.offset(i)];
}

template <class TS, class TO>
llmk_status launch_convert(llmk_cuda_state* st, const char* llmk_fn, bool floating, const llmk_tensor* src,
                           llmk_tensor* out) {
    const int64_t n = llmk_numel(out);
    const Layout ls = layout_of(src), lo = layout_of(out);
    const bool contiguous = is_contiguous(src) && is_contiguous(out);
    const unsigned grid = grid_for(n, kBlock, st);
    const TS* s = static_cast<const TS*>(src->data);
    TO* o = static_cast<TO*>(out->data);
    if (floating) {
        if constexpr (!std::is_integral<TS>::value && !std::is_integral<TO>::value) {
            if (contiguous)
                convert_float_kernel<TS, TO, true><<<grid, kBlock, 0, st->stream>>>(s, ls, o, lo, n);
            else
                convert_float_kernel<TS, TO, false><<<grid, kBlock, 0, st->stream>>>(s, ls, o, lo, n);
        }
    } else {
        if constexpr (std::is_integral<TS>::value && std::is_integral<TO>::value) {
            if (contiguous)
                convert_bits_kernel<TS, TO, true><<<grid, kBlock, 0, st->stream>>>(s, ls, o, lo, n);
            else
                convert_bits_kernel<TS, TO, false><<<grid, kBlock, 0, st->stream>>>(s, ls, o, lo, n);
        }
    }
    LLMK_CUDA_LAUNCH_CHECK();
    return LLMK_STATUS_OK;
}

/* Unsigned integer of a dtype's size, for bit copies. */
template <int Size> struct bits;
template <> struct bits<2> { using type = unsigned short; };
template <> struct bits<4> { using type = unsigned; };
template <> struct bits<8> { using type = unsigned long long; };

} // namespace

llmk_status convert(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* src, llmk_tensor* out) {
    llmk_cuda_state* st = state_of(ctx);
    if (llmk_is_quantized(src->dtype) || llmk_is_quantized(out->dtype)) {
        /* Dequantizing matrices (rows of blocks into contiguous rows) runs here; quantizing runs on the CPU. */
        if (llmk_is_quantized(out->dtype) || src->rank != 2 || out->strides[1] != 1)
            return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: on CUDA a quantized src converts to a floating [rows, cols] "
                             "out with contiguous rows; quantize on the CPU", llmk_fn);
        return dequantize_rows<int32_t>(st, llmk_fn, src, nullptr, 0, out, src->shape[0]);
    }
    if (src->dtype == out->dtype) {
        switch (llmk_dtype_size(src->dtype)) {
        case 2: return launch_convert<bits<2>::type, bits<2>::type>(st, llmk_fn, false, src, out);
        case 4: return launch_convert<bits<4>::type, bits<4>::type>(st, llmk_fn, false, src, out);
        default: return launch_convert<bits<8>::type, bits<8>::type>(st, llmk_fn, false, src, out);
        }
    }
    if (src->dtype == LLMK_DTYPE_I64) { /* i64 -> i32: every value must fit, checked before writing */
        LLMK_TRY(check_indices(ctx, llmk_fn, "src", src, INT32_MIN, (int64_t)INT32_MAX + 1, " (out is i32)"));
        return launch_convert<int64_t, int32_t>(st, llmk_fn, false, src, out);
    }
    if (src->dtype == LLMK_DTYPE_I32)
        return launch_convert<int32_t, int64_t>(st, llmk_fn, false, src, out);
    LLMK_DISPATCH_FLOAT(src->dtype, TS,
        LLMK_DISPATCH_FLOAT(out->dtype, TO, return launch_convert<TS, TO>(st, llmk_fn, true, src, out);))
    return LLMK_STATUS_OK;
}

namespace {

/* ---- embedding ------------------------------------------------------------------------------------------- */

/* out[t, :] = table[ids[t], :] converted, for a table dtype other than out's. */
template <class TT, class TO, class I>
__global__ void embedding_convert_kernel(const TT* table, int64_t table_stride, const I* ids, TO* out,
                                         int64_t out_stride, int64_t tokens, int64_t hidden) {
    for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
        const TT* row = table + (int64_t)ids[t] * table_stride;
        TO* o = out + t * out_stride;
        for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x)
            o[h] = from_float<TO>(to_float(row[h]));
    }
}

llmk_status embedding(llmk_context* ctx, const char* llmk_fn, const llmk_tensor* table, const llmk_tensor* ids,
                      llmk_tensor* out) {
    llmk_cuda_state* st = state_of(ctx);
    const int64_t tokens = ids->shape[0], vocab = table->shape[0], hidden = table->shape[1];
    /* Every id is checked before anything is written. */
    LLMK_TRY(check_indices(ctx, llmk_fn, "ids", ids, 0, vocab, " (vocab - 1)"));
    if (tokens == 0 || hidden == 0)
        return LLMK_STATUS_OK;
    const int64_t size = (int64_t)llmk_dtype_size(table->dtype);
    LLMK_DISPATCH_INDEX(ids->dtype, I,
        const I* id = static_cast<const I*>(ids->data);
        if (llmk_is_quantized(table->dtype))
            return dequantize_rows<I>(st, llmk_fn, table, id, ids->strides[0], out, tokens);
        if (table->dtype == out->dtype)
            return gather_rows<I>(st, llmk_fn, table->data, table->strides[0] * size, out->data,
                                  out->strides[0] * size, id, ids->strides[0], 1, tokens, hidden * size);
        int block = hidden >= 256 ? 256 : (int)((hidden + 31) / 32 * 32);
        LLMK_DISPATCH_FLOAT(table->dtype, TT,
            LLMK_DISPATCH_FLOAT(out->dtype, TO,
                embedding_convert_kernel<TT, TO, I><<<grid_rows(tokens), block, 0, st->stream>>>(
                    static_cast<const TT*>(table->data), table->strides[0], id, static_cast<TO*>(out->data),
                    out->strides[0], tokens, hidden);
                LLMK_CUDA_LAUNCH_CHECK();
                return LLMK_STATUS_OK;)))
    return LLMK_STATUS_OK;
}

} // namespace
} // namespace llmk_cu

extern "C" llmk_status llmk_cuda_add(llmk_context* ctx, const llmk_tensor* a, const llmk_tensor* b,
                                     llmk_tensor* out) {
    LLMK_CUDA_ENTRY("llmk_add", ctx) {
        using namespace llmk_cu;
        if (llmk_numel(out) == 0)
            return LLMK_STATUS_OK;
        LLMK_DISPATCH_FLOAT(a->dtype, TA,
            LLMK_DISPATCH_FLOAT(b->dtype, TB,
                LLMK_DISPATCH_FLOAT(out->dtype, TO, return launch_add<TA, TB, TO>(st, llmk_fn, a, b, out);)))
        return LLMK_STATUS_OK;
    });
}

extern "C" llmk_status llmk_cuda_convert(llmk_context* ctx, const llmk_tensor* src, llmk_tensor* out) {
    LLMK_CUDA_ENTRY("llmk_convert", ctx) {
        if (llmk_numel(out) == 0)
            return LLMK_STATUS_OK;
        return llmk_cu::convert(ctx, llmk_fn, src, out);
    });
}

extern "C" llmk_status llmk_cuda_embedding(llmk_context* ctx, const llmk_tensor* table, const llmk_tensor* ids,
                                           llmk_tensor* out) {
    LLMK_CUDA_ENTRY("llmk_embedding", ctx) {
        return llmk_cu::embedding(ctx, llmk_fn, table, ids, out);
    });
}
