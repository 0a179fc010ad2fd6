/* Gated activations (SwiGLU, GeGLU): validation, then the backend's split op. The fused [rows, 2d] form is
 * two strided views of the same buffer, so backends implement the split form only. */
#include "internal.h"

static llmk_status check_activation(const char* fn, int32_t activation) {
    if (activation < 0 || activation >= LLMK_ACTIVATION_COUNT)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: activation is %d; expected LLMK_ACTIVATION_SILU (0) or LLMK_ACTIVATION_GELU_TANH (1)",
                         fn, (int)activation);
    return LLMK_STATUS_OK;
}

llmk_status llmk_gated_activation_split(llmk_context* ctx, int32_t activation, const llmk_tensor* gate,
                                        const llmk_tensor* up, llmk_tensor* out) {
    static const char fn[] = "llmk_gated_activation_split";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(check_activation(fn, activation));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "gate", gate, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "up", up, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "out", out, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_same_shape(fn, "up", up, "gate", gate));
    LLMK_TRY(llmk_check_same_shape(fn, "out", out, "gate", gate));
    LLMK_TRY(llmk_check_same_dtype(fn, "up", up, "gate", gate));
    LLMK_TRY(llmk_check_same_dtype(fn, "out", out, "gate", gate));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "out", out));
    /* Elementwise: each output reads only the same element of gate and up, so exact aliases are safe. */
    LLMK_TRY(llmk_check_no_overlap(fn, "gate", gate, "out", out, true));
    LLMK_TRY(llmk_check_no_overlap(fn, "up", up, "out", out, true));
    return LLMK_DISPATCH(gated_activation_split, ctx, activation, gate, up, out);
}

llmk_status llmk_gated_activation(llmk_context* ctx, int32_t activation, const llmk_tensor* gate_up,
                                  llmk_tensor* out) {
    static const char fn[] = "llmk_gated_activation";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(check_activation(fn, activation));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "gate_up", gate_up, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "out", out, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    if (gate_up->shape[1] % 2 != 0) {
        char shape[96];
        llmk_format_shape(gate_up, shape, sizeof shape);
        return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH,
                         "%s: gate_up has shape %s; its last dimension must be even (gate and up halves, 2 * d)", fn,
                         shape);
    }
    int64_t d = gate_up->shape[1] / 2;
    LLMK_TRY(llmk_check_dim(fn, "out", out, 0, gate_up->shape[0], "rows (gate_up's first dimension)"));
    LLMK_TRY(llmk_check_dim(fn, "out", out, 1, d, "d (half of gate_up's last dimension)"));
    LLMK_TRY(llmk_check_same_dtype(fn, "out", out, "gate_up", gate_up));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "out", out));
    LLMK_TRY(llmk_check_no_overlap(fn, "gate_up", gate_up, "out", out, false));

    llmk_tensor gate = *gate_up, up = *gate_up;
    gate.shape[1] = d;
    up.shape[1] = d;
    if (llmk_numel(&up) > 0) /* the data of an empty view may be NULL: no pointer arithmetic on it */
        up.data = (char*)gate_up->data + (size_t)d * llmk_dtype_size(gate_up->dtype);
    return LLMK_DISPATCH(gated_activation_split, ctx, activation, &gate, &up, out);
}
