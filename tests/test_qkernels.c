/* test_qkernels.c - the quantized dot products (llama.cpp's scheme) of every tier the CPU has:
 *
 *   - the activation quantizers (Q8_0, Q8_1, Q8_K) of every tier write the reference's bytes,
 *     on random vectors and on the edge cases (rounding ties, +-max ties, zero blocks);
 *   - the reference vec_dot_q equals sum_i dequant(row)[i] * dequant(xq)[i] computed in double
 *     from the dequantizers of src/quant (independent of the kernels);
 *   - every tier's vec_dot_q equals the reference's to within f32 rounding (they sum the same
 *     integers; only the order of the f32 additions differs);
 *   - sqz_matvec / sqz_matmul (small T) with 1 and 2 threads equal the reference;
 *   - the f32-x dot of quantized types equals dequant(row) . x.
 * Rows are random block bytes with sane f16 scales (every bit pattern of the quants) and, where
 * the type has a reference quantizer (from_float), quantized random floats; 1..8 blocks long.
 */
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "formats/blocks.h"
#include "formats/quant.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnext(void) { return test_xorshift64(&rng); }
static float frand(void) { return (float)((rnext() >> 40) / 8388608.0 - 1.0); } /* [-1, 1) */
static float grand(void) { return frand() + frand() + frand(); }                 /* bell-ish */

typedef void (*deq_fn)(const void *src, float *dst, int64_t n);

/* A weight type under test: its dequantizer (src/quant), and where its f16 scales live. */
typedef struct qtype {
    sqz_type t;
    deq_fn deq;
    int n_f16;         /* f16 scale fields per block */
    size_t f16_off[2]; /* their byte offsets */
} qtype;

static const qtype QTYPES[] = {
    { SQZ_TYPE_Q4_0, sqz_q4_0_to_float, 1, { offsetof(block_q4_0, d) } },
    { SQZ_TYPE_Q4_1, sqz_q4_1_to_float, 2, { offsetof(block_q4_1, d), offsetof(block_q4_1, m) } },
    { SQZ_TYPE_Q5_0, sqz_q5_0_to_float, 1, { offsetof(block_q5_0, d) } },
    { SQZ_TYPE_Q5_1, sqz_q5_1_to_float, 2, { offsetof(block_q5_1, d), offsetof(block_q5_1, m) } },
    { SQZ_TYPE_Q8_0, sqz_q8_0_to_float, 1, { offsetof(block_q8_0, d) } },
    { SQZ_TYPE_Q2_K, sqz_q2_k_to_float, 2, { offsetof(block_q2_K, d), offsetof(block_q2_K, dmin) } },
    { SQZ_TYPE_Q3_K, sqz_q3_k_to_float, 1, { offsetof(block_q3_K, d) } },
    { SQZ_TYPE_Q4_K, sqz_q4_k_to_float, 2, { offsetof(block_q4_K, d), offsetof(block_q4_K, dmin) } },
    { SQZ_TYPE_Q5_K, sqz_q5_k_to_float, 2, { offsetof(block_q5_K, d), offsetof(block_q5_K, dmin) } },
    { SQZ_TYPE_Q6_K, sqz_q6_k_to_float, 1, { offsetof(block_q6_K, d) } },
    { SQZ_TYPE_IQ4_NL, sqz_iq4_nl_to_float, 1, { offsetof(block_iq4_nl, d) } },
    { SQZ_TYPE_IQ4_XS, sqz_iq4_xs_to_float, 1, { offsetof(block_iq4_xs, d) } },
};
enum { N_QTYPES = sizeof QTYPES / sizeof *QTYPES, MAX_BLOCKS = 8, ROWS_PER_LEN = 12 };

static deq_fn act_deq(sqz_type act) {
    return act == SQZ_TYPE_Q8_0 ? sqz_q8_0_to_float
         : act == SQZ_TYPE_Q8_1 ? sqz_q8_1_to_float
                                : sqz_q8_k_to_float;
}

static int block_size(sqz_type t) { return sqz_type_get(t)->block_size; }

