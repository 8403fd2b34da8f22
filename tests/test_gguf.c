/* test_gguf.c - the GGUF reader and writer: the three llama.cpp files of ../shared, a writer
 * round trip with every metadata type, a copy-through of each real file (byte-identical), one
 * crafted image per kind of corruption (each must fail with a message naming the file, never
 * crash or leak), every truncation of a valid file, and the writer's atomicity.
 *
 * SQZ_GGUF_CORPUS=DIR also writes the crafted images and small valid files into DIR: that is
 * how fuzz/corpus/gguf was made (`SQZ_GGUF_CORPUS=fuzz/corpus/gguf build/tests/test_gguf`). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ctx.h"
#include "io/file.h"
#include "io/gguf.h"
#include "test.h"

/* ------------------------------------------------------------------ temp files */

static char tmp_dir[64];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

/* Removes everything in the temp folder (files and empty sub-folders), then the folder. */
static void cleanup(void) {
    DIR *d = opendir(tmp_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            const char *p = tmp_path(e->d_name);
            if (unlink(p) != 0) rmdir(p);
        }
        closedir(d);
    }
    rmdir(tmp_dir);
}

/* Entries of dir whose name contains ".tmp." (left-over temporary files). */
static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}


/* Saves an image into $SQZ_GGUF_CORPUS (if set) as NAME. */
static void corpus_save(const char *name, const void *data, size_t len) {
    test_corpus_save(name, data, len, 10000);
}

static void corpus_save_file(const char *name, const char *path) {
    size_t len;
    uint8_t *b = test_read_file(path, &len);
    if (b) corpus_save(name, b, len);
    free(b);
}

/* ------------------------------------------------------------------ a byte builder */

typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
} bbuf;

