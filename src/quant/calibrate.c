/* calibrate.c - quantization with calibration data, layer by layer: the driver that every
 * quantization method (quant/method.h, listed in quant/methods.c) plugs its hooks into.
 *
 * Glossary: W windows of C calibration tokens, D dim, F hidden_dim, Hq*hd the attention width.
 * sqz_quantize opens the method from the spec "NAME[:key=value,...]" (its create() and the one
 * parameter parser). A method without calibration (rtn) does the whole job in its run().
 * Otherwise: begin() checks the type (and may change the mix sqz_convert and the preset use),
 * the calibration tokens are checked, plan() computes what needs the whole model (mixllm's
 * global row ranking, gptq:alloc=1's KL type search, rsq's rotated embeddings and head), and X
 * [W*C][D] is set to the token embeddings. Then for each layer l:
 *   0. layer_begin() may swap in other weights to take the statistics from (rsq rotates the
 *      layer into f32 scratch);
 *   1. X runs through layer l, and at each of the four sites where the layer's matrices read
 *      their input (q/k/v, wo, gate/up, down) H += x^T x is accumulated in double (GPTQ's
 *      Hessian; its diagonal over the token count is llama.cpp's importance), or capture()
 *      takes the rows instead and window_end() adds them after each window (rsq weights each
 *      token by its attention concentration);
 *   2. the seven matrices are quantized, each to matrix_type() (default: the type sqz_convert
 *      would choose) by quantize(), and their relative output error is reported; layer_end();
 *   3. X runs through layer l again with the quantized weights (a method that is not
 *      sequential, imatrix: the original ones), giving the next layer's input (GPTQ's order).
 * head() may then ask for the output projection (token_embd when tied) to be quantized too,
 * with the Hessian of the final norm of the last layer's quantized outputs (gptq).
 * write() writes the quantized model (default: sqz_convert, which copies and, for llama's RoPE
 * layout, permutes the quantized layers' rows and quantizes what is still unquantized).
 * Peak memory: one layer's statistics and quantized weights plus X, plus what a plan holds. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/model.h"
#include "model/session.h"
#include "formats/presets.h"
#include "eval/calib_pass.h"
#include "quant/method.h"
#include "quant/rsq.h"

/* The capture callback's view: the method and its state, and the window row the running batch
 * starts at. */
typedef struct calib_state {
    const sqz_quant_method *meth;
    void *state;
    sqz_quant_run *run;
    int row0;
} calib_state;

static void capture(void *user, int layer, int site, const float *x, int T, int dim) {
    calib_state *c = user;
    (void)layer;
    if (c->meth->capture) {
        c->meth->capture(c->state, c->run, site, x, T, dim, c->row0);
        return;
    }
    if (site >= SQZ_N_SITES) return; /* post-RoPE q/k: only a capture hook looks at them */
    sqz_quant_stats *s = &c->run->site[site];
    sqz_rsq_hessian_add(s->H, s->tmp, (float *)x, NULL, T, dim, c->run->ctx->n_threads); /* unweighted: x is not written */
    s->n += (size_t)T;
}

static void symmetrize(sqz_quant_stats *s) {
    for (int i = 0; i < s->dim; i++)
        for (int j = 0; j < i; j++) s->H[(size_t)i * s->dim + j] = s->H[(size_t)j * s->dim + i];
}

/* ||(W - Q) X||^2 / ||W X||^2 = tr(E H E^T) / tr(W H W^T), E = W - Q, for the error report.
 * Exactly costs rows x cols^2 multiply-adds twice - more than GPTQ itself at 1B sizes (a
 * 5632-column down projection: 65 G), and the row-by-row dsymv it was streamed H from memory
 * once per row. So rows are taken evenly spaced, as many as keep each product under REPORT_MACS
 * (every row of a small model's matrices), and both traces come from one dsymm over the stacked
 * rows [E; W]: a ratio estimated on a few hundred rows, which is what a report needs. */
