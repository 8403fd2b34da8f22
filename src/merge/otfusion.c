/* otfusion.c - transformer fusion with optimal transport (Imfeld, Graldi, Giordano, Hofmann,
 * Anagnostidis, Singh, "Transformer Fusion with Optimal Transport", ICLR 2024) for llama-shaped
 * models (RMSNorm, RoPE attention with GQA, SwiGLU FFN, residual stream). The config's models
 * are merged without a base (base_model, if given, is only the --eval baseline); model 0 is the
 * anchor every other model is aligned to; the aligned models are then averaged with the
 * models' `weight`s (default 1 each, normalized to sum 1).
 *
 * Alignment: soft (entropic) optimal transport between the anchor's and model i's features,
 * from their activations on the calibration text (each model runs the same windows: the
 * calibration windows and their texts as pleas.c's, merge/align.h). The ground cost of two
 * features is 1 - their Pearson correlation over the T calibration tokens (= half the squared
 * Euclidean distance of the standardized activations); uniform marginals; the plan P [n][n] by
 * Sinkhorn (math/sinkhorn.h) at entropy weight eps = reg x the cost's mean (reg, default 0.01),
 * or with exact: 1 by the linear assignment (math/lap.h), where P is a permutation / n. The
 * alignment matrix is A = n P (the paper's plan divided by the target marginal): each row, an
 * anchor feature, is a convex mix of model i's features (one 1 per row for a permutation). A
 * model is carried to the anchor's basis by W' = A_out W A_in^T, consistently through the model:
 *   - the residual stream: ONE map A_r [D][D] for the whole model (the residual additions tie
 *     every block's input and output together), its cost the mean over the L + 1 stream states
 *     (embeddings, each block's output) of 1 - correlation. It transports the embedding's and
 *     lm_head's columns, both RMSNorm gains (g' = A_r g), the input columns of q, k, v, gate, up
 *     and the output rows of o and down;
 *   - per block, the FFN's F hidden units, on the SwiGLU output (down's input): A_f [F][F] for
 *     the rows of gate and up and the columns of down;
 *   - per block, attention as whole heads, GQA-aware: the Hkv kv heads get A_kv [Hkv][Hkv] from
 *     their keys' correlations (dimension by dimension: RoPE rotates fixed pairs (i, i + hd/2),
 *     so a head's q/k dimensions are never mixed) plus their values' (each anchor dimension's
 *     best correlation within the other head); then the query heads, within each pair of kv
 *     heads (g, g2) that A_kv joins, get a G x G map on their attention outputs (G = Hq / Hkv),
 *     A_q[g G + a][g2 G + b] = A_kv[g][g2] S_gg2[a][b], so a query head follows its kv head.
 *     Q and K share the head maps (dimension d to dimension d: the q.k products and RoPE are
 *     kept); V and O share them too, with a value-dimension map M_gg2 [hd][hd] inside each joined
 *     pair of kv heads (values carry no RoPE) from the values' correlations: V's rows get
 *     A_kv (x) M, O's columns A_q (x) M (query head h's output dims are its kv head's values').
 * Every map is computed from the models' own activations, so the order of alignment does not
 * change them. With exact OT (or reg -> 0) every A is a permutation and this is the
 * permutation merge (activation matching as git-re-basin's, then the average).
 *
 * Deviations from the paper: (1) the residual stream's map is computed directly, once, from
 * the stream's activations summed over all its states, instead of being derived from the maps
 * that flow into each residual connection (the paper's transportation-map flow graph and its
 * averaging policies); one map for the stream as there. (2) The cost is 1 - correlation of the
 * activations (standardized Euclidean) rather than the raw Euclidean distance, so features of
 * different scales (fine-tunes, RMSNorm gains) are compared on their pattern. (3) Heads: the
 * paper aligns each of Q, K, V's heads' neurons; here whole heads are transported (GQA: kv heads,
 * then query heads within them) with dimension maps only where RoPE allows (V/O). (4) Sinkhorn's
 * eps is relative (reg x the mean cost) so one reg suits every layer's cost scale. (5) Sinkhorn
 * stops once every row holds its mass to 1 % (then A's rows sum to 1 within 1 %).
 * RMSNorm is permutation-equivariant but not equivariant to a soft map; as for the paper's
 * LayerNorm, the gains are transported and the norm taken as is.
 *
 * Memory (T calibration tokens over all texts, N models, D, F, qd = Hq hd, kvd = Hkv hd; f32):
 * the residual streams, N x T x D; the activations of two models, 2 x T x (2 kvd + qd + F);
 * the correlation, cost and plan of the widest map, F^2 x (4 + 8 + 8) bytes; each model's
 * residual map and its summed correlations, (N - 1) x D^2 x (4 + 8); one model's block and the
 * merged block in f32 with a block's temporary; the embedding (V x D) of one model and the
 * merged one. The weights are streamed block by block; the activations and streams dominate
 * (14M models, 3 texts x 8192 tokens, T = 24576: 113 + 327 MB of them, peak RSS 495 MiB).
 * Time: the models run the calibration text twice (the stream's map needs every state before
 * any block is aligned); each map is a Sinkhorn of a few hundred O(n^2) iterations at most (eps
 * scaling), and a near-permutation map is applied as sparse rows, not a dense product.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "math/lap.h"
#include "math/sinkhorn.h"
#include "merge/align.h"
#include "model/export_hf.h"
#include "model/session.h"
#include "sqz.h"

typedef struct otf {
    merge_run *r;
    sqz_ctx *ctx;
    int N, L, D, F, Hq, Hkv, hd, qd, kvd, V, G;
    align_calib cal;
    double reg;
    int exact;
    double *w;             /* [N] the weights, summing to 1 */
    float **Ar;            /* [N][D][D] the stream's maps (NULL: the anchor, a weight of 0) */
    sqz_model run_m;       /* a struct copy of model 0 that runs f32 blocks */
    sqz_session *s;
    float *H;              /* [N][T][D] the models' residual streams */
    double *cost, *plan;   /* [n][n] scratch, n the widest map */
    float *corr;           /* [n][n] */
    /* the card's statistics per kind (residual, FFN, kv heads, query heads): the mean over the
     * maps' rows of their largest entry (1: a permutation) and the rows whose largest entry is
     * on the diagonal */
    double sharp[4];
    long rows[4], diag[4];
} otf;

