/* tokenizer/llama2c.c - the tokenizer.bin of Karpathy's llama2.c (SentencePiece-style pieces
 * with scores). File: int32 max_token_length, then per token float32 score, int32 len, len bytes
 * (little-endian, as run.c reads it on x86/ARM).
 *
 * Encoding follows run.c's encode(): a " " dummy-prefix piece for non-empty text, one piece per
 * UTF-8 character (or byte-fallback ids byte + 3 for characters not in the vocabulary), then
 * repeatedly the adjacent pair whose concatenation is a piece with the highest score is merged
 * (leftmost on ties). run.c rescans all pairs after each merge (quadratic); here a heap of
 * candidate pairs gives the same merges in O(n log n).
 * Decoding follows run.c's decode(): after BOS a leading space is dropped, and a piece
 * "<0xXX>" stands for the byte XX.
 *
 * The same family serves GGUF's SentencePiece vocabularies (tokenizer.ggml.model "llama",
 * sqz_tokenizer_new_spm), which llama.cpp's llm_tokenizer_spm encodes the same way: spaces as
 * U+2581 (converted to ' ' on load, so pieces compare with the raw text), a dummy-prefix space
 * (add_space_prefix), characters merged by the best-scoring pair (leftmost on ties), and
 * characters left without a piece spelled as their <0xXX> byte tokens. One difference in
 * principle: llama.cpp keeps a character that is not a piece as a symbol that may still merge
 * with a neighbour, where run.c turns it into byte tokens at once; the two agree unless a
 * vocabulary holds a piece containing a character that is not a piece itself, which
 * SentencePiece's trainer does not produce. Export (sqz_llama2c_export) writes the vocabulary
 * as llama.cpp's converter does: spaces as U+2581, scores, token types (<unk> UNKNOWN, <s> and
 * </s> CONTROL, <0xXX> BYTE, the rest NORMAL).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "tokenizer/impl.h"

#define MAX_VOCAB (1 << 24)
#define MAX_PIECE_LEN 65536

struct sqz_llama2c {
    char *name;
    int n;
    int max_len;
    float *score;
    uint32_t *off, *len;
    sqz_bytes arena;
    sqz_strmap map; /* piece -> id (the lowest id when a piece is listed twice) */
    int32_t byte_id[256]; /* the token of each byte for characters without a piece, -1: none */
    int unk;              /* used where a byte has no token; -1: none (the byte is dropped) */
    int add_space_prefix; /* the dummy-prefix space before non-empty text */
    uint8_t *type;        /* [n] SQZ_TOKEN_* from GGUF; NULL for tokenizer.bin */
};

void sqz_llama2c_free(sqz_llama2c *l) {
    if (!l) return;
    free(l->name);
    free(l->score);
    free(l->off);
    free(l->len);
    free(l->type);
    free(l->arena.p);
    sqz_strmap_free(&l->map);
    free(l);
}

/* A tokenizer of the llama2.c family for n tokens, with its name and its score, off and len
 * arrays allocated (contents unset); NULL (nothing left allocated) when out of memory. */
static sqz_tokenizer *l2c_new(int n, const char *name) {
    sqz_tokenizer *tok = calloc(1, sizeof *tok);
    sqz_llama2c *l = calloc(1, sizeof *l);
    if (!tok || !l) {
        free(tok);
        free(l);
        return NULL;
    }
    tok->kind = SQZ_TOK_LLAMA2C;
    tok->llama2c = l;
    tok->vocab_size = n;
    l->n = n;
    l->name = strdup(name);
    l->score = malloc((size_t)n * sizeof *l->score);
    l->off = malloc((size_t)n * sizeof *l->off);
    l->len = malloc((size_t)n * sizeof *l->len);
    if (l->name && l->score && l->off && l->len) return tok;
    sqz_tokenizer_free(tok);
    return NULL;
}

static int32_t rd_i32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t r;
    memcpy(&r, &v, 4);
    return r;
}

static float rd_f32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &v, 4);
    return f;
}

