/* rsq.c - RSQ's rotation of a llama-family model and its token importance (see rsq.h).
 *
 * Glossary: D dim, F hidden_dim, V vocab, Hq/Hkv heads, hd head_dim, qd = Hq*hd, kvd = Hkv*hd,
 * T tokens of one calibration window. Row-major matrices (rows = output features). */
#include "quant/rsq.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"

sqz_status sqz_rsq_init(sqz_ctx *ctx, sqz_rsq *r, const sqz_config *c, uint64_t seed) {
    memset(r, 0, sizeof *r);
    if (!sqz_hadamard_factor(c->dim))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "rsq: no Hadamard matrix of order %d (the model's dim)", c->dim);
    sqz_status st = sqz_hadamard_random(ctx, &r->res, c->dim, seed);
    /* a different stream of signs for the heads (any fixed function of the seed will do) */
    if (!st && sqz_hadamard_factor(c->head_dim))
        st = sqz_hadamard_random(ctx, &r->head, c->head_dim, seed ^ 0x9e3779b97f4a7c15ull);
    if (st) sqz_rsq_free(r);
    return st;
}

void sqz_rsq_free(sqz_rsq *r) {
    if (!r) return;
    sqz_hadamard_free(&r->res);
    sqz_hadamard_free(&r->head);
}

/* An owned f32 copy of t (rows x cols), or NULL when out of memory. */
static float *copy_f32(sqz_model *owner, const sqz_tensor *t) {
    float *w = sqz_model_own(owner, malloc((size_t)(t->rows * t->cols) * sizeof *w));
    for (int64_t i = 0; w && i < t->rows; i++) sqz_tensor_row_f32(t, i, w + i * t->cols);
    return w;
}

static void fold_norm(float *w, int64_t rows, int64_t cols, const float *g) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) w[i * cols + j] *= g[j];
}

static float *ones(sqz_model *owner, int64_t n) {
    float *v = sqz_model_own(owner, malloc((size_t)n * sizeof *v));
    for (int64_t i = 0; v && i < n; i++) v[i] = 1.0f;
    return v;
}

static void set_f32(sqz_tensor *t, const float *data) {
    t->type = SQZ_TYPE_F32;
    t->data = data;
}

sqz_status sqz_rsq_rotate_layer(sqz_ctx *ctx, const sqz_rsq *r, const sqz_config *c,
                                const sqz_layer_weights *src, sqz_layer_weights *dst,
                                sqz_model *owner) {
    const int D = c->dim, F = c->hidden_dim, hd = c->head_dim;
    const int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    *dst = *src;
    float *ga = copy_f32(owner, &src->attn_norm), *gf = copy_f32(owner, &src->ffn_norm);
    float *wq = copy_f32(owner, &src->wq), *wk = copy_f32(owner, &src->wk), *wv = copy_f32(owner, &src->wv);
    float *wo = copy_f32(owner, &src->wo), *wg = copy_f32(owner, &src->w_gate);
    float *wu = copy_f32(owner, &src->w_up), *wd = copy_f32(owner, &src->w_down);
    float *na = ones(owner, D), *nf = ones(owner, D);
    float *bv = src->bv.data ? copy_f32(owner, &src->bv) : NULL;
    float *bo = src->bo.data ? copy_f32(owner, &src->bo) : NULL;
    if (!ga || !gf || !wq || !wk || !wv || !wo || !wg || !wu || !wd || !na || !nf ||
        (src->bv.data && !bv) || (src->bo.data && !bo))
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "rsq: out of memory rotating a layer");
    /* readers of the attention norm and of the FFN norm: fold, then W <- W Q^T */
    fold_norm(wq, qd, D, ga);
    fold_norm(wk, kvd, D, ga);
    fold_norm(wv, kvd, D, ga);
    fold_norm(wg, F, D, gf);
    fold_norm(wu, F, D, gf);
    sqz_hadamard_rows(&r->res, wq, qd);
    sqz_hadamard_rows(&r->res, wk, kvd);
    sqz_hadamard_rows(&r->res, wv, kvd);
    sqz_hadamard_rows(&r->res, wg, F);
    sqz_hadamard_rows(&r->res, wu, F);
    /* writers of the residual stream: W <- Q W (bo <- Q bo) */
    sqz_hadamard_apply(&r->res, wo, qd);
    sqz_hadamard_apply(&r->res, wd, F);
    if (bo) sqz_hadamard_apply(&r->res, bo, 1);
    /* per head: v_h <- Hh v_h (rows of wv, and bv), and wo's columns of each query head
     * <- columns Hh^T, i.e. each row's head-sized chunk c <- Hh c */
    if (r->head.n == hd) {
        for (int g = 0; g < c->n_kv_heads; g++) {
            sqz_hadamard_apply(&r->head, wv + (size_t)g * hd * D, D);
            if (bv) sqz_hadamard_apply(&r->head, bv + (size_t)g * hd, 1);
        }
        for (int i = 0; i < D; i++)
            for (int h = 0; h < c->n_heads; h++) sqz_hadamard_apply(&r->head, wo + (size_t)i * qd + (size_t)h * hd, 1);
    }
    set_f32(&dst->attn_norm, na);
    set_f32(&dst->ffn_norm, nf);
    set_f32(&dst->wq, wq);
    set_f32(&dst->wk, wk);
    set_f32(&dst->wv, wv);
    set_f32(&dst->wo, wo);
    set_f32(&dst->w_gate, wg);
    set_f32(&dst->w_up, wu);
    set_f32(&dst->w_down, wd);
    if (bv) set_f32(&dst->bv, bv);
    if (bo) set_f32(&dst->bo, bo);
    return SQZ_OK;
}

