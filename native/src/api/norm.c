/* RMSNorm and the fused residual add + RMSNorm: validation, then the backend. */
#include "internal.h"

#include <math.h>

/* What both entry points share: x [rows, hidden], weight [hidden], out like x, eps and flags. */
static llmk_status check_norm(const char* fn, llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight,
                              float eps, int32_t flags, const llmk_tensor* out) {
    LLMK_TRY(llmk_check_tensor(ctx, fn, "x", x, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "weight", weight, 1, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "out", out, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_dim(fn, "weight", weight, 0, x->shape[1], "hidden (x's last dimension)"));
    LLMK_TRY(llmk_check_same_shape(fn, "out", out, "x", x));
    LLMK_TRY(llmk_check_same_dtype(fn, "out", out, "x", x));
    if (!(eps > 0.0f) || isinf(eps))
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: eps is %g; expected a finite value > 0", fn, (double)eps);
    if (flags != LLMK_NORM_FLAGS_NONE && flags != LLMK_NORM_FLAGS_GEMMA)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: flags is %d; expected LLMK_NORM_FLAGS_NONE (0) or LLMK_NORM_FLAGS_GEMMA (1)", fn,
                         (int)flags);
    LLMK_TRY(llmk_check_no_self_overlap(fn, "out", out));
    /* Rows are read whole before they are written, so out may be x itself, but no other overlap works. */
    LLMK_TRY(llmk_check_no_overlap(fn, "x", x, "out", out, true));
    LLMK_TRY(llmk_check_no_overlap(fn, "weight", weight, "out", out, false));
    return LLMK_STATUS_OK;
}

llmk_status llmk_rms_norm(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight, float eps,
                          int32_t flags, llmk_tensor* out) {
    static const char fn[] = "llmk_rms_norm";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(check_norm(fn, ctx, x, weight, eps, flags, out));
    return LLMK_DISPATCH(rms_norm, ctx, x, weight, eps, flags, out);
}

llmk_status llmk_add_rms_norm(llmk_context* ctx, const llmk_tensor* x, llmk_tensor* residual,
                              const llmk_tensor* weight, float eps, int32_t flags, llmk_tensor* out) {
    static const char fn[] = "llmk_add_rms_norm";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(check_norm(fn, ctx, x, weight, eps, flags, out));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "residual", residual, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_same_shape(fn, "residual", residual, "x", x));
    LLMK_TRY(llmk_check_same_dtype(fn, "residual", residual, "x", x));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "residual", residual));
    /* residual is both read and written as the sum, so it must share memory with nothing else. */
    LLMK_TRY(llmk_check_no_overlap(fn, "x", x, "residual", residual, false));
    LLMK_TRY(llmk_check_no_overlap(fn, "out", out, "residual", residual, false));
    LLMK_TRY(llmk_check_no_overlap(fn, "weight", weight, "residual", residual, false));
    return LLMK_DISPATCH(add_rms_norm, ctx, x, residual, weight, eps, flags, out);
}
