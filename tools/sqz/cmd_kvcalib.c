/* cmd_kvcalib.c - sqz kvcalib MODEL -f CALIB_TEXT -o FILE.kvproj: the PCA projections of the
 * "proj" KV policy (see sqz_kv_calibrate_proj). The file keeps every channel (rank = head_dim)
 * by decreasing energy; the policy picks its rank at load: --kv proj:file=FILE,rank=R.
 * --calib-tokens N uses the first N tokens, --calib-ctx C runs windows of C tokens. */
#include <stdlib.h>

#include "cli.h"

int cmd_kvcalib(sqz_ctx *ctx, const opts *o) {
    const char *path = o->file ? o->file : o->calib;
    if (!path) return cli_die("%s", "kvcalib needs calibration text: -f FILE");
    if (!o->out) return cli_die("%s", "kvcalib needs an output file: -o FILE.kvproj");
    sqz_model *m;
    int32_t *ids;
    size_t n_ids;
    if (cli_load_model_text(ctx, o, path, 0, &m, &ids, &n_ids, NULL)) return 1;
    /* --calib-tokens N, or --max-tokens N as ppl and kvbench read it: the first N tokens */
    const long long lim = o->calib_tokens > 0 ? (long long)o->calib_tokens : (long long)o->max_tokens;
    if (lim > 0 && (size_t)lim < n_ids) n_ids = (size_t)lim;
    double t0 = cli_now();
    sqz_status st = sqz_kv_calibrate_proj(ctx, m, ids, n_ids, o->calib_ctx, 0, o->out);
    if (!st && !o->json)
        fprintf(stderr, "kvcalib: %zu tokens in %.1f s -> %s\n", n_ids, cli_now() - t0, o->out);
    free(ids);
    sqz_model_free(m);
    if (st) return cli_fail(ctx);
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddNumberToObject(j, "tokens", (double)n_ids);
        cli_print_json(j);
    }
    return 0;
}
