/* kv_evict.c - KV cache policies that evict positions (baselines for the compressed caches):
 *
 *  streaming  StreamingLLM (Xiao et al. 2024, "Efficient Streaming Language Models with
 *             Attention Sinks"): keep the first sink=4 positions (the attention sinks) and the
 *             last window=252.
 *  h2o        H2O (Zhang et al. 2023, "H2O: Heavy-Hitter Oracle for Efficient Generative
 *             Inference of Large Language Models"): every held position accumulates the
 *             attention probability it receives (summed over the queries and the query heads of
 *             its KV head); when more than budget=256 are held, keep the recent=budget/2 most
 *             recent and the highest-scoring of the others.
 *  snapkv     SnapKV (Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before
 *             Generation"): once, after the prompt (a multi-token step) leaves more than
 *             budget=128 positions, score each prompt position by the attention of the last
 *             obs=32 queries (summed over the KV head's query heads), smooth with an average
 *             pool of pool=7 positions, and keep per KV head the budget-obs best plus the obs
 *             window; later tokens are all kept (the paper compresses the prompt only).
 *
 * Each (layer, KV head) holds its own list of positions in increasing order with their f32 key
 * and value rows, so h2o and snapkv keep different positions per head. Keys were rotated (RoPE)
 * before they were stored, so an evicted position simply disappears, as in those papers' code.
 * Eviction happens at the end of attend: the queries of a step see every position held before
 * it plus the ones it stored (a batched prompt thus gets exact causal attention; in particular
 * streaming does not mask the prompt to its window).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/kv.h"
#include "model/kv_params.h"

enum { EV_STREAMING, EV_H2O, EV_SNAPKV };

typedef struct ev_head {
    float *k, *v;  /* [cap][hd] */
    int *pos;      /* [cap], increasing */
    float *score;  /* [cap] accumulated attention (h2o only) */
    int n;         /* held */
} ev_head;

typedef struct ev {
    sqz_ctx *ctx;
    int kind;
    sqz_kv_shape shape;
    int sink, window, budget, recent, obs, pool;
    int cap;
    ev_head *heads;   /* [L][Hkv] */
    int *compressed;  /* [L] snapkv: the prompt was compressed */
} ev;

static void destroy(void *state) {
    ev *c = state;
    if (!c) return;
    if (c->heads)
        for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++) {
            free(c->heads[i].k), free(c->heads[i].v), free(c->heads[i].pos);
            free(c->heads[i].score);
        }
    free(c->heads);
    free(c->compressed);
    free(c);
}

static sqz_status create_kind(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                              void **state, int kind) {
    int sink = 4, window = 252, budget = kind == EV_SNAPKV ? 128 : 256, recent = -1, obs = 32,
        pool = 7;
    sqz_status st;
    if (kind == EV_STREAMING) {
        const sqz_kv_param p[] = { { "sink", &sink, 0, 1 << 20 }, { "window", &window, 1, 1 << 20 } };
        st = sqz_kv_parse_params(ctx, "streaming", params, p, 2);
    } else if (kind == EV_H2O) {
        const sqz_kv_param p[] = { { "budget", &budget, 1, 1 << 20 },
                                   { "recent", &recent, 0, 1 << 20 } };
        st = sqz_kv_parse_params(ctx, "h2o", params, p, 2);
        if (!st && recent < 0) recent = budget / 2;
        if (!st && recent > budget)
            st = sqz_fail(ctx, SQZ_ERR_ARG,
                          "KV policy h2o: parameter 'recent' = %d exceeds budget = %d", recent,
                          budget);
    } else {
        const sqz_kv_param p[] = { { "budget", &budget, 1, 1 << 20 }, { "obs", &obs, 1, 1 << 20 },
                                   { "pool", &pool, 1, 255 } };
        st = sqz_kv_parse_params(ctx, "snapkv", params, p, 3);
        if (!st && obs > budget)
            st = sqz_fail(ctx, SQZ_ERR_ARG,
                          "KV policy snapkv: parameter 'obs' = %d exceeds budget = %d", obs,
                          budget);
        if (!st && pool % 2 == 0)
            st = sqz_fail(ctx, SQZ_ERR_ARG, "KV policy snapkv: parameter 'pool' = %d must be odd",
                          pool);
    }
    if (st) return st;
    ev *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->ctx = ctx, c->kind = kind, c->shape = *shape;
    c->sink = sink, c->window = window, c->budget = budget, c->recent = recent, c->obs = obs;
    c->pool = pool;
    /* a step may store up to max_pos positions before evicting */
    c->cap = shape->max_pos;
    const int nh = shape->n_layers * shape->n_kv_heads;
    const size_t hd = (size_t)shape->head_dim, cap = (size_t)c->cap;
    c->heads = calloc((size_t)nh, sizeof *c->heads);
    c->compressed = calloc((size_t)shape->n_layers, sizeof(int));
    int ok = c->heads && c->compressed;
    for (int i = 0; ok && i < nh; i++) {
        ev_head *H = &c->heads[i];
        H->k = malloc(cap * hd * sizeof(float));
        H->v = malloc(cap * hd * sizeof(float));
        H->pos = malloc(cap * sizeof(int));
        if (kind == EV_H2O) H->score = malloc(cap * sizeof(float));
        ok = H->k && H->v && H->pos && (kind != EV_H2O || H->score);
    }
    if (!ok) {
        destroy(c);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for a KV cache of %d positions",
                        shape->max_pos);
    }
    *state = c;
    return SQZ_OK;
}

