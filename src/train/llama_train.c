/* llama_train.c - forward pass keeping activations, and the backward pass, of the llama
 * family (RMSNorm, RoPE, grouped-query causal attention, SwiGLU, tied or untied head,
 * optional q/k/v/o biases), over B rows of T tokens; N = B * T. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"
#include "train/train_ops.h"

typedef struct layer_acts {
    float *xin, *rstd1, *xn1, *q, *k, *v, *att_stats, *att, *r1, *rstd2, *xn2, *g, *u, *h;
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
    /* LoRA (lora_rank > 0): v = scale * x A^T of every adapted matrix, N x rank each, and the
     * backward pass's d v */
    int lora_rank;
    float *lv, *ldv;
};

/* The pass's inputs: parameters, their gradients (NULL: frozen), the LoRA adapters and
 * theirs, the activations, the threads. */
typedef struct pass {
    const sqz_train_params *tp;
    const float *p;
    float *grad;
    const sqz_train_lora *lo;
    float *lgrad;
    sqz_train_acts *a;
    int nt;
    int64_t N;
} pass;

sqz_status sqz_train_acts_new(sqz_ctx *ctx, const sqz_config *c, int B, int T, int lora_rank,
                              sqz_train_acts **out) {
    *out = NULL;
    if (B <= 0 || T <= 0 || c->head_dim % 2)
        return sqz_fail(ctx, SQZ_ERR_ARG, "train: batch %d x %d tokens", B, T);
    sqz_train_acts *a = calloc(1, sizeof *a);
    if (!a) return sqz_fail(ctx, SQZ_ERR_NOMEM, "train: out of memory");
    a->B = B, a->T = T, a->cfg = *c;
    const size_t N = (size_t)B * T, D = (size_t)c->dim, F = (size_t)c->hidden_dim,
                 qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim,
                 V = (size_t)c->vocab_size, ST = (size_t)B * c->n_heads * T * 2; /* attention: each row's softmax max, 1 / sum */
    const size_t per_layer = N * (4 * D + qd * 2 + kvd * 2 + 3 * F + 2) + ST;
    const size_t R = lora_rank > 0 ? (size_t)lora_rank : 0;
    const size_t total = per_layer * (size_t)c->n_layers + N * (2 * D + V + 2) + (size_t)T * c->head_dim +
                         N * (3 * D + 3 * F + qd * 2 + kvd * 2) +
                         N * R * (SQZ_LORA_N * (size_t)c->n_layers + 1);
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
        L->q = TAKE(N * qd), L->k = TAKE(N * kvd), L->v = TAKE(N * kvd), L->att_stats = TAKE(ST);
        L->att = TAKE(N * qd), L->r1 = TAKE(N * D), L->rstd2 = TAKE(N), L->xn2 = TAKE(N * D);
        L->g = TAKE(N * F), L->u = TAKE(N * F), L->h = TAKE(N * F);
    }
    a->resid_out = TAKE(N * D), a->rstdf = TAKE(N), a->xnf = TAKE(N * D);
    a->logits = TAKE(N * V), a->loss = TAKE(N), a->cs = TAKE((size_t)T * c->head_dim);
    a->dres = TAKE(N * D), a->dr1 = TAKE(N * D), a->dxn = TAKE(N * D);
    a->dh = TAKE(N * F), a->dg = TAKE(N * F), a->du = TAKE(N * F);
    a->datt = TAKE(N * qd), a->dq = TAKE(N * qd), a->dk = TAKE(N * kvd), a->dv = TAKE(N * kvd);
    a->lora_rank = (int)R;
    a->lv = TAKE(N * R * SQZ_LORA_N * (size_t)c->n_layers), a->ldv = TAKE(N * R);
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

/* The LoRA factors of layer l's matrix tg (NULL when not adapted); *v: its N x rank slot. */
static int lora_of(const pass *P, int l, int tg, const float **A, const float **B, float **v) {
    const sqz_train_lora *lo = P->lo;
    if (!lo || l < 0 || lo->a[l][tg] == SQZ_TRAIN_NONE) return 0;
    *A = lo->p + lo->a[l][tg];
    *B = lo->p + lo->b[l][tg];
    *v = P->a->lv + ((size_t)l * SQZ_LORA_N + (size_t)tg) * (size_t)P->N * (size_t)lo->rank;
    return 1;
}

