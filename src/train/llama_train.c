/* llama_train.c - forward pass keeping activations, and the backward pass, of the llama
 * family (RMSNorm, RoPE, grouped-query causal attention, SwiGLU, tied or untied head,
 * optional q/k/v/o biases), over B rows of T tokens; N = B * T. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"
#include "train/train_ops.h"

typedef struct layer_acts {
    float *xin, *rstd1, *xn1, *q, *k, *v, *P, *att, *r1, *rstd2, *xn2, *g, *u, *h;
} layer_acts;

struct sqz_train_acts {
    int B, T;
    sqz_config cfg;
    float *mem;
    layer_acts *L;
    float *resid_out, *rstdf, *xnf, *logits, *loss, *cs;
    const int32_t *tokens, *targets; /* of the last forward (the caller's) */
    double n_scored;
    /* backward scratch */
    float *dres, *dr1, *dxn, *dh, *dg, *du, *datt, *dq, *dk, *dv;
};

sqz_status sqz_train_acts_new(sqz_ctx *ctx, const sqz_config *c, int B, int T, sqz_train_acts **out) {
    *out = NULL;
    if (B <= 0 || T <= 0 || c->head_dim % 2)
        return sqz_fail(ctx, SQZ_ERR_ARG, "train: batch %d x %d tokens", B, T);
    sqz_train_acts *a = calloc(1, sizeof *a);
    if (!a) return sqz_fail(ctx, SQZ_ERR_NOMEM, "train: out of memory");
    a->B = B, a->T = T, a->cfg = *c;
    const size_t N = (size_t)B * T, D = (size_t)c->dim, F = (size_t)c->hidden_dim,
                 qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim,
                 V = (size_t)c->vocab_size, PT = (size_t)B * c->n_heads * T * T;
    const size_t per_layer = N * (4 * D + qd * 2 + kvd * 2 + 3 * F + 2) + PT;
    const size_t total = per_layer * (size_t)c->n_layers + N * (2 * D + V + 2) + (size_t)T * c->head_dim +
                         N * (3 * D + 3 * F + qd * 2 + kvd * 2);
    a->mem = malloc(total * sizeof(float));
    a->L = calloc((size_t)c->n_layers, sizeof *a->L);
    if (!a->mem || !a->L) {
        sqz_train_acts_free(a);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "train: out of memory for %zu MB of activations",
                        total * sizeof(float) >> 20);
    }
    float *p = a->mem;
#define TAKE(n) (p += (n), p - (n))
    for (int l = 0; l < c->n_layers; l++) {
        layer_acts *L = &a->L[l];
        L->xin = TAKE(N * D), L->rstd1 = TAKE(N), L->xn1 = TAKE(N * D);
        L->q = TAKE(N * qd), L->k = TAKE(N * kvd), L->v = TAKE(N * kvd), L->P = TAKE(PT);
        L->att = TAKE(N * qd), L->r1 = TAKE(N * D), L->rstd2 = TAKE(N), L->xn2 = TAKE(N * D);
        L->g = TAKE(N * F), L->u = TAKE(N * F), L->h = TAKE(N * F);
    }
    a->resid_out = TAKE(N * D), a->rstdf = TAKE(N), a->xnf = TAKE(N * D);
    a->logits = TAKE(N * V), a->loss = TAKE(N), a->cs = TAKE((size_t)T * c->head_dim);
    a->dres = TAKE(N * D), a->dr1 = TAKE(N * D), a->dxn = TAKE(N * D);
    a->dh = TAKE(N * F), a->dg = TAKE(N * F), a->du = TAKE(N * F);
    a->datt = TAKE(N * qd), a->dq = TAKE(N * qd), a->dk = TAKE(N * kvd), a->dv = TAKE(N * kvd);
#undef TAKE
    tops_rope_table(T, c->head_dim, c->rope_theta, a->cs);
    *out = a;
    return SQZ_OK;
}

void sqz_train_acts_free(sqz_train_acts *a) {
    if (!a) return;
    free(a->mem);
    free(a->L);
    free(a);
}

static void add_bias(int nt, int64_t N, int64_t C, const float *p, size_t off, float *y) {
    if (off == SQZ_TRAIN_NONE) return;
    const float *b = p + off;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N >= 64)
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < C; j++) y[(size_t)(n * C + j)] += b[j];
}

