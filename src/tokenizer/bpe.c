/* tokenizer/bpe.c - byte-level BPE (GPT-2, Llama-3, Qwen2): the tokenizer built from arrays
 * (sqz_tokenizer_new_bpe, also meant for GGUF), its encoder and decoder, and the loader of
 * Hugging Face tokenizer.json files that turns the JSON into those arrays.
 *
 * Encoding: the text is split on added tokens (exact content, longest match first), each part
 * in between runs through the pre-tokenizer regexes (PCRE2 in UTF + UCP mode; the matches and
 * the text between them become pieces), and each piece is merged from its bytes by the ranked
 * merges. The whole encoder works on raw bytes: the GPT-2 byte-to-unicode map is only applied
 * (in reverse) to the vocabulary when it is loaded, which is equivalent and cheaper.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "tokenizer/impl.h"

#define MAX_TOKENS (1 << 24) /* ids fit the merge keys and stay sane */
#define MAX_SPLITS 16
#define CACHE_MAX_WORD 64 /* longer pieces are rare and not worth caching */
#define TYPE_NONE 0       /* an id with no token */

typedef struct merge_slot {
    uint64_t key; /* left << 32 | right; MERGE_EMPTY: free slot */
    int32_t rank;
    int32_t result;
} merge_slot;
#define MERGE_EMPTY UINT64_MAX

typedef struct added_token {
    uint32_t off, len; /* content in the arena */
    int32_t id;
    uint8_t first; /* first byte of the content */
    uint8_t flags; /* SQZ_ADDED_* */
} added_token;

struct sqz_bpe {
    char *name;
    int n_tokens;
    sqz_bytes arena;    /* the bytes of every token */
    uint32_t *tok_off;  /* [n_tokens] */
    uint32_t *tok_len;  /* [n_tokens] */
    uint8_t *tok_type;  /* [n_tokens] SQZ_TOKEN_* or TYPE_NONE */
    sqz_strmap vocab;   /* token bytes -> id */
    merge_slot *merges; /* (left, right) -> rank, result */
    size_t merge_cap;   /* a power of two */
    int merge_bits;
    int32_t byte_id[256]; /* the token of each single byte, -1 if none */
    added_token *added;   /* sorted by first byte, then longest first */
    int n_added;
    int32_t added_first[257]; /* added[added_first[b] .. added_first[b + 1]) start with b */
    int n_re;
    pcre2_code *re[MAX_SPLITS];
    int add_prefix_space, ignore_merges, unk_id;
    const char *pre; /* llama.cpp's name of the pre-tokenizer (GGUF tokenizer.ggml.pre), or NULL */
};

/* ---------------------------------------------------------------- byte map */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves; the others (controls,
 * space, 0x7f-0xa0, 0xad) get code points 256, 257, ... in byte order. */
static void byte_map(uint16_t b2u[256], int16_t u2b[324]) {
    int n = 0;
    for (int i = 0; i < 324; i++) u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        b2u[b] = (uint16_t)(printable ? b : 256 + n++);
        u2b[b2u[b]] = (int16_t)b;
    }
}

/* Decodes one UTF-8 character of s[0, n); returns its length, or 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if ((c & 0xe0) == 0xc0) { len = 2; v = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; v = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

/* Appends the bytes a byte-level token string stands for. As Hugging Face's ByteLevel decoder
 * does, a string with a character outside the map stands for its own UTF-8 bytes. */
static int unmap_token(const int16_t *u2b, const char *s, size_t n, sqz_bytes *out) {
    size_t start = out->n;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_decode(p + i, n - i, &cp);
        if (l == 0 || cp >= 324 || u2b[cp] < 0) {
            out->n = start;
            return sqz_bytes_append(out, s, n);
        }
        unsigned char b = (unsigned char)u2b[cp];
        if (sqz_bytes_append(out, &b, 1) != 0) return -1;
        i += l;
    }
    return 0;
}

/* ---------------------------------------------------------------- merges table */

static inline size_t merge_hash(const sqz_bpe *b, uint64_t key) {
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> (64 - b->merge_bits));
}

static inline const merge_slot *merge_find(const sqz_bpe *b, int32_t l, int32_t r) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t mask = b->merge_cap - 1;
    for (size_t i = merge_hash(b, key);; i = (i + 1) & mask) {
        const merge_slot *s = &b->merges[i];
        if (s->key == key) return s;
        if (s->key == MERGE_EMPTY) return NULL;
    }
}

/* Inserts unless present (the lowest rank wins, as in Hugging Face). */
static void merge_put(sqz_bpe *b, int32_t l, int32_t r, int32_t rank, int32_t result) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t mask = b->merge_cap - 1;
    size_t i = merge_hash(b, key);
    while (b->merges[i].key != MERGE_EMPTY) {
        if (b->merges[i].key == key) return;
        i = (i + 1) & mask;
    }
    b->merges[i] = (merge_slot){key, rank, result};
}

/* ---------------------------------------------------------------- construction */

void sqz_bpe_free(sqz_bpe *b) {
    if (!b) return;
    free(b->name);
    free(b->arena.p);
    free(b->tok_off);
    free(b->tok_len);
    free(b->tok_type);
    sqz_strmap_free(&b->vocab);
    free(b->merges);
    free(b->added);
    for (int i = 0; i < b->n_re; i++) pcre2_code_free(b->re[i]);
    free(b);
}

static int added_cmp(const void *pa, const void *pb) {
    const added_token *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
    return a->id < b->id ? -1 : a->id > b->id;
}

static int is_added_type(int t) { return t == SQZ_TOKEN_CONTROL || t == SQZ_TOKEN_USER_DEFINED; }

/* The name llama.cpp gives the pre-tokenizer (tokenizer.ggml.pre), when it is exactly one of
 * the regexes its BPE tokenizer knows by name; NULL otherwise (GGUF cannot express it). */
static const char *pre_name(const sqz_bpe_spec *sp) {
    if (sp->add_prefix_space || sp->n_splits != 1 || sp->splits[0].literal) return NULL;
    const char *p = sp->splits[0].pattern;
    if (!p) return NULL;
    if (strcmp(p, SQZ_BPE_RE_GPT2) == 0) return "gpt-2";
    if (strcmp(p, SQZ_BPE_RE_LLAMA3) == 0) return "llama-bpe";
    if (strcmp(p, SQZ_BPE_RE_QWEN2) == 0) return "qwen2";
    return NULL;
}

