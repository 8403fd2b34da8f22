/* quantize_ref.c - f32 -> llama.cpp's quantized blocks: ggml's reference quantizers
 * (round-to-nearest with each format's own scale / min search) and its importance-weighted
 * variants (llama-quantize --imatrix), reimplemented to give byte-identical output.
 *
 * Why byte-identical: GGUF files made by llama-quantize are the yardstick, and a later step
 * must reproduce them (and llama.cpp's importance matrices) exactly. Every search below
 * therefore keeps ggml's order of f32 operations, its tie-breaking (strict vs non-strict
 * comparisons, which candidate wins) and its rounding helpers: nearest_int (round half to
 * even, via the 1.5*2^23 trick), roundf (half away from zero) for Q8_0, truncation after
 * adding 8.5 / 16.5 / 0.5 for Q4_0 / Q5_0 / Q4_1 / Q5_1. FMA contraction would change
 * roundings, so it is turned off for this file.
 *
 * Glossary: QK = elements per block; x = input values of one (sub-)block; L = chosen quant
 * levels; d / scale = step; min = offset (x ~ scale * L + min, min <= 0, stored negated as
 * dmin); nmax = largest level; w / weights = per-element importance in a weighted least
 * squares fit; qw = importance-matrix entries for these columns; sigma2 = mean square of the
 * row or super-block, which ggml adds to x^2 before weighting by the imatrix.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "formats/types.h"
#include "formats/blocks.h"
#include "formats/qkx3.h"
#include "formats/quant.h"

#define GROUP_MAX_EPS 1e-15f /* a (sub-)block whose max |x| is below this is all zero */

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int iclamp(int v, int lo, int hi) { return imax(lo, imin(hi, v)); }

#define to_f16 sqz_f32_to_f16
#define from_f16 sqz_f16_to_f32

/* Round to nearest, ties to even, for |f| <= 2^22: adding 1.5*2^23 leaves the integer in the
 * low mantissa bits (the FPU does the rounding). ggml's choice; reproduced for its ties. */
