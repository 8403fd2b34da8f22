/* types.c - the type-traits table (one row per type: name, block layout, conversions, the
 * activation type of its quantized dot product) and half-precision conversions (portable
 * reference). */
#include "formats/types.h"
#include "formats/bitstack.h"
#include "formats/dq2.h"
#include "formats/mx.h" /* sqz's own types' rows */
#include "formats/quant.h" /* the quantized types' rows below */
#include "formats/sp8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float sqz_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sqz_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign; /* < 2^-25: rounds to 0 */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        int shift = (int)(126 - e); /* 14..24 */
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((ax >> 13) - ((127 - 15) << 10));
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

uint16_t sqz_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

static void f32_to_float(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = sqz_f16_to_f32(s[i]);
}

static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = sqz_bf16_to_f32(s[i]);
}

/* Block sizes and bytes per block are those of ggml (ggml-common.h), so GGUF files map 1:1.
 * Every ggml id has a row: the ones without to_float are known by name and layout only (a GGUF
 * file holding them opens, lists and validates; loading them fails), and the ids ggml removed
 * have a name and no layout. act_type pairs them as llama.cpp does (ggml-cpu's vec_dot_type). */
static const sqz_type_traits traits[SQZ_TYPE_COUNT] = {
    [SQZ_TYPE_F32] = { .name = "f32", .block_size = 1, .type_size = 4, .to_float = f32_to_float },
    [SQZ_TYPE_F16] = { .name = "f16", .block_size = 1, .type_size = 2, .to_float = f16_to_float },
    [SQZ_TYPE_BF16] = { .name = "bf16", .block_size = 1, .type_size = 2, .to_float = bf16_to_float },
    [SQZ_TYPE_Q4_0] = { .name = "q4_0", .block_size = 32, .type_size = 18,
        .to_float = sqz_q4_0_to_float, .from_float = sqz_q4_0_from_float, .act_type = SQZ_TYPE_Q8_0 },
    [SQZ_TYPE_Q4_1] = { .name = "q4_1", .block_size = 32, .type_size = 20,
        .to_float = sqz_q4_1_to_float, .from_float = sqz_q4_1_from_float, .act_type = SQZ_TYPE_Q8_1 },
    [SQZ_TYPE_Q5_0] = { .name = "q5_0", .block_size = 32, .type_size = 22,
        .to_float = sqz_q5_0_to_float, .from_float = sqz_q5_0_from_float, .act_type = SQZ_TYPE_Q8_0 },
    [SQZ_TYPE_Q5_1] = { .name = "q5_1", .block_size = 32, .type_size = 24,
        .to_float = sqz_q5_1_to_float, .from_float = sqz_q5_1_from_float, .act_type = SQZ_TYPE_Q8_1 },
    [SQZ_TYPE_Q8_0] = { .name = "q8_0", .block_size = 32, .type_size = 34,
        .to_float = sqz_q8_0_to_float, .from_float = sqz_q8_0_from_float, .act_type = SQZ_TYPE_Q8_0 },
    [SQZ_TYPE_Q8_1] = { .name = "q8_1", .block_size = 32, .type_size = 36,
        .to_float = sqz_q8_1_to_float, .from_float = sqz_q8_1_from_float },
    [SQZ_TYPE_Q2_K] = { .name = "q2_k", .block_size = 256, .type_size = 84,
        .to_float = sqz_q2_k_to_float, .from_float = sqz_q2_k_from_float, .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_Q3_K] = { .name = "q3_k", .block_size = 256, .type_size = 110,
        .to_float = sqz_q3_k_to_float, .from_float = sqz_q3_k_from_float, .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_Q4_K] = { .name = "q4_k", .block_size = 256, .type_size = 144,
        .to_float = sqz_q4_k_to_float, .from_float = sqz_q4_k_from_float, .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_Q5_K] = { .name = "q5_k", .block_size = 256, .type_size = 176,
        .to_float = sqz_q5_k_to_float, .from_float = sqz_q5_k_from_float, .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_Q6_K] = { .name = "q6_k", .block_size = 256, .type_size = 210,
        .to_float = sqz_q6_k_to_float, .from_float = sqz_q6_k_from_float, .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_Q8_K] = { .name = "q8_k", .block_size = 256, .type_size = 292,
        .to_float = sqz_q8_k_to_float, .from_float = sqz_q8_k_from_float },
    [SQZ_TYPE_IQ4_NL] = { .name = "iq4_nl", .block_size = 32, .type_size = 18,
        .to_float = sqz_iq4_nl_to_float, .from_float = sqz_iq4_nl_from_float, .act_type = SQZ_TYPE_Q8_0 },
    [SQZ_TYPE_IQ4_XS] = { .name = "iq4_xs", .block_size = 256, .type_size = 136,
        .to_float = sqz_iq4_xs_to_float, .from_float = sqz_iq4_xs_from_float, .act_type = SQZ_TYPE_Q8_K },
    /* known by name and layout only */
    [16] = { "iq2_xxs", 256, 66 },  [17] = { "iq2_xs", 256, 74 },
    [18] = { "iq3_xxs", 256, 98 },  [19] = { "iq1_s", 256, 50 },
    [21] = { "iq3_s", 256, 110 },   [22] = { "iq2_s", 256, 82 },
    [24] = { "i8", 1, 1 },          [25] = { "i16", 1, 2 },
    [26] = { "i32", 1, 4 },         [27] = { "i64", 1, 8 },
    [28] = { "f64", 1, 8 },         [29] = { "iq1_m", 256, 56 },
    [34] = { "tq1_0", 256, 54 },    [35] = { "tq2_0", 256, 66 },
    [39] = { "mxfp4", 32, 17 },
    /* removed from ggml: a name, no layout */
    [4] = { "q4_2 (removed)" },     [5] = { "q4_3 (removed)" },
    [31] = { "q4_0_4_4 (removed)" }, [32] = { "q4_0_4_8 (removed)" },
    [33] = { "q4_0_8_8 (removed)" }, [36] = { "iq4_nl_4_4 (removed)" },
    [37] = { "iq4_nl_4_8 (removed)" }, [38] = { "iq4_nl_8_8 (removed)" },
};

