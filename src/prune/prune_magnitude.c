/* prune_magnitude.c - "magnitude": remove the weights of smallest |W_ij|, the baseline of the
 * pruning papers. Unstructured: one comparison group per matrix (as the Wanda paper's magnitude
 * baseline, "per layer"); N:M: each group of m consecutive weights of a row. No calibration. */
#include <math.h>
#include <stdlib.h>

#include "prune/pruner.h"

static sqz_status prune(void *state, sqz_ctx *ctx, float *W, int64_t rows, int64_t cols, const double *H,
                        const sqz_prune_level *lv) {
    (void)state;
    (void)H;
    const int64_t n = rows * cols;
    float *score = malloc((size_t)n * sizeof *score);
    uint8_t *pruned = malloc((size_t)n);
    sqz_status st = SQZ_OK;
    if (!score || !pruned) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory pruning"); goto done; }
    for (int64_t i = 0; i < n; i++) score[i] = fabsf(W[i]);
    if (lv->n > 0) {
        for (int64_t r = 0; r < rows; r++) sqz_prune_select_nm(score + r * cols, cols, lv->n, lv->m, pruned + r * cols);
    } else if (sqz_prune_select_smallest(score, n, sqz_prune_n_zero(lv->density, n), pruned)) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory pruning");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        if (pruned[i]) W[i] = 0.0f;
done:
    free(score);
    free(pruned);
    return st;
}

const sqz_pruner sqz_pruner_magnitude = {
    .name = "magnitude",
    .help = "smallest |W| per matrix (N:M: per group of a row); no calibration",
    .calib = 0,
    .prune = prune,
};
