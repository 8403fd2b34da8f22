/* dq2_fake.c - dq2 written as fake quantization (see dq2_fake.h). */
#include "quant/dq2_fake.h"

#include <stdlib.h>
#include <string.h>

#include "formats/dq2.h"
#include "formats/presets.h"
#include "formats/quant.h"

sqz_status sqz_dq2_fake_convert(sqz_ctx *ctx, sqz_model *qm, const char *out_path,
                                sqz_convert_result *res) {
    const sqz_config *c = &qm->cfg;
    sqz_preset preset;
    sqz_preset_find("q2_k", 0, &preset);
    const sqz_preset_model pm = { .n_layers = c->n_layers, .n_heads = c->n_heads,
                                  .n_kv_heads = c->n_kv_heads, .tied = c->tied_embeddings };
    sqz_tensor *ts[2] = { &qm->tok_embd, c->tied_embeddings ? NULL : &qm->output };
    const sqz_tensor_role roles[2] = { SQZ_ROLE_TOKEN_EMBD, SQZ_ROLE_OUTPUT };
    for (int i = 0; i < 2; i++) {
        sqz_tensor *t = ts[i];
        if (!t || !t->data) continue;
        const sqz_type type = sqz_preset_tensor_type(&preset, &pm, roles[i], -1, t->cols, NULL);
        const size_t rs = sqz_type_row_size(type, t->cols);
        float *row = malloc((size_t)t->cols * sizeof *row);
        void *buf = sqz_model_own(qm, malloc((size_t)t->rows * rs));
        if (!row || !buf) {
            free(row);
            return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory quantizing token_embd");
        }
        for (int64_t r = 0; r < t->rows; r++) {
            sqz_tensor_row_f32(t, r, row);
            sqz_quantize_rows(type, row, (char *)buf + (size_t)r * rs, 1, t->cols, NULL);
        }
        free(row);
        t->type = type;
        t->data = buf;
    }
    if (c->tied_embeddings) qm->output = qm->tok_embd;
    const sqz_convert_opts co = { .type = "f32" };
    return sqz_convert(ctx, qm, out_path, &co, res);
}

sqz_status sqz_dq2_fake_rtn(sqz_ctx *ctx, const sqz_model *model, const char *out_path,
                            sqz_quantize_result *res) {
    sqz_quantize_result r;
    memset(&r, 0, sizeof r);
    const int L = model->cfg.n_layers;
    sqz_model *qm = calloc(1, sizeof *qm);
    sqz_status st = SQZ_OK;
    if (!qm) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    *qm = *model;
    qm->owned = NULL;
    qm->n_owned = qm->cap_owned = 0;
    qm->layers = malloc((size_t)L * sizeof *qm->layers);
    if (!qm->layers) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    else memcpy(qm->layers, model->layers, (size_t)L * sizeof *qm->layers);
    const double t0 = sqz_now();
    for (int l = 0; l < L && !st; l++) {
        sqz_layer_weights *w = &qm->layers[l];
        sqz_tensor *mats[] = { &w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down };
        for (size_t k = 0; k < sizeof mats / sizeof *mats && !st; k++) {
            sqz_tensor *t = mats[k];
            if (t->cols % QK_DQ2) {
                st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: layer %d has rows of %lld, not a multiple of dq2's 64",
                              out_path, l, (long long)t->cols);
                break;
            }
            const size_t rs = sqz_type_row_size(SQZ_TYPE_DQ2, t->cols);
            float *f = sqz_model_own(qm, malloc((size_t)(t->rows * t->cols) * sizeof *f));
            void *blk = malloc(rs);
            if (!f || !blk) {
                free(blk);
                st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
                break;
            }
            for (int64_t r = 0; r < t->rows; r++) {
                float *fr = f + r * t->cols;
                sqz_tensor_row_f32(t, r, fr);
                sqz_dq2_from_float(fr, blk, t->cols);
                sqz_dq2_to_float(blk, fr, t->cols);
            }
            free(blk);
            t->type = SQZ_TYPE_F32;
            t->data = f;
        }
    }
    r.quant_seconds = sqz_now() - t0;
    if (!st) st = sqz_dq2_fake_convert(ctx, qm, out_path, &r.convert);
    if (!st && res) *res = r;
    for (int i = 0; i < qm->n_owned; i++) free(qm->owned[i]);
    free(qm->owned);
    free(qm->layers);
    free(qm);
    return st;
}

