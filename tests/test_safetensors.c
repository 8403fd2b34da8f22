/* test_safetensors.c - the safetensors reader: the real models, small valid files, a sharded
 * index, and one crafted file per kind of corruption (each must fail with a message naming the
 * file, never crash). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "test.h"

/* ------------------------------------------------------------------ temp files */

static char tmp_dir[64];
static char tmp_files[128][256]; /* to delete at the end */
static int n_tmp_files;

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

static void remember(const char *path) {
    for (int i = 0; i < n_tmp_files; i++)
        if (strcmp(tmp_files[i], path) == 0) return;
    if (n_tmp_files < 128) snprintf(tmp_files[n_tmp_files++], 256, "%s", path);
}

static const char *write_raw(const char *name, const void *data, size_t len) {
    const char *p = tmp_path(name);
    FILE *f = fopen(p, "wb");
    if (!f) { printf("# cannot write %s\n", p); exit(1); }
    if (len) fwrite(data, 1, len, f);
    fclose(f);
    remember(p);
    return p;
}

/* Builds a safetensors image: u64 header length, header, data_len bytes (0, 1, 2, ...). The
 * header length written is hlen_override when nonzero. Caller frees. */
static uint8_t *make_image(const char *header, size_t data_len, uint64_t hlen_override,
                           size_t *len) {
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    uint8_t *b = malloc(*len);
    uint64_t h = hlen_override ? hlen_override : hl;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(h >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)i;
    return b;
}

static const char *write_st(const char *name, const char *header, size_t data_len) {
    size_t len;
    uint8_t *b = make_image(header, data_len, 0, &len);
    const char *p = write_raw(name, b, len);
    free(b);
    return p;
}

static void cleanup(void) {
    for (int i = n_tmp_files - 1; i >= 0; i--) {
        if (unlink(tmp_files[i]) != 0) rmdir(tmp_files[i]);
    }
    rmdir(tmp_dir);
}

/* ------------------------------------------------------------------ expectations */

/* Opening path must fail with a message that names want_in_msg (the file) and, when given,
 * contains hint too. */
static void expect_bad(const char *what, const char *path, const char *want_in_msg,
                       const char *hint) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_safetensors *st = (sqz_safetensors *)1;
    sqz_status s = sqz_st_open(ctx, path, &st);
    const char *msg = sqz_ctx_error(ctx);
    int ok = s != SQZ_OK && st == NULL && strstr(msg, want_in_msg) &&
             (!hint || strstr(msg, hint)) && !strchr(msg, '\n');
    CHECK(ok, "%s is refused: %s", what, msg);
    if (!ok) printf("#   status %d, want \"%s\" and \"%s\" in the message\n", (int)s, want_in_msg,
                    hint ? hint : "");
    if (s == SQZ_OK) sqz_st_close(st);
    sqz_ctx_free(ctx);
}

static void bad_header(const char *what, const char *header, size_t data_len,
                       const char *hint) {
    char name[64];
    static int k;
    snprintf(name, sizeof name, "bad%02d.safetensors", k++);
    const char *p = write_st(name, header, data_len);
    expect_bad(what, p, p, hint);
    /* the same bytes from memory */
    size_t len;
    uint8_t *b = make_image(header, data_len, 0, &len);
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_safetensors *st = NULL;
    sqz_status s = sqz_st_open_mem(ctx, b, len, "mem-image", &st);
    CHECK(s != SQZ_OK && !st && strstr(sqz_ctx_error(ctx), "mem-image"),
          "%s is refused from memory too", what);
    sqz_st_close(st);
    sqz_ctx_free(ctx);
    free(b);
}

/* ------------------------------------------------------------------ tests */