static sqz_status create_streaming(sqz_ctx *ctx, const sqz_kv_shape *s, const char *p, void **st) {
    return create_kind(ctx, s, p, st, EV_STREAMING);
}
static sqz_status create_h2o(sqz_ctx *ctx, const sqz_kv_shape *s, const char *p, void **st) {
    return create_kind(ctx, s, p, st, EV_H2O);
}
static sqz_status create_snapkv(sqz_ctx *ctx, const sqz_kv_shape *s, const char *p, void **st) {
    return create_kind(ctx, s, p, st, EV_SNAPKV);
}

static void reset(void *state) {
    ev *c = state;
    for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++) c->heads[i].n = 0;
    memset(c->compressed, 0, (size_t)c->shape.n_layers * sizeof(int));
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    ev *c = state;
    const int Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim;
    for (int g = 0; g < Hkv; g++) {
        ev_head *H = &c->heads[layer * Hkv + g];
        while (H->n > 0 && H->pos[H->n - 1] >= pos) H->n--; /* rewritten positions */
        if (H->n + n > c->cap)
            return sqz_fail(c->ctx, SQZ_ERR_ARG, "KV cache full: %d positions", c->cap);
        for (int i = 0; i < n; i++) {
            const int s = H->n++;
            memcpy(H->k + (size_t)s * hd, k + (size_t)i * Hkv * hd + (size_t)g * hd,
                   (size_t)hd * sizeof(float));
            memcpy(H->v + (size_t)s * hd, v + (size_t)i * Hkv * hd + (size_t)g * hd,
                   (size_t)hd * sizeof(float));
            H->pos[s] = pos + i;
            if (H->score) H->score[s] = 0;
        }
    }
    return SQZ_OK;
}

/* Keeps the slots with keep[s] != 0, in order. */
static void compact(ev_head *H, const unsigned char *keep, int hd) {
    int m = 0;
    for (int s = 0; s < H->n; s++) {
        if (!keep[s]) continue;
        if (m != s) {
            memcpy(H->k + (size_t)m * hd, H->k + (size_t)s * hd, (size_t)hd * sizeof(float));
            memcpy(H->v + (size_t)m * hd, H->v + (size_t)s * hd, (size_t)hd * sizeof(float));
            H->pos[m] = H->pos[s];
            if (H->score) H->score[m] = H->score[s];
        }
        m++;
    }
    H->n = m;
}

/* Marks in keep[] the `want` slots of [0, n) with the highest score (ties: the later slot). */
static void keep_top(const float *score, int n, int want, unsigned char *keep, int *idx) {
    if (want <= 0) return;
    int m = 0;
    for (int s = 0; s < n; s++) idx[m++] = s;
    /* partial selection sort: want is small next to n only in the worst case, and n is at
     * most the prompt length, so a simple O(n * want) pass is enough */
    for (int i = 0; i < want && i < m; i++) {
        int best = i;
        for (int j = i + 1; j < m; j++)
            if (score[idx[j]] > score[idx[best]] ||
                (score[idx[j]] == score[idx[best]] && idx[j] > idx[best]))
                best = j;
        int tmp = idx[i];
        idx[i] = idx[best], idx[best] = tmp;
        keep[idx[i]] = 1;
    }
}

