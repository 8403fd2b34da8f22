/* evopress.h - EvoPress's evolutionary search (Sieberling, Kuznedelev, Kurtic, Alistarh,
 * "EvoPress: Accurate Dynamic Model Compression via Evolutionary Search", ICML 2025), over any
 * space of per-unit levels: a (1 + lambda) search where
 *   - each generation makes `offspring` distinct children of the parent, each by
 *     min(U{1,3}, U{1,3}) mutations (the space's: quantization swaps a level up in one matrix
 *     and down in another of the same size; depth swaps a dropped block with a kept one);
 *   - selection runs in stages: stage s scores the candidates left on windows[s] calibration
 *     windows drawn afresh from the pool and keeps the survivors[s] fittest; the parent joins
 *     the last stage (elitism: the parent survives unless a child beats it there);
 *   - fitness is the mean KL divergence from the base model's next-token distributions (the
 *     space computes it; a child is run from the first layer where it differs from the parent,
 *     on the parent's cached states).
 * Deterministic for a seed: the offspring, the windows and the choices depend on it alone (and
 * the same under MPI: every rank draws the same numbers and scores its share). */
#ifndef SQZ_SEARCH_EVOPRESS_H
#define SQZ_SEARCH_EVOPRESS_H

#include <stdint.h>

#include "core/ctx.h"

enum { SQZ_EVO_MAX_STAGES = 8 };

typedef struct sqz_evo_space {
    int n_genes;
    int n_windows; /* the pool the stages draw from */
    void *user;
    /* child = parent after one mutation (in place: child starts as a copy of what it mutates);
     * returns 0 when no mutation is possible */
    int (*mutate)(void *user, uint64_t *rng, int *child);
    /* after a child's mutations (NULL: none needed): brings it back within the space's
     * constraint (the budget) or returns 0 to reject it */
    int (*repair)(void *user, uint64_t *rng, const int *parent, int *child);
    /* the new parent: later fitness calls run children from its cached states */
    sqz_status (*set_parent)(void *user, const int *g);
    /* mean KL of g over windows win[0..n) (g may be the parent); not used with window_terms */
    sqz_status (*fitness)(void *user, const int *g, const int *win, int n, double *kl);
    /* or (preferred when set) the same as one term per window: the fitness is (terms[0] + ...
     * + terms[n-1]) / (n per_window), summed in window order. Ranks then split a stage's
     * (candidate, window) pairs, not its candidates: the last stages hold few candidates on
     * many windows, and a rank then runs the parent's states only on its own windows. */
    sqz_status (*window_terms)(void *user, const int *g, const int *win, int n, double *terms);
    double per_window;
} sqz_evo_space;

typedef struct sqz_evo_opts {
    int generations;
    int offspring;
    int n_stages;
    int survivors[SQZ_EVO_MAX_STAGES]; /* the last is 1 */
    int windows[SQZ_EVO_MAX_STAGES];
    uint64_t seed;
    /* after each generation (1-based): its parent's fitness on the last stage's windows */
    void (*on_generation)(void *user, int gen, double fitness, const int *parent);
    void *user;
    /* resume: the state after generation start_gen (0: from the seed parent) */
    int start_gen;
    uint64_t rng;     /* the generator's state at start_gen (used when start_gen > 0) */
    /* stop early when this returns non-zero (checkpoint every K generations and stop) */
    int (*after)(void *user, int gen, uint64_t rng, const int *parent);
    /* Spread over ranks (Open MPI): every rank makes the same offspring and draws the same
     * windows; rank r scores candidates r, r + size, ... (with window_terms: the stage's
     * windows r, r + size, ... of every candidate, or with fewer windows than ranks every
     * size-th (candidate, window) pair); share then sums the n fitnesses or terms (zero where a
     * rank did not score) so that every rank selects alike. size <= 1: alone. */
    int rank, size;
    sqz_status (*share)(void *user, double *f, int n);
} sqz_evo_opts;

/* Parses "8x1,2x4,1x16" (survivors x windows per stage) into o. -1: malformed. */
int sqz_evo_parse_stages(const char *spec, sqz_evo_opts *o);

/* Runs the search from parent (n_genes levels; replaced by the best found). evals: the
 * fitness calls made (NULL ok). */
sqz_status sqz_evo_run(sqz_ctx *ctx, const sqz_evo_space *sp, const sqz_evo_opts *o, int *parent, long *evals);

#endif
