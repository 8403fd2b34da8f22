/* evopress.c - the (1 + lambda) evolutionary search with staged selection (evopress.h). */
#include "search/evopress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "math/rng.h"

int sqz_evo_parse_stages(const char *spec, sqz_evo_opts *o) {
    int n = 0;
    const char *p = spec;
    while (p && *p) {
        int s, w, used;
        if (n == SQZ_EVO_MAX_STAGES || sscanf(p, "%dx%d%n", &s, &w, &used) != 2 || s < 1 || w < 1) return -1;
        o->survivors[n] = s, o->windows[n] = w, n++;
        p += used;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    if (n == 0 || o->survivors[n - 1] != 1) return -1;
    for (int i = 1; i < n; i++)
        if (o->survivors[i] > o->survivors[i - 1]) return -1;
    o->n_stages = n;
    return 0;
}

static int uniform(uint64_t *rng, int n) { return (int)(sqz_splitmix64(rng) % (uint64_t)n); }

typedef struct cand {
    int *g;
    double f;
    int is_parent;
} cand;

static int by_fitness(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->f != y->f) return x->f < y->f ? -1 : 1;
    return y->is_parent - x->is_parent; /* a tie keeps the parent */
}

/* n distinct windows of the pool (all of it when n >= the pool) into win. */
static int draw_windows(uint64_t *rng, int pool, int n, int *win) {
    if (n >= pool) {
        for (int i = 0; i < pool; i++) win[i] = i;
        return pool;
    }
    for (int i = 0; i < n; i++) {
        int w, dup;
        do {
            w = uniform(rng, pool);
            dup = 0;
            for (int j = 0; j < i; j++) dup |= win[j] == w;
        } while (dup);
        win[i] = w;
    }
    return n;
}

sqz_status sqz_evo_run(sqz_ctx *ctx, const sqz_evo_space *sp, const sqz_evo_opts *o, int *parent, long *evals) {
    const int G = sp->n_genes, lam = o->offspring;
    if (lam < 1 || o->n_stages < 1 || o->survivors[o->n_stages - 1] != 1 || sp->n_windows < 1)
        return sqz_fail(ctx, SQZ_ERR_ARG, "search: offspring and stages (the last keeps 1) must be set");
    cand *c = calloc((size_t)lam + 1, sizeof *c);
    int *pool = malloc(((size_t)lam + 1) * G * sizeof *pool), *win = malloc((size_t)sp->n_windows * sizeof *win);
    double *fs = malloc(((size_t)lam + 1) * sizeof *fs);
    if (!c || !pool || !win || !fs) {
        free(c), free(pool), free(win), free(fs);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "search: out of memory");
    }
    for (int i = 0; i <= lam; i++) c[i].g = pool + (size_t)i * G;
    uint64_t rng = o->start_gen > 0 ? o->rng : o->seed ^ 0x9e3779b97f4a7c15ull;
    long n_eval = 0;
    sqz_status st = sp->set_parent(sp->user, parent);
    for (int gen = o->start_gen; gen < o->generations && !st; gen++) {
        /* offspring: distinct, not the parent, within the constraint */
        int n = 0, tries = 0;
        while (n < lam && tries++ < 100 * lam) {
            int *g = c[n].g;
            memcpy(g, parent, (size_t)G * sizeof *g);
            const int a = 1 + uniform(&rng, 3), b = 1 + uniform(&rng, 3), m = a < b ? a : b;
            int ok = 1;
            for (int k = 0; k < m && ok; k++) ok = sp->mutate(sp->user, &rng, g);
            if (!ok || (sp->repair && !sp->repair(sp->user, &rng, parent, g)) || !memcmp(g, parent, (size_t)G * sizeof *g)) continue;
            int dup = 0;
            for (int j = 0; j < n && !dup; j++) dup = !memcmp(g, c[j].g, (size_t)G * sizeof *g);
            if (dup) continue;
            c[n].is_parent = 0;
            n++;
        }
        if (n == 0) break; /* nothing to try: the parent is the answer */
        double best = 0;
        for (int s = 0; s < o->n_stages && !st; s++) {
            if (s == o->n_stages - 1) { /* elitism: the parent competes in the last stage */
                memcpy(c[n].g, parent, (size_t)G * sizeof *parent);
                c[n].is_parent = 1;
                n++;
            }
            const int nw = draw_windows(&rng, sp->n_windows, o->windows[s], win);
            const int size = o->size > 1 ? o->size : 1, rank = size > 1 ? o->rank : 0;
            for (int i = 0; i < n && !st; i++) {
                c[i].f = 0;
                if (i % size != rank) continue;
                st = sp->fitness(sp->user, c[i].g, win, nw, &c[i].f);
                n_eval++;
            }
            if (!st && size > 1) {
                for (int i = 0; i < n; i++) fs[i] = c[i].f;
                if (!(st = o->share(o->user, fs, n)))
                    for (int i = 0; i < n; i++) c[i].f = fs[i];
            }
            qsort(c, (size_t)n, sizeof *c, by_fitness);
            if (n > o->survivors[s]) n = o->survivors[s];
            best = c[0].f;
        }
        if (st) break;
        if (!c[0].is_parent) {
            memcpy(parent, c[0].g, (size_t)G * sizeof *parent);
            st = sp->set_parent(sp->user, parent);
        }
        /* the candidates' genomes were shuffled by the sort: give each slot its own again */
        for (int i = 0; i <= lam; i++) c[i].g = pool + (size_t)i * G;
        if (o->on_generation) o->on_generation(o->user, gen + 1, best, parent);
        sqz_progress(ctx, "search", (uint64_t)gen + 1, (uint64_t)o->generations);
        if (o->after && o->after(o->user, gen + 1, rng, parent)) break;
    }
    if (evals) *evals = n_eval;
    free(c), free(pool), free(win), free(fs);
    return st;
}
