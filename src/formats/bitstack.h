/* bitstack.h - a BitStack matrix (Wang et al. 2024, "BitStack: Any-Size Compression of Large
 * Language Models", ICLR 2025): a stack of residual blocks, each a packed sign matrix times a
 * rank-r magnitude, in an activation-scaled space. The decomposition that makes them is
 * src/search/bitstack.c; the file layout docs/bitstack.md.
 *
 * Dimensions: W [rows x cols] row-major (rows = output features, cols = input features),
 * s [cols] the activation scale, K blocks of rank r. Block k holds
 *   sign_k [rows][ceil(cols/8)] bytes: bit b of byte c of row i is element (i, 8c + b), 1 = negative;
 *   u_k [rows][r] f16 and v_k [r][cols] f16: the rank-r magnitude |.| ~ u_k v_k;
 * and the matrix loaded with its first n blocks is
 *   W_n[i][j] = (sum_{k<n} sign_k[i][j] * (u_k v_k)[i][j]) / s[j]
 * (the blocks approximate W diag(s); dividing by s undoes the scaling). order[k] is block k's
 * position in the model's universal order (increasing in k): a memory budget loads the prefix of
 * that order which fits. */
#ifndef SQZ_FORMATS_BITSTACK_H
#define SQZ_FORMATS_BITSTACK_H

#include <stddef.h>
#include <stdint.h>

enum { SQZ_BS_MAX_RANK = 64 }; /* r is 1..64 */

typedef struct sqz_bs_tensor {
    int64_t n_blocks;      /* K */
    int64_t rank;          /* r */
    int64_t n_use;         /* blocks in use (0..K): how many a reader of the matrix sums */
    const float *scale;    /* [cols] */
    const int32_t *order;  /* [K] */
    const uint8_t *sign;   /* [K][rows][ceil(cols/8)] */
    const uint16_t *u;     /* [K][rows][r] f16 */
    const uint16_t *v;     /* [K][r][cols] f16 */
} sqz_bs_tensor;

/* In sqzf a BitStack matrix NAME is five tensors (ggml order, K blocks, rank r):
 * NAME.bs_scale f32 [cols], NAME.bs_order i32 [K], NAME.bs_sign i8 [ceil(cols/8), rows*K],
 * NAME.bs_u f16 [r, rows*K], NAME.bs_v f16 [cols, r*K]. */
#define SQZ_BS_SUFFIX_SCALE ".bs_scale"
#define SQZ_BS_SUFFIX_ORDER ".bs_order"
#define SQZ_BS_SUFFIX_SIGN ".bs_sign"
#define SQZ_BS_SUFFIX_U ".bs_u"
#define SQZ_BS_SUFFIX_V ".bs_v"

/* Bytes of one block of a rows x cols matrix at rank r: the signs and the two f16 factors. */
static inline uint64_t sqz_bs_block_bytes(int64_t rows, int64_t cols, int64_t rank) {
    return (uint64_t)(rows * ((cols + 7) / 8)) + 2 * (uint64_t)rank * (uint64_t)(rows + cols);
}
/* Bytes of one row's signs: ceil(cols / 8) (the last byte's unused bits are 0). */
static inline int64_t sqz_bs_row_bytes(int64_t cols) { return (cols + 7) / 8; }
/* Bytes a BitStack matrix holds whatever the budget: the scale and the order. */
static inline uint64_t sqz_bs_fixed_bytes(int64_t cols, int64_t n_blocks) {
    return 4 * (uint64_t)cols + 4 * (uint64_t)n_blocks;
}

/* Packs the signs of x [n] into ceil(n/8) bytes: bit set where x < 0 (unused bits 0). */
void sqz_bs_pack_signs(const float *x, int64_t n, uint8_t *bits);
/* out[j] = -1 or +1 from bit j of bits (n elements). */
void sqz_bs_unpack_signs(const uint8_t *bits, int64_t n, float *out);

/* acc [rows][cols] += sign_k (.) (u_k v_k) for block k of b (in the scaled space). 0, or -1
 * without memory. */
int sqz_bs_add_block(const sqz_bs_tensor *b, int64_t rows, int64_t cols, int64_t k, float *acc);
/* Row i of the matrix with b->n_use blocks, scale undone: out [cols]. */
void sqz_bs_row(const sqz_bs_tensor *b, int64_t rows, int64_t cols, int64_t i, float *out);
/* The whole matrix with its first n blocks, scale undone: out [rows][cols] (n = 0: zeros).
 * 0, or -1 without memory. */
int sqz_bs_reconstruct(const sqz_bs_tensor *b, int64_t rows, int64_t cols, int64_t n, float *out);

#endif
