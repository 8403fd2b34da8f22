/* mx.h - the block layouts of sqz's own weight types for mixllm (MX8, MX4, MX3): part of the
 * sqzf format (docs/sqzf.md), so they never change once written. Kernels: kernels/mix.h.
 *
 * Every type groups QK_MX = 128 consecutive elements of a row (the paper's group size), all
 * little-endian:
 *   MX8 (130 bytes, 8.125 bits/weight): f16 d; int8 q[128];          w = d * q, q in [-127, 127]
 *   MX4 ( 68 bytes, 4.25 bits/weight):  f16 d, f16 m; u8 qs[64];     w = d * q + m, q in [0, 15];
 *        element j < 64 is the low nibble of qs[j], element 64 + j its high nibble
 *   MX3 ( 52 bytes, 3.25 bits/weight):  f16 d, f16 m; u8 ql[32]; u8 qh[16];  w = d * q + m,
 *        q in [0, 7]: bits 0-1 of element j are bits 2*(j/32).. of ql[j % 32], bit 2 is bit
 *        j / 16 of qh[j % 16]
 */
#ifndef SQZ_FORMATS_MX_H
#define SQZ_FORMATS_MX_H

#include <assert.h>
#include <stdint.h>

#include "formats/types.h"

#define QK_MX 128

typedef struct { uint16_t d; int8_t q[QK_MX]; } block_mx8;
typedef struct { uint16_t d, m; uint8_t qs[QK_MX / 2]; } block_mx4;
typedef struct { uint16_t d, m; uint8_t ql[QK_MX / 4]; uint8_t qh[QK_MX / 8]; } block_mx3;
static_assert(sizeof(block_mx8) == 130, "block_mx8 size");
static_assert(sizeof(block_mx4) == 68, "block_mx4 size");
static_assert(sizeof(block_mx3) == 52, "block_mx3 size");

/* Level of element j (MX4: 0..15, MX3: 0..7). */
static inline int sqz_mx4_get(const block_mx4 *b, int j) {
    return j < 64 ? b->qs[j] & 0x0f : b->qs[j - 64] >> 4;
}
static inline int sqz_mx3_get(const block_mx3 *b, int j) {
    return ((b->ql[j % 32] >> (2 * (j / 32))) & 3) | ((b->qh[j % 16] >> (j / 16)) & 1) << 2;
}

/* ---- conversions (the types' traits rows), n a multiple of QK_MX */
void sqz_mx8_to_float(const void *src, float *dst, int64_t n);
void sqz_mx4_to_float(const void *src, float *dst, int64_t n);
void sqz_mx3_to_float(const void *src, float *dst, int64_t n);
/* Round to nearest without weights: sqz_mx_quantize_block with imp NULL. */
void sqz_mx8_from_float(const float *src, void *dst, int64_t n);
void sqz_mx4_from_float(const float *src, void *dst, int64_t n);
void sqz_mx3_from_float(const float *src, void *dst, int64_t n);

/* One group of QK_MX values x into blk of type t (MX8, MX4, MX3). MX8: d = max|x| / 127.
 * MX4 / MX3: the range [min, max] and a few shrunk ranges are tried; the one with the least
 * sum imp[j] (x[j] - w[j])^2 (imp NULL: all 1) wins, each x rounded to its nearest level. */
void sqz_mx_quantize_block(sqz_type t, const float *x, const float *imp, void *blk);

/* The level grid of element j of blk: value(s) = a * s + b for integer s in [smin, smax] and its
 * current level *s (as the type's to_float computes it, bit for bit). For GPTQ. */
void sqz_mx_elem_grid(sqz_type t, const void *blk, int j, float *a, float *b, int *smin,
                      int *smax, int *s);
/* Sets element j's level to s (within the grid). */
void sqz_mx_elem_set(sqz_type t, void *blk, int j, int s);

#endif
