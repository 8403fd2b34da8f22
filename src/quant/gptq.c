/* gptq.c - GPTQ with the GGUF block types' own grids (see gptq.h).
 *
 * Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
 * Transformers", ICLR 2023, Algorithm 1 ("quantize W given inverse Hessian H^-1 = (2XX^T +
 * lambda I)^-1 and blocksize B"), structured as the authors' reference code (gptq.py,
 * fasterquant): dead columns, damping, optional act-order, Cholesky of H^-1, lazy batches.
 *
 * Dimensions: rows = output features; cols = input features (stored row length);
 * H [cols x cols]; U [cols x cols] = upper Cholesky factor of H^-1 (H^-1 = U^T U), in the
 * processing (possibly permuted) column order; QK = elements per GGUF block; B = lazy batch
 * (columns); R = rows per chunk (CHUNK_ROWS), the unit of parallel work.
 *
 * One column i (processing order) of a row r:  q = grid(w_i); e = (w_i - q) / U_ii;
 *   w_j -= e * U_ij for the later columns j of the current batch, immediately;
 *   w_j -= sum over the batch of e * U_ij for the columns after the batch, at the batch's end
 *   as one GEMM (W[:, i2:] -= E[:, i1:i2] U[i1:i2, i2:]), which is the paper's lazy update.
 *
 * Arithmetic is plain f32 without FMA contraction (as the quantizers), so a textbook loop
 * in the same order gives the same floats for the columns of the first batch.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "quant/gptq.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/mx.h" /* sqz's mixllm types MX8 / MX4 / MX3 */
#include "formats/blocks.h"
#include "math/hessian.h"
#include "formats/quant.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"

enum { CHUNK_ROWS = SQZ_GPTQ_CHUNK_ROWS };

/* y[R x n] (+= with acc) x[R x K] . w(K x n), w(k, j) = w[k * ldw + j]; row-major, one
 * thread (GPTQ's chunks are the parallel work). wp: K * 32 floats for sqz's own AVX-512 GEMM
 * (gemm_avx512.c), 2-3x an OpenBLAS that fell back to old kernels on a CPU it does not know;
 * NULL: OpenBLAS. */
void sqz_gptq_gemm_rows(int64_t R, int64_t n, int64_t K, const float *x, int64_t ldx, const float *w,
                        int64_t ldw, float *y, int64_t ldy, int acc, float *wp) {
    if (wp)
        sqz_sgemm_avx512_ex((int)R, (int)n, K, x, (size_t)ldx, 0, w, (size_t)ldw, 1, y, (size_t)ldy, acc, wp);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)n, (int)K, 1.0f, x, (int)ldx, w,
                    (int)ldw, acc ? 1.0f : 0.0f, y, (int)ldy);
}

/* sqz_gptq_gemm_rows' scratch for products of depth K: NULL without AVX-512 (or memory) */
float *sqz_gptq_gemm_scratch(int64_t K) {
    if (sqz_isa_best() != SQZ_ISA_AVX512 || sqz_blas_is_best()) return NULL;
    return aligned_alloc(64, ((size_t)K * 32 * sizeof(float) + 63) & ~(size_t)63);
}

sqz_gptq_opts sqz_gptq_default_opts(void) {
    sqz_gptq_opts o = { .percdamp = 0.1, .block = 128, .act_order = 0, .threads = 0,
                        .cond_imp = 1, .refit = 2, .cd_sweeps = 4 };
    return o;
}

