/* config.h - the architecture hyper-parameters every loader fills in. */
#ifndef SQZ_IO_CONFIG_H
#define SQZ_IO_CONFIG_H

typedef enum sqz_arch { SQZ_ARCH_LLAMA, SQZ_ARCH_MISTRAL, SQZ_ARCH_QWEN2 } sqz_arch;

typedef struct sqz_config {
    sqz_arch arch;
    int dim;          /* hidden_size */
    int hidden_dim;   /* intermediate_size (FFN) */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;     /* explicit head_dim, else dim / n_heads */
    int vocab_size;
    int max_seq_len;  /* max_position_embeddings / seq_len; 0 if unknown */
    float rope_theta;
    float norm_eps;
    int rope_interleaved; /* 1: pairs (2i, 2i+1) (llama2.c, GGUF); 0: (i, i + head_dim/2) (HF) */
    int tied_embeddings;
    int has_qkv_bias;     /* Qwen2 */
    int bos_id, eos_id;   /* -1 if none */
} sqz_config;

const char *sqz_arch_name(sqz_arch a);

#endif
