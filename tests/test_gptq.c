/* test_gptq.c - GPTQ (src/quant/gptq.c; Frantar et al., "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers", ICLR 2023) against a textbook
 * reference written here, round-to-nearest, and its error contract.
 *
 * Dimensions: rows = output features of W; cols = input features (row length); T = calibration
 * tokens; X [T x cols] activations; H = X^T X [cols x cols]; QK = block size of the type.
 *
 * (a) the blocked (lazy-batch, GEMM) implementation against the plain per-column loop, with
 *     H^-1 and its Cholesky factor computed naively in double here;
 * (b) identity H: GPTQ == the type's own quantizer byte for byte; the grid primitives agree
 *     with to_float;
 * (c) correlated H: ||(W - Q) X||^2 below round-to-nearest (with and without the imatrix);
 * (d) act-order / damping variants run, are deterministic and thread-count independent;
 * (e) bad inputs are errors with a message.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "formats/types.h"
#include "quant/gptq.h"
#include "formats/quant.h"
#include "test.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rng_next(void) { return test_xorshift64(&rng_state); }
static double rng_uniform(void) { return ((rng_next() >> 11) + 0.5) / 9007199254740992.0; }
static double rng_gauss(void) {
    return sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform());
}

static const sqz_type types[] = { SQZ_TYPE_Q4_0, SQZ_TYPE_Q8_0, SQZ_TYPE_Q2_K, SQZ_TYPE_Q3_K,
                                  SQZ_TYPE_Q4_K, SQZ_TYPE_Q5_K, SQZ_TYPE_Q6_K };
#define N_TYPES (int)(sizeof types / sizeof types[0])

static float *random_w(int64_t rows, int64_t cols) {
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)(0.02 * rng_gauss());
    return w;
}

/* X [T x cols] with correlated neighbouring columns (AR(1), rho 0.9) and uneven column scales
 * (a few outlier channels, as in LLM activations); returns X, H = X^T X in *H. */
static double *correlated_x(int64_t T, int64_t cols, double **H) {
    double *X = malloc((size_t)(T * cols) * sizeof *X), *scale = malloc((size_t)cols * sizeof *scale);
    for (int64_t c = 0; c < cols; c++) scale[c] = (c % 37 == 5 ? 8.0 : 1.0) * exp(0.5 * rng_gauss());
    for (int64_t t = 0; t < T; t++) {
        double prev = rng_gauss();
        for (int64_t c = 0; c < cols; c++) {
            prev = 0.9 * prev + sqrt(1 - 0.81) * rng_gauss();
            X[t * cols + c] = prev;
        }
        for (int64_t c = 0; c < cols; c++) X[t * cols + c] *= scale[c];
    }
    double *h = calloc((size_t)(cols * cols), sizeof *h);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < cols; i++) {
            const double xi = X[t * cols + i];
            for (int64_t k = 0; k < cols; k++) h[i * cols + k] += xi * X[t * cols + k];
        }
    free(scale);
    *H = h;
    return X;
}

/* ||(W - Q) X^T||^2 = sum over rows of d H d^T, d = W_r - Q_r */
static double out_err(const float *W, const float *Q, int64_t rows, int64_t cols, const double *H) {
    double tot = 0;
    double *d = malloc((size_t)cols * sizeof *d);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) d[c] = (double)W[r * cols + c] - Q[r * cols + c];
        for (int64_t i = 0; i < cols; i++) {
            double s = 0;
            for (int64_t k = 0; k < cols; k++) s += H[i * cols + k] * d[k];
            tot += d[i] * s;
        }
    }
    free(d);
    return tot;
}

/* ------------------------------------------------------------------ the textbook reference */

/* Lower Cholesky A = L L^T in place (lower triangle; upper zeroed); 0 on success. */
static int naive_cholesky(double *A, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double s = A[j * n + j];
        for (int64_t k = 0; k < j; k++) s -= A[j * n + k] * A[j * n + k];
        if (!(s > 0)) return -1;
        A[j * n + j] = sqrt(s);
        for (int64_t i = j + 1; i < n; i++) {
            double t = A[i * n + j];
            for (int64_t k = 0; k < j; k++) t -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = t / A[j * n + j];
        }
        for (int64_t k = j + 1; k < n; k++) A[j * n + k] = 0;
    }
    return 0;
}

