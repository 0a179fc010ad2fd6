/* Dequantizing and quantizing rows of GGUF blocks, and the 8-bit rounding of linear's x. Plain C: the
 * reference and the oracles' contract; the fast kernels have their own integer dot products. */
#include "quant.h"

#include <math.h>

void llmk_dequantize_row(int32_t dtype, const void* blocks, int64_t n, float* out) {
    for (int64_t c = 0; c < n / LLMK_QK; c++, out += LLMK_QK) {
        llmk_quant_chunk chunk;
        llmk_quant_chunk_at(dtype, blocks, c, &chunk);
        llmk_quant_chunk_values(&chunk, llmk_f16_to_float(chunk.d), llmk_f16_to_float(chunk.dmin), out);
    }
}

static float max_abs(const float* x, int n) {
    float m = 0.0f;
    for (int i = 0; i < n; i++) /* a comparison, not fmaxf: that is a libm call without -ffast-math */
        m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

static int clamp_int(float v, int lo, int hi) {
    const int i = (int)nearbyintf(v);
    return i < lo ? lo : i > hi ? hi : i;
}

/* GGUF's reference rounding: d = max|x| / 127, q = round(x / d). */
static void quantize_q8_0(const float* x, int64_t blocks, llmk_block_q8_0* b) {
    for (int64_t i = 0; i < blocks; i++, x += LLMK_QK) {
        const float d = max_abs(x, LLMK_QK) / 127.0f, id = d ? 1.0f / d : 0.0f;
        b[i].d = llmk_float_to_f16(d);
        for (int j = 0; j < LLMK_QK; j++)
            b[i].q[j] = (int8_t)roundf(x[j] * id);
    }
}

/* GGUF's reference rounding: d = m / -8 for the element m of largest magnitude (so it maps to q = 0 exactly),
 * q = min(15, trunc(x / d + 8.5)). */
static void quantize_q4_0(const float* x, int64_t blocks, llmk_block_q4_0* b) {
    for (int64_t i = 0; i < blocks; i++, x += LLMK_QK) {
        float amax = 0.0f, m = 0.0f;
        for (int j = 0; j < LLMK_QK; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                m = x[j];
            }
        const float d = m / -8.0f, id = d ? 1.0f / d : 0.0f;
        b[i].d = llmk_float_to_f16(d);
        for (int j = 0; j < LLMK_QK / 2; j++) {
            const int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + LLMK_QK / 2] * id + 8.5f);
            b[i].q[j] = (uint8_t)((lo > 15 ? 15 : lo) | (hi > 15 ? 15 : hi) << 4);
        }
    }
}

/* Per 32 elements x = scale * q - min with min = -min(0, min x) and scale = (max x + min) / 15; the eight
 * scales and mins round to 6 bits against the block's largest, then q rounds against the rounded ones. */
static void quantize_q4_k(const float* x, int64_t blocks, llmk_block_q4_k* b) {
    for (int64_t i = 0; i < blocks; i++, x += LLMK_QK_K) {
        float scale[8], min[8], max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; j++) {
            float lo = 0.0f, hi = 0.0f;
            for (int l = 0; l < 32; l++) {
                lo = fminf(lo, x[32 * j + l]);
                hi = fmaxf(hi, x[32 * j + l]);
            }
            min[j] = -lo;
            scale[j] = (hi - lo) / 15.0f;
            max_scale = fmaxf(max_scale, scale[j]);
            max_min = fmaxf(max_min, min[j]);
        }
        const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
        b[i].d = llmk_float_to_f16(d);
        b[i].dmin = llmk_float_to_f16(dmin);
        const float dq = llmk_f16_to_float(b[i].d), dminq = llmk_f16_to_float(b[i].dmin);
        uint8_t s6[8], m6[8];
        for (int j = 0; j < 8; j++) {
            s6[j] = (uint8_t)(dq ? clamp_int(scale[j] / dq, 0, 63) : 0);
            m6[j] = (uint8_t)(dminq ? clamp_int(min[j] / dminq, 0, 63) : 0);
        }
        for (int j = 0; j < 4; j++) {
            b[i].scales[j] = (uint8_t)(s6[j] | (s6[j + 4] >> 4) << 6);
            b[i].scales[j + 4] = (uint8_t)(m6[j] | (m6[j + 4] >> 4) << 6);
            b[i].scales[j + 8] = (uint8_t)((s6[j + 4] & 0xF) | (m6[j + 4] & 0xF) << 4);
        }
        for (int j = 0; j < 8; j++) {
            const float step = dq * (float)s6[j], offset = dminq * (float)m6[j];
            for (int l = 0; l < 32; l++) {
                const int q = step ? clamp_int((x[32 * j + l] + offset) / step, 0, 15) : 0;
                uint8_t* byte = &b[i].q[32 * (j / 2) + l];
                *byte = (uint8_t)(j % 2 ? (*byte & 0x0F) | q << 4 : (*byte & 0xF0) | q);
            }
        }
    }
}

