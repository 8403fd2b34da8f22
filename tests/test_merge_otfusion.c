/* test_merge_otfusion.c - OT fusion (src/merge/otfusion.c) end to end: sqz-llama-14m merged
 * with a copy of itself whose residual stream, FFN units, attention heads (kv groups, query
 * heads within them) and value dimensions within each kv head are shuffled gives the model
 * back: exactly with exact OT (a permutation merge), within 1 % in perplexity with Sinkhorn at a
 * small reg, while the linear merge of the same pair is ruined; weights (1, 0) give model 0;
 * reg 0 and a config without calibration text are refused with nothing written.
 * (Sinkhorn itself: tests/test_sinkhorn.c.) */
#include <sys/stat.h>

#include "merge_shuffled.h"

static uint64_t rng = 4711;
static char tmp_root[256];

/* otfusion of a and b (model 0 the anchor) with extra config lines, written at tmp_root/name */
static void fuse(sqz_ctx *ctx, const char *yaml_extra, const char *a, const char *b, const char *calib, const char *name) {
    char yaml[3000], cfg[600], out[600];
    snprintf(cfg, sizeof cfg, "%s/o.yaml", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: otfusion\nmodels:\n  - model: %s\n  - model: %s\n%s", a, b, yaml_extra);
    ms_write_text(cfg, yaml);
    snprintf(out, sizeof out, "%s/%s", tmp_root, name);
    const sqz_merge_opts o = { .calib = calib, .calib_tokens = 1024, .calib_ctx = 128 };
    const sqz_status st = sqz_merge_models(ctx, cfg, out, &o, NULL);
    CHECK(st == SQZ_OK, "otfusion %s runs: %s", name, st ? sqz_ctx_error(ctx) : "ok");
}

/* every tensor of folder a's model.safetensors equal, bit for bit, to folder b's */
static int same_tensors(sqz_ctx *ctx, const char *a, const char *b) {
    char pa[1300], pb[1300];
    snprintf(pa, sizeof pa, "%s/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", b);
    sqz_safetensors *sa = NULL, *sb = NULL;
    int ok = sqz_st_open(ctx, pa, &sa) == SQZ_OK && sqz_st_open(ctx, pb, &sb) == SQZ_OK;
    for (size_t k = 0; ok && k < sqz_st_count(sa); k++) {
        const sqz_st_tensor *x = sqz_st_get(sa, k), *y = sqz_st_find(sb, x->name);
        ok = y && x->type == y->type && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
    }
    ok = ok && sqz_st_count(sa) == sqz_st_count(sb);
    sqz_st_close(sa), sqz_st_close(sb);
    return ok;
}

static void test_self_merge(sqz_ctx *ctx) {
    const char *src = test_shared("models/sqz-llama-14m");
    const char *text = test_shared("models/merge/shakespeare.train.txt");
    const char *ev = test_shared("data/domains/sotu.test.txt");
    if (!src || !text || !ev) {
        SKIP("otfusion on a shuffled copy: needs ../shared");
        return;
    }
    char base[1024], calib[1024], shuf[600], out[600], cfg[600], yaml[3000];
    snprintf(base, sizeof base, "%s", src);
    snprintf(calib, sizeof calib, "%s", text);
    snprintf(shuf, sizeof shuf, "%s/shuffled", tmp_root);
    CHECK(ms_write_shuffled(ctx, base, shuf, &rng, 1) == 0, "a shuffled copy of sqz-llama-14m: %s", sqz_ctx_error(ctx));
    /* the eval text: sotu test, which calibration never sees */
    size_t n = 0;
    int32_t *ids = NULL;
    if (ms_eval_ids(ctx, base, ev, &ids, &n)) return;
    const double p_base = ms_ppl(ctx, base, ids, n), p_shuf = ms_ppl(ctx, shuf, ids, n);
    CHECK(fabs(p_shuf - p_base) < 1e-3 * p_base, "the shuffled copy computes the same function (ppl %.4f vs %.4f)",
          p_shuf, p_base);
    const struct { const char *extra, *name; double tol; } runs[] = {
        { "parameters: {exact: 1}\n", "exact", 1e-4 },
        { "parameters: {reg: 0.01}\n", "sinkhorn", 1e-2 },
    };
    for (int k = 0; k < 2; k++) {
        fuse(ctx, runs[k].extra, base, shuf, calib, runs[k].name);
        snprintf(out, sizeof out, "%s/%s", tmp_root, runs[k].name);
        const double p = ms_ppl(ctx, out, ids, n);
        CHECK(fabs(p - p_base) < runs[k].tol * p_base, "%s: the model back (ppl %.4f vs %.4f, tolerance %g)",
              runs[k].name, p, p_base, runs[k].tol);
        ms_rm_tree(out);
    }
    /* weights (1, 0): model 0 itself (the shuffled copy as the anchor: f32, so bit for bit) */
    snprintf(cfg, sizeof cfg, "%s/o.yaml", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: otfusion\nmodels:\n  - model: %s\n    parameters: {weight: 1}\n"
             "  - model: %s\n    parameters: {weight: 0}\n", shuf, base);
    ms_write_text(cfg, yaml);
    snprintf(out, sizeof out, "%s/w10", tmp_root);
    const sqz_merge_opts o = { .calib = calib, .calib_tokens = 1024, .calib_ctx = 128 };
    CHECK(sqz_merge_models(ctx, cfg, out, &o, NULL) == SQZ_OK, "otfusion weights (1, 0): %s", sqz_ctx_error(ctx));
    CHECK(same_tensors(ctx, out, shuf), "weights (1, 0): model 0's tensors, bit for bit");
    ms_rm_tree(out);
    /* the same pair averaged without alignment: ruined */
    snprintf(yaml, sizeof yaml, "merge_method: linear\nmodels:\n  - model: %s\n  - model: %s\nparameters: {weight: 1}\n", base, shuf);
    ms_write_text(cfg, yaml);
    snprintf(out, sizeof out, "%s/linear", tmp_root);
    const sqz_merge_opts none = { 0 };
    CHECK(sqz_merge_models(ctx, cfg, out, &none, NULL) == SQZ_OK, "linear of the same pair");
    const double pl = ms_ppl(ctx, out, ids, n);
    CHECK(pl > 3 * p_base, "linear of the same pair without alignment is ruined (ppl %.1f vs %.1f)", pl, p_base);
    ms_rm_tree(out);
    /* refusals: no calibration text; reg 0; nothing written */
    struct stat sb;
    snprintf(out, sizeof out, "%s/refused", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: otfusion\nmodels:\n  - model: %s\n  - model: %s\n", base, shuf);
    ms_write_text(cfg, yaml);
    CHECK(sqz_merge_models(ctx, cfg, out, &none, NULL) == SQZ_ERR_ARG && stat(out, &sb) != 0,
          "otfusion without calibration text refused, nothing written: %s", sqz_ctx_error(ctx));
    snprintf(yaml, sizeof yaml, "merge_method: otfusion\nmodels:\n  - model: %s\n  - model: %s\nparameters: {reg: 0}\n", base, shuf);
    ms_write_text(cfg, yaml);
    CHECK(sqz_merge_models(ctx, cfg, out, &o, NULL) == SQZ_ERR_ARG && stat(out, &sb) != 0 &&
          strstr(sqz_ctx_error(ctx), "reg"), "reg 0 refused, nothing written: %s", sqz_ctx_error(ctx));
    sqz_free(ids);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/sqz-test-otfusion-XXXXXX");
    if (!mkdtemp(tmp_root)) {
        printf("not ok - mkdtemp\n");
        return 1;
    }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, 2);
    if (getenv("SQZ_QUICK")) SKIP("otfusion end to end (SQZ_QUICK)");
    else test_self_merge(ctx);
    sqz_ctx_free(ctx);
    ms_rm_tree(tmp_root);
    return test_done();
}
