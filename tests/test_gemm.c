/* test_gemm.c - prefill's own AVX-512 panel product (kernels/gemm_avx512.c) against a plain
 * double-precision product, over the shapes that exercise its tails: token counts around its
 * 12- and 4-token tiles, panel widths that leave a partial 32-row strip or a half-empty vector,
 * and reduction lengths that are not multiples of 16; then sqz_matmul on f16 / q4_k weights
 * (dequantized panels through this kernel) against sqz_matmul_ref. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/x16.h"
#include "test.h"

static uint64_t rng = 42;

static void check_panel(int T, int nr, int64_t K) {
    float *x = malloc((size_t)T * K * sizeof *x), *w = malloc((size_t)nr * K * sizeof *w);
    float *y = malloc((size_t)T * (nr + 3) * sizeof *y), *wp = malloc((size_t)K * 32 * sizeof *wp);
    for (int64_t i = 0; i < T * K; i++) x[i] = test_frand(&rng);
    for (int64_t i = 0; i < nr * K; i++) w[i] = test_frand(&rng);
    const size_t ldy = (size_t)nr + 3; /* a wider y: the 3 extra columns must stay untouched */
    for (size_t i = 0; i < (size_t)T * ldy; i++) y[i] = 777.0f;
    sqz_sgemm_panel_avx512(T, nr, K, x, w, y, ldy, wp);
    double worst = 0;
    int outside = 0;
    for (int t = 0; t < T; t++) {
        for (int j = 0; j < nr; j++) {
            double want = 0;
            for (int64_t k = 0; k < K; k++) want += (double)x[t * K + k] * w[j * K + k];
            worst = fmax(worst, fabs(y[t * ldy + j] - want));
        }
        for (size_t j = (size_t)nr; j < ldy; j++) outside += y[t * ldy + j] != 777.0f;
    }
    CHECK(worst <= 1e-5 * K && !outside, "sgemm panel T=%d nr=%d K=%lld: max diff %.2g, %d written outside",
          T, nr, (long long)K, worst, outside);
    free(x);
    free(w);
    free(y);
    free(wp);
}

static void check_matmul(sqz_type type, int64_t N, int64_t K, int T) {
    const sqz_type_traits *tr = sqz_type_get(type);
    const size_t rs = sqz_type_row_size(type, K);
    char *data = malloc(rs * (size_t)N);
    float *row = malloc((size_t)K * sizeof *row), *x = malloc((size_t)T * K * sizeof *x);
    for (int64_t r = 0; r < N; r++) {
        for (int64_t k = 0; k < K; k++) row[k] = test_frand(&rng);
        uint16_t *h = (uint16_t *)(void *)(data + (size_t)r * rs);
        if (type == SQZ_TYPE_F16)
            for (int64_t k = 0; k < K; k++) h[k] = sqz_f32_to_f16(row[k]);
        else if (type == SQZ_TYPE_BF16)
            for (int64_t k = 0; k < K; k++) h[k] = sqz_f32_to_bf16(row[k]);
        else
            tr->from_float(row, data + (size_t)r * rs, K);
    }
    for (int64_t i = 0; i < T * K; i++) x[i] = test_frand(&rng);
    const sqz_tensor w = { type, K, N, data };
    float *y = malloc((size_t)T * N * sizeof *y), *yr = malloc((size_t)T * N * sizeof *yr);
    sqz_matmul(&w, x, T, y, 2);
    /* k-quants run integer tiles with the tokens quantized to Q8_K (kernels/x16.h): their
     * reference is ggml's quantized dot, token by token; the rest the f32 reference */
    const int q8k = sqz_x16_worth_it(type, N, K) && sqz_x16_type_of(type) != SQZ_TYPE_Q4_0X16 &&
                    sqz_x16_type_of(type) != SQZ_TYPE_Q8_0X16;
    if (q8k) {
        char *a = malloc(sqz_type_row_size(SQZ_TYPE_Q8_K, K));
        const sqz_vec_dot_q_fn vdq = sqz_vec_dot_q_get(type, SQZ_ISA_REF);
        for (int t = 0; t < T; t++) {
            sqz_quantize_act_get(SQZ_TYPE_Q8_K, SQZ_ISA_REF)(x + (size_t)t * K, a, K);
            for (int64_t r = 0; r < N; r++) yr[(size_t)t * N + r] = vdq(K, data + (size_t)r * rs, a);
        }
        free(a);
    } else {
        sqz_matmul_ref(&w, x, T, yr);
    }
    double worst = 0;
    for (int64_t i = 0; i < T * N; i++) worst = fmax(worst, fabs(y[i] - yr[i]));
    CHECK(worst <= 1e-5 * K, "sqz_matmul %s %lldx%lld T=%d == %s (max diff %.2g)", tr->name,
          (long long)N, (long long)K, T, q8k ? "ggml's quantized dot (Q8_K tokens)" : "reference", worst);
    free(data);
    free(row);
    free(x);
    free(y);
    free(yr);
}

int main(void) {
    if (sqz_isa_best() < SQZ_ISA_AVX512) {
        SKIP("no AVX-512 on this CPU: prefill uses OpenBLAS's sgemm (test_kernels covers it)");
        return test_done();
    }
    const int Ts[] = { 1, 3, 4, 5, 12, 13, 29 };
    const int NRs[] = { 1, 16, 17, 32, 45, 64 };
    const int64_t Ks[] = { 16, 100, 512 };
    for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
        for (size_t b = 0; b < sizeof NRs / sizeof *NRs; b++)
            for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) check_panel(Ts[a], NRs[b], Ks[c]);
    check_matmul(SQZ_TYPE_F16, 200, 256, 40);
    check_matmul(SQZ_TYPE_BF16, 64, 512, 33);
    check_matmul(SQZ_TYPE_Q4_K, 96, 512, 64);
    check_matmul(SQZ_TYPE_Q5_0, 96, 512, 64); /* f32 panels */
    return test_done();
}
