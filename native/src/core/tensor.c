/* Validation of tensor views and the f16 conversions. */
#include "internal.h"
#include "quant.h"

#include <stdio.h>

size_t llmk_dtype_size(int32_t dtype) {
    switch (dtype) {
    case LLMK_DTYPE_F32: return 4;
    case LLMK_DTYPE_F16: return 2;
    case LLMK_DTYPE_BF16: return 2;
    case LLMK_DTYPE_I32: return 4;
    case LLMK_DTYPE_I64: return 8;
    default: return 0; /* unknown, or block-quantized */
    }
}

/* Elements and bytes of one block; 0 elements for an unknown dtype. */
static void dtype_block(int32_t dtype, int64_t* elements, int64_t* bytes) {
    switch (dtype) {
    case LLMK_DTYPE_Q8_0: *elements = LLMK_QK, *bytes = sizeof(llmk_block_q8_0); return;
    case LLMK_DTYPE_Q4_0: *elements = LLMK_QK, *bytes = sizeof(llmk_block_q4_0); return;
    case LLMK_DTYPE_Q4_K: *elements = LLMK_QK_K, *bytes = sizeof(llmk_block_q4_k); return;
    case LLMK_DTYPE_Q6_K: *elements = LLMK_QK_K, *bytes = sizeof(llmk_block_q6_k); return;
    default: *bytes = (int64_t)llmk_dtype_size(dtype), *elements = *bytes ? 1 : 0; return;
    }
}

llmk_status llmk_dtype_block(int32_t dtype, int64_t* out_elements, int64_t* out_bytes) {
    if (!out_elements || !out_bytes)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "llmk_dtype_block: an output pointer is NULL");
    int64_t elements, bytes;
    dtype_block(dtype, &elements, &bytes);
    if (!elements)
        return llmk_fail(LLMK_STATUS_DTYPE_MISMATCH, "llmk_dtype_block: unknown dtype %d", (int)dtype);
    *out_elements = elements;
    *out_bytes = bytes;
    return LLMK_STATUS_OK;
}

int64_t llmk_block_elements(int32_t dtype) {
    int64_t elements, bytes;
    dtype_block(dtype, &elements, &bytes);
    return elements;
}

/* The blocks' alignment for the quantized dtypes: their f16 scales. */
size_t llmk_dtype_alignment(int32_t dtype) { return llmk_block_elements(dtype) > 1 ? 2 : llmk_dtype_size(dtype); }

bool llmk_dtype_bytes(int32_t dtype, uint64_t elements, uint64_t* out_bytes) {
    int64_t block, bytes;
    dtype_block(dtype, &block, &bytes);
    if (!block)
        return false;
    const uint64_t blocks = elements / (uint64_t)block + (elements % (uint64_t)block != 0);
    if (blocks > (uint64_t)INT64_MAX / (uint64_t)bytes)
        return false;
    *out_bytes = blocks * (uint64_t)bytes;
    return true;
}

uint64_t llmk_bytes_of(int32_t dtype, uint64_t elements) {
    uint64_t bytes = 0;
    llmk_dtype_bytes(dtype, elements, &bytes);
    return bytes;
}

const char* llmk_dtype_name(int32_t dtype) {
    switch (dtype) {
    case LLMK_DTYPE_F32: return "f32";
    case LLMK_DTYPE_F16: return "f16";
    case LLMK_DTYPE_BF16: return "bf16";
    case LLMK_DTYPE_I32: return "i32";
    case LLMK_DTYPE_I64: return "i64";
    case LLMK_DTYPE_Q8_0: return "q8_0";
    case LLMK_DTYPE_Q4_0: return "q4_0";
    case LLMK_DTYPE_Q4_K: return "q4_k";
    case LLMK_DTYPE_Q6_K: return "q6_k";
    default: return "unknown";
    }
}

static const char* device_name(int32_t device_type) {
    switch (device_type) {
    case LLMK_DEVICE_TYPE_CPU: return "cpu";
    case LLMK_DEVICE_TYPE_CUDA: return "cuda";
    default: return "unknown device";
    }
}

int64_t llmk_numel(const llmk_tensor* t) {
    int64_t n = 1;
    for (int32_t d = 0; d < t->rank; d++)
        n *= t->shape[d];
    return n;
}

