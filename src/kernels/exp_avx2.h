/* exp_avx2.h - e^x on 8 floats (AVX2 + FMA), for the kernels compiled with those flags
 * (softmax in attn_avx2.c, SwiGLU in ops_avx2.c).
 *
 * As Cephes' expf: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so n ln2 is exact),
 * e^r = 1 + r + r^2 P(r) with P Cephes' degree-5 minimax polynomial (about 1 ulp), times 2^n
 * built in the exponent bits. x is clamped to [-87, 88]: below, the result would be subnormal
 * (e^-87 ~ 1e-38), above, 2^n would overflow the exponent; within 2 ulp of libm's expf there. */
#ifndef SQZ_KERNELS_EXP_AVX2_H
#define SQZ_KERNELS_EXP_AVX2_H

#include <immintrin.h>

static inline __m256 sqz_exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#endif
