/* dq2.h - the "dq2" tensor type: 2-bit integer codes with a float scale and zero per group of
 * 64 weights, the storage of decoupleQ (quant/decoupleq.h; Guo et al. 2024).
 *
 * An sqz-only type (id SQZ_TYPE_DQ2 = 1024, outside ggml's numbering): GGUF files cannot hold
 * it; sqz's own container carries it.
 *
 * Block layout (20 bytes per 64 weights = 2.5 bits per weight):
 *   uint16_t d;      scale, IEEE half
 *   uint16_t m;      zero (the value of code 0), IEEE half
 *   uint8_t qs[16];  codes: element j (0..63) is (qs[j % 16] >> (2 * (j / 16))) & 3
 * Element j is d * q_j + m (in f32, from the two halves). The code layout puts elements
 * 16k..16k+15 in bit pair k of the 16 bytes, so a SIMD kernel gets 0..31 and 32..63 (one Q8_0
 * activation block each) with two shifts and a mask.
 *
 * Unlike ggml's Q4_1 (d * q + m as well), d may be negative and m is any value: decoupleQ's
 * least-squares step chooses both freely.
 */
#ifndef SQZ_FORMATS_DQ2_H
#define SQZ_FORMATS_DQ2_H

#include <assert.h>
#include <stdint.h>

#include "formats/types.h"

#define QK_DQ2 64

typedef struct {
    uint16_t d, m;
    uint8_t qs[QK_DQ2 / 4];
} block_dq2;
static_assert(sizeof(block_dq2) == 20, "block_dq2 size");

/* Code j of a block (0..3). */
static inline int sqz_dq2_code(const block_dq2 *b, int j) {
    return (b->qs[j % 16] >> (2 * (j / 16))) & 3;
}

/* Packs 64 codes (each 0..3) and the two halves into a block. */
void sqz_dq2_pack(block_dq2 *b, float d, float m, const uint8_t *codes);

/* Round-to-nearest on one group of n values: m = min, d = (max - min) / 3, both rounded to
 * half (*d, *m get the rounded values), then q = round((x - m) / d) clamped to [0, 3], ties
 * away from zero (d == 0: every q = 0). */
void sqz_dq2_rtn_group(const float *x, int n, float *d, float *m, uint8_t *q);

/* dst[0..n) from n / 64 blocks: exactly d * q + m with d, m read as halves. */
void sqz_dq2_to_float(const void *src, float *dst, int64_t n);

/* Round-to-nearest (the type's reference quantizer): sqz_dq2_rtn_group on each group of 64. */
void sqz_dq2_from_float(const float *src, void *dst, int64_t n);

#endif
