/* mixllm.h - MixLLM's global mixed precision between output features.
 *
 * Zheng, Song, Liu, "MixLLM: LLM Quantization with Global Mixed-precision between
 * Output-features and Highly-efficient System Design" (arXiv:2412.14590). The output features
 * (rows) of every linear matrix are ranked by salience - the estimated increase of the model's
 * loss when the feature is quantized to the low bit width - in one ranking across all layers;
 * the most salient ~10% get 8 bits (MX8), the rest 4 (MX4) or 3 (MX3) bits in groups of 128
 * with scale and offset, each part GPTQ-quantized with the layer's Hessian. The result is a
 * SQZ_TYPE_MIXLLM matrix (src/kernels/mix.h) written to sqz's container (docs/sqzf.md).
 *
 * Salience here (sqz has no autodiff, so not the paper's gradient-based estimate): for row j
 * of matrix m,
 *     sal_j = s_m * (e_lo_j - e_8_j),   e_b_j = d_b,j H d_b,j^T / n_tokens,
 * d_b,j the round-to-nearest error of row j at b bits and H = X^T X the Hessian of the
 * matrix's input on the calibration text (the second-order output error the row's
 * quantization causes, which is what the loss sees through this matrix), and s_m the matrix's
 * end-to-end sensitivity: the mean KL divergence of the model's next-token distribution when
 * only matrix m is quantized to the low bit width, divided by sum_j e_lo_j - the loss per unit
 * of output error, measured on sens_windows calibration windows. That makes e of different
 * matrices comparable in one global ranking. Rows are then taken by decreasing sal_j per
 * extra bit (sal_j / cols_m) until mix_frac of all matrix weights are at 8 bits.
 */
#ifndef SQZ_QUANT_MIXLLM_H
#define SQZ_QUANT_MIXLLM_H

#include <stdint.h>

#include "core/ctx.h"
#include "model/model.h"

enum { SQZ_MIX_N_MATS = 7 }; /* q, k, v, o, gate, up, down */

/* Matrix k of layer w in that order, and the calibration site that reads its input. */
sqz_tensor *sqz_mixllm_matrix(sqz_layer_weights *w, int k, int *site);

typedef struct sqz_mixllm_plan {
    int n_layers;
    uint8_t **hi;        /* [n_layers * 7]: per row of the matrix, 1 = 8 bits */
    double *sens;        /* [n_layers * 7]: s_m (1 when not measured) */
    uint64_t hi_weights, all_weights;
} sqz_mixllm_plan;

typedef struct sqz_mixllm_opts {
    double frac;       /* share of the matrices' weights at 8 bits (0 < frac < 1) */
    sqz_type lo_type;  /* SQZ_TYPE_MX4 or SQZ_TYPE_MX3 */
    int sens_windows;  /* calibration windows for s_m; 0: s_m = 1 (output error alone) */
} sqz_mixllm_opts;

/* Ranks every row of every layer matrix of model on the calibration tokens (n_win windows of
 * C tokens, already checked to be inside the vocabulary) and picks the 8-bit rows. */
sqz_status sqz_mixllm_plan_new(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens,
                               size_t n_win, int C, const sqz_mixllm_opts *o,
                               sqz_mixllm_plan **out);
void sqz_mixllm_plan_free(sqz_mixllm_plan *p);

/* The per-row output-error gain of 8 bits over lo_type (e_lo_j - e_8_j above, times n_tokens)
 * for W [rows x cols] with Hessian H [cols x cols]; e_lo (optional) gets e_lo_j. */
sqz_status sqz_mixllm_row_gain(sqz_ctx *ctx, const float *W, int64_t rows, int64_t cols,
                               const double *H, sqz_type lo_type, double *gain, double *e_lo);

/* Quantizes W [rows x cols] into a mixed matrix: rows with hi[r] at MX8, the others at lo_type,
 * each part by GPTQ with H (damp: percdamp, 0 = 0.01); *t becomes a SQZ_TYPE_MIXLLM view whose
 * buffers owner keeps. deq (optional, rows x cols) gets the dequantized result in W's order. */
sqz_status sqz_mixllm_quantize(sqz_ctx *ctx, sqz_model *owner, const float *W, int64_t rows,
                               int64_t cols, const double *H, const uint8_t *hi, sqz_type lo_type,
                               double damp, int act_order, sqz_tensor *t, float *deq);

#endif
