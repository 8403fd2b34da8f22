/* hadamard.c - fast (randomized) Hadamard rotations; see hadamard.h.
 *
 * Ashkboos et al., "QuaRot: Outlier-Free 4-Bit Inference in Rotated LLMs", NeurIPS 2024; the
 * fast Walsh-Hadamard transform (Fino & Algazi 1976); Paley, "On orthogonal matrices", J. Math.
 * Phys. 1933 (construction I: order q + 1 from the quadratic residues mod a prime q = 3 mod 4).
 *
 * Dimensions: n = p * m; X [n x width] row-major, entry i = rows i*width .. (i+1)*width of the
 * flat array; index i = a * m + b with a in [0, p) (Sylvester part), b in [0, m) (dense part).
 */
#include "math/hadamard.h"
#include "math/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int is_prime(int64_t q) {
    if (q < 2) return 0;
    for (int64_t d = 2; d * d <= q; d++)
        if (q % d == 0) return 0;
    return 1;
}

/* Dense orders Paley I gives: m = q + 1, q prime, q = 3 mod 4. m = 4 and 8 are powers of two
 * and never needed (the Sylvester part takes every factor of 2 it can). */
static int paley_order(int64_t m) { return m >= 4 && m <= SQZ_HADAMARD_MAX_M && is_prime(m - 1) && (m - 1) % 4 == 3; }

int64_t sqz_hadamard_factor(int64_t n) {
    if (n < 1) return 0;
    /* smallest dense factor: try m = n / 2^k from the largest k down */
    int64_t p = 1;
    while (n % (p * 2) == 0) p *= 2;
    for (; p >= 1; p /= 2) {
        const int64_t m = n / p;
        if (m == 1) return 1;
        if (paley_order(m)) return m;
    }
    return 0;
}

/* H_m by Paley I: S = [[0, 1^T], [-1, Qm]], Qm[i][j] = chi(j - i) (Legendre symbol mod q);
 * S is skew-symmetric since chi(-1) = -1, S S^T = q I, so H = I + S has H H^T = (q + 1) I. */
static void paley(int64_t m, int8_t *H) {
    const int64_t q = m - 1;
    int8_t chi[SQZ_HADAMARD_MAX_M] = { 0 }; /* chi[x] = 1: x is a nonzero square mod q */
    for (int64_t x = 1; x < q; x++) chi[(x * x) % q] = 1;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            int s;
            if (i == 0) s = j == 0 ? 0 : 1;
            else if (j == 0) s = -1;
            else {
                const int64_t d = ((j - i) % q + q) % q;
                s = d == 0 ? 0 : chi[d] ? 1 : -1;
            }
            H[i * m + j] = (int8_t)(s + (i == j));
        }
}

sqz_status sqz_hadamard_init(sqz_ctx *ctx, sqz_hadamard *h, int64_t n) {
    if (!h) return sqz_fail(ctx, SQZ_ERR_ARG, "hadamard: NULL matrix");
    memset(h, 0, sizeof *h);
    const int64_t m = sqz_hadamard_factor(n);
    if (!m)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "hadamard: size %lld is not 2^k or 2^k * m with m - 1 a prime = 3 mod 4 "
                        "(m <= %d)",
                        (long long)n, SQZ_HADAMARD_MAX_M);
    h->n = n, h->m = m, h->p = n / m;
    h->scale = sqz_hadamard_scale(n);
    if (m > 1) {
        h->hm = malloc((size_t)(m * m));
        if (!h->hm) return sqz_fail(ctx, SQZ_ERR_NOMEM, "hadamard: out of memory");
        paley(m, h->hm);
    }
    return SQZ_OK;
}

