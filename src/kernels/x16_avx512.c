/* x16_avx512.c - products with packed Q4_0 / Q8_0 matrices (formats/x16.h), AVX-512 VNNI.
 *
 * One block of a 16-row group is 4 (Q4_0) or 8 (Q8_0) vectors whose 32-bit lane i holds 4
 * consecutive weights of row i: vpdpbusd with 4 activation bytes broadcast from memory adds 16
 * rows' partial dot products at once. vpdpbusd multiplies unsigned by signed bytes, so the
 * weights go in unsigned (Q4_0's nibbles 0..15, Q8_0's bytes xor 0x80) and the block's offset
 * term (8 or 128 times the sum of the activation quants, precomputed in block_q8_0s) comes off
 * the integer sum before it is scaled by the 16 row scales (one f16 load) times x's scale.
 *
 * Decode streams the weights from DRAM, so every block also prefetches PF bytes ahead: on the
 * machines measured the hardware prefetchers alone left a core at ~60 % of its read bandwidth.
 * Prefill unpacks each block once for up to 8 tokens.
 */
#include <immintrin.h>

#include "formats/blocks.h"
#include "formats/quant.h"
#include "kernels/x16.h"

/* Q4_0 / Q8_0 prefetch 3 KB ahead (measured at 1.1B: 26 -> 29 GB/s over 1.5 KB). The k-quants
 * too, but Q6_K 1.5 KB: on AMD Zen 4 (bench_qkernels --packed-only, 2 threads, 1.1B shapes, 3
 * alternating rounds, mean GB/s) 3 KB over 1.5 KB took Q2_K 26.7 -> 31.0, Q3_K 22.5 -> 25.0,
 * Q5_K 22.0 -> 24.6, Q4_K 28.0 -> 30.3, IQ4_XS 27.1 -> 27.1, and Q6_K 31.0 -> 22.7 (its
 * sub-blocks are 192 bytes apart in three streams). On the Xeon of sessions 12-14, 3 KB cost
 * sqz-llama-26m's in-cache Q4_K decode ~6 %. */
#ifndef X16_PF /* overridable to tune on another machine (-DX16_PF=...) */
#define X16_PF 3072
#endif
#ifndef X16_PFK
#define X16_PFK 3072
#endif
#ifndef X16_PFK6
#define X16_PFK6 1536
#endif
/* Into L2, not L1: on AMD Zen 4 (2 threads, 1.1B shapes, 4 alternating rounds of bench_model,
 * medians) T1 decoded Q4_K_M 40 -> 50 tokens/s, Q8_0 25 -> 30, Q6_K 32 -> 35 at the same
 * distances; a shorter 1 KB distance did as well, 2-8 KB no better (bench_qkernels --packed-only) */
#ifndef X16_PF_HINT
#define X16_PF_HINT _MM_HINT_T1
#endif
enum { PF = X16_PF, PFK = X16_PFK, PFK6 = X16_PFK6 };

static inline __m512i bcast(const int8_t *p) { return _mm512_set1_epi32(*(const int32_t *)(const void *)p); }

/* the 8 unsigned weight vectors of block x (Q8_0: bytes ^ 0x80; Q4_0: the low nibbles, and the
 * high nibbles left in place, i.e. 16 q: block_isum divides their sums by 16, one shift a block
 * instead of one a vector - decode of Q4_0 is bound by these instructions, not by memory) */
static inline __attribute__((always_inline)) void unpack_q4(const block_q4_0x16 *x, __m512i u[8]) {
    const __m512i lo = _mm512_set1_epi8(0x0F), hi = _mm512_set1_epi8((char)0xF0);
    #pragma GCC unroll 8
    for (int j = 0; j < 4; j++) {
        const __m512i v = _mm512_loadu_si512(x->qs + 64 * j);
        u[2 * j] = _mm512_and_si512(v, lo);
        u[2 * j + 1] = _mm512_and_si512(v, hi);
    }
}
/* prefill's: the high nibbles shifted down once, as the block serves up to 8 tokens */
static inline __attribute__((always_inline)) void unpack_q4_shifted(const block_q4_0x16 *x, __m512i u[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    #pragma GCC unroll 8
    for (int j = 0; j < 4; j++) {
        const __m512i v = _mm512_loadu_si512(x->qs + 64 * j);
        u[2 * j] = _mm512_and_si512(v, m4);
        u[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
}
static inline __attribute__((always_inline)) void unpack_q8(const block_q8_0x16 *x, __m512i u[8]) {
    const __m512i off = _mm512_set1_epi8((char)0x80);
    #pragma GCC unroll 8
    for (int j = 0; j < 8; j++) u[j] = _mm512_xor_si512(_mm512_loadu_si512(x->qs + 64 * j), off);
}

/* the 16 rows' integer sums for one block: sum_j u[j] . a's bytes 4j..4j+3, minus the offset.
 * The odd vectors go to s1: with hi16 (decode's Q4_0) they are the high nibbles times 16, so s1 is
 * a multiple of 16 (|s1| <= 16 * 15 * 128 * 16 per block, far inside int32) and s1 >> 4 exact. */
static inline __attribute__((always_inline)) __m512i block_isum(const __m512i u[8], const block_q8_0s *a, int q4,
                                                                int hi16) {
    __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[0], bcast(a->qs + 0));
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[1], bcast(a->qs + 4));
    s0 = _mm512_dpbusd_epi32(s0, u[2], bcast(a->qs + 8));
    s1 = _mm512_dpbusd_epi32(s1, u[3], bcast(a->qs + 12));
    s0 = _mm512_dpbusd_epi32(s0, u[4], bcast(a->qs + 16));
    s1 = _mm512_dpbusd_epi32(s1, u[5], bcast(a->qs + 20));
    s0 = _mm512_dpbusd_epi32(s0, u[6], bcast(a->qs + 24));
    s1 = _mm512_dpbusd_epi32(s1, u[7], bcast(a->qs + 28));
    if (hi16) s1 = _mm512_srai_epi32(s1, 4);
    return _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(q4 ? a->s8 : a->s128));
}

