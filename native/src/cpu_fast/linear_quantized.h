/* Fast linear layer with a quantized weight (Q8_0, Q4_0, Q4_K, Q6_K), f32 x and y (part of a flavour's
 * translation unit; see simd.h).
 *
 * As the contract says, x is first rounded to 8 bits (core/quant.c, once per call: one scale per 32, or per
 * 256 before a K-quant), so every product is of two small integers: by AVX2's maddubs (unsigned x signed
 * bytes -> pairs summed in int16, exact), then madd to int32, with one f32 FMA per block of 32 (Q8_0, Q4_0)
 * or, since x then shares one scale per 256, per super-block of a K-quant, whose sub-block scales multiply
 * the int32 sums.
 * Weights are read where they lie (the memory-mapped file), eight rows at a time turned in registers so that
 * each lane is one output, and reused for up to QROWS rows of x. Each output's sum runs in the same order
 * whatever rows it came with, so decode and prefill give the same bits. The portable flavour runs the same
 * integer sums in plain C, a row at a time. */

enum { QROWS = 4, QPANEL = 8 };

typedef struct quant_problem {
    const llmk_block_q8* xq; /* [rows][blocks] */
    int64_t blocks;          /* per row: in_features / 32 */
    const char* w;
    int32_t wtype;
    int64_t w_row_bytes, outs;
    const llmk_tensor* bias;
    float* y;
    int64_t y_stride;
} quant_problem;

#if defined(__AVX2__)
/* AVX2 takes eight weight rows at a time (a panel), so that every lane of a vector is one output and the
 * scales and sums are handled once per eight rows, not per row and block. A panel at the end of the weight
 * repeats its last row in the lanes past it: lanes never mix, so an output's bits do not depend on which
 * rows share its panel. */
typedef struct panel {
    const char* row[QPANEL];
    const char* next; /* the next panel, prefetched */
} panel;

/* The blocks at byte offset `offset` of each row of a panel. */
LLMK_INLINE void panel_at(const panel* pn, int64_t offset, const uint8_t* p[QPANEL]) {
    for (int r = 0; r < QPANEL; r++)
        p[r] = (const uint8_t*)pn->row[r] + offset;
}

/* Sixteen bytes of each row, turned by a 4x4 transpose of 32-bit words (per 128-bit lane) into words[k], lane
 * r holding word k of row r; x's matching four bytes are then broadcast to all lanes. p[r] points at row r's
 * bytes. */
LLMK_INLINE void panel_words(const uint8_t* const p[QPANEL], int64_t offset, __m256i words[4]) {
    const __m256i v0 = _mm256_loadu2_m128i((const __m128i*)(p[4] + offset), (const __m128i*)(p[0] + offset));
    const __m256i v1 = _mm256_loadu2_m128i((const __m128i*)(p[5] + offset), (const __m128i*)(p[1] + offset));
    const __m256i v2 = _mm256_loadu2_m128i((const __m128i*)(p[6] + offset), (const __m128i*)(p[2] + offset));
    const __m256i v3 = _mm256_loadu2_m128i((const __m128i*)(p[7] + offset), (const __m128i*)(p[3] + offset));
    const __m256i t0 = _mm256_unpacklo_epi32(v0, v1), t1 = _mm256_unpackhi_epi32(v0, v1);
    const __m256i t2 = _mm256_unpacklo_epi32(v2, v3), t3 = _mm256_unpackhi_epi32(v2, v3);
    words[0] = _mm256_unpacklo_epi64(t0, t2);
    words[1] = _mm256_unpackhi_epi64(t0, t2);
    words[2] = _mm256_unpacklo_epi64(t1, t3);
    words[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* The eight rows' f16 scales at p[r] + offset, as floats (inserted one by one: a vector load of eight
 * scalar stores would wait for them). */
LLMK_INLINE __m256 panel_scales(const uint8_t* const p[QPANEL], int64_t offset) {
    uint16_t h[QPANEL];
    for (int r = 0; r < QPANEL; r++)
        memcpy(&h[r], p[r] + offset, sizeof h[r]);
    return _mm256_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], (short)h[4],
                                          (short)h[5], (short)h[6], (short)h[7]));
}

