/* sqz - the command-line tool. A thin layer over include/sqz.h: parse arguments, call the
 * library, print text (or one JSON object with --json) on stdout; logs, progress and errors go
 * to stderr. Every failure prints one line "sqz: <message>" and exits with status 1 (2 for a
 * usage error). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: sqz COMMAND MODEL [options]\n"
            "commands:\n"
            "  info MODEL                          architecture, sizes, tokenizer\n"
            "  generate MODEL -p TEXT [-n N]       generate text (stdout: the text alone)\n"
            "  ppl MODEL -f FILE                   perplexity over FILE\n"
            "  convert MODEL -o OUT.gguf --type T  write a GGUF file (f16, q8_0, q4_0, q4_k, ...,\n"
            "                                      or llama.cpp's mixes q4_k_m, q3_k_m, q2_k, ...)\n"
            "  quantize MODEL -o OUT.gguf --type T --method rtn|imatrix|gptq|rsq|decoupleq --calib FILE\n"
            "  quantize MODEL -o OUT.sqzf --type q4|q3 --method mixllm --calib FILE\n"
            "                                      quantization with calibration data\n"
            "  kvbench MODEL -f FILE [--kv P ...]  KV cache policies: bytes, ppl, KLD, decode t/s\n"
            "MODEL: a Hugging Face folder (config.json + safetensors + tokenizer.json) or a\n"
            "       llama2.c checkpoint (.bin, with --tokenizer tokenizer.bin)\n"
            "options:\n"
            "  --tokenizer FILE   tokenizer (llama2.c tokenizer.bin, or a tokenizer.json)\n"
            "  -p, --prompt TEXT  prompt (generate)\n"
            "  -n, --n-predict N  tokens to generate (default 128)\n"
            "  --temp T           temperature, 0 = greedy (default 0.8)\n"
            "  --top-p P          nucleus sampling (default 0.9; 1 disables)\n"
            "  --seed S           random seed (default 42)\n"
            "  -f, --file FILE    text to score (ppl)\n"
            "  --ctx N            window length for ppl (default: the model's trained context)\n"
            "  --max-tokens N     use only the first N tokens of FILE\n"
            "  --compat llama.cpp perplexity as llama-perplexity computes it (second half of\n"
            "                     each chunk scored, BOS per chunk if the vocabulary asks)\n"
            "  --chunks N         with --compat llama.cpp: use at most N chunks\n"
            "  --kv SPEC          KV cache policy, e.g. f16, q4, streaming:sink=4,window=1020+q4,\n"
            "                     xkv:rank=32+q8 (ppl; repeatable for kvbench; see README)\n"
            "  --kv-prefill N     ppl: tokens of each window run as one batch, then one by one\n"
            "  --kld-base MODEL   ppl: also the KL divergence to MODEL's distributions (kld,\n"
            "                     kld_p99, top1_agree)\n"
            "  --kld-cache FILE   ppl: the base's logits in FILE (read when it was made for this\n"
            "                     text, context and mode; else written from --kld-base;\n"
            "                     kvbench: the f32 cache's logits, computed once)\n"
            "  --no-decode        kvbench: bytes, ppl and kld only, no decode timing\n"
            "  -o, --out FILE     output file (convert)\n"
            "  --type TYPE        tensor type or mix (convert)\n"
            "  --pure             every 2-D weight in TYPE, no mix (convert)\n"
            "  --embd-type TYPE   token_embd.weight's type (convert, quantize)\n"
            "  --method M         rtn, imatrix, gptq, rsq or decoupleq (quantize; default gptq;\n"
            "                     decoupleq: 2-bit type dq2, its default --type)\n"
            "  --calib FILE       calibration text (quantize)\n"
            "  --calib-tokens N   calibration tokens (default 32768)\n"
            "  --calib-ctx N      tokens per calibration window (default 512)\n"
            "  --act-order        gptq, rsq: columns by descending Hessian diagonal\n"
            "  --damp D           gptq, rsq, decoupleq, mixllm: D * mean(diag H) added to the\n"
            "                     Hessian's diagonal (default 0.1; decoupleq 0.01)\n"
            "  --rsq-rmin R       rsq: least token weight in (0, 1] (default 0.005; 1: rotation\n"
            "                     + GPTQ, tokens alike); --seed S seeds the rotations\n"
            "  --fake-quant       type dq2: write its dequantized weights as f32 GGUF instead of\n"
            "                     dq2 in sqzf (rtn to dq2 needs it)\n"
            "  --mix-frac F       mixllm: share of the weights at 8 bits (default 0.1)\n"
            "  --alloc            gptq: each matrix's type (q2_k..q6_k) chosen by measured KL\n"
            "                     divergence within the bytes of the mix's own types (minutes)\n"
            "  --alloc-windows N  --alloc: calibration windows the KLs are measured on (4)\n"
            "  --threads N        threads (default: all cores)\n"
            "  --json             print one JSON object on stdout\n"
            "  --no-progress      no progress bar\n");
}

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

void cli_print_json(cJSON *o) {
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

static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) return 0;
    *out = v;
    return 1;
}

/* Returns 0 on success, 2 on a usage error (message printed). */
static int parse_args(int argc, char **argv, opts *o) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
#define NEED_VALUE                                                                                 \
    do {                                                                                           \
        if (!v) { fprintf(stderr, "sqz: %s needs a value\n", a); return 2; }                       \
        i++;                                                                                       \
    } while (0)
