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
#include "kernels/x16.h"
#include "sqz.h" /* sqz_blas_coretype_hint */

/* MATVEC_MAX_T: up to this many tokens, a loop of f32-x matvecs beats converting panels for
 * sgemm. QMATVEC_MAX_T: the same for the quantized dot products, which read the weights once
 * for all T and run near sgemm's rate: measured (AVX-512, one thread, 512x1536 and 2048x2048,
 * Q4_0 / Q4_K / Q6_K) they beat dequantize-a-panel + sgemm at every T up to 64, by 2x at 32,
 * so that is where prefill-sized batches go to sgemm. */
enum { PANEL = 64, MATVEC_MAX_T = 3, QMATVEC_MAX_T = 32 };

void sqz_kernels_init(void) { openblas_set_num_threads(1); }

int sqz_blas_is_best(void) {
    static volatile int cached = -1; /* racing first calls compute the same value */
    if (cached < 0) cached = sqz_blas_coretype_hint() == NULL;
    return cached;
}

const char *sqz_isa_name(sqz_isa isa) {
    return isa == SQZ_ISA_AVX512 ? "avx512" : isa == SQZ_ISA_AVX2 ? "avx2" : "ref";
}

/* clang (up to 14 at least) rejects "f16c" in __builtin_cpu_supports; every AVX2 CPU has it */
#if defined(__clang__)
#define HAS_F16C 1
#else
#define HAS_F16C __builtin_cpu_supports("f16c")
#endif

static sqz_isa isa_detect(void) {
    sqz_isa best = SQZ_ISA_REF;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HAS_F16C)
        best = SQZ_ISA_AVX2;
    /* the *_avx512.c files are built with (and use) DQ and VNNI too: an AVX-512 CPU without
     * them (Skylake-SP/X) runs the AVX2 tier instead of faulting */
    if (best == SQZ_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni"))
        best = SQZ_ISA_AVX512;
#endif
    const char *cap = getenv("SQZ_ISA");
    if (cap) {
        sqz_isa want = !strcmp(cap, "ref") ? SQZ_ISA_REF : !strcmp(cap, "avx2") ? SQZ_ISA_AVX2 : best;
        if (want < best) best = want;
    }
    return best;
}

/* The answer never changes within a process, and decode asks ~60 times a token: detect once.
 * (A benign race: every thread computes the same value.) */
sqz_isa sqz_isa_best(void) {
    static volatile int cached = -1;
    if (cached < 0) cached = (int)isa_detect();
    return (sqz_isa)cached;
}

static const sqz_kernel_row *const tier_tables[] = {
    [SQZ_ISA_REF] = sqz_kernels_ref, [SQZ_ISA_AVX2] = sqz_kernels_avx2,
    [SQZ_ISA_AVX512] = sqz_kernels_avx512,
};
static const sqz_kernel_row no_kernels; /* the row of an id outside every table */

/* t's row in tier isa's table: two loads, no copy (decode asks ~60 times a token). */
static inline const sqz_kernel_row *tier_row(sqz_type t, sqz_isa isa) {
    const int slot = sqz_type_slot(t);
    return slot < 0 ? &no_kernels : &tier_tables[isa][slot];
}

/* The whole-matrix kernels of a type that has them (kernels.h: sqz_matrix_ops), else NULL. */
static inline const sqz_matrix_ops *matrix_ops(sqz_type t) {
    return tier_row(t, SQZ_ISA_REF)->matrix;
}

sqz_dot_fn sqz_dot_get(sqz_type t, sqz_isa isa) {
    for (int i = (int)isa; i >= 0; i--) {
        const sqz_kernel_row *r = tier_row(t, (sqz_isa)i);
        if (r->dot) return r->dot;
    }
    return NULL;
}

sqz_vec_dot_q_fn sqz_vec_dot_q_get(sqz_type t, sqz_isa isa) {
    for (int i = (int)isa; i >= 0; i--) {
        const sqz_kernel_row *r = tier_row(t, (sqz_isa)i);
        if (r->vec_dot_q) return r->vec_dot_q;
    }
    return NULL;
}

sqz_vec_dot_q_rows_fn sqz_vec_dot_q_rows_get(sqz_type t, sqz_isa isa) {
    return tier_row(t, isa)->vec_dot_q_rows;
}

sqz_vec_dot_q_tile4_fn sqz_vec_dot_q_tile4_get(sqz_type t, sqz_isa isa) {
    return tier_row(t, isa)->vec_dot_q_tile4;
}

/* The tier that serves t's quantized dot product (the best one that has it). */
static sqz_isa vdq_tier(sqz_type t, sqz_isa isa) {
    for (int i = (int)isa; i > 0; i--)
        if (tier_row(t, (sqz_isa)i)->vec_dot_q) return (sqz_isa)i;
    return SQZ_ISA_REF;
}