/* y (N x OC) = x W^T + b, + scale (x A^T) B^T when layer l's matrix tg is adapted */
static void lin_fwd(const pass *P, int l, int tg, const float *x, int64_t OC, int64_t C, size_t w,
                    size_t b, float *y) {
    const int nt = P->nt;
    const int64_t N = P->N;
    tops_gemm(nt, N, OC, C, x, (size_t)C, 0, P->p + w, (size_t)C, 0, y, (size_t)OC, 0);
    if (b != SQZ_TRAIN_NONE) {
        const float *bias = P->p + b;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N >= 64)
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < OC; j++) y[(size_t)(n * OC + j)] += bias[j];
    }
    const float *A, *B;
    float *v;
    if (!lora_of(P, l, tg, &A, &B, &v)) return;
    const int r = P->lo->rank;
    tops_gemm(nt, N, r, C, x, (size_t)C, 0, A, (size_t)C, 0, v, (size_t)r, 0);
    for (size_t i = 0; i < (size_t)N * (size_t)r; i++) v[i] *= P->lo->scale;
    tops_gemm(nt, N, OC, r, v, (size_t)r, 0, B, (size_t)r, 0, y, (size_t)OC, 1);
}

/* From dy (N x OC), the gradient at the input x (N x C) of lin_fwd: dx (= or += with acc)
 * dy W (+ scale (dy B) A); and when trainable dW += dy^T x, db += sum dy, or the adapter's
 * dB += dy^T v, dA += scale (dy B)^T x. */
static void lin_back(const pass *P, int l, int tg, const float *dy, const float *x, int64_t OC,
                     int64_t C, size_t w, size_t b, float *dx, int acc) {
    const int nt = P->nt;
    const int64_t N = P->N;
    if (P->grad) {
        tops_gemm(nt, OC, C, N, dy, (size_t)OC, 1, x, (size_t)C, 1, P->grad + w, (size_t)C, 1);
        if (b != SQZ_TRAIN_NONE) tops_colsum_add(nt, N, OC, dy, P->grad + b);
    }
    if (dx) tops_gemm(nt, N, C, OC, dy, (size_t)OC, 0, P->p + w, (size_t)C, 1, dx, (size_t)C, acc);
    const float *A, *B;
    float *v;
    if (!lora_of(P, l, tg, &A, &B, &v)) return;
    const int r = P->lo->rank;
    float *dv = P->a->ldv, *gA = P->lgrad + P->lo->a[l][tg], *gB = P->lgrad + P->lo->b[l][tg];
    tops_gemm(nt, N, r, OC, dy, (size_t)OC, 0, B, (size_t)r, 1, dv, (size_t)r, 0);
    tops_gemm(nt, OC, r, N, dy, (size_t)OC, 1, v, (size_t)r, 1, gB, (size_t)r, 1);
    for (size_t i = 0; i < (size_t)N * (size_t)r; i++) dv[i] *= P->lo->scale;
    tops_gemm(nt, r, C, N, dv, (size_t)r, 1, x, (size_t)C, 1, gA, (size_t)C, 1);
    if (dx) tops_gemm(nt, N, C, r, dv, (size_t)r, 0, A, (size_t)C, 1, dx, (size_t)C, 1);
}

