/* qdot_avx512.c - AVX-512 tier of the quantized dot products (compiled with -mavx512f/bw/vl/dq/
 * vnni ...; the table hands them out only when the CPU also has AVX512-VNNI, else the AVX2
 * tier serves). Every weight type has its kernel here.
 *
 * Glossary: n elements; b block index; QK elements per block (32, or QK_K = 256); w weight
 * blocks, a activation blocks (Q8_0 / Q8_1 / Q8_K); d scales, dmin / m minimums (s: Q8_1's
 * d * sum(q)), sc sub-block scales; q quants; v index of a 512-bit vector (64 quants) within a
 * 256-element block; lane L one of its four 128-bit lanes (16 quants).
 *
 * 32-element blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) go two per vector and four per
 * iteration, so that the f16 scales of four blocks come in with one or two loads, a word permute
 * and one vcvtph2ps. Their integer core is VNNI's vpdpbusd (u8 x s8, four products summed into
 * s32): an offset (Q4_0's q - 8, Q5_0's q - 16) is q . a - off . a; signed weights (Q8_0, the
 * IQ4_NL levels looked up with vpshufb) go as |w| . (a signed like w); Q5's 5th bits are the
 * 64-bit mask of two blocks' qh; Q4_1 / Q5_1's minimums are m * s, four blocks per FMA.
 * The k-quants and IQ4_XS use vpmaddubsw (u8 x s8 pairs -> s16) then VNNI's vpdpwssd with the
 * sub-block scales as s16 (pairs -> s32, accumulated): each vector spans 2 (Q4_K, Q5_K, IQ4_XS:
 * sub-blocks of 32) or 4 (Q2_K, Q3_K, Q6_K: sub-blocks of 16, one per lane) sub-blocks, and one
 * vpshufb per vector broadcasts the right scale into each lane from a vector of all of the
 * block's scales laid out lane-major (see scales_lanes). Constant offsets (Q3_K's -4, Q6_K's
 * -32) and the minimums (Q2_K, Q4_K, Q5_K) meet Q8_K's bsums once per block.
 * Also here: to_float of Q4_0, Q8_0, Q4_K, Q5_K and Q6_K for sqz_matmul's sgemm panels.
 */
#include <immintrin.h>
#include <math.h>

#include "kernels/qdot.h"
#include "kernels/qdot_dq2.h"

static inline uint16_t f32_to_f16s(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static inline float f16s(uint16_t h) { return _cvtsh_ss(h); }

/* The f16 d of four consecutive 32-element blocks starting at p, as 4 floats: one or two
 * 64-byte loads (within the four blocks: no over-read) and a word permute. */
static inline __m128 d4_18(const void *p) { /* 18-byte blocks: d at words 0, 9, 18, 27 */
    static const uint16_t words[32] = { 0, 9, 18, 27 };
    const __m512i idx = _mm512_loadu_si512(words);
    const __m512i d = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(p));
    return _mm_cvtph_ps(_mm512_castsi512_si128(d));
}
static inline __m128 d4_34(const void *p) { /* 34-byte blocks: d at words 0, 17, 34, 51 */
    static const uint16_t words[32] = { 0, 17, 34, 51 };
    const __m512i idx = _mm512_loadu_si512(words);
    const __m512i d = _mm512_permutex2var_epi16(_mm512_loadu_si512(p), idx,
                                                _mm512_loadu_si512((const char *)p + 64));
    return _mm_cvtph_ps(_mm512_castsi512_si128(d));
}

/* [s_i x 8 | s_i+1 x 8] from the four products */
static inline __m512 spread2(__m128 s4, int i) {
    const __m512i idx = _mm512_set_epi32(i + 1, i + 1, i + 1, i + 1, i + 1, i + 1, i + 1, i + 1,
                                         i, i, i, i, i, i, i, i);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s4));
}

/* two 32-byte runs -> one vector */
static inline __m512i load2x32(const void *p0, const void *p1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* two 16-byte runs of packed nibbles -> [lo0 | hi0 | lo1 | hi1] (16 quants per lane) */
static inline __m512i nibbles2x16(const void *p0, const void *p1) {
    __m512i q = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p0));
    q = _mm512_mask_broadcast_i32x4(q, 0xff00, _mm_loadu_si128((const __m128i *)p1));
    q = _mm512_mask_srli_epi16(q, 0xff00ff00u, q, 4); /* lanes 1 and 3: the high nibbles */
    return _mm512_and_si512(q, _mm512_set1_epi8(0x0f));
}

/* one 32-byte run of packed nibbles -> [lo (32) | hi (32)] */
static inline __m512i nibbles32(const void *p) {
    __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
    q = _mm512_mask_srli_epi16(q, 0xffff0000u, q, 4);
    return _mm512_and_si512(q, _mm512_set1_epi8(0x0f));
}

/* signed w . signed a: |w| . (a signed like w), as 16 s32 partial sums */
static inline __m512i dot_s8(__m512i w, __m512i a) {
    const __m512i as = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(w), _mm512_setzero_si512(), a);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), as);
}

/* ------------------------------------------------------------ activation quantizers */

/* roundf of each lane exactly: truncate, then step away from zero where |fraction| >= 0.5 */
static inline __m512i round_away(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 step = _mm512_or_ps(_mm512_and_ps(v, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(1.0f));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
}

static inline float amax32(const float *x) {
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x)),
                                              _mm512_abs_ps(_mm512_loadu_ps(x + 16))));
}

/* one block of 32: q = roundf(x * id) into qs; returns sum(q) */
static inline int quantize32(const float *x, float id, int8_t *qs) {
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i i0 = round_away(_mm512_mul_ps(_mm512_loadu_ps(x), vid));
    const __m512i i1 = round_away(_mm512_mul_ps(_mm512_loadu_ps(x + 16), vid));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(i1));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
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
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < QK_K; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
        const float amax = _mm512_reduce_max_ps(m);
        if (amax == 0.0f) {
            memset(&a[b], 0, sizeof a[b]);
            continue;
        }
        /* the first element of magnitude amax gives the sign, as in the reference's scan */
        float max = 0;
        for (int j = 0; j < QK_K; j += 16) {
            const __mmask16 k = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)),
                                                   _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (k) {
                max = x[j + __builtin_ctz(k)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 16) { /* vcvtps2dq rounds to nearest even */
            const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + j), vs)),
                                               _mm512_set1_epi32(127));
            _mm_storeu_si128((__m128i *)(a[b].qs + j), _mm512_cvtepi32_epi8(q));
            a[b].bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        a[b].d = 1.0f / iscale;
    }
}

/* Decode streams every weight from DRAM once a token. On the machines measured (a VM on
 * Sapphire Rapids) the hardware prefetchers alone let a core read ~13-15 GB/s, with software
 * prefetches some PF_DIST bytes ahead ~25-29 GB/s for two cores: every decode loop prefetches
 * the lines of the bytes it will read that far ahead (a few cheap instructions a block). */
#define SQZ_PF_DIST 1536
static inline void pf_ahead(const void *p, size_t bytes) {
    for (size_t l = 0; l < bytes; l += 64) _mm_prefetch((const char *)p + SQZ_PF_DIST + l, _MM_HINT_T0);
}
/* ------------------------------------------------------------ 32-element blocks */

/* The last 1..3 blocks of Q8_0 / Q4_0, one per 256-bit vector */
static inline __m256i dot_s8_256(__m256i w, __m256i a) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

