/* gc.h - gradient exchange for data-parallel training: one table row per compressor
 * (gc_<name>.c), chosen by a spec such as "dgc:density=0.001,momentum=0.9".
 *
 * Each step every rank hands its own gradient to the method's exchange(); what comes back is
 * the step direction, bit-identical on every rank, that the optimizer applies (for "none" the
 * mean gradient over ranks). A method owns its state (error feedback, momentum, warm-started
 * factors) and does its own communication through sqz_comm, so the bytes it sends are counted
 * on the wire path.
 */
#ifndef SQZ_TRAIN_GC_H
#define SQZ_TRAIN_GC_H

#include "train/comm.h"
#include "train/train.h"

#define SQZ_GC_MAX_ARGS 8

/* key=value parameters of a spec, in order */
typedef struct sqz_gc_args {
    int n;
    char key[SQZ_GC_MAX_ARGS][24];
    char val[SQZ_GC_MAX_ARGS][64];
} sqz_gc_args;
double sqz_gc_arg(const sqz_gc_args *a, const char *key, double def);
const char *sqz_gc_arg_str(const sqz_gc_args *a, const char *key, const char *def);

/* What a method is created for: the gradient's layout and the world. */
typedef struct sqz_gc_env {
    sqz_ctx *ctx;
    const sqz_train_tensor *t; /* the tensors, in the flat layout */
    int n_tensors;
    size_t n;                  /* floats in a gradient */
    sqz_comm *comm;
    int steps;                 /* of the run (schedules) */
    float clip;                /* the run's global-norm clip (> 0), for methods that clip locally */
    float beta1, beta2, eps;   /* the run's AdamW, for methods that own the optimizer */
    uint64_t seed;             /* the same on every rank */
    int n_threads;
} sqz_gc_env;

typedef struct sqz_gc_method {
    const char *name;
    const char *params;        /* "density=F,momentum=F,...": the keys it takes, for messages */
    /* 1: the direction is the update itself (DGC: momentum, and Adam's per-coordinate scale,
     * applied by each rank before compressing): the driver steps p -= lr d, with the decoupled
     * weight decay, and keeps no AdamW moments. */
    int owns_optimizer;
    /* 1: the method clips each rank's gradient itself (DGC's local clipping): no global clip. */
    int owns_clipping;
    sqz_status (*create)(const sqz_gc_env *env, const sqz_gc_args *args, void **state);
    /* grad (env->n floats): this rank's gradient in, the shared step direction out. step is
     * 0-based. */
    sqz_status (*exchange)(void *state, float *grad, int step);
    void (*destroy)(void *state);
} sqz_gc_method;

/* A parsed spec: the row and its arguments; SQZ_ERR_ARG names an unknown method or key. */
sqz_status sqz_gc_parse(sqz_ctx *ctx, const char *spec, const sqz_gc_method **m, sqz_gc_args *args);
/* Names of every method, comma separated (for messages and --help). */
const char *sqz_gc_names(void);

/* ---- shared by the rows (gc_common.c) */
/* k = max(1, ceil(density * n)) */
size_t sqz_gc_topk_count(size_t n, double density);
/* Indices of the k largest |x[i]| of x[0..n), ties broken by the lower index; idx gets them
 * sorted ascending. scratch: room for n floats. Returns k. */
size_t sqz_gc_topk(const float *x, size_t n, size_t k, uint32_t *idx, float *scratch);
/* The same, by sorting everything: the reference the fast selection is tested against. */
size_t sqz_gc_topk_ref(const float *x, size_t n, size_t k, uint32_t *idx);
/* Per tensor of env, the k = sqz_gc_topk_count(size, density) largest |x|: idx gets their
 * indices into the flat layout, val their values, tensor after tensor (density: one per tensor,
 * or NULL for density_all everywhere). scratch: env->n floats. Returns the pairs selected. */
size_t sqz_gc_select(const sqz_gc_env *env, const float *x, const double *density, double density_all,
                     uint32_t *idx, float *val, float *scratch);
/* Sparse exchange: every rank sends its n_pairs (index into the flat gradient, value) pairs;
 * out (n floats) is zeroed and gets the sum over ranks of the sent values times scale, added
 * rank by rank in rank order (identical on every rank). */
sqz_status sqz_gc_sparse_exchange(sqz_comm *c, const uint32_t *idx, const float *val, size_t n_pairs,
                                  float *out, size_t n, float scale);

#endif
