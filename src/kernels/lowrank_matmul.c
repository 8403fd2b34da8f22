/* lowrank_matmul.c - the products of a low-rank matrix W ~ b . a (kernels/lowrank.h): each is
 * two products with the factors, which are plain matrices and run through matmul.c's kernels
 * (quantized dot products, panels, threads) like any other; the reference runs both factors
 * through sqz_matmul_ref. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/lowrank.h"

/* The input stays f32: a copy of x (the team's scratch holds a row of f32). */
static size_t act_bytes(int64_t n) { return (size_t)n * sizeof(float); }

static void act_quantize(const float *x, void *xq, int64_t n) { memcpy(xq, x, (size_t)n * sizeof *x); }

/* y[r0..r1) = rows r0..r1 of b . (a x), x = xq as f32; the whole z = a x on this thread */
static void matvec_rows(const sqz_tensor *w, const void *xq, float *y, int64_t r0, int64_t r1, sqz_isa isa) {
    (void)isa;
    const sqz_lr_tensor *lr = w->data;
    const float *x = xq;
    const int64_t k = lr->a.rows;
    const size_t qa = sqz_act_bytes(lr->a.type, lr->a.cols), qb = sqz_act_bytes(lr->b.type, k);
    char *buf = malloc((size_t)k * sizeof(float) + qa + qb + 64);
    if (!buf) {
        for (int64_t r = r0; r < r1; r++) y[r] = NAN;
        return;
    }
    float *z = (float *)buf;
    char *xa = buf + (size_t)k * sizeof(float), *zb = xa + qa;
    sqz_act_quantize(lr->a.type, x, xa, lr->a.cols);
    sqz_matvec_rows(&lr->a, x, xa, z, 0, k);
    sqz_act_quantize(lr->b.type, z, zb, k);
    sqz_matvec_rows(&lr->b, z, zb, y, r0, r1);
    free(buf);
}

static int matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads) {
    const sqz_lr_tensor *lr = w->data;
    float *z = malloc((size_t)T * (size_t)lr->a.rows * sizeof *z);
    if (!z) return -1;
    sqz_matmul(&lr->a, x, T, z, n_threads);
    sqz_matmul(&lr->b, z, T, y, n_threads);
    free(z);
    return 0;
}

static void matmul_ref(const sqz_tensor *w, const float *x, int T, float *y) {
    const sqz_lr_tensor *lr = w->data;
    float *z = malloc((size_t)T * (size_t)lr->a.rows * sizeof *z);
    if (!z) {
        for (size_t i = 0; i < (size_t)T * (size_t)w->rows; i++) y[i] = NAN;
        return;
    }
    sqz_matmul_ref(&lr->a, x, T, z);
    sqz_matmul_ref(&lr->b, z, T, y);
    free(z);
}

const sqz_matrix_ops sqz_lowrank_matrix_ops = {
    .act_bytes = act_bytes,
    .act_quantize = act_quantize,
    .matvec_rows = matvec_rows,
    .matmul = matmul,
    .matmul_ref = matmul_ref,
    .rows_in_place = 1,
};