static inline __m512 acc_q8_0(int64_t n, const void *row, const void *xq) {
    const block_q8_0 *w = row;
    const block_q8_0 *a = xq;
    const int64_t nb = n / QK8_0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        pf_ahead(&w[b], 4 * sizeof w[b]);
        const __m128 s = _mm_mul_ps(d4_34(&w[b]), d4_34(&a[b]));
        const __m512i p0 = dot_s8(load2x32(w[b].qs, w[b + 1].qs), load2x32(a[b].qs, a[b + 1].qs));
        const __m512i p1 = dot_s8(load2x32(w[b + 2].qs, w[b + 3].qs), load2x32(a[b + 2].qs, a[b + 3].qs));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread2(s, 0), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread2(s, 2), acc1);
    }
    for (; b < nb; b++) {
        const __m256i p = dot_s8_256(_mm256_loadu_si256((const __m256i *)w[b].qs),
                                     _mm256_loadu_si256((const __m256i *)a[b].qs));
        acc1 = _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(p)),
                               _mm512_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc1);
    }
    return _mm512_add_ps(acc0, acc1);
}

static inline __m512 acc_q4_0(int64_t n, const void *row, const void *xq) {
    const block_q4_0 *w = row;
    const block_q8_0 *a = xq;
    const int64_t nb = n / QK4_0;
    const __m512i eight = _mm512_set1_epi8(8);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        pf_ahead(&w[b], 4 * sizeof w[b]);
        const __m128 s = _mm_mul_ps(d4_18(&w[b]), d4_34(&a[b]));
        const __m512i a0 = load2x32(a[b].qs, a[b + 1].qs), a1 = load2x32(a[b + 2].qs, a[b + 3].qs);
        /* (q - 8) . a = q . a - 8 . a */
        const __m512i p0 = _mm512_sub_epi32(
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles2x16(w[b].qs, w[b + 1].qs), a0),
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, a0));
        const __m512i p1 = _mm512_sub_epi32(
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles2x16(w[b + 2].qs, w[b + 3].qs), a1),
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, a1));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread2(s, 0), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread2(s, 2), acc1);
    }
    for (; b < nb; b++) {
        const __m128i q = _mm_loadu_si128((const __m128i *)w[b].qs);
        const __m256i v = _mm256_sub_epi8(
            _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f)),
            _mm256_set1_epi8(8));
        const __m256 f = _mm256_cvtepi32_ps(dot_s8_256(v, _mm256_loadu_si256((const __m256i *)a[b].qs)));
        acc1 = _mm512_fmadd_ps(_mm512_zextps256_ps512(f), _mm512_set1_ps(f16s(w[b].d) * f16s(a[b].d)), acc1);
    }
    return _mm512_add_ps(acc0, acc1);
}

/* The f16 words idx[0..7] of the 128 bytes [p0 .. p0+64) ++ [p1 .. p1+64), as 8 floats. The
 * callers pick p1 so that both loads stay within their four blocks. */
static inline __m256 f16x8(const void *p0, const void *p1, const uint16_t idx[32]) {
    const __m512i w = _mm512_permutex2var_epi16(_mm512_loadu_si512(p0), _mm512_loadu_si512(idx),
                                                _mm512_loadu_si512(p1));
    return _mm256_cvtph_ps(_mm512_castsi512_si128(w));
}

/* d (low 4) and s (high 4) of four Q8_1 blocks (36 bytes: d, s at words 18k, 18k + 1) */
static inline __m256 ds4_q8_1(const block_q8_1 *a) {
    static const uint16_t idx[32] = { 0, 18, 36, 54, 1, 19, 37, 55 };
    return f16x8(a, (const char *)a + 64, idx);
}

/* 5th bits of two Q5 blocks as a 64-bit mask in element order (bit j of qh = element j) */
static inline __mmask64 q5_mask2(const uint8_t *qh0, const uint8_t *qh1) {
    uint32_t h0, h1;
    memcpy(&h0, qh0, 4);
    memcpy(&h1, qh1, 4);
    return _cvtu64_mask64(h0 | (uint64_t)h1 << 32);
}

/* unsigned u . a over [b, b+1] | [b+2, b+3], minus off . a where off is not NULL */
static inline __m512i dot_u8_off(__m512i u, __m512i a, const __m512i *off) {
    const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a);
    return off ? _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(), *off, a)) : p;
}

static inline float hsum256(__m256 f) {
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    return _mm_cvtss_f32(t);
}

/* The last 1..3 blocks of the 32-element types: u (unsigned quants) . a minus off . a */
static inline float tail_u8(__m256i u, const int8_t *a, int off) {
    const __m256i av = _mm256_loadu_si256((const __m256i *)a);
    __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, av);
    if (off) p = _mm256_sub_epi32(p, _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)off), av));
    return hsum256(_mm256_cvtepi32_ps(p));
}

static inline __m256i nibbles16(const uint8_t *p) {
    const __m128i q = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f));
}

static inline __m256i q5_bits256(const uint8_t *qh) { /* 32 5th bits -> bytes 0x10 or 0 */
    uint32_t h;
    memcpy(&h, qh, 4);
    return _mm256_maskz_mov_epi8(_cvtu32_mask32(h), _mm256_set1_epi8(0x10));
}

static float vdq_q4_1(int64_t n, const void *row, const void *xq) {
    const block_q4_1 *w = row;
    const block_q8_1 *a = xq;
    static const uint16_t dm[32] = { 0, 10, 20, 30, 1, 11, 21, 31 }; /* 20-byte blocks */
    const int64_t nb = n / QK4_1;
    __m512 acc = _mm512_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m256 wdm = f16x8(&w[b], &w[b], dm), ads = ds4_q8_1(&a[b]);
        const __m128 s = _mm_mul_ps(_mm256_castps256_ps128(wdm), _mm256_castps256_ps128(ads));
        accm = _mm_fmadd_ps(_mm256_extractf128_ps(wdm, 1), _mm256_extractf128_ps(ads, 1), accm);
        const __m512i p0 = dot_u8_off(nibbles2x16(w[b].qs, w[b + 1].qs), load2x32(a[b].qs, a[b + 1].qs), NULL);
        const __m512i p1 = dot_u8_off(nibbles2x16(w[b + 2].qs, w[b + 3].qs), load2x32(a[b + 2].qs, a[b + 3].qs), NULL);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread2(s, 0), acc);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread2(s, 2), acc);
    }
    float sum = _mm512_reduce_add_ps(acc) + hsum256(_mm256_zextps128_ps256(accm));
    for (; b < nb; b++)
        sum += tail_u8(nibbles16(w[b].qs), a[b].qs, 0) * (f16s(w[b].d) * f16s(a[b].d)) +
               f16s(w[b].m) * f16s(a[b].s);
    return sum;
}

static float vdq_q5_0(int64_t n, const void *row, const void *xq) {
    const block_q5_0 *w = row;
    const block_q8_0 *a = xq;
    static const uint16_t dw[32] = { 0, 11, 22, 53 }; /* 22-byte blocks; word 33 = 53 of p + 24 */
    const int64_t nb = n / QK5_0;
    const __m512i sixteen = _mm512_set1_epi8(16);
    __m512 acc = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m128 s = _mm_mul_ps(_mm256_castps256_ps128(f16x8(&w[b], (const char *)&w[b] + 24, dw)), d4_34(&a[b]));
        __m512i q0 = nibbles2x16(w[b].qs, w[b + 1].qs), q1 = nibbles2x16(w[b + 2].qs, w[b + 3].qs);
        q0 = _mm512_mask_add_epi8(q0, q5_mask2(w[b].qh, w[b + 1].qh), q0, sixteen);
        q1 = _mm512_mask_add_epi8(q1, q5_mask2(w[b + 2].qh, w[b + 3].qh), q1, sixteen);
        const __m512i p0 = dot_u8_off(q0, load2x32(a[b].qs, a[b + 1].qs), &sixteen);
        const __m512i p1 = dot_u8_off(q1, load2x32(a[b + 2].qs, a[b + 3].qs), &sixteen);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread2(s, 0), acc);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread2(s, 2), acc);
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; b < nb; b++)
        sum += tail_u8(_mm256_or_si256(nibbles16(w[b].qs), q5_bits256(w[b].qh)), a[b].qs, 16) *
               (f16s(w[b].d) * f16s(a[b].d));
    return sum;
}

