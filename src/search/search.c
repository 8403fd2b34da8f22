/* search.c - sqz_search: EvoPress over a model's compression levels (include/sqz.h).
 *
 * Three spaces, each a row of `space_kinds` below:
 *   quant  one gene per matrix (the head included): its level in the level database, cheapest
 *          first. Seed: a row of `seeds` below (opts->alloc): the multiple-choice knapsack on
 *          single-matrix KLs (quant/alloc.h) for the same budget (the default), Layer-Wise
 *          Quantization's two adjacent types by block importance (LIM), or one type for every
 *          matrix; with 0 generations the seed is the answer (the baselines of a Pareto
 *          table, all from the same GPTQ levels). Mutation: one matrix one level up; then, while the child is over
 *          the budget, a random matrix one level down (EvoPress's rule for levels whose steps
 *          differ in size; its same-size swap keeps the budget only when every step costs the
 *          same bits, and the k-quants' steps do not: Q2_K..Q6_K cost 84, 110, 144, 176, 210
 *          bytes per 256 weights). A child with more than 10 changes or that removes more
 *          than 1.25x the bytes it adds is rejected, as in EvoPress.
 *   depth  one gene per block: 1 dropped (its attention and MLP skipped). Seed: random n_drop
 *          blocks. Mutation: a dropped block and a kept one trade places. With sub, one gene per
 *          sub-block (2 l: layer l's attention, 2 l + 1: its MLP), n_drop of them dropped, the
 *          same seed and mutation; the file is sqzf (sqz_drop's sub-blocks).
 *   quant,depth  both: the quant genes, then one gene per block (1 dropped; a dropped block's
 *          matrices cost nothing). Seed: the quant seed, blocks of least importance dropped
 *          only if even Q2_K does not fit. Mutation: quant's, which with probability 1/4
 *          drops or restores a block instead.
 * Fitness: the mean KL divergence from the base model (quant/kl_probe.h: the base logits are
 * kept for every pool window; a child runs from the first layer where it differs from its
 * parent, on the parent's states there).
 *
 * Budget (quant): bits per weight = 8 x file bytes / the original model's parameters, so the
 * file's bytes outside the searched matrices (metadata, tokenizer, norms) count; they are
 * measured once by writing the cheapest configuration to a scratch file. */
#include <math.h>
#include "core/hash.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "math/rng.h"
#include "prune/drop.h"
#include "quant/alloc.h"
#include "quant/kl_probe.h"
#include "quant/mixllm.h"
#include "search/evopress.h"
#include "search/levels_db.h"
#include "sqz.h"
#include "train/comm.h"

enum { MAX_PATH = 4096 };

/* ---------------------------------------------------------------- shared state */

typedef struct space space;

/* a way to choose the quant space's seed (a row of `seeds`, below) */
typedef struct seed_method {
    const char *name;
    const char *card;       /* the written model's method */
    int budget_optional;    /* 1: without a budget, the seed's own bytes are the budget */
    sqz_status (*seed)(space *s, const sqz_search_opts *o, int *g, sqz_search_result *res);
} seed_method;

struct space {
    sqz_ctx *ctx;
    const sqz_model *model;
    const sqz_levels_db *db; /* quant */
    sqz_kl_probe *probe;
    int n;                   /* genes */
    int nq;                  /* quant: the matrices' genes 0..nq-1 (the database's items) */
    int joint;               /* quant,depth: genes nq..nq+L-1 are the blocks, 1 dropped */
    int *item_o, *item_down; /* joint: each layer's wo / w_down item */
    int L;
    int sub;                 /* depth: a gene per sub-block */
    sqz_model pm, ref;       /* the child being scored; the parent (the probe's reference) */
    int *at_pm, *at_ref;     /* the genes pm / ref hold now (-1: not yet set) */
    int *parent;
    uint64_t budget;         /* quant: bytes of the matrices */
    sqz_comm *comm;          /* the ranks (size 1: alone) */
    int C;                   /* tokens per window */
    const int32_t *pool;     /* the calibration windows, n_pool x C tokens */
    size_t n_pool;
    const seed_method *seed_m; /* quant: how the seed is chosen */
};

static int gene_layer(const space *s, int i) {
    if (!s->db) return s->sub ? i / 2 : i; /* depth: a gene per block, or per sub-block */
    if (i >= s->nq) return i - s->nq;      /* joint: block i - nq */
    const int layer = s->db->items[i].layer;
    return layer >= 0 ? layer : s->model->cfg.tied_embeddings ? 0 : s->L;
}

/* ---------------------------------------------------------------- quant (and quant,depth) */

/* 1 when matrix i is in a block g drops (joint space): it costs nothing and is not run */
static int item_dropped(const space *s, const int *g, int i) {
    return s->joint && s->db->items[i].layer >= 0 && g[s->nq + s->db->items[i].layer];
}

static void quant_apply(space *s, sqz_model *m, int *at, const int *g) {
    for (int i = 0; i < s->nq; i++)
        if (at[i] != g[i]) sqz_levels_db_apply(s->db, m, i, g[i]), at[i] = g[i];
    for (int l = 0; s->joint && l < s->L; l++) { /* a dropped block: no wo, no w_down (model.h) */
        const int d = g[s->nq + l];
        if (d) m->layers[l].wo.data = NULL, m->layers[l].w_down.data = NULL;
        else if (at[s->nq + l] != 0) /* restored (or first set): its matrices at their levels again */
            sqz_levels_db_apply(s->db, m, s->item_o[l], g[s->item_o[l]]),
                sqz_levels_db_apply(s->db, m, s->item_down[l], g[s->item_down[l]]);
        at[s->nq + l] = d;
    }
}

static uint64_t quant_bytes(const space *s, const int *g) {
    uint64_t b = 0;
    for (int i = 0; i < s->nq; i++)
        if (!item_dropped(s, g, i)) b += s->db->items[i].lv[g[i]].bytes;
    return b;
}

/* One matrix (of a kept block) one level up; in the joint space, with probability 1/4 instead
 * one block dropped or restored (at least one block stays). */
static int quant_mutate(void *user, uint64_t *rng, int *g) {
    space *s = user;
    if (s->joint && sqz_splitmix64(rng) % 4 == 0) {
        int kept = 0;
        for (int l = 0; l < s->L; l++) kept += !g[s->nq + l];
        const int l = (int)(sqz_splitmix64(rng) % (uint64_t)s->L);
        if (!g[s->nq + l] && kept == 1) return 0;
        g[s->nq + l] = !g[s->nq + l];
        return 1;
    }
    int can = 0;
    for (int i = 0; i < s->nq; i++) can += g[i] < s->db->items[i].n - 1 && !item_dropped(s, g, i);
    if (!can) return 0;
    int pick = (int)(sqz_splitmix64(rng) % (uint64_t)can);
    for (int i = 0; i < s->nq; i++)
        if (g[i] < s->db->items[i].n - 1 && !item_dropped(s, g, i) && pick-- == 0) {
            g[i]++;
            break;
        }
    return 1;
}

