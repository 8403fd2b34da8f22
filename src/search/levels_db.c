/* levels_db.c - the level database: build (resumable), load, apply (levels_db.h). */
#include "search/levels_db.h"
#include "core/hash.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant/mixllm.h"
#include "sqz.h"
#include "train/comm.h"

static const char MAGIC[8] = { 'S', 'Q', 'Z', 'L', 'V', 'D', 'B', '1' };
enum { REC_MAGIC = 0x4345524c /* "LREC" */, MAX_PATH = 4096 };

typedef struct rec_head {
    uint32_t magic, item, type, zero;
    uint64_t bytes;
    double kl;
} rec_head;

static const char *mat_names[SQZ_MIX_N_MATS] = { "attn_q", "attn_k", "attn_v", "attn_output",
                                                 "ffn_gate", "ffn_up", "ffn_down" };

void sqz_db_item_name(const sqz_model *model, int item, char *name) {
    const int L = model->cfg.n_layers;
    if (item >= L * SQZ_MIX_N_MATS)
        snprintf(name, 64, "%s", model->cfg.tied_embeddings ? "token_embd.weight" : "output.weight");
    else
        snprintf(name, 64, "blk.%d.%s.weight", item / SQZ_MIX_N_MATS, mat_names[item % SQZ_MIX_N_MATS]);
}

uint64_t sqz_levels_db_key(const sqz_model *model, const int32_t *tokens, size_t n_tokens, int C,
                           const sqz_alloc_opts *o) {
    const sqz_config *c = &model->cfg;
    const int shape[6] = { c->n_layers, c->dim, c->hidden_dim, c->vocab_size, c->n_heads, c->n_kv_heads };
    uint64_t h = sqz_fnv1a(sqz_fnv1a_init(), shape, sizeof shape);
    /* a sample of the weights: the first row of every block matrix */
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < SQZ_MIX_N_MATS; k++) {
            const sqz_tensor *t = sqz_mixllm_matrix(&model->layers[l], k, NULL);
            h = sqz_fnv1a(h, t->data, sqz_type_row_size(t->type, t->cols));
        }
    h = sqz_fnv1a(h, tokens, n_tokens * sizeof *tokens);
    const double opt[4] = { (double)C, o->damp, (double)o->eval_windows, (double)o->plain_gptq };
    h = sqz_fnv1a(h, opt, sizeof opt);
    return sqz_fnv1a(h, &o->act_order, sizeof o->act_order);
}

void sqz_levels_db_free(sqz_levels_db *db) {
    if (!db) return;
    free(db->items);
    free(db->blob);
    memset(db, 0, sizeof *db);
}

/* ---------------------------------------------------------------- reading */

/* Reads the records of f (after the header) into db (items already named and shaped). Stops
 * at the first incomplete record; *good: the offset after the last whole one. */
static sqz_status read_records(sqz_ctx *ctx, FILE *f, const char *path, sqz_levels_db *db, long *good) {
    struct stat sb;
    if (fstat(fileno(f), &sb)) return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot stat", path);
    free(db->blob);
    db->blob = malloc((size_t)sb.st_size + 1);
    db->blob_len = 0;
    if (!db->blob) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    *good = ftell(f);
    rec_head r;
    while (fread(&r, sizeof r, 1, f) == 1) {
        if (r.magic != REC_MAGIC || (int)r.item >= db->n_items || r.zero)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: a damaged record at offset %ld", path, *good);
        sqz_db_item *it = &db->items[r.item];
        const uint64_t want = (uint64_t)it->rows * sqz_type_row_size((sqz_type)r.type, it->cols);
        if (!sqz_type_get((sqz_type)r.type) || r.bytes != want || it->n >= SQZ_ALLOC_MAX_TYPES ||
            r.bytes > (uint64_t)sb.st_size)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: a damaged record for %s at offset %ld", path, it->name, *good);
        if (fread(db->blob + db->blob_len, 1, r.bytes, f) != r.bytes) break; /* cut short */
        int dup = 0;
        for (int k = 0; k < it->n; k++) dup |= it->lv[k].type == (sqz_type)r.type;
        if (!dup)
            it->lv[it->n++] = (sqz_db_level){ .type = (sqz_type)r.type, .bytes = r.bytes, .kl = r.kl,
                                              .data = (const void *)(uintptr_t)db->blob_len };
        db->blob_len += r.bytes;
        *good = ftell(f);
    }
    return SQZ_OK;
}

