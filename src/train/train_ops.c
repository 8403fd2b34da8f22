/* train_ops.c - see train_ops.h. The products go through sqz's AVX-512 GEMM kernel
 * (kernels/gemm_avx512.c), which reads transposed operands in place: each output element is
 * one thread's in-order FMA chain over K, whichever thread and tile computes it, which is what
 * makes gradients independent of the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "kernels/kernels.h"
#include "train/train_ops.h"

void tops_gemm_ref(int64_t M, int64_t N, int64_t K, const float *x, size_t ldx, int x_t,
                   const float *w, size_t ldw, int w_t, float *y, size_t ldy, int acc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = acc ? y[(size_t)i * ldy + (size_t)j] : 0.0f;
            for (int64_t k = 0; k < K; k++) {
                const float a = x_t ? x[(size_t)k * ldx + (size_t)i] : x[(size_t)i * ldx + (size_t)k];
                const float b = w_t ? w[(size_t)k * ldw + (size_t)j] : w[(size_t)j * ldw + (size_t)k];
                s = fmaf(a, b, s);
            }
            y[(size_t)i * ldy + (size_t)j] = s;
        }
}

void tops_gemm_1t(int64_t M, int64_t N, int64_t K, const float *x, size_t ldx, int x_t,
                  const float *w, size_t ldw, int w_t, float *y, size_t ldy, int acc, float *strip) {
    if (M <= 0 || N <= 0) return;
    if (sqz_isa_best() == SQZ_ISA_AVX512) {
        sqz_sgemm_avx512_ex((int)M, (int)N, K, x, ldx, x_t, w, ldw, w_t, y, ldy, acc, strip);
        return;
    }
    /* elsewhere OpenBLAS, which takes transposed operands too (op(w)^T: w_t = 1 is w as is) */
    cblas_sgemm(CblasRowMajor, x_t ? CblasTrans : CblasNoTrans, w_t ? CblasNoTrans : CblasTrans,
                (int)M, (int)N, (int)K, 1.0f, x, (int)ldx, w, (int)ldw, acc ? 1.0f : 0.0f, y, (int)ldy);
}

void tops_gemm(int nt, int64_t M, int64_t N, int64_t K, const float *x, size_t ldx, int x_t,
               const float *w, size_t ldw, int w_t, float *y, size_t ldy, int acc) {
    /* tasks: blocks of BN columns (whole 32-wide strips) x BM rows (whole 12-row tiles) */
    enum { BN = 64, BM = 384 };
    const int64_t nb_n = (N + BN - 1) / BN, nb_m = (M + BM - 1) / BM, n_tasks = nb_n * nb_m;
    if (nt > n_tasks) nt = (int)n_tasks;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *strip = aligned_alloc(64, ((size_t)K * 32 * sizeof(float) + 63) & ~(size_t)63);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < n_tasks; task++) {
            const int64_t j0 = (task % nb_n) * BN, i0 = (task / nb_n) * BM;
            const int64_t nn = N - j0 < BN ? N - j0 : BN, mm = M - i0 < BM ? M - i0 : BM;
            const float *xs = x_t ? x + i0 : x + (size_t)i0 * ldx;
            const float *ws = w_t ? w + j0 : w + (size_t)j0 * ldw;
            tops_gemm_1t(mm, nn, K, xs, ldx, x_t, ws, ldw, w_t, y + (size_t)i0 * ldy + j0, ldy, acc, strip);
        }
        free(strip);
    }
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
        for (int i = 0; i < (dw ? D : 0); i++) {
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

/* Causal attention by blocks of ATT_ROWS query rows: rows r0..r1-1 score keys 0..r1-1 only (the
 * upper triangle is neither computed nor kept), and what the backward pass needs of the softmax
 * is each row's max and 1 / sum (stats), from which it recomputes the block's probabilities bit
 * for bit instead of keeping B x Hq x T x T of them. */
enum { ATT_ROWS = 64 };

/* S (m x r1, row stride r1) = Q_blk K^T, then rows t = r0.. become their probabilities, keys past
 * t zero, by each row's max and 1 / sum in st[2 t], [2 t + 1]: found and written there when
 * `find` is st (the forward pass), read when it is NULL (the backward pass) */
static void att_probs(int r0, int r1, int hd, const float *Q, size_t qd, const float *K, size_t kvd,
                      float scale, const float *st, float *find, float *S, float *strip) {
    const int m = r1 - r0;
    tops_gemm_1t(m, r1, hd, Q + (size_t)r0 * qd, qd, 0, K, kvd, 0, S, (size_t)r1, 0, strip);
    for (int t = r0; t < r1; t++) {
        float *s = S + (size_t)(t - r0) * r1;
        for (int j = 0; j <= t; j++) s[j] *= scale;
        if (find) { /* exp once, kept in s: the same bits as the backward's expf(s - mx) */
            float mx = -INFINITY;
            for (int j = 0; j <= t; j++) mx = s[j] > mx ? s[j] : mx;
            double sum = 0;
            for (int j = 0; j <= t; j++) sum += s[j] = expf(s[j] - mx);
            find[2 * t] = mx, find[2 * t + 1] = (float)(1.0 / sum);
            const float inv = find[2 * t + 1];
            for (int j = 0; j <= t; j++) s[j] *= inv;
        } else {
            const float mx = st[2 * t], inv = st[2 * t + 1];
            for (int j = 0; j <= t; j++) s[j] = expf(s[j] - mx) * inv;
        }
        for (int j = t + 1; j < r1; j++) s[j] = 0.0f;
    }
}

void tops_attention(int nt, int B, int T, int Hq, int Hkv, int hd, const float *q, const float *k,
                    const float *v, float *stats, float *out) {
    const size_t qd = (size_t)Hq * hd, kvd = (size_t)Hkv * hd;
    const int G = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *S = malloc((size_t)ATT_ROWS * T * sizeof(float));
        float *strip = aligned_alloc(64, (size_t)(T > hd ? T : hd) * 32 * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * Hq; bh++) {
            const int b = bh / Hq, h = bh % Hq, kh = h / G;
            const size_t row0 = (size_t)b * T;
            const float *Q = q + row0 * qd + (size_t)h * hd, *K = k + row0 * kvd + (size_t)kh * hd,
                        *Vv = v + row0 * kvd + (size_t)kh * hd;
            float *st = stats + (size_t)bh * 2 * T, *O = out + row0 * qd + (size_t)h * hd;
            for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
                const int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T;
                att_probs(r0, r1, hd, Q, qd, K, kvd, scale, st, st, S, strip);
                /* out rows r0.. = P V over keys 0..r1-1 */
                tops_gemm_1t(r1 - r0, hd, r1, S, (size_t)r1, 0, Vv, kvd, 1, O + (size_t)r0 * qd, qd, 0, strip);
            }
        }
        free(S);
        free(strip);
    }
}

