/* gc_powersgd.c - PowerSGD (Vogels, Karimireddy, Jaggi, NeurIPS 2019), as PyTorch's DDP hook
 * runs it: each matrix gradient M (plus the error it still owes, error feedback) is sent as two
 * rank-r factors found by one step of subspace iteration, warm-started from the last step's Q:
 *   P = M Q; allreduce P; orthogonalise P (Gram-Schmidt); Q = M^T P; allreduce Q (mean);
 *   direction = P Q^T; error = M - P Q^T.
 * Vectors (norms, biases), and matrices the rank would not shrink (r (rows + cols) >= rows
 * cols), are allreduced as they are. Bytes a step: 4 (r (rows + cols) summed over the factored
 * matrices + the values sent dense), times 2 (N - 1) / N. Spec: powersgd:rank=4,warm=1. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "math/rng.h"
#include "train/gc_impl.h"

struct sqz_gc_psgd_state {
    sqz_gc_env env;
    int warm, accumulated, epoch;
    int *rank;        /* per tensor; 0: dense */
    float **Q;        /* per tensor: cols x rank */
    float *e;         /* error feedback */
    float *buf;       /* the first allreduce: dense values, then every P */
    float *qbuf;      /* the second: every Q */
    size_t buf_n, qbuf_n;
};

int sqz_gc_psgd_pays(int64_t rows, int64_t cols, int r) {
    return r > 0 && rows > 1 && (int64_t)r * (rows + cols) < rows * cols;
}