static const int64_t REPORT_MACS = (int64_t)1 << 31;

static double rel_err(const float *W, const float *Q, int64_t rows, int64_t cols, const double *H) {
    int64_t use = REPORT_MACS / (cols * cols);
    if (use < 16) use = 16;
    if (use > rows) use = rows;
    double *B = malloc((size_t)(2 * use * cols) * sizeof *B), *C = malloc((size_t)(2 * use * cols) * sizeof *C);
    if (!B || !C) { free(B); free(C); return NAN; }
    for (int64_t k = 0; k < use; k++) {
        const int64_t r = k * rows / use;
        for (int64_t i = 0; i < cols; i++) {
            B[k * cols + i] = (double)W[r * cols + i] - Q[r * cols + i];
            B[(use + k) * cols + i] = W[r * cols + i];
        }
    }
    cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)(2 * use), (int)cols, 1.0, H, (int)cols, B,
                (int)cols, 0.0, C, (int)cols);
    const double num = cblas_ddot((int)(use * cols), B, 1, C, 1);
    const double den = cblas_ddot((int)(use * cols), B + use * cols, 1, C + use * cols, 1);
    free(B);
    free(C);
    return den > 0 ? sqrt(num / den) : 0;
}

/* The running sums of the error report. */
typedef struct err_acc {
    double sum, t_quant;
    int n;
} err_acc;

/* Quantizes matrix t (the quantized model's own copy of the view; l, k as matrix_type) to type
 * by the method's hook, and reports its error. */
static sqz_status quantize_matrix(const sqz_quant_method *meth, void *state, sqz_quant_run *run, sqz_tensor *t,
                                  sqz_type type, const sqz_quant_stats *st, const char *name, int l, int k,
                                  err_acc *acc) {
    const int64_t rows = t->rows, cols = t->cols;
    float *W = malloc((size_t)(rows * cols) * sizeof *W);
    float *Q = malloc((size_t)(rows * cols) * sizeof *Q);
    if (!W || !Q) {
        free(W);
        free(Q);
        return sqz_fail(run->ctx, SQZ_ERR_NOMEM, "out of memory quantizing %s", name);
    }
    for (int64_t r = 0; r < rows; r++) sqz_tensor_row_f32(t, r, W + r * cols);
    char label[48];
    snprintf(label, sizeof label, "%s", sqz_type_name(type));
    int q_kept = 0;
    run->matrix = name;
    sqz_status s = meth->quantize(state, run, t, type, st, W, Q, l, k, label, sizeof label, &q_kept);
    if (!s) {
        const double e = rel_err(W, Q, rows, cols, st->H);
        acc->sum += e;
        acc->n++;
        if (run->o->report) run->o->report(run->o->report_user, name, label, e);
    }
    free(W);
    if (!q_kept) free(Q);
    return s;
}

/* The output projection *head to type with the Hessian of its input: the final norm of the
 * last layer's outputs X [N][D] in the quantized model. hs: scratch statistics of dimension D. */
static sqz_status quantize_head(const sqz_quant_method *meth, void *state, sqz_quant_run *run, const float *X,
                                size_t N, sqz_quant_stats *hs, err_acc *acc) {
    sqz_tensor *head = NULL;
    sqz_type type;
    if (!meth->head || !meth->head(state, run, &head, &type)) return SQZ_OK;
    sqz_model *qm = run->qm;
    const sqz_config *c = &qm->cfg;
    const int D = c->dim;
    enum { ROWS = 256 };
    float *xn = malloc((size_t)ROWS * D * sizeof *xn);
    if (!xn) return sqz_fail(run->ctx, SQZ_ERR_NOMEM, "out of memory");
    memset(hs->H, 0, (size_t)D * D * sizeof *hs->H);
    hs->n = 0;
    for (size_t i = 0; i < N; i += ROWS) {
        const int T = N - i < ROWS ? (int)(N - i) : ROWS;
        sqz_rmsnorm(xn, X + i * (size_t)D, qm->out_norm.data, T, D, c->norm_eps);
        sqz_rsq_hessian_add(hs->H, hs->tmp, xn, NULL, T, D, run->ctx->n_threads);
        hs->n += (size_t)T;
    }
    free(xn);
    symmetrize(hs);
    const double tq = sqz_now();
    sqz_status st = quantize_matrix(meth, state, run, head, type, hs,
                                    head == &qm->tok_embd ? "token_embd.weight" : "output.weight", -1, -1, acc);
    acc->t_quant += sqz_now() - tq;
    return st;
}