/* Looks up a merge operand (a byte-level string) among the tokens. */
static int32_t lookup_model_token(sqz_bpe *b, const int16_t *u2b, sqz_bytes *tmp, const char *s,
                                  size_t n) {
    tmp->n = 0;
    if (unmap_token(u2b, s, n, tmp) != 0) return -2;
    return sqz_strmap_get(&b->vocab, b->arena.p, tmp->p ? tmp->p : "", tmp->n,
                          sqz_strmap_hash(tmp->p ? tmp->p : "", tmp->n));
}

static sqz_status build_merges(sqz_ctx *ctx, sqz_bpe *b, const sqz_bpe_spec *spec,
                               const int16_t *u2b) {
    int bits = 4;
    while (((size_t)1 << bits) < (size_t)spec->n_merges * 2 + 16) bits++;
    b->merge_bits = bits;
    b->merge_cap = (size_t)1 << bits;
    b->merges = malloc(b->merge_cap * sizeof *b->merges);
    if (!b->merges) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", spec->name);
    for (size_t i = 0; i < b->merge_cap; i++) b->merges[i].key = MERGE_EMPTY;
    sqz_bytes tmp = {0}, cat = {0};
    sqz_status st = SQZ_OK;
    for (int r = 0; r < spec->n_merges && st == SQZ_OK; r++) {
        const char *ls, *rs;
        size_t ln, rn;
        if (spec->merges_are_pairs) {
            ls = spec->merges[2 * r];
            rs = spec->merges[2 * r + 1];
            if (!ls || !rs) {
                st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: merge %d is not a pair of strings",
                              spec->name, r);
                break;
            }
            ln = strlen(ls);
            rn = strlen(rs);
        } else {
            ls = spec->merges[r];
            const char *sp = ls ? strchr(ls, ' ') : NULL;
            if (!sp) {
                st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: merge %d (\"%.40s\") is not two tokens",
                              spec->name, r, ls ? ls : "");
                break;
            }
            ln = (size_t)(sp - ls);
            rs = sp + 1;
            rn = strlen(rs);
        }
        int32_t li = lookup_model_token(b, u2b, &tmp, ls, ln);
        int32_t ri = li < 0 ? li : lookup_model_token(b, u2b, &tmp, rs, rn);
        if (li == -2 || ri == -2) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", spec->name);
            break;
        }
        if (li < 0 || ri < 0) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT,
                          "%s: merge %d (\"%.*s\" \"%.*s\") names a token not in the vocabulary",
                          spec->name, r, (int)(ln < 40 ? ln : 40), ls, (int)(rn < 40 ? rn : 40),
                          rs);
            break;
        }
        cat.n = 0;
        if (sqz_bytes_append(&cat, b->arena.p + b->tok_off[li], b->tok_len[li]) != 0 ||
            sqz_bytes_append(&cat, b->arena.p + b->tok_off[ri], b->tok_len[ri]) != 0) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", spec->name);
            break;
        }
        int32_t res = sqz_strmap_get(&b->vocab, b->arena.p, cat.p, cat.n,
                                     sqz_strmap_hash(cat.p, cat.n));
        if (res < 0) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT,
                          "%s: merge %d (\"%.*s\" \"%.*s\") makes a token not in the vocabulary",
                          spec->name, r, (int)(ln < 40 ? ln : 40), ls, (int)(rn < 40 ? rn : 40),
                          rs);
            break;
        }
        merge_put(b, li, ri, r, res);
    }
    free(tmp.p);
    free(cat.p);
    return st;
}

static sqz_status compile_splits(sqz_ctx *ctx, sqz_bpe *b, const sqz_bpe_spec *spec) {
    if (spec->n_splits < 0 || spec->n_splits > MAX_SPLITS)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: too many pre-tokenizer steps (%d)",
                        spec->name, spec->n_splits);
    for (int i = 0; i < spec->n_splits; i++) {
        const sqz_bpe_split *sp = &spec->splits[i];
        if (!sp->pattern)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: pre-tokenizer step %d has no pattern",
                            spec->name, i);
        /* MATCH_INVALID_UTF: text that is not valid UTF-8 still matches around the invalid
         * bytes (they end up in the pieces between matches, so no byte is lost). */
        uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
        if (sp->literal) opts |= PCRE2_LITERAL;
        int err;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)sp->pattern, PCRE2_ZERO_TERMINATED, opts, &err,
                                       &off, NULL);
        if (!re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                            "%s: pre-tokenizer regex %d does not compile at offset %zu: %s",
                            spec->name, i, (size_t)off, (const char *)msg);
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if absent */
        b->re[b->n_re++] = re;
    }
    return SQZ_OK;
}

