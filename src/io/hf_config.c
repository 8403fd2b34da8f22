/* hf_config.c - Hugging Face config.json -> sqz_config, for Llama, Mistral and Qwen2.
 *
 * Defaults follow transformers' LlamaConfig / MistralConfig / Qwen2Config: rms_norm_eps 1e-6,
 * rope_theta 10000, tie_word_embeddings false, num_key_value_heads = num_attention_heads.
 * What is deliberately ignored: sliding_window / use_sliding_window (Mistral v0.1 and some
 * Qwen2 models attend to the last 4096 positions only; sqz attends to all, which is the same
 * within that window), max_window_layers, torch_dtype, initializer_range, use_cache.
 * What is refused as unsupported: rope_scaling other than none/"default", hidden_act other
 * than silu, mlp_bias true.
 */
#include "io/hf_config.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/file.h"

#define HF_MAX_CONFIG ((size_t)16 << 20)
/* No real model comes near: a bound that keeps products of two fields inside 64 bits and
 * turns a corrupt number into a clear error instead of an enormous allocation later. */
#define HF_MAX_DIM (1 << 24)
#define HF_COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef struct hf_arch_name {
    const char *name;
    sqz_arch arch;
} hf_arch_name;

static const hf_arch_name hf_architectures[] = {
    { "LlamaForCausalLM", SQZ_ARCH_LLAMA },
    { "MistralForCausalLM", SQZ_ARCH_MISTRAL },
    { "Qwen2ForCausalLM", SQZ_ARCH_QWEN2 },
};
static const hf_arch_name hf_model_types[] = {
    { "llama", SQZ_ARCH_LLAMA },
    { "mistral", SQZ_ARCH_MISTRAL },
    { "qwen2", SQZ_ARCH_QWEN2 },
};

/* Case-insensitive: early Llama conversions spell it "LLaMAForCausalLM". */
static int hf_lookup(const hf_arch_name *t, size_t n, const char *s, sqz_arch *out) {
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(t[i].name, s) == 0) { *out = t[i].arch; return 1; }
    return 0;
}

static const cJSON *hf_get(const cJSON *root, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNull(v) ? NULL : v; /* "key": null means "use the default" */
}

/* An integer field in [lo, hi]. Absent (or null): *out = def if optional, else an error. */
static sqz_status hf_int(sqz_ctx *ctx, const char *name, const cJSON *root, const char *key,
                         int required, long long def, long long lo, long long hi, int *out) {
    const cJSON *v = hf_get(root, key);
    if (!v) {
        if (required)
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: required field \"%s\" is missing", name,
                            key);
        *out = (int)def;
        return SQZ_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: field \"%s\" must be an integer", name, key);
    if (!(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: field \"%s\" = %g is out of range [%lld, %lld]",
                        name, key, v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return SQZ_OK;
}

/* A positive finite number field, def if absent. */
static sqz_status hf_float(sqz_ctx *ctx, const char *name, const cJSON *root, const char *key,
                           double def, float *out) {
    const cJSON *v = hf_get(root, key);
    if (!v) { *out = (float)def; return SQZ_OK; }
    if (!cJSON_IsNumber(v))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: field \"%s\" must be a number", name, key);
    if (!(v->valuedouble > 0.0 && v->valuedouble <= 3.0e38))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: field \"%s\" = %g must be positive", name,
                        key, v->valuedouble);
    *out = (float)v->valuedouble;
    return SQZ_OK;
}

/* A boolean field (true/false, or 0/1 as some exporters write), def if absent. */
static sqz_status hf_bool(sqz_ctx *ctx, const char *name, const cJSON *root, const char *key,
                          int def, int *out) {
    const cJSON *v = hf_get(root, key);
    if (!v) { *out = def; return SQZ_OK; }
    if (cJSON_IsBool(v)) { *out = cJSON_IsTrue(v); return SQZ_OK; }
    if (cJSON_IsNumber(v) && (v->valuedouble == 0.0 || v->valuedouble == 1.0)) {
        *out = v->valuedouble != 0.0;
        return SQZ_OK;
    }
    return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: field \"%s\" must be true or false", name, key);
}

/* bos_token_id / eos_token_id: an integer, a list of integers (the first is taken), or
 * absent/null/empty list (-1). */
