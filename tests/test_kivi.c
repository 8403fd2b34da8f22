/* test_kivi.c - KIVI's attention kernels (kernels/kivi.h): every SIMD tier the CPU has against
 * the reference on random codes and parameters, for each code width, head sizes that are and
 * are not multiples of the vector widths (so the fallbacks run too), query counts around the
 * 4 a pass serves, row counts around the 32-token group and strides larger than a row; and the
 * reference against double-precision dequantized dot products. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "formats/types.h"
#include "kernels/kivi.h"
#include "test.h"

static uint64_t rng = 7;
static uint32_t urand(void) {
    return (uint32_t)(test_xorshift64(&rng) >> 11);
}
static float frand(void) { return (float)((double)urand() / 2097152.0 / 1024.0 * 2.0 - 1.0); }

enum { MAXHD = 128, MAXP = 70, MAXQ = 9, PAD = 8 };

/* code of channel i of a packed row */
static int code(const uint8_t *row, int bits, int i) {
    const int per = 8 / bits;
    return (row[i / per] >> ((i % per) * bits)) & ((1 << bits) - 1);
}

static double rel_err(const float *a, const float *b, int n, double *scale_out) {
    double e = 0, m = 1e-6;
    for (int i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i])), m = fmax(m, fabs((double)b[i]));
    if (scale_out) *scale_out = m;
    return e / m;
}

