/* CPU reference of MoE routing, permute and unpermute. One thread owns each token (route, unpermute) or
 * each permuted row (permute), and the bookkeeping is a serial counting sort, so the results do not depend
 * on the thread count. */
#include "cpu_threads.h"
#include "internal.h"

#include <string.h>

#include <math.h>
#include <stdlib.h>

/* Index of the largest value among the candidates (chosen[e] == 0 and, with groups, in a kept group);
 * the first such index wins ties, so the lower id is preferred. */
static int64_t argmax(const float* values, const unsigned char* chosen, const unsigned char* group_kept,
                      int64_t group_size, int64_t count) {
    int64_t best = -1;
    for (int64_t e = 0; e < count; e++) {
        if (chosen[e] || (group_kept && !group_kept[e / group_size]))
            continue;
        if (best < 0 || values[e] > values[best])
            best = e;
    }
    return best;
}

/* Marks in group_kept the topk_groups groups whose two best biased scores sum highest, as DeepSeek-V3's
 * grouped top-k. taken is scratch [experts]. */
static void keep_best_groups(const float* choice, int64_t experts, int32_t groups, int32_t keep, float* group_score,
                             unsigned char* group_kept, unsigned char* taken) {
    const int64_t size = experts / groups;
    memset(taken, 0, (size_t)experts);
    for (int32_t g = 0; g < groups; g++) {
        const float* member = choice + g * size;
        unsigned char* member_taken = taken + g * size;
        int64_t first = argmax(member, member_taken, NULL, 1, size);
        member_taken[first] = 1;
        float score = member[first];
        if (size > 1) /* a group of one expert scores that expert alone */
            score += member[argmax(member, member_taken, NULL, 1, size)];
        group_score[g] = score;
    }
    memset(group_kept, 0, (size_t)groups);
    for (int32_t i = 0; i < keep; i++)
        group_kept[argmax(group_score, group_kept, NULL, 1, groups)] = 1;
}

llmk_status llmk_cpu_moe_route(llmk_context* ctx, const llmk_tensor* logits, const llmk_tensor* correction_bias,
                               const llmk_moe_router_params* params, llmk_tensor* weights,
                               llmk_tensor* expert_ids) {
    const int64_t tokens = logits->shape[0], experts = logits->shape[1];
    const int32_t top_k = params->top_k;
    const int32_t groups = params->num_groups > 1 ? params->num_groups : 1;
    const int32_t keep = groups > 1 ? params->topk_groups : 1;
    const float scale = params->routed_scaling_factor == 0.0f ? 1.0f : params->routed_scaling_factor;
    const float* bias = correction_bias ? (const float*)correction_bias->data : NULL;

    /* Per thread: scores and biased scores [experts] f32, taken flags [experts], group scores and flags. */
    const size_t stride = (size_t)experts * (2 * sizeof(float) + 1) + (size_t)groups * (sizeof(float) + 1);
    const size_t slice = (stride + 63) / 64 * 64;
    unsigned char* scratch = (unsigned char*)malloc(slice * (size_t)ctx->num_threads);
    if (!scratch)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_moe_route: out of host memory for %lld experts x %d threads",
                         (long long)experts, (int)ctx->num_threads);

#pragma omp parallel for num_threads(ctx->num_threads) schedule(static)
    for (int64_t t = 0; t < tokens; t++) {
        unsigned char* mine = scratch + slice * (size_t)llmk_cpu_thread_index();
        float* score = (float*)mine;
        float* choice = score + experts;
        float* group_score = choice + experts;
        unsigned char* taken = (unsigned char*)(group_score + groups);
        unsigned char* group_kept = taken + experts;

        const int64_t row = t * logits->strides[0];
        if (params->scoring == LLMK_MOE_SCORING_SOFTMAX) {
            float max = -INFINITY;
            for (int64_t e = 0; e < experts; e++) {
                score[e] = llmk_load_float(logits->data, logits->dtype, row + e);
                max = score[e] > max ? score[e] : max;
            }
            float sum = 0.0f;
            for (int64_t e = 0; e < experts; e++) {
                score[e] = expf(score[e] - max);
                sum += score[e];
            }
            for (int64_t e = 0; e < experts; e++)
                score[e] /= sum;
        } else {
            for (int64_t e = 0; e < experts; e++)
                score[e] = 1.0f / (1.0f + expf(-llmk_load_float(logits->data, logits->dtype, row + e)));
        }
        /* The bias steers the selection only; the weights are the unbiased scores. */
        for (int64_t e = 0; e < experts; e++)
            choice[e] = bias ? score[e] + bias[e] : score[e];

        const unsigned char* eligible = NULL;
        if (groups > 1) {
            keep_best_groups(choice, experts, groups, keep, group_score, group_kept, taken);
            eligible = group_kept;
        }
        memset(taken, 0, (size_t)experts);
        float* w = (float*)weights->data + t * weights->strides[0];
        int32_t* ids = (int32_t*)expert_ids->data + t * expert_ids->strides[0];
        float sum = 0.0f;
        for (int32_t i = 0; i < top_k; i++) {
            int64_t e = argmax(choice, taken, eligible, experts / groups, experts);
            taken[e] = 1;
            ids[i] = (int32_t)e;
            w[i] = score[e];
            sum += score[e];
        }
        /* DeepSeek-V3 adds 1e-20 so that all-zero scores (underflowed sigmoids) give zeros, not NaN. */
        const float denominator = params->renormalize ? sum + 1e-20f : 1.0f;
        for (int32_t i = 0; i < top_k; i++)
            w[i] = w[i] / denominator * scale;
    }
    free(scratch);
    return LLMK_STATUS_OK;
}