/* Levels cheapest first, data offsets made pointers. */
static void finish_items(sqz_levels_db *db) {
    for (int i = 0; i < db->n_items; i++) {
        sqz_db_item *it = &db->items[i];
        for (int k = 0; k < it->n; k++) it->lv[k].data = db->blob + (uintptr_t)it->lv[k].data;
        for (int a = 1; a < it->n; a++)
            for (int b = a; b > 0 && it->lv[b].bytes < it->lv[b - 1].bytes; b--) {
                const sqz_db_level t = it->lv[b];
                it->lv[b] = it->lv[b - 1], it->lv[b - 1] = t;
            }
    }
}

static sqz_status init_items(sqz_ctx *ctx, const sqz_model *model, sqz_levels_db *db) {
    const int L = model->cfg.n_layers;
    db->n_items = L * SQZ_MIX_N_MATS + 1;
    db->items = calloc((size_t)db->n_items, sizeof *db->items);
    if (!db->items) return sqz_fail(ctx, SQZ_ERR_NOMEM, "levels: out of memory");
    for (int i = 0; i < db->n_items; i++) {
        sqz_db_item *it = &db->items[i];
        sqz_db_item_name(model, i, it->name);
        const sqz_tensor *t;
        if (i < L * SQZ_MIX_N_MATS) {
            t = sqz_mixllm_matrix(&model->layers[i / SQZ_MIX_N_MATS], i % SQZ_MIX_N_MATS, NULL);
            it->layer = i / SQZ_MIX_N_MATS, it->mat = i % SQZ_MIX_N_MATS;
        } else {
            t = model->cfg.tied_embeddings ? &model->tok_embd : &model->output;
            it->layer = -1, it->mat = SQZ_MIX_N_MATS;
        }
        it->rows = t->rows, it->cols = t->cols;
    }
    return SQZ_OK;
}

/* Opens path and checks its header against n_items (and key, unless NULL). */
static sqz_status open_db(sqz_ctx *ctx, const char *path, const char *mode, int n_items, const uint64_t *key,
                          FILE **out) {
    FILE *f = fopen(path, mode);
    if (!f) return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot open the level database", path);
    char m[8];
    uint64_t k;
    uint32_t n;
    if (fread(m, 8, 1, f) != 1 || memcmp(m, MAGIC, 8) || fread(&k, 8, 1, f) != 1 || fread(&n, 4, 1, f) != 1) {
        fclose(f);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: not a sqz level database", path);
    }
    if ((int)n != n_items || (key && k != *key)) {
        fclose(f);
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "%s: built for another model%s (remove it or give another path)", path,
                        key ? ", calibration text or options" : "");
    }
    *out = f;
    return SQZ_OK;
}

sqz_status sqz_levels_db_load(sqz_ctx *ctx, const char *path, const sqz_model *model, sqz_levels_db *db) {
    memset(db, 0, sizeof *db);
    sqz_status st = init_items(ctx, model, db);
    FILE *f = NULL;
    long good = 0;
    if (!st) st = open_db(ctx, path, "rb", db->n_items, NULL, &f);
    if (!st) st = read_records(ctx, f, path, db, &good);
    if (f) fclose(f);
    for (int i = 0; !st && i < db->n_items; i++)
        if (db->items[i].n < 1) st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: no level of %s", path, db->items[i].name);
    if (st) {
        sqz_levels_db_free(db);
        return st;
    }
    finish_items(db);
    return SQZ_OK;
}

