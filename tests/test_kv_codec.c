/* test_kv_codec.c - the storage codecs of the structural KV policies and the attention kernels
 * on stored rows:
 *  - row formats: encode/decode against a naive quantizer written here (per-group min/max, f16
 *    parameters, round to nearest) and the block packing read back channel by channel;
 *  - kernels: the AVX2 tier against the reference for every format and query count, and the
 *    reference against double-precision dot products over the naively dequantized rows;
 *  - rotation: orthogonal, inverted exactly, spreads a one-channel outlier;
 *  - a composition end to end: streaming+q4 (rot=0) against naive attention over the positions
 *    StreamingLLM keeps, keys centred by the first step's mean, the newest recent= rows f16 and
 *    the older ones q4, plus its bytes(); with rotation it stays close to exact attention;
 *  - bad specs give clear errors. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "formats/types.h"
#include "kernels/attn.h"
#include "kv/kv.h"
#include "kv/codec.h"
#include "math/hadamard.h"
#include "sqz.h"
#include "test.h"

static float f16r(float x) { return sqz_f16_to_f32(sqz_f32_to_f16(x)); }

/* Naive dequantized row: groups of g channels, x ~= m + s * round((x - m) / s). */
static void naive_q(const float *x, int n, int g, int bits, float *out) {
    const int qmax = (1 << bits) - 1;
    for (int b = 0; b < n / g; b++) {
        float lo = x[b * g], hi = x[b * g];
        for (int i = 1; i < g; i++) lo = fminf(lo, x[b * g + i]), hi = fmaxf(hi, x[b * g + i]);
        const float s = f16r((hi - lo) / (float)qmax), m = f16r(lo);
        for (int i = 0; i < g; i++) {
            int q = s > 0 ? (int)lrintf((x[b * g + i] - m) / s) : 0;
            q = q < 0 ? 0 : q > qmax ? qmax : q;
            out[b * g + i] = m + s * (float)q;
        }
    }
}

static void naive_row(const sqz_kvrow_fmt *f, const float *x, float *out) {
    if (f->type == SQZ_KVROW_F32) memcpy(out, x, (size_t)f->n * sizeof(float));
    else if (f->type == SQZ_KVROW_F16)
        for (int i = 0; i < f->n; i++) out[i] = f16r(x[i]);
    else naive_q(x, f->n, f->group, sqz_kvrow_bits(f->type), out);
}

enum { MAXN = 544, MAXP = 40, MAXQ = 9 };

