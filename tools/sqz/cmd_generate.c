/* cmd_generate.c - sqz generate MODEL -p TEXT: the generated text alone on stdout. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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

int cmd_generate(sqz_ctx *ctx, const opts *o) {
    if (!o->prompt) return cli_die("%s", "generate needs a prompt: -p TEXT (may be \"\")");
    sqz_model *m;
    if (cli_load_model(ctx, o, &m)) return 1;
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
        return cli_fail(ctx);
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
        cli_print_json(j);
    } else {
        printf("\n");
        fprintf(stderr, "sqz: prompt %d tokens (%.1f tok/s), generated %d tokens (%.1f tok/s)\n",
                r.n_prompt, pp, r.n_generated, tg);
    }
    free(tb.p);
    sqz_model_free(m);
    return 0;
}
