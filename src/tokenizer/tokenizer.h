/* tokenizer.h - text <-> token ids. Two families behind one interface:
 *   - byte-level BPE from a Hugging Face tokenizer.json (GPT-2 / Llama-3 / Qwen2): byte map,
 *     ranked merges, pre-tokenizer regex (PCRE2, UTF mode), added/special tokens;
 *   - the llama2.c tokenizer.bin (SentencePiece-style: pieces with scores, merges by best score,
 *     <0xXX> byte fallback).
 */
#ifndef SQZ_TOKENIZER_TOKENIZER_H
#define SQZ_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

typedef struct sqz_tokenizer sqz_tokenizer;

/* Loads tokenizer.json. Errors name the file. */
sqz_status sqz_tokenizer_load_hf(sqz_ctx *ctx, const char *path, sqz_tokenizer **out);
/* Same from memory (json need not be NUL-terminated); name is used in messages. */
sqz_status sqz_tokenizer_load_hf_mem(sqz_ctx *ctx, const char *json, size_t len,
                                     const char *name, sqz_tokenizer **out);
/* Loads a llama2.c tokenizer.bin holding vocab_size pieces. */
sqz_status sqz_tokenizer_load_llama2c(sqz_ctx *ctx, const char *path, int vocab_size,
                                      sqz_tokenizer **out);
void sqz_tokenizer_free(sqz_tokenizer *tok);

/* Sets BOS/EOS ids (from config.json or GGUF metadata) where the tokenizer file has none;
 * -1 leaves a value unchanged. */
void sqz_tokenizer_set_special(sqz_tokenizer *tok, int bos, int eos);

int sqz_tokenizer_vocab_size(const sqz_tokenizer *tok);
int sqz_tokenizer_bos(const sqz_tokenizer *tok);     /* -1 if none */
int sqz_tokenizer_eos(const sqz_tokenizer *tok);     /* -1 if none */
int sqz_tokenizer_add_bos(const sqz_tokenizer *tok); /* the tokenizer asks for BOS */
const char *sqz_tokenizer_kind(const sqz_tokenizer *tok); /* "bpe" or "llama2c" */

/* add_bos: 1 prepend, 0 never, -1 as the tokenizer asks. *ids is malloc'ed. */
sqz_status sqz_tokenizer_encode(sqz_ctx *ctx, const sqz_tokenizer *tok, const char *text,
                                size_t len, int add_bos, int32_t **ids, size_t *n_ids);
/* Bytes of token id when it follows prev (-1 at the start); see sqz_token_to_text. */
sqz_status sqz_tokenizer_decode(const sqz_tokenizer *tok, int32_t prev, int32_t id, char *buf,
                                size_t cap, size_t *len);

#endif
