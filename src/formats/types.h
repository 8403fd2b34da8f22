/* types.h - tensor element types and the tensor view the kernels work on.
 *
 * Type ids follow ggml's numbering (GGUF stores them), so new types are appended, never
 * renumbered. Every ggml id (0..39) has a row in the traits table (types.c) with its name and
 * block layout, so files holding types sqz cannot compute with still open and list; only the
 * rows with a to_float are usable (sqz_type_usable). A weight type's kernels are rows of the
 * tier tables in src/kernels (kernels.h says how to add one).
 */
#ifndef SQZ_FORMATS_TYPES_H
#define SQZ_FORMATS_TYPES_H

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
    SQZ_TYPE_COUNT = 40, /* size of the traits table of ggml's ids */
    /* sqz's own types (ids >= 1024, a second traits table): never in GGUF files, only in sqz's
     * container (docs/sqzf.md). Block layouts: src/kernels/mix.h. */
    SQZ_TYPE_SQZ_FIRST = 1024,
    SQZ_TYPE_DQ2 = 1024,    /* decoupleQ 2-bit codes, f16 scale + zero per 64 (formats/dq2.h) */
    SQZ_TYPE_MX8 = 1025,    /* 128-element groups: f16 scale, int8 levels (mixllm's 8-bit rows) */
    SQZ_TYPE_MX4 = 1026,    /* 128-element groups: f16 scale and offset, 4-bit levels */
    SQZ_TYPE_MX3 = 1027,    /* 128-element groups: f16 scale and offset, 3-bit levels */
    /* In memory only (no block layout, never in a file): a matrix whose rows mix MX8 and
     * MX4/MX3 (mixllm); its sqz_tensor.data points to a sqz_mix_tensor. */
    SQZ_TYPE_MIXLLM = 1031,
    /* In memory only: Q4_0 / Q8_0 matrices repacked in 16-row groups for the kernels, and
     * their activations (formats/x16.h); made at run time, never written */
    SQZ_TYPE_Q4_0X16 = 1032,
    SQZ_TYPE_Q8_0X16 = 1033,
    SQZ_TYPE_Q8_0S = 1034,
    SQZ_TYPE_Q4_KX16 = 1035,
    SQZ_TYPE_Q6_KX16 = 1036,
    SQZ_TYPE_Q5_KX16 = 1037,
    SQZ_TYPE_Q2_KX16 = 1038,
    SQZ_TYPE_Q3_KX16 = 1039,
    SQZ_TYPE_IQ4_XSX16 = 1040,
    /* In memory: a pruned matrix in sqz's sparse int8 format (formats/sp8.h: per 32 weights a
     * u32 mask, an f16 scale and the packed i8 nonzeros; per-row offsets); its sqz_tensor.data
     * points to a sqz_sp8_tensor. In sqzf: NAME.sp8_off (i64 [rows + 1]) and NAME.sp8_data
     * (i8 [bytes]), docs/sparse.md. */
    SQZ_TYPE_SP8 = 1041,
    /* In memory: a low-rank matrix W ~ B A (sqz lowrank), its sqz_tensor.data points to a
     * sqz_lr_tensor; run as two products (kernels/lowrank.h). In sqzf: NAME.lr_a and NAME.lr_b,
     * two plain matrices of any row type (docs/lowrank.md). */
    SQZ_TYPE_LOWRANK = 1042,
    /* In memory: a BitStack matrix (formats/bitstack.h: residual blocks of signs times a rank-r
     * magnitude); its sqz_tensor.data points to a sqz_bs_tensor. Not run as it is: a model
     * loaded from one sums its blocks into f32 weights (model/bitstack_fit.c). In sqzf: five
     * tensors NAME.bs_* (docs/bitstack.md). */
    SQZ_TYPE_BITSTACK = 1043,
    SQZ_TYPE_SQZ_END = 1056 /* end of the second table */
} sqz_type;

/* Tables over every type (ggml's ids, then sqz's) index by slot: SQZ_TYPE_SLOT(t) for a known
 * constant t (designated initializers), sqz_type_slot(t) for any id (-1 outside both ranges). */