/* y = x W^T (+ b) for the tensor at off: (OC x C) */
static void linear(int nt, int64_t N, int64_t OC, int64_t C, const float *x, const float *p,
                   size_t w, size_t b, float *y) {
    tops_gemm(nt, N, OC, C, x, (size_t)C, 0, p + w, (size_t)C, 0, y, (size_t)OC, 0);
    add_bias(nt, N, OC, p, b, y);
}

double sqz_train_forward(const sqz_train_params *tp, const float *p, sqz_train_acts *a,
                         const int32_t *tokens, const int32_t *targets, int nt) {
    const sqz_config *c = &tp->cfg;
    const int B = a->B, T = a->T, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
    const int64_t N = (int64_t)B * T, D = c->dim, F = c->hidden_dim, qd = (int64_t)Hq * hd,
                  kvd = (int64_t)Hkv * hd, V = c->vocab_size;
    a->tokens = tokens, a->targets = targets;
    const float *E = p + tp->tok_embd;
    float *x = c->n_layers ? a->L[0].xin : a->resid_out;
    for (int64_t n = 0; n < N; n++) memcpy(x + n * D, E + (size_t)tokens[n] * D, (size_t)D * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        const sqz_train_layer *W = &tp->L[l];
        layer_acts *L = &a->L[l];
        float *next = l + 1 < c->n_layers ? a->L[l + 1].xin : a->resid_out;
        tops_rmsnorm(nt, N, (int)D, L->xin, p + W->attn_norm, c->norm_eps, L->xn1, L->rstd1);
        linear(nt, N, qd, D, L->xn1, p, W->wq, W->bq, L->q);
        linear(nt, N, kvd, D, L->xn1, p, W->wk, W->bk, L->k);
        linear(nt, N, kvd, D, L->xn1, p, W->wv, W->bv, L->v);
        tops_rope(nt, N, T, Hq, hd, a->cs, c->rope_interleaved, 0, L->q);
        tops_rope(nt, N, T, Hkv, hd, a->cs, c->rope_interleaved, 0, L->k);
        tops_attention(nt, B, T, Hq, Hkv, hd, L->q, L->k, L->v, L->P, L->att);
        linear(nt, N, D, qd, L->att, p, W->wo, W->bo, L->r1);
        for (int64_t i = 0; i < N * D; i++) L->r1[i] += L->xin[i];
        tops_rmsnorm(nt, N, (int)D, L->r1, p + W->ffn_norm, c->norm_eps, L->xn2, L->rstd2);
        linear(nt, N, F, D, L->xn2, p, W->w_gate, SQZ_TRAIN_NONE, L->g);
        linear(nt, N, F, D, L->xn2, p, W->w_up, SQZ_TRAIN_NONE, L->u);
        tops_swiglu(nt, (size_t)(N * F), L->g, L->u, L->h);
        linear(nt, N, D, F, L->h, p, W->w_down, SQZ_TRAIN_NONE, next);
        for (int64_t i = 0; i < N * D; i++) next[i] += L->r1[i];
    }
    tops_rmsnorm(nt, N, (int)D, a->resid_out, p + tp->out_norm, c->norm_eps, a->xnf, a->rstdf);
    linear(nt, N, V, D, a->xnf, p, tp->output, SQZ_TRAIN_NONE, a->logits);
    tops_xent(nt, N, (int)V, a->logits, targets, a->loss);
    double sum = 0;
    a->n_scored = 0;
    for (int64_t n = 0; n < N; n++)
        if (targets[n] >= 0) {
            sum += a->loss[n];
            a->n_scored++;
        }
    return a->n_scored ? sum / a->n_scored : NAN;
}

/* dx (N x C) (+)= dy (N x OC) W (OC x C) */
static void back_x(int nt, int64_t N, int64_t OC, int64_t C, const float *dy, const float *W, float *dx,
                   int acc) {
    tops_gemm(nt, N, C, OC, dy, (size_t)OC, 0, W, (size_t)C, 1, dx, (size_t)C, acc);
}

/* dW (OC x C) += dy (N x OC)^T x (N x C) */
static void back_w(int nt, int64_t N, int64_t OC, int64_t C, const float *dy, const float *x, float *dW) {
    tops_gemm(nt, OC, C, N, dy, (size_t)OC, 1, x, (size_t)C, 1, dW, (size_t)C, 1);
}

