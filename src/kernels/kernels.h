/* kernels.h - matrix kernels over weight tensors of any supported type.
 *
 * Glossary: T tokens in a batch, K the reduction length (a weight row, tensor->cols), N output
 * features (tensor->rows). Activations are f32, row-major: x[T][K], y[T][N].
 *
 * Each type has a dot product `row . x` in three tiers - portable reference (dot_ref.c), AVX2
 * (dot_avx2.c) and AVX-512 (dot_avx512.c) - chosen at run time by the CPU's features; each
 * tier's kernels are one static table indexed by type (sqz_kernels_ref/avx2/avx512 below). The
 * tests compare every tier against the reference. llama.cpp's quantized types add a dot product
 * with quantized activations in the same three tiers (qdot_ref.c, qdot_avx2.c, qdot_avx512.c;
 * tests/test_qkernels.c), which decode uses.
 */
#ifndef SQZ_KERNELS_KERNELS_H
#define SQZ_KERNELS_KERNELS_H

#include <stdint.h>

#include "formats/types.h"

/* sum_k row[k] * x[k] over n elements (n a multiple of the type's block size). */
typedef float (*sqz_dot_fn)(const void *row, const float *x, int64_t n);

typedef enum sqz_isa { SQZ_ISA_REF = 0, SQZ_ISA_AVX2 = 1, SQZ_ISA_AVX512 = 2 } sqz_isa;

/* The best tier this CPU supports ($SQZ_ISA=ref|avx2|avx512 caps it, for testing). */
sqz_isa sqz_isa_best(void);
const char *sqz_isa_name(sqz_isa isa);
/* The dot product of type t in tier isa, falling back to lower tiers; NULL if t is unknown. */
sqz_dot_fn sqz_dot_get(sqz_type t, sqz_isa isa);

/* dst[0..n) = row as f32 (the fast counterpart of the type's to_float). */
typedef void (*sqz_cvt_fn)(const void *row, float *dst, int64_t n);
sqz_cvt_fn sqz_cvt_get(sqz_type t, sqz_isa isa);

/* ---- quantized dot products (llama.cpp's scheme, for its quantized weight types)
 *
 * Decode quantizes x once per matvec to an 8-bit activation type - Q8_0 for Q4_0, Q5_0, Q8_0
 * and IQ4_NL; Q8_1 for Q4_1 and Q5_1 (its s = d * sum(q) pays for their minimum); Q8_K for
 * Q2_K..Q6_K and IQ4_XS - and each row's dot product is then exact integer arithmetic per
 * block, scaled once per block. The result differs from row . x by x's quantization error
 * (about 0.5% of |row| |x| / sqrt(n)), which llama.cpp accepts too.
 *
 * Tiers compute the same integer sums and differ only in the order of the f32 additions. */

/* row[0..n) (weights of type t) . xq[0..n) (activations of type sqz_act_type(t)); n a
 * multiple of t's block size. */
typedef float (*sqz_vec_dot_q_fn)(int64_t n, const void *row, const void *xq);

/* xq = x[0..n) quantized to an activation type (n a multiple of its block size); every tier
 * writes the same bytes as the reference (ggml's quantize_row_q8_{0,1,K}_ref). */
typedef void (*sqz_quantize_act_fn)(const float *x, void *xq, int64_t n);

/* The activation type of t's quantized dot product (Q8_0, Q8_1 or Q8_K), or SQZ_TYPE_F32
 * where t has none (f32, f16, bf16, the activation types themselves but Q8_0, and mixllm's
 * MX types, whose dot products take MXA activations: kernels/mix.h). Its traits' act_type. */
sqz_type sqz_act_type(sqz_type t);

/* t's quantized dot product in tier isa, falling back to lower tiers; NULL if it has none. */
sqz_vec_dot_q_fn sqz_vec_dot_q_get(sqz_type t, sqz_isa isa);

/* y[i] = row_i . xq for the nr rows row_i = w + i * rs (bytes): a matrix-vector product over
 * consecutive rows, which a tier may compute several rows at a time (sharing the horizontal
 * sums); the same values as vec_dot_q up to the order of the f32 additions. */
