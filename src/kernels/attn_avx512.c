/* attn_avx512.c - AVX-512 attention kernels over KV rows (attn.h); compiled with -mavx512f ...
 * and only called when the CPU has them. Decode's shape: the nq <= 8 query heads of one KV head
 * against P rows. Each row is decoded 16 channels at a time in registers (f16 converted, codes
 * unpacked and dequantized with one FMA) and used at once by 4 queries:
 *   scores: per row, 4 accumulators (one per query) then one combined horizontal sum;
 *   accum:  a block of 64 channels x 4 queries of y (16 registers) stays in registers over all
 *           rows, so y is loaded and stored once per call instead of once per row tile.
 * Rows whose channel count is not a multiple of 16, and batches of more than 8 queries
 * (prefill, where the AVX2 tier's decoded tile serves every query), go to the AVX2 tier.
 *
 * Long contexts: the rows stream from DRAM (4096 positions of a 1B model's f16 cache are 92 MB a
 * token, more than its Q4 weights' 1/6), so both kernels walk the rows in tiles of ~32 KB - every
 * pass of 4 queries over a tile after the first finds it in cache - and the first pass
 * prefetches PF_ROWS rows ahead (measured at 4096 positions: a third of decode's time went to
 * attention at ~5 GB/s before). */
#include <immintrin.h>

#include "kernels/attn.h"

/* Channels c..c+15 (c a multiple of 16) of a row; type a constant after inlining. */
static inline __attribute__((always_inline)) __m512 decode16(sqz_kvrow_type type, const uint8_t *row,
                                                             const uint16_t *par, int group, int c) {
    if (type == SQZ_KVROW_F32) return _mm512_loadu_ps((const float *)row + c);
    if (type == SQZ_KVROW_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c)));
    __m512i v;
    const int b = c >> 5, j = c & 31;
    if (type == SQZ_KVROW_Q8) {
        v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + c)));
    } else if (type == SQZ_KVROW_Q4) {
        /* byte i of the block: channel i (low nibble), channel i + 16 (high) */
        v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + b * 16)));
        v = _mm512_and_si512(_mm512_srli_epi32(v, (unsigned)(j >> 4) * 4), _mm512_set1_epi32(15));
    } else {
        /* byte i of the block: channels i, i+8, i+16, i+24 in bit pairs: channels j..j+7 and
         * j+8..j+15 are the 8 bytes shifted by j/4 and j/4 + 2 */
        const __m128i by = _mm_loadl_epi64((const __m128i *)(row + b * 8));
        v = _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(by, by));
        const int s0 = j >> 2;
        const __m512i sh = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(s0)),
                                              _mm256_set1_epi32(s0 + 2), 1);
        v = _mm512_and_si512(_mm512_srlv_epi32(v, sh), _mm512_set1_epi32(3));
    }
    const int g = c / group;
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(_cvtsh_ss(par[2 * g])),
                           _mm512_set1_ps(_cvtsh_ss(par[2 * g + 1])));
}

/* (a0..a3 each summed) as 4 floats */
static inline __m128 hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    const __m256 b0 = _mm256_add_ps(_mm512_castps512_ps256(a0), _mm512_extractf32x8_ps(a0, 1));
    const __m256 b1 = _mm256_add_ps(_mm512_castps512_ps256(a1), _mm512_extractf32x8_ps(a1, 1));
    const __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(a2), _mm512_extractf32x8_ps(a2, 1));
    const __m256 b3 = _mm256_add_ps(_mm512_castps512_ps256(a3), _mm512_extractf32x8_ps(a3, 1));
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

enum { TILE_BYTES = 32768, PF_BYTES = 2048 };

/* rows per tile, and how many rows ahead the first pass prefetches (ld 0: P = 1 row, as
 * minicache passes a single row) */
static inline int tile_rows(size_t ld) { return ld >= TILE_BYTES ? 1 : ld ? (int)(TILE_BYTES / ld) : 1 << 30; }
static inline int pf_rows(size_t ld) { return ld >= PF_BYTES ? 1 : ld ? (int)(PF_BYTES / ld) : 1 << 30; }

/* every line of the row pf rows after row (its bytes rb) */
static inline void prefetch_row(const uint8_t *row, size_t ld, int pf, size_t rb) {
    const uint8_t *r = row + (size_t)pf * ld;
    for (size_t l = 0; l < rb; l += 64) _mm_prefetch((const char *)r + l, _MM_HINT_T0);
}

