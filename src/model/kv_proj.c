/* kv_proj.c - the "proj" KV policy: channel shrinking by fixed orthogonal projections, after
 * CSKV (Wang et al. 2024, "CSKV: Training-Efficient Channel Shrinking for KV Cache in
 * Long-Context Scenarios") and MatryoshkaKV (Lin et al. 2024, "MatryoshkaKV: Adaptive KV
 * Compression via Trainable Orthogonal Projection"), without their training step: the
 * projections are the principal directions (PCA, uncentred: eigenvectors of the second-moment
 * matrix) of calibration keys and values, per layer and KV head, computed by
 * sqz_kv_calibrate_proj (the `sqz kvcalib` command) and loaded with `proj:file=PATH,rank=R`.
 *
 * A key k (one KV head, hd channels) is stored as r coefficients c = P_k k, a value as
 * P_v v (P: r x hd, orthonormal rows). Attention runs in the projected space: q . (P_k^T c) =
 * (P_k q) . c, so each query is projected once per head and dotted with the coefficients; the
 * weighted sum of value coefficients is mapped back with P_v^T once per head. Coefficients are
 * rows of r channels in the policy's storage codec (f16 by default; "proj:...+q8" etc., r then
 * a multiple of 32; key coefficients centred per layer and KV head as kv_codec.h describes; the
 * codec's recent= does not apply), and attention runs on them (kernels/attn.h).
 *
 * File (GGUF, written by src/io/gguf.h): metadata sqz.kvproj.{n_layers, n_kv_heads, head_dim,
 * rank} (u32); tensors "kvproj.k.<layer>" and "kvproj.v.<layer>", F32, ne = [hd, rank, Hkv]:
 * per KV head `rank` orthonormal rows of hd floats, by decreasing calibration energy; and
 * "kvproj.ek.<layer>", "kvproj.ev.<layer>", F32 [rank, Hkv]: that energy (the eigenvalues / the
 * number of calibration tokens), for inspection. Any rank up to the stored one can be loaded.
 *
 * This file also holds a helper the cross-layer policies (kv_xkv.c) share: the top
 * eigenvectors of a symmetric matrix (LAPACK dsyevd, which libopenblas exports).
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "kernels/ops.h"
#include "model/kv.h"
#include "model/kv_params.h"
#include "model/model.h"
#include "model/session.h"
#include "sqz.h"

/* ------------------------------------------------------------------ shared helper */

/* LAPACK's symmetric eigensolver (column-major; the matrix is symmetric so the layout does not
 * matter). Eigenvalues come back ascending, eigenvector j in a[j*n .. j*n+n). */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info);

/* The r eigenvectors of the symmetric n x n matrix a (destroyed) with the largest eigenvalues,
 * as rows of vecs [r][n], by decreasing eigenvalue (vals[r] if not NULL). Each vector's sign is
 * fixed (its largest-magnitude entry positive) so results are reproducible. Returns 0 on
 * success. */
