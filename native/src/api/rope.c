/* Rotary position embeddings: the Hugging Face transformers frequency formulas (modeling_rope_utils.py,
 * ROPE_INIT_FUNCTIONS) computed once on the host, then the backend rotates q and k in place. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

static const double PI = 3.14159265358979323846;

static const char* scaling_name(int32_t scaling) {
    static const char* const names[LLMK_ROPE_SCALING_COUNT] = {"default", "linear", "dynamic", "llama3", "yarn"};
    return names[scaling];
}

static bool finite_at_least(float value, float minimum) { return isfinite(value) && value >= minimum; }

/* Validates params for a head of head_dim (0: rotary_dim) and resolves rotary_dim. fn names the caller. */
static llmk_status check_params(const char* fn, const llmk_rope_params* p, int64_t head_dim,
                                int32_t* out_rotary_dim) {
    if (!p)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: params is NULL", fn);
    if (p->style < 0 || p->style >= LLMK_ROPE_STYLE_COUNT)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params->style is %d; expected LLMK_ROPE_STYLE_NEOX (0) or LLMK_ROPE_STYLE_GPTJ (1)", fn,
                         (int)p->style);
    if (p->scaling < 0 || p->scaling >= LLMK_ROPE_SCALING_COUNT)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params->scaling is %d; expected an llmk_rope_scaling value 0..%d", fn, (int)p->scaling,
                         LLMK_ROPE_SCALING_COUNT - 1);
    if (head_dim < 0 || head_dim > INT32_MAX)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: head_dim is %lld; expected 0..%d", fn,
                         (long long)head_dim, INT32_MAX);
    if (p->rotary_dim < 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params->rotary_dim is %d; expected >= 0 (0: head_dim)",
                         fn, (int)p->rotary_dim);
    int32_t rotary_dim = p->rotary_dim ? p->rotary_dim : (int32_t)head_dim;
    if (rotary_dim == 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params->rotary_dim and head_dim are both 0", fn);
    if (rotary_dim % 2 != 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params->rotary_dim is %d (from %s); expected an even number (features rotate in pairs)",
                         fn, (int)rotary_dim, p->rotary_dim ? "params->rotary_dim" : "head_dim");
    if (head_dim != 0 && rotary_dim > head_dim)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params->rotary_dim is %d; expected <= head_dim = %lld",
                         fn, (int)rotary_dim, (long long)head_dim);
    if (!(isfinite(p->theta) && p->theta > 0.0f))
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params->theta is %g; expected a finite value > 0", fn,
                         (double)p->theta);

    const int32_t s = p->scaling;
    if (s != LLMK_ROPE_SCALING_DEFAULT && !(isfinite(p->factor) && p->factor > 0.0f))
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params->factor is %g; %s scaling needs a finite factor > 0 (1 = no scaling)", fn,
                         (double)p->factor, scaling_name(s));
    if ((s == LLMK_ROPE_SCALING_DYNAMIC || s == LLMK_ROPE_SCALING_LLAMA3 || s == LLMK_ROPE_SCALING_YARN) &&
        p->original_max_position <= 0)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params->original_max_position is %d; %s scaling needs original_max_position_embeddings "
                         "> 0",
                         fn, (int)p->original_max_position, scaling_name(s));
    if (s == LLMK_ROPE_SCALING_DYNAMIC) {
        if (p->seq_len < 0)
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                             "%s: params->seq_len is %d; expected >= 0 (0: original_max_position)", fn,
                             (int)p->seq_len);
        if (rotary_dim == 2) /* the NTK exponent dim / (dim - 2) */
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                             "%s: params->rotary_dim is 2; dynamic NTK scaling needs rotary_dim >= 4", fn);
    }
    if (s == LLMK_ROPE_SCALING_LLAMA3) {
        if (!finite_at_least(p->low_freq_factor, 0.0f) || !finite_at_least(p->high_freq_factor, 0.0f))
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                             "%s: params->low_freq_factor is %g and params->high_freq_factor is %g; expected finite "
                             "values >= 0 (0: defaults 1 and 4)",
                             fn, (double)p->low_freq_factor, (double)p->high_freq_factor);
        float low = p->low_freq_factor ? p->low_freq_factor : 1.0f;
        float high = p->high_freq_factor ? p->high_freq_factor : 4.0f;
        if (!(high > low)) /* the smoothing divides by high - low */
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                             "%s: params->high_freq_factor (%g) must be greater than params->low_freq_factor (%g)", fn,
                             (double)high, (double)low);
    }
    if (s == LLMK_ROPE_SCALING_YARN) {
        if (!finite_at_least(p->beta_fast, 0.0f) || !finite_at_least(p->beta_slow, 0.0f))
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                             "%s: params->beta_fast is %g and params->beta_slow is %g; expected finite values >= 0 "
                             "(0: defaults 32 and 1)",
                             fn, (double)p->beta_fast, (double)p->beta_slow);
        if (!finite_at_least(p->mscale, 0.0f) || !finite_at_least(p->mscale_all_dim, 0.0f))
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                             "%s: params->mscale is %g and params->mscale_all_dim is %g; expected finite values >= 0 "
                             "(0: unused)",
                             fn, (double)p->mscale, (double)p->mscale_all_dim);
        if (!finite_at_least(p->attention_factor, 0.0f))
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                             "%s: params->attention_factor is %g; expected a finite value >= 0 (0: transformers' "
                             "default)",
                             fn, (double)p->attention_factor);
        if (p->truncate != 0 && p->truncate != 1)
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params->truncate is %d; expected 0 or 1", fn,
                             (int)p->truncate);
        if (p->theta == 1.0f) /* the correction range divides by ln(theta) */
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT, "%s: params->theta is 1; yarn scaling needs theta != 1",
                             fn);
    }
    *out_rotary_dim = rotary_dim;
    return LLMK_STATUS_OK;
}