static void test_formats_and_kernels(void) {
    static const struct { sqz_kvrow_type t; int n, group; } fmts[] = {
        { SQZ_KVROW_F32, 64, 64 }, { SQZ_KVROW_F32, 20, 20 }, { SQZ_KVROW_F16, 64, 64 },
        { SQZ_KVROW_F16, 12, 12 }, { SQZ_KVROW_Q8, 64, 32 },  { SQZ_KVROW_Q8, 128, 64 },
        { SQZ_KVROW_Q4, 64, 32 },  { SQZ_KVROW_Q4, 96, 32 },  { SQZ_KVROW_Q4, 64, 64 },
        { SQZ_KVROW_Q2, 64, 32 },  { SQZ_KVROW_Q2, 32, 32 },  { SQZ_KVROW_Q4, 544, 32 },
        { SQZ_KVROW_F16, 520, 520 }, { SQZ_KVROW_F16, 48, 48 }, { SQZ_KVROW_F32, 80, 80 },
        { SQZ_KVROW_Q2, 96, 32 },
    };
    /* (544 and 520: longer than the AVX2 tile, the kernels' other path; 48, 80, 96: whole
     * AVX-512 vectors but not whole 64-channel blocks) */
    const int expect_bytes[] = { 256, 80, 128, 24, 64 + 8, 128 + 8, 32 + 8, 48 + 12, 32 + 4, 16 + 8,
                                 8 + 4, 272 + 68, 1040, 96, 320, 24 + 12 };
    static float x[MAXP][MAXN], deq[MAXP][MAXN], q[MAXQ][MAXN], w[MAXQ][MAXP];
    static uint8_t rows[MAXP][MAXN * 4 + 64];
    uint64_t rng = 42;
    const sqz_attn_kernels ref = sqz_attn_kernels_ref();
    const int have_simd = sqz_isa_best() >= SQZ_ISA_AVX2;
    for (size_t fi = 0; fi < sizeof fmts / sizeof *fmts; fi++) {
        const sqz_kvrow_fmt f = { fmts[fi].t, fmts[fi].n, fmts[fi].group };
        const size_t rb = sqz_kvrow_bytes(&f);
        CHECK(rb == (size_t)expect_bytes[fi], "format %zu: %zu bytes per row (want %d)", fi, rb,
              expect_bytes[fi]);
        const size_t ld = rb + 8; /* a stride larger than the row, as in interleaved heads */
        uint8_t *base = &rows[0][0];
        double dec_err = 0;
        for (int p = 0; p < MAXP; p++) {
            for (int i = 0; i < f.n; i++) x[p][i] = test_frand(&rng) * (i == 3 ? 4.0f : 1.0f) + 0.3f;
            sqz_kvrow_encode(&f, x[p], base + (size_t)p * ld);
            naive_row(&f, x[p], deq[p]);
            float back[MAXN];
            sqz_kvrow_decode(&f, base + (size_t)p * ld, back);
            for (int i = 0; i < f.n; i++) dec_err = fmax(dec_err, fabs(back[i] - deq[p][i]));
        }
        CHECK(dec_err == 0, "format %zu (type %d, n %d, group %d): decode = naive quantizer (%.2g)",
              fi, f.type, f.n, f.group, dec_err);
        for (int j = 0; j < MAXQ; j++) {
            for (int i = 0; i < f.n; i++) q[j][i] = test_frand(&rng);
            for (int p = 0; p < MAXP; p++) w[j][p] = test_frand(&rng) * 0.5f + 0.5f;
        }
        const int nqs[] = { 1, 3, 8, 9, 4, 5 };
        for (int qi = 0; qi < 6; qi++) {
            const int nq = nqs[qi], P = MAXP - qi;
            float s_ref[MAXQ][MAXP], s_simd[MAXQ][MAXP];
            float y_ref[MAXQ][MAXN] = { { 0 } }, y_simd[MAXQ][MAXN] = { { 0 } };
            float qq[MAXQ * MAXN];
            for (int j = 0; j < nq; j++) memcpy(qq + j * f.n, q[j], (size_t)f.n * sizeof(float));
            ref.scores(&f, nq, qq, base, ld, P, 0.5f, &s_ref[0][0], MAXP);
            float yr[MAXQ * MAXN] = { 0 }, ys[MAXQ * MAXN] = { 0 };
            ref.accum(&f, nq, &w[0][0], MAXP, base, ld, P, yr);
            double e_naive = 0, e_simd = 0;
            for (int j = 0; j < nq; j++)
                for (int p = 0; p < P; p++) {
                    double d = 0;
                    for (int i = 0; i < f.n; i++) d += (double)q[j][i] * deq[p][i];
                    e_naive = fmax(e_naive, fabs(s_ref[j][p] - 0.5 * d));
                }
            for (int j = 0; j < nq; j++)
                for (int i = 0; i < f.n; i++) {
                    double d = 0;
                    for (int p = 0; p < P; p++) d += (double)w[j][p] * deq[p][i];
                    e_naive = fmax(e_naive, fabs(yr[j * f.n + i] - d));
                }
            CHECK(e_naive < 1e-4, "format %zu, %d queries: reference = double over naive rows (%.2g)",
                  fi, nq, e_naive);
            for (int isa = SQZ_ISA_AVX2; isa <= (int)sqz_isa_best(); isa++) {
                const sqz_attn_kernels simd = sqz_attn_kernels_get((sqz_isa)isa);
                e_simd = 0;
                memset(ys, 0, sizeof ys);
                simd.scores(&f, nq, qq, base, ld, P, 0.5f, &s_simd[0][0], MAXP);
                simd.accum(&f, nq, &w[0][0], MAXP, base, ld, P, ys);
                for (int j = 0; j < nq; j++)
                    for (int p = 0; p < P; p++) e_simd = fmax(e_simd, fabs(s_simd[j][p] - s_ref[j][p]));
                for (int k = 0; k < nq * f.n; k++) e_simd = fmax(e_simd, fabs(ys[k] - yr[k]));
                CHECK(e_simd < 1e-4, "format %zu, %d queries: %s = reference (%.2g)", fi, nq,
                      sqz_isa_name((sqz_isa)isa), e_simd);
            }
            (void)y_ref, (void)y_simd;
        }
    }
    if (!have_simd) SKIP("no AVX2: the SIMD tier was not compared");
}

