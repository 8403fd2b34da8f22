/* kv/xkv.c - the "xkv" KV policy: cross-layer SVD (Chang et al. 2025, "xKV: Cross-Layer SVD for
 * KV-Cache Compression").
 *
 * Layers are grouped by group=G (default 2). When decoding starts (the first one-token store
 * after a prompt of more than window= tokens), the keys of a group's layers, stacked side by
 * side as X = [K_l0 | K_l1 | ...] (tokens x G*Hkv*hd), are factored by a truncated SVD,
 * X ~ C B with B (r x G*Hkv*hd, orthonormal rows: the top right singular vectors, from the
 * eigenvectors of X^T X) and C = X B^T (tokens x r): one shared basis for the group and r
 * coefficients per token shared by all its layers (likewise, separately, the values). Later
 * tokens are kept exactly in a residual window of the window= most recent positions; a token
 * leaving the window is projected onto the basis (c = x B^T, x its stacked row), which is why
 * the window holds at least one token: a token's stacked row is complete only once every layer
 * of the group has stored it.
 *
 * Attention on the compressed part runs in coefficient space: with B_{l,h} the r x hd slice of
 * the basis for layer l and KV head h, q . k_p = (B_{l,h} q) . c_p, so each query head is
 * projected once and dotted with the coefficients; the values' weighted coefficient sum is
 * mapped back with B_{l,h}^T once per head. The prompt's own attention (before compression) is
 * exact, as in the paper, which compresses the prefilled cache.
 *
 * Coefficients are held in the policy's storage codec (f16 by default; "xkv:rank=32+q8"
 * quantizes them, rows of rank r channels, so r must then be a multiple of 32; key
 * coefficients are centred as kv/codec.h describes - a shift of every key coefficient by the
 * same vector moves each query's scores by one constant). The codec's recent= does not apply:
 * the exact window plays its part. Bases and the exact window are f32.
 *
 * Deviations: the paper factors the prefill only and keeps generated tokens uncompressed; here
 * they are projected onto the prefill basis once they leave the window, so memory stays bounded
 * during long generations.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attn.h"
#include "kernels/ops.h"
#include "kv/kv.h"
#include "core/params.h"
#include "math/eigen.h"
#include "math/hadamard.h"


typedef struct xkv_group {
    int l0, nl;        /* first layer, layers */
    int r;             /* rank (<= nl * D) */
    int has_basis;
    float *bk, *bv;    /* [r][nl*D] */
    uint8_t *ck, *cv;  /* [max_pos][rb] coefficients of positions [0, n_coef), encoded */
    float *mu;         /* [r] centre of the key coefficients (quantizing codecs) */
    int has_mu;
    sqz_kvrow_fmt fmt; /* rows of r coefficients */
    size_t rb;
    int n_coef;
} xkv_group;

typedef struct xkv_layer {
    float *k, *v;      /* [cap][D] exact rows of positions [n_coef, n_coef + n_full) */
    int n_full, cap;
} xkv_layer;

typedef struct xkv {
    sqz_ctx *ctx;
    sqz_kv_shape shape;
    int G, rank, window;
    int n_groups;
    xkv_group *groups;
    xkv_layer *layers;
    sqz_kv_codec codec;
    sqz_attn_kernels kr;
    float *tmp;        /* [tmp_cap] coefficients before encoding */
    size_t tmp_cap;
    float *s, *qp, *acc; /* attention scratch: [Hq][max_pos], [Hq][rank], [Hq][rank] */
    float *qmu;          /* [Hq] */
} xkv;

static void destroy(void *state) {
    xkv *c = state;
    if (!c) return;
    for (int g = 0; c->groups && g < c->n_groups; g++) {
        xkv_group *gr = &c->groups[g];
        free(gr->bk), free(gr->bv), free(gr->ck), free(gr->cv), free(gr->mu);
    }
    free(c->tmp), free(c->s), free(c->qp), free(c->acc), free(c->qmu);
    for (int l = 0; c->layers && l < c->shape.n_layers; l++) free(c->layers[l].k), free(c->layers[l].v);
    free(c->groups), free(c->layers);
    free(c);
}

