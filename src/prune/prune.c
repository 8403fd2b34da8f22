/* prune.c - sqz_prune: the driver every pruner (prune/pruner.h, listed in pruners.c) runs in,
 * layer by layer, as quant/calibrate.c's driver runs the quantization methods.
 *
 * Glossary: W windows of C calibration tokens, D dim, F hidden_dim, L layers; the seven block
 * matrices of a layer are q, k, v, o, gate, up, down, read at four input sites (eval/
 * calib_pass.h). Each matrix gets a level (prune/pruner.h): the options' one, or its own from
 * the levels file; a matrix at density 1 is left as it is.
 * With calibration (the pruner needs it, or tokens are given): X [W*C][D] = the token
 * embeddings; for each layer l:
 *   1. X runs through layer l and H = sum x^T x (f64) is accumulated at each site;
 *   2. the layer's matrices are pruned, each from its f32 rows, and their relative output error
 *      ||(W - P) X|| / ||W X|| = sqrt(tr(E H E^T) / tr(W H W^T)) is reported;
 *   3. X runs through the pruned layer: the next layer's input (SparseGPT's and Wanda's order).
 * Without: each matrix is pruned alone (magnitude).
 * The pruned model (the original's views, the pruned matrices as f32 copies it owns, or with
 * type sp8 as sparse int8 matrices, formats/sp8.h) is written by sqz_convert (sp8: to sqzf).
 * Joint pass (a pruner with prune_quant - SparseGPT - and a type GPTQ quantizes to, e.g. q4_k,
 * q8_0): each matrix is pruned and quantized to its type in one pass (prune/sgptq.h; a matrix
 * at density 1 by GPTQ alone), its bytes kept as they are by sqz_convert, and after the layers
 * the output projection (token_embd when tied) is quantized by GPTQ as `sqz quantize --method
 * gptq` does; a matrix whose rows do not fit the type gets its fallback type, pruned alone.
 * Peak memory: the pruned matrices (f32 or sp8), the calibration activations, one layer's
 * statistics. */
#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eval/calib_pass.h"
#include "formats/presets.h"
#include "formats/sp8.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "model/session.h"
#include "prune/levels.h"
#include "prune/pruner.h"
#include "prune/sgptq.h"
#include "quant/gptq.h"

enum { N_MATS = 7 };

static const struct {
    const char *name;
    size_t off;
    int site;
    sqz_tensor_role role;
} mats[N_MATS] = {
    { "attn_q", offsetof(sqz_layer_weights, wq), SQZ_SITE_QKV, SQZ_ROLE_ATTN_Q },
    { "attn_k", offsetof(sqz_layer_weights, wk), SQZ_SITE_QKV, SQZ_ROLE_ATTN_K },
    { "attn_v", offsetof(sqz_layer_weights, wv), SQZ_SITE_QKV, SQZ_ROLE_ATTN_V },
    { "attn_output", offsetof(sqz_layer_weights, wo), SQZ_SITE_O, SQZ_ROLE_ATTN_OUTPUT },
    { "ffn_gate", offsetof(sqz_layer_weights, w_gate), SQZ_SITE_GATE_UP, SQZ_ROLE_FFN_GATE },
    { "ffn_up", offsetof(sqz_layer_weights, w_up), SQZ_SITE_GATE_UP, SQZ_ROLE_FFN_UP },
    { "ffn_down", offsetof(sqz_layer_weights, w_down), SQZ_SITE_DOWN, SQZ_ROLE_FFN_DOWN },
};

static sqz_tensor *mat(sqz_layer_weights *w, int k) { return (sqz_tensor *)((char *)w + mats[k].off); }

/* One site's statistics: H [dim][dim] (upper triangle while accumulating), tmp its f32 scratch. */
typedef struct site_stats {
    int dim;
    double *H;
    float *tmp;
} site_stats;

static void capture(void *user, int layer, int site, const float *x, int T, int dim) {
    (void)layer;
    if (site >= SQZ_N_SITES) return;
    site_stats *s = (site_stats *)user + site;
    /* tmp = x^T x (upper) in one sgemm-class call, summed into double over the batches */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, T, 1.0f, x, dim, 0.0f, s->tmp, dim);
    for (int i = 0; i < dim; i++)
        for (int j = i; j < dim; j++) s->H[(size_t)i * dim + j] += s->tmp[(size_t)i * dim + j];
}