/* The SIMD softmax (polynomial exp) against the reference (libm expf) on lengths around the
 * vector width, scores spread over a wide range (some underflow to ~0). */
static void test_softmax(void) {
    if (sqz_isa_best() < SQZ_ISA_AVX2) {
        SKIP("no AVX2: softmax tiers");
        return;
    }
    const sqz_attn_kernels ref = sqz_attn_kernels_ref(), simd = sqz_attn_kernels_avx2();
    static const int ns[] = { 1, 3, 7, 8, 9, 16, 31, 100, 4096 };
    static float a[4096], b[4096];
    uint64_t rng = 5;
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        const int n = ns[k];
        for (int i = 0; i < n; i++) a[i] = b[i] = test_frand(&rng) * (k % 2 ? 30.0f : 4.0f) + 5.0f;
        ref.softmax(a, n);
        simd.softmax(b, n);
        double sum = 0;
        for (int i = 0; i < n; i++) sum += b[i];
        /* relative to each probability, down to the ones that stay above underflow */
        double emax = 0;
        for (int i = 0; i < n; i++)
            if (a[i] > 1e-30) emax = fmax(emax, fabs((double)b[i] - a[i]) / a[i]);
        CHECK(emax < 2e-6 && fabs(sum - 1) < 1e-5, "softmax avx2 n=%d: max relative error %.2g, "
              "sum %.7f", n, emax, sum);
    }
}

static void test_rotation(void) {
    float x[64], y[64];
    uint64_t rng = 7;
    for (int i = 0; i < 64; i++) x[i] = test_frand(&rng);
    x[5] = 40; /* an outlier channel */
    memcpy(y, x, sizeof x);
    double n0 = 0, n1 = 0, mx = 0;
    for (int i = 0; i < 64; i++) n0 += (double)x[i] * x[i];
    sqz_hadamard_hashed(y, 64, 0);
    for (int i = 0; i < 64; i++) n1 += (double)y[i] * y[i], mx = fmax(mx, fabs(y[i]));
    CHECK(fabs(n1 - n0) < 1e-3 * n0, "rotation keeps the norm (%g vs %g)", n1, n0);
    CHECK(mx < 10, "rotation spreads the outlier (max |x| 40 -> %.2f)", mx);
    sqz_hadamard_hashed(y, 64, 1);
    double e = 0;
    for (int i = 0; i < 64; i++) e = fmax(e, fabs(y[i] - x[i]));
    CHECK(e < 1e-4, "inverse rotation gives the row back (%.2g)", e);
}

/* ---- streaming+q4 end to end */
enum { L = 2, HQ = 4, HKV = 2, HD = 64, ROW = HKV * HD, NPOS = 90, SINK = 2, WIN = 30, REC = 8 };

