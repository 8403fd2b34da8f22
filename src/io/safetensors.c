/* safetensors.c - safetensors reader: header validation, sharded indexes, lookup by name.
 *
 * A file is mapped, its JSON header parsed with cJSON, and every entry checked before anything
 * is returned: dtype known, shape of at most 4 non-negative integers, element and byte counts
 * without overflow, data_offsets [begin, end] inside the data section and matching the shape,
 * no two tensors sharing bytes, no name twice. Holes between tensors are allowed (the official
 * writer never leaves any, but they are harmless to a reader). The table of all shards is
 * sorted by name so lookups are binary searches.
 */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* bytes of JSON header we agree to parse */
#define ST_MAX_INDEX ((size_t)100 << 20)    /* bytes of model.safetensors.index.json */
/* JSON numbers are doubles: above 2^53 an integer is no longer exact, and no real file has
 * offsets or dimensions that large. */
#define ST_MAX_JSON_INT 9007199254740992.0

typedef struct st_dtype {
    const char *name;
    size_t size;   /* bytes per element */
    sqz_type type; /* SQZ_ST_TYPE_NONE: known to the format, not computable by sqz */
} st_dtype;

/* Every dtype of the safetensors format that has a whole number of bytes per element. */
static const st_dtype st_dtypes[] = {
    { "F32", 4, SQZ_TYPE_F32 },          { "F16", 2, SQZ_TYPE_F16 },
    { "BF16", 2, SQZ_TYPE_BF16 },        { "F64", 8, SQZ_ST_TYPE_NONE },
    { "I64", 8, SQZ_ST_TYPE_NONE },      { "I32", 4, SQZ_ST_TYPE_NONE },
    { "I16", 2, SQZ_ST_TYPE_NONE },      { "I8", 1, SQZ_ST_TYPE_NONE },
    { "U64", 8, SQZ_ST_TYPE_NONE },      { "U32", 4, SQZ_ST_TYPE_NONE },
    { "U16", 2, SQZ_ST_TYPE_NONE },      { "U8", 1, SQZ_ST_TYPE_NONE },
    { "BOOL", 1, SQZ_ST_TYPE_NONE },     { "F8_E4M3", 1, SQZ_ST_TYPE_NONE },
    { "F8_E5M2", 1, SQZ_ST_TYPE_NONE },  { "F8_E8M0", 1, SQZ_ST_TYPE_NONE },
};

typedef struct st_shard {
    sqz_mapped_file map; /* zeroed for sqz_st_open_mem */
    char *path;          /* owned; sqz_st_tensor.file points here */
} st_shard;

struct sqz_safetensors {
    char *path;              /* what the caller opened (for sqz_st_require's messages) */
    sqz_st_tensor *tensors;  /* names owned; sorted by name once open */
    size_t n, cap;
    st_shard *shards;
    size_t n_shards;
};

/* ------------------------------------------------------------------ table management */

void sqz_st_close(sqz_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->n_shards; i++) {
        sqz_file_unmap(&st->shards[i].map);
        free(st->shards[i].path);
    }
    free(st->shards);
    free(st->path);
    free(st);
}

static sqz_safetensors *st_new(const char *path) {
    sqz_safetensors *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->path = strdup(path);
    if (!st->path) { free(st); return NULL; }
    return st;
}

/* Adds a shard named path; the mapping is filled in by the caller. */
static st_shard *st_add_shard(sqz_safetensors *st, const char *path) {
    st_shard *s = realloc(st->shards, (st->n_shards + 1) * sizeof *s);
    if (!s) return NULL;
    st->shards = s;
    s = &st->shards[st->n_shards];
    memset(s, 0, sizeof *s);
    s->path = strdup(path);
    if (!s->path) return NULL;
    st->n_shards++;
    return s;
}

static int st_reserve(sqz_safetensors *st, size_t extra) {
    if (extra > SIZE_MAX / sizeof(sqz_st_tensor) - st->n) return 0;
    size_t need = st->n + extra;
    if (need <= st->cap) return 1;
    sqz_st_tensor *t = realloc(st->tensors, need * sizeof *t);
    if (!t) return 0;
    st->tensors = t;
    st->cap = need;
    return 1;
}

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const sqz_st_tensor *)a)->name, ((const sqz_st_tensor *)b)->name);
}

