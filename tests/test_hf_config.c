/* test_hf_config.c - config.json parsing: the real sqz models, defaults, the architectures,
 * and errors that name the file and the field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ctx.h"
#include "io/hf_config.h"
#include "test.h"

/* The smallest config that parses; tests splice fields into it. */
#define BASE "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2," \
             "\"num_attention_heads\":4,\"vocab_size\":100"

static sqz_status parse(sqz_ctx *ctx, const char *json, sqz_config *c) {
    return sqz_hf_config_parse(ctx, json, strlen(json), "cfg.json", c);
}

static void test_real(const char *rel, int dim, int hidden, int heads, int max_seq) {
    const char *p = test_shared(rel);
    if (!p) { SKIP("%s not found (set SQZ_SHARED)", rel); return; }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_config c;
    sqz_status s = sqz_hf_config_load(ctx, p, &c);
    CHECK(s == SQZ_OK, "load %s: %s", p, sqz_ctx_error(ctx));
    if (s == SQZ_OK) {
        CHECK(c.arch == SQZ_ARCH_LLAMA && c.dim == dim && c.hidden_dim == hidden &&
                  c.n_layers == 8 && c.n_heads == heads && c.n_kv_heads == 2 &&
                  c.head_dim == 64 && c.vocab_size == 4096 && c.max_seq_len == max_seq,
              "%s: llama, dim %d, ffn %d, 8 layers, %d/2 heads, head_dim 64, vocab 4096, "
              "ctx %d (got dim %d ffn %d layers %d heads %d/%d hd %d vocab %d ctx %d)",
              rel, dim, hidden, heads, max_seq, c.dim, c.hidden_dim, c.n_layers, c.n_heads,
              c.n_kv_heads, c.head_dim, c.vocab_size, c.max_seq_len);
        CHECK(c.rope_theta == 10000.0f && c.norm_eps == 1e-5f && c.tied_embeddings == 1 &&
                  c.has_qkv_bias == 0 && c.bos_id == 0 && c.eos_id == 1 &&
                  c.rope_interleaved == 0,
              "%s: rope_theta 1e4, eps 1e-5, tied, no bias, bos 0, eos 1, HF rope", rel);
    }
    sqz_ctx_free(ctx);
}

static void test_defaults_and_archs(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_config c;
    sqz_status s = parse(ctx, "{\"architectures\":[\"LlamaForCausalLM\"]," BASE "}", &c);
    CHECK(s == SQZ_OK, "minimal llama config: %s", sqz_ctx_error(ctx));
    if (s == SQZ_OK)
        CHECK(c.n_kv_heads == 4 && c.head_dim == 16 && c.rope_theta == 10000.0f &&
                  c.norm_eps == 1e-6f && c.tied_embeddings == 0 && c.has_qkv_bias == 0 &&
                  c.bos_id == -1 && c.eos_id == -1 && c.max_seq_len == 0,
              "defaults: kv heads = heads, head_dim = 64/4, theta 1e4, eps 1e-6, untied, "
              "no bos/eos, ctx unknown");

    s = parse(ctx, "{\"architectures\":[\"Qwen2ForCausalLM\"],\"tie_word_embeddings\":true,"
                   "\"num_key_value_heads\":2,\"rope_theta\":1000000.0,\"rms_norm_eps\":1e-6,"
                   "\"eos_token_id\":[151645,151643],\"bos_token_id\":null," BASE "}",
              &c);
    CHECK(s == SQZ_OK && c.arch == SQZ_ARCH_QWEN2 && c.has_qkv_bias == 1 &&
              c.tied_embeddings == 1 && c.n_kv_heads == 2 && c.rope_theta == 1e6f &&
              c.eos_id == 151645 && c.bos_id == -1,
          "qwen2: qkv bias, tied as given, eos list -> first, bos null -> -1: %s",
          sqz_ctx_error(ctx));

    s = parse(ctx, "{\"model_type\":\"mistral\",\"sliding_window\":4096,\"head_dim\":32," BASE
                   "}",
              &c);
    CHECK(s == SQZ_OK && c.arch == SQZ_ARCH_MISTRAL && c.head_dim == 32,
          "mistral from model_type, explicit head_dim, sliding_window ignored: %s",
          sqz_ctx_error(ctx));

    s = parse(ctx, "{\"architectures\":[\"LLaMAForCausalLM\"],\"attention_bias\":true,"
                   "\"eos_token_id\":[],\"rope_scaling\":{\"rope_type\":\"default\"}," BASE "}",
              &c);
    CHECK(s == SQZ_OK && c.arch == SQZ_ARCH_LLAMA && c.has_qkv_bias == 1 && c.eos_id == -1,
          "LLaMAForCausalLM spelling, attention_bias, empty eos list, default rope_scaling: %s",
          sqz_ctx_error(ctx));

    s = parse(ctx, "{\"model_type\":\"llama\",\"rope_parameters\":{\"rope_type\":\"default\","
                   "\"rope_theta\":500000}," BASE "}",
              &c);
    CHECK(s == SQZ_OK && c.rope_theta == 500000.0f,
          "rope_theta inside rope_parameters: %s", sqz_ctx_error(ctx));

    s = parse(ctx, " {\"model_type\":\"qwen2\",\"num_key_value_heads\":null," BASE "} \n", &c);
    CHECK(s == SQZ_OK && c.arch == SQZ_ARCH_QWEN2 && c.n_kv_heads == 4,
          "null optional field takes its default: %s", sqz_ctx_error(ctx));
    sqz_ctx_free(ctx);
}