enum { K_RES, K_FFN, K_KV, K_Q };

/* ------------------------------------------------------------------ transport */

static void note(otf *O, int kind, const float *A, int n) {
    for (int j = 0; j < n; j++) {
        int best = 0;
        for (int k = 1; k < n; k++)
            if (A[(size_t)j * n + k] > A[(size_t)j * n + best]) best = k;
        O->sharp[kind] += A[(size_t)j * n + best], O->rows[kind]++, O->diag[kind] += best == j;
    }
}

/* A [n][n] = n x the transport plan for O->cost [n][n]: row j, the anchor's feature j, a convex
 * mix of the model's features. */
static sqz_status transport(otf *O, int n, float *A) {
    const double *C = O->cost;
    if (O->exact) {
        int *col = malloc((size_t)n * sizeof *col);
        if (!col || sqz_lap_solve(C, n, col)) {
            free(col);
            return sqz_fail(O->ctx, SQZ_ERR_NOMEM, "otfusion: out of memory");
        }
        memset(A, 0, (size_t)n * n * sizeof *A);
        for (int j = 0; j < n; j++) A[(size_t)j * n + col[j]] = 1;
        free(col);
        return SQZ_OK;
    }
    double mean = 0;
    for (size_t k = 0; k < (size_t)n * n; k++) mean += C[k];
    mean /= (double)n * n;
    const double eps = O->reg * fmax(mean, 1e-6);
    /* rows within 1 % of their mass: an alignment needs no more (and small eps converges slowly) */
    const int rcs = sqz_sinkhorn(C, n, n, NULL, NULL, eps, 3000, 1e-2 / n, O->plan, NULL);
    if (rcs < 0)
        return sqz_fail(O->ctx, SQZ_ERR_NOMEM, "otfusion: out of memory for a %d x %d transport", n, n);
    for (size_t k = 0; k < (size_t)n * n; k++) A[k] = (float)(n * O->plan[k]);
    return SQZ_OK;
}

/* B [n][n]'s entries above 1e-7 (rows of A sum to 1: what is dropped is noise) as compressed
 * rows, when they are few (a near-permutation: n of n^2); 1 with them, 0 when dense is cheaper,
 * -1 without memory. */
typedef struct csr {
    int *start, *col;
    float *val;
} csr;

