/* tall.h - the merged task vector tau_MTL that TALL masks and Consensus merging (Wang et al.
 * 2024, arXiv 2405.07813) compare each task against, and the masks themselves. The paper builds
 * tau_MTL by task arithmetic (default) or, with its `use_ties` option, by TIES-merging; both are
 * here:
 * - task arithmetic: tau_MTL = sum_t w_t tau_t, tau_t = x_t - base;
 * - use_ties: each w_t tau_t trimmed to its int(density_t * n) largest magnitudes (density 1:
 *   nothing trimmed), each weight's sign elected by the trimmed values' sum, the agreeing values
 *   summed (the paper's ties_agg "sum"), or with normalize divided by the agreeing models'
 *   weights (its "mean", TIES' disjoint mean).
 * Task t's mask is m_t = 1{ |w_t tau_t| >= mask_lambda_t * |tau_MTL - w_t tau_t| } with the
 * untrimmed tau_t: where m_t = 1, tau_MTL is closer to task t's weight than the base is,
 * scaled by mask_lambda_t. The inputs' slabs are only read. */
#ifndef SQZ_MERGE_TALL_H
#define SQZ_MERGE_TALL_H

#include <math.h>

#include "merge/method.h"

typedef struct tall_mtl {
    const sqz_merge_job *job;
    int use_ties, normalize;
    uint8_t *keep;  /* [N][n] TIES' trimmed values (1: kept); NULL: nothing trimmed */
} tall_mtl;

/* Reads use_ties, normalize and density from the job; trims (one byte per value and model).
 * Errors (out of memory) name the tensor. */
sqz_status tall_mtl_init(sqz_ctx *ctx, const sqz_merge_job *job, tall_mtl *t);
void tall_mtl_free(tall_mtl *t);

/* tau_MTL at value j. */
double tall_mtl_at(const tall_mtl *t, int64_t j);

/* w_m tau_m at value j, untrimmed. */
static inline double tall_tau(const sqz_merge_job *job, int m, int64_t j) {
    return job->mp[m][SQZ_MP_WEIGHT] * ((double)job->x[m][j] - job->base[j]);
}

/* m_m at value j, given tau_MTL there. */
static inline int tall_mask_at(const sqz_merge_job *job, int m, int64_t j, double mtl) {
    const double t = tall_tau(job, m, j);
    return fabs(t) >= job->mp[m][SQZ_MP_MASK_LAMBDA] * fabs(mtl - t);
}

#endif
