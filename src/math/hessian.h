/* hessian.h - the steps GPTQ (gptq.c) and decoupleQ (decoupleq.c) both take with a
 * calibration Hessian H = X^T X [n x n] (f64, row-major, symmetric): dead inputs, damping, the
 * act-order permutation, the permuted copy, and the upper Cholesky factor of its inverse - one
 * home for the preparation both solvers start from (sqz_hessian_prepare). */
#ifndef SQZ_MATH_HESSIAN_H
#define SQZ_MATH_HESSIAN_H
#include <stdint.h>

/* Act-order: positions sorted by descending diag(H) (merge sort, stable: ties keep index
 * order, so the permutation is deterministic). tmp: n scratch entries. */
void sqz_hessian_act_order(const double *H, int64_t n, int64_t *perm, int64_t *tmp);

/* Hp[i][k] = H[perm[i]][perm[k]]. */
void sqz_hessian_permute(const double *H, int64_t n, const int64_t *perm, double *Hp);

/* In place: H -> U, the upper Cholesky factor of H^-1 (H^-1 = U^T U), by LAPACK dpotrf of the
 * order-reversed H and dtrtri (hessian.c says how), in double (a large f32 Cholesky of an
 * ill-conditioned Hessian loses most of its digits). Only U's upper triangle (k >= i) is
 * meaningful afterwards. Returns LAPACK's info: 0, or > 0 when H is not positive definite. */
int sqz_hessian_inverse_factor(double *H, int n);

/* Dead inputs (H_ii == 0, never activated) get H_ii = 1, which keeps H invertible (dead[i] = 1
 * where dead is not NULL). Returns the sum of the diagonal afterwards, in index order (the
 * caller turns it into its damping: GPTQ and decoupleQ round percdamp * mean differently). */
double sqz_hessian_fix_dead(double *H, int64_t n, uint8_t *dead);

/* H_ii += damp; perm = the act-order permutation (act_order) or the identity; Hp = H permuted;
 * U [n x n] = the f32 upper Cholesky factor of Hp^-1 (zeros below the diagonal). H keeps its
 * damped values. tmp: n scratch entries. Returns LAPACK's info (0: fine; > 0: Hp is not
 * positive definite even damped, and U is not written). */
int sqz_hessian_prepare(double *H, int64_t n, double damp, int act_order, int64_t *perm, int64_t *tmp,
                        double *Hp, float *U);

#endif