#define BAD_VALUE                                                                                  \
    do { fprintf(stderr, "sqz: invalid value '%s' for %s\n", v, a); return 2; } while (0)
        if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--no-progress")) o->no_progress = 1;
        else if (!strcmp(a, "--tokenizer")) { NEED_VALUE; o->tokenizer = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { NEED_VALUE; o->prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { NEED_VALUE; o->file = v; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { NEED_VALUE; o->out = v; }
        else if (!strcmp(a, "--type")) { NEED_VALUE; o->type = v; }
        else if (!strcmp(a, "--pure")) o->pure = 1;
        else if (!strcmp(a, "--kv")) {
            NEED_VALUE;
            if (o->n_kv == (int)(sizeof o->kv / sizeof *o->kv)) {
                fprintf(stderr, "sqz: at most %d --kv policies\n", (int)(sizeof o->kv / sizeof *o->kv));
                return 2;
            }
            o->kv[o->n_kv++] = v;
        } else if (!strcmp(a, "--kv-prefill")) {
            NEED_VALUE; if (!parse_int(v, 0, 1 << 24, &n)) BAD_VALUE; o->kv_prefill = (int)n;
        } else if (!strcmp(a, "--kld-base")) { NEED_VALUE; o->kld_base = v; }
        else if (!strcmp(a, "--kld-cache")) { NEED_VALUE; o->kld_cache = v; }
        else if (!strcmp(a, "--method")) { NEED_VALUE; o->method = v; }
        else if (!strcmp(a, "--embd-type")) { NEED_VALUE; o->embd_type = v; }
        else if (!strcmp(a, "--calib")) { NEED_VALUE; o->calib = v; }
        else if (!strcmp(a, "--act-order")) o->act_order = 1;
        else if (!strcmp(a, "--alloc")) o->alloc = 1;
        else if (!strcmp(a, "--alloc-windows")) {
            NEED_VALUE; if (!parse_int(v, 1, 1 << 20, &n)) BAD_VALUE; o->alloc_windows = (int)n;
        }
        else if (!strcmp(a, "--damp")) {
            NEED_VALUE; if (!parse_float(v, &o->damp) || !(o->damp > 0 && o->damp < 10)) BAD_VALUE;
        }
        else if (!strcmp(a, "--rsq-rmin")) {
            NEED_VALUE; if (!parse_float(v, &o->rsq_rmin) || !(o->rsq_rmin > 0 && o->rsq_rmin <= 1)) BAD_VALUE;
        }
        else if (!strcmp(a, "--fake-quant")) o->fake_quant = 1;
        else if (!strcmp(a, "--no-decode")) o->no_decode = 1;
        else if (!strcmp(a, "--mix-frac")) {
            NEED_VALUE; if (!parse_float(v, &o->mix_frac) || !(o->mix_frac >= 0 && o->mix_frac < 1)) BAD_VALUE;
            o->mix_frac_set = 1;
        }
        else if (!strcmp(a, "--calib-tokens")) {
            NEED_VALUE; if (!parse_int(v, 1, (long long)1 << 40, &n)) BAD_VALUE; o->calib_tokens = n;
        } else if (!strcmp(a, "--calib-ctx")) {
            NEED_VALUE; if (!parse_int(v, 2, 1 << 20, &n)) BAD_VALUE; o->calib_ctx = (int)n;
        } else if (!strcmp(a, "--compat")) {
            NEED_VALUE;
            if (strcmp(v, "llama.cpp") && strcmp(v, "sqz")) BAD_VALUE;
            o->compat_llamacpp = !strcmp(v, "llama.cpp");
        } else if (!strcmp(a, "--chunks")) {
            NEED_VALUE; if (!parse_int(v, 1, 1 << 30, &n)) BAD_VALUE; o->n_chunks = (int)n;
        }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            NEED_VALUE; if (!parse_int(v, 0, 1 << 24, &n)) BAD_VALUE; o->n_predict = (int)n;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            NEED_VALUE; if (!parse_int(v, 1, 1024, &n)) BAD_VALUE; o->threads = (int)n;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            NEED_VALUE; if (!parse_int(v, 2, 1 << 20, &n)) BAD_VALUE; o->n_ctx = (int)n;
        } else if (!strcmp(a, "--max-tokens")) {
            NEED_VALUE; if (!parse_int(v, 2, (long long)1 << 40, &n)) BAD_VALUE; o->max_tokens = n;
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE; if (!parse_int(v, 0, (long long)1 << 62, &n)) BAD_VALUE; o->seed = (unsigned long long)n;
        } else if (!strcmp(a, "--temp")) {
            NEED_VALUE; if (!parse_float(v, &o->temp) || o->temp < 0) BAD_VALUE;
        } else if (!strcmp(a, "--top-p")) {
            NEED_VALUE; if (!parse_float(v, &o->top_p) || o->top_p <= 0) BAD_VALUE;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sqz: unknown option %s (see sqz --help)\n", a);
            return 2;
        } else if (!o->model) o->model = a;
        else { fprintf(stderr, "sqz: unexpected argument '%s'\n", a); return 2; }
    }
    return 0;
}

