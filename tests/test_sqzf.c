/* test_sqzf.c - sqz's own container (docs/sqzf.md):
 *
 *   - round trip: a writer in sqzf mode writes "SQZF" version 1, the reader gives back every
 *     tensor (ggml types and sqz's mx8 / mx4 / mx3) byte for byte; a GGUF writer refuses sqz's
 *     type ids;
 *   - a tiny llama model whose matrices are mixllm's (NAME.mix_perm / .mix_hi / .mix_lo, or a
 *     plain mx4 tensor) loads by magic (whatever the file's name) and its logits equal those of
 *     the same model written with the dequantized matrices as f32 GGUF, up to the 8-bit
 *     activation rounding of the mixed kernels;
 *   - bad input: wrong magic / version, a sqz type id in a GGUF file, unknown sqz type ids, a
 *     truncated file, and the loader's checks of a mixed matrix (not a permutation, row counts,
 *     part types) are clear one-line errors. With $SQZ_GGUF_CORPUS set, the images are saved
 *     there as fuzz seeds (fuzz/corpus/gguf/sqzf-*).
 */
#include <stdint.h>
#include <sys/stat.h>

#include "core/ctx.h"
#include "io/gguf.h"
#include "kernels/mix.h"
#include "model/model.h"
#include "sqz.h"
#include "test.h"

static char tmp_dir[64];
static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

static uint64_t rng = 0x853c49e6748fea9bull;
static uint64_t rnext(void) { return test_xorshift64(&rng); }
static float frand(void) { return (float)((rnext() >> 40) / 8388608.0 - 1.0); }


static void corpus_save(const char *name, const void *data, size_t len) {
    test_corpus_save(name, data, len, 40000);
}

/* The image must be refused by the reader with a one-line message containing hint. */
static void expect_bad_mem(const char *what, const uint8_t *b, size_t n, const char *hint, const char *seed) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf *g = (sqz_gguf *)1;
    const sqz_status s = sqz_gguf_open_mem(ctx, b, n, "img", &g);
    const char *msg = sqz_ctx_error(ctx);
    const int ok = s != SQZ_OK && g == NULL && strstr(msg, "img") && strstr(msg, hint) && !strchr(msg, '\n');
    CHECK(ok, "%s is refused: %s", what, msg);
    if (!ok) printf("#   want \"%s\" in the message\n", hint);
    if (s == SQZ_OK) sqz_gguf_close(g);
    sqz_ctx_free(ctx);
    if (seed) corpus_save(seed, b, n);
}

/* ------------------------------------------------------------------ round trip */

