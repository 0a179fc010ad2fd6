/* Fast attention for f32 q, k, v and out (part of a flavour's translation unit; see simd.h): the same
 * masking, softcap, ALiBi and log-sum-exp as the reference (cpu/attention.c), computed as a flash attention.
 * A task is one (batch, kv head, block of query positions); its rows are those positions times the query
 * heads that share the kv head (GQA), so each key and value row is read once for the whole group. Scores
 * come from the linear layer's register tiles (rows of q against rows of k), the softmax runs online per
 * key block with the vector exp, and p . V accumulates in registers a few vectors of head_dim at a time. */

enum { ATTN_BLOCK_K = 64, ATTN_ROWS = 16 };

typedef struct attention_problem {
    const llmk_tensor *q, *k, *v, *alibi, *out, *lse;
    const llmk_attention_params* params;
    const int64_t* kv_lens;
    int64_t q_len, heads, group, head_dim, q_block;
    float scale;
} attention_problem;

/* Row r of a [batch, len, heads, head_dim] f32 tensor. */
LLMK_INLINE float* head_row(const llmk_tensor* t, int64_t b, int64_t row, int64_t h) {
    return (float*)t->data + b * t->strides[0] + row * t->strides[1] + h * t->strides[2];
}

/* acc[0..n) += sum over keys j of p[j] * v_j[0..n), four vectors of acc at a time in registers. */
static void accumulate_pv(float* acc, const float* p, const float* const* v, int64_t keys, int64_t n) {
    int64_t d = 0;
    for (; d + 4 * VL <= n; d += 4 * VL) {
        vfloat a0 = vload(acc + d), a1 = vload(acc + d + VL), a2 = vload(acc + d + 2 * VL),
               a3 = vload(acc + d + 3 * VL);
        for (int64_t j = 0; j < keys; j++) {
            const vfloat w = vsplat(p[j]);
            a0 += w * vload(v[j] + d);
            a1 += w * vload(v[j] + d + VL);
            a2 += w * vload(v[j] + d + 2 * VL);
            a3 += w * vload(v[j] + d + 3 * VL);
        }
        vstore(acc + d, a0);
        vstore(acc + d + VL, a1);
        vstore(acc + d + 2 * VL, a2);
        vstore(acc + d + 3 * VL, a3);
    }
    for (; d + VL <= n; d += VL) {
        vfloat a = vload(acc + d);
        for (int64_t j = 0; j < keys; j++)
            a += vsplat(p[j]) * vload(v[j] + d);
        vstore(acc + d, a);
    }
    for (; d < n; d++)
        for (int64_t j = 0; j < keys; j++)
            acc[d] += p[j] * v[j][d];
}

/* scores[i][j] = q_i . k_j for R consecutive rows of q (row length n) and every key of the block. */
LLMK_INLINE void score_rows(int R, const float* q, const float* const* k_rows, int64_t keys, int64_t n,
                            float* scores) {
    const float* x[TILE_R];
    for (int i = 0; i < R; i++)
        x[i] = q + i * n;
    float out[TILE_R][MAX_TILE];
    int64_t j = 0;
    for (; j + TILE_C <= keys; j += TILE_C) {
        dot_tile(R, TILE_C, LLMK_DTYPE_F32, x, (const void* const*)(k_rows + j), n, out);
        for (int i = 0; i < R; i++)
            for (int c = 0; c < TILE_C; c++)
                scores[i * ATTN_BLOCK_K + j + c] = out[i][c];
    }
    for (; j < keys; j++) {
        dot_tile(R, 1, LLMK_DTYPE_F32, x, (const void* const*)(k_rows + j), n, out);
        for (int i = 0; i < R; i++)
            scores[i * ATTN_BLOCK_K + j] = out[i][0];
    }
}

/* Floats of scratch one task needs. */
static int64_t attention_scratch_floats(int64_t rows, int64_t head_dim) {
    return rows * (2 * head_dim + ATTN_BLOCK_K + 2);
}

