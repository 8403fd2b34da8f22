/* levels_db.c - the level database: build (resumable), load, apply (levels_db.h). */
#include "search/levels_db.h"
#include "core/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant/mixllm.h"
#include "sqz.h"

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

/* ---------------------------------------------------------------- building */

typedef struct builder {
    sqz_ctx *ctx;
    FILE *f;
    const char *path;
    sqz_levels_db *have; /* what the part file holds */
    int written;
} builder;

static int have_level(void *user, int item, sqz_type t, double *kl) {
    const builder *b = user;
    const sqz_db_item *it = &b->have->items[item];
    for (int k = 0; k < it->n; k++)
        if (it->lv[k].type == t) return *kl = it->lv[k].kl, 1;
    return 0;
}

static sqz_status got_level(void *user, int item, sqz_type t, const void *data, size_t bytes, double kl) {
    builder *b = user;
    const rec_head r = { .magic = REC_MAGIC, .item = (uint32_t)item, .type = (uint32_t)t, .bytes = bytes, .kl = kl };
    if (fwrite(&r, sizeof r, 1, b->f) != 1 || fwrite(data, 1, bytes, b->f) != bytes || fflush(b->f))
        return sqz_fail(b->ctx, SQZ_ERR_IO, "%s: write failed (disk full?)", b->path);
    b->written++;
    return SQZ_OK;
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
    builder b = { .ctx = ctx, .path = part, .have = &have };
    sqz_status st = init_items(ctx, model, &have);
    if (st) return st;
    long good = 0;
    FILE *f = NULL;
    if (access(part, F_OK) == 0) { /* resume: keep the whole records, cut a torn one */
        st = open_db(ctx, part, "rb", have.n_items, &key, &f);
        if (!st) st = read_records(ctx, f, part, &have, &good);
        if (f) fclose(f);
        if (!st && truncate(part, good)) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot cut a torn record", part);
        if (!st && !(b.f = fopen(part, "ab"))) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot append", part);
        for (int i = 0; !st && res && i < have.n_items; i++) res->n_resumed += have.items[i].n;
    } else {
        b.f = fopen(part, "wb");
        const uint32_t n = (uint32_t)have.n_items;
        if (!b.f || fwrite(MAGIC, 8, 1, b.f) != 1 || fwrite(&key, 8, 1, b.f) != 1 || fwrite(&n, 4, 1, b.f) != 1)
            st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot write", part);
    }
    const sqz_alloc_hook hook = { .user = &b, .have = have_level, .got = got_level };
    if (!st) st = sqz_alloc_levels(ctx, model, o->calib, n_win, C, &ao, &hook);
    if (b.f && fclose(b.f) && !st) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: write failed", part);
    const int n_items = have.n_items;
    sqz_levels_db_free(&have);
    if (st) return st; /* the part file stays: the next build resumes it */
    if (rename(part, path)) return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot rename %s", path, part);
    if (res) {
        struct stat sb;
        res->db_bytes = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        res->n_items = n_items;
        res->n_measured = b.written;
        res->calib_tokens = n_win * (size_t)C;
        res->seconds = sqz_now() - t0;
    }
    return SQZ_OK;
}
