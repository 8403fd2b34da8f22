/* continual.c - the continual merge (opcm, see opcm.h): the running state and the passes.
 *
 * The state is a folder: an HF model folder holding the running merge (config.json,
 * model.safetensors, tokenizer.json; sqz runs it like any model) and opcm.json, what the method
 * needs besides: {"method": "opcm", "base": PATH, "alpha": A, "n_models": n,
 * "task_vector_norm_sum": sum_t ||tau_t||, "lambda": lambda_n, "models": [PATH, ...]}.
 *
 * One step adds model x: pass 1 walks the tensors (base, running merge and x as f32 slabs, the
 * inputs' pages given back), projects x's task vector (2-D tensors), forms
 * U = lambda Delta + tau' and its norm, and spools U to an unlinked temporary file beside the
 * output; pass 2 reads U back and writes base + U / lambda_new. The first model is written as
 * it is (Delta = tau_1, lambda = 1) in one pass. Memory: four slabs of the largest tensor plus
 * the SVD's double-precision work (about 7 x the largest matrix in doubles), whatever the
 * number of models; disk: one f32 model for the spool. The new state is written into a
 * temporary folder beside the old one and swapped in by two renames when complete; the old
 * one is then removed. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"
#include "merge/driver.h"
#include "merge/opcm.h"
#include "model/export_hf.h"

#define STATE_FILE "opcm.json"

typedef struct opcm_state {
    double alpha;
    int n;           /* models merged */
    double norm_sum; /* sum of their task vectors' norms */
    double lambda;   /* lambda_n */
    cJSON *models;   /* their paths (an array) */
} opcm_state;

/* Removes a state folder we wrote: its files, then the folder. */
static void remove_state_dir(const char *dir) {
    const char *files[] = { "config.json", "model.safetensors", "tokenizer.json", "README.md", STATE_FILE };
    for (int i = 0; i < 5; i++) {
        char *p = sqz_path_join(dir, files[i]);
        if (p) unlink(p);
        free(p);
    }
    rmdir(dir);
}

/* A fresh empty folder beside path, named PATH.TAG.XXXXXX (malloc'ed), or NULL with an error. */
static char *temp_dir_beside(sqz_ctx *ctx, const char *path, const char *tag) {
    const size_t n = strlen(path);
    char *d = malloc(n + strlen(tag) + 10);
    if (!d) {
        sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sprintf(d, "%s.%s.XXXXXX", path, tag);
    if (!mkdtemp(d)) {
        sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot create a temporary folder beside it (%s)", path, strerror(errno));
        free(d);
        return NULL;
    }
    return d;
}

static char *abs_path(const char *p) {
    char buf[PATH_MAX];
    return realpath(p, buf) ? strdup(buf) : strdup(p);
}

/* Writes opcm.json into dir (a temporary name, then renamed). */
static sqz_status write_state(sqz_ctx *ctx, const char *dir, const char *base, const opcm_state *s) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    cJSON_AddStringToObject(j, "method", "opcm");
    cJSON_AddStringToObject(j, "base", base);
    cJSON_AddNumberToObject(j, "alpha", s->alpha);
    cJSON_AddNumberToObject(j, "n_models", s->n);
    cJSON_AddNumberToObject(j, "task_vector_norm_sum", s->norm_sum);
    cJSON_AddNumberToObject(j, "lambda", s->lambda);
    cJSON_AddItemReferenceToObject(j, "models", s->models);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char *path = sqz_path_join(dir, STATE_FILE), *tmp = path ? malloc(strlen(path) + 8) : NULL;
    sqz_status st = SQZ_OK;
    if (!text || !path || !tmp) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    } else {
        sprintf(tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "wb");
        const size_t len = strlen(text);
        const int ok = f && fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
        if (f && fclose(f) != 0) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot write", tmp);
        else if (!ok) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot write", tmp);
        else if (rename(tmp, path) != 0) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot rename to %s", tmp, path);
        if (st) unlink(tmp);
    }
    free(text);
    free(path);
    free(tmp);
    return st;
}

