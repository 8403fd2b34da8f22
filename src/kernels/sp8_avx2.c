/* sp8_avx2.c - the AVX2 sp8 matrix-vector product (kernels/sp8.h), for CPUs without
 * AVX512-VBMI2's vpexpandb.
 *
 * Per block of 32: the mask's four bytes each pick an 8-byte shuffle pattern from EXPAND (lane j
 * of the byte takes the kept byte of its rank, 0x80 - a zero - where its bit is clear); the
 * second byte of each 16-lane half adds the first byte's popcount to its pattern (0x80 + c keeps
 * its top bit: still a zero). The half's kept bytes are one 16-byte load (the upper half's from
 * where the lower's end), and vpshufb puts them in their lanes. The bytes are q + 128 (u8,
 * formats/sp8.h), so q = u ^ 0x80 where u != 0; then the signed product as Q8_0's AVX2 kernel
 * takes it: vpmaddubsw on |q| and x signed like q (pairs at most 2 x 127 x 127: no saturation),
 * vpmaddwd by 1, one FMA by d_w * d_x. Four rows at a time share the activation loads.
 * Within 32 bytes of a row's end the kept bytes are copied to a zeroed buffer first, so that no
 * load reads past the row (the matrix's last row has nothing after it). */
#include <immintrin.h>
#include <string.h>

#include "formats/blocks.h"
#include "kernels/sp8.h"

enum { ROWS = 4 };

