/* test_mixllm.c - mixllm's types, kernels and quantizers against independent references:
 *
 *   - MX8 / MX4 / MX3 to_float equals a decoder written here from the layout in mix.h, on
 *     random block bytes (every bit pattern of the levels);
 *   - the quantizers' round-to-nearest error stays within half a step;
 *   - the activation quantizer (MXA) keeps every x within half a step, and the reference dot
 *     products equal sum deq(w) * deq(x) in double (x's MXA blocks decoded here), and the AVX2
 *     tier equals the reference;
 *   - a mixed matrix (random permutation, 8-bit and 4/3-bit rows) through sqz_matvec,
 *     sqz_matmul (quantized path and sgemm path, 1 and 2 threads) and the decode team path
 *     (sqz_act_quantize + sqz_matvec_rows) equals a dense product of its dequantized rows
 *     placed at their output features;
 *   - GPTQ into MX4 / MX3 lowers the output error ||(W - Q) X|| below round-to-nearest;
 *   - sqz_mixllm_row_gain ranks a row whose inputs carry more energy first, and
 *     sqz_mixllm_quantize stores 8-bit rows first with the permutation that undoes it;
 *   - end to end (sqz-llama-14m from ../shared; about a minute of CPU, so only when $SQZ_LONG
 *     is set, as CI does): sqz_quantize
 *     --method mixllm writes an sqzf file with --mix-frac of the weights at 8 bits that loads
 *     and scores close to the f16 model; bad types and row lengths are clear errors.
 */
#include <sys/stat.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "kernels/kernels.h"
#include "kernels/mix.h"
#include "model/model.h"
#include "formats/blocks.h"
#include "quant/gptq.h"
#include "quant/mixllm.h"
#include "sqz.h"
#include "test.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnext(void) { return test_xorshift64(&rng); }
static float frand(void) { return (float)((rnext() >> 40) / 8388608.0 - 1.0); } /* [-1, 1) */

static const sqz_type types[3] = { SQZ_TYPE_MX8, SQZ_TYPE_MX4, SQZ_TYPE_MX3 };

/* The layout of mix.h, decoded byte by byte (little-endian f16 at the block's start). */
static float f16_at(const uint8_t *p) { return sqz_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }
static void decode(sqz_type t, const uint8_t *b, int64_t n, float *out) {
    const size_t ts = t == SQZ_TYPE_MX8 ? 130 : t == SQZ_TYPE_MX4 ? 68 : 52;
    for (int64_t g = 0; g < n / 128; g++, b += ts)
        for (int j = 0; j < 128; j++) {
            float v;
            if (t == SQZ_TYPE_MX8) {
                v = f16_at(b) * (float)(int8_t)b[2 + j];
            } else if (t == SQZ_TYPE_MX4) {
                const int q = j < 64 ? b[4 + j] & 15 : b[4 + j - 64] >> 4;
                v = f16_at(b) * (float)q + f16_at(b + 2);
            } else {
                const int lo = (b[4 + j % 32] >> (2 * (j / 32))) & 3, hi = (b[36 + j % 16] >> (j / 16)) & 1;
                v = f16_at(b) * (float)(lo | hi << 2) + f16_at(b + 2);
            }
            out[g * 128 + j] = v;
        }
}

/* Random block bytes with sane f16 scale (and offset); MX8 levels avoid -128 as the quantizer does. */
static void random_blocks(sqz_type t, uint8_t *b, int64_t n) {
    const size_t ts = sqz_type_get(t)->type_size;
    for (int64_t g = 0; g < n / 128; g++, b += ts) {
        for (size_t k = 0; k < ts; k++) b[k] = (uint8_t)rnext();
        uint16_t d = sqz_f32_to_f16(0.01f + 0.02f * (frand() + 1)), m = sqz_f32_to_f16(-0.1f * (frand() + 1));
        memcpy(b, &d, 2);
        if (t != SQZ_TYPE_MX8) memcpy(b + 2, &m, 2);
        else
            for (size_t k = 2; k < ts; k++) if (b[k] == 0x80) b[k] = 0x81;
    }
}

