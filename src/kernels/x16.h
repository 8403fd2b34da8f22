/* x16.h - products with Q4_0 / Q8_0 matrices repacked in 16-row groups (formats/x16.h).
 *
 * The packed types' rows in the kernel tables carry sqz_x16_matrix_ops (whole-matrix
 * products, kernels.h): decode's rows and prefill's matrix product take activations quantized
 * once to block_q8_0s. Two tiers: the plain reference (x16_ref.c, the tests' yardstick) and
 * AVX-512 VNNI (x16_avx512.c); a CPU without AVX-512 never gets packed matrices (the model
 * packs only where sqz_x16_worth_it says so).
 */
#ifndef SQZ_KERNELS_X16_H
#define SQZ_KERNELS_X16_H

#include <stddef.h>
#include <stdint.h>

#include "formats/x16.h"
#include "kernels/kernels.h"

/* Whether matrices of type t (rows x cols) should be packed on this CPU: t is Q4_0, Q8_0,
 * Q2_K ... Q6_K, IQ4_XS, rows a multiple of 16, and the best tier is AVX-512. */
int sqz_x16_worth_it(sqz_type t, int64_t rows, int64_t cols);

size_t sqz_x16_act_bytes(int64_t n);                             /* n / 32 block_q8_0s */
void sqz_x16_act_quantize(const float *x, void *xq, int64_t n); /* the same q as ggml's Q8_0 */

/* y[r] = row r . a for r in [r0, r1): w a packed matrix of type t (SQZ_TYPE_Q4_0X16 or
 * SQZ_TYPE_Q8_0X16) with `cols` columns, a its activations (sqz_x16_act_quantize). */
void sqz_x16_matvec_ref(sqz_type t, const void *w, int64_t cols, const block_q8_0s *a, float *y,
                        int64_t r0, int64_t r1);
void sqz_x16_matvec_avx512(sqz_type t, const void *w, int64_t cols, const block_q8_0s *a,
                           float *y, int64_t r0, int64_t r1);

/* y[t * ldy + r] for the T tokens t (activations a + t * cols / 32) and the rows of groups
 * [g0, g1) (rows 16 g0 .. 16 g1): prefill's product, each group's weights unpacked once for
 * up to 8 tokens. */
void sqz_x16_gemm_avx512(sqz_type t, const void *w, int64_t cols, int64_t g0, int64_t g1,
                         const block_q8_0s *a, int T, float *y, size_t ldy);

/* The packed k-quants (t = SQZ_TYPE_Q2_KX16 ... Q6_KX16, IQ4_XSX16): y[r] = row r . a for r in
 * [r0, r1), a: x quantized to Q8_K (cols / 256 block_q8_K). */
void sqz_x16k_matvec_ref(sqz_type t, const void *w, int64_t cols, const void *a, float *y, int64_t r0,
                         int64_t r1);
void sqz_x16k_matvec_avx512(sqz_type t, const void *w, int64_t cols, const void *a, float *y, int64_t r0,
                            int64_t r1);

/* Prefill's product for the packed k-quants (t = SQZ_TYPE_Q2_KX16 ... Q6_KX16, IQ4_XSX16):
 * y[t * ldy + r] for the T tokens (a: T rows of cols / 256 block_q8_K) and the rows of groups
 * [g0, g1), each sub-block's values unpacked once for up to 8 tokens. Returns -1 (nothing done) for another
 * type. */
int sqz_x16k_gemm_avx512(sqz_type t, const void *w, int64_t cols, int64_t g0, int64_t g1, const void *a, int T,
                         float *y, size_t ldy);

/* Prefill of an unpacked k-quant matrix (Q2_K ... Q6_K, IQ4_XS, w->rows a multiple of 16) on the
 * packed types' integer tiles: each chunk of groups is packed on the fly into a thread's scratch,
 * so the products are those of the same matrix loaded packed. Why: the search, GPTQ and the KL
 * probes score unpacked rows, and the files they write load packed; on f32 panels their numbers
 * differed from the file's by up to 1.7 % (Q2_K's KL). Returns -1 (nothing done) for T <= 4 (the
 * packed matrices' own row path), another type or shape, a CPU without AVX-512, or no memory. */
int sqz_x16k_matmul_unpacked(const sqz_tensor *w, const float *x, int T, float *y, int n_threads);
/* Up to this many tokens a packed k-quant matrix runs its row path, whose sums differ from the
 * unpacked rows' in the last bits; above it packed and unpacked prefill are the same bits. */
enum { SQZ_X16K_MATVEC_MAX_T = 4 };

/* The packed types' sqz_matrix_ops (their rows in qdot_ref.c's table): Q4_0X16 and Q8_0X16
 * take block_q8_0s activations, the packed k-quants Q8_K ones. */
extern const sqz_matrix_ops sqz_x16_matrix_ops;
extern const sqz_matrix_ops sqz_x16k_matrix_ops;

#endif