static void put(bbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) { printf("# out of memory\n"); exit(1); }
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u8(bbuf *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(bbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bbuf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void hdr(bbuf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void kv_u32(bbuf *b, const char *key, uint32_t v) {
    put_str(b, key); put_u32(b, SQZ_GGUF_U32); put_u32(b, v);
}
static void kv_str(bbuf *b, const char *key, const char *v) {
    put_str(b, key); put_u32(b, SQZ_GGUF_STRING); put_str(b, v);
}
static void tinfo(bbuf *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                  uint64_t off) {
    put_str(b, name);
    put_u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) put_u64(b, ne[i]);
    put_u32(b, type);
    put_u64(b, off);
}
static void pad_to(bbuf *b, size_t a) { while (b->n % a) put_u8(b, 0); }
static void fill(bbuf *b, size_t n) {
    for (size_t i = 0; i < n; i++) put_u8(b, (uint8_t)(i * 7 + 1));
}

/* The valid base image: 2 KVs, tensors a (f32 [8], 32 bytes) and b (q4_0 [32, 2], 36 bytes).
 * *data_end receives where b's data ends. */
static void base_image(bbuf *b, size_t *data_end) {
    static const uint64_t ne_a[1] = { 8 }, ne_b[2] = { 32, 2 };
    hdr(b, 3, 2, 2);
    kv_str(b, "general.architecture", "llama");
    kv_u32(b, "general.alignment", 32);
    tinfo(b, "a", 1, ne_a, SQZ_TYPE_F32, 0);
    tinfo(b, "b", 2, ne_b, SQZ_TYPE_Q4_0, 32);
    pad_to(b, 32);
    fill(b, 32 + 36);
    if (data_end) *data_end = b->n;
    pad_to(b, 32);
}

/* ------------------------------------------------------------------ expectations */

/* The image must be refused, with a one-line message naming it (and containing hint). */
static void expect_bad(const char *what, bbuf *b, const char *hint) {
    char name[96];
    snprintf(name, sizeof name, "bad-%s.gguf", what);
    for (char *c = name + 4; *c && strcmp(c, ".gguf") != 0; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf *g = (sqz_gguf *)1;
    sqz_status s = sqz_gguf_open_mem(ctx, b->p, b->n, name, &g);
    const char *msg = sqz_ctx_error(ctx);
    int ok = s != SQZ_OK && g == NULL && strstr(msg, name) && (!hint || strstr(msg, hint)) &&
             !strchr(msg, '\n');
    CHECK(ok, "%s is refused: %s", what, msg);
    if (!ok) printf("#   status %d, want \"%s\" in the message\n", (int)s, hint ? hint : "");
    if (s == SQZ_OK) sqz_gguf_close(g);
    sqz_ctx_free(ctx);
    corpus_save(name, b->p, b->n);
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------ tests */

static void test_type_tables(void) {
    int n_layouts = 0, n_named = 0, sane = 1;
    for (int t = 0; t < SQZ_TYPE_COUNT; t++) {
        const sqz_type_traits *tr = sqz_type_get(t);
        n_named += tr != NULL;
        n_layouts += sqz_type_has_layout(t);
        /* a usable type has a layout; a layout is whole blocks of at least one byte */
        if (tr && ((tr->to_float && !sqz_type_has_layout(t)) || (tr->block_size > 0) != (tr->type_size > 0))) {
            printf("# type %d (%s): %d/%zu, to_float %s\n", t, tr->name, tr->block_size,
                   tr->type_size, tr->to_float ? "yes" : "no");
            sane = 0;
        }
    }
    CHECK(sane, "every usable ggml type has a block layout, every layout has both sizes");
    CHECK(n_named == 40 && n_layouts == 32,
          "40 ggml ids are named, 32 have a layout (8 removed): %d, %d", n_named, n_layouts);
    int bs = 0;
    size_t ts = 0;
    const sqz_type_traits *iq2 = sqz_type_get(16);
    if (iq2) { bs = iq2->block_size; ts = iq2->type_size; }
    CHECK(bs == 256 && ts == 66 && !sqz_type_usable(16), "iq2_xxs: 256 per 66 bytes, not usable");
    CHECK(strcmp(sqz_type_name(16), "iq2_xxs") == 0 && strcmp(sqz_type_name(39), "mxfp4") == 0 &&
              strcmp(sqz_type_name(4), "q4_2 (removed)") == 0 && !sqz_type_has_layout(4) &&
              strcmp(sqz_type_name(40), "?") == 0 && strcmp(sqz_type_name(-1), "?") == 0,
          "ggml type names");
    CHECK(strcmp(sqz_gguf_type_name(SQZ_GGUF_STRING), "str") == 0 &&
              sqz_gguf_type_size(SQZ_GGUF_F64) == 8 && sqz_gguf_type_size(SQZ_GGUF_ARRAY) == 0 &&
              strcmp(sqz_gguf_type_name(13), "?") == 0,
          "metadata type names and sizes");
}

static void print_kv(const sqz_gguf *g, size_t i) {
    const char *key = sqz_gguf_kv_key(g, i);
    int type = sqz_gguf_kv_type(g, i);
    int64_t iv;
    double fv;
    size_t len;
    const char *s;
    if (type == SQZ_GGUF_STRING) {
        s = sqz_gguf_kv_str(g, i, 0, &len);
        printf("#   %-40s str  \"%.*s\"%s\n", key, len > 60 ? 60 : (int)len, s,
               len > 60 ? "..." : "");
    } else if (type == SQZ_GGUF_ARRAY) {
        int et;
        uint64_t n;
        const void *d;
        sqz_gguf_kv_arr(g, i, &et, &n, &d);
        printf("#   %-40s arr  %llu x %s", key, (unsigned long long)n, sqz_gguf_type_name(et));
        if (et == SQZ_GGUF_STRING && n) {
            s = sqz_gguf_kv_str(g, i, 0, &len);
            printf(" [\"%.*s\", ...]", len > 20 ? 20 : (int)len, s);
        }
        printf("\n");
    } else if (type == SQZ_GGUF_BOOL) {
        size_t rl;
        const uint8_t *raw = sqz_gguf_kv_raw(g, i, &rl);
        printf("#   %-40s bool %s\n", key, raw[4] ? "true" : "false");
    } else if (sqz_gguf_kv_int(g, i, &iv)) {
        printf("#   %-40s %-4s %lld\n", key, sqz_gguf_type_name(type), (long long)iv);
    } else if (sqz_gguf_kv_f64(g, i, &fv)) {
        printf("#   %-40s %-4s %g\n", key, sqz_gguf_type_name(type), fv);
    } else {
        printf("#   %-40s %s\n", key, sqz_gguf_type_name(type));
    }
}

static int str_is(const char *s, size_t len, const char *want) {
    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

/* One real llama.cpp file: metadata, tensors, layout. */
static void check_real_file(const char *file, int pure_q4_0, int verbose) {
    const char *p = test_shared(file);
    if (!p) { SKIP("%s not found (set SQZ_SHARED)", file); return; }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf *g = NULL;
    sqz_status s = sqz_gguf_open(ctx, p, &g);
    CHECK(s == SQZ_OK, "open %s: %s", p, s ? sqz_ctx_error(ctx) : "ok");
    if (s != SQZ_OK) { sqz_ctx_free(ctx); return; }
    const char *name = strrchr(file, '/') + 1;
    printf("# %s: version %u, %zu metadata entries, %zu tensors, alignment %u, data at %llu\n",
           name, sqz_gguf_version(g), sqz_gguf_n_kv(g), sqz_gguf_n_tensors(g),
           sqz_gguf_alignment(g), (unsigned long long)sqz_gguf_data_offset(g));
    if (verbose)
        for (size_t i = 0; i < sqz_gguf_n_kv(g); i++) print_kv(g, i);
    CHECK(sqz_gguf_version(g) == 3 && sqz_gguf_alignment(g) == 32, "%s: v3, alignment 32", name);

    const char *str;
    size_t len;
    s = sqz_gguf_get_str(ctx, g, "general.architecture", &str, &len);
    CHECK(s == SQZ_OK && str_is(str, len, "llama"), "%s: general.architecture = llama", name);
    uint32_t u = 0;
    s = sqz_gguf_get_u32(ctx, g, "llama.block_count", &u);
    CHECK(s == SQZ_OK && u == 8, "%s: llama.block_count = 8 (%u)", name, u);
    s = sqz_gguf_get_u32(ctx, g, "llama.embedding_length", &u);
    CHECK(s == SQZ_OK && u == 512, "%s: llama.embedding_length = 512 (%u)", name, u);
    uint64_t u64 = 0;
    s = sqz_gguf_get_u64(ctx, g, "llama.feed_forward_length", &u64);
    CHECK(s == SQZ_OK && u64 == 1536, "%s: llama.feed_forward_length = 1536 (u32 read as u64)",
          name);
    s = sqz_gguf_get_u32(ctx, g, "llama.attention.head_count_kv", &u);
    CHECK(s == SQZ_OK && u == 2, "%s: llama.attention.head_count_kv = 2", name);
    float f = 0;
    s = sqz_gguf_get_f32(ctx, g, "llama.rope.freq_base", &f);
    CHECK(s == SQZ_OK && f == 10000.0f, "%s: llama.rope.freq_base = 10000 (%g)", name, f);
    s = sqz_gguf_get_str(ctx, g, "tokenizer.ggml.model", &str, &len);
    CHECK(s == SQZ_OK && str_is(str, len, "gpt2"), "%s: tokenizer.ggml.model = gpt2", name);
    int et = -1;
    uint64_t n = 0;
    const void *data = NULL;
    s = sqz_gguf_get_arr(ctx, g, "tokenizer.ggml.tokens", &et, &n, &data);
    CHECK(s == SQZ_OK && et == SQZ_GGUF_STRING && n == 4096,
          "%s: tokenizer.ggml.tokens is an array of 4096 strings (%llu x %s)", name,
          (unsigned long long)n, sqz_gguf_type_name(et));
    int all_tokens = 1;
    size_t total = 0;
    for (uint64_t i = 0; i < 4096; i++) {
        const char *t = sqz_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &len);
        if (!t || len == 0) all_tokens = 0;
        total += len;
    }
    CHECK(all_tokens && !sqz_gguf_arr_str(g, "tokenizer.ggml.tokens", 4096, &len),
          "%s: every token is a non-empty string (%zu bytes in all), index 4096 is not", name,
          total);
    s = sqz_gguf_get_arr(ctx, g, "tokenizer.ggml.merges", &et, &n, &data);
    const char *m0 = sqz_gguf_arr_str(g, "tokenizer.ggml.merges", 0, &len);
    CHECK(s == SQZ_OK && et == SQZ_GGUF_STRING && n > 1000 && m0 && memchr(m0, ' ', len),
          "%s: tokenizer.ggml.merges: %llu strings, the first \"%.*s\"", name,
          (unsigned long long)n, m0 ? (int)len : 0, m0 ? m0 : "");
    s = sqz_gguf_get_arr(ctx, g, "tokenizer.ggml.token_type", &et, &n, &data);
    CHECK(s == SQZ_OK && et == SQZ_GGUF_I32 && n == 4096, "%s: token_type is 4096 x i32", name);

    /* wrong types and absent keys fail with messages */
    s = sqz_gguf_get_u32(ctx, g, "general.architecture", &u);
    CHECK(s == SQZ_ERR_FORMAT && strstr(sqz_ctx_error(ctx), "general.architecture") &&
              strstr(sqz_ctx_error(ctx), p),
          "%s: a string is not a u32: %s", name, sqz_ctx_error(ctx));
    s = sqz_gguf_get_str(ctx, g, "tokenizer.ggml.tokens", &str, &len);
    CHECK(s == SQZ_ERR_FORMAT && strstr(sqz_ctx_error(ctx), "array of str"),
          "%s: an array is not a string: %s", name, sqz_ctx_error(ctx));
    s = sqz_gguf_get_u32(ctx, g, "llama.no_such_key", &u);
    CHECK(s == SQZ_ERR_FORMAT && strstr(sqz_ctx_error(ctx), "no metadata key llama.no_such_key"),
          "%s: absent key: %s", name, sqz_ctx_error(ctx));
    CHECK(sqz_gguf_find_key(g, "llama.no_such_key") == -1 &&
              sqz_gguf_find_key(g, "general.architecture") >= 0,
          "%s: find_key", name);

    /* tensors: 8 layers x 9 + token_embd + output_norm (tied embeddings) */
    size_t nt = sqz_gguf_n_tensors(g);
    CHECK(nt == 74, "%s: 74 tensors (%zu)", name, nt);
    static const char *const per_layer[9] = { "attn_norm", "attn_q", "attn_k", "attn_v",
                                              "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                                              "ffn_down" };
    int names_ok = 1, shapes_ok = 1, types_ok = 1;
    for (int l = 0; l < 8; l++) {
        for (int k = 0; k < 9; k++) {
            char tn[64];
            snprintf(tn, sizeof tn, "blk.%d.%s.weight", l, per_layer[k]);
            const sqz_gguf_tensor *t = sqz_gguf_find_tensor(g, tn);
            if (!t) { names_ok = 0; printf("# missing %s\n", tn); continue; }
            int64_t r = 512, c = 512;
            if (k == 0 || k == 5) c = 1; /* norms: [512] */
            if (k == 2 || k == 3) c = 128; /* k, v: 2 KV heads x 64 */
            if (k == 6 || k == 7) c = 1536;
            if (k == 8) { r = 1536; c = 512; }
            int ok = t->ne[0] == r && t->ne[1] == c && t->n_dims == (c == 1 ? 1 : 2);
            if (!ok) {
                shapes_ok = 0;
                printf("# %s: n_dims %d ne [%lld, %lld]\n", tn, t->n_dims, (long long)t->ne[0],
                       (long long)t->ne[1]);
            }
            if (c == 1 && t->type != SQZ_TYPE_F32) types_ok = 0;
            if (pure_q4_0 && c != 1 && t->type != SQZ_TYPE_Q4_0) types_ok = 0;
        }
    }
    CHECK(names_ok, "%s: blk.0..7.{attn_q,...,ffn_down}.weight all present", name);
    CHECK(shapes_ok, "%s: layer tensor shapes (ne[0] = row length)", name);
    CHECK(types_ok, "%s: norms f32%s", name, pure_q4_0 ? ", every matrix q4_0 (type 2)" : "");
    const sqz_gguf_tensor *te = sqz_gguf_find_tensor(g, "token_embd.weight");
    CHECK(te && te->ne[0] == 512 && te->ne[1] == 4096 && sqz_gguf_get_tensor(g, te->index) == te &&
              (!pure_q4_0 || te->type == SQZ_TYPE_Q4_0),
          "%s: token_embd.weight [512, 4096] is tensor %zu, type %s", name, te ? te->index : 0,
          te ? sqz_type_name(te->type) : "-");
    CHECK(sqz_gguf_find_tensor(g, "output.weight") == NULL &&
              sqz_gguf_find_tensor(g, "output_norm.weight") != NULL,
          "%s: output_norm.weight, no output.weight (tied)", name);
    const sqz_gguf_tensor *q0 = sqz_gguf_find_tensor(g, "blk.0.attn_q.weight");
    CHECK(q0 && q0->nbytes == sqz_type_row_size((sqz_type)q0->type, 512) * 512,
          "%s: blk.0.attn_q.weight: %s, %zu bytes", name,
          q0 ? sqz_type_name(q0->type) : "-", q0 ? q0->nbytes : 0);

    /* layout: tensors packed in order with alignment padding, the file ends after the last */
    uint64_t off = 0;
    int packed = 1, found = 1, req = 1;
    for (size_t i = 0; i < nt; i++) {
        const sqz_gguf_tensor *t = sqz_gguf_get_tensor(g, i);
        if (t->offset != off || t->index != i) packed = 0;
        off += (t->nbytes + 31) / 32 * 32;
        if (sqz_gguf_find_tensor(g, t->name) != t) found = 0;
        const sqz_gguf_tensor *r = NULL;
        if (sqz_gguf_require_tensor(ctx, g, t->name, &r) != SQZ_OK || r != t) req = 0;
    }
    CHECK(packed, "%s: tensor offsets are packed in file order", name);
    CHECK(sqz_gguf_data_offset(g) % 32 == 0 &&
              sqz_gguf_data_offset(g) + off == sqz_gguf_file_size(g),
          "%s: header %llu + padded tensor bytes %llu = file size %zu", name,
          (unsigned long long)sqz_gguf_data_offset(g), (unsigned long long)off,
          sqz_gguf_file_size(g));
    CHECK(found && req, "%s: every tensor is found by name and usable by sqz", name);
    const sqz_gguf_tensor *r = (const sqz_gguf_tensor *)1;
    s = sqz_gguf_require_tensor(ctx, g, "output.weight", &r);
    CHECK(s == SQZ_ERR_FORMAT && r == NULL && strstr(sqz_ctx_error(ctx), "no tensor output.weight"),
          "%s: require_tensor of an absent tensor: %s", name, sqz_ctx_error(ctx));
    sqz_gguf_close(g);
    sqz_ctx_free(ctx);
}

/* Copies every KV and tensor of a real file through the writer; the result must read back the
 * same and (llama.cpp wrote the original) be byte-identical. */
static void check_copy_through(const char *file) {
    const char *p = test_shared(file);
    if (!p) { SKIP("%s not found (set SQZ_SHARED)", file); return; }
    const char *name = strrchr(file, '/') + 1;
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf *g = NULL, *h = NULL;
    sqz_gguf_writer *w = NULL;
    sqz_status s = sqz_gguf_open(ctx, p, &g);
    if (s == SQZ_OK) s = sqz_gguf_writer_new(ctx, &w);
    for (size_t i = 0; s == SQZ_OK && i < sqz_gguf_n_kv(g); i++)
        s = sqz_gguf_writer_copy_kv(w, g, i);
    for (size_t i = 0; s == SQZ_OK && i < sqz_gguf_n_tensors(g); i++) {
        const sqz_gguf_tensor *t = sqz_gguf_get_tensor(g, i);
        s = sqz_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, t->data, t->nbytes);
    }
    const char *out = tmp_path("copy.gguf");
    if (s == SQZ_OK) s = sqz_gguf_writer_write(w, out);
    CHECK(s == SQZ_OK, "%s: copied through the writer: %s", name, s ? sqz_ctx_error(ctx) : "ok");
    sqz_gguf_writer_free(w);
    if (s == SQZ_OK) s = sqz_gguf_open(ctx, out, &h);
    if (s == SQZ_OK) {
        int same = sqz_gguf_n_kv(h) == sqz_gguf_n_kv(g) &&
                   sqz_gguf_n_tensors(h) == sqz_gguf_n_tensors(g);
        for (size_t i = 0; same && i < sqz_gguf_n_kv(g); i++) {
            size_t la, lb;
            const void *a = sqz_gguf_kv_raw(g, i, &la), *b = sqz_gguf_kv_raw(h, i, &lb);
            same = strcmp(sqz_gguf_kv_key(g, i), sqz_gguf_kv_key(h, i)) == 0 && la == lb &&
                   memcmp(a, b, la) == 0;
        }
        CHECK(same, "%s: the copy has the same metadata", name);
        same = 1;
        for (size_t i = 0; same && i < sqz_gguf_n_tensors(g); i++) {
            const sqz_gguf_tensor *a = sqz_gguf_get_tensor(g, i), *b = sqz_gguf_get_tensor(h, i);
            same = strcmp(a->name, b->name) == 0 && a->type == b->type &&
                   a->n_dims == b->n_dims && memcmp(a->ne, b->ne, sizeof a->ne) == 0 &&
                   a->nbytes == b->nbytes && a->offset == b->offset &&
                   memcmp(a->data, b->data, a->nbytes) == 0;
        }
        CHECK(same, "%s: the copy has the same tensors (names, shapes, types, data)", name);
        sqz_gguf_close(h);
    } else {
        CHECK(0, "%s: reopen the copy: %s", name, sqz_ctx_error(ctx));
    }
    size_t la = 0, lb = 0;
    uint8_t *a = test_read_file(p, &la), *b = test_read_file(out, &lb);
    CHECK(a && b && la == lb && memcmp(a, b, la) == 0,
          "%s: the copy is byte-identical to llama.cpp's file (%zu and %zu bytes)", name, la, lb);
    if (strstr(name, "Q4_0") && a && la > 8192) corpus_save("real_header_truncated.gguf", a, 8192);
    free(a);
    free(b);
    unlink(out);
    CHECK(count_tmp_files(tmp_dir) == 0, "%s: no temporary file left", name);
    sqz_gguf_close(g);
    sqz_ctx_free(ctx);
}

/* The same file streamed: tensors declared, the header written first, then all tensor bytes
 * (without padding) in pieces of odd sizes that split tensors and span several; the result must
 * be llama.cpp's file byte for byte. */
static void check_stream_copy(const char *file) {
    const char *p = test_shared(file);
    if (!p) { SKIP("%s not found (set SQZ_SHARED)", file); return; }
    const char *name = strrchr(file, '/') + 1;
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf *g = NULL;
    sqz_gguf_writer *w = NULL;
    sqz_status s = sqz_gguf_open(ctx, p, &g);
    if (s == SQZ_OK) s = sqz_gguf_writer_new(ctx, &w);
    for (size_t i = 0; s == SQZ_OK && i < sqz_gguf_n_kv(g); i++)
        s = sqz_gguf_writer_copy_kv(w, g, i);
    size_t total = 0;
    int sizes_ok = 1;
    for (size_t i = 0; s == SQZ_OK && i < sqz_gguf_n_tensors(g); i++) {
        const sqz_gguf_tensor *t = sqz_gguf_get_tensor(g, i);
        size_t nb = 0;
        s = sqz_gguf_writer_declare_tensor(w, t->name, t->n_dims, t->ne, t->type, &nb);
        sizes_ok &= nb == t->nbytes;
        total += t->nbytes;
    }
    CHECK(s == SQZ_OK && sizes_ok, "%s: every tensor declared, each with its byte count: %s", name,
          s ? sqz_ctx_error(ctx) : "ok");
    uint8_t *all = s == SQZ_OK ? malloc(total ? total : 1) : NULL;
    size_t off = 0;
    for (size_t i = 0; all && i < sqz_gguf_n_tensors(g); i++) {
        const sqz_gguf_tensor *t = sqz_gguf_get_tensor(g, i);
        memcpy(all + off, t->data, t->nbytes);
        off += t->nbytes;
    }
    const char *out = tmp_path("stream.gguf");
    if (all) {
        CHECK(sqz_gguf_writer_write(w, out) == SQZ_ERR_ARG &&
                  strstr(sqz_ctx_error(ctx), "declared without data") && !sqz_path_exists(out),
              "%s: write() refuses declared tensors: %s", name, sqz_ctx_error(ctx));
        s = sqz_gguf_writer_begin(w, out);
        CHECK(s == SQZ_OK && count_tmp_files(tmp_dir) == 1 && !sqz_path_exists(out),
              "%s: begin writes the header to a temporary file: %s", name, s ? sqz_ctx_error(ctx) : "ok");
        const int64_t ne[1] = { 32 };
        CHECK(sqz_gguf_writer_add_u32(w, "late.key", 1) == SQZ_ERR_ARG &&
                  strstr(sqz_ctx_error(ctx), "after the header was written") &&
                  sqz_gguf_writer_declare_tensor(w, "late", 1, ne, SQZ_TYPE_F32, NULL) == SQZ_ERR_ARG &&
                  strstr(sqz_ctx_error(ctx), "after the header was written"),
              "%s: metadata and tensors are refused once the header is written", name);
        static const size_t piece[] = { 1, 7, 4093, 65539, 31, 1 << 20, 250000 };
        off = 0;
        for (size_t k = 0; s == SQZ_OK && off < total; k++) {
            size_t n = piece[k % (sizeof piece / sizeof *piece)];
            if (n > total - off) n = total - off;
            s = sqz_gguf_writer_put(w, all + off, n);
            off += n;
        }
        if (s == SQZ_OK) s = sqz_gguf_writer_finish(w);
        CHECK(s == SQZ_OK, "%s: streamed in pieces of 1 .. 1 MiB bytes: %s", name,
              s ? sqz_ctx_error(ctx) : "ok");
    }
    size_t la = 0, lb = 0;
    uint8_t *a = test_read_file(p, &la), *b = test_read_file(out, &lb);
    CHECK(a && b && la == lb && memcmp(a, b, la) == 0,
          "%s: the streamed file is byte-identical to llama.cpp's (%zu and %zu bytes)", name, la, lb);
    CHECK(count_tmp_files(tmp_dir) == 0, "%s: no temporary file left", name);
    free(a);
    free(b);
    free(all);
    unlink(out);
    sqz_gguf_writer_free(w);
    sqz_gguf_close(g);
    sqz_ctx_free(ctx);
}

/* A stream that fails or is abandoned leaves nothing: too many bytes, too few at finish, a
 * write failing half-way (RLIMIT_FSIZE), the writer freed in the middle. */
static void check_stream_failures(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    static uint8_t data[3 * 8192];
    const int64_t ne[1] = { 2048 };
    const char *out = tmp_path("stream_fail.gguf");
    sqz_gguf_writer *w = NULL;
    sqz_gguf_writer_new(ctx, &w);
    sqz_gguf_writer_add_str(w, "general.architecture", "llama", 5);
    sqz_gguf_writer_declare_tensor(w, "a", 1, ne, SQZ_TYPE_F32, NULL);
    sqz_gguf_writer_declare_tensor(w, "b", 1, ne, SQZ_TYPE_F32, NULL);
    CHECK(sqz_gguf_writer_put(w, data, 4) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "before"),
          "put before begin is refused: %s", sqz_ctx_error(ctx));
    CHECK(sqz_gguf_writer_finish(w) == SQZ_ERR_ARG, "finish before begin is refused");

    sqz_status s = sqz_gguf_writer_begin(w, out);
    if (s == SQZ_OK) s = sqz_gguf_writer_put(w, data, 8192 + 100);
    CHECK(s == SQZ_OK && sqz_gguf_writer_begin(w, out) == SQZ_ERR_ARG &&
              strstr(sqz_ctx_error(ctx), "still writing"),
          "a second begin during a stream is refused: %s", sqz_ctx_error(ctx));
    s = sqz_gguf_writer_put(w, data, 2 * 8192);
    CHECK(s == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "8292 bytes of tensor data more than") &&
              !sqz_path_exists(out) && count_tmp_files(tmp_dir) == 0,
          "more bytes than the tensors hold: an error, nothing left behind: %s", sqz_ctx_error(ctx));
    CHECK(sqz_gguf_writer_put(w, data, 1) == SQZ_ERR_ARG && sqz_gguf_writer_finish(w) == SQZ_ERR_ARG,
          "  the stream is over: put and finish are refused");

    s = sqz_gguf_writer_begin(w, out);
    if (s == SQZ_OK) s = sqz_gguf_writer_put(w, data, 8192 + 5);
    if (s == SQZ_OK) s = sqz_gguf_writer_finish(w);
    CHECK(s == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "tensor b got 5 of its 8192 bytes") &&
              !sqz_path_exists(out) && count_tmp_files(tmp_dir) == 0,
          "finish with a tensor short of bytes: an error, nothing left behind: %s", sqz_ctx_error(ctx));

    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit lim = old;
    lim.rlim_cur = 4096 + 512;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    fflush(stdout); /* stdout may be a file past the limit: print nothing until restored */
    const int set = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    s = sqz_gguf_writer_begin(w, out);
    const sqz_status s1 = s;
    if (s == SQZ_OK) s = sqz_gguf_writer_put(w, data, 4096);
    if (s == SQZ_OK) s = sqz_gguf_writer_put(w, data, 2 * 8192);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    if (set)
        CHECK(s1 == SQZ_OK && s == SQZ_ERR_IO && strstr(sqz_ctx_error(ctx), "write failed") &&
                  !sqz_path_exists(out) && count_tmp_files(tmp_dir) == 0,
              "the disk filling up after the header: an error, nothing left behind: %s", sqz_ctx_error(ctx));
    else
        SKIP("cannot lower RLIMIT_FSIZE");

    s = sqz_gguf_writer_begin(w, out);
    if (s == SQZ_OK) s = sqz_gguf_writer_put(w, data, 100);
    CHECK(s == SQZ_OK && count_tmp_files(tmp_dir) == 1, "a stream begun again: %s", s ? sqz_ctx_error(ctx) : "ok");
    sqz_gguf_writer_free(w);
    CHECK(!sqz_path_exists(out) && count_tmp_files(tmp_dir) == 0,
          "a writer freed in the middle of a stream leaves nothing behind");

    /* and a complete stream reads back */
    sqz_gguf_writer_new(ctx, &w);
    sqz_gguf_writer_declare_tensor(w, "a", 1, ne, SQZ_TYPE_F32, NULL);
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7);
    s = sqz_gguf_writer_begin(w, out);
    if (s == SQZ_OK) s = sqz_gguf_writer_put(w, data, 8192);
    if (s == SQZ_OK) s = sqz_gguf_writer_finish(w);
    sqz_gguf *g = NULL;
    if (s == SQZ_OK) s = sqz_gguf_open(ctx, out, &g);
    const sqz_gguf_tensor *t = s == SQZ_OK ? sqz_gguf_find_tensor(g, "a") : NULL;
    CHECK(t && t->nbytes == 8192 && memcmp(t->data, data, 8192) == 0 && count_tmp_files(tmp_dir) == 0,
          "a finished stream is renamed into place and reads back: %s", s ? sqz_ctx_error(ctx) : "ok");
    sqz_gguf_close(g);
    sqz_gguf_writer_free(w);
    unlink(out);
    sqz_ctx_free(ctx);
}

