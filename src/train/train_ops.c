/* train_ops.c - see train_ops.h. The products go through sqz's f32 GEMM (the AVX-512 panel
 * kernel where there is one): each output element is one thread's in-order FMA chain over K,
 * whichever thread and tile computes it, which is what makes gradients independent of the
 * thread count. Transposes turn the backward products (dX = dY W, dW = dY^T X) into the same
 * y = x w^T form; they cost O(size) against the products' O(size x K). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "train/train_ops.h"

void tops_matmul(int nt, int64_t M, int64_t N, int64_t K, const float *x, const float *w, float *y) {
    const sqz_tensor wt = { SQZ_TYPE_F32, K, N, w };
    sqz_matmul(&wt, x, (int)M, y, nt);
}

void tops_matmul_1t(int M, int N, int K, const float *x, const float *w, float *y, size_t ldy,
                    float *strip) {
    if (sqz_isa_best() == SQZ_ISA_AVX512) {
        sqz_sgemm_panel_avx512(M, N, K, x, w, y, ldy, strip);
        return;
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            const float *a = x + (size_t)i * K, *b = w + (size_t)j * K;
            float s = 0;
            for (int k = 0; k < K; k++) s += a[k] * b[k];
            y[(size_t)i * ldy + j] = s;
        }
}

void tops_transpose(int nt, int64_t R, int64_t C, const float *src, float *dst) {
    enum { BS = 32 };
    const int64_t nbr = (R + BS - 1) / BS;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && R * C >= 65536)
    for (int64_t br = 0; br < nbr; br++) {
        const int64_t r0 = br * BS, r1 = r0 + BS < R ? r0 + BS : R;
        for (int64_t c0 = 0; c0 < C; c0 += BS) {
            const int64_t c1 = c0 + BS < C ? c0 + BS : C;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) dst[(size_t)(c * R + r)] = src[(size_t)(r * C + c)];
        }
    }
}

void tops_weight_grad(int nt, int64_t N, int64_t OC, int64_t C, const float *dy, const float *x,
                      const float *xt, float *grad, float *dyT, float *xT, float *tmp) {
    tops_transpose(nt, N, OC, dy, dyT);
    if (!xt) {
        tops_transpose(nt, N, C, x, xT);
        xt = xT;
    }
    tops_matmul(nt, OC, C, N, dyT, xt, tmp);
    const size_t n = (size_t)(OC * C);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && n >= 65536)
    for (size_t i = 0; i < n; i++) grad[i] += tmp[i];
}

void tops_colsum_add(int nt, int64_t N, int64_t C, const float *a, float *col) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N * C >= 65536)
    for (int64_t j = 0; j < C; j++) {
        double s = 0;
        for (int64_t n = 0; n < N; n++) s += a[(size_t)(n * C + j)];
        col[j] += (float)s;
    }
}

void tops_rmsnorm(int nt, int64_t N, int D, const float *x, const float *w, float eps, float *y,
                  float *rstd) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N >= 64)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        float *yr = y + (size_t)n * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        const float r = (float)(1.0 / sqrt(ss / D + eps));
        rstd[n] = r;
        for (int i = 0; i < D; i++) yr[i] = w[i] * (xr[i] * r);
    }
}

void tops_rmsnorm_back(int nt, int64_t N, int D, const float *x, const float *w, const float *rstd,
                       const float *dy, float *dx, int accumulate, float *dw) {
#pragma omp parallel num_threads(nt) if (nt > 1 && N >= 64)
    {
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * D, *dyr = dy + (size_t)n * D;
            float *dxr = dx + (size_t)n * D;
            const float r = rstd[n];
            double dot = 0;
            for (int i = 0; i < D; i++) dot += (double)dyr[i] * w[i] * xr[i];
            const float c = (float)(dot * r * r * r / D);
            for (int i = 0; i < D; i++) {
                const float g = r * (dyr[i] * w[i]) - xr[i] * c;
                dxr[i] = accumulate ? dxr[i] + g : g;
            }
        }
#pragma omp for schedule(static)
        for (int i = 0; i < D; i++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) s += (double)dy[(size_t)n * D + i] * x[(size_t)n * D + i] * rstd[n];
            dw[i] += (float)s;
        }
    }
}

void tops_rope_table(int T, int hd, float theta, float *cs) {
    for (int i = 0; i < hd / 2; i++) {
        const float inv = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        for (int t = 0; t < T; t++) {
            const float f = (float)t * inv;
            cs[(size_t)t * hd + 2 * i] = cosf(f);
            cs[(size_t)t * hd + 2 * i + 1] = sinf(f);
        }
    }
}

void tops_rope(int nt, int64_t N, int T, int n_heads, int hd, const float *cs, int interleaved,
               int inverse, float *x) {
    const int half = hd / 2;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N >= 64)
    for (int64_t n = 0; n < N; n++) {
        const float *c = cs + (size_t)(n % T) * hd;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)n * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
                const float co = c[2 * i], si = inverse ? -c[2 * i + 1] : c[2 * i + 1];
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * co - x1 * si;
                v[b] = x1 * co + x0 * si;
            }
        }
    }
}

static inline float sigmoidf(float g) { return 1.0f / (1.0f + expf(-g)); }

void tops_swiglu(int nt, size_t n, const float *g, const float *u, float *h) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && n >= 65536)
    for (size_t i = 0; i < n; i++) h[i] = g[i] * sigmoidf(g[i]) * u[i];
}

void tops_swiglu_back(int nt, size_t n, const float *g, const float *u, const float *dh, float *dg,
                      float *du) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && n >= 65536)
    for (size_t i = 0; i < n; i++) {
        const float s = sigmoidf(g[i]), silu = g[i] * s;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * (s * (1.0f + g[i] * (1.0f - s)));
    }
}

/* Head h's T x hd rows of x (row stride ld) into dst (T x hd), or its transpose (hd x T). */
static void gather(const float *x, size_t ld, int T, int hd, float *dst, int transposed) {
    for (int t = 0; t < T; t++)
        for (int d = 0; d < hd; d++) {
            const float v = x[(size_t)t * ld + d];
            if (transposed) dst[(size_t)d * T + t] = v;
            else dst[(size_t)t * hd + d] = v;
        }
}