sqz_status sqz_tokenizer_load_llama2c(sqz_ctx *ctx, const char *path, int vocab_size,
                                      sqz_tokenizer **out) {
    *out = NULL;
    if (vocab_size <= 0 || vocab_size > MAX_VOCAB)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: bad vocabulary size %d", path, vocab_size);
    char *buf;
    size_t size;
    sqz_status st = sqz_file_read_all(ctx, path, (size_t)1 << 30, &buf, &size);
    if (st != SQZ_OK) return st;
    const unsigned char *p = (const unsigned char *)buf;
    sqz_tokenizer *tok = l2c_new(vocab_size, path);
    if (!tok) {
        free(buf);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    }
    sqz_llama2c *l = tok->llama2c;
    tok->bos = 1;
    tok->eos = 2;
    tok->add_bos = 1;
    /* run.c's byte fallback: token byte + 3 (after <unk>, <s>, </s>), unchecked */
    for (int b = 0; b < 256; b++) l->byte_id[b] = b + 3;
    l->unk = 0;
    l->add_space_prefix = 1;
    if (size < 4) {
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: truncated: no max_token_length header", path);
        goto fail;
    }
    l->max_len = rd_i32(p);
    if (l->max_len <= 0 || l->max_len > MAX_PIECE_LEN) {
        st = sqz_fail(ctx, SQZ_ERR_FORMAT,
                      "%s: max_token_length %d is absurd: not a llama2.c tokenizer.bin", path,
                      l->max_len);
        goto fail;
    }
    size_t pos = 4;
    for (int i = 0; i < vocab_size; i++) {
        if (size - pos < 8) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT,
                          "%s: truncated at token %d of %d (offset %zu of %zu bytes)", path, i,
                          vocab_size, pos, size);
            goto fail;
        }
        l->score[i] = rd_f32(p + pos);
        int32_t len = rd_i32(p + pos + 4);
        pos += 8;
        if (len < 0 || len > l->max_len) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT,
                          "%s: token %d has length %d (max_token_length is %d)", path, i,
                          (int)len, l->max_len);
            goto fail;
        }
        if (size - pos < (size_t)len) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT,
                          "%s: truncated in token %d of %d (offset %zu of %zu bytes)", path, i,
                          vocab_size, pos, size);
            goto fail;
        }
        l->off[i] = (uint32_t)l->arena.n;
        l->len[i] = (uint32_t)len;
        if (sqz_bytes_append(&l->arena, p + pos, (size_t)len) != 0) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        pos += (size_t)len;
    }
    if (!l->arena.p) {
        l->arena.p = malloc(1); /* every piece empty: keep a valid pointer */
        if (!l->arena.p) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
    }
    for (int i = 0; i < vocab_size; i++) {
        const char *k = l->arena.p + l->off[i];
        if (sqz_strmap_put(&l->map, l->arena.p, l->off[i], l->len[i],
                           sqz_strmap_hash(k, l->len[i]), i) < 0) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
    }
    free(buf);
    *out = tok;
    return SQZ_OK;
fail:
    free(buf);
    sqz_tokenizer_free(tok);
    return st;
}

/* ---------------------------------------------------------------- encoding */

typedef struct l2c_state {
    const sqz_llama2c *l;
    sqz_sym *syms;
    sqz_merge_heap heap;
    char *cat; /* room for two pieces */
} l2c_state;

static int32_t lookup(const sqz_llama2c *l, const void *key, size_t n) {
    return sqz_strmap_get(&l->map, l->arena.p, key, n, sqz_strmap_hash(key, n));
}

/* The token standing for byte b of a character without a piece: its byte token, else <unk>,
 * else -1 (dropped). */
static int32_t byte_token(const sqz_llama2c *l, unsigned char b) {
    return l->byte_id[b] >= 0 ? l->byte_id[b] : l->unk;
}

/* Pushes the pair (pos, next) if the two pieces concatenated are a piece. run.c only takes a
 * pair whose score beats its starting best of -1e10, so lower (and NaN) scores never merge. */