static sqz_status hf_token_id(sqz_ctx *ctx, const char *name, const cJSON *root, const char *key,
                              int *out) {
    const cJSON *v = hf_get(root, key);
    if (cJSON_IsArray(v)) {
        v = cJSON_GetArrayItem(v, 0);
        if (!v) { *out = -1; return SQZ_OK; }
    }
    if (!v) { *out = -1; return SQZ_OK; }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        !(v->valuedouble >= -1.0 && v->valuedouble <= (double)INT_MAX))
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: field \"%s\" must be a token id (an integer >= -1 or a list of them)",
                        name, key);
    *out = (int)v->valuedouble;
    return SQZ_OK;
}

/* rope_scaling (or the newer rope_parameters): null, or of type "default"/"none" only. */
static sqz_status hf_check_rope(sqz_ctx *ctx, const char *name, const cJSON *root,
                                const char *key) {
    const cJSON *v = hf_get(root, key);
    if (!v) return SQZ_OK;
    if (!cJSON_IsObject(v))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: field \"%s\" must be an object or null", name,
                        key);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(v, "type");
    if (!t || cJSON_IsNull(t)) {
        /* rope_parameters may hold just rope_theta; rope_scaling without a type is broken. */
        if (strcmp(key, "rope_parameters") == 0) return SQZ_OK;
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: field \"%s\" has no \"type\"", name, key);
    }
    if (!cJSON_IsString(t))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: %s.type must be a string", name, key);
    if (strcmp(t->valuestring, "default") != 0 && strcmp(t->valuestring, "none") != 0)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: %s type \"%.40s\" is not supported (only plain RoPE)", name, key,
                        t->valuestring);
    return SQZ_OK;
}

