/* prune_ref.h - what the pruning tests share (test_prune.c, test_prune_gptq.c): xorshift64
 * random numbers (the including file defines PRUNE_REF_SEED first: each test keeps its own
 * sequence), calibration-like Hessians, the rank-counting reference of "the n smallest", and
 * the output error ||(W - P) X||^2 a pruning leaves. */
#ifndef SQZ_TESTS_PRUNE_REF_H
#define SQZ_TESTS_PRUNE_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

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
