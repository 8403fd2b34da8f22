/*
 * sqz.h - the public API of libsqz: load transformer language models, run them on CPU,
 * measure them. Nothing else in the tree is public; the CLI (tools/sqz) uses this header only.
 *
 * Conventions
 *   - Every fallible function returns an sqz_status. On failure the context holds a one-line
 *     message (sqz_ctx_error) that names the file and the problem; out-parameters are untouched
 *     or set to NULL/0. The library never exits or aborts on bad input.
 *   - Objects come in new/free pairs; every *_free accepts NULL.
 *   - A sqz_ctx carries settings (threads, progress callback) and the last error. One context
 *     per thread of the caller; objects made with a context keep a pointer to it.
 */
#ifndef SQZ_H
#define SQZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version, in this one place: the Makefile reads these three lines (the shared library's
 * file name and soname, sqz.pc, the Python package's check). */
#define SQZ_VERSION_MAJOR 0
#define SQZ_VERSION_MINOR 1
#define SQZ_VERSION_PATCH 0
#define SQZ_VERSION_STR_(x) #x
#define SQZ_VERSION_XSTR_(x) SQZ_VERSION_STR_(x)
#define SQZ_VERSION SQZ_VERSION_XSTR_(SQZ_VERSION_MAJOR) "." SQZ_VERSION_XSTR_(SQZ_VERSION_MINOR) \
    "." SQZ_VERSION_XSTR_(SQZ_VERSION_PATCH)

/* ---------------------------------------------------------------- status */

typedef enum sqz_status {
    SQZ_OK = 0,
    SQZ_ERR_IO,          /* a file could not be opened, read, mapped or written */
    SQZ_ERR_FORMAT,      /* a file is not what it claims: truncated, corrupt, inconsistent */
    SQZ_ERR_UNSUPPORTED, /* well-formed, but something sqz does not handle (architecture, dtype) */
    SQZ_ERR_ARG,         /* a caller passed an invalid argument */
    SQZ_ERR_NOMEM,       /* an allocation failed */
    SQZ_ERR_RANGE,       /* a request exceeds a limit (context length, token id) */
    SQZ_ERR_INTERNAL     /* a bug in sqz: please report */
} sqz_status;

/* The library's version ("MAJOR.MINOR.PATCH"), which may differ from the SQZ_VERSION a caller
 * was compiled with (e.g. a binding that loads the installed libsqz.so.MAJOR). */
const char *sqz_version(void);

/* A static, human-readable name for a status ("ok", "i/o error", ...). Never NULL. */
const char *sqz_status_str(sqz_status st);

/* OpenBLAS (Debian's 0.3.21) picks its kernels once, when it loads, from the CPU's model; on a
 * CPU newer than it knows it can fall back to far older ones (seen: SSE3 "Prescott" kernels on
 * an AVX-512 Xeon, 3.5x slower in the double-precision Cholesky of GPTQ's Hessians). Returns
 * the OPENBLAS_CORETYPE value this CPU's instruction set supports and that is better than the
 * loaded choice ("SkylakeX" or "Haswell"), or NULL when the choice is fine or
 * OPENBLAS_CORETYPE is set already. A program sets it and re-executes itself before any work
 * (sqz's CLI does); it cannot take effect in a running process. */
const char *sqz_blas_coretype_hint(void);

/* ---------------------------------------------------------------- context */

typedef struct sqz_ctx sqz_ctx;

/* Called from long jobs with done <= total (units are the job's: tokens, tensors).
 * what names the job ("ppl", "load"). */
typedef void (*sqz_progress_fn)(void *user, const char *what, uint64_t done, uint64_t total);

/* Returns a new context (threads = number of online CPUs) or NULL when out of memory. */
sqz_ctx *sqz_ctx_new(void);
void sqz_ctx_free(sqz_ctx *ctx);
/* n <= 0 selects the number of online CPUs. */
void sqz_ctx_set_threads(sqz_ctx *ctx, int n);
int sqz_ctx_threads(const sqz_ctx *ctx);
void sqz_ctx_set_progress(sqz_ctx *ctx, sqz_progress_fn fn, void *user);
/* The message of the last failure on this context ("" if none). Valid until the next call. */
const char *sqz_ctx_error(const sqz_ctx *ctx);

/* Frees memory that the library handed to the caller (token arrays). Accepts NULL. */
void sqz_free(void *p);

/* ---------------------------------------------------------------- model */

typedef struct sqz_model sqz_model;

typedef struct sqz_model_info {
    const char *arch;        /* "llama", "mistral", "qwen2" */
    const char *format;      /* "safetensors", "llama2c", "gguf" */
    const char *weight_type; /* dominant type of the 2-D weights: "f32", "f16", "bf16", ... */
    int dim;                 /* residual width */
    int hidden_dim;          /* FFN width */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int vocab_size;
    int max_seq_len;         /* trained context (config), 0 if unknown */
    float rope_theta;
    float norm_eps;
    int rope_interleaved;    /* 1: pairs (2i, 2i+1) as llama2.c/GGUF; 0: (i, i+d/2) as HF */
    int tied_embeddings;
    int has_qkv_bias;
    int bos_id, eos_id;      /* -1 if none */
    int add_bos;             /* the tokenizer asks for BOS at the start of a text */
    uint64_t n_params;
    uint64_t weight_bytes;   /* bytes of all weight tensors as stored */
    const char *tokenizer;   /* "bpe" (tokenizer.json), "llama2c", "none" */
    int absent_subblocks;    /* attention / MLP sub-blocks the model lacks (sqz drop --attn/--mlp) */
} sqz_model_info;

/* Loads a model from
 *   - a Hugging Face folder (config.json + model.safetensors or model.safetensors.index.json,
 *     tokenizer.json), or a path to its config.json;
 *   - a llama2.c checkpoint (.bin); its tokenizer comes from tokenizer_path (tokenizer.bin).
 * tokenizer_path may be NULL: then the tokenizer is looked for beside the model.
 * Weights are memory-mapped, not copied. */
sqz_status sqz_model_load(sqz_ctx *ctx, const char *path, const char *tokenizer_path,
                          sqz_model **out);
void sqz_model_free(sqz_model *model);
void sqz_model_get_info(const sqz_model *model, sqz_model_info *info);

/* Merges a LoRA adapter in llama.cpp's GGUF format (sqz finetune --lora, llama.cpp's
 * convert_lora_to_gguf.py) into the model: each adapted matrix W (attention, MLP, output head)
 * becomes the f32 matrix W + scale * alpha / rank * B A (scale alone when the file has no
 * alpha), as llama-cli --lora computes (--lora-scaled for other scales). q / k adapters, made
 * for llama.cpp's RoPE row order, are reordered for a model loaded from a Hugging Face folder.
 * Call before the model runs; after a failure the model may be half-adapted: free it. */
sqz_status sqz_model_apply_lora(sqz_ctx *ctx, sqz_model *model, const char *path, float scale);

/* The model's weight tensors, named as GGUF names them (token_embd.weight,
 * blk.N.attn_q.weight, ...) whatever the source format; shape in ggml order (shape[0] = row
 * length). */
typedef struct sqz_tensor_info {
    char name[64];
    const char *type; /* "f16", "q4_k", ... */
    int n_dims;
    int64_t shape[2];
    uint64_t bytes;
} sqz_tensor_info;

size_t sqz_model_n_tensors(const sqz_model *model);
/* Fills *info for tensor i (0 <= i < sqz_model_n_tensors); returns 0 if i is out of range. */
int sqz_model_tensor(const sqz_model *model, size_t i, sqz_tensor_info *info);

/* Metadata of the file the model came from (GGUF key-value pairs; none for other formats). */
size_t sqz_model_n_metadata(const sqz_model *model);
/* Key i and its value as text (scalars as written, strings quoted, arrays as "[n x type] first
 * elements..."), truncated to cap bytes; returns the key, or NULL if i is out of range. */
