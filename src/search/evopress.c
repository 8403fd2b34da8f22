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

/* Scratch for a stage's window terms: [(lambda + 1) x pool] terms, [pool] windows. */
typedef struct terms_buf {
    double *t, *sub_t;
    int *sub, *pos;
} terms_buf;

/* The rank that scores candidate i on the stage's j-th of nw windows: by window when every
 * rank gets one (each candidate's windows then split evenly, and each rank needs the parent's
 * states on its windows alone), else pair by pair (one window: candidate by candidate). */
static int pair_rank(int i, int j, int nw, int size) { return nw >= size ? j % size : (i * nw + j) % size; }

/* Fitnesses of c[0..n) on win[0..nw) from per-window terms: this rank's pairs, every rank's
 * summed by share, each candidate's terms added in window order (one process's bits). */
static sqz_status score_terms(const sqz_evo_space *sp, const sqz_evo_opts *o, cand *c, int n, const int *win,
                              int nw, terms_buf *b, long *n_eval) {
    const int size = o->size > 1 ? o->size : 1, rank = size > 1 ? o->rank : 0;
    memset(b->t, 0, (size_t)n * nw * sizeof *b->t);
    sqz_status st = SQZ_OK;
    for (int i = 0; i < n && !st; i++) {
        int k = 0;
        for (int j = 0; j < nw; j++)
            if (pair_rank(i, j, nw, size) == rank) b->pos[k] = j, b->sub[k++] = win[j];
        if (k == 0) continue;
        st = sp->window_terms(sp->user, c[i].g, b->sub, k, b->sub_t);
        for (int x = 0; x < k && !st; x++) b->t[(size_t)i * nw + b->pos[x]] = b->sub_t[x];
        ++*n_eval;
    }
    if (!st && size > 1) st = o->share(o->user, b->t, n * nw);
    for (int i = 0; i < n && !st; i++) {
        double f = 0;
        for (int j = 0; j < nw; j++) f += b->t[(size_t)i * nw + j];
        c[i].f = f / ((double)nw * sp->per_window);
    }
    return st;
}

/* Fitnesses of c[0..n) from whole-candidate calls: rank r scores candidates r, r + size, ... */
static sqz_status score_whole(const sqz_evo_space *sp, const sqz_evo_opts *o, cand *c, int n, const int *win,
                              int nw, double *fs, long *n_eval) {
    const int size = o->size > 1 ? o->size : 1, rank = size > 1 ? o->rank : 0;
    sqz_status st = SQZ_OK;
    for (int i = 0; i < n && !st; i++) {
        c[i].f = 0;
        if (i % size != rank) continue;
        st = sp->fitness(sp->user, c[i].g, win, nw, &c[i].f);
        ++*n_eval;
    }
    if (!st && size > 1) {
        for (int i = 0; i < n; i++) fs[i] = c[i].f;
        if (!(st = o->share(o->user, fs, n)))
            for (int i = 0; i < n; i++) c[i].f = fs[i];
    }
    return st;
}

sqz_status sqz_evo_run(sqz_ctx *ctx, const sqz_evo_space *sp, const sqz_evo_opts *o, int *parent, long *evals) {
    const int G = sp->n_genes, lam = o->offspring;
    if (lam < 1 || o->n_stages < 1 || o->survivors[o->n_stages - 1] != 1 || sp->n_windows < 1)
        return sqz_fail(ctx, SQZ_ERR_ARG, "search: offspring and stages (the last keeps 1) must be set");
    cand *c = calloc((size_t)lam + 1, sizeof *c);
    int *pool = malloc(((size_t)lam + 1) * G * sizeof *pool), *win = malloc((size_t)sp->n_windows * sizeof *win);
    double *fs = malloc(((size_t)lam + 1) * sizeof *fs);
    const size_t nwin = (size_t)sp->n_windows;
    terms_buf tb = { .t = malloc(((size_t)lam + 1) * nwin * sizeof *tb.t), .sub_t = malloc(nwin * sizeof *tb.sub_t),
                     .sub = malloc(nwin * sizeof *tb.sub), .pos = malloc(nwin * sizeof *tb.pos) };
    if (!c || !pool || !win || !fs || !tb.t || !tb.sub_t || !tb.sub || !tb.pos) {
        free(c), free(pool), free(win), free(fs), free(tb.t), free(tb.sub_t), free(tb.sub), free(tb.pos);
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
            st = sp->window_terms ? score_terms(sp, o, c, n, win, nw, &tb, &n_eval)
                                  : score_whole(sp, o, c, n, win, nw, fs, &n_eval);
            if (st) break;
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
    free(c), free(pool), free(win), free(fs), free(tb.t), free(tb.sub_t), free(tb.sub), free(tb.pos);
    return st;
}