static void test_layouts(void) {
    enum { N = 512 };
    uint8_t buf[4 * 130];
    float a[N], want[N];
    for (int ti = 0; ti < 3; ti++) {
        const sqz_type t = types[ti];
        int bad = 0;
        for (int rep = 0; rep < 20; rep++) {
            random_blocks(t, buf, N);
            sqz_type_get(t)->to_float(buf, a, N);
            decode(t, buf, N, want);
            for (int i = 0; i < N; i++) bad += a[i] != want[i];
        }
        CHECK(bad == 0, "%s to_float equals the layout decoded by the test (%d differ)", sqz_type_name(t), bad);
        /* round-to-nearest: within half a step of each value (plus the f16 rounding of m) */
        float x[N];
        for (int i = 0; i < N; i++) x[i] = frand() * (i % 17 == 0 ? 4.0f : 1.0f);
        sqz_type_get(t)->from_float(x, buf, N);
        decode(t, buf, N, want);
        double worst = 0;
        for (int g = 0; g < N / 128; g++) {
            const float d = f16_at(buf + g * sqz_type_get(t)->type_size);
            for (int j = 0; j < 128; j++) {
                const double e = fabs((double)x[g * 128 + j] - want[g * 128 + j]) / d;
                worst = e > worst ? e : worst;
            }
        }
        /* the asymmetric search may clip a shrunk range: allow a few steps there */
        CHECK(worst <= (t == SQZ_TYPE_MX8 ? 0.5001 : 4.0), "%s round-to-nearest error <= %s step (worst %.3f)",
              sqz_type_name(t), t == SQZ_TYPE_MX8 ? "half a" : "a few", worst);
    }
}

/* x's MXA blocks decoded here from mix.h's layout: f32 d[4], f32 s, int8 q[128]; also checks s. */
static int decode_mxa(const uint8_t *b, int64_t n, float *out) {
    int s_ok = 1;
    for (int64_t g = 0; g < n / 128; g++, b += 148) {
        float d[4], s;
        memcpy(d, b, 16);
        memcpy(&s, b + 16, 4);
        double want_s = 0;
        for (int j = 0; j < 128; j++) {
            out[g * 128 + j] = d[j / 32] * (float)(int8_t)b[20 + j];
            want_s += out[g * 128 + j];
        }
        s_ok &= fabs(s - want_s) <= 1e-5 * (fabs(want_s) + 1);
    }
    return s_ok;
}

static void test_dots(void) {
    enum { N = 1024 };
    uint8_t w[8 * 130], xq[N / 128 * 148];
    float x[N], xd[N], wd[N];
    const sqz_isa best = sqz_isa_best();
    for (int ti = 0; ti < 3; ti++) {
        const sqz_type t = types[ti];
        double worst_ref = 0, worst_tier = 0, worst_x = 0;
        int s_ok = 1;
        for (int rep = 0; rep < 30; rep++) {
            const int64_t n = 128 * (1 + rep % 8);
            random_blocks(t, w, n);
            for (int64_t i = 0; i < n; i++) x[i] = frand() * 3;
            sqz_mix_act_quantize(x, xq, n);
            s_ok &= decode_mxa(xq, n, xd);
            for (int64_t i = 0; i < n; i++) {
                float d;
                memcpy(&d, xq + (i / 128) * 148 + 4 * ((i % 128) / 32), 4);
                const double e = fabs((double)x[i] - xd[i]) / d;
                worst_x = e > worst_x ? e : worst_x;
            }
            decode(t, w, n, wd);
            double want = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) want += (double)wd[i] * xd[i], mag += fabs((double)wd[i] * xd[i]);
            const double ref = sqz_mx_dot_get(t, SQZ_ISA_REF)(n, w, xq);
            const double e = fabs(ref - want) / (mag + 1e-9);
            worst_ref = e > worst_ref ? e : worst_ref;
            if (best >= SQZ_ISA_AVX2) {
                const double v = sqz_mx_dot_get(t, SQZ_ISA_AVX2)(n, w, xq);
                const double e2 = fabs(v - ref) / (mag + 1e-9);
                worst_tier = e2 > worst_tier ? e2 : worst_tier;
            }
        }
        CHECK(s_ok && worst_x <= 0.5001, "MXA: x within half a step (worst %.3f), s = sum of deq(x)", worst_x);
        CHECK(worst_ref < 1e-5, "%s reference dot with MXA equals deq(w) . deq(x) (worst rel. %.2g)",
              sqz_type_name(t), worst_ref);
        if (best >= SQZ_ISA_AVX2)
            CHECK(worst_tier < 1e-5, "%s AVX2 dot equals the reference (worst rel. %.2g)", sqz_type_name(t), worst_tier);
        else
            SKIP("%s AVX2 dot: this CPU has no AVX2", sqz_type_name(t));
    }
}

