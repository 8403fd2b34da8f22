/* test_convert.c - sqz_convert against llama.cpp's own files and numbers:
 *   - presets: llama.cpp's per-tensor rules and shape fallbacks on made-up shapes;
 *   - stories260K (llama2.c, embedded in assets/) -> f32 GGUF -> load: the same vocabulary
 *     (SentencePiece "llama" tokenizer), the same token ids for several texts, the same decoded
 *     pieces, the same logits and greedy text; q8_0 / q4_k fall back on its 172-wide FFN;
 *   - sqz-llama-26m -> q4_0: byte for byte llama.cpp's Q4_0-pure file (every key, every tensor,
 *     the whole file), with 1 and 2 threads; the same from the F16 GGUF and from llama.cpp's
 *     file itself;
 *   - q4_k_m and q2_k: per-tensor types and metadata as llama.cpp's files (which used an
 *     importance matrix, so only the bytes differ); the file sizes of q4_k_m, q2_k, q3_k_m,
 *     q5_k_m, q6_k, q8_0 and f16 as llamacpp.json's (llama.cpp's files without an imatrix);
 *   - HF -> f16 GGUF: the size llama.cpp's F16 file has, logits as the HF model's and PyTorch's,
 *     perplexity within 0.05% of the HF folder's; f16 GGUF -> q8_0: within 0.5% of f16;
 *   - sqz-llama-14m (384 wide) -> q4_k / q4_k_m: fallback types chosen and counted;
 *   - tiny random Qwen2 and Llama-with-attention-bias models: arch keys, biases, Q rows kept
 *     (qwen2) or permuted (llama), and the same logits once loaded back;
 *   - bad input: unknown type, missing folder, no tokenizer, a pre-tokenizer GGUF cannot name.
 * The perplexity runs are skipped under SQZ_QUICK=1. */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "io/gguf.h"
#include "model/model.h"
#include "tokenizer/impl.h"
#include "formats/presets.h"
#include "ref.h"
#include "sqz.h"

static char tmpdir[64];

/* A path in the temporary folder: TMP(var, "name") declares char var[] = tmpdir/name. */
#define TMP(var, name) \
    char var[600];     \
    snprintf(var, sizeof var, "%s/%s", tmpdir, name)

/* The context's message after a failure, "" after success (messages stay from older failures). */
static const char *err(const sqz_ctx *ctx, sqz_status st) { return st ? sqz_ctx_error(ctx) : ""; }

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static long file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Number of entries in a folder besides . and .. */
static int dir_entries(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1) n = -1;
        pclose(f);
    }
    return n;
}

static int same_files(const char *a, const char *b) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

typedef struct progress_log {
    uint64_t calls, last_done, last_total;
    int monotonic;
} progress_log;

static void on_progress(void *user, const char *what, uint64_t done, uint64_t total) {
    progress_log *p = user;
    if (strcmp(what, "convert") != 0) return;
    if (p->calls && done < p->last_done) p->monotonic = 0;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
}

static sqz_status convert(sqz_ctx *ctx, const sqz_model *m, const char *out, const char *type,
                          int pure, sqz_convert_result *r) {
    sqz_convert_opts o = {.type = type, .pure = pure};
    sqz_convert_result tmp;
    return sqz_convert(ctx, m, out, &o, r ? r : &tmp);
}

