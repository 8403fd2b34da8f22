/* method.h - a quantization method as one struct of hooks that calibrate.c's driver calls, so
 * that the layer loop (statistics, quantization, the quantized layer's outputs as the next
 * layer's input) is written once and the methods differ only where they differ.
 *
 * How to add a quantization method:
 *  1. Write src/quant/method_NAME.c (the file comment says what it computes and why), with a
 *     state struct holding its parameters and plans, and export one
 *     `const sqz_quant_method sqz_quant_method_NAME = { .name = "NAME", .help = "...", ... }`.
 *  2. create() allocates the state with the defaults; params() points a sqz_param table
 *     (core/params.h) at the state's fields: the spec "NAME:key=value,..." is parsed into them
 *     by methods.c with the one shared parser, so keys, ranges and errors come for free.
 *  3. Fill in only the hooks you need (NULL = the driver's default, see each one below):
 *     - a method without calibration sets .calib = 0 and .run (the whole job, e.g. rtn);
 *     - begin() validates the type (sqz_quant_check_preset_type() for sqz_convert's types) and
 *       may set run->co.type / run->preset_name; plan() computes what needs the whole model
 *       (rankings, type searches, rotations of the ends) after the tokens are checked;
 *     - matrix_type() picks each block matrix's type (default: the preset's), quantize() turns
 *       one matrix W into bytes (sqz_quant_imatrix_matrix / sqz_quant_gptq_matrix are there to
 *       call) and writes its dequantized Q for the error report;
 *     - layer_begin / capture / window_end / layer_end change what the statistics see (rsq);
 *       head() asks for the output projection to be quantized with its Hessian (gptq); write()
 *       writes the file (default: sqz_convert with run->co).
 *  4. Add `extern` and one row to src/quant/methods.c's table; document the keys in
 *     include/sqz.h (sqz_quantize_opts.method) and add a test to tests/test_quantize.c.
 * The driver must not learn the method's name: anything it needs is a hook or a field here. */
#ifndef SQZ_QUANT_METHOD_H
#define SQZ_QUANT_METHOD_H

#include "core/params.h"
#include "formats/presets.h"
#include "model/model.h"

/* The calibration statistics of one input site: H = sum x^T x (f64, both triangles filled once
 * the layer's pass is through) over n tokens. */
typedef struct sqz_quant_stats {
    int dim;
    double *H;  /* [dim][dim] */
    float *tmp; /* [dim][dim] scratch of sqz_rsq_hessian_add */
    size_t n;
} sqz_quant_stats;

/* What the driver shares with the hooks of one sqz_quantize call. */
typedef struct sqz_quant_run {
    sqz_ctx *ctx;
    const sqz_model *model;       /* the original */
    sqz_model *qm;                /* the quantized model being built (owns its buffers) */
    const sqz_quantize_opts *o;
    const char *out_path;
    sqz_convert_opts co;          /* what write() gives sqz_convert (begin may change type) */
    const char *preset_name;      /* the mix outside the blocks (NULL: co.type) */
    sqz_preset preset;            /* that mix, found after begin() */
    sqz_preset_model pm;
    const int32_t *calib;         /* n_win windows of C tokens, inside the vocabulary */
    size_t n_win;
    int C;
    sqz_quant_stats *site;        /* [SQZ_N_SITES] the current layer's statistics */
    const char *matrix;           /* the GGUF name of the matrix being quantized (messages) */
    sqz_quantize_result *r;       /* plan() may fill the alloc_* fields */
} sqz_quant_run;

