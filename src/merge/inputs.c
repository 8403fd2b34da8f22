/* inputs.c - the merge driver's inputs: the tensors to merge under their HF names (whatever
 * the inputs' formats), the inputs picked from the config, loaded models checked against each
 * other (architecture, sizes, types, vocabulary), and each input's tensor read as f32 rows in
 * HF's order: rows of Q/K from a source that pairs RoPE dimensions llama.cpp's way (GGUF,
 * llama2.c) are put back, so inputs of both kinds merge element by element. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "merge/driver.h"

/* ------------------------------------------------------------------ the tensors, HF names */

#define LW(f) offsetof(sqz_layer_weights, f)
static const tensor_spec layer_specs[] = {
    { "input_layernorm.weight", LW(attn_norm), 0, 1 },
    { "self_attn.q_proj.weight", LW(wq), 1, 0 },
    { "self_attn.k_proj.weight", LW(wk), 2, 0 },
    { "self_attn.v_proj.weight", LW(wv), 0, 0 },
    { "self_attn.o_proj.weight", LW(wo), 0, 0 },
    { "self_attn.q_proj.bias", LW(bq), 1, 1 },
    { "self_attn.k_proj.bias", LW(bk), 2, 1 },
    { "self_attn.v_proj.bias", LW(bv), 0, 1 },
    { "self_attn.o_proj.bias", LW(bo), 0, 1 },
    { "post_attention_layernorm.weight", LW(ffn_norm), 0, 1 },
    { "mlp.gate_proj.weight", LW(w_gate), 0, 0 },
    { "mlp.up_proj.weight", LW(w_up), 0, 0 },
    { "mlp.down_proj.weight", LW(w_down), 0, 0 },
};
#undef LW



const sqz_tensor *merge_view_of(const sqz_model *m, const out_tensor *o) {
    if (o->spec) return (const sqz_tensor *)((const char *)&m->layers[o->layer] + o->spec->at);
    return (const sqz_tensor *)((const char *)m + o->model_at);
}

/* The row of a source with llama.cpp's RoPE pairing that holds HF row s (the inverse of
 * convert.c's permutation: within a head of hd rows, HF row u < hd/2 is row 2u, u >= hd/2 is
 * row 2(u - hd/2) + 1). */
static int64_t interleaved_row(int64_t s, int64_t hd) {
    const int64_t head = s / hd, u = s % hd;
    return head * hd + (u < hd / 2 ? 2 * u : 2 * (u - hd / 2) + 1);
}

int merge_build_list(const sqz_model *m, out_tensor **out, int *n_out) {
    const sqz_config *c = &m->cfg;
    const int cap = 3 + c->n_layers * (int)(sizeof layer_specs / sizeof *layer_specs);
    out_tensor *l = calloc((size_t)cap, sizeof *l);
    if (!l) return -1;
    int n = 0;
    const struct { const char *name; size_t at; int layer; } outer[] = {
        { "model.embed_tokens.weight", offsetof(sqz_model, tok_embd), -1 },
        { "model.norm.weight", offsetof(sqz_model, out_norm), c->n_layers },
        { "lm_head.weight", offsetof(sqz_model, output), c->n_layers },
    };
    for (int k = 0; k < 3; k++) {
        if (k == 2 && c->tied_embeddings) continue;
        if (k == 1) { /* the blocks come between the embeddings and the final norm */
            for (int i = 0; i < c->n_layers; i++)
                for (size_t s = 0; s < sizeof layer_specs / sizeof *layer_specs; s++) {
                    out_tensor *o = &l[n];
                    o->spec = &layer_specs[s];
                    o->layer = i;
                    if (!merge_view_of(m, o)->data) { memset(o, 0, sizeof *o); continue; } /* no bias */
                    snprintf(o->name, sizeof o->name, "model.layers.%d.%s", i, layer_specs[s].name);
                    o->t = c->n_layers > 1 ? (double)i / (c->n_layers - 1) : 1; /* as mergekit */
                    n++;
                }
        }
        out_tensor *o = &l[n++];
        snprintf(o->name, sizeof o->name, "%s", outer[k].name);
        o->model_at = outer[k].at;
        o->layer = outer[k].layer;
        o->t = outer[k].layer < 0 ? 0 : 1;
    }
    for (int i = 0; i < n; i++) {
        const sqz_tensor *v = merge_view_of(m, &l[i]);
        l[i].rows = v->rows;
        l[i].cols = v->cols;
    }
    *out = l;
    *n_out = n;
    return 0;
}

