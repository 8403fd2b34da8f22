/* model.c - loading by format, info, and freeing. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"

const char *sqz_arch_name(sqz_arch a) {
    switch (a) {
    case SQZ_ARCH_LLAMA: return "llama";
    case SQZ_ARCH_MISTRAL: return "mistral";
    case SQZ_ARCH_QWEN2: return "qwen2";
    }
    return "?";
}

void *sqz_model_own(sqz_model *m, void *p) {
    if (!p) return NULL;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) {
            free(p);
            return NULL;
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return p;
}

sqz_status sqz_model_vector_f32(sqz_ctx *ctx, sqz_model *m, sqz_tensor *t) {
    if (t->type == SQZ_TYPE_F32) return SQZ_OK;
    float *f = sqz_model_own(m, malloc((size_t)t->cols * sizeof(float)));
    if (!f) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    sqz_tensor_row_f32(t, 0, f);
    t->type = SQZ_TYPE_F32;
    t->data = f;
    return SQZ_OK;
}

sqz_status sqz_config_check(sqz_ctx *ctx, const sqz_config *c, const char *src) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->head_dim <= 0 || c->vocab_size <= 0)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: sizes must be positive", src);
    if (c->n_heads % c->n_kv_heads)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %d attention heads not divisible by %d KV heads",
                        src, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: head_dim %d is odd (RoPE needs pairs)", src,
                        c->head_dim);
    if (c->dim > (1 << 20) || c->hidden_dim > (1 << 22) || c->n_layers > 4096 ||
        c->n_heads > 4096 || c->vocab_size > (1 << 24) || c->head_dim > 4096)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: implausibly large sizes", src);
    return SQZ_OK;
}

/* 1 if path is a file starting with the GGUF magic, or sqzf's (the same reader opens both). */
static int is_gguf_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4] = { 0 };
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && (!memcmp(magic, "GGUF", 4) || !memcmp(magic, "SQZF", 4));
}

static int is_llama2c_path(const char *path) {
    size_t n = strlen(path);
    return n > 4 && !strcmp(path + n - 4, ".bin");
}

sqz_status sqz_model_load(sqz_ctx *ctx, const char *path, const char *tokenizer_path,
                          sqz_model **out) {
    *out = NULL;
    if (!path || !*path) return sqz_fail(ctx, SQZ_ERR_ARG, "no model path given");
    sqz_model *m = calloc(1, sizeof *m);
    if (!m) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    m->ctx = ctx;
    m->src = path;
    sqz_status st;
    if (!sqz_path_is_dir(path) && is_gguf_file(path))
        st = sqz_load_gguf(ctx, m, path);
    else if (is_llama2c_path(path))
        st = sqz_load_llama2c(ctx, m, path, tokenizer_path);
    else if (sqz_path_exists(path))
        st = sqz_load_hf(ctx, m, path, tokenizer_path);
    else
        st = sqz_fail(ctx, SQZ_ERR_IO, "%s: no such file or folder", path);
    if (st != SQZ_OK) {
        sqz_model_free(m);
        return st;
    }
    if (m->n_bs && (st = sqz_model_bitstack_fit(ctx, m, 0, NULL)) != SQZ_OK) { /* every block */
        sqz_model_free(m);
        return st;
    }
    m->src = NULL; /* the caller's string may not outlive the model */
    m->self = m;
    *out = m;
    return SQZ_OK;
}

void sqz_model_free(sqz_model *m) {
    if (!m) return;
    sqz_tokenizer_free(m->tok);
    sqz_st_close(m->st);
    sqz_gguf_close(m->gguf);
    sqz_file_unmap(&m->map);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    sqz_model_free_bs(m);
    if (m->run_owner == m) {
        free(m->run_layers);
        free(m->run_mem);
    }
    free(m);
}

void sqz_layer_tensors(const sqz_layer_weights *w, const sqz_tensor *out[SQZ_LAYER_N_TENSORS]) {
    const sqz_tensor *t[SQZ_LAYER_N_TENSORS] = { &w->attn_norm, &w->wq, &w->wk, &w->wv, &w->wo,
                                                 &w->bq, &w->bk, &w->bv, &w->bo, &w->ffn_norm,
                                                 &w->w_gate, &w->w_up, &w->w_down };
    memcpy(out, t, sizeof t);
}

int sqz_model_n_absent_subblocks(const sqz_model *m) {
    int n = 0;
    for (int l = 0; m->layers && l < m->cfg.n_layers; l++)
        n += !sqz_layer_has_attn(&m->layers[l]) + !sqz_layer_has_ffn(&m->layers[l]);
    return n;
}

