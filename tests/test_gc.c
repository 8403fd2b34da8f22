/* test_gc.c - the gradient compressors of data-parallel training (src/train/gc_*.c) in a world of
 * one rank (no MPI: the collectives are then the identity), each against a plain reference
 * written here from the papers' update rules:
 *  (a) top-k selection (quickselect) equals the full sort, ties by index, on vectors with ties;
 *  (b) topk with error feedback, dgc (momentum correction, local clipping, factor masking,
 *      warm-up; in the paper's momentum-SGD form and over Adam's update) and econtrol: the
 *      step directions of 6 steps equal the reference's;
 *  (c) powersgd: a rank-1 matrix is sent exactly by rank 1; vectors go dense; 3 warm-started steps equal a double-precision reference of the hook;
 *  (d) the L-GreCo knapsack finds the least size within the error budget (brute force);
 *  (e) specs: unknown methods and keys are refused with a message.
 * The bytes each compressor puts on the wire are checked with 2 ranks in tests/cli/dp.sh. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/gc.h"
#include "test.h"

int sqz_gc_lgreco_solve(int n_items, int n_levels, const double *err, const double *size, int ref,
                        int bins, int *choice);
double sqz_gc_dgc_density(double target, int warmup, int step);

/* three tensors: two matrices and a vector, in one flat layout */
static sqz_train_tensor T3[3] = {
    { "a.weight", 24, 40, 0 }, { "b.weight", 16, 8, 960 }, { "c.weight", 1, 37, 1088 },
};
enum { N = 1125, STEPS = 6 };

static void env1(sqz_gc_env *e, sqz_comm *c, sqz_ctx *ctx) {
    memset(c, 0, sizeof *c);
    c->size = 1, c->ctx = ctx;
    memset(e, 0, sizeof *e);
    e->ctx = ctx, e->t = T3, e->n_tensors = 3, e->n = N, e->comm = c, e->steps = STEPS, e->clip = 1.0f;
    e->seed = 7, e->n_threads = 1, e->beta1 = 0.9f, e->beta2 = 0.95f, e->eps = 1e-8f;
}

/* reference top-k: the k largest |x| by sorting (ties: lower index), as a 0/1 mask */
static void ref_topk(const float *x, size_t n, size_t k, unsigned char *mask) {
    memset(mask, 0, n);
    for (size_t got = 0; got < k; got++) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (!mask[i] && (best == n || fabsf(x[i]) > fabsf(x[best]))) best = i;
        mask[best] = 1;
    }
}

static void test_select(void) {
    uint64_t s = 11;
    int ok = 1;
    for (int trial = 0; trial < 200 && ok; trial++) {
        const size_t n = 1 + test_xorshift64(&s) % 300, k = 1 + test_xorshift64(&s) % n;
        float x[300], scr[300];
        uint32_t a[300], b[300];
        for (size_t i = 0; i < n; i++) /* few distinct magnitudes: many ties, signs mixed, zeros */
            x[i] = (float)((int)(test_xorshift64(&s) % 9) - 4) * (trial % 2 ? 0.5f : 1.0f);
        const size_t ka = sqz_gc_topk(x, n, k, a, scr), kb = sqz_gc_topk_ref(x, n, k, b);
        ok = ka == k && kb == k && !memcmp(a, b, k * sizeof *a);
    }
    CHECK(ok, "top-k quickselect = sort (200 vectors with ties, zeros and both signs)");
    CHECK(sqz_gc_topk_count(1000, 0.001) == 1 && sqz_gc_topk_count(1001, 0.001) == 2 &&
          sqz_gc_topk_count(10, 1e-9) == 1, "k = max(1, ceil(density n))");
}

static void rand_grad(float *g, uint64_t *s, float scale) {
    for (int i = 0; i < N; i++) g[i] = test_frand(s) * scale * (1.0f + (float)(i % 7));
}

static double max_rel(const float *a, const float *b, size_t n) {
    double m = 0, ref = 0;
    for (size_t i = 0; i < n; i++) ref = fmax(ref, fabs(b[i]));
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return ref > 0 ? m / ref : m;
}

/* runs spec for STEPS steps on seeded gradients; dir[s] = the directions */
static int run_spec(sqz_ctx *ctx, const char *spec, float dir[STEPS][N], float g[STEPS][N]) {
    sqz_comm c;
    sqz_gc_env e;
    env1(&e, &c, ctx);
    const sqz_gc_method *m;
    sqz_gc_args a;
    void *st = NULL;
    if (sqz_gc_parse(ctx, spec, &m, &a) || m->create(&e, &a, &st)) return -1;
    int rc = 0;
    for (int s = 0; s < STEPS && !rc; s++) {
        memcpy(dir[s], g[s], sizeof dir[s]);
        rc = m->exchange(st, dir[s], s) ? -1 : 0;
    }
    m->destroy(st);
    return rc;
}

