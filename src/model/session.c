/* session.c - the forward pass. A session owns one sequence's KV cache and the scratch
 * buffers for a batch of up to max_batch tokens; sqz_session_eval runs any number of tokens by
 * cutting them into such batches (prefill as matrix-matrix products, decode as matvecs).
 *
 * Glossary: T tokens in the batch, D dim, F hidden_dim, Hq/Hkv heads, hd head_dim, V vocab.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "model/kv.h"
#include "model/model.h"
#include "model/session.h"

enum { MAX_BATCH = 512 };

sqz_status sqz_session_new_kv(sqz_ctx *ctx, const sqz_model *m, int max_ctx, const char *kv_spec,
                              sqz_session **out) {
    *out = NULL;
    const sqz_config *c = &m->cfg;
    if (max_ctx <= 0) max_ctx = c->max_seq_len > 0 ? c->max_seq_len : 2048;
    if (max_ctx > (1 << 20)) return sqz_fail(ctx, SQZ_ERR_RANGE, "context %d too large", max_ctx);
    sqz_session *s = calloc(1, sizeof *s);
    if (!s) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    s->ctx = ctx;
    s->model = m;
    s->max_ctx = max_ctx;
    s->max_batch = max_ctx < MAX_BATCH ? max_ctx : MAX_BATCH;
    const size_t B = (size_t)s->max_batch, D = (size_t)c->dim, F = (size_t)c->hidden_dim;
    const size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    const size_t half = (size_t)c->head_dim / 2;
    s->x = malloc(B * D * sizeof(float));
    s->xb = malloc(B * (D > qd ? D : qd) * sizeof(float));
    s->q = malloc(B * qd * sizeof(float));
    s->k = malloc(B * kvd * sizeof(float));
    s->v = malloc(B * kvd * sizeof(float));
    s->att = malloc(B * qd * sizeof(float));
    s->hb = malloc(B * F * sizeof(float));
    s->hb2 = malloc(B * F * sizeof(float));
    s->last_logits = malloc((size_t)c->vocab_size * sizeof(float));
    s->rope_cos = malloc((size_t)max_ctx * half * sizeof(float));
    s->rope_sin = malloc((size_t)max_ctx * half * sizeof(float));
    /* room for the largest input row (D, Hq*hd or F) in any activation format (<= f32) */
    s->xq_bytes = (F > D ? F : D) > qd ? (F > D ? F : D) * sizeof(float) : qd * sizeof(float);
    for (int i = 0; i < 3; i++) s->xq[i] = malloc(s->xq_bytes);
    if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 ||
        !s->last_logits || !s->rope_cos || !s->rope_sin || !s->xq[0] || !s->xq[1] || !s->xq[2]) {
        sqz_session_free(s);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for a session of %d positions", max_ctx);
    }
    /* RoPE angles computed as the reference implementations do (f32 inverse frequencies,
     * f32 product), so positions far out agree with them too. */
    for (size_t i = 0; i < half; i++) {
        const float inv = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        for (int p = 0; p < max_ctx; p++) {
            const float a = (float)p * inv;
            s->rope_cos[(size_t)p * half + i] = (float)cos((double)a);
            s->rope_sin[(size_t)p * half + i] = (float)sin((double)a);
        }
    }
    sqz_kv_shape shape = { c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, max_ctx,
                           c->rope_interleaved };
    sqz_status st = sqz_kv_new(ctx, &shape, kv_spec, &s->kv);
    if (st) {
        sqz_session_free(s);
        return st;
    }
    *out = s;
    return SQZ_OK;
}

sqz_status sqz_session_new(sqz_ctx *ctx, const sqz_model *m, int max_ctx, sqz_session **out) {
    return sqz_session_new_kv(ctx, m, max_ctx, NULL, out);
}

void sqz_session_free(sqz_session *s) {
    if (!s) return;
    sqz_kv_free(s->kv);
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->hb);
    free(s->hb2);
    free(s->last_logits);
    free(s->rope_cos);
    free(s->rope_sin);
    for (int i = 0; i < 3; i++) free(s->xq[i]);
    free(s);
}