sqz_status sqz_rsq_rotate_ends(sqz_ctx *ctx, const sqz_rsq *r, const sqz_model *src,
                               sqz_model *dst) {
    const int D = src->cfg.dim, V = src->cfg.vocab_size;
    float *e = copy_f32(dst, &src->tok_embd), *out = copy_f32(dst, &src->output);
    float *g = copy_f32(dst, &src->out_norm), *n1 = ones(dst, D);
    if (!e || !out || !g || !n1) return sqz_fail(ctx, SQZ_ERR_NOMEM, "rsq: out of memory rotating the embeddings");
    sqz_hadamard_rows(&r->res, e, V);
    fold_norm(out, V, D, g);
    sqz_hadamard_rows(&r->res, out, V);
    set_f32(&dst->tok_embd, e);
    set_f32(&dst->output, out);
    set_f32(&dst->out_norm, n1);
    dst->cfg.tied_embeddings = 0; /* the head is no longer the embedding table */
    return SQZ_OK;
}

sqz_status sqz_rsq_rotate_model(sqz_ctx *ctx, const sqz_model *m, uint64_t seed,
                                sqz_model **out) {
    *out = NULL;
    sqz_rsq r;
    sqz_status st = sqz_rsq_init(ctx, &r, &m->cfg, seed);
    if (st) return st;
    sqz_model *q = calloc(1, sizeof *q);
    if (!q) {
        sqz_rsq_free(&r);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    /* views and sizes only: nothing that backs m (files, tokenizer) is shared */
    q->ctx = m->ctx;
    q->cfg = m->cfg;
    q->format = m->format;
    q->src = m->src;
    q->tok_embd = m->tok_embd;
    q->out_norm = m->out_norm;
    q->output = m->output;
    q->layers = calloc((size_t)m->cfg.n_layers, sizeof *q->layers);
    if (!q->layers) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    for (int l = 0; !st && l < m->cfg.n_layers; l++)
        st = sqz_rsq_rotate_layer(ctx, &r, &m->cfg, &m->layers[l], &q->layers[l], q);
    if (!st) st = sqz_rsq_rotate_ends(ctx, &r, m, q);
    sqz_rsq_free(&r);
    if (st) {
        sqz_model_free(q);
        return st;
    }
    *out = q;
    return SQZ_OK;
}

enum { QT = 128 }; /* query rows per score tile */

sqz_status sqz_rsq_attn_concentration(sqz_ctx *ctx, const float *q, const float *k, int T,
                                      int n_heads, int n_kv_heads, int hd, float *r) {
    const int qd = n_heads * hd, kvd = n_kv_heads * hd, group = n_heads / n_kv_heads;
    const float scale = 1.0f / sqrtf((float)hd); /* as the forward pass (kv.c) scores */
    /* one accumulator per head, summed in head order afterwards: the same result for any
     * number of threads */
    double *acc = calloc((size_t)n_heads * (size_t)T, sizeof *acc);
    if (!acc) return sqz_fail(ctx, SQZ_ERR_NOMEM, "rsq: out of memory for attention of %d tokens", T);
    int failed = 0;
    const int nt = ctx && ctx->n_threads > 0 ? ctx->n_threads : 1;
#pragma omp parallel num_threads(nt)
    {
        float *s = malloc((size_t)QT * (size_t)T * sizeof *s);
        if (!s) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int h = 0; h < n_heads; h++) {
            if (!s) continue;
            double *a = acc + (size_t)h * T;
            for (int t0 = 0; t0 < T; t0 += QT) {
                const int n = T - t0 < QT ? T - t0 : QT, P = t0 + n; /* keys the tile sees */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, P, hd, scale,
                            q + (size_t)t0 * qd + (size_t)h * hd, qd, k + (size_t)(h / group) * hd, kvd,
                            0.0f, s, P);
                for (int i = 0; i < n; i++) {
                    float *row = s + (size_t)i * P;
                    const int vis = t0 + i + 1;
                    sqz_softmax(row, vis);
                    for (int j = 0; j < vis; j++) a[j] += row[j];
                }
            }
        }
        free(s);
    }
    if (!failed)
        for (int j = 0; j < T; j++) {
            double sum = 0;
            for (int h = 0; h < n_heads; h++) sum += acc[(size_t)h * T + j];
            r[j] = (float)sum;
        }
    free(acc);
    return failed ? sqz_fail(ctx, SQZ_ERR_NOMEM, "rsq: out of memory for attention scores") : SQZ_OK;
}

