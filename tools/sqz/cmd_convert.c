/* cmd_convert.c - sqz convert MODEL -o OUT.gguf --type TYPE [--pure]: write a GGUF file that
 * llama.cpp runs, every weight in TYPE (or llama.cpp's mix of that name). */
#include <stdlib.h>

#include "cli.h"

int cmd_convert(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("convert needs an output file: -o OUT.gguf");
    if (!o->type) return cli_die("convert needs a type: --type f16|q8_0|q4_0|q4_k|q4_k_m|...");
    sqz_model *m;
    if (cli_load_model(ctx, o, &m)) return 1;
    sqz_convert_opts co = { .type = o->type, .pure = o->pure, .embd_type = o->embd_type };
    sqz_convert_result r;
    sqz_status st = sqz_convert(ctx, m, o->out, &co, &r);
    sqz_model_free(m);
    if (st) return cli_fail(ctx);
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "type", o->type);
        cJSON_AddBoolToObject(j, "pure", o->pure);
        cJSON_AddNumberToObject(j, "file_bytes", (double)r.file_bytes);
        cJSON_AddNumberToObject(j, "n_params", (double)r.n_params);
        cJSON_AddNumberToObject(j, "bits_per_weight", r.bits_per_weight);
        cJSON_AddNumberToObject(j, "n_tensors", r.n_tensors);
        cJSON_AddNumberToObject(j, "n_fallback", r.n_fallback);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cli_print_json(j);
    } else {
        fprintf(stderr, "sqz: wrote %s: %d tensors, %.2f MB, %.2f bits per weight%s (%.1f s, "
                        "peak RSS %.0f MiB)\n",
                o->out, r.n_tensors, (double)r.file_bytes / 1e6, r.bits_per_weight,
                r.n_fallback ? ", some tensors in a fallback type" : "", r.seconds, cli_peak_rss_mib());
    }
    return 0;
}
