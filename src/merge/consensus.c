/* consensus.c - Consensus Merging (Wang et al. 2024, "Localizing Task Information for
 * Improved Model Merging and Compression", arXiv 2405.07813). With task vectors
 * tau_t = x_t - base weighted by w_t and their sum tau_MTL = sum_t w_t tau_t (task
 * arithmetic's merged vector), task t's TALL mask keeps the weights where that task dominates
 * the others: m_t = 1{ |w_t tau_t| >= mask_lambda_t * |tau_MTL - w_t tau_t| }. A weight
 * selected by fewer than k masks is "selfish" (k = 1: it matters to one task only) or
 * "catastrophic" (k = 0 ... none) and is removed from the merge:
 * out = base + lambda * 1{sum_t m_t >= k} * tau_MTL. The paper tunes mask_lambda_t in
 * [0.2, 0.6] per task and takes k = 2; lambda is task arithmetic's alpha. use_ties builds
 * tau_MTL by TIES, as the paper's option does (tall.h). */
#include "merge/tall.h"

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    const int64_t n = job->rows * job->cols;
    const int N = job->n_models;
    const double k = job->g[SQZ_MP_K], lambda = job->g[SQZ_MP_LAMBDA];
    tall_mtl t;
    sqz_status st = tall_mtl_init(ctx, job, &t);
    if (st) return st;
    for (int64_t j = 0; j < n; j++) {
        const double mtl = tall_mtl_at(&t, j);
        int votes = 0;
        for (int m = 0; m < N; m++) votes += tall_mask_at(job, m, j, mtl);
        out[j] = (float)((double)job->base[j] + (votes >= k ? lambda * mtl : 0.0));
    }
    tall_mtl_free(&t);
    return SQZ_OK;
}

const sqz_merge_method sqz_merge_consensus = {
    .name = "consensus",
    .help = "task arithmetic (or TIES: use_ties) on the weights k tasks' TALL masks select; "
            "keys weight, mask_lambda, k, lambda, use_ties, density, normalize",
    .takes_base = 1, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_MASK_LAMBDA) | SQZ_MP_BIT(SQZ_MP_K) |
              SQZ_MP_BIT(SQZ_MP_LAMBDA) | SQZ_MP_BIT(SQZ_MP_INT8_MASK) | SQZ_MP_BIT(SQZ_MP_USE_TIES) |
              SQZ_MP_BIT(SQZ_MP_DENSITY) | SQZ_MP_BIT(SQZ_MP_NORMALIZE),
    .defaults = { [SQZ_MP_WEIGHT] = 1, [SQZ_MP_MASK_LAMBDA] = 0.4, [SQZ_MP_K] = 2, [SQZ_MP_LAMBDA] = 1,
                  [SQZ_MP_DENSITY] = 1 },
    .merge = run,
};
