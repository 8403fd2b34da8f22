/* lap.h - the linear assignment problem: a one-to-one matching of n rows to n columns of
 * smallest total cost (PLeaS's and git-re-basin's neuron matching, merge/pleas.c). */
#ifndef SQZ_MATH_LAP_H
#define SQZ_MATH_LAP_H

/* cost [n][n] row-major; col_of_row[i] gets the column matched to row i, so that
 * sum_i cost[i][col_of_row[i]] is smallest. Shortest augmenting paths with row and column
 * potentials (the Hungarian method in Jonker-Volgenant's form): O(n^3) at worst, far less when
 * the optimum is near a diagonal. Returns 0, or -1 without memory (or n < 0). Costs must be
 * finite. */
int sqz_lap_solve(const double *cost, int n, int *col_of_row);

#endif
