/* attn_avx2.c - AVX2 + FMA + F16C attention kernels over KV rows (attn.h); compiled with
 * -mavx2 -mfma -mf16c and only called when the CPU has them. Rows are decoded 8 channels at a
 * time into registers (dequantization fused: code * scale + min in one FMA) and used for every
 * query of the batch before the next 8 are decoded (rows longer than TILE_N), or decoded 4 rows
 * at a time into an L1 tile that every query then reads (the common case, below). Rows whose
 * channel count is not a multiple of 8 (only possible for f32/f16) go to the reference. */
#include <immintrin.h>

#include "kernels/attn.h"
#include "kernels/exp_avx2.h"

enum { NQ = 8 }; /* queries per pass: their accumulators stay in registers */

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* Channels c..c+7 of a row (c a multiple of 8), type a compile-time constant after inlining. */
static inline __attribute__((always_inline)) __m256 decode8(sqz_kvrow_type type, const uint8_t *row,
                                                            const uint16_t *par, int group, int c) {
    if (type == SQZ_KVROW_F32) return _mm256_loadu_ps((const float *)row + c);
    if (type == SQZ_KVROW_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + c)));
    __m256i v;
    const int b = c >> 5, j = c & 31;
    if (type == SQZ_KVROW_Q8) {
        v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + c)));
    } else if (type == SQZ_KVROW_Q4) {
        v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + b * 16 + (j & 15))));
        v = _mm256_and_si256(_mm256_srli_epi32(v, (j >> 4) * 4), _mm256_set1_epi32(15));
    } else {
        v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + b * 8)));
        v = _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_set1_epi32((j >> 3) * 2)),
                             _mm256_set1_epi32(3));
    }
    const int g = c / group;
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(h2f(par[2 * g])),
                           _mm256_set1_ps(h2f(par[2 * g + 1])));
}

static inline __attribute__((always_inline)) void
scores_t(sqz_kvrow_type type, const sqz_kvrow_fmt *f, int nq, const float *q, const void *rows,
         size_t ld, int P, float scale, float *s, size_t sld) {
    const int n = f->n, bits = sqz_kvrow_bits(type);
    for (int p = 0; p < P; p++) {
        const uint8_t *row = (const uint8_t *)rows + (size_t)p * ld;
        const uint16_t *par = (const uint16_t *)(row + (size_t)n * bits / 8);
        for (int j0 = 0; j0 < nq; j0 += NQ) {
            const int jn = nq - j0 < NQ ? nq - j0 : NQ;
            __m256 acc[NQ];
            for (int j = 0; j < jn; j++) acc[j] = _mm256_setzero_ps();
            for (int c = 0; c < n; c += 8) {
                const __m256 x = decode8(type, row, par, f->group, c);
                for (int j = 0; j < jn; j++)
                    acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)(j0 + j) * n + c), x, acc[j]);
            }
            for (int j = 0; j < jn; j++) s[(size_t)(j0 + j) * sld + p] = hsum256(acc[j]) * scale;
        }
    }
}

static inline __attribute__((always_inline)) void
accum_t(sqz_kvrow_type type, const sqz_kvrow_fmt *f, int nq, const float *w, size_t wld,
        const void *rows, size_t ld, int P, float *y) {
    const int n = f->n, bits = sqz_kvrow_bits(type);
    for (int p = 0; p < P; p++) {
        const uint8_t *row = (const uint8_t *)rows + (size_t)p * ld;
        const uint16_t *par = (const uint16_t *)(row + (size_t)n * bits / 8);
        for (int c = 0; c < n; c += 8) {
            const __m256 x = decode8(type, row, par, f->group, c);
            for (int j = 0; j < nq; j++) {
                float *yj = y + (size_t)j * n + c;
                _mm256_storeu_ps(yj, _mm256_fmadd_ps(_mm256_set1_ps(w[(size_t)j * wld + p]), x,
                                                     _mm256_loadu_ps(yj)));
            }
        }
    }
}

/* Tiles of 4 rows: the rows are decoded once into a small f32 tile in L1 (not a copy of the
 * cache: 4 rows at a time), then every query reads the tile - scores finish 4 rows with one
 * horizontal reduction, accumulation loads and stores y once per 4 rows. */
enum { TR = 4, TILE_N = 512 };

