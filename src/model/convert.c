/* convert.c - sqz_convert: a loaded model written as a GGUF file that llama.cpp runs, the way
 * llama.cpp's own tools would write it: convert_hf_to_gguf.py for the metadata, the tokenizer and
 * the RoPE row permutation, then llama-quantize for the tensor types, the tensor order and the
 * quantized bytes.
 *
 * What "the way llama.cpp writes it" means here, piece by piece:
 *   - metadata keys, types and order as in llama.cpp's files of sqz-llama-26m
 *     (../shared/models/gguf): general.*, <arch>.* hyper-parameters, tokenizer.ggml.*, then
 *     general.quantization_version and general.file_type, which llama-quantize appends;
 *   - tensors in llama-quantize's order (its weights map sorts by block number, then by name;
 *     tensors outside the blocks first), 2-D weights with ggml shape [cols, rows], 1-D tensors
 *     (norms, biases) f32;
 *   - Q and K rows of a source that pairs RoPE dimensions HF's way (i, i + hd/2) permuted to
 *     llama.cpp's interleaved pairs for the "llama" architecture, exactly as
 *     convert_hf_to_gguf.py's permute: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2);
 *     "qwen2" keeps HF's layout (llama.cpp rotates it NEOX-style);
 *   - every weight converted through f32 with sqz_quantize_rows, which is byte-identical to
 *     ggml_quantize_chunk without an importance matrix; a weight already in its target type and
 *     not permuted is copied as is (llama-quantize does the same).
 *
 * Memory: the file is streamed. Every tensor's name, shape and type is known before anything is
 * converted, so the writer writes the header first (to a temporary name, renamed when complete);
 * then each tensor is converted a slab of rows at a time (about SLAB_ELEMS elements; Q/K
 * slabs hold whole heads, so the RoPE permutation stays inside one), the slab is written, and
 * the source pages it read are given back (sqz_model_release: only pages of the files the model
 * maps; they reload from the file if read again). Rows are independent, so a slab's rows are
 * split into chunks over the context's threads (OpenMP), each with its f32 scratch. The peak is
 * then one slab's output buffer + its source pages + the threads' scratch, whatever the model's
 * size (the file's pages go to the page cache, not to the process).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/card.h"
#include "io/file.h"
#include "io/gguf.h"
#include "model/model.h"
#include "tokenizer/impl.h"
#include "formats/presets.h"
#include "formats/sp8.h"
#include "formats/quant.h"

#define CHUNK_ELEMS (1 << 16) /* f32 elements one work item converts at a time */
#define SLAB_ELEMS ((int64_t)1 << 24) /* elements converted, written and released at a time */

static int64_t slab_elems = SLAB_ELEMS; /* tests lower it: sqz_convert_set_slab_elems */

void sqz_convert_set_slab_elems(int64_t n) { slab_elems = n > 0 ? n : SLAB_ELEMS; }

typedef struct out_tensor {
    char name[64];
    sqz_tensor_role role;
    int layer;             /* block index, -1 outside the blocks */
    const sqz_tensor *src; /* (rows, cols) as sqz holds it */
    int rope_heads;        /* > 0: permute rows HF -> llama.cpp RoPE layout over this many heads */
    int is_vec;            /* a 1-D tensor: written as f32 [cols] */
    sqz_type type;         /* the type written */
    int fallback;          /* the type is llama.cpp's fallback for an awkward row length */
    int32_t *perm;         /* a mixllm matrix: its row map, written as NAME.mix_perm */
    uint64_t *sp_off;      /* an sp8 matrix: its row offsets in the written row order */
} out_tensor;

typedef struct out_list {
    out_tensor *t;
    int n, cap;
} out_list;

static int add_tensor(out_list *l, const char *name, sqz_tensor_role role, int layer,
                      const sqz_tensor *src, int rope_heads, int is_vec) {
    if (!src->data) return 0; /* absent (an optional bias) */
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        out_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) return -1;
        l->t = t;
        l->cap = cap;
    }
    out_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->role = role;
    t->layer = layer;
    t->src = src;
    t->rope_heads = rope_heads;
    t->is_vec = is_vec;
    return 0;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(((const out_tensor *)a)->name, ((const out_tensor *)b)->name);
}

/* The tensors in llama-quantize's order: its weights map compares the block number first
 * (-1 for tensors outside the blocks), then the names. */
