/* alloc.c - types for a size budget by measured KL divergence (see alloc.h). */
#include "quant/alloc.h"
#include "eval/calib_pass.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/session.h"
#include "quant/gptq.h"
#include "quant/kl_probe.h"
#include "quant/mixllm.h"
#include "quant/rsq.h"

/* The candidates, cheapest first. */
static const sqz_type ladder[SQZ_ALLOC_MAX_TYPES] = { SQZ_TYPE_Q2_K, SQZ_TYPE_Q3_K, SQZ_TYPE_Q4_K,
                                                      SQZ_TYPE_Q5_K, SQZ_TYPE_Q6_K };
static const sqz_tensor_role roles[SQZ_MIX_N_MATS] = { SQZ_ROLE_ATTN_Q,      SQZ_ROLE_ATTN_K,  SQZ_ROLE_ATTN_V,
                                                       SQZ_ROLE_ATTN_OUTPUT, SQZ_ROLE_FFN_GATE, SQZ_ROLE_FFN_UP,
                                                       SQZ_ROLE_FFN_DOWN };

static int ladder_index(sqz_type t) {
    for (int i = 0; i < SQZ_ALLOC_MAX_TYPES; i++)
        if (ladder[i] == t) return i;
    return -1;
}

int sqz_alloc_knapsack(int n_items, const int *n_opt, const uint64_t (*bytes)[SQZ_ALLOC_MAX_TYPES],
                       const double (*cost)[SQZ_ALLOC_MAX_TYPES], uint64_t budget, int *choice) {
    enum { MAX_UNITS = 1 << 18 };
    const uint64_t unit = budget / MAX_UNITS + 1;
    /* bytes are rounded up to units: one unit of slack per item keeps every combination within
     * the budget feasible (none when units are bytes) */
    const size_t cap = (size_t)(budget / unit) + (unit > 1 ? (size_t)n_items : 0);
    double *dp = malloc((cap + 1) * sizeof *dp), *next = malloc((cap + 1) * sizeof *next);
    uint8_t *pick = malloc((size_t)n_items * (cap + 1));
    if (!dp || !next || !pick || n_items < 1) {
        free(dp), free(next), free(pick);
        return -1;
    }
    /* dp[b]: least cost of the items so far within b units (HUGE: none fits) */
    for (size_t b = 0; b <= cap; b++) dp[b] = 0;
    for (int i = 0; i < n_items; i++) {
        for (size_t b = 0; b <= cap; b++) {
            double best = HUGE_VAL;
            int arg = 0;
            for (int k = 0; k < n_opt[i]; k++) {
                const uint64_t w = (bytes[i][k] + unit - 1) / unit;
                if (w > b || dp[b - w] == HUGE_VAL) continue;
                const double v = dp[b - w] + cost[i][k];
                if (v < best) best = v, arg = k;
            }
            next[b] = best;
            pick[(size_t)i * (cap + 1) + b] = (uint8_t)arg;
        }
        double *t = dp;
        dp = next, next = t;
    }
    int ok = dp[cap] != HUGE_VAL;
    for (int i = n_items - 1, b = (int)cap; ok && i >= 0; i--) {
        choice[i] = pick[(size_t)i * (cap + 1) + (size_t)b];
        b -= (int)((bytes[i][choice[i]] + unit - 1) / unit);
    }
    free(dp), free(next), free(pick);
    return ok ? 0 : -1;
}

void sqz_alloc_plan_free(sqz_alloc_plan *p) {
    if (!p) return;
    free(p->types);
    free(p);
}

typedef struct site_h {
    int dim, threads;
    double *H;
    float *tmp;
} site_h;

static void capture(void *user, int layer, int site, const float *x, int T, int dim) {
    (void)layer;
    if (site >= SQZ_N_SITES) return;
    site_h *h = &((site_h *)user)[site];
    sqz_rsq_hessian_add(h->H, h->tmp, (float *)x, NULL, T, dim, h->threads);
}

