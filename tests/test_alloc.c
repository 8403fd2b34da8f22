/* test_alloc.c - the size-budget type allocation (quant/alloc.h) and the KL probe it measures
 * with (quant/kl_probe.h), against independent references:
 *
 *   - the knapsack against brute force over every combination of small random instances (its
 *     optimum, within the budget; an impossible budget is refused), and on budgets large enough
 *     to be rounded into units: never worse than the exact optimum, over by at most a unit per
 *     item;
 *   - the probe: the unchanged model has KL 0 from every layer; a model with one matrix changed
 *     gives the same KL run from that matrix's layer as from the start, and that KL equals one
 *     computed here from two full sqz_session_eval runs; a changed tied embedding too;
 *   - end to end (sqz-llama-14m from ../shared, only with $SQZ_LONG): gptq --alloc writes a
 *     file that loads and keeps the mix's bytes, its summed KL is no larger than the mix's,
 *     and --alloc with another method is a clear error that writes nothing.
 */
#include <sys/stat.h>

#include "core/ctx.h"
#include "model/model.h"
#include "quant/alloc.h"
#include "quant/kl_probe.h"
#include "sqz.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnext(void) { return test_xorshift64(&rng); }

enum { MAXI = 6 };

/* The least cost of any combination within budget (brute force), or HUGE_VAL. */
static double brute(int n, const int *n_opt, uint64_t (*bytes)[SQZ_ALLOC_MAX_TYPES],
                    double (*cost)[SQZ_ALLOC_MAX_TYPES], uint64_t budget) {
    int idx[MAXI] = { 0 };
    double best = HUGE_VAL;
    for (;;) {
        uint64_t b = 0;
        double c = 0;
        for (int i = 0; i < n; i++) b += bytes[i][idx[i]], c += cost[i][idx[i]];
        if (b <= budget && c < best) best = c;
        int i = 0;
        while (i < n && ++idx[i] == n_opt[i]) idx[i++] = 0;
        if (i == n) return best;
    }
}

static void test_knapsack(void) {
    int bad = 0, bad_big = 0, refused_ok = 1;
    for (int trial = 0; trial < 300; trial++) {
        const int n = 1 + (int)(rnext() % MAXI), big = trial >= 200;
        int n_opt[MAXI], choice[MAXI];
        uint64_t bytes[MAXI][SQZ_ALLOC_MAX_TYPES], lo = 0, hi = 0;
        double cost[MAXI][SQZ_ALLOC_MAX_TYPES];
        for (int i = 0; i < n; i++) {
            n_opt[i] = 1 + (int)(rnext() % SQZ_ALLOC_MAX_TYPES);
            uint64_t mn = UINT64_MAX, mx = 0;
            for (int k = 0; k < n_opt[i]; k++) {
                bytes[i][k] = 1 + rnext() % (big ? 400000000u : 1000u);
                cost[i][k] = (double)(rnext() % 100000) / 1000.0;
                if (bytes[i][k] < mn) mn = bytes[i][k];
                if (bytes[i][k] > mx) mx = bytes[i][k];
            }
            lo += mn, hi += mx;
        }
        const uint64_t budget = lo + rnext() % (hi - lo + 1);
        const double want = brute(n, n_opt, bytes, cost, budget);
        if (sqz_alloc_knapsack(n, n_opt, (const uint64_t(*)[SQZ_ALLOC_MAX_TYPES])bytes,
                               (const double(*)[SQZ_ALLOC_MAX_TYPES])cost, budget, choice) != 0) {
            bad++;
            continue;
        }
        uint64_t b = 0;
        double c = 0;
        for (int i = 0; i < n; i++) b += bytes[i][choice[i]], c += cost[i][choice[i]];
        if (!big && (b > budget || fabs(c - want) > 1e-9)) bad++;
        const uint64_t unit = budget / (1u << 18) + 1;
        if (big && (b > budget + (uint64_t)n * unit || c > want + 1e-9)) bad_big++;
        if (lo > 1 && !big && trial % 10 == 0) /* below the cheapest combination: refused */
            refused_ok &= sqz_alloc_knapsack(n, n_opt, (const uint64_t(*)[SQZ_ALLOC_MAX_TYPES])bytes,
                                             (const double(*)[SQZ_ALLOC_MAX_TYPES])cost, lo - 1, choice) != 0;
    }
    CHECK(bad == 0, "knapsack = brute-force optimum within the budget on 200 small instances (%d wrong)", bad);
    CHECK(bad_big == 0, "knapsack on 100 budgets rounded into units: no worse than the exact optimum, over by "
                        "<= a unit per item (%d wrong)", bad_big);
    CHECK(refused_ok, "a budget below the cheapest combination is refused");
}

