/* sp8_ref.c - the reference sp8 matrix-vector product (kernels/sp8.h): per block, the integer
 * sum of the kept weights' q times the activations' q at the mask's positions, scaled by
 * d_w * d_x. */
#include <string.h>

#include "formats/blocks.h"
#include "kernels/sp8.h"

void sqz_sp8_matvec_ref(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1) {
    const block_q8_0 *a = xq;
    const int64_t nb = cols / SQZ_SP8_BLOCK;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = m->data + m->row_off[r], *p = row + nb * SQZ_SP8_HEAD;
        float sum = 0;
        for (int64_t b = 0; b < nb; b++) {
            uint32_t mask;
            uint16_t dh;
            memcpy(&mask, row + 4 * b, 4);
            memcpy(&dh, row + 4 * nb + 2 * b, 2);
            int32_t isum = 0;
            for (int j = 0; j < SQZ_SP8_BLOCK; j++)
                if (mask >> j & 1) isum += (*p++ - 128) * a[b].qs[j];
            sum += sqz_f16_to_f32(dh) * sqz_f16_to_f32(a[b].d) * (float)isum;
        }
        y[r] = sum;
    }
}