void sqz_session_reset(sqz_session *s) {
    s->pos = 0;
    s->kv->policy->reset(s->kv->state);
}

int sqz_session_pos(const sqz_session *s) { return s->pos; }

/* Row-wise ops over a batch: threaded when the batch is large enough to pay for it (prefill);
 * decode (T = 1) stays on the calling thread. */
static void rmsnorm_rows(float *out, const float *x, const float *w, int T, int D, float eps, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && T >= 32)
    for (int t = 0; t < T; t++) sqz_rmsnorm(out + (size_t)t * D, x + (size_t)t * D, w, 1, D, eps);
}

static void swiglu_rows(float *gate, const float *up, int T, int F, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && T >= 32)
    for (int t = 0; t < T; t++) sqz_swiglu(gate + (size_t)t * F, up + (size_t)t * F, F);
}

static void add_rows(float *x, const float *y, int T, int D, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && T >= 32)
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) x[(size_t)t * D + i] += y[(size_t)t * D + i];
}

static void rope_rows(float *x, int T, int stride, int n_heads, int hd, int pos0, const float *cs,
                      const float *sn, int interleaved, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && T >= 32)
    for (int t = 0; t < T; t++)
        sqz_rope(x + (size_t)t * stride, 1, stride, n_heads, hd, pos0 + t, cs, sn, interleaved);
}

static void add_bias(float *y, const sqz_tensor *b, int T) {
    if (!b->data) return;
    const float *bv = b->data;
    for (int t = 0; t < T; t++)
        for (int64_t i = 0; i < b->cols; i++) y[(size_t)t * b->cols + i] += bv[i];
}

sqz_status sqz_session_layer(sqz_session *s, const sqz_layer_weights *w, int l, int T,
                             sqz_capture_fn capture, void *user) {
    return sqz_session_layer_until(s, w, l, T, capture, user, SQZ_N_SITES);
}

sqz_status sqz_session_layer_until(sqz_session *s, const sqz_layer_weights *w, int l, int T,
                                   sqz_capture_fn capture, void *user, int last_site) {
    const sqz_config *c = &s->model->cfg;
    const int nt = s->ctx->n_threads;
    const int D = c->dim, F = c->hidden_dim, hd = c->head_dim;
    const int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    /* attention */
    rmsnorm_rows(s->xb, s->x, w->attn_norm.data, T, D, c->norm_eps, nt);
    if (capture) capture(user, l, SQZ_SITE_QKV, s->xb, T, D);
    if (last_site == SQZ_SITE_QKV) return SQZ_OK;
    sqz_matmul(&w->wq, s->xb, T, s->q, nt);
    sqz_matmul(&w->wk, s->xb, T, s->k, nt);
    sqz_matmul(&w->wv, s->xb, T, s->v, nt);
    add_bias(s->q, &w->bq, T);
    add_bias(s->k, &w->bk, T);
    add_bias(s->v, &w->bv, T);
    rope_rows(s->q, T, qd, c->n_heads, hd, s->pos, s->rope_cos, s->rope_sin, c->rope_interleaved, nt);
    rope_rows(s->k, T, kvd, c->n_kv_heads, hd, s->pos, s->rope_cos, s->rope_sin, c->rope_interleaved,
              nt);
    if (capture) {
        capture(user, l, SQZ_SITE_Q_ROPE, s->q, T, qd);
        capture(user, l, SQZ_SITE_K_ROPE, s->k, T, kvd);
    }
    sqz_status st = s->kv->policy->store(s->kv->state, l, s->pos, T, s->k, s->v);
    if (st) return sqz_fail(s->ctx, st, "KV cache policy %s failed to store", s->kv->policy->name);
    s->kv->policy->attend(s->kv->state, l, s->pos, T, s->q, s->att, nt);
    if (capture) capture(user, l, SQZ_SITE_O, s->att, T, qd);
    if (last_site == SQZ_SITE_O) return SQZ_OK;
    sqz_matmul(&w->wo, s->att, T, s->xb, nt);
    add_bias(s->xb, &w->bo, T);
    add_rows(s->x, s->xb, T, D, nt);
    /* SwiGLU feed-forward */
    rmsnorm_rows(s->xb, s->x, w->ffn_norm.data, T, D, c->norm_eps, nt);
    if (capture) capture(user, l, SQZ_SITE_GATE_UP, s->xb, T, D);
    if (last_site == SQZ_SITE_GATE_UP) return SQZ_OK;
    sqz_matmul(&w->w_gate, s->xb, T, s->hb, nt);
    sqz_matmul(&w->w_up, s->xb, T, s->hb2, nt);
    swiglu_rows(s->hb, s->hb2, T, F, nt);
    if (capture) capture(user, l, SQZ_SITE_DOWN, s->hb, T, F);
    if (last_site == SQZ_SITE_DOWN) return SQZ_OK;
    sqz_matmul(&w->w_down, s->hb, T, s->xb, nt);
    add_rows(s->x, s->xb, T, D, nt);
    return SQZ_OK;
}

