/* method_decoupleq.c - "decoupleq" (quant/decoupleq.h): every block matrix to sqz's 2-bit dq2
 * type by decoupleQ with its input's Hessian, in GPTQ's sequential order; the q2_k mix's
 * choices outside the blocks. dq2 goes to sqz's container (sqzf), or with fake=1 the
 * dequantized weights go to an f32 GGUF (quant/dq2_fake.h), which GGUF readers can load. */
#include <stdlib.h>
#include <strings.h>

#include "quant/decoupleq.h"
#include "quant/dq2_fake.h"
#include "quant/method.h"

typedef struct dq_state {
    double damp; /* percdamp; 0: decoupleQ's own */
    int fake;    /* dequantized, as f32 GGUF */
} dq_state;

static sqz_status create(sqz_ctx *ctx, void **state) {
    dq_state *s = calloc(1, sizeof *s);
    if (!s) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    *state = s;
    return SQZ_OK;
}

static int params(void *state, sqz_param *p) {
    dq_state *s = state;
    p[0] = (sqz_param){ "damp", 'd', &s->damp, 0, 1e6 };
    p[1] = (sqz_param){ "fake", 'i', &s->fake, 0, 1 };
    return 2;
}

static sqz_status begin(void *state, sqz_quant_run *run) {
    (void)state;
    if (strcasecmp(run->o->type, "dq2"))
        return sqz_fail(run->ctx, SQZ_ERR_ARG, "%s: decoupleq writes type dq2", run->out_path);
    run->preset_name = "q2_k"; /* token_embd / output: the q2_k mix's choices */
    return SQZ_OK;
}

static sqz_type matrix_type(void *state, sqz_quant_run *run, int l, int k, sqz_tensor_role role, int64_t cols) {
    (void)state, (void)run, (void)l, (void)k, (void)role, (void)cols;
    return SQZ_TYPE_DQ2;
}

static sqz_status quantize(void *state, sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                           const sqz_quant_stats *st, const float *W, float *Q, int l, int k,
                           char *label, size_t len, int *q_kept) {
    const dq_state *s = state;
    (void)l, (void)k, (void)label, (void)len;
    void *out = sqz_model_own(run->qm, malloc((size_t)t->rows * sqz_type_row_size(type, t->cols)));
    if (!out) return sqz_fail(run->ctx, SQZ_ERR_NOMEM, "out of memory quantizing %s", run->matrix);
    sqz_dq_opts d = sqz_dq_default_opts();
    if (s->damp > 0) d.percdamp = s->damp;
    d.threads = run->ctx->n_threads;
    sqz_status e = sqz_decoupleq_dq2(run->ctx, W, t->rows, t->cols, st->H, &d, out, Q, NULL);
    if (e) return e;
    if (s->fake) { /* GGUF cannot hold dq2: keep Q as f32 */
        t->type = SQZ_TYPE_F32;
        t->data = sqz_model_own(run->qm, Q);
        *q_kept = 1;
        return SQZ_OK;
    }
    t->type = type;
    t->data = out;
    return SQZ_OK;
}

/* dq2 matrices go into sqzf as they are (sqz_convert keeps sqz-only types, the rest as q2_k);
 * fake=1 writes their dequantized weights as f32 GGUF instead. */
static sqz_status write(void *state, sqz_quant_run *run, sqz_convert_result *res) {
    const dq_state *s = state;
    if (s->fake) return sqz_dq2_fake_convert(run->ctx, run->qm, run->out_path, res);
    run->co.type = "q2_k";
    return sqz_convert(run->ctx, run->qm, run->out_path, &run->co, res);
}

const sqz_quant_method sqz_quant_method_decoupleq = {
    .name = "decoupleq",
    .help = "2-bit dq2 by decoupleQ with the input Hessians, into sqzf (fake=1: f32 GGUF)",
    .calib = 1,
    .sequential = 1,
    .default_type = "dq2",
    .create = create,
    .destroy = free,
    .params = params,
    .begin = begin,
    .matrix_type = matrix_type,
    .quantize = quantize,
    .write = write,
};
