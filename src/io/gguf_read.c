/* gguf_read.c - GGUF / sqzf reader (validating, memory-mapped); see gguf.h.
 *
 * The reader walks the file once with a bounds-checked cursor. Every count read from the file
 * is checked against the bytes left before anything is sized by it, and tables grow as entries
 * are actually parsed, so a hostile header cannot make it allocate more than a small multiple
 * of the file. Keys and tensor names are copied (NUL-terminated); values and tensor data stay
 * in the mapping. Lookups by key / name are binary searches over sorted index arrays.
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

#define GGUF_MAX_DEPTH 8          /* arrays nested in arrays */
/* The fewest bytes a metadata entry / tensor info can take: bounds for the header's counts. */
#define GGUF_MIN_KV_BYTES (8 + 1 + 4 + 1)
#define GGUF_MIN_TENSOR_BYTES (8 + 1 + 4 + 8 + 4 + 8)

/* ------------------------------------------------------------------ type tables */

static const char *const gguf_type_names[SQZ_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};
static const uint8_t gguf_type_sizes[SQZ_GGUF_TYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1,
                                                              0, 0, 8, 8, 8 };

const char *sqz_gguf_type_name(int type) {
    return type >= 0 && type < SQZ_GGUF_TYPE_COUNT ? gguf_type_names[type] : "?";
}

size_t sqz_gguf_type_size(int type) {
    return type >= 0 && type < SQZ_GGUF_TYPE_COUNT ? gguf_type_sizes[type] : 0;
}

/* ------------------------------------------------------------------ little-endian loads */

static uint16_t ld_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t ld_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t ld_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Writes s[0..n) into dst as a quoted, escaped string of at most about cap bytes. */
static void gguf_quote(char *dst, size_t cap, const void *s, size_t n) {
    const uint8_t *p = s;
    size_t k = 0;
    if (cap < 16) { if (cap) dst[0] = 0; return; }
    dst[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (k + 8 >= cap) { memcpy(dst + k, "...", 3); k += 3; break; }
        uint8_t ch = p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
            dst[k++] = (char)ch;
        } else {
            k += (size_t)snprintf(dst + k, cap - k, "\\x%02x", ch);
        }
    }
    dst[k++] = '"';
    dst[k] = 0;
}

/* ------------------------------------------------------------------ reader state */

typedef struct gguf_kv {
    char *key;               /* owned, NUL-terminated */
    int type;                /* value type; SQZ_GGUF_ARRAY for arrays */
    int elem_type;           /* arrays */
    uint64_t n;              /* arrays: element count; scalars: 1 */
    const uint8_t *val;      /* the value (arrays: the first element) */
    const uint8_t *raw;      /* the u32 value type */
    size_t raw_len;          /* from raw to the end of the value */
    uint64_t *str_off;       /* string arrays: offset from val of each element; owned */
} gguf_kv;

struct sqz_gguf {
    char *path;
    sqz_mapped_file map;     /* zeroed for sqz_gguf_open_mem */
    const uint8_t *buf;
    size_t len;
    uint32_t version, alignment;
    int sqzf;                /* the file is sqz's own container ("SQZF"), see docs/sqzf.md */
    uint64_t data_offset;
    gguf_kv *kv;
    size_t n_kv, cap_kv;
    size_t *kv_order;        /* indices of kv sorted by key */
    sqz_gguf_tensor *t;      /* names owned */
    size_t n_t, cap_t;
    size_t *t_order;         /* indices of t sorted by name */
};

void sqz_gguf_close(sqz_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_off);
    }
    free(g->kv);
    free(g->kv_order);
    for (size_t i = 0; i < g->n_t; i++) free((char *)g->t[i].name);
    free(g->t);
    free(g->t_order);
    sqz_file_unmap(&g->map);
    free(g->path);
    free(g);
}

/* A bounds-checked cursor over the file image. item names what is being read, for messages. */
typedef struct gguf_cur {
    sqz_ctx *ctx;
    const char *path;
    const uint8_t *buf;
    size_t len, pos;
    char item[200];
} gguf_cur;

static size_t cur_left(const gguf_cur *c) { return c->len - c->pos; }

static sqz_status cur_truncated(gguf_cur *c, size_t need, const char *what) {
    return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                    "%s: truncated: %s of %s needs %zu bytes at offset %zu, %zu left", c->path,
                    what, c->item, need, c->pos, cur_left(c));
}

static sqz_status rd_u32(gguf_cur *c, uint32_t *v, const char *what) {
    if (cur_left(c) < 4) return cur_truncated(c, 4, what);
    *v = ld_u32(c->buf + c->pos);
    c->pos += 4;
    return SQZ_OK;
}

static sqz_status rd_u64(gguf_cur *c, uint64_t *v, const char *what) {
    if (cur_left(c) < 8) return cur_truncated(c, 8, what);
    *v = ld_u64(c->buf + c->pos);
    c->pos += 8;
    return SQZ_OK;
}

