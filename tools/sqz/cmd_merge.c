/* cmd_merge.c - sqz merge CONFIG.yaml -o OUT [--type T] [--seed S]: a mergekit config run by
 * sqz_merge_models; OUT is a Hugging Face folder, or a GGUF file when it ends in .gguf.
 * With --extract TASK --from DIR: task TASK rebuilt from the tall_masks merge in DIR.
 * With --continual STATE MODEL: MODEL added to the running opcm merge in folder STATE.
 * --calib FILE [--calib-tokens N] [--calib-ctx C]: a merge method's calibration text (pleas).
 * With --method M [--calib FILE]: merge and quantize in one command - the merge goes to an f32
 * folder beside OUT.gguf, which sqz_quantize then quantizes with calibration data, and the
 * folder is removed. (The two library calls are composed here, at the top, because merge and
 * quant are peer layers that may not call each other.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void remove_folder(const char *dir) {
    const char *files[] = { "config.json", "model.safetensors", "tokenizer.json", "README.md" };
    char p[4200];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* --method: the merge into a temporary f32 folder, then sqz_quantize to o->out. */
static int merge_quantize(sqz_ctx *ctx, const opts *o, const sqz_merge_opts *mo, sqz_merge_result *r,
                          sqz_quantize_result *qr) {
    const size_t n = strlen(o->out);
    if (n < 5 || strcmp(o->out + n - 5, ".gguf"))
        return cli_die("--method quantizes a GGUF output: -o OUT.gguf");
    const int needs_calib = sqz_quant_method_needs_calib(o->method);
    if (needs_calib < 0) return cli_die("unknown quantization method '%s' (see sqz quantize --help)", o->method);
    if (needs_calib && !o->calib) return cli_die("--method %s needs calibration text: --calib FILE", o->method);
    const char *type = o->type ? o->type : sqz_quant_method_default_type(o->method);
    if (!type) return cli_die("--method %s needs --type", o->method);
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.merge.XXXXXX", o->out) >= sizeof tmp || !mkdtemp(tmp))
        return cli_die("%s: cannot create a temporary folder beside it", o->out);
    sqz_merge_opts f32 = *mo;
    f32.type = "f32";
    int rc = 0;
    sqz_model *m = NULL;
    int32_t *ids = NULL, *spread = NULL;
    size_t n_ids = 0;
    if (sqz_merge_models(ctx, o->model, tmp, &f32, r)) {
        rc = cli_fail(ctx);
        goto done;
    }
    opts merged = *o;
    merged.model = tmp;
    if (needs_calib) {
        if ((rc = cli_load_model_text(ctx, &merged, o->calib, 0, &m, &ids, &n_ids, NULL))) goto done;
    } else if (sqz_model_load(ctx, tmp, NULL, &m)) {
        rc = cli_fail(ctx);
        goto done;
    }
    size_t n_spread = 0;
    int calib_ctx = o->calib_ctx > 0 ? o->calib_ctx : 512;
    if (needs_calib && (rc = cli_calib_windows(o, ids, n_ids, 0, &spread, &n_spread, &calib_ctx))) goto done;
    sqz_quantize_opts qo = { .method = o->method, .type = type, .pure = o->pure, .calib = spread,
                             .n_calib = n_spread, .calib_ctx = calib_ctx };
    if (sqz_quantize(ctx, m, o->out, &qo, qr)) rc = cli_fail(ctx);
    r->out_bytes = qr->convert.file_bytes;
done:
    sqz_model_free(m);
    sqz_free(ids);
    free(spread);
    remove_folder(tmp);
    return rc;
}

/* The last component of a path, for the table. */
static const char *short_name(const char *p, char *buf, size_t cap) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && p[s - 1] != '/') s--;
    snprintf(buf, cap, "%.*s", (int)(n - s), p + s);
    return buf;
}

