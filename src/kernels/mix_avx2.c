/* mix_avx2.c - AVX2 dot products of sqz's mixllm types with Q8_1 activations (mix.h). The
 * integer sums per 32-element block are exact (as in mix_ref.c); each is scaled and summed in
 * an 8-lane f32 accumulator, so only the order of the f32 additions differs from the
 * reference (tests/test_mixllm.c compares them). */
#include <immintrin.h>

#include "kernels/mix.h"
#include "quant/blocks.h"

static float h2f(uint16_t h) { return _cvtsh_ss(h); }

static float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 lanes of partial sums of u8 w times s8 x over 32 bytes (|w| <= 127: no i16 overflow). */
static inline __m256i dot_u8_s8(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

float sqz_mx8_dot_q8_1_avx2(int64_t n, const void *row, const void *xq) {
    const block_mx8 *w = row;
    const block_q8_1 *x = xq;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_MX; i++) {
        const float d = h2f(w[i].d);
        for (int s = 0; s < 4; s++) {
            const block_q8_1 *xb = &x[i * 4 + s];
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w[i].q + 32 * s));
            const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
            /* signed x signed through maddubs: |w| times x with w's sign */
            const __m256i p = dot_u8_s8(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * h2f(xb->d)), _mm256_cvtepi32_ps(p), acc);
        }
    }
    return hsum8(acc);
}

float sqz_mx4_dot_q8_1_avx2(int64_t n, const void *row, const void *xq) {
    const block_mx4 *w = row;
    const block_q8_1 *x = xq;
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float macc = 0;
    for (int64_t i = 0; i < n / QK_MX; i++) {
        const float d = h2f(w[i].d), m = h2f(w[i].m);
        const __m256i a = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i b = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32));
        /* elements 0-31, 32-63 are the low nibbles of qs[0..31], qs[32..63]; 64-127 the high */
        const __m256i q[4] = { _mm256_and_si256(a, low4), _mm256_and_si256(b, low4),
                               _mm256_and_si256(_mm256_srli_epi16(a, 4), low4),
                               _mm256_and_si256(_mm256_srli_epi16(b, 4), low4) };
        for (int s = 0; s < 4; s++) {
            const block_q8_1 *xb = &x[i * 4 + s];
            const __m256i p = dot_u8_s8(q[s], _mm256_loadu_si256((const __m256i *)xb->qs));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * h2f(xb->d)), _mm256_cvtepi32_ps(p), acc);
            macc += m * h2f(xb->s);
        }
    }
    return hsum8(acc) + macc;
}

float sqz_mx3_dot_q8_1_avx2(int64_t n, const void *row, const void *xq) {
    const block_mx3 *w = row;
    const block_q8_1 *x = xq;
    const __m256i three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    float macc = 0;
    for (int64_t i = 0; i < n / QK_MX; i++) {
        const float d = h2f(w[i].d), m = h2f(w[i].m);
        const __m256i ql = _mm256_loadu_si256((const __m256i *)w[i].ql);
        /* qh[0..15] in both halves: lanes k < 16 of sub-block s read bit 2s, the others 2s+1 */
        const __m256i qh = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[i].qh));
        for (int s = 0; s < 4; s++) {
            const block_q8_1 *xb = &x[i * 4 + s];
            const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(ql, 2 * s), three);
            const __m256i bit = _mm256_setr_m128i(_mm_set1_epi8((char)(1 << (2 * s))),
                                                  _mm_set1_epi8((char)(1 << (2 * s + 1))));
            const __m256i hi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), four);
            const __m256i p = dot_u8_s8(_mm256_or_si256(lo, hi),
                                        _mm256_loadu_si256((const __m256i *)xb->qs));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * h2f(xb->d)), _mm256_cvtepi32_ps(p), acc);
            macc += m * h2f(xb->s);
        }
    }
    return hsum8(acc) + macc;
}
