/* cmd_ppl.c - sqz ppl MODEL -f FILE: perplexity (sqz's windows or llama.cpp's chunks). */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* Bytes the model takes on disk: the file, or a folder's weight files (*.safetensors, else every
 * regular file in it); 0 when it cannot be read. */
static double model_disk_bytes(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    if (!S_ISDIR(sb.st_mode)) return (double)sb.st_size;
    DIR *d = opendir(path);
    double all = 0, weights = 0;
    struct dirent *e;
    char p[4096];
    while (d && (e = readdir(d))) {
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        all += (double)sb.st_size;
        const size_t n = strlen(e->d_name);
        if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors")) weights += (double)sb.st_size;
    }
    if (d) closedir(d);
    return weights > 0 ? weights : all;
}

/* The bytes policy kv's cache holds after one window of n positions run as ppl runs it
 * (prefill tokens batched, the rest one at a time; prefill <= 0: all batched); 0 on failure,
 * the message in ctx. */
static size_t kv_window_bytes(sqz_ctx *ctx, const sqz_model *m, const char *kv, const int32_t *ids,
                              int n, int prefill) {
    sqz_session *s;
    if (sqz_session_new_kv(ctx, m, n, kv, &s)) return 0;
    const int first = prefill > 0 && prefill < n ? prefill : n;
    sqz_status st = sqz_session_eval(s, ids, first, NULL, 0);
    for (int p = first; p < n && !st; p++) st = sqz_session_eval(s, ids + p, 1, NULL, 0);
    const size_t bytes = st ? 0 : sqz_session_kv_bytes(s);
    sqz_session_free(s);
    return bytes;
}

