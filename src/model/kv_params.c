/* kv_params.c - the one parser of KV cache policy parameters ("group=32,gamma=0.3,file=x"),
 * and the public
 * accessors of the KV cache declared in include/sqz.h (policy names, a session's KV bytes). */
#include "model/kv_params.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/kv.h"
#include "model/session.h"

/* Parses "key=value,..." into p[0..n). String values are copied into buf (they must not
 * contain ','). Errors name the policy and the parameter. */
sqz_status sqz_kv_parse_params(sqz_ctx *ctx, const char *policy, const char *params,
                                const sqz_kv_param *p, int n, char *buf, size_t buf_len) {
    if (!params || !*params) return SQZ_OK;
    if (n == 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s takes no parameters (got '%s')", policy,
                        params);
    unsigned seen = 0; /* bit i: p[i] was given (policies have far fewer than 32 params) */
    size_t used = 0;
    const char *s = params;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (!eq)
            return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: expected key=value, got '%.*s'",
                            policy, (int)len, s);
        size_t klen = (size_t)(eq - s);
        int i = 0;
        while (i < n && !(strlen(p[i].key) == klen && !strncmp(p[i].key, s, klen))) i++;
        if (i == n) {
            char known[256] = "";
            for (int j = 0; j < n; j++) {
                strncat(known, j ? ", " : "", sizeof known - strlen(known) - 1);
                strncat(known, p[j].key, sizeof known - strlen(known) - 1);
            }
            return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: unknown parameter '%.*s' (known: %s)",
                            policy, (int)klen, s, known);
        }
        if (seen & (1u << i))
            return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: parameter '%s' given twice", policy,
                            p[i].key);
        seen |= 1u << i;
        size_t vlen = len - klen - 1;
        if (vlen == 0 || used + vlen + 1 > buf_len)
            return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: parameter '%s' needs a value%s",
                            policy, p[i].key, vlen ? " (too long)" : "");
        char *v = buf + used;
        memcpy(v, eq + 1, vlen);
        v[vlen] = 0;
        used += vlen + 1;
        if (p[i].type == 's') {
            *(const char **)p[i].value = v;
        } else {
            char *e;
            errno = 0;
            double d = p[i].type == 'i' ? (double)strtol(v, &e, 10) : strtod(v, &e);
            if (*e || errno || d != d)
                return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: parameter '%s' = '%s' is not %s",
                                policy, p[i].key, v, p[i].type == 'i' ? "an integer" : "a number");
            if (d < p[i].min || d > p[i].max)
                return sqz_fail(ctx, SQZ_ERR_ARG,
                                "KV policy %s: parameter '%s' = %s is out of range [%.10g, %.10g]",
                                policy, p[i].key, v, p[i].min, p[i].max);
            if (p[i].type == 'i') *(int *)p[i].value = (int)d;
            else *(float *)p[i].value = (float)d;
        }
        s = end ? end + 1 : s + len;
    }
    return SQZ_OK;
}

/* ---- public accessors of the KV cache (include/sqz.h) */

size_t sqz_session_kv_bytes(const sqz_session *s) {
    return s && s->kv ? s->kv->policy->bytes(s->kv->state) : 0;
}

const char *sqz_kv_policy_name(int i) {
    const sqz_kv_policy *const *p = sqz_kv_policies();
    for (int j = 0; j < i; j++)
        if (!p[j]) return NULL;
    return i >= 0 && p[i] ? p[i]->name : NULL;
}

const char *sqz_kv_policy_help(int i) {
    const sqz_kv_policy *const *p = sqz_kv_policies();
    for (int j = 0; j < i; j++)
        if (!p[j]) return NULL;
    return i >= 0 && p[i] ? p[i]->help : NULL;
}
