/* bitstack.c - sqz_bitstack (include/sqz.h): BitStack (Wang et al. 2024, "BitStack: Any-Size
 * Compression of Large Language Models", ICLR 2025) for every block matrix of a model, written
 * as an sqzf file (docs/bitstack.md).
 *
 * Glossary: W [m x n] a block matrix (m output features, n input features), C tokens per
 * calibration window, K blocks per matrix, r their rank, L layers, D dim.
 * 1. Activation scales (the paper's activation-aware scaling, AWQ-style): the unquantized model
 *    runs over the calibration windows layer by layer (eval/calib_pass.h); at each of the four
 *    input sites s_j = mean over windows of ||x_j||_2 over the window's C tokens, + 1e-3 (the
 *    authors' get_act_scale: the L2 norm over a sequence, averaged over sequences).
 * 2. Decomposition (sqz_bs_decompose): W diag(s) into K residual blocks, each the packed signs of
 *    the residual times a rank-r SVD (LAPACK dgesdd, prune/lowrank.h) of its absolute value.
 * 3. The universal order of all blocks (bitstack_sort.c).
 * 4. The model with every block matrix a SQZ_TYPE_BITSTACK tensor is written by sqz_convert to
 *    sqzf (NAME.bs_*), the token embedding (and an untied head) q8_0, norms f32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/calib_pass.h"
#include "model/session.h"
#include "prune/lowrank.h"
#include "quant/mixllm.h"
#include "search/bitstack.h"
#include "sqz.h"

sqz_status sqz_bs_decompose(sqz_ctx *ctx, const float *W, int64_t m, int64_t n, const float *s, int K, int r,
                            uint8_t *sign, uint16_t *u, uint16_t *v, double *rel) {
    if (r < 1 || r > SQZ_BS_MAX_RANK || r > m || r > n || K < 1)
        return sqz_fail(ctx, SQZ_ERR_ARG, "bitstack: %lld x %lld at rank %d: 1 <= rank <= min(rows, cols, %d) is needed",
                        (long long)m, (long long)n, r, SQZ_BS_MAX_RANK);
    const int64_t rb = sqz_bs_row_bytes(n);
    float *R = malloc((size_t)(m * n) * sizeof *R), *A = malloc((size_t)(m * n) * sizeof *A);
    float *a = malloc((size_t)(r * n) * sizeof *a), *b = malloc((size_t)(m * r) * sizeof *b);
    if (!R || !A || !a || !b) {
        free(R), free(A), free(a), free(b);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "bitstack: out of memory for a %lld x %lld matrix", (long long)m,
                        (long long)n);
    }
    double norm0 = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            R[i * n + j] = W[i * n + j] * s[j];
            norm0 += (double)R[i * n + j] * R[i * n + j];
        }
    norm0 = sqrt(norm0);
    sqz_status st = SQZ_OK;
    for (int k = 0; k < K && !st; k++) {
        uint8_t *sk = sign + (size_t)((int64_t)k * m * rb);
        uint16_t *uk = u + (size_t)((int64_t)k * m * r), *vk = v + (size_t)((int64_t)k * r * n);
        for (int64_t i = 0; i < m; i++) sqz_bs_pack_signs(R + i * n, n, sk + i * rb);
        for (int64_t i = 0; i < m * n; i++) A[i] = fabsf(R[i]);
        sqz_lr_svd d;
        if ((st = sqz_lr_svd_compute(ctx, A, m, n, NULL, 0, &d))) break;
        sqz_lr_svd_factors(&d, r, a, b); /* a = S^1/2 V^T [r][n], b = U S^1/2 [m][r] */
        sqz_lr_svd_free(&d);
        for (int64_t i = 0; i < m * r; i++) uk[i] = sqz_f32_to_f16(b[i]), b[i] = sqz_f16_to_f32(uk[i]);
        for (int64_t i = 0; i < r * n; i++) vk[i] = sqz_f32_to_f16(a[i]), a[i] = sqz_f16_to_f32(vk[i]);
        double norm = 0;