static void test_round_trip(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf_writer *w;
    CHECK(sqz_gguf_writer_new(ctx, &w) == SQZ_OK, "writer");
    /* a GGUF writer refuses sqz's types */
    uint8_t mx4[2 * 68], mx8[130], mx3[3 * 52], q40[2 * 18];
    for (size_t i = 0; i < sizeof mx4; i++) mx4[i] = (uint8_t)rnext();
    for (size_t i = 0; i < sizeof mx8; i++) mx8[i] = (uint8_t)rnext();
    for (size_t i = 0; i < sizeof mx3; i++) mx3[i] = (uint8_t)rnext();
    for (size_t i = 0; i < sizeof q40; i++) q40[i] = (uint8_t)rnext();
    const int64_t ne4[2] = { 256, 1 }, ne8[2] = { 128, 1 }, ne3[2] = { 128, 3 }, neq[2] = { 32, 2 };
    const sqz_status s0 = sqz_gguf_writer_add_tensor(w, "m4", 2, ne4, SQZ_TYPE_MX4, mx4, sizeof mx4);
    CHECK(s0 == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "1026"), "GGUF writer refuses type 1026: %s",
          sqz_ctx_error(ctx));
    sqz_gguf_writer_set_sqzf(w, 1);
    int32_t perm[3] = { 2, 0, 1 };
    const int64_t nep[1] = { 3 };
    CHECK(sqz_gguf_writer_add_str(w, "general.architecture", "test", 4) == SQZ_OK &&
              sqz_gguf_writer_add_tensor(w, "m4", 2, ne4, SQZ_TYPE_MX4, mx4, sizeof mx4) == SQZ_OK &&
              sqz_gguf_writer_add_tensor(w, "m8", 2, ne8, SQZ_TYPE_MX8, mx8, sizeof mx8) == SQZ_OK &&
              sqz_gguf_writer_add_tensor(w, "m3", 2, ne3, SQZ_TYPE_MX3, mx3, sizeof mx3) == SQZ_OK &&
              sqz_gguf_writer_add_tensor(w, "q", 2, neq, SQZ_TYPE_Q4_0, q40, sizeof q40) == SQZ_OK &&
              sqz_gguf_writer_add_tensor(w, "p", 1, nep, 26, perm, sizeof perm) == SQZ_OK,
          "sqzf writer takes ggml and sqz types");
    CHECK(sqz_gguf_writer_add_tensor(w, "bad", 2, ne8, SQZ_TYPE_MIXLLM, mx8, sizeof mx8) == SQZ_ERR_ARG,
          "sqzf writer refuses the in-memory type mixllm: %s", sqz_ctx_error(ctx));
    CHECK(sqz_gguf_writer_add_tensor(w, "bad", 2, ne8, SQZ_TYPE_MX4, mx8, sizeof mx8) == SQZ_ERR_ARG,
          "sqzf writer checks the byte count of sqz types: %s", sqz_ctx_error(ctx));
    const char *path = tmp_path("rt.bin");
    CHECK(sqz_gguf_writer_write(w, path) == SQZ_OK, "sqzf written");
    sqz_gguf_writer_free(w);
    size_t len;
    uint8_t *img = test_read_file(path, &len);
    uint32_t ver = 0;
    if (img && len >= 8) memcpy(&ver, img + 4, 4);
    CHECK(img && len > 24 && !memcmp(img, "SQZF", 4) && ver == 1, "magic SQZF, version 1");
    sqz_gguf *g = NULL;
    CHECK(sqz_gguf_open(ctx, path, &g) == SQZ_OK, "sqzf opens: %s", sqz_ctx_error(ctx));
    if (g) {
        CHECK(sqz_gguf_is_sqzf(g) && sqz_gguf_version(g) == 1 && sqz_gguf_n_tensors(g) == 5, "is sqzf, 5 tensors");
        const struct { const char *n; int type; const void *d; size_t nb; } want[] = {
            { "m4", SQZ_TYPE_MX4, mx4, sizeof mx4 }, { "m8", SQZ_TYPE_MX8, mx8, sizeof mx8 },
            { "m3", SQZ_TYPE_MX3, mx3, sizeof mx3 }, { "q", SQZ_TYPE_Q4_0, q40, sizeof q40 },
            { "p", 26, perm, sizeof perm },
        };
        for (int i = 0; i < 5; i++) {
            const sqz_gguf_tensor *t = sqz_gguf_find_tensor(g, want[i].n);
            CHECK(t && t->type == want[i].type && t->nbytes == want[i].nb && !memcmp(t->data, want[i].d, want[i].nb),
                  "tensor %s: type %d and bytes round-trip", want[i].n, want[i].type);
        }
        sqz_gguf_close(g);
    }
    corpus_save("sqzf-valid_types.sqzf", img, len);
    /* bad versions and truncation of this valid image */
    if (img) {
        uint8_t *b = malloc(len);
        memcpy(b, img, len);
        uint32_t v = 2;
        memcpy(b + 4, &v, 4);
        expect_bad_mem("sqzf version 2", b, len, "sqzf version 2 is not supported", "sqzf-bad-version_2.sqzf");
        v = 0;
        memcpy(b + 4, &v, 4);
        expect_bad_mem("sqzf version 0", b, len, "sqzf version 0", "sqzf-bad-version_0.sqzf");
        memcpy(b, img, len);
        memcpy(b, "SQZG", 4);
        expect_bad_mem("wrong magic", b, len, "not a GGUF file (magic \"SQZG\"", NULL);
        expect_bad_mem("sqzf short header", img, 20, "truncated sqzf header", "sqzf-bad-short_header.sqzf");
        expect_bad_mem("sqzf truncated in tensor infos", img, 120, "img", "sqzf-bad-truncated_infos.sqzf");
        expect_bad_mem("sqzf truncated data", img, len - 40, "img", "sqzf-bad-truncated_data.sqzf");
        /* the same image as GGUF: sqz's type ids are unknown there */
        memcpy(b, "GGUF", 4);
        v = 3;
        memcpy(b + 4, &v, 4);
        expect_bad_mem("GGUF with type 1026", b, len, "unknown type id 1026", "sqzf-bad-gguf_with_type_1026.gguf");
        /* unknown sqz ids in sqzf: patch m4's type (found after its name and dims) */
        const uint8_t *p = memmem(img, len, "\x02\x00\x00\x00\x00\x00\x00\x00m4", 10);
        if (p) {
            const size_t off = (size_t)(p - img) + 10 + 4 + 16; /* name, n_dims, ne[2] */
            const uint32_t ids[] = { 1028, 1031, 1039, 1040, 5000, 0x80000000u }; /* 1024-1027 are types */
            for (size_t k = 0; k < sizeof ids / sizeof *ids; k++) {
                memcpy(b, img, len);
                memcpy(b + off, &ids[k], 4);
                char what[64], hint[64], seed[64];
                snprintf(what, sizeof what, "sqzf with type %u", ids[k]);
                snprintf(hint, sizeof hint, "unknown type id %u", ids[k]);
                snprintf(seed, sizeof seed, "sqzf-bad-type_%u.sqzf", ids[k]);
                expect_bad_mem(what, b, len, hint, seed);
            }
        } else {
            CHECK(0, "found m4's tensor info in the image");
        }
        free(b);
    }
    free(img);
    sqz_ctx_free(ctx);
}

