/* della.c - DELLA-Merging (Deep et al. 2024, arXiv 2406.11617): MAGPRUNE keeps each value of a
 * task vector's row with a probability rising linearly with its magnitude rank in the row,
 * from density - epsilon to density + epsilon, and divides kept values by that probability
 * (rescale); then TIES' elected-sign sum ("della", normalize on) or the plain weighted sum
 * ("della_linear"), scaled by lambda. Seeded. */
#include "merge/gta.h"

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    return merge_gta(ctx, job, MERGE_SPARSE_DELLA, 1, out);
}

static sqz_status run_linear(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    return merge_gta(ctx, job, MERGE_SPARSE_DELLA, 0, out);
}

/* MAGPRUNE's probabilities must stay in (0, 1) for every model that is pruned. */
static sqz_status check(sqz_ctx *ctx, const sqz_merge_job *job) {
    for (int m = 0; m < job->n_models; m++) {
        const double d = job->mp[m][SQZ_MP_DENSITY], e = job->mp[m][SQZ_MP_EPSILON];
        if (d > 0 && d < 1 && (d - e <= 0 || d + e >= 1))
            return sqz_fail(ctx, SQZ_ERR_ARG, "merge: %s: della needs 0 < density - epsilon and "
                            "density + epsilon < 1 (density %g, epsilon %g)", job->name, d, e);
    }
    return SQZ_OK;
}

const sqz_merge_method sqz_merge_della = {
    .name = "della",
    .help = "magnitude-ranked random drop (density +- epsilon), rescale, sign consensus; keys weight, density, epsilon, lambda",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_LAMBDA) | SQZ_MP_BIT(SQZ_MP_NORMALIZE) | SQZ_MP_BIT(SQZ_MP_RESCALE) | SQZ_MP_BIT(SQZ_MP_INT8_MASK) | SQZ_MP_BIT(SQZ_MP_DENSITY) | SQZ_MP_BIT(SQZ_MP_EPSILON),
    .required = SQZ_MP_BIT(SQZ_MP_WEIGHT),
    .defaults = { [SQZ_MP_DENSITY] = 1, [SQZ_MP_EPSILON] = 0.15, [SQZ_MP_LAMBDA] = 1, [SQZ_MP_NORMALIZE] = 1, [SQZ_MP_RESCALE] = 1 },
    .merge = run,
    .check = check,
};

const sqz_merge_method sqz_merge_della_linear = {
    .name = "della_linear",
    .help = "della without sign consensus",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_LAMBDA) | SQZ_MP_BIT(SQZ_MP_NORMALIZE) | SQZ_MP_BIT(SQZ_MP_RESCALE) | SQZ_MP_BIT(SQZ_MP_INT8_MASK) | SQZ_MP_BIT(SQZ_MP_DENSITY) | SQZ_MP_BIT(SQZ_MP_EPSILON),
    .required = SQZ_MP_BIT(SQZ_MP_WEIGHT),
    .defaults = { [SQZ_MP_DENSITY] = 1, [SQZ_MP_EPSILON] = 0.15, [SQZ_MP_LAMBDA] = 1, [SQZ_MP_NORMALIZE] = 0, [SQZ_MP_RESCALE] = 1 },
    .merge = run_linear,
    .check = check,
};
