/* mixllm.c - MixLLM's global salience ranking of output features and the mixed-precision
 * quantization of one matrix (see mixllm.h for the method and how it deviates from the paper).
 *
 * The plan takes three steps over the calibration text, all with the original weights:
 *   1. layer by layer, the Hessian of each input site (H = X^T X) and from it every row's gain
 *      e_lo - e_8 (round-to-nearest errors weighted by H);
 *   2. per matrix, the end-to-end sensitivity s_m: KL(original || model with only m at the
 *      low bit width) over sens_windows windows, per unit of m's summed output error e_lo;
 *   3. one ranking of all rows of all matrices by s_m * gain / cols, taken greedily until the
 *      8-bit rows hold frac of all matrix weights.
 * Quantization itself then happens in calibrate.c's sequential GPTQ loop, one matrix at a time
 * (sqz_mixllm_quantize). */
#include "quant/mixllm.h"
#include "eval/calib_pass.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/mix.h"
#include "kernels/ops.h"
#include "model/session.h"
#include "quant/gptq.h"
#include "quant/kl_probe.h"

sqz_tensor *sqz_mixllm_matrix(sqz_layer_weights *w, int k, int *site) {
    static const int sites[SQZ_MIX_N_MATS] = { SQZ_SITE_QKV, SQZ_SITE_QKV, SQZ_SITE_QKV, SQZ_SITE_O,
                                               SQZ_SITE_GATE_UP, SQZ_SITE_GATE_UP, SQZ_SITE_DOWN };
    sqz_tensor *m[SQZ_MIX_N_MATS] = { &w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down };
    if (site) *site = sites[k];
    return m[k];
}

/* Rows of t as f32 (rows x cols, malloc'ed), or NULL. */
static float *to_f32(const sqz_tensor *t) {
    float *W = malloc((size_t)(t->rows * t->cols) * sizeof *W);
    for (int64_t r = 0; W && r < t->rows; r++) sqz_tensor_row_f32(t, r, W + r * t->cols);
    return W;
}

/* Round-to-nearest of W's rows to type with importance imp (one weight per column) -> deq. */
static void rtn(sqz_type type, const float *W, int64_t rows, int64_t cols, const float *imp, float *deq) {
    uint8_t blk[sizeof(block_mx8)];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < cols / QK_MX; g++) {
            const float *x = W + r * cols + g * QK_MX;
            sqz_mx_quantize_block(type, x, imp ? imp + g * QK_MX : NULL, blk);
            sqz_type_get(type)->to_float(blk, deq + r * cols + g * QK_MX, QK_MX);
        }
}

static float *diag_imp(const double *H, int64_t cols) {
    float *imp = malloc((size_t)cols * sizeof *imp);
    for (int64_t i = 0; imp && i < cols; i++) imp[i] = (float)H[i * cols + i];
    return imp;
}

sqz_status sqz_mixllm_row_gain(sqz_ctx *ctx, const float *W, int64_t rows, int64_t cols,
                               const double *H, sqz_type lo_type, double *gain, double *e_lo) {
    if (cols % QK_MX)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "mixllm: rows of %lld elements are not a multiple of %d",
                        (long long)cols, QK_MX);
    float *imp = diag_imp(H, cols), *q = malloc((size_t)(rows * cols) * sizeof *q);
    double *D = malloc((size_t)(2 * rows * cols) * sizeof *D), *DH = malloc((size_t)(2 * rows * cols) * sizeof *DH);
    sqz_status st = SQZ_OK;
    if (!imp || !q || !D || !DH) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
        goto done;
    }
    /* D = [errors at lo_type; errors at 8 bits], then e = rowwise (D H) . D */
    const sqz_type types[2] = { lo_type, SQZ_TYPE_MX8 };
    for (int k = 0; k < 2; k++) {
        rtn(types[k], W, rows, cols, imp, q);
        for (int64_t i = 0; i < rows * cols; i++) D[k * rows * cols + i] = (double)W[i] - q[i];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(2 * rows), (int)cols, (int)cols, 1.0,
                D, (int)cols, H, (int)cols, 0.0, DH, (int)cols);
    for (int64_t r = 0; r < rows; r++) {
        const double elo = cblas_ddot((int)cols, D + r * cols, 1, DH + r * cols, 1);
        const double e8 = cblas_ddot((int)cols, D + (rows + r) * cols, 1, DH + (rows + r) * cols, 1);
        gain[r] = elo - e8;
        if (e_lo) e_lo[r] = elo;
    }
done:
    free(imp), free(q), free(D), free(DH);
    return st;
}

/* ------------------------------------------------------------------ step 1: Hessians, gains */