/* Reads dir's opcm.json: the state and the base's path (malloc'ed). */
static sqz_status read_state(sqz_ctx *ctx, const char *dir, opcm_state *s, char **base) {
    char *path = sqz_path_join(dir, STATE_FILE), *text = NULL;
    size_t len = 0;
    if (!path) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    if (!sqz_path_exists(path)) {
        sqz_status st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: not a running opcm merge (no %s): start one with "
                                 "sqz merge CONFIG.yaml -o %s, merge_method: opcm", dir, STATE_FILE, dir);
        free(path);
        return st;
    }
    sqz_status st = sqz_file_read_all(ctx, path, (size_t)64 << 20, &text, &len);
    cJSON *j = st ? NULL : cJSON_ParseWithLength(text, len);
    if (!st) {
        const cJSON *m = cJSON_GetObjectItem(j, "method"), *b = cJSON_GetObjectItem(j, "base"),
                    *a = cJSON_GetObjectItem(j, "alpha"), *n = cJSON_GetObjectItem(j, "n_models"),
                    *ns = cJSON_GetObjectItem(j, "task_vector_norm_sum"), *l = cJSON_GetObjectItem(j, "lambda"),
                    *ms = cJSON_GetObjectItem(j, "models");
        if (!j || !cJSON_IsString(m) || strcmp(m->valuestring, "opcm") || !cJSON_IsString(b) ||
            !cJSON_IsNumber(a) || !cJSON_IsNumber(n) || n->valueint < 1 || !cJSON_IsNumber(ns) ||
            !cJSON_IsNumber(l) || !(l->valuedouble > 0) || !cJSON_IsArray(ms)) {
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: not an opcm state (method, base, alpha, n_models, "
                          "task_vector_norm_sum, lambda, models)", path);
        } else {
            s->alpha = a->valuedouble;
            s->n = n->valueint;
            s->norm_sum = ns->valuedouble;
            s->lambda = l->valuedouble;
            s->models = cJSON_Duplicate(ms, 1);
            *base = strdup(b->valuestring);
            if (!s->models || !*base) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        }
    }
    cJSON_Delete(j);
    free(text);
    free(path);
    return st;
}

/* One step: model xi of r added to the running merge prev (NULL: xi is the first model), the
 * new state's folder written at dir (absent or empty) in type, *s updated. */