sqz_status sqz_tokenizer_new_bpe(sqz_ctx *ctx, const sqz_bpe_spec *spec, sqz_tokenizer **out) {
    *out = NULL;
    const char *name = spec->name ? spec->name : "tokenizer";
    if (spec->n_tokens <= 0 || spec->n_tokens > MAX_TOKENS || !spec->tokens)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: bad vocabulary size %d", name, spec->n_tokens);
    if (spec->n_merges < 0 || (spec->n_merges && !spec->merges))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: bad merge count %d", name, spec->n_merges);
    if (spec->bos >= spec->n_tokens || spec->eos >= spec->n_tokens ||
        spec->unk_id >= spec->n_tokens)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: BOS/EOS/unknown token id out of range", name);
    sqz_bpe_spec sp = *spec;
    sp.name = name;

    sqz_tokenizer *tok = calloc(1, sizeof *tok);
    sqz_bpe *b = calloc(1, sizeof *b);
    if (!tok || !b) {
        free(tok);
        free(b);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", name);
    }
    tok->kind = SQZ_TOK_BPE;
    tok->bpe = b;
    tok->vocab_size = sp.n_tokens;
    tok->bos = sp.bos >= 0 ? sp.bos : -1;
    tok->eos = sp.eos >= 0 ? sp.eos : -1;
    tok->add_bos = sp.add_bos && tok->bos >= 0;
    b->n_tokens = sp.n_tokens;
    b->add_prefix_space = sp.add_prefix_space;
    b->ignore_merges = sp.ignore_merges;
    b->unk_id = sp.unk_id >= 0 ? sp.unk_id : -1;
    b->pre = pre_name(&sp);
    b->name = strdup(name);
    size_t n = (size_t)sp.n_tokens;
    b->tok_off = calloc(n, sizeof *b->tok_off);
    b->tok_len = calloc(n, sizeof *b->tok_len);
    b->tok_type = calloc(n, 1);
    if (!b->name || !b->tok_off || !b->tok_len || !b->tok_type) goto nomem;

    uint16_t b2u[256];
    int16_t u2b[324];
    byte_map(b2u, u2b);

    /* the bytes of every token */
    int n_added = 0;
    for (size_t id = 0; id < n; id++) {
        const char *s = sp.tokens[id];
        if (!s) continue;
        int type = sp.token_types ? sp.token_types[id] : SQZ_TOKEN_NORMAL;
        if (type < SQZ_TOKEN_NORMAL || type > SQZ_TOKEN_BYTE) type = SQZ_TOKEN_NORMAL;
        b->tok_type[id] = (uint8_t)type;
        b->tok_off[id] = (uint32_t)b->arena.n;
        size_t len = strlen(s);
        int rc = is_added_type(type) ? sqz_bytes_append(&b->arena, s, len)
                                     : unmap_token(u2b, s, len, &b->arena);
        if (rc != 0) goto nomem;
        b->tok_len[id] = (uint32_t)(b->arena.n - b->tok_off[id]);
        if (is_added_type(type) && b->tok_len[id] > 0) n_added++;
    }
    if (!b->arena.p) { /* every token empty: keep a valid pointer */
        b->arena.p = malloc(1);
        if (!b->arena.p) goto nomem;
        b->arena.cap = 1;
    }

    /* bytes -> id: model tokens first, so that they win over added tokens with the same text */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t id = 0; id < n; id++) {
            if (b->tok_type[id] == TYPE_NONE || is_added_type(b->tok_type[id]) != pass) continue;
            const char *k = b->arena.p + b->tok_off[id];
            if (sqz_strmap_put(&b->vocab, b->arena.p, b->tok_off[id], b->tok_len[id],
                               sqz_strmap_hash(k, b->tok_len[id]), (int32_t)id) < 0)
                goto nomem;
        }
    }
    for (int c = 0; c < 256; c++) {
        char ch = (char)c;
        b->byte_id[c] = sqz_strmap_get(&b->vocab, b->arena.p, &ch, 1, sqz_strmap_hash(&ch, 1));
    }

    /* added tokens, indexed by first byte */
    b->added = malloc(((size_t)n_added + 1) * sizeof *b->added);
    if (!b->added) goto nomem;
    for (size_t id = 0; id < n; id++) {
        if (!is_added_type(b->tok_type[id]) || b->tok_len[id] == 0) continue;
        added_token *a = &b->added[b->n_added++];
        a->off = b->tok_off[id];
        a->len = b->tok_len[id];
        a->id = (int32_t)id;
        a->first = (uint8_t)b->arena.p[a->off];
        a->flags = sp.added_flags ? sp.added_flags[id] : 0;
    }
    qsort(b->added, (size_t)b->n_added, sizeof *b->added, added_cmp);
    for (int c = 0, k = 0; c <= 256; c++) {
        while (k < b->n_added && b->added[k].first < c) k++;
        b->added_first[c] = k;
    }

    sqz_status st = build_merges(ctx, b, &sp, u2b);
    if (st == SQZ_OK) st = compile_splits(ctx, b, &sp);
    if (st != SQZ_OK) {
        sqz_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return SQZ_OK;

nomem:
    sqz_tokenizer_free(tok);
    return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", name);
}

const char *sqz_bpe_piece(const sqz_bpe *b, int32_t id, size_t *n) {
    int t = b->tok_type[id];
    if (t == TYPE_NONE || t == SQZ_TOKEN_CONTROL) { /* special tokens decode to nothing */
        *n = 0;
        return "";
    }
    *n = b->tok_len[id];
    return b->arena.p + b->tok_off[id];
}

int sqz_bpe_is_added(const sqz_bpe *b, int32_t id) {
    return id >= 0 && id < b->n_tokens && is_added_type(b->tok_type[id]);
}

/* ---------------------------------------------------------------- encoding */

typedef struct cache_ent {
    uint32_t off, n; /* ids in cache_ids */
} cache_ent;

typedef struct enc_state {
    const sqz_bpe *bpe;
    sqz_ctx *ctx;
    sqz_ids out;
    pcre2_match_data *md[MAX_SPLITS];
    pcre2_match_context *mctx;
    sqz_sym *syms;
    size_t syms_cap;
    sqz_merge_heap heap;
    /* per-call cache of piece -> ids: natural text repeats its words a lot */
    sqz_strmap cache;
    sqz_bytes cache_keys;
    sqz_ids cache_ids;
    cache_ent *cents;
    size_t n_cents, cents_cap;
    sqz_bytes prefixed; /* a part with the prefix space prepended */
    sqz_status st;
} enc_state;

static int enc_nomem(enc_state *e) {
    e->st = sqz_fail(e->ctx, SQZ_ERR_NOMEM, "%s: out of memory while tokenizing", e->bpe->name);
    return -1;
}

static int push_pair(enc_state *e, int32_t pos) {
    const sqz_sym *s = e->syms;
    int32_t nx = s[pos].next;
    if (nx < 0) return 0;
    const merge_slot *m = merge_find(e->bpe, s[pos].id, s[nx].id);
    if (!m) return 0;
    return sqz_merge_push(&e->heap, (sqz_merge){m->rank, pos, s[pos].id, s[nx].id, m->result});
}

