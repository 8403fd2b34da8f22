/* cmd_quantize.c - sqz quantize MODEL --method NAME[:key=value,...] --type T -o OUT.gguf
 * [--calib FILE --calib-tokens N --calib-ctx N]: quantization with calibration data, with a
 * per-matrix error report. The method's own flags (--damp, --act-order, --seed, --rsq-rmin,
 * --fake-quant, --mix-frac, --alloc, --alloc-windows) are aliases of its spec's keys. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct report {
    cJSON *rows; /* --json: array of {name, type, rel_err}; else printed */
} report;

static void on_tensor(void *user, const char *name, const char *type, double rel_err) {
    report *r = user;
    if (r->rows) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", name);
        cJSON_AddStringToObject(e, "type", type);
        cJSON_AddNumberToObject(e, "rel_err", rel_err);
        cJSON_AddItemToArray(r->rows, e);
    } else {
        fprintf(stderr, "  %-28s %-6s rel. output error %.4f\n", name, type, rel_err);
    }
}

/* Appends ",key=value" (or ":key=value" after a bare name) to spec (len bytes). 0 when full. */
static int add_key(char *spec, size_t len, const char *key, const char *fmt, double v) {
    const size_t n = strlen(spec);
    char val[40];
    snprintf(val, sizeof val, fmt, v);
    const int w = snprintf(spec + n, len - n, "%s%s=%s", strchr(spec, ':') ? "," : ":", key, val);
    return w > 0 && (size_t)w < len - n;
}

/* The spec: the user's method plus the old flags as its keys (a key given both ways is the
 * parser's "given twice"; a key the method does not take, its "unknown parameter"). --seed
 * always has a value (42), so it goes only to a method that takes a seed. */
static int method_spec(const opts *o, const char *method, char *spec, size_t len) {
    if ((size_t)snprintf(spec, len, "%s", method) >= len) return 0;
    int ok = 1;
    if (o->act_order) ok &= add_key(spec, len, "act_order", "%.0f", 1);
    if (o->damp > 0) ok &= add_key(spec, len, "damp", "%.17g", (double)o->damp);
    if (o->rsq_rmin > 0) ok &= add_key(spec, len, "rmin", "%.17g", (double)o->rsq_rmin);
    if (o->fake_quant) ok &= add_key(spec, len, "fake", "%.0f", 1);
    if (o->mix_frac_set) ok &= add_key(spec, len, "frac", "%.17g", (double)o->mix_frac);
    if (o->alloc) ok &= add_key(spec, len, "alloc", "%.0f", 1);
    if (o->alloc_windows > 0) ok &= add_key(spec, len, "windows", "%.0f", o->alloc_windows);
    if (o->bpw > 0) ok &= add_key(spec, len, "bpw", "%.17g", (double)o->bpw);
    if (o->bytes) ok &= add_key(spec, len, "bytes", "%.0f", (double)o->bytes);
    if (sqz_quant_method_takes(method, "seed") == 1 && !strstr(method, "seed=")) {
        char val[32];
        snprintf(val, sizeof val, "%llu", (unsigned long long)o->seed);
        const size_t n = strlen(spec);
        const int w = snprintf(spec + n, len - n, "%sseed=%s", strchr(spec, ':') ? "," : ":", val);
        ok &= w > 0 && (size_t)w < len - n;
    }
    return ok;
}

