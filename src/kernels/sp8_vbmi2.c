/* sp8_vbmi2.c - the AVX512-VBMI2 sp8 matrix-vector product (kernels/sp8.h; compiled with the
 * AVX-512 flags plus -mavx512vbmi2, handed out only when the CPU has VBMI2: sqz_sp8_matvec_get).
 *
 * Two blocks of a row at a time (64 weights, one zmm): the two masks are one u64 (they lie side
 * by side, formats/sp8.h), vpexpandb spreads the popcount packed bytes (q + 128, u8) into the
 * 64 lanes the masks name, 128 (q = 0) elsewhere: VNNI's vpdpbusd with the activations (s8)
 * then sums (q + 128) x, starting from the
 * activations' corr (-128 x the sums of x, kernels/sp8.h), so each i32 lane holds the exact sum
 * of q x over its 4 weights. One convert and one FMA by d_w * d_x (per block: its 8 lanes)
 * into the row's f32 accumulator. Four rows at a time, so that each activation load serves
 * four rows and four independent streams of values are in flight.
 * The products d_w * d_x are made 16 blocks at a time (vcvtph2ps of a row's f16 scales times
 * the activations' f32 scales) and spread to the lanes by vpermps.
 * Why: a block at a time (ymm) spent ~4 cycles per block in vpexpandb alone on AMD Zen 4; the
 * zmm form costs about the same per instruction, so two blocks per instruction halve it, and
 * the stored q + 128 saves the |w| / sign(x, w) pair a signed product would need (AVX-512 has
 * no vpsignb).
 * Why the register form of vpexpandb, behind an empty asm: the compiler otherwise folds the
 * load into vpexpandb's memory form, which is microcoded on Zen 4 (~100x slower). The 64-byte
 * load may read past the block's bytes (into the rest of the row); within 64 bytes of the row's
 * end a masked load of exactly the kept bytes is used instead, which never
 * reads past the row (the matrix's last row has no bytes after it); which pairs are within 64
 * bytes is found once per row, so the block loop tests one flag per pair for four rows. */
#include <immintrin.h>
#include <string.h>

#include "formats/blocks.h"
#include "kernels/sp8.h"

#ifndef PF_HINT
#define PF_HINT _MM_HINT_T1
#endif
#ifndef PF_AHEAD
#define PF_AHEAD 2
#endif
enum { CHUNK = 16, ROWS = 4 };

static inline float hsum512(__m512 acc) { return _mm512_reduce_add_ps(acc); }

/* The bytes of blocks b, b+1 of a row (their u64 mask m, k = popcount bytes at q) expanded
 * (q + 128 in u8; unkept lanes 128). safe: the 64 bytes at q lie inside the row (else a masked
 * load of exactly the k bytes). */
static inline __m512i expand2(const uint8_t *q, int safe, uint64_t m, unsigned k) {
    __m512i raw = safe ? _mm512_loadu_si512(q) : _mm512_maskz_loadu_epi8(_bzhi_u64(~0ull, k), q);
    __asm__("" : "+v"(raw)); /* keep vpexpandb's register form (see above) */
    return _mm512_mask_expand_epi8(_mm512_set1_epi8((char)0x80), m, raw);
}

/* How many of the row's first pairs of blocks have at least 64 of the row's bytes from their
 * first value on: those take a plain load. Walks back from the row's last pair (an odd last
 * block's bytes are not counted: fewer plain loads, never a wrong one). */
static inline int64_t safe_pairs(const uint8_t *row, int64_t nb) {
    int64_t tail = 0, p = nb / 2;
    while (p > 0 && tail < 64) {
        uint64_t mk;
        memcpy(&mk, row + 8 * (p - 1), 8);
        tail += __builtin_popcountll(mk);
        p--;
    }
    if (tail < 64) return 0;
    return p + 1; /* pair p starts tail >= 64 bytes before the end (odd last block: more) */
}

/* The same for the one block b (a row whose block count is odd: its last block). */
static inline __m256i expand1(const uint8_t *q, uint32_t m) {
    __m256i raw = _mm256_maskz_loadu_epi8(_bzhi_u32(~0u, (unsigned)__builtin_popcount(m)), q);
    __asm__("" : "+v"(raw));
    return _mm256_mask_expand_epi8(_mm256_set1_epi8((char)0x80), m, raw);
}