void llmk_format_shape(const llmk_tensor* t, char* buffer, size_t capacity) {
    size_t used = 0;
    int written = snprintf(buffer, capacity, "[");
    used = written > 0 ? (size_t)written : 0;
    int32_t rank = t->rank < 0 ? 0 : (t->rank > LLMK_MAX_RANK ? LLMK_MAX_RANK : t->rank);
    for (int32_t d = 0; d < rank && used < capacity; d++) {
        written = snprintf(buffer + used, capacity - used, d == 0 ? "%lld" : ", %lld", (long long)t->shape[d]);
        used += written > 0 ? (size_t)written : 0;
    }
    if (used < capacity)
        snprintf(buffer + used, capacity - used, "]");
}

static int dtype_mask_names(uint32_t mask, char* buffer, size_t capacity) {
    size_t used = 0;
    buffer[0] = '\0';
    for (int32_t d = 0; d < LLMK_DTYPE_COUNT; d++) {
        if (!(mask & LLMK_DTYPE_BIT(d)))
            continue;
        int written = snprintf(buffer + used, capacity - used, used ? ", %s" : "%s", llmk_dtype_name(d));
        if (written < 0 || (size_t)written >= capacity - used)
            break;
        used += (size_t)written;
    }
    return (int)used;
}

llmk_status llmk_check_tensor(const llmk_context* ctx, const char* fn, const char* name, const llmk_tensor* t,
                              int32_t rank, uint32_t dtype_mask, int32_t flags) {
    if (!t)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: %s is NULL", fn, name);
    if (t->rank < 1 || t->rank > LLMK_MAX_RANK)
        return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH, "%s: %s has rank %d; ranks 1..%d are supported", fn, name,
                         (int)t->rank, LLMK_MAX_RANK);
    if (rank > 0 && t->rank != rank)
        return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH, "%s: %s must have rank %d, got rank %d", fn, name, (int)rank,
                         (int)t->rank);
    if (t->dtype < 0 || t->dtype >= LLMK_DTYPE_COUNT)
        return llmk_fail(LLMK_STATUS_DTYPE_MISMATCH, "%s: %s has unknown dtype %d", fn, name, (int)t->dtype);
    if (!(dtype_mask & LLMK_DTYPE_BIT(t->dtype))) {
        char allowed[64];
        dtype_mask_names(dtype_mask, allowed, sizeof allowed);
        return llmk_fail(LLMK_STATUS_DTYPE_MISMATCH, "%s: %s has dtype %s; expected one of %s", fn, name,
                         llmk_dtype_name(t->dtype), allowed);
    }
    char shape[96];
    int64_t count = 1;      /* elements */
    uint64_t extent = 0;    /* last element offset + 1, in elements */
    uint64_t bytes = 0;     /* from the first element to the end of the last */
    bool empty = false;
    for (int32_t d = 0; d < t->rank; d++) {
        if (t->shape[d] < 0) {
            llmk_format_shape(t, shape, sizeof shape);
            return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH, "%s: %s has a negative dimension: %s", fn, name, shape);
        }
        if (t->strides[d] < 0)
            return llmk_fail(LLMK_STATUS_BAD_STRIDE, "%s: %s has negative stride %lld in dimension %d", fn, name,
                             (long long)t->strides[d], (int)d);
        if (t->shape[d] == 0)
            empty = true;
    }
    if (!empty) {
        const uint64_t max = (uint64_t)INT64_MAX;
        for (int32_t d = 0; d < t->rank; d++) {
            uint64_t n = (uint64_t)t->shape[d];
            if ((uint64_t)count > max / n)
                goto overflow;
            count *= (int64_t)n;
            uint64_t span = n - 1, stride = (uint64_t)t->strides[d];
            if (stride != 0 && span > (max - extent) / stride)
                goto overflow;
            extent += span * stride;
        }
        extent += 1;
        uint64_t count_bytes;
        if (!llmk_dtype_bytes(t->dtype, extent, &bytes) || !llmk_dtype_bytes(t->dtype, (uint64_t)count, &count_bytes))
            goto overflow;
        if (!t->data)
            return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: %s has a NULL data pointer", fn, name);
        if (!(flags & LLMK_CHECK_ANY_STRIDE) && t->strides[t->rank - 1] != 1 && t->shape[t->rank - 1] > 1)
            return llmk_fail(LLMK_STATUS_BAD_STRIDE,
                             "%s: %s must be contiguous in its last dimension (stride 1), has stride %lld", fn,
                             name, (long long)t->strides[t->rank - 1]);
    }
    const int64_t block = llmk_block_elements(t->dtype);
    if (block > 1) {
        /* a block never straddles a row: the last dimension is whole blocks, contiguous */
        if (t->shape[t->rank - 1] % block || (t->rank > 0 && t->shape[t->rank - 1] > 0 && t->strides[t->rank - 1] != 1)) {
            llmk_format_shape(t, shape, sizeof shape);
            return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH,
                             "%s: %s is %s of shape %s; its last dimension must be contiguous and a multiple of %lld "
                             "(the block)", fn, name, llmk_dtype_name(t->dtype), shape, (long long)block);
        }
        for (int32_t d = 0; d + 1 < t->rank; d++)
            if (t->strides[d] % block)
                return llmk_fail(LLMK_STATUS_BAD_STRIDE,
                                 "%s: %s is %s; stride %lld of dimension %d is not a multiple of its block of %lld", fn,
                                 name, llmk_dtype_name(t->dtype), (long long)t->strides[d], (int)d, (long long)block);
    }
    if (ctx && (t->device_type != ctx->device_type || t->device_index != ctx->device_index))
        return llmk_fail(LLMK_STATUS_WRONG_DEVICE, "%s: %s lives on %s:%d but the context is %s:%d", fn, name,
                         device_name(t->device_type), (int)t->device_index, device_name(ctx->device_type),
                         (int)ctx->device_index);
    /* The kernels load whole elements through typed pointers: a misaligned one is undefined behaviour in C
     * and a fault on the GPU. */
    const size_t alignment = llmk_dtype_alignment(t->dtype);
    if (t->data && alignment > 1 && (uintptr_t)t->data % alignment != 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: %s data pointer %p is not aligned to %d bytes, as %s needs",
                         fn, name, t->data, (int)alignment, llmk_dtype_name(t->dtype));
    if (ctx && !empty)
        LLMK_TRY(llmk_check_memory(ctx, fn, name, t->data, bytes));
    return LLMK_STATUS_OK;
