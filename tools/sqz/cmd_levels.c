/* cmd_levels.c - sqz levels MODEL -o DB --calib FILE: the level database sqz search reads
 * (include/sqz.h, sqz_levels_build). Stopped runs resume from DB.part. Under mpirun the ranks
 * split the levels; rank 0 writes and reports. */
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"

int cmd_levels(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("levels needs an output file: -o DB");
    if (!o->calib) return cli_die("levels quantizes with calibration text: --calib FILE");
    /* under mpirun: ranks share the cores, and only rank 0 reports */
    int world = 1, local = 1, rank = 0;
    const int launched = sqz_finetune_dp_launched(&world, &local, &rank);
    if (launched && o->threads <= 0) {
        const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        sqz_ctx_set_threads(ctx, ncpu / local > 1 ? (int)(ncpu / local) : 1);
    }
    if (rank != 0) sqz_ctx_set_progress(ctx, NULL, NULL);
    sqz_model *mdl;
    int32_t *spread;
    size_t n_spread;
    int calib_ctx;
    if (cli_load_model_calib(ctx, o, CLI_CALIB_TEXT, &mdl, &spread, &n_spread, &calib_ctx)) return 1;
    const sqz_levels_opts lo = { .calib = spread, .n_calib = n_spread, .calib_ctx = calib_ctx,
                                 .eval_windows = o->alloc_windows, .damp = o->damp,
                                 .plain_gptq = o->plain_gptq };
    sqz_levels_result r;
    const sqz_status st = sqz_levels_build(ctx, mdl, o->out, &lo, &r);
    free(spread);
    sqz_model_free(mdl);
    if (launched) sqz_finetune_dp_shutdown();
    if (st) return cli_fail(ctx);
    if (rank != 0) return 0;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "db", o->out);
        cJSON_AddNumberToObject(j, "matrices", r.n_items);
        cJSON_AddNumberToObject(j, "levels_measured", r.n_measured);
        cJSON_AddNumberToObject(j, "levels_resumed", r.n_resumed);
        cJSON_AddNumberToObject(j, "calib_tokens", (double)r.calib_tokens);
        cJSON_AddNumberToObject(j, "db_bytes", (double)r.db_bytes);
        cJSON_AddNumberToObject(j, "mpi_ranks", r.mpi_ranks);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cli_print_json(j);
    } else {
        fprintf(stderr, "sqz: wrote %s: %d matrices, %d levels measured (%d resumed), %.1f MB; %zu calibration "
                "tokens, %.1f s; peak RSS %.0f MiB\n", o->out, r.n_items, r.n_measured, r.n_resumed,
                (double)r.db_bytes / 1e6, r.calib_tokens, r.seconds, cli_peak_rss_mib());
    }
    return 0;
}
