/* kivi_avx512.c - AVX-512 KIVI attention kernels (kivi.h); compiled with -mavx512f ... and only
 * called when the CPU has them. As kivi_avx2.c with 16 channels per register: codes unpacked in
 * registers, 4 queries per pass; values accumulate a 64-channel block of 4 queries (16
 * registers) over all rows before storing. Shapes with hd or vg not a multiple of 16 go to the
 * AVX2 tier. */
#include <immintrin.h>
#include <string.h>

#include "kernels/kivi.h"

/* Channels c..c+15 (c a multiple of 16) of a packed row as floats. */
static inline __attribute__((always_inline)) __m512 unpack16(int bits, const uint8_t *row, int c) {
    if (bits == 8)
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + c))));
    if (bits == 4) {
        uint64_t w;
        memcpy(&w, row + c / 2, 8);
        /* lanes 0-7 read the low word, 8-15 the high one, each shifted by 4 * (lane % 8) */
        const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        const __m512i sh = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
        const __m512i v = _mm512_permutexvar_epi32(idx, _mm512_castsi128_si512(_mm_cvtsi64_si128((long long)w)));
        return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(v, sh), _mm512_set1_epi32(15)));
    }
    uint32_t w;
    memcpy(&w, row + c / 4, 4);
    const __m512i sh = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)w), sh),
                                               _mm512_set1_epi32(3)));
}

/* (a0..a3 each summed) as 4 floats */
static inline __m128 hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    const __m256 b0 = _mm256_add_ps(_mm512_castps512_ps256(a0), _mm512_extractf32x8_ps(a0, 1));
    const __m256 b1 = _mm256_add_ps(_mm512_castps512_ps256(a1), _mm512_extractf32x8_ps(a1, 1));
    const __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(a2), _mm512_extractf32x8_ps(a2, 1));
    const __m256 b3 = _mm256_add_ps(_mm512_castps512_ps256(a3), _mm512_extractf32x8_ps(a3, 1));
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* qs[r][i] = q_r[i] * scale_i and qm[r] = q_r . min for the M queries q_r = q + r * hd: the key
 * group's parameters folded into the queries once per group. */
static inline __attribute__((always_inline)) void fold(int hd, int M, const float *q, const uint16_t *ks,
                                                       const uint16_t *km, float *qs, float *qm) {
    __m512 am[4];
    for (int r = 0; r < M; r++) am[r] = _mm512_setzero_ps();
    for (int i = 0; i < hd; i += 16) {
        const __m512 sf = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ks + i))), mf = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(km + i)));
        for (int r = 0; r < M; r++) {
            const __m512 qv = _mm512_loadu_ps(q + (size_t)r * hd + i);
            _mm512_storeu_ps(qs + (size_t)r * hd + i, _mm512_mul_ps(qv, sf));
            am[r] = _mm512_fmadd_ps(qv, mf, am[r]);
        }
    }
    for (int r = 0; r < M; r++) qm[r] = _mm512_reduce_add_ps(am[r]);
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
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int c = 0; c < hd; c += 16) {
                    const __m512 x = unpack16(bits, row, c);
                    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q0 + c), x, a0);
                    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q1 + c), x, a1);
                    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q2 + c), x, a2);
                    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q3 + c), x, a3);
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
                    __m512 a = _mm512_setzero_ps();
                    for (int c = 0; c < hd; c += 16)
                        a = _mm512_fmadd_ps(_mm512_loadu_ps(qr + c), unpack16(bits, row, c), a);
                    s[(size_t)r * sld + j] = (qm[r - r0] + _mm512_reduce_add_ps(a)) * scale;
                }
            }
        }
    }
}

/* Channels c0..c0+16*NC of M queries (M <= 4, NC <= 4: 16 accumulators) held in registers over
 * all P rows. The block spans at most 4 value groups (vg >= 16): their f16 (scale, min) are
 * loaded and converted together, and spread over each chunk's lanes by a permute. */