/* The eight rows' 32-bit words at p[r] + offset, lane r. */
LLMK_INLINE __m256i panel_word(const uint8_t* const p[QPANEL], int64_t offset) {
    int32_t v[QPANEL];
    for (int r = 0; r < QPANEL; r++)
        memcpy(&v[r], p[r] + offset, sizeof v[r]);
    return _mm256_setr_epi32(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
}

/* x's word k (elements 4k..4k+3) in every lane. */
LLMK_INLINE __m256i x_word(const llmk_block_q8* xb, int k) {
    int32_t v;
    memcpy(&v, xb->q + 4 * k, sizeof v);
    return _mm256_set1_epi32(v);
}

/* sum over k of codes[k] (unsigned, lane r: four codes of row r) times x's word k (signed), in int16 per lane
 * pair: exact, |15 * 127 * 2 * 8| < 2^15. */
LLMK_INLINE __m256i panel_dot16(const __m256i codes[8], const llmk_block_q8* xb) {
    __m256i s = _mm256_maddubs_epi16(codes[0], x_word(xb, 0));
    for (int k = 1; k < 8; k++)
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(codes[k], x_word(xb, k)));
    return s;
}

/* The next panel's bytes (contiguous when the rows are), fetched at the rate this one is read: eight rows
 * make eight streams too short for the hardware prefetcher to pick up. */
LLMK_INLINE void prefetch_span(const char* p, int64_t bytes) {
    for (int64_t i = 0; i < bytes; i += 64)
        _mm_prefetch(p + i, _MM_HINT_T0);
}

/* Codes of a Q4_0 block (lane r: codes[k] elements 4k..4k+3 of row r for k < 4, from the low nibbles;
 * elements 16 + 4(k-4).. from the high ones), unsigned 0..15. */
LLMK_INLINE void nibble_codes(const __m256i words[4], __m256i codes[8]) {
    const __m256i low4 = _mm256_set1_epi8(0xF);
    for (int k = 0; k < 4; k++) {
        codes[k] = _mm256_and_si256(words[k], low4);
        codes[4 + k] = _mm256_and_si256(_mm256_srli_epi16(words[k], 4), low4);
    }
}

/* out[i][r] = (weight row o + r) . x[i] for R rows of x, Q8_0 or Q4_0 (wtype a constant where inlined); one
 * FMA per block and x row, in block order whatever R is. Q4_0's codes are unsigned 0..15, the - 8 through the
 * sums of x; Q8_0's are signed, made unsigned by moving their signs onto x's words, and summed in int32 per
 * word, since two maddubs of 8-bit codes can overflow int16. */
LLMK_INLINE void panel_dots_32(int R, int32_t wtype, const panel* pn, const llmk_block_q8* const* x,
                               int64_t blocks, float out[QROWS][QPANEL]) {
    LLMK_STATIC_ASSERT(offsetof(llmk_block_q8_0, q) == offsetof(llmk_block_q4_0, q), "codes after the scale");
    const bool q8 = wtype == LLMK_DTYPE_Q8_0;
    const int64_t block = q8 ? (int64_t)sizeof(llmk_block_q8_0) : (int64_t)sizeof(llmk_block_q4_0);
    const int64_t codes_at = offsetof(llmk_block_q8_0, q);
    __m256 acc[QROWS];
    for (int i = 0; i < R; i++)
        acc[i] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < blocks; b++) {
        prefetch_span(pn->next + b * QPANEL * block, QPANEL * block);
        const uint8_t* p[QPANEL];
        panel_at(pn, b * block, p);
        __m256i codes[8], magnitudes[8];
        if (q8) {
            panel_words(p, codes_at, codes);
            panel_words(p, codes_at + 16, codes + 4);
            for (int k = 0; k < 8; k++)
                magnitudes[k] = _mm256_sign_epi8(codes[k], codes[k]);
        } else {
            __m256i words[4];
            panel_words(p, codes_at, words);
            nibble_codes(words, codes);
        }
        const __m256 dw = panel_scales(p, offsetof(llmk_block_q8_0, d));
        for (int i = 0; i < R; i++) {
            const llmk_block_q8* xb = &x[i][b];
            __m256i dot;
            if (q8) {
                            dot = _mm256_setzero_si256();
                for (int k = 0; k < 8; k++) {
                    const __m256i signed_x = _mm256_sign_epi8(x_word(xb, k), codes[k]);
                    dot = _mm256_add_epi32(dot, _mm256_madd_epi16(_mm256_maddubs_epi16(magnitudes[k], signed_x), ones));
                }
            } else {
                dot = _mm256_sub_epi32(_mm256_madd_epi16(panel_dot16(codes, xb), ones),
                                       _mm256_set1_epi32(8 * (xb->sum[0] + xb->sum[1])));
            }
            acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xb->d)), _mm256_cvtepi32_ps(dot), acc[i]);
        }
    }
    for (int i = 0; i < R; i++)
        _mm256_storeu_ps(out[i], acc[i]);
}

