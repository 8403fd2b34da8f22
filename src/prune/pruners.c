/* pruners.c - the table of pruners (prune/pruner.h), the spec "NAME[:key=value,...]" that picks
 * one and sets its parameters (core/params.h's one parser), and the public accessors. */
#include <stdlib.h>
#include <string.h>

#include "prune/pruner.h"

extern const sqz_pruner sqz_pruner_magnitude;
extern const sqz_pruner sqz_pruner_wanda;
extern const sqz_pruner sqz_pruner_sparsegpt;

static const sqz_pruner *const pruners[] = {
    &sqz_pruner_magnitude,
    &sqz_pruner_wanda,
    &sqz_pruner_sparsegpt,
    NULL,
};

const sqz_pruner *const *sqz_pruners(void) { return pruners; }

static const sqz_pruner *find(const char *spec) {
    if (!spec) return NULL;
    const char *colon = strchr(spec, ':');
    const size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    for (int i = 0; pruners[i]; i++)
        if (strlen(pruners[i]->name) == n && !strncmp(pruners[i]->name, spec, n)) return pruners[i];
    return NULL;
}

sqz_status sqz_pruner_open(sqz_ctx *ctx, const char *spec, const sqz_pruner **pruner, void **state) {
    *pruner = NULL;
    *state = NULL;
    const sqz_pruner *p = find(spec);
    if (!p) {
        char known[128] = "";
        for (int i = 0; pruners[i]; i++) {
            strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
            strncat(known, pruners[i]->name, sizeof known - strlen(known) - 1);
        }
        const char *colon = spec ? strchr(spec, ':') : NULL;
        return sqz_fail(ctx, SQZ_ERR_ARG, "unknown pruning method '%.*s' (%s)",
                        spec ? (int)(colon ? (size_t)(colon - spec) : strlen(spec)) : 6, spec ? spec : "(null)",
                        known);
    }
    void *s = NULL;
    sqz_status st = p->create ? p->create(ctx, &s) : SQZ_OK;
    if (st) return st;
    sqz_param prm[8];
    const int n = p->params ? p->params(s, prm) : 0;
    char buf[64];
    const char *colon = strchr(spec, ':');
    if ((st = sqz_params_parse(ctx, "pruning method", p->name, colon ? colon + 1 : NULL, prm, n, buf, sizeof buf))) {
        free(s);
        return st;
    }
    *pruner = p;
    *state = s;
    return SQZ_OK;
}

const char *sqz_pruner_name(int i) {
    for (int k = 0; pruners[k]; k++)
        if (k == i) return pruners[k]->name;
    return NULL;
}

const char *sqz_pruner_help(int i) {
    for (int k = 0; pruners[k]; k++)
        if (k == i) return pruners[k]->help;
    return NULL;
}

int sqz_pruner_needs_calib(const char *spec) {
    const sqz_pruner *p = find(spec);
    return p ? p->calib : -1;
}
