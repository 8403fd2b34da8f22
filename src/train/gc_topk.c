/* gc_topk.c - plain top-k sparsification with error feedback (Seide et al. 2014's memory;
 * Stich et al. 2018): each rank adds its gradient to what it has not sent yet, sends each
 * tensor's k largest magnitudes as (index, value) pairs (8 bytes a pair, allgathered), and keeps
 * the rest for later. The DGC comparison's "plain top-k". Spec: topk:density=0.001,ef=1. */
#include <stdlib.h>
#include <string.h>

#include "train/gc_impl.h"

struct sqz_gc_topk_state {
    sqz_gc_env env;
    int ef, accumulated;
    float *e, *scratch;
    uint32_t *idx;
    float *val;
};

sqz_status sqz_gc_topk_new(const sqz_gc_env *env, int ef, sqz_gc_topk_state **out) {
    if (env->n > UINT32_MAX)
        return sqz_fail(env->ctx, SQZ_ERR_UNSUPPORTED, "--dp: sparse indices are 32-bit; %zu values "
                        "do not fit", env->n);
    sqz_gc_topk_state *s = calloc(1, sizeof *s);
    if (s) {
        s->env = *env;
        s->ef = ef;
        s->e = calloc(env->n, sizeof(float));
        s->scratch = malloc(env->n * sizeof(float));
        s->idx = malloc(env->n * sizeof(uint32_t));
        s->val = malloc(env->n * sizeof(float));
    }
    if (!s || !s->e || !s->scratch || !s->idx || !s->val) {
        sqz_gc_topk_free(s);
        return sqz_fail(env->ctx, SQZ_ERR_NOMEM, "--dp topk: out of memory for %zu values", env->n);
    }
    *out = s;
    return SQZ_OK;
}

void sqz_gc_topk_free(sqz_gc_topk_state *s) {
    if (!s) return;
    free(s->e), free(s->scratch), free(s->idx), free(s->val);
    free(s);
}

sqz_status sqz_gc_topk_state_io(sqz_gc_topk_state *s, sqz_gc_io *io) {
    return sqz_gc_io_bytes(io, s->e, s->env.n * sizeof(float));
}

float *sqz_gc_topk_accumulate(sqz_gc_topk_state *s, const float *grad) {
    for (size_t i = 0; i < s->env.n; i++) s->e[i] += grad[i];
    s->accumulated = 1;
    return s->e;
}

sqz_status sqz_gc_topk_run(sqz_gc_topk_state *s, float *grad, const double *density) {
    if (!s->accumulated) sqz_gc_topk_accumulate(s, grad);
    s->accumulated = 0;
    const size_t n_pairs = sqz_gc_select(&s->env, s->e, density, 0, s->idx, s->val, s->scratch);
    for (size_t j = 0; j < n_pairs; j++) s->e[s->idx[j]] = 0; /* sent: no longer owed */
    if (!s->ef) memset(s->e, 0, s->env.n * sizeof(float));
    return sqz_gc_sparse_exchange(s->env.comm, s->idx, s->val, n_pairs, grad, s->env.n,
                                  1.0f / (float)s->env.comm->size);
}

/* ---- the table row: one density for every tensor */
typedef struct row_state {
    sqz_gc_topk_state *k;
    double *density;
} row_state;

static void destroy(void *p) {
    row_state *r = p;
    if (!r) return;
    sqz_gc_topk_free(r->k);
    free(r->density);
    free(r);
}

static sqz_status create(const sqz_gc_env *env, const sqz_gc_args *a, void **state) {
    const double d = sqz_gc_arg(a, "density", 0.001);
    if (!(d > 0 && d <= 1))
        return sqz_fail(env->ctx, SQZ_ERR_ARG, "--dp topk: density %g is not in (0, 1]", d);
    row_state *r = calloc(1, sizeof *r);
    if (!r || !(r->density = malloc((size_t)env->n_tensors * sizeof(double)))) {
        destroy(r);
        return sqz_fail(env->ctx, SQZ_ERR_NOMEM, "--dp topk: out of memory");
    }
    for (int t = 0; t < env->n_tensors; t++) r->density[t] = d;
    const sqz_status st = sqz_gc_topk_new(env, sqz_gc_arg(a, "ef", 1) != 0, &r->k);
    if (st) {
        destroy(r);
        return st;
    }
    *state = r;
    return SQZ_OK;
}

static sqz_status exchange(void *p, float *grad, int step) {
    row_state *r = p;
    return sqz_gc_topk_run(r->k, grad, r->density);
}

/* the densities come from the spec: only the error is state */
static sqz_status state(void *p, sqz_gc_io *io) { return sqz_gc_topk_state_io(((row_state *)p)->k, io); }

const sqz_gc_method sqz_gcm_topk = {
    .name = "topk", .params = "density=F,ef=0|1", .create = create, .exchange = exchange,
    .destroy = destroy, .state = state,
};