static void test_real_model(void) {
    const char *p = test_shared("models/sqz-llama-26m/model.safetensors");
    if (!p) { SKIP("sqz-llama-26m not found (set SQZ_SHARED)"); return; }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_safetensors *st = NULL;
    sqz_status s = sqz_st_open(ctx, p, &st);
    CHECK(s == SQZ_OK, "open %s: %s", p, sqz_ctx_error(ctx));
    if (s != SQZ_OK) { sqz_ctx_free(ctx); return; }
    /* embed + final norm + 8 layers * 9 tensors, tied: no lm_head */
    CHECK(sqz_st_count(st) == 74, "26m has 74 tensors (got %zu)", sqz_st_count(st));
    const sqz_st_tensor *e = sqz_st_find(st, "model.embed_tokens.weight");
    CHECK(e && e->n_dims == 2 && e->shape[0] == 4096 && e->shape[1] == 512 &&
              e->type == SQZ_TYPE_F16 && strcmp(e->dtype, "F16") == 0 &&
              e->nbytes == (size_t)4096 * 512 * 2 && strcmp(e->file, p) == 0,
          "embed_tokens is F16 [4096, 512]");
    const sqz_st_tensor *k = sqz_st_find(st, "model.layers.7.self_attn.k_proj.weight");
    CHECK(k && k->shape[0] == 128 && k->shape[1] == 512, "k_proj is [128, 512] (2 KV heads)");
    const sqz_st_tensor *n = sqz_st_find(st, "model.norm.weight");
    if (n && n->n_dims == 1 && n->shape[0] == 512) {
        uint16_t h[2];
        memcpy(h, n->data, sizeof h);
        float v0 = sqz_f16_to_f32(h[0]), v1 = sqz_f16_to_f32(h[1]);
        CHECK(isfinite(v0) && v0 == 1.4345703125f && v1 == 1.41796875f,
              "model.norm.weight[0..1] = %g %g (PyTorch: 1.4345703125 1.41796875)", v0, v1);
        memcpy(h, (const uint8_t *)e->data + e->nbytes - 2, 2);
        CHECK(isfinite(sqz_f16_to_f32(h[0])), "last embedding value is finite");
    } else {
        CHECK(0, "model.norm.weight is [512]");
    }
    CHECK(sqz_st_find(st, "lm_head.weight") == NULL, "no lm_head (tied embeddings)");
    /* names come out sorted */
    int sorted = 1;
    for (size_t i = 1; i < sqz_st_count(st); i++)
        if (strcmp(sqz_st_get(st, i - 1)->name, sqz_st_get(st, i)->name) >= 0) sorted = 0;
    CHECK(sorted && sqz_st_get(st, sqz_st_count(st)) == NULL, "sqz_st_get walks names in order");
    sqz_st_close(st);

    /* the 14m model through its folder */
    const char *d = test_shared("models/sqz-llama-14m");
    if (d) {
        s = sqz_st_open(ctx, d, &st);
        CHECK(s == SQZ_OK, "open folder %s: %s", d, sqz_ctx_error(ctx));
        if (s == SQZ_OK) {
            const sqz_st_tensor *q = sqz_st_find(st, "model.layers.0.self_attn.q_proj.weight");
            CHECK(q && q->shape[0] == 384 && q->shape[1] == 384 && q->type == SQZ_TYPE_F16,
                  "14m q_proj is F16 [384, 384]");
            sqz_st_close(st);
        }
    }
    sqz_ctx_free(ctx);
}

/* A small valid file with every kind of entry. */
static const char *valid_header =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"w.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"w.f16\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"w.bf16\":{\"dtype\":\"BF16\",\"shape\":[1,1,1,2],\"data_offsets\":[32,36]},"
    "\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[36,44]},"
    "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[44,48]},"
    "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[48,48]}}    ";

static void check_valid_table(const sqz_safetensors *st, const char *file, const char *what) {
    CHECK(sqz_st_count(st) == 6, "%s: 6 tensors", what);
    const sqz_st_tensor *a = sqz_st_find(st, "w.f32");
    CHECK(a && a->type == SQZ_TYPE_F32 && a->n_dims == 2 && a->shape[0] == 2 && a->shape[1] == 3 &&
              a->nbytes == 24 && ((const uint8_t *)a->data)[0] == 0 &&
              ((const uint8_t *)a->data)[23] == 23 && strcmp(a->file, file) == 0,
          "%s: w.f32 [2, 3] at offset 0", what);
    const sqz_st_tensor *b = sqz_st_find(st, "w.f16");
    CHECK(b && b->type == SQZ_TYPE_F16 && b->nbytes == 8 && ((const uint8_t *)b->data)[0] == 24,
          "%s: w.f16 at offset 24", what);
    const sqz_st_tensor *c = sqz_st_find(st, "w.bf16");
    CHECK(c && c->type == SQZ_TYPE_BF16 && c->n_dims == 4 && c->shape[3] == 2, "%s: w.bf16 4-D",
          what);
    const sqz_st_tensor *i = sqz_st_find(st, "ids");
    CHECK(i && i->type == SQZ_ST_TYPE_NONE && strcmp(i->dtype, "I64") == 0 && i->nbytes == 8,
          "%s: I64 tensor kept with type NONE", what);
    const sqz_st_tensor *sc = sqz_st_find(st, "scalar");
    CHECK(sc && sc->n_dims == 0 && sc->nbytes == 4, "%s: scalar has 0 dims, 4 bytes", what);
    const sqz_st_tensor *e = sqz_st_find(st, "empty");
    CHECK(e && e->nbytes == 0 && e->shape[0] == 0, "%s: empty tensor", what);
    CHECK(!sqz_st_find(st, "__metadata__") && !sqz_st_find(st, "nope") &&
              !sqz_st_find(st, ""),
          "%s: absent names are not found", what);

    sqz_ctx *ctx = sqz_ctx_new();
    const sqz_st_tensor *t = NULL;
    CHECK(sqz_st_require(ctx, st, "w.f16", &t) == SQZ_OK && t == b, "%s: require w.f16", what);
    sqz_status s = sqz_st_require(ctx, st, "ids", &t);
    CHECK(s == SQZ_ERR_UNSUPPORTED && !t && strstr(sqz_ctx_error(ctx), "I64") &&
              strstr(sqz_ctx_error(ctx), file),
          "%s: require of an I64 tensor: %s", what, sqz_ctx_error(ctx));
    s = sqz_st_require(ctx, st, "missing.weight", &t);
    CHECK(s == SQZ_ERR_FORMAT && strstr(sqz_ctx_error(ctx), "missing.weight"),
          "%s: require of an absent tensor: %s", what, sqz_ctx_error(ctx));
    sqz_ctx_free(ctx);
}

