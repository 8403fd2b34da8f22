/* bitstack.h - BitStack's two steps inside the search layer (include/sqz.h: sqz_bitstack):
 * the decomposition of one matrix (bitstack.c) and the universal order of all blocks
 * (bitstack_sort.c). Dimensions: W [m x n] row-major (m rows = output features, n cols = input
 * features), s [n] the activation scale, K blocks of rank r. */
#ifndef SQZ_SEARCH_BITSTACK_H
#define SQZ_SEARCH_BITSTACK_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "formats/bitstack.h"
#include "model/model.h"

/* Iterative absolute-value decomposition of W diag(s): R_0 = W diag(s); for k = 1..K:
 * sign_k = sign(R_{k-1}), |R_{k-1}| ~ u_k v_k (its rank-r truncated SVD, u = U_r S_r^1/2,
 * v = S_r^1/2 V_r^T, each rounded to f16 as stored), R_k = R_{k-1} - sign_k (.) (u_k v_k).
 * Fills sign [K][m][ceil(n/8)], u [K][m][r], v [K][r][n] (f16) and, when not NULL, rel[K] =
 * ||R_k||_F / ||R_0||_F; sign rows take ceil(n/8) bytes. 1 <= r <= min(m, n, SQZ_BS_MAX_RANK). */
sqz_status sqz_bs_decompose(sqz_ctx *ctx, const float *W, int64_t m, int64_t n, const float *s, int K, int r,
                            uint8_t *sign, uint16_t *u, uint16_t *v, double *rel);

/* The universal order (BitStack's "average" sorting, bitstack_sort.c): qm's n_mats BitStack
 * matrices get positions (order[i][k]: block k of matrix i): the first block of every
 * matrix first (every size holds them), then level by level (b = 1..K-1) the matrices'
 * block b, sorted by the mean KL divergence from model, on n_win calibration windows of C
 * tokens, of the model with every matrix at b blocks and that one matrix at b + 1 (smallest
 * first). mats[i] is matrix i (type SQZ_TYPE_BITSTACK), matrix kind[i] (q, k, v, o, gate, up,
 * down: quant/mixllm.h's order) of layer layer[i]; K the same for all. */
sqz_status sqz_bs_sort(sqz_ctx *ctx, const sqz_model *model, const sqz_tensor *const *mats, const int *layer,
                       const int *kind, int n_mats,
                       const int32_t *tokens, size_t n_win, int C, int32_t *const *order);

#endif
