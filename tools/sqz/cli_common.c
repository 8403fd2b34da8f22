/* cli_common.c - what every sqz command uses: one-line errors on stderr, JSON on stdout (with
 * the process's peak memory), a clock, a whole-file reader, and the prologue of the commands
 * that score or calibrate on a text (load the model, read the file, tokenize it). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

int cli_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sqz: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

int cli_fail(sqz_ctx *ctx) {
    const char *e = sqz_ctx_error(ctx);
    fprintf(stderr, "sqz: %s\n", *e ? e : "unknown error");
    return 1;
}

double cli_peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    while (f && kb < 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) != 1) kb = -1;
    if (f) fclose(f);
    if (kb >= 0) return (double)kb / 1024.0;
    struct rusage ru; /* ru_maxrss: KiB on Linux */
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0;
}

void cli_print_json(cJSON *o) {
    if (!cJSON_HasObjectItem(o, "peak_rss_mib")) cJSON_AddNumberToObject(o, "peak_rss_mib", cli_peak_rss_mib());
    char *s = cJSON_PrintUnformatted(o);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_die("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 > cap) {
            cap = (n + 65536) * 2;
            char *p = realloc(text, cap);
            if (!p) { free(text); fclose(f); cli_die("%s: out of memory", path); return NULL; }
            text = p;
        }
        size_t got = fread(text + n, 1, 65536, f);
        n += got;
        if (got < 65536) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(text); cli_die("%s: read error", path); return NULL; }
    text[n] = 0;
    *len = n;
    return text;
}

int cli_parse_size(const char *s, unsigned long long *out) {
    static const struct { const char *sfx; double mul; } units[] = {
        { "", 1 }, { "b", 1 }, { "kb", 1e3 }, { "mb", 1e6 }, { "gb", 1e9 },
        { "kib", 1024.0 }, { "mib", 1048576.0 }, { "gib", 1073741824.0 },
    };
    char *end;
    errno = 0;
    const double v = strtod(s, &end);
    if (errno || end == s || !(v > 0)) return -1;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (!strcasecmp(end, units[i].sfx)) {
            const double b = v * units[i].mul;
            if (b >= 1.8e19) return -1;
            *out = (unsigned long long)b;
            return *out ? 0 : -1;
        }
    return -1;
}

int cli_load_model(sqz_ctx *ctx, const opts *o, sqz_model **model) {
    *model = NULL;
    unsigned long long mem = 0;
    if (o->memory && cli_parse_size(o->memory, &mem))
        return cli_die("--memory: '%s' is not a size (bytes, or a number with KB, MB, GB, KiB, MiB, GiB)", o->memory);
    if (sqz_model_load(ctx, o->model, o->tokenizer, model)) return cli_fail(ctx);
    if (o->memory || sqz_model_is_bitstack(*model)) {
        sqz_bitstack_fit_info fi;
        if (sqz_model_bitstack_fit(ctx, *model, mem, &fi)) {
            sqz_model_free(*model);
            *model = NULL;
            return cli_fail(ctx);
        }
        fprintf(stderr, "sqz: BitStack %s: %d of %d blocks, %.2f MiB of weights (sizes from %.2f MiB to %.2f MiB)\n",
                o->model, fi.n_loaded, fi.n_blocks, (double)fi.bytes / 1048576.0, (double)fi.min_bytes / 1048576.0,
                (double)fi.all_bytes / 1048576.0);
    }
    if (o->lora && sqz_model_apply_lora(ctx, *model, o->lora, o->lora_scale_set ? o->lora_scale : 1.0f)) {
        sqz_model_free(*model);
        *model = NULL;
        return cli_fail(ctx);
    }
    return 0;
}

int cli_load_model_text(sqz_ctx *ctx, const opts *o, const char *path, int add_bos,
                        sqz_model **model, int32_t **ids, size_t *n_ids, double *tok_seconds) {
    size_t len;
    char *text = cli_read_file(path, &len);
    if (!text) return 1;
    sqz_model *m;
    if (cli_load_model(ctx, o, &m)) { free(text); return 1; }
    *ids = NULL;
    *n_ids = 0;
    const double t0 = cli_now();
    const sqz_status st = sqz_tokenize(ctx, m, text, len, add_bos, ids, n_ids);
    if (tok_seconds) *tok_seconds = cli_now() - t0;
    free(text);
    if (st) {
        sqz_free(*ids);
        sqz_model_free(m);
        return cli_fail(ctx);
    }
    *model = m;
    return 0;
}

/* --calib-ctx, or 512 */
static int calib_window(const opts *o) { return o->calib_ctx > 0 ? o->calib_ctx : 512; }

int cli_calib_windows(const opts *o, const int32_t *ids, size_t n_ids, int warn, int32_t **calib,
                      size_t *n_calib, int *calib_ctx) {
    const size_t want = o->calib_tokens > 0 ? (size_t)o->calib_tokens : 32768;
    *calib_ctx = calib_window(o);
    if (warn && n_ids < want)
        fprintf(stderr, "sqz: %s holds %zu tokens, fewer than the %zu asked for\n", o->calib, n_ids, want);
    *calib = malloc((want < n_ids ? want : n_ids) * sizeof **calib + 1);
    *n_calib = *calib ? sqz_calib_spread(ids, n_ids, want, *calib_ctx, *calib) : 0;
    return *calib ? 0 : cli_die("out of memory");
}

int cli_load_model_calib(sqz_ctx *ctx, const opts *o, unsigned flags, sqz_model **model, int32_t **calib,
                         size_t *n_calib, int *calib_ctx) {
    *calib = NULL;
    *n_calib = 0;
    *calib_ctx = calib_window(o);
    if (!(flags & CLI_CALIB_TEXT)) return cli_load_model(ctx, o, model);
    int32_t *ids;
    size_t n_ids;
    if (cli_load_model_text(ctx, o, o->calib, 0, model, &ids, &n_ids, NULL)) return 1;
    const int rc = cli_calib_windows(o, ids, n_ids, !(flags & CLI_CALIB_QUIET), calib, n_calib, calib_ctx);
    sqz_free(ids);
    if (rc) {
        sqz_model_free(*model);
        *model = NULL;
    }
    return rc;
}