sqz_status sqz_hadamard_random(sqz_ctx *ctx, sqz_hadamard *h, int64_t n, uint64_t seed) {
    sqz_status st = sqz_hadamard_init(ctx, h, n);
    if (st != SQZ_OK) return st;
    h->sign = malloc((size_t)n * sizeof *h->sign);
    if (!h->sign) {
        sqz_hadamard_free(h);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "hadamard: out of memory");
    }
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) h->sign[i] = sqz_splitmix64(&s) >> 63 ? -1.0f : 1.0f;
    return SQZ_OK;
}

void sqz_hadamard_free(sqz_hadamard *h) {
    if (!h) return;
    free(h->hm), free(h->sign);
    memset(h, 0, sizeof *h);
}

static void apply_sign(const sqz_hadamard *h, float *x, int64_t width) {
    if (!h->sign) return;
    for (int64_t i = 0; i < h->n; i++)
        if (h->sign[i] < 0)
            for (int64_t c = 0; c < width; c++) x[i * width + c] = -x[i * width + c];
}

void sqz_hadamard_fwht(float *x, int64_t p, int64_t width) {
    for (int64_t len = 1; len < p; len *= 2)
        for (int64_t i = 0; i < p; i += 2 * len)
            for (int64_t j = i; j < i + len; j++) {
                float *u = x + j * width, *v = x + (j + len) * width;
                for (int64_t k = 0; k < width; k++) {
                    const float a = u[k], b = v[k];
                    u[k] = a + b;
                    v[k] = a - b;
                }
            }
}

float sqz_hadamard_scale(int64_t n) { return (float)(1.0 / sqrt((double)n)); }

float sqz_hadamard_hash_sign(int64_t i) {
    uint32_t x = (uint32_t)i * 0x9E3779B1u;
    x ^= x >> 15;
    x *= 0x85EBCA77u;
    x ^= x >> 13;
    return (x & 1) ? -1.0f : 1.0f;
}

void sqz_hadamard_hashed(float *x, int64_t n, int inverse) {
    if (!inverse)
        for (int64_t i = 0; i < n; i++) x[i] *= sqz_hadamard_hash_sign(i);
    sqz_hadamard_fwht(x, n, 1);
    const float k = sqz_hadamard_scale(n);
    for (int64_t i = 0; i < n; i++) x[i] *= k;
    if (inverse)
        for (int64_t i = 0; i < n; i++) x[i] *= sqz_hadamard_hash_sign(i);
}

/* X <- (H_p (x) H_m or its transpose) X, unnormalized. */
static void transform(const sqz_hadamard *h, float *x, int64_t width, int transpose) {
    const int64_t m = h->m, p = h->p, g = m * width; /* g: floats per Sylvester entry */
    if (m > 1) {
        float tmp[SQZ_HADAMARD_MAX_M];
        for (int64_t a = 0; a < p; a++) {
            float *xa = x + a * g;
            for (int64_t c = 0; c < width; c++) {
                for (int64_t b = 0; b < m; b++) tmp[b] = xa[b * width + c];
                for (int64_t b = 0; b < m; b++) {
                    float s = 0;
                    for (int64_t k = 0; k < m; k++) {
                        const int8_t e = transpose ? h->hm[k * m + b] : h->hm[b * m + k];
                        s += e > 0 ? tmp[k] : -tmp[k];
                    }
                    xa[b * width + c] = s;
                }
            }
        }
    }
    sqz_hadamard_fwht(x, p, g); /* H_p is symmetric */
    for (int64_t k = 0; k < h->n * width; k++) x[k] *= h->scale;
}

void sqz_hadamard_apply(const sqz_hadamard *h, float *x, int64_t width) {
    apply_sign(h, x, width);
    transform(h, x, width, 0);
}

void sqz_hadamard_apply_t(const sqz_hadamard *h, float *x, int64_t width) {
    transform(h, x, width, 1);
    apply_sign(h, x, width);
}

void sqz_hadamard_rows(const sqz_hadamard *h, float *W, int64_t rows) {
    for (int64_t r = 0; r < rows; r++) sqz_hadamard_apply(h, W + r * h->n, 1);
}
