/* ops_avx2.c - the row operations of ops.h that are worth a SIMD tier (AVX2 + FMA; called only
 * on CPUs that have them). */
#include <immintrin.h>
#include <math.h>

#include "kernels/exp_avx2.h"
#include "kernels/ops.h"

/* 8 at a time, a multiply then an add; the tail as the reference does it. Never fused into an
 * FMA: GCC's ISO C mode (-std=c11) does not contract, clang is told so here. */
void sqz_axpy_avx2(float *y, float a, const float *x, int64_t n) {
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

/* silu(g) * u = g / (1 + e^-g) * u, 8 at a time; the tail through masked loads and stores. */
void sqz_swiglu_avx2(float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = sqz_exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)),
                                                 _mm256_loadu_ps(up + i)));
    }
    if (i < n) {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 g = _mm256_maskload_ps(gate + i, m);
        const __m256 e = sqz_exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_maskstore_ps(gate + i, m, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)),
                                                       _mm256_maskload_ps(up + i, m)));
    }
}

void sqz_rmsnorm_avx2(float *out, const float *x, const float *w, int T, int D, float eps) {
    if (D % 8) { /* the models' widths are multiples of 8; anything else takes the reference */
        sqz_rmsnorm_ref(out, x, w, T, D, eps);
        return;
    }
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * D;
        float *o = out + (size_t)t * D;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 16 <= D; i += 16) {
            const __m256 a = _mm256_loadu_ps(xr + i), b = _mm256_loadu_ps(xr + i + 8);
            s0 = _mm256_fmadd_ps(a, a, s0);
            s1 = _mm256_fmadd_ps(b, b, s1);
        }
        if (i < D) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), _mm256_loadu_ps(xr + i), s0);
        __m256 s8 = _mm256_add_ps(s0, s1);
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
        s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
        const __m256 sc = _mm256_set1_ps(1.0f / sqrtf(_mm_cvtss_f32(s4) / (float)D + eps));
        for (i = 0; i < D; i += 8)
            _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), sc),
                                                  _mm256_loadu_ps(w + i)));
    }
}

/* Max, then e^(x - max) and its sum 8 at a time (the tail masked: lanes past n hold e^-inf = 0
 * in the sum and are not stored), then the scaling. */
void sqz_softmax_avx2(float *x, int n) {
    if (n < 8) {
        sqz_softmax_ref(x, n);
        return;
    }
    __m256 mv = _mm256_loadu_ps(x);
    int i = 8;
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    float m = x[0];
    float lanes[8];
    _mm256_storeu_ps(lanes, mv);
    for (int j = 0; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    const __m256 mb = _mm256_set1_ps(m);
    __m256 sv = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = sqz_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mb));
        _mm256_storeu_ps(x + i, e);
        sv = _mm256_add_ps(sv, e);
    }
    if (i < n) {
        const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 e = _mm256_and_ps(sqz_exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), mb)),
                                       _mm256_castsi256_ps(k));
        _mm256_maskstore_ps(x + i, k, e);
        sv = _mm256_add_ps(sv, e);
    }
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(sv), _mm256_extractf128_ps(sv, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    const __m256 inv = _mm256_set1_ps(1.0f / _mm_cvtss_f32(s4));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= _mm_cvtss_f32(_mm256_castps256_ps128(inv));
}