typedef void (*sqz_vec_dot_q_rows_fn)(int64_t n, const void *w, size_t rs, int64_t nr,
                                      const void *xq, float *y);

/* y[t * ldy + i] = row_i . token t (activations xq + t * qrs bytes) for four tokens t = 0..3
 * and the nr rows row_i = w + i * rs: prefill's product, unpacking each weight once for four
 * tokens. Returns -1 (nothing written) where the kernel does not take this n. */
typedef int (*sqz_vec_dot_q_tile4_fn)(int64_t n, const void *w, size_t rs, int64_t nr,
                                      const void *xq, size_t qrs, float *y, size_t ldy);

/* t's rows kernel in exactly tier isa (no fallback: a tier without one returns NULL, and the
 * caller loops over that tier's vec_dot_q). */
sqz_vec_dot_q_rows_fn sqz_vec_dot_q_rows_get(sqz_type t, sqz_isa isa);
sqz_vec_dot_q_tile4_fn sqz_vec_dot_q_tile4_get(sqz_type t, sqz_isa isa); /* the same, tile4 */

/* The quantizer into activation type act (Q8_0, Q8_1, Q8_K) in tier isa, falling back to lower
 * tiers; NULL for other types. */
sqz_quantize_act_fn sqz_quantize_act_get(sqz_type act, sqz_isa isa);

/* A weight type whose matrices are not rows of blocks (mixllm's: a sqz_mix_tensor) computes
 * whole products itself; sqz_act_bytes .. sqz_matmul_ref below hand them over unchanged. */
typedef struct sqz_matrix_ops {
    size_t (*act_bytes)(int64_t n);                             /* sqz_act_bytes */
    void (*act_quantize)(const float *x, void *xq, int64_t n);  /* sqz_act_quantize */
    void (*matvec_rows)(const sqz_tensor *w, const void *xq, float *y, int64_t r0, int64_t r1,
                        sqz_isa isa);                           /* sqz_matvec_rows */
    int (*matmul)(const sqz_tensor *w, const float *x, int T, float *y, int n_threads); /* -1: use matmul_ref */
    void (*matmul_ref)(const sqz_tensor *w, const float *x, int T, float *y);
    int rows_in_place; /* sqz_matvec_rows_in_place */
} sqz_matrix_ops;

/* One tier's kernels for one type; NULL members where the tier has none. */
typedef struct sqz_kernel_row {
    sqz_dot_fn dot;        /* row . f32 x (quantized types: dequantized on the fly) */
    sqz_cvt_fn to_float;
    sqz_vec_dot_q_fn vec_dot_q;       /* row . activations of sqz_act_type(t) */
    sqz_vec_dot_q_rows_fn vec_dot_q_rows; /* optional: vec_dot_q over consecutive rows */
    sqz_vec_dot_q_tile4_fn vec_dot_q_tile4; /* optional: the same for four tokens at once */
    sqz_quantize_act_fn quantize_act; /* only in the rows of Q8_0, Q8_1, Q8_K: f32 -> t */
    const sqz_matrix_ops *matrix; /* only in the reference row of a type with its own matrices */
} sqz_kernel_row;

/* The tier tables, indexed by sqz_type_slot(t) (formats/types.h): qdot_ref.c, qdot_avx2.c,
 * qdot_avx512.c. Rows of types a tier lacks are all NULL; the lookups above fall back to lower
 * tiers (rows and tile4: exactly the tier asked). The AVX-512 table uses VNNI, which
 * sqz_isa_best() requires for that tier: do not ask for a tier above sqz_isa_best().
 *
 * Adding a weight type:
 *   1. formats/types.h: its id (ggml's, or sqz's own from SQZ_TYPE_SQZ_FIRST up); formats/:
 *      its block layout, to_float and reference from_float.
 *   2. formats/types.c: one traits row - name, block_size, type_size, to_float, from_float
 *      and act_type (the activation type its quantized dot product takes, or F32).
 *   3. kernels/: one row per tier you implement, in that tier's table (qdot_<tier>.c). The
 *      reference row needs .dot (and .vec_dot_q if act_type is not F32); SIMD tiers may add
 *      any member and leave the rest to the fallback. A type whose matrices are not rows of
 *      blocks sets .matrix (a sqz_matrix_ops) in its reference row instead.
 *   4. tests: test_kernels / test_qkernels compare every tier with the reference.
 * No other file (matmul.c, io/gguf_*.c, sqz info) names the type. */
