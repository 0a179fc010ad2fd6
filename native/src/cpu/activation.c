/* CPU reference of the gated activations: out = act(gate) * up, f32 arithmetic, one row per iteration. */
#include "internal.h"

#include <math.h>

static float silu(float g) { return g / (1.0f + expf(-g)); }

/* tanh approximation of GELU, as torch's gelu(approximate="tanh"). */
static float gelu_tanh(float g) {
    const float sqrt_2_over_pi = 0.7978845608028654f;
    return 0.5f * g * (1.0f + tanhf(sqrt_2_over_pi * (g + 0.044715f * g * g * g)));
}

llmk_status llmk_cpu_gated_activation_split(llmk_context* ctx, int32_t activation, const llmk_tensor* gate,
                                            const llmk_tensor* up, llmk_tensor* out) {
    const int64_t rows = gate->shape[0], d = gate->shape[1];
    const bool is_silu = activation == LLMK_ACTIVATION_SILU;
    if (rows == 0 || d == 0)
        return LLMK_STATUS_OK;
#pragma omp parallel for num_threads(ctx->num_threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t go = r * gate->strides[0], uo = r * up->strides[0], oo = r * out->strides[0];
        for (int64_t j = 0; j < d; j++) {
            float g = llmk_load_float(gate->data, gate->dtype, go + j);
            float u = llmk_load_float(up->data, up->dtype, uo + j);
            llmk_store_float(out->data, out->dtype, oo + j, (is_silu ? silu(g) : gelu_tanh(g)) * u);
        }
    }
    return LLMK_STATUS_OK;
}
