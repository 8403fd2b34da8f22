/* eval.c - sqz_merge_evaluate: what a merge cost on each domain. Every row (the base, each
 * input, the merge) is run over each domain's text by the eval layer's sqz_perplexity, with
 * KL divergence to the domain's specialist (the input named after the domain): the
 * specialist's logits are computed once per domain into a temporary logits cache
 * (sqz_ppl_opts.kld_cache) that the other rows read, and the cache is removed before the next
 * domain. R_d = (L_base - L_row) / (L_base - L_specialist), L the mean NLL on d's text.
 * Models are loaded one at a time (mapped; released after each run). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/file.h"
#include "merge/config.h"
#include "merge/driver.h"
#include "sqz.h"

void sqz_merge_eval_free(sqz_merge_eval *e) {
    if (!e) return;
    for (int i = 0; i < e->n_rows; i++) free(e->row[i]);
    for (int d = 0; d < e->n_domains; d++) free(e->domain[d]);
    free(e->row), free(e->domain), free(e->specialist), free(e->ppl), free(e->nll), free(e->kld);
    free(e->r), free(e->tokens);
    free(e);
}

/* The rows: from an opcm state folder (opcm.json: base, models; the folder is the merge) or a
 * config (base_model if any, the models; merged_path the merge). */
static sqz_status list_rows(sqz_ctx *ctx, const char *config, const char *merged, sqz_merge_eval *e) {
    char *state = sqz_path_is_dir(config) ? sqz_path_join(config, "opcm.json") : NULL;
    char **rows = calloc(1, sizeof *rows);
    int n = 0;
    sqz_status st = SQZ_OK;
    if (state && sqz_path_exists(state)) {
        char *text = NULL;
        size_t len = 0;
        cJSON *j = NULL;
        if (!(st = sqz_file_read_all(ctx, state, (size_t)64 << 20, &text, &len))) j = cJSON_ParseWithLength(text, len);
        const cJSON *b = cJSON_GetObjectItem(j, "base"), *ms = cJSON_GetObjectItem(j, "models"), *m;
        if (!st && (!cJSON_IsString(b) || !cJSON_IsArray(ms))) st = sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: no base or models", state);
        char **grown = st ? NULL : realloc(rows, (size_t)(cJSON_GetArraySize(ms) + 2) * sizeof *rows);
        if (!st && !grown) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        if (!st) {
            rows = grown;
            rows[n++] = strdup(b->valuestring);
            e->base_row = 0;
            cJSON_ArrayForEach(m, ms) if (cJSON_IsString(m)) rows[n++] = strdup(m->valuestring);
            rows[n++] = strdup(config);
        }
        cJSON_Delete(j);
        free(text);
    } else {
        merge_config *c = NULL;
        char **grown = NULL;
        if (!(st = merge_config_load(ctx, config, &c)) &&
            !(grown = realloc(rows, (size_t)(c->n_models + 2) * sizeof *rows)))
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        if (!st) {
            rows = grown;
            if (c->base) rows[n++] = merge_resolve_path(c->path, c->base), e->base_row = 0;
            for (int i = 0; i < c->n_models; i++)
                if (!c->base || strcmp(c->models[i].model, c->base)) rows[n++] = merge_resolve_path(c->path, c->models[i].model);
            rows[n++] = strdup(merged);
        }
        merge_config_free(c);
    }
    free(state);
    e->row = rows;
    e->n_rows = n;
    for (int i = 0; i < n && !st; i++)
        if (!rows[i]) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    return st;
}

/* The last component of a path (without trailing slashes) contains name. */
int merge_path_names(const char *path, const char *name) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    const size_t k = strlen(name);
    for (size_t i = s; k && i + k <= n; i++)
        if (!strncmp(path + i, name, k)) return 1;
    return 0;
}