/* the 16 dot products of group w (nb blocks) with activations a */
static inline __attribute__((always_inline)) __m512 group_dot(const char *w, int64_t nb, const block_q8_0s *a, int q4) {
    const size_t bs = q4 ? sizeof(block_q4_0x16) : sizeof(block_q8_0x16);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        #pragma GCC unroll 8
        for (int k = 0; k < 2; k++) {
            const char *x = w + (size_t)(b + k) * bs;
            for (size_t l = 0; l < bs; l += 64) _mm_prefetch(x + PF + l, X16_PF_HINT);
            __m512i u[8];
            if (q4) unpack_q4((const block_q4_0x16 *)x, u);
            else unpack_q8((const block_q8_0x16 *)x, u);
            const __m512i s = block_isum(u, &a[b + k], q4, q4);
            const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x)),
                                           _mm512_set1_ps(a[b + k].d));
            if (k == 0) acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc0);
            else acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc1);
        }
    }
    for (; b < nb; b++) {
        const char *x = w + (size_t)b * bs;
        __m512i u[8];
        if (q4) unpack_q4((const block_q4_0x16 *)x, u);
        else unpack_q8((const block_q8_0x16 *)x, u);
        const __m512i s = block_isum(u, &a[b], q4, q4);
        const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x)),
                                       _mm512_set1_ps(a[b].d));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc0);
    }
    return _mm512_add_ps(acc0, acc1);
}

void sqz_x16_matvec_avx512(sqz_type t, const void *w, int64_t cols, const block_q8_0s *a,
                           float *y, int64_t r0, int64_t r1) {
    const int q4 = t == SQZ_TYPE_Q4_0X16;
    const int64_t nb = cols / 32;
    const size_t gs = (size_t)nb * (q4 ? sizeof(block_q4_0x16) : sizeof(block_q8_0x16));
    for (int64_t g = r0 / 16; g * 16 < r1; g++) {
        const char *wg = (const char *)w + (size_t)g * gs;
        const __m512 v = q4 ? group_dot(wg, nb, a, 1) : group_dot(wg, nb, a, 0);
        const int64_t lo = g * 16 < r0 ? r0 : g * 16, hi = g * 16 + 16 > r1 ? r1 : g * 16 + 16;
        /* lanes [lo - 16g, hi - 16g) of this group are rows in [r0, r1) */
        const __mmask16 m = (__mmask16)(((1u << (hi - g * 16)) - 1) & ~((1u << (lo - g * 16)) - 1));
        _mm512_mask_storeu_ps(y + g * 16, m, v);
    }
}

/* The prefill tiles' common ends: acc[t] += isum[t] x the rows' f16 scales d x token t's
 * Q8_K scale (super-block b), and the NT result vectors stored. */
static inline __attribute__((always_inline)) void tiles_scale_add(const uint16_t *d, const block_q8_K *a, int64_t nb,
                                                                  int64_t b, int nt, const __m512i *isum, __m512 *acc) {
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)d));
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++)
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]),
                                 _mm512_mul_ps(dw, _mm512_set1_ps(a[(size_t)t * (size_t)nb + (size_t)b].d)), acc[t]);
}

static inline __attribute__((always_inline)) void tiles_store(const __m512 *acc, int nt, float *y, size_t ldy) {
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (size_t)t * ldy, acc[t]);
}

/* NT tokens (a, a + nb, ...) through group w: y[t * ldy + 0..15] */
static inline __attribute__((always_inline)) void group_gemm(const char *w, int64_t nb, const block_q8_0s *a,
                                                             int q4, int nt, float *y, size_t ldy) {
    const size_t bs = q4 ? sizeof(block_q4_0x16) : sizeof(block_q8_0x16);
    __m512 acc[8];
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *x = w + (size_t)b * bs;
        __m512i u[8];
        if (q4) unpack_q4_shifted((const block_q4_0x16 *)x, u);
        else unpack_q8((const block_q8_0x16 *)x, u);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x));
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const block_q8_0s *at = &a[(size_t)t * (size_t)nb + (size_t)b];
            const __m512i s = block_isum(u, at, q4, 0);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(at->d)), acc[t]);
        }
    }
    tiles_store(acc, nt, y, ldy);
}

#define GEMM_CASES(Q4)                                                                      \
    switch (nt) {                                                                           \
    case 8: group_gemm(wg, nb, at, Q4, 8, yt, ldy); break;                                  \
    case 7: group_gemm(wg, nb, at, Q4, 7, yt, ldy); break;                                  \
    case 6: group_gemm(wg, nb, at, Q4, 6, yt, ldy); break;                                  \
    case 5: group_gemm(wg, nb, at, Q4, 5, yt, ldy); break;                                  \
    case 4: group_gemm(wg, nb, at, Q4, 4, yt, ldy); break;                                  \
    case 3: group_gemm(wg, nb, at, Q4, 3, yt, ldy); break;                                  \
    case 2: group_gemm(wg, nb, at, Q4, 2, yt, ldy); break;                                  \
    default: group_gemm(wg, nb, at, Q4, 1, yt, ldy); break;                                 \
    }