/* Merges the bytes of one piece and appends the ids to out. */
static int bpe_merge(enc_state *e, const unsigned char *w, size_t n, sqz_ids *out) {
    const sqz_bpe *b = e->bpe;
    if (n > e->syms_cap) {
        sqz_sym *s = realloc(e->syms, n * sizeof *s);
        if (!s) return enc_nomem(e);
        e->syms = s;
        e->syms_cap = n;
    }
    /* symbols: one per byte that has a token (or the unknown token); others are skipped */
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[w[i]];
        if (id < 0) id = b->unk_id;
        if (id < 0) continue;
        e->syms[m] = (sqz_sym){id, m - 1, m + 1};
        m++;
    }
    if (m == 0) return 0;
    e->syms[m - 1].next = -1;
    e->heap.n = 0;
    for (int32_t i = 0; i + 1 < m; i++)
        if (push_pair(e, i) != 0) return enc_nomem(e);
    while (e->heap.n) {
        const sqz_merge h = sqz_merge_pop(&e->heap);
        if (!sqz_merge_apply(e->syms, &h)) continue;
        if (e->syms[h.pos].prev >= 0 && push_pair(e, e->syms[h.pos].prev) != 0) return enc_nomem(e);
        if (push_pair(e, h.pos) != 0) return enc_nomem(e);
    }
    /* the first symbol never merges away: merges keep the left position */
    for (int32_t i = 0; i >= 0; i = e->syms[i].next)
        if (sqz_ids_push(out, e->syms[i].id) != 0) return enc_nomem(e);
    return 0;
}

/* One piece from the pre-tokenizer -> ids. */
static int encode_piece(enc_state *e, const char *s, size_t n) {
    const sqz_bpe *b = e->bpe;
    const unsigned char *w = (const unsigned char *)s;
    if (n == 1) {
        int32_t id = b->byte_id[w[0]] >= 0 ? b->byte_id[w[0]] : b->unk_id;
        if (id >= 0 && sqz_ids_push(&e->out, id) != 0) return enc_nomem(e);
        return 0;
    }
    uint32_t h = sqz_strmap_hash(s, n);
    if (b->ignore_merges) {
        int32_t id = sqz_strmap_get(&b->vocab, b->arena.p, s, n, h);
        if (id >= 0) return sqz_ids_push(&e->out, id) != 0 ? enc_nomem(e) : 0;
    }
    /* long pieces are rare; the limits keep 32-bit cache offsets valid */
    if (n > CACHE_MAX_WORD || e->cache_ids.n > (1u << 30) || e->n_cents >= (1u << 30))
        return bpe_merge(e, w, n, &e->out);
    int32_t ci = sqz_strmap_get(&e->cache, e->cache_keys.p, s, n, h);
    if (ci < 0) {
        /* not seen yet: merge into the cache, then copy from there */
        if (e->n_cents == e->cents_cap) {
            size_t cap = e->cents_cap ? e->cents_cap * 2 : 1024;
            cache_ent *c = realloc(e->cents, cap * sizeof *c);
            if (!c) return enc_nomem(e);
            e->cents = c;
            e->cents_cap = cap;
        }
        size_t first = e->cache_ids.n;
        if (bpe_merge(e, w, n, &e->cache_ids) != 0) return -1;
        uint32_t koff = (uint32_t)e->cache_keys.n;
        if (sqz_bytes_append(&e->cache_keys, s, n) != 0) return enc_nomem(e);
        ci = (int32_t)e->n_cents++;
        e->cents[ci] = (cache_ent){(uint32_t)first, (uint32_t)(e->cache_ids.n - first)};
        if (sqz_strmap_put(&e->cache, e->cache_keys.p, koff, (uint32_t)n, h, ci) < 0)
            return enc_nomem(e);
    }
    const cache_ent *c = &e->cents[ci];
    if (c->n == 0) return 0; /* bytes without tokens */
    if (sqz_ids_reserve(&e->out, c->n) != 0) return enc_nomem(e);
    memcpy(e->out.v + e->out.n, e->cache_ids.v + c->off, c->n * sizeof(int32_t));
    e->out.n += c->n;
    return 0;
}

/* Runs pre-tokenizer step `step` over s[0, n): each match and each stretch between matches goes
 * on to the next step, and after the last step to the merges. */
static int pretokenize(enc_state *e, int step, const char *s, size_t n) {
    const sqz_bpe *b = e->bpe;
    if (n == 0) return 0;
    if (step == b->n_re) return encode_piece(e, s, n);
    pcre2_code *re = b->re[step];
    pcre2_match_data *md = e->md[step];
    size_t pos = 0, gap = 0;
    while (pos < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, md, e->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its stack on the heap */
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_JIT, md, e->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            e->st = sqz_fail(e->ctx, SQZ_ERR_UNSUPPORTED,
                             "%s: pre-tokenizer regex failed on the text: %s", b->name,
                             (const char *)msg);
            return -1;
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms < pos || me > n || me <= ms) { /* an empty match: look further on */
            pos = (ms >= pos && ms < n ? ms : pos) + 1;
            continue;
        }
        if (ms > gap && pretokenize(e, step + 1, s + gap, ms - gap) != 0) return -1;
        if (pretokenize(e, step + 1, s + ms, me - ms) != 0) return -1;
        pos = gap = me;
    }
    if (gap < n && pretokenize(e, step + 1, s + gap, n - gap) != 0) return -1;
    return 0;
}

/* Text between added tokens. */
static int encode_part(enc_state *e, const char *s, size_t n) {
    if (n == 0) return 0;
    if (e->bpe->add_prefix_space && s[0] != ' ') {
        e->prefixed.n = 0;
        if (sqz_bytes_append(&e->prefixed, " ", 1) != 0 ||
            sqz_bytes_append(&e->prefixed, s, n) != 0)
            return enc_nomem(e);
        return pretokenize(e, 0, e->prefixed.p, e->prefixed.n);
    }
    return pretokenize(e, 0, s, n);
}

/* Hugging Face strips with char::is_whitespace; ASCII whitespace covers the tokens that ask. */
static int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static int is_word(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '_' || c >= 0x80;
}

