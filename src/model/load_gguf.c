/* load_gguf.c - models from GGUF files (llama.cpp's format) and sqz's own container sqzf (the
 * same layout, docs/sqzf.md; its matrices may also be mixllm's mixed-precision ones): the llama architecture (which is
 * also what llama.cpp writes for Mistral) and qwen2, any tensor type sqz computes with, and the
 * tokenizer from the file's metadata: "gpt2" byte-level BPE or "llama" SentencePiece.
 *
 * RoPE: llama.cpp's "llama" graphs rotate interleaved pairs (2i, 2i+1) and its converter stores
 * Q/K rows permuted to match; "qwen2" graphs use NEOX rotation, the HF pairing (i, i + hd/2),
 * with rows unpermuted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/sp8.h"
#include "io/gguf.h"
#include "model/model.h"
#include "tokenizer/impl.h"

/* The metadata key "<arch>.<suffix>". */
static const char *akey(char *buf, size_t cap, const char *arch, const char *suffix) {
    snprintf(buf, cap, "%s.%s", arch, suffix);
    return buf;
}

static sqz_status get_int(sqz_ctx *ctx, const sqz_gguf *g, const char *arch, const char *suffix,
                          int optional, int *out) {
    char k[128];
    akey(k, sizeof k, arch, suffix);
    if (optional && sqz_gguf_find_key(g, k) < 0) return SQZ_OK;
    int32_t v;
    sqz_status st = sqz_gguf_get_i32(ctx, g, k, &v);
    if (st == SQZ_OK) *out = v;
    return st;
}

static sqz_status get_float(sqz_ctx *ctx, const sqz_gguf *g, const char *arch, const char *suffix,
                            float *out) {
    char k[128];
    akey(k, sizeof k, arch, suffix);
    if (sqz_gguf_find_key(g, k) < 0) return SQZ_OK; /* keep the default */
    return sqz_gguf_get_f32(ctx, g, k, out);
}

/* One part of a mixed matrix: NAME + suffix, 2-D [cols, rows'] of an allowed type; absent: 0
 * rows. */
static sqz_status mix_part(sqz_ctx *ctx, const sqz_gguf *g, const char *name, const char *suffix,
                           int64_t cols, int64_t max_rows, const sqz_gguf_tensor **out) {
    char full[128];
    snprintf(full, sizeof full, "%s%s", name, suffix);
    *out = sqz_gguf_find_tensor(g, full);
    const sqz_gguf_tensor *t = *out;
    if (!t) return SQZ_OK;
    const int is8 = !strcmp(suffix, SQZ_MIX_SUFFIX_HI);
    const int type_ok = is8 ? t->type == SQZ_TYPE_MX8 : t->type == SQZ_TYPE_MX4 || t->type == SQZ_TYPE_MX3;
    if (!type_ok)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor %s has type %s (want %s)", sqz_gguf_path(g),
                        full, sqz_type_name(t->type), is8 ? "mx8" : "mx4 or mx3");
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] > max_rows)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld]; want [%lld, <= %lld]",
                        sqz_gguf_path(g), full, (long long)t->ne[0], (long long)t->ne[1],
                        (long long)cols, (long long)max_rows);
    return SQZ_OK;
}

/* A mixllm matrix (docs/sqzf.md): NAME.mix_perm (i32 [rows], a permutation: the output feature
 * of each stored row), NAME.mix_hi (mx8 [cols, n8]) and NAME.mix_lo (mx4 or mx3 [cols,
 * rows - n8]); either part may be absent when it has no rows. Or a plain mx8 / mx4 / mx3 tensor
 * NAME (perm = identity). The view and a copy of the map are owned by m. */
