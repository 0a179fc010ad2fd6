/* CPU add, convert and embedding. Views of any rank (1..4) and strides are walked as four dimensions,
 * padded with leading ones; threads split the outer three, each element is written once. */
#include "cpu_threads.h"
#include "internal.h"

/* A view seen as [d0, d1, d2, d3]: the padded shape and strides. */
typedef struct view4 {
    int64_t shape[4];
    int64_t strides[4];
} view4;

static view4 as_view4(const llmk_tensor* t) {
    view4 v;
    const int32_t pad = 4 - t->rank;
    for (int32_t d = 0; d < 4; d++) {
        v.shape[d] = d < pad ? 1 : t->shape[d - pad];
        v.strides[d] = d < pad ? 0 : t->strides[d - pad];
    }
    return v;
}

/* Offset of the first element of outer row o (over d0, d1, d2). */
static int64_t outer_offset(const view4* v, int64_t o) {
    const int64_t i2 = o % v->shape[2], i1 = (o / v->shape[2]) % v->shape[1], i0 = o / (v->shape[2] * v->shape[1]);
    return i0 * v->strides[0] + i1 * v->strides[1] + i2 * v->strides[2];
}

enum { CHUNK = 1024 };

/* Whether every view's innermost dimension is contiguous, so its rows go through llmk_load_floats. */
static bool rows_contiguous(const view4* a, const view4* b, const view4* c) {
    return a->strides[3] == 1 && b->strides[3] == 1 && c->strides[3] == 1;
}

llmk_status llmk_cpu_add(llmk_context* ctx, const llmk_tensor* a, const llmk_tensor* b, llmk_tensor* out) {
    const view4 va = as_view4(a), vb = as_view4(b), vo = as_view4(out);
    const int64_t outer = vo.shape[0] * vo.shape[1] * vo.shape[2], inner = vo.shape[3];
    const bool contiguous = rows_contiguous(&va, &vb, &vo);
#pragma omp parallel for num_threads(llmk_cpu_team(ctx, outer * inner)) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        const int64_t ia = outer_offset(&va, o), ib = outer_offset(&vb, o), io = outer_offset(&vo, o);
        if (contiguous) { /* the same sums, run by run through f32 buffers */
            llmk_add_floats(a, ia, b, ib, out, io, inner);
            continue;
        }
        for (int64_t i = 0; i < inner; i++) {
            float sum = llmk_load_float(a->data, a->dtype, ia + i * va.strides[3]) +
                        llmk_load_float(b->data, b->dtype, ib + i * vb.strides[3]);
            llmk_store_float(out->data, out->dtype, io + i * vo.strides[3], sum);
        }
    }
    return LLMK_STATUS_OK;
}

/* Copies element by element, keeping the bits (NaN payloads included). */
static void copy_elements(llmk_context* ctx, const llmk_tensor* src, llmk_tensor* out) {
    const view4 vs = as_view4(src), vo = as_view4(out);
    const int64_t outer = vo.shape[0] * vo.shape[1] * vo.shape[2], inner = vo.shape[3];
    const size_t size = llmk_dtype_size(src->dtype); /* 0 for blocks, which are always contiguous */
#pragma omp parallel for num_threads(llmk_cpu_team(ctx, outer * inner)) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        const char* from = (const char*)src->data + llmk_bytes_of(src->dtype, (uint64_t)outer_offset(&vs, o));
        char* to = (char*)out->data + llmk_bytes_of(out->dtype, (uint64_t)outer_offset(&vo, o));
        if (vs.strides[3] == 1 && vo.strides[3] == 1) {
            memmove(to, from, llmk_bytes_of(src->dtype, (uint64_t)inner)); /* memmove: out may be src itself */
            continue;
        }
        for (int64_t i = 0; i < inner; i++)
            memmove(to + (size_t)(i * vo.strides[3]) * size, from + (size_t)(i * vs.strides[3]) * size, size);
    }
}