static int build_list(const sqz_model *m, int permute, out_list *l) {
    const sqz_config *c = &m->cfg;
    if (!c->tied_embeddings && add_tensor(l, "output.weight", SQZ_ROLE_OUTPUT, -1, &m->output, 0, 0))
        return -1;
    if (add_tensor(l, "output_norm.weight", SQZ_ROLE_OTHER, -1, &m->out_norm, 0, 1) ||
        add_tensor(l, "token_embd.weight", SQZ_ROLE_TOKEN_EMBD, -1, &m->tok_embd, 0, 0))
        return -1;
    qsort(l->t, (size_t)l->n, sizeof *l->t, name_cmp);
    const int hq = permute ? c->n_heads : 0, hkv = permute ? c->n_kv_heads : 0;
    for (int i = 0; i < c->n_layers; i++) {
        const sqz_layer_weights *w = &m->layers[i];
        const struct {
            const char *name;
            sqz_tensor_role role;
            const sqz_tensor *t;
            int rope_heads, is_vec;
        } spec[] = {
            { "attn_norm.weight", SQZ_ROLE_OTHER, &w->attn_norm, 0, 1 },
            { "attn_q.weight", SQZ_ROLE_ATTN_Q, &w->wq, hq, 0 },
            { "attn_k.weight", SQZ_ROLE_ATTN_K, &w->wk, hkv, 0 },
            { "attn_v.weight", SQZ_ROLE_ATTN_V, &w->wv, 0, 0 },
            { "attn_output.weight", SQZ_ROLE_ATTN_OUTPUT, &w->wo, 0, 0 },
            /* convert_hf_to_gguf.py permutes the q/k biases with their weights */
            { "attn_q.bias", SQZ_ROLE_OTHER, &w->bq, hq, 1 },
            { "attn_k.bias", SQZ_ROLE_OTHER, &w->bk, hkv, 1 },
            { "attn_v.bias", SQZ_ROLE_OTHER, &w->bv, 0, 1 },
            { "attn_output.bias", SQZ_ROLE_OTHER, &w->bo, 0, 1 },
            { "ffn_norm.weight", SQZ_ROLE_OTHER, &w->ffn_norm, 0, 1 },
            { "ffn_gate.weight", SQZ_ROLE_FFN_GATE, &w->w_gate, 0, 0 },
            { "ffn_up.weight", SQZ_ROLE_FFN_UP, &w->w_up, 0, 0 },
            { "ffn_down.weight", SQZ_ROLE_FFN_DOWN, &w->w_down, 0, 0 },
        };
        int first = l->n;
        for (size_t k = 0; k < sizeof spec / sizeof *spec; k++) {
            /* a dropped sub-block: none of its tensors (its norm included) */
            if (k < 9 ? !sqz_layer_has_attn(w) : !sqz_layer_has_ffn(w)) continue;
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", i, spec[k].name);
            if (add_tensor(l, name, spec[k].role, i, spec[k].t, spec[k].rope_heads, spec[k].is_vec))
                return -1;
        }
        qsort(l->t + first, (size_t)(l->n - first), sizeof *l->t, name_cmp);
    }
    return 0;
}

int64_t sqz_rope_gguf_src_row(int64_t r, int64_t hd) {
    const int64_t head = r / hd, w = r % hd;
    return head * hd + (w % 2) * (hd / 2) + w / 2;
}
#define rope_src_row sqz_rope_gguf_src_row

static sqz_status out_of_memory(sqz_ctx *ctx, const char *out_path, const out_tensor *t) {
    return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory converting %s", out_path, t->name);
}

/* Writes n bytes and gives back the source pages [src, src + src_n) they came from. */
static sqz_status put_release(sqz_gguf_writer *w, const sqz_model *m, const void *p, size_t n,
                              const void *src, size_t src_n) {
    sqz_status st = sqz_gguf_writer_put(w, p, n);
    sqz_model_release(m, src, src_n);
    return st;
}

/* A norm or bias: f32 [cols], the q/k biases permuted as their rows (sqz holds them as f32). */
static sqz_status write_vec(sqz_ctx *ctx, sqz_gguf_writer *w, const char *out_path,
                            const out_tensor *t) {
    const sqz_tensor *s = t->src;
    const int64_t cols = s->cols, hd = t->rope_heads > 0 ? cols / t->rope_heads : 0;
    float *f = malloc((size_t)cols * sizeof *f), *tmp = malloc((size_t)cols * sizeof *tmp);
    if (!f || !tmp) {
        free(f);
        free(tmp);
        return out_of_memory(ctx, out_path, t);
    }
    sqz_tensor_row_f32(s, 0, tmp);
    for (int64_t i = 0; i < cols; i++) f[i] = tmp[hd ? rope_src_row(i, hd) : i];
    sqz_status st = sqz_gguf_writer_put(w, f, (size_t)cols * sizeof *f);
    free(tmp);
    free(f);
    return st;
}

/* Rows r0 .. r0+nr of t in t->type into dst, in chunks over the threads: 0, or 1 when out of
 * memory, 2 when the quantizer refused. */
