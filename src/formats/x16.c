/* x16.c - repacking Q4_0 / Q8_0 rows into 16-row groups and back (x16.h has the layout). */
#include "formats/x16.h"

#include <string.h>

#include "formats/blocks.h"
#include "formats/quant.h"

sqz_type sqz_x16_type_of(sqz_type t) {
    switch (t) {
    case SQZ_TYPE_Q4_0: return SQZ_TYPE_Q4_0X16;
    case SQZ_TYPE_Q8_0: return SQZ_TYPE_Q8_0X16;
    case SQZ_TYPE_Q4_K: return SQZ_TYPE_Q4_KX16;
    case SQZ_TYPE_Q2_K: return SQZ_TYPE_Q2_KX16;
    case SQZ_TYPE_Q3_K: return SQZ_TYPE_Q3_KX16;
    case SQZ_TYPE_IQ4_XS: return SQZ_TYPE_IQ4_XSX16;
    case SQZ_TYPE_Q5_K: return SQZ_TYPE_Q5_KX16;
    case SQZ_TYPE_Q6_K: return SQZ_TYPE_Q6_KX16;
    default: return SQZ_TYPE_F32;
    }
}

size_t sqz_x16_bytes(sqz_type pt, int64_t rows, int64_t cols) {
    if (pt == SQZ_TYPE_Q4_KX16) return (size_t)(rows / 16) * (size_t)(cols / 256) * sizeof(block_q4_kx16);
    if (pt == SQZ_TYPE_IQ4_XSX16) return (size_t)(rows / 16) * (size_t)(cols / 256) * sizeof(block_iq4_xsx16);
    if (pt == SQZ_TYPE_Q3_KX16) return (size_t)(rows / 16) * (size_t)(cols / 256) * sizeof(block_q3_kx16);
    if (pt == SQZ_TYPE_Q2_KX16) return (size_t)(rows / 16) * (size_t)(cols / 256) * sizeof(block_q2_kx16);
    if (pt == SQZ_TYPE_Q5_KX16) return (size_t)(rows / 16) * (size_t)(cols / 256) * sizeof(block_q5_kx16);
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

/* Q4_K and Q5_K (the same block but qh) into block_q4_kx16 / block_q5_kx16 */
static void pack_k4(const void *src, int q5, int64_t rows, int64_t cols, void *dst) {
    const int64_t nb = cols / 256;
    const size_t ibs = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t obs = q5 ? sizeof(block_q5_kx16) : sizeof(block_q4_kx16);
    for (int64_t g = 0; g < rows / 16; g++)
        for (int64_t b = 0; b < nb; b++) {
            block_q4_kx16 *o = (block_q4_kx16 *)(void *)((char *)dst + (size_t)(g * nb + b) * obs);
            uint8_t(*oqh)[64] = q5 ? ((block_q5_kx16 *)(void *)o)->qh : NULL;
            if (q5) memset(oqh, 0, 8 * 64);
            for (int i = 0; i < 16; i++) {
                /* Q5_K is Q4_K's d, dmin, scales then qh, qs: read the shared fields by name */
                const char *xb = (const char *)src + (size_t)((g * 16 + i) * nb + b) * ibs;
                block_q4_K x4;
                const block_q4_K *x = &x4;
                const uint8_t *qh = NULL;
                if (q5) {
                    const block_q5_K *x5 = (const void *)xb;
                    x4.d = x5->d;
                    x4.dmin = x5->dmin;
                    memcpy(x4.scales, x5->scales, sizeof x4.scales);
                    memcpy(x4.qs, x5->qs, sizeof x4.qs);
                    qh = x5->qh;
                } else {
                    memcpy(&x4, xb, sizeof x4);
                }
                o->d[i] = x->d;
                o->dmin[i] = x->dmin;
                for (int j = 0; j < 8; j++) {
                    uint8_t sc, m;
                    k4_scale_min(j, x->scales, &sc, &m);
                    o->sc[j][i] = sc;
                    o->m[j / 2][i][j % 2] = m;
                    for (int v = 0; v < 4; v++)
                        for (int c = 0; c < 4; c++) {
                            const int e0 = 32 * j + 8 * v + c, e1 = e0 + 4;
                            o->qs[j][64 * v + 4 * i + c] = (uint8_t)(q4k_get(x, e0) | q4k_get(x, e1) << 4);
                            if (q5) /* the 5th bit of element e: bit e / 32 of qh[e % 32] */
                                oqh[j][4 * i + c] |= (uint8_t)(((qh[e0 % 32] >> j) & 1) << (2 * v) |
                                                               ((qh[e1 % 32] >> j) & 1) << (2 * v + 1));
                        }
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

/* element e (0..255) of a Q2_K block: bits 2j of qs[32 h + l], e = 128 h + 32 j + l */
static inline uint8_t q2k_get(const block_q2_K *b, int e) {
    const int h = e / 128, j = (e % 128) / 32, l = e % 32;
    return (uint8_t)((b->qs[32 * h + l] >> (2 * j)) & 3);
}

static void pack_q2_k(const block_q2_K *in, int64_t rows, int64_t cols, block_q2_kx16 *out) {
    const int64_t nb = cols / 256;
    for (int64_t g = 0; g < rows / 16; g++)
        for (int64_t b = 0; b < nb; b++) {
            block_q2_kx16 *o = &out[g * nb + b];
            memset(o, 0, sizeof *o);
            for (int i = 0; i < 16; i++) {
                const block_q2_K *x = &in[(g * 16 + i) * nb + b];
                o->d[i] = x->d;
                o->dmin[i] = x->dmin;
                for (int s = 0; s < 16; s++) {
                    o->sc[s / 2][i][s % 2] = x->scales[s];
                    for (int j = 0; j < 4; j++)
                        for (int c = 0; c < 4; c++)
                            o->qs[s][4 * i + c] |= (uint8_t)(q2k_get(x, 16 * s + 4 * j + c) << (2 * j));
                }
            }
        }
}

/* Q3_K's 16 signed 6-bit scales from their 12 bytes (ggml's layout; formats/dequant.c) */
static void q3k_scales(const uint8_t *p, int8_t sc[16]) {
    for (int k = 0; k < 16; k++) {
        const int lo = k < 8 ? p[k] & 0x0f : p[k - 8] >> 4;
        const int hi = (p[8 + k % 4] >> (2 * (k / 4))) & 3;
        sc[k] = (int8_t)((lo | hi << 4) - 32);
    }
}

static void pack_q3_k(const block_q3_K *in, int64_t rows, int64_t cols, block_q3_kx16 *out) {
    const int64_t nb = cols / 256;
    for (int64_t g = 0; g < rows / 16; g++)
        for (int64_t b = 0; b < nb; b++) {
            block_q3_kx16 *o = &out[g * nb + b];
            memset(o, 0, sizeof *o);
            for (int i = 0; i < 16; i++) {
                const block_q3_K *x = &in[(g * 16 + i) * nb + b];
                int8_t sc[16];
                q3k_scales(x->scales, sc);
                o->d[i] = x->d;
                for (int s = 0; s < 16; s++) {
                    o->sc[s][i] = sc[s];
                    for (int j = 0; j < 4; j++)
                        for (int c = 0; c < 4; c++) {
                            const int e = 16 * s + 4 * j + c; /* = 128 h + 32 m + l */
                            const int h = e / 128, m = (e % 128) / 32, l = e % 32;
                            o->qs[s][4 * i + c] |= (uint8_t)(((x->qs[32 * h + l] >> (2 * m)) & 3) << (2 * j));
                            const int bit = (x->hmask[l] >> (e / 32)) & 1;
                            o->hb[s][2 * i + c / 2] |= (uint8_t)(bit << (j + 4 * (c % 2)));
                        }
                }
            }
        }
}

/* IQ4_XS: sub-block k's scale is scales_l's nibble k | 2 bits of scales_h, minus 32; its
 * elements 32k + l are the low (l < 16) or high nibbles of qs[16k + l % 16] */
static void pack_iq4_xs(const block_iq4_xs *in, int64_t rows, int64_t cols, block_iq4_xsx16 *out) {
    const int64_t nb = cols / 256;
    for (int64_t g = 0; g < rows / 16; g++)
        for (int64_t b = 0; b < nb; b++) {
            block_iq4_xsx16 *o = &out[g * nb + b];
            for (int i = 0; i < 16; i++) {
                const block_iq4_xs *x = &in[(g * 16 + i) * nb + b];
                o->d[i] = x->d;
                for (int k = 0; k < 8; k++) {
                    const int ls = ((x->scales_l[k / 2] >> (4 * (k % 2))) & 0x0f) | (((x->scales_h >> (2 * k)) & 3) << 4);
                    o->sc[k][i] = (int8_t)(ls - 32);
                    for (int v = 0; v < 4; v++)
                        for (int c = 0; c < 4; c++) {
                            const int l0 = 8 * v + c, l1 = l0 + 4; /* elements 32k + l */
                            const uint8_t q0 = l0 < 16 ? x->qs[16 * k + l0] & 0x0F : x->qs[16 * k + l0 - 16] >> 4;
                            const uint8_t q1 = l1 < 16 ? x->qs[16 * k + l1] & 0x0F : x->qs[16 * k + l1 - 16] >> 4;
                            o->qs[k][64 * v + 4 * i + c] = (uint8_t)(q0 | q1 << 4);
                        }
                }
            }
        }
}

void sqz_x16_pack(sqz_type t, const void *src, int64_t rows, int64_t cols, void *dst) {
    const int64_t nb = cols / 32;
    if (t == SQZ_TYPE_IQ4_XS) {
        pack_iq4_xs(src, rows, cols, dst);
    } else if (t == SQZ_TYPE_Q3_K) {
        pack_q3_k(src, rows, cols, dst);
    } else if (t == SQZ_TYPE_Q2_K) {
        pack_q2_k(src, rows, cols, dst);
    } else if (t == SQZ_TYPE_Q6_K) {
        pack_q6_k(src, rows, cols, dst);
    } else if (t == SQZ_TYPE_Q4_K || t == SQZ_TYPE_Q5_K) {
        pack_k4(src, t == SQZ_TYPE_Q5_K, rows, cols, dst);
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
    if (packed == SQZ_TYPE_IQ4_XSX16) {
        const int64_t nb = cols / 256;
        for (int64_t b = 0; b < nb; b++) {
            const block_iq4_xsx16 *x = (const block_iq4_xsx16 *)src + g * nb + b;
            for (int i = 0; i < 16; i++) {
                const float d = sqz_f16_to_f32(x->d[i]);
                float *row = dst + (size_t)i * (size_t)cols + (size_t)b * 256;
                for (int k = 0; k < 8; k++) {
                    const float dl = d * x->sc[k][i];
                    for (int v = 0; v < 4; v++)
                        for (int c = 0; c < 4; c++) {
                            const uint8_t q = x->qs[k][64 * v + 4 * i + c];
                            row[32 * k + 8 * v + c] = dl * sqz_iq4nl_values[q & 0x0F];
                            row[32 * k + 8 * v + 4 + c] = dl * sqz_iq4nl_values[q >> 4];
                        }
                }
            }
        }
        return;
    }
    if (packed == SQZ_TYPE_Q3_KX16) {
        const int64_t nb = cols / 256;
        for (int64_t b = 0; b < nb; b++) {
            const block_q3_kx16 *x = (const block_q3_kx16 *)src + g * nb + b;
            for (int i = 0; i < 16; i++) {
                const float d = sqz_f16_to_f32(x->d[i]);
                float *row = dst + (size_t)i * (size_t)cols + (size_t)b * 256;
                for (int s = 0; s < 16; s++) {
                    const float dl = d * x->sc[s][i];
                    for (int j = 0; j < 4; j++)
                        for (int c = 0; c < 4; c++) {
                            const int q2 = (x->qs[s][4 * i + c] >> (2 * j)) & 3;
                            const int hb = (x->hb[s][2 * i + c / 2] >> (j + 4 * (c % 2))) & 1;
                            row[16 * s + 4 * j + c] = dl * ((q2 | hb << 2) - 4);
                        }
                }
            }
        }
        return;
    }
    if (packed == SQZ_TYPE_Q2_KX16) {
        const int64_t nb = cols / 256;
        for (int64_t b = 0; b < nb; b++) {
            const block_q2_kx16 *x = (const block_q2_kx16 *)src + g * nb + b;
            for (int i = 0; i < 16; i++) {
                const float d = sqz_f16_to_f32(x->d[i]), dmin = sqz_f16_to_f32(x->dmin[i]);
                float *row = dst + (size_t)i * (size_t)cols + (size_t)b * 256;
                for (int s = 0; s < 16; s++) {
                    const uint8_t sb = x->sc[s / 2][i][s % 2];
                    const float dl = d * (sb & 0x0F), ml = dmin * (sb >> 4);
                    for (int j = 0; j < 4; j++)
                        for (int c = 0; c < 4; c++)
                            row[16 * s + 4 * j + c] = dl * ((x->qs[s][4 * i + c] >> (2 * j)) & 3) - ml;
                }
            }
        }
        return;
    }
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
    if (packed == SQZ_TYPE_Q4_KX16 || packed == SQZ_TYPE_Q5_KX16) {
        const int64_t nb = cols / 256;
        const int q5 = packed == SQZ_TYPE_Q5_KX16;
        const size_t bs = q5 ? sizeof(block_q5_kx16) : sizeof(block_q4_kx16);
        for (int64_t b = 0; b < nb; b++) {
            const block_q4_kx16 *x = (const void *)((const char *)src + (size_t)(g * nb + b) * bs);
            const uint8_t(*qh)[64] = q5 ? ((const block_q5_kx16 *)(const void *)x)->qh : NULL;
            for (int i = 0; i < 16; i++) {
                const float d = sqz_f16_to_f32(x->d[i]), dmin = sqz_f16_to_f32(x->dmin[i]);
                float *row = dst + (size_t)i * (size_t)cols + (size_t)b * 256;
                for (int j = 0; j < 8; j++) {
                    const float dj = d * x->sc[j][i], mj = dmin * x->m[j / 2][i][j % 2];
                    for (int v = 0; v < 4; v++)
                        for (int c = 0; c < 4; c++) {
                            const uint8_t q = x->qs[j][64 * v + 4 * i + c];
                            const int h = qh ? qh[j][4 * i + c] : 0;
                            row[32 * j + 8 * v + c] = dj * ((q & 0x0F) | ((h >> (2 * v)) & 1) << 4) - mj;
                            row[32 * j + 8 * v + 4 + c] = dj * ((q >> 4) | ((h >> (2 * v + 1)) & 1) << 4) - mj;
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
