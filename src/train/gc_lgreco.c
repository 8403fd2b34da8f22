/* gc_lgreco.c - L-GreCo (Markov, Alimohammadi, Frantar, Alistarh, MLSys 2024): each layer gets its
 * own compression level, chosen by dynamic programming so that the total bytes are smallest while
 * the total compression error stays within the error of the uniform default level. Every `every`
 * steps, on the gradient about to be compressed (error feedback included):
 *   err(l, c) = || M_l - C_c(M_l) ||^2 for each tensor l and candidate level c, summed over ranks
 *   (so every rank solves the same problem), size(l, c) = the bytes level c sends for l;
 *   budget = sum_l err(l, ref); errors in units of budget / bins;
 *   min sum_l size(l, c_l) subject to sum_l err(l, c_l) <= budget  (a grouped knapsack, O(L C bins)).
 * Before the first choice every tensor runs at ref. Levels over powersgd are ranks (err(l, r) =
 * ||M||^2 - the r largest eigenvalues of M^T M: the best rank-r error, which the warm-started
 * power iteration approaches), over topk densities (err = the energy of all but the k largest).
 * Spec: lgreco:base=powersgd,levels=1/2/4/8/16,ref=4,every=25,bins=1000 (base=topk: levels of
 * densities, ref 0.001). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "math/eigen.h"
#include "train/gc_impl.h"

#define MAX_LEVELS 12

typedef struct lg_state {
    sqz_gc_env env;
    int base_psgd, n_levels, ref, every, bins;
    double level[MAX_LEVELS];
    int *choice;       /* per tensor: index into level (-1: not a choice, powersgd's dense tensors) */
    int *rank;         /* powersgd: per tensor */
    double *density;   /* topk: per tensor */
    sqz_gc_psgd_state *psgd;
    sqz_gc_topk_state *topk;
    double *err, *size; /* [tensor][level] */
    int n_choices;      /* times the levels were chosen */
} lg_state;

static void destroy(void *p) {
    lg_state *s = p;
    if (!s) return;
    sqz_gc_psgd_free(s->psgd);
    sqz_gc_topk_free(s->topk);
    free(s->choice), free(s->rank), free(s->density), free(s->err), free(s->size);
    free(s);
}

static void apply(lg_state *s) {
    for (int t = 0; t < s->env.n_tensors; t++) {
        const int c = s->choice[t];
        if (s->base_psgd) s->rank[t] = c < 0 ? 0 : (int)s->level[c];
        else s->density[t] = s->level[c];
    }
}

