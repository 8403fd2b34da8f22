/* sp8.h - matrix-vector products with sqz's sparse int8 matrices (formats/sp8.h): the
 * activations are quantized to Q8_0 blocks once (32 elements, f16 scale, i8; followed by the
 * scales again as f32, so that a kernel loads 16 of them at once), and each block of
 * a row is an exact integer dot product of its kept weights with the activations they meet,
 * scaled by d_w * d_x. Tiers: the reference (sp8_ref.c), AVX2 (sp8_avx2.c: vpshufb by 8-lane
 * patterns from a table, vpmaddubsw) and AVX512-VBMI2 (sp8_vbmi2.c: expand the packed bytes by
 * the mask with vpexpandb, then VNNI's vpdpbusd), chosen at run time
 * (sqz_sp8_matvec_get). The tiers compute the same integer sums and differ only in the order
 * of the f32 additions. */
#ifndef SQZ_KERNELS_SP8_H
#define SQZ_KERNELS_SP8_H

#include "formats/sp8.h"
#include "kernels/kernels.h"

/* The activations, for cols inputs (nb = cols / 32 blocks), one after the other:
 *     block_q8_0 blk[nb]   Q8_0 (f16 d, 32 i8): what the reference tier reads; then 0 or 2
 *                          bytes, so that the f32 and i32 parts are 4-byte aligned
 *     i8  qs[cols]         the same bytes, contiguous (two blocks are one 64-byte load)
 *     f32 d[nb]            the blocks' d as f32 (16 are one load)
 *     i32 corr[nb][8]      -128 x the sum of each 4 consecutive qs: the VBMI2 tier adds 128 to
 *                          the weights (u8 for vpdpbusd) and starts each sum from corr, which
 *                          takes the 128 x sum(x) back out exactly
 * sqz_sp8_act_bytes(cols) bytes in all; sqz_sp8_act_quantize fills them. */
size_t sqz_sp8_act_bytes(int64_t cols);
void sqz_sp8_act_quantize(const float *x, void *xq, int64_t cols);
/* Fills qs, d and corr from blk (the tiers of the same sums). */
void sqz_sp8_act_finish_ref(void *xq, int64_t cols);
void sqz_sp8_act_finish_vbmi2(void *xq, int64_t cols);

/* Where the parts start, for nb blocks. */
static inline int64_t sqz_sp8_act_qs_at(int64_t nb) { return (34 * nb + 3) & ~(int64_t)3; }
static inline int8_t *sqz_sp8_act_qs(void *xq, int64_t nb) { return (int8_t *)xq + sqz_sp8_act_qs_at(nb); }
static inline float *sqz_sp8_act_d(void *xq, int64_t nb) {
    return (float *)(void *)((char *)xq + sqz_sp8_act_qs_at(nb) + 32 * nb);
}
static inline int32_t *sqz_sp8_act_corr(void *xq, int64_t nb) {
    return (int32_t *)(void *)((char *)xq + sqz_sp8_act_qs_at(nb) + 36 * nb);
}

/* y[r] = row r of m . xq for r in [r0, r1); rows of cols weights; xq: sqz_sp8_act_quantize's. */
typedef void (*sqz_sp8_matvec_fn)(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0,
                                  int64_t r1);

void sqz_sp8_matvec_ref(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1);
void sqz_sp8_matvec_avx2(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1);
void sqz_sp8_matvec_vbmi2(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1);

/* sqz_sp8_unpack_row (formats/sp8.h) with vpexpandb, the same floats; and
 * sqz_sp8_unpack_row_q8_0's, the same bytes (prefill's Q8_0 blocks of rows). */
void sqz_sp8_unpack_row_vbmi2(const uint8_t *src, int64_t n, float *dst);
void sqz_sp8_unpack_row_q8_0_vbmi2(const uint8_t *src, int64_t n, void *dst);

/* 1 if this CPU has AVX512-VBMI2 (and the AVX-512 tier's other features: sqz_isa_best). */
int sqz_sp8_has_vbmi2(void);

/* The best kernel at most tier isa: VBMI2 when isa is SQZ_ISA_AVX512 and the CPU has it, AVX2
 * when isa allows AVX2, else the reference. */
sqz_sp8_matvec_fn sqz_sp8_matvec_get(sqz_isa isa);

/* y[0..rows) = m . x: x quantized (xq: scratch of sqz_sp8_act_bytes(cols) bytes), rows split
 * over n_threads, the best tier. */
void sqz_sp8_matvec(const sqz_sp8_tensor *m, int64_t rows, int64_t cols, const float *x, void *xq, float *y,
                    int n_threads);

/* The whole-matrix operations of SQZ_TYPE_SP8 (kernels.h), in the reference tier's row. */
extern const sqz_matrix_ops sqz_sp8_matrix_ops;

#endif
