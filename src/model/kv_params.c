/* kv_params.c - parser of KV cache policy parameters ("group=32,window=64"), and the public
 * accessors of the KV cache declared in include/sqz.h (policy names, a session's KV bytes). */
#include "model/kv_params.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "model/kv.h"
#include "model/session.h"

sqz_status sqz_kv_parse_params(sqz_ctx *ctx, const char *policy, const char *params,
                               const sqz_kv_param *p, int n) {
    if (!params) return SQZ_OK;
    unsigned seen = 0; /* bit i: p[i] was given (policies have far fewer than 32 params) */
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
            return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: unknown parameter '%.*s' (%s%s)",
                            policy, (int)klen, s, n ? "known: " : "it takes none",
                            known);
        }
        if (seen & (1u << i))
            return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: parameter '%s' given twice", policy,
                            p[i].key);
        seen |= 1u << i;
        const char *vs = eq + 1;
        size_t vlen = len - klen - 1;
        char buf[32];
        if (vlen == 0 || vlen >= sizeof buf)
            return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: parameter '%s' needs an integer value",
                            policy, p[i].key);
        memcpy(buf, vs, vlen);
        buf[vlen] = 0;
        char *e;
        errno = 0;
        long v = strtol(buf, &e, 10);
        if (*e || errno || v < INT_MIN || v > INT_MAX)
            return sqz_fail(ctx, SQZ_ERR_ARG,
                            "KV policy %s: parameter '%s' = '%s' is not an integer", policy,
                            p[i].key, buf);
        if (v < p[i].min || v > p[i].max)
            return sqz_fail(ctx, SQZ_ERR_ARG,
                            "KV policy %s: parameter '%s' = %ld is out of range [%d, %d]", policy,
                            p[i].key, v, p[i].min, p[i].max);
        *p[i].value = (int)v;
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
