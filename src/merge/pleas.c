/* pleas.c - PLeaS (Nasery et al., "PLeaS: Merging Models with Permutations and Least Squares",
 * CVPR 2025) for llama-shaped models (RMSNorm, RoPE attention with GQA, SwiGLU FFN, residual
 * stream). The config's models are merged without a base (base_model, if given, is only the
 * --eval baseline); model 0 is the anchor the others are permuted to. Two steps:
 *
 * 1. Permutations. Every model runs the calibration text (T tokens in windows of C, as
 *    quantization's calibration pass: eval/calib_pass.h); features are matched to the anchor's
 *    by the Pearson correlation of their activations, one linear assignment each
 *    (math/lap.h, maximizing the summed correlation), carried consistently through the model:
 *    - the residual stream: ONE permutation of its D features for the whole model (residual
 *      connections tie every block's input and output together), matched on the sum over the
 *      L + 1 stream states (embeddings, each block's output) of the D x D correlations; it
 *      permutes the embedding's and lm_head's columns, both RMSNorm gains (RMSNorm is
 *      permutation-equivariant: the mean square does not depend on the order), the input
 *      columns of q, k, v, gate, up and the output rows of o and down;
 *    - per block, the FFN's F hidden units, matched on the SwiGLU output (down's input):
 *      rows of gate and up, columns of down;
 *    - per block, attention heads as whole heads, GQA-aware: the Hkv key/value heads matched on
 *      their keys' and values' correlations (the head's hd dimensions summed, dimension by
 *      dimension), then within each matched group the query heads on their attention outputs;
 *      rows of q (query heads), k and v (kv heads), columns of o (query heads). Dimensions
 *      inside a head are not permuted: RoPE rotates fixed pairs (i, i + hd/2) of q and k.
 * 2. Least squares, block by block through the merged model as it is built: each of the seven
 *    matrices gets W = argmin sum_i ||X_m W^T - X_i W_i^T||^2 + lambda ||W - W_avg||^2, X_m its
 *    input in the merged model (the merged blocks before it, and the merged matrices before it
 *    in this block: q/k/v, then o, then gate/up, then down), X_i W_i^T model i's own output on
 *    its own activations (permuted), W_avg the permuted models' average, lambda = damp x mean
 *    diag(X_m^T X_m) (damp, default 0.01; a pull towards the average where the calibration
 *    text leaves directions unseen), the sum over each model's own calibration windows (the
 *    paper's setting; one shared text makes it N ||X_m W^T - mean_i X_i W_i^T||^2); normal
 *    equations, Cholesky (math/ridge.h). Norm gains,
 *    the embedding and an untied lm_head are the permuted average (the least-squares answer for
 *    a lookup table; a gain is a column scale the next matrix's solve absorbs).
 *    Width budget: the merged FFN has m = budget x F hidden units (budget 1 .. N, default 1).
 *    The m - F matched pairs (model i > 0's unit, anchor unit) of lowest correlation are not
 *    merged: model i's unit keeps its own row (the paper's partial merging, generalized to N
 *    models); merged unit n's gate/up target is the mean of its contributors' units, down's
 *    target every model's output. The output's config.json then says intermediate_size m.
 *
 * Calibration: each distinct text (a model's --task-calib text, else the shared --calib) gives
 * calib_tokens tokens in windows spread over it; a window's targets are the outputs of the
 * models that calibrate on its text (its owners, 1 / |owners| each), every model runs every
 * window (the matching's correlations need all models on the same tokens).
 *
 * Memory (T calibration tokens over all texts, N models, D, m, qd = Hq hd, kvd = Hkv hd; f32):
 * the residual streams, (N + 1) x T x D; the summed targets and one merged site,
 * T x (qd + 2 kvd + 2 D + 2 m + max(D, m)); the matching's activations of two models,
 * 2 x T x (2 kvd + qd + F), freed before solving; X^T X as m x m doubles; the N models' current
 * block in f32. Nothing of the whole model but the streams: the merge holds activations, not
 * weights. 14M models, 3 texts x 4096 tokens (T = 12288), m = F: peak RSS 389 MiB.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/calib_pass.h"
#include "math/ridge.h"
#include "merge/align.h"
#include "model/export_hf.h"
#include "model/session.h"
#include "sqz.h"

typedef struct pleas {
    merge_run *r;
    sqz_ctx *ctx;
    int N, L, D, F, Hq, Hkv, hd, qd, kvd, V, m;
    align_calib cal;       /* the calibration windows, each owned by the models whose outputs are its targets */
    double budget, damp;
    /* per model i: the index in model i of the feature matched to the anchor's feature j */
    int **res;             /* [N][D] */
    int **ffn;             /* [N][L * F] */
    int **qh, **kvh;       /* [N][L * Hq], [N][L * Hkv] */
    float **ffn_corr;      /* [N][L * F] the matched pairs' correlations */
    int **map;             /* [N][L * F] merged FFN unit of model i's (permuted) unit j */
    uint64_t *cmask;       /* [L * m] the models merged into each merged unit */
    sqz_model run_m, run_mm; /* struct copies of model 0 that run f32 blocks: width F, width m */
    sqz_session *s, *sm;
    float *H;              /* [N][T][D] the models' residual streams */
    float *Hm;             /* [T][D] the merged model's */
} pleas;

