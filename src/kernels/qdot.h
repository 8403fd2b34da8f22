/* qdot.h - internal to src/kernels: what the quantized dot products of every tier share
 * (qdot_ref.c, qdot_avx2.c, qdot_avx512.c).
 *
 * Glossary: n elements of a row; nb blocks in it; QK elements per block (32, or QK_K = 256 for
 * the k-quants, IQ4_XS and Q8_K); w the weight blocks (the row), a the activation blocks (x
 * quantized once per matvec: Q8_0, Q8_1 or Q8_K); d scales, dmin / m minimums; sc sub-block
 * scales; q quants; isum an exact integer sum of q_w * q_a.
 */
#ifndef SQZ_KERNELS_QDOT_H
#define SQZ_KERNELS_QDOT_H

#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"
#include "formats/blocks.h"

/* IQ4_NL / IQ4_XS: the 16 non-linear levels (ggml's kvalues_iq4nl). */
static const int8_t sqz_iq4nl_levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10,
                                             1,    13,   25,  38,  53,  69,  89,  113 };

/* Q4_K / Q5_K: the 8 six-bit scales and 8 six-bit mins packed in 12 bytes, unpacked:
 * sub-blocks 0..3 keep their low 6 bits in bytes 0..3 (scales) and 4..7 (mins); sub-blocks
 * 4..7 have their low nibbles in bytes 8..11 (scale low half, min high half) and their top two
 * bits in the spare top bits of bytes 0..3 (scales) and 4..7 (mins). */
static inline void sqz_k4_scales(const uint8_t p[12], uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = p[j] & 63;
        m[j] = p[j + 4] & 63;
        sc[j + 4] = (uint8_t)((p[j + 8] & 0x0f) | ((p[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((p[j + 8] >> 4) | ((p[j + 4] >> 6) << 4));
    }
}

/* The same for the SIMD tiers, computed in registers (a round trip through memory as four
 * 32-bit stores and one 16-byte load stalls store forwarding): the 8 scale bytes in .lo, the 8
 * min bytes in .hi. */
typedef struct sqz_u64x2 {
    uint64_t lo, hi;
} sqz_u64x2;

static inline sqz_u64x2 sqz_k4_scales_u64(const uint8_t p[12]) {
    uint32_t u0, u1, u2;
    memcpy(&u0, p, 4);
    memcpy(&u1, p + 4, 4);
    memcpy(&u2, p + 8, 4);
    const uint32_t s0 = u0 & 0x3f3f3f3fu, s1 = (u2 & 0x0f0f0f0fu) | ((u0 >> 6) & 0x03030303u) << 4;
    const uint32_t m0 = u1 & 0x3f3f3f3fu, m1 = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 6) & 0x03030303u) << 4;
    return (sqz_u64x2){ s0 | (uint64_t)s1 << 32, m0 | (uint64_t)m1 << 32 };
}

/* Q3_K: the 16 six-bit scales (biased by 32) in 12 bytes: low nibbles of sub-blocks 0..7 in
 * the low halves of bytes 0..7, of 8..15 in their high halves; the top two bits of sub-block
 * k in byte 8 + k%4 at bit 2*(k/4). */
static inline void sqz_q3k_scales(const uint8_t p[12], int8_t sc[16]) {
    for (int k = 0; k < 16; k++) {
        const int lo = k < 8 ? p[k] & 0x0f : p[k - 8] >> 4;
        const int hi = (p[8 + k % 4] >> (2 * (k / 4))) & 3;
        sc[k] = (int8_t)((lo | hi << 4) - 32);
    }
}

/* The same for the SIMD tiers, in registers: the 16 unbiased (0..63) scale bytes in sub-block
 * order, 0..7 in .lo and 8..15 in .hi. */
static inline sqz_u64x2 sqz_q3k_scales_u64(const uint8_t p[12]) {
    uint32_t u0, u1, u2;
    memcpy(&u0, p, 4);
    memcpy(&u1, p + 4, 4);
    memcpy(&u2, p + 8, 4);
    const uint32_t s0 = (u0 & 0x0f0f0f0fu) | (u2 & 0x03030303u) << 4;
    const uint32_t s1 = (u1 & 0x0f0f0f0fu) | ((u2 >> 2) & 0x03030303u) << 4;
    const uint32_t s2 = ((u0 >> 4) & 0x0f0f0f0fu) | ((u2 >> 4) & 0x03030303u) << 4;
    const uint32_t s3 = ((u1 >> 4) & 0x0f0f0f0fu) | ((u2 >> 6) & 0x03030303u) << 4;
    return (sqz_u64x2){ s0 | (uint64_t)s1 << 32, s2 | (uint64_t)s3 << 32 };
}

/* IQ4_XS: the 6-bit scale of sub-block k (0..7), biased by 32. */
static inline int sqz_iq4xs_scale(const block_iq4_xs *b, int k) {
    return (((b->scales_l[k / 2] >> (4 * (k % 2))) & 0x0f) | (((b->scales_h >> (2 * k)) & 3) << 4)) -
           32;
}

/* The f32-weight kernels of each tier (dot_ref.c, dot_avx2.c, dot_avx512.c): rows of the tier
 * tables, which live in qdot_ref.c, qdot_avx2.c and qdot_avx512.c with the quantized kernels.
 * The reference tier converts with the type traits' to_float. */
float sqz_dot_f32_ref(const void *row, const float *x, int64_t n);
float sqz_dot_f16_ref(const void *row, const float *x, int64_t n);
float sqz_dot_bf16_ref(const void *row, const float *x, int64_t n);
float sqz_dot_f32_avx2(const void *row, const float *x, int64_t n);
float sqz_dot_f16_avx2(const void *row, const float *x, int64_t n);
float sqz_dot_bf16_avx2(const void *row, const float *x, int64_t n);
void sqz_cvt_f16_avx2(const void *row, float *dst, int64_t n);
void sqz_cvt_bf16_avx2(const void *row, float *dst, int64_t n);
float sqz_dot_f32_avx512(const void *row, const float *x, int64_t n);
float sqz_dot_f16_avx512(const void *row, const float *x, int64_t n);
float sqz_dot_bf16_avx512(const void *row, const float *x, int64_t n);
void sqz_cvt_f16_avx512(const void *row, float *dst, int64_t n);
void sqz_cvt_bf16_avx512(const void *row, float *dst, int64_t n);

#endif
