/* export_hf.c - a Hugging Face folder (config.json, model.safetensors, tokenizer.json) written
 * into a temporary folder beside the target and renamed when complete; see export_hf.h.
 * model.safetensors goes through the io layer's streaming writer (sqz_st_writer), so the
 * producer's memory is what it puts at a time. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "model/export_hf.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"
#include "io/safetensors.h"
#include "model/card.h"

#define HF_MAX_JSON ((size_t)256 << 20) /* bytes of a tokenizer.json we agree to copy */

struct sqz_hf_export {
    sqz_ctx *ctx;
    char *out;          /* the target folder */
    char *tmp;          /* the temporary folder once begun; NULL before */
    char *config_json;  /* source config.json text, or NULL */
    sqz_config cfg;     /* used when config_json is NULL and has_cfg */
    int has_cfg;
    char *tokenizer;    /* path to copy, or NULL */
    sqz_st_writer *st;
    char *readme;       /* the model card (README.md) once given; NULL: a card of sqz alone */
    size_t n_mat[3];    /* declared matrices per dtype (f32, f16, bf16): torch_dtype */
    int finished;
};

/* 1 if path is a folder with no entries. */
static int dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

sqz_status sqz_hf_export_new(sqz_ctx *ctx, const char *out_dir, sqz_hf_export **out) {
    *out = NULL;
    if (!out_dir || !*out_dir) return sqz_fail(ctx, SQZ_ERR_ARG, "HF export: empty output path");
    if (sqz_path_exists(out_dir) && !(sqz_path_is_dir(out_dir) && dir_is_empty(out_dir)))
        return sqz_fail(ctx, SQZ_ERR_IO, "%s: exists and is not an empty folder (a Hugging Face "
                        "folder is written whole: remove it or choose another name)", out_dir);
    char *parent = sqz_path_dirname(out_dir);
    if (!parent) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    const int parent_ok = sqz_path_is_dir(parent);
    sqz_status st = parent_ok ? SQZ_OK
                              : sqz_fail(ctx, SQZ_ERR_IO, "%s: folder %s does not exist", out_dir, parent);
    free(parent);
    if (st) return st;
    sqz_hf_export *e = calloc(1, sizeof *e);
    if (!e || !(e->out = strdup(out_dir))) {
        free(e);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    /* the folder name without trailing slashes: OUT.tmp.XXXXXX must sit beside it */
    for (size_t n = strlen(e->out); n > 1 && e->out[n - 1] == '/'; n--) e->out[n - 1] = 0;
    e->ctx = ctx;
    if ((st = sqz_st_writer_new(ctx, &e->st))) {
        sqz_hf_export_free(e);
        return st;
    }
    *out = e;
    return SQZ_OK;
}

/* Removes the temporary folder and what it holds (only files: it holds nothing else). */
static void remove_tmp(sqz_hf_export *e) {
    if (!e->tmp) return;
    DIR *d = opendir(e->tmp);
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
        char *p = sqz_path_join(e->tmp, ent->d_name);
        if (p) unlink(p);
        free(p);
    }
    if (d) closedir(d);
    rmdir(e->tmp);
    free(e->tmp);
    e->tmp = NULL;
}

void sqz_hf_export_free(sqz_hf_export *e) {
    if (!e) return;
    sqz_st_writer_free(e->st); /* removes an unfinished model.safetensors temporary */
    if (!e->finished) remove_tmp(e);
    free(e->tmp);
    free(e->out);
    free(e->config_json);
    free(e->tokenizer);
    free(e->readme);
    free(e);
}

/* The folder's name, as the card's title. */
static const char *folder_name(const sqz_hf_export *e) {
    const char *s = strrchr(e->out, '/');
    return s && s[1] ? s + 1 : e->out;
}

sqz_status sqz_hf_export_card(sqz_hf_export *e, const sqz_model_card *card) {
    char *text = sqz_card_readme(card, folder_name(e));
    if (!text) return sqz_fail(e->ctx, SQZ_ERR_NOMEM, "out of memory");
    free(e->readme);
    e->readme = text;
    return SQZ_OK;
}

