/* lowrank.c - sqz_lowrank: block matrices factored as W ~ B A (include/sqz.h), after
 * truncated SVD (svd), LORD-style per-matrix ranks to a size or energy target (lord) and
 * SVD-LLM's activation-aware whitened SVD (asvd); the SVD itself is lowrank_svd.c.
 *
 * Glossary: as prune.c - W windows of C calibration tokens, D dim, F hidden_dim, L layers, the
 * seven block matrices of a layer read at four input sites (eval/calib_pass.h); m x n a
 * matrix's rows x cols, r its rank, k = min(m, n).
 * The layer loop is prune.c's: with calibration, X [W*C][D] = the token embeddings; for each
 * layer l, (1) X runs through layer l and H = sum x^T x (f64) is gathered at each site (the
 * statistics GPTQ and SparseGPT use), (2) the layer's matrices are factored (asvd: whitened by
 * H) and their relative output error ||(W - B A) X|| / ||W X|| reported, (3) X runs through
 * the factored layer (the factors as stored, in their final type): the next layer's input.
 * Without calibration each matrix is factored alone.
 * The factored model (the original's views, each factored matrix a SQZ_TYPE_LOWRANK tensor
 * whose two factors it owns, already in the output type) is written by sqz_convert to sqzf
 * (NAME.lr_a, NAME.lr_b; docs/lowrank.md). */
#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eval/calib_pass.h"
#include "formats/presets.h"
#include "formats/quant.h"
#include "model/model.h"
#include "model/session.h"
#include "prune/levels.h"
#include "prune/lowrank.h"

enum { N_MATS = 7 };

static const struct {
    const char *name;
    size_t off;
    int site;
} mats[N_MATS] = {
    { "attn_q", offsetof(sqz_layer_weights, wq), SQZ_SITE_QKV },
    { "attn_k", offsetof(sqz_layer_weights, wk), SQZ_SITE_QKV },
    { "attn_v", offsetof(sqz_layer_weights, wv), SQZ_SITE_QKV },
    { "attn_output", offsetof(sqz_layer_weights, wo), SQZ_SITE_O },
    { "ffn_gate", offsetof(sqz_layer_weights, w_gate), SQZ_SITE_GATE_UP },
    { "ffn_up", offsetof(sqz_layer_weights, w_up), SQZ_SITE_GATE_UP },
    { "ffn_down", offsetof(sqz_layer_weights, w_down), SQZ_SITE_DOWN },
};

static sqz_tensor *mat(sqz_layer_weights *w, int k) { return (sqz_tensor *)((char *)w + mats[k].off); }

/* ---- the methods (a row each; the driver reads their flags) */

typedef struct lr_method {
    const char *name, *help;
    int calib;  /* needs H: the whitened SVD */
    int global; /* params: one budget over all block matrices */
} lr_method;

static const lr_method methods[] = {
    { "svd", "plain truncated SVD, the same share of every matrix; no calibration", 0, 0 },
    { "lord", "plain SVD, ranks allocated over all matrices to the size (params) or energy target; no calibration",
      0, 1 },
    { "asvd",
      "activation-aware SVD (SVD-LLM's whitening by the Cholesky factor of X^T X); damp=D (1); alpha=A > 0: "
      "ASVD's diagonal scaling rms(x_j)^A instead; calibration",
      1, 0 },
};
enum { N_METHODS = sizeof methods / sizeof *methods };

const char *sqz_lowrank_method_name(int i) { return i >= 0 && i < N_METHODS ? methods[i].name : NULL; }
const char *sqz_lowrank_method_help(int i) { return i >= 0 && i < N_METHODS ? methods[i].help : NULL; }

static const lr_method *find_method(const char *spec, const char **params) {
    const char *colon = strchr(spec, ':');
    const size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (params) *params = colon ? colon + 1 : NULL;
    for (int i = 0; i < N_METHODS; i++)
        if (strlen(methods[i].name) == len && !strncasecmp(methods[i].name, spec, len)) return &methods[i];
    return NULL;
}

int sqz_lowrank_needs_calib(const char *spec) {
    const lr_method *m = spec ? find_method(spec, NULL) : NULL;
    return m ? m->calib : -1;
}

