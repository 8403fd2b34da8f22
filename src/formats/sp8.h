/* sp8.h - sqz's sparse int8 weight format: a pruned matrix stored as its nonzeros only, so that
 * a matrix-vector product reads (about) density x the bytes of an int8 matrix (docs/sparse.md).
 *
 * Each row of n weights (n a multiple of 32) is nb = n / 32 blocks, block b covering the row's
 * elements 32b .. 32b+31, stored in three parts, one after the other:
 *     u32 mask[nb]   bit j of mask[b] set: element 32b + j is kept (a nonzero of the pruned matrix)
 *     f16 d[nb]      block b's scale
 *     u8  u[]        the kept elements of the row in order, popcount(mask[b]) for block b,
 *                    u = q + 128 with w = d[b] * q, q in [-127, 127] (u in [1, 255])
 * (6 nb + nonzeros bytes, little-endian, no padding). Element 32b + j with a clear bit is exactly
 * 0. Rows follow one another; row r starts at byte row_off[r] of the data, row_off[rows] = the
 * data's size. Why masks and scales ahead of the values, not each block's head before its
 * values: a kernel then knows every block's mask and scale without first walking the values
 * (the position of block b's values is a running sum of popcounts, not a chain of dependent
 * loads), and converts the scales many at a time. Why q + 128: VNNI's integer product takes one
 * operand unsigned; with the unkept lanes filled with 128 (q = 0), expanded bytes go to it as
 * they are (kernels/sp8.h). A matrix-vector kernel expands block b's k
 * bytes into the 32 lanes its mask names (AVX512-VBMI2's vpexpandb), takes one integer dot
 * product with the block of quantized activations, and scales it once.
 * Bytes per 32 weights: 6 + 32 x density - 22 at 50 % (5.5 bits per weight), 15.6 at 30 %,
 * against Q8_0's 34 (8.5). */
#ifndef SQZ_FORMATS_SP8_H
#define SQZ_FORMATS_SP8_H

#include <stddef.h>
#include <stdint.h>

enum { SQZ_SP8_BLOCK = 32, SQZ_SP8_HEAD = 6 };

/* The row layout above is layout 2 (2026-12-07; layout 1 put each block's mask and scale in
 * front of its values and stored q as i8). An sqzf file with sp8 matrices says which in this
 * key; the loader refuses any other. */
#define SQZ_KEY_SP8_LAYOUT "sqz.sp8.layout"
enum { SQZ_SP8_LAYOUT = 2 };

/* A matrix in sp8 (rows x cols): what an sqz_tensor of type SQZ_TYPE_SP8 points to. */
typedef struct sqz_sp8_tensor {
    const uint64_t *row_off; /* [rows + 1] */
    const uint8_t *data;     /* row_off[rows] bytes */
} sqz_sp8_tensor;

/* The bytes row w[0..n) takes in sp8 (n a multiple of 32): its nonzeros decide. */
size_t sqz_sp8_row_bytes(const float *w, int64_t n);

/* Packs w[0..n) into dst (sqz_sp8_row_bytes(w, n) bytes): mask = the nonzeros of w, d = the
 * largest |w| of the block / 127 (rounded to f16), q = round(w / d) (a kept weight that rounds
 * to 0 keeps its bit). Returns the bytes written. */
size_t sqz_sp8_pack_row(const float *w, int64_t n, uint8_t *dst);

/* dst[0..n) = the weights of the sp8 row at src (0 where the mask is clear). Returns the bytes
 * the row takes. */
size_t sqz_sp8_unpack_row(const uint8_t *src, int64_t n, float *dst);

/* dst = the sp8 row at src as a Q8_0 row (n / 32 blocks of f16 d + 32 i8, ggml's block_q8_0):
 * the same d, q where the mask is set, 0 elsewhere - the same weights exactly. */
void sqz_sp8_unpack_row_q8_0(const uint8_t *src, int64_t n, void *dst);

/* Packs W [rows x cols] (row-major f32, zeros = pruned): row_off [rows + 1] and data
 * (row_off[rows] bytes; pass data = NULL to get only the offsets, i.e. the size). */
void sqz_sp8_pack(const float *W, int64_t rows, int64_t cols, uint64_t *row_off, uint8_t *data);

/* Checks a stored matrix (from a file): offsets increasing from 0, every row's stream exactly
 * its blocks' bytes and inside data_len. Returns 0 if sound, -1 otherwise. */
int sqz_sp8_check(const uint64_t *row_off, const uint8_t *data, size_t data_len, int64_t rows, int64_t cols);

#endif
