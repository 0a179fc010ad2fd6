/* CPU linear layer: y = x W^T + bias, accumulated in f32.
 *
 * Each output y[r, o] is one sequential sum over k of x[r, k] * W[o, k], in increasing k, plus the bias at
 * the end. The work is tiled so the compiler can vectorize without reassociating any sum:
 * - a thread takes PANEL output features and converts their weight rows to an f32 panel laid out [k][PANEL]
 *   (bf16/f16 weights are widened here, once per panel);
 * - for TILE_ROWS rows at a time it accumulates a TILE_ROWS x PANEL block, broadcasting x[r, k] against the
 *   PANEL contiguous weights of step k: every SIMD lane is an independent output.
 * So a result does not depend on the thread count, the tile it fell in or how many rows came with it. */
#include "cpu_threads.h"
#include "internal.h"
#include "quant.h"

#include <stdlib.h>

enum {
    PANEL = 8,      /* output features per panel: two SSE or one AVX register per tile row */
    TILE_ROWS = 4,  /* rows per register tile */
    ROW_CHUNK = 64, /* rows of non-f32 x converted to f32 at a time */
    PACK_BLOCK = 256 /* weight columns packed at a time: 8 KiB of panel */
};

/* acc[i][j] = sum over k of x_rows[i][k] * panel[k][j], for i < rows (TILE_ROWS, or 1 for the last rows).
 * Inlined with a constant rows, so each variant is unrolled; both add the same terms in the same order. */
#if defined(__GNUC__)
/* GNU vectors of PANEL lanes keep the accumulators in registers (a plain array ends up on the stack); the
 * arithmetic is lane by lane, exactly the scalar loop below. */
typedef float panel_lanes __attribute__((vector_size(PANEL * sizeof(float))));

static inline __attribute__((always_inline)) void tile(int rows, const float* const* x_rows, const float* panel,
                                                       int64_t in_features, float acc[TILE_ROWS][PANEL]) {
    panel_lanes a[TILE_ROWS] = {{0}};
    for (int64_t k = 0; k < in_features; k++) {
        panel_lanes w;
        memcpy(&w, panel + k * PANEL, sizeof w);
        for (int i = 0; i < rows; i++)
            a[i] += x_rows[i][k] * w;
    }
    for (int i = 0; i < rows; i++)
        memcpy(acc[i], &a[i], sizeof a[i]);
}
#else
static void tile(int rows, const float* const* x_rows, const float* panel, int64_t in_features,
                 float acc[TILE_ROWS][PANEL]) {
    float a[TILE_ROWS][PANEL] = {{0}};
    for (int64_t k = 0; k < in_features; k++)
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < PANEL; j++)
                a[i][j] += x_rows[i][k] * panel[k * PANEL + j];
    memcpy(acc, a, sizeof a);
}
#endif

/* Weight rows [first, first + PANEL) as f32 [in_features][PANEL]; rows past out_features are zero. Packed
 * PACK_BLOCK columns at a time, so the strided writes of the eight rows hit the same cache lines in L1. */
static void pack_panel(const llmk_tensor* weight, int64_t first, float* panel) {
    const int64_t out_features = weight->shape[0], in_features = weight->shape[1];
    for (int64_t k0 = 0; k0 < in_features; k0 += PACK_BLOCK) {
        const int64_t k1 = in_features - k0 < PACK_BLOCK ? in_features : k0 + PACK_BLOCK;
        for (int j = 0; j < PANEL; j++) {
            const int64_t o = first + j;
            if (o >= out_features) {
                for (int64_t k = k0; k < k1; k++)
                    panel[k * PANEL + j] = 0.0f;
                continue;
            }
            const int64_t row = o * weight->strides[0];
            if (llmk_is_quantized(weight->dtype)) { /* k0 and k1 are whole blocks (PACK_BLOCK is 256) */
                float w[PACK_BLOCK];
                llmk_load_floats(weight->data, weight->dtype, row + k0, k1 - k0, w);
                for (int64_t k = k0; k < k1; k++)
                    panel[k * PANEL + j] = w[k - k0];
            } else if (weight->dtype == LLMK_DTYPE_F32) {
                const float* w = (const float*)weight->data + row;
                for (int64_t k = k0; k < k1; k++)
                    panel[k * PANEL + j] = w[k];
            } else if (weight->dtype == LLMK_DTYPE_BF16) {
                const uint16_t* w = (const uint16_t*)weight->data + row;
                for (int64_t k = k0; k < k1; k++)
                    panel[k * PANEL + j] = llmk_bf16_to_float(w[k]);
            } else {
                const uint16_t* w = (const uint16_t*)weight->data + row;
                for (int64_t k = k0; k < k1; k++)
                    panel[k * PANEL + j] = llmk_f16_to_float(w[k]);
            }
        }
    }
}