static sqz_model *load(sqz_ctx *ctx, const char *path, const char *tok) {
    sqz_model *m = NULL;
    if (sqz_model_load(ctx, path, tok, &m) != SQZ_OK) {
        CHECK(0, "load %s: %s", path, sqz_ctx_error(ctx));
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------------ GGUF comparisons */

/* Compares metadata (keys in order, value types, encoded values; keys of theirs starting with
 * skip_prefix are left out) and tensors (names in order, types, shapes; the data too when
 * with_data). Returns the number of differences and describes the first in what. */
static int gguf_diff(sqz_ctx *ctx, const char *ours, const char *theirs, const char *skip_prefix,
                     int with_data, char *what, size_t cap) {
    sqz_gguf *a = NULL, *b = NULL;
    int diffs = 0;
    snprintf(what, cap, "none");
    if (sqz_gguf_open(ctx, ours, &a) || sqz_gguf_open(ctx, theirs, &b)) {
        snprintf(what, cap, "open: %s", sqz_ctx_error(ctx));
        sqz_gguf_close(a);
        return 1;
    }
#define DIFF(...) do { if (!diffs++) snprintf(what, cap, __VA_ARGS__); } while (0)
    size_t ia = 0;
    for (size_t ib = 0; ib < sqz_gguf_n_kv(b); ib++) {
        const char *kb = sqz_gguf_kv_key(b, ib);
        if (skip_prefix && !strncmp(kb, skip_prefix, strlen(skip_prefix))) continue;
        const char *ka = sqz_gguf_kv_key(a, ia);
        if (!ka) { DIFF("key %s missing", kb); continue; }
        if (strcmp(ka, kb)) { DIFF("key %zu: %s where llama.cpp has %s", ia, ka, kb); ia++; continue; }
        size_t la, lb;
        const void *ra = sqz_gguf_kv_raw(a, ia, &la), *rb = sqz_gguf_kv_raw(b, ib, &lb);
        if (la != lb || memcmp(ra, rb, la)) DIFF("value of %s differs", kb);
        ia++;
    }
    if (ia != sqz_gguf_n_kv(a)) DIFF("%zu keys where llama.cpp has %zu", sqz_gguf_n_kv(a), ia);
    if (sqz_gguf_n_tensors(a) != sqz_gguf_n_tensors(b))
        DIFF("%zu tensors where llama.cpp has %zu", sqz_gguf_n_tensors(a), sqz_gguf_n_tensors(b));
    for (size_t i = 0; i < sqz_gguf_n_tensors(a) && i < sqz_gguf_n_tensors(b); i++) {
        const sqz_gguf_tensor *ta = sqz_gguf_get_tensor(a, i), *tb = sqz_gguf_get_tensor(b, i);
        if (strcmp(ta->name, tb->name)) { DIFF("tensor %zu is %s, llama.cpp's %s", i, ta->name, tb->name); continue; }
        if (ta->type != tb->type)
            DIFF("%s has type %s, llama.cpp's %s", ta->name, sqz_type_name(ta->type),
                 sqz_type_name(tb->type));
        else if (ta->n_dims != tb->n_dims || memcmp(ta->ne, tb->ne, sizeof ta->ne))
            DIFF("%s has another shape", ta->name);
        else if (with_data && (ta->nbytes != tb->nbytes || memcmp(ta->data, tb->data, ta->nbytes)))
            DIFF("%s: bytes differ", ta->name);
    }
#undef DIFF
    sqz_gguf_close(a);
    sqz_gguf_close(b);
    return diffs;
}

/* ------------------------------------------------------------------ presets */

static void test_presets(void) {
    sqz_preset p;
    CHECK(sqz_preset_find("q4_k_m", 0, &p) == 0 && p.mix && p.base == SQZ_TYPE_Q4_K &&
              p.ftype == SQZ_FTYPE_Q4_K_M,
          "preset q4_k_m: mix on Q4_K, ftype 15");
    CHECK(sqz_preset_find("Q4_K_M", 1, &p) == 0 && !p.mix && p.ftype == SQZ_FTYPE_Q4_K_M,
          "preset names are case-insensitive; pure turns a mix off and keeps its ftype");
    CHECK(sqz_preset_find("q2_k", 0, &p) == 0 && p.mix && sqz_preset_find("q2_k", 1, &p) == 0 &&
              !p.mix && p.base == SQZ_TYPE_Q2_K,
          "q2_k is the mix unless pure");
    CHECK(sqz_preset_find("q4_k", 0, &p) == 0 && !p.mix && p.ftype == SQZ_FTYPE_Q4_K_M &&
              sqz_preset_find("q3_k", 0, &p) == 0 && p.ftype == SQZ_FTYPE_Q3_K_M &&
              sqz_preset_find("q5_k", 0, &p) == 0 && p.ftype == SQZ_FTYPE_Q5_K_M,
          "plain k-quant types record the _M ftype llama.cpp's loader guesses");
    CHECK(sqz_preset_find("q4_0", 0, &p) == 0 && p.ftype == 2 && sqz_preset_find("bf16", 0, &p) == 0 &&
              p.ftype == 32 && sqz_preset_find("iq4_xs", 0, &p) == 0 && p.ftype == 30,
          "ftypes of plain types: q4_0 2, bf16 32, iq4_xs 30");
    CHECK(sqz_preset_find("q4_k_x", 0, &p) != 0 && sqz_preset_find("", 0, &p) != 0 &&
              sqz_preset_find(NULL, 0, &p) != 0,
          "unknown preset names are refused");

    /* a 32-layer, 32-head / 8-kv-head model (n_gqa 4), untied */
    sqz_preset_model m = {.n_layers = 32, .n_heads = 32, .n_kv_heads = 8, .tied = 0};
    int fb;
    sqz_preset_find("q4_k_m", 0, &p);
    int v6 = 0;
    for (int i = 0; i < 32; i++) v6 += sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_V, i, 4096, NULL) == SQZ_TYPE_Q6_K;
    /* use_more_bits(i, 32): i < 4, i >= 28, (i - 4) % 3 == 2: 4 + 4 + 8 layers */
    CHECK(v6 == 16, "q4_k_m: attn_v of 16 of 32 layers is Q6_K (use_more_bits), got %d", v6);
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_OUTPUT, -1, 4096, NULL) == SQZ_TYPE_Q6_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_TOKEN_EMBD, -1, 4096, NULL) == SQZ_TYPE_Q4_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_Q, 3, 4096, NULL) == SQZ_TYPE_Q4_K,
          "q4_k_m: output Q6_K, untied token_embd and attn_q Q4_K");
    sqz_preset_find("q2_k", 0, &p);
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_V, 5, 4096, NULL) == SQZ_TYPE_Q4_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_OUTPUT, 5, 4096, NULL) == SQZ_TYPE_Q3_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_FFN_DOWN, 5, 14336, NULL) == SQZ_TYPE_Q3_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_FFN_UP, 5, 4096, NULL) == SQZ_TYPE_Q2_K,
          "q2_k: attn_v Q4_K (n_gqa >= 4), attn_output and ffn_down Q3_K, ffn_up Q2_K");
    m.n_kv_heads = 32;
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_V, 5, 4096, NULL) == SQZ_TYPE_Q3_K,
          "q2_k without GQA: attn_v Q3_K");
    sqz_preset_find("q3_k_m", 0, &p);
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_V, 1, 4096, NULL) == SQZ_TYPE_Q5_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_V, 2, 4096, NULL) == SQZ_TYPE_Q4_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_FFN_DOWN, 1, 4096, NULL) == SQZ_TYPE_Q5_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_FFN_DOWN, 2, 4096, NULL) == SQZ_TYPE_Q4_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_OUTPUT, 9, 4096, NULL) == SQZ_TYPE_Q4_K,
          "q3_k_m: attn_v Q5_K for 2 layers then Q4_K, ffn_down Q5_K for n/16 layers then Q4_K, attn_output Q4_K");
    sqz_preset_find("q4_k_s", 0, &p);
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_V, 3, 4096, NULL) == SQZ_TYPE_Q5_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_V, 4, 4096, NULL) == SQZ_TYPE_Q4_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_FFN_DOWN, 3, 4096, NULL) == SQZ_TYPE_Q5_K &&
              sqz_preset_tensor_type(&p, &m, SQZ_ROLE_FFN_DOWN, 4, 4096, NULL) == SQZ_TYPE_Q4_K,
          "q4_k_s: attn_v Q5_K for 4 layers, ffn_down Q5_K for n/8 layers");
    /* fallbacks */
    sqz_preset_find("q4_k", 0, &p);
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_Q, 0, 384, &fb) == SQZ_TYPE_Q5_0 && fb == 1,
          "q4_k on 384 columns falls back to Q5_0");
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_Q, 0, 512, &fb) == SQZ_TYPE_Q4_K && fb == 0,
          "q4_k on 512 columns is Q4_K, no fallback");
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_Q, 0, 172, &fb) == SQZ_TYPE_F16 && fb == 1,
          "q4_k on 172 columns: Q5_0 does not fit either, F16");
    const struct { const char *name; sqz_type want; } fbs[] = {
        { "q2_k", SQZ_TYPE_IQ4_NL }, { "q3_k", SQZ_TYPE_IQ4_NL }, { "iq4_xs", SQZ_TYPE_IQ4_NL },
        { "q5_k", SQZ_TYPE_Q5_1 }, { "q6_k", SQZ_TYPE_Q8_0 }, { "q4_0", SQZ_TYPE_Q4_0 },
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof fbs / sizeof *fbs; i++) {
        sqz_preset_find(fbs[i].name, 1, &p);
        ok &= sqz_preset_tensor_type(&p, &m, SQZ_ROLE_FFN_UP, 0, 384, NULL) == fbs[i].want;
    }
    CHECK(ok, "fallbacks on 384 columns: q2_k/q3_k/iq4_xs -> IQ4_NL, q5_k -> Q5_1, q6_k -> Q8_0, q4_0 fits");
    sqz_preset_find("q4_0", 0, &p);
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_FFN_UP, 0, 100, &fb) == SQZ_TYPE_F16 && fb,
          "q4_0 on 100 columns: F16");
    sqz_preset_find("q4_k_m", 0, &p);
    m.tied = 1;
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_TOKEN_EMBD, -1, 384, &fb) == SQZ_TYPE_Q8_0 && !fb,
          "q4_k_m: a tied 384-wide token_embd is Q8_0 by the output rule, not a fallback");
    sqz_preset_find("q8_0", 0, &p);
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_TOKEN_EMBD, -1, 4096, NULL) == SQZ_TYPE_Q8_0,
          "q8_0: every matrix Q8_0, the output too");
    m.n_layers = 80;
    m.n_kv_heads = 8;
    m.is_70b = 1;
    sqz_preset_find("q4_k_m", 0, &p);
    CHECK(sqz_preset_tensor_type(&p, &m, SQZ_ROLE_ATTN_V, 20, 8192, NULL) == SQZ_TYPE_Q5_K,
          "q4_k_m on a 70B: attn_v Q5_K where it would be Q4_K");
}

/* ------------------------------------------------------------------ stories260K (llama2.c) */

typedef struct text_buf {
    char s[8192];
    size_t n;
} text_buf;

static int collect(void *user, const char *text, size_t len) {
    text_buf *b = user;
    if (b->n + len < sizeof b->s) {
        memcpy(b->s + b->n, text, len);
        b->n += len;
    }
    return 0;
}

static void greedy(sqz_ctx *ctx, const sqz_model *m, const char *prompt, int n, text_buf *out) {
    sqz_generate_opts o = {.sampler = {.temperature = 0}, .n_predict = n, .add_bos = -1};
    out->n = 0;
    sqz_generate_result r;
    sqz_status st = sqz_generate(ctx, m, prompt, &o, collect, out, &r);
    if (st) printf("# generate: %s\n", sqz_ctx_error(ctx));
    out->s[out->n] = 0;
}

/* The logits of every position of ids; malloc'ed. */
static float *logits_all(sqz_ctx *ctx, const sqz_model *m, const int32_t *ids, size_t n) {
    sqz_model_info info;
    sqz_model_get_info(m, &info);
    float *lg = malloc(sizeof(float) * n * (size_t)info.vocab_size);
    sqz_session *s;
    if (sqz_session_new(ctx, m, (int)n + 8, &s) || sqz_session_eval(s, ids, (int)n, lg, 1)) {
        printf("# eval: %s\n", sqz_ctx_error(ctx));
        free(lg);
        lg = NULL;
    }
    sqz_session_free(s);
    return lg;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN counts as a difference */
    }
    return m;
}