/* RssFile of /proc/self/status in KiB (the resident pages of mapped files), or -1. */
static long rss_file_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && kb < 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "RssFile: %ld kB", &kb) != 1) kb = -1;
    if (f) fclose(f);
    return kb;
}

static int pattern_ok(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(i * 31 + 7)) return 0;
    return 1;
}

/* Giving mapped pages back: only whole pages inside the range and inside a mapping sqz made;
 * the data reads the same afterwards (reloaded from the file); memory sqz did not map - a
 * sqz_gguf_open_mem buffer - is never touched. */
static void check_release(void) {
    const size_t n = (size_t)8 << 20, page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(i * 31 + 7);
    const char *path = tmp_path("release.bin");
    FILE *f = fopen(path, "wb");
    const int written = f && fwrite(buf, 1, n, f) == n;
    if (f) fclose(f);
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_mapped_file m;
    if (!written || sqz_file_map(ctx, path, &m) != SQZ_OK) {
        CHECK(0, "map %s: %s", path, sqz_ctx_error(ctx));
        free(buf);
        sqz_ctx_free(ctx);
        return;
    }
    const uint8_t *d = m.data;
    CHECK(pattern_ok(d, n), "the mapped file reads its pattern (all %zu pages touched)", n / page);
    const long before = rss_file_kib();
    const size_t got = sqz_file_release(&m, d + 100, n - 200);
    const long after = rss_file_kib();
    CHECK(got == n - 2 * page, "release of [100, size - 100): the %zu whole pages inside (%zu bytes)",
          n / page - 2, got);
    if (before >= 0)
        CHECK(before - after >= (long)((n - 2 * page) >> 10) - 64,
              "  they leave the resident set: RssFile %ld -> %ld KiB", before, after);
    else
        SKIP("no RssFile in /proc/self/status");
    CHECK(pattern_ok(d, n), "  and read the same afterwards (reloaded from the file)");
    CHECK(sqz_file_release(&m, d + 1, page - 2) == 0 && sqz_file_release(&m, d, 0) == 0 &&
              sqz_file_release(NULL, d, n) == 0,
          "no whole page inside, an empty range, no mapping: nothing released");
    CHECK(sqz_file_release(&m, buf, n) == 0 && pattern_ok(buf, n),
          "memory outside the mapping (a malloc'ed buffer) is never released");
    sqz_file_unmap(&m);

    /* a GGUF over an anonymous buffer (sqz_gguf_open_mem): releasing its tensor does nothing */
    sqz_gguf_writer *w = NULL;
    const int64_t ne[1] = { (int64_t)(n / 4) };
    sqz_gguf_writer_new(ctx, &w);
    sqz_status s = sqz_gguf_writer_add_tensor(w, "t", 1, ne, SQZ_TYPE_F32, buf, n);
    const char *gpath = tmp_path("release.gguf");
    if (s == SQZ_OK) s = sqz_gguf_writer_write(w, gpath);
    sqz_gguf_writer_free(w);
    size_t len = 0;
    uint8_t *img = s == SQZ_OK ? test_read_file(gpath, &len) : NULL;
    void *al = NULL;
    sqz_gguf *g = NULL, *gm = NULL;
    if (img && posix_memalign(&al, page, len) == 0) {
        memcpy(al, img, len);
        s = sqz_gguf_open_mem(ctx, al, len, "mem", &g);
        const sqz_gguf_tensor *t = s == SQZ_OK ? sqz_gguf_find_tensor(g, "t") : NULL;
        CHECK(t && sqz_gguf_release(g, t->data, t->nbytes) == 0 && pattern_ok(t->data, n),
              "sqz_gguf_release on a sqz_gguf_open_mem buffer: nothing released, data intact");
        s = sqz_gguf_open(ctx, gpath, &gm);
        t = s == SQZ_OK ? sqz_gguf_find_tensor(gm, "t") : NULL;
        CHECK(t && pattern_ok(t->data, n) && sqz_gguf_release(gm, t->data, t->nbytes) >= n - 2 * page &&
                  pattern_ok(t->data, n),
              "sqz_gguf_release on a mapped file: the tensor's pages released, data intact: %s",
              s ? sqz_ctx_error(ctx) : "ok");
    } else {
        CHECK(0, "write %s: %s", gpath, sqz_ctx_error(ctx));
    }
    sqz_gguf_close(g);
    sqz_gguf_close(gm);
    free(al);
    free(img);
    free(buf);
    unlink(path);
    unlink(gpath);
    sqz_ctx_free(ctx);
}