/* Splits text on added tokens: at each position the longest added token that starts there. */
static int encode_text(enc_state *e, const char *t, size_t n) {
    const sqz_bpe *b = e->bpe;
    const unsigned char *u = (const unsigned char *)t;
    size_t part = 0, i = 0;
    while (i < n) {
        int lo = b->added_first[u[i]], hi = b->added_first[u[i] + 1];
        const added_token *hit = NULL;
        for (int k = lo; k < hi; k++) {
            const added_token *a = &b->added[k];
            if (a->len > n - i || memcmp(t + i, b->arena.p + a->off, a->len) != 0) continue;
            if ((a->flags & SQZ_ADDED_SINGLE_WORD) &&
                ((i > 0 && is_word(u[i - 1])) || (i + a->len < n && is_word(u[i + a->len]))))
                continue;
            hit = a;
            break;
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t ms = i, me = i + hit->len;
        if (hit->flags & SQZ_ADDED_LSTRIP)
            while (ms > part && is_space(u[ms - 1])) ms--;
        if (hit->flags & SQZ_ADDED_RSTRIP)
            while (me < n && is_space(u[me])) me++;
        if (encode_part(e, t + part, ms - part) != 0) return -1;
        if (sqz_ids_push(&e->out, hit->id) != 0) return enc_nomem(e);
        part = i = me;
    }
    return encode_part(e, t + part, n - part);
}

sqz_status sqz_bpe_encode(sqz_ctx *ctx, const sqz_tokenizer *tok, const char *text, size_t len,
                          int add_bos, int32_t **ids, size_t *n_ids) {
    const sqz_bpe *b = tok->bpe;
    enc_state e = {.bpe = b, .ctx = ctx, .st = SQZ_OK};
    /* The built-in patterns take a few steps per byte of a match (a run of white space is
     * scanned a couple of times); a limit that grows with the text keeps a pathological regex
     * from a file from hanging the encoder (it fails with an error instead). */
    e.mctx = pcre2_match_context_create(NULL);
    if (!e.mctx) enc_nomem(&e);
    else
        pcre2_set_match_limit(e.mctx,
                              len < 60000000 ? 10000000 + 64 * (uint32_t)len : UINT32_MAX);
    for (int i = 0; i < b->n_re; i++) {
        e.md[i] = pcre2_match_data_create_from_pattern(b->re[i], NULL);
        if (!e.md[i]) enc_nomem(&e);
    }
    /* a guess of the output size: about one token per four bytes of text */
    if (e.st == SQZ_OK && sqz_ids_reserve(&e.out, len / 4 + 16) != 0) enc_nomem(&e);
    if (e.st == SQZ_OK && add_bos && sqz_ids_push(&e.out, tok->bos) != 0) enc_nomem(&e);
    if (e.st == SQZ_OK) encode_text(&e, text, len);
    if (e.st == SQZ_OK) e.st = sqz_ids_finish(ctx, b->name, &e.out, ids, n_ids);
    for (int i = 0; i < b->n_re; i++) pcre2_match_data_free(e.md[i]);
    pcre2_match_context_free(e.mctx);
    free(e.out.v);
    free(e.syms);
    free(e.heap.a);
    sqz_strmap_free(&e.cache);
    free(e.cache_keys.p);
    free(e.cache_ids.v);
    free(e.cents);
    free(e.prefixed.p);
    return e.st;
}

/* ---------------------------------------------------------------- tokenizer.json */

static const cJSON *get(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *get_str(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A JSON boolean, or def when absent or null. */
static int get_bool(const cJSON *o, const char *key, int def) {
    const cJSON *v = get(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* An integral JSON number in [0, MAX_TOKENS), else -1. */
static int as_id(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < MAX_TOKENS) || d != (double)(int)d) return -1;
    return (int)d;
}

/* normalizer: none, or NFC which we take as the identity: the text these byte-level
 * tokenizers see is NFC already in practice (only text in another normal form would differ). */
static sqz_status check_normalizer(sqz_ctx *ctx, const char *name, const cJSON *nz) {
    if (!nz || cJSON_IsNull(nz)) return SQZ_OK;
    const char *type = get_str(nz, "type");
    if (type && strcmp(type, "NFC") == 0) return SQZ_OK;
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *list = get(nz, "normalizers"), *it;
        if (!cJSON_IsArray(list))
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: normalizer Sequence has no list", name);
        cJSON_ArrayForEach(it, list) {
            sqz_status st = check_normalizer(ctx, name, it);
            if (st != SQZ_OK) return st;
        }
        return SQZ_OK;
    }
    return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: normalizer \"%s\" is not supported", name,
                    type ? type : "?");
}

/* pre_tokenizer -> regex splits. Accepts ByteLevel alone (use_regex: the GPT-2 regex) and a
 * Sequence of Split (behavior Isolated) / Digits steps with one ByteLevel. */
static sqz_status parse_pretok(sqz_ctx *ctx, const char *name, const cJSON *pt,
                               sqz_bpe_split *splits, int *n_splits, int *add_prefix_space) {
    *n_splits = 0;
    *add_prefix_space = 0;
    if (!pt || cJSON_IsNull(pt))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: no pre_tokenizer: only byte-level BPE (ByteLevel) is supported",
                        name);
    const cJSON *steps = NULL;
    int n_steps = 1;
    const char *type = get_str(pt, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        steps = get(pt, "pretokenizers");
        if (!cJSON_IsArray(steps))
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: pre_tokenizer Sequence has no list", name);
        n_steps = cJSON_GetArraySize(steps);
    }
    int seen_byte_level = 0;
    for (int i = 0; i < n_steps; i++) {
        const cJSON *s = steps ? cJSON_GetArrayItem(steps, i) : pt;
        const char *t = get_str(s, "type");
        if (!t) return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: pre-tokenizer without a type", name);
        if (*n_splits >= MAX_SPLITS)
            return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: too many pre-tokenizer steps", name);
        if (strcmp(t, "ByteLevel") == 0) {
            if (seen_byte_level)
                return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: two ByteLevel pre-tokenizers",
                                name);
            seen_byte_level = 1;
            /* Hugging Face's defaults are add_prefix_space and use_regex true */
            if (get_bool(s, "add_prefix_space", 1)) {
                if (i != 0)
                    return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                                    "%s: ByteLevel add_prefix_space is only supported as the "
                                    "first pre-tokenizer",
                                    name);
                *add_prefix_space = 1;
            }
            if (get_bool(s, "use_regex", 1))
                splits[(*n_splits)++] = (sqz_bpe_split){SQZ_BPE_RE_GPT2, 0};
        } else if (strcmp(t, "Split") == 0) {
            /* after ByteLevel a Split would see the mapped characters ('Ġ' for ' ') */
            if (seen_byte_level)
                return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                                "%s: a Split pre-tokenizer after ByteLevel is not supported",
                                name);
            const char *beh = get_str(s, "behavior");
            if (!beh || strcmp(beh, "Isolated") != 0)
                return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                                "%s: Split behavior \"%s\" is not supported (only Isolated)",
                                name, beh ? beh : "?");
            if (get_bool(s, "invert", 0))
                return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: inverted Split is not supported",
                                name);
            const cJSON *pat = get(s, "pattern");
            const char *re = get_str(pat, "Regex"), *lit = get_str(pat, "String");
            if (!re && !lit)
                return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: Split without a Regex or String pattern",
                                name);
            splits[(*n_splits)++] = (sqz_bpe_split){re ? re : lit, re ? 0 : 1};
        } else if (strcmp(t, "Digits") == 0) {
            /* Digits is unaffected by the byte map (it sees the same digits either side) */
            splits[(*n_splits)++] = (sqz_bpe_split){
                get_bool(s, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", 0};
        } else {
            return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: pre-tokenizer \"%s\" is not supported",
                            name, t);
        }
    }
    if (!seen_byte_level)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: pre_tokenizer has no ByteLevel step: only byte-level BPE is supported",
                        name);
    return SQZ_OK;
}

