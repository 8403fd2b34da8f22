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

/* Copies model's weights to f32 (F32 / F16 / BF16 weights only: a quantized model cannot be
 * trained in full, SQZ_ERR_UNSUPPORTED names the tensor). */
sqz_status sqz_train_params_from_model(sqz_ctx *ctx, const sqz_model *m, sqz_train_params *out);
void sqz_train_params_free(sqz_train_params *tp);
/* The table entry named name, or NULL. */
const sqz_train_tensor *sqz_train_find(const sqz_train_params *tp, const char *name);
/* A struct copy of m whose weights are F32 views into p (laid out as tp): what sqz_convert
 * writes after training. layers: room for cfg.n_layers, owned by the caller. */
void sqz_train_model_view(const sqz_model *m, const sqz_train_params *tp, const float *p,
                          sqz_layer_weights *layers, sqz_model *out);

/* Activations of one forward pass over B rows of T tokens, kept for the backward pass. */
typedef struct sqz_train_acts sqz_train_acts;
sqz_status sqz_train_acts_new(sqz_ctx *ctx, const sqz_config *cfg, int B, int T, sqz_train_acts **out);
void sqz_train_acts_free(sqz_train_acts *a);

/* Forward pass: tokens and targets are B x T (row-major); returns the mean cross-entropy over
 * the targets >= 0 (NAN if none). Keeps the activations in a. */
double sqz_train_forward(const sqz_train_params *tp, const float *p, sqz_train_acts *a,
                         const int32_t *tokens, const int32_t *targets, int n_threads);
/* Backward pass of the last forward: grad (tp->n floats) += d loss / d p. */
void sqz_train_backward(const sqz_train_params *tp, const float *p, sqz_train_acts *a,
                        float *grad, int n_threads);

/* AdamW as PyTorch's torch.optim.AdamW: m, v (tp->n floats each, zero at step 0), step t >= 1
 * (bias corrections), weight decay decoupled and applied to 2-D tensors only. */
typedef struct sqz_adamw {
    float lr, beta1, beta2, eps, weight_decay;
} sqz_adamw;
void sqz_train_adamw_step(const sqz_train_params *tp, float *p, const float *grad, float *m,
                          float *v, int t, const sqz_adamw *opt, int n_threads);
/* Global L2 norm of grad (in double); scales grad by clip / (norm + 1e-6) when norm > clip > 0,
 * as torch.nn.utils.clip_grad_norm_. Returns the norm before clipping. */
double sqz_train_clip(float *grad, size_t n, double clip);

#endif