/* A file with every metadata type and tensors of several types, written and read back. */
static const uint8_t u8s[3] = { 0, 7, 255 };
static const int8_t i8s[3] = { -128, 0, 127 };
static const uint16_t u16s[2] = { 1, 65535 };
static const int16_t i16s[2] = { -32768, 32767 };
static const uint32_t u32s[3] = { 0, 1, 4294967295u };
static const int32_t i32s[2] = { -2147483647 - 1, 5 };
static const uint64_t u64s[2] = { 1, UINT64_MAX };
static const int64_t i64s[2] = { INT64_MIN, INT64_MAX };
static const float f32s[3] = { 1.5f, -0.0f, 3.4e38f };
static const double f64s[2] = { 1e-300, -2.5 };
static const uint8_t bools[4] = { 1, 0, 0, 1 };
static const char *const strs[4] = { "alpha", "", "g\xc3\xa9", "z" };

typedef struct wtensor {
    const char *name;
    int n_dims;
    int64_t ne[4];
    int type;
} wtensor;

static const wtensor wtensors[] = {
    { "f32.odd", 1, { 7 }, SQZ_TYPE_F32 },
    { "f16.mat", 2, { 3, 5 }, SQZ_TYPE_F16 },
    { "q4_0.mat", 2, { 64, 3 }, SQZ_TYPE_Q4_0 },
    { "q8_0.vec", 1, { 32 }, SQZ_TYPE_Q8_0 },
    { "q4_k.mat", 2, { 256, 2 }, SQZ_TYPE_Q4_K },
    { "iq2_xxs.vec", 1, { 256 }, 16 },
    { "bf16.4d", 4, { 5, 1, 1, 2 }, SQZ_TYPE_BF16 },
};
#define N_WTENSORS (sizeof wtensors / sizeof wtensors[0])

static size_t wtensor_bytes(const wtensor *t) {
    const int bs = sqz_type_get(t->type)->block_size;
    const size_t ts = sqz_type_get(t->type)->type_size;
    int64_t count = 1;
    for (int d = 0; d < t->n_dims; d++) count *= t->ne[d];
    return (size_t)(count / bs) * ts;
}

static sqz_status fill_writer(sqz_gguf_writer *w, uint32_t alignment, uint8_t **tdata) {
    sqz_status s = SQZ_OK;
    if (alignment) s = sqz_gguf_writer_add_u32(w, "general.alignment", alignment);
#define ADD(call) if (s == SQZ_OK) s = (call)
    ADD(sqz_gguf_writer_add_str(w, "general.architecture", "llama", 5));
    ADD(sqz_gguf_writer_add_u8(w, "t.u8", 200));
    ADD(sqz_gguf_writer_add_i8(w, "t.i8", -100));
    ADD(sqz_gguf_writer_add_u16(w, "t.u16", 60000));
    ADD(sqz_gguf_writer_add_i16(w, "t.i16", -30000));
    ADD(sqz_gguf_writer_add_u32(w, "t.u32", 4000000000u));
    ADD(sqz_gguf_writer_add_i32(w, "t.i32", -2000000000));
    ADD(sqz_gguf_writer_add_u64(w, "t.u64", UINT64_MAX));
    ADD(sqz_gguf_writer_add_i64(w, "t.i64", INT64_MIN));
    ADD(sqz_gguf_writer_add_f32(w, "t.f32", 0.25f));
    ADD(sqz_gguf_writer_add_f64(w, "t.f64", -1e100));
    ADD(sqz_gguf_writer_add_bool(w, "t.true", 1));
    ADD(sqz_gguf_writer_add_bool(w, "t.false", 0));
    ADD(sqz_gguf_writer_add_str(w, "t.str", "a\0b", 3));
    ADD(sqz_gguf_writer_add_str(w, "t.empty", "", 0));
    ADD(sqz_gguf_writer_add_arr(w, "a.u8", SQZ_GGUF_U8, u8s, 3));
    ADD(sqz_gguf_writer_add_arr(w, "a.i8", SQZ_GGUF_I8, i8s, 3));
    ADD(sqz_gguf_writer_add_arr(w, "a.u16", SQZ_GGUF_U16, u16s, 2));
    ADD(sqz_gguf_writer_add_arr(w, "a.i16", SQZ_GGUF_I16, i16s, 2));
    ADD(sqz_gguf_writer_add_arr(w, "a.u32", SQZ_GGUF_U32, u32s, 3));
    ADD(sqz_gguf_writer_add_arr(w, "a.i32", SQZ_GGUF_I32, i32s, 2));
    ADD(sqz_gguf_writer_add_arr(w, "a.u64", SQZ_GGUF_U64, u64s, 2));
    ADD(sqz_gguf_writer_add_arr(w, "a.i64", SQZ_GGUF_I64, i64s, 2));
    ADD(sqz_gguf_writer_add_arr(w, "a.f32", SQZ_GGUF_F32, f32s, 3));
    ADD(sqz_gguf_writer_add_arr(w, "a.f64", SQZ_GGUF_F64, f64s, 2));
    ADD(sqz_gguf_writer_add_arr(w, "a.bool", SQZ_GGUF_BOOL, bools, 4));
    ADD(sqz_gguf_writer_add_arr(w, "a.empty", SQZ_GGUF_F32, NULL, 0));
    ADD(sqz_gguf_writer_add_arr_str(w, "a.str", strs, NULL, 4));
    ADD(sqz_gguf_writer_add_arr_str(w, "a.str0", NULL, NULL, 0));
    for (size_t i = 0; i < N_WTENSORS; i++) {
        const wtensor *t = &wtensors[i];
        size_t nb = wtensor_bytes(t);
        tdata[i] = malloc(nb);
        for (size_t k = 0; k < nb; k++) tdata[i][k] = (uint8_t)(k * 13 + i + 1);
        ADD(sqz_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, tdata[i], nb));
    }
