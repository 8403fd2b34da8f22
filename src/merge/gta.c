/* gta.c - generalized task arithmetic; see gta.h. Dimensions: n = rows * cols values of one
 * tensor, N models. Task vectors are formed in place in the job's slabs (x_i -= base), so
 * memory is the slabs plus a selection scratch (5 bytes a value: |tau| and the mask) while a
 * magnitude-based sparsification runs (a linear-time selection, not a sort; DELLA sorts rows).
 * Sums are in double, in model order, so results do not depend on the thread count (there is
 * one thread per tensor). */
#include "merge/gta.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ranked {
    float a;    /* |v| */
    uint32_t i; /* index: 8 bytes a value while sorting (tensors of < 2^32 values) */
} ranked;

static int ranked_cmp(const void *p, const void *q) {
    const ranked *x = p, *y = q;
    if (x->a != y->a) return x->a < y->a ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int merge_ranks(const float *v, int64_t n, int64_t *rank) {
    if (n >= ((int64_t)1 << 32)) return -1;
    ranked *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    if (!r) return -1;
    for (int64_t j = 0; j < n; j++) r[j].a = fabsf(v[j]), r[j].i = (uint32_t)j;
    qsort(r, (size_t)n, sizeof *r, ranked_cmp);
    for (int64_t k = 0; k < n; k++) rank[r[k].i] = k;
    free(r);
    return 0;
}

/* The k-th smallest (0-based) of a[0..n), reordering a: Hoare's selection with a median-of-three
 * pivot, O(n) on average. */
static float select_kth(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        const float p = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) {
                const float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k]; /* between the two parts: equal to the pivot */
    }
    return a[k];
}

/* Sets keep[j] = value for the m values of highest rank (by |v|, equal magnitudes ranked by
 * index, the later one higher): those above the threshold, then equal ones from the end. */
static void mark_top(const float *v, int64_t n, int64_t m, uint8_t value, uint8_t *keep, float *scratch) {
    if (m <= 0) return;
    if (m > n) m = n;
    for (int64_t j = 0; j < n; j++) scratch[j] = fabsf(v[j]);
    const float thr = select_kth(scratch, n, n - m);
    int64_t need = m;
    for (int64_t j = 0; j < n; j++)
        if (fabsf(v[j]) > thr) keep[j] = value, need--;
    for (int64_t j = n - 1; j >= 0 && need > 0; j--)
        if (fabsf(v[j]) == thr) keep[j] = value, need--;
}

int merge_rank_keep(const float *v, int64_t n, int64_t lo, int64_t hi, uint8_t *keep) {
    float *scratch = malloc((size_t)(n > 0 ? n : 1) * sizeof *scratch);
    if (!scratch) return -1;
    if (lo < 0) lo = 0;
    if (hi > n) hi = n;
    for (int64_t j = 0; j < n; j++) keep[j] = 0;
    if (lo < hi) { /* ranks [lo, hi): the top n - lo, less the top n - hi */
        mark_top(v, n, n - lo, 1, keep, scratch);
        mark_top(v, n, n - hi, 0, keep, scratch);
    }
    free(scratch);
    return 0;
}

static sqz_status oom(sqz_ctx *ctx, const sqz_merge_job *job) {
    return sqz_fail(ctx, SQZ_ERR_NOMEM, "merge: out of memory on %s (or 2^32 values or more)", job->name);
}

/* Zeroes the values of v that keep does not keep. */
static void apply_keep(float *v, const uint8_t *keep, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        if (!keep[j]) v[j] = 0.0f;
}

