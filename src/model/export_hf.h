/* export_hf.h - a Hugging Face model folder written from parts: config.json, model.safetensors
 * (streamed tensor by tensor) and tokenizer.json, for any producer of weights (a merge, a
 * training run). The producer declares every tensor (its HF name, dtype, shape), then puts
 * their values as floats in the order declared; nothing needs to hold more than what it puts.
 *
 * The folder appears whole or not at all: everything is written into OUT.tmp.XXXXXX beside
 * OUT, which is renamed to OUT when complete. OUT must not exist, or be an empty folder
 * (checked by sqz_hf_export_new, before the caller does any work); an export freed before
 * sqz_hf_export_finish removes its temporary folder. */
#ifndef SQZ_MODEL_EXPORT_HF_H
#define SQZ_MODEL_EXPORT_HF_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "formats/types.h"
#include "io/config.h"
#include "sqz.h"

typedef struct sqz_hf_export sqz_hf_export;

/* Fails (SQZ_ERR_IO naming out_dir) when out_dir exists and is not an empty folder, or the
 * folder that would hold it does not exist. */
sqz_status sqz_hf_export_new(sqz_ctx *ctx, const char *out_dir, sqz_hf_export **out);
void sqz_hf_export_free(sqz_hf_export *e); /* accepts NULL; removes an unfinished folder */

/* config.json, either copied from a source's JSON text (every key kept, "torch_dtype" set to
 * the dtype of the declared matrices) or made from cfg (the keys LlamaForCausalLM /
 * MistralForCausalLM / Qwen2ForCausalLM read). Without either, begin fails. */
sqz_status sqz_hf_export_config_json(sqz_hf_export *e, const char *json, size_t len);
sqz_status sqz_hf_export_config(sqz_hf_export *e, const sqz_config *cfg);
/* A tokenizer.json to copy into the folder (optional; read at begin). */
sqz_status sqz_hf_export_tokenizer(sqz_hf_export *e, const char *tokenizer_json_path);

/* The model card: README.md (card.h) written into the folder with the rest at finish; without
 * one, the folder still gets a card saying sqz wrote it. The card is rendered now (its strings
 * need not outlive the call). */
sqz_status sqz_hf_export_card(sqz_hf_export *e, const sqz_model_card *card);
/* A tensor of model.safetensors (as sqz_st_writer_declare). */
sqz_status sqz_hf_export_declare(sqz_hf_export *e, const char *name, sqz_type type, int n_dims,
                                 const int64_t *shape);
/* Creates the temporary folder, writes config.json and tokenizer.json, starts the weights. */
sqz_status sqz_hf_export_begin(sqz_hf_export *e);
/* The next n values, tensors in the order declared (may span tensors). */
sqz_status sqz_hf_export_put_f32(sqz_hf_export *e, const float *x, size_t n);
/* The next n raw bytes (a SQZ_ST_TYPE_U8 tensor's). */
sqz_status sqz_hf_export_put(sqz_hf_export *e, const void *data, size_t n);
/* Completes model.safetensors and renames the folder to out_dir. */
sqz_status sqz_hf_export_finish(sqz_hf_export *e);

#endif