llmk_status llmk_cpu_convert(llmk_context* ctx, const llmk_tensor* src, llmk_tensor* out) {
    if (src->dtype == out->dtype) {
        copy_elements(ctx, src, out);
        return LLMK_STATUS_OK;
    }
    const view4 vs = as_view4(src), vo = as_view4(out);
    const int64_t outer = vo.shape[0] * vo.shape[1] * vo.shape[2], inner = vo.shape[3];
    if (src->dtype == LLMK_DTYPE_I64) { /* i64 -> i32: every value must fit, checked before writing */
        for (int64_t o = 0; o < outer; o++) {
            const int64_t is = outer_offset(&vs, o);
            for (int64_t i = 0; i < inner; i++) {
                int64_t value = ((const int64_t*)src->data)[is + i * vs.strides[3]];
                if (value < INT32_MIN || value > INT32_MAX)
                    return llmk_fail(LLMK_STATUS_OUT_OF_RANGE,
                                     "llmk_convert: src holds %lld (element %lld), which does not fit i32 out",
                                     (long long)value, (long long)(o * inner + i));
            }
        }
    }
    const bool floating = out->dtype != LLMK_DTYPE_I32 && out->dtype != LLMK_DTYPE_I64;
    const bool contiguous = vs.strides[3] == 1 && vo.strides[3] == 1;
#pragma omp parallel for num_threads(llmk_cpu_team(ctx, outer * inner)) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        const int64_t is = outer_offset(&vs, o), io = outer_offset(&vo, o);
        if (floating && contiguous) {
            float x[CHUNK];
            for (int64_t i0 = 0; i0 < inner; i0 += CHUNK) {
                const int64_t n = inner - i0 < CHUNK ? inner - i0 : CHUNK;
                llmk_load_floats(src->data, src->dtype, is + i0, n, x);
                llmk_store_floats(out->data, out->dtype, io + i0, n, x);
            }
            continue;
        }
        for (int64_t i = 0; i < inner; i++) {
            const int64_t s = is + i * vs.strides[3], d = io + i * vo.strides[3];
            if (out->dtype == LLMK_DTYPE_I32)
                ((int32_t*)out->data)[d] = (int32_t)((const int64_t*)src->data)[s];
            else if (out->dtype == LLMK_DTYPE_I64)
                ((int64_t*)out->data)[d] = ((const int32_t*)src->data)[s];
            else /* floating: widening to f32 is exact, so there is a single rounding */
                llmk_store_float(out->data, out->dtype, d, llmk_load_float(src->data, src->dtype, s));
        }
    }
    return LLMK_STATUS_OK;
}

llmk_status llmk_cpu_embedding(llmk_context* ctx, const llmk_tensor* table, const llmk_tensor* ids,
                               llmk_tensor* out) {
    const int64_t tokens = ids->shape[0], vocab = table->shape[0], hidden = table->shape[1];
    for (int64_t t = 0; t < tokens; t++) { /* every id is checked before anything is written */
        const int64_t id = llmk_load_index(ids->data, ids->dtype, t);
        if (id < 0 || id >= vocab)
            return llmk_fail(LLMK_STATUS_OUT_OF_RANGE, "llmk_embedding: ids[%lld] is %lld; expected 0..%lld (vocab - 1)",
                             (long long)t, (long long)id, (long long)vocab - 1);
    }
    if (hidden == 0)
        return LLMK_STATUS_OK;
#pragma omp parallel for num_threads(llmk_cpu_team(ctx, tokens * hidden)) schedule(static)
    for (int64_t t = 0; t < tokens; t++) {
        const int64_t row = llmk_load_index(ids->data, ids->dtype, t) * table->strides[0];
        const int64_t out_row = t * out->strides[0];
        if (out->dtype == table->dtype) {
            memcpy((char*)out->data + llmk_bytes_of(out->dtype, (uint64_t)out_row),
                   (const char*)table->data + llmk_bytes_of(table->dtype, (uint64_t)row),
                   llmk_bytes_of(table->dtype, (uint64_t)hidden));
            continue;
        }
        float x[CHUNK];
        for (int64_t h0 = 0; h0 < hidden; h0 += CHUNK) {
            const int64_t n = hidden - h0 < CHUNK ? hidden - h0 : CHUNK;
            llmk_load_floats(table->data, table->dtype, row + h0, n, x);
            llmk_store_floats(out->data, out->dtype, out_row + h0, n, x);
        }
    }
    return LLMK_STATUS_OK;
}
