/* decoupleq.h - decoupleQ: 2-bit uniform quantization whose integer codes and float
 * scale / zero are optimized alternately against the layer's output error.
 *
 * Guo, Kong, Li, Li, Chen, Tian, Cai, Zhang, Liu, "decoupleQ: Towards 2-bit Post-Training
 * Uniform Quantization via Decoupling Parameters into Integer and Floating Points", 2024
 * (arXiv:2404.12759), the layer-wise stage, as the authors' code runs it for Llama
 * (run_llama.sh: --wbits 2 --max-iter-num 4 --round-fn gptq --act-order; group size 64).
 *
 * Dimensions: rows = output features (rows of W), cols = input features (row length),
 * H [cols x cols] = X^T X over calibration activations X [tokens x cols]; G = cols / group
 * groups per row; s, z [rows x G] the scale and zero of each group; q [rows x cols] the codes
 * in [0, 3]; Q = s * q + z (per element, its group's s and z) the quantized weights.
 *
 * Problem (per row w, independently): minimise (w - Q)^T H (w - Q) over integer q in [0, 3]
 * and float s, z. decoupleQ splits the variables:
 *   - with (s, z) fixed, q from the box-constrained integer problem, solved as the paper's code
 *     does with round_fn "gptq": GPTQ's column-by-column rounding with error feedback through
 *     the Cholesky factor of H^-1, onto the fixed grid {s*k + z, k = 0..3} of each group
 *     (act-order: columns by descending diag H);
 *   - with q fixed, (s, z) in closed form: the objective is quadratic in the 2G unknowns
 *     x = (s_0..s_{G-1}, z_0..z_{G-1}), Q = B x with B's column j = q restricted to group j and
 *     column G + j = the indicator of group j; the normal equations (B^T H B) x = B^T H w are
 *     solved by Cholesky (damped by 1% of their mean diagonal if singular, as the paper's code).
 * Schedule (the paper's startquant):
 *   0. init: round-to-nearest on each group's min/max (exactly sqz_dq2_rtn_group);
 *   1. GPTQ codes on that grid;
 *   then iters - 1 rounds of: codes by GPTQ on a candidate (s, z) (round 1: the per-row shrink
 *      of the min/max range with the least output error, its RTN codes, then least squares;
 *      later rounds: the current (s, z)); then (s, z) by least squares on the current codes.
 * After every step a row takes the candidate only where its objective is strictly lower, so
 * the objective never increases; a round in which no row improved ends the loop. The scale
 * and zero are rounded to half (f16) before each comparison, so every objective is that of
 * weights dq2 can store exactly.
 *
 * Not here: the paper's second stage (training the float parameters and the norms of a whole
 * block by Adam on the block's output) and its "train" rounding (projected gradient on the
 * relaxed codes); with round_fn "gptq" its code skips the relaxation too.
 *
 * The objective uses the damped H (H + percdamp * mean(diag H) * I), as the paper's code does;
 * a column with H_ii == 0 (never activated) gets H_ii = 1 first, as GPTQ does.
 *
 * Deterministic: rows are processed in fixed chunks of 64, each on its own (every step is per
 * row), so any thread count gives the same bytes.
 */
#ifndef SQZ_QUANT_DECOUPLEQ_H
#define SQZ_QUANT_DECOUPLEQ_H

#include <stdint.h>

#include "core/ctx.h"
#include "formats/types.h"

typedef struct sqz_dq_opts {
    int group;        /* weights per (scale, zero) along a row (paper, 2-bit Llama: 64) */
    int iters;        /* the paper's max_iter_num (1: GPTQ on the min/max grid only; run_llama.sh:
                       * 4 = three rounds of codes + scale/zero after it); 1..32 */
    double percdamp;  /* damping, fraction of mean(diag H) added to diag H (paper: 0.01); >= 0 */
    int act_order;    /* GPTQ columns by descending diag H (paper's Llama runs: on) */
    int grid;         /* round 1's range shrinks p = 1 - i / grid for i < maxshrink * grid
                       * (paper: 200; default 20 - see decoupleq.c); >= 1 */
    double maxshrink; /* (paper: 0.8) in (0, 1] */
    int threads;      /* <= 0: ctx's thread count (1 without a ctx) */
} sqz_dq_opts;

/* group 64, iters 4, percdamp 0.01, act_order 1, grid 20, maxshrink 0.8, threads 0. */
sqz_dq_opts sqz_dq_default_opts(void);

enum { SQZ_DQ_MAX_STEPS = 2 + 2 * 31 };

/* The objective sum over rows of (w - Q)^T H_damped (w - Q) after each step: [0] the RTN
 * init, [1] GPTQ on its grid, then per round the code step and the scale/zero step (steps
 * after an early end repeat the final value). */
typedef struct sqz_dq_stats {
    int n_steps; /* 2 + 2 * (iters - 1) */
    double objective[SQZ_DQ_MAX_STEPS];
    int rounds_run; /* rounds before the loop ended (the longest over row chunks) */
} sqz_dq_stats;

/* decoupleQ on W [rows x cols] (row-major f32) with Hessian H [cols x cols] (row-major f64,
 * symmetric, both triangles read). Outputs (each may be NULL): codes [rows x cols] in 0..3,
 * scale and zero [rows x cols / group] (each exactly a half-precision value), deq [rows x cols]
 * = scale * (float)code + zero in f32 (as dq2's to_float computes it), stats.
 *
 * Errors (message on ctx): SQZ_ERR_ARG for NULL W or H, rows < 1, cols not a positive multiple
 * of group, bad options, non-finite W or H, H not positive definite after damping, or a scale
 * / zero beyond half precision's range; SQZ_ERR_NOMEM. */
sqz_status sqz_decoupleq(sqz_ctx *ctx, const float *W, int64_t rows, int64_t cols,
                         const double *H, const sqz_dq_opts *opts, uint8_t *codes, float *scale,
                         float *zero, float *deq, sqz_dq_stats *stats);

/* The same into dq2 rows (out: rows * sqz_type_row_size(SQZ_TYPE_DQ2, cols) bytes); opts'
 * group must be 64 (NULL: the defaults). */
sqz_status sqz_decoupleq_dq2(sqz_ctx *ctx, const float *W, int64_t rows, int64_t cols,
                             const double *H, const sqz_dq_opts *opts, void *out, float *deq,
                             sqz_dq_stats *stats);

/* The closed-form scale/zero step on one row (exposed for tests): the least-squares s, z
 * [cols / group each] for fixed codes q and weights w under H (used as given: no damping).
 * Returns 0, or -1 when the normal equations stay singular after damping (s, z untouched). */
int sqz_dq_fit_scale_zero(const double *H, int64_t cols, int group, const float *w,
                          const uint8_t *q, double *s, double *z);

#endif