static int to_csr(const float *B, int64_t n, csr *c) {
    size_t nnz = 0;
    for (size_t k = 0; k < (size_t)(n * n); k++) nnz += B[k] > 1e-7f || B[k] < -1e-7f;
    if (nnz > (size_t)(n * n) / 8) return 0;
    c->start = malloc((size_t)(n + 1) * sizeof *c->start);
    c->col = malloc((nnz ? nnz : 1) * sizeof *c->col);
    c->val = malloc((nnz ? nnz : 1) * sizeof *c->val);
    if (!c->start || !c->col || !c->val) {
        free(c->start), free(c->col), free(c->val);
        return -1;
    }
    size_t at = 0;
    for (int64_t r = 0; r < n; r++) {
        c->start[r] = (int)at;
        for (int64_t k = 0; k < n; k++)
            if (B[r * n + k] > 1e-7f || B[r * n + k] < -1e-7f) c->col[at] = (int)k, c->val[at++] = B[r * n + k];
    }
    c->start[n] = (int)at;
    return 1;
}

/* W [rows][cols] = B W (B [rows][rows]); W B^T (B [cols][cols]) with cols_side */
static int xform(int nt, float *W, int64_t rows, int64_t cols, const float *B, int cols_side) {
    const int64_t n = cols_side ? cols : rows;
    float *y = malloc((size_t)(rows * cols) * sizeof *y);
    csr c = { 0 };
    const int sp = y ? to_csr(B, n, &c) : -1;
    if (sp < 0) {
        free(y);
        return -1;
    }
    if (!sp && cols_side)
        align_gemm(nt, rows, cols, cols, W, (size_t)cols, 0, B, (size_t)cols, 0, y, (size_t)cols, 0);
    else if (!sp)
        align_gemm(nt, rows, cols, rows, B, (size_t)rows, 0, W, (size_t)cols, 1, y, (size_t)cols, 0);
    else if (cols_side) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && rows * cols > 65536)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                float s = 0;
                for (int k = c.start[j]; k < c.start[j + 1]; k++) s += c.val[k] * W[i * cols + c.col[k]];
                y[i * cols + j] = s;
            }
    } else {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && rows * cols > 65536)
        for (int64_t i = 0; i < rows; i++) {
            float *yi = y + i * cols;
            for (int64_t j = 0; j < cols; j++) yi[j] = 0;
            for (int k = c.start[i]; k < c.start[i + 1]; k++) {
                const float a = c.val[k], *x = W + (int64_t)c.col[k] * cols;
                for (int64_t j = 0; j < cols; j++) yi[j] += a * x[j];
            }
        }
    }
    memcpy(W, y, (size_t)(rows * cols) * sizeof *y);
    free(y), free(c.start), free(c.col), free(c.val);
    return 0;
}

static int xform_rows(int nt, float *W, int64_t rows, int64_t cols, const float *B) {
    return xform(nt, W, rows, cols, B, 0);
}

static int xform_cols(int nt, float *W, int64_t rows, int64_t cols, const float *B) {
    return xform(nt, W, rows, cols, B, 1);
}

/* ------------------------------------------------------------------ the maps of one block */

typedef struct block_maps {
    float *Af;             /* [F][F] */
    float *Bq, *Bo;        /* [qd][qd]: A_q (x) I (q's rows), A_q (x) M (o's columns) */
    float *Bk, *Bv;        /* [kvd][kvd]: A_kv (x) I, A_kv (x) M */
} block_maps;

/* Block maps of model i from the anchor's activations (a = kv, att, z of model 0) and model
 * i's (b). */