/* Mean KL over n_win windows of C tokens, from whole-window evaluations of both models. */
static double kl_full(sqz_ctx *ctx, const sqz_model *a, const sqz_model *b, const int32_t *tok, int n_win, int C) {
    const int V = a->cfg.vocab_size;
    float *la = malloc((size_t)C * V * sizeof *la), *lb = malloc((size_t)C * V * sizeof *lb);
    sqz_session *sa = NULL, *sb = NULL;
    double sum = 0;
    if (!la || !lb || sqz_session_new(ctx, a, C, &sa) || sqz_session_new(ctx, b, C, &sb)) sum = NAN;
    for (int w = 0; w < n_win && sum == sum; w++) {
        sqz_session_reset(sa), sqz_session_reset(sb);
        if (sqz_session_eval(sa, tok + w * C, C, la, 1) || sqz_session_eval(sb, tok + w * C, C, lb, 1)) sum = NAN;
        for (int i = 0; i < C && sum == sum; i++) sum += test_kl_ref(la + (size_t)i * V, lb + (size_t)i * V, V);
    }
    sqz_session_free(sa), sqz_session_free(sb);
    free(la), free(lb);
    return sum / (n_win * C);
}

/* A scaled f32 copy of t (owned by the caller). */
static float *scaled(const sqz_tensor *t, float f, sqz_tensor *out) {
    float *W = malloc((size_t)(t->rows * t->cols) * sizeof *W);
    for (int64_t r = 0; W && r < t->rows; r++) sqz_tensor_row_f32(t, r, W + r * t->cols);
    for (int64_t i = 0; W && i < t->rows * t->cols; i++) W[i] *= f * (1 + 0.05f * (float)((i * 7919) % 13 - 6));
    *out = (sqz_tensor){ .type = SQZ_TYPE_F32, .rows = t->rows, .cols = t->cols, .data = W };
    return W;
}

static void test_probe(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m = NULL;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", "assets/stories260K/tok512.bin", &m) != SQZ_OK) {
        CHECK(0, "stories260K loads: %s", sqz_ctx_error(ctx));
        sqz_ctx_free(ctx);
        return;
    }
    const int C = 24, NW = 3, L = m->cfg.n_layers;
    int32_t tok[NW * C];
    for (int i = 0; i < NW * C; i++) tok[i] = 1 + (int)(rnext() % (uint64_t)(m->cfg.vocab_size - 1));
    sqz_kl_probe *p = NULL;
    CHECK(sqz_kl_probe_new(ctx, m, tok, NW, C, &p) == SQZ_OK, "probe over %d windows of %d tokens", NW, C);
    if (!p) goto out;
    int zero = 1;
    for (int l = 0; l <= L; l++) {
        double kl = -1;
        zero &= sqz_kl_probe_measure(p, m, l, &kl) == SQZ_OK && kl == 0;
    }
    CHECK(zero, "the unchanged model: KL exactly 0 from every layer 0..%d", L);
    double bad = 0;
    CHECK(sqz_kl_probe_measure(p, m, L + 1, &bad) == SQZ_ERR_ARG, "a layer past the head is refused");

    sqz_model c = *m;
    sqz_layer_weights *lw = malloc((size_t)L * sizeof *lw);
    memcpy(lw, m->layers, (size_t)L * sizeof *lw);
    c.layers = lw;
    const int l = L / 2;
    float *W = scaled(&m->layers[l].w_up, 1.3f, &lw[l].w_up);
    double k_l = -1, k_0 = -1;
    CHECK(sqz_kl_probe_measure(p, &c, l, &k_l) == SQZ_OK && sqz_kl_probe_measure(p, &c, 0, &k_0) == SQZ_OK &&
              k_l == k_0 && k_l > 1e-6,
          "layer %d's w_up changed: the same KL from layer %d as from the start (%.6g, %.6g)", l, l, k_l, k_0);
    CHECK_CLOSE(k_l, kl_full(ctx, m, &c, tok, NW, C), 1e-9, 1e-4, "that KL = the mean KL of two full evaluations");
    lw[l] = m->layers[l];
    free(W);

    float *E = scaled(&m->tok_embd, 1.1f, &c.tok_embd);
    if (m->cfg.tied_embeddings) c.output = c.tok_embd;
    double k_e = -1;
    CHECK(sqz_kl_probe_measure(p, &c, 0, &k_e) == SQZ_OK && k_e > 1e-6, "a changed embedding moves the KL (%.6g)", k_e);
    CHECK_CLOSE(k_e, kl_full(ctx, m, &c, tok, NW, C), 1e-9, 1e-4, "and equals the full evaluations' KL");
    free(E);
    free(lw);
out:
    sqz_kl_probe_free(p);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
}

static char *slurp(const char *path, size_t max, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *b = malloc(max + 1);
    *len = f && b ? fread(b, 1, max, f) : 0;
    if (f) fclose(f);
    if (b) b[*len] = 0;
    return b;
}

