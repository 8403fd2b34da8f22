/* lap.c - the linear assignment problem (lap.h): rows are added one at a time; each finds,
 * by a Dijkstra search over reduced costs cost[i][j] - u[i] - v[j] (never negative), the
 * cheapest path of alternating unmatched / matched edges to a free column, then flips the path
 * and updates the potentials so that matched edges keep reduced cost 0. Indices are 1-based
 * inside (0 is the virtual column the new row starts from). */
#include "math/lap.h"

#include <math.h>
#include <stdlib.h>

int sqz_lap_solve(const double *cost, int n, int *col_of_row) {
    if (n < 0) return -1;
    if (n == 0) return 0;
    const size_t m = (size_t)n + 1;
    double *u = calloc(m, sizeof *u), *v = calloc(m, sizeof *v), *dist = malloc(m * sizeof *dist);
    int *row_of_col = calloc(m, sizeof *row_of_col), *prev = malloc(m * sizeof *prev);
    char *done = malloc(m);
    if (!u || !v || !dist || !row_of_col || !prev || !done) {
        free(u), free(v), free(dist), free(row_of_col), free(prev), free(done);
        return -1;
    }
    for (int i = 1; i <= n; i++) {
        row_of_col[0] = i;
        int j0 = 0;
        for (int j = 0; j <= n; j++) dist[j] = INFINITY, done[j] = 0;
        do { /* settle column j0, relax the edges of its row */
            done[j0] = 1;
            const int i0 = row_of_col[j0];
            const double *c = cost + (size_t)(i0 - 1) * n - 1;
            double best = INFINITY;
            int j1 = 0;
            for (int j = 1; j <= n; j++) {
                if (done[j]) continue;
                const double r = c[j] - u[i0] - v[j];
                if (r < dist[j]) dist[j] = r, prev[j] = j0;
                if (dist[j] < best) best = dist[j], j1 = j;
            }
            if (j1 == 0) break; /* cannot happen with finite costs */
            for (int j = 0; j <= n; j++) {
                if (done[j]) u[row_of_col[j]] += best, v[j] -= best;
                else dist[j] -= best;
            }
            j0 = j1;
        } while (row_of_col[j0] != 0);
        while (j0) { /* flip the path back to the virtual column */
            const int j1 = prev[j0];
            row_of_col[j0] = row_of_col[j1];
            j0 = j1;
        }
    }
    for (int j = 1; j <= n; j++) col_of_row[row_of_col[j] - 1] = j - 1;
    free(u), free(v), free(dist), free(row_of_col), free(prev), free(done);
    return 0;
}