static sqz_status block_maps_of(otf *O, float *const *kv, float *const *att, float *const *z, block_maps *bm) {
    const int F = O->F, Hq = O->Hq, Hkv = O->Hkv, hd = O->hd, qd = O->qd, kvd = O->kvd, G = O->G;
    const int nt = O->ctx->n_threads;
    const size_t T = O->cal.T;
    float *c = O->corr;
    double *C = O->cost;
    sqz_status st;
    /* FFN units */
    if (align_correlate(nt, z[0], F, z[1], F, T, c)) return sqz_fail(O->ctx, SQZ_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < (size_t)F * F; k++) C[k] = 1.0 - c[k];
    if ((st = transport(O, F, bm->Af))) return st;
    note(O, K_FFN, bm->Af, F);
    /* kv heads: keys dimension by dimension, values by each dimension's best partner */
    if (align_correlate(nt, kv[0], 2 * kvd, kv[1], 2 * kvd, T, c)) return sqz_fail(O->ctx, SQZ_ERR_NOMEM, "out of memory");
    float Akv[64 * 64], Aq[64 * 64 * 4], S[64 * 64], *M = malloc((size_t)Hkv * Hkv * hd * hd * sizeof *M);
    if (!M || Hq > 128) {
        free(M);
        return sqz_fail(O->ctx, SQZ_ERR_NOMEM, "out of memory");
    }
#define CV(g, d, g2, d2) c[(size_t)(kvd + (g) * hd + (d)) * 2 * kvd + kvd + (g2) * hd + (d2)]
    for (int g = 0; g < Hkv; g++)
        for (int g2 = 0; g2 < Hkv; g2++) {
            double s = 0;
            for (int d = 0; d < hd; d++) {
                float best = -1;
                for (int d2 = 0; d2 < hd; d2++) best = fmaxf(best, CV(g, d, g2, d2));
                s += c[(size_t)(g * hd + d) * 2 * kvd + g2 * hd + d] + best;
            }
            C[g * Hkv + g2] = 1.0 - s / (2.0 * hd);
        }
    if ((st = transport(O, Hkv, Akv))) goto out;
    note(O, K_KV, Akv, Hkv);
    /* values' dimensions within each joined pair of kv heads */
    memset(M, 0, (size_t)Hkv * Hkv * hd * hd * sizeof *M);
    for (int g = 0; g < Hkv && !st; g++)
        for (int g2 = 0; g2 < Hkv && !st; g2++) {
            if (Akv[g * Hkv + g2] < 1e-6f) continue;
            for (int d = 0; d < hd; d++)
                for (int d2 = 0; d2 < hd; d2++) C[d * hd + d2] = 1.0 - CV(g, d, g2, d2);
            st = transport(O, hd, M + (size_t)(g * Hkv + g2) * hd * hd);
        }
#undef CV
    if (st) goto out;
    /* query heads within each joined pair, on their attention outputs (best partner per dim) */
    if (align_correlate(nt, att[0], qd, att[1], qd, T, c)) { st = sqz_fail(O->ctx, SQZ_ERR_NOMEM, "out of memory"); goto out; }
    memset(Aq, 0, sizeof Aq);
    for (int g = 0; g < Hkv && !st; g++)
        for (int g2 = 0; g2 < Hkv && !st; g2++) {
            const float a = Akv[g * Hkv + g2];
            if (a < 1e-6f) continue;
            for (int x = 0; x < G; x++)
                for (int y = 0; y < G; y++) {
                    const int h = g * G + x, h2 = g2 * G + y;
                    double s = 0;
                    for (int d = 0; d < hd; d++) {
                        float best = -1;
                        for (int d2 = 0; d2 < hd; d2++) best = fmaxf(best, c[(size_t)(h * hd + d) * qd + h2 * hd + d2]);
                        s += best;
                    }
                    C[x * G + y] = 1.0 - s / hd;
                }
            if ((st = transport(O, G, S))) break;
            for (int x = 0; x < G; x++)
                for (int y = 0; y < G; y++) Aq[(g * G + x) * Hq + g2 * G + y] = a * S[x * G + y];
        }
    if (st) goto out;
    note(O, K_Q, Aq, Hq);
    /* the dimension-level matrices */
    memset(bm->Bq, 0, (size_t)qd * qd * sizeof(float)), memset(bm->Bo, 0, (size_t)qd * qd * sizeof(float));
    memset(bm->Bk, 0, (size_t)kvd * kvd * sizeof(float)), memset(bm->Bv, 0, (size_t)kvd * kvd * sizeof(float));
    for (int g = 0; g < Hkv; g++)
        for (int g2 = 0; g2 < Hkv; g2++) {
            const float a = Akv[g * Hkv + g2];
            const float *m = M + (size_t)(g * Hkv + g2) * hd * hd;
            if (a == 0) continue;
            for (int d = 0; d < hd; d++) {
                bm->Bk[(size_t)(g * hd + d) * kvd + g2 * hd + d] = a;
                for (int d2 = 0; d2 < hd; d2++) bm->Bv[(size_t)(g * hd + d) * kvd + g2 * hd + d2] = a * m[d * hd + d2];
            }
        }
    for (int h = 0; h < Hq; h++)
        for (int h2 = 0; h2 < Hq; h2++) {
            const float a = Aq[h * Hq + h2];
            const float *m = M + (size_t)((h / G) * Hkv + h2 / G) * hd * hd;
            if (a == 0) continue;
            for (int d = 0; d < hd; d++) {
                bm->Bq[(size_t)(h * hd + d) * qd + h2 * hd + d] = a;
                for (int d2 = 0; d2 < hd; d2++) bm->Bo[(size_t)(h * hd + d) * qd + h2 * hd + d2] = a * m[d * hd + d2];
            }
        }
out:
    free(M);
    return st;
}