static void symmetrize(site_h *h) {
    for (int i = 0; i < h->dim; i++)
        for (int j = 0; j < i; j++) h->H[(size_t)i * h->dim + j] = h->H[(size_t)j * h->dim + i];
}

/* One matrix to place: its options and what each costs. */
typedef struct item {
    int n_opt;
    sqz_type type[SQZ_ALLOC_MAX_TYPES];
    int mix_opt; /* the option that is the mix's type */
} item;

typedef struct planner {
    sqz_ctx *ctx;
    const sqz_alloc_opts *o;
    const sqz_alloc_hook *hook; /* NULL: nothing known beforehand, nothing kept */
    int lo;               /* the first candidate on the ladder */
    sqz_kl_probe *probe;
    sqz_model pm;         /* the model with one matrix swapped */
    item *items;
    uint64_t (*bytes)[SQZ_ALLOC_MAX_TYPES];
    double (*kl)[SQZ_ALLOC_MAX_TYPES];
    int done, total;      /* progress over (matrix, type) pairs */
} planner;

/* Fills item i for matrix t (the mix gives it type t0): the candidates when every one fits
 * its rows, else t0 alone. */
static void item_init(planner *P, int i, const sqz_tensor *t, sqz_type t0) {
    item *it = &P->items[i];
    it->n_opt = 0;
    it->mix_opt = -1;
    int fits = ladder_index(t0) >= 0;
    for (int k = P->lo; fits && k < SQZ_ALLOC_MAX_TYPES; k++)
        fits = sqz_gptq_supports(ladder[k]) && t->cols % sqz_type_get(ladder[k])->block_size == 0;
    if (!fits) {
        it->type[0] = t0;
        it->n_opt = 1;
        it->mix_opt = 0;
    } else {
        for (int k = P->lo; k < SQZ_ALLOC_MAX_TYPES; k++) {
            if (ladder[k] == t0) it->mix_opt = it->n_opt;
            it->type[it->n_opt++] = ladder[k];
        }
    }
    for (int k = 0; k < it->n_opt; k++) {
        P->bytes[i][k] = (uint64_t)t->rows * sqz_type_row_size(it->type[k], t->cols);
        P->kl[i][k] = 0;
    }
}

/* KL of every option of item i: slot (a tensor of P->pm, or two for a tied head) takes each
 * type's GPTQ result in turn; the changed model runs from layer l0. */
static sqz_status item_measure(planner *P, int i, sqz_tensor *slot, sqz_tensor *slot2, const double *H, int l0) {
    const item *it = &P->items[i];
    if (it->n_opt == 1 && !P->hook) return SQZ_OK;
    int todo = 0;
    for (int k = 0; k < it->n_opt; k++) {
        if (P->hook && P->hook->have && P->hook->have(P->hook->user, i, it->type[k], &P->kl[i][k]))
            sqz_progress(P->ctx, "levels", (uint64_t)++P->done, (uint64_t)P->total);
        else todo = 1;
    }
    if (!todo) return SQZ_OK;
    const sqz_tensor saved = *slot;
    const int64_t rows = saved.rows, cols = saved.cols;
    float *W = malloc((size_t)(rows * cols) * sizeof *W);
    void *out = malloc((size_t)P->bytes[i][it->n_opt - 1]); /* the largest option */
    sqz_status st = SQZ_OK;
    if (!W || !out) st = sqz_fail(P->ctx, SQZ_ERR_NOMEM, "alloc: out of memory");
    for (int64_t r = 0; !st && r < rows; r++) sqz_tensor_row_f32(&saved, r, W + r * cols);
    sqz_gptq_opts g = sqz_gptq_default_opts();
    if (P->o->damp > 0) g.percdamp = P->o->damp;
    g.act_order = P->o->act_order;
    g.threads = P->ctx->n_threads;
    if (P->o->plain_gptq) g.refit = 0, g.cd_sweeps = 0;
    for (int k = 0; k < it->n_opt && !st; k++) {
        double known;
        if (P->hook && P->hook->have && P->hook->have(P->hook->user, i, it->type[k], &known)) continue;
        st = sqz_gptq_quantize(P->ctx, it->type[k], W, rows, cols, H, &g, out, NULL);
        if (st) break;
        *slot = (sqz_tensor){ .type = it->type[k], .rows = rows, .cols = cols, .data = out };
        if (slot2) *slot2 = *slot;
        st = sqz_kl_probe_measure(P->probe, &P->pm, l0, &P->kl[i][k]);
        *slot = saved;
        if (slot2) *slot2 = saved;
        if (!st && P->hook && P->hook->got)
            st = P->hook->got(P->hook->user, i, it->type[k], out, (size_t)P->bytes[i][k], P->kl[i][k]);
        sqz_progress(P->ctx, P->hook ? "levels" : "alloc", (uint64_t)++P->done, (uint64_t)P->total);
    }
    free(W), free(out);
    return st;
}

