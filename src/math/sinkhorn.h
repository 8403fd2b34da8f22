/* sinkhorn.h - entropic optimal transport (Cuturi 2013): the plan P [n][m] with row sums a and
 * column sums b that minimizes <P, C> - eps H(P) (H the entropy), by Sinkhorn's alternate
 * scalings P = diag(u) K diag(v), K = exp(-C / eps). OT fusion's soft neuron alignment
 * (merge/otfusion.c). As eps -> 0 the plan tends to an exact (unregularized) optimal transport;
 * for n = m and uniform marginals, to a permutation / n (math/lap.h finds it exactly). */
#ifndef SQZ_MATH_SINKHORN_H
#define SQZ_MATH_SINKHORN_H

/* cost [n][m] row-major, finite; a [n], b [m] the marginals (positive, equal sums; NULL:
 * uniform 1/n, 1/m); eps > 0 the entropy's weight in the cost's units. Stabilized: the scalings
 * are absorbed into log-domain potentials whenever they grow past 1e30 (or under 1e-30), so any
 * eps works; eps scaling (stages from the cost's range down to eps by halves, each warm-started
 * from the last, at most 50 iterations each) keeps small ones cheap. Stops once every row sum
 * of the plan is within tol of a (column sums are exact after each iteration), or after
 * max_iter iterations in all. plan [n][m] gets the plan; *iters (may be NULL) the iterations
 * run. Returns 0 converged, 1 not converged within max_iter (plan still the last iterate), -1
 * without memory or on bad arguments. */
int sqz_sinkhorn(const double *cost, int n, int m, const double *a, const double *b, double eps, int max_iter,
                 double tol, double *plan, int *iters);

#endif
