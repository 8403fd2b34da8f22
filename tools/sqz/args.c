/* args.c - the sqz commands and their options, each declared once as a row of a table: its
 * names, the kind and range of its value, the field of `opts` it fills, its help, and the
 * commands that take it. The parser, `sqz --help` and `sqz COMMAND --help` all read the
 * tables, so an option cannot be parsed without being documented, and a command refuses the
 * options it would ignore (a usage error, exit status 2) instead of running without them. */
#include <math.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- the commands; an option's `cmds` is a mask of their bits (C_INFO = commands[0], ...) */

enum {
    C_INFO = 1 << 0, C_GENERATE = 1 << 1, C_PPL = 1 << 2, C_CONVERT = 1 << 3,
    C_QUANTIZE = 1 << 4, C_KVBENCH = 1 << 5, C_KVCALIB = 1 << 6, C_FINETUNE = 1 << 7,
    C_MERGE = 1 << 8, C_PRUNE = 1 << 9, C_LOWRANK = 1 << 10, C_DROP = 1 << 11,
    C_LEVELS = 1 << 12, C_SEARCH = 1 << 13, C_REPORT = 1 << 14, C_BITSTACK = 1 << 15,
    C_ALL = (1 << 16) - 1,
    C_MODEL = C_ALL & ~C_REPORT /* the commands that load a model (report reads results) */
};

/* Each command's lines at the top of `sqz --help`, in this order (the order of the bits). */
static const cli_command commands[] = {
    { "info", cmd_info,
      "  info MODEL                          architecture, sizes, tokenizer\n" },
    { "generate", cmd_generate,
      "  generate MODEL -p TEXT [-n N]       generate text (stdout: the text alone)\n" },
    { "ppl", cmd_ppl,
      "  ppl MODEL -f FILE                   perplexity over FILE\n" },
    { "convert", cmd_convert,
      "  convert MODEL -o OUT.gguf --type T  write a GGUF file (f16, q8_0, q4_0, q4_k, ...,\n"
      "                                      or llama.cpp's mixes q4_k_m, q3_k_m, q2_k, ...)\n" },
    { "quantize", cmd_quantize,
      "  quantize MODEL -o OUT.gguf --type T --method rtn|imatrix|gptq|rsq|decoupleq[:k=v,..] --calib FILE\n"
      "  quantize MODEL -o OUT.sqzf --type q4|q3 --method mixllm --calib FILE\n"
      "                                      quantization with calibration data\n" },
    { "kvbench", cmd_kvbench,
      "  kvbench MODEL -f FILE [--kv P ...]  KV cache policies: bytes, ppl, KLD, decode t/s\n" },
    { "kvcalib", cmd_kvcalib,
      "  kvcalib MODEL -f FILE -o OUT.kvproj the \"proj\" KV policy's projections (--kv\n"
      "                                      proj:file=OUT.kvproj,rank=R)\n" },
    { "finetune", cmd_finetune,
      "  finetune MODEL -f TRAIN.txt -o OUT.gguf [--steps N --lr LR ...]\n"
      "                                      full fine-tuning (f32 AdamW) on a text\n" },
    { "merge", cmd_merge,
      "  merge CONFIG.yaml -o OUT            merge models by a mergekit config: an HF folder,\n"
      "                                      or OUT.gguf (--type: any convert type)\n"
      "  merge --continual STATE MODEL       add MODEL to the running opcm merge in STATE\n" },
    { "prune", cmd_prune,
      "  prune MODEL -o OUT.gguf --method magnitude|wanda|sparsegpt --density D|--nm N:M [--calib FILE]\n"
      "                                      remove weights (--type sp8: sparse int8 in sqzf;\n"
      "                                      else a dense GGUF holding the zeros, default f16;\n"
      "                                      sparsegpt --type q4_0..q6_k: one joint pass)\n" },
    { "lowrank", cmd_lowrank,
      "  lowrank MODEL -o OUT.sqzf --params P|--rank-frac F|--energy E [--method svd|lord|asvd]\n"
      "                                      factor block matrices as B A (sqzf; asvd: --calib)\n" },
    { "drop", cmd_drop,
      "  drop MODEL -o OUT.gguf --blocks N --calib FILE | --block-list 3,5\n"
      "  drop MODEL -o OUT.sqzf --attn N --mlp M --calib FILE | --sub N ... | --which attn:3,mlp:5\n"
      "                                      remove whole blocks or their attention / MLP\n"
      "                                      sub-blocks (least influence first)\n" },
    { "levels", cmd_levels,
      "  levels MODEL -o DB --calib FILE     every matrix at every k-quant type by GPTQ, with its\n"
      "                                      KL: the database sqz search combines (resumable)\n" },
    { "search", cmd_search,
      "  search MODEL -o OUT.gguf --db DB --bpw B|--bytes N --calib FILE [--alloc layerwise]\n"
      "  search MODEL -o OUT.gguf --db DB --alloc uniform --type q3_k --generations 0 --calib FILE\n"
      "  search MODEL -o OUT.gguf --levels depth --blocks N --calib FILE [--brute-force]\n"
      "  search MODEL -o OUT.sqzf --levels depth --sub N --calib FILE [--brute-force]\n"
      "                                      EvoPress: per-matrix types (or blocks to drop) by\n"
      "                                      evolutionary search on KL to the model\n" },
    { "report", cmd_report,
      "  report RESULT.json... -o OUT.html   plots and tables of the --json results of ppl,\n"
      "                                      quantize, convert, kvbench (one HTML file)\n" },
    { "bitstack", cmd_bitstack,
      "  bitstack MODEL -o OUT.sqzf --calib FILE [--rank R] [--iters K]\n"
      "                                      BitStack: residual sign x low-rank blocks in one\n"
      "                                      order; load at any size with --memory M\n" },
};
enum { N_COMMANDS = sizeof commands / sizeof *commands };

