/* test_prune.c - each pruner (src/prune/) against a naive reference on small matrices:
 * magnitude and Wanda against a rank count (element i is removed iff fewer than n_zero scores
 * of its group are below it, ties by index), SparseGPT against a plain per-column Optimal Brain
 * Surgeon loop in double (the inverse Hessian by Gauss-Jordan, each removal's update
 * -(w_i / [H^-1]_ii) [H^-1]_i,: and the column eliminated from H^-1 after it: no Cholesky
 * factor, no lazy batches); the mask helpers, the level checks and the levels file. */
#include "prune/levels.h"
#include "prune/pruner.h"
#include "sqz.h"
#include "test.h"

#define PRUNE_REF_SEED 88172645463325252ull
#include "prune_ref.h"

static const sqz_pruner *get(const char *name, void **state) {
    const sqz_pruner *p = NULL;
    *state = NULL;
    sqz_pruner_open(NULL, name, &p, state);
    return p;
}

/* The reference for magnitude (group = matrix, or N:M groups) and Wanda (group = row). */
static void ref_score_prune(float *W, int rows, int cols, const float *score, const sqz_prune_level *lv, int per_row) {
    uint8_t *pr = malloc((size_t)rows * cols);
    if (lv->n > 0) {
        for (int r = 0; r < rows; r++)
            for (int g = 0; g < cols; g += lv->m) ref_smallest(score + r * cols + g, lv->m, lv->m - lv->n, pr + r * cols + g);
    } else if (per_row) {
        for (int r = 0; r < rows; r++)
            ref_smallest(score + r * cols, cols, (int)floor((1 - lv->density) * cols + 1e-7), pr + r * cols);
    } else {
        ref_smallest(score, rows * cols, (int)floor((1 - lv->density) * rows * cols + 1e-7), pr);
    }
    for (int i = 0; i < rows * cols; i++)
        if (pr[i]) W[i] = 0;
    free(pr);
}

static int count_zero(const float *W, int n) {
    int z = 0;
    for (int i = 0; i < n; i++) z += W[i] == 0.0f;
    return z;
}

