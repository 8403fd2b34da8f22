/* tokenizer.c - the tokenizer interface: dispatch to the two families (byte-level BPE in
 * tokenizer/bpe.c, llama2.c in tokenizer/llama2c.c) and the helpers they share (byte-string
 * hash map, growable buffers). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/impl.h"

/* ---------------------------------------------------------------- dispatch */

void sqz_tokenizer_free(sqz_tokenizer *tok) {
    if (!tok) return;
    sqz_bpe_free(tok->bpe);
    sqz_llama2c_free(tok->llama2c);
    free(tok);
}

void sqz_tokenizer_set_special(sqz_tokenizer *tok, int bos, int eos) {
    if (!tok) return;
    if (bos >= 0 && bos < tok->vocab_size) tok->bos = bos;
    if (eos >= 0 && eos < tok->vocab_size) tok->eos = eos;
}

int sqz_tokenizer_vocab_size(const sqz_tokenizer *tok) { return tok ? tok->vocab_size : 0; }
int sqz_tokenizer_bos(const sqz_tokenizer *tok) { return tok ? tok->bos : -1; }
int sqz_tokenizer_eos(const sqz_tokenizer *tok) { return tok ? tok->eos : -1; }
int sqz_tokenizer_add_bos(const sqz_tokenizer *tok) { return tok ? tok->add_bos : 0; }

const char *sqz_tokenizer_kind(const sqz_tokenizer *tok) {
    if (!tok) return "none";
    return tok->kind == SQZ_TOK_LLAMA2C ? "llama2c" : "bpe";
}

sqz_status sqz_tokenizer_encode(sqz_ctx *ctx, const sqz_tokenizer *tok, const char *text,
                                size_t len, int add_bos, int32_t **ids, size_t *n_ids) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!tok || !ids || !n_ids || (!text && len))
        return sqz_fail(ctx, SQZ_ERR_ARG, "tokenize: invalid argument");
    if (add_bos < 0) add_bos = tok->add_bos;
    if (add_bos && tok->bos < 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "tokenize: BOS requested but the tokenizer has none");
    if (!text) text = "";
    if (tok->kind == SQZ_TOK_LLAMA2C)
        return sqz_llama2c_encode(ctx, tok, text, len, add_bos != 0, ids, n_ids);
    return sqz_bpe_encode(ctx, tok, text, len, add_bos != 0, ids, n_ids);
}

sqz_status sqz_tokenizer_decode(const sqz_tokenizer *tok, int32_t prev, int32_t id, char *buf,
                                size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!tok || !len || (!buf && cap)) return SQZ_ERR_ARG;
    if (id < 0 || id >= tok->vocab_size) return SQZ_ERR_RANGE;
    if (id == tok->bos || id == tok->eos) return SQZ_OK; /* BOS/EOS decode to nothing */
    size_t n = 0;
    const char *p = tok->kind == SQZ_TOK_LLAMA2C ? sqz_llama2c_piece(tok, prev, id, &n)
                                                 : sqz_bpe_piece(tok->bpe, id, &n);
    if (n) memcpy(buf, p, n < cap ? n : cap);
    *len = n;
    return SQZ_OK;
}

/* ---------------------------------------------------------------- byte-string hash map */

#define SLOT_EMPTY UINT32_MAX

uint32_t sqz_strmap_hash(const void *key, size_t len) {
    /* FNV-1a, then a final avalanche so the low bits (the slot index) depend on every byte. */
    const unsigned char *p = key;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    return h;
}

int32_t sqz_strmap_get(const sqz_strmap *m, const char *arena, const void *key, size_t len,
                       uint32_t hash) {
    if (!m->cap) return -1;
    size_t mask = m->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const sqz_strmap_slot *s = &m->slots[i];
        if (s->off == SLOT_EMPTY) return -1;
        if (s->hash == hash && s->len == len && memcmp(arena + s->off, key, len) == 0)
            return s->val;
    }
}

static int strmap_grow(sqz_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    sqz_strmap_slot *slots = malloc(cap * sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < cap; i++) slots[i].off = SLOT_EMPTY;
    for (size_t j = 0; j < m->cap; j++) {
        if (m->slots[j].off == SLOT_EMPTY) continue;
        size_t i = m->slots[j].hash & (cap - 1);
        while (slots[i].off != SLOT_EMPTY) i = (i + 1) & (cap - 1);
        slots[i] = m->slots[j];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int sqz_strmap_put(sqz_strmap *m, const char *arena, uint32_t off, uint32_t len, uint32_t hash,
                   int32_t val) {
    /* keep the load factor under 1/2: probes stay short */
    if ((m->count + 1) * 2 > m->cap && strmap_grow(m) != 0) return -1;
    size_t mask = m->cap - 1;
    size_t i = hash & mask;
    for (;; i = (i + 1) & mask) {
        sqz_strmap_slot *s = &m->slots[i];
        if (s->off == SLOT_EMPTY) break;
        if (s->hash == hash && s->len == len && memcmp(arena + s->off, arena + off, len) == 0)
            return 0;
    }
    m->slots[i] = (sqz_strmap_slot){hash, off, len, val};
    m->count++;
    return 1;
}

void sqz_strmap_free(sqz_strmap *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- buffers */

int sqz_bytes_append(sqz_bytes *b, const void *src, size_t n) {
    if (n > (size_t)UINT32_MAX - 1 - b->n) return -1;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

int sqz_ids_reserve(sqz_ids *a, size_t extra) {
    if (a->n + extra <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 64;
    while (cap < a->n + extra) {
        if (cap > SIZE_MAX / 2 / sizeof(int32_t)) return -1;
        cap *= 2;
    }
    int32_t *v = realloc(a->v, cap * sizeof *v);
    if (!v) return -1;
    a->v = v;
    a->cap = cap;
    return 0;
}

sqz_status sqz_ids_finish(sqz_ctx *ctx, const char *name, sqz_ids *a, int32_t **ids,
                          size_t *n_ids) {
    if (!a->v && sqz_ids_reserve(a, 1) != 0)
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory while tokenizing", name);
    *ids = a->v;
    *n_ids = a->n;
    a->v = NULL;
    a->n = a->cap = 0;
    return SQZ_OK;
}

/* ---------------------------------------------------------------- the merge loop */

static inline int merge_before(const sqz_merge *a, const sqz_merge *b) {
    return a->key < b->key || (a->key == b->key && a->pos < b->pos);
}

int sqz_merge_push(sqz_merge_heap *h, sqz_merge x) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        sqz_merge *a = realloc(h->a, cap * sizeof *a);
        if (!a) return -1;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_before(&x, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = x;
    return 0;
}

sqz_merge sqz_merge_pop(sqz_merge_heap *h) {
    sqz_merge top = h->a[0], x = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && merge_before(&h->a[c + 1], &h->a[c])) c++;
        if (!merge_before(&h->a[c], &x)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n) h->a[i] = x;
    return top;
}

int sqz_merge_apply(sqz_sym *s, const sqz_merge *m) {
    if (s[m->pos].id != m->left) return 0;
    const int32_t nx = s[m->pos].next;
    if (nx < 0 || s[nx].id != m->right) return 0;
    s[m->pos].id = m->result;
    s[m->pos].next = s[nx].next;
    if (s[nx].next >= 0) s[s[nx].next].prev = m->pos;
    s[nx].id = -1;
    return 1;
}
