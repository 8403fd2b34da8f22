/* kl_probe.c - mean KL divergence of a changed model from the original (kl_probe.h). */
#include "quant/kl_probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "model/session.h"

struct sqz_kl_probe {
    sqz_ctx *ctx;
    const sqz_model *model;
    sqz_session *s;
    size_t n_win;
    int C;
    const int32_t *tokens;
    float **X;     /* [L + 1][n][D]: the original's input of layer l; X[L]: the last layer's output */
    float *base;   /* [n][V] the original's logits */
    const sqz_model *ref; /* set_ref's model (NULL: the original) */
    float **XR;    /* [L + 1][n][D]: ref's input of layer l, window w valid when ref_ok[w] */
    char *ref_ok;  /* [n_win] */
    double *ref_kl; /* [n_win] ref's mean KL on window w (valid with ref_ok) */
    float *lg;     /* [C][V] */
    float *emb;    /* [C][D] */
    double *kl;    /* [C] */
};

/* Runs layers l0..L-1 of m (then the output head) over one window whose layer-l0 input is
 * Xl [C][D], writing logits [C][V]; with cache, the input of every layer l0..L goes to
 * cache[l] [C][D] as well. */
static sqz_status run_from(sqz_session *s, const sqz_model *m, int l0, const float *Xl, int C,
                           float *logits, float **cache) {
    const sqz_config *c = &m->cfg;
    const int D = c->dim, V = c->vocab_size, L = c->n_layers;
    sqz_session_reset(s);
    sqz_status st = SQZ_OK;
    for (int c0 = 0; c0 < C && !st; c0 += s->max_batch) {
        const int T = C - c0 < s->max_batch ? C - c0 : s->max_batch;
        memcpy(s->x, Xl + (size_t)c0 * D, (size_t)T * D * sizeof(float));
        s->pos = c0;
        for (int l = l0; l < L && !st; l++) {
            if (cache) memcpy(cache[l] + (size_t)c0 * D, s->x, (size_t)T * D * sizeof(float));
            st = sqz_session_layer(s, &m->layers[l], l, T, NULL, NULL);
        }
        if (cache) memcpy(cache[L] + (size_t)c0 * D, s->x, (size_t)T * D * sizeof(float));
        sqz_rmsnorm(s->xb, s->x, m->out_norm.data, T, D, c->norm_eps);
        sqz_matmul(&m->output, s->xb, T, logits + (size_t)c0 * V, s->ctx->n_threads);
    }
    return st;
}

static void embed(const sqz_model *m, const int32_t *tokens, int C, float *emb) {
    const int D = m->cfg.dim;
    for (int i = 0; i < C; i++) sqz_tensor_row_f32(&m->tok_embd, tokens[i], emb + (size_t)i * D);
}

void sqz_kl_probe_free(sqz_kl_probe *p) {
    if (!p) return;
    sqz_session_free(p->s);
    for (int l = 0; p->X && l <= p->model->cfg.n_layers; l++) free(p->X[l]);
    for (int l = 0; p->XR && l <= p->model->cfg.n_layers; l++) free(p->XR[l]);
    free(p->XR), free(p->ref_ok), free(p->ref_kl);
    free(p->X), free(p->base), free(p->lg), free(p->emb), free(p->kl);
    free(p);
}

sqz_status sqz_kl_probe_new(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                            int C, sqz_kl_probe **out) {
    *out = NULL;
    const sqz_config *c = &model->cfg;
    const int L = c->n_layers, V = c->vocab_size, D = c->dim;
    const size_t n = n_win * (size_t)C;
    sqz_kl_probe *p = calloc(1, sizeof *p);
    if (!p) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    *p = (sqz_kl_probe){ .ctx = ctx, .model = model, .n_win = n_win, .C = C, .tokens = tokens };
    p->X = calloc((size_t)L + 1, sizeof *p->X);
    p->base = malloc(n * (size_t)V * sizeof *p->base);
    p->lg = malloc((size_t)C * V * sizeof *p->lg);
    p->emb = malloc((size_t)C * D * sizeof *p->emb);
    p->kl = malloc((size_t)C * sizeof *p->kl);
    int ok = p->X && p->base && p->lg && p->emb && p->kl;
    for (int l = 0; ok && l <= L; l++) ok = (p->X[l] = malloc(n * (size_t)D * sizeof **p->X)) != NULL;
    if (!ok) {
        sqz_kl_probe_free(p);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %zu x %d logits", n, V);
    }
    sqz_status st = sqz_session_new(ctx, model, C, &p->s);
    float **cache = st ? NULL : malloc(((size_t)L + 1) * sizeof *cache);
    if (!st && !cache) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    for (size_t w = 0; w < n_win && !st; w++) {
        for (int l = 0; l <= L; l++) cache[l] = p->X[l] + w * (size_t)C * D;
        embed(model, tokens + w * (size_t)C, C, p->emb);
        st = run_from(p->s, model, 0, p->emb, C, p->base + w * (size_t)C * V, cache);
    }
    free(cache);
    if (st) {
        sqz_kl_probe_free(p);
        return st;
    }
    *out = p;
    return SQZ_OK;
}

