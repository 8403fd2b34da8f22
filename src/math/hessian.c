/* hessian.c - see hessian.h. */
#include "math/hessian.h"

#include <stddef.h>
#include <string.h>

/* LAPACK (Fortran interface; Debian's OpenBLAS exports it, the LAPACKE wrappers live in a
 * separate library the Makefile does not link). Column-major: our row-major symmetric matrix
 * is read as its transpose, so Fortran 'L' is our upper triangle. The trailing size_t is the
 * hidden length of the character argument (gfortran ABI); harmless where unused. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len, size_t diag_len);

void sqz_hessian_act_order(const double *H, int64_t n, int64_t *perm, int64_t *tmp) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            const int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) {
                const double ka = H[perm[a] * n + perm[a]], kb = H[perm[b] * n + perm[b]];
                tmp[k++] = kb > ka ? perm[b++] : perm[a++];
            }
            while (a < mid) tmp[k++] = perm[a++];
            while (b < hi) tmp[k++] = perm[b++];
        }
        memcpy(perm, tmp, (size_t)n * sizeof *perm);
    }
}

void sqz_hessian_permute(const double *H, int64_t n, const int64_t *perm, double *Hp) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++) Hp[i * n + k] = H[perm[i] * n + perm[k]];
}

/* In our row-major view, dpotrf("L") leaves the upper M with A = M^T M, and dtrtri("L") turns
 * an upper M into M^-1. With J the order reversal, J H J = M^T M gives H = N^T N for the lower
 * N = J M J, so H^-1 = N^-1 N^-T = U^T U with U = N^-T = J M^-T J, upper: one Cholesky and one
 * triangular inverse (2n^3/3 flops; factoring the explicit inverse again took twice that).
 * OpenBLAS stays single-threaded here as everywhere in sqz (core/ctx.c): its threaded dpotrf
 * rounds differently with each thread count, and a quantized file must not depend on -t. */
int sqz_hessian_inverse_factor(double *H, int n) {
    const size_t N = (size_t)n;
    for (size_t i = 0; i < N / 2; i++) /* H <- J H J: reverse the rows, then each row */
        for (size_t k = 0; k < N; k++) {
            const double t = H[i * N + k];
            H[i * N + k] = H[(N - 1 - i) * N + k];
            H[(N - 1 - i) * N + k] = t;
        }
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < N / 2; k++) {
            const double t = H[i * N + k];
            H[i * N + k] = H[i * N + N - 1 - k];
            H[i * N + N - 1 - k] = t;
        }
    int info = 0;
    dpotrf_("L", &n, H, &n, &info, 1);
    if (info == 0) dtrtri_("L", "N", &n, H, &n, &info, 1, 1);
    if (info != 0) return info;
    /* U[i][k] = (M^-1)[n-1-k][n-1-i] for k >= i: reverse rows and columns of the upper M^-1 and
     * transpose - in place, as the transpose about the anti-diagonal */
    for (size_t i = 0; i < N; i++)
        for (size_t k = i; k < N - 1 - i; k++) {
            double *a = &H[i * N + k], *b = &H[(N - 1 - k) * N + N - 1 - i];
            const double t = *a;
            *a = *b;
            *b = t;
        }
    return 0;
}

double sqz_hessian_fix_dead(double *H, int64_t n, uint8_t *dead) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        if (H[i * n + i] == 0) {
            H[i * n + i] = 1;
            if (dead) dead[i] = 1;
        }
        sum += H[i * n + i];
    }
    return sum;
}

int sqz_hessian_prepare(double *H, int64_t n, double damp, int act_order, int64_t *perm, int64_t *tmp,
                        double *Hp, float *U) {
    for (int64_t i = 0; i < n; i++) H[i * n + i] += damp;
    if (act_order) sqz_hessian_act_order(H, n, perm, tmp);
    else
        for (int64_t i = 0; i < n; i++) perm[i] = i;
    sqz_hessian_permute(H, n, perm, Hp);
    const int info = sqz_hessian_inverse_factor(Hp, (int)n);
    if (info != 0) return info;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++) U[i * n + k] = k >= i ? (float)Hp[i * n + k] : 0.0f;
    return 0;
}
