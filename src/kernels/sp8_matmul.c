/* sp8_matmul.c - products with a sparse int8 matrix (SQZ_TYPE_SP8, kernels/sp8.h): the run-time
 * choice of tier, the threaded matrix-vector product, and the whole-matrix operations
 * (kernels.h: sqz_matrix_ops) through which matmul.c and the session run it. Decode and small
 * batches (T <= QMATVEC_MAX_T) quantize each token to Q8_0 once and stream the matrix once per
 * token; larger batches unpack groups of rows to packed Q8_0 and run its prefill kernel
 * (matmul_x16, AVX-512), or panels of rows to f32 (vpexpandb where the CPU has it) multiplied
 * by OpenBLAS's sgemm, as matmul.c does. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "formats/blocks.h"

#include "formats/x16.h"
#include "kernels/sp8.h"
#include "kernels/x16.h"

/* Up to QMATVEC_MAX_T tokens each streams the whole matrix through the quantized kernel; the
 * unpacked panels pay from a few tokens on (measured on sqz-llama-26m: 32-token batches through
 * the quantized kernel ran prefill at decode's speed). */
enum { PANEL = 64, QMATVEC_MAX_T = 4 };

int sqz_sp8_has_vbmi2(void) {
    return sqz_isa_best() == SQZ_ISA_AVX512 && __builtin_cpu_supports("avx512vbmi2");
}

sqz_sp8_matvec_fn sqz_sp8_matvec_get(sqz_isa isa) {
    if (isa >= SQZ_ISA_AVX512 && sqz_sp8_has_vbmi2()) return sqz_sp8_matvec_vbmi2;
    return isa >= SQZ_ISA_AVX2 && sqz_isa_best() >= SQZ_ISA_AVX2 ? sqz_sp8_matvec_avx2 : sqz_sp8_matvec_ref;
}

size_t sqz_sp8_act_bytes(int64_t cols) {
    const int64_t nb = cols / SQZ_SP8_BLOCK;
    return (size_t)(sqz_sp8_act_qs_at(nb) + 68 * nb);
}

void sqz_sp8_act_finish_ref(void *xq, int64_t cols) {
    const int64_t nb = cols / SQZ_SP8_BLOCK;
    const block_q8_0 *a = xq;
    int8_t *qs = sqz_sp8_act_qs(xq, nb);
    float *d = sqz_sp8_act_d(xq, nb);
    int32_t *corr = sqz_sp8_act_corr(xq, nb);
    for (int64_t b = 0; b < nb; b++) {
        memcpy(qs + b * SQZ_SP8_BLOCK, a[b].qs, SQZ_SP8_BLOCK);
        d[b] = sqz_f16_to_f32(a[b].d);
        for (int l = 0; l < 8; l++)
            corr[b * 8 + l] = -128 * (a[b].qs[4 * l] + a[b].qs[4 * l + 1] + a[b].qs[4 * l + 2] + a[b].qs[4 * l + 3]);
    }
}

void sqz_sp8_act_quantize(const float *x, void *xq, int64_t cols) {
    sqz_quantize_act_get(SQZ_TYPE_Q8_0, sqz_isa_best())(x, xq, cols);
    if (sqz_sp8_has_vbmi2()) sqz_sp8_act_finish_vbmi2(xq, cols);
    else sqz_sp8_act_finish_ref(xq, cols);
}

void sqz_sp8_matvec(const sqz_sp8_tensor *m, int64_t rows, int64_t cols, const float *x, void *xq, float *y,
                    int n_threads) {
    const sqz_isa isa = sqz_isa_best();
    sqz_sp8_act_quantize(x, xq, cols);
    const sqz_sp8_matvec_fn f = sqz_sp8_matvec_get(isa);
    if (n_threads <= 1 || rows < 64) {
        f(m, cols, xq, y, 0, rows);
        return;
    }
#pragma omp parallel num_threads(n_threads)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        f(m, cols, xq, y, rows * t / nt, rows * (t + 1) / nt);
    }
}

static size_t act_bytes(int64_t n) { return sqz_sp8_act_bytes(n); }

static void act_quantize(const float *x, void *xq, int64_t n) { sqz_sp8_act_quantize(x, xq, n); }

static void matvec_rows(const sqz_tensor *w, const void *xq, float *y, int64_t r0, int64_t r1, sqz_isa isa) {
    sqz_sp8_matvec_get(isa)(w->data, w->cols, xq, y, r0, r1);
}

/* Prefill (T > QMATVEC_MAX_T) on the packed Q8_0 kernels (kernels/x16.h), where the CPU runs
 * AVX-512 and rows come in 16s: each chunk of G groups of 16 rows is unpacked to Q8_0 rows
 * (exactly the same weights: sqz_sp8_unpack_row_q8_0), repacked as Q8_0X16 in a per-thread
 * scratch and multiplied with all T tokens (quantized once) by sqz_x16_gemm_avx512, as a Q8_0
 * matrix's prefill runs. Why: the f32 panels ran sgemm's rate (1.1B shape, 70 % sparse, 2
 * threads: 95 tokens/s against Q8_0's 255); Q8_0's plain four-token tiles were slower still
 * (77). Returns -1 (nothing done) where it does not apply or memory is short. */