/* Bytes first and second (0..3) of every 32-bit lane, widened to the lane's two int16. */
LLMK_INLINE __m256i lane_bytes16(__m256i v, int first, int second) {
    const __m256i base = _mm256_setr_epi8(0, -1, 0, -1, 4, -1, 4, -1, 8, -1, 8, -1, 12, -1, 12, -1,
                                          0, -1, 0, -1, 4, -1, 4, -1, 8, -1, 8, -1, 12, -1, 12, -1);
    return _mm256_shuffle_epi8(v, _mm256_add_epi8(base, _mm256_set1_epi32(first | second << 16)));
}

/* A Q4_K panel: per super-block, the 6-bit scales and mins of the eight rows unpacked side by side (lane r,
 * byte j: sub-block j of row r), the codes of each sub-block times its scale in int32, the mins through the
 * sums of x; one FMA per super-block and x row. */
LLMK_INLINE void panel_dots_q4_k(int R, const panel* pn, const llmk_block_q8* const* x,
                                 int64_t blocks, float out[QROWS][QPANEL]) {
    __m256 acc[QROWS], offset[QROWS];
    for (int i = 0; i < R; i++)
        acc[i] = offset[i] = _mm256_setzero_ps();
    const __m256i low6 = _mm256_set1_epi8(0x3F), low4 = _mm256_set1_epi8(0xF), low2 = _mm256_set1_epi8(3);
    const int64_t step = QPANEL * (int64_t)sizeof(llmk_block_q4_k);
    for (int64_t s = 0; s < blocks / 8; s++) {
        prefetch_span(pn->next + s * step, step);
        const uint8_t* p[QPANEL];
        panel_at(pn, s * (int64_t)sizeof(llmk_block_q4_k), p);
        /* scales[0..11] of row r as three words a, b, c in lane r: sub-block j < 4 has scale a_j & 63 and min
         * b_j & 63; j >= 4 has scale c_j & 15 | a_j >> 6 << 4 and min c_j >> 4 | b_j >> 6 << 4. */
        const int64_t scales = offsetof(llmk_block_q4_k, scales);
        const __m256i va = panel_word(p, scales), vb = panel_word(p, scales + 4), vc = panel_word(p, scales + 8);
        const __m256i scale_lo = _mm256_and_si256(va, low6), min_lo = _mm256_and_si256(vb, low6);
        const __m256i scale_hi = _mm256_or_si256(_mm256_and_si256(vc, low4),
                                                 _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(va, 6), low2), 4));
        const __m256i min_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(vc, 4), low4),
                                               _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(vb, 6), low2), 4));
        __m256i sums[QROWS];
        for (int i = 0; i < R; i++)
            sums[i] = _mm256_setzero_si256();
        for (int pair = 0; pair < 4; pair++) {
            __m256i wq[8];
            panel_words(p, offsetof(llmk_block_q4_k, q) + 32 * pair, wq);
            panel_words(p, offsetof(llmk_block_q4_k, q) + 32 * pair + 16, wq + 4);
            for (int half = 0; half < 2; half++) {
                const int j = 2 * pair + half;
                __m256i codes[8];
                for (int k = 0; k < 8; k++)
                    codes[k] = _mm256_and_si256(half ? _mm256_srli_epi16(wq[k], 4) : wq[k], low4);
                const __m256i scale = lane_bytes16(j < 4 ? scale_lo : scale_hi, j & 3, j & 3);
                for (int i = 0; i < R; i++)
                    sums[i] = _mm256_add_epi32(sums[i], _mm256_madd_epi16(panel_dot16(codes, &x[i][8 * s + j]), scale));
            }
        }
        const __m256 d = panel_scales(p, offsetof(llmk_block_q4_k, d)), dmin = panel_scales(p, offsetof(llmk_block_q4_k, dmin));
        const __m256i mins[4] = {lane_bytes16(min_lo, 0, 1), lane_bytes16(min_lo, 2, 3), lane_bytes16(min_hi, 0, 1),
                                 lane_bytes16(min_hi, 2, 3)};
        for (int i = 0; i < R; i++) {
            const llmk_block_q8* xb = &x[i][8 * s];
            __m256i m = _mm256_setzero_si256();
            for (int q = 0; q < 4; q++) {
                const int lo = xb[2 * q].sum[0] + xb[2 * q].sum[1], hi = xb[2 * q + 1].sum[0] + xb[2 * q + 1].sum[1];
                m = _mm256_add_epi32(m, _mm256_madd_epi16(mins[q], _mm256_set1_epi32((int32_t)(((uint32_t)lo & 0xFFFF) | (uint32_t)hi << 16))));
            }
            const __m256 dx = _mm256_set1_ps(xb->d);
            acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(sums[i]), acc[i]);
            offset[i] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dx), _mm256_cvtepi32_ps(m), offset[i]);
        }
    }
    for (int i = 0; i < R; i++)
        _mm256_storeu_ps(out[i], _mm256_add_ps(acc[i], offset[i]));
}