static inline __attribute__((always_inline)) void decode_tile(sqz_kvrow_type type, const sqz_kvrow_fmt *f,
                                                              const uint8_t *rows, size_t ld, int p,
                                                              int m, float *tile) {
    const int n = f->n, bits = sqz_kvrow_bits(type);
    for (int r = 0; r < m; r++) {
        const uint8_t *row = rows + (size_t)(p + r) * ld;
        const uint16_t *par = (const uint16_t *)(row + (size_t)n * bits / 8);
        for (int c = 0; c < n; c += 8)
            _mm256_storeu_ps(tile + r * n + c, decode8(type, row, par, f->group, c));
    }
}

/* (a0..a3 summed within each) as 4 floats */
static inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 h01 = _mm256_hadd_ps(a0, a1), h23 = _mm256_hadd_ps(a2, a3);
    const __m256 h = _mm256_hadd_ps(h01, h23); /* lanes: 0 1 2 3 | 0 1 2 3 (halves) */
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

static inline __attribute__((always_inline)) void
scores_tiled(sqz_kvrow_type type, const sqz_kvrow_fmt *f, int nq, const float *q, const void *rows,
             size_t ld, int P, float scale, float *s, size_t sld) {
    const int n = f->n;
    float tile[TR * TILE_N];
    int p = 0;
    for (; p + TR <= P; p += TR) {
        decode_tile(type, f, rows, ld, p, TR, tile);
        for (int j = 0; j < nq; j++) {
            const float *qj = q + (size_t)j * n;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int c = 0; c < n; c += 8) {
                const __m256 x = _mm256_loadu_ps(qj + c);
                a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(tile + c), a0);
                a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(tile + n + c), a1);
                a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(tile + 2 * n + c), a2);
                a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(tile + 3 * n + c), a3);
            }
            _mm_storeu_ps(s + (size_t)j * sld + p, _mm_mul_ps(hsum4(a0, a1, a2, a3), _mm_set1_ps(scale)));
        }
    }
    if (p < P) scores_t(type, f, nq, q, (const uint8_t *)rows + (size_t)p * ld, ld, P - p, scale, s + p, sld);
}

static inline __attribute__((always_inline)) void
accum_tiled(sqz_kvrow_type type, const sqz_kvrow_fmt *f, int nq, const float *w, size_t wld,
            const void *rows, size_t ld, int P, float *y) {
    const int n = f->n;
    float tile[TR * TILE_N];
    int p = 0;
    for (; p + TR <= P; p += TR) {
        decode_tile(type, f, rows, ld, p, TR, tile);
        for (int j = 0; j < nq; j++) {
            const float *wj = w + (size_t)j * wld + p;
            const __m256 w0 = _mm256_set1_ps(wj[0]), w1 = _mm256_set1_ps(wj[1]),
                         w2 = _mm256_set1_ps(wj[2]), w3 = _mm256_set1_ps(wj[3]);
            float *yj = y + (size_t)j * n;
            for (int c = 0; c < n; c += 8) {
                __m256 a = _mm256_loadu_ps(yj + c);
                a = _mm256_fmadd_ps(w0, _mm256_loadu_ps(tile + c), a);
                a = _mm256_fmadd_ps(w1, _mm256_loadu_ps(tile + n + c), a);
                a = _mm256_fmadd_ps(w2, _mm256_loadu_ps(tile + 2 * n + c), a);
                a = _mm256_fmadd_ps(w3, _mm256_loadu_ps(tile + 3 * n + c), a);
                _mm256_storeu_ps(yj + c, a);
            }
        }
    }
    if (p < P)
        accum_t(type, f, nq, w + p, wld, (const uint8_t *)rows + (size_t)p * ld, ld, P - p, y);
}

