/* sp8.c - pack and unpack sqz's sparse int8 rows (sp8.h; docs/sparse.md). */
#include "formats/sp8.h"

#include <math.h>
#include <string.h>

#include "formats/types.h"

size_t sqz_sp8_row_bytes(const float *w, int64_t n) {
    size_t bytes = 0;
    for (int64_t b = 0; b < n; b += SQZ_SP8_BLOCK) {
        bytes += SQZ_SP8_HEAD;
        for (int j = 0; j < SQZ_SP8_BLOCK; j++) bytes += w[b + j] != 0.0f;
    }
    return bytes;
}

/* A row's three parts (sp8.h): nb masks, then nb scales, then the values. */
static inline size_t values_at(int64_t n) { return (size_t)(n / SQZ_SP8_BLOCK) * SQZ_SP8_HEAD; }

size_t sqz_sp8_pack_row(const float *w, int64_t n, uint8_t *dst) {
    const int64_t nb = n / SQZ_SP8_BLOCK;
    uint8_t *masks = dst, *scales = dst + 4 * nb, *p = dst + values_at(n);
    for (int64_t b = 0; b < nb; b++) {
        const float *x = w + b * SQZ_SP8_BLOCK;
        uint32_t mask = 0;
        float amax = 0;
        for (int j = 0; j < SQZ_SP8_BLOCK; j++)
            if (x[j] != 0.0f) {
                mask |= 1u << j;
                if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
            }
        const uint16_t dh = sqz_f32_to_f16(amax / 127.0f);
        const float d = sqz_f16_to_f32(dh);
        /* q from the stored (f16) d, so that d * q is the nearest level of what is stored */
        const float id = d > 0 ? 1.0f / d : 0.0f;
        memcpy(masks + 4 * b, &mask, 4);
        memcpy(scales + 2 * b, &dh, 2);
        for (int j = 0; j < SQZ_SP8_BLOCK; j++)
            if (mask >> j & 1) {
                long q = lrintf(x[j] * id);
                *p++ = (uint8_t)((q > 127 ? 127 : q < -127 ? -127 : q) + 128);
            }
    }
    return (size_t)(p - dst);
}

size_t sqz_sp8_unpack_row(const uint8_t *src, int64_t n, float *dst) {
    const int64_t nb = n / SQZ_SP8_BLOCK;
    const uint8_t *p = src + values_at(n);
    for (int64_t b = 0; b < nb; b++) {
        uint32_t mask;
        uint16_t dh;
        memcpy(&mask, src + 4 * b, 4);
        memcpy(&dh, src + 4 * nb + 2 * b, 2);
        const float d = sqz_f16_to_f32(dh);
        float *o = dst + b * SQZ_SP8_BLOCK;
        for (int j = 0; j < SQZ_SP8_BLOCK; j++) o[j] = mask >> j & 1 ? d * (float)(*p++ - 128) : 0.0f;
    }
    return (size_t)(p - src);
}

void sqz_sp8_unpack_row_q8_0(const uint8_t *src, int64_t n, void *dst) {
    const int64_t nb = n / SQZ_SP8_BLOCK;
    const uint8_t *p = src + values_at(n);
    uint8_t *o = dst;
    for (int64_t b = 0; b < nb; b++, o += 2 + SQZ_SP8_BLOCK) {
        uint32_t mask;
        memcpy(&mask, src + 4 * b, 4);
        memcpy(o, src + 4 * nb + 2 * b, 2);
        for (int j = 0; j < SQZ_SP8_BLOCK; j++) o[2 + j] = mask >> j & 1 ? (uint8_t)(*p++ ^ 0x80) : 0;
    }
}

void sqz_sp8_pack(const float *W, int64_t rows, int64_t cols, uint64_t *row_off, uint8_t *data) {
    row_off[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *w = W + r * cols;
        row_off[r + 1] = row_off[r] + (data ? sqz_sp8_pack_row(w, cols, data + row_off[r]) : sqz_sp8_row_bytes(w, cols));
    }
}

int sqz_sp8_check(const uint64_t *row_off, const uint8_t *data, size_t data_len, int64_t rows, int64_t cols) {
    if (cols <= 0 || cols % SQZ_SP8_BLOCK || rows < 0 || row_off[0] != 0 || row_off[rows] != data_len) return -1;
    const int64_t nb = cols / SQZ_SP8_BLOCK;
    for (int64_t r = 0; r < rows; r++) {
        const uint64_t at = row_off[r];
        if (row_off[r + 1] < at || row_off[r + 1] > data_len || row_off[r + 1] - at < values_at(cols)) return -1;
        uint64_t kept = 0;
        for (int64_t b = 0; b < nb; b++) {
            uint32_t mask;
            memcpy(&mask, data + at + 4 * b, 4);
            kept += (uint64_t)__builtin_popcount(mask);
        }
        if (at + values_at(cols) + kept != row_off[r + 1]) return -1;
    }
    return 0;
}