/* Bytes first and second (0..3) of every 32-bit lane, sign-extended to the lane's two int16. */
LLMK_INLINE __m256i lane_bytes16_signed(__m256i v, int first, int second) {
    const __m256i base = _mm256_setr_epi8(-1, 0, -1, 0, -1, 4, -1, 4, -1, 8, -1, 8, -1, 12, -1, 12,
                                          -1, 0, -1, 0, -1, 4, -1, 4, -1, 8, -1, 8, -1, 12, -1, 12);
    const __m256i high = _mm256_shuffle_epi8(v, _mm256_add_epi8(base, _mm256_set1_epi32(first << 8 | second << 24)));
    return _mm256_srai_epi16(high, 8);
}

/* Elements 128 h + 32 c .. + 32 of a Q6_K panel (c a constant where inlined): the codes q + 32 (0..63) from
 * the low plane's words ql and the high plane's qh, times the int8 scale of each 16 into sums, and the
 * scales times the sums of x into corrections (the - 32). Int16 holds two maddubs: |63 * 127 * 2 * 2| < 2^15. */
LLMK_INLINE void q6_k_chunk(int R, int c, const __m256i ql[8], const __m256i qh[8], __m256i scales,
                            const llmk_block_q8* const* xb, __m256i* sums, __m256i* corrections) {
    const __m256i low4 = _mm256_set1_epi8(0xF), bits45 = _mm256_set1_epi8(0x30);
    __m256i u[8];
    for (int k = 0; k < 8; k++) {
        const __m256i lo = _mm256_and_si256(c >> 1 ? _mm256_srli_epi16(ql[k], 4) : ql[k], low4);
        const __m256i hi = c == 0 ? _mm256_slli_epi16(qh[k], 4) : c == 1 ? _mm256_slli_epi16(qh[k], 2)
                         : c == 2 ? qh[k] : _mm256_srli_epi16(qh[k], 2);
        u[k] = _mm256_or_si256(lo, _mm256_and_si256(hi, bits45));
    }
    const int b = 2 * (c & 1);
    const __m256i sa = lane_bytes16_signed(scales, b, b), sb = lane_bytes16_signed(scales, b + 1, b + 1),
                  pair = lane_bytes16_signed(scales, b, b + 1);
    for (int i = 0; i < R; i++) {
        __m256i t = _mm256_setzero_si256();
        for (int k = 0; k < 8; k += 2) {
            const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(u[k], x_word(xb[i], k)),
                                                 _mm256_maddubs_epi16(u[k + 1], x_word(xb[i], k + 1)));
            t = _mm256_add_epi32(t, _mm256_madd_epi16(s16, k < 4 ? sa : sb));
        }
        sums[i] = _mm256_add_epi32(sums[i], t);
        const uint32_t xs = ((uint32_t)xb[i]->sum[0] & 0xFFFF) | (uint32_t)xb[i]->sum[1] << 16;
        corrections[i] = _mm256_add_epi32(corrections[i], _mm256_madd_epi16(pair, _mm256_set1_epi32((int32_t)xs)));
    }
}