#undef ADD
    return s;
}

static int arr_is(const sqz_gguf *g, const char *key, int type, const void *want, uint64_t n) {
    sqz_ctx *ctx = sqz_ctx_new();
    int et;
    uint64_t got_n;
    const void *d;
    int ok = sqz_gguf_get_arr(ctx, g, key, &et, &got_n, &d) == SQZ_OK && et == type &&
             got_n == n && (n == 0 || memcmp(d, want, n * sqz_gguf_type_size(type)) == 0);
    sqz_ctx_free(ctx);
    return ok;
}

static void check_round_trip(uint32_t alignment) {
    uint32_t al = alignment ? alignment : 32;
    char fname[64];
    snprintf(fname, sizeof fname, "round_trip_%u.gguf", al);
    const char *out = tmp_path(fname);
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf_writer *w = NULL;
    uint8_t *tdata[N_WTENSORS] = { 0 };
    sqz_status s = sqz_gguf_writer_new(ctx, &w);
    if (s == SQZ_OK) s = fill_writer(w, alignment, tdata);
    if (s == SQZ_OK) s = sqz_gguf_writer_write(w, out);
    CHECK(s == SQZ_OK, "write %s: %s", fname, s ? sqz_ctx_error(ctx) : "ok");
    sqz_gguf_writer_free(w);
    sqz_gguf *g = NULL;
    if (s == SQZ_OK) s = sqz_gguf_open(ctx, out, &g);
    CHECK(s == SQZ_OK, "read %s back: %s", fname, s ? sqz_ctx_error(ctx) : "ok");
    if (s != SQZ_OK) goto done;
    char cname[64];
    snprintf(cname, sizeof cname, "valid_all_types_align%u.gguf", al);
    corpus_save_file(cname, out);

    CHECK(sqz_gguf_version(g) == 3 && sqz_gguf_alignment(g) == al &&
              sqz_gguf_n_kv(g) == (size_t)(29 + (alignment != 0)),
          "%s: version 3, alignment %u, %zu entries", fname, sqz_gguf_alignment(g),
          sqz_gguf_n_kv(g));
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0;
    int64_t i64 = 0;
    float f = 0;
    double d = 0;
    int b = -1;
    const char *str = NULL;
    size_t len = 0;
    CHECK(sqz_gguf_get_u32(ctx, g, "t.u8", &u32) == SQZ_OK && u32 == 200, "%s: u8", fname);
    CHECK(sqz_gguf_get_i32(ctx, g, "t.i8", &i32) == SQZ_OK && i32 == -100, "%s: i8", fname);
    CHECK(sqz_gguf_get_u32(ctx, g, "t.u16", &u32) == SQZ_OK && u32 == 60000, "%s: u16", fname);
    CHECK(sqz_gguf_get_i32(ctx, g, "t.i16", &i32) == SQZ_OK && i32 == -30000, "%s: i16", fname);
    CHECK(sqz_gguf_get_u32(ctx, g, "t.u32", &u32) == SQZ_OK && u32 == 4000000000u, "%s: u32",
          fname);
    CHECK(sqz_gguf_get_i64(ctx, g, "t.i32", &i64) == SQZ_OK && i64 == -2000000000, "%s: i32",
          fname);
    CHECK(sqz_gguf_get_u64(ctx, g, "t.u64", &u64) == SQZ_OK && u64 == UINT64_MAX, "%s: u64",
          fname);
    CHECK(sqz_gguf_get_i64(ctx, g, "t.i64", &i64) == SQZ_OK && i64 == INT64_MIN, "%s: i64",
          fname);
    CHECK(sqz_gguf_get_f32(ctx, g, "t.f32", &f) == SQZ_OK && f == 0.25f, "%s: f32", fname);
    CHECK(sqz_gguf_get_f64(ctx, g, "t.f64", &d) == SQZ_OK && d == -1e100, "%s: f64", fname);
    CHECK(sqz_gguf_get_f32(ctx, g, "t.f64", &f) == SQZ_OK && f == -INFINITY,
          "%s: f64 -1e100 read as f32 is -inf", fname);
    CHECK(sqz_gguf_get_bool(ctx, g, "t.true", &b) == SQZ_OK && b == 1 &&
              sqz_gguf_get_bool(ctx, g, "t.false", &b) == SQZ_OK && b == 0,
          "%s: bools", fname);
    CHECK(sqz_gguf_get_str(ctx, g, "t.str", &str, &len) == SQZ_OK && len == 3 &&
              memcmp(str, "a\0b", 3) == 0,
          "%s: a string with a NUL byte", fname);
    CHECK(sqz_gguf_get_str(ctx, g, "t.empty", &str, &len) == SQZ_OK && len == 0,
          "%s: an empty string", fname);
    CHECK(arr_is(g, "a.u8", SQZ_GGUF_U8, u8s, 3) && arr_is(g, "a.i8", SQZ_GGUF_I8, i8s, 3) &&
              arr_is(g, "a.u16", SQZ_GGUF_U16, u16s, 2) &&
              arr_is(g, "a.i16", SQZ_GGUF_I16, i16s, 2) &&
              arr_is(g, "a.u32", SQZ_GGUF_U32, u32s, 3) &&
              arr_is(g, "a.i32", SQZ_GGUF_I32, i32s, 2) &&
              arr_is(g, "a.u64", SQZ_GGUF_U64, u64s, 2) &&
              arr_is(g, "a.i64", SQZ_GGUF_I64, i64s, 2) &&
              arr_is(g, "a.f32", SQZ_GGUF_F32, f32s, 3) &&
              arr_is(g, "a.f64", SQZ_GGUF_F64, f64s, 2) &&
              arr_is(g, "a.bool", SQZ_GGUF_BOOL, bools, 4) &&
              arr_is(g, "a.empty", SQZ_GGUF_F32, NULL, 0) &&
              arr_is(g, "a.str0", SQZ_GGUF_STRING, NULL, 0),
          "%s: numeric and empty arrays", fname);
    int strs_ok = 1;
    for (int i = 0; i < 4; i++) {
        const char *e = sqz_gguf_arr_str(g, "a.str", (uint64_t)i, &len);
        if (!e || len != strlen(strs[i]) || memcmp(e, strs[i], len) != 0) strs_ok = 0;
    }
    CHECK(strs_ok && !sqz_gguf_arr_str(g, "a.str", 4, &len) &&
              !sqz_gguf_arr_str(g, "t.str", 0, &len) && !sqz_gguf_arr_str(g, "nope", 0, &len),
          "%s: string array", fname);
    /* conversions that must fail */
    CHECK(sqz_gguf_get_u32(ctx, g, "t.i8", &u32) == SQZ_ERR_FORMAT &&
              strstr(sqz_ctx_error(ctx), "-100 does not fit in u32"),
          "%s: %s", fname, sqz_ctx_error(ctx));
    CHECK(sqz_gguf_get_i32(ctx, g, "t.u32", &i32) == SQZ_ERR_FORMAT &&
              strstr(sqz_ctx_error(ctx), "4000000000 does not fit in i32"),
          "%s: %s", fname, sqz_ctx_error(ctx));
    CHECK(sqz_gguf_get_i64(ctx, g, "t.u64", &i64) == SQZ_ERR_FORMAT, "%s: %s", fname,
          sqz_ctx_error(ctx));
    CHECK(sqz_gguf_get_f32(ctx, g, "t.u32", &f) == SQZ_ERR_FORMAT &&
              strstr(sqz_ctx_error(ctx), "has type u32, not a float"),
          "%s: %s", fname, sqz_ctx_error(ctx));
    CHECK(sqz_gguf_get_bool(ctx, g, "t.u8", &b) == SQZ_ERR_FORMAT &&
              sqz_gguf_get_arr(ctx, g, "t.u8", &b, &u64, (const void **)&str) == SQZ_ERR_FORMAT,
          "%s: %s", fname, sqz_ctx_error(ctx));
    CHECK(u32 == 4000000000u && i32 == -30000 && b == 0, "%s: failed getters leave *out alone",
          fname);

    /* tensors, in the order added, aligned, zero-padded, data identical */
    uint64_t off = 0;
    int ok = sqz_gguf_n_tensors(g) == N_WTENSORS, pads_zero = 1;
    const uint8_t *base = NULL;
    for (size_t i = 0; ok && i < N_WTENSORS; i++) {
        const wtensor *wt = &wtensors[i];
        const sqz_gguf_tensor *t = sqz_gguf_get_tensor(g, i);
        size_t nb = wtensor_bytes(wt);
        ok = strcmp(t->name, wt->name) == 0 && t->n_dims == wt->n_dims && t->type == wt->type &&
             t->ne[0] == wt->ne[0] && t->ne[1] == (wt->n_dims > 1 ? wt->ne[1] : 1) &&
             t->ne[2] == (wt->n_dims > 2 ? wt->ne[2] : 1) &&
             t->ne[3] == (wt->n_dims > 3 ? wt->ne[3] : 1) && t->nbytes == nb &&
             t->offset == off && t->offset % al == 0 && memcmp(t->data, tdata[i], nb) == 0 &&
             sqz_gguf_find_tensor(g, wt->name) == t;
        if (i == 0) base = (const uint8_t *)t->data - sqz_gguf_data_offset(g);
        for (uint64_t k = nb; k < (nb + al - 1) / al * al; k++)
            if (((const uint8_t *)t->data)[k] != 0) pads_zero = 0;
        off += (nb + al - 1) / al * al;
    }
    CHECK(ok, "%s: %zu tensors read back: names, shapes, types, offsets, data", fname,
          N_WTENSORS);
    CHECK(pads_zero && base && sqz_gguf_data_offset(g) % al == 0 &&
              sqz_gguf_data_offset(g) + off == sqz_gguf_file_size(g),
          "%s: data section at %llu (aligned), zero padding, ends at the file's end", fname,
          (unsigned long long)sqz_gguf_data_offset(g));
    /* the tensor infos end where the sizes say; zero padding from there to the data */
    uint64_t end = 24;
    for (size_t i = 0; i < sqz_gguf_n_kv(g); i++) {
        size_t rl;
        sqz_gguf_kv_raw(g, i, &rl);
        end += 8 + strlen(sqz_gguf_kv_key(g, i)) + rl;
    }
    for (size_t i = 0; i < sqz_gguf_n_tensors(g); i++)
        end += 8 + strlen(sqz_gguf_get_tensor(g, i)->name) + 4 +
               8 * (uint64_t)sqz_gguf_get_tensor(g, i)->n_dims + 4 + 8;
    int hpad = base && sqz_gguf_data_offset(g) == (end + al - 1) / al * al;
    for (uint64_t k = end; hpad && k < sqz_gguf_data_offset(g); k++)
        if (base[k] != 0) hpad = 0;
    CHECK(hpad, "%s: tensor infos end at %llu, zero padding up to the data", fname,
          (unsigned long long)end);
    const sqz_gguf_tensor *t = NULL;
    s = sqz_gguf_require_tensor(ctx, g, "iq2_xxs.vec", &t);
    CHECK(s == SQZ_ERR_UNSUPPORTED && !t &&
              strstr(sqz_ctx_error(ctx),
                     "tensor iq2_xxs.vec has type iq2_xxs, not supported by sqz") &&
              strstr(sqz_ctx_error(ctx), out),
          "%s: %s", fname, sqz_ctx_error(ctx));
    CHECK(sqz_gguf_require_tensor(ctx, g, "q4_k.mat", &t) == SQZ_OK && t, "%s: q4_k usable",
          fname);
    sqz_gguf_close(g);
done:
    for (size_t i = 0; i < N_WTENSORS; i++) free(tdata[i]);
    sqz_ctx_free(ctx);
}