static inline int nearest_int(float f) {
    const float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static const int8_t iq4nl_values[16] = { -127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113 };

/* ====================================================================== simple 32-blocks */

/* Q4_0: d = -max/8 where max is the value of largest magnitude, so that it maps to level 0
 * (-8) exactly and the other side gets the 7 positive levels. */
void sqz_q4_0_from_float(const float *x, void *dst, int64_t n) {
    block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const float v0 = x[j] * id, v1 = x[j + QK4_0 / 2] * id;
            const int q0 = imin(15, (int8_t)(v0 + 8.5f)), q1 = imin(15, (int8_t)(v1 + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Q4_1 / Q5_1: min-max fit, d = (max - min) / nmax. */
void sqz_q4_1_from_float(const float *x, void *dst, int64_t n) {
    block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = to_f16(d);
        y[i].m = to_f16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const float v0 = (x[j] - min) * id, v1 = (x[j + QK4_1 / 2] - min) * id;
            const int q0 = imin(15, (int8_t)(v0 + 0.5f)), q1 = imin(15, (int8_t)(v1 + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Packs 32 five-bit levels: low nibbles as Q4_0, 5th bits into the little-endian u32 qh. */
static void pack_q5(const uint8_t *L, uint8_t qs[16], uint8_t qh_out[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0x0f) | (L[j + 16] & 0x0f) << 4);
        qh |= (uint32_t)(L[j] >> 4 & 1) << j;
        qh |= (uint32_t)(L[j + 16] >> 4 & 1) << (j + 16);
    }
    memcpy(qh_out, &qh, 4);
}

void sqz_q5_0_from_float(const float *x, void *dst, int64_t n) {
    block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK5_0; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = to_f16(d);
        uint8_t L[QK5_0];
        for (int j = 0; j < QK5_0; j++) L[j] = (uint8_t)imin(31, (int8_t)(x[j] * id + 16.5f));
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void sqz_q5_1_from_float(const float *x, void *dst, int64_t n) {
    block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK5_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = to_f16(d);
        y[i].m = to_f16(min);
        uint8_t L[QK5_1];
        for (int j = 0; j < QK5_1; j++) L[j] = (uint8_t)((x[j] - min) * id + 0.5f);
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void sqz_q8_0_from_float(const float *x, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = to_f16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* Q8_1: Q8_0 plus s = d * sum(q), for dot products with Q4_1 / Q5_1 weights. */
void sqz_q8_1_from_float(const float *x, void *dst, int64_t n) {
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_1; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = to_f16(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = to_f16(sum * d);
    }
}

/* ====================================================================== scale searches */

/* Symmetric levels -nmax..nmax-1 (returned biased by +nmax in L), scale fitted by weighted
 * least squares. The value of largest magnitude gets level -nmax; then 18 nearby inverse
 * scales (nmax +- 0.1k) are tried and the one maximising sumlx^2/suml2 (= minimising the
 * weighted error after the optimal rescale) wins. Weights: qw if given, else by rmse_type:
 * 1: x^2, 2: 1, 3: |x|, other: sqrt|x|. rmse_type 0: plain rounding, no fit; negative: one
 * fit only, returns the mean of the fitted and the initial scale. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type,
                            const float *qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + iclamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
        return 1 / iscale;
    }
    bool return_early = false;
    if (rmse_type < 0) {
        rmse_type = -rmse_type;
        return_early = true;
    }
#define QX_WEIGHT(i)                                                                       \
    (qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : rmse_type == 3     \
                                                      ? fabsf(x[i]) : sqrtf(fabsf(x[i])))
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = iclamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = QX_WEIGHT(i);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = iclamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = QX_WEIGHT(i);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + iclamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
#undef QX_WEIGHT
    return scale;
}

/* Q3_K's sub-block search: symmetric levels -nmax..nmax-1 with weights x^2, then up to 5
 * passes of coordinate descent, moving one level at a time when that raises sumlx^2/suml2.
 * Returns the scale, L biased by +nmax. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = iclamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                const int new_l = iclamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric levels 0..nmax with x ~ scale * L + min (min <= 0): start from the min-max fit,
 * then try nstep+1 inverse scales (rmin + rdelta*is + nmax) / (max - min), each followed by a
 * weighted least-squares fit of scale and min (min clamped to <= 0); keep the one of least
 * weighted error (squared, or absolute when use_mad). Returns the scale, *the_min = -min.
 * (ggml's make_qkx2_quants: the reference K-quants.) */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta,
                              int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)iclamp(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = iclamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* The same search with optional weights (NULL: x^2) and ggml's guard on the level
 * computation (min may have moved close to max): ggml's make_qkx3_quants, used with an
 * importance matrix. */
float sqz_qkx3_ref(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                   uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
#define W(i) (weights ? weights[i] : x[i] * x[i])
    float min = x[0], max = x[0];
    float sum_w = W(0);
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = W(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)iclamp(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_mad += W(i) * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const float v = iscale * (x[i] - min);
            const int l = v > 0 ? nearest_int(v < nmax ? v : (float)nmax) : 0;
            Laux[i] = (uint8_t)l;
            const float w = W(i);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                mad += W(i) * diff;
            }
            if (mad < best_mad) {
                memcpy(L, Laux, (size_t)n);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
#undef W
}

/* The search as ggml does it; 16 candidates at a time where the CPU has AVX-512 (the same bits,
 * qkx3.h). */
static float make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad) {
    if (n <= 32 && sqz_qkx3_has_avx512())
        return sqz_qkx3_avx512(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep, use_mad);
    return sqz_qkx3_ref(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad);
}

/* Quantizes the (non-negative) sub-block scales or mins x[0..n) of a super-block to levels
 * 0..nmax with weights qw: 9 candidate steps, then coordinate descent as make_q3_quants.
 * L is uint8 as in ggml (the first rounding is stored unclamped, modulo 256). */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)nearest_int(iscale * x[i]);
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        const float diff = x[i] - scale * L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * is + nmax) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            const int l = imin(nmax, nearest_int(iscale_is * x[i]));
            const float diff = x[i] - scale_is * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imin(nmax, nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        const float w = qw[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                const int new_l = imin(nmax, nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ====================================================================== k-quant packing */

/* Q2_K / Q3_K low bits: element j + 32*s of each 128-element half goes to bits 2s..2s+1 of
 * byte j of that half's 32 bytes. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 |
                                      L[j + l + 96] << 6);
}

/* Q4_K / Q5_K: 6-bit scales and mins into 12 bytes (see dequant.c's k4_scale_min). */
static void k4_pack_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t *p) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            p[j] = ls[j];
            p[j + 4] = lm[j];
        } else {
            p[j + 4] = (uint8_t)((ls[j] & 0x0f) | (lm[j] & 0x0f) << 4);
            p[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            p[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

static void k4_scale_min(int j, const uint8_t *p, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = p[j] & 63;
        *m = p[j + 4] & 63;
    } else {
        *sc = (uint8_t)((p[j + 4] & 0x0f) | ((p[j - 4] >> 6) << 4));
        *m = (uint8_t)((p[j + 4] >> 4) | ((p[j] >> 6) << 4));
    }
}

/* Final pass of the Q4_K / Q5_K quantizers: levels 0..nmax from the stored (rounded) scales
 * and mins; a sub-block with a zero scale keeps the levels of its search. */
static void k4_requantize(const float *x, uint16_t d16, uint16_t dmin16, const uint8_t *scales,
                          int nmax, uint8_t *L) {
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        k4_scale_min(j, scales, &sc, &m);
        const float d = from_f16(d16) * sc;
        if (!d) continue;
        const float dm = from_f16(dmin16) * m;
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)iclamp(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
    }
}

static void q4_k_pack(const uint8_t *L, uint8_t *q) {
    for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
}

static void q5_k_pack(const uint8_t *L, uint8_t *ql, uint8_t *qh) {
    memset(qh, 0, QK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
            if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
            ql[j] = (uint8_t)(l1 | l2 << 4);
        }
    }
}

/* Q3_K: the 16 biased 6-bit scales into 12 bytes (see dequant.c). */
static void q3_k_pack_scales(const int *l6, uint8_t *p) {
    memset(p, 0, 12);
    for (int j = 0; j < 16; j++) {
        const int l = l6[j];
        if (j < 8) p[j] = (uint8_t)(l & 0x0f);
        else p[j - 8] |= (uint8_t)((l & 0x0f) << 4);
        p[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
}

/* Q3_K tail shared by both quantizers: levels from the stored scales, then hmask + qs. */
static void q3_k_finish(const float *x, block_q3_K *y, int8_t *L) {
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? y->scales[j] & 0x0f : y->scales[j - 8] >> 4;
        const int sc = (lo | ((y->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
        const float d = from_f16(y->d) * sc;
        if (!d) continue;
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] = (int8_t)(iclamp(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    /* the high bit of element j goes to bit j/32 of hmask[j%32] */
    memset(y->hmask, 0, QK_K / 8);
    uint8_t u[QK_K];
    for (int j = 0; j < QK_K; j++) {
        u[j] = (uint8_t)L[j];
        if (u[j] > 3) {
            y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            u[j] -= 4;
        }
    }
    pack_2bit(u, y->qs);
}

static void q6_k_pack(const int8_t *L, uint8_t *ql, uint8_t *qh) {
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            const uint8_t a = (uint8_t)L[j + l], b = (uint8_t)L[j + l + 32];
            const uint8_t c = (uint8_t)L[j + l + 64], e = (uint8_t)L[j + l + 96];
            ql[l] = (uint8_t)((a & 0x0f) | (c & 0x0f) << 4);
            ql[l + 32] = (uint8_t)((b & 0x0f) | (e & 0x0f) << 4);
            qh[l] = (uint8_t)((a >> 4) | (b >> 4) << 2 | (c >> 4) << 4 | (e >> 4) << 6);
        }
    }
}

/* ====================================================================== reference k-quants */

void sqz_q2_k_from_float(const float *x, void *dst, int64_t n) {
    block_q2_K *y = dst;
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K], Laux[16];
        float weights[16], mins[QK_K / 16], scales[QK_K / 16];
        float max_scale = 0, max_min = 0; /* mins are subtracted, so scales are >= 0 */
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; j++) y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = to_f16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, QK_K / 16);
            y[i].d = to_f16(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = to_f16(max_min / q4scale);
        } else {
            y[i].dmin = to_f16(0.f);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = from_f16(y[i].d) * (y[i].scales[j] & 0x0f);
            if (!d) continue;
            const float dm = from_f16(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (uint8_t)iclamp(nearest_int((x[16 * j + ii] + dm) / d), 0, 3);
        }
        pack_2bit(L, y[i].qs);
    }
}

void sqz_q3_k_from_float(const float *x, void *dst, int64_t n) {
    block_q3_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float a = fabsf(scales[j]);
            if (a > amax) { amax = a; max_scale = scales[j]; }
        }
        int l6[16] = { 0 };
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                /* ggml stores the rounding in an int8 before clamping */
                const int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                l6[j] = iclamp(l, -32, 31) + 32;
            }
            q3_k_pack_scales(l6, y[i].scales);
            y[i].d = to_f16(1 / iscale);
        } else {
            memset(y[i].scales, 0, 12);
            y[i].d = to_f16(0.f);
        }
        q3_k_finish(x, &y[i], L);
    }
}

/* Q4_K / Q5_K reference: per sub-block of 32, make_qkx2_quants with weights av_x + |x|
 * (av_x = rms of the sub-block); then the 8 scales and 8 mins to 6 bits against their max. */
static void qk_ref_common(const float *x, int nmax, float rmin, float rdelta, int nstep,
                          uint8_t *L, uint8_t *scales_out, uint16_t *d_out, uint16_t *dmin_out) {
    uint8_t Laux[32];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < QK_K / 32; j++) {
        /* ggml converts to uint8 before clamping to 63 */
        const uint8_t a = (uint8_t)nearest_int(inv_scale * scales[j]);
        const uint8_t b = (uint8_t)nearest_int(inv_min * mins[j]);
        ls[j] = a < 63 ? a : 63;
        lm[j] = b < 63 ? b : 63;
    }
    k4_pack_scales(ls, lm, scales_out);
    *d_out = to_f16(max_scale / 63.f);
    *dmin_out = to_f16(max_min / 63.f);
    k4_requantize(x, *d_out, *dmin_out, scales_out, nmax, L);
}

void sqz_q4_k_from_float(const float *x, void *dst, int64_t n) {
    block_q4_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        qk_ref_common(x, 15, -1.f, 0.1f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        q4_k_pack(L, y[i].qs);
    }
}

void sqz_q5_k_from_float(const float *x, void *dst, int64_t n) {
    block_q5_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        qk_ref_common(x, 31, -0.5f, 0.1f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        q5_k_pack(L, y[i].qs, y[i].qh);
    }
}

/* Q6_K, both quantizers: sub-block scales from make_qx_quants (weights x^2, or qw), then 8-bit
 * scales against the largest-magnitude one, then levels -32..31 from the stored scales. */
static void q6_k_block(const float *x, block_q6_K *y, const float *qw) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ib++) {
        const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw ? qw + 16 * ib : NULL);
        scales[ib] = scale;
        if (fabsf(scale) > max_abs_scale) {
            max_abs_scale = fabsf(scale);
            max_scale = scale;
        }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float iscale = -128.f / max_scale;
    y->d = to_f16(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ib++) y->scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = from_f16(y->d) * y->scales[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] = (int8_t)(iclamp(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    q6_k_pack(L, y->ql, y->qh);
}

void sqz_q6_k_from_float(const float *x, void *dst, int64_t n) {
    block_q6_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) q6_k_block(x, &y[i], NULL);
}

void sqz_q8_k_from_float(const float *x, void *dst, int64_t n) {
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (!amax) {
            y[i].d = 0;
            memset(y[i].qs, 0, QK_K);
            memset(y[i].bsums, 0, sizeof y[i].bsums); /* ggml leaves them as they were */
            continue;
        }
        /* -127, not -128: keeps every quant in -127..127 (ggml's IQ2_XXS AVX code wants it) */
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) y[i].qs[j] = (int8_t)imin(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++) sum += y[i].qs[16 * j + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ====================================================================== IQ4_NL / IQ4_XS */

/* Index of the level nearest to x in the sorted table val[0..n) (n a power of two); a tie
 * goes to the upper level. Comparing 2x with val[j-1] + val[j] is exact. */
static inline int best_index_int8(int n, const int8_t *val, float x) {
    const float x2 = x + x;
    int idx = 0;
    for (int step = n >> 1; step > 0; step >>= 1) {
        const int j = idx + step;
        if (x2 >= (float)(val[j - 1] + val[j])) idx = j;
    }
    return idx;
}

/* ggml's quantize_row_iq4_nl_impl for the 16-level table: one super-block of super_size
 * elements made of blocks of 32. Per block: weights (x^2, or qw * sqrt(sigma2 + x^2)), a first
 * fit from the largest-magnitude value, then (ntry > 0) inverse scales (itry + values[0]) / max
 * for itry in -ntry..ntry, keeping the best weighted fit. IQ4_XS (several blocks) then stores a
 * 6-bit scale per block against d = -max_scale/32 and requantizes; IQ4_NL stores the fitted
 * scale and (ntry > 0) requantizes with it. */
static void iq4_impl(int super_size, const float *x, uint16_t *dh, uint8_t *q4,
                     uint16_t *scales_h, uint8_t *scales_l, const float *qw, int ntry) {
    enum { BS = 32 };
    const int8_t *values = iq4nl_values;
    float scales[QK_K / BS], weight[BS];
    uint8_t L[QK_K];
    float sigma2 = 0;
    for (int j = 0; j < super_size; j++) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / super_size;

    memset(q4, 0, (size_t)super_size / 2);
    dh[0] = to_f16(0.f);

    float max_scale = 0, amax_scale = 0;
    const int nb = super_size / BS;
    for (int ib = 0; ib < nb; ib++) {
        const float *xb = x + ib * BS;
        uint8_t *Lb = L + ib * BS;
        if (qw) {
            for (int j = 0; j < BS; j++) weight[j] = qw[ib * BS + j] * sqrtf(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < BS; j++) weight[j] = xb[j] * xb[j];
        }
        float amax = 0, max = 0;
        for (int j = 0; j < BS; j++) {
            const float ax = fabsf(xb[j]);
            if (ax > amax) { amax = ax; max = xb[j]; }
        }
        if (amax < GROUP_MAX_EPS) {
            scales[ib] = 0;
            memset(Lb, 0, BS);
            continue;
        }
        float d = ntry > 0 ? -max / values[0] : max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < BS; j++) {
            const int l = best_index_int8(16, values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < BS; j++) {
                const int l = best_index_int8(16, values, id * xb[j]);
                const float q = values[l], w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) {
            amax_scale = fabsf(d);
            max_scale = d;
        }
    }

    if (nb > 1) {
        memset(scales_h, 0, ((nb + 7) / 8) * sizeof(uint16_t));
        const float d = -max_scale / 32;
        dh[0] = to_f16(d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < nb; ib++) {
            int l = iclamp(nearest_int(id * scales[ib]), -32, 31);
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            for (int j = 0; j < BS; j++) L[ib * BS + j] = (uint8_t)best_index_int8(16, values, idl * x[ib * BS + j]);
            l += 32;
            const uint8_t l_l = (uint8_t)(l & 0x0f), l_h = (uint8_t)(l >> 4);
            if (ib % 2 == 0) scales_l[ib / 2] = l_l;
            else scales_l[ib / 2] |= (uint8_t)(l_l << 4);
            scales_h[ib / 8] |= (uint16_t)(l_h << 2 * (ib % 8));
        }
    } else {
        dh[0] = to_f16(scales[0]);
        if (ntry > 0) {
            const float id = scales[0] ? 1 / scales[0] : 0;
            for (int j = 0; j < super_size; j++) L[j] = (uint8_t)best_index_int8(16, values, id * x[j]);
        }
    }
    for (int i = 0; i < super_size / 32; i++)
        for (int j = 0; j < 16; j++) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | L[32 * i + 16 + j] << 4);
}

/* ggml's quantize_row_iq4_nl_ref: ntry = -1, i.e. no scale search and no requantization. */
void sqz_iq4_nl_from_float(const float *x, void *dst, int64_t n) {
    block_iq4_nl *y = dst;
    for (int64_t i = 0; i < n / QK4_NL; i++)
        iq4_impl(QK4_NL, x + QK4_NL * i, &y[i].d, y[i].qs, NULL, NULL, NULL, -1);
}

void sqz_iq4_xs_from_float(const float *x, void *dst, int64_t n) {
    block_iq4_xs *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++)
        iq4_impl(QK_K, x + QK_K * i, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l, NULL, 7);
}

/* ====================================================================== importance-weighted */

/* Q4_0 / Q5_0 with an imatrix: per block, make_qx_quants with weights
 * qw * sqrt(sigma2 + x^2), sigma2 = mean square of the whole row. */
static void q4_0_row_imatrix(const float *x, block_q4_0 *y, int64_t n_per_row, const float *qw) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n_per_row; j++) sum_x2 += x[j] * x[j];
    const float sigma2 = sum_x2 / n_per_row;
    for (int64_t ib = 0; ib < n_per_row / QK4_0; ib++) {
        const float *xb = x + QK4_0 * ib, *w = qw + QK4_0 * ib;
        float weight[QK4_0];
        int8_t L[QK4_0];
        for (int j = 0; j < QK4_0; j++) weight[j] = w[j] * sqrtf(sigma2 + xb[j] * xb[j]);
        y[ib].d = to_f16(make_qx_quants(QK4_0, 8, xb, L, 1, weight));
        for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

static void q5_0_row_imatrix(const float *x, block_q5_0 *y, int64_t n_per_row, const float *qw) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n_per_row; j++) sum_x2 += x[j] * x[j];
    const float sigma2 = sum_x2 / n_per_row;
    for (int64_t ib = 0; ib < n_per_row / QK5_0; ib++) {
        const float *xb = x + QK5_0 * ib, *w = qw + QK5_0 * ib;
        float weight[QK5_0];
        int8_t L[QK5_0];
        for (int j = 0; j < QK5_0; j++) weight[j] = w[j] * sqrtf(sigma2 + xb[j] * xb[j]);
        y[ib].d = to_f16(make_qx_quants(QK5_0, 16, xb, L, 1, weight));
        pack_q5((const uint8_t *)L, y[ib].qs, y[ib].qh);
    }
}