/* json must fail with status want and a message that contains name_hint and hint. */
static void expect_bad(const char *what, const char *json, sqz_status want, const char *hint) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_config c;
    memset(&c, 0x5a, sizeof c);
    sqz_config before = c;
    sqz_status s = parse(ctx, json, &c);
    const char *m = sqz_ctx_error(ctx);
    int ok = s == want && strstr(m, "cfg.json") && strstr(m, hint) &&
             memcmp(&c, &before, sizeof c) == 0;
    CHECK(ok, "%s: %s", what, m);
    if (!ok) printf("#   status %d want %d, want \"%s\" in the message\n", (int)s, (int)want, hint);
    sqz_ctx_free(ctx);
}

#define LLAMA "\"architectures\":[\"LlamaForCausalLM\"],"

static void test_errors(void) {
    const sqz_status F = SQZ_ERR_FORMAT, U = SQZ_ERR_UNSUPPORTED;
    expect_bad("not JSON", "{\"hidden_size\": ", F, "JSON");
    expect_bad("empty text", "", F, "JSON");
    expect_bad("a JSON list", "[1,2]", F, "object");
    expect_bad("garbage after the object", "{" LLAMA BASE "} x", F, "trailing");
    static const char *req[] = { "hidden_size", "intermediate_size", "num_hidden_layers",
                                 "num_attention_heads", "vocab_size" };
    for (int i = 0; i < 5; i++) {
        /* BASE without field i */
        char json[1024], field[64];
        snprintf(json, sizeof json, "{" LLAMA BASE "}");
        snprintf(field, sizeof field, "\"%s\":", req[i]);
        char *f = strstr(json, field);
        char *comma = strchr(f, ',');
        char *end = comma ? comma + 1 : strchr(f, '}');
        if (!comma && f[-1] == ',') f--; /* last field: drop the comma before it */
        memmove(f, end, strlen(end) + 1);
        char what[128];
        snprintf(what, sizeof what, "missing %s", req[i]);
        expect_bad(what, json, F, req[i]);
    }
    expect_bad("hidden_size as a string", "{" LLAMA "\"hidden_size\":\"64\"," BASE "}", F,
               "hidden_size");
    expect_bad("hidden_size not an integer",
               "{" LLAMA "\"hidden_size\":64.5,\"intermediate_size\":128,\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"vocab_size\":100}",
               F, "hidden_size");
    expect_bad("zero layers",
               "{" LLAMA "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":0,"
               "\"num_attention_heads\":4,\"vocab_size\":100}",
               F, "num_hidden_layers");
    expect_bad("negative vocab",
               "{" LLAMA "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"vocab_size\":-100}",
               F, "vocab_size");
    expect_bad("absurd hidden_size",
               "{" LLAMA "\"hidden_size\":1e30,\"intermediate_size\":128,\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"vocab_size\":100}",
               F, "hidden_size");
    expect_bad("hidden_size true",
               "{" LLAMA "\"hidden_size\":true,\"intermediate_size\":128,\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"vocab_size\":100}",
               F, "hidden_size");
    expect_bad("num_key_value_heads 0", "{" LLAMA "\"num_key_value_heads\":0," BASE "}", F,
               "num_key_value_heads");
    expect_bad("kv heads that do not divide heads", "{" LLAMA "\"num_key_value_heads\":3," BASE "}",
               F, "num_key_value_heads 3");
    expect_bad("heads that do not divide hidden_size",
               "{" LLAMA "\"hidden_size\":66,\"intermediate_size\":128,\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"vocab_size\":100}",
               F, "num_attention_heads");
    expect_bad("odd head_dim", "{" LLAMA "\"head_dim\":15," BASE "}", F, "head_dim");
    expect_bad("head_dim as a string", "{" LLAMA "\"head_dim\":\"16\"," BASE "}", F, "head_dim");
    expect_bad("unknown architecture", "{\"architectures\":[\"GPT2LMHeadModel\"]," BASE "}", U,
               "unknown architecture GPT2LMHeadModel");
    expect_bad("unknown architecture beats a known model_type",
               "{\"architectures\":[\"LlamaForSequenceClassification\"],\"model_type\":\"llama\","
               BASE "}",
               U, "LlamaForSequenceClassification");
    expect_bad("unknown model_type", "{\"model_type\":\"gpt2\"," BASE "}", U, "gpt2");
    expect_bad("no architecture at all", "{" BASE "}", F, "model_type");
    expect_bad("architectures not a list", "{\"architectures\":\"LlamaForCausalLM\"," BASE "}", F,
               "architectures");
    expect_bad("architectures[0] not a string", "{\"architectures\":[7]," BASE "}", F,
               "architectures[0]");
    expect_bad("rope_theta as a string", "{" LLAMA "\"rope_theta\":\"1e4\"," BASE "}", F,
               "rope_theta");
    expect_bad("negative rms_norm_eps", "{" LLAMA "\"rms_norm_eps\":-1e-5," BASE "}", F,
               "rms_norm_eps");
    expect_bad("linear rope_scaling",
               "{" LLAMA "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}," BASE "}", U,
               "rope_scaling type \"linear\"");
    expect_bad("llama3 rope_scaling",
               "{" LLAMA "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}," BASE "}",
               U, "llama3");
    expect_bad("rope_scaling a number", "{" LLAMA "\"rope_scaling\":2," BASE "}", F,
               "rope_scaling");
    expect_bad("tie_word_embeddings \"yes\"", "{" LLAMA "\"tie_word_embeddings\":\"yes\"," BASE "}",
               F, "tie_word_embeddings");
    expect_bad("eos_token_id a string", "{" LLAMA "\"eos_token_id\":\"</s>\"," BASE "}", F,
               "eos_token_id");
    expect_bad("bos_token_id 1.5", "{" LLAMA "\"bos_token_id\":1.5," BASE "}", F,
               "bos_token_id");
    expect_bad("max_position_embeddings negative",
               "{" LLAMA "\"max_position_embeddings\":-5," BASE "}", F, "max_position_embeddings");
    expect_bad("gelu activation", "{" LLAMA "\"hidden_act\":\"gelu\"," BASE "}", U, "gelu");
    expect_bad("mlp_bias", "{" LLAMA "\"mlp_bias\":true," BASE "}", U, "mlp_bias");
}