/* A path as given when it exists, else relative to the config's folder. */
char *merge_resolve_path(const char *cfg_path, const char *p) {
    if (p[0] == '/' || sqz_path_exists(p)) return strdup(p);
    char *dir = sqz_path_dirname(cfg_path), *j = dir ? sqz_path_join(dir, p) : NULL;
    free(dir);
    if (j && sqz_path_exists(j)) return j;
    free(j);
    return strdup(p);
}

/* The inputs: the base first (methods that take one), then the models not the base. */
sqz_status merge_pick_inputs(merge_run *r) {
    const merge_config *c = r->cfg;
    const sqz_merge_method *me = r->method;
    r->paths = calloc((size_t)c->n_models + 1, sizeof *r->paths);
    r->entry = calloc((size_t)c->n_models + 1, sizeof *r->entry);
    r->models = calloc((size_t)c->n_models + 1, sizeof *r->models);
    if (!r->paths || !r->entry || !r->models) return sqz_fail(r->ctx, SQZ_ERR_NOMEM, "out of memory");
    if (me->takes_base) {
        if (!c->base) return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: %s needs a base_model", c->path, me->name);
        r->entry[0] = -1;
        for (int e = 0; e < c->n_models; e++)
            if (!strcmp(c->models[e].model, c->base)) r->entry[0] = e;
        if (!(r->paths[0] = merge_resolve_path(c->path, c->base))) return sqz_fail(r->ctx, SQZ_ERR_NOMEM, "out of memory");
        r->n_in = 1;
    }
    for (int e = 0; e < c->n_models; e++) {
        if (me->takes_base && !strcmp(c->models[e].model, c->base)) continue; /* its task vector is 0 */
        r->entry[r->n_in] = e;
        if (!(r->paths[r->n_in++] = merge_resolve_path(c->path, c->models[e].model)))
            return sqz_fail(r->ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    const int N = r->n_in - (me->takes_base ? 1 : 0);
    if (N < me->min_models || (me->max_models && N > me->max_models)) {
        char want[64];
        if (me->max_models == me->min_models) snprintf(want, sizeof want, "exactly %d", me->min_models);
        else if (me->max_models) snprintf(want, sizeof want, "%d to %d", me->min_models, me->max_models);
        else snprintf(want, sizeof want, "at least %d", me->min_models);
        return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: %s merges %s model%s%s, the config gives %d",
                        c->path, me->name, want, me->min_models == 1 && me->max_models == 1 ? "" : "s",
                        me->takes_base ? " besides the base" : "", N);
    }
    return SQZ_OK;
}

/* Every input like input 0: architecture and sizes, computable tensor types, vocabulary. */
sqz_status merge_check_inputs(merge_run *r) {
    const sqz_config *a = &r->models[0]->cfg;
    for (int i = 0; i < r->n_in; i++) { /* dropped sub-blocks (sqz drop --attn/--mlp): no tensors to merge */
        sqz_status st = sqz_model_require_subblocks(r->ctx, r->models[i], "merge");
        if (st) return st;
    }
    for (int i = 1; i < r->n_in; i++) {
        const sqz_config *b = &r->models[i]->cfg;
        const struct { const char *what; long x, y; } f[] = {
            { "architecture", a->arch, b->arch },         { "hidden size", a->dim, b->dim },
            { "FFN size", a->hidden_dim, b->hidden_dim }, { "layers", a->n_layers, b->n_layers },
            { "attention heads", a->n_heads, b->n_heads },
            { "KV heads", a->n_kv_heads, b->n_kv_heads }, { "head size", a->head_dim, b->head_dim },
            { "vocabulary size", a->vocab_size, b->vocab_size },
            { "tied embeddings", a->tied_embeddings, b->tied_embeddings },
            { "attention biases", a->has_qkv_bias, b->has_qkv_bias },
        };
        for (size_t k = 0; k < sizeof f / sizeof *f; k++)
            if (f[k].x != f[k].y)
                return sqz_fail(r->ctx, SQZ_ERR_FORMAT, "%s: %s %ld, but %s has %ld: not the same "
                                "architecture, cannot merge", r->paths[i], f[k].what, f[k].y,
                                r->paths[0], f[k].x);
    }
    const int L = a->n_layers, *rg = r->cfg->layer_range;
    if (rg[0] >= 0 && (rg[0] != 0 || rg[1] != L))
        return sqz_fail(r->ctx, SQZ_ERR_UNSUPPORTED, "%s: layer_range [%d, %d]: sqz merges whole "
                        "models ([0, %d] here)", r->cfg->path, rg[0], rg[1], L);
    for (int i = 0; i < r->n_in; i++)
        for (int k = 0; k < r->n_list; k++) {
            const sqz_tensor *v = merge_view_of(r->models[i], &r->list[k]);
            if (!v->data || v->rows != r->list[k].rows || v->cols != r->list[k].cols)
                return sqz_fail(r->ctx, SQZ_ERR_FORMAT, "%s: tensor %s is %s, %s has it [%lld, %lld]",
                                r->paths[i], r->list[k].name, v->data ? "of another shape" : "missing",
                                r->paths[0], (long long)r->list[k].rows, (long long)r->list[k].cols);
            if (v->type != SQZ_TYPE_MIXLLM && !sqz_type_usable(v->type))
                return sqz_fail(r->ctx, SQZ_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which sqz "
                                "cannot dequantize", r->paths[i], r->list[k].name, sqz_type_name(v->type));
        }
    /* one vocabulary: the merged embeddings' rows must mean the same tokens */
    const sqz_tokenizer *t0 = NULL;
    int i0 = 0;
    for (int i = 0; i < r->n_in; i++) {
        const sqz_tokenizer *t = r->models[i]->tok;
        if (!t) continue;
        if (!t0) { t0 = t, i0 = i; continue; }
        const int n = sqz_tokenizer_vocab_size(t0);
        if (sqz_tokenizer_vocab_size(t) != n)
            return sqz_fail(r->ctx, SQZ_ERR_FORMAT, "%s: its tokenizer has %d tokens, %s's %d: "
                            "merging needs one vocabulary", r->paths[i], sqz_tokenizer_vocab_size(t),
                            r->paths[i0], n);
        for (int id = 0; id < n; id++) {
            char x[256], y[256];
            size_t lx = 0, ly = 0;
            sqz_tokenizer_decode(t0, -1, id, x, sizeof x, &lx);
            sqz_tokenizer_decode(t, -1, id, y, sizeof y, &ly);
            if (lx != ly || memcmp(x, y, lx < sizeof x ? lx : sizeof x))
                return sqz_fail(r->ctx, SQZ_ERR_FORMAT, "%s: token %d is '%.*s', in %s '%.*s': "
                                "merging needs one vocabulary", r->paths[i], id, (int)(ly < 40 ? ly : 40),
                                y, r->paths[i0], (int)(lx < 40 ? lx : 40), x);
        }
    }
    return SQZ_OK;
}

/* Input i's tensor o as f32 rows into dst, in HF's row order; then its pages given back.
 * 0, or -1 when out of memory. */
int merge_load_slab(const merge_run *r, int i, const out_tensor *o, float *dst) {
    return merge_load_model_slab(r->ctx, r->models[i], o, dst);
}

int merge_load_model_slab(sqz_ctx *ctx, const sqz_model *m, const out_tensor *o, float *dst) {
    const sqz_tensor *v = merge_view_of(m, o);
    const sqz_config *c = &m->cfg;
    const int heads = !o->spec || !o->spec->rope ? 0 : o->spec->rope == 1 ? c->n_heads : c->n_kv_heads;
    const int unpermute = heads > 0 && c->rope_interleaved;
    if (o->spec && o->spec->is_vec) { /* one row, f32 (the loaders convert vectors) */
        if (!unpermute) {
            sqz_tensor_row_f32(v, 0, dst);
            return 0;
        }
        float *tmp = malloc((size_t)v->cols * sizeof *tmp);
        if (!tmp) return -1;
        sqz_tensor_row_f32(v, 0, tmp);
        const int64_t hd = v->cols / heads;
        for (int64_t s = 0; s < v->cols; s++) dst[s] = tmp[interleaved_row(s, hd)];
        free(tmp);
        return 0;
    }
    const int64_t hd = heads ? v->rows / heads : 0;
#pragma omp parallel for schedule(static) num_threads(ctx->n_threads > 0 ? ctx->n_threads : 1)
    for (int64_t s = 0; s < v->rows; s++)
        sqz_tensor_row_f32(v, unpermute ? interleaved_row(s, hd) : s, dst + s * v->cols);
    sqz_model_release(m, v->data, sqz_tensor_nbytes(v));
    return 0;
}