extern const sqz_kernel_row sqz_kernels_ref[SQZ_TYPE_SLOTS];
extern const sqz_kernel_row sqz_kernels_avx2[SQZ_TYPE_SLOTS];
extern const sqz_kernel_row sqz_kernels_avx512[SQZ_TYPE_SLOTS];

/* ---- decode inside a caller's thread team: x is prepared once, then each thread computes its
 * own rows, so a whole layer needs one parallel region instead of one per matrix. */

/* Bytes of x (n elements) in the activation format w's quantized dot products take; 0 when
 * w's type takes f32 x. */
size_t sqz_act_bytes(sqz_type wtype, int64_t n);
/* x -> xq in that format (nothing when sqz_act_bytes is 0). */
void sqz_act_quantize(sqz_type wtype, const float *x, void *xq, int64_t n);
/* y[r] = w . x for r in [r0, r1), on the calling thread; xq: x prepared by sqz_act_quantize
 * (ignored when sqz_act_bytes is 0). */
void sqz_matvec_rows(const sqz_tensor *w, const float *x, const void *xq, float *y, int64_t r0,
                     int64_t r1);
/* 1 when sqz_matvec_rows(r0, r1) writes exactly y[r0..r1); 0 where a type stores its rows
 * permuted and writes other output features (mixllm's matrices): a thread team must then meet
 * before anyone reads its "own" outputs. */
int sqz_matvec_rows_in_place(const sqz_tensor *w);

/* y[n] = w . x for each of the N rows: decode's matrix-vector product, threaded over rows.
 * Types with a quantized dot product (sqz_vec_dot_q_get) quantize x once (sqz_act_type) and
 * use it; the others take the f32 dot. */
void sqz_matvec(const sqz_tensor *w, const float *x, float *y, int n_threads);

/* y[T][N] = x[T][K] . w^T. For small T a loop of matvecs (quantized types: the T activation
 * rows are quantized once and each weight row is read once for all T); otherwise panels of
 * rows of w are converted to f32 and multiplied with OpenBLAS sgemm, threaded over panels. */
void sqz_matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads);

/* y[t * ldy + j] = x[t] . w[j] for T tokens (rows of K in x) and the nr rows of the f32 panel w
 * (nr <= 64): prefill's panel product on AVX-512 (gemm_avx512.c), in place of OpenBLAS's
 * sgemm; wp: scratch of K * 32 floats. */
void sqz_sgemm_panel_avx512(int T, int nr, int64_t K, const float *x, const float *w, float *y,
                            size_t ldy, float *wp);
/* The general form, for training's products: y[t * ldy + j] (+= with acc) sum_k x(t, k) w(j, k)
 * for t < T, j < nr, where x(t, k) = x[t * ldx + k] (x_t = 0) or x[k * ldx + t] (x_t = 1) and
 * w(j, k) = w[j * ldw + k] (w_t = 0) or w[k * ldw + j] (w_t = 1): transposed operands are read
 * in place. Each element is one in-order chain of FMAs over k (from y's value with acc), so
 * the result does not depend on how rows or columns are split. wp: K * 32 floats. */
void sqz_sgemm_avx512_ex(int T, int nr, int64_t K, const float *x, size_t ldx, int x_t,
                         const float *w, size_t ldw, int w_t, float *y, size_t ldy, int acc,
                         float *wp);

/* The same with the reference f32 dot and one thread: the yardstick for the tests. */
void sqz_matmul_ref(const sqz_tensor *w, const float *x, int T, float *y);

/* 1 when OpenBLAS runs the best kernels it has for this CPU (sqz_blas_coretype_hint() is NULL:
 * its AVX-512 sgemm / ssyrk beat sqz_sgemm_avx512_ex by 1.5-2.5x on GPTQ's shapes), 0 when it
 * fell back to old ones and sqz's own AVX-512 GEMM is the faster choice. */
int sqz_blas_is_best(void);

/* One-time process setup: OpenBLAS runs single-threaded inside sqz's own threads. */
void sqz_kernels_init(void);

#endif
