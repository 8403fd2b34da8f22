/* session.h - the run state of one sequence (internal layout of sqz_session). */
#ifndef SQZ_MODEL_SESSION_H
#define SQZ_MODEL_SESSION_H

#include "core/spin_barrier.h"
#include "kv/kv.h"
#include "model/model.h"

struct sqz_session {
    sqz_ctx *ctx;
    const sqz_model *model;
    sqz_kv *kv;
    int max_ctx;   /* positions the cache holds */
    int max_batch; /* tokens per forward batch (B) */
    int pos;       /* positions filled */
    /* scratch, B rows each */
    float *x;      /* [B][D] residual stream */
    float *xb;     /* [B][max(D, Hq*hd)] normed input / projection output */
    float *q;      /* [B][Hq*hd] */
    float *k, *v;  /* [B][Hkv*hd] */
    float *att;    /* [B][Hq*hd] attention output */
    float *hb, *hb2; /* [B][F] FFN gate and up */
    float *last_logits; /* [V] */
    float *rope_cos, *rope_sin; /* [max_ctx][hd/2] */
    size_t xq_bytes; /* bytes of one input row in any activation format (team decode) */
    struct sqz_team_buf *team; /* [n_team] multi-threaded decode: each thread's own scratch */
    int n_team;
    sqz_spin_barrier team_sync; /* where the decode team meets (n_team threads) */
    char *team_xq;              /* [2][xq_bytes] inputs of wo and down, quantized by parts */
    int *kv_layer; /* [n_layers] each layer's layer in the KV cache; -1: the model's layer has
                    * no attention (a dropped sub-block), so it has no cache */
};

/* Where a layer's matrices read their input, for calibration: the normed input of q/k/v
 * [T][D], the attention output before wo [T][Hq*hd], the normed input of gate/up [T][D], the
 * SwiGLU output before down [T][F]. */
enum { SQZ_SITE_QKV = 0, SQZ_SITE_O = 1, SQZ_SITE_GATE_UP = 2, SQZ_SITE_DOWN = 3, SQZ_N_SITES = 4 };
/* Not matrix inputs (so past SQZ_N_SITES): the queries [T][Hq*hd] and keys [T][Hkv*hd] after
 * RoPE, handed one after the other before attention (RSQ's token importance, quant/rsq.h). */
enum { SQZ_SITE_Q_ROPE = 4, SQZ_SITE_K_ROPE = 5 };
typedef void (*sqz_capture_fn)(void *user, int layer, int site, const float *x, int T, int dim);

/* Runs T rows of s->x (positions s->pos..) through layer l with the weights w (which may
 * differ from the model's: calibration swaps in quantized ones), in place; capture, if set,
 * sees each site's input. Does not advance s->pos. */
sqz_status sqz_session_layer(sqz_session *s, const sqz_layer_weights *w, int l, int T,
                             sqz_capture_fn capture, void *user);

/* The same, returning right after site last_site's capture (0..SQZ_N_SITES - 1; s->x is then
 * left as it was, s->xb and the rest are scratch; the KV cache has the batch's keys and values
 * from SQZ_SITE_O on): calibration that needs one site's inputs does not run the rest. */
sqz_status sqz_session_layer_until(sqz_session *s, const sqz_layer_weights *w, int l, int T,
                                   sqz_capture_fn capture, void *user, int last_site);

/* sqz_session_new_kv (a session with a KV-cache policy) is public: include/sqz.h. */

#endif
