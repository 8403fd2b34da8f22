/* test_sinkhorn.c - entropic optimal transport (math/sinkhorn.h): a 2 x 2 plan in closed form,
 * marginals met to 1e-6 for random costs and uneven marginals, a large eps giving the
 * independent coupling a b^T, and a small eps giving the exact optimal assignment on random
 * costs (math/lap.h's, the plan then a permutation / n). */
#include "test.h"

#include "math/lap.h"
#include "math/sinkhorn.h"

static uint64_t rng = 4242;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void test_closed_form(void) {
    /* C = [[0, 1], [1, 0]], uniform marginals, eps 1: by symmetry P = K / sum K */
    const double C[4] = { 0, 1, 1, 0 };
    double P[4];
    const int rc = sqz_sinkhorn(C, 2, 2, NULL, NULL, 1.0, 1000, 1e-12, P, NULL);
    const double d = 1 / (2 * (1 + exp(-1.0)));
    CHECK(rc == 0, "2 x 2 converges");
    CHECK_CLOSE(P[0], d, 1e-10, 0, "2 x 2: P00 = 1 / (2 (1 + 1/e))");
    CHECK_CLOSE(P[1], d * exp(-1.0), 1e-10, 0, "2 x 2: P01 = P00 / e");
    /* uneven marginals on a 1 x 3: the plan is b */
    const double c3[3] = { 5, -2, 7 }, a1[1] = { 1 }, b3[3] = { 0.2, 0.5, 0.3 };
    double p3[3];
    sqz_sinkhorn(c3, 1, 3, a1, b3, 0.1, 100, 1e-12, p3, NULL);
    CHECK(fabs(p3[0] - 0.2) < 1e-12 && fabs(p3[1] - 0.5) < 1e-12 && fabs(p3[2] - 0.3) < 1e-12,
          "1 x 3: the plan is the column marginal");
    CHECK(sqz_sinkhorn(C, 2, 2, NULL, NULL, 0, 10, 1e-9, P, NULL) == -1, "eps 0 refused");
}

static void test_marginals(void) {
    enum { n = 9, m = 13 };
    double C[n * m], P[n * m], a[n], b[m], sa = 0, sb = 0;
    for (int k = 0; k < n * m; k++) C[k] = urand() * 3;
    for (int i = 0; i < n; i++) sa += a[i] = 0.2 + urand();
    for (int j = 0; j < m; j++) sb += b[j] = 0.2 + urand();
    for (int i = 0; i < n; i++) a[i] /= sa;
    for (int j = 0; j < m; j++) b[j] /= sb;
    const double epss[] = { 1.0, 0.1, 0.01, 0.001 };
    for (int e = 0; e < 4; e++) {
        int it = 0;
        const int rc = sqz_sinkhorn(C, n, m, a, b, epss[e], 200000, 1e-9, P, &it);
        double er = 0, ec = 0, neg = 0;
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < m; j++) s += P[i * m + j], neg = fmin(neg, P[i * m + j]);
            er = fmax(er, fabs(s - a[i]));
        }
        for (int j = 0; j < m; j++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += P[i * m + j];
            ec = fmax(ec, fabs(s - b[j]));
        }
        CHECK(rc == 0 && er < 1e-6 && ec < 1e-6 && neg >= 0, "%d x %d, eps %g: marginals met (rows %.2g, columns %.2g, "
              "%d iterations)", n, m, epss[e], er, ec, it);
    }
    /* large eps: the independent coupling */
    sqz_sinkhorn(C, n, m, a, b, 1e6, 1000, 1e-12, P, NULL);
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) worst = fmax(worst, fabs(P[i * m + j] - a[i] * b[j]));
    CHECK(worst < 1e-6, "eps 1e6: P = a b^T (worst %.2g)", worst);
}

static void test_exact_limit(void) {
    int wrong = 0, not_perm = 0, trials = 0;
    for (int n = 2; n <= 24; n += 2)
        for (int t = 0; t < 5; t++) {
            double C[24 * 24], P[24 * 24], mean = 0;
            int col[24];
            for (int k = 0; k < n * n; k++) mean += C[k] = urand();
            mean /= n * n;
            if (sqz_lap_solve(C, n, col)) { wrong++; continue; }
            sqz_sinkhorn(C, n, n, NULL, NULL, 1e-4 * mean, 100000, 1e-9, P, NULL);
            for (int i = 0; i < n; i++) {
                int best = 0;
                for (int j = 1; j < n; j++)
                    if (P[i * n + j] > P[i * n + best]) best = j;
                wrong += best != col[i];
                not_perm += !(n * P[i * n + col[i]] > 0.5);
            }
            trials++;
        }
    CHECK(wrong == 0 && not_perm == 0, "eps 1e-4 x mean cost: the plan is LAP's exact assignment / n on %d random "
          "costs n = 2..24 (%d rows differ, %d rows where it holds under half the mass)", trials, wrong, not_perm);
}

int main(void) {
    test_closed_form();
    test_marginals();
    test_exact_limit();
    return test_done();
}