/* Q4_1 / Q5_1 with an imatrix: make_qkx3_quants per block, same weights as Q4_0. */
static void qx_1_row_imatrix(const float *x, void *dst, int64_t n_per_row, const float *qw,
                             int nmax) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n_per_row; j++) sum_x2 += x[j] * x[j];
    const float sigma2 = sum_x2 / n_per_row;
    for (int64_t ib = 0; ib < n_per_row / 32; ib++) {
        const float *xb = x + 32 * ib, *w = qw + 32 * ib;
        float weight[32], min;
        uint8_t L[32], Laux[32];
        for (int j = 0; j < 32; j++) weight[j] = w[j] * sqrtf(sigma2 + xb[j] * xb[j]);
        const float d = make_qkx3_quants(32, nmax, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
        if (nmax == 15) {
            block_q4_1 *y = (block_q4_1 *)dst + ib;
            y->d = to_f16(d);
            y->m = to_f16(-min);
            for (int j = 0; j < 16; j++) y->qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
        } else {
            block_q5_1 *y = (block_q5_1 *)dst + ib;
            y->d = to_f16(d);
            y->m = to_f16(-min);
            pack_q5(L, y->qs, y->qh);
        }
    }
}

static void q2_k_row_imatrix(const float *x, block_q2_K *y, int64_t n_per_row, const float *quant_weights) {
    for (int64_t i = 0; i < n_per_row / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
        float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[16];
        memset(sw, 0, sizeof sw);
        float sumx2 = 0;
        for (int j = 0; j < QK_K; j++) sumx2 += x[j] * x[j];
        const float sigma2 = sumx2 / QK_K;
        for (int j = 0; j < QK_K / 16; j++) {
            const float *qw = quant_weights + QK_K * i + 16 * j;
            for (int l = 0; l < 16; l++) weight[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            for (int l = 0; l < 16; l++) sw[j] += weight[l];
            scales[j] = make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux,
                                         -0.9f, 0.05f, 36, false);
        }
        const float dm0 = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
        const float mm0 = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
        y[i].d = to_f16(dm0);
        y[i].dmin = to_f16(mm0);
        const float dm = from_f16(y[i].d), mm = from_f16(y[i].dmin);
        for (int j = 0; j < QK_K / 16; j++) y[i].scales[j] = (uint8_t)(Ls[j] | Lm[j] << 4);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = dm * (y[i].scales[j] & 0x0f);
            if (!d) continue;
            const float m = mm * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (uint8_t)iclamp(nearest_int((x[16 * j + ii] + m) / d), 0, 3);
        }
        pack_2bit(L, y[i].qs);
    }
}

