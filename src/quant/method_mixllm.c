/* method_mixllm.c - "mixllm" (quant/mixllm.h): the rows of every block matrix ranked globally by
 * the output error 8 bits saves, the top frac of the weights at MX8 and the rest at MX4 (type
 * "q4") or MX3 ("q3"), each matrix by GPTQ-style updates with its input's Hessian; written to
 * sqz's container (sqzf), token_embd / output as the q4_k_m / q3_k_m mix has them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/method.h"
#include "quant/mixllm.h"

typedef struct mix_state {
    double damp;  /* percdamp; 0: the default */
    int act_order;
    double frac;  /* share of the matrices' weights at 8 bits (0: none) */
    sqz_type lo;  /* MX4 or MX3 */
    sqz_mixllm_plan *plan;
} mix_state;

static sqz_status create(sqz_ctx *ctx, void **state) {
    mix_state *s = calloc(1, sizeof *s);
    if (!s) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    s->frac = 0.1;
    *state = s;
    return SQZ_OK;
}

static void destroy(void *state) {
    mix_state *s = state;
    if (s) sqz_mixllm_plan_free(s->plan);
    free(s);
}

static int params(void *state, sqz_param *p) {
    mix_state *s = state;
    p[0] = (sqz_param){ "damp", 'd', &s->damp, 0, 1e6 };
    p[1] = (sqz_param){ "act_order", 'i', &s->act_order, 0, 1 };
    p[2] = (sqz_param){ "frac", 'd', &s->frac, 0, 1 };
    return 3;
}

/* The low bit width names the matrices' type; token_embd / output get the llama.cpp mix of the
 * same width. */
static sqz_status begin(void *state, sqz_quant_run *run) {
    mix_state *s = state;
    const char *t = run->o->type;
    if (strcmp(t, "q4") && strcmp(t, "q3"))
        return sqz_fail(run->ctx, SQZ_ERR_ARG, "mixllm: type '%s' must be q4 or q3", t);
    if (!(s->frac < 1))
        return sqz_fail(run->ctx, SQZ_ERR_ARG, "method mixllm: parameter 'frac' = %g is not below 1", s->frac);
    run->co.type = !strcmp(t, "q4") ? "q4_k_m" : "q3_k_m";
    s->lo = !strcmp(t, "q3") ? SQZ_TYPE_MX3 : SQZ_TYPE_MX4;
    return SQZ_OK;
}

/* The global ranking first: it needs every layer's statistics. */
static sqz_status plan(void *state, sqz_quant_run *run) {
    mix_state *s = state;
    const sqz_mixllm_opts mo = { .frac = s->frac, .lo_type = s->lo, .sens_windows = 1 };
    return sqz_mixllm_plan_new(run->ctx, run->model, run->calib, run->n_win, run->C, &mo, &s->plan);
}

static sqz_type matrix_type(void *state, sqz_quant_run *run, int l, int k, sqz_tensor_role role, int64_t cols) {
    const mix_state *s = state;
    (void)run, (void)l, (void)k, (void)role, (void)cols;
    return s->lo;
}

/* Rows at MX8 where the plan says so, else at type; mixllm allocates its own parts. */
static sqz_status quantize(void *state, sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                           const sqz_quant_stats *st, const float *W, float *Q, int l, int k,
                           char *label, size_t len, int *q_kept) {
    const mix_state *s = state;
    (void)q_kept;
    const uint8_t *hi = s->plan->hi[l * SQZ_MIX_N_MATS + k];
    sqz_status e = sqz_mixllm_quantize(run->ctx, run->qm, W, t->rows, t->cols, st->H, hi, type, s->damp,
                                       s->act_order, t, Q);
    int64_t n8 = 0;
    for (int64_t r = 0; r < t->rows; r++) n8 += hi[r] != 0;
    snprintf(label, len, "mx8:%lld+%s:%lld", (long long)n8, sqz_type_name(type), (long long)(t->rows - n8));
    return e;
}

const sqz_quant_method sqz_quant_method_mixllm = {
    .name = "mixllm",
    .help = "8-bit and 4/3-bit rows (type q4 or q3) ranked globally, into sqzf",
    .calib = 1,
    .sequential = 1,
    .create = create,
    .destroy = destroy,
    .params = params,
    .begin = begin,
    .plan = plan,
    .matrix_type = matrix_type,
    .quantize = quantize,
};
