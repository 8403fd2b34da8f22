/* test_kernels.c - every kernel tier against the portable reference, half conversions against
 * the CPU's own F16C instructions, batched attention against token-by-token attention. */
#include <immintrin.h>
#include <string.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "kv/kv.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) { return test_frand(&rng); } /* uniform in [-1, 1) */

__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

static void test_half_conversions(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("f16c")) { SKIP("no F16C on this CPU"); return; }
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = sqz_f16_to_f32((uint16_t)h), b = hw_f16_to_f32((uint16_t)h);
        if (memcmp(&a, &b, 4) != 0 && !(a != a && b != b)) bad++;
    }
    CHECK(bad == 0, "f16->f32 matches F16C for all 65536 halves (%d differ)", bad);
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = (uint32_t)(test_xorshift64(&rng) >> 32);
        float f;
        memcpy(&f, &bits, 4);
        if (f != f) continue;
        if (sqz_f32_to_f16(f) != hw_f32_to_f16(f)) bad++;
    }
    CHECK(bad == 0, "f32->f16 rounding matches F16C on 2M random floats (%d differ)", bad);
    CHECK(sqz_bf16_to_f32(sqz_f32_to_bf16(1.00390625f)) == 1.0f, "bf16 rounds half to even");
    CHECK(sqz_bf16_to_f32(sqz_f32_to_bf16(-3.5f)) == -3.5f, "bf16 exact value round-trips");
}

static void fill_tensor(sqz_type t, int64_t rows, int64_t cols, void *buf, float *ref) {
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = frand();
        if (t == SQZ_TYPE_F32) ((float *)buf)[i] = v, ref[i] = v;
        else if (t == SQZ_TYPE_F16) ((uint16_t *)buf)[i] = sqz_f32_to_f16(v), ref[i] = sqz_f16_to_f32(((uint16_t *)buf)[i]);
        else ((uint16_t *)buf)[i] = sqz_f32_to_bf16(v), ref[i] = sqz_bf16_to_f32(((uint16_t *)buf)[i]);
    }
}

static void test_dots_and_matmul(void) {
    const sqz_type types[] = { SQZ_TYPE_F32, SQZ_TYPE_F16, SQZ_TYPE_BF16 };
    const sqz_isa best = sqz_isa_best();
    printf("# best ISA: %s\n", sqz_isa_name(best));
    for (size_t ti = 0; ti < 3; ti++) {
        const sqz_type t = types[ti];
        const int64_t rows = 200, cols = 328; /* not multiples of the vector widths */
        void *w = malloc((size_t)rows * cols * 4);
        float *wf = malloc((size_t)rows * cols * 4);
        fill_tensor(t, rows, cols, w, wf);
        sqz_tensor tw = { t, cols, rows, w };
        const int T = 37;
        float *x = malloc((size_t)T * cols * 4), *y = malloc((size_t)T * rows * 4),
              *yr = malloc((size_t)T * rows * 4), *row = malloc((size_t)cols * 4);
        for (int64_t i = 0; i < T * cols; i++) x[i] = frand();
        /* conversion of a row */
        sqz_tensor_row_f32(&tw, 7, row);
        CHECK(memcmp(row, wf + 7 * cols, (size_t)cols * 4) == 0, "%s row conversion exact", sqz_type_name(t));
        for (int isa = 0; isa <= (int)best; isa++) {
            sqz_dot_fn dot = sqz_dot_get(t, (sqz_isa)isa), dref = sqz_dot_get(t, SQZ_ISA_REF);
            double maxerr = 0;
            for (int64_t r = 0; r < rows; r++) {
                const void *rp = (const char *)w + (size_t)r * sqz_type_row_size(t, cols);
                for (int64_t n = 1; n <= cols; n += 37) {
                    double e = fabs(dot(rp, x, n) - dref(rp, x, n));
                    if (e > maxerr) maxerr = e;
                }
            }
            CHECK(maxerr < 1e-4, "%s dot %s vs ref: max err %.2e", sqz_type_name(t),
                  sqz_isa_name((sqz_isa)isa), maxerr);
            sqz_cvt_fn cvt = sqz_cvt_get(t, (sqz_isa)isa);
            cvt((const char *)w + 3 * sqz_type_row_size(t, cols), row, cols);
            CHECK(memcmp(row, wf + 3 * cols, (size_t)cols * 4) == 0, "%s to_float %s exact",
                  sqz_type_name(t), sqz_isa_name((sqz_isa)isa));
        }
        sqz_matmul_ref(&tw, x, T, yr);
        for (int nt = 1; nt <= 2; nt++) {
            for (int Tn = 1; Tn <= T; Tn += 12) {
                sqz_matmul(&tw, x, Tn, y, nt);
                double maxerr = 0;
                for (int64_t i = 0; i < Tn * rows; i++) {
                    double e = fabs(y[i] - yr[i]);
                    if (e > maxerr) maxerr = e;
                }
                CHECK(maxerr < 1e-4, "%s matmul T=%d threads=%d vs ref: max err %.2e",
                      sqz_type_name(t), Tn, nt, maxerr);
            }
        }
        free(w); free(wf); free(x); free(y); free(yr); free(row);
    }
}

