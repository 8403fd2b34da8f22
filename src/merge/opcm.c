/* opcm.c - OPCM's per-matrix projection (see opcm.h) and its row of the table; the continual
 * driver that keeps the running merge is continual.c.
 *
 * Row-major matrices are read by LAPACK (column-major) as their transposes: the SVD of
 * D^T (cols x rows) is V S U^T, so LAPACK's "U" is our V (column j = v_j, i.e. row j of a
 * row-major k x cols array is v_j) and its "VT" is our U^T (a row-major rows x k array that is
 * U itself). Arithmetic in double. */
#include "merge/opcm.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK's Fortran interface (Debian's OpenBLAS exports it; see math/hessian.c). */
extern void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
                    double *u, const int *ldu, double *vt, const int *ldvt, double *work,
                    const int *lwork, int *iwork, int *info, size_t jobz_len);
extern void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
                    const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
                    double *work, const int *lwork, int *info, size_t jobu_len, size_t jobvt_len);

int merge_opcm_split_rank(const double *s, int k, double alpha) {
    double sum = 0;
    for (int i = 0; i < k; i++) sum += s[i];
    if (!(sum > 0)) return 0;
    double c = 0;
    for (int i = 0; i < k; i++) {
        c += s[i];
        if (c / sum > alpha) return i;
    }
    return 0; /* never above alpha (alpha >= 1): as the paper's argmax of all-false, 0 */
}

static sqz_status oom(sqz_ctx *ctx, const char *name) {
    return sqz_fail(ctx, SQZ_ERR_NOMEM, "opcm: out of memory on %s", name);
}

static sqz_status too_big(sqz_ctx *ctx, const char *name) {
    return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "opcm: %s: a matrix of 2^31 values or more", name);
}

sqz_status merge_opcm_project(sqz_ctx *ctx, const char *name, const float *delta, float *tau,
                              int64_t rows, int64_t cols, double alpha) {
    if (rows * cols >= ((int64_t)1 << 31)) return too_big(ctx, name);
    const int m = (int)rows, n = (int)cols, k = m < n ? m : n;
    double *a = malloc((size_t)m * n * sizeof *a), *t = malloc((size_t)m * n * sizeof *t);
    double *uk = malloc((size_t)m * k * sizeof *uk), *vt = malloc((size_t)k * n * sizeof *vt);
    double *s = malloc((size_t)k * sizeof *s), *y = malloc((size_t)m * k * sizeof *y);
    double *c = malloc((size_t)k * k * sizeof *c), *work = NULL;
    int *iwork = malloc((size_t)8 * k * sizeof *iwork);
    sqz_status st = SQZ_OK;
    if (!a || !t || !uk || !vt || !s || !y || !c || !iwork) {
        st = oom(ctx, name);
        goto done;
    }
    for (int64_t j = 0; j < (int64_t)m * n; j++) a[j] = delta[j], t[j] = tau[j];
    /* SVD of D^T (n x m column-major): LAPACK's U (n x k) is V^T row-major, VT (k x m) is U */
    int info = 0, lwork = -1;
    double q = 0;
    dgesdd_("S", &n, &m, a, &n, s, vt, &n, uk, &k, &q, &lwork, iwork, &info, 1);
    lwork = (int)q + 1;
    if (info || !(work = malloc((size_t)lwork * sizeof *work))) {
        st = info ? sqz_fail(ctx, SQZ_ERR_INTERNAL, "opcm: %s: SVD workspace query failed (LAPACK %d)", name, info)
                  : oom(ctx, name);
        goto done;
    }
    dgesdd_("S", &n, &m, a, &n, s, vt, &n, uk, &k, work, &lwork, iwork, &info, 1);
    if (info) {
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "opcm: %s: the SVD did not converge (LAPACK %d; NaN or Inf in the weights?)", name, info);
        goto done;
    }
    const int r = merge_opcm_split_rank(s, k, alpha);
    /* C = U^T tau V (k x k): y = tau V (m x k), C = U^T y */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0, t, n, vt, n, 0.0, y, k);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, k, m, 1.0, uk, k, y, k, 0.0, c, k);
    /* B: the entries removed - the r x r block and the diagonal */
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++)
            if (!((i < r && j < r) || i == j)) c[(size_t)i * k + j] = 0;
    /* tau' = tau - U B V^T (U P V^T with P = C except the removed entries, U, V complete) */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, k, 1.0, uk, k, c, k, 0.0, y, k);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, -1.0, y, k, vt, n, 1.0, t, n);
    for (int64_t j = 0; j < (int64_t)m * n; j++) tau[j] = (float)t[j];
