/* test_x16.c - Q4_0 / Q8_0 matrices repacked in 16-row groups (formats/x16.h, kernels/x16*.c).
 *
 * Independent yardsticks: the packing is checked by unpacking every row back to the original
 * bytes; the packed products against ggml's reference dot products of the original rows
 * (qdot_ref.c, which test_qkernels checks against llama.cpp's formulas) with Q8_0 activations
 * from the reference quantizer; the AVX-512 tier against the reference tier, decode's row ranges
 * (including ones that cut a group) and prefill's tokens (every tile width 1..8 and more).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/blocks.h"
#include "formats/x16.h"
#include "kernels/kernels.h"
#include "kernels/x16.h"
#include "test.h"

static uint64_t rng = 0x1234567;

static void fill_x(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = test_frand(&rng) + (i % 7 == 0 ? 3.0f : 0.0f);
}

/* rows x cols of type t from random floats (its reference quantizer) */
static void *random_matrix(sqz_type t, int64_t rows, int64_t cols) {
    const size_t rs = sqz_type_row_size(t, cols);
    char *m = malloc(rs * (size_t)rows);
    float *x = malloc((size_t)cols * sizeof *x);
    for (int64_t r = 0; r < rows; r++) {
        fill_x(x, cols);
        sqz_type_get(t)->from_float(x, m + (size_t)r * rs, cols);
    }
    free(x);
    return m;
}

static void test_pack_roundtrip(sqz_type t, int64_t rows, int64_t cols) {
    const size_t rs = sqz_type_row_size(t, cols);
    char *m = random_matrix(t, rows, cols);
    char *p = malloc(rs * (size_t)rows), *row = malloc(rs);
    sqz_x16_pack(t, m, rows, cols, p);
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        sqz_x16_unpack_row(sqz_x16_type_of(t), p, r, cols, row);
        bad += memcmp(row, m + (size_t)r * rs, rs) != 0;
    }
    CHECK(bad == 0, "%s %lldx%lld: every row unpacks to its original bytes (%d differ)", sqz_type_name(t),
          (long long)rows, (long long)cols, bad);
    free(m);
    free(p);
    free(row);
}

static void test_act_quantize(void) {
    const int64_t n = 32 * 9;
    float x[32 * 9];
    fill_x(x, n);
    block_q8_0 want[9];
    sqz_quantize_act_get(SQZ_TYPE_Q8_0, SQZ_ISA_REF)(x, want, n);
    block_q8_0s got[9];
    sqz_x16_act_quantize(x, got, n);
    int bad = 0;
    for (int b = 0; b < 9; b++) {
        int s = 0;
        for (int k = 0; k < 32; k++) {
            bad += got[b].qs[k] != want[b].qs[k];
            s += want[b].qs[k];
        }
        bad += got[b].d != sqz_f16_to_f32(want[b].d) || got[b].s8 != 8 * s || got[b].s128 != 128 * s;
    }
    CHECK(bad == 0, "q8_0s activations: ggml's Q8_0 bytes, scale and 8x / 128x sums (%d differ)", bad);
}