/* Model i's block w carried to the anchor's basis. */
static sqz_status align_block(otf *O, const float *Ar, const block_maps *bm, sqz_layer_weights *w) {
    const int nt = O->ctx->n_threads, D = O->D, F = O->F, qd = O->qd, kvd = O->kvd;
    int bad = 0;
    bad |= xform_cols(nt, (float *)w->attn_norm.data, 1, D, Ar);
    bad |= xform_cols(nt, (float *)w->ffn_norm.data, 1, D, Ar);
    bad |= xform_cols(nt, (float *)w->wq.data, qd, D, Ar) || xform_rows(nt, (float *)w->wq.data, qd, D, bm->Bq);
    bad |= xform_cols(nt, (float *)w->wk.data, kvd, D, Ar) || xform_rows(nt, (float *)w->wk.data, kvd, D, bm->Bk);
    bad |= xform_cols(nt, (float *)w->wv.data, kvd, D, Ar) || xform_rows(nt, (float *)w->wv.data, kvd, D, bm->Bv);
    bad |= xform_rows(nt, (float *)w->wo.data, D, qd, Ar) || xform_cols(nt, (float *)w->wo.data, D, qd, bm->Bo);
    bad |= xform_cols(nt, (float *)w->w_gate.data, F, D, Ar) || xform_rows(nt, (float *)w->w_gate.data, F, D, bm->Af);
    bad |= xform_cols(nt, (float *)w->w_up.data, F, D, Ar) || xform_rows(nt, (float *)w->w_up.data, F, D, bm->Af);
    bad |= xform_rows(nt, (float *)w->w_down.data, D, F, Ar) || xform_cols(nt, (float *)w->w_down.data, D, F, bm->Af);
    return bad ? sqz_fail(O->ctx, SQZ_ERR_NOMEM, "otfusion: out of memory") : SQZ_OK;
}

/* ------------------------------------------------------------------ the run */

/* Every used model's residual stream from its own embedding. */
static sqz_status start_streams(otf *O) {
    const out_tensor *o = &O->r->list[0]; /* model.embed_tokens.weight */
    const int D = O->D;
    for (int i = 0; i < O->N; i++) {
        if (i > 0 && O->w[i] == 0) continue;
        float *e = align_load_outer(O->r, i, o);
        if (!e) return sqz_fail(O->ctx, SQZ_ERR_NOMEM, "out of memory");
        for (size_t t = 0; t < O->cal.T; t++)
            memcpy(O->H + ((size_t)i * O->cal.T + t) * D, e + (size_t)O->cal.ids[t] * D, D * sizeof *e);
        free(e);
    }
    return SQZ_OK;
}

/* Pass 1: the stream's map of each model from all L + 1 stream states. */
static sqz_status stream_maps(otf *O) {
    sqz_ctx *ctx = O->ctx;
    const int N = O->N, L = O->L, D = O->D, nt = ctx->n_threads;
    const size_t T = O->cal.T;
    double *sum = calloc((size_t)N * D * D, sizeof *sum);
    sqz_status st = sum ? start_streams(O) : sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    for (int l = 0; l <= L && !st; l++) {
        for (int i = 1; i < N && !st; i++) {
            if (O->w[i] == 0) continue;
            if (align_correlate(nt, O->H, D, O->H + (size_t)i * T * D, D, T, O->corr)) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
            for (size_t k = 0; !st && k < (size_t)D * D; k++) sum[(size_t)i * D * D + k] += O->corr[k];
        }
        if (l == L) break;
        for (int i = 0; i < N && !st; i++) {
            if (i > 0 && O->w[i] == 0) continue;
            sqz_layer_weights w;
            if ((st = align_load_layer(O->r, i, l, "otfusion", &w))) break;
            st = align_block_acts(ctx, O->s, &w, l, O->H + (size_t)i * T * D, &O->cal, NULL, NULL, NULL);
            align_free_layer(&w);
        }
        sqz_progress(ctx, "otfusion", (uint64_t)l + 1, (uint64_t)2 * L);
    }
    for (int i = 1; i < N && !st; i++) {
        if (O->w[i] == 0) continue;
        for (size_t k = 0; k < (size_t)D * D; k++) O->cost[k] = 1.0 - sum[(size_t)i * D * D + k] / (L + 1);
        if (!(O->Ar[i] = malloc((size_t)D * D * sizeof(float)))) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        if (!st && !(st = transport(O, D, O->Ar[i]))) note(O, K_RES, O->Ar[i], D);
    }
    free(sum);
    return st;
}

static float *alloc_tensor(sqz_tensor *t, int64_t rows, int64_t cols) {
    float *d = calloc((size_t)(rows * cols), sizeof *d);
    *t = (sqz_tensor){ .type = SQZ_TYPE_F32, .rows = rows, .cols = cols, .data = d };
    return d;
}

