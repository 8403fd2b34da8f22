/* train_ops.h - the pieces of the training forward / backward passes: products, transposes,
 * RMSNorm, RoPE, SwiGLU, causal attention of one head group, cross-entropy. Row-major f32.
 * Every function sums each output element in one thread in a fixed order (train.h). */
#ifndef SQZ_TRAIN_TRAIN_OPS_H
#define SQZ_TRAIN_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

/* y[M x N] (row stride ldy) = (acc: y +) op(x) . op(w)^T over K, where op(x)(i, k) is
 * x[i * ldx + k] or, with x_t, x[k * ldx + i], and op(w)(j, k) is w[j * ldw + k] or, with w_t,
 * w[k * ldw + j]: the forward product (x W^T), dX = dY W (w_t) and dW += dY^T X (x_t, w_t)
 * without transposing anything. tops_gemm splits the (M, N) plane between nt threads;
 * tops_gemm_1t runs in the calling thread (strip: scratch of K * 32 floats); tops_gemm_ref is
 * the plain loop, one fmaf chain per element in k order (the AVX-512 kernel's order: the two
 * agree bit for bit). */
void tops_gemm(int nt, int64_t M, int64_t N, int64_t K, const float *x, size_t ldx, int x_t,
               const float *w, size_t ldw, int w_t, float *y, size_t ldy, int acc);
void tops_gemm_1t(int64_t M, int64_t N, int64_t K, const float *x, size_t ldx, int x_t,
                  const float *w, size_t ldw, int w_t, float *y, size_t ldy, int acc, float *strip);
void tops_gemm_ref(int64_t M, int64_t N, int64_t K, const float *x, size_t ldx, int x_t,
                   const float *w, size_t ldw, int w_t, float *y, size_t ldy, int acc);
/* col[j] += sum_n a[n * C + j], n in order (bias gradients) */
void tops_colsum_add(int nt, int64_t N, int64_t C, const float *a, float *col);

/* y = w * x / rms(x) per row of D; rstd[n] = 1 / sqrt(mean(x^2) + eps) */
void tops_rmsnorm(int nt, int64_t N, int D, const float *x, const float *w, float eps, float *y,
                  float *rstd);
/* dx (=, or += when accumulate) and dw += (dw NULL: frozen) from dy */
void tops_rmsnorm_back(int nt, int64_t N, int D, const float *x, const float *w, const float *rstd,
                       const float *dy, float *dx, int accumulate, float *dw);

/* Rotates n_heads heads of hd in each of N rows (row n at position n % T); cs: T x hd/2
 * (cos, sin) pairs; interleaved: pairs (2i, 2i+1), else (i, i + hd/2). inverse: the
 * transposed rotation (the backward pass). */
void tops_rope(int nt, int64_t N, int T, int n_heads, int hd, const float *cs, int interleaved,
               int inverse, float *x);
/* cs[t * hd + 2i], [.. + 2i + 1] = cos, sin of t * theta^(-2i / hd), in float as PyTorch */
void tops_rope_table(int T, int hd, float theta, float *cs);

/* h = silu(g) * u */
void tops_swiglu(int nt, size_t n, const float *g, const float *u, float *h);
/* dg, du from dh */
void tops_swiglu_back(int nt, size_t n, const float *g, const float *u, const float *dh, float *dg,
                      float *du);

/* Causal attention of B rows of T tokens: q (N x Hq*hd), k, v (N x Hkv*hd) -> out (N x Hq*hd).
 * Only the lower triangle of scores is computed; stats (B x Hq x T x 2) keeps each query row's
 * softmax max and 1 / sum, from which the backward pass recomputes the probabilities exactly. */
void tops_attention(int nt, int B, int T, int Hq, int Hkv, int hd, const float *q, const float *k,
                    const float *v, float *stats, float *out);
/* dq, dk, dv (=) from dout */
void tops_attention_back(int nt, int B, int T, int Hq, int Hkv, int hd, const float *q,
                         const float *k, const float *v, const float *stats, const float *dout,
                         float *dq, float *dk, float *dv);

/* Cross-entropy of each row of logits (N x V) against targets (< 0: not scored): loss[n]
 * (0 where not scored). */
void tops_xent(int nt, int64_t N, int V, const float *logits, const int32_t *targets, float *loss);
/* logits <- d(sum of scored losses * scale) / d logits */
void tops_xent_back(int nt, int64_t N, int V, float *logits, const int32_t *targets, float scale);

#endif