/* Step 2 for layer l: its seven matrices with the statistics just taken. */
static sqz_status quantize_layer(const sqz_quant_method *meth, void *state, sqz_quant_run *run, int l,
                                 err_acc *acc) {
    const double tq = sqz_now();
    for (int k = 0; k < SQZ_N_SITES; k++) symmetrize(&run->site[k]);
    sqz_layer_weights *qw = &run->qm->layers[l];
    struct { sqz_tensor *t; sqz_tensor_role role; int site; const char *name; } mats[] = {
        { &qw->wq, SQZ_ROLE_ATTN_Q, SQZ_SITE_QKV, "attn_q" },
        { &qw->wk, SQZ_ROLE_ATTN_K, SQZ_SITE_QKV, "attn_k" },
        { &qw->wv, SQZ_ROLE_ATTN_V, SQZ_SITE_QKV, "attn_v" },
        { &qw->wo, SQZ_ROLE_ATTN_OUTPUT, SQZ_SITE_O, "attn_output" },
        { &qw->w_gate, SQZ_ROLE_FFN_GATE, SQZ_SITE_GATE_UP, "ffn_gate" },
        { &qw->w_up, SQZ_ROLE_FFN_UP, SQZ_SITE_GATE_UP, "ffn_up" },
        { &qw->w_down, SQZ_ROLE_FFN_DOWN, SQZ_SITE_DOWN, "ffn_down" },
    };
    sqz_status st = SQZ_OK;
    for (int k = 0; k < (int)(sizeof mats / sizeof *mats) && !st; k++) {
        if (!mats[k].t->data) continue; /* a dropped sub-block's matrix (model/model.h) */
        const sqz_type type = meth->matrix_type
                                  ? meth->matrix_type(state, run, l, k, mats[k].role, mats[k].t->cols)
                                  : sqz_preset_tensor_type(&run->preset, &run->pm, mats[k].role, l, mats[k].t->cols, NULL);
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[k].name);
        st = quantize_matrix(meth, state, run, mats[k].t, type, &run->site[mats[k].site], name, l, k, acc);
    }
    if (meth->layer_end) {
        const sqz_status e = meth->layer_end(state, run, l);
        if (!st) st = e;
    }
    acc->t_quant += sqz_now() - tq;
    return st;
}

/* rsq's kind: after each window of the statistics pass. */
static sqz_status window_end(void *user) {
    calib_state *c = user;
    return c->meth->window_end(c->state, c->run);
}

/* Layer l of the original is not read again (sqz_convert re-reads from the file what it copies):
 * its mapped pages go back, so the peak holds one layer of the source, not the whole model
 * (a 1.1B bf16 model is 2 GB). Weights that are not file pages (rsq's scratch, a model built in
 * memory) are left alone by sqz_model_release. */
static void release_layer(const sqz_model *m, const sqz_layer_weights *w) {
    const sqz_tensor *t[SQZ_LAYER_N_TENSORS];
    sqz_layer_tensors(w, t);
    for (size_t i = 0; i < SQZ_LAYER_N_TENSORS; i++)
        if (t[i]->data) sqz_model_release(m, t[i]->data, sqz_tensor_nbytes(t[i]));
}

/* The layer loop and the head, for a method with calibration; run->qm already holds the
 * original's views. */
