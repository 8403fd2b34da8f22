/* calib_pass.c - one layer over the calibration windows (calib_pass.h). */
#include "eval/calib_pass.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/x16.h"
#include "model/model.h"

sqz_status sqz_calib_layer_pass(sqz_session *s, const sqz_layer_weights *w, int l, float *X, size_t n_win,
                                int C, int last_site, sqz_capture_fn capture, void *user, int *row0,
                                sqz_calib_window_fn window_end, void *window_user) {
    const int D = s->model->cfg.dim;
    /* an unpacked k-quant matrix's prefill packs it a chunk at a time in every product, i.e.
     * once per batch: packed once here instead, when every batch is long enough for packed and
     * unpacked to give the same bits (the re-forward of a quantized layer over every window) */
    const int tail = C % s->max_batch, shortest = C < s->max_batch ? C : tail ? tail : s->max_batch;
    sqz_layer_weights packed;
    void *packed_mem = NULL;
    if (shortest > SQZ_X16K_MATVEC_MAX_T) {
        const sqz_status ps = sqz_layer_pack_kquants(s->ctx, w, &packed, &packed_mem);
        if (ps) return ps;
        if (packed_mem) w = &packed;
    }
    sqz_status st = SQZ_OK;
    for (size_t win = 0; win < n_win && !st; win++) {
        for (int c0 = 0; c0 < C && !st; c0 += s->max_batch) {
            const int T = C - c0 < s->max_batch ? C - c0 : s->max_batch;
            float *xw = X + (win * (size_t)C + (size_t)c0) * D;
            memcpy(s->x, xw, (size_t)T * D * sizeof(float));
            s->pos = c0;
            if (row0) *row0 = c0;
            if (last_site >= 0) {
                st = sqz_session_layer_until(s, w, l, T, capture, user, last_site);
            } else {
                st = sqz_session_layer(s, w, l, T, capture, user);
                memcpy(xw, s->x, (size_t)T * D * sizeof(float)); /* the next layer's input */
            }
        }
        if (!st && window_end) st = window_end(window_user);
    }
    free(packed_mem);
    return st;
}