/* The id of a special token named in a post-processor: its "ids" entry, else the added token or
 * vocabulary entry with that content. */
static int special_token_id(const cJSON *tp, const cJSON *added, const cJSON *vocab,
                            const char *content) {
    const cJSON *ids = get(get(get(tp, "special_tokens"), content), "ids");
    if (cJSON_IsArray(ids) && cJSON_GetArraySize(ids) >= 1)
        return as_id(cJSON_GetArrayItem(ids, 0));
    const cJSON *a;
    cJSON_ArrayForEach(a, added) {
        const char *c = get_str(a, "content");
        if (c && strcmp(c, content) == 0) return as_id(get(a, "id"));
    }
    return as_id(get(vocab, content));
}

/* add_bos: a TemplateProcessing (alone or in a Sequence) whose "single" template starts with a
 * special token. A special token at the end (EOS) is not added: causal LMs do not want it. */
static sqz_status parse_post(sqz_ctx *ctx, const char *name, const cJSON *pp, const cJSON *added,
                             const cJSON *vocab, int *bos, int *add_bos) {
    const char *type = get_str(pp, "type");
    if (!type) return SQZ_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, get(pp, "processors")) {
            sqz_status st = parse_post(ctx, name, it, added, vocab, bos, add_bos);
            if (st != SQZ_OK || *add_bos) return st;
        }
        return SQZ_OK;
    }
    if (strcmp(type, "TemplateProcessing") != 0) return SQZ_OK;
    const cJSON *single = get(pp, "single");
    const cJSON *first = cJSON_IsArray(single) ? cJSON_GetArrayItem(single, 0) : NULL;
    const cJSON *sp = get(first, "SpecialToken");
    if (!sp) return SQZ_OK;
    const char *content = get_str(sp, "id");
    int id = content ? special_token_id(pp, added, vocab, content) : -1;
    if (id < 0)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: post_processor template starts with an undefined special token "
                        "\"%.60s\"",
                        name, content ? content : "?");
    *bos = id;
    *add_bos = 1;
    return SQZ_OK;
}

