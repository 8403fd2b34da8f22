/* test_merge_otfusion.c - OT fusion (src/merge/otfusion.c) end to end: sqz-llama-14m merged
 * with a copy of itself whose residual stream, FFN units, attention heads (kv groups, query
 * heads within them) and value dimensions within each kv head are shuffled gives the model
 * back: exactly with exact OT (a permutation merge), within 1 % in perplexity with Sinkhorn at a
 * small reg, while the linear merge of the same pair is ruined; weights (1, 0) give model 0;
 * reg 0 and a config without calibration text are refused with nothing written.
 * (Sinkhorn itself: tests/test_sinkhorn.c.) */
#include <math.h>
#include <sys/stat.h>

#include "test.h"

#include "io/safetensors.h"
#include "merge/gta.h"
#include "model/export_hf.h"
#include "sqz.h"

static uint64_t rng = 4711;
static double urand(void) { return merge_rng_uniform(&rng); }
static char tmp_root[256];

static void rm_tree(const char *p) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) printf("# could not remove %s\n", p);
}

static void shuffle(int *p, int n) {
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)(urand() * (i + 1)), t = p[i];
        p[i] = p[j], p[j] = t;
    }
}

enum { D = 384, F = 1024, L = 8, Hq = 6, Hkv = 2, G = Hq / Hkv, hd = 64, V = 4096 };

/* Old row / column index of new index x, for a map of blocks of b: x = blk b + i -> p[blk] b +
 * q[blk][i] (q NULL: i). */
static int64_t src_of(int64_t x, const int *p, int b, int (*q)[hd], int qdiv) {
    if (!p) return x;
    const int64_t blk = x / b, i = x % b;
    return (int64_t)p[blk] * b + (q ? q[blk / qdiv][i] : i);
}

/* sqz-llama-14m with every symmetry of its blocks shuffled, as f32, at dst. */
static int write_shuffled(sqz_ctx *ctx, const char *src, const char *dst) {
    int pr[D], pf[F], pk[Hkv], pq[Hq], pd[Hkv][hd];
    shuffle(pr, D);
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    sqz_safetensors *st = NULL;
    sqz_hf_export *e = NULL;
    if (sqz_st_open(ctx, path, &st) || sqz_hf_export_new(ctx, dst, &e)) return -1;
    snprintf(path, sizeof path, "%s/config.json", src);
    size_t len = 0;
    uint8_t *cfg = test_read_file(path, &len);
    snprintf(path, sizeof path, "%s/tokenizer.json", src);
    int ok = cfg && sqz_hf_export_config_json(e, (const char *)cfg, len) == SQZ_OK &&
             sqz_hf_export_tokenizer(e, path) == SQZ_OK;
    free(cfg);
    const char *blk[] = { "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                          "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight" };
    char names[2 + L * 9][96];
    int n = 0;
    snprintf(names[n++], 96, "model.embed_tokens.weight");
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 9; k++) snprintf(names[n++], 96, "model.layers.%d.%s", l, blk[k]);
    snprintf(names[n++], 96, "model.norm.weight");
    for (int k = 0; k < n && ok; k++) {
        const sqz_st_tensor *t = sqz_st_find(st, names[k]);
        ok = t && sqz_hf_export_declare(e, names[k], SQZ_TYPE_F32, t->n_dims, t->shape) == SQZ_OK;
    }
    ok = ok && sqz_hf_export_begin(e) == SQZ_OK;
    float *w = malloc(sizeof(float) * V * D), *o = malloc(sizeof(float) * V * D);
    for (int k = 0; k < n && ok; k++) {
        const char *s = names[k];
        const sqz_st_tensor *t = sqz_st_find(st, s);
        const int64_t rows = t->n_dims == 2 ? t->shape[0] : 1, cols = t->n_dims == 2 ? t->shape[1] : t->shape[0];
        for (int64_t j = 0; j < rows * cols; j++) w[j] = sqz_f16_to_f32(((const uint16_t *)t->data)[j]);
        if (strstr(s, "input_layernorm")) { /* a new block: its own shuffles */
            shuffle(pf, F), shuffle(pk, Hkv);
            for (int g = 0; g < Hkv; g++) { /* query heads follow their kv head, shuffled within it */
                int sub[G];
                shuffle(sub, G), shuffle(pd[g], hd);
                for (int a = 0; a < G; a++) pq[g * G + a] = pk[g] * G + sub[a];
            }
        }
        /* row map (p, block, q, q's divisor), column map */
        const int *rp = NULL, *cp = NULL;
        int rb = 1, cb = 1, (*rq)[hd] = NULL, (*cq)[hd] = NULL, rdiv = 1, cdiv = 1;
        if (strstr(s, "norm") || strstr(s, "embed")) cp = pr;
        else if (strstr(s, "q_proj")) rp = pq, rb = hd, cp = pr;
        else if (strstr(s, "k_proj")) rp = pk, rb = hd, cp = pr;
        else if (strstr(s, "v_proj")) rp = pk, rb = hd, rq = pd, cp = pr;
        else if (strstr(s, "o_proj")) rp = pr, cp = pq, cb = hd, cq = pd, cdiv = G;
        else if (strstr(s, "gate_proj") || strstr(s, "up_proj")) rp = pf, cp = pr;
        else rp = pr, cp = pf; /* down */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                o[r * cols + c] = w[src_of(r, rp, rb, rq, rdiv) * cols + src_of(c, cp, cb, cq, cdiv)];
        ok = sqz_hf_export_put_f32(e, o, (size_t)(rows * cols)) == SQZ_OK;
    }
    ok = ok && sqz_hf_export_finish(e) == SQZ_OK;
    free(w), free(o);
    sqz_hf_export_free(e);
    sqz_st_close(st);
    return ok ? 0 : -1;
}