void sqz_levels_db_apply(const sqz_levels_db *db, sqz_model *m, int item, int k) {
    const sqz_db_item *it = &db->items[item];
    const sqz_tensor t = { .type = it->lv[k].type, .rows = it->rows, .cols = it->cols, .data = (void *)it->lv[k].data };
    if (it->layer < 0) {
        if (m->cfg.tied_embeddings) m->tok_embd = t, m->output = t;
        else m->output = t;
    } else {
        *sqz_mixllm_matrix(&m->layers[it->layer], it->mat, NULL) = t;
    }
}

/* ---------------------------------------------------------------- building
 *
 * Under mpirun -np N the (item, type) levels still to measure are dealt round-robin, in the
 * order one process measures them, so the split does not depend on timing. Every rank runs
 * the Hessian passes (each layer's inputs need all windows) and measures its own levels; after
 * each layer's matrices and after the head (the hook's sync) the ranks' records go to rank 0,
 * which appends them in one process's order: the database is the same bytes as one process
 * writes, and a stopped build leaves a part file of whole layers that resumes (with any number
 * of ranks: rank 0 reads it and deals what is missing). Rank 0 alone touches the files. */

/* The types sqz_alloc_levels measures, in its order (alloc.c's ladder). */
static const sqz_type ladder[SQZ_ALLOC_MAX_TYPES] = { SQZ_TYPE_Q2_K, SQZ_TYPE_Q3_K, SQZ_TYPE_Q4_K,
                                                      SQZ_TYPE_Q5_K, SQZ_TYPE_Q6_K };
enum { KNOWN = -1 }; /* a level the part file holds */

static int ladder_at(sqz_type t) {
    for (int k = 0; k < SQZ_ALLOC_MAX_TYPES; k++)
        if (ladder[k] == t) return k;
    return -1;
}

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

typedef struct builder {
    sqz_ctx *ctx;
    FILE *f;             /* rank 0: the part file */
    const char *path;
    sqz_levels_db *have; /* rank 0: what the part file holds */
    int (*who)[SQZ_ALLOC_MAX_TYPES]; /* [item][ladder type]: KNOWN or the rank that measures it */
    sqz_comm comm;       /* size 1: one process, records written as they come */
    buf mine, all;       /* ranks: this rank's records since the last sync; everyone's */
    double *status;      /* [1 + size]: the exchange's failures and buffer lengths */
    int written;         /* records this build measured (every rank's) */
    int stopped;         /* the ranks know this build failed: no more collectives */
} builder;

static int have_level(void *user, int item, sqz_type t, double *kl) {
    const builder *b = user;
    const int x = ladder_at(t), who = x < 0 ? 0 : b->who[item][x];
    *kl = NAN;
    if (who == KNOWN) {
        const sqz_db_item *it = &b->have->items[item];
        for (int k = 0; k < it->n; k++)
            if (it->lv[k].type == t) *kl = it->lv[k].kl;
        return 1;
    }
    return who != b->comm.rank; /* another rank's */
}

static sqz_status write_rec(builder *b, const rec_head *r, const void *data) {
    if (fwrite(r, sizeof *r, 1, b->f) != 1 || fwrite(data, 1, r->bytes, b->f) != r->bytes)
        return sqz_fail(b->ctx, SQZ_ERR_IO, "%s: write failed (disk full?)", b->path);
    return SQZ_OK;
}

static sqz_status got_level(void *user, int item, sqz_type t, const void *data, size_t bytes, double kl) {
    builder *b = user;
    const rec_head r = { .magic = REC_MAGIC, .item = (uint32_t)item, .type = (uint32_t)t, .bytes = bytes, .kl = kl };
    if (b->comm.size > 1) { /* sent at the next sync; the buffer holds a whole layer's levels */
        if (b->mine.len + sizeof r + bytes > b->mine.cap)
            return sqz_fail(b->ctx, SQZ_ERR_INTERNAL, "levels: a layer's levels outgrew their buffer");
        memcpy(b->mine.p + b->mine.len, &r, sizeof r);
        memcpy(b->mine.p + b->mine.len + sizeof r, data, bytes);
        b->mine.len += sizeof r + bytes;
        return SQZ_OK;
    }
    sqz_status st = write_rec(b, &r, data);
    if (!st && fflush(b->f)) st = sqz_fail(b->ctx, SQZ_ERR_IO, "%s: write failed (disk full?)", b->path);
    if (!st) b->written++;
    return st;
}