/* Naive attention of one query at position p over keys 0..p, straight from the definition. */
static void naive_attention(const float *K, const float *V, const float *q, int p, int Hq, int Hkv,
                            int hd, float *out) {
    const int group = Hq / Hkv;
    double *s = malloc(sizeof(double) * (size_t)(p + 1));
    for (int h = 0; h < Hq; h++) {
        const int g = h / group;
        double m = -1e300, sum = 0;
        for (int j = 0; j <= p; j++) {
            double d = 0;
            for (int i = 0; i < hd; i++) d += (double)q[h * hd + i] * K[(size_t)j * Hkv * hd + g * hd + i];
            s[j] = d / sqrt((double)hd);
            if (s[j] > m) m = s[j];
        }
        for (int j = 0; j <= p; j++) sum += (s[j] = exp(s[j] - m));
        for (int i = 0; i < hd; i++) {
            double o = 0;
            for (int j = 0; j <= p; j++) o += s[j] / sum * V[(size_t)j * Hkv * hd + g * hd + i];
            out[h * hd + i] = (float)o;
        }
    }
    free(s);
}

static void test_attention(void) {
    const int Hq = 4, Hkv = 2, hd = 16, P = 300;
    sqz_kv_shape shape = { 1, Hq, Hkv, hd, P, 0 };
    float *K = malloc(sizeof(float) * P * Hkv * hd), *V = malloc(sizeof(float) * P * Hkv * hd);
    float *Q = malloc(sizeof(float) * P * Hq * hd), *out = malloc(sizeof(float) * P * Hq * hd);
    float *ref = malloc(sizeof(float) * Hq * hd);
    for (int i = 0; i < P * Hkv * hd; i++) K[i] = 2 * frand(), V[i] = frand();
    for (int i = 0; i < P * Hq * hd; i++) Q[i] = 2 * frand();
    /* batched prefill from position 40 of 260 queries, and single-token decode steps */
    for (int nt = 1; nt <= 2; nt++) {
        const int pos = 40, n = 260;
        sqz_attention_f32(K, V, Hkv * hd, &shape, pos, n, Q + (size_t)pos * Hq * hd, out, nt);
        double maxerr = 0;
        for (int t = 0; t < n; t += 13) {
            naive_attention(K, V, Q + (size_t)(pos + t) * Hq * hd, pos + t, Hq, Hkv, hd, ref);
            for (int i = 0; i < Hq * hd; i++) {
                double e = fabs(out[(size_t)t * Hq * hd + i] - ref[i]);
                if (e > maxerr) maxerr = e;
            }
        }
        CHECK(maxerr < 1e-5, "batched causal GQA attention vs naive (threads=%d): max err %.2e", nt, maxerr);
        maxerr = 0;
        for (int p = 0; p < P; p += 29) {
            sqz_attention_f32(K, V, Hkv * hd, &shape, p, 1, Q + (size_t)p * Hq * hd, out, nt);
            naive_attention(K, V, Q + (size_t)p * Hq * hd, p, Hq, Hkv, hd, ref);
            for (int i = 0; i < Hq * hd; i++) {
                double e = fabs(out[i] - ref[i]);
                if (e > maxerr) maxerr = e;
            }
        }
        CHECK(maxerr < 1e-5, "decode attention vs naive (threads=%d): max err %.2e", nt, maxerr);
    }
    free(K); free(V); free(Q); free(out); free(ref);
}

