/* load_llama2c.c - Karpathy's llama2.c checkpoints (the original "legacy" export): seven int32
 * (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size
 * means the classifier is not shared with the embedding), then f32 weights in a fixed order.
 * RoPE pairs are interleaved (2i, 2i+1); theta 10000; RMSNorm eps 1e-5. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* Takes the next rows*cols floats of the file as a tensor view. */
static int take(const char **cur, const char *end, int64_t rows, int64_t cols, sqz_tensor *t) {
    size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
    if ((size_t)(end - *cur) < bytes) return 0;
    t->type = SQZ_TYPE_F32;
    t->rows = rows;
    t->cols = cols;
    t->data = *cur;
    *cur += bytes;
    return 1;
}

sqz_status sqz_load_llama2c(sqz_ctx *ctx, sqz_model *m, const char *path,
                            const char *tokenizer_path) {
    sqz_status st = sqz_file_map(ctx, path, &m->map);
    if (st) return st;
    if (m->map.size < 7 * sizeof(int32_t))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: too short for a llama2.c checkpoint", path);
    int32_t h[7];
    memcpy(h, m->map.data, sizeof h);
    if (h[0] == 0x616b3432)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: llama2.c export version %d is not supported (only the legacy export)",
                        path, m->map.size >= 8 ? ((const int32_t *)m->map.data)[1] : -1);
    sqz_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    c->arch = SQZ_ARCH_LLAMA;
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->tied_embeddings = h[5] > 0;
    c->vocab_size = h[5] > 0 ? h[5] : (h[5] == INT32_MIN ? 0 : -h[5]);
    c->max_seq_len = h[6];
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->rope_interleaved = 1;
    c->bos_id = 1;
    c->eos_id = 2;
    if ((st = sqz_config_check(ctx, c, path))) return st;
    if (c->max_seq_len <= 0 || c->max_seq_len > (1 << 22) || c->dim % c->n_heads)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: implausible header (seq_len %d, dim %d, heads %d)",
                        path, c->max_seq_len, c->dim, c->n_heads);
    m->format = "llama2c";

    const int64_t D = c->dim, F = c->hidden_dim, L = c->n_layers, hd = c->head_dim;
    const int64_t qd = (int64_t)c->n_heads * hd, kvd = (int64_t)c->n_kv_heads * hd;
    const char *cur = (const char *)m->map.data + sizeof h, *end = (const char *)m->map.data + m->map.size;
    sqz_tensor all_attn_norm, all_wq, all_wk, all_wv, all_wo, all_ffn_norm, all_w1, all_w2, all_w3;
    sqz_tensor freq_re, freq_im;
    int ok = take(&cur, end, c->vocab_size, D, &m->tok_embd) &&
             take(&cur, end, L, D, &all_attn_norm) && take(&cur, end, L * qd, D, &all_wq) &&
             take(&cur, end, L * kvd, D, &all_wk) && take(&cur, end, L * kvd, D, &all_wv) &&
             take(&cur, end, L * D, qd, &all_wo) && take(&cur, end, L, D, &all_ffn_norm) &&
             take(&cur, end, L * F, D, &all_w1) && take(&cur, end, L * D, F, &all_w2) &&
             take(&cur, end, L * F, D, &all_w3) && take(&cur, end, 1, D, &m->out_norm) &&
             take(&cur, end, c->max_seq_len, hd / 2, &freq_re) &&
             take(&cur, end, c->max_seq_len, hd / 2, &freq_im);
    if (ok && !c->tied_embeddings) ok = take(&cur, end, c->vocab_size, D, &m->output);
    if (!ok)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: truncated: %zu bytes is less than the header's shapes need", path,
                        m->map.size);
    if (cur != end)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %zu unexpected bytes after the weights", path,
                        (size_t)(end - cur));
    if (c->tied_embeddings) m->output = m->tok_embd;

    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->layers) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    for (int64_t l = 0; l < L; l++) {
        sqz_layer_weights *w = &m->layers[l];
        /* layer l's slice of each stacked tensor */
#define SLICE(dst, all, r)                                                                         \
    do {                                                                                           \
        dst = all;                                                                                 \
        dst.rows = r;                                                                              \
        dst.data = (const float *)all.data + (size_t)l * (size_t)(r) * (size_t)all.cols;           \
    } while (0)
        SLICE(w->attn_norm, all_attn_norm, 1);
        SLICE(w->wq, all_wq, qd);
        SLICE(w->wk, all_wk, kvd);
        SLICE(w->wv, all_wv, kvd);
        SLICE(w->wo, all_wo, D);
        SLICE(w->ffn_norm, all_ffn_norm, 1);
        SLICE(w->w_gate, all_w1, F);
        SLICE(w->w_down, all_w2, D);
        SLICE(w->w_up, all_w3, F);
#undef SLICE
    }

    /* tokenizer: the given path, else tokenizer.bin or tok<vocab>.bin beside the checkpoint */
    char *tp = NULL;
    if (tokenizer_path) {
        tp = strdup(tokenizer_path);
    } else {
        char *dir = strdup(path);
        if (!dir) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0; else strcpy(dir, ".");
        char alt[32];
        snprintf(alt, sizeof alt, "tok%d.bin", c->vocab_size);
        const char *names[] = { "tokenizer.bin", alt };
        for (int i = 0; i < 2 && !tp; i++) {
            tp = sqz_path_join(dir, names[i]);
            if (tp && !sqz_path_exists(tp)) { free(tp); tp = NULL; }
        }
        free(dir);
        if (!tp) return SQZ_OK; /* no tokenizer: info works, text commands will say so */
    }
    if (!tp) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    st = sqz_tokenizer_load_llama2c(ctx, tp, c->vocab_size, &m->tok);
    free(tp);
    return st;
}
