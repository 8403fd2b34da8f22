/* gc_common.c - what several gradient compressors share: top-k selection (a quickselect and
 * the sort it is tested against), and the sparse (index, value) exchange. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/gc_impl.h"

size_t sqz_gc_topk_count(size_t n, double density) {
    double k = ceil(density * (double)n);
    if (k < 1) k = 1;
    return k > (double)n ? n : (size_t)k;
}

/* The k-th largest (1-based) of a[0..n), reordering a: quickselect with a three-way partition
 * (many equal magnitudes, zeros above all, cost nothing extra), median-of-three pivot. */
static float kth_largest(float *a, size_t n, size_t k) {
    size_t lo = 0, hi = n;
    const size_t want = k - 1; /* position in descending order */
    while (hi - lo > 1) {
        const float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
        const float piv = x > y ? (y > z ? y : (x > z ? z : x)) : (x > z ? x : (y > z ? z : y));
        size_t lt = lo, i = lo, gt = hi; /* [lo,lt) > piv, [lt,i) == piv, [gt,hi) < piv */
        while (i < gt) {
            const float v = a[i];
            if (v > piv) a[i] = a[lt], a[lt++] = v, i++;
            else if (v < piv) a[i] = a[--gt], a[gt] = v;
            else i++;
        }
        if (want < lt) hi = lt;
        else if (want >= gt) lo = gt;
        else return piv;
    }
    return a[lo];
}

size_t sqz_gc_topk(const float *x, size_t n, size_t k, uint32_t *idx, float *scratch) {
    if (k == 0 || n == 0) return 0;
    if (k > n) k = n;
    for (size_t i = 0; i < n; i++) scratch[i] = fabsf(x[i]);
    const float thr = kth_largest(scratch, n, k);
    size_t above = 0;
    for (size_t i = 0; i < n; i++) above += fabsf(x[i]) > thr;
    /* all above the threshold, then the ties at it by index until k */
    size_t ties = k - above, got = 0;
    for (size_t i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > thr || (a == thr && ties && ties--)) idx[got++] = (uint32_t)i;
    }
    return got;
}

typedef struct { float a; uint32_t i; } keyed;
static int by_mag_then_index(const void *p, const void *q) {
    const keyed *a = p, *b = q;
    if (a->a != b->a) return a->a > b->a ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}
static int by_u32(const void *p, const void *q) {
    const uint32_t a = *(const uint32_t *)p, b = *(const uint32_t *)q;
    return a < b ? -1 : a > b;
}

size_t sqz_gc_topk_ref(const float *x, size_t n, size_t k, uint32_t *idx) {
    if (k > n) k = n;
    keyed *v = malloc(n * sizeof *v);
    if (!v) return 0;
    for (size_t i = 0; i < n; i++) v[i].a = fabsf(x[i]), v[i].i = (uint32_t)i;
    qsort(v, n, sizeof *v, by_mag_then_index);
    for (size_t i = 0; i < k; i++) idx[i] = v[i].i;
    free(v);
    qsort(idx, k, sizeof *idx, by_u32);
    return k;
}

size_t sqz_gc_select(const sqz_gc_env *env, const float *x, const double *density, double density_all,
                     uint32_t *idx, float *val, float *scratch) {
    size_t n_pairs = 0;
    for (int t = 0; t < env->n_tensors; t++) {
        const sqz_train_tensor *T = &env->t[t];
        const size_t n = (size_t)(T->rows * T->cols);
        const float *xt = x + T->off;
        const size_t k = sqz_gc_topk(xt, n, sqz_gc_topk_count(n, density ? density[t] : density_all),
                                     idx + n_pairs, scratch);
        for (size_t j = 0; j < k; j++) {
            val[n_pairs + j] = xt[idx[n_pairs + j]];
            idx[n_pairs + j] += (uint32_t)T->off;
        }
        n_pairs += k;
    }
    return n_pairs;
}

sqz_status sqz_gc_sparse_exchange(sqz_comm *c, const uint32_t *idx, const float *val, size_t n_pairs,
                                  float *out, size_t n, float scale) {
    /* one block per rank: n_pairs indices, then n_pairs values */
    const uint64_t bytes = (uint64_t)n_pairs * 8;
    uint64_t *all = malloc((size_t)c->size * sizeof *all);
    if (!all) return sqz_fail(c->ctx, SQZ_ERR_NOMEM, "sparse exchange: out of memory");
    sqz_status st = sqz_comm_allgather_sizes(c, bytes, all);
    uint64_t total = 0;
    for (int r = 0; r < c->size && !st; r++) total += all[r];
    char *send = st ? NULL : malloc(bytes ? bytes : 1), *recv = st ? NULL : malloc(total ? total : 1);
    if (!st && (!send || !recv)) st = sqz_fail(c->ctx, SQZ_ERR_NOMEM, "sparse exchange: out of memory");
    if (!st) {
        memcpy(send, idx, n_pairs * 4);
        memcpy(send + n_pairs * 4, val, n_pairs * 4);
        st = sqz_comm_allgather(c, send, all, recv);
    }
    if (!st) {
        memset(out, 0, n * sizeof *out);
        const char *blk = recv;
        for (int r = 0; r < c->size; r++) {
            const size_t m = all[r] / 8;
            const uint32_t *ii = (const uint32_t *)blk;
            const float *vv = (const float *)(blk + m * 4);
            for (size_t j = 0; j < m; j++)
                if (ii[j] < n) out[ii[j]] += vv[j] * scale;
            blk += all[r];
        }
    }
    free(all), free(send), free(recv);
    return st;
}

typedef struct dense_state {
    sqz_gc_env env;
    int half;
} dense_state;

sqz_status sqz_gc_dense_new(const sqz_gc_env *env, int half, void **state) {
    dense_state *s = calloc(1, sizeof *s);
    if (!s) return sqz_fail(env->ctx, SQZ_ERR_NOMEM, "--dp: out of memory");
    s->env = *env;
    s->half = half;
    *state = s;
    return SQZ_OK;
}

/* scaled to the mean before sending, so that f16 holds the values */
sqz_status sqz_gc_dense_exchange(void *state, float *grad, int step) {
    dense_state *s = state;
    const float inv = 1.0f / (float)s->env.comm->size;
    for (size_t i = 0; i < s->env.n; i++) grad[i] *= inv;
    return s->half ? sqz_comm_allreduce_f16(s->env.comm, grad, s->env.n)
                   : sqz_comm_allreduce(s->env.comm, grad, s->env.n);
}