static sqz_status create(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         const sqz_kv_codec *codec, void **state) {
    const int D = shape->n_kv_heads * shape->head_dim;
    int G = 2, rank = -1, window = 32;
    char buf[256];
    const sqz_param p[] = { { "rank", 'i', &rank, 1, 1 << 20 },
                                { "group", 'i', &G, 1, shape->n_layers },
                                { "window", 'i', &window, 1, 1 << 20 } };
    sqz_status st = sqz_params_parse(ctx, "KV policy", "xkv", params, p, 3, buf, sizeof buf);
    if (st) return st;
    if (rank < 0) rank = G * D / 4;
    if (rank > G * D)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "KV policy xkv: parameter 'rank' = %d exceeds the %d dimensions of a group "
                        "(group=%d layers x %d KV heads x %d)", rank, G * D, G,
                        shape->n_kv_heads, shape->head_dim);
    xkv *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->ctx = ctx;
    c->shape = *shape;
    c->G = G, c->rank = rank, c->window = window;
    c->n_groups = (shape->n_layers + G - 1) / G;
    c->codec = *codec;
    c->kr = sqz_attn_kernels_best();
    c->groups = calloc((size_t)c->n_groups, sizeof *c->groups);
    c->layers = calloc((size_t)shape->n_layers, sizeof *c->layers);
    c->s = malloc((size_t)shape->n_heads * shape->max_pos * sizeof(float));
    c->qp = malloc((size_t)shape->n_heads * rank * sizeof(float));
    c->acc = malloc((size_t)shape->n_heads * rank * sizeof(float));
    c->qmu = malloc((size_t)shape->n_heads * sizeof(float));
    int ok = c->groups && c->layers && c->s && c->qp && c->acc && c->qmu;
    for (int g = 0; ok && g < c->n_groups; g++) {
        xkv_group *gr = &c->groups[g];
        gr->l0 = g * G;
        gr->nl = shape->n_layers - gr->l0 < G ? shape->n_layers - gr->l0 : G;
        /* a short last group cannot hold more than its own dimensions */
        gr->r = rank < gr->nl * D ? rank : gr->nl * D;
        sqz_status fs = sqz_kv_codec_fmt(ctx, codec, "xkv", "a rank's coefficient row", gr->r,
                                         &gr->fmt);
        if (fs) {
            destroy(c);
            return fs;
        }
        gr->rb = sqz_kvrow_bytes(&gr->fmt);
        gr->ck = malloc((size_t)shape->max_pos * gr->rb);
        gr->cv = malloc((size_t)shape->max_pos * gr->rb);
        gr->mu = malloc((size_t)gr->r * sizeof(float));
        ok = gr->ck && gr->cv && gr->mu;
    }
    return sqz_kv_create_end(ctx, shape, ok, c, destroy, state);
}

static void reset(void *state) {
    xkv *c = state;
    for (int g = 0; g < c->n_groups; g++) {
        xkv_group *gr = &c->groups[g];
        gr->has_basis = 0, gr->n_coef = 0, gr->has_mu = 0;
        free(gr->bk), free(gr->bv);
        gr->bk = gr->bv = NULL;
    }
    for (int l = 0; l < c->shape.n_layers; l++) {
        xkv_layer *ly = &c->layers[l];
        free(ly->k), free(ly->v);
        ly->k = ly->v = NULL;
        ly->n_full = ly->cap = 0;
    }
}

/* Basis of the group from its n held rows (all exact): top-r eigenvectors of X^T X. */
static sqz_status build_basis(xkv *c, xkv_group *gr, int n) {
    const int D = c->shape.n_kv_heads * c->shape.head_dim, W = gr->nl * D;
    float *x = malloc((size_t)n * W * sizeof(float));
    float *gram = malloc((size_t)W * W * sizeof(float));
    double *a = malloc((size_t)W * W * sizeof(double));
    gr->bk = malloc((size_t)gr->r * W * sizeof(float));
    gr->bv = malloc((size_t)gr->r * W * sizeof(float));
    sqz_status st = SQZ_OK;
    if (!x || !gram || !a || !gr->bk || !gr->bv) st = SQZ_ERR_NOMEM;
    for (int kv = 0; kv < 2 && !st; kv++) {
        for (int j = 0; j < gr->nl; j++) {
            const float *src = kv ? c->layers[gr->l0 + j].v : c->layers[gr->l0 + j].k;
            for (int t = 0; t < n; t++)
                memcpy(x + (size_t)t * W + (size_t)j * D, src + (size_t)t * D, D * sizeof(float));
        }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, W, n, 1.0f, x, W, 0.0f, gram, W);
        for (int i = 0; i < W; i++)
            for (int j = 0; j < W; j++)
                a[(size_t)i * W + j] = gram[i <= j ? (size_t)i * W + j : (size_t)j * W + i];
        if (sqz_eigen_top(a, W, gr->r, kv ? gr->bv : gr->bk, NULL)) st = SQZ_ERR_INTERNAL;
    }
    free(x), free(gram), free(a);
    if (st) {
        free(gr->bk), free(gr->bv);
        gr->bk = gr->bv = NULL;
        return sqz_fail(c->ctx, st, "KV policy xkv: %s while factoring layers %d..%d",
                        st == SQZ_ERR_NOMEM ? "out of memory" : "eigensolver failed", gr->l0,
                        gr->l0 + gr->nl - 1);
    }
    gr->has_basis = 1;
    return SQZ_OK;
}

