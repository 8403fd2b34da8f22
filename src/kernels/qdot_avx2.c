/* qdot_avx2.c - AVX2 tier of the quantized dot products (compiled with -mavx2 -mfma -mf16c;
 * only called when the CPU has them).
 *
 * Glossary: n elements; b block index; QK elements per block (32, or QK_K = 256); w weight
 * blocks, a activation blocks (Q8_0 / Q8_1 / Q8_K); d scales, dmin / m minimums, sc sub-block
 * scales; q quants. A 256-bit vector holds 32 quants.
 *
 * The integer core is vpmaddubsw (u8 x s8 -> pairs summed to s16) then vpmaddwd (s16 x s16 ->
 * pairs summed to s32). vpmaddubsw wants one unsigned operand, so:
 *   - unsigned weight quants with an offset (Q4_0: q - 8) use q * a - 8 * a, the offset's
 *     product taken as a second vpmaddubsw (or, for the k-quants, from Q8_K's bsums once per
 *     block);
 *   - signed weight quants (Q8_0, IQ4_NL levels) use |w| * (a with w's sign) (vpsign).
 * No s16 sum can saturate: |pair| <= 2 * 63 * 127 for the largest unsigned quants (Q6_K).
 */
#include <immintrin.h>
#include <math.h>

#include "kernels/mix.h"
#include "kernels/qdot.h"
#include "kernels/qdot_dq2.h"

static inline float f16s(uint16_t h) { return _cvtsh_ss(h); }
static inline uint16_t f32_to_f16s(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i loadu(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 16 bytes of packed nibbles -> 32 bytes: the low nibbles, then the high ones. */
static inline __m256i nibbles(const uint8_t *p) {
    const __m128i q = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f));
}

/* sum of |w| * (a signed like w): signed w . signed a, as 8 s32 partial sums */
static inline __m256i dot_s8(__m256i w, __m256i a) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* unsigned u . signed a, as 8 s32 partial sums */
static inline __m256i dot_u8(__m256i u, __m256i a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1));
}

/* (u - off) . a for unsigned u, as 8 s32 partial sums */
static inline __m256i dot_u8_off(__m256i u, __m256i a, __m256i off) {
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, a), _mm256_maddubs_epi16(off, a));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Q5_0 / Q5_1: the 32 bits of qh as bytes 0x10 (bit set) or 0. */
static inline __m256i q5_high(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)h),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* ------------------------------------------------------------ activation quantizers */

/* roundf (half away from zero) of each lane, exactly: truncate, then step away from zero where
 * the dropped fraction is >= 0.5 (v - trunc(v) is exact for |v| < 2^23). */
static inline __m256i round_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                                    _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f)));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, up));
}

/* 4 x 8 s32 (each in [-128, 127]) -> 32 s8 in order */
static inline __m256i pack_s8(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    /* the packs interleave the 128-bit lanes: dwords 0 4 1 5 2 6 3 7 -> 0..7 */
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline float amax32(const float *x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    for (int j = 8; j < 32; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* one block of 32: q = roundf(x * id) into qs; returns sum(q) */
static inline int quantize32(const float *x, float id, int8_t *qs) {
    const __m256 vid = _mm256_set1_ps(id);
    __m256i i[4];
    for (int j = 0; j < 4; j++) i[j] = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), vid));
    const __m256i q = pack_s8(i[0], i[1], i[2], i[3]);
    _mm256_storeu_si256((__m256i *)qs, q);
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    return _mm_cvtsi128_si32(t);
}

static void quantize_q8_0(const float *x, void *vxq, int64_t n) {
    block_q8_0 *a = vxq;
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        const float d = amax32(x) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        a[b].d = f32_to_f16s(d);
        quantize32(x, id, a[b].qs);
    }
}

static void quantize_q8_1(const float *x, void *vxq, int64_t n) {
    block_q8_1 *a = vxq;
    for (int64_t b = 0; b < n / QK8_1; b++, x += QK8_1) {
        const float d = amax32(x) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const int sum = quantize32(x, id, a[b].qs);
        a[b].d = f32_to_f16s(d);
        a[b].s = f32_to_f16s((float)sum * d);
    }
}