#pragma omp parallel for schedule(static) reduction(+ : norm)
        for (int64_t i = 0; i < m; i++) /* R -= sign (.) (u v), with the stored (f16) factors */
            for (int64_t j = 0; j < n; j++) {
                float mag = 0;
                for (int t = 0; t < r; t++) mag += b[i * r + t] * a[(int64_t)t * n + j];
                float *x = &R[i * n + j];
                *x -= (sk[i * rb + (j >> 3)] >> (j & 7)) & 1 ? -mag : mag;
                norm += (double)*x * *x;
            }
        if (rel) rel[k] = norm0 > 0 ? sqrt(norm) / norm0 : 0;
    }
    free(R), free(A), free(a), free(b);
    return st;
}

/* ---------------------------------------------------------------- activation scales */

typedef struct scale_acc {
    int dims[SQZ_N_SITES];
    double *ss[SQZ_N_SITES];  /* this window's sum of x_j^2 */
    double *sum[SQZ_N_SITES]; /* sum over windows of ||x_j||_2 */
} scale_acc;

static void capture(void *user, int layer, int site, const float *x, int T, int dim) {
    (void)layer;
    if (site >= SQZ_N_SITES) return;
    scale_acc *a = user;
    double *ss = a->ss[site];
    for (int t = 0; t < T; t++)
        for (int j = 0; j < dim; j++) ss[j] += (double)x[(size_t)t * dim + j] * x[(size_t)t * dim + j];
}

static sqz_status window_end(void *user) {
    scale_acc *a = user;
    for (int k = 0; k < SQZ_N_SITES; k++)
        for (int j = 0; j < a->dims[k]; j++) {
            a->sum[k][j] += sqrt(a->ss[k][j]);
            a->ss[k][j] = 0;
        }
    return SQZ_OK;
}

/* scales[l][site] [dim]: s_j of every layer's four input sites (one malloc'ed array, indexed by
 * off[site] within a layer's stride). */
static sqz_status act_scales(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win, int C,
                             float *scales, const int *off, int stride) {
    const sqz_config *c = &model->cfg;
    const int D = c->dim, L = c->n_layers;
    const size_t N = n_win * (size_t)C;
    scale_acc a = { .dims = { D, c->n_heads * c->head_dim, D, c->hidden_dim } };
    float *X = malloc(N * (size_t)D * sizeof *X);
    sqz_session *s = NULL;
    sqz_status st = SQZ_OK;
    int ok = X != NULL;
    for (int k = 0; k < SQZ_N_SITES; k++)
        ok = ok && (a.ss[k] = calloc((size_t)a.dims[k], sizeof(double))) && (a.sum[k] = calloc((size_t)a.dims[k], sizeof(double)));
    if (!ok) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "bitstack: out of memory for %zu calibration tokens", N);
        goto done;
    }
    if ((st = sqz_session_new(ctx, model, C, &s))) goto done;
    for (size_t i = 0; i < N; i++) sqz_tensor_row_f32(&model->tok_embd, tokens[i], X + i * (size_t)D);
    for (int l = 0; l < L && !st; l++) {
        for (int k = 0; k < SQZ_N_SITES; k++) memset(a.sum[k], 0, (size_t)a.dims[k] * sizeof(double));
        st = sqz_calib_layer_pass(s, &model->layers[l], l, X, n_win, C, -1, capture, &a, NULL, window_end, &a);
        for (int k = 0; k < SQZ_N_SITES && !st; k++)
            for (int j = 0; j < a.dims[k]; j++)
                scales[(size_t)l * stride + off[k] + j] = (float)(a.sum[k][j] / (double)n_win + 1e-3);
        sqz_progress(ctx, "bitstack scales", (uint64_t)l + 1, (uint64_t)L);
    }
done:
    sqz_session_free(s);
    for (int k = 0; k < SQZ_N_SITES; k++) free(a.ss[k]), free(a.sum[k]);
    free(X);
    return st;
}

/* ---------------------------------------------------------------- the driver */

