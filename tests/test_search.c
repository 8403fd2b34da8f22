/* test_search.c - EvoPress and the level database (src/search/), against independent
 * references:
 *
 *   - the search core on a made-up space whose optimum brute force finds (a fitness that is
 *     not a sum of per-gene costs, under a budget): EvoPress finds it, the same seed gives the
 *     same answer, and malformed stage lists are refused;
 *   - a block whose attention and MLP matrices have no data is skipped: the logits equal those
 *     of the same model without that block (session.c);
 *   - the probe's reference states: a child scored from its first changed layer on its
 *     parent's states gets exactly the KL it gets run from the start;
 *   - depth on stories260K: EvoPress finds the brute-force optimum for 1 and 2 dropped blocks,
 *     and the written GGUF has the blocks left;
 *   - the level database and the quant search on sqz-llama-26m's first two blocks (../shared;
 *     a few windows of 64 tokens, plain GPTQ, so that it takes seconds): every matrix at the five k-quants with the bytes
 *     their row sizes give; a build resumed from a part file cut mid-record writes the same
 *     bytes as one that never stopped; another calibration's part file is refused; the search
 *     keeps the budget, never ends worse than its knapsack seed on the windows it selects
 *     on, and the GGUF it writes has the chosen types and, loaded again, the KL it reported
 *     (computed here from two full evaluations).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ctx.h"
#include "math/rng.h"
#include "model/model.h"
#include "model/session.h"
#include "quant/kl_probe.h"
#include "search/evopress.h"
#include "search/levels_db.h"
#include "sqz.h"
#include "test.h"

/* ---------------------------------------------------------------- the core */

enum { NG = 6, NL = 4 };

typedef struct toy {
    double cost[NG][NL];
    int bytes[NG][NL];
    int budget;
    long calls;
} toy;

/* not additive: neighbours at the same level pay, and the first two genes interact */
static double toy_f(const toy *t, const int *g) {
    double f = 0;
    for (int i = 0; i < NG; i++) f += t->cost[i][g[i]];
    for (int i = 1; i < NG; i++) f += g[i] == g[i - 1] ? 0.15 : 0;
    return f + 0.3 * (g[0] + g[1] < 3);
}
static int toy_bytes(const toy *t, const int *g) {
    int b = 0;
    for (int i = 0; i < NG; i++) b += t->bytes[i][g[i]];
    return b;
}
static int toy_mutate(void *u, uint64_t *rng, int *g) {
    (void)u;
    const int i = (int)(sqz_splitmix64(rng) % NG);
    if (g[i] == NL - 1) return 0;
    g[i]++;
    return 1;
}
static int toy_repair(void *u, uint64_t *rng, const int *parent, int *g) {
    (void)parent;
    toy *t = u;
    while (toy_bytes(t, g) > t->budget) {
        const int i = (int)(sqz_splitmix64(rng) % NG);
        if (g[i] > 0) g[i]--;
    }
    return 1;
}
static sqz_status toy_parent(void *u, const int *g) { (void)u, (void)g; return SQZ_OK; }
static sqz_status toy_fitness(void *u, const int *g, const int *win, int n, double *kl) {
    toy *t = u;
    (void)win, (void)n;
    t->calls++;
    *kl = toy_f(t, g);
    return SQZ_OK;
}

