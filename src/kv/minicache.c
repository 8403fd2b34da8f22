/* kv/minicache.c - the "minicache" KV policy: merging across depth (Liu et al. 2024, "MiniCache:
 * KV Cache Compression in Depth Dimension for Large Language Models").
 *
 * From layer start= (default n_layers/2) on, layers pair up (start, start+1), (start+2, ...).
 * For each token and KV head, the pair's two vectors x_a, x_b (keys, and separately values)
 * are split into magnitude and direction; one shared direction is kept, the SLERP of the two
 * unit vectors at t = 1/2 - which is exactly (x_a/|x_a| + x_b/|x_b|) normalized - and each
 * layer keeps its own magnitude; attention of layer a (b) reads |x_a| e (|x_b| e). The token
 * retention rule keeps a pair unmerged (both vectors exact) when the vectors are too far apart:
 * normalized angular distance d = angle / pi above gamma= (default 0.3).
 *
 * A token is merged when the pair's second layer stores it (the first layer attended to it
 * exactly in that step; later steps see the merged state). Layers below start and a last
 * unpaired layer keep f32 rows.
 *
 * Deviation: the paper's retention threshold is relative to the minimum and maximum distance
 * over the tokens being merged (d > d_min + (d_max - d_min) gamma); a relative rule is not
 * defined for one token at a time, so gamma here is an absolute threshold on d in [0, 1]
 * (gamma=0: nothing merges; gamma=1: everything merges).
 *
 * Storage: directions, unmerged vectors and the layers outside pairs are rows in the policy's
 * storage codec (f16 by default; "minicache+q4" etc.), magnitudes f16, the retention index an
 * int per token and head. The codec's rows are neither centred nor given a recent window here
 * (directions are unit vectors; a merged state exists only once the pair's second layer stored
 * its token). Attention runs on the stored rows (kernels/attn.h), no decoded copy: a merged
 * token's key is |x| e, so its score is |x| (q . e) and its value's weight w |x| - the shared
 * direction rows are read once per KV head with the magnitudes applied to scores and weights;
 * the second layer's kept rows are read one by one where the index points.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/types.h"
#include "kv/kv.h"
#include "core/params.h"
#include "math/hadamard.h"


/* One of K or V of a layer pair. */
typedef struct mc_half {
    float *a;          /* [max_pos][Hkv][hd]: layer a's exact vectors, until layer b merges */
    uint8_t *d;        /* [max_pos][Hkv][rb]: the direction if merged, else layer a's vector */
    uint16_t *norm;    /* [max_pos][Hkv][2]: f16 magnitudes of layer a and b (merged tokens) */
    int *kept;         /* [max_pos][Hkv]: -1 merged, else index of layer b's vector in b */
    uint8_t *b;        /* [cap_b][rb] layer b's vectors of the kept tokens */
    int n_b, cap_b;
} mc_half;

typedef struct minicache {
    sqz_ctx *ctx;
    sqz_kv_shape shape;
    int start;
    float gamma;
    int n_pairs;
    mc_half *pairs;    /* [n_pairs][2] (K, V) */
    uint8_t **plain;   /* [L] [2][max_pos][Hkv][rb] k then v rows of unpaired layers (NULL if
                        * paired) */
    sqz_kv_codec codec;
    sqz_kvrow_fmt fmt; /* one head's row */
    size_t rb;
    float *tmp;        /* [hd] */
    float *s, *w;      /* [Hkv][group][max_pos] attention probabilities; value weights */
    float *qr, *acc;   /* [Hkv][group][hd] rotated queries; outputs in the rows' rotation */
    sqz_attn_kernels kr;
    int n_pos;
} minicache;

static int pair_of(const minicache *c, int layer) {
    if (layer < c->start) return -1;
    const int p = (layer - c->start) / 2;
    return p < c->n_pairs ? p : -1;
}

static void destroy(void *state) {
    minicache *c = state;
    if (!c) return;
    for (int i = 0; c->pairs && i < 2 * c->n_pairs; i++) {
        mc_half *h = &c->pairs[i];
        free(h->a), free(h->d), free(h->norm), free(h->kept), free(h->b);
    }
    for (int l = 0; c->plain && l < c->shape.n_layers; l++) free(c->plain[l]);
    free(c->pairs), free(c->plain), free(c->tmp), free(c->s), free(c->w), free(c->qr), free(c->acc);
    free(c);
}