static void q3_k_row_imatrix(const float *x, block_q3_K *y, int64_t n_per_row, const float *quant_weights) {
    for (int64_t i = 0; i < n_per_row / QK_K; i++, x += QK_K) {
        int8_t L[QK_K], Ls[QK_K / 16];
        float scales[QK_K / 16], weight[16], sw[QK_K / 16];
        float sumx2 = 0;
        for (int j = 0; j < QK_K; j++) sumx2 += x[j] * x[j];
        const float sigma2 = 2 * sumx2 / QK_K;
        for (int j = 0; j < QK_K / 16; j++) {
            const float *qw = quant_weights + QK_K * i + 16 * j;
            for (int l = 0; l < 16; l++) weight[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 16; l++) sumw += weight[l];
            sw[j] = sumw;
            scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
        }
        const float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
        int l6[16];
        for (int j = 0; j < 16; j++) l6[j] = Ls[j];
        q3_k_pack_scales(l6, y[i].scales);
        y[i].d = to_f16(d_block);
        q3_k_finish(x, &y[i], L);
    }
}

/* Q4_K / Q5_K with an imatrix: make_qkx3_quants per sub-block with weights
 * qw * sqrt(sigma2 + x^2) (sigma2 = 2 * mean square of the super-block), then the scales and
 * mins by make_qp_quants weighted by each sub-block's total weight. */