static void test_valid_small(void) {
    const char *p = write_st("valid.safetensors", valid_header, 48);
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_safetensors *st = NULL;
    sqz_status s = sqz_st_open(ctx, p, &st);
    CHECK(s == SQZ_OK, "open a small valid file: %s", sqz_ctx_error(ctx));
    if (s == SQZ_OK) check_valid_table(st, p, "file");
    sqz_st_close(st);

    size_t len;
    uint8_t *img = make_image(valid_header, 48, 0, &len);
    st = NULL;
    s = sqz_st_open_mem(ctx, img, len, "img", &st);
    CHECK(s == SQZ_OK, "open_mem of the same bytes: %s", sqz_ctx_error(ctx));
    if (s == SQZ_OK) check_valid_table(st, "img", "memory");
    sqz_st_close(st);
    free(img);

    /* extra bytes at the end of the data section, and an empty header object */
    p = write_st("trailing.safetensors", valid_header, 64);
    s = sqz_st_open(ctx, p, &st);
    CHECK(s == SQZ_OK && sqz_st_count(st) == 6, "unused bytes after the last tensor are fine");
    sqz_st_close(st);
    p = write_st("nothing.safetensors", "{}", 0);
    s = sqz_st_open(ctx, p, &st);
    CHECK(s == SQZ_OK && sqz_st_count(st) == 0 && !sqz_st_find(st, "x"),
          "a file with no tensors opens (empty table)");
    sqz_st_close(st);

    /* a folder holding model.safetensors */
    const char *sub = tmp_path("single");
    mkdir(sub, 0700);
    remember(sub);
    char name[128];
    snprintf(name, sizeof name, "single/model.safetensors");
    const char *mp = write_st(name, valid_header, 48);
    s = sqz_st_open(ctx, sub, &st);
    CHECK(s == SQZ_OK && sqz_st_count(st) == 6 && strcmp(sqz_st_find(st, "w.f32")->file, mp) == 0,
          "open a folder with model.safetensors: %s", sqz_ctx_error(ctx));
    sqz_st_close(st);
    sqz_ctx_free(ctx);
}