/* ------------------------------------------------------------------ f32 blocks */

/* Model i's block l as f32 tensors it owns (HF row order), permuted to the anchor when perm. */
static sqz_status load_layer(pleas *P, int i, int l, int perm, sqz_layer_weights *w) {
    const sqz_status st = align_load_layer(P->r, i, l, "pleas", w);
    if (st) return st;
    if (!perm || i == 0) return SQZ_OK;
    const int *pr = P->res[i], *pf = P->ffn[i] + (size_t)l * P->F, *pq = P->qh[i] + (size_t)l * P->Hq,
              *pk = P->kvh[i] + (size_t)l * P->Hkv;
    const int D = P->D, F = P->F, hd = P->hd;
    int bad = 0;
    bad |= align_permute_matrix((float *)w->attn_norm.data, 1, D, NULL, 1, pr, 1);
    bad |= align_permute_matrix((float *)w->ffn_norm.data, 1, D, NULL, 1, pr, 1);
    bad |= align_permute_matrix((float *)w->wq.data, P->qd, D, pq, hd, pr, 1);
    bad |= align_permute_matrix((float *)w->wk.data, P->kvd, D, pk, hd, pr, 1);
    bad |= align_permute_matrix((float *)w->wv.data, P->kvd, D, pk, hd, pr, 1);
    bad |= align_permute_matrix((float *)w->wo.data, D, P->qd, pr, 1, pq, hd);
    bad |= align_permute_matrix((float *)w->w_gate.data, F, D, pf, 1, pr, 1);
    bad |= align_permute_matrix((float *)w->w_up.data, F, D, pf, 1, pr, 1);
    bad |= align_permute_matrix((float *)w->w_down.data, D, F, pr, 1, pf, 1);
    if (bad) {
        align_free_layer(w);
        return sqz_fail(P->ctx, SQZ_ERR_NOMEM, "pleas: out of memory");
    }
    return SQZ_OK;
}

/* A tensor outside the blocks (embedding, final norm, lm_head) of model i as f32, its columns
 * permuted to the anchor's residual order when perm. */
static float *load_outer(pleas *P, int i, const out_tensor *o, int perm) {
    float *d = align_load_outer(P->r, i, o);
    if (d && perm && i > 0 && align_permute_matrix(d, o->rows, o->cols, NULL, 1, P->res[i], 1)) {
        free(d);
        return NULL;
    }
    return d;
}

/* ------------------------------------------------------------------ the layer passes */

enum { CAP_TARGET, CAP_SITE };

typedef struct cap {
    pleas *P;
    int mode, site;                /* CAP_SITE: the site copied */
    const sqz_layer_weights *w;    /* the block run (targets: its matrices) */
    int model;                     /* CAP_TARGET: model i (its FFN map) */
    size_t win;
    int row0;
    float *yqkv, *yo, *ygu, *yd;   /* CAP_TARGET: [T][qd + 2 kvd], [T][D], [T][2 m], [T][D] */
    float *tmp;                    /* [B][F] */
    float *dst;                    /* CAP_SITE: [T][dim] */
} cap;

static sqz_status next_window(void *user) {
    ((cap *)user)->win++;
    return SQZ_OK;
}

/* y[Tb][n] = x[Tb][K] W^T, W [n][K] */
static void mul_wt(const pleas *P, const float *x, int Tb, int K, const sqz_tensor *W, float *y, size_t ldy) {
    align_gemm(P->ctx->n_threads, Tb, W->rows, K, x, (size_t)K, 0, W->data, (size_t)K, 0, y, ldy, 0);
}

static int popcount64(uint64_t v) {
    int n = 0;
    for (; v; v &= v - 1) n++;
    return n;
}

/* y[Tb][ldy] += a * t[Tb][n] */
static void add_scaled(float *y, size_t ldy, const float *t, int Tb, int n, float a) {
    for (int r = 0; r < Tb; r++)
        for (int j = 0; j < n; j++) y[(size_t)r * ldy + j] += a * t[(size_t)r * n + j];
}

