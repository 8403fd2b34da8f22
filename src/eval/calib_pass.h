/* calib_pass.h - one layer over the calibration windows: the loop that quant/calibrate.c's
 * driver (statistics pass and output pass), quant/alloc.c's Hessians, quant/mixllm.c's row
 * gains and the pruning driver (src/prune/) all run, in the session's batches so that each
 * window's tokens see only their own window. It lives in eval/ (below the method families) so
 * that quant and prune, which are peers, can both use it. */
#ifndef SQZ_EVAL_CALIB_PASS_H
#define SQZ_EVAL_CALIB_PASS_H

#include "model/session.h"

typedef sqz_status (*sqz_calib_window_fn)(void *user);

/* Runs layer l (weights w) over the n_win windows of C tokens held in X [n_win*C][D], each
 * from position 0, in batches of at most s->max_batch. last_site < 0: the whole layer, whose
 * outputs replace X's rows (the next layer's input); else up to that site's capture only, X
 * unchanged. capture (may be NULL) sees each site's input; *row0 (row0 may be NULL) is the
 * batch's first row within its window while it runs; window_end (may be NULL) runs after each
 * window. Stops at the first error. w's k-quant matrices run packed (one copy for the whole
 * pass, sqz_layer_pack_kquants) when the batches allow the same bits. */
sqz_status sqz_calib_layer_pass(sqz_session *s, const sqz_layer_weights *w, int l, float *X, size_t n_win,
                                int C, int last_site, sqz_capture_fn capture, void *user, int *row0,
                                sqz_calib_window_fn window_end, void *window_user);

#endif
