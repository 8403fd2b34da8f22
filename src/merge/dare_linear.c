/* dare_linear.c - DARE (Yu et al. 2024, arXiv 2311.03099) without sign consensus: each value of
 * each task vector kept with probability density and divided by density (rescale, on by
 * default), then summed with the weights as task arithmetic. Seeded: the same seed gives the
 * same model. mergekit's "dare_linear". */
#include "merge/gta.h"

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    return merge_gta(ctx, job, MERGE_SPARSE_RANDOM, 0, out);
}

const sqz_merge_method sqz_merge_dare_linear = {
    .name = "dare_linear",
    .help = "random drop to density, rescale 1/density, weighted sum; keys weight, density, lambda, normalize, rescale",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_LAMBDA) | SQZ_MP_BIT(SQZ_MP_NORMALIZE) | SQZ_MP_BIT(SQZ_MP_RESCALE) | SQZ_MP_BIT(SQZ_MP_INT8_MASK) | SQZ_MP_BIT(SQZ_MP_DENSITY),
    .required = SQZ_MP_BIT(SQZ_MP_WEIGHT),
    .defaults = { [SQZ_MP_DENSITY] = 1, [SQZ_MP_LAMBDA] = 1, [SQZ_MP_NORMALIZE] = 0, [SQZ_MP_RESCALE] = 1 },
    .merge = run,
};