static void test_core(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    uint64_t r = 7;
    int found = 0, trials = 5, same = 1, near = 1;
    for (int trial = 0; trial < trials; trial++) {
        toy t = { .budget = 0 };
        for (int i = 0; i < NG; i++)
            for (int k = 0; k < NL; k++) {
                t.bytes[i][k] = 2 + 2 * k + (int)(sqz_splitmix64(&r) % 2);
                t.cost[i][k] = (double)(NL - k) * (0.5 + (double)(sqz_splitmix64(&r) % 1000) / 1000.0);
            }
        t.budget = NG * 5;
        /* brute force */
        double best = HUGE_VAL;
        int g[NG] = { 0 };
        for (;;) {
            if (toy_bytes(&t, g) <= t.budget && toy_f(&t, g) < best) best = toy_f(&t, g);
            int i = 0;
            while (i < NG && ++g[i] == NL) g[i++] = 0;
            if (i == NG) break;
        }
        const sqz_evo_space sp = { .n_genes = NG, .n_windows = 4, .user = &t, .mutate = toy_mutate,
                                   .repair = toy_repair, .set_parent = toy_parent, .fitness = toy_fitness };
        sqz_evo_opts o = { .generations = 150, .offspring = 8, .seed = (uint64_t)trial };
        sqz_evo_parse_stages("4x1,1x2", &o);
        int p[NG] = { 0 }, p2[NG] = { 0 };
        long ev = 0;
        CHECK(sqz_evo_run(ctx, &sp, &o, p, &ev) == SQZ_OK && ev > 0, "toy search %d runs", trial);
        sqz_evo_run(ctx, &sp, &o, p2, NULL);
        same &= !memcmp(p, p2, sizeof p);
        found += toy_bytes(&t, p) <= t.budget && fabs(toy_f(&t, p) - best) < 1e-12;
        near &= toy_bytes(&t, p) <= t.budget && toy_f(&t, p) <= best * 1.05;
    }
    /* a heuristic: local optima exist (the neighbour term), so not every seed must get there */
    CHECK(found >= trials - 1 && near, "EvoPress finds the brute-force optimum of a non-additive toy in %d of %d "
          "(every one within 5 %%)", found, trials);
    CHECK(same, "the same seed, the same answer");
    sqz_evo_opts o = { 0 };
    CHECK(sqz_evo_parse_stages("8x1,2x4,1x16", &o) == 0 && o.n_stages == 3 && o.survivors[1] == 2 && o.windows[2] == 16,
          "stages 8x1,2x4,1x16 parse");
    CHECK(sqz_evo_parse_stages("8x1,2x4", &o) && sqz_evo_parse_stages("2x1,4x1,1x2", &o) &&
              sqz_evo_parse_stages("8x", &o) && sqz_evo_parse_stages("", &o) && sqz_evo_parse_stages("1x0", &o),
          "stages that do not end in one survivor, grow, or are malformed are refused");
    sqz_ctx_free(ctx);
}

/* ---------------------------------------------------------------- model-level pieces */

static sqz_model *load_260k(sqz_ctx *ctx) {
    sqz_model *m = NULL;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", "assets/stories260K/tok512.bin", &m) != SQZ_OK)
        CHECK(0, "stories260K loads: %s", sqz_ctx_error(ctx));
    return m;
}

static void logits_of(sqz_ctx *ctx, const sqz_model *m, const int32_t *tok, int C, float *out) {
    sqz_session *s = NULL;
    if (sqz_session_new(ctx, m, C, &s) == SQZ_OK) sqz_session_eval(s, tok, C, out, 1);
    sqz_session_free(s);
}

static void test_skip_and_ref(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m = load_260k(ctx);
    if (!m) {
        sqz_ctx_free(ctx);
        return;
    }
    const int C = 32, L = m->cfg.n_layers, V = m->cfg.vocab_size, l = 2;
    int32_t tok[3 * C];
    uint64_t r = 11;
    for (int i = 0; i < 3 * C; i++) tok[i] = 1 + (int)(sqz_splitmix64(&r) % (uint64_t)(V - 1));
    sqz_layer_weights lw[16], fewer[16];
    memcpy(lw, m->layers, (size_t)L * sizeof *lw);
    lw[l].wo.data = NULL, lw[l].w_down.data = NULL;
    for (int i = 0, j = 0; i < L; i++)
        if (i != l) fewer[j++] = m->layers[i];
    sqz_model a = *m, b = *m;
    a.layers = lw;
    b.layers = fewer, b.cfg.n_layers = L - 1;
    float *la = malloc((size_t)C * V * sizeof *la), *lb = malloc((size_t)C * V * sizeof *lb);
    logits_of(ctx, &a, tok, C, la);
    logits_of(ctx, &b, tok, C, lb);
    CHECK(!memcmp(la, lb, (size_t)C * V * sizeof *la), "a block without wo and w_down = the model without that block");
    free(la), free(lb);

    /* the probe's reference: a child of `a` differing from layer 3 on */
    sqz_kl_probe *p = NULL;
    CHECK(sqz_kl_probe_new(ctx, m, tok, 3, C, &p) == SQZ_OK, "probe");
    sqz_layer_weights cw[16];
    memcpy(cw, lw, (size_t)L * sizeof *cw);
    cw[3].wq = m->layers[4].wq; /* same shape, other values */
    sqz_model child = *m;
    child.layers = cw;
    const int win[2] = { 2, 0 };
    double k_ref = -1, k_0 = -1, k_parent = -1, k_parent0 = -1;
    CHECK(p && sqz_kl_probe_set_ref(p, &a) == SQZ_OK && sqz_kl_probe_measure_windows(p, &child, 3, win, 2, &k_ref) == SQZ_OK &&
              sqz_kl_probe_measure_windows(p, &child, 0, win, 2, &k_0) == SQZ_OK,
          "child scored on its parent's states and from the start");
    CHECK(k_ref == k_0 && k_ref > 0, "the same KL, exactly (%.9g, %.9g)", k_ref, k_0);
    CHECK(p && sqz_kl_probe_ref_kl(p, win, 2, &k_parent) == SQZ_OK &&
              sqz_kl_probe_measure_windows(p, &a, 0, win, 2, &k_parent0) == SQZ_OK && k_parent == k_parent0,
          "the parent's own KL from its cached states (%.9g) = run from the start (%.9g)", k_parent, k_parent0);
    sqz_kl_probe_free(p);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
}

