/* cmd_lowrank.c - sqz lowrank MODEL -o OUT.sqzf --params P | --rank-frac F | --energy E |
 * --levels JSON [--method svd|lord|asvd[:damp=D]] [--calib FILE --calib-tokens N --calib-ctx N]
 * [--type T]: the block matrices factored as B A (include/sqz.h, sqz_lowrank; docs/lowrank.md),
 * with a per-matrix report. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct report {
    cJSON *rows; /* --json: array of {name, rank, rel_err}; else printed */
} report;

static void on_tensor(void *user, const char *name, const char *rank, double rel_err) {
    report *r = user;
    if (r->rows) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", name);
        cJSON_AddStringToObject(e, "rank", rank);
        if (rel_err >= 0) cJSON_AddNumberToObject(e, "rel_err", rel_err);
        cJSON_AddItemToArray(r->rows, e);
    } else if (rel_err >= 0) {
        fprintf(stderr, "  %-28s %-7s rel. output error %.4f\n", name, rank, rel_err);
    } else {
        fprintf(stderr, "  %-28s %-7s\n", name, rank);
    }
}

/* the float option as the decimal the user wrote (0.7f is 0.69999999) */
static double as_written(float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)v);
    return strtod(buf, NULL);
}

int cmd_lowrank(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("lowrank needs an output file: -o OUT.sqzf");
    const char *method = o->method ? o->method : "asvd";
    const int needs_calib = sqz_lowrank_needs_calib(method);
    if (needs_calib < 0) {
        char known[128] = "";
        for (int i = 0; sqz_lowrank_method_name(i); i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     sqz_lowrank_method_name(i));
        return cli_die("unknown low-rank method '%s' (%s)", method, known);
    }
    const int n_targets = (o->lr_params > 0) + (o->rank_frac > 0) + (o->energy > 0);
    if (n_targets > 1) return cli_die("lowrank takes one of --params, --rank-frac and --energy");
    if (n_targets == 0 && !o->levels) return cli_die("lowrank needs --params P, --rank-frac F, --energy E or --levels JSON");
    if (needs_calib && !o->calib) return cli_die("--method %s needs calibration text: --calib FILE", method);
    sqz_model *mdl;
    int32_t *spread;
    size_t n_spread;
    int calib_ctx;
    if (cli_load_model_calib(ctx, o, o->calib ? CLI_CALIB_TEXT : 0, &mdl, &spread, &n_spread, &calib_ctx)) return 1;
    report rep = { o->json ? cJSON_CreateArray() : NULL };
    sqz_lowrank_opts lo = { .method = method,
                            .params = o->lr_params > 0 ? as_written(o->lr_params) : 0,
                            .rank_frac = o->rank_frac > 0 ? as_written(o->rank_frac) : 0,
                            .energy = o->energy > 0 ? as_written(o->energy) : 0,
                            .levels = o->levels, .type = o->type, .calib = spread, .n_calib = n_spread,
                            .calib_ctx = calib_ctx, .report = on_tensor, .report_user = &rep };
    sqz_lowrank_result r;
    const double t0 = cli_now();
    const sqz_status st = sqz_lowrank(ctx, mdl, o->out, &lo, &r);
    const double secs = cli_now() - t0;
    free(spread);
    sqz_model_free(mdl);
    if (st) {
        cJSON_Delete(rep.rows);
        return cli_fail(ctx);
    }
    const double frac = r.block_params ? (double)r.kept_params / (double)r.block_params : 0;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "method", method);
        if (lo.params > 0) cJSON_AddNumberToObject(j, "params", lo.params);
        if (lo.rank_frac > 0) cJSON_AddNumberToObject(j, "rank_frac", lo.rank_frac);
        if (lo.energy > 0) cJSON_AddNumberToObject(j, "energy", lo.energy);
        if (o->levels) cJSON_AddStringToObject(j, "levels", o->levels);
        cJSON_AddStringToObject(j, "type", o->type ? o->type : "f16");
        cJSON_AddNumberToObject(j, "file_bytes", (double)r.convert.file_bytes);
        cJSON_AddNumberToObject(j, "bits_per_weight", r.convert.bits_per_weight);
        cJSON_AddNumberToObject(j, "block_params", (double)r.block_params);
        cJSON_AddNumberToObject(j, "kept_params", (double)r.kept_params);
        cJSON_AddNumberToObject(j, "kept_frac", frac);
        cJSON_AddNumberToObject(j, "factored", r.n_factored);
        cJSON_AddNumberToObject(j, "dense", r.n_dense);
        cJSON_AddNumberToObject(j, "calib_tokens", (double)r.calib_tokens);
        cJSON_AddNumberToObject(j, "calib_seconds", r.calib_seconds);
        cJSON_AddNumberToObject(j, "factor_seconds", r.factor_seconds);
        cJSON_AddNumberToObject(j, "seconds", secs);
        if (r.mean_rel_err >= 0) cJSON_AddNumberToObject(j, "mean_rel_err", r.mean_rel_err);
        cJSON_AddItemToObject(j, "tensors", rep.rows);
        cli_print_json(j);
    } else {
        fprintf(stderr, "sqz: wrote %s: %.2f MB (%s factors in sqzf); %d matrices factored, %d dense; the block "
                        "matrices keep %.1f%% of their weights; %zu calibration tokens, statistics %.1f s, factoring "
                        "%.1f s",
                o->out, (double)r.convert.file_bytes / 1e6, o->type ? o->type : "f16", r.n_factored, r.n_dense,
                100 * frac, r.calib_tokens, r.calib_seconds, r.factor_seconds);
        if (r.mean_rel_err >= 0) fprintf(stderr, "; mean rel. error %.4f", r.mean_rel_err);
        fprintf(stderr, "; peak RSS %.0f MiB\n", cli_peak_rss_mib());
    }
    return 0;
}