static void test_streaming_q4(sqz_ctx *ctx, int rot) {
    static float K[L][NPOS][ROW], V[L][NPOS][ROW], Q[NPOS][HQ * HD], out[NPOS][HQ * HD];
    uint64_t rng = 99;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < NPOS; p++)
            for (int i = 0; i < ROW; i++) {
                /* keys with a constant offset in a few channels, as real keys have */
                K[l][p][i] = test_frand(&rng) + (i % HD < 4 ? 3.0f : 0.0f);
                V[l][p][i] = test_frand(&rng);
            }
    for (int p = 0; p < NPOS; p++)
        for (int i = 0; i < HQ * HD; i++) Q[p][i] = test_frand(&rng);
    char spec[96];
    snprintf(spec, sizeof spec, "streaming:sink=%d,window=%d+q4:rot=%d,recent=%d", SINK, WIN, rot,
             REC);
    sqz_kv_shape shape = { L, HQ, HKV, HD, NPOS, 0 };
    sqz_kv *kv = NULL;
    if (sqz_kv_new(ctx, &shape, spec, &kv)) {
        CHECK(0, "%s: %s", spec, sqz_ctx_error(ctx));
        return;
    }
    const int P0 = 20; /* the prompt, in one step; then one token at a time */
    double err = 0, err_exact = 0;
    for (int pos = 0; pos < NPOS;) {
        const int n = pos == 0 ? P0 : 1;
        for (int l = 0; l < L; l++) {
            kv->policy->store(kv->state, l, pos, n, &K[l][pos][0], &V[l][pos][0]);
            kv->policy->attend(kv->state, l, pos, n, &Q[pos][0], &out[pos][0], 1);
            /* naive: positions held while this step attends = those kept after the previous
             * step plus this step's; the newest REC of them f16, the others q4, keys minus the
             * first step's mean */
            for (int t = 0; t < n; t++)
                for (int g = 0; g < HKV; g++) {
                    float mu[HD];
                    for (int i = 0; i < HD; i++) {
                        double a = 0;
                        for (int j = 0; j < P0; j++) a += K[l][j][g * HD + i];
                        mu[i] = (float)(a / P0);
                    }
                    int held[NPOS], nh = 0;
                    const int last_prev = pos - 1;
                    for (int p = 0; p < pos; p++)
                        if (p < SINK || p > last_prev - WIN) held[nh++] = p;
                    for (int p = pos; p <= pos + t; p++) held[nh++] = p;
                    /* slots of the step's store: everything up to pos + n - 1 */
                    const int n_slots = nh + (n - 1 - t);
                    for (int hq = g * (HQ / HKV); hq < (g + 1) * (HQ / HKV); hq++) {
                        static float vd[NPOS][HD];
                        double sc[NPOS], sce[NPOS], mxs = -1e30, mxe = -1e30, sum = 0, sume = 0;
                        double o[HD] = { 0 }, oe[HD] = { 0 };
                        const float *qh = &Q[pos + t][hq * HD];
                        const sqz_kvrow_fmt f = { SQZ_KVROW_Q4, HD, 32 };
                        for (int s = 0; s < nh; s++) {
                            const int p = held[s];
                            float kc[HD], kh[HD], vh[HD], kd[HD];
                            for (int i = 0; i < HD; i++) {
                                kc[i] = K[l][p][g * HD + i] - mu[i];
                                kh[i] = f16r(kc[i]), vh[i] = f16r(V[l][p][g * HD + i]);
                            }
                            if (s < n_slots - REC) { /* coded rows went through f16 first */
                                naive_row(&f, kh, kd);
                                naive_row(&f, vh, vd[s]);
                            } else {
                                memcpy(kd, kh, sizeof kd);
                                memcpy(vd[s], vh, sizeof vh);
                            }
                            double d = 0, de = 0;
                            for (int i = 0; i < HD; i++)
                                d += (double)qh[i] * kd[i], de += (double)qh[i] * K[l][p][g * HD + i];
                            sc[s] = d / 8.0, sce[s] = de / 8.0;
                            mxs = fmax(mxs, sc[s]), mxe = fmax(mxe, sce[s]);
                        }
                        for (int s = 0; s < nh; s++) {
                            const double e1 = exp(sc[s] - mxs), e2 = exp(sce[s] - mxe);
                            sum += e1, sume += e2;
                            for (int i = 0; i < HD; i++) {
                                o[i] += e1 * vd[s][i];
                                oe[i] += e2 * V[l][held[s]][g * HD + i];
                            }
                        }
                        for (int i = 0; i < HD; i++) {
                            const double got = out[pos + t][hq * HD + i];
                            err = fmax(err, fabs(got - o[i] / sum));
                            err_exact = fmax(err_exact, fabs(got - oe[i] / sume));
                        }
                    }
                }
        }
        pos += n;
    }
    if (!rot) CHECK(err < 2e-4, "%s: attention = naive (kept positions, centred keys, f16 newest, q4 "
                    "older) (max err %.2g)", spec, err);
    /* 4-bit codes of uniform noise: outputs within a fraction of the values' range (+-1) */
    CHECK(err_exact < 0.25, "%s: close to exact attention (max err %.3f)", spec, err_exact);
    /* bytes: per (layer, head) SINK + WIN slots, REC of them f16; positions; the key centre */
    const size_t held = SINK + WIN, rb = 32 + 8;
    const size_t want = L * HKV * ((held - REC) * 2 * rb + REC * 2 * HD * 2 + held * 4 + HD * 4);
    CHECK(kv->policy->bytes(kv->state) == want, "%s: bytes %zu = %zu", spec,
          kv->policy->bytes(kv->state), want);
    sqz_kv_free(kv);
}

