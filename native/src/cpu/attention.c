/* CPU reference attention: the oracle the GPU kernels are checked against.
 *
 * For one batch b and query head h (kv head h / (heads / kv_heads)), query row i of q_len sees keys
 * j in [lo(i), hi(i)] of kv_len (see visible_keys; d = i + kv_len - q_len is its diagonal), with scores
 *     s = scale * q_i . k_j;  s = c * tanh(s / c) when softcap c > 0;  s -= slope[h] * |d - j| with ALiBi,
 * and out_i = sum_j softmax(s)_j v_j, lse_i = log(sum_j exp(s_j)). Two algorithms compute this:
 *   naive  one row of scores materialized, max, exp, sum, then the weighted sum of v;
 *   flash  blocks of BLOCK_Q queries against blocks of BLOCK_K keys converted once to f32, with an online
 *          softmax (running max m and sum l per row; when m grows, l and the accumulator are rescaled).
 * Everything accumulates in f32. Work is split over (batch, head, query block) and every output is
 * computed by one thread in a fixed order, so the bits do not depend on the thread count. */
#include "internal.h"
#include "cpu_threads.h"

#include <math.h>
#include <stdlib.h>

enum { BLOCK_Q = 16, BLOCK_K = 64 };

/* The rows of one (batch, head) of a [batch, len, heads, head_dim] tensor: element (row, d) is at
 * data[offset + row * row_stride + d * dim_stride]. */
typedef struct head_rows {
    void* data;
    int32_t dtype;
    int64_t offset, row_stride, dim_stride;
} head_rows;

static head_rows rows_of(const llmk_tensor* t, int64_t b, int64_t h) {
    head_rows r = {t->data, t->dtype, b * t->strides[0] + h * t->strides[2], t->strides[1], t->strides[3]};
    return r;
}

/* x[0..n) = row of r, as f32. */
static void load_row(const head_rows* r, int64_t row, int64_t n, float* x) {
    int64_t base = r->offset + row * r->row_stride;
    if (r->dim_stride == 1) {
        llmk_load_floats(r->data, r->dtype, base, n, x);
        return;
    }
    for (int64_t d = 0; d < n; d++)
        x[d] = llmk_load_float(r->data, r->dtype, base + d * r->dim_stride);
}

static void store_row(const head_rows* r, int64_t row, int64_t n, const float* x) {
    int64_t base = r->offset + row * r->row_stride;
    if (r->dim_stride == 1) {
        llmk_store_floats(r->data, r->dtype, base, n, x);
        return;
    }
    for (int64_t d = 0; d < n; d++)
        llmk_store_float(r->data, r->dtype, base + d * r->dim_stride, x[d]);
}

static float dot(const float* a, const float* b, int64_t n) {
    float sum = 0.0f;
    for (int64_t d = 0; d < n; d++)
        sum += a[d] * b[d];
    return sum;
}

/* Everything about one (batch, head) that does not depend on the row. */
typedef struct head_problem {
    int64_t q_len, kv_len, head_dim;
    float scale, softcap, slope;        /* slope 0: no ALiBi */
    int64_t window_left, window_right;  /* < 0: unlimited; causal already folded into window_right */
    head_rows q, k, v, out;
    float* lse;                         /* NULL, or lse[i * lse_stride] per row */
    int64_t lse_stride;
} head_problem;

/* The keys query row i sees: [*lo, *hi], empty when *lo > *hi. The diagonal is aligned bottom-right. */
static void visible_keys(const head_problem* p, int64_t i, int64_t* lo, int64_t* hi) {
    int64_t diagonal = i + p->kv_len - p->q_len;
    *lo = p->window_left >= 0 ? diagonal - p->window_left : 0;
    *hi = p->window_right >= 0 ? diagonal + p->window_right : p->kv_len - 1;
    if (*lo < 0)
        *lo = 0;
    if (*hi > p->kv_len - 1)
        *hi = p->kv_len - 1;
}

/* The score of query row i (q_i already f32) against key j (k_j f32). */
static float score(const head_problem* p, int64_t i, int64_t j, const float* q_i, const float* k_j) {
    float s = p->scale * dot(q_i, k_j, p->head_dim);
    if (p->softcap > 0.0f)
        s = p->softcap * tanhf(s / p->softcap);
    if (p->slope != 0.0f) {
        int64_t distance = i + p->kv_len - p->q_len - j;
        s -= p->slope * (float)(distance < 0 ? -distance : distance);
    }
    return s;
}

