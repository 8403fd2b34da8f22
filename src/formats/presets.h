/* presets.h - llama.cpp's quantization presets and its per-tensor type choice.
 *
 * A preset is what `llama-quantize MODEL OUT TYPE` takes: a plain tensor type ("q4_0", "q8_0",
 * "q4_k") that every 2-D weight gets, as with --pure, or one of llama.cpp's mixes ("q4_k_m",
 * "q2_k", ...) where llama_tensor_get_type (src/llama-quant.cpp, llama.cpp build 4748) picks
 * more bits for the tensors that hurt most: the output projection (or the tied token embedding)
 * gets Q6_K, attn_v / ffn_down of some layers get more bits, and so on. Each preset also names
 * the LLAMA_FTYPE value a GGUF file records as general.file_type.
 *
 * Rows whose length is not a multiple of the chosen type's block (a 384-wide model under a
 * 256-element k-quant) get llama.cpp's fallback type (Q2_K/Q3_K/IQ4_XS -> IQ4_NL, Q4_K -> Q5_0,
 * Q5_K -> Q5_1, Q6_K -> Q8_0), or F16 when even that does not fit.
 */
#ifndef SQZ_FORMATS_PRESETS_H
#define SQZ_FORMATS_PRESETS_H

#include <stdint.h>

#include "formats/types.h"

/* llama.cpp's enum llama_ftype (general.file_type); values are stored in files, never change. */
enum {
    SQZ_FTYPE_ALL_F32 = 0,
    SQZ_FTYPE_F16 = 1,
    SQZ_FTYPE_Q4_0 = 2,
    SQZ_FTYPE_Q4_1 = 3,
    SQZ_FTYPE_Q8_0 = 7,
    SQZ_FTYPE_Q5_0 = 8,
    SQZ_FTYPE_Q5_1 = 9,
    SQZ_FTYPE_Q2_K = 10,
    SQZ_FTYPE_Q3_K_S = 11,
    SQZ_FTYPE_Q3_K_M = 12,
    SQZ_FTYPE_Q3_K_L = 13,
    SQZ_FTYPE_Q4_K_S = 14,
    SQZ_FTYPE_Q4_K_M = 15,
    SQZ_FTYPE_Q5_K_S = 16,
    SQZ_FTYPE_Q5_K_M = 17,
    SQZ_FTYPE_Q6_K = 18,
    SQZ_FTYPE_IQ4_NL = 25,
    SQZ_FTYPE_IQ4_XS = 30,
    SQZ_FTYPE_BF16 = 32
};

typedef struct sqz_preset {
    const char *name; /* canonical lowercase name: "q4_k_m", "q4_0", ... */
    int ftype;        /* SQZ_FTYPE_* for general.file_type */
    sqz_type base;    /* the type of every 2-D weight the rules do not change */
    int mix;          /* 1: llama.cpp's per-tensor rules apply; 0: every 2-D weight gets base */
} sqz_preset;

/* Finds the preset called name (case-insensitive). pure: a mix becomes its base type for every
 * weight (as llama-quantize --pure; "q4_k_m" pure keeps ftype Q4_K_M). "q2_k" and "q6_k" are
 * the mixes unless pure. A plain k-quant type records the ftype llama.cpp's loader guesses for
 * a file of mostly that type (q3_k -> Q3_K_M, q4_k -> Q4_K_M, q5_k -> Q5_K_M). Returns 0 and
 * fills *out, or -1 for an unknown name. */
int sqz_preset_find(const char *name, int pure, sqz_preset *out);

/* All accepted names, comma-separated, for messages. */
const char *sqz_preset_names(void);

/* What a tensor is, for the rules (llama.cpp matches on the GGUF tensor names). */
typedef enum sqz_tensor_role {
    SQZ_ROLE_TOKEN_EMBD,
    SQZ_ROLE_OUTPUT,
    SQZ_ROLE_ATTN_Q,
    SQZ_ROLE_ATTN_K,
    SQZ_ROLE_ATTN_V,
    SQZ_ROLE_ATTN_OUTPUT,
    SQZ_ROLE_FFN_GATE,
    SQZ_ROLE_FFN_UP,
    SQZ_ROLE_FFN_DOWN,
    SQZ_ROLE_OTHER
} sqz_tensor_role;

/* The model facts the rules look at. */
typedef struct sqz_preset_model {
    int n_layers;
    int n_heads, n_kv_heads; /* n_gqa = n_heads / n_kv_heads */
    int tied;                /* no output.weight: token_embd is also the output projection */
    int is_70b;              /* llama.cpp's LLM_TYPE_70B (80 layers with GQA): attn_v gets Q5_K */
} sqz_preset_model;

/* The type of one 2-D weight: role, its layer (-1 outside the blocks) and its row length
 * ncols. *fallback (may be NULL) is set to 1 when the row length forced a fallback type, else 0.
 * The result always fits ncols (F16 as the last resort). */
sqz_type sqz_preset_tensor_type(const sqz_preset *p, const sqz_preset_model *m,
                                sqz_tensor_role role, int layer, int64_t ncols, int *fallback);

#endif
