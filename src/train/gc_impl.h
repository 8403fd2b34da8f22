/* gc_impl.h - pieces of the gradient compressors that several rows share (not for the
 * optimizer or the CLI: they see gc.h only). */
#ifndef SQZ_TRAIN_GC_IMPL_H
#define SQZ_TRAIN_GC_IMPL_H

#include "train/gc.h"

/* Dense exchange (gc_common.c): grad <- the mean over ranks, values sent as f32 or f16. */
sqz_status sqz_gc_dense_new(const sqz_gc_env *env, int half, void **state);
sqz_status sqz_gc_dense_exchange(void *state, float *grad, int step);

/* Top-k with error feedback (gc_topk.c), per-tensor densities: acc = e + grad; each tensor
 * sends its k = ceil(density * size) largest |acc|; e <- acc - sent (ef = 0: e <- 0); grad <-
 * the mean over ranks of what was sent. */
typedef struct sqz_gc_topk_state sqz_gc_topk_state;
sqz_status sqz_gc_topk_new(const sqz_gc_env *env, int ef, sqz_gc_topk_state **out);
sqz_status sqz_gc_topk_run(sqz_gc_topk_state *s, float *grad, const double *density);
/* acc = e + grad, before sending (lgreco measures its errors on it): valid after
 * sqz_gc_topk_accumulate, which run() then uses instead of adding grad again. */
float *sqz_gc_topk_accumulate(sqz_gc_topk_state *s, const float *grad);
void sqz_gc_topk_free(sqz_gc_topk_state *s);
/* The error e through a checkpoint (the rows' state()). */
sqz_status sqz_gc_topk_state_io(sqz_gc_topk_state *s, sqz_gc_io *io);

/* PowerSGD (gc_powersgd.c) with per-matrix ranks (0: the tensor goes dense). */
typedef struct sqz_gc_psgd_state sqz_gc_psgd_state;
sqz_status sqz_gc_psgd_new(const sqz_gc_env *env, int warm_start, const int *rank,
                           sqz_gc_psgd_state **out);
/* New ranks (warm-start factors keep their first columns, new columns drawn afresh). */
sqz_status sqz_gc_psgd_set_ranks(sqz_gc_psgd_state *s, const int *rank);
float *sqz_gc_psgd_accumulate(sqz_gc_psgd_state *s, const float *grad);
sqz_status sqz_gc_psgd_run(sqz_gc_psgd_state *s, float *grad, int step);
void sqz_gc_psgd_free(sqz_gc_psgd_state *s);
/* The error, the warm-start factors and the draw epoch through a checkpoint; the ranks must
 * already be the saved ones (set first by the caller, e.g. L-GreCo's levels). */
sqz_status sqz_gc_psgd_state_io(sqz_gc_psgd_state *s, sqz_gc_io *io);
/* 1 when rank r factors rows x cols to fewer values than the matrix has */
int sqz_gc_psgd_pays(int64_t rows, int64_t cols, int r);

#endif