/* A string: u64 length + bytes. */
static sqz_status rd_str(gguf_cur *c, const uint8_t **s, uint64_t *n, const char *what) {
    sqz_status st = rd_u64(c, n, what);
    if (st != SQZ_OK) return st;
    if (*n > cur_left(c))
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                        "%s: %s of %s: string length %llu at offset %zu exceeds the %zu bytes "
                        "left in the file",
                        c->path, what, c->item, (unsigned long long)*n, c->pos - 8, cur_left(c));
    *s = c->buf + c->pos;
    c->pos += (size_t)*n;
    return SQZ_OK;
}

static sqz_status check_value_type(gguf_cur *c, uint32_t t, const char *what) {
    if (t < SQZ_GGUF_TYPE_COUNT) return SQZ_OK;
    return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s has an unknown %s %u (at offset %zu)",
                    c->path, c->item, what, t, c->pos - 4);
}

/* n values of a fixed-size type; bools must be 0 or 1. */
static sqz_status skip_fixed(gguf_cur *c, uint32_t type, uint64_t n) {
    size_t sz = gguf_type_sizes[type];
    if (n > cur_left(c) / sz)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                        "%s: truncated: %s: %llu %s value%s at offset %zu need more than the "
                        "%zu bytes left",
                        c->path, c->item, (unsigned long long)n, gguf_type_names[type],
                        n == 1 ? "" : "s", c->pos, cur_left(c));
    if (type == SQZ_GGUF_BOOL) {
        for (uint64_t i = 0; i < n; i++) {
            uint8_t b = c->buf[c->pos + i];
            if (b > 1)
                return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                                "%s: %s: bool value %u at offset %zu (must be 0 or 1)", c->path,
                                c->item, b, c->pos + (size_t)i);
        }
    }
    c->pos += (size_t)(n * sz);
    return SQZ_OK;
}

static sqz_status skip_array_body(gguf_cur *c, uint32_t et, uint64_t n, int depth,
                                  uint64_t *str_off, const uint8_t *base);

/* One value of type type (the type tag already read). */
static sqz_status skip_value(gguf_cur *c, uint32_t type, int depth) {
    if (type == SQZ_GGUF_STRING) {
        const uint8_t *s;
        uint64_t n;
        return rd_str(c, &s, &n, "a string value");
    }
    if (type != SQZ_GGUF_ARRAY) return skip_fixed(c, type, 1);
    if (depth >= GGUF_MAX_DEPTH)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                        "%s: %s: arrays nested more than %d deep (at offset %zu)", c->path,
                        c->item, GGUF_MAX_DEPTH, c->pos);
    uint32_t et = 0;
    uint64_t n = 0;
    sqz_status st = rd_u32(c, &et, "the element type of a nested array");
    if (st == SQZ_OK) st = check_value_type(c, et, "array element type");
    if (st == SQZ_OK) st = rd_u64(c, &n, "the length of a nested array");
    if (st == SQZ_OK) st = skip_array_body(c, et, n, depth + 1, NULL, NULL);
    return st;
}

/* The smallest encoding of one element of type et. */
static size_t min_value_bytes(uint32_t et) {
    return et == SQZ_GGUF_STRING ? 8 : et == SQZ_GGUF_ARRAY ? 12 : gguf_type_sizes[et];
}

static sqz_status check_array_len(gguf_cur *c, uint32_t et, uint64_t n) {
    if (n <= cur_left(c) / min_value_bytes(et)) return SQZ_OK;
    return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                    "%s: %s: an array of %llu %s elements cannot fit in the %zu bytes left in "
                    "the file (at offset %zu)",
                    c->path, c->item, (unsigned long long)n, gguf_type_names[et], cur_left(c),
                    c->pos);
}

/* The n elements of an array; str_off (when not NULL) receives each string element's offset
 * from base. */
static sqz_status skip_array_body(gguf_cur *c, uint32_t et, uint64_t n, int depth,
                                  uint64_t *str_off, const uint8_t *base) {
    sqz_status st = check_array_len(c, et, n);
    if (st != SQZ_OK) return st;
    if (et != SQZ_GGUF_STRING && et != SQZ_GGUF_ARRAY) return skip_fixed(c, et, n);
    for (uint64_t i = 0; i < n; i++) {
        if (str_off) str_off[i] = (uint64_t)(c->buf + c->pos - base);
        st = skip_value(c, et, depth);
        if (st != SQZ_OK) return st;
    }
    return SQZ_OK;
}

/* ------------------------------------------------------------------ sorting */

/* qsort has no context argument in C11: sort arrays of (name, index) pairs instead. */
typedef struct gguf_name_ix {
    const char *name;
    size_t ix;
} gguf_name_ix;

static int cmp_name_ix(const void *a, const void *b) {
    return strcmp(((const gguf_name_ix *)a)->name, ((const gguf_name_ix *)b)->name);
}

/* Sorts names[0..n) into order[] (indices); returns the index (in names) of a name found
 * twice, or SIZE_MAX. */
