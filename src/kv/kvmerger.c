/* kv/kvmerger.c - the "kvmerger" KV policy: adaptive merging of similar consecutive states
 * (Wang et al. 2024, "Model Tells You Where to Merge: Adaptive KV Cache Merging for LLMs on
 * Long-Context Tasks").
 *
 * Each (layer, KV head) holds a list of states in position order: a key, a value and the
 * attention probability the state has received so far (summed over the queries and the query
 * heads of its KV head, as H2O scores). At the end of attend, when more than budget= states are
 * held, merging sets are identified among the states older than the window= most recent: runs
 * of consecutive states where each key's cosine similarity with the next is at least
 * threshold=. Each set becomes one state by Gaussian-kernel weighted merging around its pivot,
 * the state with the highest accumulated attention: w_i = exp(-|k_i - k_p|^2 / (2 sigma^2)),
 * normalized, with sigma^2 the mean of |k_i - k_p|^2 over the set (all weights equal when the
 * keys coincide); k = sum w_i k_i, v = sum w_i v_i, and the merged state's score is the sum of
 * the set's scores. A merged state is one position in attention (no count correction).
 *
 * States are rows in the policy's storage codec (f16 by default; "kvmerger:...+q8" etc.),
 * decoded where merging reads them and re-encoded once merged; attention runs on the stored
 * rows (kernels/attn.h). The codec's rows are not centred here (cosine similarity is not
 * shift-invariant) and have no recent window.
 *
 * Deviations: the paper chooses sigma from its analysis of the kernel; here it adapts to the
 * set's own spread. The budget is the trigger: when the similar runs do not bring the cache
 * under it, the cache holds more than budget= (merging never evicts).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attn.h"
#include "kernels/ops.h"
#include "kv/kv.h"
#include "core/params.h"

typedef struct km_head {
    uint8_t *k, *v;   /* [max_pos][rb] encoded states */
    float *score;     /* [max_pos] */
    /* [max_pos] apart[i] = 1: the keys of states i and i+1 were found less similar than the
     * threshold and neither has changed since. Merging runs on every step once the cache is
     * over budget (which it stays when few keys are similar), and without this memo every step
     * re-decoded every held key to recompute the same cosines: O(n) per step and head. */
    uint8_t *apart;
    int n;
} km_head;

/* Scratch of one KV head (attend runs the heads in parallel). */
typedef struct km_scratch {
    float *s;         /* [group][max_pos] attention probabilities */
    float *a, *b, *kp; /* [hd] decoded rows */
    double *acc;      /* [2][hd] */
} km_scratch;

typedef struct kvmerger {
    sqz_ctx *ctx;
    sqz_kv_shape shape;
    float threshold;
    int budget, window;
    km_head *heads;   /* [L][Hkv] */
    sqz_kv_codec codec;
    sqz_kvrow_fmt fmt;
    size_t rb;
    sqz_attn_kernels kr;
    km_scratch *scr;  /* [Hkv] */
    float *hook_k, *hook_v; /* [max_pos][hd] the test hook's decoded states */
} kvmerger;

static void destroy(void *state) {
    kvmerger *c = state;
    if (!c) return;
    for (int i = 0; c->heads && i < c->shape.n_layers * c->shape.n_kv_heads; i++)
        free(c->heads[i].k), free(c->heads[i].v), free(c->heads[i].score), free(c->heads[i].apart);
    for (int g = 0; c->scr && g < c->shape.n_kv_heads; g++)
        free(c->scr[g].s), free(c->scr[g].a), free(c->scr[g].b), free(c->scr[g].kp),
            free(c->scr[g].acc);
    free(c->heads), free(c->scr), free(c->hook_k), free(c->hook_v);
    free(c);
}

