/* test_tokenizer.c - tests of the tokenizers (src/tokenizer/ files) against independent
 * numbers: the token ids and whole-file token counts that Hugging Face `tokenizers` produced
 * (reference.json of the sqz models), a literal re-implementation of llama2.c run.c's encode()
 * for tok512.bin, exact round trips on real and random text, hand-computed merges on tiny
 * tokenizer.json files, and bad files that must fail with a message naming them. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "io/file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/impl.h"
#include "test.h"

/* the context's message when st failed, "" otherwise (it may hold an older failure) */
#define ERR(st) ((st) == SQZ_OK ? "" : sqz_ctx_error(ctx))

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { return (uint32_t)(test_xorshift64(&rng_state) >> 32); }

/* decode(ids) into a malloc'ed buffer, *n bytes */
static char *decode_all(const sqz_tokenizer *tok, const int32_t *ids, size_t n_ids, size_t *n) {
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    for (size_t i = 0; i < n_ids; i++) {
        char buf[64];
        size_t l;
        int32_t prev = i ? ids[i - 1] : -1;
        if (sqz_tokenizer_decode(tok, prev, ids[i], buf, sizeof buf, &l) != SQZ_OK) {
            free(out);
            return NULL;
        }
        if (len + l + 1 > cap) {
            while (len + l + 1 > cap) cap *= 2;
            out = realloc(out, cap);
        }
        if (l > sizeof buf) { /* a long piece: ask again with room for it */
            sqz_tokenizer_decode(tok, prev, ids[i], out + len, l, &l);
        } else {
            memcpy(out + len, buf, l);
        }
        len += l;
    }
    out[len] = 0;
    *n = len;
    return out;
}

/* encode then decode: returns 1 if the text comes back byte for byte */
static int round_trips(sqz_ctx *ctx, const sqz_tokenizer *tok, const char *text, size_t len) {
    int32_t *ids;
    size_t n;
    if (sqz_tokenizer_encode(ctx, tok, text, len, 0, &ids, &n) != SQZ_OK) return 0;
    size_t dl;
    char *d = decode_all(tok, ids, n, &dl);
    int ok = d && dl == len && memcmp(d, text, len) == 0;
    free(d);
    free(ids);
    return ok;
}

