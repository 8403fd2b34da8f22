/* qdot_ref.c - portable reference tier of the quantized dot products: activation quantizers
 * (ggml's quantize_row_q8_{0,1,K}_ref, byte for byte) and row . xq as plain integer loops, one
 * element at a time, straight from the block layouts (formats/blocks.h).
 *
 * Glossary: n elements; nb blocks; QK elements per block; w weight blocks, a activation blocks;
 * d scale, dmin / m minimum, sc sub-block scale, q quant; isum exact integer sum of q_w * q_a
 * (with the sub-block scales folded in for the k-quants), msum the same for the minimums.
 * Every block's float work is isum * (d_w * d_a) [- msum * (dmin_w * d_a)], summed in order.
 */
#include <math.h>

#include "kernels/mix.h"
#include "kernels/sp8.h"
#include "kernels/lowrank.h"
#include "kernels/x16.h"
#include "kernels/qdot.h"
#include "kernels/qdot_dq2.h"

static float f16(uint16_t h) { return sqz_f16_to_f32(h); }

/* ------------------------------------------------------------ activation quantizers */

/* Q8_0: d = amax / 127, q = round(x / d) half away from zero (roundf), as ggml's reference. */
static void quantize_q8_0(const float *x, void *vxq, int64_t n) {
    block_q8_0 *a = vxq;
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        a[b].d = sqz_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) a[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* Q8_1: Q8_0 plus s = d * sum(q) (d before its rounding to f16). */
static void quantize_q8_1(const float *x, void *vxq, int64_t n) {
    block_q8_1 *a = vxq;
    for (int64_t b = 0; b < n / QK8_1; b++, x += QK8_1) {
        float amax = 0;
        for (int j = 0; j < QK8_1; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            a[b].qs[j] = (int8_t)roundf(x[j] * id);
            sum += a[b].qs[j];
        }
        a[b].d = sqz_f32_to_f16(d);
        a[b].s = sqz_f32_to_f16((float)sum * d);
    }
}

/* Q8_K: the first element of largest magnitude maps to -127 exactly (iscale = -127 / max),
 * rounding to nearest even, clamped to 127; f32 d = 1 / iscale; bsums = sums of 16. */
static void quantize_q8_k(const float *x, void *vxq, int64_t n) {
    block_q8_K *a = vxq;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        if (amax == 0.0f) {
            memset(&a[b], 0, sizeof a[b]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            const long v = lrintf(iscale * x[j]); /* default rounding: to nearest even */
            a[b].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += a[b].qs[16 * g + j];
            a[b].bsums[g] = (int16_t)sum;
        }
        a[b].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------ 32-element blocks */

static float vdq_q4_0(int64_t n, const void *row, const void *xq) {
    const block_q4_0 *w = row;
    const block_q8_0 *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) { /* low nibbles: elements 0..15, high: 16..31 */
            isum += ((w[b].qs[j] & 0x0f) - 8) * a[b].qs[j];
            isum += ((w[b].qs[j] >> 4) - 8) * a[b].qs[j + 16];
        }
        sum += (float)isum * (f16(w[b].d) * f16(a[b].d));
    }
    return sum;
}

/* x = d*q + m, so row . a = d_w d_a sum(q_w q_a) + m * (d_a sum(q_a)) = ... + m * s_a. */
static float vdq_q4_1(int64_t n, const void *row, const void *xq) {
    const block_q4_1 *w = row;
    const block_q8_1 *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            isum += (w[b].qs[j] & 0x0f) * a[b].qs[j];
            isum += (w[b].qs[j] >> 4) * a[b].qs[j + 16];
        }
        sum += (float)isum * (f16(w[b].d) * f16(a[b].d)) + f16(w[b].m) * f16(a[b].s);
    }
    return sum;
}

/* Q5_0 / Q5_1: bit j of the little-endian u32 qh is the 5th bit of element j. */
static int q5_quant(const uint8_t *qs, uint32_t qh, int j) {
    const int lo = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    return lo | (int)((qh >> j) & 1) << 4;
}

static float vdq_q5_0(int64_t n, const void *row, const void *xq) {
    const block_q5_0 *w = row;
    const block_q8_0 *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK5_0; b++) {
        uint32_t qh;
        memcpy(&qh, w[b].qh, 4);
        int isum = 0;
        for (int j = 0; j < QK5_0; j++) isum += (q5_quant(w[b].qs, qh, j) - 16) * a[b].qs[j];
        sum += (float)isum * (f16(w[b].d) * f16(a[b].d));
    }
    return sum;
}