/* Every rank says whether it failed and how many record bytes it holds (status[1 + r]); the
 * first collective of every sync, so that a rank that failed between syncs meets the others
 * there with failed = 1 and all stop. A non-zero result: some rank failed (b->stopped). */
static sqz_status exchange_status(builder *b, int failed, size_t len) {
    const int N = b->comm.size;
    memset(b->status, 0, (size_t)(N + 1) * sizeof *b->status);
    b->status[0] = failed;
    b->status[1 + b->comm.rank] = (double)len; /* exact: far below 2^53 */
    sqz_status st = sqz_comm_ctl_sum(&b->comm, b->status, N + 1);
    if (st || b->status[0] > 0) b->stopped = 1;
    if (!st && b->status[0] > failed)
        st = sqz_fail(b->ctx, SQZ_ERR_IO, "levels: rank %d of %d stops: %g other rank(s) failed", b->comm.rank, N,
                      b->status[0] - failed);
    return st;
}

static int rec_cmp(const void *a, const void *b) {
    rec_head x, y;
    memcpy(&x, *(const char *const *)a, sizeof x);
    memcpy(&y, *(const char *const *)b, sizeof y);
    if (x.item != y.item) return x.item < y.item ? -1 : 1;
    return ladder_at((sqz_type)x.type) - ladder_at((sqz_type)y.type);
}

/* The gathered records (every rank's, back to back) in one process's order: item, then type;
 * rank 0 appends them to the part file. */
static sqz_status write_gathered(builder *b) {
    size_t n = 0;
    for (size_t o = 0; o < b->all.len; n++) {
        rec_head r;
        memcpy(&r, b->all.p + o, sizeof r);
        o += sizeof r + r.bytes;
    }
    const char **rec = malloc((n ? n : 1) * sizeof *rec);
    if (!rec) return sqz_fail(b->ctx, SQZ_ERR_NOMEM, "levels: out of memory");
    for (size_t o = 0, i = 0; i < n; i++) {
        rec_head r;
        memcpy(&r, b->all.p + o, sizeof r);
        rec[i] = b->all.p + o;
        o += sizeof r + r.bytes;
    }
    qsort(rec, n, sizeof *rec, rec_cmp);
    sqz_status st = SQZ_OK;
    for (size_t i = 0; i < n && !st && b->comm.rank == 0; i++) {
        rec_head r;
        memcpy(&r, rec[i], sizeof r);
        st = write_rec(b, &r, rec[i] + sizeof r);
    }
    if (!st && b->comm.rank == 0 && fflush(b->f))
        st = sqz_fail(b->ctx, SQZ_ERR_IO, "%s: write failed (disk full?)", b->path);
    if (!st) b->written += (int)n;
    free(rec);
    return st;
}

/* After every item below upto: the ranks' records of them to rank 0 (to everyone: the comm
 * layer's allgather; a layer's levels are megabytes) and into the part file. */
static sqz_status sync_levels(void *user, int upto) {
    builder *b = user;
    (void)upto;
    if (b->comm.size == 1) return SQZ_OK;
    sqz_status st = exchange_status(b, 0, b->mine.len);
    if (st) return st;
    uint64_t sizes[b->comm.size];
    b->all.len = 0;
    for (int r = 0; r < b->comm.size; r++) sizes[r] = (uint64_t)b->status[1 + r], b->all.len += sizes[r];
    if (b->all.len > b->all.cap) { /* cannot happen: every rank's buffer is a layer's bound */
        b->stopped = 1;
        return sqz_fail(b->ctx, SQZ_ERR_INTERNAL, "levels: the ranks' levels outgrew their buffer");
    }
    st = sqz_comm_allgather(&b->comm, b->mine.p, sizes, b->all.p);
    b->mine.len = 0;
    if (st) b->stopped = 1; /* MPI itself failed: no collective is safe now */
    return st ? st : write_gathered(b);
}