static char *read_file(const char *path, size_t *len) {
    char *buf;
    if (sqz_file_read_all(NULL, path, (size_t)1 << 30, &buf, len) != SQZ_OK) return NULL;
    return buf;
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static cJSON *read_json(const char *path) {
    size_t n;
    char *s = read_file(path, &n);
    if (!s) return NULL;
    cJSON *j = cJSON_ParseWithLength(s, n);
    free(s);
    return j;
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* ---------------------------------------------------------------- the sqz models (HF BPE) */

static void test_hf_model(sqz_ctx *ctx, const char *model, int full) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/tokenizer.json", model);
    const char *tpath = test_shared(rel);
    snprintf(rel, sizeof rel, "models/%s/reference.json", model);
    const char *rpath = test_shared(rel);
    if (!tpath || !rpath) {
        SKIP("%s: not in the shared folder", model);
        return;
    }
    sqz_tokenizer *tok = NULL;
    sqz_status st = sqz_tokenizer_load_hf(ctx, tpath, &tok);
    CHECK(st == SQZ_OK, "%s: load tokenizer.json (%s)", model, ERR(st));
    cJSON *ref = read_json(rpath);
    CHECK(ref != NULL, "%s: read reference.json", model);
    if (!tok || !ref) {
        sqz_tokenizer_free(tok);
        cJSON_Delete(ref);
        return;
    }
    CHECK(strcmp(sqz_tokenizer_kind(tok), "bpe") == 0, "%s: kind bpe", model);
    CHECK(sqz_tokenizer_vocab_size(tok) == 4096, "%s: vocab 4096 (got %d)", model,
          sqz_tokenizer_vocab_size(tok));
    CHECK(sqz_tokenizer_add_bos(tok) == 0 && sqz_tokenizer_bos(tok) == -1,
          "%s: no post_processor: no BOS asked", model);

    /* the prompt */
    const cJSON *prompt = cJSON_GetObjectItem(ref, "prompt");
    const cJSON *pids = cJSON_GetObjectItem(ref, "prompt_ids");
    int32_t *ids = NULL;
    size_t n = 0;
    if (cJSON_IsString(prompt) && cJSON_IsArray(pids)) {
        st = sqz_tokenizer_encode(ctx, tok, prompt->valuestring, strlen(prompt->valuestring), -1,
                                  &ids, &n);
        int same = st == SQZ_OK && n == (size_t)cJSON_GetArraySize(pids);
        for (size_t i = 0; same && i < n; i++)
            same = ids[i] == cJSON_GetArrayItem(pids, (int)i)->valueint;
        CHECK(same, "%s: prompt \"%s\" encodes to reference prompt_ids (%zu tokens)", model,
              prompt->valuestring, n);
        free(ids);
    } else {
        CHECK(0, "%s: reference.json has prompt and prompt_ids", model);
    }

    /* whole files: counts from Hugging Face tokenizers, and exact round trips */
    static const struct { const char *key, *file; } files[] = {
        {"sotu", "data/domains/sotu.test.txt"},
        {"moby", "data/domains/moby.test.txt"},
        {"mail", "data/domains/mail.test.txt"},
        {"wikitext2", "data/wikitext-2/wiki.test.raw"},
    };
    const cJSON *ppl_tokens = cJSON_GetObjectItem(ref, "ppl_tokens");
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        const char *path = test_shared(files[f].file);
        const cJSON *pt = cJSON_GetObjectItem(ppl_tokens, files[f].key);
        if (!path || !cJSON_IsNumber(pt)) {
            SKIP("%s: %s or its reference count missing", model, files[f].file);
            continue;
        }
        if (!full && strcmp(files[f].key, "moby") != 0) continue;
        size_t len;
        char *text = read_file(path, &len);
        if (!text) {
            CHECK(0, "%s: read %s", model, path);
            continue;
        }
        double t0 = sqz_now();
        st = sqz_tokenizer_encode(ctx, tok, text, len, 0, &ids, &n);
        double dt = sqz_now() - t0;
        CHECK(st == SQZ_OK, "%s: encode %s (%s)", model, files[f].file, ERR(st));
        if (st != SQZ_OK) {
            free(text);
            continue;
        }
        /* ppl_tokens = tokens - 1, capped at 200000 tokens */
        long want = (long)pt->valuedouble + 1;
        if (want < 200000)
            CHECK((long)n == want, "%s: %s encodes to %ld tokens as Hugging Face (got %zu)",
                  model, files[f].key, want, n);
        else
            CHECK(n >= 200000, "%s: %s has at least 200000 tokens (got %zu)", model,
                  files[f].key, n);
        if (strcmp(files[f].key, "wikitext2") == 0)
            printf("# %s: encoding wiki.test.raw (%zu bytes) took %.1f ms: %zu tokens, %.1f MB/s\n",
                   model, len, dt * 1e3, n, len / dt / 1e6);
        size_t dl;
        char *d = decode_all(tok, ids, n, &dl);
        CHECK(d && dl == len && memcmp(d, text, len) == 0, "%s: %s decodes back exactly", model,
              files[f].key);
        free(d);
        free(ids);
        free(text);
    }

    /* random bytes (mostly invalid UTF-8) and random UTF-8: never a byte lost */
    int ok = 1;
    char buf[512];
    for (int it = 0; it < 300 && ok; it++) {
        size_t len = rnd() % 300;
        for (size_t i = 0; i < len; i++) {
            uint32_t r = rnd();
            switch (it % 3) {
            case 0: buf[i] = (char)r; break;                                /* any byte */
            case 1: buf[i] = " \t\n\r'sa1.\xc3\xa9\xe2\x82\xac\xf0"[r % 16]; break; /* mix */
            default: buf[i] = (char)(r % 2 ? 'a' + r % 26 : 0x80 + r % 64); break;
            }
        }
        ok = round_trips(ctx, tok, buf, len);
        if (!ok) printf("# failed on random string %d (%zu bytes)\n", it, len);
    }
    CHECK(ok, "%s: decode(encode(x)) == x for 300 random byte strings", model);
    static const char *odd[] = {"", " ", "  ", "\n\n\n", "'s", "'S", "a\xff", "\xff\xfe a",
                                "x \xe2\x82", "\xc3", "naïve café ☃ 日本語 🤖", "   trailing   ",
                                "don't we'll I'M", "12345 3.14159", "\t\tx\r\n"};
    ok = 1;
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
        if (!round_trips(ctx, tok, odd[i], strlen(odd[i]))) {
            ok = 0;
            printf("# failed on \"%s\"\n", odd[i]);
        }
    CHECK(ok, "%s: round trip of edge-case strings", model);

    /* special tokens: matched in raw text, their ids, decode to nothing */
    const char *sp = "<|bos|>Hello<|eos|> world<|pad|><|bos";
    st = sqz_tokenizer_encode(ctx, tok, sp, strlen(sp), 0, &ids, &n);
    int has = st == SQZ_OK && n > 4 && ids[0] == 0;
    int n_special = 0;
    for (size_t i = 0; has && i < n; i++) n_special += ids[i] <= 2;
    CHECK(has && n_special == 3, "%s: <|bos|> <|eos|> <|pad|> in text are their ids", model);
    size_t dl;
    char *d = st == SQZ_OK ? decode_all(tok, ids, n, &dl) : NULL;
    CHECK(d && strcmp(d, "Hello world<|bos") == 0, "%s: special tokens decode to nothing (%s)",
          model, d ? d : "?");
    free(d);
    free(ids);

    /* BOS from config.json */
    sqz_tokenizer_set_special(tok, 0, 1);
    CHECK(sqz_tokenizer_bos(tok) == 0 && sqz_tokenizer_eos(tok) == 1, "%s: set_special", model);
    st = sqz_tokenizer_encode(ctx, tok, "Hi", 2, 1, &ids, &n);
    CHECK(st == SQZ_OK && n >= 2 && ids[0] == 0, "%s: add_bos = 1 prepends BOS", model);
    free(ids);
    st = sqz_tokenizer_encode(ctx, tok, "", 0, 0, &ids, &n);
    CHECK(st == SQZ_OK && n == 0 && ids != NULL, "%s: empty text, no tokens", model);
    free(ids);
    char b1[4];
    size_t l1;
    CHECK(sqz_tokenizer_decode(tok, -1, 4096, b1, sizeof b1, &l1) == SQZ_ERR_RANGE,
          "%s: decode of id past the vocabulary is an error", model);
    cJSON_Delete(ref);
    sqz_tokenizer_free(tok);
}