/* Sum over window w's positions of KL(original || p->lg). */
static double window_kl(sqz_kl_probe *p, size_t w) {
    const int V = p->model->cfg.vocab_size, C = p->C, nt = p->ctx->n_threads;
    const float *bw = p->base + w * (size_t)C * V;
    /* rows in parallel, summed in order: any thread count gives the same sum */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int i = 0; i < C; i++) p->kl[i] = sqz_kl_logits(bw + (size_t)i * V, p->lg + (size_t)i * V, V);
    double sum = 0;
    for (int i = 0; i < C; i++) sum += p->kl[i];
    return sum;
}

/* Window w's ref states (and the ref's KL there), computed if stale. */
static sqz_status ref_window(sqz_kl_probe *p, size_t w) {
    if (p->ref_ok[w]) return SQZ_OK;
    const int L = p->model->cfg.n_layers, D = p->model->cfg.dim, C = p->C;
    float *cache[L + 1];
    for (int l = 0; l <= L; l++) cache[l] = p->XR[l] + w * (size_t)C * D;
    embed(p->ref, p->tokens + w * (size_t)C, C, p->emb);
    sqz_status st = run_from(p->s, p->ref, 0, p->emb, C, p->lg, cache);
    if (st) return st;
    p->ref_kl[w] = window_kl(p, w);
    p->ref_ok[w] = 1;
    return SQZ_OK;
}

sqz_status sqz_kl_probe_set_ref(sqz_kl_probe *p, const sqz_model *ref) {
    const int L = p->model->cfg.n_layers, D = p->model->cfg.dim;
    const size_t n = p->n_win * (size_t)p->C;
    if (ref && !p->XR) {
        p->XR = calloc((size_t)L + 1, sizeof *p->XR);
        p->ref_ok = calloc(p->n_win, 1);
        p->ref_kl = calloc(p->n_win, sizeof *p->ref_kl);
        int ok = p->XR && p->ref_ok && p->ref_kl;
        for (int l = 0; ok && l <= L; l++) ok = (p->XR[l] = malloc(n * (size_t)D * sizeof **p->XR)) != NULL;
        if (!ok) {
            for (int l = 0; p->XR && l <= L; l++) free(p->XR[l]);
            free(p->XR), free(p->ref_ok), free(p->ref_kl);
            p->XR = NULL, p->ref_ok = NULL, p->ref_kl = NULL;
            return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "kl probe: out of memory for the reference's states");
        }
    }
    p->ref = ref;
    if (p->ref_ok) memset(p->ref_ok, 0, p->n_win);
    return SQZ_OK;
}

sqz_status sqz_kl_probe_ref_kl(sqz_kl_probe *p, const int *win, int n, double *kl) {
    *kl = 0;
    if (!p->ref) return sqz_fail(p->ctx, SQZ_ERR_ARG, "kl probe: no reference set");
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (win[i] < 0 || (size_t)win[i] >= p->n_win) return sqz_fail(p->ctx, SQZ_ERR_ARG, "kl probe: window %d", win[i]);
        sqz_status st = ref_window(p, (size_t)win[i]);
        if (st) return st;
        sum += p->ref_kl[win[i]];
    }
    *kl = sum / ((double)n * p->C);
    return SQZ_OK;
}

sqz_status sqz_kl_probe_measure_windows(sqz_kl_probe *p, const sqz_model *changed, int l0, const int *win,
                                        int n, double *kl) {
    const sqz_config *c = &p->model->cfg;
    const int D = c->dim, C = p->C;
    *kl = 0;
    if (l0 < 0 || l0 > c->n_layers) return sqz_fail(p->ctx, SQZ_ERR_ARG, "kl probe: layer %d", l0);
    double sum = 0;
    sqz_status st = SQZ_OK;
    for (int i = 0; i < n && !st; i++) {
        if (win[i] < 0 || (size_t)win[i] >= p->n_win) return sqz_fail(p->ctx, SQZ_ERR_ARG, "kl probe: window %d", win[i]);
        const size_t w = (size_t)win[i];
        const float *in = p->X[l0] + w * (size_t)C * D;
        if (l0 > 0 && p->ref) {
            if ((st = ref_window(p, w))) break;
            in = p->XR[l0] + w * (size_t)C * D;
        }
        if (l0 == 0) {
            embed(changed, p->tokens + w * (size_t)C, C, p->emb);
            in = p->emb;
        }
        if ((st = run_from(p->s, changed, l0, in, C, p->lg, NULL))) break;
        sum += window_kl(p, w);
    }
    if (!st) *kl = sum / ((double)n * C);
    return st;
}

sqz_status sqz_kl_probe_measure(sqz_kl_probe *p, const sqz_model *changed, int l0, double *kl) {
    const sqz_model *ref = p->ref;
    p->ref = NULL; /* measured against the original's states, as documented */
    sqz_status st = SQZ_OK;
    double sum = 0;
    for (size_t w = 0; w < p->n_win && !st; w++) {
        const int wi = (int)w;
        double k;
        st = sqz_kl_probe_measure_windows(p, changed, l0, &wi, 1, &k);
        sum += k;
    }
    p->ref = ref;
    *kl = st ? 0 : sum / (double)p->n_win;
    return st;
}

size_t sqz_kl_probe_windows(const sqz_kl_probe *p) { return p->n_win; }
