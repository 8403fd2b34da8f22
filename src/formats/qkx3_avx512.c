/* qkx3_avx512.c - make_qkx3_quants with 16 candidate scales per pass, one per lane (qkx3.h).
 * Bit-identical to the reference: each lane performs the reference's float operations in its
 * order (separate multiplies and adds, no FMA), rounding is round-to-nearest-even as ggml's
 * nearest_int, and the candidates are compared in the reference's order afterwards. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <immintrin.h>
#include <string.h>

#include "formats/qkx3.h"

int sqz_qkx3_has_avx512(void) {
    static int v = -1;
    if (v < 0)
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    return v;
}

static inline int nearest_int(float f) { /* as quantize_ref.c's: ties to even */
    const float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

float sqz_qkx3_avx512(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                      float rmin, float rdelta, int nstep, bool use_mad) {
    float w[32] = { 0 };
    for (int i = 0; i < n; i++) w[i] = weights ? weights[i] : x[i] * x[i];
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? (diff < 0 ? -diff : diff) : diff * diff;
        best_mad += w[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    /* The reference's candidates are not independent: a candidate that wins moves min, and every
     * later candidate's inverse scale and levels use the new min. So the lanes run speculatively
     * from candidate `is` with the current min; the first lane that wins (in the reference's
     * order) is taken, and the next pass starts after it with the new min. */
    const __m512 vnmax = _mm512_set1_ps((float)nmax), zero = _mm512_setzero_ps();
    const __m512 lane = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 sw = _mm512_set1_ps(sum_w), sx = _mm512_set1_ps(sum_x);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    float lvs[32][16];
    for (int is = 0; is <= nstep;) {
        /* (rmin + rdelta * is + nmax) / (max - min), and x[i] - min, with this pass's min */
        const __m512 isf = _mm512_add_ps(_mm512_set1_ps((float)is), lane);
        const __m512 t = _mm512_add_ps(_mm512_add_ps(_mm512_set1_ps(rmin), _mm512_mul_ps(_mm512_set1_ps(rdelta), isf)),
                                       vnmax);
        const __m512 isc = _mm512_div_ps(t, _mm512_set1_ps(max - min));
        __m512 lv[32];
        __m512 sl = zero, sl2 = zero, sxl = zero;
        for (int i = 0; i < n; i++) {
            const __m512 v = _mm512_mul_ps(isc, _mm512_set1_ps(x[i] - min));
            const __m512 vc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, vnmax, _CMP_LT_OQ), vnmax, v);
            const __m512 r = _mm512_roundscale_ps(vc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m512 l = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), r);
            lv[i] = l;
            const __m512 wl = _mm512_mul_ps(_mm512_set1_ps(w[i]), l);
            sl = _mm512_add_ps(sl, wl);
            sl2 = _mm512_add_ps(sl2, _mm512_mul_ps(wl, l));
            sxl = _mm512_add_ps(sxl, _mm512_mul_ps(wl, _mm512_set1_ps(x[i])));
        }
        const __m512 D = _mm512_sub_ps(_mm512_mul_ps(sw, sl2), _mm512_mul_ps(sl, sl));
        __m512 ts = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sw, sxl), _mm512_mul_ps(sx, sl)), D);
        __m512 tm = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sl2, sx), _mm512_mul_ps(sl, sxl)), D);
        const __mmask16 pos = _mm512_cmp_ps_mask(tm, zero, _CMP_GT_OQ);
        tm = _mm512_mask_mov_ps(tm, pos, zero);
        ts = _mm512_mask_mov_ps(ts, pos, _mm512_div_ps(sxl, sl2));
        __m512 mad = zero;
        for (int i = 0; i < n; i++) {
            __m512 d = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(ts, lv[i]), tm), _mm512_set1_ps(x[i]));
            d = use_mad ? _mm512_andnot_ps(sign, d) : _mm512_mul_ps(d, d);
            mad = _mm512_add_ps(mad, _mm512_mul_ps(_mm512_set1_ps(w[i]), d));
        }
        float Dv[16], madv[16], tsv[16], tmv[16];
        _mm512_storeu_ps(Dv, D), _mm512_storeu_ps(madv, mad), _mm512_storeu_ps(tsv, ts), _mm512_storeu_ps(tmv, tm);
        int k = 0;
        while (k < 16 && is + k <= nstep && !(Dv[k] > 0 && madv[k] < best_mad)) k++;
        if (k < 16 && is + k <= nstep) { /* lane k wins: its levels, scale and min */
            for (int i = 0; i < n; i++) _mm512_storeu_ps(lvs[i], lv[i]);
            for (int i = 0; i < n; i++) L[i] = (uint8_t)lvs[i][k];
            best_mad = madv[k], scale = tsv[k], min = tmv[k];
            is += k + 1;
        } else {
            is += 16;
        }
    }
    *the_min = -min;
    return scale;
}