/* ---------------------------------------------------------------- built from arrays (GGUF) */

/* The sqz-llama-26m tokenizer rebuilt as a GGUF loader would (token strings, token types 1/3,
 * merges as "left right" strings, pre-tokenizer "gpt-2"): same ids as Hugging Face. */
static void test_from_arrays(sqz_ctx *ctx) {
    const char *tpath = test_shared("models/sqz-llama-26m/tokenizer.json");
    const char *rpath = test_shared("models/sqz-llama-26m/reference.json");
    const char *mpath = test_shared("data/domains/moby.test.txt");
    if (!tpath || !rpath || !mpath) {
        SKIP("sqz-llama-26m or moby not in the shared folder");
        return;
    }
    cJSON *tj = read_json(tpath), *ref = read_json(rpath);
    const cJSON *model = cJSON_GetObjectItem(tj, "model");
    const cJSON *vocab = cJSON_GetObjectItem(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItem(model, "merges"), *it;
    int n = cJSON_GetArraySize(vocab), n_merges = cJSON_GetArraySize(merges);
    const char **tokens = calloc((size_t)n, sizeof *tokens);
    int32_t *types = calloc((size_t)n, sizeof *types);
    char **mstr = calloc((size_t)n_merges, sizeof *mstr);
    cJSON_ArrayForEach(it, vocab) {
        tokens[it->valueint] = it->string;
        types[it->valueint] = SQZ_TOKEN_NORMAL;
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(tj, "added_tokens"))
        types[cJSON_GetObjectItem(it, "id")->valueint] = SQZ_TOKEN_CONTROL;
    int m = 0;
    cJSON_ArrayForEach(it, merges) {
        const char *l = cJSON_GetArrayItem(it, 0)->valuestring;
        const char *r = cJSON_GetArrayItem(it, 1)->valuestring;
        mstr[m] = malloc(strlen(l) + strlen(r) + 2);
        sprintf(mstr[m++], "%s %s", l, r);
    }
    sqz_bpe_split split = {SQZ_BPE_RE_GPT2, 0};
    sqz_bpe_spec spec = {.name = "arrays", .n_tokens = n, .tokens = tokens, .token_types = types,
                         .n_merges = n_merges, .merges = (const char *const *)mstr,
                         .n_splits = 1, .splits = &split, .unk_id = -1, .bos = 0, .eos = 1};
    sqz_tokenizer *tok = NULL;
    sqz_status st = sqz_tokenizer_new_bpe(ctx, &spec, &tok);
    CHECK(st == SQZ_OK && tok, "sqz-llama-26m from arrays: builds (%s)", ERR(st));
    size_t len;
    char *text = read_file(mpath, &len);
    const cJSON *want = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "ppl_tokens"), "moby");
    if (tok && text && cJSON_IsNumber(want)) {
        int32_t *ids;
        size_t n_ids;
        st = sqz_tokenizer_encode(ctx, tok, text, len, -1, &ids, &n_ids);
        CHECK(st == SQZ_OK && (long)n_ids == (long)want->valuedouble + 1,
              "sqz-llama-26m from arrays: moby encodes to %ld tokens (got %zu)",
              (long)want->valuedouble + 1, n_ids);
        size_t dl;
        char *d = st == SQZ_OK ? decode_all(tok, ids, n_ids, &dl) : NULL;
        CHECK(d && dl == len && memcmp(d, text, len) == 0,
              "sqz-llama-26m from arrays: moby decodes back exactly");
        free(d);
        if (st == SQZ_OK) free(ids);
        st = sqz_tokenizer_encode(ctx, tok, "<|bos|>hi<|eos|>", 16, 0, &ids, &n_ids);
        CHECK(st == SQZ_OK && n_ids >= 3 && ids[0] == 0 && ids[n_ids - 1] == 1 &&
                  sqz_tokenizer_bos(tok) == 0 && sqz_tokenizer_eos(tok) == 1,
              "sqz-llama-26m from arrays: control tokens split the text, BOS 0, EOS 1");
        if (st == SQZ_OK) free(ids);
    }
    free(text);
    for (int i = 0; i < m; i++) free(mstr[i]);
    free(mstr);
    free(tokens);
    free(types);
    cJSON_Delete(tj);
    cJSON_Delete(ref);
    sqz_tokenizer_free(tok);
}

/* ---------------------------------------------------------------- tiny tokenizer.json files */

/* GPT-2's byte -> code point map, written out here independently of the library */
static void put_byte_char(char *out, size_t *k, int b) {
    int n = 0, cp = -1;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || c >= 0xae;
        if (c == b) { cp = printable ? c : 256 + n; break; }
        if (!printable) n++;
    }
    if (cp == '"' || cp == '\\') {
        out[(*k)++] = '\\';
        out[(*k)++] = (char)cp;
    } else if (cp < 0x80) {
        out[(*k)++] = (char)cp;
    } else {
        out[(*k)++] = (char)(0xc0 | cp >> 6);
        out[(*k)++] = (char)(0x80 | (cp & 0x3f));
    }
}

/* A tokenizer.json with the 256 byte tokens (ids 0-255), extra tokens 256.. made by the merges
 * (each merge "a b" given as plain ASCII without spaces; '_' stands for the space byte),
 * added tokens (ids after those) and the given pre_tokenizer / post_processor JSON. */