void sqz_x16_gemm_avx512(sqz_type t, const void *w, int64_t cols, int64_t g0, int64_t g1,
                         const block_q8_0s *a, int T, float *y, size_t ldy) {
    const int q4 = t == SQZ_TYPE_Q4_0X16;
    const int64_t nb = cols / 32;
    const size_t gs = (size_t)nb * (q4 ? sizeof(block_q4_0x16) : sizeof(block_q8_0x16));
    for (int64_t g = g0; g < g1; g++) {
        const char *wg = (const char *)w + (size_t)g * gs;
        for (int t0 = 0; t0 < T; t0 += 8) {
            const int nt = T - t0 < 8 ? T - t0 : 8;
            const block_q8_0s *at = a + (size_t)t0 * (size_t)nb;
            float *yt = y + (size_t)t0 * ldy + (size_t)g * 16;
            if (q4) GEMM_CASES(1)
            else GEMM_CASES(0)
        }
    }
}

/* ------------------------------------------------------------ Q4_K packed
 * Per super-block: for each sub-block j, 4 vectors of nibbles -> 8 vpdpbusd (16 rows' q . a),
 * times the 16 rows' scales (vpmulld), summed in int32; the mins' term is 4 vpdpwssd of the
 * (min, min) int16 pairs with the sub-block pairs' activation sums. */
/* bits at position `from` of each byte of h moved to bit 4 (the 5th bit of a Q5_K value) */
static inline __m512i bit_to_4(__m512i h, int from) {
    const __m512i b4 = _mm512_set1_epi8(0x10);
    if (from < 4) return _mm512_and_si512(_mm512_slli_epi16(h, (unsigned)(4 - from)), b4);
    if (from > 4) return _mm512_and_si512(_mm512_srli_epi16(h, (unsigned)(from - 4)), b4);
    return _mm512_and_si512(h, b4);
}

/* Q4_K (q5 = 0) and Q5_K (q5 = 1: block_q5_kx16, the 5th bits or'ed in) */
static inline __attribute__((always_inline)) __m512 k4_group(const char *xb, int64_t nb, const block_q8_K *a, int q5) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const size_t bs = q5 ? sizeof(block_q5_kx16) : sizeof(block_q4_kx16);
    const int lines = (int)(bs / 64 / 8) + 1; /* prefetches per sub-block */
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, xb += bs) {
        const block_q4_kx16 *x = (const void *)xb;
        const block_q8_K *ab = &a[b];
        __m512i isum = _mm512_setzero_si512();
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            #pragma GCC unroll 6
            for (int l = 0; l < lines; l++) _mm_prefetch(xb + PFK + 64 * (lines * j + l), X16_PF_HINT);
            const uint8_t *q = x->qs[j];
            const int8_t *aq = ab->qs + 32 * j;
            const __m512i h = q5 ? _mm512_loadu_si512(((const block_q5_kx16 *)(const void *)xb)->qh[j]) : _mm512_setzero_si512();
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            #pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                const __m512i qv = _mm512_loadu_si512(q + 64 * v);
                __m512i lo = _mm512_and_si512(qv, m4), hi = _mm512_and_si512(_mm512_srli_epi16(qv, 4), m4);
                if (q5) {
                    lo = _mm512_or_si512(lo, bit_to_4(h, 2 * v));
                    hi = _mm512_or_si512(hi, bit_to_4(h, 2 * v + 1));
                }
                s0 = _mm512_dpbusd_epi32(s0, lo, bcast(aq + 8 * v));
                s1 = _mm512_dpbusd_epi32(s1, hi, bcast(aq + 8 * v + 4));
            }
            const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)x->sc[j]));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
        }
        __m512i msum = _mm512_setzero_si512();
        #pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            const __m512i mm = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)x->m[p]));
            const int16_t *bsum = ab->bsums + 4 * p;
            const uint32_t pair = (uint16_t)(bsum[0] + bsum[1]) | (uint32_t)(uint16_t)(bsum[2] + bsum[3]) << 16;
            msum = _mm512_dpwssd_epi32(msum, mm, _mm512_set1_epi32((int32_t)pair));
        }
        const __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->d)), _mm512_set1_ps(ab->d));
        const __m512 dm = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->dmin)), _mm512_set1_ps(ab->d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, acc);
        acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), dm, acc);
    }
    return acc;
}

/* NT tokens through one group of Q4_K (q5 = 0) or Q5_K rows: as k4_group, each sub-block's
 * nibbles unpacked once for all NT tokens (prefill), y[t * ldy + 0..15]. a: NT rows of Q8_K
 * activations, nb blocks each. */
