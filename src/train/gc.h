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

/* A compressor's state moved to or from a checkpoint's side file (gc_state.c). A row's state()
 * hands each buffer it keeps between steps to sqz_gc_io_bytes, in one fixed order: the same
 * function saves and loads, so the two cannot drift apart. On load every buffer's size is
 * checked against the file's. */
typedef struct sqz_gc_io sqz_gc_io;
sqz_status sqz_gc_io_bytes(sqz_gc_io *io, void *p, size_t bytes);
/* 1 while loading: for a row whose later buffers' sizes follow from earlier ones (L-GreCo's
 * levels set PowerSGD's factor shapes), to rebuild between reads. */
int sqz_gc_io_loading(const sqz_gc_io *io);

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
    /* What a resumed run needs to continue bit for bit (error feedback, momentum, factors,
     * chosen levels; not scratch), through sqz_gc_io_bytes. NULL: nothing is kept between
     * steps (none, fp16), and a checkpoint has no side files. */
    sqz_status (*state)(void *state, sqz_gc_io *io);
} sqz_gc_method;

/* A parsed spec: the row and its arguments; SQZ_ERR_ARG names an unknown method or key. */
sqz_status sqz_gc_parse(sqz_ctx *ctx, const char *spec, const sqz_gc_method **m, sqz_gc_args *args);
/* Names of every method, comma separated (for messages and --help). */
const char *sqz_gc_names(void);

/* ---- checkpoints (gc_state.c): beside the run's checkpoint CK, each rank r of a compressor
 * with state writes CK.rank<r>.gc, headed by what it must be resumed with. */
typedef struct sqz_gc_ckpt {
    uint64_t hash;     /* the run's recipe, as in the checkpoint */
    uint64_t n;        /* floats in a gradient */
    int32_t step;      /* steps done */
    int32_t rank, world;
    const char *spec;  /* the --dp spec, as given */
} sqz_gc_ckpt;
/* This rank's side file to CK.rank<r>.gc.tmp; sqz_gc_ckpt_commit renames it into place
 * (keep = 1) or removes it, once every rank knows that every file was written. */
sqz_status sqz_gc_ckpt_write(sqz_ctx *ctx, const char *ckpt, const sqz_gc_ckpt *h, const sqz_gc_method *m,
                             void *state);
sqz_status sqz_gc_ckpt_commit(sqz_ctx *ctx, const char *ckpt, int rank, int keep);
/* Loads this rank's side file into state: SQZ_ERR_ARG when it is missing or was written by
 * another number of ranks, rank, spec, recipe or step than h says. */
sqz_status sqz_gc_ckpt_read(sqz_ctx *ctx, const char *ckpt, const sqz_gc_ckpt *h, const sqz_gc_method *m,
                            void *state);
/* For a resume that keeps no compressor state (one process, none, fp16): SQZ_ERR_ARG when
 * CK.rank0.gc holds a compressor's state saved with this checkpoint (the same recipe and
 * step), which the run would drop. */
sqz_status sqz_gc_ckpt_unused(sqz_ctx *ctx, const char *ckpt, uint64_t hash, int32_t step);
/* After a checkpoint without compressor state was written at CK: removes CK.rank0.gc, so that
 * an older run's state never passes for this one's. */
void sqz_gc_ckpt_forget(const char *ckpt);

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
