/* calibrate.c - quantization with calibration data (GPTQ, importance matrices), layer by layer.
 *
 * Glossary: W windows of C calibration tokens, D dim, F hidden_dim, Hq*hd the attention width.
 * For each layer l:
 *   1. the calibration activations X [W*C][D] (the outputs of layer l-1, already quantized)
 *      run through layer l with its original weights, and at each of the four sites where the
 *      layer's matrices read their input (q/k/v, wo, gate/up, down) H += x^T x is accumulated
 *      in double (GPTQ's Hessian; its diagonal over the token count is llama.cpp's importance);
 *   2. the seven matrices are quantized to the types sqz_convert would choose, by GPTQ with H
 *      or by the importance-weighted block search with diag(H);
 *   3. X runs through layer l again with the quantized weights (imatrix: the original ones),
 *      giving the next layer's input (GPTQ's sequential order).
 * gptq then quantizes the output projection (token_embd when tied) with the Hessian of the final
 * norm of the last layer's quantized outputs.
 * The quantized layers then go to sqz_convert as if they were the model's own, which copies
 * (and, for llama's RoPE layout, permutes) their rows and quantizes token_embd / output.
 * Peak memory: one layer's statistics and quantized weights plus X.
 *
 * gptq with alloc (quant/alloc.h) first chooses every matrix's type by measured KL within the
 * mix's bytes; the loop above then uses those types, and sqz_convert keeps them (keep_types).
 *
 * rsq (quant/rsq.h) is gptq on a rotated model with weighted tokens: the embeddings and head
 * are rotated up front (X starts rotated), layer l is rotated into f32 scratch just before its
 * step 1, and step 1 keeps each window's site inputs and post-RoPE q/k until the window is
 * through, then adds them to H weighted by each token's attention concentration.
 * decoupleq (quant/decoupleq.h) quantizes every block matrix to sqz's dq2 type with the same H;
 * the dq2 matrices go to sqz's container (sqzf), or with fake_quant as f32 (quant/dq2_fake.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels/ops.h"
#include "model/model.h"
#include "model/session.h"
#include "quant/alloc.h"
#include "quant/decoupleq.h"
#include "quant/dq2_fake.h"
#include "quant/gptq.h"
#include "quant/mixllm.h"
#include "formats/presets.h"
#include "formats/quant.h"
#include "quant/rsq.h"

typedef struct site_stats {
    int dim;
    double *H;   /* [dim][dim], upper and lower filled */
    float *tmp;  /* [dim][dim] per-batch ssyrk */
    size_t n;    /* tokens accumulated */
} site_stats;

enum { N_WIN = SQZ_SITE_K_ROPE + 1 }; /* rsq's window buffers: the four sites, q, k */

typedef struct calib_state {
    site_stats site[SQZ_N_SITES];
    /* rsq: the current window's rows of every site, weighted when the window is complete */
    int weighted;
    int row0;          /* row of the window the running batch starts at */
    float *win[N_WIN]; /* [C][site's dim] */
    float *r;          /* [C] token weights */
} calib_state;

static void capture(void *user, int layer, int site, const float *x, int T, int dim) {
    calib_state *c = user;
    (void)layer;
    if (c->weighted) {
        memcpy(c->win[site] + (size_t)c->row0 * dim, x, (size_t)T * dim * sizeof *x);
        return;
    }
    if (site >= SQZ_N_SITES) return; /* q/k: only rsq looks at them */
    site_stats *s = &c->site[site];
    sqz_rsq_hessian_add(s->H, s->tmp, (float *)x, NULL, T, dim); /* unweighted: x is not written */
    s->n += (size_t)T;
}

