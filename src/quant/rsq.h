/* rsq.h - RSQ: Rotate, Scale, then Quantize (Sung et al., "RSQ: Learning from Important Tokens
 * Leads to Better Quantized LLMs", 2025), the model transformation and the token importance;
 * calibrate.c runs it layer by layer and quantizes with GPTQ (gptq.c).
 *
 * Rotate (as QuaRot, Ashkboos et al. 2024, does for RMSNorm models; y = W x = (W Q^T)(Q x)):
 *   1. every RMSNorm weight g is folded into the matrices that read the norm's output
 *      (W <- W diag(g): wq, wk, wv; w_gate, w_up; the output head), and the norm keeps weight 1,
 *      so that rmsnorm(Q x) = Q rmsnorm(x) for an orthogonal Q;
 *   2. the residual stream is rotated by Q = H_D S / sqrt(D) (S random signs from the seed):
 *      token embeddings e <- Q e; the matrices that read it (wq, wk, wv, w_gate, w_up, output)
 *      W <- W Q^T; the matrices that write it (wo, w_down, and bo) W <- Q W;
 *   3. per head, the values and the attention output are rotated by a random Hadamard matrix
 *      Hh of order head_dim: each KV head's rows of wv (and bv) <- Hh rows, each query head's
 *      columns of wo <- columns Hh^T, since softmax(.) V mixes tokens, not channels.
 * All of this is exact in real arithmetic: the rotated f32 model computes the same logits.
 * Not applied (each would need an online transform in the forward pass, which a plain llama
 * GGUF cannot express): the Hadamard before w_down (on the SwiGLU output, QuaRot's online
 * transform) and the rotation of the queries / keys for the KV cache.
 * Tied embeddings cannot stay tied: the head is E diag(g_out) Q^T and the embedding table E Q^T,
 * so the rotated model has its own output matrix. The mixes then give token_embd their base
 * type (llama.cpp's rule for untied models), coarser than the tied tensor's Q6_K: on
 * sqz-llama-26m that alone costs more KL divergence than the rotation gains (q2_k: 0.197 vs
 * 0.135 with token_embd Q6_K); sqz_convert_opts.embd_type chooses it.
 *
 * Scale: the importance of token j in a calibration window of T tokens is its attention
 * concentration (AttnCon) in the layer being quantized, r_j = sum over query heads h and
 * queries i >= j of softmax_j(q_i . k_j / sqrt(hd)), computed from the post-RoPE queries and
 * keys of the rotated (not yet quantized) layer on that layer's inputs; r is mapped linearly
 * from [min r, max r] to [rmin, rmax] (the paper's RSQ setting: 0.005, 1), then scaled to mean 1
 * over the window, and every Hessian of the layer becomes H = sum_t r_t x_t x_t^T (the RSQ
 * code's GPTQ.add_batch with its per-token weighting).
 */
#ifndef SQZ_QUANT_RSQ_H
#define SQZ_QUANT_RSQ_H

#include <stdint.h>

#include "model/model.h"
#include "math/hadamard.h"

#define SQZ_RSQ_RMIN 0.005f /* the paper's importance range [rmin, 1] */
#define SQZ_RSQ_RMAX 1.0f

typedef struct sqz_rsq {
    sqz_hadamard res;  /* Q, order dim: the residual stream */
    sqz_hadamard head; /* Hh, order head_dim; n == 0: no per-head V/O rotation */
} sqz_rsq;

/* The rotations for config c from seed (the same seed gives the same model everywhere). Fails
 * with SQZ_ERR_UNSUPPORTED when dim has no Hadamard matrix (see hadamard.h); a head_dim without
 * one only drops the per-head rotation. */
sqz_status sqz_rsq_init(sqz_ctx *ctx, sqz_rsq *r, const sqz_config *c, uint64_t seed);
void sqz_rsq_free(sqz_rsq *r);

/* dst = layer src folded and rotated: f32 copies owned by owner (norms become ones). */
sqz_status sqz_rsq_rotate_layer(sqz_ctx *ctx, const sqz_rsq *r, const sqz_config *c,
                                const sqz_layer_weights *src, sqz_layer_weights *dst,
                                sqz_model *owner);

/* The ends of the model: dst->tok_embd = rotated embeddings, dst->output = folded and rotated
 * head, dst->out_norm = ones, dst->cfg.tied_embeddings = 0; f32 buffers owned by dst. */
sqz_status sqz_rsq_rotate_ends(sqz_ctx *ctx, const sqz_rsq *r, const sqz_model *src,
                               sqz_model *dst);

/* A rotated f32 copy of the whole model (every layer and both ends), for tests and tools.
 * It has no tokenizer or file of its own; free it with sqz_model_free. */
sqz_status sqz_rsq_rotate_model(sqz_ctx *ctx, const sqz_model *m, uint64_t seed,
                                sqz_model **out);

/* AttnCon of one window: q [T][n_heads*hd] and k [T][n_kv_heads*hd] (post-RoPE, positions
 * 0..T-1, causal), r [T] = attention each key receives, summed over heads and queries.
 * Deterministic for any thread count. SQZ_ERR_NOMEM on allocation failure. */
sqz_status sqz_rsq_attn_concentration(sqz_ctx *ctx, const float *q, const float *k, int T,
                                      int n_heads, int n_kv_heads, int hd, float *r);

/* r <- rmin + (r - min r) (rmax - rmin) / (max r - min r), clamped, then scaled to mean 1
 * (all ones when r is constant). */
void sqz_rsq_normalize(float *r, int T, float rmin, float rmax);

/* H [dim][dim] (upper triangle) += sum_t r[t] x_t x_t^T over the T rows of x (scaled in place
 * by sqrt(r); r NULL: unweighted), x^T x on n_threads threads. tmp: dim*dim floats of scratch. */
void sqz_rsq_hessian_add(double *H, float *tmp, float *x, const float *r, int T, int dim, int n_threads);

#endif