/* A Q6_K panel, per super-block: the chunks' int32 sums less 32 times the corrections, one FMA per x row. */
LLMK_INLINE void panel_dots_q6_k(int R, const panel* pn, const llmk_block_q8* const* x,
                                 int64_t blocks, float out[QROWS][QPANEL]) {
    __m256 acc[QROWS];
    for (int i = 0; i < R; i++)
        acc[i] = _mm256_setzero_ps();
    const int64_t step = QPANEL * (int64_t)sizeof(llmk_block_q6_k);
    for (int64_t s = 0; s < blocks / 8; s++) {
        prefetch_span(pn->next + s * step, step);
        const uint8_t* p[QPANEL];
        panel_at(pn, s * (int64_t)sizeof(llmk_block_q6_k), p);
        __m256i scales[4]; /* lane r: scales 4k..4k+3 of row r */
        panel_words(p, offsetof(llmk_block_q6_k, scales), scales);
        __m256i sums[QROWS], corrections[QROWS];
        for (int i = 0; i < R; i++)
            sums[i] = corrections[i] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const int64_t qh_at = offsetof(llmk_block_q6_k, qh) + 32 * h, ql_at = offsetof(llmk_block_q6_k, ql) + 64 * h;
            __m256i qh[8], ql[8];
            panel_words(p, qh_at, qh);
            panel_words(p, qh_at + 16, qh + 4);
            const llmk_block_q8* xb[QROWS];
            for (int half = 0; half < 2; half++) {
                panel_words(p, ql_at + 32 * half, ql);
                panel_words(p, ql_at + 32 * half + 16, ql + 4);
                for (int i = 0; i < R; i++)
                    xb[i] = &x[i][8 * s + 4 * h + half];
                if (half == 0)
                    q6_k_chunk(R, 0, ql, qh, scales[2 * h], xb, sums, corrections);
                else
                    q6_k_chunk(R, 1, ql, qh, scales[2 * h], xb, sums, corrections);
                for (int i = 0; i < R; i++)
                    xb[i] += 2;
                if (half == 0)
                    q6_k_chunk(R, 2, ql, qh, scales[2 * h + 1], xb, sums, corrections);
                else
                    q6_k_chunk(R, 3, ql, qh, scales[2 * h + 1], xb, sums, corrections);
            }
        }
        const __m256 d = panel_scales(p, offsetof(llmk_block_q6_k, d));
        for (int i = 0; i < R; i++) {
            const __m256i dot = _mm256_sub_epi32(sums[i], _mm256_slli_epi32(corrections[i], 5));
            acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[i][8 * s].d)), _mm256_cvtepi32_ps(dot), acc[i]);
        }
    }
    for (int i = 0; i < R; i++)
        _mm256_storeu_ps(out[i], acc[i]);
}

