/* ties.c - TIES-Merging (Yadav et al. 2023, arXiv 2306.01708): each task vector trimmed to its
 * int(density * n) largest magnitudes (per tensor), each weight's sign elected by the weighted
 * sum of the trimmed values, the values that agree with it summed and divided by their models'
 * weights (normalize, on by default), scaled by lambda, added to the base. mergekit's "ties". */
#include "merge/gta.h"

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    return merge_gta(ctx, job, MERGE_SPARSE_MAGNITUDE, 1, out);
}

const sqz_merge_method sqz_merge_ties = {
    .name = "ties",
    .help = "trim to density, elect signs, mean of agreeing values; keys weight, density, lambda, normalize",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_LAMBDA) | SQZ_MP_BIT(SQZ_MP_NORMALIZE) | SQZ_MP_BIT(SQZ_MP_RESCALE) | SQZ_MP_BIT(SQZ_MP_INT8_MASK) | SQZ_MP_BIT(SQZ_MP_DENSITY),
    .required = SQZ_MP_BIT(SQZ_MP_WEIGHT),
    .defaults = { [SQZ_MP_DENSITY] = 1, [SQZ_MP_LAMBDA] = 1, [SQZ_MP_NORMALIZE] = 1, [SQZ_MP_RESCALE] = 0 },
    .merge = run,
};