static int convert_rows(sqz_ctx *ctx, const out_tensor *t, int64_t r0, int64_t nr, char *dst) {
    const sqz_tensor *s = t->src;
    const int64_t cols = s->cols, hd = t->rope_heads > 0 ? s->rows / t->rope_heads : 0;
    const size_t rs = sqz_type_row_size(t->type, cols), src_rs = sqz_type_row_size(s->type, cols);
    const int same = s->type == t->type; /* only permuted: rows are copied */
    const int64_t chunk = cols >= CHUNK_ELEMS ? 1 : CHUNK_ELEMS / cols;
    const int64_t n_chunks = (nr + chunk - 1) / chunk;
    int failed = 0;
#pragma omp parallel num_threads(ctx->n_threads > 0 ? ctx->n_threads : 1)
    {
        float *scratch = same ? NULL : malloc((size_t)(chunk * cols) * sizeof *scratch);
        if (!same && !scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t ci = 0; ci < n_chunks; ci++) {
            if (!same && !scratch) continue;
            const int64_t c0 = ci * chunk, n = nr - c0 < chunk ? nr - c0 : chunk;
            for (int64_t k = 0; k < n; k++) {
                const int64_t r = r0 + c0 + k, sr = hd ? rope_src_row(r, hd) : r;
                if (same)
                    memcpy(dst + (size_t)(c0 + k) * rs, (const char *)s->data + (size_t)sr * src_rs, rs);
                else
                    sqz_tensor_row_f32(s, sr, scratch + k * cols);
            }
            if (!same && sqz_quantize_rows(t->type, scratch, dst + (size_t)c0 * rs, n, cols, NULL) !=
                             (size_t)n * rs) {
#pragma omp atomic write
                failed = 2;
            }
        }
        free(scratch);
    }
    return failed;
}

/* A matrix in t->type (see the file comment), slab by slab: converted, written, its source
 * pages given back. Unchanged (same type, not permuted) it is written straight from the source. */
static sqz_status write_matrix(sqz_ctx *ctx, sqz_gguf_writer *w, const sqz_model *m,
                               const char *out_path, const out_tensor *t) {
    const sqz_tensor *s = t->src;
    const int64_t rows = s->rows, cols = s->cols;
    const int64_t hd = t->rope_heads > 0 ? rows / t->rope_heads : 0;
    const size_t rs = sqz_type_row_size(t->type, cols), src_rs = sqz_type_row_size(s->type, cols);
    int64_t slab = slab_elems / cols > 0 ? slab_elems / cols : 1;
    if (hd) slab = slab > hd ? slab / hd * hd : hd; /* whole heads: the permutation stays inside */
    if (slab > rows) slab = rows;
    const int copy = s->type == t->type && !hd;
    char *dst = copy ? NULL : malloc((size_t)slab * rs);
    if (!copy && !dst) return out_of_memory(ctx, out_path, t);
    sqz_status st = SQZ_OK;
    for (int64_t r0 = 0; r0 < rows && !st; r0 += slab) {
        const int64_t nr = rows - r0 < slab ? rows - r0 : slab;
        const char *src = (const char *)s->data + (size_t)r0 * src_rs;
        const size_t src_n = (size_t)nr * src_rs;
        if (copy) {
            st = put_release(w, m, src, src_n, src, src_n);
            continue;
        }
        const int failed = convert_rows(ctx, t, r0, nr, dst);
        if (failed == 1) st = out_of_memory(ctx, out_path, t);
        else if (failed == 2)
            st = sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: sqz cannot quantize %s to %s", out_path,
                          t->name, sqz_type_name(t->type));
        else st = put_release(w, m, dst, (size_t)nr * rs, src, src_n);
    }
    free(dst);
    return st;
}

/* A mixllm matrix (SQZ_TYPE_MIXLLM) goes to sqzf as its parts (docs/sqzf.md): NAME.mix_perm,
 * NAME.mix_hi, NAME.mix_lo. Its rows are written as stored; a RoPE permutation of the output
 * rows only changes the map: stored row i now computes output row inv[perm[i]]. This declares
 * the parts (computing the map); write_mixed writes them. */
static sqz_status declare_mixed(sqz_ctx *ctx, sqz_gguf_writer *w, const char *out_path,
                                out_tensor *t, uint64_t *data_bytes) {
    const sqz_tensor *s = t->src;
    const sqz_mix_tensor *mx = s->data;
    const int64_t rows = s->rows, cols = s->cols;
    const int64_t hd = t->rope_heads > 0 ? rows / t->rope_heads : 0;
    int32_t *perm = malloc((size_t)rows * sizeof *perm), *inv = malloc((size_t)rows * sizeof *inv);
    if (!perm || !inv) {
        free(perm), free(inv);
        return out_of_memory(ctx, out_path, t);
    }
    for (int64_t r = 0; r < rows; r++) inv[hd ? rope_src_row(r, hd) : r] = (int32_t)r;
    for (int64_t i = 0; i < rows; i++) perm[i] = inv[mx->perm[i]];
    free(inv);
    t->perm = perm;
    char name[96];
    sqz_status st;
    int64_t ne[2] = { rows };
    size_t nb;
    snprintf(name, sizeof name, "%s%s", t->name, SQZ_MIX_SUFFIX_PERM);
    if ((st = sqz_gguf_writer_declare_tensor(w, name, 1, ne, 26 /* ggml i32 */, &nb))) return st;
    *data_bytes += nb;
    const struct { const char *suffix; sqz_type type; int64_t n; } part[2] = {
        { SQZ_MIX_SUFFIX_HI, SQZ_TYPE_MX8, mx->n8 },
        { SQZ_MIX_SUFFIX_LO, mx->lo_type, rows - mx->n8 },
    };
    for (int k = 0; k < 2; k++) {
        if (part[k].n == 0) continue; /* absent part: no rows */
        snprintf(name, sizeof name, "%s%s", t->name, part[k].suffix);
        ne[0] = cols, ne[1] = part[k].n;
        if ((st = sqz_gguf_writer_declare_tensor(w, name, 2, ne, part[k].type, &nb))) return st;
        *data_bytes += nb;
    }
    return SQZ_OK;
}