int sqz_gptq_supports(sqz_type t) {
    switch (t) {
    case SQZ_TYPE_Q4_0: case SQZ_TYPE_Q8_0: case SQZ_TYPE_Q2_K: case SQZ_TYPE_Q3_K:
    case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q5_K: case SQZ_TYPE_Q6_K:
    case SQZ_TYPE_MX8: case SQZ_TYPE_MX4: case SQZ_TYPE_MX3:
        return 1;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------ one element's grid */

/* ggml's nearest_int (ties to even via the FPU), for |f| <= 2^22: callers clamp first. */
static inline int nearest_int(float f) {
    const float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Element j's level set: value(s) = a * s - b for integer s in [smin, smax]. a and b are
 * computed exactly as dequant.c computes them, so value(s) is bit-identical to to_float. */
typedef struct {
    float a, b;
    int smin, smax;
} elem_grid;

/* Q4_K / Q5_K 6-bit scale and min of sub-block j (dequant.c's k4_scale_min). */
static void k4_scale_min(int j, const uint8_t *p, int *sc, int *m) {
    if (j < 4) {
        *sc = p[j] & 63;
        *m = p[j + 4] & 63;
    } else {
        *sc = (p[j + 4] & 0x0f) | ((p[j - 4] >> 6) << 4);
        *m = (p[j + 4] >> 4) | ((p[j] >> 6) << 4);
    }
}

/* Q3_K: signed 6-bit scale of sub-block j. */
static int q3_k_scale(const uint8_t *p, int j) {
    const int lo = j < 8 ? p[j] & 0x0f : p[j - 8] >> 4;
    return (lo | ((p[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}

/* The grid of element j and its current level s. */
static void elem_read(sqz_type t, const void *blk, int j, elem_grid *g, int *s) {
    g->b = 0;
    switch (t) {
    case SQZ_TYPE_Q4_0: {
        const block_q4_0 *x = blk;
        g->a = sqz_f16_to_f32(x->d);
        g->smin = -8, g->smax = 7;
        const uint8_t byte = x->qs[j % 16];
        *s = (j < 16 ? byte & 0x0f : byte >> 4) - 8;
        break;
    }
    case SQZ_TYPE_Q8_0: {
        const block_q8_0 *x = blk;
        g->a = sqz_f16_to_f32(x->d);
        /* -128 is a valid int8 but ggml never writes it, and sign-trick dot products
         * (abs of the weight) would overflow on it */
        g->smin = -127, g->smax = 127;
        *s = x->qs[j];
        break;
    }
    case SQZ_TYPE_Q2_K: {
        const block_q2_K *x = blk;
        const uint8_t sc = x->scales[j / 16];
        g->a = sqz_f16_to_f32(x->d) * (sc & 0x0f);
        g->b = sqz_f16_to_f32(x->dmin) * (sc >> 4);
        g->smin = 0, g->smax = 3;
        const int h = j / 128, l = j % 128;
        *s = (x->qs[h * 32 + l % 32] >> (2 * (l / 32))) & 3;
        break;
    }
    case SQZ_TYPE_Q3_K: {
        const block_q3_K *x = blk;
        g->a = sqz_f16_to_f32(x->d) * q3_k_scale(x->scales, j / 16);
        g->smin = -4, g->smax = 3;
        const int h = j / 128, l = j % 128;
        const int lo = (x->qs[h * 32 + l % 32] >> (2 * (l / 32))) & 3;
        const int hi = (x->hmask[j % 32] >> (j / 32)) & 1;
        *s = lo + 4 * hi - 4;
        break;
    }
    case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q5_K: {
        const int is5 = t == SQZ_TYPE_Q5_K;
        const uint8_t *scales = is5 ? ((const block_q5_K *)blk)->scales
                                    : ((const block_q4_K *)blk)->scales;
        const uint16_t d = is5 ? ((const block_q5_K *)blk)->d : ((const block_q4_K *)blk)->d;
        const uint16_t dmin = is5 ? ((const block_q5_K *)blk)->dmin
                                  : ((const block_q4_K *)blk)->dmin;
        const uint8_t *qs = is5 ? ((const block_q5_K *)blk)->qs : ((const block_q4_K *)blk)->qs;
        int sc, m;
        k4_scale_min(j / 32, scales, &sc, &m);
        g->a = sqz_f16_to_f32(d) * sc;
        g->b = sqz_f16_to_f32(dmin) * m;
        g->smin = 0, g->smax = is5 ? 31 : 15;
        const int c = j / 64, l = j % 64;
        const uint8_t byte = qs[c * 32 + l % 32];
        *s = l < 32 ? byte & 0x0f : byte >> 4;
        if (is5) *s += 16 * ((((const block_q5_K *)blk)->qh[l % 32] >> (2 * c + l / 32)) & 1);
        break;
    }
    case SQZ_TYPE_Q6_K: {
        const block_q6_K *x = blk;
        g->a = sqz_f16_to_f32(x->d) * x->scales[j / 16];
        g->smin = -32, g->smax = 31;
        const int h = j / 128, l = j % 128, k = l / 32, i = l % 32;
        const uint8_t lb = x->ql[h * 64 + i + 32 * (k & 1)];
        const int lo = k < 2 ? lb & 0x0f : lb >> 4;
        const int hi = (x->qh[h * 32 + i] >> (2 * k)) & 3;
        *s = (lo | hi << 4) - 32;
        break;
    }
    case SQZ_TYPE_MX8: case SQZ_TYPE_MX4: case SQZ_TYPE_MX3: { /* value a * s + m */
        float m;
        sqz_mx_elem_grid(t, blk, j, &g->a, &m, &g->smin, &g->smax, s);
        g->b = -m;
        break;
    }
    default:
        g->a = 0, g->smin = g->smax = 0, *s = 0;
        break;
    }
}

/* Writes level s of element j (the inverse of elem_read's decoding). */
static void elem_write(sqz_type t, void *blk, int j, int s) {
    switch (t) {
    case SQZ_TYPE_Q4_0: {
        block_q4_0 *x = blk;
        const unsigned u = (unsigned)(s + 8);
        uint8_t *p = &x->qs[j % 16];
        *p = j < 16 ? (uint8_t)((*p & 0xf0) | u) : (uint8_t)((*p & 0x0f) | u << 4);
        break;
    }
    case SQZ_TYPE_Q8_0:
        ((block_q8_0 *)blk)->qs[j] = (int8_t)s;
        break;
    case SQZ_TYPE_Q2_K: case SQZ_TYPE_Q3_K: {
        uint8_t *qs = t == SQZ_TYPE_Q2_K ? ((block_q2_K *)blk)->qs : ((block_q3_K *)blk)->qs;
        unsigned u = (unsigned)s;
        if (t == SQZ_TYPE_Q3_K) {
            block_q3_K *x = blk;
            u = (unsigned)(s + 4);
            const uint8_t bit = (uint8_t)(1u << (j / 32));
            x->hmask[j % 32] = (uint8_t)(u > 3 ? x->hmask[j % 32] | bit : x->hmask[j % 32] & ~bit);
            u &= 3;
        }
        const int h = j / 128, l = j % 128, sh = 2 * (l / 32);
        uint8_t *p = &qs[h * 32 + l % 32];
        *p = (uint8_t)((*p & ~(3u << sh)) | u << sh);
        break;
    }
    case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q5_K: {
        const int is5 = t == SQZ_TYPE_Q5_K;
        uint8_t *qs = is5 ? ((block_q5_K *)blk)->qs : ((block_q4_K *)blk)->qs;
        const unsigned u = (unsigned)s & 0x0f;
        const int c = j / 64, l = j % 64;
        uint8_t *p = &qs[c * 32 + l % 32];
        *p = l < 32 ? (uint8_t)((*p & 0xf0) | u) : (uint8_t)((*p & 0x0f) | u << 4);
        if (is5) {
            uint8_t *qh = &((block_q5_K *)blk)->qh[l % 32];
            const uint8_t bit = (uint8_t)(1u << (2 * c + l / 32));
            *qh = (uint8_t)(s > 15 ? *qh | bit : *qh & ~bit);
        }
        break;
    }
    case SQZ_TYPE_Q6_K: {
        block_q6_K *x = blk;
        const unsigned u = (unsigned)(s + 32);
        const int h = j / 128, l = j % 128, k = l / 32, i = l % 32;
        uint8_t *lb = &x->ql[h * 64 + i + 32 * (k & 1)];
        *lb = k < 2 ? (uint8_t)((*lb & 0xf0) | (u & 0x0f)) : (uint8_t)((*lb & 0x0f) | (u & 0x0f) << 4);
        uint8_t *hb = &x->qh[h * 32 + i];
        *hb = (uint8_t)((*hb & ~(3u << (2 * k))) | (u >> 4) << (2 * k));
        break;
    }
    case SQZ_TYPE_MX8: case SQZ_TYPE_MX4: case SQZ_TYPE_MX3:
        sqz_mx_elem_set(t, blk, j, s);
        break;
    default:
        break;
    }
}

static inline float grid_value(const elem_grid *g, int s) { return g->a * (float)s - g->b; }

void sqz_gptq_block_init(sqz_type type, const float *x, const float *imp, void *blk) {
    if (type == SQZ_TYPE_MX8 || type == SQZ_TYPE_MX4 || type == SQZ_TYPE_MX3) {
        sqz_mx_quantize_block(type, x, imp, blk);
        return;
    }
    const sqz_type_traits *tr = sqz_type_get(type);
    sqz_quantize_rows(type, x, blk, 1, tr->block_size, imp);
}

float sqz_gptq_block_get(sqz_type type, const void *blk, int j) {
    elem_grid g;
    int s;
    elem_read(type, blk, j, &g, &s);
    return grid_value(&g, s);
}

float sqz_gptq_block_set(sqz_type type, void *blk, int j, float x) {
    elem_grid g;
    int s;
    elem_read(type, blk, j, &g, &s);
    if (g.a != 0) { /* a zero scale: every level is the same value, keep the quantizer's */
        const float f = (x + g.b) / g.a;
        if (f >= (float)g.smax) s = g.smax;
        else if (f <= (float)g.smin) s = g.smin;
        else if (f == f) s = nearest_int(f); /* in range: |f| <= 128 */
        elem_write(type, blk, j, s);
    }
    return grid_value(&g, s);
}

float sqz_gptq_block_quant(sqz_type type, void *blk, int j, float w, float x0) {
    return w == x0 ? sqz_gptq_block_get(type, blk, j) : sqz_gptq_block_set(type, blk, j, w);
}

void sqz_gptq_cond_imp(const double *Hp, int64_t cols, const int64_t *perm, float *imp) {
    for (int64_t i = 0; i < cols; i++) {
        const double uii = Hp[i * cols + i];
        imp[perm ? perm[i] : i] = (float)(1.0 / (uii * uii));
    }
}

/* ------------------------------------------------------------------ the algorithm */

typedef struct {
    sqz_type type;
    int64_t cols;
    int qk;              /* elements per block */
    size_t type_size;    /* bytes per block */
    size_t row_size;     /* bytes per row */
    int B;               /* lazy batch, compatible with qk */
    int act_order;
    const float *U;      /* [cols x cols] upper factor of H^-1, processing order; NULL: identity */
    int refit;           /* extra passes per block (sqz_gptq_opts.refit) */
    int cd_sweeps;       /* coordinate descent sweeps after GPTQ (sqz_gptq_opts.cd_sweeps) */
    const float *Hf;     /* [cols x cols] damped H, original order (coordinate descent) */
    const float *Hsub;   /* [cols / n][n][n] Hf's diagonal n x n blocks (n = sqz_gptq_sub_size),
                            transposed and contiguous, for sub_moves; NULL: none */
    const int64_t *perm; /* [cols] processing position -> original column; NULL: identity */
    const float *imp;    /* [cols] importance per original column; NULL: none */
    const uint8_t *dead; /* [cols] original order; NULL: none */
} gptq_plan;

/* ------------------------------------------------------------------ sub-block scales
 * The k-quants' integer sub-block scale (and min): coordinate descent may move them by one. */

/* Elements per sub-block of type t (0: no integer sub-block scales). */
int sqz_gptq_sub_size(sqz_type t) {
    switch (t) {
    case SQZ_TYPE_Q2_K: case SQZ_TYPE_Q3_K: case SQZ_TYPE_Q6_K: return 16;
    case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q5_K: return 32;
    default: return 0;
    }
}

/* Sub-block k's scale *sc and min *m (0 for types without mins), and their ranges. */
void sqz_gptq_sub_get(sqz_type t, const void *blk, int k, int *sc, int *m, int *lo, int *hi, int *mhi) {
    *m = 0, *mhi = 0;
    switch (t) {
    case SQZ_TYPE_Q2_K: {
        const uint8_t b = ((const block_q2_K *)blk)->scales[k];
        *sc = b & 0x0f, *m = b >> 4, *lo = 0, *hi = 15, *mhi = 15;
        break;
    }
    case SQZ_TYPE_Q3_K:
        *sc = q3_k_scale(((const block_q3_K *)blk)->scales, k), *lo = -32, *hi = 31;
        break;
    case SQZ_TYPE_Q6_K:
        *sc = ((const block_q6_K *)blk)->scales[k], *lo = -128, *hi = 127;
        break;
    default: { /* Q4_K, Q5_K */
        const uint8_t *p = t == SQZ_TYPE_Q5_K ? ((const block_q5_K *)blk)->scales : ((const block_q4_K *)blk)->scales;
        k4_scale_min(k, p, sc, m);
        *lo = 0, *hi = 63, *mhi = 63;
        break;
    }
    }
}

/* Writes sub-block k's scale and min (the inverse of sqz_gptq_sub_get). */
void sqz_gptq_sub_set(sqz_type t, void *blk, int k, int sc, int m) {
    switch (t) {
    case SQZ_TYPE_Q2_K:
        ((block_q2_K *)blk)->scales[k] = (uint8_t)(sc | m << 4);
        break;
    case SQZ_TYPE_Q3_K: {
        uint8_t *p = ((block_q3_K *)blk)->scales;
        const unsigned u = (unsigned)(sc + 32);
        if (k < 8) p[k] = (uint8_t)((p[k] & 0xf0) | (u & 0x0f));
        else p[k - 8] = (uint8_t)((p[k - 8] & 0x0f) | (u & 0x0f) << 4);
        const int sh = 2 * (k / 4);
        p[8 + k % 4] = (uint8_t)((p[8 + k % 4] & ~(3u << sh)) | (u >> 4) << sh);
        break;
    }
    case SQZ_TYPE_Q6_K:
        ((block_q6_K *)blk)->scales[k] = (int8_t)sc;
        break;
    default: { /* Q4_K, Q5_K: ggml's 12-byte packing of eight 6-bit scales and mins */
        uint8_t *p = t == SQZ_TYPE_Q5_K ? ((block_q5_K *)blk)->scales : ((block_q4_K *)blk)->scales;
        if (k < 4) {
            p[k] = (uint8_t)((p[k] & 0xc0) | sc);
            p[k + 4] = (uint8_t)((p[k + 4] & 0xc0) | m);
        } else {
            p[k + 4] = (uint8_t)((sc & 0x0f) | (m & 0x0f) << 4);
            p[k - 4] = (uint8_t)((p[k - 4] & 0x3f) | (sc >> 4) << 6);
            p[k] = (uint8_t)((p[k] & 0x3f) | (m >> 4) << 6);
        }
        break;
    }
    }
}

/* Coordinate descent skips an element whose target is within this of its current level: just
 * under half its grid step (the margin leaves every near-tie to block_set's exact rounding). */
static float skip_radius(const elem_grid *g) { return 0.49f * fabsf(g->a); }

/* t_j = sum_i H[s0 + j][s0 + i] dv_i for a sub-block's n (16 or 32, a constant after inlining)
 * columns: each t_j summed in order of i, as the dot per j would (no FMA contraction in this
 * file), but as n-wide axpys on the transposed block hb, held in vector registers (a scalar
 * loop through memory was the larger part of coordinate descent's time). */
typedef float gptq_v4 __attribute__((vector_size(16)));
static inline __attribute__((always_inline)) void sub_hv(const float *hb, const float *dv, float *t, const int n) {
    gptq_v4 acc[8];
#pragma GCC unroll 8
    for (int k = 0; k < n / 4; k++) acc[k] = (gptq_v4){ 0, 0, 0, 0 };
    for (int i = 0; i < n; i++) {
        const gptq_v4 d = { dv[i], dv[i], dv[i], dv[i] };
#pragma GCC unroll 8
        for (int k = 0; k < n / 4; k++) {
            gptq_v4 h;
            memcpy(&h, hb + i * n + 4 * k, sizeof h);
            acc[k] += h * d;
        }
    }
    memcpy(t, acc, (size_t)n * sizeof *t);
}

/* One row's sub-block moves: for each sub-block, the scale or the min one step up or down,
 * whichever lowers f = (q - w)^T H (q - w) most (levels stay), by the exact change
 * dv^T (2 g + H dv) over the sub-block's columns S (H_SS from Hf); q and g follow. dv: scratch
 * of the sub-block's size. Returns whether anything moved. */
static int sub_moves(const gptq_plan *p, uint8_t *row, float *q, float *g, float *half, float *dv) {
    const int64_t cols = p->cols;
    const int n = sqz_gptq_sub_size(p->type);
    int moved = 0;
    for (int64_t s0 = 0; s0 < cols; s0 += n) {
        void *blk = row + (s0 / p->qk) * p->type_size;
        const int k = (int)((s0 % p->qk) / n);
        int sc, m, lo, hi, mhi;
        sqz_gptq_sub_get(p->type, blk, k, &sc, &m, &lo, &hi, &mhi);
        double best = 0;
        int bsc = sc, bm = m;
        /* the sub-block's levels, read once: a candidate moves only its grid (a, b), which
         * every element of the sub-block shares */
        int lv[32];
        elem_grid eg;
        for (int j = 0; j < n; j++) elem_read(p->type, blk, (int)(s0 % p->qk) + j, &eg, &lv[j]);
        for (int c = 0; c < 4; c++) {
            const int nsc = sc + (c == 0) - (c == 1), nm = m + (c == 2) - (c == 3);
            if (nsc < lo || nsc > hi || nm < 0 || nm > mhi || (c >= 2 && !mhi)) continue;
            sqz_gptq_sub_set(p->type, blk, k, nsc, nm);
            int unused;
            elem_read(p->type, blk, (int)(s0 % p->qk), &eg, &unused);
            sqz_gptq_sub_set(p->type, blk, k, sc, m);
            for (int j = 0; j < n; j++) dv[j] = grid_value(&eg, lv[j]) - q[s0 + j];
            float t[32];
            if (n == 16) sub_hv(p->Hsub + s0 * n, dv, t, 16);
            else sub_hv(p->Hsub + s0 * n, dv, t, 32);
            double df = 0;
            for (int j = 0; j < n; j++) df += (double)dv[j] * (2.0 * g[s0 + j] + t[j]);
            if (df < best) best = df, bsc = nsc, bm = nm;
        }
        if (bsc == sc && bm == m) continue;
        sqz_gptq_sub_set(p->type, blk, k, bsc, bm);
        for (int j = 0; j < n; j++) {
            elem_grid eg;
            int lv;
            elem_read(p->type, blk, (int)(s0 % p->qk) + j, &eg, &lv);
            const float nv = grid_value(&eg, lv);
            dv[j] = nv - q[s0 + j];
            q[s0 + j] = nv;
            half[s0 + j] = skip_radius(&eg);
        }
        for (int j = 0; j < n; j++) /* g += H[:, S] dv (rows S of the symmetric H) */
            if (dv[j] != 0) {
                sqz_axpy(g, dv[j], p->Hf + (s0 + j) * cols, cols);
            }
        moved = 1;
    }
    return moved;
}

/* Coordinate descent (sqz_gptq_opts.cd_sweeps) on R quantized rows `out` of W: per row,
 * f(q) = (q - w)^T H (q - w) with g = H (q - w); element j's exact minimizer with the others
 * fixed is q_j - g_j / H_jj, rounded to its block's grid (scales stay); a move by delta
 * changes f by delta (2 g_j + delta H_jj), is kept only when that is negative, and adds
 * delta * H[j] to g; then, for the k-quants, each sub-block's integer scale or min may move by
 * one the same way (sub_moves). G = (Q - W) H is computed once for all R rows (one GEMM) and
 * then kept by those updates through every sweep: recomputing it per sweep cost 3 more GEMMs of
 * R x cols^2 and changed the 1.1B shape's output error by 0.003 % (tl2, q4_k_m). Dead columns
 * (zeroed in W) are skipped.
 * Returns 0, or -1 on NOMEM. */
static int coordinate_descent(const gptq_plan *p, const float *W, int64_t R, uint8_t *out) {
    const int64_t cols = p->cols;
    const int qk = p->qk;
    const size_t n = (size_t)R * (size_t)cols;
    float *q = malloc(n * sizeof *q), *d = malloc(n * sizeof *d), *g = malloc(n * sizeof *g);
    float *half = malloc(n * sizeof *half); /* each element's skip_radius */
    float *hdiag = malloc((size_t)cols * sizeof *hdiag); /* H_jj, contiguous (not cols + 1 apart) */
    float dv[32];                           /* sub_moves' scratch (a sub-block) */
    float *wp = sqz_gptq_gemm_scratch(cols);
    if (!q || !d || !g || !half || !hdiag) {
        free(q), free(d), free(g), free(half), free(hdiag), free(wp);
        return -1;
    }
    for (int64_t j = 0; j < cols; j++) hdiag[j] = p->Hf[j * cols + j];
    const sqz_type_traits *tr = sqz_type_get(p->type);
    for (int64_t r = 0; r < R; r++) {
        tr->to_float(out + r * p->row_size, q + r * cols, cols);
        for (int64_t j = 0; j < cols; j++) {
            elem_grid eg;
            int lv;
            elem_read(p->type, out + r * p->row_size + (j / qk) * p->type_size, (int)(j % qk), &eg, &lv);
            half[r * cols + j] = skip_radius(&eg);
        }
    }
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < cols; c++)
            d[r * cols + c] = q[r * cols + c] - (p->dead && p->dead[c] ? 0.0f : W[r * cols + c]);
    sqz_gptq_gemm_rows(R, cols, cols, d, cols, p->Hf, cols, g, cols, 0, wp);
    for (int sweep = 0; sweep < p->cd_sweeps; sweep++) {
        int moved = 0;
        for (int64_t r = 0; r < R; r++) {
            uint8_t *row = out + r * p->row_size;
            float *qr = q + r * cols, *gr = g + r * cols;
            for (int64_t j = 0; j < cols; j++) {
                if (p->dead && p->dead[j]) continue;
                const float old = qr[j], step = gr[j] / hdiag[j];
                if (fabsf(step) < half[r * cols + j]) continue; /* nearest level: the current one */
                const float *h = p->Hf + j * cols;
                void *blk = row + (j / qk) * p->type_size;
                const float nq = sqz_gptq_block_set(p->type, blk, (int)(j % qk), old - step);
                if (nq == old) continue;
                const float delta = nq - old;
                if (delta * (2 * gr[j] + delta * h[j]) >= 0) { /* not lower: back to old */
                    sqz_gptq_block_set(p->type, blk, (int)(j % qk), old);
                    continue;
                }
                qr[j] = nq;
                sqz_axpy(gr, delta, h, cols);
                moved = 1;
            }
            if (sqz_gptq_sub_size(p->type)) moved |= sub_moves(p, row, qr, gr, half + r * cols, dv);
        }
        if (!moved) break;
    }
    free(q), free(d), free(g), free(half), free(hdiag), free(wp);
    return 0;
}

/* GPTQ on R rows: W [R x cols] -> out [R rows of the type]. Returns 0, or -1 on NOMEM.
 *
 * Columns go in units: one column with act-order, else one block of the type (qk columns, the
 * batch holding whole blocks). A unit's errors update the unit's later columns at once and the
 * rest of the batch when the unit is done (the same float operations, in the same order, as
 * updating every later column of the batch at once); with refit the unit is run 1 + refit
 * times before that, each row keeping its best pass. */
static int gptq_rows(const gptq_plan *p, const float *W, int64_t R, uint8_t *out, float *deq) {
    const int64_t cols = p->cols;
    const int qk = p->qk, B = p->B;
    const int unit = p->act_order ? 1 : qk;
    const int passes = p->act_order || !p->U ? 1 : 1 + p->refit;
    const size_t ts = p->type_size;
    float *wc = malloc((size_t)(R * cols) * sizeof *wc); /* working W, processing order */
    float *x0 = malloc((size_t)(R * cols) * sizeof *x0); /* values the scales were chosen from,
                                                            original order */
    float *err = malloc((size_t)(R * B) * sizeof *err);  /* E [R x B] of the current batch */
    float *wp = sqz_gptq_gemm_scratch(B);                /* the lazy update's GEMM scratch */
    /* refit: the block's columns at its start, the values they were rounded from, and each
     * row's best pass (block bytes, errors, loss) */
    const size_t rq = (size_t)R * (size_t)qk;
    float *save = passes > 1 ? malloc(rq * sizeof *save) : NULL;
    float *seen = passes > 1 ? malloc(rq * sizeof *seen) : NULL;
    float *best_err = passes > 1 ? malloc(rq * sizeof *best_err) : NULL;
    uint8_t *best_blk = passes > 1 ? malloc((size_t)R * ts) : NULL;
    double *loss = passes > 1 ? malloc((size_t)R * 2 * sizeof *loss) : NULL;
    if (!wc || !x0 || !err || (passes > 1 && (!save || !seen || !best_err || !best_blk || !loss))) {
        free(wc), free(x0), free(err), free(save), free(seen), free(best_err), free(best_blk), free(loss);
        free(wp);
        return -1;
    }
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < cols; k++) {
            const int64_t c = p->perm ? p->perm[k] : k;
            wc[r * cols + k] = p->dead && p->dead[c] ? 0.0f : W[r * cols + c];
        }
    if (p->act_order) {
        /* static groups: with columns visited out of order, a block's columns are not all
         * reached together, so every block's scales come from the (dead-zeroed) input W */
        for (int64_t r = 0; r < R; r++) {
            for (int64_t c = 0; c < cols; c++)
                x0[r * cols + c] = p->dead && p->dead[c] ? 0.0f : W[r * cols + c];
            for (int64_t b = 0; b < cols / qk; b++)
                sqz_gptq_block_init(p->type, x0 + r * cols + b * qk, p->imp ? p->imp + b * qk : NULL,
                                    out + r * p->row_size + b * ts);
        }
    }
    for (int64_t i1 = 0; i1 < cols; i1 += B) {
        const int64_t i2 = i1 + B < cols ? i1 + B : cols;
        for (int64_t u0 = i1; u0 < i2; u0 += unit) {
            const int64_t u1 = u0 + unit;
            for (int pass = 0; pass < passes; pass++) {
                if (!p->act_order) {
                    /* a block's first column (the batch holds whole blocks): every column of
                     * the block carries all updates so far; choose its scales now, from those
                     * values (refit passes: from the values the last pass rounded) */
                    for (int64_t r = 0; r < R; r++) {
                        float *wb = wc + r * cols + u0;
                        if (passes > 1 && pass == 0) memcpy(save + r * qk, wb, (size_t)qk * sizeof *wb);
                        if (pass > 0) memcpy(wb, save + r * qk, (size_t)qk * sizeof *wb);
                        memcpy(x0 + r * cols + u0, pass == 0 ? wb : seen + r * qk, (size_t)qk * sizeof *wb);
                        sqz_gptq_block_init(p->type, x0 + r * cols + u0, p->imp ? p->imp + u0 : NULL,
                                            out + r * p->row_size + (u0 / qk) * ts);
                    }
                }
                for (int64_t i = u0; i < u1; i++) {
                    const int64_t c = p->perm ? p->perm[i] : i;
                    const int64_t b = c / qk;
                    const int jj = (int)(c % qk);
                    const float *u = p->U ? p->U + i * cols : NULL;
                    const float uii = u ? u[i] : 1.0f;
                    for (int64_t r = 0; r < R; r++) {
                        float *wr = wc + r * cols;
                        const float w = wr[i];
                        void *blk = out + r * p->row_size + b * ts;
                        if (passes > 1) seen[r * qk + (i - u0)] = w;
                        /* a weight that has not moved since its block's scales were chosen keeps
                         * the quantizer's own level: with no error feedback (H diagonal) the
                         * result is then the type's quantizer byte for byte (Q4_0 / Q8_0 round
                         * with the unrounded f32 scale, so their levels can differ from
                         * nearest-on-the-stored-grid) */
                        const float q = sqz_gptq_block_quant(p->type, blk, jj, w, x0[r * cols + c]);
                        if (!u) continue;
                        const float e = (w - q) / uii;
                        err[r * B + (i - i1)] = e;
                        if (passes > 1) loss[2 * r + 1] = (i == u0 ? 0 : loss[2 * r + 1]) + (double)e * e;
                        sqz_axpy(wr + i + 1, -e, u + i + 1, u1 - i - 1); /* w_j -= e u_j */
                    }
                }
                if (passes > 1 && p->U) /* each row keeps its least-loss pass */
                    for (int64_t r = 0; r < R; r++) {
                        uint8_t *blk = out + r * p->row_size + (u0 / qk) * ts;
                        if (pass > 0 && loss[2 * r + 1] >= loss[2 * r]) continue;
                        loss[2 * r] = loss[2 * r + 1];
                        memcpy(best_blk + r * ts, blk, ts);
                        memcpy(best_err + r * qk, err + r * B + (u0 - i1), (size_t)qk * sizeof *err);
                    }
            }
            if (passes > 1 && p->U)
                for (int64_t r = 0; r < R; r++) {
                    memcpy(out + r * p->row_size + (u0 / qk) * ts, best_blk + r * ts, ts);
                    memcpy(err + r * B + (u0 - i1), best_err + r * qk, (size_t)qk * sizeof *err);
                }
            /* the unit's errors onto the rest of the batch */
            if (p->U && u1 < i2)
                for (int64_t r = 0; r < R; r++) {
                    float *wr = wc + r * cols;
                    for (int64_t i = u0; i < u1; i++) {
                        const float e = err[r * B + (i - i1)];
                        sqz_axpy(wr + u1, -e, p->U + i * cols + u1, i2 - u1);
                    }
                }
        }
        if (p->U && i2 < cols)
        {
            /* W[:, i2:] -= E U[i1:i2, i2:]: E negated in place (the next batch rewrites it) */
            for (int64_t k = 0; k < R * B; k++) err[k] = -err[k];
            sqz_gptq_gemm_rows(R, cols - i2, i2 - i1, err, B, p->U + i1 * cols + i2, cols, wc + i2, cols, 1, wp);
        }
    }
    int rc = p->cd_sweeps > 0 && p->Hf ? coordinate_descent(p, W, R, out) : 0;
    if (deq && !rc) {
        const sqz_type_traits *tr = sqz_type_get(p->type);
        for (int64_t r = 0; r < R; r++) tr->to_float(out + r * p->row_size, deq + r * cols, cols);
    }
    free(wc), free(x0), free(err), free(save), free(seen), free(best_err), free(best_blk), free(loss);
    free(wp);
    return rc;
}

/* The lazy batch: B >= qk rounded down to a multiple of qk; B < qk: qk without act-order (a
 * batch holds whole blocks), else a power of two (a divisor of qk), so that every block
 * starts a batch. */
int sqz_gptq_batch_size(int B, int qk, int act_order) {
    if (B <= 0) B = 128;
    if (B >= qk) return B / qk * qk;
    if (!act_order) return qk;
    int p = 1;
    while (p * 2 <= B) p *= 2;
    return p;
}

sqz_status sqz_gptq_quantize(sqz_ctx *ctx, sqz_type type, const float *W, int64_t rows,
                             int64_t cols, const double *H, const sqz_gptq_opts *opts,
                             void *out, float *deq) {
    const sqz_gptq_opts o = opts ? *opts : sqz_gptq_default_opts();
    if (!sqz_gptq_supports(type))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "gptq: type %s is not supported",
                        sqz_type_name(type));
    const sqz_type_traits *tr = sqz_type_get(type);
    if (!W || !out) return sqz_fail(ctx, SQZ_ERR_ARG, "gptq: %s is NULL", W ? "out" : "W");
    if (rows < 1 || cols < 1 || cols % tr->block_size)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "gptq: %lld x %lld matrix: cols must be a positive multiple of %s's "
                        "block size %d",
                        (long long)rows, (long long)cols, tr->name, tr->block_size);
    if (cols > 46340) /* LAPACK's int dimensions: cols^2 must fit in an int */
        return sqz_fail(ctx, SQZ_ERR_ARG, "gptq: %lld columns is too many", (long long)cols);
    for (int64_t k = 0; k < rows * cols; k++)
        if (!isfinite(W[k]))
            return sqz_fail(ctx, SQZ_ERR_ARG, "gptq: W has a non-finite entry at (%lld, %lld)",
                            (long long)(k / cols), (long long)(k % cols));
    if (!(o.percdamp >= 0 && isfinite(o.percdamp)))
        return sqz_fail(ctx, SQZ_ERR_ARG, "gptq: percdamp %g must be >= 0", o.percdamp);

    gptq_plan p = { .type = type, .cols = cols, .qk = tr->block_size,
                    .type_size = tr->type_size, .row_size = sqz_type_row_size(type, cols),
                    .B = sqz_gptq_batch_size(o.block, tr->block_size, H && o.act_order),
                    .act_order = H && o.act_order, .refit = o.refit > 0 ? o.refit : 0,
                    .cd_sweeps = H && o.cd_sweeps > 0 ? o.cd_sweeps : 0 };
    double *Hd = NULL, *Hp = NULL;
    float *U = NULL, *imp = NULL, *Hf = NULL, *Hsub = NULL;
    int64_t *perm = NULL, *tmp = NULL;
    uint8_t *dead = NULL;
    sqz_status st = SQZ_OK;
    if (H) {
        const size_t nn = (size_t)cols * (size_t)cols;
        Hd = malloc(nn * sizeof *Hd);
        Hp = malloc(nn * sizeof *Hp);
        U = malloc(nn * sizeof *U);
        imp = malloc((size_t)cols * sizeof *imp);
        dead = calloc((size_t)cols, 1);
        perm = malloc((size_t)cols * sizeof *perm);
        tmp = malloc((size_t)cols * sizeof *tmp);
        if (!Hd || !Hp || !U || !imp || !dead || !perm || !tmp) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "gptq: out of memory for a %lld^2 Hessian",
                          (long long)cols);
            goto done;
        }
        memcpy(Hd, H, nn * sizeof *Hd);
        for (size_t k = 0; k < nn; k++)
            if (!isfinite(Hd[k])) {
                st = sqz_fail(ctx, SQZ_ERR_ARG, "gptq: H has a non-finite entry at (%lld, %lld)",
                              (long long)(k / (size_t)cols), (long long)(k % (size_t)cols));
                goto done;
            }
        /* dead columns (never activated): H_ii = 1 keeps H invertible; W's column is zeroed */
        const double mean = sqz_hessian_fix_dead(Hd, cols, dead); /* the sum, divided just below */
        const double damp = o.percdamp * (mean / (double)cols);
        /* act-order: the columns with the largest activations first, while the most later
         * columns remain to absorb their error */
        const int info = sqz_hessian_prepare(Hd, cols, damp, p.act_order, perm, tmp, Hp, U);
        if (info != 0) {
            st = sqz_fail(ctx, SQZ_ERR_ARG,
                          "gptq: H is not positive definite after damping (percdamp %g; "
                          "LAPACK info %d)",
                          o.percdamp, info);
            goto done;
        }
        for (int64_t i = 0; i < cols; i++) imp[i] = (float)Hd[i * cols + i]; /* the damped diagonal */
        /* the cost of an error in column i, given the columns before it absorb what they can */
        if (o.cond_imp) sqz_gptq_cond_imp(Hp, cols, perm, imp);
        if (p.cd_sweeps) { /* the damped H in f32 for the coordinate descent */
            if (!(Hf = malloc(nn * sizeof *Hf))) {
                st = sqz_fail(ctx, SQZ_ERR_NOMEM, "gptq: out of memory for a %lld^2 Hessian", (long long)cols);
                goto done;
            }
            for (size_t k = 0; k < nn; k++) Hf[k] = (float)Hd[k];
            p.Hf = Hf;
            const int n = sqz_gptq_sub_size(type);
            if (n) { /* sub_moves' blocks: each row of the chunk reads every one of them */
                if (!(Hsub = malloc((size_t)cols * (size_t)n * sizeof *Hsub))) {
                    st = sqz_fail(ctx, SQZ_ERR_NOMEM, "gptq: out of memory for a %lld^2 Hessian", (long long)cols);
                    goto done;
                }
                for (int64_t s0 = 0; s0 < cols; s0 += n)
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++) Hsub[s0 * n + i * n + j] = Hf[(s0 + j) * cols + s0 + i];
                p.Hsub = Hsub;
            }
        }
        p.U = U;
        p.perm = p.act_order ? perm : NULL;
        p.imp = imp;
        p.dead = dead;
    }

    int nth = o.threads > 0 ? o.threads : ctx && ctx->n_threads > 0 ? ctx->n_threads : 1;
    const int64_t nchunks = (rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
    int failed = 0;
#pragma omp parallel for num_threads(nth) schedule(dynamic, 1) if (nth > 1 && nchunks > 1) \
    reduction(| : failed)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        const int64_t r0 = ch * CHUNK_ROWS;
        const int64_t R = rows - r0 < CHUNK_ROWS ? rows - r0 : CHUNK_ROWS;
        failed |= gptq_rows(&p, W + r0 * cols, R, (uint8_t *)out + (size_t)r0 * p.row_size,
                            deq ? deq + r0 * cols : NULL) != 0;
    }
    if (failed) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "gptq: out of memory");
done:
    free(Hd), free(Hp), free(U), free(imp), free(dead), free(perm), free(tmp), free(Hf), free(Hsub);
    return st;
}
