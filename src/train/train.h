/* train.h - training a llama-family model in f32: parameters, the forward pass that keeps
 * what the backward pass needs, the backward pass, AdamW.
 *
 * Layout (llm.c's): every trainable tensor lives in one flat f32 buffer, described by a table
 * of (name, rows, cols, offset); gradients and the two AdamW moments are buffers of the same
 * layout, so the optimizer is one loop over n floats. Names are Hugging Face's
 * (model.layers.3.mlp.up_proj.weight): the names checkpoints, references and adapters use.
 *
 * Threading: every output element of every product and reduction is summed by one thread in a
 * fixed order, so the loss and the gradients are bit-identical at any thread count.
 */
#ifndef SQZ_TRAIN_TRAIN_H
#define SQZ_TRAIN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "model/model.h"

#define SQZ_TRAIN_NONE ((size_t)-1) /* offset of an absent tensor (no bias) */

typedef struct sqz_train_tensor {
    char name[80];
    int64_t rows, cols; /* a vector: rows = 1 */
    size_t off;         /* into the flat buffers */
} sqz_train_tensor;

/* Offsets of one layer's tensors (SQZ_TRAIN_NONE when absent). */
typedef struct sqz_train_layer {
    size_t attn_norm, wq, wk, wv, wo, bq, bk, bv, bo, ffn_norm, w_gate, w_up, w_down;
} sqz_train_layer;

typedef struct sqz_train_params {
    sqz_config cfg;
    int n_tensors;
    sqz_train_tensor *t;
    size_t n;            /* floats in each buffer */
    float *p;            /* parameters */
    size_t tok_embd, out_norm, output; /* output == tok_embd when tied */
    sqz_train_layer *L;  /* [cfg.n_layers] */
} sqz_train_params;

/* Copies model's weights to f32. For full training (frozen = 0) F32 / F16 / BF16 weights only:
 * SQZ_ERR_UNSUPPORTED names a quantized tensor. frozen = 1 (a base under LoRA adapters):
 * quantized weights are dequantized, the values the model computes with. */
sqz_status sqz_train_params_from_model(sqz_ctx *ctx, const sqz_model *m, int frozen,
                                       sqz_train_params *out);
void sqz_train_params_free(sqz_train_params *tp);
/* The table entry named name, or NULL. */
const sqz_train_tensor *sqz_train_find(const sqz_train_params *tp, const char *name);
/* A struct copy of m whose weights are F32 views into p (laid out as tp): what sqz_convert
 * writes after training. layers: room for cfg.n_layers, owned by the caller. */
void sqz_train_model_view(const sqz_model *m, const sqz_train_params *tp, const float *p,
                          sqz_layer_weights *layers, sqz_model *out);

/* LoRA (Hu et al. 2021): a frozen matrix W (out x in) runs as W + scale B A with A (rank x in)
 * and B (out x rank) trained, scale = alpha / rank (PEFT's and llama.cpp's). A starts uniform in
 * +-1/sqrt(in) (PEFT's Kaiming init), B at zero, so training starts from the base model. The
 * table names them as llama.cpp's adapters do: blk.L.attn_q.weight.lora_a / .lora_b. */
enum { SQZ_LORA_Q, SQZ_LORA_K, SQZ_LORA_V, SQZ_LORA_O, SQZ_LORA_GATE, SQZ_LORA_UP, SQZ_LORA_DOWN,
       SQZ_LORA_N };
typedef struct sqz_train_lora {
    int rank;
    float alpha, scale;
    int n_tensors;
    sqz_train_tensor *t;
    size_t n;
    float *p;
    size_t (*a)[SQZ_LORA_N], (*b)[SQZ_LORA_N]; /* per layer: offsets (SQZ_TRAIN_NONE: none) */
} sqz_train_lora;
/* Adapters of the given rank on the matrices whose bit (1 << SQZ_LORA_*) is in targets. */
sqz_status sqz_train_lora_new(sqz_ctx *ctx, const sqz_train_params *tp, int rank, float alpha,
                              unsigned targets, uint64_t seed, sqz_train_lora *out);
