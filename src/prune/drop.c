/* drop.c - sqz_drop: whole blocks, or their attention / MLP sub-blocks, removed, ranked by
 * block influence (include/sqz.h; ShortGPT, Men et al. 2024, "ShortGPT: Layers in Large
 * Language Models are More Redundant Than You Expect"; docs/drop-subblocks.md).
 *
 * Glossary: W windows of C calibration tokens, D dim, L layers. X [W*C][D] = the token
 * embeddings; for each block l of the full model X runs through it (eval/calib_pass.h, the
 * loop quantization and pruning use) and BI_l = mean over the W*C tokens of 1 - cos(x_in,
 * x_out). The n blocks of least BI are dropped (ties: the later block first). The output model
 * is the input's views with the kept blocks renumbered 0..L-n-1, written by sqz_convert as a
 * llama GGUF (block_count L - n), which llama.cpp loads as it loads any llama model.
 *
 * Sub-blocks (opts->sub): in the same single pass each layer runs in two halves, its attention
 * alone (the MLP's output matrix cleared: model.h's absent sub-block) giving h, then its MLP
 * alone on h; BI_attn = mean 1 - cos(x, h), BI_mlp = mean 1 - cos(h, out), BI_l as above (the
 * two halves compute exactly what the whole layer does). The chosen sub-blocks' tensors are
 * left out (attention: attn_norm, q, k, v, o and biases; MLP: ffn_norm, gate, up, down); a
 * layer left with neither is removed as a whole block, and when some layer keeps one of the
 * two the file is sqzf with sqz.subblocks (docs/sqzf.md), which every sqz command runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/calib_pass.h"
#include "formats/presets.h"
#include "model/model.h"
#include "model/session.h"
#include "prune/drop.h"

/* mean over N rows of 1 - cos(a_t, b_t) (a zero row counts 0) */
static double mean_one_minus_cos(const float *A, const float *B, size_t N, int D) {
    double sum = 0;
    for (size_t t = 0; t < N; t++) {
        const float *a = A + t * (size_t)D, *b = B + t * (size_t)D;
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < D; j++) ab += (double)a[j] * b[j], aa += (double)a[j] * a[j], bb += (double)b[j] * b[j];
        sum += aa > 0 && bb > 0 ? 1 - ab / sqrt(aa * bb) : 0;
    }
    return N ? sum / (double)N : 0;
}

/* bi[l] for every block; with ba / bm (sub-blocks) also each layer's attention and MLP (left
 * as they are where the layer lacks one). */
static sqz_status influence(sqz_ctx *ctx, const sqz_model *model, const sqz_drop_opts *o, sqz_drop_result *r,
                            double *bi, double *ba, double *bm) {
    const sqz_config *c = &model->cfg;
    const int L = c->n_layers, D = c->dim;
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512;
    const size_t n_win = o->n_calib / (size_t)C, N = n_win * (size_t)C;
    for (size_t i = 0; i < N; i++)
        if (o->calib[i] < 0 || o->calib[i] >= c->vocab_size)
            return sqz_fail(ctx, SQZ_ERR_RANGE, "calibration token %d outside the vocabulary", o->calib[i]);
    const size_t bytes = N * (size_t)D * sizeof(float);
    float *X = malloc(bytes), *X0 = malloc(bytes), *X1 = ba ? malloc(bytes) : NULL;
    sqz_session *s = NULL;
    sqz_status st = SQZ_OK;
    if (!X || !X0 || (ba && !X1)) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %zu calibration tokens", N); goto done; }
    if ((st = sqz_session_new(ctx, model, C, &s))) goto done;
    for (size_t i = 0; i < N; i++) sqz_tensor_row_f32(&model->tok_embd, o->calib[i], X + i * (size_t)D);
    const double t0 = sqz_now();
    const sqz_layer_weights *lw = sqz_model_run_layers(model);
    for (int l = 0; l < L && !st; l++) {
        memcpy(X0, X, bytes);
        if (!ba) { /* whole blocks: the layer in one go */
            if ((st = sqz_calib_layer_pass(s, &lw[l], l, X, n_win, C, -1, NULL, NULL, NULL, NULL, NULL))) break;
        } else {
            const int has_attn = sqz_layer_has_attn(&lw[l]), has_ffn = sqz_layer_has_ffn(&lw[l]);
            if (has_attn) { /* the attention alone: X = h = x + attn(x) */
                sqz_layer_weights wa = lw[l];
                wa.w_down.data = NULL;
                if ((st = sqz_calib_layer_pass(s, &wa, l, X, n_win, C, -1, NULL, NULL, NULL, NULL, NULL))) break;
                ba[l] = mean_one_minus_cos(X0, X, N, D);
            }
            if (has_ffn) { /* then the MLP alone: X = h + mlp(h) */
                sqz_layer_weights wf = lw[l];
                wf.wo.data = NULL;
                memcpy(X1, X, bytes);
                if ((st = sqz_calib_layer_pass(s, &wf, l, X, n_win, C, -1, NULL, NULL, NULL, NULL, NULL))) break;
                bm[l] = mean_one_minus_cos(X1, X, N, D);
            }
        }
        bi[l] = mean_one_minus_cos(X0, X, N, D);
        sqz_progress(ctx, ba ? "sub-block influence" : "block influence", (uint64_t)l + 1, (uint64_t)L);
    }
    r->calib_tokens = N;
    r->calib_seconds = sqz_now() - t0;
done:
    sqz_session_free(s);
    free(X);
    free(X0);
    free(X1);
    return st;
}

