/* sgptq.h - SparseGPT and GPTQ in one pass: a matrix pruned and quantized to a GGUF block type
 * together (Frantar, Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in
 * One-Shot", ICML 2023, section "Joint Sparsification & Quantization"; docs/prune-gptq.md).
 *
 * Dimensions: W [rows x cols] row-major f32 (rows = output features); H [cols x cols] = X^T X
 * (f64, both triangles); U = the upper Cholesky factor of the damped H^-1 (H^-1 = U^T U);
 * QK = the type's block (32 or 256 columns, each with its own scales); B = columns per lazy
 * batch and per adaptive mask block.
 *
 * SparseGPT's column loop (prune_sparsegpt.c: same damping, same dead inputs, same lazy
 * batches, same saliency w^2 / U_jj^2) where each column j of a row is also quantized:
 *   - mask: unstructured, at the start of each batch of B columns the rows x B weights of
 *     least saliency (floor((1 - density) rows B) of them) are removed, from the current
 *     weights (every update so far); N:M, per row, the m - n of least saliency of each group
 *     of m at the group's first column (SparseGPT's timing), with a provisional choice for the
 *     block's groups when a QK block starts (its scales need one);
 *   - scales: when a QK block starts, every row's block scales are fitted by the type's
 *     quantizer exactly as GPTQ fits them (sqz_gptq_block_init, importance 1 / U_jj^2,
 *     quant/gptq.h), from the current weights with the removed ones as 0 (same importance: in
 *     a type with a min, where 0 need not be a level, the fit pays for the level they get);
 *   - kept weight: q = the nearest level of its block's grid (sqz_gptq_block_quant, as GPTQ);
 *     removed weight: q = the level nearest 0 (exactly 0 for Q4_0, Q8_0, Q3_K, Q6_K; for the
 *     types with a min, Q2_K, Q4_K, Q5_K, a level may miss 0 by up to half a step: q is that
 *     level's real value, and the stored weight is not 0);
 *   - error e = (w_j - q) / U_jj, propagated w_k -= e U_jk to the later columns (within the
 *     block at once, the rest of the batch after the block, the columns after the batch as
 *     one GEMM per chunk of rows), exactly as gptq.c's sqz_gptq_quantize.
 * At density 1 nothing is removed and the bytes are sqz_gptq_quantize's with percdamp = damp,
 * block = block, cond_imp = 1, act_order = refit = cd_sweeps = 0 (the same float operations).
 * B = block rounded to a multiple of QK (and of M for N:M): a batch holds whole blocks. */
#ifndef SQZ_PRUNE_SGPTQ_H
#define SQZ_PRUNE_SGPTQ_H

#include <stdint.h>

#include "core/ctx.h"
#include "formats/types.h"
#include "prune/pruner.h"

/* The types sqz_sgptq quantizes to: Q4_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. */
int sqz_sgptq_supports(sqz_type t);

/* Prunes W to level lv and quantizes it to type in one pass (above): out gets rows *
 * sqz_type_row_size(type, cols) bytes; deq (optional, rows x cols) the dequantized result as the
 * type's to_float gives it; pruned (optional, rows x cols) 1 for the removed weights. damp:
 * damp * mean(diag H) is added to diag H (SparseGPT's 0.01); block: B before rounding (<= 0:
 * 128). Deterministic whatever the thread count (ctx's; NULL: 1).
 * Errors (message on ctx): SQZ_ERR_UNSUPPORTED for another type; SQZ_ERR_ARG for NULL W, H or
 * out, cols not a positive multiple of QK, a level sqz_prune_level_check refuses, N:M where
 * neither of M and QK divides the other (a group would straddle two blocks' scale fits), a
 * non-finite W or H, H not positive definite after damping; SQZ_ERR_NOMEM. */
sqz_status sqz_sgptq(sqz_ctx *ctx, sqz_type type, const float *W, int64_t rows, int64_t cols, const double *H,
                     const sqz_prune_level *lv, double damp, int block, void *out, float *deq, uint8_t *pruned);

#endif