static float G[STEPS][N], D[STEPS][N], R[STEPS][N];
static unsigned char mask[N];

static void test_topk_ef(sqz_ctx *ctx) {
    CHECK(run_spec(ctx, "topk:density=0.05", D, G) == 0, "topk runs");
    static float e[N];
    memset(e, 0, sizeof e);
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < N; i++) e[i] += G[s][i];
        memset(R[s], 0, sizeof R[s]);
        for (int t = 0; t < 3; t++) {
            const size_t n = (size_t)(T3[t].rows * T3[t].cols), o = T3[t].off;
            ref_topk(e + o, n, (size_t)ceil(0.05 * n), mask);
            for (size_t i = 0; i < n; i++)
                if (mask[i]) R[s][o + i] = e[o + i], e[o + i] = 0;
        }
    }
    double worst = 0;
    for (int s = 0; s < STEPS; s++) worst = fmax(worst, max_rel(D[s], R[s], N));
    CHECK(worst == 0, "topk + error feedback: 6 steps' directions = reference (worst %.2g)", worst);
}

/* DGC's reference: adam = 0 the paper's momentum SGD form, adam = 1 Adam's update per rank */
static void ref_dgc(int adam) {
    static float u[N], v[N], g[N], v2[N];
    memset(u, 0, sizeof u), memset(v, 0, sizeof v), memset(v2, 0, sizeof v2);
    for (int s = 0; s < STEPS; s++) {
        memcpy(g, G[s], sizeof g);
        double ss = 0; /* local clipping at clip / sqrt(1) */
        for (int i = 0; i < N; i++) ss += (double)g[i] * g[i];
        if (sqrt(ss) > 1.0)
            for (int i = 0; i < N; i++) g[i] *= (float)(1.0 / (sqrt(ss) + 1e-6));
        for (int i = 0; i < N; i++) {
            if (adam) {
                v2[i] = 0.95f * v2[i] + (1.0f - 0.95f) * g[i] * g[i];
                const float a = g[i] / (sqrtf(v2[i] / (float)(1.0 - pow(0.95f, s + 1))) + 1e-8f);
                u[i] = 0.9f * u[i] + (1.0f - 0.9f) * a;
            } else {
                u[i] = 0.9f * u[i] + g[i];
            }
            v[i] += u[i];
        }
        const double d = s < 4 ? fmax(pow(0.25, s + 1), 0.02) : 0.02;
        memset(R[s], 0, sizeof R[s]);
        for (int t = 0; t < 3; t++) {
            const size_t n = (size_t)(T3[t].rows * T3[t].cols), o = T3[t].off;
            ref_topk(v + o, n, (size_t)fmax(1, ceil(d * n)), mask);
            for (size_t i = 0; i < n; i++)
                if (mask[i]) R[s][o + i] = v[o + i], v[o + i] = 0, u[o + i] = 0;
        }
    }
}

static void test_dgc(sqz_ctx *ctx) {
    CHECK(sqz_gc_dgc_density(0.001, 4, 0) == 0.25 && sqz_gc_dgc_density(0.001, 4, 3) == pow(0.25, 4) &&
          sqz_gc_dgc_density(0.001, 4, 4) == 0.001 && sqz_gc_dgc_density(0.3, 8, 0) == 0.3,
          "dgc warm-up densities 25 %%, 6.25 %%, 1.56 %%, 0.39 %%, then the target");
    for (int adam = 0; adam <= 1; adam++) {
        CHECK(run_spec(ctx, adam ? "dgc:density=0.02,warmup=4" : "dgc:density=0.02,momentum=0.9,warmup=4,adam=0",
                       D, G) == 0, "dgc adam=%d runs", adam);
        ref_dgc(adam);
        double worst = 0;
        for (int s = 0; s < STEPS; s++) worst = fmax(worst, max_rel(D[s], R[s], N));
        CHECK(worst < 1e-6, "dgc adam=%d (%s, local clip, masking, warm-up): 6 steps = reference (worst %.2g)",
              adam, adam ? "Adam's update per rank, accumulated" : "momentum correction", worst);
    }
}