int sqz_kv_top_eigvecs(double *a, int n, int r, float *vecs, double *vals) {
    double *w = malloc((size_t)n * sizeof *w), wq;
    int lwork = -1, liwork = -1, iwq, info = 0;
    if (!w) return -1;
    dsyevd_("V", "U", &n, a, &n, w, &wq, &lwork, &iwq, &liwork, &info);
    lwork = (int)wq;
    liwork = iwq;
    double *work = malloc((size_t)lwork * sizeof *work);
    int *iwork = malloc((size_t)liwork * sizeof *iwork);
    if (!work || !iwork || info) info = -1;
    else dsyevd_("V", "U", &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
    if (!info)
        for (int j = 0; j < r; j++) {
            const double *e = a + (size_t)(n - 1 - j) * n;
            int big = 0;
            for (int i = 1; i < n; i++)
                if (fabs(e[i]) > fabs(e[big])) big = i;
            const double sg = e[big] < 0 ? -1.0 : 1.0;
            for (int i = 0; i < n; i++) vecs[(size_t)j * n + i] = (float)(sg * e[i]);
            if (vals) vals[j] = w[n - 1 - j];
        }
    free(w);
    free(work);
    free(iwork);
    return info;
}

/* ------------------------------------------------------------------ the proj policy */

enum { SQZ_KV_PROJ_MAX_HD = 1024 };

typedef struct kv_proj {
    sqz_kv_shape shape;
    int rope_pairs;   /* keys: whole RoPE pairs (rope_pair_basis) instead of the file's PCA */
    int r;            /* kept channels per KV head */
    float *pk, *pv;   /* [L][Hkv][r][hd] */
    uint8_t *ck, *cv; /* [L][max_pos][Hkv][rb] encoded coefficients */
    float *mu;        /* [L][Hkv][r] key coefficient centres */
    int *has_mu;      /* [L] */
    int n_pos;
    sqz_kv_codec codec;
    sqz_kvrow_fmt fmt;
    size_t rb;
    sqz_attn_kernels kr;
    float *s;         /* [Hkv][group * max_pos] */
    float *buf;       /* [buf_cap] coefficients / projected queries and outputs */
    size_t buf_cap;
} kv_proj;

static void destroy(void *state) {
    kv_proj *c = state;
    if (!c) return;
    free(c->pk), free(c->pv), free(c->ck), free(c->cv), free(c->mu), free(c->has_mu);
    free(c->s), free(c->buf);
    free(c);
}

/* Keys arrive after RoPE, which turns each channel pair (a_i, b_i) by the angle pos * theta_i.
 * A fixed basis of post-RoPE keys serves every position alike only if it commutes with those
 * turns, and (the thetas being distinct) the only such subspaces are sums of whole pairs. A PCA
 * of post-RoPE keys instead mixes pairs whose angles did not go round the circle within the
 * calibration windows (the slow, low-frequency ones): its quality then depends on the
 * position, and keys past the calibrated positions fall out of it. So keys keep the r/2 pairs
 * with the most calibration energy (E|k_a|^2 + E|k_b|^2, which RoPE leaves unchanged), read
 * from the stored second-moment eigenpairs: the second moment restricted to the stored rows is
 * sum_j e_j p_j p_j^T. basis: rk rows of hd, energy: rk; out: r rows of hd (unit vectors). */
static void rope_pair_basis(const float *basis, const float *energy, int rk, int hd, int r,
                            int interleaved, float *out) {
    const int half = hd / 2;
    double pe[SQZ_KV_PROJ_MAX_HD / 2];
    int order[SQZ_KV_PROJ_MAX_HD / 2];
    for (int i = 0; i < half; i++) {
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        double s = 0;
        for (int j = 0; j < rk; j++) {
            const double pa = basis[(size_t)j * hd + a], pb = basis[(size_t)j * hd + b];
            s += (double)energy[j] * (pa * pa + pb * pb);
        }
        pe[i] = s, order[i] = i;
    }
    for (int i = 0; i < half; i++) /* by decreasing energy, ties by index */
        for (int j = i + 1; j < half; j++)
            if (pe[order[j]] > pe[order[i]]) {
                const int t = order[i];
                order[i] = order[j], order[j] = t;
            }
    memset(out, 0, (size_t)r * hd * sizeof(float));
    for (int m = 0; m < r / 2; m++) {
        const int i = order[m], a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        out[(size_t)(2 * m) * hd + a] = 1.0f;
        out[(size_t)(2 * m + 1) * hd + b] = 1.0f;
    }
}

/* Loads the projections of path (rank r; r <= 0: all stored) into c. */
static sqz_status load_file(sqz_ctx *ctx, kv_proj *c, const char *path, int r) {
    sqz_gguf *g = NULL;
    sqz_status st = sqz_gguf_open(ctx, path, &g);
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sqz_ctx_error(ctx));
        return sqz_fail(ctx, st, "KV policy proj: cannot read file= %s", msg);
    }
    const sqz_kv_shape *s = &c->shape;
    uint32_t nl = 0, nh = 0, hd = 0, rk = 0;
    if ((st = sqz_gguf_get_u32(ctx, g, "sqz.kvproj.n_layers", &nl)) ||
        (st = sqz_gguf_get_u32(ctx, g, "sqz.kvproj.n_kv_heads", &nh)) ||
        (st = sqz_gguf_get_u32(ctx, g, "sqz.kvproj.head_dim", &hd)) ||
        (st = sqz_gguf_get_u32(ctx, g, "sqz.kvproj.rank", &rk)))
        goto done;
    if ((int)nl != s->n_layers || (int)nh != s->n_kv_heads || (int)hd != s->head_dim) {
        st = sqz_fail(ctx, SQZ_ERR_ARG,
                      "KV policy proj: file '%s' is for %u layers x %u KV heads x %u dims, the "
                      "model has %d x %d x %d", path, nl, nh, hd, s->n_layers, s->n_kv_heads,
                      s->head_dim);
        goto done;
    }
    if (r <= 0) r = (int)rk;
    if (r > (int)rk) {
        st = sqz_fail(ctx, SQZ_ERR_ARG, "KV policy proj: parameter 'rank' = %d exceeds the %u "
                      "channels stored in '%s'", r, rk, path);
        goto done;
    }
    if (c->rope_pairs && r % 2) {
        st = sqz_fail(ctx, SQZ_ERR_ARG, "KV policy proj: parameter 'rank' = %d must be even to "
                      "keep whole RoPE pairs of keys (or pairs=0)", r);
        goto done;
    }
    c->r = r;
    const size_t per = (size_t)s->n_kv_heads * (size_t)r * (size_t)s->head_dim;
    c->pk = malloc((size_t)s->n_layers * per * sizeof(float));
    c->pv = malloc((size_t)s->n_layers * per * sizeof(float));
    if (!c->pk || !c->pv) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for KV projections");
        goto done;
    }
    for (int l = 0; l < s->n_layers && !st; l++)
        for (int kv = 0; kv < 2 && !st; kv++) {
            char name[64];
            snprintf(name, sizeof name, "kvproj.%c.%d", kv ? 'v' : 'k', l);
            const sqz_gguf_tensor *t = sqz_gguf_find_tensor(g, name);
            if (!t || t->type != SQZ_TYPE_F32 || t->n_dims != 3 || t->ne[0] != hd ||
                t->ne[1] != rk || t->ne[2] != nh) {
                st = sqz_fail(ctx, SQZ_ERR_FORMAT, "KV policy proj: file '%s' lacks tensor %s "
                              "(F32, [%u, %u, %u])", path, name, hd, rk, nh);
                break;
            }
            float *dst = (kv ? c->pv : c->pk) + (size_t)l * per;
            if (kv || !c->rope_pairs) {
                for (uint32_t h = 0; h < nh; h++)
                    memcpy(dst + (size_t)h * r * hd, (const float *)t->data + (size_t)h * rk * hd,
                           (size_t)r * hd * sizeof(float));
                continue;
            }
            snprintf(name, sizeof name, "kvproj.ek.%d", l);
            const sqz_gguf_tensor *e = sqz_gguf_find_tensor(g, name);
            if (!e || e->type != SQZ_TYPE_F32 || e->n_dims != 2 || e->ne[0] != rk || e->ne[1] != nh) {
                st = sqz_fail(ctx, SQZ_ERR_FORMAT, "KV policy proj: file '%s' lacks tensor %s "
                              "(F32, [%u, %u])", path, name, rk, nh);
                break;
            }
            for (uint32_t h = 0; h < nh; h++)
                rope_pair_basis((const float *)t->data + (size_t)h * rk * hd,
                                (const float *)e->data + (size_t)h * rk, (int)rk, (int)hd, r,
                                c->shape.rope_interleaved, dst + (size_t)h * r * hd);
        }