const char *sqz_model_metadata(const sqz_model *model, size_t i, char *value, size_t cap);

/* ---------------------------------------------------------------- tokenizer */

/* Tokenizes len bytes of text (any bytes; invalid UTF-8 is encoded byte-wise where the
 * vocabulary allows). add_bos: 1 = prepend BOS, 0 = never, -1 = as the tokenizer asks.
 * *ids is allocated (free with sqz_free). */
sqz_status sqz_tokenize(sqz_ctx *ctx, const sqz_model *model, const char *text, size_t len,
                        int add_bos, int32_t **ids, size_t *n_ids);

/* The bytes that token id contributes to decoded text when it follows token prev
 * (prev = -1 at the start). Writes up to cap bytes to buf and the full length to *len.
 * Special tokens (BOS/EOS) decode to nothing. */
sqz_status sqz_token_to_text(const sqz_model *model, int32_t prev, int32_t id, char *buf,
                             size_t cap, size_t *len);

/* ---------------------------------------------------------------- running */

/* A session holds the state of one sequence: the KV cache and scratch buffers. */
typedef struct sqz_session sqz_session;

/* max_ctx: the largest number of positions this session will hold (<= 0: the model's
 * trained context, or 2048 if unknown). */
sqz_status sqz_session_new(sqz_ctx *ctx, const sqz_model *model, int max_ctx,
                           sqz_session **out);
void sqz_session_free(sqz_session *s);
/* Forgets all positions (the next eval starts at position 0). */
void sqz_session_reset(sqz_session *s);
/* The number of positions already in the cache. */
int sqz_session_pos(const sqz_session *s);

/* Runs n tokens at positions pos..pos+n-1 in one batched pass and appends them to the cache.
 * logits: NULL, or room for vocab floats (logits_all = 0: the last position's only) or
 * n * vocab floats (logits_all = 1: every position, row-major). */
sqz_status sqz_session_eval(sqz_session *s, const int32_t *tokens, int n, float *logits,
                            int logits_all);

/* ---------------------------------------------------------------- KV cache policies */

/* A session whose KV cache uses the policy kv_spec: "name" or "name:key=value,..." (NULL or ""
 * = "f32", the exact cache; sqz_kv_policy_name lists the others: f16, KIVI q8/q4/q2, streaming,
 * h2o, snapkv, ...); a bad name or parameter fails with SQZ_ERR_ARG and a message naming it. */
sqz_status sqz_session_new_kv(sqz_ctx *ctx, const sqz_model *model, int max_ctx,
                              const char *kv_spec, sqz_session **out);
/* Bytes the session's KV cache holds now (data, scales, residual rows, index arrays). */
size_t sqz_session_kv_bytes(const sqz_session *s);
/* Name and one-line help of KV policy i (0, 1, ...); NULL past the last one. */
const char *sqz_kv_policy_name(int i);
const char *sqz_kv_policy_help(int i);

/* ---------------------------------------------------------------- sampling / generation */

typedef struct sqz_sampler_opts {
    float temperature; /* 0: greedy (argmax) */
    float top_p;       /* nucleus sampling; >= 1 disables */
    uint64_t seed;
} sqz_sampler_opts;

/* Picks the next token from logits (modified in place). rng_state: the caller's state,
 * initialised from the seed by sqz_rng_seed. */
int32_t sqz_sample(const sqz_sampler_opts *opts, float *logits, int vocab, uint64_t *rng_state);
void sqz_rng_seed(uint64_t *rng_state, uint64_t seed);

/* Called with each piece of generated text; return nonzero to stop. */
typedef int (*sqz_text_fn)(void *user, const char *text, size_t len);

typedef struct sqz_generate_opts {
    sqz_sampler_opts sampler;
    int n_predict;  /* tokens to generate after the prompt */
    int add_bos;    /* as in sqz_tokenize */
    int stop_at_eos;
} sqz_generate_opts;

typedef struct sqz_generate_result {
    int n_prompt;
    int n_generated;
    double prompt_seconds;
    double gen_seconds;
} sqz_generate_result;

sqz_status sqz_generate(sqz_ctx *ctx, const sqz_model *model, const char *prompt,
                        const sqz_generate_opts *opts, sqz_text_fn on_text, void *user,
                        sqz_generate_result *result);

/* ---------------------------------------------------------------- perplexity */

typedef enum sqz_ppl_mode {
    SQZ_PPL_SQZ = 0,      /* every position of each window is scored (reference.json's way) */
    SQZ_PPL_LLAMACPP = 1  /* llama.cpp's llama-perplexity: chunks of n_ctx, the first half is
                             context, the second half is scored; BOS replaces each chunk's first
                             token when the tokenizer asks for BOS */
} sqz_ppl_mode;

typedef struct sqz_ppl_opts {
    int n_ctx;         /* window length; every position of a window predicts its next token */
    size_t max_tokens; /* use only the first max_tokens tokens (0: all) */
    sqz_ppl_mode mode;
    int n_chunks;      /* SQZ_PPL_LLAMACPP: at most this many chunks (0: all) */
    /* KV-cache policy of the model ("f32" when NULL; see sqz_kv_policy_name). With a policy,
     * each window's first kv_prefill tokens run as one batch and the rest one token at a
     * time, so later tokens read the compressed cache; kv_prefill <= 0: whole windows batched. */
    const char *kv;
    int kv_prefill;
    /* KL divergence: when kld_base is set, it runs over the same windows (with the KV policy
     * kld_base_kv, NULL = "f32") and the result gets kld, kld_p99 and top1_agree. kld_base may
     * be the model itself (e.g. to measure a KV policy against the exact cache). */
    const sqz_model *kld_base;
    const char *kld_base_kv;
    /* A file of the base's logits (16 bits each, llama.cpp's --kl-divergence-base scheme):
     * when it exists and was made for the same text, context, mode and token count, the base's
     * logits come from it (kld_base may then be NULL and is not run); otherwise kld_base is run
     * and the file written (atomically) for the next model. */
    const char *kld_cache;
} sqz_ppl_opts;

typedef struct sqz_ppl_result {
    double ppl;
    double ppl_stderr; /* ppl * standard error of the mean negative log-likelihood */
    double nll;        /* mean negative log-likelihood (nats) */
    size_t tokens;     /* tokens scored */
    size_t windows;
    double seconds;    /* time spent in the model (tokenization excluded) */
    /* with kld_base: mean KL(base || model) of the next-token distributions (nats), its 99th
     * percentile, and the fraction of positions where both rank the same token first */
    int has_kld;
    double kld, kld_p99, top1_agree;
} sqz_ppl_result;

/* Perplexity over tokens in non-overlapping windows of n_ctx inputs: window w feeds
 * tokens[w*n_ctx .. w*n_ctx+len-1] and scores each position against the next token, so every
 * token after the first is scored once. No BOS is added. With mode SQZ_PPL_LLAMACPP, as
 * llama.cpp's llama-perplexity does (see sqz_ppl_mode); only whole chunks are used. */
sqz_status sqz_perplexity(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens,
                          size_t n_tokens, const sqz_ppl_opts *opts, sqz_ppl_result *result);

/* ---------------------------------------------------------------- model cards */

/* How a model that sqz writes was made, told to whoever opens it: a Hugging Face folder gets it
 * as its model card (README.md, YAML front matter as the Hub reads it: base_model, tags,
 * library_name: sqz), a GGUF file as general.* metadata that llama.cpp shows (general.description,
 * general.base_model.*, general.tags, general.quantized_by). Every field is optional (NULL, 0). */
