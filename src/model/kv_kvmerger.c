/* kv_kvmerger.c - the "kvmerger" KV policy: adaptive merging of similar consecutive states
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
 * Deviations: the paper chooses sigma from its analysis of the kernel; here it adapts to the
 * set's own spread. The budget is the trigger: when the similar runs do not bring the cache
 * under it, the cache holds more than budget= (merging never evicts).
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/kv.h"
#include "model/kv_params.h"


typedef struct km_head {
    float *k, *v;     /* [max_pos][hd] */
    float *score;     /* [max_pos] */
    int n;
} km_head;

typedef struct kvmerger {
    sqz_ctx *ctx;
    sqz_kv_shape shape;
    float threshold;
    int budget, window;
    km_head *heads;   /* [L][Hkv] */
} kvmerger;

static void destroy(void *state) {
    kvmerger *c = state;
    if (!c) return;
    for (int i = 0; c->heads && i < c->shape.n_layers * c->shape.n_kv_heads; i++)
        free(c->heads[i].k), free(c->heads[i].v), free(c->heads[i].score);
    free(c->heads);
    free(c);
}

static sqz_status create(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         const sqz_kv_codec *codec, void **state) {
    float threshold = 0.8f;
    int budget = 512, window = 32;
    char buf[256];
    const sqz_kv_param p[] = { { "threshold", 'f', &threshold, -1, 1 },
                                { "budget", 'i', &budget, 1, 1 << 20 },
                                { "window", 'i', &window, 0, 1 << 20 } };
    sqz_status st = sqz_kv_parse_params(ctx, "kvmerger", params, p, 3, buf, sizeof buf);
    if (st) return st;
    kvmerger *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->ctx = ctx;
    c->shape = *shape;
    c->threshold = threshold, c->budget = budget, c->window = window;
    const int nh = shape->n_layers * shape->n_kv_heads;
    const size_t P = (size_t)shape->max_pos, hd = (size_t)shape->head_dim;
    c->heads = calloc((size_t)nh, sizeof *c->heads);
    int ok = c->heads != NULL;
    for (int i = 0; ok && i < nh; i++) {
        km_head *h = &c->heads[i];
        h->k = malloc(P * hd * sizeof(float));
        h->v = malloc(P * hd * sizeof(float));
        h->score = malloc(P * sizeof(float));
        ok = h->k && h->v && h->score;
    }
    if (!ok) {
        destroy(c);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for a KV cache of %d positions",
                        shape->max_pos);
    }
    *state = c;
    return SQZ_OK;
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
        for (int t = 0; t < n; t++) {
            memcpy(h->k + (size_t)(h->n + t) * hd, k + ((size_t)t * Hkv + g) * hd, hd * sizeof(float));
            memcpy(h->v + (size_t)(h->n + t) * hd, v + ((size_t)t * Hkv + g) * hd, hd * sizeof(float));
            h->score[h->n + t] = 0;
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

/* Merges the similar runs among the states older than the window (in place); acc: 2*hd
 * doubles of scratch. */
static void merge_head(const kvmerger *c, km_head *h, double *acc) {
    const int hd = c->shape.head_dim;
    const int old = h->n - c->window; /* states [0, old) may merge */
    int w = 0;                        /* write index */
    for (int i = 0; i < h->n;) {
        int j = i + 1;
        if (i < old)
            while (j < old && cosine(h->k + (size_t)(j - 1) * hd, h->k + (size_t)j * hd, hd) >=
                                  c->threshold)
                j++;
        else
            j = i + 1;
        /* set [i, j) */
        float *kd = h->k + (size_t)w * hd, *vd = h->v + (size_t)w * hd;
        if (j - i == 1) {
            if (w != i) {
                memmove(kd, h->k + (size_t)i * hd, hd * sizeof(float));
                memmove(vd, h->v + (size_t)i * hd, hd * sizeof(float));
                h->score[w] = h->score[i];
            }
        } else {
            int piv = i;
            for (int t = i + 1; t < j; t++)
                if (h->score[t] > h->score[piv]) piv = t;
            const float *kp = h->k + (size_t)piv * hd;
            double s2 = 0, wsum = 0, score = 0;
            for (int t = i; t < j; t++) {
                s2 += sqdist(h->k + (size_t)t * hd, kp, hd);
                score += h->score[t];
            }
            s2 /= (double)(j - i - 1);
            /* kd may alias a member of the set (w <= i): accumulate first, in double */
            double *kacc = acc, *vacc = acc + hd;
            memset(acc, 0, 2 * (size_t)hd * sizeof *acc);
            for (int t = i; t < j; t++) {
                const double wt = s2 > 0 ? exp(-sqdist(h->k + (size_t)t * hd, kp, hd) / (2 * s2)) : 1.0;
                wsum += wt;
                for (int x = 0; x < hd; x++) {
                    kacc[x] += wt * h->k[(size_t)t * hd + x];
                    vacc[x] += wt * h->v[(size_t)t * hd + x];
                }
            }
            for (int x = 0; x < hd; x++) kd[x] = (float)(kacc[x] / wsum), vd[x] = (float)(vacc[x] / wsum);
            h->score[w] = (float)score;
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
        const int N = h->n, before = N - n; /* states held before this step's n */
        float *s = malloc((size_t)N * sizeof(float));
        if (!s) continue;
        for (int t = 0; t < n; t++)
            for (int j = 0; j < group; j++) {
                const int hq = g * group + j;
                const float *qh = q + ((size_t)t * Hq + hq) * hd;
                float *oh = out + ((size_t)t * Hq + hq) * hd;
                const int vis = before + t + 1;
                cblas_sgemv(CblasRowMajor, CblasNoTrans, vis, hd, scale, h->k, hd, qh, 1, 0.0f, s, 1);
                sqz_softmax(s, vis);
                cblas_sgemv(CblasRowMajor, CblasTrans, vis, hd, 1.0f, h->v, hd, s, 1, 0.0f, oh, 1);
                for (int p = 0; p < vis; p++) h->score[p] += s[p];
            }
        if (h->n > c->budget) {
            double *acc = malloc(2 * (size_t)hd * sizeof *acc);
            if (acc) merge_head(c, h, acc); /* without scratch the merge waits a step */
            free(acc);
        }
        free(s);
    }
}

static size_t bytes(const void *state) {
    const kvmerger *c = state;
    size_t b = 0;
    for (int i = 0; i < c->shape.n_layers * c->shape.n_kv_heads; i++)
        b += (size_t)c->heads[i].n * (2 * (size_t)c->shape.head_dim + 1) * sizeof(float);
    return b;
}

/* Test hook: the states held by (layer, KV head). */
int sqz_kv_kvmerger_held(const void *state, int layer, int kv_head, const float **k,
                         const float **v, const float **score);
int sqz_kv_kvmerger_held(const void *state, int layer, int kv_head, const float **k,
                         const float **v, const float **score) {
    const kvmerger *c = state;
    const km_head *h = &c->heads[layer * c->shape.n_kv_heads + kv_head];
    if (k) *k = h->k;
    if (v) *v = h->v;
    if (score) *score = h->score;
    return h->n;
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
};
