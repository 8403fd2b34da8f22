/* alloc.h - each matrix's type for a size budget, chosen by measured KL divergence.
 *
 * llama.cpp's mixes (q4_k_m, q2_k, ...) give each tensor its type by a fixed rule: the head
 * (or tied embedding) gets Q6_K, attn_v and ffn_down of some layers get more bits. With
 * --alloc, sqz spends the same bytes where this model loses most instead:
 *   1. the Hessian H = X^T X of every layer's four input sites, from the original model over
 *      the calibration windows (not sequential: the inputs are the unquantized model's);
 *   2. every block matrix and the head (token_embd when tied) quantized by GPTQ with that H at
 *      every candidate type: the k-quants from one step below the mix's lowest type for these
 *      tensors up to Q6_K;
 *   3. for every (matrix, type), KL_m(t): the mean KL divergence from the original model of the
 *      model with only that matrix quantized, on eval_windows calibration windows spread over
 *      the calibration text (kl_probe.h);
 *   4. a multiple-choice knapsack, solved exactly by dynamic programming over the bytes: one
 *      type per matrix minimizing sum_m KL_m(t_m) subject to sum_m bytes_m(t_m) <= the bytes
 *      the mix's own types take for the same matrices (bytes in units of at most 2^18 per
 *      budget, rounded up per matrix; the choice may exceed the budget by at most one unit per
 *      matrix, under 0.03 %).
 * The sum of single-matrix KLs stands for the whole model's KL: on sqz-llama-26m the KLs of
 * groups of matrices quantized alone add up to within 1-3 % of the KL with all of them
 * quantized. The quantization itself then runs as without --alloc (sequential GPTQ), with
 * these types. Matrices whose row length no candidate fits keep the mix's type.
 *
 * Cost: GPTQ of the model once per candidate type plus one partial forward pass over the eval
 * windows per (matrix, type) - 5-8 minutes for sqz-llama-26m on 2 cores, not the minute of plain
 * GPTQ - and about 1.6x plain GPTQ's peak memory (the probe's layer inputs and logits).
 *
 * Measured on sqz-llama-26m (calib-1m.txt, 32768 tokens, 4 eval windows; KL divergence to the
 * F16 model on sotu / mail / moby / WikiText-2, --ctx 1024 --max-tokens 20481), same file bytes:
 *   q4_k_m  gptq 0.00997 / 0.00592 / 0.02412 / 0.01639  ->  --alloc 0.00634 / 0.00380 / 0.01673 / 0.01056
 *   q3_k_m  gptq 0.03423 / 0.02017 / -       / -        ->  --alloc 0.02044 / 0.01270 / 0.05059 / 0.03449
 *   q2_k    gptq 0.13189 / 0.07850 / 0.29665 / 0.21112  ->  --alloc 0.06879 / 0.04396 / 0.16617 / 0.11511
 * The price: the chosen files lean on Q3_K and Q5_K, whose kernels are slower than Q4_K / Q6_K
 * here, so decode from an empty context is 10-25 % slower than the mix's. */
#ifndef SQZ_QUANT_ALLOC_H
#define SQZ_QUANT_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "model/model.h"
#include "formats/presets.h"

enum { SQZ_ALLOC_MAX_TYPES = 5 };

typedef struct sqz_alloc_plan {
    int n_layers;
    sqz_type *types;   /* [n_layers * 7] (q, k, v, o, gate, up, down): the chosen types */
    sqz_type head;     /* the head's type (token_embd when tied) */
    uint64_t budget;   /* bytes these matrices may take: the mix's types' bytes, moved by
                        * file_budget - mix_file_bytes when a file budget is given */
    uint64_t bytes;    /* bytes at the chosen types */
    double kl_mix;     /* sum of single-matrix KLs at the mix's types */
    double kl_chosen;  /* the same at the chosen types */
} sqz_alloc_plan;

typedef struct sqz_alloc_opts {
    const sqz_preset *preset;      /* the mix whose size is the budget */
    const sqz_preset *head_preset; /* the head's (--embd-type), else preset */
    const sqz_preset_model *pm;
    double damp;                   /* GPTQ percdamp (<= 0: GPTQ's default) */
    int act_order;
    int eval_windows;              /* windows for the KLs (<= 0: 4) */
    int plain_gptq;                /* 1: the paper's GPTQ, without sqz's refit passes and
                                    * coordinate descent (several times faster; tests) */
    uint64_t file_budget;          /* > 0: the whole file's bytes instead of the mix's (the
                                    * matrices' budget moves by file_budget - mix_file_bytes,
                                    * where mix_file_bytes is the file the mix itself writes) */
    uint64_t mix_file_bytes;
} sqz_alloc_opts;

/* Plans the types of model's matrices on n_win calibration windows of C tokens (inside the
 * vocabulary). *out: a plan to free with sqz_alloc_plan_free. */
sqz_status sqz_alloc_plan_new(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                              int C, const sqz_alloc_opts *o, sqz_alloc_plan **out);
void sqz_alloc_plan_free(sqz_alloc_plan *p);

/* Steps 1-3 alone, for a level database (search/levels_db.h): every block matrix and the head
 * at every ladder type (Q2_K..Q6_K; a matrix whose rows no candidate fits: Q4_K... alone, as
 * item_init decides), handed to hook->got with its GPTQ bytes and KL. Items are numbered
 * layer-major (q, k, v, o, gate, up, down), the head last (n_layers * 7). o->preset is not used. */
typedef struct sqz_alloc_hook {
    void *user;
    /* non-zero: (item, t) is not quantized here: known already (its KL in *kl) or measured by
     * another process (an MPI rank; *kl then NAN) */
    int (*have)(void *user, int item, sqz_type t, double *kl);
    sqz_status (*got)(void *user, int item, sqz_type t, const void *data, size_t bytes, double kl);
    /* NULL, or called once every item below `upto` has been handed to got (those measured
     * here): after each layer's matrices and after the head. Processes that split the items
     * exchange their levels there; an error stops the build. */
    sqz_status (*sync)(void *user, int upto);
} sqz_alloc_hook;
sqz_status sqz_alloc_levels(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win, int C,
                            const sqz_alloc_opts *o, const sqz_alloc_hook *hook);

/* The knapsack of step 4 alone: n_items items with n_opt[i] options each (bytes[i][k],
 * cost[i][k]); picks choice[i] minimizing sum cost under sum bytes <= budget (the rounding
 * above). Returns 0, or -1 when even the cheapest options exceed the budget or memory runs out. */
int sqz_alloc_knapsack(int n_items, const int *n_opt, const uint64_t (*bytes)[SQZ_ALLOC_MAX_TYPES],
                       const double (*cost)[SQZ_ALLOC_MAX_TYPES], uint64_t budget, int *choice);

#endif
