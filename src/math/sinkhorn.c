/* sinkhorn.c - entropic optimal transport by Sinkhorn's scalings, log-stabilized (sinkhorn.h).
 *
 * The plan is P_ij = u_i K_ij v_j with K_ij = exp((f_i + g_j - C_ij) / eps): potentials f, g
 * (log domain) carry the large scales, u, v (near 1) the iteration. An absorption step sets
 * f_i = eps log a_i - eps LSE_j((g_j - C_ij) / eps) and g likewise (exact log-domain Sinkhorn
 * half-steps), then u = v = 1 and K again; plain iterations are two matrix-vector products. */
#include <math.h>
#include <stdlib.h>

#include "math/sinkhorn.h"

/* the log-domain half-steps and K from f, g */
static void absorb(const double *C, int n, int m, const double *la, const double *lb, double eps, double *f,
                   double *g, double *K) {
    for (int i = 0; i < n; i++) {
        double mx = -INFINITY;
        for (int j = 0; j < m; j++) mx = fmax(mx, (g[j] - C[(size_t)i * m + j]) / eps);
        double s = 0;
        for (int j = 0; j < m; j++) s += exp((g[j] - C[(size_t)i * m + j]) / eps - mx);
        f[i] = eps * (la[i] - mx - log(s));
    }
    for (int j = 0; j < m; j++) {
        double mx = -INFINITY;
        for (int i = 0; i < n; i++) mx = fmax(mx, (f[i] - C[(size_t)i * m + j]) / eps);
        double s = 0;
        for (int i = 0; i < n; i++) s += exp((f[i] - C[(size_t)i * m + j]) / eps - mx);
        g[j] = eps * (lb[j] - mx - log(s));
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) K[(size_t)i * m + j] = exp((f[i] + g[j] - C[(size_t)i * m + j]) / eps);
}

/* y = K x (K [n][m]); four partial sums a row (vectorizable without reassociating flags) */
static void kx(const double *K, int n, int m, const double *x, double *y) {
    for (int i = 0; i < n; i++) {
        const double *k = K + (size_t)i * m;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int j = 0;
        for (; j + 4 <= m; j += 4) s0 += k[j] * x[j], s1 += k[j + 1] * x[j + 1], s2 += k[j + 2] * x[j + 2], s3 += k[j + 3] * x[j + 3];
        for (; j < m; j++) s0 += k[j] * x[j];
        y[i] = (s0 + s1) + (s2 + s3);
    }
}

/* y = K^T x */
static void ktx(const double *K, int n, int m, const double *x, double *y) {
    for (int j = 0; j < m; j++) y[j] = 0;
    for (int i = 0; i < n; i++) {
        const double *k = K + (size_t)i * m;
        const double xi = x[i];
        for (int j = 0; j < m; j++) y[j] += k[j] * xi;
    }
}

/* Sinkhorn's iterations at eps from the potentials f, g: until the row sums are within tol or
 * max_iter; 0 converged, 1 not; *it counts the iterations. */
static int iterate(const double *cost, int n, int m, const double *la, const double *lb, const double *ra,
                   const double *bb, double eps, int max_iter, double tol, double *f, double *g, double *u,
                   double *v, double *K, double *tmp, int *it) {
    int rc = 1;
    for (int i = 0; i < n; i++) u[i] = 1;
    for (int j = 0; j < m; j++) v[j] = 1;
    absorb(cost, n, m, la, lb, eps, f, g, K);
    for (int k = 0; k < max_iter; k++, ++*it) {
        int bad = 0;
        kx(K, n, m, v, tmp);
        for (int i = 0; i < n; i++) {
            u[i] = ra[i] / tmp[i];
            bad |= !(u[i] < 1e30 && u[i] > 1e-30);
        }
        ktx(K, n, m, u, v);
        for (int j = 0; j < m; j++) {
            v[j] = bb[j] / v[j];
            bad |= !(v[j] < 1e30 && v[j] > 1e-30);
        }
        if (bad) { /* into the potentials; a scaling past the range is redone in the log domain */
            for (int i = 0; i < n; i++) f[i] += isfinite(log(u[i])) ? eps * log(u[i]) : 0, u[i] = 1;
            for (int j = 0; j < m; j++) g[j] += isfinite(log(v[j])) ? eps * log(v[j]) : 0, v[j] = 1;
            absorb(cost, n, m, la, lb, eps, f, g, K);
            continue;
        }
        if (k % 5 == 4 || k == max_iter - 1) { /* the row sums' error (column sums are exact) */
            kx(K, n, m, v, tmp);
            double err = 0;
            for (int i = 0; i < n; i++) err = fmax(err, fabs(u[i] * tmp[i] - ra[i]));
            if (err <= tol) {
                ++*it, rc = 0;
                break;
            }
        }
    }
    for (int i = 0; i < n; i++) f[i] += eps * log(u[i]);
    for (int j = 0; j < m; j++) g[j] += eps * log(v[j]);
    return rc;
}

int sqz_sinkhorn(const double *cost, int n, int m, const double *a, const double *b, double eps, int max_iter,
                 double tol, double *plan, int *iters) {
    if (n <= 0 || m <= 0 || !(eps > 0) || !cost || !plan) return -1;
    double *K = plan; /* K lives in plan until the end */
    double *w = malloc(sizeof(double) * (size_t)(5 * n + 4 * m));
    if (!w) return -1;
    double *f = w, *u = f + n, *la = u + n, *ra = la + n, *tmp = ra + n, *g = tmp + n, *v = g + m, *lb = v + m,
           *bb = lb + m;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; k < (size_t)n * m; k++) lo = fmin(lo, cost[k]), hi = fmax(hi, cost[k]);
    for (int i = 0; i < n; i++) ra[i] = a ? a[i] : 1.0 / n, la[i] = log(ra[i]), f[i] = 0;
    for (int j = 0; j < m; j++) bb[j] = b ? b[j] : 1.0 / m, lb[j] = log(bb[j]), g[j] = 0;
    /* eps scaling: from the cost's range down to eps by halves, each stage warm-started from the
     * last one's potentials and run to a looser tolerance; the last one to tol */
    int it = 0, rc = 0;
    for (double e = fmax(hi - lo, eps); e > eps && it < max_iter; e *= 0.5)
        iterate(cost, n, m, la, lb, ra, bb, e, 50, tol * 100, f, g, u, v, K, tmp, &it);
    rc = iterate(cost, n, m, la, lb, ra, bb, eps, max_iter - it > 1 ? max_iter - it : 1, tol, f, g, u, v, K, tmp,
                 &it);
    /* the plan from the final potentials (iterate folded u, v into them) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) plan[(size_t)i * m + j] = exp((f[i] + g[j] - cost[(size_t)i * m + j]) / eps);
    if (iters) *iters = it;
    free(w);
    return rc;
}