static inline __attribute__((always_inline)) void k4_group_gemm(const char *xb, int64_t nb, const block_q8_K *a, int q5,
                                                                int nt, float *y, size_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const size_t bs = q5 ? sizeof(block_q5_kx16) : sizeof(block_q4_kx16);
    __m512 acc[8];
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, xb += bs) {
        const block_q4_kx16 *x = (const void *)xb;
        __m512i isum[8];
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
            const uint8_t *q = x->qs[j];
            const __m512i h = q5 ? _mm512_loadu_si512(((const block_q5_kx16 *)(const void *)xb)->qh[j]) : _mm512_setzero_si512();
            __m512i lo[4], hi[4];
            #pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                const __m512i qv = _mm512_loadu_si512(q + 64 * v);
                lo[v] = _mm512_and_si512(qv, m4);
                hi[v] = _mm512_and_si512(_mm512_srli_epi16(qv, 4), m4);
                if (q5) {
                    lo[v] = _mm512_or_si512(lo[v], bit_to_4(h, 2 * v));
                    hi[v] = _mm512_or_si512(hi[v], bit_to_4(h, 2 * v + 1));
                }
            }
            const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)x->sc[j]));
            #pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int8_t *aq = a[(size_t)t * (size_t)nb + (size_t)b].qs + 32 * j;
                __m512i s0 = _mm512_setzero_si512();
                #pragma GCC unroll 4
                for (int v = 0; v < 4; v++) {
                    s0 = _mm512_dpbusd_epi32(s0, lo[v], bcast(aq + 8 * v));
                    s0 = _mm512_dpbusd_epi32(s0, hi[v], bcast(aq + 8 * v + 4));
                }
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s0, sc));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->d));
        const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->dmin));
        __m512i mm[4];
        #pragma GCC unroll 4
        for (int p = 0; p < 4; p++) mm[p] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)x->m[p]));
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const block_q8_K *ab = &a[(size_t)t * (size_t)nb + (size_t)b];
            __m512i msum = _mm512_setzero_si512();
            #pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                const int16_t *bsum = ab->bsums + 4 * p;
                const uint32_t pair = (uint16_t)(bsum[0] + bsum[1]) | (uint32_t)(uint16_t)(bsum[2] + bsum[3]) << 16;
                msum = _mm512_dpwssd_epi32(msum, mm[p], _mm512_set1_epi32((int32_t)pair));
            }
            const __m512 ad = _mm512_set1_ps(ab->d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, ad), acc[t]);
            acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dmw, ad), acc[t]);
        }
    }
    tiles_store(acc, nt, y, ldy);
}

#define K4_GEMM_CASES(Q5)                                                                   \
    switch (nt) {                                                                           \
    case 8: k4_group_gemm(wg, nb, at, Q5, 8, yt, ldy); break;                               \
    case 7: k4_group_gemm(wg, nb, at, Q5, 7, yt, ldy); break;                               \
    case 6: k4_group_gemm(wg, nb, at, Q5, 6, yt, ldy); break;                               \
    case 5: k4_group_gemm(wg, nb, at, Q5, 5, yt, ldy); break;                               \
    case 4: k4_group_gemm(wg, nb, at, Q5, 4, yt, ldy); break;                               \
    case 3: k4_group_gemm(wg, nb, at, Q5, 3, yt, ldy); break;                               \
    case 2: k4_group_gemm(wg, nb, at, Q5, 2, yt, ldy); break;                               \
    default: k4_group_gemm(wg, nb, at, Q5, 1, yt, ldy); break;                              \
    }

/* The other packed k-quants' prefill (below, beside their decode kernels) */
#define X16K_GEMM_DECL(NAME) \
    static void NAME(const void *w, int64_t nb, int64_t g0, int64_t g1, const block_q8_K *a, int T, float *y, size_t ldy);
X16K_GEMM_DECL(q6k_gemm)
X16K_GEMM_DECL(q3k_gemm)
X16K_GEMM_DECL(q2k_gemm)
X16K_GEMM_DECL(iq4xs_gemm)

int sqz_x16k_gemm_avx512(sqz_type t, const void *w, int64_t cols, int64_t g0, int64_t g1, const void *a, int T,
                         float *y, size_t ldy) {
    const int64_t nbk = cols / 256;
    switch (t) {
    case SQZ_TYPE_Q6_KX16: q6k_gemm(w, nbk, g0, g1, a, T, y, ldy); return 0;
    case SQZ_TYPE_Q3_KX16: q3k_gemm(w, nbk, g0, g1, a, T, y, ldy); return 0;
    case SQZ_TYPE_Q2_KX16: q2k_gemm(w, nbk, g0, g1, a, T, y, ldy); return 0;
    case SQZ_TYPE_IQ4_XSX16: iq4xs_gemm(w, nbk, g0, g1, a, T, y, ldy); return 0;
    default: break;
    }
    if (t != SQZ_TYPE_Q4_KX16 && t != SQZ_TYPE_Q5_KX16) return -1;
    const int q5 = t == SQZ_TYPE_Q5_KX16;
    const int64_t nb = cols / 256;
    const size_t gs = (size_t)nb * (q5 ? sizeof(block_q5_kx16) : sizeof(block_q4_kx16));
    for (int64_t g = g0; g < g1; g++) {
        const char *wg = (const char *)w + (size_t)g * gs;
        for (int t0 = 0; t0 < T; t0 += 8) {
            const int nt = T - t0 < 8 ? T - t0 : 8;
            const block_q8_K *at = (const block_q8_K *)a + (size_t)t0 * (size_t)nb;
            float *yt = y + (size_t)t0 * ldy + (size_t)g * 16;
            if (q5) K4_GEMM_CASES(1)
            else K4_GEMM_CASES(0)
        }
    }
    return 0;
}