/* The bytes of one item's levels at every ladder type, with their record heads. */
static size_t item_bound(const sqz_db_item *it) {
    size_t n = 0;
    for (int k = 0; k < SQZ_ALLOC_MAX_TYPES; k++)
        n += sizeof(rec_head) + (size_t)it->rows * sqz_type_row_size(ladder[k], it->cols);
    return n;
}

/* Ranks: buffers for the largest group of items between two syncs (a layer's, or the head). */
static sqz_status alloc_buffers(builder *b, const sqz_levels_db *items) {
    size_t most = 0;
    for (int i = 0; i < items->n_items;) {
        const int end = i + SQZ_MIX_N_MATS <= items->n_items - 1 ? i + SQZ_MIX_N_MATS : items->n_items;
        size_t n = 0;
        for (; i < end; i++) n += item_bound(&items->items[i]);
        if (n > most) most = n;
    }
    b->mine.p = malloc(most), b->all.p = malloc(most);
    b->mine.cap = b->all.cap = most;
    b->status = malloc((size_t)(b->comm.size + 1) * sizeof *b->status);
    if (!b->mine.p || !b->all.p || !b->status) return sqz_fail(b->ctx, SQZ_ERR_NOMEM, "levels: out of memory");
    return SQZ_OK;
}

/* Rank 0: who measures each level still missing from the part file (round-robin in the
 * order they are measured). */
static void deal(builder *b) {
    int next = 0;
    for (int i = 0; i < b->have->n_items; i++) {
        const sqz_db_item *it = &b->have->items[i];
        for (int k = 0; k < SQZ_ALLOC_MAX_TYPES; k++) {
            int known = 0;
            for (int j = 0; j < it->n; j++) known |= it->lv[j].type == ladder[k];
            b->who[i][k] = known ? KNOWN : next++ % b->comm.size;
        }
    }
}

/* Rank 0: the part file resumed (whole records kept, a torn one cut) or started. */
static sqz_status open_part(builder *b, const char *part, uint64_t key, int *n_resumed) {
    sqz_status st = SQZ_OK;
    if (access(part, F_OK) == 0) {
        FILE *f = NULL;
        long good = 0;
        st = open_db(b->ctx, part, "rb", b->have->n_items, &key, &f);
        if (!st) st = read_records(b->ctx, f, part, b->have, &good);
        if (f) fclose(f);
        if (!st && truncate(part, good)) st = sqz_fail(b->ctx, SQZ_ERR_IO, "%s: cannot cut a torn record", part);
        if (!st && !(b->f = fopen(part, "ab"))) st = sqz_fail(b->ctx, SQZ_ERR_IO, "%s: cannot append", part);
        for (int i = 0; !st && i < b->have->n_items; i++) *n_resumed += b->have->items[i].n;
        return st;
    }
    b->f = fopen(part, "wb");
    const uint32_t n = (uint32_t)b->have->n_items;
    if (!b->f || fwrite(MAGIC, 8, 1, b->f) != 1 || fwrite(&key, 8, 1, b->f) != 1 || fwrite(&n, 4, 1, b->f) != 1)
        st = sqz_fail(b->ctx, SQZ_ERR_IO, "%s: cannot write", part);
    return st;
}

/* Ranks: whether any failed to start and whether all build the same database (key); then
 * rank 0's deal to every rank. */
static sqz_status start_ranks(builder *b, sqz_status st, uint64_t key) {
    const sqz_status xs = exchange_status(b, st != SQZ_OK, 0);
    if (st || xs) return st ? st : xs;
    int same = 0;
    if ((st = sqz_comm_ctl_same(&b->comm, key, &same))) return b->stopped = 1, st;
    if (!same) {
        b->stopped = 1;
        return sqz_fail(b->ctx, SQZ_ERR_ARG, "levels: the %d ranks were given different models, calibration text "
                        "or options", b->comm.size);
    }
    st = sqz_comm_ctl_bcast(&b->comm, b->who, (size_t)b->have->n_items * sizeof *b->who);
    if (st) b->stopped = 1;
    return st;
}