typedef struct sqz_model_card {
    const char *base_model;   /* what it was made from (a path or a hub id); NULL: the source's name */
    const char *method;       /* "gptq", "ties", "finetune", ... with its parameters as a spec */
    const char *parameters;   /* the rest of the recipe as text: "type q4_0, 512-token windows" */
    const char *calib;        /* the calibration (or training) text */
    size_t calib_tokens;
    const char *eval_text;    /* the text of the measurements below */
    double ppl, kld;          /* measured by the command that wrote the model (> 0), else unknown */
} sqz_model_card;

/* ---------------------------------------------------------------- conversion to GGUF */

typedef struct sqz_convert_opts {
    /* A tensor type ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k",
     * "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs"): every 2-D weight gets it, as
     * llama-quantize --pure does (norms stay f32). Or one of llama.cpp's mixes ("q2_k",
     * "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k"), which
     * pick per-tensor types as llama-quantize does. "q2_k" and "q6_k" name the mix unless pure. */
    const char *type;
    int pure;
    /* token_embd.weight's type when not NULL (a plain type name as above; llama-quantize's
     * --token-embedding-type); when the model ties it to the head, the head's type too. */
    const char *embd_type;
    /* 1: a 2-D weight already in a quantized type keeps it (quantize's per-tensor choices),
     * except an untied token_embd. */
    int keep_types;
    /* A matrix whose rows do not fit the chosen type's block (e.g. 384 columns for a 256-block
     * k-quant) gets llama.cpp's fallback type; the result counts them. */
    /* general.* metadata of how it was made (NULL: general.quantized_by and the source as
     * general.base_model.0.name only) */
    const sqz_model_card *card;
} sqz_convert_opts;

typedef struct sqz_convert_result {
    uint64_t file_bytes;
    uint64_t n_params;       /* elements of all tensors written */
    double bits_per_weight;  /* 8 * bytes of tensor data / n_params */
    int n_tensors;
    int n_fallback;          /* tensors that got a fallback type */
    double seconds;
} sqz_convert_result;

/* Writes model as a GGUF file that llama.cpp runs: llama (or qwen2) architecture metadata,
 * Q/K rows permuted to llama.cpp's RoPE layout where the source pairs dimensions HF's way, the
 * tokenizer, and every weight converted to the requested type(s). The file is written to a
 * temporary name and renamed: a failure leaves nothing behind. It is streamed: the header
 * first, then each tensor a slab of rows (2^24 elements) at a time, and the pages of the
 * model's mapped files that a slab read are given back (they load again if read later), so
 * the memory needed is about one slab's source and output, whatever the model's size. */
sqz_status sqz_convert(sqz_ctx *ctx, const sqz_model *model, const char *out_path,
                       const sqz_convert_opts *opts, sqz_convert_result *result);

/* KV projections for the "proj" KV policy: runs model over tokens in windows of n_ctx (<= 0:
 * min(trained context, 1024)), and writes to out_path (GGUF) per layer and KV head the rank
 * (<= 0: head_dim) principal directions of the keys (after RoPE) and of the values. Load with
 * the KV spec "proj:file=PATH[,rank=R]". */
sqz_status sqz_kv_calibrate_proj(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens,
                                 size_t n_tokens, int n_ctx, int rank, const char *out_path);

/* ---------------------------------------------------------------- quantization with calibration */

/* Called once per quantized matrix: its GGUF name, type, and relative output error on the
 * calibration data, ||(W - Q) X|| / ||W X||. */
typedef void (*sqz_tensor_report_fn)(void *user, const char *name, const char *type,
                                     double rel_err);

typedef struct sqz_quantize_opts {
    /* The method and its parameters: "NAME" or "NAME:key=value,key=value" (each key at most
     * once; an unknown key or method, or a value out of range, is an error). Methods and keys:
     *   rtn        round-to-nearest, no calibration (= sqz_convert); fake=0|1: type dq2 written
     *              as its dequantized f32 GGUF (rtn to dq2 requires it; other types ignore it)
     *   imatrix    llama.cpp's importance-weighted block search, importances from the
     *              calibration text; no keys
     *   gptq       damp=D (percdamp, 0 = GPTQ's 0.1), act_order=0|1 (columns by descending
     *              Hessian diagonal), alloc=0|1 (each matrix's type, Q2_K..Q6_K, chosen by
     *              measured KL so that the matrices take no more bytes than the mix's own types,
     *              src/quant/alloc.h; minutes, not seconds), windows=N (alloc: calibration
     *              windows the KLs are measured on, 1..2^20, default 4), bytes=N or bpw=B
     *              (alloc: the whole file within N bytes, or B = 8 x bytes / the model's
     *              parameters, instead of the mix's own size; every matrix may then take any
     *              type of the ladder)
     *   rsq        random Hadamard rotations folded into the weights, tokens weighted by the
     *              attention they receive, then GPTQ; the output has its own output.weight even
     *              when the model ties it to the embeddings. damp=D, act_order=0|1 (as gptq),
     *              rmin=R (least token weight in (0, 1], default the paper's 0.005; 1: every
     *              token alike, i.e. rotation + GPTQ), seed=S (uint64 seed of the rotations,
     *              default 0; the same seed, the same file)
     *   decoupleq  2-bit, type "dq2" (the default type), into sqz's container (sqzf). damp=D
     *              (0 = decoupleQ's 0.01), fake=0|1 (the dequantized weights as f32 GGUF,
     *              token_embd quantized as the q2_k mix keeps it, then dequantized too)
     *   mixllm     type "q4" or "q3": 8-bit and 4/3-bit rows, written to sqzf
     *              (src/quant/mixllm.h). damp=D (0 = 0.1), act_order=0|1, frac=F (share of the
     *              matrices' weights at 8 bits in [0, 1), default 0.1; 0: none)
     * sqz_quant_method_name/help list them. */
    const char *method;
    const char *type;    /* a type or mix, as sqz_convert_opts.type */
    int pure;
    const char *embd_type; /* as sqz_convert_opts.embd_type */
    const int32_t *calib;  /* calibration tokens (not needed by rtn) */
    size_t n_calib;
    int calib_ctx;         /* tokens per calibration window (e.g. 512) */
    sqz_tensor_report_fn report;
    void *report_user;
    /* the file's general.* metadata (as sqz_convert_opts.card); the method, type and
     * calibration tokens are filled in where the card leaves them NULL / 0 */
    const sqz_model_card *card;
} sqz_quantize_opts;

typedef struct sqz_quantize_result {
    sqz_convert_result convert;
    size_t calib_tokens;   /* tokens the statistics came from */
    double calib_seconds;  /* forward passes and statistics */
    double quant_seconds;  /* the quantizers themselves */
    double mean_rel_err;   /* over the quantized block matrices */
    /* alloc: the matrices' bytes at the mix's types (the budget) and at the chosen ones, and
     * the sums of single-matrix KLs (the estimate the choice minimizes) for both */
    uint64_t alloc_budget, alloc_bytes;
    double alloc_kl_mix, alloc_kl_chosen;
    double alloc_seconds;
} sqz_quantize_result;

/* Quantizes model to out_path (GGUF; mixllm: sqzf, docs/sqzf.md) with a method that uses
 * calibration data. Runs layer by layer: the statistics of layer l are taken from the outputs
 * of layers 0..l-1 already quantized (imatrix: of the unquantized model, as llama-imatrix
 * does), so memory is one layer's weights plus the calibration activations (mixllm first
 * ranks every layer's rows in one extra pass). The output types are those sqz_convert would
 * write (mixllm: q4_k_m's / q3_k_m's for token_embd / output; gptq with alloc: the types the
 * search chose, within the same bytes); token_embd / output are quantized by round-to-nearest
 * (gptq: the head by GPTQ). */
sqz_status sqz_quantize(sqz_ctx *ctx, const sqz_model *model, const char *out_path,
                        const sqz_quantize_opts *opts, sqz_quantize_result *result);

