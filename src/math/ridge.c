/* ridge.c - damped normal equations by Cholesky (ridge.h): G is copied before each try so a
 * failed factorization can be retried with more damping; the right-hand sides, rows of B, are
 * LAPACK's column-major n x k matrix as they lie. */
#include "math/ridge.h"

#include <stdlib.h>
#include <string.h>

extern void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b,
                   const int *ldb, int *info, size_t uplo_len);

int sqz_ridge_solve(double *G, int n, double *B, int k, const float *W0, double lambda, double *used) {
    if (n <= 0 || k <= 0) return 0;
    const size_t nn = (size_t)n * n, nb = (size_t)n * k;
    double *a = malloc(nn * sizeof *a), *b = malloc(nb * sizeof *b);
    if (!a || !b) {
        free(a), free(b);
        return -1;
    }
    double mean = 0;
    for (int i = 0; i < n; i++) mean += G[(size_t)i * n + i];
    mean = mean > 0 ? mean / n : 1;
    int info = 1;
    for (int tries = 0; tries <= 8 && info != 0; tries++) {
        memcpy(a, G, nn * sizeof *a);
        memcpy(b, B, nb * sizeof *b);
        for (int i = 0; i < n; i++) a[(size_t)i * n + i] += lambda;
        for (size_t j = 0; W0 && j < nb; j++) b[j] += lambda * W0[j];
        dposv_("L", &n, &k, a, &n, b, &n, &info, 1);
        if (info != 0) lambda = lambda < 1e-6 * mean ? 1e-6 * mean : lambda * 10;
    }
    if (info == 0) {
        memcpy(B, b, nb * sizeof *b);
        memcpy(G, a, nn * sizeof *a);
        if (used) *used = lambda;
    }
    free(a), free(b);
    return info == 0 ? 0 : 1;
}