sqz_status sqz_block_influence(sqz_ctx *ctx, const sqz_model *model, const int32_t *calib, size_t n_calib, int C,
                               double *bi) {
    if (C < 1 || n_calib < (size_t)C)
        return sqz_fail(ctx, SQZ_ERR_ARG, "block influence: %zu tokens, less than one window of %d", n_calib, C);
    const sqz_drop_opts o = { .calib = calib, .n_calib = n_calib, .calib_ctx = C };
    sqz_drop_result *r = malloc(sizeof *r);
    if (!r) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    const sqz_status st = influence(ctx, model, &o, r, bi, NULL, NULL);
    free(r);
    return st;
}

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Sub-block mode's checks and choice: at[l] / am[l] = 0 kept, 1 dropped, 2 absent in the input. */
static sqz_status check_sub(sqz_ctx *ctx, const sqz_model *model, const sqz_drop_opts *o, int *at, int *am) {
    const int L = model->cfg.n_layers;
    int n_a = 0, n_m = 0; /* present in the input */
    for (int l = 0; l < L; l++) {
        at[l] = sqz_layer_has_attn(&model->layers[l]) ? 0 : 2;
        am[l] = sqz_layer_has_ffn(&model->layers[l]) ? 0 : 2;
        n_a += !at[l], n_m += !am[l];
    }
    const int by_count = o->n_attn || o->n_mlp, by_sub = o->n_sub != 0, by_list = o->n_attn_list || o->n_mlp_list;
    if (o->n_attn < 0 || o->n_mlp < 0 || o->n_sub < 0 || o->n_attn_list < 0 || o->n_mlp_list < 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "drop: a negative number of sub-blocks");
    if (o->n_drop || o->n_blocks)
        return sqz_fail(ctx, SQZ_ERR_ARG, "drop: whole blocks or sub-blocks, not both");
    if (by_count + by_sub + by_list != 1)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "drop: sub-blocks by count (attention and / or MLP), by count of either kind, or by list: one of them");
    if (o->n_attn > n_a)
        return sqz_fail(ctx, SQZ_ERR_ARG, "drop: %d attention sub-blocks of %d", o->n_attn, n_a);
    if (o->n_mlp > n_m) return sqz_fail(ctx, SQZ_ERR_ARG, "drop: %d MLP sub-blocks of %d", o->n_mlp, n_m);
    if (o->n_attn + o->n_mlp >= n_a + n_m || o->n_sub >= n_a + n_m)
        return sqz_fail(ctx, SQZ_ERR_ARG, "drop: %d of the %d sub-blocks: at least one must stay",
                        by_sub ? o->n_sub : o->n_attn + o->n_mlp, n_a + n_m);
    for (int kind = 0; kind < 2; kind++) {
        const int *list = kind ? o->mlp_list : o->attn_list, n = kind ? o->n_mlp_list : o->n_attn_list;
        int *st = kind ? am : at;
        const char *what = kind ? "MLP" : "attention";
        if (n && !list) return sqz_fail(ctx, SQZ_ERR_ARG, "drop: a %s list of %d layers without the list", what, n);
        for (int i = 0; i < n; i++) {
            const int l = list[i];
            if (l < 0 || l >= L) return sqz_fail(ctx, SQZ_ERR_ARG, "drop: layer %d does not exist (0..%d)", l, L - 1);
            if (st[l] == 1) return sqz_fail(ctx, SQZ_ERR_ARG, "drop: %s %d is listed twice", what, l);
            if (st[l] == 2) return sqz_fail(ctx, SQZ_ERR_ARG, "drop: layer %d has no %s to drop", l, what);
            st[l] = 1;
        }
    }
    if (by_list && o->n_attn_list + o->n_mlp_list >= n_a + n_m)
        return sqz_fail(ctx, SQZ_ERR_ARG, "drop: every sub-block listed: at least one must stay");
    return SQZ_OK;
}