static unsigned command_bit(const cli_command *c) { return 1u << (unsigned)(c - commands); }

/* ---- the options */

typedef enum opt_kind {
    OPT_FLAG,   /* no value: the int field becomes 1 */
    OPT_INT,    /* int field, value in [lo, hi] */
    OPT_LLONG,  /* long long field, value in [lo, hi] */
    OPT_ULLONG, /* unsigned long long field, value in [lo, hi] */
    OPT_FLOAT,  /* float field, value in [flo, fhi] (bounds in `open` excluded) */
    OPT_STRING, /* const char * field: the argument itself */
    OPT_LIST,   /* repeatable: appended to a const char *[64] field, counted in count_at's int */
    OPT_ENUM,   /* int field: the index of the value in `choices` */
} opt_kind;

enum { LO_OPEN = 1, HI_OPEN = 2 };

typedef struct option_row {
    const char *name, *alias;   /* "--prompt", "-p" (NULL: none) */
    const char *meta;           /* the value in the help ("TEXT"); NULL for flags and enums */
    opt_kind kind;
    size_t at;                  /* offsetof(opts, the field) */
    long long lo, hi;           /* OPT_INT, OPT_LLONG, OPT_ULLONG */
    double flo, fhi;            /* OPT_FLOAT */
    unsigned open;              /* OPT_FLOAT: LO_OPEN, HI_OPEN */
    const char *const *choices; /* OPT_ENUM, NULL-terminated */
    size_t count_at;            /* OPT_LIST: offsetof the int that counts the values */
    size_t set_at;              /* an int field also set to 1 when the option is given; 0: none
                                   (offset 0 is opts.model, never such a field) */
    unsigned cmds;              /* the commands that take it (C_* bits) */
    const char *help;           /* "\n" starts a continuation line */
} option_row;

#define AT(f) offsetof(opts, f)
#define FLAG(f) .kind = OPT_FLAG, .at = AT(f)
#define STR(f, m) .kind = OPT_STRING, .at = AT(f), .meta = m
#define INT(f, m, a, b) .kind = OPT_INT, .at = AT(f), .meta = m, .lo = (a), .hi = (b)
#define LLONG(f, m, a, b) .kind = OPT_LLONG, .at = AT(f), .meta = m, .lo = (a), .hi = (b)
#define FLOAT(f, m, a, b, o) .kind = OPT_FLOAT, .at = AT(f), .meta = m, .flo = (a), .fhi = (b), .open = (o)

static const char *const compat_choices[] = { "sqz", "llama.cpp", NULL };

