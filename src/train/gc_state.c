/* gc_state.c - the gradient compressors' state in a checkpoint's side files, so that a resumed
 * --dp run continues bit for bit: rank 0's checkpoint (checkpoint.c) holds the model and AdamW,
 * identical on every rank; what differs per rank (error feedback, momentum, ...) goes to
 * CK.rank<r>.gc, one per rank.
 *
 * Layout (little-endian): "SQZGCST" 0, u32 version, i32 rank, i32 world, i32 step, u64 recipe
 * hash, u64 n, u32 spec length, the spec's bytes; then the row's buffers in its state()'s order,
 * each as u64 bytes and the bytes. Written to PATH.tmp and renamed by the caller once every
 * rank wrote its own (sqz_gc_ckpt_commit), as the checkpoint itself is. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/gc.h"

static const char MAGIC[8] = { 'S', 'Q', 'Z', 'G', 'C', 'S', 'T', 0 };
enum { VERSION = 1, MAX_SPEC = 1024 };

struct sqz_gc_io {
    FILE *f;
    int loading;
    sqz_ctx *ctx;
    const char *path;
    sqz_status st; /* the first failure; later calls do nothing */
};

int sqz_gc_io_loading(const sqz_gc_io *io) { return io->loading; }

sqz_status sqz_gc_io_bytes(sqz_gc_io *io, void *p, size_t bytes) {
    if (io->st) return io->st;
    uint64_t len = bytes;
    if (!io->loading) {
        if (fwrite(&len, 8, 1, io->f) != 1 || (bytes && fwrite(p, 1, bytes, io->f) != bytes))
            io->st = sqz_fail(io->ctx, SQZ_ERR_IO, "checkpoint %s: %s", io->path, strerror(errno));
        return io->st;
    }
    if (fread(&len, 8, 1, io->f) != 1)
        io->st = sqz_fail(io->ctx, SQZ_ERR_FORMAT, "--resume: %s is truncated", io->path);
    else if (len != bytes) /* a layout this build does not write: another version or size */
        io->st = sqz_fail(io->ctx, SQZ_ERR_FORMAT, "--resume: %s holds a buffer of %llu bytes where the "
                          "compressor keeps %zu", io->path, (unsigned long long)len, bytes);
    else if (bytes && fread(p, 1, bytes, io->f) != bytes)
        io->st = sqz_fail(io->ctx, SQZ_ERR_FORMAT, "--resume: %s is truncated", io->path);
    return io->st;
}

/* CK.rank<r>.gc, with suffix (".tmp" or "") */
static sqz_status side_path(sqz_ctx *ctx, const char *ckpt, int rank, const char *suffix, char *buf,
                            size_t cap) {
    if (snprintf(buf, cap, "%s.rank%d.gc%s", ckpt, rank, suffix) >= (int)cap)
        return sqz_fail(ctx, SQZ_ERR_ARG, "checkpoint %s: path too long", ckpt);
    return SQZ_OK;
}

static int write_header(FILE *f, const sqz_gc_ckpt *h) {
    const uint32_t version = VERSION, len = (uint32_t)strlen(h->spec);
    return fwrite(MAGIC, 8, 1, f) == 1 && fwrite(&version, 4, 1, f) == 1 && fwrite(&h->rank, 4, 1, f) == 1 &&
           fwrite(&h->world, 4, 1, f) == 1 && fwrite(&h->step, 4, 1, f) == 1 && fwrite(&h->hash, 8, 1, f) == 1 &&
           fwrite(&h->n, 8, 1, f) == 1 && fwrite(&len, 4, 1, f) == 1 && fwrite(h->spec, 1, len, f) == len;
}

/* The header read back; spec gets room for MAX_SPEC + 1 bytes. 0: not a side file. */
static int read_header(FILE *f, sqz_gc_ckpt *h, uint32_t *version, char *spec) {
    char magic[8];
    uint32_t len;
    if (fread(magic, 8, 1, f) != 1 || memcmp(magic, MAGIC, 8) || fread(version, 4, 1, f) != 1 ||
        fread(&h->rank, 4, 1, f) != 1 || fread(&h->world, 4, 1, f) != 1 || fread(&h->step, 4, 1, f) != 1 ||
        fread(&h->hash, 8, 1, f) != 1 || fread(&h->n, 8, 1, f) != 1 || fread(&len, 4, 1, f) != 1 ||
        len > MAX_SPEC || fread(spec, 1, len, f) != len)
        return 0;
    spec[len] = 0;
    h->spec = spec;
    return 1;
}

sqz_status sqz_gc_ckpt_write(sqz_ctx *ctx, const char *ckpt, const sqz_gc_ckpt *h, const sqz_gc_method *m,
                             void *state) {
    char tmp[4096];
    sqz_status st = side_path(ctx, ckpt, h->rank, ".tmp", tmp, sizeof tmp);
    if (st) return st;
    if (strlen(h->spec) > MAX_SPEC) return sqz_fail(ctx, SQZ_ERR_ARG, "checkpoint: --dp spec too long");
    FILE *f = fopen(tmp, "wb");
    if (!f) return sqz_fail(ctx, SQZ_ERR_IO, "checkpoint %s: %s", tmp, strerror(errno));
    sqz_gc_io io = { .f = f, .loading = 0, .ctx = ctx, .path = tmp };
    if (!write_header(f, h)) st = sqz_fail(ctx, SQZ_ERR_IO, "checkpoint %s: %s", tmp, strerror(errno));
    if (!st) st = m->state(state, &io);
    if (!st && (fflush(f) || fsync(fileno(f))))
        st = sqz_fail(ctx, SQZ_ERR_IO, "checkpoint %s: %s", tmp, strerror(errno));
    if (fclose(f) && !st) st = sqz_fail(ctx, SQZ_ERR_IO, "checkpoint %s: %s", tmp, strerror(errno));
    if (st) remove(tmp);
    return st;
}