static sqz_status get_mix(sqz_ctx *ctx, sqz_model *m, const char *name, int64_t rows, int64_t cols,
                          const sqz_gguf_tensor *plain, sqz_tensor *t) {
    const sqz_gguf *g = m->gguf;
    const char *path = sqz_gguf_path(g);
    sqz_mix_tensor *mx = sqz_model_own(m, calloc(1, sizeof *mx));
    int32_t *perm = sqz_model_own(m, malloc((size_t)rows * sizeof *perm));
    uint8_t *seen = calloc((size_t)rows, 1);
    if (!mx || !perm || !seen) {
        free(seen);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    sqz_status st = SQZ_OK;
    if (plain) {
        if (plain->n_dims != 2 || plain->ne[0] != cols || plain->ne[1] != rows)
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld]; want [%lld, %lld]",
                          path, name, (long long)plain->ne[0], (long long)plain->ne[1],
                          (long long)cols, (long long)rows);
        for (int64_t i = 0; i < rows; i++) perm[i] = (int32_t)i;
        mx->n8 = plain->type == SQZ_TYPE_MX8 ? rows : 0;
        mx->hi = mx->n8 ? plain->data : NULL;
        mx->lo = mx->n8 ? NULL : plain->data;
        mx->lo_type = mx->n8 ? SQZ_TYPE_MX4 : (sqz_type)plain->type;
    } else {
        char pn[128];
        snprintf(pn, sizeof pn, "%s%s", name, SQZ_MIX_SUFFIX_PERM);
        const sqz_gguf_tensor *pt = sqz_gguf_find_tensor(g, pn), *hi, *lo;
        if (pt->type != 26 /* ggml i32 */ || pt->n_dims != 1 || pt->ne[0] != rows)
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor %s must be i32 [%lld]", path, pn, (long long)rows);
        if (!st) st = mix_part(ctx, g, name, SQZ_MIX_SUFFIX_HI, cols, rows, &hi);
        if (!st) st = mix_part(ctx, g, name, SQZ_MIX_SUFFIX_LO, cols, rows, &lo);
        if (!st && (hi ? hi->ne[1] : 0) + (lo ? lo->ne[1] : 0) != rows)
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s: %lld + %lld stored rows, want %lld", path, name,
                          (long long)(hi ? hi->ne[1] : 0), (long long)(lo ? lo->ne[1] : 0), (long long)rows);
        for (int64_t i = 0; !st && i < rows; i++) {
            memcpy(&perm[i], (const char *)pt->data + 4 * i, 4); /* the file may be unaligned */
            if (perm[i] < 0 || perm[i] >= rows || seen[perm[i]])
                st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s is not a permutation of 0..%lld (entry %lld = %d)",
                              path, pn, (long long)rows - 1, (long long)i, perm[i]);
            else
                seen[perm[i]] = 1;
        }
        if (!st) {
            mx->n8 = hi ? hi->ne[1] : 0;
            mx->hi = hi ? hi->data : NULL;
            mx->lo = lo ? lo->data : NULL;
            mx->lo_type = lo ? (sqz_type)lo->type : SQZ_TYPE_MX4;
        }
    }
    free(seen);
    if (st) return st;
    mx->perm = perm;
    t->type = SQZ_TYPE_MIXLLM;
    t->rows = rows;
    t->cols = cols;
    t->data = mx;
    return SQZ_OK;
}

/* A sparse int8 matrix (docs/sparse.md): NAME.sp8_off (i64 [rows + 1]) and NAME.sp8_data
 * (i8 [bytes]), checked block by block (sqz_sp8_check) so that the kernels never read outside
 * the data. The offsets are copied (the file's may be unaligned); the data is the file's. */
static sqz_status get_sp8(sqz_ctx *ctx, sqz_model *m, const char *name, int64_t rows, int64_t cols,
                          const sqz_gguf_tensor *ot, sqz_tensor *t) {
    const sqz_gguf *g = m->gguf;
    const char *path = sqz_gguf_path(g);
    char dn[128];
    snprintf(dn, sizeof dn, "%s%s", name, SQZ_SP8_SUFFIX_DATA);
    const sqz_gguf_tensor *dt = sqz_gguf_find_tensor(g, dn);
    if (ot->type != 27 /* ggml i64 */ || ot->n_dims != 1 || ot->ne[0] != rows + 1)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor %s%s must be i64 [%lld]", path, name, SQZ_SP8_SUFFIX_OFF,
                        (long long)rows + 1);
    if (!dt || dt->type != 24 /* ggml i8 */ || dt->n_dims != 1)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s: no i8 tensor %s", path, name, dn);
    if (cols % SQZ_SP8_BLOCK)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s: sp8 rows of %lld weights (not a multiple of %d)", path, name,
                        (long long)cols, SQZ_SP8_BLOCK);
    uint32_t layout = 1; /* files from before the key have layout 1 */
    if (sqz_gguf_find_key(g, SQZ_KEY_SP8_LAYOUT) >= 0 && sqz_gguf_get_u32(ctx, g, SQZ_KEY_SP8_LAYOUT, &layout))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s is not a u32", path, SQZ_KEY_SP8_LAYOUT);
    if (layout != SQZ_SP8_LAYOUT)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: sparse int8 (sp8) matrices in row layout %u, which this sqz does not read (layout %d): "
                        "prune the model again (docs/sparse.md)",
                        path, layout, SQZ_SP8_LAYOUT);
    sqz_sp8_tensor *sp = sqz_model_own(m, calloc(1, sizeof *sp));
    uint64_t *off = sqz_model_own(m, malloc((size_t)(rows + 1) * sizeof *off));
    if (!sp || !off) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    memcpy(off, ot->data, (size_t)(rows + 1) * sizeof *off);
    if (sqz_sp8_check(off, dt->data, (size_t)dt->ne[0], rows, cols))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s: the sparse rows do not match their offsets and masks", path,
                        name);
    sp->row_off = off;
    sp->data = dt->data;
    t->type = SQZ_TYPE_SP8;
    t->rows = rows;
    t->cols = cols;
    t->data = sp;
    return SQZ_OK;
}