static int push_pair(l2c_state *s, int32_t pos) {
    const sqz_llama2c *l = s->l;
    int32_t nx = s->syms[pos].next;
    if (nx < 0) return 0;
    int32_t a = s->syms[pos].id, b = s->syms[nx].id;
    memcpy(s->cat, l->arena.p + l->off[a], l->len[a]);
    memcpy(s->cat + l->len[a], l->arena.p + l->off[b], l->len[b]);
    int32_t id = lookup(l, s->cat, (size_t)l->len[a] + l->len[b]);
    if (id < 0 || !(l->score[id] > -1e10f)) return 0;
    return sqz_merge_push(&s->heap, (sqz_merge){-(double)l->score[id], pos, a, b, id});
}

sqz_status sqz_llama2c_encode(sqz_ctx *ctx, const sqz_tokenizer *tok, const char *text,
                              size_t len, int add_bos, int32_t **ids, size_t *n_ids) {
    const sqz_llama2c *l = tok->llama2c;
    const unsigned char *t = (const unsigned char *)text;
    sqz_ids v = {0};
    l2c_state s = {.l = l};
    sqz_status st = SQZ_OK;
    /* the initial pieces: BOS, the dummy prefix, one per character (or per byte) */
    if (sqz_ids_reserve(&v, len + 2) != 0) goto nomem;
    if (add_bos) v.v[v.n++] = tok->bos;
    if (len > 0 && l->add_space_prefix) {
        int32_t sp = lookup(l, " ", 1);
        if (sp < 0) sp = byte_token(l, ' '); /* run.c assumes " " exists; else its byte */
        if (sp >= 0) v.v[v.n++] = sp;
    }
    for (size_t i = 0; i < len;) {
        /* a character: a byte and the continuation bytes after it, at most 4 bytes in all
         * (run.c groups bytes exactly so, even in invalid UTF-8) */
        size_t n = 1;
        while (i + n < len && (t[i + n] & 0xc0) == 0x80 && n < 4) n++;
        int32_t id = lookup(l, t + i, n);
        if (id >= 0) {
            v.v[v.n++] = id;
        } else {
            for (size_t k = 0; k < n; k++) {
                int32_t bt = byte_token(l, t[i + k]);
                if (bt >= 0) v.v[v.n++] = bt;
            }
        }
        i += n;
    }
    for (size_t i = 0; i < v.n; i++) {
        if (v.v[i] >= l->n) {
            st = sqz_fail(ctx, SQZ_ERR_RANGE,
                          "%s: token %d (BOS or byte fallback) is past the vocabulary (%d tokens)",
                          l->name, (int)v.v[i], l->n);
            goto done;
        }
    }

    /* merges */
    size_t m = v.n;
    s.syms = malloc((m ? m : 1) * sizeof *s.syms);
    s.cat = malloc(2 * (size_t)l->max_len + 1);
    if (!s.syms || !s.cat) goto nomem;
    for (size_t i = 0; i < m; i++) s.syms[i] = (sqz_sym){v.v[i], (int32_t)i - 1, (int32_t)i + 1};
    if (m) s.syms[m - 1].next = -1;
    for (size_t i = 0; i + 1 < m; i++)
        if (push_pair(&s, (int32_t)i) != 0) goto nomem;
    while (s.heap.n) {
        const sqz_merge h = sqz_merge_pop(&s.heap);
        if (!sqz_merge_apply(s.syms, &h)) continue;
        if (s.syms[h.pos].prev >= 0 && push_pair(&s, s.syms[h.pos].prev) != 0) goto nomem;
        if (push_pair(&s, h.pos) != 0) goto nomem;
    }
    v.n = 0;
    for (int32_t i = m ? 0 : -1; i >= 0; i = s.syms[i].next) v.v[v.n++] = s.syms[i].id;
    st = sqz_ids_finish(ctx, l->name, &v, ids, n_ids);
    goto done;
nomem:
    st = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory while tokenizing", l->name);
done:
    free(v.v);
    free(s.syms);
    free(s.heap.a);
    free(s.cat);
    return st;
}