/* --eval DOMAIN=TEXT ...: the table of sqz_merge_evaluate, on stdout (text), or added to j. */
static int merge_eval(sqz_ctx *ctx, const opts *o, const char *config, const char *merged, cJSON *j) {
    const char *dom[64], *txt[64];
    char buf[64][128];
    for (int d = 0; d < o->n_eval; d++) {
        const char *eq = strchr(o->eval[d], '=');
        if (!eq || eq == o->eval[d] || !eq[1] || (size_t)(eq - o->eval[d]) >= sizeof buf[d])
            return cli_die("--eval %s: want DOMAIN=TEXT", o->eval[d]);
        snprintf(buf[d], sizeof buf[d], "%.*s", (int)(eq - o->eval[d]), o->eval[d]);
        dom[d] = buf[d], txt[d] = eq + 1;
    }
    const sqz_merge_eval_opts eo = { .n_ctx = o->n_ctx, .max_tokens = o->max_tokens > 0 ? (size_t)o->max_tokens : 0 };
    sqz_merge_eval *e = NULL;
    if (sqz_merge_evaluate(ctx, config, merged, o->n_eval, dom, txt, &eo, &e)) return cli_fail(ctx);
    const int D = e->n_domains;
    char nm[256];
    if (j) {
        cJSON *ev = cJSON_AddObjectToObject(j, "eval"), *rows = cJSON_AddArrayToObject(ev, "rows");
        cJSON *ds = cJSON_AddArrayToObject(ev, "domains");
        for (int d = 0; d < D; d++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", e->domain[d]);
            cJSON_AddStringToObject(x, "text", txt[d]);
            cJSON_AddNumberToObject(x, "tokens", (double)e->tokens[d]);
            if (e->specialist[d] >= 0) cJSON_AddStringToObject(x, "specialist", e->row[e->specialist[d]]);
            cJSON_AddItemToArray(ds, x);
        }
        for (int i = 0; i < e->n_rows; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "model", e->row[i]);
            cJSON_AddStringToObject(r, "role", i == e->base_row ? "base" : i + 1 == e->n_rows ? "merge" : "input");
            cJSON *p = cJSON_AddObjectToObject(r, "ppl"), *k = cJSON_AddObjectToObject(r, "kld"),
                  *g = cJSON_AddObjectToObject(r, "r");
            for (int d = 0; d < D; d++) {
                cJSON_AddNumberToObject(p, e->domain[d], e->ppl[i * D + d]);
                if (!isnan(e->kld[i * D + d])) cJSON_AddNumberToObject(k, e->domain[d], e->kld[i * D + d]);
                if (!isnan(e->r[i * D + d])) cJSON_AddNumberToObject(g, e->domain[d], e->r[i * D + d]);
            }
            cJSON_AddItemToArray(rows, r);
        }
    } else {
        printf("%-28s", "");
        for (int d = 0; d < D; d++) printf(" | %-26.26s", e->domain[d]);
        printf("\n%-28s", "model");
        for (int d = 0; d < D; d++) printf(" | %9s %8s %7s", "ppl", "KL", "R_d");
        printf("\n");
        for (int i = 0; i < e->n_rows; i++) {
            char label[300];
            snprintf(label, sizeof label, "%s%s", short_name(e->row[i], nm, sizeof nm),
                     i == e->base_row ? " (base)" : i + 1 == e->n_rows ? " (merge)" : "");
            printf("%-28.28s", label);
            for (int d = 0; d < D; d++) {
                const double k = e->kld[i * D + d], r = e->r[i * D + d];
                printf(" | %9.3f ", e->ppl[i * D + d]);
                if (isnan(k)) printf("%8s ", "-"); else printf("%8.4f ", k);
                if (isnan(r)) printf("%7s", "-"); else printf("%7.3f", r);
            }
            printf("\n");
        }
        double mn = INFINITY, sum = 0;
        int n = 0;
        for (int d = 0; d < D; d++) {
            const double r = e->r[(e->n_rows - 1) * D + d];
            if (isnan(r)) continue;
            mn = r < mn ? r : mn, sum += r, n++;
        }
        printf("tokens scored:");
        for (int d = 0; d < D; d++) printf(" %s %zu%s", e->domain[d], e->tokens[d], d + 1 < D ? "," : "");
        printf(" (windows of %d)\n", o->n_ctx > 0 ? o->n_ctx : 256);
        if (n) printf("merge: R_d min %.3f, mean %.3f over %d domains\n", mn, sum / n, n);
    }
    sqz_merge_eval_free(e);
    return 0;
}