/* t's quantized row kernels, looked up once per product */
typedef struct qdot_kernels {
    sqz_vec_dot_q_rows_fn rows; /* NULL: row by row with vdq */
    sqz_vec_dot_q_fn vdq;
    sqz_vec_dot_q_tile4_fn tile4; /* NULL: token by token */
} qdot_kernels;

static qdot_kernels qdot_lookup(sqz_type t, sqz_isa isa) {
    const sqz_kernel_row *r = tier_row(t, vdq_tier(t, isa));
    return (qdot_kernels){ r->vec_dot_q_rows, r->vec_dot_q, r->vec_dot_q_tile4 };
}

/* y[r - r0] = row r . xq for r in [r0, r1) */
static void qdot_rows(const qdot_kernels *k, int64_t K, const char *base, size_t rs, int64_t r0,
                      int64_t r1, const void *xq, float *y) {
    if (k->rows) {
        k->rows(K, base + (size_t)r0 * rs, rs, r1 - r0, xq, y);
        return;
    }
    for (int64_t r = r0; r < r1; r++) y[r - r0] = k->vdq(K, base + (size_t)r * rs, xq);
}

sqz_quantize_act_fn sqz_quantize_act_get(sqz_type act, sqz_isa isa) {
    for (int i = (int)isa; i >= 0; i--) {
        const sqz_kernel_row *r = tier_row(act, (sqz_isa)i);
        if (r->quantize_act) return r->quantize_act;
    }
    return NULL;
}

/* The traits row's act_type (formats/types.c; as llama.cpp pairs them). */
sqz_type sqz_act_type(sqz_type t) {
    const sqz_type_traits *tr = sqz_type_get(t);
    return tr ? tr->act_type : SQZ_TYPE_F32;
}

sqz_cvt_fn sqz_cvt_get(sqz_type t, sqz_isa isa) {
    for (int i = (int)isa; i >= 0; i--) {
        const sqz_kernel_row *r = tier_row(t, (sqz_isa)i);
        if (r->to_float) return r->to_float;
    }
    const sqz_type_traits *tr = sqz_type_get(t);
    return tr ? tr->to_float : NULL;
}

/* The quantized path of T <= QMATVEC_MAX_T rows of x: they are quantized once (to
 * sqz_act_type) into a per-call scratch, then each thread takes rows of w and dots each with
 * all T activation rows while it is in L1, so w is read once. Returns -1 (nothing done) where
 * w's type has no quantized dot or the scratch cannot be had. */
static int matmul_q(const sqz_tensor *w, const float *x, int T, float *y, int n_threads) {
    const sqz_isa isa = sqz_isa_best();
    const sqz_vec_dot_q_fn vdq = sqz_vec_dot_q_get(w->type, isa);
    if (!vdq) return -1;
    const sqz_type act = sqz_act_type(w->type);
    const sqz_quantize_act_fn quantize = sqz_quantize_act_get(act, isa);
    const int64_t N = w->rows, K = w->cols;
    const size_t rs = sqz_type_row_size(w->type, K), qrs = sqz_type_row_size(act, K);
    char *xq = malloc(qrs * (size_t)T);
    if (!quantize || !xq) {
        free(xq);
        return -1;
    }
    for (int t = 0; t < T; t++) quantize(x + (size_t)t * K, xq + (size_t)t * qrs, K);
    const char *base = w->data;
    /* blocks of RB rows: each block's weights stay in L1 while all T activation rows pass */
    enum { RB = 16 };
    const qdot_kernels k = qdot_lookup(w->type, isa);
    const int64_t n_blocks = (N + RB - 1) / RB;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (N >= 64 && n_threads > 1)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        const int64_t r0 = blk * RB, r1 = r0 + RB < N ? r0 + RB : N;
        int t = 0;
        for (; k.tile4 && t + 4 <= T; t += 4)
            if (k.tile4(K, base + (size_t)r0 * rs, rs, r1 - r0, xq + (size_t)t * qrs, qrs,
                        y + (size_t)t * N + r0, (size_t)N))
                break;
        for (; t < T; t++)
            qdot_rows(&k, K, base, rs, r0, r1, xq + (size_t)t * qrs, y + (size_t)t * N + r0);
    }
    free(xq);
    return 0;
}

size_t sqz_act_bytes(sqz_type wtype, int64_t n) {
    const sqz_matrix_ops *m = matrix_ops(wtype);
    if (m) return m->act_bytes(n);
    const sqz_type act = sqz_act_type(wtype);
    if (act == SQZ_TYPE_F32 || !sqz_vec_dot_q_get(wtype, sqz_isa_best())) return 0;
    return sqz_type_row_size(act, n);
}

