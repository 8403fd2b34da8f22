/* qkx3.h - ggml's make_qkx3_quants (the scale-and-min search of Q4_1 / Q5_1 / Q2_K / Q4_K /
 * Q5_K with an importance matrix), the one hot loop of imatrix and GPTQ quantization: for each
 * of nstep + 1 candidate inverse scales it rounds the block, fits scale and min by weighted
 * least squares and keeps the candidate of least weighted error.
 *
 * sqz_qkx3_ref is the reference (quantize_ref.c, operation for operation ggml's). The AVX-512
 * version runs 16 candidates at once, one per lane, each lane doing exactly the reference's
 * float operations in the reference's order, and takes the first lane that wins in the
 * reference's order; since a win moves the min that later candidates use, the next pass starts
 * after that lane. Its result is bit-identical (tests/test_qkx3.c checks levels, scale and min
 * on random blocks). n <= 32. */
#ifndef SQZ_FORMATS_QKX3_H
#define SQZ_FORMATS_QKX3_H

#include <stdbool.h>
#include <stdint.h>

/* Levels L[0..n) in 0..nmax, *the_min = -min; returns the scale (x ~ scale * L - the_min).
 * weights NULL: x^2. Laux: n bytes of scratch. */
float sqz_qkx3_ref(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                   uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad);
float sqz_qkx3_avx512(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                      float rmin, float rdelta, int nstep, bool use_mad);

/* 1 when this CPU runs sqz_qkx3_avx512 (AVX-512 F/BW/VL/DQ), which the quantizers then use. */
int sqz_qkx3_has_avx512(void);

#endif
