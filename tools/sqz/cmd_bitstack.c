/* cmd_bitstack.c - sqz bitstack MODEL -o OUT.sqzf --calib FILE [--rank R] [--iters K]
 * [--calib-tokens N --calib-ctx N --sort-windows N]: BitStack's decomposition and block order
 * (include/sqz.h, sqz_bitstack; docs/bitstack.md). Any command then loads OUT at a size with
 * --memory M. */
#include <stdlib.h>

#include "cli.h"

int cmd_bitstack(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("bitstack needs an output file: -o OUT.sqzf");
    if (!o->calib) return cli_die("bitstack needs calibration text: --calib FILE");
    sqz_model *mdl;
    int32_t *spread;
    size_t n_spread;
    int calib_ctx;
    if (cli_load_model_calib(ctx, o, CLI_CALIB_TEXT, &mdl, &spread, &n_spread, &calib_ctx)) return 1;
    const sqz_bitstack_opts bo = { .calib = spread, .n_calib = n_spread, .calib_ctx = calib_ctx, .rank = o->bs_rank,
                                   .iters = o->bs_iters, .sort_windows = o->bs_sort_windows };
    sqz_bitstack_result r;
    const double t0 = cli_now();
    const sqz_status st = sqz_bitstack(ctx, mdl, o->out, &bo, &r);
    const double secs = cli_now() - t0;
    free(spread);
    sqz_model_free(mdl);
    if (st) return cli_fail(ctx);
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddNumberToObject(j, "rank", r.rank);
        cJSON_AddNumberToObject(j, "iters", r.iters);
        cJSON_AddNumberToObject(j, "matrices", r.n_matrices);
        cJSON_AddNumberToObject(j, "blocks", r.n_blocks);
        cJSON_AddNumberToObject(j, "file_bytes", (double)r.file_bytes);
        cJSON_AddNumberToObject(j, "fixed_bytes", (double)r.fixed_bytes);
        cJSON_AddNumberToObject(j, "min_bytes", (double)r.min_bytes);
        cJSON_AddNumberToObject(j, "block_bytes", (double)r.block_bytes);
        cJSON_AddNumberToObject(j, "rel_err_first", r.rel_err_first);
        cJSON_AddNumberToObject(j, "rel_err_last", r.rel_err_last);
        cJSON_AddNumberToObject(j, "calib_tokens", (double)r.calib_tokens);
        cJSON_AddNumberToObject(j, "decompose_seconds", r.decompose_seconds);
        cJSON_AddNumberToObject(j, "sort_seconds", r.sort_seconds);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cli_print_json(j);
    } else {
        fprintf(stderr,
                "sqz: wrote %s: %.2f MB, %d matrices x %d blocks of rank %d; sizes from %.2f MiB (every matrix's first block) to "
                "%.2f MiB (every block); mean rel. error of the scaled matrices %.4f after one block, %.4f after %d; "
                "%zu calibration tokens; decomposition %.1f s, sort %.1f s; peak RSS %.0f MiB\n",
                o->out, (double)r.file_bytes / 1e6, r.n_matrices, r.iters, r.rank, (double)r.min_bytes / 1048576.0,
                (double)(r.fixed_bytes + r.block_bytes) / 1048576.0, r.rel_err_first, r.rel_err_last, r.iters,
                r.calib_tokens, r.decompose_seconds, r.sort_seconds, cli_peak_rss_mib());
    }
    return 0;
}