int cmd_quantize(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("quantize needs an output file: -o OUT.gguf");
    const char *method = o->method ? o->method : "gptq";
    const int needs_calib = sqz_quant_method_needs_calib(method);
    if (needs_calib < 0) {
        char known[128] = "";
        for (int i = 0; sqz_quant_method_name(i); i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     sqz_quant_method_name(i));
        return cli_die("unknown quantization method '%s' (%s)", method, known);
    }
    const char *type = o->type ? o->type : sqz_quant_method_default_type(method);
    if (!type) return cli_die("quantize needs a type: --type q4_k_m|q2_k|q4_k|...");
    char spec[512];
    if (!method_spec(o, method, spec, sizeof spec)) return cli_die("--method %s: too long", method);
    if (needs_calib && !o->calib) return cli_die("--method %s needs calibration text: --calib FILE", method);
    sqz_model *m;
    int32_t *spread;
    size_t n_spread;
    int calib_ctx;
    if (cli_load_model_calib(ctx, o, needs_calib ? CLI_CALIB_TEXT : 0, &m, &spread, &n_spread, &calib_ctx)) return 1;
    report rep = { o->json ? cJSON_CreateArray() : NULL };
    /* the file says how it was made (general.* keys; the library adds method, type, tokens) */
    const sqz_model_card card = { .base_model = o->model, .calib = needs_calib ? o->calib : NULL };
    sqz_quantize_opts qo = { .method = spec, .type = type, .pure = o->pure, .embd_type = o->embd_type,
                             .calib = spread, .n_calib = n_spread, .calib_ctx = calib_ctx,
                             .report = on_tensor, .report_user = &rep, .card = &card };
    sqz_quantize_result r;
    sqz_status st = sqz_quantize(ctx, m, o->out, &qo, &r);
    free(spread);
    sqz_model_free(m);
    if (st) {
        cJSON_Delete(rep.rows);
        return cli_fail(ctx);
    }
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "method", method);
        cJSON_AddStringToObject(j, "type", type);
        cJSON_AddNumberToObject(j, "file_bytes", (double)r.convert.file_bytes);
        cJSON_AddNumberToObject(j, "n_params", (double)r.convert.n_params);
        cJSON_AddNumberToObject(j, "bits_per_weight", r.convert.bits_per_weight);
        if (o->calib) cJSON_AddStringToObject(j, "calib", o->calib);
        cJSON_AddNumberToObject(j, "calib_tokens", (double)r.calib_tokens);
        cJSON_AddNumberToObject(j, "calib_seconds", r.calib_seconds);
        cJSON_AddNumberToObject(j, "quant_seconds", r.quant_seconds);
        cJSON_AddNumberToObject(j, "seconds", r.calib_seconds + r.quant_seconds + r.convert.seconds);
        cJSON_AddNumberToObject(j, "mean_rel_err", r.mean_rel_err);
        if (r.alloc_budget > 0) {
            cJSON *a = cJSON_AddObjectToObject(j, "alloc");
            cJSON_AddNumberToObject(a, "budget_bytes", (double)r.alloc_budget);
            cJSON_AddNumberToObject(a, "bytes", (double)r.alloc_bytes);
            cJSON_AddNumberToObject(a, "kl_sum_mix", r.alloc_kl_mix);
            cJSON_AddNumberToObject(a, "kl_sum_chosen", r.alloc_kl_chosen);
            cJSON_AddNumberToObject(a, "seconds", r.alloc_seconds);
        }
        cJSON_AddItemToObject(j, "tensors", rep.rows);
        cli_print_json(j);
    } else {
        fprintf(stderr, "sqz: wrote %s: %.2f MB, %.2f bits per weight; %zu calibration tokens, "
                        "statistics %.1f s, quantization %.1f s; mean rel. error %.4f; peak RSS %.0f MiB\n",
                o->out, (double)r.convert.file_bytes / 1e6, r.convert.bits_per_weight, r.calib_tokens,
                r.calib_seconds, r.quant_seconds, r.mean_rel_err, cli_peak_rss_mib());
        if (r.alloc_budget > 0)
            fprintf(stderr, "sqz: --alloc: matrices %.3f MB (the mix's types: %.3f MB); summed single-matrix "
                            "KL %.5f (the mix's: %.5f); search %.1f s\n",
                    (double)r.alloc_bytes / 1e6, (double)r.alloc_budget / 1e6, r.alloc_kl_chosen, r.alloc_kl_mix,
                    r.alloc_seconds);
    }
    return 0;
}
