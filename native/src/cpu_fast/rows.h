/* RMSNorm, add + RMSNorm and RoPE on the pool (part of a flavour's translation unit; see simd.h): the
 * reference kernels, each work item running them on a slice of rows. They are row-independent, so the bits are
 * the reference's; inside a fast context the reference itself runs on one thread (cpu_threads.h), and without
 * this a prefill's norms and ropes would use one core of the pool's. */

enum { ROWS_MIN_WORK = 1 << 15, ROWS_ITEM_WORK = 1 << 14 }; /* elements: below, one thread; per item */

/* Rows [r0, r0 + count) of t (its first dimension). */
static llmk_tensor row_slice(const llmk_tensor* t, int64_t r0, int64_t count) {
    llmk_tensor s = *t;
    s.data = (char*)t->data + r0 * t->strides[0] * (int64_t)llmk_dtype_size(t->dtype);
    s.shape[0] = count;
    return s;
}

typedef struct rows_job {
    llmk_context* ctx;
    int32_t op; /* 0 rms_norm, 1 add_rms_norm, 2 rope */
    const llmk_tensor *x, *weight, *positions;
    llmk_tensor *residual, *out, *q, *k;
    float eps;
    int32_t flags;
    const float* inv_freq;
    float attention_factor;
    int32_t style, rotary_dim;
    int64_t rows, per_item;
} rows_job;

static void rows_item(void* arg, int64_t item, int thread) {
    (void)thread;
    const rows_job* j = (const rows_job*)arg;
    const int64_t r0 = item * j->per_item, n = r0 + j->per_item < j->rows ? j->per_item : j->rows - r0;
    /* The reference kernels only report data-dependent errors (positions), checked before the split. */
    if (j->op == 2) {
        llmk_tensor positions = row_slice(j->positions, r0, n), q = row_slice(j->q, r0, n), k;
        if (j->k)
            k = row_slice(j->k, r0, n);
        (void)llmk_cpu_rope(j->ctx, &positions, j->inv_freq, j->attention_factor, j->style, j->rotary_dim, &q,
                            j->k ? &k : NULL);
        return;
    }
    llmk_tensor x = row_slice(j->x, r0, n), out = row_slice(j->out, r0, n);
    if (j->op == 0) {
        (void)llmk_cpu_rms_norm(j->ctx, &x, j->weight, j->eps, j->flags, &out);
    } else {
        llmk_tensor residual = row_slice(j->residual, r0, n);
        (void)llmk_cpu_add_rms_norm(j->ctx, &x, &residual, j->weight, j->eps, j->flags, &out);
    }
}

/* Runs the job over the pool, or at once on this thread when the work is small. */
static llmk_status run_rows(llmk_context* ctx, rows_job* job, int64_t width, const char* fn) {
    job->ctx = ctx;
    job->per_item = ROWS_ITEM_WORK / (width > 0 ? width : 1);
    job->per_item = job->per_item < 1 ? 1 : job->per_item;
    const int64_t items = (job->rows + job->per_item - 1) / job->per_item;
    if (job->rows * width < ROWS_MIN_WORK) {
        job->per_item = job->rows;
        if (job->rows > 0)
            rows_item(job, 0, 0);
        return LLMK_STATUS_OK;
    }
    LLMK_TRY(fast_enter(ctx, fn));
    llmk_cpu_parallel(ctx, items, rows_item, job);
    return fast_leave(ctx, LLMK_STATUS_OK);
}

static llmk_status fast_rms_norm(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight, float eps,
                                 int32_t flags, llmk_tensor* out) {
    rows_job job = {0};
    job.op = 0, job.x = x, job.weight = weight, job.out = out, job.eps = eps, job.flags = flags, job.rows = x->shape[0];
    return run_rows(ctx, &job, x->shape[1], "llmk_rms_norm");
}

static llmk_status fast_add_rms_norm(llmk_context* ctx, const llmk_tensor* x, llmk_tensor* residual,
                                     const llmk_tensor* weight, float eps, int32_t flags, llmk_tensor* out) {
    rows_job job = {0};
    job.op = 1, job.x = x, job.residual = residual, job.weight = weight, job.out = out, job.eps = eps;
    job.flags = flags, job.rows = x->shape[0];
    return run_rows(ctx, &job, x->shape[1], "llmk_add_rms_norm");
}

static llmk_status fast_rope(llmk_context* ctx, const llmk_tensor* positions, const float* inv_freq,
                             float attention_factor, int32_t style, int32_t rotary_dim, llmk_tensor* q,
                             llmk_tensor* k) {
    const int64_t tokens = q->shape[0];
    for (int64_t t = 0; t < tokens; t++) /* every position is checked before anything is written */
        if (llmk_load_index(positions->data, positions->dtype, t * positions->strides[0]) < 0)
            return llmk_cpu_rope(ctx, positions, inv_freq, attention_factor, style, rotary_dim, q, k);
    rows_job job = {0};
    job.op = 2, job.positions = positions, job.q = q, job.k = k, job.inv_freq = inv_freq;
    job.attention_factor = attention_factor, job.style = style, job.rotary_dim = rotary_dim, job.rows = tokens;
    return run_rows(ctx, &job, (q->shape[1] + (k ? k->shape[1] : 0)) * rotary_dim, "llmk_rope");
}
