/* Fast linear layer, y = x W^T + bias, for f32 x and y and f32, f16 or bf16 weights (part of a flavour's
 * translation unit; see simd.h).
 *
 * No packing: every weight row is streamed from where it lies (the memory-mapped file) and widened in
 * registers. A register tile takes R rows of x and C weight rows and keeps R x C vector accumulators, one per
 * output, lanes running along k; each output then ends with one fixed lane tree plus the scalar tail. So an
 * output's bits do not depend on the tile it fell in, the rows batched with it or the thread that ran it.
 * Decode (few rows) runs 1 x DECODE_C tiles: DECODE_C independent FMA chains over DECODE_C weight streams,
 * memory-bound. Prefill runs TILE_R x TILE_C tiles over row blocks that stay in L2 while a thread's weight
 * rows stay in L1: compute-bound. Work items (row block, output chunk) are taken dynamically, so a thread
 * that loses its core to another process does not hold the others back. */

#if defined(LLMK_FAST_AVX512)
enum { TILE_R = 4, TILE_C = 6 }; /* 24 of 32 zmm accumulators */
#else
enum { TILE_R = 4, TILE_C = 3 }; /* 12 of 16 ymm accumulators */
#endif
enum { DECODE_C = 4, MAX_TILE = TILE_C > DECODE_C ? TILE_C : DECODE_C };

/* out[i][j] = x_i . w_j for i < R, j < C, over k < K. R, C and wtype are constants where it is inlined. */
LLMK_INLINE void dot_tile(int R, int C, int32_t wtype, const float* const* x, const void* const* w, int64_t K,
                          float out[TILE_R][MAX_TILE]) {
    vfloat acc[TILE_R][MAX_TILE];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++)
            acc[i][j] = vsplat(0.0f);
    int64_t k = 0;
    for (; k + VL <= K; k += VL) {
        vfloat wv[MAX_TILE];
        for (int j = 0; j < C; j++)
            wv[j] = vload_as(wtype, w[j], k);
        for (int i = 0; i < R; i++) {
            const vfloat xv = vload(x[i] + k);
            for (int j = 0; j < C; j++)
                acc[i][j] += xv * wv[j];
        }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            float s = vsum(acc[i][j]);
            for (int64_t t = k; t < K; t++)
                s += x[i][t] * llmk_load_float(w[j], wtype, t);
            out[i][j] = s;
        }
}

typedef struct linear_problem {
    const float* x;
    int64_t x_stride;
    const void* w;
    int32_t wtype;
    int64_t w_stride;
    const llmk_tensor* bias;
    float* y;
    int64_t y_stride;
    int64_t K;
} linear_problem;

/* y[r0..r0+R, o0..o0+C) through one tile. */
LLMK_INLINE void linear_tile(int R, int C, int32_t wtype, const linear_problem* p, int64_t r0, int64_t o0) {
    const float* x[TILE_R];
    const void* w[MAX_TILE];
    for (int i = 0; i < R; i++)
        x[i] = p->x + (r0 + i) * p->x_stride;
    for (int j = 0; j < C; j++)
        w[j] = (const char*)p->w + (o0 + j) * p->w_stride * (int64_t)llmk_dtype_size(wtype);
    float out[TILE_R][MAX_TILE];
    dot_tile(R, C, wtype, x, w, p->K, out);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            float value = out[i][j];
            if (p->bias)
                value += llmk_load_float(p->bias->data, p->bias->dtype, (o0 + j) * p->bias->strides[0]);
            p->y[(r0 + i) * p->y_stride + o0 + j] = value;
        }
}

/* Rows [r0, r1) x outputs [o0, o1). */
LLMK_INLINE void linear_block(int32_t wtype, const linear_problem* p, int64_t r0, int64_t r1, int64_t o0,
                              int64_t o1) {
    if (r1 - r0 < TILE_R) {
        for (int64_t r = r0; r < r1; r++) {
            int64_t o = o0;
            for (; o + DECODE_C <= o1; o += DECODE_C)
                linear_tile(1, DECODE_C, wtype, p, r, o);
            for (; o < o1; o++)
                linear_tile(1, 1, wtype, p, r, o);
        }
        return;
    }
    int64_t o = o0;
    for (; o + TILE_C <= o1; o += TILE_C) {
        int64_t r = r0;
        for (; r + TILE_R <= r1; r += TILE_R)
            linear_tile(TILE_R, TILE_C, wtype, p, r, o);
        for (; r < r1; r++)
            linear_tile(1, TILE_C, wtype, p, r, o);
    }
    for (; o < o1; o++) {
        int64_t r = r0;
        for (; r + TILE_R <= r1; r += TILE_R)
            linear_tile(TILE_R, 1, wtype, p, r, o);
        for (; r < r1; r++)
            linear_tile(1, 1, wtype, p, r, o);
    }
}

static llmk_status fast_linear(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight,
                               const llmk_tensor* bias, llmk_tensor* y) {
    if (x->dtype != LLMK_DTYPE_F32 || y->dtype != LLMK_DTYPE_F32)
        return llmk_cpu_linear(ctx, x, weight, bias, y);
    const int64_t rows = x->shape[0], K = x->shape[1], outs = weight->shape[0];
    const linear_problem p = {(const float*)x->data, x->strides[0], weight->data, weight->dtype,
                              weight->strides[0], bias, (float*)y->data, y->strides[0], K};
    /* Row blocks of x that fit in half of L2 (in multiples of the tile); output chunks so that every thread
     * gets several items, but at least a few tiles each. */
    int64_t row_block = (256 * 1024) / (4 * (K > 0 ? K : 1));
    row_block = row_block < TILE_R ? TILE_R : row_block > 64 ? 64 : row_block / TILE_R * TILE_R;
    const int64_t row_blocks = (rows + row_block - 1) / row_block;
    const int64_t threads = ctx->num_threads;
    int64_t chunk = outs * row_blocks / (threads * 8);
    const int64_t unit = TILE_C * DECODE_C;
    chunk = chunk < unit ? unit : chunk > 256 ? 256 : chunk / unit * unit;
    const int64_t chunks = (outs + chunk - 1) / chunk;
    const int64_t items = row_blocks * chunks;
    const int32_t wtype = weight->dtype;
#pragma omp parallel for num_threads(ctx->num_threads) schedule(dynamic, 1) if (items > 1)
    for (int64_t item = 0; item < items; item++) {
        const int64_t rb = item / chunks, c = item % chunks;
        const int64_t r0 = rb * row_block, r1 = r0 + row_block < rows ? r0 + row_block : rows;
        const int64_t o0 = c * chunk, o1 = o0 + chunk < outs ? o0 + chunk : outs;
        switch (wtype) {
        case LLMK_DTYPE_F32: linear_block(LLMK_DTYPE_F32, &p, r0, r1, o0, o1); break;
        case LLMK_DTYPE_BF16: linear_block(LLMK_DTYPE_BF16, &p, r0, r1, o0, o1); break;
        default: linear_block(LLMK_DTYPE_F16, &p, r0, r1, o0, o1); break;
        }
    }
    return LLMK_STATUS_OK;
}