typedef struct hess {
    int dim;
    double *H;
    float *tmp;
} hess;

static void capture(void *user, int layer, int site, const float *x, int T, int dim) {
    if (site >= SQZ_N_SITES) return; /* post-RoPE q/k (rsq's), not a matrix input */
    hess *h = &((hess *)user)[site];
    (void)layer;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, T, 1.0f, x, dim, 0.0f, h->tmp, dim);
    for (int i = 0; i < dim; i++)
        for (int j = i; j < dim; j++) h->H[(size_t)i * dim + j] += h->tmp[(size_t)i * dim + j];
}

/* gain[l*7+k][rows], the summed e_lo of each matrix and its importances diag(H) [cols]. */
static sqz_status gains(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                        int C, sqz_type lo_type, double **gain, double *elo_sum, float **imps) {
    const sqz_config *c = &model->cfg;
    const int D = c->dim, L = c->n_layers;
    const int dims[SQZ_N_SITES] = { D, c->n_heads * c->head_dim, D, c->hidden_dim };
    const size_t N = n_win * (size_t)C;
    hess h[SQZ_N_SITES];
    memset(h, 0, sizeof h);
    float *X = malloc(N * (size_t)D * sizeof *X);
    sqz_session *s = NULL;
    sqz_status st = SQZ_OK;
    for (int k = 0; k < SQZ_N_SITES; k++) {
        h[k].dim = dims[k];
        h[k].H = malloc((size_t)dims[k] * dims[k] * sizeof(double));
        h[k].tmp = malloc((size_t)dims[k] * dims[k] * sizeof(float));
        if (!h[k].H || !h[k].tmp) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
    }
    if (!X && !st) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory for %zu tokens", N);
    if (!st) st = sqz_session_new(ctx, model, C, &s);
    for (size_t i = 0; !st && i < N; i++) sqz_tensor_row_f32(&model->tok_embd, tokens[i], X + i * (size_t)D);
    for (int l = 0; l < L && !st; l++) {
        for (int k = 0; k < SQZ_N_SITES; k++) memset(h[k].H, 0, (size_t)dims[k] * dims[k] * sizeof(double));
        st = sqz_calib_layer_pass(s, &model->layers[l], l, X, n_win, C, -1, capture, h, NULL, NULL, NULL);
        for (int k = 0; k < SQZ_N_SITES; k++) /* symmetrize, as a mean over tokens */
            for (int i = 0; i < dims[k]; i++)
                for (int j = 0; j <= i; j++) {
                    const double v = h[k].H[(size_t)j * dims[k] + i] / (double)N;
                    h[k].H[(size_t)i * dims[k] + j] = h[k].H[(size_t)j * dims[k] + i] = v;
                }
        for (int k = 0; k < SQZ_MIX_N_MATS && !st; k++) {
            int site;
            const sqz_tensor *t = sqz_mixllm_matrix(&model->layers[l], k, &site);
            float *W = to_f32(t);
            double *e = malloc((size_t)t->rows * sizeof *e);
            gain[l * SQZ_MIX_N_MATS + k] = malloc((size_t)t->rows * sizeof(double));
            imps[l * SQZ_MIX_N_MATS + k] = diag_imp(h[site].H, t->cols);
            if (!W || !e || !gain[l * SQZ_MIX_N_MATS + k] || !imps[l * SQZ_MIX_N_MATS + k]) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
            else st = sqz_mixllm_row_gain(ctx, W, t->rows, t->cols, h[site].H, lo_type, gain[l * SQZ_MIX_N_MATS + k], e);
            double sum = 0;
            for (int64_t r = 0; !st && r < t->rows; r++) sum += e[r];
            elo_sum[l * SQZ_MIX_N_MATS + k] = sum;
            free(W), free(e);
        }
        sqz_progress(ctx, "mixllm salience", (uint64_t)l + 1, (uint64_t)L);
    }
    for (int k = 0; k < SQZ_N_SITES; k++) free(h[k].H), free(h[k].tmp);
    sqz_session_free(s);
    free(X);
    return st;
}

/* ------------------------------------------------------------------ step 2: sensitivities */

/* Mean KL over n_win windows of the model with matrix m replaced by its round-to-nearest at
 * lo_type (the same quantization as its e_lo: importances imps[m]), for every matrix;
 * sens[m] = KL / elo_sum[m] (quant/kl_probe.h). */