/* The quantization methods, i = 0, 1, ... until NULL: name and a one-line help. */
const char *sqz_quant_method_name(int i);
const char *sqz_quant_method_help(int i);
/* For a method spec (only its name counts): 1 if it needs calibration text, 0 if not, -1 for
 * an unknown method. */
int sqz_quant_method_needs_calib(const char *spec);
/* The type a method writes when none is given (decoupleq: "dq2"); NULL for the others. */
const char *sqz_quant_method_default_type(const char *spec);
/* 1 if the method of spec takes parameter key, 0 if not, -1 for an unknown method. */
int sqz_quant_method_takes(const char *spec, const char *key);

/* Picks floor(want / window) windows of `window` consecutive tokens, evenly spaced over
 * tokens[0..n) (a calibration file's documents are usually grouped by kind: its first tokens
 * would be one kind only), into out (room for want tokens). Returns the tokens written (0 when
 * n < window). */
size_t sqz_calib_spread(const int32_t *tokens, size_t n, size_t want, int window, int32_t *out);
/* Held-out windows: up to `want` windows of `window` tokens that overlap none of the n_spread
 * windows sqz_calib_spread places in the same text (whole windows from the gaps between them,
 * the chosen ones evenly spaced over all that fit), into out (want x window). Returns how many
 * windows were written (0 when none fit). */
size_t sqz_calib_heldout(const int32_t *tokens, size_t n, int window, size_t n_spread, size_t want, int32_t *out);


/* ---------------------------------------------------------------- training */

/* Called after each optimizer step (1-based) with the batch's mean loss before the step, the
 * learning rate used, the gradient's global L2 norm before clipping and the seconds of the
 * step; with held-out text, eval_ppl when the step was an evaluation step (else 0). */
typedef void (*sqz_train_step_fn)(void *user, int step, double loss, double lr, double grad_norm,
                                  double seconds, double eval_ppl);

/* Full fine-tuning in f32 (src/train/): every step draws `batch` windows of ctx + 1 tokens at
 * uniformly random offsets of the training tokens (seeded), takes the mean cross-entropy of
 * their ctx next-token predictions, back-propagates, clips the gradient's global norm, and
 * takes an AdamW step (PyTorch's AdamW: decoupled weight decay on matrices only). Learning
 * rate: lr * min(1, (step + 1) / warmup), then with cosine a half cosine from lr down to
 * min_lr over the remaining steps. Zero fields take the defaults in brackets (those of the
 * recipe that made ../shared/models/merge/ft-*). Gradients and results are bit-identical
 * whatever the thread count. The model must have f32 / f16 / bf16 weights. */
typedef struct sqz_finetune_opts {
    int steps;            /* [150] */
    int batch;            /* windows per step [8] */
    int micro_batch;      /* windows per forward/backward pass (memory), divides batch [batch] */
    int ctx;              /* tokens per window [256] */
    float lr;             /* peak learning rate [3e-4] */
    int warmup;           /* steps of linear warm-up [20]; < 0: none */
    int cosine;           /* 1: cosine decay to min_lr after the warm-up */
    float min_lr;
    float weight_decay;   /* [0] */
    float beta1, beta2, eps; /* [0.9, 0.95, 1e-8] */
    float clip;           /* global gradient-norm limit [1.0]; < 0: none */
    uint64_t seed;        /* data sampling */
    /* held-out perplexity (windows of ctx, at most eval_tokens tokens, 0: all) before training,
     * every eval_every steps (0: only) and after the last step */
    const int32_t *eval;
    size_t n_eval;
    size_t eval_tokens;
    int eval_every;
    /* LoRA: rank > 0 trains adapters (rank, lora_alpha [rank]: scale alpha / rank) on the
     * matrices named in lora_targets (a comma list of q, k, v, o, gate, up, down; NULL: all)
     * and keeps the model frozen, which may then be quantized; out_path gets llama.cpp's GGUF
     * LoRA adapter (load it with --lora). */
    int lora_rank;
    float lora_alpha;
    const char *lora_targets;
    /* a folder output (out_path not ending in .gguf): the tokenizer.json copied into it */
    const char *tokenizer_json;
    /* Data parallel over Open MPI (the process is one of N ranks started by mpirun): dp is the
     * gradient exchange, "none" or a compressor with parameters, e.g. "dgc:density=0.001",
     * "powersgd:rank=4" (sqz_finetune_dp_methods lists them); NULL: one process. batch is the
     * global batch: every rank draws the same windows and trains on its N-th of them, so N ranks
     * with "none" compute what one process does (to float reassociation). Rank 0 evaluates and
     * writes; all ranks must be given the same options (checked), their tokens may differ. */
    const char *dp;
    /* checkpoint: rank 0 saves the run's state there (temp file + rename) every checkpoint_every
     * steps (0: after the last only); resume: a checkpoint to continue from, written by a run
     * with the same model and recipe (steps may be raised): the result is bit-identical to an
     * uninterrupted run. Under --dp every rank reads it, and a compressor with memory (error
     * feedback, momentum, factors, levels) has each rank save it beside it (CHECKPOINT.rank<r>.gc)
     * and read it back, so the resumed run is exact too; a resume with another spec or number of
     * ranks, or one that would drop that memory, fails with SQZ_ERR_ARG. */
    const char *checkpoint;
    int checkpoint_every;
    const char *resume;
    sqz_train_step_fn on_step;
    void *user;
    /* the written model's card (README.md of a folder, general.* keys of a GGUF file; not an
     * adapter's): the caller's (base model, training text), the recipe and the held-out
     * perplexity after training filled in by the run; NULL: a folder's card says sqz wrote it */
    const sqz_model_card *card;
} sqz_finetune_opts;

typedef struct sqz_finetune_result {
    int steps;
    double first_loss, last_loss;     /* batch losses of the first and last step */
    double eval_ppl_before, eval_ppl_after; /* 0 without held-out text */
    double seconds;                   /* training steps only (evaluations excluded) */
    double tokens_per_s;              /* trained tokens / seconds */
    uint64_t n_params;
    /* data parallel: this rank, the world, and this rank's traffic and time */
    int dp_rank, dp_world;
    uint64_t dp_bytes;                /* gradient bytes this rank sent (counted on the wire path) */
    uint64_t dp_ctl_bytes;            /* control bytes (losses, checks, L-GreCo's error tables) */
    double compute_s, compress_s, comm_s; /* forward/backward; compressing; in collectives */
} sqz_finetune_result;

/* Fine-tunes model on tokens and writes the result to out_path: a .gguf file (out_type: any
 * sqz_convert_opts.type, NULL = "f16"), written as sqz_convert writes, or else a Hugging Face
 * folder (out_type f16 / bf16 / f32; config.json made from the model's); with LoRA the adapter.
 * Nothing is written when anything fails. */
sqz_status sqz_finetune(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens,
                        size_t n_tokens, const sqz_finetune_opts *opts, const char *out_path,
                        const char *out_type, sqz_finetune_result *result);
/* The gradient exchanges --dp takes, comma separated. */
const char *sqz_finetune_dp_methods(void);
/* Ends MPI if sqz_finetune started it (call once before exit; harmless otherwise). */
void sqz_finetune_dp_shutdown(void);
/* 1 when mpirun started this process as one of several ranks (read from the environment, no
 * MPI call): *world ranks, *local of them on this machine, this one *rank (each may be NULL). */
int sqz_finetune_dp_launched(int *world, int *local, int *rank);
/* ================================================================ merging (sqz merge)
 * mergekit-style merges of fine-tunes of one base, tensor by tensor (src/merge/). */

