/* gptq.h - GPTQ: error-compensating quantization of a weight matrix into a GGUF block type.
 *
 * Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for
 * Generative Pre-trained Transformers", ICLR 2023 (arXiv:2210.17323), Algorithm 1: columns are
 * quantized one at a time and each column's error, scaled by the inverse Hessian, is pushed onto
 * the columns not yet quantized, so that ||(W - Q) X||^2 (not ||W - Q||^2) is kept small.
 *
 * Dimensions: rows = output features (rows of W), cols = input features (the reduction
 * dimension of y = W x; the length of a stored row); H = X^T X [cols x cols] over calibration
 * activations X [tokens x cols]; QK = the type's block size (32 or 256 elements of a row);
 * B = columns per lazy batch (the paper's block size, default 128).
 *
 * What sqz adds to the paper: the quantizer of each column is the target GGUF type's own grid.
 * GGUF blocks cover QK consecutive elements of a row, each with its own scale(s); when GPTQ
 * reaches the first column of a block, the block's scales are chosen for every row by the
 * type's importance-aware quantizer (sqz_quantize_rows with imatrix = diag(H) of those columns),
 * from the already-updated weights; each column is then rounded to the nearest level of its
 * block's fixed grid (for k-quants d*sc*q - dmin*m with its sub-block's scale and min). The
 * result is a valid row of that type, byte-compatible with llama.cpp.
 *
 * Three further additions (sqz_gptq_opts; on by default): the scale search weights column i by
 * the cost GPTQ charges an error there, 1 / [H^-1]_ii given the columns before it (cond_imp);
 * each block is run again with scales chosen from the values its columns actually had when they
 * were rounded (the error feedback moves them after the block's scales were chosen), each row
 * keeping the pass with the least GPTQ loss (refit); and after GPTQ, coordinate descent on
 * (q - w)^T H (q - w) over the fixed grids (QuantEase, Behdin et al. 2023, "QuantEase:
 * Optimization-based Quantization for Language Models"), which only ever lowers that loss
 * (cd_sweeps).
 *
 * Types: Q4_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and sqz's own MX8, MX4, MX3 (mixllm;
 * src/kernels/mix.h) (sqz_gptq_supports).
 */
#ifndef SQZ_QUANT_GPTQ_H
#define SQZ_QUANT_GPTQ_H

#include <stdint.h>

#include "core/ctx.h"
#include "formats/types.h"

typedef struct sqz_gptq_opts {
    double percdamp; /* damping: percdamp * mean(diag H) is added to diag H (paper: 0.01;
                      * sqz: 0.1, see below) */
    int block;       /* lazy batch B in columns (paper: 128); rounded to fit the type's blocks,
                      * see sqz_gptq_quantize; <= 0: 128 */
    int act_order;   /* 1: process columns by descending diag(H) ("act-order"); the block
                      * scales are then all chosen up front from W ("static groups") */
    int threads;     /* <= 0: ctx's thread count (1 without a ctx) */
    int cond_imp;    /* 1: the scale search weights column i by 1 / [H^-1]_ii conditional on
                      * the columns before it (1 / U_ii^2, the cost GPTQ charges an error in
                      * that column) instead of diag(H) */
    int refit;       /* extra passes per block (not with act_order): the block is run again
                      * with scales chosen from the values its columns had when they were
                      * rounded; each row keeps the pass with the least GPTQ loss sum e_i^2 */
    int cd_sweeps;   /* after GPTQ: sweeps of coordinate descent on each row's
                      * (q - w)^T H (q - w) over the blocks' fixed grids (QuantEase, Behdin et
                      * al. 2023): every element in turn moves to the level of its grid nearest
                      * to its exact minimizer given the others, q_j - g_j / H_jj with
                      * g = H (q - w); then (k-quants) each sub-block's integer scale or min
                      * moves by one where that lowers the loss (sqz's extension); never
                      * increases the loss */
} sqz_gptq_opts;

/* The defaults: percdamp 0.1, block 128, act_order 0, threads 0, cond_imp 1, refit 2,
 * cd_sweeps 4. On sqz-llama-26m, KL divergence on sotu / mail: q4_k_m 0.0110 / 0.0065 for the
 * paper's GPTQ (percdamp 0.01), 0.0108 / 0.0063 with refit 2, 0.0101 / 0.0061 with 4 coordinate
 * descent sweeps on top; q2_k with all of them 0.1377 / 0.0824 at percdamp 0.01, 0.1343 /
 * 0.0802 at 0.1 (q4_k_m: no difference), 0.1319 / 0.0785 with the sub-block scale moves
 * (q4_k_m: 0.0100 / 0.0059, no difference). */
sqz_gptq_opts sqz_gptq_default_opts(void);

/* Whether sqz_gptq_quantize handles type t. */
int sqz_gptq_supports(sqz_type t);

