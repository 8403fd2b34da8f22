/* cmd_merge.c - sqz merge CONFIG.yaml -o OUT [--type T] [--seed S]: a mergekit config run by
 * sqz_merge_models; OUT is a Hugging Face folder, or a GGUF file when it ends in .gguf.
 * With --extract TASK --from DIR: task TASK rebuilt from the tall_masks merge in DIR. */
#include "cli.h"

int cmd_merge(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("merge needs an output: -o OUT (a folder, or OUT.gguf)");
    if (o->tokenizer) return cli_die("merge takes its tokenizer from the config (tokenizer_source)");
    const sqz_merge_opts mo = { .type = o->type, .pure = o->pure, .seed = o->seed };
    sqz_merge_result r;
    if (o->from && !o->extract_set) return cli_die("--from goes with --extract TASK");
    if (o->extract_set && !o->from) return cli_die("--extract needs the merged folder: --from DIR");
    if (o->extract_set ? sqz_merge_extract(ctx, o->model, o->from, o->extract, o->out, &mo, &r)
                       : sqz_merge_models(ctx, o->model, o->out, &mo, &r))
        return cli_fail(ctx);
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "config", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "method", r.method);
        cJSON_AddNumberToObject(j, "n_models", r.n_models);
        cJSON_AddNumberToObject(j, "n_tensors", r.n_tensors);
        cJSON_AddNumberToObject(j, "n_params", (double)r.n_params);
        cJSON_AddNumberToObject(j, "max_tensor_elems", (double)r.max_tensor_elems);
        cJSON_AddNumberToObject(j, "out_bytes", (double)r.out_bytes);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cli_print_json(j);
    } else {
        fprintf(stderr, "sqz: wrote %s: %s of %d models, %d tensors, %.2f MB (%.1f s, peak RSS %.0f MiB)\n",
                o->out, r.method, r.n_models, r.n_tensors, (double)r.out_bytes / 1e6, r.seconds,
                cli_peak_rss_mib());
    }
    return 0;
}