static sqz_status step(merge_run *r, const sqz_model *prev, int xi, opcm_state *s, const char *dir,
                       sqz_type type, uint64_t *n_params) {
    sqz_ctx *ctx = r->ctx;
    int64_t maxn = 1;
    for (int k = 0; k < r->n_list; k++)
        if (r->list[k].rows * r->list[k].cols > maxn) maxn = r->list[k].rows * r->list[k].cols;
    float *b = malloc((size_t)maxn * sizeof *b), *x = malloc((size_t)maxn * sizeof *x);
    float *p = prev ? malloc((size_t)maxn * sizeof *p) : NULL, *out = malloc((size_t)maxn * sizeof *out);
    char *tok = merge_pick_tokenizer(r), *cfg_json = NULL, *spool_name = NULL;
    FILE *spool = NULL;
    sqz_hf_export *e = NULL;
    size_t cfg_len = 0;
    sqz_status st = tok ? SQZ_OK : SQZ_ERR_ARG;
    if (!st && (!b || !x || !out || (prev && !p))) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "opcm: out of memory for 4 slabs of %lld floats", (long long)maxn);
    if (!st) st = sqz_hf_export_new(ctx, dir, &e);
    if (!st && (cfg_json = merge_source_config_json(ctx, r->paths[0], &cfg_len)))
        st = sqz_hf_export_config_json(e, cfg_json, cfg_len);
    else if (!st) {
        sqz_config c = r->models[0]->cfg;
        c.rope_interleaved = 0; /* rows are written in HF's order */
        st = sqz_hf_export_config(e, &c);
    }
    if (!st) st = sqz_hf_export_tokenizer(e, tok);
    char params[600];
    snprintf(params, sizeof params, "model %d of the running merge: %.500s", s->n + 1, r->paths[xi]);
    const sqz_model_card card = { .base_model = r->paths[0], .method = r->method->name, .parameters = params };
    if (!st) st = sqz_hf_export_card(e, &card);
    for (int k = 0; k < r->n_list && !st; k++) {
        const out_tensor *o = &r->list[k];
        const int64_t shape[2] = { o->rows, o->cols };
        const int v = merge_is_vec(o);
        st = sqz_hf_export_declare(e, o->name, type, v ? 1 : 2, v ? shape + 1 : shape);
    }
    if (!st && prev) { /* the spool of U, beside the output, unlinked at once */
        if (!(spool_name = malloc(strlen(dir) + 16))) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        else {
            sprintf(spool_name, "%s.u.XXXXXX", dir);
            const int fd = mkstemp(spool_name);
            if (fd < 0 || !(spool = fdopen(fd, "w+b"))) {
                if (fd >= 0) close(fd);
                st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot create a temporary file", spool_name);
            }
            if (fd >= 0) unlink(spool_name);
        }
    }
    if (!st) st = sqz_hf_export_begin(e);
    double sq_tau = 0, sq_u = 0;
    sqz_progress(ctx, "opcm", 0, (uint64_t)r->n_list * (prev ? 2 : 1));
    for (int k = 0; k < r->n_list && !st; k++) { /* pass 1 */
        const out_tensor *o = &r->list[k];
        const int64_t n = o->rows * o->cols;
        if (merge_load_model_slab(ctx, r->models[0], o, b) || merge_load_model_slab(ctx, r->models[xi], o, x) ||
            (prev && merge_load_model_slab(ctx, prev, o, p))) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
            break;
        }
        if (!prev) { /* the first model as it is */
            for (int64_t j = 0; j < n; j++) {
                const double t = (double)x[j] - b[j];
                sq_tau += t * t;
            }
            st = sqz_hf_export_put_f32(e, x, (size_t)n);
        } else {
            for (int64_t j = 0; j < n; j++) {
                x[j] -= b[j]; /* tau */
                p[j] -= b[j]; /* Delta */
                sq_tau += (double)x[j] * x[j];
            }
            if (!merge_is_vec(o)) st = merge_opcm_project(ctx, o->name, p, x, o->rows, o->cols, s->alpha);
            for (int64_t j = 0; j < n && !st; j++) {
                out[j] = (float)(s->lambda * p[j] + x[j]);
                sq_u += (double)out[j] * out[j];
            }
            if (!st && fwrite(out, sizeof *out, (size_t)n, spool) != (size_t)n)
                st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot write the temporary file (disk full?)", spool_name);
        }
        *n_params += (uint64_t)n;
        sqz_progress(ctx, "opcm", (uint64_t)k + 1, (uint64_t)r->n_list * (prev ? 2 : 1));
    }
    const double norm_sum = s->norm_sum + sqrt(sq_tau);
    double lambda = 1;
    if (prev) { /* lambda_t = ||U|| / mean ||tau|| */
        const double avg = norm_sum / (s->n + 1);
        if (avg > 0 && sq_u > 0) lambda = sqrt(sq_u) / avg;
        if (!st && fseek(spool, 0, SEEK_SET) != 0) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot rewind", spool_name);
    }
    for (int k = 0; prev && k < r->n_list && !st; k++) { /* pass 2: base + U / lambda */
        const out_tensor *o = &r->list[k];
        const int64_t n = o->rows * o->cols;
        if (merge_load_model_slab(ctx, r->models[0], o, b)) {
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
            break;
        }
        if (fread(out, sizeof *out, (size_t)n, spool) != (size_t)n) {
            st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot read the temporary file back", spool_name);
            break;
        }
        for (int64_t j = 0; j < n; j++) out[j] = (float)((double)b[j] + out[j] / lambda);
        st = sqz_hf_export_put_f32(e, out, (size_t)n);
        sqz_progress(ctx, "opcm", (uint64_t)(r->n_list + k + 1), (uint64_t)r->n_list * 2);
    }
    if (!st) st = sqz_hf_export_finish(e);
    if (!st) {
        s->n++;
        s->norm_sum = norm_sum;
        s->lambda = prev ? lambda : 1;
        char *base = abs_path(r->paths[0]), *mx = abs_path(r->paths[xi]);
        cJSON *mp = mx ? cJSON_CreateString(mx) : NULL;
        free(mx);
        if (!mp || !base) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        else cJSON_AddItemToArray(s->models, mp);
        if (!st) st = write_state(ctx, dir, base, s);
        free(base);
    }
    sqz_hf_export_free(e);
    if (spool) fclose(spool);
    free(spool_name), free(b), free(x), free(p), free(out), free(tok), free(cfg_json);
    return st;
}

