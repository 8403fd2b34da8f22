/* x16.c - the packed Q4_0 / Q8_0 matrices' whole-matrix products (sqz_matrix_ops): activation
 * quantization, decode's rows and prefill's product, dispatched to x16_avx512.c or x16_ref.c. */
#include "kernels/x16.h"

#include <omp.h>
#include <stdlib.h>

#include "formats/blocks.h"

int sqz_x16_worth_it(sqz_type t, int64_t rows, int64_t cols) {
    return sqz_x16_type_of(t) != SQZ_TYPE_F32 && rows % X16_ROWS == 0 &&
           cols % (sqz_type_get(t)->block_size) == 0 && sqz_isa_best() == SQZ_ISA_AVX512;
}

size_t sqz_x16_act_bytes(int64_t n) { return (size_t)(n / 32) * sizeof(block_q8_0s); }

void sqz_x16_act_quantize(const float *x, void *xq, int64_t n) {
    /* the same bytes as ggml's Q8_0 (the fastest tier's quantizer), then widened */
    const sqz_quantize_act_fn q8 = sqz_quantize_act_get(SQZ_TYPE_Q8_0, sqz_isa_best());
    block_q8_0s *out = xq;
    for (int64_t b = 0; b < n / 32; b++) {
        block_q8_0 blk;
        q8(x + b * 32, &blk, 32);
        int32_t s = 0;
        for (int k = 0; k < 32; k++) {
            out[b].qs[k] = blk.qs[k];
            s += blk.qs[k];
        }
        out[b].d = sqz_f16_to_f32(blk.d);
        out[b].s8 = 8 * s;
        out[b].s128 = 128 * s;
        out[b].pad = 0;
    }
}

static void x16_matvec_rows(const sqz_tensor *w, const void *xq, float *y, int64_t r0, int64_t r1,
                            sqz_isa isa) {
    if (isa == SQZ_ISA_AVX512) sqz_x16_matvec_avx512(w->type, w->data, w->cols, xq, y, r0, r1);
    else sqz_x16_matvec_ref(w->type, w->data, w->cols, xq, y, r0, r1);
}

static int x16_matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads) {
    const int64_t K = w->cols, N = w->rows, nb = K / 32;
    block_q8_0s *a = malloc(sqz_x16_act_bytes(K) * (size_t)T);
    if (!a) return -1;
    const sqz_isa isa = sqz_isa_best();
    const int64_t groups = N / X16_ROWS;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1 && T * N >= 4096)
    {
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++) sqz_x16_act_quantize(x + (size_t)t * K, a + (size_t)t * nb, K);
        /* groups in chunks of 4 (64 rows): enough work per chunk, and the chunks even out */
#pragma omp for schedule(dynamic, 1)
        for (int64_t g = 0; g < groups; g += 4) {
            const int64_t g1 = g + 4 < groups ? g + 4 : groups;
            if (isa == SQZ_ISA_AVX512 && T == 1) { /* a matvec: the streaming kernel */
                sqz_x16_matvec_avx512(w->type, w->data, K, a, y, g * X16_ROWS, g1 * X16_ROWS);
            } else if (isa == SQZ_ISA_AVX512) {
                sqz_x16_gemm_avx512(w->type, w->data, K, g, g1, a, T, y, (size_t)N);
            } else {
                for (int t = 0; t < T; t++)
                    sqz_x16_matvec_ref(w->type, w->data, K, a + (size_t)t * nb, y + (size_t)t * N,
                                       g * X16_ROWS, g1 * X16_ROWS);
            }
        }
    }
    free(a);
    return 0;
}

/* one thread, the reference rows for every token */
static void x16_matmul_ref(const sqz_tensor *w, const float *x, int T, float *y) {
    const int64_t K = w->cols, N = w->rows;
    block_q8_0s *a = malloc(sqz_x16_act_bytes(K));
    if (!a) return;
    for (int t = 0; t < T; t++) {
        sqz_x16_act_quantize(x + (size_t)t * K, a, K);
        sqz_x16_matvec_ref(w->type, w->data, K, a, y + (size_t)t * N, 0, N);
    }
    free(a);
}

const sqz_matrix_ops sqz_x16_matrix_ops = {
    .act_bytes = sqz_x16_act_bytes,
    .act_quantize = sqz_x16_act_quantize,
    .matvec_rows = x16_matvec_rows,
    .matmul = x16_matmul,
    .matmul_ref = x16_matmul_ref,
    .rows_in_place = 1, /* rows [r0, r1) exactly, whatever the groups */
};

/* ---- the packed k-quants: Q8_K activations; decode's rows through the packed kernel; prefill
 * through their integer tiles (sqz_x16k_gemm_avx512: the tokens quantized to Q8_K once, as
 * decode does and llama.cpp's prefill does, each sub-block's values unpacked once for up to 8
 * tokens). Why the tiles: on AMD Zen 4 the f32 panels (16-row groups unpacked to floats, the
 * AVX-512 panel product) ran a 1.1B Q4_K model's prefill at 87 tokens/s, Q6_K's at 42, Q3_K's
 * at 41 (Q8_0's packed tiles: 260). */

static size_t x16k_act_bytes(int64_t n) { return sqz_type_row_size(SQZ_TYPE_Q8_K, n); }