/* y[r0..r0+R, o..o+n] for the panel of weight rows o..o+n, n <= QPANEL. */
LLMK_INLINE void panel_outputs(int R, const quant_problem* p, int64_t r0, int64_t o, int n) {
    const llmk_block_q8* x[QROWS];
    for (int i = 0; i < R; i++)
        x[i] = p->xq + (r0 + i) * p->blocks;
    panel pn;
    for (int r = 0; r < QPANEL; r++)
        pn.row[r] = p->w + (o + (r < n ? r : n - 1)) * p->w_row_bytes;
    pn.next = o + 2 * QPANEL <= p->outs ? p->w + (o + QPANEL) * p->w_row_bytes : pn.row[0]; /* the last: none */
    float out[QROWS][QPANEL];
    if (p->wtype == LLMK_DTYPE_Q8_0)
        panel_dots_32(R, LLMK_DTYPE_Q8_0, &pn, x, p->blocks, out);
    else if (p->wtype == LLMK_DTYPE_Q4_0)
        panel_dots_32(R, LLMK_DTYPE_Q4_0, &pn, x, p->blocks, out);
    else if (p->wtype == LLMK_DTYPE_Q4_K)
        panel_dots_q4_k(R, &pn, x, p->blocks, out);
    else
        panel_dots_q6_k(R, &pn, x, p->blocks, out);
    for (int j = 0; j < n; j++) {
        const float bias = p->bias ? llmk_load_float(p->bias->data, p->bias->dtype, (o + j) * p->bias->strides[0]) : 0.0f;
        for (int i = 0; i < R; i++)
            p->y[(r0 + i) * p->y_stride + o + j] = out[i][j] + bias;
    }
}
#else
LLMK_INLINE void quant_dots(int R, int32_t wtype, const char* w, const llmk_block_q8* const* x, int64_t blocks,
                            float out[QROWS]) {
    float acc[QROWS] = {0};
    for (int64_t b = 0; b < blocks; b++) {
        llmk_quant_chunk chunk;
        llmk_quant_chunk_at(wtype, w, b, &chunk);
        const float d = llmk_f16_to_float(chunk.d), offset = llmk_f16_to_float(chunk.dmin) * (float)chunk.min;
        for (int i = 0; i < R; i++)
            acc[i] += llmk_quant_chunk_dot(&chunk, d, offset, &x[i][b]);
    }
    for (int i = 0; i < R; i++)
        out[i] = acc[i];
}
/* y[r0..r0+R, o] for one weight row. */
LLMK_INLINE void quant_outputs(int R, const quant_problem* p, int64_t r0, int64_t o) {
    const llmk_block_q8* x[QROWS];
    for (int i = 0; i < R; i++)
        x[i] = p->xq + (r0 + i) * p->blocks;
    float out[QROWS];
    quant_dots(R, p->wtype, p->w + o * p->w_row_bytes, x, p->blocks, out);
    const float bias = p->bias ? llmk_load_float(p->bias->data, p->bias->dtype, o * p->bias->strides[0]) : 0.0f;
    for (int i = 0; i < R; i++)
        p->y[(r0 + i) * p->y_stride + o] = out[i] + bias;
}
#endif

typedef struct quant_job {
    quant_problem p;
    fast_grid grid;
} quant_job;

static void quant_item(void* arg, int64_t item, int thread) {
    (void)thread;
    const quant_job* job = (const quant_job*)arg;
    int64_t r0, r1, o0, o1;
    fast_grid_item(&job->grid, item, &r0, &r1, &o0, &o1);
#if defined(__AVX2__)
    for (int64_t o = o0; o < o1; o += QPANEL) { /* chunks start on panels */
        const int n = o1 - o < QPANEL ? (int)(o1 - o) : QPANEL;
        int64_t r = r0;
        for (; r + QROWS <= r1; r += QROWS)
            panel_outputs(QROWS, &job->p, r, o, n);
        switch (r1 - r) { /* R a constant in each, so that the accumulators stay in registers */
        case 3: panel_outputs(3, &job->p, r, o, n); break;
        case 2: panel_outputs(2, &job->p, r, o, n); break;
        case 1: panel_outputs(1, &job->p, r, o, n); break;
        default: break;
        }
    }
#else
    for (int64_t o = o0; o < o1; o++) {
        int64_t r = r0;
        for (; r + QROWS <= r1; r += QROWS)
            quant_outputs(QROWS, &job->p, r, o);
        for (; r < r1; r++)
            quant_outputs(1, &job->p, r, o);
    }
#endif
}

typedef struct round_job {
    const float* x;
    int64_t x_stride, K, group;
    llmk_block_q8* xq;
} round_job;

