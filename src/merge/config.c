/* config.c - mergekit YAML configs through libyaml's document API; see config.h. Every error
 * names the file, the line (libyaml's marks count from 0; messages from 1) and the key. */
#include "merge/config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "io/file.h"

#define CONFIG_MAX_BYTES ((size_t)1 << 20)

typedef struct cfg_parser {
    sqz_ctx *ctx;
    const char *name;
    yaml_document_t doc;
} cfg_parser;

static sqz_status cfg_err(cfg_parser *p, const yaml_node_t *n, const char *fmt, const char *a,
                          const char *b) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    return sqz_fail(p->ctx, SQZ_ERR_FORMAT, "%s:%lu: %s", p->name,
                    n ? (unsigned long)n->start_mark.line + 1 : 0ul, msg);
}

static yaml_node_t *node(cfg_parser *p, int id) { return yaml_document_get_node(&p->doc, id); }

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A number or boolean scalar. */
static int scalar_num(const yaml_node_t *n, double *out) {
    const char *s = scalar(n);
    if (!s) return 0;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes")) return *out = 1, 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no")) return *out = 0, 1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static char *dup_scalar(cfg_parser *p, const yaml_node_t *n, const char *key, sqz_status *st) {
    const char *s = scalar(n);
    if (!s) {
        *st = cfg_err(p, n, "%s must be a string", key, NULL);
        return NULL;
    }
    char *d = strdup(s);
    if (!d) *st = sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory");
    return d;
}

void merge_value_free(merge_value *v) {
    if (!v) return;
    free(v->list);
    for (int i = 0; i < v->n && v->conds; i++) {
        free(v->conds[i].filter);
        merge_value_free(v->conds[i].value);
    }
    free(v->conds);
    free(v);
}

/* A parameter value: a number, a gradient, or a list of {filter, value}. */
static sqz_status parse_value(cfg_parser *p, const yaml_node_t *n, const char *key, merge_value **out) {
    merge_value *v = calloc(1, sizeof *v);
    if (!v) return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory");
    *out = v;
    if (n->type == YAML_SCALAR_NODE) {
        v->kind = MERGE_V_NUM;
        return scalar_num(n, &v->num) ? SQZ_OK
                                      : cfg_err(p, n, "parameter %s: '%s' is not a number", key, scalar(n));
    }
    if (n->type != YAML_SEQUENCE_NODE) return cfg_err(p, n, "parameter %s: not a number or a list", key, NULL);
    const int len = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (len == 0) return cfg_err(p, n, "parameter %s: empty list", key, NULL);
    const yaml_node_t *first = node(p, n->data.sequence.items.start[0]);
    if (first && first->type == YAML_MAPPING_NODE) {
        v->kind = MERGE_V_CONDS;
        if (!(v->conds = calloc((size_t)len, sizeof *v->conds)))
            return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory");
        v->n = len;
        for (int i = 0; i < len; i++) {
            const yaml_node_t *c = node(p, n->data.sequence.items.start[i]);
            if (!c || c->type != YAML_MAPPING_NODE)
                return cfg_err(p, c, "parameter %s: every entry must be {filter, value}", key, NULL);
            for (yaml_node_pair_t *kv = c->data.mapping.pairs.start; kv < c->data.mapping.pairs.top; kv++) {
                const char *k = scalar(node(p, kv->key));
                const yaml_node_t *val = node(p, kv->value);
                sqz_status st = SQZ_OK;
                if (k && !strcmp(k, "filter")) {
                    if (!(v->conds[i].filter = dup_scalar(p, val, "filter", &st))) return st;
                    if (!strcmp(v->conds[i].filter, "*")) free(v->conds[i].filter), v->conds[i].filter = NULL;
                } else if (k && !strcmp(k, "value")) {
                    if ((st = parse_value(p, val, key, &v->conds[i].value))) return st;
                } else {
                    return cfg_err(p, val, "parameter %s: unknown key '%s' (filter, value)", key, k);
                }
            }
            if (!v->conds[i].value) return cfg_err(p, c, "parameter %s: an entry without value", key, NULL);
        }
        return SQZ_OK;
    }
    v->kind = MERGE_V_LIST;
    if (!(v->list = malloc((size_t)len * sizeof *v->list))) return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory");
    v->n = len;
    for (int i = 0; i < len; i++) {
        const yaml_node_t *e = node(p, n->data.sequence.items.start[i]);
        if (!scalar_num(e, &v->list[i]))
            return cfg_err(p, e, "parameter %s: gradient entries must be numbers", key, NULL);
    }
    return SQZ_OK;
}