static void test_rope(void) {
    /* rotating pairs keeps each pair's norm; the two conventions are a permutation apart */
    const int hd = 8, half = 4;
    float cs[2 * 4], sn[2 * 4];
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < half; i++) {
            float a = (float)p * powf(10000.0f, -(float)(2 * i) / hd);
            cs[p * half + i] = cosf(a), sn[p * half + i] = sinf(a);
        }
    float a[8], b[8];
    for (int i = 0; i < 8; i++) a[i] = frand();
    for (int i = 0; i < half; i++) b[2 * i] = a[i], b[2 * i + 1] = a[i + half]; /* permute */
    sqz_rope(a, 1, hd, 1, hd, 1, cs, sn, 0);
    sqz_rope(b, 1, hd, 1, hd, 1, cs, sn, 1);
    int same = 1;
    for (int i = 0; i < half; i++)
        same &= fabsf(b[2 * i] - a[i]) < 1e-6f && fabsf(b[2 * i + 1] - a[i + half]) < 1e-6f;
    CHECK(same, "interleaved RoPE on permuted rows equals half-split RoPE");
}

/* The SIMD row operations against the reference: SwiGLU's polynomial exp within a few ulp of
 * libm's on gates from -100 (silu ~ 0) to 100 and lengths around the vector width (masked
 * tails); rmsnorm (only the sum's order differs) within 1e-6 relative; and rmsnorm against
 * its definition computed in double. */
