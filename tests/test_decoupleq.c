/* test_decoupleq.c - decoupleQ (src/quant/decoupleq.c; Guo et al. 2024) and the dq2 type
 * (src/formats/dq2.c, src/kernels/qdot_dq2_*.c) against references written here.
 *
 * Dimensions: rows = output features of W; cols = input features; T calibration tokens;
 * X [T x cols]; H = X^T X; g = 64 weights per (scale, zero) group; G = cols / g.
 *
 * (a) the objective trace never increases, and the reported numbers equal tr(E H E^T)
 *     recomputed naively here from the dequantized weights (damped H built here);
 * (b) it starts at round-to-nearest (a naive 2-bit min/max RTN here), ends <= it, and on a
 *     correlated H clearly below it;
 * (c) the closed-form scale/zero step equals a least-squares solve over the explicit design
 *     matrix X B (Gaussian elimination here), and no nearby (s, z) is better;
 * (d) codes in [0, 3], scale / zero exactly half-precision, dq2 bytes decode to deq exactly;
 *     determinism and thread-count independence;
 * (e) dq2 to_float / from_float against the layout and a naive RTN; the Q8_0 dot products
 *     (reference, AVX2) against a naive double dot; the matmul dispatch;
 * (f) bad inputs are errors with a message;
 * (g) sqz_quantize: dq2 needs fake quantization and decoupleq needs dq2 (errors before any
 *     work); rtn to dq2 on sqz-llama-14m writes f32 weights equal to dq2's own round trip.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "formats/types.h"
#include "kernels/kernels.h"
#include "formats/blocks.h"
#include "quant/decoupleq.h"
#include "formats/dq2.h"
#include "formats/presets.h"
#include "formats/quant.h"
#include "model/model.h"
#include "sqz.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) { return test_xorshift64(&rng_state); }
static double rng_uniform(void) { return ((rng_next() >> 11) + 0.5) / 9007199254740992.0; }
static double rng_gauss(void) {
    return sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform());
}

static float *random_w(int64_t rows, int64_t cols) {
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)(0.02 * rng_gauss());
    return w;
}

/* X [T x cols]: rho = 0 independent columns, else AR(1) neighbours with uneven column scales
 * (a few outlier channels, as LLM activations); H = X^T X into *H. */
static double *make_x(int64_t T, int64_t cols, double rho, double **H) {
    double *X = malloc((size_t)(T * cols) * sizeof *X);
    for (int64_t t = 0; t < T; t++) {
        double prev = rng_gauss();
        for (int64_t c = 0; c < cols; c++) {
            prev = rho * prev + sqrt(1 - rho * rho) * rng_gauss();
            X[t * cols + c] = prev * (rho > 0 && c % 37 == 5 ? 8.0 : 1.0);
        }
    }
    double *h = calloc((size_t)(cols * cols), sizeof *h);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < cols; i++)
            for (int64_t k = 0; k < cols; k++) h[i * cols + k] += X[t * cols + i] * X[t * cols + k];
    *H = h;
    return X;
}

static double *damped(const double *H, int64_t n, double percdamp) {
    double *D = malloc((size_t)(n * n) * sizeof *D), mean = 0;
    memcpy(D, H, (size_t)(n * n) * sizeof *D);
    for (int64_t i = 0; i < n; i++) mean += D[i * n + i];
    for (int64_t i = 0; i < n; i++) D[i * n + i] += percdamp * mean / (double)n;
    return D;
}

/* sum over rows of (w - Q) H (w - Q)^T, plain loops */
static double out_err(const float *W, const float *Q, int64_t rows, int64_t cols, const double *H) {
    double tot = 0, *d = malloc((size_t)cols * sizeof *d);
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

static float h16(float x) { return sqz_f16_to_f32(sqz_f32_to_f16(x)); }

/* Naive 2-bit RTN: per group of 64, zero = min, scale = (max - min) / 3 (both to half), codes
 * rounded half up and clamped. Q gets the dequantized weights. */
static void naive_rtn(const float *W, int64_t rows, int64_t cols, float *Q) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g0 = 0; g0 < cols; g0 += 64) {
            const float *x = W + r * cols + g0;
            float mn = x[0], mx = x[0];
            for (int j = 0; j < 64; j++) mn = x[j] < mn ? x[j] : mn, mx = x[j] > mx ? x[j] : mx;
            const float d = h16((mx - mn) / 3.0f), m = h16(mn);
            for (int j = 0; j < 64; j++) {
                int q = d != 0 ? (int)floorf((x[j] - m) / d + 0.5f) : 0;
                q = q < 0 ? 0 : q > 3 ? 3 : q;
                Q[r * cols + g0 + j] = d * (float)q + m;
            }
        }
}

