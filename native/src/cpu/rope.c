/* CPU reference of RoPE: rotates the first rotary_dim features of every head in place. */
#include "cpu_threads.h"
#include "internal.h"

#include <math.h>

enum { BLOCK = 128 }; /* frequencies per pass: head_dim 256 in one */

/* Rotates the pairs of frequencies [i0, i0 + n) (n <= BLOCK) in every head of t at token row by the angles
 * whose cos and sin are c[0..n) and s[0..n): NeoX pairs (i, i + half), GPT-J pairs (2i, 2i + 1). The pairs
 * are contiguous runs either way, converted to f32 through a stack buffer. */
static void rotate_heads(llmk_tensor* t, int64_t token, int32_t i0, int32_t n, int32_t half, int32_t style,
                         const float* c, const float* s) {
    float v[2 * BLOCK];
    for (int64_t h = 0; h < t->shape[1]; h++) {
        const int64_t base = token * t->strides[0] + h * t->strides[1];
        if (style == LLMK_ROPE_STYLE_NEOX) {
            float* x = v;
            float* y = v + BLOCK;
            llmk_load_floats(t->data, t->dtype, base + i0, n, x);
            llmk_load_floats(t->data, t->dtype, base + half + i0, n, y);
            for (int32_t j = 0; j < n; j++) {
                const float a = x[j], b = y[j];
                x[j] = a * c[j] - b * s[j];
                y[j] = b * c[j] + a * s[j];
            }
            llmk_store_floats(t->data, t->dtype, base + i0, n, x);
            llmk_store_floats(t->data, t->dtype, base + half + i0, n, y);
        } else {
            llmk_load_floats(t->data, t->dtype, base + 2 * (int64_t)i0, 2 * (int64_t)n, v);
            for (int32_t j = 0; j < n; j++) {
                const float a = v[2 * j], b = v[2 * j + 1];
                v[2 * j] = a * c[j] - b * s[j];
                v[2 * j + 1] = b * c[j] + a * s[j];
            }
            llmk_store_floats(t->data, t->dtype, base + 2 * (int64_t)i0, 2 * (int64_t)n, v);
        }
    }
}

llmk_status llmk_cpu_rope(llmk_context* ctx, const llmk_tensor* positions, const float* inv_freq,
                          float attention_factor, int32_t style, int32_t rotary_dim, llmk_tensor* q,
                          llmk_tensor* k) {
    const int64_t tokens = q->shape[0];
    /* Every position is checked before anything is written. */
    for (int64_t t = 0; t < tokens; t++) {
        int64_t position = llmk_load_index(positions->data, positions->dtype, t * positions->strides[0]);
        if (position < 0)
            return llmk_fail(LLMK_STATUS_OUT_OF_RANGE, "llmk_rope: positions[%lld] is %lld; expected >= 0",
                             (long long)t, (long long)position);
    }
    const int32_t half = rotary_dim / 2;
#pragma omp parallel for num_threads(llmk_cpu_team(ctx, tokens * (q->shape[1] + (k ? k->shape[1] : 0)) * rotary_dim)) schedule(static)
    for (int64_t t = 0; t < tokens; t++) {
        double position = (double)llmk_load_index(positions->data, positions->dtype, t * positions->strides[0]);
        for (int32_t i0 = 0; i0 < half; i0 += BLOCK) {
            const int32_t n = half - i0 < BLOCK ? half - i0 : BLOCK;
            float c[BLOCK], s[BLOCK];
            for (int32_t j = 0; j < n; j++) {
                /* The angle in double: at positions in the hundreds of thousands an f32 product loses whole
                 * radians' worth of fractional digits. */
                double angle = position * (double)inv_freq[i0 + j];
                c[j] = (float)cos(angle) * attention_factor;
                s[j] = (float)sin(angle) * attention_factor;
            }
            rotate_heads(q, t, i0, n, half, style, c, s);
            if (k)
                rotate_heads(k, t, i0, n, half, style, c, s);
        }
    }
    return LLMK_STATUS_OK;
}
