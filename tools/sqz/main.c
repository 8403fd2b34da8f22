/* sqz - the command-line tool. A thin layer over include/sqz.h: parse arguments, call the
 * library, print text (or one JSON object with --json) on stdout; logs, progress and errors go
 * to stderr. Every failure prints one line "sqz: <message>" and exits with status 1 (2 for a
 * usage error). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sqz.h"

typedef struct opts {
    const char *model, *tokenizer, *prompt, *file;
    int n_predict, threads, json, n_ctx, no_progress, compat_llamacpp, n_chunks;
    long long max_tokens;
    float temp, top_p;
    unsigned long long seed;
} opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: sqz COMMAND MODEL [options]\n"
            "commands:\n"
            "  info MODEL                          architecture, sizes, tokenizer\n"
            "  generate MODEL -p TEXT [-n N]       generate text (stdout: the text alone)\n"
            "  ppl MODEL -f FILE                   perplexity over FILE\n"
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
            "  --threads N        threads (default: all cores)\n"
            "  --json             print one JSON object on stdout\n"
            "  --no-progress      no progress bar\n");
}

static int die(const char *fmt, const char *a) {
    fprintf(stderr, "sqz: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    return 1;
}

static int fail(sqz_ctx *ctx) {
    const char *e = sqz_ctx_error(ctx);
    fprintf(stderr, "sqz: %s\n", *e ? e : "unknown error");
    return 1;
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
        else if (!strcmp(a, "--compat")) {
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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress_bar(void *user, const char *what, uint64_t done, uint64_t total) {
    progress_state *p = user;
    if (!p->t0) p->t0 = now_s();
    const double el = now_s() - p->t0;
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

/* ---- commands */

static void print_json(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

static int cmd_info(sqz_ctx *ctx, const opts *o) {
    sqz_model *m;
    if (sqz_model_load(ctx, o->model, o->tokenizer, &m)) return fail(ctx);
    sqz_model_info i;
    sqz_model_get_info(m, &i);
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "arch", i.arch);
        cJSON_AddStringToObject(j, "format", i.format);
        cJSON_AddStringToObject(j, "weight_type", i.weight_type);
        cJSON_AddNumberToObject(j, "dim", i.dim);
        cJSON_AddNumberToObject(j, "hidden_dim", i.hidden_dim);
        cJSON_AddNumberToObject(j, "n_layers", i.n_layers);
        cJSON_AddNumberToObject(j, "n_heads", i.n_heads);
        cJSON_AddNumberToObject(j, "n_kv_heads", i.n_kv_heads);
        cJSON_AddNumberToObject(j, "head_dim", i.head_dim);
        cJSON_AddNumberToObject(j, "vocab_size", i.vocab_size);
        cJSON_AddNumberToObject(j, "max_seq_len", i.max_seq_len);
        cJSON_AddNumberToObject(j, "rope_theta", i.rope_theta);
        cJSON_AddNumberToObject(j, "norm_eps", i.norm_eps);
        cJSON_AddBoolToObject(j, "rope_interleaved", i.rope_interleaved);
        cJSON_AddBoolToObject(j, "tied_embeddings", i.tied_embeddings);
        cJSON_AddBoolToObject(j, "qkv_bias", i.has_qkv_bias);
        cJSON_AddNumberToObject(j, "n_params", (double)i.n_params);
        cJSON_AddNumberToObject(j, "weight_bytes", (double)i.weight_bytes);
        cJSON_AddStringToObject(j, "tokenizer", i.tokenizer);
        cJSON_AddNumberToObject(j, "bos_id", i.bos_id);
        cJSON_AddNumberToObject(j, "eos_id", i.eos_id);
        cJSON_AddBoolToObject(j, "add_bos", i.add_bos);
        print_json(j);
    } else {
        printf("model        %s\n", o->model);
        printf("arch         %s (%s, %s weights)\n", i.arch, i.format, i.weight_type);
        printf("params       %.2fM (%.1f MB of weights)\n", (double)i.n_params / 1e6,
               (double)i.weight_bytes / 1e6);
        printf("layers       %d\n", i.n_layers);
        printf("dim          %d (ffn %d)\n", i.dim, i.hidden_dim);
        printf("heads        %d query / %d kv, head_dim %d\n", i.n_heads, i.n_kv_heads, i.head_dim);
        printf("vocab        %d (tokenizer %s, bos %d, eos %d, add_bos %d)\n", i.vocab_size,
               i.tokenizer, i.bos_id, i.eos_id, i.add_bos);
        printf("context      %d\n", i.max_seq_len);
        printf("rope         theta %g, %s pairs\n", i.rope_theta,
               i.rope_interleaved ? "interleaved" : "half-split");
        printf("norm eps     %g\n", i.norm_eps);
        printf("embeddings   %s\n", i.tied_embeddings ? "tied" : "untied");
    }
    sqz_model_free(m);
    return 0;
}

typedef struct gen_out {
    size_t bytes;
} gen_out;

static int on_text(void *user, const char *text, size_t len) {
    gen_out *g = user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    g->bytes += len;
    return 0;
}

typedef struct text_buf {
    char *p;
    size_t n, cap;
} text_buf;

static int collect_text(void *user, const char *text, size_t len) {
    text_buf *b = user;
    if (b->n + len + 1 > b->cap) {
        size_t cap = (b->n + len + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) return 1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, text, len);
    b->n += len;
    b->p[b->n] = 0;
    return 0;
}