static void attention_task(const attention_problem* P, int64_t b, int64_t g, int64_t i0, float* scratch) {
    const llmk_attention_params* params = P->params;
    const int64_t n = P->head_dim, group = P->group, kv_len = P->kv_lens[b];
    const int64_t i1 = i0 + P->q_block < P->q_len ? i0 + P->q_block : P->q_len;
    const int64_t rows = (i1 - i0) * group; /* row r: query position i0 + r / group, head g * group + r % group */
    float* q = scratch;                     /* [rows][n], scaled */
    float* acc = q + rows * n;              /* [rows][n] */
    float* scores = acc + rows * n;         /* [rows][ATTN_BLOCK_K] */
    float* max = scores + rows * ATTN_BLOCK_K;
    float* sum = max + rows;
    const int64_t window_right = params->causal ? 0 : params->window_right;

    for (int64_t r = 0; r < rows; r++) {
        const float* src = head_row(P->q, b, i0 + r / group, g * group + r % group);
        for (int64_t d = 0; d < n; d++)
            q[r * n + d] = src[d] * P->scale;
        memset(acc + r * n, 0, (size_t)n * sizeof(float));
        max[r] = -INFINITY;
        sum[r] = 0.0f;
    }
    /* Keys row i sees, with the diagonal aligned bottom-right (as cpu/attention.c's visible_keys). */
#define VISIBLE(i, lo, hi)                                                             \
    do {                                                                               \
        const int64_t diagonal_ = (i) + kv_len - P->q_len;                             \
        lo = params->window_left >= 0 ? diagonal_ - params->window_left : 0;           \
        hi = window_right >= 0 ? diagonal_ + window_right : kv_len - 1;                \
        lo = lo < 0 ? 0 : lo;                                                          \
        hi = hi > kv_len - 1 ? kv_len - 1 : hi;                                        \
    } while (0)
    int64_t first, unused, last;
    VISIBLE(i0, first, unused);
    VISIBLE(i1 - 1, unused, last);
    (void)unused;

    for (int64_t j0 = first; j0 <= last; j0 += ATTN_BLOCK_K) {
        const int64_t keys = last - j0 + 1 < ATTN_BLOCK_K ? last - j0 + 1 : ATTN_BLOCK_K;
        const float* k_rows[ATTN_BLOCK_K];
        const float* v_rows[ATTN_BLOCK_K];
        for (int64_t j = 0; j < keys; j++) {
            k_rows[j] = head_row(P->k, b, j0 + j, g);
            v_rows[j] = head_row(P->v, b, j0 + j, g);
        }
        /* scores[r][j] = q_r . k_j through register tiles */
        int64_t r = 0;
        for (; r + TILE_R <= rows; r += TILE_R)
            score_rows(TILE_R, q + r * n, k_rows, keys, n, scores + r * ATTN_BLOCK_K);
        for (; r < rows; r++)
            score_rows(1, q + r * n, k_rows, keys, n, scores + r * ATTN_BLOCK_K);
        for (int64_t r = 0; r < rows; r++) {
            const int64_t i = i0 + r / group, h = g * group + r % group;
            int64_t lo, hi;
            VISIBLE(i, lo, hi);
            lo = lo < j0 ? j0 : lo;
            hi = hi > j0 + keys - 1 ? j0 + keys - 1 : hi;
            if (lo > hi)
                continue; /* this row sees nothing in this block */
            float* s = scores + r * ATTN_BLOCK_K;
            const float slope = P->alibi ? ((const float*)P->alibi->data)[h * P->alibi->strides[0]] : 0.0f;
            float block_max = -INFINITY;
            for (int64_t j = 0; j < keys; j++) {
                const int64_t key = j0 + j;
                if (key < lo || key > hi) {
                    s[j] = -INFINITY;
                    continue;
                }
                if (params->softcap > 0.0f)
                    s[j] = params->softcap * tanhf(s[j] / params->softcap);
                if (slope != 0.0f) {
                    const int64_t distance = i + kv_len - P->q_len - key;
                    s[j] -= slope * (float)(distance < 0 ? -distance : distance);
                }
                block_max = s[j] > block_max ? s[j] : block_max;
            }
            const float new_max = block_max > max[r] ? block_max : max[r];
            const float correction = expf(max[r] - new_max); /* 0 on the first block */
            float* acc_r = acc + r * n;
            if (correction != 1.0f)
                for (int64_t d = 0; d < n; d++)
                    acc_r[d] *= correction;
            /* p = exp(s - max) over the block; masked keys give 0 */
            vfloat total = vsplat(0.0f);
            int64_t j = 0;
            for (; j + VL <= keys; j += VL) {
                const vfloat e = vexp(vload(s + j) - new_max);
                vstore(s + j, e);
                total += e;
            }
            float block_sum = vsum(total);
            for (; j < keys; j++) {
                s[j] = s[j] == -INFINITY ? 0.0f : expf(s[j] - new_max);
                block_sum += s[j];
            }
            sum[r] = sum[r] * correction + block_sum;
            max[r] = new_max;
            accumulate_pv(acc_r + 0, s + (lo - j0), v_rows + (lo - j0), hi - lo + 1, n);
        }
    }
#undef VISIBLE
    for (int64_t r = 0; r < rows; r++) {
        const int64_t i = i0 + r / group, h = g * group + r % group;
        const float inv = sum[r] > 0.0f ? 1.0f / sum[r] : 0.0f;
        float* dst = head_row(P->out, b, i, h);
        for (int64_t d = 0; d < n; d++)
            dst[d] = acc[r * n + d] * inv;
        if (P->lse)
            ((float*)P->lse->data)[b * P->lse->strides[0] + h * P->lse->strides[1] + i * P->lse->strides[2]] =
                sum[r] > 0.0f ? max[r] + logf(sum[r]) : -INFINITY;
    }
}