static void qk_imatrix_common(const float *x, const float *qw_block, int nmax, uint8_t *L,
                              uint8_t *scales_out, uint16_t *d_out, uint16_t *dmin_out) {
    uint8_t Laux[32], Ls[QK_K / 32], Lm[QK_K / 32];
    float weights[32], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
    float sum_x2 = 0;
    for (int l = 0; l < QK_K; l++) sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / QK_K;
    for (int j = 0; j < QK_K / 32; j++) {
        const float *qw = qw_block + 32 * j;
        for (int l = 0; l < 32; l++) weights[l] = qw[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; l++) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     -0.9f, 0.05f, 36, false);
    }
    const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    if (nmax == 31) { /* ggml clamps for Q5_K only (make_qp_quants never exceeds 63 anyway) */
        for (int j = 0; j < QK_K / 32; j++) {
            if (Ls[j] > 63) Ls[j] = 63;
            if (Lm[j] > 63) Lm[j] = 63;
        }
    }
    k4_pack_scales(Ls, Lm, scales_out);
    *d_out = to_f16(d_block);
    *dmin_out = to_f16(m_block);
    k4_requantize(x, *d_out, *dmin_out, scales_out, nmax, L);
}

/* ====================================================================== rows */

int sqz_quantize_uses_imatrix(sqz_type t) {
    switch (t) {
    case SQZ_TYPE_Q2_K: case SQZ_TYPE_Q3_K: case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q5_K:
    case SQZ_TYPE_Q6_K: case SQZ_TYPE_Q4_0: case SQZ_TYPE_Q4_1: case SQZ_TYPE_Q5_0:
    case SQZ_TYPE_Q5_1: case SQZ_TYPE_IQ4_NL: case SQZ_TYPE_IQ4_XS:
        return 1;
    default:
        return 0;
    }
}

