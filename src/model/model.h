/* model.h - a loaded model: configuration, weight views, tokenizer, and what backs them.
 * Weights point into memory-mapped files; only small vectors (norms, biases) that arrive in a
 * half type are converted to f32 copies the model owns. */
#ifndef SQZ_MODEL_MODEL_H
#define SQZ_MODEL_MODEL_H

#include "core/ctx.h"
#include "formats/bitstack.h"
#include "formats/types.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/config.h"
#include "tokenizer/tokenizer.h"

/* Shapes as (rows, cols) = (output features, input features); D = dim, F = hidden_dim,
 * Hq/Hkv heads, hd head_dim. Norm and bias vectors are always f32. */
typedef struct sqz_layer_weights {
    sqz_tensor attn_norm; /* (1, D) */
    sqz_tensor wq;        /* (Hq*hd, D) */
    sqz_tensor wk;        /* (Hkv*hd, D) */
    sqz_tensor wv;        /* (Hkv*hd, D) */
    sqz_tensor wo;        /* (D, Hq*hd) */
    sqz_tensor bq, bk, bv; /* (1, Hq*hd), (1, Hkv*hd) x2; data NULL unless has_qkv_bias */
    sqz_tensor bo;        /* (1, D): Llama with attention_bias; data NULL otherwise */
    sqz_tensor ffn_norm;  /* (1, D) */
    sqz_tensor w_gate;    /* (F, D) */
    sqz_tensor w_up;      /* (F, D) */
    sqz_tensor w_down;    /* (D, F) */
} sqz_layer_weights;

/* A BitStack matrix of a loaded model (model/bitstack_fit.c): the file's blocks (view) and the
 * f32 weights summed from the blocks the memory budget takes (dense), which *t points at. */
typedef struct sqz_bs_slot {
    char name[64];
    sqz_tensor *t;
    sqz_bs_tensor view;
    float *dense;
} sqz_bs_slot;

struct sqz_model {
    sqz_ctx *ctx;
    sqz_config cfg;
    const char *format;       /* "safetensors", "llama2c" */
    const char *src;          /* the path the model was loaded from, for messages */
    sqz_tensor tok_embd;      /* (vocab, D) */
    sqz_layer_weights *layers; /* [n_layers] */
    sqz_tensor out_norm;      /* (1, D) */
    sqz_tensor output;        /* (vocab, D); the same view as tok_embd when tied */
    sqz_tokenizer *tok;       /* may be NULL: no tokenizer found */
    /* what backs the views */
    sqz_safetensors *st;
    struct sqz_gguf *gguf;
    sqz_mapped_file map;      /* single-file formats (llama2.c) */
    void **owned;             /* f32 copies (norms, biases, ...) */
    int n_owned, cap_owned;
    /* The views sessions compute with (run_weights.c): the ones above, except matrices the
     * kernels want repacked for this CPU (kernels/x16.h), packed into run_mem. Made by the
     * first session of a loaded model (sqz_model_prepare_run); valid only while run_owner ==
     * the model itself: quantization works on struct copies of a model with other layer
     * arrays, which must run their own views (sqz_model_run_layers). */
    const struct sqz_model *self; /* set by sqz_model_load: copies of the struct differ */
    const struct sqz_model *run_owner;
    sqz_layer_weights *run_layers;
    sqz_tensor run_output;
    void *run_mem;
    /* BitStack matrices (a file written by sqz bitstack), their blocks and what is loaded */
    sqz_bs_slot *bs;
    int n_bs, cap_bs;
    uint64_t bs_bytes; /* weight bytes at the last fit: everything else + the blocks taken */
};

/* Dropped sub-blocks (sqz drop --attn / --mlp, docs/drop-subblocks.md): a layer's attention
 * is absent when its output matrix wo has no data, its MLP when w_down has none; an absent
 * sub-block passes the residual stream unchanged (the batch and the decode paths skip it, and
 * a layer without attention has no KV cache). A loaded model with absent sub-blocks has every
 * tensor of them absent (attention: attn_norm, wq, wk, wv, wo and the biases; MLP: ffn_norm,
 * w_gate, w_up, w_down); a depth search's working copies clear only wo / w_down. */
static inline int sqz_layer_has_attn(const sqz_layer_weights *w) { return w->wo.data != NULL; }
static inline int sqz_layer_has_ffn(const sqz_layer_weights *w) { return w->w_down.data != NULL; }
/* The sqzf metadata key of the per-layer sub-blocks (an i32 per layer: bit 0 attention, bit 1
 * MLP), written only when some sub-block is absent. */
