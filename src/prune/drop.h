/* drop.h - block influence (ShortGPT's BI; Layer-Wise Quantization's LIM score: Dumitru et al.
 * 2024, arXiv 2406.17415) for the layers above prune: sqz_search's layer-wise allocation ranks
 * blocks with it. */
#ifndef SQZ_PRUNE_DROP_H
#define SQZ_PRUNE_DROP_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "model/model.h"

/* bi[l] (l < n_layers) = the mean over the n_calib / C whole windows' tokens of
 * 1 - cos(x_l, x_l+1), the hidden state before and after block l of the unchanged model (a
 * zero row counts 0). Errors: SQZ_ERR_RANGE (a token outside the vocabulary), SQZ_ERR_ARG (less
 * than one window), memory. */
sqz_status sqz_block_influence(sqz_ctx *ctx, const sqz_model *model, const int32_t *calib, size_t n_calib, int C,
                               double *bi);

#endif