void sqz_train_lora_free(sqz_train_lora *lo);
/* Writes the adapters as llama.cpp's GGUF LoRA adapter (general.type "adapter", adapter.type
 * "lora", adapter.lora.alpha; F32 tensors) for base model m: B's rows of q / k permuted as
 * sqz_convert permutes the base's (llama architecture, HF pairing). Temp file + rename. */
sqz_status sqz_train_lora_write(sqz_ctx *ctx, const sqz_train_lora *lo, const sqz_model *m,
                                const char *path);

/* Activations of one forward pass over B rows of T tokens, kept for the backward pass (with
 * room for adapters of lora_rank, 0: none). */
typedef struct sqz_train_acts sqz_train_acts;
sqz_status sqz_train_acts_new(sqz_ctx *ctx, const sqz_config *cfg, int B, int T, int lora_rank,
                              sqz_train_acts **out);
void sqz_train_acts_free(sqz_train_acts *a);

/* Forward pass (with adapters lo, or NULL): tokens and targets are B x T (row-major); returns
 * the mean cross-entropy over the targets >= 0 (NAN if none). Keeps the activations in a. */
double sqz_train_forward(const sqz_train_params *tp, const float *p, const sqz_train_lora *lo,
                         sqz_train_acts *a, const int32_t *tokens, const int32_t *targets,
                         int n_threads);
/* Backward pass of the last forward: grad (tp->n floats; NULL: the model is frozen) += d loss
 * / d p, and with adapters lgrad (lo->n floats) += d loss / d lo->p. */
void sqz_train_backward(const sqz_train_params *tp, const float *p, float *grad,
                        const sqz_train_lora *lo, float *lgrad, sqz_train_acts *a, int n_threads);

/* AdamW as PyTorch's torch.optim.AdamW: m, v (tp->n floats each, zero at step 0), step t >= 1
 * (bias corrections), weight decay decoupled and applied to 2-D tensors only. */
typedef struct sqz_adamw {
    float lr, beta1, beta2, eps, weight_decay;
} sqz_adamw;
void sqz_train_adamw_step(const sqz_train_tensor *t, int n_tensors, float *p, const float *grad,
                          float *m, float *v, int step, const sqz_adamw *opt, int n_threads);
/* p -= lr d with AdamW's decoupled weight decay (matrices only): the step when the direction d
 * is already the update (a data-parallel exchange that owns the optimizer, as DGC does). */
void sqz_train_sgd_step(const sqz_train_tensor *t, int n_tensors, float *p, const float *d,
                        const sqz_adamw *opt, int n_threads);
/* Global L2 norm of grad (in double); scales grad by clip / (norm + 1e-6) when norm > clip > 0,
 * as torch.nn.utils.clip_grad_norm_. Returns the norm before clipping. */
double sqz_train_clip(float *grad, size_t n, double clip);

/* A fine-tuning run's resumable state (checkpoint.c): the recipe's hash (a resume must match
 * it), the values trained, the steps done and the data sampler's state. */
typedef struct sqz_train_ckpt {
    uint64_t hash, n, rng;
    int step;
} sqz_train_ckpt;
/* Writes PATH.tmp; sqz_train_ckpt_commit then renames it to PATH (keep = 1) or removes it: under
 * --dp only once every rank has written its compressor state beside it (gc.h). */
sqz_status sqz_train_ckpt_write(sqz_ctx *ctx, const char *path, const sqz_train_ckpt *c, const float *p,
                                const float *m, const float *v);
sqz_status sqz_train_ckpt_commit(sqz_ctx *ctx, const char *path, int keep);
/* Checks c->n and c->hash against the file, then fills p, m, v (c->n floats each), c->step, c->rng. */
sqz_status sqz_train_ckpt_read(sqz_ctx *ctx, const char *path, sqz_train_ckpt *c, float *p, float *m,
                               float *v);

#endif