/* the packed products of one matrix against ggml's reference dot of the original rows */
static void test_products(sqz_type t, int64_t rows, int64_t cols, sqz_isa best) {
    const sqz_type pt = sqz_x16_type_of(t);
    const size_t rs = sqz_type_row_size(t, cols);
    const int64_t nb = cols / 32;
    char *m = random_matrix(t, rows, cols), *p = malloc(rs * (size_t)rows);
    sqz_x16_pack(t, m, rows, cols, p);
    enum { T = 11 };
    float *x = malloc((size_t)T * cols * sizeof *x);
    fill_x(x, T * cols);
    block_q8_0 *a8 = malloc((size_t)T * nb * sizeof *a8);
    block_q8_0s *as = malloc((size_t)T * nb * sizeof *as);
    for (int k = 0; k < T; k++) {
        sqz_quantize_act_get(SQZ_TYPE_Q8_0, SQZ_ISA_REF)(x + k * cols, a8 + k * nb, cols);
        sqz_x16_act_quantize(x + k * cols, as + k * nb, cols);
    }
    float *want = malloc((size_t)T * rows * sizeof *want), *got = malloc((size_t)T * rows * sizeof *got);
    const sqz_vec_dot_q_fn vdq = sqz_vec_dot_q_get(t, SQZ_ISA_REF);
    for (int k = 0; k < T; k++)
        for (int64_t r = 0; r < rows; r++) want[k * rows + r] = vdq(cols, m + (size_t)r * rs, a8 + k * nb);
    /* |row| |x| bound for the tolerance: the sums are exact integers, only f32 order differs */
    const double tol = 2e-5 * sqrt((double)cols) * 8;

    sqz_x16_matvec_ref(pt, p, cols, as, got, 0, rows);
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) worst = fmax(worst, fabs(got[r] - want[r]));
    CHECK(worst <= tol, "%s %lldx%lld: reference packed rows == ggml's reference dot (max diff %.2g)",
          sqz_type_name(pt), (long long)rows, (long long)cols, worst);

    if (best < SQZ_ISA_AVX512) {
        SKIP("%s: no AVX-512 VNNI on this CPU", sqz_type_name(pt));
    } else {
        /* decode's row ranges, one that cuts groups at both ends: rows outside stay untouched */
        const int64_t ranges[][2] = { { 0, rows }, { 5, rows - 3 }, { 16, 32 }, { rows - 1, rows } };
        for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
            const int64_t r0 = ranges[i][0], r1 = ranges[i][1];
            for (int64_t r = 0; r < rows; r++) got[r] = -12345.0f;
            sqz_x16_matvec_avx512(pt, p, cols, as, got, r0, r1);
            double w = 0;
            int outside = 0;
            for (int64_t r = 0; r < rows; r++) {
                if (r >= r0 && r < r1) w = fmax(w, fabs(got[r] - want[r]));
                else outside += got[r] != -12345.0f;
            }
            CHECK(w <= tol && !outside, "%s %lldx%lld avx512 rows [%lld, %lld): max diff %.2g, %d written outside",
                  sqz_type_name(pt), (long long)rows, (long long)cols, (long long)r0, (long long)r1, w, outside);
        }
        /* prefill: T tokens (a tile of 8 and a tail of 3), all groups */
        for (int nt = 1; nt <= T; nt += (nt < 9 ? 1 : 2)) {
            memset(got, 0, (size_t)T * rows * sizeof *got);
            sqz_x16_gemm_avx512(pt, p, cols, 0, rows / 16, as, nt, got, (size_t)rows);
            double w = 0;
            for (int k = 0; k < nt; k++)
                for (int64_t r = 0; r < rows; r++) w = fmax(w, fabs(got[k * rows + r] - want[k * rows + r]));
            CHECK(w <= tol, "%s %lldx%lld avx512 gemm of %d tokens: max diff %.2g", sqz_type_name(pt),
                  (long long)rows, (long long)cols, nt, w);
        }
    }

    /* through sqz_matmul: the packed tensor against the original one (its own quantized path) */
    const sqz_tensor wt = { t, cols, rows, m }, wp = { pt, cols, rows, p };
    float *y0 = malloc((size_t)T * rows * sizeof *y0), *y1 = malloc((size_t)T * rows * sizeof *y1);
    const int Ts[] = { 1, 3, T };
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
        sqz_matmul(&wt, x, Ts[i], y0, 2);
        sqz_matmul(&wp, x, Ts[i], y1, 2);
        double w = 0;
        for (int64_t j = 0; j < (int64_t)Ts[i] * rows; j++) w = fmax(w, fabs(y1[j] - y0[j]));
        CHECK(w <= tol, "%s %lldx%lld sqz_matmul T=%d packed == unpacked (max diff %.2g)", sqz_type_name(pt),
              (long long)rows, (long long)cols, Ts[i], w);
    }
    free(y0);
    free(y1);
    free(m);
    free(p);
    free(x);
    free(a8);
    free(as);
    free(want);
    free(got);
}

