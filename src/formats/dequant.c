/* dequant.c - blocks of llama.cpp's quantized types -> f32, bit-identical to ggml's
 * dequantize_row_* (portable reference; the kernels have their own fast paths).
 *
 * Bit-identity means the same f32 operations in the same order: e.g. Q4_K is
 * (d * sc) * q - (dmin * m), never fma(d * sc, q, -dmin * m). Contraction into FMAs is turned
 * off for this file below, whatever the compiler flags.
 *
 * Glossary: QK = elements per block; d = block (or super-block) scale, f16 unless noted;
 * dmin / m = minimum; sc = sub-block scale; q = quant; nb = blocks in the row.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <string.h>

#include "formats/types.h"
#include "formats/blocks.h"
#include "formats/quant.h"

#define f16 sqz_f16_to_f32

/* IQ4_NL / IQ4_XS: the 16 levels, fitted by ggml to Gaussian-like weights. */
const int8_t sqz_iq4nl_values[16] = { -127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113 };
#define iq4nl_values sqz_iq4nl_values

void sqz_q4_0_to_float(const void *src, float *dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        const float d = f16(b[i].d);
        /* low nibbles are elements 0..15, high nibbles 16..31 */
        for (int j = 0; j < QK4_0 / 2; j++) {
            const int q0 = (b[i].qs[j] & 0x0f) - 8, q1 = (b[i].qs[j] >> 4) - 8;
            dst[j] = q0 * d;
            dst[j + QK4_0 / 2] = q1 * d;
        }
    }
}

void sqz_q4_1_to_float(const void *src, float *dst, int64_t n) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        const float d = f16(b[i].d), m = f16(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const int q0 = b[i].qs[j] & 0x0f, q1 = b[i].qs[j] >> 4;
            dst[j] = q0 * d + m;
            dst[j + QK4_1 / 2] = q1 * d + m;
        }
    }
}

/* Q5_0 / Q5_1: bit j of the little-endian u32 qh is the 5th bit of element j. */
static uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

void sqz_q5_0_to_float(const void *src, float *dst, int64_t n) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        const float d = f16(b[i].d);
        const uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            const int q0 = ((b[i].qs[j] & 0x0f) | h0) - 16, q1 = ((b[i].qs[j] >> 4) | h1) - 16;
            dst[j] = q0 * d;
            dst[j + QK5_0 / 2] = q1 * d;
        }
    }
}

void sqz_q5_1_to_float(const void *src, float *dst, int64_t n) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        const float d = f16(b[i].d), m = f16(b[i].m);
        const uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            const int q0 = (b[i].qs[j] & 0x0f) | h0, q1 = (b[i].qs[j] >> 4) | h1;
            dst[j] = q0 * d + m;
            dst[j + QK5_1 / 2] = q1 * d + m;
        }
    }
}

void sqz_q8_0_to_float(const void *src, float *dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        const float d = f16(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[j] = b[i].qs[j] * d;
    }
}

void sqz_q8_1_to_float(const void *src, float *dst, int64_t n) {
    const block_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK8_1; i++, dst += QK8_1) {
        const float d = f16(b[i].d);
        for (int j = 0; j < QK8_1; j++) dst[j] = b[i].qs[j] * d;
    }
}

/* Q2_K: 16 sub-blocks of 16. Byte l of each 32-byte group of qs holds, in bit pairs 0-1, 2-3,
 * 4-5, 6-7, the elements l, l+32, l+64, l+96 of that group's 128 elements; scales[k] holds
 * sub-block k's scale (low nibble) and min (high nibble). */
