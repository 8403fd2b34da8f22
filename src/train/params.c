/* params.c - the flat f32 parameter buffer and its table, made from a loaded model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "train/train.h"

typedef struct builder {
    sqz_train_params *tp;
    int cap;
} builder;

/* Appends a table entry for a (rows x cols) tensor; returns its offset. */
static size_t add(builder *b, const char *name, int64_t rows, int64_t cols) {
    sqz_train_params *tp = b->tp;
    if (tp->n_tensors == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        sqz_train_tensor *t = realloc(tp->t, (size_t)b->cap * sizeof *t);
        if (!t) return SQZ_TRAIN_NONE;
        tp->t = t;
    }
    sqz_train_tensor *e = &tp->t[tp->n_tensors++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->rows = rows;
    e->cols = cols;
    e->off = tp->n;
    tp->n += (size_t)(rows * cols);
    return e->off;
}

static size_t add_l(builder *b, int l, const char *what, int64_t rows, int64_t cols) {
    char name[80];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, what);
    return add(b, name, rows, cols);
}

/* Copies tensor w (any type sqz converts to f32) to dst, after checking its shape. */
static sqz_status copy_in(sqz_ctx *ctx, const sqz_train_tensor *e, const sqz_tensor *w, int frozen,
                          float *dst) {
    if (!w->data) return sqz_fail(ctx, SQZ_ERR_FORMAT, "train: %s is missing", e->name);
    if (w->rows * w->cols != e->rows * e->cols)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "train: %s has %lld x %lld elements, expected %lld x %lld",
                        e->name, (long long)w->rows, (long long)w->cols, (long long)e->rows,
                        (long long)e->cols);
    const sqz_cvt_fn cvt = sqz_cvt_get(w->type, sqz_isa_best());
    if (!cvt || (!frozen && w->type != SQZ_TYPE_F32 && w->type != SQZ_TYPE_F16 && w->type != SQZ_TYPE_BF16))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "train: %s is %s; full training needs f32, f16 or bf16 weights "
                        "(convert the model to f16 first)", e->name, sqz_type_name(w->type));
    const size_t rs = sqz_type_row_size(w->type, w->cols);
    for (int64_t r = 0; r < w->rows; r++)
        cvt((const char *)w->data + (size_t)r * rs, dst + (size_t)(r * w->cols), w->cols);
    return SQZ_OK;
}