/* rsq: a window of C tokens is through the layer; its importance weights its site rows. */
static sqz_status flush_window(sqz_ctx *ctx, calib_state *c, const sqz_config *cfg, int C, float rmin) {
    sqz_status st = sqz_rsq_attn_concentration(ctx, c->win[SQZ_SITE_Q_ROPE], c->win[SQZ_SITE_K_ROPE], C,
                                               cfg->n_heads, cfg->n_kv_heads, cfg->head_dim, c->r);
    if (st) return st;
    sqz_rsq_normalize(c->r, C, rmin, SQZ_RSQ_RMAX);
    for (int k = 0; k < SQZ_N_SITES; k++) {
        site_stats *s = &c->site[k];
        sqz_rsq_hessian_add(s->H, s->tmp, c->win[k], c->r, C, s->dim);
        s->n += (size_t)C;
    }
    return SQZ_OK;
}

static void symmetrize(site_stats *s) {
    for (int i = 0; i < s->dim; i++)
        for (int j = 0; j < i; j++) s->H[(size_t)i * s->dim + j] = s->H[(size_t)j * s->dim + i];
}

/* ||(W - Q) X||^2 / ||W X||^2 = tr(E H E^T) / tr(W H W^T), E = W - Q, row by row. */
static double rel_err(const float *W, const float *Q, int64_t rows, int64_t cols, const double *H) {
    double num = 0, den = 0;
    double *e = malloc((size_t)cols * sizeof *e), *w = malloc((size_t)cols * sizeof *w);
    double *he = malloc((size_t)cols * sizeof *he), *hw = malloc((size_t)cols * sizeof *hw);
    if (!e || !w || !he || !hw) { free(e); free(w); free(he); free(hw); return NAN; }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) {
            w[i] = W[r * cols + i];
            e[i] = w[i] - Q[r * cols + i];
        }
        cblas_dsymv(CblasRowMajor, CblasUpper, (int)cols, 1.0, H, (int)cols, e, 1, 0.0, he, 1);
        cblas_dsymv(CblasRowMajor, CblasUpper, (int)cols, 1.0, H, (int)cols, w, 1, 0.0, hw, 1);
        num += cblas_ddot((int)cols, e, 1, he, 1);
        den += cblas_ddot((int)cols, w, 1, hw, 1);
    }
    free(e); free(w); free(he); free(hw);
    return den > 0 ? sqrt(num / den) : 0;
}

/* The methods: how the matrices are quantized, and what the statistics are taken from. */
typedef struct method {
    const char *name;
    int calib;       /* needs calibration data (rtn is sqz_convert alone) */
    int gptq;        /* GPTQ with H; else llama.cpp's search with the importances diag(H) / n */
    int sequential;  /* the next layer reads this layer's quantized outputs (GPTQ's order);
                      * else the unquantized ones (llama-imatrix's) */
    int rsq;         /* rotate the model, weight tokens by attention concentration */
    int decoupleq;   /* every block matrix to dq2 by decoupleQ with H */
    int mixllm;      /* rows ranked globally: MX8 or MX4/MX3 (quant/mixllm.h), into sqzf */
} method;

static const method methods[] = {
    { "rtn", 0, 0, 0, 0, 0, 0 },
    { "imatrix", 1, 0, 0, 0, 0, 0 },
    { "gptq", 1, 1, 1, 0, 0, 0 },
    { "rsq", 1, 1, 1, 1, 0, 0 },
    { "decoupleq", 1, 0, 1, 0, 1, 0 },
    { "mixllm", 1, 0, 1, 0, 0, 1 },
};

/* A copy of vector t owned by m (rsq: a rotated layer's norms and biases outlive its scratch). */
static sqz_status keep_vector(sqz_ctx *ctx, sqz_model *m, sqz_tensor *t) {
    if (!t->data) return SQZ_OK;
    float *v = sqz_model_own(m, malloc((size_t)t->cols * sizeof *v));
    if (!v) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    sqz_tensor_row_f32(t, 0, v);
    t->type = SQZ_TYPE_F32;
    t->data = v;
    return SQZ_OK;
}