/* Within the budget: random matrices of kept blocks one level down while over it. A child
 * whose blocks changed (joint) then spends what is left: random matrices one level up while
 * one fits (a dropped block frees a block's bytes, which EvoPress's rule below would reject).
 * Otherwise, as EvoPress: at most 10 level changes, and no more than 1.25x the bytes removed
 * as added. */
static int quant_repair(void *user, uint64_t *rng, const int *parent, int *g) {
    space *s = user;
    uint64_t b = quant_bytes(s, g);
    while (b > s->budget) {
        int can = 0;
        for (int i = 0; i < s->nq; i++) can += g[i] > 0 && !item_dropped(s, g, i);
        if (!can) return 0;
        int pick = (int)(sqz_splitmix64(rng) % (uint64_t)can);
        for (int i = 0; i < s->nq; i++)
            if (g[i] > 0 && !item_dropped(s, g, i) && pick-- == 0) {
                b -= s->db->items[i].lv[g[i]].bytes - s->db->items[i].lv[g[i] - 1].bytes;
                g[i]--;
                break;
            }
    }
    if (s->joint && memcmp(parent + s->nq, g + s->nq, (size_t)s->L * sizeof *g)) {
        for (;;) {
            int can = 0;
            for (int i = 0; i < s->nq; i++)
                can += g[i] < s->db->items[i].n - 1 && !item_dropped(s, g, i) &&
                       b + s->db->items[i].lv[g[i] + 1].bytes - s->db->items[i].lv[g[i]].bytes <= s->budget;
            if (!can) return 1;
            int pick = (int)(sqz_splitmix64(rng) % (uint64_t)can);
            for (int i = 0; i < s->nq; i++)
                if (g[i] < s->db->items[i].n - 1 && !item_dropped(s, g, i) &&
                    b + s->db->items[i].lv[g[i] + 1].bytes - s->db->items[i].lv[g[i]].bytes <= s->budget && pick-- == 0) {
                    b += s->db->items[i].lv[g[i] + 1].bytes - s->db->items[i].lv[g[i]].bytes;
                    g[i]++;
                    break;
                }
        }
    }
    int changes = 0;
    uint64_t added = 0, removed = 0;
    for (int i = 0; i < s->nq; i++) {
        const sqz_db_level *a = &s->db->items[i].lv[parent[i]], *c = &s->db->items[i].lv[g[i]];
        changes += abs(g[i] - parent[i]);
        if (c->bytes > a->bytes) added += c->bytes - a->bytes;
        else removed += a->bytes - c->bytes;
    }
    return changes <= 10 && (double)added >= 0.8 * (double)removed;
}

/* ---------------------------------------------------------------- depth */

static void depth_apply(space *s, sqz_model *m, int *at, const int *g) {
    for (int l = 0; l < s->L; l++) {
        const int ga = s->sub ? 2 * l : l, gm = s->sub ? 2 * l + 1 : l; /* the genes of its attention, MLP */
        if (at[ga] == g[ga] && at[gm] == g[gm]) continue;
        m->layers[l] = s->model->layers[l];
        if (g[ga]) m->layers[l].wo.data = NULL;
        if (g[gm]) m->layers[l].w_down.data = NULL;
        at[ga] = g[ga], at[gm] = g[gm];
    }
}

static int depth_mutate(void *user, uint64_t *rng, int *g) {
    space *s = user;
    int nd = 0;
    for (int l = 0; l < s->n; l++) nd += g[l];
    if (nd == 0 || nd == s->n) return 0;
    int a = (int)(sqz_splitmix64(rng) % (uint64_t)nd), b = (int)(sqz_splitmix64(rng) % (uint64_t)(s->n - nd));
    for (int l = 0; l < s->n; l++) {
        if (g[l] && a-- == 0) g[l] = 2; /* marked: leaves after the other moves in */
        else if (!g[l] && b-- == 0) g[l] = 3;
    }
    for (int l = 0; l < s->n; l++) g[l] = g[l] == 2 ? 0 : g[l] == 3 ? 1 : g[l];
    return 1;
}

/* ---------------------------------------------------------------- fitness (both spaces) */

static void apply(space *s, sqz_model *m, int *at, const int *g) {
    if (s->db) quant_apply(s, m, at, g);
    else depth_apply(s, m, at, g);
}

static sqz_status set_parent(void *user, const int *g) {
    space *s = user;
    memcpy(s->parent, g, (size_t)s->n * sizeof *g);
    apply(s, &s->ref, s->at_ref, g);
    return sqz_kl_probe_set_ref(s->probe, &s->ref);
}

/* g's KL summed over each window of win[0..n) (the fitness is their mean per position). */
static sqz_status window_terms(void *user, const int *g, const int *win, int n, double *terms) {
    space *s = user;
    int l0 = s->L + 1;
    for (int i = 0; i < s->n; i++)
        if (g[i] != s->parent[i] && gene_layer(s, i) < l0) l0 = gene_layer(s, i);
    if (l0 > s->L) return sqz_kl_probe_ref_sums(s->probe, win, n, terms);
    apply(s, &s->pm, s->at_pm, g);
    return sqz_kl_probe_window_sums(s->probe, &s->pm, l0, win, n, terms);
}

/* Mean KL of g on every pool window (from scratch: l0 = 0); ranks take windows r, r + size,
 * ... and the sums are added in window order, as one process adds them. per_window (NULL or
 * one per window): each window's own mean KL. */
static sqz_status full_kl(space *s, const int *g, double *kl, double *per_window) {
    const int nw = (int)sqz_kl_probe_windows(s->probe), N = s->comm->size, rank = s->comm->rank;
    int *win = malloc((size_t)nw * sizeof *win);
    double *t = calloc((size_t)nw, sizeof *t), *mine = malloc((size_t)nw * sizeof *mine);
    sqz_status st = win && t && mine ? SQZ_OK : sqz_fail(s->ctx, SQZ_ERR_NOMEM, "search: out of memory");
    int k = 0;
    for (int i = rank; !st && i < nw; i += N) win[k++] = i;
    if (!st) apply(s, &s->pm, s->at_pm, g);
    if (!st) st = sqz_kl_probe_window_sums(s->probe, &s->pm, 0, win, k, mine);
    for (int i = 0; !st && i < k; i++) t[win[i]] = mine[i];
    if (!st) st = sqz_comm_ctl_sum(s->comm, t, nw);
    double sum = 0;
    for (int i = 0; !st && i < nw; i++) sum += t[i];
    if (!st) *kl = sum / ((double)nw * s->C);
    for (int i = 0; !st && per_window && i < nw; i++) per_window[i] = t[i] / s->C;
    free(win), free(t), free(mine);
    return st;
}

/* ---------------------------------------------------------------- checkpoint */

static const char CK_MAGIC[8] = { 'S', 'Q', 'Z', 'S', 'R', 'C', 'H', '1' };

typedef struct curve {
    int n, cap;
    double *f;
} curve;

typedef struct run {
    space *s;
    const sqz_search_opts *o;
    sqz_ctx *ctx;
    uint64_t key;
    curve cv;
    double t0;
    int gens_run, stop_at;
    sqz_status ck_status;
    sqz_comm comm;          /* size 1: one process */
} run;

