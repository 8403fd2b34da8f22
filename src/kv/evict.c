/* kv/evict.c - KV cache policies that evict positions (baselines for the compressed caches):
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
 * Each (layer, KV head) holds its own list of positions in increasing order with their key and
 * value rows in the policy's storage codec (f16 by default; "streaming+q4" etc. compose, see
 * kv/codec.h), so h2o and snapkv keep different positions per head. Attention runs on the
 * stored rows (kernels/attn.h), all query heads of a KV head at once. Keys were rotated (RoPE)
 * before they were stored, so an evicted position simply disappears, as in those papers' code.
 * Eviction happens at the end of attend: the queries of a step see every position held before
 * it plus the ones it stored (a batched prompt thus gets exact causal attention; in particular
 * streaming does not mask the prompt to its window).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attn.h"
#include "kernels/ops.h"
#include "kv/kv.h"
#include "core/params.h"

enum { EV_STREAMING, EV_H2O, EV_SNAPKV };

/* Slots [0, nq) are held in the codec's rows k, v; slots [nq, n) - the newest, at most the
 * codec's recent= - in f16 rows rk, rv (both arrays indexed by slot). */
typedef struct ev_head {
    uint8_t *k, *v; /* [cap][rb] encoded rows */
    uint16_t *rk, *rv; /* [cap][hd] f16 rows of the newest slots (recent > 0) */
    int nq;
    int *pos;      /* [cap], increasing */
    float *score;  /* [cap] accumulated attention (h2o only) */
    float *mu;     /* [hd] key centre (quantizing codecs, kv/codec.h) */
    int has_mu;
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
    sqz_kv_codec codec, fcodec; /* fcodec, ffmt: the f16 rows of the newest slots */
    sqz_kvrow_fmt fmt, ffmt;
    size_t rb;        /* bytes of one encoded row */
    sqz_attn_kernels kr;
    /* per KV head (attend runs them in parallel): probabilities [group][cap], observation
     * scores and pooled scores [cap], the eviction marks and indices [cap] */
    float *s, *obs_s, *pooled;
    unsigned char *keep;
    int *idx;
    float *tmp; /* [hd] a decoded row (store) */
} ev;

static void destroy(void *state) {
    ev *c = state;
    if (!c) return;
    if (c->heads)
        for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++) {
            free(c->heads[i].k), free(c->heads[i].v), free(c->heads[i].pos);
            free(c->heads[i].score), free(c->heads[i].mu);
            free(c->heads[i].rk), free(c->heads[i].rv);
        }
    free(c->heads);
    free(c->compressed);
    free(c->s), free(c->obs_s), free(c->pooled), free(c->keep), free(c->idx), free(c->tmp);
    free(c);
}