/* Arguments the writer refuses; each leaves it usable. */
static void check_writer_args(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf_writer *w = NULL;
    sqz_gguf_writer_new(ctx, &w);
    static const uint8_t data[64];
    const int64_t ne1[1] = { 32 }, ne48[1] = { 48 }, ne0[2] = { 32, 0 };
    char longname[80];
    memset(longname, 'x', 64);
    longname[64] = 0;
#define WBAD(what, call, hint)                                                             \
    do {                                                                                   \
        sqz_status s_ = (call);                                                            \
        CHECK(s_ == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), hint),                       \
              "the writer refuses %s: %s", what, sqz_ctx_error(ctx));                      \
    } while (0)
    CHECK(sqz_gguf_writer_add_u32(w, "k", 1) == SQZ_OK, "add k");
    WBAD("a duplicate key", sqz_gguf_writer_add_u8(w, "k", 2), "metadata key k added twice");
    WBAD("an empty key", sqz_gguf_writer_add_u8(w, "", 2), "empty metadata key");
    WBAD("general.alignment as u64", sqz_gguf_writer_add_u64(w, "general.alignment", 64),
         "general.alignment must be u32, not u64");
    WBAD("general.alignment as a string",
         sqz_gguf_writer_add_str(w, "general.alignment", "64", 2), "must be u32, not a string");
    WBAD("general.alignment as an array",
         sqz_gguf_writer_add_arr(w, "general.alignment", SQZ_GGUF_U32, data, 1),
         "must be u32, not an array");
    WBAD("alignment 48", sqz_gguf_writer_add_u32(w, "general.alignment", 48),
         "general.alignment = 48 is not a power of two");
    WBAD("alignment 0", sqz_gguf_writer_add_u32(w, "general.alignment", 0), "= 0 is not");
    WBAD("alignment 2^21", sqz_gguf_writer_add_u32(w, "general.alignment", 1u << 21),
         "not a power of two <= 1048576");
    WBAD("bool 2", sqz_gguf_writer_add_bool(w, "b", 2), "bool 2 is not 0 or 1");
    WBAD("a bool array holding 2", sqz_gguf_writer_add_arr(w, "ba", SQZ_GGUF_BOOL, "\1\2", 2),
         "bool element 1 is 2");
    WBAD("strings through add_arr", sqz_gguf_writer_add_arr(w, "sa", SQZ_GGUF_STRING, data, 1),
         "element type str is not a fixed-size type");
    WBAD("array element type 13", sqz_gguf_writer_add_arr(w, "sa", 13, data, 1),
         "element type ? is not");
    WBAD("a NULL array", sqz_gguf_writer_add_arr(w, "sa", SQZ_GGUF_U8, NULL, 3), "NULL data");
    WBAD("a NULL string in an array",
         sqz_gguf_writer_add_arr_str(w, "sa", (const char *const[]){ "a", NULL }, NULL, 2),
         "string 1 is NULL");
    WBAD("a tensor of the wrong size",
         sqz_gguf_writer_add_tensor(w, "t", 1, ne1, SQZ_TYPE_F32, data, 64),
         "tensor t: 64 bytes given, f32 [32, 1, 1, 1] takes 128");
    WBAD("a row that is not a multiple of the block",
         sqz_gguf_writer_add_tensor(w, "t", 1, ne48, SQZ_TYPE_Q4_0, data, 27),
         "row length 48 is not a multiple of the q4_0 block size 32");
    WBAD("ne 0", sqz_gguf_writer_add_tensor(w, "t", 2, ne0, SQZ_TYPE_F32, data, 0),
         "ne[1] = 0 (must be >= 1)");
    WBAD("5 dimensions", sqz_gguf_writer_add_tensor(w, "t", 5, ne1, SQZ_TYPE_F32, data, 128),
         "5 dimensions");
    WBAD("a removed type", sqz_gguf_writer_add_tensor(w, "t", 1, ne1, 4, data, 128),
         "invalid type id 4");
    WBAD("a 64-byte name", sqz_gguf_writer_add_tensor(w, longname, 1, ne1, SQZ_TYPE_Q4_0, data, 18),
         "is 64 bytes (limit 63)");
    WBAD("NULL data", sqz_gguf_writer_add_tensor(w, "t", 1, ne1, SQZ_TYPE_Q4_0, NULL, 18),
         "NULL data");
    CHECK(sqz_gguf_writer_add_tensor(w, "t", 1, ne1, SQZ_TYPE_Q4_0, data, 18) == SQZ_OK, "add t");
    WBAD("a duplicate tensor", sqz_gguf_writer_add_tensor(w, "t", 1, ne1, SQZ_TYPE_Q4_0, data, 18),
         "tensor t added twice");
    WBAD("an empty path", sqz_gguf_writer_write(w, ""), "empty path");
#undef WBAD
    /* what was accepted: k, t; the writer still works */
    const char *out = tmp_path("args.gguf");
    sqz_status s = sqz_gguf_writer_write(w, out);
    sqz_gguf *g = NULL;
    if (s == SQZ_OK) s = sqz_gguf_open(ctx, out, &g);
    CHECK(s == SQZ_OK && sqz_gguf_n_kv(g) == 1 && sqz_gguf_n_tensors(g) == 1 &&
              sqz_gguf_alignment(g) == 32,
          "after the refusals the writer holds 1 key and 1 tensor: %s",
          s ? sqz_ctx_error(ctx) : "ok");
    if (s == SQZ_OK) corpus_save_file("valid_minimal.gguf", out);
    sqz_gguf_close(g);
    sqz_gguf_writer_free(w);
    unlink(out);

    /* an empty file: header only */
    sqz_gguf_writer_new(ctx, &w);
    out = tmp_path("empty.gguf");
    s = sqz_gguf_writer_write(w, out);
    if (s == SQZ_OK) s = sqz_gguf_open(ctx, out, &g);
    CHECK(s == SQZ_OK && sqz_gguf_n_kv(g) == 0 && sqz_gguf_n_tensors(g) == 0 &&
              sqz_gguf_file_size(g) == 32,
          "a writer with nothing writes a 32-byte file that reads back: %s",
          s ? sqz_ctx_error(ctx) : "ok");
    if (s == SQZ_OK) corpus_save_file("valid_empty.gguf", out);
    sqz_gguf_close(g);
    sqz_gguf_writer_free(w);
    unlink(out);
    sqz_ctx_free(ctx);
}

/* Nested arrays: readable, walkable through kv_raw, copied verbatim by copy_kv. */
static void check_nested(void) {
    bbuf b = { 0 };
    hdr(&b, 3, 0, 2);
    put_str(&b, "nested");
    put_u32(&b, SQZ_GGUF_ARRAY);
    put_u32(&b, SQZ_GGUF_ARRAY); /* array of 2 arrays */
    put_u64(&b, 2);
    put_u32(&b, SQZ_GGUF_U16); put_u64(&b, 3); put_u32(&b, 0x00020001); /* 1, 2 */
    put_u8(&b, 3); put_u8(&b, 0);                                          /* 3 */
    put_u32(&b, SQZ_GGUF_STRING); put_u64(&b, 2); put_str(&b, "x"); put_str(&b, "yz");
    kv_str(&b, "after", "ok");
    corpus_save("valid_nested.gguf", b.p, b.n);
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf *g = NULL;
    sqz_status s = sqz_gguf_open_mem(ctx, b.p, b.n, "nested.gguf", &g);
    CHECK(s == SQZ_OK, "nested arrays are read: %s", s ? sqz_ctx_error(ctx) : "ok");
    if (s == SQZ_OK) {
        int et;
        uint64_t n;
        const void *d;
        size_t raw_len;
        const uint8_t *raw = sqz_gguf_kv_raw(g, 0, &raw_len);
        const char *str;
        size_t len;
        CHECK(sqz_gguf_kv_arr(g, 0, &et, &n, &d) && et == SQZ_GGUF_ARRAY && n == 2 &&
                  raw_len == 4 + 4 + 8 + (4 + 8 + 6) + (4 + 8 + 9 + 10) && raw &&
                  raw[0] == SQZ_GGUF_ARRAY && raw[4] == SQZ_GGUF_ARRAY,
              "nested: array of 2 arrays, %zu raw bytes", raw_len);
        CHECK(sqz_gguf_get_str(ctx, g, "after", &str, &len) == SQZ_OK && str_is(str, len, "ok"),
              "nested: the entry after it is read");
        /* copy through the writer */
        sqz_gguf_writer *w = NULL;
        sqz_gguf_writer_new(ctx, &w);
        s = sqz_gguf_writer_copy_kv(w, g, 0);
        if (s == SQZ_OK) s = sqz_gguf_writer_copy_kv(w, g, 1);
        const char *out = tmp_path("nested.gguf");
        if (s == SQZ_OK) s = sqz_gguf_writer_write(w, out);
        sqz_gguf_writer_free(w);
        size_t len2 = 0;
        uint8_t *c = test_read_file(out, &len2);
        CHECK(s == SQZ_OK && c && len2 == (b.n + 31) / 32 * 32 && memcmp(c, b.p, b.n) == 0,
              "nested: copy_kv reproduces the entries byte for byte (%zu bytes)", len2);
        free(c);
        unlink(out);
        sqz_gguf_close(g);
    }
    sqz_ctx_free(ctx);
    free(b.p);
}