/* ---- each matrix's target */

typedef enum { T_DENSE, T_PARAMS, T_RANK, T_ENERGY } target_kind;

typedef struct target {
    target_kind kind;
    double v;     /* T_PARAMS: the fraction; T_ENERGY: the energy */
    int64_t rank; /* T_RANK (and T_PARAMS of lord after the allocation) */
} target;

typedef struct lr_run {
    sqz_ctx *ctx;
    const sqz_lowrank_opts *o;
    const lr_method *method;
    double damp, alpha;
    sqz_type type;  /* the factors' type */
    int64_t unit;   /* ranks are multiples of its block */
    sqz_model *qm;
    target *tg;     /* [L][N_MATS] */
    struct site_stats *site;
    sqz_lowrank_result *r;
    double err_sum;
    int n_err;
} lr_run;

static void mat_name(char *buf, size_t cap, int l, int k) { snprintf(buf, cap, "blk.%d.%s.weight", l, mats[k].name); }

/* The rank a fraction p of an m x n matrix's weights buys, a multiple of unit (>= unit). */
static int64_t params_rank(double p, int64_t m, int64_t n, int64_t unit) {
    int64_t r = (int64_t)floor(p * (double)m * (double)n / (double)(m + n) + 1e-9);
    r = r / unit * unit;
    return r < unit ? unit : r;
}

/* Checks what can be checked before any work: explicit ranks against the limit, ranks of the
 * params target (a multiple of the block) likewise. */
static sqz_status check_targets(lr_run *p, const sqz_model *model) {
    const int L = model->cfg.n_layers;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < N_MATS; k++) {
            target *t = &p->tg[l * N_MATS + k];
            const sqz_tensor *w = mat(&model->layers[l], k);
            const int64_t m = w->rows, n = w->cols, maxr = sqz_lr_max_rank(m, n);
            char name[64];
            mat_name(name, sizeof name, l, k);
            if (t->kind == T_PARAMS) t->rank = params_rank(t->v, m, n, p->unit);
            if (t->kind == T_RANK && t->rank % p->unit)
                return sqz_fail(p->ctx, SQZ_ERR_ARG, "%s: rank %lld is not a multiple of %s's block (%lld)", name,
                                (long long)t->rank, sqz_type_name(p->type), (long long)p->unit);
            if ((t->kind == T_RANK || t->kind == T_PARAMS) && (t->rank < 1 || t->rank > maxr))
                return sqz_fail(p->ctx, SQZ_ERR_ARG,
                                "%s: rank %lld is not below rows*cols/(rows+cols) = %lld*%lld/%lld (at most %lld): "
                                "its factors would not be smaller than the matrix",
                                name, (long long)t->rank, (long long)m, (long long)n, (long long)(m + n),
                                (long long)maxr);
        }
    return SQZ_OK;
}

