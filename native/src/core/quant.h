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

#ifdef __cplusplus
#define LLMK_STATIC_ASSERT static_assert
#else
#define LLMK_STATIC_ASSERT _Static_assert
#endif
LLMK_STATIC_ASSERT(sizeof(llmk_block_q8_0) == 34, "Q8_0 block");
LLMK_STATIC_ASSERT(sizeof(llmk_block_q4_0) == 18, "Q4_0 block");
LLMK_STATIC_ASSERT(sizeof(llmk_block_q4_k) == 144, "Q4_K block");
LLMK_STATIC_ASSERT(sizeof(llmk_block_q6_k) == 210, "Q6_K block");

/* Inline helpers below also compile as CUDA device code. */
#if defined(__CUDACC__)
#define LLMK_QUANT_FN static inline __host__ __device__
#else
#define LLMK_QUANT_FN static inline
#endif

/* x rounded to 8 bits, as llmk_linear does before a quantized weight: d = max|x| / 127 over the rounding
 * group (32 elements, or 256 before a K-quant: every block of a group carries the group's d),
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

/* Sub-block j (0..7) of a Q4_K block: its 6-bit scale and min. */
LLMK_QUANT_FN void llmk_q4_k_scale_min(const uint8_t* scales, int j, int* scale, int* min) {
    if (j < 4) {
        *scale = scales[j] & 63;
        *min = scales[j + 4] & 63;
    } else {
        *scale = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
        *min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

/* Elements [32 c, 32 c + 32) of a row of blocks, in integers: element e is
 * d * scale[e / 16] * code[e] - dmin * min, d and dmin f16 bits (Q8_0, Q4_0: scale 1, min 0, code the signed
 * value; Q4_K: code 0..15 with its sub-block's 6-bit scale and min; Q6_K: code -32..31 with int8 scales). The
 * one decoder of the formats: the reference dequantizes through it, the portable and CUDA kernels multiply
 * with it; the AVX2 kernels unpack in registers instead. */
typedef struct llmk_quant_chunk {
    int8_t code[32];
    int scale[2];
    int min;
    uint16_t d, dmin;
} llmk_quant_chunk;

LLMK_QUANT_FN void llmk_quant_chunk_at(int32_t dtype, const void* row, int64_t c, llmk_quant_chunk* out) {
    out->min = 0;
    out->dmin = 0;
    if (dtype == LLMK_DTYPE_Q8_0) {
        const llmk_block_q8_0* b = (const llmk_block_q8_0*)row + c;
        for (int l = 0; l < 32; l++)
            out->code[l] = b->q[l];
        out->scale[0] = out->scale[1] = 1;
        out->d = b->d;
    } else if (dtype == LLMK_DTYPE_Q4_0) {
        const llmk_block_q4_0* b = (const llmk_block_q4_0*)row + c;
        for (int l = 0; l < 16; l++) {
            out->code[l] = (int8_t)((b->q[l] & 0xF) - 8);
            out->code[l + 16] = (int8_t)((b->q[l] >> 4) - 8);
        }
        out->scale[0] = out->scale[1] = 1;
        out->d = b->d;
    } else if (dtype == LLMK_DTYPE_Q4_K) {
        const llmk_block_q4_k* b = (const llmk_block_q4_k*)row + c / 8;
        const int j = (int)(c % 8);
        int scale, min;
        llmk_q4_k_scale_min(b->scales, j, &scale, &min);
        for (int l = 0; l < 32; l++) {
            const uint8_t q = b->q[32 * (j / 2) + l];
            out->code[l] = (int8_t)(j % 2 ? q >> 4 : q & 0xF);
        }
        out->scale[0] = out->scale[1] = scale;
        out->min = min;
        out->d = b->d;
        out->dmin = b->dmin;
    } else { /* Q6_K: element 128 h + 32 k + l has its low bits in ql[64 h + 32 (k & 1) + l] (nibble k >> 1),
                its high bits at 2k of qh[32 h + l], its scale 8 h + 2 k + l / 16 */
        const llmk_block_q6_k* b = (const llmk_block_q6_k*)row + c / 8;
        const int h = (int)(c % 8) / 4, k = (int)(c % 4);
        for (int l = 0; l < 32; l++) {
            const int low = (b->ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0xF;
            const int high = (b->qh[32 * h + l] >> (2 * k)) & 3;
            out->code[l] = (int8_t)((low | high << 4) - 32);
        }
        out->scale[0] = b->scales[8 * h + 2 * k];
        out->scale[1] = b->scales[8 * h + 2 * k + 1];
        out->d = b->d;
    }
}

/* The chunk's 32 values, given its d and dmin as f32 (each caller converts f16 its own way). */
LLMK_QUANT_FN void llmk_quant_chunk_values(const llmk_quant_chunk* chunk, float d, float dmin, float out[32]) {
    const float offset = dmin * (float)chunk->min;
    const float step[2] = {d * (float)chunk->scale[0], d * (float)chunk->scale[1]};
    for (int l = 0; l < 32; l++)
        out[l] = step[l / 16] * (float)chunk->code[l] - offset;
}

/* The elements [0, n) of a row of blocks (n a multiple of the block) as f32. Exact. */
void llmk_dequantize_row(int32_t dtype, const void* blocks, int64_t n, float* out);

/* x[0, n) into blocks of dtype (n a multiple of the block); see llmk_convert for the rounding. */
void llmk_quantize_row(int32_t dtype, const float* x, int64_t n, void* blocks);

/* Elements that share one 8-bit scale of x before a weight of dtype: 256 for the K-quants (as llama.cpp's
 * Q8_K, so their sub-block scales multiply integers), 32 otherwise (Q8_0). */
LLMK_QUANT_FN int64_t llmk_q8_group(int32_t weight_dtype) {
    return weight_dtype == LLMK_DTYPE_Q4_K || weight_dtype == LLMK_DTYPE_Q6_K ? LLMK_QK_K : LLMK_QK;
}

/* The chunk's products with one 8-bit block of x, in integers per half, then f32: offset is dmin * min. The
 * portable and CUDA kernels sum these; the reference dequantizes instead. */
LLMK_QUANT_FN float llmk_quant_chunk_dot(const llmk_quant_chunk* chunk, float d, float offset, const llmk_block_q8* x) {
    int32_t s0 = 0, s1 = 0;
    for (int l = 0; l < 16; l++) {
        s0 += chunk->code[l] * x->q[l];
        s1 += chunk->code[l + 16] * x->q[l + 16];
    }
    return x->d * (d * (float)(chunk->scale[0] * s0 + chunk->scale[1] * s1) - offset * (float)(x->sum[0] + x->sum[1]));
}

/* x[0, n) (n a multiple of group) rounded to n / 32 blocks, as llmk_linear's contract says. */
void llmk_quantize_row_q8(const float* x, int64_t n, int64_t group, llmk_block_q8* out);

/* The x those blocks stand for: d * q in f32. */
void llmk_dequantize_row_q8(const llmk_block_q8* blocks, int64_t n, float* out);

/* x[0, n) replaced by the x its 8-bit blocks stand for (quantize, then dequantize). */
void llmk_round_row_q8(float* x, int64_t n, int64_t group);

#endif /* LLMK_QUANT_H */