/* A sparse int8 matrix (SQZ_TYPE_SP8) goes to sqzf as NAME.sp8_off (i64 [rows + 1]) and
 * NAME.sp8_data (i8 [bytes]), docs/sparse.md. A RoPE permutation moves whole rows: written row
 * r is stored row rope_src_row(r), so the offsets are those of the rows in the written order
 * (computed here; write_sp8 writes the rows in that order). */
static sqz_status declare_sp8(sqz_ctx *ctx, sqz_gguf_writer *w, const char *out_path, out_tensor *t,
                              uint64_t *data_bytes) {
    const sqz_tensor *s = t->src;
    const sqz_sp8_tensor *sp = s->data;
    const int64_t rows = s->rows, hd = t->rope_heads > 0 ? rows / t->rope_heads : 0;
    uint64_t *off = malloc((size_t)(rows + 1) * sizeof *off);
    if (!off) return out_of_memory(ctx, out_path, t);
    off[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t sr = hd ? rope_src_row(r, hd) : r;
        off[r + 1] = off[r] + (sp->row_off[sr + 1] - sp->row_off[sr]);
    }
    t->sp_off = off;
    char name[96];
    size_t nb;
    int64_t ne[1] = { rows + 1 };
    snprintf(name, sizeof name, "%s%s", t->name, SQZ_SP8_SUFFIX_OFF);
    sqz_status st = sqz_gguf_writer_declare_tensor(w, name, 1, ne, 27 /* ggml i64 */, &nb);
    if (st) return st;
    *data_bytes += nb;
    ne[0] = (int64_t)off[rows];
    snprintf(name, sizeof name, "%s%s", t->name, SQZ_SP8_SUFFIX_DATA);
    if ((st = sqz_gguf_writer_declare_tensor(w, name, 1, ne, 24 /* ggml i8 */, &nb))) return st;
    *data_bytes += nb;
    return SQZ_OK;
}

static sqz_status write_sp8(sqz_gguf_writer *w, const sqz_model *m, const out_tensor *t) {
    const sqz_tensor *s = t->src;
    const sqz_sp8_tensor *sp = s->data;
    const int64_t rows = s->rows, hd = t->rope_heads > 0 ? rows / t->rope_heads : 0;
    sqz_status st = sqz_gguf_writer_put(w, t->sp_off, (size_t)(rows + 1) * sizeof *t->sp_off);
    for (int64_t r = 0; r < rows && !st; r++) {
        const int64_t sr = hd ? rope_src_row(r, hd) : r;
        const void *p = sp->data + sp->row_off[sr];
        const size_t n = (size_t)(sp->row_off[sr + 1] - sp->row_off[sr]);
        st = put_release(w, m, p, n, p, n);
    }
    return st;
}

/* A low-rank matrix (SQZ_TYPE_LOWRANK) goes to sqzf as its factors NAME.lr_a [cols, rank] and
 * NAME.lr_b [rank, rows] (docs/lowrank.md), each in its own type; a RoPE permutation of the
 * output rows moves b's rows only. */
static void lr_parts(const out_tensor *t, out_tensor part[2]) {
    const sqz_lr_tensor *lr = t->src->data;
    for (int k = 0; k < 2; k++) {
        part[k] = *t;
        snprintf(part[k].name, sizeof part[k].name, "%.56s%s", t->name, k ? SQZ_LR_SUFFIX_B : SQZ_LR_SUFFIX_A);
        part[k].src = k ? &lr->b : &lr->a;
        part[k].type = part[k].src->type;
        part[k].rope_heads = k ? t->rope_heads : 0;
    }
}

static sqz_status declare_lr(sqz_gguf_writer *w, const out_tensor *t, uint64_t *data_bytes) {
    out_tensor part[2];
    lr_parts(t, part);
    for (int k = 0; k < 2; k++) {
        int64_t ne[2] = { part[k].src->cols, part[k].src->rows };
        size_t nb;
        sqz_status st = sqz_gguf_writer_declare_tensor(w, part[k].name, 2, ne, part[k].type, &nb);
        if (st) return st;
        *data_bytes += nb;
    }
    return SQZ_OK;
}

