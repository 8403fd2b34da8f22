/* x16_ref.c - the packed matrices' reference product: plain C, one row at a time, integer
 * sums per block scaled as ggml's Q4_0 / Q8_0 dot products do (the yardstick of x16_avx512.c). */
#include "kernels/x16.h"

#include "formats/blocks.h"
#include "formats/quant.h"
#include "formats/types.h"

void sqz_x16_matvec_ref(sqz_type t, const void *w, int64_t cols, const block_q8_0s *a, float *y,
                        int64_t r0, int64_t r1) {
    const int64_t nb = cols / 32;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / 16;
        const int i = (int)(r % 16);
        float sum = 0;
        for (int64_t b = 0; b < nb; b++) {
            int32_t isum = 0;
            float dw;
            if (t == SQZ_TYPE_Q4_0X16) {
                const block_q4_0x16 *x = (const block_q4_0x16 *)w + g * nb + b;
                for (int j = 0; j < 4; j++)
                    for (int c = 0; c < 4; c++) {
                        const uint8_t v = x->qs[64 * j + 4 * i + c];
                        isum += ((v & 0x0F) - 8) * a[b].qs[8 * j + c] + ((v >> 4) - 8) * a[b].qs[8 * j + 4 + c];
                    }
                dw = sqz_f16_to_f32(x->d[i]);
            } else {
                const block_q8_0x16 *x = (const block_q8_0x16 *)w + g * nb + b;
                for (int j = 0; j < 8; j++)
                    for (int c = 0; c < 4; c++) isum += x->qs[64 * j + 4 * i + c] * a[b].qs[4 * j + c];
                dw = sqz_f16_to_f32(x->d[i]);
            }
            sum += (float)isum * (dw * a[b].d);
        }
        y[r] = sum;
    }
}

/* Q4_K / Q5_K packed: per sub-block j an integer sum q . a scaled by its 6-bit scale, the mins times
 * the sub-block's activation sum (two of Q8_K's 16-element bsums), as ggml's Q4_K dot */
/* Q6_K packed: per sub-block of 16 an integer sum (q - 32) . a scaled by its int8 scale */
static void q6k_rows(const void *w, int64_t cols, const block_q8_K *ak, float *y, int64_t r0, int64_t r1) {
    const int64_t nb = cols / 256;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / 16;
        const int i = (int)(r % 16);
        float sum = 0;
        for (int64_t b = 0; b < nb; b++) {
            const block_q6_kx16 *x = (const block_q6_kx16 *)w + g * nb + b;
            const block_q8_K *ab = &ak[b];
            int32_t isum = 0;
            for (int s = 0; s < 16; s++) {
                int32_t t = 0;
                for (int j = 0; j < 4; j++)
                    for (int c = 0; c < 4; c++) {
                        const int lo = (x->q[s].nib[j / 2][4 * i + c] >> (4 * (j % 2))) & 0x0F;
                        const int hi = (x->q[s].hi[4 * i + c] >> (2 * j)) & 3;
                        t += ((lo | hi << 4) - 32) * ab->qs[16 * s + 4 * j + c];
                    }
                isum += t * x->sc[s][i];
            }
            sum += ab->d * sqz_f16_to_f32(x->d[i]) * (float)isum;
        }
        y[r] = sum;
    }
}

/* Q2_K packed: per sub-block of 16 an integer sum q . a times its 4-bit scale, the 4-bit mins
 * times the sub-block's activation sum, as ggml's Q2_K dot */
static void q2k_rows(const void *w, int64_t cols, const block_q8_K *ak, float *y, int64_t r0, int64_t r1) {
    const int64_t nb = cols / 256;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / 16;
        const int i = (int)(r % 16);
        float sum = 0;
        for (int64_t b = 0; b < nb; b++) {
            const block_q2_kx16 *x = (const block_q2_kx16 *)w + g * nb + b;
            const block_q8_K *ab = &ak[b];
            int32_t isum = 0, msum = 0;
            for (int s = 0; s < 16; s++) {
                const uint8_t sb = x->sc[s / 2][i][s % 2];
                int32_t t = 0;
                for (int j = 0; j < 4; j++)
                    for (int c = 0; c < 4; c++) t += ((x->qs[s][4 * i + c] >> (2 * j)) & 3) * ab->qs[16 * s + 4 * j + c];
                isum += t * (sb & 0x0F);
                msum += (sb >> 4) * ab->bsums[s];
            }
            sum += ab->d * (sqz_f16_to_f32(x->d[i]) * (float)isum - sqz_f16_to_f32(x->dmin[i]) * (float)msum);
        }
        y[r] = sum;
    }
}