/* Q6_K packed: per sub-block of 16, the 4 vectors of 6-bit values are the low nibbles (2
 * loads) or'ed with the top 2 bits (1 load, shifted into bits 4-5); 4 vpdpbusd start from
 * -32 x the sub-block's activation sum (the weights' offset), then times the 16 rows' int8
 * scales (vpmulld) into one int32 sum per super-block. */
/* a sub-block's 4 vectors of 6-bit values (0..63): the low nibbles or'ed with the top 2 bits */
static inline __attribute__((always_inline)) void q6k_unpack(const q6_kx16_sub *q, __m512i u[4]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i n0 = _mm512_loadu_si512(q->nib[0]), n1 = _mm512_loadu_si512(q->nib[1]);
    const __m512i h = _mm512_loadu_si512(q->hi);
    u[0] = _mm512_or_si512(_mm512_and_si512(n0, m4), _mm512_and_si512(_mm512_slli_epi16(h, 4), m30));
    u[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(n0, 4), m4), _mm512_and_si512(_mm512_slli_epi16(h, 2), m30));
    u[2] = _mm512_or_si512(_mm512_and_si512(n1, m4), _mm512_and_si512(h, m30));
    u[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(n1, 4), m4), _mm512_and_si512(_mm512_srli_epi16(h, 2), m30));
}

static inline __m512 q6k_group(const block_q6_kx16 *x, int64_t nb, const block_q8_K *a) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, x++) {
        const block_q8_K *ab = &a[b];
        __m512i isum = _mm512_setzero_si512();
        #pragma GCC unroll 16
        for (int s = 0; s < 16; s++) {
            const q6_kx16_sub *q = &x->q[s];
            #pragma GCC unroll 3
            for (int l = 0; l < 3; l++) _mm_prefetch((const char *)q + PFK6 + 64 * l, X16_PF_HINT);
            __m512i u[4];
            q6k_unpack(q, u);
            const int8_t *aq = ab->qs + 16 * s;
            __m512i s0 = _mm512_set1_epi32(-32 * ab->bsums[s]), s1 = _mm512_setzero_si512();
            s0 = _mm512_dpbusd_epi32(s0, u[0], bcast(aq));
            s1 = _mm512_dpbusd_epi32(s1, u[1], bcast(aq + 4));
            s0 = _mm512_dpbusd_epi32(s0, u[2], bcast(aq + 8));
            s1 = _mm512_dpbusd_epi32(s1, u[3], bcast(aq + 12));
            const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x->sc[s]));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
        }
        const __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->d)), _mm512_set1_ps(ab->d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, acc);
    }
    return acc;
}

/* NT tokens through one group of Q6_K rows: as q6k_group, each sub-block's 6-bit values put
 * together once for all NT tokens (prefill), y[t * ldy + 0..15]; a: NT rows of Q8_K
 * activations, nb blocks each. */
static inline __attribute__((always_inline)) void q6k_group_gemm(const block_q6_kx16 *x, int64_t nb, const block_q8_K *a,
                                                                 int nt, float *y, size_t ldy) {
    __m512 acc[8];
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, x++) {
        __m512i isum[8];
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
        for (int s = 0; s < 16; s++) {
            const q6_kx16_sub *q = &x->q[s];
            __m512i u[4];
            q6k_unpack(q, u);
            const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x->sc[s]));
            #pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const block_q8_K *ab = &a[(size_t)t * (size_t)nb + (size_t)b];
                const int8_t *aq = ab->qs + 16 * s;
                __m512i s0 = _mm512_set1_epi32(-32 * ab->bsums[s]);
                s0 = _mm512_dpbusd_epi32(s0, u[0], bcast(aq));
                s0 = _mm512_dpbusd_epi32(s0, u[1], bcast(aq + 4));
                s0 = _mm512_dpbusd_epi32(s0, u[2], bcast(aq + 8));
                s0 = _mm512_dpbusd_epi32(s0, u[3], bcast(aq + 12));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s0, sc));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->d));
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const block_q8_K *ab = &a[(size_t)t * (size_t)nb + (size_t)b];
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, _mm512_set1_ps(ab->d)), acc[t]);
        }
    }
    tiles_store(acc, nt, y, ldy);
}

/* The prefill driver of a packed type whose NT-token group kernel is GROUP_GEMM (BLOCK: its
 * packed super-block): groups [g0, g1), tokens 8 at a time (NT a constant in each call, so
 * the token loops unroll and the accumulators stay in registers). */