/* Writes row i's output (acc / sum, or zeros when it saw no key) and its log-sum-exp. */
static void finish_row(const head_problem* p, int64_t i, float* acc, float max, float sum) {
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int64_t d = 0; d < p->head_dim; d++)
        acc[d] *= inv;
    store_row(&p->out, i, p->head_dim, acc);
    if (p->lse)
        p->lse[i * p->lse_stride] = sum > 0.0f ? max + logf(sum) : -INFINITY;
}

/* Scratch floats one thread needs for either algorithm. */
static int64_t scratch_floats(int64_t kv_len, int64_t head_dim) {
    int64_t naive = 3 * head_dim + kv_len;
    int64_t flash = 2 * BLOCK_Q * head_dim + 2 * BLOCK_K * head_dim + 2 * BLOCK_Q + BLOCK_K;
    return naive > flash ? naive : flash;
}

/* Rows [i0, i1) of one head, scores materialized. scratch: scratch_floats(kv_len, head_dim). */
static void attend_naive(const head_problem* p, int64_t i0, int64_t i1, float* scratch) {
    const int64_t n = p->head_dim;
    float* q_i = scratch;
    float* acc = q_i + n;
    float* row = acc + n; /* k_j, then v_j */
    float* scores = row + n;
    for (int64_t i = i0; i < i1; i++) {
        int64_t lo, hi;
        visible_keys(p, i, &lo, &hi);
        load_row(&p->q, i, n, q_i);
        float max = -INFINITY;
        for (int64_t j = lo; j <= hi; j++) {
            load_row(&p->k, j, n, row);
            scores[j] = score(p, i, j, q_i, row);
            if (scores[j] > max)
                max = scores[j];
        }
        float sum = 0.0f;
        for (int64_t j = lo; j <= hi; j++) {
            scores[j] = expf(scores[j] - max);
            sum += scores[j];
        }
        for (int64_t d = 0; d < n; d++)
            acc[d] = 0.0f;
        for (int64_t j = lo; j <= hi; j++) {
            load_row(&p->v, j, n, row);
            for (int64_t d = 0; d < n; d++)
                acc[d] += scores[j] * row[d];
        }
        finish_row(p, i, acc, max, sum);
    }
}

/* Rows [i0, i1) (at most BLOCK_Q) of one head, keys in blocks with an online softmax. */
static void attend_flash(const head_problem* p, int64_t i0, int64_t i1, float* scratch) {
    const int64_t n = p->head_dim, rows = i1 - i0;
    float* q_block = scratch;                  /* [BLOCK_Q][n] */
    float* acc = q_block + BLOCK_Q * n;        /* [BLOCK_Q][n] */
    float* k_block = acc + BLOCK_Q * n;        /* [BLOCK_K][n] */
    float* v_block = k_block + BLOCK_K * n;    /* [BLOCK_K][n] */
    float* max = v_block + BLOCK_K * n;        /* [BLOCK_Q] running max */
    float* sum = max + BLOCK_Q;                /* [BLOCK_Q] running sum of exp(s - max) */
    float* scores = sum + BLOCK_Q;             /* [BLOCK_K] one row's scores in this key block */

    /* The keys any row of the block sees; lo and hi grow with i. */
    int64_t lo_first, hi_first, lo_last, hi_last;
    visible_keys(p, i0, &lo_first, &hi_first);
    visible_keys(p, i1 - 1, &lo_last, &hi_last);
    for (int64_t r = 0; r < rows; r++) {
        load_row(&p->q, i0 + r, n, q_block + r * n);
        for (int64_t d = 0; d < n; d++)
            acc[r * n + d] = 0.0f;
        max[r] = -INFINITY;
        sum[r] = 0.0f;
    }

    for (int64_t j0 = lo_first; j0 <= hi_last; j0 += BLOCK_K) {
        int64_t j1 = j0 + BLOCK_K - 1 < hi_last ? j0 + BLOCK_K - 1 : hi_last; /* last key of the block */
        for (int64_t j = j0; j <= j1; j++) {
            load_row(&p->k, j, n, k_block + (j - j0) * n);
            load_row(&p->v, j, n, v_block + (j - j0) * n);
        }
        for (int64_t r = 0; r < rows; r++) {
            int64_t i = i0 + r, lo, hi;
            visible_keys(p, i, &lo, &hi);
            if (lo < j0)
                lo = j0;
            if (hi > j1)
                hi = j1;
            if (lo > hi)
                continue; /* this row sees nothing in this block */
            float block_max = -INFINITY;
            for (int64_t j = lo; j <= hi; j++) {
                scores[j - j0] = score(p, i, j, q_block + r * n, k_block + (j - j0) * n);
                if (scores[j - j0] > block_max)
                    block_max = scores[j - j0];
            }
            float new_max = block_max > max[r] ? block_max : max[r];
            /* Rescale what was accumulated under the old max (exp(-inf) = 0 on the first block). */
            float correction = expf(max[r] - new_max);
            float* acc_r = acc + r * n;
            for (int64_t d = 0; d < n; d++)
                acc_r[d] *= correction;
            sum[r] *= correction;
            for (int64_t j = lo; j <= hi; j++) {
                float weight = expf(scores[j - j0] - new_max);
                const float* v_j = v_block + (j - j0) * n;
                sum[r] += weight;
                for (int64_t d = 0; d < n; d++)
                    acc_r[d] += weight * v_j[d];
            }
            max[r] = new_max;
        }
    }
    for (int64_t r = 0; r < rows; r++)
        finish_row(p, i0 + r, acc + r * n, max[r], sum[r]);
}