/* Solves A x = b (n x n, dense) by Gaussian elimination with partial pivoting. */
static int gauss_solve(double *A, double *b, int n) {
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++) if (fabs(A[r * n + c]) > fabs(A[piv * n + c])) piv = r;
        if (A[piv * n + c] == 0) return -1;
        for (int k = 0; k < n; k++) { double t = A[c * n + k]; A[c * n + k] = A[piv * n + k]; A[piv * n + k] = t; }
        double t = b[c]; b[c] = b[piv]; b[piv] = t;
        for (int r = c + 1; r < n; r++) {
            const double f = A[r * n + c] / A[c * n + c];
            for (int k = c; k < n; k++) A[r * n + k] -= f * A[c * n + k];
            b[r] -= f * b[c];
        }
    }
    for (int c = n - 1; c >= 0; c--) {
        double s = b[c];
        for (int k = c + 1; k < n; k++) s -= A[c * n + k] * b[k];
        b[c] = s / A[c * n + c];
    }
    return 0;
}

/* ------------------------------------------------------------------ (a), (b), (d) */

static void test_algorithm(double rho, const char *what) {
    const int64_t rows = 80, cols = 256, T = 2048; /* 80 rows: two row chunks (64 + 16) */
    double *H;
    double *X = make_x(T, cols, rho, &H);
    float *W = random_w(rows, cols);
    const int64_t G = cols / 64;
    uint8_t *q = malloc((size_t)(rows * cols));
    float *s = malloc((size_t)(rows * G) * sizeof *s), *z = malloc((size_t)(rows * G) * sizeof *z);
    float *deq = malloc((size_t)(rows * cols) * sizeof *deq), *rtn = malloc((size_t)(rows * cols) * sizeof *rtn);
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_dq_opts o = sqz_dq_default_opts();
    o.threads = 1;
    sqz_dq_stats st;
    CHECK(sqz_decoupleq(ctx, W, rows, cols, H, &o, q, s, z, deq, &st) == SQZ_OK, "%s: runs (%s)", what,
          sqz_ctx_error(ctx));
    CHECK(st.n_steps == 2 + 2 * (o.iters - 1), "%s: %d steps", what, st.n_steps);
    int mono = 1;
    for (int k = 1; k < st.n_steps; k++) mono &= st.objective[k] <= st.objective[k - 1];
    printf("# %s objective:", what);
    for (int k = 0; k < st.n_steps; k++) printf(" %.6g", st.objective[k]);
    printf(" (rounds %d)\n", st.rounds_run);
    CHECK(mono, "%s: the objective never increases across the alternating steps", what);

    double *Hd = damped(H, cols, o.percdamp);
    const double obj = out_err(W, deq, rows, cols, Hd);
    CHECK_CLOSE(st.objective[st.n_steps - 1], obj, 0, 1e-9, "%s: final objective = tr(E H E^T) recomputed", what);
    naive_rtn(W, rows, cols, rtn);
    const double obj_rtn = out_err(W, rtn, rows, cols, Hd);
    CHECK_CLOSE(st.objective[0], obj_rtn, 0, 1e-9, "%s: the start is 2-bit round-to-nearest", what);
    CHECK(obj <= obj_rtn, "%s: objective %.6g <= RTN %.6g (ratio %.3f)", what, obj, obj_rtn, obj / obj_rtn);
    if (rho > 0) CHECK(obj < 0.6 * obj_rtn, "%s: clearly below RTN on a correlated H", what);

    int in_range = 1, halves = 1, exact = 1;
    for (int64_t i = 0; i < rows * cols; i++) in_range &= q[i] <= 3;
    for (int64_t i = 0; i < rows * G; i++) halves &= h16(s[i]) == s[i] && h16(z[i]) == z[i];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            exact &= deq[r * cols + c] == s[r * G + c / 64] * (float)q[r * cols + c] + z[r * G + c / 64];
    CHECK(in_range, "%s: codes in [0, 3]", what);
    CHECK(halves, "%s: scales and zeros are half-precision values", what);
    CHECK(exact, "%s: deq = scale * code + zero", what);

    /* dq2 bytes: the same result, and to_float gives deq exactly */
    const size_t rs = sqz_type_row_size(SQZ_TYPE_DQ2, cols);
    uint8_t *blk = malloc((size_t)rows * rs), *blk2 = malloc((size_t)rows * rs);
    float *deq2 = malloc((size_t)(rows * cols) * sizeof *deq2), *back = malloc((size_t)(rows * cols) * sizeof *back);
    CHECK(sqz_decoupleq_dq2(ctx, W, rows, cols, H, &o, blk, deq2, NULL) == SQZ_OK, "%s: dq2 runs", what);
    for (int64_t r = 0; r < rows; r++) sqz_dq2_to_float(blk + r * rs, back + r * cols, cols);
    CHECK(!memcmp(back, deq, (size_t)(rows * cols) * sizeof *back) && !memcmp(deq2, deq, (size_t)(rows * cols) * sizeof *deq2),
          "%s: dq2 blocks decode exactly to deq (deterministic rerun)", what);
    sqz_dq_opts o2 = o;
    o2.threads = 2;
    CHECK(sqz_decoupleq_dq2(ctx, W, rows, cols, H, &o2, blk2, NULL, NULL) == SQZ_OK &&
              !memcmp(blk, blk2, (size_t)rows * rs),
          "%s: 2 threads give the same bytes", what);
    free(blk), free(blk2), free(deq2), free(back);
    free(Hd), free(X), free(H), free(W), free(q), free(s), free(z), free(deq), free(rtn);
    sqz_ctx_free(ctx);
}