/* The ranks' fitnesses summed (each scored its share; the rest are 0). */
static sqz_status share(void *user, double *f, int n) { return sqz_comm_ctl_sum(&((run *)user)->comm, f, n); }

/* The probe's windows, each rank's to every rank. */
static sqz_status gather(void *user, const void *send, const uint64_t *sizes, void *recv) {
    return sqz_comm_allgather(user, send, sizes, recv);
}

/* Under mpirun: every rank learns whether any has failed so far (a collective that every rank
 * reaches, failed or not, so that none waits alone in the next); a rank that did not fail
 * itself stops with a message that says why. */
static sqz_status ranks_ok(run *r, sqz_status st) {
    if (r->comm.size == 1) return st;
    double failed = st != SQZ_OK;
    const sqz_status cs = sqz_comm_ctl_sum(&r->comm, &failed, 1);
    if (st || cs) return st ? st : cs;
    if (failed > 0)
        return sqz_fail(r->ctx, SQZ_ERR_ARG, "search: rank %d of %d stops: %g other rank(s) failed to start",
                        r->comm.rank, r->comm.size, failed);
    return SQZ_OK;
}

static sqz_status ck_write(run *r, int gen, uint64_t rng, const int *parent) {
    char tmp[MAX_PATH];
    snprintf(tmp, sizeof tmp, "%s.tmp", r->o->checkpoint);
    FILE *f = fopen(tmp, "wb");
    const int32_t hdr[2] = { gen, r->s->n };
    const uint32_t nc = (uint32_t)r->cv.n;
    int ok = f && fwrite(CK_MAGIC, 8, 1, f) == 1 && fwrite(&r->key, 8, 1, f) == 1 && fwrite(hdr, 4, 2, f) == 2 &&
             fwrite(&rng, 8, 1, f) == 1 && fwrite(parent, sizeof *parent, (size_t)r->s->n, f) == (size_t)r->s->n &&
             fwrite(&nc, 4, 1, f) == 1 && fwrite(r->cv.f, 8, nc, f) == nc;
    if (f && fclose(f)) ok = 0;
    if (!ok || rename(tmp, r->o->checkpoint)) {
        unlink(tmp);
        return sqz_fail(r->ctx, SQZ_ERR_IO, "%s: cannot write the checkpoint", r->o->checkpoint);
    }
    return SQZ_OK;
}

static sqz_status ck_read(run *r, int *gen, uint64_t *rng, int *parent) {
    const char *path = r->o->checkpoint;
    FILE *f = fopen(path, "rb");
    if (!f) return sqz_fail(r->ctx, SQZ_ERR_IO, "%s: cannot open the checkpoint", path);
    char m[8];
    uint64_t key;
    int32_t hdr[2];
    uint32_t nc = 0;
    int ok = fread(m, 8, 1, f) == 1 && !memcmp(m, CK_MAGIC, 8) && fread(&key, 8, 1, f) == 1 &&
             fread(hdr, 4, 2, f) == 2 && fread(rng, 8, 1, f) == 1;
    sqz_status st = SQZ_OK;
    if (!ok) st = sqz_fail(r->ctx, SQZ_ERR_FORMAT, "%s: not a sqz search checkpoint", path);
    else if (key != r->key || hdr[1] != r->s->n)
        st = sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: the checkpoint of another search (model, budget or options)", path);
    else if (fread(parent, sizeof *parent, (size_t)r->s->n, f) != (size_t)r->s->n || fread(&nc, 4, 1, f) != 1 ||
             nc > 10000000 || !(r->cv.f = realloc(r->cv.f, (nc + 1) * sizeof *r->cv.f)) ||
             fread(r->cv.f, 8, nc, f) != nc)
        st = sqz_fail(r->ctx, SQZ_ERR_FORMAT, "%s: a truncated checkpoint", path);
    fclose(f);
    if (!st) *gen = hdr[0], r->cv.n = (int)nc, r->cv.cap = (int)nc + 1;
    return st;
}

static void on_gen(void *user, int gen, double f, const int *parent) {
    run *r = user;
    (void)parent;
    if (r->cv.n == r->cv.cap) {
        const int cap = r->cv.cap ? 2 * r->cv.cap : 64;
        double *p = realloc(r->cv.f, (size_t)cap * sizeof *p);
        if (!p) return; /* the curve misses a point; the search goes on */
        r->cv.f = p, r->cv.cap = cap;
    }
    r->cv.f[r->cv.n++] = f;
    if (r->o->on_generation) r->o->on_generation(r->o->user, gen, f, sqz_now() - r->t0);
}

static int after(void *user, int gen, uint64_t rng, const int *parent) {
    run *r = user;
    r->gens_run++;
    const int every = r->o->checkpoint_every > 0 ? r->o->checkpoint_every : 10;
    const int stop = r->stop_at > 0 && r->gens_run >= r->stop_at;
    if (r->o->checkpoint && r->comm.rank == 0 && (gen % every == 0 || stop || gen == r->o->generations))
        if ((r->ck_status = ck_write(r, gen, rng, parent))) return 1;
    return stop;
}

/* ---------------------------------------------------------------- outputs */