static void test_sharded(void) {
    const char *sub = tmp_path("sharded");
    mkdir(sub, 0700);
    remember(sub);
    const char *s1 = write_st("sharded/model-00001-of-00002.safetensors",
                              "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],"
                              "\"data_offsets\":[0,8]},"
                              "\"b.weight\":{\"dtype\":\"F16\",\"shape\":[2,2],"
                              "\"data_offsets\":[8,16]}}",
                              16);
    char s1c[512];
    snprintf(s1c, sizeof s1c, "%s", s1);
    const char *s2 = write_st("sharded/model-00002-of-00002.safetensors",
                              "{\"__metadata__\":{},"
                              "\"c.weight\":{\"dtype\":\"BF16\",\"shape\":[3],"
                              "\"data_offsets\":[0,6]}}",
                              6);
    char s2c[512];
    snprintf(s2c, sizeof s2c, "%s", s2);
    const char *idx_text =
        "{\"metadata\":{\"total_size\":22},\"weight_map\":{"
        "\"a.weight\":\"model-00001-of-00002.safetensors\","
        "\"c.weight\":\"model-00002-of-00002.safetensors\","
        "\"b.weight\":\"model-00001-of-00002.safetensors\"}}";
    const char *idx = write_raw("sharded/model.safetensors.index.json", idx_text,
                                strlen(idx_text));
    char idxc[512];
    snprintf(idxc, sizeof idxc, "%s", idx);
    remember(sub);

    sqz_ctx *ctx = sqz_ctx_new();
    for (int pass = 0; pass < 2; pass++) {
        const char *open_path = pass == 0 ? idxc : sub;
        sqz_safetensors *st = NULL;
        sqz_status s = sqz_st_open(ctx, open_path, &st);
        CHECK(s == SQZ_OK, "open sharded model via %s: %s", pass ? "its folder" : "its index",
              sqz_ctx_error(ctx));
        if (s != SQZ_OK) continue;
        const sqz_st_tensor *a = sqz_st_find(st, "a.weight"), *b = sqz_st_find(st, "b.weight"),
                            *c = sqz_st_find(st, "c.weight");
        CHECK(sqz_st_count(st) == 3 && a && b && c, "all three tensors found");
        CHECK(a && c && strcmp(a->file, s1c) == 0 && strcmp(c->file, s2c) == 0 &&
                  a->data != c->data,
              "each tensor points into its own shard");
        CHECK(b && b->type == SQZ_TYPE_F16 && ((const uint8_t *)b->data)[0] == 8 &&
                  c->type == SQZ_TYPE_BF16 && ((const uint8_t *)c->data)[5] == 5,
              "shard data is where data_offsets say");
        sqz_st_close(st);
    }
    sqz_ctx_free(ctx);

    /* bad indexes */
    struct { const char *what, *text, *hint; } bad[] = {
        { "index that is not JSON", "{\"weight_map\":", "JSON" },
        { "index without weight_map", "{\"metadata\":{}}", "weight_map" },
        { "index whose weight_map is a list", "{\"weight_map\":[]}", "weight_map" },
        { "index with an empty weight_map", "{\"weight_map\":{}}", "empty" },
        { "index with a non-string shard", "{\"weight_map\":{\"a.weight\":1}}", "a.weight" },
        { "index naming a shard outside its folder",
          "{\"weight_map\":{\"a.weight\":\"../model-00001-of-00002.safetensors\"}}", "folder" },
        { "index naming a missing shard",
          "{\"weight_map\":{\"a.weight\":\"model-00003-of-00003.safetensors\"}}",
          "model-00003-of-00003.safetensors" },
        { "index naming a tensor its shard lacks",
          "{\"weight_map\":{\"a.weight\":\"model-00001-of-00002.safetensors\","
          "\"zzz.weight\":\"model-00002-of-00002.safetensors\"}}",
          "zzz.weight" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "sharded/bad%zu.index.json", i);
        const char *p = write_raw(name, bad[i].text, strlen(bad[i].text));
        char pc[512];
        snprintf(pc, sizeof pc, "%s", p);
        expect_bad(bad[i].what, pc, i == 6 ? "model-00003-of-00003" : pc, bad[i].hint);
    }
    /* the same tensor in two shards */
    write_st("sharded/dup.safetensors",
             "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[8,10]}}",
             10);
    const char *t = "{\"weight_map\":{\"a.weight\":\"model-00001-of-00002.safetensors\","
                    "\"x\":\"dup.safetensors\"}}";
    const char *p = write_raw("sharded/dup.index.json", t, strlen(t));
    char pc[512];
    snprintf(pc, sizeof pc, "%s", p);
    expect_bad("a tensor held by two shards", pc, "dup.safetensors", "a.weight");
    t = "{\"weight_map\":{\"a.weight\":\"model-00001-of-00002.safetensors\","
        "\"b.weight\":\"dup.safetensors\"}}";
    p = write_raw("sharded/dup2.index.json", t, strlen(t));
    snprintf(pc, sizeof pc, "%s", p);
    expect_bad("a tensor mapped to the wrong shard", pc, pc, "b.weight");
    remember(sub);
}