static void test_econtrol(sqz_ctx *ctx) {
    CHECK(run_spec(ctx, "econtrol:density=0.05,eta=0.3", D, G) == 0, "econtrol runs");
    static float e[N], hi[N], h[N], x[N];
    memset(e, 0, sizeof e), memset(hi, 0, sizeof hi), memset(h, 0, sizeof h);
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < N; i++) x[i] = 0.3f * e[i] + (G[s][i] - hi[i]), e[i] += G[s][i] - hi[i];
        for (int t = 0; t < 3; t++) {
            const size_t n = (size_t)(T3[t].rows * T3[t].cols), o = T3[t].off;
            ref_topk(x + o, n, (size_t)ceil(0.05 * n), mask);
            for (size_t i = 0; i < n; i++)
                if (mask[i]) e[o + i] -= x[o + i], hi[o + i] += x[o + i], h[o + i] += x[o + i];
        }
        memcpy(R[s], h, sizeof h);
    }
    double worst = 0;
    for (int s = 0; s < STEPS; s++) worst = fmax(worst, max_rel(D[s], R[s], N));
    CHECK(worst < 1e-6, "econtrol (eta e + g - h_i compressed, h tracks): 6 steps = reference (worst %.2g)",
          worst);
}

/* PowerSGD in double: the hook's steps for one matrix (rows x cols, rank r), warm-started Q */
static void ref_psgd(const double *M, int rows, int cols, int r, double *Q, double *out) {
    double *P = calloc((size_t)rows * r, sizeof *P);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < r; j++)
            for (int k = 0; k < cols; k++) P[i * r + j] += M[i * cols + k] * Q[k * r + j];
    for (int j = 0; j < r; j++) {
        for (int i = 0; i < j; i++) {
            double d = 0;
            for (int k = 0; k < rows; k++) d += P[k * r + i] * P[k * r + j];
            for (int k = 0; k < rows; k++) P[k * r + j] -= d * P[k * r + i];
        }
        double nn = 0;
        for (int k = 0; k < rows; k++) nn += P[k * r + j] * P[k * r + j];
        for (int k = 0; k < rows; k++) P[k * r + j] /= sqrt(nn) + 1e-8;
    }
    for (int k = 0; k < cols; k++)
        for (int j = 0; j < r; j++) {
            double a = 0;
            for (int i = 0; i < rows; i++) a += M[i * cols + k] * P[i * r + j];
            Q[k * r + j] = a;
        }
    for (int i = 0; i < rows; i++)
        for (int k = 0; k < cols; k++) {
            double a = 0;
            for (int j = 0; j < r; j++) a += P[i * r + j] * Q[k * r + j];
            out[i * cols + k] = a;
        }
    free(P);
}

static void test_powersgd(sqz_ctx *ctx) {
    /* a rank-1 gradient goes through rank 1 exactly (the vector and the small matrix go dense) */
    uint64_t s = 5;
    for (int i = 0; i < N; i++) G[0][i] = test_frand(&s);
    for (int i = 0; i < 24; i++)
        for (int k = 0; k < 40; k++) G[0][i * 40 + k] = (float)(i - 11.5) * 0.01f * (float)(k % 5 - 2);
    for (int s2 = 1; s2 < STEPS; s2++) memcpy(G[s2], G[0], sizeof G[0]);
    CHECK(run_spec(ctx, "powersgd:rank=1", D, G) == 0, "powersgd runs");
    CHECK(max_rel(D[0], G[0], 960) < 1e-5, "powersgd rank 1: a rank-1 matrix arrives exact (%.2g)",
          max_rel(D[0], G[0], 960));

    /* random gradients, rank 2: the dense parts exact; the 24x40 matrix over 3 warm-started steps
     * equals the double reference. A step's direction is P P^T M with P spanning M Q_prev, and
     * Q_prev spans the last direction's row space: so any basis of that space gives the same
     * direction, and the reference starts from Q = D0^T X (X random) after the first step. */
    s = 9;
    for (int st = 0; st < STEPS; st++) rand_grad(G[st], &s, 0.1f);
    CHECK(run_spec(ctx, "powersgd:rank=2", D, G) == 0, "powersgd rank 2 runs");
    const double wv = max_rel(D[0] + 1088, G[0] + 1088, 37);
    CHECK(wv == 0, "powersgd: the vector goes dense, exact (%.2g)", wv);
    double *M = malloc(960 * sizeof *M), *Q = calloc(80, sizeof *Q), *out = malloc(960 * sizeof *out),
           *e = malloc(960 * sizeof *e);
    for (int i = 0; i < 960; i++) e[i] = (double)G[0][i] - D[0][i];
    for (int i = 0; i < 24; i++) {
        const double x0 = test_frand(&s), x1 = test_frand(&s);
        for (int k = 0; k < 40; k++) Q[k * 2] += D[0][i * 40 + k] * x0, Q[k * 2 + 1] += D[0][i * 40 + k] * x1;
    }
    double worst = 0;
    for (int st = 1; st < 4; st++) {
        for (int i = 0; i < 960; i++) M[i] = e[i] + G[st][i];
        ref_psgd(M, 24, 40, 2, Q, out);
        double mx = 0, d = 0;
        for (int i = 0; i < 960; i++) mx = fmax(mx, fabs(out[i])), d = fmax(d, fabs(out[i] - D[st][i]));
        worst = fmax(worst, d / mx);
        for (int i = 0; i < 960; i++) e[i] = M[i] - out[i];
    }
    CHECK(worst < 1e-4, "powersgd: 3 warm-started steps of the 24x40 matrix = the double reference "
          "(worst %.2g of the largest value)", worst);
    free(M), free(Q), free(out), free(e);
}