/* U [n x n] f32, upper, with (H + damp I)^-1 = U^T U; imp = damped diag; cimp = 1 / U_ii^2 (the
 * conditional importance of sqz_gptq_opts.cond_imp). Textbook: L = chol(H), Linv by forward
 * substitution, Hinv = Linv^T Linv, U = chol(Hinv)^T. */
static void naive_u(const double *H, int64_t n, double percdamp, float *U, float *imp, float *cimp) {
    double *A = malloc((size_t)(n * n) * sizeof *A), *Li = calloc((size_t)(n * n), sizeof *Li);
    memcpy(A, H, (size_t)(n * n) * sizeof *A);
    double mean = 0;
    for (int64_t i = 0; i < n; i++) {
        if (A[i * n + i] == 0) A[i * n + i] = 1;
        mean += A[i * n + i];
    }
    for (int64_t i = 0; i < n; i++) {
        A[i * n + i] += percdamp * (mean / (double)n);
        imp[i] = (float)A[i * n + i];
    }
    naive_cholesky(A, n);
    for (int64_t j = 0; j < n; j++) { /* column j of L^-1 */
        Li[j * n + j] = 1 / A[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            double s = 0;
            for (int64_t k = j; k < i; k++) s += A[i * n + k] * Li[k * n + j];
            Li[i * n + j] = -s / A[i * n + i];
        }
    }
    for (int64_t i = 0; i < n; i++) /* Hinv = Li^T Li */
        for (int64_t k = 0; k < n; k++) {
            double s = 0;
            for (int64_t m = i > k ? i : k; m < n; m++) s += Li[m * n + i] * Li[m * n + k];
            A[i * n + k] = s;
        }
    naive_cholesky(A, n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++) U[i * n + k] = k >= i ? (float)A[k * n + i] : 0.0f;
    for (int64_t i = 0; cimp && i < n; i++) cimp[i] = (float)(1.0 / (A[i * n + i] * A[i * n + i]));
    free(A), free(Li);
}

/* Plain GPTQ, one row at a time, one column at a time, every later column updated at once.
 * refit: each block is run 1 + refit times from the row as it was at the block's start, the
 * scales of pass p > 0 chosen from the values pass p - 1 rounded; the row keeps the first pass
 * with the least sum of e^2 over the block. */
static void naive_gptq(sqz_type t, const float *W, int64_t rows, int64_t cols, const float *U,
                       const float *imp, int refit, uint8_t *out,
                       float *pre /* rows x cols: w before rounding */) {
    const sqz_type_traits *tr = sqz_type_get(t);
    const int qk = tr->block_size;
    const size_t row_size = sqz_type_row_size(t, cols), ts = tr->type_size;
    float *w = malloc((size_t)cols * sizeof *w), *x0 = malloc((size_t)cols * sizeof *x0);
    float *start = malloc((size_t)cols * sizeof *w), *best_w = malloc((size_t)cols * sizeof *w);
    float *best_pre = malloc((size_t)qk * sizeof *w);
    uint8_t *best_blk = malloc(ts);
    for (int64_t r = 0; r < rows; r++) {
        memcpy(w, W + r * cols, (size_t)cols * sizeof *w);
        for (int64_t b0 = 0; b0 < cols; b0 += qk) {
            uint8_t *blk = out + r * row_size + (b0 / qk) * ts;
            float *pr = pre + r * cols + b0;
            memcpy(start, w, (size_t)cols * sizeof *w);
            double best = 0;
            for (int pass = 0; pass <= refit; pass++) {
                memcpy(w, start, (size_t)cols * sizeof *w);
                memcpy(x0 + b0, pass == 0 ? w + b0 : pr, (size_t)qk * sizeof *w);
                sqz_gptq_block_init(t, x0 + b0, imp + b0, blk);
                double loss = 0;
                for (int64_t i = b0; i < b0 + qk; i++) {
                    pr[i - b0] = w[i];
                    const float q = w[i] == x0[i] ? sqz_gptq_block_get(t, blk, (int)(i % qk))
                                                  : sqz_gptq_block_set(t, blk, (int)(i % qk), w[i]);
                    const float e = (w[i] - q) / U[i * cols + i];
                    loss += (double)e * e;
                    for (int64_t j = i + 1; j < cols; j++) w[j] -= e * U[i * cols + j];
                }
                if (pass == 0 || loss < best) {
                    best = loss;
                    memcpy(best_w, w, (size_t)cols * sizeof *w);
                    memcpy(best_blk, blk, ts);
                    memcpy(best_pre, pr, (size_t)qk * sizeof *w);
                }
            }
            memcpy(w, best_w, (size_t)cols * sizeof *w);
            memcpy(blk, best_blk, ts);
            memcpy(pr, best_pre, (size_t)qk * sizeof *w);
        }
    }
    free(w), free(x0), free(start), free(best_w), free(best_pre), free(best_blk);
}

