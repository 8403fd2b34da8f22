/* gguf_write.c - GGUF / sqzf atomic writer; see gguf.h.
 *
 * The writer encodes metadata into a buffer as it is added and keeps the tensor infos (with a
 * pointer to the data, or none for a tensor that will be streamed). sqz_gguf_writer_begin
 * writes header + metadata + infos + the padding before the data section to a mkstemp file
 * beside the target (the offsets follow from the sizes alone); sqz_gguf_writer_put appends
 * tensor bytes in order with the padding after each tensor; sqz_gguf_writer_finish fsyncs
 * and renames. sqz_gguf_writer_write is the three calls over the tensors' pointers.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "io/gguf.h"
#include "io/gguf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"

#define GGUF_WRITER_MAX_NAME 63   /* ggml's reader refuses names of GGML_MAX_NAME (64) bytes */

/* ------------------------------------------------------------------ writer */

typedef struct gguf_wtensor {
    char *name;
    int n_dims;
    int64_t ne[SQZ_GGUF_MAX_DIMS];
    int type;
    const void *data;
    size_t nbytes;
} gguf_wtensor;

struct sqz_gguf_writer {
    sqz_ctx *ctx;
    uint8_t *kv;         /* encoded metadata entries, in order */
    size_t kv_len, kv_cap;
    char **keys;         /* owned; for duplicate checks */
    size_t n_kv, cap_keys;
    uint32_t alignment;
    int sqzf;            /* write sqz's container ("SQZF" version 1) instead of GGUF v3 */
    gguf_wtensor *t;
    size_t n_t, cap_t;
    /* between begin and finish: the temporary file, the target, the tensor being written and
     * how many of its bytes came */
    int fd;              /* -1 when not writing */
    char *tmp, *path;
    size_t cur;
    size_t cur_done;
};

void sqz_gguf_writer_set_sqzf(sqz_gguf_writer *w, int on) {
    if (w->fd < 0) w->sqzf = on != 0; /* not while the header written says otherwise */
}

sqz_status sqz_gguf_writer_new(sqz_ctx *ctx, sqz_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return sqz_fail(ctx, SQZ_ERR_NOMEM, "gguf writer: out of memory");
    (*out)->ctx = ctx;
    (*out)->alignment = SQZ_GGUF_DEFAULT_ALIGNMENT;
    (*out)->fd = -1;
    return SQZ_OK;
}

/* Ends a stream that will not finish: the temporary file is closed and removed. */
static void w_abort(sqz_gguf_writer *w) {
    if (w->fd < 0) return;
    close(w->fd);
    unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    w->fd = -1;
    w->tmp = w->path = NULL;
}

void sqz_gguf_writer_free(sqz_gguf_writer *w) {
    if (!w) return;
    w_abort(w);
    free(w->kv);
    for (size_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

static sqz_status w_nomem(sqz_gguf_writer *w) {
    return sqz_fail(w->ctx, SQZ_ERR_NOMEM, "gguf writer: out of memory");
}

/* Appends n bytes to the metadata buffer; 0 when out of memory. */
static int w_put(sqz_gguf_writer *w, const void *p, size_t n) {
    if (n > SIZE_MAX - w->kv_len) return 0;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) {
            if (cap > SIZE_MAX / 2) { cap = w->kv_len + n; break; }
            cap *= 2;
        }
        uint8_t *b = realloc(w->kv, cap);
        if (!b) return 0;
        w->kv = b;
        w->kv_cap = cap;
    }
    if (n) memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 1;
}

static int w_put_u32(sqz_gguf_writer *w, uint32_t v) { return w_put(w, &v, 4); }
static int w_put_u64(sqz_gguf_writer *w, uint64_t v) { return w_put(w, &v, 8); }
static int w_put_str(sqz_gguf_writer *w, const char *s, size_t n) {
    return w_put_u64(w, n) && w_put(w, s, n);
}

/* Checks key and starts an entry (key written); *mark is where to roll back to. */
static sqz_status w_begin(sqz_gguf_writer *w, const char *key, size_t *mark) {
    if (w->fd >= 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: metadata %s added after the header was written",
                        w->path, key ? key : "(null)");
    if (!key || !key[0])
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: empty metadata key");
    size_t klen = strlen(key);
    if (klen > SQZ_GGUF_MAX_KEY)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: metadata key of %zu bytes (limit %d)",
                        klen, SQZ_GGUF_MAX_KEY);
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: metadata key %s added twice", key);
    *mark = w->kv_len;
    if (!w_put_str(w, key, klen)) { w->kv_len = *mark; return w_nomem(w); }
    return SQZ_OK;
}

