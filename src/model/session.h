/* session.h - the run state of one sequence (internal layout of sqz_session). */
#ifndef SQZ_MODEL_SESSION_H
#define SQZ_MODEL_SESSION_H

#include "model/kv.h"
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
    char *xq[3];   /* decode: activations quantized for up to three matrices at once */
    size_t xq_bytes; /* bytes of each xq buffer */
};

/* A session whose KV cache uses the policy kv_spec ("f32", "name:key=value,..."). */
sqz_status sqz_session_new_kv(sqz_ctx *ctx, const sqz_model *m, int max_ctx, const char *kv_spec,
                              sqz_session **out);

#endif