/* ------------------------------------------------------------------ (c) */

static void test_scale_zero_step(void) {
    const int64_t cols = 192, T = 600, G = 3;
    double *H;
    double *X = make_x(T, cols, 0.7, &H);
    float *w = random_w(1, cols);
    uint8_t q[192];
    for (int c = 0; c < cols; c++) q[c] = (uint8_t)(rng_next() % 4);
    double s[3], z[3];
    CHECK(sqz_dq_fit_scale_zero(H, cols, 64, w, q, s, z) == 0, "scale/zero step solves");
    /* naive: min ||X w - D x|| with D's columns X u_j (u_j = q on group j) and X v_j (v_j = 1 on
     * group j), via the normal equations of the explicit T x 2G design matrix */
    double *D = calloc((size_t)(T * 2 * G), sizeof *D), *t = calloc((size_t)T, sizeof *t);
    for (int64_t i = 0; i < T; i++)
        for (int64_t c = 0; c < cols; c++) {
            const double x = X[i * cols + c];
            D[i * 2 * G + c / 64] += x * q[c];
            D[i * 2 * G + G + c / 64] += x;
            t[i] += x * w[c];
        }
    double A[36] = { 0 }, b[6] = { 0 };
    for (int j = 0; j < 2 * G; j++) {
        for (int k = 0; k < 2 * G; k++)
            for (int64_t i = 0; i < T; i++) A[j * 2 * G + k] += D[i * 2 * G + j] * D[i * 2 * G + k];
        for (int64_t i = 0; i < T; i++) b[j] += D[i * 2 * G + j] * t[i];
    }
    CHECK(gauss_solve(A, b, 2 * G) == 0, "naive normal equations solve");
    double md = 0;
    for (int j = 0; j < G; j++) {
        md = fmax(md, fabs(s[j] - b[j]) / (fabs(b[j]) + 1e-12));
        md = fmax(md, fabs(z[j] - b[G + j]) / (fabs(b[G + j]) + 1e-12));
    }
    CHECK(md < 1e-6, "closed-form scale/zero = naive least squares (max rel. diff %.2g)", md);
    /* and it is a minimum: nudging any parameter raises ||X (w - Q)||^2 */
    float Q[192];
    for (int c = 0; c < cols; c++) Q[c] = (float)(s[c / 64] * q[c] + z[c / 64]);
    const double e0 = out_err(w, Q, 1, cols, H);
    int better = 0;
    for (int k = 0; k < 2 * G; k++)
        for (int sg = -1; sg <= 1; sg += 2) {
            double ss[3], zz[3];
            memcpy(ss, s, sizeof ss), memcpy(zz, z, sizeof zz);
            if (k < G) ss[k] *= 1 + sg * 1e-3; else zz[k - G] += sg * 1e-3 * fabs(zz[k - G]) + sg * 1e-6;
            for (int c = 0; c < cols; c++) Q[c] = (float)(ss[c / 64] * q[c] + zz[c / 64]);
            better += out_err(w, Q, 1, cols, H) < e0 * (1 - 1e-9);
        }
    CHECK(!better, "no nudged (s, z) has a lower objective");
    free(D), free(t), free(X), free(H), free(w);
}