/* ---------------------------------------------------------------- decoding */

static int hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

const char *sqz_llama2c_piece(const sqz_tokenizer *tok, int32_t prev, int32_t id, size_t *n) {
    const sqz_llama2c *l = tok->llama2c;
    const char *p = l->arena.p + l->off[id];
    size_t len = l->len[id];
    /* after BOS, SentencePiece drops the leading space of the first word */
    if (prev == tok->bos && len > 0 && p[0] == ' ') {
        p++;
        len--;
    }
    /* "<0xXX>": the raw byte (run.c reads it with sscanf "<0x%02hhX>", so one or two hex
     * digits after "<0x" are enough) */
    if (len >= 4 && memcmp(p, "<0x", 3) == 0) {
        int hi = hex_digit((unsigned char)p[3]);
        if (hi >= 0) {
            int lo = len >= 5 ? hex_digit((unsigned char)p[4]) : -1;
            int byte = lo >= 0 ? hi * 16 + lo : hi;
            /* the piece must outlive the call: point into a constant table of all bytes */
            static const char bytes[256] = {
#define B4(x) (char)(x), (char)(x + 1), (char)(x + 2), (char)(x + 3)
#define B16(x) B4(x), B4(x + 4), B4(x + 8), B4(x + 12)
                B16(0),   B16(16),  B16(32),  B16(48),  B16(64),  B16(80),  B16(96),  B16(112),
                B16(128), B16(144), B16(160), B16(176), B16(192), B16(208), B16(224), B16(240)
#undef B16
#undef B4
            };
            *n = 1;
            return &bytes[byte];
        }
    }
    *n = len;
    return p;
}

/* ---------------------------------------------------------------- SentencePiece from GGUF */