static sqz_status create(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         const sqz_kv_codec *codec, void **state) {
    int start = shape->n_layers / 2;
    float gamma = 0.3f;
    char buf[256];
    const sqz_param p[] = { { "start", 'i', &start, 0, shape->n_layers - 1 },
                                { "gamma", 'f', &gamma, 0, 1 } };
    sqz_status st = sqz_params_parse(ctx, "KV policy", "minicache", params, p, 2, buf, sizeof buf);
    if (st) return st;
    sqz_kvrow_fmt fmt;
    if ((st = sqz_kv_codec_fmt(ctx, codec, "minicache", "a head's key/value row",
                               shape->head_dim, &fmt)))
        return st;
    minicache *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->ctx = ctx;
    c->codec = *codec;
    c->codec.recent = 0;
    c->fmt = fmt;
    c->rb = sqz_kvrow_bytes(&fmt);
    c->shape = *shape;
    c->start = start, c->gamma = gamma;
    c->n_pairs = (shape->n_layers - start) / 2;
    const size_t P = (size_t)shape->max_pos, Hkv = (size_t)shape->n_kv_heads,
                 D = Hkv * (size_t)shape->head_dim;
    c->pairs = calloc((size_t)(2 * c->n_pairs) + 1, sizeof *c->pairs);
    c->plain = calloc((size_t)shape->n_layers, sizeof *c->plain);
    c->tmp = malloc((size_t)shape->head_dim * sizeof(float));
    c->s = malloc((size_t)shape->n_heads * P * sizeof(float));
    c->w = malloc((size_t)shape->n_heads * P * sizeof(float));
    c->qr = malloc((size_t)shape->n_heads * (size_t)shape->head_dim * sizeof(float));
    c->acc = malloc((size_t)shape->n_heads * (size_t)shape->head_dim * sizeof(float));
    c->kr = sqz_attn_kernels_best();
    int ok = c->pairs && c->plain && c->tmp && c->s && c->w && c->qr && c->acc;
    for (int i = 0; ok && i < 2 * c->n_pairs; i++) {
        mc_half *h = &c->pairs[i];
        h->a = malloc(P * D * sizeof(float));
        h->d = malloc(P * Hkv * c->rb);
        h->norm = malloc(P * Hkv * 2 * sizeof(uint16_t));
        h->kept = malloc(P * Hkv * sizeof(int));
        ok = h->a && h->d && h->norm && h->kept;
    }
    for (int l = 0; ok && l < shape->n_layers; l++)
        if (pair_of(c, l) < 0) ok = (c->plain[l] = malloc(2 * P * Hkv * c->rb)) != NULL;
    return sqz_kv_create_end(ctx, shape, ok, c, destroy, state);
}

static void reset(void *state) {
    minicache *c = state;
    c->n_pos = 0;
    for (int i = 0; i < 2 * c->n_pairs; i++) c->pairs[i].n_b = 0;
}

