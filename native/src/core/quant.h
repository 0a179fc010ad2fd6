/* Block-quantized weights in GGUF's layouts, and the 8-bit blocks linear rounds x to (see llmk_linear). */
#ifndef LLMK_QUANT_H
#define LLMK_QUANT_H

#include "internal.h"

enum { LLMK_QK = 32, LLMK_QK_K = 256 };

typedef struct llmk_block_q8_0 {
    uint16_t d; /* f16 */
    int8_t q[LLMK_QK];
} llmk_block_q8_0;

typedef struct llmk_block_q4_0 {
    uint16_t d;                /* f16 */
    uint8_t q[LLMK_QK / 2];    /* element i < 16 in the low nibble of q[i], element i + 16 in its high one */
} llmk_block_q4_0;

typedef struct llmk_block_q4_k {
    uint16_t d, dmin;          /* f16 super-block scales of the 6-bit sub-block scales and mins */
    uint8_t scales[12];        /* 8 x (6-bit scale, 6-bit min), packed as GGUF's get_scale_min_k4 reads them */
    uint8_t q[LLMK_QK_K / 2];  /* per 64 elements: 32 bytes, the first 32 in low nibbles, the next in high */
} llmk_block_q4_k;

typedef struct llmk_block_q6_k {
    uint8_t ql[LLMK_QK_K / 2]; /* low 4 bits */
    uint8_t qh[LLMK_QK_K / 4]; /* high 2 bits */
    int8_t scales[LLMK_QK_K / 16];
    uint16_t d;                /* f16 */
} llmk_block_q6_k;

_Static_assert(sizeof(llmk_block_q8_0) == 34, "Q8_0 block");
_Static_assert(sizeof(llmk_block_q4_0) == 18, "Q4_0 block");
_Static_assert(sizeof(llmk_block_q4_k) == 144, "Q4_K block");
_Static_assert(sizeof(llmk_block_q6_k) == 210, "Q6_K block");

/* x rounded to 8 bits, as llmk_linear does before a quantized weight: d = max|x| / 127 over the block,
 * q = nearest-even(x * (1 / d)), and the sums of q over each half (for the offsets of Q4_K and Q6_K). */
typedef struct llmk_block_q8 {
    float d;
    int16_t sum[2];
    int8_t q[LLMK_QK];
} llmk_block_q8;

#define LLMK_QUANTIZED                                                                                       \
    (LLMK_DTYPE_BIT(LLMK_DTYPE_Q8_0) | LLMK_DTYPE_BIT(LLMK_DTYPE_Q4_0) | LLMK_DTYPE_BIT(LLMK_DTYPE_Q4_K) |  \
     LLMK_DTYPE_BIT(LLMK_DTYPE_Q6_K))

static inline bool llmk_is_quantized(int32_t dtype) {
    return dtype >= 0 && dtype < LLMK_DTYPE_COUNT && (LLMK_QUANTIZED & LLMK_DTYPE_BIT(dtype)) != 0;
}

/* Quantized tensors run on the CPU backend only for now: LLMK_STATUS_UNSUPPORTED on another. */
static inline llmk_status llmk_check_quantized_on_cpu(const llmk_context* ctx, const char* fn, const char* name,
                                                      const llmk_tensor* t) {
    if (llmk_is_quantized(t->dtype) && ctx->device_type != LLMK_DEVICE_TYPE_CPU)
        return llmk_fail(LLMK_STATUS_UNSUPPORTED, "%s: %s is %s; quantized tensors run on the CPU backend", fn, name,
                         llmk_dtype_name(t->dtype));
    return LLMK_STATUS_OK;
}

/* Sub-block j (0..7) of a Q4_K block: its 6-bit scale and min. */
static inline void llmk_q4_k_scale_min(const uint8_t* scales, int j, int* scale, int* min) {
    if (j < 4) {
        *scale = scales[j] & 63;
        *min = scales[j + 4] & 63;
    } else {
        *scale = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
        *min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

/* The elements [0, n) of a row of blocks (n a multiple of the block) as f32. Exact. */
void llmk_dequantize_row(int32_t dtype, const void* blocks, int64_t n, float* out);

/* x[0, n) into blocks of dtype (n a multiple of the block); see llmk_convert for the rounding. */
void llmk_quantize_row(int32_t dtype, const float* x, int64_t n, void* blocks);

/* x[0, n) (n a multiple of 32) rounded to n / 32 blocks, as llmk_linear's contract says. */
void llmk_quantize_row_q8(const float* x, int64_t n, llmk_block_q8* out);

/* The x those blocks stand for: d * q in f32. */
void llmk_dequantize_row_q8(const llmk_block_q8* blocks, int64_t n, float* out);

/* x[0, n) replaced by the x its 8-bit blocks stand for (quantize, then dequantize). */
void llmk_round_row_q8(float* x, int64_t n);

#endif /* LLMK_QUANT_H */