static void capture(void *user, int layer, int site, const float *x, int Tb, int dim) {
    cap *c = user;
    pleas *P = c->P;
    const size_t row = c->win * (size_t)P->cal.C + (size_t)c->row0;
    const int qkv = P->qd + 2 * P->kvd;
    if (c->mode == CAP_SITE) {
        if (site == c->site) memcpy(c->dst + row * dim, x, (size_t)Tb * dim * sizeof *x);
        return;
    }
    /* CAP_TARGET: model i's outputs on its inputs, weighted by the window's owners O: 1 / |O|
     * for an owner; a merged FFN unit none of O feeds takes its own models' mean instead */
    const int i = c->model;
    const uint64_t O = P->cal.own[c->win], me = (uint64_t)1 << i;
    const float a = O & me ? 1.0f / (float)popcount64(O) : 0.0f;
    if (site == SQZ_SITE_QKV && a != 0) {
        const sqz_tensor *W[3] = { &c->w->wq, &c->w->wk, &c->w->wv };
        for (int k = 0, at = 0; k < 3; at += (int)W[k]->rows, k++) {
            mul_wt(P, x, Tb, dim, W[k], c->tmp, (size_t)W[k]->rows);
            add_scaled(c->yqkv + row * qkv + at, (size_t)qkv, c->tmp, Tb, (int)W[k]->rows, a);
        }
    } else if (site == SQZ_SITE_O && a != 0) {
        mul_wt(P, x, Tb, dim, &c->w->wo, c->tmp, (size_t)P->D);
        add_scaled(c->yo + row * P->D, (size_t)P->D, c->tmp, Tb, P->D, a);
    } else if (site == SQZ_SITE_GATE_UP) {
        const int F = P->F, m = P->m;
        const int *map = P->map[i] + (size_t)layer * F;
        const uint64_t *cm = P->cmask + (size_t)layer * m;
        for (int h = 0; h < 2; h++) {
            mul_wt(P, x, Tb, dim, h ? &c->w->w_up : &c->w->w_gate, c->tmp, (size_t)F);
            for (int j = 0; j < F; j++) {
                const int n = map[j];
                const uint64_t S = cm[n], A = S & O;
                const float wj = A ? (A & me ? 1.0f / (float)popcount64(A) : 0.0f) : 1.0f / (float)popcount64(S);
                if (wj == 0) continue;
                float *y = c->ygu + row * 2 * m + (size_t)h * m + n;
                for (int t = 0; t < Tb; t++) y[(size_t)t * 2 * m] += wj * c->tmp[(size_t)t * F + j];
            }
        }
    } else if (site == SQZ_SITE_DOWN && a != 0) {
        mul_wt(P, x, Tb, dim, &c->w->w_down, c->tmp, (size_t)P->D);
        add_scaled(c->yd + row * P->D, (size_t)P->D, c->tmp, Tb, P->D, a);
    }
}

/* Block l (weights w) over the stream X [T][D] of session s: last_site < 0 the whole block (X
 * advanced), else up to that site. */
static sqz_status pass(pleas *P, sqz_session *s, const sqz_layer_weights *w, int l, float *X, int last_site, cap *c) {
    if (c) c->win = 0;
    return sqz_calib_layer_pass(s, w, l, X, P->cal.n_win, P->cal.C, last_site, c ? capture : NULL, c, c ? &c->row0 : NULL,
                                c ? next_window : NULL, c);
}

/* ------------------------------------------------------------------ step 1: permutations */

static sqz_status find_permutations(pleas *P) {
    sqz_ctx *ctx = P->ctx;
    const int N = P->N, L = P->L, D = P->D, F = P->F, hd = P->hd, qd = P->qd, kvd = P->kvd;
    const int G = P->Hq / P->Hkv, nt = ctx->n_threads;
    const size_t T = P->cal.T;
    sqz_status st = SQZ_OK;
    float *kv[2] = { 0 }, *att[2] = { 0 }, *z[2] = { 0 };
    float *corr = malloc((size_t)F * F * sizeof *corr), *sim = NULL;
    double *res_sum = calloc((size_t)(N > 1 ? N - 1 : 1) * D * D, sizeof *res_sum);
    for (int k = 0; k < 2; k++) {
        kv[k] = malloc(T * 2 * kvd * sizeof(float));
        att[k] = malloc(T * qd * sizeof(float));
        z[k] = malloc(T * F * sizeof(float));
    }
    if (!corr || !res_sum || !kv[0] || !kv[1] || !att[0] || !att[1] || !z[0] || !z[1] ||
        !(sim = malloc((size_t)(D > qd ? D : qd) * (D > qd ? D : qd) * sizeof *sim))) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "pleas: out of memory for the matching's activations (%zu tokens)", T);
        goto done;
    }
    for (int l = 0; l <= L && !st; l++) {
        /* the stream states: block l's input (l = L: the last block's output) */
        for (int i = 1; i < N && !st; i++) {
            if (align_correlate(nt, P->H, D, P->H + (size_t)i * T * D, D, T, sim)) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
            for (size_t k = 0; k < (size_t)D * D; k++) res_sum[(size_t)(i - 1) * D * D + k] += sim[k];
        }
        if (l == L) break;
        for (int i = 0; i < N && !st; i++) {
            const int b = i ? 1 : 0;
            sqz_layer_weights w;
            if ((st = load_layer(P, i, l, 0, &w))) break;
            st = align_block_acts(ctx, P->s, &w, l, P->H + (size_t)i * T * D, &P->cal, kv[b], att[b], z[b]);
            align_free_layer(&w);
            if (st || i == 0) continue;
            int *pf = P->ffn[i] + (size_t)l * F, *pq = P->qh[i] + (size_t)l * P->Hq, *pk = P->kvh[i] + (size_t)l * P->Hkv;
            /* FFN units */
            if (align_correlate(nt, z[0], F, z[1], F, T, corr) || align_match(corr, F, pf)) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
            for (int j = 0; j < F; j++) P->ffn_corr[i][(size_t)l * F + j] = corr[(size_t)j * F + pf[j]];
            /* kv heads: keys' and values' correlations, dimension by dimension */
            if (align_correlate(nt, kv[0], 2 * kvd, kv[1], 2 * kvd, T, corr)) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
            float hs[64 * 64];
            align_kv_head_sims(corr, P->Hkv, hd, hs);
            if (align_match(hs, P->Hkv, pk)) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
            /* query heads within each matched group, on their attention outputs */
            if (align_correlate(nt, att[0], qd, att[1], qd, T, corr)) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
            for (int g = 0; g < P->Hkv && !st; g++) {
                int sub[64];
                align_q_head_sims(corr, P->Hq, P->Hkv, hd, g, pk[g], hs);
                if (align_match(hs, G, sub)) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
                for (int a = 0; a < G; a++) pq[g * G + a] = pk[g] * G + sub[a];
            }
        }
        sqz_progress(ctx, "pleas", (uint64_t)l + 1, (uint64_t)2 * L);
    }
    for (int i = 1; i < N && !st; i++) { /* the residual stream, over all its states */
        for (size_t k = 0; k < (size_t)D * D; k++) sim[k] = (float)res_sum[(size_t)(i - 1) * D * D + k];
        if (align_match(sim, D, P->res[i])) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
done:
    for (int k = 0; k < 2; k++) free(kv[k]), free(att[k]), free(z[k]);
    free(corr), free(sim), free(res_sum);
    return st;
}