static int cmd_generate(sqz_ctx *ctx, const opts *o) {
    if (!o->prompt) return die("%s", "generate needs a prompt: -p TEXT (may be \"\")");
    sqz_model *m;
    if (sqz_model_load(ctx, o->model, o->tokenizer, &m)) return fail(ctx);
    sqz_generate_opts g = { .sampler = { o->temp, o->top_p, o->seed }, .n_predict = o->n_predict,
                            .add_bos = -1, .stop_at_eos = 1 };
    sqz_generate_result r;
    gen_out go = { 0 };
    text_buf tb = { 0 };
    sqz_status st = o->json ? sqz_generate(ctx, m, o->prompt, &g, collect_text, &tb, &r)
                            : sqz_generate(ctx, m, o->prompt, &g, on_text, &go, &r);
    if (st) {
        free(tb.p);
        sqz_model_free(m);
        return fail(ctx);
    }
    const double pp = r.prompt_seconds > 0 ? r.n_prompt / r.prompt_seconds : 0;
    const double tg = r.gen_seconds > 0 ? r.n_generated / r.gen_seconds : 0;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "text", tb.p ? tb.p : "");
        cJSON_AddNumberToObject(j, "prompt_tokens", r.n_prompt);
        cJSON_AddNumberToObject(j, "generated_tokens", r.n_generated);
        cJSON_AddNumberToObject(j, "prompt_seconds", r.prompt_seconds);
        cJSON_AddNumberToObject(j, "gen_seconds", r.gen_seconds);
        cJSON_AddNumberToObject(j, "prompt_tokens_per_s", pp);
        cJSON_AddNumberToObject(j, "gen_tokens_per_s", tg);
        print_json(j);
    } else {
        printf("\n");
        fprintf(stderr, "sqz: prompt %d tokens (%.1f tok/s), generated %d tokens (%.1f tok/s)\n",
                r.n_prompt, pp, r.n_generated, tg);
    }
    free(tb.p);
    sqz_model_free(m);
    return 0;
}

static int cmd_ppl(sqz_ctx *ctx, const opts *o) {
    if (!o->file) return die("%s", "ppl needs a text file: -f FILE");
    FILE *f = fopen(o->file, "rb");
    if (!f) {
        fprintf(stderr, "sqz: %s: cannot open: %s\n", o->file, strerror(errno));
        return 1;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = (len + 65536) * 2;
            char *p = realloc(text, cap);
            if (!p) { free(text); fclose(f); return die("%s", "out of memory"); }
            text = p;
        }
        size_t got = fread(text + len, 1, 65536, f);
        len += got;
        if (got < 65536) break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) { free(text); fprintf(stderr, "sqz: %s: read error\n", o->file); return 1; }
    sqz_model *m;
    if (sqz_model_load(ctx, o->model, o->tokenizer, &m)) { free(text); return fail(ctx); }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    double t0 = now_s();
    /* sqz's perplexity adds no BOS: the text is scored as it is; llama.cpp's tokenizes with
     * the vocabulary's BOS setting */
    sqz_status st = sqz_tokenize(ctx, m, text, len, o->compat_llamacpp ? -1 : 0, &ids, &n_ids);
    double tok_s = now_s() - t0;
    free(text);
    if (st) { sqz_model_free(m); return fail(ctx); }
    sqz_model_info info;
    sqz_model_get_info(m, &info);
    sqz_ppl_opts po = { .n_ctx = o->n_ctx ? o->n_ctx : (info.max_seq_len > 0 ? info.max_seq_len : 1024),
                        .max_tokens = (size_t)o->max_tokens,
                        .mode = o->compat_llamacpp ? SQZ_PPL_LLAMACPP : SQZ_PPL_SQZ,
                        .n_chunks = o->n_chunks };
    sqz_ppl_result r;
    st = sqz_perplexity(ctx, m, ids, n_ids, &po, &r);
    free(ids);
    sqz_model_free(m);
    if (st) return fail(ctx);
    const double tps = r.seconds > 0 ? (double)r.tokens / r.seconds : 0;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "file", o->file);
        cJSON_AddNumberToObject(j, "ppl", r.ppl);
        cJSON_AddNumberToObject(j, "ppl_stderr", r.ppl_stderr);
        cJSON_AddNumberToObject(j, "nll", r.nll);
        cJSON_AddNumberToObject(j, "tokens", (double)r.tokens);
        cJSON_AddNumberToObject(j, "windows", (double)r.windows);
        cJSON_AddNumberToObject(j, "ctx", po.n_ctx);
        cJSON_AddStringToObject(j, "method", o->compat_llamacpp ? "llama.cpp" : "sqz");
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cJSON_AddNumberToObject(j, "tokens_per_s", tps);
        cJSON_AddNumberToObject(j, "tokenize_seconds", tok_s);
        cJSON_AddNumberToObject(j, "threads", sqz_ctx_threads(ctx));
        print_json(j);
    } else {
        printf("ppl %.4f +/- %.4f  (%zu tokens in %zu windows of %d, %.1f s, %.0f tokens/s)\n",
               r.ppl, r.ppl_stderr, r.tokens, r.windows, po.n_ctx, r.seconds, tps);
    }
    return 0;
}

static const struct command {
    const char *name;
    int (*run)(sqz_ctx *, const opts *);
} commands[] = {
    { "info", cmd_info },
    { "generate", cmd_generate },
    { "ppl", cmd_ppl },
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
    if (!ctx) return die("%s", "out of memory");
    if (o.threads) sqz_ctx_set_threads(ctx, o.threads);
    progress_state ps = { 0 };
    if (!o.no_progress && isatty(2)) sqz_ctx_set_progress(ctx, progress_bar, &ps);
    rc = cmd->run(ctx, &o);
    sqz_ctx_free(ctx);
    return rc;
}
