/* dq2_fake.h - dq2 as fake quantization, for measuring quality in a plain GGUF (sqzf holds dq2
 * itself; GGUF cannot):  the block matrices are written as their dequantized f32 values, and token_embd /
 * output get the type the q2_k mix gives them (Q6_K), stored dequantized as well. The file then
 * computes what the real type would, up to the 8-bit activations of the quantized dot
 * products (dq2 . Q8_0, Q6_K . Q8_K), and measures its quality; its size does not. */
#ifndef SQZ_QUANT_DQ2_FAKE_H
#define SQZ_QUANT_DQ2_FAKE_H

#include "model/model.h"
#include "sqz.h"

/* Writes qm, whose block matrices are f32 already, to out_path: token_embd / output quantized
 * as the q2_k mix keeps them (into buffers qm owns), every weight as f32. */
sqz_status sqz_dq2_fake_convert(sqz_ctx *ctx, sqz_model *qm, const char *out_path,
                                sqz_convert_result *res);

/* Round-to-nearest dq2 (sqz_dq2_from_float) of every block matrix of model, written as
 * sqz_dq2_fake_convert does. */
sqz_status sqz_dq2_fake_rtn(sqz_ctx *ctx, const sqz_model *model, const char *out_path,
                            sqz_quantize_result *res);

#endif
