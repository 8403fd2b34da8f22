/* safetensors_write.c - streaming safetensors writer; see safetensors.h.
 *
 * The header depends only on names, dtypes and shapes, so it is built (cJSON) from the
 * declarations and written first to a mkstemp file beside the target; the data follows in
 * declaration order with no holes, and the file is renamed over the target only when every
 * byte has come. put_f32 converts floats to the dtype of the tensor being written, a chunk at
 * a time, so a caller with f32 results never holds a converted copy of a whole tensor.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"

#define STW_CHUNK 16384 /* elements put_f32 converts at a time */

typedef struct stw_tensor {
    char *name;
    sqz_type type;
    int n_dims;
    int64_t shape[SQZ_ST_MAX_DIMS];
    size_t nbytes;
} stw_tensor;

struct sqz_st_writer {
    sqz_ctx *ctx;
    stw_tensor *t;
    size_t n, cap;
    /* between begin and finish */
    int fd;          /* -1 when not writing */
    char *tmp, *path;
    size_t cur;      /* tensor being written */
    size_t cur_done; /* its bytes already written */
};

static const char *stw_dtype(sqz_type t) {
    return t == SQZ_TYPE_F32 ? "F32" : t == SQZ_TYPE_F16 ? "F16" : t == SQZ_TYPE_BF16 ? "BF16"
         : t == SQZ_ST_TYPE_U8 ? "U8" : NULL;
}

static size_t stw_elem_size(sqz_type t) { return t == SQZ_TYPE_F32 ? 4 : t == SQZ_ST_TYPE_U8 ? 1 : 2; }

sqz_status sqz_st_writer_new(sqz_ctx *ctx, sqz_st_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return sqz_fail(ctx, SQZ_ERR_NOMEM, "safetensors writer: out of memory");
    (*out)->ctx = ctx;
    (*out)->fd = -1;
    return SQZ_OK;
}

/* Ends a stream that will not finish: the temporary file is closed and removed. */
static void stw_abort(sqz_st_writer *w) {
    if (w->fd < 0) return;
    close(w->fd);
    unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    w->fd = -1;
    w->tmp = w->path = NULL;
}

void sqz_st_writer_free(sqz_st_writer *w) {
    if (!w) return;
    stw_abort(w);
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

sqz_status sqz_st_writer_declare(sqz_st_writer *w, const char *name, sqz_type type, int n_dims,
                                 const int64_t *shape, size_t *nbytes) {
    if (w->fd >= 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: tensor %s declared while writing", w->path,
                        name ? name : "(null)");
    if (!name || !*name) return sqz_fail(w->ctx, SQZ_ERR_ARG, "safetensors writer: empty tensor name");
    if (!stw_dtype(type))
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "safetensors writer: tensor %s: type %s (F32, F16, "
                        "BF16 or U8 only)", name, sqz_type_name(type));
    if (n_dims < 0 || n_dims > SQZ_ST_MAX_DIMS)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "safetensors writer: tensor %s: %d dimensions", name,
                        n_dims);
    uint64_t count = 1;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && count > (UINT64_MAX >> 4) / (uint64_t)shape[d]))
            return sqz_fail(w->ctx, SQZ_ERR_ARG, "safetensors writer: tensor %s: bad shape", name);
        count *= (uint64_t)shape[d];
    }
    if (count * stw_elem_size(type) > SIZE_MAX)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "safetensors writer: tensor %s too large", name);
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return sqz_fail(w->ctx, SQZ_ERR_ARG, "safetensors writer: tensor %s declared twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        stw_tensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return sqz_fail(w->ctx, SQZ_ERR_NOMEM, "safetensors writer: out of memory");
        w->t = t;
        w->cap = cap;
    }
    stw_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return sqz_fail(w->ctx, SQZ_ERR_NOMEM, "safetensors writer: out of memory");
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->shape[d] = shape[d];
    t->nbytes = (size_t)count * stw_elem_size(type);
    if (nbytes) *nbytes = t->nbytes;
    w->n++;
    return SQZ_OK;
}

/* The header: u64 length + JSON padded with spaces to a multiple of 8. NULL when out of memory. */
static char *stw_header(const sqz_st_writer *w, size_t *len) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    int ok = root && meta && cJSON_AddItemToObject(root, "__metadata__", meta);
    if (!ok) cJSON_Delete(meta);
    ok = ok && cJSON_AddStringToObject(meta, "format", "pt") != NULL;
    uint64_t off = 0;
    for (size_t i = 0; ok && i < w->n; i++) {
        const stw_tensor *t = &w->t[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = e && shape && offs && cJSON_AddStringToObject(e, "dtype", stw_dtype(t->type));
        for (int d = 0; ok && d < t->n_dims; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        ok = ok && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += t->nbytes;
        ok = ok && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return NULL;
    const size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    char *buf = malloc(8 + padded);
    if (buf) {
        const uint64_t hl = padded;
        memcpy(buf, &hl, 8); /* the host is little-endian (gguf_internal.h checks it) */
        memcpy(buf + 8, json, n);
        memset(buf + 8 + n, ' ', padded - n);
        *len = 8 + padded;
    }
    cJSON_free(json);
    return buf;
}

static int stw_write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0;
        c += k;
        n -= (size_t)k;
    }
    return 1;
}

