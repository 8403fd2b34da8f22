/* kv/proj.c - the "proj" KV policy: channel shrinking by fixed orthogonal projections, after
 * CSKV (Wang et al. 2024, "CSKV: Training-Efficient Channel Shrinking for KV Cache in
 * Long-Context Scenarios") and MatryoshkaKV (Lin et al. 2024, "MatryoshkaKV: Adaptive KV
 * Compression via Trainable Orthogonal Projection"), without their training step: the
 * projections are the principal directions (PCA, uncentred: eigenvectors of the second-moment
 * matrix) of calibration keys and values, per layer and KV head, computed by
 * sqz_kv_calibrate_proj (eval/kv_calibrate.c, the `sqz kvcalib` command) and loaded with `proj:file=PATH,rank=R`.
 *
 * A key k (one KV head, hd channels) is stored as r coefficients c = P_k k, a value as
 * P_v v (P: r x hd, orthonormal rows). Attention runs in the projected space: q . (P_k^T c) =
 * (P_k q) . c, so each query is projected once per head and dotted with the coefficients; the
 * weighted sum of value coefficients is mapped back with P_v^T once per head. Coefficients are
 * rows of r channels in the policy's storage codec (f16 by default; "proj:...+q8" etc., r then
 * a multiple of 32; key coefficients centred per layer and KV head as kv/codec.h describes; the
 * codec's recent= does not apply), and attention runs on them (kernels/attn.h).
 *
 * File (GGUF, written by src/io/gguf.h): metadata sqz.kvproj.{n_layers, n_kv_heads, head_dim,
 * rank} (u32); tensors "kvproj.k.<layer>" and "kvproj.v.<layer>", F32, ne = [hd, rank, Hkv]:
 * per KV head `rank` orthonormal rows of hd floats, by decreasing calibration energy; and
 * "kvproj.ek.<layer>", "kvproj.ev.<layer>", F32 [rank, Hkv]: that energy (the eigenvalues / the
 * number of calibration tokens), for inspection. Any rank up to the stored one can be loaded.
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
#include "kv/kv.h"
#include "core/params.h"
#include "math/eigen.h"

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
    const sqz_param p[] = { { "file", 's', &file, 0, 0 },
                                { "rank", 'i', &rank, 1, shape->head_dim },
                                { "pairs", 'i', &pairs, 0, 1 } };
    sqz_status st = sqz_params_parse(ctx, "KV policy", "proj", params, p, 3, buf, sizeof buf);
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
    const int ok = c->ck && c->cv && c->mu && c->has_mu && c->s;
    return sqz_kv_create_end(ctx, shape, ok, c, destroy, state);
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