static sqz_status create(const sqz_gc_env *env, const sqz_gc_args *a, void **state) {
    const char *base = sqz_gc_arg_str(a, "base", "powersgd");
    const int psgd = !strcmp(base, "powersgd");
    if (!psgd && strcmp(base, "topk"))
        return sqz_fail(env->ctx, SQZ_ERR_ARG, "--dp lgreco: base is powersgd or topk, not %s", base);
    lg_state *s = calloc(1, sizeof *s);
    if (!s) return sqz_fail(env->ctx, SQZ_ERR_NOMEM, "--dp lgreco: out of memory");
    s->env = *env;
    s->base_psgd = psgd;
    s->every = (int)sqz_gc_arg(a, "every", 25);
    s->bins = (int)sqz_gc_arg(a, "bins", 1000);
    const double ref = sqz_gc_arg(a, "ref", psgd ? 4 : 0.001);
    const char *lv = sqz_gc_arg_str(a, "levels", psgd ? "1/2/4/8/16" : "0.0001/0.0003/0.001/0.003/0.01");
    s->ref = -1;
    for (const char *p = lv; p && *p && s->n_levels < MAX_LEVELS;) {
        char *end;
        const double v = strtod(p, &end);
        if (end == p || (psgd ? !(v >= 1 && v == floor(v)) : !(v > 0 && v <= 1))) {
            destroy(s);
            return sqz_fail(env->ctx, SQZ_ERR_ARG, "--dp lgreco: levels '%s': %s, separated by '/'", lv,
                            psgd ? "integer ranks" : "densities in (0, 1]");
        }
        if (v == ref) s->ref = s->n_levels;
        s->level[s->n_levels++] = v;
        p = *end == '/' ? end + 1 : NULL;
    }
    if (s->ref < 0 || s->every < 1 || s->bins < 10) {
        destroy(s);
        return sqz_fail(env->ctx, SQZ_ERR_ARG, "--dp lgreco: ref %g must be one of the levels %s; every >= 1, "
                        "bins >= 10", ref, lv);
    }
    const int T = env->n_tensors;
    s->choice = malloc((size_t)T * sizeof(int));
    s->rank = calloc((size_t)T, sizeof(int));
    s->density = calloc((size_t)T, sizeof(double));
    s->err = malloc((size_t)T * MAX_LEVELS * sizeof(double));
    s->size = malloc((size_t)T * MAX_LEVELS * sizeof(double));
    if (!s->choice || !s->rank || !s->density || !s->err || !s->size) {
        destroy(s);
        return sqz_fail(env->ctx, SQZ_ERR_NOMEM, "--dp lgreco: out of memory");
    }
    for (int t = 0; t < T; t++) {
        const sqz_train_tensor *e = &env->t[t];
        /* a powersgd choice exists where some level factors the matrix */
        int any = !psgd;
        for (int c = 0; psgd && c < s->n_levels; c++) any |= sqz_gc_psgd_pays(e->rows, e->cols, (int)s->level[c]);
        s->choice[t] = any ? s->ref : -1;
    }
    apply(s);
    const sqz_status st = psgd ? sqz_gc_psgd_new(env, 1, s->rank, &s->psgd) : sqz_gc_topk_new(env, 1, &s->topk);
    if (st) {
        destroy(s);
        return st;
    }
    *state = s;
    return SQZ_OK;
}

/* err and size of every level of tensor t, from its accumulated gradient M */
static sqz_status measure(lg_state *s, int t, const float *M) {
    const sqz_train_tensor *T = &s->env.t[t];
    const int64_t rows = T->rows, cols = T->cols;
    const size_t n = (size_t)(rows * cols);
    double *err = s->err + (size_t)t * MAX_LEVELS, *size = s->size + (size_t)t * MAX_LEVELS;
    double total = 0;
    for (size_t i = 0; i < n; i++) total += (double)M[i] * M[i];
    if (s->base_psgd) {
        const int d = (int)(rows < cols ? rows : cols);
        int rmax = 0;
        for (int c = 0; c < s->n_levels; c++) rmax = (int)s->level[c] > rmax ? (int)s->level[c] : rmax;
        if (rmax > d) rmax = d;
        float *g = malloc((size_t)d * d * sizeof(float)), *vecs = malloc((size_t)rmax * d * sizeof(float));
        double *gd = malloc((size_t)d * d * sizeof(double)), vals[64];
        if (!g || !vecs || !gd || rmax > 64) {
            free(g), free(vecs), free(gd);
            return sqz_fail(s->env.ctx, SQZ_ERR_NOMEM, "--dp lgreco: out of memory (or a rank above 64)");
        }
        /* the smaller Gram matrix: M^T M (cols x cols) or M M^T (rows x rows) */
        if (cols <= rows)
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, (int)rows, 1.0f, M, (int)cols, 0.0f, g, d);
        else
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, d, (int)cols, 1.0f, M, (int)cols, 0.0f, g, d);
        for (int i = 0; i < d; i++)
            for (int j = i; j < d; j++) gd[(size_t)i * d + j] = gd[(size_t)j * d + i] = g[(size_t)i * d + j];
        const int rc = sqz_eigen_top(gd, d, rmax, vecs, vals);
        free(g), free(vecs), free(gd);
        if (rc) return sqz_fail(s->env.ctx, SQZ_ERR_NOMEM, "--dp lgreco: eigen-solver failed");
        for (int c = 0; c < s->n_levels; c++) {
            const int r = (int)s->level[c];
            if (!sqz_gc_psgd_pays(rows, cols, r)) { /* sent dense: exact */
                err[c] = 0, size[c] = 4.0 * (double)n;
                continue;
            }
            double kept = 0;
            for (int i = 0; i < r && i < rmax; i++) kept += vals[i] > 0 ? vals[i] : 0;
            err[c] = total - kept > 0 ? total - kept : 0;
            size[c] = 4.0 * r * (double)(rows + cols);
        }
    } else {
        uint32_t *idx = malloc(n * sizeof(uint32_t));
        float *scr = malloc(n * sizeof(float));
        if (!idx || !scr) {
            free(idx), free(scr);
            return sqz_fail(s->env.ctx, SQZ_ERR_NOMEM, "--dp lgreco: out of memory");
        }
        for (int c = 0; c < s->n_levels; c++) {
            const size_t k = sqz_gc_topk(M, n, sqz_gc_topk_count(n, s->level[c]), idx, scr);
            double kept = 0;
            for (size_t j = 0; j < k; j++) kept += (double)M[idx[j]] * M[idx[j]];
            err[c] = total - kept > 0 ? total - kept : 0;
            size[c] = 8.0 * (double)k;
        }
        free(idx), free(scr);
    }
    return SQZ_OK;
}