static sqz_status create_kind(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                              const sqz_kv_codec *codec, void **state, int kind) {
    int sink = 4, window = 252, budget = kind == EV_SNAPKV ? 128 : 256, recent = -1, obs = 32,
        pool = 7;
    sqz_status st;
    char buf[128];
    const char *name = kind == EV_STREAMING ? "streaming" : kind == EV_H2O ? "h2o" : "snapkv";
    if (kind == EV_STREAMING) {
        const sqz_param p[] = { { "sink", 'i', &sink, 0, 1 << 20 },
                                   { "window", 'i', &window, 1, 1 << 20 } };
        st = sqz_params_parse(ctx, "KV policy", name, params, p, 2, buf, sizeof buf);
    } else if (kind == EV_H2O) {
        const sqz_param p[] = { { "budget", 'i', &budget, 1, 1 << 20 },
                                   { "recent", 'i', &recent, 0, 1 << 20 } };
        st = sqz_params_parse(ctx, "KV policy", name, params, p, 2, buf, sizeof buf);
        if (!st && recent < 0) recent = budget / 2;
        if (!st && recent > budget)
            st = sqz_fail(ctx, SQZ_ERR_ARG,
                          "KV policy h2o: parameter 'recent' = %d exceeds budget = %d", recent,
                          budget);
    } else {
        const sqz_param p[] = { { "budget", 'i', &budget, 1, 1 << 20 },
                                   { "obs", 'i', &obs, 1, 1 << 20 },
                                   { "pool", 'i', &pool, 1, 255 } };
        st = sqz_params_parse(ctx, "KV policy", name, params, p, 3, buf, sizeof buf);
        if (!st && obs > budget)
            st = sqz_fail(ctx, SQZ_ERR_ARG,
                          "KV policy snapkv: parameter 'obs' = %d exceeds budget = %d", obs,
                          budget);
        if (!st && pool % 2 == 0)
            st = sqz_fail(ctx, SQZ_ERR_ARG, "KV policy snapkv: parameter 'pool' = %d must be odd",
                          pool);
    }
    sqz_kvrow_fmt fmt;
    if (!st) st = sqz_kv_codec_fmt(ctx, codec, name, "a head's key/value row", shape->head_dim, &fmt);
    if (st) return st;
    ev *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->ctx = ctx, c->kind = kind, c->shape = *shape;
    c->sink = sink, c->window = window, c->budget = budget, c->recent = recent, c->obs = obs;
    c->pool = pool;
    c->codec = *codec;
    c->fmt = fmt;
    c->fcodec = (sqz_kv_codec){ SQZ_KVROW_F16, shape->head_dim, 0, 0 };
    c->ffmt = (sqz_kvrow_fmt){ SQZ_KVROW_F16, shape->head_dim, shape->head_dim };
    c->rb = sqz_kvrow_bytes(&fmt);
    c->kr = sqz_attn_kernels_best();
    /* a step may store up to max_pos positions before evicting */
    c->cap = shape->max_pos;
    const int nh = shape->n_layers * shape->n_kv_heads, Hkv = shape->n_kv_heads;
    const size_t cap = (size_t)c->cap, group = (size_t)(shape->n_heads / Hkv);
    c->heads = calloc((size_t)nh, sizeof *c->heads);
    c->compressed = calloc((size_t)shape->n_layers, sizeof(int));
    c->s = malloc((size_t)Hkv * group * cap * sizeof(float));
    c->obs_s = malloc((size_t)Hkv * cap * sizeof(float));
    c->pooled = malloc((size_t)Hkv * cap * sizeof(float));
    c->keep = malloc((size_t)Hkv * cap);
    c->idx = malloc((size_t)Hkv * cap * sizeof(int));
    c->tmp = malloc((size_t)shape->head_dim * sizeof(float));
    int ok = c->heads && c->compressed && c->s && c->obs_s && c->pooled && c->keep && c->idx &&
             c->tmp;
    for (int i = 0; ok && i < nh; i++) {
        ev_head *H = &c->heads[i];
        H->k = malloc(cap * c->rb);
        H->v = malloc(cap * c->rb);
        H->pos = malloc(cap * sizeof(int));
        if (kind == EV_H2O) H->score = malloc(cap * sizeof(float));
        H->mu = malloc((size_t)shape->head_dim * sizeof(float));
        ok = H->k && H->v && H->pos && H->mu && (kind != EV_H2O || H->score);
        if (ok && codec->recent > 0) {
            H->rk = malloc(cap * (size_t)shape->head_dim * sizeof(uint16_t));
            H->rv = malloc(cap * (size_t)shape->head_dim * sizeof(uint16_t));
            ok = H->rk && H->rv;
        }
    }
    return sqz_kv_create_end(ctx, shape, ok, c, destroy, state);
}

static sqz_status create_streaming(sqz_ctx *ctx, const sqz_kv_shape *s, const char *p,
                                 const sqz_kv_codec *codec, void **st) {
    return create_kind(ctx, s, p, codec, st, EV_STREAMING);
}
static sqz_status create_h2o(sqz_ctx *ctx, const sqz_kv_shape *s, const char *p,
                                 const sqz_kv_codec *codec, void **st) {
    return create_kind(ctx, s, p, codec, st, EV_H2O);
}
static sqz_status create_snapkv(sqz_ctx *ctx, const sqz_kv_shape *s, const char *p,
                                 const sqz_kv_codec *codec, void **st) {
    return create_kind(ctx, s, p, codec, st, EV_SNAPKV);
}

