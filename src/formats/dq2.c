/* dq2.c - the dq2 type's exact dequantization and round-to-nearest quantizer (see dq2.h). */
#include "formats/dq2.h"

#include <math.h>
#include <string.h>

void sqz_dq2_pack(block_dq2 *b, float d, float m, const uint8_t *codes) {
    b->d = sqz_f32_to_f16(d);
    b->m = sqz_f32_to_f16(m);
    memset(b->qs, 0, sizeof b->qs);
    for (int j = 0; j < QK_DQ2; j++) b->qs[j % 16] |= (uint8_t)((codes[j] & 3) << (2 * (j / 16)));
}

void sqz_dq2_to_float(const void *src, float *dst, int64_t n) {
    const block_dq2 *b = src;
    for (int64_t i = 0; i < n / QK_DQ2; i++, dst += QK_DQ2) {
        const float d = sqz_f16_to_f32(b[i].d), m = sqz_f16_to_f32(b[i].m);
        for (int j = 0; j < QK_DQ2; j++) dst[j] = d * (float)sqz_dq2_code(&b[i], j) + m;
    }
}

void sqz_dq2_rtn_group(const float *x, int n, float *d, float *m, uint8_t *q) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < n; j++) {
        mn = fminf(mn, x[j]);
        mx = fmaxf(mx, x[j]);
    }
    /* the codes are chosen against the stored (half) scale and zero, not the exact ones */
    const float dd = sqz_f16_to_f32(sqz_f32_to_f16((mx - mn) / 3.0f));
    const float mm = sqz_f16_to_f32(sqz_f32_to_f16(mn));
    for (int j = 0; j < n; j++) {
        const float f = dd != 0.0f ? (x[j] - mm) / dd : 0.0f;
        q[j] = (uint8_t)(f >= 3.0f ? 3 : f > 0.0f ? (int)floorf(f + 0.5f) : 0);
    }
    *d = dd;
    *m = mm;
}

void sqz_dq2_from_float(const float *src, void *dst, int64_t n) {
    block_dq2 *b = dst;
    for (int64_t i = 0; i < n / QK_DQ2; i++) {
        float d, m;
        uint8_t q[QK_DQ2];
        sqz_dq2_rtn_group(src + i * QK_DQ2, QK_DQ2, &d, &m, q);
        sqz_dq2_pack(&b[i], d, m, q);
    }
}