/* alpha from the config: a number (the paper's single alpha), else the default. */
static sqz_status config_alpha(merge_run *r, double *alpha) {
    const merge_value *v = r->cfg->g[SQZ_MP_ALPHA];
    *alpha = r->method->defaults[SQZ_MP_ALPHA];
    if (v && v->kind != MERGE_V_NUM)
        return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: opcm's alpha is one number (no gradient or filters)", r->cfg->path);
    if (v) *alpha = v->num;
    if (!(*alpha >= 0 && *alpha <= 1))
        return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: alpha = %g (want 0..1)", r->cfg->path, *alpha);
    return SQZ_OK;
}

/* Fails unless dir is absent or an empty folder. */
static sqz_status check_out_dir(sqz_ctx *ctx, const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return SQZ_OK;
    if (!S_ISDIR(sb.st_mode) || rmdir(dir) != 0 || mkdir(dir, 0755) != 0)
        return sqz_fail(ctx, SQZ_ERR_IO, "%s: exists and is not an empty folder", dir);
    return SQZ_OK;
}

sqz_status merge_continual_run(merge_run *r, const char *dir, sqz_type type, sqz_merge_result *res) {
    sqz_ctx *ctx = r->ctx;
    opcm_state s = { .lambda = 1, .models = cJSON_CreateArray() };
    sqz_status st = s.models ? SQZ_OK : sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    if (!st) st = config_alpha(r, &s.alpha);
    if (!st) st = check_out_dir(ctx, dir);
    sqz_model *prev = NULL;
    char *prev_dir = NULL;
    for (int i = 1; i < r->n_in && !st; i++) {
        char *d = temp_dir_beside(ctx, dir, "opcm");
        if (!d) {
            st = SQZ_ERR_IO;
            break;
        }
        uint64_t n_params = 0;
        st = step(r, prev, i, &s, d, i + 1 == r->n_in ? type : SQZ_TYPE_F32, &n_params);
        res->n_params = n_params;
        sqz_model_free(prev), prev = NULL;
        if (prev_dir) remove_state_dir(prev_dir);
        free(prev_dir);
        prev_dir = d;
        if (!st && i + 1 < r->n_in) st = sqz_model_load(ctx, d, NULL, &prev);
    }
    sqz_model_free(prev);
    if (!st) {
        rmdir(dir); /* empty or absent (checked) */
        if (rename(prev_dir, dir) != 0) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot rename %s to it", dir, prev_dir);
    }
    if (st && prev_dir) remove_state_dir(prev_dir);
    free(prev_dir);
    if (!st) {
        char *w = sqz_path_join(dir, "model.safetensors");
        struct stat sb;
        res->out_bytes = w && stat(w, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        free(w);
    }
    cJSON_Delete(s.models);
    return st;
}

/* A YAML string in single quotes (quotes doubled). */
static void yaml_quote(char *dst, const char *s) {
    *dst++ = '\'';
    for (; *s; s++) {
        if (*s == '\'') *dst++ = '\'';
        *dst++ = *s;
    }
    *dst++ = '\'';
    *dst = 0;
}

sqz_status sqz_merge_continual(sqz_ctx *ctx, const char *state_dir, const char *model_path,
                               const sqz_merge_opts *opts, sqz_merge_result *result) {
    sqz_merge_result res = { 0 };
    if (result) *result = res;
    if (!state_dir || !*state_dir || !model_path || !*model_path)
        return sqz_fail(ctx, SQZ_ERR_ARG, "merge: --continual needs a state folder and a model");
    const double t0 = sqz_now();
    const char *type = opts && opts->type ? opts->type : "f32";
    const sqz_type ht = !strcmp(type, "f32") ? SQZ_TYPE_F32 : !strcmp(type, "f16") ? SQZ_TYPE_F16
                      : !strcmp(type, "bf16") ? SQZ_TYPE_BF16 : (sqz_type)-1;
    if ((int)ht < 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: the running merge is an HF folder: f32, f16 or bf16, not %s",
                        state_dir, type);
    opcm_state s = { 0 };
    char *base = NULL, *model = abs_path(model_path), *state = abs_path(state_dir), *yaml = NULL;
    char *cfg_name = sqz_path_join(state_dir, STATE_FILE), *new_dir = NULL, *old_dir = NULL;
    merge_run r = { .ctx = ctx, .extract = -1 };
    sqz_status st = model && state && cfg_name ? SQZ_OK : sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    if (!st) st = read_state(ctx, state_dir, &s, &base);
    if (!st) { /* the step as a config: the base, the new model (input 1), the state (input 2) */
        const size_t cap = 2 * (strlen(base) + strlen(model) + strlen(state)) + 256;
        char *qb = malloc(2 * strlen(base) + 3), *qm = malloc(2 * strlen(model) + 3), *qs = malloc(2 * strlen(state) + 3);
        if (!(yaml = malloc(cap)) || !qb || !qm || !qs) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        else {
            yaml_quote(qb, base), yaml_quote(qm, model), yaml_quote(qs, state);
            snprintf(yaml, cap, "merge_method: opcm\nbase_model: %s\nmodels:\n  - model: %s\n  - model: %s\n"
                     "parameters: {alpha: %.17g}\n", qb, qm, qs, s.alpha);
        }
        free(qb), free(qm), free(qs);
    }
    merge_config *cfg = NULL;
    if (!st) st = merge_config_parse(ctx, yaml, strlen(yaml), cfg_name, &cfg);
    if (!st) st = merge_begin_run_cfg(&r, cfg);
    if (!st && r.n_in != 3)
        st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: the model is the base or the running merge itself", model_path);
    if (!st) st = merge_load_inputs(&r);
    if (!st && !(new_dir = temp_dir_beside(ctx, state, "new"))) st = SQZ_ERR_IO;
    if (!st) st = step(&r, r.models[2], 1, &s, new_dir, ht, &res.n_params);
    if (!st && !(old_dir = temp_dir_beside(ctx, state, "old"))) st = SQZ_ERR_IO;
    if (!st) { /* the swap: the old state aside, the new one in, the old one removed */
        if (rename(state, old_dir) != 0)
            st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot move aside (%s)", state, strerror(errno));
        else if (rename(new_dir, state) != 0) {
            st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot move the new state in (%s); the old one is %s",
                          state, strerror(errno), old_dir);
            rename(old_dir, state);
        } else {
            remove_state_dir(old_dir);
        }
    }
    if (st && new_dir) remove_state_dir(new_dir);
    if (st && old_dir) rmdir(old_dir);
    if (!st) {
        char *w = sqz_path_join(state_dir, "model.safetensors");
        struct stat sb;
        res.out_bytes = w && stat(w, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        free(w);
        res.method = r.method->name;
        res.n_models = s.n;
        res.n_tensors = r.n_list;
        res.seconds = sqz_now() - t0;
        if (result) *result = res;
    }
    if (r.cfg) merge_end_run(&r);
    else merge_config_free(cfg);
    cJSON_Delete(s.models);
    free(base), free(model), free(state), free(yaml), free(cfg_name), free(new_dir), free(old_dir);
    return st;
}
