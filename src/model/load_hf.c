/* load_hf.c - a Hugging Face folder: config.json + safetensors (single or sharded) +
 * tokenizer.json, for LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/hf_config.h"
#include "model/model.h"

/* Finds name, checks its dtype and shape (rows, cols; rows = 0 for a vector of cols) and sets
 * *t. A half-precision vector is converted to an owned f32 copy. */
static sqz_status get_tensor(sqz_ctx *ctx, sqz_model *m, const char *name, int64_t rows,
                             int64_t cols, int optional, sqz_tensor *t) {
    memset(t, 0, sizeof *t);
    const sqz_st_tensor *s = sqz_st_find(m->st, name);
    if (!s) {
        if (optional) return SQZ_OK;
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor '%s' is missing", m->src, name);
    }
    if ((int)s->type < 0 || !sqz_type_get(s->type))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (sqz reads F32, F16, BF16)",
                        s->file, name, s->dtype);
    int is_vec = rows == 0;
    int ok = is_vec ? (s->n_dims == 1 && s->shape[0] == cols)
                    : (s->n_dims == 2 && s->shape[0] == rows && s->shape[1] == cols);
    if (!ok) {
        char got[128] = "";
        size_t k = 0;
        for (int i = 0; i < s->n_dims && k < sizeof got - 24; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "",
                                  (long long)s->shape[i]);
        if (is_vec)
            return sqz_fail(ctx, SQZ_ERR_FORMAT,
                            "%s: tensor '%s' has shape [%s] but config.json implies [%lld]",
                            s->file, name, got, (long long)cols);
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: tensor '%s' has shape [%s] but config.json implies [%lld, %lld]",
                        s->file, name, got, (long long)rows, (long long)cols);
    }
    t->type = s->type;
    t->rows = is_vec ? 1 : rows;
    t->cols = cols;
    t->data = s->data;
    return is_vec ? sqz_model_vector_f32(ctx, m, t) : SQZ_OK;
}

sqz_status sqz_load_hf(sqz_ctx *ctx, sqz_model *m, const char *path, const char *tokenizer_path) {
    sqz_status st;
    char *dir = NULL, *cfg_path = NULL, *tok_path = NULL;
    if (sqz_path_is_dir(path)) {
        dir = strdup(path);
    } else { /* a path to config.json: its folder */
        dir = strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0; else strcpy(dir, ".");
        }
    }
    if (!dir) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    cfg_path = sqz_path_join(dir, "config.json");
    if (!cfg_path) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    if (!sqz_path_exists(cfg_path)) {
        st = sqz_fail(ctx, SQZ_ERR_IO, "%s: no config.json: not a Hugging Face model folder", path);
        goto done;
    }
    if ((st = sqz_hf_config_load(ctx, cfg_path, &m->cfg)) != SQZ_OK) goto done;
    if ((st = sqz_config_check(ctx, &m->cfg, cfg_path)) != SQZ_OK) goto done;
    if ((st = sqz_st_open(ctx, dir, &m->st)) != SQZ_OK) goto done;
    m->format = "safetensors";

    const sqz_config *c = &m->cfg;
    const int64_t D = c->dim, F = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim, V = c->vocab_size;
    if ((st = get_tensor(ctx, m, "model.embed_tokens.weight", V, D, 0, &m->tok_embd))) goto done;
    if ((st = get_tensor(ctx, m, "model.norm.weight", 0, D, 0, &m->out_norm))) goto done;
    if (c->tied_embeddings) {
        m->output = m->tok_embd;
    } else if ((st = get_tensor(ctx, m, "lm_head.weight", V, D, 0, &m->output))) {
        goto done;
    }
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    for (int l = 0; l < c->n_layers; l++) {
        sqz_layer_weights *w = &m->layers[l];
        struct { const char *name; int64_t rows, cols; int optional; sqz_tensor *t; } spec[] = {
            { "input_layernorm.weight", 0, D, 0, &w->attn_norm },
            { "self_attn.q_proj.weight", qd, D, 0, &w->wq },
            { "self_attn.k_proj.weight", kvd, D, 0, &w->wk },
            { "self_attn.v_proj.weight", kvd, D, 0, &w->wv },
            { "self_attn.o_proj.weight", D, qd, 0, &w->wo },
            { "self_attn.q_proj.bias", 0, qd, !c->has_qkv_bias, &w->bq },
            { "self_attn.k_proj.bias", 0, kvd, !c->has_qkv_bias, &w->bk },
            { "self_attn.v_proj.bias", 0, kvd, !c->has_qkv_bias, &w->bv },
            /* Llama's attention_bias also biases o_proj; Qwen2 has none there */
            { "self_attn.o_proj.bias", 0, D, !(c->has_qkv_bias && c->arch == SQZ_ARCH_LLAMA), &w->bo },
            { "post_attention_layernorm.weight", 0, D, 0, &w->ffn_norm },
            { "mlp.gate_proj.weight", F, D, 0, &w->w_gate },
            { "mlp.up_proj.weight", F, D, 0, &w->w_up },
            { "mlp.down_proj.weight", D, F, 0, &w->w_down },
        };
        for (size_t i = 0; i < sizeof spec / sizeof *spec; i++) {
            char name[256];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, spec[i].name);
            st = get_tensor(ctx, m, name, spec[i].rows, spec[i].cols, spec[i].optional, spec[i].t);
            if (st) goto done;
        }
    }

    tok_path = tokenizer_path ? strdup(tokenizer_path) : sqz_path_join(dir, "tokenizer.json");
    if (!tok_path) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); goto done; }
    if (tokenizer_path || sqz_path_exists(tok_path)) {
        if ((st = sqz_tokenizer_load_hf(ctx, tok_path, &m->tok))) goto done;
        sqz_tokenizer_set_special(m->tok, c->bos_id, c->eos_id);
        if (sqz_tokenizer_vocab_size(m->tok) > c->vocab_size) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %d tokens but the model has a vocabulary of %d",
                          tok_path, sqz_tokenizer_vocab_size(m->tok), c->vocab_size);
            goto done;
        }
    }
    st = SQZ_OK;
done:
    free(dir);
    free(cfg_path);
    free(tok_path);
    return st;
}