sqz_status sqz_st_writer_begin(sqz_st_writer *w, const char *path) {
    if (!path || !*path) return sqz_fail(w->ctx, SQZ_ERR_ARG, "safetensors writer: empty path");
    if (w->fd >= 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: the writer is still writing %s", path, w->path);
    const size_t plen = strlen(path);
    size_t hlen = 0;
    char *tmp = malloc(plen + 16), *copy = strdup(path), *hdr = stw_header(w, &hlen);
    if (!tmp || !copy || !hdr) {
        free(tmp), free(copy), free(hdr);
        return sqz_fail(w->ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    const int fd = mkstemp(tmp);
    if (fd < 0) {
        const int e = errno;
        free(tmp), free(copy), free(hdr);
        return sqz_fail(w->ctx, SQZ_ERR_IO, "%s: cannot create a temporary file beside it: %s",
                        path, strerror(e));
    }
    w->fd = fd;
    w->tmp = tmp;
    w->path = copy;
    w->cur = w->cur_done = 0;
    const int ok = stw_write_all(fd, hdr, hlen), e = errno;
    free(hdr);
    if (!ok) {
        sqz_status st = sqz_fail(w->ctx, SQZ_ERR_IO, "%s: write failed: %s", path, strerror(e));
        stw_abort(w);
        return st;
    }
    return SQZ_OK;
}

static sqz_status stw_not_writing(sqz_st_writer *w, const char *what) {
    return sqz_fail(w->ctx, SQZ_ERR_ARG, "safetensors writer: %s before sqz_st_writer_begin (or "
                    "after a failure)", what);
}

sqz_status sqz_st_writer_put(sqz_st_writer *w, const void *data, size_t n) {
    if (w->fd < 0) return stw_not_writing(w, "put");
    const char *p = data;
    while (n) {
        while (w->cur < w->n && w->cur_done == w->t[w->cur].nbytes) w->cur++, w->cur_done = 0;
        if (w->cur == w->n) {
            sqz_status st = sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: %zu bytes of tensor data more "
                                     "than the tensors hold", w->path, n);
            stw_abort(w);
            return st;
        }
        const size_t left = w->t[w->cur].nbytes - w->cur_done, k = n < left ? n : left;
        if (!stw_write_all(w->fd, p, k)) {
            sqz_status st = sqz_fail(w->ctx, SQZ_ERR_IO, "%s: write failed: %s", w->path,
                                     strerror(errno));
            stw_abort(w);
            return st;
        }
        w->cur_done += k;
        p += k;
        n -= k;
    }
    return SQZ_OK;
}

sqz_status sqz_st_writer_put_f32(sqz_st_writer *w, const float *x, size_t n) {
    if (w->fd < 0) return stw_not_writing(w, "put_f32");
    uint16_t half[STW_CHUNK];
    while (n) {
        while (w->cur < w->n && w->cur_done == w->t[w->cur].nbytes) w->cur++, w->cur_done = 0;
        if (w->cur == w->n) return sqz_st_writer_put(w, x, n * sizeof *x); /* fails, aborts */
        const stw_tensor *t = &w->t[w->cur];
        const size_t es = stw_elem_size(t->type);
        if (t->type == SQZ_ST_TYPE_U8 || w->cur_done % es) {
            sqz_status st = sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: put_f32 into %s of %s",
                                     w->path, t->type == SQZ_ST_TYPE_U8 ? "the bytes" : "an element", t->name);
            stw_abort(w);
            return st;
        }
        size_t k = (t->nbytes - w->cur_done) / es;
        if (k > n) k = n;
        if (t->type == SQZ_TYPE_F32) {
            sqz_status st = sqz_st_writer_put(w, x, k * sizeof *x);
            if (st) return st;
        } else {
            for (size_t i0 = 0; i0 < k; i0 += STW_CHUNK) {
                const size_t m = k - i0 < STW_CHUNK ? k - i0 : STW_CHUNK;
                for (size_t i = 0; i < m; i++)
                    half[i] = t->type == SQZ_TYPE_F16 ? sqz_f32_to_f16(x[i0 + i])
                                                      : sqz_f32_to_bf16(x[i0 + i]);
                sqz_status st = sqz_st_writer_put(w, half, m * sizeof *half);
                if (st) return st;
            }
        }
        x += k;
        n -= k;
    }
    return SQZ_OK;
}

sqz_status sqz_st_writer_finish(sqz_st_writer *w) {
    if (w->fd < 0) return stw_not_writing(w, "finish");
    while (w->cur < w->n && w->cur_done == w->t[w->cur].nbytes) w->cur++, w->cur_done = 0;
    if (w->cur < w->n) {
        const stw_tensor *t = &w->t[w->cur];
        sqz_status st = sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: tensor %s got %zu of its %zu bytes",
                                 w->path, t->name, w->cur_done, t->nbytes);
        stw_abort(w);
        return st;
    }
    const char *step = "chmod";
    int ok = fchmod(w->fd, 0644) == 0;
    if (ok) { step = "fsync"; ok = fsync(w->fd) == 0; }
    int e = errno;
    if (close(w->fd) != 0 && ok) { step = "close"; ok = 0; e = errno; }
    w->fd = -1;
    if (ok) { step = "rename"; ok = rename(w->tmp, w->path) == 0; e = errno; }
    sqz_status st = SQZ_OK;
    if (!ok) {
        unlink(w->tmp);
        st = sqz_fail(w->ctx, SQZ_ERR_IO, "%s: %s failed: %s", w->path, step, strerror(e));
    }
    free(w->tmp);
    free(w->path);
    w->tmp = w->path = NULL;
    return st;
}