#if defined(__AVX2__)
/* llmk_quantize_row_q8, the same bits eight at a time (a tenth of a prefill's time when scalar): max by
 * max_ps (which keeps the running max where x is NaN, as the comparison does), q = nearest-even(x * id) by
 * round_ps, and NaN codes 0 as the scalar conversion leaves them. */
static void quantize_row_q8(const float* x, int64_t n, int64_t group, llmk_block_q8* out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t g = 0; g < n; g += group) {
        __m256 m8 = _mm256_setzero_ps();
        for (int64_t i = g; i < g + group; i += 8)
            m8 = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), m8);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float d = _mm_cvtss_f32(m4) / 127.0f, id = d ? 1.0f / d : 0.0f;
        for (int64_t i = g; i < g + group; i += LLMK_QK) {
            llmk_block_q8* block = out + i / LLMK_QK;
            __m256i q[4];
            for (int j = 0; j < 4; j++) {
                const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), _mm256_set1_ps(id));
                const __m256 rounded = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[j] = _mm256_andnot_si256(_mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)),
                                           _mm256_cvtps_epi32(rounded));
            }
            for (int h = 0; h < 2; h++) {
                const __m256i s8 = _mm256_add_epi32(q[2 * h], q[2 * h + 1]);
                __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
                block->sum[h] = (int16_t)_mm_cvtsi128_si32(s4);
            }
            const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i*)block->q, _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
            block->d = d;
        }
    }
}
#else
#define quantize_row_q8 llmk_quantize_row_q8
#endif

static void round_item(void* arg, int64_t r, int thread) {
    (void)thread;
    const round_job* job = (const round_job*)arg;
    quantize_row_q8(job->x + r * job->x_stride, job->K, job->group, job->xq + r * (job->K / LLMK_QK));
}

static llmk_status fast_linear_quantized(llmk_context* ctx, const llmk_tensor* x, const llmk_tensor* weight,
                                         const llmk_tensor* bias, llmk_tensor* y) {
    const int64_t rows = x->shape[0], K = x->shape[1], outs = weight->shape[0], blocks = K / LLMK_QK;
    if ((uint64_t)rows > SIZE_MAX / sizeof(llmk_block_q8) / (uint64_t)blocks)
        return llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_linear: the 8-bit x of %lld x %lld is too large",
                         (long long)rows, (long long)K);
    LLMK_TRY(fast_enter(ctx, "llmk_linear"));
    const size_t xq_bytes = (size_t)rows * (size_t)blocks * sizeof(llmk_block_q8);
    llmk_block_q8* xq = (llmk_block_q8*)llmk_cpu_scratch(ctx, xq_bytes);
    if (!xq)
        return fast_leave(ctx, llmk_fail(LLMK_STATUS_OUT_OF_MEMORY, "llmk_linear: could not allocate %llu bytes of scratch",
                                         (unsigned long long)xq_bytes));
    round_job rounding = {(const float*)x->data, x->strides[0], K, llmk_q8_group(weight->dtype), xq};
    llmk_cpu_parallel(ctx, rows, round_item, &rounding);

    quant_job job = {{xq, blocks, (const char*)weight->data, weight->dtype,
                      (int64_t)llmk_bytes_of(weight->dtype, (uint64_t)weight->strides[0]), outs, bias, (float*)y->data,
                      y->strides[0]},
                     {0}};
    /* Row blocks of x whose 8-bit rows stay in L2 (256 KiB) while each weight row is reused from L1 across
     * them; output chunks so that every thread gets several items. */
    int64_t row_block = (256 * 1024) / (int64_t)(blocks * sizeof(llmk_block_q8));
    row_block = row_block < QROWS ? QROWS : row_block > 128 ? 128 : row_block / QROWS * QROWS;
    /* ... but at least 64 KiB of weight rows each (16 rows at least): long streams for the prefetchers; chunks
     * of whole panels. */
    const int64_t min_chunk = 64 * 1024 / job.p.w_row_bytes;
    job.grid = fast_grid_of(ctx, rows, outs, row_block, min_chunk < 16 ? 16 : min_chunk, 512, QPANEL);
    llmk_cpu_parallel(ctx, job.grid.row_blocks * job.grid.chunks, quant_item, &job);
    return fast_leave(ctx, LLMK_STATUS_OK);
}