sqz_status sqz_bitstack(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_bitstack_opts *o,
                        sqz_bitstack_result *res) {
    sqz_bitstack_result r;
    memset(&r, 0, sizeof r);
    if (res) *res = r;
    if (!model || !out_path || !*out_path || !o) return sqz_fail(ctx, SQZ_ERR_ARG, "bitstack: model, output and options are required");
    sqz_status sub_st = sqz_model_require_subblocks(ctx, model, "bitstack");
    if (sub_st) return sub_st;
    const double t0 = sqz_now();
    const int rank = o->rank > 0 ? o->rank : 4, K = o->iters > 0 ? o->iters : 16;
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512;
    if (rank > SQZ_BS_MAX_RANK) return sqz_fail(ctx, SQZ_ERR_ARG, "bitstack: rank %d is above %d", rank, SQZ_BS_MAX_RANK);
    if (K > 1024) return sqz_fail(ctx, SQZ_ERR_ARG, "bitstack: %d blocks per matrix is above 1024", K);
    const size_t n_win = o->calib ? o->n_calib / (size_t)C : 0;
    if (n_win < 1)
        return sqz_fail(ctx, SQZ_ERR_ARG, "bitstack needs calibration text: %zu tokens is less than one window of %d",
                        o->calib ? o->n_calib : 0, C);
    const sqz_config *c = &model->cfg;
    for (size_t i = 0; i < n_win * (size_t)C; i++)
        if (o->calib[i] < 0 || o->calib[i] >= c->vocab_size)
            return sqz_fail(ctx, SQZ_ERR_RANGE, "calibration token %d outside the vocabulary", o->calib[i]);
    const int L = c->n_layers, NM = SQZ_MIX_N_MATS, n_mats = L * NM;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < NM; k++) {
            const sqz_tensor *t = sqz_mixllm_matrix(&model->layers[l], k, NULL);
            if (rank > t->rows || rank > t->cols)
                return sqz_fail(ctx, SQZ_ERR_ARG, "bitstack: layer %d matrix %d (%lld x %lld): rank %d is above "
                                "min(rows, cols)", l, k, (long long)t->rows, (long long)t->cols, rank);
        }
    const int off[SQZ_N_SITES] = { 0, c->dim, c->dim + c->n_heads * c->head_dim,
                                   2 * c->dim + c->n_heads * c->head_dim };
    const int stride = off[3] + c->hidden_dim;
    float *scales = malloc((size_t)L * stride * sizeof *scales);
    sqz_model *qm = calloc(1, sizeof *qm);
    const sqz_tensor **mats = calloc((size_t)n_mats, sizeof *mats);
    int *lay = calloc((size_t)n_mats, sizeof *lay), *kind = calloc((size_t)n_mats, sizeof *kind);
    int32_t **order = calloc((size_t)n_mats, sizeof *order);
    double *rel = malloc((size_t)K * sizeof *rel);
    float *W = NULL;
    sqz_status st = SQZ_OK;
    if (!scales || !qm || !mats || !lay || !kind || !order || !rel) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = act_scales(ctx, model, o->calib, n_win, C, scales, off, stride))) goto done;
    r.calib_tokens = n_win * (size_t)C;
    /* the decomposed model: the original's views, the block matrices BitStack tensors */
    *qm = *model;
    qm->owned = NULL;
    qm->n_owned = qm->cap_owned = 0;
    qm->bs = NULL;
    qm->n_bs = qm->cap_bs = 0;
    if (!(qm->layers = malloc((size_t)L * sizeof *qm->layers))) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(qm->layers, model->layers, (size_t)L * sizeof *qm->layers);
    const double td = sqz_now();
    double e1 = 0, eK = 0;
    sqz_progress(ctx, "bitstack", 0, (uint64_t)n_mats);
    for (int i = 0; i < n_mats && !st; i++) {
        const int l = i / NM, k = i % NM;
        int site;
        sqz_tensor *t = sqz_mixllm_matrix(&qm->layers[l], k, &site);
        const int64_t m = t->rows, n = t->cols;
        W = malloc((size_t)(m * n) * sizeof *W);
        sqz_bs_tensor *bs = sqz_model_own(qm, calloc(1, sizeof *bs));
        float *sc = sqz_model_own(qm, malloc((size_t)n * sizeof *sc));
        int32_t *ord = sqz_model_own(qm, calloc((size_t)K, sizeof *ord));
        uint8_t *sign = sqz_model_own(qm, malloc((size_t)K * (size_t)(m * sqz_bs_row_bytes(n))));
        uint16_t *u = sqz_model_own(qm, malloc((size_t)K * (size_t)(m * rank) * sizeof *u));
        uint16_t *v = sqz_model_own(qm, malloc((size_t)K * (size_t)(rank * n) * sizeof *v));
        if (!W || !bs || !sc || !ord || !sign || !u || !v) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "bitstack: out of memory for layer %d's matrix %d", l, k);
            break;
        }
        for (int64_t row = 0; row < m; row++) sqz_tensor_row_f32(t, row, W + row * n);
        memcpy(sc, scales + (size_t)l * stride + off[site], (size_t)n * sizeof *sc);
        if ((st = sqz_bs_decompose(ctx, W, m, n, sc, K, rank, sign, u, v, rel))) break;
        free(W);
        W = NULL;
        e1 += rel[0], eK += rel[K - 1];
        *bs = (sqz_bs_tensor){ .n_blocks = K, .rank = rank, .n_use = K, .scale = sc, .order = ord, .sign = sign,
                               .u = u, .v = v };
        *t = (sqz_tensor){ .type = SQZ_TYPE_BITSTACK, .rows = m, .cols = n, .data = bs };
        mats[i] = t, lay[i] = l, kind[i] = k, order[i] = ord;
        r.block_bytes += (uint64_t)K * sqz_bs_block_bytes(m, n, rank);
        r.fixed_bytes += sqz_bs_fixed_bytes(n, K);
        r.min_bytes += sqz_bs_block_bytes(m, n, rank);
        sqz_progress(ctx, "bitstack", (uint64_t)i + 1, (uint64_t)n_mats);
    }
    if (st) goto done;
    r.decompose_seconds = sqz_now() - td;
    r.rel_err_first = e1 / n_mats, r.rel_err_last = eK / n_mats;
    const double ts = sqz_now();
    const size_t sort_win = o->sort_windows > 0 ? (size_t)o->sort_windows : 2;
    if ((st = sqz_bs_sort(ctx, model, mats, lay, kind, n_mats, o->calib, sort_win < n_win ? sort_win : n_win, C,
                          order)))
        goto done;
    r.sort_seconds = sqz_now() - ts;
    char params[128];
    snprintf(params, sizeof params, "rank %d, %d blocks per matrix, %d-token windows", rank, K, C);
    const sqz_model_card card = { .method = "bitstack", .parameters = params, .calib_tokens = r.calib_tokens };
    const sqz_convert_opts co = { .type = "q8_0", .embd_type = "q8_0", .pure = 1, .card = &card };
    sqz_convert_result cr;
    if ((st = sqz_convert(ctx, qm, out_path, &co, &cr))) goto done;
    r.file_bytes = cr.file_bytes;
    /* what every size holds besides the matrices' scales and orders */
    r.fixed_bytes += sqz_tensor_nbytes(&model->out_norm);
    for (int l = 0; l < L; l++) {
        const sqz_tensor *ts2[SQZ_LAYER_N_TENSORS];
        sqz_layer_tensors(&model->layers[l], ts2);
        for (int i = 0; i < SQZ_LAYER_N_TENSORS; i++)
            if (ts2[i]->data && ts2[i]->rows == 1) r.fixed_bytes += (uint64_t)ts2[i]->cols * 4;
    }
    r.fixed_bytes += (uint64_t)c->vocab_size * sqz_type_row_size(SQZ_TYPE_Q8_0, c->dim) * (c->tied_embeddings ? 1 : 2);
    r.min_bytes += r.fixed_bytes;
    r.n_matrices = n_mats, r.n_blocks = n_mats * K, r.rank = rank, r.iters = K;
    r.seconds = sqz_now() - t0;
done:
    free(W);
    if (qm) {
        for (int i = 0; i < qm->n_owned; i++) free(qm->owned[i]);
        free(qm->owned);
        free(qm->layers);
        free(qm);
    }
    free(scales), free(mats), free(lay), free(kind), free(order), free(rel);
    if (!st && res) *res = r;
    return st;
}