static int64_t count_diff_bytes(const uint8_t *a, const uint8_t *b, size_t n) {
    int64_t d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

/* ------------------------------------------------------------------ tests */

/* The k-quants' sub-block scale accessors: every (scale, min) in range written to one sub-block
 * reads back, the other sub-blocks' scales and every element's level stay, and the values follow
 * a * s - b with the new scale (checked through to_float on a block whose levels are known). */
static void test_sub_scales(void) {
    for (int ti = 0; ti < N_TYPES; ti++) {
        const sqz_type t = types[ti];
        const int n = sqz_gptq_sub_size(t);
        if (!n) continue;
        const sqz_type_traits *tr = sqz_type_get(t);
        const int qk = tr->block_size, nsub = qk / n;
        float *x = random_w(1, qk);
        uint8_t *blk = malloc(tr->type_size), *orig = malloc(tr->type_size);
        sqz_quantize_rows(t, x, orig, 1, qk, NULL);
        int bad = 0, checked = 0;
        for (int k = 0; k < nsub; k++) {
            int sc0, m0, lo, hi, mhi;
            sqz_gptq_sub_get(t, orig, k, &sc0, &m0, &lo, &hi, &mhi);
            for (int sc = lo; sc <= hi; sc += 3)
                for (int m = 0; m <= mhi; m += mhi ? 5 : 1) {
                    memcpy(blk, orig, tr->type_size);
                    sqz_gptq_sub_set(t, blk, k, sc, m);
                    int rsc, rm, a, b, c;
                    sqz_gptq_sub_get(t, blk, k, &rsc, &rm, &a, &b, &c);
                    bad += rsc != sc || rm != m;
                    for (int o = 0; o < nsub; o++) { /* the other sub-blocks untouched */
                        if (o == k) continue;
                        int s1, m1, s2, m2;
                        sqz_gptq_sub_get(t, orig, o, &s1, &m1, &a, &b, &c);
                        sqz_gptq_sub_get(t, blk, o, &s2, &m2, &a, &b, &c);
                        bad += s1 != s2 || m1 != m2;
                    }
                    for (int j = 0; j < qk; j++) /* elements outside sub-block k keep their values */
                        if (j / n != k)
                            bad += sqz_gptq_block_get(t, blk, j) != sqz_gptq_block_get(t, orig, j);
                    sqz_gptq_sub_set(t, blk, k, sc0, m0);
                    bad += memcmp(blk, orig, tr->type_size) != 0; /* and back to the same bytes */
                    checked++;
                }
        }
        CHECK(bad == 0 && checked > nsub, "%s: sub-block scale/min set-get round trip over %d settings "
              "(%d mismatches)", tr->name, checked, bad);
        free(x), free(blk), free(orig);
    }
}

static void test_primitives(void) {
    /* set(j, get(j)) changes nothing; set's return equals to_float of the new block */
    for (int ti = 0; ti < N_TYPES; ti++) {
        const sqz_type t = types[ti];
        const sqz_type_traits *tr = sqz_type_get(t);
        const int qk = tr->block_size;
        float *x = random_w(1, qk), *deq = malloc((size_t)qk * sizeof *deq);
        uint8_t blk[256], blk2[256];
        sqz_gptq_block_init(t, x, NULL, blk);
        int idem = 1, agree = 1;
        tr->to_float(blk, deq, qk);
        for (int j = 0; j < qk; j++) {
            memcpy(blk2, blk, tr->type_size);
            const float v = sqz_gptq_block_set(t, blk2, j, sqz_gptq_block_get(t, blk, j));
            idem &= memcmp(blk, blk2, tr->type_size) == 0 && v == deq[j];
        }
        for (int k = 0; k < 4 * qk; k++) {
            const int j = (int)(rng_next() % (uint64_t)qk);
            const float v = sqz_gptq_block_set(t, blk, j, (float)(0.05 * rng_gauss()));
            tr->to_float(blk, deq, qk);
            agree &= v == deq[j];
            for (int m = 0; m < qk; m++) agree &= sqz_gptq_block_get(t, blk, m) == deq[m];
        }
        CHECK(idem, "%s: block_set(get(j)) leaves the block unchanged", tr->name);
        CHECK(agree, "%s: block_set / block_get agree with to_float", tr->name);
        free(x), free(deq);
    }
}

static void test_identity(sqz_ctx *ctx) {
    const int64_t rows = 70, cols = 512;
    double *I = calloc((size_t)(cols * cols), sizeof *I);
    for (int64_t i = 0; i < cols; i++) I[i * cols + i] = 1;
    float *imp = malloc((size_t)cols * sizeof *imp);
    const double pd = sqz_gptq_default_opts().percdamp; /* the damping the defaults add */
    for (int64_t i = 0; i < cols; i++) imp[i] = (float)(1.0 + pd * 1.0);
    for (int ti = 0; ti < N_TYPES; ti++) {
        const sqz_type t = types[ti];
        const sqz_type_traits *tr = sqz_type_get(t);
        const size_t sz = (size_t)rows * sqz_type_row_size(t, cols);
        float *W = random_w(rows, cols);
        uint8_t *a = malloc(sz), *b = malloc(sz);
        sqz_gptq_opts o = sqz_gptq_default_opts();
        sqz_status st = sqz_gptq_quantize(ctx, t, W, rows, cols, NULL, &o, a, NULL);
        sqz_quantize_rows(t, W, b, rows, cols, NULL);
        CHECK(st == SQZ_OK && memcmp(a, b, sz) == 0,
              "%s: H = NULL gives the type's quantizer byte for byte (%lld bytes differ)", tr->name,
              (long long)count_diff_bytes(a, b, sz));
        /* coordinate descent would move Q4_0 / Q8_0 levels that the quantizer rounds with the
         * unrounded scale to the nearest stored level (a lower loss, other bytes) */
        o.cd_sweeps = 0;
        st = sqz_gptq_quantize(ctx, t, W, rows, cols, I, &o, a, NULL);
        /* the scale search sees one block at a time: blocks as rows (for Q4_0's imatrix path
         * sigma2 is then the block's mean square, not the row's as in llama-quantize) */
        const int qk = tr->block_size;
        sqz_quantize_rows(t, W, b, rows * cols / qk, qk, imp);
        CHECK(st == SQZ_OK && memcmp(a, b, sz) == 0,
              "%s: H = I gives the type's imatrix quantizer (imatrix = damped diag) byte for byte "
              "(%lld bytes differ)",
              tr->name, (long long)count_diff_bytes(a, b, sz));
        free(W), free(a), free(b);
    }
    free(I), free(imp);
}

/* Whether two blocks of type t carry the same scales (the bytes other than the quants; layouts
 * in formats/blocks.h). */
static int same_scales(sqz_type t, const uint8_t *a, const uint8_t *b) {
    switch (t) {
    case SQZ_TYPE_Q4_0: case SQZ_TYPE_Q8_0: return memcmp(a, b, 2) == 0;
    case SQZ_TYPE_Q2_K: return memcmp(a, b, 16) == 0 && memcmp(a + 80, b + 80, 4) == 0;
    case SQZ_TYPE_Q3_K: return memcmp(a + 96, b + 96, 14) == 0;
    case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q5_K: return memcmp(a, b, 16) == 0;
    case SQZ_TYPE_Q6_K: return memcmp(a + 192, b + 192, 18) == 0;
    default: return 0;
    }
}

/* Where blocked and textbook results part in a row, why: the first differing weight must sit on
 * a rounding boundary (its two candidate levels are equally near, up to f32 noise) or start a
 * block (the scale search saw values an ulp apart). After that the row's error feedback differs
 * and the rest of the row is legitimately different. Returns rows that differ; *unexplained
 * counts first differences that are neither. */
static int64_t explain_diffs(sqz_type t, const uint8_t *qa, const uint8_t *qr, const float *a,
                             const float *ref, const float *pre, int64_t rows, int64_t cols,
                             int64_t *scale_diffs, int64_t *unexplained, double *max_margin) {
    const sqz_type_traits *tr = sqz_type_get(t);
    const size_t row_size = sqz_type_row_size(t, cols);
    int64_t nrows = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = 0;
        while (i < cols && a[r * cols + i] == ref[r * cols + i]) i++;
        if (i == cols) continue;
        nrows++;
        const size_t off = (size_t)r * row_size + (size_t)(i / tr->block_size) * tr->type_size;
        if (!same_scales(t, qa + off, qr + off)) {
            ++*scale_diffs;
            continue;
        }
        const double va = a[r * cols + i], vr = ref[r * cols + i], x = pre[r * cols + i];
        /* distance of x from the midpoint of the two levels, in steps */
        const double margin = fabs(x - 0.5 * (va + vr)) / fabs(va - vr);
        if (margin > *max_margin) *max_margin = margin;
        if (margin > 1e-3) ++*unexplained;
    }
    return nrows;
}

