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

/* Runs model over n_win windows of C tokens (tokens[0 .. n_win*C), inside the vocabulary). */
sqz_status sqz_kl_probe_new(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens, size_t n_win,
                            int C, sqz_kl_probe **out);

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

/* Sets the reference model (NULL: the original again; ref must stay valid while set). Its
 * states are computed per window when first needed, with its own KL there. */
sqz_status sqz_kl_probe_set_ref(sqz_kl_probe *p, const sqz_model *ref);

/* The reference's mean KL over windows win[0..n) (computing states that are stale). */
sqz_status sqz_kl_probe_ref_kl(sqz_kl_probe *p, const int *win, int n, double *kl);

size_t sqz_kl_probe_windows(const sqz_kl_probe *p);

void sqz_kl_probe_free(sqz_kl_probe *p);

#endif