/* In the usage text's order; --tokenizer first, the options of every run last. */
static const option_row options[] = {
    { "--tokenizer", NULL, STR(tokenizer, "FILE"), .cmds = C_MODEL,
      .help = "tokenizer (llama2.c tokenizer.bin, or a tokenizer.json)" },
    { "--prompt", "-p", STR(prompt, "TEXT"), .cmds = C_GENERATE, .help = "prompt" },
    { "--n-predict", "-n", INT(n_predict, "N", 0, 1 << 24), .cmds = C_GENERATE,
      .help = "tokens to generate (default 128)" },
    { "--temp", NULL, FLOAT(temp, "T", 0, INFINITY, 0), .cmds = C_GENERATE,
      .help = "temperature, 0 = greedy (default 0.8)" },
    { "--top-p", NULL, FLOAT(top_p, "P", 0, INFINITY, LO_OPEN), .cmds = C_GENERATE,
      .help = "nucleus sampling (default 0.9; 1 disables)" },
    { "--seed", NULL, .kind = OPT_ULLONG, .at = AT(seed), .meta = "S", .lo = 0, .hi = (long long)1 << 62,
      .cmds = C_GENERATE | C_QUANTIZE | C_FINETUNE | C_MERGE | C_SEARCH,
      .help = "random seed (default 42; quantize: rsq's rotations; finetune: data\n"
              "order; merge: dare, della)" },
    { "--file", "-f", STR(file, "FILE"), .cmds = C_PPL | C_KVBENCH | C_KVCALIB | C_FINETUNE,
      .help = "text to score, or to calibrate on (kvcalib)" },
    { "--ctx", "-c", INT(n_ctx, "N", 2, 1 << 20), .cmds = C_PPL | C_KVBENCH | C_FINETUNE | C_MERGE,
      .help = "window length (default: the model's trained context; merge --eval, --tune: 256)" },
    { "--max-tokens", NULL, LLONG(max_tokens, "N", 2, (long long)1 << 40),
      .cmds = C_PPL | C_KVBENCH | C_KVCALIB | C_MERGE, .help = "use only the first N tokens of FILE" },
    { "--compat", NULL, .kind = OPT_ENUM, .at = AT(compat_llamacpp), .choices = compat_choices,
      .cmds = C_PPL,
      .help = "llama.cpp: perplexity as llama-perplexity computes it (second half\n"
              "of each chunk scored, BOS per chunk if the vocabulary asks);\n"
              "sqz: sqz's windows (default)" },
    { "--chunks", NULL, INT(n_chunks, "N", 1, 1 << 30), .cmds = C_PPL,
      .help = "with --compat llama.cpp: use at most N chunks" },
    { "--kv", NULL, .kind = OPT_LIST, .at = AT(kv), .count_at = AT(n_kv), .meta = "SPEC", .cmds = C_PPL | C_KVBENCH,
      .help = "KV cache policy, e.g. f16, q4, streaming:sink=4,window=1020+q4,\n"
              "xkv:rank=32+q8 (ppl: one; kvbench: repeatable; see README)" },
    { "--kv-prefill", NULL, INT(kv_prefill, "N", 0, 1 << 24), .cmds = C_PPL | C_KVBENCH,
      .help = "tokens of each window run as one batch, then one by one\n"
              "(kvbench: default 256)" },
    { "--kld-base", NULL, STR(kld_base, "MODEL"), .cmds = C_PPL,
      .help = "also the KL divergence to MODEL's distributions (kld,\n"
              "kld_p99, top1_agree)" },
    { "--kld-cache", NULL, STR(kld_cache, "FILE"), .cmds = C_PPL | C_KVBENCH,
      .help = "ppl: the base's logits in FILE (read when it was made for this\n"
              "text, context and mode; else written from --kld-base;\n"
              "kvbench: the f32 cache's logits, computed once)" },
    { "--no-decode", NULL, FLAG(no_decode), .cmds = C_KVBENCH,
      .help = "bytes, ppl and kld only, no decode timing" },
    { "--out", "-o", STR(out, "FILE"), .cmds = C_CONVERT | C_QUANTIZE | C_KVCALIB | C_FINETUNE | C_MERGE | C_PRUNE | C_LOWRANK | C_DROP | C_LEVELS | C_SEARCH | C_REPORT | C_BITSTACK,
      .help = "output file" },
    { "--type", NULL, STR(type, "TYPE"), .cmds = C_CONVERT | C_QUANTIZE | C_FINETUNE | C_MERGE | C_PRUNE | C_LOWRANK | C_DROP | C_SEARCH,
      .help = "tensor type or mix (finetune: of the output, default f16; merge:\n"
              "f32, f16, bf16 for a folder; search --alloc uniform: q2_k..q6_k)" },
    { "--pure", NULL, FLAG(pure), .cmds = C_CONVERT | C_QUANTIZE | C_MERGE,
      .help = "every 2-D weight in TYPE, no mix" },
    { "--embd-type", NULL, STR(embd_type, "TYPE"), .cmds = C_CONVERT | C_QUANTIZE | C_SEARCH,
      .help = "token_embd.weight's type" },
    { "--method", NULL, STR(method, "M"), .cmds = C_QUANTIZE | C_MERGE | C_PRUNE | C_LOWRANK,
      .help = "NAME[:key=value,...] (default gptq): rtn[:fake], imatrix,\n"
              "gptq[:damp,act_order,alloc,windows], rsq[:damp,act_order,rmin,seed],\n"
              "decoupleq[:damp,fake] (2-bit type dq2, its default --type),\n"
              "mixllm[:damp,act_order,frac]; the flags below are aliases\n"
              "(merge: quantize the merged OUT.gguf in the same run;\n"
              "prune: magnitude, wanda, sparsegpt[:damp,block], default sparsegpt;\n"
              "lowrank: svd, lord, asvd[:damp], default asvd)" },
    { "--calib", NULL, STR(calib, "FILE"), .cmds = C_QUANTIZE | C_KVCALIB | C_MERGE | C_PRUNE | C_LOWRANK | C_DROP | C_LEVELS | C_SEARCH | C_BITSTACK,
      .help = "calibration text (kvcalib: as -f)" },
    { "--calib-tokens", NULL, LLONG(calib_tokens, "N", 1, (long long)1 << 40),
      .cmds = C_LEVELS | C_SEARCH | C_QUANTIZE | C_KVCALIB | C_MERGE | C_PRUNE | C_LOWRANK | C_DROP | C_BITSTACK, .help = "calibration tokens (default 32768; kvcalib: all)" },
    { "--calib-ctx", NULL, INT(calib_ctx, "N", 2, 1 << 20), .cmds = C_QUANTIZE | C_KVCALIB | C_MERGE | C_PRUNE | C_LOWRANK | C_DROP | C_LEVELS | C_SEARCH | C_BITSTACK,
      .help = "tokens per calibration window (default 512; kvcalib: the\n"
              "model's trained context, at most 1024)" },
    { "--act-order", NULL, FLAG(act_order), .cmds = C_QUANTIZE,
      .help = "act_order=1: gptq, rsq: columns by descending Hessian diagonal" },
    { "--damp", NULL, FLOAT(damp, "D", 0, 10, LO_OPEN | HI_OPEN), .cmds = C_QUANTIZE | C_LEVELS,
      .help = "damp=D: gptq, rsq, decoupleq, mixllm: D * mean(diag H) added to the\n"
              "Hessian's diagonal (default 0.1; decoupleq 0.01)" },
    { "--rsq-rmin", NULL, FLOAT(rsq_rmin, "R", 0, 1, LO_OPEN), .cmds = C_QUANTIZE,
      .help = "rmin=R: rsq's least token weight in (0, 1] (default 0.005; 1: rotation\n"
              "+ GPTQ, tokens alike); --seed S seeds the rotations" },
    { "--fake-quant", NULL, FLAG(fake_quant), .cmds = C_QUANTIZE,
      .help = "fake=1: type dq2: write its dequantized weights as f32 GGUF instead of\n"
              "dq2 in sqzf (rtn to dq2 needs it)" },
    { "--mix-frac", NULL, FLOAT(mix_frac, "F", 0, 1, HI_OPEN), .set_at = AT(mix_frac_set),
      .cmds = C_QUANTIZE, .help = "frac=F: mixllm's share of the weights at 8 bits (default 0.1)" },
    { "--alloc", NULL, FLAG(alloc), .cmds = C_QUANTIZE,
      .help = "alloc=1: gptq: each matrix's type (q2_k..q6_k) chosen by measured KL\n"
              "divergence within the bytes of the mix's own types (minutes)" },
    { "--alloc-windows", NULL, INT(alloc_windows, "N", 1, 1 << 20), .cmds = C_QUANTIZE | C_LEVELS,
      .help = "windows=N: --alloc's calibration windows the KLs are measured on (4)" },
    { "--plain-gptq", NULL, FLAG(plain_gptq), .cmds = C_LEVELS,
      .help = "the paper's GPTQ, without sqz's refit passes and coordinate descent:\n"
              "several times faster, a little worse (quick databases, tests)" },
    /* finetune */
    { "--steps", NULL, INT(steps, "N", 1, 1 << 30), .cmds = C_FINETUNE, .help = "optimizer steps (150)" },
    { "--batch", NULL, INT(batch, "N", 1, 1 << 20), .cmds = C_FINETUNE,
      .help = "windows of --ctx tokens per step (8)" },
    { "--micro-batch", NULL, INT(micro_batch, "N", 1, 1 << 20), .cmds = C_FINETUNE,
      .help = "windows per forward/backward pass, dividing --batch (memory)" },
    { "--lr", NULL, FLOAT(lr, "LR", 0, 1, LO_OPEN), .cmds = C_FINETUNE, .help = "peak learning rate (3e-4)" },
    { "--warmup", NULL, INT(warmup, "N", 0, 1 << 30), .set_at = AT(warmup_set), .cmds = C_FINETUNE,
      .help = "steps of linear learning-rate warm-up (20; 0: none)" },
    { "--cosine", NULL, FLAG(cosine), .cmds = C_FINETUNE,
      .help = "cosine decay to --min-lr after the warm-up (default: constant)" },
    { "--min-lr", NULL, FLOAT(min_lr, "LR", 0, 1, 0), .cmds = C_FINETUNE, .help = "--cosine's final rate (0)" },
    { "--weight-decay", NULL, FLOAT(weight_decay, "W", 0, 10, 0), .cmds = C_FINETUNE,
      .help = "AdamW's decoupled weight decay, matrices only (0)" },
    { "--clip", NULL, FLOAT(clip, "C", 0, INFINITY, 0), .set_at = AT(clip_set), .cmds = C_FINETUNE,
      .help = "gradient global-norm limit (1.0; 0: none)" },
    { "--eval-file", NULL, STR(eval_file, "FILE"), .cmds = C_FINETUNE,
      .help = "held-out text: perplexity before, every --eval-every steps, after" },
    { "--eval-tokens", NULL, LLONG(eval_tokens, "N", 2, (long long)1 << 40), .cmds = C_FINETUNE,
      .help = "held-out tokens scored (30000)" },
    { "--eval-every", NULL, INT(eval_every, "N", 1, 1 << 30), .cmds = C_FINETUNE,
      .help = "steps between held-out evaluations (only before and after)" },
    { "--lora", NULL, STR(lora, "ADAPTER"), .cmds = C_MODEL & ~(C_FINETUNE | C_MERGE),
      .help = "a LoRA adapter (llama.cpp's GGUF format) merged into the model" },
    { "--lora-scale", NULL, FLOAT(lora_scale, "S", -INFINITY, INFINITY, 0), .set_at = AT(lora_scale_set),
      .cmds = C_MODEL & ~(C_FINETUNE | C_MERGE), .help = "the adapter's scale (1; llama.cpp's --lora-scaled)" },
    { "--lora", NULL, INT(lora_rank, "RANK", 1, 4096), .cmds = C_FINETUNE,
      .help = "train LoRA adapters of this rank on the frozen model (which may be\n"
              "quantized); -o gets llama.cpp's GGUF adapter" },
    { "--lora-alpha", NULL, FLOAT(lora_alpha, "A", 0, INFINITY, LO_OPEN), .cmds = C_FINETUNE,
      .help = "LoRA scale alpha / rank (alpha default: the rank)" },
    { "--lora-targets", NULL, STR(lora_targets, "LIST"), .cmds = C_FINETUNE,
      .help = "adapted matrices: a comma list of q,k,v,o,gate,up,down (all)" },
    { "--checkpoint", NULL, STR(checkpoint, "FILE"), .cmds = C_FINETUNE | C_SEARCH,
      .help = "save the run's state to FILE (after the last step, or every\n--checkpoint-every steps)" },
    { "--checkpoint-every", NULL, INT(checkpoint_every, "N", 1, 1 << 30), .cmds = C_FINETUNE | C_SEARCH,
      .help = "steps between checkpoints" },
    { "--resume", NULL, STR(resume, "FILE"), .cmds = C_FINETUNE | C_SEARCH,
      .help = "continue the run saved in FILE (same model and recipe; --steps the\ntotal)" },
    { "--dp", NULL, STR(dp, "SPEC"), .cmds = C_FINETUNE,
      .help = "data parallel under mpirun -np N: the gradient exchange, none, fp16,\n"
              "topk, dgc, powersgd, lgreco or econtrol, with :key=value,... (e.g.\n"
              "dgc:density=0.001, powersgd:rank=4); -f A,B: rank r trains on file r" },
    { "--extract", NULL, INT(extract, "TASK", 0, 1 << 20), .set_at = AT(extract_set), .cmds = C_MERGE,
      .help = "rebuild task TASK (0, 1, ...: the config's models, base left out) of\n"
              "the tall_masks merge in --from DIR" },
    { "--from", NULL, STR(from, "DIR"), .cmds = C_MERGE, .help = "with --extract: the tall_masks merge's folder" },
    { "--eval", NULL, .kind = OPT_LIST, .at = AT(eval), .count_at = AT(n_eval), .meta = "DOMAIN=TEXT",
      .cmds = C_MERGE, .help = "after the merge: ppl, KL to the domain's specialist and gap closed R_d\n"
                               "of the base, inputs and merge on TEXT (repeatable; see README)" },
    { "--tune", NULL, .kind = OPT_LIST, .at = AT(tune), .count_at = AT(n_tune), .meta = "DOMAIN=TRAIN",
      .cmds = C_MERGE, .help = "tall_masks: tune each task's mask_lambda (0.2..0.6) on its train text\n"
                               "(the task whose model's name contains DOMAIN; repeatable)" },
    { "--task-calib", NULL, .kind = OPT_LIST, .at = AT(task_calib), .count_at = AT(n_task_calib),
      .meta = "DOMAIN=TEXT", .cmds = C_MERGE,
      .help = "pleas, otfusion: the model whose name contains DOMAIN calibrates on\n"
              "TEXT, its own data (others on --calib; repeatable)" },
    { "--continual", NULL, STR(continual, "STATE"), .cmds = C_MERGE,
      .help = "add MODEL (given in place of CONFIG) to the running opcm merge in\n"
              "folder STATE (made by a merge_method: opcm config's -o STATE)" },
    { "--density", NULL, FLOAT(density, "D", 0, 1, LO_OPEN | HI_OPEN), .cmds = C_PRUNE,
      .help = "fraction of each block matrix's weights kept" },
    { "--nm", NULL, STR(nm, "N:M"), .cmds = C_PRUNE, .help = "keep N of every M weights of a row (2:4, 4:8)" },
    { "--levels", NULL, STR(levels, "JSON"), .cmds = C_PRUNE | C_LOWRANK,
      .help = "per-matrix levels {tensor name: density or \"N:M\"} (lowrank:\n"
              "a fraction of the weights, an integer rank, or 1: dense)" },
    { "--params", NULL, FLOAT(lr_params, "P", 0, 1, LO_OPEN | HI_OPEN), .cmds = C_LOWRANK,
      .help = "fraction of each block matrix's weights its factors hold (lord: of\n"
              "all block matrices together)" },
    { "--rank-frac", NULL, FLOAT(rank_frac, "F", 0, 1, LO_OPEN | HI_OPEN), .cmds = C_LOWRANK,
      .help = "rank = F x min(rows, cols); it must stay below rows*cols/(rows+cols)" },
    { "--energy", NULL, FLOAT(energy, "E", 0, 1, LO_OPEN), .cmds = C_LOWRANK,
      .help = "each matrix's smallest rank keeping E of its squared singular values" },
    { "--blocks", NULL, INT(drop_n, "N", 1, 1 << 20), .cmds = C_DROP | C_SEARCH,
      .help = "drop the N blocks of least block influence (needs --calib)" },
    { "--block-list", NULL, STR(drop_list, "LIST"), .cmds = C_DROP,
      .help = "drop exactly these blocks (0-based, comma-separated)" },
    { "--attn", NULL, INT(drop_attn, "N", 0, 1 << 20), .set_at = AT(drop_attn_set), .cmds = C_DROP,
      .help = "drop the N attention sub-blocks of least influence (with --mlp:\n"
              "both; OUT is sqzf; needs --calib)" },
    { "--mlp", NULL, INT(drop_mlp, "N", 0, 1 << 20), .set_at = AT(drop_mlp_set), .cmds = C_DROP,
      .help = "drop the N MLP sub-blocks of least influence" },
    { "--sub", NULL, INT(drop_sub, "N", 1, 1 << 20), .cmds = C_DROP | C_SEARCH,
      .help = "drop the N sub-blocks of least influence, attention or MLP\n"
              "(search --levels depth: which N sub-blocks, by EvoPress)" },
    { "--which", NULL, STR(drop_which, "LIST"), .cmds = C_DROP,
      .help = "drop exactly these sub-blocks: attn:L and mlp:L, comma-separated" },
    { "--db", NULL, STR(db, "DB"), .cmds = C_SEARCH, .help = "the level database (sqz levels)" },
    { "--alloc", NULL, STR(search_alloc, "METHOD"), .cmds = C_SEARCH,
      .help = "the seed (with --generations 0 the answer): knapsack (default;\n"
              "single-matrix KLs), layerwise (Layer-Wise Quantization: blocks by\n"
              "LIM = 1 - cos(input, output), the important ones at the higher of\n"
              "two adjacent k-quants; the head first), uniform (every matrix at\n"
              "--type T; without a budget its own bytes are the budget)" },
    { "--levels", NULL, STR(space, "SPACE"), .cmds = C_SEARCH,
      .help = "what the search chooses: quant (each matrix's type; default),\n"
              "depth (which --blocks N blocks to drop) or quant,depth (types and\n"
              "dropped blocks under one budget: a dropped block costs nothing)" },
    { "--bpw", NULL, FLOAT(bpw, "B", 0, 64, LO_OPEN), .cmds = C_SEARCH | C_QUANTIZE,
      .help = "budget: 8 x file bytes / the model's parameters (quantize: with --alloc, bpw=B)" },
    { "--bytes", NULL, .kind = OPT_ULLONG, .at = AT(bytes), .meta = "N", .lo = 1, .hi = (long long)1 << 62,
      .cmds = C_SEARCH | C_QUANTIZE, .help = "budget: the file's bytes (quantize: with --alloc, bytes=N)" },
    { "--generations", NULL, INT(generations, "N", 0, 1 << 24), .set_at = AT(generations_set), .cmds = C_SEARCH,
      .help = "EvoPress generations (200; 0: the knapsack's seed alone)" },
    { "--offspring", NULL, INT(offspring, "N", 1, 1 << 16), .cmds = C_SEARCH, .help = "children per generation (32)" },
    { "--stages", NULL, STR(stages, "S"), .cmds = C_SEARCH,
      .help = "selection stages, survivors x windows (8x1,2x4,1x32)" },
    { "--pool", NULL, INT(pool_windows, "N", 1, 1 << 20), .cmds = C_SEARCH,
      .help = "calibration windows the stages draw from (32)" },
    { "--holdout", NULL, INT(holdout_windows, "N", 1, 1 << 20), .cmds = C_SEARCH,
      .help = "quant: write the search's answer only if it beats its seed on N calibration windows outside the pool" },
    { "--brute-force", NULL, FLAG(brute_force), .cmds = C_SEARCH,
      .help = "depth: score every subset of --blocks N blocks instead" },
    { "--stop-after", NULL, INT(max_gens, "N", 1, 1 << 24), .cmds = C_SEARCH,
      .help = "stop after N generations of this run (with --checkpoint: resume later)" },
    { "--rank", NULL, INT(bs_rank, "R", 1, 64), .cmds = C_BITSTACK,
      .help = "rank of each block's magnitude (4)" },
    { "--iters", NULL, INT(bs_iters, "K", 1, 1024), .cmds = C_BITSTACK, .help = "blocks per matrix (16)" },
    { "--sort-windows", NULL, INT(bs_sort_windows, "N", 1, 1 << 20), .cmds = C_BITSTACK,
      .help = "calibration windows the block order's KLs are measured on (2)" },
    { "--memory", NULL, STR(memory, "M"), .cmds = C_MODEL & ~C_MERGE,
      .help = "a BitStack MODEL loaded at this size: the weights' bytes, e.g. 12MiB,\n"
              "12MB, 800KiB or a plain byte count (default: every block)" },
    { "--threads", "-t", INT(threads, "N", 1, 1024), .cmds = C_MODEL,
      .help = "threads (default: all cores)" },
    { "--json", NULL, FLAG(json), .cmds = C_ALL, .help = "print one JSON object on stdout" },
    { "--no-progress", NULL, FLAG(no_progress), .cmds = C_ALL, .help = "no progress bar" },
};
enum { N_OPTIONS = sizeof options / sizeof *options };