/* minicache with a rotating codec (q8, rot=1): attention runs on the stored, rotated rows with
 * the magnitudes applied to scores and weights; it must stay close to minicache over f32 rows
 * (same merges: the codec changes only how rows are held), through a prefill and decode steps,
 * with merged and kept tokens both present (gamma 0.4 on random vectors keeps some). */
static void test_minicache_codec(sqz_ctx *ctx) {
    static float K[L][NPOS][ROW], V[L][NPOS][ROW], Q[NPOS][HQ * HD], o1[NPOS][HQ * HD], o2[NPOS][HQ * HD];
    uint64_t rng = 7;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < NPOS; p++)
            for (int i = 0; i < ROW; i++) {
                /* layer 1 near layer 0 on half the tokens: those merge */
                K[l][p][i] = l && p % 2 ? K[0][p][i] + 0.3f * test_frand(&rng) : test_frand(&rng);
                V[l][p][i] = l && p % 3 ? V[0][p][i] + 0.3f * test_frand(&rng) : test_frand(&rng);
            }
    for (int p = 0; p < NPOS; p++)
        for (int i = 0; i < HQ * HD; i++) Q[p][i] = test_frand(&rng);
    sqz_kv_shape shape = { L, HQ, HKV, HD, NPOS, 0 };
    sqz_kv *a = NULL, *b = NULL;
    sqz_kv_new(ctx, &shape, "minicache:start=0,gamma=0.4+f32", &a);
    sqz_kv_new(ctx, &shape, "minicache:start=0,gamma=0.4+q8", &b);
    CHECK(a && b, "minicache+f32 and minicache+q8 created");
    if (!a || !b) {
        sqz_kv_free(a), sqz_kv_free(b);
        return;
    }
    double err = 0, mag = 0;
    for (int pos = 0; pos < NPOS;) {
        const int n = pos ? 1 : 24;
        for (int l = 0; l < L; l++) {
            a->policy->store(a->state, l, pos, n, K[l][pos], V[l][pos]);
            b->policy->store(b->state, l, pos, n, K[l][pos], V[l][pos]);
            a->policy->attend(a->state, l, pos, n, Q[pos], o1[pos], 1);
            b->policy->attend(b->state, l, pos, n, Q[pos], o2[pos], 1);
            const float *x1 = &o1[pos][0], *x2 = &o2[pos][0]; /* n rows: flat */
            for (int i = 0; i < n * HQ * HD; i++)
                err = fmax(err, fabs(x1[i] - x2[i])), mag = fmax(mag, fabs(x1[i]));
        }
        pos += n;
    }
    CHECK(err < 0.02 * mag, "minicache+q8 (rotated rows) = minicache+f32 within q8 error (%.3g of %.3g)",
          err, mag);
    sqz_kv_free(a), sqz_kv_free(b);
}