static sqz_status write_json(sqz_ctx *ctx, const char *path, const space *s, const int *best, const run *r,
                             const sqz_search_result *res, const char *space_name) {
    cJSON *j = cJSON_CreateObject(), *choice = cJSON_CreateObject(), *cv = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "space", space_name);
    cJSON_AddNumberToObject(j, "budget_bytes", (double)res->budget_bytes);
    cJSON_AddNumberToObject(j, "file_bytes", (double)res->file_bytes);
    cJSON_AddNumberToObject(j, "n_params", (double)res->n_params);
    cJSON_AddNumberToObject(j, "bits_per_weight", res->bits_per_weight);
    cJSON_AddNumberToObject(j, "seed_kl", res->seed_kl);
    cJSON_AddNumberToObject(j, "best_kl", res->best_kl);
    if (res->holdout_windows) {
        cJSON_AddNumberToObject(j, "holdout_windows", res->holdout_windows);
        cJSON_AddNumberToObject(j, "holdout_seed_kl", res->holdout_seed_kl);
        cJSON_AddNumberToObject(j, "holdout_best_kl", res->holdout_best_kl);
        cJSON_AddNumberToObject(j, "holdout_gain_se", res->holdout_gain_se);
        cJSON_AddBoolToObject(j, "kept_seed", res->kept_seed);
    }
    if (s->db) {
        cJSON_AddStringToObject(j, "alloc", s->seed_m->name);
        if (res->n_importance) {
            cJSON *imp = cJSON_CreateArray();
            for (int l = 0; l < res->n_importance; l++) cJSON_AddItemToArray(imp, cJSON_CreateNumber(res->importance[l]));
            cJSON_AddItemToObject(j, "importance_lim", imp);
        }
        cJSON_AddNumberToObject(j, "seed_sum_kl", res->seed_sum_kl);
        cJSON_AddNumberToObject(j, "best_sum_kl", res->best_sum_kl);
        for (int i = 0; i < s->nq; i++)
            if (!item_dropped(s, best, i))
                cJSON_AddStringToObject(choice, s->db->items[i].name, sqz_type_name(s->db->items[i].lv[best[i]].type));
        if (s->joint) {
            cJSON *d = cJSON_CreateArray();
            for (int l = 0; l < s->L; l++)
                if (best[s->nq + l]) cJSON_AddItemToArray(d, cJSON_CreateNumber(l));
            cJSON_AddItemToObject(choice, "dropped", d);
        }
    } else if (!s->sub) {
        cJSON *d = cJSON_CreateArray();
        for (int l = 0; l < s->n; l++)
            if (best[l]) cJSON_AddItemToArray(d, cJSON_CreateNumber(l));
        cJSON_AddItemToObject(choice, "dropped", d);
    } else { /* the layers whose attention / MLP went */
        cJSON *d = cJSON_CreateArray(), *da = cJSON_CreateArray(), *dm = cJSON_CreateArray();
        for (int l = 0; l < s->L; l++) {
            if (best[2 * l]) cJSON_AddItemToArray(da, cJSON_CreateNumber(l));
            if (best[2 * l + 1]) cJSON_AddItemToArray(dm, cJSON_CreateNumber(l));
            if (best[2 * l] && best[2 * l + 1]) cJSON_AddItemToArray(d, cJSON_CreateNumber(l));
        }
        cJSON_AddItemToObject(choice, "dropped", d);
        cJSON_AddItemToObject(choice, "dropped_attn", da);
        cJSON_AddItemToObject(choice, "dropped_mlp", dm);
    }
    cJSON_AddItemToObject(j, "choice", choice);
    for (int i = 0; i < r->cv.n; i++) cJSON_AddItemToArray(cv, cJSON_CreateNumber(r->cv.f[i]));
    cJSON_AddItemToObject(j, "fitness_curve", cv);
    cJSON_AddNumberToObject(j, "evaluations", (double)res->evaluations);
    cJSON_AddNumberToObject(j, "seconds", res->seconds);
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    char tmp[MAX_PATH];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = txt ? fopen(tmp, "w") : NULL;
    int ok = f && fputs(txt, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) ok = 0;
    free(txt);
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot write", path);
    }
    return SQZ_OK;
}

/* The quant configuration g written as GGUF (per-tensor types kept), its card saying how. */
static sqz_status write_quant(space *s, const int *g, const char *path, const sqz_search_opts *o,
                              sqz_convert_result *cr) {
    sqz_model m = *s->model;
    m.layers = malloc((size_t)s->L * sizeof *m.layers);
    int *at = malloc((size_t)s->n * sizeof *at);
    sqz_status st;
    if (!m.layers || !at) st = sqz_fail(s->ctx, SQZ_ERR_NOMEM, "search: out of memory");
    else {
        memcpy(m.layers, s->model->layers, (size_t)s->L * sizeof *m.layers);
        for (int i = 0; i < s->n; i++) at[i] = -1;
        quant_apply(s, &m, at, g);
        int kept = 0, nd = 0; /* joint: the kept blocks renumbered 0.. (as sqz_drop writes them) */
        for (int l = 0; l < s->L; l++)
            if (!s->joint || !g[s->nq + l]) m.layers[kept++] = m.layers[l];
            else nd++;
        m.cfg.n_layers = kept;
        /* the same text for the size probe and the file: the probe measures the metadata's bytes */
        char params[768], budget[64], dropped[320] = "";
        for (int l = 0, k = 0; s->joint && l < s->L && k < (int)sizeof dropped - 16; l++)
            if (g[s->nq + l]) k += snprintf(dropped + k, sizeof dropped - (size_t)k, "%d ", l);
        if (s->joint && nd == 0) snprintf(dropped, sizeof dropped, "none ");
        if (o->bytes) snprintf(budget, sizeof budget, "%llu bytes", (unsigned long long)o->bytes);
        else snprintf(budget, sizeof budget, "%.4g bits per weight", o->bpw);
        snprintf(params, sizeof params, "per-matrix types Q2_K..Q6_K from the level database %s, within %s; "
                 "%s%sseed %s%s%s; %d generations of %d offspring, stages %s, seed %llu", o->db, budget,
                 s->joint ? "blocks dropped: " : "", s->joint ? dropped : "", s->seed_m->name,
                 o->type && !strcmp(s->seed_m->name, "uniform") ? " " : "",
                 o->type && !strcmp(s->seed_m->name, "uniform") ? o->type : "",
                 o->generations < 0 ? 200 : o->generations, o->offspring > 0 ? o->offspring : 32,
                 o->stages ? o->stages : "8x1,2x4,1x32", (unsigned long long)o->seed);
        char method[128];
        snprintf(method, sizeof method, "%s%s", o->generations == 0 ? "" : "evopress from ", s->seed_m->card);
        const sqz_model_card card = { .method = method,
                                      .parameters = params, .calib_tokens = o->n_calib };
        const sqz_convert_opts co = { .type = o->embd_type ? o->embd_type : "q4_k", .pure = 1, .keep_types = 1,
                                      .card = &card };
        st = sqz_convert(s->ctx, &m, path, &co, cr);
    }
    free(m.layers), free(at);
    return st;
}

/* The held-out check (opts->holdout_windows): the seed's and best's KL on windows outside the
 * pool; best becomes the seed unless its gain there is significant: the mean over windows of
 * (seed's KL - best's) above twice its standard error (a paired test: the windows' texts differ
 * far more than the two models do on one window). A search whose pool gain is of the size of
 * the windows' scatter writes the seed, so its answer is never a pool artefact. */
static sqz_status holdout_check(space *s, run *r, const sqz_search_opts *o, const int *seed, int *best,
                                sqz_search_result *res) {
    const size_t want = (size_t)o->holdout_windows;
    int32_t *win = malloc(want * s->C * sizeof *win);
    double *ks = malloc(want * sizeof *ks), *kb = malloc(want * sizeof *kb);
    if (!win || !ks || !kb) {
        free(win), free(ks), free(kb);
        return sqz_fail(s->ctx, SQZ_ERR_NOMEM, "search: out of memory");
    }
    const size_t nh = sqz_calib_heldout(o->calib, o->n_calib, s->C, s->n_pool, want, win);
    sqz_status st = SQZ_OK;
    if (nh) {
        sqz_kl_probe *pool_probe = s->probe, *hp = NULL;
        const sqz_kl_split split = { .rank = r->comm.rank, .size = r->comm.size, .user = &r->comm, .allgather = gather };
        st = sqz_kl_probe_new_split(s->ctx, s->model, win, nh, s->C, &split, &hp);
        if (!st) {
            s->probe = hp;
            st = full_kl(s, seed, &res->holdout_seed_kl, ks);
            if (!st) st = full_kl(s, best, &res->holdout_best_kl, kb);
            s->probe = pool_probe;
        }
        sqz_kl_probe_free(hp);
        res->holdout_windows = (int)nh;
        double mean = 0, var = 0; /* of the per-window gains; every rank has every window's */
        for (size_t i = 0; !st && i < nh; i++) mean += (ks[i] - kb[i]) / (double)nh;
        for (size_t i = 0; !st && i < nh; i++) var += (ks[i] - kb[i] - mean) * (ks[i] - kb[i] - mean);
        res->holdout_gain_se = nh > 1 ? sqrt(var / (double)(nh - 1) / (double)nh) : 0;
        if (!st && !(mean > 2 * res->holdout_gain_se && res->holdout_best_kl < res->holdout_seed_kl)) {
            memcpy(best, seed, (size_t)s->n * sizeof *best);
            res->best_kl = res->seed_kl, res->best_sum_kl = res->seed_sum_kl, res->kept_seed = 1;
        }
    }
    free(win), free(ks), free(kb);
    return st;
}