const cli_command *cli_find_command(const char *name) {
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(name, commands[i].name)) return &commands[i];
    return NULL;
}

/* The row named arg; where two rows share a name (--lora: an adapter to load, or finetune's
 * rank) the one the command takes. */
static const option_row *find_option(const char *arg, unsigned cmd_bit) {
    const option_row *any = NULL;
    for (int i = 0; i < N_OPTIONS; i++)
        if (!strcmp(arg, options[i].name) || (options[i].alias && !strcmp(arg, options[i].alias))) {
            if (options[i].cmds & cmd_bit) return &options[i];
            if (!any) any = &options[i];
        }
    return any;
}

/* ---- help */

enum { HELP_COL = 21 }; /* where the help text starts */

static void print_option(FILE *f, const option_row *r, int with_commands) {
    char left[96];
    int n = snprintf(left, sizeof left, "  %s%s%s", r->alias ? r->alias : "", r->alias ? ", " : "", r->name);
    if (r->meta) n += snprintf(left + n, sizeof left - (size_t)n, " %s", r->meta);
    for (int k = 0; r->choices && r->choices[k]; k++)
        n += snprintf(left + n, sizeof left - (size_t)n, "%c%s", k ? '|' : ' ', r->choices[k]);
    if (n < HELP_COL - 1) fprintf(f, "%-*s ", HELP_COL - 1, left);
    else fprintf(f, "%s\n%*s", left, HELP_COL, ""); /* too wide: the help on the next line */
    for (const char *h = r->help; *h; h++) {
        fputc(*h, f);
        if (*h == '\n') fprintf(f, "%*s", HELP_COL, "");
    }
    if (with_commands && r->cmds != C_ALL)
        for (int c = 0, k = 0; c < N_COMMANDS; c++)
            if (r->cmds & command_bit(&commands[c]))
                fprintf(f, "%s%s", k++ ? ", " : " [", commands[c].name);
    fprintf(f, "%s\n", with_commands && r->cmds != C_ALL ? "]" : "");
}