static void transpose_sq(int T, const float *a, float *at) {
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) at[(size_t)j * T + i] = a[(size_t)i * T + j];
}

void tops_attention(int nt, int B, int T, int Hq, int Hkv, int hd, const float *q, const float *k,
                    const float *v, float *P, float *out) {
    const size_t qd = (size_t)Hq * hd, kvd = (size_t)Hkv * hd;
    const int G = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const size_t tt = (size_t)T * T, th = (size_t)T * hd;
        float *Q = malloc(th * sizeof(float)), *K = malloc(th * sizeof(float)),
              *Vt = malloc(th * sizeof(float)), *O = malloc(th * sizeof(float)),
              *strip = malloc((size_t)(T > hd ? T : hd) * 32 * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * Hq; bh++) {
            const int b = bh / Hq, h = bh % Hq, kh = h / G;
            const size_t row0 = (size_t)b * T;
            float *S = P + (size_t)bh * tt;
            gather(q + row0 * qd + (size_t)h * hd, qd, T, hd, Q, 0);
            gather(k + row0 * kvd + (size_t)kh * hd, kvd, T, hd, K, 0);
            gather(v + row0 * kvd + (size_t)kh * hd, kvd, T, hd, Vt, 1);
            tops_matmul_1t(T, T, hd, Q, K, S, (size_t)T, strip);
            for (int t = 0; t < T; t++) {
                float *s = S + (size_t)t * T;
                float mx = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    s[j] *= scale;
                    if (s[j] > mx) mx = s[j];
                }
                double sum = 0;
                for (int j = 0; j <= t; j++) {
                    s[j] = expf(s[j] - mx);
                    sum += s[j];
                }
                const float inv = (float)(1.0 / sum);
                for (int j = 0; j <= t; j++) s[j] *= inv;
                for (int j = t + 1; j < T; j++) s[j] = 0.0f;
            }
            tops_matmul_1t(T, hd, T, S, Vt, O, (size_t)hd, strip);
            for (int t = 0; t < T; t++)
                memcpy(out + (row0 + t) * qd + (size_t)h * hd, O + (size_t)t * hd, (size_t)hd * sizeof(float));
        }
        free(Q), free(K), free(Vt), free(O), free(strip);
    }
}