done:
    sqz_gguf_close(g);
    return st;
}

static sqz_status create(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         const sqz_kv_codec *codec, void **state) {
    int rank = 0, pairs = 1;
    const char *file = NULL;
    char buf[4096];
    const sqz_kv_param p[] = { { "file", 's', &file, 0, 0 },
                                { "rank", 'i', &rank, 1, shape->head_dim },
                                { "pairs", 'i', &pairs, 0, 1 } };
    sqz_status st = sqz_kv_parse_params(ctx, "proj", params, p, 3, buf, sizeof buf);
    if (st) return st;
    if (pairs && (shape->head_dim % 2 || shape->head_dim > SQZ_KV_PROJ_MAX_HD))
        return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy proj: head_dim %d cannot keep RoPE pairs "
                        "(pairs=0 uses the file's basis as is)", shape->head_dim);
    if (!file)
        return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy proj: parameter 'file' is required (make "
                        "one with `sqz kvcalib MODEL -f TEXT -o FILE`)");
    kv_proj *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->shape = *shape;
    c->rope_pairs = pairs;
    if ((st = load_file(ctx, c, file, rank))) {
        destroy(c);
        return st;
    }
    if ((st = sqz_kv_codec_fmt(ctx, codec, "proj", "a head's coefficient row", c->r, &c->fmt))) {
        destroy(c);
        return st;
    }
    c->codec = *codec;
    c->rb = sqz_kvrow_bytes(&c->fmt);
    c->kr = sqz_attn_kernels_best();
    const size_t n = (size_t)shape->n_layers * shape->max_pos * shape->n_kv_heads;
    c->ck = malloc(n * c->rb);
    c->cv = malloc(n * c->rb);
    c->mu = malloc((size_t)shape->n_layers * shape->n_kv_heads * c->r * sizeof(float));
    c->has_mu = calloc((size_t)shape->n_layers, sizeof(int));
    c->s = malloc((size_t)shape->n_heads * shape->max_pos * sizeof(float));
    if (!c->ck || !c->cv || !c->mu || !c->has_mu || !c->s) {
        destroy(c);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for a KV cache of %d positions",
                        shape->max_pos);
    }
    *state = c;
    return SQZ_OK;
}