static int st_cmp_key(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const sqz_st_tensor *)elem)->name);
}

/* Sorts the whole table by name and refuses names held twice. */
static sqz_status st_finish(sqz_ctx *ctx, sqz_safetensors *st) {
    if (st->n > 1) qsort(st->tensors, st->n, sizeof *st->tensors, st_cmp_name);
    for (size_t i = 1; i < st->n; i++) {
        const sqz_st_tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if (strcmp(a->name, b->name) != 0) continue;
        if (strcmp(a->file, b->file) == 0)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor \"%s\" is defined twice", a->file,
                            a->name);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor \"%s\" is in both %s and %s", st->path,
                        a->name, a->file, b->file);
    }
    return SQZ_OK;
}

size_t sqz_st_count(const sqz_safetensors *st) { return st ? st->n : 0; }

size_t sqz_st_release(const sqz_safetensors *st, const void *p, size_t n) {
    size_t done = 0;
    for (size_t i = 0; st && i < st->n_shards; i++) done += sqz_file_release(&st->shards[i].map, p, n);
    return done;
}

const sqz_st_tensor *sqz_st_get(const sqz_safetensors *st, size_t i) {
    return st && i < st->n ? &st->tensors[i] : NULL;
}

const sqz_st_tensor *sqz_st_find(const sqz_safetensors *st, const char *name) {
    if (!st || !name || st->n == 0) return NULL;
    return bsearch(name, st->tensors, st->n, sizeof *st->tensors, st_cmp_key);
}

sqz_status sqz_st_require(sqz_ctx *ctx, const sqz_safetensors *st, const char *name,
                          const sqz_st_tensor **out) {
    *out = NULL;
    const sqz_st_tensor *t = sqz_st_find(st, name);
    if (!t)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: no tensor %s", st ? st->path : "(null)", name);
    if (t->type == SQZ_ST_TYPE_NONE)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: tensor %s has dtype %s, not supported (F32, F16 or BF16 only)",
                        t->file, t->name, t->dtype);
    *out = t;
    return SQZ_OK;
}

/* ------------------------------------------------------------------ header parsing */

/* A JSON number that is an exact non-negative integer. */
static int st_json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_JSON_INT || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int st_mul(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static const st_dtype *st_find_dtype(const char *s) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
    return NULL;
}

static void st_fmt_shape(char *buf, size_t cap, const int64_t *shape, int n) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Validates one header entry and fills t (t->name is left to the caller). */
static sqz_status st_parse_entry(sqz_ctx *ctx, const char *path, const char *name,
                                 const cJSON *item, const uint8_t *data, uint64_t dsize,
                                 sqz_st_tensor *t) {
    if (!cJSON_IsObject(item))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor \"%s\": entry is not a JSON object",
                        path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(jd))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor \"%s\": %s dtype", path, name,
                        jd ? "non-string" : "missing");
    const st_dtype *dt = st_find_dtype(jd->valuestring);
    if (!dt)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%.32s\"", path,
                        name, jd->valuestring);
    if (!cJSON_IsArray(js))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor \"%s\": %s shape", path, name,
                        js ? "non-array" : "missing");
    int nd = cJSON_GetArraySize(js);
    if (nd > SQZ_ST_MAX_DIMS)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: tensor \"%s\" has %d dimensions; at most %d are supported", path,
                        name, nd, SQZ_ST_MAX_DIMS);
    t->n_dims = nd;
    uint64_t count = 1;
    int d = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, js) {
        uint64_t v;
        if (!st_json_uint(e, &v))
            return sqz_fail(ctx, SQZ_ERR_FORMAT,
                            "%s: tensor \"%s\": shape[%d] is not a non-negative integer", path,
                            name, d);
        if (!st_mul(count, v, &count))
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor \"%s\": element count overflows",
                            path, name);
        t->shape[d++] = (int64_t)v;
    }
    for (; d < SQZ_ST_MAX_DIMS; d++) t->shape[d] = 1; /* harmless in products */

    uint64_t b, en;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 ||
        !st_json_uint(cJSON_GetArrayItem(jo, 0), &b) ||
        !st_json_uint(cJSON_GetArrayItem(jo, 1), &en))
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: tensor \"%s\": %s data_offsets (want [begin, end] of integers)",
                        path, name, jo ? "malformed" : "missing");
    if (b > en)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: tensor \"%s\": data_offsets [%llu, %llu] end before they begin",
                        path, name, (unsigned long long)b, (unsigned long long)en);
    if (en > dsize)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: tensor \"%s\": data_offsets end %llu is beyond the data section "
                        "(%llu bytes): truncated file?",
                        path, name, (unsigned long long)en, (unsigned long long)dsize);
    uint64_t nbytes;
    if (!st_mul(count, dt->size, &nbytes))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor \"%s\": byte count overflows", path,
                        name);
    if (nbytes != en - b) {
        char sh[160];
        st_fmt_shape(sh, sizeof sh, t->shape, nd);
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: tensor \"%s\": data_offsets hold %llu bytes, but %s %s needs %llu",
                        path, name, (unsigned long long)(en - b), dt->name, sh,
                        (unsigned long long)nbytes);
    }
    t->type = dt->type;
    t->dtype = dt->name;
    t->data = data + b;
    t->nbytes = (size_t)nbytes;
    t->file = path;
    return SQZ_OK;
}

