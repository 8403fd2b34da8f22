/* method_gptq.c - "gptq": GPTQ (quant/gptq.h) of every block matrix with its input's Hessian,
 * layer by layer in GPTQ's sequential order, then of the output projection (token_embd when
 * tied) with the Hessian of the final norm of the last layer's quantized outputs.
 * gptq:alloc=1 first chooses every matrix's type by measured KL within the mix's bytes
 * (quant/alloc.h); sqz_convert then keeps those types. Its matrix quantizer is shared with
 * rsq. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "quant/alloc.h"
#include "quant/gptq.h"
#include "quant/method.h"
#include "quant/mixllm.h" /* SQZ_MIX_N_MATS */

sqz_status sqz_quant_gptq_matrix(sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                                 const sqz_quant_stats *st, double damp, int act_order,
                                 const float *W, float *Q) {
    if (!sqz_gptq_supports(type)) return sqz_quant_imatrix_matrix(run, t, type, st, W, Q);
    const size_t rs = sqz_type_row_size(type, t->cols);
    void *out = sqz_model_own(run->qm, malloc((size_t)t->rows * rs));
    if (!out) return sqz_fail(run->ctx, SQZ_ERR_NOMEM, "out of memory quantizing %s", run->matrix);
    sqz_gptq_opts g = sqz_gptq_default_opts();
    if (damp > 0) g.percdamp = damp;
    g.act_order = act_order;
    g.threads = run->ctx->n_threads;
    sqz_status s = sqz_gptq_quantize(run->ctx, type, W, t->rows, t->cols, st->H, &g, out, Q);
    if (s) return s;
    t->type = type; /* t is the quantized model's own copy of the view */
    t->data = out;
    return SQZ_OK;
}

typedef struct gptq_state {
    double damp;   /* percdamp; 0: GPTQ's own */
    int act_order;
    int alloc;     /* types by measured KL (quant/alloc.h) */
    int windows;   /* alloc: windows the KLs are measured on */
    double bytes;  /* alloc: the file's bytes at most (0: the mix's own) */
    double bpw;    /* alloc: the same as 8 x bytes / the model's parameters */
    sqz_alloc_plan *plan;
} gptq_state;

static sqz_status create(sqz_ctx *ctx, void **state) {
    gptq_state *s = calloc(1, sizeof *s);
    if (!s) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    s->windows = 4;
    *state = s;
    return SQZ_OK;
}

static void destroy(void *state) {
    gptq_state *s = state;
    if (s) sqz_alloc_plan_free(s->plan);
    free(s);
}

static int params(void *state, sqz_param *p) {
    gptq_state *s = state;
    p[0] = (sqz_param){ "damp", 'd', &s->damp, 0, 1e6 };
    p[1] = (sqz_param){ "act_order", 'i', &s->act_order, 0, 1 };
    p[2] = (sqz_param){ "alloc", 'i', &s->alloc, 0, 1 };
    p[3] = (sqz_param){ "windows", 'i', &s->windows, 1, 1 << 20 };
    p[4] = (sqz_param){ "bytes", 'd', &s->bytes, 0, 1e18 };
    p[5] = (sqz_param){ "bpw", 'd', &s->bpw, 0, 64 };
    return 6;
}

static sqz_status begin(void *state, sqz_quant_run *run) {
    gptq_state *s = state;
    if ((s->bytes > 0 || s->bpw > 0) && !s->alloc)
        return sqz_fail(run->ctx, SQZ_ERR_ARG, "method gptq: a budget (bytes, bpw) needs alloc=1");
    if (s->bytes > 0 && s->bpw > 0)
        return sqz_fail(run->ctx, SQZ_ERR_ARG, "method gptq: give bytes or bpw, not both");
    if (s->alloc) run->co.keep_types = 1; /* sqz_convert keeps the chosen types */
    return sqz_quant_check_preset_type(run);
}