/* YaRN's get_mscale: 0.1 * mscale * ln(scale) + 1, and 1 without scaling. */
static double yarn_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* The dimension (of dim) whose wavelength turns num_rotations times over max_position. */
static double yarn_correction_dim(double num_rotations, double dim, double base, double max_position) {
    return dim * log(max_position / (num_rotations * 2.0 * PI)) / (2.0 * log(base));
}

/* inv_freq[dim / 2] and the cos/sin multiplier for valid params, in double, then rounded to f32 (the dtype
 * transformers keeps inv_freq in). */
static void compute_frequencies(const llmk_rope_params* p, int32_t dim, float* out_inv_freq,
                                float* out_attention_factor) {
    const int32_t half = dim / 2;
    const double factor = p->factor;
    double base = p->theta, attention_factor = 1.0;

    if (p->scaling == LLMK_ROPE_SCALING_DYNAMIC) {
        /* The base grows with the sequence once it passes the original length. */
        double original = p->original_max_position;
        double seq_len = p->seq_len > p->original_max_position ? p->seq_len : original;
        base *= pow(factor * seq_len / original - (factor - 1.0), (double)dim / (double)(dim - 2));
    }

    double low = 0, high = 0; /* yarn's correction range */
    if (p->scaling == LLMK_ROPE_SCALING_YARN) {
        double beta_fast = p->beta_fast ? p->beta_fast : 32.0, beta_slow = p->beta_slow ? p->beta_slow : 1.0;
        low = yarn_correction_dim(beta_fast, dim, base, p->original_max_position);
        high = yarn_correction_dim(beta_slow, dim, base, p->original_max_position);
        if (p->truncate) {
            low = floor(low);
            high = ceil(high);
        }
        low = low > 0.0 ? low : 0.0;
        high = high < dim - 1 ? high : dim - 1;
        if (low == high)
            high += 0.001; /* transformers' guard against a zero-width ramp */
        if (p->attention_factor != 0.0f)
            attention_factor = p->attention_factor;
        else if (p->mscale != 0.0f && p->mscale_all_dim != 0.0f)
            attention_factor = yarn_mscale(factor, p->mscale) / yarn_mscale(factor, p->mscale_all_dim);
        else
            attention_factor = yarn_mscale(factor, 1.0);
    }

    const double low_freq_factor = p->low_freq_factor ? p->low_freq_factor : 1.0;
    const double high_freq_factor = p->high_freq_factor ? p->high_freq_factor : 4.0;
    for (int32_t i = 0; i < half; i++) {
        double inv_freq = 1.0 / pow(base, (2.0 * i) / dim);
        switch (p->scaling) {
        case LLMK_ROPE_SCALING_LINEAR:
            inv_freq /= factor; /* same as positions / factor */
            break;
        case LLMK_ROPE_SCALING_LLAMA3: {
            /* Long wavelengths are interpolated by factor, short ones kept, the band between blended. */
            double original = p->original_max_position;
            double low_freq_wavelen = original / low_freq_factor, high_freq_wavelen = original / high_freq_factor;
            double wavelen = 2.0 * PI / inv_freq;
            if (wavelen > low_freq_wavelen) {
                inv_freq /= factor;
            } else if (wavelen >= high_freq_wavelen) {
                double smooth = (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                inv_freq = (1.0 - smooth) * inv_freq / factor + smooth * inv_freq;
            }
            break;
        }
        case LLMK_ROPE_SCALING_YARN: {
            /* ramp 0: extrapolate (keep the frequency), ramp 1: interpolate (divide by factor). */
            double ramp = (i - low) / (high - low);
            ramp = ramp < 0.0 ? 0.0 : (ramp > 1.0 ? 1.0 : ramp);
            inv_freq = inv_freq / factor * ramp + inv_freq * (1.0 - ramp);
            break;
        }
        default:
            break;
        }
        out_inv_freq[i] = (float)inv_freq;
    }
    *out_attention_factor = (float)attention_factor;
}

/* Frequencies that overflow or vanish in f32 (an extreme theta or factor) would rotate by inf or NaN. */
static llmk_status check_frequencies(const char* fn, const float* inv_freq, int32_t half, float attention_factor) {
    for (int32_t i = 0; i < half; i++)
        if (!isfinite(inv_freq[i]))
            return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                             "%s: params give inverse frequency %d = %g, not finite in f32; check theta and factor",
                             fn, (int)i, (double)inv_freq[i]);
    if (!isfinite(attention_factor) || attention_factor <= 0.0f)
        return llmk_fail(LLMK_STATUS_INVALID_ARGUMENT,
                         "%s: params give attention factor %g; expected a finite value > 0; check mscale and "
                         "mscale_all_dim",
                         fn, (double)attention_factor);
    return LLMK_STATUS_OK;
}