typedef struct attention_job {
    const attention_problem* P;
    int64_t kv_heads, q_blocks;
    float* scratch;
    int64_t per_thread;
} attention_job;

/* Task (batch, kv head, query block); under causal masks later blocks see more keys, and dynamic claiming
 * evens that out. */
static void attention_item(void* arg, int64_t task, int thread) {
    const attention_job* job = (const attention_job*)arg;
    const int64_t block = task % job->q_blocks, g = task / job->q_blocks % job->kv_heads,
                  b = task / job->q_blocks / job->kv_heads;
    attention_task(job->P, b, g, block * job->P->q_block, job->scratch + (size_t)thread * (size_t)job->per_thread);
}

enum { ATTN_MAX_BATCH = 64 }; /* sequence lengths live on the stack */

static bool attention_is_fast(const llmk_tensor* t) {
    return t->dtype == LLMK_DTYPE_F32 && t->strides[3] == 1;
}

/* What the fast attention takes: f32 rows with contiguous head_dim, a batch whose lengths fit on the stack, and
 * not the naive algorithm (a reference algorithm, which the reference runs). */
static bool attention_fast_case(const llmk_tensor* q, const llmk_tensor* k, const llmk_tensor* v,
                                const llmk_tensor* out, const llmk_attention_params* params) {
    return attention_is_fast(q) && attention_is_fast(k) && attention_is_fast(v) && attention_is_fast(out) &&
           q->shape[0] <= ATTN_MAX_BATCH && params->algorithm != LLMK_ATTENTION_ALGORITHM_NAIVE;
}