static const char model_help[] =
    "MODEL: a Hugging Face folder (config.json + safetensors + tokenizer.json), a GGUF or\n"
    "       sqzf file, or a llama2.c checkpoint (.bin, with --tokenizer tokenizer.bin)\n";

void cli_usage(FILE *f) {
    fprintf(f, "usage: sqz COMMAND MODEL [options]\ncommands:\n");
    for (int c = 0; c < N_COMMANDS; c++) fputs(commands[c].usage, f);
    fputs(model_help, f);
    fprintf(f, "options (in brackets: the only commands that take it; sqz COMMAND --help lists\n"
               "a command's options):\n");
    for (int i = 0; i < N_OPTIONS; i++) print_option(f, &options[i], 1);
}

static void command_usage(FILE *f, const cli_command *cmd) {
    const int results = command_bit(cmd) == C_REPORT; /* its operands are result files */
    fprintf(f, "usage: sqz %s %s [options]\n", cmd->name, results ? "RESULT.json..." : "MODEL");
    fputs(cmd->usage, f);
    if (!results) fputs(model_help, f);
    fprintf(f, "options of %s:\n", cmd->name);
    for (int i = 0; i < N_OPTIONS; i++)
        if (options[i].cmds & command_bit(cmd)) print_option(f, &options[i], 0);
}

