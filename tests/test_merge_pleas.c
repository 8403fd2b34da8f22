/* test_merge_pleas.c - PLeaS (src/merge/pleas.c) and its numerics: the linear assignment
 * solver (math/lap.h) against brute force over every permutation of small random cost
 * matrices, the damped least squares (math/ridge.h) against a naive Gaussian elimination, and
 * the method end to end: sqz-llama-14m merged with a copy of itself whose residual stream, FFN
 * units and attention heads (kv groups, query heads within them) are shuffled gives the model
 * back (every permutation found), at FFN width 1 and 1.5 x, while the linear merge of the same
 * pair is ruined; a config without calibration text is refused. */
#include <sys/stat.h>

#include "merge_shuffled.h"

#include "math/lap.h"
#include "math/ridge.h"

static uint64_t rng = 777;
static double urand(void) { return merge_rng_uniform(&rng); }

/* ------------------------------------------------------------------ LAP */

static double best_brute(const double *c, int n, int *perm, int k, int *used) {
    if (k == n) {
        double s = 0;
        for (int i = 0; i < n; i++) s += c[i * n + perm[i]];
        return s;
    }
    double best = INFINITY;
    for (int j = 0; j < n; j++) {
        if (used[j]) continue;
        used[j] = 1, perm[k] = j;
        const double v = best_brute(c, n, perm, k + 1, used);
        if (v < best) best = v;
        used[j] = 0;
    }
    return best;
}

static void test_lap(void) {
    int bad = 0, bad_perm = 0, trials = 0;
    for (int n = 1; n <= 7; n++)
        for (int t = 0; t < 40; t++) {
            double c[49];
            for (int k = 0; k < n * n; k++) /* some with ties (small integers), some real */
                c[k] = t % 2 ? floor(urand() * 4) : urand() * 10 - 5;
            int col[7], perm[7], used[7] = { 0 }, seen[7] = { 0 };
            if (sqz_lap_solve(c, n, col) != 0) { bad++; continue; }
            double s = 0;
            for (int i = 0; i < n; i++) {
                if (col[i] < 0 || col[i] >= n || seen[col[i]]++) bad_perm++;
                else s += c[i * n + col[i]];
            }
            if (fabs(s - best_brute(c, n, perm, 0, used)) > 1e-9) bad++;
            trials++;
        }
    CHECK(bad == 0 && bad_perm == 0, "LAP: the optimum of all %d random cost matrices n = 1..7 (brute force), "
          "each a permutation (%d wrong, %d not permutations)", trials, bad, bad_perm);
    /* a large one whose optimum is a known permutation: cost 0 on it, 1 + noise elsewhere */
    enum { N = 300 };
    double *c = malloc(sizeof(double) * N * N);
    int p[N], col[N];
    for (int i = 0; i < N; i++) p[i] = i;
    for (int i = N - 1; i > 0; i--) {
        const int j = (int)(urand() * (i + 1)), t = p[i];
        p[i] = p[j], p[j] = t;
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) c[i * N + j] = j == p[i] ? 0 : 1 + urand();
    int ok = sqz_lap_solve(c, N, col) == 0;
    for (int i = 0; i < N && ok; i++) ok = col[i] == p[i];
    CHECK(ok, "LAP n = %d: the planted permutation", N);
    free(c);
}

/* ------------------------------------------------------------------ ridge */

static void test_ridge(void) {
    enum { n = 12, k = 3, T = 40 };
    double X[T][n], G[n * n], B[k * n], A[n][n + 1];
    float W0[k * n];
    for (int t = 0; t < T; t++)
        for (int j = 0; j < n; j++) X[t][j] = urand() * 2 - 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += X[t][i] * X[t][j];
            G[i * n + j] = s;
        }
    for (int r = 0; r < k * n; r++) B[r] = urand() * 4 - 2, W0[r] = (float)(urand() - 0.5);
    const double lambda = 0.7;
    double worst = 0;
    for (int r = 0; r < k; r++) { /* naive: Gaussian elimination with partial pivoting */
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) A[i][j] = G[i * n + j] + (i == j ? lambda : 0);
            A[i][n] = B[r * n + i] + lambda * W0[r * n + i];
        }
        for (int c = 0; c < n; c++) {
            int piv = c;
            for (int i = c + 1; i < n; i++)
                if (fabs(A[i][c]) > fabs(A[piv][c])) piv = i;
            for (int j = 0; j <= n; j++) {
                const double t = A[c][j];
                A[c][j] = A[piv][j], A[piv][j] = t;
            }
            for (int i = 0; i < n; i++) {
                if (i == c) continue;
                const double f = A[i][c] / A[c][c];
                for (int j = c; j <= n; j++) A[i][j] -= f * A[c][j];
            }
        }
        double Bs[n];
        for (int i = 0; i < n; i++) Bs[i] = A[i][n] / A[i][i];
        static double Gc[n * n], Bc[k * n];
        memcpy(Gc, G, sizeof G);
        memcpy(Bc, B, sizeof B);
        double used = -1;
        if (sqz_ridge_solve(Gc, n, Bc, k, W0, lambda, &used) != 0 || used != lambda) worst = INFINITY;
        for (int i = 0; i < n; i++) worst = fmax(worst, fabs(Bc[r * n + i] - Bs[i]));
    }
    CHECK(worst < 1e-10, "ridge: (G + lambda I) w = b + lambda w0 as Gaussian elimination solves it (worst %.2g)", worst);
    /* a singular G without damping: raised until it factors */
    double S[4] = { 1, 1, 1, 1 }, b[2] = { 1, 1 }, used = 0;
    CHECK(sqz_ridge_solve(S, 2, b, 1, NULL, 0, &used) == 0 && used > 0 && isfinite(b[0]),
          "ridge: a singular G is damped until it factors (lambda %g)", used);
}

