/* merge_shuffled.h - what the activation-matching merge tests share (test_merge_pleas.c,
 * test_merge_otfusion.c): sqz-llama-14m written back with every symmetry of its blocks
 * shuffled (the residual stream; per block the FFN units, the kv heads with their query heads,
 * the query heads within a kv head, and optionally the value dimensions within a kv head), a
 * perplexity, a text file, a tree removed. Static functions: include it in one test program. */
#ifndef SQZ_TESTS_MERGE_SHUFFLED_H
#define SQZ_TESTS_MERGE_SHUFFLED_H

#include <math.h>

#include "test.h"

#include "io/safetensors.h"
#include "merge/gta.h"
#include "model/export_hf.h"
#include "sqz.h"

enum { MS_D = 384, MS_F = 1024, MS_L = 8, MS_HQ = 6, MS_HKV = 2, MS_G = MS_HQ / MS_HKV, MS_HD = 64, MS_V = 4096 };

static void ms_rm_tree(const char *p) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) printf("# could not remove %s\n", p);
}

static void ms_shuffle(uint64_t *rng, int *p, int n) {
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)(merge_rng_uniform(rng) * (i + 1)), t = p[i];
        p[i] = p[j], p[j] = t;
    }
}

/* Old row / column index of new index x, for a map of blocks of b: x = blk b + i -> p[blk] b +
 * q[blk / qdiv][i] (q NULL: i). */
static int64_t ms_src_of(int64_t x, const int *p, int b, int (*q)[MS_HD], int qdiv) {
    if (!p) return x;
    const int64_t blk = x / b, i = x % b;
    return (int64_t)p[blk] * b + (q ? q[blk / qdiv][i] : i);
}

/* sqz-llama-14m (folder src) with every symmetry of its blocks shuffled, as f32, at dst;
 * value_dims: also the value dimensions within each kv head (V's rows, O's columns). */
static int ms_write_shuffled(sqz_ctx *ctx, const char *src, const char *dst, uint64_t *rng, int value_dims) {
    int pr[MS_D], pf[MS_F], pk[MS_HKV], pq[MS_HQ], pd[MS_HKV][MS_HD];
    ms_shuffle(rng, pr, MS_D);
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
    char names[2 + MS_L * 9][96];
    int n = 0;
    snprintf(names[n++], 96, "model.embed_tokens.weight");
    for (int l = 0; l < MS_L; l++)
        for (int k = 0; k < 9; k++) snprintf(names[n++], 96, "model.layers.%d.%s", l, blk[k]);
    snprintf(names[n++], 96, "model.norm.weight");
    for (int k = 0; k < n && ok; k++) {
        const sqz_st_tensor *t = sqz_st_find(st, names[k]);
        ok = t && sqz_hf_export_declare(e, names[k], SQZ_TYPE_F32, t->n_dims, t->shape) == SQZ_OK;
    }
    ok = ok && sqz_hf_export_begin(e) == SQZ_OK;
    float *w = malloc(sizeof(float) * MS_V * MS_D), *o = malloc(sizeof(float) * MS_V * MS_D);
    for (int k = 0; k < n && ok && w && o; k++) {
        const char *s = names[k];
        const sqz_st_tensor *t = sqz_st_find(st, s);
        const int64_t rows = t->n_dims == 2 ? t->shape[0] : 1, cols = t->n_dims == 2 ? t->shape[1] : t->shape[0];
        for (int64_t j = 0; j < rows * cols; j++) w[j] = sqz_f16_to_f32(((const uint16_t *)t->data)[j]);
        if (strstr(s, "input_layernorm")) { /* a new block: its own shuffles */
            ms_shuffle(rng, pf, MS_F), ms_shuffle(rng, pk, MS_HKV);
            for (int g = 0; g < MS_HKV; g++) { /* query heads follow their kv head, shuffled within it */
                int sub[MS_G];
                ms_shuffle(rng, sub, MS_G);
                if (value_dims) ms_shuffle(rng, pd[g], MS_HD);
                else for (int i = 0; i < MS_HD; i++) pd[g][i] = i;
                for (int a = 0; a < MS_G; a++) pq[g * MS_G + a] = pk[g] * MS_G + sub[a];
            }
        }
        /* row map (p, block, q, q's divisor), column map */
        const int *rp = NULL, *cp = NULL;
        int rb = 1, cb = 1, (*rq)[MS_HD] = NULL, (*cq)[MS_HD] = NULL, rdiv = 1, cdiv = 1;
        if (strstr(s, "norm") || strstr(s, "embed")) cp = pr;
        else if (strstr(s, "q_proj")) rp = pq, rb = MS_HD, cp = pr;
        else if (strstr(s, "k_proj")) rp = pk, rb = MS_HD, cp = pr;
        else if (strstr(s, "v_proj")) rp = pk, rb = MS_HD, rq = pd, cp = pr;
        else if (strstr(s, "o_proj")) rp = pr, cp = pq, cb = MS_HD, cq = pd, cdiv = MS_G;
        else if (strstr(s, "gate_proj") || strstr(s, "up_proj")) rp = pf, cp = pr;
        else rp = pr, cp = pf; /* down */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                o[r * cols + c] = w[ms_src_of(r, rp, rb, rq, rdiv) * cols + ms_src_of(c, cp, cb, cq, cdiv)];
        ok = sqz_hf_export_put_f32(e, o, (size_t)(rows * cols)) == SQZ_OK;
    }
    ok = ok && w && o && sqz_hf_export_finish(e) == SQZ_OK;
    free(w), free(o);
    sqz_hf_export_free(e);
    sqz_st_close(st);
    return ok ? 0 : -1;
}

/* Perplexity of the model at path on ids[0..n), windows of 128; NAN on failure. */
static double ms_ppl(sqz_ctx *ctx, const char *model, const int32_t *ids, size_t n) {
    sqz_model *m = NULL;
    sqz_ppl_result pr = { 0 };
    const sqz_ppl_opts po = { .n_ctx = 128, .max_tokens = n };
    const int ok = sqz_model_load(ctx, model, NULL, &m) == SQZ_OK && sqz_perplexity(ctx, m, ids, n, &po, &pr) == SQZ_OK;
    sqz_model_free(m);
    return ok ? pr.ppl : NAN;
}

/* The eval tokens the shuffled-copy tests score on: the model at `model`'s tokens of the text
 * file ev's first 60000 bytes, at most 2049. 0, or -1 after a failed CHECK naming the error. */
static int ms_eval_ids(sqz_ctx *ctx, const char *model, const char *ev, int32_t **ids, size_t *n) {
    size_t len = 0;
    uint8_t *t = ev ? test_read_file(ev, &len) : NULL;
    sqz_model *bm = NULL;
    *ids = NULL, *n = 0;
    if (!t || sqz_model_load(ctx, model, NULL, &bm) ||
        sqz_tokenize(ctx, bm, (const char *)t, len < 60000 ? len : 60000, 0, ids, n)) {
        CHECK(0, "eval text: %s", sqz_ctx_error(ctx));
        free(t), sqz_model_free(bm);
        return -1;
    }
    sqz_model_free(bm);
    free(t);
    if (*n > 2049) *n = 2049;
    return 0;
}

static int ms_write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(s, f);
    return fclose(f);
}

#endif