static int matmul_x16(const sqz_sp8_tensor *m, int64_t N, int64_t K, const float *x, int T, float *y,
                      int n_threads) {
    enum { G = 4 };
    if (sqz_isa_best() != SQZ_ISA_AVX512 || N % X16_ROWS) return -1;
    const int64_t nb = K / SQZ_SP8_BLOCK, groups = N / X16_ROWS;
    const size_t rs = sqz_type_row_size(SQZ_TYPE_Q8_0, K), pbytes = sqz_x16_bytes(SQZ_TYPE_Q8_0X16, G * X16_ROWS, K);
    block_q8_0s *a = malloc(sqz_x16_act_bytes(K) * (size_t)T);
    if (!a) return -1;
    const int vbmi2 = sqz_sp8_has_vbmi2();
    int failed = 0;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1) reduction(| : failed)
    {
        char *rows = malloc(rs * G * X16_ROWS), *packed = malloc(pbytes);
        failed = !rows || !packed;
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++) sqz_x16_act_quantize(x + (size_t)t * K, a + (size_t)t * nb, K);
#pragma omp for schedule(dynamic, 1)
        for (int64_t g = 0; g < groups; g += G) {
            if (failed) continue;
            const int64_t ng = groups - g < G ? groups - g : G, r0 = g * X16_ROWS;
            for (int64_t r = 0; r < ng * X16_ROWS; r++) {
                const uint8_t *src = m->data + m->row_off[r0 + r];
                if (vbmi2) sqz_sp8_unpack_row_q8_0_vbmi2(src, K, rows + (size_t)r * rs);
                else sqz_sp8_unpack_row_q8_0(src, K, rows + (size_t)r * rs);
            }
            sqz_x16_pack(SQZ_TYPE_Q8_0, rows, ng * X16_ROWS, K, packed);
            sqz_x16_gemm_avx512(SQZ_TYPE_Q8_0X16, packed, K, 0, ng, a, T, y + r0, (size_t)N);
        }
        free(rows);
        free(packed);
    }
    free(a);
    return failed ? -1 : 0;
}

static int matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads) {
    const sqz_sp8_tensor *m = w->data;
    const int64_t N = w->rows, K = w->cols;
    if (T <= QMATVEC_MAX_T) {
        const size_t qrs = act_bytes(K);
        char *xq = malloc(qrs * (size_t)T);
        if (!xq) return -1;
        for (int t = 0; t < T; t++) act_quantize(x + (size_t)t * K, xq + (size_t)t * qrs, K);
        const sqz_sp8_matvec_fn f = sqz_sp8_matvec_get(sqz_isa_best());
#pragma omp parallel num_threads(n_threads) if (N >= 64 && n_threads > 1)
        {
            const int nt = omp_get_num_threads(), th = omp_get_thread_num();
            for (int t = 0; t < T; t++)
                f(m, K, xq + (size_t)t * qrs, y + (size_t)t * N, N * th / nt, N * (th + 1) / nt);
        }
        free(xq);
        return 0;
    }
    if (matmul_x16(m, N, K, x, T, y, n_threads) == 0) return 0;
    const int64_t n_panels = (N + PANEL - 1) / PANEL;
    const sqz_isa isa = sqz_isa_best();
    const int vbmi2 = sqz_sp8_has_vbmi2();
    int failed = 0;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1) reduction(| : failed)
    {
        float *panel = malloc((size_t)PANEL * (size_t)K * sizeof(float));
        float *strip = isa == SQZ_ISA_AVX512 ? aligned_alloc(64, ((size_t)K * 32 * sizeof(float) + 63) & ~(size_t)63)
                                             : NULL;
        failed = !panel || (isa == SQZ_ISA_AVX512 && !strip);
#pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < n_panels; p++) {
            if (failed) continue;
            const int64_t r0 = p * PANEL, nr = N - r0 < PANEL ? N - r0 : PANEL;
            for (int64_t r = 0; r < nr; r++) {
                const uint8_t *row = m->data + m->row_off[r0 + r];
                if (vbmi2) sqz_sp8_unpack_row_vbmi2(row, K, panel + (size_t)r * K);
                else sqz_sp8_unpack_row(row, K, panel + (size_t)r * K);
            }
            if (strip) sqz_sgemm_panel_avx512(T, (int)nr, K, x, panel, y + r0, (size_t)N, strip);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)nr, (int)K, 1.0f, x, (int)K, panel,
                            (int)K, 0.0f, y + r0, (int)N);
        }
        free(panel);
        free(strip);
    }
    return failed ? -1 : 0;
}

/* The yardstick: each row unpacked to f32, dotted with f32 x in double, one thread. */
static void matmul_ref(const sqz_tensor *w, const float *x, int T, float *y) {
    const sqz_sp8_tensor *m = w->data;
    const int64_t N = w->rows, K = w->cols;
    float *row = malloc((size_t)K * sizeof *row);
    if (!row) return;
    for (int64_t r = 0; r < N; r++) {
        sqz_sp8_unpack_row(m->data + m->row_off[r], K, row);
        for (int t = 0; t < T; t++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)row[k] * x[(size_t)t * K + k];
            y[(size_t)t * N + r] = (float)s;
        }
    }
    free(row);
}

const sqz_matrix_ops sqz_sp8_matrix_ops = {
    .act_bytes = act_bytes,
    .act_quantize = act_quantize,
    .matvec_rows = matvec_rows,
    .matmul = matmul,
    .matmul_ref = matmul_ref,
    .rows_in_place = 1,
};