/* ------------------------------------------------------------------ (e) */

static void test_type_and_kernels(void) {
    const sqz_type_traits *tr = sqz_type_get(SQZ_TYPE_DQ2);
    CHECK(tr && !strcmp(tr->name, "dq2") && tr->block_size == 64 && tr->type_size == 20 && tr->to_float &&
              tr->from_float,
          "dq2 is in the type table (id 1024, 64 per 20 bytes)");
    CHECK(sqz_type_get(1028) == NULL && sqz_type_get(1023) == NULL && sqz_type_usable(SQZ_TYPE_DQ2),
          "ids next to it are unknown; dq2 is usable");
    CHECK(sqz_type_row_size(SQZ_TYPE_DQ2, 512) == 160, "a row of 512 is 160 bytes (2.5 bits/weight)");

    /* layout: element j is bits 2*(j/16) of byte j%16 */
    block_dq2 b;
    uint8_t codes[64];
    for (int j = 0; j < 64; j++) codes[j] = (uint8_t)((j * 7 + j / 5) % 4);
    sqz_dq2_pack(&b, -0.375f, 1.5f, codes);
    float f[64];
    sqz_dq2_to_float(&b, f, 64);
    int ok = 1;
    for (int j = 0; j < 64; j++) {
        const int bits = (((const uint8_t *)&b)[4 + j % 16] >> (2 * (j / 16))) & 3;
        ok &= bits == codes[j] && f[j] == -0.375f * (float)codes[j] + 1.5f;
    }
    CHECK(ok && b.d == sqz_f32_to_f16(-0.375f) && b.m == sqz_f32_to_f16(1.5f), "to_float follows the documented layout");

    /* from_float = naive RTN */
    const int64_t rows = 6, cols = 512;
    float *W = random_w(rows, cols), *Q = malloc(sizeof(float) * rows * cols), *back = malloc(sizeof(float) * rows * cols);
    W[3] = 0.25f; /* an outlier */
    for (int j = 0; j < 64; j++) W[64 + j] = 0.125f; /* a constant group: scale 0 */
    uint8_t *blk = malloc(sqz_type_row_size(SQZ_TYPE_DQ2, cols) * rows);
    tr->from_float(W, blk, rows * cols);
    tr->to_float(blk, back, rows * cols);
    naive_rtn(W, rows, cols, Q);
    CHECK(!memcmp(Q, back, sizeof(float) * rows * cols), "from_float = naive round-to-nearest");

    /* dot products: x quantized to Q8_0 by the reference quantizer; naive = sum of the
     * dequantized weights times the dequantized activations, in double */
    float *x = malloc(sizeof(float) * cols);
    for (int i = 0; i < cols; i++) x[i] = (float)rng_gauss();
    sqz_type act = sqz_act_type(SQZ_TYPE_DQ2);
    CHECK(act == SQZ_TYPE_Q8_0, "dq2 takes Q8_0 activations");
    block_q8_0 xq[512 / 32];
    sqz_quantize_act_get(SQZ_TYPE_Q8_0, SQZ_ISA_REF)(x, xq, cols);
    const sqz_vec_dot_q_fn ref = sqz_vec_dot_q_get(SQZ_TYPE_DQ2, SQZ_ISA_REF);
    const sqz_vec_dot_q_fn best = sqz_vec_dot_q_get(SQZ_TYPE_DQ2, sqz_isa_best());
    const sqz_dot_fn dot = sqz_dot_get(SQZ_TYPE_DQ2, SQZ_ISA_REF);
    CHECK(ref && best && dot, "dq2 has reference and %s kernels", sqz_isa_name(sqz_isa_best()));
    const size_t rs = sqz_type_row_size(SQZ_TYPE_DQ2, cols);
    double worst_ref = 0, worst_best = 0, worst_dot = 0;
    for (int64_t r = 0; r < rows; r++) {
        double naive = 0, naive_f = 0, norm = 0;
        for (int i = 0; i < cols; i++) {
            const double a = sqz_f16_to_f32(xq[i / 32].d) * xq[i / 32].qs[i % 32];
            naive += (double)back[r * cols + i] * a;
            naive_f += (double)back[r * cols + i] * x[i];
            norm += fabs((double)back[r * cols + i] * a);
        }
        worst_ref = fmax(worst_ref, fabs(ref(cols, blk + r * rs, xq) - naive) / norm);
        worst_best = fmax(worst_best, fabs(best(cols, blk + r * rs, xq) - naive) / norm);
        worst_dot = fmax(worst_dot, fabs(dot(blk + r * rs, x, cols) - naive_f) / norm);
    }
    CHECK(worst_ref < 1e-5, "reference dq2 . Q8_0 = naive (max rel. %.2g)", worst_ref);
    CHECK(worst_best < 1e-5, "%s dq2 . Q8_0 = naive (max rel. %.2g)", sqz_isa_name(sqz_isa_best()), worst_best);
    CHECK(worst_dot < 1e-5, "reference dq2 . f32 = naive (max rel. %.2g)", worst_dot);
    if (sqz_isa_best() >= SQZ_ISA_AVX2) {
        const sqz_vec_dot_q_fn avx2 = sqz_vec_dot_q_get(SQZ_TYPE_DQ2, SQZ_ISA_AVX2);
        double md = 0;
        for (int64_t r = 0; r < rows; r++) {
            const double a = avx2(cols, blk + r * rs, xq), e = ref(cols, blk + r * rs, xq);
            md = fmax(md, fabs(a - e) / (fabs(e) + 1e-3));
        }
        CHECK(md < 1e-5, "AVX2 dq2 . Q8_0 = reference (max rel. %.2g)", md);
    } else {
        SKIP("no AVX2: the AVX2 dq2 kernel is not run");
    }
    if (sqz_isa_best() >= SQZ_ISA_AVX512 && sqz_vec_dot_q_get(SQZ_TYPE_DQ2, SQZ_ISA_AVX512) !=
                                                 sqz_vec_dot_q_get(SQZ_TYPE_DQ2, SQZ_ISA_AVX2)) {
        const sqz_vec_dot_q_fn k512 = sqz_vec_dot_q_get(SQZ_TYPE_DQ2, SQZ_ISA_AVX512);
        double md = 0;
        for (int64_t r = 0; r < rows; r++) {
            const double a = k512(cols, blk + r * rs, xq), e = ref(cols, blk + r * rs, xq);
            md = fmax(md, fabs(a - e) / (fabs(e) + 1e-3));
        }
        CHECK(md < 1e-5, "AVX-512 VNNI dq2 . Q8_0 = reference (max rel. %.2g)", md);
    } else {
        SKIP("no AVX-512 VNNI: the AVX-512 dq2 kernel is not run");
    }
    /* the matmul dispatch: decode (quantized) and prefill (dequantize + sgemm) paths */
    sqz_tensor t = { .type = SQZ_TYPE_DQ2, .cols = cols, .rows = rows, .data = blk };
    const int T = 40;
    float *xs = malloc(sizeof(float) * T * cols), *y = malloc(sizeof(float) * T * rows), *yr = malloc(sizeof(float) * T * rows);
    for (int i = 0; i < T * cols; i++) xs[i] = (float)rng_gauss();
    sqz_matmul_ref(&t, xs, T, yr);
    double md1 = 0, md40 = 0, scale = 0;
    for (int i = 0; i < T * rows; i++) scale = fmax(scale, fabs(yr[i]));
    sqz_matmul(&t, xs, 1, y, 1);
    for (int i = 0; i < rows; i++) md1 = fmax(md1, fabs(y[i] - yr[i]) / scale);
    sqz_matmul(&t, xs, T, y, 2);
    for (int i = 0; i < T * rows; i++) md40 = fmax(md40, fabs(y[i] - yr[i]) / scale);
    CHECK(md1 < 0.02, "matmul, 1 token (Q8_0 activations) ~ f32 reference (%.2g of max |y|)", md1);
    CHECK(md40 < 1e-5, "matmul, 40 tokens (dequantized panels) = f32 reference (%.2g)", md40);
    free(xs), free(y), free(yr), free(x), free(W), free(Q), free(back), free(blk);
}