static void x16k_act_quantize(const float *x, void *xq, int64_t n) {
    sqz_quantize_act_get(SQZ_TYPE_Q8_K, sqz_isa_best())(x, xq, n);
}

static void x16k_matvec_rows(const sqz_tensor *w, const void *xq, float *y, int64_t r0, int64_t r1,
                             sqz_isa isa) {
    if (isa == SQZ_ISA_AVX512) sqz_x16k_matvec_avx512(w->type, w->data, w->cols, xq, y, r0, r1);
    else sqz_x16k_matvec_ref(w->type, w->data, w->cols, xq, y, r0, r1);
}

enum { K_PANEL_GROUPS = 4, K_MATVEC_MAX_T = SQZ_X16K_MATVEC_MAX_T };

/* The integer tiles (x16_avx512.c) over every row group, K_PANEL_GROUPS groups a task. With
 * `unpacked`, w holds plain k-quant rows and each task first packs its groups into the thread's
 * scratch (search, GPTQ and the probes then compute as the packed file will). -1: the caller
 * runs the reference. */
static int x16k_tiles(const sqz_tensor *w, const float *x, int T, float *y, int n_threads, int unpacked) {
    const int64_t K = w->cols, N = w->rows, groups = N / X16_ROWS;
    const sqz_type pt = unpacked ? sqz_x16_type_of(w->type) : w->type;
    const size_t qrs = x16k_act_bytes(K), rs = sqz_type_row_size(w->type, K);
    char *a = malloc(qrs * (size_t)T);
    if (!a) return -1;
    int failed = 0;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1) reduction(| : failed)
    {
        char *packed = unpacked ? malloc(sqz_x16_bytes(pt, (int64_t)K_PANEL_GROUPS * X16_ROWS, K)) : NULL;
        if (unpacked && !packed) failed = 1;
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++) x16k_act_quantize(x + (size_t)t * K, a + (size_t)t * qrs, K);
#pragma omp for schedule(dynamic, 1)
        for (int64_t g = 0; g < groups; g += K_PANEL_GROUPS) {
            const int64_t ng = g + K_PANEL_GROUPS < groups ? K_PANEL_GROUPS : groups - g;
            if (failed) continue;
            if (!unpacked) {
                failed |= sqz_x16k_gemm_avx512(pt, w->data, K, g, g + ng, a, T, y, (size_t)N) != 0;
                continue;
            }
            sqz_x16_pack(w->type, (const char *)w->data + (size_t)(g * X16_ROWS) * rs, ng * X16_ROWS, K, packed);
            failed |= sqz_x16k_gemm_avx512(pt, packed, K, 0, ng, a, T, y + g * X16_ROWS, (size_t)N) != 0;
        }
        free(packed);
    }
    free(a);
    return failed ? -1 : 0;
}

static int x16k_matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads) {
    const int64_t K = w->cols, N = w->rows, groups = N / X16_ROWS;
    const sqz_isa isa = sqz_isa_best();
    if (T <= K_MATVEC_MAX_T || isa != SQZ_ISA_AVX512) { /* a few tokens: the packed rows */
        const size_t qrs = x16k_act_bytes(K);
        char *a = malloc(qrs * (size_t)T);
        if (!a) return -1;
        for (int t = 0; t < T; t++) x16k_act_quantize(x + (size_t)t * K, a + (size_t)t * qrs, K);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1 && N >= 64)
        for (int64_t g = 0; g < groups; g++)
            for (int t = 0; t < T; t++)
                x16k_matvec_rows(w, a + (size_t)t * qrs, y + (size_t)t * N, g * X16_ROWS, (g + 1) * X16_ROWS, isa);
        free(a);
        return 0;
    }
    return x16k_tiles(w, x, T, y, n_threads, 0);
}

int sqz_x16k_matmul_unpacked(const sqz_tensor *w, const float *x, int T, float *y, int n_threads) {
    const sqz_type pt = sqz_x16_type_of(w->type);
    if (T <= K_MATVEC_MAX_T || pt == SQZ_TYPE_F32 || pt == SQZ_TYPE_Q4_0X16 || pt == SQZ_TYPE_Q8_0X16 ||
        !sqz_x16_worth_it(w->type, w->rows, w->cols))
        return -1;
    return x16k_tiles(w, x, T, y, n_threads, 1);
}

/* one thread, the reference rows for every token */
static void x16k_matmul_ref(const sqz_tensor *w, const float *x, int T, float *y) {
    const int64_t K = w->cols, N = w->rows;
    void *a = malloc(x16k_act_bytes(K));
    if (!a) return;
    for (int t = 0; t < T; t++) {
        sqz_quantize_act_get(SQZ_TYPE_Q8_K, SQZ_ISA_REF)(x + (size_t)t * K, a, K);
        sqz_x16k_matvec_ref(w->type, w->data, K, a, y + (size_t)t * N, 0, N);
    }
    free(a);
}

const sqz_matrix_ops sqz_x16k_matrix_ops = {
    .act_bytes = x16k_act_bytes,
    .act_quantize = x16k_act_quantize,
    .matvec_rows = x16k_matvec_rows,
    .matmul = x16k_matmul,
    .matmul_ref = x16k_matmul_ref,
    .rows_in_place = 1,
};
