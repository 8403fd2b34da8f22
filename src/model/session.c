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
#include "kv/kv.h"
#include "model/model.h"
#include "model/session.h"

enum { MAX_BATCH = 512 };

static void team_free(sqz_session *s);

sqz_status sqz_session_new_kv(sqz_ctx *ctx, const sqz_model *m, int max_ctx, const char *kv_spec,
                              sqz_session **out) {
    *out = NULL;
    const sqz_config *c = &m->cfg;
    if (max_ctx <= 0) max_ctx = c->max_seq_len > 0 ? c->max_seq_len : 2048;
    if (max_ctx > (1 << 20)) return sqz_fail(ctx, SQZ_ERR_RANGE, "context %d too large", max_ctx);
    /* the views the kernels run (once per model; the model is otherwise read-only here) */
    sqz_status pst = sqz_model_prepare_run(ctx, (sqz_model *)m);
    if (pst) return pst;
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
    if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 ||
        !s->last_logits || !s->rope_cos || !s->rope_sin) {
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
    /* only the layers with attention have a cache (dropped sub-blocks: model.h) */
    s->kv_layer = malloc((size_t)c->n_layers * sizeof *s->kv_layer);
    if (!s->kv_layer) {
        sqz_session_free(s);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    int n_kv = 0;
    for (int l = 0; l < c->n_layers; l++) s->kv_layer[l] = sqz_layer_has_attn(&m->layers[l]) ? n_kv++ : -1;
    sqz_kv_shape shape = { n_kv > 0 ? n_kv : 1, c->n_heads, c->n_kv_heads, c->head_dim, max_ctx,
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
    free(s->kv_layer);
    team_free(s);
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
    /* A sub-block whose output matrix has no data is absent (dropped: sqz drop --attn/--mlp,
     * or a depth search's working copy, search/evopress.h): the residual stream passes it
     * unchanged, and a layer without attention stores no keys and values. */
    const int has_attn = sqz_layer_has_attn(w), has_ffn = sqz_layer_has_ffn(w);
    if (!has_attn) goto ffn;
    const int kl = s->kv_layer[l];
    if (kl < 0)
        return sqz_fail(s->ctx, SQZ_ERR_ARG, "layer %d: these weights have attention, the session's model does not", l);
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
    sqz_status st = s->kv->policy->store(s->kv->state, kl, s->pos, T, s->k, s->v);
    if (st) return sqz_fail(s->ctx, st, "KV cache policy %s failed to store", s->kv->policy->name);
    s->kv->policy->attend(s->kv->state, kl, s->pos, T, s->q, s->att, nt);
    if (capture) capture(user, l, SQZ_SITE_O, s->att, T, qd);
    if (last_site == SQZ_SITE_O) return SQZ_OK;
    sqz_matmul(&w->wo, s->att, T, s->xb, nt);
    add_bias(s->xb, &w->bo, T);
    add_rows(s->x, s->xb, T, D, nt);
ffn:
    if (!has_ffn) return SQZ_OK;
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
        sqz_status st = sqz_session_layer(s, &sqz_model_run_layers(m)[l], l, T, NULL, NULL);
        if (st) return st;
    }
    return SQZ_OK;
}

/* ---- decode of one token with a team of threads
 *
 * The whole token - every layer, the final norm and the output matrix - runs in one parallel
 * region. Threads take fixed shares of each matrix's rows and meet only where a step needs
 * another thread's results; the small steps (rmsnorm of a D vector, quantizing the activations
 * for the next matvec) are done by every thread into its own buffers, which costs less than the
 * barrier a `single` would add. Per layer:
 *   every thread: rmsnorm(x), quantize; its query heads, KV heads (q, k, v rows + bias + RoPE)
 *   [barrier, unless each thread's query heads are exactly its KV heads' groups]
 *   its KV heads: store + attention (the policy's store_attend_heads), and
 *     quantizing its part of the attention output for wo (part_ok)          -> barrier
 *   its rows of wo; x += them (its rows only)                                -> barrier
 *   rmsnorm(x), quantize; its rows of gate and up (the same range) + SwiGLU,
 *     and quantizing its part of hb for down                                 -> barrier
 *   its rows of down; x += them                                              -> barrier
 * (A matrix that writes its outputs permuted, mixllm's, adds a barrier right after it.)
 * A KV policy without store_attend_heads ends the region before attention; store and attend
 * run as in the batch path and a new region continues with wo. A dropped sub-block (model.h)
 * is skipped with its barriers: no q/k/v, store, attention or wo without attention, no
 * gate/up/down without MLP. */

typedef struct sqz_team_buf {
    float *xn;   /* [D] the normed residual */
    char *xq[3]; /* an input prepared for up to three matrices (s->xq_bytes each) */
} sqz_team_buf;

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Scratch for nt threads (kept across tokens; made again when the thread count changes).
 * Each thread's block is cache-line aligned, so threads never share a line. */
static sqz_status team_reserve(sqz_session *s, int nt) {
    if (s->n_team == nt) return SQZ_OK;
    team_free(s);
    s->team = calloc((size_t)nt, sizeof *s->team);
    s->team_xq = aligned_alloc(64, 2 * round64(s->xq_bytes));
    if (!s->team || !s->team_xq || sqz_spin_barrier_init(&s->team_sync, nt))
        return sqz_fail(s->ctx, SQZ_ERR_NOMEM, "out of memory for decode scratch");
    const size_t xn = round64((size_t)s->model->cfg.dim * sizeof(float)), xq = round64(s->xq_bytes);
    for (int i = 0; i < nt; i++) {
        char *p = aligned_alloc(64, xn + 3 * xq);
        if (!p) return sqz_fail(s->ctx, SQZ_ERR_NOMEM, "out of memory for decode scratch");
        s->team[i].xn = (float *)p;
        for (int j = 0; j < 3; j++) s->team[i].xq[j] = p + xn + (size_t)j * xq;
        s->n_team = i + 1;
    }
    return SQZ_OK;
}

static void team_free(sqz_session *s) {
    for (int i = 0; i < s->n_team; i++) free(s->team[i].xn);
    free(s->team);
    free(s->team_xq);
    s->team = NULL;
    s->team_xq = NULL;
    s->n_team = 0;
    sqz_spin_barrier_free(&s->team_sync);
}

/* This thread's share [*r0, *r1) of n items in a team of nth, in units of `unit` items (a
 * share that starts on a multiple of the matvec kernels' row groups keeps them whole). */
static void share(int64_t n, int64_t unit, int tid, int nth, int64_t *r0, int64_t *r1) {
    const int64_t units = (n + unit - 1) / unit;
    *r0 = units * tid / nth * unit;
    *r1 = units * (tid + 1) / nth * unit;
    if (*r0 > n) *r0 = n;
    if (*r1 > n) *r1 = n;
}

enum { ROW_UNIT = 16 }; /* rows per unit of a matrix share (matmul.c's row blocks) */

/* x prepared for each of the n matrices w[i] in this thread's buffers; xq[i] points at w[i]'s
 * (matrices of one type share one). */
static void team_prepare(const sqz_tensor *const *w, int n, const float *x, const sqz_team_buf *b,
                         const void **xq) {
    for (int i = 0; i < n; i++) {
        xq[i] = NULL;
        for (int j = 0; j < i && !xq[i]; j++)
            if (w[j]->type == w[i]->type) xq[i] = xq[j];
        if (!xq[i]) {
            sqz_act_quantize(w[i]->type, x, b->xq[i], w[i]->cols);
            xq[i] = b->xq[i];
        }
    }
}

/* An input that the team quantizes by parts: each thread the elements it computed itself, into
 * one shared buffer that everyone reads after the next barrier - instead of every thread
 * reading all of x (half of it from the other cores' caches) and quantizing all of it. Possible
 * when w's activations come in blocks (not mixllm's) and every thread's part, share(n, unit),
 * starts on a block; every thread asks the same question, so all or none take this way. */
static int part_ok(const sqz_tensor *w, int64_t n, int64_t unit, int nth) {
    if (w->type == SQZ_TYPE_MIXLLM || n != w->cols || !sqz_act_bytes(w->type, w->cols)) return 0;
    const int64_t bs = sqz_type_get(sqz_act_type(w->type))->block_size;
    for (int t = 0; t < nth; t++) {
        int64_t a, b;
        share(n, unit, t, nth, &a, &b);
        if (a % bs) return 0;
    }
    return n % bs == 0;
}

/* x[a, b) of w's input quantized into its place in the shared buffer xq */
static void quantize_part(const sqz_tensor *w, const float *x, int64_t a, int64_t b, char *xq) {
    if (b > a)
        sqz_act_quantize(w->type, x + a, xq + sqz_type_row_size(sqz_act_type(w->type), a), b - a);
}

/* y[r0..r1) += b[r0..r1) (no bias: nothing) */
static void add_bias_rows(float *y, const sqz_tensor *b, int64_t r0, int64_t r1) {
    if (!b->data) return;
    const float *bv = b->data;
    for (int64_t i = r0; i < r1; i++) y[i] += bv[i];
}

/* The thread's query heads [h0, h1) and KV heads [g0, g1). When Hkv is a multiple of the team,
 * the query heads are exactly the KV heads' groups (Hq * t / n = group * (Hkv * t / n)). */
typedef struct team_heads {
    int64_t h0, h1, g0, g1;
} team_heads;

static team_heads heads_of(const sqz_config *c, int tid, int nth) {
    team_heads th;
    share(c->n_heads, 1, tid, nth, &th.h0, &th.h1);
    share(c->n_kv_heads, 1, tid, nth, &th.g0, &th.g1);
    return th;
}

/* Whether q, k and v come out in place (sqz_matvec_rows_in_place): each thread then has
 * exactly its own heads' rows after its matvecs. */
static int qkv_in_place(const sqz_layer_weights *w) {
    return sqz_matvec_rows_in_place(&w->wq) && sqz_matvec_rows_in_place(&w->wk) &&
           sqz_matvec_rows_in_place(&w->wv);
}

/* Where the team's threads meet (instead of `omp barrier`: core/spin_barrier.h says why). */
static void team_sync(sqz_session *s) {
    sqz_spin_barrier_wait(&s->team_sync, omp_get_thread_num(), omp_get_num_threads());
}

/* Meet the other threads when w wrote outputs outside this thread's rows (see
 * sqz_matvec_rows_in_place); every thread tests the same w, so all or none wait. */
static void sync_unless_in_place(sqz_session *s, const sqz_tensor *w) {
    if (!sqz_matvec_rows_in_place(w)) team_sync(s);
}

/* Attention's inputs for this thread's heads: q, k, v rows of them, with bias and RoPE. */
static void team_qkv(sqz_session *s, const sqz_layer_weights *w, const sqz_team_buf *b,
                     const team_heads *th) {
    const sqz_config *c = &s->model->cfg;
    const int hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    sqz_rmsnorm(b->xn, s->x, w->attn_norm.data, 1, c->dim, c->norm_eps);
    const sqz_tensor *m[3] = { &w->wq, &w->wk, &w->wv };
    const void *xq[3];
    team_prepare(m, 3, b->xn, b, xq);
    const int64_t q0 = th->h0 * hd, q1 = th->h1 * hd, k0 = th->g0 * hd, k1 = th->g1 * hd;
    sqz_matvec_rows(&w->wq, b->xn, xq[0], s->q, q0, q1);
    sqz_matvec_rows(&w->wk, b->xn, xq[1], s->k, k0, k1);
    sqz_matvec_rows(&w->wv, b->xn, xq[2], s->v, k0, k1);
    if (!qkv_in_place(w)) team_sync(s); /* other threads wrote some of this thread's heads */
    add_bias_rows(s->q, &w->bq, q0, q1);
    add_bias_rows(s->k, &w->bk, k0, k1);
    add_bias_rows(s->v, &w->bv, k0, k1);
    sqz_rope(s->q + q0, 1, qd, (int)(th->h1 - th->h0), hd, s->pos, s->rope_cos, s->rope_sin,
             c->rope_interleaved);
    sqz_rope(s->k + k0, 1, kvd, (int)(th->g1 - th->g0), hd, s->pos, s->rope_cos, s->rope_sin,
             c->rope_interleaved);
}

/* y = w . x for this thread's share of w's rows; x: the whole input, shared. */
static void team_matvec(const sqz_tensor *w, const float *x, const void *xq, float *y, int tid,
                        int nth) {
    int64_t r0, r1;
    share(w->rows, ROW_UNIT, tid, nth, &r0, &r1);
    sqz_matvec_rows(w, x, xq, y, r0, r1);
}

/* Everything of a layer after attention (s->att complete): wo and the feed-forward block,
 * x updated in place; ends at a barrier (the next step reads all of x). */
static void team_after_attention(sqz_session *s, const sqz_layer_weights *w,
                                 const sqz_team_buf *b, int tid, int nth, int att_parts) {
    const sqz_config *c = &s->model->cfg;
    const int64_t D = c->dim, F = c->hidden_dim;
    int64_t r0, r1, f0, f1;
    share(D, ROW_UNIT, tid, nth, &r0, &r1);
    share(F, ROW_UNIT, tid, nth, &f0, &f1);
    const void *xq[2];
    if (sqz_layer_has_attn(w)) { /* (every thread tests the same w: all or none meet below) */
        /* wo: this thread's rows of the residual (bias first, as the batch path adds it) */
        const sqz_tensor *wo[1] = { &w->wo };
        if (att_parts) xq[0] = s->team_xq; /* quantized by parts before the barrier */
        else team_prepare(wo, 1, s->att, b, xq);
        sqz_matvec_rows(&w->wo, s->att, xq[0], s->xb, r0, r1);
        sync_unless_in_place(s, &w->wo);
        add_bias_rows(s->xb, &w->bo, r0, r1);
        for (int64_t i = r0; i < r1; i++) s->x[i] += s->xb[i];
        team_sync(s);
    }
    if (!sqz_layer_has_ffn(w)) return; /* a dropped MLP: x passes unchanged */
    /* gate and up: the same rows of both, so SwiGLU of them needs no other thread */
    sqz_rmsnorm(b->xn, s->x, w->ffn_norm.data, 1, (int)D, c->norm_eps);
    const sqz_tensor *gu[2] = { &w->w_gate, &w->w_up };
    team_prepare(gu, 2, b->xn, b, xq);
    sqz_matvec_rows(&w->w_gate, b->xn, xq[0], s->hb, f0, f1);
    sqz_matvec_rows(&w->w_up, b->xn, xq[1], s->hb2, f0, f1);
    if (!sqz_matvec_rows_in_place(&w->w_gate) || !sqz_matvec_rows_in_place(&w->w_up)) team_sync(s);
    sqz_swiglu(s->hb + f0, s->hb2 + f0, f1 - f0);
    const int hb_parts = part_ok(&w->w_down, F, ROW_UNIT, nth);
    char *xq_down = s->team_xq + round64(s->xq_bytes);
    if (hb_parts) quantize_part(&w->w_down, s->hb, f0, f1, xq_down);
    team_sync(s);
    const sqz_tensor *dn[1] = { &w->w_down };
    if (hb_parts) xq[0] = xq_down;
    else team_prepare(dn, 1, s->hb, b, xq);
    sqz_matvec_rows(&w->w_down, s->hb, xq[0], s->xb, r0, r1);
    sync_unless_in_place(s, &w->w_down);
    for (int64_t i = r0; i < r1; i++) s->x[i] += s->xb[i];
    team_sync(s);
}

/* Where a region of the team stopped: at layer `layer`'s attention (a policy without
 * store_attend_heads; q, k, v are ready), or layer == n_layers when the token is done. */
typedef struct team_stop {
    int layer;
    sqz_status st;
} team_stop;

/* One thread's part of layers l0.. (from l0's wo on when after_attention), then of the output
 * matrix into logits (NULL: none). Called by every thread of the region. */
static void team_run(sqz_session *s, int l0, int after_attention, float *logits, team_stop *stop) {
    const sqz_model *m = s->model;
    const sqz_config *c = &m->cfg;
    const sqz_kv_policy *pol = s->kv->policy;
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    const sqz_team_buf *b = &s->team[tid];
    const team_heads th = heads_of(c, tid, nth);
    for (int l = l0; l < c->n_layers; l++) {
        const sqz_layer_weights *w = &sqz_model_run_layers(m)[l];
        /* each thread attends with exactly the heads it computed: no barrier before attention */
        const int own_heads = c->n_kv_heads % nth == 0 && qkv_in_place(w);
        /* the attention output of this thread's KV heads is its own: wo's input by parts */
        const int group = c->n_heads / c->n_kv_heads, gd = group * c->head_dim;
        int att_parts = 0;
        if (!(l == l0 && after_attention) && sqz_layer_has_attn(w)) { /* (a dropped attention: none) */
            team_qkv(s, w, b, &th);
            if (!pol->store_attend_heads) {
                if (tid == 0) stop->layer = l; /* the region's end is the barrier */
                return;
            }
            if (!own_heads) team_sync(s);
            if (th.g0 < th.g1) {
                sqz_status st = pol->store_attend_heads(s->kv->state, s->kv_layer[l], s->pos, s->k, s->v, s->q,
                                                        s->att, (int)th.g0, (int)th.g1);
                if (st) {
#pragma omp critical(sqz_team_status)
                    stop->st = st;
                }
            }
            att_parts = part_ok(&w->wo, (int64_t)c->n_heads * c->head_dim, gd, nth);
            if (att_parts) quantize_part(&w->wo, s->att, th.g0 * gd, th.g1 * gd, s->team_xq);
            team_sync(s);
        }
        team_after_attention(s, w, b, tid, nth, att_parts);
    }
    if (tid == 0) stop->layer = c->n_layers;
    if (!logits) return;
    sqz_rmsnorm(b->xn, s->x, m->out_norm.data, 1, c->dim, c->norm_eps);
    const sqz_tensor *out[1] = { sqz_model_run_output(m) };
    const void *xq[1];
    team_prepare(out, 1, b->xn, b, xq);
    team_matvec(sqz_model_run_output(m), b->xn, xq[0], logits, tid, nth);
}

/* One token at s->pos through every layer with the context's threads; logits (NULL: none) gets
 * the output. Leaves the final hidden state in s->x, as forward_batch does. */
static sqz_status forward_token_team(sqz_session *s, int32_t token, float *logits) {
    const sqz_model *m = s->model;
    const int nt = s->ctx->n_threads;
    sqz_status st = team_reserve(s, nt);
    if (st) return st;
    sqz_tensor_row_f32(&m->tok_embd, token, s->x);
    team_stop stop = { 0, SQZ_OK };
    int after_attention = 0;
    for (;;) {
        const int l0 = stop.layer;
        sqz_spin_barrier_reset(&s->team_sync);
#pragma omp parallel num_threads(nt)
        team_run(s, l0, after_attention, logits, &stop);
        if (stop.st) break;
        if (stop.layer == m->cfg.n_layers) break;
        /* the policy's own store and (threaded) attend, between two regions */
        const sqz_kv *kv = s->kv;
        const int kl = s->kv_layer[stop.layer]; /* (the region stops only at layers with attention) */
        st = kv->policy->store(kv->state, kl, s->pos, 1, s->k, s->v);
        if (st) return sqz_fail(s->ctx, st, "KV cache policy %s failed to store", kv->policy->name);
        kv->policy->attend(kv->state, kl, s->pos, 1, s->q, s->att, nt);
        after_attention = 1;
    }
    if (stop.st)
        return sqz_fail(s->ctx, stop.st, "KV cache policy %s failed to store", s->kv->policy->name);
    return SQZ_OK;
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
        /* one token with several threads: the team path (one parallel region), which also
         * computes the logits when they are wanted */
        if (T == 1 && s->ctx->n_threads > 1) {
            float *out = !logits ? NULL : logits_all ? logits + (size_t)done * V
                         : done + 1 == n ? logits : NULL;
            sqz_status st = forward_token_team(s, tokens[done], out);
            if (st) return st;
            s->pos++;
            done++;
            continue;
        }
        sqz_status st = forward_batch(s, tokens + done, T);
        if (st) return st;
        s->pos += T;
        if (logits && logits_all) {
            rmsnorm_rows(s->xb, s->x, m->out_norm.data, T, D, c->norm_eps, s->ctx->n_threads);
            sqz_matmul(sqz_model_run_output(m), s->xb, T, logits + (size_t)done * V, s->ctx->n_threads);
        } else if (logits && done + T == n) {
            sqz_rmsnorm(s->xb, s->x + (size_t)(T - 1) * D, m->out_norm.data, 1, D, c->norm_eps);
            sqz_matvec(sqz_model_run_output(m), s->xb, logits, s->ctx->n_threads);
        }
        done += T;
    }
    return SQZ_OK;
}

/* ---- the KV cache's bytes (include/sqz.h) */

size_t sqz_session_kv_bytes(const sqz_session *s) {
    return s && s->kv ? s->kv->policy->bytes(s->kv->state) : 0;
}
