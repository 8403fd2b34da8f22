/* cmd_drop.c - sqz drop MODEL -o OUT.gguf --blocks N --calib FILE | --block-list 3,5 [--type T]:
 * whole blocks removed, ranked by block influence (include/sqz.h, sqz_drop); the result is a
 * llama GGUF with fewer blocks. Sub-blocks: --attn N and / or --mlp M (the least influence of
 * each kind), --sub N (of either kind) or --which attn:3,mlp:5; the result is sqzf
 * (docs/drop-subblocks.md). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* "attn:3,mlp:5" -> the two lists; 0, or 1 after the usage message */
static int parse_which(const char *spec, int *attn, int *n_attn, int *mlp, int *n_mlp) {
    const char *p = spec;
    *n_attn = *n_mlp = 0;
    while (*p) {
        int is_mlp;
        if (!strncmp(p, "attn:", 5)) is_mlp = 0, p += 5;
        else if (!strncmp(p, "mlp:", 4)) is_mlp = 1, p += 4;
        else return cli_die("--which %s: expected attn:LAYER or mlp:LAYER, separated by commas (attn:3,mlp:5)", spec);
        char *end;
        const long l = strtol(p, &end, 10);
        int *n = is_mlp ? n_mlp : n_attn;
        if (end == p || *p == '-' || *p == '+' || l > 65535 || (*end && *end != ',') || *n == 256)
            return cli_die("--which %s: expected attn:LAYER or mlp:LAYER, separated by commas (attn:3,mlp:5)", spec);
        (is_mlp ? mlp : attn)[(*n)++] = (int)l;
        p = *end ? end + 1 : end;
        if (*end && !*p) return cli_die("--which %s: a comma at the end", spec);
    }
    if (!*n_attn && !*n_mlp) return cli_die("--which %s: no sub-block", spec);
    return 0;
}