static void test_stories(sqz_ctx *ctx) {
    const char *bin = "assets/stories260K/stories260K.bin";
    if (!file_exists(bin)) { SKIP("%s missing", bin); return; }
    sqz_model *src = load(ctx, bin, NULL);
    if (!src) return;
    TMP(out, "stories-f32.gguf");
    sqz_convert_result r;
    progress_log pl = {.monotonic = 1};
    sqz_ctx_set_progress(ctx, on_progress, &pl);
    sqz_status st = convert(ctx, src, out, "f32", 0, &r);
    sqz_ctx_set_progress(ctx, NULL, NULL);
    CHECK(st == SQZ_OK, "stories260K -> f32 GGUF %s", err(ctx, st));
    sqz_model_info si;
    sqz_model_get_info(src, &si);
    /* 2 + 9 per layer; output tied */
    CHECK(r.n_tensors == 2 + 9 * si.n_layers && r.n_params == si.n_params && r.n_fallback == 0 &&
              fabs(r.bits_per_weight - 32) < 1e-9 && (long)r.file_bytes == file_size(out),
          "result: %d tensors, %llu params, %.2f bits per weight, %llu bytes", r.n_tensors,
          (unsigned long long)r.n_params, r.bits_per_weight, (unsigned long long)r.file_bytes);
    CHECK(pl.monotonic && pl.calls == (uint64_t)r.n_tensors + 1 && pl.last_done == pl.last_total &&
              pl.last_total == (uint64_t)r.n_tensors,
          "progress \"convert\" from 0 to %d tensors (%llu calls)", r.n_tensors, (unsigned long long)pl.calls);
    sqz_model *g = st ? NULL : load(ctx, out, NULL);
    if (!g) { sqz_model_free(src); return; }

    sqz_gguf *gf;
    if (sqz_gguf_open(ctx, out, &gf) == SQZ_OK) {
        size_t len;
        const char *model = NULL;
        sqz_gguf_get_str(ctx, gf, "tokenizer.ggml.model", &model, &len);
        CHECK(model && len == 5 && !memcmp(model, "llama", 5) && sqz_gguf_find_key(gf, "tokenizer.ggml.scores") >= 0 &&
                  sqz_gguf_find_key(gf, "tokenizer.ggml.merges") < 0,
              "the llama2.c tokenizer is written as tokenizer.ggml.model \"llama\" with scores");
        const char *t0 = sqz_gguf_arr_str(gf, "tokenizer.ggml.tokens", 0, &len);
        int ok0 = t0 && len == 5 && !memcmp(t0, "<unk>", 5);
        const char *t1 = sqz_gguf_arr_str(gf, "tokenizer.ggml.tokens", 1, &len);
        ok0 &= t1 && len == 3 && !memcmp(t1, "<s>", 3);
        const char *t259 = sqz_gguf_arr_str(gf, "tokenizer.ggml.tokens", 259, &len);
        ok0 &= t259 && len == 4 && !memcmp(t259, "\xe2\x96\x81t", 4); /* " t" */
        int et;
        uint64_t n;
        const void *types;
        int32_t ty[260] = {0};
        if (sqz_gguf_get_arr(ctx, gf, "tokenizer.ggml.token_type", &et, &n, &types) == SQZ_OK && n >= 260)
            memcpy(ty, types, sizeof ty);
        ok0 &= ty[0] == 2 && ty[1] == 3 && ty[2] == 3 && ty[3] == 6 && ty[258] == 6 && ty[259] == 1;
        CHECK(ok0, "tokens <unk> <s> ..., \" t\" as \"\xe2\x96\x81t\"; types unknown 2, control 3, byte 6, normal 1");
        int add_bos = 0;
        sqz_gguf_get_bool(ctx, gf, "tokenizer.ggml.add_bos_token", &add_bos);
        CHECK(add_bos == 1, "add_bos_token true for the llama2.c tokenizer");
        sqz_gguf_close(gf);
    }

    sqz_model_info gi;
    sqz_model_get_info(g, &gi);
    CHECK(gi.dim == si.dim && gi.n_layers == si.n_layers && gi.n_heads == si.n_heads &&
              gi.n_kv_heads == si.n_kv_heads && gi.hidden_dim == si.hidden_dim &&
              gi.vocab_size == si.vocab_size && gi.max_seq_len == si.max_seq_len &&
              gi.tied_embeddings && gi.rope_interleaved && gi.bos_id == si.bos_id &&
              gi.eos_id == si.eos_id && gi.add_bos == si.add_bos,
          "the GGUF loads with the same configuration and special tokens");
    const char *texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "Tom said, \"I want to play!\"\nThe dog ran to the park.",
        "  two leading spaces, trailing  ",
        "caf\xc3\xa9 \xe2\x98\x95 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 \t tab",
        "\xff\xfe invalid bytes \x80",
        "x",
        "",
    };
    int same = 1;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        sqz_tokenize(ctx, src, texts[i], strlen(texts[i]), -1, &a, &na);
        sqz_tokenize(ctx, g, texts[i], strlen(texts[i]), -1, &b, &nb);
        if (na != nb || memcmp(a, b, na * sizeof *a)) {
            same = 0;
            printf("# text %zu: %zu vs %zu tokens\n", i, na, nb);
        }
        sqz_free(a);
        sqz_free(b);
    }
    CHECK(same, "the GGUF \"llama\" tokenizer encodes 7 texts (spaces, newlines, UTF-8, invalid bytes, empty) as the llama2.c one");
    int dec_same = 1;
    for (int32_t id = 0; id < si.vocab_size && dec_same; id++) {
        for (int k = 0; k < 2; k++) {
            int32_t prev = k ? si.bos_id : -1;
            char ba[64], bb[64];
            size_t la = 0, lb = 0;
            sqz_token_to_text(src, prev, id, ba, sizeof ba, &la);
            sqz_token_to_text(g, prev, id, bb, sizeof bb, &lb);
            if (la != lb || memcmp(ba, bb, la < sizeof ba ? la : sizeof ba)) {
                dec_same = 0;
                printf("# token %d decodes differently\n", id);
            }
        }
    }
    CHECK(dec_same, "every token decodes to the same bytes (at the start and after BOS)");

    int32_t *ids;
    size_t n;
    sqz_tokenize(ctx, src, texts[0], strlen(texts[0]), 1, &ids, &n);
    float *la = logits_all(ctx, src, ids, n), *lb = logits_all(ctx, g, ids, n);
    double d = la && lb ? max_abs_diff(la, lb, n * (size_t)si.vocab_size) : 1e9;
    CHECK(d == 0, "f32 GGUF logits equal the llama2.c model's at all %zu positions (max diff %.3g)", n, d);
    free(la);
    free(lb);
    sqz_free(ids);

    text_buf ta, tb;
    greedy(ctx, src, "", 200, &ta);
    greedy(ctx, g, "", 200, &tb);
    CHECK(ta.n > 100 && ta.n == tb.n && !memcmp(ta.s, tb.s, ta.n),
          "greedy 200 tokens from BOS: the same text (%zu bytes)", ta.n);
    const char *ref = test_shared("models/stories260K/greedy_t0_n256.txt");
    if (ref) {
        size_t rl;
        char *rt = ref_read_text("models/stories260K/greedy_t0_n256.txt", &rl);
        text_buf tc;
        greedy(ctx, g, "", 256, &tc);
        while (rl && (rt[rl - 1] == '\n')) rl--;
        while (tc.n && tc.s[tc.n - 1] == '\n') tc.n--;
        CHECK(rt && tc.n == rl && !memcmp(tc.s, rt, rl),
              "the converted file reproduces llama2.c's greedy_t0_n256.txt byte for byte");
        free(rt);
    }
    greedy(ctx, src, "Once upon a time", 60, &ta);
    greedy(ctx, g, "Once upon a time", 60, &tb);
    CHECK(ta.n == tb.n && !memcmp(ta.s, tb.s, ta.n), "greedy from the prompt \"Once upon a time\": the same text");

    /* GGUF -> GGUF: the same file again */
    TMP(out2, "stories-f32-again.gguf");
    st = convert(ctx, g, out2, "f32", 0, NULL);
    CHECK(st == SQZ_OK && same_files(out, out2),
          "converting the converted file again gives the same bytes (tokenizer and metadata round-trip)");
    remove(out2);

    /* 172-wide FFN: q8_0 falls back to F16 for ffn_down; q4_k falls back everywhere */
    TMP(q8, "stories-q8.gguf");
    TMP(q4k, "stories-q4k.gguf");
    st = convert(ctx, src, q8, "q8_0", 0, &r);
    CHECK(st == SQZ_OK && r.n_fallback == si.n_layers,
          "q8_0: the %d ffn_down (172 columns) fall back (counted %d)", si.n_layers, r.n_fallback);
    sqz_gguf *q;
    if (st == SQZ_OK && sqz_gguf_open(ctx, q8, &q) == SQZ_OK) {
        const sqz_gguf_tensor *dn = sqz_gguf_find_tensor(q, "blk.0.ffn_down.weight");
        const sqz_gguf_tensor *up = sqz_gguf_find_tensor(q, "blk.0.ffn_up.weight");
        CHECK(dn && dn->type == SQZ_TYPE_F16 && up && up->type == SQZ_TYPE_Q8_0,
              "q8_0: ffn_down is F16, ffn_up Q8_0");
        sqz_gguf_close(q);
    }
    remove(q8);
    st = convert(ctx, src, q4k, "q4_k", 0, &r);
    CHECK(st == SQZ_OK && r.n_fallback == 1 + 7 * si.n_layers,
          "q4_k: all %d matrices (64 or 172 columns) fall back (counted %d)", 1 + 7 * si.n_layers, r.n_fallback);
    if (st == SQZ_OK && sqz_gguf_open(ctx, q4k, &q) == SQZ_OK) {
        const sqz_gguf_tensor *dn = sqz_gguf_find_tensor(q, "blk.0.ffn_down.weight");
        const sqz_gguf_tensor *up = sqz_gguf_find_tensor(q, "blk.0.ffn_up.weight");
        CHECK(dn && dn->type == SQZ_TYPE_F16 && up && up->type == SQZ_TYPE_Q5_0,
              "q4_k: 64 columns -> Q5_0, 172 columns -> F16 (Q5_0 does not fit)");
        sqz_gguf_close(q);
        sqz_model *q4 = load(ctx, q4k, NULL);
        if (q4) {
            greedy(ctx, q4, "Once upon a time", 20, &tb);
            CHECK(tb.n > 20, "the q4_k file runs (\"%.40s...\")", tb.s);
            sqz_model_free(q4);
        }
    }
    remove(q4k);
    remove(out);
    sqz_model_free(g);
    sqz_model_free(src);
}

