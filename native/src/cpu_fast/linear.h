/* Fast linear layer, y = x W^T + bias, for f32 x and y and f32, f16 or bf16 weights (part of a flavour's
 * translation unit; see simd.h).
 *
 * No packing: every weight row is streamed from where it lies (the memory-mapped file) and widened in
 * registers. Decode (fewer than TILE_R rows) is memory-bound: each output is one dot product over one
 * weight row at a time, with four FMA chains. Prefill is compute-bound: a register tile takes TILE_R rows of
 * x and TILE_C weight rows and keeps one vector accumulator per output, lanes along k, over row blocks that
 * stay in L2 while the tile's weight rows stay in L1. An output's bits depend on which of the two it took
 * (so on the number of rows in the call), never on the thread or the chunk it fell in. Work items (row
 * block, output chunk) are claimed dynamically from the context's pool, so a thread that loses its core to
 * another process does not hold the others back. */

#if defined(LLMK_FAST_AVX512)
enum { TILE_R = 4, TILE_C = 6 }; /* 24 of 32 zmm accumulators */
#else
enum { TILE_R = 4, TILE_C = 3 }; /* 12 of 16 ymm accumulators */
#endif
enum { MAX_TILE = TILE_C };

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

/* x . w over k < K for one row against one weight row, as decode reads it: one weight stream at a time (the
 * prefetcher follows one stream far better than several interleaved rows) with four accumulators of
 * independent FMA chains over k in steps of 4 * VL, combined by a fixed tree. */
LLMK_INLINE float dot_row(int32_t wtype, const float* x, const void* w, int64_t K) {
    vfloat a0 = vsplat(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    for (; k + 4 * VL <= K; k += 4 * VL) {
        a0 += vload(x + k) * vload_as(wtype, w, k);
        a1 += vload(x + k + VL) * vload_as(wtype, w, k + VL);
        a2 += vload(x + k + 2 * VL) * vload_as(wtype, w, k + 2 * VL);
        a3 += vload(x + k + 3 * VL) * vload_as(wtype, w, k + 3 * VL);
    }
    for (; k + VL <= K; k += VL)
        a0 += vload(x + k) * vload_as(wtype, w, k);
    float s = vsum((a0 + a1) + (a2 + a3));
    for (; k < K; k++)
        s += x[k] * llmk_load_float(w, wtype, k);
    return s;
}

/* y[r, o0..o1) one weight row at a time (decode). */
LLMK_INLINE void linear_row(int32_t wtype, const linear_problem* p, int64_t r, int64_t o0, int64_t o1) {
    const float* x = p->x + r * p->x_stride;
    const int64_t row_bytes = p->w_stride * (int64_t)llmk_dtype_size(wtype);
    for (int64_t o = o0; o < o1; o++) {
        float value = dot_row(wtype, x, (const char*)p->w + o * row_bytes, p->K);
        if (p->bias)
            value += llmk_load_float(p->bias->data, p->bias->dtype, o * p->bias->strides[0]);
        p->y[r * p->y_stride + o] = value;
    }
}

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
        for (int64_t r = r0; r < r1; r++)
            linear_row(wtype, p, r, o0, o1);
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

typedef struct linear_job {
    linear_problem p;
    fast_grid grid;
} linear_job;

static void linear_item(void* arg, int64_t item, int thread) {
    (void)thread;
    const linear_job* job = (const linear_job*)arg;
    int64_t r0, r1, o0, o1;
    fast_grid_item(&job->grid, item, &r0, &r1, &o0, &o1);
    switch (job->p.wtype) {
    case LLMK_DTYPE_F32: linear_block(LLMK_DTYPE_F32, &job->p, r0, r1, o0, o1); break;
    case LLMK_DTYPE_BF16: linear_block(LLMK_DTYPE_BF16, &job->p, r0, r1, o0, o1); break;
    default: linear_block(LLMK_DTYPE_F16, &job->p, r0, r1, o0, o1); break;
    }
}

static llmk_status fast_linear(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight,
                               const llmk_tensor* bias, llmk_tensor* y) {
    const int64_t rows = x->shape[0], K = x->shape[1], outs = weight->shape[0];
    if (x->dtype != LLMK_DTYPE_F32 || y->dtype != LLMK_DTYPE_F32 || K == 0)
        return llmk_cpu_linear(ctx, x, weight, bias, y);
    if (llmk_is_quantized(weight->dtype))
        return fast_linear_quantized(ctx, x, weight, bias, y);
    linear_job job = {{(const float*)x->data, x->strides[0], weight->data, weight->dtype, weight->strides[0], bias,
                       (float*)y->data, y->strides[0], K},
                      {0}};
    /* Row blocks of x (in multiples of the tile): each block streams all of W once, so f32 weights, twice the
     * bytes of half ones, take blocks of 1 MiB of x (from L3) and half weights blocks of 256 KiB (half of L2):
     * measured best on the Zen 3 VM (bench/results). Output chunks so that every thread gets several items,
     * but at least a few tiles each. */
    const int64_t x_block_bytes = weight->dtype == LLMK_DTYPE_F32 ? 1024 * 1024 : 256 * 1024;
    int64_t row_block = x_block_bytes / (4 * K);
    row_block = row_block < TILE_R ? TILE_R : row_block > 128 ? 128 : row_block / TILE_R * TILE_R;
    const int64_t unit = TILE_C * 4; /* chunks of whole prefill tiles, four at least */
    job.grid = fast_grid_of(ctx, rows, outs, row_block, unit, 256, unit);
    LLMK_TRY(fast_enter(ctx, "llmk_linear"));
    llmk_cpu_parallel(ctx, job.grid.row_blocks * job.grid.chunks, linear_item, &job);
    return fast_leave(ctx, LLMK_STATUS_OK);
}