int merge_value_eval(const merge_value *v, const char *tensor, double t, double *out) {
    if (!v) return 0;
    switch (v->kind) {
    case MERGE_V_NUM: *out = v->num; return 1;
    case MERGE_V_LIST: { /* mergekit's gradient: linear interpolation over evenly spaced points */
        const double x = (t < 0 ? 0 : t > 1 ? 1 : t) * (v->n - 1);
        int i0 = (int)floor(x);
        if (i0 > v->n - 1) i0 = v->n - 1;
        const int i1 = i0 + 1 < v->n ? i0 + 1 : i0;
        const double f = x - i0;
        *out = (1 - f) * v->list[i0] + f * v->list[i1];
        return 1;
    }
    case MERGE_V_CONDS:
        for (int i = 0; i < v->n; i++)
            if (!v->conds[i].filter || (tensor && strstr(tensor, v->conds[i].filter)))
                return merge_value_eval(v->conds[i].value, tensor, t, out);
        return 0;
    }
    return 0;
}

/* A `parameters` mapping into slots p[]. */
static sqz_status parse_params(cfg_parser *p, const yaml_node_t *n, merge_value **slots) {
    if (n->type != YAML_MAPPING_NODE) return cfg_err(p, n, "parameters must be a mapping", NULL, NULL);
    for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top; kv++) {
        const char *k = scalar(node(p, kv->key));
        int slot = -1;
        for (int i = 0; k && sqz_merge_param_name(i); i++)
            if (!strcmp(k, sqz_merge_param_name(i))) slot = i;
        if (slot < 0) {
            char known[256] = "";
            for (int i = 0; sqz_merge_param_name(i); i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                         sqz_merge_param_name(i));
            return cfg_err(p, node(p, kv->key), "unknown parameter '%s' (sqz knows %s)", k, known);
        }
        if (slots[slot]) return cfg_err(p, node(p, kv->key), "parameter %s given twice", k, NULL);
        sqz_status st = parse_value(p, node(p, kv->value), k, &slots[slot]);
        if (st) return st;
    }
    return SQZ_OK;
}

/* One entry of `models` or of a slice's `sources`. */
static sqz_status parse_model(cfg_parser *p, merge_config *c, const yaml_node_t *n, int *range) {
    if (n->type != YAML_MAPPING_NODE) return cfg_err(p, n, "each model must be a mapping with 'model'", NULL, NULL);
    merge_input *m = realloc(c->models, (size_t)(c->n_models + 1) * sizeof *m);
    if (!m) return sqz_fail(p->ctx, SQZ_ERR_NOMEM, "out of memory");
    c->models = m;
    m = &c->models[c->n_models++];
    memset(m, 0, sizeof *m);
    sqz_status st = SQZ_OK;
    for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top && !st; kv++) {
        const char *k = scalar(node(p, kv->key));
        const yaml_node_t *v = node(p, kv->value);
        if (k && !strcmp(k, "model")) {
            if (!m->model && !(m->model = dup_scalar(p, v, "model", &st))) return st;
        } else if (k && !strcmp(k, "parameters")) {
            st = parse_params(p, v, m->p);
        } else if (k && !strcmp(k, "layer_range") && range) {
            double a, b;
            if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2 ||
                !scalar_num(node(p, v->data.sequence.items.start[0]), &a) ||
                !scalar_num(node(p, v->data.sequence.items.start[1]), &b))
                return cfg_err(p, v, "layer_range must be [first, end]", NULL, NULL);
            if (range[0] >= 0 && (range[0] != (int)a || range[1] != (int)b))
                return cfg_err(p, v, "sources of different layer_range (sqz merges whole models: "
                               "slices that stack or cut layers are not supported)", NULL, NULL);
            range[0] = (int)a, range[1] = (int)b;
        } else {
            return cfg_err(p, v, "unsupported key '%s' in a model entry", k, NULL);
        }
    }
    if (!st && !m->model) st = cfg_err(p, n, "a model entry without 'model'", NULL, NULL);
    return st;
}

