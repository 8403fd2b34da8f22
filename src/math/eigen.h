/* eigen.h - the one symmetric eigen-solver (LAPACK dsyevd): the KV policies' PCA bases (kv/proj.c,
 * kv/xkv.c) use it. */
#ifndef SQZ_MATH_EIGEN_H
#define SQZ_MATH_EIGEN_H

/* The r eigenvectors of the symmetric n x n matrix a (destroyed) with the largest eigenvalues,
 * as rows of vecs [r][n], by decreasing eigenvalue (vals[r] if not NULL). Each vector's sign is
 * fixed (its largest-magnitude entry positive) so results are reproducible. Returns 0 on
 * success, -1 without memory or when LAPACK fails. */
int sqz_eigen_top(double *a, int n, int r, float *vecs, double *vals);

#endif
