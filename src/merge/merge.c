/* merge.c - sqz_merge_models and sqz_merge_extract: the driver that runs a merge method
 * (method.h's table) over every tensor of a set of models, out of core (its inputs: inputs.c).
 *
 * 1. Check everything before any work: the config (method, parameters: each one resolved for
 *    every tensor once, so a missing weight is reported now, not halfway), the output (type,
 *    folder), the inputs (loaded with sqz_model_load: HF folders, GGUF files of any type sqz
 *    dequantizes; same architecture and sizes as the first input, field by field; every
 *    tensor's type computable; the same vocabulary, token by token).
 * 2. Walk the tensors in HF order with HF names (model.embed_tokens.weight,
 *    model.layers.N.self_attn.q_proj.weight, ...). For each: every input's tensor is
 *    dequantized to an f32 slab (rows of Q/K from a source that pairs RoPE dimensions
 *    llama.cpp's way - GGUF, llama2.c - put back in HF's order, so inputs of both kinds merge
 *    element by element), the inputs' mapped pages are given back (sqz_model_release), the
 *    method merges the slabs, and the result is streamed to model.safetensors
 *    (model/export_hf.h). Memory: (inputs + 1) slabs of the largest tensor + the method's
 *    scratch (5 bytes a value for ties / breadcrumbs' selection) + the output slab.
 * 3. A .gguf output is that HF folder written in f32 beside it, then sqz_convert to the
 *    requested type (streamed as well), then the folder removed.
 *
 * Layer gradients: a tensor of block l of L has position t = l / (L - 1) (1 when L = 1); the
 * tensors before the blocks (embeddings) t = 0, after them (final norm, lm_head) t = 1.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/presets.h"
#include "io/file.h"
#include "merge/driver.h"
#include "merge/gta.h"
#include "model/export_hf.h"
#include "model/model.h"
#include "sqz.h"

/* Parameter p for input i (its config entry, then the globals, then the method's default) at
 * tensor o: 1 and *v, or 0 when there is none. */
static int param_at(const merge_run *r, int i, int p, const out_tensor *o, double *v) {
    const merge_config *c = r->cfg;
    const int e = i >= 0 ? r->entry[i] : -1;
    if ((SQZ_MP_PER_MODEL & SQZ_MP_BIT(p)) && e >= 0 && merge_value_eval(c->models[e].p[p], o->name, o->t, v))
        return 1;
    if (merge_value_eval(c->g[p], o->name, o->t, v)) return 1;
    if (r->method->required & SQZ_MP_BIT(p)) return 0;
    *v = r->method->defaults[p];
    return 1;
}

/* The job's parameters for tensor o: mp[k] for the k-th non-base input, g the globals. */
static sqz_status resolve_params(const merge_run *r, const out_tensor *o, double (*mp)[SQZ_MP_COUNT],
                                 double *g) {
    const sqz_merge_method *me = r->method;
    const int first = me->takes_base ? 1 : 0;
    for (int p = 0; p < SQZ_MP_COUNT; p++) {
        if (!(me->params & SQZ_MP_BIT(p))) {
            g[p] = 0;
            for (int k = first; k < r->n_in; k++) mp[k - first][p] = 0;
            continue;
        }
        if (SQZ_MP_PER_MODEL & SQZ_MP_BIT(p)) {
            g[p] = 0;
            for (int k = first; k < r->n_in; k++)
                if (!param_at(r, k, p, o, &mp[k - first][p]))
                    return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: no %s for model %s at tensor %s",
                                    r->cfg->path, sqz_merge_param_name(p), r->paths[k], o->name);
        } else if (!param_at(r, -1, p, o, &g[p])) {
            return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: %s needs parameter %s (none applies to %s)",
                            r->cfg->path, me->name, sqz_merge_param_name(p), o->name);
        }
    }
    return SQZ_OK;
}