/* --continual STATE MODEL: MODEL added to the running opcm merge in STATE. */
static int merge_continual(sqz_ctx *ctx, const opts *o) {
    if (o->out) return cli_die("--continual updates STATE in place: no -o (the folder is the merged model)");
    if (o->method || o->extract_set || o->from || o->calib) return cli_die("--continual takes MODEL, --type and --eval only");
    const sqz_merge_opts mo = { .type = o->type };
    sqz_merge_result r;
    if (sqz_merge_continual(ctx, o->continual, o->model, &mo, &r)) return cli_fail(ctx);
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "state", o->continual);
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "method", r.method);
        cJSON_AddNumberToObject(j, "n_models", r.n_models);
        cJSON_AddNumberToObject(j, "n_tensors", r.n_tensors);
        cJSON_AddNumberToObject(j, "n_params", (double)r.n_params);
        cJSON_AddNumberToObject(j, "out_bytes", (double)r.out_bytes);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        if (o->n_eval && merge_eval(ctx, o, o->continual, NULL, j)) {
            cJSON_Delete(j);
            return 1;
        }
        cli_print_json(j);
    } else {
        if (o->n_eval && merge_eval(ctx, o, o->continual, NULL, NULL)) return 1;
        fprintf(stderr, "sqz: %s: %s merge of %d models now, %.2f MB (%.1f s, peak RSS %.0f MiB)\n",
                o->continual, r.method, r.n_models, (double)r.out_bytes / 1e6, r.seconds, cli_peak_rss_mib());
    }
    return 0;
}

