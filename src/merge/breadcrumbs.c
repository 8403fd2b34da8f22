/* breadcrumbs.c - Model Breadcrumbs (Davari & Belilovsky 2024, arXiv 2312.06795): each task
 * vector loses its int(gamma * n) largest magnitudes (outliers) and its smallest ones, keeping
 * int(density * n) (fewer outliers dropped if both cannot hold); then the weighted sum of task
 * arithmetic ("breadcrumbs") or TIES' elected-sign sum ("breadcrumbs_ties"). */
#include "merge/gta.h"

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    return merge_gta(ctx, job, MERGE_SPARSE_OUTLIERS, 0, out);
}

static sqz_status run_ties(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    return merge_gta(ctx, job, MERGE_SPARSE_OUTLIERS, 1, out);
}

const sqz_merge_method sqz_merge_breadcrumbs = {
    .name = "breadcrumbs",
    .help = "drop outliers (gamma) and small values (to density), weighted sum; keys weight, density, gamma, lambda, normalize",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_LAMBDA) | SQZ_MP_BIT(SQZ_MP_NORMALIZE) | SQZ_MP_BIT(SQZ_MP_RESCALE) | SQZ_MP_BIT(SQZ_MP_INT8_MASK) | SQZ_MP_BIT(SQZ_MP_DENSITY) | SQZ_MP_BIT(SQZ_MP_GAMMA),
    .required = SQZ_MP_BIT(SQZ_MP_WEIGHT),
    .defaults = { [SQZ_MP_DENSITY] = 1, [SQZ_MP_GAMMA] = 0.01, [SQZ_MP_LAMBDA] = 1, [SQZ_MP_NORMALIZE] = 0 },
    .merge = run,
};

const sqz_merge_method sqz_merge_breadcrumbs_ties = {
    .name = "breadcrumbs_ties",
    .help = "breadcrumbs with TIES' sign consensus",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_LAMBDA) | SQZ_MP_BIT(SQZ_MP_NORMALIZE) | SQZ_MP_BIT(SQZ_MP_RESCALE) | SQZ_MP_BIT(SQZ_MP_INT8_MASK) | SQZ_MP_BIT(SQZ_MP_DENSITY) | SQZ_MP_BIT(SQZ_MP_GAMMA),
    .required = SQZ_MP_BIT(SQZ_MP_WEIGHT),
    .defaults = { [SQZ_MP_DENSITY] = 1, [SQZ_MP_GAMMA] = 0.01, [SQZ_MP_LAMBDA] = 1, [SQZ_MP_NORMALIZE] = 0 },
    .merge = run_ties,
};