/* Quantizes one matrix src (rows x cols) to type into an owned tensor *dst. */
static sqz_status quantize_matrix(sqz_ctx *ctx, sqz_model *owner, const method *meth, sqz_tensor *src,
                                  sqz_type type, const site_stats *st, double damp, int act_order,
                                  const char *name, const sqz_quantize_opts *o, double *err_sum,
                                  int *n_err, const uint8_t *mix_hi) {
    const int64_t rows = src->rows, cols = src->cols;
    const size_t rs = sqz_type_row_size(type, cols);
    float *W = malloc((size_t)(rows * cols) * sizeof *W);
    float *Q = malloc((size_t)(rows * cols) * sizeof *Q);
    /* mixllm allocates its own parts */
    void *out = meth->mixllm ? NULL : sqz_model_own(owner, malloc((size_t)rows * rs));
    if (!W || !Q || (!out && !meth->mixllm)) {
        free(W);
        free(Q);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory quantizing %s", name);
    }
    for (int64_t r = 0; r < rows; r++) sqz_tensor_row_f32(src, r, W + r * cols);
    sqz_status s = SQZ_OK;
    char mix_name[48];
    if (meth->mixllm) { /* mixllm.h: rows at MX8 where mix_hi, else at type */
        s = sqz_mixllm_quantize(ctx, owner, W, rows, cols, st->H, mix_hi, type, damp, act_order, src, Q);
        int64_t n8 = 0;
        for (int64_t r = 0; r < rows; r++) n8 += mix_hi[r] != 0;
        snprintf(mix_name, sizeof mix_name, "mx8:%lld+%s:%lld", (long long)n8, sqz_type_name(type),
                 (long long)(rows - n8));
    } else if (meth->gptq && sqz_gptq_supports(type)) {
        sqz_gptq_opts g = sqz_gptq_default_opts();
        if (damp > 0) g.percdamp = damp;
        g.act_order = act_order;
        g.threads = ctx->n_threads;
        s = sqz_gptq_quantize(ctx, type, W, rows, cols, st->H, &g, out, Q);
    } else if (meth->decoupleq) {
        sqz_dq_opts d = sqz_dq_default_opts();
        if (damp > 0) d.percdamp = damp;
        d.threads = ctx->n_threads;
        s = sqz_decoupleq_dq2(ctx, W, rows, cols, st->H, &d, out, Q, NULL);
    } else {
        /* importance = mean square of each input channel, as llama-imatrix collects it */
        float *imp = malloc((size_t)cols * sizeof *imp);
        if (!imp) s = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory quantizing %s", name);
        for (int64_t i = 0; imp && i < cols; i++) imp[i] = (float)(st->H[i * cols + i] / (double)st->n);
        if (imp && sqz_quantize_rows(type, W, out, rows, cols, imp) != (size_t)rows * rs)
            s = sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "cannot quantize %s to %s", name, sqz_type_name(type));
        free(imp);
        const sqz_type_traits *tr = sqz_type_get(type);
        for (int64_t r = 0; !s && r < rows; r++) tr->to_float((const char *)out + (size_t)r * rs, Q + r * cols, cols);
    }
    if (!s) {
        const double e = rel_err(W, Q, rows, cols, st->H);
        *err_sum += e;
        (*n_err)++;
        if (o->report) o->report(o->report_user, name, meth->mixllm ? mix_name : sqz_type_name(type), e);
    }
    free(W);
    if (!s && type == SQZ_TYPE_DQ2 && o->fake_quant) { /* GGUF cannot hold dq2: keep Q as f32 */
        src->type = SQZ_TYPE_F32;
        src->data = sqz_model_own(owner, Q);
        return SQZ_OK;
    }
    free(Q);
    if (s || meth->mixllm) return s;
    src->type = type; /* src is the quantized model's own copy of the view */
    src->data = out;
    return SQZ_OK;
}

/* GPTQ of the output projection, with the Hessian of its input: the final norm of the last
 * layer's outputs X [N][D] in the quantized model. With tied embeddings that matrix is
 * token_embd, so the lookups read the head's GPTQ result too (llama.cpp gives the tied tensor
 * the output's type for the same reason: the head is where its error costs most). The type is
 * what sqz_convert would give the tensor, which then copies it unchanged. hs: scratch
 * statistics of dimension D. */