typedef struct sqz_quant_method {
    const char *name;
    const char *help;          /* one line */
    int calib;                 /* needs calibration data */
    int sequential;            /* the next layer reads this layer's quantized outputs (GPTQ's
                                * order); else the unquantized ones (llama-imatrix's) */
    const char *default_type;  /* the type when none is given (NULL: one is required) */

    sqz_status (*create)(sqz_ctx *ctx, void **state);
    void (*destroy)(void *state);
    /* p[0..n): the parameters, pointing into state; returns n (at most 8). */
    int (*params)(void *state, sqz_param *p);

    /* calib = 0: the whole job (no statistics, no layer loop). */
    sqz_status (*run)(void *state, sqz_ctx *ctx, const sqz_model *model, const char *out_path,
                      const sqz_quantize_opts *o, sqz_quantize_result *res);

    /* Checks the type (run->o->type) and parameters before anything is computed. */
    sqz_status (*begin)(void *state, sqz_quant_run *run);
    /* After the calibration tokens are checked, before the first layer. */
    sqz_status (*plan)(void *state, sqz_quant_run *run);
    /* Layer l's turn: *stats_w are the weights the statistics come from (on entry the
     * original's); the hook may swap qm->layers[l] and point *stats_w at it. */
    sqz_status (*layer_begin)(void *state, sqz_quant_run *run, int l, const sqz_layer_weights **stats_w);
    /* Replaces the default accumulation (H += x^T x at the four sites; q/k ignored): rows
     * row0..row0+T-1 of the current window at site (SQZ_SITE_*, including the post-RoPE q/k). */
    void (*capture)(void *state, sqz_quant_run *run, int site, const float *x, int T, int dim, int row0);
    /* A window of C tokens is through the layer's statistics pass. */
    sqz_status (*window_end)(void *state, sqz_quant_run *run);
    /* Block matrix k (0..6: q, k, v, o, gate, up, down) of layer l (NULL: the preset's type). */
    sqz_type (*matrix_type)(void *state, sqz_quant_run *run, int l, int k, sqz_tensor_role role, int64_t cols);
    /* t (rows x cols, the quantized model's own view) to type from W (its f32 rows) and st:
     * sets t's type and data (owned by run->qm) and writes the dequantized matrix into Q.
     * l, k: as matrix_type (-1, -1 for the head). label (len bytes) holds the type's name for
     * the report and may be rewritten. *q_kept = 1 when t now points at Q (the driver must not
     * free it). */
    sqz_status (*quantize)(void *state, sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                           const sqz_quant_stats *st, const float *W, float *Q, int l, int k,
                           char *label, size_t len, int *q_kept);
    /* After layer l's matrices are quantized. */
    sqz_status (*layer_end)(void *state, sqz_quant_run *run, int l);
    /* 1: quantize the output projection *head to *type with the Hessian of the final norm of
     * the last layer's outputs (NULL or 0: sqz_convert's round-to-nearest). */
    int (*head)(void *state, sqz_quant_run *run, sqz_tensor **head, sqz_type *type);
    /* Writes run->qm to run->out_path (NULL: sqz_convert with run->co). */
    sqz_status (*write)(void *state, sqz_quant_run *run, sqz_convert_result *res);
} sqz_quant_method;

/* The table (methods.c), NULL-terminated. */
const sqz_quant_method *const *sqz_quant_methods(void);

/* spec "NAME[:key=value,...]": the method and a state holding its parsed parameters (destroy
 * with method->destroy). */
sqz_status sqz_quant_method_open(sqz_ctx *ctx, const char *spec, const sqz_quant_method **method,
                                 void **state);

/* The shared pieces the methods' hooks call. */
/* Fails unless run->o->type is one of sqz_convert's mixes (dq2 is named: decoupleq's). */
sqz_status sqz_quant_check_preset_type(sqz_quant_run *run);
/* llama.cpp's importance-weighted block search, importances diag(H) / n. */
sqz_status sqz_quant_imatrix_matrix(sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                                    const sqz_quant_stats *st, const float *W, float *Q);
/* GPTQ with H (damp <= 0: GPTQ's own percdamp); types GPTQ lacks go to the search above. */
sqz_status sqz_quant_gptq_matrix(sqz_quant_run *run, sqz_tensor *t, sqz_type type,
                                 const sqz_quant_stats *st, double damp, int act_order,
                                 const float *W, float *Q);

#endif