/* Wider vectors where the CPU has them. No FMA: an fma rounds once where mul + add rounds twice, so the
 * clones give bit-identical results. */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__)
#define LLMK_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LLMK_VECTOR_CLONES
#endif

/* y[rows, first_out .. first_out + PANEL) for count rows of f32 x (row stride x_stride), starting at y row
 * first_row. panel is this thread's scratch [in_features][PANEL]. */
LLMK_VECTOR_CLONES
static void compute_panel(const llmk_tensor* weight, const llmk_tensor* bias, llmk_tensor* y, const float* x_f32,
                          int64_t x_stride, int64_t first_row, int64_t count, int64_t first_out, float* panel) {
    const int64_t in_features = weight->shape[1], out_features = weight->shape[0];
    const int64_t outs = out_features - first_out < PANEL ? out_features - first_out : PANEL;
    pack_panel(weight, first_out, panel);
    for (int64_t r = 0; r < count;) {
        const int tile_rows = count - r >= TILE_ROWS ? TILE_ROWS : 1;
        const float* x_rows[TILE_ROWS];
        for (int i = 0; i < tile_rows; i++)
            x_rows[i] = x_f32 + (r + i) * x_stride;
        float acc[TILE_ROWS][PANEL];
        if (tile_rows == TILE_ROWS)
            tile(TILE_ROWS, x_rows, panel, in_features, acc);
        else
            tile(1, x_rows, panel, in_features, acc);
        for (int i = 0; i < tile_rows; i++) {
            const int64_t y_row = (first_row + r + i) * y->strides[0];
            for (int64_t j = 0; j < outs; j++) {
                float value = acc[i][j];
                if (bias)
                    value += llmk_load_float(bias->data, bias->dtype, (first_out + j) * bias->strides[0]);
                llmk_store_float(y->data, y->dtype, y_row + first_out + j, value);
            }
        }
        r += tile_rows;
    }
}

llmk_status llmk_cpu_linear(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight,
                            const llmk_tensor* bias, llmk_tensor* y) {
    const int64_t rows = x->shape[0], in_features = x->shape[1], out_features = weight->shape[0];
    const int64_t panels = (out_features + PANEL - 1) / PANEL;
    /* f32 x is read in place; other dtypes are widened ROW_CHUNK rows at a time, and before a quantized
     * weight x is rounded to 8-bit blocks (llmk_linear's contract). */
    const bool round_x = llmk_is_quantized(weight->dtype);
    const bool convert_x = x->dtype != LLMK_DTYPE_F32 || round_x;
    const int64_t chunk_rows = convert_x ? ROW_CHUNK : rows;

    float* panel_memory = (float*)malloc((size_t)ctx->num_threads * (size_t)(in_features > 0 ? in_features : 1) *
                                         PANEL * sizeof(float));
    float* x_chunk = convert_x ? (float*)malloc((size_t)ROW_CHUNK * (size_t)in_features * sizeof(float) + 1) : NULL;
    if (!panel_memory || (convert_x && !x_chunk)) {
        free(panel_memory);
        free(x_chunk);
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY,
                         "llmk_linear: out of host memory for the f32 scratch of %lld in_features x %d threads",
                         (long long)in_features, (int)ctx->num_threads);
    }

    for (int64_t first_row = 0; first_row < rows; first_row += chunk_rows) {
        const int64_t count = rows - first_row < chunk_rows ? rows - first_row : chunk_rows;
        /* With in_features == 0, x may have no data at all; the tile then reads nothing. */
        const float* x_f32 = in_features ? (const float*)x->data + first_row * x->strides[0] : panel_memory;
        int64_t x_stride = in_features ? x->strides[0] : 0;
        if (convert_x) {
#pragma omp parallel for num_threads(ctx->num_threads) schedule(static)
            for (int64_t r = 0; r < count; r++) {
                llmk_load_floats(x->data, x->dtype, (first_row + r) * x->strides[0], in_features,
                                 x_chunk + r * in_features);
                if (round_x)
                    llmk_round_row_q8(x_chunk + r * in_features, in_features, llmk_q8_group(weight->dtype));
            }
            x_f32 = x_chunk;
            x_stride = in_features;
        }

#pragma omp parallel for num_threads(ctx->num_threads) schedule(static)
        for (int64_t p = 0; p < panels; p++)
            compute_panel(weight, bias, y, x_f32, x_stride, first_row, count, p * PANEL,
                          panel_memory + (size_t)llmk_cpu_thread_index() * (size_t)in_features * PANEL);
    }
    free(panel_memory);
    free(x_chunk);
    return LLMK_STATUS_OK;
}
