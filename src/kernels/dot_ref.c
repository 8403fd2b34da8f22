/* dot_ref.c - portable reference dot products: convert, multiply, accumulate in order. */
#include "kernels/kernels.h"
#include "kernels/qdot.h"

static float dot_f32(const void *row, const float *x, int64_t n) {
    const float *r = row;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += r[i] * x[i];
    return s;
}

static float dot_f16(const void *row, const float *x, int64_t n) {
    const uint16_t *r = row;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += sqz_f16_to_f32(r[i]) * x[i];
    return s;
}

static float dot_bf16(const void *row, const float *x, int64_t n) {
    const uint16_t *r = row;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += sqz_bf16_to_f32(r[i]) * x[i];
    return s;
}

/* The reference conversions are the type-traits ones. */
#define CVT_F32 0
#define CVT_F16 0
#define CVT_BF16 0

sqz_kernel_row sqz_kernels_ref(sqz_type t) {
    switch (t) {
    case SQZ_TYPE_F32: return (sqz_kernel_row){ .dot = dot_f32, .to_float = CVT_F32 };
    case SQZ_TYPE_F16: return (sqz_kernel_row){ .dot = dot_f16, .to_float = CVT_F16 };
    case SQZ_TYPE_BF16: return (sqz_kernel_row){ .dot = dot_bf16, .to_float = CVT_BF16 };
    default: return sqz_qkernels_ref(t); /* quantized types: qdot_ref.c */
    }
}