/* s[0..16) = d_w * d_x for the row's blocks b0 .. b0+n (n <= 16; the rest 0) */
static inline __m512 scales(const uint8_t *row, int64_t nb, const float *dx, int64_t b0, int n) {
    const __mmask16 km = (__mmask16)((1u << n) - 1);
    const __m512 w = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(km, row + 4 * nb + 2 * b0));
    return _mm512_mul_ps(w, _mm512_maskz_loadu_ps(km, dx + b0));
}

void sqz_sp8_act_finish_vbmi2(void *xq, int64_t cols) {
    const int64_t nb = cols / SQZ_SP8_BLOCK;
    const block_q8_0 *a = xq;
    int8_t *qs = sqz_sp8_act_qs(xq, nb);
    float *d = sqz_sp8_act_d(xq, nb);
    int32_t *corr = sqz_sp8_act_corr(xq, nb);
    const __m256i c80 = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)a[b].qs);
        _mm256_storeu_si256((__m256i *)(qs + b * SQZ_SP8_BLOCK), x);
        /* 128 x the sums of 4, negated: dpbusd(0, 128, x) summed then 0 - it */
        const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c80, x);
        _mm256_storeu_si256((__m256i *)(corr + b * 8), _mm256_sub_epi32(_mm256_setzero_si256(), s));
        d[b] = _cvtsh_ss(a[b].d);
    }
}

void sqz_sp8_unpack_row_vbmi2(const uint8_t *src, int64_t n, float *dst) {
    const int64_t nb = n / SQZ_SP8_BLOCK;
    const uint8_t *q = src + nb * SQZ_SP8_HEAD;
    for (int64_t b = 0; b < nb; b++) {
        uint32_t mask;
        uint16_t dh;
        memcpy(&mask, src + 4 * b, 4);
        memcpy(&dh, src + 4 * nb + 2 * b, 2);
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
        /* back from q + 128 to q */
        const __m256i w = _mm256_xor_si256(expand1(q, mask), _mm256_set1_epi8((char)0x80));
        q += __builtin_popcount(mask);
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(w)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(w, 1)));
        _mm512_storeu_ps(dst + b * SQZ_SP8_BLOCK, _mm512_mul_ps(lo, d));
        _mm512_storeu_ps(dst + b * SQZ_SP8_BLOCK + 16, _mm512_mul_ps(hi, d));
    }
}

void sqz_sp8_unpack_row_q8_0_vbmi2(const uint8_t *src, int64_t n, void *dst) {
    const int64_t nb = n / SQZ_SP8_BLOCK;
    const uint8_t *q = src + nb * SQZ_SP8_HEAD;
    uint8_t *o = dst;
    for (int64_t b = 0; b < nb; b++, o += 2 + SQZ_SP8_BLOCK) {
        uint32_t mask;
        memcpy(&mask, src + 4 * b, 4);
        memcpy(o, src + 4 * nb + 2 * b, 2);
        _mm256_storeu_si256((__m256i *)(o + 2), _mm256_xor_si256(expand1(q, mask), _mm256_set1_epi8((char)0x80)));
        q += __builtin_popcount(mask);
    }
}

/* rows r .. r+NR-1 (NR <= ROWS) of the product */
/* always inlined: the two callers pass NR as a constant, so the row loops unroll and the
 * accumulators stay in registers */