static void quantize_q8_k(const float *x, void *vxq, int64_t n) {
    block_q8_K *a = vxq;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float amax = 0;
        for (int j = 0; j < QK_K; j += 32) amax = fmaxf(amax, amax32(x + j));
        if (amax == 0.0f) {
            memset(&a[b], 0, sizeof a[b]);
            continue;
        }
        /* the first element of magnitude amax gives the sign, as in the reference's scan */
        float max = 0;
        const __m256 vmax = _mm256_set1_ps(amax);
        for (int j = 0; j < QK_K; j += 8) {
            const int m = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), vmax, _CMP_EQ_OQ));
            if (m) {
                max = x[j + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i i[4];
            for (int k = 0; k < 4; k++) /* vcvtps2dq rounds to nearest even, as nearest_int */
                i[k] = _mm256_min_epi32(
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), vs)), top);
            const __m256i q = pack_s8(i[0], i[1], i[2], i[3]);
            _mm256_storeu_si256((__m256i *)(a[b].qs + j), q);
            /* bsums of the two 16s: sums of s8 = sums of (s8 ^ 0x80) as u8 - 128 * count */
            const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)),
                                                _mm256_setzero_si256());
            const __m256i s2 = _mm256_add_epi64(sad, _mm256_shuffle_epi32(sad, 0x4e));
            a[b].bsums[j / 16] = (int16_t)(_mm256_extract_epi64(s2, 0) - 16 * 128);
            a[b].bsums[j / 16 + 1] = (int16_t)(_mm256_extract_epi64(s2, 2) - 16 * 128);
        }
        a[b].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------ 32-element blocks */

static float vdq_q8_0(int64_t n, const void *row, const void *xq) {
    const block_q8_0 *w = row;
    const block_q8_0 *a = xq;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m256i p0 = dot_s8(loadu(w[b].qs), loadu(a[b].qs));
        const __m256i p1 = dot_s8(loadu(w[b + 1].qs), loadu(a[b + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                               _mm256_set1_ps(f16s(w[b + 1].d) * f16s(a[b + 1].d)), acc1);
    }
    for (; b < nb; b++) {
        const __m256i p = dot_s8(loadu(w[b].qs), loadu(a[b].qs));
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static float vdq_q4_0(int64_t n, const void *row, const void *xq) {
    const block_q4_0 *w = row;
    const block_q8_0 *a = xq;
    const int64_t nb = n / QK4_0;
    const __m256i off = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m256i p0 = dot_u8_off(nibbles(w[b].qs), loadu(a[b].qs), off);
        const __m256i p1 = dot_u8_off(nibbles(w[b + 1].qs), loadu(a[b + 1].qs), off);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                               _mm256_set1_ps(f16s(w[b + 1].d) * f16s(a[b + 1].d)), acc1);
    }
    for (; b < nb; b++) {
        const __m256i p = dot_u8_off(nibbles(w[b].qs), loadu(a[b].qs), off);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static float vdq_q4_1(int64_t n, const void *row, const void *xq) {
    const block_q4_1 *w = row;
    const block_q8_1 *a = xq;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        const __m256i p = dot_u8(nibbles(w[b].qs), loadu(a[b].qs));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc);
        summ += f16s(w[b].m) * f16s(a[b].s);
    }
    return hsum_ps(acc) + summ;
}

static float vdq_q5_0(int64_t n, const void *row, const void *xq) {
    const block_q5_0 *w = row;
    const block_q8_0 *a = xq;
    const __m256i off = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK5_0; b++) {
        const __m256i q = _mm256_or_si256(nibbles(w[b].qs), q5_high(w[b].qh));
        const __m256i p = dot_u8_off(q, loadu(a[b].qs), off);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc);
    }
    return hsum_ps(acc);
}

static float vdq_q5_1(int64_t n, const void *row, const void *xq) {
    const block_q5_1 *w = row;
    const block_q8_1 *a = xq;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t b = 0; b < n / QK5_1; b++) {
        const __m256i q = _mm256_or_si256(nibbles(w[b].qs), q5_high(w[b].qh));
        const __m256i p = dot_u8(q, loadu(a[b].qs));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc);
        summ += f16s(w[b].m) * f16s(a[b].s);
    }
    return hsum_ps(acc) + summ;
}

static inline __m256i iq4nl_table(void) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sqz_iq4nl_levels));
}

static float vdq_iq4_nl(int64_t n, const void *row, const void *xq) {
    const block_iq4_nl *w = row;
    const block_q8_0 *a = xq;
    const __m256i table = iq4nl_table();
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK4_NL; b++) {
        const __m256i v = _mm256_shuffle_epi8(table, nibbles(w[b].qs));
        const __m256i p = dot_s8(v, loadu(a[b].qs));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc);
    }
    return hsum_ps(acc);
}

