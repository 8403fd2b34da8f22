/* train_ops.h - the pieces of the training forward / backward passes: products, transposes,
 * RMSNorm, RoPE, SwiGLU, causal attention of one head group, cross-entropy. Row-major f32.
 * Every function sums each output element in one thread in a fixed order (train.h). */
#ifndef SQZ_TRAIN_TRAIN_OPS_H
#define SQZ_TRAIN_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

/* y[M x N] = x[M x K] . w[N x K]^T, threaded over w's rows (sqz_matmul on an f32 view). */
void tops_matmul(int nt, int64_t M, int64_t N, int64_t K, const float *x, const float *w, float *y);
/* The same in the calling thread; y has row stride ldy; strip: scratch of K * 32 floats. */
void tops_matmul_1t(int M, int N, int K, const float *x, const float *w, float *y, size_t ldy,
                    float *strip);
/* dst[C x R] = src[R x C]^T */
void tops_transpose(int nt, int64_t R, int64_t C, const float *src, float *dst);
/* grad[OC x C] += dy[N x OC]^T . x[N x C]; dyT (OC x N), xT (C x N; NULL: x is given
 * transposed already in xt) and tmp (OC x C) are scratch. */
void tops_weight_grad(int nt, int64_t N, int64_t OC, int64_t C, const float *dy, const float *x,
                      const float *xt, float *grad, float *dyT, float *xT, float *tmp);
/* col[j] += sum_n a[n * C + j], n in order (bias gradients) */
void tops_colsum_add(int nt, int64_t N, int64_t C, const float *a, float *col);

/* y = w * x / rms(x) per row of D; rstd[n] = 1 / sqrt(mean(x^2) + eps) */
void tops_rmsnorm(int nt, int64_t N, int D, const float *x, const float *w, float eps, float *y,
                  float *rstd);
/* dx (=, or += when accumulate) and dw += from dy */
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

/* Causal attention of B rows of T tokens: q (N x Hq*hd), k, v (N x Hkv*hd) -> out (N x Hq*hd),
 * probabilities kept in P (B x Hq x T x T, zero above the diagonal). */
void tops_attention(int nt, int B, int T, int Hq, int Hkv, int hd, const float *q, const float *k,
                    const float *v, float *P, float *out);
/* dq, dk, dv (=) from dout */
void tops_attention_back(int nt, int B, int T, int Hq, int Hkv, int hd, const float *q,
                         const float *k, const float *v, const float *P, const float *dout,
                         float *dq, float *dk, float *dv);

/* Cross-entropy of each row of logits (N x V) against targets (< 0: not scored): loss[n]
 * (0 where not scored). */
void tops_xent(int nt, int64_t N, int V, const float *logits, const int32_t *targets, float *loss);
/* logits <- d(sum of scored losses * scale) / d logits */
void tops_xent_back(int nt, int64_t N, int V, float *logits, const int32_t *targets, float scale);

#endif
