/* drop.c - sqz_drop: whole blocks removed, ranked by block influence (include/sqz.h; ShortGPT,
 * Men et al. 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than You
 * Expect").
 *
 * Glossary: W windows of C calibration tokens, D dim, L layers. X [W*C][D] = the token
 * embeddings; for each block l of the full model X runs through it (eval/calib_pass.h, the
 * loop quantization and pruning use) and BI_l = mean over the W*C tokens of 1 - cos(x_in,
 * x_out). The n blocks of least BI are dropped (ties: the later block first). The output model
 * is the input's views with the kept blocks renumbered 0..L-n-1, written by sqz_convert as a
 * llama GGUF (block_count L - n), which llama.cpp loads as it loads any llama model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/calib_pass.h"
#include "formats/presets.h"
#include "model/model.h"
#include "model/session.h"

static sqz_status influence(sqz_ctx *ctx, const sqz_model *model, const sqz_drop_opts *o, sqz_drop_result *r,
                            double *bi) {
    const sqz_config *c = &model->cfg;
    const int L = c->n_layers, D = c->dim;
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512;
    const size_t n_win = o->n_calib / (size_t)C, N = n_win * (size_t)C;
    for (size_t i = 0; i < N; i++)
        if (o->calib[i] < 0 || o->calib[i] >= c->vocab_size)
            return sqz_fail(ctx, SQZ_ERR_RANGE, "calibration token %d outside the vocabulary", o->calib[i]);
    float *X = malloc(N * (size_t)D * sizeof *X), *X0 = malloc(N * (size_t)D * sizeof *X0);
    sqz_session *s = NULL;
    sqz_status st = SQZ_OK;
    if (!X || !X0) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %zu calibration tokens", N); goto done; }
    if ((st = sqz_session_new(ctx, model, C, &s))) goto done;
    for (size_t i = 0; i < N; i++) sqz_tensor_row_f32(&model->tok_embd, o->calib[i], X + i * (size_t)D);
    const double t0 = sqz_now();
    const sqz_layer_weights *lw = sqz_model_run_layers(model);
    for (int l = 0; l < L && !st; l++) {
        memcpy(X0, X, N * (size_t)D * sizeof *X);
        if ((st = sqz_calib_layer_pass(s, &lw[l], l, X, n_win, C, -1, NULL, NULL, NULL, NULL, NULL))) break;
        double sum = 0;
        for (size_t t = 0; t < N; t++) {
            const float *a = X0 + t * (size_t)D, *b = X + t * (size_t)D;
            double ab = 0, aa = 0, bb = 0;
            for (int j = 0; j < D; j++) ab += (double)a[j] * b[j], aa += (double)a[j] * a[j], bb += (double)b[j] * b[j];
            sum += aa > 0 && bb > 0 ? 1 - ab / sqrt(aa * bb) : 0;
        }
        bi[l] = sum / (double)N;
        sqz_progress(ctx, "block influence", (uint64_t)l + 1, (uint64_t)L);
    }
    r->calib_tokens = N;
    r->calib_seconds = sqz_now() - t0;
done:
    sqz_session_free(s);
    free(X);
    free(X0);
    return st;
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
    if ((o->n_drop != 0) == (o->n_blocks != 0))
        return sqz_fail(ctx, SQZ_ERR_ARG, "drop: a number of blocks or a list of blocks, one of them");
    if (o->n_drop != 0 && (o->n_drop < 0 || o->n_drop >= L))
        return sqz_fail(ctx, SQZ_ERR_ARG, "drop: %d blocks of %d: at least one must stay, and at least one go", o->n_drop,
                        L);
    if (o->n_drop && !have_calib)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "drop: ranking the blocks needs calibration text: %zu tokens is less than one window of %d",
                        o->calib ? o->n_calib : 0, C);
    sqz_preset preset; /* the output type, checked before any work */
    if (sqz_preset_find(o->type ? o->type : "f16", 0, &preset) != 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: unknown type '%s' (known: %s)", out_path, o->type, sqz_preset_names());
    int *drop = calloc((size_t)L, sizeof *drop);
    double *bi = malloc((size_t)L * sizeof *bi);
    sqz_model *qm = calloc(1, sizeof *qm);
    sqz_status st = SQZ_OK;
    if (!drop || !bi || !qm) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < o->n_blocks && !st; i++) {
        const int b = o->blocks[i];
        if (b < 0 || b >= L) st = sqz_fail(ctx, SQZ_ERR_ARG, "drop: block %d does not exist (0..%d)", b, L - 1);
        else if (drop[b]) st = sqz_fail(ctx, SQZ_ERR_ARG, "drop: block %d is listed twice", b);
        else drop[b] = 1;
    }
    if (!st && o->n_blocks >= L) st = sqz_fail(ctx, SQZ_ERR_ARG, "drop: every block listed: at least one must stay");
    if (st) goto done;
    for (int l = 0; l < L; l++) bi[l] = -1;
    if (have_calib && (st = influence(ctx, model, o, &r, bi))) goto done;
    for (int k = 0; k < o->n_drop; k++) { /* the least influence not yet dropped; ties: the later block */
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
    for (int l = 0; l < L; l++)
        if (!drop[l]) qm->layers[kept++] = model->layers[l];
    qm->cfg.n_layers = kept;
    r.n_layers_in = L;
    r.n_layers_out = kept;
    for (int l = 0; l < L && l < 256; l++) r.influence[l] = bi[l], r.dropped[l] = drop[l];
    /* the file's card (general.* keys): which blocks went */
    char params[600];
    size_t n = (size_t)snprintf(params, sizeof params, "%d of %d blocks dropped:", L - kept, L);
    for (int l = 0; l < L && n < sizeof params; l++)
        if (drop[l]) n += (size_t)snprintf(params + n, sizeof params - n, " %d", l);
    const sqz_model_card card = { .method = o->n_drop ? "drop:block_influence" : "drop:blocks",
                                  .parameters = params, .calib_tokens = o->n_calib };
    const sqz_convert_opts co = { .type = o->type ? o->type : "f16", .card = &card };
    st = sqz_convert(ctx, qm, out_path, &co, &r.convert);
done:
    if (qm) {
        free(qm->layers);
        free(qm);
    }
    free(drop);
    free(bi);
    if (!st && res) *res = r;
    return st;
}