/* EXPAND[m]: byte j = the rank of bit j among m's set bits, or 0x80 where bit j is clear. */
static const uint64_t EXPAND[256] = {
    0x8080808080808080ull, 0x8080808080808000ull, 0x8080808080800080ull, 0x8080808080800100ull,
    0x8080808080008080ull, 0x8080808080018000ull, 0x8080808080010080ull, 0x8080808080020100ull,
    0x8080808000808080ull, 0x8080808001808000ull, 0x8080808001800080ull, 0x8080808002800100ull,
    0x8080808001008080ull, 0x8080808002018000ull, 0x8080808002010080ull, 0x8080808003020100ull,
    0x8080800080808080ull, 0x8080800180808000ull, 0x8080800180800080ull, 0x8080800280800100ull,
    0x8080800180008080ull, 0x8080800280018000ull, 0x8080800280010080ull, 0x8080800380020100ull,
    0x8080800100808080ull, 0x8080800201808000ull, 0x8080800201800080ull, 0x8080800302800100ull,
    0x8080800201008080ull, 0x8080800302018000ull, 0x8080800302010080ull, 0x8080800403020100ull,
    0x8080008080808080ull, 0x8080018080808000ull, 0x8080018080800080ull, 0x8080028080800100ull,
    0x8080018080008080ull, 0x8080028080018000ull, 0x8080028080010080ull, 0x8080038080020100ull,
    0x8080018000808080ull, 0x8080028001808000ull, 0x8080028001800080ull, 0x8080038002800100ull,
    0x8080028001008080ull, 0x8080038002018000ull, 0x8080038002010080ull, 0x8080048003020100ull,
    0x8080010080808080ull, 0x8080020180808000ull, 0x8080020180800080ull, 0x8080030280800100ull,
    0x8080020180008080ull, 0x8080030280018000ull, 0x8080030280010080ull, 0x8080040380020100ull,
    0x8080020100808080ull, 0x8080030201808000ull, 0x8080030201800080ull, 0x8080040302800100ull,
    0x8080030201008080ull, 0x8080040302018000ull, 0x8080040302010080ull, 0x8080050403020100ull,
    0x8000808080808080ull, 0x8001808080808000ull, 0x8001808080800080ull, 0x8002808080800100ull,
    0x8001808080008080ull, 0x8002808080018000ull, 0x8002808080010080ull, 0x8003808080020100ull,
    0x8001808000808080ull, 0x8002808001808000ull, 0x8002808001800080ull, 0x8003808002800100ull,
    0x8002808001008080ull, 0x8003808002018000ull, 0x8003808002010080ull, 0x8004808003020100ull,
    0x8001800080808080ull, 0x8002800180808000ull, 0x8002800180800080ull, 0x8003800280800100ull,
    0x8002800180008080ull, 0x8003800280018000ull, 0x8003800280010080ull, 0x8004800380020100ull,
    0x8002800100808080ull, 0x8003800201808000ull, 0x8003800201800080ull, 0x8004800302800100ull,
    0x8003800201008080ull, 0x8004800302018000ull, 0x8004800302010080ull, 0x8005800403020100ull,
    0x8001008080808080ull, 0x8002018080808000ull, 0x8002018080800080ull, 0x8003028080800100ull,
    0x8002018080008080ull, 0x8003028080018000ull, 0x8003028080010080ull, 0x8004038080020100ull,
    0x8002018000808080ull, 0x8003028001808000ull, 0x8003028001800080ull, 0x8004038002800100ull,
    0x8003028001008080ull, 0x8004038002018000ull, 0x8004038002010080ull, 0x8005048003020100ull,
    0x8002010080808080ull, 0x8003020180808000ull, 0x8003020180800080ull, 0x8004030280800100ull,
    0x8003020180008080ull, 0x8004030280018000ull, 0x8004030280010080ull, 0x8005040380020100ull,
    0x8003020100808080ull, 0x8004030201808000ull, 0x8004030201800080ull, 0x8005040302800100ull,
    0x8004030201008080ull, 0x8005040302018000ull, 0x8005040302010080ull, 0x8006050403020100ull,
    0x0080808080808080ull, 0x0180808080808000ull, 0x0180808080800080ull, 0x0280808080800100ull,
    0x0180808080008080ull, 0x0280808080018000ull, 0x0280808080010080ull, 0x0380808080020100ull,
    0x0180808000808080ull, 0x0280808001808000ull, 0x0280808001800080ull, 0x0380808002800100ull,
    0x0280808001008080ull, 0x0380808002018000ull, 0x0380808002010080ull, 0x0480808003020100ull,
    0x0180800080808080ull, 0x0280800180808000ull, 0x0280800180800080ull, 0x0380800280800100ull,
    0x0280800180008080ull, 0x0380800280018000ull, 0x0380800280010080ull, 0x0480800380020100ull,
    0x0280800100808080ull, 0x0380800201808000ull, 0x0380800201800080ull, 0x0480800302800100ull,
    0x0380800201008080ull, 0x0480800302018000ull, 0x0480800302010080ull, 0x0580800403020100ull,
    0x0180008080808080ull, 0x0280018080808000ull, 0x0280018080800080ull, 0x0380028080800100ull,
    0x0280018080008080ull, 0x0380028080018000ull, 0x0380028080010080ull, 0x0480038080020100ull,
    0x0280018000808080ull, 0x0380028001808000ull, 0x0380028001800080ull, 0x0480038002800100ull,
    0x0380028001008080ull, 0x0480038002018000ull, 0x0480038002010080ull, 0x0580048003020100ull,
    0x0280010080808080ull, 0x0380020180808000ull, 0x0380020180800080ull, 0x0480030280800100ull,
    0x0380020180008080ull, 0x0480030280018000ull, 0x0480030280010080ull, 0x0580040380020100ull,
    0x0380020100808080ull, 0x0480030201808000ull, 0x0480030201800080ull, 0x0580040302800100ull,
    0x0480030201008080ull, 0x0580040302018000ull, 0x0580040302010080ull, 0x0680050403020100ull,
    0x0100808080808080ull, 0x0201808080808000ull, 0x0201808080800080ull, 0x0302808080800100ull,
    0x0201808080008080ull, 0x0302808080018000ull, 0x0302808080010080ull, 0x0403808080020100ull,
    0x0201808000808080ull, 0x0302808001808000ull, 0x0302808001800080ull, 0x0403808002800100ull,
    0x0302808001008080ull, 0x0403808002018000ull, 0x0403808002010080ull, 0x0504808003020100ull,
    0x0201800080808080ull, 0x0302800180808000ull, 0x0302800180800080ull, 0x0403800280800100ull,
    0x0302800180008080ull, 0x0403800280018000ull, 0x0403800280010080ull, 0x0504800380020100ull,
    0x0302800100808080ull, 0x0403800201808000ull, 0x0403800201800080ull, 0x0504800302800100ull,
    0x0403800201008080ull, 0x0504800302018000ull, 0x0504800302010080ull, 0x0605800403020100ull,
    0x0201008080808080ull, 0x0302018080808000ull, 0x0302018080800080ull, 0x0403028080800100ull,
    0x0302018080008080ull, 0x0403028080018000ull, 0x0403028080010080ull, 0x0504038080020100ull,
    0x0302018000808080ull, 0x0403028001808000ull, 0x0403028001800080ull, 0x0504038002800100ull,
    0x0403028001008080ull, 0x0504038002018000ull, 0x0504038002010080ull, 0x0605048003020100ull,
    0x0302010080808080ull, 0x0403020180808000ull, 0x0403020180800080ull, 0x0504030280800100ull,
    0x0403020180008080ull, 0x0504030280018000ull, 0x0504030280010080ull, 0x0605040380020100ull,
    0x0403020100808080ull, 0x0504030201808000ull, 0x0504030201800080ull, 0x0605040302800100ull,
    0x0504030201008080ull, 0x0605040302018000ull, 0x0605040302010080ull, 0x0706050403020100ull,
};