static char *tiny_json(const char *const *merges, int n_merges, const char *added,
                       const char *pretok, const char *post, int merges_as_pairs) {
    size_t cap = 1 << 16, k = 0;
    char *s = malloc(cap);
    k += (size_t)snprintf(s + k, cap - k, "{\"version\":\"1.0\",\"added_tokens\":[%s],"
                          "\"normalizer\":null,\"pre_tokenizer\":%s,\"post_processor\":%s,"
                          "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\","
                          "\"vocab\":{", added, pretok, post);
    for (int b = 0; b < 256; b++) {
        s[k++] = '"';
        put_byte_char(s, &k, b);
        k += (size_t)snprintf(s + k, cap - k, "\":%d,", b);
    }
    for (int m = 0; m < n_merges; m++) {
        s[k++] = '"';
        for (const char *p = merges[m]; *p; p++)
            if (*p != ' ') put_byte_char(s, &k, *p == '_' ? ' ' : *p);
        k += (size_t)snprintf(s + k, cap - k, "\":%d,", 256 + m);
    }
    k--; /* the last comma */
    k += (size_t)snprintf(s + k, cap - k, "},\"merges\":[");
    for (int m = 0; m < n_merges; m++) {
        s[k++] = merges_as_pairs ? '[' : '"';
        if (merges_as_pairs) s[k++] = '"';
        for (const char *p = merges[m]; *p; p++) {
            if (*p == ' ') {
                if (merges_as_pairs) { memcpy(s + k, "\",\"", 3); k += 3; }
                else s[k++] = ' ';
            } else {
                put_byte_char(s, &k, *p == '_' ? ' ' : *p);
            }
        }
        k += (size_t)snprintf(s + k, cap - k, "%s%s", merges_as_pairs ? "\"]" : "\"",
                              m + 1 < n_merges ? "," : "");
    }
    k += (size_t)snprintf(s + k, cap - k, "]}}");
    return s;
}

static sqz_tokenizer *tiny(sqz_ctx *ctx, const char *const *merges, int n_merges,
                           const char *added, const char *pretok, const char *post, int pairs,
                           sqz_status *st) {
    char *json = tiny_json(merges, n_merges, added, pretok, post, pairs);
    sqz_tokenizer *tok = NULL;
    *st = sqz_tokenizer_load_hf_mem(ctx, json, strlen(json), "tiny.json", &tok);
    free(json);
    return tok;
}

static int encodes_to(sqz_ctx *ctx, const sqz_tokenizer *tok, const char *text, int add_bos,
                      const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n;
    if (sqz_tokenizer_encode(ctx, tok, text, strlen(text), add_bos, &ids, &n) != SQZ_OK)
        return 0;
    int ok = ids_equal(ids, n, want, n_want);
    if (!ok) {
        printf("#   \"%s\" ->", text);
        for (size_t i = 0; i < n; i++) printf(" %d", ids[i]);
        printf("\n");
    }
    free(ids);
    return ok;
}

#define GPT2_PRETOK "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"
#define LLAMA3_PRETOK                                                                      \
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":" \
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "   \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"   \
    "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":" \
    "false,\"trim_offsets\":true,\"use_regex\":false}]}"
#define BOS_POST                                                                           \
    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","      \
    "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],"            \
    "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[300],\"tokens\":[\"<s>\"]}}}"