static void test_errors(sqz_ctx *ctx) {
    sqz_kv_shape shape = { L, HQ, HKV, HD, 64, 0 };
    static const struct { const char *spec, *word; } bad[] = {
        { "q4:group=7", "group" },
        { "xkv:rank=0+q8", "rank" },
        { "foo+q8", "foo" },
        { "q8+q8", "storage format itself" },
        { "f16+q4", "storage format itself" },
        { "streaming+bar", "codec 'bar'" },
        { "streaming+streaming", "codec 'streaming'" },
        { "streaming+q4:group=48", "multiple of 32" },
        { "streaming+q4:rot=2", "rot" },
        { "streaming+f16:group=32", "takes no parameters" },
        { "xkv:rank=12+q8", "multiple of 32" },
        { "h2o:budget=0+q4", "budget" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sqz_kv *kv = NULL;
        const sqz_status st = sqz_kv_new(ctx, &shape, bad[i].spec, &kv);
        CHECK(st == SQZ_ERR_ARG && !kv && strstr(sqz_ctx_error(ctx), bad[i].word),
              "'%s' refused: %s", bad[i].spec, sqz_ctx_error(ctx));
        sqz_kv_free(kv);
    }
    const char *good[] = { "streaming+q4", "streaming+q8:group=64,recent=0", "h2o+q2", "snapkv+f32",
                           "kvmerger+q8", "minicache+q4", "xkv:rank=32+q8", "streaming:sink=4,window=8+f16" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        sqz_kv *kv = NULL;
        CHECK(sqz_kv_new(ctx, &shape, good[i], &kv) == SQZ_OK, "'%s' accepted (%s)", good[i],
              kv ? "" : sqz_ctx_error(ctx));
        sqz_kv_free(kv);
    }
}

/* Long contexts: the SIMD kernels walk the rows in tiles of ~32 KB and prefetch ahead (attn_avx512.c);
 * P spans several tiles and ends inside one, rows contiguous (the f16 policy's layout) and
 * strided, and the results must still be the reference's. */
static void test_long_rows(void) {
    static const struct { sqz_kvrow_type t; int n, group; size_t pad; } fmts[] = {
        { SQZ_KVROW_F16, 64, 64, 0 }, { SQZ_KVROW_F16, 128, 128, 384 }, { SQZ_KVROW_Q4, 64, 32, 0 },
        { SQZ_KVROW_F32, 64, 64, 0 },
    };
    enum { P = 1337, NQ = 8 };
    const sqz_attn_kernels ref = sqz_attn_kernels_ref();
    uint64_t rng = 7;
    float *x = malloc(128 * sizeof *x), *q = malloc((size_t)NQ * 128 * sizeof *q);
    float *w = malloc((size_t)NQ * P * sizeof *w), *s_ref = malloc((size_t)NQ * P * sizeof *s_ref);
    float *s_simd = malloc((size_t)NQ * P * sizeof *s_simd);
    float *y_ref = malloc((size_t)NQ * 128 * sizeof *y_ref), *y_simd = malloc((size_t)NQ * 128 * sizeof *y_simd);
    uint8_t *rows = malloc((size_t)P * (128 * 4 + 384));
    for (size_t fi = 0; fi < sizeof fmts / sizeof *fmts; fi++) {
        const sqz_kvrow_fmt f = { fmts[fi].t, fmts[fi].n, fmts[fi].group };
        const size_t ld = sqz_kvrow_bytes(&f) + fmts[fi].pad;
        for (int p = 0; p < P; p++) {
            for (int i = 0; i < f.n; i++) x[i] = test_frand(&rng);
            sqz_kvrow_encode(&f, x, rows + (size_t)p * ld);
        }
        for (int i = 0; i < NQ * f.n; i++) q[i] = test_frand(&rng);
        for (int i = 0; i < NQ * P; i++) w[i] = test_frand(&rng) * 0.5f + 0.5f;
        for (int nq = 3; nq <= NQ; nq += NQ - 3) {
            memset(y_ref, 0, (size_t)NQ * 128 * sizeof *y_ref);
            ref.scores(&f, nq, q, rows, ld, P, 0.125f, s_ref, P);
            ref.accum(&f, nq, w, P, rows, ld, P, y_ref);
            for (int isa = SQZ_ISA_AVX2; isa <= (int)sqz_isa_best(); isa++) {
                const sqz_attn_kernels simd = sqz_attn_kernels_get((sqz_isa)isa);
                memset(y_simd, 0, (size_t)NQ * 128 * sizeof *y_simd);
                simd.scores(&f, nq, q, rows, ld, P, 0.125f, s_simd, P);
                simd.accum(&f, nq, w, P, rows, ld, P, y_simd);
                double es = 0, ey = 0;
                for (int k = 0; k < nq * P; k++) es = fmax(es, fabs(s_simd[k] - s_ref[k]));
                for (int k = 0; k < nq * f.n; k++) ey = fmax(ey, fabs(y_simd[k] - y_ref[k]) / (1 + fabs(y_ref[k])));
                CHECK(es < 1e-5 && ey < 1e-5, "%d rows of format %zu (type %d, n %d, stride %zu), %d queries: %s = reference (scores %.2g, outputs %.2g)",
                      P, fi, f.type, f.n, ld, nq, sqz_isa_name((sqz_isa)isa), es, ey);
            }
        }
    }
    if (sqz_isa_best() < SQZ_ISA_AVX2) SKIP("no AVX2: the SIMD tiers were not compared on long rows");
    free(x), free(q), free(w), free(s_ref), free(s_simd), free(y_ref), free(y_simd), free(rows);
}

int main(void) {
    test_softmax();
    sqz_ctx *ctx = sqz_ctx_new();
    test_formats_and_kernels();
    test_long_rows();
    test_rotation();
    test_streaming_q4(ctx, 0);
    test_streaming_q4(ctx, 1);
    test_minicache_codec(ctx);
    test_errors(ctx);
    sqz_ctx_free(ctx);
    return test_done();
}
