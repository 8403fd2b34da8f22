/* dot_ref.c - portable reference dot products: convert, multiply, accumulate in order. */
#include "kernels/kernels.h"
#include "kernels/qdot.h"

float sqz_dot_f32_ref(const void *row, const float *x, int64_t n) {
    const float *r = row;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += r[i] * x[i];
    return s;
}

float sqz_dot_f16_ref(const void *row, const float *x, int64_t n) {
    const uint16_t *r = row;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += sqz_f16_to_f32(r[i]) * x[i];
    return s;
}

float sqz_dot_bf16_ref(const void *row, const float *x, int64_t n) {
    const uint16_t *r = row;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += sqz_bf16_to_f32(r[i]) * x[i];
    return s;
}

