/* cmd_finetune.c - sqz finetune MODEL -f TRAIN.txt -o OUT.gguf [--steps --batch --ctx --lr
 * --warmup --clip --seed ...] [--eval-file TEXT]: full fine-tuning (sqz_finetune). Logs a
 * line every ~5 % of the steps on stderr; --json prints the summary with the loss of every
 * step. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct step_log {
    cJSON *steps; /* --json: one object per step */
    int total, quiet;
    double t0;
} step_log;

static void on_step(void *user, int step, double loss, double lr, double grad_norm, double seconds,
                    double eval_ppl) {
    step_log *L = user;
    if (L->steps) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "step", step);
        cJSON_AddNumberToObject(s, "loss", loss);
        cJSON_AddNumberToObject(s, "lr", lr);
        cJSON_AddNumberToObject(s, "grad_norm", grad_norm);
        cJSON_AddNumberToObject(s, "seconds", seconds);
        if (eval_ppl > 0) cJSON_AddNumberToObject(s, "eval_ppl", eval_ppl);
        cJSON_AddItemToArray(L->steps, s);
    }
    const int every = L->total >= 20 ? L->total / 20 : 1;
    if (!L->quiet && (step % every == 0 || step == 1 || step == L->total || eval_ppl > 0)) {
        fprintf(stderr, "finetune: step %d/%d loss %.4f lr %.2e |g| %.3f %.2f s/step %.0f s", step,
                L->total, loss, lr, grad_norm, seconds, cli_now() - L->t0);
        if (eval_ppl > 0) fprintf(stderr, "  held-out ppl %.3f", eval_ppl);
        fprintf(stderr, "\n");
    }
}

/* With --dp, -f A,B,... gives each rank its own text: rank r reads item r mod the count. */
static const char *rank_file(const char *list, int rank, char *buf, size_t cap) {
    int n = 1;
    for (const char *p = list; *p; p++) n += *p == ',';
    const char *p = list;
    for (int i = 0; i < rank % n; i++) p = strchr(p, ',') + 1;
    const char *e = strchr(p, ',');
    const size_t len = e ? (size_t)(e - p) : strlen(p);
    snprintf(buf, cap, "%.*s", (int)(len < cap ? len : cap - 1), p);
    return buf;
}

static void print_dp(const opts *o, const sqz_finetune_result *r) {
    const double b = (double)r->dp_bytes;
    fprintf(stderr, "finetune: --dp %s over %d ranks: rank 0 sent %.3f MB of gradients (%.1f KB control); "
            "compute %.1f s, compress %.1f s, communicate %.1f s; those bytes take %.2f s at 1 Gbit/s, "
            "%.3f s at 10 Gbit/s\n", o->dp, r->dp_world, b / 1e6, (double)r->dp_ctl_bytes / 1e3, r->compute_s,
            r->compress_s, r->comm_s, b * 8 / 1e9, b * 8 / 1e10);
}