static void test_tiny(sqz_ctx *ctx) {
    /* ids: 256 "3 4", 257 "1 2", 258 "12 3", 259 "4 5", 260 "_ t", 261 "h e", 262 "_t he" */
    static const char *const merges[] = {"3 4", "1 2", "12 3", "4 5", "_ t", "h e", "_t he"};
    const char *added =
        "{\"id\":300,\"content\":\"<s>\",\"special\":true},"
        "{\"id\":301,\"content\":\"<sep>\",\"special\":false},"
        "{\"id\":302,\"content\":\"<sepsep>\",\"special\":true}";
    sqz_status st;
    for (int pairs = 0; pairs < 2; pairs++) {
        sqz_tokenizer *tok = tiny(ctx, merges, 7, added, GPT2_PRETOK, "null", pairs, &st);
        CHECK(st == SQZ_OK && tok, "tiny GPT-2 style, merges as %s: loads (%s)",
              pairs ? "pairs" : "strings", ERR(st));
        if (!tok) continue;
        CHECK(sqz_tokenizer_vocab_size(tok) == 303, "tiny: vocab 303");
        /* "12345" is one piece under the GPT-2 regex: 3+4 (rank 0) first, then 1+2 */
        CHECK(encodes_to(ctx, tok, "12345", 0, (int32_t[]){257, 256, '5'}, 3),
              "tiny GPT-2: 12345 -> [12, 34, 5] by merge rank");
        CHECK(encodes_to(ctx, tok, " the", 0, (int32_t[]){262}, 1), "tiny GPT-2: \" the\" -> 1");
        CHECK(encodes_to(ctx, tok, "the the", 0, (int32_t[]){'t', 261, 262}, 3),
              "tiny GPT-2: \"the the\" -> t he ' the'");
        /* added tokens: longest match first, special decodes to nothing, non-special as is */
        CHECK(encodes_to(ctx, tok, "a<sepsep>b<sep><s>", 0,
                         (int32_t[]){'a', 302, 'b', 301, 300}, 5),
              "tiny: added tokens split the text, longest first");
        int32_t *ids;
        size_t n, dl;
        st = sqz_tokenizer_encode(ctx, tok, "x<sep>y<s>z", 11, 0, &ids, &n);
        char *d = st == SQZ_OK ? decode_all(tok, ids, n, &dl) : NULL;
        CHECK(d && strcmp(d, "x<sep>yz") == 0, "tiny: decode: non-special added kept, special "
              "dropped (%s)", d ? d : "?");
        free(d);
        if (st == SQZ_OK) free(ids);
        CHECK(sqz_tokenizer_add_bos(tok) == 0, "tiny: no template, no BOS");
        sqz_tokenizer_free(tok);
    }

    /* Llama-3 style: Split (digits in threes) + ByteLevel without regex; and a BOS template */
    sqz_tokenizer *tok = tiny(ctx, merges, 7, added, LLAMA3_PRETOK, BOS_POST, 0, &st);
    CHECK(st == SQZ_OK && tok, "tiny Llama-3 style loads (%s)", ERR(st));
    if (tok) {
        CHECK(sqz_tokenizer_add_bos(tok) == 1 && sqz_tokenizer_bos(tok) == 300,
              "tiny Llama-3: template asks for BOS 300");
        /* "12345" -> pieces "123" "45": [1 2 3] -> 12+3; [4 5] */
        CHECK(encodes_to(ctx, tok, "12345", -1, (int32_t[]){300, 258, 259}, 3),
              "tiny Llama-3: BOS, 12345 -> [123, 45] by the split");
        CHECK(encodes_to(ctx, tok, "12345", 0, (int32_t[]){258, 259}, 2),
              "tiny Llama-3: add_bos = 0 overrides the template");
        const char *mixed = "Hi \xff\xfe there 1234567 \n\n x";
        CHECK(round_trips(ctx, tok, mixed, strlen(mixed)),
              "tiny Llama-3: round trip with invalid UTF-8");
        sqz_tokenizer_free(tok);
    }

    /* add_prefix_space */
    tok = tiny(ctx, merges, 7, "",
               "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}", "null", 0,
               &st);
    CHECK(st == SQZ_OK && tok, "tiny add_prefix_space loads (%s)", ERR(st));
    if (tok) {
        CHECK(encodes_to(ctx, tok, "the", 0, (int32_t[]){262}, 1),
              "tiny add_prefix_space: \"the\" -> \" the\"");
        CHECK(encodes_to(ctx, tok, " the", 0, (int32_t[]){262}, 1),
              "tiny add_prefix_space: \" the\" gets no second space");
        sqz_tokenizer_free(tok);
    }

    /* Digits individual_digits before ByteLevel */
    tok = tiny(ctx, merges, 7, "",
               "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
               "\"individual_digits\":true},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
               "\"use_regex\":false}]}",
               "null", 0, &st);
    CHECK(st == SQZ_OK && tok, "tiny Digits loads (%s)", ERR(st));
    if (tok) {
        CHECK(encodes_to(ctx, tok, "12345", 0, (int32_t[]){'1', '2', '3', '4', '5'}, 5),
              "tiny Digits: every digit alone");
        sqz_tokenizer_free(tok);
    }

    /* refused */
    tok = tiny(ctx, merges, 7, "",
               "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
               "{\"Regex\":\"\\\\s+\"},\"behavior\":\"Removed\"},{\"type\":\"ByteLevel\","
               "\"add_prefix_space\":false,\"use_regex\":false}]}",
               "null", 0, &st);
    CHECK(st == SQZ_ERR_UNSUPPORTED && !tok && strstr(sqz_ctx_error(ctx), "tiny.json") &&
              strstr(sqz_ctx_error(ctx), "Removed"),
          "Split behavior Removed is refused as unsupported (%s)", sqz_ctx_error(ctx));
    sqz_tokenizer_free(tok);
    tok = tiny(ctx, merges, 7, "", "{\"type\":\"Whitespace\"}", "null", 0, &st);
    CHECK(st == SQZ_ERR_UNSUPPORTED && !tok, "Whitespace pre-tokenizer is refused (%s)",
          sqz_ctx_error(ctx));
    sqz_tokenizer_free(tok);
    tok = tiny(ctx, merges, 7, "", GPT2_PRETOK "x", "null", 0, &st);
    CHECK(st == SQZ_ERR_FORMAT && !tok, "malformed JSON is an error (%s)", sqz_ctx_error(ctx));
    sqz_tokenizer_free(tok);
    char *json = tiny_json(merges, 7, "", GPT2_PRETOK, "null", 0);
    size_t jl = strlen(json);
    tok = NULL;
    st = sqz_tokenizer_load_hf_mem(ctx, json, jl, "tiny.json", &tok);
    CHECK(st == SQZ_OK && tok, "load_hf_mem takes a buffer without a NUL (%s)", ERR(st));
    sqz_tokenizer_free(tok);
    tok = NULL;
    json = realloc(json, jl + 8);
    memcpy(json + jl, " \n x", 5);
    st = sqz_tokenizer_load_hf_mem(ctx, json, jl + 4, "tiny.json", &tok);
    CHECK(st == SQZ_ERR_FORMAT && !tok, "trailing garbage after the JSON is an error (%s)",
          sqz_ctx_error(ctx));
    sqz_tokenizer_free(tok);
    free(json);
}

