/* method_imatrix.c - "imatrix": llama.cpp's importance-weighted block search, the importances
 * being each input channel's mean square over the calibration text (diag(H) / n, as
 * llama-imatrix collects them), taken on the unquantized model's activations (not sequential).
 * Its matrix quantizer is shared: GPTQ falls back to it for types it lacks. */
#include <stdlib.h>

#include "formats/quant.h"
#include "quant/method.h"

sqz_status sqz_quant_imatrix_matrix(sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                                    const sqz_quant_stats *st, const float *W, float *Q) {
    const int64_t rows = t->rows, cols = t->cols;
    const size_t rs = sqz_type_row_size(type, cols);
    void *out = sqz_model_own(run->qm, malloc((size_t)rows * rs));
    float *imp = out ? malloc((size_t)cols * sizeof *imp) : NULL;
    if (!imp) return sqz_fail(run->ctx, SQZ_ERR_NOMEM, "out of memory quantizing %s", run->matrix);
    for (int64_t i = 0; i < cols; i++) imp[i] = (float)(st->H[i * cols + i] / (double)st->n);
    const size_t got = sqz_quantize_rows(type, W, out, rows, cols, imp);
    free(imp);
    if (got != (size_t)rows * rs)
        return sqz_fail(run->ctx, SQZ_ERR_UNSUPPORTED, "cannot quantize %s to %s", run->matrix,
                        sqz_type_name(type));
    const sqz_type_traits *tr = sqz_type_get(type);
    for (int64_t r = 0; r < rows; r++) tr->to_float((const char *)out + (size_t)r * rs, Q + r * cols, cols);
    t->type = type; /* t is the quantized model's own copy of the view */
    t->data = out;
    return SQZ_OK;
}

static sqz_status create(sqz_ctx *ctx, void **state) {
    (void)ctx;
    *state = NULL;
    return SQZ_OK;
}

static void destroy(void *state) { (void)state; }

static sqz_status begin(void *state, sqz_quant_run *run) {
    (void)state;
    return sqz_quant_check_preset_type(run);
}

static sqz_status quantize(void *state, sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                           const sqz_quant_stats *st, const float *W, float *Q, int l, int k,
                           char *label, size_t len, int *q_kept) {
    (void)state, (void)l, (void)k, (void)label, (void)len, (void)q_kept;
    return sqz_quant_imatrix_matrix(run, t, type, st, W, Q);
}

const sqz_quant_method sqz_quant_method_imatrix = {
    .name = "imatrix",
    .help = "llama.cpp's importance-weighted block search, importances from the calibration text",
    .calib = 1,
    .sequential = 0,
    .create = create,
    .destroy = destroy,
    .begin = begin,
    .quantize = quantize,
};
