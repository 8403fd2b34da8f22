/* hf_config.h - Hugging Face config.json -> sqz_config. */
#ifndef SQZ_IO_HF_CONFIG_H
#define SQZ_IO_HF_CONFIG_H

#include <stddef.h>

#include "core/ctx.h"
#include "io/config.h"

/* Accepts LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM (architectures[0], or
 * model_type). Required: hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, vocab_size. Defaults: num_key_value_heads = num_attention_heads,
 * head_dim = hidden_size / heads, rope_theta = 10000, rms_norm_eps = 1e-6 (1e-5 llama? see
 * source), tie_word_embeddings = false (qwen2: as given). rope_interleaved = 0.
 * Errors name the file and the field. */
sqz_status sqz_hf_config_load(sqz_ctx *ctx, const char *path, sqz_config *cfg);
sqz_status sqz_hf_config_parse(sqz_ctx *ctx, const char *json, size_t len, const char *name,
                               sqz_config *cfg);

#endif
