/* presets.c - llama.cpp's quantization presets (llama-quantize's type names and the LLAMA_FTYPE
 * each records) and llama_tensor_get_type's per-tensor rules for the k-quant mixes, as of
 * llama.cpp build 4748 (src/llama-quant.cpp). Only the rules that can fire for the dense
 * llama / qwen2 models sqz converts are here: no MoE (n_expert), no Falcon, no IQ1/IQ2/IQ3 mixes,
 * no importance-matrix-dependent choices (sqz converts without one). */
#include "formats/presets.h"

#include <ctype.h>
#include <string.h>

static const sqz_preset presets[] = {
    /* plain types: every 2-D weight gets the type */
    { "f32", SQZ_FTYPE_ALL_F32, SQZ_TYPE_F32, 0 },
    { "f16", SQZ_FTYPE_F16, SQZ_TYPE_F16, 0 },
    { "bf16", SQZ_FTYPE_BF16, SQZ_TYPE_BF16, 0 },
    { "q8_0", SQZ_FTYPE_Q8_0, SQZ_TYPE_Q8_0, 0 },
    { "q4_0", SQZ_FTYPE_Q4_0, SQZ_TYPE_Q4_0, 0 },
    { "q4_1", SQZ_FTYPE_Q4_1, SQZ_TYPE_Q4_1, 0 },
    { "q5_0", SQZ_FTYPE_Q5_0, SQZ_TYPE_Q5_0, 0 },
    { "q5_1", SQZ_FTYPE_Q5_1, SQZ_TYPE_Q5_1, 0 },
    { "iq4_nl", SQZ_FTYPE_IQ4_NL, SQZ_TYPE_IQ4_NL, 0 },
    { "iq4_xs", SQZ_FTYPE_IQ4_XS, SQZ_TYPE_IQ4_XS, 0 },
    /* llama.cpp's loader guesses Q3_K_M / Q4_K_M / Q5_K_M for a file of mostly Q3_K / Q4_K /
     * Q5_K (llama_model_loader's ftype from the dominant type): record the same */
    { "q3_k", SQZ_FTYPE_Q3_K_M, SQZ_TYPE_Q3_K, 0 },
    { "q4_k", SQZ_FTYPE_Q4_K_M, SQZ_TYPE_Q4_K, 0 },
    { "q5_k", SQZ_FTYPE_Q5_K_M, SQZ_TYPE_Q5_K, 0 },
    /* llama.cpp's mixes; "q2_k" and "q6_k" are mixes (their pure forms come with pure = 1) */
    { "q2_k", SQZ_FTYPE_Q2_K, SQZ_TYPE_Q2_K, 1 },
    { "q3_k_s", SQZ_FTYPE_Q3_K_S, SQZ_TYPE_Q3_K, 1 },
    { "q3_k_m", SQZ_FTYPE_Q3_K_M, SQZ_TYPE_Q3_K, 1 },
    { "q3_k_l", SQZ_FTYPE_Q3_K_L, SQZ_TYPE_Q3_K, 1 },
    { "q4_k_s", SQZ_FTYPE_Q4_K_S, SQZ_TYPE_Q4_K, 1 },
    { "q4_k_m", SQZ_FTYPE_Q4_K_M, SQZ_TYPE_Q4_K, 1 },
    { "q5_k_s", SQZ_FTYPE_Q5_K_S, SQZ_TYPE_Q5_K, 1 },
    { "q5_k_m", SQZ_FTYPE_Q5_K_M, SQZ_TYPE_Q5_K, 1 },
    { "q6_k", SQZ_FTYPE_Q6_K, SQZ_TYPE_Q6_K, 1 },
};

int sqz_preset_find(const char *name, int pure, sqz_preset *out) {
    if (!name) return -1;
    char low[16];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof low) return -1;
    for (size_t i = 0; i <= n; i++) low[i] = (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        if (strcmp(presets[i].name, low) != 0) continue;
        *out = presets[i];
        if (pure) out->mix = 0;
        return 0;
    }
    return -1;
}

const char *sqz_preset_names(void) {
    return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, iq4_xs, q2_k, q3_k, q4_k, q5_k, "
           "q6_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m";
}