typedef struct sqz_merge_opts {
    /* The output's tensor type. A Hugging Face folder (out_path not ending in .gguf) holds
     * "f32", "f16" or "bf16"; a .gguf file any type or mix sqz_convert writes (pure as there).
     * NULL: the config's dtype (float32 / float16 / bfloat16), else "f32". */
    const char *type;
    int pure;
    uint64_t seed;  /* the random methods' seed (dare_*, della*); the same seed, the same model */
    /* tall_masks: mask_lambda tuned per task as the paper tunes it. For each task whose model's
     * folder or file name contains tune_domain[k], each value of the paper's grid (0.2 .. 0.6)
     * is tried: the task's model rebuilt from the inputs (base + m_t * tau_MTL) is written to a
     * temporary f32 folder beside the output and its perplexity measured on tune_text[k]
     * (windows of tune_ctx, default 256; the first tune_tokens tokens, 0: all); the best value
     * replaces the config's for that model. Give train texts, never test texts. */
    int n_tune;
    const char *const *tune_domain, *const *tune_text;
    int tune_ctx;
    size_t tune_tokens;
    /* pleas (and any method that needs activations): the calibration text's path, tokenized
     * with the first model's tokenizer; calib_tokens of it (0: 8192) in windows of calib_ctx
     * (0: 256) spread evenly over the text. Give train texts, never test texts. A method that
     * takes no calibration refuses it. */
    const char *calib;
    size_t calib_tokens;
    int calib_ctx;
    int calib_shared; /* 1: calib also serves something else (sqz merge --method's quantizer): a
                       * method without calibration ignores it instead of refusing it */
    /* pleas: per-model calibration texts, the paper's setting (each model's outputs on its own
     * data are the targets): the model whose folder or file name contains task_calib_domain[k]
     * calibrates on task_calib_text[k] (calib_tokens of it); models without one, on calib. */
    int n_task_calib;
    const char *const *task_calib_domain, *const *task_calib_text;
} sqz_merge_opts;

typedef struct sqz_merge_result {
    const char *method;       /* static string */
    int n_models;             /* inputs, the base included */
    int n_tensors;            /* tensors merged */
    uint64_t n_params;        /* their elements */
    uint64_t max_tensor_elems; /* the largest tensor: memory is about (inputs + 2) x this x 4 B */
    uint64_t out_bytes;       /* bytes written (model.safetensors, or the .gguf file) */
    double seconds;
    /* with opts->n_tune: task t's chosen mask_lambda (NAN: no text for it, the config's kept)
     * and the perplexity of each grid value's extracted model on its text (0: not run) */
    int n_tuned, n_tune_grid;
    double tuned_mask_lambda[64], tune_grid[8], tune_ppl[64][8];
} sqz_merge_result;

/* Runs the mergekit YAML config at config_path (merge_method, base_model, models with their
 * parameters, global parameters, layer gradients, name filters, dtype, tokenizer_source; see
 * src/merge/config.h for what is supported) and writes out_path: a Hugging Face folder
 * (config.json, model.safetensors, tokenizer.json; out_path must not exist or be an empty
 * folder), or a GGUF file when out_path ends in ".gguf". Inputs are anything sqz_model_load
 * reads (HF folders, GGUF files of any type sqz computes with, quantized ones included);
 * model paths are taken as given, else relative to the config's folder. Everything is checked
 * before any work (method and parameters, output type and path, each input's architecture
 * and sizes, tensor dtypes, the tokenizers' vocabularies): a mismatch is one error naming
 * the file and the field or tensor. Then each tensor of every input is dequantized to f32,
 * merged, written and the inputs' pages given back, so memory is about (inputs + 2) x the
 * largest tensor. Nothing is left at out_path on failure. Progress: "merge", tensors.
 * tall_masks writes a folder only: the merged model plus, after each tensor NAME, one U8
 * tensor tall_mask.T.NAME per task T (bit j of byte j/8 for value j) in model.safetensors. */
sqz_status sqz_merge_models(sqz_ctx *ctx, const char *config_path, const char *out_path,
                            const sqz_merge_opts *opts, sqz_merge_result *result);
/* Rebuilds task `task` (0-based: the config's models in order, the base left out) of a
 * tall_masks merge that sqz_merge_models wrote to tall_dir from config_path: for each tensor,
 * base + mask_task * (merged - base) / lambda, from the base, the merged folder and its
 * bit-packed masks alone. out_path and opts as sqz_merge_models. */
sqz_status sqz_merge_extract(sqz_ctx *ctx, const char *config_path, const char *tall_dir, int task,
                             const char *out_path, const sqz_merge_opts *opts,
                             sqz_merge_result *result);
/* Continual merging (merge_method: opcm): adds the model at model_path to the running merge
 * in the folder state_dir, which sqz_merge_models wrote from an opcm config (and earlier calls
 * updated). The folder is an HF model folder of the merge so far (sqz runs it like any model)
 * plus opcm.json: the base's path, alpha, the number of models, the sum of their task vectors'
 * norms and the scale lambda - all the method needs, so memory and the folder's size do not
 * grow with the number of models. The model is checked against the base like a merge's inputs;
 * the new state is written beside the old one and swapped in when complete (nothing changes on
 * failure). opts->type: the folder's tensors ("f32", the default, "f16", "bf16"); seed and
 * pure are unused. result->n_models is the number of models merged so far. */
sqz_status sqz_merge_continual(sqz_ctx *ctx, const char *state_dir, const char *model_path,
                               const sqz_merge_opts *opts, sqz_merge_result *result);
/* What a merge cost, per domain (sqz merge --eval DOMAIN=TEXT ...). The rows: the config's
 * base_model (when it has one), each of its models, and the merge at merged_path - or, when
 * config is an opcm state folder, the base and the models its opcm.json lists and the folder
 * itself. Each row runs over each domain's text as sqz_perplexity does (windows of n_ctx,
 * default 256; the first max_tokens tokens, 0: all). A domain's specialist is the first model
 * (not the base, not the merge) whose folder or file name contains the domain's name; every row
 * then also gets KL(specialist || row) on that domain (the specialist's logits computed once,
 * into a temporary cache under $TMPDIR that is removed), and, with a base, the gap closed
 * R_d = (L_base - L_row) / (L_base - L_specialist), L the mean NLL. Missing values are NAN. */
typedef struct sqz_merge_eval_opts {
    int n_ctx;
    size_t max_tokens;
} sqz_merge_eval_opts;

typedef struct sqz_merge_eval {
    int n_rows, n_domains;
    char **row;          /* [n_rows] the models' paths, the merge last */
    char **domain;       /* [n_domains] */
    int base_row;        /* -1: no base */
    int *specialist;     /* [n_domains] the specialist's row, -1: none */
    double *ppl, *nll, *kld, *r; /* [n_rows * n_domains], row-major */
    size_t *tokens;      /* [n_domains] tokens scored */
} sqz_merge_eval;

sqz_status sqz_merge_evaluate(sqz_ctx *ctx, const char *config, const char *merged_path, int n_domains,
                              const char *const *domain, const char *const *text_path,
                              const sqz_merge_eval_opts *opts, sqz_merge_eval **out);
void sqz_merge_eval_free(sqz_merge_eval *e);
/* The merge methods, i = 0, 1, ... until NULL: name and a one-line help with its keys. */
const char *sqz_merge_method_name(int i);
const char *sqz_merge_method_help(int i);

/* ================================================================ end of merging */
/* ================================================================ pruning (issue 17)
 * Removes weights of the block matrices (attn_q/k/v/output, ffn_gate/up/down); the token
 * embedding and the output head are never pruned. A level is a density (the fraction of a
 * matrix's weights kept, in (0, 1]) or N:M (n of every m consecutive weights of each row kept,
 * 0 < n < m <= 64, m dividing the row: 2:4, 4:8). */