/* The shared core: attention of q over the first kv_lens[b] rows of k and v for every batch b.
 * k and v are [batch, >= kv_lens[b], kv_heads, head_dim] (the inputs, or the caches). */
static llmk_status attend(llmk_context* ctx, const char* fn, const llmk_tensor* q, const llmk_tensor* k,
                          const llmk_tensor* v, const int64_t* kv_lens, const llmk_tensor* alibi_slopes,
                          const llmk_attention_params* params, llmk_tensor* out, llmk_tensor* lse) {
    const int64_t batch = q->shape[0], q_len = q->shape[1], heads = q->shape[2], head_dim = q->shape[3];
    if (batch == 0 || q_len == 0 || heads == 0)
        return LLMK_STATUS_OK;
    const int64_t group = heads / k->shape[2]; /* query heads per kv head */
    const bool naive = params->algorithm == LLMK_ATTENTION_ALGORITHM_NAIVE;
    const int64_t row_block = naive ? 1 : BLOCK_Q;
    const int64_t q_blocks = (q_len + row_block - 1) / row_block;
    const int64_t tasks = batch * heads * q_blocks;

    int64_t max_kv_len = 0;
    for (int64_t b = 0; b < batch; b++)
        if (kv_lens[b] > max_kv_len)
            max_kv_len = kv_lens[b];
    const int64_t per_thread = scratch_floats(max_kv_len, head_dim);
    const int32_t threads = ctx->num_threads > 0 ? ctx->num_threads : 1;
    if ((uint64_t)per_thread > SIZE_MAX / sizeof(float) / (uint64_t)threads)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "%s: scratch of %d x %lld floats is too large", fn,
                         (int)threads, (long long)per_thread);
    float* scratch = malloc((size_t)threads * (size_t)per_thread * sizeof(float));
    if (!scratch)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "%s: could not allocate %lld bytes of scratch", fn,
                         (long long)threads * per_thread * (long long)sizeof(float));

    float scale = params->scale > 0.0f ? params->scale : 1.0f / sqrtf((float)head_dim);
#if defined(_OPENMP)
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
#endif
    for (int64_t task = 0; task < tasks; task++) {
        int64_t block = task % q_blocks, h = task / q_blocks % heads, b = task / q_blocks / heads;
        float* mine = scratch + (size_t)llmk_cpu_thread_index() * (size_t)per_thread;
        head_problem p;
        p.q_len = q_len;
        p.kv_len = kv_lens[b];
        p.head_dim = head_dim;
        p.scale = scale;
        p.softcap = params->softcap;
        p.slope = alibi_slopes ? ((const float*)alibi_slopes->data)[h * alibi_slopes->strides[0]] : 0.0f;
        p.window_left = params->window_left;
        p.window_right = params->causal ? 0 : params->window_right;
        p.q = rows_of(q, b, h);
        p.k = rows_of(k, b, h / group);
        p.v = rows_of(v, b, h / group);
        p.out = rows_of(out, b, h);
        p.lse = lse ? (float*)lse->data + b * lse->strides[0] + h * lse->strides[1] : NULL;
        p.lse_stride = lse ? lse->strides[2] : 0;

        int64_t i0 = block * row_block, i1 = i0 + row_block < q_len ? i0 + row_block : q_len;
        if (naive)
            attend_naive(&p, i0, i1, mine);
        else
            attend_flash(&p, i0, i1, mine);
    }
    free(scratch);
    return LLMK_STATUS_OK;
}