static void test_naive(sqz_ctx *ctx) {
    const int64_t rows = 70, cols = 768, T = 1024;
    double *H;
    double *X = correlated_x(T, cols, &H);
    float *U = malloc((size_t)(cols * cols) * sizeof *U), *imp = malloc((size_t)cols * sizeof *imp);
    float *pre = malloc((size_t)(rows * cols) * sizeof *pre);
    float *da = malloc((size_t)(rows * cols) * sizeof *da), *dr = malloc((size_t)(rows * cols) * sizeof *dr);
    float *cimp = malloc((size_t)cols * sizeof *cimp);
    naive_u(H, cols, sqz_gptq_default_opts().percdamp, U, imp, cimp);
    /* plain GPTQ for every type; with refit and the conditional importance for two */
    for (int vi = 0; vi < N_TYPES + 2; vi++) {
        const int ti = vi < N_TYPES ? vi : vi == N_TYPES ? 2 /* Q2_K */ : 0 /* Q4_0 */;
        const int refit = vi < N_TYPES ? 0 : 2, cond = vi >= N_TYPES;
        const sqz_type t = types[ti];
        const sqz_type_traits *tr = sqz_type_get(t);
        const size_t sz = (size_t)rows * sqz_type_row_size(t, cols);
        float *W = random_w(rows, cols);
        uint8_t *ref = malloc(sz), *a = malloc(sz), *b = malloc(sz);
        naive_gptq(t, W, rows, cols, U, cond ? cimp : imp, refit, ref, pre);
        sqz_gptq_opts o = sqz_gptq_default_opts();
        o.refit = refit, o.cond_imp = cond, o.cd_sweeps = 0;
        o.block = (int)cols; /* one batch: the same operations in the same order */
        sqz_status st1 = sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, a, NULL);
        o.block = 128; /* lazy batches + GEMM: the later columns' sums in another order */
        sqz_status st2 = sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, b, da);
        const int64_t d1 = count_diff_bytes(a, ref, sz), d2 = count_diff_bytes(b, ref, sz);
        CHECK(st1 == SQZ_OK && d1 == 0,
              "%s refit %d cond_imp %d: one batch (B = cols) == textbook GPTQ byte for byte (%lld of %zu "
              "bytes differ)",
              tr->name, refit, cond, (long long)d1, sz);
        tr->to_float(ref, dr, rows * cols);
        int64_t unexplained = 0, scale_diffs = 0;
        double max_margin = 0;
        const int64_t nrows = explain_diffs(t, b, ref, da, dr, pre, rows, cols, &scale_diffs,
                                            &unexplained, &max_margin);
        const double ea = out_err(W, da, rows, cols, H), er = out_err(W, dr, rows, cols, H);
        if (refit) { /* a different float may pick another pass: compare the outcome only */
            CHECK(st2 == SQZ_OK && fabs(ea / er - 1) < 0.02,
                  "%s refit %d cond_imp %d: B = 128 vs textbook: output error ratio %.4f", tr->name,
                  refit, cond, ea / er);
            free(W), free(ref), free(a), free(b);
            continue;
        }
        /* f32 sums in another order move a weight by ~1 ulp; a level flips only where that
         * crosses a rounding boundary, and the row then carries a different error onwards */
        CHECK(st2 == SQZ_OK && unexplained == 0 && fabs(ea / er - 1) < 0.02,
              "%s: B = 128 vs textbook: %lld of %zu bytes, %lld of %lld rows differ; each row's "
              "first difference a rounding tie (max %.1e steps from it) or a scale search (%lld); "
              "output error ratio %.4f",
              tr->name, (long long)d2, sz, (long long)nrows, (long long)rows, max_margin,
              (long long)scale_diffs, ea / er);
        free(W), free(ref), free(a), free(b);
    }
    free(X), free(H), free(U), free(imp), free(cimp), free(pre), free(da), free(dr);
}