static sqz_status quantize_head(sqz_ctx *ctx, sqz_model *qm, const method *meth, const float *X, size_t N,
                                const sqz_preset *preset, const sqz_preset_model *pm,
                                const sqz_quantize_opts *o, const sqz_alloc_plan *plan, site_stats *hs,
                                double *err_sum, int *n_err, double *t_quant) {
    const sqz_config *c = &qm->cfg;
    const int D = c->dim, tied = c->tied_embeddings;
    sqz_tensor *head = tied ? &qm->tok_embd : &qm->output;
    sqz_preset ep;
    const sqz_preset *hp = preset;
    if (tied && o->embd_type) {
        if (sqz_preset_find(o->embd_type, 1, &ep) != 0) return SQZ_OK; /* sqz_convert reports it */
        hp = &ep;
    }
    const sqz_type type = plan ? plan->head
                               : sqz_preset_tensor_type(hp, pm, tied ? SQZ_ROLE_TOKEN_EMBD : SQZ_ROLE_OUTPUT, -1,
                                                        head->cols, NULL);
    if (!sqz_gptq_supports(type) || head->type == type) return SQZ_OK;
    enum { ROWS = 256 };
    float *xn = malloc((size_t)ROWS * D * sizeof *xn);
    if (!xn) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    memset(hs->H, 0, (size_t)D * D * sizeof *hs->H);
    hs->n = 0;
    for (size_t i = 0; i < N; i += ROWS) {
        const int T = N - i < ROWS ? (int)(N - i) : ROWS;
        sqz_rmsnorm(xn, X + i * (size_t)D, qm->out_norm.data, T, D, c->norm_eps);
        sqz_rsq_hessian_add(hs->H, hs->tmp, xn, NULL, T, D);
        hs->n += (size_t)T;
    }
    free(xn);
    symmetrize(hs);
    const double tq = sqz_now();
    sqz_status st = quantize_matrix(ctx, qm, meth, head, type, hs, o->damp, o->act_order,
                                    tied ? "token_embd.weight" : "output.weight", o, err_sum, n_err, NULL);
    *t_quant += sqz_now() - tq;
    return st;
}