static sqz_status create(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         const sqz_kv_codec *codec, void **state) {
    float threshold = 0.8f;
    int budget = 512, window = 32;
    char buf[256];
    const sqz_param p[] = { { "threshold", 'f', &threshold, -1, 1 },
                               { "budget", 'i', &budget, 1, 1 << 20 },
                               { "window", 'i', &window, 0, 1 << 20 } };
    sqz_status st = sqz_params_parse(ctx, "KV policy", "kvmerger", params, p, 3, buf, sizeof buf);
    sqz_kvrow_fmt fmt;
    if (!st) st = sqz_kv_codec_fmt(ctx, codec, "kvmerger", "a head's key/value row",
                                   shape->head_dim, &fmt);
    if (st) return st;
    kvmerger *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->ctx = ctx;
    c->shape = *shape;
    c->threshold = threshold, c->budget = budget, c->window = window;
    c->codec = *codec;
    c->codec.recent = 0;
    c->fmt = fmt;
    c->rb = sqz_kvrow_bytes(&fmt);
    c->kr = sqz_attn_kernels_best();
    const int nh = shape->n_layers * shape->n_kv_heads, Hkv = shape->n_kv_heads;
    const size_t P = (size_t)shape->max_pos, hd = (size_t)shape->head_dim;
    const size_t group = (size_t)(shape->n_heads / Hkv);
    c->heads = calloc((size_t)nh, sizeof *c->heads);
    c->scr = calloc((size_t)Hkv, sizeof *c->scr);
    int ok = c->heads && c->scr;
    for (int i = 0; ok && i < nh; i++) {
        km_head *h = &c->heads[i];
        h->k = malloc(P * c->rb);
        h->v = malloc(P * c->rb);
        h->score = malloc(P * sizeof(float));
        h->apart = malloc(P);
        ok = h->k && h->v && h->score && h->apart;
    }
    for (int g = 0; ok && g < Hkv; g++) {
        km_scratch *x = &c->scr[g];
        x->s = malloc(group * P * sizeof(float));
        x->a = malloc(hd * sizeof(float));
        x->b = malloc(hd * sizeof(float));
        x->kp = malloc(hd * sizeof(float));
        x->acc = malloc(2 * hd * sizeof(double));
        ok = x->s && x->a && x->b && x->kp && x->acc;
    }
    return sqz_kv_create_end(ctx, shape, ok, c, destroy, state);
}

static void reset(void *state) {
    kvmerger *c = state;
    for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++) c->heads[i].n = 0;
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    kvmerger *c = state;
    const int Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim;
    for (int g = 0; g < Hkv; g++) {
        km_head *h = &c->heads[layer * Hkv + g];
        if (pos == 0) h->n = 0;
        if (h->n + n > c->shape.max_pos)
            return sqz_fail(c->ctx, SQZ_ERR_RANGE, "KV policy kvmerger: cache full");
        if (h->n > 0) h->apart[h->n - 1] = 0; /* the last state gets a new neighbour */
        for (int t = 0; t < n; t++) {
            const size_t o = ((size_t)t * Hkv + g) * hd, s = (size_t)(h->n + t);
            sqz_kv_codec_encode(&c->codec, &c->fmt, k + o, NULL, h->k + s * c->rb);
            sqz_kv_codec_encode(&c->codec, &c->fmt, v + o, NULL, h->v + s * c->rb);
            h->score[s] = 0;
            h->apart[s] = 0; /* unknown: s is the last state */
        }
        h->n += n;
    }
    return SQZ_OK;
}

static double cosine(const float *a, const float *b, int n) {
    double d = 0, na = 0, nb = 0;
    for (int i = 0; i < n; i++) d += (double)a[i] * b[i], na += (double)a[i] * a[i], nb += (double)b[i] * b[i];
    return na > 0 && nb > 0 ? d / sqrt(na * nb) : 0;
}