/* ---- parsing */

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

static int float_in_range(const option_row *r, float v) {
    const int lo_ok = r->open & LO_OPEN ? v > r->flo : v >= r->flo;
    const int hi_ok = r->open & HI_OPEN ? v < r->fhi : v <= r->fhi;
    return lo_ok && hi_ok;
}

/* Stores value v of option r into o. Returns 0; 2 after printing the usage error. */
static int set_value(const option_row *r, const char *arg, const char *v, opts *o) {
    void *p = (char *)o + r->at;
    long long n;
    float x;
    int ok = 1;
    switch (r->kind) {
    case OPT_FLAG: *(int *)p = 1; break;
    case OPT_STRING: *(const char **)p = v; break;
    case OPT_INT: if ((ok = parse_int(v, r->lo, r->hi, &n))) *(int *)p = (int)n; break;
    case OPT_LLONG: if ((ok = parse_int(v, r->lo, r->hi, &n))) *(long long *)p = n; break;
    case OPT_ULLONG: if ((ok = parse_int(v, r->lo, r->hi, &n))) *(unsigned long long *)p = (unsigned long long)n; break;
    case OPT_FLOAT: if ((ok = parse_float(v, &x) && float_in_range(r, x))) *(float *)p = x; break;
    case OPT_ENUM:
        ok = 0;
        for (int k = 0; r->choices[k]; k++)
            if (!strcmp(v, r->choices[k])) *(int *)p = k, ok = 1;
        break;
    case OPT_LIST: { /* every list field is a const char *[64] */
        const int cap = 64;
        int *count = (int *)((char *)o + r->count_at);
        if (*count == cap) {
            fprintf(stderr, "sqz: at most %d %s values\n", cap, arg);
            return 2;
        }
        ((const char **)p)[(*count)++] = v;
        break;
    }
    }
    if (!ok) {
        fprintf(stderr, "sqz: invalid value '%s' for %s\n", v, arg);
        return 2;
    }
    if (r->set_at) *(int *)((char *)o + r->set_at) = 1;
    return 0;
}