/* Finishes an entry whose bytes were appended with success ok. */
static sqz_status w_end(sqz_gguf_writer *w, const char *key, size_t mark, int ok) {
    if (ok && w->n_kv == w->cap_keys) {
        size_t cap = w->cap_keys ? 2 * w->cap_keys : 32;
        char **k = realloc(w->keys, cap * sizeof *k);
        if (!k) ok = 0;
        else { w->keys = k; w->cap_keys = cap; }
    }
    char *copy = ok ? strdup(key) : NULL;
    if (!copy) { w->kv_len = mark; return w_nomem(w); }
    w->keys[w->n_kv++] = copy;
    return SQZ_OK;
}

static sqz_status w_scalar(sqz_gguf_writer *w, const char *key, int type, const void *v) {
    int is_alignment = key && strcmp(key, GGUF_KEY_ALIGNMENT) == 0;
    uint32_t a = 0;
    if (is_alignment) {
        if (type != SQZ_GGUF_U32)
            return sqz_fail(w->ctx, SQZ_ERR_ARG,
                            "gguf writer: " GGUF_KEY_ALIGNMENT " must be u32, not %s",
                            sqz_gguf_type_name(type));
        memcpy(&a, v, 4);
        if (a == 0 || (a & (a - 1)) != 0 || a > SQZ_GGUF_MAX_ALIGNMENT)
            return sqz_fail(w->ctx, SQZ_ERR_ARG,
                            "gguf writer: " GGUF_KEY_ALIGNMENT " = %u is not a power of two <= %u",
                            a, SQZ_GGUF_MAX_ALIGNMENT);
    }
    size_t mark;
    sqz_status st = w_begin(w, key, &mark);
    if (st != SQZ_OK) return st;
    int ok = w_put_u32(w, (uint32_t)type) && w_put(w, v, sqz_gguf_type_size(type));
    st = w_end(w, key, mark, ok);
    if (st == SQZ_OK && is_alignment) w->alignment = a;
    return st;
}

/* sqz_gguf_writer_add_NAME(w, key, v): one scalar of GGUF type GTYPE. */
#define W_ADD_SCALAR(NAME, CTYPE, GTYPE)                                                       \
    sqz_status sqz_gguf_writer_add_##NAME(sqz_gguf_writer *w, const char *key, CTYPE v) {      \
        return w_scalar(w, key, GTYPE, &v);                                                    \
    }
W_ADD_SCALAR(u8, uint8_t, SQZ_GGUF_U8)
W_ADD_SCALAR(i8, int8_t, SQZ_GGUF_I8)
W_ADD_SCALAR(u16, uint16_t, SQZ_GGUF_U16)
W_ADD_SCALAR(i16, int16_t, SQZ_GGUF_I16)
W_ADD_SCALAR(u32, uint32_t, SQZ_GGUF_U32)
W_ADD_SCALAR(i32, int32_t, SQZ_GGUF_I32)
W_ADD_SCALAR(u64, uint64_t, SQZ_GGUF_U64)
W_ADD_SCALAR(i64, int64_t, SQZ_GGUF_I64)
W_ADD_SCALAR(f32, float, SQZ_GGUF_F32)
W_ADD_SCALAR(f64, double, SQZ_GGUF_F64)

sqz_status sqz_gguf_writer_add_bool(sqz_gguf_writer *w, const char *key, int v) {
    if (v != 0 && v != 1)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: metadata %s: bool %d is not 0 or 1",
                        key ? key : "(null)", v);
    uint8_t b = (uint8_t)v;
    return w_scalar(w, key, SQZ_GGUF_BOOL, &b);
}

/* Metadata entries whose type is not u32 cannot be general.alignment. */
static sqz_status w_not_alignment(sqz_gguf_writer *w, const char *key, const char *what) {
    if (key && strcmp(key, GGUF_KEY_ALIGNMENT) == 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: " GGUF_KEY_ALIGNMENT
                        " must be u32, not %s", what);
    return SQZ_OK;
}

sqz_status sqz_gguf_writer_add_str(sqz_gguf_writer *w, const char *key, const char *s,
                                   size_t len) {
    if (!s && len)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: metadata %s: NULL string",
                        key ? key : "(null)");
    sqz_status st = w_not_alignment(w, key, "a string");
    size_t mark;
    if (st == SQZ_OK) st = w_begin(w, key, &mark);
    if (st != SQZ_OK) return st;
    int ok = w_put_u32(w, SQZ_GGUF_STRING) && w_put_str(w, s, len);
    return w_end(w, key, mark, ok);
}

