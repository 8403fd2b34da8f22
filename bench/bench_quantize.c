/* bench_quantize.c - how long whole-model GPTQ takes, and how it grows with the model.
 *
 *   build/bench/bench_quantize [--models DIR1,DIR2,...] [--type q4_k_m] [--method gptq]
 *                              [--calib FILE] [--calib-tokens 32768] [--calib-ctx 512]
 *                              [--threads 2] [--out /tmp/sqz-bench-quantize.gguf]
 *
 * For each model (default: ../shared/models/sqz-llama-14m and -26m), sqz_quantize through the
 * public API with the calibration text's first N tokens; reports the statistics time (forward
 * passes + H = X^T X), the quantizers' time, the total, parameters, seconds per million
 * parameters (linear growth: equal across models), and the process's peak RSS after it.
 * The goal: GPTQ of sqz-llama-26m in <= 60 s on this machine's 2 cores.
 * Output: a human table on stderr, one JSON object on stdout; other_processes_cores as in the
 * other benches (discard runs above 0.1).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqz.h"
#include "bench_util.h"

enum { MAX_MODELS = 8 };

int main(int argc, char **argv) {
    const char *shared = getenv("SQZ_SHARED") ? getenv("SQZ_SHARED") : "../shared";
    char models_buf[4096], calib_buf[1024];
    snprintf(models_buf, sizeof models_buf, "%s/models/sqz-llama-14m,%s/models/sqz-llama-26m", shared, shared);
    snprintf(calib_buf, sizeof calib_buf, "%s/data/calib/calib-1m.txt", shared);
    const char *type = "q4_k_m", *method = "gptq", *calib = calib_buf, *out = "/tmp/sqz-bench-quantize.gguf";
    char *models = models_buf;
    int threads = 2, calib_ctx = 512;
    size_t calib_tokens = 32768;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "bench_quantize: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--models")) models = argv[++i];
        else if (!strcmp(a, "--type")) type = argv[++i];
        else if (!strcmp(a, "--method")) method = argv[++i];
        else if (!strcmp(a, "--calib")) calib = argv[++i];
        else if (!strcmp(a, "--calib-tokens")) calib_tokens = (size_t)atol(argv[++i]);
        else if (!strcmp(a, "--calib-ctx")) calib_ctx = atoi(argv[++i]);
        else if (!strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--out")) out = argv[++i];
        else { fprintf(stderr, "bench_quantize: unknown option %s\n", a); return 2; }
    }
    size_t text_len = 0;
    char *text = read_file(calib, &text_len);
    if (!text) { fprintf(stderr, "bench_quantize: cannot read %s\n", calib); return 1; }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, threads);
    cJSON *root = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(root, "runs");
    cJSON_AddStringToObject(root, "method", method);
    cJSON_AddStringToObject(root, "type", type);
    cJSON_AddNumberToObject(root, "threads", threads);
    cJSON_AddNumberToObject(root, "calib_tokens", (double)calib_tokens);
    cJSON_AddNumberToObject(root, "calib_ctx", calib_ctx);
    fprintf(stderr, "%-40s %10s %8s %8s %8s %10s %8s %7s\n", "model", "params", "stats_s", "quant_s",
            "total_s", "s/Mparam", "rss_MiB", "others");
    int rc = 0;
    for (char *m = strtok(models, ","); m; m = strtok(NULL, ",")) {
        sqz_model *model = NULL;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (sqz_model_load(ctx, m, NULL, &model) ||
            sqz_tokenize(ctx, model, text, text_len, 0, &ids, &n_ids)) {
            fprintf(stderr, "bench_quantize: %s\n", sqz_ctx_error(ctx));
            sqz_model_free(model);
            rc = 1;
            continue;
        }
        int32_t *spread = malloc((calib_tokens < n_ids ? calib_tokens : n_ids) * sizeof *spread + 1);
        sqz_quantize_opts qo = { .method = method, .type = type, .calib = spread,
                                 .n_calib = spread ? sqz_calib_spread(ids, n_ids, calib_tokens, calib_ctx, spread) : 0,
                                 .calib_ctx = calib_ctx };
        sqz_quantize_result r;
        const cpu_mark c0 = cpu_now();
        const double t0 = now();
        const sqz_status st = sqz_quantize(ctx, model, out, &qo, &r);
        const double total = now() - t0;
        const double others = others_cores(c0, cpu_now());
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        if (st) {
            fprintf(stderr, "bench_quantize: %s: %s\n", m, sqz_ctx_error(ctx));
            rc = 1;
        } else {
            sqz_model_info info;
            sqz_model_get_info(model, &info);
            const double per_m = total / ((double)info.n_params / 1e6);
            fprintf(stderr, "%-40s %10llu %8.1f %8.1f %8.1f %10.3f %8.0f %7.2f%s\n", m,
                    (unsigned long long)info.n_params, r.calib_seconds, r.quant_seconds, total, per_m,
                    ru.ru_maxrss / 1024.0, others, others > 0.1 ? "  WARNING: machine busy" : "");
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", m);
            cJSON_AddNumberToObject(o, "n_params", (double)info.n_params);
            cJSON_AddNumberToObject(o, "calib_tokens_used", (double)r.calib_tokens);
            cJSON_AddNumberToObject(o, "stats_seconds", r.calib_seconds);
            cJSON_AddNumberToObject(o, "quant_seconds", r.quant_seconds);
            cJSON_AddNumberToObject(o, "total_seconds", total);
            cJSON_AddNumberToObject(o, "seconds_per_million_params", per_m);
            cJSON_AddNumberToObject(o, "file_bytes", (double)r.convert.file_bytes);
            cJSON_AddNumberToObject(o, "peak_rss_mib_so_far", ru.ru_maxrss / 1024.0);
            cJSON_AddNumberToObject(o, "other_processes_cores", others);
            cJSON_AddItemToArray(rows, o);
        }
        sqz_free(ids);
        free(spread);
        sqz_model_free(model);
    }
    remove(out);
    char *js = cJSON_PrintUnformatted(root);
    puts(js);
    free(js);
    cJSON_Delete(root);
    sqz_ctx_free(ctx);
    free(text);
    return rc;
}
