/* sp8.h - matrix-vector products with sqz's sparse int8 matrices (formats/sp8.h): the
 * activations are quantized to Q8_0 blocks once (32 elements, f16 scale, i8), and each block of
 * a row is an exact integer dot product of its kept weights with the activations they meet,
 * scaled by d_w * d_x. Tiers: the reference (sp8_ref.c) and AVX512-VBMI2 (sp8_vbmi2.c: expand
 * the packed bytes by the mask with vpexpandb, then VNNI's vpdpbusd), chosen at run time
 * (sqz_sp8_matvec_get). The tiers compute the same integer sums and differ only in the order
 * of the f32 additions. */
#ifndef SQZ_KERNELS_SP8_H
#define SQZ_KERNELS_SP8_H

#include "formats/sp8.h"
#include "kernels/kernels.h"

/* y[r] = row r of m . xq for r in [r0, r1); rows of cols weights; xq: cols / 32 Q8_0 blocks. */
typedef void (*sqz_sp8_matvec_fn)(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0,
                                  int64_t r1);

void sqz_sp8_matvec_ref(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1);
void sqz_sp8_matvec_vbmi2(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1);

/* sqz_sp8_unpack_row (formats/sp8.h) with vpexpandb, the same floats (prefill's panels). */
void sqz_sp8_unpack_row_vbmi2(const uint8_t *src, int64_t n, float *dst);

/* 1 if this CPU has AVX512-VBMI2 (and the AVX-512 tier's other features: sqz_isa_best). */
int sqz_sp8_has_vbmi2(void);

/* The best kernel at most tier isa: VBMI2 when isa is SQZ_ISA_AVX512 and the CPU has it, else
 * the reference. */
sqz_sp8_matvec_fn sqz_sp8_matvec_get(sqz_isa isa);

/* y[0..rows) = m . x: x quantized to Q8_0 (xq: scratch of cols / 32 * 34 bytes), rows split
 * over n_threads, the best tier. */
void sqz_sp8_matvec(const sqz_sp8_tensor *m, int64_t rows, int64_t cols, const float *x, void *xq, float *y,
                    int n_threads);

/* The whole-matrix operations of SQZ_TYPE_SP8 (kernels.h), in the reference tier's row. */
extern const sqz_matrix_ops sqz_sp8_matrix_ops;

#endif