/* One crafted image per kind of corruption. */
static void check_bad_inputs(void) {
    bbuf b = { 0 };
    size_t data_end;
    const uint64_t ne8[1] = { 8 }, ne32[1] = { 32 };

    /* the base image is valid (and is a corpus seed) */
    base_image(&b, &data_end);
    {
        sqz_ctx *ctx = sqz_ctx_new();
        sqz_gguf *g = NULL;
        sqz_status s = sqz_gguf_open_mem(ctx, b.p, b.n, "base.gguf", &g);
        CHECK(s == SQZ_OK && sqz_gguf_n_tensors(g) == 2 &&
                  ((const uint8_t *)sqz_gguf_find_tensor(g, "b")->data)[0] == 32 * 7 + 1,
              "the base image is valid: %s", s ? sqz_ctx_error(ctx) : "ok");
        sqz_gguf_close(g);
        corpus_save("valid_base.gguf", b.p, b.n);
        b.p[4] = 2; /* version 2 has the same layout */
        s = sqz_gguf_open_mem(ctx, b.p, b.n, "v2.gguf", &g);
        CHECK(s == SQZ_OK && sqz_gguf_version(g) == 2, "version 2 is read: %s",
              s ? sqz_ctx_error(ctx) : "ok");
        sqz_gguf_close(g);
        corpus_save("valid_v2.gguf", b.p, b.n);
        b.p[4] = 3;
        /* every truncation before the end of the data fails */
        int all = 1, named = 1;
        for (size_t n = 0; n < data_end; n++) {
            s = sqz_gguf_open_mem(ctx, b.p, n, "cut.gguf", &g);
            if (s == SQZ_OK) { all = 0; sqz_gguf_close(g); printf("# prefix %zu accepted\n", n); }
            else if (!strstr(sqz_ctx_error(ctx), "cut.gguf")) named = 0;
            if (n == 50) corpus_save("truncated_in_kv.gguf", b.p, n);
            if (n == 130) corpus_save("truncated_in_tensor_info.gguf", b.p, n);
            if (n == data_end - 1) corpus_save("truncated_data.gguf", b.p, n);
        }
        CHECK(all && named, "all %zu truncations of the base image are refused, naming the file",
              data_end);
        s = sqz_gguf_open_mem(ctx, b.p, data_end, "cut.gguf", &g);
        CHECK(s == SQZ_OK, "cutting only the trailing padding is fine");
        sqz_gguf_close(g);
        s = sqz_gguf_open_mem(ctx, NULL, 0, "null.gguf", &g);
        CHECK(s == SQZ_ERR_FORMAT && strstr(sqz_ctx_error(ctx), "null.gguf: 0 bytes is too short"),
              "an empty buffer: %s", sqz_ctx_error(ctx));
        s = sqz_gguf_open(ctx, tmp_path("does-not-exist.gguf"), &g);
        CHECK(s == SQZ_ERR_IO && strstr(sqz_ctx_error(ctx), "does-not-exist.gguf"),
              "a missing file: %s", sqz_ctx_error(ctx));
        sqz_ctx_free(ctx);
        free(b.p);
        memset(&b, 0, sizeof b);
    }

    put(&b, "GGU", 3);
    expect_bad("short file", &b, "too short");
    base_image(&b, NULL);
    memcpy(b.p, "GGML", 4);
    expect_bad("wrong magic", &b, "not a GGUF file (magic \"GGML\"");
    put(&b, "GGUF\3\0\0\0\0\0\0\0", 12);
    expect_bad("short header", &b, "truncated GGUF header");
    base_image(&b, NULL);
    b.p[4] = 1;
    expect_bad("version 1", &b, "version 1");
    base_image(&b, NULL);
    b.p[4] = 4;
    expect_bad("version 4", &b, "version 4 is not supported");
    base_image(&b, NULL);
    b.p[4] = 0;
    expect_bad("version 0", &b, "version 0");
    base_image(&b, NULL);
    b.p[4] = 0; b.p[7] = 3;
    expect_bad("big-endian", &b, "big-endian");

    hdr(&b, 3, 0, (uint64_t)1 << 60);
    fill(&b, 64);
    expect_bad("absurd n_kv", &b, "1152921504606846976 metadata entries");
    hdr(&b, 3, (uint64_t)1 << 40, 0);
    fill(&b, 64);
    expect_bad("absurd n_tensors", &b, "1099511627776 tensors");
    hdr(&b, 3, 0, 1);
    put_u64(&b, 1000); put(&b, "general", 7);
    expect_bad("key longer than the file", &b, "string length 1000");
    hdr(&b, 3, 0, 1);
    put_u64(&b, 0); put_u32(&b, SQZ_GGUF_U8); put_u8(&b, 1); fill(&b, 8);
    expect_bad("empty key", &b, "empty key");
    hdr(&b, 3, 0, 1);
    put_u64(&b, 3); put(&b, "a\0b", 3); put_u32(&b, SQZ_GGUF_U8); put_u8(&b, 1);
    expect_bad("key with NUL", &b, "NUL byte");
    hdr(&b, 3, 0, 1);
    put_str(&b, "x"); put_u32(&b, 13); put_u32(&b, 0);
    expect_bad("unknown value type", &b, "unknown value type 13");
    hdr(&b, 3, 0, 1);
    put_str(&b, "x"); put_u32(&b, SQZ_GGUF_ARRAY); put_u32(&b, 77); put_u64(&b, 0);
    expect_bad("unknown array element type", &b, "unknown array element type 77");
    hdr(&b, 3, 0, 1);
    put_str(&b, "x"); put_u32(&b, SQZ_GGUF_BOOL); put_u8(&b, 2);
    expect_bad("bool 2", &b, "bool value 2");
    hdr(&b, 3, 0, 1);
    put_str(&b, "x"); put_u32(&b, SQZ_GGUF_ARRAY); put_u32(&b, SQZ_GGUF_BOOL); put_u64(&b, 3);
    put_u8(&b, 0); put_u8(&b, 1); put_u8(&b, 9);
    expect_bad("bool array with 9", &b, "bool value 9");
    hdr(&b, 3, 0, 1);
    put_str(&b, "x"); put_u32(&b, SQZ_GGUF_STRING); put_u64(&b, UINT64_MAX);
    expect_bad("string longer than the file", &b, "string length 18446744073709551615");
    hdr(&b, 3, 0, 1);
    put_str(&b, "x"); put_u32(&b, SQZ_GGUF_ARRAY); put_u32(&b, SQZ_GGUF_U8);
    put_u64(&b, (uint64_t)1 << 62); fill(&b, 16);
    expect_bad("absurd u8 array", &b, "array of 4611686018427387904 u8");
    hdr(&b, 3, 0, 1);
    put_str(&b, "x"); put_u32(&b, SQZ_GGUF_ARRAY); put_u32(&b, SQZ_GGUF_STRING);
    put_u64(&b, (uint64_t)1 << 59); fill(&b, 16);
    expect_bad("absurd string array", &b, "array of 576460752303423488 str");
    hdr(&b, 3, 0, 1);
    put_str(&b, "x"); put_u32(&b, SQZ_GGUF_ARRAY); put_u32(&b, SQZ_GGUF_F64); put_u64(&b, 5);
    fill(&b, 39);
    expect_bad("f64 array one byte short", &b, "array of 5 f64 elements cannot fit");
    hdr(&b, 3, 0, 1);
    put_str(&b, "x"); put_u32(&b, SQZ_GGUF_ARRAY); put_u32(&b, SQZ_GGUF_STRING); put_u64(&b, 2);
    put_str(&b, "ok"); put_u64(&b, 100); fill(&b, 20);
    expect_bad("string in an array too long", &b, "string length 100");
    hdr(&b, 3, 0, 1);
    put_str(&b, "deep");
    put_u32(&b, SQZ_GGUF_ARRAY); /* the value type, then 12 arrays of 1 array each */
    for (int i = 0; i < 12; i++) { put_u32(&b, SQZ_GGUF_ARRAY); put_u64(&b, 1); }
    put_u32(&b, SQZ_GGUF_U8); put_u64(&b, 1); put_u8(&b, 1);
    expect_bad("arrays nested too deep", &b, "nested more than 8 deep");
    hdr(&b, 3, 0, 2);
    kv_u32(&b, "general.x", 1); kv_u32(&b, "general.x", 2);
    expect_bad("duplicate key", &b, "metadata key \"general.x\" appears twice");
    hdr(&b, 3, 0, 1);
    kv_str(&b, "general.alignment", "32");
    expect_bad("alignment is a string", &b, "general.alignment has type str, not u32");
    hdr(&b, 3, 0, 1);
    put_str(&b, "general.alignment"); put_u32(&b, SQZ_GGUF_U64); put_u64(&b, 32);
    expect_bad("alignment is u64", &b, "general.alignment has type u64, not u32");
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 48);
    expect_bad("alignment 48", &b, "general.alignment = 48 is not a power of two");
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 0);
    expect_bad("alignment 0", &b, "general.alignment = 0");

    /* tensor infos */
    hdr(&b, 3, 1, 0);
    tinfo(&b, "", 1, ne8, SQZ_TYPE_F32, 0); fill(&b, 64);
    expect_bad("empty tensor name", &b, "tensor 0 has an empty name");
    char longname[70];
    memset(longname, 'n', 65);
    longname[65] = 0;
    hdr(&b, 3, 1, 0);
    tinfo(&b, longname, 1, ne8, SQZ_TYPE_F32, 0); fill(&b, 64);
    expect_bad("tensor name too long", &b, "65 bytes (limit 64)");
    hdr(&b, 3, 1, 0);
    put_u64(&b, 2); put(&b, "a\0", 2); put_u32(&b, 1); put_u64(&b, 8); put_u32(&b, 0);
    put_u64(&b, 0); fill(&b, 64);
    expect_bad("tensor name with NUL", &b, "NUL byte");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "t", 0, ne8, SQZ_TYPE_F32, 0); fill(&b, 64);
    expect_bad("0 dims", &b, "tensor \"t\" has 0 dimensions");
    hdr(&b, 3, 1, 0);
    {
        const uint64_t ne5[5] = { 8, 1, 1, 1, 1 };
        tinfo(&b, "t", 5, ne5, SQZ_TYPE_F32, 0); fill(&b, 64);
    }
    expect_bad("5 dims", &b, "tensor \"t\" has 5 dimensions");
    hdr(&b, 3, 1, 0);
    {
        const uint64_t ne[2] = { 8, 0 };
        tinfo(&b, "t", 2, ne, SQZ_TYPE_F32, 0); fill(&b, 64);
    }
    expect_bad("ne 0", &b, "ne[1] = 0 (must be >= 1)");
    hdr(&b, 3, 1, 0);
    {
        const uint64_t ne[2] = { 8, UINT64_MAX };
        tinfo(&b, "t", 2, ne, SQZ_TYPE_F32, 0); fill(&b, 64);
    }
    expect_bad("ne negative", &b, "ne[1] = -1");
    hdr(&b, 3, 1, 0);
    {
        const uint64_t ne[3] = { 1u << 31, 1u << 31, 1u << 31 };
        tinfo(&b, "t", 3, ne, SQZ_TYPE_F32, 0); fill(&b, 64);
    }
    expect_bad("element count overflow", &b, "element count overflows");
    hdr(&b, 3, 1, 0);
    {
        const uint64_t ne[2] = { (uint64_t)1 << 62, 1 };
        tinfo(&b, "t", 2, ne, SQZ_TYPE_F32, 0); fill(&b, 64);
    }
    expect_bad("byte count overflow", &b, "byte count overflows");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "t", 1, ne8, 40, 0); fill(&b, 64);
    expect_bad("type 40", &b, "unknown type id 40");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "t", 1, ne8, 4, 0); fill(&b, 64);
    expect_bad("removed type 4", &b, "type id 4 (q4_2 (removed))");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "t", 1, ne8, 0x80000000u, 0); fill(&b, 64);
    expect_bad("type 2^31", &b, "unknown type id 2147483648");
    hdr(&b, 3, 1, 0);
    {
        const uint64_t ne[1] = { 48 };
        tinfo(&b, "t", 1, ne, SQZ_TYPE_Q4_0, 0); fill(&b, 64);
    }
    expect_bad("row not a multiple of the block", &b,
               "row length 48 is not a multiple of the q4_0 block size 32");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "t", 1, ne8, SQZ_TYPE_F32, 8); pad_to(&b, 32); fill(&b, 64);
    expect_bad("offset not aligned", &b, "data offset 8 is not a multiple of the alignment 32");
    hdr(&b, 3, 1, 1);
    kv_u32(&b, "general.alignment", 64);
    tinfo(&b, "t", 1, ne8, SQZ_TYPE_F32, 32); pad_to(&b, 64); fill(&b, 128);
    expect_bad("offset not aligned to general.alignment", &b, "alignment 64");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "t", 1, ne8, SQZ_TYPE_F32, 64); pad_to(&b, 32); fill(&b, 64);
    expect_bad("data beyond the end", &b, "beyond the end of the file");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "t", 1, ne8, SQZ_TYPE_F32, UINT64_MAX - 31); pad_to(&b, 32); fill(&b, 64);
    expect_bad("offset near 2^64", &b, "beyond the end of the file");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "t", 1, ne8, SQZ_TYPE_F32, 0);
    expect_bad("no data section", &b, "beyond the end of the file");
    hdr(&b, 3, 2, 0);
    tinfo(&b, "t", 1, ne32, SQZ_TYPE_F32, 0); tinfo(&b, "u", 1, ne8, SQZ_TYPE_F32, 96);
    pad_to(&b, 32); fill(&b, 128);
    expect_bad("overlapping tensors", &b, "tensors \"t\" [0, 128) and \"u\" [96, 128) overlap");
    hdr(&b, 3, 2, 0);
    tinfo(&b, "t", 1, ne8, SQZ_TYPE_F32, 0); tinfo(&b, "t", 1, ne8, SQZ_TYPE_F32, 32);
    pad_to(&b, 32); fill(&b, 64);
    expect_bad("duplicate tensor names", &b, "tensor \"t\" appears twice");
    hdr(&b, 3, 2, 0);
    tinfo(&b, "tensor.with.a.rather.long.name.weight", 1, ne8, SQZ_TYPE_F32, 0);
    put_str(&b, "u"); put_u32(&b, 1); put_u64(&b, 8); put_u32(&b, SQZ_TYPE_F32); put_u32(&b, 0);
    expect_bad("truncated second tensor", &b,
               "truncated: the data offset of tensor \"u\" needs 8 bytes at offset 118, 4 left");
    hdr(&b, 3, 1, 0);
    put_str(&b, "t"); put_u32(&b, 4); put_u64(&b, 8);
    for (int i = 0; i < 12; i++) put_u8(&b, 1);
    expect_bad("truncated dimensions", &b, "a dimension of tensor \"t\" needs 8 bytes");
}

