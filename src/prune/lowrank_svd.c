/* lowrank_svd.c - truncated SVD of a weight matrix, plain or whitened by the calibration
 * activations (prune/lowrank.h), on LAPACK's dgesdd and dpotrf (which libopenblas exports),
 * in f64.
 *
 * Layout: LAPACK is column-major, the weights row-major. A row-major m x n matrix is the
 * column-major n x m matrix of its transpose, so dgesdd on it returns W^T = V S U^T: its "U"
 * (n x k column-major) is V^T as a row-major k x n array, its "VT" (k x m column-major) is U
 * as a row-major m x k array. dpotrf with uplo 'U' on the symmetric H gives H = R^T R with R
 * upper column-major, i.e. a lower row-major L = R^T with H = L L^T. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/lowrank.h"

extern void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s, double *u,
                    const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork, int *iwork,
                    int *info);
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);

int64_t sqz_lr_max_rank(int64_t m, int64_t n) {
    if (m <= 0 || n <= 0) return 0;
    int64_t r = m * n / (m + n);
    while (r > 0 && r * (m + n) >= m * n) r--;
    return r;
}

int64_t sqz_lr_energy_rank(const double *s, int64_t k, double energy) {
    double total = 0, acc = 0;
    for (int64_t i = 0; i < k; i++) total += s[i] * s[i];
    if (!(total > 0)) return 1;
    for (int64_t i = 0; i < k; i++) {
        acc += s[i] * s[i];
        if (acc >= energy * total * (1 - 1e-12)) return i + 1;
    }
    return k;
}

/* dgesdd on the row-major m x n matrix a (destroyed): s[k], and with jobz "S" u [m][k] and
 * vt [k][n] (row-major). Returns LAPACK's info (-1: no memory). */
static int gesdd(const char *jobz, double *a, int m, int n, double *s, double *u, double *vt) {
    const int k = m < n ? m : n;
    int lwork = -1, info = 0, one = 1;
    double wq;
    int *iwork = malloc((size_t)8 * k * sizeof *iwork);
    if (!iwork) return -1;
    const int ldu = jobz[0] == 'N' ? 1 : n, ldvt = jobz[0] == 'N' ? 1 : k;
    /* column-major n x m (= a^T): "U" <- vt, "VT" <- u */
    dgesdd_(jobz, &n, &m, a, &n, s, vt ? vt : &wq, jobz[0] == 'N' ? &one : &ldu, u ? u : &wq,
            jobz[0] == 'N' ? &one : &ldvt, &wq, &lwork, iwork, &info);
    if (info) {
        free(iwork);
        return info;
    }
    lwork = (int)wq + 1;
    double *work = malloc((size_t)lwork * sizeof *work);
    if (!work) {
        free(iwork);
        return -1;
    }
    double dummy = 0;
    dgesdd_(jobz, &n, &m, a, &n, s, vt ? vt : &dummy, jobz[0] == 'N' ? &one : &ldu, u ? u : &dummy,
            jobz[0] == 'N' ? &one : &ldvt, work, &lwork, iwork, &info);
    free(work);
    free(iwork);
    return info;
}

sqz_status sqz_lr_singular_values(sqz_ctx *ctx, const float *W, int64_t m, int64_t n, double *s) {
    double *a = malloc((size_t)(m * n) * sizeof *a);
    if (!a) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for an SVD of %lld x %lld", (long long)m, (long long)n);
    for (int64_t i = 0; i < m * n; i++) a[i] = W[i];
    const int info = gesdd("N", a, (int)m, (int)n, s, NULL, NULL);
    free(a);
    if (info) return sqz_fail(ctx, info < 0 ? SQZ_ERR_NOMEM : SQZ_ERR_RANGE, "SVD failed (LAPACK dgesdd info %d)", info);
    return SQZ_OK;
}

void sqz_lr_svd_free(sqz_lr_svd *d) {
    if (!d) return;
    free(d->u);
    free(d->s);
    free(d->vt);
    free(d->l);
    memset(d, 0, sizeof *d);
}

/* L, lower row-major, with L L^T = H + damp * mean(diag H) * I (the damping raised 10-fold
 * while dpotrf fails, three times). 0, or -1. */