static float vdq_q5_1(int64_t n, const void *row, const void *xq) {
    const block_q5_1 *w = row;
    const block_q8_1 *a = xq;
    /* 24-byte blocks: d, m at words 12k, 12k + 1; words 36, 37 are 52, 53 of p + 32 */
    static const uint16_t dm[32] = { 0, 12, 24, 52, 1, 13, 25, 53 };
    const int64_t nb = n / QK5_1;
    const __m512i sixteen = _mm512_set1_epi8(16);
    __m512 acc = _mm512_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m256 wdm = f16x8(&w[b], (const char *)&w[b] + 32, dm), ads = ds4_q8_1(&a[b]);
        const __m128 s = _mm_mul_ps(_mm256_castps256_ps128(wdm), _mm256_castps256_ps128(ads));
        accm = _mm_fmadd_ps(_mm256_extractf128_ps(wdm, 1), _mm256_extractf128_ps(ads, 1), accm);
        __m512i q0 = nibbles2x16(w[b].qs, w[b + 1].qs), q1 = nibbles2x16(w[b + 2].qs, w[b + 3].qs);
        q0 = _mm512_mask_add_epi8(q0, q5_mask2(w[b].qh, w[b + 1].qh), q0, sixteen);
        q1 = _mm512_mask_add_epi8(q1, q5_mask2(w[b + 2].qh, w[b + 3].qh), q1, sixteen);
        const __m512i p0 = dot_u8_off(q0, load2x32(a[b].qs, a[b + 1].qs), NULL);
        const __m512i p1 = dot_u8_off(q1, load2x32(a[b + 2].qs, a[b + 3].qs), NULL);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread2(s, 0), acc);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread2(s, 2), acc);
    }
    float sum = _mm512_reduce_add_ps(acc) + hsum256(_mm256_zextps128_ps256(accm));
    for (; b < nb; b++)
        sum += tail_u8(_mm256_or_si256(nibbles16(w[b].qs), q5_bits256(w[b].qh)), a[b].qs, 0) *
                   (f16s(w[b].d) * f16s(a[b].d)) +
               f16s(w[b].m) * f16s(a[b].s);
    return sum;
}

static inline __m512i iq4nl_table(void) {
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)sqz_iq4nl_levels));
}

static float vdq_iq4_nl(int64_t n, const void *row, const void *xq) {
    const block_iq4_nl *w = row;
    const block_q8_0 *a = xq;
    const int64_t nb = n / QK4_NL;
    const __m512i table = iq4nl_table();
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m128 s = _mm_mul_ps(d4_18(&w[b]), d4_34(&a[b]));
        const __m512i v0 = _mm512_shuffle_epi8(table, nibbles2x16(w[b].qs, w[b + 1].qs));
        const __m512i v1 = _mm512_shuffle_epi8(table, nibbles2x16(w[b + 2].qs, w[b + 3].qs));
        const __m512i p0 = dot_s8(v0, load2x32(a[b].qs, a[b + 1].qs));
        const __m512i p1 = dot_s8(v1, load2x32(a[b + 2].qs, a[b + 3].qs));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread2(s, 0), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread2(s, 2), acc1);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; b < nb; b++) {
        const __m256i v = _mm256_shuffle_epi8(_mm512_castsi512_si256(table), nibbles16(w[b].qs));
        const __m256i p = dot_s8_256(v, _mm256_loadu_si256((const __m256i *)a[b].qs));
        sum += hsum256(_mm256_cvtepi32_ps(p)) * (f16s(w[b].d) * f16s(a[b].d));
    }
    return sum;
}

/* ------------------------------------------------------------ k-quants */

/* A block's scales as s32 (their low s16 is what vpdpwssd reads), laid out so that vpshufb
 * can hand vector v its scales: lane L of the result holds, in dword v, the scale of the
 * sub-block that lane L of vector v covers. order: 16 byte indices giving, for each lane L
 * and dword v, which of the 16 scale bytes that is; sgn: sign-extend (else zero-extend). */
static inline __m512i scales_lanes(__m128i s8, __m128i order, int sgn) {
    const __m128i t = _mm_shuffle_epi8(s8, order);
    return sgn ? _mm512_cvtepi8_epi32(t) : _mm512_cvtepu8_epi32(t);
}

/* 16 sub-blocks of 16 (Q2_K, Q3_K, Q6_K): vector v lane L covers sub-block 4v + L */
static inline __m128i order16(void) { return _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15); }
/* 8 sub-blocks of 32 (Q4_K, Q5_K): vector v lanes 0-1 cover sub-block 2v, lanes 2-3 2v+1 */
static inline __m128i order8(void) { return _mm_setr_epi8(0, 2, 4, 6, 0, 2, 4, 6, 1, 3, 5, 7, 1, 3, 5, 7); }

/* every s16 of lane L = the low s16 of dword v of lane L */
static inline __m512i scale_v(__m512i sl, int v) {
    return _mm512_shuffle_epi8(sl, _mm512_set1_epi16((short)((4 * v + 1) << 8 | 4 * v)));
}

/* sumi += (u . a) scaled per lane, with u unsigned quants */
static inline __m512i madd_scaled(__m512i sumi, __m512i u, const int8_t *a, __m512i sc) {
    const __m512i p = _mm512_maddubs_epi16(u, _mm512_loadu_si512(a));
    return _mm512_dpwssd_epi32(sumi, p, sc);
}

static inline __m512i zext256(__m256i v) { return _mm512_zextsi256_si512(v); }
static inline __m256i bsums(const block_q8_K *a) { return _mm256_loadu_si256((const __m256i *)a->bsums); }

/* Q2_K: elements 128h + 32j + l are bits 2j..2j+1 of qs[32h + l]; vector v = (h, j pair). */
static inline __m512 acc_q2_k(int64_t n, const void *row, const void *xq) {
    const block_q2_K *w = row;
    const block_q8_K *a = xq;
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        pf_ahead(&w[b], sizeof w[b]);
        const __m128i s8 = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m128i lo4 = _mm_set1_epi8(0x0f);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), lo4));
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bsums(&a[b]))),
                               _mm256_set1_ps(f16s(w[b].dmin) * a[b].d), accm);
        const __m512i sl = scales_lanes(_mm_and_si128(s8, lo4), order16(), 0);
        __m512i sumi = _mm512_setzero_si512();
        #pragma GCC unroll 8
        for (int v = 0; v < 4; v++) {
            const int h = v / 2, j = 2 * (v % 2); /* lower 32: shift 2j, upper: 2j + 2 */
            __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * h)));
            q = _mm512_srli_epi16(q, 2 * j);
            q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xffff0000u, q, 2), m3);
            sumi = madd_scaled(sumi, q, a[b].qs + 64 * v, scale_v(sl, v));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return _mm512_sub_ps(acc, _mm512_zextps256_ps512(accm));
}