/* One row with an importance matrix (t uses one). */
static void quantize_row_imatrix(sqz_type t, const float *x, void *y, int64_t n, const float *qw) {
    switch (t) {
    case SQZ_TYPE_Q4_0: q4_0_row_imatrix(x, y, n, qw); break;
    case SQZ_TYPE_Q5_0: q5_0_row_imatrix(x, y, n, qw); break;
    case SQZ_TYPE_Q4_1: qx_1_row_imatrix(x, y, n, qw, 15); break;
    case SQZ_TYPE_Q5_1: qx_1_row_imatrix(x, y, n, qw, 31); break;
    case SQZ_TYPE_Q2_K: q2_k_row_imatrix(x, y, n, qw); break;
    case SQZ_TYPE_Q3_K: q3_k_row_imatrix(x, y, n, qw); break;
    case SQZ_TYPE_Q4_K:
        for (int64_t i = 0; i < n / QK_K; i++) {
            block_q4_K *b = (block_q4_K *)y + i;
            uint8_t L[QK_K];
            qk_imatrix_common(x + QK_K * i, qw + QK_K * i, 15, L, b->scales, &b->d, &b->dmin);
            q4_k_pack(L, b->qs);
        }
        break;
    case SQZ_TYPE_Q5_K:
        for (int64_t i = 0; i < n / QK_K; i++) {
            block_q5_K *b = (block_q5_K *)y + i;
            uint8_t L[QK_K];
            qk_imatrix_common(x + QK_K * i, qw + QK_K * i, 31, L, b->scales, &b->d, &b->dmin);
            q5_k_pack(L, b->qs, b->qh);
        }
        break;
    case SQZ_TYPE_Q6_K:
        /* ggml passes the raw imatrix entries as make_qx_quants' weights here */
        for (int64_t i = 0; i < n / QK_K; i++) q6_k_block(x + QK_K * i, (block_q6_K *)y + i, qw + QK_K * i);
        break;
    case SQZ_TYPE_IQ4_NL:
        for (int64_t i = 0; i < n / QK4_NL; i++) {
            block_iq4_nl *b = (block_iq4_nl *)y + i;
            iq4_impl(QK4_NL, x + QK4_NL * i, &b->d, b->qs, NULL, NULL, qw + QK4_NL * i, 7);
        }
        break;
    case SQZ_TYPE_IQ4_XS:
        for (int64_t i = 0; i < n / QK_K; i++) {
            block_iq4_xs *b = (block_iq4_xs *)y + i;
            iq4_impl(QK_K, x + QK_K * i, &b->d, b->qs, &b->scales_h, b->scales_l, qw + QK_K * i, 7);
        }
        break;
    default: break;
    }
}