static inline __attribute__((always_inline)) void
vaccum_block(const int bits, const int M, const int NC, int hd, int vg, const float *w,
             size_t wld, const uint8_t *codes, size_t ld, const uint16_t *vs, const uint16_t *vm,
             size_t pld, int P, float *y, int c0) {
    __m512 acc[4][4];
    __m512i gidx[4];
    const int b0 = c0 / vg, ngb = (c0 + 16 * NC - 1) / vg - b0 + 1;
    const __mmask8 gm = (__mmask8)((1u << ngb) - 1);
    #pragma GCC unroll 4
    for (int k = 0; k < NC; k++) {
        int idx[16];
        for (int l = 0; l < 16; l++) idx[l] = (c0 + 16 * k + l) / vg - b0;
        gidx[k] = _mm512_loadu_si512(idx);
    }
    #pragma GCC unroll 4
    for (int r = 0; r < M; r++)
        #pragma GCC unroll 4
        for (int k = 0; k < NC; k++) acc[r][k] = _mm512_loadu_ps(y + (size_t)r * hd + c0 + 16 * k);
    for (int p = 0; p < P; p++) {
        const uint8_t *row = codes + (size_t)p * ld;
        const __m512 sc8 = _mm512_castps256_ps512(
            _mm256_cvtph_ps(_mm_maskz_loadu_epi16(gm, vs + (size_t)p * pld + b0)));
        const __m512 mn8 = _mm512_castps256_ps512(
            _mm256_cvtph_ps(_mm_maskz_loadu_epi16(gm, vm + (size_t)p * pld + b0)));
        __m512 x[4];
        #pragma GCC unroll 4
        for (int k = 0; k < NC; k++)
            x[k] = _mm512_fmadd_ps(unpack16(bits, row, c0 + 16 * k),
                                   _mm512_permutexvar_ps(gidx[k], sc8),
                                   _mm512_permutexvar_ps(gidx[k], mn8));
        #pragma GCC unroll 4
        for (int r = 0; r < M; r++) {
            const __m512 wr = _mm512_set1_ps(w[(size_t)r * wld + p]);
            #pragma GCC unroll 4
            for (int k = 0; k < NC; k++) acc[r][k] = _mm512_fmadd_ps(wr, x[k], acc[r][k]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < M; r++)
        #pragma GCC unroll 4
        for (int k = 0; k < NC; k++) _mm512_storeu_ps(y + (size_t)r * hd + c0 + 16 * k, acc[r][k]);
}

static inline __attribute__((always_inline)) void
vaccum_t(const int bits, int hd, int vg, int nq, const float *w, size_t wld, const uint8_t *codes,
         size_t ld, const uint16_t *vs, const uint16_t *vm, size_t pld, int P, float *y) {
    int r0 = 0;
    for (; r0 + 4 <= nq; r0 += 4) {
        const float *wr = w + (size_t)r0 * wld;
        float *yr = y + (size_t)r0 * hd;
        int c = 0;
        for (; c + 64 <= hd; c += 64) vaccum_block(bits, 4, 4, hd, vg, wr, wld, codes, ld, vs, vm, pld, P, yr, c);
        for (; c < hd; c += 16) vaccum_block(bits, 4, 1, hd, vg, wr, wld, codes, ld, vs, vm, pld, P, yr, c);
    }
    for (; r0 < nq; r0++) {
        const float *wr = w + (size_t)r0 * wld;
        float *yr = y + (size_t)r0 * hd;
        int c = 0;
        for (; c + 64 <= hd; c += 64) vaccum_block(bits, 1, 4, hd, vg, wr, wld, codes, ld, vs, vm, pld, P, yr, c);
        for (; c < hd; c += 16) vaccum_block(bits, 1, 1, hd, vg, wr, wld, codes, ld, vs, vm, pld, P, yr, c);
    }
}

static void kscores_avx512(int bits, int hd, int nq, const float *q, const uint16_t *ks,
                         const uint16_t *km, const uint8_t *codes, size_t ld, int J, float scale,
                         float *s, size_t sld) {
    if (hd % 16 || hd > SQZ_KIVI_MAX_HD) {
        sqz_kivi_kernels_avx2().kscores(bits, hd, nq, q, ks, km, codes, ld, J, scale, s, sld);
        return;
    }
    if (bits == 8) kscores_t(8, hd, nq, q, ks, km, codes, ld, J, scale, s, sld);
    else if (bits == 4) kscores_t(4, hd, nq, q, ks, km, codes, ld, J, scale, s, sld);
    else kscores_t(2, hd, nq, q, ks, km, codes, ld, J, scale, s, sld);
}

static void vaccum_avx512(int bits, int hd, int vg, int nq, const float *w, size_t wld,
                          const uint8_t *codes, size_t ld, const uint16_t *vs, const uint16_t *vm,
                          size_t pld, int P, float *y) {
    if (hd % 16 || vg % 16) {
        sqz_kivi_kernels_avx2().vaccum(bits, hd, vg, nq, w, wld, codes, ld, vs, vm, pld, P, y);
        return;
    }
    if (bits == 8) vaccum_t(8, hd, vg, nq, w, wld, codes, ld, vs, vm, pld, P, y);
    else if (bits == 4) vaccum_t(4, hd, vg, nq, w, wld, codes, ld, vs, vm, pld, P, y);
    else vaccum_t(2, hd, vg, nq, w, wld, codes, ld, vs, vm, pld, P, y);
}

sqz_kivi_kernels sqz_kivi_kernels_avx512(void) {
    return (sqz_kivi_kernels){ kscores_avx512, vaccum_avx512 };
}