/* Quantizes W [rows x cols] (row-major f32) into `out` (rows * sqz_type_row_size(type, cols)
 * bytes, rows packed as GGUF stores them) by GPTQ with Hessian H [cols x cols] (row-major,
 * f64, symmetric, e.g. X^T X or its mean over tokens; both triangles are read;
 * NULL = identity: no error feedback and no importance weights, so the output equals
 * sqz_quantize_rows(type, W, ..., NULL) byte for byte). deq (optional, rows x cols)
 * gets the dequantized result, exactly as the type's to_float gives it.
 *
 * H is preprocessed as the paper's reference code does: a column with H_ii == 0 is dead (never
 * activated): H_ii is set to 1 and the column of W is zeroed; percdamp * mean(diag H) is added
 * to the diagonal; H^-1 is computed by Cholesky in double (LAPACK dpotrf + dpotri), and its
 * upper Cholesky factor U (H^-1 = U^T U, dpotrf again, double) drives the updates, in f32.
 * The importance weights of the scale search are the damped diag(H). W must be finite.
 *
 * The lazy batch B is made compatible with the type's block size QK so that every block starts
 * a batch (all its columns then carry every update so far): B >= QK is rounded down to a
 * multiple of QK, B < QK to the largest power of two <= B.
 *
 * Deterministic: rows are processed in fixed chunks (any thread count gives the same bytes).
 *
 * Errors (message on ctx): SQZ_ERR_ARG for NULL W or out, rows < 1, cols not a positive
 * multiple of the type's block size, or H not positive definite after damping (non-finite
 * entries included); SQZ_ERR_UNSUPPORTED for a type without GPTQ support; SQZ_ERR_NOMEM. */
sqz_status sqz_gptq_quantize(sqz_ctx *ctx, sqz_type type, const float *W, int64_t rows,
                             int64_t cols, const double *H, const sqz_gptq_opts *opts,
                             void *out, float *deq);

/* ---- the per-block primitives sqz_gptq_quantize is built on (exposed for tests and for other
 * error-feedback methods). blk is one block of `type` (QK elements), j in [0, QK). */

/* Chooses blk's scales: quantizes the QK values x into blk with the type's quantizer, importance
 * weights imp (QK values; NULL = the type's quantizer without imatrix). The quantizer sees one
 * block: for Q4_0's imatrix path (whose sigma2 is the mean square of the whole row in
 * llama-quantize) sigma2 is the block's own; the k-quants use their super-block's anyway. */
void sqz_gptq_block_init(sqz_type type, const float *x, const float *imp, void *blk);

/* The dequantized value of element j of blk (as the type's to_float computes it). */
float sqz_gptq_block_get(sqz_type type, const void *blk, int j);

/* Sets element j of blk to the level of its (fixed) grid nearest to x and returns that level's
 * dequantized value. Ties round to even as ggml's nearest_int; a zero (sub-)scale keeps q. */
float sqz_gptq_block_set(sqz_type type, void *blk, int j, float x);

/* The k-quants' integer sub-block scales, which coordinate descent moves too: the elements per
 * sub-block of type t (16 for Q2_K, Q3_K, Q6_K; 32 for Q4_K, Q5_K; 0 for types without integer
 * sub-block scales), and sub-block k's scale and min (0 without mins) with their ranges
 * [*lo, *hi] and [0, *mhi] (*mhi = 0: no min). sqz_gptq_sub_set writes them back without
 * touching anything else of the block. */
int sqz_gptq_sub_size(sqz_type t);
void sqz_gptq_sub_get(sqz_type t, const void *blk, int k, int *sc, int *m, int *lo, int *hi, int *mhi);
void sqz_gptq_sub_set(sqz_type t, void *blk, int k, int sc, int m);

/* ---- the pieces of sqz_gptq_quantize that SparseGPT's joint pruning + quantization
 * (prune/sgptq.h) runs too, so that at density 1 it gives GPTQ's bytes exactly. */

/* Rows per unit of parallel work (sqz_gptq_quantize's chunks; the lazy update's GEMM is one
 * product per chunk). */
enum { SQZ_GPTQ_CHUNK_ROWS = 64 };

/* Element j of blk quantized from w, its block's scales chosen from x0 (the value element j had
 * then): w == x0 keeps the level the type's quantizer gave it, else sqz_gptq_block_set. Returns
 * the dequantized value. */
float sqz_gptq_block_quant(sqz_type type, void *blk, int j, float w, float x0);

/* imp[perm[i]] = 1 / Hp_ii^2 (perm NULL: identity): the cost GPTQ charges an error in column i
 * given the columns before it (cond_imp), from Hp = sqz_hessian_prepare's double factor. */
void sqz_gptq_cond_imp(const double *Hp, int64_t cols, const int64_t *perm, float *imp);

/* The lazy batch for block B and a type of QK elements per block (see sqz_gptq_quantize). */
int sqz_gptq_batch_size(int B, int qk, int act_order);

/* y[R x n] (+= with acc) x[R x K] . w(K x n), w(k, j) = w[k * ldw + j], row-major, one thread;
 * wp = sqz_gptq_gemm_scratch(K) (may be NULL; free() it). */
void sqz_gptq_gemm_rows(int64_t R, int64_t n, int64_t K, const float *x, int64_t ldx, const float *w,
                        int64_t ldw, float *y, int64_t ldy, int acc, float *wp);
float *sqz_gptq_gemm_scratch(int64_t K);

#endif
