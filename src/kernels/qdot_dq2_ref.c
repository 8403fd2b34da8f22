/* qdot_dq2_ref.c - reference dq2 kernels: row . Q8_0 activations and row . f32 x as plain
 * loops over the block layout (formats/dq2.h); rows of the tier tables (qdot_ref.c). */
#include "kernels/qdot_dq2.h"

#include "formats/blocks.h"
#include "formats/dq2.h"

/* Per Q8_0 half of a group: isum = sum q_w * q_a, asum = sum q_a (exact integers); the float
 * work is d_a * (d * isum + m * asum), summed in order. */
float sqz_dq2_vec_dot_q_ref(int64_t n, const void *row, const void *xq) {
    const block_dq2 *w = row;
    const block_q8_0 *a = xq;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_DQ2; b++) {
        const float d = sqz_f16_to_f32(w[b].d), m = sqz_f16_to_f32(w[b].m);
        for (int h = 0; h < 2; h++) {
            const block_q8_0 *ab = &a[2 * b + h];
            int isum = 0, asum = 0;
            for (int j = 0; j < QK8_0; j++) {
                isum += sqz_dq2_code(&w[b], QK8_0 * h + j) * ab->qs[j];
                asum += ab->qs[j];
            }
            sum += sqz_f16_to_f32(ab->d) * (d * (float)isum + m * (float)asum);
        }
    }
    return sum;
}

float sqz_dq2_dot_ref(const void *row, const float *x, int64_t n) {
    float buf[QK_DQ2], sum = 0;
    for (int64_t b = 0; b < n / QK_DQ2; b++) {
        sqz_dq2_to_float((const block_dq2 *)row + b, buf, QK_DQ2);
        for (int j = 0; j < QK_DQ2; j++) sum += buf[j] * x[b * QK_DQ2 + j];
    }
    return sum;
}
