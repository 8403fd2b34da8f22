/* cmd_merge.c - sqz merge CONFIG.yaml -o OUT [--type T] [--seed S]: a mergekit config run by
 * sqz_merge_models; OUT is a Hugging Face folder, or a GGUF file when it ends in .gguf.
 * With --extract TASK --from DIR: task TASK rebuilt from the tall_masks merge in DIR.
 * With --continual STATE MODEL: MODEL added to the running opcm merge in folder STATE.
 * With --method M [--calib FILE]: merge and quantize in one command - the merge goes to an f32
 * folder beside OUT.gguf, which sqz_quantize then quantizes with calibration data, and the
 * folder is removed. (The two library calls are composed here, at the top, because merge and
 * quant are peer layers that may not call each other.) */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void remove_folder(const char *dir) {
    const char *files[] = { "config.json", "model.safetensors", "tokenizer.json" };
    char p[4200];
    for (int i = 0; i < 3; i++) {
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
    const size_t want = o->calib_tokens > 0 ? (size_t)o->calib_tokens : 32768;
    const int calib_ctx = o->calib_ctx > 0 ? o->calib_ctx : 512;
    spread = needs_calib ? malloc((want < n_ids ? want : n_ids) * sizeof *spread + 1) : NULL;
    const size_t n_spread = spread ? sqz_calib_spread(ids, n_ids, want, calib_ctx, spread) : 0;
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

/* --continual STATE MODEL: MODEL added to the running opcm merge in STATE. */
static int merge_continual(sqz_ctx *ctx, const opts *o) {
    if (o->out) return cli_die("--continual updates STATE in place: no -o (the folder is the merged model)");
    if (o->method || o->extract_set || o->from || o->calib) return cli_die("--continual takes MODEL and --type only");
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
        cli_print_json(j);
    } else {
        fprintf(stderr, "sqz: %s: %s merge of %d models now, %.2f MB (%.1f s, peak RSS %.0f MiB)\n",
                o->continual, r.method, r.n_models, (double)r.out_bytes / 1e6, r.seconds, cli_peak_rss_mib());
    }
    return 0;
}

int cmd_merge(sqz_ctx *ctx, const opts *o) {
    if (o->continual) return merge_continual(ctx, o);
    if (!o->out) return cli_die("merge needs an output: -o OUT (a folder, or OUT.gguf)");
    if (o->tokenizer) return cli_die("merge takes its tokenizer from the config (tokenizer_source)");
    if ((o->calib || o->calib_tokens || o->calib_ctx) && !o->method)
        return cli_die("--calib goes with --method (merge and quantize)");
    if (o->method && o->extract_set) return cli_die("--method and --extract: one at a time");
    const sqz_merge_opts mo = { .type = o->type, .pure = o->pure, .seed = o->seed };
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
        cli_print_json(j);
    } else {
        fprintf(stderr, "sqz: wrote %s: %s of %d models%s%s, %d tensors, %.2f MB (%.1f s, peak RSS %.0f MiB)\n",
                o->out, r.method, r.n_models, o->method ? ", quantized by " : "", o->method ? o->method : "",
                r.n_tensors, (double)r.out_bytes / 1e6, r.seconds, cli_peak_rss_mib());
    }
    return 0;
}