/* ---------------------------------------------------------------- the search */

/* Seeds: each fills g within s->budget (the bytes of the searched matrices; UINT64_MAX when
 * the row's budget is optional and none was given). */

/* the knapsack on single-matrix KLs */
static sqz_status seed_knapsack(space *s, const sqz_search_opts *o, int *g, sqz_search_result *res) {
    (void)o, (void)res;
    const sqz_levels_db *db = s->db;
    sqz_status st = SQZ_OK;
    int *n_opt = malloc((size_t)s->nq * sizeof *n_opt);
    uint64_t(*bytes)[SQZ_ALLOC_MAX_TYPES] = malloc((size_t)s->nq * sizeof *bytes);
    double(*cost)[SQZ_ALLOC_MAX_TYPES] = malloc((size_t)s->nq * sizeof *cost);
    if (!n_opt || !bytes || !cost) st = sqz_fail(s->ctx, SQZ_ERR_NOMEM, "search: out of memory");
    for (int i = 0; !st && i < s->nq; i++) {
        n_opt[i] = db->items[i].n;
        const int gone = item_dropped(s, g, i); /* joint: a dropped block's matrices cost nothing */
        for (int k = 0; k < db->items[i].n; k++)
            bytes[i][k] = gone ? 0 : db->items[i].lv[k].bytes, cost[i][k] = gone ? 0 : db->items[i].lv[k].kl;
    }
    if (!st && sqz_alloc_knapsack(s->nq, n_opt, (const uint64_t(*)[SQZ_ALLOC_MAX_TYPES])bytes,
                                  (const double(*)[SQZ_ALLOC_MAX_TYPES])cost, s->budget, g))
        st = sqz_fail(s->ctx, SQZ_ERR_NOMEM, "search: out of memory for the knapsack");
    /* the knapsack may round over by a unit per matrix: step down until within the budget */
    while (!st && quant_bytes(s, g) > s->budget) {
        int worst = -1;
        double dk = HUGE_VAL;
        for (int i = 0; i < s->nq; i++)
            if (g[i] > 0 && !item_dropped(s, g, i) && db->items[i].lv[g[i] - 1].kl - db->items[i].lv[g[i]].kl < dk)
                dk = db->items[i].lv[g[i] - 1].kl - db->items[i].lv[g[i]].kl, worst = i;
        if (worst < 0) break;
        g[worst]--;
    }
    free(n_opt), free(bytes), free(cost);
    return st;
}

/* The levels of every item must be the same types in the same order (a database's are). */
static sqz_status same_levels(const space *s) {
    const sqz_db_item *a = &s->db->items[0];
    for (int i = 1; i < s->nq; i++) {
        int same = s->db->items[i].n == a->n;
        for (int k = 0; same && k < a->n; k++) same = s->db->items[i].lv[k].type == a->lv[k].type;
        if (!same) return sqz_fail(s->ctx, SQZ_ERR_FORMAT, "search: %s's levels are not %s's types", s->db->items[i].name, a->name);
    }
    return SQZ_OK;
}

/* Layer-Wise Quantization (Dumitru et al. 2024): units = the head, then the blocks by LIM,
 * most important first (ties: the earlier block). Configuration c = t U + n (U units, t the
 * lower type's level, n units at t + 1, the first n of that order) costs more with every step
 * of c, so the largest c within the budget is the answer; a larger budget never lowers a
 * matrix. */
static sqz_status seed_layerwise(space *s, const sqz_search_opts *o, int *g, sqz_search_result *res) {
    (void)o;
    const int L = s->L, U = L + 1, T = s->db->items[0].n;
    sqz_status st = same_levels(s);
    if (st) return st;
    double *bi = malloc((size_t)L * sizeof *bi);
    int *order = malloc((size_t)U * sizeof *order), *rank = malloc((size_t)(L + 1) * sizeof *rank);
    uint64_t(*ub)[SQZ_ALLOC_MAX_TYPES] = calloc((size_t)U, sizeof *ub);
    if (!bi || !order || !rank || !ub) st = sqz_fail(s->ctx, SQZ_ERR_NOMEM, "search: out of memory");
    if (!st) st = sqz_block_influence(s->ctx, s->model, s->pool, s->n_pool * (size_t)s->C, s->C, bi);
    if (!st) {
        order[0] = -1; /* the head */
        for (int l = 0; l < L; l++) order[l + 1] = l;
        for (int i = 2; i < U; i++) /* insertion sort, LIM descending, stable */
            for (int j = i; j > 1 && bi[order[j]] > bi[order[j - 1]]; j--) {
                const int t = order[j];
                order[j] = order[j - 1], order[j - 1] = t;
            }
        for (int u = 0; u < U; u++) rank[order[u] + 1] = u; /* rank[layer + 1]: its unit */
        for (int i = 0; i < s->nq; i++) {
            const int u = rank[s->db->items[i].layer < 0 ? 0 : s->db->items[i].layer + 1];
            for (int k = 0; k < T && !item_dropped(s, g, i); k++) ub[u][k] += s->db->items[i].lv[k].bytes;
        }
        int best = -1;
        for (int c = 0; c <= (T - 1) * U; c++) {
            const int t = c / U, n = c % U;
            uint64_t b = 0;
            for (int u = 0; u < U; u++) b += ub[u][u < n ? t + 1 : t];
            if (b <= s->budget) best = c;
        }
        if (best < 0) best = 0; /* below the cheapest: the caller refuses the budget */
        const int t = best / U, n = best % U;
        for (int i = 0; i < s->nq; i++) {
            const int u = rank[s->db->items[i].layer < 0 ? 0 : s->db->items[i].layer + 1];
            g[i] = u < n ? t + 1 : t;
        }
        res->n_importance = L < 256 ? L : 256;
        for (int l = 0; l < res->n_importance; l++) res->importance[l] = bi[l];
    }
    free(bi), free(order), free(rank), free(ub);
    return st;
}

/* every matrix at o->type */
static sqz_status seed_uniform(space *s, const sqz_search_opts *o, int *g, sqz_search_result *res) {
    (void)res;
    if (!o->type) return sqz_fail(s->ctx, SQZ_ERR_ARG, "search: alloc uniform needs a type (q2_k..q6_k)");
    for (int i = 0; i < s->nq; i++) {
        g[i] = -1;
        for (int k = 0; k < s->db->items[i].n; k++)
            if (!strcasecmp(sqz_type_name(s->db->items[i].lv[k].type), o->type)) g[i] = k;
        if (g[i] < 0)
            return sqz_fail(s->ctx, SQZ_ERR_ARG, "search: the level database has no %s level for %s (it has Q2_K..Q6_K)",
                            o->type, s->db->items[i].name);
    }
    return SQZ_OK;
}