static void reset(void *state) {
    kv_proj *c = state;
    c->n_pos = 0;
    memset(c->has_mu, 0, (size_t)c->shape.n_layers * sizeof(int));
}

/* c->buf with room for n floats (grows to the largest batch once: no allocation per token). */
static float *scratch(kv_proj *c, size_t n) {
    if (n > c->buf_cap) {
        float *b = realloc(c->buf, n * sizeof(float));
        if (!b) return NULL;
        c->buf = b, c->buf_cap = n;
    }
    return c->buf;
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    kv_proj *c = state;
    const int Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim, r = c->r;
    const size_t per = (size_t)Hkv * r * hd;
    const size_t lc = (size_t)c->shape.max_pos * Hkv;
    float *x = scratch(c, (size_t)n * Hkv * r);
    if (!x) return SQZ_ERR_NOMEM;
    for (int kv = 0; kv < 2; kv++) {
        const float *src = kv ? v : k;
        const float *P = (kv ? c->pv : c->pk) + (size_t)layer * per;
        /* coefficients [n][h][r] = x[n][h][hd] . P_h^T, one GEMM per head */
        for (int h = 0; h < Hkv; h++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, hd, 1.0f,
                        src + (size_t)h * hd, Hkv * hd, P + (size_t)h * r * hd, hd, 0.0f,
                        x + (size_t)h * r, Hkv * r);
        float *mu = c->mu + (size_t)layer * Hkv * r;
        if (!kv && sqz_kv_codec_centers(&c->codec) && !c->has_mu[layer]) {
            for (int h = 0; h < Hkv; h++)
                sqz_kv_mean_rows(x + (size_t)h * r, n, (size_t)Hkv * r, r, mu + (size_t)h * r);
            c->has_mu[layer] = 1;
        }
        uint8_t *dst = (kv ? c->cv : c->ck) + ((size_t)layer * lc + (size_t)pos * Hkv) * c->rb;
        for (size_t i = 0; i < (size_t)n * Hkv; i++)
            sqz_kv_codec_encode(&c->codec, &c->fmt, x + i * r,
                                !kv && c->has_mu[layer] ? mu + (i % Hkv) * r : NULL,
                                dst + i * c->rb);
    }
    if (pos + n > c->n_pos) c->n_pos = pos + n;
    return SQZ_OK;
}