static void test_files(void) {
    char dir[] = "/tmp/sqz_cfg_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"architectures\":[\"GPT2LMHeadModel\"]," BASE "}\n", f);
    fclose(f);
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_config c;
    sqz_status s = sqz_hf_config_load(ctx, path, &c);
    CHECK(s == SQZ_ERR_UNSUPPORTED && strstr(sqz_ctx_error(ctx), path),
          "a file with an unknown architecture: %s", sqz_ctx_error(ctx));
    f = fopen(path, "w");
    fputs("{\"architectures\":[\"MistralForCausalLM\"]," BASE "}\n", f);
    fclose(f);
    s = sqz_hf_config_load(ctx, path, &c);
    CHECK(s == SQZ_OK && c.arch == SQZ_ARCH_MISTRAL, "a valid file loads: %s",
          sqz_ctx_error(ctx));
    unlink(path);
    s = sqz_hf_config_load(ctx, path, &c);
    CHECK(s == SQZ_ERR_IO && strstr(sqz_ctx_error(ctx), path), "a missing file: %s",
          sqz_ctx_error(ctx));
    rmdir(dir);
    sqz_ctx_free(ctx);
}

int main(void) {
    test_real("models/sqz-llama-26m/config.json", 512, 1536, 8, 4096);
    test_real("models/sqz-llama-14m/config.json", 384, 1024, 6, 2048);
    test_defaults_and_archs();
    test_errors();
    test_files();
    return test_done();
}
