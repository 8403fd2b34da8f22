/* kv_params.h - "key=value,key=value" parameters of KV cache policies, and the small pieces
 * the compressed policies (kv_f16.c, kv_kivi.c, kv_evict.c) share. */
#ifndef SQZ_MODEL_KV_PARAMS_H
#define SQZ_MODEL_KV_PARAMS_H

#include <stddef.h>

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

/* One parameter of the cross-layer policies (kv_proj.c, kv_xkv.c, kv_minicache.c,
 * kv_kvmerger.c): type 'i' int, 'f' float, 's' string (value: a const char ** pointing into a
 * copy in the caller's buffer). */
typedef struct sqz_kv_xparam {
    const char *key;
    char type;
    void *value;
    double min, max;
} sqz_kv_xparam;

/* Parses "key=value,..." into p[0..n) (implemented in kv_proj.c). String values are copied
 * into buf and must not contain ','. Errors name the policy and the parameter. */
sqz_status sqz_kv_parse_xparams(sqz_ctx *ctx, const char *policy, const char *params,
                                const sqz_kv_xparam *p, int n, char *buf, size_t buf_len);

/* The r leading eigenvectors of the symmetric n x n matrix a (destroyed) as rows of
 * vecs [r][n], by decreasing eigenvalue (vals[r] if not NULL); 0 on success (kv_proj.c). */
int sqz_kv_top_eigvecs(double *a, int n, int r, float *vecs, double *vals);

#endif