/* Pass 2, block l: each used model's block run (the maps' activations), aligned, added to mw. */
static sqz_status fuse_block(otf *O, int l, float *const *kv, float *const *att, float *const *z, block_maps *bm,
                             sqz_layer_weights *mw) {
    sqz_ctx *ctx = O->ctx;
    const size_t T = O->cal.T;
    sqz_status st = SQZ_OK;
    memset(mw, 0, sizeof *mw);
    for (int i = 0; i < O->N && !st; i++) {
        if (i > 0 && O->w[i] == 0) continue;
        sqz_layer_weights w;
        const int b = i ? 1 : 0;
        if ((st = align_load_layer(O->r, i, l, "otfusion", &w))) break;
        st = align_block_acts(ctx, O->s, &w, l, O->H + (size_t)i * T * O->D, &O->cal, kv[b], att[b], z[b]);
        if (!st && i > 0 && !(st = block_maps_of(O, kv, att, z, bm))) st = align_block(O, O->Ar[i], bm, &w);
        const sqz_tensor *src[SQZ_LAYER_N_TENSORS], *dst[SQZ_LAYER_N_TENSORS];
        if (!st && i == 0) { /* the merged block: model 0's shapes */
            sqz_layer_tensors(&w, src);
            sqz_layer_tensors(mw, dst);
            for (int k = 0; k < SQZ_LAYER_N_TENSORS; k++)
                if (src[k]->data && !alloc_tensor((sqz_tensor *)dst[k], src[k]->rows, src[k]->cols))
                    st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        }
        sqz_layer_tensors(&w, src);
        sqz_layer_tensors(mw, dst);
        const float a = (float)O->w[i];
        for (int k = 0; k < SQZ_LAYER_N_TENSORS && !st; k++) {
            if (!src[k]->data || !dst[k]->data) continue;
            float *y = (float *)dst[k]->data;
            const float *x = src[k]->data;
            const size_t n = (size_t)(src[k]->rows * src[k]->cols);
            if (i == 0) /* assigned, not added to 0: weights (1, 0, ...) give model 0 bit for bit */
                for (size_t j = 0; j < n; j++) y[j] = a * x[j];
            else
                for (size_t j = 0; j < n; j++) y[j] += a * x[j];
        }
        align_free_layer(&w);
    }
    return st;
}

/* The weights: each model's `weight` (default 1), normalized. */
static sqz_status weights(otf *O) {
    merge_run *r = O->r;
    double s = 0;
    for (int i = 0; i < O->N; i++) {
        double v = r->method->defaults[SQZ_MP_WEIGHT];
        const int e = r->entry[i];
        if (!(e >= 0 && merge_value_eval(r->cfg->models[e].p[SQZ_MP_WEIGHT], "", 0, &v)))
            merge_value_eval(r->cfg->g[SQZ_MP_WEIGHT], "", 0, &v);
        if (!(v >= 0 && v < 1e30))
            return sqz_fail(O->ctx, SQZ_ERR_ARG, "%s: weight = %g for model %s (want >= 0)", r->cfg->path, v, r->paths[i]);
        s += O->w[i] = v;
    }
    if (!(s > 0)) return sqz_fail(O->ctx, SQZ_ERR_ARG, "%s: the weights sum to 0", r->cfg->path);
    if (O->w[0] == 0)
        return sqz_fail(O->ctx, SQZ_ERR_ARG, "%s: model 0 (%s) is the anchor: its weight must be > 0", r->cfg->path,
                        r->paths[0]);
    for (int i = 0; i < O->N; i++) O->w[i] /= s;
    return SQZ_OK;
}