/* Every block matrix's target: the options', then the levels file's. */
static sqz_status plan_targets(lr_run *p, const sqz_model *model) {
    const sqz_lowrank_opts *o = p->o;
    const int L = model->cfg.n_layers;
    target def = { T_DENSE, 0, 0 };
    if (o->params > 0) def = (target){ T_PARAMS, o->params, 0 };
    else if (o->energy > 0) def = (target){ T_ENERGY, o->energy, 0 };
    for (int l = 0; l < L; l++)
        for (int k = 0; k < N_MATS; k++) {
            target t = def;
            if (o->rank_frac > 0) {
                const sqz_tensor *w = mat(&model->layers[l], k);
                const int64_t kk = w->rows < w->cols ? w->rows : w->cols;
                t = (target){ T_RANK, 0, (int64_t)floor(o->rank_frac * (double)kk + 1e-9) / p->unit * p->unit };
            }
            p->tg[l * N_MATS + k] = t;
        }
    if (!o->levels) return SQZ_OK;
    sqz_prune_levels f;
    sqz_status st = sqz_prune_levels_load(p->ctx, o->levels, &f);
    if (st) return st;
    for (int i = 0; i < f.n && !st; i++) {
        int found = 0;
        const double v = f.level[i].density;
        target t;
        if (f.level[i].n > 0 || !(v > 0) || (v > 1 && (v < 2 || v != floor(v) || v > 1e9))) {
            st = sqz_fail(p->ctx, SQZ_ERR_ARG,
                          "%s: %s: a low-rank level is a fraction of the weights in (0, 1), 1 (dense) or an integer "
                          "rank >= 2",
                          o->levels, f.names[i]);
            break;
        }
        t = v == 1 ? (target){ T_DENSE, 0, 0 } : v < 1 ? (target){ T_PARAMS, v, 0 } : (target){ T_RANK, 0, (int64_t)v };
        for (int l = 0; l < L && !found; l++)
            for (int k = 0; k < N_MATS && !found; k++) {
                char name[64];
                mat_name(name, sizeof name, l, k);
                if (!strcmp(name, f.names[i])) p->tg[l * N_MATS + k] = t, found = 1;
            }
        if (!found)
            st = sqz_fail(p->ctx, SQZ_ERR_ARG,
                          "%s: '%s' is not a block matrix of this model (blk.N.attn_q.weight, ...; the token "
                          "embedding and the output head are never factored)",
                          o->levels, f.names[i]);
    }
    sqz_prune_levels_free(&f);
    return st;
}

/* lord with a params target: the ranks of the T_PARAMS matrices from one budget, params x
 * their weights: every matrix starts at one block of rank, then blocks of singular values go
 * by their share of their matrix's squared singular values per stored number (m + n per rank),
 * largest first, while they fit (a matrix stops at its limit). Reads every matrix's singular
 * values once. */
typedef struct lr_item {
    double ratio;
    int idx;
} lr_item;

static int item_cmp(const void *a, const void *b) {
    const double x = ((const lr_item *)a)->ratio, y = ((const lr_item *)b)->ratio;
    return x < y ? 1 : x > y ? -1 : ((const lr_item *)a)->idx - ((const lr_item *)b)->idx;
}

static sqz_status allocate_global(lr_run *p, const sqz_model *model) {
    const int L = model->cfg.n_layers, nm = L * N_MATS;
    double budget = 0, used = 0;
    size_t n_items = 0, cap = 0;
    lr_item *items = NULL;
    sqz_status st = SQZ_OK;
    for (int i = 0; i < nm && !st; i++) {
        target *t = &p->tg[i];
        if (t->kind != T_PARAMS) continue;
        const sqz_tensor *w = mat(&model->layers[i / N_MATS], i % N_MATS);
        const int64_t m = w->rows, n = w->cols, k = m < n ? m : n, maxr = sqz_lr_max_rank(m, n);
        budget += t->v * (double)m * (double)n;
        t->rank = p->unit;
        used += (double)(p->unit * (m + n));
        float *W = malloc((size_t)(m * n) * sizeof *W);
        double *s = malloc((size_t)k * sizeof *s);
        if (!W || !s) st = sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory");
        for (int64_t r = 0; r < m && !st; r++) sqz_tensor_row_f32(w, r, W + r * n);
        if (!st) st = sqz_lr_singular_values(p->ctx, W, m, n, s);
        double total = 0;
        for (int64_t j = 0; j < k && !st; j++) total += s[j] * s[j];
        for (int64_t r0 = p->unit; r0 + p->unit <= maxr && !st; r0 += p->unit) {
            double e = 0;
            for (int64_t j = r0; j < r0 + p->unit; j++) e += s[j] * s[j];
            if (n_items == cap) {
                cap = cap ? 2 * cap : 4096;
                lr_item *ni = realloc(items, cap * sizeof *ni);
                if (!ni) { st = sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
                items = ni;
            }
            items[n_items++] = (lr_item){ total > 0 ? e / total / (double)(p->unit * (m + n)) : 0, i };
        }
        free(W);
        free(s);
        sqz_progress(p->ctx, "lord ranks", (uint64_t)i + 1, (uint64_t)nm);
    }
    if (!st) {
        qsort(items, n_items, sizeof *items, item_cmp);
        for (size_t j = 0; j < n_items; j++) {
            target *t = &p->tg[items[j].idx];
            const sqz_tensor *w = mat(&model->layers[items[j].idx / N_MATS], items[j].idx % N_MATS);
            const double cost = (double)(p->unit * (w->rows + w->cols));
            if (used + cost > budget) continue;
            used += cost;
            t->rank += p->unit;
        }
        /* the items of a matrix come in decreasing order, so its ranks are a prefix */
        for (int i = 0; i < nm; i++)
            if (p->tg[i].kind == T_PARAMS) p->tg[i].kind = T_RANK;
    }
    free(items);
    return st;
}

/* ---- the layer loop */

typedef struct site_stats {
    int dim;
    double *H;
    float *tmp;
} site_stats;

static void capture(void *user, int layer, int site, const float *x, int T, int dim) {
    (void)layer;
    if (site >= SQZ_N_SITES) return;
    site_stats *s = (site_stats *)user + site;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, T, 1.0f, x, dim, 0.0f, s->tmp, dim);
    for (int i = 0; i < dim; i++)
        for (int j = i; j < dim; j++) s->H[(size_t)i * dim + j] += s->tmp[(size_t)i * dim + j];
}