/* Q3_K: Q2_K's 2 bits | the hmask bit << 2 (0..7), minus 4 via bsums; signed 6-bit scales. */
static inline __m512 acc_q3_k(int64_t n, const void *row, const void *xq) {
    const block_q3_K *w = row;
    const block_q8_K *a = xq;
    const __m512i m3 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        pf_ahead(&w[b], sizeof w[b]);
        const sqz_u64x2 scw = sqz_q3k_scales_u64(w[b].scales);
        const __m128i s8 = _mm_sub_epi8(_mm_set_epi64x((long long)scw.hi, (long long)scw.lo), _mm_set1_epi8(32));
        /* -4 * sum_s sc_s * bsums_s */
        const __m256i off = _mm256_madd_epi16(_mm256_cvtepi8_epi16(s8), bsums(&a[b]));
        __m512i sumi = zext256(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 2)));
        const __m512i sl = scales_lanes(s8, order16(), 1);
        const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w[b].hmask));
        #pragma GCC unroll 8
        for (int v = 0; v < 4; v++) {
            const int h = v / 2, j = 2 * (v % 2);
            __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * h)));
            q = _mm512_srli_epi16(q, 2 * j);
            q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xffff0000u, q, 2), m3);
            /* element 128h + 32j' + l has its 3rd bit at bit 4h + j' of hmask[l] */
            const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (4 * h + j))),
                                                   _mm256_set1_epi8((char)(1 << (4 * h + j + 1))), 1);
            q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hm, bit), q, four);
            sumi = madd_scaled(sumi, q, a[b].qs + 64 * v, scale_v(sl, v));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return acc;
}

/* The 6-bit scales and mins of a Q4_K / Q5_K block (sqz_k4_scales_u64 in vector registers,
 * 10 instructions instead of ~30 scalar ones and moves): scales[12] -> [sc0..7, m0..7].
 * sc0..3 = s0..3 & 63, m0..3 = s4..7 & 63; sc4..7 = (s8..11 & 15) | (s0..3 >> 6) << 4;
 * m4..7 = (s8..11 >> 4) | (s4..7 >> 6) << 4. Reads 16 bytes at scales (the block's first 4
 * quant bytes follow them, so nothing outside the block). 16-bit shifts carry bits in from the
 * neighbouring byte only where the masks drop them. */
static inline __m128i k4_pick_a(void) { return _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11); }
static inline __m128i k4_pick_b(void) { return _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7); }
static inline __m128i k4_mask_lo(void) { return _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0); }
static inline __m128i k4_mask_hi(void) { return _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15); }
static inline __m128i k4_mask_top(void) { return _mm_setr_epi8(0, 0, 0, 0, 0x30, 0x30, 0x30, 0x30, 0, 0, 0, 0, 0x30, 0x30, 0x30, 0x30); }

static inline __m128i k4_scales_vec(const uint8_t *scales) {
    const __m128i s = _mm_loadu_si128((const __m128i *)scales);
    const __m128i a = _mm_shuffle_epi8(s, k4_pick_a());
    const __m128i b = _mm_shuffle_epi8(s, k4_pick_b());
    const __m128i lo = _mm_and_si128(a, k4_mask_lo());
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(a, 4), k4_mask_hi());
    const __m128i top = _mm_and_si128(_mm_srli_epi16(b, 2), k4_mask_top());
    return _mm_or_si128(_mm_or_si128(lo, hi), top);
}

/* The same for four blocks at once, one per 128-bit lane (vpshufb and the shifts stay within
 * lanes), from each block's first 16 bytes (d, dmin, then the scales: every index moves by 4;
 * the -1 of pick_b becomes 3, a byte the top mask drops). */
static inline __m512i k4_scales_x4(__m512i blk) {
    const __m128i four = _mm_set1_epi8(4);
    const __m512i a = _mm512_shuffle_epi8(blk, _mm512_broadcast_i32x4(_mm_add_epi8(k4_pick_a(), four)));
    const __m512i b = _mm512_shuffle_epi8(blk, _mm512_broadcast_i32x4(_mm_add_epi8(k4_pick_b(), four)));
    const __m512i lo = _mm512_and_si512(a, _mm512_broadcast_i32x4(k4_mask_lo()));
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(a, 4), _mm512_broadcast_i32x4(k4_mask_hi()));
    const __m512i top = _mm512_and_si512(_mm512_srli_epi16(b, 2), _mm512_broadcast_i32x4(k4_mask_top()));
    return _mm512_or_si512(_mm512_or_si512(lo, hi), top);
}

/* Q4_K / Q5_K: vector v = qs[32v..32v+32) as [low nibbles | high nibbles] = sub-blocks 2v, 2v+1.
 * qh: Q5_K's 5th bits (bit 2v of qh[l] for the low half, 2v+1 for the high), or NULL. */
static inline void k4_block(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                            const block_q8_K *a, float d, float dmin, __m512 *acc, __m256 *accm) {
    const __m128i s8 = k4_scales_vec(scales); /* 8 scales, 8 mins */
    const __m128i mins2 = _mm_shuffle_epi8(s8, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15));
    const __m256i pm = _mm256_madd_epi16(_mm256_cvtepu8_epi16(mins2), bsums(a));
    *accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(dmin * a->d), *accm);
    const __m512i sl = scales_lanes(s8, order8(), 0);
    const __m512i hb = qh ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh)) : _mm512_setzero_si512();
    __m512i sumi = _mm512_setzero_si512();
    #pragma GCC unroll 8
    for (int v = 0; v < 4; v++) {
        __m512i q = nibbles32(qs + 32 * v);
        if (qh) {
            const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * v))),
                                                   _mm256_set1_epi8((char)(1 << (2 * v + 1))), 1);
            q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hb, bit), q, _mm512_set1_epi8(16));
        }
        sumi = madd_scaled(sumi, q, a->qs + 64 * v, scale_v(sl, v));
    }
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(d * a->d), *acc);
}

static inline __m512 acc_q4_k(int64_t n, const void *row, const void *xq) {
    const block_q4_K *w = row;
    const block_q8_K *a = xq;
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        pf_ahead(&w[b], sizeof w[b]);
        k4_block(w[b].scales, w[b].qs, NULL, &a[b], f16s(w[b].d), f16s(w[b].dmin), &acc, &accm);
    }
    return _mm512_sub_ps(acc, _mm512_zextps256_ps512(accm));
}

static inline __m512 acc_q5_k(int64_t n, const void *row, const void *xq) {
    const block_q5_K *w = row;
    const block_q8_K *a = xq;
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        pf_ahead(&w[b], sizeof w[b]);
        k4_block(w[b].scales, w[b].qs, w[b].qh, &a[b], f16s(w[b].d), f16s(w[b].dmin), &acc, &accm);
    }
    return _mm512_sub_ps(acc, _mm512_zextps256_ps512(accm));
}

/* Q4_K, four rows (r0..r3 at p + r * rs) at once: what depends only on a block's position is
 * done once for the four (the activation loads, bsums, the block's d), and the per-block
 * bookkeeping of the rows - unpacking 6-bit scales and mins, converting d and dmin, the mins
 * times bsums - runs for all four in the lanes of one vector instead of four narrow ones; that
 * bookkeeping was half of the instructions of the one-row kernel. out[r] = row r's unreduced
 * sum (minus its mins), for reduce4. */