static void test_better_than_rtn(sqz_ctx *ctx) {
    const int64_t rows = 64, cols = 512, T = 1024;
    double *H;
    double *X = correlated_x(T, cols, &H);
    float *imat = malloc((size_t)cols * sizeof *imat);
    for (int64_t c = 0; c < cols; c++) imat[c] = (float)(H[c * cols + c] / (double)T);
    float *W = random_w(rows, cols);
    float *deq = malloc((size_t)(rows * cols) * sizeof *deq), *rtn = malloc((size_t)(rows * cols) * sizeof *rtn);
    for (int ti = 0; ti < N_TYPES; ti++) {
        const sqz_type t = types[ti];
        const sqz_type_traits *tr = sqz_type_get(t);
        const size_t sz = (size_t)rows * sqz_type_row_size(t, cols);
        uint8_t *q = malloc(sz);
        sqz_quantize_rows(t, W, q, rows, cols, NULL);
        tr->to_float(q, rtn, rows * cols);
        const double e_rtn = out_err(W, rtn, rows, cols, H);
        sqz_quantize_rows(t, W, q, rows, cols, imat);
        tr->to_float(q, rtn, rows * cols);
        const double e_rtn_im = out_err(W, rtn, rows, cols, H);
        sqz_gptq_opts o = sqz_gptq_default_opts(); /* the paper's GPTQ first */
        o.cond_imp = 0, o.refit = 0, o.cd_sweeps = 0;
        sqz_status st = sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, q, deq);
        float *chk = malloc((size_t)(rows * cols) * sizeof *chk);
        tr->to_float(q, chk, rows * cols);
        const int deq_ok = memcmp(chk, deq, (size_t)(rows * cols) * sizeof *chk) == 0;
        const double e_g = out_err(W, deq, rows, cols, H);
        o.act_order = 1;
        st |= sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, q, deq);
        const double e_ga = out_err(W, deq, rows, cols, H);
        o.act_order = 0, o.refit = 2, o.cond_imp = 0;
        st |= sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, q, deq);
        const double e_rf = out_err(W, deq, rows, cols, H);
        o.cond_imp = 1;
        st |= sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, q, deq);
        const double e_rfc = out_err(W, deq, rows, cols, H);
        o.cd_sweeps = 4;
        st |= sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, q, deq);
        const double e_cd = out_err(W, deq, rows, cols, H);
        tr->to_float(q, chk, rows * cols);
        const int cd_deq_ok = memcmp(chk, deq, (size_t)(rows * cols) * sizeof *chk) == 0;
        printf("# %-5s ||(W-Q)X||^2 / RTN: gptq %.3f  gptq+act-order %.3f  (vs RTN+imatrix: %.3f "
               "%.3f)  refit 2: %.3f  + cond_imp: %.3f  + 4 cd sweeps: %.3f\n",
               tr->name, e_g / e_rtn, e_ga / e_rtn, e_g / e_rtn_im, e_ga / e_rtn_im, e_rf / e_rtn,
               e_rfc / e_rtn, e_cd / e_rtn);
        CHECK(cd_deq_ok && e_cd <= e_rfc, "%s: coordinate descent lowers the output error (%.4f of "
              "GPTQ's before it) and leaves valid blocks", tr->name, e_cd / e_rfc);
        CHECK(e_rf <= e_g * 1.001, "%s: refit 2 output error %.4f of plain GPTQ's", tr->name, e_rf / e_g);
        CHECK(st == SQZ_OK && deq_ok, "%s: deq == to_float(out)", tr->name);
        CHECK(e_g < e_rtn && e_g < e_rtn_im,
              "%s: GPTQ output error below RTN (ratio %.3f) and RTN+imatrix (%.3f)", tr->name,
              e_g / e_rtn, e_g / e_rtn_im);
        CHECK(e_ga < e_rtn_im, "%s: GPTQ act-order output error below RTN+imatrix (%.3f)",
              tr->name, e_ga / e_rtn_im);
        free(q), free(chk);
    }
    free(X), free(H), free(imat), free(W), free(deq), free(rtn);
}