int cmd_ppl(sqz_ctx *ctx, const opts *o) {
    if (!o->file) return cli_die("%s", "ppl needs a text file: -f FILE");
    sqz_model *m;
    int32_t *ids;
    size_t n_ids;
    double tok_s;
    /* sqz's perplexity adds no BOS: the text is scored as it is; llama.cpp's tokenizes with
     * the vocabulary's BOS setting */
    if (cli_load_model_text(ctx, o, o->file, o->compat_llamacpp ? -1 : 0, &m, &ids, &n_ids, &tok_s))
        return 1;
    sqz_model_info info;
    sqz_model_get_info(m, &info);
    char wtype[32]; /* info's strings live in the model, freed before the output */
    snprintf(wtype, sizeof wtype, "%s", info.weight_type ? info.weight_type : "");
    sqz_ppl_opts po = { .n_ctx = o->n_ctx ? o->n_ctx : (info.max_seq_len > 0 ? info.max_seq_len : 1024),
                        .max_tokens = (size_t)o->max_tokens,
                        .mode = o->compat_llamacpp ? SQZ_PPL_LLAMACPP : SQZ_PPL_SQZ,
                        .n_chunks = o->n_chunks,
                        .kv = o->n_kv ? o->kv[0] : NULL,
                        .kv_prefill = o->kv_prefill };
    if (o->n_kv > 1) {
        free(ids);
        sqz_model_free(m);
        return cli_die("ppl takes one --kv policy (kvbench compares several)");
    }
    sqz_model *base = NULL;
    if (o->kld_base) {
        /* the base tokenizes the same way or the comparison is meaningless: it must load, and
         * the vocabularies must match (checked by sqz_perplexity) */
        if (sqz_model_load(ctx, o->kld_base, NULL, &base)) {
            free(ids);
            sqz_model_free(m);
            return cli_fail(ctx);
        }
        po.kld_base = base;
    }
    po.kld_cache = o->kld_cache;
    sqz_ppl_result r;
    sqz_status st = sqz_perplexity(ctx, m, ids, n_ids, &po, &r);
    /* a KV policy's cache size against f16's over one window, so that sqz report can plot the
     * policy's compression against its perplexity change */
    const int win = n_ids < (size_t)po.n_ctx ? (int)n_ids : po.n_ctx;
    const size_t kv_bytes = !st && po.kv && win > 0 ? kv_window_bytes(ctx, m, po.kv, ids, win, po.kv_prefill) : 0;
    const double kv_f16 = 2.0 * info.n_layers * info.n_kv_heads * info.head_dim * 2 * win;
    if (!st && po.kv && !kv_bytes) st = SQZ_ERR_ARG; /* the session's message is in ctx */
    free(ids);
    sqz_model_free(m);
    sqz_model_free(base);
    if (st) return cli_fail(ctx);
    /* what the model costs, so that a result joins its quantize / convert run in sqz report:
     * bits per weight as sqz convert counts them (8 x bytes of the weights as stored / weights) */
    const double bpw = info.n_params ? 8.0 * (double)info.weight_bytes / (double)info.n_params : 0;
    const double tps = r.seconds > 0 ? (double)r.tokens / r.seconds : 0;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "file", o->file);
        cJSON_AddNumberToObject(j, "file_bytes", model_disk_bytes(o->model));
        cJSON_AddNumberToObject(j, "weight_bytes", (double)info.weight_bytes);
        cJSON_AddNumberToObject(j, "n_params", (double)info.n_params);
        cJSON_AddNumberToObject(j, "bits_per_weight", bpw);
        cJSON_AddStringToObject(j, "weight_type", wtype);
        cJSON_AddNumberToObject(j, "ppl", r.ppl);
        cJSON_AddNumberToObject(j, "ppl_stderr", r.ppl_stderr);
        cJSON_AddNumberToObject(j, "nll", r.nll);
        cJSON_AddNumberToObject(j, "tokens", (double)r.tokens);
        cJSON_AddNumberToObject(j, "windows", (double)r.windows);
        cJSON_AddNumberToObject(j, "ctx", po.n_ctx);
        cJSON_AddStringToObject(j, "method", o->compat_llamacpp ? "llama.cpp" : "sqz");
        cJSON_AddStringToObject(j, "kv", po.kv ? po.kv : "f32");
        if (kv_bytes) {
            cJSON_AddNumberToObject(j, "kv_bytes", (double)kv_bytes);
            cJSON_AddNumberToObject(j, "kv_positions", win);
            cJSON_AddNumberToObject(j, "kv_ratio_vs_f16", kv_f16 / (double)kv_bytes);
        }
        if (r.has_kld) {
            if (o->kld_base) cJSON_AddStringToObject(j, "kld_base", o->kld_base);
            if (o->kld_cache) cJSON_AddStringToObject(j, "kld_cache", o->kld_cache);
            cJSON_AddNumberToObject(j, "kld", r.kld);
            cJSON_AddNumberToObject(j, "kld_p99", r.kld_p99);
            cJSON_AddNumberToObject(j, "top1_agree", r.top1_agree);
        }
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cJSON_AddNumberToObject(j, "tokens_per_s", tps);
        cJSON_AddNumberToObject(j, "tokenize_seconds", tok_s);
        cJSON_AddNumberToObject(j, "threads", sqz_ctx_threads(ctx));
        cli_print_json(j);
    } else {
        if (r.has_kld)
            printf("kld %.6f  p99 %.6f  top-1 agreement %.2f%%  (vs %s)\n", r.kld, r.kld_p99,
                   100.0 * r.top1_agree, o->kld_base ? o->kld_base : o->kld_cache);
        printf("ppl %.4f +/- %.4f  (%zu tokens in %zu windows of %d, %.1f s, %.0f tokens/s)\n",
               r.ppl, r.ppl_stderr, r.tokens, r.windows, po.n_ctx, r.seconds, tps);
        if (kv_bytes)
            printf("KV cache %s: %zu bytes after %d positions, %.2fx smaller than f16\n", po.kv, kv_bytes, win,
                   kv_f16 / (double)kv_bytes);
    }
    return 0;
}
