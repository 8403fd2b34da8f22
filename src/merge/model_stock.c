/* model_stock.c - Model Stock (Jang et al. 2024, arXiv 2403.19522; mergekit's "model_stock"):
 * with N >= 2 fine-tunes x_i of a base b, cos = the mean over pairs i < j of the cosine between
 * the task vectors x_i - b and x_j - b, t = N cos / (1 + (N - 1) cos), and
 * out = t * mean_i(x_i) + (1 - t) * b; per tensor, or per row with filter_wise. Norm
 * products are clamped at 1e-6 and cosines to [-1, 1], as mergekit does. */
#include <math.h>

#include "merge/method.h"

static void stock_span(const sqz_merge_job *job, int64_t j0, int64_t len, float *out) {
    const int N = job->n_models;
    const float *b = job->base;
    double cos_sum = 0;
    int pairs = 0;
    for (int p = 0; p < N; p++)
        for (int q = p + 1; q < N; q++) {
            double np = 0, nq = 0, d = 0;
            for (int64_t j = j0; j < j0 + len; j++) {
                const double u = (double)job->x[p][j] - b[j], v = (double)job->x[q][j] - b[j];
                np += u * u, nq += v * v, d += u * v;
            }
            double prod = sqrt(np) * sqrt(nq);
            double c = d / (prod > 1e-6 ? prod : 1e-6);
            cos_sum += c > 1 ? 1 : c < -1 ? -1 : c;
            pairs++;
        }
    const double c = cos_sum / pairs, t = N * c / (1 + (N - 1) * c);
    for (int64_t j = j0; j < j0 + len; j++) {
        double avg = 0;
        for (int m = 0; m < N; m++) avg += job->x[m][j];
        avg /= N;
        out[j] = (float)(t * avg + (1 - t) * b[j]);
    }
}

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    if (job->g[SQZ_MP_FILTER_WISE] != 0)
        for (int64_t r = 0; r < job->rows; r++) stock_span(job, r * job->cols, job->cols, out);
    else
        stock_span(job, 0, job->rows * job->cols, out);
    (void)ctx;
    return SQZ_OK;
}

const sqz_merge_method sqz_merge_model_stock = {
    .name = "model_stock",
    .help = "interpolate base -> average by the task vectors' angle (N >= 2); key filter_wise",
    .takes_base = 1, .min_models = 2,
    .params = SQZ_MP_BIT(SQZ_MP_FILTER_WISE) | SQZ_MP_BIT(SQZ_MP_INT8_MASK),
    .merge = run,
};