/* A low-rank matrix (docs/lowrank.md): NAME.lr_a [cols, rank] and NAME.lr_b [rank, rows], two
 * plain matrices of types sqz computes with; W = b . a. */
static sqz_status get_lr(sqz_ctx *ctx, sqz_model *m, const char *name, int64_t rows, int64_t cols,
                         const sqz_gguf_tensor *at, sqz_tensor *t) {
    const sqz_gguf *g = m->gguf;
    const char *path = sqz_gguf_path(g);
    char bn[128];
    snprintf(bn, sizeof bn, "%s%s", name, SQZ_LR_SUFFIX_B);
    const sqz_gguf_tensor *bt = sqz_gguf_find_tensor(g, bn);
    if (!bt) return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s%s without %s", path, name, SQZ_LR_SUFFIX_A, bn);
    const sqz_gguf_tensor *p[2] = { at, bt };
    for (int i = 0; i < 2; i++)
        if (!sqz_type_usable(p[i]->type) || !sqz_type_has_layout(p[i]->type) || p[i]->n_dims != 2)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s%s: a low-rank factor must be a 2-D matrix of a row type",
                            path, name, i ? SQZ_LR_SUFFIX_B : SQZ_LR_SUFFIX_A);
    const int64_t rank = at->ne[1];
    if (at->ne[0] != cols || bt->ne[1] != rows || bt->ne[0] != rank || rank <= 0 || rank * (rows + cols) >= rows * cols)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: %s: factors [%lld, %lld] and [%lld, %lld] do not make a %lld x %lld matrix of rank below "
                        "rows*cols/(rows+cols)",
                        path, name, (long long)at->ne[0], (long long)at->ne[1], (long long)bt->ne[0],
                        (long long)bt->ne[1], (long long)rows, (long long)cols);
    sqz_lr_tensor *lr = sqz_model_own(m, calloc(1, sizeof *lr));
    if (!lr) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    lr->a = (sqz_tensor){ .type = (sqz_type)at->type, .rows = rank, .cols = cols, .data = at->data };
    lr->b = (sqz_tensor){ .type = (sqz_type)bt->type, .rows = rows, .cols = rank, .data = bt->data };
    *t = (sqz_tensor){ .type = SQZ_TYPE_LOWRANK, .rows = rows, .cols = cols, .data = lr };
    return SQZ_OK;
}

/* A BitStack matrix (formats/bitstack.h, docs/bitstack.md): NAME.bs_scale f32 [cols],
 * NAME.bs_order i32 [K], NAME.bs_sign i8 [ceil(cols/8), rows*K], NAME.bs_u f16 [r, rows*K],
 * NAME.bs_v f16 [cols, r*K]; the order increasing. Registered with the model, whose load ends
 * by summing every block (sqz_model_bitstack_fit). */
static sqz_status get_bs(sqz_ctx *ctx, sqz_model *m, const char *name, int64_t rows, int64_t cols,
                         const sqz_gguf_tensor *sc, sqz_tensor *t) {
    const sqz_gguf *g = m->gguf;
    const char *path = sqz_gguf_path(g);
    static const char *sfx[4] = { SQZ_BS_SUFFIX_ORDER, SQZ_BS_SUFFIX_SIGN, SQZ_BS_SUFFIX_U, SQZ_BS_SUFFIX_V };
    static const int types[4] = { 26 /* i32 */, 24 /* i8 */, SQZ_TYPE_F16, SQZ_TYPE_F16 };
    const sqz_gguf_tensor *p[4];
    for (int i = 0; i < 4; i++) {
        char pn[128];
        snprintf(pn, sizeof pn, "%s%s", name, sfx[i]);
        p[i] = sqz_gguf_find_tensor(g, pn);
        if (!p[i] || p[i]->type != types[i] || p[i]->n_dims != (i ? 2 : 1))
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: BitStack matrix %s: %s is missing or not %s of %s", path, name,
                            pn, i ? "a matrix" : "a vector", sqz_type_name(types[i]));
    }
    const int64_t K = p[0]->ne[0], r = p[2]->ne[0];
    if (sc->type != SQZ_TYPE_F32 || sc->n_dims != 1 || sc->ne[0] != cols || K <= 0 || K > 4096 ||
        r <= 0 || r > SQZ_BS_MAX_RANK || p[1]->ne[0] != sqz_bs_row_bytes(cols) || p[1]->ne[1] != rows * K ||
        p[2]->ne[0] != r || p[2]->ne[1] != rows * K || p[3]->ne[0] != cols || p[3]->ne[1] != r * K)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: BitStack matrix %s: its tensors do not make %lld x %lld blocks",
                        path, name, (long long)rows, (long long)cols);
    const int32_t *order = p[0]->data;
    const float *scale = sc->data;
    for (int64_t k = 0; k < K; k++)
        if (order[k] < 0 || (k && order[k] <= order[k - 1]))
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: BitStack matrix %s: its block order is not increasing", path,
                            name);
    for (int64_t j = 0; j < cols; j++)
        if (!(scale[j] > 0) || scale[j] > 1e30f)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: BitStack matrix %s: scale %lld is not a positive number", path,
                            name, (long long)j);
    const sqz_bs_tensor v = { .n_blocks = K, .rank = r, .n_use = K, .scale = scale, .order = order,
                              .sign = p[1]->data, .u = p[2]->data, .v = p[3]->data };
    *t = (sqz_tensor){ .type = SQZ_TYPE_BITSTACK, .rows = rows, .cols = cols, .data = NULL };
    return sqz_model_add_bs(ctx, m, name, t, &v);
}