size_t sqz_quantize_rows(sqz_type t, const float *src, void *dst, int64_t nrows,
                         int64_t n_per_row, const float *imatrix) {
    const sqz_type_traits *tr = sqz_type_get(t);
    if (!sqz_type_usable(t) || nrows < 0 || n_per_row <= 0 || n_per_row % tr->block_size) return 0;
    const size_t row_size = sqz_type_row_size(t, n_per_row);
    for (int64_t r = 0; r < nrows; r++) {
        const float *x = src + r * n_per_row;
        void *y = (char *)dst + (size_t)r * row_size;
        if (imatrix && sqz_quantize_uses_imatrix(t)) {
            quantize_row_imatrix(t, x, y, n_per_row, imatrix);
            continue;
        }
        switch (t) {
        case SQZ_TYPE_F32: memcpy(y, x, (size_t)n_per_row * sizeof(float)); break;
        case SQZ_TYPE_F16:
            for (int64_t j = 0; j < n_per_row; j++) {
                const uint16_t h = sqz_f32_to_f16(x[j]);
                memcpy((char *)y + 2 * j, &h, 2);
            }
            break;
        case SQZ_TYPE_BF16:
            for (int64_t j = 0; j < n_per_row; j++) {
                const uint16_t h = sqz_f32_to_bf16(x[j]);
                memcpy((char *)y + 2 * j, &h, 2);
            }
            break;
        case SQZ_TYPE_IQ4_NL: {
            /* llama-quantize searches the scale (ntry 7) even without an imatrix */
            block_iq4_nl *b = y;
            for (int64_t i = 0; i < n_per_row / QK4_NL; i++)
                iq4_impl(QK4_NL, x + QK4_NL * i, &b[i].d, b[i].qs, NULL, NULL, NULL, 7);
            break;
        }
        case SQZ_TYPE_Q4_0: case SQZ_TYPE_Q4_1: case SQZ_TYPE_Q5_0: case SQZ_TYPE_Q5_1:
        case SQZ_TYPE_Q8_0: case SQZ_TYPE_Q8_1: case SQZ_TYPE_Q2_K: case SQZ_TYPE_Q3_K:
        case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q5_K: case SQZ_TYPE_Q6_K: case SQZ_TYPE_Q8_K:
        case SQZ_TYPE_IQ4_XS:
            if (!tr->from_float) return 0;
            tr->from_float(x, y, n_per_row);
            break;
        default: return 0;
        }
    }
    return (size_t)nrows * row_size;
}