static void scores_avx2(const sqz_kvrow_fmt *f, int nq, const float *q, const void *rows,
                        size_t ld, int P, float scale, float *s, size_t sld) {
    if (f->n % 8) {
        sqz_attn_kernels_ref().scores(f, nq, q, rows, ld, P, scale, s, sld);
        return;
    }
    if (f->n > TILE_N) {
        switch (f->type) {
        case SQZ_KVROW_F32: scores_t(SQZ_KVROW_F32, f, nq, q, rows, ld, P, scale, s, sld); break;
        case SQZ_KVROW_F16: scores_t(SQZ_KVROW_F16, f, nq, q, rows, ld, P, scale, s, sld); break;
        case SQZ_KVROW_Q8: scores_t(SQZ_KVROW_Q8, f, nq, q, rows, ld, P, scale, s, sld); break;
        case SQZ_KVROW_Q4: scores_t(SQZ_KVROW_Q4, f, nq, q, rows, ld, P, scale, s, sld); break;
        case SQZ_KVROW_Q2: scores_t(SQZ_KVROW_Q2, f, nq, q, rows, ld, P, scale, s, sld); break;
        }
        return;
    }
    switch (f->type) {
    case SQZ_KVROW_F32: scores_tiled(SQZ_KVROW_F32, f, nq, q, rows, ld, P, scale, s, sld); break;
    case SQZ_KVROW_F16: scores_tiled(SQZ_KVROW_F16, f, nq, q, rows, ld, P, scale, s, sld); break;
    case SQZ_KVROW_Q8: scores_tiled(SQZ_KVROW_Q8, f, nq, q, rows, ld, P, scale, s, sld); break;
    case SQZ_KVROW_Q4: scores_tiled(SQZ_KVROW_Q4, f, nq, q, rows, ld, P, scale, s, sld); break;
    case SQZ_KVROW_Q2: scores_tiled(SQZ_KVROW_Q2, f, nq, q, rows, ld, P, scale, s, sld); break;
    }
}

static void accum_avx2(const sqz_kvrow_fmt *f, int nq, const float *w, size_t wld,
                       const void *rows, size_t ld, int P, float *y) {
    if (f->n % 8) {
        sqz_attn_kernels_ref().accum(f, nq, w, wld, rows, ld, P, y);
        return;
    }
    if (f->n > TILE_N) {
        switch (f->type) {
        case SQZ_KVROW_F32: accum_t(SQZ_KVROW_F32, f, nq, w, wld, rows, ld, P, y); break;
        case SQZ_KVROW_F16: accum_t(SQZ_KVROW_F16, f, nq, w, wld, rows, ld, P, y); break;
        case SQZ_KVROW_Q8: accum_t(SQZ_KVROW_Q8, f, nq, w, wld, rows, ld, P, y); break;
        case SQZ_KVROW_Q4: accum_t(SQZ_KVROW_Q4, f, nq, w, wld, rows, ld, P, y); break;
        case SQZ_KVROW_Q2: accum_t(SQZ_KVROW_Q2, f, nq, w, wld, rows, ld, P, y); break;
        }
        return;
    }
    switch (f->type) {
    case SQZ_KVROW_F32: accum_tiled(SQZ_KVROW_F32, f, nq, w, wld, rows, ld, P, y); break;
    case SQZ_KVROW_F16: accum_tiled(SQZ_KVROW_F16, f, nq, w, wld, rows, ld, P, y); break;
    case SQZ_KVROW_Q8: accum_tiled(SQZ_KVROW_Q8, f, nq, w, wld, rows, ld, P, y); break;
    case SQZ_KVROW_Q4: accum_tiled(SQZ_KVROW_Q4, f, nq, w, wld, rows, ld, P, y); break;
    case SQZ_KVROW_Q2: accum_tiled(SQZ_KVROW_Q2, f, nq, w, wld, rows, ld, P, y); break;
    }
}

static void softmax_avx2(float *x, int n) {
    int i = 0;
    __m256 mv = _mm256_set1_ps(x[0]);
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float m = _mm_cvtss_f32(m4);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    const __m256 mb = _mm256_set1_ps(m);
    __m256 sv = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = sqz_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mb));
        _mm256_storeu_ps(x + i, e);
        sv = _mm256_add_ps(sv, e);
    }
    if (i < n) { /* the tail through a padded buffer, so every element takes the same exp */
        float t[8];
        for (int k = 0; k < 8; k++) t[k] = i + k < n ? x[i + k] - m : -87.0f;
        const __m256 e = sqz_exp256(_mm256_loadu_ps(t));
        _mm256_storeu_ps(t, e);
        for (int k = 0; i + k < n; k++) x[i + k] = t[k];
        sv = _mm256_add_ps(sv, _mm256_blendv_ps(_mm256_setzero_ps(), e,
                                                _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                                                    _mm256_set1_epi32(n - i),
                                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))));
    }
    const __m256 inv = _mm256_set1_ps(1.0f / hsum256(sv));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= _mm256_cvtss_f32(inv);
}

sqz_attn_kernels sqz_attn_kernels_avx2(void) {
    return (sqz_attn_kernels){ scores_avx2, accum_avx2, softmax_avx2 };
}