/* Atomic writes: failures leave nothing behind and never touch an existing file. */
static void check_atomic(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf_writer *w = NULL;
    sqz_gguf_writer_new(ctx, &w);
    static uint8_t data[8192];
    const int64_t ne[1] = { 2048 };
    sqz_gguf_writer_add_str(w, "general.architecture", "llama", 5);
    sqz_gguf_writer_add_tensor(w, "big", 1, ne, SQZ_TYPE_F32, data, sizeof data);

    /* a folder that does not exist */
    const char *nodir = tmp_path("no/such/dir/x.gguf");
    sqz_status s = sqz_gguf_writer_write(w, nodir);
    CHECK(s == SQZ_ERR_IO && strstr(sqz_ctx_error(ctx), nodir) &&
              strstr(sqz_ctx_error(ctx), "temporary file") && !sqz_path_exists(nodir),
          "writing into a missing folder fails cleanly: %s", sqz_ctx_error(ctx));
    CHECK(count_tmp_files(tmp_dir) == 0, "  and leaves no temporary file");

    /* the target is a folder: the rename fails after everything was written */
    const char *dir = tmp_path("a_folder");
    mkdir(dir, 0755);
    s = sqz_gguf_writer_write(w, dir);
    CHECK(s == SQZ_ERR_IO && strstr(sqz_ctx_error(ctx), "rename failed"),
          "writing over a folder fails at the rename: %s", sqz_ctx_error(ctx));
    CHECK(count_tmp_files(tmp_dir) == 0 && sqz_path_is_dir(dir),
          "  the temporary file is removed, the folder untouched");

    /* the disk fills up mid-write (RLIMIT_FSIZE): the old file stays as it was */
    const char *keep = tmp_path("keep.gguf");
    FILE *f = fopen(keep, "wb");
    fputs("old contents", f);
    fclose(f);
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    fflush(stdout); /* stdout may be a file past the limit: print nothing until restored */
    int set = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    s = sqz_gguf_writer_write(w, keep);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    if (set) {
        size_t len = 0;
        uint8_t *c = test_read_file(keep, &len);
        CHECK(s == SQZ_ERR_IO && strstr(sqz_ctx_error(ctx), "write failed"),
              "a write failing half-way is an error: %s", sqz_ctx_error(ctx));
        CHECK(c && len == 12 && memcmp(c, "old contents", 12) == 0 && count_tmp_files(tmp_dir) == 0,
              "  the existing file is untouched and no temporary file remains");
        free(c);
    } else {
        SKIP("cannot lower RLIMIT_FSIZE");
    }
    /* and then it works */
    s = sqz_gguf_writer_write(w, keep);
    sqz_gguf *g = NULL;
    if (s == SQZ_OK) s = sqz_gguf_open(ctx, keep, &g);
    struct stat st;
    CHECK(s == SQZ_OK && sqz_gguf_n_tensors(g) == 1 && stat(keep, &st) == 0 &&
              (st.st_mode & 0777) == 0644 && count_tmp_files(tmp_dir) == 0,
          "a successful write replaces the file (mode 0644): %s", s ? sqz_ctx_error(ctx) : "ok");
    sqz_gguf_close(g);
    sqz_gguf_writer_free(w);
    sqz_ctx_free(ctx);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/sqz_test_gguf_XXXXXX");
    if (!mkdtemp(tmp_dir)) { printf("not ok - mkdtemp: %s\n", strerror(errno)); return 1; }
    test_type_tables();
    check_real_file("models/gguf/sqz-llama-26m-Q4_0-pure.gguf", 1, 1);
    check_real_file("models/gguf/sqz-llama-26m-Q4_K_M-imatrix.gguf", 0, 0);
    check_real_file("models/gguf/sqz-llama-26m-Q2_K-imatrix.gguf", 0, 0);
    check_copy_through("models/gguf/sqz-llama-26m-Q4_0-pure.gguf");
    check_copy_through("models/gguf/sqz-llama-26m-Q4_K_M-imatrix.gguf");
    check_copy_through("models/gguf/sqz-llama-26m-Q2_K-imatrix.gguf");
    check_stream_copy("models/gguf/sqz-llama-26m-Q4_0-pure.gguf");
    check_stream_copy("models/gguf/sqz-llama-26m-Q4_K_M-imatrix.gguf");
    check_stream_failures();
    check_release();
    check_round_trip(0);
    check_round_trip(64);
    check_round_trip(1);
    check_writer_args();
    check_nested();
    check_bad_inputs();
    check_atomic();
    cleanup();
    return test_done();
}