/* ||(W - P) X|| / ||W X||, row by row (H both triangles). */
static double rel_err(const float *W, const float *P, int64_t rows, int64_t cols, const double *H) {
    double num = 0, den = 0;
    double *e = malloc((size_t)cols * sizeof *e), *w = malloc((size_t)cols * sizeof *w);
    double *he = malloc((size_t)cols * sizeof *he), *hw = malloc((size_t)cols * sizeof *hw);
    if (!e || !w || !he || !hw) { free(e); free(w); free(he); free(hw); return NAN; }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) {
            w[i] = W[r * cols + i];
            e[i] = w[i] - P[r * cols + i];
        }
        cblas_dsymv(CblasRowMajor, CblasUpper, (int)cols, 1.0, H, (int)cols, e, 1, 0.0, he, 1);
        cblas_dsymv(CblasRowMajor, CblasUpper, (int)cols, 1.0, H, (int)cols, w, 1, 0.0, hw, 1);
        num += cblas_ddot((int)cols, e, 1, he, 1);
        den += cblas_ddot((int)cols, w, 1, hw, 1);
    }
    free(e); free(w); free(he); free(hw);
    return den > 0 ? sqrt(num / den) : 0;
}

/* Every block matrix's level: the default, then the file's. lv [L][N_MATS]. */
static sqz_status plan_levels(sqz_ctx *ctx, const sqz_model *model, const sqz_prune_opts *o,
                              const sqz_prune_level *def, sqz_prune_level *lv) {
    const int L = model->cfg.n_layers;
    for (int i = 0; i < L * N_MATS; i++) lv[i] = *def;
    sqz_status st = SQZ_OK;
    if (o->levels) {
        sqz_prune_levels f;
        if ((st = sqz_prune_levels_load(ctx, o->levels, &f))) return st;
        for (int i = 0; i < f.n && !st; i++) {
            int found = 0;
            for (int l = 0; l < L && !found; l++)
                for (int k = 0; k < N_MATS && !found; k++) {
                    char name[64];
                    snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[k].name);
                    if (!strcmp(name, f.names[i])) lv[l * N_MATS + k] = f.level[i], found = 1;
                }
            if (!found)
                st = sqz_fail(ctx, SQZ_ERR_ARG,
                              "%s: '%s' is not a block matrix of this model (blk.N.attn_q.weight, ...; the token "
                              "embedding and the output head are never pruned)",
                              o->levels, f.names[i]);
        }
        sqz_prune_levels_free(&f);
    }
    for (int l = 0; l < L && !st; l++)
        for (int k = 0; k < N_MATS && !st; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[k].name);
            st = sqz_prune_level_check(ctx, &lv[l * N_MATS + k], mat(&model->layers[l], k)->cols, name);
        }
    return st;
}

typedef struct prune_run {
    sqz_ctx *ctx;
    const sqz_prune_opts *o;
    const sqz_pruner *pruner;
    void *state;
    sqz_model *qm;
    const sqz_prune_level *lv; /* [L][N_MATS] */
    site_stats *site;          /* [SQZ_N_SITES], NULL without calibration */
    sqz_prune_result *r;
    int sp8;                   /* write the pruned matrices as sp8 */
    int joint;                 /* prune and quantize in one pass (pruner->prune_quant) */
    const sqz_preset *preset;  /* joint: the output's types */
    sqz_preset_model pm;
    double err_sum;
    int n_err;
} prune_run;