/* Model m's task vector, sparsified in place. */
static sqz_status sparsify_one(sqz_ctx *ctx, const sqz_merge_job *job, int m, merge_sparsify how,
                               uint8_t *keep) {
    float *v = job->x[m];
    const int64_t rows = job->rows, cols = job->cols, n = rows * cols;
    const double density = job->mp[m][SQZ_MP_DENSITY];
    const int rescale = job->g[SQZ_MP_RESCALE] != 0;
    uint64_t rng = job->seed + (uint64_t)m;
    if (how == MERGE_SPARSE_NONE || density >= 1) return SQZ_OK;
    switch (how) {
    case MERGE_SPARSE_MAGNITUDE: {
        const int64_t k = (int64_t)(density * (double)n);
        if (merge_rank_keep(v, n, n - k, n, keep)) return oom(ctx, job);
        apply_keep(v, keep, n);
        break;
    }
    case MERGE_SPARSE_OUTLIERS: {
        const int64_t target = (int64_t)(density * (double)n);
        int64_t top = (int64_t)(job->mp[m][SQZ_MP_GAMMA] * (double)n), bot = n - target - top;
        if (bot < 0) top += bot, bot = 0; /* fewer outliers dropped to keep the density */
        if (merge_rank_keep(v, n, bot, n - top, keep)) return oom(ctx, job);
        apply_keep(v, keep, n);
        break;
    }
    case MERGE_SPARSE_RANDOM:
        for (int64_t j = 0; j < n; j++) {
            const int kept = merge_rng_uniform(&rng) < density;
            v[j] = !kept ? 0.0f : rescale ? (float)(v[j] / density) : v[j];
        }
        break;
    case MERGE_SPARSE_DELLA: {
        const double eps = job->mp[m][SQZ_MP_EPSILON];
        if (density <= 0) {
            memset(v, 0, (size_t)n * sizeof *v);
            break;
        }
        if (density - eps <= 0 || density + eps >= 1)
            return sqz_fail(ctx, SQZ_ERR_ARG, "merge: %s: della needs 0 < density - epsilon and "
                            "density + epsilon < 1 (density %g, epsilon %g)", job->name, density, eps);
        int64_t *rank = malloc((size_t)cols * sizeof *rank);
        if (!rank) return oom(ctx, job);
        for (int64_t r = 0; r < rows; r++) {
            float *row = v + r * cols;
            if (merge_ranks(row, cols, rank)) {
                free(rank);
                return oom(ctx, job);
            }
            for (int64_t j = 0; j < cols; j++) {
                const double rn = cols > 1 ? (double)rank[j] / (double)(cols - 1) : 0.5;
                const double p = density - eps + 2.0 * eps * rn;
                const int kept = merge_rng_uniform(&rng) < p;
                row[j] = !kept ? 0.0f : rescale ? (float)(row[j] / p) : row[j];
            }
        }
        free(rank);
        break;
    }
    case MERGE_SPARSE_NONE: break;
    }
    return SQZ_OK;
}

sqz_status merge_gta(sqz_ctx *ctx, const sqz_merge_job *job, merge_sparsify how, int consensus,
                     float *out) {
    const int64_t n = job->rows * job->cols;
    const int N = job->n_models;
    uint8_t *keep = how == MERGE_SPARSE_MAGNITUDE || how == MERGE_SPARSE_OUTLIERS
                        ? malloc((size_t)(n > 0 ? n : 1)) : NULL;
    if ((how == MERGE_SPARSE_MAGNITUDE || how == MERGE_SPARSE_OUTLIERS) && !keep) return oom(ctx, job);
    sqz_status st = SQZ_OK;
    for (int m = 0; m < N && !st; m++) {
        float *v = job->x[m];
        for (int64_t j = 0; j < n; j++) v[j] -= job->base[j];
        st = sparsify_one(ctx, job, m, how, keep);
    }
    free(keep);
    if (st) return st;
    const int normalize = job->g[SQZ_MP_NORMALIZE] != 0;
    const double lambda = job->g[SQZ_MP_LAMBDA];
    for (int64_t j = 0; j < n; j++) {
        double mixed = 0, div = 0;
        if (consensus) { /* TIES: the sign of the weighted sum is elected */
            double s = 0;
            for (int m = 0; m < N; m++) s += job->mp[m][SQZ_MP_WEIGHT] * job->x[m][j];
            const int sign = s >= 0 ? 1 : -1;
            for (int m = 0; m < N; m++) {
                const double w = job->mp[m][SQZ_MP_WEIGHT], d = w * job->x[m][j];
                if ((d > 0 && sign > 0) || (d < 0 && sign < 0)) mixed += d, div += w;
            }
            if (div == 0) div = 1;
        } else {
            for (int m = 0; m < N; m++) {
                const double w = job->mp[m][SQZ_MP_WEIGHT];
                mixed += w * job->x[m][j];
                div += w;
            }
            if (fabs(div) < 1e-8) div = 1;
        }
        if (normalize) mixed /= div;
        out[j] = (float)((double)job->base[j] + lambda * mixed);
    }
    return SQZ_OK;
}
