/* x16.c - repacking Q4_0 / Q8_0 rows into 16-row groups and back (x16.h has the layout). */
#include "formats/x16.h"

#include <string.h>

#include "formats/blocks.h"

sqz_type sqz_x16_type_of(sqz_type t) {
    switch (t) {
    case SQZ_TYPE_Q4_0: return SQZ_TYPE_Q4_0X16;
    case SQZ_TYPE_Q8_0: return SQZ_TYPE_Q8_0X16;
    case SQZ_TYPE_Q4_K: return SQZ_TYPE_Q4_KX16;
    case SQZ_TYPE_Q6_K: return SQZ_TYPE_Q6_KX16;
    default: return SQZ_TYPE_F32;
    }
}

size_t sqz_x16_bytes(sqz_type pt, int64_t rows, int64_t cols) {
    if (pt == SQZ_TYPE_Q4_KX16) return (size_t)(rows / 16) * (size_t)(cols / 256) * sizeof(block_q4_kx16);
    if (pt == SQZ_TYPE_Q6_KX16) return (size_t)(rows / 16) * (size_t)(cols / 256) * sizeof(block_q6_kx16);
    return (size_t)(rows / 16) * (size_t)(cols / 32) *
           (pt == SQZ_TYPE_Q4_0X16 ? sizeof(block_q4_0x16) : sizeof(block_q8_0x16));
}

/* Q4_K's 6-bit scale and min of sub-block j from its 12 packed bytes (ggml's
 * get_scale_min_k4) */
static void k4_scale_min(int j, const uint8_t *p, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = p[j] & 63;
        *m = p[j + 4] & 63;
    } else {
        *sc = (uint8_t)((p[j + 4] & 0x0f) | ((p[j - 4] >> 6) << 4));
        *m = (uint8_t)((p[j + 4] >> 4) | ((p[j] >> 6) << 4));
    }
}

/* element e (0..255) of a Q4_K block as its 4-bit value: sub-block j = e / 32 is the low
 * (j even) or high (j odd) nibbles of qs[32 (j / 2) ..] */
static inline uint8_t q4k_get(const block_q4_K *b, int e) {
    const int j = e / 32, t = e % 32;
    const uint8_t v = b->qs[32 * (j / 2) + t];
    return j % 2 ? v >> 4 : v & 0x0F;
}

static void pack_q4_k(const block_q4_K *in, int64_t rows, int64_t cols, block_q4_kx16 *out) {
    const int64_t nb = cols / 256;
    for (int64_t g = 0; g < rows / 16; g++)
        for (int64_t b = 0; b < nb; b++) {
            block_q4_kx16 *o = &out[g * nb + b];
            for (int i = 0; i < 16; i++) {
                const block_q4_K *x = &in[(g * 16 + i) * nb + b];
                o->d[i] = x->d;
                o->dmin[i] = x->dmin;
                for (int j = 0; j < 8; j++) {
                    uint8_t sc, m;
                    k4_scale_min(j, x->scales, &sc, &m);
                    o->sc[j][i] = sc;
                    o->m[j / 2][i][j % 2] = m;
                    for (int v = 0; v < 4; v++)
                        for (int c = 0; c < 4; c++)
                            o->qs[j][64 * v + 4 * i + c] =
                                (uint8_t)(q4k_get(x, 32 * j + 8 * v + c) | q4k_get(x, 32 * j + 8 * v + 4 + c) << 4);
                }
            }
        }
}

/* element k (0..31) of a Q4_0 block as its unsigned 4-bit value */
static inline uint8_t q4_get(const block_q4_0 *b, int k) {
    return k < 16 ? b->qs[k] & 0x0F : b->qs[k - 16] >> 4;
}

/* element e (0..255) of a Q6_K block as its 6-bit value (ggml's dequantize_row_q6_K: half h =
 * e / 128; within it element 32k + l is ql[64h + l + 32 (k & 1)] nibble k / 2, top bits 2k of
 * qh[32h + l]) */