static size_t sort_names(const char *const *names, size_t stride, size_t n, size_t *order,
                         int *nomem) {
    *nomem = 0;
    if (n == 0) return SIZE_MAX;
    gguf_name_ix *tmp = malloc(n * sizeof *tmp);
    if (!tmp) { *nomem = 1; return SIZE_MAX; }
    for (size_t i = 0; i < n; i++) {
        tmp[i].name = *(const char *const *)((const char *)names + i * stride);
        tmp[i].ix = i;
    }
    qsort(tmp, n, sizeof *tmp, cmp_name_ix);
    size_t dup = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        order[i] = tmp[i].ix;
        if (i && dup == SIZE_MAX && strcmp(tmp[i - 1].name, tmp[i].name) == 0) dup = tmp[i].ix;
    }
    free(tmp);
    return dup;
}

/* ------------------------------------------------------------------ parsing */

static sqz_status header_counts(gguf_cur *c, uint64_t *n_tensors, uint64_t *n_kv);

/* sqz's container: "SQZF", u32 version (1), then exactly GGUF v3's layout (docs/sqzf.md). */
static sqz_status parse_sqzf_header(gguf_cur *c, sqz_gguf *g, uint64_t *n_tensors,
                                    uint64_t *n_kv) {
    if (c->len < GGUF_HEADER_SIZE)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: truncated sqzf header (%zu bytes of %d)",
                        c->path, c->len, GGUF_HEADER_SIZE);
    const uint32_t v = ld_u32(c->buf + 4);
    if (v != SQZ_SQZF_VERSION)
        return sqz_fail(c->ctx, v == 0 ? SQZ_ERR_FORMAT : SQZ_ERR_UNSUPPORTED,
                        "%s: sqzf version %u is not supported (only version %d)", c->path, v,
                        SQZ_SQZF_VERSION);
    g->version = v;
    g->sqzf = 1;
    return header_counts(c, n_tensors, n_kv);
}

static sqz_status parse_header(gguf_cur *c, sqz_gguf *g, uint64_t *n_tensors, uint64_t *n_kv) {
    const uint8_t *b = c->buf;
    if (c->len < 4)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %zu bytes is too short for a GGUF file",
                        c->path, c->len);
    if (memcmp(b, "SQZF", 4) == 0) return parse_sqzf_header(c, g, n_tensors, n_kv);
    if (memcmp(b, "GGUF", 4) != 0) {
        char q[40];
        gguf_quote(q, sizeof q, b, 4);
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                        "%s: not a GGUF file (magic %s, want \"GGUF\", or \"SQZF\" for sqzf)",
                        c->path, q);
    }
    if (c->len < GGUF_HEADER_SIZE)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                        "%s: truncated GGUF header (%zu bytes of %d)", c->path, c->len,
                        GGUF_HEADER_SIZE);
    uint32_t v = ld_u32(b + 4);
    if (v == 0)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: GGUF version 0 is invalid", c->path);
    if (v == 1)
        return sqz_fail(c->ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: GGUF version 1 (32-bit lengths) is not supported; only versions 2 "
                        "and 3 are: convert the model again",
                        c->path);
    if ((v & 0xffff) == 0)
        return sqz_fail(c->ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: GGUF version field 0x%08x: a big-endian file? only little-endian "
                        "files (versions 2 and 3) are supported",
                        c->path, v);
    if (v > 3)
        return sqz_fail(c->ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: GGUF version %u is not supported (only versions 2 and 3)", c->path,
                        v);
    g->version = v;
    return header_counts(c, n_tensors, n_kv);
}

/* The two counts after magic and version, bounded by the bytes left. */
static sqz_status header_counts(gguf_cur *c, uint64_t *n_tensors, uint64_t *n_kv) {
    const uint8_t *b = c->buf;
    *n_tensors = ld_u64(b + 8);
    *n_kv = ld_u64(b + 16);
    c->pos = GGUF_HEADER_SIZE;
    size_t left = cur_left(c);
    if (*n_kv > left / GGUF_MIN_KV_BYTES)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                        "%s: header claims %llu metadata entries; the %zu bytes after it cannot "
                        "hold that many",
                        c->path, (unsigned long long)*n_kv, left);
    if (*n_tensors > left / GGUF_MIN_TENSOR_BYTES ||
        *n_tensors * GGUF_MIN_TENSOR_BYTES > left - *n_kv * GGUF_MIN_KV_BYTES)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                        "%s: header claims %llu tensors and %llu metadata entries; the %zu bytes "
                        "after it cannot hold that many",
                        c->path, (unsigned long long)*n_tensors, (unsigned long long)*n_kv,
                        left);
    return SQZ_OK;
}

static sqz_status gguf_nomem(gguf_cur *c) {
    return sqz_fail(c->ctx, SQZ_ERR_NOMEM, "%s: out of memory", c->path);
}

/* The table arr (cap entries of elem bytes, n used) with room for one more, doubled when full
 * (*cap updated); NULL without memory (arr is then unchanged). */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return arr;
    size_t ncap = *cap ? 2 * *cap : 16;
    void *p = realloc(arr, ncap * elem);
    if (p) *cap = ncap;
    return p;
}

