/* lowrank.h - products with a low-rank matrix W ~ b . a (SQZ_TYPE_LOWRANK, formats/types.h:
 * sqz_lr_tensor; made by sqz lowrank, docs/lowrank.md): y = b (a x), two products with the
 * factors' own kernels, so rank r costs r (rows + cols) multiply-adds per token instead of
 * rows x cols.
 *
 * Decode (sqz_matvec_rows over a thread's rows r0..r1): the matrix's input is kept as f32 (its
 * "activation type" is f32, so matrices of one type share it and a team may prepare it by
 * parts), and every thread computes the whole inner vector z = a x (r values) itself, then its
 * rows of b z: no thread waits for another, at the price of each thread reading all of a. */
#ifndef SQZ_KERNELS_LOWRANK_H
#define SQZ_KERNELS_LOWRANK_H

#include "kernels/kernels.h"

/* The whole-matrix operations of SQZ_TYPE_LOWRANK (kernels.h), in the reference tier's row. */
extern const sqz_matrix_ops sqz_lowrank_matrix_ops;

#endif
