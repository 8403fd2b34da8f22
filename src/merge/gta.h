/* gta.h - generalized task arithmetic (mergekit's GeneralizedTaskArithmeticMerge), the engine
 * of task_arithmetic, ties, dare_*, breadcrumbs* and della*: each model's task vector
 * tau_i = x_i - base is sparsified (or not), the weighted tau_i are summed (over all models,
 * or with a TIES sign consensus over those that agree with the elected sign), divided by the
 * sum of the weights that took part when normalize is set, scaled by lambda and added to the
 * base. Each method file is one row that names its sparsification and consensus. */
#ifndef SQZ_MERGE_GTA_H
#define SQZ_MERGE_GTA_H

#include "merge/method.h"

typedef enum merge_sparsify {
    MERGE_SPARSE_NONE,
    MERGE_SPARSE_MAGNITUDE, /* TIES: keep the int(density * n) largest |tau| of the tensor */
    MERGE_SPARSE_RANDOM,    /* DARE: keep each value with probability density */
    MERGE_SPARSE_OUTLIERS,  /* breadcrumbs: drop the int(gamma * n) largest and the smallest,
                               keeping int(density * n) */
    MERGE_SPARSE_DELLA,     /* DELLA's MAGPRUNE: keep probabilities from density - epsilon
                               (smallest |tau| of a row) to density + epsilon (largest) */
} merge_sparsify;

sqz_status merge_gta(sqz_ctx *ctx, const sqz_merge_job *job, merge_sparsify sparsify,
                     int consensus, float *out);

/* Keeps (keep[j] = 1) the values of v[0..n) whose rank by |v| ascending is in [lo, hi); equal
 * magnitudes rank by index (the later one higher). 0, or -1 when out of memory. Linear time. */
int merge_rank_keep(const float *v, int64_t n, int64_t lo, int64_t hi, uint8_t *keep);

/* Rank of each value of v[0..n) by |v| ascending (ties by index), 0..n-1. -1: out of memory
 * (or n >= 2^32). */
int merge_ranks(const float *v, int64_t n, int64_t *rank);

/* splitmix64: the stream of random numbers of seeded methods (a pure function of the seed). */
static inline uint64_t merge_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double merge_rng_uniform(uint64_t *s) {
    return (double)(merge_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