static void run_case(int bits, int hd, int vg, int nq, int P) {
    static uint8_t codes_buf[MAXP * (MAXHD + PAD)];
    static uint16_t vs_buf[MAXP * (MAXHD + 3)], vm_buf[MAXP * (MAXHD + 3)];
    static float q[MAXQ * MAXHD], w[MAXQ][MAXP + 5];
    static uint16_t ks[MAXHD], km[MAXHD];
    static float s_ref[MAXQ][MAXP + 5], s_simd[MAXQ][MAXP + 5];
    static float y_ref[MAXQ * MAXHD], y_simd[MAXQ * MAXHD], y0[MAXQ * MAXHD];
    const size_t ld = (size_t)hd * bits / 8 + PAD, pld = (size_t)(hd / vg) + 3;
    /* rows of stride ld and parameter rows of stride pld, as the policy's interleaved heads */
#define codes(p) (codes_buf + (size_t)(p) * ld)
#define vs(p, b) vs_buf[(size_t)(p) * pld + (size_t)(b)]
#define vm(p, b) vm_buf[(size_t)(p) * pld + (size_t)(b)]
    for (int p = 0; p < P; p++) {
        for (size_t b = 0; b < ld; b++) codes(p)[b] = (uint8_t)urand();
        for (int b = 0; b < hd / vg; b++) {
            vs(p, b) = sqz_f32_to_f16(0.01f + 0.1f * fabsf(frand()));
            vm(p, b) = sqz_f32_to_f16(frand());
        }
    }
    for (int i = 0; i < nq * hd; i++) q[i] = frand(), y0[i] = frand();
    for (int i = 0; i < hd; i++)
        ks[i] = sqz_f32_to_f16(0.01f + 0.1f * fabsf(frand())), km[i] = sqz_f32_to_f16(frand());
    for (int r = 0; r < nq; r++) {
        for (int p = 0; p < P; p++) w[r][p] = fabsf(frand()) / (float)P;
    }
    const sqz_kivi_kernels ref = sqz_kivi_kernels_ref();
    /* the reference against doubles */
    ref.kscores(bits, hd, nq, q, ks, km, codes_buf, ld, P, 0.125f, &s_ref[0][0], MAXP + 5);
    memcpy(y_ref, y0, sizeof y_ref);
    ref.vaccum(bits, hd, vg, nq, &w[0][0], MAXP + 5, codes_buf, ld, vs_buf, vm_buf, pld, P,
               y_ref);
    double es = 0, ey = 0;
    for (int r = 0; r < nq; r++) {
        for (int p = 0; p < P; p++) {
            double d = 0;
            for (int i = 0; i < hd; i++)
                d += (double)q[r * hd + i] * (sqz_f16_to_f32(km[i]) +
                                              (double)sqz_f16_to_f32(ks[i]) * code(codes(p), bits, i));
            es = fmax(es, fabs(d * 0.125 - s_ref[r][p]) / (1 + fabs(d)));
        }
        for (int i = 0; i < hd; i++) {
            double y = y0[r * hd + i];
            for (int p = 0; p < P; p++)
                y += (double)w[r][p] * (sqz_f16_to_f32(vm(p, i / vg)) +
                                        sqz_f16_to_f32(vs(p, i / vg)) * code(codes(p), bits, i));
            ey = fmax(ey, fabs(y - y_ref[r * hd + i]) / (1 + fabs(y)));
        }
    }
    CHECK(es < 1e-4 && ey < 1e-4, "ref q%d hd=%d vg=%d nq=%d P=%d against doubles (%.2g, %.2g)",
          bits, hd, vg, nq, P, es, ey);
    for (int isa = SQZ_ISA_AVX2; isa <= (int)sqz_isa_best(); isa++) {
        const sqz_kivi_kernels k = sqz_kivi_kernels_get((sqz_isa)isa);
        for (int r = 0; r < MAXQ; r++)
            for (int p = 0; p < MAXP + 5; p++) s_simd[r][p] = -99;
        k.kscores(bits, hd, nq, q, ks, km, codes_buf, ld, P, 0.125f, &s_simd[0][0], MAXP + 5);
        memcpy(y_simd, y0, sizeof y_simd);
        k.vaccum(bits, hd, vg, nq, &w[0][0], MAXP + 5, codes_buf, ld, vs_buf, vm_buf, pld,
                 P, y_simd);
        double e1 = 0;
        int outside = 0;
        for (int r = 0; r < nq; r++) {
            e1 = fmax(e1, rel_err(s_simd[r], s_ref[r], P, NULL));
            outside |= s_simd[r][P] != -99; /* nothing written past P */
        }
        const double e2 = rel_err(y_simd, y_ref, nq * hd, NULL);
        CHECK(e1 < 1e-5 && e2 < 1e-5 && !outside, "%s q%d hd=%d vg=%d nq=%d P=%d against ref "
              "(scores %.2g, values %.2g)", sqz_isa_name((sqz_isa)isa), bits, hd, vg, nq, P, e1, e2);
    }
#undef codes
#undef vs
#undef vm
}

int main(void) {
    static const int hds[] = { 64, 128, 48, 24, 8, 4 };
    static const int nqs[] = { 1, 3, 4, 5, 8 };
    static const int Ps[] = { 1, 5, 31, 32, 33, 70 };
    for (int bi = 0; bi < 3; bi++) {
        const int bits = 8 >> bi;
        for (size_t h = 0; h < sizeof hds / sizeof *hds; h++) {
            const int hd = hds[h];
            if ((hd * bits) % 8) continue;
            /* value groups (they divide hd, as the policy requires): 32 where it divides, and
             * smaller ones */
            const int vgs[] = { hd % 32 ? hd : 32, hd % 16 ? hd : 16, hd % 8 ? hd : 8, hd };
            for (int v = 0; v < 4; v++)
                for (size_t qi = 0; qi < sizeof nqs / sizeof *nqs; qi++)
                    for (size_t pi = 0; pi < sizeof Ps / sizeof *Ps; pi++)
                        if ((v == 0 || qi == 2) && (pi == 3 || pi == 4 || v == 0))
                            run_case(bits, hd, vgs[v], nqs[qi], Ps[pi]);
        }
    }
    if (sqz_isa_best() < SQZ_ISA_AVX2) SKIP("no AVX2 on this CPU: only the reference ran");
    return test_done();
}
