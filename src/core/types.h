/* types.h - tensor element types and the tensor view the kernels work on.
 *
 * Type ids follow ggml's numbering (GGUF stores them), so new types are appended, never
 * renumbered. Only the types with a row in the traits table (types.c) are usable.
 */
#ifndef SQZ_CORE_TYPES_H
#define SQZ_CORE_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum sqz_type {
    SQZ_TYPE_F32 = 0,
    SQZ_TYPE_F16 = 1,
    SQZ_TYPE_Q4_0 = 2,
    SQZ_TYPE_Q4_1 = 3,
    SQZ_TYPE_Q5_0 = 6,
    SQZ_TYPE_Q5_1 = 7,
    SQZ_TYPE_Q8_0 = 8,
    SQZ_TYPE_Q8_1 = 9,
    SQZ_TYPE_Q2_K = 10,
    SQZ_TYPE_Q3_K = 11,
    SQZ_TYPE_Q4_K = 12,
    SQZ_TYPE_Q5_K = 13,
    SQZ_TYPE_Q6_K = 14,
    SQZ_TYPE_Q8_K = 15, /* activations only (k-quant dot products) */
    SQZ_TYPE_IQ4_NL = 20,
    SQZ_TYPE_IQ4_XS = 23,
    SQZ_TYPE_BF16 = 30,
    SQZ_TYPE_COUNT = 40, /* size of the traits table */
    /* sqz-only types (not ggml's; GGUF cannot hold them): a second, small table in types.c */
    SQZ_TYPE_SQZ_FIRST = 1024,
    SQZ_TYPE_DQ2 = 1024, /* decoupleQ 2-bit codes, f16 scale + zero per 64 (quant/dq2.h) */
    SQZ_TYPE_SQZ_END = 1025
} sqz_type;

typedef struct sqz_type_traits {
    const char *name;     /* "f32", "f16", ... ; NULL: no such type */
    int block_size;       /* elements per block */
    size_t type_size;     /* bytes per block */
    /* dst[0..n) = src[0..n) as float; n is a multiple of block_size. NULL: sqz knows the
     * layout (sizes) but cannot compute with it yet. */
    void (*to_float)(const void *src, float *dst, int64_t n);
    /* Reference quantizer (round-to-nearest with the format's own scale search):
     * src[0..n) -> dst blocks; NULL where the type has none. */
    void (*from_float)(const float *src, void *dst, int64_t n);
} sqz_type_traits;

/* The row for t, or NULL if sqz does not know t. A row may lack to_float (layout known, no
 * arithmetic yet): use sqz_type_usable to ask whether weights of type t can be run. */
const sqz_type_traits *sqz_type_get(int t);
const char *sqz_type_name(int t); /* "?" for unknown */
int sqz_type_usable(int t);       /* known and has to_float */
/* Bytes of a row of n elements (n must be a multiple of the block size). */
size_t sqz_type_row_size(sqz_type t, int64_t n);

/* A 2-D (or 1-D, rows = 1) view of weights. Rows are contiguous: row r starts at
 * (char *)data + r * sqz_type_row_size(type, cols). */
typedef struct sqz_tensor {
    sqz_type type;
    int64_t cols; /* elements per row (the reduction dimension of a matmul) */
    int64_t rows; /* output features */
    const void *data; /* NULL: absent (e.g. no bias) */
} sqz_tensor;

/* Row r of t as float. */
void sqz_tensor_row_f32(const sqz_tensor *t, int64_t r, float *out);

/* ---- half-precision conversions (portable; exact for every value incl. subnormals/inf/nan) */
float sqz_f16_to_f32(uint16_t h);
uint16_t sqz_f32_to_f16(float f); /* round to nearest even */
static inline float sqz_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
uint16_t sqz_f32_to_bf16(float f); /* round to nearest even */

#endif