/* A mixed matrix of N rows x K with n8 8-bit rows and a random permutation. */
typedef struct mixm {
    sqz_mix_tensor mx;
    sqz_tensor t;
    uint8_t *hi, *lo;
    int32_t *perm;
    float *dense; /* [N][K]: row r = the dequantized stored row with perm[i] = r */
} mixm;

static void mixm_make(mixm *m, int64_t N, int64_t K, int64_t n8, sqz_type lo_type) {
    const size_t rs8 = sqz_type_row_size(SQZ_TYPE_MX8, K), rsl = sqz_type_row_size(lo_type, K);
    m->hi = malloc((size_t)n8 * rs8 + 1);
    m->lo = malloc((size_t)(N - n8) * rsl + 1);
    m->perm = malloc((size_t)N * sizeof *m->perm);
    m->dense = malloc((size_t)(N * K) * sizeof *m->dense);
    for (int64_t i = 0; i < N; i++) m->perm[i] = (int32_t)i;
    for (int64_t i = N - 1; i > 0; i--) { /* Fisher-Yates */
        const int64_t j = (int64_t)(rnext() % (uint64_t)(i + 1));
        const int32_t tmp = m->perm[i];
        m->perm[i] = m->perm[j];
        m->perm[j] = tmp;
    }
    for (int64_t i = 0; i < N; i++) {
        const int is8 = i < n8;
        uint8_t *row = is8 ? m->hi + (size_t)i * rs8 : m->lo + (size_t)(i - n8) * rsl;
        random_blocks(is8 ? SQZ_TYPE_MX8 : lo_type, row, K);
        decode(is8 ? SQZ_TYPE_MX8 : lo_type, row, K, m->dense + (int64_t)m->perm[i] * K);
    }
    m->mx = (sqz_mix_tensor){ .n8 = n8, .hi = m->hi, .lo = m->lo, .lo_type = lo_type, .perm = m->perm };
    m->t = (sqz_tensor){ .type = SQZ_TYPE_MIXLLM, .rows = N, .cols = K, .data = &m->mx };
}

static void mixm_free(mixm *m) { free(m->hi), free(m->lo), free(m->perm), free(m->dense); }

/* max |y - dense . x| / max |dense . x| over T rows. */
static double rel_diff(const mixm *m, const float *x, int T, const float *y) {
    const int64_t N = m->t.rows, K = m->t.cols;
    double dmax = 0, ymax = 0;
    for (int t = 0; t < T; t++)
        for (int64_t r = 0; r < N; r++) {
            double want = 0;
            for (int64_t k = 0; k < K; k++) want += (double)m->dense[r * K + k] * x[t * K + k];
            const double d = fabs(y[(size_t)t * N + r] - want);
            dmax = d > dmax ? d : dmax;
            ymax = fabs(want) > ymax ? fabs(want) : ymax;
        }
    return dmax / (ymax + 1e-12);
}