sqz_status sqz_merge_evaluate(sqz_ctx *ctx, const char *config, const char *merged, int n_domains,
                              const char *const *domain, const char *const *text_path,
                              const sqz_merge_eval_opts *opts, sqz_merge_eval **out) {
    *out = NULL;
    if (!config || n_domains < 1 || !domain || !text_path)
        return sqz_fail(ctx, SQZ_ERR_ARG, "merge eval: a config (or opcm state) and at least one DOMAIN=TEXT");
    sqz_merge_eval *e = calloc(1, sizeof *e);
    if (!e) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    e->base_row = -1;
    sqz_status st = list_rows(ctx, config, merged ? merged : config, e);
    const int R = e->n_rows, D = n_domains;
    e->n_domains = D;
    if (!st) {
        e->domain = calloc((size_t)D, sizeof *e->domain);
        e->specialist = malloc((size_t)D * sizeof *e->specialist);
        e->ppl = calloc((size_t)R * D, sizeof *e->ppl);
        e->nll = calloc((size_t)R * D, sizeof *e->nll);
        e->kld = calloc((size_t)R * D, sizeof *e->kld);
        e->r = calloc((size_t)R * D, sizeof *e->r);
        e->tokens = calloc((size_t)D, sizeof *e->tokens);
        if (!e->domain || !e->specialist || !e->ppl || !e->nll || !e->kld || !e->r || !e->tokens)
            st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    }
    for (int d = 0; d < D && !st; d++) {
        if (!(e->domain[d] = strdup(domain[d]))) st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        e->specialist[d] = -1;
        for (int i = 0; i < R - 1 && !st; i++) /* an input (not the base) named after the domain */
            if (i != e->base_row && e->specialist[d] < 0 && merge_path_names(e->row[i], domain[d])) e->specialist[d] = i;
    }
    /* the logits cache: a temporary file name per domain */
    char cache[4096] = "";
    if (!st) {
        const char *tmpdir = getenv("TMPDIR");
        if ((size_t)snprintf(cache, sizeof cache, "%s/sqz-eval-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp") >= sizeof cache)
            snprintf(cache, sizeof cache, "/tmp/sqz-eval-XXXXXX");
        const int fd = mkstemp(cache);
        if (fd < 0) st = sqz_fail(ctx, SQZ_ERR_IO, "%s: cannot create the logits cache", cache);
        else close(fd), unlink(cache);
    }
    sqz_progress(ctx, "eval", 0, (uint64_t)R * D);
    for (int d = 0; d < D && !st; d++) {
        char *text = NULL;
        size_t len = 0;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if ((st = sqz_file_read_all(ctx, text_path[d], (size_t)1 << 31, &text, &len))) break;
        const int s = e->specialist[d];
        /* the specialist first (it writes the cache), then the others */
        for (int k = 0; k < R && !st; k++) {
            const int i = s < 0 ? k : k == 0 ? s : k <= s ? k - 1 : k;
            sqz_model *m = NULL;
            if ((st = sqz_model_load(ctx, e->row[i], NULL, &m))) break;
            if (!ids && (st = sqz_tokenize(ctx, m, text, len, 0, &ids, &n_ids))) {
                sqz_model_free(m);
                break;
            }
            sqz_ppl_opts po = { .n_ctx = opts && opts->n_ctx > 0 ? opts->n_ctx : 256,
                                .max_tokens = opts ? opts->max_tokens : 0 };
            if (s >= 0) {
                po.kld_cache = cache;
                if (i == s) po.kld_base = m;
            }
            sqz_ppl_result pr;
            if (!(st = sqz_perplexity(ctx, m, ids, n_ids, &po, &pr))) {
                e->ppl[i * D + d] = pr.ppl;
                e->nll[i * D + d] = pr.nll;
                e->kld[i * D + d] = pr.has_kld ? pr.kld : NAN;
                e->tokens[d] = pr.tokens;
            }
            sqz_model_free(m);
            sqz_progress(ctx, "eval", (uint64_t)(d * R + k + 1), (uint64_t)R * D);
        }
        unlink(cache);
        sqz_free(ids);
        free(text);
    }
    for (int i = 0; i < R && !st; i++)
        for (int d = 0; d < D; d++) {
            const int b = e->base_row, s = e->specialist[d];
            const double gap = b >= 0 && s >= 0 ? e->nll[b * D + d] - e->nll[s * D + d] : 0;
            e->r[i * D + d] = gap != 0 ? (e->nll[b * D + d] - e->nll[i * D + d]) / gap : NAN;
        }
    if (st) {
        sqz_merge_eval_free(e);
        return st;
    }
    *out = e;
    return SQZ_OK;
}
