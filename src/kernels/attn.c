/* attn.c - KV row formats (size, encode, decode) and the run-time choice of attention kernels
 * (see attn.h). */
#include "kernels/attn.h"

#include <math.h>
#include <string.h>

#include "formats/types.h"

int sqz_kvrow_bits(sqz_kvrow_type t) {
    return t == SQZ_KVROW_Q8 ? 8 : t == SQZ_KVROW_Q4 ? 4 : t == SQZ_KVROW_Q2 ? 2 : 0;
}

size_t sqz_kvrow_bytes(const sqz_kvrow_fmt *f) {
    switch (f->type) {
    case SQZ_KVROW_F32: return (size_t)f->n * 4;
    case SQZ_KVROW_F16: return (size_t)f->n * 2;
    default: return (size_t)f->n * (size_t)sqz_kvrow_bits(f->type) / 8 + (size_t)(f->n / f->group) * 4;
    }
}

/* Byte and shift of channel c's code (the block layout of attn.h). */
static inline void code_at(int bits, int c, int *byte, int *shift) {
    const int b = c / 32, j = c % 32;
    if (bits == 8) *byte = c, *shift = 0;
    else if (bits == 4) *byte = b * 16 + j % 16, *shift = 4 * (j / 16);
    else *byte = b * 8 + j % 8, *shift = 2 * (j / 8);
}

void sqz_kvrow_encode(const sqz_kvrow_fmt *f, const float *x, void *row) {
    if (f->type == SQZ_KVROW_F32) {
        memcpy(row, x, (size_t)f->n * sizeof(float));
        return;
    }
    if (f->type == SQZ_KVROW_F16) {
        uint16_t *h = row;
        for (int i = 0; i < f->n; i++) h[i] = sqz_f32_to_f16(x[i]);
        return;
    }
    const int bits = sqz_kvrow_bits(f->type), qmax = (1 << bits) - 1;
    uint8_t *codes = row;
    uint16_t *par = (uint16_t *)(codes + (size_t)f->n * bits / 8);
    memset(codes, 0, (size_t)f->n * bits / 8);
    for (int g = 0; g < f->n / f->group; g++) {
        const float *xg = x + (size_t)g * f->group;
        float lo = xg[0], hi = xg[0];
        for (int i = 1; i < f->group; i++) lo = xg[i] < lo ? xg[i] : lo, hi = xg[i] > hi ? xg[i] : hi;
        /* parameters rounded to f16 first, so the codes fit what decoding will use */
        par[2 * g] = sqz_f32_to_f16((hi - lo) / (float)qmax);
        par[2 * g + 1] = sqz_f32_to_f16(lo);
        const float sc = sqz_f16_to_f32(par[2 * g]), mn = sqz_f16_to_f32(par[2 * g + 1]);
        for (int i = 0; i < f->group; i++) {
            int q = sc > 0 ? (int)lrintf((xg[i] - mn) / sc) : 0;
            q = q < 0 ? 0 : q > qmax ? qmax : q;
            int byte, shift;
            code_at(bits, g * f->group + i, &byte, &shift);
            codes[byte] |= (uint8_t)(q << shift);
        }
    }
}

void sqz_kvrow_decode(const sqz_kvrow_fmt *f, const void *row, float *x) {
    if (f->type == SQZ_KVROW_F32) {
        memcpy(x, row, (size_t)f->n * sizeof(float));
        return;
    }
    if (f->type == SQZ_KVROW_F16) {
        const uint16_t *h = row;
        for (int i = 0; i < f->n; i++) x[i] = sqz_f16_to_f32(h[i]);
        return;
    }
    const int bits = sqz_kvrow_bits(f->type), mask = (1 << bits) - 1;
    const uint8_t *codes = row;
    const uint16_t *par = (const uint16_t *)(codes + (size_t)f->n * bits / 8);
    for (int c = 0; c < f->n; c++) {
        int byte, shift;
        code_at(bits, c, &byte, &shift);
        const int g = c / f->group;
        x[c] = sqz_f16_to_f32(par[2 * g + 1]) +
               sqz_f16_to_f32(par[2 * g]) * (float)((codes[byte] >> shift) & mask);
    }
}

sqz_attn_kernels sqz_attn_kernels_get(sqz_isa isa) {
    return isa >= SQZ_ISA_AVX512 ? sqz_attn_kernels_avx512()
           : isa == SQZ_ISA_AVX2 ? sqz_attn_kernels_avx2()
                                 : sqz_attn_kernels_ref();
}

sqz_attn_kernels sqz_attn_kernels_best(void) { return sqz_attn_kernels_get(sqz_isa_best()); }