/* ------------------------------------------------------------ k-quants */

/* s16 lanes k (low 128 bits) and k+1 (high 128 bits) of a 128-bit vector of 8 s16 broadcast to
 * both halves: [v_k x 8 | v_k+1 x 8]. k even. */
static inline __m256i pair16(__m256i v8x2, int k) {
    const int lo = 2 * k, hi = 2 * k + 2;
    const __m256i ctl = _mm256_setr_epi8(
        (char)lo, (char)(lo + 1), (char)lo, (char)(lo + 1), (char)lo, (char)(lo + 1), (char)lo,
        (char)(lo + 1), (char)lo, (char)(lo + 1), (char)lo, (char)(lo + 1), (char)lo, (char)(lo + 1),
        (char)lo, (char)(lo + 1), (char)hi, (char)(hi + 1), (char)hi, (char)(hi + 1), (char)hi,
        (char)(hi + 1), (char)hi, (char)(hi + 1), (char)hi, (char)(hi + 1), (char)hi, (char)(hi + 1),
        (char)hi, (char)(hi + 1), (char)hi, (char)(hi + 1));
    return _mm256_shuffle_epi8(v8x2, ctl);
}

/* All 16 s16 lanes = lane k of the 8 s16 in v8x2 (broadcast to both halves). */
static inline __m256i bcast16(__m256i v8x2, int k) {
    return _mm256_shuffle_epi8(v8x2, _mm256_set1_epi16((short)((2 * k + 1) << 8 | 2 * k)));
}

/* Q2_K: 16 sub-blocks of 16; each 256-bit vector of 32 quants spans two sub-blocks, whose
 * scales go in with vpmaddwd; the mins meet bsums, and are done once per block. */
static float vdq_q2_k(int64_t n, const void *row, const void *xq) {
    const block_q2_K *w = row;
    const block_q8_K *a = xq;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm256_castsi256_si128(m4)));
        const __m256i pm = _mm256_madd_epi16(mins, loadu(a[b].bsums));
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(f16s(w[b].dmin) * a[b].d), accm);
        const __m128i scl = _mm_and_si128(sc8, _mm256_castsi256_si128(m4));
        __m256i sumi = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu(w[b].qs + 32 * h);
            const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(h ? _mm_unpackhi_epi64(scl, scl) : scl));
            #pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                const __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                const __m256i p = _mm256_maddubs_epi16(v, loadu(a[b].qs + 128 * h + 32 * j));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair16(sc, 2 * j)));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return hsum_ps(_mm256_sub_ps(acc, accm));
}

/* Q3_K: q = low 2 bits | hmask bit << 2 (0..7), minus 4 taken from bsums once per block. */
static float vdq_q3_k(int64_t n, const void *row, const void *xq) {
    const block_q3_K *w = row;
    const block_q8_K *a = xq;
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const sqz_u64x2 scw = sqz_q3k_scales_u64(w[b].scales);
        /* scales - 32 as s16, all 16 */
        const __m256i sc16 = _mm256_sub_epi16(
            _mm256_cvtepu8_epi16(_mm_set_epi64x((long long)scw.hi, (long long)scw.lo)), _mm256_set1_epi16(32));
        /* offset: -4 * sum_s sc_s * bsums_s */
        __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(sc16, loadu(a[b].bsums)), 2);
        sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);
        const __m256i hm = loadu(w[b].hmask);
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu(w[b].qs + 32 * h);
            const __m256i sc = _mm256_broadcastsi128_si256(
                h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            #pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                const int bit = 4 * h + j; /* hmask bit of this group of 32 */
                /* bit -> 4: shift left (2 - bit) or right (bit - 2); epi16 shifts are safe
                 * because only bit 2 of each byte is kept */
                const __m256i hb = bit <= 2 ? _mm256_slli_epi16(hm, 2 - bit) : _mm256_srli_epi16(hm, bit - 2);
                const __m256i v = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3),
                                                  _mm256_and_si256(hb, four));
                const __m256i p = _mm256_maddubs_epi16(v, loadu(a[b].qs + 128 * h + 32 * j));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair16(sc, 2 * j)));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return hsum_ps(acc);
}

/* Q4_K / Q5_K: 8 sub-blocks of 32 = one 256-bit vector each, scaled with vpmaddwd; the mins
 * meet bsums (pairs of 16) once per block, into *accm. qh: Q5_K's 5th bits, or NULL. Returns
 * the block's scaled integer sums (8 s32). */
