/* kivi_avx2.c - AVX2 + FMA + F16C KIVI attention kernels (kivi.h); compiled with -mavx2 -mfma
 * -mf16c and only called when the CPU has them. Codes are unpacked 8 channels at a time in
 * registers (a broadcast word shifted per lane) and used for up to 4 queries before the next 8
 * are unpacked. Shapes with hd or vg not a multiple of 8 go to the reference. */
#include <immintrin.h>
#include <string.h>

#include "kernels/kivi.h"

/* Channels c..c+7 (c a multiple of 8) of a packed row as floats; bits constant after inlining. */
static inline __attribute__((always_inline)) __m256 unpack8(int bits, const uint8_t *row, int c) {
    if (bits == 8)
        return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + c))));
    if (bits == 4) {
        uint32_t w;
        memcpy(&w, row + c / 2, 4);
        const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w), sh),
                                                   _mm256_set1_epi32(15)));
    }
    uint16_t w;
    memcpy(&w, row + c / 4, 2);
    const __m256i sh = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w), sh),
                                               _mm256_set1_epi32(3)));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* (a0..a3 each summed) as 4 floats */
static inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* qs[r][i] = q_r[i] * scale_i and qm[r] = q_r . min for the M queries q_r = q + r * hd: the key
 * group's parameters folded into the queries once per group. */
static inline __attribute__((always_inline)) void fold(int hd, int M, const float *q, const uint16_t *ks,
                                                       const uint16_t *km, float *qs, float *qm) {
    __m256 am[4];
    for (int r = 0; r < M; r++) am[r] = _mm256_setzero_ps();
    for (int i = 0; i < hd; i += 8) {
        const __m256 sf = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ks + i))), mf = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(km + i)));
        for (int r = 0; r < M; r++) {
            const __m256 qv = _mm256_loadu_ps(q + (size_t)r * hd + i);
            _mm256_storeu_ps(qs + (size_t)r * hd + i, _mm256_mul_ps(qv, sf));
            am[r] = _mm256_fmadd_ps(qv, mf, am[r]);
        }
    }
    for (int r = 0; r < M; r++) qm[r] = hsum8(am[r]);
}

static inline __attribute__((always_inline)) void
kscores_t(const int bits, int hd, int nq, const float *q, const uint16_t *ks, const uint16_t *km,
          const uint8_t *codes, size_t ld, int J, float scale, float *s, size_t sld) {
    float qs[4 * SQZ_KIVI_MAX_HD], qm[4];
    for (int r0 = 0; r0 < nq; r0 += 4) {
        const float *q0 = qs;
        fold(hd, nq - r0 < 4 ? nq - r0 : 4, q + (size_t)r0 * hd, ks, km, qs, qm);
        if (nq - r0 >= 4) {
            const float *q1 = q0 + hd, *q2 = q1 + hd, *q3 = q2 + hd;
            const __m128 m = _mm_loadu_ps(qm), sc = _mm_set1_ps(scale);
            for (int j = 0; j < J; j++) {
                const uint8_t *row = codes + (size_t)j * ld;
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int c = 0; c < hd; c += 8) {
                    const __m256 x = unpack8(bits, row, c);
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + c), x, a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + c), x, a1);
                    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q2 + c), x, a2);
                    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q3 + c), x, a3);
                }
                float o[4];
                _mm_storeu_ps(o, _mm_mul_ps(_mm_add_ps(hsum4(a0, a1, a2, a3), m), sc));
                for (int r = 0; r < 4; r++) s[(size_t)(r0 + r) * sld + j] = o[r];
            }
        } else {
            for (int r = r0; r < nq; r++) {
                const float *qr = qs + (size_t)(r - r0) * hd;
                for (int j = 0; j < J; j++) {
                    const uint8_t *row = codes + (size_t)j * ld;
                    __m256 a = _mm256_setzero_ps();
                    for (int c = 0; c < hd; c += 8)
                        a = _mm256_fmadd_ps(_mm256_loadu_ps(qr + c), unpack8(bits, row, c), a);
                    s[(size_t)r * sld + j] = (qm[r - r0] + hsum8(a)) * scale;
                }
            }
        }
    }
}

/* Channels c0..c0+8*NC of M queries (M <= 4, NC <= 2: 8 accumulators) held in registers over
 * all P rows; each row's chunk is dequantized once (code * scale + min) for the M queries. */
