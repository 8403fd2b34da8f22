/* method_rtn.c - "rtn": round-to-nearest, sqz_convert alone (no calibration); type dq2 only as
 * fake quantization (rtn:fake=1: dequantized dq2 written as f32 GGUF, quant/dq2_fake.h). */
#include <stdlib.h>
#include <strings.h>

#include "quant/dq2_fake.h"
#include "quant/method.h"

typedef struct rtn_state {
    int fake;
} rtn_state;

static sqz_status create(sqz_ctx *ctx, void **state) {
    rtn_state *s = calloc(1, sizeof *s);
    if (!s) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    *state = s;
    return SQZ_OK;
}

static int params(void *state, sqz_param *p) {
    rtn_state *s = state;
    p[0] = (sqz_param){ "fake", 'i', &s->fake, 0, 1 };
    return 1;
}

static sqz_status run(void *state, sqz_ctx *ctx, const sqz_model *model, const char *out_path,
                      const sqz_quantize_opts *o, sqz_quantize_result *res) {
    const rtn_state *s = state;
    if (!strcasecmp(o->type, "dq2")) {
        if (!s->fake)
            return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                            "%s: rtn to dq2 is only written as fake quantization (rtn:fake=1); "
                            "--method decoupleq writes dq2 into sqz's container (sqzf)",
                            out_path);
        return sqz_dq2_fake_rtn(ctx, model, out_path, res);
    }
    sqz_convert_opts co = { .type = o->type, .pure = o->pure, .embd_type = o->embd_type, .card = o->card };
    return sqz_convert(ctx, model, out_path, &co, res ? &res->convert : NULL);
}

const sqz_quant_method sqz_quant_method_rtn = {
    .name = "rtn",
    .help = "round-to-nearest, no calibration (sqz convert); fake=1: dq2 as f32 GGUF",
    .calib = 0,
    .create = create,
    .destroy = free,
    .params = params,
    .run = run,
};
