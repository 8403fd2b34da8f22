/* sgptq.c - SparseGPT's pruning and GPTQ's quantization in one column loop (sgptq.h).
 *
 * Dimensions: rows x cols (W), QK columns per block of the type, B columns per batch,
 * R = rows per chunk (SQZ_GPTQ_CHUNK_ROWS, the parallel unit, as in gptq.c).
 * Per batch [i1, i2): (unstructured) the batch's mask over all rows; then each chunk of rows
 * runs the batch block by block - N:M masks of the groups starting in the block, the block's
 * scales, the columns (quantize, error, update the rest of the block), the block's errors onto
 * the rest of the batch - and ends with its rows' lazy update W[:, i2:] -= E U[i1:i2, i2:].
 * Each chunk's float operations are gptq.c's gptq_rows' (plain f32, no FMA contraction), so
 * that density 1 reproduces sqz_gptq_quantize byte for byte. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "prune/sgptq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "math/hessian.h"
#include "quant/gptq.h"

int sqz_sgptq_supports(sqz_type t) {
    switch (t) {
    case SQZ_TYPE_Q4_0: case SQZ_TYPE_Q8_0: case SQZ_TYPE_Q2_K: case SQZ_TYPE_Q3_K:
    case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q5_K: case SQZ_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

typedef struct plan {
    sqz_type type;
    int64_t rows, cols;
    int qk, B;
    size_t ts, row_size;
    const sqz_prune_level *lv;
    const float *U, *imp; /* U [cols x cols] f32; imp [cols] = 1 / U_jj^2 (double-computed) */
    float *wc;            /* [rows x cols] the working weights */
    uint8_t *mask;        /* [rows x cols] 1 = removed */
    float *err;           /* [rows x B] the batch's errors */
    uint8_t *out;
} plan;

/* One chunk of rows [r0, r0 + R) through batch [i1, i2). Returns 0, or -1 without memory. */
static int chunk_batch(const plan *p, int64_t r0, int64_t R, int64_t i1, int64_t i2) {
    const int64_t cols = p->cols;
    const int qk = p->qk, B = p->B;
    const sqz_prune_level *lv = p->lv;
    float *x0 = malloc((size_t)(R * qk) * sizeof *x0), *imp = malloc((size_t)qk * sizeof *imp);
    float *wp = i2 < cols ? sqz_gptq_gemm_scratch(i2 - i1) : NULL;
    if (!x0 || !imp) {
        free(x0), free(imp), free(wp);
        return -1;
    }
    float *err = p->err + r0 * B;
    for (int64_t u0 = i1; u0 < i2; u0 += qk) {
        const int64_t u1 = u0 + qk;
        for (int64_t r = 0; r < R; r++) {
            float *wr = p->wc + (r0 + r) * cols;
            uint8_t *mk = p->mask + (r0 + r) * cols;
            if (lv->n > 0) /* N:M: the block's groups, provisionally, for the scales (each group's own
                            * first column chooses again from its values then) */
                for (int64_t g = (u0 + lv->m - 1) / lv->m * lv->m; g < u1; g += lv->m) {
                    float sc[64];
                    for (int j = 0; j < lv->m; j++) {
                        const float d = p->U[(g + j) * cols + g + j];
                        sc[j] = wr[g + j] * wr[g + j] / (d * d);
                    }
                    sqz_prune_select_nm(sc, lv->m, lv->n, lv->m, mk + g);
                }
            /* the block's scales as GPTQ fits them (from all updates so far), the removed weights
             * as the 0 they should be, with the same importance: where 0 is not a level (a
             * type with a min) the fit pays for the level they get */
            for (int j = 0; j < qk; j++) {
                x0[r * qk + j] = mk[u0 + j] ? 0.0f : wr[u0 + j];
                imp[j] = p->imp[u0 + j];
            }
            sqz_gptq_block_init(p->type, x0 + r * qk, imp, p->out + (r0 + r) * p->row_size + (u0 / qk) * p->ts);
        }
        for (int64_t i = u0; i < u1; i++) {
            const int jj = (int)(i - u0);
            const float *u = p->U + i * cols;
            const float uii = u[i];
            for (int64_t r = 0; r < R; r++) {
                float *wr = p->wc + (r0 + r) * cols;
                if (lv->n > 0 && i % lv->m == 0 && i != u0) { /* the group's mask, SparseGPT's timing */
                    float sc[64];
                    for (int j = 0; j < lv->m; j++) {
                        const float d = p->U[(i + j) * cols + i + j];
                        sc[j] = wr[i + j] * wr[i + j] / (d * d);
                    }
                    sqz_prune_select_nm(sc, lv->m, lv->n, lv->m, p->mask + (r0 + r) * cols + i);
                }
                const float w = wr[i];
                void *blk = p->out + (r0 + r) * p->row_size + (i / qk) * p->ts;
                const float q = p->mask[(r0 + r) * cols + i] ? sqz_gptq_block_set(p->type, blk, jj, 0.0f)
                                                             : sqz_gptq_block_quant(p->type, blk, jj, w, x0[r * qk + jj]);
                const float e = (w - q) / uii;
                err[r * B + (i - i1)] = e;
                sqz_axpy(wr + i + 1, -e, u + i + 1, u1 - i - 1); /* w_j -= e u_j */
            }
        }
        if (u1 < i2) /* the block's errors onto the rest of the batch */
            for (int64_t r = 0; r < R; r++) {
                float *wr = p->wc + (r0 + r) * cols;
                for (int64_t i = u0; i < u1; i++) sqz_axpy(wr + u1, -err[r * B + (i - i1)], p->U + i * cols + u1, i2 - u1);
            }
    }
    if (i2 < cols) { /* W[:, i2:] -= E U[i1:i2, i2:] (E negated in place, as gptq.c) */
        for (int64_t k = 0; k < R * B; k++) err[k] = -err[k];
        sqz_gptq_gemm_rows(R, cols - i2, i2 - i1, err, B, p->U + i1 * cols + i2, cols, p->wc + r0 * cols + i2, cols, 1,
                           wp);
    }
    free(x0), free(imp), free(wp);
    return 0;
}