/* s[r][p] = scale * q_r . row_p for M queries (8: GQA's common group, each row decoded once
 * for all of them; 4; 1) over rows [p0, p1); pf: prefetch distance in rows (0: none). */
static inline __attribute__((always_inline)) void
score_rows(sqz_kvrow_type type, const int M, const sqz_kvrow_fmt *f, const float *q, const void *rows,
           size_t ld, int p0, int p1, int P, int pf, float scale, float *s, size_t sld) {
    const int n = f->n, bits = sqz_kvrow_bits(type);
    const size_t rb = sqz_kvrow_bytes(f);
    const __m128 sc = _mm_set1_ps(scale);
    for (int p = p0; p < p1; p++) {
        const uint8_t *row = (const uint8_t *)rows + (size_t)p * ld;
        if (pf && p + pf < P) prefetch_row(row, ld, pf, rb);
        const uint16_t *par = (const uint16_t *)(row + (size_t)n * bits / 8);
        __m512 a[8];
        #pragma GCC unroll 8
        for (int r = 0; r < M; r++) a[r] = _mm512_setzero_ps();
        for (int c = 0; c < n; c += 16) {
            const __m512 x = decode16(type, row, par, f->group, c);
            #pragma GCC unroll 8
            for (int r = 0; r < M; r++) a[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + (size_t)r * n + c), x, a[r]);
        }
        if (M == 1) {
            s[p] = _mm512_reduce_add_ps(a[0]) * scale;
            continue;
        }
        float o[8];
        #pragma GCC unroll 2
        for (int r = 0; r < M; r += 4) _mm_storeu_ps(o + r, _mm_mul_ps(hsum4(a[r], a[r + 1], a[r + 2], a[r + 3]), sc));
        #pragma GCC unroll 8
        for (int r = 0; r < M; r++) s[(size_t)r * sld + p] = o[r];
    }
}

static inline __attribute__((always_inline)) void
scores_t(sqz_kvrow_type type, const sqz_kvrow_fmt *f, int nq, const float *q, const void *rows,
         size_t ld, int P, float scale, float *s, size_t sld) {
    const int n = f->n, pt = tile_rows(ld), pf = pf_rows(ld);
    for (int p0 = 0; p0 < P; p0 += pt) {
        const int p1 = P - p0 < pt ? P : p0 + pt;
        int j0 = 0; /* the tile's first pass prefetches the next rows */
        if (nq == 8) score_rows(type, 8, f, q, rows, ld, p0, p1, P, pf, scale, s, sld), j0 = 8;
        for (; j0 + 4 <= nq; j0 += 4)
            score_rows(type, 4, f, q + (size_t)j0 * n, rows, ld, p0, p1, P, j0 ? 0 : pf, scale,
                       s + (size_t)j0 * sld, sld);
        for (; j0 < nq; j0++)
            score_rows(type, 1, f, q + (size_t)j0 * n, rows, ld, p0, p1, P, j0 ? 0 : pf, scale,
                       s + (size_t)j0 * sld, sld);
    }
}