static sqz_status quantize_layers(const sqz_quant_method *meth, void *state, sqz_quant_run *run,
                                  sqz_quantize_result *r) {
    sqz_ctx *ctx = run->ctx;
    const sqz_model *model = run->model;
    sqz_model *qm = run->qm;
    const sqz_config *c = &model->cfg;
    const int D = c->dim, F = c->hidden_dim, qd = c->n_heads * c->head_dim, L = c->n_layers, C = run->C;
    const size_t n_win = run->n_win, N = n_win * (size_t)C;
    const int dims[SQZ_N_SITES] = { D, qd, D, F };
    sqz_quant_stats site[SQZ_N_SITES];
    memset(site, 0, sizeof site);
    run->site = site;
    calib_state cs = { .meth = meth, .state = state, .run = run };
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
        if (run->calib[i] < 0 || run->calib[i] >= c->vocab_size) {
            st = sqz_fail(ctx, SQZ_ERR_RANGE, "calibration token %d outside the vocabulary", run->calib[i]);
            goto done;
        }
    if (meth->plan && (st = meth->plan(state, run))) goto done;
    if ((st = sqz_session_new(ctx, model, C, &s))) goto done;
    for (size_t i = 0; i < N; i++) sqz_tensor_row_f32(&qm->tok_embd, run->calib[i], X + i * (size_t)D);
    r->calib_tokens = N;
    err_acc acc = { 0, 0, 0 };
    const double t0 = sqz_now();
    for (int l = 0; l < L && !st; l++) {
        for (int k = 0; k < SQZ_N_SITES; k++) {
            memset(site[k].H, 0, (size_t)dims[k] * dims[k] * sizeof(double));
            site[k].n = 0;
        }
        const sqz_layer_weights *stats_w = &model->layers[l];
        if (meth->layer_begin && (st = meth->layer_begin(state, run, l, &stats_w))) break;
        /* 1: statistics (X unchanged); 2: quantization; 3: X through the layer */
        if ((st = sqz_calib_layer_pass(s, stats_w, l, X, n_win, C, SQZ_SITE_DOWN, capture, &cs, &cs.row0,
                                       meth->window_end ? window_end : NULL, &cs)))
            break;
        if ((st = quantize_layer(meth, state, run, l, &acc))) break;
        st = sqz_calib_layer_pass(s, meth->sequential ? &qm->layers[l] : &model->layers[l], l, X, n_win, C, -1,
                                  NULL, NULL, NULL, NULL, NULL);
        release_layer(model, &model->layers[l]);
        sqz_progress(ctx, "quantize", (uint64_t)l + 1, (uint64_t)L);
    }
    if (!st) st = quantize_head(meth, state, run, X, N, &site[SQZ_SITE_QKV], &acc);
    if (!st) {
        r->calib_seconds = sqz_now() - t0 - acc.t_quant;
        r->quant_seconds = acc.t_quant;
        r->mean_rel_err = acc.n ? acc.sum / acc.n : 0;
    }
done:
    for (int k = 0; k < SQZ_N_SITES; k++) {
        free(site[k].H);
        free(site[k].tmp);
    }
    run->site = NULL;
    sqz_session_free(s);
    free(X);
    return st;
}