/* The grouped knapsack: levels of least total size whose total error (in bins) is at most the
 * uniform ref's. Writes s->choice. Shared with the test through sqz_gc_lgreco_solve. */
int sqz_gc_lgreco_solve(int n_items, int n_levels, const double *err, const double *size, int ref,
                        int bins, int *choice) {
    double budget = 0;
    for (int l = 0; l < n_items; l++) budget += err[(size_t)l * n_levels + ref];
    if (!(budget > 0)) {
        for (int l = 0; l < n_items; l++) choice[l] = ref;
        return 0;
    }
    const double unit = budget / bins;
    int cap = 0;
    for (int l = 0; l < n_items; l++) cap += (int)llround(err[(size_t)l * n_levels + ref] / unit);
    double *dp = malloc((size_t)(cap + 1) * sizeof(double)), *nx = malloc((size_t)(cap + 1) * sizeof(double));
    unsigned char *pick = malloc((size_t)n_items * (cap + 1));
    if (!dp || !nx || !pick) {
        free(dp), free(nx), free(pick);
        return -1;
    }
    for (int b = 0; b <= cap; b++) dp[b] = 0;
    for (int l = 0; l < n_items; l++) {
        for (int b = 0; b <= cap; b++) {
            double best = INFINITY;
            int bc = ref;
            for (int c = 0; c < n_levels; c++) {
                const double e = err[(size_t)l * n_levels + c];
                const long long w = llround(e / unit);
                if (w > b) continue;
                const double v = dp[b - w] + size[(size_t)l * n_levels + c];
                if (v < best || (v == best && e < err[(size_t)l * n_levels + bc])) best = v, bc = c;
            }
            nx[b] = best;
            pick[(size_t)l * (cap + 1) + b] = (unsigned char)bc;
        }
        double *t = dp;
        dp = nx, nx = t;
    }
    for (int l = n_items - 1, b = cap; l >= 0; l--) {
        const int c = pick[(size_t)l * (cap + 1) + b];
        choice[l] = c;
        b -= (int)llround(err[(size_t)l * n_levels + c] / unit);
    }
    free(dp), free(nx), free(pick);
    return 0;
}