static sqz_status parse_kv(gguf_cur *c, sqz_gguf *g, uint64_t i) {
    gguf_kv *k = grow(g->kv, &g->cap_kv, g->n_kv, sizeof *k);
    if (!k) return gguf_nomem(c);
    g->kv = k;
    snprintf(c->item, sizeof c->item, "metadata entry %llu", (unsigned long long)i);
    const uint8_t *key;
    uint64_t klen;
    sqz_status st = rd_str(c, &key, &klen, "the key");
    if (st != SQZ_OK) return st;
    if (klen == 0)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s has an empty key", c->path, c->item);
    if (klen > SQZ_GGUF_MAX_KEY)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s has a key of %llu bytes (limit %d)",
                        c->path, c->item, (unsigned long long)klen, SQZ_GGUF_MAX_KEY);
    char q[120];
    gguf_quote(q, sizeof q, key, (size_t)klen);
    if (memchr(key, 0, (size_t)klen))
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s: key %s contains a NUL byte", c->path,
                        c->item, q);
    gguf_kv *kv = &g->kv[g->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = malloc((size_t)klen + 1);
    if (!kv->key) return gguf_nomem(c);
    memcpy(kv->key, key, (size_t)klen);
    kv->key[klen] = 0;
    g->n_kv++; /* owned by g from here on */
    snprintf(c->item, sizeof c->item, "metadata %s", q);

    kv->raw = c->buf + c->pos;
    uint32_t type = 0;
    st = rd_u32(c, &type, "the value type");
    if (st == SQZ_OK) st = check_value_type(c, type, "value type");
    if (st != SQZ_OK) return st;
    kv->type = (int)type;
    kv->n = 1;
    if (type == SQZ_GGUF_ARRAY) {
        uint32_t et = 0;
        uint64_t n = 0;
        st = rd_u32(c, &et, "the array element type");
        if (st == SQZ_OK) st = check_value_type(c, et, "array element type");
        if (st == SQZ_OK) st = rd_u64(c, &n, "the array length");
        if (st == SQZ_OK) st = check_array_len(c, et, n);
        if (st != SQZ_OK) return st;
        kv->elem_type = (int)et;
        kv->n = n;
        kv->val = c->buf + c->pos;
        if (et == SQZ_GGUF_STRING && n) {
            kv->str_off = malloc((size_t)n * sizeof *kv->str_off); /* n <= bytes left / 8 */
            if (!kv->str_off) return gguf_nomem(c);
        }
        st = skip_array_body(c, et, n, 1, kv->str_off, kv->val);
    } else {
        kv->val = c->buf + c->pos;
        st = skip_value(c, type, 0);
    }
    kv->raw_len = (size_t)(c->buf + c->pos - kv->raw);
    return st;
}

static sqz_status parse_tensor_info(gguf_cur *c, sqz_gguf *g, uint64_t i) {
    sqz_gguf_tensor *tt = grow(g->t, &g->cap_t, g->n_t, sizeof *tt);
    if (!tt) return gguf_nomem(c);
    g->t = tt;
    snprintf(c->item, sizeof c->item, "tensor %llu", (unsigned long long)i);
    const uint8_t *name;
    uint64_t nlen;
    sqz_status st = rd_str(c, &name, &nlen, "the name");
    if (st != SQZ_OK) return st;
    if (nlen == 0)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s has an empty name", c->path, c->item);
    char q[120];
    gguf_quote(q, sizeof q, name, (size_t)nlen);
    if (nlen > SQZ_GGUF_MAX_NAME)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s: name %s is %llu bytes (limit %d)",
                        c->path, c->item, q, (unsigned long long)nlen, SQZ_GGUF_MAX_NAME);
    if (memchr(name, 0, (size_t)nlen))
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s: name %s contains a NUL byte", c->path,
                        c->item, q);
    sqz_gguf_tensor *t = &g->t[g->n_t];
    memset(t, 0, sizeof *t);
    char *nm = malloc((size_t)nlen + 1);
    if (!nm) return gguf_nomem(c);
    memcpy(nm, name, (size_t)nlen);
    nm[nlen] = 0;
    t->name = nm;
    t->index = g->n_t;
    g->n_t++;
    snprintf(c->item, sizeof c->item, "tensor %s", q);

    uint32_t nd = 0;
    st = rd_u32(c, &nd, "the number of dimensions");
    if (st != SQZ_OK) return st;
    if (nd == 0 || nd > SQZ_GGUF_MAX_DIMS)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s has %u dimensions (1 to %d allowed)",
                        c->path, c->item, nd, SQZ_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t count = 1;
    for (int d = 0; d < SQZ_GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if (d < (int)nd) {
            st = rd_u64(c, &v, "a dimension");
            if (st != SQZ_OK) return st;
        }
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s: ne[%d] = %lld (must be >= 1)",
                            c->path, c->item, d, (long long)(int64_t)v);
        if (v > (uint64_t)INT64_MAX / count)
            return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s: element count overflows",
                            c->path, c->item);
        count *= v;
        t->ne[d] = (int64_t)v;
    }
    uint32_t type = 0;
    st = rd_u32(c, &type, "the type");
    if (st != SQZ_OK) return st;
    int bs;
    /* GGUF: ggml's ids 0..39 only; sqzf also sqz's own ids >= 1024 (file_type_layout) */
    if (type >= SQZ_TYPE_COUNT &&
        (!g->sqzf || type > INT32_MAX || !gguf_file_type_layout(1, (int)type, &bs, NULL)))
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s has unknown type id %u", c->path,
                        c->item, type);
    if (!gguf_file_type_layout(g->sqzf, (int)type, &bs, NULL))
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s has type id %u (%s), not in GGUF files",
                        c->path, c->item, type, sqz_type_name((int)type));
    t->type = (int)type;
    if (t->ne[0] % bs != 0)
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                        "%s: %s: row length %lld is not a multiple of the %s block size %d",
                        c->path, c->item, (long long)t->ne[0], sqz_type_name((int)type), bs);
    uint64_t nbytes;
    if (!gguf_file_nbytes(g->sqzf, (int)type, count, &nbytes))
        return sqz_fail(c->ctx, SQZ_ERR_FORMAT, "%s: %s: byte count overflows", c->path,
                        c->item);
    t->nbytes = (size_t)nbytes;
    return rd_u64(c, &t->offset, "the data offset");
}