static void test_row_ops(void) {
    static const int ns[] = { 1, 7, 8, 9, 17, 768, 1539 };
    static float g[1539], g2[1539], u[1539], x[2 * 1536], w[1536], o[2 * 1536], o2[2 * 1536];
    double worst_ref = 0;
    for (int t = 0; t < 2 * 1536; t++) x[t] = frand() * (t % 97 == 0 ? 40.0f : 2.0f);
    for (int i = 0; i < 1536; i++) w[i] = 1.0f + 0.5f * frand();
    sqz_rmsnorm_ref(o, x, w, 2, 1536, 1e-5f);
    for (int t = 0; t < 2; t++) {
        double ss = 0;
        for (int i = 0; i < 1536; i++) ss += (double)x[t * 1536 + i] * x[t * 1536 + i];
        const double sc = 1.0 / sqrt(ss / 1536 + 1e-5);
        for (int i = 0; i < 1536; i++) {
            const double want = x[t * 1536 + i] * sc * w[i];
            worst_ref = fmax(worst_ref, fabs(o[t * 1536 + i] - want) / (fabs(want) + 1e-30));
        }
    }
    CHECK(worst_ref < 1e-5, "rmsnorm reference vs double: max relative error %.2g", worst_ref);
    if (sqz_isa_best() < SQZ_ISA_AVX2) {
        SKIP("no AVX2: row operation tiers");
        return;
    }
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        const int n = ns[k];
        for (int i = 0; i < n; i++) {
            g[i] = g2[i] = i == 0 ? -100.0f : i == 1 ? 100.0f : frand() * 12.0f;
            u[i] = frand();
        }
        g2[n < 1539 ? n : 0] = g[n < 1539 ? n : 0] = 12345.0f; /* past the end: must stay */
        sqz_swiglu_ref(g, u, n);
        sqz_swiglu_avx2(g2, u, n);
        double emax = 0;
        for (int i = 0; i < n; i++) emax = fmax(emax, fabs((double)g2[i] - g[i]) / (fabs(g[i]) + 1e-30));
        CHECK(emax < 1e-6 && (n == 1539 || g2[n] == 12345.0f),
              "swiglu avx2 n=%d: max relative error %.2g vs libm", n, emax);
    }
    /* axpy: bit for bit a rounded product then a rounded sum, modelled in double (a float
     * product is exact in double); an FMA would round once and differ on many elements */
    const int an[] = { 1, 7, 8, 9, 100, 1539 };
    for (size_t k = 0; k < sizeof an / sizeof *an; k++) {
        const int n = an[k];
        const float a = frand() * 3.0f - 1.5f;
        int bad_ref = 0, bad_avx2 = 0, fused_differs = 0;
        for (int i = 0; i < n; i++) g[i] = g2[i] = frand() * 2.0f - 1.0f, u[i] = frand() * 2.0f - 1.0f;
        float keep[1539];
        memcpy(keep, g, (size_t)n * sizeof *g);
        sqz_axpy_ref(g, a, u, n);
        sqz_axpy_avx2(g2, a, u, n);
        for (int i = 0; i < n; i++) {
            const float want = (float)((double)keep[i] + (double)(float)((double)a * u[i]));
            const float fused = (float)((double)keep[i] + (double)a * u[i]);
            bad_ref += g[i] != want, bad_avx2 += g2[i] != want, fused_differs += fused != want;
        }
        CHECK(!bad_ref && !bad_avx2 && (n < 100 || fused_differs > 0),
              "axpy n=%d: %d / %d elements off the unfused result (ref / avx2); an FMA would differ on %d",
              n, bad_ref, bad_avx2, fused_differs);
    }
    /* softmax: lengths around the 8-wide steps, a row of equal values, huge spreads */
    const int sn[] = { 1, 7, 8, 9, 15, 16, 17, 100, 513, 1536 };
    for (size_t k = 0; k < sizeof sn / sizeof *sn; k++) {
        const int n = sn[k];
        for (int i = 0; i < n; i++) g[i] = g2[i] = k == 3 ? 2.5f : i == n / 2 ? 60.0f : frand() * 30.0f - 20.0f;
        g[n] = g2[n] = 12345.0f; /* past the end: must stay */
        sqz_softmax_ref(g, n);
        sqz_softmax_avx2(g2, n);
        double emax = 0, sum = 0;
        for (int i = 0; i < n; i++) {
            if (g[i] > 1e-30f) emax = fmax(emax, fabs((double)g2[i] - g[i]) / g[i]);
            sum += g2[i];
        }
        CHECK(emax < 2e-6 && fabs(sum - 1) < 1e-5 && g2[n] == 12345.0f,
              "softmax avx2 n=%d: max relative error %.2g vs libm, sum %.7f", n, emax, sum);
    }
    for (int D = 8; D <= 1536; D *= 4) {
        sqz_rmsnorm_ref(o, x, w, 2, D, 1e-5f);
        sqz_rmsnorm_avx2(o2, x, w, 2, D, 1e-5f);
        double emax = 0;
        for (int i = 0; i < 2 * D; i++) emax = fmax(emax, fabs((double)o2[i] - o[i]) / (fabs(o[i]) + 1e-30));
        CHECK(emax < 1e-6, "rmsnorm avx2 D=%d: max relative error %.2g", D, emax);
    }
}

int main(void) {
    test_half_conversions();
    test_row_ops();
    test_dots_and_matmul();
    test_attention();
    test_rope();
    return test_done();
}
