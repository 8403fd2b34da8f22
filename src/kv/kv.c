/* kv.c - the KV policy table and the exact f32 attention kernel. */
#include "kv/kv.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attn.h"
#include "kernels/ops.h"

extern const sqz_kv_policy sqz_kv_policy_f32;
extern const sqz_kv_policy sqz_kv_policy_f16;
extern const sqz_kv_policy sqz_kv_policy_q8;
extern const sqz_kv_policy sqz_kv_policy_q4;
extern const sqz_kv_policy sqz_kv_policy_q2;
extern const sqz_kv_policy sqz_kv_policy_streaming;
extern const sqz_kv_policy sqz_kv_policy_h2o;
extern const sqz_kv_policy sqz_kv_policy_snapkv;
extern const sqz_kv_policy sqz_kv_policy_proj;
extern const sqz_kv_policy sqz_kv_policy_xkv;
extern const sqz_kv_policy sqz_kv_policy_minicache;
extern const sqz_kv_policy sqz_kv_policy_kvmerger;

static const sqz_kv_policy *const policies[] = {
    &sqz_kv_policy_f32,
    &sqz_kv_policy_f16,
    &sqz_kv_policy_q8,
    &sqz_kv_policy_q4,
    &sqz_kv_policy_q2,
    &sqz_kv_policy_streaming,
    &sqz_kv_policy_h2o,
    &sqz_kv_policy_snapkv,
    &sqz_kv_policy_proj,
    &sqz_kv_policy_xkv,
    &sqz_kv_policy_minicache,
    &sqz_kv_policy_kvmerger,
    NULL,
};

const sqz_kv_policy *const *sqz_kv_policies(void) { return policies; }

sqz_status sqz_kv_new(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *spec, sqz_kv **out) {
    *out = NULL;
    if (!spec || !*spec) spec = "f32";
    /* "policy[:params]+codec[:params]": the codec follows the last '+' */
    const char *plus = strrchr(spec, '+');
    const size_t plen = plus ? (size_t)(plus - spec) : strlen(spec);
    const char *colon = memchr(spec, ':', plen);
    const size_t nlen = colon ? (size_t)(colon - spec) : plen;
    const sqz_kv_policy *p = NULL;
    for (int i = 0; policies[i]; i++)
        if (strlen(policies[i]->name) == nlen && !strncmp(policies[i]->name, spec, nlen))
            p = policies[i];
    if (!p) return sqz_fail(ctx, SQZ_ERR_ARG, "unknown KV cache policy '%.*s'", (int)nlen, spec);
    sqz_kv_codec codec = { SQZ_KVROW_F16, 32, 0, 0 };
    if (plus) {
        if (!p->takes_codec)
            return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s is a storage format itself: '+%s' "
                            "composes only with the structural policies (streaming, h2o, snapkv, "
                            "kvmerger, minicache, xkv, proj)", p->name, plus + 1);
        sqz_status st = sqz_kv_codec_parse(ctx, plus + 1, &codec);
        if (st) return st;
    }
    /* the policy's own parameters, without the codec part */
    char *params = NULL;
    if (colon) {
        const size_t len = plen - nlen - 1;
        params = malloc(len + 1);
        if (!params) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        memcpy(params, colon + 1, len);
        params[len] = 0;
    }
    sqz_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        free(params);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    }
    kv->policy = p;
    kv->shape = *shape;
    sqz_status st = p->create(ctx, shape, params, p->takes_codec ? &codec : NULL, &kv->state);
    free(params);
    if (st != SQZ_OK) {
        free(kv);
        return st;
    }
    *out = kv;
    return SQZ_OK;
}

int sqz_kv_dense_alloc(sqz_kv_dense *d, const sqz_kv_shape *shape, size_t elem) {
    d->shape = *shape;
    d->elem = elem;
    d->layer_elems = (size_t)shape->max_pos * (size_t)shape->n_kv_heads * (size_t)shape->head_dim;
    size_t total = d->layer_elems * (size_t)shape->n_layers;
    d->k = malloc(total * elem);
    d->v = malloc(total * elem);
    d->scratch = malloc((size_t)shape->n_heads * (size_t)shape->max_pos * sizeof(float));
    return d->k && d->v && d->scratch;
}

void sqz_kv_dense_free(sqz_kv_dense *d) {
    free(d->k);
    free(d->v);
    free(d->scratch);
}

size_t sqz_kv_dense_bytes(const sqz_kv_dense *d) {
    return 2 * (size_t)d->n_pos * (size_t)d->shape.n_layers * (size_t)d->shape.n_kv_heads *
           (size_t)d->shape.head_dim * d->elem;
}

sqz_status sqz_kv_create_end(sqz_ctx *ctx, const sqz_kv_shape *shape, int ok, void *c,
                             void (*destroy)(void *), void **state) {
    if (!ok) {
        destroy(c);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for a KV cache of %d positions",
                        shape->max_pos);
    }
    *state = c;
    return SQZ_OK;
}