static void test_mixed_matrix(void) {
    const int64_t N = 200, K = 384;
    for (int li = 1; li < 3; li++)
        for (int64_t n8 = 0; n8 <= N; n8 += 100) { /* none, half, all at 8 bits */
            mixm m;
            mixm_make(&m, N, K, n8, types[li]);
            float *x = malloc(40 * K * sizeof *x), *y = malloc(40 * N * sizeof *y);
            for (int64_t i = 0; i < 40 * K; i++) x[i] = frand();
            const char *lo = sqz_type_name(types[li]);
            sqz_matvec(&m.t, x, y, 1);
            CHECK(rel_diff(&m, x, 1, y) < 2e-2, "mixed %s n8=%lld: matvec equals the dense product (%.2g)", lo,
                  (long long)n8, rel_diff(&m, x, 1, y));
            sqz_matmul(&m.t, x, 5, y, 2);
            CHECK(rel_diff(&m, x, 5, y) < 2e-2, "mixed %s n8=%lld: matmul T=5, 2 threads (%.2g)", lo, (long long)n8,
                  rel_diff(&m, x, 5, y));
            sqz_matmul(&m.t, x, 40, y, 2);
            CHECK(rel_diff(&m, x, 40, y) < 1e-5, "mixed %s n8=%lld: matmul T=40 (sgemm) (%.2g)", lo, (long long)n8,
                  rel_diff(&m, x, 40, y));
            sqz_matmul_ref(&m.t, x, 3, y);
            CHECK(rel_diff(&m, x, 3, y) < 1e-6, "mixed %s n8=%lld: the reference (%.2g)", lo, (long long)n8,
                  rel_diff(&m, x, 3, y));
            /* decode inside a team: activations once, rows in two shares */
            void *xq = malloc(sqz_act_bytes(m.t.type, K));
            sqz_act_quantize(m.t.type, x, xq, K);
            for (int64_t r = 0; r < N; r++) y[r] = NAN;
            sqz_matvec_rows(&m.t, x, xq, y, 0, 77);
            sqz_matvec_rows(&m.t, x, xq, y, 77, N);
            CHECK(rel_diff(&m, x, 1, y) < 2e-2, "mixed %s n8=%lld: act_quantize + matvec_rows in two shares (%.2g)",
                  lo, (long long)n8, rel_diff(&m, x, 1, y));
            float row[384];
            sqz_tensor_row_f32(&m.t, 17, row);
            CHECK(!memcmp(row, m.dense + 17 * K, sizeof row), "mixed %s n8=%lld: row_f32 gives output feature 17", lo,
                  (long long)n8);
            free(xq), free(x), free(y);
            mixm_free(&m);
        }
}

/* ||(W - Q) X||^2 with H = X^T X. */
static double out_err(const float *W, const float *Q, int64_t rows, int64_t cols, const double *H) {
    double e = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < cols; i++) {
            const double di = (double)W[r * cols + i] - Q[r * cols + i];
            for (int64_t j = 0; j < cols; j++) e += di * H[i * cols + j] * ((double)W[r * cols + j] - Q[r * cols + j]);
        }
    return e;
}

