/* methods.c - the table of quantization methods (quant/method.h), the spec "NAME[:key=value,...]"
 * that picks one and sets its parameters (through core/params.h's one parser), and the public
 * accessors over the table (include/sqz.h). */
#include <string.h>
#include <strings.h>

#include "quant/method.h"

extern const sqz_quant_method sqz_quant_method_rtn;
extern const sqz_quant_method sqz_quant_method_imatrix;
extern const sqz_quant_method sqz_quant_method_gptq;
extern const sqz_quant_method sqz_quant_method_rsq;
extern const sqz_quant_method sqz_quant_method_decoupleq;
extern const sqz_quant_method sqz_quant_method_mixllm;

static const sqz_quant_method *const methods[] = {
    &sqz_quant_method_rtn,
    &sqz_quant_method_imatrix,
    &sqz_quant_method_gptq,
    &sqz_quant_method_rsq,
    &sqz_quant_method_decoupleq,
    &sqz_quant_method_mixllm,
    NULL,
};

const sqz_quant_method *const *sqz_quant_methods(void) { return methods; }

/* The method named by spec's text before ':' (NULL: none). */
static const sqz_quant_method *find(const char *spec) {
    if (!spec) return NULL;
    const char *colon = strchr(spec, ':');
    const size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    for (int i = 0; methods[i]; i++)
        if (strlen(methods[i]->name) == n && !strncmp(methods[i]->name, spec, n)) return methods[i];
    return NULL;
}

sqz_status sqz_quant_method_open(sqz_ctx *ctx, const char *spec, const sqz_quant_method **method,
                                 void **state) {
    *method = NULL;
    *state = NULL;
    const sqz_quant_method *m = find(spec);
    if (!m) {
        char known[128] = "";
        for (int i = 0; methods[i]; i++) {
            strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
            strncat(known, methods[i]->name, sizeof known - strlen(known) - 1);
        }
        const char *colon = spec ? strchr(spec, ':') : NULL;
        return sqz_fail(ctx, SQZ_ERR_ARG, "unknown quantization method '%.*s' (%s)",
                        spec ? (int)(colon ? (size_t)(colon - spec) : strlen(spec)) : 6,
                        spec ? spec : "(null)", known);
    }
    void *s = NULL;
    sqz_status st = m->create(ctx, &s);
    if (st) return st;
    sqz_param p[8];
    const int n = m->params ? m->params(s, p) : 0;
    char buf[256]; /* string values only; no method has one yet */
    const char *colon = strchr(spec, ':');
    if ((st = sqz_params_parse(ctx, "method", m->name, colon ? colon + 1 : NULL, p, n, buf, sizeof buf))) {
        m->destroy(s);
        return st;
    }
    *method = m;
    *state = s;
    return SQZ_OK;
}

const char *sqz_quant_method_name(int i) {
    for (int k = 0; methods[k]; k++)
        if (k == i) return methods[k]->name;
    return NULL;
}

const char *sqz_quant_method_help(int i) {
    for (int k = 0; methods[k]; k++)
        if (k == i) return methods[k]->help;
    return NULL;
}

int sqz_quant_method_needs_calib(const char *spec) {
    const sqz_quant_method *m = find(spec);
    return m ? m->calib : -1;
}

const char *sqz_quant_method_default_type(const char *spec) {
    const sqz_quant_method *m = find(spec);
    return m ? m->default_type : NULL;
}

int sqz_quant_method_takes(const char *spec, const char *key) {
    const sqz_quant_method *m = find(spec);
    if (!m || !key) return -1;
    void *s = NULL;
    if (m->create(NULL, &s)) return -1;
    sqz_param p[8];
    const int n = m->params ? m->params(s, p) : 0;
    int found = 0;
    for (int i = 0; i < n; i++) found |= !strcmp(p[i].key, key);
    m->destroy(s);
    return found;
}

sqz_status sqz_quant_check_preset_type(sqz_quant_run *run) {
    if (!strcasecmp(run->o->type, "dq2"))
        return sqz_fail(run->ctx, SQZ_ERR_ARG, "%s: dq2 comes from --method decoupleq or rtn", run->out_path);
    return SQZ_OK;
}