/* A standard normal from two uniform draws (Box-Muller) */
static float gauss(uint64_t *s) {
    const double u1 = ((double)(sqz_splitmix64(s) >> 11) + 1.0) / 9007199254740993.0;
    const double u2 = (double)(sqz_splitmix64(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

/* Columns from..r-1 of Q (cols x r) drawn afresh: the same on every rank (seed, tensor, epoch). */
static void draw(sqz_gc_psgd_state *s, int t, float *Q, int64_t cols, int r, int from) {
    uint64_t g = s->env.seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(t + 1)) ^ ((uint64_t)s->epoch << 40);
    for (int64_t i = 0; i < cols; i++)
        for (int j = 0; j < r; j++) {
            const float v = gauss(&g);
            if (j >= from) Q[i * r + j] = v;
        }
}

static sqz_status alloc_factors(sqz_gc_psgd_state *s, const int *rank) {
    size_t bn = 0, qn = 0;
    for (int t = 0; t < s->env.n_tensors; t++) {
        const sqz_train_tensor *T = &s->env.t[t];
        const int r = sqz_gc_psgd_pays(T->rows, T->cols, rank[t]) ? rank[t] : 0;
        if (r != s->rank[t]) {
            float *Q = r ? malloc((size_t)T->cols * r * sizeof(float)) : NULL;
            if (r && !Q) return sqz_fail(s->env.ctx, SQZ_ERR_NOMEM, "--dp powersgd: out of memory");
            const int keep = s->rank[t] < r ? s->rank[t] : r;
            for (int64_t i = 0; i < T->cols && keep; i++)
                memcpy(Q + i * r, s->Q[t] + i * s->rank[t], (size_t)keep * sizeof(float));
            if (r) draw(s, t, Q, T->cols, r, keep);
            free(s->Q[t]);
            s->Q[t] = Q;
            s->rank[t] = r;
        }
        bn += r ? (size_t)(T->rows * r) : (size_t)(T->rows * T->cols);
        qn += (size_t)(T->cols * r);
    }
    float *b = realloc(s->buf, (bn ? bn : 1) * sizeof(float)), *q = b ? realloc(s->qbuf, (qn ? qn : 1) * sizeof(float)) : NULL;
    if (b) s->buf = b;
    if (q) s->qbuf = q;
    if (!b || !q) return sqz_fail(s->env.ctx, SQZ_ERR_NOMEM, "--dp powersgd: out of memory");
    s->buf_n = bn, s->qbuf_n = qn;
    s->epoch++;
    return SQZ_OK;
}

sqz_status sqz_gc_psgd_new(const sqz_gc_env *env, int warm_start, const int *rank,
                           sqz_gc_psgd_state **out) {
    sqz_gc_psgd_state *s = calloc(1, sizeof *s);
    if (s) {
        s->env = *env;
        s->warm = warm_start;
        s->rank = calloc((size_t)env->n_tensors, sizeof(int));
        s->Q = calloc((size_t)env->n_tensors, sizeof(float *));
        s->e = calloc(env->n, sizeof(float));
    }
    sqz_status st = !s || !s->rank || !s->Q || !s->e
                        ? sqz_fail(env->ctx, SQZ_ERR_NOMEM, "--dp powersgd: out of memory")
                        : alloc_factors(s, rank);
    if (st) {
        sqz_gc_psgd_free(s);
        return st;
    }
    *out = s;
    return SQZ_OK;
}

sqz_status sqz_gc_psgd_set_ranks(sqz_gc_psgd_state *s, const int *rank) { return alloc_factors(s, rank); }

void sqz_gc_psgd_free(sqz_gc_psgd_state *s) {
    if (!s) return;
    for (int t = 0; s->Q && t < s->env.n_tensors; t++) free(s->Q[t]);
    free(s->Q), free(s->rank), free(s->e), free(s->buf), free(s->qbuf);
    free(s);
}

/* epoch too: with warm = 0, and for the columns a later rank change adds, the draws depend on it */
sqz_status sqz_gc_psgd_state_io(sqz_gc_psgd_state *s, sqz_gc_io *io) {
    sqz_status st = sqz_gc_io_bytes(io, s->e, s->env.n * sizeof(float));
    if (!st) st = sqz_gc_io_bytes(io, &s->epoch, sizeof s->epoch);
    for (int t = 0; t < s->env.n_tensors && !st; t++)
        if (s->rank[t]) st = sqz_gc_io_bytes(io, s->Q[t], (size_t)s->env.t[t].cols * s->rank[t] * sizeof(float));
    return st;
}

float *sqz_gc_psgd_accumulate(sqz_gc_psgd_state *s, const float *grad) {
    for (size_t i = 0; i < s->env.n; i++) s->e[i] += grad[i];
    s->accumulated = 1;
    return s->e;
}

/* Modified Gram-Schmidt on the r columns of P (rows x r, row-major), sums in double. */
static void orthogonalise(float *P, int64_t rows, int r) {
    for (int j = 0; j < r; j++) {
        for (int i = 0; i < j; i++) {
            double d = 0;
            for (int64_t k = 0; k < rows; k++) d += (double)P[k * r + i] * P[k * r + j];
            for (int64_t k = 0; k < rows; k++) P[k * r + j] -= (float)d * P[k * r + i];
        }
        double nn = 0;
        for (int64_t k = 0; k < rows; k++) nn += (double)P[k * r + j] * P[k * r + j];
        const float inv = (float)(1.0 / (sqrt(nn) + 1e-8));
        for (int64_t k = 0; k < rows; k++) P[k * r + j] *= inv;
    }
}

sqz_status sqz_gc_psgd_run(sqz_gc_psgd_state *s, float *grad, int step) {
    if (!s->accumulated) sqz_gc_psgd_accumulate(s, grad);
    s->accumulated = 0;
    const int N = s->env.comm->size;
    const float inv = 1.0f / (float)N;
    /* P = M Q for the factored matrices, M itself for the rest */
    size_t o = 0;
    for (int t = 0; t < s->env.n_tensors; t++) {
        const sqz_train_tensor *T = &s->env.t[t];
        const int r = s->rank[t];
        float *M = s->e + T->off;
        if (!r) {
            const size_t n = (size_t)(T->rows * T->cols);
            memcpy(s->buf + o, M, n * sizeof(float));
            memset(M, 0, n * sizeof(float)); /* sent exactly: nothing owed */
            o += n;
            continue;
        }
        if (!s->warm) draw(s, t, s->Q[t], T->cols, r, 0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T->rows, r, (int)T->cols, 1.0f, M,
                    (int)T->cols, s->Q[t], r, 0.0f, s->buf + o, r);
        o += (size_t)(T->rows * r);
    }
    sqz_status st = sqz_comm_allreduce(s->env.comm, s->buf, s->buf_n);
    if (st) return st;
    /* dense means out; P orthogonalised; Q = M^T P */
    o = 0;
    size_t q = 0;
    for (int t = 0; t < s->env.n_tensors; t++) {
        const sqz_train_tensor *T = &s->env.t[t];
        const int r = s->rank[t];
        if (!r) {
            const size_t n = (size_t)(T->rows * T->cols);
            for (size_t i = 0; i < n; i++) grad[T->off + i] = s->buf[o + i] * inv;
            o += n;
            continue;
        }
        float *P = s->buf + o;
        orthogonalise(P, T->rows, r);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T->cols, r, (int)T->rows, 1.0f,
                    s->e + T->off, (int)T->cols, P, r, 0.0f, s->qbuf + q, r);
        o += (size_t)(T->rows * r);
        q += (size_t)(T->cols * r);
    }
    if ((st = sqz_comm_allreduce(s->env.comm, s->qbuf, s->qbuf_n))) return st;
    /* direction = P Q^T (Q the mean), error = M - direction */
    o = 0, q = 0;
    for (int t = 0; t < s->env.n_tensors; t++) {
        const sqz_train_tensor *T = &s->env.t[t];
        const int r = s->rank[t];
        if (!r) {
            o += (size_t)(T->rows * T->cols);
            continue;
        }
        float *Q = s->qbuf + q, *out = grad + T->off, *M = s->e + T->off;
        for (size_t i = 0; i < (size_t)(T->cols * r); i++) Q[i] *= inv;
        memcpy(s->Q[t], Q, (size_t)(T->cols * r) * sizeof(float)); /* the warm start */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T->rows, (int)T->cols, r, 1.0f,
                    s->buf + o, r, Q, r, 0.0f, out, (int)T->cols);
        const size_t n = (size_t)(T->rows * T->cols);
        for (size_t i = 0; i < n; i++) M[i] -= out[i];
        o += (size_t)(T->rows * r);
        q += (size_t)(T->cols * r);
    }
    return SQZ_OK;
}

