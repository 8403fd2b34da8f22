/* kv_calibrate.c - sqz_kv_calibrate_proj (include/sqz.h, `sqz kvcalib`): runs the model over
 * calibration text and writes the PCA bases of the "proj" KV policy (kv/proj.c, which documents
 * the file) - per layer and KV head, the leading eigenvectors of the keys' and values' second
 * moments. */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "kernels/attn.h"
#include "kv/kv.h"
#include "math/eigen.h"
#include "model/model.h"
#include "model/session.h"
#include "sqz.h"

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
    const int Hkv = cf->n_kv_heads, hd = cf->head_dim;
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
    /* the cache's layers: those with attention (a model with dropped sub-blocks has fewer) */
    const int L = s->kv->shape.n_layers;
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
                if (sqz_eigen_top(a, hd, rank, vecs + ((size_t)kv * L * Hkv + i) * rank * hd,
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