/* ||(W - P) X|| / ||W X|| = sqrt(tr(E H E^T) / tr(W H W^T)), P the factored matrix's rows. */
static double rel_err(const float *W, const sqz_tensor *P, int64_t rows, int64_t cols, const double *H) {
    double num = 0, den = 0;
    double *e = malloc((size_t)cols * sizeof *e), *w = malloc((size_t)cols * sizeof *w);
    double *he = malloc((size_t)cols * sizeof *he), *hw = malloc((size_t)cols * sizeof *hw);
    float *pr = malloc((size_t)cols * sizeof *pr);
    if (!e || !w || !he || !hw || !pr) { free(e); free(w); free(he); free(hw); free(pr); return NAN; }
    for (int64_t r = 0; r < rows; r++) {
        sqz_tensor_row_f32(P, r, pr);
        for (int64_t i = 0; i < cols; i++) {
            w[i] = W[r * cols + i];
            e[i] = w[i] - pr[i];
        }
        cblas_dsymv(CblasRowMajor, CblasUpper, (int)cols, 1.0, H, (int)cols, e, 1, 0.0, he, 1);
        cblas_dsymv(CblasRowMajor, CblasUpper, (int)cols, 1.0, H, (int)cols, w, 1, 0.0, hw, 1);
        num += cblas_ddot((int)cols, e, 1, he, 1);
        den += cblas_ddot((int)cols, w, 1, hw, 1);
    }
    free(e); free(w); free(he); free(hw); free(pr);
    return den > 0 ? sqrt(num / den) : 0;
}

/* f32 rows -> an owned matrix of p->type (f32: the rows themselves). NULL without memory. */
static void *to_type(lr_run *p, float *x, int64_t rows, int64_t cols) {
    if (p->type == SQZ_TYPE_F32) return sqz_model_own(p->qm, x);
    const size_t rs = sqz_type_row_size(p->type, cols);
    void *d = malloc((size_t)rows * rs);
    if (d && sqz_quantize_rows(p->type, x, d, rows, cols, NULL) != (size_t)rows * rs) {
        free(d);
        d = NULL;
    }
    free(x);
    return d ? sqz_model_own(p->qm, d) : NULL;
}