/* Tensor name with ggml shape (cols, rows) or a vector of cols (rows = 0). */
static sqz_status get_tensor(sqz_ctx *ctx, sqz_model *m, const char *name, int64_t rows,
                             int64_t cols, int optional, sqz_tensor *t) {
    memset(t, 0, sizeof *t);
    const char *path = sqz_gguf_path(m->gguf);
    if (rows > 0 && sqz_gguf_is_sqzf(m->gguf)) { /* sqzf: a matrix may be mixllm's */
        const sqz_gguf_tensor *plain = sqz_gguf_find_tensor(m->gguf, name);
        char pn[128];
        snprintf(pn, sizeof pn, "%s%s", name, SQZ_MIX_SUFFIX_PERM);
        if (plain && plain->type >= SQZ_TYPE_MX8 && plain->type <= SQZ_TYPE_MX3)
            return get_mix(ctx, m, name, rows, cols, plain, t);
        if (!plain && sqz_gguf_find_tensor(m->gguf, pn)) return get_mix(ctx, m, name, rows, cols, NULL, t);
        snprintf(pn, sizeof pn, "%s%s", name, SQZ_SP8_SUFFIX_OFF);
        const sqz_gguf_tensor *ot = plain ? NULL : sqz_gguf_find_tensor(m->gguf, pn);
        if (ot) return get_sp8(ctx, m, name, rows, cols, ot, t);
        snprintf(pn, sizeof pn, "%s%s", name, SQZ_LR_SUFFIX_A);
        const sqz_gguf_tensor *lt = plain ? NULL : sqz_gguf_find_tensor(m->gguf, pn);
        if (lt) return get_lr(ctx, m, name, rows, cols, lt, t);
        snprintf(pn, sizeof pn, "%s%s", name, SQZ_BS_SUFFIX_SCALE);
        const sqz_gguf_tensor *bt = plain ? NULL : sqz_gguf_find_tensor(m->gguf, pn);
        if (bt) return get_bs(ctx, m, name, rows, cols, bt, t);
    }
    if (optional && !sqz_gguf_find_tensor(m->gguf, name)) return SQZ_OK;
    const sqz_gguf_tensor *gt;
    sqz_status st = sqz_gguf_require_tensor(ctx, m->gguf, name, &gt);
    if (st) return st;
    if (!sqz_type_usable(gt->type))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which sqz cannot run yet",
                        path, name, sqz_type_name(gt->type));
    const int is_vec = rows == 0;
    const int ok = is_vec ? (gt->n_dims == 1 && gt->ne[0] == cols)
                          : (gt->n_dims == 2 && gt->ne[0] == cols && gt->ne[1] == rows);
    if (!ok)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: tensor %s has shape [%lld, %lld] (ggml order) but the metadata implies [%lld, %lld]",
                        path, name, (long long)gt->ne[0], (long long)gt->ne[1], (long long)cols,
                        (long long)(is_vec ? 1 : rows));
    t->type = (sqz_type)gt->type;
    t->cols = cols;
    t->rows = is_vec ? 1 : rows;
    t->data = gt->data;
    return is_vec ? sqz_model_vector_f32(ctx, m, t) : SQZ_OK;
}