/* ---------------------------------------------------------------- bad files */

static void expect_fail(sqz_ctx *ctx, sqz_status st, sqz_tokenizer *tok, const char *name,
                        const char *what) {
    CHECK(st != SQZ_OK && tok == NULL && strstr(sqz_ctx_error(ctx), name) != NULL,
          "%s: fails naming the file (%s: %s)", what, sqz_status_str(st), sqz_ctx_error(ctx));
    sqz_tokenizer_free(tok);
}

static void test_bad_files(sqz_ctx *ctx) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp) tmp = "/tmp";
    char path[512];
    sqz_tokenizer *tok = NULL;
    sqz_status st;
    static const struct { const char *file, *text, *what; sqz_status want; } bad[] = {
        {"sqz_tok_notjson.json", "this is not JSON {", "not JSON", SQZ_ERR_FORMAT},
        {"sqz_tok_nomodel.json", "{\"version\":\"1.0\",\"added_tokens\":[]}",
         "JSON without a model", SQZ_ERR_FORMAT},
        {"sqz_tok_array.json", "[1,2,3]", "JSON array", SQZ_ERR_FORMAT},
        {"sqz_tok_unigram.json",
         "{\"pre_tokenizer\":{\"type\":\"Metaspace\"},\"model\":{\"type\":\"Unigram\","
         "\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"a\",-1.0]]}}",
         "model.type Unigram", SQZ_ERR_UNSUPPORTED},
        {"sqz_tok_unknown_merge.json",
         "{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
         "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
         "\"merges\":[\"a b\",\"a q\"]}}",
         "merges naming unknown tokens", SQZ_ERR_FORMAT},
        {"sqz_tok_merge_result.json",
         "{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
         "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[[\"a\",\"b\"]]}}",
         "merge whose result is not a token", SQZ_ERR_FORMAT},
        {"sqz_tok_wrong_types.json",
         "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\","
         "\"vocab\":{\"a\":\"zero\"},\"merges\":[]}}",
         "vocab id that is a string", SQZ_ERR_FORMAT},
        {"sqz_tok_bad_regex.json",
         "{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
         "\"pattern\":{\"Regex\":\"(unclosed\"},\"behavior\":\"Isolated\"},"
         "{\"type\":\"ByteLevel\",\"use_regex\":false,\"add_prefix_space\":false}]},"
         "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "regex that does not compile", SQZ_ERR_UNSUPPORTED},
        {"sqz_tok_sparse.json",
         "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\","
         "\"vocab\":{\"a\":16000000},\"merges\":[]}}",
         "absurd token id", SQZ_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, bad[i].file);
        if (write_file(path, bad[i].text, strlen(bad[i].text)) != 0) {
            SKIP("cannot write %s", path);
            continue;
        }
        st = sqz_tokenizer_load_hf(ctx, path, &tok);
        expect_fail(ctx, st, tok, bad[i].file, bad[i].what);
        CHECK(st == bad[i].want, "%s: status %s", bad[i].what, sqz_status_str(st));
        tok = NULL;
        remove(path);
    }
    st = sqz_tokenizer_load_hf(ctx, "/nonexistent/sqz_tok_missing.json", &tok);
    expect_fail(ctx, st, tok, "sqz_tok_missing.json", "missing tokenizer.json");
    tok = NULL;

    /* half of a real tokenizer.json */
    const char *real = test_shared("models/sqz-llama-26m/tokenizer.json");
    size_t len;
    char *buf = real ? read_file(real, &len) : NULL;
    if (buf) {
        snprintf(path, sizeof path, "%s/sqz_tok_truncated.json", tmp);
        write_file(path, buf, len / 2);
        st = sqz_tokenizer_load_hf(ctx, path, &tok);
        expect_fail(ctx, st, tok, "sqz_tok_truncated.json", "truncated tokenizer.json");
        tok = NULL;
        remove(path);
        free(buf);
    }

    /* llama2.c tokenizer.bin */
    const char *t512 = test_shared("models/stories260K/tok512.bin");
    buf = t512 ? read_file(t512, &len) : NULL;
    if (!buf) {
        SKIP("tok512.bin not in the shared folder");
        return;
    }
    snprintf(path, sizeof path, "%s/sqz_tok_truncated.bin", tmp);
    write_file(path, buf, len - 100);
    st = sqz_tokenizer_load_llama2c(ctx, path, 512, &tok);
    expect_fail(ctx, st, tok, "sqz_tok_truncated.bin", "truncated tok512.bin");
    tok = NULL;
    write_file(path, buf, 2);
    st = sqz_tokenizer_load_llama2c(ctx, path, 512, &tok);
    expect_fail(ctx, st, tok, "sqz_tok_truncated.bin", "tok512.bin cut inside the header");
    tok = NULL;
    remove(path);
    /* token 10's length field set to 2^31 - 1 */
    size_t pos = 4;
    for (int i = 0; i < 10; i++) {
        int32_t l;
        memcpy(&l, buf + pos + 4, 4);
        pos += 8 + (size_t)l;
    }
    int32_t absurd = 0x7fffffff;
    memcpy(buf + pos + 4, &absurd, 4);
    snprintf(path, sizeof path, "%s/sqz_tok_absurd.bin", tmp);
    write_file(path, buf, len);
    st = sqz_tokenizer_load_llama2c(ctx, path, 512, &tok);
    expect_fail(ctx, st, tok, "sqz_tok_absurd.bin", "absurd token length in tok512.bin");
    tok = NULL;
    int32_t neg = -5;
    memcpy(buf + pos + 4, &neg, 4);
    write_file(path, buf, len);
    st = sqz_tokenizer_load_llama2c(ctx, path, 512, &tok);
    expect_fail(ctx, st, tok, "sqz_tok_absurd.bin", "negative token length in tok512.bin");
    tok = NULL;
    memcpy(buf, &absurd, 4);
    write_file(path, buf, len);
    st = sqz_tokenizer_load_llama2c(ctx, path, 512, &tok);
    expect_fail(ctx, st, tok, "sqz_tok_absurd.bin", "absurd max_token_length in tok512.bin");
    remove(path);
    free(buf);
}

