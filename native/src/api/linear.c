/* Linear layer (y = x W^T + bias): validation, then dispatch to the backend. */
#include "internal.h"
#include "quant.h"

llmk_status llmk_linear(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight, const llmk_tensor* bias,
                        llmk_tensor* y) {
    static const char fn[] = "llmk_linear";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "x", x, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "weight", weight, 2, LLMK_FLOATING | LLMK_QUANTIZED, LLMK_CHECK_DEFAULT));
    const int64_t rows = x->shape[0], in_features = x->shape[1], out_features = weight->shape[0];
    LLMK_TRY(llmk_check_dim(fn, "weight", weight, 1, in_features, "in_features (x's dimension 1)"));
    if (bias) {
        LLMK_TRY(llmk_check_tensor(ctx, fn, "bias", bias, 1, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
        LLMK_TRY(llmk_check_dim(fn, "bias", bias, 0, out_features, "out_features (weight's dimension 0)"));
    }
    LLMK_TRY(llmk_check_tensor(ctx, fn, "y", y, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_dim(fn, "y", y, 0, rows, "rows (x's dimension 0)"));
    LLMK_TRY(llmk_check_dim(fn, "y", y, 1, out_features, "out_features (weight's dimension 0)"));
    LLMK_TRY(llmk_check_same_dtype(fn, "y", y, "x", x));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "y", y));
    LLMK_TRY(llmk_check_no_overlap(fn, "x", x, "y", y, false));
    LLMK_TRY(llmk_check_no_overlap(fn, "weight", weight, "y", y, false));
    if (bias)
        LLMK_TRY(llmk_check_no_overlap(fn, "bias", bias, "y", y, false));
    if (rows == 0 || out_features == 0)
        return LLMK_STATUS_OK;
    return LLMK_DISPATCH(linear, ctx, x, weight, bias, y);
}