/* Moves the group's m oldest exact rows into coefficients: c = [x_l0 | x_l1 | ...] B^T. */
static sqz_status compress_oldest(xkv *c, xkv_group *gr, int m) {
    const int D = c->shape.n_kv_heads * c->shape.head_dim, W = gr->nl * D;
    const size_t need = (size_t)m * gr->r;
    if (need > c->tmp_cap) { /* grows to the prompt's size once; decode reuses it */
        float *t = realloc(c->tmp, need * sizeof(float));
        if (!t) return sqz_fail(c->ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
        c->tmp = t, c->tmp_cap = need;
    }
    for (int kv = 0; kv < 2; kv++) {
        float *coef = c->tmp;
        const float *B = kv ? gr->bv : gr->bk;
        for (int j = 0; j < gr->nl; j++) {
            const float *x = kv ? c->layers[gr->l0 + j].v : c->layers[gr->l0 + j].k;
            /* coef[m][r] (+)= x[m][D] . B[:, j*D .. j*D+D)^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, gr->r, D, 1.0f, x, D,
                        B + (size_t)j * D, W, j ? 1.0f : 0.0f, coef, gr->r);
        }
        if (!kv && sqz_kv_codec_centers(&c->codec) && !gr->has_mu) {
            sqz_kv_mean_rows(coef, m, (size_t)gr->r, gr->r, gr->mu);
            gr->has_mu = 1;
        }
        uint8_t *dst = (kv ? gr->cv : gr->ck) + (size_t)gr->n_coef * gr->rb;
        for (int t = 0; t < m; t++)
            sqz_kv_codec_encode(&c->codec, &gr->fmt, coef + (size_t)t * gr->r,
                                !kv && gr->has_mu ? gr->mu : NULL, dst + (size_t)t * gr->rb);
    }
    for (int j = 0; j < gr->nl; j++) {
        xkv_layer *ly = &c->layers[gr->l0 + j];
        const size_t keep = (size_t)(ly->n_full - m) * D;
        memmove(ly->k, ly->k + (size_t)m * D, keep * sizeof(float));
        memmove(ly->v, ly->v + (size_t)m * D, keep * sizeof(float));
        ly->n_full -= m;
    }
    gr->n_coef += m;
    return SQZ_OK;
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    xkv *c = state;
    const int D = c->shape.n_kv_heads * c->shape.head_dim;
    xkv_group *gr = &c->groups[layer / c->G];
    xkv_layer *ly = &c->layers[layer];
    if (pos != gr->n_coef + ly->n_full)
        return sqz_fail(c->ctx, SQZ_ERR_ARG, "KV policy xkv: layer %d stores position %d, expected "
                        "%d (positions must be appended)", layer, pos, gr->n_coef + ly->n_full);
    if (layer == gr->l0) {
        /* every layer of the group holds positions < pos: factor or compress them now */
        if (!gr->has_basis && n == 1 && pos > c->window) {
            sqz_status st = build_basis(c, gr, pos);
            if (st) return st;
        }
        if (gr->has_basis) {
            int m = pos + n - c->window - gr->n_coef; /* rows leaving the window */
            if (m > pos - gr->n_coef) m = pos - gr->n_coef;
            if (m > 0) {
                sqz_status st = compress_oldest(c, gr, m);
                if (st) return st;
            }
        }
    }
    if (ly->n_full + n > ly->cap) {
        int cap = ly->cap ? ly->cap : 64;
        while (cap < ly->n_full + n) cap *= 2;
        float *nk = realloc(ly->k, (size_t)cap * D * sizeof(float));
        if (nk) ly->k = nk;
        float *nv = nk ? realloc(ly->v, (size_t)cap * D * sizeof(float)) : NULL;
        if (nv) ly->v = nv;
        if (!nk || !nv) return sqz_fail(c->ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
        ly->cap = cap;
    }
    memcpy(ly->k + (size_t)ly->n_full * D, k, (size_t)n * D * sizeof(float));
    memcpy(ly->v + (size_t)ly->n_full * D, v, (size_t)n * D * sizeof(float));
    ly->n_full += n;
    /* after a long prompt the buffer shrinks back towards the window */
    if (gr->has_basis && ly->cap > 4 * (c->window + 64) && ly->n_full <= c->window + 1) {
        int cap = c->window + 64;
        float *nk = realloc(ly->k, (size_t)cap * D * sizeof(float));
        if (nk) ly->k = nk;
        float *nv = nk ? realloc(ly->v, (size_t)cap * D * sizeof(float)) : NULL;
        if (nv) ly->v = nv;
        if (nk && nv) ly->cap = cap;
    }
    return SQZ_OK;
}

static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    xkv *c = state;
    const sqz_kv_shape *s = &c->shape;
    const int Hq = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim, D = Hkv * hd;
    const int group = Hq / Hkv;
    xkv_group *gr = &c->groups[layer / c->G];
    xkv_layer *ly = &c->layers[layer];
    const int nc = gr->n_coef;
    if (nc == 0) { /* nothing compressed: exact */
        sqz_attention_f32(ly->k, ly->v, D, s, pos, n, q, out, n_threads);
        return;
    }
    const int r = gr->r, W = gr->nl * D, off = (layer - gr->l0) * D;
    const float scale = 1.0f / sqrtf((float)hd);
    const int rot = sqz_kv_codec_rotates(&c->codec, &gr->fmt);
    /* All query heads at once: every head of the layer reads the same coefficient rows, so
     * the kernels decode each row once for all of them (one thread: the rows are short). */
    for (int t = 0; t < n; t++) {
        const int P = pos + t + 1;
        float *sc = c->s, *qp = c->qp, *acc = c->acc;
        for (int h = 0; h < Hq; h++) {
            const int g = h / group;
            /* qp_h = B_{l,g} q_h (rotated like the stored rows) */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, r, hd, 1.0f, gr->bk + off + (size_t)g * hd,
                        W, q + ((size_t)t * Hq + h) * hd, 1, 0.0f, qp + (size_t)h * r, 1);
            /* keys were stored centred and the exact window is not: the scores of the coded
             * rows get their q . mu back */
            float qm = 0;
            if (gr->has_mu)
                for (int i = 0; i < r; i++) qm += qp[(size_t)h * r + i] * gr->mu[i];
            c->qmu[h] = qm * scale;
            if (rot) sqz_hadamard_hashed(qp + (size_t)h * r, r, 0);
        }
        c->kr.scores(&gr->fmt, Hq, qp, gr->ck, gr->rb, nc, scale, sc, (size_t)P);
        for (int h = 0; h < Hq; h++) {
            const int g = h / group;
            if (gr->has_mu)
                for (int p = 0; p < nc; p++) sc[(size_t)h * P + p] += c->qmu[h];
            cblas_sgemv(CblasRowMajor, CblasNoTrans, P - nc, hd, scale, ly->k + (size_t)g * hd, D,
                        q + ((size_t)t * Hq + h) * hd, 1, 0.0f, sc + (size_t)h * P + nc, 1);
            sqz_softmax(sc + (size_t)h * P, P);
        }
        /* out = B_v^T (sum_p s_p cv_p) + sum_p s_p v_p */
        memset(acc, 0, (size_t)Hq * r * sizeof(float));
        c->kr.accum(&gr->fmt, Hq, sc, (size_t)P, gr->cv, gr->rb, nc, acc);
        for (int h = 0; h < Hq; h++) {
            const int g = h / group;
            float *oh = out + ((size_t)t * Hq + h) * hd;
            if (rot) sqz_hadamard_hashed(acc + (size_t)h * r, r, 1);
            cblas_sgemv(CblasRowMajor, CblasTrans, r, hd, 1.0f, gr->bv + off + (size_t)g * hd, W,
                        acc + (size_t)h * r, 1, 0.0f, oh, 1);
            cblas_sgemv(CblasRowMajor, CblasTrans, P - nc, hd, 1.0f, ly->v + (size_t)g * hd, D,
                        sc + (size_t)h * P + nc, 1, 1.0f, oh, 1);
        }
    }
}

static size_t bytes(const void *state) {
    const xkv *c = state;
    const size_t D = (size_t)c->shape.n_kv_heads * c->shape.head_dim;
    size_t b = 0;
    for (int g = 0; g < c->n_groups; g++) {
        const xkv_group *gr = &c->groups[g];
        b += 2 * (size_t)gr->n_coef * gr->rb + (gr->has_mu ? (size_t)gr->r * sizeof(float) : 0);
        if (gr->has_basis) b += 2 * (size_t)gr->r * gr->nl * D * sizeof(float);
    }
    for (int l = 0; l < c->shape.n_layers; l++)
        b += 2 * (size_t)c->layers[l].n_full * D * sizeof(float);
    return b;
}

const sqz_kv_policy sqz_kv_policy_xkv = {
    .name = "xkv",
    .help = "cross-layer SVD (xKV): group= layers share a rank= basis after the prompt, tokens "
            "kept as coefficients; the last window= exact",
    .create = create,
    .destroy = destroy,
    .reset = reset,
    .store = store,
    .attend = attend,
    .bytes = bytes,
    .takes_codec = 1,
};