typedef struct gguf_range {
    uint64_t begin, end;
    size_t ix;
} gguf_range;

static int cmp_range(const void *a, const void *b) {
    const gguf_range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* Places every tensor in the data section: aligned, inside the file, no two overlapping. */
static sqz_status place_tensors(gguf_cur *c, sqz_gguf *g) {
    for (size_t i = 0; i < g->n_t; i++) {
        sqz_gguf_tensor *t = &g->t[i];
        if (t->offset % g->alignment != 0)
            return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                            "%s: tensor \"%s\": data offset %llu is not a multiple of the "
                            "alignment %u",
                            c->path, t->name, (unsigned long long)t->offset, g->alignment);
        uint64_t size = c->len;
        if (g->data_offset > size || t->offset > size - g->data_offset ||
            t->nbytes > size - g->data_offset - t->offset)
            return sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                            "%s: tensor \"%s\": data at offset %llu + %llu, %zu bytes, lies "
                            "beyond the end of the file (%zu bytes): truncated?",
                            c->path, t->name, (unsigned long long)g->data_offset,
                            (unsigned long long)t->offset, t->nbytes, c->len);
        t->data = c->buf + g->data_offset + t->offset;
    }
    if (g->n_t < 2) return SQZ_OK;
    gguf_range *r = malloc(g->n_t * sizeof *r);
    if (!r) return gguf_nomem(c);
    for (size_t i = 0; i < g->n_t; i++) {
        r[i].begin = g->t[i].offset;
        r[i].end = g->t[i].offset + g->t[i].nbytes;
        r[i].ix = i;
    }
    qsort(r, g->n_t, sizeof *r, cmp_range);
    sqz_status st = SQZ_OK;
    for (size_t i = 1; i < g->n_t; i++) {
        if (r[i].begin < r[i - 1].end) {
            st = sqz_fail(c->ctx, SQZ_ERR_FORMAT,
                          "%s: tensors \"%s\" [%llu, %llu) and \"%s\" [%llu, %llu) overlap",
                          c->path, g->t[r[i - 1].ix].name, (unsigned long long)r[i - 1].begin,
                          (unsigned long long)r[i - 1].end, g->t[r[i].ix].name,
                          (unsigned long long)r[i].begin, (unsigned long long)r[i].end);
            break;
        }
    }
    free(r);
    return st;
}