void sqz_rsq_normalize(float *r, int T, float rmin, float rmax) {
    if (T <= 0) return;
    float lo = r[0], hi = r[0];
    for (int t = 1; t < T; t++) {
        lo = r[t] < lo ? r[t] : lo;
        hi = r[t] > hi ? r[t] : hi;
    }
    double sum = 0;
    for (int t = 0; t < T; t++) {
        float v = 1.0f; /* a constant r carries no preference */
        if (hi > lo) {
            v = rmin + (r[t] - lo) / (hi - lo) * (rmax - rmin);
            v = v < rmin ? rmin : v > rmax ? rmax : v;
        }
        r[t] = v;
        sum += v;
    }
    const double f = sum > 0 ? (double)T / sum : 1.0;
    for (int t = 0; t < T; t++) r[t] = (float)(r[t] * f);
}

/* tmp's upper triangle (and a little below the diagonal) = x^T x, threaded over blocks of
 * rows, each block only from its diagonal rightwards (OpenBLAS runs single-threaded inside
 * sqz); one thread: OpenBLAS's ssyrk. The blocks go through OpenBLAS's sgemm, or sqz's own
 * AVX-512 GEMM where OpenBLAS fell back to old kernels (kernels.h, sqz_blas_is_best): its SSE3
 * ones (~30 GFLOP/s) made the Hessians of a 1.1B model with 32K calibration tokens (32 TFLOP)
 * take longer than the rest of GPTQ together. */
static void gram_upper(float *tmp, const float *x, int T, int dim, int n_threads) {
    const int own = sqz_isa_best() == SQZ_ISA_AVX512 && !sqz_blas_is_best(); /* see kernels.h */
    if (!own && n_threads <= 1) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, T, 1.0f, x, dim, 0.0f, tmp, dim);
        return;
    }
    enum { BI = 96 }; /* rows of a task: 8 of the kernel's 12-row tiles */
    const int nb = (dim + BI - 1) / BI;
    if (n_threads > nb) n_threads = nb;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        float *wp = own ? aligned_alloc(64, ((size_t)T * 32 * sizeof(float) + 63) & ~(size_t)63) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < nb; b++) {
            const int i0 = b * BI, ni = dim - i0 < BI ? dim - i0 : BI;
            if (wp)
                sqz_sgemm_avx512_ex(ni, dim - i0, T, x + i0, (size_t)dim, 1, x + i0, (size_t)dim, 1,
                                    tmp + (size_t)i0 * dim + i0, (size_t)dim, 0, wp);
            else /* OpenBLAS's block (or no scratch) */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ni, dim - i0, T, 1.0f, x + i0, dim, x + i0,
                            dim, 0.0f, tmp + (size_t)i0 * dim + i0, dim);
        }
        free(wp);
    }
}

void sqz_rsq_hessian_add(double *H, float *tmp, float *x, const float *r, int T, int dim, int n_threads) {
    if (r)
        for (int t = 0; t < T; t++) {
            const float s = sqrtf(r[t]);
            for (int i = 0; i < dim; i++) x[(size_t)t * dim + i] *= s;
        }
    gram_upper(tmp, x, T, dim, n_threads);
    for (int i = 0; i < dim; i++)
        for (int j = i; j < dim; j++) H[(size_t)i * dim + j] += tmp[(size_t)i * dim + j];
}