sqz_status sqz_gguf_writer_add_arr(sqz_gguf_writer *w, const char *key, int elem_type,
                                   const void *data, uint64_t n) {
    const char *k = key ? key : "(null)";
    size_t sz = sqz_gguf_type_size(elem_type);
    if (sz == 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG,
                        "gguf writer: metadata %s: element type %s is not a fixed-size type "
                        "(strings: sqz_gguf_writer_add_arr_str)",
                        k, sqz_gguf_type_name(elem_type));
    if (n > SIZE_MAX / sz)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: metadata %s: %llu elements is too many",
                        k, (unsigned long long)n);
    if (!data && n)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: metadata %s: NULL data", k);
    if (elem_type == SQZ_GGUF_BOOL) {
        const uint8_t *b = data;
        for (uint64_t i = 0; i < n; i++)
            if (b[i] > 1)
                return sqz_fail(w->ctx, SQZ_ERR_ARG,
                                "gguf writer: metadata %s: bool element %llu is %u, not 0 or 1",
                                k, (unsigned long long)i, b[i]);
    }
    sqz_status st = w_not_alignment(w, key, "an array");
    size_t mark;
    if (st == SQZ_OK) st = w_begin(w, key, &mark);
    if (st != SQZ_OK) return st;
    int ok = w_put_u32(w, SQZ_GGUF_ARRAY) && w_put_u32(w, (uint32_t)elem_type) &&
             w_put_u64(w, n) && w_put(w, data, (size_t)n * sz);
    return w_end(w, key, mark, ok);
}

sqz_status sqz_gguf_writer_add_arr_str(sqz_gguf_writer *w, const char *key,
                                       const char *const *strs, const size_t *lens,
                                       uint64_t n) {
    const char *k = key ? key : "(null)";
    if (!strs && n)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: metadata %s: NULL strings", k);
    for (uint64_t i = 0; i < n; i++)
        if (!strs[i] && (!lens || lens[i]))
            return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: metadata %s: string %llu is NULL",
                            k, (unsigned long long)i);
    sqz_status st = w_not_alignment(w, key, "an array");
    size_t mark;
    if (st == SQZ_OK) st = w_begin(w, key, &mark);
    if (st != SQZ_OK) return st;
    int ok = w_put_u32(w, SQZ_GGUF_ARRAY) && w_put_u32(w, SQZ_GGUF_STRING) && w_put_u64(w, n);
    for (uint64_t i = 0; ok && i < n; i++) {
        size_t len = lens ? lens[i] : strlen(strs[i]);
        ok = w_put_str(w, strs[i], len);
    }
    return w_end(w, key, mark, ok);
}

sqz_status sqz_gguf_writer_copy_kv(sqz_gguf_writer *w, const sqz_gguf *g, size_t i) {
    const char *key = sqz_gguf_kv_key(g, i);
    if (!key)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: no metadata entry %zu to copy", i);
    int64_t a; /* general.alignment was validated on open: a u32 power of two */
    if (strcmp(key, GGUF_KEY_ALIGNMENT) == 0 && sqz_gguf_kv_int(g, i, &a))
        return sqz_gguf_writer_add_u32(w, key, (uint32_t)a);
    size_t mark, raw_len;
    const void *raw = sqz_gguf_kv_raw(g, i, &raw_len);
    sqz_status st = w_begin(w, key, &mark);
    if (st != SQZ_OK) return st;
    return w_end(w, key, mark, w_put(w, raw, raw_len));
}