static void free_builder(builder *b) {
    if (b->f) fclose(b->f);
    free(b->who), free(b->mine.p), free(b->all.p), free(b->status);
    sqz_comm_close(&b->comm);
}

sqz_status sqz_levels_build(sqz_ctx *ctx, const sqz_model *model, const char *path, const sqz_levels_opts *o,
                            sqz_levels_result *res) {
    if (res) memset(res, 0, sizeof *res);
    if (!model || !path || !*path || !o)
        return sqz_fail(ctx, SQZ_ERR_ARG, "levels: missing model, database path or options");
    sqz_status sub_st = sqz_model_require_subblocks(ctx, model, "levels");
    if (sub_st) return sub_st;
    const int C = o->calib_ctx > 0 ? o->calib_ctx : 512;
    const size_t n_win = o->n_calib / (size_t)C;
    if (n_win < 1 || !o->calib)
        return sqz_fail(ctx, SQZ_ERR_ARG, "levels: needs at least one window of %d calibration tokens", C);
    for (size_t i = 0; i < n_win * (size_t)C; i++)
        if (o->calib[i] < 0 || o->calib[i] >= model->cfg.vocab_size)
            return sqz_fail(ctx, SQZ_ERR_RANGE, "calibration token %d outside the vocabulary", o->calib[i]);
    if (strlen(path) + 6 > MAX_PATH) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: path too long", path);
    char part[MAX_PATH];
    snprintf(part, sizeof part, "%s.part", path);
    const double t0 = sqz_now();
    const sqz_alloc_opts ao = { .damp = o->damp, .eval_windows = o->eval_windows > 0 ? o->eval_windows : 4,
                                .plain_gptq = o->plain_gptq };
    const uint64_t key = sqz_levels_db_key(model, o->calib, n_win * (size_t)C, C, &ao);

    sqz_levels_db have;
    memset(&have, 0, sizeof have);
    builder b = { .ctx = ctx, .path = part, .have = &have, .comm = { .size = 1 } };
    int world = 1, n_resumed = 0;
    sqz_status st = SQZ_OK;
    if (sqz_comm_launched(&world, NULL, NULL) && world > 1 && (st = sqz_comm_open(ctx, &b.comm))) return st;
    /* from here on every rank reaches start_ranks, failed or not */
    st = init_items(ctx, model, &have);
    if (!st && !(b.who = malloc((size_t)have.n_items * sizeof *b.who)))
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "levels: out of memory");
    if (!st && b.comm.size > 1) st = alloc_buffers(&b, &have);
    if (!st && b.comm.rank == 0) st = open_part(&b, part, key, &n_resumed);
    if (!st && b.comm.rank == 0) deal(&b);
    if (b.comm.size > 1) st = start_ranks(&b, st, key);
    const sqz_alloc_hook hook = { .user = &b, .have = have_level, .got = got_level, .sync = sync_levels };
    if (!st) st = sqz_alloc_levels(ctx, model, o->calib, n_win, C, &ao, &hook);
    if (b.comm.size > 1 && !b.stopped) { /* the last word: did every rank finish? */
        const sqz_status xs = exchange_status(&b, st != SQZ_OK, 0);
        if (!st) st = xs;
    }
    if (b.f && fclose(b.f) && !st) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: write failed", part);
    b.f = NULL;
    const int n_items = have.n_items, rank = b.comm.rank, ranks = b.comm.size;
    free_builder(&b);
    sqz_levels_db_free(&have);
    if (st) return st; /* the part file stays: the next build resumes it */
    if (rank == 0 && rename(part, path)) return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot rename %s", path, part);
    if (res) {
        struct stat sb;
        res->db_bytes = rank == 0 && stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        res->n_items = n_items;
        res->n_measured = b.written;
        res->n_resumed = n_resumed;
        res->calib_tokens = n_win * (size_t)C;
        res->seconds = sqz_now() - t0;
        res->mpi_ranks = ranks, res->mpi_rank = rank;
    }
    return SQZ_OK;
}