/* One batch of T tokens at positions s->pos.. through every layer; leaves the final hidden
 * states (before the output norm) in s->x. */
static sqz_status forward_batch(sqz_session *s, const int32_t *tokens, int T) {
    const sqz_model *m = s->model;
    const int D = m->cfg.dim;
    for (int t = 0; t < T; t++) sqz_tensor_row_f32(&m->tok_embd, tokens[t], s->x + (size_t)t * D);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        sqz_status st = sqz_session_layer(s, &m->layers[l], l, T, NULL, NULL);
        if (st) return st;
    }
    return SQZ_OK;
}

/* This thread's share [*r0, *r1) of n rows in a team of nth. */
static void share(int64_t n, int tid, int nth, int64_t *r0, int64_t *r1) {
    *r0 = n * tid / nth;
    *r1 = n * (tid + 1) / nth;
}

/* y = w . x for this thread's rows of each of up to three matrices that read the same x;
 * s->xq[i] holds x prepared for w[i]. */
static void team_matvecs(const sqz_session *s, const sqz_tensor *const *w, float *const *y, int n,
                         const float *x, int tid, int nth) {
    for (int i = 0; i < n; i++) {
        int64_t r0, r1;
        share(w[i]->rows, tid, nth, &r0, &r1);
        sqz_matvec_rows(w[i], x, s->xq[i], y[i], r0, r1);
    }
}

static void prepare(const sqz_session *s, const sqz_tensor *const *w, int n, const float *x) {
    for (int i = 0; i < n; i++) sqz_act_quantize(w[i]->type, x, s->xq[i], w[i]->cols);
}

/* Decode of one token with a team of threads: a layer is two parallel regions (attention's
 * own in between) instead of one per matrix; inside a region threads take fixed shares of
 * each matrix's rows and meet at barriers, and the small serial steps run in `single`. */
