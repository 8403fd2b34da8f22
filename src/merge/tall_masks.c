/* tall_masks.c - TALL masks (Wang et al. 2024, "Localizing Task Information for Improved Model
 * Merging and Compression", arXiv 2405.07813): the merged model is base + lambda * tau_MTL, with
 * tau_MTL task arithmetic's sum_t w_t tau_t or, with use_ties, TIES' merged vector (tall.h); each
 * task t also gets a binary mask of the weights where tau_MTL is closer to it than the base,
 * m_t = 1{ |w_t tau_t| >= mask_lambda_t * |tau_MTL - w_t tau_t| },
 * stored bit-packed beside the merged tensors (the driver writes them). Task t's model is
 * rebuilt from the base, the merged model and its mask alone (sqz_merge_extract):
 * base + m_t * (merged - base) / lambda. Storage: base + merged + one bit per weight and task
 * instead of one model per task. The paper tunes mask_lambda_t in [0.2, 0.6] per task. */
#include <string.h>

#include "merge/tall.h"

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    const int64_t n = job->rows * job->cols;
    tall_mtl t;
    sqz_status st = tall_mtl_init(ctx, job, &t);
    if (st) return st;
    for (int64_t j = 0; j < n; j++) out[j] = (float)((double)job->base[j] + job->g[SQZ_MP_LAMBDA] * tall_mtl_at(&t, j));
    tall_mtl_free(&t);
    return SQZ_OK;
}

static sqz_status masks(sqz_ctx *ctx, const sqz_merge_job *job, uint8_t *const *bits) {
    const int64_t n = job->rows * job->cols;
    tall_mtl t;
    sqz_status st = tall_mtl_init(ctx, job, &t);
    if (st) return st;
    for (int m = 0; m < job->n_models; m++) memset(bits[m], 0, (size_t)(n + 7) / 8);
    for (int64_t j = 0; j < n; j++) {
        const double mtl = tall_mtl_at(&t, j);
        for (int m = 0; m < job->n_models; m++)
            if (tall_mask_at(job, m, j, mtl)) bits[m][j >> 3] |= (uint8_t)(1u << (j & 7));
    }
    tall_mtl_free(&t);
    return SQZ_OK;
}

/* Task t's extraction from the inputs: base + m_t * tau_MTL (the paper's theta_t). */
static sqz_status extract(sqz_ctx *ctx, const sqz_merge_job *job, int task, float *out) {
    const int64_t n = job->rows * job->cols;
    tall_mtl t;
    sqz_status st = tall_mtl_init(ctx, job, &t);
    if (st) return st;
    for (int64_t j = 0; j < n; j++) {
        const double mtl = tall_mtl_at(&t, j);
        out[j] = tall_mask_at(job, task, j, mtl) ? (float)((double)job->base[j] + mtl) : job->base[j];
    }
    tall_mtl_free(&t);
    return SQZ_OK;
}

const sqz_merge_method sqz_merge_tall_masks = {
    .name = "tall_masks",
    .help = "task arithmetic (or TIES: use_ties) + one bit-packed mask per task to rebuild it (--extract); "
            "keys weight, mask_lambda, lambda, use_ties, density, normalize",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_MASK_LAMBDA) | SQZ_MP_BIT(SQZ_MP_LAMBDA) |
              SQZ_MP_BIT(SQZ_MP_INT8_MASK) | SQZ_MP_BIT(SQZ_MP_USE_TIES) | SQZ_MP_BIT(SQZ_MP_DENSITY) |
              SQZ_MP_BIT(SQZ_MP_NORMALIZE),
    .defaults = { [SQZ_MP_WEIGHT] = 1, [SQZ_MP_MASK_LAMBDA] = 0.4, [SQZ_MP_LAMBDA] = 1, [SQZ_MP_DENSITY] = 1 },
    .merge = run,
    .masks = masks,
    .extract = extract,
};