int cmd_finetune(sqz_ctx *ctx, const opts *o) {
    if (!o->file) return cli_die("%s", "finetune needs a training text: -f FILE");
    if (!o->out) return cli_die("%s", "finetune needs an output: -o OUT.gguf");
    int world = 1, local = 1, rank = 0;
    const int launched = sqz_finetune_dp_launched(&world, &local, &rank);
    /* ranks on one machine share its cores */
    if (launched && !o->threads) {
        const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        sqz_ctx_set_threads(ctx, ncpu / local > 1 ? (int)(ncpu / local) : 1);
    }
    char fbuf[4096];
    const char *file = o->dp ? rank_file(o->file, rank, fbuf, sizeof fbuf) : o->file;
    sqz_model *m;
    int32_t *ids, *eval = NULL;
    size_t n_ids, n_eval = 0;
    if (cli_load_model_text(ctx, o, file, 0, &m, &ids, &n_ids, NULL)) return 1;
    if (o->eval_file) {
        size_t len;
        char *text = cli_read_file(o->eval_file, &len);
        if (!text) {
            sqz_free(ids);
            sqz_model_free(m);
            return 1;
        }
        const sqz_status st = sqz_tokenize(ctx, m, text, len, 0, &eval, &n_eval);
        free(text);
        if (st) {
            sqz_free(ids);
            sqz_model_free(m);
            return cli_fail(ctx);
        }
    }
    sqz_finetune_opts fo = { 0 };
    fo.steps = o->steps;
    fo.batch = o->batch;
    fo.micro_batch = o->micro_batch;
    fo.ctx = o->n_ctx;
    fo.lr = o->lr;
    fo.warmup = o->warmup_set && o->warmup == 0 ? -1 : o->warmup;
    fo.cosine = o->cosine;
    fo.min_lr = o->min_lr;
    fo.weight_decay = o->weight_decay;
    fo.clip = o->clip_set && o->clip == 0 ? -1 : o->clip;
    fo.seed = o->seed;
    fo.eval = eval;
    fo.n_eval = n_eval;
    fo.eval_tokens = o->eval_tokens > 0 ? (size_t)o->eval_tokens : 30000;
    fo.eval_every = o->eval_every;
    fo.lora_rank = o->lora_rank;
    fo.lora_alpha = o->lora_alpha;
    fo.lora_targets = o->lora_targets;
    fo.dp = o->dp;
    fo.checkpoint = o->checkpoint;
    fo.checkpoint_every = o->checkpoint_every;
    fo.resume = o->resume;
    /* a folder output gets the tokenizer: --tokenizer's, or the one beside an HF model */
    char tok[4096];
    snprintf(tok, sizeof tok, "%s/tokenizer.json", o->model);
    fo.tokenizer_json = o->tokenizer ? o->tokenizer : access(tok, R_OK) == 0 ? tok : NULL;
    step_log L = { o->json ? cJSON_CreateArray() : NULL, o->steps > 0 ? o->steps : 150, o->json, cli_now() };
    fo.on_step = on_step;
    fo.user = &L;
    /* the written model's card: where it came from and what it was trained and measured on */
    const sqz_model_card card = { .base_model = o->model, .calib = o->file, .eval_text = o->eval_file };
    fo.card = &card;
    sqz_finetune_result r;
    const sqz_status st = sqz_finetune(ctx, m, ids, n_ids, &fo, o->out, o->type, &r);
    sqz_free(ids);
    sqz_free(eval);
    sqz_model_free(m);
    if (st) {
        cJSON_Delete(L.steps);
        if (o->dp) {
            const int rc = cli_fail(ctx);
            sqz_finetune_dp_shutdown();
            return rc;
        }
        return cli_fail(ctx);
    }
    if (o->dp) sqz_finetune_dp_shutdown();
    if (r.dp_rank != 0) { /* rank 0 reports for all */
        cJSON_Delete(L.steps);
        return 0;
    }
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddNumberToObject(j, "trained_params", (double)r.n_params);
        if (o->lora_rank) cJSON_AddNumberToObject(j, "lora_rank", o->lora_rank);
        cJSON_AddNumberToObject(j, "steps", r.steps);
        cJSON_AddNumberToObject(j, "train_tokens", (double)n_ids);
        cJSON_AddNumberToObject(j, "first_loss", r.first_loss);
        cJSON_AddNumberToObject(j, "last_loss", r.last_loss);
        if (o->eval_file) {
            cJSON_AddNumberToObject(j, "eval_ppl_before", r.eval_ppl_before);
            cJSON_AddNumberToObject(j, "eval_ppl_after", r.eval_ppl_after);
        }
        cJSON_AddNumberToObject(j, "train_seconds", r.seconds);
        cJSON_AddNumberToObject(j, "tokens_per_s", r.tokens_per_s);
        if (o->dp) {
            cJSON *d = cJSON_AddObjectToObject(j, "dp");
            cJSON_AddStringToObject(d, "spec", o->dp);
            cJSON_AddNumberToObject(d, "ranks", r.dp_world);
            cJSON_AddNumberToObject(d, "bytes_sent", (double)r.dp_bytes);
            cJSON_AddNumberToObject(d, "control_bytes", (double)r.dp_ctl_bytes);
            cJSON_AddNumberToObject(d, "compute_s", r.compute_s);
            cJSON_AddNumberToObject(d, "compress_s", r.compress_s);
            cJSON_AddNumberToObject(d, "comm_s", r.comm_s);
            cJSON_AddNumberToObject(d, "seconds_at_1gbit", (double)r.dp_bytes * 8 / 1e9);
            cJSON_AddNumberToObject(d, "seconds_at_10gbit", (double)r.dp_bytes * 8 / 1e10);
        }
        cJSON_AddItemToObject(j, "log", L.steps);
        cli_print_json(j);
    } else {
        fprintf(stderr, "finetune: %d steps on %zu training tokens in %.1f s (%.0f tokens/s), loss %.4f -> %.4f",
                r.steps, n_ids, r.seconds, r.tokens_per_s, r.first_loss, r.last_loss);
        if (o->eval_file)
            fprintf(stderr, ", held-out ppl %.3f -> %.3f", r.eval_ppl_before, r.eval_ppl_after);
        fprintf(stderr, " -> %s\n", o->out);
        if (o->dp) print_dp(o, &r);
    }
    return 0;
}