static inline void acc4_rows_q4_k(int64_t n, const char *p, size_t rs, const void *xq, __m512 out[4]) {
    const block_q8_K *a = xq;
    const block_q4_K *w[4] = { (const void *)p, (const void *)(p + rs), (const void *)(p + 2 * rs),
                               (const void *)(p + 3 * rs) };
    const __m512i dup_mins = _mm512_broadcast_i32x4(_mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15));
    /* dword v of 128-bit lane L: the scale of sub-block 4(v/2) + v%2 + 2(L/2), the order of
     * the products below (v = 2h: low nibbles of half h, 2h + 1: its high nibbles) */
    const __m512i lanes = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 4, 5, 0, 1, 4, 5, 2, 3, 6, 7, 2, 3, 6, 7));
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i pick_lo = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
    const __m512i pick_hi = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
    /* d * a.d of row r is float 2r of df, dmin * a.d float 2r + 1 */
    const __m512i d_idx[4] = { _mm512_set1_epi32(0), _mm512_set1_epi32(2), _mm512_set1_epi32(4), _mm512_set1_epi32(6) };
    const __m512i m_idx01 = _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m512i m_idx23 = _mm512_setr_epi32(5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7);
    __m512 acc[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps() };
    __m512 accm01 = _mm512_setzero_ps(), accm23 = _mm512_setzero_ps(); /* rows 0|1, 2|3 */
    for (int64_t b = 0; b < n / QK_K; b++) {
        for (int r = 0; r < 4; r++) pf_ahead(&w[r][b], sizeof w[r][b]);
        /* the first 16 bytes of each row's block (d, dmin, 12 scale bytes), lane r = row r */
        __m512i blk = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)&w[0][b]));
        blk = _mm512_inserti32x4(blk, _mm_loadu_si128((const __m128i *)&w[1][b]), 1);
        blk = _mm512_inserti32x4(blk, _mm_loadu_si128((const __m128i *)&w[2][b]), 2);
        blk = _mm512_inserti32x4(blk, _mm_loadu_si128((const __m128i *)&w[3][b]), 3);
        const __m512i s8 = k4_scales_x4(blk); /* lane r: row r's 8 scales, 8 mins */
        /* each lane's dword 0 (d, dmin) -> [d0, dmin0, d1, dmin1, ...] * a.d */
        const __m128i dd = _mm512_castsi512_si128(_mm512_permutexvar_epi32(
            _mm512_castsi128_si512(_mm_setr_epi32(0, 4, 8, 12)), blk));
        const __m512 df = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtph_ps(dd), _mm256_set1_ps(a[b].d)));
        /* mins: sum_j m_j * (bsums 2j + 2j+1), rows 0|1 and 2|3 in one vector each */
        const __m512i m2 = _mm512_shuffle_epi8(s8, dup_mins);
        const __m512i bs = _mm512_broadcast_i64x4(bsums(&a[b]));
        const __m512i pm01 = _mm512_madd_epi16(_mm512_cvtepu8_epi16(_mm512_castsi512_si256(m2)), bs);
        const __m512i pm23 = _mm512_madd_epi16(_mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(m2, 1)), bs);
        accm01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pm01), _mm512_permutexvar_ps(m_idx01, df), accm01);
        accm23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pm23), _mm512_permutexvar_ps(m_idx23, df), accm23);
        /* each row's scales laid out for scale_v (scales_lanes, four rows at once) */
        const __m512i l8 = _mm512_shuffle_epi8(s8, lanes);
        __m512i sl[4], sumi[4];
        sl[0] = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(l8));
        sl[1] = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(l8, 1));
        sl[2] = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(l8, 2));
        sl[3] = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(l8, 3));
        /* 64 bytes of a row's quants per load: bytes 0..31 hold sub-blocks 4h (low nibbles)
         * and 4h + 1 (high), bytes 32..63 sub-blocks 4h + 2 and 4h + 3; the activations are
         * put in that order once for the four rows */
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i a0 = _mm512_loadu_si512(a[b].qs + 128 * h);
            const __m512i a1 = _mm512_loadu_si512(a[b].qs + 128 * h + 64);
            const __m512i alo = _mm512_permutex2var_epi64(a0, pick_lo, a1); /* sub-blocks 4h, 4h+2 */
            const __m512i ahi = _mm512_permutex2var_epi64(a0, pick_hi, a1); /* 4h+1, 4h+3 */
            #pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const __m512i z = _mm512_loadu_si512(w[r][b].qs + 64 * h);
                const __m512i plo = _mm512_maddubs_epi16(_mm512_and_si512(z, m4), alo);
                const __m512i phi = _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(z, 4), m4), ahi);
                sumi[r] = h == 0 ? _mm512_madd_epi16(plo, scale_v(sl[r], 0))
                                 : _mm512_dpwssd_epi32(sumi[r], plo, scale_v(sl[r], 2));
                sumi[r] = _mm512_dpwssd_epi32(sumi[r], phi, scale_v(sl[r], 2 * h + 1));
            }
        }
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[r]), _mm512_permutexvar_ps(d_idx[r], df), acc[r]);
    }
    out[0] = _mm512_sub_ps(acc[0], _mm512_zextps256_ps512(_mm512_castps512_ps256(accm01)));
    out[1] = _mm512_sub_ps(acc[1], _mm512_zextps256_ps512(_mm512_extractf32x8_ps(accm01, 1)));
    out[2] = _mm512_sub_ps(acc[2], _mm512_zextps256_ps512(_mm512_castps512_ps256(accm23)));
    out[3] = _mm512_sub_ps(acc[3], _mm512_zextps256_ps512(_mm512_extractf32x8_ps(accm23, 1)));
}

/* Q4_0 and Q8_0 (blocks of 32 weights with an f16 scale, against Q8_0 activations), four rows
 * (r0..r3 at p + r * rs) at once: the activations' loads and scales are the same for the four
 * rows and done once, as is the offset term: vpdpbusd wants unsigned weights, so Q4_0's
 * nibbles q (q - 8 the weight) and Q8_0's bytes flipped to w + 128 (one xor) are multiplied and
 * the dot products start from -8 . a or -128 . a. The one-row kernels spent a third (Q4_0)
 * or half (Q8_0: sign tricks) of their instructions on what is shared or saved here.
 * out[r] = row r's unreduced sum. */
static inline __attribute__((always_inline)) void acc4_rows_b32(int q4, int64_t n, const char *p,
                                                                size_t rs, const void *xq,
                                                                __m512 out[4]) {
    const block_q8_0 *a = xq;
    const int64_t nb = n / 32;
    const size_t bs = q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    const __m512i off = _mm512_set1_epi8(q4 ? 8 : (char)0x80);
    __m512 acc0[4], acc1[4];
    for (int r = 0; r < 4; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m128 da = d4_34(&a[b]);
        const __m512i a0 = load2x32(a[b].qs, a[b + 1].qs), a1 = load2x32(a[b + 2].qs, a[b + 3].qs);
        const __m512i e0 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, a0));
        const __m512i e1 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, a1));
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const char *wb = p + (size_t)r * rs + (size_t)b * bs; /* blocks b .. b+3 of row r */
            pf_ahead(wb, 4 * bs);
            const __m128 s = _mm_mul_ps(q4 ? d4_18(wb) : d4_34(wb), da);
            __m512i u0, u1;
            if (q4) {
                const block_q4_0 *w = (const void *)wb;
                u0 = nibbles2x16(w[0].qs, w[1].qs);
                u1 = nibbles2x16(w[2].qs, w[3].qs);
            } else {
                const block_q8_0 *w = (const void *)wb;
                u0 = _mm512_xor_si512(load2x32(w[0].qs, w[1].qs), off);
                u1 = _mm512_xor_si512(load2x32(w[2].qs, w[3].qs), off);
            }
            acc0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(e0, u0, a0)), spread2(s, 0), acc0[r]);
            acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(e1, u1, a1)), spread2(s, 2), acc1[r]);
        }
    }
    if (b < nb) /* the last blocks: the one-row kernels (they take any count of blocks) */
        for (int r = 0; r < 4; r++) {
            const char *wb = p + (size_t)r * rs + (size_t)b * bs;
            acc1[r] = _mm512_add_ps(acc1[r], q4 ? acc_q4_0((nb - b) * 32, wb, &a[b])
                                                : acc_q8_0((nb - b) * 32, wb, &a[b]));
        }
    for (int r = 0; r < 4; r++) out[r] = _mm512_add_ps(acc0[r], acc1[r]);
}
static inline void acc4_rows_q4_0(int64_t n, const char *p, size_t rs, const void *xq, __m512 out[4]) {
    acc4_rows_b32(1, n, p, rs, xq, out);
}
static inline void acc4_rows_q8_0(int64_t n, const char *p, size_t rs, const void *xq, __m512 out[4]) {
    acc4_rows_b32(0, n, p, rs, xq, out);
}