static sqz_status write_lr(sqz_ctx *ctx, sqz_gguf_writer *w, const sqz_model *m, const char *out_path,
                           const out_tensor *t) {
    out_tensor part[2];
    lr_parts(t, part);
    sqz_status st = write_matrix(ctx, w, m, out_path, &part[0]);
    return st ? st : write_matrix(ctx, w, m, out_path, &part[1]);
}

/* A BitStack matrix (SQZ_TYPE_BITSTACK) goes to sqzf as NAME.bs_scale, .bs_order, .bs_sign,
 * .bs_u, .bs_v (formats/bitstack.h, docs/bitstack.md); a RoPE permutation of the output rows
 * moves the rows of every block's signs and u. */
static sqz_status declare_bs(sqz_gguf_writer *w, const out_tensor *t, uint64_t *data_bytes) {
    const sqz_bs_tensor *b = t->src->data;
    const int64_t rows = t->src->rows, cols = t->src->cols, K = b->n_blocks, r = b->rank;
    const struct { const char *sfx; int n_dims; int64_t ne0, ne1; int type; } part[5] = {
        { SQZ_BS_SUFFIX_SCALE, 1, cols, 1, SQZ_TYPE_F32 },  { SQZ_BS_SUFFIX_ORDER, 1, K, 1, 26 /* i32 */ },
        { SQZ_BS_SUFFIX_SIGN, 2, sqz_bs_row_bytes(cols), rows * K, 24 /* i8 */ }, { SQZ_BS_SUFFIX_U, 2, r, rows * K, SQZ_TYPE_F16 },
        { SQZ_BS_SUFFIX_V, 2, cols, r * K, SQZ_TYPE_F16 },
    };
    for (int i = 0; i < 5; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s%s", t->name, part[i].sfx);
        int64_t ne[2] = { part[i].ne0, part[i].ne1 };
        size_t nb;
        sqz_status st = sqz_gguf_writer_declare_tensor(w, name, part[i].n_dims, ne, part[i].type, &nb);
        if (st) return st;
        *data_bytes += nb;
    }
    return SQZ_OK;
}

static sqz_status write_bs(sqz_gguf_writer *w, const out_tensor *t) {
    const sqz_bs_tensor *b = t->src->data;
    const int64_t rows = t->src->rows, cols = t->src->cols, K = b->n_blocks, r = b->rank;
    const int64_t hd = t->rope_heads > 0 ? rows / t->rope_heads : 0;
    sqz_status st = sqz_gguf_writer_put(w, b->scale, (size_t)cols * sizeof *b->scale);
    if (!st) st = sqz_gguf_writer_put(w, b->order, (size_t)K * sizeof *b->order);
    for (int64_t k = 0; k < K && !st; k++) /* signs, row by row in the written order */
        for (int64_t i = 0; i < rows && !st; i++) {
            const int64_t src = hd ? rope_src_row(i, hd) : i;
            const int64_t rb = sqz_bs_row_bytes(cols);
            st = sqz_gguf_writer_put(w, b->sign + (size_t)((k * rows + src) * rb), (size_t)rb);
        }
    for (int64_t k = 0; k < K && !st; k++)
        for (int64_t i = 0; i < rows && !st; i++) {
            const int64_t src = hd ? rope_src_row(i, hd) : i;
            st = sqz_gguf_writer_put(w, b->u + (size_t)((k * rows + src) * r), (size_t)r * sizeof *b->u);
        }
    if (!st) st = sqz_gguf_writer_put(w, b->v, (size_t)(K * r * cols) * sizeof *b->v);
    return st;
}

static sqz_status write_mixed(sqz_gguf_writer *w, const sqz_model *m, const out_tensor *t) {
    const sqz_tensor *s = t->src;
    const sqz_mix_tensor *mx = s->data;
    const int64_t rows = s->rows, cols = s->cols;
    sqz_status st = sqz_gguf_writer_put(w, t->perm, (size_t)rows * sizeof *t->perm);
    const size_t hi = (size_t)mx->n8 * sqz_type_row_size(SQZ_TYPE_MX8, cols);
    const size_t lo = (size_t)(rows - mx->n8) * sqz_type_row_size(mx->lo_type, cols);
    if (!st && hi) st = put_release(w, m, mx->hi, hi, mx->hi, hi);
    if (!st && lo) st = put_release(w, m, mx->lo, lo, mx->lo, lo);
    return st;
}

/* general.name: what the model was loaded from, as convert_hf_to_gguf.py's default names it
 * after the model folder (llama2.c: the checkpoint's name; GGUF: its own general.name). */