/* Step 2 for layer l: its matrices, factored into tensors qm owns. */
static sqz_status factor_layer(lr_run *p, int l) {
    sqz_layer_weights *w = &p->qm->layers[l];
    if (p->site)
        for (int k = 0; k < SQZ_N_SITES; k++) { /* symmetrize */
            site_stats *s = &p->site[k];
            for (int i = 0; i < s->dim; i++)
                for (int j = 0; j < i; j++) s->H[(size_t)i * s->dim + j] = s->H[(size_t)j * s->dim + i];
        }
    for (int k = 0; k < N_MATS; k++) {
        sqz_tensor *t = mat(w, k);
        const target *tg = &p->tg[l * N_MATS + k];
        const int64_t m = t->rows, n = t->cols;
        char name[64], label[48];
        mat_name(name, sizeof name, l, k);
        p->r->block_params += (uint64_t)(m * n);
        if (tg->kind == T_DENSE) {
            p->r->kept_params += (uint64_t)(m * n);
            p->r->n_dense++;
            if (p->o->report) p->o->report(p->o->report_user, name, "dense", -1);
            continue;
        }
        float *W = malloc((size_t)(m * n) * sizeof *W);
        if (!W) return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory factoring %s", name);
        for (int64_t r = 0; r < m; r++) sqz_tensor_row_f32(t, r, W + r * n);
        const double *H = p->site ? p->site[mats[k].site].H : NULL;
        sqz_lr_svd d;
        sqz_status st = sqz_lr_svd_compute_ex(p->ctx, W, m, n, p->method->calib ? H : NULL, p->damp, p->alpha, &d);
        if (st) {
            free(W);
            return st;
        }
        int64_t rank = tg->rank;
        if (tg->kind == T_ENERGY) {
            rank = sqz_lr_energy_rank(d.s, d.k, tg->v);
            rank = (rank + p->unit - 1) / p->unit * p->unit;
            if (rank > sqz_lr_max_rank(m, n)) rank = 0; /* stays dense */
        }
        if (rank == 0) {
            sqz_lr_svd_free(&d);
            free(W);
            p->r->kept_params += (uint64_t)(m * n);
            p->r->n_dense++;
            if (p->o->report) p->o->report(p->o->report_user, name, "dense", -1);
            continue;
        }
        float *a = malloc((size_t)(rank * n) * sizeof *a), *b = malloc((size_t)(m * rank) * sizeof *b);
        sqz_lr_tensor *lr = sqz_model_own(p->qm, calloc(1, sizeof *lr));
        if (!a || !b || !lr) {
            free(a), free(b), free(W);
            sqz_lr_svd_free(&d);
            return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory factoring %s", name);
        }
        sqz_lr_svd_factors(&d, rank, a, b);
        sqz_lr_svd_free(&d);
        const void *ad = to_type(p, a, rank, n), *bd = to_type(p, b, m, rank);
        if (!ad || !bd) {
            free(W);
            return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory factoring %s", name);
        }
        lr->a = (sqz_tensor){ .type = p->type, .rows = rank, .cols = n, .data = ad };
        lr->b = (sqz_tensor){ .type = p->type, .rows = m, .cols = rank, .data = bd };
        const sqz_tensor f = { .type = SQZ_TYPE_LOWRANK, .rows = m, .cols = n, .data = lr };
        double e = -1;
        if (H) {
            e = rel_err(W, &f, m, n, H);
            p->err_sum += e;
            p->n_err++;
        }
        free(W);
        *t = f;
        p->r->kept_params += (uint64_t)(rank * (m + n));
        p->r->n_factored++;
        snprintf(label, sizeof label, "r=%lld", (long long)rank);
        if (p->o->report) p->o->report(p->o->report_user, name, label, e);
    }
    return SQZ_OK;
}