/* The k sub-blocks of least influence among those still kept (kind < 0: either kind; ties: the
 * later layer first, and in one layer the MLP). */
static void pick_least(int L, int kind, int k, const double *ba, const double *bm, int *at, int *am) {
    for (int n = 0; n < k; n++) {
        int best = -1;
        double bv = 0;
        for (int i = 0; i < 2 * L; i++) {
            const int l = i / 2, is_mlp = i % 2;
            if ((kind >= 0 && kind != is_mlp) || (is_mlp ? am[l] : at[l])) continue;
            const double v = is_mlp ? bm[l] : ba[l];
            if (best < 0 || v <= bv) best = i, bv = v;
        }
        if (best < 0) return;
        if (best % 2) am[best / 2] = 1;
        else at[best / 2] = 1;
    }
}

static void clear_attn(sqz_layer_weights *w) {
    sqz_tensor *t[] = { &w->attn_norm, &w->wq, &w->wk, &w->wv, &w->wo, &w->bq, &w->bk, &w->bv, &w->bo };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) memset(t[i], 0, sizeof *t[i]);
}

static void clear_ffn(sqz_layer_weights *w) {
    sqz_tensor *t[] = { &w->ffn_norm, &w->w_gate, &w->w_up, &w->w_down };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) memset(t[i], 0, sizeof *t[i]);
}