static void model_name(const sqz_model *m, char *buf, size_t cap) {
    char path[4096] = "";
    if (m->gguf) {
        int64_t i = sqz_gguf_find_key(m->gguf, "general.name");
        size_t len;
        const char *s = i >= 0 ? sqz_gguf_kv_str(m->gguf, (size_t)i, 0, &len) : NULL;
        if (s && len > 0) {
            snprintf(buf, cap, "%.*s", (int)(len < cap ? len : cap - 1), s);
            return;
        }
        snprintf(path, sizeof path, "%s", sqz_gguf_path(m->gguf));
    } else if (m->st) {
        const sqz_st_tensor *t = sqz_st_find(m->st, "model.embed_tokens.weight");
        if (t && t->file) {
            snprintf(path, sizeof path, "%s", t->file);
            char *slash = strrchr(path, '/'); /* the folder holding the weights */
            if (slash) *slash = 0; else snprintf(path, sizeof path, ".");
        }
    } else if (m->map.path) {
        snprintf(path, sizeof path, "%s", m->map.path);
    }
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') path[--n] = 0;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char real[PATH_MAX];
    if ((!strcmp(base, ".") || !strcmp(base, "..")) && realpath(path, real)) { /* "." -> its name */
        snprintf(path, sizeof path, "%s", real);
        base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    }
    char *dot = strrchr(base, '.');
    if (dot && dot != base && (!strcmp(dot, ".bin") || !strcmp(dot, ".gguf"))) *dot = 0;
    snprintf(buf, cap, "%s", *base && strcmp(base, ".") && strcmp(base, "..") ? base : "model");
}