static sqz_status parse_root(cfg_parser *p, merge_config *c, const yaml_node_t *root) {
    if (!root || root->type != YAML_MAPPING_NODE)
        return cfg_err(p, root, "a merge config must be a YAML mapping", NULL, NULL);
    sqz_status st = SQZ_OK;
    int have_models = 0, have_slices = 0;
    for (yaml_node_pair_t *kv = root->data.mapping.pairs.start; kv < root->data.mapping.pairs.top && !st; kv++) {
        const char *k = scalar(node(p, kv->key));
        const yaml_node_t *v = node(p, kv->value);
        char **str = NULL;
        if (!k) return cfg_err(p, v, "keys must be strings", NULL, NULL);
        if (!strcmp(k, "merge_method")) str = &c->method;
        else if (!strcmp(k, "base_model")) str = &c->base;
        else if (!strcmp(k, "dtype")) str = &c->dtype;
        else if (!strcmp(k, "tokenizer_source")) str = &c->tokenizer_source;
        if (str) {
            if (*str) return cfg_err(p, v, "%s given twice", k, NULL);
            *str = dup_scalar(p, v, k, &st);
        } else if (!strcmp(k, "parameters")) {
            st = parse_params(p, v, c->g);
        } else if (!strcmp(k, "models") || !strcmp(k, "slices")) {
            const int slices = k[0] == 's';
            if (v->type != YAML_SEQUENCE_NODE) return cfg_err(p, v, "%s must be a list", k, NULL);
            if (slices && v->data.sequence.items.top - v->data.sequence.items.start != 1)
                return cfg_err(p, v, "only one slice of whole models is supported (layer "
                               "stacking is not)", NULL, NULL);
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top && !st; it++) {
                const yaml_node_t *e = node(p, *it);
                if (!slices) {
                    st = parse_model(p, c, e, NULL);
                    continue;
                }
                if (e->type != YAML_MAPPING_NODE) return cfg_err(p, e, "a slice must be a mapping", NULL, NULL);
                for (yaml_node_pair_t *s = e->data.mapping.pairs.start; s < e->data.mapping.pairs.top && !st; s++) {
                    const char *sk = scalar(node(p, s->key));
                    const yaml_node_t *sv = node(p, s->value);
                    if (!sk || strcmp(sk, "sources") || sv->type != YAML_SEQUENCE_NODE)
                        return cfg_err(p, sv, "a slice takes only a list 'sources' (not '%s')", sk, NULL);
                    for (yaml_node_item_t *si = sv->data.sequence.items.start; si < sv->data.sequence.items.top && !st; si++)
                        st = parse_model(p, c, node(p, *si), c->layer_range);
                }
            }
            have_models |= !slices, have_slices |= slices;
        } else {
            return cfg_err(p, v, "unsupported key '%s' (sqz reads merge_method, base_model, models, "
                           "slices, parameters, dtype, tokenizer_source)", k, NULL);
        }
    }
    if (st) return st;
    if (have_models && have_slices) return cfg_err(p, root, "give models or slices, not both", NULL, NULL);
    if (!c->method) return cfg_err(p, root, "no merge_method", NULL, NULL);
    if (c->n_models == 0) return cfg_err(p, root, "no models", NULL, NULL);
    return SQZ_OK;
}

sqz_status merge_config_parse(sqz_ctx *ctx, const char *text, size_t len, const char *name,
                              merge_config **out) {
    *out = NULL;
    merge_config *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(name ? name : "<config>"))) {
        free(c);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    c->layer_range[0] = c->layer_range[1] = -1;
    cfg_parser p = { .ctx = ctx, .name = c->path };
    yaml_parser_t yp;
    if (!yaml_parser_initialize(&yp)) {
        merge_config_free(c);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
    sqz_status st;
    if (!yaml_parser_load(&yp, &p.doc)) {
        st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s:%lu: %s", c->path, (unsigned long)yp.problem_mark.line + 1,
                      yp.problem ? yp.problem : "not YAML");
        yaml_parser_delete(&yp);
        merge_config_free(c);
        return st;
    }
    st = parse_root(&p, c, yaml_document_get_root_node(&p.doc));
    yaml_document_delete(&p.doc);
    yaml_parser_delete(&yp);
    if (st) {
        merge_config_free(c);
        return st;
    }
    *out = c;
    return SQZ_OK;
}

sqz_status merge_config_load(sqz_ctx *ctx, const char *path, merge_config **out) {
    char *text = NULL;
    size_t len = 0;
    sqz_status st = sqz_file_read_all(ctx, path, CONFIG_MAX_BYTES, &text, &len);
    if (st) return st;
    st = merge_config_parse(ctx, text, len, path, out);
    free(text);
    return st;
}

void merge_config_free(merge_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n_models; i++) {
        free(c->models[i].model);
        for (int k = 0; k < SQZ_MP_COUNT; k++) merge_value_free(c->models[i].p[k]);
    }
    for (int k = 0; k < SQZ_MP_COUNT; k++) merge_value_free(c->g[k]);
    free(c->models);
    free(c->path);
    free(c->method);
    free(c->base);
    free(c->dtype);
    free(c->tokenizer_source);
    free(c);
}
