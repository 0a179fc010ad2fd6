/* CPU reference of RoPE: rotates the first rotary_dim features of every head in place. */
#include "internal.h"

#include <math.h>

/* Rotates the pairs of frequency i in every head of t at token row: NeoX pairs (i, i + half), GPT-J pairs
 * (2i, 2i + 1). */
static void rotate_heads(llmk_tensor* t, int64_t token, int32_t i, int32_t half, int32_t style, float c, float s) {
    const int64_t first = style == LLMK_ROPE_STYLE_NEOX ? i : 2 * (int64_t)i;
    const int64_t second = style == LLMK_ROPE_STYLE_NEOX ? (int64_t)i + half : 2 * (int64_t)i + 1;
    for (int64_t h = 0; h < t->shape[1]; h++) {
        int64_t base = token * t->strides[0] + h * t->strides[1];
        float x = llmk_load_float(t->data, t->dtype, base + first);
        float y = llmk_load_float(t->data, t->dtype, base + second);
        llmk_store_float(t->data, t->dtype, base + first, x * c - y * s);
        llmk_store_float(t->data, t->dtype, base + second, y * c + x * s);
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
#pragma omp parallel for num_threads(ctx->num_threads) schedule(static)
    for (int64_t t = 0; t < tokens; t++) {
        double position = (double)llmk_load_index(positions->data, positions->dtype, t * positions->strides[0]);
        for (int32_t i = 0; i < half; i++) {
            /* The angle in double: at positions in the hundreds of thousands an f32 product loses whole
             * radians' worth of fractional digits. */
            double angle = position * (double)inv_freq[i];
            float c = (float)cos(angle) * attention_factor, s = (float)sin(angle) * attention_factor;
            rotate_heads(q, t, i, half, style, c, s);
            if (k)
                rotate_heads(k, t, i, half, style, c, s);
        }
    }
    return LLMK_STATUS_OK;
}
