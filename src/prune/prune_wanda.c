/* prune_wanda.c - "wanda": Sun, Liu, Bair, Kolter, "A Simple and Effective Pruning Approach for
 * Large Language Models", ICLR 2024 (arXiv:2306.11695). The score of W_ij is |W_ij| * ||X_j||_2,
 * the weight times the L2 norm of input feature j over the calibration tokens (sqrt(H_jj)), and
 * the comparison group is each output row (the paper's per-output choice): every row keeps the
 * same number of weights. N:M: each group of m consecutive weights of a row. No weight update. */
#include <math.h>
#include <stdlib.h>

#include "prune/pruner.h"

static sqz_status prune(void *state, sqz_ctx *ctx, float *W, int64_t rows, int64_t cols, const double *H,
                        const sqz_prune_level *lv) {
    (void)state;
    float *norm = malloc((size_t)cols * sizeof *norm);
    float *score = malloc((size_t)cols * sizeof *score);
    uint8_t *pruned = malloc((size_t)cols);
    sqz_status st = SQZ_OK;
    if (!norm || !score || !pruned) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory pruning"); goto done; }
    for (int64_t j = 0; j < cols; j++) norm[j] = (float)sqrt(H[j * cols + j] > 0 ? H[j * cols + j] : 0);
    const int64_t n_zero = sqz_prune_n_zero(lv->density, cols);
    for (int64_t r = 0; r < rows && !st; r++) {
        float *w = W + r * cols;
        for (int64_t j = 0; j < cols; j++) score[j] = fabsf(w[j]) * norm[j];
        if (lv->n > 0) sqz_prune_select_nm(score, cols, lv->n, lv->m, pruned);
        else if (sqz_prune_select_smallest(score, cols, n_zero, pruned)) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory pruning");
            break;
        }
        for (int64_t j = 0; j < cols; j++)
            if (pruned[j]) w[j] = 0.0f;
    }
done:
    free(norm);
    free(score);
    free(pruned);
    return st;
}

const sqz_pruner sqz_pruner_wanda = {
    .name = "wanda",
    .help = "Wanda: smallest |W_ij| * ||X_j|| per output row; calibration, no update",
    .calib = 1,
    .prune = prune,
};
