/* x16.h - Q4_0 and Q8_0 matrices repacked for the kernels: 16 rows interleaved.
 *
 * llama.cpp's GGUF stores a matrix row by row; a kernel that reads one row at a time must
 * rebuild each block's scale lanes and sum every row horizontally, which costs more than the
 * memory does once the weights stream from DRAM (decode) and wastes the int8 units in prefill.
 * At load time (kernels' choice, never in a file) sqz repacks each group of 16 rows so that one
 * 512-bit vector holds 4 consecutive weights of each of the 16 rows: a vpdpbusd with 4
 * activation bytes broadcast from memory then advances 16 dot products at once, the 16 scales
 * of a block are one load, and the 16 results land in one vector - no shuffles, no horizontal
 * sums (llama.cpp's CPU backend repacks Q4_0 for the same reason, with its own layout).
 *
 * Group g (rows 16g .. 16g+15), block b (elements 32b .. 32b+31), nb = cols / 32 blocks a row:
 * the group's blocks follow one another (group stride nb * sizeof(block_x16)).
 *
 *   block_q4_0x16: d[i] = row i's f16 scale; qs[64 j + 4 i + c] (j = 0..3, i = 0..15, c = 0..3)
 *                  = q(i, 8j + c) | q(i, 8j + 4 + c) << 4, q the unsigned 4-bit value (weight
 *                  = d (q - 8)). Vector j's low nibbles are elements 8j..8j+3 of the 16 rows,
 *                  its high nibbles 8j+4..8j+7.
 *   block_q8_0x16: d[i] as above; qs[64 j + 4 i + c] (j = 0..7) = q(i, 4j + c), signed.
 *
 * Both are exactly as large as the rows they came from (16 blocks of 18 or 34 bytes).
 *
 * Their activations (block_q8_0s): x quantized to Q8_0 exactly as ggml does (the same bytes),
 * with the scale as f32 and the block's sum of quants kept, so the kernels subtract the
 * weights' offset (8 for Q4_0's nibbles; 128 for Q8_0's bytes read as unsigned) once a block.
 */
#ifndef SQZ_FORMATS_X16_H
#define SQZ_FORMATS_X16_H

#include <assert.h>
#include <stdint.h>

#include "formats/types.h"

enum { X16_ROWS = 16 };

typedef struct { uint16_t d[16]; uint8_t qs[256]; } block_q4_0x16;
static_assert(sizeof(block_q4_0x16) == 16 * 18, "block_q4_0x16 size");

typedef struct { uint16_t d[16]; int8_t qs[512]; } block_q8_0x16;
static_assert(sizeof(block_q8_0x16) == 16 * 34, "block_q8_0x16 size");

typedef struct {
    float d;       /* the Q8_0 block's scale (its f16 value, widened) */
    int32_t s8;    /* 8 * sum(qs): Q4_0's offset term */
    int32_t s128;  /* 128 * sum(qs): Q8_0's offset term */
    int32_t pad;
    int8_t qs[32];
} block_q8_0s;
static_assert(sizeof(block_q8_0s) == 48, "block_q8_0s size");

/* Q4_K, 16 rows of one 256-element super-block: the 6-bit sub-block scales and mins unpacked
 * to bytes (sc[j][i]: sub-block j of row i; m[p][i][0..1]: the mins of sub-blocks 2p, 2p+1 of
 * row i side by side, so one vpmovzxbw makes vpdpwssd's int16 pairs), and the quants as in
 * block_q4_0x16, sub-block by sub-block: qs[j][64 v + 4 i + c] (v = 0..3) = q(i, 32j + 8v + c)
 * | q(i, 32j + 8v + 4 + c) << 4. Weight = d sc q - dmin m, as Q4_K. 2368 bytes where the rows
 * took 2304 (+2.8 %). Its activations are Q8_K (the bsums give each sub-block's sum). */
typedef struct {
    uint16_t d[16], dmin[16];
    uint8_t sc[8][16];
    uint8_t m[4][16][2];
    uint8_t qs[8][256];
} block_q4_kx16;
static_assert(sizeof(block_q4_kx16) == 2368, "block_q4_kx16 size");

/* Q5_K: block_q4_kx16 plus the 5th bits, qh[j][4 i + c] holding at bit 2v the 5th bit of the
 * element in vector v's low nibble (32j + 8v + c) and at bit 2v+1 the high nibble's
 * (32j + 8v + 4 + c). 2880 bytes where the rows took 2816 (+2.3 %). Activations: Q8_K. */
typedef struct {
    uint16_t d[16], dmin[16];
    uint8_t sc[8][16];
    uint8_t m[4][16][2];
    uint8_t qs[8][256];
    uint8_t qh[8][64];
} block_q5_kx16;
static_assert(sizeof(block_q5_kx16) == 2880, "block_q5_kx16 size");