#define X16K_GEMM_DRIVER(NAME, BLOCK, GROUP_GEMM)                                                  \
    static void NAME(const void *w, int64_t nb, int64_t g0, int64_t g1, const block_q8_K *a, int T, \
                     float *y, size_t ldy) {                                                       \
        for (int64_t g = g0; g < g1; g++) {                                                        \
            const BLOCK *wg = (const BLOCK *)w + (size_t)g * (size_t)nb;                           \
            for (int t0 = 0; t0 < T; t0 += 8) {                                                    \
                const int nt = T - t0 < 8 ? T - t0 : 8;                                            \
                const block_q8_K *at = a + (size_t)t0 * (size_t)nb;                                \
                float *yt = y + (size_t)t0 * ldy + (size_t)g * 16;                                 \
                switch (nt) {                                                                      \
                case 8: GROUP_GEMM(wg, nb, at, 8, yt, ldy); break;                                 \
                case 7: GROUP_GEMM(wg, nb, at, 7, yt, ldy); break;                                 \
                case 6: GROUP_GEMM(wg, nb, at, 6, yt, ldy); break;                                 \
                case 5: GROUP_GEMM(wg, nb, at, 5, yt, ldy); break;                                 \
                case 4: GROUP_GEMM(wg, nb, at, 4, yt, ldy); break;                                 \
                case 3: GROUP_GEMM(wg, nb, at, 3, yt, ldy); break;                                 \
                case 2: GROUP_GEMM(wg, nb, at, 2, yt, ldy); break;                                 \
                default: GROUP_GEMM(wg, nb, at, 1, yt, ldy); break;                                \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
X16K_GEMM_DRIVER(q6k_gemm, block_q6_kx16, q6k_group_gemm)

/* Q2_K packed: per pair of sub-blocks p (2p, 2p+1), each one vector of 2-bit values -> 4
 * vpdpbusd; the two int32 sums (|sum| <= 16 * 3 * 127, so int16 holds them) go side by side
 * into int16 pairs for one vpdpwssd with the pair's 4-bit scales, and the mins' term is one
 * vpdpwssd of the pair's mins with the two activation sums. */
static inline __m512 q2k_group(const block_q2_kx16 *x, int64_t nb, const block_q8_K *a) {
    const __m512i m3 = _mm512_set1_epi8(3), lo16 = _mm512_set1_epi32(0xFFFF), m4w = _mm512_set1_epi16(0x0F);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, x++) {
        const block_q8_K *ab = &a[b];
        __m512i isum = _mm512_setzero_si512(), msum = _mm512_setzero_si512();
        #pragma GCC unroll 8
        for (int p = 0; p < 8; p++) {
            #pragma GCC unroll 3
            for (int l = 0; l < 3; l++) _mm_prefetch((const char *)x + PFK + 64 * (3 * p + l), X16_PF_HINT);
            const __m512i scp = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)x->sc[p]));
            __m512i t[2];
            #pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                const int sb = 2 * p + k;
                const __m512i v = _mm512_loadu_si512(x->qs[sb]);
                const int8_t *aq = ab->qs + 16 * sb;
                __m512i t0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v, m3), bcast(aq));
                __m512i t1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(_mm512_srli_epi16(v, 2), m3), bcast(aq + 4));
                t0 = _mm512_dpbusd_epi32(t0, _mm512_and_si512(_mm512_srli_epi16(v, 4), m3), bcast(aq + 8));
                t1 = _mm512_dpbusd_epi32(t1, _mm512_and_si512(_mm512_srli_epi16(v, 6), m3), bcast(aq + 12));
                t[k] = _mm512_add_epi32(t0, t1);
            }
            const __m512i s01 = _mm512_or_si512(_mm512_and_si512(t[0], lo16), _mm512_slli_epi32(t[1], 16));
            isum = _mm512_dpwssd_epi32(isum, s01, _mm512_and_si512(scp, m4w));
            const uint32_t pair = (uint16_t)ab->bsums[2 * p] | (uint32_t)(uint16_t)ab->bsums[2 * p + 1] << 16;
            msum = _mm512_dpwssd_epi32(msum, _mm512_srli_epi16(scp, 4), _mm512_set1_epi32((int32_t)pair));
        }
        const __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->d)), _mm512_set1_ps(ab->d));
        const __m512 dm = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->dmin)), _mm512_set1_ps(ab->d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, acc);
        acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), dm, acc);
    }
    return acc;
}

/* NT tokens through one group of Q2_K rows: as q2k_group, each pair of sub-blocks' 2-bit
 * values unpacked once for all NT tokens (prefill). */
static inline __attribute__((always_inline)) void q2k_group_gemm(const block_q2_kx16 *x, int64_t nb, const block_q8_K *a,
                                                                 int nt, float *y, size_t ldy) {
    const __m512i m3 = _mm512_set1_epi8(3), lo16 = _mm512_set1_epi32(0xFFFF), m4w = _mm512_set1_epi16(0x0F);
    __m512 acc[8];
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, x++) {
        __m512i isum[8], msum[8];
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = msum[t] = _mm512_setzero_si512();
        for (int p = 0; p < 8; p++) {
            const __m512i scp = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)x->sc[p]));
            const __m512i sc = _mm512_and_si512(scp, m4w), mn = _mm512_srli_epi16(scp, 4);
            __m512i u[2][4];
            #pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                const __m512i v = _mm512_loadu_si512(x->qs[2 * p + k]);
                u[k][0] = _mm512_and_si512(v, m3);
                u[k][1] = _mm512_and_si512(_mm512_srli_epi16(v, 2), m3);
                u[k][2] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m3);
                u[k][3] = _mm512_and_si512(_mm512_srli_epi16(v, 6), m3);
            }
            #pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const block_q8_K *ab = &a[(size_t)t * (size_t)nb + (size_t)b];
                __m512i tk[2];
                #pragma GCC unroll 2
                for (int k = 0; k < 2; k++) {
                    const int8_t *aq = ab->qs + 16 * (2 * p + k);
                    __m512i z = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[k][0], bcast(aq));
                    z = _mm512_dpbusd_epi32(z, u[k][1], bcast(aq + 4));
                    z = _mm512_dpbusd_epi32(z, u[k][2], bcast(aq + 8));
                    tk[k] = _mm512_dpbusd_epi32(z, u[k][3], bcast(aq + 12));
                }
                const __m512i s01 = _mm512_or_si512(_mm512_and_si512(tk[0], lo16), _mm512_slli_epi32(tk[1], 16));
                isum[t] = _mm512_dpwssd_epi32(isum[t], s01, sc);
                const uint32_t pair = (uint16_t)ab->bsums[2 * p] | (uint32_t)(uint16_t)ab->bsums[2 * p + 1] << 16;
                msum[t] = _mm512_dpwssd_epi32(msum[t], mn, _mm512_set1_epi32((int32_t)pair));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->d));
        const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->dmin));
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m512 ad = _mm512_set1_ps(a[(size_t)t * (size_t)nb + (size_t)b].d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, ad), acc[t]);
            acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[t]), _mm512_mul_ps(dmw, ad), acc[t]);
        }
    }
    tiles_store(acc, nt, y, ldy);
}
X16K_GEMM_DRIVER(q2k_gemm, block_q2_kx16, q2k_group_gemm)

