/* sp8_ref.c - the reference sp8 matrix-vector product (kernels/sp8.h): per block, the integer
 * sum of the kept weights' q times the activations' q at the mask's positions, scaled by
 * d_w * d_x; the run-time choice of tier and the threaded whole product. */
#include <omp.h>
#include <string.h>

#include "formats/blocks.h"
#include "kernels/sp8.h"

void sqz_sp8_matvec_ref(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1) {
    const block_q8_0 *a = xq;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *p = m->data + m->row_off[r];
        float sum = 0;
        for (int64_t b = 0; b < cols / SQZ_SP8_BLOCK; b++) {
            uint32_t mask;
            uint16_t dh;
            memcpy(&mask, p, 4);
            memcpy(&dh, p + 4, 2);
            p += SQZ_SP8_HEAD;
            int32_t isum = 0;
            for (int j = 0; j < SQZ_SP8_BLOCK; j++)
                if (mask >> j & 1) isum += (int32_t)(int8_t)*p++ * a[b].qs[j];
            sum += sqz_f16_to_f32(dh) * sqz_f16_to_f32(a[b].d) * (float)isum;
        }
        y[r] = sum;
    }
}

int sqz_sp8_has_vbmi2(void) {
    return sqz_isa_best() == SQZ_ISA_AVX512 && __builtin_cpu_supports("avx512vbmi2");
}

sqz_sp8_matvec_fn sqz_sp8_matvec_get(sqz_isa isa) {
    return isa >= SQZ_ISA_AVX512 && sqz_sp8_has_vbmi2() ? sqz_sp8_matvec_vbmi2 : sqz_sp8_matvec_ref;
}

void sqz_sp8_matvec(const sqz_sp8_tensor *m, int64_t rows, int64_t cols, const float *x, void *xq, float *y,
                    int n_threads) {
    const sqz_isa isa = sqz_isa_best();
    sqz_quantize_act_get(SQZ_TYPE_Q8_0, isa)(x, xq, cols);
    const sqz_sp8_matvec_fn f = sqz_sp8_matvec_get(isa);
    if (n_threads <= 1 || rows < 64) {
        f(m, cols, xq, y, 0, rows);
        return;
    }
#pragma omp parallel num_threads(n_threads)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        f(m, cols, xq, y, r0, r1);
    }
}
