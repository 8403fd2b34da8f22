/* checkpoint.c - a fine-tuning run's state on disk, so that a stopped run resumes where it was:
 * the trained values, both AdamW moments, the step and the data sampler's state. A resumed run
 * computes what the uninterrupted one would have, bit for bit (tests/cli/finetune.sh).
 *
 * Layout (little-endian): "SQZCKPT1", u64 recipe hash, u64 n, i32 step, i32 reserved, u64 rng,
 * then n f32 values, n f32 first moments, n f32 second moments. Written to PATH.tmp, flushed
 * and renamed, so a crash mid-write leaves the last good checkpoint. Under --dp each rank's
 * compressor state goes beside it (train/gc_state.c: PATH.rank<r>.gc). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "train/train.h"

static const char MAGIC[8] = { 'S', 'Q', 'Z', 'C', 'K', 'P', 'T', '1' };

static sqz_status tmp_path(sqz_ctx *ctx, const char *path, char *tmp, size_t cap) {
    if (snprintf(tmp, cap, "%s.tmp", path) >= (int)cap) return sqz_fail(ctx, SQZ_ERR_ARG, "checkpoint: path too long");
    return SQZ_OK;
}

sqz_status sqz_train_ckpt_write(sqz_ctx *ctx, const char *path, const sqz_train_ckpt *c, const float *p,
                                const float *m, const float *v) {
    char tmp[4096];
    const sqz_status st = tmp_path(ctx, path, tmp, sizeof tmp);
    if (st) return st;
    FILE *f = fopen(tmp, "wb");
    if (!f) return sqz_fail(ctx, SQZ_ERR_IO, "checkpoint %s: %s", tmp, strerror(errno));
    const int32_t step = c->step, zero = 0;
    int ok = fwrite(MAGIC, 8, 1, f) == 1 && fwrite(&c->hash, 8, 1, f) == 1 && fwrite(&c->n, 8, 1, f) == 1 &&
             fwrite(&step, 4, 1, f) == 1 && fwrite(&zero, 4, 1, f) == 1 && fwrite(&c->rng, 8, 1, f) == 1 &&
             fwrite(p, 4, c->n, f) == c->n && fwrite(m, 4, c->n, f) == c->n && fwrite(v, 4, c->n, f) == c->n;
    int e = errno;
    if (fflush(f) || fsync(fileno(f))) ok = 0, e = errno;
    if (fclose(f)) ok = 0, e = errno;
    if (!ok) {
        remove(tmp);
        return sqz_fail(ctx, SQZ_ERR_IO, "checkpoint %s: %s", path, strerror(e));
    }
    return SQZ_OK;
}

sqz_status sqz_train_ckpt_commit(sqz_ctx *ctx, const char *path, int keep) {
    char tmp[4096];
    const sqz_status st = tmp_path(ctx, path, tmp, sizeof tmp);
    if (st) return st;
    if (keep && !rename(tmp, path)) return SQZ_OK;
    const int e = errno;
    remove(tmp);
    return keep ? sqz_fail(ctx, SQZ_ERR_IO, "checkpoint %s: %s", path, strerror(e)) : SQZ_OK;
}

sqz_status sqz_train_ckpt_read(sqz_ctx *ctx, const char *path, sqz_train_ckpt *c, float *p, float *m,
                               float *v) {
    FILE *f = fopen(path, "rb");
    if (!f) return sqz_fail(ctx, SQZ_ERR_IO, "--resume %s: %s", path, strerror(errno));
    char magic[8];
    uint64_t hash, n, rng;
    int32_t step, reserved;
    sqz_status st = SQZ_OK;
    if (fread(magic, 8, 1, f) != 1 || memcmp(magic, MAGIC, 8) || fread(&hash, 8, 1, f) != 1 ||
        fread(&n, 8, 1, f) != 1 || fread(&step, 4, 1, f) != 1 || fread(&reserved, 4, 1, f) != 1 ||
        fread(&rng, 8, 1, f) != 1)
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "--resume %s: not an sqz fine-tuning checkpoint", path);
    else if (n != c->n || hash != c->hash)
        st = sqz_fail(ctx, SQZ_ERR_ARG, "--resume %s: saved by a run with another model or recipe (%s)", path,
                      n != c->n ? "another number of trained values" : "batch, context, learning rate, "
                      "seed or LoRA settings differ");
    else if (step < 0)
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "--resume %s: bad step %d", path, step);
    else if (fread(p, 4, n, f) != n || fread(m, 4, n, f) != n || fread(v, 4, n, f) != n)
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "--resume %s: truncated", path);
    fclose(f);
    if (!st) c->step = step, c->rng = rng;
    return st;
}