/* Validates params, then computes the frequencies into a new array (*out_inv_freq, the caller frees it). */
static llmk_status frequencies(const char* fn, const llmk_rope_params* params, int64_t head_dim,
                               int32_t* out_rotary_dim, float** out_inv_freq, float* out_attention_factor) {
    int32_t rotary_dim = 0;
    LLMK_TRY(check_params(fn, params, head_dim, &rotary_dim));
    float* inv_freq = (float*)malloc((size_t)(rotary_dim / 2) * sizeof(float));
    if (!inv_freq)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "%s: out of host memory for %d frequencies", fn,
                         (int)(rotary_dim / 2));
    compute_frequencies(params, rotary_dim, inv_freq, out_attention_factor);
    llmk_status status = check_frequencies(fn, inv_freq, rotary_dim / 2, *out_attention_factor);
    if (status != LLMK_STATUS_OK) {
        free(inv_freq);
        return status;
    }
    *out_rotary_dim = rotary_dim;
    *out_inv_freq = inv_freq;
    return LLMK_STATUS_OK;
}

llmk_status llmk_rope_frequencies(const llmk_rope_params* params, int32_t head_dim, float* out_inv_freq,
                                  float* out_attention_factor) {
    static const char fn[] = "llmk_rope_frequencies";
    int32_t rotary_dim = 0;
    LLMK_TRY(check_params(fn, params, head_dim, &rotary_dim)); /* the parameters' errors first: they say more */
    if (!out_inv_freq)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: out_inv_freq is NULL", fn);
    if (!out_attention_factor)
        return llmk_fail(LLMK_STATUS_NULL_POINTER, "%s: out_attention_factor is NULL", fn);
    /* Computed aside so that the outputs are left untouched on failure. */
    float* inv_freq = NULL;
    float attention_factor = 1.0f;
    LLMK_TRY(frequencies(fn, params, head_dim, &rotary_dim, &inv_freq, &attention_factor));
    memcpy(out_inv_freq, inv_freq, (size_t)(rotary_dim / 2) * sizeof(float));
    *out_attention_factor = attention_factor;
    free(inv_freq);
    return LLMK_STATUS_OK;
}

llmk_status llmk_rope(llmk_context* ctx, const llmk_tensor* positions, const llmk_rope_params* params,
                      llmk_tensor* q, llmk_tensor* k) {
    static const char fn[] = "llmk_rope";
    LLMK_TRY(llmk_check_context(ctx, fn));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "positions", positions, 1, LLMK_INDEX, LLMK_CHECK_ANY_STRIDE));
    LLMK_TRY(llmk_check_tensor(ctx, fn, "q", q, 3, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
    LLMK_TRY(llmk_check_no_self_overlap(fn, "q", q)); /* rotated in place: each element once */
    LLMK_TRY(llmk_check_dim(fn, "positions", positions, 0, q->shape[0], "tokens (q's first dimension)"));
    if (q->shape[2] == 0)
        return llmk_fail(LLMK_STATUS_SHAPE_MISMATCH, "%s: q has head_dim 0 (its last dimension); expected >= 2", fn);
    if (k) {
        LLMK_TRY(llmk_check_tensor(ctx, fn, "k", k, 3, LLMK_FLOATING, LLMK_CHECK_DEFAULT));
        LLMK_TRY(llmk_check_no_self_overlap(fn, "k", k));
        LLMK_TRY(llmk_check_same_dtype(fn, "k", k, "q", q));
        LLMK_TRY(llmk_check_dim(fn, "k", k, 0, q->shape[0], "tokens (q's first dimension)"));
        LLMK_TRY(llmk_check_dim(fn, "k", k, 2, q->shape[2], "head_dim (q's last dimension)"));
        LLMK_TRY(llmk_check_no_overlap(fn, "q", q, "k", k, false)); /* both rotated in place */
    }
    int32_t rotary_dim = 0;
    float* inv_freq = NULL;
    float attention_factor = 1.0f;
    LLMK_TRY(frequencies(fn, params, q->shape[2], &rotary_dim, &inv_freq, &attention_factor));
    llmk_status status =
        LLMK_DISPATCH(rope, ctx, positions, inv_freq, attention_factor, params->style, rotary_dim, q, k);
    free(inv_freq);
    return status;
}