static sqz_status gguf_parse(sqz_ctx *ctx, sqz_gguf *g) {
    gguf_cur c = { .ctx = ctx, .path = g->path, .buf = g->buf, .len = g->len };
    snprintf(c.item, sizeof c.item, "the header");
    uint64_t n_tensors = 0, n_kv = 0;
    sqz_status st = parse_header(&c, g, &n_tensors, &n_kv);
    for (uint64_t i = 0; st == SQZ_OK && i < n_kv; i++) st = parse_kv(&c, g, i);
    if (st != SQZ_OK) return st;

    int nomem;
    if (g->n_kv) {
        g->kv_order = malloc(g->n_kv * sizeof *g->kv_order);
        if (!g->kv_order) return gguf_nomem(&c);
    }
    size_t dup = sort_names(g->n_kv ? (const char *const *)&g->kv[0].key : NULL, sizeof *g->kv,
                            g->n_kv, g->kv_order, &nomem);
    if (nomem) return gguf_nomem(&c);
    if (dup != SIZE_MAX) {
        char q[120];
        gguf_quote(q, sizeof q, g->kv[dup].key, strlen(g->kv[dup].key));
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: metadata key %s appears twice", g->path, q);
    }

    g->alignment = SQZ_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = sqz_gguf_find_key(g, GGUF_KEY_ALIGNMENT);
    if (ai >= 0) {
        const gguf_kv *kv = &g->kv[ai];
        if (kv->type != SQZ_GGUF_U32) {
            int arr = kv->type == SQZ_GGUF_ARRAY;
            return sqz_fail(ctx, SQZ_ERR_FORMAT,
                            "%s: " GGUF_KEY_ALIGNMENT " has type %s%s, not u32", g->path,
                            arr ? "array of " : "",
                            gguf_type_names[arr ? kv->elem_type : kv->type]);
        }
        uint32_t a = ld_u32(kv->val);
        if (a == 0 || (a & (a - 1)) != 0 || a > SQZ_GGUF_MAX_ALIGNMENT)
            return sqz_fail(ctx, SQZ_ERR_FORMAT,
                            "%s: " GGUF_KEY_ALIGNMENT " = %u is not a power of two <= %u",
                            g->path, a, SQZ_GGUF_MAX_ALIGNMENT);
        g->alignment = a;
    }

    for (uint64_t i = 0; st == SQZ_OK && i < n_tensors; i++) st = parse_tensor_info(&c, g, i);
    if (st != SQZ_OK) return st;
    if (g->n_t) {
        g->t_order = malloc(g->n_t * sizeof *g->t_order);
        if (!g->t_order) return gguf_nomem(&c);
    }
    dup = sort_names(g->n_t ? (const char *const *)&g->t[0].name : NULL, sizeof *g->t, g->n_t,
                     g->t_order, &nomem);
    if (nomem) return gguf_nomem(&c);
    if (dup != SIZE_MAX)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor \"%s\" appears twice", g->path,
                        g->t[dup].name);
    g->data_offset = gguf_align(c.pos, g->alignment);
    return place_tensors(&c, g);
}

/* ------------------------------------------------------------------ opening */

static sqz_gguf *gguf_new(const char *path) {
    sqz_gguf *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->path = strdup(path);
    if (!g->path) { free(g); return NULL; }
    return g;
}

sqz_status sqz_gguf_open_mem(sqz_ctx *ctx, const void *buf, size_t len, const char *name,
                             sqz_gguf **out) {
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && len) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: NULL buffer", name);
    sqz_gguf *g = gguf_new(name);
    if (!g) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", name);
    g->buf = buf;
    g->len = len;
    sqz_status st = gguf_parse(ctx, g);
    if (st != SQZ_OK) { sqz_gguf_close(g); return st; }
    *out = g;
    return SQZ_OK;
}

sqz_status sqz_gguf_open(sqz_ctx *ctx, const char *path, sqz_gguf **out) {
    *out = NULL;
    if (!path) return sqz_fail(ctx, SQZ_ERR_ARG, "sqz_gguf_open: NULL path");
    sqz_gguf *g = gguf_new(path);
    if (!g) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    sqz_status st = sqz_file_map(ctx, path, &g->map);
    if (st == SQZ_OK) {
        g->buf = g->map.data;
        g->len = g->map.size;
        st = gguf_parse(ctx, g);
    }
    if (st != SQZ_OK) { sqz_gguf_close(g); return st; }
    *out = g;
    return SQZ_OK;
}

/* ------------------------------------------------------------------ reader accessors */

const char *sqz_gguf_path(const sqz_gguf *g) { return g->path; }

size_t sqz_gguf_release(const sqz_gguf *g, const void *p, size_t n) {
    return g ? sqz_file_release(&g->map, p, n) : 0;
}
uint32_t sqz_gguf_version(const sqz_gguf *g) { return g->version; }
int sqz_gguf_is_sqzf(const sqz_gguf *g) { return g->sqzf; }
uint32_t sqz_gguf_alignment(const sqz_gguf *g) { return g->alignment; }
uint64_t sqz_gguf_data_offset(const sqz_gguf *g) { return g->data_offset; }
size_t sqz_gguf_file_size(const sqz_gguf *g) { return g->len; }
size_t sqz_gguf_n_kv(const sqz_gguf *g) { return g ? g->n_kv : 0; }

int64_t sqz_gguf_find_key(const sqz_gguf *g, const char *key) {
    if (!g || !key || !g->kv_order) return -1;
    size_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, g->kv[g->kv_order[mid]].key);
        if (c == 0) return (int64_t)g->kv_order[mid];
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return -1;
}

const char *sqz_gguf_kv_key(const sqz_gguf *g, size_t i) {
    return g && i < g->n_kv ? g->kv[i].key : NULL;
}

int sqz_gguf_kv_type(const sqz_gguf *g, size_t i) {
    return g && i < g->n_kv ? g->kv[i].type : -1;
}

int sqz_gguf_kv_arr(const sqz_gguf *g, size_t i, int *elem_type, uint64_t *n,
                    const void **data) {
    if (!g || i >= g->n_kv || g->kv[i].type != SQZ_GGUF_ARRAY) return 0;
    if (elem_type) *elem_type = g->kv[i].elem_type;
    if (n) *n = g->kv[i].n;
    if (data) *data = g->kv[i].val;
    return 1;
}

