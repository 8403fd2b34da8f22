/* attn_ref.c - reference attention kernels over KV rows (attn.h): one channel at a time, each
 * decoded from its code as the format defines it. The yardstick of attn_avx2.c. */
#include "kernels/attn.h"

#include "formats/types.h"
#include "kernels/ops.h"

/* Channel c of a row. */
static float channel(const sqz_kvrow_fmt *f, const uint8_t *row, int c) {
    switch (f->type) {
    case SQZ_KVROW_F32: return ((const float *)row)[c];
    case SQZ_KVROW_F16: return sqz_f16_to_f32(((const uint16_t *)row)[c]);
    default: break;
    }
    const int bits = sqz_kvrow_bits(f->type), b = c / 32, j = c % 32;
    int code;
    if (bits == 8) code = row[c];
    else if (bits == 4) code = (row[b * 16 + j % 16] >> (4 * (j / 16))) & 15;
    else code = (row[b * 8 + j % 8] >> (2 * (j / 8))) & 3;
    const uint16_t *par = (const uint16_t *)(row + (size_t)f->n * bits / 8);
    const int g = c / f->group;
    return sqz_f16_to_f32(par[2 * g + 1]) + sqz_f16_to_f32(par[2 * g]) * (float)code;
}

static void scores_ref(const sqz_kvrow_fmt *f, int nq, const float *q, const void *rows,
                       size_t ld, int P, float scale, float *s, size_t sld) {
    for (int p = 0; p < P; p++) {
        const uint8_t *row = (const uint8_t *)rows + (size_t)p * ld;
        for (int j = 0; j < nq; j++) {
            float d = 0;
            for (int c = 0; c < f->n; c++) d += q[(size_t)j * f->n + c] * channel(f, row, c);
            s[(size_t)j * sld + p] = d * scale;
        }
    }
}

static void accum_ref(const sqz_kvrow_fmt *f, int nq, const float *w, size_t wld,
                      const void *rows, size_t ld, int P, float *y) {
    for (int p = 0; p < P; p++) {
        const uint8_t *row = (const uint8_t *)rows + (size_t)p * ld;
        for (int c = 0; c < f->n; c++) {
            const float x = channel(f, row, c);
            for (int j = 0; j < nq; j++) y[(size_t)j * f->n + c] += w[(size_t)j * wld + p] * x;
        }
    }
}

sqz_attn_kernels sqz_attn_kernels_ref(void) {
    return (sqz_attn_kernels){ scores_ref, accum_ref, sqz_softmax };
}