/* ------------------------------------------------------------------ (f) */

static void test_errors(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    const int64_t cols = 128;
    double *H;
    double *X = make_x(300, cols, 0, &H);
    float *W = random_w(4, cols);
    uint8_t out[4 * 40];
    sqz_status st = sqz_decoupleq_dq2(ctx, W, 4, 100, H, NULL, out, NULL, NULL);
    CHECK(st == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "multiple of the group size 64"),
          "cols 100: error (%s)", sqz_ctx_error(ctx));
    CHECK(sqz_decoupleq_dq2(ctx, NULL, 4, cols, H, NULL, out, NULL, NULL) == SQZ_ERR_ARG, "NULL W: error");
    CHECK(sqz_decoupleq_dq2(ctx, W, 4, cols, NULL, NULL, out, NULL, NULL) == SQZ_ERR_ARG, "NULL H: error");
    sqz_dq_opts o = sqz_dq_default_opts();
    o.group = 32;
    CHECK(sqz_decoupleq_dq2(ctx, W, 4, cols, H, &o, out, NULL, NULL) == SQZ_ERR_ARG, "dq2 with group 32: error (%s)",
          sqz_ctx_error(ctx));
    CHECK(sqz_decoupleq(ctx, W, 4, cols, H, &o, NULL, NULL, NULL, NULL, NULL) == SQZ_OK, "group 32 without dq2 runs");
    o = sqz_dq_default_opts();
    o.iters = 0;
    CHECK(sqz_decoupleq(ctx, W, 4, cols, H, &o, NULL, NULL, NULL, NULL, NULL) == SQZ_ERR_ARG, "iters 0: error");
    W[5] = NAN;
    CHECK(sqz_decoupleq(ctx, W, 4, cols, H, NULL, NULL, NULL, NULL, NULL, NULL) == SQZ_ERR_ARG &&
              strstr(sqz_ctx_error(ctx), "non-finite"),
          "NaN in W: error (%s)", sqz_ctx_error(ctx));
    W[5] = 0;
    for (int64_t i = 0; i < cols * cols; i++) H[i] = i % (cols + 1) == 0 ? -1.0 : 0.0; /* -I */
    CHECK(sqz_decoupleq(ctx, W, 4, cols, H, NULL, NULL, NULL, NULL, NULL, NULL) == SQZ_ERR_ARG &&
              strstr(sqz_ctx_error(ctx), "positive definite"),
          "indefinite H: error (%s)", sqz_ctx_error(ctx));
    W[0] = 1e6f;
    for (int64_t i = 0; i < cols * cols; i++) H[i] = i % (cols + 1) == 0 ? 1.0 : 0.0;
    CHECK(sqz_decoupleq(ctx, W, 4, cols, H, NULL, NULL, NULL, NULL, NULL, NULL) == SQZ_ERR_ARG,
          "weights beyond half range: error (%s)", sqz_ctx_error(ctx));
    free(X), free(H), free(W);
    sqz_ctx_free(ctx);
}

