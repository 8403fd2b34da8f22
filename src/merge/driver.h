/* driver.h - internal to src/merge: what the driver's two files share. inputs.c lists the
 * tensors (HF names, in HF order), picks, loads and checks the inputs and reads each input's
 * tensor as f32; merge.c resolves the parameters, runs the method and writes the output. */
#ifndef SQZ_MERGE_DRIVER_H
#define SQZ_MERGE_DRIVER_H

#include <stddef.h>

#include "io/safetensors.h"
#include "merge/config.h"
#include "merge/method.h"
#include "model/model.h"

typedef struct tensor_spec {
    const char *name;  /* HF name after "model.layers.N." (per layer) or whole */
    size_t at;         /* offsetof the sqz_tensor in sqz_layer_weights / sqz_model */
    int rope;          /* 1: q (n_heads), 2: k (n_kv_heads): rows in RoPE pairs */
    int is_vec;
} tensor_spec;

typedef struct out_tensor {
    char name[96];
    int layer;        /* -1 before the blocks, n_layers after */
    const tensor_spec *spec;
    size_t model_at;  /* for tensors outside the blocks: offsetof in sqz_model */
    int64_t rows, cols;
    double t;         /* layer position for gradients */
} out_tensor;

typedef struct merge_run {
    sqz_ctx *ctx;
    const merge_config *cfg;
    const sqz_merge_method *method;
    int n_in;          /* inputs: [0] the base when the method takes one */
    char **paths;      /* [n_in] resolved paths */
    int *entry;        /* [n_in] index in cfg->models, -1 for a base not listed there */
    sqz_model **models;
    out_tensor *list;
    int n_list;
    /* sqz_merge_extract: the task rebuilt (-1: a merge), and the tall_masks folder's file
     * (input 1 is that folder's model, input 0 the base) */
    int extract;
    sqz_safetensors *mask_st;
    /* tuning mask_lambda: task tune_task - 1 rebuilt straight from the inputs at mask_lambda
     * tune_lambda (the method's extract()); 0: a merge */
    int tune_task;
    double tune_lambda;
    const sqz_merge_opts *opts; /* the caller's options (pleas: the calibration text) */
} merge_run;

/* The view of tensor o in model m. */
const sqz_tensor *merge_view_of(const sqz_model *m, const out_tensor *o);
/* The tensors of m, HF names and order (embeddings, the blocks, final norm, lm_head unless
 * tied); 0, or -1 when out of memory. */
int merge_build_list(const sqz_model *m, out_tensor **out, int *n_out);
/* A path as given when it exists, else relative to the config's folder (malloc'ed). */
char *merge_resolve_path(const char *cfg_path, const char *p);
/* r->paths / entry from the config: the base first (methods that take one), then the models. */
sqz_status merge_pick_inputs(merge_run *r);
/* Every input like input 0: architecture and sizes, computable tensor types, vocabulary. */
sqz_status merge_check_inputs(merge_run *r);
/* Input i's tensor o as f32 rows in HF's order into dst, its pages given back; 0, or -1 when
 * out of memory. */
int merge_load_slab(const merge_run *r, int i, const out_tensor *o, float *dst);
/* The same for any model m of the inputs' architecture (continual.c's running merge). */
int merge_load_model_slab(sqz_ctx *ctx, const sqz_model *m, const out_tensor *o, float *dst);

/* 1 when the last component of path (a folder or file name) contains name (eval.c). */
int merge_path_names(const char *path, const char *name);

/* merge.c's pieces that continual.c shares. */
/* The tokenizer.json the output gets (tokenizer_source, else the base's); NULL with an error. */
char *merge_pick_tokenizer(merge_run *r);
/* config.json's text of an HF folder (or a config.json path), else NULL (len set). */
char *merge_source_config_json(sqz_ctx *ctx, const char *path, size_t *len);
/* 1 for a tensor stored as a vector (norms). */
int merge_is_vec(const out_tensor *o);
/* Loads r's inputs, lists the tensors, checks the inputs agree. */
sqz_status merge_load_inputs(merge_run *r);
/* Frees what r holds (the config too). */
void merge_end_run(merge_run *r);
/* Finds cfg's method, checks its parameters, picks the inputs; r takes cfg. */
sqz_status merge_begin_run_cfg(merge_run *r, merge_config *cfg);

/* continual.c: the continual method (opcm) over r's models in the config's order, written as
 * an HF folder (the running state's folder: the merged model and opcm.json) at dir, which
 * must not exist or be empty. */
sqz_status merge_continual_run(merge_run *r, const char *dir, sqz_type type, sqz_merge_result *res);

#endif