double sqz_train_forward(const sqz_train_params *tp, const float *p, const sqz_train_lora *lo,
                         sqz_train_acts *a, const int32_t *tokens, const int32_t *targets, int nt) {
    const sqz_config *c = &tp->cfg;
    const int B = a->B, T = a->T, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
    const int64_t N = (int64_t)B * T, D = c->dim, F = c->hidden_dim, qd = (int64_t)Hq * hd,
                  kvd = (int64_t)Hkv * hd, V = c->vocab_size;
    a->tokens = tokens, a->targets = targets;
    const pass P = { tp, p, NULL, lo, NULL, a, nt, N };
    const float *E = p + tp->tok_embd;
    float *x = c->n_layers ? a->L[0].xin : a->resid_out;
    for (int64_t n = 0; n < N; n++) memcpy(x + n * D, E + (size_t)tokens[n] * D, (size_t)D * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        const sqz_train_layer *W = &tp->L[l];
        layer_acts *L = &a->L[l];
        float *next = l + 1 < c->n_layers ? a->L[l + 1].xin : a->resid_out;
        tops_rmsnorm(nt, N, (int)D, L->xin, p + W->attn_norm, c->norm_eps, L->xn1, L->rstd1);
        lin_fwd(&P, l, SQZ_LORA_Q, L->xn1, qd, D, W->wq, W->bq, L->q);
        lin_fwd(&P, l, SQZ_LORA_K, L->xn1, kvd, D, W->wk, W->bk, L->k);
        lin_fwd(&P, l, SQZ_LORA_V, L->xn1, kvd, D, W->wv, W->bv, L->v);
        tops_rope(nt, N, T, Hq, hd, a->cs, c->rope_interleaved, 0, L->q);
        tops_rope(nt, N, T, Hkv, hd, a->cs, c->rope_interleaved, 0, L->k);
        tops_attention(nt, B, T, Hq, Hkv, hd, L->q, L->k, L->v, L->att_stats, L->att);
        lin_fwd(&P, l, SQZ_LORA_O, L->att, D, qd, W->wo, W->bo, L->r1);
        for (int64_t i = 0; i < N * D; i++) L->r1[i] += L->xin[i];
        tops_rmsnorm(nt, N, (int)D, L->r1, p + W->ffn_norm, c->norm_eps, L->xn2, L->rstd2);
        lin_fwd(&P, l, SQZ_LORA_GATE, L->xn2, F, D, W->w_gate, SQZ_TRAIN_NONE, L->g);
        lin_fwd(&P, l, SQZ_LORA_UP, L->xn2, F, D, W->w_up, SQZ_TRAIN_NONE, L->u);
        tops_swiglu(nt, (size_t)(N * F), L->g, L->u, L->h);
        lin_fwd(&P, l, SQZ_LORA_DOWN, L->h, D, F, W->w_down, SQZ_TRAIN_NONE, next);
        for (int64_t i = 0; i < N * D; i++) next[i] += L->r1[i];
    }
    tops_rmsnorm(nt, N, (int)D, a->resid_out, p + tp->out_norm, c->norm_eps, a->xnf, a->rstdf);
    lin_fwd(&P, -1, 0, a->xnf, V, D, tp->output, SQZ_TRAIN_NONE, a->logits);
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

void sqz_train_backward(const sqz_train_params *tp, const float *p, float *grad,
                        const sqz_train_lora *lo, float *lgrad, sqz_train_acts *a, int nt) {
    const sqz_config *c = &tp->cfg;
    const int B = a->B, T = a->T, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
    const int64_t N = (int64_t)B * T, D = c->dim, F = c->hidden_dim, qd = (int64_t)Hq * hd,
                  kvd = (int64_t)Hkv * hd, V = c->vocab_size;
    if (!a->n_scored) return;
    const pass P = { tp, p, grad, lo, lgrad, a, nt, N };
#define G(off) (grad ? grad + (off) : NULL)
    /* head: logits become d loss / d logits; then the output matrix and the final norm */
    tops_xent_back(nt, N, (int)V, a->logits, a->targets, (float)(1.0 / a->n_scored));
    lin_back(&P, -1, 0, a->logits, a->xnf, V, D, tp->output, SQZ_TRAIN_NONE, a->dxn, 0);
    tops_rmsnorm_back(nt, N, (int)D, a->resid_out, p + tp->out_norm, a->rstdf, a->dxn, a->dres, 0,
                      G(tp->out_norm));
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const sqz_train_layer *W = &tp->L[l];
        layer_acts *L = &a->L[l];
        /* MLP: out = r1 + down(swiglu(gate(xn2), up(xn2))) */
        lin_back(&P, l, SQZ_LORA_DOWN, a->dres, L->h, D, F, W->w_down, SQZ_TRAIN_NONE, a->dh, 0);
        tops_swiglu_back(nt, (size_t)(N * F), L->g, L->u, a->dh, a->dg, a->du);
        lin_back(&P, l, SQZ_LORA_GATE, a->dg, L->xn2, F, D, W->w_gate, SQZ_TRAIN_NONE, a->dxn, 0);
        lin_back(&P, l, SQZ_LORA_UP, a->du, L->xn2, F, D, W->w_up, SQZ_TRAIN_NONE, a->dxn, 1);
        memcpy(a->dr1, a->dres, (size_t)(N * D) * sizeof(float));
        tops_rmsnorm_back(nt, N, (int)D, L->r1, p + W->ffn_norm, L->rstd2, a->dxn, a->dr1, 1,
                          G(W->ffn_norm));
        /* attention: r1 = xin + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))) */
        lin_back(&P, l, SQZ_LORA_O, a->dr1, L->att, D, qd, W->wo, W->bo, a->datt, 0);
        tops_attention_back(nt, B, T, Hq, Hkv, hd, L->q, L->k, L->v, L->att_stats, a->datt, a->dq, a->dk, a->dv);
        tops_rope(nt, N, T, Hq, hd, a->cs, c->rope_interleaved, 1, a->dq);
        tops_rope(nt, N, T, Hkv, hd, a->cs, c->rope_interleaved, 1, a->dk);
        lin_back(&P, l, SQZ_LORA_Q, a->dq, L->xn1, qd, D, W->wq, W->bq, a->dxn, 0);
        lin_back(&P, l, SQZ_LORA_K, a->dk, L->xn1, kvd, D, W->wk, W->bk, a->dxn, 1);
        lin_back(&P, l, SQZ_LORA_V, a->dv, L->xn1, kvd, D, W->wv, W->bv, a->dxn, 1);
        memcpy(a->dres, a->dr1, (size_t)(N * D) * sizeof(float));
        tops_rmsnorm_back(nt, N, (int)D, L->xin, p + W->attn_norm, L->rstd1, a->dxn, a->dres, 1,
                          G(W->attn_norm));
    }
#undef G
    if (!grad) return;
    /* token embedding: rows scattered in token order */
    float *gE = grad + tp->tok_embd;
    for (int64_t n = 0; n < N; n++) {
        float *g = gE + (size_t)a->tokens[n] * D;
        const float *d = a->dres + n * D;
        for (int64_t i = 0; i < D; i++) g[i] += d[i];
    }
}
