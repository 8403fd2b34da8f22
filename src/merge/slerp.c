/* slerp.c - spherical linear interpolation between the base (t = 0) and one model (t = 1),
 * over each tensor as one flat vector (Shoemake 1985; mergekit's "slerp"): with
 * cos(theta) = <b/|b|, x/|x|>, out = sin((1-t) theta)/sin(theta) b + sin(t theta)/sin(theta) x;
 * plain linear interpolation when the two are nearly colinear (|cos| > 0.9995), as mergekit. */
#include <math.h>

#include "merge/method.h"

#define SLERP_DOT_THRESHOLD 0.9995
#define SLERP_EPS 1e-8

static sqz_status run(sqz_ctx *ctx, const sqz_merge_job *job, float *out) {
    const int64_t n = job->rows * job->cols;
    const float *a = job->base, *b = job->x[0];
    const double t = job->g[SQZ_MP_T];
    double na = 0, nb = 0, dot = 0;
    for (int64_t j = 0; j < n; j++) {
        na += (double)a[j] * a[j];
        nb += (double)b[j] * b[j];
        dot += (double)a[j] * b[j];
    }
    na = sqrt(na), nb = sqrt(nb);
    /* mergekit normalizes a vector only when its norm exceeds eps */
    dot /= (na > SLERP_EPS ? na : 1.0) * (nb > SLERP_EPS ? nb : 1.0);
    double s0 = 1 - t, s1 = t;
    if (fabs(dot) <= SLERP_DOT_THRESHOLD) {
        const double th = acos(dot), sth = sin(th);
        s0 = sin(th - th * t) / sth;
        s1 = sin(th * t) / sth;
    }
    for (int64_t j = 0; j < n; j++) out[j] = (float)(s0 * a[j] + s1 * b[j]);
    (void)ctx;
    return SQZ_OK;
}

const sqz_merge_method sqz_merge_slerp = {
    .name = "slerp",
    .help = "spherical interpolation from the base (t=0) to one model (t=1); key t",
    .takes_base = 1, .min_models = 1, .max_models = 1,
    .params = SQZ_MP_BIT(SQZ_MP_T) | SQZ_MP_BIT(SQZ_MP_INT8_MASK),
    .required = SQZ_MP_BIT(SQZ_MP_T),
    .merge = run,
};