typedef struct sqz_prune_opts {
    /* "NAME" or "NAME:key=value,...":
     *   magnitude  smallest |W| per matrix (N:M: per group of a row); no calibration
     *   wanda      smallest |W_ij| * ||X_j||_2 per output row (Sun et al. 2023); calibration
     *   sparsegpt  OBS column blocks with weight updates (Frantar & Alistarh 2023) from the
     *              damped Hessian; damp=D (percdamp, default 0.01), block=B (columns per block
     *              and lazy batch, default 128); calibration
     * sqz_pruner_name/help list them. */
    const char *method;
    double density;        /* the level of every block matrix (0 with nm_n > 0, or with levels) */
    int nm_n, nm_m;        /* N:M instead of a density (nm_n > 0) */
    /* Path of a JSON object {tensor name: level} (e.g. {"blk.0.attn_q.weight": 0.6,
     * "blk.0.ffn_up.weight": "2:4"}): those matrices get their own level; the others the one
     * above, or none (not pruned) when density is 0 and nm_n is 0. NULL: none. A name that is
     * not a block matrix of the model is an error. */
    const char *levels;
    /* "sp8": the pruned matrices in sqz's sparse int8 format (docs/sparse.md: a u32 mask, an f16
     * scale and the packed i8 nonzeros per 32 weights), written to sqzf, the other weights q8_0
     * (a matrix whose rows are not a multiple of 32 stays dense). Else the written type of every
     * 2-D weight (sqz_convert_opts.type, pure), a dense GGUF; NULL: "f16". The pruned zeros stay
     * exact zeros in every type. With sparsegpt and a type GPTQ quantizes to (q4_0, q8_0,
     * q2_k..q6_k) pruning and quantization are one pass (SparseGPT's joint sparsification and
     * quantization, docs/prune-gptq.md), the head quantized by GPTQ; in the types with a min
     * (q2_k, q4_k, q5_k) a removed weight is the level nearest 0. */
    const char *type;
    const int32_t *calib;  /* calibration tokens (wanda, sparsegpt; with magnitude they only give
                            * the error report) */
    size_t n_calib;
    int calib_ctx;         /* tokens per calibration window (<= 0: 512) */
    /* per pruned matrix: its name, its level ("0.5", "2:4") and ||(W - P) X|| / ||W X|| on the
     * calibration data (-1 without calibration) */
    sqz_tensor_report_fn report;
    void *report_user;
} sqz_prune_opts;

typedef struct sqz_prune_result {
    sqz_convert_result convert;
    uint64_t block_params;  /* weights of the block matrices */
    uint64_t pruned;        /* of those, removed (exact zeros) */
    size_t calib_tokens;
    double calib_seconds, prune_seconds;
    double mean_rel_err;    /* over the pruned matrices (-1 without calibration) */
} sqz_prune_result;

/* Prunes model's block matrices layer by layer (with calibration: each layer's statistics come
 * from the outputs of the layers before it, already pruned, as SparseGPT and Wanda do) and
 * writes the result (opts->type: sp8 to sqzf, else a dense GGUF holding the zeros) to a
 * temporary name renamed at the end. Errors: SQZ_ERR_ARG for an unknown method, parameter or
 * type, a level out of range (density outside (0, 1), N:M not dividing a row), a levels
 * file that is not a JSON object of levels or names a tensor that is not a block matrix, a
 * method that needs calibration without enough tokens for one window; I/O and memory errors. */
sqz_status sqz_prune(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_prune_opts *opts,
                     sqz_prune_result *result);

/* The pruning methods, i = 0, 1, ... until NULL. */
const char *sqz_pruner_name(int i);
const char *sqz_pruner_help(int i);
/* 1 if the method of spec needs calibration text, 0 if not, -1 for an unknown method. */
int sqz_pruner_needs_calib(const char *spec);

/* ================================================================ end of pruning (issue 17) */

/* ================================================================ low rank (issue 17)
 * Factors block matrices (attn_q/k/v/output, ffn_gate/up/down) as W ~ B A of rank r (B rows x
 * r, A r x cols), stored as two matrices NAME.lr_a / NAME.lr_b in sqzf and run as two products
 * (docs/lowrank.md); the token embedding and the output head are never factored. A rank must
 * give factors smaller than the matrix: r (rows + cols) < rows x cols. */

typedef struct sqz_lowrank_opts {
    /* "NAME" or "NAME:key=value,...":
     *   svd   plain truncated SVD (the best rank r in the Frobenius norm); no calibration
     *   lord  plain SVD, each matrix's rank chosen to a global target: with `params`, ranks
     *         allocated over all block matrices together (largest share of a matrix's squared
     *         singular values per stored number first) within params x their weights; with
     *         `energy`, per matrix; no calibration
     *   asvd  activation-aware SVD (SVD-LLM's whitening): the SVD of W L, L the Cholesky factor
     *         of the calibration inputs' Gram matrix X^T X (damp=D x mean diagonal added,
     *         default 1); minimizes ||(W - B A) X||; calibration
     * sqz_lowrank_method_name/help list them. */
    const char *method;
    double params;    /* (0, 1): each block matrix's factors hold this fraction of its weights
                         (lord: of all block matrices together); 0: not this target */
    double rank_frac; /* (0, 1): rank = this fraction of min(rows, cols), rounded down; it must
                         give factors smaller than the matrix (an error otherwise) */
    double energy;    /* (0, 1]: each matrix's smallest rank keeping this fraction of its (asvd:
                         whitened) squared singular values; a matrix that would need a rank at
                         or above the limit stays dense */
    /* Path of a JSON object {tensor name: level}: a number in (0, 1) is that matrix's params
     * fraction, an integer >= 2 its rank, 1 keeps it dense; the others get the target above (or
     * stay dense when none is given). A name that is not a block matrix is an error. */
    const char *levels;
    /* The factors' type and that of every other 2-D weight (a type of sqz convert, pure):
     * NULL: "f16". Ranks are rounded down to a multiple of the type's block (q8_0: 32). */
    const char *type;
    const int32_t *calib; /* calibration tokens (asvd; with svd / lord only the error report) */
    size_t n_calib;
    int calib_ctx;        /* tokens per calibration window (<= 0: 512) */
    /* per block matrix: its name, its rank ("r=96", or "dense") and ||(W - B A) X|| / ||W X||
     * on the calibration data (-1 without calibration) */
    sqz_tensor_report_fn report;
    void *report_user;
} sqz_lowrank_opts;

typedef struct sqz_lowrank_result {
    sqz_convert_result convert;
    uint64_t block_params;  /* weights of the block matrices */
    uint64_t kept_params;   /* numbers stored for them (factors, and the matrices left dense) */
    int n_factored, n_dense;
    size_t calib_tokens;
    double calib_seconds, factor_seconds;
    double mean_rel_err;    /* over the factored matrices (-1 without calibration) */
} sqz_lowrank_result;

/* Factors model's block matrices layer by layer (with calibration: each layer's statistics
 * come from the outputs of the layers before it, already factored) and writes the result to
 * out_path (sqzf; a temporary name renamed at the end). Exactly one of params, rank_frac and
 * energy, or a levels file. Errors: SQZ_ERR_ARG for an unknown method, parameter or type, a
 * target out of range, a rank whose factors would not be smaller than the matrix (naming it),
 * a levels file that is not a JSON object of levels or names a tensor that is not a block
 * matrix, asvd without enough tokens for one window; I/O and memory errors. */
sqz_status sqz_lowrank(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_lowrank_opts *opts,
                       sqz_lowrank_result *result);

/* The low-rank methods, i = 0, 1, ... until NULL. */
const char *sqz_lowrank_method_name(int i);
const char *sqz_lowrank_method_help(int i);
/* 1 if the method of spec needs calibration text, 0 if not, -1 for an unknown method. */
int sqz_lowrank_needs_calib(const char *spec);

/* ================================================================ end of low rank (issue 17) */