/* Q3_K packed: per sub-block of 16, the 2-bit plane (1 load) and the 3rd bits (32 bytes of
 * nibbles, spread to one nibble a byte by vpmovzxbw + 3 ops) make 4 vectors of values 0..7;
 * 4 vpdpbusd start from -4 x the activation sum, then times the int8 scales (vpmulld). */
static inline __m512i bit_to_2(__m512i r, int j) {
    const __m512i b2 = _mm512_set1_epi8(0x04);
    if (j < 2) return _mm512_and_si512(_mm512_slli_epi16(r, (unsigned)(2 - j)), b2);
    if (j > 2) return _mm512_and_si512(_mm512_srli_epi16(r, (unsigned)(j - 2)), b2);
    return _mm512_and_si512(r, b2);
}

static inline __m512 q3k_group(const block_q3_kx16 *x, int64_t nb, const block_q8_K *a) {
    const __m512i m3 = _mm512_set1_epi8(3), lo4 = _mm512_set1_epi16(0x000F), hi4 = _mm512_set1_epi16(0x00F0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, x++) {
        const block_q8_K *ab = &a[b];
        __m512i isum = _mm512_setzero_si512();
        #pragma GCC unroll 16
        for (int s = 0; s < 16; s++) {
            _mm_prefetch((const char *)x + PFK + 128 * s, X16_PF_HINT);
            _mm_prefetch((const char *)x + PFK + 128 * s + 64, X16_PF_HINT);
            const __m512i v = _mm512_loadu_si512(x->qs[s]);
            const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)x->hb[s]));
            const __m512i r = _mm512_or_si512(_mm512_and_si512(w, lo4), _mm512_slli_epi16(_mm512_and_si512(w, hi4), 4));
            const int8_t *aq = ab->qs + 16 * s;
            __m512i t0 = _mm512_set1_epi32(-4 * ab->bsums[s]), t1 = _mm512_setzero_si512();
            t0 = _mm512_dpbusd_epi32(t0, _mm512_or_si512(_mm512_and_si512(v, m3), bit_to_2(r, 0)), bcast(aq));
            t1 = _mm512_dpbusd_epi32(t1, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 2), m3), bit_to_2(r, 1)), bcast(aq + 4));
            t0 = _mm512_dpbusd_epi32(t0, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m3), bit_to_2(r, 2)), bcast(aq + 8));
            t1 = _mm512_dpbusd_epi32(t1, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 6), m3), bit_to_2(r, 3)), bcast(aq + 12));
            const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x->sc[s]));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(t0, t1), sc));
        }
        const __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->d)), _mm512_set1_ps(ab->d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, acc);
    }
    return acc;
}

/* NT tokens through one group of Q3_K rows: as q3k_group, each sub-block's 3-bit values put
 * together once for all NT tokens (prefill). */
static inline __attribute__((always_inline)) void q3k_group_gemm(const block_q3_kx16 *x, int64_t nb, const block_q8_K *a,
                                                                 int nt, float *y, size_t ldy) {
    const __m512i m3 = _mm512_set1_epi8(3), lo4 = _mm512_set1_epi16(0x000F), hi4 = _mm512_set1_epi16(0x00F0);
    __m512 acc[8];
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, x++) {
        __m512i isum[8];
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
        for (int s = 0; s < 16; s++) {
            const __m512i v = _mm512_loadu_si512(x->qs[s]);
            const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)x->hb[s]));
            const __m512i r = _mm512_or_si512(_mm512_and_si512(w, lo4), _mm512_slli_epi16(_mm512_and_si512(w, hi4), 4));
            const __m512i u0 = _mm512_or_si512(_mm512_and_si512(v, m3), bit_to_2(r, 0));
            const __m512i u1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 2), m3), bit_to_2(r, 1));
            const __m512i u2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m3), bit_to_2(r, 2));
            const __m512i u3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 6), m3), bit_to_2(r, 3));
            const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x->sc[s]));
            #pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const block_q8_K *ab = &a[(size_t)t * (size_t)nb + (size_t)b];
                const int8_t *aq = ab->qs + 16 * s;
                __m512i z = _mm512_set1_epi32(-4 * ab->bsums[s]);
                z = _mm512_dpbusd_epi32(z, u0, bcast(aq));
                z = _mm512_dpbusd_epi32(z, u1, bcast(aq + 4));
                z = _mm512_dpbusd_epi32(z, u2, bcast(aq + 8));
                z = _mm512_dpbusd_epi32(z, u3, bcast(aq + 12));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(z, sc));
            }
        }
        tiles_scale_add(x->d, a, nb, b, nt, isum, acc);
    }
    tiles_store(acc, nt, y, ldy);
}
X16K_GEMM_DRIVER(q3k_gemm, block_q3_kx16, q3k_group_gemm)

