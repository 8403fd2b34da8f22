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

int sqz_sinkhorn(const double *cost, int n, int m, const double *a, const double *b, double eps, int max_iter,
                 double tol, double *plan, int *iters) {
    if (n <= 0 || m <= 0 || !(eps > 0) || !cost || !plan) return -1;
    double *K = plan; /* K lives in plan until the end */
    double *w = malloc(sizeof(double) * (size_t)(4 * n + 4 * m));
    if (!w) return -1;
    double *f = w, *u = f + n, *la = u + n, *ra = la + n, *g = ra + n, *v = g + m, *lb = v + m, *bb = lb + m;
    for (int i = 0; i < n; i++) ra[i] = a ? a[i] : 1.0 / n, la[i] = log(ra[i]), f[i] = 0, u[i] = 1;
    for (int j = 0; j < m; j++) bb[j] = b ? b[j] : 1.0 / m, lb[j] = log(bb[j]), g[j] = 0, v[j] = 1;
    absorb(cost, n, m, la, lb, eps, f, g, K);
    int it = 0, rc = 1;
    for (; it < max_iter; it++) {
        int bad = 0;
        for (int i = 0; i < n; i++) {
            double s = 0;
            const double *k = K + (size_t)i * m;
            for (int j = 0; j < m; j++) s += k[j] * v[j];
            u[i] = ra[i] / s;
            bad |= !(u[i] < 1e30 && u[i] > 1e-30);
        }
        for (int j = 0; j < m; j++) v[j] = 0;
        for (int i = 0; i < n; i++) {
            const double *k = K + (size_t)i * m;
            for (int j = 0; j < m; j++) v[j] += k[j] * u[i];
        }
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
        if (it % 5 == 4 || it == max_iter - 1) { /* the row sums' error (column sums are exact) */
            double err = 0;
            for (int i = 0; i < n && err <= tol; i++) {
                double s = 0;
                const double *k = K + (size_t)i * m;
                for (int j = 0; j < m; j++) s += k[j] * v[j];
                err = fmax(err, fabs(u[i] * s - ra[i]));
            }
            if (err <= tol) {
                rc = 0, it++;
                break;
            }
        }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) plan[(size_t)i * m + j] = u[i] * K[(size_t)i * m + j] * v[j];
    if (iters) *iters = it;
    free(w);
    return rc;
}