static sqz_status sensitivities(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens,
                                size_t n_win, int C, sqz_type lo_type, const double *elo_sum,
                                float *const *imps, double *sens) {
    const int L = model->cfg.n_layers;
    sqz_model pm = *model; /* the perturbed model: model's views with one layer array of its own */
    pm.layers = malloc((size_t)L * sizeof *pm.layers);
    sqz_kl_probe *probe = NULL;
    if (!pm.layers) return sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
    memcpy(pm.layers, model->layers, (size_t)L * sizeof *pm.layers);
    sqz_status st = sqz_kl_probe_new(ctx, model, tokens, n_win, C, &probe);
    for (int m = 0; m < L * SQZ_MIX_N_MATS && !st; m++) {
        const int l = m / SQZ_MIX_N_MATS;
        sqz_tensor *t = sqz_mixllm_matrix(&pm.layers[l], m % SQZ_MIX_N_MATS, NULL);
        const sqz_tensor saved = *t;
        float *W = to_f32(t), *Wq = malloc((size_t)(t->rows * t->cols) * sizeof *Wq);
        if (!W || !Wq) {
            free(W), free(Wq);
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
            break;
        }
        rtn(lo_type, W, t->rows, t->cols, imps[m], Wq);
        free(W);
        t->type = SQZ_TYPE_F32;
        t->data = Wq;
        double kl = 0;
        st = sqz_kl_probe_measure(probe, &pm, l, &kl);
        sens[m] = elo_sum[m] > 0 ? kl / elo_sum[m] : 0;
        *t = saved;
        free(Wq);
        sqz_progress(ctx, "mixllm sensitivity", (uint64_t)(m + 1), (uint64_t)(L * SQZ_MIX_N_MATS));
    }
    sqz_kl_probe_free(probe);
    free(pm.layers);
    return st;
}

/* ------------------------------------------------------------------ step 3: the ranking */

typedef struct cand {
    double key; /* salience per extra bit */
    int m;
    int64_t r;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const double x = ((const cand *)a)->key, y = ((const cand *)b)->key;
    return x < y ? 1 : x > y ? -1 : 0;
}

void sqz_mixllm_plan_free(sqz_mixllm_plan *p) {
    if (!p) return;
    for (int i = 0; p->hi && i < p->n_layers * SQZ_MIX_N_MATS; i++) free(p->hi[i]);
    free(p->hi);
    free(p->sens);
    free(p);
}

sqz_status sqz_mixllm_plan_new(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens,
                               size_t n_win, int C, const sqz_mixllm_opts *o,
                               sqz_mixllm_plan **out) {
    *out = NULL;
    if (!(o->frac >= 0 && o->frac < 1))
        return sqz_fail(ctx, SQZ_ERR_ARG, "mixllm: 8-bit fraction %g must be in [0, 1)", o->frac);
    if (o->lo_type != SQZ_TYPE_MX4 && o->lo_type != SQZ_TYPE_MX3)
        return sqz_fail(ctx, SQZ_ERR_ARG, "mixllm: the low type must be mx4 or mx3");
    const int L = model->cfg.n_layers, NM = L * SQZ_MIX_N_MATS;
    sqz_mixllm_plan *p = calloc(1, sizeof *p);
    double **gain = calloc((size_t)NM, sizeof *gain), *elo = calloc((size_t)NM, sizeof *elo);
    float **imps = calloc((size_t)NM, sizeof *imps);
    cand *cs = NULL;
    sqz_status st = SQZ_OK;
    if (!p || !gain || !elo || !imps || !(p->hi = calloc((size_t)NM, sizeof *p->hi)) ||
        !(p->sens = malloc((size_t)NM * sizeof *p->sens))) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
        goto done;
    }
    p->n_layers = L;
    for (int m = 0; m < NM; m++) p->sens[m] = 1;
    if (o->frac == 0) { /* nothing to rank: every row at the low width */
        for (int m = 0; m < NM; m++) {
            const sqz_tensor *t = sqz_mixllm_matrix(&model->layers[m / SQZ_MIX_N_MATS], m % SQZ_MIX_N_MATS, NULL);
            p->all_weights += (uint64_t)(t->rows * t->cols);
            if (!(p->hi[m] = calloc((size_t)t->rows, 1))) {
                st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
                goto done;
            }
        }
        goto done;
    }
    if ((st = gains(ctx, model, tokens, n_win, C, o->lo_type, gain, elo, imps))) goto done;
    if (o->sens_windows > 0) {
        const size_t nw = (size_t)o->sens_windows < n_win ? (size_t)o->sens_windows : n_win;
        if ((st = sensitivities(ctx, model, tokens, nw, C, o->lo_type, elo, imps, p->sens))) goto done;
    }
    size_t n = 0;
    for (int m = 0; m < NM; m++) {
        const sqz_tensor *t = sqz_mixllm_matrix(&model->layers[m / SQZ_MIX_N_MATS], m % SQZ_MIX_N_MATS, NULL);
        n += (size_t)t->rows;
        p->all_weights += (uint64_t)(t->rows * t->cols);
        if (!(p->hi[m] = calloc((size_t)t->rows, 1))) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
            goto done;
        }
    }
    if (!(cs = malloc(n * sizeof *cs))) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
        goto done;
    }
    n = 0;
    for (int m = 0; m < NM; m++) {
        const sqz_tensor *t = sqz_mixllm_matrix(&model->layers[m / SQZ_MIX_N_MATS], m % SQZ_MIX_N_MATS, NULL);
        for (int64_t r = 0; r < t->rows; r++)
            cs[n++] = (cand){ .key = p->sens[m] * gain[m][r] / (double)t->cols, .m = m, .r = r };
    }
    qsort(cs, n, sizeof *cs, cand_cmp);
    const uint64_t budget = (uint64_t)(o->frac * (double)p->all_weights);
    for (size_t i = 0; i < n; i++) {
        const sqz_tensor *t = sqz_mixllm_matrix(&model->layers[cs[i].m / SQZ_MIX_N_MATS], cs[i].m % SQZ_MIX_N_MATS, NULL);
        if (p->hi_weights + (uint64_t)t->cols > budget) continue; /* a narrower row may still fit */
        p->hi[cs[i].m][cs[i].r] = 1;
        p->hi_weights += (uint64_t)t->cols;
    }