/* ------------------------------------------------------------------ (g) */

static void test_quantize_command(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m = NULL;
    const char *bin = "assets/stories260K/stories260K.bin", *tok = "assets/stories260K/tok512.bin";
    if (sqz_model_load(ctx, bin, tok, &m) != SQZ_OK) {
        SKIP("stories260K does not load: %s", sqz_ctx_error(ctx));
        sqz_ctx_free(ctx);
        return;
    }
    char out[] = "/tmp/sqz_test_dq_XXXXXX";
    const int fd = mkstemp(out);
    if (fd >= 0) close(fd);
    unlink(out);
    const int32_t calib[1024] = { 0 };
    sqz_quantize_opts o = { .method = "decoupleq", .type = "dq2", .calib = calib, .n_calib = 1024,
                            .calib_ctx = 512 };
    sqz_status st = sqz_quantize(ctx, m, out, &o, NULL);
    CHECK(st == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "multiple of the group") && access(out, F_OK) != 0,
          "dq2 of a model with 172-wide rows: error, no file (%s)", sqz_ctx_error(ctx));
    o.method = "rtn";
    st = sqz_quantize(ctx, m, out, &o, NULL);
    CHECK(st == SQZ_ERR_UNSUPPORTED && strstr(sqz_ctx_error(ctx), "fake") && access(out, F_OK) != 0,
          "rtn to dq2 without fake quantization: error, no file (%s)", sqz_ctx_error(ctx));
    o.method = "decoupleq";
    o.type = "q4_0";
    CHECK(sqz_quantize(ctx, m, out, &o, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "dq2"),
          "decoupleq to q4_0: error (%s)", sqz_ctx_error(ctx));
    o.type = "dq2";
    o.method = "rtn:fake=1";
    CHECK(sqz_quantize(ctx, m, out, &o, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "64") &&
              access(out, F_OK) != 0,
          "rtn dq2 of 172-wide rows: error, no file (%s)", sqz_ctx_error(ctx));
    sqz_model_free(m);

    const char *dir = test_shared("models/sqz-llama-14m");
    if (!dir || sqz_model_load(ctx, dir, NULL, &m) != SQZ_OK) {
        SKIP("sqz-llama-14m missing: rtn dq2 end to end");
        sqz_ctx_free(ctx);
        return;
    }
    sqz_quantize_result res;
    st = sqz_quantize(ctx, m, out, &o, &res);
    CHECK(st == SQZ_OK, "rtn dq2 of sqz-llama-14m as fake quantization (%s)", st ? sqz_ctx_error(ctx) : "");
    sqz_model *q = NULL;
    if (!st && sqz_model_load(ctx, out, NULL, &q) == SQZ_OK) {
        /* ffn_down of the last layer (not RoPE-permuted): f32, = to_float(from_float(W)) */
        const sqz_tensor *a = &m->layers[m->cfg.n_layers - 1].w_down, *b = &q->layers[m->cfg.n_layers - 1].w_down;
        float *x = malloc(sizeof(float) * a->cols), *y = malloc(sizeof(float) * a->cols);
        block_dq2 *blk = malloc(sqz_type_row_size(SQZ_TYPE_DQ2, a->cols));
        int same = b->type == SQZ_TYPE_F32 && b->rows == a->rows && b->cols == a->cols;
        for (int64_t r = 0; same && r < a->rows; r++) {
            sqz_tensor_row_f32(a, r, x);
            sqz_dq2_from_float(x, blk, a->cols);
            sqz_dq2_to_float(blk, x, a->cols);
            sqz_tensor_row_f32(b, r, y);
            same = !memcmp(x, y, sizeof(float) * a->cols);
        }
        CHECK(same, "the written ffn_down is dq2's round trip of the original, in f32");
        /* token_embd: the q2_k mix's type for it (tied: Q6_K, or Q8_0 for 384-wide rows),
         * dequantized */
        sqz_preset pr;
        sqz_preset_find("q2_k", 0, &pr);
        const sqz_preset_model pm = { .n_layers = m->cfg.n_layers, .n_heads = m->cfg.n_heads,
                                      .n_kv_heads = m->cfg.n_kv_heads, .tied = m->cfg.tied_embeddings };
        const sqz_type et = sqz_preset_tensor_type(&pr, &pm, SQZ_ROLE_TOKEN_EMBD, -1, m->tok_embd.cols, NULL);
        const int64_t D = m->tok_embd.cols;
        float *e = malloc(sizeof(float) * D), *f = malloc(sizeof(float) * D);
        void *eb = malloc(sqz_type_row_size(et, D));
        int emb_ok = q->tok_embd.type == SQZ_TYPE_F32;
        for (int64_t r = 0; emb_ok && r < m->tok_embd.rows; r += 97) {
            sqz_tensor_row_f32(&m->tok_embd, r, e);
            sqz_quantize_rows(et, e, eb, 1, D, NULL);
            sqz_type_get(et)->to_float(eb, e, D);
            sqz_tensor_row_f32(&q->tok_embd, r, f);
            emb_ok = !memcmp(e, f, sizeof(float) * D);
        }
        CHECK(emb_ok, "token_embd: f32 holding the q2_k mix's %s of it", sqz_type_name(et));
        free(e), free(f), free(eb);
        free(x), free(y), free(blk);
        sqz_model_free(q);
    } else {
        CHECK(0, "the written file loads (%s)", sqz_ctx_error(ctx));
    }
    unlink(out);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
}

int main(void) {
    test_algorithm(0.0, "independent inputs");
    test_algorithm(0.9, "correlated inputs");
    test_scale_zero_step();
    test_type_and_kernels();
    test_errors();
    test_quantize_command();
    return test_done();
}