/* ------------------------------------------------------------------ sqz-llama-26m */

/* bytes of llamacpp.json's files[name] or not_shipped_measured[name], or -1 */
static double ref_bytes(cJSON *lj, const char *group, const char *name) {
    cJSON *e = cJSON_GetObjectItem(cJSON_GetObjectItem(lj, group), name);
    cJSON *b = cJSON_GetObjectItem(e, "bytes");
    return cJSON_IsNumber(b) ? b->valuedouble : -1;
}

static cJSON *load_llamacpp_json(void) {
    size_t len;
    char *t = ref_read_text("models/gguf/llamacpp.json", &len);
    if (!t) return NULL;
    cJSON *j = cJSON_Parse(t);
    free(t);
    return j;
}

static double perplexity(sqz_ctx *ctx, const sqz_model *m, const int32_t *ids, size_t n) {
    sqz_ppl_opts o = {.n_ctx = 1024, .max_tokens = 20 * 1024 + 1, .mode = SQZ_PPL_SQZ};
    sqz_ppl_result r;
    if (sqz_perplexity(ctx, m, ids, n, &o, &r)) {
        printf("# ppl: %s\n", sqz_ctx_error(ctx));
        return -1;
    }
    return r.ppl;
}

static void test_26m(sqz_ctx *ctx) {
    const char *hf = test_shared("models/sqz-llama-26m/config.json");
    const char *pure = test_shared("models/gguf/sqz-llama-26m-Q4_0-pure.gguf");
    if (!hf || !pure) { SKIP("sqz-llama-26m or its llama.cpp files missing"); return; }
    char hf_dir[4096], pure_path[4096];
    snprintf(pure_path, sizeof pure_path, "%s", pure);
    snprintf(hf_dir, sizeof hf_dir, "%s", test_shared("models/sqz-llama-26m"));
    cJSON *lj = load_llamacpp_json();
    cJSON *ref = ref_load("sqz-llama-26m");
    sqz_model *m = load(ctx, hf_dir, NULL);
    if (!m || !lj || !ref) goto out;
    char what[256];

    /* q4_0: llama.cpp's Q4_0-pure byte for byte, with 1 and 2 threads */
    TMP(q40, "26m-q4_0.gguf");
    for (int threads = 1; threads <= 2; threads++) {
        sqz_ctx_set_threads(ctx, threads);
        sqz_convert_result r;
        sqz_status st = convert(ctx, m, q40, "q4_0", 0, &r);
        CHECK(st == SQZ_OK, "26m -> q4_0 with %d thread(s) in %.2f s %s", threads, r.seconds, err(ctx, st));
        if (st) continue;
        if (threads == 1) {
            int d = gguf_diff(ctx, q40, pure_path, NULL, 1, what, sizeof what);
            CHECK(d == 0, "q4_0: every metadata key and value, every tensor's name, type, shape and bytes as llama.cpp's Q4_0-pure (%d differences; first: %s)", d, what);
            CHECK(r.file_bytes == (uint64_t)ref_bytes(lj, "files", "sqz-llama-26m-Q4_0-pure.gguf") &&
                      r.n_tensors == 74 && r.n_params == 26223104 && r.n_fallback == 0,
                  "q4_0: %llu bytes, 74 tensors, 26223104 params, no fallback", (unsigned long long)r.file_bytes);
        }
        CHECK(same_files(q40, pure_path), "q4_0 (%d thread(s)): the whole file is byte-identical to llama.cpp's", threads);
    }
    sqz_ctx_set_threads(ctx, 0);

    /* llama.cpp's own file as the source: converted to its own type, it comes out unchanged */
    sqz_model *lp = load(ctx, pure_path, NULL);
    if (lp) {
        TMP(again, "26m-q4_0-again.gguf");
        CHECK(convert(ctx, lp, again, "q4_0", 0, NULL) == SQZ_OK && same_files(again, pure_path),
              "llama.cpp's Q4_0-pure file converted to q4_0 comes out byte-identical");
        remove(again);
        sqz_model_free(lp);
    }

    /* the mixes: types and metadata as llama.cpp's imatrix files, sizes as its no-imatrix files */
    const struct { const char *type, *file, *unshipped; } mixes[] = {
        { "q4_k_m", "models/gguf/sqz-llama-26m-Q4_K_M-imatrix.gguf", "Q4_K_M" },
        { "q2_k", "models/gguf/sqz-llama-26m-Q2_K-imatrix.gguf", "Q2_K" },
        /* no file to compare with: the sizes llama.cpp measured for its no-imatrix files */
        { "q3_k_m", NULL, "Q3_K_M" },
        { "q5_k_m", NULL, "Q5_K_M" },
        { "q6_k", NULL, "Q6_K" },
    };
    for (size_t i = 0; i < sizeof mixes / sizeof *mixes; i++) {
        if (!mixes[i].file && test_quick()) continue;
        const char *theirs = mixes[i].file ? test_shared(mixes[i].file) : NULL;
        if (mixes[i].file && !theirs) { SKIP("%s missing", mixes[i].file); continue; }
        char tp[4096];
        snprintf(tp, sizeof tp, "%s", theirs ? theirs : "");
        TMP(ours, "26m-mix.gguf");
        sqz_convert_result r;
        sqz_status st = convert(ctx, m, ours, mixes[i].type, 0, &r);
        CHECK(st == SQZ_OK, "26m -> %s in %.2f s %s", mixes[i].type, r.seconds, err(ctx, st));
        if (st) continue;
        if (theirs) {
            int d = gguf_diff(ctx, ours, tp, "quantize.imatrix.", 0, what, sizeof what);
            CHECK(d == 0, "%s: every tensor's name, type and shape and all metadata (but quantize.imatrix.*) as llama.cpp's (%d differences; first: %s)",
                  mixes[i].type, d, what);
        }
        double want = ref_bytes(lj, "not_shipped_measured", mixes[i].unshipped);
        CHECK(want > 0 && r.file_bytes == (uint64_t)want, "%s: %llu bytes, as llama.cpp's %s without imatrix (%.0f)",
              mixes[i].type, (unsigned long long)r.file_bytes, mixes[i].unshipped, want);
        remove(ours);
    }

    /* HF -> f16 GGUF -> load: logits, perplexity; then f16 GGUF -> q8_0 */
    TMP(f16, "26m-f16.gguf");
    TMP(q8, "26m-q8_0.gguf");
    sqz_convert_result r;
    sqz_status st = convert(ctx, m, f16, "f16", 0, &r);
    CHECK(st == SQZ_OK && r.file_bytes == (uint64_t)ref_bytes(lj, "not_shipped_measured", "F16"),
          "26m -> f16: %llu bytes, as llama.cpp's F16 GGUF", (unsigned long long)r.file_bytes);
    sqz_model *mf = st ? NULL : load(ctx, f16, NULL);
    sqz_model *mq = NULL;
    if (mf) {
        st = convert(ctx, mf, q8, "q8_0", 0, &r);
        CHECK(st == SQZ_OK && r.file_bytes == (uint64_t)ref_bytes(lj, "not_shipped_measured", "Q8_0"),
              "f16 GGUF -> q8_0: %llu bytes, as llama.cpp's Q8_0", (unsigned long long)r.file_bytes);
        TMP(q40b, "26m-q4_0-from-f16.gguf");
        CHECK(convert(ctx, mf, q40b, "q4_0", 0, NULL) == SQZ_OK && same_files(q40b, pure_path),
              "f16 GGUF -> q4_0 is llama.cpp's Q4_0-pure byte for byte (llama-quantize's own path)");
        remove(q40b);
        mq = st ? NULL : load(ctx, q8, NULL);
    }
    const char *prompt = cJSON_GetObjectItem(ref, "prompt")->valuestring;
    int32_t *ids = NULL;
    size_t n = 0;
    sqz_tokenize(ctx, m, prompt, strlen(prompt), -1, &ids, &n);
    if (mf && mq && n) {
        const size_t V = 4096;
        int32_t *ids2;
        size_t n2;
        sqz_tokenize(ctx, mf, prompt, strlen(prompt), -1, &ids2, &n2);
        CHECK(n2 == n && !memcmp(ids, ids2, n * sizeof *ids), "the f16 GGUF's tokenizer gives the prompt's ids");
        sqz_free(ids2);
        float *lh = logits_all(ctx, m, ids, n), *lf = logits_all(ctx, mf, ids, n),
              *lq = logits_all(ctx, mq, ids, n);
        if (lh && lf && lq) {
            double dfh = max_abs_diff(lf, lh, n * V), dqh = max_abs_diff(lq, lh, n * V);
            CHECK(dfh <= 1e-3, "f16 GGUF logits (RoPE rows permuted) = the HF folder's at every position and token (max diff %.2e)", dfh);
            double mq = 0;
            for (size_t i = 0; i < n * V; i++) mq += fabs((double)lq[i] - lh[i]);
            mq /= (double)(n * V);
            CHECK(dqh <= 0.3 && mq <= 0.05, "q8_0 GGUF logits close to the HF folder's (max diff %.3f, mean %.4f)", dqh, mq);
            cJSON *per_pos = cJSON_GetObjectItem(ref, "logits_first8_each_pos");
            double e = 0;
            for (size_t p = 0; p < n; p++)
                for (int i = 0; i < 8; i++) {
                    double d = fabs(lf[p * V + i] - cJSON_GetArrayItem(cJSON_GetArrayItem(per_pos, (int)p), i)->valuedouble);
                    if (d > e) e = d;
                }
            CHECK(e <= 1e-3, "f16 GGUF: first 8 logits at every position within 1e-3 of PyTorch's (max %.2e)", e);
            int top_same = 0;
            for (size_t p = 0; p < n; p++) {
                size_t a = 0, b = 0;
                for (size_t i = 1; i < V; i++) {
                    if (lh[p * V + i] > lh[p * V + a]) a = i;
                    if (lq[p * V + i] > lq[p * V + b]) b = i;
                }
                top_same += a == b;
            }
            /* one near tie (0.008 apart) may flip */
            CHECK(top_same >= (int)n - 1, "q8_0 GGUF: the HF folder's top token at %d of %zu positions", top_same, n);
        }
        free(lh);
        free(lf);
        free(lq);
    }
    if (test_quick()) {
        SKIP("perplexity of the converted files (SQZ_QUICK)");
    } else if (mf && mq) {
        size_t len;
        char *text = ref_read_text("data/domains/sotu.test.txt", &len);
        int32_t *toks = NULL;
        size_t nt = 0;
        if (text && sqz_tokenize(ctx, m, text, len, 0, &toks, &nt) == SQZ_OK) {
            double ph = perplexity(ctx, m, toks, nt), pf = perplexity(ctx, mf, toks, nt),
                   pq = perplexity(ctx, mq, toks, nt);
            double want = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "ppl_short"), "sotu")->valuedouble;
            printf("# sotu ppl, 20480 tokens at n_ctx 1024: HF %.4f, f16 GGUF %.4f, q8_0 GGUF %.4f, PyTorch %.4f\n",
                   ph, pf, pq, want);
            CHECK_CLOSE(ph, want, 0, 1e-3, "HF folder's ppl %.4f = reference.json ppl_short.sotu", ph);
            CHECK_CLOSE(pf, ph, 0, 5e-4, "f16 GGUF ppl %.4f within 0.05%% of the HF folder's %.4f", pf, ph);
            CHECK_CLOSE(pq, pf, 0, 5e-3, "q8_0 GGUF ppl %.4f within 0.5%% of the f16 GGUF's %.4f", pq, pf);
        } else {
            SKIP("data/domains/sotu.test.txt missing");
        }
        sqz_free(toks);
        free(text);
    }
    sqz_free(ids);
    sqz_model_free(mq);
    sqz_model_free(mf);
    remove(f16);
    remove(q8);
    remove(q40);