static cJSON *influence_or_null(double v) { return v >= 0 ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

int cmd_drop(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("drop needs an output file: -o OUT.gguf (sub-blocks: OUT.sqzf)");
    const int by_count = o->drop_attn_set || o->drop_mlp_set, by_sub = o->drop_sub > 0, by_which = o->drop_which != NULL;
    const int sub = by_count || by_sub || by_which;
    const int ways = (o->drop_n > 0) + (o->drop_list != NULL) + by_count + by_sub + by_which;
    if (ways != 1)
        return cli_die("drop takes --blocks N, --block-list LIST, --attn N / --mlp M, --sub N or --which LIST: one of them");
    if (by_count && o->drop_attn + o->drop_mlp == 0) return cli_die("--attn 0 --mlp 0: nothing to drop");
    if ((o->drop_n > 0 || by_count || by_sub) && !o->calib)
        return cli_die("%s ranks the %s on calibration text: --calib FILE",
                       o->drop_n > 0 ? "--blocks" : by_sub ? "--sub" : o->drop_attn_set ? "--attn" : "--mlp",
                       sub ? "sub-blocks" : "blocks");
    int list[256], n_list = 0, attn[256], n_attn = 0, mlp[256], n_mlp = 0;
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
    if (by_which && parse_which(o->drop_which, attn, &n_attn, mlp, &n_mlp)) return 1;
    sqz_model *mdl;
    int32_t *spread;
    size_t n_spread;
    int calib_ctx;
    const unsigned calib = o->calib ? CLI_CALIB_TEXT | CLI_CALIB_QUIET : 0;
    if (cli_load_model_calib(ctx, o, calib, &mdl, &spread, &n_spread, &calib_ctx)) return 1;
    sqz_drop_opts d = { .n_drop = o->drop_n, .blocks = n_list ? list : NULL, .n_blocks = n_list, .type = o->type,
                        .calib = spread, .n_calib = n_spread, .calib_ctx = calib_ctx,
                        .sub = sub, .n_attn = o->drop_attn, .n_mlp = o->drop_mlp, .n_sub = o->drop_sub,
                        .attn_list = n_attn ? attn : NULL, .n_attn_list = n_attn,
                        .mlp_list = n_mlp ? mlp : NULL, .n_mlp_list = n_mlp };
    sqz_drop_result *r = malloc(sizeof *r);
    const double t0 = cli_now();
    const sqz_status st = r ? sqz_drop(ctx, mdl, o->out, &d, r) : SQZ_ERR_NOMEM;
    const double secs = cli_now() - t0;
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
        cJSON_AddStringToObject(j, "type", o->type ? o->type : "types kept");
        cJSON_AddNumberToObject(j, "blocks_in", r->n_layers_in);
        cJSON_AddNumberToObject(j, "blocks_out", r->n_layers_out);
        cJSON *dr = cJSON_CreateArray(), *bi = cJSON_CreateArray();
        for (int l = 0; l < shown; l++) {
            if (r->dropped[l]) cJSON_AddItemToArray(dr, cJSON_CreateNumber(l));
            if (r->influence[l] >= 0) cJSON_AddItemToArray(bi, cJSON_CreateNumber(r->influence[l]));
        }
        cJSON_AddItemToObject(j, "dropped", dr);
        cJSON_AddItemToObject(j, "influence", bi);
        if (sub) {
            /* every sub-block of the input: its influence (null: not ranked, or absent) and fate */
            cJSON *sb = cJSON_CreateArray(), *da = cJSON_CreateArray(), *dm = cJSON_CreateArray();
            for (int l = 0; l < shown; l++)
                for (int k = 0; k < 2; k++) {
                    const int state = k ? r->mlp_dropped[l] : r->attn_dropped[l];
                    cJSON *e = cJSON_CreateObject();
                    cJSON_AddNumberToObject(e, "layer", l);
                    cJSON_AddStringToObject(e, "kind", k ? "mlp" : "attn");
                    cJSON_AddItemToObject(e, "influence", influence_or_null(k ? r->mlp_influence[l] : r->attn_influence[l]));
                    cJSON_AddStringToObject(e, "state", state == 1 ? "dropped" : state == 2 ? "absent" : "kept");
                    cJSON_AddItemToArray(sb, e);
                    if (state == 1) cJSON_AddItemToArray(k ? dm : da, cJSON_CreateNumber(l));
                }
            cJSON_AddItemToObject(j, "subblocks", sb);
            cJSON_AddItemToObject(j, "dropped_attn", da);
            cJSON_AddItemToObject(j, "dropped_mlp", dm);
            cJSON_AddBoolToObject(j, "sqzf", r->sqzf);
        }
        cJSON_AddNumberToObject(j, "file_bytes", (double)r->convert.file_bytes);
        cJSON_AddNumberToObject(j, "params", (double)r->convert.n_params);
        cJSON_AddNumberToObject(j, "calib_tokens", (double)r->calib_tokens);
        cJSON_AddNumberToObject(j, "calib_seconds", r->calib_seconds);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cli_print_json(j);
    } else {
        for (int l = 0; l < shown; l++) {
            if (!sub) {
                if (r->influence[l] >= 0)
                    fprintf(stderr, "  blk.%-3d block influence %.4f%s\n", l, r->influence[l], r->dropped[l] ? "  dropped" : "");
                continue;
            }
            char a[48], m[48];
            const char *fate[3] = { "", " dropped", " absent" };
            if (r->attn_influence[l] >= 0) snprintf(a, sizeof a, "%.4f%s", r->attn_influence[l], fate[r->attn_dropped[l]]);
            else snprintf(a, sizeof a, "-%s", fate[r->attn_dropped[l]]);
            if (r->mlp_influence[l] >= 0) snprintf(m, sizeof m, "%.4f%s", r->mlp_influence[l], fate[r->mlp_dropped[l]]);
            else snprintf(m, sizeof m, "-%s", fate[r->mlp_dropped[l]]);
            fprintf(stderr, "  blk.%-3d attention %-16s MLP %-16s", l, a, m);
            if (r->influence[l] >= 0) fprintf(stderr, " block %.4f", r->influence[l]);
            fprintf(stderr, "\n");
        }
        if (sub)
            fprintf(stderr, "sqz: wrote %s: %.2f MB (%s, %s), %d attention and %d MLP sub-blocks dropped, %d of %d blocks left; "
                            "%zu calibration tokens, %.1f s; peak RSS %.0f MiB\n",
                    o->out, (double)r->convert.file_bytes / 1e6, o->type ? o->type : "types kept", r->sqzf ? "sqzf" : "gguf",
                    r->n_attn_dropped, r->n_mlp_dropped, r->n_layers_out, r->n_layers_in, r->calib_tokens,
                    r->calib_seconds, cli_peak_rss_mib());
        else
            fprintf(stderr, "sqz: wrote %s: %.2f MB (%s), %d of %d blocks; %zu calibration tokens, %.1f s; peak RSS %.0f MiB\n",
                    o->out, (double)r->convert.file_bytes / 1e6, o->type ? o->type : "types kept", r->n_layers_out,
                    r->n_layers_in, r->calib_tokens, r->calib_seconds, cli_peak_rss_mib());
    }
    free(r);
    return 0;
}