/* "<0xXX>" with two hex digits: the byte XX, else -1. */
static int byte_piece(const char *p, size_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int hi = hex_digit((unsigned char)p[3]), lo = hex_digit((unsigned char)p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static const char SPM_SPACE[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's visible space */

sqz_status sqz_tokenizer_new_spm(sqz_ctx *ctx, const sqz_spm_spec *spec, sqz_tokenizer **out) {
    *out = NULL;
    const char *name = spec->name ? spec->name : "tokenizer";
    const int n = spec->n_tokens;
    if (n <= 0 || n > MAX_VOCAB || !spec->tokens)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: bad vocabulary size %d", name, n);
    if (spec->bos >= n || spec->eos >= n || spec->unk_id >= n)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: BOS/EOS/unknown token id out of range", name);
    sqz_tokenizer *tok = l2c_new(n, name);
    if (!tok) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", name);
    sqz_llama2c *l = tok->llama2c;
    tok->bos = spec->bos >= 0 ? spec->bos : -1;
    tok->eos = spec->eos >= 0 ? spec->eos : -1;
    tok->add_bos = spec->add_bos && tok->bos >= 0;
    l->unk = spec->unk_id >= 0 ? spec->unk_id : -1;
    l->add_space_prefix = spec->add_space_prefix != 0;
    l->type = malloc((size_t)n);
    if (!l->type) goto nomem;
    for (int b = 0; b < 256; b++) l->byte_id[b] = -1;
    for (int id = 0; id < n; id++) {
        const char *s = spec->tokens[id] ? spec->tokens[id] : "";
        size_t len = spec->token_lens ? spec->token_lens[id] : strlen(s);
        int type = spec->token_types ? spec->token_types[id] : SQZ_TOKEN_NORMAL;
        if (type < SQZ_TOKEN_NORMAL || type > SQZ_TOKEN_BYTE) type = SQZ_TOKEN_NORMAL;
        l->type[id] = (uint8_t)type;
        l->score[id] = spec->scores ? spec->scores[id] : 0.0f;
        l->off[id] = (uint32_t)l->arena.n;
        /* "▁" -> ' ': pieces then compare with the raw text as run.c's do */
        for (size_t i = 0; i < len;) {
            if (len - i >= 3 && memcmp(s + i, SPM_SPACE, 3) == 0) {
                if (sqz_bytes_append(&l->arena, " ", 1) != 0) goto nomem;
                i += 3;
            } else {
                if (sqz_bytes_append(&l->arena, s + i, 1) != 0) goto nomem;
                i++;
            }
        }
        l->len[id] = (uint32_t)(l->arena.n - l->off[id]);
        if ((int)l->len[id] > l->max_len) l->max_len = (int)l->len[id];
    }
    if (!l->arena.p && sqz_bytes_append(&l->arena, "", 1) != 0) goto nomem; /* a valid pointer */
    for (int id = 0; id < n; id++) {
        const char *k = l->arena.p + l->off[id];
        if (sqz_strmap_put(&l->map, l->arena.p, l->off[id], l->len[id],
                           sqz_strmap_hash(k, l->len[id]), id) < 0)
            goto nomem;
        int b = byte_piece(k, l->len[id]);
        /* byte tokens as llama.cpp finds them: by their text (type BYTE where types are given) */
        if (b >= 0 && l->byte_id[b] < 0 &&
            (!spec->token_types || l->type[id] == SQZ_TOKEN_BYTE))
            l->byte_id[b] = id;
    }
    *out = tok;
    return SQZ_OK;
nomem:
    sqz_tokenizer_free(tok);
    return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", name);
}

/* ---------------------------------------------------------------- export as GGUF metadata */

sqz_status sqz_llama2c_export(sqz_ctx *ctx, const sqz_tokenizer *tok, int n_vocab,
                              sqz_tok_gguf *e) {
    const sqz_llama2c *l = tok->llama2c;
    if (n_vocab < l->n) n_vocab = l->n;
    sqz_bytes tmp = {0};
    if (sqz_tok_gguf_init(e, n_vocab, 0, 1) != 0) goto nomem;
    e->model = "llama";
    e->pre = "default";
    for (int id = 0; id < n_vocab; id++) {
        int rc;
        if (id >= l->n) {
            char pad[32];
            int k = snprintf(pad, sizeof pad, "[PAD%d]", id);
            rc = sqz_tok_gguf_set_token(e, id, pad, (size_t)k, SQZ_TOKEN_UNUSED);
            if (rc != 0) goto nomem;
            continue;
        }
        const char *p = l->arena.p + l->off[id];
        size_t len = l->len[id];
        int type;
        if (l->type) {
            type = l->type[id];
        } else if (id == l->unk) { /* tokenizer.bin: names and types as llama.cpp gives them */
            p = "<unk>", len = 5, type = SQZ_TOKEN_UNKNOWN;
        } else if (id == tok->bos) {
            p = "<s>", len = 3, type = SQZ_TOKEN_CONTROL;
        } else if (id == tok->eos) {
            p = "</s>", len = 4, type = SQZ_TOKEN_CONTROL;
        } else {
            type = byte_piece(p, len) >= 0 ? SQZ_TOKEN_BYTE : SQZ_TOKEN_NORMAL;
        }
        tmp.n = 0;
        for (size_t i = 0; i < len; i++) {
            rc = p[i] == ' ' ? sqz_bytes_append(&tmp, SPM_SPACE, 3)
                             : sqz_bytes_append(&tmp, p + i, 1);
            if (rc != 0) goto nomem;
        }
        if (sqz_tok_gguf_set_token(e, id, tmp.p ? tmp.p : "", tmp.n, type) != 0) goto nomem;
        e->scores[id] = l->score[id];
    }
    sqz_tok_gguf_finish(e);
    e->bos = tok->bos;
    e->eos = tok->eos;
    e->unk = l->unk;
    e->add_bos = tok->add_bos;
    e->add_eos = 0;
    e->add_space_prefix = l->add_space_prefix;
    free(tmp.p);
    return SQZ_OK;
nomem:
    free(tmp.p);
    sqz_tok_gguf_free(e);
    return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory exporting the tokenizer", l->name);
}