static void reset(void *state) {
    ev *c = state;
    for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++)
        c->heads[i].n = c->heads[i].nq = 0, c->heads[i].has_mu = 0;
    memset(c->compressed, 0, (size_t)c->shape.n_layers * sizeof(int));
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    ev *c = state;
    const int Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim;
    for (int g = 0; g < Hkv; g++) {
        ev_head *H = &c->heads[layer * Hkv + g];
        while (H->n > 0 && H->pos[H->n - 1] >= pos) H->n--; /* rewritten positions */
        if (H->nq > H->n) H->nq = H->n;
        if (H->n + n > c->cap)
            return sqz_fail(c->ctx, SQZ_ERR_ARG, "KV cache full: %d positions", c->cap);
        if (sqz_kv_codec_centers(&c->codec) && !H->has_mu) {
            sqz_kv_mean_rows(k + (size_t)g * hd, n, (size_t)Hkv * hd, hd, H->mu);
            H->has_mu = 1;
        }
        const float *mu = H->has_mu ? H->mu : NULL;
        for (int i = 0; i < n; i++) {
            const int s = H->n++;
            const size_t o = (size_t)i * Hkv * hd + (size_t)g * hd;
            if (H->rk) { /* newest: f16 (keys centred like the others) */
                sqz_kv_codec_encode(&c->fcodec, &c->ffmt, k + o, mu, H->rk + (size_t)s * hd);
                sqz_kv_codec_encode(&c->fcodec, &c->ffmt, v + o, NULL, H->rv + (size_t)s * hd);
            } else {
                sqz_kv_codec_encode(&c->codec, &c->fmt, k + o, mu, H->k + s * c->rb);
                sqz_kv_codec_encode(&c->codec, &c->fmt, v + o, NULL, H->v + s * c->rb);
                H->nq = H->n;
            }
            H->pos[s] = pos + i;
            if (H->score) H->score[s] = 0;
        }
        /* slots leaving the newest recent= are encoded (keys already centred) */
        for (; H->rk && H->n - H->nq > c->codec.recent; H->nq++) {
            const size_t s = (size_t)H->nq;
            sqz_kvrow_decode(&c->ffmt, H->rk + s * hd, c->tmp);
            sqz_kv_codec_encode(&c->codec, &c->fmt, c->tmp, NULL, H->k + s * c->rb);
            sqz_kvrow_decode(&c->ffmt, H->rv + s * hd, c->tmp);
            sqz_kv_codec_encode(&c->codec, &c->fmt, c->tmp, NULL, H->v + s * c->rb);
        }
    }
    return SQZ_OK;
}

/* Keeps the slots with keep[s] != 0, in order. */
static void compact(ev_head *H, const unsigned char *keep, size_t rb, int hd) {
    int m = 0, nq = 0;
    for (int s = 0; s < H->n; s++) {
        if (!keep[s]) continue;
        if (s < H->nq) nq++;
        if (m != s) {
            if (s < H->nq) { /* kept encoded slots land below the new nq, f16 ones above */
                memcpy(H->k + (size_t)m * rb, H->k + (size_t)s * rb, rb);
                memcpy(H->v + (size_t)m * rb, H->v + (size_t)s * rb, rb);
            } else {
                memcpy(H->rk + (size_t)m * hd, H->rk + (size_t)s * hd, (size_t)hd * 2);
                memcpy(H->rv + (size_t)m * hd, H->rv + (size_t)s * hd, (size_t)hd * 2);
            }
            H->pos[m] = H->pos[s];
            if (H->score) H->score[m] = H->score[s];
        }
        m++;
    }
    H->n = m;
    H->nq = nq;
}

/* Marks in keep[] the `want` slots of [0, n) with the highest score (ties: the later slot). */
static void keep_top(const float *score, int n, int want, unsigned char *keep, int *idx) {
    if (want <= 0) return;
    if (want >= n) {
        memset(keep, 1, (size_t)n);
        return;
    }
    /* Partial selection in O(n * k): of the `want` to keep or of the n - want to drop, the
     * fewer. Decode over budget drops one slot per step, so picking the `want` to keep (half
     * the budget for h2o) made every step O(budget^2) per head. Both pick the same set: the
     * top `want` in the strict order (score, slot). */
    int m = 0;
    for (int s = 0; s < n; s++) idx[m++] = s;
    const int drop = n - want, pick_top = want <= drop, k = pick_top ? want : drop;
    if (!pick_top) memset(keep, 1, (size_t)n);
    for (int i = 0; i < k; i++) {
        int best = i; /* pick_top: the highest (score, slot); else the lowest */
        for (int j = i + 1; j < m; j++) {
            const float a = score[idx[j]], b = score[idx[best]];
            const int higher = a > b || (a == b && idx[j] > idx[best]);
            if (pick_top ? higher : !higher) best = j;
        }
        int tmp = idx[i];
        idx[i] = idx[best], idx[best] = tmp;
        keep[idx[i]] = (unsigned char)pick_top;
    }
}

