/* sp8_vbmi2.c - the AVX512-VBMI2 sp8 matrix-vector product (kernels/sp8.h; compiled with the
 * AVX-512 flags plus -mavx512vbmi2, handed out only when the CPU has VBMI2: sqz_sp8_matvec_get).
 *
 * Per block of 32: the u32 mask and f16 d; vpexpandb spreads the popcount(mask) packed q bytes
 * into the lanes the mask names, zeros elsewhere; the integer dot with the Q8_0 activation
 * block is VNNI's vpdpbusd on |w| (u8) and the activations signed like w (s8), 8 lanes of i32,
 * then one FMA by d_w * d_x into the row's f32 accumulator.
 * Why four rows at a time: where a block's bytes end depends on its mask (load, popcount, add),
 * a chain of dependent loads through the whole row; four rows are four independent chains the
 * core overlaps, and each activation block is loaded once for the four.
 * Why vpexpandb from a register: its memory form is far slower on Intel cores, so the 32 bytes
 * are loaded plainly (an over-read within the row's own stream) and expanded in a register;
 * within 32 bytes of the row's end (whose next bytes may lie past the data) the memory form,
 * which reads only the kept bytes, is used instead. */
#include <immintrin.h>
#include <string.h>

#include "formats/blocks.h"
#include "kernels/sp8.h"

/* One block of one row: its i32 dot lanes with aq, its d; *pp moves past the block. */
static inline __m256i block_dot(const uint8_t **pp, const uint8_t *end, __m256i x, float *dw) {
    const uint8_t *p = *pp;
    uint32_t mask;
    uint16_t dh;
    memcpy(&mask, p, 4);
    memcpy(&dh, p + 4, 2);
    *dw = _cvtsh_ss(dh);
    const uint8_t *q = p + SQZ_SP8_HEAD;
    const __m256i w = end - q >= 32 ? _mm256_maskz_expand_epi8(mask, _mm256_loadu_si256((const __m256i *)q))
                                    : _mm256_maskz_expandloadu_epi8(mask, q);
    *pp = q + __builtin_popcount(mask);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
}

static inline float hsum(__m256 acc) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

void sqz_sp8_unpack_row_vbmi2(const uint8_t *src, int64_t n, float *dst) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < n; b += SQZ_SP8_BLOCK) {
        uint32_t mask;
        uint16_t dh;
        memcpy(&mask, p, 4);
        memcpy(&dh, p + 4, 2);
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
        /* the memory form: reads only the kept bytes (the row's end is not known here) */
        const __m256i w = _mm256_maskz_expandloadu_epi8(mask, p + SQZ_SP8_HEAD);
        p += SQZ_SP8_HEAD + __builtin_popcount(mask);
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(w)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(w, 1)));
        _mm512_storeu_ps(dst + b, _mm512_mul_ps(lo, d));
        _mm512_storeu_ps(dst + b + 16, _mm512_mul_ps(hi, d));
    }
}

void sqz_sp8_matvec_vbmi2(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1) {
    const block_q8_0 *a = xq;
    const int64_t nb = cols / SQZ_SP8_BLOCK;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint8_t *p[4], *end[4];
        __m256 acc[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            p[i] = m->data + m->row_off[r + i];
            end[i] = m->data + m->row_off[r + i + 1];
            acc[i] = _mm256_setzero_ps();
        }
        for (int64_t b = 0; b < nb; b++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)a[b].qs);
            const float dx = _cvtsh_ss(a[b].d);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                float dw;
                const __m256i s = block_dot(&p[i], end[i], x, &dw);
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * dx), acc[i]);
            }
        }
        for (int i = 0; i < 4; i++) y[r + i] = hsum(acc[i]);
    }
    for (; r < r1; r++) {
        const uint8_t *p = m->data + m->row_off[r], *end = m->data + m->row_off[r + 1];
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            float dw;
            const __m256i s = block_dot(&p, end, _mm256_loadu_si256((const __m256i *)a[b].qs), &dw);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * _cvtsh_ss(a[b].d)), acc);
        }
        y[r] = hsum(acc);
    }
}
