/* hessian.h - the steps GPTQ (gptq.c) and decoupleQ (decoupleq.c) both take with a
 * calibration Hessian H = X^T X [n x n] (f64, row-major, symmetric): the act-order
 * permutation, the permuted copy, and the upper Cholesky factor of its inverse. */
#ifndef SQZ_QUANT_HESSIAN_H
#define SQZ_QUANT_HESSIAN_H
#include <stdint.h>

/* Act-order: positions sorted by descending diag(H) (merge sort, stable: ties keep index
 * order, so the permutation is deterministic). tmp: n scratch entries. */
void sqz_hessian_act_order(const double *H, int64_t n, int64_t *perm, int64_t *tmp);

/* Hp[i][k] = H[perm[i]][perm[k]]. */
void sqz_hessian_permute(const double *H, int64_t n, const int64_t *perm, double *Hp);

/* In place: H -> U, the upper Cholesky factor of H^-1 (H^-1 = U^T U), by LAPACK dpotrf,
 * dpotri, dpotrf, all in double (a large f32 Cholesky of an ill-conditioned Hessian loses most
 * of its digits). Only U's upper triangle (k >= i) is meaningful afterwards. Returns LAPACK's
 * info: 0, or > 0 when H is not positive definite. */
int sqz_hessian_inverse_factor(double *H, int n);

#endif