static sqz_status setup(otf *O, merge_run *r) {
    sqz_ctx *ctx = r->ctx;
    const sqz_config *c = &r->models[0]->cfg;
    O->r = r, O->ctx = ctx, O->N = r->n_in, O->L = c->n_layers, O->D = c->dim, O->F = c->hidden_dim;
    O->Hq = c->n_heads, O->Hkv = c->n_kv_heads, O->hd = c->head_dim, O->V = c->vocab_size;
    O->qd = O->Hq * O->hd, O->kvd = O->Hkv * O->hd, O->G = O->Hq / O->Hkv;
    O->reg = align_param(r, SQZ_MP_REG), O->exact = align_param(r, SQZ_MP_EXACT) != 0;
    if (!(O->reg > 0 && O->reg <= 1e3))
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: reg = %g (Sinkhorn's entropy weight x the mean cost: > 0; exact: 1 for "
                        "exact OT)", r->cfg->path, O->reg);
    if (c->has_qkv_bias || r->models[0]->layers[0].bo.data || O->Hkv > 64 || O->G > 64 || O->Hq > 128)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: otfusion merges llama-shaped blocks without attention biases "
                        "(at most 64 kv heads, 128 query heads)", r->paths[0]);
    if (!r->opts || (!r->opts->calib && !r->opts->n_task_calib))
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: otfusion needs calibration text (sqz merge --calib FILE)", r->cfg->path);
    if (O->N > 64) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: otfusion merges at most 64 models", r->cfg->path);
    O->w = calloc((size_t)O->N, sizeof *O->w);
    O->Ar = calloc((size_t)O->N, sizeof *O->Ar);
    if (!O->w || !O->Ar) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    sqz_status st = weights(O);
    if (!st) st = align_calib_windows(r, &O->cal);
    if (st) return st;
    const int n = O->F > O->D ? (O->F > O->qd ? O->F : O->qd) : (O->D > O->qd ? O->D : O->qd);
    const int n2 = 2 * O->kvd > n ? 2 * O->kvd : n;
    O->H = malloc((size_t)O->N * O->cal.T * O->D * sizeof *O->H);
    O->cost = malloc((size_t)n * n * sizeof *O->cost);
    O->plan = malloc((size_t)n * n * sizeof *O->plan);
    O->corr = malloc((size_t)n2 * n2 * sizeof *O->corr);
    if (!O->H || !O->cost || !O->plan || !O->corr)
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "otfusion: out of memory for %zu calibration tokens", O->cal.T);
    O->run_m = *r->models[0];
    O->run_m.cfg.rope_interleaved = 0; /* the f32 blocks are in HF's row order */
    return sqz_session_new(ctx, &O->run_m, O->cal.C, &O->s);
}

static void free_otf(otf *O) {
    for (int i = 0; O->Ar && i < O->N; i++) free(O->Ar[i]);
    free(O->Ar), free(O->w), free(O->H), free(O->cost), free(O->plan), free(O->corr);
    align_calib_free(&O->cal);
    sqz_session_free(O->s);
}