static sqz_status load_json(sqz_ctx *ctx, const cJSON *root, const char *name,
                            sqz_tokenizer **out) {
    if (!cJSON_IsObject(root))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: not a tokenizer.json (not a JSON object)",
                        name);
    const cJSON *model = get(root, "model");
    if (!cJSON_IsObject(model))
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: no \"model\" object: not a Hugging Face tokenizer.json", name);
    const char *mtype = get_str(model, "type");
    if (mtype ? strcmp(mtype, "BPE") != 0 : !get(model, "merges"))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: model type \"%s\" is not supported (only byte-level BPE)", name,
                        mtype ? mtype : "?");
    const cJSON *vocab = get(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: model.vocab is missing or not an object", name);
    const cJSON *merges = get(model, "merges");
    if (!cJSON_IsArray(merges))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: model.merges is missing or not an array", name);
    const char *csp = get_str(model, "continuing_subword_prefix");
    const char *eow = get_str(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: BPE with a subword prefix or word suffix is not supported", name);
    /* byte_fallback does not matter: every byte has a token in a byte-level vocabulary; dropout
     * is a training-time option and is ignored. */
    sqz_status st = check_normalizer(ctx, name, get(root, "normalizer"));
    if (st != SQZ_OK) return st;
    sqz_bpe_split splits[MAX_SPLITS];
    int n_splits, add_prefix_space;
    st = parse_pretok(ctx, name, get(root, "pre_tokenizer"), splits, &n_splits, &add_prefix_space);
    if (st != SQZ_OK) return st;

    /* ids */
    const cJSON *added = get(root, "added_tokens"), *it;
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: added_tokens is not an array", name);
    int max_id = -1, count = 0;
    cJSON_ArrayForEach(it, vocab) {
        int id = as_id(it);
        if (id < 0)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: vocab entry \"%.40s\" has a bad id", name,
                            it->string ? it->string : "");
        if (id > max_id) max_id = id;
        count++;
    }
    cJSON_ArrayForEach(it, added) {
        int id = as_id(get(it, "id"));
        if (id < 0 || !get_str(it, "content"))
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: an added token has no valid id or content",
                            name);
        if (id > max_id) max_id = id;
        count++;
    }
    if (max_id < 0) return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: empty vocabulary", name);
    /* ids are dense in real files; this keeps a tiny file from allocating for 2^24 tokens */
    if (max_id > 2 * count + 1024)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: token id %d is far beyond the %d tokens defined", name, max_id,
                        count);
    int n = max_id + 1;
    const char **tokens = calloc((size_t)n, sizeof *tokens);
    int32_t *types = calloc((size_t)n, sizeof *types);
    uint8_t *flags = calloc((size_t)n, 1);
    int n_merges = cJSON_GetArraySize(merges);
    const char **mstr = calloc((size_t)n_merges * 2 + 1, sizeof *mstr);
    if (!tokens || !types || !flags || !mstr) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", name);
        goto done;
    }
    cJSON_ArrayForEach(it, vocab) {
        int id = as_id(it);
        if (tokens[id]) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: token id %d appears twice in model.vocab",
                          name, id);
            goto done;
        }
        tokens[id] = it->string ? it->string : "";
        types[id] = SQZ_TOKEN_NORMAL;
    }
    cJSON_ArrayForEach(it, added) {
        int id = as_id(get(it, "id"));
        tokens[id] = get_str(it, "content");
        types[id] = get_bool(it, "special", 0) ? SQZ_TOKEN_CONTROL : SQZ_TOKEN_USER_DEFINED;
        flags[id] = (uint8_t)((get_bool(it, "lstrip", 0) ? SQZ_ADDED_LSTRIP : 0) |
                              (get_bool(it, "rstrip", 0) ? SQZ_ADDED_RSTRIP : 0) |
                              (get_bool(it, "single_word", 0) ? SQZ_ADDED_SINGLE_WORD : 0));
    }

    /* merges: all "left right" strings, or all [left, right] pairs */
    int pairs = n_merges > 0 && cJSON_IsArray(cJSON_GetArrayItem(merges, 0));
    int r = 0;
    cJSON_ArrayForEach(it, merges) {
        if (pairs) {
            const cJSON *l = cJSON_GetArrayItem(it, 0), *rt = cJSON_GetArrayItem(it, 1);
            if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsString(l) ||
                !cJSON_IsString(rt)) {
                st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: merge %d is not a pair of strings", name,
                              r);
                goto done;
            }
            mstr[2 * r] = l->valuestring;
            mstr[2 * r + 1] = rt->valuestring;
        } else {
            if (!cJSON_IsString(it)) {
                st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: merge %d is not a string", name, r);
                goto done;
            }
            mstr[r] = it->valuestring;
        }
        r++;
    }

    int bos = -1, add_bos = 0, unk = -1;
    st = parse_post(ctx, name, get(root, "post_processor"), added, vocab, &bos, &add_bos);
    if (st != SQZ_OK) goto done;
    const char *unk_s = get_str(model, "unk_token");
    if (unk_s) unk = as_id(get(vocab, unk_s));

    sqz_bpe_spec spec = {
        .name = name,
        .n_tokens = n,
        .tokens = tokens,
        .token_types = types,
        .added_flags = flags,
        .n_merges = n_merges,
        .merges = mstr,
        .merges_are_pairs = pairs,
        .n_splits = n_splits,
        .splits = splits,
        .add_prefix_space = add_prefix_space,
        .ignore_merges = get_bool(model, "ignore_merges", 0),
        .unk_id = unk,
        .bos = bos,
        .eos = -1,
        .add_bos = add_bos,
    };
    st = sqz_tokenizer_new_bpe(ctx, &spec, out);
done:
    free(tokens);
    free(types);
    free(flags);
    free(mstr);
    return st;
}

sqz_status sqz_tokenizer_load_hf_mem(sqz_ctx *ctx, const char *json, size_t len,
                                     const char *name, sqz_tokenizer **out) {
    *out = NULL;
    if (!name) name = "tokenizer.json";
    if (!json && len) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: no data", name);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json ? json : "", len, &end, 0);
    if (!root) {
        size_t at = end && json && end >= json ? (size_t)(end - json) : 0;
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", name,
                        at);
    }
    /* what follows the JSON value may only be white space */
    for (const char *p = end; p && p < json + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: data after the JSON value (byte %zu)",
                            name, (size_t)(p - json));
        }
    }
    sqz_status st = load_json(ctx, root, name, out);
    cJSON_Delete(root);
    return st;
}

sqz_status sqz_tokenizer_load_hf(sqz_ctx *ctx, const char *path, sqz_tokenizer **out) {
    *out = NULL;
    char *buf;
    size_t len;
    sqz_status st = sqz_file_read_all(ctx, path, (size_t)1 << 30, &buf, &len);
    if (st != SQZ_OK) return st;
    st = sqz_tokenizer_load_hf_mem(ctx, buf, len, path, out);
    free(buf);
    return st;
}

/* ---------------------------------------------------------------- export as GGUF metadata */

int sqz_tok_gguf_init(sqz_tok_gguf *e, int n_tokens, int n_merges, int with_scores) {
    memset(e, 0, sizeof *e);
    e->bos = e->eos = e->unk = e->pad = -1;
    e->add_space_prefix = 1;
    e->n_tokens = n_tokens;
    e->n_merges = n_merges;
    size_t nt = (size_t)(n_tokens > 0 ? n_tokens : 1), nm = (size_t)(n_merges > 0 ? n_merges : 1);
    e->tokens = calloc(nt, sizeof *e->tokens);
    e->token_lens = calloc(nt, sizeof *e->token_lens);
    e->tok_off = calloc(nt, sizeof *e->tok_off);
    e->token_types = calloc(nt, sizeof *e->token_types);
    e->merges = calloc(nm, sizeof *e->merges);
    e->merge_lens = calloc(nm, sizeof *e->merge_lens);
    e->merge_off = calloc(nm, sizeof *e->merge_off);
    if (with_scores) e->scores = calloc(nt, sizeof *e->scores);
    if (!e->tokens || !e->token_lens || !e->tok_off || !e->token_types || !e->merges ||
        !e->merge_lens || !e->merge_off || (with_scores && !e->scores))
        return -1;
    return 0;
}

int sqz_tok_gguf_set_token(sqz_tok_gguf *e, int id, const void *s, size_t n, int32_t type) {
    e->tok_off[id] = e->arena.n;
    e->token_lens[id] = n;
    e->token_types[id] = type;
    return sqz_bytes_append(&e->arena, s, n);
}

int sqz_tok_gguf_set_merge(sqz_tok_gguf *e, int i, const void *s, size_t n) {
    e->merge_off[i] = e->arena.n;
    e->merge_lens[i] = n;
    return sqz_bytes_append(&e->arena, s, n);
}

