/* hadamard.h - orthogonal Hadamard rotations for rotation-based quantization (QuaRot, RSQ,
 * SpinQuant): y = W x equals (W Q^T)(Q x) for orthogonal Q, and after the rotation the weights
 * and activations have no outlier channels, so they quantize better.
 *
 * Ashkboos et al., "QuaRot: Outlier-Free 4-Bit Inference in Rotated LLMs", NeurIPS 2024
 * (arXiv:2404.00456): randomized Hadamard matrices H D / sqrt(n), D a random +-1 diagonal,
 * applied with the fast Walsh-Hadamard transform; sizes 2^k * m through a Kronecker product
 * with a small Hadamard matrix of order m.
 *
 * Dimensions: n = transform size = p * m, p = 2^k (Sylvester / Walsh-Hadamard part, applied by
 * O(n log p) butterflies), m = order of the dense factor (1, or q + 1 for a prime q = 3 mod 4:
 * 12, 20, 24, 44, 48, 60, ... built by Paley's first construction, applied densely, O(n m));
 * width = elements per transformed "entry" when whole rows of a matrix are transformed at once.
 *
 * Q = (H_p (x) H_m) D / sqrt(n), with H_p the Sylvester matrix (entries (-1)^popcount(i & j),
 * natural order), (x) the Kronecker product (index i = a * m + b), D = diag(sign) or I.
 * Unsupported n (e.g. 172 * 2^k, 28 * 2^k, odd n): SQZ_ERR_UNSUPPORTED.
 */
#ifndef SQZ_MATH_HADAMARD_H
#define SQZ_MATH_HADAMARD_H

#include <stdint.h>

#include "core/ctx.h"

#define SQZ_HADAMARD_MAX_M 256 /* largest dense factor */

typedef struct sqz_hadamard {
    int64_t n;    /* transform size, n = p * m */
    int64_t p;    /* power-of-two factor */
    int64_t m;    /* dense factor order */
    int8_t *hm;   /* [m x m] +-1 entries of H_m (row-major); NULL when m == 1 */
    float *sign;  /* [n] +-1 diagonal D; NULL: D = I */
    float scale;  /* 1 / sqrt(n) */
} sqz_hadamard;

/* The order of the dense factor n needs (1 for a power of two), or 0 when n is unsupported. */
int64_t sqz_hadamard_factor(int64_t n);

/* h = the normalized Hadamard matrix H_n / sqrt(n) (no random signs). */
sqz_status sqz_hadamard_init(sqz_ctx *ctx, sqz_hadamard *h, int64_t n);

/* h = H_n D / sqrt(n) with D's signs drawn from seed (splitmix64; the same seed gives the same
 * matrix on every machine). */
sqz_status sqz_hadamard_random(sqz_ctx *ctx, sqz_hadamard *h, int64_t n, uint64_t seed);

/* Frees what init / random allocated; h may be NULL or zeroed. */
void sqz_hadamard_free(sqz_hadamard *h);

/* X [n x width] (row-major) <- Q X. width 1: a vector x <- Q x (an activation). width = cols:
 * the rows of W [n x cols] are mixed, i.e. the output side of y = W x is rotated. */
void sqz_hadamard_apply(const sqz_hadamard *h, float *x, int64_t width);

/* X [n x width] <- Q^T X (the inverse). */
void sqz_hadamard_apply_t(const sqz_hadamard *h, float *x, int64_t width);

/* W [rows x n] <- W Q^T (every row w <- Q w): with x <- Q x, W x is unchanged. */
void sqz_hadamard_rows(const sqz_hadamard *h, float *W, int64_t rows);

/* The building blocks, for rotations that keep no table (the KV codec's, on every cached row). */

/* X [p x width] <- (H_p (x) I_width) X: the unnormalized Walsh-Hadamard butterflies over p (a
 * power of two) entries of width floats each. */
void sqz_hadamard_fwht(float *x, int64_t p, int64_t width);

/* 1 / sqrt(n) as a float: the normalization of every transform here. */
float sqz_hadamard_scale(int64_t n);

/* The fixed +-1 sign of channel i (one bit of a 32-bit multiplicative hash of i). */
float sqz_hadamard_hash_sign(int64_t i);

/* x [n] <- H_n S x / sqrt(n), S = diag(hash_sign(i)), n a power of two; inverse: x <- S H_n x /
 * sqrt(n). Q = H_n S / sqrt(n) without a sign table or an allocation. */
void sqz_hadamard_hashed(float *x, int64_t n, int inverse);

#endif