/* ---- the table row: one rank for every matrix */
static sqz_status create(const sqz_gc_env *env, const sqz_gc_args *a, void **state) {
    const double r = sqz_gc_arg(a, "rank", 4);
    if (!(r >= 1 && r <= 1024 && r == floor(r)))
        return sqz_fail(env->ctx, SQZ_ERR_ARG, "--dp powersgd: rank %g is not an integer in 1..1024", r);
    int *rank = malloc((size_t)env->n_tensors * sizeof(int));
    if (!rank) return sqz_fail(env->ctx, SQZ_ERR_NOMEM, "--dp powersgd: out of memory");
    for (int t = 0; t < env->n_tensors; t++) rank[t] = (int)r;
    const sqz_status st = sqz_gc_psgd_new(env, sqz_gc_arg(a, "warm", 1) != 0, rank, (sqz_gc_psgd_state **)state);
    free(rank);
    return st;
}

static sqz_status exchange(void *p, float *grad, int step) { return sqz_gc_psgd_run(p, grad, step); }
static void destroy(void *p) { sqz_gc_psgd_free(p); }
static sqz_status state(void *p, sqz_gc_io *io) { return sqz_gc_psgd_state_io(p, io); }

const sqz_gc_method sqz_gcm_powersgd = {
    .name = "powersgd", .params = "rank=R,warm=0|1", .create = create, .exchange = exchange,
    .destroy = destroy, .state = state,
};
