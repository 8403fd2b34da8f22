/* tokenizer/impl.h - internals shared by the tokenizer files (tokenizer.c, tokenizer/bpe.c,
 * tokenizer/llama2c.c) and by loaders that build a tokenizer without a tokenizer.json (GGUF):
 * the tokenizer object, a byte-string hash map, a growable id vector, and the array-based BPE
 * constructor sqz_tokenizer_new_bpe. Not part of the public API.
 */
#ifndef SQZ_TOKENIZER_IMPL_H
#define SQZ_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* ---------------------------------------------------------------- the object */

typedef enum sqz_tok_kind { SQZ_TOK_BPE = 1, SQZ_TOK_LLAMA2C = 2 } sqz_tok_kind;

typedef struct sqz_bpe sqz_bpe;
typedef struct sqz_llama2c sqz_llama2c;

struct sqz_tokenizer {
    sqz_tok_kind kind;
    int vocab_size;
    int bos, eos; /* -1 if none */
    int add_bos;  /* the tokenizer asks for BOS */
    sqz_bpe *bpe;         /* kind == SQZ_TOK_BPE */
    sqz_llama2c *llama2c; /* kind == SQZ_TOK_LLAMA2C */
};

/* Implemented by the family files; the public functions in tokenizer.c dispatch to them. */
void sqz_bpe_free(sqz_bpe *bpe);
sqz_status sqz_bpe_encode(sqz_ctx *ctx, const sqz_tokenizer *tok, const char *text, size_t len,
                          int add_bos, int32_t **ids, size_t *n_ids);
/* The bytes of token id (valid while the tokenizer lives); *n = 0 for tokens that decode to
 * nothing. id must be in range. */
const char *sqz_bpe_piece(const sqz_bpe *bpe, int32_t id, size_t *n);
/* 1 if id is an added token (matched in raw text, not made by merges). */
int sqz_bpe_is_added(const sqz_bpe *bpe, int32_t id);

void sqz_llama2c_free(sqz_llama2c *l);
sqz_status sqz_llama2c_encode(sqz_ctx *ctx, const sqz_tokenizer *tok, const char *text,
                              size_t len, int add_bos, int32_t **ids, size_t *n_ids);
const char *sqz_llama2c_piece(const sqz_tokenizer *tok, int32_t prev, int32_t id, size_t *n);

/* ---------------------------------------------------------------- array-based BPE */

/* Token types, numbered as GGUF's tokenizer.ggml.token_type so a GGUF loader can pass its array
 * through unchanged. */
enum {
    SQZ_TOKEN_NORMAL = 1,
    SQZ_TOKEN_UNKNOWN = 2,
    SQZ_TOKEN_CONTROL = 3,      /* special added token: matched in raw text, decodes to nothing */
    SQZ_TOKEN_USER_DEFINED = 4, /* non-special added token: matched in raw text, decodes as is */
    SQZ_TOKEN_UNUSED = 5,
    SQZ_TOKEN_BYTE = 6
};

/* Flags of added tokens (Hugging Face's lstrip / rstrip / single_word). */
enum { SQZ_ADDED_LSTRIP = 1, SQZ_ADDED_RSTRIP = 2, SQZ_ADDED_SINGLE_WORD = 4 };

/* Pre-tokenizer regexes that Hugging Face tokenizer.json files and llama.cpp's GGUF
 * "tokenizer.ggml.pre" names stand for (PCRE2 syntax, compiled in UTF + UCP mode). */
