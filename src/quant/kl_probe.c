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

/* Windows dealt round-robin (window w to rank w % size) and computed into arrays[a] (records
 * of per[a] bytes, window w's at w * per[a]): every rank gets every window's, a round of one
 * window per rank at a time (buffers of size records, not of the whole arrays). */
static sqz_status share_windows(sqz_ctx *ctx, const sqz_kl_split *sp, size_t n_win, char *const *arrays,
                                const size_t *per, int n_arrays) {
    const int N = sp->size;
    size_t most = 1;
    for (int a = 0; a < n_arrays; a++) most = per[a] > most ? per[a] : most;
    char *recv = malloc((size_t)N * most);
    uint64_t *sizes = malloc((size_t)N * sizeof *sizes);
    sqz_status st = recv && sizes ? SQZ_OK : sqz_fail(ctx, SQZ_ERR_NOMEM, "kl probe: out of memory");
    /* a rank that fails here leaves the others waiting in allgather, as a failure inside any
     * collective does: mpirun ends the job when that rank's process exits with an error */
    for (size_t w0 = 0; w0 < n_win && !st; w0 += (size_t)N)
        for (int a = 0; a < n_arrays && !st; a++) {
            for (int r = 0; r < N; r++) sizes[r] = w0 + (size_t)r < n_win ? per[a] : 0;
            const size_t mine = w0 + (size_t)sp->rank;
            st = sp->allgather(sp->user, mine < n_win ? arrays[a] + mine * per[a] : recv, sizes, recv);
            for (int r = 0; r < N && !st && w0 + (size_t)r < n_win; r++)
                if (r != sp->rank) memcpy(arrays[a] + (w0 + (size_t)r) * per[a], recv + (size_t)r * per[a], per[a]);
        }
    free(recv), free(sizes);
    return st;
}

sqz_status sqz_kl_probe_new(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                            int C, sqz_kl_probe **out) {
    return sqz_kl_probe_new_split(ctx, model, tokens, n_win, C, NULL, out);
}

sqz_status sqz_kl_probe_new_split(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                                  int C, const sqz_kl_split *split, sqz_kl_probe **out) {
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
    const int N = split && split->size > 1 ? split->size : 1, rank = N > 1 ? split->rank : 0;
    for (size_t w = (size_t)rank; w < n_win && !st; w += (size_t)N) {
        for (int l = 0; l <= L; l++) cache[l] = p->X[l] + w * (size_t)C * D;
        embed(model, tokens + w * (size_t)C, C, p->emb);
        st = run_from(p->s, model, 0, p->emb, C, p->base + w * (size_t)C * V, cache);
    }
    free(cache);
    if (!st && N > 1) { /* the other ranks' windows: every layer's states and the logits */
        char **arrays = malloc(((size_t)L + 2) * sizeof *arrays);
        size_t *per = malloc(((size_t)L + 2) * sizeof *per);
        if (!arrays || !per) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        for (int l = 0; !st && l <= L; l++) arrays[l] = (char *)p->X[l], per[l] = (size_t)C * D * sizeof(float);
        if (!st) arrays[L + 1] = (char *)p->base, per[L + 1] = (size_t)C * V * sizeof(float);
        if (!st) st = share_windows(ctx, split, n_win, arrays, per, L + 2);
        free(arrays), free(per);
    }
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

/* The mean of n window sums over their n C positions (summed in order: the bits of a split). */
static double mean_of(const double *sums, int n, int C) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += sums[i];
    return sum / ((double)n * C);
}

sqz_status sqz_kl_probe_ref_sums(sqz_kl_probe *p, const int *win, int n, double *sums) {
    if (!p->ref) return sqz_fail(p->ctx, SQZ_ERR_ARG, "kl probe: no reference set");
    for (int i = 0; i < n; i++) {
        if (win[i] < 0 || (size_t)win[i] >= p->n_win) return sqz_fail(p->ctx, SQZ_ERR_ARG, "kl probe: window %d", win[i]);
        sqz_status st = ref_window(p, (size_t)win[i]);
        if (st) return st;
        sums[i] = p->ref_kl[win[i]];
    }
    return SQZ_OK;
}

sqz_status sqz_kl_probe_ref_kl(sqz_kl_probe *p, const int *win, int n, double *kl) {
    *kl = 0;
    double *sums = malloc((size_t)(n > 0 ? n : 1) * sizeof *sums);
    if (!sums) return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "kl probe: out of memory");
    const sqz_status st = sqz_kl_probe_ref_sums(p, win, n, sums);
    if (!st) *kl = mean_of(sums, n, p->C);
    free(sums);
    return st;
}

sqz_status sqz_kl_probe_measure_windows(sqz_kl_probe *p, const sqz_model *changed, int l0, const int *win,
                                        int n, double *kl) {
    *kl = 0;
    double *sums = malloc((size_t)(n > 0 ? n : 1) * sizeof *sums);
    if (!sums) return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "kl probe: out of memory");
    const sqz_status st = sqz_kl_probe_window_sums(p, changed, l0, win, n, sums);
    if (!st) *kl = mean_of(sums, n, p->C);
    free(sums);
    return st;
}

sqz_status sqz_kl_probe_window_sums(sqz_kl_probe *p, const sqz_model *changed, int l0, const int *win, int n,
                                    double *sums) {
    const sqz_config *c = &p->model->cfg;
    const int D = c->dim, C = p->C;
    if (l0 < 0 || l0 > c->n_layers) return sqz_fail(p->ctx, SQZ_ERR_ARG, "kl probe: layer %d", l0);
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
        sums[i] = window_kl(p, w);
    }
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
