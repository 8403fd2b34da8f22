/* levels_db.h - a level database: every block matrix and the head of a model at every
 * k-quant type (Q2_K..Q6_K), quantized once by sqz's GPTQ (with the unquantized model's
 * Hessians, quant/alloc.h steps 1-3), with each level's bytes and its single-matrix KL
 * divergence. EvoPress-style searches (search/evopress.h) combine levels from it without
 * quantizing anything again; the knapsack seed uses the single-matrix KLs.
 *
 * File (little-endian), written as PATH.part and renamed to PATH when complete, so a build
 * that stops leaves PATH.part, which a build with the same model and options resumes:
 *   "SQZLVDB1", u64 key (model shape, a sample of its weights, the calibration tokens and
 *   options: a resumed build refuses another model's or calibration's part file), u32 n_items
 *   then records, each: u32 'LREC', u32 item, u32 type, u32 0, u64 bytes, f64 kl, bytes of data.
 * A record cut short by a crash is dropped on resume (the file is cut back to the last whole
 * record). Items are numbered as sqz_alloc_levels numbers them: layer-major q, k, v, o,
 * gate, up, down, then the head (token_embd when tied). */
#ifndef SQZ_SEARCH_LEVELS_DB_H
#define SQZ_SEARCH_LEVELS_DB_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "model/model.h"
#include "quant/alloc.h"

typedef struct sqz_db_level {
    sqz_type type;
    uint64_t bytes;
    double kl;          /* mean KL of the model with only this matrix at this level */
    const void *data;   /* [bytes] the quantized rows (inside the database's blob) */
} sqz_db_level;

typedef struct sqz_db_item {
    char name[64];      /* GGUF name: blk.L.attn_q.weight, ..., token_embd.weight / output.weight */
    int layer;          /* -1 for the head */
    int mat;            /* 0..6 (q, k, v, o, gate, up, down); 7 the head */
    int64_t rows, cols;
    int n;              /* levels, cheapest first */
    sqz_db_level lv[SQZ_ALLOC_MAX_TYPES];
} sqz_db_item;

typedef struct sqz_levels_db {
    int n_items;
    sqz_db_item *items;
    char *blob;         /* every level's data */
    size_t blob_len;
} sqz_levels_db;

/* The name sqz_levels_db uses for item i of a model with these layers (name: 64 bytes). */
void sqz_db_item_name(const sqz_model *model, int item, char *name);

/* The key a database of model built with these options carries. */
uint64_t sqz_levels_db_key(const sqz_model *model, const int32_t *tokens, size_t n_tokens, int C,
                           const sqz_alloc_opts *o);

/* Reads path, checking that it was built for model (its key need not match: a database may be
 * read with other calibration text; the shapes must). Every item must have all its levels. */
sqz_status sqz_levels_db_load(sqz_ctx *ctx, const char *path, const sqz_model *model, sqz_levels_db *db);
void sqz_levels_db_free(sqz_levels_db *db);

/* Points matrix `item` of m (a copy of the model's views: its own layers array) at level k. */
void sqz_levels_db_apply(const sqz_levels_db *db, sqz_model *m, int item, int k);

#endif
