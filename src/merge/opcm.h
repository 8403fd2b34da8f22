/* opcm.h - OPCM continual merging (Tang et al. 2025, "Merging Models on the Fly Without
 * Retraining: A Sequential Approach to Scalable Continual Model Merging", arXiv 2501.09522).
 *
 * Models arrive one at a time. The running merge keeps base + Delta (Delta: the merged task
 * vector), a scale lambda and the sum of the task vectors' norms; nothing else, so memory does
 * not grow with the number of models. Model 1: Delta = tau_1, lambda = 1. Model t
 * (tau_t = x_t - base):
 *   - each 2-D matrix: Delta = U S V^T (SVD), r = the number of leading singular values whose
 *     cumulative share of sum(S) is <= alpha; tau_t is written in that basis, P = U^T tau_t V,
 *     and its entries P[:r, :r] (the merge's dominant subspace) and P[i, i] (every singular
 *     direction's own component) are zeroed; tau_t' = U P V^T;
 *     vectors (norms): tau_t' = tau_t;
 *   - U_t = lambda_{t-1} Delta + tau_t' over every tensor; lambda_t = ||U_t|| / mean_t ||tau||
 *     (norms over the whole model); Delta_new = U_t / lambda_t, i.e. the merged task vector's
 *     norm is the mean of the task vectors' norms.
 * The driver (continual.c) keeps the state and does the passes; this file is the per-matrix
 * projection and the table row. */
#ifndef SQZ_MERGE_OPCM_H
#define SQZ_MERGE_OPCM_H

#include "merge/method.h"

/* r for singular values s[0..k) (descending) and alpha: the count of leading values whose
 * cumulative sum is <= alpha * sum(s) (0 when sum(s) is 0). */
int merge_opcm_split_rank(const double *s, int k, double alpha);

/* tau[rows x cols] (row-major) <- tau' for the running merged task vector delta (same shape),
 * by a thin SVD (LAPACK dgesdd) and three products with its k = min(rows, cols) vectors.
 * Errors name `name`. */
sqz_status merge_opcm_project(sqz_ctx *ctx, const char *name, const float *delta, float *tau,
                              int64_t rows, int64_t cols, double alpha);
/* The plain reference: full SVD (dgesvd, U rows x rows, V cols x cols), P = U^T tau V formed
 * whole, entries zeroed, U P V^T, all in loops. For tests (small matrices). */
sqz_status merge_opcm_project_ref(sqz_ctx *ctx, const char *name, const float *delta, float *tau,
                                  int64_t rows, int64_t cols, double alpha);

#endif