/* The metadata, keys in the order llama.cpp's converter and llama-quantize write them. */
static sqz_status write_meta(sqz_gguf_writer *w, const sqz_model *m, const char *arch,
                             const sqz_tok_gguf *tk, int ftype, const sqz_model_card *card) {
    const sqz_config *c = &m->cfg;
    char name[256], k[128];
    model_name(m, name, sizeof name);
    sqz_status st;
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", arch, suffix), k)
#define TRY(call) do { if ((st = (call)) != SQZ_OK) return st; } while (0)
    TRY(sqz_gguf_writer_add_str(w, "general.architecture", arch, strlen(arch)));
    TRY(sqz_gguf_writer_add_str(w, "general.type", "model", 5));
    TRY(sqz_gguf_writer_add_str(w, "general.name", name, strlen(name)));
    /* how it was made, only when told: without a card the file stays key for key what
     * llama-quantize writes (tests compare the bytes) */
    if (card) TRY(sqz_card_gguf(w, card, name));
    TRY(sqz_gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)c->n_layers));
    /* llama.cpp requires a training context; sqz's sessions default to 2048 when unknown */
    TRY(sqz_gguf_writer_add_u32(w, KEY("context_length"),
                                (uint32_t)(c->max_seq_len > 0 ? c->max_seq_len : 2048)));
    TRY(sqz_gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)c->dim));
    TRY(sqz_gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)c->hidden_dim));
    TRY(sqz_gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads));
    TRY(sqz_gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads));
    TRY(sqz_gguf_writer_add_f32(w, KEY("rope.freq_base"), c->rope_theta));
    TRY(sqz_gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps));
    TRY(sqz_gguf_writer_add_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim));
    TRY(sqz_gguf_writer_add_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim));
    if (!strcmp(arch, "llama")) { /* LlamaModel adds these two; Qwen2Model does not */
        TRY(sqz_gguf_writer_add_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size));
        TRY(sqz_gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim));
    }
    TRY(sqz_gguf_writer_add_str(w, "tokenizer.ggml.model", tk->model, strlen(tk->model)));
    TRY(sqz_gguf_writer_add_str(w, "tokenizer.ggml.pre", tk->pre, strlen(tk->pre)));
    TRY(sqz_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", tk->tokens, tk->token_lens,
                                    (uint64_t)tk->n_tokens));
    if (tk->scores)
        TRY(sqz_gguf_writer_add_arr(w, "tokenizer.ggml.scores", SQZ_GGUF_F32, tk->scores,
                                    (uint64_t)tk->n_tokens));
    TRY(sqz_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", SQZ_GGUF_I32, tk->token_types,
                                (uint64_t)tk->n_tokens));
    if (!strcmp(tk->model, "gpt2"))
        TRY(sqz_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", tk->merges, tk->merge_lens,
                                        (uint64_t)tk->n_merges));
    /* special ids in gguf-py's SpecialVocab order: bos, eos, unk, (sep), pad */
    if (tk->bos >= 0) TRY(sqz_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)tk->bos));
    if (tk->eos >= 0) TRY(sqz_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)tk->eos));
    if (tk->unk >= 0)
        TRY(sqz_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)tk->unk));
    if (tk->pad >= 0)
        TRY(sqz_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)tk->pad));
    TRY(sqz_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", tk->add_bos != 0));
    TRY(sqz_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", tk->add_eos != 0));
    if (!strcmp(tk->model, "llama") && !tk->add_space_prefix) /* llama.cpp's default is true */
        TRY(sqz_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", 0));
    /* llama-quantize appends these two (GGML_QNT_VERSION is 2) */
    TRY(sqz_gguf_writer_add_u32(w, "general.quantization_version", 2));
    TRY(sqz_gguf_writer_add_u32(w, "general.file_type", (uint32_t)ftype));
    if (sqz_model_n_absent_subblocks(m)) { /* sqzf only (docs/sqzf.md): which sub-blocks each layer has */
        int32_t *parts = malloc((size_t)c->n_layers * sizeof *parts);
        if (!parts) return SQZ_ERR_NOMEM;
        for (int l = 0; l < c->n_layers; l++)
            parts[l] = sqz_layer_has_attn(&m->layers[l]) | sqz_layer_has_ffn(&m->layers[l]) << 1;
        st = sqz_gguf_writer_add_arr(w, SQZ_KEY_SUBBLOCKS, SQZ_GGUF_I32, parts, (uint64_t)c->n_layers);
        free(parts);
        if (st) return st;
    }
#undef TRY
#undef KEY
    return SQZ_OK;
}

/* Fails unless the folder that will hold path exists (checked before any work is done). */
static sqz_status check_out_dir(sqz_ctx *ctx, const char *path) {
    char *dir = strdup(path);
    if (!dir) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    sqz_status st = SQZ_OK;
    if (slash) {
        if (slash == dir) slash[1] = 0; else *slash = 0;
        if (!sqz_path_is_dir(dir))
            st = sqz_fail(ctx, SQZ_ERR_IO, "%s: folder %s does not exist", path, dir);
    }
    free(dir);
    return st;
}

sqz_status sqz_convert(sqz_ctx *ctx, const sqz_model *model, const char *out_path,
                       const sqz_convert_opts *opts, sqz_convert_result *result) {
    if (result) memset(result, 0, sizeof *result);
    if (!model || !out_path || !*out_path || !opts)
        return sqz_fail(ctx, SQZ_ERR_ARG, "convert: missing model, output path or options");
    const double t0 = sqz_now();
    sqz_preset preset;
    if (!opts->type || sqz_preset_find(opts->type, opts->pure, &preset) != 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: unknown type '%s' (known: %s)", out_path,
                        opts->type ? opts->type : "(none)", sqz_preset_names());
    if (!model->tok)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "%s: the model has no tokenizer, and a GGUF file must carry one "
                        "(give it with --tokenizer)",
                        out_path);
    sqz_preset embd = { 0 };
    if (opts->embd_type && (sqz_preset_find(opts->embd_type, 1, &embd) != 0 || embd.mix))
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: unknown token embedding type '%s'", out_path, opts->embd_type);
    sqz_status st = check_out_dir(ctx, out_path);
    if (st) return st;

    const sqz_config *c = &model->cfg;
    const char *arch = c->arch == SQZ_ARCH_QWEN2 ? "qwen2" : "llama"; /* Mistral is llama to llama.cpp */
    /* llama.cpp's llama graphs rotate interleaved pairs; its qwen2 graphs rotate HF's pairs */
    const int permute = !strcmp(arch, "llama") && !c->rope_interleaved;

    sqz_tok_gguf tk;
    memset(&tk, 0, sizeof tk);
    st = model->tok->kind == SQZ_TOK_BPE ? sqz_bpe_export(ctx, model->tok, c->vocab_size, &tk)
                                         : sqz_llama2c_export(ctx, model->tok, c->vocab_size, &tk);
    if (st) return st;
    if (tk.n_tokens > c->vocab_size) {
        sqz_tok_gguf_free(&tk);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: the tokenizer has %d tokens, the model %d",
                        out_path, tk.n_tokens, c->vocab_size);
    }

    out_list l = {0};
    sqz_gguf_writer *w = NULL;
    if (build_list(model, permute, &l) != 0) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", out_path);
        goto done;
    }
    const sqz_preset_model pm = {
        .n_layers = c->n_layers, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
        .tied = c->tied_embeddings,
        .is_70b = c->n_layers == 80 && (c->arch == SQZ_ARCH_QWEN2 || c->n_heads != c->n_kv_heads),
    };
    int n_fallback = 0;
    for (int i = 0; i < l.n; i++) {
        out_tensor *t = &l.t[i];
        const sqz_preset *p = opts->embd_type && t->role == SQZ_ROLE_TOKEN_EMBD ? &embd : &preset;
        t->type = t->is_vec ? SQZ_TYPE_F32
                            : sqz_preset_tensor_type(p, &pm, t->role, t->layer, t->src->cols,
                                                     &t->fallback);
        /* a matrix already in one of sqz's own types (dq2, mx*) stays in it: only sqzf holds it */
        if (!t->is_vec && t->src->type >= SQZ_TYPE_SQZ_FIRST && sqz_type_get(t->src->type) &&
            (sqz_type_get(t->src->type)->type_size || t->src->type == SQZ_TYPE_SP8 ||
             t->src->type == SQZ_TYPE_LOWRANK || t->src->type == SQZ_TYPE_BITSTACK))
            t->type = t->src->type, t->fallback = 0;
        /* quantize's per-tensor choices (--alloc): a quantized GGUF type stays (an untied
         * token_embd is not one of them: it gets the mix's type whatever it came in) */
        if (opts->keep_types && !t->is_vec && t->src->type != SQZ_TYPE_F32 && t->src->type != SQZ_TYPE_F16 &&
            t->src->type != SQZ_TYPE_BF16 && (t->role != SQZ_ROLE_TOKEN_EMBD || c->tied_embeddings))
            t->type = t->src->type, t->fallback = 0;
        n_fallback += t->fallback;
    }

    if ((st = sqz_gguf_writer_new(ctx, &w))) goto done;
    for (int i = 0; i < l.n; i++) /* mixllm's matrices exist only in sqz's container */
        if (l.t[i].src->type == SQZ_TYPE_MIXLLM || l.t[i].type >= SQZ_TYPE_SQZ_FIRST) sqz_gguf_writer_set_sqzf(w, 1);
    /* so do layers without their attention or MLP (llama.cpp wants every block whole) */
    if (sqz_model_n_absent_subblocks(model)) sqz_gguf_writer_set_sqzf(w, 1);
    if ((st = write_meta(w, model, arch, &tk, preset.ftype, opts->card))) goto done;
    for (int i = 0; i < l.n; i++) /* sp8's row layout (docs/sparse.md), which the loader checks */
        if (l.t[i].type == SQZ_TYPE_SP8) {
            if ((st = sqz_gguf_writer_add_u32(w, SQZ_KEY_SP8_LAYOUT, SQZ_SP8_LAYOUT))) goto done;
            break;
        }
    /* every tensor's name, shape and type: the whole header, before any data */
    uint64_t n_params = 0, data_bytes = 0;
    for (int i = 0; i < l.n; i++) {
        out_tensor *t = &l.t[i];
        n_params += (uint64_t)(t->is_vec ? 1 : t->src->rows) * (uint64_t)t->src->cols;
        if (!t->is_vec && t->src->type == SQZ_TYPE_MIXLLM) {
            if ((st = declare_mixed(ctx, w, out_path, t, &data_bytes))) goto done;
            continue;
        }
        if (!t->is_vec && t->src->type == SQZ_TYPE_SP8) {
            if ((st = declare_sp8(ctx, w, out_path, t, &data_bytes))) goto done;
            continue;
        }
        if (!t->is_vec && t->src->type == SQZ_TYPE_LOWRANK) {
            if ((st = declare_lr(w, t, &data_bytes))) goto done;
            continue;
        }
        if (!t->is_vec && t->src->type == SQZ_TYPE_BITSTACK) {
            if ((st = declare_bs(w, t, &data_bytes))) goto done;
            continue;
        }
        int64_t ne[2] = { t->src->cols, t->src->rows };
        size_t nb;
        if ((st = sqz_gguf_writer_declare_tensor(w, t->name, t->is_vec ? 1 : 2, ne, t->type, &nb)))
            goto done;
        data_bytes += nb;
    }
    if ((st = sqz_gguf_writer_begin(w, out_path))) goto done;
    sqz_progress(ctx, "convert", 0, (uint64_t)l.n);
    for (int i = 0; i < l.n; i++) {
        const out_tensor *t = &l.t[i];
        st = t->is_vec                           ? write_vec(ctx, w, out_path, t)
             : t->src->type == SQZ_TYPE_MIXLLM ? write_mixed(w, model, t)
             : t->src->type == SQZ_TYPE_SP8    ? write_sp8(w, model, t)
             : t->src->type == SQZ_TYPE_LOWRANK ? write_lr(ctx, w, model, out_path, t)
             : t->src->type == SQZ_TYPE_BITSTACK ? write_bs(w, t)
                                               : write_matrix(ctx, w, model, out_path, t);
        if (st) goto done;
        sqz_progress(ctx, "convert", (uint64_t)i + 1, (uint64_t)l.n);
    }
    if ((st = sqz_gguf_writer_finish(w))) goto done;
    if (result) {
        struct stat sb;
        result->file_bytes = stat(out_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        result->n_params = n_params;
        result->bits_per_weight = n_params ? 8.0 * (double)data_bytes / (double)n_params : 0;
        result->n_tensors = l.n;
        result->n_fallback = n_fallback;
        result->seconds = sqz_now() - t0;
    }
done:
    sqz_gguf_writer_free(w); /* removes the temporary file after a failure */
    for (int i = 0; i < l.n; i++) free(l.t[i].perm), free(l.t[i].sp_off);
    free(l.t);
    sqz_tok_gguf_free(&tk);
    return st;
}