/* Merges layer b's vectors x [n][Hkv*hd] of positions pos.. into h, where layer a's are. */
static sqz_status merge(minicache *c, mc_half *h, int pos, int n, const float *x) {
    const int Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim;
    for (int t = 0; t < n; t++)
        for (int g = 0; g < Hkv; g++) {
            const size_t i = (size_t)(pos + t) * Hkv + g;
            const float *a = h->a + i * hd;
            const float *b = x + ((size_t)t * Hkv + g) * hd;
            double na = 0, nb = 0, dot = 0;
            for (int d = 0; d < hd; d++) {
                na += (double)a[d] * a[d];
                nb += (double)b[d] * b[d];
                dot += (double)a[d] * b[d];
            }
            na = sqrt(na), nb = sqrt(nb);
            double cosv = na > 0 && nb > 0 ? dot / (na * nb) : -1;
            cosv = cosv > 1 ? 1 : cosv < -1 ? -1 : cosv;
            const double dist = acos(cosv) / M_PI;
            /* SLERP(t=1/2) of the unit vectors = their normalized sum */
            double ns = 0;
            for (int d = 0; d < hd; d++) {
                const double e = a[d] / na + b[d] / nb;
                ns += e * e;
            }
            if (dist > c->gamma || !(na > 0 && nb > 0) || ns < 1e-12) {
                if (h->n_b == h->cap_b) {
                    int cap = h->cap_b ? 2 * h->cap_b : 256;
                    uint8_t *nbuf = realloc(h->b, (size_t)cap * c->rb);
                    if (!nbuf) return sqz_fail(c->ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
                    h->b = nbuf, h->cap_b = cap;
                }
                sqz_kv_codec_encode(&c->codec, &c->fmt, a, NULL, h->d + i * c->rb);
                sqz_kv_codec_encode(&c->codec, &c->fmt, b, NULL, h->b + (size_t)h->n_b * c->rb);
                h->kept[i] = h->n_b++;
                continue;
            }
            ns = sqrt(ns);
            for (int d = 0; d < hd; d++) c->tmp[d] = (float)((a[d] / na + b[d] / nb) / ns);
            sqz_kv_codec_encode(&c->codec, &c->fmt, c->tmp, NULL, h->d + i * c->rb);
            h->norm[2 * i] = sqz_f32_to_f16((float)na), h->norm[2 * i + 1] = sqz_f32_to_f16((float)nb);
            h->kept[i] = -1;
        }
    return SQZ_OK;
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    minicache *c = state;
    const int Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim, D = Hkv * hd;
    const int p = pair_of(c, layer);
    if (pos + n > c->n_pos) c->n_pos = pos + n;
    if (p < 0) {
        uint8_t *dst = c->plain[layer];
        const size_t half = (size_t)c->shape.max_pos * Hkv * c->rb;
        for (size_t i = 0; i < (size_t)n * Hkv; i++) {
            const size_t r = (size_t)pos * Hkv + i;
            sqz_kv_codec_encode(&c->codec, &c->fmt, k + i * hd, NULL, dst + r * c->rb);
            sqz_kv_codec_encode(&c->codec, &c->fmt, v + i * hd, NULL, dst + half + r * c->rb);
        }
        return SQZ_OK;
    }
    for (int kv = 0; kv < 2; kv++) {
        mc_half *h = &c->pairs[2 * p + kv];
        const float *x = kv ? v : k;
        if (layer == c->start + 2 * p) { /* layer a: held exactly until b comes */
            if (pos == 0) h->n_b = 0;
            memcpy(h->a + (size_t)pos * D, x, (size_t)n * D * sizeof(float));
        } else {
            sqz_status st = merge(c, h, pos, n, x);
            if (st) return st;
        }
    }
    return SQZ_OK;
}

static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    minicache *c = state;
    const int Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim, D = Hkv * hd;
    const int p = pair_of(c, layer), P = pos + n;
    if (p < 0) { /* attention on the stored rows, the query heads of a KV head together */
        const uint8_t *src = c->plain[layer];
        const size_t half = (size_t)c->shape.max_pos * Hkv * c->rb;
        const int Hq = c->shape.n_heads, group = Hq / Hkv;
        for (int g = 0; g < Hkv; g++)
            for (int t = 0; t < n; t++) {
                const size_t qo = ((size_t)t * Hq + (size_t)g * group) * hd;
                sqz_kv_attend_rows(&c->kr, &c->codec, &c->fmt, group, q + qo, src + g * c->rb,
                                   src + half + g * c->rb, (size_t)Hkv * c->rb, pos + t + 1,
                                   1.0f / sqrtf((float)hd), c->s, out + qo);
            }
        return;
    }
    const int is_b = layer != c->start + 2 * p;
    const mc_half *hk = &c->pairs[2 * p], *hv = &c->pairs[2 * p + 1];
    const int Hq = c->shape.n_heads, group = Hq / Hkv;
    const size_t mp = (size_t)c->shape.max_pos, rb = c->rb, ld = (size_t)Hkv * rb;
    /* layer a's tokens of this step are not merged yet: its exact rows */
    const int merged_end = is_b ? P : pos;
    /* (rows over kv/codec.c's 4096-float buffer are stored unrotated) */
    const int rot = sqz_kv_codec_rotates(&c->codec, &c->fmt) && hd <= 4096;
    const sqz_kvrow_fmt f32 = { SQZ_KVROW_F32, hd, hd };
    const sqz_kvrow_fmt *fmt = &c->fmt;
    const sqz_attn_kernels *kr = &c->kr;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1 && Hkv > 1)
    for (int g = 0; g < Hkv; g++) {
        float *s = c->s + (size_t)g * group * mp, *w = c->w + (size_t)g * group * mp;
        float *qr = c->qr + (size_t)g * group * hd, *acc = c->acc + (size_t)g * group * hd;
        for (int t = 0; t < n; t++) {
            const int Pt = pos + t + 1, M = merged_end < Pt ? merged_end : Pt;
            const float *qt = q + ((size_t)t * Hq + (size_t)g * group) * hd;
            float *ot = out + ((size_t)t * Hq + (size_t)g * group) * hd;
            const float *qq = qt; /* the query in the stored rows' rotation */
            if (rot) {
                memcpy(qr, qt, (size_t)group * hd * sizeof(float));
                for (int j = 0; j < group; j++) sqz_hadamard_hashed(qr + (size_t)j * hd, hd, 0);
                qq = qr;
            }
            /* keys: the shared rows of every stored token, then magnitudes / kept rows */
            if (M) kr->scores(fmt, group, qq, hk->d + (size_t)g * rb, ld, M, scale, s, mp);
            for (int i = 0; i < M; i++) {
                const size_t idx = (size_t)i * Hkv + g;
                const int kept = hk->kept[idx];
                if (kept < 0) {
                    const float m = sqz_f16_to_f32(hk->norm[2 * idx + is_b]);
                    for (int j = 0; j < group; j++) s[(size_t)j * mp + i] *= m;
                } else if (is_b) { /* layer a's kept vector is the shared row itself */
                    kr->scores(fmt, group, qq, hk->b + (size_t)kept * rb, 0, 1, scale, s + i, mp);
                }
            }
            if (Pt > M)
                kr->scores(&f32, group, qt, hk->a + ((size_t)M * Hkv + g) * hd,
                           (size_t)D * sizeof(float), Pt - M, scale, s + M, mp);
            for (int j = 0; j < group; j++) kr->softmax(s + (size_t)j * mp, Pt);
            /* values: the shared rows weighted by w |x|, kept rows one by one */
            memset(acc, 0, (size_t)group * hd * sizeof(float));
            for (int i = 0; i < M; i++) {
                const size_t idx = (size_t)i * Hkv + g;
                const int kept = hv->kept[idx];
                const float m = kept < 0 ? sqz_f16_to_f32(hv->norm[2 * idx + is_b]) : 1.0f;
                for (int j = 0; j < group; j++)
                    w[(size_t)j * mp + i] = kept >= 0 && is_b ? 0.0f : s[(size_t)j * mp + i] * m;
                if (kept >= 0 && is_b)
                    kr->accum(fmt, group, s + i, mp, hv->b + (size_t)kept * rb, 0, 1, acc);
            }
            if (M) kr->accum(fmt, group, w, mp, hv->d + (size_t)g * rb, ld, M, acc);
            if (rot)
                for (int j = 0; j < group; j++) sqz_hadamard_hashed(acc + (size_t)j * hd, hd, 1);
            memcpy(ot, acc, (size_t)group * hd * sizeof(float));
            if (Pt > M)
                kr->accum(&f32, group, s + M, mp, hv->a + ((size_t)M * Hkv + g) * hd,
                          (size_t)D * sizeof(float), Pt - M, ot);
        }
    }
}