int cmd_merge(sqz_ctx *ctx, const opts *o) {
    if (o->continual) return merge_continual(ctx, o);
    if (!o->out) return cli_die("merge needs an output: -o OUT (a folder, or OUT.gguf)");
    if (o->tokenizer) return cli_die("merge takes its tokenizer from the config (tokenizer_source)");
    if ((o->calib_tokens || o->calib_ctx) && !o->calib && !o->n_task_calib)
        return cli_die("--calib-tokens and --calib-ctx go with --calib or --task-calib");
    if (o->method && o->extract_set) return cli_die("--method and --extract: one at a time");
    if (o->n_eval && o->extract_set) return cli_die("--eval goes with a merge, not --extract");
    if ((o->n_ctx || o->max_tokens) && !o->n_eval && !o->n_tune)
        return cli_die("--ctx and --max-tokens go with --eval or --tune");
    const char *tdom[64], *ttxt[64];
    char tbuf[64][128];
    for (int d = 0; d < o->n_tune; d++) {
        const char *eq = strchr(o->tune[d], '=');
        if (!eq || eq == o->tune[d] || !eq[1] || (size_t)(eq - o->tune[d]) >= sizeof tbuf[d])
            return cli_die("--tune %s: want DOMAIN=TRAIN_TEXT", o->tune[d]);
        snprintf(tbuf[d], sizeof tbuf[d], "%.*s", (int)(eq - o->tune[d]), o->tune[d]);
        tdom[d] = tbuf[d], ttxt[d] = eq + 1;
    }
    if (o->n_tune && (o->extract_set || o->method)) return cli_die("--tune goes with a tall_masks merge");
    const char *cdom[64], *ctxt[64];
    char cbuf[64][128];
    for (int d = 0; d < o->n_task_calib; d++) {
        const char *eq = strchr(o->task_calib[d], '=');
        if (!eq || eq == o->task_calib[d] || !eq[1] || (size_t)(eq - o->task_calib[d]) >= sizeof cbuf[d])
            return cli_die("--task-calib %s: want DOMAIN=TEXT", o->task_calib[d]);
        snprintf(cbuf[d], sizeof cbuf[d], "%.*s", (int)(eq - o->task_calib[d]), o->task_calib[d]);
        cdom[d] = cbuf[d], ctxt[d] = eq + 1;
    }
    const sqz_merge_opts mo = { .type = o->type, .pure = o->pure, .seed = o->seed, .n_tune = o->n_tune,
                                .tune_domain = tdom, .tune_text = ttxt, .tune_ctx = o->n_ctx,
                                .tune_tokens = o->max_tokens > 0 ? (size_t)o->max_tokens : 0,
                                /* a merge method that needs activations (pleas) reads it too */
                                .calib = o->calib, .calib_shared = o->method != NULL,
                                .calib_tokens = o->calib_tokens > 0 ? (size_t)o->calib_tokens : 0,
                                .calib_ctx = o->calib_ctx, .n_task_calib = o->n_task_calib,
                                .task_calib_domain = cdom, .task_calib_text = ctxt };
    sqz_merge_result r;
    sqz_quantize_result qr = { 0 };
    if (o->from && !o->extract_set) return cli_die("--from goes with --extract TASK");
    if (o->extract_set && !o->from) return cli_die("--extract needs the merged folder: --from DIR");
    if (o->method) {
        if (merge_quantize(ctx, o, &mo, &r, &qr)) return 1;
    } else if (o->extract_set ? sqz_merge_extract(ctx, o->model, o->from, o->extract, o->out, &mo, &r)
                              : sqz_merge_models(ctx, o->model, o->out, &mo, &r)) {
        return cli_fail(ctx);
    }
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "config", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "method", r.method);
        if (o->method) {
            cJSON_AddStringToObject(j, "quant_method", o->method);
            cJSON_AddNumberToObject(j, "calib_tokens", (double)qr.calib_tokens);
            cJSON_AddNumberToObject(j, "quant_seconds", qr.calib_seconds + qr.quant_seconds + qr.convert.seconds);
        }
        cJSON_AddNumberToObject(j, "n_models", r.n_models);
        cJSON_AddNumberToObject(j, "n_tensors", r.n_tensors);
        cJSON_AddNumberToObject(j, "n_params", (double)r.n_params);
        cJSON_AddNumberToObject(j, "max_tensor_elems", (double)r.max_tensor_elems);
        cJSON_AddNumberToObject(j, "out_bytes", (double)r.out_bytes);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        if (o->n_tune) {
            cJSON *tu = cJSON_AddArrayToObject(j, "tuned");
            for (int t = 0; t < r.n_tuned; t++) {
                cJSON *x = cJSON_CreateObject();
                if (!isnan(r.tuned_mask_lambda[t])) cJSON_AddNumberToObject(x, "mask_lambda", r.tuned_mask_lambda[t]);
                cJSON *pp = cJSON_AddObjectToObject(x, "ppl");
                for (int k = 0; k < r.n_tune_grid && !isnan(r.tuned_mask_lambda[t]); k++) {
                    char key[32];
                    snprintf(key, sizeof key, "%g", r.tune_grid[k]);
                    cJSON_AddNumberToObject(pp, key, r.tune_ppl[t][k]);
                }
                cJSON_AddItemToArray(tu, x);
            }
        }
        if (o->n_eval && merge_eval(ctx, o, o->model, o->out, j)) {
            cJSON_Delete(j);
            return 1;
        }
        cli_print_json(j);
    } else {
        for (int t = 0; o->n_tune && t < r.n_tuned; t++) {
            if (isnan(r.tuned_mask_lambda[t])) {
                fprintf(stderr, "sqz: task %d: no --tune text, mask_lambda as configured\n", t);
                continue;
            }
            fprintf(stderr, "sqz: task %d: mask_lambda %g (ppl", t, r.tuned_mask_lambda[t]);
            for (int k = 0; k < r.n_tune_grid; k++) fprintf(stderr, " %g: %.3f", r.tune_grid[k], r.tune_ppl[t][k]);
            fprintf(stderr, ")\n");
        }
        if (o->n_eval && merge_eval(ctx, o, o->model, o->out, NULL)) return 1;
        fprintf(stderr, "sqz: wrote %s: %s of %d models%s%s, %d tensors, %.2f MB (%.1f s, peak RSS %.0f MiB)\n",
                o->out, r.method, r.n_models, o->method ? ", quantized by " : "", o->method ? o->method : "",
                r.n_tensors, (double)r.out_bytes / 1e6, r.seconds, cli_peak_rss_mib());
    }
    return 0;
}