static sqz_status run(merge_run *r, const char *dir, sqz_type type, struct sqz_merge_result *res) {
    sqz_ctx *ctx = r->ctx;
    otf O = { 0 };
    sqz_hf_export *e = NULL;
    sqz_layer_weights mw = { 0 };
    block_maps bm = { 0 };
    float *kv[2] = { 0 }, *att[2] = { 0 }, *z[2] = { 0 }, *acc = NULL;
    char *tok = NULL;
    sqz_status st = setup(&O, r);
    const int N = O.N, L = O.L, F = O.F;
    const size_t T = O.cal.T;
    /* 1: the stream's maps */
    if (!st) st = stream_maps(&O);
    if (!st && !(tok = merge_pick_tokenizer(r))) st = SQZ_ERR_ARG;
    if (!st) st = sqz_hf_export_new(ctx, dir, &e);
    if (!st) st = align_write_config(r, F, F, e);
    if (!st) st = sqz_hf_export_tokenizer(e, tok);
    for (int k = 0; k < r->n_list && !st; k++) {
        const out_tensor *o = &r->list[k];
        const int64_t shape[2] = { o->rows, o->cols };
        const int v = merge_is_vec(o);
        st = sqz_hf_export_declare(e, o->name, type, v ? 1 : 2, v ? shape + 1 : shape);
        res->n_params += (uint64_t)(shape[0] * shape[1]);
        if ((uint64_t)(shape[0] * shape[1]) > res->max_tensor_elems) res->max_tensor_elems = (uint64_t)(shape[0] * shape[1]);
    }
    for (int b = 0; b < 2 && !st; b++) {
        kv[b] = malloc(T * 2 * O.kvd * sizeof(float));
        att[b] = malloc(T * O.qd * sizeof(float));
        z[b] = malloc(T * F * sizeof(float));
        if (!kv[b] || !att[b] || !z[b]) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "otfusion: out of memory for the activations (%zu tokens)", T);
    }
    bm.Af = malloc((size_t)F * F * sizeof(float));
    bm.Bq = malloc((size_t)O.qd * O.qd * sizeof(float)), bm.Bo = malloc((size_t)O.qd * O.qd * sizeof(float));
    bm.Bk = malloc((size_t)O.kvd * O.kvd * sizeof(float)), bm.Bv = malloc((size_t)O.kvd * O.kvd * sizeof(float));
    if (!st && (!bm.Af || !bm.Bq || !bm.Bo || !bm.Bk || !bm.Bv)) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    if (!st) st = sqz_hf_export_begin(e);
    /* the tensors outside the blocks: aligned columns, averaged (embedding first, the rest last) */
    int k = 0;
    for (int pass = 0; pass < 2 && !st; pass++) {
        if (pass == 1) { /* 2: the streams again, block by block */
            if ((st = start_streams(&O))) break;
            for (; k < r->n_list && !st && r->list[k].layer >= 0 && r->list[k].layer < L;) {
                const int l = r->list[k].layer;
                st = fuse_block(&O, l, kv, att, z, &bm, &mw);
                for (; k < r->n_list && !st && r->list[k].layer == l; k++) {
                    const sqz_tensor *t = align_field(&mw, &r->list[k]);
                    st = sqz_hf_export_put_f32(e, t->data, (size_t)(t->rows * t->cols));
                }
                align_free_layer(&mw);
                sqz_progress(ctx, "otfusion", (uint64_t)(L + l + 1), (uint64_t)2 * L);
            }
        }
        for (; k < r->n_list && !st && (pass == 1 || r->list[k].layer < 0); k++) {
            const out_tensor *o = &r->list[k];
            const size_t n = (size_t)(o->rows * o->cols);
            if (!(acc = calloc(n, sizeof *acc))) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
            for (int i = 0; i < N && !st; i++) {
                if (i > 0 && O.w[i] == 0) continue;
                float *x = align_load_outer(r, i, o);
                if (!x || (i > 0 && xform_cols(ctx->n_threads, x, o->rows, o->cols, O.Ar[i])))
                    st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
                for (size_t j = 0; !st && j < n; j++) acc[j] = i ? acc[j] + (float)O.w[i] * x[j] : (float)O.w[i] * x[j];
                free(x);
            }
            if (!st) st = sqz_hf_export_put_f32(e, acc, n);
            free(acc), acc = NULL;
        }
    }
    /* the card: the parameters, and how far from permutations and from the identity the maps went */
    if (!st) {
        char params[900], wl[160] = "";
        for (int i = 0, at = 0; i < N && at < (int)sizeof wl - 12; i++)
            at += snprintf(wl + at, sizeof wl - (size_t)at, "%s%.3g", i ? " " : "", O.w[i]);
        const char *kind[4] = { "stream", "FFN", "kv heads", "query heads" };
        char how[64];
        if (O.exact) snprintf(how, sizeof how, "exact OT");
        else snprintf(how, sizeof how, "Sinkhorn, reg %g", O.reg);
        int at = snprintf(params, sizeof params, "%s, weights %s, %zu calibration tokens from %.100s%s; maps' rows: "
                          "mean largest entry (1: a permutation) / share on the diagonal:", how, wl, T,
                          r->opts && r->opts->calib ? r->opts->calib : "each model's text",
                          r->opts && r->opts->calib && r->opts->n_task_calib ? " and the models' own texts" : "");
        for (int q = 0; q < 4 && at > 0 && at < (int)sizeof params; q++)
            at += snprintf(params + at, sizeof params - (size_t)at, " %s %.3f / %.3f", kind[q],
                           O.rows[q] ? O.sharp[q] / O.rows[q] : 1.0, O.rows[q] ? (double)O.diag[q] / O.rows[q] : 1.0);
        const sqz_model_card card = { .method = r->method->name, .parameters = params };
        st = sqz_hf_export_card(e, &card);
    }
    if (!st) st = sqz_hf_export_finish(e);
    sqz_hf_export_free(e);
    for (int b = 0; b < 2; b++) free(kv[b]), free(att[b]), free(z[b]);
    free(bm.Af), free(bm.Bq), free(bm.Bo), free(bm.Bk), free(bm.Bv);
    free(tok);
    free_otf(&O);
    return st;
}

const sqz_merge_method sqz_merge_otfusion = {
    .name = "otfusion",
    .help = "OT fusion (Imfeld et al. 2024): features soft-aligned to model 0 by entropic optimal transport on "
            "activations (one map for the residual stream, whole heads GQA-aware, FFN units), then averaged; "
            "keys weight, reg (Sinkhorn entropy x mean cost), exact (1: permutation merge); needs --calib",
    .takes_base = 0, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_REG) | SQZ_MP_BIT(SQZ_MP_EXACT),
    .defaults = { [SQZ_MP_WEIGHT] = 1, [SQZ_MP_REG] = 0.01, [SQZ_MP_EXACT] = 0 },
    .whole = run,
    .calib = 1,
};