static inline __m256i k4_block(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                               const block_q8_K *a, float dmin, __m256 *accm) {
    const sqz_u64x2 sm = sqz_k4_scales_u64(scales);
    const __m256i sm16 = _mm256_cvtepu8_epi16(_mm_set_epi64x((long long)sm.hi, (long long)sm.lo));
    const __m128i mins8 = _mm256_extracti128_si256(sm16, 1); /* 8 s16 */
    const __m256i mins = _mm256_set_m128i(_mm_unpackhi_epi16(mins8, mins8), _mm_unpacklo_epi16(mins8, mins8));
    const __m256i pm = _mm256_madd_epi16(mins, loadu(a->bsums));
    *accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(dmin * a->d), *accm);
    const __m256i sc = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm16));
    const __m256i m4 = _mm256_set1_epi8(0x0f), b5 = _mm256_set1_epi8(0x10);
    const __m256i hb = qh ? loadu(qh) : _mm256_setzero_si256();
    __m256i sumi = _mm256_setzero_si256();
    #pragma GCC unroll 8
    for (int j = 0; j < 4; j++) {
        const __m256i q = loadu(qs + 32 * j);
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) { /* bit 2j of qh[l] is lo's 5th bit, 2j+1 hi's: moved to bit 4 (epi16 shifts
                   * are safe: only bit 4 of each byte is kept, and it comes from its own byte) */
            const int s0 = 2 * j, s1 = 2 * j + 1;
            const __m256i h0 = s0 <= 4 ? _mm256_slli_epi16(hb, 4 - s0) : _mm256_srli_epi16(hb, s0 - 4);
            const __m256i h1 = s1 <= 4 ? _mm256_slli_epi16(hb, 4 - s1) : _mm256_srli_epi16(hb, s1 - 4);
            lo = _mm256_or_si256(lo, _mm256_and_si256(h0, b5));
            hi = _mm256_or_si256(hi, _mm256_and_si256(h1, b5));
        }
        const __m256i p0 = _mm256_maddubs_epi16(lo, loadu(a->qs + 64 * j));
        const __m256i p1 = _mm256_maddubs_epi16(hi, loadu(a->qs + 64 * j + 32));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p0, bcast16(sc, 2 * j)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, bcast16(sc, 2 * j + 1)));
    }
    return sumi;
}

static float vdq_q4_k(int64_t n, const void *row, const void *xq) {
    const block_q4_K *w = row;
    const block_q8_K *a = xq;
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m256i sumi = k4_block(w[b].scales, w[b].qs, NULL, &a[b], f16s(w[b].dmin), &accm);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return hsum_ps(_mm256_sub_ps(acc, accm));
}

static float vdq_q5_k(int64_t n, const void *row, const void *xq) {
    const block_q5_K *w = row;
    const block_q8_K *a = xq;
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m256i sumi = k4_block(w[b].scales, w[b].qs, w[b].qh, &a[b], f16s(w[b].dmin), &accm);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return hsum_ps(_mm256_sub_ps(acc, accm));
}

/* Q6_K: q = 4 low bits | 2 high bits << 4 (0..63), minus 32 taken from bsums once per block;
 * 16 s8 scales, one per 16 quants, two per 256-bit vector. */
static float vdq_q6_k(int64_t n, const void *row, const void *xq) {
    const block_q6_K *w = row;
    const block_q8_K *a = xq;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[b].scales));
        /* offset: -32 * sum_s sc_s * bsums_s */
        __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(sc16, loadu(a[b].bsums)), 5);
        sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = loadu(w[b].ql + 64 * h), l1 = loadu(w[b].ql + 64 * h + 32);
            const __m256i qh = loadu(w[b].qh + 32 * h);
            const __m256i sc = _mm256_broadcastsi128_si256(
                h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const __m256i v[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2)),
            };
            #pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                const __m256i p = _mm256_maddubs_epi16(v[j], loadu(a[b].qs + 128 * h + 32 * j));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair16(sc, 2 * j)));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return hsum_ps(acc);
}