/* Q3_K packed: per sub-block of 16 an integer sum (q - 4) . a times its signed scale */
static void q3k_rows(const void *w, int64_t cols, const block_q8_K *ak, float *y, int64_t r0, int64_t r1) {
    const int64_t nb = cols / 256;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / 16;
        const int i = (int)(r % 16);
        float sum = 0;
        for (int64_t b = 0; b < nb; b++) {
            const block_q3_kx16 *x = (const block_q3_kx16 *)w + g * nb + b;
            const block_q8_K *ab = &ak[b];
            int32_t isum = 0;
            for (int s = 0; s < 16; s++) {
                int32_t t = 0;
                for (int j = 0; j < 4; j++)
                    for (int c = 0; c < 4; c++) {
                        const int q2 = (x->qs[s][4 * i + c] >> (2 * j)) & 3;
                        const int hb = (x->hb[s][2 * i + c / 2] >> (j + 4 * (c % 2))) & 1;
                        t += ((q2 | hb << 2) - 4) * ab->qs[16 * s + 4 * j + c];
                    }
                isum += t * x->sc[s][i];
            }
            sum += ab->d * sqz_f16_to_f32(x->d[i]) * (float)isum;
        }
        y[r] = sum;
    }
}

/* IQ4_XS packed: per sub-block of 32 an integer sum level[q] . a times its scale */
static void iq4xs_rows(const void *w, int64_t cols, const block_q8_K *ak, float *y, int64_t r0, int64_t r1) {
    const int64_t nb = cols / 256;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / 16;
        const int i = (int)(r % 16);
        float sum = 0;
        for (int64_t b = 0; b < nb; b++) {
            const block_iq4_xsx16 *x = (const block_iq4_xsx16 *)w + g * nb + b;
            const block_q8_K *ab = &ak[b];
            int32_t isum = 0;
            for (int k = 0; k < 8; k++) {
                int32_t t = 0;
                for (int v = 0; v < 4; v++)
                    for (int c = 0; c < 4; c++) {
                        const uint8_t q = x->qs[k][64 * v + 4 * i + c];
                        t += sqz_iq4nl_values[q & 0x0F] * ab->qs[32 * k + 8 * v + c] +
                             sqz_iq4nl_values[q >> 4] * ab->qs[32 * k + 8 * v + 4 + c];
                    }
                isum += t * x->sc[k][i];
            }
            sum += ab->d * sqz_f16_to_f32(x->d[i]) * (float)isum;
        }
        y[r] = sum;
    }
}

void sqz_x16k_matvec_ref(sqz_type type, const void *w, int64_t cols, const void *a, float *y, int64_t r0,
                         int64_t r1) {
    if (type == SQZ_TYPE_IQ4_XSX16) {
        iq4xs_rows(w, cols, a, y, r0, r1);
        return;
    }
    if (type == SQZ_TYPE_Q3_KX16) {
        q3k_rows(w, cols, a, y, r0, r1);
        return;
    }
    if (type == SQZ_TYPE_Q2_KX16) {
        q2k_rows(w, cols, a, y, r0, r1);
        return;
    }
    if (type == SQZ_TYPE_Q6_KX16) {
        q6k_rows(w, cols, a, y, r0, r1);
        return;
    }
    const int64_t nb = cols / 256;
    const block_q8_K *ak = a;
    const int q5 = type == SQZ_TYPE_Q5_KX16;
    const size_t bs = q5 ? sizeof(block_q5_kx16) : sizeof(block_q4_kx16);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / 16;
        const int i = (int)(r % 16);
        float sum = 0;
        for (int64_t b = 0; b < nb; b++) {
            const block_q4_kx16 *x = (const void *)((const char *)w + (size_t)(g * nb + b) * bs);
            const uint8_t(*qh)[64] = q5 ? ((const block_q5_kx16 *)(const void *)x)->qh : NULL;
            const block_q8_K *ab = &ak[b];
            int32_t isum = 0, msum = 0;
            for (int j = 0; j < 8; j++) {
                int32_t s = 0;
                for (int v = 0; v < 4; v++)
                    for (int c = 0; c < 4; c++) {
                        const uint8_t q = x->qs[j][64 * v + 4 * i + c];
                        const int h = qh ? qh[j][4 * i + c] : 0;
                        s += ((q & 0x0F) | ((h >> (2 * v)) & 1) << 4) * ab->qs[32 * j + 8 * v + c] +
                             ((q >> 4) | ((h >> (2 * v + 1)) & 1) << 4) * ab->qs[32 * j + 8 * v + 4 + c];
                    }
                isum += s * x->sc[j][i];
                msum += x->m[j / 2][i][j % 2] * (ab->bsums[2 * j] + ab->bsums[2 * j + 1]);
            }
            sum += ab->d * (sqz_f16_to_f32(x->d[i]) * (float)isum - sqz_f16_to_f32(x->dmin[i]) * (float)msum);
        }
        y[r] = sum;
    }
}