static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    kv_proj *c = state;
    const int Hq = c->shape.n_heads, Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim, r = c->r;
    const int group = Hq / Hkv;
    const size_t per = (size_t)Hkv * r * hd;
    const size_t lc = (size_t)c->shape.max_pos * Hkv;
    const float *pk = c->pk + (size_t)layer * per, *pv = c->pv + (size_t)layer * per;
    float *qp = scratch(c, 2 * (size_t)n * Hq * r);
    if (!qp) { /* no way to report from attend: fall back to zeros */
        memset(out, 0, (size_t)n * Hq * hd * sizeof(float));
        return;
    }
    float *op = qp + (size_t)n * Hq * r;
    /* q projected per head: q . P_k^T c = (P_k q) . c */
    for (int h = 0; h < Hq; h++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, hd, 1.0f, q + (size_t)h * hd,
                    Hq * hd, pk + (size_t)(h / group) * r * hd, hd, 0.0f, qp + (size_t)h * r,
                    Hq * r);
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t ld = (size_t)Hkv * c->rb;
    const uint8_t *K = c->ck + (size_t)layer * lc * c->rb, *V = c->cv + (size_t)layer * lc * c->rb;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1 && Hkv > 1)
    for (int g = 0; g < Hkv; g++) {
        float *s = c->s + (size_t)g * group * c->shape.max_pos;
        for (int t = 0; t < n; t++) {
            const size_t o = ((size_t)t * Hq + (size_t)g * group) * r;
            sqz_kv_attend_rows(&c->kr, &c->codec, &c->fmt, group, qp + o, K + (size_t)g * c->rb,
                               V + (size_t)g * c->rb, ld, pos + t + 1, scale, s, op + o);
        }
    }
    /* back to hd channels: out_h = op_h . P_v */
    for (int h = 0; h < Hq; h++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, r, 1.0f, op + (size_t)h * r,
                    Hq * r, pv + (size_t)(h / group) * r * hd, hd, 0.0f, out + (size_t)h * hd,
                    Hq * hd);
}

static size_t bytes(const void *state) {
    const kv_proj *c = state;
    const size_t L = c->shape.n_layers, Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim;
    /* coefficients; the projections are not counted: they come from the calibration file, are
     * the same for every sequence (like the model's weights) and do not grow with the context
     * (counting them made rank 48 of 64 look larger than f16 at short contexts) */
    (void)hd;
    size_t b = 2 * L * Hkv * (size_t)c->n_pos * c->rb;
    for (size_t l = 0; l < L; l++)
        if (c->has_mu[l]) b += Hkv * (size_t)c->r * sizeof(float);
    return b;
}

const sqz_kv_policy sqz_kv_policy_proj = {
    .name = "proj",
    .help = "keys/values projected to rank= channels per KV head by PCA bases from file= "
            "(sqz kvcalib); pairs=1: keys keep whole RoPE pairs; attention in the projected space",
    .create = create,
    .destroy = destroy,
    .reset = reset,
    .store = store,
    .attend = attend,
    .bytes = bytes,
    .takes_codec = 1,
};

/* ------------------------------------------------------------------ calibration */

/* A policy used only by the calibration: exact attention over f32 rows (as the f32 policy)
 * that also accumulates, per layer and KV head, the second moments sum x x^T of the keys and
 * values it stores, in double. */
