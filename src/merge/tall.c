/* tall.c - tau_MTL for TALL masks and Consensus merging: task arithmetic's or TIES' (tall.h). */
#include <stdlib.h>

#include "merge/gta.h"
#include "merge/tall.h"

sqz_status tall_mtl_init(sqz_ctx *ctx, const sqz_merge_job *job, tall_mtl *t) {
    const int64_t n = job->rows * job->cols;
    const int N = job->n_models;
    *t = (tall_mtl){ .job = job, .use_ties = job->g[SQZ_MP_USE_TIES] != 0,
                     .normalize = job->g[SQZ_MP_NORMALIZE] != 0 };
    int trim = 0;
    for (int m = 0; m < N; m++) trim |= t->use_ties && job->mp[m][SQZ_MP_DENSITY] < 1;
    if (!trim) return SQZ_OK;
    float *tau = malloc((size_t)(n > 0 ? n : 1) * sizeof *tau);
    t->keep = malloc((size_t)N * (size_t)(n > 0 ? n : 1));
    sqz_status st = tau && t->keep ? SQZ_OK : SQZ_ERR_NOMEM;
    for (int m = 0; m < N && !st; m++) {
        const int64_t k = (int64_t)(job->mp[m][SQZ_MP_DENSITY] * (double)n);
        for (int64_t j = 0; j < n; j++) tau[j] = job->x[m][j] - job->base[j];
        if (merge_rank_keep(tau, n, n - k, n, t->keep + (size_t)m * (size_t)n)) st = SQZ_ERR_NOMEM;
    }
    free(tau);
    if (st) {
        tall_mtl_free(t);
        return sqz_fail(ctx, st, "%s: out of memory trimming %d task vectors of %lld values", job->name, N,
                        (long long)n);
    }
    return SQZ_OK;
}

void tall_mtl_free(tall_mtl *t) {
    free(t->keep);
    t->keep = NULL;
}

double tall_mtl_at(const tall_mtl *t, int64_t j) {
    const sqz_merge_job *job = t->job;
    const int N = job->n_models;
    const size_t n = (size_t)(job->rows * job->cols);
    double sum = 0, div = 0;
    if (!t->use_ties) {
        for (int m = 0; m < N; m++) sum += tall_tau(job, m, j), div += job->mp[m][SQZ_MP_WEIGHT];
        if (fabs(div) < 1e-8) div = 1;
    } else {
        double s = 0;
        for (int m = 0; m < N; m++)
            if (!t->keep || t->keep[(size_t)m * n + (size_t)j]) s += tall_tau(job, m, j);
        const int sign = s >= 0 ? 1 : -1;
        for (int m = 0; m < N; m++) {
            if (t->keep && !t->keep[(size_t)m * n + (size_t)j]) continue;
            const double d = tall_tau(job, m, j);
            if ((d > 0 && sign > 0) || (d < 0 && sign < 0)) sum += d, div += job->mp[m][SQZ_MP_WEIGHT];
        }
        if (div == 0) div = 1;
    }
    return t->normalize ? sum / div : sum;
}