sqz_status sqz_train_params_from_model(sqz_ctx *ctx, const sqz_model *m, int frozen,
                                       sqz_train_params *out) {
    memset(out, 0, sizeof *out);
    const sqz_config *c = &m->cfg;
    if (c->arch != SQZ_ARCH_LLAMA && c->arch != SQZ_ARCH_MISTRAL && c->arch != SQZ_ARCH_QWEN2)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "train: architecture %s", sqz_arch_name(c->arch));
    sqz_train_params *tp = out;
    tp->cfg = *c;
    builder b = { tp, 0 };
    const int64_t D = c->dim, F = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim;
    tp->L = calloc((size_t)c->n_layers, sizeof *tp->L);
    if (!tp->L) return sqz_fail(ctx, SQZ_ERR_NOMEM, "train: out of memory");
    tp->tok_embd = add(&b, "model.embed_tokens.weight", c->vocab_size, D);
    for (int l = 0; l < c->n_layers; l++) {
        sqz_train_layer *L = &tp->L[l];
        const sqz_layer_weights *w = &m->layers[l];
        L->attn_norm = add_l(&b, l, "input_layernorm.weight", 1, D);
        L->wq = add_l(&b, l, "self_attn.q_proj.weight", qd, D);
        L->wk = add_l(&b, l, "self_attn.k_proj.weight", kvd, D);
        L->wv = add_l(&b, l, "self_attn.v_proj.weight", kvd, D);
        L->wo = add_l(&b, l, "self_attn.o_proj.weight", D, qd);
        L->bq = w->bq.data ? add_l(&b, l, "self_attn.q_proj.bias", 1, qd) : SQZ_TRAIN_NONE;
        L->bk = w->bk.data ? add_l(&b, l, "self_attn.k_proj.bias", 1, kvd) : SQZ_TRAIN_NONE;
        L->bv = w->bv.data ? add_l(&b, l, "self_attn.v_proj.bias", 1, kvd) : SQZ_TRAIN_NONE;
        L->bo = w->bo.data ? add_l(&b, l, "self_attn.o_proj.bias", 1, D) : SQZ_TRAIN_NONE;
        L->ffn_norm = add_l(&b, l, "post_attention_layernorm.weight", 1, D);
        L->w_gate = add_l(&b, l, "mlp.gate_proj.weight", F, D);
        L->w_up = add_l(&b, l, "mlp.up_proj.weight", F, D);
        L->w_down = add_l(&b, l, "mlp.down_proj.weight", D, F);
    }
    tp->out_norm = add(&b, "model.norm.weight", 1, D);
    tp->output = c->tied_embeddings ? tp->tok_embd : add(&b, "lm_head.weight", c->vocab_size, D);
    if (!tp->t || tp->t[tp->n_tensors - 1].off == SQZ_TRAIN_NONE) {
        sqz_train_params_free(tp);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "train: out of memory");
    }
    tp->p = malloc(tp->n * sizeof(float));
    if (!tp->p) {
        sqz_train_params_free(tp);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "train: out of memory for %zu parameters", tp->n);
    }
    /* the table's order is the order above: walk it with the matching model tensors */
    int i = 0;
    sqz_status st = copy_in(ctx, &tp->t[i++], &m->tok_embd, frozen, tp->p + tp->tok_embd);
    for (int l = 0; l < c->n_layers && st == SQZ_OK; l++) {
        const sqz_layer_weights *w = &m->layers[l];
        const sqz_tensor *src[SQZ_LAYER_N_TENSORS];
        sqz_layer_tensors(w, src);
        for (size_t k = 0; k < SQZ_LAYER_N_TENSORS && st == SQZ_OK; k++) {
            if (!src[k]->data && (k >= 5 && k <= 8)) continue; /* absent bias */
            st = copy_in(ctx, &tp->t[i], src[k], frozen, tp->p + tp->t[i].off);
            i++;
        }
    }
    if (st == SQZ_OK) st = copy_in(ctx, &tp->t[i++], &m->out_norm, frozen, tp->p + tp->out_norm);
    if (st == SQZ_OK && !c->tied_embeddings) st = copy_in(ctx, &tp->t[i++], &m->output, frozen, tp->p + tp->output);
    if (st != SQZ_OK) sqz_train_params_free(tp);
    return st;
}

void sqz_train_params_free(sqz_train_params *tp) {
    if (!tp) return;
    free(tp->t);
    free(tp->p);
    free(tp->L);
    memset(tp, 0, sizeof *tp);
}

const sqz_train_tensor *sqz_train_find(const sqz_train_params *tp, const char *name) {
    for (int i = 0; i < tp->n_tensors; i++)
        if (!strcmp(tp->t[i].name, name)) return &tp->t[i];
    return NULL;
}

static sqz_tensor view(const float *p, size_t off, int64_t rows, int64_t cols) {
    sqz_tensor t = { SQZ_TYPE_F32, cols, rows, off == SQZ_TRAIN_NONE ? NULL : p + off };
    return t;
}

void sqz_train_model_view(const sqz_model *m, const sqz_train_params *tp, const float *p,
                          sqz_layer_weights *layers, sqz_model *out) {
    const sqz_config *c = &tp->cfg;
    const int64_t D = c->dim, F = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim;
    *out = *m;
    out->layers = layers;
    out->run_owner = NULL;
    out->run_layers = NULL;
    out->run_mem = NULL;
    out->tok_embd = view(p, tp->tok_embd, c->vocab_size, D);
    out->out_norm = view(p, tp->out_norm, 1, D);
    out->output = view(p, tp->output, c->vocab_size, D);
    for (int l = 0; l < c->n_layers; l++) {
        const sqz_train_layer *L = &tp->L[l];
        sqz_layer_weights *w = &layers[l];
        w->attn_norm = view(p, L->attn_norm, 1, D);
        w->wq = view(p, L->wq, qd, D);
        w->wk = view(p, L->wk, kvd, D);
        w->wv = view(p, L->wv, kvd, D);
        w->wo = view(p, L->wo, D, qd);
        w->bq = view(p, L->bq, 1, qd);
        w->bk = view(p, L->bk, 1, kvd);
        w->bv = view(p, L->bv, 1, kvd);
        w->bo = view(p, L->bo, 1, D);
        w->ffn_norm = view(p, L->ffn_norm, 1, D);
        w->w_gate = view(p, L->w_gate, F, D);
        w->w_up = view(p, L->w_up, F, D);
        w->w_down = view(p, L->w_down, D, F);
    }
}
