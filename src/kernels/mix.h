/* mix.h - the kernels of sqz's mixllm types (MX8, MX4, MX3: layouts in formats/mx.h) and of the
 * mixed-precision matrix (SQZ_TYPE_MIXLLM) that holds rows of two of them.
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

#include "formats/types.h"
#include "formats/mx.h"
#include "kernels/kernels.h"

typedef struct { float d[4]; float s; int8_t q[QK_MX]; } block_mxa; /* activations */
static_assert(sizeof(block_mxa) == 148, "block_mxa size");

/* ---- dot products: row (n elements of t) . xq (n elements of MXA) */
/* x[0..n) -> MXA blocks (n a multiple of QK_MX); one portable quantizer for every tier. */
void sqz_mxa_quantize(const float *x, void *xq, int64_t n);
float sqz_mx8_dot_mxa_ref(int64_t n, const void *row, const void *xq);
float sqz_mx4_dot_mxa_ref(int64_t n, const void *row, const void *xq);
float sqz_mx3_dot_mxa_ref(int64_t n, const void *row, const void *xq);
float sqz_mx8_dot_mxa_avx2(int64_t n, const void *row, const void *xq);
float sqz_mx4_dot_mxa_avx2(int64_t n, const void *row, const void *xq);
float sqz_mx3_dot_mxa_avx2(int64_t n, const void *row, const void *xq);
/* The dot product of t (MX8, MX4, MX3) in tier isa (the tier tables' vec_dot_q, falling back
 * to lower tiers); NULL for other types. */
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
/* The functions above as the mixed matrix's sqz_matrix_ops (its row in qdot_ref.c's table). */
extern const sqz_matrix_ops sqz_mix_matrix_ops;

#endif
