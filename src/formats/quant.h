/* quant.h - llama.cpp's (ggml's) quantized tensor formats: exact dequantization and reference
 * quantizers, with and without an importance matrix.
 *
 * Layouts: blocks.h. Every function here does, operation for operation in f32, what ggml's
 * function of the same role does (ggml/src/ggml-quants.c, llama.cpp build 4748), so that
 *   - sqz_<type>_to_float gives bit-identical floats to ggml's dequantize_row_<type>;
 *   - sqz_<type>_from_float gives byte-identical blocks to ggml's quantize_row_<type>_ref;
 *   - sqz_quantize_rows gives byte-identical rows to ggml_quantize_chunk, i.e. to what
 *     llama-quantize writes (with --imatrix when an importance matrix is given).
 * This only holds when the arithmetic is plain IEEE f32 without contraction into FMAs: the .c
 * files turn contraction off themselves.
 *
 * n (elements) must be a multiple of the type's block size (32 or 256, see types.c); the
 * functions assume it and do not check.
 */
#ifndef SQZ_FORMATS_QUANT_H
#define SQZ_FORMATS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "formats/types.h"

/* ---- dequantization: src holds n/QK blocks, dst gets n floats (dequant.c) */
void sqz_q4_0_to_float(const void *src, float *dst, int64_t n);
void sqz_q4_1_to_float(const void *src, float *dst, int64_t n);
void sqz_q5_0_to_float(const void *src, float *dst, int64_t n);
void sqz_q5_1_to_float(const void *src, float *dst, int64_t n);
void sqz_q8_0_to_float(const void *src, float *dst, int64_t n);
void sqz_q8_1_to_float(const void *src, float *dst, int64_t n); /* ggml has none: d * q */
void sqz_q2_k_to_float(const void *src, float *dst, int64_t n);
void sqz_q3_k_to_float(const void *src, float *dst, int64_t n);
void sqz_q4_k_to_float(const void *src, float *dst, int64_t n);
void sqz_q5_k_to_float(const void *src, float *dst, int64_t n);
void sqz_q6_k_to_float(const void *src, float *dst, int64_t n);
void sqz_q8_k_to_float(const void *src, float *dst, int64_t n);
/* IQ4_NL / IQ4_XS's 16 levels (ggml's kvalues_iq4nl) */
extern const int8_t sqz_iq4nl_values[16];
void sqz_iq4_nl_to_float(const void *src, float *dst, int64_t n);
void sqz_iq4_xs_to_float(const void *src, float *dst, int64_t n);

/* ---- reference quantizers, no importance matrix (quantize_ref.c). Blocks are independent,
 * so a call over several rows equals one call per row. */
void sqz_q4_0_from_float(const float *src, void *dst, int64_t n);
void sqz_q4_1_from_float(const float *src, void *dst, int64_t n);
void sqz_q5_0_from_float(const float *src, void *dst, int64_t n);
void sqz_q5_1_from_float(const float *src, void *dst, int64_t n);
void sqz_q8_0_from_float(const float *src, void *dst, int64_t n);
void sqz_q8_1_from_float(const float *src, void *dst, int64_t n);
void sqz_q2_k_from_float(const float *src, void *dst, int64_t n);
void sqz_q3_k_from_float(const float *src, void *dst, int64_t n);
void sqz_q4_k_from_float(const float *src, void *dst, int64_t n);
void sqz_q5_k_from_float(const float *src, void *dst, int64_t n);
void sqz_q6_k_from_float(const float *src, void *dst, int64_t n);
void sqz_q8_k_from_float(const float *src, void *dst, int64_t n);
/* IQ4_NL: ggml's quantize_row_iq4_nl_ref, a quick fit without the scale search (ggml uses it
 * for the KV cache). llama-quantize does the search: sqz_quantize_rows(SQZ_TYPE_IQ4_NL, ...). */
void sqz_iq4_nl_from_float(const float *src, void *dst, int64_t n);
void sqz_iq4_xs_from_float(const float *src, void *dst, int64_t n);

/* Quantizes nrows rows of n_per_row floats (row r at src + r * n_per_row) into dst, rows
 * packed (row r at dst + r * sqz_type_row_size(t, n_per_row)), exactly as llama-quantize does:
 *   imatrix == NULL: each format's own search (as ggml's quantize_<type>(..., NULL); for every
 *     type but IQ4_NL that is the reference quantizer above);
 *   imatrix != NULL: n_per_row importance weights, one per column (llama-imatrix's averaged
 *     squared activations), used by Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1,
 *     IQ4_NL and IQ4_XS as ggml's quantize_row_<type>_impl does; the other types ignore it.
 * Types: every quantized type above, plus F32, F16 and BF16 (plain conversions, round to
 * nearest even). Returns the bytes written (nrows * row size), or 0 if t is not one of those
 * types or n_per_row is not a positive multiple of its block size. Serial; rows are
 * independent, so callers may split the rows among threads and get the same bytes. */
size_t sqz_quantize_rows(sqz_type t, const float *src, void *dst, int64_t nrows,
                         int64_t n_per_row, const float *imatrix);

/* Whether sqz_quantize_rows uses an importance matrix for t. */
int sqz_quantize_uses_imatrix(sqz_type t);

#endif