void sqz_tok_gguf_finish(sqz_tok_gguf *e) {
    const char *base = e->arena.p ? e->arena.p : "";
    for (int i = 0; i < e->n_tokens; i++) e->tokens[i] = base + e->tok_off[i];
    for (int i = 0; i < e->n_merges; i++) e->merges[i] = base + e->merge_off[i];
}

void sqz_tok_gguf_free(sqz_tok_gguf *e) {
    if (!e) return;
    free(e->tokens);
    free(e->token_lens);
    free(e->tok_off);
    free(e->token_types);
    free(e->scores);
    free(e->merges);
    free(e->merge_lens);
    free(e->merge_off);
    free(e->arena.p);
    memset(e, 0, sizeof *e);
}

/* Appends the GPT-2 byte-to-unicode spelling of the bytes s[0, n) (the form tokenizer.json and
 * GGUF store byte-level tokens in): each byte becomes one code point of the map, UTF-8 encoded. */
static int map_bytes(const uint16_t *b2u, const char *s, size_t n, sqz_bytes *out) {
    for (size_t i = 0; i < n; i++) {
        unsigned cp = b2u[(unsigned char)s[i]];
        unsigned char u[2];
        size_t k;
        if (cp < 0x80) {
            u[0] = (unsigned char)cp;
            k = 1;
        } else { /* the map's code points are all below 0x800: two bytes */
            u[0] = (unsigned char)(0xc0 | (cp >> 6));
            u[1] = (unsigned char)(0x80 | (cp & 0x3f));
            k = 2;
        }
        if (sqz_bytes_append(out, u, k) != 0) return -1;
    }
    return 0;
}

typedef struct merge_ref {
    int32_t rank, left, right;
} merge_ref;

static int merge_ref_cmp(const void *pa, const void *pb) {
    const merge_ref *a = pa, *b = pb;
    return a->rank < b->rank ? -1 : a->rank > b->rank;
}

/* Case-insensitive: whether s[0, n) contains "pad". */
static int has_pad(const char *s, size_t n) {
    for (size_t i = 0; i + 3 <= n; i++)
        if ((s[i] | 0x20) == 'p' && (s[i + 1] | 0x20) == 'a' && (s[i + 2] | 0x20) == 'd') return 1;
    return 0;
}

sqz_status sqz_bpe_export(sqz_ctx *ctx, const sqz_tokenizer *tok, int n_vocab, sqz_tok_gguf *e) {
    const sqz_bpe *b = tok->bpe;
    memset(e, 0, sizeof *e);
    if (!b->pre)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: cannot express this pre-tokenizer in GGUF (llama.cpp names only the "
                        "GPT-2, Llama-3 and Qwen2 regexes, without a prefix space)",
                        b->name);
    if (n_vocab < b->n_tokens) n_vocab = b->n_tokens;
    /* the merges in rank order (ranks may have gaps where a file listed a merge twice) */
    size_t n_merges = 0;
    for (size_t i = 0; i < b->merge_cap; i++) n_merges += b->merges[i].key != MERGE_EMPTY;
    merge_ref *mr = malloc((n_merges ? n_merges : 1) * sizeof *mr);
    sqz_bytes tmp = {0};
    if (!mr || sqz_tok_gguf_init(e, n_vocab, (int)n_merges, 0) != 0) goto nomem;
    e->model = "gpt2";
    e->pre = b->pre;
    size_t k = 0;
    for (size_t i = 0; i < b->merge_cap; i++) {
        const merge_slot *s = &b->merges[i];
        if (s->key == MERGE_EMPTY) continue;
        mr[k++] = (merge_ref){s->rank, (int32_t)(s->key >> 32), (int32_t)(s->key & 0xffffffffu)};
    }
    qsort(mr, n_merges, sizeof *mr, merge_ref_cmp);

    uint16_t b2u[256];
    int16_t u2b[324];
    byte_map(b2u, u2b);
    for (int id = 0; id < n_vocab; id++) {
        int type = id < b->n_tokens ? b->tok_type[id] : TYPE_NONE;
        int rc;
        if (type == TYPE_NONE) { /* llama.cpp's converter fills holes so */
            char pad[32];
            int n = snprintf(pad, sizeof pad, "[PAD%d]", id);
            rc = sqz_tok_gguf_set_token(e, id, pad, (size_t)n, SQZ_TOKEN_UNUSED);
        } else if (is_added_type(type)) { /* added tokens: their raw content */
            rc = sqz_tok_gguf_set_token(e, id, b->arena.p + b->tok_off[id], b->tok_len[id], type);
            if (e->pad < 0 && type == SQZ_TOKEN_CONTROL &&
                has_pad(b->arena.p + b->tok_off[id], b->tok_len[id]))
                e->pad = id; /* "<|pad|>", "<pad>", "[PAD]": the vocabulary's padding token */
        } else {
            tmp.n = 0;
            rc = map_bytes(b2u, b->arena.p + b->tok_off[id], b->tok_len[id], &tmp);
            if (rc == 0) rc = sqz_tok_gguf_set_token(e, id, tmp.p ? tmp.p : "", tmp.n, type);
        }
        if (rc != 0) goto nomem;
    }
    for (size_t i = 0; i < n_merges; i++) {
        tmp.n = 0;
        int32_t l = mr[i].left, r = mr[i].right;
        if (map_bytes(b2u, b->arena.p + b->tok_off[l], b->tok_len[l], &tmp) != 0 ||
            sqz_bytes_append(&tmp, " ", 1) != 0 ||
            map_bytes(b2u, b->arena.p + b->tok_off[r], b->tok_len[r], &tmp) != 0 ||
            sqz_tok_gguf_set_merge(e, (int)i, tmp.p, tmp.n) != 0)
            goto nomem;
    }
    sqz_tok_gguf_finish(e);
    e->bos = tok->bos;
    e->eos = tok->eos;
    e->unk = b->unk_id;
    e->add_bos = tok->add_bos;
    e->add_eos = 0;
    free(mr);
    free(tmp.p);
    return SQZ_OK;
nomem:
    free(mr);
    free(tmp.p);
    sqz_tok_gguf_free(e);
    return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory exporting the tokenizer", b->name);
}