/* ================================================================ depth (issue 17)
 * Drops whole transformer blocks, ranked by block influence (ShortGPT, Men et al. 2024: BI_l =
 * the mean over calibration tokens of 1 - cos(h_l, h_l+1), the hidden state before and after
 * block l): the blocks that change the hidden state least go first. The result is a plain
 * GGUF with fewer blocks (renumbered; llama.cpp runs it). */

typedef struct sqz_drop_opts {
    int n_drop;           /* drop the n_drop blocks of least influence (0 < n_drop < n_layers) */
    const int *blocks;    /* or exactly these blocks (0-based; n_blocks of them; n_drop 0) */
    int n_blocks;
    const char *type;     /* the written type or mix (sqz_convert_opts.type); NULL: quantized tensors keep their types, the rest f16 */
    const int32_t *calib; /* calibration tokens: needed to rank (n_drop), optional with blocks */
    size_t n_calib;
    int calib_ctx;        /* tokens per calibration window (<= 0: 512) */
    /* Sub-blocks instead of whole blocks (docs/drop-subblocks.md): a layer's attention or its
     * MLP, ranked by the sub-block's influence (1 - cos of its input x and x + its output). One
     * way at a time, instead of n_drop / blocks: */
    int sub;              /* 1: drop sub-blocks, by n_attn / n_mlp, n_sub or the lists */
    int n_attn, n_mlp;    /* the n_attn attention and n_mlp MLP sub-blocks of least influence */
    int n_sub;            /* or the n_sub sub-blocks of least influence, of either kind */
    const int *attn_list; /* or exactly these layers' attention (n_attn_list) and MLP (n_mlp_list) */
    int n_attn_list;
    const int *mlp_list;
    int n_mlp_list;
} sqz_drop_opts;

typedef struct sqz_drop_result {
    sqz_convert_result convert;
    int n_layers_in, n_layers_out;
    double influence[256]; /* BI of each block of the input (its first 256; -1 without calibration) */
    int dropped[256];      /* 1 for the dropped blocks */
    size_t calib_tokens;
    double calib_seconds;
    /* sub-blocks: the influence of each layer's attention and MLP (-1: no calibration, or the
     * input already lacks it), and which were dropped (1) or were already absent (2) */
    double attn_influence[256], mlp_influence[256];
    int attn_dropped[256], mlp_dropped[256];
    int n_attn_dropped, n_mlp_dropped; /* by this call */
    int sqzf;              /* 1: the output is sqzf (a layer keeps only one of its sub-blocks) */
} sqz_drop_result;

/* Ranks the blocks (with calibration: the hidden states of the full model, each block's input
 * and output on the same tokens) and writes the model without the dropped ones to out_path
 * (GGUF, a temporary name renamed at the end). Errors: SQZ_ERR_ARG for n_drop outside
 * (0, n_layers), a block list with a block out of range, repeated, or all of them, n_drop
 * without enough calibration tokens for one window, an unknown type; I/O and memory errors.
 * With sub: the influence of every block and sub-block comes from the same single pass (each
 * layer's attention, then its MLP); a layer that loses both is removed as a whole block; the
 * output is sqzf (docs/sqzf.md: sqz.subblocks) when some layer keeps one of its two, else
 * GGUF; an out_path ending in .gguf is refused. SQZ_ERR_ARG also for a negative count, more
 * sub-blocks than the model has (or all of them), a layer out of range or listed twice, a
 * ranked count without calibration. */
sqz_status sqz_drop(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_drop_opts *opts,
                    sqz_drop_result *result);

/* ================================================================ end of depth (issue 17) */

/* ---------------------------------------------------------------- search (src/search/) */

/* A level database for sqz_search: every block matrix and the head at every k-quant type
 * Q2_K..Q6_K by sqz's GPTQ (Hessians from the unquantized model), with each level's bytes and
 * the mean KL divergence of the model with that matrix alone at that level
 * (src/search/levels_db.h). Written to db_path + ".part" and renamed when complete; a build
 * that stopped resumes its part file when run again with the same model, calibration and
 * options (another's part file is an SQZ_ERR_ARG). Started by mpirun -np N (Open MPI), the
 * ranks split the levels (round-robin, in a fixed order) and rank 0 writes them after each
 * layer: the same bytes as one process (with the same threads per process); a stopped build
 * resumes with any number of ranks. The caller ends MPI with sqz_finetune_dp_shutdown(). */
typedef struct sqz_levels_opts {
    const int32_t *calib;  /* calibration tokens: the Hessians */
    size_t n_calib;
    int calib_ctx;         /* tokens per window (<= 0: 512) */
    int eval_windows;      /* windows the single-matrix KLs are measured on (<= 0: 4) */
    double damp;           /* GPTQ percdamp (<= 0: 0.1) */
    int plain_gptq;        /* 1: the paper's GPTQ without sqz's refits and coordinate descent
                            * (several times faster, a little worse; for tests) */
} sqz_levels_opts;

typedef struct sqz_levels_result {
    int n_items;           /* matrices (the head included) */
    int n_measured;        /* levels quantized and measured by this call */
    int n_resumed;         /* levels found in a part file (rank 0's count under mpirun) */
    size_t calib_tokens;
    uint64_t db_bytes;     /* rank 0's (the others write nothing: 0) */
    double seconds;
    int mpi_ranks, mpi_rank; /* under mpirun: the world (1: alone) and this rank */
} sqz_levels_result;

sqz_status sqz_levels_build(sqz_ctx *ctx, const sqz_model *model, const char *db_path, const sqz_levels_opts *opts,
                            sqz_levels_result *result);

/* Called after each generation with its parent's fitness (mean KL on the last selection
 * stage's windows). */
typedef void (*sqz_search_gen_fn)(void *user, int generation, double fitness, double seconds);

typedef struct sqz_search_opts {
    /* "quant": each matrix's k-quant type from the database (needs db), within the budget;
     * "depth": which n_drop blocks to drop (the rest unchanged; no database);
     * "quant,depth": both under one budget (needs db): a dropped block's matrices cost nothing;
     * a mutation moves one matrix up or (1 in 4) drops or restores one block, then is repaired
     * to the budget (down while over it; after a block move, up while a step fits); the
     * seed drops nothing unless the budget is below Q2_K everywhere, and then the blocks of
     * least LIM (see alloc) until Q2_K fits; the GGUF has the kept blocks renumbered
     * (llama.cpp runs it); bits per weight still divide by the original's parameters */
    const char *space;
    const char *db;
    double bpw;            /* quant budget: 8 x file bytes / the model's parameter count; or */
    uint64_t bytes;        /* the file's bytes */
    int n_drop;            /* depth */
    /* quant: how the seed (the whole answer with generations 0) is chosen, a row of search.c's
     * seed table (NULL: "knapsack"):
     *   knapsack   the multiple-choice knapsack on single-matrix KLs (quant/alloc.h);
     *   layerwise  Layer-Wise Quantization (Dumitru et al. 2024, arXiv 2406.17415): blocks ranked
     *              by LIM = mean 1 - cos(block input, block output) over the pool's tokens
     *              (result.importance); every matrix of a block at the block's type; two
     *              adjacent k-quants t < t+1, the head (token_embd when tied) counted as the most
     *              important unit, then the blocks by LIM: the most that fit go to t+1, the
     *              rest stay at t (t the highest type the budget allows);
     *   uniform    every matrix at `type` (budget optional: without one it is the file's own
     *              bytes, so a search from it keeps them; with one, the type must fit). */
    const char *alloc;
    const char *type;      /* uniform's type (q2_k..q6_k) */
    const char *embd_type; /* quant, untied models: token_embd's type [q4_k] */
    const int32_t *calib;  /* the fitness windows come from here (spread over it) */
    size_t n_calib;
    int calib_ctx;         /* tokens per window (<= 0: 512) */
    int pool_windows;      /* windows in the pool stages draw from (<= 0: 32) */
    int holdout_windows;   /* quant spaces, > 0: up to this many windows of the calibration
                            * tokens outside the pool (whole windows in its gaps); the search's
                            * answer is written only if its gain over its seed there is
                            * significant (mean per-window KL gain above twice its standard
                            * error), else the seed is (the pool's gains must carry over to text
                            * the search never scored); 0: no check */
    int generations;       /* (< 0: 200); 0: the seed alone (quant: the knapsack's answer) */
    int offspring;         /* children per generation (<= 0: 32) */
    const char *stages;    /* survivors x windows per stage (NULL: "8x1,2x4,1x32": the last on the
                            * whole default pool, so the parent is replaced only by a child better
                            * there, and the fitness curve never rises) */
    uint64_t seed;
    int brute_force;       /* depth: every subset of n_drop blocks instead of the search */
    int sub;               /* depth: each layer's attention and MLP are separate units, n_drop of
                            * the 2 n_layers go (the output is then sqzf: out_path not .gguf) */
    const char *checkpoint; /* state written every checkpoint_every generations (NULL: none) */
    int checkpoint_every;  /* (<= 0: 10) */
    int resume;            /* 1: continue from checkpoint (which must exist and match) */
    int max_generations_this_run; /* > 0: stop after this many (then resume); for tests */
    const char *json_path; /* the choice and the fitness curve as JSON (NULL: none) */
    sqz_search_gen_fn on_generation;
    void *user;
} sqz_search_opts;