sqz_status sqz_gc_ckpt_commit(sqz_ctx *ctx, const char *ckpt, int rank, int keep) {
    char tmp[4096], path[4096];
    sqz_status st = side_path(ctx, ckpt, rank, ".tmp", tmp, sizeof tmp);
    if (!st) st = side_path(ctx, ckpt, rank, "", path, sizeof path);
    if (st) return st;
    if (!keep) {
        remove(tmp);
        return SQZ_OK;
    }
    if (rename(tmp, path)) {
        const int e = errno;
        remove(tmp);
        return sqz_fail(ctx, SQZ_ERR_IO, "checkpoint %s: %s", path, strerror(e));
    }
    return SQZ_OK;
}

/* Why a side file's header h does not fit the run that wants w (NULL: it fits). */
static const char *mismatch(const sqz_gc_ckpt *h, const sqz_gc_ckpt *w, char *why, size_t cap) {
    if (h->world != w->world)
        snprintf(why, cap, "saved by %d ranks, this run has %d (resume with mpirun -np %d)", h->world,
                 w->world, h->world);
    else if (h->rank != w->rank)
        snprintf(why, cap, "written by rank %d, read by rank %d (a renamed file?)", h->rank, w->rank);
    else if (strcmp(h->spec, w->spec))
        snprintf(why, cap, "saved with --dp %s, this run has --dp %s (resume with the same spec)", h->spec,
                 w->spec);
    else if (h->hash != w->hash || h->n != w->n)
        snprintf(why, cap, "saved by a run with another model or recipe");
    else if (h->step != w->step)
        snprintf(why, cap, "at step %d, the checkpoint at step %d (a checkpoint interrupted while written?)",
                 h->step, w->step);
    else
        return NULL;
    return why;
}

sqz_status sqz_gc_ckpt_read(sqz_ctx *ctx, const char *ckpt, const sqz_gc_ckpt *want, const sqz_gc_method *m,
                            void *state) {
    char path[4096];
    sqz_status st = side_path(ctx, ckpt, want->rank, "", path, sizeof path);
    if (st) return st;
    FILE *f = fopen(path, "rb");
    if (!f && errno == ENOENT)
        return sqz_fail(ctx, SQZ_ERR_ARG, "--resume %s: no compressor state for rank %d (%s is missing: the "
                        "checkpoint was saved by one process, another --dp or fewer ranks); --dp %s would "
                        "start it afresh and not continue the run", ckpt, want->rank, path, want->spec);
    if (!f) return sqz_fail(ctx, SQZ_ERR_IO, "--resume %s: %s", path, strerror(errno));
    sqz_gc_ckpt h;
    uint32_t version = 0;
    char spec[MAX_SPEC + 1], why[2 * MAX_SPEC + 128];
    if (!read_header(f, &h, &version, spec))
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "--resume: %s is not an sqz compressor state file", path);
    else if (version != VERSION)
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "--resume: %s is version %u; this sqz reads version %d", path,
                      version, VERSION);
    else if (mismatch(&h, want, why, sizeof why))
        st = sqz_fail(ctx, SQZ_ERR_ARG, "--resume %s: %s was %s", ckpt, path, why);
    sqz_gc_io io = { .f = f, .loading = 1, .ctx = ctx, .path = path };
    if (!st) st = m->state(state, &io);
    if (!st && fgetc(f) != EOF)
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "--resume: %s has more than the compressor keeps", path);
    fclose(f);
    return st;
}

sqz_status sqz_gc_ckpt_unused(sqz_ctx *ctx, const char *ckpt, uint64_t hash, int32_t step) {
    char path[4096];
    sqz_status st = side_path(ctx, ckpt, 0, "", path, sizeof path);
    if (st) return st;
    FILE *f = fopen(path, "rb");
    if (!f) return SQZ_OK; /* no side files: nothing would be dropped */
    sqz_gc_ckpt h;
    uint32_t version;
    char spec[MAX_SPEC + 1];
    if (read_header(f, &h, &version, spec) && version == VERSION && h.hash == hash && h.step == step)
        st = sqz_fail(ctx, SQZ_ERR_ARG, "--resume %s: %s holds the state of --dp %s over %d ranks at this "
                      "step, which this run would drop: resume with mpirun -np %d and --dp %s (or delete "
                      "%s.rank*.gc to continue without it)", ckpt, path, h.spec, h.world, h.world, h.spec, ckpt);
    fclose(f);
    return st;
}

void sqz_gc_ckpt_forget(const char *ckpt) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s.rank0.gc", ckpt) < (int)sizeof path) remove(path);
}