sqz_status sqz_model_require_subblocks(sqz_ctx *ctx, const sqz_model *m, const char *what) {
    const int n = m ? sqz_model_n_absent_subblocks(m) : 0;
    if (!n) return SQZ_OK;
    return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                    "%s: %d attention / MLP sub-blocks are dropped from this model (sqz drop), and %s needs them all",
                    m->gguf ? sqz_gguf_path(m->gguf) : "model", n, what);
}

size_t sqz_model_release(const sqz_model *m, const void *p, size_t n) {
    return sqz_st_release(m->st, p, n) + sqz_gguf_release(m->gguf, p, n) + sqz_file_release(&m->map, p, n);
}

static uint64_t tensor_elems(const sqz_tensor *t) {
    return t->data ? (uint64_t)t->rows * (uint64_t)t->cols : 0;
}

static uint64_t tensor_bytes(const sqz_tensor *t) {
    return sqz_tensor_nbytes(t);
}

void sqz_model_get_info(const sqz_model *m, sqz_model_info *info) {
    const sqz_config *c = &m->cfg;
    memset(info, 0, sizeof *info);
    info->arch = sqz_arch_name(c->arch);
    info->format = m->format;
    info->weight_type = "?";
    for (int l = 0; l < c->n_layers; l++) /* the first layer's q (or gate: no attention) */
        if (m->layers[l].wq.data || m->layers[l].w_gate.data) {
            info->weight_type = sqz_type_name(m->layers[l].wq.data ? m->layers[l].wq.type : m->layers[l].w_gate.type);
            break;
        }
    info->dim = c->dim;
    info->hidden_dim = c->hidden_dim;
    info->n_layers = c->n_layers;
    info->n_heads = c->n_heads;
    info->n_kv_heads = c->n_kv_heads;
    info->head_dim = c->head_dim;
    info->vocab_size = c->vocab_size;
    info->max_seq_len = c->max_seq_len;
    info->rope_theta = c->rope_theta;
    info->norm_eps = c->norm_eps;
    info->rope_interleaved = c->rope_interleaved;
    info->tied_embeddings = c->tied_embeddings;
    info->has_qkv_bias = c->has_qkv_bias;
    info->bos_id = m->tok ? sqz_tokenizer_bos(m->tok) : c->bos_id;
    info->eos_id = m->tok ? sqz_tokenizer_eos(m->tok) : c->eos_id;
    info->add_bos = m->tok ? sqz_tokenizer_add_bos(m->tok) : 0;
    info->tokenizer = m->tok ? sqz_tokenizer_kind(m->tok) : "none";
    uint64_t np = 0, nb = 0;
    const sqz_tensor *glob[] = { &m->tok_embd, &m->out_norm, &m->output };
    for (int i = 0; i < 3; i++) {
        if (i == 2 && c->tied_embeddings) break;
        np += tensor_elems(glob[i]);
        nb += tensor_bytes(glob[i]);
    }
    for (int l = 0; l < c->n_layers; l++) {
        const sqz_layer_weights *w = &m->layers[l];
        const sqz_tensor *ts[SQZ_LAYER_N_TENSORS];
        sqz_layer_tensors(w, ts);
        for (size_t i = 0; i < SQZ_LAYER_N_TENSORS; i++) {
            np += tensor_elems(ts[i]);
            nb += tensor_bytes(ts[i]);
        }
    }
    info->n_params = np;
    info->absent_subblocks = sqz_model_n_absent_subblocks(m);
    info->weight_bytes = m->n_bs ? m->bs_bytes : nb;
    if (m->n_bs) info->weight_type = "bitstack";
}

sqz_status sqz_tokenize(sqz_ctx *ctx, const sqz_model *m, const char *text, size_t len,
                        int add_bos, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!m->tok) return sqz_fail(ctx, SQZ_ERR_ARG, "the model has no tokenizer (give one with --tokenizer)");
    return sqz_tokenizer_encode(ctx, m->tok, text, len, add_bos, ids, n_ids);
}

sqz_status sqz_token_to_text(const sqz_model *m, int32_t prev, int32_t id, char *buf, size_t cap,
                             size_t *len) {
    *len = 0;
    if (!m->tok) return SQZ_ERR_ARG;
    return sqz_tokenizer_decode(m->tok, prev, id, buf, cap, len);
}