void sqz_kv_free(sqz_kv *kv) {
    if (!kv) return;
    kv->policy->destroy(kv->state);
    free(kv);
}

/* Query tiles of QT rows: a tile only multiplies against the positions its last query sees,
 * which halves the work of a causal prefill. */
enum { QT = 128 };

/* One query's heads of a KV group against P = pos + 1 rows: the SIMD attention kernels of
 * kernels/attn.h on f32 rows (two sgemm calls cost more in OpenBLAS's setup than in arithmetic
 * for a group of a few heads: ~2x slower at P = 600). */
void sqz_attention_f32_group(const float *keys, const float *values, int ld,
                             const sqz_kv_shape *shape, int pos, const float *q, float *out, int g,
                             float *s) {
    const int hd = shape->head_dim, group = shape->n_heads / shape->n_kv_heads, P = pos + 1;
    const float scale = 1.0f / sqrtf((float)hd);
    const sqz_attn_kernels kr = sqz_attn_kernels_best();
    const sqz_kvrow_fmt f = { SQZ_KVROW_F32, hd, hd };
    const size_t ldb = (size_t)ld * sizeof(float);
    const float *qg = q + (size_t)g * group * hd;
    float *og = out + (size_t)g * group * hd;
    /* s[group][P] = qg . K_g^T * scale, softmax per row; out[group][hd] = s . V_g */
    kr.scores(&f, group, qg, keys + (size_t)g * hd, ldb, P, scale, s, (size_t)P);
    for (int i = 0; i < group; i++) kr.softmax(s + (size_t)i * P, P);
    memset(og, 0, (size_t)group * (size_t)hd * sizeof(float));
    kr.accum(&f, group, s, (size_t)P, values + (size_t)g * hd, ldb, P, og);
}

void sqz_attention_f32(const float *keys, const float *values, int ld, const sqz_kv_shape *shape,
                       int pos, int n, const float *q, float *out, int n_threads) {
    const int Hq = shape->n_heads, hd = shape->head_dim, group = Hq / shape->n_kv_heads;
    const int qld = Hq * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    if (n < 4) {
        /* decode: the query heads of one KV group share its keys and values, so each group is
         * two small GEMMs over its positions - K and V are read once per group, not once per
         * head - and the groups run in parallel. */
        const int Hkv = shape->n_kv_heads;
        for (int t = 0; t < n; t++) {
            const int P = pos + t + 1;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1 && Hkv > 1 && P >= 64)
            {
                float *s = malloc((size_t)group * (size_t)P * sizeof(float));
#pragma omp for schedule(static)
                for (int g = 0; g < Hkv; g++)
                    sqz_attention_f32_group(keys, values, ld, shape, pos + t, q + (size_t)t * qld,
                                            out + (size_t)t * qld, g, s);
                free(s);
            }
        }
        return;
    }
    const int n_tiles = (n + QT - 1) / QT;
    const int max_p = pos + n;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        float *s = malloc((size_t)QT * (size_t)max_p * sizeof(float));
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int h = 0; h < Hq; h++) {
            for (int tile = 0; tile < n_tiles; tile++) {
                const int t0 = tile * QT, nt = n - t0 < QT ? n - t0 : QT;
                const int P = pos + t0 + nt; /* positions the tile's last query sees */
                const int g = h / group;
                const float *qh = q + (size_t)t0 * qld + (size_t)h * hd;
                /* s[nt][P] = q . K^T * scale */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, P, hd, scale, qh, qld,
                            keys + (size_t)g * hd, ld, 0.0f, s, P);
                for (int i = 0; i < nt; i++) {
                    float *row = s + (size_t)i * P;
                    const int visible = pos + t0 + i + 1;
                    sqz_softmax(row, visible);
                    for (int p = visible; p < P; p++) row[p] = 0;
                }
                /* out[nt][hd] = s . V */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nt, hd, P, 1.0f, s, P,
                            values + (size_t)g * hd, ld, 0.0f,
                            out + (size_t)t0 * qld + (size_t)h * hd, qld);
            }
        }
        free(s);
    }
}

/* ---- the policies by index, for include/sqz.h */

const char *sqz_kv_policy_name(int i) {
    const sqz_kv_policy *const *p = sqz_kv_policies();
    for (int j = 0; j < i; j++)
        if (!p[j]) return NULL;
    return i >= 0 && p[i] ? p[i]->name : NULL;
}

const char *sqz_kv_policy_help(int i) {
    const sqz_kv_policy *const *p = sqz_kv_policies();
    for (int j = 0; j < i; j++)
        if (!p[j]) return NULL;
    return i >= 0 && p[i] ? p[i]->help : NULL;
}