static inline __attribute__((always_inline)) void rows_dot(const sqz_sp8_tensor *m, int64_t nb, const int8_t *qs, const float *dx,
                            const int32_t *corr, float *y, int64_t r, int NR, const uint8_t *pf,
                            const uint8_t *pf_end) {
    /* prefetch [pf, pf_end) (the next rows) evenly over this call's pairs of blocks */
    const int64_t pf_step = (pf_end - pf + 64 * (nb / 2 + 1) - 1) / (64 * (nb / 2 + 1)) * 64;
    const uint8_t *row[ROWS], *q[ROWS];
    __m512 acc[ROWS];
    int64_t safe = nb / 2; /* pairs below it: every row's 64-byte load stays in its row */
    #pragma GCC unroll 4
    for (int i = 0; i < NR; i++) {
        row[i] = m->data + m->row_off[r + i];
        q[i] = row[i] + nb * SQZ_SP8_HEAD;
        acc[i] = _mm512_setzero_ps();
        const int64_t si = safe_pairs(row[i], nb);
        if (si < safe) safe = si;
    }
    /* lane l of pair p takes the scale of block 2p + l / 8 */
    const __m512i lane_block = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t b0 = 0; b0 < nb; b0 += CHUNK) {
        const int n = nb - b0 < CHUNK ? (int)(nb - b0) : CHUNK;
        __m512 s[ROWS];
        #pragma GCC unroll 4
        for (int i = 0; i < NR; i++) s[i] = scales(row[i], nb, dx, b0, n);
        int k = 0;
        for (; k + 2 <= n; k += 2) {
            const int64_t b = b0 + k;
            const __m512i x = _mm512_loadu_si512(qs + b * SQZ_SP8_BLOCK);
            const __m512i c = _mm512_loadu_si512(corr + b * 8);
            const __m512i idx = _mm512_add_epi32(lane_block, _mm512_set1_epi32(k));
            const int plain = b / 2 < safe;
            for (int64_t o = 0; o < pf_step && pf < pf_end; o += 64, pf += 64) _mm_prefetch((const char *)pf, PF_HINT);
            #pragma GCC unroll 4
            for (int i = 0; i < NR; i++) {
                uint64_t mk;
                memcpy(&mk, row[i] + 4 * b, 8);
                const unsigned kept = (unsigned)__builtin_popcountll(mk);
                const __m512i sum = _mm512_dpbusd_epi32(c, expand2(q[i], plain, mk, kept), x);
                q[i] += kept;
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_permutexvar_ps(idx, s[i]), acc[i]);
            }
        }
        if (k < n) { /* the odd last block */
            const int64_t b = b0 + k;
            const __m256i x = _mm256_loadu_si256((const __m256i *)(qs + b * SQZ_SP8_BLOCK));
            const __m256i c = _mm256_loadu_si256((const __m256i *)(corr + b * 8));
            #pragma GCC unroll 4
            for (int i = 0; i < NR; i++) {
                uint32_t mk;
                memcpy(&mk, row[i] + 4 * b, 4);
                const __m256i sum = _mm256_dpbusd_epi32(c, expand1(q[i], mk), x);
                q[i] += __builtin_popcount(mk);
                const __m512 v = _mm512_castps256_ps512(_mm256_cvtepi32_ps(sum));
                acc[i] = _mm512_fmadd_ps(_mm512_maskz_mov_ps(0xff, v), _mm512_permutexvar_ps(_mm512_set1_epi32(k), s[i]),
                                         acc[i]);
            }
        }
    }
    #pragma GCC unroll 4
    for (int i = 0; i < NR; i++) y[r + i] = hsum512(acc[i]);
}

void sqz_sp8_matvec_vbmi2(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1) {
    const int64_t nb = cols / SQZ_SP8_BLOCK;
    void *a = (void *)(uintptr_t)xq;
    const int8_t *qs = sqz_sp8_act_qs(a, nb);
    const float *dx = sqz_sp8_act_d(a, nb);
    const int32_t *corr = sqz_sp8_act_corr(a, nb);
    int64_t r = r0;
    /* Why prefetch: with each row's masks, scales and values read as three streams, four rows
     * at a time are twelve streams at different rates, and the hardware prefetcher kept only
     * ~8 GB/s of them in flight (Q8_0's one stream: ~24). Each call fetches the rows
     * PF_AHEAD groups on into L2 (measured at 1 thread, 1.1B shapes: 1 group ahead into L1
     * 7.7 ms per token at 50 %, 2 groups into L2 ~6.5; 3 or 4 groups no better). */
    for (; r + ROWS <= r1; r += ROWS) {
        const int64_t p0 = r + PF_AHEAD * ROWS < r1 ? r + PF_AHEAD * ROWS : r1;
        const int64_t p1 = r + (PF_AHEAD + 1) * ROWS < r1 ? r + (PF_AHEAD + 1) * ROWS : r1;
        rows_dot(m, nb, qs, dx, corr, y, r, ROWS, m->data + m->row_off[p0], m->data + m->row_off[p1]);
    }
    for (; r < r1; r++) rows_dot(m, nb, qs, dx, corr, y, r, 1, NULL, NULL);
}