/* Checks and adds a tensor; declared: no data, nbytes is what the type and ne take. */
static sqz_status w_tensor(sqz_gguf_writer *w, const char *name, int n_dims, const int64_t *ne,
                           int type, const void *data, size_t nbytes, int declared) {
    if (w->fd >= 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: tensor %s added after the header was written",
                        w->path, name ? name : "(null)");
    if (!name || !name[0])
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: tensor with an empty name");
    size_t nlen = strlen(name);
    if (nlen > GGUF_WRITER_MAX_NAME)
        return sqz_fail(w->ctx, SQZ_ERR_ARG,
                        "gguf writer: tensor name %s is %zu bytes (limit %d)", name, nlen,
                        GGUF_WRITER_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: tensor %s added twice", name);
    if (n_dims < 1 || n_dims > SQZ_GGUF_MAX_DIMS || !ne)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: tensor %s: %d dimensions (1 to %d)",
                        name, n_dims, SQZ_GGUF_MAX_DIMS);
    int bs;
    if (!gguf_file_type_layout(w->sqzf, type, &bs, NULL))
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "%s writer: tensor %s: invalid type id %d (%s)",
                        w->sqzf ? "sqzf" : "gguf", name, type, sqz_type_name(type));
    gguf_wtensor t = { .n_dims = n_dims, .type = type, .data = data, .nbytes = nbytes };
    uint64_t count = 1;
    for (int d = 0; d < SQZ_GGUF_MAX_DIMS; d++) {
        int64_t v = d < n_dims ? ne[d] : 1;
        if (v < 1)
            return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: tensor %s: ne[%d] = %lld (must be "
                            ">= 1)", name, d, (long long)v);
        if ((uint64_t)v > (uint64_t)INT64_MAX / count)
            return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: tensor %s: element count overflows",
                            name);
        count *= (uint64_t)v;
        t.ne[d] = v;
    }
    if (t.ne[0] % bs != 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG,
                        "gguf writer: tensor %s: row length %lld is not a multiple of the %s "
                        "block size %d",
                        name, (long long)t.ne[0], sqz_type_name(type), bs);
    uint64_t want;
    if (!gguf_file_nbytes(w->sqzf, type, count, &want))
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: tensor %s: byte count overflows",
                        name);
    if (declared) {
        t.nbytes = (size_t)want;
    } else {
        if (want != nbytes)
            return sqz_fail(w->ctx, SQZ_ERR_ARG,
                            "gguf writer: tensor %s: %zu bytes given, %s [%lld, %lld, %lld, %lld] "
                            "takes %llu",
                            name, nbytes, sqz_type_name(type), (long long)t.ne[0],
                            (long long)t.ne[1], (long long)t.ne[2], (long long)t.ne[3],
                            (unsigned long long)want);
        if (!data)
            return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: tensor %s: NULL data", name);
    }
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 32;
        gguf_wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return w_nomem(w);
        w->t = nt;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name) return w_nomem(w);
    w->t[w->n_t++] = t;
    return SQZ_OK;
}

sqz_status sqz_gguf_writer_add_tensor(sqz_gguf_writer *w, const char *name, int n_dims,
                                      const int64_t *ne, int type, const void *data,
                                      size_t nbytes) {
    return w_tensor(w, name, n_dims, ne, type, data, nbytes, 0);
}

sqz_status sqz_gguf_writer_declare_tensor(sqz_gguf_writer *w, const char *name, int n_dims,
                                          const int64_t *ne, int type, size_t *nbytes) {
    sqz_status st = w_tensor(w, name, n_dims, ne, type, NULL, 0, 1);
    if (nbytes) *nbytes = st == SQZ_OK ? w->t[w->n_t - 1].nbytes : 0;
    return st;
}

/* Writes all of p[0..n) to fd; 0 with errno set on failure. */
static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t k = write(fd, b, chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        if (k == 0) { errno = EIO; return 0; }
        b += k;
        n -= (size_t)k;
    }
    return 1;
}

static int write_zeros(int fd, uint64_t n) {
    static const uint8_t zeros[4096];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (!write_all(fd, zeros, k)) return 0;
        n -= k;
    }
    return 1;
}

/* Header, metadata, tensor infos and the padding before the data section, in one buffer. */
static uint8_t *w_build_meta(const sqz_gguf_writer *w, size_t *len) {
    uint64_t size = GGUF_HEADER_SIZE + (uint64_t)w->kv_len;
    for (size_t i = 0; i < w->n_t; i++)
        size += 8 + strlen(w->t[i].name) + 4 + 8 * (uint64_t)w->t[i].n_dims + 4 + 8;
    uint64_t padded = gguf_align(size, w->alignment);
    if (padded > SIZE_MAX) return NULL;
    uint8_t *b = calloc(1, (size_t)padded);
    if (!b) return NULL;
    uint8_t *p = b;
    uint32_t version = w->sqzf ? SQZ_SQZF_VERSION : 3;
    uint64_t n_t = w->n_t, n_kv = w->n_kv;
    memcpy(p, w->sqzf ? "SQZF" : "GGUF", 4); p += 4;
    memcpy(p, &version, 4); p += 4;
    memcpy(p, &n_t, 8); p += 8;
    memcpy(p, &n_kv, 8); p += 8;
    if (w->kv_len) { memcpy(p, w->kv, w->kv_len); p += w->kv_len; }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const gguf_wtensor *t = &w->t[i];
        uint64_t nlen = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims, type = (uint32_t)t->type;
        memcpy(p, &nlen, 8); p += 8;
        memcpy(p, t->name, (size_t)nlen); p += nlen;
        memcpy(p, &nd, 4); p += 4;
        for (int d = 0; d < t->n_dims; d++) { memcpy(p, &t->ne[d], 8); p += 8; }
        memcpy(p, &type, 4); p += 4;
        memcpy(p, &off, 8); p += 8;
        off += gguf_align(t->nbytes, w->alignment);
    }
    *len = (size_t)padded;
    return b;
}

