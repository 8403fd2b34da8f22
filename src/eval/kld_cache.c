/* kld_cache.c - see kld_cache.h. */
#include "eval/kld_cache.h"
#include "core/hash.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC[8] = { 'S', 'Q', 'Z', 'K', 'L', 'D', 'C', '1' };
enum { VERSION = 1, HEADER_BYTES = 8 + 4 * 4 + 8 + 8 };

struct sqz_kld_cache {
    sqz_ctx *ctx;
    FILE *f;
    char *path, *tmp; /* tmp: writing */
    sqz_kld_key key;
    uint64_t done;    /* rows read or written */
    uint16_t *q;      /* one row's codes */
};

uint64_t sqz_kld_tokens_hash(const int32_t *tokens, size_t n) {
    return sqz_fnv1a(sqz_fnv1a_init(), tokens, n * sizeof *tokens);
}

static size_t row_bytes(const sqz_kld_key *k) { return 8 + 2 * (size_t)k->n_vocab; }

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

static sqz_kld_cache *cache_new(sqz_ctx *ctx, const char *path, const sqz_kld_key *key) {
    sqz_kld_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ctx = ctx;
    c->key = *key;
    c->path = strdup(path);
    c->q = malloc(2 * (size_t)key->n_vocab);
    if (!c->path || !c->q) {
        free(c->path);
        free(c->q);
        free(c);
        return NULL;
    }
    return c;
}

sqz_status sqz_kld_cache_open(sqz_ctx *ctx, const char *path, const sqz_kld_key *key,
                              sqz_kld_cache **out) {
    *out = NULL;
    if (!key->n_vocab) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: KLD cache key without a vocabulary", path);
    FILE *f = fopen(path, "rb");
    if (!f) return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot open the KLD cache: %s", path, strerror(errno));
    unsigned char h[HEADER_BYTES];
    sqz_kld_key k;
    uint32_t version;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    rewind(f);
    if (fread(h, 1, sizeof h, f) != sizeof h || memcmp(h, MAGIC, 8) != 0) {
        fclose(f);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: not a sqz KLD cache", path);
    }
    memcpy(&version, h + 8, 4);
    memcpy(&k.n_vocab, h + 12, 4);
    memcpy(&k.n_ctx, h + 16, 4);
    memcpy(&k.mode, h + 20, 4);
    memcpy(&k.rows, h + 24, 8);
    memcpy(&k.tokens_hash, h + 32, 8);
    const char *diff = version != VERSION ? "its version"
                       : k.n_vocab != key->n_vocab ? "the vocabulary size"
                       : k.n_ctx != key->n_ctx ? "the context (--ctx)"
                       : k.mode != key->mode ? "the perplexity mode (--compat)"
                       : k.rows != key->rows ? "the number of scored tokens (--max-tokens / --chunks)"
                       : k.tokens_hash != key->tokens_hash ? "the text"
                       : NULL;
    if (diff) {
        fclose(f);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: the KLD cache was made for another run (%s differs)",
                        path, diff);
    }
    if (k.rows > (uint64_t)(size - HEADER_BYTES) / row_bytes(&k) ||
        (uint64_t)size != HEADER_BYTES + k.rows * row_bytes(&k)) {
        fclose(f);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: KLD cache of %ld bytes, expected %llu (truncated?)", path,
                        size, (unsigned long long)(HEADER_BYTES + k.rows * row_bytes(&k)));
    }
    sqz_kld_cache *c = cache_new(ctx, path, key);
    if (!c) {
        fclose(f);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    c->f = f;
    *out = c;
    return SQZ_OK;
}