/* ---------------------------------------------------------------- llama2.c */

/* run.c's encode(), written out literally (bsearch over the sorted vocabulary, quadratic merge
 * loop), as the reference for tok512.bin. */
typedef struct ref_piece { const char *s; int len, id; } ref_piece;
typedef struct ref_tok {
    int n;
    char **vocab;
    int *lens;
    float *scores;
    ref_piece *sorted;
} ref_tok;

static int ref_cmp(const void *a, const void *b) {
    const ref_piece *x = a, *y = b;
    int l = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, (size_t)l);
    return c ? c : x->len - y->len;
}

static int ref_lookup(const ref_tok *t, const char *s, int len) {
    ref_piece key = {s, len, 0};
    ref_piece *r = bsearch(&key, t->sorted, (size_t)t->n, sizeof key, ref_cmp);
    return r ? r->id : -1;
}

static int ref_load(ref_tok *t, const char *buf, size_t size, int n) {
    t->n = n;
    t->vocab = calloc((size_t)n, sizeof *t->vocab);
    t->lens = calloc((size_t)n, sizeof *t->lens);
    t->scores = calloc((size_t)n, sizeof *t->scores);
    t->sorted = calloc((size_t)n, sizeof *t->sorted);
    size_t pos = 4;
    for (int i = 0; i < n; i++) {
        if (pos + 8 > size) return -1;
        memcpy(&t->scores[i], buf + pos, 4);
        memcpy(&t->lens[i], buf + pos + 4, 4);
        pos += 8;
        t->vocab[i] = malloc((size_t)t->lens[i] + 1);
        memcpy(t->vocab[i], buf + pos, (size_t)t->lens[i]);
        t->vocab[i][t->lens[i]] = 0;
        pos += (size_t)t->lens[i];
        t->sorted[i] = (ref_piece){t->vocab[i], t->lens[i], i};
    }
    qsort(t->sorted, (size_t)n, sizeof *t->sorted, ref_cmp);
    return 0;
}

static void ref_free(ref_tok *t) {
    for (int i = 0; i < t->n; i++) free(t->vocab[i]);
    free(t->vocab);
    free(t->lens);
    free(t->scores);
    free(t->sorted);
}

static int ref_encode(const ref_tok *t, const char *text, int *tokens) {
    char buf[256];
    int n = 0, str_len = 0;
    tokens[n++] = 1;
    if (text[0]) tokens[n++] = ref_lookup(t, " ", 1);
    for (const char *c = text; *c; c++) {
        if ((*c & 0xC0) != 0x80) str_len = 0;
        buf[str_len++] = *c;
        buf[str_len] = 0;
        if ((*(c + 1) & 0xC0) == 0x80 && str_len < 4) continue;
        int id = ref_lookup(t, buf, str_len);
        if (id != -1) tokens[n++] = id;
        else for (int i = 0; i < str_len; i++) tokens[n++] = (unsigned char)buf[i] + 3;
        str_len = 0;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1, best_idx = -1;
        for (int i = 0; i < n - 1; i++) {
            int l = snprintf(buf, sizeof buf, "%s%s", t->vocab[tokens[i]], t->vocab[tokens[i + 1]]);
            int id = ref_lookup(t, buf, l);
            if (id != -1 && t->scores[id] > best) {
                best = t->scores[id];
                best_id = id;
                best_idx = i;
            }
        }
        if (best_idx == -1) break;
        tokens[best_idx] = best_id;
        for (int i = best_idx + 1; i < n - 1; i++) tokens[i] = tokens[i + 1];
        n--;
    }
    return n;
}

