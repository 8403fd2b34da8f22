/* methods.c - the table of merge methods (one row each, one file each) and the parameter
 * names a config may use. The driver (merge.c) and the CLI list and find methods here only. */
#include <string.h>

#include "merge/method.h"

static const sqz_merge_method *const methods[] = {
    &sqz_merge_linear,      &sqz_merge_task_arithmetic, &sqz_merge_ties,
    &sqz_merge_dare_linear, &sqz_merge_dare_ties,       &sqz_merge_breadcrumbs,
    &sqz_merge_breadcrumbs_ties, &sqz_merge_della,      &sqz_merge_della_linear,
    &sqz_merge_slerp,       &sqz_merge_model_stock,     &sqz_merge_consensus,
    &sqz_merge_tall_masks,  &sqz_merge_opcm,            &sqz_merge_pleas,
    &sqz_merge_otfusion,
};

static const char *const param_names[SQZ_MP_COUNT] = {
    [SQZ_MP_WEIGHT] = "weight",       [SQZ_MP_DENSITY] = "density",
    [SQZ_MP_GAMMA] = "gamma",         [SQZ_MP_EPSILON] = "epsilon",
    [SQZ_MP_LAMBDA] = "lambda",       [SQZ_MP_T] = "t",
    [SQZ_MP_NORMALIZE] = "normalize", [SQZ_MP_RESCALE] = "rescale",
    [SQZ_MP_INT8_MASK] = "int8_mask", [SQZ_MP_FILTER_WISE] = "filter_wise",
    [SQZ_MP_K] = "k",                 [SQZ_MP_MASK_LAMBDA] = "mask_lambda",
    [SQZ_MP_ALPHA] = "alpha",         [SQZ_MP_BUDGET] = "budget",
    [SQZ_MP_DAMP] = "damp",           [SQZ_MP_USE_TIES] = "use_ties",
    [SQZ_MP_REG] = "reg",             [SQZ_MP_EXACT] = "exact",
};

const char *sqz_merge_param_name(int p) { return p >= 0 && p < SQZ_MP_COUNT ? param_names[p] : NULL; }

const sqz_merge_method *sqz_merge_method_at(int i) {
    return i >= 0 && i < (int)(sizeof methods / sizeof *methods) ? methods[i] : NULL;
}

const sqz_merge_method *sqz_merge_method_find(const char *name) {
    for (int i = 0; sqz_merge_method_at(i); i++)
        if (name && !strcmp(methods[i]->name, name)) return methods[i];
    return NULL;
}
