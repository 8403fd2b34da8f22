/* params.c - the one parser of "key=value,key=value" parameters (KV cache policies, their
 * codecs, quantization methods): core/params.h. */
#include "core/params.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sqz_status sqz_params_parse(sqz_ctx *ctx, const char *kind, const char *policy, const char *params,
                            const sqz_param *p, int n, char *buf, size_t buf_len) {
    if (!params || !*params) return SQZ_OK;
    if (n == 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s %s takes no parameters (got '%s')", kind, policy,
                        params);
    unsigned seen = 0; /* bit i: p[i] was given (a policy or method has far fewer than 32 parameters) */
    size_t used = 0;
    const char *s = params;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (!eq)
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s %s: expected key=value, got '%.*s'",
                            kind, policy, (int)len, s);
        size_t klen = (size_t)(eq - s);
        int i = 0;
        while (i < n && !(strlen(p[i].key) == klen && !strncmp(p[i].key, s, klen))) i++;
        if (i == n) {
            char known[256] = "";
            for (int j = 0; j < n; j++) {
                strncat(known, j ? ", " : "", sizeof known - strlen(known) - 1);
                strncat(known, p[j].key, sizeof known - strlen(known) - 1);
            }
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s %s: unknown parameter '%.*s' (known: %s)",
                            kind, policy, (int)klen, s, known);
        }
        if (seen & (1u << i))
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s %s: parameter '%s' given twice",
                            kind, policy,
                            p[i].key);
        seen |= 1u << i;
        size_t vlen = len - klen - 1;
        if (vlen == 0 || used + vlen + 1 > buf_len)
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s %s: parameter '%s' needs a value%s",
                            kind, policy, p[i].key, vlen ? " (too long)" : "");
        char *v = buf + used;
        memcpy(v, eq + 1, vlen);
        v[vlen] = 0;
        used += vlen + 1;
        if (p[i].type == 's') {
            *(const char **)p[i].value = v;
        } else {
            char *e;
            errno = 0;
            if (p[i].type == 'u') { /* the whole uint64 range, so no double (53 bits) */
                errno = 0;
                const unsigned long long u = strtoull(v, &e, 10);
                if (*e || errno || *v == '-' || *v == '+' || *v == ' ')
                    return sqz_fail(ctx, SQZ_ERR_ARG,
                                    "%s %s: parameter '%s' = '%s' is not an unsigned integer",
                                    kind, policy, p[i].key, v);
                *(uint64_t *)p[i].value = (uint64_t)u;
                s = end ? end + 1 : s + len;
                continue;
            }
            double d = p[i].type == 'i' ? (double)strtol(v, &e, 10) : strtod(v, &e);
            if (*e || errno || d != d)
                return sqz_fail(ctx, SQZ_ERR_ARG, "%s %s: parameter '%s' = '%s' is not %s",
                            kind, policy, p[i].key, v, p[i].type == 'i' ? "an integer" : "a number");
            if (d < p[i].min || d > p[i].max)
                return sqz_fail(ctx, SQZ_ERR_ARG,
                                "%s %s: parameter '%s' = %s is out of range [%.10g, %.10g]",
                            kind, policy, p[i].key, v, p[i].min, p[i].max);
            if (p[i].type == 'i') *(int *)p[i].value = (int)d;
            else if (p[i].type == 'd') *(double *)p[i].value = d;
            else *(float *)p[i].value = (float)d;
        }
        s = end ? end + 1 : s + len;
    }
    return SQZ_OK;
}