/* Random activations: bell-shaped, with a few outliers and, now and then, a zero block. */
static void fill_x(float *x, int64_t n, int qk) {
    for (int64_t i = 0; i < n; i++) x[i] = grand() * (rnext() % 50 == 0 ? 8.0f : 1.0f);
    if (n > qk && rnext() % 3 == 0) memset(x + (rnext() % (uint64_t)(n / qk)) * qk, 0, (size_t)qk * 4);
}

/* A row of random block bytes whose f16 scales are sane (|d| in about [1e-3, 1e-1]). */
static void fill_random_row(const qtype *q, void *row, int64_t n) {
    const sqz_type_traits *tr = sqz_type_get(q->t);
    unsigned char *p = row;
    const size_t bytes = sqz_type_row_size(q->t, n);
    for (size_t i = 0; i < bytes; i++) p[i] = (unsigned char)(rnext() >> 56);
    for (int64_t b = 0; b < n / tr->block_size; b++)
        for (int f = 0; f < q->n_f16; f++) {
            const float v = (0.001f + 0.099f * (frand() * 0.5f + 0.5f)) * (frand() < 0 ? -1 : 1);
            const uint16_t h = sqz_f32_to_f16(v);
            memcpy(p + (size_t)b * tr->type_size + q->f16_off[f], &h, 2);
        }
}

/* sum_i |row_i| |xq_i|, the scale of the rounding error of any order of summation. */
static double dot_double(deq_fn dw, deq_fn da, const void *row, const void *xq, int64_t n,
                         double *mag) {
    float *wf = malloc((size_t)n * 4), *af = malloc((size_t)n * 4);
    dw(row, wf, n);
    da(xq, af, n);
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wf[i] * af[i];
        m += fabs((double)wf[i] * af[i]);
    }
    free(wf);
    free(af);
    *mag = m;
    return s;
}

/* Q4_1 / Q5_1 use s = f16(d * sum(q)) of Q8_1 where the exact sum has d16 * sum(q): bound the
 * difference that makes, sum over blocks of |m| * (|s| + |d16 sum q|) * 2^-10. */
static double q8_1_s_slack(sqz_type t, const void *row, const void *xq, int64_t n) {
    if (t != SQZ_TYPE_Q4_1 && t != SQZ_TYPE_Q5_1) return 0;
    const block_q8_1 *a = xq;
    double slack = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        uint16_t mh;
        memcpy(&mh, (const char *)row + (size_t)b * sqz_type_get(t)->type_size + 2, 2);
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += a[b].qs[j];
        slack += fabs(sqz_f16_to_f32(mh)) *
                 (fabs(sqz_f16_to_f32(a[b].s)) + fabs(sqz_f16_to_f32(a[b].d) * sum)) / 1024.0;
    }
    return slack;
}

/* ---------------------------------------------------------------- activation quantizers */