/* ------------------------------------------------------------------ end to end */

static char tmp_root[256];

static void test_self_merge(sqz_ctx *ctx) {
    const char *src = test_shared("models/sqz-llama-14m");
    const char *text = test_shared("models/merge/shakespeare.train.txt");
    if (!src || !text) {
        SKIP("pleas on a shuffled copy: needs ../shared");
        return;
    }
    char base[1024], calib[1024], shuf[600], out[600], yaml[3000], cfg[600];
    snprintf(base, sizeof base, "%s", src);
    snprintf(calib, sizeof calib, "%s", text);
    snprintf(shuf, sizeof shuf, "%s/shuffled", tmp_root);
    CHECK(ms_write_shuffled(ctx, base, shuf, &rng, 0) == 0, "a shuffled copy of sqz-llama-14m: %s", sqz_ctx_error(ctx));
    /* the eval text: sotu test, which calibration never sees */
    const char *ev = test_shared("data/domains/sotu.test.txt");
    size_t n = 0;
    int32_t *ids = NULL;
    if (ms_eval_ids(ctx, base, ev, &ids, &n)) return;
    const double p_base = ms_ppl(ctx, base, ids, n), p_shuf = ms_ppl(ctx, shuf, ids, n);
    CHECK(fabs(p_shuf - p_base) < 1e-3 * p_base, "the shuffled copy computes the same function (ppl %.4f vs %.4f)",
          p_shuf, p_base);
    snprintf(cfg, sizeof cfg, "%s/pleas.yaml", tmp_root);
    const char *budgets[] = { "", "parameters: {budget: 1.5}\n" };
    for (int b = 0; b < 2; b++) {
        snprintf(yaml, sizeof yaml, "merge_method: pleas\nmodels:\n  - model: %s\n  - model: %s\n%s", base, shuf, budgets[b]);
        ms_write_text(cfg, yaml);
        snprintf(out, sizeof out, "%s/merged%d", tmp_root, b);
        const sqz_merge_opts o = { .calib = calib, .calib_tokens = 2048, .calib_ctx = 128 };
        sqz_merge_result r;
        CHECK(sqz_merge_models(ctx, cfg, out, &o, &r) == SQZ_OK, "pleas of the model and its shuffled copy%s: %s",
              b ? " at budget 1.5" : "", sqz_ctx_error(ctx));
        const double p = ms_ppl(ctx, out, ids, n);
        CHECK(fabs(p - p_base) < (b ? 5e-3 : 1e-3) * p_base, "%s: the model back (ppl %.4f vs %.4f): every "
              "permutation found", b ? "budget 1.5 (FFN 1536 wide)" : "budget 1", p, p_base);
        if (b) {
            size_t cl = 0;
            char cp[700];
            snprintf(cp, sizeof cp, "%s/config.json", out);
            uint8_t *cj = test_read_file(cp, &cl);
            CHECK(cj && strstr((const char *)cj, "\"intermediate_size\":\t1536"), "budget 1.5: config.json says "
                  "intermediate_size 1536");
            free(cj);
        }
        ms_rm_tree(out);
    }
    /* the same pair averaged without matching: ruined */
    snprintf(yaml, sizeof yaml, "merge_method: linear\nmodels:\n  - model: %s\n  - model: %s\nparameters: {weight: 1}\n", base, shuf);
    ms_write_text(cfg, yaml);
    snprintf(out, sizeof out, "%s/linear", tmp_root);
    const sqz_merge_opts none = { 0 };
    CHECK(sqz_merge_models(ctx, cfg, out, &none, NULL) == SQZ_OK, "linear of the same pair");
    const double pl = ms_ppl(ctx, out, ids, n);
    CHECK(pl > 3 * p_base, "linear of the same pair without matching is ruined (ppl %.1f vs %.1f)", pl, p_base);
    /* no calibration text: refused before any work, nothing written */
    snprintf(yaml, sizeof yaml, "merge_method: pleas\nmodels:\n  - model: %s\n  - model: %s\n", base, shuf);
    ms_write_text(cfg, yaml);
    snprintf(out, sizeof out, "%s/nocalib", tmp_root);
    struct stat sb;
    CHECK(sqz_merge_models(ctx, cfg, out, &none, NULL) == SQZ_ERR_ARG && stat(out, &sb) != 0,
          "pleas without calibration text refused, nothing written: %s", sqz_ctx_error(ctx));
    const sqz_merge_opts lin_calib = { .calib = calib };
    snprintf(yaml, sizeof yaml, "merge_method: linear\nmodels:\n  - model: %s\n", base);
    ms_write_text(cfg, yaml);
    CHECK(sqz_merge_models(ctx, cfg, out, &lin_calib, NULL) == SQZ_ERR_ARG, "calibration text for linear refused");
    sqz_free(ids);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/sqz-test-pleas-XXXXXX");
    if (!mkdtemp(tmp_root)) {
        printf("not ok - mkdtemp\n");
        return 1;
    }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, 2);
    test_lap();
    test_ridge();
    if (getenv("SQZ_QUICK")) SKIP("pleas end to end (SQZ_QUICK)");
    else test_self_merge(ctx);
    sqz_ctx_free(ctx);
    ms_rm_tree(tmp_root);
    return test_done();
}
