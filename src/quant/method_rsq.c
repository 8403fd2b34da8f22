/* method_rsq.c - "rsq" (quant/rsq.h): GPTQ on a rotated model with weighted tokens. The
 * embeddings and head are rotated up front (the calibration activations start rotated), layer
 * l is rotated into f32 scratch just before its statistics pass, and that pass keeps each
 * window's site inputs and post-RoPE q/k until the window is through, then adds them to H
 * weighted by each token's attention concentration. The output gets its own output.weight
 * even when the model ties it to the embeddings. */
#include <stdlib.h>
#include <string.h>

#include "model/session.h"
#include "quant/method.h"
#include "quant/rsq.h"

enum { N_WIN = SQZ_SITE_K_ROPE + 1 }; /* the window buffers: the four sites, q, k */

typedef struct rsq_state {
    double damp;       /* GPTQ percdamp; 0: GPTQ's own */
    int act_order;
    float rmin;        /* least token weight, in (0, 1] */
    uint64_t seed;     /* of the random rotations */
    sqz_rsq rot;
    sqz_model *scratch; /* owns the rotated f32 layer */
    float *win[N_WIN]; /* [C][site's dim]: the current window's rows of every site */
    float *r;          /* [C] token weights */
} rsq_state;

static sqz_status create(sqz_ctx *ctx, void **state) {
    rsq_state *s = calloc(1, sizeof *s);
    if (!s) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    s->rmin = SQZ_RSQ_RMIN;
    *state = s;
    return SQZ_OK;
}

static void free_scratch(sqz_model *m) {
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    m->n_owned = 0;
}

static void destroy(void *state) {
    rsq_state *s = state;
    if (!s) return;
    for (int k = 0; k < N_WIN; k++) free(s->win[k]);
    free(s->r);
    sqz_rsq_free(&s->rot);
    if (s->scratch) {
        free_scratch(s->scratch);
        free(s->scratch->owned);
        free(s->scratch);
    }
    free(s);
}

static int params(void *state, sqz_param *p) {
    rsq_state *s = state;
    p[0] = (sqz_param){ "damp", 'd', &s->damp, 0, 1e6 };
    p[1] = (sqz_param){ "act_order", 'i', &s->act_order, 0, 1 };
    p[2] = (sqz_param){ "rmin", 'f', &s->rmin, 0, SQZ_RSQ_RMAX };
    p[3] = (sqz_param){ "seed", 'u', &s->seed, 0, 0 };
    return 4;
}

static sqz_status begin(void *state, sqz_quant_run *run) {
    const rsq_state *s = state;
    sqz_status st = sqz_quant_check_preset_type(run);
    if (!st && !(s->rmin > 0 && s->rmin <= SQZ_RSQ_RMAX))
        st = sqz_fail(run->ctx, SQZ_ERR_ARG, "rsq: least token weight %g is not in (0, 1]", (double)s->rmin);
    return st;
}

/* The window buffers, the rotations, and the embeddings and head rotated (the calibration
 * activations start in the rotated basis; the output gets its own output.weight). */
static sqz_status plan(void *state, sqz_quant_run *run) {
    rsq_state *s = state;
    const sqz_config *c = &run->model->cfg;
    const int qd = c->n_heads * c->head_dim;
    const int dims[N_WIN] = { c->dim, qd, c->dim, c->hidden_dim, qd, c->n_kv_heads * c->head_dim };
    int ok = (s->scratch = calloc(1, sizeof *s->scratch)) && (s->r = malloc((size_t)run->C * sizeof *s->r));
    for (int k = 0; k < N_WIN && ok; k++) ok = (s->win[k] = malloc((size_t)run->C * dims[k] * sizeof(float))) != NULL;
    if (!ok) return sqz_fail(run->ctx, SQZ_ERR_NOMEM, "out of memory for statistics");
    sqz_status st = sqz_rsq_init(run->ctx, &s->rot, c, s->seed);
    return st ? st : sqz_rsq_rotate_ends(run->ctx, &s->rot, run->model, run->qm);
}