/* ------------------------------------------------------------------ a tiny mixed model */

enum { D = 128, V = 16, NMAT = 7 };
static const char *const mat_names[NMAT] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
                                             "ffn_up", "ffn_down" };

typedef struct tiny {
    float emb[V * D], norm[D];
    float dense[NMAT][D * D];  /* the dequantized matrices, row = output feature */
    uint8_t hi[NMAT][D * 130], lo[NMAT][D * 68];
    int32_t perm[NMAT][D];
    int n8[NMAT];
} tiny;

/* How to spoil the mixed file (0: a valid one). */
enum { OK = 0, DUP_PERM, ROWS_SHORT, HI_AS_MX4, PERM_F32, N_SPOIL };

static void tiny_make(tiny *t) {
    for (int i = 0; i < V * D; i++) t->emb[i] = frand();
    for (int i = 0; i < D; i++) t->norm[i] = 1 + 0.1f * frand();
    for (int m = 0; m < NMAT; m++) {
        /* down all 4-bit, v all 8-bit, up a plain mx4 tensor (identity map) */
        t->n8[m] = m == 6 || m == 5 ? 0 : m == 2 ? D : 7 * m + 3;
        for (int i = 0; i < D; i++) t->perm[m][i] = m == 5 ? i : (i * 37 + m) % D; /* 37: coprime to 128 */
        float row[D];
        for (int i = 0; i < D; i++) {
            for (int k = 0; k < D; k++) row[k] = frand() * 0.2f;
            const int is8 = i < t->n8[m];
            void *dst = is8 ? (void *)(t->hi[m] + (size_t)i * 130) : (void *)(t->lo[m] + (size_t)(i - t->n8[m]) * 68);
            sqz_type_get(is8 ? SQZ_TYPE_MX8 : SQZ_TYPE_MX4)->from_float(row, dst, D);
            sqz_type_get(is8 ? SQZ_TYPE_MX8 : SQZ_TYPE_MX4)->to_float(dst, t->dense[m] + (size_t)t->perm[m][i] * D, D);
        }
    }
}