static const seed_method seeds[] = {
    { "knapsack", "knapsack (single-matrix KL)", 0, seed_knapsack },
    { "layerwise", "layer-wise quantization (LIM: 1 - cos of each block's input and output)", 0, seed_layerwise },
    { "uniform", "uniform type", 1, seed_uniform },
};
enum { N_SEEDS = sizeof seeds / sizeof *seeds };

static const seed_method *find_seed(const char *name) {
    for (int i = 0; i < N_SEEDS; i++)
        if (!strcmp(seeds[i].name, name ? name : "knapsack")) return &seeds[i];
    return NULL;
}

static sqz_status seed_quant(space *s, const sqz_search_opts *o, const char *out_path, int rank, int *g,
                             sqz_search_result *res) {
    /* the bytes outside the matrices, from the cheapest configuration written to scratch */
    char probe[MAX_PATH];
    snprintf(probe, sizeof probe, "%s.size-probe-%d", out_path, rank);
    for (int i = 0; i < s->n; i++) g[i] = 0; /* the joint space's blocks: all kept */
    sqz_convert_result cr;
    sqz_status st = write_quant(s, g, probe, o, &cr);
    unlink(probe);
    if (st) return st;
    const uint64_t fixed = cr.file_bytes - quant_bytes(s, g);
    const int given = o->bytes || o->bpw > 0;
    res->n_params = cr.n_params;
    if (given) {
        res->budget_bytes = o->bytes ? o->bytes : (uint64_t)(o->bpw * (double)cr.n_params / 8.0);
        if (res->budget_bytes < cr.file_bytes && s->joint) { /* joint: blocks of least LIM go until Q2_K fits */
            double *bi = malloc((size_t)s->L * sizeof *bi);
            st = bi ? sqz_block_influence(s->ctx, s->model, s->pool, s->n_pool * (size_t)s->C, s->C, bi)
                    : sqz_fail(s->ctx, SQZ_ERR_NOMEM, "search: out of memory");
            for (int kept = s->L; !st && fixed + quant_bytes(s, g) > res->budget_bytes && kept > 1; kept--) {
                int least = -1;
                for (int l = 0; l < s->L; l++)
                    if (!g[s->nq + l] && (least < 0 || bi[l] <= bi[least])) least = l;
                g[s->nq + least] = 1;
            }
            free(bi);
            if (st) return st;
        }
        if (fixed + quant_bytes(s, g) > res->budget_bytes)
            return sqz_fail(s->ctx, SQZ_ERR_ARG, "search: a budget of %llu bytes (%.3f bpw) is below the smallest "
                            "configuration, %llu bytes (%.3f bpw)", (unsigned long long)res->budget_bytes,
                            8.0 * (double)res->budget_bytes / (double)cr.n_params,
                            (unsigned long long)(fixed + quant_bytes(s, g)),
                            8.0 * (double)(fixed + quant_bytes(s, g)) / (double)cr.n_params);
        s->budget = res->budget_bytes - fixed;
    } else if (s->seed_m->budget_optional) s->budget = UINT64_MAX;
    else return sqz_fail(s->ctx, SQZ_ERR_ARG, "search: give a budget (bits per weight or bytes)");
    if ((st = s->seed_m->seed(s, o, g, res))) return st;
    if (!given) s->budget = quant_bytes(s, g), res->budget_bytes = fixed + s->budget;
    if (quant_bytes(s, g) > s->budget)
        return sqz_fail(s->ctx, SQZ_ERR_ARG, "search: the %s seed needs %llu bytes, over the budget of %llu",
                        s->seed_m->name, (unsigned long long)(fixed + quant_bytes(s, g)),
                        (unsigned long long)res->budget_bytes);
    return SQZ_OK;
}

static double sum_kl(const space *s, const int *g) {
    double k = 0;
    for (int i = 0; s->db && i < s->nq; i++)
        if (!item_dropped(s, g, i)) k += s->db->items[i].lv[g[i]].kl;
    return k;
}

/* depth by enumeration: every subset of n_drop blocks (or sub-blocks), on every pool window */
static sqz_status brute_depth(space *s, int n_drop, int *best, long *evals) {
    const int L = s->n;
    int idx[64];
    for (int i = 0; i < n_drop; i++) idx[i] = i;
    int *g = calloc((size_t)L, sizeof *g);
    if (!g) return sqz_fail(s->ctx, SQZ_ERR_NOMEM, "search: out of memory");
    double bk = HUGE_VAL;
    sqz_status st = SQZ_OK;
    for (;;) {
        memset(g, 0, (size_t)L * sizeof *g);
        for (int i = 0; i < n_drop; i++) g[idx[i]] = 1;
        double kl;
        if ((st = full_kl(s, g, &kl, NULL))) break;
        ++*evals;
        if (kl < bk) bk = kl, memcpy(best, g, (size_t)L * sizeof *g);
        int i = n_drop - 1; /* the next subset in lexicographic order */
        while (i >= 0 && idx[i] == L - n_drop + i) i--;
        if (i < 0) break;
        idx[i]++;
        for (int j = i + 1; j < n_drop; j++) idx[j] = idx[j - 1] + 1;
    }
    free(g);
    return st;
}

/* the spaces (opts->space): which genes there are and how a child is made */
/* "a, b, c": the names of a table's n rows (stride bytes apart, each starting with its
 * const char *name), for the "unknown ... (known: ...)" messages */
static void join_names(const void *table, int n, size_t stride, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *name = *(const char *const *)((const char *)table + (size_t)i * stride);
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? ", " : "", name);
    }
}

typedef struct space_kind {
    const char *name, *alias;
    int quant, depth; /* genes: the level database's matrices; blocks (1 dropped) */
    int (*mutate)(void *user, uint64_t *rng, int *g);
} space_kind;

static const space_kind space_kinds[] = {
    { "quant", NULL, 1, 0, quant_mutate },
    { "depth", NULL, 0, 1, depth_mutate },
    { "quant,depth", "depth,quant", 1, 1, quant_mutate },
};
enum { N_SPACE_KINDS = (int)(sizeof space_kinds / sizeof space_kinds[0]) };

static const space_kind *find_space_kind(const char *name) {
    for (int i = 0; i < N_SPACE_KINDS; i++)
        if (!strcmp(name, space_kinds[i].name) || (space_kinds[i].alias && !strcmp(name, space_kinds[i].alias)))
            return &space_kinds[i];
    return NULL;
}