/* The plan (hook NULL) or, with a hook, every level of every matrix handed to it (no plan). */
static sqz_status plan_or_levels(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                                 int C, const sqz_alloc_opts *o, const sqz_alloc_hook *hook,
                                 sqz_alloc_plan **out) {
    if (out) *out = NULL;
    const sqz_config *c = &model->cfg;
    const int L = c->n_layers, D = c->dim, NM = SQZ_MIX_N_MATS, n_items = L * NM + 1;
    const size_t N = n_win * (size_t)C;
    const int dims[SQZ_N_SITES] = { D, c->n_heads * c->head_dim, D, c->hidden_dim };
    const size_t want = o->eval_windows > 0 ? (size_t)o->eval_windows : 4;
    const size_t n_eval = want < n_win ? want : n_win;
    planner P = { .ctx = ctx, .o = o, .hook = hook, .pm = *model };
    site_h h[SQZ_N_SITES];
    memset(h, 0, sizeof h);
    float *X = malloc(N * (size_t)D * sizeof *X);
    int32_t *ev = malloc(n_eval * (size_t)C * sizeof *ev);
    int *choice = malloc((size_t)n_items * sizeof *choice);
    sqz_alloc_plan *plan = calloc(1, sizeof *plan);
    sqz_session *s = NULL;
    sqz_status st = SQZ_OK;
    P.pm.layers = malloc((size_t)L * sizeof *P.pm.layers);
    P.items = malloc((size_t)n_items * sizeof *P.items);
    P.bytes = malloc((size_t)n_items * sizeof *P.bytes);
    P.kl = malloc((size_t)n_items * sizeof *P.kl);
    int ok = X && ev && choice && plan && P.pm.layers && P.items && P.bytes && P.kl;
    if (ok) ok = (plan->types = malloc((size_t)L * NM * sizeof *plan->types)) != NULL;
    for (int k = 0; ok && k < SQZ_N_SITES; k++) {
        h[k].dim = dims[k];
        h[k].threads = ctx->n_threads;
        ok = (h[k].H = malloc((size_t)dims[k] * dims[k] * sizeof(double))) &&
             (h[k].tmp = malloc((size_t)dims[k] * dims[k] * sizeof(float)));
    }
    if (!ok) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "alloc: out of memory for %zu calibration tokens", N);
        goto done;
    }
    memcpy(P.pm.layers, model->layers, (size_t)L * sizeof *P.pm.layers);

    /* the candidates: from one step below the mix's lowest type for these matrices */
    sqz_tensor *head = c->tied_embeddings ? &P.pm.tok_embd : &P.pm.output;
    /* the levels: the whole ladder, every matrix "from" Q4_K (any ladder type would do) */
    const sqz_type head_t0 = hook ? SQZ_TYPE_Q4_K
                                  : sqz_preset_tensor_type(o->head_preset, o->pm,
                                                           c->tied_embeddings ? SQZ_ROLE_TOKEN_EMBD : SQZ_ROLE_OUTPUT,
                                                           -1, head->cols, NULL);
    int lowest = ladder_index(head_t0) >= 0 ? ladder_index(head_t0) : SQZ_ALLOC_MAX_TYPES - 1;
    for (int l = 0; l < L && !hook; l++)
        for (int k = 0; k < NM; k++) {
            const sqz_tensor *t = sqz_mixllm_matrix(&P.pm.layers[l], k, NULL);
            const int x = ladder_index(sqz_preset_tensor_type(o->preset, o->pm, roles[k], l, t->cols, NULL));
            if (x >= 0 && x < lowest) lowest = x;
        }
    /* a file budget may lie anywhere: the whole ladder */
    P.lo = hook || o->file_budget ? 0 : lowest > 0 ? lowest - 1 : 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < NM; k++) {
            const sqz_tensor *t = sqz_mixllm_matrix(&P.pm.layers[l], k, NULL);
            item_init(&P, l * NM + k, t,
                      hook ? SQZ_TYPE_Q4_K : sqz_preset_tensor_type(o->preset, o->pm, roles[k], l, t->cols, NULL));
        }
    item_init(&P, n_items - 1, head, head_t0);
    for (int i = 0; i < n_items; i++) P.total += P.items[i].n_opt > 1 || hook ? P.items[i].n_opt : 0;

    /* a file budget moves the matrices' by as much (what is outside them stays); checked before
     * the minutes of measuring */
    uint64_t budget = 0;
    if (o->file_budget && !hook) {
        uint64_t least = 0, mix = 0;
        for (int i = 0; i < n_items; i++) least += P.bytes[i][0], mix += P.bytes[i][P.items[i].mix_opt];
        const int64_t b = (int64_t)mix + ((int64_t)o->file_budget - (int64_t)o->mix_file_bytes);
        if (b < (int64_t)least) {
            st = sqz_fail(ctx, SQZ_ERR_ARG, "alloc: a budget of %llu bytes is below the smallest choice, %llu bytes "
                          "(every matrix at its lowest type)", (unsigned long long)o->file_budget,
                          (unsigned long long)(o->mix_file_bytes - (mix - least)));
            goto done;
        }
        budget = (uint64_t)b;
    }

    /* eval windows spread over the calibration windows */
    for (size_t i = 0; i < n_eval; i++)
        memcpy(ev + i * (size_t)C, tokens + ((2 * i + 1) * n_win / (2 * n_eval)) * (size_t)C, (size_t)C * sizeof *ev);
    if ((st = sqz_kl_probe_new(ctx, model, ev, n_eval, C, &P.probe))) goto done;
    if ((st = sqz_session_new(ctx, model, C, &s))) goto done;
    for (size_t i = 0; i < N; i++) sqz_tensor_row_f32(&model->tok_embd, tokens[i], X + i * (size_t)D);

    for (int l = 0; l < L && !st; l++) {
        for (int k = 0; k < SQZ_N_SITES; k++) memset(h[k].H, 0, (size_t)dims[k] * dims[k] * sizeof(double));
        st = sqz_calib_layer_pass(s, &model->layers[l], l, X, n_win, C, -1, capture, h, NULL, NULL, NULL);
        for (int k = 0; k < SQZ_N_SITES; k++) symmetrize(&h[k]);
        for (int k = 0; k < NM && !st; k++) {
            int site;
            sqz_tensor *t = sqz_mixllm_matrix(&P.pm.layers[l], k, &site);
            st = item_measure(&P, l * NM + k, t, NULL, h[site].H, l);
        }
        if (!st && hook && hook->sync) st = hook->sync(hook->user, (l + 1) * NM);
    }
    if (!st) { /* the head: its input is the final norm of the last layer's outputs */
        site_h *hh = &h[SQZ_SITE_QKV];
        float *xn = malloc((size_t)C * D * sizeof *xn);
        if (!xn) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "alloc: out of memory");
        memset(hh->H, 0, (size_t)D * D * sizeof(double));
        for (size_t w = 0; w < n_win && !st; w++) {
            sqz_rmsnorm(xn, X + w * (size_t)C * D, model->out_norm.data, C, D, c->norm_eps);
            sqz_rsq_hessian_add(hh->H, hh->tmp, xn, NULL, C, D, ctx->n_threads);
        }
        free(xn);
        symmetrize(hh);
        if (!st)
            st = c->tied_embeddings ? item_measure(&P, n_items - 1, &P.pm.tok_embd, &P.pm.output, hh->H, 0)
                                    : item_measure(&P, n_items - 1, &P.pm.output, NULL, hh->H, L);
        if (!st && hook && hook->sync) st = hook->sync(hook->user, n_items);
    }
    if (st || hook) goto done;

    int *n_opt = malloc((size_t)n_items * sizeof *n_opt);
    if (!n_opt) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "alloc: out of memory"); goto done; }
    for (int i = 0; i < n_items; i++) {
        const item *it = &P.items[i];
        n_opt[i] = it->n_opt;
        plan->budget += P.bytes[i][it->mix_opt];
        plan->kl_mix += P.kl[i][it->mix_opt];
    }
    if (o->file_budget) plan->budget = budget;
    const int r = sqz_alloc_knapsack(n_items, n_opt, (const uint64_t(*)[SQZ_ALLOC_MAX_TYPES])P.bytes,
                                     (const double(*)[SQZ_ALLOC_MAX_TYPES])P.kl, plan->budget, choice);
    free(n_opt);
    if (r) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "alloc: out of memory for the knapsack"); goto done; }
    /* a file budget is a hard limit: the knapsack's rounding (a unit per matrix at most) is taken
     * back one step down at a time, where it costs the least KL */
    for (uint64_t sum = 0;; sum = 0) {
        for (int i = 0; i < n_items; i++) sum += P.bytes[i][choice[i]];
        if (!o->file_budget || sum <= plan->budget) break;
        int worst = -1;
        double dk = HUGE_VAL;
        for (int i = 0; i < n_items; i++)
            if (choice[i] > 0 && P.kl[i][choice[i] - 1] - P.kl[i][choice[i]] < dk)
                dk = P.kl[i][choice[i] - 1] - P.kl[i][choice[i]], worst = i;
        if (worst < 0) break;
        choice[worst]--;
    }
    plan->n_layers = L;
    for (int i = 0; i < n_items; i++) {
        const sqz_type t = P.items[i].type[choice[i]];
        plan->bytes += P.bytes[i][choice[i]];
        plan->kl_chosen += P.kl[i][choice[i]];
        if (i < L * NM) plan->types[i] = t;
        else plan->head = t;
    }
    *out = plan;
    plan = NULL;
done:
    sqz_alloc_plan_free(plan);
    sqz_kl_probe_free(P.probe);
    sqz_session_free(s);
    for (int k = 0; k < SQZ_N_SITES; k++) free(h[k].H), free(h[k].tmp);
    free(X), free(ev), free(choice), free(P.pm.layers), free(P.items), free(P.bytes), free(P.kl);
    return st;
}

sqz_status sqz_alloc_plan_new(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                              int C, const sqz_alloc_opts *o, sqz_alloc_plan **out) {
    return plan_or_levels(ctx, model, tokens, n_win, C, o, NULL, out);
}

sqz_status sqz_alloc_levels(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win, int C,
                            const sqz_alloc_opts *o, const sqz_alloc_hook *hook) {
    if (!hook) return sqz_fail(ctx, SQZ_ERR_ARG, "levels: no hook");
    return plan_or_levels(ctx, model, tokens, n_win, C, o, hook, NULL);
}