static void test_depth(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m = load_260k(ctx);
    if (!m) {
        sqz_ctx_free(ctx);
        return;
    }
    const int C = 64, V = m->cfg.vocab_size;
    int32_t tok[6 * C];
    uint64_t r = 5;
    for (int i = 0; i < 6 * C; i++) tok[i] = 1 + (int)(sqz_splitmix64(&r) % (uint64_t)(V - 1));
    char dir[] = "/tmp/sqz-search-XXXXXX", out[256], js[256];
    CHECK(mkdtemp(dir) != NULL, "temporary folder");
    snprintf(out, sizeof out, "%s/d.gguf", dir);
    snprintf(js, sizeof js, "%s/d.json", dir);
    for (int n = 1; n <= 2; n++) {
        sqz_search_opts o = { .space = "depth", .n_drop = n, .calib = tok, .n_calib = 6 * C, .calib_ctx = C,
                              .pool_windows = 6, .generations = 12, .offspring = 4, .stages = "2x2,1x6", .seed = 3,
                              .brute_force = 1 };
        sqz_search_result bf, ev;
        CHECK(sqz_search(ctx, m, out, &o, &bf) == SQZ_OK, "depth %d by brute force: %s", n, sqz_ctx_error(ctx));
        o.brute_force = 0, o.json_path = js;
        CHECK(sqz_search(ctx, m, out, &o, &ev) == SQZ_OK, "depth %d by EvoPress", n);
        CHECK(ev.best_kl <= bf.best_kl * 1.01 && ev.n_dropped == n, "EvoPress %.6f vs the brute-force optimum %.6f (blocks %d%s)",
              ev.best_kl, bf.best_kl, ev.dropped[0], n > 1 ? ",..." : "");
        sqz_model *d = NULL;
        CHECK(sqz_model_load(ctx, out, NULL, &d) == SQZ_OK && d->cfg.n_layers == m->cfg.n_layers - n,
              "the GGUF has %d blocks", m->cfg.n_layers - n);
        sqz_model_free(d);
        size_t len = 0;
        uint8_t *j = test_read_file(js, &len);
        CHECK(j && strstr((char *)j, "\"dropped\"") && strstr((char *)j, "\"fitness_curve\""), "the JSON has the choice and the curve");
        free(j);
    }
    sqz_search_opts bad = { .space = "depth", .n_drop = 5, .calib = tok, .n_calib = 6 * C, .calib_ctx = C };
    CHECK(sqz_search(ctx, m, out, &bad, NULL) == SQZ_ERR_ARG, "dropping every block is refused: %s", sqz_ctx_error(ctx));
    bad.space = "colour";
    CHECK(sqz_search(ctx, m, out, &bad, NULL) == SQZ_ERR_ARG, "an unknown space is refused: %s", sqz_ctx_error(ctx));
    unlink(out), unlink(js), rmdir(dir);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
}

