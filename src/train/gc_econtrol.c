/* gc_econtrol.c - EControl (Gao, Islamov, Stich, "EControl: Fast Distributed Optimization with
 * Compression and Error Control", ICLR 2024) over top-k: each rank i keeps an estimate h_i of its
 * gradient (as EF21 does) and an error e_i (as error feedback does), and compresses the error
 * fed back at strength eta plus the estimate's lag:
 *   D_i = topk(eta e_i + g_i - h_i);  e_i += g_i - h_i - D_i;  h_i += D_i;
 *   D = mean of the D_i (sparse allgather);  h += D;  direction = h  (= the mean of the h_i).
 * eta = 1 with h_i kept at zero would be plain error feedback; the control eta < 1 keeps the error
 * from growing where plain error feedback diverges (heterogeneous data across ranks). h_i and h
 * start at zero. Spec: econtrol:density=0.001,eta=0.2. */
#include <stdlib.h>
#include <string.h>

#include "train/gc_impl.h"

typedef struct ec_state {
    sqz_gc_env env;
    double density, eta;
    float *e, *hi, *h, *x, *scratch, *val;
    uint32_t *idx;
} ec_state;

static void destroy(void *p) {
    ec_state *s = p;
    if (!s) return;
    free(s->e), free(s->hi), free(s->h), free(s->x), free(s->scratch), free(s->val), free(s->idx);
    free(s);
}

static sqz_status create(const sqz_gc_env *env, const sqz_gc_args *a, void **state) {
    const double d = sqz_gc_arg(a, "density", 0.001), eta = sqz_gc_arg(a, "eta", 0.2);
    if (!(d > 0 && d <= 1) || !(eta >= 0 && eta <= 1))
        return sqz_fail(env->ctx, SQZ_ERR_ARG, "--dp econtrol: density in (0, 1], eta in [0, 1]");
    if (env->n > UINT32_MAX)
        return sqz_fail(env->ctx, SQZ_ERR_UNSUPPORTED, "--dp econtrol: %zu values do not fit 32-bit indices", env->n);
    ec_state *s = calloc(1, sizeof *s);
    if (s) {
        s->env = *env;
        s->density = d, s->eta = eta;
        s->e = calloc(env->n, sizeof(float));
        s->hi = calloc(env->n, sizeof(float));
        s->h = calloc(env->n, sizeof(float));
        s->x = malloc(env->n * sizeof(float));
        s->scratch = malloc(env->n * sizeof(float));
        s->val = malloc(env->n * sizeof(float));
        s->idx = malloc(env->n * sizeof(uint32_t));
    }
    if (!s || !s->e || !s->hi || !s->h || !s->x || !s->scratch || !s->val || !s->idx) {
        destroy(s);
        return sqz_fail(env->ctx, SQZ_ERR_NOMEM, "--dp econtrol: out of memory");
    }
    *state = s;
    return SQZ_OK;
}

static sqz_status exchange(void *p, float *grad, int step) {
    ec_state *s = p;
    const size_t n = s->env.n;
    const float eta = (float)s->eta;
    for (size_t i = 0; i < n; i++) {
        const float lag = grad[i] - s->hi[i];
        s->x[i] = eta * s->e[i] + lag;
        s->e[i] += lag; /* minus D_i below, where D_i is not zero */
    }
    const size_t n_pairs = sqz_gc_select(&s->env, s->x, NULL, s->density, s->idx, s->val, s->scratch);
    for (size_t j = 0; j < n_pairs; j++) s->e[s->idx[j]] -= s->val[j], s->hi[s->idx[j]] += s->val[j];
    const sqz_status st = sqz_gc_sparse_exchange(s->env.comm, s->idx, s->val, n_pairs, grad, n,
                                                 1.0f / (float)s->env.comm->size);
    if (st) return st;
    for (size_t i = 0; i < n; i++) {
        s->h[i] += grad[i];
        grad[i] = s->h[i];
    }
    return SQZ_OK;
}

/* the error e, this rank's estimate h_i and the shared h (x is scratch) */
static sqz_status state(void *p, sqz_gc_io *io) {
    ec_state *s = p;
    const size_t bytes = s->env.n * sizeof(float);
    sqz_status st = sqz_gc_io_bytes(io, s->e, bytes);
    if (!st) st = sqz_gc_io_bytes(io, s->hi, bytes);
    if (!st) st = sqz_gc_io_bytes(io, s->h, bytes);
    return st;
}

const sqz_gc_method sqz_gcm_econtrol = {
    .name = "econtrol", .params = "density=F,eta=F", .create = create, .exchange = exchange,
    .destroy = destroy, .state = state,
};