/* The budget's m - F least correlated matched pairs (model i > 0) keep model i's unit apart:
 * map and cnt. */
static sqz_status plan_width(pleas *P) {
    const int N = P->N, L = P->L, F = P->F, m = P->m, extra = m - F;
    const size_t n = (size_t)(N - 1) * F;
    float *key = malloc((n ? n : 1) * sizeof *key);
    if (!key) return sqz_fail(P->ctx, SQZ_ERR_NOMEM, "out of memory");
    for (int l = 0; l < L; l++) {
        uint64_t *cm = P->cmask + (size_t)l * m;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < F; j++) P->map[i][(size_t)l * F + j] = j;
        int next = F;
        if (extra > 0) { /* the threshold: the extra-th smallest correlation */
            for (int i = 1; i < N; i++) memcpy(key + (size_t)(i - 1) * F, P->ffn_corr[i] + (size_t)l * F, F * sizeof *key);
            for (int e = 0; e < extra; e++) { /* selection: repeatedly the smallest not yet taken */
                size_t best = 0;
                for (size_t k = 1; k < n; k++)
                    if (key[k] < key[best]) best = k;
                P->map[1 + best / F][(size_t)l * F + best % F] = next++;
                key[best] = INFINITY;
            }
        }
        memset(cm, 0, (size_t)m * sizeof *cm);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < F; j++) cm[P->map[i][(size_t)l * F + j]] |= (uint64_t)1 << i;
    }
    free(key);
    return SQZ_OK;
}

/* ------------------------------------------------------------------ step 2: least squares */

/* W [rows][K] = argmin ||X W^T - Y||^2 + lambda ||W - W0||^2 with X [T][K] (the merged
 * model's input), Y [T][ldy] from column y0 (the targets), lambda = damp x mean diag(X^T X). */
static sqz_status solve(pleas *P, const float *X, int K, const float *Y, int ldy, int y0, int rows,
                        const float *W0, float *W) {
    const size_t T = P->cal.T;
    float *g = malloc((size_t)K * K * sizeof *g), *b = malloc((size_t)rows * K * sizeof *b);
    double *G = malloc((size_t)K * K * sizeof *G), *B = malloc((size_t)rows * K * sizeof *B);
    if (!g || !b || !G || !B) {
        free(g), free(b), free(G), free(B);
        return sqz_fail(P->ctx, SQZ_ERR_NOMEM, "pleas: out of memory for a %d x %d solve", K, K);
    }
    const int nt = P->ctx->n_threads;
    align_gemm(nt, K, K, (int64_t)T, X, (size_t)K, 1, X, (size_t)K, 1, g, (size_t)K, 0);
    align_gemm(nt, rows, K, (int64_t)T, Y + y0, (size_t)ldy, 1, X, (size_t)K, 1, b, (size_t)K, 0);
    double mean = 0;
    for (int i = 0; i < K; i++) {
        for (int j = 0; j <= i; j++) G[(size_t)i * K + j] = G[(size_t)j * K + i] = g[(size_t)i * K + j];
        mean += G[(size_t)i * K + i];
    }
    mean /= K;
    for (size_t k = 0; k < (size_t)rows * K; k++) B[k] = b[k];
    const int rc = sqz_ridge_solve(G, K, B, rows, W0, P->damp * mean, NULL);
    for (size_t k = 0; rc == 0 && k < (size_t)rows * K; k++) W[k] = (float)B[k];
    free(g), free(b), free(G), free(B);
    if (rc < 0) return sqz_fail(P->ctx, SQZ_ERR_NOMEM, "pleas: out of memory");
    if (rc > 0) return sqz_fail(P->ctx, SQZ_ERR_RANGE, "pleas: least squares failed (X^T X not positive definite)");
    return SQZ_OK;
}