void tops_attention_back(int nt, int B, int T, int Hq, int Hkv, int hd, const float *q,
                         const float *k, const float *v, const float *P, const float *dout,
                         float *dq, float *dk, float *dv) {
    const size_t qd = (size_t)Hq * hd, kvd = (size_t)Hkv * hd;
    const int G = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    /* one (row, KV head) per task: the G query heads that share its K and V add their
     * gradients in a fixed order */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const size_t tt = (size_t)T * T, th = (size_t)T * hd;
        float *Qt = malloc(th * sizeof(float)), *K = malloc(th * sizeof(float)),
              *Kt = malloc(th * sizeof(float)), *V = malloc(th * sizeof(float)),
              *dO = malloc(th * sizeof(float)), *dOt = malloc(th * sizeof(float)),
              *dS = malloc(tt * sizeof(float)), *At = malloc(tt * sizeof(float)),
              *tmp = malloc(th * sizeof(float)), *dK = malloc(th * sizeof(float)),
              *dV = malloc(th * sizeof(float)), *dQ = malloc(th * sizeof(float)),
              *strip = malloc((size_t)(T > hd ? T : hd) * 32 * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int bk = 0; bk < B * Hkv; bk++) {
            const int b = bk / Hkv, kh = bk % Hkv;
            const size_t row0 = (size_t)b * T;
            gather(k + row0 * kvd + (size_t)kh * hd, kvd, T, hd, K, 0);
            gather(k + row0 * kvd + (size_t)kh * hd, kvd, T, hd, Kt, 1);
            gather(v + row0 * kvd + (size_t)kh * hd, kvd, T, hd, V, 0);
            memset(dK, 0, th * sizeof(float));
            memset(dV, 0, th * sizeof(float));
            for (int h = kh * G; h < (kh + 1) * G; h++) {
                const float *Pr = P + ((size_t)b * Hq + h) * tt;
                gather(dout + row0 * qd + (size_t)h * hd, qd, T, hd, dO, 0);
                gather(dout + row0 * qd + (size_t)h * hd, qd, T, hd, dOt, 1);
                gather(q + row0 * qd + (size_t)h * hd, qd, T, hd, Qt, 1);
                /* dV += P^T dO */
                transpose_sq(T, Pr, At);
                tops_matmul_1t(T, hd, T, At, dOt, tmp, (size_t)hd, strip);
                for (size_t i = 0; i < th; i++) dV[i] += tmp[i];
                /* dP = dO V^T, then through the softmax: dS = P (dP - sum_j P dP) * scale */
                tops_matmul_1t(T, T, hd, dO, V, dS, (size_t)T, strip);
                for (int t = 0; t < T; t++) {
                    float *d = dS + (size_t)t * T;
                    const float *p = Pr + (size_t)t * T;
                    double dot = 0;
                    for (int j = 0; j <= t; j++) dot += (double)p[j] * d[j];
                    for (int j = 0; j <= t; j++) d[j] = p[j] * (d[j] - (float)dot) * scale;
                    for (int j = t + 1; j < T; j++) d[j] = 0.0f;
                }
                /* dQ = dS K */
                tops_matmul_1t(T, hd, T, dS, Kt, dQ, (size_t)hd, strip);
                for (int t = 0; t < T; t++)
                    memcpy(dq + (row0 + t) * qd + (size_t)h * hd, dQ + (size_t)t * hd, (size_t)hd * sizeof(float));
                /* dK += dS^T Q */
                transpose_sq(T, dS, At);
                tops_matmul_1t(T, hd, T, At, Qt, tmp, (size_t)hd, strip);
                for (size_t i = 0; i < th; i++) dK[i] += tmp[i];
            }
            for (int t = 0; t < T; t++) {
                memcpy(dk + (row0 + t) * kvd + (size_t)kh * hd, dK + (size_t)t * hd, (size_t)hd * sizeof(float));
                memcpy(dv + (row0 + t) * kvd + (size_t)kh * hd, dV + (size_t)t * hd, (size_t)hd * sizeof(float));
            }
        }
        free(Qt), free(K), free(Kt), free(V), free(dO), free(dOt), free(dS), free(At), free(tmp);
        free(dK), free(dV), free(dQ), free(strip);
    }
}

void tops_xent(int nt, int64_t N, int V, const float *logits, const int32_t *targets, float *loss) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N >= 16)
    for (int64_t n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * V;
        if (targets[n] < 0) {
            loss[n] = 0;
            continue;
        }
        float mx = l[0];
        for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double s = 0;
        for (int i = 0; i < V; i++) s += exp((double)(l[i] - mx));
        loss[n] = (float)(log(s) + mx - l[targets[n]]);
    }
}

void tops_xent_back(int nt, int64_t N, int V, float *logits, const int32_t *targets, float scale) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N >= 16)
    for (int64_t n = 0; n < N; n++) {
        float *l = logits + (size_t)n * V;
        if (targets[n] < 0) {
            memset(l, 0, (size_t)V * sizeof(float));
            continue;
        }
        float mx = l[0];
        for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double s = 0;
        for (int i = 0; i < V; i++) s += exp((double)(l[i] - mx));
        const double inv = 1.0 / s;
        for (int i = 0; i < V; i++) l[i] = (float)(exp((double)(l[i] - mx)) * inv * scale);
        l[targets[n]] -= scale;
    }
}