const char *sqz_gguf_kv_str(const sqz_gguf *g, size_t i, uint64_t j, size_t *len) {
    if (!g || i >= g->n_kv) return NULL;
    const gguf_kv *kv = &g->kv[i];
    const uint8_t *p;
    if (kv->type == SQZ_GGUF_STRING && j == 0) {
        p = kv->val;
    } else if (kv->type == SQZ_GGUF_ARRAY && kv->elem_type == SQZ_GGUF_STRING && j < kv->n) {
        p = kv->val + kv->str_off[j];
    } else {
        return NULL;
    }
    if (len) *len = (size_t)ld_u64(p);
    return (const char *)p + 8;
}

const void *sqz_gguf_kv_raw(const sqz_gguf *g, size_t i, size_t *len) {
    if (!g || i >= g->n_kv) return NULL;
    if (len) *len = g->kv[i].raw_len;
    return g->kv[i].raw;
}

/* A scalar integer as (signed or unsigned) 64 bits. */
static int kv_integer(const gguf_kv *kv, int64_t *s, uint64_t *u, int *is_unsigned) {
    const uint8_t *p = kv->val;
    *is_unsigned = 0;
    switch (kv->type) {
    case SQZ_GGUF_U8: *u = p[0]; *is_unsigned = 1; return 1;
    case SQZ_GGUF_U16: *u = ld_u16(p); *is_unsigned = 1; return 1;
    case SQZ_GGUF_U32: *u = ld_u32(p); *is_unsigned = 1; return 1;
    case SQZ_GGUF_U64: *u = ld_u64(p); *is_unsigned = 1; return 1;
    case SQZ_GGUF_I8: *s = (int8_t)p[0]; return 1;
    case SQZ_GGUF_I16: *s = (int16_t)ld_u16(p); return 1;
    case SQZ_GGUF_I32: *s = (int32_t)ld_u32(p); return 1;
    case SQZ_GGUF_I64: *s = (int64_t)ld_u64(p); return 1;
    default: return 0;
    }
}

static int kv_float(const gguf_kv *kv, double *out) {
    if (kv->type == SQZ_GGUF_F32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
        return 1;
    }
    if (kv->type == SQZ_GGUF_F64) {
        memcpy(out, kv->val, 8);
        return 1;
    }
    return 0;
}

int sqz_gguf_kv_int(const sqz_gguf *g, size_t i, int64_t *out) {
    if (!g || i >= g->n_kv) return 0;
    int64_t s;
    uint64_t u;
    int uns;
    if (!kv_integer(&g->kv[i], &s, &u, &uns)) return 0;
    if (uns) {
        if (u > (uint64_t)INT64_MAX) return 0;
        s = (int64_t)u;
    }
    *out = s;
    return 1;
}

int sqz_gguf_kv_f64(const sqz_gguf *g, size_t i, double *out) {
    if (!g || i >= g->n_kv) return 0;
    int64_t s;
    uint64_t u;
    int uns;
    if (kv_float(&g->kv[i], out)) return 1;
    if (!kv_integer(&g->kv[i], &s, &u, &uns)) return 0;
    *out = uns ? (double)u : (double)s;
    return 1;
}

/* The entry of key, or NULL with an error on ctx. */
static const gguf_kv *kv_require(sqz_ctx *ctx, const sqz_gguf *g, const char *key) {
    int64_t i = sqz_gguf_find_key(g, key);
    if (i < 0) {
        sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: no metadata key %s", g ? g->path : "(null)",
                 key ? key : "(null)");
        return NULL;
    }
    return &g->kv[i];
}

static sqz_status kv_wrong_type(sqz_ctx *ctx, const sqz_gguf *g, const gguf_kv *kv,
                                const char *want) {
    if (kv->type == SQZ_GGUF_ARRAY)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: metadata %s is an array of %s, not %s",
                        g->path, kv->key, gguf_type_names[kv->elem_type], want);
    return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: metadata %s has type %s, not %s", g->path,
                    kv->key, gguf_type_names[kv->type], want);
}

/* An integer key within [lo, hi] (as signed when hi <= INT64_MAX). */
static sqz_status get_int(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int64_t lo,
                          uint64_t hi, const char *tname, int64_t *s_out, uint64_t *u_out) {
    const gguf_kv *kv = kv_require(ctx, g, key);
    if (!kv) return SQZ_ERR_FORMAT;
    int64_t s = 0;
    uint64_t u = 0;
    int uns;
    if (!kv_integer(kv, &s, &u, &uns)) return kv_wrong_type(ctx, g, kv, "an integer");
    int ok;
    if (uns) ok = u <= hi;
    else ok = s >= lo && (s < 0 || (uint64_t)s <= hi);
    if (!ok) {
        if (uns)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: metadata %s = %llu does not fit in %s",
                            g->path, key, (unsigned long long)u, tname);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: metadata %s = %lld does not fit in %s",
                        g->path, key, (long long)s, tname);
    }
    if (uns) { *u_out = u; *s_out = (int64_t)u; }
    else { *s_out = s; *u_out = (uint64_t)s; }
    return SQZ_OK;
}