/* Writes the tiny model: mixed (sqzf) or dense f32 (GGUF). */
static sqz_status tiny_write(const tiny *t, const char *path, int mixed, int spoil) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_gguf_writer *w;
    sqz_status st = sqz_gguf_writer_new(ctx, &w);
    if (st) return st;
    if (mixed) sqz_gguf_writer_set_sqzf(w, 1);
    sqz_gguf_writer_add_str(w, "general.architecture", "llama", 5);
    sqz_gguf_writer_add_u32(w, "llama.block_count", 1);
    sqz_gguf_writer_add_u32(w, "llama.context_length", 64);
    sqz_gguf_writer_add_u32(w, "llama.embedding_length", D);
    sqz_gguf_writer_add_u32(w, "llama.feed_forward_length", D);
    sqz_gguf_writer_add_u32(w, "llama.attention.head_count", 2);
    sqz_gguf_writer_add_u32(w, "llama.attention.head_count_kv", 2);
    const int64_t ne_e[2] = { D, V }, ne_v[1] = { D }, ne_m[2] = { D, D };
    sqz_gguf_writer_add_tensor(w, "token_embd.weight", 2, ne_e, SQZ_TYPE_F32, t->emb, sizeof t->emb);
    sqz_gguf_writer_add_tensor(w, "output_norm.weight", 1, ne_v, SQZ_TYPE_F32, t->norm, sizeof t->norm);
    sqz_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", 1, ne_v, SQZ_TYPE_F32, t->norm, sizeof t->norm);
    sqz_gguf_writer_add_tensor(w, "blk.0.ffn_norm.weight", 1, ne_v, SQZ_TYPE_F32, t->norm, sizeof t->norm);
    static int32_t bad_perm[D];
    for (int m = 0; m < NMAT && !st; m++) {
        char name[96];
        snprintf(name, sizeof name, "blk.0.%s.weight", mat_names[m]);
        if (!mixed) {
            st = sqz_gguf_writer_add_tensor(w, name, 2, ne_m, SQZ_TYPE_F32, t->dense[m], sizeof t->dense[m]);
            continue;
        }
        if (m == 5) { /* ffn_up: a plain mx4 tensor */
            st = sqz_gguf_writer_add_tensor(w, name, 2, ne_m, SQZ_TYPE_MX4, t->lo[m], (size_t)D * 68);
            continue;
        }
        const int32_t *perm = t->perm[m];
        if (spoil == DUP_PERM && m == 1) {
            memcpy(bad_perm, perm, sizeof bad_perm);
            bad_perm[9] = bad_perm[10];
            perm = bad_perm;
        }
        char pn[128];
        snprintf(pn, sizeof pn, "%s.mix_perm", name);
        const int64_t ne_p[1] = { D };
        st = spoil == PERM_F32 && m == 0
                 ? sqz_gguf_writer_add_tensor(w, pn, 1, ne_p, SQZ_TYPE_F32, perm, sizeof t->perm[m])
                 : sqz_gguf_writer_add_tensor(w, pn, 1, ne_p, 26, perm, sizeof t->perm[m]);
        int64_t n8 = t->n8[m], nlo = D - t->n8[m];
        if (spoil == ROWS_SHORT && m == 3) nlo--;
        if (!st && n8) {
            snprintf(pn, sizeof pn, "%s.mix_hi", name);
            const int64_t ne[2] = { D, n8 };
            st = spoil == HI_AS_MX4 && m == 4
                     ? sqz_gguf_writer_add_tensor(w, pn, 2, ne, SQZ_TYPE_MX4, t->lo[m], (size_t)n8 * 68)
                     : sqz_gguf_writer_add_tensor(w, pn, 2, ne, SQZ_TYPE_MX8, t->hi[m], (size_t)n8 * 130);
        }
        if (!st && nlo) {
            snprintf(pn, sizeof pn, "%s.mix_lo", name);
            const int64_t ne[2] = { D, nlo };
            st = sqz_gguf_writer_add_tensor(w, pn, 2, ne, SQZ_TYPE_MX4, t->lo[m], (size_t)nlo * 68);
        }
    }
    if (!st) st = sqz_gguf_writer_write(w, path);
    if (st) printf("# %s\n", sqz_ctx_error(ctx));
    sqz_gguf_writer_free(w);
    sqz_ctx_free(ctx);
    return st;
}