/* Whether the file holds tensor name in any form (plain, or the parts of an sqzf matrix). */
static int tensor_present(const sqz_gguf *g, const char *name) {
    const size_t n = strlen(name);
    for (size_t i = 0; i < sqz_gguf_n_tensors(g); i++) {
        const char *tn = sqz_gguf_get_tensor(g, i)->name;
        if (!strncmp(tn, name, n) && (tn[n] == 0 || tn[n] == '.')) return 1;
    }
    return 0;
}

/* The optional key sqz.subblocks (sqzf): an integer per layer, bit 0 = the layer has its
 * attention, bit 1 = its MLP (values 0..3). *out: malloc'ed [n_layers], NULL when the key is
 * absent (every sub-block present). */
static sqz_status get_subblocks(sqz_ctx *ctx, sqz_model *m, int32_t **out) {
    *out = NULL;
    const sqz_gguf *g = m->gguf;
    const int64_t k = sqz_gguf_find_key(g, SQZ_KEY_SUBBLOCKS);
    if (k < 0) return SQZ_OK;
    int et;
    uint64_t n;
    const void *data;
    if (!sqz_gguf_kv_arr(g, (size_t)k, &et, &n, &data) || (et != SQZ_GGUF_I32 && et != SQZ_GGUF_U32) ||
        n != (uint64_t)m->cfg.n_layers)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s must be an array of %d integers (one per layer)",
                        sqz_gguf_path(g), SQZ_KEY_SUBBLOCKS, m->cfg.n_layers);
    int32_t *p = malloc((size_t)n * sizeof *p);
    if (!p) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    memcpy(p, data, (size_t)n * sizeof *p); /* unaligned in the file */
    for (uint64_t i = 0; i < n; i++)
        if (p[i] < 0 || p[i] > 3) {
            const int v = p[i];
            free(p);
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s[%llu] = %d (want 0..3: bit 0 attention, bit 1 MLP)",
                            sqz_gguf_path(g), SQZ_KEY_SUBBLOCKS, (unsigned long long)i, v);
        }
    *out = p;
    return SQZ_OK;
}

/* The pre-tokenizer regex llama.cpp's tokenizer.ggml.pre names. */
static const char *pre_regex(const char *pre, size_t len) {
    static const struct { const char *name, *re; } table[] = {
        { "gpt-2", SQZ_BPE_RE_GPT2 },     { "gpt2", SQZ_BPE_RE_GPT2 },
        { "llama-bpe", SQZ_BPE_RE_LLAMA3 }, { "llama3", SQZ_BPE_RE_LLAMA3 },
        { "qwen2", SQZ_BPE_RE_QWEN2 },
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (strlen(table[i].name) == len && !memcmp(table[i].name, pre, len)) return table[i].re;
    return NULL;
}

/* An optional token id key: *out keeps its default when absent; ids past the vocabulary (or
 * llama.cpp's "none" written as -1 / UINT32_MAX) become -1. */
static sqz_status get_token_id(sqz_ctx *ctx, const sqz_gguf *g, const char *key, uint64_t n_tok,
                               int *out) {
    int64_t i = sqz_gguf_find_key(g, key), v;
    if (i < 0) return SQZ_OK;
    if (!sqz_gguf_kv_int(g, (size_t)i, &v))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: metadata %s is not an integer", sqz_gguf_path(g), key);
    *out = v >= 0 && (uint64_t)v < n_tok ? (int)v : -1;
    return SQZ_OK;
}

static sqz_status get_opt_bool(sqz_ctx *ctx, const sqz_gguf *g, const char *key, int *out) {
    if (sqz_gguf_find_key(g, key) < 0) return SQZ_OK;
    return sqz_gguf_get_bool(ctx, g, key, out);
}

/* tokenizer.ggml.model "llama": a SentencePiece vocabulary (tokens with U+2581 for spaces, scores,
 * token types with <0xXX> BYTE tokens), encoded as llama.cpp's llm_tokenizer_spm does. Defaults
 * as llama.cpp's: BOS 1, EOS 2, <unk> 0, add_bos_token and add_space_prefix true. */
static sqz_status load_spm(sqz_ctx *ctx, sqz_model *m) {
    const sqz_gguf *g = m->gguf;
    const char *path = sqz_gguf_path(g);
    int et;
    uint64_t n_tok, n;
    const void *data;
    sqz_status st = sqz_gguf_get_arr(ctx, g, "tokenizer.ggml.tokens", &et, &n_tok, &data);
    if (st) return st;
    if (et != SQZ_GGUF_STRING || n_tok == 0 || n_tok > (1u << 24))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tokenizer.ggml.tokens is not a list of strings", path);
    const char **toks = malloc(n_tok * sizeof *toks);
    size_t *lens = malloc(n_tok * sizeof *lens);
    float *scores = NULL;
    int32_t *types = NULL;
    if (!toks || !lens) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the tokenizer"); goto done; }
    for (uint64_t i = 0; i < n_tok; i++) toks[i] = sqz_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &lens[i]);
    if (sqz_gguf_find_key(g, "tokenizer.ggml.scores") >= 0) {
        if ((st = sqz_gguf_get_arr(ctx, g, "tokenizer.ggml.scores", &et, &n, &data))) goto done;
        if (et != SQZ_GGUF_F32 || n != n_tok) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tokenizer.ggml.scores is not one f32 per token", path);
            goto done;
        }
        if (!(scores = malloc(n_tok * sizeof *scores))) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
        memcpy(scores, data, n_tok * sizeof *scores); /* unaligned in the file */
    }
    if (sqz_gguf_find_key(g, "tokenizer.ggml.token_type") >= 0) {
        if ((st = sqz_gguf_get_arr(ctx, g, "tokenizer.ggml.token_type", &et, &n, &data))) goto done;
        if ((et != SQZ_GGUF_I32 && et != SQZ_GGUF_U32) || n != n_tok) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tokenizer.ggml.token_type does not match the tokens", path);
            goto done;
        }
        if (!(types = malloc(n_tok * sizeof *types))) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
        memcpy(types, data, n_tok * sizeof *types);
    }
    int bos = 1, eos = 2, unk = 0, add_bos = 1, add_space_prefix = 1;
    if ((st = get_token_id(ctx, g, "tokenizer.ggml.bos_token_id", n_tok, &bos)) ||
        (st = get_token_id(ctx, g, "tokenizer.ggml.eos_token_id", n_tok, &eos)) ||
        (st = get_token_id(ctx, g, "tokenizer.ggml.unknown_token_id", n_tok, &unk)) ||
        (st = get_opt_bool(ctx, g, "tokenizer.ggml.add_bos_token", &add_bos)) ||
        (st = get_opt_bool(ctx, g, "tokenizer.ggml.add_space_prefix", &add_space_prefix)))
        goto done;
    sqz_spm_spec spec = {
        .name = path, .n_tokens = (int)n_tok, .tokens = toks, .token_lens = lens,
        .scores = scores, .token_types = types, .unk_id = unk, .bos = bos, .eos = eos,
        .add_bos = add_bos, .add_space_prefix = add_space_prefix,
    };
    st = sqz_tokenizer_new_spm(ctx, &spec, &m->tok);
