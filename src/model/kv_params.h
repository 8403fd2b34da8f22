/* kv_params.h - "key=value,key=value" parameters of KV cache policies (one parser for all of
 * them), and the eigen helper the cross-layer policies share. */
#ifndef SQZ_MODEL_KV_PARAMS_H
#define SQZ_MODEL_KV_PARAMS_H

#include <stddef.h>

#include "core/ctx.h"

/* One parameter: its key, its type ('i' int, 'f' float, 's' string: value is a const char **
 * pointing into a copy in the caller's buffer), where it goes (holding its default on entry)
 * and, for numbers, its range. */
typedef struct sqz_kv_param {
    const char *key;
    char type;
    void *value;
    double min, max;
} sqz_kv_param;

/* Parses params (NULL or "" = all defaults) into p[0..n). String values are copied into buf
 * and must not contain ','. Fails with SQZ_ERR_ARG and a message naming the policy and the key
 * for an unknown or repeated key, a malformed value, or one outside [min, max]. */
sqz_status sqz_kv_parse_params(sqz_ctx *ctx, const char *policy, const char *params,
                               const sqz_kv_param *p, int n, char *buf, size_t buf_len);

/* The r leading eigenvectors of the symmetric n x n matrix a (destroyed) as rows of
 * vecs [r][n], by decreasing eigenvalue (vals[r] if not NULL); 0 on success (kv_proj.c). */
int sqz_kv_top_eigvecs(double *a, int n, int r, float *vecs, double *vals);

#endif