sqz_status sqz_sgptq(sqz_ctx *ctx, sqz_type type, const float *W, int64_t rows, int64_t cols, const double *H,
                     const sqz_prune_level *lv, double damp, int block, void *out, float *deq, uint8_t *pruned) {
    if (!sqz_sgptq_supports(type))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "sparsegpt+gptq: type %s is not supported (q4_0, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k)",
                        sqz_type_name(type));
    if (!W || !H || !out || !lv) return sqz_fail(ctx, SQZ_ERR_ARG, "sparsegpt+gptq: W, H, out and the level are required");
    const sqz_type_traits *tr = sqz_type_get(type);
    const int qk = tr->block_size;
    if (rows < 1 || cols < 1 || cols % qk)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "sparsegpt+gptq: %lld x %lld matrix: cols must be a positive multiple of %s's block size %d",
                        (long long)rows, (long long)cols, tr->name, qk);
    if (cols > 46340) return sqz_fail(ctx, SQZ_ERR_ARG, "sparsegpt+gptq: %lld columns is too many", (long long)cols);
    sqz_status st = sqz_prune_level_check(ctx, lv, cols, "sparsegpt+gptq");
    if (st) return st;
    if (lv->n > 0 && qk % lv->m && lv->m % qk)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "sparsegpt+gptq: N:M %d:%d with %s: M and the type's block of %d columns must divide one "
                        "another (a group's mask is chosen before its block's scales)",
                        lv->n, lv->m, tr->name, qk);
    if (!(damp >= 0 && isfinite(damp))) return sqz_fail(ctx, SQZ_ERR_ARG, "sparsegpt+gptq: damp %g must be >= 0", damp);
    for (int64_t k = 0; k < rows * cols; k++)
        if (!isfinite(W[k]))
            return sqz_fail(ctx, SQZ_ERR_ARG, "sparsegpt+gptq: W has a non-finite entry at (%lld, %lld)",
                            (long long)(k / cols), (long long)(k % cols));
    const int L = lv->n > 0 && lv->m > qk ? lv->m : qk; /* a batch holds whole blocks and groups */
    int B = block > 0 ? block : 128;
    B = B >= L ? B / L * L : L;
    const size_t cc = (size_t)cols * (size_t)cols;
    double *Hd = malloc(cc * sizeof *Hd), *Hp = malloc(cc * sizeof *Hp);
    float *U = malloc(cc * sizeof *U), *imp = malloc((size_t)cols * sizeof *imp);
    int64_t *perm = malloc((size_t)cols * sizeof *perm), *tmp = malloc((size_t)cols * sizeof *tmp);
    uint8_t *dead = calloc((size_t)cols, 1), *mask = calloc((size_t)(rows * cols), 1);
    float *wc = malloc((size_t)(rows * cols) * sizeof *wc), *err = malloc((size_t)(rows * B) * sizeof *err);
    float *score = lv->n > 0 ? NULL : malloc((size_t)(rows * B) * sizeof *score);
    uint8_t *sel = lv->n > 0 ? NULL : malloc((size_t)(rows * B));
    if (!Hd || !Hp || !U || !imp || !perm || !tmp || !dead || !mask || !wc || !err || (lv->n <= 0 && (!score || !sel))) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "sparsegpt+gptq: out of memory for a %lld x %lld matrix", (long long)rows,
                      (long long)cols);
        goto done;
    }
    memcpy(Hd, H, cc * sizeof *Hd);
    for (size_t k = 0; k < cc; k++)
        if (!isfinite(Hd[k])) {
            st = sqz_fail(ctx, SQZ_ERR_ARG, "sparsegpt+gptq: H has a non-finite entry at (%lld, %lld)",
                          (long long)(k / (size_t)cols), (long long)(k % (size_t)cols));
            goto done;
        }
    /* as GPTQ and SparseGPT: a never-activated input gets H_ii = 1 and its weights are zeroed */
    const double sum = sqz_hessian_fix_dead(Hd, cols, dead);
    const int info = sqz_hessian_prepare(Hd, cols, damp * (sum / (double)cols), 0, perm, tmp, Hp, U);
    if (info) {
        st = sqz_fail(ctx, SQZ_ERR_ARG, "sparsegpt+gptq: H is not positive definite after damping (damp %g; LAPACK %d)",
                      damp, info);
        goto done;
    }
    sqz_gptq_cond_imp(Hp, cols, NULL, imp);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) wc[r * cols + c] = dead[c] ? 0.0f : W[r * cols + c];
    const plan p = { .type = type, .rows = rows, .cols = cols, .qk = qk, .B = B, .ts = tr->type_size,
                     .row_size = sqz_type_row_size(type, cols), .lv = lv, .U = U, .imp = imp, .wc = wc,
                     .mask = mask, .err = err, .out = out};
    const int nt = ctx ? sqz_ctx_threads(ctx) : 1;
    const int64_t R = SQZ_GPTQ_CHUNK_ROWS, nchunks = (rows + R - 1) / R;
    for (int64_t i1 = 0; i1 < cols && !st; i1 += B) {
        const int64_t i2 = i1 + B < cols ? i1 + B : cols, cnt = i2 - i1;
        if (lv->n <= 0) { /* adaptive mask selection over the batch, every row at once */
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cnt; j++) {
                    const float w = wc[r * cols + i1 + j], d = U[(i1 + j) * cols + i1 + j];
                    score[r * cnt + j] = w * w / (d * d);
                }
            if (sqz_prune_select_smallest(score, rows * cnt, sqz_prune_n_zero(lv->density, rows * cnt), sel)) {
                st = sqz_fail(ctx, SQZ_ERR_NOMEM, "sparsegpt+gptq: out of memory");
                break;
            }
            for (int64_t r = 0; r < rows; r++) memcpy(mask + r * cols + i1, sel + r * cnt, (size_t)cnt);
        }
        int failed = 0;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1 && nchunks > 1) reduction(| : failed)
        for (int64_t ch = 0; ch < nchunks; ch++) {
            const int64_t r0 = ch * R;
            failed |= chunk_batch(&p, r0, rows - r0 < R ? rows - r0 : R, i1, i2) != 0;
        }
        if (failed) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "sparsegpt+gptq: out of memory");
    }
    if (!st && deq)
        for (int64_t r = 0; r < rows; r++) tr->to_float((const uint8_t *)out + r * p.row_size, deq + r * cols, cols);
    if (!st && pruned) memcpy(pruned, mask, (size_t)(rows * cols));
done:
    free(Hd), free(Hp), free(U), free(imp), free(perm), free(tmp), free(dead), free(mask), free(wc), free(err);
    free(score), free(sel);
    return st;
}