void tops_attention_back(int nt, int B, int T, int Hq, int Hkv, int hd, const float *q,
                         const float *k, const float *v, const float *stats, const float *dout,
                         float *dq, float *dk, float *dv) {
    const size_t qd = (size_t)Hq * hd, kvd = (size_t)Hkv * hd;
    const int G = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    /* one (row, KV head) per task: the G query heads that share its K and V add their
     * gradients in a fixed order (head, then query row: each dK / dV element is one FMA chain
     * over the heads' rows in order, as one full-T product per head would sum it) */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *P = malloc((size_t)ATT_ROWS * T * sizeof(float)), *dS = malloc((size_t)ATT_ROWS * T * sizeof(float));
        float *strip = aligned_alloc(64, (size_t)(T > hd ? T : hd) * 32 * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int bk = 0; bk < B * Hkv; bk++) {
            const int b = bk / Hkv, kh = bk % Hkv;
            const size_t row0 = (size_t)b * T;
            const float *K = k + row0 * kvd + (size_t)kh * hd, *Vv = v + row0 * kvd + (size_t)kh * hd;
            float *dK = dk + row0 * kvd + (size_t)kh * hd, *dV = dv + row0 * kvd + (size_t)kh * hd;
            for (int t = 0; t < T; t++) {
                memset(dK + (size_t)t * kvd, 0, (size_t)hd * sizeof *dK);
                memset(dV + (size_t)t * kvd, 0, (size_t)hd * sizeof *dV);
            }
            for (int h = kh * G; h < (kh + 1) * G; h++) {
                const float *dO = dout + row0 * qd + (size_t)h * hd, *Q = q + row0 * qd + (size_t)h * hd;
                const float *st = stats + ((size_t)b * Hq + h) * 2 * T;
                for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
                    const int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T, m = r1 - r0;
                    const float *dOb = dO + (size_t)r0 * qd, *Qb = Q + (size_t)r0 * qd;
                    att_probs(r0, r1, hd, Q, qd, K, kvd, scale, st, NULL, P, strip);
                    /* dV += P^T dO */
                    tops_gemm_1t(r1, hd, m, P, (size_t)r1, 1, dOb, qd, 1, dV, kvd, 1, strip);
                    /* dP = dO V^T, then through the softmax: dS = P (dP - sum_j P dP) * scale */
                    tops_gemm_1t(m, r1, hd, dOb, qd, 0, Vv, kvd, 0, dS, (size_t)r1, 0, strip);
                    for (int t = r0; t < r1; t++) {
                        float *d = dS + (size_t)(t - r0) * r1;
                        const float *p = P + (size_t)(t - r0) * r1;
                        double dot = 0;
                        for (int j = 0; j <= t; j++) dot += (double)p[j] * d[j];
                        for (int j = 0; j <= t; j++) d[j] = p[j] * (d[j] - (float)dot) * scale;
                        for (int j = t + 1; j < r1; j++) d[j] = 0.0f;
                    }
                    /* dQ = dS K; dK += dS^T Q */
                    tops_gemm_1t(m, hd, r1, dS, (size_t)r1, 0, K, kvd, 1, dq + (row0 + (size_t)r0) * qd + (size_t)h * hd, qd,
                                 0, strip);
                    tops_gemm_1t(r1, hd, m, dS, (size_t)r1, 1, Qb, qd, 1, dK, kvd, 1, strip);
                }
            }
        }
        free(P);
        free(dS);
        free(strip);
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
