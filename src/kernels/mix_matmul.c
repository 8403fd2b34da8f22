/* mix_matmul.c - products with a mixed-precision matrix (SQZ_TYPE_MIXLLM, mix.h) in one pass
 * over its stored rows: the first n8 rows are MX8, the rest MX4 / MX3, and stored row i
 * writes output feature perm[i]. Activations are quantized to MXA once for both kinds of
 * rows; above QMATVEC_MAX_T tokens (prefill) panels of stored rows are dequantized and
 * multiplied with sgemm, their columns scattered through perm. */
#include <cblas.h>
#include <stdlib.h>

#include "kernels/mix.h"

enum { PANEL = 64, QMATVEC_MAX_T = 32 };

size_t sqz_mix_act_bytes(int64_t n) { return (size_t)(n / QK_MX) * sizeof(block_mxa); }

void sqz_mix_act_quantize(const float *x, void *xq, int64_t n) { sqz_mxa_quantize(x, xq, n); }

/* Where stored row i lives, with its type. */
static const void *stored_row(const sqz_tensor *w, int64_t i, sqz_type *t) {
    const sqz_mix_tensor *m = w->data;
    if (i < m->n8) {
        *t = SQZ_TYPE_MX8;
        return (const char *)m->hi + (size_t)i * sqz_type_row_size(SQZ_TYPE_MX8, w->cols);
    }
    *t = m->lo_type;
    return (const char *)m->lo + (size_t)(i - m->n8) * sqz_type_row_size(m->lo_type, w->cols);
}

void sqz_mix_matvec_rows(const sqz_tensor *w, const void *xq, float *y, int64_t r0, int64_t r1,
                         sqz_isa isa) {
    const sqz_mix_tensor *m = w->data;
    const int64_t K = w->cols;
    const sqz_vec_dot_q_fn d8 = sqz_mx_dot_get(SQZ_TYPE_MX8, isa), dl = sqz_mx_dot_get(m->lo_type, isa);
    const size_t rs8 = sqz_type_row_size(SQZ_TYPE_MX8, K), rsl = sqz_type_row_size(m->lo_type, K);
    const char *hi = m->hi, *lo = m->lo;
    int64_t i = r0;
    for (; i < r1 && i < m->n8; i++) y[m->perm[i]] = d8(K, hi + (size_t)i * rs8, xq);
    for (; i < r1; i++) y[m->perm[i]] = dl(K, lo + (size_t)(i - m->n8) * rsl, xq);
}

int sqz_mix_matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads) {
    const sqz_mix_tensor *m = w->data;
    const int64_t N = w->rows, K = w->cols;
    const sqz_isa isa = sqz_isa_best();
    if (T <= QMATVEC_MAX_T) {
        const size_t qrs = sqz_mix_act_bytes(K);
        char *xq = malloc(qrs * (size_t)T);
        if (!xq) return -1;
        for (int t = 0; t < T; t++) sqz_mix_act_quantize(x + (size_t)t * K, xq + (size_t)t * qrs, K);
        const sqz_vec_dot_q_fn d8 = sqz_mx_dot_get(SQZ_TYPE_MX8, isa), dl = sqz_mx_dot_get(m->lo_type, isa);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (N >= 64 && n_threads > 1)
        for (int64_t i = 0; i < N; i++) {
            sqz_type rt;
            const void *row = stored_row(w, i, &rt);
            const sqz_vec_dot_q_fn dot = rt == SQZ_TYPE_MX8 ? d8 : dl;
            for (int t = 0; t < T; t++) y[(size_t)t * N + m->perm[i]] = dot(K, row, xq + (size_t)t * qrs);
        }
        free(xq);
        return 0;
    }
    const int64_t n_panels = (N + PANEL - 1) / PANEL;
    int failed = 0;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1) reduction(| : failed)
    {
        float *panel = malloc((size_t)PANEL * (size_t)K * sizeof(float));
        float *out = malloc((size_t)T * PANEL * sizeof(float));
        failed = !panel || !out;
#pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < n_panels; p++) {
            if (!panel || !out) continue;
            const int64_t r0 = p * PANEL, nr = N - r0 < PANEL ? N - r0 : PANEL;
            for (int64_t r = 0; r < nr; r++) {
                sqz_type rt;
                const void *row = stored_row(w, r0 + r, &rt);
                sqz_type_get(rt)->to_float(row, panel + (size_t)r * K, K);
            }
            /* out[T][nr] = x[T][K] . panel[nr][K]^T, then column r goes to perm[r0 + r] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)nr, (int)K, 1.0f, x,
                        (int)K, panel, (int)K, 0.0f, out, (int)nr);
            for (int t = 0; t < T; t++)
                for (int64_t r = 0; r < nr; r++)
                    y[(size_t)t * N + m->perm[r0 + r]] = out[(size_t)t * nr + r];
        }
        free(panel);
        free(out);
    }
    return failed ? -1 : 0;
}

void sqz_mix_matmul_ref(const sqz_tensor *w, const float *x, int T, float *y) {
    const sqz_mix_tensor *m = w->data;
    const int64_t N = w->rows, K = w->cols;
    float *row = malloc((size_t)K * sizeof *row);
    if (!row) return;
    for (int64_t i = 0; i < N; i++) {
        sqz_type rt;
        const void *src = stored_row(w, i, &rt);
        sqz_type_get(rt)->to_float(src, row, K);
        for (int t = 0; t < T; t++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (double)row[k] * x[(size_t)t * K + k];
            y[(size_t)t * N + m->perm[i]] = (float)acc;
        }
    }
    free(row);
}

const sqz_matrix_ops sqz_mix_matrix_ops = {
    .act_bytes = sqz_mix_act_bytes,
    .act_quantize = sqz_mix_act_quantize,
    .matvec_rows = sqz_mix_matvec_rows,
    .matmul = sqz_mix_matmul,
    .matmul_ref = sqz_mix_matmul_ref,
    .rows_in_place = 0, /* stored row i is output feature perm[i] */
};