static void test_variants(sqz_ctx *ctx) {
    const int64_t rows = 150, cols = 512, T = 600;
    double *H;
    double *X = correlated_x(T, cols, &H);
    for (int64_t c = 40; c < 48; c++) /* dead columns */
        for (int64_t k = 0; k < cols; k++) H[c * cols + k] = H[k * cols + c] = 0;
    float *W = random_w(rows, cols);
    const sqz_type vt[] = { SQZ_TYPE_Q4_0, SQZ_TYPE_Q4_K, SQZ_TYPE_Q6_K };
    for (int ti = 0; ti < 3; ti++) {
        const sqz_type t = vt[ti];
        const size_t sz = (size_t)rows * sqz_type_row_size(t, cols);
        uint8_t *a = malloc(sz), *b = malloc(sz);
        float *deq = malloc((size_t)(rows * cols) * sizeof *deq);
        const double damps[] = { 0.01, 0.1, 0.0 };
        for (int ao = 0; ao < 2; ao++)
            for (int di = 0; di < 3; di++) {
                sqz_gptq_opts o = sqz_gptq_default_opts();
                o.act_order = ao, o.percdamp = damps[di], o.threads = 1;
                sqz_status s1 = sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, a, deq);
                o.threads = 2, o.block = 200; /* B rounded to a block multiple */
                if (t == SQZ_TYPE_Q4_0) o.block = 128;
                sqz_status s2 = sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, b, NULL);
                int dead0 = 1;
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t c = 40; c < 48; c++) dead0 &= fabsf(deq[r * cols + c]) < 0.02f;
                CHECK(s1 == SQZ_OK && s2 == SQZ_OK && memcmp(a, b, sz) == 0 && dead0,
                      "%s act_order %d percdamp %.2f: runs, same bytes with 1 and 2 threads, dead "
                      "columns near 0",
                      sqz_type_name(t), ao, damps[di]);
            }
        /* a batch smaller than the block (B 100 -> 256 for k-quants: whole blocks; 16 -> 32 for
         * Q4_0) */
        float *deq2 = malloc((size_t)(rows * cols) * sizeof *deq2);
        sqz_gptq_opts o = sqz_gptq_default_opts();
        sqz_status s1 = sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, a, deq);
        o.block = t == SQZ_TYPE_Q4_0 ? 16 : 100;
        sqz_status s2 = sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, b, deq2);
        const double e1 = out_err(W, deq, rows, cols, H), e2 = out_err(W, deq2, rows, cols, H);
        CHECK(s1 == SQZ_OK && s2 == SQZ_OK && fabs(e2 / e1 - 1) < 0.02,
              "%s: batch %d vs 128: output error ratio %.4f", sqz_type_name(t), o.block, e2 / e1);
        free(a), free(b), free(deq), free(deq2);
    }
    free(X), free(H), free(W);
}

