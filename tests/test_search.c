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
 *     (computed here from two full evaluations);
 *   - the Layer-Wise Quantization seed (alloc layerwise): its LIM scores equal 1 - cos of each
 *     block's input and output computed here token by token (the decode path, not the batched
 *     pass the library uses), on stories260K (5 blocks) and on the 26m blocks; over a ladder of
 *     budgets every file keeps its budget, every block's matrices share one type, the types are
 *     two adjacent k-quants, the units at the higher one are the first of (head, blocks by this
 *     test's LIM ranking), one more unit up would break the budget, and no matrix ever goes
 *     down as the budget rises; alloc uniform writes every matrix at its type, at its own bytes
 *     without a budget, and is refused over one; an unknown alloc and a type without uniform are
 *     refused;
 *   - the joint space quant,depth on the same blocks: below Q2_K everywhere its seed drops the
 *     block this test ranks least by LIM; at that budget and a larger one the file keeps the
 *     budget, has the blocks not dropped, and loaded again has the KL the search reported.
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
#include "prune/drop.h"
#include "quant/kl_probe.h"
#include "quant/mixllm.h"
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

/* ---------------------------------------------------------------- LIM by brute force */

/* lim[l] = mean over the n_win windows' tokens of 1 - cos(x_l, x_l+1), every token run alone
 * through each layer (T = 1 at its position: decode's path), in double. */
static void lim_brute(sqz_ctx *ctx, const sqz_model *m, const int32_t *tok, int n_win, int C, double *lim) {
    const int L = m->cfg.n_layers, D = m->cfg.dim;
    float *x = malloc((size_t)C * D * sizeof *x), *y = malloc((size_t)C * D * sizeof *y);
    sqz_session *s = NULL;
    for (int l = 0; l < L; l++) lim[l] = 0;
    if (!x || !y || sqz_session_new(ctx, m, C, &s) != SQZ_OK) {
        CHECK(0, "brute-force LIM: a session");
        free(x), free(y);
        return;
    }
    for (int w = 0; w < n_win; w++) {
        for (int t = 0; t < C; t++) sqz_tensor_row_f32(&m->tok_embd, tok[w * C + t], x + (size_t)t * D);
        for (int l = 0; l < L; l++) {
            for (int t = 0; t < C; t++) {
                memcpy(s->x, x + (size_t)t * D, (size_t)D * sizeof *x);
                s->pos = t;
                sqz_session_layer(s, &m->layers[l], l, 1, NULL, NULL);
                memcpy(y + (size_t)t * D, s->x, (size_t)D * sizeof *y);
            }
            for (int t = 0; t < C; t++) {
                double ab = 0, aa = 0, bb = 0;
                for (int j = 0; j < D; j++) {
                    const double a = x[(size_t)t * D + j], b = y[(size_t)t * D + j];
                    ab += a * b, aa += a * a, bb += b * b;
                }
                lim[l] += 1 - ab / sqrt(aa * bb);
            }
            memcpy(x, y, (size_t)C * D * sizeof *x);
        }
    }
    for (int l = 0; l < L; l++) lim[l] /= (double)n_win * C;
    sqz_session_free(s);
    free(x), free(y);
}

/* blocks by LIM, most important first (ties: the earlier) */
static void lim_order(const double *lim, int L, int *order) {
    for (int l = 0; l < L; l++) order[l] = l;
    for (int i = 0; i < L; i++)
        for (int j = i + 1; j < L; j++)
            if (lim[order[j]] > lim[order[i]] || (lim[order[j]] == lim[order[i]] && order[j] < order[i])) {
                const int t = order[i];
                order[i] = order[j], order[j] = t;
            }
}

static void test_lim(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m = load_260k(ctx);
    if (!m) {
        sqz_ctx_free(ctx);
        return;
    }
    const int C = 48, NW = 3, L = m->cfg.n_layers, V = m->cfg.vocab_size;
    int32_t tok[NW * C];
    uint64_t r = 21;
    for (int i = 0; i < NW * C; i++) tok[i] = 1 + (int)(sqz_splitmix64(&r) % (uint64_t)(V - 1));
    double lib[16], ref[16];
    CHECK(sqz_block_influence(ctx, m, tok, NW * C + 7, C, lib) == SQZ_OK, "LIM of stories260K's blocks");
    lim_brute(ctx, m, tok, NW, C, ref);
    int close = 1, lo[16], ro[16];
    for (int l = 0; l < L; l++) close &= fabs(lib[l] - ref[l]) <= 1e-4 * ref[l] + 1e-7 && ref[l] > 0;
    lim_order(lib, L, lo), lim_order(ref, L, ro);
    CHECK(close, "LIM = brute-force 1 - cos per block (%.6f %.6f %.6f %.6f %.6f vs %.6f %.6f %.6f %.6f %.6f)", lib[0],
          lib[1], lib[2], lib[3], lib[4], ref[0], ref[1], ref[2], ref[3], ref[4]);
    CHECK(!memcmp(lo, ro, (size_t)L * sizeof *lo), "and the same ranking (most important: block %d)", ro[0]);
    CHECK(sqz_block_influence(ctx, m, tok, C - 1, C, lib) == SQZ_ERR_ARG, "less than a window is refused: %s",
          sqz_ctx_error(ctx));
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

/* mean KL of q against m over the pool the search spreads tok into (full evaluations) */
static double file_kl(sqz_ctx *ctx, const sqz_model *m, const sqz_model *q, const int32_t *tok, int NW, int C,
                      size_t *n_win) {
    const int V = m->cfg.vocab_size;
    float *lb = malloc((size_t)C * V * sizeof *lb), *lq = malloc((size_t)C * V * sizeof *lq);
    int32_t *pool = malloc((size_t)NW * C * sizeof *pool);
    double sum = 0;
    const size_t np = sqz_calib_spread(tok, (size_t)NW * C, (size_t)NW * C, C, pool) / C;
    for (size_t w = 0; w < np; w++) {
        logits_of(ctx, m, pool + w * C, C, lb);
        logits_of(ctx, q, pool + w * C, C, lq);
        for (int i = 0; i < C; i++) sum += test_kl_ref(lb + (size_t)i * V, lq + (size_t)i * V, V);
    }
    free(lb), free(lq), free(pool);
    *n_win = np;
    return sum / (double)(np * C);
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
    /* Layer-Wise Quantization over a ladder of budgets (seeds alone) */
    {
        const int L = m->cfg.n_layers, U = L + 1;
        int32_t pool[NW * C];
        const size_t np = sqz_calib_spread(tok, NW * C, NW * C, C, pool) / C;
        double ref[16];
        int order[16], unit_of[17]; /* unit_of[layer + 1]: 0 the head, then the blocks by LIM */
        lim_brute(ctx, m, pool, (int)np, C, ref);
        lim_order(ref, L, order);
        unit_of[0] = 0;
        for (int u = 0; u < L; u++) unit_of[order[u] + 1] = u + 1;
        static const sqz_type kq[5] = { SQZ_TYPE_Q2_K, SQZ_TYPE_Q3_K, SQZ_TYPE_Q4_K, SQZ_TYPE_Q5_K, SQZ_TYPE_Q6_K };
        static const double ladder[] = { 2.8, 2.9, 3.1, 3.3, 3.5, 3.8, 4.1, 4.4, 4.7, 5.0, 5.5, 6.0, 6.6, 7.0 };
        enum { NB = sizeof ladder / sizeof *ladder };
        int prev[17 * 8], first = 1, ok_budget = 1, ok_block = 1, ok_adj = 1, ok_order = 1, ok_max = 1, ok_mono = 1,
            ok_lim = 1, distinct = 0, last_cfg = -1;
        for (int b = 0; b < NB; b++) {
            sqz_search_opts lo_ = { .space = "quant", .db = db, .bpw = ladder[b], .alloc = "layerwise", .calib = tok,
                                    .n_calib = NW * C, .calib_ctx = C, .pool_windows = NW, .generations = 0 };
            sqz_search_result *lr_ = malloc(sizeof *lr_);
            sqz_model *q = NULL;
            if (!lr_ || sqz_search(ctx, m, out, &lo_, lr_) != SQZ_OK || sqz_model_load(ctx, out, NULL, &q) != SQZ_OK) {
                CHECK(0, "layerwise at %.2f bpw: %s", ladder[b], sqz_ctx_error(ctx));
                free(lr_);
                continue;
            }
            ok_budget &= lr_->file_bytes <= lr_->budget_bytes;
            for (int l = 0; l < L; l++) ok_lim &= lr_->n_importance == L && fabs(lr_->importance[l] - ref[l]) <= 1e-4 * ref[l];
            /* the level of every matrix: unit u's matrices, u = 0 the head */
            int lev[17 * 8] = { 0 }, ulev[17];
            for (int u = 0; u < U; u++) ulev[u] = -1;
            for (int l = -1; l < L; l++)
                for (int k = 0; k < (l < 0 ? 1 : 7); k++) {
                    const sqz_tensor *t = l < 0 ? &q->tok_embd : sqz_mixllm_matrix(&q->layers[l], k, NULL);
                    int v = -1;
                    for (int i = 0; i < 5; i++) v = t->type == kq[i] ? i : v;
                    const int u = unit_of[l + 1];
                    lev[u * 8 + k] = v;
                    if (ulev[u] < 0) ulev[u] = v;
                    ok_block &= v >= 0 && v == ulev[u];
                }
            int lo_t = 9, hi_t = -1;
            for (int u = 0; u < U; u++) lo_t = ulev[u] < lo_t ? ulev[u] : lo_t, hi_t = ulev[u] > hi_t ? ulev[u] : hi_t;
            ok_adj &= hi_t - lo_t <= 1;
            int n_hi = 0; /* units at the higher type: must be the first n_hi */
            for (int u = 0; u < U; u++) n_hi += hi_t > lo_t && ulev[u] == hi_t;
            for (int u = 0; u < U; u++) ok_order &= ulev[u] == (u < n_hi ? hi_t : lo_t);
            /* one more unit up: the next configuration of the sequence must not fit */
            const int nu = n_hi == 0 && hi_t == lo_t ? 0 : n_hi, nt = lo_t;
            if (!(nt == 4 && nu == 0)) {
                uint64_t more = 0;
                for (int l = -1; l < L; l++)
                    if (unit_of[l + 1] == nu)
                        for (int k = 0; k < (l < 0 ? 1 : 7); k++) {
                            const sqz_tensor *t = l < 0 ? &q->tok_embd : sqz_mixllm_matrix(&q->layers[l], k, NULL);
                            more += (uint64_t)t->rows * (sqz_type_row_size(kq[nt + 1], t->cols) - sqz_type_row_size(kq[nt], t->cols));
                        }
                ok_max &= lr_->file_bytes + more > lr_->budget_bytes;
            }
            const int cfg = nt * U + nu;
            distinct += cfg != last_cfg, last_cfg = cfg;
            for (int i = 0; !first && i < U * 8; i++) ok_mono &= (i % 8 && i < 8) || lev[i] >= prev[i];
            memcpy(prev, lev, sizeof prev), first = 0;
            sqz_model_free(q);
            free(lr_);
        }
        CHECK(ok_lim, "layerwise: the seed's LIM scores = this test's token-by-token 1 - cos (%.5f, %.5f)", ref[0], ref[1]);
        CHECK(ok_budget, "layerwise: every file within its budget (%d budgets, 2.8 to 7 bpw)", NB);
        CHECK(ok_block && ok_adj, "layerwise: a block's matrices share one type; two adjacent k-quants at most");
        CHECK(ok_order, "layerwise: the units at the higher type are the head, then the blocks by LIM (block %d first)",
              order[0]);
        CHECK(ok_max, "layerwise: one more unit at the higher type would break the budget (the budget is used)");
        CHECK(ok_mono && distinct >= 6, "layerwise: no matrix goes down as the budget rises (%d distinct configurations)",
              distinct);
    }
    /* uniform: every matrix at one type, its own bytes without a budget */
    {
        sqz_search_opts uo = { .space = "quant", .db = db, .alloc = "uniform", .type = "q3_k", .calib = tok,
                               .n_calib = NW * C, .calib_ctx = C, .pool_windows = NW, .generations = 0 };
        sqz_search_result ur;
        sqz_model *q = NULL;
        const sqz_status ust = sqz_search(ctx, m, out, &uo, &ur);
        CHECK(ust == SQZ_OK && sqz_model_load(ctx, out, NULL, &q) == SQZ_OK, "uniform q3_k: %s", ust ? sqz_ctx_error(ctx) : "ok");
        int all = q && q->tok_embd.type == SQZ_TYPE_Q3_K;
        for (int l = 0; q && l < q->cfg.n_layers; l++)
            for (int k = 0; k < 7; k++) all &= sqz_mixllm_matrix(&q->layers[l], k, NULL)->type == SQZ_TYPE_Q3_K;
        CHECK(all && ur.file_bytes == ur.budget_bytes, "uniform: every matrix Q3_K, the file its own budget (%llu = %llu bytes)",
              (unsigned long long)ur.file_bytes, (unsigned long long)ur.budget_bytes);
        sqz_model_free(q);
        uo.bytes = ur.file_bytes - 1, uo.type = "q3_K";
        CHECK(sqz_search(ctx, m, out, &uo, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "over the budget"),
              "uniform over its budget is refused: %s", sqz_ctx_error(ctx));
        uo.type = "q8_0", uo.bytes = 0;
        CHECK(sqz_search(ctx, m, out, &uo, NULL) == SQZ_ERR_ARG, "a type the database lacks is refused: %s", sqz_ctx_error(ctx));
        uo.alloc = "greedy";
        CHECK(sqz_search(ctx, m, out, &uo, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "layerwise"),
              "an unknown alloc is refused, naming the known: %s", sqz_ctx_error(ctx));
        uo.alloc = "layerwise", uo.bpw = 3;
        CHECK(sqz_search(ctx, m, out, &uo, NULL) == SQZ_ERR_ARG, "a type without uniform is refused: %s", sqz_ctx_error(ctx));
    }
    /* the held-out check: windows of calibration text outside the pool decide between the
     * search's answer and its seed (the knapsack's file, written with 0 generations) */
    {
        enum { NH = 6 };
        int32_t t6[NH * C];
        uint64_t r6 = 17;
        for (int i = 0; i < NH * C; i++) t6[i] = (int)(sqz_splitmix64(&r6) % (uint64_t)V);
        char kout[256];
        snprintf(kout, sizeof kout, "%s/k.gguf", dir);
        sqz_search_opts ho = { .space = "quant", .db = db, .bpw = 3.5, .calib = t6, .n_calib = NH * C, .calib_ctx = C,
                               .pool_windows = 3, .generations = 6, .offspring = 6, .stages = "2x1,1x3", .seed = 1,
                               .holdout_windows = 4 };
        sqz_search_opts ko = ho;
        ko.generations = 0, ko.holdout_windows = 0;
        sqz_search_result hr, kr;
        const sqz_status hs = sqz_search(ctx, m, out, &ho, &hr), ks = sqz_search(ctx, m, kout, &ko, &kr);
        /* pool windows start at 0, 2.5 C and 5 C: the gaps hold whole windows at C and 3.5 C */
        CHECK(hs == SQZ_OK && ks == SQZ_OK && hr.holdout_windows == 2, "held out: the 2 whole windows in the pool's gaps (%d): %s",
              hr.holdout_windows, hs || ks ? sqz_ctx_error(ctx) : "ok");
        sqz_model *qk = NULL, *qh = NULL;
        if (!hs && !ks && sqz_model_load(ctx, kout, NULL, &qk) == SQZ_OK && sqz_model_load(ctx, out, NULL, &qh) == SQZ_OK) {
            float *lb = malloc((size_t)C * V * sizeof *lb), *lq = malloc((size_t)C * V * sizeof *lq);
            const int starts[2] = { C, 7 * C / 2 };
            double kl_k = 0, kl_h = 0, wk[2] = { 0, 0 }, wh[2] = { 0, 0 }; /* per window */
            for (int w = 0; w < 2; w++) {
                logits_of(ctx, m, t6 + starts[w], C, lb);
                logits_of(ctx, qk, t6 + starts[w], C, lq);
                for (int i = 0; i < C; i++) wk[w] += test_kl_ref(lb + (size_t)i * V, lq + (size_t)i * V, V) / C;
                logits_of(ctx, qh, t6 + starts[w], C, lq);
                for (int i = 0; i < C; i++) wh[w] += test_kl_ref(lb + (size_t)i * V, lq + (size_t)i * V, V) / C;
            }
            kl_k = (wk[0] + wk[1]) / 2, kl_h = (wh[0] + wh[1]) / 2;
            CHECK_CLOSE(kl_k, hr.holdout_seed_kl, 1e-9, 5e-3, "the seed's held-out KL = the knapsack file's on those windows (%.6f)", kl_k);
            int same = 1;
            for (int l = 0; l < qk->cfg.n_layers; l++)
                for (int k = 0; k < 7; k++)
                    same &= sqz_mixllm_matrix(&qk->layers[l], k, NULL)->type == sqz_mixllm_matrix(&qh->layers[l], k, NULL)->type;
            if (hr.kept_seed) {
                CHECK(same && hr.best_kl == hr.seed_kl &&
                          !(hr.holdout_seed_kl - hr.holdout_best_kl > 2 * hr.holdout_gain_se && hr.holdout_best_kl < hr.holdout_seed_kl),
                      "not significantly better held out (gain %.6f, standard error %.6f): the knapsack's types were written",
                      hr.holdout_seed_kl - hr.holdout_best_kl, hr.holdout_gain_se);
            } else {
                /* two windows: the gain's standard error is |d0 - d1| / 2 */
                const double d0 = wk[0] - wh[0], d1 = wk[1] - wh[1], se = fabs(d0 - d1) / 2;
                CHECK(!same && (d0 + d1) / 2 > 2 * se * (1 - 1e-2) && fabs(kl_h - hr.holdout_best_kl) <= 5e-3 * kl_h &&
                          fabs(se - hr.holdout_gain_se) <= 1e-2 * se + 1e-9,
                      "significantly better held out (gain %.6f > 2 x %.6f, by the files): the answer was written (its KL "
                      "there %.6f, the search's %.6f)", (d0 + d1) / 2, se, kl_h, hr.holdout_best_kl);
            }
            free(lb), free(lq);
        } else {
            CHECK(0, "the held-out run's files load: %s", sqz_ctx_error(ctx));
        }
        sqz_model_free(qk), sqz_model_free(qh);
    }
    /* quant,depth: below Q2_K everywhere the seed drops the block of least LIM; the search keeps
     * the budget; the written file (kept blocks renumbered) has the KL the search reported */
    {
        sqz_search_opts jo = { .space = "quant,depth", .db = db, .bpw = 2.3, .calib = tok, .n_calib = NW * C,
                               .calib_ctx = C, .pool_windows = NW, .generations = 6, .offspring = 6,
                               .stages = "2x1,1x3", .seed = 2, .json_path = js };
        double ref[16];
        int32_t pool[NW * C];
        const size_t np = sqz_calib_spread(tok, NW * C, NW * C, C, pool) / C;
        lim_brute(ctx, m, pool, (int)np, C, ref);
        const int least = ref[1] <= ref[0] ? 1 : 0;
        for (int pass = 0; pass < 2; pass++) {
            sqz_search_result jr;
            sqz_model *q = NULL;
            const sqz_status jst = sqz_search(ctx, m, out, &jo, &jr);
            CHECK(jst == SQZ_OK && sqz_model_load(ctx, out, NULL, &q) == SQZ_OK, "quant,depth at %.1f bpw: %s", jo.bpw,
                  jst ? sqz_ctx_error(ctx) : "ok");
            if (!q) continue;
            struct stat jb;
            CHECK(stat(out, &jb) == 0 && (uint64_t)jb.st_size == jr.file_bytes && jr.file_bytes <= jr.budget_bytes &&
                      q->cfg.n_layers == m->cfg.n_layers - jr.n_dropped,
                  "quant,depth at %.1f bpw: %llu <= %llu bytes, %d of %d blocks dropped, the file has the rest", jo.bpw,
                  (unsigned long long)jr.file_bytes, (unsigned long long)jr.budget_bytes, jr.n_dropped, m->cfg.n_layers);
            if (pass == 0)
                CHECK(jr.n_dropped == 1 && jr.dropped[0] == least, "below Q2_K everywhere: block %d (least LIM) dropped",
                      least);
            size_t nw = 0;
            const double kl = file_kl(ctx, m, q, tok, NW, C, &nw);
            CHECK_CLOSE(kl, jr.best_kl, 1e-9, 3e-3, "quant,depth: the file's KL = the search's (%zu windows)", nw);
            CHECK(jr.best_kl <= jr.seed_kl, "quant,depth: never worse than the seed (%.6f <= %.6f)", jr.best_kl, jr.seed_kl);
            sqz_model_free(q);
            jo.bpw = 3.2, jo.generations = 12;
        }
        jo.brute_force = 1;
        CHECK(sqz_search(ctx, m, out, &jo, NULL) == SQZ_ERR_ARG, "quant,depth refuses brute force: %s", sqz_ctx_error(ctx));
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
    test_lim();
    test_quant();
    return test_done();
}
