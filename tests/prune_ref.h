/* prune_ref.h - what the pruning tests share (test_prune.c, test_prune_gptq.c): xorshift64
 * random numbers (the including file defines PRUNE_REF_SEED first: each test keeps its own
 * sequence), calibration-like Hessians, the rank-counting reference of "the n smallest", and
 * the output error ||(W - P) X||^2 a pruning leaves. */
#ifndef SQZ_TESTS_PRUNE_REF_H
#define SQZ_TESTS_PRUNE_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef PRUNE_REF_SEED
#error "define PRUNE_REF_SEED before including prune_ref.h"
#endif

static uint64_t rng = PRUNE_REF_SEED;
static double urand(void) { /* xorshift64, [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

/* Calibration-like inputs: X [T x n] with correlated columns of very different scales, H = X^T X. */
static void make_h(double *H, int n, int T, double spread) {
    double *X = malloc((size_t)T * n * sizeof *X), *sc = malloc((size_t)n * sizeof *sc);
    for (int j = 0; j < n; j++) sc[j] = exp(spread * nrand());
    for (int t = 0; t < T; t++) {
        const double common = nrand();
        for (int j = 0; j < n; j++) X[t * n + j] = sc[j] * (nrand() + 0.5 * common);
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += X[t * n + i] * X[t * n + j];
            H[i * n + j] = s;
        }
    free(X);
    free(sc);
}

/* The n_zero smallest of score[0..n) by rank counting (ties: lower index first). */
static void ref_smallest(const float *score, int n, int n_zero, uint8_t *pruned) {
    for (int i = 0; i < n; i++) {
        int rank = 0;
        for (int j = 0; j < n; j++) rank += score[j] < score[i] || (score[j] == score[i] && j < i);
        pruned[i] = rank < n_zero;
    }
}

/* The naive references' Hessian inverse and its sequential diagonal: Hi = H^-1 [n x n] by
 * Gauss-Jordan with partial pivoting on [H | I] (A: scratch of 2 n^2 doubles), and dseq[i] =
 * [H^-1]_ii once columns 0..i-1 are eliminated (SparseGPT's saliency denominator, GPTQ's d_i). */
static void ref_inverse_seq(const double *H, int n, double *A, double *Hi, double *dseq) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 2 * n; j++) A[i * 2 * n + j] = j < n ? H[i * n + j] : (j - n == i);
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(A[r * 2 * n + c]) > fabs(A[piv * 2 * n + c])) piv = r;
        for (int j = 0; j < 2 * n; j++) {
            const double t = A[c * 2 * n + j];
            A[c * 2 * n + j] = A[piv * 2 * n + j];
            A[piv * 2 * n + j] = t;
        }
        const double d = A[c * 2 * n + c];
        for (int j = 0; j < 2 * n; j++) A[c * 2 * n + j] /= d;
        for (int r = 0; r < n; r++)
            if (r != c) {
                const double f = A[r * 2 * n + c];
                for (int j = 0; j < 2 * n; j++) A[r * 2 * n + j] -= f * A[c * 2 * n + j];
            }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) Hi[i * n + j] = A[i * 2 * n + n + j];
    memcpy(A, Hi, (size_t)n * n * sizeof *A);
    for (int i = 0; i < n; i++) {
        dseq[i] = A[i * n + i];
        for (int a = i + 1; a < n; a++)
            for (int b = i + 1; b < n; b++) A[a * n + b] -= A[a * n + i] * A[i * n + b] / A[i * n + i];
    }
}

/* ||(W - P) X||^2 = sum over rows of e^T H e. */
static double out_err(const float *W, const float *P, int rows, int cols, const double *H) {
    double s = 0;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < cols; i++) {
            const double ei = (double)W[r * cols + i] - P[r * cols + i];
            if (ei == 0) continue;
            for (int j = 0; j < cols; j++) s += ei * H[i * cols + j] * ((double)W[r * cols + j] - P[r * cols + j]);
        }
    return s;
}

#endif
