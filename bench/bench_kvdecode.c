/* bench_kvdecode.c - decode speed of KV cache policies at one long context, for profiling:
 *   build/bench/bench_kvdecode [-m MODEL] [-f TEXT] [-c CTX] [-s STEPS] [-t THREADS] SPEC...
 * Each policy's session is filled to CTX - STEPS positions with the text's tokens (batches of
 * 64), then STEPS single-token steps run round-robin over the policies (as sqz kvbench does, so
 * a loaded machine slows them alike). Prints the median ms per step and tokens/s on stderr and
 * one JSON object on stdout. Unlike kvbench it runs no perplexity, so `perf record` on it sees
 * decode and filling only; with BENCH_PERF_CTL=FIFO it writes "enable" to that fifo when the
 * timed steps start, for `perf record -D -1 --control fifo:FIFO` to see only them. */
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "sqz.h"

int main(int argc, char **argv) {
    const char *shared = getenv("SQZ_SHARED") ? getenv("SQZ_SHARED") : "../shared";
    char model[512], text[512];
    snprintf(model, sizeof model, "%s/models/sqz-llama-26m", shared);
    snprintf(text, sizeof text, "%s/data/domains/sotu.test.txt", shared);
    int C = 4096, steps = 32, threads = 1, n_specs = 0;
    const char *specs[32];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) snprintf(model, sizeof model, "%s", argv[++i]);
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) snprintf(text, sizeof text, "%s", argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) C = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (n_specs < 32) specs[n_specs++] = argv[i];
    }
    if (!n_specs) specs[n_specs++] = "f16";
    if (steps < 1 || steps >= C) {
        fprintf(stderr, "bench_kvdecode: need 1 <= steps < ctx\n");
        return 2;
    }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, threads);
    sqz_model *m;
    if (sqz_model_load(ctx, model, NULL, &m)) {
        fprintf(stderr, "bench_kvdecode: %s\n", sqz_ctx_error(ctx));
        return 1;
    }
    size_t len;
    char *t = read_file(text, &len);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!t || sqz_tokenize(ctx, m, t, len, 0, &ids, &n_ids) || n_ids < 2) {
        fprintf(stderr, "bench_kvdecode: cannot tokenize %s\n", text);
        return 1;
    }
    free(t);
    int32_t *toks = malloc((size_t)C * sizeof *toks);
    for (int i = 0; i < C; i++) toks[i] = ids[(size_t)i % n_ids];
    sqz_session **ss = calloc((size_t)n_specs, sizeof *ss);
    double *dt = malloc((size_t)n_specs * (size_t)steps * sizeof *dt);
    for (int i = 0; i < n_specs; i++) {
        if (sqz_session_new_kv(ctx, m, C, specs[i], &ss[i])) {
            fprintf(stderr, "bench_kvdecode: %s: %s\n", specs[i], sqz_ctx_error(ctx));
            return 1;
        }
        for (int p = 0; p < C - steps;) {
            const int n = C - steps - p < 64 ? C - steps - p : 64;
            if (sqz_session_eval(ss[i], toks + p, n, NULL, 0)) {
                fprintf(stderr, "bench_kvdecode: %s: %s\n", specs[i], sqz_ctx_error(ctx));
                return 1;
            }
            p += n;
        }
    }
    const char *ctl = getenv("BENCH_PERF_CTL");
    FILE *cf = ctl ? fopen(ctl, "w") : NULL;
    if (cf) fputs("enable\n", cf), fclose(cf);
    const cpu_mark a = cpu_now();
    for (int k = 0; k < steps; k++)
        for (int i = 0; i < n_specs; i++) {
            const double t0 = now();
            if (sqz_session_eval(ss[i], toks + C - steps + k, 1, NULL, 0)) {
                fprintf(stderr, "bench_kvdecode: %s: %s\n", specs[i], sqz_ctx_error(ctx));
                return 1;
            }
            dt[(size_t)i * steps + k] = now() - t0;
        }
    const double others = others_cores(a, cpu_now());
    printf("{\"ctx\": %d, \"steps\": %d, \"threads\": %d, \"other_processes_cores\": %.3f, "
           "\"rows\": [", C, steps, threads, others);
    for (int i = 0; i < n_specs; i++) {
        qsort(dt + (size_t)i * steps, (size_t)steps, sizeof *dt, cmp_double);
        const double med = dt[(size_t)i * steps + steps / 2];
        fprintf(stderr, "%-40s %8.3f ms/token %8.1f tokens/s\n", specs[i], 1e3 * med, 1 / med);
        printf("%s{\"policy\": \"%s\", \"ms\": %.4f, \"tps\": %.2f}", i ? ", " : "", specs[i],
               1e3 * med, 1 / med);
        sqz_session_free(ss[i]);
    }
    printf("]}\n");
    if (others > 0.1) fprintf(stderr, "WARNING: other processes used %.2f cores\n", others);
    free(ss), free(dt), free(toks);
    sqz_free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
    return 0;
}