/* IQ4_XS packed: the nibbles index the 16 levels + 128 (unsigned: 1..241) with vpshufb; the
 * dot products start from -128 x the sub-block's activation sum, then times the int8 scales. */
static inline __m512 iq4xs_group(const block_iq4_xsx16 *x, int64_t nb, const block_q8_K *a) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    int8_t lv[16];
    for (int k = 0; k < 16; k++) lv[k] = (int8_t)(sqz_iq4nl_values[k] + 128);
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lv));
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, x++) {
        const block_q8_K *ab = &a[b];
        __m512i isum = _mm512_setzero_si512();
        #pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            #pragma GCC unroll 5
            for (int l = 0; l < 5; l++) _mm_prefetch((const char *)x + PFK + 64 * (5 * k + l), X16_PF_HINT);
            const int8_t *aq = ab->qs + 32 * k;
            const int16_t *bsum = ab->bsums + 2 * k;
            __m512i s0 = _mm512_set1_epi32(-128 * (bsum[0] + bsum[1])), s1 = _mm512_setzero_si512();
            #pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                const __m512i qv = _mm512_loadu_si512(x->qs[k] + 64 * v);
                const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(qv, m4));
                const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(qv, 4), m4));
                s0 = _mm512_dpbusd_epi32(s0, lo, bcast(aq + 8 * v));
                s1 = _mm512_dpbusd_epi32(s1, hi, bcast(aq + 8 * v + 4));
            }
            const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x->sc[k]));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
        }
        const __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x->d)), _mm512_set1_ps(ab->d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, acc);
    }
    return acc;
}

/* NT tokens through one group of IQ4_XS rows: as iq4xs_group, each sub-block's levels looked
 * up once for all NT tokens (prefill). */
static inline __attribute__((always_inline)) void iq4xs_group_gemm(const block_iq4_xsx16 *x, int64_t nb, const block_q8_K *a,
                                                                   int nt, float *y, size_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    int8_t lv[16];
    for (int k = 0; k < 16; k++) lv[k] = (int8_t)(sqz_iq4nl_values[k] + 128);
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lv));
    __m512 acc[8];
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, x++) {
        __m512i isum[8];
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
        for (int k = 0; k < 8; k++) {
            __m512i lo[4], hi[4];
            #pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                const __m512i qv = _mm512_loadu_si512(x->qs[k] + 64 * v);
                lo[v] = _mm512_shuffle_epi8(table, _mm512_and_si512(qv, m4));
                hi[v] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(qv, 4), m4));
            }
            const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x->sc[k]));
            #pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const block_q8_K *ab = &a[(size_t)t * (size_t)nb + (size_t)b];
                const int8_t *aq = ab->qs + 32 * k;
                __m512i z = _mm512_set1_epi32(-128 * (ab->bsums[2 * k] + ab->bsums[2 * k + 1]));
                #pragma GCC unroll 4
                for (int v = 0; v < 4; v++) {
                    z = _mm512_dpbusd_epi32(z, lo[v], bcast(aq + 8 * v));
                    z = _mm512_dpbusd_epi32(z, hi[v], bcast(aq + 8 * v + 4));
                }
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(z, sc));
            }
        }
        tiles_scale_add(x->d, a, nb, b, nt, isum, acc);
    }
    tiles_store(acc, nt, y, ldy);
}
X16K_GEMM_DRIVER(iq4xs_gemm, block_iq4_xsx16, iq4xs_group_gemm)

void sqz_x16k_matvec_avx512(sqz_type t, const void *w, int64_t cols, const void *a, float *y, int64_t r0,
                            int64_t r1) {
    const int64_t nb = cols / 256;
    for (int64_t g = r0 / 16; g * 16 < r1; g++) {
        const __m512 v = t == SQZ_TYPE_IQ4_XSX16 ? iq4xs_group((const block_iq4_xsx16 *)w + g * nb, nb, a)
                         : t == SQZ_TYPE_Q2_KX16 ? q2k_group((const block_q2_kx16 *)w + g * nb, nb, a)
                         : t == SQZ_TYPE_Q3_KX16 ? q3k_group((const block_q3_kx16 *)w + g * nb, nb, a)
                         : t == SQZ_TYPE_Q6_KX16 ? q6k_group((const block_q6_kx16 *)w + g * nb, nb, a)
                         : t == SQZ_TYPE_Q5_KX16 ? k4_group((const char *)((const block_q5_kx16 *)w + g * nb), nb, a, 1)
                                                 : k4_group((const char *)((const block_q4_kx16 *)w + g * nb), nb, a, 0);
        const int64_t lo = g * 16 < r0 ? r0 : g * 16, hi = g * 16 + 16 > r1 ? r1 : g * 16 + 16;
        const __mmask16 m = (__mmask16)(((1u << (hi - g * 16)) - 1) & ~((1u << (lo - g * 16)) - 1));
        _mm512_mask_storeu_ps(y + g * 16, m, v);
    }
}