static float *alloc_tensor(sqz_tensor *t, int64_t rows, int64_t cols) {
    float *d = calloc((size_t)(rows * cols), sizeof *d);
    *t = (sqz_tensor){ .type = SQZ_TYPE_F32, .rows = rows, .cols = cols, .data = d };
    return d;
}

/* The merged block l from the models' permuted blocks ws[N]: streams advanced. */
/* One site of the merged block: the block run to `site` on the merged stream (the site's input
 * lands in c->dst), then its n matrices (rows[k] x K each, stacked in order) solved together
 * against the targets y (one row of sum(rows) a token); w0 is scratch for the stack. */
static sqz_status solve_site(pleas *P, sqz_layer_weights *mw, int l, float *h, cap *c, int site, int K,
                             const float *y, float *const *mats, const int *rows, int n, float *w0) {
    memcpy(h, P->Hm, P->cal.T * P->D * sizeof *h);
    c->site = site;
    sqz_status st = pass(P, P->sm, mw, l, h, site, c);
    if (st) return st;
    int total = 0;
    for (int k = 0; k < n; k++) {
        memcpy(w0 + (size_t)total * K, mats[k], (size_t)rows[k] * K * sizeof *w0);
        total += rows[k];
    }
    if (n == 1) return solve(P, c->dst, K, y, total, 0, total, w0, mats[0]);
    float *sol = malloc((size_t)total * K * sizeof *sol);
    if (!sol) return sqz_fail(P->ctx, SQZ_ERR_NOMEM, "out of memory");
    st = solve(P, c->dst, K, y, total, 0, total, w0, sol);
    for (int k = 0, r0 = 0; !st && k < n; r0 += rows[k++])
        memcpy(mats[k], sol + (size_t)r0 * K, (size_t)rows[k] * K * sizeof *sol);
    free(sol);
    return st;
}