/* Step 2 for layer l: its matrices, into f32 copies qm owns. */
static sqz_status prune_layer(prune_run *p, int l) {
    sqz_layer_weights *w = &p->qm->layers[l];
    if (p->site)
        for (int k = 0; k < SQZ_N_SITES; k++) { /* symmetrize */
            site_stats *s = &p->site[k];
            for (int i = 0; i < s->dim; i++)
                for (int j = 0; j < i; j++) s->H[(size_t)i * s->dim + j] = s->H[(size_t)j * s->dim + i];
        }
    for (int k = 0; k < N_MATS; k++) {
        sqz_tensor *t = mat(w, k);
        const sqz_prune_level *lv = &p->lv[l * N_MATS + k];
        const int64_t rows = t->rows, cols = t->cols, n = rows * cols;
        p->r->block_params += (uint64_t)n;
        if (lv->n <= 0 && lv->density >= 1 && !p->joint) continue; /* joint: GPTQ alone */
        char name[64], label[32];
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[k].name);
        if (lv->n > 0) snprintf(label, sizeof label, "%d:%d", lv->n, lv->m);
        else snprintf(label, sizeof label, "%g", lv->density);
        const sqz_type qt = p->joint ? sqz_preset_tensor_type(p->preset, &p->pm, mats[k].role, l, cols, NULL)
                                     : SQZ_TYPE_F32;
        /* joint: this matrix's type; one whose rows do not fit it gets llama.cpp's fallback type
         * (stories260K's 172-wide ffn_down: f16), which the joint pass may not quantize to: it is
         * then pruned alone and written in that type (plain rounding) */
        const int joint = p->joint && sqz_sgptq_supports(qt);
        if (p->joint && !joint && lv->n <= 0 && lv->density >= 1) continue;
        if (p->joint)
            snprintf(label + strlen(label), sizeof label - strlen(label), " %s%s", sqz_type_name(qt),
                     joint ? "" : " (pruned, then rounded)");
        float *P = malloc((size_t)n * sizeof *P);
        float *W0 = p->site ? malloc((size_t)n * sizeof *W0) : NULL;
        if (!P || (p->site && !W0)) {
            free(P);
            free(W0);
            return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory pruning %s", name);
        }
        for (int64_t r = 0; r < rows; r++) sqz_tensor_row_f32(t, r, P + r * cols);
        if (W0) memcpy(W0, P, (size_t)n * sizeof *W0);
        const double *H = p->site ? p->site[mats[k].site].H : NULL;
        void *qdata = NULL;
        uint8_t *removed = NULL;
        sqz_status st = SQZ_OK;
        if (joint) { /* P becomes the dequantized result of the joint pass, qdata its bytes */
            qdata = sqz_model_own(p->qm, malloc((size_t)rows * sqz_type_row_size(qt, cols)));
            removed = malloc((size_t)n);
            st = !qdata || !removed ? sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory pruning %s", name)
                                    : p->pruner->prune_quant(p->state, p->ctx, qt, P, rows, cols, H, lv, qdata, removed);
        } else {
            st = p->pruner->prune(p->state, p->ctx, P, rows, cols, H, lv);
        }
        if (st) {
            free(P);
            free(W0);
            free(removed);
            return st;
        }
        uint64_t zeros = 0; /* joint: the removed weights (with a min, a level near 0 holds them) */
        for (int64_t i = 0; i < n; i++) zeros += removed ? removed[i] : P[i] == 0.0f;
        free(removed);
        p->r->pruned += zeros;
        double e = -1;
        if (W0) {
            e = rel_err(W0, P, rows, cols, H);
            p->err_sum += e;
            p->n_err++;
        }
        free(W0);
        if (p->o->report) p->o->report(p->o->report_user, name, label, e);
        if (qdata) {
            free(P);
            *t = (sqz_tensor){ .type = qt, .rows = rows, .cols = cols, .data = qdata };
            continue;
        }
        if (p->sp8 && cols % SQZ_SP8_BLOCK == 0) { /* the sparse int8 format (formats/sp8.h) */
            sqz_sp8_tensor *sp = sqz_model_own(p->qm, calloc(1, sizeof *sp));
            uint64_t *off = sqz_model_own(p->qm, malloc((size_t)(rows + 1) * sizeof *off));
            uint8_t *data = NULL;
            if (sp && off) {
                sqz_sp8_pack(P, rows, cols, off, NULL);
                data = sqz_model_own(p->qm, malloc(off[rows] ? off[rows] : 1));
            }
            if (!data) {
                free(P);
                return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory packing %s", name);
            }
            sqz_sp8_pack(P, rows, cols, off, data);
            free(P);
            *sp = (sqz_sp8_tensor){ off, data };
            *t = (sqz_tensor){ .type = SQZ_TYPE_SP8, .rows = rows, .cols = cols, .data = sp };
            continue;
        }
        if (!sqz_model_own(p->qm, P)) return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory");
        *t = (sqz_tensor){ .type = SQZ_TYPE_F32, .rows = rows, .cols = cols, .data = P };
    }
    return SQZ_OK;
}

