/* fuzz_tokenizer_json.c - libFuzzer target for the tokenizer.json loader and the byte-level BPE
 * encoder/decoder: loads the input as a tokenizer.json and, when that succeeds, encodes and
 * decodes a few strings (invalid UTF-8 included, and the input itself). Crashes, sanitizer
 * reports and broken invariants (an id out of range, a byte lost where the vocabulary can
 * represent every byte) abort. Seeds: fuzz/corpus/tokenizer_json/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "tokenizer/impl.h"

static void fail(const char *what) {
    fprintf(stderr, "fuzz_tokenizer_json: %s\n", what);
    abort();
}

/* Encodes text; checks every id is in range and decodes; returns the decoded bytes (malloc'ed,
 * *n bytes) or NULL when encoding failed (allowed: a file's regex may hit its match limit).
 * *has_added: the encoding holds an added token. */
static char *encode_decode(sqz_ctx *ctx, const sqz_tokenizer *tok, const char *text, size_t len,
                           int add_bos, size_t *n, int *has_added) {
    int32_t *ids;
    size_t n_ids;
    *has_added = 0;
    if (sqz_tokenizer_encode(ctx, tok, text, len, add_bos, &ids, &n_ids) != SQZ_OK) return NULL;
    if (!ids) fail("encode gave no array");
    int vocab = sqz_tokenizer_vocab_size(tok);
    size_t cap = 64, used = 0;
    char *out = malloc(cap);
    if (!out) fail("out of memory");
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= vocab) fail("id out of range");
        /* added tokens (and BOS/EOS, whatever token they are) need not decode to their text */
        if (sqz_bpe_is_added(tok->bpe, ids[i]) || ids[i] == sqz_tokenizer_bos(tok) ||
            ids[i] == sqz_tokenizer_eos(tok))
            *has_added = 1;
        size_t l;
        char small[8];
        int32_t prev = i ? ids[i - 1] : -1;
        if (sqz_tokenizer_decode(tok, prev, ids[i], small, sizeof small, &l) != SQZ_OK)
            fail("decode failed");
        if (used + l > cap) {
            while (used + l > cap) cap *= 2;
            char *p = realloc(out, cap);
            if (!p) fail("out of memory");
            out = p;
        }
        /* decode again into the right place: also checks the cap argument is honoured */
        size_t l2;
        sqz_tokenizer_decode(tok, prev, ids[i], out + used, l, &l2);
        if (l2 != l || memcmp(out + used, small, l < sizeof small ? l : sizeof small) != 0)
            fail("decode is not deterministic");
        used += l;
    }
    sqz_free(ids);
    *n = used;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sqz_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    sqz_tokenizer *tok = NULL;
    if (sqz_tokenizer_load_hf_mem(&ctx, (const char *)data, size, "fuzz.json", &tok) != SQZ_OK) {
        if (tok) fail("failed load returned a tokenizer");
        if (!strstr(ctx.error, "fuzz.json")) fail("error message does not name the file");
        return 0;
    }
    if (strcmp(sqz_tokenizer_kind(tok), "bpe") != 0) fail("kind is not bpe");

    /* Is every byte that reaches the merges encoded losslessly? (Not when a byte has no token,
     * or with add_prefix_space.) Bytes that are added tokens themselves never reach them. */
    int lossless = 1;
    for (int b = 0; b < 256 && lossless; b++) {
        char c = (char)b;
        size_t n;
        int added;
        char *d = encode_decode(&ctx, tok, &c, 1, 0, &n, &added);
        if (d && !added && (n != 1 || d[0] != c)) lossless = 0;
        free(d);
    }

    static const char *const texts[] = {
        "",
        "Hello world",
        " the  12345 don't WE'LL\n\n\tx  ",
        "\xff\xfe\x80 a\xc3 \xe2\x82",
        "<|bos|>x<s></s><|endoftext|>",
        "na\xc3\xafve caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\xa4\x96 \xe6\x97\xa5\xe6\x9c\xac",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    size_t n_texts = sizeof texts / sizeof *texts;
    for (size_t i = 0; i <= n_texts; i++) {
        const char *t = i < n_texts ? texts[i] : (const char *)data;
        size_t len = i < n_texts ? strlen(t) : (size < 300 ? size : 300);
        for (int add_bos = -1; add_bos <= 1; add_bos++) {
            size_t n;
            int added;
            char *d = encode_decode(&ctx, tok, t, len, add_bos, &n, &added);
            if (d && add_bos == 0 && lossless && !added && (n != len || memcmp(d, t, len) != 0))
                fail("decode(encode(x)) != x");
            free(d);
        }
    }
    sqz_tokenizer_set_special(tok, 0, sqz_tokenizer_vocab_size(tok) - 1);
    size_t n;
    int added;
    free(encode_decode(&ctx, tok, "x", 1, 1, &n, &added));
    sqz_tokenizer_free(tok);
    return 0;
}