/* ---- progress bar on stderr, only when it is a terminal */

typedef struct progress_state {
    double t0;
    int shown;
} progress_state;

static void progress_bar(void *user, const char *what, uint64_t done, uint64_t total) {
    progress_state *p = user;
    if (!p->t0) p->t0 = cli_now();
    const double el = cli_now() - p->t0;
    const int W = 30;
    const int fill = total ? (int)((double)done / (double)total * W) : W;
    char bar[64];
    for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
    bar[W] = 0;
    const double eta = done ? el * (double)(total - done) / (double)done : 0;
    fprintf(stderr, "\r%s [%s] %llu/%llu  %.0f/s  eta %.0fs ", what, bar, (unsigned long long)done,
            (unsigned long long)total, el > 0 ? (double)done / el : 0.0, eta);
    if (done >= total) fprintf(stderr, "\n");
    p->shown = 1;
}

/* ---- commands (one file each: cmd_*.c) */

static const struct command {
    const char *name;
    int (*run)(sqz_ctx *, const opts *);
} commands[] = {
    { "info", cmd_info },
    { "generate", cmd_generate },
    { "ppl", cmd_ppl },
    { "convert", cmd_convert },
    { "quantize", cmd_quantize },
    { "kvbench", cmd_kvbench },
    { "kvcalib", cmd_kvcalib },
};

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sqz %s\n", SQZ_VERSION);
        return 0;
    }
    const struct command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "sqz: unknown command '%s' (see sqz --help)\n", argv[1]);
        return 2;
    }
    opts o = { .n_predict = 128, .temp = 0.8f, .top_p = 0.9f, .seed = 42 };
    int rc = parse_args(argc - 2, argv + 2, &o);
    if (rc) return rc;
    if (!o.model) {
        fprintf(stderr, "sqz: %s needs a MODEL (see sqz --help)\n", cmd->name);
        return 2;
    }
    sqz_ctx *ctx = sqz_ctx_new();
    if (!ctx) return cli_die("out of memory");
    if (o.threads) sqz_ctx_set_threads(ctx, o.threads);
    progress_state ps = { 0 };
    if (!o.no_progress && isatty(2)) sqz_ctx_set_progress(ctx, progress_bar, &ps);
    rc = cmd->run(ctx, &o);
    sqz_ctx_free(ctx);
    return rc;
}
