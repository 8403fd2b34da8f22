/* task_arithmetic.c - task arithmetic (Ilharco et al. 2023, arXiv 2212.04089): base +
 * lambda * sum_i w_i (x_i - base); mergekit's "task_arithmetic" (normalize off by default:
 * with normalize, the sum is divided by sum_i w_i). */
#include "merge/gta.h"

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    return merge_gta(ctx, job, MERGE_SPARSE_NONE, 0, out);
}

const sqz_merge_method sqz_merge_task_arithmetic = {
    .name = "task_arithmetic",
    .help = "base + lambda * sum w_i (x_i - base); keys weight, lambda, normalize",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_LAMBDA) | SQZ_MP_BIT(SQZ_MP_NORMALIZE) | SQZ_MP_BIT(SQZ_MP_RESCALE) | SQZ_MP_BIT(SQZ_MP_INT8_MASK),
    .required = SQZ_MP_BIT(SQZ_MP_WEIGHT),
    .defaults = { [SQZ_MP_DENSITY] = 1, [SQZ_MP_LAMBDA] = 1, [SQZ_MP_NORMALIZE] = 0, [SQZ_MP_RESCALE] = 0 },
    .merge = run,
};