/* the packed k-quants (Q2_K ... Q6_K, IQ4_XS): every group back to floats == the original rows' to_float; the packed rows
 * (reference and AVX-512) against ggml's reference Q4_K dot with Q8_K activations; sqz_matmul
 * of the packed tensor against the original's (T <= 4: the same quantized arithmetic; more
 * tokens: Q4_K and Q5_K's integer tiles against ggml's reference dot token by token (Q8_K
 * activations), the other types' f32 panels against the exact f32 product) */
static void test_k(sqz_type t, int64_t rows, int64_t cols, sqz_isa best) {
    const sqz_type pt = sqz_x16_type_of(t);
    const char *pn = sqz_type_name(pt);
    const size_t rs = sqz_type_row_size(t, cols);
    char *m = random_matrix(t, rows, cols);
    char *p = malloc(sqz_x16_bytes(pt, rows, cols));
    sqz_x16_pack(t, m, rows, cols, p);
    float *f = malloc((size_t)16 * cols * sizeof *f), *ref = malloc((size_t)cols * sizeof *ref);
    int bad = 0;
    for (int64_t g = 0; g < rows / 16; g++) {
        sqz_x16_group_to_float(pt, p, g, cols, f);
        for (int i = 0; i < 16; i++) {
            sqz_type_get(t)->to_float(m + (size_t)(g * 16 + i) * rs, ref, cols);
            bad += memcmp(ref, f + (size_t)i * cols, (size_t)cols * sizeof *ref) != 0;
        }
    }
    CHECK(bad == 0, "%s %lldx%lld: every packed row as floats == the type's to_float (%d differ)",
          pn, (long long)rows, (long long)cols, bad);

    enum { T = 13 }; /* prefill's tiles take 8 tokens, then 5 */
    const size_t qrs = sqz_type_row_size(SQZ_TYPE_Q8_K, cols);
    float *x = malloc((size_t)T * cols * sizeof *x);
    fill_x(x, T * cols);
    char *a = malloc(qrs);
    sqz_quantize_act_get(SQZ_TYPE_Q8_K, SQZ_ISA_REF)(x, a, cols);
    float *want = malloc((size_t)T * rows * sizeof *want), *got = malloc((size_t)T * rows * sizeof *got);
    const sqz_vec_dot_q_fn vdq = sqz_vec_dot_q_get(t, SQZ_ISA_REF);
    for (int64_t r = 0; r < rows; r++) want[r] = vdq(cols, m + (size_t)r * rs, a);
    const double tol = 1e-4 * sqrt((double)cols);
    sqz_x16k_matvec_ref(pt, p, cols, a, got, 0, rows);
    double w = 0;
    for (int64_t r = 0; r < rows; r++) w = fmax(w, fabs(got[r] - want[r]));
    CHECK(w <= tol, "%s %lldx%lld: reference packed rows == ggml's reference dot (max diff %.2g)",
          pn, (long long)rows, (long long)cols, w);
    if (best < SQZ_ISA_AVX512) {
        SKIP("%s: no AVX-512 VNNI on this CPU", pn);
    } else {
        const int64_t ranges[][2] = { { 0, rows }, { 3, rows - 5 }, { rows - 1, rows } };
        for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
            const int64_t r0 = ranges[i][0], r1 = ranges[i][1];
            for (int64_t r = 0; r < rows; r++) got[r] = -12345.0f;
            sqz_x16k_matvec_avx512(pt, p, cols, a, got, r0, r1);
            double e = 0;
            int outside = 0;
            for (int64_t r = 0; r < rows; r++) {
                if (r >= r0 && r < r1) e = fmax(e, fabs(got[r] - want[r]));
                else outside += got[r] != -12345.0f;
            }
            CHECK(e <= tol && !outside, "%s %lldx%lld avx512 rows [%lld, %lld): max diff %.2g, %d written outside",
                  pn, (long long)rows, (long long)cols, (long long)r0, (long long)r1, e, outside);
        }
    }
    const sqz_tensor wt = { t, cols, rows, m }, wp = { pt, cols, rows, p };
    const int Ts[] = { 1, 4, T };
    const int tiles = best == SQZ_ISA_AVX512; /* every packed k-quant's prefill runs integer tiles */
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
        if (Ts[i] <= 4) sqz_matmul(&wt, x, Ts[i], want, 2);
        else if (tiles)
            for (int k = 0; k < Ts[i]; k++) {
                sqz_quantize_act_get(SQZ_TYPE_Q8_K, SQZ_ISA_REF)(x + (size_t)k * cols, a, cols);
                for (int64_t r = 0; r < rows; r++) want[(size_t)k * rows + r] = vdq(cols, m + (size_t)r * rs, a);
            }
        else sqz_matmul_ref(&wt, x, Ts[i], want);
        sqz_matmul(&wp, x, Ts[i], got, 2);
        double e = 0;
        for (int64_t j = 0; j < (int64_t)Ts[i] * rows; j++) e = fmax(e, fabs(got[j] - want[j]));
        CHECK(e <= tol, "%s %lldx%lld sqz_matmul T=%d packed == %s (max diff %.2g)", pn, (long long)rows,
              (long long)cols, Ts[i],
              Ts[i] <= 4 ? "unpacked" : tiles ? "ggml's reference dot token by token" : "the f32 reference", e);
    }
    if (tiles) { /* the unpacked matrix's prefill: packed on the fly, the same bits as the packed one */
        float *un = malloc((size_t)T * rows * sizeof *un);
        for (int64_t j = 0; j < (int64_t)T * rows; j++) un[j] = -12345.0f;
        sqz_matmul(&wt, x, T, un, 2);
        CHECK(memcmp(un, got, (size_t)T * rows * sizeof *un) == 0,
              "%s %lldx%lld sqz_matmul T=%d unpacked == packed bit for bit", sqz_type_name(t), (long long)rows,
              (long long)cols, T);
        free(un);
    }
    free(m);
    free(p);
    free(f);
    free(ref);
    free(x);
    free(a);
    free(want);
    free(got);
}

