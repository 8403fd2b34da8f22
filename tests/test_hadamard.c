/* test_hadamard.c - (randomized) Hadamard rotations (src/math/hadamard.c; QuaRot, Ashkboos et
 * al. 2024): orthogonality for every supported kind of size, the fast transform against the
 * explicit matrix from its definition, seeded determinism, rotation invariance of W x, inverse,
 * and unsupported sizes as errors.
 *
 * Dimensions: n = transform size = p * m (p = 2^k, m = dense Paley factor); Q [n x n] the
 * explicit matrix; W [rows x n] weights; x [n] an activation.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "math/hadamard.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rng_sym(void) { return test_frand(&rng_state); }

/* Q from the definition: ((-1)^popcount(a & a') * Hm[b][b']) * sign[j] / sqrt(n), i = a*m + b,
 * j = a'*m + b'. */
static double *explicit_q(const sqz_hadamard *h) {
    const int64_t n = h->n, m = h->m;
    double *Q = malloc((size_t)(n * n) * sizeof *Q);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            const int64_t a = i / m, b = i % m, a2 = j / m, b2 = j % m;
            double e = __builtin_popcountll((unsigned long long)(a & a2)) & 1 ? -1 : 1;
            if (m > 1) e *= h->hm[b * m + b2];
            if (h->sign) e *= h->sign[j];
            Q[i * n + j] = e / sqrt((double)n);
        }
    return Q;
}

static void test_size(sqz_ctx *ctx, int64_t n, int full) {
    sqz_hadamard h;
    sqz_status st = sqz_hadamard_random(ctx, &h, n, 1234 + (uint64_t)n);
    CHECK(st == SQZ_OK, "n = %lld (m = %lld): %s", (long long)n, (long long)h.m,
          st == SQZ_OK ? "built" : sqz_ctx_error(ctx));
    if (st != SQZ_OK) return;
    if (h.m > 1) {
        int ok = 1;
        for (int64_t i = 0; i < h.m; i++)
            for (int64_t j = 0; j < h.m; j++) {
                int s = 0;
                for (int64_t k = 0; k < h.m; k++) s += h.hm[i * h.m + k] * h.hm[j * h.m + k];
                ok &= s == (i == j ? h.m : 0) && (h.hm[i * h.m + j] == 1 || h.hm[i * h.m + j] == -1);
            }
        CHECK(ok, "n = %lld: H_%lld is a Hadamard matrix (+-1, H H^T = m I)", (long long)n, (long long)h.m);
    }
    /* the fast transform of a vector == the explicit matrix times it; the inverse undoes it */
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) x[i] = rng_sym();
    memcpy(y, x, (size_t)n * sizeof *y);
    sqz_hadamard_apply(&h, y, 1);
    double norm_x = 0, norm_y = 0;
    for (int64_t i = 0; i < n; i++) norm_x += (double)x[i] * x[i], norm_y += (double)y[i] * y[i];
    if (full) {
        double *Q = explicit_q(&h);
        double maxd = 0;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t j = 0; j < n; j++) s += Q[i * n + j] * x[j];
            maxd = fmax(maxd, fabs(s - y[i]));
        }
        CHECK(maxd < 1e-5, "n = %lld: fast transform == explicit Q x (max diff %.1e)", (long long)n, maxd);
        /* orthogonality of the matrix the transform applies: its columns Q e_j, then Q Q^T */
        double *F = malloc((size_t)(n * n) * sizeof *F), *P = malloc((size_t)(n * n) * sizeof *P);
        float *e = malloc((size_t)n * sizeof *e);
        for (int64_t j = 0; j < n; j++) {
            memset(e, 0, (size_t)n * sizeof *e);
            e[j] = 1;
            sqz_hadamard_apply(&h, e, 1);
            for (int64_t i = 0; i < n; i++) F[i * n + j] = e[i];
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0, F, (int)n,
                    F, (int)n, 0.0, P, (int)n);
        double maxo = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) maxo = fmax(maxo, fabs(P[i * n + j] - (i == j)));
        CHECK(maxo < 1e-6, "n = %lld: Q Q^T = I (max |Q Q^T - I| %.1e)", (long long)n, maxo);
        free(Q), free(F), free(P), free(e);
    } else {
        CHECK(fabs(norm_y / norm_x - 1) < 1e-5, "n = %lld: |Q x| = |x| (ratio %.8f)", (long long)n,
              norm_y / norm_x);
    }
    sqz_hadamard_apply_t(&h, y, 1);
    double maxr = 0;
    for (int64_t i = 0; i < n; i++) maxr = fmax(maxr, fabs(y[i] - x[i]));
    CHECK(maxr < 1e-5, "n = %lld: Q^T Q x = x (max diff %.1e)", (long long)n, maxr);
    free(x), free(y);
    sqz_hadamard_free(&h);
}