static void test_helpers(void) {
    CHECK(sqz_prune_n_zero(0.5, 10) == 5 && sqz_prune_n_zero(0.7, 10) == 3 && sqz_prune_n_zero(0.3, 10) == 7 &&
              sqz_prune_n_zero(1, 10) == 0 && sqz_prune_n_zero(0.25, 7) == 5,
          "n_zero: floor((1 - d) n) without rounding surprises");
    const float s[8] = { 3, 1, 2, 1, 5, 0, 0, 9 };
    uint8_t p[8], want1[8] = { 0, 1, 0, 1, 0, 1, 1, 0 };
    sqz_prune_select_smallest(s, 8, 4, p);
    CHECK(!memcmp(p, want1, 8), "smallest 4: the zeros and the ones (ties by index)");
    sqz_prune_select_smallest(s, 8, 3, p);
    const uint8_t want2[8] = { 0, 1, 0, 0, 0, 1, 1, 0 };
    CHECK(!memcmp(p, want2, 8), "smallest 3: the tie 1, 1 goes to the lower index");
    sqz_prune_select_nm(s, 8, 2, 4, p);
    const uint8_t want3[8] = { 0, 1, 0, 1, 0, 1, 1, 0 };
    CHECK(!memcmp(p, want3, 8), "2:4 per group of four");
    sqz_prune_level lv;
    CHECK(!sqz_prune_level_parse("2:4", &lv) && lv.n == 2 && lv.m == 4 && !sqz_prune_level_parse("0.6", &lv) &&
              lv.n == 0 && lv.density == 0.6 && sqz_prune_level_parse("2:", &lv) && sqz_prune_level_parse("x", &lv) &&
              sqz_prune_level_parse("0.5q", &lv) && sqz_prune_level_parse("", &lv),
          "level parse: 2:4, 0.6; malformed ones refused");
    sqz_ctx *ctx = sqz_ctx_new();
    struct { sqz_prune_level lv; int64_t cols; int ok; const char *what; } cases[] = {
        { { .density = 0.5 }, 64, 1, "0.5" },        { { .density = 1 }, 64, 1, "1 (dense)" },
        { { .density = 0 }, 64, 0, "0" },            { { .density = 1.5 }, 64, 0, "1.5" },
        { { .density = -0.1 }, 64, 0, "-0.1" },      { { .density = NAN }, 64, 0, "nan" },
        { { .n = 2, .m = 4 }, 64, 1, "2:4" },        { { .n = 4, .m = 8 }, 64, 1, "4:8" },
        { { .n = 2, .m = 4 }, 30, 0, "2:4 of 30" },  { { .n = 4, .m = 2 }, 64, 0, "4:2" },
        { { .n = 0, .m = 4 }, 64, 0, "0:4" },        { { .n = 2, .m = 128 }, 128, 0, "2:128" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const sqz_status st = sqz_prune_level_check(ctx, &cases[i].lv, cases[i].cols, "m");
        CHECK((st == SQZ_OK) == cases[i].ok && (cases[i].ok || st == SQZ_ERR_ARG), "level %s: %s%s", cases[i].what,
              cases[i].ok ? "accepted" : "refused: ", cases[i].ok ? "" : sqz_ctx_error(ctx));
    }
    sqz_ctx_free(ctx);
}

static void test_levels_file(void) {
    char path[] = "/tmp/sqz-test-levels-XXXXXX";
    const int fd = mkstemp(path);
    const char good[] = "{\"blk.0.attn_q.weight\": 0.4, \"blk.1.ffn_up.weight\": \"2:4\", \"x\": \"0.7\"}";
    CHECK(fd >= 0 && write(fd, good, strlen(good)) == (ssize_t)strlen(good), "levels file written");
    close(fd);
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_prune_levels lv;
    sqz_status st = sqz_prune_levels_load(ctx, path, &lv);
    CHECK(st == SQZ_OK && lv.n == 3 && !strcmp(lv.names[1], "blk.1.ffn_up.weight") && lv.level[0].density == 0.4 &&
              lv.level[1].n == 2 && lv.level[1].m == 4 && lv.level[2].density == 0.7,
          "levels: numbers, \"N:M\" and numeric strings");
    if (!st) sqz_prune_levels_free(&lv);
    const char *bad[] = { "[0.5]", "{\"a\": true}", "{\"a\": \"2-4\"}", "{" };
    for (int i = 0; i < 4; i++) {
        FILE *f = fopen(path, "wb");
        fputs(bad[i], f);
        fclose(f);
        CHECK(sqz_prune_levels_load(ctx, path, &lv) == SQZ_ERR_ARG, "levels %s refused: %s", bad[i], sqz_ctx_error(ctx));
    }
    unlink(path);
    CHECK(sqz_prune_levels_load(ctx, path, &lv) == SQZ_ERR_IO, "missing levels file: %s", sqz_ctx_error(ctx));
    sqz_ctx_free(ctx);
}

static void test_magnitude_wanda(void) {
    enum { R = 12, C = 32 };
    static double H[C * C];
    make_h(H, C, 200, 1.5);
    const sqz_prune_level levels[] = { { .density = 0.5 }, { .density = 0.3 }, { .density = 0.75 },
                                       { .n = 2, .m = 4, .density = 0.5 }, { .n = 4, .m = 8, .density = 0.5 } };
    for (int w = 0; w < 2; w++) {
        void *state;
        const sqz_pruner *p = get(w ? "wanda" : "magnitude", &state);
        CHECK(p && p->calib == w, "%s found, calibration %d", w ? "wanda" : "magnitude", w);
        if (!p) continue;
        for (size_t li = 0; li < sizeof levels / sizeof *levels; li++) {
            const sqz_prune_level *lv = &levels[li];
            float W[R * C], ref[R * C], score[R * C];
            for (int i = 0; i < R * C; i++) {
                W[i] = (float)nrand();
                if (i % 7 == 3) W[i] = W[i - 1]; /* ties */
            }
            for (int r = 0; r < R; r++)
                for (int j = 0; j < C; j++)
                    score[r * C + j] = fabsf(W[r * C + j]) * (w ? (float)sqrt(H[j * C + j]) : 1.0f);
            memcpy(ref, W, sizeof W);
            ref_score_prune(ref, R, C, score, lv, w);
            const sqz_status st = p->prune(state, NULL, W, R, C, w ? H : NULL, lv);
            CHECK(st == SQZ_OK && !memcmp(W, ref, sizeof W), "%s at %s%g: the reference's weights, bit for bit",
                  p->name, lv->n ? "N:M " : "density ", lv->n ? (double)lv->n / lv->m : lv->density);
            if (w || lv->n) { /* the group is a row (or N:M): every row loses the same count */
                int rows_ok = 1;
                const int want_row = lv->n ? C - C / lv->m * lv->n : (int)floor((1 - lv->density) * C + 1e-7);
                for (int r = 0; r < R; r++) rows_ok &= count_zero(W + r * C, C) == want_row;
                CHECK(rows_ok, "%s: every row has %d zeros", p->name, want_row);
            } else {
                CHECK(count_zero(W, R * C) == (int)floor((1 - lv->density) * R * C + 1e-7),
                      "magnitude: the matrix has its exact share of zeros");
            }
        }
        free(state);
    }
    /* Wanda is not magnitude: with inputs of very different scales the masks differ */
    float A[R * C], B[R * C];
    for (int i = 0; i < R * C; i++) A[i] = B[i] = (float)nrand();
    void *s1, *s2;
    const sqz_prune_level half = { .density = 0.5 };
    get("magnitude", &s1)->prune(s1, NULL, A, R, C, NULL, &half);
    get("wanda", &s2)->prune(s2, NULL, B, R, C, H, &half);
    int diff = 0;
    for (int i = 0; i < R * C; i++) diff += (A[i] == 0) != (B[i] == 0);
    CHECK(diff > 20, "wanda's mask differs from magnitude's (%d weights)", diff);
    CHECK(out_err(A, B, 0, C, H) == 0 && out_err(A, A, R, C, H) == 0, "out_err: 0 for no difference");
}

/* The plain per-column OBS loop (double): see the file comment. Block Bs, damp as sparsegpt's. */
static void ref_sparsegpt(float *Wf, int rows, int cols, const double *H0, const sqz_prune_level *lv, int Bs,
                          double percdamp) {
    const int n = cols;
    double *H = malloc((size_t)n * n * sizeof *H), *A = malloc((size_t)n * 2 * n * sizeof *A);
    double *Hi = malloc((size_t)n * n * sizeof *Hi), *dseq = malloc((size_t)n * sizeof *dseq);
    double *W = malloc((size_t)rows * n * sizeof *W);
    memcpy(H, H0, (size_t)n * n * sizeof *H);
    for (int i = 0; i < rows * n; i++) W[i] = Wf[i];
    double tr = 0;
    for (int i = 0; i < n; i++) {
        if (H[i * n + i] == 0) {
            H[i * n + i] = 1;
            for (int r = 0; r < rows; r++) W[r * n + i] = 0;
        }
        tr += H[i * n + i];
    }
    for (int i = 0; i < n; i++) H[i * n + i] += percdamp * tr / n;
    /* H^-1, and dseq[i]: [H^-1]_ii once columns 0..i-1 are eliminated (the saliency's denominator) */
    ref_inverse_seq(H, n, A, Hi, dseq);
    uint8_t *mask = calloc((size_t)rows * n, 1);
    for (int i = 0; i < n; i++) {
        if (!lv->n && i % Bs == 0) { /* the block's mask from the current weights */
            const int i2 = i + Bs < n ? i + Bs : n, cnt = i2 - i;
            float *sc = malloc((size_t)rows * cnt * sizeof *sc);
            uint8_t *pr = malloc((size_t)rows * cnt);
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < cnt; j++) {
                    const float w = (float)W[r * n + i + j], d = (float)sqrt(dseq[i + j]);
                    sc[r * cnt + j] = w * w / (d * d);
                }
            ref_smallest(sc, rows * cnt, (int)floor((1 - lv->density) * rows * cnt + 1e-7), pr);
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < cnt; j++) mask[r * n + i + j] = pr[r * cnt + j];
            free(sc);
            free(pr);
        }
        if (lv->n && i % lv->m == 0)
            for (int r = 0; r < rows; r++) {
                float sc[64];
                for (int j = 0; j < lv->m; j++) {
                    const float w = (float)W[r * n + i + j], d = (float)sqrt(dseq[i + j]);
                    sc[j] = w * w / (d * d);
                }
                ref_smallest(sc, lv->m, lv->m - lv->n, mask + r * n + i);
            }
        for (int r = 0; r < rows; r++)
            if (mask[r * n + i]) { /* OBS: remove w_i, move the remaining weights */
                const double e = W[r * n + i] / Hi[i * n + i];
                for (int j = i + 1; j < n; j++) W[r * n + j] -= e * Hi[i * n + j];
                W[r * n + i] = 0;
            }
        for (int a = i + 1; a < n; a++) /* eliminate column i from H^-1 */
            for (int b = i + 1; b < n; b++) Hi[a * n + b] -= Hi[a * n + i] * Hi[i * n + b] / Hi[i * n + i];
    }
    for (int i = 0; i < rows * n; i++) Wf[i] = (float)W[i];
    free(mask);
    free(H);
    free(A);
    free(Hi);
    free(dseq);
    free(W);
}

