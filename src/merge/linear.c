/* linear.c - a weighted average of the models (Wortsman et al. 2022, "model soups"):
 * sum_i w_i x_i, divided by sum_i w_i when normalize (on by default); mergekit's "linear".
 * A model of weight exactly 0 is skipped, so weights (1, 0, 0) give model 1 bit for bit (not
 * -0 + 0 = +0, nor 0 * inf = nan). */
#include <math.h>

#include "merge/method.h"

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    const int64_t n = job->rows * job->cols;
    double wsum = 0;
    for (int m = 0; m < job->n_models; m++) wsum += job->mp[m][SQZ_MP_WEIGHT];
    const double div = job->g[SQZ_MP_NORMALIZE] != 0 && fabs(wsum) >= 1e-8 ? wsum : 1.0;
    for (int64_t j = 0; j < n; j++) {
        double s = 0;
        int any = 0;
        for (int m = 0; m < job->n_models; m++) {
            const double w = job->mp[m][SQZ_MP_WEIGHT];
            if (w == 0) continue;
            s = any ? s + w * job->x[m][j] : w * job->x[m][j];
            any = 1;
        }
        out[j] = (float)(s / div);
    }
    (void)ctx;
    return SQZ_OK;
}

const sqz_merge_method sqz_merge_linear = {
    .name = "linear",
    .help = "weighted average sum w_i x_i / sum w_i; keys weight, normalize",
    .takes_base = 0, .min_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_WEIGHT) | SQZ_MP_BIT(SQZ_MP_NORMALIZE) | SQZ_MP_BIT(SQZ_MP_INT8_MASK),
    .required = SQZ_MP_BIT(SQZ_MP_WEIGHT),
    .defaults = { [SQZ_MP_NORMALIZE] = 1 },
    .merge = run,
};