static sqz_status forward_token_team(sqz_session *s, int32_t token) {
    const sqz_model *m = s->model;
    const sqz_config *c = &m->cfg;
    const int nt = s->ctx->n_threads;
    const int D = c->dim, F = c->hidden_dim, hd = c->head_dim;
    const int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    sqz_status st = SQZ_OK;
    sqz_tensor_row_f32(&m->tok_embd, token, s->x);
    for (int l = 0; l < c->n_layers && st == SQZ_OK; l++) {
        const sqz_layer_weights *w = &m->layers[l];
        const sqz_tensor *qkv[3] = { &w->wq, &w->wk, &w->wv };
        float *qkv_out[3] = { s->q, s->k, s->v };
#pragma omp parallel num_threads(nt)
        {
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#pragma omp single
            {
                sqz_rmsnorm(s->xb, s->x, w->attn_norm.data, 1, D, c->norm_eps);
                prepare(s, qkv, 3, s->xb);
            }
            team_matvecs(s, qkv, qkv_out, 3, s->xb, tid, nth);
#pragma omp barrier
#pragma omp single
            {
                add_bias(s->q, &w->bq, 1);
                add_bias(s->k, &w->bk, 1);
                add_bias(s->v, &w->bv, 1);
                sqz_rope(s->q, 1, qd, c->n_heads, hd, s->pos, s->rope_cos, s->rope_sin, c->rope_interleaved);
                sqz_rope(s->k, 1, kvd, c->n_kv_heads, hd, s->pos, s->rope_cos, s->rope_sin, c->rope_interleaved);
                st = s->kv->policy->store(s->kv->state, l, s->pos, 1, s->k, s->v);
            }
        }
        if (st) return sqz_fail(s->ctx, st, "KV cache policy %s failed to store", s->kv->policy->name);
        s->kv->policy->attend(s->kv->state, l, s->pos, 1, s->q, s->att, nt);
        const sqz_tensor *wo[1] = { &w->wo }, *gu[2] = { &w->w_gate, &w->w_up }, *dn[1] = { &w->w_down };
        float *wo_out[1] = { s->xb }, *gu_out[2] = { s->hb, s->hb2 }, *dn_out[1] = { s->xb };
#pragma omp parallel num_threads(nt)
        {
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#pragma omp single
            prepare(s, wo, 1, s->att);
            team_matvecs(s, wo, wo_out, 1, s->att, tid, nth);
#pragma omp barrier
#pragma omp single
            {
                add_bias(s->xb, &w->bo, 1);
                for (int i = 0; i < D; i++) s->x[i] += s->xb[i];
                sqz_rmsnorm(s->xb, s->x, w->ffn_norm.data, 1, D, c->norm_eps);
                prepare(s, gu, 2, s->xb);
            }
            team_matvecs(s, gu, gu_out, 2, s->xb, tid, nth);
#pragma omp barrier
#pragma omp single
            {
                sqz_swiglu(s->hb, s->hb2, F);
                prepare(s, dn, 1, s->hb);
            }
            team_matvecs(s, dn, dn_out, 1, s->hb, tid, nth);
#pragma omp barrier
#pragma omp single
            for (int i = 0; i < D; i++) s->x[i] += s->xb[i];
        }
    }
    return st;
}

sqz_status sqz_session_eval(sqz_session *s, const int32_t *tokens, int n, float *logits,
                            int logits_all) {
    const sqz_model *m = s->model;
    const sqz_config *c = &m->cfg;
    if (n <= 0) return sqz_fail(s->ctx, SQZ_ERR_ARG, "no tokens to evaluate");
    if (s->pos + n > s->max_ctx)
        return sqz_fail(s->ctx, SQZ_ERR_RANGE, "context full: %d + %d tokens exceed %d positions",
                        s->pos, n, s->max_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return sqz_fail(s->ctx, SQZ_ERR_RANGE, "token id %d outside the vocabulary (0..%d)",
                            tokens[i], c->vocab_size - 1);
    const int D = c->dim, V = c->vocab_size;
    for (int done = 0; done < n;) {
        const int T = n - done < s->max_batch ? n - done : s->max_batch;
        /* one token with several threads: the team path (fewer parallel regions) */
        sqz_status st = T == 1 && s->ctx->n_threads > 1 ? forward_token_team(s, tokens[done])
                                                        : forward_batch(s, tokens + done, T);
        if (st) return st;
        s->pos += T;
        if (logits && logits_all) {
            rmsnorm_rows(s->xb, s->x, m->out_norm.data, T, D, c->norm_eps, s->ctx->n_threads);
            sqz_matmul(&m->output, s->xb, T, logits + (size_t)done * V, s->ctx->n_threads);
        } else if (logits && done + T == n) {
            sqz_rmsnorm(s->xb, s->x + (size_t)(T - 1) * D, m->out_norm.data, 1, D, c->norm_eps);
            sqz_matvec(&m->output, s->xb, logits, s->ctx->n_threads);
        }
        done += T;
    }
    return SQZ_OK;
}