static void test_end_to_end(void) {
    const char *mp = test_shared("models/sqz-llama-14m"), *cp = test_shared("data/calib/calib-1m.txt");
    const char *lr = getenv("SQZ_LONG");
    if (!mp || !cp || test_quick() || !lr || !*lr || !strcmp(lr, "0")) {
        SKIP("alloc end to end: needs ../shared's sqz-llama-14m and calib-1m.txt, and SQZ_LONG=1");
        return;
    }
    sqz_ctx *ctx = sqz_ctx_new();
    char dir[] = "/tmp/sqz-alloc-XXXXXX";
    char out[256];
    CHECK(mkdtemp(dir) != NULL, "temporary folder");
    snprintf(out, sizeof out, "%s/q2k.gguf", dir);
    sqz_model *m = NULL, *q = NULL;
    size_t clen, nc = 0;
    char *calib = slurp(cp, 60000, &clen);
    int32_t *cids = NULL;
    CHECK(sqz_model_load(ctx, mp, NULL, &m) == SQZ_OK && !sqz_tokenize(ctx, m, calib, clen, 0, &cids, &nc) &&
              nc >= 2048,
          "14m model and calibration text (%zu tokens)", nc);
    sqz_quantize_opts o = { .method = "imatrix:alloc=1,windows=2", .type = "q2_k", .calib = cids, .n_calib = 2048,
                            .calib_ctx = 256 };
    struct stat sb;
    CHECK(m && sqz_quantize(ctx, m, out, &o, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "imatrix takes no parameters") &&
              stat(out, &sb) != 0,
          "--alloc with imatrix: a clear error, nothing written (%s)", sqz_ctx_error(ctx));
    o.method = "gptq:alloc=1,windows=2";
    sqz_quantize_result r;
    const sqz_status st = m ? sqz_quantize(ctx, m, out, &o, &r) : SQZ_ERR_ARG;
    CHECK(st == SQZ_OK, "gptq --alloc q2_k on sqz-llama-14m (%s)", st ? sqz_ctx_error(ctx) : "ok");
    if (st == SQZ_OK) {
        /* 14m's 384-wide rows take no k-quant: only ffn_down (1024 wide) has a choice */
        CHECK(r.alloc_budget > 0 && r.alloc_bytes <= r.alloc_budget + r.alloc_budget / 3000,
              "the matrices keep the mix's bytes (%llu <= %llu)", (unsigned long long)r.alloc_bytes,
              (unsigned long long)r.alloc_budget);
        CHECK(r.alloc_kl_chosen <= r.alloc_kl_mix && r.alloc_kl_mix > 0,
              "summed KL %.5f <= the mix's %.5f", r.alloc_kl_chosen, r.alloc_kl_mix);
        CHECK(sqz_model_load(ctx, out, NULL, &q) == SQZ_OK, "the file loads");
        int kq = 1;
        for (int l = 0; q && l < q->cfg.n_layers; l++) {
            const sqz_type t = q->layers[l].w_down.type;
            kq &= t == SQZ_TYPE_Q2_K || t == SQZ_TYPE_Q3_K || t == SQZ_TYPE_Q4_K || t == SQZ_TYPE_Q5_K ||
                  t == SQZ_TYPE_Q6_K;
        }
        CHECK(q && kq, "every ffn_down in a k-quant of the ladder");
        if (q) {
            const double kl = kl_full(ctx, m, q, cids + nc - 512, 2, 256);
            CHECK(kl > 0 && kl < 1, "its KL from the f16 model on calibration text is sane (%.4f)", kl);
        }
        /* a file budget: a tenth of the matrices' bytes more than the mix's file, as bytes and
         * as bits per weight; one below every matrix's lowest type is refused before any work */
        const uint64_t target = r.convert.file_bytes + r.alloc_budget / 10;
        char spec[128];
        snprintf(spec, sizeof spec, "gptq:alloc=1,windows=2,bytes=%llu", (unsigned long long)target);
        o.method = spec;
        sqz_quantize_result rb;
        sqz_status sb2 = sqz_quantize(ctx, m, out, &o, &rb);
        CHECK(sb2 == SQZ_OK && rb.convert.file_bytes <= target && rb.alloc_bytes > r.alloc_bytes &&
                  rb.alloc_kl_chosen < r.alloc_kl_chosen,
              "bytes=%llu: file %llu bytes, matrices %llu > %llu, summed KL %.5f < %.5f (%s)",
              (unsigned long long)target, (unsigned long long)rb.convert.file_bytes,
              (unsigned long long)rb.alloc_bytes, (unsigned long long)r.alloc_bytes, rb.alloc_kl_chosen,
              r.alloc_kl_chosen, sb2 ? sqz_ctx_error(ctx) : "ok");
        unlink(out);
        snprintf(spec, sizeof spec, "gptq:alloc=1,windows=2,bpw=0.5");
        sb2 = sqz_quantize(ctx, m, out, &o, &rb);
        CHECK(sb2 == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "below the smallest choice") && stat(out, &sb) != 0,
              "bpw=0.5: a clear error, nothing written (%s)", sqz_ctx_error(ctx));
    }
    sqz_model_free(q);
    sqz_model_free(m);
    free(calib), free(cids);
    unlink(out);
    rmdir(dir);
    sqz_ctx_free(ctx);
}

int main(void) {
    test_knapsack();
    test_probe();
    test_end_to_end();
    return test_done();
}