static void evict(ev *c, ev_head *H, int layer, const float *obs_score, int n_step) {
    const int hd = c->shape.head_dim;
    unsigned char *keep = calloc((size_t)H->n + 1, 1);
    int *idx = malloc(((size_t)H->n + 1) * sizeof(int));
    if (!keep || !idx) { free(keep), free(idx); return; }
    if (c->kind == EV_STREAMING) {
        if (H->n == 0) goto out;
        const int last = H->pos[H->n - 1];
        for (int s = 0; s < H->n; s++)
            keep[s] = H->pos[s] < c->sink || H->pos[s] > last - c->window;
    } else if (c->kind == EV_H2O) {
        if (H->n <= c->budget) goto out;
        const int first_recent = H->n - c->recent;
        for (int s = first_recent; s < H->n; s++) keep[s] = 1;
        keep_top(H->score, first_recent, c->budget - c->recent, keep, idx);
    } else {
        if (!obs_score || H->n <= c->budget) goto out;
        const int w = c->obs < n_step ? c->obs : n_step; /* observation window: last w slots */
        const int prefix = H->n - w;
        /* average pool over the prefix positions, as SnapKV's avg_pool1d (zero padding,
         * divided by the kernel size) */
        float *pooled = malloc((size_t)(prefix > 0 ? prefix : 1) * sizeof(float));
        if (!pooled) goto out;
        const int r = c->pool / 2;
        for (int s = 0; s < prefix; s++) {
            float a = 0;
            for (int j = s - r; j <= s + r; j++)
                if (j >= 0 && j < prefix) a += obs_score[j];
            pooled[s] = a / (float)c->pool;
        }
        for (int s = prefix; s < H->n; s++) keep[s] = 1;
        keep_top(pooled, prefix, c->budget - w, keep, idx);
        free(pooled);
    }
    compact(H, keep, hd);
out:
    free(keep);
    free(idx);
    (void)layer;
}

static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    ev *c = state;
    const int Hq = c->shape.n_heads, Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim;
    const int group = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    /* snapkv scores the prompt once: on a multi-token step that leaves more than budget */
    const int snap = c->kind == EV_SNAPKV && !c->compressed[layer] && n > 1 &&
                     c->heads[layer * Hkv].n > c->budget;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1 && Hkv > 1)
    for (int g = 0; g < Hkv; g++) {
        ev_head *H = &c->heads[layer * Hkv + g];
        float *s = malloc((size_t)(H->n ? H->n : 1) * sizeof(float));
        float *obs_score = snap ? calloc((size_t)H->n, sizeof(float)) : NULL;
        int visible = 0;
        for (int t = 0; t < n; t++) {
            /* slots are in position order: the visible ones are a prefix */
            while (visible < H->n && H->pos[visible] <= pos + t) visible++;
            for (int h = g * group; h < (g + 1) * group; h++) {
                const float *qh = q + (size_t)t * Hq * hd + (size_t)h * hd;
                for (int p = 0; p < visible; p++) {
                    const float *kr = H->k + (size_t)p * hd;
                    float d = 0;
                    for (int i = 0; i < hd; i++) d += qh[i] * kr[i];
                    s[p] = d * scale;
                }
                sqz_softmax(s, visible);
                if (H->score)
                    for (int p = 0; p < visible; p++) H->score[p] += s[p];
                if (obs_score && t >= n - c->obs)
                    for (int p = 0; p < visible; p++) obs_score[p] += s[p];
                float *o = out + (size_t)t * Hq * hd + (size_t)h * hd;
                memset(o, 0, (size_t)hd * sizeof(float));
                for (int p = 0; p < visible; p++) {
                    const float *vr = H->v + (size_t)p * hd;
                    const float wp = s[p];
                    for (int i = 0; i < hd; i++) o[i] += wp * vr[i];
                }
            }
        }
        evict(c, H, layer, obs_score, n);
        free(s);
        free(obs_score);
    }
    if (snap) c->compressed[layer] = 1;
}

/* Held positions: their key and value rows, positions and (h2o) scores. */
static size_t bytes(const void *state) {
    const ev *c = state;
    const size_t per = 2 * (size_t)c->shape.head_dim * sizeof(float) + sizeof(int) +
                       (c->kind == EV_H2O ? sizeof(float) : 0);
    size_t total = 0;
    for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++)
        total += (size_t)c->heads[i].n * per;
    return total;
}

/* For tests: the positions held by (layer, kv_head), in increasing order; returns how many. */
int sqz_kv_evict_held(const void *state, int layer, int kv_head, const int **positions) {
    const ev *c = state;
    const ev_head *H = &c->heads[layer * c->shape.n_kv_heads + kv_head];
    *positions = H->pos;
    return H->n;
}

#define EV_POLICY(nm, help_)                                                                   \
    const sqz_kv_policy sqz_kv_policy_##nm = {                                                 \
        .name = #nm,                                                                           \
        .help = help_,                                                                         \
        .create = create_##nm,                                                                 \
        .destroy = destroy,                                                                    \
        .reset = reset,                                                                        \
        .store = store,                                                                        \
        .attend = attend,                                                                      \
        .bytes = bytes,                                                                        \
    };
EV_POLICY(streaming, "StreamingLLM: the first sink=4 positions + the last window=252")
EV_POLICY(h2o, "H2O heavy hitters: budget=256 positions, recent=budget/2 of them the newest")
EV_POLICY(snapkv, "SnapKV: after the prompt keep budget=128 per head chosen by the last obs=32 "
                  "queries (avg pool=7)")