static float vdq_q5_1(int64_t n, const void *row, const void *xq) {
    const block_q5_1 *w = row;
    const block_q8_1 *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK5_1; b++) {
        uint32_t qh;
        memcpy(&qh, w[b].qh, 4);
        int isum = 0;
        for (int j = 0; j < QK5_1; j++) isum += q5_quant(w[b].qs, qh, j) * a[b].qs[j];
        sum += (float)isum * (f16(w[b].d) * f16(a[b].d)) + f16(w[b].m) * f16(a[b].s);
    }
    return sum;
}

static float vdq_q8_0(int64_t n, const void *row, const void *xq) {
    const block_q8_0 *w = row;
    const block_q8_0 *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int isum = 0;
        for (int j = 0; j < QK8_0; j++) isum += w[b].qs[j] * a[b].qs[j];
        sum += (float)isum * (f16(w[b].d) * f16(a[b].d));
    }
    return sum;
}

static float vdq_iq4_nl(int64_t n, const void *row, const void *xq) {
    const block_iq4_nl *w = row;
    const block_q8_0 *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_NL; b++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            isum += sqz_iq4nl_levels[w[b].qs[j] & 0x0f] * a[b].qs[j];
            isum += sqz_iq4nl_levels[w[b].qs[j] >> 4] * a[b].qs[j + 16];
        }
        sum += (float)isum * (f16(w[b].d) * f16(a[b].d));
    }
    return sum;
}

/* ------------------------------------------------------------ k-quants (256-element blocks) */

/* Q2_K element e (0..255): 2 bits of qs[32*(e/128) + e%32] at bit 2*((e%128)/32);
 * sub-block e/16 has scale scales[e/16] & 15 and min scales[e/16] >> 4. */
static float vdq_q2_k(int64_t n, const void *row, const void *xq) {
    const block_q2_K *w = row;
    const block_q8_K *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int isum = 0, msum = 0;
        for (int s = 0; s < 16; s++) {
            int sub = 0;
            for (int e = 16 * s; e < 16 * s + 16; e++) {
                const int q = (w[b].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
                sub += q * a[b].qs[e];
            }
            isum += (w[b].scales[s] & 15) * sub;
            msum += (w[b].scales[s] >> 4) * a[b].bsums[s];
        }
        sum += (float)isum * (f16(w[b].d) * a[b].d) - (float)msum * (f16(w[b].dmin) * a[b].d);
    }
    return sum;
}

/* Q3_K element e: the 2 low bits as in Q2_K, minus 4 unless bit e/32 of hmask[e%32] is set;
 * sub-block e/16 has a signed 6-bit scale. */
static float vdq_q3_k(int64_t n, const void *row, const void *xq) {
    const block_q3_K *w = row;
    const block_q8_K *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int8_t sc[16];
        sqz_q3k_scales(w[b].scales, sc);
        int isum = 0;
        for (int s = 0; s < 16; s++) {
            int sub = 0;
            for (int e = 16 * s; e < 16 * s + 16; e++) {
                const int lo = (w[b].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
                const int hi = (w[b].hmask[e % 32] >> (e / 32)) & 1;
                sub += (lo - (hi ? 0 : 4)) * a[b].qs[e];
            }
            isum += sc[s] * sub;
        }
        sum += (float)isum * (f16(w[b].d) * a[b].d);
    }
    return sum;
}

/* Q4_K element e: nibble of qs[32*(e/64) + e%32], low for e%64 < 32, high otherwise;
 * sub-block e/32 has a 6-bit scale and a 6-bit min. The mins meet bsums (pairs of 16). */
static float vdq_q4_k(int64_t n, const void *row, const void *xq) {
    const block_q4_K *w = row;
    const block_q8_K *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], m[8];
        sqz_k4_scales(w[b].scales, sc, m);
        int isum = 0, msum = 0;
        for (int s = 0; s < 8; s++) {
            int sub = 0;
            for (int e = 32 * s; e < 32 * s + 32; e++) {
                const uint8_t byte = w[b].qs[32 * (e / 64) + e % 32];
                sub += (e % 64 < 32 ? byte & 0x0f : byte >> 4) * a[b].qs[e];
            }
            isum += sc[s] * sub;
            msum += m[s] * (a[b].bsums[2 * s] + a[b].bsums[2 * s + 1]);
        }
        sum += (float)isum * (f16(w[b].d) * a[b].d) - (float)msum * (f16(w[b].dmin) * a[b].d);
    }
    return sum;
}

