/* kld_cache.h - the base model's logits on disk, so that comparing many compressed models
 * with one base (`sqz ppl MODEL --kld-base BASE --kld-cache FILE`) runs the base once.
 *
 * File (little-endian), version 1:
 *   "SQZKLDC1" (8 bytes), u32 version = 1, u32 n_vocab, u32 n_ctx, u32 mode (sqz_ppl_mode),
 *   u64 rows, u64 tokens_hash (FNV-1a 64 of the evaluated token ids, as int32 bytes), then
 *   `rows` rows in the order perplexity scores them, each: f32 lo, f32 step, u16 q[n_vocab],
 *   logit_i = lo + step * q_i.
 * That is llama.cpp's --kl-divergence-base scheme: 16 bits per logit with a per-row range, an
 * error of at most step/2 (about 2e-4 for a range of 25), a tenth of a percent or less on a KL
 * divergence (the tests bound the difference to the uncached figure). A shift of all logits
 * of a row does not change its distribution, so rows come back as lo + step * q.
 * The key (vocabulary, context, mode, rows, token hash) must match on reading, so a cache made
 * for other text or windows is refused with a message, never silently used. Writing goes to a
 * temporary file renamed on commit: a failed run leaves nothing behind. */
#ifndef SQZ_EVAL_KLD_CACHE_H
#define SQZ_EVAL_KLD_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

typedef struct sqz_kld_key {
    uint32_t n_vocab, n_ctx, mode;
    uint64_t rows;
    uint64_t tokens_hash;
} sqz_kld_key;

uint64_t sqz_kld_tokens_hash(const int32_t *tokens, size_t n);

typedef struct sqz_kld_cache sqz_kld_cache;

/* Opens an existing cache for reading; SQZ_ERR_FORMAT (with what differs) when its key is not
 * key, or it is truncated; SQZ_ERR_IO when it cannot be opened. */
sqz_status sqz_kld_cache_open(sqz_ctx *ctx, const char *path, const sqz_kld_key *key,
                              sqz_kld_cache **out);
/* Starts writing a cache for key (to a temporary file beside path). */
sqz_status sqz_kld_cache_create(sqz_ctx *ctx, const char *path, const sqz_kld_key *key,
                                sqz_kld_cache **out);
/* The next n rows: read into / written from rows[n][n_vocab]. Writing replaces the rows with
 * what the file holds, so the run that makes the cache measures what later runs read. */
sqz_status sqz_kld_cache_read(sqz_kld_cache *c, float *rows, size_t n);
sqz_status sqz_kld_cache_write(sqz_kld_cache *c, float *rows, size_t n);
/* Writing: checks every row was written, fsyncs and renames into place. */
sqz_status sqz_kld_cache_commit(sqz_kld_cache *c);
/* Closes; a cache being written and not committed is removed. Accepts NULL. */
void sqz_kld_cache_close(sqz_kld_cache *c);

#endif
