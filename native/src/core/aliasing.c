/* Aliasing checks between tensor views, for kernels whose outputs may (or may not) share memory with their
 * inputs. Used by the API layer on views that have passed llmk_check_tensor. */
#include "internal.h"

#include <stdio.h>

bool llmk_same_view(const llmk_tensor* a, const llmk_tensor* b) {
    if (a->data != b->data || a->dtype != b->dtype || a->rank != b->rank)
        return false;
    for (int32_t d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d] || (a->shape[d] > 1 && a->strides[d] != b->strides[d]))
            return false;
    return true;
}

/* Bytes from the first element to one past the last element of dimensions [first, rank). Validated views
 * do not overflow (llmk_check_tensor bounds the extent). */
static uint64_t span_bytes(const llmk_tensor* t, int32_t first) {
    uint64_t extent = 0;
    for (int32_t d = first; d < t->rank; d++)
        extent += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->strides[d];
    uint64_t bytes = 0;
    llmk_dtype_bytes(t->dtype, extent + 1, &bytes);
    return bytes;
}

bool llmk_views_overlap(const llmk_tensor* a, const llmk_tensor* b) {
    if (llmk_numel(a) == 0 || llmk_numel(b) == 0)
        return false;
    uintptr_t a0 = (uintptr_t)a->data, b0 = (uintptr_t)b->data;
    uint64_t a_bytes = span_bytes(a, 0), b_bytes = span_bytes(b, 0);
    if (a0 + a_bytes <= b0 || b0 + b_bytes <= a0)
        return false;
    /* Row-interleaved: both repeat with the same outer period, each row fits in one period, and within a
     * period (taken from a's start) b's bytes [offset, offset + b_row) miss a's bytes [0, a_row). */
    if (a->rank >= 2 && b->rank >= 2) {
        uint64_t period = (uint64_t)a->strides[0] * llmk_dtype_size(a->dtype);
        uint64_t b_period = (uint64_t)b->strides[0] * llmk_dtype_size(b->dtype);
        uint64_t a_row = span_bytes(a, 1), b_row = span_bytes(b, 1);
        if (period != 0 && period == b_period && a_row <= period && b_row <= period) {
            uint64_t offset = b0 >= a0 ? (uint64_t)(b0 - a0) % period : (period - (uint64_t)(a0 - b0) % period) % period;
            return !(offset >= a_row && offset + b_row <= period);
        }
    }
    return true;
}

llmk_status llmk_check_no_overlap(const char* fn, const char* name_a, const llmk_tensor* a, const char* name_b,
                                  const llmk_tensor* b, bool alias_ok) {
    if (alias_ok && llmk_same_view(a, b))
        return LLMK_STATUS_OK;
    if (!llmk_views_overlap(a, b))
        return LLMK_STATUS_OK;
    if (alias_ok)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: %s partially overlaps %s; it must be exactly %s (same data, shape and strides) or "
                         "not share memory with it",
                         fn, name_b, name_a, name_a);
    return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: %s overlaps %s in memory; they must not share memory", fn,
                     name_b, name_a);
}

/* An output must give every element its own address: when two elements share one (a zero stride, or
 * strides that interleave), which write lands would depend on thread timing. The test is sufficient,
 * not necessary: sorted by stride, each dimension must step past everything the smaller ones span.
 * Call after llmk_check_tensor, which has bounded the extents. */
llmk_status llmk_check_no_self_overlap(const char* fn, const char* name, const llmk_tensor* t) {
    int32_t dims[LLMK_MAX_RANK];
    int32_t count = 0;
    for (int32_t d = 0; d < t->rank; d++) {
        if (t->shape[d] == 0)
            return LLMK_STATUS_OK; /* empty: nothing is written */
        if (t->shape[d] > 1)
            dims[count++] = d;
    }
    for (int32_t i = 1; i < count; i++) /* insertion sort by stride */
        for (int32_t j = i; j > 0 && t->strides[dims[j]] < t->strides[dims[j - 1]]; j--) {
            int32_t swap = dims[j];
            dims[j] = dims[j - 1];
            dims[j - 1] = swap;
        }
    int64_t span = 0; /* largest offset reached by the dimensions so far */
    for (int32_t i = 0; i < count; i++) {
        int64_t stride = t->strides[dims[i]];
        if (stride <= span) {
            char shape[96];
            llmk_format_shape(t, shape, sizeof shape);
            return llmk_fail(LLMK_STATUS_BAD_STRIDE,
                             "%s: %s (shape %s) has stride %lld in dimension %d, so two of its elements share "
                             "an address; an output needs non-overlapping strides",
                             fn, name, shape, (long long)stride, (int)dims[i]);
        }
        span += stride * (t->shape[dims[i]] - 1);
    }
    return LLMK_STATUS_OK;
}