static void test_tiny_model(void) {
    tiny *t = malloc(sizeof *t);
    tiny_make(t);
    /* no extension on purpose: sqzf loads by its magic */
    const char *mixed = tmp_path("tiny-mixed"), *dense = tmp_path("tiny-dense.gguf");
    CHECK(tiny_write(t, mixed, 1, OK) == SQZ_OK && tiny_write(t, dense, 0, OK) == SQZ_OK, "tiny models written");
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *mm = NULL, *md = NULL;
    CHECK(sqz_model_load(ctx, mixed, NULL, &mm) == SQZ_OK, "mixed sqzf model loads: %s", sqz_ctx_error(ctx));
    CHECK(sqz_model_load(ctx, dense, NULL, &md) == SQZ_OK, "dense model loads: %s", sqz_ctx_error(ctx));
    if (mm && md) {
        CHECK(!strcmp(mm->format, "sqzf") && mm->layers[0].wq.type == SQZ_TYPE_MIXLLM &&
                  ((const sqz_mix_tensor *)mm->layers[0].w_down.data)->n8 == 0 &&
                  ((const sqz_mix_tensor *)mm->layers[0].wv.data)->n8 == D,
              "format sqzf, matrices mixllm (down: no 8-bit rows, v: all)");
        sqz_model_info info;
        sqz_model_get_info(mm, &info);
        const uint64_t want_bytes = (uint64_t)(V * D + 3 * D) * 4 + 7 * (uint64_t)D * 4 +
                                    (uint64_t)130 * (3 + 10 + 128 + 24 + 31) +
                                    (uint64_t)68 * (7 * D - (3 + 10 + 128 + 24 + 31));
        CHECK(info.weight_bytes == want_bytes, "info counts the mixed parts' bytes (%llu, want %llu)",
              (unsigned long long)info.weight_bytes, (unsigned long long)want_bytes);
        const int32_t toks[5] = { 1, 5, 9, 2, 14 };
        float *lm = malloc(5 * V * sizeof *lm), *ld = malloc(5 * V * sizeof *ld);
        sqz_session *sm = NULL, *sd = NULL;
        CHECK(sqz_session_new(ctx, mm, 16, &sm) == SQZ_OK && sqz_session_new(ctx, md, 16, &sd) == SQZ_OK, "sessions");
        if (sm && sd) {
            /* prefill of 4 (quantized path), then one decode step */
            sqz_session_eval(sm, toks, 4, lm, 1);
            sqz_session_eval(sm, toks + 4, 1, lm + 4 * V, 1);
            sqz_session_eval(sd, toks, 4, ld, 1);
            sqz_session_eval(sd, toks + 4, 1, ld + 4 * V, 1);
            double dmax = 0, lmax = 0;
            for (int i = 0; i < 5 * V; i++) {
                dmax = fabs(lm[i] - ld[i]) > dmax ? fabs(lm[i] - ld[i]) : dmax;
                lmax = fabs(ld[i]) > lmax ? fabs(ld[i]) : lmax;
            }
            CHECK(dmax <= 0.02 * lmax && lmax > 0.1,
                  "mixed model's logits equal the dense dequantized model's (max diff %.3g of %.3g)", dmax, lmax);
            /* the decode step with 1 and 2 threads: 2 take the thread-team path, whose row
             * shares must meet mixllm's permuted rows */
            float *l1 = malloc(V * sizeof *l1), *l2 = malloc(V * sizeof *l2);
            const int saved = sqz_ctx_threads(ctx);
            for (int nt = 1; nt <= 2; nt++) {
                sqz_ctx_set_threads(ctx, nt);
                sqz_session_reset(sm);
                sqz_session_eval(sm, toks, 4, NULL, 0);
                sqz_session_eval(sm, toks + 4, 1, nt == 1 ? l1 : l2, 0);
            }
            sqz_ctx_set_threads(ctx, saved);
            double d12 = 0;
            for (int i = 0; i < V; i++) d12 = fabs(l1[i] - l2[i]) > d12 ? fabs(l1[i] - l2[i]) : d12;
            CHECK(d12 <= 1e-4 * lmax, "mixed model: 2-thread decode step = 1-thread (max diff %.3g)", d12);
            free(l1);
            free(l2);
        }
        sqz_session_free(sm);
        sqz_session_free(sd);
        free(lm), free(ld);
    }
    sqz_model_free(mm);
    sqz_model_free(md);
    size_t len;
    uint8_t *img = test_read_file(mixed, &len);
    corpus_save("sqzf-valid_tiny_mixed.sqzf", img, len);
    free(img);
    /* the loader's checks of mixed matrices */
    const struct { int spoil; const char *what, *hint; } bad[] = {
        { DUP_PERM, "duplicate in mix_perm", "is not a permutation" },
        { ROWS_SHORT, "parts one row short", "stored rows, want 128" },
        { HI_AS_MX4, "mix_hi of type mx4", "has type mx4 (want mx8)" },
        { PERM_F32, "mix_perm of type f32", "must be i32 [128]" },
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        const char *p = tmp_path("tiny-bad.sqzf");
        CHECK(tiny_write(t, p, 1, bad[k].spoil) == SQZ_OK, "spoiled model written (%s)", bad[k].what);
        sqz_model *m = (sqz_model *)1;
        const sqz_status s = sqz_model_load(ctx, p, NULL, &m);
        const char *msg = sqz_ctx_error(ctx);
        CHECK(s == SQZ_ERR_FORMAT && m == NULL && strstr(msg, bad[k].hint) && strstr(msg, "tiny-bad.sqzf"),
              "%s is refused: %s", bad[k].what, msg);
        unlink(p);
    }
    sqz_ctx_free(ctx);
    unlink(mixed);
    unlink(dense);
    free(t);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/sqz_test_sqzf.XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        printf("# mkdtemp failed\n");
        return 1;
    }
    test_round_trip();
    test_tiny_model();
    unlink(tmp_path("rt.bin"));
    rmdir(tmp_dir);
    return test_done();
}