static void test_lgreco_solve(void) {
    uint64_t s = 3;
    int ok = 1;
    for (int trial = 0; trial < 50 && ok; trial++) {
        enum { L = 5, C = 3 };
        double err[L * C], size[L * C];
        for (int l = 0; l < L; l++)
            for (int c = 0; c < C; c++) { /* higher level: more bytes, less error */
                err[l * C + c] = (0.5 + test_frand(&s) * 0.4) * pow(0.3, c) * (1 + l);
                size[l * C + c] = (1 + c) * 100.0 * (1.5 + test_frand(&s));
            }
        int ch[L];
        if (sqz_gc_lgreco_solve(L, C, err, size, 1, 1000, ch)) { ok = 0; break; }
        double budget = 0, got = 0, got_err = 0;
        for (int l = 0; l < L; l++) budget += err[l * C + 1], got += size[l * C + ch[l]];
        const double unit = budget / 1000;
        long cap = 0;
        for (int l = 0; l < L; l++) cap += llround(err[l * C + 1] / unit), got_err += llround(err[l * C + ch[l]] / unit);
        double best = INFINITY;
        for (int m = 0; m < 243; m++) { /* 3^5 choices */
            double sz = 0;
            long eb = 0;
            for (int l = 0, q = m; l < L; l++, q /= 3) sz += size[l * C + q % 3], eb += llround(err[l * C + q % 3] / unit);
            if (eb <= cap && sz < best) best = sz;
        }
        ok = got_err <= cap && fabs(got - best) < 1e-9;
    }
    CHECK(ok, "L-GreCo knapsack = brute force over 3^5 choices (50 instances), within the error budget");
}

static void test_specs(sqz_ctx *ctx) {
    const sqz_gc_method *m;
    sqz_gc_args a;
    CHECK(sqz_gc_parse(ctx, "dgc:density=0.01,momentum=0.8", &m, &a) == SQZ_OK && !strcmp(m->name, "dgc") &&
          sqz_gc_arg(&a, "density", 0) == 0.01 && sqz_gc_arg(&a, "warmup", 4) == 4, "spec dgc:density=0.01,... parses");
    CHECK(sqz_gc_parse(ctx, "zip", &m, &a) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "powersgd"),
          "unknown compressor refused, the message lists them: %s", sqz_ctx_error(ctx));
    CHECK(sqz_gc_parse(ctx, "powersgd:rnk=4", &m, &a) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "rank=R"),
          "unknown key refused with the keys it takes: %s", sqz_ctx_error(ctx));
    CHECK(sqz_gc_parse(ctx, "topk:density", &m, &a) == SQZ_ERR_ARG, "a key without a value is refused");
    sqz_comm c;
    sqz_gc_env e;
    env1(&e, &c, ctx);
    void *st = NULL;
    CHECK(sqz_gc_parse(ctx, "topk:density=2", &m, &a) == SQZ_OK && m->create(&e, &a, &st) == SQZ_ERR_ARG,
          "density 2 refused: %s", sqz_ctx_error(ctx));
    CHECK(sqz_gc_parse(ctx, "lgreco:ref=3", &m, &a) == SQZ_OK && m->create(&e, &a, &st) == SQZ_ERR_ARG,
          "lgreco ref outside its levels refused: %s", sqz_ctx_error(ctx));
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    uint64_t s = 1;
    for (int st = 0; st < STEPS; st++) rand_grad(G[st], &s, st == 0 ? 1.0f : 0.05f);
    test_select();
    test_topk_ef(ctx);
    test_dgc(ctx);
    test_econtrol(ctx);
    test_powersgd(ctx);
    test_lgreco_solve();
    test_specs(ctx);
    sqz_ctx_free(ctx);
    return test_done();
}