llmk_status llmk_cpu_moe_permute(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* expert_ids,
                                 int32_t num_experts, llmk_tensor* permuted, llmk_tensor* expert_offsets,
                                 llmk_tensor* source_rows, llmk_tensor* permuted_rows) {
    const int64_t tokens = x->shape[0], hidden = x->shape[1], top_k = expert_ids->shape[1];
    const int32_t* ids = (const int32_t*)expert_ids->data;
    const int64_t id_stride = expert_ids->strides[0];

    /* Every id is checked before anything is written. */
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t s = 0; s < top_k; s++) {
            int32_t e = ids[t * id_stride + s];
            if (e < 0 || e >= num_experts)
                return llmk_fail(LLMK_STATUS_OUT_OF_RANGE,
                                 "llmk_moe_permute: expert_ids[%lld, %lld] is %d; expected 0..%d (num_experts - 1)",
                                 (long long)t, (long long)s, (int)e, (int)num_experts - 1);
        }

    /* Stable counting sort by expert: counts, exclusive prefix sums, then rows in (token, slot) order. */
    int32_t* next = (int32_t*)calloc((size_t)num_experts + 1, sizeof(int32_t));
    if (!next)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_moe_permute: out of host memory for %d expert counters",
                         (int)num_experts);
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t s = 0; s < top_k; s++)
            next[ids[t * id_stride + s] + 1]++;
    int32_t* offsets = (int32_t*)expert_offsets->data;
    for (int32_t e = 0; e < num_experts; e++)
        next[e + 1] += next[e];
    for (int32_t e = 0; e <= num_experts; e++)
        offsets[e] = next[e];
    int32_t* sources = (int32_t*)source_rows->data;
    int32_t* destinations = (int32_t*)permuted_rows->data;
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t s = 0; s < top_k; s++) {
            int32_t r = next[ids[t * id_stride + s]]++;
            sources[r] = (int32_t)(t * top_k + s);
            destinations[t * permuted_rows->strides[0] + s] = r;
        }
    free(next);

    const size_t element = llmk_dtype_size(x->dtype);
    const int64_t rows = tokens * top_k;
#pragma omp parallel for num_threads(ctx->num_threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t token = sources[r] / top_k;
        memcpy((char*)permuted->data + (size_t)(r * permuted->strides[0]) * element,
               (const char*)x->data + (size_t)(token * x->strides[0]) * element, (size_t)hidden * element);
    }
    return LLMK_STATUS_OK;
}

enum { UNPERMUTE_CHUNK = 1024 };

llmk_status llmk_cpu_moe_unpermute(llmk_context* ctx, const llmk_tensor* expert_out, const llmk_tensor* weights,
                                   const llmk_tensor* permuted_rows, llmk_tensor* out) {
    const int64_t tokens = weights->shape[0], top_k = weights->shape[1], hidden = expert_out->shape[1];
    const int64_t rows = expert_out->shape[0];
    const int32_t* map = (const int32_t*)permuted_rows->data;
    const int64_t map_stride = permuted_rows->strides[0];
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t s = 0; s < top_k; s++) {
            int32_t r = map[t * map_stride + s];
            if (r < 0 || r >= rows)
                return llmk_fail(LLMK_STATUS_OUT_OF_RANGE,
                                 "llmk_moe_unpermute: permuted_rows[%lld, %lld] is %d; expected 0..%lld "
                                 "(expert_out rows - 1)",
                                 (long long)t, (long long)s, (int)r, (long long)rows - 1);
        }

    const float* w = (const float*)weights->data;
#pragma omp parallel for num_threads(ctx->num_threads) schedule(static)
    for (int64_t t = 0; t < tokens; t++) {
        const int32_t* slots = map + t * map_stride;
        const float* slot_weights = w + t * weights->strides[0];
        /* Chunk by chunk, slot by slot: the same per-element order of additions as one element at a time. */
        float sum[UNPERMUTE_CHUNK], buffer[UNPERMUTE_CHUNK];
        for (int64_t h0 = 0; h0 < hidden; h0 += UNPERMUTE_CHUNK) {
            const int64_t n = hidden - h0 < UNPERMUTE_CHUNK ? hidden - h0 : UNPERMUTE_CHUNK;
            if (top_k == 0) /* no slots: the empty sum */
                memset(sum, 0, sizeof sum);
            for (int64_t s = 0; s < top_k; s++) {
                const float* row = llmk_floats_at(expert_out->data, expert_out->dtype,
                                                  slots[s] * expert_out->strides[0] + h0, n, buffer);
                /* Starting from the first term (not 0) keeps top_k = 1 with weight 1 an exact copy, -0 included. */
                for (int64_t h = 0; h < n; h++)
                    sum[h] = s == 0 ? slot_weights[s] * row[h] : sum[h] + slot_weights[s] * row[h];
            }
            llmk_store_floats(out->data, out->dtype, t * out->strides[0] + h0, n, sum);
        }
    }
    return LLMK_STATUS_OK;
}