static void test_invariance(sqz_ctx *ctx, int64_t n) {
    const int64_t rows = 48;
    sqz_hadamard h;
    if (sqz_hadamard_random(ctx, &h, n, 7) != SQZ_OK) {
        CHECK(0, "n = %lld: %s", (long long)n, sqz_ctx_error(ctx));
        return;
    }
    float *W = malloc((size_t)(rows * n) * sizeof *W), *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < rows * n; i++) W[i] = rng_sym();
    for (int64_t i = 0; i < n; i++) x[i] = rng_sym();
    double *y = calloc((size_t)rows, sizeof *y);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < n; c++) y[r] += (double)W[r * n + c] * x[c];
    /* input side: W <- W Q^T, x <- Q x */
    float *Wr = malloc((size_t)(rows * n) * sizeof *Wr);
    memcpy(Wr, W, (size_t)(rows * n) * sizeof *Wr);
    sqz_hadamard_rows(&h, Wr, rows);
    sqz_hadamard_apply(&h, x, 1);
    double maxd = 0, scale = 0;
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < n; c++) s += (double)Wr[r * n + c] * x[c];
        maxd = fmax(maxd, fabs(s - y[r]));
        scale = fmax(scale, fabs(y[r]));
    }
    CHECK(maxd < 1e-5 * (scale + 1) * sqrt((double)n),
          "n = %lld: (W Q^T)(Q x) = W x (max diff %.1e, |y| up to %.1f)", (long long)n, maxd, scale);
    /* output side: M [n x rows] <- Q M mixes whole rows; equal to transforming each column */
    float *M = malloc((size_t)(n * rows) * sizeof *M), *col = malloc((size_t)n * sizeof *col);
    for (int64_t i = 0; i < n * rows; i++) M[i] = rng_sym();
    float *M0 = malloc((size_t)(n * rows) * sizeof *M0);
    memcpy(M0, M, (size_t)(n * rows) * sizeof *M0);
    sqz_hadamard_apply(&h, M, rows);
    int same = 1;
    for (int64_t c = 0; c < rows; c++) {
        for (int64_t i = 0; i < n; i++) col[i] = M0[i * rows + c];
        sqz_hadamard_apply(&h, col, 1);
        for (int64_t i = 0; i < n; i++) same &= col[i] == M[i * rows + c];
    }
    CHECK(same, "n = %lld: Q applied to a matrix's rows at once == column by column", (long long)n);
    sqz_hadamard_apply_t(&h, M, rows);
    double maxr = 0;
    for (int64_t i = 0; i < n * rows; i++) maxr = fmax(maxr, fabs(M[i] - M0[i]));
    CHECK(maxr < 1e-5, "n = %lld: Q^T Q M = M (max diff %.1e)", (long long)n, maxr);
    free(W), free(x), free(y), free(Wr), free(M), free(col), free(M0);
    sqz_hadamard_free(&h);
}