static void test_quantize_act(sqz_isa best) {
    const sqz_type acts[] = { SQZ_TYPE_Q8_0, SQZ_TYPE_Q8_1, SQZ_TYPE_Q8_K };
    for (int ai = 0; ai < 3; ai++) {
        const sqz_type act = acts[ai];
        const int qk = block_size(act);
        const int64_t n = (int64_t)qk * MAX_BLOCKS;
        const size_t bytes = sqz_type_row_size(act, n);
        float *x = malloc((size_t)n * 4);
        unsigned char *ref = malloc(bytes), *got = malloc(bytes);
        sqz_quantize_act_fn qref = sqz_quantize_act_get(act, SQZ_ISA_REF);
        CHECK(qref != NULL, "%s: reference activation quantizer exists", sqz_type_name(act));
        if (!qref) continue;
        for (int isa = 1; isa <= (int)best; isa++) {
            sqz_quantize_act_fn q = sqz_quantize_act_get(act, (sqz_isa)isa);
            int bad = 0, cases = 0;
            for (int rep = 0; rep < 200; rep++) {
                const int64_t len = (int64_t)qk * (1 + rep % MAX_BLOCKS);
                fill_x(x, len, qk);
                if (rep % 4 == 1) { /* ties: amax 127 -> d = 1 (or iscale = 1): x.5 values */
                    for (int64_t i = 0; i < len; i++) x[i] = (float)((int)(rnext() % 254) - 127) + 0.5f;
                    for (int64_t b = 0; b < len / qk; b++) x[b * qk + (rep % 7)] = rep % 8 == 1 ? 127 : -127;
                }
                if (rep % 4 == 2) /* +max and -max in one block: the first one decides */
                    for (int64_t b = 0; b < len / qk; b++) {
                        x[b * qk + rnext() % (uint64_t)qk] = 50;
                        x[b * qk + rnext() % (uint64_t)qk] = -50;
                    }
                memset(ref, 0xa5, bytes);
                memset(got, 0x5a, bytes);
                qref(x, ref, len);
                q(x, got, len);
                cases++;
                if (memcmp(ref, got, sqz_type_row_size(act, len)) != 0) bad++;
            }
            CHECK(bad == 0, "%s quantize_act %s == ref bytes (%d of %d vectors differ)",
                  sqz_type_name(act), sqz_isa_name((sqz_isa)isa), bad, cases);
        }
        /* the reference against the type's own reference quantizer (src/quant), when there */
        const sqz_type_traits *tr = sqz_type_get(act);
        if (tr->from_float) {
            int bad = 0;
            for (int rep = 0; rep < 50; rep++) {
                fill_x(x, n, qk);
                qref(x, ref, n);
                tr->from_float(x, got, n);
                if (memcmp(ref, got, bytes) != 0) bad++;
            }
            CHECK(bad == 0, "%s quantize_act ref == the type's from_float (%d of 50 differ)",
                  sqz_type_name(act), bad);
        } else {
            SKIP("%s: no from_float in the type table yet", sqz_type_name(act));
        }
        free(x);
        free(ref);
        free(got);
    }
}

/* ---------------------------------------------------------------- dot products */