static void test_quantizers(void) {
    const int64_t rows = 24, cols = 256, T = 600;
    float *W = malloc(rows * cols * sizeof *W), *Q = malloc(rows * cols * sizeof *Q), *X = malloc(T * cols * sizeof *X);
    double *H = calloc((size_t)(cols * cols), sizeof *H);
    uint8_t *out = malloc((size_t)rows * sqz_type_row_size(SQZ_TYPE_MX8, cols));
    for (int64_t i = 0; i < rows * cols; i++) W[i] = frand();
    /* correlated inputs with uneven channel scales, so H is far from the identity */
    for (int64_t t = 0; t < T; t++) {
        const float common = frand();
        for (int64_t i = 0; i < cols; i++) X[t * cols + i] = (common + 0.5f * frand()) * (1.0f + (float)(i % 7));
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < cols; i++)
            for (int64_t j = 0; j < cols; j++) H[i * cols + j] += (double)X[t * cols + i] * X[t * cols + j];
    sqz_ctx *ctx = sqz_ctx_new();
    for (int li = 1; li < 3; li++) {
        const sqz_type t = types[li];
        sqz_type_get(t)->from_float(W, out, rows * cols);
        sqz_type_get(t)->to_float(out, Q, rows * cols);
        const double e_rtn = out_err(W, Q, rows, cols, H);
        sqz_gptq_opts o = sqz_gptq_default_opts();
        o.threads = 1;
        const sqz_status st = sqz_gptq_quantize(ctx, t, W, rows, cols, H, &o, out, Q);
        const double e_gptq = out_err(W, Q, rows, cols, H);
        CHECK(st == SQZ_OK && e_gptq < 0.8 * e_rtn, "GPTQ into %s: output error %.4g < 0.8 x round-to-nearest's %.4g",
              sqz_type_name(t), e_gptq, e_rtn);
        float *Q2 = malloc(rows * cols * sizeof *Q2);
        sqz_type_get(t)->to_float(out, Q2, rows * cols);
        CHECK(!memcmp(Q, Q2, rows * cols * sizeof *Q), "GPTQ into %s: deq equals to_float of its bytes", sqz_type_name(t));
        free(Q2);
    }
    /* row gain: row 5 scaled up 8x must rank first */
    for (int64_t i = 0; i < cols; i++) W[5 * cols + i] *= 8;
    double gain[24];
    CHECK(sqz_mixllm_row_gain(ctx, W, rows, cols, H, SQZ_TYPE_MX4, gain, NULL) == SQZ_OK, "row gain runs");
    int best = 0, positive = 1;
    for (int r = 0; r < rows; r++) {
        if (gain[r] > gain[best]) best = r;
        positive &= gain[r] > 0;
    }
    CHECK(best == 5 && positive, "row gain: the scaled row ranks first (row %d), every gain > 0", best);
    /* mixllm_quantize: 8-bit rows stored first, perm undoes it, deq matches the stored rows */
    uint8_t hi[24] = { 0 };
    hi[3] = hi[5] = hi[20] = 1;
    sqz_model owner;
    memset(&owner, 0, sizeof owner);
    sqz_tensor mt;
    CHECK(sqz_mixllm_quantize(ctx, &owner, W, rows, cols, H, hi, SQZ_TYPE_MX3, 0, 0, &mt, Q) == SQZ_OK,
          "mixllm_quantize runs");
    const sqz_mix_tensor *mx = mt.data;
    CHECK(mt.type == SQZ_TYPE_MIXLLM && mx->n8 == 3 && mx->perm[0] == 3 && mx->perm[1] == 5 && mx->perm[2] == 20 &&
              mx->perm[3] == 0 && mx->lo_type == SQZ_TYPE_MX3,
          "mixllm_quantize: 3 rows at 8 bits stored first (perm %d %d %d %d)", mx->perm[0], mx->perm[1], mx->perm[2],
          mx->perm[3]);
    float row[256];
    int same = 1;
    for (int64_t r = 0; r < rows; r++) {
        sqz_tensor_row_f32(&mt, r, row);
        same &= !memcmp(row, Q + r * cols, sizeof row);
    }
    CHECK(same, "mixllm_quantize: deq is each output feature's stored row");
    double e8 = 0, e3 = 0;
    for (int64_t i = 0; i < cols; i++) {
        e8 += fabs(W[5 * cols + i] - Q[5 * cols + i]) / 8;
        e3 += fabs(W[6 * cols + i] - Q[6 * cols + i]);
    }
    CHECK(e8 < e3 / 4, "mixllm_quantize: the 8-bit row is far closer (%.3g vs %.3g)", e8, e3);
    for (int i = 0; i < owner.n_owned; i++) free(owner.owned[i]);
    free(owner.owned);
    sqz_ctx_free(ctx);
    free(W), free(Q), free(X), free(H), free(out);
}

static void on_tensor(void *user, const char *name, const char *type, double rel_err) {
    long long *w = user; /* [0] 8-bit weights, [1] all, [2] matrices */
    long long n8, nlo;
    char lo[8];
    if (sscanf(type, "mx8:%lld+%3s:%lld", &n8, lo, &nlo) == 3) {
        const long long cols = strstr(name, "ffn_down") ? 1024 : 384; /* sqz-llama-14m */
        w[0] += n8 * cols;
        w[1] += (n8 + nlo) * cols;
        w[2]++;
    }
    (void)rel_err;
}

static char *slurp(const char *path, size_t max, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *b = malloc(max + 1);
    *len = f && b ? fread(b, 1, max, f) : 0;
    if (f) fclose(f);
    return b;
}

static double ppl_of(sqz_ctx *ctx, sqz_model *m, const int32_t *ids, size_t n) {
    sqz_ppl_opts o = { .n_ctx = 256, .max_tokens = 1025 };
    sqz_ppl_result r;
    return m && !sqz_perplexity(ctx, m, ids, n, &o, &r) ? r.ppl : -1;
}