/* sqz's own types, indexed by id - SQZ_TYPE_SQZ_FIRST. A row with type_size 0 has no block
 * layout (it cannot be in a file). */
static const sqz_type_traits sqz_traits[SQZ_TYPE_SQZ_END - SQZ_TYPE_SQZ_FIRST] = {
    /* two Q8_0 blocks per group; the kernels sum them for the zero */
    [SQZ_TYPE_DQ2 - SQZ_TYPE_SQZ_FIRST] = { .name = "dq2", .block_size = 64, .type_size = 20,
        .to_float = sqz_dq2_to_float, .from_float = sqz_dq2_from_float, .act_type = SQZ_TYPE_Q8_0 },
    /* mixllm's: their dot products take MXA activations (kernels/mix.h), not a type: F32 here */
    [SQZ_TYPE_MX8 - SQZ_TYPE_SQZ_FIRST] = { .name = "mx8", .block_size = QK_MX, .type_size = sizeof(block_mx8),
        .to_float = sqz_mx8_to_float, .from_float = sqz_mx8_from_float },
    [SQZ_TYPE_MX4 - SQZ_TYPE_SQZ_FIRST] = { .name = "mx4", .block_size = QK_MX, .type_size = sizeof(block_mx4),
        .to_float = sqz_mx4_to_float, .from_float = sqz_mx4_from_float },
    [SQZ_TYPE_MX3 - SQZ_TYPE_SQZ_FIRST] = { .name = "mx3", .block_size = QK_MX, .type_size = sizeof(block_mx3),
        .to_float = sqz_mx3_to_float, .from_float = sqz_mx3_from_float },
    [SQZ_TYPE_MIXLLM - SQZ_TYPE_SQZ_FIRST] = { .name = "mixllm", .block_size = QK_MX, .type_size = 0 },
    /* packed for the kernels (x16.h): whole-matrix layouts, no row layout; their products take
     * Q8_0S activations (x quantized as Q8_0, with the scale widened and the sum kept) */
    [SQZ_TYPE_Q4_0X16 - SQZ_TYPE_SQZ_FIRST] = { .name = "q4_0x16", .block_size = 32, .type_size = 0,
        .act_type = SQZ_TYPE_Q8_0S },
    [SQZ_TYPE_Q8_0X16 - SQZ_TYPE_SQZ_FIRST] = { .name = "q8_0x16", .block_size = 32, .type_size = 0,
        .act_type = SQZ_TYPE_Q8_0S },
    [SQZ_TYPE_Q8_0S - SQZ_TYPE_SQZ_FIRST] = { .name = "q8_0s", .block_size = 32, .type_size = 48 },
    [SQZ_TYPE_Q4_KX16 - SQZ_TYPE_SQZ_FIRST] = { .name = "q4_kx16", .block_size = 256, .type_size = 0,
        .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_Q6_KX16 - SQZ_TYPE_SQZ_FIRST] = { .name = "q6_kx16", .block_size = 256, .type_size = 0,
        .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_Q5_KX16 - SQZ_TYPE_SQZ_FIRST] = { .name = "q5_kx16", .block_size = 256, .type_size = 0,
        .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_Q2_KX16 - SQZ_TYPE_SQZ_FIRST] = { .name = "q2_kx16", .block_size = 256, .type_size = 0,
        .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_Q3_KX16 - SQZ_TYPE_SQZ_FIRST] = { .name = "q3_kx16", .block_size = 256, .type_size = 0,
        .act_type = SQZ_TYPE_Q8_K },
    [SQZ_TYPE_IQ4_XSX16 - SQZ_TYPE_SQZ_FIRST] = { .name = "iq4_xsx16", .block_size = 256, .type_size = 0,
        .act_type = SQZ_TYPE_Q8_K },
    /* a whole sparse matrix (sp8.h): rows of varying bytes, no row layout; its products take
     * x as Q8_0 blocks (kernels/sp8.h) */
    [SQZ_TYPE_SP8 - SQZ_TYPE_SQZ_FIRST] = { .name = "sp8", .block_size = SQZ_SP8_BLOCK, .type_size = 0,
        .act_type = SQZ_TYPE_Q8_0 },
    /* a low-rank matrix (two plain factors, types.h): no row layout; its products take x as
     * f32 (kernels/lowrank.h) */
    [SQZ_TYPE_LOWRANK - SQZ_TYPE_SQZ_FIRST] = { .name = "lowrank", .block_size = 1, .type_size = 0 },
    /* a BitStack matrix (bitstack.h): read row by row (sqz_tensor_row_f32), never run */
    [SQZ_TYPE_BITSTACK - SQZ_TYPE_SQZ_FIRST] = { .name = "bitstack", .block_size = 8, .type_size = 0 },
};