/* The ranges every method expects, and the method's own check, for tensor o. */
static sqz_status check_ranges(const merge_run *r, const out_tensor *o, const double (*mp)[SQZ_MP_COUNT],
                               const double *g) {
    const int first = r->method->takes_base ? 1 : 0, N = r->n_in - first;
    const struct { int p; double lo, hi; } range[] = {
        { SQZ_MP_DENSITY, 0, 1 }, { SQZ_MP_GAMMA, 0, 1 }, { SQZ_MP_EPSILON, 0, 1 },
        { SQZ_MP_MASK_LAMBDA, 0, 1e30 },
    };
    for (int m = 0; m < N; m++)
        for (size_t k = 0; k < sizeof range / sizeof *range; k++) {
            const double v = mp[m][range[k].p];
            if ((r->method->params & SQZ_MP_BIT(range[k].p)) && !(v >= range[k].lo && v <= range[k].hi))
                return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: %s = %g for model %s at tensor %s (want %g..%g)",
                                r->cfg->path, sqz_merge_param_name(range[k].p), v, r->paths[first + m],
                                o->name, range[k].lo, range[k].hi);
        }
    if (r->extract >= 0 && g[SQZ_MP_LAMBDA] == 0)
        return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: lambda = 0 at tensor %s: no task can be extracted",
                        r->cfg->path, o->name);
    if (!r->method->check) return SQZ_OK;
    const sqz_merge_job job = { .name = o->name, .rows = o->rows, .cols = o->cols, .n_models = N,
                                .mp = mp, .g = g };
    return r->method->check(r->ctx, &job);
}

/* Parameters the method does not read are refused, per model and global. */
static sqz_status check_params(const merge_run *r) {
    const merge_config *c = r->cfg;
    for (int p = 0; p < SQZ_MP_COUNT; p++) {
        const int takes = (r->method->params & SQZ_MP_BIT(p)) != 0;
        for (int e = -1; e < c->n_models; e++) {
            const merge_value *v = e < 0 ? c->g[p] : c->models[e].p[p];
            if (!v) continue;
            if (!takes)
                return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: %s does not take parameter %s%s%s",
                                c->path, r->method->name, sqz_merge_param_name(p),
                                e < 0 ? "" : " (model ", e < 0 ? "" : c->models[e].model);
            if (e >= 0 && !(SQZ_MP_PER_MODEL & SQZ_MP_BIT(p)))
                return sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: parameter %s is global: give it under the "
                                "top-level parameters, not model %s's", c->path,
                                sqz_merge_param_name(p), c->models[e].model);
        }
    }
    return SQZ_OK;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* ------------------------------------------------------------------ output */