/* Joint pass: the output projection (token_embd when tied) by GPTQ to its type, as `sqz
 * quantize --method gptq` does, with the Hessian of the final norm of the pruned model's last
 * outputs X [N][D]; site: the statistics, site[SQZ_SITE_QKV] (dimension D) as scratch. Never pruned. */
static sqz_status quantize_head(prune_run *p, const float *X, size_t N, site_stats *site) {
    site_stats *s = &site[SQZ_SITE_QKV];
    sqz_model *qm = p->qm;
    const sqz_config *c = &qm->cfg;
    const int D = c->dim, tied = c->tied_embeddings;
    sqz_tensor *h = tied ? &qm->tok_embd : &qm->output;
    const sqz_type type = sqz_preset_tensor_type(p->preset, &p->pm, tied ? SQZ_ROLE_TOKEN_EMBD : SQZ_ROLE_OUTPUT, -1,
                                                 h->cols, NULL);
    if (!h->data || !sqz_gptq_supports(type) || h->type == type) return SQZ_OK; /* sqz_convert's */
    enum { ROWS = 256 };
    const int64_t rows = h->rows, cols = h->cols, n = rows * cols;
    float *xn = malloc((size_t)ROWS * D * sizeof *xn), *W = malloc((size_t)n * sizeof *W);
    float *Q = malloc((size_t)n * sizeof *Q);
    void *out = sqz_model_own(qm, malloc((size_t)rows * sqz_type_row_size(type, cols)));
    if (!xn || !W || !Q || !out) {
        free(xn), free(W), free(Q);
        return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory quantizing the output projection");
    }
    memset(s->H, 0, (size_t)D * D * sizeof *s->H);
    for (size_t i = 0; i < N; i += ROWS) {
        const int T = N - i < ROWS ? (int)(N - i) : ROWS;
        sqz_rmsnorm(xn, X + i * (size_t)D, qm->out_norm.data, T, D, c->norm_eps);
        capture(site, 0, SQZ_SITE_QKV, xn, T, D);
    }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < i; j++) s->H[(size_t)i * D + j] = s->H[(size_t)j * D + i];
    for (int64_t r = 0; r < rows; r++) sqz_tensor_row_f32(h, r, W + r * cols);
    sqz_gptq_opts g = sqz_gptq_default_opts();
    g.threads = sqz_ctx_threads(p->ctx);
    sqz_status st = sqz_gptq_quantize(p->ctx, type, W, rows, cols, s->H, &g, out, Q);
    if (!st) {
        const double e = rel_err(W, Q, rows, cols, s->H);
        p->err_sum += e;
        p->n_err++;
        if (p->o->report) p->o->report(p->o->report_user, tied ? "token_embd.weight" : "output.weight", sqz_type_name(type), e);
        *h = (sqz_tensor){ .type = type, .rows = rows, .cols = cols, .data = out };
    }
    free(xn), free(W), free(Q);
    return st;
}

