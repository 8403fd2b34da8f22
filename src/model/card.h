/* card.h - a model card (sqz_model_card, sqz.h) in the forms a written model carries it: a
 * Hugging Face README.md (YAML front matter, then the recipe and the measurements), a one-line
 * description, and GGUF general.* metadata keys as llama.cpp's gguf-py names them. */
#ifndef SQZ_MODEL_CARD_H
#define SQZ_MODEL_CARD_H

#include <stddef.h>

#include "sqz.h"
#include "io/gguf.h"

/* README.md for a model named name (the folder's name); malloc'ed, NULL when out of memory. */
char *sqz_card_readme(const sqz_model_card *c, const char *name);
/* One line: "gptq:damp=0.1, type q4_0; from X; calibrated on Y (N tokens); ppl P, KL K on Z; sqz V". */
void sqz_card_describe(const sqz_model_card *c, const char *source, char *buf, size_t cap);
/* general.description, general.quantized_by, general.base_model.count / .0.name and general.tags
 * (source: the model's name, used when the card has no base_model). */
sqz_status sqz_card_gguf(sqz_gguf_writer *w, const sqz_model_card *c, const char *source);

#endif