sqz_status sqz_gguf_writer_begin(sqz_gguf_writer *w, const char *path) {
    if (!path || !path[0]) return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: empty path");
    if (w->fd >= 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: the writer is still writing %s", path, w->path);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16), *copy = strdup(path);
    size_t meta_len = 0;
    uint8_t *meta = tmp && copy ? w_build_meta(w, &meta_len) : NULL;
    if (!meta) {
        free(tmp);
        free(copy);
        return sqz_fail(w->ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(meta);
        free(tmp);
        free(copy);
        return sqz_fail(w->ctx, SQZ_ERR_IO, "%s: cannot create a temporary file beside it: %s",
                        path, strerror(e));
    }
    w->fd = fd;
    w->tmp = tmp;
    w->path = copy;
    w->cur = 0;
    w->cur_done = 0;
    const int ok = write_all(fd, meta, meta_len);
    const int e = errno;
    free(meta);
    if (!ok) {
        sqz_status st = sqz_fail(w->ctx, SQZ_ERR_IO, "%s: write failed: %s", path, strerror(e));
        w_abort(w);
        return st;
    }
    return SQZ_OK;
}

sqz_status sqz_gguf_writer_put(sqz_gguf_writer *w, const void *data, size_t n) {
    if (w->fd < 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: tensor data put before "
                        "sqz_gguf_writer_begin (or after a failure)");
    const uint8_t *p = data;
    while (n) {
        if (w->cur == w->n_t) {
            sqz_status st = sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: %zu bytes of tensor data more than "
                                     "the tensors hold", w->path, n);
            w_abort(w);
            return st;
        }
        const gguf_wtensor *t = &w->t[w->cur];
        const size_t k = n < t->nbytes - w->cur_done ? n : t->nbytes - w->cur_done;
        int ok = write_all(w->fd, p, k);
        w->cur_done += k;
        if (ok && w->cur_done == t->nbytes) {
            ok = write_zeros(w->fd, gguf_align(t->nbytes, w->alignment) - t->nbytes);
            w->cur++;
            w->cur_done = 0;
        }
        if (!ok) {
            sqz_status st = sqz_fail(w->ctx, SQZ_ERR_IO, "%s: write failed: %s", w->path,
                                     strerror(errno));
            w_abort(w);
            return st;
        }
        p += k;
        n -= k;
    }
    return SQZ_OK;
}

sqz_status sqz_gguf_writer_finish(sqz_gguf_writer *w) {
    if (w->fd < 0)
        return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: finish before sqz_gguf_writer_begin "
                        "(or after a failure)");
    if (w->cur < w->n_t) {
        const gguf_wtensor *t = &w->t[w->cur];
        sqz_status st = sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: tensor %s got %zu of its %zu bytes",
                                 w->path, t->name, w->cur_done, t->nbytes);
        w_abort(w);
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
    } else {
        /* Make the rename itself durable; the file is complete whatever this says. */
        char *dir = sqz_path_dirname(w->path);
        if (dir) {
            int dfd = open(dir, O_RDONLY);
            if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    free(w->tmp);
    free(w->path);
    w->tmp = w->path = NULL;
    return st;
}

sqz_status sqz_gguf_writer_write(sqz_gguf_writer *w, const char *path) {
    if (!path || !path[0]) return sqz_fail(w->ctx, SQZ_ERR_ARG, "gguf writer: empty path");
    for (size_t i = 0; i < w->n_t; i++)
        if (!w->t[i].data)
            return sqz_fail(w->ctx, SQZ_ERR_ARG, "%s: tensor %s was declared without data: write "
                            "the file with sqz_gguf_writer_begin / put / finish", path, w->t[i].name);
    sqz_status st = sqz_gguf_writer_begin(w, path);
    for (size_t i = 0; st == SQZ_OK && i < w->n_t; i++)
        st = sqz_gguf_writer_put(w, w->t[i].data, w->t[i].nbytes);
    return st == SQZ_OK ? sqz_gguf_writer_finish(w) : st;
}
