/* gc.c - the table of gradient compressors and the parsing of a --dp spec
 * ("name" or "name:key=value,key=value"). Adding a compressor: one gc_<name>.c and one row. */
#include <stdlib.h>
#include <string.h>

#include "train/gc.h"

extern const sqz_gc_method sqz_gcm_none, sqz_gcm_fp16, sqz_gcm_topk, sqz_gcm_dgc, sqz_gcm_powersgd,
    sqz_gcm_lgreco, sqz_gcm_econtrol;

static const sqz_gc_method *const methods[] = {
    &sqz_gcm_none, &sqz_gcm_fp16, &sqz_gcm_topk, &sqz_gcm_dgc, &sqz_gcm_powersgd, &sqz_gcm_lgreco,
    &sqz_gcm_econtrol,
};
enum { N_METHODS = sizeof methods / sizeof methods[0] };

const char *sqz_gc_names(void) {
    static char names[256];
    if (!names[0])
        for (int i = 0; i < N_METHODS; i++) {
            if (i) strcat(names, ", ");
            strcat(names, methods[i]->name);
        }
    return names;
}

double sqz_gc_arg(const sqz_gc_args *a, const char *key, double def) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->key[i], key)) return strtod(a->val[i], NULL);
    return def;
}

const char *sqz_gc_arg_str(const sqz_gc_args *a, const char *key, const char *def) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->key[i], key)) return a->val[i];
    return def;
}

/* 1 when key is one of the comma list's "key=..." entries */
static int takes(const char *params, const char *key) {
    const size_t len = strlen(key);
    for (const char *p = params; p && *p;) {
        if (!strncmp(p, key, len) && p[len] == '=') return 1;
        p = strchr(p, ',');
        if (p) p++;
    }
    return 0;
}

sqz_status sqz_gc_parse(sqz_ctx *ctx, const char *spec, const sqz_gc_method **m, sqz_gc_args *args) {
    memset(args, 0, sizeof *args);
    *m = NULL;
    if (!spec || !*spec) spec = "none";
    const char *colon = strchr(spec, ':');
    const size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
    for (int i = 0; i < N_METHODS; i++)
        if (strlen(methods[i]->name) == nlen && !strncmp(methods[i]->name, spec, nlen)) *m = methods[i];
    if (!*m)
        return sqz_fail(ctx, SQZ_ERR_ARG, "--dp %s: unknown gradient compressor (one of: %s)", spec,
                        sqz_gc_names());
    for (const char *p = colon ? colon + 1 : NULL; p && *p;) {
        const char *e = strchr(p, ','), *eq = strchr(p, '=');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!eq || eq > p + len || args->n == SQZ_GC_MAX_ARGS || (size_t)(eq - p) >= sizeof args->key[0] ||
            len - (size_t)(eq - p) - 1 >= sizeof args->val[0] || eq == p)
            return sqz_fail(ctx, SQZ_ERR_ARG, "--dp %s: parameters are key=value, comma separated", spec);
        memcpy(args->key[args->n], p, (size_t)(eq - p));
        memcpy(args->val[args->n], eq + 1, len - (size_t)(eq - p) - 1);
        if (!takes((*m)->params, args->key[args->n]))
            return sqz_fail(ctx, SQZ_ERR_ARG, "--dp %s: %s takes %s, not %s", spec, (*m)->name,
                            (*m)->params && *(*m)->params ? (*m)->params : "no parameters",
                            args->key[args->n]);
        args->n++;
        p = e ? e + 1 : NULL;
    }
    return SQZ_OK;
}
