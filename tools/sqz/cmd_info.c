/* cmd_info.c - sqz info MODEL: architecture, sizes, tokenizer. */
#include <stdlib.h>

#include "cli.h"

int cmd_info(sqz_ctx *ctx, const opts *o) {
    sqz_model *m;
    if (cli_load_model(ctx, o, &m)) return 1;
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
        cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
        char value[512];
        for (size_t k = 0; k < sqz_model_n_metadata(m); k++) {
            const char *key = sqz_model_metadata(m, k, value, sizeof value);
            if (key) cJSON_AddStringToObject(meta, key, value);
        }
        cJSON *tensors = cJSON_AddArrayToObject(j, "tensors");
        sqz_tensor_info t;
        for (size_t k = 0; sqz_model_tensor(m, k, &t); k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", t.name);
            cJSON_AddStringToObject(e, "type", t.type);
            cJSON *shape = cJSON_AddArrayToObject(e, "shape");
            for (int d = 0; d < t.n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t.shape[d]));
            cJSON_AddNumberToObject(e, "bytes", (double)t.bytes);
            cJSON_AddItemToArray(tensors, e);
        }
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
        char value[512];
        if (sqz_model_n_metadata(m)) printf("\nmetadata (%zu keys)\n", sqz_model_n_metadata(m));
        for (size_t k = 0; k < sqz_model_n_metadata(m); k++) {
            const char *key = sqz_model_metadata(m, k, value, sizeof value);
            if (key) printf("  %-44s %s\n", key, value);
        }
        printf("\ntensors (%zu)\n", sqz_model_n_tensors(m));
        sqz_tensor_info t;
        for (size_t k = 0; sqz_model_tensor(m, k, &t); k++) {
            char shape[48];
            if (t.n_dims == 1) snprintf(shape, sizeof shape, "[%lld]", (long long)t.shape[0]);
            else snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)t.shape[0], (long long)t.shape[1]);
            printf("  %-32s %-14s %-7s %10llu bytes\n", t.name, shape, t.type, (unsigned long long)t.bytes);
        }
    }
    sqz_model_free(m);
    return 0;
}
