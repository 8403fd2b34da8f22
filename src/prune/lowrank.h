/* lowrank.h - a matrix's truncated SVD, plain or whitened by its input's second moment, and
 * the factors of a rank (lowrank_svd.c); the driver that factors a model is lowrank.c
 * (include/sqz.h: sqz_lowrank).
 *
 * Dimensions: W [m x n] row-major (m = rows = output features, n = cols = input features),
 * H [n x n] = sum over calibration tokens of x^T x at W's input (f64, both triangles). k =
 * min(m, n). A rank-r factorization W ~ B A (B [m x r], A [r x n]) stores r (m + n) numbers;
 * it is smaller than W only for r < m n / (m + n).
 *
 * Plain (H = NULL): W = U S V^T, B = U_r S_r^1/2, A = S_r^1/2 V_r^T: the best rank r in the
 * Frobenius norm (Eckart-Young).
 * Whitened (SVD-LLM, Wang et al. 2024, "truncation-aware data whitening"): H + damp I = L L^T
 * (Cholesky, damp = `damp` x mean(diag H)), W L = U S V^T, B = U_r S_r^1/2, A = S_r^1/2 V_r^T
 * L^-1: the rank r minimizing ||(W - B A) X||_F over the calibration tokens X, whose error is
 * exactly the tail sqrt(sum_{i>r} s_i^2) of W L's singular values. */
#ifndef SQZ_PRUNE_LOWRANK_H
#define SQZ_PRUNE_LOWRANK_H

#include <stdint.h>

#include "core/ctx.h"

typedef struct sqz_lr_svd {
    int64_t m, n, k;
    double *u;  /* [m][k] */
    double *s;  /* [k], decreasing */
    double *vt; /* [k][n] */
    double *l;  /* [n][n] the lower Cholesky factor of the damped H (row-major), NULL: plain */
} sqz_lr_svd;

/* The SVD of W (H NULL) or of W L (H given; damp >= 0). SQZ_ERR_NOMEM, SQZ_ERR_RANGE when
 * LAPACK fails (H not positive definite even after raising the damping 1000-fold). */
sqz_status sqz_lr_svd_compute(sqz_ctx *ctx, const float *W, int64_t m, int64_t n, const double *H, double damp,
                              sqz_lr_svd *out);
/* The same with ASVD's diagonal scaling instead of the Cholesky factor when alpha > 0 (Yuan et
 * al. 2023, "ASVD: Activation-aware Singular Value Decomposition"): L = diag(rms(x_j)^alpha),
 * rms from H's diagonal; B A then minimizes ||(W - B A) L||, not the full output error. */
sqz_status sqz_lr_svd_compute_ex(sqz_ctx *ctx, const float *W, int64_t m, int64_t n, const double *H, double damp,
                                 double alpha, sqz_lr_svd *out);
void sqz_lr_svd_free(sqz_lr_svd *d);

/* The factors of rank r (1 <= r <= k): a [r][n], b [m][r] (f32, row-major). */
void sqz_lr_svd_factors(const sqz_lr_svd *d, int64_t r, float *a, float *b);

/* The largest rank whose factors are smaller than the matrix: max r with r (m + n) < m n. */
int64_t sqz_lr_max_rank(int64_t m, int64_t n);

/* The smallest r whose leading squared singular values hold `energy` (in (0, 1]) of the sum. */
int64_t sqz_lr_energy_rank(const double *s, int64_t k, double energy);

/* Only the singular values (of W, or of W L), s[min(m, n)]: cheaper than the full SVD. */
sqz_status sqz_lr_singular_values(sqz_ctx *ctx, const float *W, int64_t m, int64_t n, double *s);

#endif
