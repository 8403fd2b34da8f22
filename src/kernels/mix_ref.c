/* mix_ref.c - the portable reference dot products of sqz's mixllm types (MX8, MX4, MX3;
 * formats/mx.h) against MXA activations (mix.h). */
#include <math.h>
#include <string.h>

#include "kernels/mix.h"

static float h2f(uint16_t h) { return sqz_f16_to_f32(h); }

/* ------------------------------------------------------------------ reference dot products */

void sqz_mxa_quantize(const float *x, void *xq, int64_t n) {
    block_mxa *y = xq;
    for (int64_t i = 0; i < n / QK_MX; i++) {
        float s = 0;
        for (int k = 0; k < 4; k++) {
            const float *v = x + i * QK_MX + 32 * k;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
            const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
            int sum = 0;
            for (int j = 0; j < 32; j++) {
                const int q = (int)lrintf(v[j] * id); /* |q| <= 127 */
                y[i].q[32 * k + j] = (int8_t)q;
                sum += q;
            }
            y[i].d[k] = d;
            s += d * (float)sum;
        }
        y[i].s = s;
    }
}

float sqz_mx8_dot_mxa_ref(int64_t n, const void *row, const void *xq) {
    const block_mx8 *w = row;
    const block_mxa *x = xq;
    float acc = 0;
    for (int64_t i = 0; i < n / QK_MX; i++) {
        float g = 0;
        for (int k = 0; k < 4; k++) {
            int32_t isum = 0;
            for (int j = 0; j < 32; j++) isum += (int32_t)w[i].q[32 * k + j] * x[i].q[32 * k + j];
            g += x[i].d[k] * (float)isum;
        }
        acc += h2f(w[i].d) * g;
    }
    return acc;
}

/* MX4 and MX3 share the form: per group d * sum_k dx[k] * isum_k + m * s. */
#define DOT_ASYM(name, blk_t, get)                                                          \
    float sqz_##name##_dot_mxa_ref(int64_t n, const void *row, const void *xq) {            \
        const blk_t *w = row;                                                               \
        const block_mxa *x = xq;                                                            \
        float acc = 0;                                                                      \
        for (int64_t i = 0; i < n / QK_MX; i++) {                                           \
            float g = 0;                                                                    \
            for (int k = 0; k < 4; k++) {                                                   \
                int32_t isum = 0;                                                           \
                for (int j = 0; j < 32; j++) isum += get(&w[i], 32 * k + j) * x[i].q[32 * k + j]; \
                g += x[i].d[k] * (float)isum;                                               \
            }                                                                               \
            acc += h2f(w[i].d) * g + h2f(w[i].m) * x[i].s;                                  \
        }                                                                                   \
        return acc;                                                                         \
    }
DOT_ASYM(mx4, block_mx4, sqz_mx4_get)
DOT_ASYM(mx3, block_mx3, sqz_mx3_get)

sqz_vec_dot_q_fn sqz_mx_dot_get(sqz_type t, sqz_isa isa) {
    if (t != SQZ_TYPE_MX8 && t != SQZ_TYPE_MX4 && t != SQZ_TYPE_MX3) return NULL;
    return sqz_vec_dot_q_get(t, isa);
}