const sqz_type_traits *sqz_type_get(int t) {
    if (t >= SQZ_TYPE_SQZ_FIRST && t < SQZ_TYPE_SQZ_END)
        return sqz_traits[t - SQZ_TYPE_SQZ_FIRST].name ? &sqz_traits[t - SQZ_TYPE_SQZ_FIRST] : NULL;
    if (t < 0 || t >= SQZ_TYPE_COUNT || !traits[t].name) return NULL;
    return &traits[t];
}

int sqz_type_usable(int t) {
    const sqz_type_traits *tr = sqz_type_get(t);
    return t == SQZ_TYPE_MIXLLM || t == SQZ_TYPE_SP8 || t == SQZ_TYPE_LOWRANK || (tr && tr->to_float);
}

int sqz_type_has_layout(int t) {
    const sqz_type_traits *tr = sqz_type_get(t);
    return tr && tr->block_size > 0 && tr->type_size > 0;
}

const char *sqz_type_name(int t) {
    const sqz_type_traits *tr = sqz_type_get(t);
    return tr ? tr->name : "?";
}

size_t sqz_type_row_size(sqz_type t, int64_t n) {
    const sqz_type_traits *tr = sqz_type_get(t);
    return (size_t)(n / tr->block_size) * tr->type_size;
}