static void test_vec_dot(const qtype *q, sqz_isa best) {
    const sqz_type t = q->t, act = sqz_act_type(t);
    const char *name = sqz_type_name(t);
    const int qk = block_size(t);
    const int64_t nmax = (int64_t)qk * MAX_BLOCKS;
    const sqz_type_traits *tr = sqz_type_get(t);
    sqz_vec_dot_q_fn ref = sqz_vec_dot_q_get(t, SQZ_ISA_REF);
    sqz_quantize_act_fn quant = sqz_quantize_act_get(act, SQZ_ISA_REF);
    CHECK(ref && quant && act != SQZ_TYPE_F32, "%s: reference vec_dot_q (activations %s)", name,
          sqz_type_name(act));
    if (!ref || !quant) return;
    float *x = malloc((size_t)nmax * 4);
    double worst_exact = 0, worst_tier[3] = { 0 }, worst_f32 = 0;
    int n_rows = 0, skipped_f32 = 0;
    sqz_dot_fn dotf[3] = { 0 };
    for (int isa = 0; isa <= (int)best; isa++) dotf[isa] = sqz_dot_get(t, (sqz_isa)isa);
    for (int nb = 1; nb <= MAX_BLOCKS; nb++) {
        const int64_t n = (int64_t)qk * nb;
        /* exactly sized, so that the sanitizers catch a kernel reading past the row */
        void *row = malloc(sqz_type_row_size(t, n)), *xq = malloc(sqz_type_row_size(act, n));
        for (int r = 0; r < ROWS_PER_LEN; r++, n_rows++) {
            if (r % 2 == 1 && tr->from_float) {
                for (int64_t i = 0; i < n; i++) x[i] = 0.05f * grand();
                tr->from_float(x, row, n);
            } else {
                fill_random_row(q, row, n);
            }
            fill_x(x, n, block_size(act));
            quant(x, xq, n);
            double mag;
            const double exact = dot_double(q->deq, act_deq(act), row, xq, n, &mag);
            const double tol = 1e-5 * mag + 1e-30 + q8_1_s_slack(t, row, xq, n);
            const float vref = ref(n, row, xq);
            const double e = fabs(vref - exact) / tol;
            if (e > worst_exact) worst_exact = e;
            for (int isa = 1; isa <= (int)best; isa++) {
                const float v = sqz_vec_dot_q_get(t, (sqz_isa)isa)(n, row, xq);
                const double et = fabs((double)v - vref) / (1e-5 * mag + 1e-30);
                if (et > worst_tier[isa] || v != v) worst_tier[isa] = v != v ? INFINITY : et;
            }
            /* the f32-x dot (dequantizing): against dequant(row) . x in double */
            if (dotf[0]) {
                float *wf = malloc((size_t)n * 4);
                q->deq(row, wf, n);
                double s = 0, m = 0;
                for (int64_t i = 0; i < n; i++) s += (double)wf[i] * x[i], m += fabs((double)wf[i] * x[i]);
                for (int isa = 0; isa <= (int)best; isa++) {
                    const double ef = fabs(dotf[isa](row, x, n) - s) / (1e-5 * m + 1e-30);
                    if (ef > worst_f32) worst_f32 = ef;
                }
                free(wf);
            } else {
                skipped_f32++;
            }
        }
        free(row);
        free(xq);
    }
    CHECK(worst_exact <= 1, "%s vec_dot_q ref == dequant(row) . dequant(xq) in double, %d rows "
          "(worst error %.3f of the tolerance 1e-5 sum|w a|)", name, n_rows, worst_exact);
    for (int isa = 1; isa <= (int)best; isa++)
        CHECK(worst_tier[isa] <= 1, "%s vec_dot_q %s == ref, %d rows (worst %.3f of 1e-5 sum|w a|)",
              name, sqz_isa_name((sqz_isa)isa), n_rows, worst_tier[isa]);
    /* the tiers' to_float (sgemm panels) are bit-identical to the dequantizer */
    for (int isa = 0; isa <= (int)best; isa++) {
        sqz_cvt_fn cvt = sqz_cvt_get(t, (sqz_isa)isa);
        int bad = 0, rows = 0;
        for (int nb = 1; nb <= MAX_BLOCKS && cvt; nb++) {
            const int64_t n = (int64_t)qk * nb;
            void *row = malloc(sqz_type_row_size(t, n));
            float *f0 = malloc((size_t)n * 4), *f1 = malloc((size_t)n * 4);
            for (int r = 0; r < 4; r++, rows++) {
                fill_random_row(q, row, n);
                q->deq(row, f0, n);
                memset(f1, 0xff, (size_t)n * 4);
                cvt(row, f1, n);
                if (memcmp(f0, f1, (size_t)n * 4) != 0) bad++;
            }
            free(row), free(f0), free(f1);
        }
        CHECK(cvt && bad == 0, "%s to_float %s bit-identical to the dequantizer (%d of %d rows differ)",
              name, sqz_isa_name((sqz_isa)isa), bad, rows);
    }
    if (skipped_f32)
        SKIP("%s f32-x dot: the type has no to_float in the type table yet", name);
    else
        CHECK(worst_f32 <= 1, "%s f32-x dot, every tier, == dequant(row) . x (worst %.3f of "
              "1e-5 sum|w x|)", name, worst_f32);
    free(x);
}

/* sqz_matvec and sqz_matmul (small T, quantized path) against reference dots of the
 * reference-quantized activations. */
