/* gc_dgc.c - Deep Gradient Compression (Lin et al., ICLR 2018), the paper's four parts on top of
 * top-k sparsification:
 *  - momentum correction: each rank keeps the momentum u = m u + g and accumulates v += u, and
 *    sends the top-k of v, so the sparse updates carry momentum as the dense ones would; the
 *    update is then the mean of what was sent (the optimizer's momentum lives in the ranks);
 *  - local gradient clipping: before accumulating, each rank clips its own gradient to the
 *    global threshold scaled by N^-1/2 (the run's --clip, which then is not applied again);
 *  - momentum factor masking: where v was sent, both u and v are zeroed (stale momentum would
 *    otherwise push on for many steps);
 *  - warm-up: the density falls exponentially over the first `warmup` steps in four stages,
 *    25 %, 6.25 %, 1.56 %, 0.39 % (the paper's 75 %-99.6 % sparsity), then `density`.
 * The paper's optimizer is momentum SGD; the recipe's is AdamW. Adam's step m / sqrt(v) is not
 * linear in the gradient, so feeding it the accumulated sparse values loses what error feedback
 * keeps (a value that waited K steps moves its weight once, by about lr, instead of K times).
 * With adam=1 (default) each rank therefore scales its gradient by its own Adam second moment
 * first (v_i = b2 v_i + (1 - b2) g^2, bias-corrected; g / (sqrt(v_i) + eps)), and the momentum is
 * Adam's (u = b1 u + (1 - b1) g, m = b1): what is accumulated and sent is Adam's update, and the
 * driver applies the mean of it linearly (p -= lr d), so nothing sent is lost. adam=0 is the
 * paper's momentum SGD (u = m u + g; choose --lr for SGD). The selection is exact per tensor
 * (the paper samples to estimate the threshold: a speed trick, not a change of what is sent).
 * Spec: dgc:density=0.001,momentum=0.9,warmup=4,adam=1. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/gc_impl.h"

typedef struct dgc_state {
    sqz_gc_env env;
    double density, momentum;
    int warmup, adam;
    float *u, *v, *scratch, *val, *v2; /* v2: Adam's second moment (adam = 1) */
    uint32_t *idx;
} dgc_state;

static void destroy(void *p) {
    dgc_state *s = p;
    if (!s) return;
    free(s->u), free(s->v), free(s->scratch), free(s->val), free(s->idx), free(s->v2);
    free(s);
}

static sqz_status create(const sqz_gc_env *env, const sqz_gc_args *a, void **state) {
    const double d = sqz_gc_arg(a, "density", 0.001), m = sqz_gc_arg(a, "momentum", 0.9);
    const double w = sqz_gc_arg(a, "warmup", 4);
    const int adam = sqz_gc_arg(a, "adam", 1) != 0;
    if (!(d > 0 && d <= 1) || !(m >= 0 && m < 1) || !(w >= 0))
        return sqz_fail(env->ctx, SQZ_ERR_ARG, "--dp dgc: density in (0, 1], momentum in [0, 1), "
                        "warmup >= 0 steps");
    if (env->n > UINT32_MAX)
        return sqz_fail(env->ctx, SQZ_ERR_UNSUPPORTED, "--dp dgc: %zu values do not fit 32-bit indices", env->n);
    dgc_state *s = calloc(1, sizeof *s);
    if (s) {
        s->env = *env;
        s->density = d, s->momentum = adam && !sqz_gc_arg_str(a, "momentum", NULL) ? env->beta1 : m;
        s->warmup = (int)w, s->adam = adam;
        s->v2 = adam ? calloc(env->n, sizeof(float)) : NULL;
        s->u = calloc(env->n, sizeof(float));
        s->v = calloc(env->n, sizeof(float));
        s->scratch = malloc(env->n * sizeof(float));
        s->val = malloc(env->n * sizeof(float));
        s->idx = malloc(env->n * sizeof(uint32_t));
    }
    if (!s || !s->u || !s->v || !s->scratch || !s->val || !s->idx || (adam && !s->v2)) {
        destroy(s);
        return sqz_fail(env->ctx, SQZ_ERR_NOMEM, "--dp dgc: out of memory");
    }
    *state = s;
    return SQZ_OK;
}

/* The density of step (0-based): four exponential warm-up stages, then the target. */
double sqz_gc_dgc_density(double target, int warmup, int step) {
    if (step >= warmup) return target;
    const int stage = (int)((int64_t)step * 4 / warmup);
    const double d = pow(0.25, stage + 1);
    return d > target ? d : target;
}

static sqz_status exchange(void *p, float *grad, int step) {
    dgc_state *s = p;
    const size_t n = s->env.n;
    const int N = s->env.comm->size;
    if (s->env.clip > 0) { /* local clipping at clip / sqrt(N) */
        double ss = 0;
        for (size_t i = 0; i < n; i++) ss += (double)grad[i] * grad[i];
        const double thr = s->env.clip / sqrt((double)N), norm = sqrt(ss);
        if (norm > thr) {
            const float f = (float)(thr / (norm + 1e-6));
            for (size_t i = 0; i < n; i++) grad[i] *= f;
        }
    }
    const float m = (float)s->momentum;
    if (s->adam) { /* Adam's update from this rank's moments, accumulated */
        const float b2 = s->env.beta2, eps = s->env.eps;
        const float bc2 = (float)(1.0 - pow(b2, step + 1));
        for (size_t i = 0; i < n; i++) {
            s->v2[i] = b2 * s->v2[i] + (1.0f - b2) * grad[i] * grad[i];
            const float g = grad[i] / (sqrtf(s->v2[i] / bc2) + eps);
            s->u[i] = m * s->u[i] + (1.0f - m) * g;
            s->v[i] += s->u[i];
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            s->u[i] = m * s->u[i] + grad[i];
            s->v[i] += s->u[i];
        }
    }
    const double d = sqz_gc_dgc_density(s->density, s->warmup, step);
    const size_t n_pairs = sqz_gc_select(&s->env, s->v, NULL, d, s->idx, s->val, s->scratch);
    for (size_t j = 0; j < n_pairs; j++) s->v[s->idx[j]] = 0, s->u[s->idx[j]] = 0; /* momentum factor masking */
    return sqz_gc_sparse_exchange(s->env.comm, s->idx, s->val, n_pairs, grad, n, 1.0f / (float)N);
}

/* the momentum u, the accumulation v and (adam = 1) the second moment; the warm-up density
 * follows from the step */
static sqz_status state(void *p, sqz_gc_io *io) {
    dgc_state *s = p;
    const size_t bytes = s->env.n * sizeof(float);
    sqz_status st = sqz_gc_io_bytes(io, s->u, bytes);
    if (!st) st = sqz_gc_io_bytes(io, s->v, bytes);
    if (!st && s->adam) st = sqz_gc_io_bytes(io, s->v2, bytes);
    return st;
}

const sqz_gc_method sqz_gcm_dgc = {
    .name = "dgc", .params = "density=F,momentum=F,warmup=STEPS,adam=0|1", .owns_optimizer = 1,
    .owns_clipping = 1, .create = create, .exchange = exchange, .destroy = destroy, .state = state,
};