sqz_status sqz_drop(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_drop_opts *o,
                    sqz_drop_result *res) {
    sqz_drop_result r;
    memset(&r, 0, sizeof r);
    if (res) *res = r;
    if (!model || !out_path || !o) return sqz_fail(ctx, SQZ_ERR_ARG, "drop: model, output and options are required");
    const int L = model->cfg.n_layers;
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512;
    const int have_calib = o->calib && o->n_calib >= (size_t)C;
    int *drop = calloc((size_t)L, sizeof *drop), *at = calloc((size_t)L, sizeof *at), *am = calloc((size_t)L, sizeof *am);
    double *bi = malloc((size_t)L * sizeof *bi), *ba = malloc((size_t)L * sizeof *ba), *bm = malloc((size_t)L * sizeof *bm);
    sqz_model *qm = calloc(1, sizeof *qm);
    sqz_status st = SQZ_OK;
    if (!drop || !at || !am || !bi || !ba || !bm || !qm) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    for (int l = 0; l < L; l++) bi[l] = ba[l] = bm[l] = -1;
    const int ranked = o->sub ? o->n_attn || o->n_mlp || o->n_sub : o->n_drop != 0;
    if (o->sub) {
        if ((st = check_sub(ctx, model, o, at, am))) goto done;
        if (ends_with(out_path, ".gguf")) {
            st = sqz_fail(ctx, SQZ_ERR_ARG,
                          "%s: a model without some sub-blocks is an sqzf file, which llama.cpp does not run: name it .sqzf",
                          out_path);
            goto done;
        }
    } else {
        if (sqz_model_n_absent_subblocks(model) && ends_with(out_path, ".gguf")) {
            st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: the model lacks some sub-blocks, so the output is sqzf: name it .sqzf",
                          out_path);
            goto done;
        }
        if ((o->n_drop != 0) == (o->n_blocks != 0)) {
            st = sqz_fail(ctx, SQZ_ERR_ARG, "drop: a number of blocks or a list of blocks, one of them");
            goto done;
        }
        if (o->n_drop != 0 && (o->n_drop < 0 || o->n_drop >= L)) {
            st = sqz_fail(ctx, SQZ_ERR_ARG, "drop: %d blocks of %d: at least one must stay, and at least one go",
                          o->n_drop, L);
            goto done;
        }
    }
    if (ranked && !have_calib) {
        st = sqz_fail(ctx, SQZ_ERR_ARG, "drop: ranking the %s needs calibration text: %zu tokens is less than one window of %d",
                      o->sub ? "sub-blocks" : "blocks", o->calib ? o->n_calib : 0, C);
        goto done;
    }
    sqz_preset preset; /* the output type, checked before any work */
    if (sqz_preset_find(o->type ? o->type : "f16", 0, &preset) != 0) {
        st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: unknown type '%s' (known: %s)", out_path, o->type, sqz_preset_names());
        goto done;
    }
    for (int i = 0; !o->sub && i < o->n_blocks && !st; i++) {
        const int b = o->blocks[i];
        if (b < 0 || b >= L) st = sqz_fail(ctx, SQZ_ERR_ARG, "drop: block %d does not exist (0..%d)", b, L - 1);
        else if (drop[b]) st = sqz_fail(ctx, SQZ_ERR_ARG, "drop: block %d is listed twice", b);
        else drop[b] = 1;
    }
    if (!st && !o->sub && o->n_blocks >= L) st = sqz_fail(ctx, SQZ_ERR_ARG, "drop: every block listed: at least one must stay");
    if (st) goto done;
    if (have_calib && (st = influence(ctx, model, o, &r, bi, o->sub ? ba : NULL, o->sub ? bm : NULL))) goto done;
    if (o->sub) {
        pick_least(L, 0, o->n_attn, ba, bm, at, am);
        pick_least(L, 1, o->n_mlp, ba, bm, at, am);
        pick_least(L, -1, o->n_sub, ba, bm, at, am);
        for (int l = 0; l < L; l++) drop[l] = at[l] && am[l]; /* neither left: the whole block goes */
    }
    for (int k = 0; !o->sub && k < o->n_drop; k++) { /* the least influence not yet dropped; ties: the later block */
        int best = -1;
        for (int l = 0; l < L; l++)
            if (!drop[l] && (best < 0 || bi[l] <= bi[best])) best = l;
        drop[best] = 1;
    }
    *qm = *model;
    qm->owned = NULL;
    qm->n_owned = qm->cap_owned = 0;
    qm->layers = malloc((size_t)L * sizeof *qm->layers);
    if (!qm->layers) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    int kept = 0;
    for (int l = 0; l < L; l++) {
        if (drop[l]) continue;
        sqz_layer_weights *w = &qm->layers[kept++];
        *w = model->layers[l];
        if (at[l] == 1) clear_attn(w);
        if (am[l] == 1) clear_ffn(w);
        r.sqzf |= !sqz_layer_has_attn(w) || !sqz_layer_has_ffn(w);
    }
    qm->cfg.n_layers = kept;
    r.n_layers_in = L;
    r.n_layers_out = kept;
    for (int l = 0; l < L && l < 256; l++) {
        r.influence[l] = bi[l], r.dropped[l] = drop[l];
        r.attn_influence[l] = ba[l], r.mlp_influence[l] = bm[l];
        r.attn_dropped[l] = at[l], r.mlp_dropped[l] = am[l];
    }
    for (int l = 0; l < L; l++) r.n_attn_dropped += at[l] == 1, r.n_mlp_dropped += am[l] == 1;
    /* the file's card (general.* keys): which blocks or sub-blocks went */
    char params[1200];
    size_t n;
    if (!o->sub) {
        n = (size_t)snprintf(params, sizeof params, "%d of %d blocks dropped:", L - kept, L);
        for (int l = 0; l < L && n < sizeof params; l++)
            if (drop[l]) n += (size_t)snprintf(params + n, sizeof params - n, " %d", l);
    } else {
        n = (size_t)snprintf(params, sizeof params, "%d attention and %d MLP sub-blocks of %d layers dropped:",
                             r.n_attn_dropped, r.n_mlp_dropped, L);
        for (int l = 0; l < L && n < sizeof params; l++) {
            if (at[l] == 1 && n < sizeof params) n += (size_t)snprintf(params + n, sizeof params - n, " attn:%d", l);
            if (am[l] == 1 && n < sizeof params) n += (size_t)snprintf(params + n, sizeof params - n, " mlp:%d", l);
        }
    }
    const sqz_model_card card = { .method = o->sub ? (ranked ? "drop:subblock_influence" : "drop:subblocks")
                                          : o->n_drop ? "drop:block_influence" : "drop:blocks",
                                  .parameters = params, .calib_tokens = o->n_calib };
    /* No type given: a quantized model stays as it is (every quantized tensor keeps its type,
     * the token embedding too), the rest f16 - dropping blocks of a Q8_0 file must not write
     * a bigger f16 one. */
    const int keep = o->type == NULL;
    const sqz_type et = model->tok_embd.type;
    const int embd_q = keep && et != SQZ_TYPE_F32 && et != SQZ_TYPE_F16 && et != SQZ_TYPE_BF16;
    const sqz_convert_opts co = { .type = o->type ? o->type : "f16", .keep_types = keep,
                                  .embd_type = embd_q ? sqz_type_name(et) : NULL, .card = &card };
    st = sqz_convert(ctx, qm, out_path, &co, &r.convert);
done:
    if (qm) {
        free(qm->layers);
        free(qm);
    }
    free(drop), free(at), free(am);
    free(bi), free(ba), free(bm);
    if (!st && res) *res = r;
    return st;
}