/* Q6_K: per half h (128 elements), ql[64h..64h+64) low nibbles are elements 0..63, their high
 * nibbles 64..127; qh[32h + l] holds the top 2 bits of elements l, l+32, l+64, l+96 at bits
 * 0, 2, 4, 6. q (0..63) minus 32 via bsums; s8 scale per 16. */
static inline __m512 acc_q6_k(int64_t n, const void *row, const void *xq) {
    const block_q6_K *w = row;
    const block_q8_K *a = xq;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        pf_ahead(&w[b], sizeof w[b]);
        const __m128i s8 = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m256i off = _mm256_madd_epi16(_mm256_cvtepi8_epi16(s8), bsums(&a[b]));
        __m512i sumi = zext256(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5)));
        const __m512i sl = scales_lanes(s8, order16(), 1);
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512(w[b].ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h)));
            /* elements 0..63: low nibbles | (bits 0-1 for 0..31, 2-3 for 32..63) << 4 */
            const __m512i h0 = _mm512_mask_slli_epi16(_mm512_slli_epi16(qh, 2), 0x0000ffffu, qh, 4);
            const __m512i q0 = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(h0, m2));
            /* elements 64..127: high nibbles | (bits 4-5, 6-7) << 4 - 4 */
            const __m512i h1 = _mm512_mask_srli_epi16(qh, 0xffff0000u, qh, 2);
            const __m512i q1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                               _mm512_and_si512(h1, m2));
            sumi = madd_scaled(sumi, q0, a[b].qs + 128 * h, scale_v(sl, 2 * h));
            sumi = madd_scaled(sumi, q1, a[b].qs + 128 * h + 64, scale_v(sl, 2 * h + 1));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return acc;
}

/* ------------------------------------------------------------ to_float (sgemm panels)
 *
 * Bit-identical to the reference dequantizers (src/formats/dequant.c, ggml's): the same f32
 * operations in the same order, one rounding each, no FMA. */

/* what follows must not contract a * b - c into an FMA (one rounding fewer than the reference) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static inline void store16(float *dst, __m128i q8, __m512 mul) { /* 16 s8 -> f32 * mul */
    _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8)), mul));
}

static void cvt_q8_0(const void *row, float *dst, int64_t n) {
    const block_q8_0 *w = row;
    for (int64_t b = 0; b < n / QK8_0; b++, dst += QK8_0) {
        const __m512 d = _mm512_set1_ps(f16s(w[b].d));
        store16(dst, _mm_loadu_si128((const __m128i *)w[b].qs), d);
        store16(dst + 16, _mm_loadu_si128((const __m128i *)(w[b].qs + 16)), d);
    }
}

static void cvt_q4_0(const void *row, float *dst, int64_t n) {
    const block_q4_0 *w = row;
    const __m128i m4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    for (int64_t b = 0; b < n / QK4_0; b++, dst += QK4_0) {
        const __m512 d = _mm512_set1_ps(f16s(w[b].d));
        const __m128i q = _mm_loadu_si128((const __m128i *)w[b].qs);
        store16(dst, _mm_sub_epi8(_mm_and_si128(q, m4), eight), d);
        store16(dst + 16, _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight), d);
    }
}

/* Q4_K / Q5_K: (d * sc) * q - (dmin * m) per sub-block of 32; qh: Q5_K's 5th bits or NULL */
static inline void cvt_k4_block(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                                float d, float dmin, float *dst) {
    uint8_t sc[8], m[8];
    sqz_k4_scales(scales, sc, m);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i hb = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    for (int s = 0; s < 8; s++, dst += 32) {
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)(qs + 32 * (s / 2)));
        __m256i q = _mm256_and_si256(s % 2 ? _mm256_srli_epi16(q8, 4) : q8, m4);
        if (qh) {
            const __mmask32 k = _mm256_test_epi8_mask(hb, _mm256_set1_epi8((char)(1 << s)));
            q = _mm256_mask_add_epi8(q, k, q, _mm256_set1_epi8(16));
        }
        const __m512 dl = _mm512_set1_ps(d * sc[s]), ml = _mm512_set1_ps(dmin * m[s]);
        const __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q)));
        const __m512 f1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1)));
        _mm512_storeu_ps(dst, _mm512_sub_ps(_mm512_mul_ps(dl, f0), ml));
        _mm512_storeu_ps(dst + 16, _mm512_sub_ps(_mm512_mul_ps(dl, f1), ml));
    }
}

static void cvt_q4_k(const void *row, float *dst, int64_t n) {
    const block_q4_K *w = row;
    for (int64_t b = 0; b < n / QK_K; b++, dst += QK_K)
        cvt_k4_block(w[b].scales, w[b].qs, NULL, f16s(w[b].d), f16s(w[b].dmin), dst);
}

static void cvt_q5_k(const void *row, float *dst, int64_t n) {
    const block_q5_K *w = row;
    for (int64_t b = 0; b < n / QK_K; b++, dst += QK_K)
        cvt_k4_block(w[b].scales, w[b].qs, w[b].qh, f16s(w[b].d), f16s(w[b].dmin), dst);
}

/* Q6_K: element 128h + 32k + l = (d * sc[8h + 2k + l/16]) * q */
static void cvt_q6_k(const void *row, float *dst, int64_t n) {
    const block_q6_K *w = row;
    const __m128i m4 = _mm_set1_epi8(0x0f), m2 = _mm_set1_epi8(0x30), off = _mm_set1_epi8(32);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = f16s(w[b].d);
        for (int h = 0; h < 2; h++, dst += 128)
            for (int l = 0; l < 32; l += 16) {
                const __m128i l0 = _mm_loadu_si128((const __m128i *)(w[b].ql + 64 * h + l));
                const __m128i l1 = _mm_loadu_si128((const __m128i *)(w[b].ql + 64 * h + 32 + l));
                const __m128i qh = _mm_loadu_si128((const __m128i *)(w[b].qh + 32 * h + l));
                const __m128i q[4] = {
                    _mm_or_si128(_mm_and_si128(l0, m4), _mm_and_si128(_mm_slli_epi16(qh, 4), m2)),
                    _mm_or_si128(_mm_and_si128(l1, m4), _mm_and_si128(_mm_slli_epi16(qh, 2), m2)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(l0, 4), m4), _mm_and_si128(qh, m2)),
                    _mm_or_si128(_mm_and_si128(_mm_srli_epi16(l1, 4), m4),
                                 _mm_and_si128(_mm_srli_epi16(qh, 2), m2)),
                };
                for (int k = 0; k < 4; k++)
                    store16(dst + 32 * k + l, _mm_sub_epi8(q[k], off),
                            _mm512_set1_ps(d * w[b].scales[8 * h + 2 * k + l / 16]));
            }
    }
}

/* the 4 nibbles of a 16-bit value into the low nibbles of 4 bytes */
static inline uint32_t spread_nibbles(uint32_t x) {
    x = (x | x << 8) & 0x00ff00ffu;
    return (x | x << 4) & 0x0f0f0f0fu;
}

/* IQ4_XS: vector v = sub-blocks 2v, 2v+1 (16 bytes of nibbles each) as IQ4_NL levels; signed,
 * so |v| . (a signed like v) by vpmaddubsw, then the 6-bit scales (minus 32) by vpdpwssd. */
