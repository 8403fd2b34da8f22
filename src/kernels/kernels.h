/* kernels.h - matrix kernels over weight tensors of any supported type.
 *
 * Glossary: T tokens in a batch, K the reduction length (a weight row, tensor->cols), N output
 * features (tensor->rows). Activations are f32, row-major: x[T][K], y[T][N].
 *
 * Each type has a dot product `row . x` in three tiers - portable reference (dot_ref.c), AVX2
 * (dot_avx2.c) and AVX-512 (dot_avx512.c) - chosen at run time by the CPU's features. The
 * tests compare every tier against the reference.
 */
#ifndef SQZ_KERNELS_H
#define SQZ_KERNELS_H

#include <stdint.h>

#include "core/types.h"

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

/* One tier's kernels for one type; a tier returns NULL members where it has none. */
typedef struct sqz_kernel_row {
    sqz_dot_fn dot;
    sqz_cvt_fn to_float;
} sqz_kernel_row;

sqz_kernel_row sqz_kernels_ref(sqz_type t);
sqz_kernel_row sqz_kernels_avx2(sqz_type t);
sqz_kernel_row sqz_kernels_avx512(sqz_type t);

/* y[n] = w . x for each of the N rows: decode's matrix-vector product, threaded over rows. */
void sqz_matvec(const sqz_tensor *w, const float *x, float *y, int n_threads);

/* y[T][N] = x[T][K] . w^T. For small T a loop of matvecs; otherwise panels of rows of w are
 * converted to f32 and multiplied with OpenBLAS sgemm, threaded over panels. */
void sqz_matmul(const sqz_tensor *w, const float *x, int T, float *y, int n_threads);

/* The same with the reference dot and one thread: the yardstick for the tests. */
void sqz_matmul_ref(const sqz_tensor *w, const float *x, int T, float *y);

/* One-time process setup: OpenBLAS runs single-threaded inside sqz's own threads. */
void sqz_kernels_init(void);

#endif