void sqz_act_quantize(sqz_type wtype, const float *x, void *xq, int64_t n) {
    const sqz_matrix_ops *m = matrix_ops(wtype);
    if (m) { m->act_quantize(x, xq, n); return; }
    if (!sqz_act_bytes(wtype, n)) return;
    const sqz_isa isa = sqz_isa_best();
    sqz_quantize_act_get(sqz_act_type(wtype), isa)(x, xq, n);
}

void sqz_matvec_rows(const sqz_tensor *w, const float *x, const void *xq, float *y, int64_t r0,
                     int64_t r1) {
    const sqz_isa isa = sqz_isa_best();
    const sqz_matrix_ops *m = matrix_ops(w->type);
    if (m) { m->matvec_rows(w, xq, y, r0, r1, isa); return; }
    const int64_t K = w->cols;
    const size_t rs = sqz_type_row_size(w->type, K);
    const char *base = w->data;
    if (sqz_act_bytes(w->type, K)) {
        const qdot_kernels k = qdot_lookup(w->type, isa);
        qdot_rows(&k, K, base, rs, r0, r1, xq, y + r0);
    } else {
        const sqz_dot_fn dot = sqz_dot_get(w->type, isa);
        for (int64_t r = r0; r < r1; r++) y[r] = dot(base + (size_t)r * rs, x, K);
    }
}

int sqz_matvec_rows_in_place(const sqz_tensor *w) {
    const sqz_matrix_ops *m = matrix_ops(w->type);
    return m ? m->rows_in_place : 1;
}

void sqz_matvec(const sqz_tensor *w, const float *x, float *y, int n_threads) {
    if (matrix_ops(w->type)) { sqz_matmul(w, x, 1, y, n_threads); return; }
    if (matmul_q(w, x, 1, y, n_threads) == 0) return;
    sqz_dot_fn dot = sqz_dot_get(w->type, sqz_isa_best());
    const size_t rs = sqz_type_row_size(w->type, w->cols);
    const char *base = w->data;
    const int64_t N = w->rows, K = w->cols;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (N >= 64 && n_threads > 1)
    for (int64_t r = 0; r < N; r++) y[r] = dot(base + (size_t)r * rs, x, K);
}

/* Types whose four-token kernels beat dequantize-a-panel + sgemm at every batch size, so that
 * prefill stays on quantized dot products (as llama.cpp's does): measured on 1536x512 weights,
 * one thread, T = 512 (CPU time, AVX-512): Q4_0 and Q8_0 114 GFLOP/s against sgemm's 88-91;
 * the k-quants' were equal to sgemm (93 vs 94), so they keep the panels above QMATVEC_MAX_T. */
static int prefill_quantized(sqz_type t) {
    return (t == SQZ_TYPE_Q4_0 || t == SQZ_TYPE_Q8_0) &&
           sqz_vec_dot_q_tile4_get(t, vdq_tier(t, sqz_isa_best()));
}

void sqz_matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads) {
    const int64_t N = w->rows, K = w->cols;
    const sqz_matrix_ops *m = matrix_ops(w->type);
    if (m) {
        if (m->matmul(w, x, T, y, n_threads) != 0) m->matmul_ref(w, x, T, y);
        return;
    }
    if (sqz_x16k_matmul_unpacked(w, x, T, y, n_threads) == 0) return;
    if ((T <= QMATVEC_MAX_T || prefill_quantized(w->type)) && matmul_q(w, x, T, y, n_threads) == 0) return;
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
        /* AVX-512: sqz's own panel kernel (gemm_avx512.c says why), its strip scratch */
        float *strip = isa == SQZ_ISA_AVX512 ? aligned_alloc(64, ((size_t)K * 32 * sizeof(float) + 63) & ~(size_t)63) : NULL;
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
            if (strip)
                sqz_sgemm_panel_avx512(T, (int)nr, K, x, wp, y + r0, (size_t)N, strip);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)nr, (int)K, 1.0f, x,
                            (int)K, wp, (int)K, 0.0f, y + r0, (int)N);
        }
        free(panel);
        free(strip);
    }
}

void sqz_matmul_ref(const sqz_tensor *w, const float *x, int T, float *y) {
    const sqz_matrix_ops *m = matrix_ops(w->type);
    if (m) { m->matmul_ref(w, x, T, y); return; }
    sqz_dot_fn dot = sqz_dot_get(w->type, SQZ_ISA_REF);
    const size_t rs = sqz_type_row_size(w->type, w->cols);
    for (int t = 0; t < T; t++)
        for (int64_t r = 0; r < w->rows; r++)
            y[(size_t)t * w->rows + r] =
                dot((const char *)w->data + (size_t)r * rs, x + (size_t)t * w->cols, w->cols);
}