static void test_sparsegpt(void) {
    { /* a hand-checked case: H^-1 by hand, w_0 removed, w_j -= (w_0 / [H^-1]_00) [H^-1]_0j */
        double H4[16] = { 4, 1, 0.5, 0, 1, 3, 0.2, 0.1, 0.5, 0.2, 2, 0.3, 0, 0.1, 0.3, 1 };
        const float want[4] = { 0, -1.9678810f, 0.5233193f, 1.4897923f };
        float W4[4] = { 0.1f, -2, 0.5f, 1.5f }, R4[4] = { 0.1f, -2, 0.5f, 1.5f };
        void *st4;
        const sqz_pruner *p4 = NULL;
        sqz_pruner_open(NULL, "sparsegpt:damp=0", &p4, &st4);
        const sqz_prune_level lv = { .density = 0.75 };
        p4->prune(st4, NULL, W4, 1, 4, H4, &lv);
        ref_sparsegpt(R4, 1, 4, H4, &lv, 128, 0);
        int ok = 1;
        for (int i = 0; i < 4; i++) ok &= fabsf(W4[i] - want[i]) < 1e-5f && fabsf(R4[i] - want[i]) < 1e-5f;
        CHECK(ok, "sparsegpt and the reference on a hand-checked 1 x 4 case (%g %g %g %g / %g %g %g %g)", W4[0], W4[1],
              W4[2], W4[3], R4[0], R4[1], R4[2], R4[3]);
        free(st4);
    }
    enum { R = 10, C = 64, BS = 16 };
    static double H[C * C];
    static double Hm[C * C];
    make_h(H, C, 300, 1.5);
    for (int r = 0; r < C; r++) H[5 * C + r] = H[r * C + 5] = 0; /* a dead input */
    /* milder input scales for the comparison with Wanda: where a few inputs dominate, the
     * damping (1 % of the mean diagonal) swamps the others' curvature */
    make_h(Hm, C, 300, 0.3);
    const sqz_prune_level levels[] = { { .density = 0.5 }, { .density = 0.3 }, { .density = 0.8 },
                                       { .n = 2, .m = 4, .density = 0.5 }, { .n = 4, .m = 8, .density = 0.5 } };
    for (size_t li = 0; li < sizeof levels / sizeof *levels; li++) {
        const sqz_prune_level *lv = &levels[li];
        void *state = NULL;
        const sqz_pruner *p = NULL;
        sqz_status st = sqz_pruner_open(NULL, "sparsegpt:block=16", &p, &state);
        float W[R * C], ref[R * C], W0[R * C];
        for (int i = 0; i < R * C; i++) W0[i] = W[i] = ref[i] = (float)nrand();
        sqz_ctx *ctx = sqz_ctx_new();
        sqz_ctx_set_threads(ctx, 3);
        if (!st) st = p->prune(state, ctx, W, R, C, H, lv);
        ref_sparsegpt(ref, R, C, H, lv, BS, 0.01);
        int same_mask = 1;
        double maxd = 0, maxw = 0;
        for (int i = 0; i < R * C; i++) {
            same_mask &= (W[i] == 0) == (ref[i] == 0);
            maxd = fmax(maxd, fabs((double)W[i] - ref[i]));
            maxw = fmax(maxw, fabs((double)ref[i]));
        }
        const char *what = lv->n ? (lv->m == 4 ? "2:4" : "4:8") : (lv->density == 0.5 ? "0.5" : lv->density == 0.3 ? "0.3" : "0.8");
        CHECK(st == SQZ_OK && same_mask, "sparsegpt %s: the same weights removed as the per-column OBS loop", what);
        CHECK(maxd <= 1e-4 * maxw + 1e-5, "sparsegpt %s: kept weights within %.2g of the reference's (max |w| %.3g)",
              what, maxd, maxw);
        int block_ok = 1;
        for (int b = 0; b < C; b += BS) {
            int z = 0;
            for (int r = 0; r < R; r++)
                for (int j = b; j < b + BS; j++) z += W[r * C + j] == 0;
            block_ok &= z == (lv->n ? R * BS / lv->m * (lv->m - lv->n) : (int)floor((1 - lv->density) * R * BS + 1e-7));
        }
        CHECK(block_ok, "sparsegpt %s: each block of %d columns has its exact share of zeros", what, BS);
        /* SparseGPT's updates beat Wanda's mask alone on the output error */
        float Wd[R * C], Ws[R * C];
        memcpy(Wd, W0, sizeof Wd);
        memcpy(Ws, W0, sizeof Ws);
        void *ws;
        get("wanda", &ws)->prune(ws, NULL, Wd, R, C, Hm, lv);
        p->prune(state, ctx, Ws, R, C, Hm, lv);
        const double e_s = out_err(W0, Ws, R, C, Hm), e_w = out_err(W0, Wd, R, C, Hm);
        CHECK(e_s < e_w, "sparsegpt %s: output error %.4g below wanda's %.4g", what, e_s, e_w);
        sqz_ctx_free(ctx);
        free(state);
    }
    /* errors */
    void *state = NULL;
    const sqz_pruner *p = NULL;
    sqz_ctx *ctx = sqz_ctx_new();
    CHECK(sqz_pruner_open(ctx, "sparsegpt:damp=-1", &p, &state) == SQZ_ERR_ARG, "damp -1: %s", sqz_ctx_error(ctx));
    CHECK(sqz_pruner_open(ctx, "wanda:damp=0.1", &p, &state) == SQZ_ERR_ARG, "wanda takes no damp: %s", sqz_ctx_error(ctx));
    CHECK(sqz_pruner_open(ctx, "obs", &p, &state) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "sparsegpt"),
          "unknown method lists the known: %s", sqz_ctx_error(ctx));
    sqz_ctx_free(ctx);
}

int main(void) {
    test_helpers();
    test_levels_file();
    test_magnitude_wanda();
    test_sparsegpt();
    return test_done();
}
