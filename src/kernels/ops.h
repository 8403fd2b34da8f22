/* ops.h - the element-wise and row-wise operations of a transformer block (f32).
 * Glossary: T tokens, D a row's width. */
#ifndef SQZ_KERNELS_OPS_H
#define SQZ_KERNELS_OPS_H

#include <stddef.h>
#include <stdint.h>

/* out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, for T rows of width D (out may equal x), with
 * the best tier for this CPU; the tiers differ only in the order of the sum's additions. */
void sqz_rmsnorm(float *out, const float *x, const float *w, int T, int D, float eps);
void sqz_rmsnorm_ref(float *out, const float *x, const float *w, int T, int D, float eps);
void sqz_rmsnorm_avx2(float *out, const float *x, const float *w, int T, int D, float eps);

/* Rotary embedding, in place, on T rows of n_heads heads of head_dim, for positions pos0 + t.
 * cos/sin tables: [max_pos][head_dim/2]. interleaved: pairs (2i, 2i+1) (llama2.c, GGUF), else
 * (i, i + head_dim/2) (Hugging Face "rotate half"). row_stride: floats between rows. */
void sqz_rope(float *x, int T, int row_stride, int n_heads, int head_dim, int pos0,
              const float *cos_tab, const float *sin_tab, int interleaved);

/* gate[i] = silu(gate[i]) * up[i] for n elements, with the best tier for this CPU. The
 * reference, sqz_swiglu_ref, uses libm's expf; the AVX2 tier a polynomial exp within 2 ulp of
 * it (exp_avx2.h): decode spends more time in expf than in this step's other work otherwise. */
void sqz_swiglu(float *gate, const float *up, int64_t n);
void sqz_swiglu_ref(float *gate, const float *up, int64_t n);
void sqz_swiglu_avx2(float *gate, const float *up, int64_t n); /* ops_avx2.c; AVX2 CPUs only */

/* In-place softmax of x[0..n); returns nothing; the max is subtracted first. The reference
 * uses libm's expf; the AVX2 tier (ops_avx2.c) exp_avx2.h's polynomial, within 2 ulp of it -
 * batched attention spent ~6 % of a prefill's cycles in the reference. */
void sqz_softmax(float *x, int n);
void sqz_softmax_ref(float *x, int n);
void sqz_softmax_avx2(float *x, int n); /* AVX2 CPUs only */

/* y[i] += a * x[i] for i < n, each a rounded product then a rounded sum (never one FMA), so
 * every tier gives the reference's floats bit for bit: GPTQ's error feedback (gptq.c), whose
 * tests replay it against a textbook loop, spends much of its time here. */
void sqz_axpy(float *y, float a, const float *x, int64_t n);
void sqz_axpy_ref(float *y, float a, const float *x, int64_t n);
void sqz_axpy_avx2(float *y, float a, const float *x, int64_t n); /* AVX2 CPUs only */

/* log(sum(exp(x))) over n values, stable. */
double sqz_logsumexp(const float *x, int n);

/* KL(p_base || p_model) of the softmaxes of two logit rows of n values, in double (>= 0). */
double sqz_kl_logits(const float *base, const float *model, int n);

#endif