out:
    sqz_model_free(m);
    cJSON_Delete(lj);
    cJSON_Delete(ref);
}

/* ------------------------------------------------------------------ streaming */

/* The SHA-256 of a file as 64 hex digits (sha256sum), "" when it cannot be computed. */
static const char *sha256(const char *path) {
    static char hex[65];
    char cmd[700];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    hex[0] = 0;
    FILE *f = popen(cmd, "r");
    if (f) {
        if (fscanf(f, "%64s", hex) != 1) hex[0] = 0;
        pclose(f);
    }
    return hex;
}

/* A line of /proc/self/status ("VmHWM", "VmRSS") in KiB, or -1. */
static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(key);
    while (f && kb < 0 && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') kb = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return kb;
}

/* AddressSanitizer keeps freed memory in quarantine (and adds shadow memory): peak RSS says
 * nothing about the library then. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Resets VmHWM to the current RSS (Linux >= 4.0); 0 when it cannot. */
static int reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return 0;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* The streamed writer's files against the files sqz wrote before it streamed (the whole file
 * held until one write at the end): their SHA-256s, made from sqz-llama-26m / 14m with the
 * commit before streaming (abe310b) by `sqz convert ../shared/models/sqz-llama-26m -o X
 * --type T` and `sha256sum X`; q4_0 needs no hash: it is llama.cpp's own file (test_26m). Each
 * is written with the default slab and with slabs of a few rows (Q/K slabs then hold one head,
 * and the token embedding spans hundreds of slabs). Then failures half-way leave nothing, the
 * source pages read are given back (peak memory), and the model reads the same afterwards. */