/* Evicts from H by the policy's rule; g: the KV head (its scratch). */
static void evict(ev *c, ev_head *H, int g, const float *obs_score, int n_step) {
    const size_t cap = (size_t)c->cap;
    unsigned char *keep = c->keep + (size_t)g * cap;
    int *idx = c->idx + (size_t)g * cap;
    memset(keep, 0, (size_t)H->n);
    if (c->kind == EV_STREAMING) {
        if (H->n == 0) return;
        const int last = H->pos[H->n - 1];
        if (H->n <= c->sink + c->window) return; /* nothing to drop: no copying */
        for (int s = 0; s < H->n; s++)
            keep[s] = H->pos[s] < c->sink || H->pos[s] > last - c->window;
    } else if (c->kind == EV_H2O) {
        if (H->n <= c->budget) return;
        const int first_recent = H->n - c->recent;
        for (int s = first_recent; s < H->n; s++) keep[s] = 1;
        keep_top(H->score, first_recent, c->budget - c->recent, keep, idx);
    } else {
        if (!obs_score || H->n <= c->budget) return;
        const int w = c->obs < n_step ? c->obs : n_step; /* observation window: last w slots */
        const int prefix = H->n - w;
        /* average pool over the prefix positions, as SnapKV's avg_pool1d (zero padding,
         * divided by the kernel size) */
        float *pooled = c->pooled + (size_t)g * cap;
        const int r = c->pool / 2;
        for (int s = 0; s < prefix; s++) {
            float a = 0;
            for (int j = s - r; j <= s + r; j++)
                if (j >= 0 && j < prefix) a += obs_score[j];
            pooled[s] = a / (float)c->pool;
        }
        for (int s = prefix; s < H->n; s++) keep[s] = 1;
        keep_top(pooled, prefix, c->budget - w, keep, idx);
    }
    compact(H, keep, c->rb, c->shape.head_dim);
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
        float *s = c->s + (size_t)g * group * c->cap;
        float *obs_score = snap ? c->obs_s + (size_t)g * c->cap : NULL;
        if (obs_score) memset(obs_score, 0, (size_t)H->n * sizeof(float));
        int visible = 0;
        for (int t = 0; t < n; t++) {
            /* slots are in position order: the visible ones are a prefix */
            while (visible < H->n && H->pos[visible] <= pos + t) visible++;
            const size_t qo = (size_t)t * Hq * hd + (size_t)g * group * hd;
            const int nq = H->nq < visible ? H->nq : visible;
            const sqz_kv_rows parts[2] = {
                { &c->codec, &c->fmt, H->k, H->v, c->rb, nq },
                { &c->fcodec, &c->ffmt, H->rk ? H->rk + (size_t)nq * hd : NULL,
                  H->rv ? H->rv + (size_t)nq * hd : NULL, (size_t)hd * 2, visible - nq },
            };
            sqz_kv_attend_parts(&c->kr, parts, 2, group, q + qo, scale, s, out + qo);
            for (int j = 0; j < group; j++) {
                const float *sj = s + (size_t)j * visible;
                if (H->score)
                    for (int p = 0; p < visible; p++) H->score[p] += sj[p];
                if (obs_score && t >= n - c->obs)
                    for (int p = 0; p < visible; p++) obs_score[p] += sj[p];
            }
        }
        evict(c, H, g, obs_score, n);
    }
    if (snap) c->compressed[layer] = 1;
}

/* Held positions: their encoded key and value rows, positions and (h2o) scores; the key
 * centres in use. */
static size_t bytes(const void *state) {
    const ev *c = state;
    const size_t per = sizeof(int) +
                       (c->kind == EV_H2O ? sizeof(float) : 0);
    size_t total = 0;
    for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++)
        total += (size_t)c->heads[i].n * per + (size_t)c->heads[i].nq * 2 * c->rb +
                 (size_t)(c->heads[i].n - c->heads[i].nq) * 2 * (size_t)c->shape.head_dim * 2 +
                 (c->heads[i].has_mu ? (size_t)c->shape.head_dim * sizeof(float) : 0);
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
        .takes_codec = 1,                                                                      \
    };
EV_POLICY(streaming, "StreamingLLM: the first sink=4 positions + the last window=252")
EV_POLICY(h2o, "H2O heavy hitters: budget=256 positions, recent=budget/2 of them the newest")
EV_POLICY(snapkv, "SnapKV: after the prompt keep budget=128 per head chosen by the last obs=32 "
                  "queries (avg pool=7)")