#define SQZ_TYPE_SLOT(t) ((t) >= SQZ_TYPE_SQZ_FIRST ? (t) - SQZ_TYPE_SQZ_FIRST + SQZ_TYPE_COUNT : (t))
enum { SQZ_TYPE_SLOTS = SQZ_TYPE_COUNT + (SQZ_TYPE_SQZ_END - SQZ_TYPE_SQZ_FIRST) };
static inline int sqz_type_slot(int t) {
    if (t >= 0 && t < SQZ_TYPE_COUNT) return t;
    if (t >= SQZ_TYPE_SQZ_FIRST && t < SQZ_TYPE_SQZ_END) return SQZ_TYPE_SLOT(t);
    return -1;
}

typedef struct sqz_type_traits {
    const char *name;     /* "f32", "f16", ... ; NULL: no such type */
    int block_size;       /* elements per block; 0: an id ggml removed (no layout) */
    size_t type_size;     /* bytes per block (0: no layout) */
    /* dst[0..n) = src[0..n) as float; n is a multiple of block_size. NULL: sqz knows the
     * layout (sizes) but cannot compute with it yet. */
    void (*to_float)(const void *src, float *dst, int64_t n);
    /* Reference quantizer (round-to-nearest with the format's own scale search):
     * src[0..n) -> dst blocks; NULL where the type has none. */
    void (*from_float)(const float *src, void *dst, int64_t n);
    /* The activation type of its quantized dot product (ggml-cpu's vec_dot_type: Q8_0, Q8_1
     * or Q8_K); SQZ_TYPE_F32 (0, the default) where x stays f32. kernels.h: sqz_act_type. */
    sqz_type act_type;
} sqz_type_traits;

/* The row for t, or NULL if sqz does not know t. A row may lack to_float (layout known, no
 * arithmetic yet) or even a layout (block_size 0: ids ggml removed): use sqz_type_usable to ask
 * whether weights of type t can be run, sqz_type_has_layout whether a file may hold them. */
const sqz_type_traits *sqz_type_get(int t);
const char *sqz_type_name(int t); /* "?" for unknown */
int sqz_type_usable(int t);       /* known and has to_float */
int sqz_type_has_layout(int t);   /* known with a block layout (block_size, type_size > 0) */
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

/* A mixed-precision matrix (type SQZ_TYPE_MIXLLM): its rows are stored permuted, the n8 rows
 * at 8 bits first, then the others at lo_type; stored row i computes output feature perm[i]. */
typedef struct sqz_mix_tensor {
    int64_t n8;          /* rows in hi (0..rows) */
    const void *hi;      /* n8 rows of SQZ_TYPE_MX8 */
    const void *lo;      /* rows - n8 rows of lo_type */
    sqz_type lo_type;    /* SQZ_TYPE_MX4 or SQZ_TYPE_MX3 */
    const int32_t *perm; /* [rows]: a permutation of 0..rows-1 */
} sqz_mix_tensor;

/* In sqzf files a mixed matrix NAME is three tensors: NAME.mix_perm, NAME.mix_hi, NAME.mix_lo. */
#define SQZ_MIX_SUFFIX_PERM ".mix_perm"
#define SQZ_MIX_SUFFIX_HI ".mix_hi"
#define SQZ_MIX_SUFFIX_LO ".mix_lo"
/* In sqzf files a sparse int8 matrix NAME is two tensors: NAME.sp8_off, NAME.sp8_data. */
#define SQZ_SP8_SUFFIX_OFF ".sp8_off"
#define SQZ_SP8_SUFFIX_DATA ".sp8_data"

/* A low-rank matrix (type SQZ_TYPE_LOWRANK) of rows x cols: W = b . a, a (rank, cols) and
 * b (rows, rank) plain row-major matrices of any type with a row layout (f32, f16, q8_0, ...). */
typedef struct sqz_lr_tensor {
    sqz_tensor a; /* (rank, cols): the input side */
    sqz_tensor b; /* (rows, rank): the output side */
} sqz_lr_tensor;

/* In sqzf files a low-rank matrix NAME is two tensors: NAME.lr_a [cols, rank] and NAME.lr_b
 * [rank, rows] (ggml order). */
#define SQZ_LR_SUFFIX_A ".lr_a"
#define SQZ_LR_SUFFIX_B ".lr_b"

/* Bytes of t's data (any type, SQZ_TYPE_MIXLLM included: its two parts and the map). */
size_t sqz_tensor_nbytes(const sqz_tensor *t);

/* Row r of t as float (for SQZ_TYPE_MIXLLM: output feature r). */
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