sqz_status sqz_hf_export_config_json(sqz_hf_export *e, const char *json, size_t len) {
    free(e->config_json);
    e->config_json = malloc(len + 1);
    if (!e->config_json) return sqz_fail(e->ctx, SQZ_ERR_NOMEM, "out of memory");
    memcpy(e->config_json, json, len);
    e->config_json[len] = 0;
    return SQZ_OK;
}

sqz_status sqz_hf_export_config(sqz_hf_export *e, const sqz_config *cfg) {
    e->cfg = *cfg;
    e->has_cfg = 1;
    return SQZ_OK;
}

sqz_status sqz_hf_export_tokenizer(sqz_hf_export *e, const char *path) {
    free(e->tokenizer);
    e->tokenizer = path ? strdup(path) : NULL;
    return path && !e->tokenizer ? sqz_fail(e->ctx, SQZ_ERR_NOMEM, "out of memory") : SQZ_OK;
}

sqz_status sqz_hf_export_declare(sqz_hf_export *e, const char *name, sqz_type type, int n_dims,
                                 const int64_t *shape) {
    sqz_status st = sqz_st_writer_declare(e->st, name, type, n_dims, shape, NULL);
    if (!st && n_dims >= 2 && type != SQZ_ST_TYPE_U8) e->n_mat[type == SQZ_TYPE_F32 ? 0 : type == SQZ_TYPE_F16 ? 1 : 2]++;
    return st;
}

/* The dtype of most declared matrices, as config.json's torch_dtype names it. */
static const char *torch_dtype(const sqz_hf_export *e) {
    const char *names[3] = { "float32", "float16", "bfloat16" };
    int best = 0;
    for (int i = 1; i < 3; i++)
        if (e->n_mat[i] > e->n_mat[best]) best = i;
    return names[best];
}

/* config.json from the hyper-parameters, with the keys transformers' Llama / Mistral / Qwen2
 * configs read (and sqz's hf_config.c). */
static cJSON *config_from_cfg(const sqz_config *c) {
    static const char *arch[] = { "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM" };
    static const char *type[] = { "llama", "mistral", "qwen2" };
    const int a = c->arch == SQZ_ARCH_MISTRAL ? 1 : c->arch == SQZ_ARCH_QWEN2 ? 2 : 0;
    cJSON *j = cJSON_CreateObject(), *archs = cJSON_CreateArray();
    if (!j || !archs) {
        cJSON_Delete(j), cJSON_Delete(archs);
        return NULL;
    }
    cJSON_AddItemToArray(archs, cJSON_CreateString(arch[a]));
    cJSON_AddItemToObject(j, "architectures", archs);
    cJSON_AddStringToObject(j, "model_type", type[a]);
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    if (c->max_seq_len > 0) cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_seq_len);
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->norm_eps);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings);
    if (a != 2) cJSON_AddBoolToObject(j, "attention_bias", c->has_qkv_bias);
    if (c->bos_id >= 0) cJSON_AddNumberToObject(j, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0) cJSON_AddNumberToObject(j, "eos_token_id", c->eos_id);
    return j;
}

