/* qdot_dq2_avx512.c - AVX-512 VNNI dq2 . Q8_0 (compiled with the AVX-512 flags; handed out only
 * when the CPU has AVX512-VNNI, else the dispatch falls back to AVX2). One group of 64 codes is
 * one zmm of bytes, its two Q8_0 blocks another; vpdpbusd (u8 codes x s8 activations, four
 * products per int32 lane) gives the sums of elements 0..31 in lanes 0..7 and 32..63 in lanes
 * 8..15. Same integer sums as qdot_dq2_ref.c; only the f32 summation order differs. */
#include <immintrin.h>

#include "kernels/qdot_dq2.h"
#include "formats/blocks.h"
#include "formats/dq2.h"

float sqz_dq2_vec_dot_q_avx512(int64_t n, const void *row, const void *xq) {
    const block_dq2 *w = row;
    const block_q8_0 *a = xq;
    const __m512i mask = _mm512_set1_epi8(3), ones8 = _mm512_set1_epi8(1);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_DQ2; b++) {
        /* bit pair k of the 16 code bytes holds elements 16k..16k+15 (dq2.h) */
        const __m128i raw = _mm_loadu_si128((const __m128i *)w[b].qs);
        __m512i q = _mm512_castsi128_si512(raw);
        q = _mm512_inserti32x4(q, _mm_srli_epi16(raw, 2), 1);
        q = _mm512_inserti32x4(q, _mm_srli_epi16(raw, 4), 2);
        q = _mm512_inserti32x4(q, _mm_srli_epi16(raw, 6), 3);
        q = _mm512_and_si512(q, mask);
        const __m512i av = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a[2 * b].qs)),
            _mm256_loadu_si256((const __m256i *)a[2 * b + 1].qs), 1);
        const __m512 isum = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, av));
        const __m512 asum = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones8, av));
        const float d = _cvtsh_ss(w[b].d), m = _cvtsh_ss(w[b].m);
        const float da0 = _cvtsh_ss(a[2 * b].d), da1 = _cvtsh_ss(a[2 * b + 1].d);
        const __m512 sd = _mm512_insertf32x8(_mm512_set1_ps(d * da0), _mm256_set1_ps(d * da1), 1);
        const __m512 sm = _mm512_insertf32x8(_mm512_set1_ps(m * da0), _mm256_set1_ps(m * da1), 1);
        acc = _mm512_fmadd_ps(sd, isum, acc);
        acc = _mm512_fmadd_ps(sm, asum, acc);
    }
    return _mm512_reduce_add_ps(acc);
}
