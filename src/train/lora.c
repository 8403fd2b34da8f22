/* lora.c - LoRA adapters for training (train.h) and their file: llama.cpp's GGUF adapter. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "math/rng.h"
#include "train/train.h"

/* GGUF base names of the adaptable matrices, in SQZ_LORA_* order */
static const char *const gguf_name[SQZ_LORA_N] = { "attn_q", "attn_k", "attn_v", "attn_output",
                                                   "ffn_gate", "ffn_up", "ffn_down" };

/* (rows, cols) of layer matrix tg */
static void shape_of(const sqz_config *c, int tg, int64_t *rows, int64_t *cols) {
    const int64_t D = c->dim, F = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t r[SQZ_LORA_N] = { qd, kvd, kvd, D, F, F, D }, k[SQZ_LORA_N] = { D, D, D, qd, D, D, F };
    *rows = r[tg];
    *cols = k[tg];
}

sqz_status sqz_train_lora_new(sqz_ctx *ctx, const sqz_train_params *tp, int rank, float alpha,
                              unsigned targets, uint64_t seed, sqz_train_lora *out) {
    memset(out, 0, sizeof *out);
    const sqz_config *c = &tp->cfg;
    if (rank <= 0) return sqz_fail(ctx, SQZ_ERR_ARG, "lora: rank %d", rank);
    if (!(targets & ((1u << SQZ_LORA_N) - 1))) return sqz_fail(ctx, SQZ_ERR_ARG, "lora: no target matrices");
    for (int tg = 0; tg < SQZ_LORA_N; tg++) {
        int64_t rows, cols;
        shape_of(c, tg, &rows, &cols);
        if ((targets >> tg & 1) && rank > (rows < cols ? rows : cols))
            return sqz_fail(ctx, SQZ_ERR_ARG, "lora: rank %d exceeds %s's smaller side (%lld x %lld)",
                            rank, gguf_name[tg], (long long)rows, (long long)cols);
    }
    out->rank = rank;
    out->alpha = alpha > 0 ? alpha : (float)rank;
    out->scale = out->alpha / (float)rank;
    const int L = c->n_layers;
    out->a = malloc((size_t)L * sizeof *out->a);
    out->b = malloc((size_t)L * sizeof *out->b);
    out->t = calloc((size_t)L * SQZ_LORA_N * 2, sizeof *out->t);
    if (!out->a || !out->b || !out->t) goto oom;
    for (int l = 0; l < L; l++)
        for (int tg = 0; tg < SQZ_LORA_N; tg++) {
            out->a[l][tg] = out->b[l][tg] = SQZ_TRAIN_NONE;
            if (!(targets >> tg & 1)) continue;
            int64_t rows, cols;
            shape_of(c, tg, &rows, &cols);
            sqz_train_tensor *A = &out->t[out->n_tensors++], *B = &out->t[out->n_tensors++];
            snprintf(A->name, sizeof A->name, "blk.%d.%s.weight.lora_a", l, gguf_name[tg]);
            snprintf(B->name, sizeof B->name, "blk.%d.%s.weight.lora_b", l, gguf_name[tg]);
            A->rows = rank, A->cols = cols, A->off = out->n, out->n += (size_t)(rank * cols);
            B->rows = rows, B->cols = rank, B->off = out->n, out->n += (size_t)(rows * rank);
            out->a[l][tg] = A->off;
            out->b[l][tg] = B->off;
        }
    out->p = calloc(out->n, sizeof(float));
    if (!out->p) goto oom;
    /* A uniform in +-1/sqrt(in) (PEFT: kaiming_uniform_(a=sqrt(5))), B zero */
    uint64_t rng = seed ^ 0x5eed10aull;
    for (int i = 0; i < out->n_tensors; i += 2) {
        const sqz_train_tensor *A = &out->t[i];
        const double bound = 1.0 / sqrt((double)A->cols);
        for (size_t j = 0; j < (size_t)(A->rows * A->cols); j++)
            out->p[A->off + j] = (float)(((double)(sqz_splitmix64(&rng) >> 11) / 9007199254740992.0 * 2 - 1) * bound);
    }
    return SQZ_OK;
oom:
    sqz_train_lora_free(out);
    return sqz_fail(ctx, SQZ_ERR_NOMEM, "lora: out of memory");
}

void sqz_train_lora_free(sqz_train_lora *lo) {
    if (!lo) return;
    free(lo->a);
    free(lo->b);
    free(lo->t);
    free(lo->p);
    memset(lo, 0, sizeof *lo);
}

sqz_status sqz_train_lora_write(sqz_ctx *ctx, const sqz_train_lora *lo, const sqz_model *m,
                                const char *path) {
    const sqz_config *c = &m->cfg;
    const char *arch = c->arch == SQZ_ARCH_QWEN2 ? "qwen2" : "llama"; /* as sqz_convert names it */
    /* sqz_convert permutes the base's q / k rows for llama.cpp's llama graphs: B's rows follow */
    const int permute = !strcmp(arch, "llama") && !c->rope_interleaved;
    /* a copy of the adapters with those rows permuted: the writer reads it at the end */
    float *data = malloc(lo->n * sizeof *data);
    if (!data) return sqz_fail(ctx, SQZ_ERR_NOMEM, "%s: out of memory", path);
    memcpy(data, lo->p, lo->n * sizeof *data);
    for (int i = 0; permute && i < lo->n_tensors; i++) {
        const sqz_train_tensor *t = &lo->t[i];
        if (!strstr(t->name, ".lora_b") || (!strstr(t->name, ".attn_q.") && !strstr(t->name, ".attn_k.")))
            continue;
        for (int64_t r = 0; r < t->rows; r++)
            memcpy(data + t->off + (size_t)(r * t->cols),
                   lo->p + t->off + (size_t)(sqz_rope_gguf_src_row(r, c->head_dim) * t->cols),
                   (size_t)t->cols * sizeof *data);
    }
    sqz_gguf_writer *w = NULL;
    sqz_status st = sqz_gguf_writer_new(ctx, &w);
    if (st) {
        free(data);
        return st;
    }
    st = sqz_gguf_writer_add_str(w, "general.architecture", arch, strlen(arch));
    if (!st) st = sqz_gguf_writer_add_str(w, "general.type", "adapter", 7);
    if (!st) st = sqz_gguf_writer_add_str(w, "adapter.type", "lora", 4);
    if (!st) st = sqz_gguf_writer_add_f32(w, "adapter.lora.alpha", lo->alpha);
    for (int i = 0; i < lo->n_tensors && !st; i++) {
        const sqz_train_tensor *t = &lo->t[i];
        const int64_t ne[2] = { t->cols, t->rows };
        st = sqz_gguf_writer_add_tensor(w, t->name, 2, ne, SQZ_TYPE_F32, data + t->off,
                                        (size_t)(t->rows * t->cols) * sizeof(float));
    }
    if (!st) st = sqz_gguf_writer_write(w, path);
    sqz_gguf_writer_free(w);
    free(data);
    return st;
}