sqz_status sqz_gguf_get_u32(sqz_ctx *ctx, const sqz_gguf *g, const char *key, uint32_t *out) {
    int64_t s;
    uint64_t u;
    sqz_status st = get_int(ctx, g, key, 0, UINT32_MAX, "u32", &s, &u);
    if (st == SQZ_OK) *out = (uint32_t)u;
    return st;
}

sqz_status sqz_gguf_get_i32(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int32_t *out) {
    int64_t s;
    uint64_t u;
    sqz_status st = get_int(ctx, g, key, INT32_MIN, INT32_MAX, "i32", &s, &u);
    if (st == SQZ_OK) *out = (int32_t)s;
    return st;
}

sqz_status sqz_gguf_get_u64(sqz_ctx *ctx, const sqz_gguf *g, const char *key, uint64_t *out) {
    int64_t s;
    uint64_t u;
    sqz_status st = get_int(ctx, g, key, 0, UINT64_MAX, "u64", &s, &u);
    if (st == SQZ_OK) *out = u;
    return st;
}

sqz_status sqz_gguf_get_i64(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int64_t *out) {
    int64_t s;
    uint64_t u;
    sqz_status st = get_int(ctx, g, key, INT64_MIN, INT64_MAX, "i64", &s, &u);
    if (st == SQZ_OK) *out = s;
    return st;
}

sqz_status sqz_gguf_get_f64(sqz_ctx *ctx, const sqz_gguf *g, const char *key, double *out) {
    const gguf_kv *kv = kv_require(ctx, g, key);
    if (!kv) return SQZ_ERR_FORMAT;
    if (!kv_float(kv, out)) return kv_wrong_type(ctx, g, kv, "a float");
    return SQZ_OK;
}

sqz_status sqz_gguf_get_f32(sqz_ctx *ctx, const sqz_gguf *g, const char *key, float *out) {
    double d;
    sqz_status st = sqz_gguf_get_f64(ctx, g, key, &d);
    if (st == SQZ_OK) *out = (float)d;
    return st;
}

sqz_status sqz_gguf_get_bool(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int *out) {
    const gguf_kv *kv = kv_require(ctx, g, key);
    if (!kv) return SQZ_ERR_FORMAT;
    if (kv->type != SQZ_GGUF_BOOL) return kv_wrong_type(ctx, g, kv, "bool");
    *out = kv->val[0];
    return SQZ_OK;
}

sqz_status sqz_gguf_get_str(sqz_ctx *ctx, const sqz_gguf *g, const char *key, const char **s,
                            size_t *len) {
    const gguf_kv *kv = kv_require(ctx, g, key);
    if (!kv) return SQZ_ERR_FORMAT;
    if (kv->type != SQZ_GGUF_STRING) return kv_wrong_type(ctx, g, kv, "a string");
    *len = (size_t)ld_u64(kv->val);
    *s = (const char *)kv->val + 8;
    return SQZ_OK;
}

sqz_status sqz_gguf_get_arr(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int *elem_type,
                            uint64_t *n, const void **data) {
    const gguf_kv *kv = kv_require(ctx, g, key);
    if (!kv) return SQZ_ERR_FORMAT;
    if (kv->type != SQZ_GGUF_ARRAY) return kv_wrong_type(ctx, g, kv, "an array");
    *elem_type = kv->elem_type;
    *n = kv->n;
    *data = kv->val;
    return SQZ_OK;
}

const char *sqz_gguf_arr_str(const sqz_gguf *g, const char *key, uint64_t i, size_t *len) {
    int64_t k = sqz_gguf_find_key(g, key);
    if (k < 0 || g->kv[k].type != SQZ_GGUF_ARRAY) return NULL;
    return sqz_gguf_kv_str(g, (size_t)k, i, len);
}

size_t sqz_gguf_n_tensors(const sqz_gguf *g) { return g ? g->n_t : 0; }

const sqz_gguf_tensor *sqz_gguf_get_tensor(const sqz_gguf *g, size_t i) {
    return g && i < g->n_t ? &g->t[i] : NULL;
}

const sqz_gguf_tensor *sqz_gguf_find_tensor(const sqz_gguf *g, const char *name) {
    if (!g || !name || !g->t_order) return NULL;
    size_t lo = 0, hi = g->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const sqz_gguf_tensor *t = &g->t[g->t_order[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

sqz_status sqz_gguf_require_tensor(sqz_ctx *ctx, const sqz_gguf *g, const char *name,
                                   const sqz_gguf_tensor **out) {
    *out = NULL;
    const sqz_gguf_tensor *t = sqz_gguf_find_tensor(g, name);
    if (!t)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: no tensor %s", g ? g->path : "(null)",
                        name ? name : "(null)");
    if (!sqz_type_usable(t->type))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: tensor %s has type %s, not supported by sqz",
                        g->path, t->name, sqz_type_name(t->type));
    *out = t;
    return SQZ_OK;
}