static sqz_status write_file(sqz_hf_export *e, const char *name, const char *data, size_t len) {
    char *p = sqz_path_join(e->tmp, name);
    if (!p) return sqz_fail(e->ctx, SQZ_ERR_NOMEM, "out of memory");
    FILE *f = fopen(p, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    const int err = errno;
    if (f && fclose(f) != 0) ok = 0;
    sqz_status st = ok ? SQZ_OK
                       : sqz_fail(e->ctx, SQZ_ERR_IO, "%s: cannot write %s: %s", e->out, name, strerror(err));
    free(p);
    return st;
}

static sqz_status write_config(sqz_hf_export *e) {
    cJSON *j = NULL;
    if (e->config_json) {
        j = cJSON_Parse(e->config_json);
        if (!j || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            return sqz_fail(e->ctx, SQZ_ERR_FORMAT, "%s: the source config.json is not a JSON object", e->out);
        }
    } else if (e->has_cfg) {
        j = config_from_cfg(&e->cfg);
    } else {
        return sqz_fail(e->ctx, SQZ_ERR_ARG, "%s: no config.json given to the export", e->out);
    }
    if (!j) return sqz_fail(e->ctx, SQZ_ERR_NOMEM, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "torch_dtype");
    cJSON_AddStringToObject(j, "torch_dtype", torch_dtype(e));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return sqz_fail(e->ctx, SQZ_ERR_NOMEM, "out of memory");
    sqz_status st = write_file(e, "config.json", text, strlen(text));
    cJSON_free(text);
    return st;
}

sqz_status sqz_hf_export_begin(sqz_hf_export *e) {
    if (e->tmp) return sqz_fail(e->ctx, SQZ_ERR_ARG, "%s: export already begun", e->out);
    const size_t n = strlen(e->out);
    e->tmp = malloc(n + 16);
    if (!e->tmp) return sqz_fail(e->ctx, SQZ_ERR_NOMEM, "out of memory");
    memcpy(e->tmp, e->out, n);
    memcpy(e->tmp + n, ".tmp.XXXXXX", 12);
    if (!mkdtemp(e->tmp)) {
        const int err = errno;
        free(e->tmp);
        e->tmp = NULL;
        return sqz_fail(e->ctx, SQZ_ERR_IO, "%s: cannot create a temporary folder beside it: %s",
                        e->out, strerror(err));
    }
    sqz_status st = write_config(e);
    if (!st && e->tokenizer) {
        char *buf = NULL;
        size_t len = 0;
        st = sqz_file_read_all(e->ctx, e->tokenizer, HF_MAX_JSON, &buf, &len);
        if (!st) st = write_file(e, "tokenizer.json", buf, len);
        free(buf);
    }
    char *weights = st ? NULL : sqz_path_join(e->tmp, "model.safetensors");
    if (!st && !weights) st = sqz_fail(e->ctx, SQZ_ERR_NOMEM, "out of memory");
    if (!st) st = sqz_st_writer_begin(e->st, weights);
    free(weights);
    if (st) remove_tmp(e);
    return st;
}

sqz_status sqz_hf_export_put_f32(sqz_hf_export *e, const float *x, size_t n) {
    if (!e->tmp) return sqz_fail(e->ctx, SQZ_ERR_ARG, "%s: put before begin", e->out);
    return sqz_st_writer_put_f32(e->st, x, n);
}

sqz_status sqz_hf_export_put(sqz_hf_export *e, const void *data, size_t n) {
    if (!e->tmp) return sqz_fail(e->ctx, SQZ_ERR_ARG, "%s: put before begin", e->out);
    return sqz_st_writer_put(e->st, data, n);
}

sqz_status sqz_hf_export_finish(sqz_hf_export *e) {
    if (!e->tmp) return sqz_fail(e->ctx, SQZ_ERR_ARG, "%s: finish before begin", e->out);
    sqz_status st = sqz_st_writer_finish(e->st);
    /* the card goes in with the weights: a folder without its README.md is never renamed in */
    if (!st && !e->readme) st = sqz_hf_export_card(e, &(sqz_model_card){ 0 });
    if (!st) st = write_file(e, "README.md", e->readme, strlen(e->readme));
    if (!st && chmod(e->tmp, 0755) != 0) /* mkdtemp made it 0700 */
        st = sqz_fail(e->ctx, SQZ_ERR_IO, "%s: chmod failed: %s", e->out, strerror(errno));
    if (!st && sqz_path_exists(e->out) && rmdir(e->out) != 0) /* an empty folder: replaced */
        st = sqz_fail(e->ctx, SQZ_ERR_IO, "%s: cannot replace it: %s", e->out, strerror(errno));
    if (!st && rename(e->tmp, e->out) != 0)
        st = sqz_fail(e->ctx, SQZ_ERR_IO, "%s: rename failed: %s", e->out, strerror(errno));
    if (st) {
        remove_tmp(e);
        return st;
    }
    e->finished = 1;
    return SQZ_OK;
}
