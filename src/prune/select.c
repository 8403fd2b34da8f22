/* select.c - which weights a pruner removes, given their scores (pruner.h): the smallest of a
 * group, with ties broken by index so that every pruner and its reference agree bit for bit,
 * and the level helpers (parse, check, count). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/pruner.h"

typedef struct scored {
    float s;
    int64_t i;
} scored;

static int by_score(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int sqz_prune_select_smallest(const float *score, int64_t n, int64_t n_zero, uint8_t *pruned) {
    memset(pruned, 0, (size_t)n);
    if (n_zero <= 0) return 0;
    if (n_zero >= n) {
        memset(pruned, 1, (size_t)n);
        return 0;
    }
    scored *v = malloc((size_t)n * sizeof *v);
    if (!v) return -1;
    for (int64_t i = 0; i < n; i++) v[i] = (scored){ score[i], i };
    qsort(v, (size_t)n, sizeof *v, by_score);
    for (int64_t k = 0; k < n_zero; k++) pruned[v[k].i] = 1;
    free(v);
    return 0;
}

void sqz_prune_select_nm(const float *score, int64_t cols, int n, int m, uint8_t *pruned) {
    for (int64_t g = 0; g + m <= cols; g += m) {
        uint8_t *p = pruned + g;
        memset(p, 0, (size_t)m);
        /* m is small (4, 8): remove the smallest remaining score m - n times */
        for (int r = 0; r < m - n; r++) {
            int best = -1;
            for (int j = 0; j < m; j++)
                if (!p[j] && (best < 0 || score[g + j] < score[g + best])) best = j;
            p[best] = 1;
        }
    }
}

int64_t sqz_prune_n_zero(double density, int64_t count) {
    /* the small slack keeps 1 - 0.7 = 0.30000000000000004 from rounding a count up */
    const int64_t z = (int64_t)floor((1.0 - density) * (double)count + 1e-7);
    return z < 0 ? 0 : z > count ? count : z;
}

int sqz_prune_level_parse(const char *s, sqz_prune_level *lv) {
    if (!s || !*s) return -1;
    char *end;
    if (strchr(s, ':')) {
        const long n = strtol(s, &end, 10);
        if (end == s || *end != ':') return -1;
        const char *t = end + 1;
        const long m = strtol(t, &end, 10);
        if (end == t || *end || n <= 0 || m <= 0 || n > 1 << 20 || m > 1 << 20) return -1;
        *lv = (sqz_prune_level){ .density = (double)n / (double)m, .n = (int)n, .m = (int)m };
        return 0;
    }
    const double d = strtod(s, &end);
    if (end == s || *end || !isfinite(d)) return -1;
    *lv = (sqz_prune_level){ .density = d };
    return 0;
}

sqz_status sqz_prune_level_check(sqz_ctx *ctx, const sqz_prune_level *lv, int64_t cols, const char *what) {
    if (lv->n > 0 || lv->m > 0) {
        if (lv->n <= 0 || lv->m <= lv->n || lv->m > 64)
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s: N:M sparsity %d:%d needs 0 < N < M <= 64", what, lv->n, lv->m);
        if (cols % lv->m)
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s: N:M sparsity %d:%d: M does not divide a row of %lld weights",
                            what, lv->n, lv->m, (long long)cols);
        return SQZ_OK;
    }
    if (!(lv->density > 0 && lv->density <= 1))
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: density %g is outside (0, 1] (the fraction of weights kept)", what,
                        lv->density);
    return SQZ_OK;
}