static sqz_status choose(lg_state *s, const float *acc) {
    const int T = s->env.n_tensors, C = s->n_levels;
    int n_items = 0;
    sqz_status st = SQZ_OK;
    for (int t = 0; t < T && !st; t++)
        if (s->choice[t] >= 0) st = measure(s, t, acc + s->env.t[t].off);
    /* every rank solves the same problem: errors summed over ranks (control traffic) */
    double *e = malloc((size_t)T * C * sizeof(double)), *z = malloc((size_t)T * C * sizeof(double));
    int *item = malloc((size_t)T * sizeof(int)), *ch = malloc((size_t)T * sizeof(int));
    if (!st && (!e || !z || !item || !ch)) st = sqz_fail(s->env.ctx, SQZ_ERR_NOMEM, "--dp lgreco: out of memory");
    for (int t = 0; t < T && !st; t++)
        if (s->choice[t] >= 0) {
            memcpy(e + (size_t)n_items * C, s->err + (size_t)t * MAX_LEVELS, (size_t)C * sizeof(double));
            memcpy(z + (size_t)n_items * C, s->size + (size_t)t * MAX_LEVELS, (size_t)C * sizeof(double));
            item[n_items++] = t;
        }
    if (!st) st = sqz_comm_ctl_sum(s->env.comm, e, n_items * C);
    if (!st && sqz_gc_lgreco_solve(n_items, C, e, z, s->ref, s->bins, ch))
        st = sqz_fail(s->env.ctx, SQZ_ERR_NOMEM, "--dp lgreco: out of memory");
    for (int i = 0; i < n_items && !st; i++) s->choice[item[i]] = ch[i];
    free(e), free(z), free(item), free(ch);
    if (st) return st;
    apply(s);
    s->n_choices++;
    return s->base_psgd ? sqz_gc_psgd_set_ranks(s->psgd, s->rank) : SQZ_OK;
}

static sqz_status exchange(void *p, float *grad, int step) {
    lg_state *s = p;
    if (step > 0 && step % s->every == 0) {
        const float *acc = s->base_psgd ? sqz_gc_psgd_accumulate(s->psgd, grad) : sqz_gc_topk_accumulate(s->topk, grad);
        const sqz_status st = choose(s, acc);
        if (st) return st;
    }
    return s->base_psgd ? sqz_gc_psgd_run(s->psgd, grad, step) : sqz_gc_topk_run(s->topk, grad, s->density);
}

/* A loaded choice of levels: each tensor keeps its kind (-1 where no level factors it, as
 * create() found from the shapes) and names one of the levels. */
static sqz_status check_choice(const lg_state *s, const int *loaded) {
    for (int t = 0; t < s->env.n_tensors; t++)
        if ((loaded[t] < 0) != (s->choice[t] < 0) || loaded[t] >= s->n_levels)
            return sqz_fail(s->env.ctx, SQZ_ERR_FORMAT, "--resume: lgreco level %d of tensor %d does not fit "
                            "the %d levels of this spec", loaded[t], t, s->n_levels);
    return SQZ_OK;
}

/* The chosen levels first: loaded, they set the ranks (PowerSGD's factor shapes) or densities
 * before the base compressor's buffers are read into them. */
static sqz_status state(void *p, sqz_gc_io *io) {
    lg_state *s = p;
    const size_t bytes = (size_t)s->env.n_tensors * sizeof(int);
    int *choice = sqz_gc_io_loading(io) ? malloc(bytes) : s->choice;
    if (!choice) return sqz_fail(s->env.ctx, SQZ_ERR_NOMEM, "--dp lgreco: out of memory");
    sqz_status st = sqz_gc_io_bytes(io, choice, bytes);
    if (!st) st = sqz_gc_io_bytes(io, &s->n_choices, sizeof s->n_choices);
    if (!st && choice != s->choice && !(st = check_choice(s, choice))) {
        memcpy(s->choice, choice, bytes);
        apply(s);
        if (s->base_psgd) st = sqz_gc_psgd_set_ranks(s->psgd, s->rank);
    }
    if (choice != s->choice) free(choice);
    if (st) return st;
    return s->base_psgd ? sqz_gc_psgd_state_io(s->psgd, io) : sqz_gc_topk_state_io(s->topk, io);
}

const sqz_gc_method sqz_gcm_lgreco = {
    .name = "lgreco", .params = "base=powersgd|topk,levels=L1/L2/...,ref=L,every=STEPS,bins=N",
    .create = create, .exchange = exchange, .destroy = destroy, .state = state,
};
