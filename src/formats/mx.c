/* mx.c - sqz's mixllm block types MX8, MX4, MX3 (formats/mx.h): element access,
 * conversions to float and the group quantizer (the types' traits rows and GPTQ's grid). */
#include <math.h>
#include <string.h>

#include "formats/mx.h"

static float h2f(uint16_t h) { return sqz_f16_to_f32(h); }

void sqz_mx_elem_grid(sqz_type t, const void *blk, int j, float *a, float *b, int *smin,
                      int *smax, int *s) {
    switch (t) {
    case SQZ_TYPE_MX8: {
        const block_mx8 *x = blk;
        *a = h2f(x->d), *b = 0, *smin = -127, *smax = 127, *s = x->q[j];
        break;
    }
    case SQZ_TYPE_MX4: {
        const block_mx4 *x = blk;
        *a = h2f(x->d), *b = h2f(x->m), *smin = 0, *smax = 15, *s = sqz_mx4_get(x, j);
        break;
    }
    default: {
        const block_mx3 *x = blk;
        *a = h2f(x->d), *b = h2f(x->m), *smin = 0, *smax = 7, *s = sqz_mx3_get(x, j);
        break;
    }
    }
}

void sqz_mx_elem_set(sqz_type t, void *blk, int j, int s) {
    switch (t) {
    case SQZ_TYPE_MX8:
        ((block_mx8 *)blk)->q[j] = (int8_t)s;
        break;
    case SQZ_TYPE_MX4: {
        uint8_t *p = &((block_mx4 *)blk)->qs[j % 64];
        *p = j < 64 ? (uint8_t)((*p & 0xf0) | s) : (uint8_t)((*p & 0x0f) | s << 4);
        break;
    }
    default: {
        block_mx3 *x = blk;
        const int sh = 2 * (j / 32);
        x->ql[j % 32] = (uint8_t)((x->ql[j % 32] & ~(3u << sh)) | (unsigned)(s & 3) << sh);
        const uint8_t bit = (uint8_t)(1u << (j / 16));
        x->qh[j % 16] = (uint8_t)(s & 4 ? x->qh[j % 16] | bit : x->qh[j % 16] & ~bit);
        break;
    }
    }
}

/* ------------------------------------------------------------------ conversions */

void sqz_mx8_to_float(const void *src, float *dst, int64_t n) {
    const block_mx8 *b = src;
    for (int64_t i = 0; i < n / QK_MX; i++) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK_MX; j++) dst[i * QK_MX + j] = d * (float)b[i].q[j];
    }
}

void sqz_mx4_to_float(const void *src, float *dst, int64_t n) {
    const block_mx4 *b = src;
    for (int64_t i = 0; i < n / QK_MX; i++) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < QK_MX; j++) dst[i * QK_MX + j] = d * (float)sqz_mx4_get(&b[i], j) + m;
    }
}

void sqz_mx3_to_float(const void *src, float *dst, int64_t n) {
    const block_mx3 *b = src;
    for (int64_t i = 0; i < n / QK_MX; i++) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < QK_MX; j++) dst[i * QK_MX + j] = d * (float)sqz_mx3_get(&b[i], j) + m;
    }
}

/* ------------------------------------------------------------------ quantizer */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Rounds x to the grid d * q + m (q in [0, qmax]) and returns the weighted squared error. */
static double asym_err(const float *x, const float *imp, float d, float m, int qmax) {
    double e = 0;
    for (int j = 0; j < QK_MX; j++) {
        const int q = d > 0 ? clampi((int)lrintf((x[j] - m) / d), 0, qmax) : 0;
        const double r = (double)x[j] - ((double)d * q + m);
        e += (imp ? imp[j] : 1.0) * r * r;
    }
    return e;
}

/* Asymmetric group (MX4 / MX3): tries the full range and ranges shrunk at either end (outliers
 * cost the other elements resolution), with d and m rounded to f16 before the error is taken. */
static void quantize_asym(sqz_type t, const float *x, const float *imp, void *blk) {
    const int qmax = t == SQZ_TYPE_MX4 ? 15 : 7;
    float lo = x[0], hi = x[0];
    for (int j = 1; j < QK_MX; j++) {
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
    }
    static const float shrink[] = { 0.0f, 0.03f, 0.06f, 0.1f, 0.15f };
    const int ns = (int)(sizeof shrink / sizeof *shrink);
    const float range = hi - lo;
    uint16_t best_d = 0, best_m = sqz_f32_to_f16(lo);
    double best = INFINITY;
    for (int a = 0; a < ns; a++)
        for (int b = 0; b < ns; b++) {
            const float l = lo + shrink[a] * range, h = hi - shrink[b] * range;
            if (h <= l && (a || b)) continue;
            const uint16_t dh = sqz_f32_to_f16((h - l) / (float)qmax), mh = sqz_f32_to_f16(l);
            const double e = asym_err(x, imp, h2f(dh), h2f(mh), qmax);
            if (e < best) best = e, best_d = dh, best_m = mh;
        }
    const float d = h2f(best_d), m = h2f(best_m);
    if (t == SQZ_TYPE_MX4) {
        block_mx4 *y = blk;
        memset(y, 0, sizeof *y);
        y->d = best_d, y->m = best_m;
    } else {
        block_mx3 *y = blk;
        memset(y, 0, sizeof *y);
        y->d = best_d, y->m = best_m;
    }
    for (int j = 0; j < QK_MX; j++)
        sqz_mx_elem_set(t, blk, j, d > 0 ? clampi((int)lrintf((x[j] - m) / d), 0, qmax) : 0);
}

void sqz_mx_quantize_block(sqz_type t, const float *x, const float *imp, void *blk) {
    if (t != SQZ_TYPE_MX8) {
        quantize_asym(t, x, imp, blk);
        return;
    }
    block_mx8 *y = blk;
    float amax = 0;
    for (int j = 0; j < QK_MX; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    y->d = sqz_f32_to_f16(amax / 127.0f);
    const float d = h2f(y->d);
    for (int j = 0; j < QK_MX; j++) y->q[j] = (int8_t)(d > 0 ? clampi((int)lrintf(x[j] / d), -127, 127) : 0);
}

#define FROM_FLOAT(name, T, blk_t)                                                          \
    void sqz_##name##_from_float(const float *src, void *dst, int64_t n) {                  \
        for (int64_t i = 0; i < n / QK_MX; i++)                                             \
            sqz_mx_quantize_block(T, src + i * QK_MX, NULL, (blk_t *)dst + i);             \
    }
FROM_FLOAT(mx8, SQZ_TYPE_MX8, block_mx8)
FROM_FLOAT(mx4, SQZ_TYPE_MX4, block_mx4)
FROM_FLOAT(mx3, SQZ_TYPE_MX3, block_mx3)