sqz_status sqz_quantize(sqz_ctx *ctx, const sqz_model *model, const char *out_path,
                        const sqz_quantize_opts *o, sqz_quantize_result *res) {
    sqz_quantize_result r;
    memset(&r, 0, sizeof r);
    if (res) *res = r;
    if (!o || !o->method || !o->type) return sqz_fail(ctx, SQZ_ERR_ARG, "quantize: method and type are required");
    sqz_convert_opts co = { .type = o->type, .pure = o->pure, .embd_type = o->embd_type };
    const method *meth = NULL;
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (!strcmp(o->method, methods[i].name)) meth = &methods[i];
    if (!meth)
        return sqz_fail(ctx, SQZ_ERR_ARG, "unknown quantization method '%s' (rtn, imatrix, gptq, rsq, decoupleq, mixllm)",
                        o->method);
    const int dq2 = !strcasecmp(o->type, "dq2");
    if (dq2 && !o->fake_quant && !meth->calib)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: rtn to dq2 is only written as fake quantization (--fake-quant); "
                        "--method decoupleq writes dq2 into sqz's container (sqzf)",
                        out_path);
    if (!meth->calib) {
        if (dq2) return sqz_dq2_fake_rtn(ctx, model, out_path, res);
        return sqz_convert(ctx, model, out_path, &co, res ? &res->convert : NULL);
    }
    if (o->alloc && (!meth->gptq || meth->rsq))
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: --alloc chooses types for --method gptq, not %s", out_path, o->method);
    if (meth->decoupleq != dq2)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: %s", out_path,
                        dq2 ? "dq2 comes from --method decoupleq or rtn" : "decoupleq writes type dq2");
    const float rmin = o->rsq_rmin > 0 ? o->rsq_rmin : SQZ_RSQ_RMIN;
    if (meth->rsq && !(rmin <= SQZ_RSQ_RMAX))
        return sqz_fail(ctx, SQZ_ERR_ARG, "rsq: least token weight %g is not in (0, 1]", (double)rmin);
    if (meth->mixllm) {
        /* the low bit width names the matrices' type; token_embd / output get the llama.cpp
         * mix of the same width */
        if (strcmp(o->type, "q4") && strcmp(o->type, "q3"))
            return sqz_fail(ctx, SQZ_ERR_ARG, "mixllm: type '%s' must be q4 or q3", o->type);
        co.type = !strcmp(o->type, "q4") ? "q4_k_m" : "q3_k_m";
    }
    const sqz_type mix_lo = !strcmp(o->type, "q3") ? SQZ_TYPE_MX3 : SQZ_TYPE_MX4;
    sqz_mixllm_plan *plan = NULL;
    sqz_alloc_plan *aplan = NULL;
    sqz_preset preset; /* dq2: the q2_k mix's choices outside the blocks (token_embd, output) */
    if (sqz_preset_find(dq2 ? "q2_k" : co.type, o->pure, &preset) != 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: unknown type '%s' (known: %s, dq2)", out_path, o->type, sqz_preset_names());
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512;
    if (!o->calib || o->n_calib < (size_t)C)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "%s needs calibration text: %zu tokens is less than one window of %d",
                        o->method, o->calib ? o->n_calib : 0, C);
    const sqz_config *c = &model->cfg;
    const int D = c->dim, F = c->hidden_dim, qd = c->n_heads * c->head_dim, L = c->n_layers;
    const size_t n_win = o->n_calib / (size_t)C, N = n_win * (size_t)C;
    const sqz_preset_model pm = { .n_layers = L, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                                  .tied = c->tied_embeddings,
                                  .is_70b = c->n_layers == 80 && c->n_heads != c->n_kv_heads };

    /* the quantized model: the original's views, with layers swapped in as they are done;
     * buffers it owns are freed with it (so it gets its own owned list) */
    sqz_model *qm = calloc(1, sizeof *qm);
    sqz_model *scratch = calloc(1, sizeof *scratch); /* rsq: owns the rotated f32 layer */
    float *X = malloc(N * (size_t)D * sizeof *X);
    sqz_session *s = NULL;
    calib_state cs;
    memset(&cs, 0, sizeof cs);
    sqz_rsq rot;
    memset(&rot, 0, sizeof rot);
    const int dims[N_WIN] = { D, qd, D, F, qd, c->n_kv_heads * c->head_dim };
    sqz_status st = SQZ_OK;
    if (!qm || !scratch || !X) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %zu calibration tokens", N); goto done; }
    *qm = *model;
    qm->owned = NULL;
    qm->n_owned = qm->cap_owned = 0;
    qm->layers = malloc((size_t)L * sizeof *qm->layers);
    if (!qm->layers) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(qm->layers, model->layers, (size_t)L * sizeof *qm->layers);
    for (int k = 0; k < SQZ_N_SITES; k++) {
        cs.site[k].dim = dims[k];
        cs.site[k].H = malloc((size_t)dims[k] * dims[k] * sizeof(double));
        cs.site[k].tmp = malloc((size_t)dims[k] * dims[k] * sizeof(float));
        if (!cs.site[k].H || !cs.site[k].tmp) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for statistics"); goto done; }
    }
    if (meth->rsq) {
        cs.weighted = 1;
        for (int k = 0; k < N_WIN; k++)
            if (!(cs.win[k] = malloc((size_t)C * dims[k] * sizeof(float)))) st = SQZ_ERR_NOMEM;
        if (st || !(cs.r = malloc((size_t)C * sizeof *cs.r))) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for statistics"); goto done; }
        /* the embeddings and head rotated (X below starts in the rotated basis); the output
         * gets its own output.weight */
        if ((st = sqz_rsq_init(ctx, &rot, c, o->seed)) || (st = sqz_rsq_rotate_ends(ctx, &rot, model, qm)))
            goto done;
    }
    if ((st = sqz_session_new(ctx, model, C, &s))) goto done;
    for (size_t i = 0; i < N; i++) {
        if (o->calib[i] < 0 || o->calib[i] >= c->vocab_size) {
            st = sqz_fail(ctx, SQZ_ERR_RANGE, "calibration token %d outside the vocabulary", o->calib[i]);
            goto done;
        }
        sqz_tensor_row_f32(&qm->tok_embd, o->calib[i], X + i * (size_t)D);
    }
    r.calib_tokens = N;
    if (meth->mixllm) { /* the global ranking first: it needs every layer's statistics */
        const sqz_mixllm_opts mo = { .frac = o->mix_frac == 0 ? 0.1 : o->mix_frac < 0 ? 0 : o->mix_frac,
                                     .lo_type = mix_lo, .sens_windows = 1 };
        if ((st = sqz_mixllm_plan_new(ctx, model, o->calib, n_win, C, &mo, &plan))) goto done;
    }
    if (o->alloc) { /* each matrix's type for the mix's bytes, before any is quantized */
        sqz_preset ep;
        const int own_embd = o->embd_type && sqz_preset_find(o->embd_type, 1, &ep) == 0;
        const sqz_alloc_opts ao = { .preset = &preset, .head_preset = own_embd ? &ep : &preset, .pm = &pm,
                                    .damp = o->damp, .act_order = o->act_order, .eval_windows = o->alloc_windows };
        const double ta = sqz_now();
        if ((st = sqz_alloc_plan_new(ctx, model, o->calib, n_win, C, &ao, &aplan))) goto done;
        r.alloc_seconds = sqz_now() - ta;
        r.alloc_budget = aplan->budget;
        r.alloc_bytes = aplan->bytes;
        r.alloc_kl_mix = aplan->kl_mix;
        r.alloc_kl_chosen = aplan->kl_chosen;
        co.keep_types = 1;
    }
    double err_sum = 0, t_quant = 0;
    int n_err = 0;
    const double t0 = sqz_now();
    for (int l = 0; l < L && !st; l++) {
        for (int k = 0; k < SQZ_N_SITES; k++) {
            memset(cs.site[k].H, 0, (size_t)dims[k] * dims[k] * sizeof(double));
            cs.site[k].n = 0;
        }
        /* rsq: the layer rotated (f32, in scratch) takes the original's place from here on */
        if (meth->rsq && (st = sqz_rsq_rotate_layer(ctx, &rot, c, &model->layers[l], &qm->layers[l], scratch)))
            break;
        /* pass 1: statistics with the original (rsq: rotated) layer */
        for (int pass = 0; pass < 2 && !st; pass++) {
            const sqz_layer_weights *w = (pass == 0 && !meth->rsq) || !meth->sequential ? &model->layers[l] : &qm->layers[l];
            for (size_t win = 0; win < n_win && !st; win++) {
                for (int c0 = 0; c0 < C && !st; c0 += s->max_batch) {
                    const int T = C - c0 < s->max_batch ? C - c0 : s->max_batch;
                    float *xw = X + (win * (size_t)C + (size_t)c0) * D;
                    memcpy(s->x, xw, (size_t)T * D * sizeof(float));
                    s->pos = c0;
                    cs.row0 = c0;
                    st = pass == 0 ? sqz_session_layer_until(s, w, l, T, capture, &cs, SQZ_SITE_DOWN)
                                   : sqz_session_layer(s, w, l, T, NULL, NULL);
                    if (pass == 1) memcpy(xw, s->x, (size_t)T * D * sizeof(float));
                }
                if (!st && pass == 0 && cs.weighted) st = flush_window(ctx, &cs, c, C, rmin);
            }
            if (st || pass == 1) break;
            /* quantize the layer's matrices with those statistics */
            const double tq = sqz_now();
            for (int k = 0; k < SQZ_N_SITES; k++) symmetrize(&cs.site[k]);
            sqz_layer_weights *qw = &qm->layers[l];
            struct { sqz_tensor *t; sqz_tensor_role role; int site; const char *name; } mats[] = {
                { &qw->wq, SQZ_ROLE_ATTN_Q, SQZ_SITE_QKV, "attn_q" },
                { &qw->wk, SQZ_ROLE_ATTN_K, SQZ_SITE_QKV, "attn_k" },
                { &qw->wv, SQZ_ROLE_ATTN_V, SQZ_SITE_QKV, "attn_v" },
                { &qw->wo, SQZ_ROLE_ATTN_OUTPUT, SQZ_SITE_O, "attn_output" },
                { &qw->w_gate, SQZ_ROLE_FFN_GATE, SQZ_SITE_GATE_UP, "ffn_gate" },
                { &qw->w_up, SQZ_ROLE_FFN_UP, SQZ_SITE_GATE_UP, "ffn_up" },
                { &qw->w_down, SQZ_ROLE_FFN_DOWN, SQZ_SITE_DOWN, "ffn_down" },
            };
            for (size_t k = 0; k < sizeof mats / sizeof *mats && !st; k++) {
                const sqz_type type = dq2 ? SQZ_TYPE_DQ2
                                    : meth->mixllm ? mix_lo
                                    : aplan ? aplan->types[l * SQZ_MIX_N_MATS + (int)k]
                                    : sqz_preset_tensor_type(&preset, &pm, mats[k].role, l, mats[k].t->cols, NULL);
                char name[64];
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[k].name);
                st = quantize_matrix(ctx, qm, meth, mats[k].t, type, &cs.site[mats[k].site], o->damp,
                                     o->act_order, name, o, &err_sum, &n_err,
                                     plan ? plan->hi[l * SQZ_MIX_N_MATS + (int)k] : NULL);
            }
            if (meth->rsq) { /* the quantized layer no longer needs its f32 rotation */
                sqz_tensor *vecs[] = { &qw->attn_norm, &qw->ffn_norm, &qw->bv, &qw->bo };
                for (size_t i = 0; i < sizeof vecs / sizeof *vecs && !st; i++) st = keep_vector(ctx, qm, vecs[i]);
                for (int i = 0; i < scratch->n_owned; i++) free(scratch->owned[i]);
                scratch->n_owned = 0;
            }
            t_quant += sqz_now() - tq;
        }
        sqz_progress(ctx, "quantize", (uint64_t)l + 1, (uint64_t)L);
    }
    /* gptq: the output projection too, on the last layer's (quantized) outputs */
    if (!st && meth->gptq && !meth->rsq)
        st = quantize_head(ctx, qm, meth, X, N, &preset, &pm, o, aplan, &cs.site[SQZ_SITE_QKV], &err_sum, &n_err,
                           &t_quant);
    if (st) goto done;
    r.calib_seconds = sqz_now() - t0 - t_quant;
    r.quant_seconds = t_quant;
    r.mean_rel_err = n_err ? err_sum / n_err : 0;
    /* dq2 matrices go into sqzf as they are (sqz_convert keeps sqz-only types); --fake-quant
     * writes their dequantized weights as f32 GGUF instead */
    if (dq2) co.type = "q2_k";
    st = dq2 && o->fake_quant ? sqz_dq2_fake_convert(ctx, qm, out_path, &r.convert)
                              : sqz_convert(ctx, qm, out_path, &co, &r.convert);
    if (!st && res) *res = r;
done:
    sqz_mixllm_plan_free(plan);
    sqz_alloc_plan_free(aplan);
    for (int k = 0; k < SQZ_N_SITES; k++) {
        free(cs.site[k].H);
        free(cs.site[k].tmp);
    }
    for (int k = 0; k < N_WIN; k++) free(cs.win[k]);
    free(cs.r);
    sqz_rsq_free(&rot);
    if (scratch) {
        for (int i = 0; i < scratch->n_owned; i++) free(scratch->owned[i]);
        free(scratch->owned);
        free(scratch);
    }
    sqz_session_free(s);
    free(X);
    if (qm) {
        for (int i = 0; i < qm->n_owned; i++) free(qm->owned[i]);
        free(qm->owned);
        free(qm->layers);
        free(qm);
    }
    return st;
}