sqz_status sqz_search(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_search_opts *o,
                      sqz_search_result *res) {
    sqz_search_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    if (!model || !out_path || !*out_path || !o) return sqz_fail(ctx, SQZ_ERR_ARG, "search: missing model, output or options");
    sqz_status sub_st = sqz_model_require_subblocks(ctx, model, "search");
    if (sub_st) return sub_st;
    const space_kind *kind = find_space_kind(o->space ? o->space : "quant");
    if (!kind) {
        char known[256];
        join_names(space_kinds, N_SPACE_KINDS, sizeof *space_kinds, known, sizeof known);
        return sqz_fail(ctx, SQZ_ERR_ARG, "search: unknown space '%s' (known: %s)", o->space, known);
    }
    const char *space_name = kind->name;
    const int is_quant = kind->quant, joint = kind->quant && kind->depth;
    if (joint && o->brute_force) return sqz_fail(ctx, SQZ_ERR_ARG, "search: brute force enumerates depth alone");
    const int L = model->cfg.n_layers;
    if (is_quant && !o->db) return sqz_fail(ctx, SQZ_ERR_ARG, "search: the quant space needs a level database (sqz levels)");
    const seed_method *seed_m = find_seed(o->alloc);
    if (!seed_m) {
        char known[256];
        join_names(seeds, N_SEEDS, sizeof *seeds, known, sizeof known);
        return sqz_fail(ctx, SQZ_ERR_ARG, "search: unknown alloc '%s' (known: %s)", o->alloc, known);
    }
    if (!is_quant && o->alloc) return sqz_fail(ctx, SQZ_ERR_ARG, "search: alloc chooses the quant space's seed, not depth's");
    if (o->type && strcmp(seed_m->name, "uniform"))
        return sqz_fail(ctx, SQZ_ERR_ARG, "search: a type is uniform's (alloc uniform), not %s's", seed_m->name);
    if (is_quant && !(o->bpw > 0) && !o->bytes && !seed_m->budget_optional)
        return sqz_fail(ctx, SQZ_ERR_ARG, "search: give a budget (bits per weight or bytes)");
    const int units = o->sub ? 2 * L : L; /* depth's genes */
    if (o->sub && is_quant) return sqz_fail(ctx, SQZ_ERR_ARG, "search: sub-blocks are a depth space's genes, not quant's");
    if (!is_quant && (o->n_drop < 1 || o->n_drop >= units || o->n_drop > 64))
        return sqz_fail(ctx, SQZ_ERR_ARG, "search: drop 1..%d of the %d %s, not %d", units - 1 < 64 ? units - 1 : 64, units,
                        o->sub ? "sub-blocks" : "blocks", o->n_drop);
    {
        const size_t n = strlen(out_path);
        if (o->sub && n >= 5 && !strcmp(out_path + n - 5, ".gguf"))
            return sqz_fail(ctx, SQZ_ERR_ARG,
                            "%s: a model without some sub-blocks is an sqzf file, which llama.cpp does not run: name it .sqzf",
                            out_path);
    }
    sqz_evo_opts eo = { .generations = o->generations < 0 ? 200 : o->generations,
                        .offspring = o->offspring > 0 ? o->offspring : 32, .seed = o->seed };
    if (sqz_evo_parse_stages(o->stages ? o->stages : "8x1,2x4,1x32", &eo))
        return sqz_fail(ctx, SQZ_ERR_ARG, "search: stages '%s': want SURVIVORSxWINDOWS,... (non-increasing, the last 1x..)",
                        o->stages);
    if (o->resume && !o->checkpoint) return sqz_fail(ctx, SQZ_ERR_ARG, "search: resume needs a checkpoint path");
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512, want = o->pool_windows > 0 ? o->pool_windows : 32;
    const double t0 = sqz_now();

    sqz_levels_db db;
    memset(&db, 0, sizeof db);
    space s = { .ctx = ctx, .model = model, .L = L, .sub = !is_quant && o->sub, .pm = *model, .ref = *model };
    run r = { .o = o, .ctx = ctx, .t0 = t0, .stop_at = o->max_generations_this_run, .comm = { .size = 1 } };
    int32_t *pool = NULL;
    int *seed = NULL, *best = NULL;
    size_t n_pool = 0;
    sqz_status st = SQZ_OK;
    s.pm.layers = s.ref.layers = NULL; /* their own, allocated below (done: frees them) */
    s.comm = &r.comm, s.C = C, s.seed_m = seed_m;
    int world = 1;
    if (sqz_comm_launched(&world, NULL, NULL) && world > 1 && (st = sqz_comm_open(ctx, &r.comm))) return st;
    res->mpi_ranks = r.comm.size, res->mpi_rank = r.comm.rank;
    /* a failure from here to `started` goes there: the ranks then learn of it together */
    if (is_quant && (st = sqz_levels_db_load(ctx, o->db, model, &db))) goto started;
    s.db = is_quant ? &db : NULL;
    s.nq = is_quant ? db.n_items : 0;
    s.joint = joint;
    s.n = is_quant ? db.n_items + (joint ? L : 0) : units;
    if (joint) {
        s.item_o = malloc((size_t)L * sizeof *s.item_o), s.item_down = malloc((size_t)L * sizeof *s.item_down);
        if (!s.item_o || !s.item_down) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "search: out of memory");
            goto started;
        }
        for (int l = 0; l < L; l++) s.item_o[l] = s.item_down[l] = -1;
        for (int i = 0; i < db.n_items; i++)
            if (db.items[i].layer >= 0 && db.items[i].mat == 3) s.item_o[db.items[i].layer] = i;
            else if (db.items[i].layer >= 0 && db.items[i].mat == 6) s.item_down[db.items[i].layer] = i;
        for (int l = 0; l < L; l++)
            if (s.item_o[l] < 0 || s.item_down[l] < 0) {
                st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: block %d lacks its attn_output or ffn_down level", o->db, l);
                goto started;
            }
    }
    s.pm.layers = malloc((size_t)L * sizeof *s.pm.layers);
    s.ref.layers = malloc((size_t)L * sizeof *s.ref.layers);
    s.at_pm = malloc((size_t)s.n * sizeof *s.at_pm);
    s.at_ref = malloc((size_t)s.n * sizeof *s.at_ref);
    s.parent = malloc((size_t)s.n * sizeof *s.parent);
    seed = malloc((size_t)s.n * sizeof *seed);
    best = malloc((size_t)s.n * sizeof *best);
    pool = malloc((size_t)want * C * sizeof *pool);
    if (!s.pm.layers || !s.ref.layers || !s.at_pm || !s.at_ref || !s.parent || !seed || !best || !pool) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "search: out of memory");
        goto started;
    }
    memcpy(s.pm.layers, model->layers, (size_t)L * sizeof *s.pm.layers);
    memcpy(s.ref.layers, model->layers, (size_t)L * sizeof *s.ref.layers);
    for (int i = 0; i < s.n; i++) s.at_pm[i] = s.at_ref[i] = is_quant ? -1 : 0;
    if (o->calib)
        for (size_t i = 0; i < o->n_calib; i++)
            if (o->calib[i] < 0 || o->calib[i] >= model->cfg.vocab_size) {
                st = sqz_fail(ctx, SQZ_ERR_RANGE, "calibration token %d outside the vocabulary", o->calib[i]);
                goto started;
            }
    n_pool = o->calib ? sqz_calib_spread(o->calib, o->n_calib, (size_t)want * C, C, pool) / (size_t)C : 0;
    if (n_pool < 1) st = sqz_fail(ctx, SQZ_ERR_ARG, "search: needs at least one window of %d calibration tokens", C);
    s.pool = pool, s.n_pool = n_pool;
