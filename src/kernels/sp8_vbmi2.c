/* sp8_vbmi2.c - the AVX512-VBMI2 sp8 matrix-vector product (kernels/sp8.h; compiled with the
 * AVX-512 flags plus -mavx512vbmi2, handed out only when the CPU has VBMI2: sqz_sp8_matvec_get).
 *
 * Per block of 32: the u32 mask and f16 d; vpexpandb (_mm256_maskz_expandloadu_epi8) loads the
 * popcount(mask) packed q bytes into the lanes the mask names, zeros elsewhere (it reads only
 * those bytes: no over-read past the row); the integer dot with the Q8_0 activation block is
 * VNNI's vpdpbusd on |w| (u8) and the activations signed like w (s8), 8 lanes of i32, then one
 * FMA by d_w * d_x into an f32 accumulator. Two blocks per iteration, two accumulators. */
#include <immintrin.h>
#include <string.h>

#include "formats/blocks.h"
#include "kernels/sp8.h"

static inline __m256i block_dot(const uint8_t **pp, const int8_t *aq, float *dw) {
    const uint8_t *p = *pp;
    uint32_t mask;
    uint16_t dh;
    memcpy(&mask, p, 4);
    memcpy(&dh, p + 4, 2);
    *dw = _cvtsh_ss(dh);
    const __m256i w = _mm256_maskz_expandloadu_epi8(mask, p + SQZ_SP8_HEAD);
    *pp = p + SQZ_SP8_HEAD + __builtin_popcount(mask);
    const __m256i x = _mm256_loadu_si256((const __m256i *)aq);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
}

void sqz_sp8_matvec_vbmi2(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1) {
    const block_q8_0 *a = xq;
    const int64_t nb = cols / SQZ_SP8_BLOCK;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *p = m->data + m->row_off[r];
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int64_t b = 0;
        for (; b + 1 < nb; b += 2) {
            float d0, d1;
            const __m256i s0 = block_dot(&p, a[b].qs, &d0);
            const __m256i s1 = block_dot(&p, a[b + 1].qs, &d1);
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(d0 * _cvtsh_ss(a[b].d)), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(d1 * _cvtsh_ss(a[b + 1].d)), acc1);
        }
        if (b < nb) {
            float d0;
            const __m256i s0 = block_dot(&p, a[b].qs, &d0);
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(d0 * _cvtsh_ss(a[b].d)), acc0);
        }
        const __m256 acc = _mm256_add_ps(acc0, acc1);
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        y[r] = _mm_cvtss_f32(s);
    }
}