/* The layer loop; p->qm holds the original's views. calib: use the calibration tokens. */
static sqz_status prune_layers(prune_run *p, const sqz_model *model, int calib) {
    sqz_ctx *ctx = p->ctx;
    const sqz_config *c = &model->cfg;
    const int L = c->n_layers;
    if (!calib) {
        sqz_status st = SQZ_OK;
        const double t0 = sqz_now();
        for (int l = 0; l < L && !st; l++) {
            st = prune_layer(p, l);
            sqz_progress(ctx, "prune", (uint64_t)l + 1, (uint64_t)L);
        }
        p->r->prune_seconds = sqz_now() - t0;
        return st;
    }
    const int D = c->dim, F = c->hidden_dim, qd = c->n_heads * c->head_dim;
    const int C = p->o->calib_ctx > 0 ? p->o->calib_ctx : 512;
    const size_t n_win = p->o->n_calib / (size_t)C, N = n_win * (size_t)C;
    const int dims[SQZ_N_SITES] = { D, qd, D, F };
    site_stats site[SQZ_N_SITES];
    memset(site, 0, sizeof site);
    float *X = malloc(N * (size_t)D * sizeof *X);
    sqz_session *s = NULL;
    sqz_status st = SQZ_OK;
    if (!X) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %zu calibration tokens", N); goto done; }
    for (int k = 0; k < SQZ_N_SITES; k++) {
        site[k].dim = dims[k];
        site[k].H = malloc((size_t)dims[k] * dims[k] * sizeof(double));
        site[k].tmp = malloc((size_t)dims[k] * dims[k] * sizeof(float));
        if (!site[k].H || !site[k].tmp) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for statistics"); goto done; }
    }
    for (size_t i = 0; i < N; i++)
        if (p->o->calib[i] < 0 || p->o->calib[i] >= c->vocab_size) {
            st = sqz_fail(ctx, SQZ_ERR_RANGE, "calibration token %d outside the vocabulary", p->o->calib[i]);
            goto done;
        }
    if ((st = sqz_session_new(ctx, model, C, &s))) goto done;
    for (size_t i = 0; i < N; i++) sqz_tensor_row_f32(&model->tok_embd, p->o->calib[i], X + i * (size_t)D);
    p->site = site;
    p->r->calib_tokens = N;
    double t_prune = 0;
    const double t0 = sqz_now();
    for (int l = 0; l < L && !st; l++) {
        for (int k = 0; k < SQZ_N_SITES; k++) memset(site[k].H, 0, (size_t)dims[k] * dims[k] * sizeof(double));
        /* 1: statistics (X unchanged); 2: pruning; 3: X through the pruned layer */
        if ((st = sqz_calib_layer_pass(s, &model->layers[l], l, X, n_win, C, SQZ_SITE_DOWN, capture, site, NULL, NULL,
                                       NULL)))
            break;
        const double tp = sqz_now();
        if ((st = prune_layer(p, l))) break;
        t_prune += sqz_now() - tp;
        st = sqz_calib_layer_pass(s, &p->qm->layers[l], l, X, n_win, C, -1, NULL, NULL, NULL, NULL, NULL);
        sqz_progress(ctx, "prune", (uint64_t)l + 1, (uint64_t)L);
    }
    if (!st && p->joint) {
        const double tp = sqz_now();
        st = quantize_head(p, X, N, site);
        t_prune += sqz_now() - tp;
    }
    p->r->prune_seconds = t_prune;
    p->r->calib_seconds = sqz_now() - t0 - t_prune;
done:
    p->site = NULL;
    for (int k = 0; k < SQZ_N_SITES; k++) {
        free(site[k].H);
        free(site[k].tmp);
    }
    sqz_session_free(s);
    free(X);
    return st;
}