static sqz_status merge_block(pleas *P, int l, sqz_layer_weights *ws, sqz_layer_weights *mw, float *big) {
    sqz_ctx *ctx = P->ctx;
    const int N = P->N, D = P->D, F = P->F, m = P->m, qd = P->qd, kvd = P->kvd, qkv = qd + 2 * kvd;
    const size_t T = P->cal.T;
    const float invN = 1.0f / (float)N;
    sqz_status st = SQZ_OK;
    /* targets, averaged over the models: [qkv | o | gate up | down] */
    float *yqkv = big, *yo = yqkv + T * qkv, *ygu = yo + T * D, *yd = ygu + T * 2 * m, *xm = yd + T * D;
    memset(big, 0, T * (size_t)(qkv + 2 * D + 2 * m) * sizeof *big);
    const int wid = F > qd ? (F > D ? F : D) : (qd > D ? qd : D);
    float *tmp = malloc((size_t)P->s->max_batch * wid * sizeof *tmp);
    if (!tmp) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    for (int i = 0; i < N && !st; i++) {
        cap c = { .P = P, .mode = CAP_TARGET, .w = &ws[i], .model = i, .yqkv = yqkv, .yo = yo, .ygu = ygu, .yd = yd,
                  .tmp = tmp };
        st = pass(P, P->s, &ws[i], l, P->H + (size_t)i * T * D, -1, &c);
    }
    free(tmp);
    /* the merged block, all averages to start with (norm gains stay so) */
    float *an = alloc_tensor(&mw->attn_norm, 1, D), *fn = alloc_tensor(&mw->ffn_norm, 1, D);
    float *wq = alloc_tensor(&mw->wq, qd, D), *wk = alloc_tensor(&mw->wk, kvd, D), *wv = alloc_tensor(&mw->wv, kvd, D);
    float *wo = alloc_tensor(&mw->wo, D, qd);
    float *wg = alloc_tensor(&mw->w_gate, m, D), *wu = alloc_tensor(&mw->w_up, m, D), *wd = alloc_tensor(&mw->w_down, D, m);
    float *w0 = malloc((size_t)(qkv > 2 * m ? qkv : 2 * m) * (D > m ? D : m) * sizeof *w0);
    if (st || !an || !fn || !wq || !wk || !wv || !wo || !wg || !wu || !wd || !w0) {
        free(w0);
        return st ? st : sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    const uint64_t *cm = P->cmask + (size_t)l * m;
    for (int i = 0; i < N; i++) {
        const sqz_layer_weights *w = &ws[i];
        const int *map = P->map[i] + (size_t)l * F;
        for (int j = 0; j < D; j++) an[j] += invN * ((const float *)w->attn_norm.data)[j], fn[j] += invN * ((const float *)w->ffn_norm.data)[j];
        for (size_t k = 0; k < (size_t)qd * D; k++) wq[k] += invN * ((const float *)w->wq.data)[k];
        for (size_t k = 0; k < (size_t)kvd * D; k++) wk[k] += invN * ((const float *)w->wk.data)[k], wv[k] += invN * ((const float *)w->wv.data)[k];
        for (size_t k = 0; k < (size_t)D * qd; k++) wo[k] += invN * ((const float *)w->wo.data)[k];
        for (int j = 0; j < F; j++) {
            const int n = map[j];
            const float a = 1.0f / (float)popcount64(cm[n]);
            for (int k = 0; k < D; k++) {
                wg[(size_t)n * D + k] += a * ((const float *)w->w_gate.data)[(size_t)j * D + k];
                wu[(size_t)n * D + k] += a * ((const float *)w->w_up.data)[(size_t)j * D + k];
                wd[(size_t)k * m + n] += invN * ((const float *)w->w_down.data)[(size_t)k * F + j];
            }
        }
    }
    float *h = malloc(T * D * sizeof *h);
    if (!h) {
        free(w0);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    /* each site on the merged block so far: q, k, v on its normed input; o on its attention's
     * output; gate and up on the FFN's normed input; down on the SwiGLU output */
    cap c = { .P = P, .mode = CAP_SITE, .dst = xm };
    float *qkv_m[3] = { wq, wk, wv }, *gu_m[2] = { wg, wu };
    const int qkv_r[3] = { qd, kvd, kvd }, gu_r[2] = { m, m }, d_r[1] = { D };
    st = solve_site(P, mw, l, h, &c, SQZ_SITE_QKV, D, yqkv, qkv_m, qkv_r, 3, w0);
    if (!st) st = solve_site(P, mw, l, h, &c, SQZ_SITE_O, qd, yo, &wo, d_r, 1, w0);
    if (!st) st = solve_site(P, mw, l, h, &c, SQZ_SITE_GATE_UP, D, ygu, gu_m, gu_r, 2, w0);
    if (!st) st = solve_site(P, mw, l, h, &c, SQZ_SITE_DOWN, m, yd, &wd, d_r, 1, w0);
    free(h);
    free(w0);
    if (!st) st = pass(P, P->sm, mw, l, P->Hm, -1, NULL); /* the merged stream, one block on */
    return st;
}

/* ------------------------------------------------------------------ the run */

/* Every model's residual stream from its (permuted when perm) embedding; with merged, the
 * merged stream from their average too, the average written to emb (V x D) if not NULL. */
static sqz_status start_streams(pleas *P, int perm, float *emb) {
    const out_tensor *o = &P->r->list[0]; /* model.embed_tokens.weight */
    const int D = P->D;
    if (emb) memset(emb, 0, (size_t)P->V * D * sizeof *emb);
    for (int i = 0; i < P->N; i++) {
        float *e = load_outer(P, i, o, perm);
        if (!e) return sqz_fail(P->ctx, SQZ_ERR_NOMEM, "out of memory");
        for (size_t t = 0; t < P->cal.T; t++) memcpy(P->H + ((size_t)i * P->cal.T + t) * D, e + (size_t)P->cal.ids[t] * D, D * sizeof *e);
        for (size_t k = 0; emb && k < (size_t)P->V * D; k++) emb[k] += e[k] / P->N;
        free(e);
    }
    for (size_t t = 0; emb && t < P->cal.T; t++) memcpy(P->Hm + t * D, emb + (size_t)P->cal.ids[t] * D, D * sizeof *emb);
    return SQZ_OK;
}

static void free_pleas(pleas *P) {
    for (int i = 0; i < P->N; i++) {
        if (P->res) free(P->res[i]);
        if (P->ffn) free(P->ffn[i]);
        if (P->qh) free(P->qh[i]);
        if (P->kvh) free(P->kvh[i]);
        if (P->ffn_corr) free(P->ffn_corr[i]);
        if (P->map) free(P->map[i]);
    }
    free(P->res), free(P->ffn), free(P->qh), free(P->kvh), free(P->ffn_corr), free(P->map), free(P->cmask);
    align_calib_free(&P->cal);
    free(P->H), free(P->Hm);
    sqz_session_free(P->s);
    sqz_session_free(P->sm);
}

/* The shapes, the parameters, the calibration text, the state's arrays and the two sessions. */
static sqz_status setup(pleas *P, merge_run *r) {
    sqz_ctx *ctx = r->ctx;
    const sqz_config *c = &r->models[0]->cfg;
    P->r = r, P->ctx = ctx, P->N = r->n_in, P->L = c->n_layers, P->D = c->dim, P->F = c->hidden_dim;
    P->Hq = c->n_heads, P->Hkv = c->n_kv_heads, P->hd = c->head_dim, P->V = c->vocab_size;
    P->qd = P->Hq * P->hd, P->kvd = P->Hkv * P->hd;
    P->budget = align_param(r, SQZ_MP_BUDGET), P->damp = align_param(r, SQZ_MP_DAMP);
    if (!(P->budget >= 1 && P->budget <= P->N))
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: budget = %g (the merged FFN's width as a multiple of the models': 1 .. %d)",
                        r->cfg->path, P->budget, P->N);
    if (!(P->damp >= 0 && P->damp <= 1e6)) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: damp = %g (want >= 0)", r->cfg->path, P->damp);
    P->m = (int)lround(P->budget * P->F);
    if (c->has_qkv_bias || r->models[0]->layers[0].bo.data || P->Hkv > 64 || P->Hq / P->Hkv > 64)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: pleas merges llama-shaped blocks without attention biases "
                        "(at most 64 kv heads and 64 query heads a group)", r->paths[0]);
    if (!r->opts || (!r->opts->calib && !r->opts->n_task_calib))
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: pleas needs calibration text (sqz merge --calib FILE)", r->cfg->path);
    if (P->N > 64) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: pleas merges at most 64 models", r->cfg->path);
    sqz_status st = align_calib_windows(r, &P->cal);
    if (st) return st;
    const int N = P->N;
    P->res = calloc(N, sizeof *P->res), P->ffn = calloc(N, sizeof *P->ffn), P->qh = calloc(N, sizeof *P->qh);
    P->kvh = calloc(N, sizeof *P->kvh), P->ffn_corr = calloc(N, sizeof *P->ffn_corr), P->map = calloc(N, sizeof *P->map);
    P->cmask = malloc((size_t)P->L * P->m * sizeof *P->cmask);
    P->H = malloc((size_t)N * P->cal.T * P->D * sizeof *P->H);
    P->Hm = malloc(P->cal.T * P->D * sizeof *P->Hm);
    if (!P->res || !P->ffn || !P->qh || !P->kvh || !P->ffn_corr || !P->map || !P->cmask || !P->H || !P->Hm)
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "pleas: out of memory for %zu calibration tokens", P->cal.T);
    for (int i = 0; i < N; i++) {
        P->res[i] = malloc((size_t)P->D * sizeof(int));
        P->ffn[i] = malloc((size_t)P->L * P->F * sizeof(int));
        P->qh[i] = malloc((size_t)P->L * P->Hq * sizeof(int));
        P->kvh[i] = malloc((size_t)P->L * P->Hkv * sizeof(int));
        P->ffn_corr[i] = malloc((size_t)P->L * P->F * sizeof(float));
        P->map[i] = malloc((size_t)P->L * P->F * sizeof(int));
        if (!P->res[i] || !P->ffn[i] || !P->qh[i] || !P->kvh[i] || !P->ffn_corr[i] || !P->map[i])
            return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        for (int j = 0; j < P->D; j++) P->res[i][j] = j;
        for (int j = 0; j < P->L * P->F; j++) P->ffn[i][j] = j % P->F, P->ffn_corr[i][j] = 1;
        for (int j = 0; j < P->L * P->Hq; j++) P->qh[i][j] = j % P->Hq;
        for (int j = 0; j < P->L * P->Hkv; j++) P->kvh[i][j] = j % P->Hkv;
    }
    P->run_m = *r->models[0];
    P->run_m.cfg.rope_interleaved = 0; /* the f32 blocks are in HF's row order */
    P->run_mm = P->run_m;
    P->run_mm.cfg.hidden_dim = P->m;
    if ((st = sqz_session_new(ctx, &P->run_m, P->cal.C, &P->s))) return st;
    return sqz_session_new(ctx, &P->run_mm, P->cal.C, &P->sm);
}