static void test_stream(sqz_ctx *ctx) {
    const char *hf = test_shared("models/sqz-llama-26m/config.json");
    const char *pure = test_shared("models/gguf/sqz-llama-26m-Q4_0-pure.gguf");
    if (!hf || !pure) { SKIP("sqz-llama-26m or its llama.cpp files missing"); return; }
    char dir26[4096], dir14[4096], pure_path[4096];
    snprintf(pure_path, sizeof pure_path, "%s", pure);
    snprintf(dir26, sizeof dir26, "%s", test_shared("models/sqz-llama-26m"));
    snprintf(dir14, sizeof dir14, "%s", test_shared("models/sqz-llama-14m") ? test_shared("models/sqz-llama-14m") : "");
    static const struct { int m14; const char *type, *sha; } golden[] = {
        { 0, "f16", "1d84e35b045f097c638852dcb37cdb74899d4ca94bbf2e88c3d4dff33b9e1343" },
        { 0, "q8_0", "bfd8de65f3edf72d80468651f9728876b093179831af30efe072e288b8752fde" },
        { 0, "q4_k_m", "a656a8f8f5a54d900d37593c354416f172912046569c969240bf68d8930631e8" },
        { 1, "q4_k_m", "a52947ec5e628c7ed1dec95aa0db7234bb01798bbd035ddc06ec68f114675b50" },
        { 0, "q4_0", NULL }, /* = llama.cpp's Q4_0-pure */
    };
    sqz_model *m26 = load(ctx, dir26, NULL), *m14 = dir14[0] ? load(ctx, dir14, NULL) : NULL;
    TMP(out, "stream.gguf");
    /* the default (every tensor one slab), slabs of 195 rows (2..21 per matrix; Q's split at
     * whole heads) over 2 threads, and slabs smaller than a head (Q/K: one head each, the
     * others 39 rows) on 1 thread (each slab is one parallel region: on a busy machine 2
     * threads would wait for each other at each of them) */
    static const int64_t slabs[] = { 0, 100000, 20000 };
    for (size_t s = 0; m26 && s < sizeof slabs / sizeof *slabs; s++) {
        sqz_convert_set_slab_elems(slabs[s]);
        sqz_ctx_set_threads(ctx, s == 2 ? 1 : 2);
        time_t t0 = time(NULL);
        for (size_t i = 0; i < sizeof golden / sizeof *golden; i++) {
            const sqz_model *m = golden[i].m14 ? m14 : m26;
            if (!m) { SKIP("sqz-llama-14m missing"); continue; }
            sqz_status st = convert(ctx, m, out, golden[i].type, 0, NULL);
            const char *got = st ? "" : sha256(out);
            CHECK(st == SQZ_OK && (golden[i].sha ? !strcmp(got, golden[i].sha) : same_files(out, pure_path)),
                  "%s -> %s, slabs of %lld elements: %s %s", golden[i].m14 ? "14m" : "26m", golden[i].type,
                  (long long)slabs[s], golden[i].sha ? "the pre-streaming file's SHA-256" : "llama.cpp's file byte for byte",
                  st ? err(ctx, st) : got);
            remove(out);
        }
        printf("# slabs of %lld: %lld s\n", (long long)slabs[s], (long long)(time(NULL) - t0));
    }
    sqz_convert_set_slab_elems(0);
    sqz_ctx_set_threads(ctx, 0);
    sqz_model_free(m14);

    /* failures half-way: the disk fills up after the header (RLIMIT_FSIZE), the target is a
     * folder (the rename fails after every byte was written) */
    const char *bin = "assets/stories260K/stories260K.bin";
    sqz_model *ms = file_exists(bin) ? load(ctx, bin, NULL) : NULL;
    if (ms) {
        const int before = dir_entries(tmpdir);
        struct rlimit old;
        getrlimit(RLIMIT_FSIZE, &old);
        struct rlimit lim = old;
        lim.rlim_cur = 64 << 10; /* the header (512 tokens) fits, the f32 weights (1 MB) do not */
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        fflush(stdout); /* stdout may be a file past the limit: print nothing until restored */
        const int set = setrlimit(RLIMIT_FSIZE, &lim) == 0;
        sqz_status st = convert(ctx, ms, out, "f32", 0, NULL);
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, prev);
        if (set)
            CHECK(st == SQZ_ERR_IO && strstr(sqz_ctx_error(ctx), "write failed") && !file_exists(out) &&
                      dir_entries(tmpdir) == before,
                  "the disk filling up mid-stream: an error, no file, no temporary file: %s", err(ctx, st));
        else
            SKIP("cannot lower RLIMIT_FSIZE");
        TMP(folder, "a-folder.gguf");
        mkdir(folder, 0755);
        st = convert(ctx, ms, folder, "q8_0", 0, NULL);
        CHECK(st == SQZ_ERR_IO && strstr(sqz_ctx_error(ctx), "rename failed") && dir_entries(tmpdir) == before + 1 &&
                  dir_entries(folder) == 0,
              "a target that is a folder fails at the rename after streaming; nothing left behind: %s", err(ctx, st));
        rmdir(folder);
        sqz_model_free(ms);
    }

    /* memory: a freshly loaded model converted, its pages given back as they are read. The
     * whole-file writer held every converted tensor and touched every source page: 52 MB of
     * f16 weights + 28 MB of q8_0. Streaming holds one tensor's slab and its source pages. */
    sqz_model *fresh = load(ctx, dir26, NULL);
    if (fresh && m26 && reset_peak_rss()) {
        const long rss0 = status_kib("VmRSS");
        sqz_status st = convert(ctx, fresh, out, "q8_0", 0, NULL);
        const long hwm = status_kib("VmHWM");
        if (UNDER_ASAN)
            SKIP("peak RSS under AddressSanitizer (its quarantine keeps freed buffers resident)");
        else
            CHECK(st == SQZ_OK && rss0 > 0 && hwm - rss0 < 26 * 1024,
                  "26m (52 MB of f16) -> q8_0 (28 MB) raises the peak RSS by %.1f MiB (< 26 MiB) %s",
                  (hwm - rss0) / 1024.0, err(ctx, st));
        remove(out);
        /* the released pages load again: the model computes exactly what an untouched copy does */
        const int32_t ids[6] = { 0, 17, 300, 1200, 4000, 5 };
        float *a = logits_all(ctx, fresh, ids, 6), *b = logits_all(ctx, m26, ids, 6);
        CHECK(a && b && !memcmp(a, b, sizeof(float) * 6 * 4096),
              "after conversion gave its pages back the model's logits are bit for bit an untouched copy's");
        free(a);
        free(b);
    } else if (fresh && m26) {
        SKIP("cannot reset the peak RSS (/proc/self/clear_refs)");
    }
    sqz_model_free(fresh);
    sqz_model_free(m26);
}

/* ------------------------------------------------------------------ sqz-llama-14m: fallbacks */

static void test_14m(sqz_ctx *ctx) {
    const char *hf = test_shared("models/sqz-llama-14m/config.json");
    if (!hf) { SKIP("sqz-llama-14m missing"); return; }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_shared("models/sqz-llama-14m"));
    cJSON *ref = ref_load("sqz-llama-14m");
    sqz_model *m = load(ctx, dir, NULL);
    if (!m || !ref) goto out;
    sqz_model_info info;
    sqz_model_get_info(m, &info);
    /* the matrices with 384 (= dim, = heads * head_dim) columns: token_embd and per layer
     * q, k, v, o, gate, up; ffn_down has 1024 */
    const int want_fb = 1 + 6 * info.n_layers;
    TMP(out, "14m-q4_k.gguf");
    sqz_convert_result r;
    sqz_status st = convert(ctx, m, out, "q4_k", 0, &r);
    CHECK(st == SQZ_OK && r.n_fallback == want_fb,
          "14m -> q4_k: %d fallbacks counted (want %d) %s", r.n_fallback, want_fb, err(ctx, st));
    sqz_gguf *g;
    if (st == SQZ_OK && sqz_gguf_open(ctx, out, &g) == SQZ_OK) {
        int n_q5 = 0, n_q4k = 0, n_other = 0;
        for (size_t i = 0; i < sqz_gguf_n_tensors(g); i++) {
            const sqz_gguf_tensor *t = sqz_gguf_get_tensor(g, i);
            if (t->n_dims == 1) continue;
            if (t->type == SQZ_TYPE_Q5_0 && t->ne[0] == 384) n_q5++;
            else if (t->type == SQZ_TYPE_Q4_K && t->ne[0] == 1024) n_q4k++;
            else n_other++;
        }
        CHECK(n_q5 == want_fb && n_q4k == info.n_layers && n_other == 0,
              "q4_k: the %d matrices with 384 columns are Q5_0 (llama.cpp's fallback), the %d ffn_down Q4_K",
              n_q5, n_q4k);
        sqz_gguf_close(g);
        sqz_model *q = load(ctx, out, NULL);
        const char *prompt = cJSON_GetObjectItem(ref, "prompt")->valuestring;
        int32_t *ids = NULL;
        size_t n = 0;
        if (q && sqz_tokenize(ctx, q, prompt, strlen(prompt), -1, &ids, &n) == SQZ_OK) {
            float *lg = logits_all(ctx, q, ids, n);
            cJSON *top = cJSON_GetObjectItem(ref, "last_logits_top10");
            int best = 0;
            for (int i = 1; lg && i < info.vocab_size; i++)
                if (lg[(n - 1) * (size_t)info.vocab_size + i] > lg[(n - 1) * (size_t)info.vocab_size + best]) best = i;
            int in_top = 0;
            for (int i = 0; i < cJSON_GetArraySize(top); i++)
                in_top |= cJSON_GetArrayItem(cJSON_GetArrayItem(top, i), 0)->valueint == best;
            CHECK(lg && in_top, "the q4_k file runs: its top token at the prompt's end (%d) is in PyTorch's top 10", best);
            free(lg);
        }
        sqz_free(ids);
        sqz_model_free(q);
    }
    remove(out);
    st = convert(ctx, m, out, "q4_k_m", 0, &r);
    /* the tied token_embd gets Q8_0 by llama.cpp's output rule (not counted); the other 384-wide
     * matrices fall back */
    CHECK(st == SQZ_OK && r.n_fallback == want_fb - 1, "14m -> q4_k_m: %d fallbacks (want %d)", r.n_fallback, want_fb - 1);
    if (st == SQZ_OK && sqz_gguf_open(ctx, out, &g) == SQZ_OK) {
        const sqz_gguf_tensor *te = sqz_gguf_find_tensor(g, "token_embd.weight");
        const sqz_gguf_tensor *v0 = sqz_gguf_find_tensor(g, "blk.0.attn_v.weight");
        const sqz_gguf_tensor *v1 = sqz_gguf_find_tensor(g, "blk.1.attn_v.weight");
        const sqz_gguf_tensor *d0 = sqz_gguf_find_tensor(g, "blk.0.ffn_down.weight");
        const sqz_gguf_tensor *d1 = sqz_gguf_find_tensor(g, "blk.1.ffn_down.weight");
        CHECK(te && te->type == SQZ_TYPE_Q8_0 && v0 && v0->type == SQZ_TYPE_Q8_0 && v1 &&
                  v1->type == SQZ_TYPE_Q5_0 && d0 && d0->type == SQZ_TYPE_Q6_K && d1 && d1->type == SQZ_TYPE_Q4_K,
              "q4_k_m: token_embd Q8_0, attn_v Q6_K->Q8_0 / Q4_K->Q5_0, ffn_down (1024 wide) Q6_K / Q4_K");
        sqz_gguf_close(g);
    }
    remove(out);