static size_t bytes(const void *state) {
    const minicache *c = state;
    const size_t Hkv = (size_t)c->shape.n_kv_heads;
    const size_t P = (size_t)c->n_pos;
    size_t b = 0;
    for (int l = 0; l < c->shape.n_layers; l++)
        if (!c->plain || c->plain[l]) b += 2 * P * Hkv * c->rb;
    /* per pair and K/V: shared rows, two f16 magnitudes and an index per token and head, plus
     * the second vectors of the kept tokens */
    for (int i = 0; i < 2 * c->n_pairs; i++)
        b += P * Hkv * (c->rb + 2 * sizeof(uint16_t) + sizeof(int)) +
             (size_t)c->pairs[i].n_b * c->rb;
    return b;
}

/* Test hook: tokens kept unmerged so far in the pair starting at layer (K: kv=0, V: kv=1). */
int sqz_kv_minicache_kept(const void *state, int layer, int kv);
int sqz_kv_minicache_kept(const void *state, int layer, int kv) {
    const minicache *c = state;
    const int p = pair_of(c, layer);
    return p < 0 ? -1 : c->pairs[2 * p + kv].n_b;
}

const sqz_kv_policy sqz_kv_policy_minicache = {
    .name = "minicache",
    .help = "MiniCache: from layer start= on, layer pairs share one SLERP-merged direction per "
            "token (own magnitudes); pairs farther apart than gamma= (angle/pi) stay unmerged",
    .create = create,
    .destroy = destroy,
    .reset = reset,
    .store = store,
    .attend = attend,
    .bytes = bytes,
    .takes_codec = 1,
};