started:
    if ((st = ranks_ok(&r, st))) goto done;

    /* the seed */
    if (is_quant) st = seed_quant(&s, o, out_path, r.comm.rank, seed, res);
    else {
        uint64_t rng = o->seed ^ 0x5851f42d4c957f2dull;
        for (int l = 0; l < s.n; l++) seed[l] = 0;
        for (int k = 0; k < o->n_drop;) {
            const int l = (int)(sqz_splitmix64(&rng) % (uint64_t)s.n);
            if (!seed[l]) seed[l] = 1, k++;
        }
    }
    if (st && r.comm.size == 1) goto done;
    if (!st) memcpy(best, seed, (size_t)s.n * sizeof *best);

    /* the search (or the enumeration) */
    const sqz_evo_space sp = { .n_genes = s.n, .n_windows = (int)n_pool, .user = &s,
                               .mutate = kind->mutate,
                               .repair = is_quant ? quant_repair : NULL, .set_parent = set_parent, .window_terms = window_terms,
                               .per_window = C };
    {
        const char *names[4] = { space_name, o->stages ? o->stages : "", seed_m->name, o->type ? o->type : "" };
        uint64_t h = sqz_fnv1a_init();
        for (int i = 0; i < 4; i++) h = sqz_fnv1a(h, names[i], strlen(names[i]) + 1);
        const double nums[8] = { (double)res->budget_bytes, o->n_drop, (double)o->seed, eo.offspring,
                                 eo.generations, C, (double)n_pool, s.n };
        h = sqz_fnv1a(h, nums, sizeof nums);
        r.key = sqz_fnv1a(h, pool, n_pool * C * sizeof *pool);
    }
    r.s = &s;
    eo.on_generation = on_gen, eo.user = &r, eo.after = after;
    eo.rank = r.comm.rank, eo.size = r.comm.size, eo.share = share;
    if (r.comm.size > 1) { /* every rank learns whether any failed to start, and that all run the same search */
        int same = 0;
        if ((st = ranks_ok(&r, st))) goto done;
        if ((st = sqz_comm_ctl_same(&r.comm, r.key, &same))) goto done;
        if (!same) {
            st = sqz_fail(ctx, SQZ_ERR_ARG, "search: the %d ranks were given different options, models or text",
                          r.comm.size);
            goto done;
        }
    }
    { /* the base model over the pool: under mpirun each rank runs its share of the windows */
        const sqz_kl_split split = { .rank = r.comm.rank, .size = r.comm.size, .user = &r.comm, .allgather = gather };
        if ((st = sqz_kl_probe_new_split(ctx, model, pool, n_pool, C, &split, &s.probe))) goto done;
    }
    if (o->brute_force && !is_quant) {
        st = brute_depth(&s, o->n_drop, best, &res->evaluations);
        res->finished = 1;
    } else {
        if (o->resume) {
            int gen = 0;
            st = ck_read(&r, &gen, &eo.rng, best);
            if ((st = ranks_ok(&r, st))) goto done;
            eo.start_gen = gen;
        }
        st = sqz_evo_run(ctx, &sp, &eo, best, &res->evaluations);
        if (!st) st = r.ck_status;
        res->generations = r.gens_run;
        res->finished = eo.start_gen + r.gens_run >= eo.generations || eo.generations == 0;
    }
    if (st) goto done;

    if ((st = full_kl(&s, seed, &res->seed_kl, NULL)) || (st = full_kl(&s, best, &res->best_kl, NULL))) goto done;
    res->seed_sum_kl = sum_kl(&s, seed), res->best_sum_kl = sum_kl(&s, best);
    if (s.db && res->finished && o->holdout_windows > 0 && (st = holdout_check(&s, &r, o, seed, best, res))) goto done;
    for (int l = 0; !is_quant && !s.sub && l < L; l++)
        if (best[l] && res->n_dropped < 256) res->dropped[res->n_dropped++] = l;
    for (int l = 0; joint && l < L; l++)
        if (best[s.nq + l] && res->n_dropped < 256) res->dropped[res->n_dropped++] = l;
    for (int l = 0; s.sub && l < L && l < 256; l++) {
        if (best[2 * l]) res->dropped_attn[res->n_dropped_attn++] = l;
        if (best[2 * l + 1]) res->dropped_mlp[res->n_dropped_mlp++] = l;
        if (best[2 * l] && best[2 * l + 1]) res->dropped[res->n_dropped++] = l; /* the whole block */
    }

    res->mpi_bytes_sent = r.comm.ctl_bytes;
    if (res->finished && r.comm.rank == 0) { /* the model (rank 0 writes) */
        sqz_convert_result cr;
        if (is_quant) st = write_quant(&s, best, out_path, o, &cr);
        else {
            const sqz_drop_opts d = s.sub ? (sqz_drop_opts){ .type = "f16", .sub = 1,
                                                              .attn_list = res->dropped_attn, .n_attn_list = res->n_dropped_attn,
                                                              .mlp_list = res->dropped_mlp, .n_mlp_list = res->n_dropped_mlp }
                                          : (sqz_drop_opts){ .blocks = res->dropped, .n_blocks = res->n_dropped, .type = "f16" };
            sqz_drop_result *dr = malloc(sizeof *dr);
            st = dr ? sqz_drop(ctx, model, out_path, &d, dr) : sqz_fail(ctx, SQZ_ERR_NOMEM, "search: out of memory");
            cr = dr ? dr->convert : (sqz_convert_result){ 0 };
            free(dr);
            res->budget_bytes = cr.file_bytes;
            /* bpw's denominator is the original's parameters: the dropped (sub-)blocks' count too */
            res->n_params = cr.n_params;
            for (int i = 0; i < L; i++) {
                const int da = s.sub ? best[2 * i] : best[i], dm = s.sub ? best[2 * i + 1] : best[i];
                sqz_layer_weights w = model->layers[i];
                for (int k = 0; k < 7; k++) /* q, k, v, o, gate, up, down */
                    if (k < 4 ? da : dm) {
                        const sqz_tensor *t = sqz_mixllm_matrix(&w, k, NULL);
                        res->n_params += (uint64_t)t->rows * (uint64_t)t->cols;
                    }
                res->n_params += (uint64_t)(da + dm) * (uint64_t)model->cfg.dim; /* their norms */
            }
        }
        if (!st) {
            res->file_bytes = cr.file_bytes;
            res->bits_per_weight = 8.0 * (double)cr.file_bytes / (double)res->n_params;
        }
    }
    res->seconds = sqz_now() - t0;
    if (!st && o->json_path && r.comm.rank == 0) st = write_json(ctx, o->json_path, &s, best, &r, res, space_name);
done:
    sqz_comm_close(&r.comm);
    sqz_kl_probe_free(s.probe);
    sqz_levels_db_free(&db);
    free(s.pm.layers), free(s.ref.layers), free(s.at_pm), free(s.at_ref), free(s.parent), free(s.item_o), free(s.item_down);
    free(seed), free(best), free(pool), free(r.cv.f);
    return st;
}