out:
    sqz_model_free(m);
    cJSON_Delete(ref);
}

/* ------------------------------------------------------------------ synthetic Qwen2 / Llama+bias */

/* A deterministic pseudo-random half in [-scale, scale] (+ offset). */
static uint16_t rnd_half(uint64_t *state, float offset, float scale) {
    return sqz_f32_to_f16(offset + scale * test_frand(state));
}

/* Writes a tiny random HF model (config.json, model.safetensors in f16) into dir, with the
 * tokenizer.json of tok_src: "qwen2" (q/k/v biases, NEOX RoPE) or "llama" with attention_bias
 * (q/k/v/o biases). D 64, F 128, 2 layers, 4 heads / 2 KV heads of 16, vocab 4096, tied. */
static int write_synthetic(const char *dir, const char *arch, const char *tok_src) {
    enum { D = 64, F = 128, L = 2, H = 4, KV = 2, HD = 16, V = 4096 };
    const int qwen = !strcmp(arch, "qwen2");
    char path[700], cmd[8192];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/tokenizer.json'", dir, tok_src, dir);
    if (system(cmd) != 0) return -1;
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", \"hidden_size\": %d, "
               "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
               "\"num_key_value_heads\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 512, "
               "\"rope_theta\": %s, \"rms_norm_eps\": 1e-06, \"tie_word_embeddings\": true, "
               "\"attention_bias\": %s, \"bos_token_id\": 0, \"eos_token_id\": 1}\n",
            qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM", arch, D, F, L, H, KV, V,
            qwen ? "1000000.0" : "10000.0", qwen ? "false" : "true");
    fclose(f);
    struct { char name[96]; int rows, cols; float off, scale; } t[64];
    int n = 0;
#define T(nm, r, c, o, s) do { snprintf(t[n].name, sizeof t[n].name, "%s", nm); t[n].rows = r; t[n].cols = c; t[n].off = o; t[n].scale = s; n++; } while (0)
    T("model.embed_tokens.weight", V, D, 0, 1.0f);
    T("model.norm.weight", 0, D, 1, 0.2f);
    for (int l = 0; l < L; l++) {
        char b[96];
#define LT(suffix, r, c, o, s) do { snprintf(b, sizeof b, "model.layers.%d.%s", l, suffix); T(b, r, c, o, s); } while (0)
        LT("input_layernorm.weight", 0, D, 1, 0.2f);
        LT("self_attn.q_proj.weight", H * HD, D, 0, 0.25f);
        LT("self_attn.q_proj.bias", 0, H * HD, 0, 0.5f);
        LT("self_attn.k_proj.weight", KV * HD, D, 0, 0.25f);
        LT("self_attn.k_proj.bias", 0, KV * HD, 0, 0.5f);
        LT("self_attn.v_proj.weight", KV * HD, D, 0, 0.25f);
        LT("self_attn.v_proj.bias", 0, KV * HD, 0, 0.5f);
        LT("self_attn.o_proj.weight", D, H * HD, 0, 0.25f);
        if (!qwen) LT("self_attn.o_proj.bias", 0, D, 0, 0.1f);
        LT("post_attention_layernorm.weight", 0, D, 1, 0.2f);
        LT("mlp.gate_proj.weight", F, D, 0, 0.25f);
        LT("mlp.up_proj.weight", F, D, 0, 0.25f);
        LT("mlp.down_proj.weight", D, F, 0, 0.2f);
#undef LT
    }