llmk_status llmk_cpu_attention(llmk_context* ctx, const llmk_tensor* q, const llmk_tensor* k, const llmk_tensor* v,
                               const llmk_tensor* alibi_slopes, const llmk_attention_params* params, llmk_tensor* out,
                               llmk_tensor* lse) {
    int64_t* kv_lens = malloc((size_t)(q->shape[0] > 0 ? q->shape[0] : 1) * sizeof(int64_t));
    if (!kv_lens)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_attention: could not allocate %lld sequence lengths",
                         (long long)q->shape[0]);
    for (int64_t b = 0; b < q->shape[0]; b++)
        kv_lens[b] = k->shape[1];
    llmk_status status = attend(ctx, "llmk_attention", q, k, v, kv_lens, alibi_slopes, params, out, lse);
    free(kv_lens);
    return status;
}

/* Copies rows [0, new_len) of src's batch b into rows [start, start + new_len) of the cache. */
static void append_rows(const llmk_tensor* src, llmk_tensor* cache, int64_t b, int64_t start) {
    const int64_t new_len = src->shape[1], kv_heads = src->shape[2], head_dim = src->shape[3];
    const bool same = src->dtype == cache->dtype && src->strides[3] == 1 && cache->strides[3] == 1;
    const int64_t size = (int64_t)llmk_dtype_size(src->dtype); /* one dtype when same */
    const size_t row_bytes = (size_t)(head_dim * size);
    for (int64_t t = 0; t < new_len; t++)
        for (int64_t h = 0; h < kv_heads; h++) {
            int64_t from = b * src->strides[0] + t * src->strides[1] + h * src->strides[2];
            int64_t to = b * cache->strides[0] + (start + t) * cache->strides[1] + h * cache->strides[2];
            if (same) { /* the same values as the conversion loop, without it */
                memcpy((char*)cache->data + to * size, (const char*)src->data + from * size, row_bytes);
                continue;
            }
            for (int64_t d = 0; d < head_dim; d++)
                llmk_store_float(cache->data, cache->dtype, to + d * cache->strides[3],
                                 llmk_load_float(src->data, src->dtype, from + d * src->strides[3]));
        }
}

llmk_status llmk_cpu_kvcache_append(llmk_context* ctx, llmk_tensor* k_cache, llmk_tensor* v_cache,
                                    const llmk_tensor* k_new, const llmk_tensor* v_new,
                                    const llmk_tensor* cache_seqlens, int64_t batch, int64_t* kv_lens) {
    const int64_t max_len = k_cache->shape[1], new_len = k_new ? k_new->shape[1] : 0;
    /* Every sequence is checked before anything is written, so a failure leaves the caches untouched. */
    for (int64_t b = 0; b < batch; b++) {
        int64_t seqlen = llmk_load_index(cache_seqlens->data, cache_seqlens->dtype, b * cache_seqlens->strides[0]);
        if (seqlen < 0 || seqlen + new_len > max_len)
            return llmk_fail(LLMK_STATUS_OUT_OF_RANGE,
                             "llmk_attention_kvcache: cache_seqlens[%lld] = %lld; with new_len = %lld the sequence "
                             "needs rows [0, %lld) of a cache of max_len = %lld",
                             (long long)b, (long long)seqlen, (long long)new_len, (long long)(seqlen + new_len),
                             (long long)max_len);
        kv_lens[b] = seqlen + new_len;
    }
    if (k_new) {
#if defined(_OPENMP)
#pragma omp parallel for num_threads(llmk_cpu_team(ctx, batch * new_len * k_new->shape[2] * k_new->shape[3]))
#endif
        for (int64_t b = 0; b < batch; b++) {
            append_rows(k_new, k_cache, b, kv_lens[b] - new_len);
            append_rows(v_new, v_cache, b, kv_lens[b] - new_len);
        }
    }
    return LLMK_STATUS_OK;
}

llmk_status llmk_cpu_attention_kvcache(llmk_context* ctx, const llmk_tensor* q, llmk_tensor* k_cache,
                                       llmk_tensor* v_cache, const llmk_tensor* k_new, const llmk_tensor* v_new,
                                       const llmk_tensor* cache_seqlens, const llmk_tensor* alibi_slopes,
                                       const llmk_attention_params* params, llmk_tensor* out, llmk_tensor* lse) {
    const int64_t batch = q->shape[0];
    int64_t* kv_lens = malloc((size_t)(batch > 0 ? batch : 1) * sizeof(int64_t));
    if (!kv_lens)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY,
                         "llmk_attention_kvcache: could not allocate %lld sequence lengths", (long long)batch);
    llmk_status status = llmk_cpu_kvcache_append(ctx, k_cache, v_cache, k_new, v_new, cache_seqlens, batch, kv_lens);
    if (status == LLMK_STATUS_OK)
        status = attend(ctx, "llmk_attention_kvcache", q, k_cache, v_cache, kv_lens, alibi_slopes, params, out, lse);
    free(kv_lens);
    return status;
}