#define SQZ_KEY_SUBBLOCKS "sqz.subblocks"
/* Sub-blocks absent from m (0: a complete model). */
int sqz_model_n_absent_subblocks(const sqz_model *m);
/* SQZ_OK for a complete model; else SQZ_ERR_UNSUPPORTED naming what (a command or method) needs
 * every sub-block. */
sqz_status sqz_model_require_subblocks(sqz_ctx *ctx, const sqz_model *m, const char *what);

/* Loaders (one per format); they fill cfg, views and tok. */
sqz_status sqz_load_hf(sqz_ctx *ctx, sqz_model *m, const char *path, const char *tokenizer_path);
sqz_status sqz_load_gguf(sqz_ctx *ctx, sqz_model *m, const char *path);
sqz_status sqz_load_llama2c(sqz_ctx *ctx, sqz_model *m, const char *path,
                            const char *tokenizer_path);

/* Norms and biases are f32 for the forward pass: a vector t in another type is replaced by an
 * f32 copy the model owns. */
sqz_status sqz_model_vector_f32(sqz_ctx *ctx, sqz_model *m, sqz_tensor *t);

/* Builds run_layers / run_output once (thread-safe; later calls return at once). Called by
 * sqz_session_new*: the file's views stay as they are for everything that reads weights
 * (convert, quantize), and only what runs the model pays for repacking. */
sqz_status sqz_model_prepare_run(sqz_ctx *ctx, sqz_model *m);
/* *out = layer w with its k-quant matrices (those sqz_x16k_matmul_unpacked would pack on the
 * fly, a 64-row chunk per call) packed once into *mem (NULL when none is; free it after): the
 * same bits out of every product of more than SQZ_X16K_MATVEC_MAX_T tokens, without repacking
 * the layer at every call (eval/calib_pass.c runs a layer over every calibration window). */
sqz_status sqz_layer_pack_kquants(sqz_ctx *ctx, const sqz_layer_weights *w, sqz_layer_weights *out, void **mem);
/* The layer views and output matrix a session of m computes with: the run views when m
 * prepared them, else m's own. */
const sqz_layer_weights *sqz_model_run_layers(const sqz_model *m);
const sqz_tensor *sqz_model_run_output(const sqz_model *m);

/* Gives back the resident pages of [p, p + n) that lie in the files m maps (safetensors
 * shards, a GGUF / sqzf file, a llama2.c checkpoint; sqz_file_release): a reader done with a
 * tensor's bytes (convert) keeps the process's memory to what it is working on. Views into
 * anything else - the model's own f32 copies, a quantizer's buffers - are left alone. Read
 * again, released bytes load from the file: the model stays fully usable. Returns the bytes
 * given back. */
size_t sqz_model_release(const sqz_model *m, const void *p, size_t n);

/* A layer's tensors in the file's order: attn_norm, wq, wk, wv, wo, bq, bk, bv, bo, ffn_norm,
 * w_gate, w_up, w_down (the biases, 5..8, have data NULL where the model has none). */
enum { SQZ_LAYER_N_TENSORS = 13 };
void sqz_layer_tensors(const sqz_layer_weights *w, const sqz_tensor *out[SQZ_LAYER_N_TENSORS]);

/* For tests: the elements sqz_convert converts, writes and gives back at a time (default
 * 2^24; n <= 0 restores it). Small values make the test models' tensors span many slabs.
 * Not thread-safe: set it while no conversion runs. */
void sqz_convert_set_slab_elems(int64_t n);

/* The row of a q / k matrix in Hugging Face's RoPE pairing (i, i + hd/2) that row r of the
 * same matrix in llama.cpp's GGUF layout (interleaved pairs) holds: within each head of hd
 * rows, GGUF row 2j + s is HF row s * hd/2 + j (convert_hf_to_gguf.py's permute). */
int64_t sqz_rope_gguf_src_row(int64_t r, int64_t hd);

/* Registers a BitStack matrix of the model being loaded (load_gguf.c): *t (inside m's layers)
 * becomes f32 weights at sqz_model_bitstack_fit. */
sqz_status sqz_model_add_bs(sqz_ctx *ctx, sqz_model *m, const char *name, sqz_tensor *t, const sqz_bs_tensor *view);
void sqz_model_free_bs(sqz_model *m);

/* Keeps p (malloc'ed) until the model is freed; frees p and returns NULL on failure. */
void *sqz_model_own(sqz_model *m, void *p);

/* Checks the config's numbers for sanity (positive sizes, divisibility); names src. */
sqz_status sqz_config_check(sqz_ctx *ctx, const sqz_config *c, const char *src);

#endif
