/* kv_params.h - "key=value,key=value" parameters of KV cache policies, and the small pieces
 * the compressed policies (kv_f16.c, kv_kivi.c, kv_evict.c) share. */
#ifndef SQZ_MODEL_KV_PARAMS_H
#define SQZ_MODEL_KV_PARAMS_H

#include "core/ctx.h"

/* One integer parameter: its key, where it goes (holding its default on entry), its range. */
typedef struct sqz_kv_param {
    const char *key;
    int *value;
    int min, max;
} sqz_kv_param;

/* Parses params (NULL or "" = all defaults) into the n params. Fails with SQZ_ERR_ARG and a
 * message naming the policy and the key for an unknown key, a repeated key, a value that is
 * not an integer, or one outside [min, max]. */
sqz_status sqz_kv_parse_params(sqz_ctx *ctx, const char *policy, const char *params,
                               const sqz_kv_param *p, int n);

#endif