/* Q5_K: Q4_K plus a 5th bit, bit e/32 of qh[e%32]. */
static float vdq_q5_k(int64_t n, const void *row, const void *xq) {
    const block_q5_K *w = row;
    const block_q8_K *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], m[8];
        sqz_k4_scales(w[b].scales, sc, m);
        int isum = 0, msum = 0;
        for (int s = 0; s < 8; s++) {
            int sub = 0;
            for (int e = 32 * s; e < 32 * s + 32; e++) {
                const uint8_t byte = w[b].qs[32 * (e / 64) + e % 32];
                const int q = (e % 64 < 32 ? byte & 0x0f : byte >> 4) |
                              ((w[b].qh[e % 32] >> (e / 32)) & 1) << 4;
                sub += q * a[b].qs[e];
            }
            isum += sc[s] * sub;
            msum += m[s] * (a[b].bsums[2 * s] + a[b].bsums[2 * s + 1]);
        }
        sum += (float)isum * (f16(w[b].d) * a[b].d) - (float)msum * (f16(w[b].dmin) * a[b].d);
    }
    return sum;
}

/* Q6_K element e = 128h + 32j + l: low nibble of ql[64h + l + 32*(j&1)] (low half for j < 2,
 * high half otherwise), top 2 bits at bit 2j of qh[32h + l]; minus 32; int8 scale per 16. */
static float vdq_q6_k(int64_t n, const void *row, const void *xq) {
    const block_q6_K *w = row;
    const block_q8_K *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int isum = 0;
        for (int s = 0; s < 16; s++) {
            int sub = 0;
            for (int e = 16 * s; e < 16 * s + 16; e++) {
                const int h = e / 128, j = (e % 128) / 32, l = e % 32;
                const uint8_t byte = w[b].ql[64 * h + l + 32 * (j & 1)];
                const int q = ((j < 2 ? byte & 0x0f : byte >> 4) |
                               ((w[b].qh[32 * h + l] >> (2 * j)) & 3) << 4) - 32;
                sub += q * a[b].qs[e];
            }
            isum += w[b].scales[s] * sub;
        }
        sum += (float)isum * (f16(w[b].d) * a[b].d);
    }
    return sum;
}

/* IQ4_XS: 8 sub-blocks of 32 laid out as IQ4_NL blocks, each with a 6-bit scale. */
static float vdq_iq4_xs(int64_t n, const void *row, const void *xq) {
    const block_iq4_xs *w = row;
    const block_q8_K *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int isum = 0;
        for (int s = 0; s < 8; s++) {
            const uint8_t *qs = w[b].qs + 16 * s;
            const int8_t *q8 = a[b].qs + 32 * s;
            int sub = 0;
            for (int j = 0; j < 16; j++) {
                sub += sqz_iq4nl_levels[qs[j] & 0x0f] * q8[j];
                sub += sqz_iq4nl_levels[qs[j] >> 4] * q8[j + 16];
            }
            isum += sqz_iq4xs_scale(&w[b], s) * sub;
        }
        sum += (float)isum * (f16(w[b].d) * a[b].d);
    }
    return sum;
}

/* ------------------------------------------------------------ row . f32 x, dequantizing */

/* Converts QK_K elements at a time with the type's to_float and dots them in order. */
static float dot_dequant(sqz_type t, const void *row, const float *x, int64_t n) {
    const sqz_type_traits *tr = sqz_type_get(t);
    float buf[QK_K];
    const int64_t step = QK_K / tr->block_size * tr->block_size; /* whole blocks */
    float s = 0;
    for (int64_t i = 0; i < n; i += step) {
        const int64_t m = n - i < step ? n - i : step;
        tr->to_float((const char *)row + (size_t)(i / tr->block_size) * tr->type_size, buf, m);
        for (int64_t j = 0; j < m; j++) s += buf[j] * x[i + j];
    }
    return s;
}

#define DOT_DEQUANT(name, type)                                                                \
    static float dot_##name(const void *row, const float *x, int64_t n) {                      \
        return dot_dequant(type, row, x, n);                                                   \
    }
DOT_DEQUANT(q4_0, SQZ_TYPE_Q4_0)
DOT_DEQUANT(q4_1, SQZ_TYPE_Q4_1)
DOT_DEQUANT(q5_0, SQZ_TYPE_Q5_0)
DOT_DEQUANT(q5_1, SQZ_TYPE_Q5_1)
DOT_DEQUANT(q8_0, SQZ_TYPE_Q8_0)
DOT_DEQUANT(q8_1, SQZ_TYPE_Q8_1)
DOT_DEQUANT(q2_k, SQZ_TYPE_Q2_K)
DOT_DEQUANT(q3_k, SQZ_TYPE_Q3_K)
DOT_DEQUANT(q4_k, SQZ_TYPE_Q4_K)
DOT_DEQUANT(q5_k, SQZ_TYPE_Q5_K)
DOT_DEQUANT(q6_k, SQZ_TYPE_Q6_K)
DOT_DEQUANT(q8_k, SQZ_TYPE_Q8_K)
DOT_DEQUANT(iq4_nl, SQZ_TYPE_IQ4_NL)
DOT_DEQUANT(iq4_xs, SQZ_TYPE_IQ4_XS)

