/* A check for output views, shared by the api/ files of the MoE, linear and elementwise families.
 * (It would sit well in core/ beside llmk_check_tensor.) */
#ifndef LLMK_OUTPUT_CHECK_H
#define LLMK_OUTPUT_CHECK_H

#include "internal.h"

#include <stdio.h>

/* An output must give every element its own address: when two elements share one (a zero stride, or
 * strides that interleave), which write lands would depend on thread timing. The test is sufficient,
 * not necessary: sorted by stride, each dimension must step past everything the smaller ones span.
 * Call after llmk_check_tensor, which has bounded the extents. */
static inline llmk_status llmk_check_no_self_overlap(const char* fn, const char* name, const llmk_tensor* t) {
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

/* Bytes from a view's data pointer to the end of its last element (0 when empty). */
static inline uint64_t llmk_view_bytes(const llmk_tensor* t) {
    uint64_t last = 0;
    for (int32_t d = 0; d < t->rank; d++) {
        if (t->shape[d] == 0)
            return 0;
        last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->strides[d];
    }
    return (last + 1) * llmk_dtype_size(t->dtype);
}

/* out must not share memory with in, for kernels that read in after they begin writing out. */
static inline llmk_status llmk_check_disjoint(const char* fn, const char* out_name, const llmk_tensor* out,
                                              const char* in_name, const llmk_tensor* in) {
    uintptr_t a = (uintptr_t)out->data, b = (uintptr_t)in->data;
    uint64_t a_bytes = llmk_view_bytes(out), b_bytes = llmk_view_bytes(in);
    if (a_bytes == 0 || b_bytes == 0 || a + a_bytes <= b || b + b_bytes <= a)
        return LLMK_STATUS_OK;
    return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: %s overlaps the memory of %s (their address ranges intersect); this output "
                     "must not share memory with that input",
                     fn, out_name, in_name);
}

/* For kernels that allow in-place use: out either is exactly the view in (same data, dtype, rank, shape
 * and strides) or shares no memory with it. */
static inline llmk_status llmk_check_same_or_disjoint(const char* fn, const char* out_name, const llmk_tensor* out,
                                                      const char* in_name, const llmk_tensor* in) {
    bool same = out->data == in->data && out->dtype == in->dtype && out->rank == in->rank;
    for (int32_t d = 0; same && d < out->rank; d++)
        same = out->shape[d] == in->shape[d] && (out->strides[d] == in->strides[d] || out->shape[d] == 1);
    if (same)
        return LLMK_STATUS_OK;
    if (llmk_check_disjoint(fn, out_name, out, in_name, in) == LLMK_STATUS_OK)
        return LLMK_STATUS_OK;
    return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                     "%s: %s partly overlaps %s; it must be exactly the same view (same dtype and strides) or a "
                     "separate buffer",
                     fn, out_name, in_name);
}

#endif /* LLMK_OUTPUT_CHECK_H */