static sqz_status hf_parse_tree(sqz_ctx *ctx, const cJSON *root, const char *name,
                                sqz_config *out) {
    if (!cJSON_IsObject(root))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: not a JSON object", name);
    sqz_config c;
    memset(&c, 0, sizeof c);
    sqz_status s;

    /* Architecture: architectures[0] when present, else model_type. */
    const cJSON *archs = hf_get(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const cJSON *mt = hf_get(root, "model_type");
    if (archs && !cJSON_IsArray(archs))
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: field \"architectures\" must be a list", name);
    if (a0) {
        if (!cJSON_IsString(a0))
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: architectures[0] must be a string", name);
        if (!hf_lookup(hf_architectures, HF_COUNT(hf_architectures), a0->valuestring, &c.arch))
            return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                            "%s: unknown architecture %.80s (supported: LlamaForCausalLM, "
                            "MistralForCausalLM, Qwen2ForCausalLM)",
                            name, a0->valuestring);
    } else if (mt) {
        if (!cJSON_IsString(mt))
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: field \"model_type\" must be a string",
                            name);
        if (!hf_lookup(hf_model_types, HF_COUNT(hf_model_types), mt->valuestring, &c.arch))
            return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                            "%s: unknown architecture (model_type %.80s; supported: llama, "
                            "mistral, qwen2)",
                            name, mt->valuestring);
    } else {
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: neither \"architectures\" nor \"model_type\" says what model this is",
                        name);
    }

    if ((s = hf_int(ctx, name, root, "hidden_size", 1, 0, 1, HF_MAX_DIM, &c.dim)) ||
        (s = hf_int(ctx, name, root, "intermediate_size", 1, 0, 1, HF_MAX_DIM, &c.hidden_dim)) ||
        (s = hf_int(ctx, name, root, "num_hidden_layers", 1, 0, 1, HF_MAX_DIM, &c.n_layers)) ||
        (s = hf_int(ctx, name, root, "num_attention_heads", 1, 0, 1, HF_MAX_DIM, &c.n_heads)) ||
        (s = hf_int(ctx, name, root, "vocab_size", 1, 0, 1, HF_MAX_DIM, &c.vocab_size)) ||
        (s = hf_int(ctx, name, root, "num_key_value_heads", 0, c.n_heads, 1, HF_MAX_DIM,
                    &c.n_kv_heads)) ||
        (s = hf_int(ctx, name, root, "head_dim", 0, 0, 1, HF_MAX_DIM, &c.head_dim)) ||
        (s = hf_int(ctx, name, root, "max_position_embeddings", 0, 0, 0, INT_MAX,
                    &c.max_seq_len)))
        return s;
    if (c.n_heads % c.n_kv_heads != 0)
        return sqz_fail(ctx, SQZ_ERR_FORMAT,
                        "%s: num_key_value_heads %d does not divide num_attention_heads %d", name,
                        c.n_kv_heads, c.n_heads);
    if (c.head_dim == 0) {
        if (c.dim % c.n_heads != 0)
            return sqz_fail(ctx, SQZ_ERR_FORMAT,
                            "%s: hidden_size %d is not a multiple of num_attention_heads %d "
                            "(and no head_dim is given)",
                            name, c.dim, c.n_heads);
        c.head_dim = c.dim / c.n_heads;
    }
    if (c.head_dim % 2 != 0)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: head_dim %d is odd; RoPE rotates pairs", name,
                        c.head_dim);

    /* rope_theta: top level, or inside rope_parameters (transformers >= 5). */
    const cJSON *rp = hf_get(root, "rope_parameters");
    if (hf_get(root, "rope_theta") || !cJSON_IsObject(rp))
        s = hf_float(ctx, name, root, "rope_theta", 10000.0, &c.rope_theta);
    else
        s = hf_float(ctx, name, rp, "rope_theta", 10000.0, &c.rope_theta);
    if (s || (s = hf_float(ctx, name, root, "rms_norm_eps", 1e-6, &c.norm_eps)) ||
        (s = hf_check_rope(ctx, name, root, "rope_scaling")) ||
        (s = hf_check_rope(ctx, name, root, "rope_parameters")) ||
        (s = hf_bool(ctx, name, root, "tie_word_embeddings", 0, &c.tied_embeddings)) ||
        (s = hf_token_id(ctx, name, root, "bos_token_id", &c.bos_id)) ||
        (s = hf_token_id(ctx, name, root, "eos_token_id", &c.eos_id)))
        return s;

    /* Qwen2 always has q/k/v biases. Llama's attention_bias puts a bias on q, k, v and o. */
    int attn_bias = 0, mlp_bias = 0;
    if ((s = hf_bool(ctx, name, root, "attention_bias", 0, &attn_bias)) ||
        (s = hf_bool(ctx, name, root, "mlp_bias", 0, &mlp_bias)))
        return s;
    c.has_qkv_bias = c.arch == SQZ_ARCH_QWEN2 || attn_bias;
    if (mlp_bias)
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "%s: mlp_bias true is not supported", name);

    const cJSON *act = hf_get(root, "hidden_act");
    if (!act) act = hf_get(root, "hidden_activation");
    if (act && (!cJSON_IsString(act) || (strcmp(act->valuestring, "silu") != 0 &&
                                          strcmp(act->valuestring, "swish") != 0)))
        return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED,
                        "%s: hidden_act %.40s is not supported (silu only)", name,
                        cJSON_IsString(act) ? act->valuestring : "(not a string)");

    c.rope_interleaved = 0; /* HF checkpoints rotate (i, i + head_dim/2) */
    *out = c;
    return SQZ_OK;
}

sqz_status sqz_hf_config_parse(sqz_ctx *ctx, const char *json, size_t len, const char *name,
                               sqz_config *cfg) {
    if (!name) name = "config.json";
    if (!json) return sqz_fail(ctx, SQZ_ERR_ARG, "%s: NULL text", name);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root)
        return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", name,
                        end && end >= json && end <= json + len ? (size_t)(end - json)
                                                                : (size_t)0);
    for (const char *p = end; p && p < json + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: trailing bytes after the JSON object "
                            "(at byte %zu)", name, (size_t)(p - json));
        }
    }
    sqz_status s = hf_parse_tree(ctx, root, name, cfg);
    cJSON_Delete(root);
    return s;
}

sqz_status sqz_hf_config_load(sqz_ctx *ctx, const char *path, sqz_config *cfg) {
    char *text = NULL;
    size_t len = 0;
    sqz_status s = sqz_file_read_all(ctx, path, HF_MAX_CONFIG, &text, &len);
    if (s != SQZ_OK) return s;
    s = sqz_hf_config_parse(ctx, text, len, path, cfg);
    free(text);
    return s;
}
