/* params.h - "key=value,key=value" parameters: one parser for the KV cache policies
 * (`--kv h2o:budget=128+q4:group=64`) and the quantization methods (`--method rsq:rmin=0.01`). */
#ifndef SQZ_CORE_PARAMS_H
#define SQZ_CORE_PARAMS_H

#include <stddef.h>

#include "core/ctx.h"

/* One parameter: its key, its type ('i' int, 'f' float, 'd' double, 'u' uint64_t: any
 * decimal in [0, 2^64), no sign, min/max unused; 's' string: value is a const char ** pointing
 * into a copy in the caller's buffer), where it goes (holding its default on entry) and, for
 * 'i', 'f' and 'd', its range. */
typedef struct sqz_param {
    const char *key;
    char type;
    void *value;
    double min, max;
} sqz_param;

/* Parses params (NULL or "" = all defaults) into p[0..n). String values are copied into buf
 * and must not contain ','. Fails with SQZ_ERR_ARG and a message "KIND NAME: ..." (kind: "KV
 * policy", "method") naming the key, for an unknown or repeated key, a malformed value, or one
 * outside [min, max]. */
sqz_status sqz_params_parse(sqz_ctx *ctx, const char *kind, const char *name, const char *params,
                            const sqz_param *p, int n, char *buf, size_t buf_len);

#endif
