/* cli.h - what the sqz commands share: the parsed options, output helpers, the commands.
 * Each command lives in its own cmd_*.c and uses include/sqz.h only; the options and the
 * commands that take each are declared once, in args.c's tables. */
#ifndef SQZ_CLI_H
#define SQZ_CLI_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>

#include "sqz.h"

/* Every option of every command; the parser (args.c) refuses an option the command does not
 * take, so a command reads only the fields of its own options. */
typedef struct opts {
    const char *model, *tokenizer, *prompt, *file, *out, *type;
    int n_predict, threads, json, n_ctx, no_progress, compat_llamacpp, n_chunks, pure;
    long long max_tokens;
    float temp, top_p;
    unsigned long long seed;
    /* KV-cache policies (--kv, repeatable for kvbench) and the prefill before them */
    const char *kv[64]; /* kvbench: the policies, in order (ppl: the first) */
    int n_kv, kv_prefill;
    /* KL divergence against a base model */
    const char *kld_base, *kld_cache;
    /* quantize: method and calibration */
    const char *method, *calib;
    long long calib_tokens;
    int calib_ctx, act_order, fake_quant;
    float rsq_rmin; /* 0: the library's default */
    float damp;     /* 0: the library's default */
    int no_decode;  /* kvbench: quality and bytes only, no decode timing */
    const char *embd_type; /* convert, quantize: token_embd's type */
    float mix_frac; /* mixllm: share of weights at 8 bits */
    int mix_frac_set;
    int alloc, alloc_windows; /* quantize: types by measured KL for the mix's bytes */
    int plain_gptq;           /* levels: the paper's GPTQ (quick databases) */
    /* finetune */
    int steps, batch, micro_batch, warmup, warmup_set, cosine, clip_set, eval_every;
    float lr, min_lr, weight_decay, clip;
    const char *eval_file;
    long long eval_tokens;
    int lora_rank;
    float lora_alpha;
    const char *lora_targets;
    const char *dp; /* finetune --dp SPEC */
    const char *checkpoint, *resume;
    int checkpoint_every;
    /* every other command: a LoRA adapter merged into the model at load */
    const char *lora;
    float lora_scale;
    int lora_scale_set;
    int extract, extract_set; /* merge: rebuild this task of a tall_masks merge ... */
    const char *from;         /* ... written to this folder */
    const char *continual;    /* merge: the running opcm merge's folder MODEL is added to */
    const char *eval[64];     /* merge --eval DOMAIN=TEXT, in order */
    int n_eval;
    const char *tune[64];     /* merge --tune DOMAIN=TRAIN: tall_masks' mask_lambda per task */
    int n_tune;
    const char *task_calib[64]; /* merge --task-calib DOMAIN=TEXT: pleas' per-model calibration */
    int n_task_calib;
    float density; const char *nm, *levels; /* prune: the level, or per-matrix levels (JSON) */
    float lr_params, rank_frac, energy;     /* lowrank: the target */
    int drop_n; const char *drop_list;      /* drop: how many blocks, or which */
    int drop_attn, drop_mlp, drop_attn_set, drop_mlp_set, drop_sub; /* drop: sub-blocks by count */
    const char *drop_which;                 /* drop: or which (attn:3,mlp:5) */
    /* search: the database, the space, the budget and EvoPress's settings */
    const char *db, *space, *stages;
    const char *search_alloc;               /* search: the seed (knapsack, layerwise, uniform) */
    float bpw;
    unsigned long long bytes;
    int generations, generations_set, offspring, pool_windows, holdout_windows, brute_force, max_gens;
    const char *inputs[64]; int n_inputs;   /* report: the result files (its operands) */
    int bs_rank, bs_iters, bs_sort_windows; /* bitstack */
    const char *memory;                     /* a BitStack model's size (--memory) */
} opts;

/* "sqz: <message>" on stderr; returns 1. */
int cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The context's last error as one line; returns 1. */
int cli_fail(sqz_ctx *ctx);
/* Prints o as one line of JSON on stdout and frees it. Every command's object gets
 * "peak_rss_mib" (cli_peak_rss_mib at the time of printing) unless it has one. */
void cli_print_json(cJSON *o);
/* The process's peak resident memory so far, MiB: VmHWM from /proc/self/status (it counts
 * the touched pages of memory-mapped files, the weights), else getrusage's ru_maxrss. */