static inline uint8_t q6k_get(const block_q6_K *b, int e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const uint8_t lo = b->ql[64 * h + l + 32 * (k & 1)];
    const uint8_t hi = (uint8_t)((b->qh[32 * h + l] >> (2 * k)) & 3);
    return (uint8_t)(((k < 2 ? lo : lo >> 4) & 0x0F) | hi << 4);
}

static void pack_q6_k(const block_q6_K *in, int64_t rows, int64_t cols, block_q6_kx16 *out) {
    const int64_t nb = cols / 256;
    for (int64_t g = 0; g < rows / 16; g++)
        for (int64_t b = 0; b < nb; b++) {
            block_q6_kx16 *o = &out[g * nb + b];
            memset(o, 0, sizeof *o);
            for (int i = 0; i < 16; i++) {
                const block_q6_K *x = &in[(g * 16 + i) * nb + b];
                o->d[i] = x->d;
                for (int s = 0; s < 16; s++) {
                    o->sc[s][i] = x->scales[s];
                    for (int j = 0; j < 4; j++)
                        for (int c = 0; c < 4; c++) {
                            const uint8_t q = q6k_get(x, 16 * s + 4 * j + c);
                            o->q[s].nib[j / 2][4 * i + c] |= (uint8_t)((q & 0x0F) << (4 * (j % 2)));
                            o->q[s].hi[4 * i + c] |= (uint8_t)((q >> 4) << (2 * j));
                        }
                }
            }
        }
}

void sqz_x16_pack(sqz_type t, const void *src, int64_t rows, int64_t cols, void *dst) {
    const int64_t nb = cols / 32;
    if (t == SQZ_TYPE_Q6_K) {
        pack_q6_k(src, rows, cols, dst);
    } else if (t == SQZ_TYPE_Q4_K) {
        pack_q4_k(src, rows, cols, dst);
    } else if (t == SQZ_TYPE_Q4_0) {
        const block_q4_0 *in = src;
        block_q4_0x16 *out = dst;
        for (int64_t g = 0; g < rows / 16; g++)
            for (int64_t b = 0; b < nb; b++) {
                block_q4_0x16 *o = &out[g * nb + b];
                for (int i = 0; i < 16; i++) {
                    const block_q4_0 *x = &in[(g * 16 + i) * nb + b];
                    o->d[i] = x->d;
                    for (int j = 0; j < 4; j++)
                        for (int c = 0; c < 4; c++)
                            o->qs[64 * j + 4 * i + c] =
                                (uint8_t)(q4_get(x, 8 * j + c) | q4_get(x, 8 * j + 4 + c) << 4);
                }
            }
    } else {
        const block_q8_0 *in = src;
        block_q8_0x16 *out = dst;
        for (int64_t g = 0; g < rows / 16; g++)
            for (int64_t b = 0; b < nb; b++) {
                block_q8_0x16 *o = &out[g * nb + b];
                for (int i = 0; i < 16; i++) {
                    const block_q8_0 *x = &in[(g * 16 + i) * nb + b];
                    o->d[i] = x->d;
                    for (int j = 0; j < 8; j++)
                        for (int c = 0; c < 4; c++) o->qs[64 * j + 4 * i + c] = x->qs[4 * j + c];
                }
            }
    }
}

void sqz_x16_unpack_row(sqz_type packed, const void *src, int64_t r, int64_t cols, void *dst) {
    const int64_t nb = cols / 32, g = r / 16;
    const int i = (int)(r % 16);
    if (packed == SQZ_TYPE_Q4_0X16) {
        const block_q4_0x16 *in = src;
        block_q4_0 *out = dst;
        for (int64_t b = 0; b < nb; b++) {
            const block_q4_0x16 *x = &in[g * nb + b];
            uint8_t q[32];
            for (int j = 0; j < 4; j++)
                for (int c = 0; c < 4; c++) {
                    const uint8_t v = x->qs[64 * j + 4 * i + c];
                    q[8 * j + c] = v & 0x0F;
                    q[8 * j + 4 + c] = v >> 4;
                }
            out[b].d = x->d[i];
            for (int l = 0; l < 16; l++) out[b].qs[l] = (uint8_t)(q[l] | q[l + 16] << 4);
        }
    } else {
        const block_q8_0x16 *in = src;
        block_q8_0 *out = dst;
        for (int64_t b = 0; b < nb; b++) {
            const block_q8_0x16 *x = &in[g * nb + b];
            out[b].d = x->d[i];
            for (int j = 0; j < 8; j++)
                for (int c = 0; c < 4; c++) out[b].qs[4 * j + c] = x->qs[64 * j + 4 * i + c];
        }
    }
}

