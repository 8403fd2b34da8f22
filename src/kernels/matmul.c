/* matmul.c - kernel dispatch, matrix-vector (decode) and matrix-matrix (prefill) products.
 *
 * Glossary: T tokens, K reduction length (w->cols), N output features (w->rows).
 *
 * Prefill is arithmetic-bound, so it must run as blocked GEMM, not as T matvecs: the rows of w
 * are cut into panels of PANEL rows; each thread converts a panel to f32 in its own scratch (an
 * L2-sized block, so the conversion costs one read of the weights per call) and multiplies it
 * with OpenBLAS sgemm running single-threaded inside the thread. Threads split panels, so the
 * OpenMP pool is the only pool (OpenBLAS is set to 1 thread) and nothing oversubscribes.
 */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

enum { PANEL = 64, MATVEC_MAX_T = 3 };

void sqz_kernels_init(void) { openblas_set_num_threads(1); }

const char *sqz_isa_name(sqz_isa isa) {
    return isa == SQZ_ISA_AVX512 ? "avx512" : isa == SQZ_ISA_AVX2 ? "avx2" : "ref";
}

sqz_isa sqz_isa_best(void) {
    sqz_isa best = SQZ_ISA_REF;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        best = SQZ_ISA_AVX2;
    if (best == SQZ_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        best = SQZ_ISA_AVX512;
#endif
    const char *cap = getenv("SQZ_ISA");
    if (cap) {
        sqz_isa want = !strcmp(cap, "ref") ? SQZ_ISA_REF : !strcmp(cap, "avx2") ? SQZ_ISA_AVX2 : best;
        if (want < best) best = want;
    }
    return best;
}

static sqz_kernel_row tier_row(sqz_type t, sqz_isa isa) {
    switch (isa) {
    case SQZ_ISA_AVX512: return sqz_kernels_avx512(t);
    case SQZ_ISA_AVX2: return sqz_kernels_avx2(t);
    default: return sqz_kernels_ref(t);
    }
}

sqz_dot_fn sqz_dot_get(sqz_type t, sqz_isa isa) {
    for (int i = (int)isa; i >= 0; i--) {
        sqz_kernel_row r = tier_row(t, (sqz_isa)i);
        if (r.dot) return r.dot;
    }
    return NULL;
}

sqz_cvt_fn sqz_cvt_get(sqz_type t, sqz_isa isa) {
    for (int i = (int)isa; i >= 0; i--) {
        sqz_kernel_row r = tier_row(t, (sqz_isa)i);
        if (r.to_float) return r.to_float;
    }
    const sqz_type_traits *tr = sqz_type_get(t);
    return tr ? tr->to_float : NULL;
}

void sqz_matvec(const sqz_tensor *w, const float *x, float *y, int n_threads) {
    sqz_dot_fn dot = sqz_dot_get(w->type, sqz_isa_best());
    const size_t rs = sqz_type_row_size(w->type, w->cols);
    const char *base = w->data;
    const int64_t N = w->rows, K = w->cols;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (N >= 64 && n_threads > 1)
    for (int64_t r = 0; r < N; r++) y[r] = dot(base + (size_t)r * rs, x, K);
}

void sqz_matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads) {
    const int64_t N = w->rows, K = w->cols;
    if (T <= MATVEC_MAX_T) {
        for (int t = 0; t < T; t++) sqz_matvec(w, x + (size_t)t * K, y + (size_t)t * N, n_threads);
        return;
    }
    const sqz_isa isa = sqz_isa_best();
    const sqz_cvt_fn cvt = sqz_cvt_get(w->type, isa);
    const size_t rs = sqz_type_row_size(w->type, w->cols);
    const int is_f32 = w->type == SQZ_TYPE_F32;
    const int64_t n_panels = (N + PANEL - 1) / PANEL;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        float *panel = is_f32 ? NULL : malloc((size_t)PANEL * (size_t)K * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < n_panels; p++) {
            const int64_t r0 = p * PANEL, nr = N - r0 < PANEL ? N - r0 : PANEL;
            const float *wp;
            if (is_f32) {
                wp = (const float *)((const char *)w->data + (size_t)r0 * rs);
            } else {
                for (int64_t r = 0; r < nr; r++)
                    cvt((const char *)w->data + (size_t)(r0 + r) * rs, panel + (size_t)r * K, K);
                wp = panel;
            }
            /* y[:, r0:r0+nr] = x[T,K] . wp[nr,K]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)nr, (int)K, 1.0f, x,
                        (int)K, wp, (int)K, 0.0f, y + r0, (int)N);
        }
        free(panel);
    }
}

void sqz_matmul_ref(const sqz_tensor *w, const float *x, int T, float *y) {
    sqz_dot_fn dot = sqz_dot_get(w->type, SQZ_ISA_REF);
    const size_t rs = sqz_type_row_size(w->type, w->cols);
    for (int t = 0; t < T; t++)
        for (int64_t r = 0; r < w->rows; r++)
            y[(size_t)t * w->rows + r] =
                dot((const char *)w->data + (size_t)r * rs, x + (size_t)t * w->cols, w->cols);
}