static void test_seed(sqz_ctx *ctx) {
    sqz_hadamard a, b, c;
    const int64_t n = 384;
    sqz_hadamard_random(ctx, &a, n, 42);
    sqz_hadamard_random(ctx, &b, n, 42);
    sqz_hadamard_random(ctx, &c, n, 43);
    CHECK(memcmp(a.sign, b.sign, (size_t)n * sizeof *a.sign) == 0, "same seed, same signs");
    int npos = 0, ndiff = 0;
    for (int64_t i = 0; i < n; i++) npos += a.sign[i] > 0, ndiff += a.sign[i] != c.sign[i];
    CHECK(ndiff > n / 4 && npos > n / 4 && npos < 3 * n / 4,
          "another seed, other signs (%d of %lld differ; %d positive)", ndiff, (long long)n, npos);
    float x[384], y[384];
    for (int i = 0; i < n; i++) x[i] = y[i] = rng_sym();
    sqz_hadamard_apply(&a, x, 1);
    sqz_hadamard_apply(&b, y, 1);
    CHECK(memcmp(x, y, sizeof x) == 0, "same seed, same rotation of a vector bit for bit");
    /* the first signs of seed 42 on every machine (splitmix64): a golden value */
    unsigned bits = 0;
    for (int i = 0; i < 16; i++) bits |= (unsigned)(a.sign[i] < 0) << i;
    CHECK(bits == 0x72a1, "seed 42: first 16 signs (bit set = -1) 0x%04x, as when written", bits);
    sqz_hadamard_free(&a), sqz_hadamard_free(&b), sqz_hadamard_free(&c);
    sqz_hadamard h;
    CHECK(sqz_hadamard_init(ctx, &h, 64) == SQZ_OK && h.sign == NULL, "init: no random signs");
    sqz_hadamard_free(&h);
    sqz_hadamard_free(NULL);
}

/* The table-free rotation (the KV codec's) is the table one with the hash signs, bit for bit,
 * and its inverse gives the vector back. */
static void test_hashed(sqz_ctx *ctx, int64_t n) {
    sqz_hadamard h;
    if (sqz_hadamard_random(ctx, &h, n, 1) != SQZ_OK) {
        CHECK(0, "n = %lld: %s", (long long)n, sqz_ctx_error(ctx));
        return;
    }
    int npos = 0;
    for (int64_t i = 0; i < n; i++) h.sign[i] = sqz_hadamard_hash_sign(i), npos += h.sign[i] > 0;
    float x[256], y[256], z[256];
    for (int64_t i = 0; i < n; i++) x[i] = y[i] = z[i] = rng_sym();
    sqz_hadamard_apply(&h, y, 1);
    sqz_hadamard_hashed(z, n, 0);
    CHECK(memcmp(y, z, (size_t)n * sizeof *y) == 0 && (n < 8 || (npos > 0 && npos < n)),
          "n = %lld: hashed rotation = H S / sqrt(n) with the hash signs (%d positive)",
          (long long)n, npos);
    sqz_hadamard_apply_t(&h, y, 1);
    sqz_hadamard_hashed(z, n, 1);
    double e = 0;
    for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(z[i] - x[i]));
    CHECK(memcmp(y, z, (size_t)n * sizeof *y) == 0 && e < 1e-5,
          "n = %lld: hashed inverse = Q^T, gives x back (max diff %.1e)", (long long)n, e);
    sqz_hadamard_free(&h);
}

static void test_unsupported(sqz_ctx *ctx) {
    const int64_t bad[] = { 0, -4, 3, 14, 28, 36, 172, 43 * 64, 11008 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sqz_hadamard h;
        const sqz_status st = sqz_hadamard_random(ctx, &h, bad[i], 1);
        CHECK(st == SQZ_ERR_UNSUPPORTED && strstr(sqz_ctx_error(ctx), "not 2^k"),
              "n = %lld unsupported: %s", (long long)bad[i], sqz_ctx_error(ctx));
        sqz_hadamard_free(&h);
    }
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    const int64_t full[] = { 1, 2, 4, 8, 64, 256, 512, 12, 20, 24, 40, 44, 48, 80, 96, 384, 640, 1536 };
    for (size_t i = 0; i < sizeof full / sizeof full[0]; i++) test_size(ctx, full[i], 1);
    const int64_t big[] = { 4096, 5632, 14336 }; /* 2^12; 44 * 2^7 (TinyLlama ffn); 224 * 2^6 */
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) test_size(ctx, big[i], 0);
    test_invariance(ctx, 512);
    test_invariance(ctx, 1536);
    test_invariance(ctx, 20 * 8);
    test_seed(ctx);
    test_hashed(ctx, 2);
    test_hashed(ctx, 64);
    test_hashed(ctx, 256);
    test_unsupported(ctx);
    sqz_ctx_free(ctx);
    return test_done();
}