static sqz_status factor_layers(lr_run *p, const sqz_model *model, int calib) {
    sqz_ctx *ctx = p->ctx;
    const sqz_config *c = &model->cfg;
    const int L = c->n_layers;
    if (!calib) {
        sqz_status st = SQZ_OK;
        const double t0 = sqz_now();
        for (int l = 0; l < L && !st; l++) {
            st = factor_layer(p, l);
            sqz_progress(ctx, "lowrank", (uint64_t)l + 1, (uint64_t)L);
        }
        p->r->factor_seconds = sqz_now() - t0;
        return st;
    }
    const int D = c->dim, F = c->hidden_dim, qd = c->n_heads * c->head_dim;
    const int C = p->o->calib_ctx > 0 ? p->o->calib_ctx : 512;
    const size_t n_win = p->o->n_calib / (size_t)C, N = n_win * (size_t)C;
    const int dims[SQZ_N_SITES] = { D, qd, D, F };
    site_stats site[SQZ_N_SITES];
    memset(site, 0, sizeof site);
    float *X = malloc(N * (size_t)D * sizeof *X);
    sqz_session *s = NULL;
    sqz_status st = SQZ_OK;
    if (!X) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %zu calibration tokens", N); goto done; }
    for (int k = 0; k < SQZ_N_SITES; k++) {
        site[k].dim = dims[k];
        site[k].H = malloc((size_t)dims[k] * dims[k] * sizeof(double));
        site[k].tmp = malloc((size_t)dims[k] * dims[k] * sizeof(float));
        if (!site[k].H || !site[k].tmp) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for statistics"); goto done; }
    }
    for (size_t i = 0; i < N; i++)
        if (p->o->calib[i] < 0 || p->o->calib[i] >= c->vocab_size) {
            st = sqz_fail(ctx, SQZ_ERR_RANGE, "calibration token %d outside the vocabulary", p->o->calib[i]);
            goto done;
        }
    if ((st = sqz_session_new(ctx, model, C, &s))) goto done;
    for (size_t i = 0; i < N; i++) sqz_tensor_row_f32(&model->tok_embd, p->o->calib[i], X + i * (size_t)D);
    p->site = site;
    p->r->calib_tokens = N;
    double t_factor = 0;
    const double t0 = sqz_now();
    for (int l = 0; l < L && !st; l++) {
        for (int k = 0; k < SQZ_N_SITES; k++) memset(site[k].H, 0, (size_t)dims[k] * dims[k] * sizeof(double));
        if ((st = sqz_calib_layer_pass(s, &model->layers[l], l, X, n_win, C, SQZ_SITE_DOWN, capture, site, NULL, NULL,
                                       NULL)))
            break;
        const double tf = sqz_now();
        if ((st = factor_layer(p, l))) break;
        t_factor += sqz_now() - tf;
        st = sqz_calib_layer_pass(s, &p->qm->layers[l], l, X, n_win, C, -1, NULL, NULL, NULL, NULL, NULL);
        sqz_progress(ctx, "lowrank", (uint64_t)l + 1, (uint64_t)L);
    }
    p->r->factor_seconds = t_factor;
    p->r->calib_seconds = sqz_now() - t0 - t_factor;
done:
    p->site = NULL;
    for (int k = 0; k < SQZ_N_SITES; k++) {
        free(site[k].H);
        free(site[k].tmp);
    }
    sqz_session_free(s);
    free(X);
    return st;
}

