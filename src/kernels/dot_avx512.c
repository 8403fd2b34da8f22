/* dot_avx512.c - AVX-512F dot products (compiled with -mavx512f ...; only called when the CPU
 * has AVX-512F/BW/VL). Two accumulators of 16 lanes hide the FMA latency. */
#include <immintrin.h>

#include "kernels/kernels.h"
#include "kernels/qdot.h"

/* decode streams the rows from DRAM: prefetch ahead (qdot_avx512.c says why) into L2. On AMD
 * Zen 4 (1.1B F16, 2 threads, 3 alternating rounds, medians) 6 KB into L2 decoded 16-17
 * tokens/s where 3 KB into L1 (the Xeon's choice) did 12.4, 3 KB into L2 14.0, 6 KB into L1
 * 13.6, 12 KB into L2 13.5. Overridable at build time to tune on another machine. */
#ifndef DOT_PF_DIST
#define DOT_PF_DIST 6144
#endif
#ifndef DOT_PF_HINT
#define DOT_PF_HINT _MM_HINT_T1
#endif
enum { PF_DIST = DOT_PF_DIST };

float sqz_dot_f32_avx512(const void *row, const float *x, int64_t n) {
    const float *r = row;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(r + i) + PF_DIST, DOT_PF_HINT);
        _mm_prefetch((const char *)(r + i) + PF_DIST + 64, DOT_PF_HINT);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(r + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r + i), _mm512_loadu_ps(x + i), a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) s += r[i] * x[i];
    return s;
}

float sqz_dot_f16_avx512(const void *row, const float *x, int64_t n) {
    const uint16_t *r = row;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(r + i) + PF_DIST, DOT_PF_HINT);
        __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + i)));
        __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + i + 16)));
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + i))),
                             _mm512_loadu_ps(x + i), a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) s += sqz_f16_to_f32(r[i]) * x[i];
    return s;
}

static inline __m512 bf16x16_to_ps(const uint16_t *p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

float sqz_dot_bf16_avx512(const void *row, const float *x, int64_t n) {
    const uint16_t *r = row;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(r + i) + PF_DIST, DOT_PF_HINT);
        a0 = _mm512_fmadd_ps(bf16x16_to_ps(r + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(bf16x16_to_ps(r + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(bf16x16_to_ps(r + i), _mm512_loadu_ps(x + i), a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) s += sqz_bf16_to_f32(r[i]) * x[i];
    return s;
}

void sqz_cvt_f16_avx512(const void *row, float *dst, int64_t n) {
    const uint16_t *r = row;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + i))));
    for (; i < n; i++) dst[i] = sqz_f16_to_f32(r[i]);
}

void sqz_cvt_bf16_avx512(const void *row, float *dst, int64_t n) {
    const uint16_t *r = row;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, bf16x16_to_ps(r + i));
    for (; i < n; i++) dst[i] = sqz_bf16_to_f32(r[i]);
}