static double ppl_of(sqz_ctx *ctx, const char *model, const int32_t *ids, size_t n) {
    sqz_model *m = NULL;
    sqz_ppl_result pr = { 0 };
    const sqz_ppl_opts po = { .n_ctx = 128, .max_tokens = n };
    const int ok = sqz_model_load(ctx, model, NULL, &m) == SQZ_OK && sqz_perplexity(ctx, m, ids, n, &po, &pr) == SQZ_OK;
    sqz_model_free(m);
    return ok ? pr.ppl : NAN;
}

static int write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(s, f);
    return fclose(f);
}

/* otfusion of a and b (model 0 the anchor) with extra config lines, written at tmp_root/name */
static void fuse(sqz_ctx *ctx, const char *yaml_extra, const char *a, const char *b, const char *calib, const char *name) {
    char yaml[3000], cfg[600], out[600];
    snprintf(cfg, sizeof cfg, "%s/o.yaml", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: otfusion\nmodels:\n  - model: %s\n  - model: %s\n%s", a, b, yaml_extra);
    write_text(cfg, yaml);
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
    CHECK(write_shuffled(ctx, base, shuf) == 0, "a shuffled copy of sqz-llama-14m: %s", sqz_ctx_error(ctx));
    /* the eval text: sotu test, which calibration never sees */
    size_t len = 0, n = 0;
    uint8_t *t = test_read_file(ev, &len);
    sqz_model *bm = NULL;
    int32_t *ids = NULL;
    if (!t || sqz_model_load(ctx, base, NULL, &bm) || sqz_tokenize(ctx, bm, (const char *)t, len < 60000 ? len : 60000, 0, &ids, &n)) {
        CHECK(0, "eval text: %s", sqz_ctx_error(ctx));
        free(t), sqz_model_free(bm);
        return;
    }
    sqz_model_free(bm);
    free(t);
    if (n > 2049) n = 2049;
    const double p_base = ppl_of(ctx, base, ids, n), p_shuf = ppl_of(ctx, shuf, ids, n);
    CHECK(fabs(p_shuf - p_base) < 1e-3 * p_base, "the shuffled copy computes the same function (ppl %.4f vs %.4f)",
          p_shuf, p_base);
    const struct { const char *extra, *name; double tol; } runs[] = {
        { "parameters: {exact: 1}\n", "exact", 1e-4 },
        { "parameters: {reg: 0.01}\n", "sinkhorn", 1e-2 },
    };
    for (int k = 0; k < 2; k++) {
        fuse(ctx, runs[k].extra, base, shuf, calib, runs[k].name);
        snprintf(out, sizeof out, "%s/%s", tmp_root, runs[k].name);
        const double p = ppl_of(ctx, out, ids, n);
        CHECK(fabs(p - p_base) < runs[k].tol * p_base, "%s: the model back (ppl %.4f vs %.4f, tolerance %g)",
              runs[k].name, p, p_base, runs[k].tol);
        rm_tree(out);
    }
    /* weights (1, 0): model 0 itself (the shuffled copy as the anchor: f32, so bit for bit) */
    snprintf(cfg, sizeof cfg, "%s/o.yaml", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: otfusion\nmodels:\n  - model: %s\n    parameters: {weight: 1}\n"
             "  - model: %s\n    parameters: {weight: 0}\n", shuf, base);
    write_text(cfg, yaml);
    snprintf(out, sizeof out, "%s/w10", tmp_root);
    const sqz_merge_opts o = { .calib = calib, .calib_tokens = 1024, .calib_ctx = 128 };
    CHECK(sqz_merge_models(ctx, cfg, out, &o, NULL) == SQZ_OK, "otfusion weights (1, 0): %s", sqz_ctx_error(ctx));
    CHECK(same_tensors(ctx, out, shuf), "weights (1, 0): model 0's tensors, bit for bit");
    rm_tree(out);
    /* the same pair averaged without alignment: ruined */
    snprintf(yaml, sizeof yaml, "merge_method: linear\nmodels:\n  - model: %s\n  - model: %s\nparameters: {weight: 1}\n", base, shuf);
    write_text(cfg, yaml);
    snprintf(out, sizeof out, "%s/linear", tmp_root);
    const sqz_merge_opts none = { 0 };
    CHECK(sqz_merge_models(ctx, cfg, out, &none, NULL) == SQZ_OK, "linear of the same pair");
    const double pl = ppl_of(ctx, out, ids, n);
    CHECK(pl > 3 * p_base, "linear of the same pair without alignment is ruined (ppl %.1f vs %.1f)", pl, p_base);
    rm_tree(out);
    /* refusals: no calibration text; reg 0; nothing written */
    struct stat sb;
    snprintf(out, sizeof out, "%s/refused", tmp_root);
    snprintf(yaml, sizeof yaml, "merge_method: otfusion\nmodels:\n  - model: %s\n  - model: %s\n", base, shuf);
    write_text(cfg, yaml);
    CHECK(sqz_merge_models(ctx, cfg, out, &none, NULL) == SQZ_ERR_ARG && stat(out, &sb) != 0,
          "otfusion without calibration text refused, nothing written: %s", sqz_ctx_error(ctx));
    snprintf(yaml, sizeof yaml, "merge_method: otfusion\nmodels:\n  - model: %s\n  - model: %s\nparameters: {reg: 0}\n", base, shuf);
    write_text(cfg, yaml);
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
    rm_tree(tmp_root);
    return test_done();
}
