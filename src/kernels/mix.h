/* mix.h - sqz's own weight types for mixllm (MX8, MX4, MX3) and the mixed-precision matrix
 * (SQZ_TYPE_MIXLLM) that holds rows of two of them; layouts are part of the sqzf format
 * (docs/sqzf.md), so they never change once written.
 *
 * Every type groups QK_MX = 128 consecutive elements of a row (the paper's group size), all
 * little-endian:
 *   MX8 (130 bytes, 8.125 bits/weight): f16 d; int8 q[128];          w = d * q, q in [-127, 127]
 *   MX4 ( 68 bytes, 4.25 bits/weight):  f16 d, f16 m; u8 qs[64];     w = d * q + m, q in [0, 15];
 *        element j < 64 is the low nibble of qs[j], element 64 + j its high nibble
 *   MX3 ( 52 bytes, 3.25 bits/weight):  f16 d, f16 m; u8 ql[32]; u8 qh[16];  w = d * q + m,
 *        q in [0, 7]: bits 0-1 of element j are bits 2*(j/32).. of ql[j % 32], bit 2 is bit
 *        j / 16 of qh[j % 16]
 *
 * Dot products take activations quantized to MXA, sqz's 8-bit activation format for these types
 * (never stored): per 128 elements, four f32 scales d[k] of 32 elements each (d = max|x| / 127,
 * q = x / d rounded to nearest even), s = sum_k d[k] * sum(q of sub-block k), and int8 q[128].
 * A group's dot product is then d_w * sum_k d[k] * isum_k (+ m_w * s for MX4 / MX3): the
 * offset costs one multiply per group, and nothing is converted from f16 per sub-block. Integer
 * sums are exact; tiers (reference C, AVX2) differ only in the order of f32 additions.
 */
#ifndef SQZ_KERNELS_MIX_H
#define SQZ_KERNELS_MIX_H

#include <assert.h>
#include <stdint.h>

#include "core/types.h"
#include "kernels/kernels.h"

#define QK_MX 128

typedef struct { uint16_t d; int8_t q[QK_MX]; } block_mx8;
typedef struct { uint16_t d, m; uint8_t qs[QK_MX / 2]; } block_mx4;
typedef struct { uint16_t d, m; uint8_t ql[QK_MX / 4]; uint8_t qh[QK_MX / 8]; } block_mx3;
static_assert(sizeof(block_mx8) == 130, "block_mx8 size");
static_assert(sizeof(block_mx4) == 68, "block_mx4 size");
static_assert(sizeof(block_mx3) == 52, "block_mx3 size");
typedef struct { float d[4]; float s; int8_t q[QK_MX]; } block_mxa; /* activations */
static_assert(sizeof(block_mxa) == 148, "block_mxa size");

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

/* ---- dot products: row (n elements of t) . xq (n elements of MXA) */
/* x[0..n) -> MXA blocks (n a multiple of QK_MX); one portable quantizer for every tier. */
void sqz_mxa_quantize(const float *x, void *xq, int64_t n);
float sqz_mx8_dot_mxa_ref(int64_t n, const void *row, const void *xq);
float sqz_mx4_dot_mxa_ref(int64_t n, const void *row, const void *xq);
float sqz_mx3_dot_mxa_ref(int64_t n, const void *row, const void *xq);
float sqz_mx8_dot_mxa_avx2(int64_t n, const void *row, const void *xq);
float sqz_mx4_dot_mxa_avx2(int64_t n, const void *row, const void *xq);
float sqz_mx3_dot_mxa_avx2(int64_t n, const void *row, const void *xq);
/* The dot product of t in tier isa (falling back to lower tiers); NULL for other types. */
sqz_vec_dot_q_fn sqz_mx_dot_get(sqz_type t, sqz_isa isa);

/* ---- the mixed matrix (w->type == SQZ_TYPE_MIXLLM), one pass over its stored rows: row i
 * uses MX8's or lo_type's dot product and writes output feature perm[i]. */
/* Bytes of x (n elements) as MXA. */
size_t sqz_mix_act_bytes(int64_t n);
void sqz_mix_act_quantize(const float *x, void *xq, int64_t n);
/* y[perm[i]] = row i . xq for stored rows i in [r0, r1). */
void sqz_mix_matvec_rows(const sqz_tensor *w, const void *xq, float *y, int64_t r0, int64_t r1,
                         sqz_isa isa);
/* y[T][N] = x[T][K] . w^T with n_threads: T <= 32 by the quantized dot products (x quantized
 * once, w read once), more by dequantized panels and sgemm. Returns 0, or -1 without memory. */
int sqz_mix_matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads);
/* The plain reference: every row dequantized (to_float) and dotted with f32 x in double. */
void sqz_mix_matmul_ref(const sqz_tensor *w, const float *x, int T, float *y);

#endif
