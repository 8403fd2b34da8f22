/* attn.h - attention kernels over KV rows held in a compact storage format.
 *
 * A KV row is one head's key or value (or a policy's coefficient vector) of n channels, in one
 * of these formats (sqz_kvrow_fmt):
 *   F32, F16  n floats / n IEEE halves;
 *   Q8/Q4/Q2  asymmetric codes, x ~= min_g + scale_g * code, one (scale, min) pair per group of
 *             `group` channels: the row is the packed codes (n * bits / 8 bytes) followed by
 *             the pairs as f16 [n / group][scale, min]. Codes are packed in blocks of 32
 *             channels: q8 one byte per channel; q4 16 bytes, byte j = channel j (low nibble)
 *             and channel j+16 (high); q2 8 bytes, byte j = channels j, j+8, j+16, j+24 in bit
 *             pairs 0-1, 2-3, 4-5, 6-7 (so SIMD code unpacks 8 channels with one shift).
 *             group is a multiple of 32 that divides n.
 *
 * The kernels compute attention's two products on P rows of stride ld bytes, for nq queries at
 * once (the query heads of one KV head share its rows, so each row is decoded once for all):
 *   scores  s[j][p] = scale * (q[j] . row_p)          j < nq, q [nq][n], s row stride sld
 *   accum   y[j] += sum_p w[j][p] * row_p              w row stride wld, y [nq][n]
 * Dequantization is fused into the dot products: no decoded copy of the rows is made. Each has
 * a reference (attn_ref.c), an AVX2 tier (attn_avx2.c) and an AVX-512 tier for decode's few
 * queries (attn_avx512.c), chosen at run time; tests compare them (tests/test_kv_codec.c).
 */
#ifndef SQZ_KERNELS_ATTN_H
#define SQZ_KERNELS_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

typedef enum sqz_kvrow_type {
    SQZ_KVROW_F32 = 0,
    SQZ_KVROW_F16,
    SQZ_KVROW_Q8,
    SQZ_KVROW_Q4,
    SQZ_KVROW_Q2,
} sqz_kvrow_type;

typedef struct sqz_kvrow_fmt {
    sqz_kvrow_type type;
    int n;     /* channels per row */
    int group; /* quantized types: channels per (scale, min) pair */
} sqz_kvrow_fmt;

/* Bits per code of a quantized type (8, 4, 2); 0 for F32/F16. */
int sqz_kvrow_bits(sqz_kvrow_type t);
/* Bytes of one row. */
size_t sqz_kvrow_bytes(const sqz_kvrow_fmt *f);
/* row = x[0..n) encoded (quantized types: per-group min/max, rounded to nearest). */
void sqz_kvrow_encode(const sqz_kvrow_fmt *f, const float *x, void *row);
/* x[0..n) = row decoded. */
void sqz_kvrow_decode(const sqz_kvrow_fmt *f, const void *row, float *x);

typedef void (*sqz_kvrow_scores_fn)(const sqz_kvrow_fmt *f, int nq, const float *q,
                                    const void *rows, size_t ld, int P, float scale, float *s,
                                    size_t sld);
typedef void (*sqz_kvrow_accum_fn)(const sqz_kvrow_fmt *f, int nq, const float *w, size_t wld,
                                   const void *rows, size_t ld, int P, float *y);

/* x[0..n) = softmax(x) in place (n >= 1). The reference is sqz_softmax (libm expf); the SIMD
 * tier uses a polynomial exp within 2 ulp of it, so probabilities agree to ~1e-7 relative
 * (attention over thousands of positions spends as long in expf as in the score products). */
typedef void (*sqz_softmax_fn)(float *x, int n);

typedef struct sqz_attn_kernels {
    sqz_kvrow_scores_fn scores;
    sqz_kvrow_accum_fn accum;
    sqz_softmax_fn softmax;
} sqz_attn_kernels;

sqz_attn_kernels sqz_attn_kernels_ref(void);
sqz_attn_kernels sqz_attn_kernels_avx2(void);
sqz_attn_kernels sqz_attn_kernels_avx512(void);
/* The best tier for this CPU (sqz_isa_best). */
sqz_attn_kernels sqz_attn_kernels_get(sqz_isa isa);
sqz_attn_kernels sqz_attn_kernels_best(void);

#endif
