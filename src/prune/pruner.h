/* pruner.h - a pruner as one struct of hooks, the table of them (pruners.c), the level a
 * matrix is pruned to, and the mask selection every pruner shares (select.c).
 *
 * Dimensions: W [rows x cols] row-major f32, rows = output features, cols = input features
 * (the reduction dimension of y = W x); H [cols x cols] = sum over calibration tokens of
 * x^T x at the matrix's input (f64, both triangles filled).
 *
 * A level is either unstructured - keep `density` of the matrix's weights - or N:M - keep n of
 * every m consecutive weights of each row (NVIDIA's 2:4: two nonzeros in each group of four;
 * the groups start at column 0, so m must divide cols).
 *
 * How to add a pruner: write src/prune/prune_NAME.c exporting
 * `const sqz_pruner sqz_pruner_NAME = { .name, .help, .calib, .create, .params, .prune }`, add
 * one row to pruners.c's table and a test against a naive reference in tests/test_prune.c. The
 * driver (prune.c) knows no pruner by name. */
#ifndef SQZ_PRUNE_PRUNER_H
#define SQZ_PRUNE_PRUNER_H

#include <stdint.h>

#include "core/ctx.h"
#include "core/params.h"
#include "formats/types.h"

typedef struct sqz_prune_level {
    double density; /* unstructured: the fraction of weights kept, in (0, 1]; 1 = not pruned */
    int n, m;       /* n > 0: N:M instead (0 < n < m) */
} sqz_prune_level;

typedef struct sqz_pruner {
    const char *name;
    const char *help; /* one line */
    int calib;        /* 1: prune() needs H */
    sqz_status (*create)(sqz_ctx *ctx, void **state); /* NULL: no state, no parameters */
    /* p[0..n): the parameters, pointing into state; returns n (at most 8). */
    int (*params)(void *state, sqz_param *p);
    /* Prunes W in place to level lv (checked by sqz_prune_level_check): the pruned weights
     * become exactly 0.0f, and a pruner may change the kept ones (SparseGPT's updates). H: as
     * above, NULL when calib = 0; not modified. */
    sqz_status (*prune)(void *state, sqz_ctx *ctx, float *W, int64_t rows, int64_t cols, const double *H,
                        const sqz_prune_level *lv);
    /* Optional (NULL: prune, then the writer quantizes the result by plain rounding): prunes W
     * to lv and quantizes it to type in one pass (SparseGPT's joint pass, prune/sgptq.h). out:
     * rows * sqz_type_row_size(type, cols) bytes; W becomes the dequantized result; pruned
     * (rows x cols): 1 for the removed weights. SQZ_ERR_UNSUPPORTED for a type it cannot do. */
    sqz_status (*prune_quant)(void *state, sqz_ctx *ctx, sqz_type type, float *W, int64_t rows, int64_t cols,
                              const double *H, const sqz_prune_level *lv, void *out, uint8_t *pruned);
} sqz_pruner;

/* The table, NULL-terminated. */
const sqz_pruner *const *sqz_pruners(void);

/* spec "NAME[:key=value,...]": the pruner and a state holding its parsed parameters (free with
 * free(); NULL for a pruner without state). */
sqz_status sqz_pruner_open(sqz_ctx *ctx, const char *spec, const sqz_pruner **pruner, void **state);

/* SQZ_ERR_ARG with a message naming `what` unless lv is a level a matrix of `cols` columns can
 * be pruned to: density in (0, 1], or 0 < n < m <= 64 with m dividing cols. */
sqz_status sqz_prune_level_check(sqz_ctx *ctx, const sqz_prune_level *lv, int64_t cols, const char *what);

/* Parses "0.5" (a density) or "2:4" (N:M) into lv (not checked). Returns 0, -1 if malformed. */
int sqz_prune_level_parse(const char *s, sqz_prune_level *lv);

/* ---- mask selection (select.c): pruned[i] = 1 for the weights to remove */

/* The n_zero smallest of score[0..n) (ties: the lower index first). Returns 0; -1 when out of
 * memory. */
int sqz_prune_select_smallest(const float *score, int64_t n, int64_t n_zero, uint8_t *pruned);

/* N:M on one row of score[0..cols): in each group of m consecutive entries, the m - n smallest
 * (ties: the lower index first). */
void sqz_prune_select_nm(const float *score, int64_t cols, int n, int m, uint8_t *pruned);

/* The weights to remove from a matrix of `count` weights at density d: floor((1 - d) * count),
 * computed so that d = 0.5 of an even count is exactly half. */
int64_t sqz_prune_n_zero(double density, int64_t count);

#endif