size_t sqz_tensor_nbytes(const sqz_tensor *t) {
    if (!t->data) return 0;
    if (t->type == SQZ_TYPE_MIXLLM) {
        const sqz_mix_tensor *m = t->data;
        return (size_t)m->n8 * sqz_type_row_size(SQZ_TYPE_MX8, t->cols) +
               (size_t)(t->rows - m->n8) * sqz_type_row_size(m->lo_type, t->cols) +
               (size_t)t->rows * sizeof(int32_t);
    }
    if (t->type == SQZ_TYPE_SP8) {
        const sqz_sp8_tensor *s = t->data;
        return (size_t)s->row_off[t->rows] + (size_t)(t->rows + 1) * sizeof *s->row_off;
    }
    if (t->type == SQZ_TYPE_LOWRANK) {
        const sqz_lr_tensor *lr = t->data;
        return sqz_tensor_nbytes(&lr->a) + sqz_tensor_nbytes(&lr->b);
    }
    if (t->type == SQZ_TYPE_BITSTACK) { /* the blocks in use and what every budget holds */
        const sqz_bs_tensor *b = t->data;
        return (size_t)(sqz_bs_fixed_bytes(t->cols, b->n_blocks) +
                        (uint64_t)b->n_use * sqz_bs_block_bytes(t->rows, t->cols, b->rank));
    }
    return (size_t)t->rows * sqz_type_row_size(t->type, t->cols);
}

void sqz_tensor_row_f32(const sqz_tensor *t, int64_t r, float *out) {
    if (t->type == SQZ_TYPE_MIXLLM) { /* find the stored row of output feature r */
        const sqz_mix_tensor *m = t->data;
        int64_t i = 0;
        while (i < t->rows && m->perm[i] != r) i++;
        if (i < m->n8)
            sqz_mx8_to_float((const char *)m->hi + (size_t)i * sqz_type_row_size(SQZ_TYPE_MX8, t->cols), out, t->cols);
        else
            sqz_type_get(m->lo_type)->to_float((const char *)m->lo + (size_t)(i - m->n8) *
                                               sqz_type_row_size(m->lo_type, t->cols), out, t->cols);
        return;
    }
    if (t->type == SQZ_TYPE_SP8) {
        const sqz_sp8_tensor *s = t->data;
        sqz_sp8_unpack_row(s->data + s->row_off[r], t->cols, out);
        return;
    }
    if (t->type == SQZ_TYPE_LOWRANK) { /* out = b[r] . a, one row of a at a time */
        const sqz_lr_tensor *lr = t->data;
        const int64_t k = lr->a.rows, n = t->cols;
        float *br = malloc((size_t)(k + n) * sizeof *br);
        for (int64_t j = 0; j < n; j++) out[j] = br ? 0.0f : NAN;
        if (!br) return;
        float *ar = br + k;
        sqz_tensor_row_f32(&lr->b, r, br);
        for (int64_t i = 0; i < k; i++) {
            sqz_tensor_row_f32(&lr->a, i, ar);
            for (int64_t j = 0; j < n; j++) out[j] += br[i] * ar[j];
        }
        free(br);
        return;
    }
    if (t->type == SQZ_TYPE_BITSTACK) {
        sqz_bs_row(t->data, t->rows, t->cols, r, out);
        return;
    }
    const sqz_type_traits *tr = sqz_type_get(t->type);
    size_t rs = sqz_type_row_size(t->type, t->cols);
    tr->to_float((const char *)t->data + (size_t)r * rs, out, t->cols);
}