static void test_matvec(const qtype *q) {
    const sqz_type t = q->t, act = sqz_act_type(t);
    const int qk = block_size(t);
    const int64_t N = 97, K = (int64_t)qk * (qk == 32 ? 24 : 3); /* N >= 64: threads split rows */
    const size_t rs = sqz_type_row_size(t, K), qrs = sqz_type_row_size(act, K);
    enum { T = 7 }; /* up to 7 tokens: above MATVEC_MAX_T, within QMATVEC_MAX_T */
    char *w = malloc(rs * (size_t)N), *xq = malloc(qrs * T);
    float *x = malloc(sizeof(float) * (size_t)K * T), *y = malloc(sizeof(float) * (size_t)N * T);
    double *yref = malloc(sizeof(double) * (size_t)N * T), *mag = malloc(sizeof(double) * (size_t)N * T);
    for (int64_t r = 0; r < N; r++) fill_random_row(q, w + (size_t)r * rs, K);
    for (int tt = 0; tt < T; tt++) {
        fill_x(x + (size_t)tt * K, K, block_size(act));
        sqz_quantize_act_get(act, SQZ_ISA_REF)(x + (size_t)tt * K, xq + (size_t)tt * qrs, K);
        for (int64_t r = 0; r < N; r++) {
            yref[(size_t)tt * N + r] = sqz_vec_dot_q_get(t, SQZ_ISA_REF)(K, w + (size_t)r * rs, xq + (size_t)tt * qrs);
            dot_double(q->deq, act_deq(act), w + (size_t)r * rs, xq + (size_t)tt * qrs, K, &mag[(size_t)tt * N + r]);
        }
    }
    const sqz_tensor tw = { t, K, N, w };
    for (int nt = 1; nt <= 2; nt++) {
        for (int Tn = 1; Tn <= T; Tn += Tn < 3 ? 1 : 4) { /* 1, 2, 3, 7 */
            memset(y, 0xff, sizeof(float) * (size_t)N * T); /* NaN: catches rows not written */
            if (Tn == 1) sqz_matvec(&tw, x, y, nt);
            else sqz_matmul(&tw, x, Tn, y, nt);
            double worst = 0;
            for (int64_t i = 0; i < N * Tn; i++) {
                const double e = fabs(y[i] - yref[i]) / (1e-5 * mag[i] + 1e-30);
                if (!(e <= worst)) worst = e != e ? INFINITY : e;
            }
            CHECK(worst <= 1, "%s %s T=%d threads=%d == ref vec_dot_q (worst %.3f of 1e-5 sum|w a|)",
                  sqz_type_name(t), Tn == 1 ? "matvec" : "matmul", Tn, nt, worst);
        }
    }
    free(w); free(xq); free(x); free(y); free(yref); free(mag);
}

/* Each tier's rows kernel (several rows per call) against the reference vec_dot_q row by row,
 * for every count of rows 1..9 (the 4-row groups and their remainders), on buffers sized
 * exactly so that the sanitizers catch an over-read; and sqz_matvec_rows on a sub-range. */
static void test_rows(const qtype *q, sqz_isa best) {
    const sqz_type t = q->t, act = sqz_act_type(t);
    const int qk = block_size(t);
    const int64_t K = (int64_t)qk * (qk == 32 ? 5 : 2);
    const size_t rs = sqz_type_row_size(t, K), qrs = sqz_type_row_size(act, K);
    enum { NR = 9 };
    float *x = malloc(sizeof(float) * (size_t)K), y[NR], yref[NR], y2[NR + 2];
    double mag[NR];
    void *xq = malloc(qrs);
    fill_x(x, K, block_size(act));
    sqz_quantize_act_get(act, SQZ_ISA_REF)(x, xq, K);
    int n_kernels = 0;
    for (int nr = 1; nr <= NR; nr++) {
        char *w = malloc(rs * (size_t)nr);
        for (int r = 0; r < nr; r++) {
            fill_random_row(q, w + (size_t)r * rs, K);
            yref[r] = sqz_vec_dot_q_get(t, SQZ_ISA_REF)(K, w + (size_t)r * rs, xq);
            dot_double(q->deq, act_deq(act), w + (size_t)r * rs, xq, K, &mag[r]);
        }
        for (int isa = 0; isa <= (int)best; isa++) {
            sqz_vec_dot_q_rows_fn rows = sqz_vec_dot_q_rows_get(t, (sqz_isa)isa);
            if (!rows) continue;
            n_kernels++;
            memset(y, 0xff, sizeof y);
            rows(K, w, rs, nr, xq, y);
            double worst = 0;
            for (int r = 0; r < nr; r++) {
                const double e = fabs(y[r] - yref[r]) / (1e-5 * mag[r] + 1e-30);
                if (!(e <= worst)) worst = e != e ? INFINITY : e;
            }
            CHECK(worst <= 1, "%s rows kernel %s, %d rows == ref (worst %.3f of 1e-5 sum|w a|)",
                  sqz_type_name(t), sqz_isa_name((sqz_isa)isa), nr, worst);
        }
        /* sqz_matvec_rows writes y[r0..r1) only */
        if (nr >= 3) {
            const sqz_tensor tw = { t, K, nr, w };
            for (int i = 0; i < nr + 2; i++) y2[i] = -7.0f;
            sqz_matvec_rows(&tw, x, xq, y2 + 1, 1, nr - 1);
            double worst = 0;
            for (int r = 1; r < nr - 1; r++) {
                const double e = fabs(y2[1 + r] - yref[r]) / (1e-5 * mag[r] + 1e-30);
                if (!(e <= worst)) worst = e != e ? INFINITY : e;
            }
            CHECK(worst <= 1 && y2[0] == -7.0f && y2[1] == -7.0f && y2[nr] == -7.0f && y2[nr + 1] == -7.0f,
                  "%s sqz_matvec_rows [1, %d) of %d rows: == ref and nothing else written", sqz_type_name(t),
                  nr - 1, nr);
        }
        free(w);
    }
    if (best == SQZ_ISA_AVX512 && (t == SQZ_TYPE_Q4_K || t == SQZ_TYPE_Q8_0 || t == SQZ_TYPE_Q6_K))
        CHECK(n_kernels > 0, "%s has a rows kernel on this AVX-512 machine", sqz_type_name(t));
    free(x);
    free(xq);
}

