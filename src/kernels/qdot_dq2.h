/* qdot_dq2.h - internal to src/kernels: the kernels of sqz's own dq2 type (formats/dq2.h), kept
 * apart from the ggml types' tables (qdot_*.c). Activations are Q8_0: a dq2 group of 64 is two
 * Q8_0 blocks, and each block's sum of q_a (computed in the kernel, exact) pays for the zero:
 *   sum_j (d q_j + m) a_j = sum over the two halves h of d_a,h (d isum_h + m asum_h).
 */
#ifndef SQZ_KERNELS_QDOT_DQ2_H
#define SQZ_KERNELS_QDOT_DQ2_H

#include "kernels/kernels.h"

/* dq2's kernels, rows of the tier tables (qdot_ref.c, qdot_avx2.c, qdot_avx512.c): row .
 * Q8_0 activations in each tier, row . f32 x in the reference tier (the others fall back). */
float sqz_dq2_vec_dot_q_ref(int64_t n, const void *row, const void *xq);
float sqz_dq2_vec_dot_q_avx2(int64_t n, const void *row, const void *xq);
float sqz_dq2_vec_dot_q_avx512(int64_t n, const void *row, const void *xq); /* VNNI */
float sqz_dq2_dot_ref(const void *row, const float *x, int64_t n);

#endif
