/* Fast SwiGLU for f32 rows (part of a flavour's translation unit; see simd.h): silu(g) * u = g * u /
 * (1 + exp(-g)) with the vector exp. GeGLU and other dtypes run the reference. */

static llmk_status fast_gated_activation_split(llmk_context* ctx, int32_t activation, const llmk_tensor* gate,
                                               const llmk_tensor* up, llmk_tensor* out) {
    if (activation != LLMK_ACTIVATION_SILU || gate->dtype != LLMK_DTYPE_F32 || up->dtype != LLMK_DTYPE_F32 ||
        out->dtype != LLMK_DTYPE_F32)
        return llmk_cpu_gated_activation_split(ctx, activation, gate, up, out);
    const int64_t rows = gate->shape[0], d = gate->shape[1];
    if (rows == 0 || d == 0)
        return LLMK_STATUS_OK;
    /* Rows split into chunks of about 16K elements, so a decode step's single row is shared too. */
    enum { CHUNK = 4096 };
    const int64_t chunks = (d + CHUNK - 1) / CHUNK, items = rows * chunks;
#pragma omp parallel for num_threads(ctx->num_threads) schedule(dynamic, 4) if (items * CHUNK > 32768)
    for (int64_t item = 0; item < items; item++) {
        const int64_t r = item / chunks, j0 = item % chunks * CHUNK, j1 = j0 + CHUNK < d ? j0 + CHUNK : d;
        const float* g = (const float*)gate->data + r * gate->strides[0];
        const float* u = (const float*)up->data + r * up->strides[0];
        float* o = (float*)out->data + r * out->strides[0];
        int64_t j = j0;
        for (; j + VL <= j1; j += VL) {
            const vfloat gv = vload(g + j);
            vstore(o + j, gv * vload(u + j) / (1.0f + vexp(-gv)));
        }
        for (; j < j1; j++)
            o[j] = g[j] * u[j] / (1.0f + expf(-g[j]));
    }
    return LLMK_STATUS_OK;
}