done:
    free(toks);
    free(lens);
    free(scores);
    free(types);
    return st;
}

/* The n strings of array key copied NUL-terminated to cur.., out[i] pointing at each; returns
 * the end of the copies. */
static char *copy_strs(const sqz_gguf *g, const char *key, uint64_t n, const char **out,
                       char *cur) {
    for (uint64_t i = 0; i < n; i++) {
        size_t len;
        const char *s = sqz_gguf_arr_str(g, key, i, &len);
        memcpy(cur, s, len);
        cur[len] = 0;
        out[i] = cur;
        cur += len + 1;
    }
    return cur;
}

static sqz_status load_tokenizer(sqz_ctx *ctx, sqz_model *m) {
    const sqz_gguf *g = m->gguf;
    const char *path = sqz_gguf_path(g);
    if (sqz_gguf_find_key(g, "tokenizer.ggml.model") < 0) return SQZ_OK; /* no tokenizer */
    const char *model;
    size_t model_len;
    sqz_status st = sqz_gguf_get_str(ctx, g, "tokenizer.ggml.model", &model, &model_len);
    if (st) return st;
    if (model_len == 5 && !memcmp(model, "llama", 5)) return load_spm(ctx, m);
    if (!(model_len == 4 && !memcmp(model, "gpt2", 4)))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%.*s' is not supported yet (sqz reads 'gpt2' byte-level BPE and 'llama' SentencePiece)",
                        path, (int)model_len, model);
    const char *re = SQZ_BPE_RE_GPT2;
    if (sqz_gguf_find_key(g, "tokenizer.ggml.pre") >= 0) {
        const char *pre;
        size_t pre_len;
        if ((st = sqz_gguf_get_str(ctx, g, "tokenizer.ggml.pre", &pre, &pre_len))) return st;
        if (!(re = pre_regex(pre, pre_len)))
            return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: pre-tokenizer '%.*s' is not supported yet",
                            path, (int)pre_len, pre);
    }
    int et;
    uint64_t n_tok, n_merges = 0;
    const void *data;
    if ((st = sqz_gguf_get_arr(ctx, g, "tokenizer.ggml.tokens", &et, &n_tok, &data))) return st;
    if (et != SQZ_GGUF_STRING || n_tok == 0 || n_tok > (1u << 24))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tokenizer.ggml.tokens is not a list of strings", path);
    if (sqz_gguf_find_key(g, "tokenizer.ggml.merges") >= 0) {
        if ((st = sqz_gguf_get_arr(ctx, g, "tokenizer.ggml.merges", &et, &n_merges, &data))) return st;
        if (et != SQZ_GGUF_STRING || n_merges > (1u << 24))
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tokenizer.ggml.merges is not a list of strings", path);
    }
    int32_t *types = NULL;
    /* strings in the file are not NUL-terminated: one buffer of copies */
    size_t total = 0, len;
    for (uint64_t i = 0; i < n_tok; i++) { sqz_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &len); total += len + 1; }
    for (uint64_t i = 0; i < n_merges; i++) { sqz_gguf_arr_str(g, "tokenizer.ggml.merges", i, &len); total += len + 1; }
    char *pool = malloc(total ? total : 1);
    const char **toks = malloc(n_tok * sizeof *toks);
    const char **merges = malloc((n_merges ? n_merges : 1) * sizeof *merges);
    types = malloc(n_tok * sizeof *types);
    if (!pool || !toks || !merges || !types) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the tokenizer");
        goto done;
    }
    char *cur = copy_strs(g, "tokenizer.ggml.tokens", n_tok, toks, pool);
    copy_strs(g, "tokenizer.ggml.merges", n_merges, merges, cur);
    for (uint64_t i = 0; i < n_tok; i++) types[i] = SQZ_TOKEN_NORMAL;
    if (sqz_gguf_find_key(g, "tokenizer.ggml.token_type") >= 0) {
        uint64_t nt;
        if ((st = sqz_gguf_get_arr(ctx, g, "tokenizer.ggml.token_type", &et, &nt, &data))) goto done;
        if ((et != SQZ_GGUF_I32 && et != SQZ_GGUF_U32) || nt != n_tok) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tokenizer.ggml.token_type does not match the tokens", path);
            goto done;
        }
        memcpy(types, data, n_tok * sizeof *types);
    }
    int bos = -1, eos = -1, add_bos = 0;
    uint32_t v;
    if (sqz_gguf_find_key(g, "tokenizer.ggml.bos_token_id") >= 0) {
        if ((st = sqz_gguf_get_u32(ctx, g, "tokenizer.ggml.bos_token_id", &v))) goto done;
        bos = v < n_tok ? (int)v : -1;
    }
    if (sqz_gguf_find_key(g, "tokenizer.ggml.eos_token_id") >= 0) {
        if ((st = sqz_gguf_get_u32(ctx, g, "tokenizer.ggml.eos_token_id", &v))) goto done;
        eos = v < n_tok ? (int)v : -1;
    }
    if (sqz_gguf_find_key(g, "tokenizer.ggml.add_bos_token") >= 0 &&
        (st = sqz_gguf_get_bool(ctx, g, "tokenizer.ggml.add_bos_token", &add_bos)))
        goto done;
    sqz_bpe_split split = { re, 0 };
    sqz_bpe_spec spec = {
        .name = path, .n_tokens = (int)n_tok, .tokens = toks, .token_types = types,
        .n_merges = (int)n_merges, .merges = merges, .merges_are_pairs = 0,
        .n_splits = 1, .splits = &split, .unk_id = -1, .bos = bos, .eos = eos, .add_bos = add_bos,
    };
    st = sqz_tokenizer_new_bpe(ctx, &spec, &m->tok);
