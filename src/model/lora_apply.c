/* lora_apply.c - sqz_model_apply_lora: a llama.cpp GGUF LoRA adapter (what `sqz finetune --lora`
 * and llama.cpp's convert_lora_to_gguf.py write) merged into a loaded model's weights:
 * W' = W + s B A, s = scale * alpha / rank (scale when the file has no alpha), in f32. llama.cpp
 * computes W x + s B (A x) at run time; merged, a quantized W is dequantized exactly first, so
 * the two are the same function. Adapted matrices become f32 copies the model owns (the other
 * weights stay mapped). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "model/model.h"

/* The model matrix an adapter tensor's base name (blk.N.attn_q.weight, output.weight) names;
 * *is_qk: a q / k matrix (its rows follow the RoPE layout); NULL if none. */
static sqz_tensor *target(sqz_model *m, const char *base, int *is_qk) {
    static const struct { const char *name; size_t off; int qk; } kinds[] = {
        { "attn_q", offsetof(sqz_layer_weights, wq), 1 },
        { "attn_k", offsetof(sqz_layer_weights, wk), 1 },
        { "attn_v", offsetof(sqz_layer_weights, wv), 0 },
        { "attn_output", offsetof(sqz_layer_weights, wo), 0 },
        { "ffn_gate", offsetof(sqz_layer_weights, w_gate), 0 },
        { "ffn_up", offsetof(sqz_layer_weights, w_up), 0 },
        { "ffn_down", offsetof(sqz_layer_weights, w_down), 0 },
    };
    *is_qk = 0;
    if (!strcmp(base, "output.weight")) return &m->output;
    int l, n = 0;
    char kind[32];
    if (sscanf(base, "blk.%d.%31[a-z_].weight%n", &l, kind, &n) != 2 || base[n] || l < 0 ||
        l >= m->cfg.n_layers)
        return NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(kind, kinds[i].name)) {
            *is_qk = kinds[i].qk;
            return (sqz_tensor *)((char *)&m->layers[l] + kinds[i].off);
        }
    return NULL;
}

/* Row r of a 2-D adapter tensor as f32. */
static void row_f32(const sqz_gguf_tensor *t, int64_t r, float *out) {
    const sqz_tensor v = { (sqz_type)t->type, t->ne[0], t->ne[1], t->data };
    sqz_tensor_row_f32(&v, r, out);
}

static sqz_status apply_one(sqz_ctx *ctx, sqz_model *m, const char *path, const char *base,
                            const sqz_gguf_tensor *A, const sqz_gguf_tensor *B, float s) {
    int is_qk;
    sqz_tensor *w = target(m, base, &is_qk);
    if (!w || !w->data)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: adapter tensor %s.lora_a: sqz adapts the "
                        "attention and MLP matrices and the output head, not %s", path, base, base);
    const int64_t rows = w->rows, cols = w->cols, r = A->ne[1];
    if (A->n_dims != 2 || B->n_dims != 2 || A->ne[0] != cols || B->ne[1] != rows || B->ne[0] != r)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s: lora_a is %lld x %lld and lora_b %lld x %lld "
                        "(ggml order), the model's matrix %lld x %lld", path, base,
                        (long long)A->ne[0], (long long)A->ne[1], (long long)B->ne[0],
                        (long long)B->ne[1], (long long)cols, (long long)rows);
    if (!sqz_type_usable(A->type) || !sqz_type_usable(B->type))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: %s: adapter tensor type not supported", path, base);
    /* an HF-layout model holds q / k rows in HF's RoPE order; the adapter, made for the GGUF
     * that sqz_convert (or convert_hf_to_gguf.py) writes, in llama.cpp's */
    const int unpermute = is_qk && !m->cfg.rope_interleaved && m->cfg.arch != SQZ_ARCH_QWEN2;
    float *out = malloc((size_t)(rows * cols) * sizeof *out), *Af = malloc((size_t)(r * cols) * sizeof *Af),
          *brow = malloc((size_t)r * sizeof *brow);
    if (!out || !Af || !brow) {
        free(out), free(Af), free(brow);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory merging %s", path, base);
    }
    for (int64_t k = 0; k < r; k++) row_f32(A, k, Af + k * cols);
    for (int64_t g = 0; g < rows; g++) {
        const int64_t i = unpermute ? sqz_rope_gguf_src_row(g, m->cfg.head_dim) : g;
        float *o = out + i * cols;
        sqz_tensor_row_f32(w, i, o);
        row_f32(B, g, brow);
        for (int64_t k = 0; k < r; k++) {
            const float b = s * brow[k];
            const float *a = Af + k * cols;
            for (int64_t c = 0; c < cols; c++) o[c] += b * a[c];
        }
    }
    free(Af);
    free(brow);
    if (!sqz_model_own(m, out)) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    w->type = SQZ_TYPE_F32; /* a head tied to the embedding gets its own matrix */
    w->data = out;
    return SQZ_OK;
}

sqz_status sqz_model_apply_lora(sqz_ctx *ctx, sqz_model *m, const char *path, float scale) {
    if (m->run_owner == m)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: an adapter must be applied before the model runs", path);
    sqz_gguf *g = NULL;
    sqz_status st = sqz_gguf_open(ctx, path, &g);
    if (st) return st;
    const char *s;
    size_t len;
    if (sqz_gguf_get_str(ctx, g, "general.type", &s, &len) || len != 7 || memcmp(s, "adapter", 7) ||
        sqz_gguf_get_str(ctx, g, "adapter.type", &s, &len) || len != 4 || memcmp(s, "lora", 4)) {
        sqz_gguf_close(g);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: not a LoRA adapter (general.type \"adapter\", "
                        "adapter.type \"lora\")", path);
    }
    const char *arch = m->cfg.arch == SQZ_ARCH_QWEN2 ? "qwen2" : "llama";
    if (sqz_gguf_get_str(ctx, g, "general.architecture", &s, &len) || len != strlen(arch) ||
        memcmp(s, arch, len)) {
        sqz_gguf_close(g);
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: the adapter is not for a %s model", path, arch);
    }
    float alpha = 0;
    if (sqz_gguf_find_key(g, "adapter.lora.alpha") >= 0 &&
        (st = sqz_gguf_get_f32(ctx, g, "adapter.lora.alpha", &alpha))) {
        sqz_gguf_close(g);
        return st;
    }
    int n_pairs = 0;
    for (size_t i = 0; i < sqz_gguf_n_tensors(g) && !st; i++) {
        const sqz_gguf_tensor *A = sqz_gguf_get_tensor(g, i);
        const size_t nl = strlen(A->name);
        if (nl > 7 && !strcmp(A->name + nl - 7, ".lora_b")) continue;
        if (nl <= 7 || strcmp(A->name + nl - 7, ".lora_a")) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: tensor %s is not a .lora_a / .lora_b", path, A->name);
            break;
        }
        char base[128], bname[136];
        snprintf(base, sizeof base, "%.*s", (int)(nl - 7), A->name);
        snprintf(bname, sizeof bname, "%s.lora_b", base);
        const sqz_gguf_tensor *B = sqz_gguf_find_tensor(g, bname);
        if (!B) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s has no %s", path, A->name, bname);
            break;
        }
        /* llama.cpp: scale * alpha / rank, or scale alone without an alpha */
        const float s_ab = alpha > 0 ? scale * alpha / (float)A->ne[1] : scale;
        st = apply_one(ctx, m, path, base, A, B, s_ab);
        n_pairs++;
    }
    if (!st && !n_pairs) st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: the adapter holds no tensors", path);
    sqz_gguf_close(g);
    return st;
}
