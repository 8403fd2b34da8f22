/* sp8.h - sqz's sparse int8 weight format: a pruned matrix stored as its nonzeros only, so that
 * a matrix-vector product reads (about) density x the bytes of an int8 matrix (docs/sparse.md).
 *
 * Each row of n weights (n a multiple of 32) is a stream of n / 32 blocks; block b covers the
 * row's elements 32b .. 32b+31 and is
 *     u32 mask      bit j set: element 32b + j is kept (a nonzero of the pruned matrix)
 *     f16 d         the block's scale
 *     i8  q[k]      k = popcount(mask): the kept elements in order, w = d * q, q in [-127, 127]
 * (6 + k bytes, little-endian, no padding: the next block follows at once). Element 32b + j
 * with a clear bit is exactly 0. The blocks of a row follow one another; rows follow one
 * another; row r starts at byte row_off[r] of the data, row_off[rows] = the data's size. A
 * matrix-vector kernel streams a row front to back: read the mask, expand the k bytes into the
 * 32 lanes the mask names (AVX512-VBMI2's vpexpandb), one integer dot product with the block
 * of quantized activations (Q8_0: f16 scale + 32 i8), one scale.
 * Bytes per 32 weights: 6 + 32 x density - 22 at 50 % (5.5 bits per weight), 15.6 at 30 %,
 * against Q8_0's 34 (8.5). */
#ifndef SQZ_FORMATS_SP8_H
#define SQZ_FORMATS_SP8_H

#include <stddef.h>
#include <stdint.h>

enum { SQZ_SP8_BLOCK = 32, SQZ_SP8_HEAD = 6 };

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

/* Packs W [rows x cols] (row-major f32, zeros = pruned): row_off [rows + 1] and data
 * (row_off[rows] bytes; pass data = NULL to get only the offsets, i.e. the size). */
void sqz_sp8_pack(const float *W, int64_t rows, int64_t cols, uint64_t *row_off, uint8_t *data);

/* Checks a stored matrix (from a file): offsets increasing from 0, every row's stream exactly
 * its blocks' bytes and inside data_len. Returns 0 if sound, -1 otherwise. */
int sqz_sp8_check(const uint64_t *row_off, const uint8_t *data, size_t data_len, int64_t rows, int64_t cols);

#endif