done:
    free(pool);
    free(toks);
    free(merges);
    free(types);
    return st;
}

sqz_status sqz_load_gguf(sqz_ctx *ctx, sqz_model *m, const char *path) {
    sqz_status st = sqz_gguf_open(ctx, path, &m->gguf);
    if (st) return st;
    const sqz_gguf *g = m->gguf;
    m->format = sqz_gguf_is_sqzf(g) ? "sqzf" : "gguf";
    const char *arch_s;
    size_t arch_len;
    if ((st = sqz_gguf_get_str(ctx, g, "general.architecture", &arch_s, &arch_len))) return st;
    char arch[32];
    if (arch_len >= sizeof arch) arch_len = sizeof arch - 1;
    memcpy(arch, arch_s, arch_len);
    arch[arch_len] = 0;
    sqz_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    if (!strcmp(arch, "llama") || !strcmp(arch, "mistral")) {
        c->arch = strcmp(arch, "llama") ? SQZ_ARCH_MISTRAL : SQZ_ARCH_LLAMA;
        c->rope_interleaved = 1;
    } else if (!strcmp(arch, "qwen2")) {
        c->arch = SQZ_ARCH_QWEN2;
        c->has_qkv_bias = 1;
        c->rope_interleaved = 0;
    } else {
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (sqz runs llama, mistral, qwen2)",
                        path, arch);
    }
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->bos_id = c->eos_id = -1;
    if ((st = get_int(ctx, g, arch, "embedding_length", 0, &c->dim)) ||
        (st = get_int(ctx, g, arch, "feed_forward_length", 0, &c->hidden_dim)) ||
        (st = get_int(ctx, g, arch, "block_count", 0, &c->n_layers)) ||
        (st = get_int(ctx, g, arch, "attention.head_count", 0, &c->n_heads)))
        return st;
    c->n_kv_heads = c->n_heads;
    if ((st = get_int(ctx, g, arch, "attention.head_count_kv", 1, &c->n_kv_heads)) ||
        (st = get_int(ctx, g, arch, "context_length", 1, &c->max_seq_len)) ||
        (st = get_float(ctx, g, arch, "rope.freq_base", &c->rope_theta)) ||
        (st = get_float(ctx, g, arch, "attention.layer_norm_rms_epsilon", &c->norm_eps)))
        return st;
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    if ((st = get_int(ctx, g, arch, "attention.key_length", 1, &c->head_dim))) return st;
    const sqz_gguf_tensor *emb = sqz_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: no 2-D tensor token_embd.weight", path);
    c->vocab_size = emb->ne[1] > (1 << 24) ? 0 : (int)emb->ne[1];
    c->tied_embeddings = sqz_gguf_find_tensor(g, "output.weight") == NULL;
    if ((st = sqz_config_check(ctx, c, path))) return st;

    const int64_t D = c->dim, F = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim, V = c->vocab_size;
    if ((st = get_tensor(ctx, m, "token_embd.weight", V, D, 0, &m->tok_embd)) ||
        (st = get_tensor(ctx, m, "output_norm.weight", 0, D, 0, &m->out_norm)))
        return st;
    if (c->tied_embeddings) m->output = m->tok_embd;
    else if ((st = get_tensor(ctx, m, "output.weight", V, D, 0, &m->output))) return st;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    int32_t *parts = NULL; /* per layer: bit 0 attention, bit 1 MLP (docs/sqzf.md) */
    if ((st = get_subblocks(ctx, m, &parts))) return st;
    for (int l = 0; l < c->n_layers; l++) {
        sqz_layer_weights *w = &m->layers[l];
        const int has[2] = { parts ? parts[l] & 1 : 1, parts ? parts[l] >> 1 & 1 : 1 };
        struct { const char *name; int64_t rows, cols; int optional; sqz_tensor *t; } spec[] = {
            { "attn_norm.weight", 0, D, 0, &w->attn_norm },
            { "attn_q.weight", qd, D, 0, &w->wq },
            { "attn_k.weight", kvd, D, 0, &w->wk },
            { "attn_v.weight", kvd, D, 0, &w->wv },
            { "attn_output.weight", D, qd, 0, &w->wo },
            { "attn_q.bias", 0, qd, 1, &w->bq },
            { "attn_k.bias", 0, kvd, 1, &w->bk },
            { "attn_v.bias", 0, kvd, 1, &w->bv },
            { "attn_output.bias", 0, D, 1, &w->bo },
            { "ffn_norm.weight", 0, D, 0, &w->ffn_norm },
            { "ffn_gate.weight", F, D, 0, &w->w_gate },
            { "ffn_up.weight", F, D, 0, &w->w_up },
            { "ffn_down.weight", D, F, 0, &w->w_down },
        };
        for (size_t i = 0; i < sizeof spec / sizeof *spec; i++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s", l, spec[i].name);
            if (!has[i < 9 ? 0 : 1]) { /* a dropped sub-block: none of its tensors, in any form */
                if (tensor_present(m->gguf, name)) {
                    free(parts);
                    return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor %s is present, but %s says layer %d has no %s",
                                    path, name, SQZ_KEY_SUBBLOCKS, l, i < 9 ? "attention" : "MLP");
                }
                continue;
            }
            if ((st = get_tensor(ctx, m, name, spec[i].rows, spec[i].cols, spec[i].optional, spec[i].t))) {
                free(parts);
                return st;
            }
        }
        if (w->bq.data) c->has_qkv_bias = 1;
    }
    free(parts);
    if ((st = load_tokenizer(ctx, m))) return st;
    if (m->tok) {
        c->bos_id = sqz_tokenizer_bos(m->tok);
        c->eos_id = sqz_tokenizer_eos(m->tok);
        if (sqz_tokenizer_vocab_size(m->tok) > c->vocab_size)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %d tokens but token_embd has %d rows", path,
                            sqz_tokenizer_vocab_size(m->tok), c->vocab_size);
    }
    return SQZ_OK;
}