typedef struct st_range {
    uint64_t begin, end;
    const char *name;
} st_range;

static int st_cmp_range(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* Tensors [first, st->n) all come from the data section starting at data: no two may share a
 * byte. Empty tensors occupy nothing and are skipped. */
static sqz_status st_check_overlap(sqz_ctx *ctx, const sqz_safetensors *st, size_t first,
                                   const uint8_t *data, const char *path) {
    size_t n = st->n - first;
    if (n < 2) return SQZ_OK;
    st_range *r = malloc(n * sizeof *r);
    if (!r) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    size_t k = 0;
    for (size_t i = first; i < st->n; i++) {
        const sqz_st_tensor *t = &st->tensors[i];
        if (t->nbytes == 0) continue;
        r[k].begin = (uint64_t)((const uint8_t *)t->data - data);
        r[k].end = r[k].begin + t->nbytes;
        r[k].name = t->name;
        k++;
    }
    if (k > 1) qsort(r, k, sizeof *r, st_cmp_range);
    sqz_status s = SQZ_OK;
    for (size_t i = 1; i < k; i++) {
        if (r[i].begin < r[i - 1].end) {
            s = sqz_fail(ctx, SQZ_ERR_FORMAT,
                         "%s: tensors \"%s\" [%llu, %llu) and \"%s\" [%llu, %llu) overlap", path,
                         r[i - 1].name, (unsigned long long)r[i - 1].begin,
                         (unsigned long long)r[i - 1].end, r[i].name,
                         (unsigned long long)r[i].begin, (unsigned long long)r[i].end);
            break;
        }
    }
    free(r);
    return s;
}

static int st_is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Parses the image buf[0..len) of one file and appends its tensors to st. path must stay valid
 * as long as st (it is a shard's path). On failure st may hold some of the tensors: the caller
 * closes it. */
static sqz_status st_parse(sqz_ctx *ctx, sqz_safetensors *st, const uint8_t *buf, size_t len,
                           const char *path) {
    if (len < 8)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: %zu bytes is too short for a safetensors file (8-byte header "
                        "length missing)",
                        path, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i]; /* little-endian u64 */
    if (hlen > (uint64_t)len - 8)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: header length %llu exceeds the file size (%zu bytes): truncated "
                        "or not a safetensors file",
                        path, (unsigned long long)hlen, len);
    if (hlen > ST_MAX_HEADER)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: header length %llu is absurd (limit %llu bytes)", path,
                        (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    const char *hdr = (const char *)buf + 8;
    const uint8_t *data = buf + 8 + hlen;
    uint64_t dsize = (uint64_t)len - 8 - hlen;

    const char *end = NULL;
    cJSON *root = hlen ? cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0) : NULL;
    if (!root) {
        size_t at = end && end >= hdr && end <= hdr + hlen ? (size_t)(end - hdr) : 0;
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: header is not valid JSON (error near byte %zu of %llu)", path, at,
                        (unsigned long long)hlen);
    }
    sqz_status s = SQZ_OK;
    /* The format pads the header with spaces; anything else after the object is garbage. */
    for (const char *p = end; p && p < hdr + hlen; p++) {
        if (!st_is_space((uint8_t)*p)) {
            s = sqz_fail(ctx, SQZ_ERR_FORMAT,
                         "%s: header has trailing bytes after the JSON object (at byte %zu)",
                         path, (size_t)(p - hdr));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        s = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    size_t n_items = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) n_items++;
    if (!st_reserve(st, n_items)) {
        s = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t first = st->n;
    cJSON_ArrayForEach(item, root) {
        const char *name = item->string;
        if (!name) { /* cannot come out of cJSON's parser, but the struct allows it */
            s = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: header entry without a string name", path);
            goto done;
        }
        if (strcmp(name, "__metadata__") == 0) {
            if (!cJSON_IsObject(item)) {
                s = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: __metadata__ is not a JSON object", path);
                goto done;
            }
            continue;
        }
        if (!name[0]) {
            s = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor with an empty name", path);
            goto done;
        }
        sqz_st_tensor t;
        memset(&t, 0, sizeof t);
        s = st_parse_entry(ctx, path, name, item, data, dsize, &t);
        if (s != SQZ_OK) goto done;
        t.name = strdup(name);
        if (!t.name) {
            s = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        st->tensors[st->n++] = t;
    }
    s = st_check_overlap(ctx, st, first, data, path);
done:
    cJSON_Delete(root);
    return s;
}

/* ------------------------------------------------------------------ opening */

sqz_status sqz_st_open_mem(sqz_ctx *ctx, const void *buf, size_t len, const char *name,
                           sqz_safetensors **out) {
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && len) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: NULL buffer", name);
    sqz_safetensors *st = st_new(name);
    st_shard *sh = st ? st_add_shard(st, name) : NULL;
    if (!sh) {
        sqz_st_close(st);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", name);
    }
    sqz_status s = st_parse(ctx, st, buf, len, sh->path);
    if (s == SQZ_OK) s = st_finish(ctx, st);
    if (s != SQZ_OK) { sqz_st_close(st); return s; }
    *out = st;
    return SQZ_OK;
}

/* Maps path as a new shard of st and parses it. */
static sqz_status st_load_shard(sqz_ctx *ctx, sqz_safetensors *st, const char *path) {
    st_shard *sh = st_add_shard(st, path);
    if (!sh) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    sqz_status s = sqz_file_map(ctx, path, &sh->map);
    if (s != SQZ_OK) return s;
    return st_parse(ctx, st, sh->map.data, sh->map.size, sh->path);
}

static sqz_status st_open_file(sqz_ctx *ctx, const char *path, sqz_safetensors **out) {
    sqz_safetensors *st = st_new(path);
    if (!st) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    sqz_status s = st_load_shard(ctx, st, path);
    if (s == SQZ_OK) s = st_finish(ctx, st);
    if (s != SQZ_OK) { sqz_st_close(st); return s; }
    *out = st;
    return SQZ_OK;
}

typedef struct st_map_entry {
    const char *tensor; /* into the index's cJSON tree */
    const char *shard;
} st_map_entry;

static int st_cmp_entry_shard(const void *a, const void *b) {
    return strcmp(((const st_map_entry *)a)->shard, ((const st_map_entry *)b)->shard);
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {"tensor": "shard file"}}.
 * Each distinct shard is mapped once; every tensor of the map must be in the shard it names.
 * Tensors a shard holds beyond the map are kept (HF's loaders ignore the extras too). */
static sqz_status st_open_index(sqz_ctx *ctx, const char *path, sqz_safetensors **out) {
    char *text = NULL;
    size_t len = 0;
    sqz_status s = sqz_file_read_all(ctx, path, ST_MAX_INDEX, &text, &len);
    if (s != SQZ_OK) return s;
    sqz_safetensors *st = NULL;
    st_map_entry *ents = NULL;
    char *dir = NULL, *shard_path = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        s = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", path,
                     end && end >= text && end <= text + len ? (size_t)(end - text) : (size_t)0);
        goto done;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        s = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: no \"weight_map\" object: not a safetensors index",
                     path);
        goto done;
    }
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) n++;
    if (n == 0) {
        s = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: weight_map is empty", path);
        goto done;
    }
    ents = malloc(n * sizeof *ents);
    dir = sqz_path_dirname(path);
    st = st_new(path);
    if (!ents || !dir || !st) {
        s = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t k = 0;
    cJSON_ArrayForEach(e, wm) {
        if (!e->string || !cJSON_IsString(e)) {
            s = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: weight_map[\"%s\"] is not a file name", path,
                         e->string ? e->string : "?");
            goto done;
        }
        /* Shards live beside the index: a path could point anywhere. */
        const char *f = e->valuestring;
        if (!f[0] || strchr(f, '/') || strcmp(f, ".") == 0 || strcmp(f, "..") == 0) {
            s = sqz_fail(ctx, SQZ_ERR_FORMAT,
                         "%s: weight_map[\"%s\"] = \"%s\" is not a file name in the index's "
                         "folder",
                         path, e->string, f);
            goto done;
        }
        ents[k].tensor = e->string;
        ents[k].shard = f;
        k++;
    }
    qsort(ents, n, sizeof *ents, st_cmp_entry_shard);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && strcmp(ents[j].shard, ents[i].shard) == 0) j++;
        free(shard_path);
        shard_path = sqz_path_join(dir, ents[i].shard);
        if (!shard_path) {
            s = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        size_t first = st->n;
        s = st_load_shard(ctx, st, shard_path);
        if (s != SQZ_OK) goto done;
        /* Sort this shard's tensors by name to check the map's entries against them. */
        sqz_st_tensor *mine = st->tensors + first;
        size_t n_mine = st->n - first;
        if (n_mine > 1) qsort(mine, n_mine, sizeof *mine, st_cmp_name);
        for (size_t q = i; q < j; q++) {
            if (!n_mine || !bsearch(ents[q].tensor, mine, n_mine, sizeof *mine, st_cmp_key)) {
                s = sqz_fail(ctx, SQZ_ERR_FORMAT,
                             "%s: tensor \"%s\" of the weight_map is not in %s", path,
                             ents[q].tensor, shard_path);
                goto done;
            }
        }
        i = j;
    }
    s = st_finish(ctx, st);