/* Q2_K, 16 rows of one super-block: d, dmin, the 16 sub-blocks' scale bytes (4-bit scale |
 * 4-bit min << 4) of sub-blocks 2p, 2p+1 of row i side by side in sc[p][i][0..1] (vpdpwssd's
 * int16 pairs after one vpmovzxbw), then per sub-block s of 16 elements 64 bytes whose byte
 * 4i + c holds at bits 2j..2j+1 element 16s + 4j + c of row i. Weight = d sc q - dmin m, as
 * Q2_K. 1344 bytes: the 16 rows' own size. Activations: Q8_K. */
typedef struct {
    uint16_t d[16], dmin[16];
    uint8_t sc[8][16][2];
    uint8_t qs[16][64];
} block_q2_kx16;
static_assert(sizeof(block_q2_kx16) == 16 * 84, "block_q2_kx16 size");

/* Q3_K, 16 rows of one super-block: d, the 16 sub-blocks' signed 6-bit scales unpacked
 * (sc[s][i], -32..31), the low 2 bits as block_q2_kx16's qs, and the 3rd bits: hb[s] holds 64
 * nibbles, nibble 4i + c (low nibble of byte 2i + c/2 for even c, high for odd) with bit j =
 * the 3rd bit of element 16s + 4j + c of row i. Weight = d sc (q - 4), as Q3_K. 1824 bytes
 * where the rows took 1760 (+3.6 %). Activations: Q8_K. */
typedef struct {
    uint16_t d[16];
    int8_t sc[16][16];
    uint8_t qs[16][64];
    uint8_t hb[16][32];
} block_q3_kx16;
static_assert(sizeof(block_q3_kx16) == 1824, "block_q3_kx16 size");

/* IQ4_XS, 16 rows of one super-block: d, the 8 sub-blocks' scales unpacked to int8 (ls - 32),
 * and the 4-bit indices into the 16 levels (sqz_iq4nl_values) laid out as block_q4_kx16's qs.
 * Weight = d sc level[q], as IQ4_XS. 2208 bytes where the rows took 2176 (+1.5 %).
 * Activations: Q8_K. */
typedef struct {
    uint16_t d[16];
    int8_t sc[8][16];
    uint8_t qs[8][256];
} block_iq4_xsx16;
static_assert(sizeof(block_iq4_xsx16) == 2208, "block_iq4_xsx16 size");

/* Q6_K, 16 rows of one super-block: d, the int8 scales of the 16 sub-blocks of 16 (sc[s][i]),
 * then per sub-block s 192 bytes: nib[h][64] - the low 4 bits of vectors 2h (low nibbles) and
 * 2h+1 (high nibbles), vector j's lane i = elements 16s + 4j .. +3 of row i - and hi[64], whose
 * byte 4i + c holds at bits 2j..2j+1 the top 2 bits of element 16s + 4j + c of row i. Weight =
 * d sc (q - 32), as Q6_K. 3360 bytes: exactly the 16 rows' size. Activations: Q8_K. */
typedef struct {
    uint8_t nib[2][64];
    uint8_t hi[64];
} q6_kx16_sub;
typedef struct {
    uint16_t d[16];
    int8_t sc[16][16];
    q6_kx16_sub q[16];
} block_q6_kx16;
static_assert(sizeof(block_q6_kx16) == 16 * 210, "block_q6_kx16 size");

/* The packed type of a matrix of type t (SQZ_TYPE_Q4_0X16 for Q4_0, SQZ_TYPE_Q8_0X16 for
 * Q8_0, SQZ_TYPE_Q2_KX16 ... Q6_KX16 for Q2_K ... Q6_K, SQZ_TYPE_IQ4_XSX16 for IQ4_XS), or SQZ_TYPE_F32 when t has none. */
sqz_type sqz_x16_type_of(sqz_type t);

/* Bytes of a packed rows x cols matrix of packed type pt (the rows' own size, Q4_K's +2.8 %). */
size_t sqz_x16_bytes(sqz_type pt, int64_t rows, int64_t cols);

/* rows (a multiple of 16) x cols rows of type t (Q4_0, Q8_0, Q2_K ... Q6_K, IQ4_XS) at src -> dst, the packed
 * layout (sqz_x16_bytes). */
void sqz_x16_pack(sqz_type t, const void *src, int64_t rows, int64_t cols, void *dst);

/* Row r of a packed Q4_0 / Q8_0 matrix back to the original row's bytes (tests; any r). */
void sqz_x16_unpack_row(sqz_type packed, const void *src, int64_t r, int64_t cols, void *dst);

/* The 16 rows of group g of a packed matrix as f32: dst[i * cols + k] (prefill's panels). */
void sqz_x16_group_to_float(sqz_type packed, const void *src, int64_t g, int64_t cols, float *dst);

#endif
