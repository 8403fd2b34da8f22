/* cmd_prune.c - sqz prune MODEL -o OUT.gguf --method magnitude|wanda|sparsegpt[:k=v,..]
 * --density D | --nm N:M | --levels JSON [--calib FILE --calib-tokens N --calib-ctx N]
 * [--type T]: removes weights of the block matrices (include/sqz.h, sqz_prune), with a
 * per-matrix report. --type sp8 stores the pruned matrices as sqz's sparse int8 format in sqzf
 * (docs/sparse.md; the rest q8_0); any other type writes a dense GGUF with the zeros stored. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct report {
    cJSON *rows; /* --json: array of {name, level, rel_err}; else printed */
} report;

static void on_tensor(void *user, const char *name, const char *level, double rel_err) {
    report *r = user;
    if (r->rows) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", name);
        cJSON_AddStringToObject(e, "level", level);
        if (rel_err >= 0) cJSON_AddNumberToObject(e, "rel_err", rel_err);
        cJSON_AddItemToArray(r->rows, e);
    } else if (rel_err >= 0) {
        fprintf(stderr, "  %-28s %-6s rel. output error %.4f\n", name, level, rel_err);
    } else {
        fprintf(stderr, "  %-28s %-6s\n", name, level);
    }
}

int cmd_prune(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("prune needs an output file: -o OUT.gguf");
    const char *method = o->method ? o->method : "sparsegpt";
    const int needs_calib = sqz_pruner_needs_calib(method);
    if (needs_calib < 0) {
        char known[128] = "";
        for (int i = 0; sqz_pruner_name(i); i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", sqz_pruner_name(i));
        return cli_die("unknown pruning method '%s' (%s)", method, known);
    }
    int n = 0, m = 0;
    if (o->nm) {
        char tail;
        if (sscanf(o->nm, "%d:%d%c", &n, &m, &tail) != 2 || n <= 0 || m <= n)
            return cli_die("--nm %s: expected N:M with 0 < N < M (2:4, 4:8)", o->nm);
    }
    if (o->nm && o->density > 0) return cli_die("prune takes --density or --nm, not both");
    if (!o->nm && !(o->density > 0) && !o->levels) return cli_die("prune needs --density D, --nm N:M or --levels JSON");
    if (needs_calib && !o->calib) return cli_die("--method %s needs calibration text: --calib FILE", method);
    sqz_model *mdl;
    int32_t *spread;
    size_t n_spread;
    int calib_ctx;
    if (cli_load_model_calib(ctx, o, o->calib ? CLI_CALIB_TEXT : 0, &mdl, &spread, &n_spread, &calib_ctx)) return 1;
    sqz_model_info mi;
    sqz_model_get_info(mdl, &mi);
    if (mi.absent_subblocks) { /* (sqz drop --attn / --mlp) */
        free(spread);
        sqz_model_free(mdl);
        return cli_die("%s: %d attention / MLP sub-blocks are dropped from this model (sqz drop), and prune needs them all",
                       o->model, mi.absent_subblocks);
    }
    /* the float option as the decimal the user wrote (0.7f is 0.69999999) */
    char dbuf[32];
    snprintf(dbuf, sizeof dbuf, "%.7g", (double)o->density);
    report rep = { o->json ? cJSON_CreateArray() : NULL };
    sqz_prune_opts po = { .method = method, .density = o->nm ? 0 : strtod(dbuf, NULL), .nm_n = n, .nm_m = m,
                          .levels = o->levels, .type = o->type, .calib = spread, .n_calib = n_spread,
                          .calib_ctx = calib_ctx, .report = on_tensor, .report_user = &rep };
    sqz_prune_result r;
    const double t0 = cli_now();
    const sqz_status st = sqz_prune(ctx, mdl, o->out, &po, &r);
    const double secs = cli_now() - t0;
    free(spread);
    sqz_model_free(mdl);
    if (st) {
        cJSON_Delete(rep.rows);
        return cli_fail(ctx);
    }
    const double frac = r.block_params ? (double)r.pruned / (double)r.block_params : 0;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "method", method);
        if (o->nm) cJSON_AddStringToObject(j, "nm", o->nm);
        else if (o->density > 0) cJSON_AddNumberToObject(j, "density", po.density);
        if (o->levels) cJSON_AddStringToObject(j, "levels", o->levels);
        cJSON_AddStringToObject(j, "type", o->type ? o->type : "f16");
        cJSON_AddNumberToObject(j, "file_bytes", (double)r.convert.file_bytes);
        cJSON_AddNumberToObject(j, "bits_per_weight", r.convert.bits_per_weight);
        cJSON_AddNumberToObject(j, "block_params", (double)r.block_params);
        cJSON_AddNumberToObject(j, "pruned", (double)r.pruned);
        cJSON_AddNumberToObject(j, "pruned_frac", frac);
        cJSON_AddNumberToObject(j, "calib_tokens", (double)r.calib_tokens);
        cJSON_AddNumberToObject(j, "calib_seconds", r.calib_seconds);
        cJSON_AddNumberToObject(j, "prune_seconds", r.prune_seconds);
        cJSON_AddNumberToObject(j, "seconds", secs);
        if (r.mean_rel_err >= 0) cJSON_AddNumberToObject(j, "mean_rel_err", r.mean_rel_err);
        cJSON_AddItemToObject(j, "tensors", rep.rows);
        cli_print_json(j);
    } else {
        const int sp8 = o->type && !strcmp(o->type, "sp8");
        fprintf(stderr, "sqz: wrote %s: %.2f MB (%s); %.1f%% of the block weights removed; %zu calibration "
                        "tokens, statistics %.1f s, pruning %.1f s",
                o->out, (double)r.convert.file_bytes / 1e6,
                sp8 ? "sparse sp8 in sqzf, the rest q8_0" : o->type ? o->type : "dense f16", 100 * frac, r.calib_tokens,
                r.calib_seconds, r.prune_seconds);
        if (r.mean_rel_err >= 0) fprintf(stderr, "; mean rel. error %.4f", r.mean_rel_err);
        fprintf(stderr, "; peak RSS %.0f MiB\n", cli_peak_rss_mib());
    }
    return 0;
}