static void test_bad_files(void) {
    /* not even a header length */
    uint8_t five[5] = { 1, 2, 3, 4, 5 };
    const char *p = write_raw("short.safetensors", five, 5);
    expect_bad("a 5-byte file", p, p, "too short");
    p = write_raw("empty.safetensors", "", 0);
    expect_bad("an empty file", p, p, "too short");

    /* the header length field lies */
    size_t len;
    uint8_t *b = make_image(valid_header, 48, 4096, &len);
    p = write_raw("hlen_big.safetensors", b, len);
    expect_bad("header length beyond the file", p, p, "exceeds");
    free(b);
    b = make_image(valid_header, 48, UINT64_MAX, &len);
    p = write_raw("hlen_max.safetensors", b, len);
    expect_bad("header length 2^64-1", p, p, "exceeds");
    free(b);
    /* a sparse 101 MB file whose header length is inside it but above the 100 MB limit */
    b = make_image("{}", 0, ((uint64_t)100 << 20) + 1, &len);
    p = write_raw("hlen_absurd.safetensors", b, len);
    if (truncate(p, ((off_t)101 << 20)) == 0)
        expect_bad("header length above 100 MB", p, p, "absurd");
    else
        SKIP("cannot make a sparse 101 MB file");
    unlink(p);
    free(b);

    /* truncated: the real model's header with only part of its data */
    b = make_image(valid_header, 40, 0, &len);
    p = write_raw("truncated.safetensors", b, len);
    expect_bad("a truncated data section", p, p, "beyond the data section");
    free(b);

    bad_header("header that is not JSON", "{\"a\": {\"dtype\": ", 0, "JSON");
    bad_header("header that is a JSON list", "[1, 2]", 0, "not a JSON object");
    bad_header("header that is a JSON string", "\"abc\"", 0, "not a JSON object");
    bad_header("header with garbage after the object", "{} xyz", 0, "trailing");
    bad_header("tensor name that is not a string (JSON key 1)",
               "{1:{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "JSON");
    bad_header("empty tensor name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               4, "empty name");
    bad_header("__metadata__ that is not an object", "{\"__metadata__\":[1]}", 0, "__metadata__");
    bad_header("entry that is not an object", "{\"a\":5}", 0, "\"a\"");
    bad_header("entry without dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "dtype");
    bad_header("dtype that is a number", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}",
               4, "dtype");
    bad_header("unknown dtype", "{\"a\":{\"dtype\":\"Q4_0\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               4, "Q4_0");
    bad_header("entry without shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
               "shape");
    bad_header("shape that is a number", "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}",
               4, "shape");
    bad_header("negative shape value",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    bad_header("non-integer shape value",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1, 2.5],\"data_offsets\":[0,4]}}", 4,
               "shape[1]");
    bad_header("string shape value",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
               "shape[0]");
    bad_header("5-D shape",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
               "5 dimensions");
    bad_header("element count overflow",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],"
               "\"data_offsets\":[0,4]}}",
               4, "overflow");
    bad_header("byte count overflow",
               "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],"
               "\"data_offsets\":[0,8]}}",
               8, "byte count overflows");
    bad_header("entry without data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
               "data_offsets");
    bad_header("data_offsets that is a number",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":4}}", 4, "data_offsets");
    bad_header("data_offsets with three numbers",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
               "data_offsets");
    bad_header("data_offsets with one number",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    bad_header("negative data_offsets",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
               "data_offsets");
    bad_header("string data_offsets",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", 4,
               "data_offsets");
    bad_header("huge data_offsets",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}", 4,
               "data_offsets");
    bad_header("data_offsets begin > end",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "[8, 4]");
    bad_header("data_offsets end beyond the data",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
               "beyond the data section");
    bad_header("byte count that disagrees with the shape",
               "{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
               "needs 6");
    bad_header("overlapping tensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "overlap");
    bad_header("a tensor inside another",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"z\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[16,18]},"
               "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}",
               18, "overlap");
    bad_header("duplicate tensor names",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "twice");

    /* files and folders that are not there */
    const char *missing = tmp_path("no-such.safetensors");
    char mc[512];
    snprintf(mc, sizeof mc, "%s", missing);
    expect_bad("a missing file", mc, mc, NULL);
    const char *sub = tmp_path("emptydir");
    mkdir(sub, 0700);
    remember(sub);
    expect_bad("a folder without weights", sub, sub, "model.safetensors");
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_safetensors *st = (sqz_safetensors *)1;
    CHECK(sqz_st_open_mem(ctx, NULL, 0, NULL, &st) != SQZ_OK && !st,
          "open_mem of nothing is refused: %s", sqz_ctx_error(ctx));
    sqz_ctx_free(ctx);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/sqz_st_XXXXXX");
    if (!mkdtemp(tmp_dir)) { perror("mkdtemp"); return 1; }
    test_real_model();
    test_valid_small();
    test_sharded();
    test_bad_files();
    cleanup();
    return test_done();
}