static inline uint64_t pattern(uint32_t byte, unsigned add) {
    return EXPAND[byte] + (uint64_t)add * 0x0101010101010101ull;
}

/* Block b's 32 lanes as signed q (0 where the mask is clear); *q moves past its bytes. */
static inline __m256i expand(const uint8_t **pq, const uint8_t *end, uint32_t m) {
    const uint8_t *q = *pq;
    const unsigned k = (unsigned)__builtin_popcount(m), lo = (unsigned)__builtin_popcount(m & 0xffff);
    uint8_t tmp[48];
    if (end - q < 32) { /* near the row's end: the kept bytes from a zeroed copy */
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, q, k);
        q = tmp;
    }
    const __m256i src = _mm256_loadu2_m128i((const __m128i *)(q + lo), (const __m128i *)q);
    const __m256i idx = _mm256_set_epi64x(
        (long long)pattern(m >> 24, (unsigned)__builtin_popcount(m >> 16 & 0xff)), (long long)pattern(m >> 16 & 0xff, 0),
        (long long)pattern(m >> 8 & 0xff, (unsigned)__builtin_popcount(m & 0xff)), (long long)pattern(m & 0xff, 0));
    const __m256i u = _mm256_shuffle_epi8(src, idx);
    *pq += k;
    /* u = q + 128 where kept, 0 elsewhere: q = u ^ 0x80, and 0 where u = 0 */
    return _mm256_andnot_si256(_mm256_cmpeq_epi8(u, _mm256_setzero_si256()),
                               _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80)));
}

static inline __m256 block_fma(__m256i w, __m256i x, float s, __m256 acc) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    const __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(s), acc);
}

static inline float hsum(__m256 acc) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* always inlined: the two callers pass NR as a constant, so the row loops unroll and the
 * accumulators stay in registers */
static inline __attribute__((always_inline)) void rows_dot(const sqz_sp8_tensor *m, int64_t nb, const int8_t *qs, const float *dx, float *y,
                            int64_t r, int NR, const uint8_t *pf, const uint8_t *pf_end) {
    /* prefetch [pf, pf_end) (rows ahead) evenly over this call's blocks, as sp8_vbmi2.c does */
    const int64_t pf_step = (pf_end - pf + 64 * (nb + 1) - 1) / (64 * (nb + 1)) * 64;
    const uint8_t *row[ROWS], *q[ROWS], *end[ROWS];
    __m256 acc[ROWS];
    #pragma GCC unroll 4
    for (int i = 0; i < NR; i++) {
        row[i] = m->data + m->row_off[r + i];
        q[i] = row[i] + nb * SQZ_SP8_HEAD;
        end[i] = m->data + m->row_off[r + i + 1];
        acc[i] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        for (int64_t o = 0; o < pf_step && pf < pf_end; o += 64, pf += 64) _mm_prefetch((const char *)pf, _MM_HINT_T1);
        const __m256i x = _mm256_loadu_si256((const __m256i *)(qs + b * SQZ_SP8_BLOCK));
#pragma GCC unroll 4
        for (int i = 0; i < NR; i++) {
            uint32_t mk;
            uint16_t dh;
            memcpy(&mk, row[i] + 4 * b, 4);
            memcpy(&dh, row[i] + 4 * nb + 2 * b, 2);
            const float s = _cvtsh_ss(dh) * dx[b];
            acc[i] = block_fma(expand(&q[i], end[i], mk), x, s, acc[i]);
        }
    }
    #pragma GCC unroll 4
    for (int i = 0; i < NR; i++) y[r + i] = hsum(acc[i]);
}

void sqz_sp8_matvec_avx2(const sqz_sp8_tensor *m, int64_t cols, const void *xq, float *y, int64_t r0, int64_t r1) {
    const int64_t nb = cols / SQZ_SP8_BLOCK;
    void *a = (void *)(uintptr_t)xq;
    const int8_t *qs = sqz_sp8_act_qs(a, nb);
    const float *dx = sqz_sp8_act_d(a, nb);
    int64_t r = r0;
    for (; r + ROWS <= r1; r += ROWS) {
        const int64_t p0 = r + 2 * ROWS < r1 ? r + 2 * ROWS : r1, p1 = r + 3 * ROWS < r1 ? r + 3 * ROWS : r1;
        rows_dot(m, nb, qs, dx, y, r, ROWS, m->data + m->row_off[p0], m->data + m->row_off[p1]);
    }
    for (; r < r1; r++) rows_dot(m, nb, qs, dx, y, r, 1, NULL, NULL);
}
