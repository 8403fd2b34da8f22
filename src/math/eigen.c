/* eigen.c - the leading eigenvectors of a symmetric matrix (math/eigen.h), by LAPACK's dsyevd,
 * which libopenblas exports. */
#include "math/eigen.h"

#include <math.h>
#include <stdlib.h>

/* LAPACK's symmetric eigensolver (column-major; the matrix is symmetric so the layout does not
 * matter). Eigenvalues come back ascending, eigenvector j in a[j*n .. j*n+n). */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info);

/* The r eigenvectors of the symmetric n x n matrix a (destroyed) with the largest eigenvalues,
 * as rows of vecs [r][n], by decreasing eigenvalue (vals[r] if not NULL). Each vector's sign is
 * fixed (its largest-magnitude entry positive) so results are reproducible. Returns 0 on
 * success. */
int sqz_eigen_top(double *a, int n, int r, float *vecs, double *vals) {
    double *w = malloc((size_t)n * sizeof *w), wq;
    int lwork = -1, liwork = -1, iwq, info = 0;
    if (!w) return -1;
    dsyevd_("V", "U", &n, a, &n, w, &wq, &lwork, &iwq, &liwork, &info);
    lwork = (int)wq;
    liwork = iwq;
    double *work = malloc((size_t)lwork * sizeof *work);
    int *iwork = malloc((size_t)liwork * sizeof *iwork);
    if (!work || !iwork || info) info = -1;
    else dsyevd_("V", "U", &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
    if (!info)
        for (int j = 0; j < r; j++) {
            const double *e = a + (size_t)(n - 1 - j) * n;
            int big = 0;
            for (int i = 1; i < n; i++)
                if (fabs(e[i]) > fabs(e[big])) big = i;
            const double sg = e[big] < 0 ? -1.0 : 1.0;
            for (int i = 0; i < n; i++) vecs[(size_t)j * n + i] = (float)(sg * e[i]);
            if (vals) vals[j] = w[n - 1 - j];
        }
    free(w);
    free(work);
    free(iwork);
    return info;
}
