/* qdot_dq2_avx2.c - AVX2 dq2 . Q8_0 (compiled with -mavx2 -mfma -mf16c; only called when the
 * CPU has them). Same integer sums as qdot_dq2_ref.c; only the f32 summation order differs. */
#include <immintrin.h>

#include "kernels/qdot_dq2.h"
#include "formats/blocks.h"
#include "formats/dq2.h"

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

float sqz_dq2_vec_dot_q_avx2(int64_t n, const void *row, const void *xq) {
    const block_dq2 *w = row;
    const block_q8_0 *a = xq;
    const __m256i mask = _mm256_set1_epi8(3), ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_DQ2; b++) {
        /* bit pair k of the 16 code bytes holds elements 16k..16k+15: shifting 16-bit lanes
         * drags the neighbour byte's bits into bits 2..7, which the mask drops */
        const __m128i raw = _mm_loadu_si128((const __m128i *)w[b].qs);
        const __m256i q0 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 2), raw), mask);
        const __m256i q1 = _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(raw, 6), _mm_srli_epi16(raw, 4)), mask);
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)a[2 * b].qs);
        const __m256i a1 = _mm256_loadu_si256((const __m256i *)a[2 * b + 1].qs);
        /* codes are 0..3 (unsigned operand of maddubs): |pair sum| <= 768, no saturation */
        const __m256 i0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(q0, a0), ones16));
        const __m256 i1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(q1, a1), ones16));
        const __m256 s0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ones8, a0), ones16));
        const __m256 s1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ones8, a1), ones16));
        const float d = _cvtsh_ss(w[b].d), m = _cvtsh_ss(w[b].m);
        const float da0 = _cvtsh_ss(a[2 * b].d), da1 = _cvtsh_ss(a[2 * b + 1].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * da0), i0, acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(m * da0), s0, acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * da1), i1, acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(m * da1), s1, acc);
    }
    return hsum256(acc);
}
