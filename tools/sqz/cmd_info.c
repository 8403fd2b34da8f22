/* cmd_info.c - sqz info MODEL: architecture, sizes, tokenizer. */
#include <stdlib.h>

#include "cli.h"

int cmd_info(sqz_ctx *ctx, const opts *o) {
    sqz_model *m;
    if (sqz_model_load(ctx, o->model, o->tokenizer, &m)) return cli_fail(ctx);
    sqz_model_info i;
    sqz_model_get_info(m, &i);
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "arch", i.arch);
        cJSON_AddStringToObject(j, "format", i.format);
        cJSON_AddStringToObject(j, "weight_type", i.weight_type);
        cJSON_AddNumberToObject(j, "dim", i.dim);
        cJSON_AddNumberToObject(j, "hidden_dim", i.hidden_dim);
        cJSON_AddNumberToObject(j, "n_layers", i.n_layers);
        cJSON_AddNumberToObject(j, "n_heads", i.n_heads);
        cJSON_AddNumberToObject(j, "n_kv_heads", i.n_kv_heads);
        cJSON_AddNumberToObject(j, "head_dim", i.head_dim);
        cJSON_AddNumberToObject(j, "vocab_size", i.vocab_size);
        cJSON_AddNumberToObject(j, "max_seq_len", i.max_seq_len);
        cJSON_AddNumberToObject(j, "rope_theta", i.rope_theta);
        cJSON_AddNumberToObject(j, "norm_eps", i.norm_eps);
        cJSON_AddBoolToObject(j, "rope_interleaved", i.rope_interleaved);
        cJSON_AddBoolToObject(j, "tied_embeddings", i.tied_embeddings);
        cJSON_AddBoolToObject(j, "qkv_bias", i.has_qkv_bias);
        cJSON_AddNumberToObject(j, "n_params", (double)i.n_params);
        cJSON_AddNumberToObject(j, "weight_bytes", (double)i.weight_bytes);
        cJSON_AddStringToObject(j, "tokenizer", i.tokenizer);
        cJSON_AddNumberToObject(j, "bos_id", i.bos_id);
        cJSON_AddNumberToObject(j, "eos_id", i.eos_id);
        cJSON_AddBoolToObject(j, "add_bos", i.add_bos);
        cli_print_json(j);
    } else {
        printf("model        %s\n", o->model);
        printf("arch         %s (%s, %s weights)\n", i.arch, i.format, i.weight_type);
        printf("params       %.2fM (%.1f MB of weights)\n", (double)i.n_params / 1e6,
               (double)i.weight_bytes / 1e6);
        printf("layers       %d\n", i.n_layers);
        printf("dim          %d (ffn %d)\n", i.dim, i.hidden_dim);
        printf("heads        %d query / %d kv, head_dim %d\n", i.n_heads, i.n_kv_heads, i.head_dim);
        printf("vocab        %d (tokenizer %s, bos %d, eos %d, add_bos %d)\n", i.vocab_size,
               i.tokenizer, i.bos_id, i.eos_id, i.add_bos);
        printf("context      %d\n", i.max_seq_len);
        printf("rope         theta %g, %s pairs\n", i.rope_theta,
               i.rope_interleaved ? "interleaved" : "half-split");
        printf("norm eps     %g\n", i.norm_eps);
        printf("embeddings   %s\n", i.tied_embeddings ? "tied" : "untied");
    }
    sqz_model_free(m);
    return 0;
}
