/* align.h - internal to src/merge: what the activation-matching methods (pleas.c, otfusion.c)
 * share. Calibration windows from each model's text, each model's blocks as f32 tensors, its
 * activations per site over the windows (the matching's statistics), Pearson correlations, the
 * linear assignment of largest summed similarity, permuting a matrix's rows and columns in
 * blocks, a threaded GEMM, and the output's config.json. */
#ifndef SQZ_MERGE_ALIGN_H
#define SQZ_MERGE_ALIGN_H

#include <stddef.h>
#include <stdint.h>

#include "merge/driver.h"
#include "model/export_hf.h"
#include "model/session.h"

/* y[i * ldy + j] (+= with acc) sum_k x(i, k) w(j, k), i < M, j < N, k < K; x(i, k) =
 * x[i * ldx + k] (x_t = 0) or x[k * ldx + i] (x_t = 1), w(j, k) likewise: sqz's AVX-512 GEMM
 * over nt threads in blocks of 64 columns x 384 rows (Debian's OpenBLAS runs SSE3 kernels on
 * CPUs it does not know), OpenBLAS single-threaded elsewhere. */
void align_gemm(int nt, int64_t M, int64_t N, int64_t K, const float *x, size_t ldx, int x_t, const float *w,
                size_t ldw, int w_t, float *y, size_t ldy, int acc);

/* The calibration windows: for each distinct text (a model's --task-calib text, else the
 * shared --calib), calib_tokens (default 8192) in windows of C spread evenly over it, owned by
 * the models that calibrate on it (own[w] bit i: model i). */
typedef struct align_calib {
    int C;
    size_t n_win, T;       /* T = n_win * C tokens */
    int32_t *ids;          /* [T] */
    uint64_t *own;         /* [n_win] */
} align_calib;

sqz_status align_calib_windows(merge_run *r, align_calib *c);
void align_calib_free(align_calib *c);

/* The tensor of block weights w that out_tensor o (a block's) names. */
sqz_tensor *align_field(sqz_layer_weights *w, const out_tensor *o);
/* Frees a block's tensors loaded by align_load_layer. */
void align_free_layer(sqz_layer_weights *w);
/* Model i's block l as f32 tensors it owns (HF row order); who names the method in messages. */
sqz_status align_load_layer(merge_run *r, int i, int l, const char *who, sqz_layer_weights *w);
/* A tensor outside the blocks of model i as f32 (malloc'ed), NULL without memory. */
float *align_load_outer(merge_run *r, int i, const out_tensor *o);

/* New[r][c] = Old[rp[r / rb] * rb + r % rb][cp[c / cb] * cb + c % cb] (NULL: identity); 0 or
 * -1 without memory. */
int align_permute_matrix(float *W, int64_t rows, int64_t cols, const int *rp, int rb, const int *cp, int cb);

/* Pearson correlation of A's columns with B's, A [T][a], B [T][b] -> out [a][b]; 0 or -1. */
int align_correlate(int nt, const float *A, int a, const float *B, int b, size_t T, float *out);
/* The assignment of largest summed similarity sim [n][n]: col_of_row; 0 or -1. */
int align_match(const float *sim, int n, int *col_of_row);

/* Block l (weights w, f32, HF order) of session s over the stream X [T][D] of the windows c,
 * X advanced one block; the matching's activations captured (any may be NULL): kv [T][2 kvd]
 * (keys then values, x W_k^T and x W_v^T on the normed input), att [T][qd] (o's input, the
 * heads' outputs), z [T][F] (down's input, the SwiGLU output). */
sqz_status align_block_acts(sqz_ctx *ctx, sqz_session *s, const sqz_layer_weights *w, int l, float *X,
                            const align_calib *c, float *kv, float *att, float *z);

/* Head similarities from the correlations of two models' activations: kv [Hkv][Hkv], the sum
 * over a head's hd dimensions (dimension by dimension) of its keys' and values' correlations
 * (ckv: [2 kvd][2 kvd] from align_correlate of the kv captures); q [G][G] for anchor kv head g
 * and model kv head g2 (query heads g G + a, g2 G + b), the same sum over the attention
 * outputs' correlations (catt: [qd][qd]). */
void align_kv_head_sims(const float *ckv, int Hkv, int hd, float *out);
void align_q_head_sims(const float *catt, int Hq, int Hkv, int hd, int g, int g2, float *out);

/* config.json of the output: input 0's, intermediate_size set to m when it differs from F. */
sqz_status align_write_config(merge_run *r, int m, int F, sqz_hf_export *e);

/* A global parameter of the config, else the method's default. */
double align_param(const merge_run *r, int p);

#endif