static double sqdist(const float *a, const float *b, int n) {
    double d = 0;
    for (int i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return d;
}

/* Decoded key (v = 0) or value (v = 1) of state i. */
static void row(const kvmerger *c, const km_head *h, int v, int i, float *x) {
    sqz_kv_codec_decode(&c->codec, &c->fmt, (v ? h->v : h->k) + (size_t)i * c->rb, x);
}

/* Merges the similar runs among the states older than the window (in place). The sets are those
 * a scan of every consecutive cosine finds; pairs marked apart skip their cosine (it was below
 * the threshold and neither key changed), and the marks follow the states as they move. */
static void merge_head(const kvmerger *c, km_head *h, km_scratch *x) {
    const int hd = c->shape.head_dim;
    const int old = h->n - c->window; /* states [0, old) may merge */
    const size_t rb = c->rb;
    int w = 0;                        /* write index */
    for (int i = 0; i < h->n;) {
        int j = i + 1;
        if (i < old && !h->apart[i]) {
            /* rows at or after i are not yet overwritten: w <= i */
            row(c, h, 0, i, x->a);
            while (j < old) {
                if (h->apart[j - 1]) break;
                row(c, h, 0, j, x->b);
                if (cosine(x->a, x->b, hd) < c->threshold) {
                    h->apart[j - 1] = 1;
                    break;
                }
                memcpy(x->a, x->b, (size_t)hd * sizeof(float));
                j++;
            }
        }
        /* set [i, j) */
        if (j - i == 1) {
            /* (i, i+1) stays apart while the next set is a single state too (fixed below) */
            const uint8_t apart = h->apart[i];
            if (w != i) {
                memmove(h->k + (size_t)w * rb, h->k + (size_t)i * rb, rb);
                memmove(h->v + (size_t)w * rb, h->v + (size_t)i * rb, rb);
                h->score[w] = h->score[i];
            }
            h->apart[w] = apart;
        } else {
            int piv = i;
            for (int t = i + 1; t < j; t++)
                if (h->score[t] > h->score[piv]) piv = t;
            row(c, h, 0, piv, x->kp);
            double s2 = 0, wsum = 0, score = 0;
            for (int t = i; t < j; t++) {
                row(c, h, 0, t, x->a);
                s2 += sqdist(x->a, x->kp, hd);
                score += h->score[t];
            }
            s2 /= (double)(j - i - 1);
            /* the merged state may land on a member of the set (w <= i): accumulate first */
            double *kacc = x->acc, *vacc = x->acc + hd;
            memset(x->acc, 0, 2 * (size_t)hd * sizeof *x->acc);
            for (int t = i; t < j; t++) {
                row(c, h, 0, t, x->a);
                row(c, h, 1, t, x->b);
                const double wt = s2 > 0 ? exp(-sqdist(x->a, x->kp, hd) / (2 * s2)) : 1.0;
                wsum += wt;
                for (int d = 0; d < hd; d++) kacc[d] += wt * x->a[d], vacc[d] += wt * x->b[d];
            }
            for (int d = 0; d < hd; d++)
                x->a[d] = (float)(kacc[d] / wsum), x->b[d] = (float)(vacc[d] / wsum);
            sqz_kv_codec_encode(&c->codec, &c->fmt, x->a, NULL, h->k + (size_t)w * rb);
            sqz_kv_codec_encode(&c->codec, &c->fmt, x->b, NULL, h->v + (size_t)w * rb);
            h->score[w] = (float)score;
            /* a new key: its pairs with both neighbours are unknown */
            h->apart[w] = 0;
            if (w > 0) h->apart[w - 1] = 0;
        }
        w++;
        i = j;
    }
    h->n = w;
}

static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    kvmerger *c = state;
    const int Hq = c->shape.n_heads, Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim;
    const int group = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for num_threads(n_threads) if (n_threads > 1 && Hkv > 1)
    for (int g = 0; g < Hkv; g++) {
        km_head *h = &c->heads[layer * Hkv + g];
        km_scratch *x = &c->scr[g];
        const int before = h->n - n; /* states held before this step's n */
        for (int t = 0; t < n; t++) {
            const int vis = before + t + 1;
            const size_t qo = ((size_t)t * Hq + (size_t)g * group) * hd;
            sqz_kv_attend_rows(&c->kr, &c->codec, &c->fmt, group, q + qo, h->k, h->v, c->rb, vis,
                               scale, x->s, out + qo);
            for (int j = 0; j < group; j++)
                for (int p = 0; p < vis; p++) h->score[p] += x->s[(size_t)j * vis + p];
        }
        if (h->n > c->budget) merge_head(c, h, x);
    }
}

static size_t bytes(const void *state) {
    const kvmerger *c = state;
    size_t b = 0;
    for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++)
        b += (size_t)c->heads[i].n * (2 * c->rb + sizeof(float) + 1); /* rows, score, apart */
    return b;
}

/* Test hook: the states held by (layer, KV head), decoded (valid until the next call). */
int sqz_kv_kvmerger_held(const void *state, int layer, int kv_head, const float **k,
                         const float **v, const float **score);
int sqz_kv_kvmerger_held(const void *state, int layer, int kv_head, const float **k,
                         const float **v, const float **score) {
    kvmerger *c = (kvmerger *)state;
    const km_head *h = &c->heads[layer * c->shape.n_kv_heads + kv_head];
    const size_t hd = (size_t)c->shape.head_dim, P = (size_t)c->shape.max_pos;
    if (!c->hook_k) c->hook_k = malloc(P * hd * sizeof(float));
    if (!c->hook_v) c->hook_v = malloc(P * hd * sizeof(float));
    if (!c->hook_k || !c->hook_v) return -1;
    for (int i = 0; i < h->n; i++) {
        row(c, h, 0, i, c->hook_k + (size_t)i * hd);
        row(c, h, 1, i, c->hook_v + (size_t)i * hd);
    }
    if (k) *k = c->hook_k;
    if (v) *v = c->hook_v;
    if (score) *score = h->score;
    return h->n;
}

/* Test hook: forgets every apart mark, so the next merges rescan every cosine (as without the
 * memo); the held states must come out the same. */
void sqz_kv_kvmerger_forget(void *state);
void sqz_kv_kvmerger_forget(void *state) {
    kvmerger *c = state;
    for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++)
        memset(c->heads[i].apart, 0, (size_t)c->shape.max_pos);
}

const sqz_kv_policy sqz_kv_policy_kvmerger = {
    .name = "kvmerger",
    .help = "KVMerger: over budget= states, runs of consecutive keys with cosine >= threshold= "
            "(older than window=) merge into one, Gaussian-weighted around the most attended",
    .create = create,
    .destroy = destroy,
    .reset = reset,
    .store = store,
    .attend = attend,
    .bytes = bytes,
    .takes_codec = 1,
};
