/* ops.c - transformer row operations in portable C, the references of the SIMD tiers that
 * rmsnorm, SwiGLU and softmax have (ops_avx2.c; chosen here at run time). The rest cost little next to
 * the matrix products. */
#include "kernels/ops.h"

#include <math.h>

#include "kernels/kernels.h"

void sqz_rmsnorm_ref(float *out, const float *x, const float *w, int T, int D, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * D;
        float *o = out + (size_t)t * D;
        /* eight running sums: one chain of D dependent adds took longer than the rest */
        float part[8] = { 0 };
        int i = 0;
        for (; i + 8 <= D; i += 8)
            for (int j = 0; j < 8; j++) part[j] += xr[i + j] * xr[i + j];
        for (; i < D; i++) part[i % 8] += xr[i] * xr[i];
        const float ss = ((part[0] + part[1]) + (part[2] + part[3])) +
                         ((part[4] + part[5]) + (part[6] + part[7]));
        const float s = 1.0f / sqrtf(ss / (float)D + eps);
        for (int i = 0; i < D; i++) o[i] = xr[i] * s * w[i];
    }
}

void sqz_rope(float *x, int T, int row_stride, int n_heads, int head_dim, int pos0,
              const float *cos_tab, const float *sin_tab, int interleaved) {
    const int half = head_dim / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cos_tab + (size_t)(pos0 + t) * half;
        const float *s = sin_tab + (size_t)(pos0 + t) * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)t * row_stride + (size_t)h * head_dim;
            if (interleaved) {
                for (int i = 0; i < half; i++) {
                    const float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * c[i] - b * s[i];
                    v[2 * i + 1] = a * s[i] + b * c[i];
                }
            } else {
                for (int i = 0; i < half; i++) {
                    const float a = v[i], b = v[i + half];
                    v[i] = a * c[i] - b * s[i];
                    v[i + half] = b * c[i] + a * s[i];
                }
            }
        }
    }
}

void sqz_swiglu_ref(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void sqz_rmsnorm(float *out, const float *x, const float *w, int T, int D, float eps) {
    if (sqz_isa_best() >= SQZ_ISA_AVX2) sqz_rmsnorm_avx2(out, x, w, T, D, eps);
    else sqz_rmsnorm_ref(out, x, w, T, D, eps);
}

void sqz_swiglu(float *gate, const float *up, int64_t n) {
    if (sqz_isa_best() >= SQZ_ISA_AVX2) sqz_swiglu_avx2(gate, up, n);
    else sqz_swiglu_ref(gate, up, n);
}

void sqz_axpy_ref(float *y, float a, const float *x, int64_t n) {
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void sqz_axpy(float *y, float a, const float *x, int64_t n) {
    if (n >= 8 && sqz_isa_best() >= SQZ_ISA_AVX2) sqz_axpy_avx2(y, a, x, n);
    else sqz_axpy_ref(y, a, x, n);
}

void sqz_softmax(float *x, int n) {
    if (sqz_isa_best() >= SQZ_ISA_AVX2) sqz_softmax_avx2(x, n);
    else sqz_softmax_ref(x, n);
}

void sqz_softmax_ref(float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

double sqz_logsumexp(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)(x[i] - m));
    return (double)m + log(sum);
}

double sqz_kl_logits(const float *base, const float *model, int n) {
    const double lb = sqz_logsumexp(base, n), lm = sqz_logsumexp(model, n);
    double kl = 0;
    for (int i = 0; i < n; i++) {
        const double a = (double)base[i] - lb; /* log p_base */
        kl += exp(a) * (a - ((double)model[i] - lm));
    }
    return kl > 0 ? kl : 0;
}
