/* prune_sparsegpt.c - "sparsegpt": Frantar, Alistarh, "SparseGPT: Massive Language Models Can
 * Be Accurately Pruned in One-Shot", ICML 2023 (arXiv:2301.00774), Algorithm 1.
 *
 * Optimal Brain Surgeon, column by column, from the damped Hessian H = X^T X that GPTQ uses:
 * removing weight w_i of a row and moving the others to make up for it changes the row by
 * -(w_i / [H^-1]_ii) [H^-1]_i,: ; done left to right, the inverse Hessian of the columns still
 * to come is the upper Cholesky factor U of H^-1 (H^-1 = U^T U, math/hessian.h): the update of
 * column i is err_i = w_i / U_ii times row i of U, and its saliency is w_i^2 / U_ii^2.
 *
 * Dimensions: W [rows x cols], U [cols x cols], Bs = `block` columns per lazy batch (128).
 * - Adaptive mask selection: at the start of each block of Bs columns (after every update from
 *   the columns before it), the block's rows x Bs weights of least w^2 / U_jj^2 are removed,
 *   floor((1 - density) * rows * Bs) of them (the paper's per-block choice: rows may keep
 *   different counts). N:M: at the first column of each group of m, per row, the m - n of least
 *   saliency among the group's current values.
 * - Lazy batch updates: within a block each row is updated over the block's columns only; the
 *   errors of the block's columns, Err [rows x Bs], reach the columns after it in one product
 *   W[:, i2:] -= Err U[i1:i2, i2:].
 * The pruned weights are exactly 0; the kept ones carry the updates. Rows are independent
 * within a block (one thread each); the result does not depend on the thread count.
 * With a quantized output type the driver runs the joint pass instead (prune_quant: sgptq.h),
 * which quantizes each column's kept weights in this same loop. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "math/hessian.h"
#include "prune/pruner.h"
#include "prune/sgptq.h"

typedef struct sgpt_state {
    double damp; /* percdamp: damp * mean(diag H) is added to diag H (paper: 0.01) */
    int block;   /* Bs */
} sgpt_state;

static sqz_status create(sqz_ctx *ctx, void **state) {
    sgpt_state *s = calloc(1, sizeof *s);
    if (!s) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    s->damp = 0.01;
    s->block = 128;
    *state = s;
    return SQZ_OK;
}

static int params(void *state, sqz_param *p) {
    sgpt_state *s = state;
    p[0] = (sqz_param){ "damp", 'd', &s->damp, 0, 10 };
    p[1] = (sqz_param){ "block", 'i', &s->block, 1, 1 << 16 };
    return 2;
}