#define SQZ_BPE_RE_GPT2                                                                    \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define SQZ_BPE_RE_LLAMA3                                                                  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define SQZ_BPE_RE_QWEN2                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"    \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* One pre-tokenizer step: split each piece on the matches of pattern, keeping the matches and
 * the text between them as pieces of their own (Hugging Face's behavior "Isolated"). */
typedef struct sqz_bpe_split {
    const char *pattern;
    int literal; /* pattern is a plain string, not a regex */
} sqz_bpe_split;

/* Everything a byte-level BPE tokenizer is made of, as arrays. */
typedef struct sqz_bpe_spec {
    const char *name; /* for messages (the file) */
    int n_tokens;
    /* tokens[id]: normal tokens in the GPT-2 byte-to-unicode alphabet ("Ġthe"); CONTROL and
     * USER_DEFINED tokens as their raw content ("<|eot_id|>"); NULL for an id with no token. */
    const char *const *tokens;
    const int32_t *token_types; /* [n_tokens] SQZ_TOKEN_*, or NULL: all normal */
    const uint8_t *added_flags; /* [n_tokens] SQZ_ADDED_* of added tokens, or NULL: none */
    int n_merges;
    /* merges_are_pairs == 0: n_merges strings "left right" (GGUF tokenizer.ggml.merges);
     * merges_are_pairs == 1: 2 * n_merges strings, left then right. Rank = index. */
    const char *const *merges;
    int merges_are_pairs;
    int n_splits; /* pre-tokenizer steps, applied in order; 0: the text is one piece */
    const sqz_bpe_split *splits;
    int add_prefix_space; /* prepend ' ' to text (between added tokens) not starting with one */
    int ignore_merges;    /* a piece that is a token as a whole is that token (Llama-3) */
    int unk_id;           /* used for bytes with no token; -1: such bytes are skipped */
    int bos, eos;         /* -1 if none */
    int add_bos;
} sqz_bpe_spec;

/* Builds a byte-level BPE tokenizer. Checks every merge names known tokens and yields one. */
sqz_status sqz_tokenizer_new_bpe(sqz_ctx *ctx, const sqz_bpe_spec *spec, sqz_tokenizer **out);

/* ---------------------------------------------------------------- SentencePiece from arrays */

/* A SentencePiece-style ("llama" in GGUF) vocabulary as arrays: what llama.cpp's
 * tokenizer.ggml.* keys hold. Built into the llama2.c tokenizer family (same encoder: pieces
 * merged by best score, <0xXX> byte tokens for characters without a piece). */
typedef struct sqz_spm_spec {
    const char *name; /* for messages (the file) */
    int n_tokens;
    /* tokens[id]: the piece with U+2581 ("▁") standing for a space, as GGUF stores it;
     * token_lens[id] its length in bytes (token_lens NULL: NUL-terminated strings) */
    const char *const *tokens;
    const size_t *token_lens;
    const float *scores;        /* [n_tokens], or NULL: all 0 */
    const int32_t *token_types; /* [n_tokens] SQZ_TOKEN_*, or NULL: all normal */
    int unk_id, bos, eos;       /* -1 if none */
    int add_bos;
    int add_space_prefix; /* prepend a space to the text (SentencePiece's dummy prefix) */
} sqz_spm_spec;

sqz_status sqz_tokenizer_new_spm(sqz_ctx *ctx, const sqz_spm_spec *spec, sqz_tokenizer **out);

/* ---------------------------------------------------------------- shared helpers */

/* Open-addressing hash map from byte strings to non-negative int32 values. Keys are not copied:
 * a slot holds the offset and length of its key in an arena the caller owns and passes to every
 * call, so the arena may be reallocated (offsets stay valid). */
typedef struct sqz_strmap_slot {
    uint32_t hash;
    uint32_t off; /* UINT32_MAX: empty slot */
    uint32_t len;
    int32_t val;
} sqz_strmap_slot;

typedef struct sqz_strmap {
    sqz_strmap_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t count;
} sqz_strmap;

uint32_t sqz_strmap_hash(const void *key, size_t len);
/* The value of key, or -1. */
int32_t sqz_strmap_get(const sqz_strmap *m, const char *arena, const void *key, size_t len,
                       uint32_t hash);
/* Inserts arena[off, off + len) -> val unless the key is already present (the first value
 * wins). Returns 1 inserted, 0 already present, -1 out of memory. */
int sqz_strmap_put(sqz_strmap *m, const char *arena, uint32_t off, uint32_t len, uint32_t hash,
                   int32_t val);
void sqz_strmap_free(sqz_strmap *m);

/* A growable byte buffer (arena). */
typedef struct sqz_bytes {
    char *p;
    size_t n, cap;
} sqz_bytes;
/* Appends n bytes; returns 0, or -1 when out of memory or past 4 GiB (offsets are 32-bit). */
int sqz_bytes_append(sqz_bytes *b, const void *src, size_t n);

/* A growable vector of token ids. */
typedef struct sqz_ids {
    int32_t *v;
    size_t n, cap;
} sqz_ids;
int sqz_ids_reserve(sqz_ids *a, size_t extra); /* 0, or -1 when out of memory */
static inline int sqz_ids_push(sqz_ids *a, int32_t id) {
    if (a->n == a->cap && sqz_ids_reserve(a, 1) != 0) return -1;
    a->v[a->n++] = id;
    return 0;
}

/* Hands an id vector to the caller of sqz_tokenizer_encode: never a NULL array on success. */
sqz_status sqz_ids_finish(sqz_ctx *ctx, const char *name, sqz_ids *a, int32_t **ids,
                          size_t *n_ids);

/* The merge loop both BPE families run (bpe.c by rank, llama2c.c by score): a doubly linked
 * list of symbols and a binary heap of candidate merges, the best first. */
typedef struct sqz_sym {
    int32_t id; /* -1: merged away */
    int32_t prev, next;
} sqz_sym;

typedef struct sqz_merge {
    double key; /* lowest first (a rank, or minus a score); among equal keys the leftmost pos */
    int32_t pos;
    int32_t left, right, result; /* the ids of the pair and of what it merges into */
} sqz_merge;

typedef struct sqz_merge_heap {
    sqz_merge *a;
    size_t n, cap;
} sqz_merge_heap;

int sqz_merge_push(sqz_merge_heap *h, sqz_merge x); /* 0, or -1 when out of memory */
sqz_merge sqz_merge_pop(sqz_merge_heap *h);       /* the best; h->n > 0 */
/* Merges m's pair in the list s unless it is stale (a symbol merged since m was pushed):
 * returns 1 merged, 0 stale. The merged symbol keeps the left position m.pos. */
int sqz_merge_apply(sqz_sym *s, const sqz_merge *m);

/* ---------------------------------------------------------------- export as GGUF metadata */

/* A tokenizer as llama.cpp's GGUF metadata (tokenizer.ggml.*), the way its converter
 * (convert_hf_to_gguf.py) writes it. Strings are not NUL-terminated: use the lengths. */
typedef struct sqz_tok_gguf {
    const char *model;   /* tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SPM) */
    const char *pre;     /* tokenizer.ggml.pre: "gpt-2", "llama-bpe", "qwen2"; "default" */
    int n_tokens;
    const char **tokens; /* [n_tokens]: BPE in GPT-2's byte-to-unicode alphabet, SPM with "▁" */
    size_t *token_lens;
    int32_t *token_types; /* [n_tokens] SQZ_TOKEN_* */
    float *scores;        /* [n_tokens] for "llama"; NULL for "gpt2" */
    int n_merges;         /* "gpt2": merges "left right" in rank order */
    const char **merges;
    size_t *merge_lens;
    int bos, eos, unk, pad; /* -1: none */
    int add_bos, add_eos;
    int add_space_prefix;   /* "llama" only: 1 is llama.cpp's default (the key is not written) */
    /* storage */
    sqz_bytes arena;
    size_t *tok_off, *merge_off;
} sqz_tok_gguf;

/* Exports tok padded to n_vocab tokens (ids without a token become "[PAD<id>]", type UNUSED, as
 * llama.cpp's converter writes them). Fails with SQZ_ERR_UNSUPPORTED when the tokenizer cannot be
 * expressed (a pre-tokenizer llama.cpp has no name for). Free with sqz_tok_gguf_free. */
sqz_status sqz_bpe_export(sqz_ctx *ctx, const sqz_tokenizer *tok, int n_vocab, sqz_tok_gguf *out);
sqz_status sqz_llama2c_export(sqz_ctx *ctx, const sqz_tokenizer *tok, int n_vocab,
                              sqz_tok_gguf *out);
void sqz_tok_gguf_free(sqz_tok_gguf *e);

/* Building blocks of the exporters: _init allocates the arrays for n_tokens tokens (and scores
 * when with_scores) and n_merges merges; _set_token / _set_merge copy a string into the arena;
 * _finish points tokens / merges into the arena (call it last: the arena may move before).
 * Each returns 0, or -1 when out of memory. */
int sqz_tok_gguf_init(sqz_tok_gguf *e, int n_tokens, int n_merges, int with_scores);
int sqz_tok_gguf_set_token(sqz_tok_gguf *e, int id, const void *s, size_t n, int32_t type);
int sqz_tok_gguf_set_merge(sqz_tok_gguf *e, int i, const void *s, size_t n);
void sqz_tok_gguf_finish(sqz_tok_gguf *e);

#endif