/* The layer rotated (f32, in scratch) takes the original's place from here on. */
static sqz_status layer_begin(void *state, sqz_quant_run *run, int l, const sqz_layer_weights **stats_w) {
    rsq_state *s = state;
    *stats_w = &run->qm->layers[l];
    return sqz_rsq_rotate_layer(run->ctx, &s->rot, &run->model->cfg, &run->model->layers[l], &run->qm->layers[l],
                                s->scratch);
}

static void capture(void *state, sqz_quant_run *run, int site, const float *x, int T, int dim, int row0) {
    rsq_state *s = state;
    (void)run;
    memcpy(s->win[site] + (size_t)row0 * dim, x, (size_t)T * dim * sizeof *x);
}

/* A window of C tokens is through the layer; its importance weights its site rows. */
static sqz_status window_end(void *state, sqz_quant_run *run) {
    rsq_state *s = state;
    const sqz_config *cfg = &run->model->cfg;
    const int C = run->C;
    sqz_status st = sqz_rsq_attn_concentration(run->ctx, s->win[SQZ_SITE_Q_ROPE], s->win[SQZ_SITE_K_ROPE], C,
                                               cfg->n_heads, cfg->n_kv_heads, cfg->head_dim, s->r);
    if (st) return st;
    sqz_rsq_normalize(s->r, C, s->rmin, SQZ_RSQ_RMAX);
    for (int k = 0; k < SQZ_N_SITES; k++) {
        sqz_quant_stats *ss = &run->site[k];
        sqz_rsq_hessian_add(ss->H, ss->tmp, s->win[k], s->r, C, ss->dim, run->ctx->n_threads);
        ss->n += (size_t)C;
    }
    return SQZ_OK;
}

static sqz_status quantize(void *state, sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                           const sqz_quant_stats *st, const float *W, float *Q, int l, int k,
                           char *label, size_t len, int *q_kept) {
    const rsq_state *s = state;
    (void)l, (void)k, (void)label, (void)len, (void)q_kept;
    return sqz_quant_gptq_matrix(run, t, type, st, s->damp, s->act_order, W, Q);
}

/* A copy of vector t owned by m (a rotated layer's norms and biases outlive its scratch). */
static sqz_status keep_vector(sqz_ctx *ctx, sqz_model *m, sqz_tensor *t) {
    if (!t->data) return SQZ_OK;
    float *v = sqz_model_own(m, malloc((size_t)t->cols * sizeof *v));
    if (!v) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    sqz_tensor_row_f32(t, 0, v);
    t->type = SQZ_TYPE_F32;
    t->data = v;
    return SQZ_OK;
}

/* The quantized layer no longer needs its f32 rotation. */
static sqz_status layer_end(void *state, sqz_quant_run *run, int l) {
    rsq_state *s = state;
    sqz_layer_weights *qw = &run->qm->layers[l];
    sqz_tensor *vecs[] = { &qw->attn_norm, &qw->ffn_norm, &qw->bv, &qw->bo };
    sqz_status st = SQZ_OK;
    for (size_t i = 0; i < sizeof vecs / sizeof *vecs && !st; i++) st = keep_vector(run->ctx, run->qm, vecs[i]);
    free_scratch(s->scratch);
    return st;
}

const sqz_quant_method sqz_quant_method_rsq = {
    .name = "rsq",
    .help = "random Hadamard rotations, tokens weighted by the attention they receive, then GPTQ",
    .calib = 1,
    .sequential = 1,
    .create = create,
    .destroy = destroy,
    .params = params,
    .begin = begin,
    .plan = plan,
    .layer_begin = layer_begin,
    .capture = capture,
    .window_end = window_end,
    .quantize = quantize,
    .layer_end = layer_end,
};