sqz_status sqz_kld_cache_create(sqz_ctx *ctx, const char *path, const sqz_kld_key *key,
                                sqz_kld_cache **out) {
    *out = NULL;
    sqz_kld_cache *c = cache_new(ctx, path, key);
    if (!c || !(c->tmp = malloc(strlen(path) + 16))) {
        sqz_kld_cache_close(c);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    sprintf(c->tmp, "%s.tmp.XXXXXX", path);
    const int fd = mkstemp(c->tmp);
    if (fd >= 0) fchmod(fd, 0644); /* mkstemp makes it 0600; a cache is ordinary data */
    if (fd < 0 || !(c->f = fdopen(fd, "wb"))) {
        if (fd >= 0) close(fd);
        const sqz_status st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot create the KLD cache: %s", path, strerror(errno));
        if (fd >= 0) unlink(c->tmp);
        free(c->tmp);
        c->tmp = NULL;
        sqz_kld_cache_close(c);
        return st;
    }
    unsigned char h[HEADER_BYTES];
    memcpy(h, MAGIC, 8);
    put_u32(h + 8, VERSION);
    put_u32(h + 12, key->n_vocab);
    put_u32(h + 16, key->n_ctx);
    put_u32(h + 20, key->mode);
    put_u64(h + 24, key->rows);
    put_u64(h + 32, key->tokens_hash);
    if (fwrite(h, 1, sizeof h, c->f) != sizeof h) {
        sqz_kld_cache_close(c);
        return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot write the KLD cache", path);
    }
    *out = c;
    return SQZ_OK;
}

sqz_status sqz_kld_cache_read(sqz_kld_cache *c, float *rows, size_t n) {
    const uint32_t V = c->key.n_vocab;
    if (c->tmp || c->done + n > c->key.rows)
        return sqz_fail(c->ctx, SQZ_ERR_ARG, "%s: reading past the KLD cache's %llu rows", c->path,
                        (unsigned long long)c->key.rows);
    for (size_t r = 0; r < n; r++) {
        float lo_step[2];
        if (fread(lo_step, 4, 2, c->f) != 2 || fread(c->q, 2, V, c->f) != V)
            return sqz_fail(c->ctx, SQZ_ERR_IO, "%s: cannot read the KLD cache", c->path);
        float *row = rows + r * (size_t)V;
        for (uint32_t i = 0; i < V; i++) row[i] = lo_step[0] + lo_step[1] * (float)c->q[i];
    }
    c->done += n;
    return SQZ_OK;
}

sqz_status sqz_kld_cache_write(sqz_kld_cache *c, float *rows, size_t n) {
    const uint32_t V = c->key.n_vocab;
    if (!c->tmp || c->done + n > c->key.rows)
        return sqz_fail(c->ctx, SQZ_ERR_ARG, "%s: writing past the KLD cache's %llu rows", c->path,
                        (unsigned long long)c->key.rows);
    for (size_t r = 0; r < n; r++) {
        float *row = rows + r * (size_t)V;
        float lo = INFINITY, hi = -INFINITY;
        for (uint32_t i = 0; i < V; i++) {
            if (row[i] < lo) lo = row[i];
            if (row[i] > hi) hi = row[i];
        }
        if (!(hi - lo < INFINITY))
            return sqz_fail(c->ctx, SQZ_ERR_RANGE, "%s: a base logit is not finite", c->path);
        const float step = hi > lo ? (hi - lo) / 65535.0f : 1.0f;
        for (uint32_t i = 0; i < V; i++) {
            const float q = nearbyintf((row[i] - lo) / step);
            c->q[i] = (uint16_t)(q < 0 ? 0 : q > 65535 ? 65535 : q);
        }
        const float lo_step[2] = { lo, step };
        if (fwrite(lo_step, 4, 2, c->f) != 2 || fwrite(c->q, 2, V, c->f) != V)
            return sqz_fail(c->ctx, SQZ_ERR_IO, "%s: cannot write the KLD cache (disk full?)", c->path);
        for (uint32_t i = 0; i < V; i++) row[i] = lo + step * (float)c->q[i]; /* as read back */
    }
    c->done += n;
    return SQZ_OK;
}

sqz_status sqz_kld_cache_commit(sqz_kld_cache *c) {
    if (!c->tmp) return SQZ_OK;
    if (c->done != c->key.rows)
        return sqz_fail(c->ctx, SQZ_ERR_ARG, "%s: %llu of %llu KLD cache rows written", c->path,
                        (unsigned long long)c->done, (unsigned long long)c->key.rows);
    if (fflush(c->f) != 0 || fsync(fileno(c->f)) != 0 || fclose(c->f) != 0) {
        c->f = NULL;
        return sqz_fail(c->ctx, SQZ_ERR_IO, "%s: cannot write the KLD cache: %s", c->path, strerror(errno));
    }
    c->f = NULL;
    if (rename(c->tmp, c->path) != 0)
        return sqz_fail(c->ctx, SQZ_ERR_IO, "%s: cannot rename the KLD cache into place: %s", c->path,
                        strerror(errno));
    free(c->tmp);
    c->tmp = NULL;
    return SQZ_OK;
}

void sqz_kld_cache_close(sqz_kld_cache *c) {
    if (!c) return;
    if (c->f) fclose(c->f);
    if (c->tmp) unlink(c->tmp);
    free(c->tmp);
    free(c->path);
    free(c->q);
    free(c);
}