typedef struct sqz_search_result {
    double seed_kl, best_kl;          /* mean KL on every pool window: the seed, the answer */
    double seed_sum_kl, best_sum_kl;  /* quant: sums of the single-matrix KLs (the knapsack's
                                       * estimate; its additivity is how close sum ~ kl) */
    int generations;                  /* run in this call */
    int finished;                     /* 0: stopped early (max_generations_this_run) */
    long evaluations;                 /* fitness calls */
    uint64_t budget_bytes, file_bytes;
    uint64_t n_params;                /* the original model's parameters (bpw's denominator) */
    double bits_per_weight;           /* 8 x file_bytes / n_params */
    int n_importance;                 /* alloc layerwise: n_layers, else 0 */
    double importance[256];           /* each block's LIM score (its first 256) */
    int n_dropped;
    int dropped[256];                 /* depth, quant,depth: the dropped blocks, ascending (sub: both halves gone) */
    int n_dropped_attn, n_dropped_mlp;
    int dropped_attn[256], dropped_mlp[256]; /* depth with sub: the layers whose attention / MLP went */
    int holdout_windows;              /* windows the held-out check used (0: none ran) */
    double holdout_seed_kl, holdout_best_kl; /* their mean KL: the seed, the search's best */
    double holdout_gain_se;           /* the standard error of the per-window gain (seed - best) */
    int kept_seed;                    /* 1: the held-out check kept the seed (best_kl = seed_kl) */
    double seconds;
    int mpi_ranks, mpi_rank;          /* under mpirun: the world (1: alone) and this rank */
    uint64_t mpi_bytes_sent;          /* what this rank sent (the fitnesses it scored) */
} sqz_search_result;

/* Started by mpirun -np N (Open MPI), the ranks split each selection stage's (candidate,
 * window) pairs and sum their KLs in one process's order, and split the base model's pool
 * windows and the final full-pool KLs too: the same answer as one process with the same seed
 * (and threads per process); rank 0 writes. The
 * caller ends MPI with sqz_finetune_dp_shutdown() before exiting.
 * EvoPress (src/search/evopress.h) over the space, seeded by the knapsack on single-matrix KLs
 * (quant) or a random subset (depth), fitness = mean KL to model on calibration windows; writes
 * out_path: GGUF with the chosen per-tensor types (quant) or without the dropped blocks
 * (depth; f16), through a temporary name. Errors: SQZ_ERR_ARG (unknown space, no budget or
 * one below the smallest configuration, a database of another model, too little calibration,
 * a checkpoint of another search), I/O and memory errors. */
sqz_status sqz_search(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_search_opts *opts,
                      sqz_search_result *result);

/* ---------------------------------------------------------------- BitStack (issue 18) */

/* BitStack (Wang et al. 2024, "BitStack: Any-Size Compression of Large Language Models", ICLR
 * 2025; docs/bitstack.md): every block matrix W, scaled by its input's activation scale s
 * (W diag(s)), is decomposed iteratively into K residual blocks, each the packed signs of the
 * residual times a rank-r SVD of its absolute value; all blocks of all matrices are put in one
 * universal order by their measured effect on the model's calibration KL, and a model is loaded
 * at any memory size M by taking the prefix of that order that fits M. The file is sqzf
 * (docs/sqzf.md) with the blocks of each matrix as NAME.bs_*; the token embedding and an untied
 * head are q8_0, norms f32, and count against M like the blocks. */
typedef struct sqz_bitstack_opts {
    const int32_t *calib;  /* calibration tokens: the activation scales and the sort's KLs */
    size_t n_calib;
    int calib_ctx;         /* tokens per window (<= 0: 512) */
    int rank;              /* r of every block (<= 0: 4; at most 64) */
    int iters;             /* K blocks per matrix (<= 0: 16) */
    int sort_windows;      /* windows the sort measures KLs on (<= 0: 2) */
} sqz_bitstack_opts;

typedef struct sqz_bitstack_result {
    int n_matrices, n_blocks;
    int rank, iters;
    size_t calib_tokens;
    uint64_t fixed_bytes;       /* what every size holds besides blocks: embeddings, norms, scales, orders */
    uint64_t min_bytes;         /* the smallest size: fixed_bytes + every matrix's first block */
    uint64_t block_bytes;       /* every block of every matrix */
    uint64_t file_bytes;
    double rel_err_first;       /* mean over matrices of ||R_1 diag(s)|| / ||W diag(s)|| ... */
    double rel_err_last;        /* ... and of ||R_K diag(s)|| / ||W diag(s)|| */
    double decompose_seconds, sort_seconds, seconds;
} sqz_bitstack_result;

/* Decomposes model's block matrices and writes the stack to out_path (a temporary name renamed
 * when complete). Errors: SQZ_ERR_ARG (rank or iters out of range, too little calibration, a
 * rank above a matrix's smaller side), I/O and memory errors. */
sqz_status sqz_bitstack(sqz_ctx *ctx, const sqz_model *model, const char *out_path, const sqz_bitstack_opts *opts,
                        sqz_bitstack_result *result);

typedef struct sqz_bitstack_fit_info {
    uint64_t memory;       /* the budget asked (0: every block) */
    uint64_t bytes;        /* weight bytes loaded: fixed_bytes + the blocks taken (<= memory) */
    uint64_t fixed_bytes;  /* what every size holds besides blocks: embeddings, norms, scales */
    uint64_t min_bytes;    /* the smallest size: fixed_bytes + every matrix's first block */
    uint64_t all_bytes;    /* with every block */
    int n_blocks, n_loaded;
} sqz_bitstack_fit_info;

/* 1 if model was loaded from a BitStack file. */
int sqz_model_is_bitstack(const sqz_model *model);
/* Loads the prefix of the universal order that fits memory bytes (0: every block): each
 * BitStack matrix becomes the f32 sum of its blocks taken. sqz_model_load loads every block;
 * call this before the model's first session. The smallest size holds every matrix's first
 * block (as the paper's: below it some matrices would be zero). Errors: SQZ_ERR_ARG (not a
 * BitStack model, a session already made), SQZ_ERR_RANGE (memory below min_bytes),
 * SQZ_ERR_NOMEM. */
sqz_status sqz_model_bitstack_fit(sqz_ctx *ctx, sqz_model *model, uint64_t memory, sqz_bitstack_fit_info *info);

#ifdef __cplusplus
}
#endif
#endif /* SQZ_H */