static void test_end_to_end(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    char dir[] = "/tmp/sqz-test-mixllm-XXXXXX";
    if (!mkdtemp(dir)) return;
    char out[600];
    snprintf(out, sizeof out, "%s/m.sqzf", dir);
    /* the embedded model's rows (64) are not a multiple of the 128-groups */
    sqz_model *small = NULL;
    int32_t few[600];
    for (int i = 0; i < 600; i++) few[i] = (i * 7) % 500;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &small) == SQZ_OK) {
        sqz_quantize_opts o = { .method = "mixllm", .type = "q4", .calib = few, .n_calib = 600, .calib_ctx = 128 };
        const sqz_status st = sqz_quantize(ctx, small, out, &o, NULL);
        CHECK(st == SQZ_ERR_UNSUPPORTED && strstr(sqz_ctx_error(ctx), "multiple of 128"), "mixllm on 64-wide rows: %s",
              sqz_ctx_error(ctx));
        o.type = "q5";
        CHECK(sqz_quantize(ctx, small, out, &o, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "q4 or q3"),
              "mixllm type q5: %s", sqz_ctx_error(ctx));
        struct stat sb;
        CHECK(stat(out, &sb) != 0, "nothing written on failure");
        sqz_model_free(small);
    }
    const char *mp = test_shared("models/sqz-llama-14m"), *cp = test_shared("data/calib/calib-1m.txt"),
               *tp = test_shared("data/domains/sotu.test.txt");
    const char *lr = getenv("SQZ_LONG");
    if (!mp || !cp || !tp || test_quick() || !lr || !*lr || !strcmp(lr, "0")) {
        SKIP("mixllm end to end: needs ../shared's sqz-llama-14m and texts, and SQZ_LONG=1");
        sqz_ctx_free(ctx);
        rmdir(dir);
        return;
    }
    sqz_model *m = NULL, *q = NULL;
    size_t clen, tlen, nc = 0, nt = 0;
    char *calib = slurp(cp, 8000, &clen), *text = slurp(tp, 16000, &tlen);
    int32_t *cids = NULL, *tids = NULL;
    CHECK(sqz_model_load(ctx, mp, NULL, &m) == SQZ_OK && !sqz_tokenize(ctx, m, calib, clen, 0, &cids, &nc) &&
              !sqz_tokenize(ctx, m, text, tlen, 0, &tids, &nt) && nc >= 512 && nt >= 1025,
          "14m model and texts (%zu, %zu tokens)", nc, nt);
    long long w[3] = { 0, 0, 0 };
    sqz_quantize_opts o = { .method = "mixllm:frac=0.1", .type = "q4", .calib = cids, .n_calib = 256,
                            .calib_ctx = 128, .report = on_tensor, .report_user = w };
    sqz_quantize_result r;
    const sqz_status st = m ? sqz_quantize(ctx, m, out, &o, &r) : SQZ_ERR_ARG;
    CHECK(st == SQZ_OK, "mixllm q4 on sqz-llama-14m runs (%s)", st ? sqz_ctx_error(ctx) : "ok");
    CHECK(w[2] == 8 * 7 && w[0] > 0.09 * w[1] && w[0] <= 0.1 * w[1],
          "every matrix reported (%lld); %lld of %lld weights at 8 bits (want just under 10%%)", w[2], w[0], w[1]);
    FILE *f = fopen(out, "rb");
    char magic[4] = { 0 };
    if (f) {
        CHECK(fread(magic, 1, 4, f) == 4 && !memcmp(magic, "SQZF", 4), "the output is sqzf");
        fclose(f);
    }
    CHECK(sqz_model_load(ctx, out, NULL, &q) == SQZ_OK && q->layers[0].w_up.type == SQZ_TYPE_MIXLLM,
          "it loads with mixllm matrices");
    const double p0 = ppl_of(ctx, m, tids, nt), p1 = ppl_of(ctx, q, tids, nt);
    CHECK(p1 > 0 && p1 < 1.15 * p0 && p1 > 0.95 * p0, "held-out ppl %.3f close to the f16 model's %.3f", p1, p0);
    sqz_model_free(q);
    sqz_model_free(m);
    free(calib), free(text), free(cids), free(tids);
    unlink(out);
    rmdir(dir);
    sqz_ctx_free(ctx);
}

int main(void) {
    test_layouts();
    test_dots();
    test_mixed_matrix();
    test_quantizers();
    test_end_to_end();
    return test_done();
}