typedef struct kv_calib {
    sqz_kv_shape shape;
    float *k, *v;       /* [L][max_pos][Hkv*hd] */
    double *mk, *mv;    /* [L][Hkv][hd][hd] */
    size_t n_tokens;    /* tokens accumulated (per layer) */
} kv_calib;

static void calib_reset(void *state) { (void)state; }
static void calib_destroy(void *state) { (void)state; }

static sqz_status calib_store(void *state, int layer, int pos, int n, const float *k,
                              const float *v) {
    kv_calib *c = state;
    const int Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim, row = Hkv * hd;
    const size_t lf = (size_t)c->shape.max_pos * row;
    memcpy(c->k + layer * lf + (size_t)pos * row, k, (size_t)n * row * sizeof(float));
    memcpy(c->v + layer * lf + (size_t)pos * row, v, (size_t)n * row * sizeof(float));
    float *g = malloc((size_t)hd * hd * sizeof(float));
    if (!g) return SQZ_ERR_NOMEM;
    for (int kv = 0; kv < 2; kv++)
        for (int h = 0; h < Hkv; h++) {
            const float *x = (kv ? v : k) + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd, hd, n, 1.0f, x, row, x, row,
                        0.0f, g, hd);
            double *m = (kv ? c->mv : c->mk) + ((size_t)layer * Hkv + h) * hd * hd;
            for (int i = 0; i < hd * hd; i++) m[i] += g[i];
        }
    free(g);
    if (layer == 0) c->n_tokens += (size_t)n;
    return SQZ_OK;
}

static void calib_attend(void *state, int layer, int pos, int n, const float *q, float *out,
                         int n_threads) {
    kv_calib *c = state;
    const int row = c->shape.n_kv_heads * c->shape.head_dim;
    const size_t lf = (size_t)c->shape.max_pos * row;
    sqz_attention_f32(c->k + layer * lf, c->v + layer * lf, row, &c->shape, pos, n, q, out,
                      n_threads);
}

static size_t calib_bytes(const void *state) { (void)state; return 0; }

static const sqz_kv_policy calib_policy = {
    .name = "proj-calibration",
    .help = "internal: f32 cache accumulating key/value second moments",
    .create = NULL,
    .destroy = calib_destroy,
    .reset = calib_reset,
    .store = calib_store,
    .attend = calib_attend,
    .bytes = calib_bytes,
};