#undef T
    char *hdr = malloc(1 << 16);
    size_t hl = 0, off = 0;
    hl += (size_t)snprintf(hdr + hl, (1 << 16) - hl, "{");
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols * 2;
        if (t[i].rows)
            hl += (size_t)snprintf(hdr + hl, (1 << 16) - hl, "%s\"%s\":{\"dtype\":\"F16\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                                   i ? "," : "", t[i].name, t[i].rows, t[i].cols, off, off + bytes);
        else
            hl += (size_t)snprintf(hdr + hl, (1 << 16) - hl, "%s\"%s\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                                   i ? "," : "", t[i].name, t[i].cols, off, off + bytes);
        off += bytes;
    }
    hl += (size_t)snprintf(hdr + hl, (1 << 16) - hl, "}");
    while (hl % 8) hdr[hl++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    if (!f) { free(hdr); return -1; }
    uint64_t hl64 = hl;
    fwrite(&hl64, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    uint64_t state = 12345;
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols;
        for (size_t k = 0; k < cnt; k++) {
            uint16_t h = rnd_half(&state, t[i].off, t[i].scale);
            fwrite(&h, 2, 1, f);
        }
    }
    free(hdr);
    return fclose(f) == 0 ? 0 : -1;
}

static void test_synthetic(sqz_ctx *ctx, const char *arch) {
    const char *tok = test_shared("models/sqz-llama-26m/tokenizer.json");
    if (!tok) { SKIP("no tokenizer.json to build a synthetic %s model with", arch); return; }
    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s", tok);
    TMP(dir, "synthetic");
    TMP(out, "synthetic.gguf");
    if (write_synthetic(dir, arch, tok_path) != 0) { CHECK(0, "write a synthetic %s model", arch); return; }
    const int qwen = !strcmp(arch, "qwen2");
    sqz_model *m = load(ctx, dir, NULL);
    sqz_model *g = NULL;
    sqz_gguf *gf = NULL;
    if (!m) goto out;
    sqz_status st = convert(ctx, m, out, "f32", 0, NULL);
    CHECK(st == SQZ_OK, "synthetic %s -> f32 GGUF %s", arch, err(ctx, st));
    if (st || sqz_gguf_open(ctx, out, &gf)) goto out;
    size_t len;
    const char *a = NULL;
    sqz_gguf_get_str(ctx, gf, "general.architecture", &a, &len);
    int keys_ok = a && len == strlen(arch) && !memcmp(a, arch, len) &&
                  sqz_gguf_find_key(gf, qwen ? "qwen2.block_count" : "llama.block_count") >= 0 &&
                  (sqz_gguf_find_key(gf, "qwen2.vocab_size") >= 0) == 0 &&
                  (sqz_gguf_find_key(gf, "llama.vocab_size") >= 0) == !qwen;
    CHECK(keys_ok, "%s: general.architecture and %s.* keys (vocab_size only for llama)", arch, arch);
    const sqz_gguf_tensor *qb = sqz_gguf_find_tensor(gf, "blk.1.attn_q.bias");
    const sqz_gguf_tensor *ob = sqz_gguf_find_tensor(gf, "blk.1.attn_output.bias");
    const sqz_gguf_tensor *q0 = sqz_gguf_find_tensor(gf, "blk.0.attn_q.weight");
    CHECK(qb && qb->type == SQZ_TYPE_F32 && qb->n_dims == 1 && (ob != NULL) == !qwen,
          "%s: q/k/v biases written as 1-D f32%s", arch, qwen ? "" : ", and the output bias");
    /* the rows of attn_q: qwen2 keeps HF's order, llama interleaves each head's halves */
    const sqz_tensor *wq = &m->layers[0].wq;
    int perm_ok = q0 && q0->type == SQZ_TYPE_F32;
    float *row = malloc(sizeof(float) * (size_t)wq->cols);
    for (int64_t r = 0; perm_ok && r < wq->rows; r++) {
        int64_t hd = 16, w = r % hd, sr = qwen ? r : (r / hd) * hd + (w % 2) * (hd / 2) + w / 2;
        sqz_tensor_row_f32(wq, sr, row);
        perm_ok = !memcmp(row, (const float *)q0->data + r * wq->cols, sizeof(float) * (size_t)wq->cols);
    }
    free(row);
    CHECK(perm_ok, "%s: attn_q rows %s", arch,
          qwen ? "in HF's order (llama.cpp's qwen2 rotates NEOX-style)" : "permuted to llama.cpp's interleaved RoPE layout");
    g = load(ctx, out, NULL);
    if (!g) goto out;
    sqz_model_info gi;
    sqz_model_get_info(g, &gi);
    CHECK(gi.has_qkv_bias && gi.rope_interleaved == !qwen && !strcmp(gi.arch, qwen ? "qwen2" : "llama"),
          "%s GGUF loads as %s with biases, %s RoPE pairs", arch, gi.arch, qwen ? "HF" : "interleaved");
    int32_t ids[12] = {0, 5, 99, 1000, 4095, 17, 17, 300, 2000, 3, 8, 1234};
    float *la = logits_all(ctx, m, ids, 12), *lb = logits_all(ctx, g, ids, 12);
    double d = la && lb ? max_abs_diff(la, lb, 12 * 4096) : 1e9;
    CHECK(d <= 1e-4, "%s: the GGUF's logits equal the HF model's at 12 positions (max diff %.2e)", arch, d);
    free(la);
    free(lb);
out:
    sqz_gguf_close(gf);
    sqz_model_free(g);
    sqz_model_free(m);
    remove(out);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
}

/* ------------------------------------------------------------------ bad input */

static void test_bad_input(sqz_ctx *ctx) {
    const char *bin = "assets/stories260K/stories260K.bin";
    if (!file_exists(bin)) { SKIP("%s missing", bin); return; }
    sqz_model *m = load(ctx, bin, NULL);
    if (!m) return;
    TMP(out, "bad.gguf");
    sqz_status st = convert(ctx, m, out, "q4_k_x", 0, NULL);
    CHECK(st == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "q4_k_x") && strstr(sqz_ctx_error(ctx), "bad.gguf") &&
              !file_exists(out),
          "an unknown type is refused, naming the type and the file: %s", sqz_ctx_error(ctx));
    CHECK(convert(ctx, m, out, NULL, 0, NULL) == SQZ_ERR_ARG && !file_exists(out), "no type is refused");
    CHECK(sqz_convert(ctx, m, out, NULL, NULL) == SQZ_ERR_ARG, "no options are refused");
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/folder/out.gguf", tmpdir);
    int before = dir_entries(tmpdir);
    st = convert(ctx, m, missing, "f32", 0, NULL);
    CHECK(st == SQZ_ERR_IO && strstr(sqz_ctx_error(ctx), "out.gguf") && dir_entries(tmpdir) == before,
          "output into a missing folder: a clean error, nothing left behind: %s", sqz_ctx_error(ctx));
    /* token_embd in its own type (llama-quantize's --token-embedding-type) */
    sqz_convert_opts eo = { .type = "q8_0", .embd_type = "q4_0" };
    sqz_model *em = sqz_convert(ctx, m, out, &eo, NULL) == SQZ_OK ? load(ctx, out, NULL) : NULL;
    sqz_tensor_info ti[2] = { { .type = "" }, { .type = "" } };
    for (size_t i = 0; em && i < sqz_model_n_tensors(em); i++) {
        sqz_tensor_info t;
        sqz_model_tensor(em, i, &t);
        if (!strcmp(t.name, "token_embd.weight")) ti[0] = t;
        if (!strcmp(t.name, "blk.0.attn_q.weight")) ti[1] = t;
    }
    CHECK(!strcmp(ti[0].type, "q4_0") && !strcmp(ti[1].type, "q8_0"), "embd_type q4_0: token_embd %s, attn_q %s",
          ti[0].type, ti[1].type);
    sqz_model_free(em);
    remove(out);
    eo.embd_type = "q9_9";
    CHECK(sqz_convert(ctx, m, out, &eo, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "q9_9") && !file_exists(out),
          "an unknown embedding type is refused: %s", sqz_ctx_error(ctx));
    sqz_model_free(m);

    /* a model without a tokenizer: the checkpoint alone in a folder */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/notok' && cp '%s' '%s/notok/m.bin'", tmpdir, bin, tmpdir);
    if (system(cmd) == 0) {
        TMP(nbin, "notok/m.bin");
        TMP(nout, "notok/out.gguf");
        TMP(ndir, "notok");
        sqz_model *nt = load(ctx, nbin, NULL);
        if (nt) {
            st = convert(ctx, nt, nout, "f32", 0, NULL);
            CHECK(st == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "tokenizer") &&
                      !file_exists(nout) && dir_entries(ndir) == 1,
                  "a model without a tokenizer is refused, nothing written: %s", sqz_ctx_error(ctx));
            sqz_model_free(nt);
        }
        remove(nbin);
        rmdir(ndir);
    }

    /* a byte-level BPE tokenizer whose pre-tokenizer llama.cpp has no name for */
    static const char json[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]},"
        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
        "\"pattern\":{\"Regex\":\"[a-z]+\"},\"behavior\":\"Isolated\"},{\"type\":\"ByteLevel\","
        "\"add_prefix_space\":false,\"use_regex\":false}]}}";
    sqz_tokenizer *tok;
    if (sqz_tokenizer_load_hf_mem(ctx, json, strlen(json), "custom.json", &tok) == SQZ_OK) {
        sqz_tok_gguf e;
        st = sqz_bpe_export(ctx, tok, 3, &e);
        CHECK(st == SQZ_ERR_UNSUPPORTED && strstr(sqz_ctx_error(ctx), "cannot express this pre-tokenizer in GGUF"),
              "a custom pre-tokenizer regex is refused: %s", sqz_ctx_error(ctx));
        if (st == SQZ_OK) sqz_tok_gguf_free(&e);
        sqz_tokenizer_free(tok);
    } else {
        CHECK(0, "custom tokenizer.json loads: %s", sqz_ctx_error(ctx));
    }
    static const char json2[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\xc4\xa0\":3},\"merges\":[[\"a\",\"b\"]]},"
        "\"added_tokens\":[{\"id\":5,\"content\":\"<|end|>\",\"special\":true},{\"id\":6,\"content\":\"<pad>\",\"special\":true},"
        "{\"id\":7,\"content\":\"hello world\",\"special\":false}],"
        "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}}";
    if (sqz_tokenizer_load_hf_mem(ctx, json2, strlen(json2), "small.json", &tok) == SQZ_OK) {
        sqz_tok_gguf e;
        st = sqz_bpe_export(ctx, tok, 10, &e);
        int ok = st == SQZ_OK && e.n_tokens == 10 && e.n_merges == 1 && !strcmp(e.pre, "gpt-2") &&
                 e.merge_lens[0] == 3 && !memcmp(e.merges[0], "a b", 3) && e.token_lens[3] == 2 &&
                 !memcmp(e.tokens[3], "\xc4\xa0", 2) && e.token_types[4] == SQZ_TOKEN_UNUSED &&
                 e.token_lens[4] == 6 && !memcmp(e.tokens[4], "[PAD4]", 6) &&
                 e.token_types[5] == SQZ_TOKEN_CONTROL && e.token_types[7] == SQZ_TOKEN_USER_DEFINED &&
                 e.token_lens[7] == 11 && !memcmp(e.tokens[7], "hello world", 11) &&
                 e.token_types[9] == SQZ_TOKEN_UNUSED && e.pad == 6;
        CHECK(ok, "BPE export: GPT-2 alphabet, holes and the padding up to the model's vocabulary as [PAD<id>] UNUSED, control 3 / user-defined 4, the pad token found");
        if (st == SQZ_OK) sqz_tok_gguf_free(&e);
        sqz_tokenizer_free(tok);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sqz-test-convert-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        CHECK(0, "mkdtemp: %s", strerror(errno));
        return test_done();
    }
    sqz_ctx *ctx = sqz_ctx_new();
    test_presets();
    test_bad_input(ctx);
    test_stories(ctx);
    test_synthetic(ctx, "qwen2");
    test_synthetic(ctx, "llama");
    test_26m(ctx);
    test_14m(ctx);
    test_stream(ctx);
    sqz_ctx_free(ctx);
    CHECK(dir_entries(tmpdir) == 0, "every temporary file was removed (%d left)", dir_entries(tmpdir));
    rmdir(tmpdir);
    return test_done();
}