done:
    free(a), free(t), free(uk), free(vt), free(s), free(y), free(c), free(work), free(iwork);
    return st;
}

sqz_status merge_opcm_project_ref(sqz_ctx *ctx, const char *name, const float *delta, float *tau,
                                  int64_t rows, int64_t cols, double alpha) {
    if (rows * cols >= ((int64_t)1 << 31)) return too_big(ctx, name);
    const int m = (int)rows, n = (int)cols, k = m < n ? m : n;
    double *a = malloc((size_t)m * n * sizeof *a), *u = malloc((size_t)m * m * sizeof *u);
    double *vt = malloc((size_t)n * n * sizeof *vt), *s = malloc((size_t)k * sizeof *s);
    double *p = malloc((size_t)m * n * sizeof *p), *work = NULL;
    sqz_status st = SQZ_OK;
    if (!a || !u || !vt || !s || !p) {
        st = oom(ctx, name);
        goto done;
    }
    for (int64_t j = 0; j < (int64_t)m * n; j++) a[j] = delta[j];
    /* full SVD of D^T: LAPACK's U (n x n) is V^T row-major, its VT (m x m) is U row-major */
    int info = 0, lwork = -1;
    double q = 0;
    dgesvd_("A", "A", &n, &m, a, &n, s, vt, &n, u, &m, &q, &lwork, &info, 1, 1);
    lwork = (int)q + 1;
    if (info || !(work = malloc((size_t)lwork * sizeof *work))) {
        st = info ? sqz_fail(ctx, SQZ_ERR_FORMAT, "opcm: %s: SVD failed (LAPACK %d)", name, info) : oom(ctx, name);
        goto done;
    }
    dgesvd_("A", "A", &n, &m, a, &n, s, vt, &n, u, &m, work, &lwork, &info, 1, 1);
    if (info) {
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "opcm: %s: SVD failed (LAPACK %d)", name, info);
        goto done;
    }
    const int r = merge_opcm_split_rank(s, k, alpha);
    /* P[a][b] = sum_ij U[i][a] tau[i][j] V[j][b], V[j][b] = vt[b][j] */
    for (int pa = 0; pa < m; pa++)
        for (int pb = 0; pb < n; pb++) {
            double acc = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) acc += u[(size_t)i * m + pa] * tau[(size_t)i * n + j] * vt[(size_t)pb * n + j];
            p[(size_t)pa * n + pb] = acc;
        }
    for (int i = 0; i < k; i++) p[(size_t)i * n + i] = 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) p[(size_t)i * n + j] = 0;
    /* tau' = U P V^T */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int pa = 0; pa < m; pa++)
                for (int pb = 0; pb < n; pb++) acc += u[(size_t)i * m + pa] * p[(size_t)pa * n + pb] * vt[(size_t)pb * n + j];
            tau[(size_t)i * n + j] = (float)acc;
        }
done:
    free(a), free(u), free(vt), free(s), free(p), free(work);
    return st;
}

const sqz_merge_method sqz_merge_opcm = {
    .name = "opcm",
    .help = "continual: models merged one at a time in the config's order, each task vector projected "
            "away from the merge's dominant singular subspace, then rescaled; key alpha; "
            "sqz merge --continual STATE MODEL adds one",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_ALPHA),
    .defaults = { [SQZ_MP_ALPHA] = 0.5 },
    .continual = 1,
};