static llmk_status fast_attend(llmk_context* ctx, const llmk_tensor* q, const llmk_tensor* k,
                               const llmk_tensor* v, const int64_t* kv_lens, const llmk_tensor* alibi_slopes,
                               const llmk_attention_params* params, llmk_tensor* out, llmk_tensor* lse,
                               const char* fn) {
    const int64_t batch = q->shape[0], q_len = q->shape[1], heads = q->shape[2], head_dim = q->shape[3];
    if (batch == 0 || q_len == 0 || heads == 0)
        return LLMK_STATUS_OK;
    attention_problem P;
    P.q = q, P.k = k, P.v = v, P.alibi = alibi_slopes, P.out = out, P.lse = lse, P.params = params;
    P.kv_lens = kv_lens;
    P.q_len = q_len, P.heads = heads, P.group = heads / k->shape[2], P.head_dim = head_dim;
    P.q_block = P.group >= ATTN_ROWS ? 1 : ATTN_ROWS / P.group;
    P.scale = params->scale > 0.0f ? params->scale : 1.0f / sqrtf((float)head_dim);
    const int64_t kv_heads = k->shape[2];
    const int64_t q_blocks = (q_len + P.q_block - 1) / P.q_block;
    const int64_t tasks = batch * kv_heads * q_blocks;
    const int64_t rows = P.q_block * P.group;
    const int64_t per_thread = attention_scratch_floats(rows, head_dim);
    const int64_t threads = ctx->num_threads;
    if ((uint64_t)per_thread > SIZE_MAX / sizeof(float) / (uint64_t)threads)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "%s: scratch of %lld x %lld floats is too large", fn,
                         (long long)threads, (long long)per_thread);
    LLMK_TRY(fast_enter(ctx, fn));
    float* scratch = (float*)llmk_cpu_scratch(ctx, (size_t)threads * (size_t)per_thread * sizeof(float));
    if (!scratch)
        return fast_leave(ctx, llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "%s: could not allocate %lld bytes of scratch", fn,
                                         (long long)(threads * per_thread * (int64_t)sizeof(float))));
    attention_job job = {&P, kv_heads, q_blocks, scratch, per_thread};
    llmk_cpu_parallel(ctx, tasks, attention_item, &job);
    return fast_leave(ctx, LLMK_STATUS_OK);
}

static llmk_status fast_attention(llmk_context* ctx, const llmk_tensor* q, const llmk_tensor* k,
                                  const llmk_tensor* v, const llmk_tensor* alibi_slopes,
                                  const llmk_attention_params* params, llmk_tensor* out, llmk_tensor* lse) {
    if (!attention_fast_case(q, k, v, out, params))
        return llmk_cpu_attention(ctx, q, k, v, alibi_slopes, params, out, lse);
    int64_t kv_lens[ATTN_MAX_BATCH];
    for (int64_t b = 0; b < q->shape[0]; b++)
        kv_lens[b] = k->shape[1];
    return fast_attend(ctx, q, k, v, kv_lens, alibi_slopes, params, out, lse, "llmk_attention");
}

static llmk_status fast_attention_kvcache(llmk_context* ctx, const llmk_tensor* q, llmk_tensor* k_cache,
                                          llmk_tensor* v_cache, const llmk_tensor* k_new,
                                          const llmk_tensor* v_new, const llmk_tensor* cache_seqlens,
                                          const llmk_tensor* alibi_slopes, const llmk_attention_params* params,
                                          llmk_tensor* out, llmk_tensor* lse) {
    if (!attention_fast_case(q, k_cache, v_cache, out, params))
        return llmk_cpu_attention_kvcache(ctx, q, k_cache, v_cache, k_new, v_new, cache_seqlens, alibi_slopes,
                                          params, out, lse);
    int64_t kv_lens[ATTN_MAX_BATCH];
    LLMK_TRY(llmk_cpu_kvcache_append(ctx, k_cache, v_cache, k_new, v_new, cache_seqlens, q->shape[0], kv_lens));
    return fast_attend(ctx, q, k_cache, v_cache, kv_lens, alibi_slopes, params, out, lse, "llmk_attention_kvcache");
}