sqz_status sqz_kv_calibrate_proj(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens,
                                 size_t n_tokens, int n_ctx, int rank, const char *out_path) {
    const sqz_config *cf = &model->cfg;
    const int L = cf->n_layers, Hkv = cf->n_kv_heads, hd = cf->head_dim;
    if (rank <= 0) rank = hd;
    if (rank > hd)
        return sqz_fail(ctx, SQZ_ERR_ARG, "kvcalib: rank %d exceeds head_dim %d", rank, hd);
    if (n_ctx <= 0) n_ctx = cf->max_seq_len > 0 && cf->max_seq_len < 1024 ? cf->max_seq_len : 1024;
    if (n_tokens < 2)
        return sqz_fail(ctx, SQZ_ERR_ARG, "kvcalib: need calibration text (got %zu tokens)",
                        n_tokens);
    sqz_session *s = NULL;
    sqz_status st = sqz_session_new_kv(ctx, model, n_ctx, "f32", &s);
    if (st) return st;
    kv_calib c = { 0 };
    c.shape = s->kv->shape;
    const size_t lf = (size_t)n_ctx * Hkv * hd, mm = (size_t)L * Hkv * hd * hd;
    c.k = malloc((size_t)L * lf * sizeof(float));
    c.v = malloc((size_t)L * lf * sizeof(float));
    c.mk = calloc(mm, sizeof(double));
    c.mv = calloc(mm, sizeof(double));
    float *vecs = malloc((size_t)2 * L * Hkv * rank * hd * sizeof(float));
    float *vals = malloc((size_t)2 * L * Hkv * rank * sizeof(float));
    double *a = malloc((size_t)hd * hd * sizeof(double)), *w = malloc((size_t)rank * sizeof(double));
    sqz_gguf_writer *wr = NULL;
    if (!c.k || !c.v || !c.mk || !c.mv || !vecs || !vals || !a || !w) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for KV calibration");
        goto done;
    }
    /* swap the session's f32 cache for the accumulating one */
    s->kv->policy->destroy(s->kv->state);
    s->kv->policy = &calib_policy;
    s->kv->state = &c;
    for (size_t t0 = 0; t0 < n_tokens && !st; t0 += (size_t)n_ctx) {
        const int T = n_tokens - t0 < (size_t)n_ctx ? (int)(n_tokens - t0) : n_ctx;
        sqz_session_reset(s);
        st = sqz_session_eval(s, tokens + t0, T, NULL, 0);
        sqz_progress(ctx, "kvcalib", t0 + (size_t)T, n_tokens);
    }
    if (st) goto done;
    for (int kv = 0; kv < 2; kv++)
        for (int l = 0; l < L; l++)
            for (int h = 0; h < Hkv; h++) {
                const size_t i = ((size_t)l * Hkv + h);
                memcpy(a, (kv ? c.mv : c.mk) + i * hd * hd, (size_t)hd * hd * sizeof(double));
                if (sqz_kv_top_eigvecs(a, hd, rank, vecs + ((size_t)kv * L * Hkv + i) * rank * hd,
                                       w)) {
                    st = sqz_fail(ctx, SQZ_ERR_INTERNAL, "kvcalib: eigensolver failed");
                    goto done;
                }
                for (int j = 0; j < rank; j++)
                    vals[((size_t)kv * L * Hkv + i) * rank + j] = (float)(w[j] / (double)c.n_tokens);
            }
    if ((st = sqz_gguf_writer_new(ctx, &wr))) goto done;
    if ((st = sqz_gguf_writer_add_str(wr, "general.type", "sqz.kvproj", 10)) ||
        (st = sqz_gguf_writer_add_u32(wr, "sqz.kvproj.n_layers", (uint32_t)L)) ||
        (st = sqz_gguf_writer_add_u32(wr, "sqz.kvproj.n_kv_heads", (uint32_t)Hkv)) ||
        (st = sqz_gguf_writer_add_u32(wr, "sqz.kvproj.head_dim", (uint32_t)hd)) ||
        (st = sqz_gguf_writer_add_u32(wr, "sqz.kvproj.rank", (uint32_t)rank)) ||
        (st = sqz_gguf_writer_add_u64(wr, "sqz.kvproj.calib_tokens", (uint64_t)c.n_tokens)))
        goto done;
    for (int l = 0; l < L && !st; l++)
        for (int kv = 0; kv < 2 && !st; kv++) {
            char name[64];
            const size_t i = (size_t)kv * L * Hkv + (size_t)l * Hkv;
            const int64_t ne[3] = { hd, rank, Hkv }, ne2[2] = { rank, Hkv };
            snprintf(name, sizeof name, "kvproj.%c.%d", kv ? 'v' : 'k', l);
            st = sqz_gguf_writer_add_tensor(wr, name, 3, ne, SQZ_TYPE_F32, vecs + i * rank * hd,
                                            (size_t)Hkv * rank * hd * sizeof(float));
            snprintf(name, sizeof name, "kvproj.e%c.%d", kv ? 'v' : 'k', l);
            if (!st)
                st = sqz_gguf_writer_add_tensor(wr, name, 2, ne2, SQZ_TYPE_F32, vals + i * rank,
                                                (size_t)Hkv * rank * sizeof(float));
        }
    if (!st) st = sqz_gguf_writer_write(wr, out_path);
done:
    if (s && s->kv->policy == &calib_policy) s->kv->state = NULL; /* c lives on the stack */
    sqz_session_free(s);
    sqz_gguf_writer_free(wr);
    free(c.k), free(c.v), free(c.mk), free(c.mv);
    free(vecs), free(vals), free(a), free(w);
    return st;
}