int main(void) {
    const sqz_isa best = sqz_isa_best();
    printf("# best ISA: %s\n", sqz_isa_name(best));
    test_act_quantize();
    const sqz_type types[] = { SQZ_TYPE_Q4_0, SQZ_TYPE_Q8_0 };
    for (int i = 0; i < 2; i++) {
        test_pack_roundtrip(types[i], 48, 96);
        test_pack_roundtrip(types[i], 16, 2048);
        test_products(types[i], 48, 96, best);  /* 3 blocks: the 2-block loop's tail */
        test_products(types[i], 64, 512, best);
        test_products(types[i], 32, 5632, best); /* TinyLlama's down projection width */
    }
    test_k(SQZ_TYPE_Q4_K, 32, 256, best);
    test_k(SQZ_TYPE_Q4_K, 80, 2048, best);
    test_k(SQZ_TYPE_Q2_K, 32, 256, best);
    test_k(SQZ_TYPE_Q2_K, 48, 1536, best);
    test_k(SQZ_TYPE_IQ4_XS, 32, 256, best);
    test_k(SQZ_TYPE_IQ4_XS, 48, 1536, best);
    test_k(SQZ_TYPE_Q3_K, 32, 256, best);
    test_k(SQZ_TYPE_Q3_K, 48, 1536, best);
    test_k(SQZ_TYPE_Q5_K, 32, 256, best);
    test_k(SQZ_TYPE_Q5_K, 48, 1536, best);
    test_k(SQZ_TYPE_Q6_K, 32, 256, best);
    test_k(SQZ_TYPE_Q6_K, 48, 1536, best);
    CHECK(sqz_x16_worth_it(SQZ_TYPE_Q4_0, 48, 64) == (best == SQZ_ISA_AVX512) &&
              !sqz_x16_worth_it(SQZ_TYPE_Q4_0, 40, 64) && !sqz_x16_worth_it(SQZ_TYPE_Q4_K, 48, 128) && !sqz_x16_worth_it(SQZ_TYPE_Q5_0, 48, 256),
          "packing only Q4_0 / Q8_0 / Q2_K ... Q6_K / IQ4_XS with rows a multiple of 16, on AVX-512");
    return test_done();
}