static inline __attribute__((always_inline)) void
vaccum_block(const int bits, const int M, const int NC, int hd, int vg, const float *w,
             size_t wld, const uint8_t *codes, size_t ld, const uint16_t *vs, const uint16_t *vm,
             size_t pld, int P, float *y, int c0) {
    __m256 acc[4][2];
    #pragma GCC unroll 4
    for (int r = 0; r < M; r++)
        #pragma GCC unroll 4
        for (int k = 0; k < NC; k++) acc[r][k] = _mm256_loadu_ps(y + (size_t)r * hd + c0 + 8 * k);
    for (int p = 0; p < P; p++) {
        const uint8_t *row = codes + (size_t)p * ld;
        __m256 x[2];
        #pragma GCC unroll 4
        for (int k = 0; k < NC; k++) {
            const int c = c0 + 8 * k, b = c / vg;
            const __m256 sc = _mm256_set1_ps(_cvtsh_ss(vs[(size_t)p * pld + b]));
            const __m256 mn = _mm256_set1_ps(_cvtsh_ss(vm[(size_t)p * pld + b]));
            x[k] = _mm256_fmadd_ps(unpack8(bits, row, c), sc, mn);
        }
        #pragma GCC unroll 4
        for (int r = 0; r < M; r++) {
            const __m256 wr = _mm256_broadcast_ss(w + (size_t)r * wld + p);
            #pragma GCC unroll 4
            for (int k = 0; k < NC; k++) acc[r][k] = _mm256_fmadd_ps(wr, x[k], acc[r][k]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < M; r++)
        #pragma GCC unroll 4
        for (int k = 0; k < NC; k++) _mm256_storeu_ps(y + (size_t)r * hd + c0 + 8 * k, acc[r][k]);
}

static inline __attribute__((always_inline)) void
vaccum_t(const int bits, int hd, int vg, int nq, const float *w, size_t wld, const uint8_t *codes,
         size_t ld, const uint16_t *vs, const uint16_t *vm, size_t pld, int P, float *y) {
    int r0 = 0;
    for (; r0 + 4 <= nq; r0 += 4) {
        const float *wr = w + (size_t)r0 * wld;
        float *yr = y + (size_t)r0 * hd;
        int c = 0;
        for (; c + 16 <= hd; c += 16) vaccum_block(bits, 4, 2, hd, vg, wr, wld, codes, ld, vs, vm, pld, P, yr, c);
        if (c < hd) vaccum_block(bits, 4, 1, hd, vg, wr, wld, codes, ld, vs, vm, pld, P, yr, c);
    }
    for (; r0 < nq; r0++) {
        const float *wr = w + (size_t)r0 * wld;
        float *yr = y + (size_t)r0 * hd;
        int c = 0;
        for (; c + 16 <= hd; c += 16) vaccum_block(bits, 1, 2, hd, vg, wr, wld, codes, ld, vs, vm, pld, P, yr, c);
        if (c < hd) vaccum_block(bits, 1, 1, hd, vg, wr, wld, codes, ld, vs, vm, pld, P, yr, c);
    }
}

static void kscores_avx2(int bits, int hd, int nq, const float *q, const uint16_t *ks,
                         const uint16_t *km, const uint8_t *codes, size_t ld, int J, float scale,
                         float *s, size_t sld) {
    if (hd % 8 || hd > SQZ_KIVI_MAX_HD) {
        sqz_kivi_kernels_ref().kscores(bits, hd, nq, q, ks, km, codes, ld, J, scale, s, sld);
        return;
    }
    if (bits == 8) kscores_t(8, hd, nq, q, ks, km, codes, ld, J, scale, s, sld);
    else if (bits == 4) kscores_t(4, hd, nq, q, ks, km, codes, ld, J, scale, s, sld);
    else kscores_t(2, hd, nq, q, ks, km, codes, ld, J, scale, s, sld);
}

static void vaccum_avx2(int bits, int hd, int vg, int nq, const float *w, size_t wld,
                        const uint8_t *codes, size_t ld, const uint16_t *vs, const uint16_t *vm,
                        size_t pld, int P, float *y) {
    if (hd % 8 || vg % 8) {
        sqz_kivi_kernels_ref().vaccum(bits, hd, vg, nq, w, wld, codes, ld, vs, vm, pld, P, y);
        return;
    }
    if (bits == 8) vaccum_t(8, hd, vg, nq, w, wld, codes, ld, vs, vm, pld, P, y);
    else if (bits == 4) vaccum_t(4, hd, vg, nq, w, wld, codes, ld, vs, vm, pld, P, y);
    else vaccum_t(2, hd, vg, nq, w, wld, codes, ld, vs, vm, pld, P, y);
}

sqz_kivi_kernels sqz_kivi_kernels_avx2(void) {
    return (sqz_kivi_kernels){ kscores_avx2, vaccum_avx2 };
}