void sqz_q2_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q2_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = f16(b[i].d), dmin = f16(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int k = 0; /* sub-block */
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++, k++) { /* bytes 0..15, then 16..31 */
                    const uint8_t s = b[i].scales[k];
                    const float dl = d * (s & 0x0f), ml = dmin * (s >> 4);
                    for (int l = 0; l < 16; l++)
                        *dst++ = dl * ((q[16 * part + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* Q3_K: the 16 six-bit scales (biased by 32) are packed in 12 bytes: the low nibbles of
 * sub-blocks 0..7 in bytes 0..7 (low half) and of 8..15 in bytes 0..7 (high half); the top
 * two bits of sub-block k in byte 8 + k%4 at bit 2*(k/4). */
static void q3_k_unpack_scales(const uint8_t *p, int8_t sc[16]) {
    for (int k = 0; k < 16; k++) {
        const int lo = k < 8 ? p[k] & 0x0f : p[k - 8] >> 4;
        const int hi = (p[8 + k % 4] >> (2 * (k / 4))) & 3;
        sc[k] = (int8_t)((lo | hi << 4) - 32);
    }
}

/* Q3_K quants: 2 low bits as in Q2_K; the 3rd bit of element j (of 256) is bit j/32 of
 * hmask[j%32]; a clear bit means "subtract 4". */
void sqz_q3_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q3_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = f16(b[i].d);
        int8_t sc[16];
        q3_k_unpack_scales(b[i].scales, sc);
        const uint8_t *q = b[i].qs, *hm = b[i].hmask;
        uint8_t mask = 1;
        int k = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, mask <<= 1) {
                for (int part = 0; part < 2; part++, k++) {
                    const float dl = d * sc[k];
                    for (int l = 0; l < 16; l++) {
                        const int j = 16 * part + l;
                        const int v = ((q[j] >> shift) & 3) - ((hm[j] & mask) ? 0 : 4);
                        *dst++ = dl * v;
                    }
                }
            }
        }
    }
}

/* Q4_K / Q5_K: 8 six-bit scales and 8 six-bit mins in 12 bytes. Sub-blocks 0..3: bytes 0..3
 * (scale) and 4..7 (min), low 6 bits. Sub-blocks 4..7: low nibbles in byte 8..11 (scale in the
 * low half, min in the high half), top two bits in the spare top bits of bytes 0..3 (scale)
 * and 4..7 (min). */
static void k4_scale_min(int j, const uint8_t *p, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = p[j] & 63;
        *m = p[j + 4] & 63;
    } else {
        *sc = (uint8_t)((p[j + 4] & 0x0f) | ((p[j - 4] >> 6) << 4));
        *m = (uint8_t)((p[j + 4] >> 4) | ((p[j] >> 6) << 4));
    }
}

/* Q4_K quants: each 32-byte group of qs holds two sub-blocks of 32 (low nibbles, then high). */
void sqz_q4_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = f16(b[i].d), dmin = f16(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, m;
            k4_scale_min(j, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            k4_scale_min(j + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: Q4_K plus a 5th bit: for sub-block pair p (0..3), bit 2p of qh[l] belongs to element
 * l of the first sub-block, bit 2p+1 to element l of the second. */
void sqz_q5_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = f16(b[i].d), dmin = f16(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 8; j += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            k4_scale_min(j, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            k4_scale_min(j + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * ((ql[l] & 0x0f) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K: per 128 elements, 64 bytes of low nibbles (ql) and 32 bytes of 2-bit highs (qh).
 * Element l (0..31) of the four 32-element quarters: ql[l] low / ql[l+32] low / ql[l] high /
 * ql[l+32] high, with the top bits in qh[l] bits 0-1 / 2-3 / 4-5 / 6-7. 16 int8 scales, one
 * per 16 elements. */
void sqz_q6_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = f16(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, dst += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                dst[l] = d * sc[is] * q1;
                dst[l + 32] = d * sc[is + 2] * q2;
                dst[l + 64] = d * sc[is + 4] * q3;
                dst[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* Q8_K: f32 scale (bsums only serve dot products). */
void sqz_q8_k_to_float(const void *src, float *dst, int64_t n) {
    const block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        for (int j = 0; j < QK_K; j++) *dst++ = b[i].d * b[i].qs[j];
}

void sqz_iq4_nl_to_float(const void *src, float *dst, int64_t n) {
    const block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / QK4_NL; i++, dst += QK4_NL) {
        const float d = f16(b[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            dst[j] = d * iq4nl_values[b[i].qs[j] & 0x0f];
            dst[j + QK4_NL / 2] = d * iq4nl_values[b[i].qs[j] >> 4];
        }
    }
}

/* IQ4_XS: 8 sub-blocks of 32 as IQ4_NL, each with a 6-bit scale (biased by 32): low nibble in
 * scales_l (two per byte), top two bits in scales_h (bits 2k, 2k+1). */
void sqz_iq4_xs_to_float(const void *src, float *dst, int64_t n) {
    const block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = f16(b[i].d);
        const uint8_t *qs = b[i].qs;
        for (int k = 0; k < QK_K / 32; k++, dst += 32, qs += 16) {
            const int ls = ((b[i].scales_l[k / 2] >> (4 * (k % 2))) & 0x0f) |
                           (((b[i].scales_h >> (2 * k)) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; j++) {
                dst[j] = dl * iq4nl_values[qs[j] & 0x0f];
                dst[j + 16] = dl * iq4nl_values[qs[j] >> 4];
            }
        }
    }
}
