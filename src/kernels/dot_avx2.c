/* dot_avx2.c - AVX2 + FMA + F16C dot products (compiled with -mavx2 -mfma -mf16c; only
 * called when the CPU has them). */
#include <immintrin.h>

#include "kernels/kernels.h"
#include "kernels/qdot.h"

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

float sqz_dot_f32_avx2(const void *row, const float *x, int64_t n) {
    const float *r = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += r[i] * x[i];
    return s;
}

float sqz_dot_f16_avx2(const void *row, const float *x, int64_t n) {
    const uint16_t *r = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + i + 8)));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += sqz_f16_to_f32(r[i]) * x[i];
    return s;
}

static inline __m256 bf16x8_to_ps(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

float sqz_dot_bf16_avx2(const void *row, const float *x, int64_t n) {
    const uint16_t *r = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(bf16x8_to_ps(r + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8_to_ps(r + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += sqz_bf16_to_f32(r[i]) * x[i];
    return s;
}

void sqz_cvt_f16_avx2(const void *row, float *dst, int64_t n) {
    const uint16_t *r = row;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + i))));
    for (; i < n; i++) dst[i] = sqz_f16_to_f32(r[i]);
}

void sqz_cvt_bf16_avx2(const void *row, float *dst, int64_t n) {
    const uint16_t *r = row;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8_to_ps(r + i));
    for (; i < n; i++) dst[i] = sqz_bf16_to_f32(r[i]);
}