int cli_parse_args(const cli_command *cmd, int argc, char **argv, opts *o) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            command_usage(stdout, cmd);
            return -1;
        }
        const option_row *r = find_option(a, command_bit(cmd));
        if (!r && a[0] == '-' && a[1]) {
            fprintf(stderr, "sqz: unknown option %s (see sqz --help)\n", a);
            return 2;
        }
        if (!r && command_bit(cmd) == C_REPORT) { /* its operands: any number of files */
            if (o->n_inputs == 64) { fprintf(stderr, "sqz: at most 64 result files\n"); return 2; }
            o->inputs[o->n_inputs++] = a;
            continue;
        }
        if (!r) {
            if (o->model) { fprintf(stderr, "sqz: unexpected argument '%s'\n", a); return 2; }
            o->model = a;
            continue;
        }
        if (!(r->cmds & command_bit(cmd))) {
            fprintf(stderr, "sqz: %s does not take %s (see sqz %s --help)\n", cmd->name, a, cmd->name);
            return 2;
        }
        const char *v = NULL;
        if (r->kind != OPT_FLAG) {
            if (i + 1 == argc) { fprintf(stderr, "sqz: %s needs a value\n", a); return 2; }
            v = argv[++i];
        }
        if (set_value(r, a, v, o)) return 2;
    }
    return 0;
}
