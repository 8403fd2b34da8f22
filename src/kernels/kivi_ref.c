/* kivi_ref.c - reference KIVI attention kernels (kivi.h): codes unpacked to floats one row at a
 * time, scalar dots; the yardstick of kivi_avx2.c and kivi_avx512.c, and the run-time choice. */
#include "kernels/kivi.h"

#include "formats/types.h"

enum { MAX_HD = SQZ_KIVI_MAX_HD };

/* codes of channels 0..n-1 of a packed row as floats */
static void unpack(const uint8_t *src, int bits, int n, float *dst) {
    if (bits == 8) {
        for (int i = 0; i < n; i++) dst[i] = (float)src[i];
    } else if (bits == 4) {
        for (int i = 0; i < n / 2; i++) {
            dst[2 * i] = (float)(src[i] & 15);
            dst[2 * i + 1] = (float)(src[i] >> 4);
        }
    } else {
        for (int i = 0; i < n / 4; i++) {
            dst[4 * i] = (float)(src[i] & 3);
            dst[4 * i + 1] = (float)((src[i] >> 2) & 3);
            dst[4 * i + 2] = (float)((src[i] >> 4) & 3);
            dst[4 * i + 3] = (float)(src[i] >> 6);
        }
    }
}

static void kscores_ref(int bits, int hd, int nq, const float *q, const uint16_t *ks,
                        const uint16_t *km, const uint8_t *codes, size_t ld, int J, float scale,
                        float *s, size_t sld) {
    float x[MAX_HD], sf[MAX_HD], mf[MAX_HD], qs[MAX_HD];
    for (int i = 0; i < hd; i++) sf[i] = sqz_f16_to_f32(ks[i]), mf[i] = sqz_f16_to_f32(km[i]);
    for (int r = 0; r < nq; r++) {
        const float *qr = q + (size_t)r * hd;
        float qm = 0;
        for (int i = 0; i < hd; i++) {
            qs[i] = qr[i] * sf[i];
            qm += qr[i] * mf[i];
        }
        for (int j = 0; j < J; j++) {
            unpack(codes + (size_t)j * ld, bits, hd, x);
            float d = qm;
            for (int i = 0; i < hd; i++) d += qs[i] * x[i];
            s[(size_t)r * sld + j] = d * scale;
        }
    }
}

static void vaccum_ref(int bits, int hd, int vg, int nq, const float *w, size_t wld,
                       const uint8_t *codes, size_t ld, const uint16_t *vs, const uint16_t *vm,
                       size_t pld, int P, float *y) {
    float x[MAX_HD];
    const int nb = hd / vg;
    for (int p = 0; p < P; p++) {
        const uint8_t *row = codes + (size_t)p * ld;
        unpack(row, bits, hd, x);
        for (int b = 0; b < nb; b++) {
            const float sc = sqz_f16_to_f32(vs[(size_t)p * pld + b]);
            const float mn = sqz_f16_to_f32(vm[(size_t)p * pld + b]);
            for (int r = 0; r < nq; r++) {
                const float wp = w[(size_t)r * wld + p], a = wp * sc, m = wp * mn;
                float *o = y + (size_t)r * hd;
                for (int i = b * vg; i < (b + 1) * vg; i++)
                    o[i] += a * x[i] + m;
            }
        }
    }
}

sqz_kivi_kernels sqz_kivi_kernels_ref(void) { return (sqz_kivi_kernels){ kscores_ref, vaccum_ref }; }

sqz_kivi_kernels sqz_kivi_kernels_get(sqz_isa isa) {
    return isa >= SQZ_ISA_AVX512 ? sqz_kivi_kernels_avx512()
           : isa == SQZ_ISA_AVX2 ? sqz_kivi_kernels_avx2()
                                 : sqz_kivi_kernels_ref();
}