overflow:
    llmk_format_shape(t, shape, sizeof shape);
    return llmk_fail(LLMK_STATUS_OVERFLOW, "%s: %s of shape %s and dtype %s overflows a 64-bit byte size", fn, name,
                     shape, llmk_dtype_name(t->dtype));
}

llmk_status llmk_check_dim(const char* fn, const char* name, const llmk_tensor* t, int32_t dim, int64_t expected,
                           const char* what) {
    if (t->shape[dim] == expected)
        return LLMK_STATUS_OK;
    char shape[96];
    llmk_format_shape(t, shape, sizeof shape);
    return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH, "%s: %s has shape %s; dimension %d must be %s = %lld", fn, name,
                     shape, (int)dim, what, (long long)expected);
}

llmk_status llmk_check_same_shape(const char* fn, const char* name_a, const llmk_tensor* a, const char* name_b,
                                  const llmk_tensor* b) {
    bool same = a->rank == b->rank;
    for (int32_t d = 0; same && d < a->rank; d++)
        same = a->shape[d] == b->shape[d];
    if (same)
        return LLMK_STATUS_OK;
    char sa[96], sb[96];
    llmk_format_shape(a, sa, sizeof sa);
    llmk_format_shape(b, sb, sizeof sb);
    return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH, "%s: %s has shape %s but %s has shape %s", fn, name_a, sa, name_b,
                     sb);
}

llmk_status llmk_check_same_dtype(const char* fn, const char* name_a, const llmk_tensor* a, const char* name_b,
                                  const llmk_tensor* b) {
    if (a->dtype == b->dtype)
        return LLMK_STATUS_OK;
    return llmk_fail(LLMK_STATUS_DTYPE_MISMATCH, "%s: %s has dtype %s but %s has dtype %s", fn, name_a,
                     llmk_dtype_name(a->dtype), name_b, llmk_dtype_name(b->dtype));
}