void sqz_x16_group_to_float(sqz_type packed, const void *src, int64_t g, int64_t cols, float *dst) {
    if (packed == SQZ_TYPE_Q6_KX16) {
        const int64_t nb = cols / 256;
        for (int64_t b = 0; b < nb; b++) {
            const block_q6_kx16 *x = (const block_q6_kx16 *)src + g * nb + b;
            for (int i = 0; i < 16; i++) {
                const float d = sqz_f16_to_f32(x->d[i]);
                float *row = dst + (size_t)i * (size_t)cols + (size_t)b * 256;
                for (int s = 0; s < 16; s++)
                    for (int j = 0; j < 4; j++)
                        for (int c = 0; c < 4; c++) {
                            const int lo = (x->q[s].nib[j / 2][4 * i + c] >> (4 * (j % 2))) & 0x0F;
                            const int hi = (x->q[s].hi[4 * i + c] >> (2 * j)) & 3;
                            row[16 * s + 4 * j + c] = d * (float)x->sc[s][i] * (float)((lo | hi << 4) - 32);
                        }
            }
        }
        return;
    }
    if (packed == SQZ_TYPE_Q4_KX16) {
        const int64_t nb = cols / 256;
        for (int64_t b = 0; b < nb; b++) {
            const block_q4_kx16 *x = (const block_q4_kx16 *)src + g * nb + b;
            for (int i = 0; i < 16; i++) {
                const float d = sqz_f16_to_f32(x->d[i]), dmin = sqz_f16_to_f32(x->dmin[i]);
                float *row = dst + (size_t)i * (size_t)cols + (size_t)b * 256;
                for (int j = 0; j < 8; j++) {
                    const float dj = d * x->sc[j][i], mj = dmin * x->m[j / 2][i][j % 2];
                    for (int v = 0; v < 4; v++)
                        for (int c = 0; c < 4; c++) {
                            const uint8_t q = x->qs[j][64 * v + 4 * i + c];
                            row[32 * j + 8 * v + c] = dj * (q & 0x0F) - mj;
                            row[32 * j + 8 * v + 4 + c] = dj * (q >> 4) - mj;
                        }
                }
            }
        }
        return;
    }
    const int64_t nb = cols / 32;
    for (int64_t b = 0; b < nb; b++)
        for (int i = 0; i < 16; i++) {
            float *out = dst + (size_t)i * (size_t)cols + (size_t)b * 32;
            if (packed == SQZ_TYPE_Q4_0X16) {
                const block_q4_0x16 *x = (const block_q4_0x16 *)src + g * nb + b;
                const float d = sqz_f16_to_f32(x->d[i]);
                for (int j = 0; j < 4; j++)
                    for (int c = 0; c < 4; c++) {
                        const uint8_t v = x->qs[64 * j + 4 * i + c];
                        out[8 * j + c] = d * ((v & 0x0F) - 8);
                        out[8 * j + 4 + c] = d * ((v >> 4) - 8);
                    }
            } else {
                const block_q8_0x16 *x = (const block_q8_0x16 *)src + g * nb + b;
                const float d = sqz_f16_to_f32(x->d[i]);
                for (int j = 0; j < 8; j++)
                    for (int c = 0; c < 4; c++) out[4 * j + c] = d * x->qs[64 * j + 4 * i + c];
            }
        }
}
