/* gemm_avx512.c - prefill's f32 matrix product on a panel of weight rows, AVX-512F.
 *
 * Why sqz has its own: the OpenBLAS Debian ships picks its kernels by CPU model, and on CPUs
 * it does not know (this project's Sapphire Rapids VMs: "Prescott", SSE3) its sgemm runs at a
 * third of what AVX-512 FMA units do, so F16 / BF16 / k-quant prefill (dequantized panels)
 * ran at 0.33x llama.cpp's. This is the textbook register-blocked kernel: the panel's rows are
 * transposed into strips of 32 outputs (Wp[k][0..31], two vectors), and a tile of MR tokens x
 * 32 outputs accumulates in 2 MR registers, each step one pair of strip loads and MR
 * broadcasts of x[t][k] feeding 2 MR FMAs - FMA-bound, not load-bound. The strip (K x 128
 * bytes) stays in L2 while all tokens pass.
 */
#include <immintrin.h>

#include "kernels/kernels.h"

enum { NR = 32, MR = 12 };

/* Wp[k * 32 + j] = w[j * ldw + k] (w_t = 0) or w[k * ldw + j] (w_t = 1), for j < nr (<= 32),
 * 0 beyond */
static void pack_strip(const float *w, size_t ldw, int w_t, int64_t K, int nr, float *wp) {
    if (w_t) {
        for (int64_t k = 0; k < K; k++) {
            const float *src = w + (size_t)k * ldw;
            float *dst = wp + (size_t)k * NR;
            int j = 0;
            for (; j < nr; j++) dst[j] = src[j];
            for (; j < NR; j++) dst[j] = 0.0f;
        }
        return;
    }
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
        const int64_t kn = K - k0 < 16 ? K - k0 : 16;
        for (int j = 0; j < NR; j++) {
            if (j < nr) {
                const float *src = w + (size_t)j * ldw + (size_t)k0;
                for (int64_t k = 0; k < kn; k++) wp[(size_t)(k0 + k) * NR + (size_t)j] = src[k];
            } else {
                for (int64_t k = 0; k < kn; k++) wp[(size_t)(k0 + k) * NR + (size_t)j] = 0.0f;
            }
        }
    }
}

/* y[t * ldy + 0..nr) (+)= sum_k x(t, k) wp[k][..] for the mr tokens at x, where
 * x(t, k) = x[t * xs_t + k * xs_k]; each element's sum runs over k in order (with acc: starting
 * from y's value), whatever mr is: results do not depend on how rows are tiled. */
static inline __attribute__((always_inline)) void tile(int mr, int64_t K, const float *x, size_t xs_t,
                                                       size_t xs_k, const float *wp, float *y,
                                                       size_t ldy, __mmask16 m0, __mmask16 m1, int acc) {
    __m512 acc0[MR], acc1[MR];
    #pragma GCC unroll 12
    for (int t = 0; t < mr; t++) {
        acc0[t] = acc ? _mm512_maskz_loadu_ps(m0, y + (size_t)t * ldy) : _mm512_setzero_ps();
        acc1[t] = acc ? _mm512_maskz_loadu_ps(m1, y + (size_t)t * ldy + 16) : _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < K; k++) {
        const __m512 w0 = _mm512_loadu_ps(wp + (size_t)k * NR), w1 = _mm512_loadu_ps(wp + (size_t)k * NR + 16);
        #pragma GCC unroll 12
        for (int t = 0; t < mr; t++) {
            const __m512 b = _mm512_set1_ps(x[(size_t)t * xs_t + (size_t)k * xs_k]);
            acc0[t] = _mm512_fmadd_ps(w0, b, acc0[t]);
            acc1[t] = _mm512_fmadd_ps(w1, b, acc1[t]);
        }
    }
    #pragma GCC unroll 12
    for (int t = 0; t < mr; t++) {
        _mm512_mask_storeu_ps(y + (size_t)t * ldy, m0, acc0[t]);
        _mm512_mask_storeu_ps(y + (size_t)t * ldy + 16, m1, acc1[t]);
    }
}

/* The rows of one strip: x_t and acc are constants at each call, so each combination gets
 * its own specialized loops. */
static inline __attribute__((always_inline)) void strip_rows(int T, int64_t K, const float *x, size_t ldx,
                                                             int x_t, const float *wp, float *y,
                                                             size_t ldy, __mmask16 m0, __mmask16 m1,
                                                             int acc) {
    const size_t xs_t = x_t ? 1 : ldx, xs_k = x_t ? ldx : 1;
    int t = 0;
    for (; t + MR <= T; t += MR)
        tile(MR, K, x + (size_t)t * xs_t, xs_t, xs_k, wp, y + (size_t)t * ldy, ldy, m0, m1, acc);
    for (; t + 4 <= T; t += 4)
        tile(4, K, x + (size_t)t * xs_t, xs_t, xs_k, wp, y + (size_t)t * ldy, ldy, m0, m1, acc);
    for (; t < T; t++)
        tile(1, K, x + (size_t)t * xs_t, xs_t, xs_k, wp, y + (size_t)t * ldy, ldy, m0, m1, acc);
}

void sqz_sgemm_avx512_ex(int T, int nr, int64_t K, const float *x, size_t ldx, int x_t,
                         const float *w, size_t ldw, int w_t, float *y, size_t ldy, int acc,
                         float *wp) {
    for (int s0 = 0; s0 < nr; s0 += NR) {
        const int sn = nr - s0 < NR ? nr - s0 : NR;
        pack_strip(w_t ? w + s0 : w + (size_t)s0 * ldw, ldw, w_t, K, sn, wp);
        const __mmask16 m0 = (__mmask16)(sn >= 16 ? 0xFFFF : (1u << sn) - 1);
        const __mmask16 m1 = (__mmask16)(sn <= 16 ? 0 : sn >= 32 ? 0xFFFF : (1u << (sn - 16)) - 1);
        float *ys = y + s0;
        if (!x_t && !acc) strip_rows(T, K, x, ldx, 0, wp, ys, ldy, m0, m1, 0);
        else if (!x_t) strip_rows(T, K, x, ldx, 0, wp, ys, ldy, m0, m1, 1);
        else if (!acc) strip_rows(T, K, x, ldx, 1, wp, ys, ldy, m0, m1, 0);
        else strip_rows(T, K, x, ldx, 1, wp, ys, ldy, m0, m1, 1);
    }
}

void sqz_sgemm_panel_avx512(int T, int nr, int64_t K, const float *x, const float *w, float *y,
                            size_t ldy, float *wp) {
    sqz_sgemm_avx512_ex(T, nr, K, x, (size_t)K, 0, w, (size_t)K, 0, y, ldy, 0, wp);
}