static sqz_status run(merge_run *r, const char *dir, sqz_type type, struct sqz_merge_result *res) {
    sqz_ctx *ctx = r->ctx;
    pleas P = { 0 };
    sqz_hf_export *e = NULL;
    sqz_layer_weights *ws = NULL, mw = { 0 };
    float *emb = NULL, *big = NULL;
    char *tok = NULL;
    sqz_status st = setup(&P, r);
    const int N = P.N, L = P.L, D = P.D, m = P.m;
    /* 1: permutations from the models' own activations */
    if (!st && N > 1 && !(st = start_streams(&P, 0, NULL))) st = find_permutations(&P);
    if (!st) st = plan_width(&P);
    /* the output: everything declared before any block is solved */
    if (!st && !(tok = merge_pick_tokenizer(r))) st = SQZ_ERR_ARG;
    if (!st) st = sqz_hf_export_new(ctx, dir, &e);
    if (!st) st = align_write_config(r, m, P.F, e);
    if (!st) st = sqz_hf_export_tokenizer(e, tok);
    /* how far from the identity the matching went (fine-tunes of one base: not far) */
    long fix_res = 0, fix_ffn = 0, fix_q = 0;
    for (int i = 1; i < N && !st; i++) {
        for (int j = 0; j < D; j++) fix_res += P.res[i][j] == j;
        for (int j = 0; j < L * P.F; j++) fix_ffn += P.ffn[i][j] == j % P.F;
        for (int j = 0; j < L * P.Hq; j++) fix_q += P.qh[i][j] == j % P.Hq;
    }
    char params[512];
    snprintf(params, sizeof params, "budget %g (FFN width %d), damp %g, %zu calibration tokens from %.100s%s; "
             "units matched to themselves: residual %ld of %d, FFN %ld of %d, query heads %ld of %d",
             P.budget, m, P.damp, P.cal.T, r->opts && r->opts->calib ? r->opts->calib : "each model's text",
             r->opts && r->opts->calib && r->opts->n_task_calib ? " and the models' own texts" : "",
             fix_res, (N - 1) * D, fix_ffn, (N - 1) * L * P.F, fix_q, (N - 1) * L * P.Hq);
    const sqz_model_card card = { .method = r->method->name, .parameters = params };
    if (!st) st = sqz_hf_export_card(e, &card);
    for (int k = 0; k < r->n_list && !st; k++) {
        const out_tensor *o = &r->list[k];
        int64_t shape[2] = { o->rows, o->cols };
        if (o->spec && (o->spec->at == offsetof(sqz_layer_weights, w_gate) || o->spec->at == offsetof(sqz_layer_weights, w_up))) shape[0] = m;
        if (o->spec && o->spec->at == offsetof(sqz_layer_weights, w_down)) shape[1] = m;
        const int v = merge_is_vec(o);
        st = sqz_hf_export_declare(e, o->name, type, v ? 1 : 2, v ? shape + 1 : shape);
        res->n_params += (uint64_t)(shape[0] * shape[1]);
        if ((uint64_t)(shape[0] * shape[1]) > res->max_tensor_elems) res->max_tensor_elems = (uint64_t)(shape[0] * shape[1]);
    }
    const int qkv = P.qd + 2 * P.kvd;
    if (!st) {
        emb = malloc((size_t)P.V * D * sizeof *emb);
        big = malloc(P.cal.T * (size_t)(qkv + 2 * D + 2 * m + (D > m ? D : m)) * sizeof *big);
        ws = calloc((size_t)N, sizeof *ws);
        if (!emb || !big || !ws) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "pleas: out of memory for %zu calibration tokens", P.cal.T);
    }
    /* 2: the streams again, in the anchor's order, and the merged one */
    if (!st) st = start_streams(&P, 1, emb);
    if (!st) st = sqz_hf_export_begin(e);
    int k = 0;
    if (!st) st = sqz_hf_export_put_f32(e, emb, (size_t)P.V * D), k = 1;
    for (int l = 0; l < L && !st; l++) {
        for (int i = 0; i < N && !st; i++) st = load_layer(&P, i, l, 1, &ws[i]);
        if (!st) st = merge_block(&P, l, ws, &mw, big);
        for (; k < r->n_list && !st && r->list[k].layer == l; k++) {
            const sqz_tensor *t = align_field(&mw, &r->list[k]);
            st = sqz_hf_export_put_f32(e, t->data, (size_t)(t->rows * t->cols));
        }
        for (int i = 0; i < N; i++) align_free_layer(&ws[i]);
        align_free_layer(&mw);
        sqz_progress(ctx, "pleas", (uint64_t)(L + l + 1), (uint64_t)2 * L);
    }
    for (; k < r->n_list && !st; k++) { /* the final norm, an untied lm_head: averages */
        const out_tensor *o = &r->list[k];
        const size_t n = (size_t)(o->rows * o->cols);
        float *acc = calloc(n, sizeof *acc);
        if (!acc) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
        for (int i = 0; i < N && !st; i++) {
            float *x = load_outer(&P, i, o, 1);
            if (!x) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
            for (size_t j = 0; x && j < n; j++) acc[j] += x[j] / N;
            free(x);
        }
        if (!st) st = sqz_hf_export_put_f32(e, acc, n);
        free(acc);
    }
    if (!st) st = sqz_hf_export_finish(e);
    sqz_hf_export_free(e);
    free(ws), free(emb), free(big), free(tok);
    free_pleas(&P);
    return st;
}

const sqz_merge_method sqz_merge_pleas = {
    .name = "pleas",
    .help = "PLeaS: features matched by activation correlation (residual stream, heads, FFN units), "
            "then each block's matrices solved by least squares on the merged model's activations; "
            "keys budget (FFN width x, 1..N), damp; needs --calib",
    .takes_base = 0, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_BUDGET) | SQZ_MP_BIT(SQZ_MP_DAMP),
    .defaults = { [SQZ_MP_BUDGET] = 1, [SQZ_MP_DAMP] = 0.01 },
    .whole = run,
    .calib = 1,
};