done:
    free(shard_path);
    free(dir);
    free(ents);
    cJSON_Delete(root);
    free(text);
    if (s != SQZ_OK) {
        sqz_st_close(st);
        return s;
    }
    *out = st;
    return SQZ_OK;
}

static int st_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

sqz_status sqz_st_open(sqz_ctx *ctx, const char *path, sqz_safetensors **out) {
    *out = NULL;
    if (!path) return sqz_fail(ctx, SQZ_ERR_ARG, "sqz_st_open: NULL path");
    if (!sqz_path_is_dir(path)) {
        if (st_ends_with(path, ".json")) return st_open_index(ctx, path, out);
        return st_open_file(ctx, path, out);
    }
    char *p = sqz_path_join(path, "model.safetensors");
    if (!p) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    sqz_status s;
    if (sqz_path_exists(p)) {
        s = st_open_file(ctx, p, out);
        free(p);
        return s;
    }
    free(p);
    p = sqz_path_join(path, "model.safetensors.index.json");
    if (!p) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    if (sqz_path_exists(p))
        s = st_open_index(ctx, p, out);
    else
        s = sqz_fail(ctx, SQZ_ERR_IO,
                     "%s: no model.safetensors or model.safetensors.index.json in this folder",
                     path);
    free(p);
    return s;
}