/* The reference tier's table (kernels.h): every type sqz computes with has its dot product
 * here, so the lookups' fallback to lower tiers always ends with a kernel. */
const sqz_kernel_row sqz_kernels_ref[SQZ_TYPE_SLOTS] = {
    [SQZ_TYPE_SLOT(SQZ_TYPE_F32)] = { .dot = sqz_dot_f32_ref },
    [SQZ_TYPE_SLOT(SQZ_TYPE_F16)] = { .dot = sqz_dot_f16_ref },
    [SQZ_TYPE_SLOT(SQZ_TYPE_BF16)] = { .dot = sqz_dot_bf16_ref },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_0)] = { .dot = dot_q4_0, .vec_dot_q = vdq_q4_0 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_1)] = { .dot = dot_q4_1, .vec_dot_q = vdq_q4_1 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_0)] = { .dot = dot_q5_0, .vec_dot_q = vdq_q5_0 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_1)] = { .dot = dot_q5_1, .vec_dot_q = vdq_q5_1 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_0)] = { .dot = dot_q8_0, .vec_dot_q = vdq_q8_0, .quantize_act = quantize_q8_0 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_1)] = { .dot = dot_q8_1, .quantize_act = quantize_q8_1 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q2_K)] = { .dot = dot_q2_k, .vec_dot_q = vdq_q2_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q3_K)] = { .dot = dot_q3_k, .vec_dot_q = vdq_q3_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_K)] = { .dot = dot_q4_k, .vec_dot_q = vdq_q4_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_K)] = { .dot = dot_q5_k, .vec_dot_q = vdq_q5_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q6_K)] = { .dot = dot_q6_k, .vec_dot_q = vdq_q6_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_K)] = { .dot = dot_q8_k, .quantize_act = quantize_q8_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_IQ4_NL)] = { .dot = dot_iq4_nl, .vec_dot_q = vdq_iq4_nl },
    [SQZ_TYPE_SLOT(SQZ_TYPE_IQ4_XS)] = { .dot = dot_iq4_xs, .vec_dot_q = vdq_iq4_xs },
    [SQZ_TYPE_SLOT(SQZ_TYPE_DQ2)] = { .dot = sqz_dq2_dot_ref, .vec_dot_q = sqz_dq2_vec_dot_q_ref },
    /* mixllm's types: row . MXA activations (kernels/mix.h), reached through the mixed matrix */
    [SQZ_TYPE_SLOT(SQZ_TYPE_MX8)] = { .vec_dot_q = sqz_mx8_dot_mxa_ref },
    [SQZ_TYPE_SLOT(SQZ_TYPE_MX4)] = { .vec_dot_q = sqz_mx4_dot_mxa_ref },
    [SQZ_TYPE_SLOT(SQZ_TYPE_MX3)] = { .vec_dot_q = sqz_mx3_dot_mxa_ref },
    /* the mixed matrix: its own whole-matrix products (mix_matmul.c) */
    [SQZ_TYPE_SLOT(SQZ_TYPE_MIXLLM)] = { .matrix = &sqz_mix_matrix_ops },
    /* sqz's sparse int8 matrix: its own products (sp8_matmul.c) */
    [SQZ_TYPE_SLOT(SQZ_TYPE_SP8)] = { .matrix = &sqz_sp8_matrix_ops },
    /* a low-rank matrix: two products with its factors (lowrank_matmul.c) */
    [SQZ_TYPE_SLOT(SQZ_TYPE_LOWRANK)] = { .matrix = &sqz_lowrank_matrix_ops },
    /* Q4_0 / Q8_0 repacked in 16-row groups: whole-matrix products (x16.c) */
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_0X16)] = { .matrix = &sqz_x16_matrix_ops },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_0X16)] = { .matrix = &sqz_x16_matrix_ops },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_KX16)] = { .matrix = &sqz_x16k_matrix_ops },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q6_KX16)] = { .matrix = &sqz_x16k_matrix_ops },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_KX16)] = { .matrix = &sqz_x16k_matrix_ops },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q2_KX16)] = { .matrix = &sqz_x16k_matrix_ops },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q3_KX16)] = { .matrix = &sqz_x16k_matrix_ops },
    [SQZ_TYPE_SLOT(SQZ_TYPE_IQ4_XSX16)] = { .matrix = &sqz_x16k_matrix_ops },
};