sqz_status sqz_prune(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_prune_opts *o,
                     sqz_prune_result *res) {
    sqz_prune_result r;
    memset(&r, 0, sizeof r);
    r.mean_rel_err = -1;
    if (res) *res = r;
    if (!model || !out_path || !o || !o->method) return sqz_fail(ctx, SQZ_ERR_ARG, "prune: model, output and method are required");
    sqz_prune_level def = { .density = 1 };
    if (o->nm_n > 0 || o->nm_m > 0) {
        def = (sqz_prune_level){ .density = o->nm_m > 0 ? (double)o->nm_n / o->nm_m : 0, .n = o->nm_n, .m = o->nm_m };
        if (o->density != 0) return sqz_fail(ctx, SQZ_ERR_ARG, "prune: a density or N:M, not both");
    } else if (o->density != 0) {
        if (!(o->density > 0 && o->density < 1))
            return sqz_fail(ctx, SQZ_ERR_ARG, "prune: density %g is outside (0, 1) (the fraction of weights kept)",
                            o->density);
        def.density = o->density;
    } else if (!o->levels) {
        return sqz_fail(ctx, SQZ_ERR_ARG, "prune: a density, N:M or a levels file is required");
    }
    sqz_preset preset; /* the output type, checked before any work */
    if (o->type && strcasecmp(o->type, "sp8") && sqz_preset_find(o->type, 1, &preset) != 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: unknown type '%s' (sp8, or a type of sqz convert: %s)", out_path,
                        o->type, sqz_preset_names());
    const sqz_pruner *pruner;
    void *state;
    sqz_status st = sqz_pruner_open(ctx, o->method, &pruner, &state);
    if (st) return st;
    const sqz_config *c = &model->cfg;
    const int L = c->n_layers;
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512;
    const int have_calib = o->calib && o->n_calib >= (size_t)C;
    sqz_prune_level *lv = malloc((size_t)L * N_MATS * sizeof *lv);
    sqz_model *qm = calloc(1, sizeof *qm);
    if (!lv || !qm) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    if ((st = plan_levels(ctx, model, o, &def, lv))) goto done;
    if (pruner->calib && !have_calib) {
        st = sqz_fail(ctx, SQZ_ERR_ARG, "%s needs calibration text: %zu tokens is less than one window of %d",
                      pruner->name, o->calib ? o->n_calib : 0, C);
        goto done;
    }
    /* the pruned model: the original's views, with the pruned matrices swapped in; the buffers
     * it owns are freed with it (so it gets its own owned list) */
    *qm = *model;
    qm->owned = NULL;
    qm->n_owned = qm->cap_owned = 0;
    qm->layers = malloc((size_t)L * sizeof *qm->layers);
    if (!qm->layers) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(qm->layers, model->layers, (size_t)L * sizeof *qm->layers);
    const int sp8 = o->type && !strcasecmp(o->type, "sp8");
    /* a pruner that can (SparseGPT) prunes and quantizes in one pass when the output type is one
     * GPTQ quantizes to; other types are written from the pruned weights by plain rounding */
    const int joint = !sp8 && o->type && pruner->prune_quant && have_calib && sqz_sgptq_supports(preset.base);
    prune_run p = { .ctx = ctx, .o = o, .pruner = pruner, .state = state, .qm = qm, .lv = lv, .r = &r, .sp8 = sp8,
                    .joint = joint, .preset = joint ? &preset : NULL,
                    .pm = { .n_layers = c->n_layers, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                            .tied = c->tied_embeddings,
                            .is_70b = c->n_layers == 80 && (c->arch == SQZ_ARCH_QWEN2 || c->n_heads != c->n_kv_heads) } };
    if ((st = prune_layers(&p, model, have_calib))) goto done;
    r.mean_rel_err = p.n_err ? p.err_sum / p.n_err : -1;
    /* sp8: the pruned matrices stay sp8 (sqzf); the rest (embeddings, head) is q8_0 */
    /* the file's card (general.* keys): the pruner and its level */
    char method[96], params[96];
    snprintf(method, sizeof method, "prune:%s", o->method ? o->method : "sparsegpt");
    if (o->nm_n > 0) snprintf(params, sizeof params, "%d:%d", o->nm_n, o->nm_m);
    else if (o->density > 0) snprintf(params, sizeof params, "density %g", o->density);
    else snprintf(params, sizeof params, "per-matrix levels");
    if (joint) /* the card says the weights were quantized in the same pass */
        snprintf(params + strlen(params), sizeof params - strlen(params), ", quantized jointly (GPTQ) to %s", o->type);
    const sqz_model_card card = { .method = method, .parameters = params, .calib_tokens = o->n_calib };
    const sqz_convert_opts co = { .type = sp8 ? "q8_0" : o->type ? o->type : "f16", .pure = 1, .card = &card };
    st = sqz_convert(ctx, qm, out_path, &co, &r.convert);
done:
    if (qm) {
        for (int i = 0; i < qm->n_owned; i++) free(qm->owned[i]);
        free(qm->owned);
        free(qm->layers);
        free(qm);
    }
    free(lv);
    free(state);
    if (!st && res) *res = r;
    return st;
}