/* IEEE half <-> single, exact (subnormals included), round to nearest even. Every case is computed and one
 * selected, without branches, so the row loops below vectorize. */
float llmk_f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t special = 0x7f800000u | (mantissa << 13);                                  /* inf, NaN */
    uint32_t small = llmk_float_to_bits((float)mantissa * (1.0f / 16777216.0f));        /* zero, subnormal */
    uint32_t normal = ((exponent + 112u) << 23) | (mantissa << 13);
    return llmk_bits_to_float(sign | (exponent == 0x1f ? special : exponent == 0 ? small : normal));
}

uint16_t llmk_float_to_f16(float f) {
    uint32_t bits = llmk_float_to_bits(f);
    uint32_t sign = (bits >> 16) & 0x8000u;
    uint32_t magnitude = bits & 0x7fffffffu;
    /* below the smallest normal half: adding 0.5 makes the float adder round the mantissa to nearest even
     * at 2^-24 */
    uint32_t small = llmk_float_to_bits(llmk_bits_to_float(magnitude) + 0.5f) - 0x3f000000u;
    /* rebias the exponent (-112 << 23) and round */
    uint32_t normal = (magnitude + 0xc8000fffu + ((magnitude >> 13) & 1u)) >> 13;
    uint32_t half = magnitude > 0x7f800000u    ? 0x7e00u  /* NaN */
                    : magnitude >= 0x477ff000u ? 0x7c00u  /* rounds to >= 65520: infinity */
                    : magnitude < 0x38800000u  ? small
                                               : normal;
    return (uint16_t)(sign | half);
}

/* In this file so the conversions above inline into the loops and vectorize (they are branch-light). */
void llmk_load_floats(const void* data, int32_t dtype, int64_t offset, int64_t n, float* dst) {
    if (llmk_is_quantized(dtype)) {
        llmk_dequantize_row(dtype, (const char*)data + llmk_bytes_of(dtype, (uint64_t)offset), n, dst);
        return;
    }
    switch (dtype) {
    case LLMK_DTYPE_F32:
        memcpy(dst, (const float*)data + offset, (size_t)n * sizeof(float));
        break;
    case LLMK_DTYPE_F16: {
        const uint16_t* src = (const uint16_t*)data + offset;
        for (int64_t i = 0; i < n; i++)
            dst[i] = llmk_f16_to_float(src[i]);
        break;
    }
    default: {
        const uint16_t* src = (const uint16_t*)data + offset;
        for (int64_t i = 0; i < n; i++)
            dst[i] = llmk_bf16_to_float(src[i]);
        break;
    }
    }
}

void llmk_store_floats(void* data, int32_t dtype, int64_t offset, int64_t n, const float* src) {
    if (llmk_is_quantized(dtype)) {
        llmk_quantize_row(dtype, src, n, (char*)data + llmk_bytes_of(dtype, (uint64_t)offset));
        return;
    }
    switch (dtype) {
    case LLMK_DTYPE_F32:
        memcpy((float*)data + offset, src, (size_t)n * sizeof(float));
        break;
    case LLMK_DTYPE_F16: {
        uint16_t* dst = (uint16_t*)data + offset;
        for (int64_t i = 0; i < n; i++)
            dst[i] = llmk_float_to_f16(src[i]);
        break;
    }
    default: {
        uint16_t* dst = (uint16_t*)data + offset;
        for (int64_t i = 0; i < n; i++)
            dst[i] = llmk_float_to_bf16(src[i]);
        break;
    }
    }
}

void llmk_add_floats(const llmk_tensor* a, int64_t ia, const llmk_tensor* b, int64_t ib, llmk_tensor* out,
                     int64_t io, int64_t n) {
    enum { RUN = 1024 };
    float x[RUN], y[RUN];
    for (int64_t i0 = 0; i0 < n; i0 += RUN) {
        const int64_t m = n - i0 < RUN ? n - i0 : RUN;
        llmk_load_floats(a->data, a->dtype, ia + i0, m, x);
        llmk_load_floats(b->data, b->dtype, ib + i0, m, y);
        for (int64_t i = 0; i < m; i++)
            x[i] += y[i];
        llmk_store_floats(out->data, out->dtype, io + i0, m, x);
    }
}