done:
    for (int m = 0; gain && m < NM; m++) free(gain[m]);
    for (int m = 0; imps && m < NM; m++) free(imps[m]);
    free(gain), free(elo), free(imps), free(cs);
    if (st) sqz_mixllm_plan_free(p);
    else *out = p;
    return st;
}

/* ------------------------------------------------------------------ one matrix */

sqz_status sqz_mixllm_quantize(sqz_ctx *ctx, sqz_model *owner, const float *W, int64_t rows,
                               int64_t cols, const double *H, const uint8_t *hi, sqz_type lo_type,
                               double damp, int act_order, sqz_tensor *t, float *deq) {
    int64_t n8 = 0;
    for (int64_t r = 0; r < rows; r++) n8 += hi[r] != 0;
    const size_t rs8 = sqz_type_row_size(SQZ_TYPE_MX8, cols), rsl = sqz_type_row_size(lo_type, cols);
    sqz_mix_tensor *mx = sqz_model_own(owner, calloc(1, sizeof *mx));
    int32_t *perm = sqz_model_own(owner, malloc((size_t)rows * sizeof *perm));
    void *hib = n8 ? sqz_model_own(owner, malloc((size_t)n8 * rs8)) : NULL;
    void *lob = rows - n8 ? sqz_model_own(owner, malloc((size_t)(rows - n8) * rsl)) : NULL;
    float *Ws = malloc((size_t)(rows * cols) * sizeof *Ws), *Q = malloc((size_t)(rows * cols) * sizeof *Q);
    sqz_status st = SQZ_OK;
    if (!mx || !perm || (n8 && !hib) || (rows - n8 && !lob) || !Ws || !Q) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "mixllm: out of memory");
        goto done;
    }
    /* stored order: the 8-bit rows, then the others, each in W's order */
    int64_t i = 0;
    for (int pass = 1; pass >= 0; pass--)
        for (int64_t r = 0; r < rows; r++)
            if ((hi[r] != 0) == pass) {
                perm[i] = (int32_t)r;
                memcpy(Ws + i * cols, W + r * cols, (size_t)cols * sizeof *Ws);
                i++;
            }
    sqz_gptq_opts g = sqz_gptq_default_opts();
    if (damp > 0) g.percdamp = damp;
    g.act_order = act_order;
    g.threads = ctx->n_threads;
    if (n8) st = sqz_gptq_quantize(ctx, SQZ_TYPE_MX8, Ws, n8, cols, H, &g, hib, Q);
    if (!st && rows - n8)
        st = sqz_gptq_quantize(ctx, lo_type, Ws + n8 * cols, rows - n8, cols, H, &g, lob, Q + n8 * cols);
    if (st) goto done;
    if (deq)
        for (int64_t k = 0; k < rows; k++) memcpy(deq + (int64_t)perm[k] * cols, Q + k * cols, (size_t)cols * sizeof *Q);
    mx->n8 = n8;
    mx->hi = hib;
    mx->lo = lob;
    mx->lo_type = lo_type;
    mx->perm = perm;
    t->type = SQZ_TYPE_MIXLLM;
    t->rows = rows;
    t->cols = cols;
    t->data = mx;
done:
    free(Ws), free(Q);
    return st;
}
