/* mix_avx2.c - AVX2 dot products of sqz's mixllm types with MXA activations (mix.h). The
 * integer sums per 32-element sub-block are exact (as in mix_ref.c); the four of a group are
 * gathered into one vector and scaled by d_w * dx[0..3] in a 4-lane f32 accumulator, so only
 * the order of the f32 additions differs from the reference (tests/test_mixllm.c compares). */
#include <immintrin.h>

#include "kernels/mix.h"

static float h2f(uint16_t h) { return _cvtsh_ss(h); }

static float hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 lanes of partial sums of u8 w times s8 x over 32 bytes (|w| <= 127: no i16 overflow). */
static inline __m256i dot_u8_s8(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

/* [sum p0, sum p1, sum p2, sum p3] as floats. */
static inline __m128 sums4(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    const __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
    return _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)));
}

static inline __m256i ld(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

float sqz_mx8_dot_mxa_avx2(int64_t n, const void *row, const void *xq) {
    const block_mx8 *w = row;
    const block_mxa *x = xq;
    __m128 acc = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QK_MX; i++) {
        __m256i p[4];
        for (int k = 0; k < 4; k++) {
            const __m256i wv = ld(w[i].q + 32 * k), xv = ld(x[i].q + 32 * k);
            /* signed x signed through maddubs: |w| times x with w's sign */
            p[k] = dot_u8_s8(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
        }
        const __m128 sc = _mm_mul_ps(_mm_set1_ps(h2f(w[i].d)), _mm_loadu_ps(x[i].d));
        acc = _mm_fmadd_ps(sums4(p[0], p[1], p[2], p[3]), sc, acc);
    }
    return hsum4(acc);
}

float sqz_mx4_dot_mxa_avx2(int64_t n, const void *row, const void *xq) {
    const block_mx4 *w = row;
    const block_mxa *x = xq;
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m128 acc = _mm_setzero_ps();
    float macc = 0;
    for (int64_t i = 0; i < n / QK_MX; i++) {
        const __m256i a = ld(w[i].qs), b = ld(w[i].qs + 32);
        /* elements 0-31, 32-63 are the low nibbles of qs[0..31], qs[32..63]; 64-127 the high */
        const __m256i p0 = dot_u8_s8(_mm256_and_si256(a, low4), ld(x[i].q));
        const __m256i p1 = dot_u8_s8(_mm256_and_si256(b, low4), ld(x[i].q + 32));
        const __m256i p2 = dot_u8_s8(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4), ld(x[i].q + 64));
        const __m256i p3 = dot_u8_s8(_mm256_and_si256(_mm256_srli_epi16(b, 4), low4), ld(x[i].q + 96));
        const __m128 sc = _mm_mul_ps(_mm_set1_ps(h2f(w[i].d)), _mm_loadu_ps(x[i].d));
        acc = _mm_fmadd_ps(sums4(p0, p1, p2, p3), sc, acc);
        macc += h2f(w[i].m) * x[i].s;
    }
    return hsum4(acc) + macc;
}

float sqz_mx3_dot_mxa_avx2(int64_t n, const void *row, const void *xq) {
    const block_mx3 *w = row;
    const block_mxa *x = xq;
    const __m256i three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    __m128 acc = _mm_setzero_ps();
    float macc = 0;
    for (int64_t i = 0; i < n / QK_MX; i++) {
        const __m256i ql = ld(w[i].ql);
        /* qh[0..15] in both halves: lanes j < 16 of sub-block k read bit 2k, the others 2k+1 */
        const __m256i qh = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[i].qh));
        __m256i p[4];
        for (int k = 0; k < 4; k++) {
            const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(ql, 2 * k), three);
            const __m256i bit = _mm256_setr_m128i(_mm_set1_epi8((char)(1 << (2 * k))),
                                                  _mm_set1_epi8((char)(1 << (2 * k + 1))));
            const __m256i hi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), four);
            p[k] = dot_u8_s8(_mm256_or_si256(lo, hi), ld(x[i].q + 32 * k));
        }
        const __m128 sc = _mm_mul_ps(_mm_set1_ps(h2f(w[i].d)), _mm_loadu_ps(x[i].d));
        acc = _mm_fmadd_ps(sums4(p[0], p[1], p[2], p[3]), sc, acc);
        macc += h2f(w[i].m) * x[i].s;
    }
    return hsum4(acc) + macc;
}
