/* x16.c - repacking Q4_0 / Q8_0 rows into 16-row groups and back (x16.h has the layout). */
#include "formats/x16.h"

#include <string.h>

#include "formats/blocks.h"

sqz_type sqz_x16_type_of(sqz_type t) {
    return t == SQZ_TYPE_Q4_0 ? SQZ_TYPE_Q4_0X16 : t == SQZ_TYPE_Q8_0 ? SQZ_TYPE_Q8_0X16 : SQZ_TYPE_F32;
}

/* element k (0..31) of a Q4_0 block as its unsigned 4-bit value */
static inline uint8_t q4_get(const block_q4_0 *b, int k) {
    return k < 16 ? b->qs[k] & 0x0F : b->qs[k - 16] >> 4;
}

void sqz_x16_pack(sqz_type t, const void *src, int64_t rows, int64_t cols, void *dst) {
    const int64_t nb = cols / 32;
    if (t == SQZ_TYPE_Q4_0) {
        const block_q4_0 *in = src;
        block_q4_0x16 *out = dst;
        for (int64_t g = 0; g < rows / 16; g++)
            for (int64_t b = 0; b < nb; b++) {
                block_q4_0x16 *o = &out[g * nb + b];
                for (int i = 0; i < 16; i++) {
                    const block_q4_0 *x = &in[(g * 16 + i) * nb + b];
                    o->d[i] = x->d;
                    for (int j = 0; j < 4; j++)
                        for (int c = 0; c < 4; c++)
                            o->qs[64 * j + 4 * i + c] =
                                (uint8_t)(q4_get(x, 8 * j + c) | q4_get(x, 8 * j + 4 + c) << 4);
                }
            }
    } else {
        const block_q8_0 *in = src;
        block_q8_0x16 *out = dst;
        for (int64_t g = 0; g < rows / 16; g++)
            for (int64_t b = 0; b < nb; b++) {
                block_q8_0x16 *o = &out[g * nb + b];
                for (int i = 0; i < 16; i++) {
                    const block_q8_0 *x = &in[(g * 16 + i) * nb + b];
                    o->d[i] = x->d;
                    for (int j = 0; j < 8; j++)
                        for (int c = 0; c < 4; c++) o->qs[64 * j + 4 * i + c] = x->qs[4 * j + c];
                }
            }
    }
}

void sqz_x16_unpack_row(sqz_type packed, const void *src, int64_t r, int64_t cols, void *dst) {
    const int64_t nb = cols / 32, g = r / 16;
    const int i = (int)(r % 16);
    if (packed == SQZ_TYPE_Q4_0X16) {
        const block_q4_0x16 *in = src;
        block_q4_0 *out = dst;
        for (int64_t b = 0; b < nb; b++) {
            const block_q4_0x16 *x = &in[g * nb + b];
            uint8_t q[32];
            for (int j = 0; j < 4; j++)
                for (int c = 0; c < 4; c++) {
                    const uint8_t v = x->qs[64 * j + 4 * i + c];
                    q[8 * j + c] = v & 0x0F;
                    q[8 * j + 4 + c] = v >> 4;
                }
            out[b].d = x->d[i];
            for (int l = 0; l < 16; l++) out[b].qs[l] = (uint8_t)(q[l] | q[l + 16] << 4);
        }
    } else {
        const block_q8_0x16 *in = src;
        block_q8_0 *out = dst;
        for (int64_t b = 0; b < nb; b++) {
            const block_q8_0x16 *x = &in[g * nb + b];
            out[b].d = x->d[i];
            for (int j = 0; j < 8; j++)
                for (int c = 0; c < 4; c++) out[b].qs[4 * j + c] = x->qs[64 * j + 4 * i + c];
        }
    }
}