/* alloc: each matrix's type for the mix's bytes, before any is quantized */
static sqz_status plan(void *state, sqz_quant_run *run) {
    gptq_state *s = state;
    if (!s->alloc) return SQZ_OK;
    const sqz_quantize_opts *o = run->o;
    sqz_preset ep;
    const int own_embd = o->embd_type && sqz_preset_find(o->embd_type, 1, &ep) == 0;
    sqz_alloc_opts ao = { .preset = &run->preset, .head_preset = own_embd ? &ep : &run->preset,
                          .pm = &run->pm, .damp = s->damp, .act_order = s->act_order,
                          .eval_windows = s->windows };
    const double ta = sqz_now();
    sqz_status st = SQZ_OK;
    if (s->bytes > 0 || s->bpw > 0) {
        /* what lies outside the matrices (the embedding, norms, metadata): from the file the
         * mix itself writes, converted to a scratch name beside the output */
        char probe[4096];
        if (snprintf(probe, sizeof probe, "%s.size-probe", run->out_path) >= (int)sizeof probe)
            return sqz_fail(run->ctx, SQZ_ERR_ARG, "%s: path too long", run->out_path);
        sqz_convert_opts co = run->co;
        co.keep_types = 0;
        sqz_convert_result cr;
        st = sqz_convert(run->ctx, run->model, probe, &co, &cr);
        unlink(probe);
        if (st) return st;
        ao.mix_file_bytes = cr.file_bytes;
        ao.file_budget = s->bytes > 0 ? (uint64_t)s->bytes : (uint64_t)(s->bpw * (double)cr.n_params / 8.0);
    }
    st = sqz_alloc_plan_new(run->ctx, run->model, run->calib, run->n_win, run->C, &ao, &s->plan);
    if (st) return st;
    run->r->alloc_seconds = sqz_now() - ta;
    run->r->alloc_budget = s->plan->budget;
    run->r->alloc_bytes = s->plan->bytes;
    run->r->alloc_kl_mix = s->plan->kl_mix;
    run->r->alloc_kl_chosen = s->plan->kl_chosen;
    return SQZ_OK;
}

static sqz_type matrix_type(void *state, sqz_quant_run *run, int l, int k, sqz_tensor_role role, int64_t cols) {
    const gptq_state *s = state;
    return s->plan ? s->plan->types[l * SQZ_MIX_N_MATS + k]
                   : sqz_preset_tensor_type(&run->preset, &run->pm, role, l, cols, NULL);
}

static sqz_status quantize(void *state, sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                           const sqz_quant_stats *st, const float *W, float *Q, int l, int k,
                           char *label, size_t len, int *q_kept) {
    const gptq_state *s = state;
    (void)l, (void)k, (void)label, (void)len, (void)q_kept;
    return sqz_quant_gptq_matrix(run, t, type, st, s->damp, s->act_order, W, Q);
}

/* The head's type is what sqz_convert would give it (alloc: the plan's), which then copies it
 * unchanged. With tied embeddings it is token_embd, so the lookups read the head's GPTQ result
 * too (llama.cpp gives the tied tensor the output's type for the same reason: the head is where
 * its error costs most). */
static int head(void *state, sqz_quant_run *run, sqz_tensor **head, sqz_type *type) {
    const gptq_state *s = state;
    const sqz_quantize_opts *o = run->o;
    const int tied = run->qm->cfg.tied_embeddings;
    sqz_tensor *h = tied ? &run->qm->tok_embd : &run->qm->output;
    sqz_preset ep;
    const sqz_preset *hp = &run->preset;
    if (tied && o->embd_type) {
        if (sqz_preset_find(o->embd_type, 1, &ep) != 0) return 0; /* sqz_convert reports it */
        hp = &ep;
    }
    const sqz_type t = s->plan ? s->plan->head
                               : sqz_preset_tensor_type(hp, &run->pm, tied ? SQZ_ROLE_TOKEN_EMBD : SQZ_ROLE_OUTPUT,
                                                        -1, h->cols, NULL);
    if (!sqz_gptq_supports(t) || h->type == t) return 0;
    *head = h;
    *type = t;
    return 1;
}

const sqz_quant_method sqz_quant_method_gptq = {
    .name = "gptq",
    .help = "GPTQ with each matrix's input Hessian, the head too; alloc=1: types by measured KL",
    .calib = 1,
    .sequential = 1,
    .create = create,
    .destroy = destroy,
    .params = params,
    .begin = begin,
    .plan = plan,
    .matrix_type = matrix_type,
    .quantize = quantize,
    .head = head,
};
