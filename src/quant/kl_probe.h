/* kl_probe.h - how much the model's next-token distributions move when some of its weights
 * change: the mean KL(original || changed) over a few calibration windows.
 *
 * The probe runs the original model once over its windows and keeps every layer's input and
 * the original logits. A changed model whose first changed layer is l0 then runs from the kept
 * input of layer l0 only (a change in layer l0 leaves layers 0..l0-1 as they were). Used by
 * mixllm's per-matrix sensitivities and by the size-budget type allocation (alloc.h).
 * Memory: (n_layers + 1) x tokens x dim + tokens x vocab floats. */
#ifndef SQZ_QUANT_KL_PROBE_H
#define SQZ_QUANT_KL_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "model/model.h"

typedef struct sqz_kl_probe sqz_kl_probe;

/* Processes (MPI ranks) that share the probe's setup: each runs the original model over the
 * windows dealt to it (window i to rank i % size) and allgather (sqz_comm_allgather's
 * contract: every rank calls it alike; rank r's sizes[r] bytes of send land after ranks
 * 0..r-1's in recv) gives every rank the rest. The result is what one process computes. */
typedef struct sqz_kl_split {
    int rank, size;
    void *user;
    sqz_status (*allgather)(void *user, const void *send, const uint64_t *sizes, void *recv);
} sqz_kl_split;

/* Runs model over n_win windows of C tokens (tokens[0 .. n_win*C), inside the vocabulary). */
sqz_status sqz_kl_probe_new(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                            int C, sqz_kl_probe **out);
/* The same, the windows split over split->size processes (NULL or size 1: alone). */
sqz_status sqz_kl_probe_new_split(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                                  int C, const sqz_kl_split *split, sqz_kl_probe **out);

/* Mean KL over the probe's tokens of changed (the original's shape; its layers before l0, its
 * embeddings unless l0 == 0, are the original's) from the original. l0 = 0 looks its token
 * embeddings up in changed->tok_embd; l0 = n_layers runs the output head alone. */
sqz_status sqz_kl_probe_measure(sqz_kl_probe *p, const sqz_model *changed, int l0, double *kl);

/* The same over the windows win[0..n) only (indices into the probe's windows). With a
 * reference set (sqz_kl_probe_set_ref) and l0 > 0, the changed model runs from the
 * reference's input of layer l0 instead of the original's: a search scores an offspring that
 * differs from its parent (the reference) from layer l0 on. */
sqz_status sqz_kl_probe_measure_windows(sqz_kl_probe *p, const sqz_model *changed, int l0, const int *win,
                                        int n, double *kl);

/* The terms those means are made of: sums[i] = the sum of KL over window win[i]'s C
 * positions; measure_windows's mean is (sums[0] + ... + sums[n-1]) / (n C), summed in that
 * order, so processes that split the windows and add the terms up in order get its bits. */
sqz_status sqz_kl_probe_window_sums(sqz_kl_probe *p, const sqz_model *changed, int l0, const int *win, int n,
                                    double *sums);

/* Sets the reference model (NULL: the original again; ref must stay valid while set). Its
 * states are computed per window when first needed, with its own KL there. */
sqz_status sqz_kl_probe_set_ref(sqz_kl_probe *p, const sqz_model *ref);

/* The reference's mean KL over windows win[0..n) (computing states that are stale). */
sqz_status sqz_kl_probe_ref_kl(sqz_kl_probe *p, const int *win, int n, double *kl);
/* Its terms, as sqz_kl_probe_window_sums's. */
sqz_status sqz_kl_probe_ref_sums(sqz_kl_probe *p, const int *win, int n, double *sums);

size_t sqz_kl_probe_windows(const sqz_kl_probe *p);

void sqz_kl_probe_free(sqz_kl_probe *p);

#endif