static sqz_status prune(void *state, sqz_ctx *ctx, float *W, int64_t rows, int64_t cols, const double *H,
                        const sqz_prune_level *lv) {
    const sgpt_state *s = state;
    if (lv->n > 0 && lv->m > 64) /* sqz_prune_level_check's bound; the group's scores live on the stack */
        return sqz_fail(ctx, SQZ_ERR_ARG, "sparsegpt: N:M with M = %d > 64", lv->m);
    int64_t Bs = s->block;
    if (lv->n > 0) Bs = Bs < lv->m ? lv->m : Bs / lv->m * lv->m; /* N:M groups never straddle two blocks */
    if (Bs > cols) Bs = cols;
    const size_t cc = (size_t)cols * (size_t)cols;
    double *Hd = malloc(cc * sizeof *Hd), *Hp = malloc(cc * sizeof *Hp);
    float *U = malloc(cc * sizeof *U);
    int64_t *perm = malloc((size_t)cols * sizeof *perm), *tmp = malloc((size_t)cols * sizeof *tmp);
    uint8_t *dead = malloc((size_t)cols);
    float *Err = malloc((size_t)(rows * Bs) * sizeof *Err);
    float *score = malloc((size_t)(rows * Bs) * sizeof *score);
    uint8_t *mask = malloc((size_t)(rows * Bs));
    sqz_status st = SQZ_OK;
    if (!Hd || !Hp || !U || !perm || !tmp || !dead || !Err || !score || !mask) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory pruning a %lld x %lld matrix", (long long)rows,
                      (long long)cols);
        goto done;
    }
    memcpy(Hd, H, cc * sizeof *Hd);
    memset(dead, 0, (size_t)cols);
    /* as GPTQ: a never-activated input gets H_ii = 1 and its weights are removed outright */
    const double sum = sqz_hessian_fix_dead(Hd, cols, dead);
    for (int64_t j = 0; j < cols; j++)
        if (dead[j])
            for (int64_t r = 0; r < rows; r++) W[r * cols + j] = 0.0f;
    const int info = sqz_hessian_prepare(Hd, cols, s->damp * (sum / (double)cols), 0, perm, tmp, Hp, U);
    if (info) {
        st = sqz_fail(ctx, SQZ_ERR_ARG, "sparsegpt: H is not positive definite after damping (damp %g; LAPACK %d)",
                      s->damp, info);
        goto done;
    }
    const int nt = ctx ? sqz_ctx_threads(ctx) : 1;
    for (int64_t i1 = 0; i1 < cols; i1 += Bs) {
        const int64_t i2 = i1 + Bs < cols ? i1 + Bs : cols, cnt = i2 - i1;
        if (lv->n <= 0) { /* adaptive mask selection over the whole block */
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cnt; j++) {
                    const float w = W[r * cols + i1 + j], d = U[(size_t)(i1 + j) * cols + i1 + j];
                    score[r * cnt + j] = w * w / (d * d);
                }
            if (sqz_prune_select_smallest(score, rows * cnt, sqz_prune_n_zero(lv->density, rows * cnt), mask)) {
                st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory pruning");
                goto done;
            }
        }
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            float *w = W + r * cols, *err = Err + r * cnt, sc[64];
            uint8_t *mk = mask + r * cnt;
            for (int64_t i = 0; i < cnt; i++) {
                const int64_t c = i1 + i;
                const float *u = U + (size_t)c * cols; /* row c of U */
                if (lv->n > 0 && i % lv->m == 0) {
                    for (int j = 0; j < lv->m; j++) {
                        const float d = U[(size_t)(c + j) * cols + c + j];
                        sc[j] = w[c + j] * w[c + j] / (d * d);
                    }
                    sqz_prune_select_nm(sc, lv->m, lv->n, lv->m, mk + i);
                }
                if (!mk[i]) {
                    err[i] = 0.0f;
                    continue;
                }
                const float e = w[c] / u[c];
                err[i] = e;
                w[c] = 0.0f;
                for (int64_t j = c + 1; j < i2; j++) w[j] -= e * u[j];
            }
        }
        if (i2 < cols) /* the lazy batch: W[:, i2:] -= Err U[i1:i2, i2:] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(cols - i2), (int)cnt, -1.0f, Err,
                        (int)cnt, U + (size_t)i1 * cols + i2, (int)cols, 1.0f, W + i2, (int)cols);
    }
done:
    free(Hd);
    free(Hp);
    free(U);
    free(perm);
    free(tmp);
    free(dead);
    free(Err);
    free(score);
    free(mask);
    return st;
}

/* The joint pass (sgptq.h) with this pruner's damp and block. */
static sqz_status prune_quant(void *state, sqz_ctx *ctx, sqz_type type, float *W, int64_t rows, int64_t cols,
                              const double *H, const sqz_prune_level *lv, void *out, uint8_t *pruned) {
    const sgpt_state *s = state;
    return sqz_sgptq(ctx, type, W, rows, cols, H, lv, s->damp, s->block, out, W, pruned);
}

const sqz_pruner sqz_pruner_sparsegpt = {
    .name = "sparsegpt",
    .help = "SparseGPT: OBS column blocks with weight updates from the damped Hessian; damp=D (0.01), block=B (128)",
    .calib = 1,
    .create = create,
    .params = params,
    .prune = prune,
    .prune_quant = prune_quant,
};