static int block_of(sqz_type t) {
    const sqz_type_traits *tr = sqz_type_get(t);
    return tr ? tr->block_size : 1;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every third one in
 * between get more bits. */
static int use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* llama_tensor_get_type's choice for the mixes, before the shape fallback. The counters
 * llama.cpp keeps (i_attention_wv, i_ffn_down) advance once per layer in file order, so they
 * equal the layer index here, and n_attention_wv = n_ffn_down = n_layers. */
static sqz_type mix_type(const sqz_preset *p, const sqz_preset_model *m, sqz_tensor_role role,
                         int layer, int64_t ncols) {
    const int ft = p->ftype, n = m->n_layers, i = layer;
    const int n_gqa = m->n_kv_heads > 0 ? m->n_heads / m->n_kv_heads : 1;
    sqz_type t = p->base;
    if (role == SQZ_ROLE_OUTPUT || (role == SQZ_ROLE_TOKEN_EMBD && m->tied)) {
        /* the output projection (also when it is the tied embedding) */
        if (ncols % block_of(t) != 0) return SQZ_TYPE_Q8_0;
        return t != SQZ_TYPE_Q8_0 ? SQZ_TYPE_Q6_K : t;
    }
    switch (role) {
    case SQZ_ROLE_ATTN_V:
        if (ft == SQZ_FTYPE_Q2_K) t = n_gqa >= 4 ? SQZ_TYPE_Q4_K : SQZ_TYPE_Q3_K;
        else if (ft == SQZ_FTYPE_Q3_K_M) t = i < 2 ? SQZ_TYPE_Q5_K : SQZ_TYPE_Q4_K;
        else if (ft == SQZ_FTYPE_Q3_K_L) t = SQZ_TYPE_Q5_K;
        else if ((ft == SQZ_FTYPE_Q4_K_M || ft == SQZ_FTYPE_Q5_K_M) && use_more_bits(i, n))
            t = SQZ_TYPE_Q6_K;
        else if (ft == SQZ_FTYPE_Q4_K_S && i < 4) t = SQZ_TYPE_Q5_K;
        /* 70B: 8 query heads share each attn_v, so more bits there cost little */
        if (m->is_70b && (t == SQZ_TYPE_Q3_K || t == SQZ_TYPE_Q4_K)) t = SQZ_TYPE_Q5_K;
        break;
    case SQZ_ROLE_FFN_DOWN:
        if (ft == SQZ_FTYPE_Q2_K) t = SQZ_TYPE_Q3_K;
        else if (ft == SQZ_FTYPE_Q3_K_M) t = i < n / 16 ? SQZ_TYPE_Q5_K : SQZ_TYPE_Q4_K;
        else if (ft == SQZ_FTYPE_Q3_K_L) t = SQZ_TYPE_Q5_K;
        else if (ft == SQZ_FTYPE_Q4_K_M) { if (use_more_bits(i, n)) t = SQZ_TYPE_Q6_K; }
        else if (ft == SQZ_FTYPE_Q5_K_M && use_more_bits(i, n)) t = SQZ_TYPE_Q6_K;
        else if (ft == SQZ_FTYPE_Q4_K_S && i < n / 8) t = SQZ_TYPE_Q5_K;
        break;
    case SQZ_ROLE_ATTN_OUTPUT:
        if (ft == SQZ_FTYPE_Q2_K) t = SQZ_TYPE_Q3_K;
        else if (ft == SQZ_FTYPE_Q3_K_M) t = SQZ_TYPE_Q4_K;
        else if (ft == SQZ_FTYPE_Q3_K_L) t = SQZ_TYPE_Q5_K;
        break;
    default: /* token_embd (untied), attn_q, attn_k, ffn_gate, ffn_up: only IQ mixes touch them */
        break;
    }
    return t;
}

/* llama.cpp's fallback for a row length the type's block does not divide. Types without a
 * fallback there (block-32 types, for which llama.cpp gives up) go straight to F16. */
static sqz_type fallback_type(sqz_type t) {
    switch (t) {
    case SQZ_TYPE_Q2_K:
    case SQZ_TYPE_Q3_K:
    case SQZ_TYPE_IQ4_XS: return SQZ_TYPE_IQ4_NL;
    case SQZ_TYPE_Q4_K: return SQZ_TYPE_Q5_0;
    case SQZ_TYPE_Q5_K: return SQZ_TYPE_Q5_1;
    case SQZ_TYPE_Q6_K: return SQZ_TYPE_Q8_0;
    default: return SQZ_TYPE_F16;
    }
}

sqz_type sqz_preset_tensor_type(const sqz_preset *p, const sqz_preset_model *m,
                                sqz_tensor_role role, int layer, int64_t ncols, int *fallback) {
    sqz_type t = p->mix ? mix_type(p, m, role, layer, ncols) : p->base;
    if (fallback) *fallback = 0;
    if (ncols % block_of(t) == 0) return t;
    if (fallback) *fallback = 1;
    t = fallback_type(t);
    return ncols % block_of(t) == 0 ? t : SQZ_TYPE_F16;
}