/* Per 16 elements x = scale * q with scale = max|x| / 31 (q in -31..31 of -32..31); the sixteen scales round
 * to int8 against the block's largest, then q rounds against the rounded ones. */
static void quantize_q6_k(const float* x, int64_t blocks, llmk_block_q6_k* b) {
    for (int64_t i = 0; i < blocks; i++, x += LLMK_QK_K) {
        float scale[16], max_scale = 0.0f;
        for (int j = 0; j < 16; j++) {
            scale[j] = max_abs(x + 16 * j, 16) / 31.0f;
            max_scale = fmaxf(max_scale, scale[j]);
        }
        const float d = max_scale / 127.0f;
        b[i].d = llmk_float_to_f16(d);
        const float dq = llmk_f16_to_float(b[i].d);
        for (int j = 0; j < 16; j++)
            b[i].scales[j] = (int8_t)(dq ? clamp_int(scale[j] / dq, -128, 127) : 0);
        memset(b[i].ql, 0, sizeof b[i].ql);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) {
                    const int e = 128 * h + 32 * c + l;
                    const float step = dq * (float)b[i].scales[e / 16];
                    const int q = (step ? clamp_int(x[e] / step, -32, 31) : 0) + 32;
                    b[i].ql[64 * h + 32 * (c & 1) + l] |= (uint8_t)((q & 0xF) << (4 * (c >> 1)));
                    b[i].qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * c));
                }
    }
}

void llmk_quantize_row(int32_t dtype, const float* x, int64_t n, void* blocks) {
    switch (dtype) {
    case LLMK_DTYPE_Q8_0: quantize_q8_0(x, n / LLMK_QK, (llmk_block_q8_0*)blocks); break;
    case LLMK_DTYPE_Q4_0: quantize_q4_0(x, n / LLMK_QK, (llmk_block_q4_0*)blocks); break;
    case LLMK_DTYPE_Q4_K: quantize_q4_k(x, n / LLMK_QK_K, (llmk_block_q4_k*)blocks); break;
    case LLMK_DTYPE_Q6_K: quantize_q6_k(x, n / LLMK_QK_K, (llmk_block_q6_k*)blocks); break;
    default: break;
    }
}

void llmk_quantize_row_q8(const float* x, int64_t n, int64_t group, llmk_block_q8* out) {
    for (int64_t g = 0; g < n; g += group) {
        const float d = max_abs(x + g, (int)group) / 127.0f, id = d ? 1.0f / d : 0.0f;
        for (int64_t i = g; i < g + group; i += LLMK_QK) {
            llmk_block_q8* block = out + i / LLMK_QK;
            int sum[2] = {0, 0};
            for (int j = 0; j < LLMK_QK; j++) {
                const int q = (int)nearbyintf(x[i + j] * id);
                block->q[j] = (int8_t)q;
                sum[j / 16] += q;
            }
            block->d = d;
            block->sum[0] = (int16_t)sum[0];
            block->sum[1] = (int16_t)sum[1];
        }
    }
}

void llmk_dequantize_row_q8(const llmk_block_q8* blocks, int64_t n, float* out) {
    for (int64_t i = 0; i < n / LLMK_QK; i++)
        for (int j = 0; j < LLMK_QK; j++)
            out[i * LLMK_QK + j] = blocks[i].d * (float)blocks[i].q[j];
}

void llmk_round_row_q8(float* x, int64_t n, int64_t group) {
    for (int64_t g = 0; g < n; g += group) {
        llmk_block_q8 blocks[LLMK_QK_K / LLMK_QK];
        llmk_quantize_row_q8(x + g, group, group, blocks);
        llmk_dequantize_row_q8(blocks, group, x + g);
    }
}