/* IQ4_XS: 8 sub-blocks of 32 as IQ4_NL (one 256-bit vector each), 6-bit scales. */
static float vdq_iq4_xs(int64_t n, const void *row, const void *xq) {
    const block_iq4_xs *w = row;
    const block_q8_K *a = xq;
    const __m256i table = iq4nl_table();
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        __m256i sumi = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            const __m256i v = _mm256_shuffle_epi8(table, nibbles(w[b].qs + 16 * s));
            const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v),
                                                   _mm256_sign_epi8(loadu(a[b].qs + 32 * s), v));
            sumi = _mm256_add_epi32(
                sumi, _mm256_madd_epi16(p, _mm256_set1_epi16((short)sqz_iq4xs_scale(&w[b], s))));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return hsum_ps(acc);
}

/* ------------------------------------------------------------ four rows at once (decode) */

/* (a, b, c, d each summed) as 4 floats */
static inline __m128 hsum4_ps(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* Q4_0, rows r0..r3 at p + r * rs: the activations' loads, their scale and the offset term
 * 8 . a are the same for the four rows and done once; out[r] = row r's 8 partial sums. */
static inline void acc4_rows_q4_0(int64_t n, const char *p, size_t rs, const void *xq, __m256 out[4]) {
    const block_q8_0 *a = xq;
    const __m256i off = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
    const block_q4_0 *w[4] = { (const void *)p, (const void *)(p + rs), (const void *)(p + 2 * rs),
                               (const void *)(p + 3 * rs) };
    for (int r = 0; r < 4; r++) out[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK4_0; b++) {
        const __m256i av = loadu(a[b].qs);
        const __m256i oa = _mm256_maddubs_epi16(off, av);
        const float da = f16s(a[b].d);
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const __m256i pr = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles(w[r][b].qs), av), oa);
            out[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(pr, ones)),
                                     _mm256_set1_ps(f16s(w[r][b].d) * da), out[r]);
        }
    }
}

static void rows_q4_0(int64_t n, const void *w, size_t rs, int64_t nr, const void *xq, float *y) {
    const char *p = w;
    int64_t i = 0;
    for (; i + 4 <= nr; i += 4, p += 4 * rs) {
        __m256 acc[4];
        acc4_rows_q4_0(n, p, rs, xq, acc);
        _mm_storeu_ps(y + i, hsum4_ps(acc[0], acc[1], acc[2], acc[3]));
    }
    for (; i < nr; i++, p += rs) y[i] = vdq_q4_0(n, p, xq);
}

/* The AVX2 tier's table (kernels.h). */
const sqz_kernel_row sqz_kernels_avx2[SQZ_TYPE_SLOTS] = {
    [SQZ_TYPE_SLOT(SQZ_TYPE_F32)] = { .dot = sqz_dot_f32_avx2 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_F16)] = { .dot = sqz_dot_f16_avx2, .to_float = sqz_cvt_f16_avx2 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_BF16)] = { .dot = sqz_dot_bf16_avx2, .to_float = sqz_cvt_bf16_avx2 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_0)] = { .vec_dot_q = vdq_q4_0, .vec_dot_q_rows = rows_q4_0 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_1)] = { .vec_dot_q = vdq_q4_1 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_0)] = { .vec_dot_q = vdq_q5_0 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_1)] = { .vec_dot_q = vdq_q5_1 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_0)] = { .vec_dot_q = vdq_q8_0, .quantize_act = quantize_q8_0 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_1)] = { .quantize_act = quantize_q8_1 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q2_K)] = { .vec_dot_q = vdq_q2_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q3_K)] = { .vec_dot_q = vdq_q3_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_K)] = { .vec_dot_q = vdq_q4_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_K)] = { .vec_dot_q = vdq_q5_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q6_K)] = { .vec_dot_q = vdq_q6_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_K)] = { .quantize_act = quantize_q8_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_IQ4_NL)] = { .vec_dot_q = vdq_iq4_nl },
    [SQZ_TYPE_SLOT(SQZ_TYPE_IQ4_XS)] = { .vec_dot_q = vdq_iq4_xs },
    [SQZ_TYPE_SLOT(SQZ_TYPE_DQ2)] = { .vec_dot_q = sqz_dq2_vec_dot_q_avx2 },
    /* mixllm's types: row . MXA activations (kernels/mix.h), reached through the mixed matrix */
    [SQZ_TYPE_SLOT(SQZ_TYPE_MX8)] = { .vec_dot_q = sqz_mx8_dot_mxa_avx2 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_MX4)] = { .vec_dot_q = sqz_mx4_dot_mxa_avx2 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_MX3)] = { .vec_dot_q = sqz_mx3_dot_mxa_avx2 },
};
