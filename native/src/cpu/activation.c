/* CPU reference of the gated activations: out = act(gate) * up, f32 arithmetic, one row per iteration. Rows
 * are walked in chunks converted to f32 through stack buffers, so no loop switches on a dtype. */
#include "cpu_threads.h"
#include "internal.h"

#include <math.h>

enum { CHUNK = 1024 };

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
#pragma omp parallel for num_threads(llmk_cpu_team(ctx, rows * d)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float result[CHUNK], buffer[CHUNK];
        int64_t go = r * gate->strides[0], uo = r * up->strides[0], oo = r * out->strides[0];
        for (int64_t j0 = 0; j0 < d; j0 += CHUNK) {
            const int64_t n = d - j0 < CHUNK ? d - j0 : CHUNK;
            const float* g = llmk_floats_at(gate->data, gate->dtype, go + j0, n, result); /* may be result */
            const float* u = llmk_floats_at(up->data, up->dtype, uo + j0, n, buffer);
            if (is_silu)
                for (int64_t j = 0; j < n; j++)
                    result[j] = silu(g[j]) * u[j];
            else
                for (int64_t j = 0; j < n; j++)
                    result[j] = gelu_tanh(g[j]) * u[j];
            llmk_store_floats(out->data, out->dtype, oo + j0, n, result);
        }
    }
    return LLMK_STATUS_OK;
}
