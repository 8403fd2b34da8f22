/* cmd_drop.c - sqz drop MODEL -o OUT.gguf --blocks N --calib FILE | --block-list 3,5 [--type T]:
 * whole blocks removed, ranked by block influence (include/sqz.h, sqz_drop); the result is a
 * llama GGUF with fewer blocks. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_drop(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("drop needs an output file: -o OUT.gguf");
    if ((o->drop_n > 0) == (o->drop_list != NULL)) return cli_die("drop takes --blocks N or --block-list LIST, one of them");
    if (o->drop_n > 0 && !o->calib) return cli_die("--blocks ranks the blocks on calibration text: --calib FILE");
    int list[256], n_list = 0;
    if (o->drop_list) {
        const char *p = o->drop_list;
        while (*p) {
            char *end;
            const long b = strtol(p, &end, 10);
            if (end == p || b < 0 || b > 65535 || (*end && *end != ',') || n_list == 256)
                return cli_die("--block-list %s: expected block numbers separated by commas (3,5)", o->drop_list);
            list[n_list++] = (int)b;
            p = *end ? end + 1 : end;
        }
        if (!n_list) return cli_die("--block-list %s: no block", o->drop_list);
    }
    sqz_model *mdl;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (o->calib) {
        if (cli_load_model_text(ctx, o, o->calib, 0, &mdl, &ids, &n_ids, NULL)) return 1;
    } else if (cli_load_model(ctx, o, &mdl)) {
        return 1;
    }
    const size_t want = o->calib_tokens > 0 ? (size_t)o->calib_tokens : 32768;
    const int calib_ctx = o->calib_ctx > 0 ? o->calib_ctx : 512;
    int32_t *spread = o->calib ? malloc((want < n_ids ? want : n_ids) * sizeof *spread + 1) : NULL;
    const size_t n_spread = spread ? sqz_calib_spread(ids, n_ids, want, calib_ctx, spread) : 0;
    sqz_drop_opts d = { .n_drop = o->drop_n, .blocks = n_list ? list : NULL, .n_blocks = n_list, .type = o->type,
                        .calib = spread, .n_calib = n_spread, .calib_ctx = calib_ctx };
    sqz_drop_result *r = malloc(sizeof *r);
    const double t0 = cli_now();
    const sqz_status st = r ? sqz_drop(ctx, mdl, o->out, &d, r) : SQZ_ERR_NOMEM;
    const double secs = cli_now() - t0;
    sqz_free(ids);
    free(spread);
    sqz_model_free(mdl);
    if (st) {
        free(r);
        return r ? cli_fail(ctx) : cli_die("out of memory");
    }
    const int shown = r->n_layers_in < 256 ? r->n_layers_in : 256;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "type", o->type ? o->type : "f16");
        cJSON_AddNumberToObject(j, "blocks_in", r->n_layers_in);
        cJSON_AddNumberToObject(j, "blocks_out", r->n_layers_out);
        cJSON *dr = cJSON_CreateArray(), *bi = cJSON_CreateArray();
        for (int l = 0; l < shown; l++) {
            if (r->dropped[l]) cJSON_AddItemToArray(dr, cJSON_CreateNumber(l));
            if (r->influence[l] >= 0) cJSON_AddItemToArray(bi, cJSON_CreateNumber(r->influence[l]));
        }
        cJSON_AddItemToObject(j, "dropped", dr);
        cJSON_AddItemToObject(j, "influence", bi);
        cJSON_AddNumberToObject(j, "file_bytes", (double)r->convert.file_bytes);
        cJSON_AddNumberToObject(j, "calib_tokens", (double)r->calib_tokens);
        cJSON_AddNumberToObject(j, "calib_seconds", r->calib_seconds);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cli_print_json(j);
    } else {
        for (int l = 0; l < shown; l++)
            if (r->influence[l] >= 0)
                fprintf(stderr, "  blk.%-3d block influence %.4f%s\n", l, r->influence[l], r->dropped[l] ? "  dropped" : "");
        fprintf(stderr, "sqz: wrote %s: %.2f MB (%s), %d of %d blocks; %zu calibration tokens, %.1f s; peak RSS %.0f MiB\n",
                o->out, (double)r->convert.file_bytes / 1e6, o->type ? o->type : "f16", r->n_layers_out,
                r->n_layers_in, r->calib_tokens, r->calib_seconds, cli_peak_rss_mib());
    }
    free(r);
    return 0;
}