static int cholesky(const double *H, int64_t n, double damp, double *L) {
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += H[i * n + i];
    mean = mean > 0 ? mean / (double)n : 1;
    for (int tries = 0; tries < 4; tries++, damp = damp > 0 ? damp * 10 : 1e-6) {
        memcpy(L, H, (size_t)(n * n) * sizeof *L);
        for (int64_t i = 0; i < n; i++) L[i * n + i] += damp * mean;
        int info = 0, nn = (int)n;
        dpotrf_("U", &nn, L, &nn, &info);
        if (info == 0) {
            for (int64_t i = 0; i < n; i++) /* the row-major strictly upper part is H's: clear it */
                for (int64_t j = i + 1; j < n; j++) L[i * n + j] = 0;
            return 0;
        }
    }
    return -1;
}

sqz_status sqz_lr_svd_compute(sqz_ctx *ctx, const float *W, int64_t m, int64_t n, const double *H, double damp,
                              sqz_lr_svd *d) {
    return sqz_lr_svd_compute_ex(ctx, W, m, n, H, damp, 0, d);
}

/* ASVD's scaling: L = diag(rms_j^alpha), rms_j = sqrt(H_jj / mean diag) (the mean only sets
 * the scale, which cancels in B A). */
static void diag_scale(const double *H, int64_t n, double alpha, double *L) {
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += H[i * n + i];
    mean = mean > 0 ? mean / (double)n : 1;
    memset(L, 0, (size_t)(n * n) * sizeof *L);
    for (int64_t i = 0; i < n; i++) {
        const double v = H[i * n + i] / mean;
        L[i * n + i] = pow(v > 1e-6 ? v : 1e-6, alpha / 2);
    }
}

sqz_status sqz_lr_svd_compute_ex(sqz_ctx *ctx, const float *W, int64_t m, int64_t n, const double *H, double damp,
                                 double alpha, sqz_lr_svd *d) {
    memset(d, 0, sizeof *d);
    const int64_t k = m < n ? m : n;
    d->m = m, d->n = n, d->k = k;
    double *a = malloc((size_t)(m * n) * sizeof *a);
    d->u = malloc((size_t)(m * k) * sizeof *d->u);
    d->s = malloc((size_t)k * sizeof *d->s);
    d->vt = malloc((size_t)(k * n) * sizeof *d->vt);
    if (H) d->l = malloc((size_t)(n * n) * sizeof *d->l);
    if (!a || !d->u || !d->s || !d->vt || (H && !d->l)) {
        free(a);
        sqz_lr_svd_free(d);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for an SVD of %lld x %lld", (long long)m, (long long)n);
    }
    for (int64_t i = 0; i < m * n; i++) a[i] = W[i];
    if (H) {
        if (alpha > 0) diag_scale(H, n, alpha, d->l);
        else if (cholesky(H, n, damp, d->l)) {
            free(a);
            sqz_lr_svd_free(d);
            return sqz_fail(ctx, SQZ_ERR_RANGE, "the calibration Gram matrix (%lld x %lld) is not positive definite",
                            (long long)n, (long long)n);
        }
        /* a = W L */
        cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, (int)m, (int)n, 1.0, d->l,
                    (int)n, a, (int)n);
    }
    const int info = gesdd("S", a, (int)m, (int)n, d->s, d->u, d->vt);
    free(a);
    if (info) {
        sqz_lr_svd_free(d);
        return sqz_fail(ctx, info < 0 ? SQZ_ERR_NOMEM : SQZ_ERR_RANGE, "SVD failed (LAPACK dgesdd info %d)", info);
    }
    return SQZ_OK;
}

void sqz_lr_svd_factors(const sqz_lr_svd *d, int64_t r, float *a, float *b) {
    const int64_t m = d->m, n = d->n, k = d->k;
    double *at = malloc((size_t)(r * n) * sizeof *at);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < r; j++) b[i * r + j] = (float)(d->u[i * k + j] * sqrt(d->s[j]));
    if (!at) { /* no room for the f64 product: f32 alone (plain only reaches here on NOMEM) */
        for (int64_t j = 0; j < r * n; j++) a[j] = NAN;
        return;
    }
    for (int64_t j = 0; j < r; j++)
        for (int64_t c = 0; c < n; c++) at[j * n + c] = sqrt(d->s[j]) * d->vt[j * n + c];
    if (d->l) /* A = A' L^-1: solve A L = A' */
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, (int)r, (int)n, 1.0, d->l,
                    (int)n, at, (int)n);
    for (int64_t j = 0; j < r * n; j++) a[j] = (float)at[j];
    free(at);
}
