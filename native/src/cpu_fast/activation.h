/* Fast SwiGLU for f32 rows (part of a flavour's translation unit; see simd.h): silu(g) * u = g * u /
 * (1 + exp(-g)) with the vector exp. GeGLU and other dtypes run the reference. */

enum { SILU_CHUNK = 4096 };

typedef struct silu_job {
    const llmk_tensor *gate, *up, *out;
    int64_t chunks, d;
} silu_job;

static void silu_item(void* arg, int64_t item, int thread) {
    (void)thread;
    const silu_job* job = (const silu_job*)arg;
    const int64_t r = item / job->chunks, j0 = item % job->chunks * SILU_CHUNK;
    const int64_t j1 = j0 + SILU_CHUNK < job->d ? j0 + SILU_CHUNK : job->d;
    const float* g = (const float*)job->gate->data + r * job->gate->strides[0];
    const float* u = (const float*)job->up->data + r * job->up->strides[0];
    float* o = (float*)job->out->data + r * job->out->strides[0];
    int64_t j = j0;
    for (; j + VL <= j1; j += VL) {
        const vfloat gv = vload(g + j);
        vstore(o + j, gv * vload(u + j) / (1.0f + vexp(-gv)));
    }
    for (; j < j1; j++)
        o[j] = g[j] * u[j] / (1.0f + expf(-g[j]));
}

static llmk_status fast_gated_activation_split(llmk_context* ctx, int32_t activation, const llmk_tensor* gate,
                                               const llmk_tensor* up, llmk_tensor* out) {
    if (activation != LLMK_ACTIVATION_SILU || gate->dtype != LLMK_DTYPE_F32 || up->dtype != LLMK_DTYPE_F32 ||
        out->dtype != LLMK_DTYPE_F32)
        return llmk_cpu_gated_activation_split(ctx, activation, gate, up, out);
    const int64_t rows = gate->shape[0], d = gate->shape[1];
    if (rows == 0 || d == 0)
        return LLMK_STATUS_OK;
    /* Rows split into chunks of SILU_CHUNK elements, so a prefill's rows spread over the threads. */
    silu_job job = {gate, up, out, (d + SILU_CHUNK - 1) / SILU_CHUNK, d};
    const int64_t items = rows * job.chunks;
    if (rows * d <= 32768) { /* a decode step's row: not worth waking the pool */
        for (int64_t item = 0; item < items; item++)
            silu_item(&job, item, 0);
        return LLMK_STATUS_OK;
    }
    LLMK_TRY(fast_enter(ctx, "llmk_gated_activation"));
    llmk_cpu_parallel(ctx, items, silu_item, &job);
    return fast_leave(ctx, LLMK_STATUS_OK);
}
