/* config.h - a mergekit YAML merge config, parsed with libyaml into what the driver needs:
 * the method, the base model, the models with their parameters, the global parameters, dtype,
 * tokenizer_source. Values may be numbers, booleans, layer gradients (lists of numbers,
 * interpolated across the layers) or lists of {filter: SUBSTRING, value: V} tried in order
 * (a missing or "*" filter matches every tensor), as mergekit evaluates them.
 *
 * Supported keys: merge_method, base_model, models (- model: PATH, parameters: {...}),
 * parameters, dtype, tokenizer_source (base, or a path; "union" is refused), and slices that
 * take whole models: one slice whose sources all have the same layer_range (checked against
 * the models' layer count by the driver), which is how mergekit's slerp examples name the two
 * models. Any other key is an error naming it (not silently ignored). */
#ifndef SQZ_MERGE_CONFIG_H
#define SQZ_MERGE_CONFIG_H

#include "merge/method.h"

typedef struct merge_value merge_value;

typedef struct merge_cond {
    char *filter;     /* NULL: every tensor */
    merge_value *value;
} merge_cond;

struct merge_value {
    enum { MERGE_V_NUM, MERGE_V_LIST, MERGE_V_CONDS } kind;
    double num;
    double *list;     /* MERGE_V_LIST: a gradient */
    int n;            /* list / conds length */
    merge_cond *conds;
};

typedef struct merge_input {
    char *model;                        /* the path as written */
    merge_value *p[SQZ_MP_COUNT];       /* its parameters; NULL: not given */
} merge_input;

typedef struct merge_config {
    char *path;                         /* of the YAML file (messages, relative model paths) */
    char *method;
    char *base;                         /* NULL: none */
    char *dtype;                        /* NULL: not given */
    char *tokenizer_source;             /* NULL: not given */
    merge_input *models;
    int n_models;
    merge_value *g[SQZ_MP_COUNT];       /* global parameters */
    int layer_range[2];                 /* slices' range; -1, -1 when not given */
} merge_config;

sqz_status merge_config_load(sqz_ctx *ctx, const char *path, merge_config **out);
/* text: len bytes of YAML; name is used in messages and to resolve relative paths. */
sqz_status merge_config_parse(sqz_ctx *ctx, const char *text, size_t len, const char *name,
                              merge_config **out);
void merge_config_free(merge_config *c);
void merge_value_free(merge_value *v); /* accepts NULL */

/* v at tensor `tensor` whose layer position is t in [0, 1]: 1 and *out set, or 0 when no
 * filter of v matches (the caller falls back to the next level). */
int merge_value_eval(const merge_value *v, const char *tensor, double t, double *out);

#endif