static void test_llama2c(sqz_ctx *ctx) {
    const char *path = test_shared("models/stories260K/tok512.bin");
    if (!path) {
        SKIP("stories260K/tok512.bin not in the shared folder");
        return;
    }
    sqz_tokenizer *tok = NULL;
    sqz_status st = sqz_tokenizer_load_llama2c(ctx, path, 512, &tok);
    CHECK(st == SQZ_OK, "tok512.bin loads (%s)", ERR(st));
    if (!tok) return;
    CHECK(strcmp(sqz_tokenizer_kind(tok), "llama2c") == 0 && sqz_tokenizer_vocab_size(tok) == 512
              && sqz_tokenizer_bos(tok) == 1 && sqz_tokenizer_eos(tok) == 2 &&
              sqz_tokenizer_add_bos(tok) == 1,
          "tok512: kind llama2c, vocab 512, BOS 1, EOS 2, add_bos");

    const char *sentence = "Once upon a time, there was a little girl named Lily.";
    int32_t *ids;
    size_t n;
    st = sqz_tokenizer_encode(ctx, tok, sentence, strlen(sentence), -1, &ids, &n);
    CHECK(st == SQZ_OK && n > 2 && ids[0] == 1, "tok512: encode starts with BOS");
    if (st == SQZ_OK && n > 2) {
        char piece[64];
        size_t pl;
        sqz_tokenizer_decode(tok, -1, ids[1], piece, sizeof piece, &pl);
        CHECK(pl > 0 && piece[0] == ' ', "tok512: first piece carries the dummy-prefix space");
        sqz_tokenizer_decode(tok, 1, ids[1], piece, sizeof piece, &pl);
        CHECK(pl > 0 && piece[0] == 'O', "tok512: after BOS the leading space is dropped");
        size_t dl;
        char *d = decode_all(tok, ids, n, &dl);
        CHECK(d && strcmp(d, sentence) == 0, "tok512: decode(encode(sentence)) == sentence");
        free(d);
    }
    free(ids);
    st = sqz_tokenizer_encode(ctx, tok, "", 0, -1, &ids, &n);
    CHECK(st == SQZ_OK && n == 1 && ids[0] == 1, "tok512: empty text is BOS alone");
    free(ids);

    /* against run.c's algorithm on TinyStories lines and odd strings */
    size_t size;
    char *buf = read_file(path, &size);
    ref_tok ref = {0};
    if (!buf || ref_load(&ref, buf, size, 512) != 0) {
        CHECK(0, "tok512: reference reader");
        free(buf);
        sqz_tokenizer_free(tok);
        return;
    }
    free(buf);
    const char *stories = test_shared("data/tinystories/tinystories-valid-prefix.txt");
    char *text = stories ? read_file(stories, &size) : NULL;
    int lines = 0, same = 1, rt = 1;
    int *want = malloc(4096 * sizeof *want);
    for (char *line = text; line && *line && lines < 60; lines++) {
        char *end = strchr(line, '\n');
        if (!end) break;
        *end = 0;
        if (strlen(line) < 1000) {
            int nw = ref_encode(&ref, line, want);
            st = sqz_tokenizer_encode(ctx, tok, line, strlen(line), 1, &ids, &n);
            if (st != SQZ_OK || n != (size_t)nw || memcmp(ids, want, n * sizeof *ids) != 0) {
                if (same) printf("# first mismatch on line %d: %s\n", lines, line);
                same = 0;
            }
            size_t dl;
            char *d = st == SQZ_OK ? decode_all(tok, ids, n, &dl) : NULL;
            rt &= d && strcmp(d, line) == 0;
            free(d);
            if (st == SQZ_OK) free(ids);
        }
        line = end + 1;
    }
    if (text) {
        CHECK(same, "tok512: %d TinyStories lines encode as run.c's encode()", lines);
        CHECK(rt, "tok512: they decode back exactly");
    } else {
        SKIP("tinystories-valid-prefix.txt not in the shared folder");
    }
    free(text);
    static const char *odd[] = {" ", "  leading", "a", "naïve café ☃ 日本語 🤖", "x\xff\xfey",
                                "\x80\x80\x80\x80\x80", "\n\n", "Lily's <0x41> <s>", "zzzzzzzz"};
    same = 1;
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        int nw = ref_encode(&ref, odd[i], want);
        st = sqz_tokenizer_encode(ctx, tok, odd[i], strlen(odd[i]), 1, &ids, &n);
        if (st != SQZ_OK || n != (size_t)nw || memcmp(ids, want, n * sizeof *ids) != 0) {
            printf("# mismatch on \"%s\"\n", odd[i]);
            same = 0;
        }
        if (st == SQZ_OK) free(ids);
    }
    CHECK(same, "tok512: odd strings (byte fallback, invalid UTF-8) encode as run.c's encode()");
    free(want);
    ref_free(&ref);

    /* random bytes: byte fallback keeps every byte (BOS makes decode drop the dummy space) */
    int ok = 1;
    char rb[300];
    for (int it = 0; it < 200 && ok; it++) {
        size_t len = rnd() % sizeof rb;
        for (size_t i = 0; i < len; i++) {
            uint32_t r = rnd();
            rb[i] = (char)(it % 2 ? r : (r % 3 ? 'a' + r % 26 : ' '));
        }
        st = sqz_tokenizer_encode(ctx, tok, rb, len, 1, &ids, &n);
        size_t dl;
        char *d = st == SQZ_OK ? decode_all(tok, ids, n, &dl) : NULL;
        ok = d && dl == len && memcmp(d, rb, len) == 0;
        free(d);
        if (st == SQZ_OK) free(ids);
    }
    CHECK(ok, "tok512: decode(encode(x)) == x for 200 random byte strings");
    sqz_tokenizer_free(tok);
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    test_hf_model(ctx, "sqz-llama-26m", 1);
    test_hf_model(ctx, "sqz-llama-14m", !test_quick());
    test_from_arrays(ctx);
    test_tiny(ctx);
    test_bad_files(ctx);
    test_llama2c(ctx);
    sqz_ctx_free(ctx);
    return test_done();
}