static inline __m512 acc_iq4_xs(int64_t n, const void *row, const void *xq) {
    const block_iq4_xs *w = row;
    const block_q8_K *a = xq;
    const __m512i table = iq4nl_table();
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        pf_ahead(&w[b], sizeof w[b]);
        /* the 6-bit scales of the even sub-blocks in 4 bytes, the odd ones in 4 more, spread
         * straight into scales_lanes' order8 layout: lanes 0-1 even, lanes 2-3 odd */
        uint32_t lo;
        memcpy(&lo, w[b].scales_l, 4);
        const uint32_t h = w[b].scales_h;
        const uint32_t even = (lo & 0x0f0f0f0fu) | spread_nibbles(h & 0x3333u) << 4;
        const uint32_t odd = ((lo >> 4) & 0x0f0f0f0fu) | spread_nibbles((h >> 2) & 0x3333u) << 4;
        const __m128i s8 = _mm_sub_epi8(_mm_setr_epi32((int)even, (int)even, (int)odd, (int)odd),
                                        _mm_set1_epi8(32));
        const __m512i sl = _mm512_cvtepi8_epi32(s8);
        __m512i sumi = _mm512_setzero_si512();
        #pragma GCC unroll 8
        for (int v = 0; v < 4; v++) {
            const __m512i q = _mm512_shuffle_epi8(table, nibbles2x16(w[b].qs + 32 * v, w[b].qs + 32 * v + 16));
            const __m512i av = _mm512_loadu_si512(a[b].qs + 64 * v);
            const __m512i as = _mm512_mask_sub_epi8(av, _mm512_movepi8_mask(q), _mm512_setzero_si512(), av);
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(_mm512_abs_epi8(q), as), scale_v(sl, v));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(f16s(w[b].d) * a[b].d), acc);
    }
    return acc;
}

/* ------------------------------------------------------------ several rows at once
 *
 * Decode's matrix-vector product is a dot product per row; with rows of 512..2048 elements the
 * horizontal sum at the end of each is a large part of the work. The acc_* kernels above
 * return their unreduced vector, and these drivers sum four rows' vectors together (three
 * vhaddps instead of four full reductions), storing four results at once. */
static inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* vdq_T (one row) and rows_T (four rows at a time through acc4_rows_T, then the rest) */
#define SQZ_ROWS4_AND_DOT(T)                                                                    \
    static float vdq_##T(int64_t n, const void *row, const void *xq) {                           \
        return _mm512_reduce_add_ps(acc_##T(n, row, xq));                                       \
    }                                                                                           \
    static void rows_##T(int64_t n, const void *w, size_t rs, int64_t nr, const void *xq,       \
                         float *y) {                                                            \
        const char *p = w;                                                                      \
        int64_t i = 0;                                                                          \
        for (; i + 4 <= nr; i += 4, p += 4 * rs) {                                              \
            __m512 a[4];                                                                        \
            acc4_rows_##T(n, p, rs, xq, a);                                                     \
            _mm_storeu_ps(y + i, reduce4(a[0], a[1], a[2], a[3]));                              \
        }                                                                                       \
        for (; i < nr; i++, p += rs) y[i] = _mm512_reduce_add_ps(acc_##T(n, p, xq));            \
    }
/* The same for a type without its own four-row kernel: four calls of the one-row one, in
 * memory order (as call arguments they would run backwards, which the hardware prefetcher
 * does not follow: 3x slower on weights from DRAM) */
#define SQZ_ROWS_AND_DOT(T)                                                                     \
    static inline void acc4_rows_##T(int64_t n, const char *p, size_t rs, const void *xq,       \
                                     __m512 out[4]) {                                           \
        out[0] = acc_##T(n, p, xq);                                                             \
        out[1] = acc_##T(n, p + rs, xq);                                                        \
        out[2] = acc_##T(n, p + 2 * rs, xq);                                                    \
        out[3] = acc_##T(n, p + 3 * rs, xq);                                                    \
    }                                                                                           \
    SQZ_ROWS4_AND_DOT(T)
SQZ_ROWS4_AND_DOT(q8_0)
SQZ_ROWS4_AND_DOT(q4_0)
SQZ_ROWS_AND_DOT(q2_k)
SQZ_ROWS_AND_DOT(q3_k)
SQZ_ROWS4_AND_DOT(q4_k)
SQZ_ROWS_AND_DOT(q5_k)
SQZ_ROWS_AND_DOT(q6_k)
SQZ_ROWS_AND_DOT(iq4_xs)

/* ------------------------------------------------------------ four tokens at once (prefill)
 *
 * For a batch of tokens the weights' unpacking (nibbles, scales) is the same for every token:
 * the acc4_* kernels unpack each 64 weights once and multiply them with four tokens'
 * activations (xq, xq + qrs, ...), which halves the instructions per multiply-add against four
 * calls of acc_*. They write the four unreduced vectors to out[0..3]. */
enum { NT4 = 4 };

static inline void k4_block4(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                             const block_q8_K *const a[NT4], float d, float dmin, __m512 acc[NT4],
                             __m256 accm[NT4]) {
    const __m128i s8 = k4_scales_vec(scales);
    const __m256i mins = _mm256_cvtepu8_epi16(
        _mm_shuffle_epi8(s8, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)));
    const __m512i sl = scales_lanes(s8, order8(), 0);
    const __m512i hb = qh ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh)) : _mm512_setzero_si512();
    __m512i sumi[NT4];
    for (int t = 0; t < NT4; t++) {
        sumi[t] = _mm512_setzero_si512();
        accm[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bsums(a[t]))),
                                  _mm256_set1_ps(dmin * a[t]->d), accm[t]);
    }
    #pragma GCC unroll 8
    for (int v = 0; v < 4; v++) {
        __m512i q = nibbles32(qs + 32 * v);
        if (qh) {
            const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * v))),
                                                   _mm256_set1_epi8((char)(1 << (2 * v + 1))), 1);
            q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hb, bit), q, _mm512_set1_epi8(16));
        }
        const __m512i sc = scale_v(sl, v);
        #pragma GCC unroll 4
        for (int t = 0; t < NT4; t++) sumi[t] = madd_scaled(sumi[t], q, a[t]->qs + 64 * v, sc);
    }
    for (int t = 0; t < NT4; t++)
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[t]), _mm512_set1_ps(d * a[t]->d), acc[t]);
}

static inline void acc4_k4(int64_t n, const void *row, int has_qh, const void *xq, size_t qrs,
                           __m512 out[NT4]) {
    __m256 accm[NT4];
    for (int t = 0; t < NT4; t++) out[t] = _mm512_setzero_ps(), accm[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q8_K *a[NT4];
        for (int t = 0; t < NT4; t++) a[t] = (const block_q8_K *)((const char *)xq + t * qrs) + b;
        if (has_qh) {
            const block_q5_K *w = (const block_q5_K *)row + b;
            k4_block4(w->scales, w->qs, w->qh, a, f16s(w->d), f16s(w->dmin), out, accm);
        } else {
            const block_q4_K *w = (const block_q4_K *)row + b;
            k4_block4(w->scales, w->qs, NULL, a, f16s(w->d), f16s(w->dmin), out, accm);
        }
    }
    for (int t = 0; t < NT4; t++) out[t] = _mm512_sub_ps(out[t], _mm512_zextps256_ps512(accm[t]));
}
static inline void acc4_q4_k(int64_t n, const void *row, const void *xq, size_t qrs, __m512 out[NT4]) {
    acc4_k4(n, row, 0, xq, qrs, out);
}
static inline void acc4_q5_k(int64_t n, const void *row, const void *xq, size_t qrs, __m512 out[NT4]) {
    acc4_k4(n, row, 1, xq, qrs, out);
}

