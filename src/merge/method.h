/* method.h - a merge method: one row of the table in methods.c, one file each.
 *
 * The driver (merge.c) walks the output tensors one at a time. For each it dequantizes every
 * input's tensor to f32 (whatever the input's type: F16 / BF16 safetensors, any GGUF type),
 * resolves the parameters for that tensor (per-model values, layer gradients, name filters:
 * config.c), and calls the method's merge() with the slabs; the result is written, and the
 * inputs' pages are given back. A method knows nothing of files, names or layers but what the
 * job says.
 *
 * Dimensions: n = rows * cols elements of one tensor, row-major (a vector: rows = 1);
 * N = n_models inputs besides the base.
 */
#ifndef SQZ_MERGE_METHOD_H
#define SQZ_MERGE_METHOD_H

#include <stdint.h>

#include "core/ctx.h"
#include "formats/types.h"

struct merge_run;         /* driver.h */
struct sqz_merge_result;  /* sqz.h */

/* mergekit's parameter names, and sqz's k and mask_lambda (consensus). Per-model ones (weight,
 * density, gamma, epsilon, mask_lambda) come from the
 * model's `parameters`, else the global `parameters`, else the method's default; the others
 * from the global `parameters`. Every value may be a layer gradient or a list of name filters. */
typedef enum sqz_merge_param {
    SQZ_MP_WEIGHT,     /* per model */
    SQZ_MP_DENSITY,    /* per model: share of each task vector kept */
    SQZ_MP_GAMMA,      /* per model: breadcrumbs' share of the largest values dropped */
    SQZ_MP_EPSILON,    /* per model: della's spread of keep probabilities */
    SQZ_MP_LAMBDA,     /* scale of the merged task vector */
    SQZ_MP_T,          /* slerp's interpolation factor (0: base) */
    SQZ_MP_NORMALIZE,  /* divide by the sum of the weights */
    SQZ_MP_RESCALE,    /* divide kept values by their keep probability (DARE, DELLA) */
    SQZ_MP_INT8_MASK,  /* accepted for mergekit's configs; no effect (masks are bytes here) */
    SQZ_MP_FILTER_WISE,/* model_stock: one angle per row instead of per tensor */
    SQZ_MP_K,          /* consensus: tasks whose TALL masks must select a weight */
    SQZ_MP_MASK_LAMBDA,/* per model: consensus' TALL-mask threshold lambda_t */
    SQZ_MP_ALPHA,      /* opcm: share of the singular values' sum whose subspace is kept clear */
    SQZ_MP_BUDGET,     /* pleas: the merged FFN's width as a multiple of the models' (1 .. N) */
    SQZ_MP_DAMP,       /* pleas: least squares' pull towards the permuted average, x mean diag(X^T X) */
    SQZ_MP_USE_TIES,   /* tall_masks, consensus: tau_MTL by TIES instead of task arithmetic (tall.h) */
    SQZ_MP_REG,        /* otfusion: Sinkhorn's entropy weight as a multiple of the cost's mean */
    SQZ_MP_EXACT,      /* otfusion: 1: exact OT (linear assignment, a permutation merge) instead of Sinkhorn */
    SQZ_MP_COUNT
} sqz_merge_param;

#define SQZ_MP_BIT(p) (1u << (p))
#define SQZ_MP_PER_MODEL (SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_DENSITY) | \
                          SQZ_MP_BIT(SQZ_MP_GAMMA) | SQZ_MP_BIT(SQZ_MP_EPSILON) | \
                          SQZ_MP_BIT(SQZ_MP_MASK_LAMBDA))

/* The parameter's name in a config ("weight", ...); NULL past the last. */
const char *sqz_merge_param_name(int p);

/* One tensor's merge. */
typedef struct sqz_merge_job {
    const char *name;          /* the tensor's HF name (messages) */
    int64_t rows, cols;        /* n = rows * cols */
    const float *base;         /* [n]; NULL for a method that takes no base */
    float *const *x;           /* [N][n] the models' tensors; the method may overwrite them */
    int n_models;              /* N */
    const double (*mp)[SQZ_MP_COUNT]; /* [N] each model's resolved parameters for this tensor */
    const double *g;           /* [SQZ_MP_COUNT] the global ones (per-model slots unused) */
    uint64_t seed;             /* this tensor's seed (random methods); model i uses seed + i */
} sqz_merge_job;

typedef struct sqz_merge_method {
    const char *name;
    const char *help;
    int takes_base;            /* 1: base_model required (task vectors x - base); 0: none */
    int min_models, max_models; /* N, besides the base (max 0: no limit) */
    unsigned params;           /* SQZ_MP_BIT()s it reads; others in a config are refused */
    unsigned required;         /* ones without a default */
    double defaults[SQZ_MP_COUNT];
    /* out[n] = the merge; errors with a message naming job->name */
    sqz_status (*merge)(sqz_ctx *ctx, const sqz_merge_job *job, float *out);
    /* Optional: methods that also store per-task masks (tall_masks). bits[i] gets input i's
     * mask of the tensor, bit j of byte j / 8 (LSB first) for value j; (n + 7) / 8 bytes.
     * Called after merge() on the same job, whose slabs merge() may have changed: a method
     * with masks leaves them as they came. */
    sqz_status (*masks)(sqz_ctx *ctx, const sqz_merge_job *job, uint8_t *const *bits);
    /* Optional: checks one tensor's resolved parameters (the job without data) before any
     * work; NULL: the driver's range checks only. */
    sqz_status (*check)(sqz_ctx *ctx, const sqz_merge_job *job);
    /* Optional (methods with masks): task t's model rebuilt straight from the inputs, what
     * extracting it from the stored merge and mask gives; used to tune mask_lambda per task. */
    sqz_status (*extract)(sqz_ctx *ctx, const sqz_merge_job *job, int t, float *out);
    /* 1: a continual method (opcm): merge is NULL; the models are merged one at a time into a
     * running state by continual.c (sqz_merge_models over the config's list in order, or
     * sqz_merge_continual adding one model to a saved state). */
    int continual;
    /* Optional: a method that needs the whole model at once (pleas: activations layer by layer
     * through the merged model as it is built): merge is NULL and this writes the HF folder at
     * dir (absent or empty) in type from r's loaded, checked inputs (driver.h), r->opts holding
     * the calibration text; it fills res->n_params and max_tensor_elems. */
    sqz_status (*whole)(struct merge_run *r, const char *dir, sqz_type type, struct sqz_merge_result *res);
    int calib;                 /* 1: whole() needs calibration text (sqz_merge_opts.calib) */
} sqz_merge_method;

/* The table (methods.c): the method called name, or NULL; row i (NULL past the last). */
const sqz_merge_method *sqz_merge_method_find(const char *name);
const sqz_merge_method *sqz_merge_method_at(int i);

extern const sqz_merge_method sqz_merge_linear, sqz_merge_task_arithmetic, sqz_merge_ties,
    sqz_merge_dare_linear, sqz_merge_dare_ties, sqz_merge_breadcrumbs, sqz_merge_breadcrumbs_ties,
    sqz_merge_della, sqz_merge_della_linear, sqz_merge_slerp, sqz_merge_model_stock,
    sqz_merge_consensus, sqz_merge_tall_masks, sqz_merge_opcm, sqz_merge_pleas, sqz_merge_otfusion;

#endif
