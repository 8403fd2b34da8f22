/* ridge.h - damped least squares through the normal equations: PLeaS's per-layer solve
 * (merge/pleas.c) min_W ||X W^T - Y||^2 + lambda ||W - W0||^2, given G = X^T X. */
#ifndef SQZ_MATH_RIDGE_H
#define SQZ_MATH_RIDGE_H

/* Solves (G + lambda I) w_r = b_r + lambda w0_r for each of the k right-hand sides b_r, rows
 * of B [k][n] (row-major; overwritten by the solutions w_r), w0_r the rows of W0 [k][n] (NULL:
 * zeros; the solution is pulled towards W0), G [n][n] symmetric (destroyed: its Cholesky
 * factor). lambda is absolute. When G + lambda I is not positive definite (a numerically
 * singular G and lambda 0), lambda is raised to 1e-6 x the mean of G's diagonal and then tenfold
 * until it is, at most 8 times; *used gets the lambda that worked (may be NULL). LAPACK dposv
 * in double. Returns 0, -1 without memory, 1 when no lambda worked. */
int sqz_ridge_solve(double *G, int n, double *B, int k, const float *W0, double lambda, double *used);

#endif