void sqz_train_backward(const sqz_train_params *tp, const float *p, sqz_train_acts *a, float *grad,
                        int nt) {
    const sqz_config *c = &tp->cfg;
    const int B = a->B, T = a->T, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
    const int64_t N = (int64_t)B * T, D = c->dim, F = c->hidden_dim, qd = (int64_t)Hq * hd,
                  kvd = (int64_t)Hkv * hd, V = c->vocab_size;
    if (!a->n_scored) return;
    /* head: logits become d loss / d logits; then the output matrix and the final norm */
    tops_xent_back(nt, N, (int)V, a->logits, a->targets, (float)(1.0 / a->n_scored));
    back_w(nt, N, V, D, a->logits, a->xnf, grad + tp->output);
    back_x(nt, N, V, D, a->logits, p + tp->output, a->dxn, 0);
    tops_rmsnorm_back(nt, N, (int)D, a->resid_out, p + tp->out_norm, a->rstdf, a->dxn, a->dres, 0,
                      grad + tp->out_norm);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const sqz_train_layer *W = &tp->L[l];
        layer_acts *L = &a->L[l];
        /* MLP: out = r1 + down(swiglu(gate(xn2), up(xn2))) */
        back_w(nt, N, D, F, a->dres, L->h, grad + W->w_down);
        back_x(nt, N, D, F, a->dres, p + W->w_down, a->dh, 0);
        tops_swiglu_back(nt, (size_t)(N * F), L->g, L->u, a->dh, a->dg, a->du);
        back_w(nt, N, F, D, a->dg, L->xn2, grad + W->w_gate);
        back_w(nt, N, F, D, a->du, L->xn2, grad + W->w_up);
        back_x(nt, N, F, D, a->dg, p + W->w_gate, a->dxn, 0);
        back_x(nt, N, F, D, a->du, p + W->w_up, a->dxn, 1);
        memcpy(a->dr1, a->dres, (size_t)(N * D) * sizeof(float));
        tops_rmsnorm_back(nt, N, (int)D, L->r1, p + W->ffn_norm, L->rstd2, a->dxn, a->dr1, 1,
                          grad + W->ffn_norm);
        /* attention: r1 = xin + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))) */
        back_w(nt, N, D, qd, a->dr1, L->att, grad + W->wo);
        if (W->bo != SQZ_TRAIN_NONE) tops_colsum_add(nt, N, D, a->dr1, grad + W->bo);
        back_x(nt, N, D, qd, a->dr1, p + W->wo, a->datt, 0);
        tops_attention_back(nt, B, T, Hq, Hkv, hd, L->q, L->k, L->v, L->P, a->datt, a->dq, a->dk, a->dv);
        tops_rope(nt, N, T, Hq, hd, a->cs, c->rope_interleaved, 1, a->dq);
        tops_rope(nt, N, T, Hkv, hd, a->cs, c->rope_interleaved, 1, a->dk);
        if (W->bq != SQZ_TRAIN_NONE) tops_colsum_add(nt, N, qd, a->dq, grad + W->bq);
        if (W->bk != SQZ_TRAIN_NONE) tops_colsum_add(nt, N, kvd, a->dk, grad + W->bk);
        if (W->bv != SQZ_TRAIN_NONE) tops_colsum_add(nt, N, kvd, a->dv, grad + W->bv);
        back_w(nt, N, qd, D, a->dq, L->xn1, grad + W->wq);
        back_w(nt, N, kvd, D, a->dk, L->xn1, grad + W->wk);
        back_w(nt, N, kvd, D, a->dv, L->xn1, grad + W->wv);
        back_x(nt, N, qd, D, a->dq, p + W->wq, a->dxn, 0);
        back_x(nt, N, kvd, D, a->dk, p + W->wk, a->dxn, 1);
        back_x(nt, N, kvd, D, a->dv, p + W->wv, a->dxn, 1);
        memcpy(a->dres, a->dr1, (size_t)(N * D) * sizeof(float));
        tops_rmsnorm_back(nt, N, (int)D, L->xin, p + W->attn_norm, L->rstd1, a->dxn, a->dres, 1,
                          grad + W->attn_norm);
    }
    /* token embedding: rows scattered in token order */
    float *gE = grad + tp->tok_embd;
    for (int64_t n = 0; n < N; n++) {
        float *g = gE + (size_t)a->tokens[n] * D;
        const float *d = a->dres + n * D;
        for (int64_t i = 0; i < D; i++) g[i] += d[i];
    }
}