static inline void acc4_q6_k(int64_t n, const void *row, const void *xq, size_t qrs, __m512 out[NT4]) {
    const block_q6_K *w = row;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
    for (int t = 0; t < NT4; t++) out[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q8_K *a[NT4];
        for (int t = 0; t < NT4; t++) a[t] = (const block_q8_K *)((const char *)xq + t * qrs) + b;
        const __m128i s8 = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m256i s16 = _mm256_cvtepi8_epi16(s8);
        __m512i sumi[NT4];
        for (int t = 0; t < NT4; t++) {
            const __m256i off = _mm256_madd_epi16(s16, bsums(a[t]));
            sumi[t] = zext256(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5)));
        }
        const __m512i sl = scales_lanes(s8, order16(), 1);
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512(w[b].ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h)));
            const __m512i h0 = _mm512_mask_slli_epi16(_mm512_slli_epi16(qh, 2), 0x0000ffffu, qh, 4);
            const __m512i q0 = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(h0, m2));
            const __m512i h1 = _mm512_mask_srli_epi16(qh, 0xffff0000u, qh, 2);
            const __m512i q1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                               _mm512_and_si512(h1, m2));
            const __m512i sc0 = scale_v(sl, 2 * h), sc1 = scale_v(sl, 2 * h + 1);
            #pragma GCC unroll 4
            for (int t = 0; t < NT4; t++) {
                sumi[t] = madd_scaled(sumi[t], q0, a[t]->qs + 128 * h, sc0);
                sumi[t] = madd_scaled(sumi[t], q1, a[t]->qs + 128 * h + 64, sc1);
            }
        }
        const float d = f16s(w[b].d);
        for (int t = 0; t < NT4; t++)
            out[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[t]), _mm512_set1_ps(d * a[t]->d), out[t]);
    }
}

/* Q8_0 / Q4_0 (n a multiple of 128: the tile drivers are only used then) */
static inline void acc4_q8_0(int64_t n, const void *row, const void *xq, size_t qrs, __m512 out[NT4]) {
    const block_q8_0 *w = row;
    for (int t = 0; t < NT4; t++) out[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b + 4 <= n / QK8_0; b += 4) {
        const __m128 dw = d4_34(&w[b]);
        const __m512i w0 = load2x32(w[b].qs, w[b + 1].qs), w1 = load2x32(w[b + 2].qs, w[b + 3].qs);
        const __m512i u0 = _mm512_abs_epi8(w0), u1 = _mm512_abs_epi8(w1);
        const __mmask64 n0 = _mm512_movepi8_mask(w0), n1 = _mm512_movepi8_mask(w1);
        #pragma GCC unroll 4
        for (int t = 0; t < NT4; t++) {
            const block_q8_0 *a = (const block_q8_0 *)((const char *)xq + t * qrs) + b;
            const __m128 s = _mm_mul_ps(dw, d4_34(a));
            __m512i a0 = load2x32(a[0].qs, a[1].qs), a1 = load2x32(a[2].qs, a[3].qs);
            a0 = _mm512_mask_sub_epi8(a0, n0, _mm512_setzero_si512(), a0);
            a1 = _mm512_mask_sub_epi8(a1, n1, _mm512_setzero_si512(), a1);
            const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, a0);
            const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u1, a1);
            out[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread2(s, 0), out[t]);
            out[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread2(s, 2), out[t]);
        }
    }
}

static inline void acc4_q4_0(int64_t n, const void *row, const void *xq, size_t qrs, __m512 out[NT4]) {
    const block_q4_0 *w = row;
    const __m512i eight = _mm512_set1_epi8(8);
    for (int t = 0; t < NT4; t++) out[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b + 4 <= n / QK4_0; b += 4) {
        const __m128 dw = d4_18(&w[b]);
        const __m512i q0 = nibbles2x16(w[b].qs, w[b + 1].qs), q1 = nibbles2x16(w[b + 2].qs, w[b + 3].qs);
        #pragma GCC unroll 4
        for (int t = 0; t < NT4; t++) {
            const block_q8_0 *a = (const block_q8_0 *)((const char *)xq + t * qrs) + b;
            const __m128 s = _mm_mul_ps(dw, d4_34(a));
            const __m512i a0 = load2x32(a[0].qs, a[1].qs), a1 = load2x32(a[2].qs, a[3].qs);
            /* (q - 8) . a = q . a - 8 . a */
            const __m512i p0 = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q0, a0),
                                                _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, a0));
            const __m512i p1 = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q1, a1),
                                                _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, a1));
            out[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread2(s, 0), out[t]);
            out[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread2(s, 2), out[t]);
        }
    }
}

/* y[t * ldy + i] = row_i . token t for four tokens, rows i < nr; results of one row for the four
 * tokens come out of one reduce4. */
#define SQZ_TILE4(T, MIN_BLOCK)                                                                 \
    static int tile4_##T(int64_t n, const void *w, size_t rs, int64_t nr, const void *xq,       \
                         size_t qrs, float *y, size_t ldy) {                                    \
        if (n % (MIN_BLOCK)) return -1;                                                         \
        const char *p = w;                                                                      \
        for (int64_t i = 0; i < nr; i++, p += rs) {                                             \
            __m512 o[NT4];                                                                      \
            acc4_##T(n, p, xq, qrs, o);                                                         \
            float r[4];                                                                         \
            _mm_storeu_ps(r, reduce4(o[0], o[1], o[2], o[3]));                                  \
            for (int t = 0; t < NT4; t++) y[(size_t)t * ldy + i] = r[t];                        \
        }                                                                                       \
        return 0;                                                                               \
    }
SQZ_TILE4(q4_k, QK_K)
SQZ_TILE4(q5_k, QK_K)
SQZ_TILE4(q6_k, QK_K)
SQZ_TILE4(q8_0, 128)
SQZ_TILE4(q4_0, 128)

/* The AVX-512 tier's table (kernels.h). Every kernel here uses VNNI (vpdpbusd / vpdpwssd), which
 * AVX-512F/BW/VL do not imply: sqz_isa_best() hands out this tier only where the CPU has it. */
const sqz_kernel_row sqz_kernels_avx512[SQZ_TYPE_SLOTS] = {
    [SQZ_TYPE_SLOT(SQZ_TYPE_F32)] = { .dot = sqz_dot_f32_avx512 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_F16)] = { .dot = sqz_dot_f16_avx512, .to_float = sqz_cvt_f16_avx512 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_BF16)] = { .dot = sqz_dot_bf16_avx512, .to_float = sqz_cvt_bf16_avx512 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_0)] = { .vec_dot_q = vdq_q4_0, .vec_dot_q_rows = rows_q4_0, .vec_dot_q_tile4 = tile4_q4_0, .to_float = cvt_q4_0 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_0)] = { .vec_dot_q = vdq_q8_0, .vec_dot_q_rows = rows_q8_0, .vec_dot_q_tile4 = tile4_q8_0, .to_float = cvt_q8_0, .quantize_act = quantize_q8_0 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_1)] = { .vec_dot_q = vdq_q4_1 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_0)] = { .vec_dot_q = vdq_q5_0 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_1)] = { .vec_dot_q = vdq_q5_1 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_IQ4_NL)] = { .vec_dot_q = vdq_iq4_nl },
    [SQZ_TYPE_SLOT(SQZ_TYPE_IQ4_XS)] = { .vec_dot_q = vdq_iq4_xs, .vec_dot_q_rows = rows_iq4_xs },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_1)] = { .quantize_act = quantize_q8_1 },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q2_K)] = { .vec_dot_q = vdq_q2_k, .vec_dot_q_rows = rows_q2_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q3_K)] = { .vec_dot_q = vdq_q3_k, .vec_dot_q_rows = rows_q3_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q4_K)] = { .vec_dot_q = vdq_q4_k, .vec_dot_q_rows = rows_q4_k, .vec_dot_q_tile4 = tile4_q4_k, .to_float = cvt_q4_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q5_K)] = { .vec_dot_q = vdq_q5_k, .vec_dot_q_rows = rows_q5_k, .vec_dot_q_tile4 = tile4_q5_k, .to_float = cvt_q5_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q6_K)] = { .vec_dot_q = vdq_q6_k, .vec_dot_q_rows = rows_q6_k, .vec_dot_q_tile4 = tile4_q6_k, .to_float = cvt_q6_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_Q8_K)] = { .quantize_act = quantize_q8_k },
    [SQZ_TYPE_SLOT(SQZ_TYPE_DQ2)] = { .vec_dot_q = sqz_dq2_vec_dot_q_avx512 },
};