/* After begin(): the preset, the calibration windows and the quantized model's shell. */
static sqz_status run_calibrated(const sqz_quant_method *meth, void *state, sqz_quant_run *run,
                                 sqz_quantize_result *r) {
    sqz_ctx *ctx = run->ctx;
    const sqz_quantize_opts *o = run->o;
    const sqz_model *model = run->model;
    const char *pname = run->preset_name ? run->preset_name : run->co.type;
    if (sqz_preset_find(pname, o->pure, &run->preset) != 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: unknown type '%s' (known: %s, dq2)", run->out_path, o->type,
                        sqz_preset_names());
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512;
    if (!o->calib || o->n_calib < (size_t)C)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s needs calibration text: %zu tokens is less than one window of %d",
                        meth->name, o->calib ? o->n_calib : 0, C);
    const sqz_config *c = &model->cfg;
    run->C = C;
    run->n_win = o->n_calib / (size_t)C;
    run->calib = o->calib;
    run->pm = (sqz_preset_model){ .n_layers = c->n_layers, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                                  .tied = c->tied_embeddings,
                                  .is_70b = c->n_layers == 80 && c->n_heads != c->n_kv_heads };
    /* the quantized model: the original's views, with layers swapped in as they are done;
     * buffers it owns are freed with it (so it gets its own owned list) */
    sqz_model *qm = calloc(1, sizeof *qm);
    if (!qm) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    *qm = *model;
    qm->owned = NULL;
    qm->n_owned = qm->cap_owned = 0;
    qm->layers = malloc((size_t)c->n_layers * sizeof *qm->layers);
    run->qm = qm;
    sqz_status st = SQZ_OK;
    if (!qm->layers) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    else {
        memcpy(qm->layers, model->layers, (size_t)c->n_layers * sizeof *qm->layers);
        st = quantize_layers(meth, state, run, r);
    }
    if (!st) st = meth->write ? meth->write(state, run, &r->convert)
                              : sqz_convert(ctx, qm, run->out_path, &run->co, &r->convert);
    for (int i = 0; i < qm->n_owned; i++) free(qm->owned[i]);
    free(qm->owned);
    free(qm->layers);
    free(qm);
    run->qm = NULL;
    return st;
}

sqz_status sqz_quantize(sqz_ctx *ctx, const sqz_model *model, const char *out_path,
                        const sqz_quantize_opts *o, sqz_quantize_result *res) {
    sqz_quantize_result r;
    memset(&r, 0, sizeof r);
    if (res) *res = r;
    if (!o || !o->method || !o->type) return sqz_fail(ctx, SQZ_ERR_ARG, "quantize: method and type are required");
    /* the file's card: the caller's, with the recipe filled in where it says nothing */
    sqz_model_card card = o->card ? *o->card : (sqz_model_card){ 0 };
    char params[160];
    snprintf(params, sizeof params, "type %s%s%s%s", o->type, o->pure ? " (pure)" : "",
             o->embd_type ? ", token_embd " : "", o->embd_type ? o->embd_type : "");
    if (!card.method) card.method = o->method;
    if (!card.parameters) card.parameters = params;
    if (!card.calib_tokens) card.calib_tokens = o->n_calib;
    sqz_quantize_opts with_card = *o;
    with_card.card = o->card ? &card : NULL;
    o = &with_card;
    const sqz_quant_method *meth;
    void *state;
    sqz_status st = sqz_quant_method_open(ctx, o->method, &meth, &state);
    if (st) return st;
    /* dropped sub-blocks (model/model.h): the layer loop skips their matrices; methods that
     * plan over the whole model or rotate layers (rsq, mixllm, gptq's alloc) need them all */
    if (!strcmp(meth->name, "rsq") || !strcmp(meth->name, "mixllm") || strstr(o->method, "alloc=1")) {
        char what[96];
        snprintf(what, sizeof what, "quantize --method %.60s", o->method);
        if ((st = sqz_model_require_subblocks(ctx, model, what))) {
            meth->destroy(state);
            return st;
        }
    }
    if (!meth->calib) {
        st = meth->run(state, ctx, model, out_path, o, res);
        meth->destroy(state);
        return st;
    }
    sqz_quant_run run = { .ctx = ctx, .model = model, .o = o, .out_path = out_path, .r = &r,
                          .co = { .type = o->type, .pure = o->pure, .embd_type = o->embd_type,
                                  .card = o->card } };
    st = meth->begin ? meth->begin(state, &run) : SQZ_OK;
    if (!st) st = run_calibrated(meth, state, &run, &r);
    meth->destroy(state);
    if (!st && res) *res = r;
    return st;
}
