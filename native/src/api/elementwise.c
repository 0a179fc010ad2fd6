/* Elementwise and data movement: add, convert, embedding. Validation, then dispatch to the backend. */
#include "internal.h"
#include "quant.h"

static bool is_floating(int32_t dtype) { return (LLMK_FLOATING & LLMK_DTYPE_BIT(dtype)) != 0; }

llmk_status llmk_add(llmk_context* ctx, const llmk_tensor* a, const llmk_tensor* b, llmk_tensor* out) {
    static const char fn[] = "llmk_add";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "a", a, 0, LLMK_FLOATING, LLMK_CHECK_ANY_STRIDE));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "b", b, 0, LLMK_FLOATING, LLMK_CHECK_ANY_STRIDE));
    LLMK_TRY(llmk_check_same_shape(fn, "b", b, "a", a));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "out", out, 0, LLMK_FLOATING, LLMK_CHECK_ANY_STRIDE));
    LLMK_TRY(llmk_check_same_shape(fn, "out", out, "a", a));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "out", out));
    LLMK_TRY(llmk_check_no_overlap(fn, "a", a, "out", out, true));
    LLMK_TRY(llmk_check_no_overlap(fn, "b", b, "out", out, true));
    if (llmk_numel(out) == 0)
        return LLMK_STATUS_OK;
    return LLMK_DISPATCH(add, ctx, a, b, out);
}

llmk_status llmk_convert(llmk_context* ctx, const llmk_tensor* src, llmk_tensor* out) {
    static const char fn[] = "llmk_convert";
    const uint32_t any = LLMK_FLOATING | LLMK_INDEX | LLMK_QUANTIZED;
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "src", src, 0, any, LLMK_CHECK_ANY_STRIDE));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "out", out, 0, any, LLMK_CHECK_ANY_STRIDE));
    /* a quantized side counts as floating */
    const bool src_floating = is_floating(src->dtype) || llmk_is_quantized(src->dtype);
    const bool out_floating = is_floating(out->dtype) || llmk_is_quantized(out->dtype);
    if (src_floating != out_floating || (llmk_is_quantized(src->dtype) && llmk_is_quantized(out->dtype)))
        return llmk_fail(LLMK_STATUS_DTYPE_MISMATCH,
                         "%s: src has dtype %s but out has dtype %s; conversions are floating <-> floating, "
                         "integer <-> integer or quantized <-> floating",
                         fn, llmk_dtype_name(src->dtype), llmk_dtype_name(out->dtype));
    LLMK_TRY(llmk_check_same_shape(fn, "out", out, "src", src));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "out", out));
    LLMK_TRY(llmk_check_no_overlap(fn, "src", src, "out", out, true));
    if (llmk_numel(out) == 0)
        return LLMK_STATUS_OK;
    return LLMK_DISPATCH(convert, ctx, src, out);
}

llmk_status llmk_embedding(llmk_context* ctx, const llmk_tensor* table, const llmk_tensor* ids, llmk_tensor* out) {
    static const char fn[] = "llmk_embedding";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "table", table, 2, LLMK_FLOATING | LLMK_QUANTIZED, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "ids", ids, 1, LLMK_INDEX, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "out", out, 2, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_dim(fn, "out", out, 0, ids->shape[0], "tokens (ids' length)"));
    LLMK_TRY(llmk_check_dim(fn, "out", out, 1, table->shape[1], "hidden (table's dimension 1)"));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "out", out));
    LLMK_TRY(llmk_check_no_overlap(fn, "table", table, "out", out, false));
    LLMK_TRY(llmk_check_no_overlap(fn, "ids", ids, "out", out, false));
    if (ids->shape[0] == 0)
        return LLMK_STATUS_OK;
    return LLMK_DISPATCH(embedding, ctx, table, ids, out);
}