/* y[M queries][c0 .. c0 + 16 NC) += sum_p w . row_p, the block held in registers over all rows. */
static inline __attribute__((always_inline)) void
accum_block(sqz_kvrow_type type, const int M, const int NC, const sqz_kvrow_fmt *f,
            const float *w, size_t wld, const void *rows, size_t ld, int p0, int p1, int P, int pf,
            float *y, int c0) {
    const int n = f->n, bits = sqz_kvrow_bits(type);
    const size_t rb = sqz_kvrow_bytes(f);
    __m512 acc[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < M; r++)
        #pragma GCC unroll 4
        for (int k = 0; k < NC; k++) acc[r][k] = _mm512_loadu_ps(y + (size_t)r * n + c0 + 16 * k);
    for (int p = p0; p < p1; p++) {
        const uint8_t *row = (const uint8_t *)rows + (size_t)p * ld;
        if (pf && p + pf < P) prefetch_row(row, ld, pf, rb);
        const uint16_t *par = (const uint16_t *)(row + (size_t)n * bits / 8);
        __m512 x[4];
        #pragma GCC unroll 4
        for (int k = 0; k < NC; k++) x[k] = decode16(type, row, par, f->group, c0 + 16 * k);
        #pragma GCC unroll 4
        for (int r = 0; r < M; r++) {
            const __m512 wr = _mm512_set1_ps(w[(size_t)r * wld + p]);
            #pragma GCC unroll 4
            for (int k = 0; k < NC; k++) acc[r][k] = _mm512_fmadd_ps(wr, x[k], acc[r][k]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < M; r++)
        #pragma GCC unroll 4
        for (int k = 0; k < NC; k++) _mm512_storeu_ps(y + (size_t)r * n + c0 + 16 * k, acc[r][k]);
}

static inline __attribute__((always_inline)) void
accum_t(sqz_kvrow_type type, const sqz_kvrow_fmt *f, int nq, const float *w, size_t wld,
        const void *rows, size_t ld, int P, float *y) {
    const int n = f->n, pt = tile_rows(ld), pf = pf_rows(ld);
    for (int p0 = 0; p0 < P; p0 += pt) {
        const int p1 = P - p0 < pt ? P : p0 + pt;
        int j0 = 0, first = 1; /* the tile's first pass prefetches the next rows */
        for (; j0 + 4 <= nq; j0 += 4) {
            const float *wj = w + (size_t)j0 * wld;
            float *yj = y + (size_t)j0 * n;
            int c = 0;
            for (; c + 64 <= n; c += 64, first = 0)
                accum_block(type, 4, 4, f, wj, wld, rows, ld, p0, p1, P, first ? pf : 0, yj, c);
            for (; c < n; c += 16, first = 0)
                accum_block(type, 4, 1, f, wj, wld, rows, ld, p0, p1, P, first ? pf : 0, yj, c);
        }
        for (; j0 < nq; j0++) {
            const float *wj = w + (size_t)j0 * wld;
            float *yj = y + (size_t)j0 * n;
            int c = 0;
            for (; c + 64 <= n; c += 64, first = 0)
                accum_block(type, 1, 4, f, wj, wld, rows, ld, p0, p1, P, first ? pf : 0, yj, c);
            for (; c < n; c += 16, first = 0)
                accum_block(type, 1, 1, f, wj, wld, rows, ld, p0, p1, P, first ? pf : 0, yj, c);
        }
    }
}

enum { MAX_NQ = 8 }; /* more queries: the AVX2 tier's decoded tile */

static void scores_avx512(const sqz_kvrow_fmt *f, int nq, const float *q, const void *rows,
                          size_t ld, int P, float scale, float *s, size_t sld) {
    if (f->n % 16 || nq > MAX_NQ) {
        sqz_attn_kernels_avx2().scores(f, nq, q, rows, ld, P, scale, s, sld);
        return;
    }
    switch (f->type) {
    case SQZ_KVROW_F32: scores_t(SQZ_KVROW_F32, f, nq, q, rows, ld, P, scale, s, sld); break;
    case SQZ_KVROW_F16: scores_t(SQZ_KVROW_F16, f, nq, q, rows, ld, P, scale, s, sld); break;
    case SQZ_KVROW_Q8: scores_t(SQZ_KVROW_Q8, f, nq, q, rows, ld, P, scale, s, sld); break;
    case SQZ_KVROW_Q4: scores_t(SQZ_KVROW_Q4, f, nq, q, rows, ld, P, scale, s, sld); break;
    case SQZ_KVROW_Q2: scores_t(SQZ_KVROW_Q2, f, nq, q, rows, ld, P, scale, s, sld); break;
    }
}

static void accum_avx512(const sqz_kvrow_fmt *f, int nq, const float *w, size_t wld,
                         const void *rows, size_t ld, int P, float *y) {
    if (f->n % 16 || nq > MAX_NQ) {
        sqz_attn_kernels_avx2().accum(f, nq, w, wld, rows, ld, P, y);
        return;
    }
    switch (f->type) {
    case SQZ_KVROW_F32: accum_t(SQZ_KVROW_F32, f, nq, w, wld, rows, ld, P, y); break;
    case SQZ_KVROW_F16: accum_t(SQZ_KVROW_F16, f, nq, w, wld, rows, ld, P, y); break;
    case SQZ_KVROW_Q8: accum_t(SQZ_KVROW_Q8, f, nq, w, wld, rows, ld, P, y); break;
    case SQZ_KVROW_Q4: accum_t(SQZ_KVROW_Q4, f, nq, w, wld, rows, ld, P, y); break;
    case SQZ_KVROW_Q2: accum_t(SQZ_KVROW_Q2, f, nq, w, wld, rows, ld, P, y); break;
    }
}

sqz_attn_kernels sqz_attn_kernels_avx512(void) {
    return (sqz_attn_kernels){ scores_avx512, accum_avx512, sqz_attn_kernels_avx2().softmax };
}
