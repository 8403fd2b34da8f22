/* qdot_dq2.h - internal to src/kernels: the kernels of sqz's own dq2 type (formats/dq2.h), kept
 * apart from the ggml types' tables (qdot_*.c). Activations are Q8_0: a dq2 group of 64 is two
 * Q8_0 blocks, and each block's sum of q_a (computed in the kernel, exact) pays for the zero:
 *   sum_j (d q_j + m) a_j = sum over the two halves h of d_a,h (d isum_h + m asum_h).
 */
#ifndef SQZ_KERNELS_QDOT_DQ2_H
#define SQZ_KERNELS_QDOT_DQ2_H

#include "kernels/kernels.h"

/* The dq2 row of tier isa (members NULL where that tier has none: the dispatch falls back). */
sqz_kernel_row sqz_dq2_kernels(sqz_isa isa);
sqz_kernel_row sqz_dq2_kernels_ref(void);
sqz_kernel_row sqz_dq2_kernels_avx2(void);
sqz_kernel_row sqz_dq2_kernels_avx512(void); /* empty without AVX512-VNNI */

#endif