/* ---------------------------------------------------------------- the database and quant */

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *x = test_read_file(a, &na), *y = test_read_file(b, &nb);
    const int same = x && y && na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

static void copy_cut(const char *from, const char *to, double frac) {
    size_t n = 0;
    uint8_t *x = test_read_file(from, &n);
    FILE *f = fopen(to, "wb");
    if (x && f) fwrite(x, 1, (size_t)((double)n * frac), f);
    if (f) fclose(f);
    free(x);
}

static void test_quant(void) {
    const char *mp = test_shared("models/sqz-llama-26m");
    if (!mp || test_quick()) {
        SKIP("level database and quant search: need ../shared's sqz-llama-26m (and not SQZ_QUICK)");
        return;
    }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m = NULL;
    if (sqz_model_load(ctx, mp, NULL, &m) != SQZ_OK) {
        CHECK(0, "26m loads: %s", sqz_ctx_error(ctx));
        sqz_ctx_free(ctx);
        return;
    }
    /* its first two blocks only (the model ends there): a database in seconds, not minutes */
    const int L_full = m->cfg.n_layers;
    m->cfg.n_layers = 2;
    const int C = 64, V = m->cfg.vocab_size, NW = 3;
    int32_t tok[NW * C], tok2[NW * C];
    uint64_t r = 9;
    for (int i = 0; i < NW * C; i++) tok[i] = (int)(sqz_splitmix64(&r) % (uint64_t)V), tok2[i] = tok[i];
    tok2[5] = (tok2[5] + 1) % V;
    char dir[] = "/tmp/sqz-levels-XXXXXX", db[256], db2[256], part2[256], db3[256], part3[256], out[256], js[256];
    CHECK(mkdtemp(dir) != NULL, "temporary folder");
    snprintf(db, sizeof db, "%s/a.db", dir);
    snprintf(db2, sizeof db2, "%s/b.db", dir);
    snprintf(part2, sizeof part2, "%s/b.db.part", dir);
    snprintf(db3, sizeof db3, "%s/c.db", dir);
    snprintf(part3, sizeof part3, "%s/c.db.part", dir);
    snprintf(out, sizeof out, "%s/q.gguf", dir);
    snprintf(js, sizeof js, "%s/q.json", dir);
    const sqz_levels_opts lo = { .calib = tok, .n_calib = NW * C, .calib_ctx = C, .eval_windows = 1, .plain_gptq = 1 };
    sqz_levels_result lr, lr2;
    CHECK(sqz_levels_build(ctx, m, db, &lo, &lr) == SQZ_OK && lr.n_items == 2 * 7 + 1 && lr.n_measured == 5 * lr.n_items,
          "a database of %d matrices x 5 levels (%.1f s%s%s)", lr.n_items, lr.seconds, *sqz_ctx_error(ctx) ? ": " : "", sqz_ctx_error(ctx));
    sqz_levels_db d;
    CHECK(sqz_levels_db_load(ctx, db, m, &d) == SQZ_OK, "it loads");
    int shapes_ok = 1, mono = 0;
    for (int i = 0; i < d.n_items; i++) {
        const sqz_db_item *it = &d.items[i];
        shapes_ok &= it->n == 5 && it->lv[0].type == SQZ_TYPE_Q2_K && it->lv[4].type == SQZ_TYPE_Q6_K;
        for (int k = 0; k < it->n; k++) shapes_ok &= it->lv[k].bytes == (uint64_t)it->rows * sqz_type_row_size(it->lv[k].type, it->cols);
        mono += it->lv[4].kl < it->lv[0].kl;
    }
    CHECK(shapes_ok, "every matrix at Q2_K..Q6_K, bytes = rows x the type's row size");
    CHECK(mono == d.n_items, "Q6_K moves the model less than Q2_K for every matrix (%d of %d)", mono, d.n_items);
    sqz_levels_db_free(&d);

    copy_cut(db, part2, 0.6);
    CHECK(sqz_levels_build(ctx, m, db2, &lo, &lr2) == SQZ_OK && lr2.n_resumed > 0 && lr2.n_resumed + lr2.n_measured == 5 * lr.n_items,
          "a part file cut mid-record resumes (%d levels kept, %d measured)", lr2.n_resumed, lr2.n_measured);
    CHECK(same_file(db, db2), "and the database is byte for byte the uninterrupted one");
    copy_cut(db, part3, 0.3);
    const sqz_levels_opts lo3 = { .calib = tok2, .n_calib = NW * C, .calib_ctx = C, .eval_windows = 1, .plain_gptq = 1 };
    CHECK(sqz_levels_build(ctx, m, db3, &lo3, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "another"),
          "another calibration's part file is refused: %s", sqz_ctx_error(ctx));

    sqz_search_opts so = { .space = "quant", .db = db, .bpw = 3.5, .calib = tok, .n_calib = NW * C, .calib_ctx = C,
                           .pool_windows = NW, .generations = 6, .offspring = 6, .stages = "2x1,1x3", .seed = 1,
                           .json_path = js };
    sqz_search_result sr;
    const sqz_status st = sqz_search(ctx, m, out, &so, &sr);
    CHECK(st == SQZ_OK, "quant search at 3.5 bpw: %s", st ? sqz_ctx_error(ctx) : "ok");
    struct stat sb;
    CHECK(!st && stat(out, &sb) == 0 && (uint64_t)sb.st_size == sr.file_bytes && sr.file_bytes <= sr.budget_bytes &&
              sr.bits_per_weight <= 3.5 && sr.bits_per_weight > 3.3,
          "the file keeps the budget: %llu <= %llu bytes, %.4f bpw", (unsigned long long)sr.file_bytes,
          (unsigned long long)sr.budget_bytes, sr.bits_per_weight);
    CHECK(sr.best_kl <= sr.seed_kl, "never worse than the knapsack seed on the selection windows (%.6f <= %.6f)",
          sr.best_kl, sr.seed_kl);
    sqz_model *q = NULL;
    CHECK(!st && sqz_model_load(ctx, out, NULL, &q) == SQZ_OK, "the GGUF loads");
    if (q) {
        size_t jl = 0;
        char *j = (char *)test_read_file(js, &jl);
        char want[96];
        snprintf(want, sizeof want, "\"blk.1.ffn_down.weight\":\t\"%s\"", sqz_type_name(q->layers[1].w_down.type));
        CHECK(j && strstr(j, want), "its types are the JSON's choice (%s)", want);
        free(j);
        /* the KL of the file read back, from full evaluations of both models */
        float *lb = malloc((size_t)C * V * sizeof *lb), *lq = malloc((size_t)C * V * sizeof *lq);
        double sum = 0;
        int32_t pool[NW * C];
        const size_t np = sqz_calib_spread(tok, NW * C, NW * C, C, pool) / C;
        for (size_t w = 0; w < np; w++) {
            logits_of(ctx, m, pool + w * C, C, lb);
            logits_of(ctx, q, pool + w * C, C, lq);
            for (int i = 0; i < C; i++) sum += test_kl_ref(lb + (size_t)i * V, lq + (size_t)i * V, V);
        }
        /* The file loads packed (x16) and the search scored unpacked rows; their products are
         * the same bits (test_x16: unpacked k-quant prefill packs on the fly). What is left, ~0.2 %
         * of the KL here, comes from the forward pass outside the matrices: it is 0 under
         * SQZ_ISA=avx2 (1e-7 relative) and does not change when the file is run unpacked. Far
         * inside what one matrix's type changes. */
        CHECK_CLOSE(sum / (double)(np * C), sr.best_kl, 1e-9, 5e-3, "the file's KL = the search's (%zu windows)", np);
        free(lb), free(lq);
        sqz_model_free(q);
    }
    so.bpw = 1.0;
    CHECK(sqz_search(ctx, m, out, &so, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "below the smallest"),
          "a budget below Q2_K everywhere is refused: %s", sqz_ctx_error(ctx));
    unlink(db), unlink(db2), unlink(part3), unlink(out), unlink(js), rmdir(dir);
    m->cfg.n_layers = L_full;
    sqz_model_free(m);
    sqz_ctx_free(ctx);
}

int main(void) {
    test_core();
    test_skip_and_ref();
    test_depth();
    test_quant();
    return test_done();
}