static void test_errors(sqz_ctx *ctx) {
    const int64_t rows = 4, cols = 256;
    float *W = random_w(rows, cols);
    uint8_t *out = malloc((size_t)rows * sqz_type_row_size(SQZ_TYPE_Q8_0, cols));
    double *H = calloc((size_t)(cols * cols), sizeof *H);
    sqz_status st = sqz_gptq_quantize(ctx, SQZ_TYPE_Q4_K, W, rows, 100, NULL, NULL, out, NULL);
    CHECK(st == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "multiple of"),
          "cols 100 for Q4_K: %s", sqz_ctx_error(ctx));
    st = sqz_gptq_quantize(ctx, SQZ_TYPE_Q4_0, W, rows, cols, NULL, NULL, NULL, NULL);
    CHECK(st == SQZ_ERR_ARG, "NULL out: %s", sqz_ctx_error(ctx));
    st = sqz_gptq_quantize(ctx, SQZ_TYPE_Q4_1, W, rows, cols, NULL, NULL, out, NULL);
    CHECK(st == SQZ_ERR_UNSUPPORTED, "Q4_1: %s", sqz_ctx_error(ctx));
    for (int64_t i = 0; i < cols; i++) H[i * cols + i] = -1;
    st = sqz_gptq_quantize(ctx, SQZ_TYPE_Q8_0, W, rows, cols, H, NULL, out, NULL);
    CHECK(st == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "positive definite"),
          "H = -I: %s", sqz_ctx_error(ctx));
    /* rank one, no damping: singular */
    for (int64_t i = 0; i < cols; i++)
        for (int64_t k = 0; k < cols; k++) H[i * cols + k] = 1.0 + (i == k ? 0 : 0);
    sqz_gptq_opts o = sqz_gptq_default_opts();
    o.percdamp = 0;
    st = sqz_gptq_quantize(ctx, SQZ_TYPE_Q8_0, W, rows, cols, H, &o, out, NULL);
    CHECK(st == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "positive definite"),
          "rank-one H, percdamp 0: %s", sqz_ctx_error(ctx));
    H[3] = NAN;
    st = sqz_gptq_quantize(ctx, SQZ_TYPE_Q8_0, W, rows, cols, H, NULL, out, NULL);
    CHECK(st == SQZ_ERR_ARG, "NaN in H: %s", sqz_ctx_error(ctx));
    W[5] = INFINITY;
    st = sqz_gptq_quantize(ctx, SQZ_TYPE_Q8_0, W, rows, cols, NULL, NULL, out, NULL);
    CHECK(st == SQZ_ERR_ARG, "inf in W: %s", sqz_ctx_error(ctx));
    W[5] = 0;
    o.percdamp = -1;
    st = sqz_gptq_quantize(ctx, SQZ_TYPE_Q8_0, W, rows, cols, NULL, &o, out, NULL);
    CHECK(st == SQZ_ERR_ARG, "percdamp -1: %s", sqz_ctx_error(ctx));
    free(W), free(out), free(H);
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    test_primitives();
    test_sub_scales();
    test_identity(ctx);
    test_naive(ctx);
    test_better_than_rtn(ctx);
    test_variants(ctx);
    test_errors(ctx);
    sqz_ctx_free(ctx);
    return test_done();
}