/* Each tier's four-token kernel against the reference, row by row and token by token (rows
 * 1..6, K a multiple of 128 so that every type's kernel takes it; outputs at a stride). */
static void test_tile4(const qtype *q, sqz_isa best) {
    const sqz_type t = q->t, act = sqz_act_type(t);
    const int64_t K = 512;
    const size_t rs = sqz_type_row_size(t, K), qrs = sqz_type_row_size(act, K);
    enum { NR = 6, LDY = 11 };
    float *x = malloc(sizeof(float) * (size_t)K), y[4 * LDY];
    char *xq = malloc(4 * qrs), *w = malloc(rs * NR);
    double yref[4][NR], mag[4][NR];
    for (int r = 0; r < NR; r++) fill_random_row(q, w + (size_t)r * rs, K);
    for (int tt = 0; tt < 4; tt++) {
        fill_x(x, K, block_size(act));
        sqz_quantize_act_get(act, SQZ_ISA_REF)(x, xq + tt * qrs, K);
        for (int r = 0; r < NR; r++) {
            yref[tt][r] = sqz_vec_dot_q_get(t, SQZ_ISA_REF)(K, w + (size_t)r * rs, xq + tt * qrs);
            dot_double(q->deq, act_deq(act), w + (size_t)r * rs, xq + tt * qrs, K, &mag[tt][r]);
        }
    }
    for (int isa = 0; isa <= (int)best; isa++) {
        sqz_vec_dot_q_tile4_fn tile = sqz_vec_dot_q_tile4_get(t, (sqz_isa)isa);
        if (!tile) continue;
        for (int nr = 1; nr <= NR; nr++) {
            for (int i = 0; i < 4 * LDY; i++) y[i] = -7.0f;
            const int rc = tile(K, w, rs, nr, xq, qrs, y, LDY);
            double worst = 0;
            int stray = 0;
            for (int tt = 0; tt < 4; tt++)
                for (int i = 0; i < LDY; i++) {
                    if (i >= nr) { stray += y[tt * LDY + i] != -7.0f; continue; }
                    const double e = fabs(y[tt * LDY + i] - yref[tt][i]) / (1e-5 * mag[tt][i] + 1e-30);
                    if (!(e <= worst)) worst = e != e ? INFINITY : e;
                }
            CHECK(rc == 0 && worst <= 1 && !stray, "%s tile4 %s, %d rows x 4 tokens == ref (worst %.3f "
                  "of 1e-5 sum|w a|, %d stray writes)", sqz_type_name(t), sqz_isa_name((sqz_isa)isa), nr,
                  worst, stray);
        }
    }
    free(x); free(xq); free(w);
}

int main(void) {
    const sqz_isa best = sqz_isa_best();
    printf("# best ISA: %s\n", sqz_isa_name(best));
    test_quantize_act(best);
    for (int i = 0; i < N_QTYPES; i++) {
        test_vec_dot(&QTYPES[i], best);
        test_matvec(&QTYPES[i]);
        test_rows(&QTYPES[i], best);
        test_tile4(&QTYPES[i], best);
    }
    return test_done();
}