sqz_status sqz_lowrank(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_lowrank_opts *o,
                       sqz_lowrank_result *res) {
    sqz_lowrank_result r;
    memset(&r, 0, sizeof r);
    r.mean_rel_err = -1;
    if (res) *res = r;
    if (!model || !out_path || !o || !o->method)
        return sqz_fail(ctx, SQZ_ERR_ARG, "lowrank: model, output and method are required");
    sqz_status sub_st = sqz_model_require_subblocks(ctx, model, "lowrank");
    if (sub_st) return sub_st;
    const char *params;
    const lr_method *method = find_method(o->method, &params);
    if (!method) {
        char known[128] = "";
        for (int i = 0; i < N_METHODS; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", methods[i].name);
        return sqz_fail(ctx, SQZ_ERR_ARG, "lowrank: unknown method '%s' (%s)", o->method, known);
    }
    double damp = 1, alpha = 0;
    char buf[256];
    const sqz_param keys[] = { { "damp", 'd', &damp, 0, 10 }, { "alpha", 'd', &alpha, 0, 4 } };
    sqz_status st = sqz_params_parse(ctx, "method", method->name, params, keys, method->calib ? 2 : 0, buf, sizeof buf);
    if (st) return st;
    const int n_targets = (o->params != 0) + (o->rank_frac != 0) + (o->energy != 0);
    if (n_targets > 1) return sqz_fail(ctx, SQZ_ERR_ARG, "lowrank: one target: params, rank_frac or energy");
    if (n_targets == 0 && !o->levels)
        return sqz_fail(ctx, SQZ_ERR_ARG, "lowrank: a target is required (params, rank_frac, energy or a levels file)");
    if (o->params != 0 && !(o->params > 0 && o->params < 1))
        return sqz_fail(ctx, SQZ_ERR_ARG, "lowrank: params %g is outside (0, 1) (the fraction of the weights kept)",
                        o->params);
    if (o->rank_frac != 0 && !(o->rank_frac > 0 && o->rank_frac < 1))
        return sqz_fail(ctx, SQZ_ERR_ARG, "lowrank: rank fraction %g is outside (0, 1)", o->rank_frac);
    if (o->energy != 0 && !(o->energy > 0 && o->energy <= 1))
        return sqz_fail(ctx, SQZ_ERR_ARG, "lowrank: energy %g is outside (0, 1]", o->energy);
    sqz_preset preset;
    const char *tname = o->type ? o->type : "f16";
    if (sqz_preset_find(tname, 1, &preset) != 0 || preset.mix)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: unknown type '%s' (a type of sqz convert: %s)", out_path, tname,
                        sqz_preset_names());
    const int L = model->cfg.n_layers;
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512;
    const int have_calib = o->calib && o->n_calib >= (size_t)C;
    if (method->calib && !have_calib)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s needs calibration text: %zu tokens is less than one window of %d",
                        method->name, o->calib ? o->n_calib : 0, C);
    target *tg = malloc((size_t)L * N_MATS * sizeof *tg);
    sqz_model *qm = calloc(1, sizeof *qm);
    lr_run p = { .ctx = ctx, .o = o, .method = method, .damp = damp, .alpha = alpha, .type = preset.base, .qm = qm, .tg = tg, .r = &r };
    const sqz_type_traits *tt = sqz_type_get(preset.base);
    p.unit = tt && tt->block_size > 0 ? tt->block_size : 1;
    if (!tg || !qm) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    if ((st = plan_targets(&p, model))) goto done;
    for (int l = 0; l < L && !st; l++) /* the factors' rows (cols) must fit the type's blocks */
        for (int k = 0; k < N_MATS; k++)
            if (tg[l * N_MATS + k].kind != T_DENSE && mat(&model->layers[l], k)->cols % p.unit) {
                char name[64];
                mat_name(name, sizeof name, l, k);
                st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: rows of %lld weights do not split into %s blocks of %lld", name,
                              (long long)mat(&model->layers[l], k)->cols, tname, (long long)p.unit);
                break;
            }
    if (st || (st = check_targets(&p, model))) goto done;
    if (method->global && (st = allocate_global(&p, model))) goto done;
    /* the factored model: the original's views, the factored matrices swapped in */
    *qm = *model;
    qm->owned = NULL;
    qm->n_owned = qm->cap_owned = 0;
    qm->layers = malloc((size_t)L * sizeof *qm->layers);
    if (!qm->layers) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(qm->layers, model->layers, (size_t)L * sizeof *qm->layers);
    if ((st = factor_layers(&p, model, have_calib))) goto done;
    r.mean_rel_err = p.n_err ? p.err_sum / p.n_err : -1;
    /* the file's card (general.* keys): the factorization and its target */
    char card_method[96], card_params[96];
    snprintf(card_method, sizeof card_method, "lowrank:%s", o->method ? o->method : "asvd");
    if (o->params > 0) snprintf(card_params, sizeof card_params, "factors hold %g of the weights", o->params);
    else if (o->rank_frac > 0) snprintf(card_params, sizeof card_params, "rank %g x min(rows, cols)", o->rank_frac);
    else if (o->energy > 0) snprintf(card_params, sizeof card_params, "energy %g", o->energy);
    else snprintf(card_params, sizeof card_params, "per-matrix levels");
    const sqz_model_card card = { .method = card_method, .parameters = card_params, .calib_tokens = o->n_calib };
    const sqz_convert_opts co = { .type = tname, .pure = 1, .card = &card };
    st = sqz_convert(ctx, qm, out_path, &co, &r.convert);
done:
    if (qm) {
        for (int i = 0; i < qm->n_owned; i++) free(qm->owned[i]);
        free(qm->owned);
        free(qm->layers);
        free(qm);
    }
    free(tg);
    if (!st && res) *res = r;
    return st;
}