static int ends_with(const char *s, const char *suf) {
    const size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* Removes a folder this merge wrote (the three files an HF export holds, then the folder). */
static void remove_hf_folder(const char *dir) {
    const char *files[] = { "config.json", "model.safetensors", "tokenizer.json", "README.md" };
    for (int i = 0; i < 4; i++) {
        char *p = sqz_path_join(dir, files[i]);
        if (p) unlink(p);
        free(p);
    }
    rmdir(dir);
}

/* config.json of input i when it is an HF folder (its text), else NULL. */
char *merge_source_config_json(sqz_ctx *ctx, const char *path, size_t *len) {
    char *p = sqz_path_is_dir(path) ? sqz_path_join(path, "config.json")
              : ends_with(path, "config.json") ? strdup(path) : NULL;
    char *text = NULL;
    if (p && sqz_path_exists(p) && sqz_file_read_all(ctx, p, (size_t)16 << 20, &text, len)) text = NULL;
    free(p);
    return text;
}

/* The tokenizer.json the output gets: tokenizer_source (a file, or a folder holding one),
 * else the base's (first input's) folder's. NULL with an error when there is none. */
char *merge_pick_tokenizer(merge_run *r) {
    const char *src = r->cfg->tokenizer_source;
    if (src && strcmp(src, "base") != 0) {
        if (!strcmp(src, "union") || !strncmp(src, "model:", 6)) {
            sqz_fail(r->ctx, SQZ_ERR_UNSUPPORTED, "%s: tokenizer_source %s is not supported (base, "
                     "or a path to a tokenizer.json)", r->cfg->path, src);
            return NULL;
        }
        char *p = merge_resolve_path(r->cfg->path, src);
        if (p && sqz_path_is_dir(p)) {
            char *j = sqz_path_join(p, "tokenizer.json");
            free(p);
            p = j;
        }
        if (p && !sqz_path_exists(p)) {
            sqz_fail(r->ctx, SQZ_ERR_IO, "%s: tokenizer_source %s: no such file", r->cfg->path, p);
            free(p);
            return NULL;
        }
        if (!p) sqz_fail(r->ctx, SQZ_ERR_NOMEM, "out of memory");
        return p;
    }
    const char *base = r->paths[0];
    char *dir = sqz_path_is_dir(base) ? strdup(base) : sqz_path_dirname(base);
    char *p = dir ? sqz_path_join(dir, "tokenizer.json") : NULL;
    free(dir);
    if (p && sqz_path_exists(p)) return p;
    sqz_fail(r->ctx, SQZ_ERR_ARG, "%s: no tokenizer.json beside %s for the output: set "
             "tokenizer_source to a tokenizer.json", r->cfg->path, base);
    free(p);
    return NULL;
}

int merge_is_vec(const out_tensor *o) {
    return o->spec ? o->spec->is_vec : o->model_at == offsetof(sqz_model, out_norm);
}

/* The name of task t's mask of tensor name in a tall_masks folder. */
static void mask_name(char *buf, size_t cap, int t, const char *name) {
    snprintf(buf, cap, "tall_mask.%d.%s", t, name);
}

/* sqz_merge_extract's tensor: base + mask * (merged - base) / lambda. */
static void extract_tensor(const merge_run *r, const out_tensor *o, const float *base,
                           const float *merged, double lambda, float *out) {
    char name[160];
    mask_name(name, sizeof name, r->extract, o->name);
    const sqz_st_tensor *t = sqz_st_find(r->mask_st, name); /* checked before any work */
    const uint8_t *bits = t->data;
    const int64_t n = o->rows * o->cols;
    for (int64_t j = 0; j < n; j++)
        out[j] = bits[j >> 3] >> (j & 7) & 1 ? (float)((double)base[j] + ((double)merged[j] - base[j]) / lambda)
                                             : base[j];
    sqz_st_release(r->mask_st, t->data, t->nbytes);
}

/* The merged HF folder at dir, in type; the work itself. */
/* The merged model's card: the method, the base, the models merged (their file or folder names)
 * in params (cap bytes). */
static sqz_model_card merge_card(const merge_run *r, char *params, size_t cap) {
    size_t n = 0;
    params[0] = 0;
    for (int i = r->method->takes_base ? 1 : 0; i < r->n_in && n < cap; i++) {
        const char *p = r->paths[i], *s = strrchr(p, '/');
        const int w = snprintf(params + n, cap - n, "%s%s", n ? ", " : "models merged: ", s && s[1] ? s + 1 : p);
        if (w > 0) n += (size_t)w;
    }
    return (sqz_model_card){ .base_model = r->method->takes_base ? r->paths[0] : NULL,
                             .method = r->method->name, .parameters = params };
}

static sqz_status write_merged(merge_run *r, const char *dir, sqz_type type, uint64_t seed,
                               sqz_merge_result *res) {
    sqz_ctx *ctx = r->ctx;
    const sqz_merge_method *me = r->method;
    const int first = me->takes_base ? 1 : 0, N = r->n_in - first;
    const int with_masks = me->masks && r->extract < 0 && !r->tune_task;
    sqz_hf_export *e = NULL;
    float **slab = NULL, *out = NULL;
    uint8_t **bits = NULL;
    double (*mp)[SQZ_MP_COUNT] = NULL, g[SQZ_MP_COUNT];
    char *tok = merge_pick_tokenizer(r), *cfg_json = NULL;
    sqz_status st = tok ? SQZ_OK : SQZ_ERR_ARG;
    if (!tok) return st;
    int64_t maxn = 1;
    for (int k = 0; k < r->n_list; k++)
        if (r->list[k].rows * r->list[k].cols > maxn) maxn = r->list[k].rows * r->list[k].cols;
    /* every tensor's parameters resolve (a missing weight is an error now, not halfway) */
    if (!(mp = calloc((size_t)(N > 0 ? N : 1), sizeof *mp))) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    for (int k = 0; k < r->n_list && !st; k++)
        if (!(st = resolve_params(r, &r->list[k], mp, g)))
            st = check_ranges(r, &r->list[k], (const double (*)[SQZ_MP_COUNT])mp, g);
    if (!st) st = sqz_hf_export_new(ctx, dir, &e);
    size_t cfg_len = 0;
    if (!st && (cfg_json = merge_source_config_json(ctx, r->paths[0], &cfg_len)))
        st = sqz_hf_export_config_json(e, cfg_json, cfg_len);
    else if (!st) {
        sqz_config c = r->models[0]->cfg;
        c.rope_interleaved = 0; /* the rows are written in HF's order */
        st = sqz_hf_export_config(e, &c);
    }
    if (!st) st = sqz_hf_export_tokenizer(e, tok);
    char params[1024];
    const sqz_model_card card = merge_card(r, params, sizeof params);
    if (!st) st = sqz_hf_export_card(e, &card);
    for (int k = 0; k < r->n_list && !st; k++) {
        const out_tensor *o = &r->list[k];
        const int64_t shape[2] = { o->rows, o->cols };
        const int is_vec = merge_is_vec(o);
        st = sqz_hf_export_declare(e, o->name, type, is_vec ? 1 : 2, is_vec ? shape + 1 : shape);
        for (int t = 0; with_masks && t < N && !st; t++) { /* tall_mask.T.NAME after NAME */
            char name[160];
            const int64_t nb = (o->rows * o->cols + 7) / 8;
            mask_name(name, sizeof name, t, o->name);
            st = sqz_hf_export_declare(e, name, SQZ_ST_TYPE_U8, 1, &nb);
        }
    }
    /* the slabs: one per input and the output */
    if (!st) {
        slab = calloc((size_t)r->n_in, sizeof *slab);
        out = malloc((size_t)maxn * sizeof *out);
        if (!slab || !out) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        for (int i = 0; i < r->n_in && !st; i++)
            if (!(slab[i] = malloc((size_t)maxn * sizeof **slab)))
                st = sqz_fail(ctx, SQZ_ERR_NOMEM, "merge: out of memory for %d slabs of %lld floats",
                              r->n_in + 1, (long long)maxn);
        if (with_masks && !st && !(bits = calloc((size_t)N, sizeof *bits))) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        for (int t = 0; with_masks && t < N && !st; t++)
            if (!(bits[t] = malloc((size_t)(maxn + 7) / 8))) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    if (!st) st = sqz_hf_export_begin(e);
    sqz_progress(ctx, "merge", 0, (uint64_t)r->n_list);
    for (int k = 0; k < r->n_list && !st; k++) {
        const out_tensor *o = &r->list[k];
        for (int i = 0; i < r->n_in && !st; i++)
            if (merge_load_slab(r, i, o, slab[i])) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        if (st || (st = resolve_params(r, o, mp, g))) break;
        const sqz_merge_job job = {
            .name = o->name, .rows = o->rows, .cols = o->cols,
            .base = first ? slab[0] : NULL, .x = slab + first, .n_models = N,
            .mp = (const double (*)[SQZ_MP_COUNT])mp, .g = g,
            .seed = merge_rng_next(&(uint64_t){ seed ^ fnv1a(o->name) }),
        };
        if (r->tune_task) {
            mp[r->tune_task - 1][SQZ_MP_MASK_LAMBDA] = r->tune_lambda;
            if ((st = me->extract(ctx, &job, r->tune_task - 1, out))) break;
        } else if (r->extract >= 0) {
            extract_tensor(r, o, slab[0], slab[1], g[SQZ_MP_LAMBDA], out);
        } else if ((st = me->merge(ctx, &job, out))) {
            break;
        }
        st = sqz_hf_export_put_f32(e, out, (size_t)(o->rows * o->cols));
        if (!st && with_masks) st = me->masks(ctx, &job, bits);
        for (int t = 0; with_masks && t < N && !st; t++)
            st = sqz_hf_export_put(e, bits[t], (size_t)(o->rows * o->cols + 7) / 8);
        res->n_params += (uint64_t)(o->rows * o->cols);
        sqz_progress(ctx, "merge", (uint64_t)k + 1, (uint64_t)r->n_list);
    }
    if (!st) st = sqz_hf_export_finish(e);
    res->max_tensor_elems = (uint64_t)maxn;
    sqz_hf_export_free(e); /* removes an unfinished folder */
    for (int i = 0; slab && i < r->n_in; i++) free(slab[i]);
    for (int t = 0; bits && t < N; t++) free(bits[t]);
    free(bits);
    free(slab);
    free(out);
    free(mp);
    free(tok);
    free(cfg_json);
    return st;
}

/* ------------------------------------------------------------------ entry points */

typedef struct out_plan {
    const char *path;
    int gguf;         /* a .gguf file: an f32 folder beside it, then sqz_convert */
    const char *type; /* the GGUF type or mix */
    sqz_type hf_type; /* the folder's tensor type */
} out_plan;

/* The output's type and place, checked before any work. */
static sqz_status plan_output(merge_run *r, const char *out_path, const sqz_merge_opts *opts, out_plan *p) {
    sqz_ctx *ctx = r->ctx;
    const merge_config *cfg = r->cfg;
    p->path = out_path;
    p->gguf = ends_with(out_path, ".gguf");
    const char *type = opts->type;
    if (!type && cfg->dtype) {
        type = !strcmp(cfg->dtype, "float32") ? "f32" : !strcmp(cfg->dtype, "float16") ? "f16"
             : !strcmp(cfg->dtype, "bfloat16") ? "bf16" : NULL;
        if (!type) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: dtype %s (float32, float16 or bfloat16)", cfg->path, cfg->dtype);
    }
    p->type = type ? type : "f32";
    p->hf_type = SQZ_TYPE_F32;
    if (p->gguf) {
        sqz_preset pr;
        if (r->method->masks && r->extract < 0)
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s: %s writes a folder (the merged model and its "
                            "masks), not a GGUF file", out_path, r->method->name);
        if (sqz_preset_find(p->type, opts->pure, &pr) != 0)
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s: unknown type '%s' (known: %s)", out_path, p->type, sqz_preset_names());
        char *dir = sqz_path_dirname(out_path);
        const int ok = dir && sqz_path_is_dir(dir);
        sqz_status st = ok ? SQZ_OK : sqz_fail(ctx, SQZ_ERR_IO, "%s: folder %s does not exist", out_path, dir ? dir : "?");
        free(dir);
        return st;
    }
    const char *t = p->type;
    p->hf_type = !strcmp(t, "f32") ? SQZ_TYPE_F32 : !strcmp(t, "f16") ? SQZ_TYPE_F16
               : !strcmp(t, "bf16") ? SQZ_TYPE_BF16 : (sqz_type)-1;
    if ((int)p->hf_type < 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: a Hugging Face folder holds f32, f16 or bf16, not %s "
                        "(write a .gguf file for quantized types)", out_path, t);
    return SQZ_OK;
}


/* The paper's grid for mask_lambda (TALL masks, Wang et al. 2024, section 5). */
static const double tune_grid[] = { 0.2, 0.3, 0.4, 0.5, 0.6 };

/* mask_lambda tuned per task as the TALL-masks paper tunes it: for each task whose text is
 * given (the domain named in the model's folder or file name), the value of the grid whose
 * extracted model (base + m_t * tau_MTL, written to a temporary f32 folder beside out_path)
 * has the lowest perplexity on that text; the config then holds it for that model. */
static sqz_status tune_masks(merge_run *r, const char *out_path, const sqz_merge_opts *o, sqz_merge_result *res) {
    sqz_ctx *ctx = r->ctx;
    merge_config *c = (merge_config *)r->cfg;
    const int N = r->n_in - 1, G = (int)(sizeof tune_grid / sizeof *tune_grid);
    if (!r->method->extract)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%s: %s has no per-task masks to tune", c->path, r->method->name);
    sqz_status st = SQZ_OK;
    for (int t = 0; t < N && t < 64 && !st; t++) {
        int d = -1;
        for (int k = 0; k < o->n_tune && d < 0; k++)
            if (merge_path_names(r->paths[1 + t], o->tune_domain[k])) d = k;
        res->tuned_mask_lambda[t] = NAN;
        if (d < 0) continue;
        char *text = NULL;
        size_t len = 0, n_ids = 0;
        int32_t *ids = NULL;
        if ((st = sqz_file_read_all(ctx, o->tune_text[d], (size_t)1 << 31, &text, &len))) break;
        st = sqz_tokenize(ctx, r->models[0], text, len, 0, &ids, &n_ids);
        free(text);
        double best = INFINITY, best_l = 0;
        for (int k = 0; k < G && !st; k++) {
            const size_t n = strlen(out_path);
            char *tmp = malloc(n + 16);
            if (!tmp) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
            memcpy(tmp, out_path, n);
            memcpy(tmp + n, ".tune.XXXXXX", 13);
            if (!mkdtemp(tmp)) {
                st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot create a temporary folder beside it", out_path);
                free(tmp);
                break;
            }
            sqz_merge_result dummy = { 0 };
            r->tune_task = t + 1, r->tune_lambda = tune_grid[k];
            st = write_merged(r, tmp, SQZ_TYPE_F32, o->seed, &dummy);
            r->tune_task = 0;
            sqz_model *m = NULL;
            if (!st) st = sqz_model_load(ctx, tmp, NULL, &m);
            const sqz_ppl_opts po = { .n_ctx = o->tune_ctx > 0 ? o->tune_ctx : 256, .max_tokens = o->tune_tokens };
            sqz_ppl_result pr;
            if (!st && !(st = sqz_perplexity(ctx, m, ids, n_ids, &po, &pr))) {
                res->tune_ppl[t][k] = pr.ppl;
                if (pr.ppl < best) best = pr.ppl, best_l = tune_grid[k];
            }
            sqz_model_free(m);
            remove_hf_folder(tmp);
            free(tmp);
        }
        sqz_free(ids);
        if (st) break;
        const int e = r->entry[1 + t];
        merge_value *v = calloc(1, sizeof *v);
        if (!v) { st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory"); break; }
        v->kind = MERGE_V_NUM, v->num = best_l;
        merge_value_free(c->models[e].p[SQZ_MP_MASK_LAMBDA]);
        c->models[e].p[SQZ_MP_MASK_LAMBDA] = v;
        res->tuned_mask_lambda[t] = best_l;
    }
    res->n_tuned = N < 64 ? N : 64;
    res->n_tune_grid = G;
    for (int k = 0; k < G; k++) res->tune_grid[k] = tune_grid[k];
    return st;
}

/* Writes the output planned by p from r's loaded, checked inputs. */
static sqz_status write_output(merge_run *r, const out_plan *p, const sqz_merge_opts *opts,
                               sqz_merge_result *res) {
    sqz_ctx *ctx = r->ctx;
    sqz_status st;
    if (!p->gguf) {
        if ((st = r->method->continual ? merge_continual_run(r, p->path, p->hf_type, res)
                  : r->method->whole   ? r->method->whole(r, p->path, p->hf_type, res)
                                       : write_merged(r, p->path, p->hf_type, opts->seed, res)))
            return st;
        char *w = sqz_path_join(p->path, "model.safetensors");
        struct stat sb;
        res->out_bytes = w && stat(w, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        free(w);
        return SQZ_OK;
    }
    /* an f32 HF folder beside the target, converted, removed */
    const size_t n = strlen(p->path);
    char *tmp_dir = malloc(n + 16);
    if (!tmp_dir) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    memcpy(tmp_dir, p->path, n);
    memcpy(tmp_dir + n, ".hf.XXXXXX", 11);
    if (!mkdtemp(tmp_dir)) {
        free(tmp_dir);
        return sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot create a temporary folder beside it", p->path);
    }
    sqz_model *merged = NULL;
    st = r->method->continual ? merge_continual_run(r, tmp_dir, SQZ_TYPE_F32, res)
       : r->method->whole     ? r->method->whole(r, tmp_dir, SQZ_TYPE_F32, res)
                              : write_merged(r, tmp_dir, SQZ_TYPE_F32, opts->seed, res);
    for (int i = 0; i < r->n_in && !st; i++) sqz_model_free(r->models[i]), r->models[i] = NULL;
    if (!st) st = sqz_model_load(ctx, tmp_dir, NULL, &merged);
    char params[1024];
    const sqz_model_card card = merge_card(r, params, sizeof params);
    const sqz_convert_opts co = { .type = p->type, .pure = opts->pure, .card = &card };
    sqz_convert_result cr;
    if (!st && !(st = sqz_convert(ctx, merged, p->path, &co, &cr))) res->out_bytes = cr.file_bytes;
    sqz_model_free(merged);
    remove_hf_folder(tmp_dir);
    free(tmp_dir);
    return st;
}

/* Loads the config, finds its method, checks its parameters and picks the inputs. */
static sqz_status begin_run(merge_run *r, const char *config_path) {
    merge_config *cfg = NULL;
    sqz_status st = merge_config_load(r->ctx, config_path, &cfg);
    if (st) return st;
    return merge_begin_run_cfg(r, cfg);
}

sqz_status merge_begin_run_cfg(merge_run *r, merge_config *cfg) {
    sqz_status st;
    r->cfg = cfg;
    if (!(r->method = sqz_merge_method_find(cfg->method))) {
        char names[512] = "";
        for (int i = 0; sqz_merge_method_at(i); i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     sqz_merge_method_at(i)->name);
        return sqz_fail(r->ctx, SQZ_ERR_UNSUPPORTED, "%s: unknown merge_method '%s' (sqz has %s)",
                        cfg->path, cfg->method, names);
    }
    if ((st = check_params(r))) return st;
    return merge_pick_inputs(r);
}

void merge_end_run(merge_run *r) {
    for (int i = 0; r->models && i < r->n_in; i++) sqz_model_free(r->models[i]);
    for (int i = 0; r->paths && i < r->n_in; i++) free(r->paths[i]);
    free(r->paths);
    free(r->entry);
    free(r->models);
    free(r->list);
    sqz_st_close(r->mask_st);
    merge_config_free((merge_config *)r->cfg);
}

/* Loads r's inputs, lists the tensors, checks the inputs agree. */
sqz_status merge_load_inputs(merge_run *r) {
    sqz_status st;
    for (int i = 0; i < r->n_in; i++)
        if ((st = sqz_model_load(r->ctx, r->paths[i], NULL, &r->models[i]))) return st;
    if (merge_build_list(r->models[0], &r->list, &r->n_list)) return sqz_fail(r->ctx, SQZ_ERR_NOMEM, "out of memory");
    return merge_check_inputs(r);
}

sqz_status sqz_merge_models(sqz_ctx *ctx, const char *config_path, const char *out_path,
                            const sqz_merge_opts *opts, sqz_merge_result *result) {
    sqz_merge_result res = { 0 };
    if (result) *result = res;
    if (!config_path || !out_path || !*out_path)
        return sqz_fail(ctx, SQZ_ERR_ARG, "merge: missing config or output path");
    const sqz_merge_opts defaults = { 0 };
    if (!opts) opts = &defaults;
    const double t0 = sqz_now();
    merge_run r = { .ctx = ctx, .extract = -1, .opts = opts };
    out_plan plan;
    sqz_status st = begin_run(&r, config_path);
    if (!st && opts->n_task_calib && !r.method->calib)
        st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: %s takes no calibration text (--task-calib)", r.cfg->path, r.method->name);
    if (!st && opts->calib && !r.method->calib && !opts->calib_shared)
        st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: %s takes no calibration text (--calib goes with a merge_method that "
                      "needs one, such as pleas, or with --method)", r.cfg->path, r.method->name);
    if (!st && r.method->calib && !opts->calib && !opts->n_task_calib)
        st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: %s needs calibration text (sqz merge --calib FILE or --task-calib "
                      "DOMAIN=TEXT)", r.cfg->path, r.method->name);
    if (!st && r.method->calib && opts->calib && !sqz_path_exists(opts->calib))
        st = sqz_fail(ctx, SQZ_ERR_IO, "%s: no such file (the calibration text)", opts->calib);
    for (int k = 0; !st && r.method->calib && k < opts->n_task_calib; k++)
        if (!sqz_path_exists(opts->task_calib_text[k]))
            st = sqz_fail(ctx, SQZ_ERR_IO, "%s: no such file (--task-calib %s)", opts->task_calib_text[k],
                          opts->task_calib_domain[k]);
    if (!st) st = plan_output(&r, out_path, opts, &plan);
    if (!st) st = merge_load_inputs(&r);
    if (!st && opts->n_tune) st = tune_masks(&r, out_path, opts, &res);
    if (!st) st = write_output(&r, &plan, opts, &res);
    if (!st) {
        res.method = r.method->name;
        res.n_models = r.n_in;
        res.n_tensors = r.n_list;
        res.seconds = sqz_now() - t0;
        if (result) *result = res;
    }
    merge_end_run(&r);
    return st;
}

sqz_status sqz_merge_extract(sqz_ctx *ctx, const char *config_path, const char *tall_dir, int task,
                             const char *out_path, const sqz_merge_opts *opts, sqz_merge_result *result) {
    sqz_merge_result res = { 0 };
    if (result) *result = res;
    if (!config_path || !tall_dir || !out_path || !*out_path)
        return sqz_fail(ctx, SQZ_ERR_ARG, "merge: missing config, merged folder or output path");
    const sqz_merge_opts defaults = { 0 };
    if (!opts) opts = &defaults;
    const double t0 = sqz_now();
    merge_run r = { .ctx = ctx, .extract = task };
    out_plan plan;
    sqz_status st = begin_run(&r, config_path);
    if (!st && !r.method->masks)
        st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: merge_method %s keeps no per-task masks (extracting a "
                      "task needs tall_masks)", r.cfg->path, r.method->name);
    const int N = r.n_in - 1;
    if (!st && (task < 0 || task >= N))
        st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: task %d: the config merges tasks 0..%d", r.cfg->path, task, N - 1);
    if (!st) { /* inputs: the base and the merged folder, with the task's parameters */
        for (int i = 1; i < r.n_in; i++) free(r.paths[i]), r.paths[i] = NULL;
        r.entry[1] = r.entry[1 + task];
        r.n_in = 2;
        if (!(r.paths[1] = strdup(tall_dir))) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    if (!st) st = plan_output(&r, out_path, opts, &plan);
    if (!st) st = merge_load_inputs(&r);
    if (!st) st = sqz_st_open(ctx, tall_dir, &r.mask_st);
    for (int k = 0; k < r.n_list && !st; k++) { /* every mask there, of its size */
        char name[160];
        mask_name(name, sizeof name, task, r.list[k].name);
        const sqz_st_tensor *t = sqz_st_find(r.mask_st, name);
        if (!t || strcmp(t->dtype, "U8") || t->nbytes != (size_t)(r.list[k].rows * r.list[k].cols + 7) / 8)
            st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s %s: not a tall_masks merge of this config",
                          tall_dir, t ? "bad tensor" : "no tensor", name);
    }
    if (!st) st = write_output(&r, &plan, opts, &res);
    if (!st) {
        res.method = r.method->name;
        res.n_models = r.n_in;
        res.n_tensors = r.n_list;
        res.seconds = sqz_now() - t0;
        if (result) *result = res;
    }
    merge_end_run(&r);
    return st;
}

const char *sqz_merge_method_name(int i) {
    const sqz_merge_method *m = sqz_merge_method_at(i);
    return m ? m->name : NULL;
}

const char *sqz_merge_method_help(int i) {
    const sqz_merge_method *m = sqz_merge_method_at(i);
    return m ? m->help : NULL;
}