double cli_peak_rss_mib(void);
double cli_now(void);
/* Reads a whole file (malloc'ed, NUL-terminated); NULL after printing the error. */
char *cli_read_file(const char *path, size_t *len);

/* Loads the model (o->model, o->tokenizer), sets a BitStack model's size (--memory) and merges
 * the adapter of --lora into it. Returns 0; 1 after printing the error. */
int cli_load_model(sqz_ctx *ctx, const opts *o, sqz_model **model);
/* Loads the model (as cli_load_model), reads the text file at path and tokenizes it
 * (add_bos as sqz_tokenize takes it; *tok_seconds, when not NULL: the tokenization's time).
 * Returns 0; 1 after printing the error, with nothing left to free. *ids: free with sqz_free. */
int cli_load_model_text(sqz_ctx *ctx, const opts *o, const char *path, int add_bos,
                        sqz_model **model, int32_t **ids, size_t *n_ids, double *tok_seconds);

/* --calib's windows from its tokens ids[0..n_ids): --calib-tokens tokens (32768) in windows of
 * --calib-ctx (*calib_ctx: 512 by default) spread over the whole text (sqz_calib_spread); with
 * warn, a warning when the text holds fewer. Returns 0 (*calib: free with free); 1 after
 * printing the error (*calib NULL). */
int cli_calib_windows(const opts *o, const int32_t *ids, size_t n_ids, int warn, int32_t **calib,
                      size_t *n_calib, int *calib_ctx);
/* cli_load_model_calib's flags: load --calib and make its windows (without: the model alone,
 * *calib NULL, *n_calib 0); no warning when the text is short (sqz drop and merge never had one). */
enum { CLI_CALIB_TEXT = 1, CLI_CALIB_QUIET = 2 };
/* The model (cli_load_model) and, with CLI_CALIB_TEXT, --calib's windows (cli_calib_windows);
 * *calib_ctx is --calib-ctx or 512 either way. Returns 0 (*model, *calib: free with
 * sqz_model_free / free); 1 after printing the error, with nothing left to free. */
int cli_load_model_calib(sqz_ctx *ctx, const opts *o, unsigned flags, sqz_model **model, int32_t **calib,
                         size_t *n_calib, int *calib_ctx);

/* A command: its name, what runs it, and its lines in the usage text. */
typedef struct cli_command {
    const char *name;
    int (*run)(sqz_ctx *, const opts *);
    const char *usage;
} cli_command;

/* The command called name; NULL if none. */
const cli_command *cli_find_command(const char *name);
/* Fills o from the arguments after the command. Returns 0; 2 after printing a usage error
 * (unknown option, an option cmd does not take, a missing or invalid value); -1 after printing
 * cmd's help on stdout (--help, -h). */
int cli_parse_args(const cli_command *cmd, int argc, char **argv, opts *o);
/* The usage text: every command, every option and the commands that take it. */
void cli_usage(FILE *f);

int cmd_info(sqz_ctx *ctx, const opts *o);
int cmd_generate(sqz_ctx *ctx, const opts *o);
int cmd_ppl(sqz_ctx *ctx, const opts *o);
int cmd_convert(sqz_ctx *ctx, const opts *o);
int cmd_quantize(sqz_ctx *ctx, const opts *o);
int cmd_kvbench(sqz_ctx *ctx, const opts *o);
int cmd_kvcalib(sqz_ctx *ctx, const opts *o);
int cmd_finetune(sqz_ctx *ctx, const opts *o);
int cmd_merge(sqz_ctx *ctx, const opts *o);
int cmd_prune(sqz_ctx *ctx, const opts *o);
int cmd_lowrank(sqz_ctx *ctx, const opts *o);
int cmd_drop(sqz_ctx *ctx, const opts *o);
int cmd_levels(sqz_ctx *ctx, const opts *o);
int cmd_search(sqz_ctx *ctx, const opts *o);
int cmd_report(sqz_ctx *ctx, const opts *o);
int cmd_bitstack(sqz_ctx *ctx, const opts *o);

/* "12MiB", "12MB", "800KiB", "1.5GiB", "12345": bytes (K/M/G B: 1000^n, KiB/MiB/GiB: 1024^n).
 * Returns 0; -1 when malformed or not positive. */
int cli_parse_size(const char *s, unsigned long long *out);

#endif
