/* gen_model.c - a random-weight model of a real LLM's shape, as a Hugging Face folder, for
 * measuring speed at the sizes users run (decode and prefill speed do not depend on the values).
 *
 *   build/bench/gen_model SHAPE -o DIR [--layers N] [--dtype f16|bf16] [--seed S]
 *   build/bench/gen_model --list
 *
 * Writes DIR/config.json, DIR/model.safetensors (one file, written block by block: memory stays
 * small whatever the size) and DIR/tokenizer.json (copied from sqz-llama-26m: vocab 4096, so
 * every shape keeps a small vocabulary - the issue allows it, and it keeps the output matrix
 * from dominating a 1B model's bytes). --layers cuts a big shape to fewer layers of the same
 * width (when the disk is short). Weights are uniform with std 0.02 (norms 1, biases 0.01-ish),
 * so activations stay finite through every layer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/types.h" /* sqz_f32_to_f16, sqz_f32_to_bf16 */

typedef struct shape {
    const char *name, *arch, *model_type;
    int hidden, ffn, layers, heads, kv_heads, head_dim, tied, qkv_bias;
    double rope_theta;
} shape;

/* the published configs of these models (vocab replaced by 4096) */
static const shape shapes[] = {
    { "tinyllama-1.1b", "LlamaForCausalLM", "llama", 2048, 5632, 22, 32, 4, 64, 0, 0, 10000.0 },
    { "llama-3.2-1b", "LlamaForCausalLM", "llama", 2048, 8192, 16, 32, 8, 64, 1, 0, 500000.0 },
    { "llama-3.2-3b", "LlamaForCausalLM", "llama", 3072, 8192, 28, 24, 8, 128, 1, 0, 500000.0 },
    { "qwen2.5-1.5b", "Qwen2ForCausalLM", "qwen2", 1536, 8960, 28, 12, 2, 128, 1, 1, 1000000.0 },
    { "llama-3-8b", "LlamaForCausalLM", "llama", 4096, 14336, 32, 32, 8, 128, 0, 0, 500000.0 },
};
enum { N_SHAPES = sizeof shapes / sizeof shapes[0], VOCAB = 4096 };

typedef struct tensor_desc {
    char name[96];
    int64_t rows, cols; /* cols 0: a vector of `rows` */
    int kind;           /* 0 matrix, 1 norm (ones), 2 bias */
} tensor_desc;

static uint64_t rng_state;
static inline uint64_t next_u64(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
/* uniform in [-a, a): std a / sqrt(3) */
static inline float uniform(float a) { return a * (float)((int64_t)(next_u64() >> 11) * 0x1p-52 - 1.0); }

static int n_tensors_of(const shape *s) { return 3 - s->tied + s->layers * (9 + 3 * s->qkv_bias); }

static int describe(const shape *s, tensor_desc *t) {
    int n = 0;
#define ADD(nm, r, c, k) (snprintf(t[n].name, sizeof t[n].name, "%s", nm), t[n].rows = (r), t[n].cols = (c), t[n].kind = (k), n++)
    char nm[96];
    const int64_t D = s->hidden, F = s->ffn, QD = (int64_t)s->heads * s->head_dim,
                  KD = (int64_t)s->kv_heads * s->head_dim;
    ADD("model.embed_tokens.weight", VOCAB, D, 0);
    for (int l = 0; l < s->layers; l++) {
#define L(sfx, r, c, k) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, sfx), ADD(nm, r, c, k))
        L("input_layernorm.weight", D, 0, 1);
        L("self_attn.q_proj.weight", QD, D, 0);
        L("self_attn.k_proj.weight", KD, D, 0);
        L("self_attn.v_proj.weight", KD, D, 0);
        if (s->qkv_bias) {
            L("self_attn.q_proj.bias", QD, 0, 2);
            L("self_attn.k_proj.bias", KD, 0, 2);
            L("self_attn.v_proj.bias", KD, 0, 2);
        }
        L("self_attn.o_proj.weight", D, QD, 0);
        L("post_attention_layernorm.weight", D, 0, 1);
        L("mlp.gate_proj.weight", F, D, 0);
        L("mlp.up_proj.weight", F, D, 0);
        L("mlp.down_proj.weight", D, F, 0);
#undef L
    }
    ADD("model.norm.weight", D, 0, 1);
    if (!s->tied) ADD("lm_head.weight", VOCAB, D, 0);
#undef ADD
    return n;
}

static int64_t elems(const tensor_desc *t) { return t->cols ? t->rows * t->cols : t->rows; }

static int write_config(const char *dir, const shape *s, const char *dtype) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f,
            "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
            "  \"hidden_act\": \"silu\",\n  \"attention_bias\": %s,\n  \"mlp_bias\": false,\n"
            "  \"bos_token_id\": 0,\n  \"eos_token_id\": 1,\n  \"torch_dtype\": \"%s\",\n"
            "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
            "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
            "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n"
            "  \"max_position_embeddings\": 32768,\n  \"rope_theta\": %.1f,\n"
            "  \"rms_norm_eps\": 1e-05,\n  \"tie_word_embeddings\": %s,\n"
            "  \"sqz_note\": \"random weights of the %s shape, made by bench/gen_model\"\n}\n",
            s->arch, s->model_type, s->qkv_bias ? "true" : "false",
            !strcmp(dtype, "bf16") ? "bfloat16" : "float16", VOCAB, s->hidden, s->ffn, s->layers,
            s->heads, s->kv_heads, s->head_dim, s->rope_theta, s->tied ? "true" : "false", s->name);
    return fclose(f);
}

static int copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) return -1;
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = -1;
    fclose(in);
    return fclose(out) || rc;
}

static int write_weights(const char *dir, const shape *s, int bf16) {
    const int nt = n_tensors_of(s);
    tensor_desc *t = calloc((size_t)nt, sizeof *t);
    if (!t || describe(s, t) != nt) return -1;
    /* header: {"name":{"dtype":"F16","shape":[r,c],"data_offsets":[a,b]},...} padded to 8 */
    size_t cap = (size_t)nt * 160 + 64, len = 0;
    char *hdr = malloc(cap);
    if (!hdr) return -1;
    uint64_t off = 0;
    len += (size_t)snprintf(hdr + len, cap - len, "{");
    for (int i = 0; i < nt; i++) {
        const uint64_t bytes = (uint64_t)elems(&t[i]) * 2;
        if (t[i].cols)
            len += (size_t)snprintf(hdr + len, cap - len,
                                    "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                    i ? "," : "", t[i].name, bf16 ? "BF16" : "F16", (long long)t[i].rows,
                                    (long long)t[i].cols, (unsigned long long)off, (unsigned long long)(off + bytes));
        else
            len += (size_t)snprintf(hdr + len, cap - len,
                                    "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
                                    i ? "," : "", t[i].name, bf16 ? "BF16" : "F16", (long long)t[i].rows,
                                    (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8) hdr[len++] = ' ';
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const uint64_t hl = len;
    int rc = fwrite(&hl, 8, 1, f) == 1 && fwrite(hdr, 1, len, f) == len ? 0 : -1;
    enum { CHUNK = 1 << 20 };
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    if (!buf) rc = -1;
    const float a = 0.02f * 1.7320508f; /* std 0.02 */
    uint64_t done = 0;
    const int tty = isatty(2);
    for (int i = 0; i < nt && !rc; i++) {
        for (int64_t e = 0, n = elems(&t[i]); e < n && !rc;) {
            const int64_t m = n - e < CHUNK ? n - e : CHUNK;
            for (int64_t j = 0; j < m; j++) {
                const float v = t[i].kind == 1 ? 1.0f + uniform(0.05f) : t[i].kind == 2 ? uniform(0.02f) : uniform(a);
                buf[j] = bf16 ? sqz_f32_to_bf16(v) : sqz_f32_to_f16(v);
            }
            if (fwrite(buf, 2, (size_t)m, f) != (size_t)m) rc = -1;
            e += m;
            done += (uint64_t)m * 2;
        }
        if (tty) fprintf(stderr, "\rgen_model: %5.1f%% (%.0f MB)", 100.0 * (double)done / (double)off, done / 1e6);
    }
    fprintf(stderr, "%sgen_model: wrote %s (%.0f MB)\n", tty ? "\n" : "", path, off / 1e6);
    free(buf);
    free(hdr);
    free(t);
    if (fclose(f)) rc = -1;
    return rc;
}

static void usage(void) {
    fprintf(stderr, "usage: gen_model SHAPE -o DIR [--layers N] [--dtype f16|bf16] [--seed S]\n"
                    "       gen_model --list\nshapes:");
    for (int i = 0; i < N_SHAPES; i++) fprintf(stderr, " %s", shapes[i].name);
    fprintf(stderr, "\n");
}

int main(int argc, char **argv) {
    const char *name = NULL, *dir = NULL, *dtype = "f16";
    int layers = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--list")) {
            for (int k = 0; k < N_SHAPES; k++) {
                const shape *s = &shapes[k];
                tensor_desc *t = calloc((size_t)n_tensors_of(s), sizeof *t);
                int64_t p = 0;
                for (int j = 0, n = describe(s, t); j < n; j++) p += elems(&t[j]);
                free(t);
                printf("%-16s hidden %5d ffn %5d layers %2d heads %2d/%d head_dim %3d %s %5.2f G params\n",
                       s->name, s->hidden, s->ffn, s->layers, s->heads, s->kv_heads, s->head_dim,
                       s->tied ? "tied  " : "untied", p / 1e9);
            }
            return 0;
        } else if (!strcmp(argv[i], "-o") && v) {
            dir = v, i++;
        } else if (!strcmp(argv[i], "--layers") && v) {
            layers = atoi(v), i++;
        } else if (!strcmp(argv[i], "--dtype") && v) {
            dtype = v, i++;
        } else if (!strcmp(argv[i], "--seed") && v) {
            seed = strtoull(v, NULL, 10), i++;
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    const shape *found = NULL;
    for (int i = 0; name && i < N_SHAPES; i++)
        if (!strcmp(shapes[i].name, name)) found = &shapes[i];
    if (!found || !dir || (strcmp(dtype, "f16") && strcmp(dtype, "bf16")) || layers < 0) {
        usage();
        return 2;
    }
    shape s = *found;
    if (layers) {
        if (layers > s.layers) {
            fprintf(stderr, "gen_model: %s has %d layers\n", s.name, s.layers);
            return 2;
        }
        s.layers = layers;
    }
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    if (mkdir(dir, 0755) && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    const char *shared = getenv("SQZ_SHARED") ? getenv("SQZ_SHARED") : "../shared";
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/models/sqz-llama-26m/tokenizer.json", shared);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", dir);
    if (copy_file(src, dst)) {
        fprintf(stderr, "gen_model: cannot copy %s to %s\n", src, dst);
        return 1;
    }
    if (write_config(dir, &s, dtype) || write_weights(dir, &s, !strcmp(dtype, "bf16"))) {
        fprintf(stderr, "gen_model: writing %s failed\n", dir);
        return 1;
    }
    return 0;
}
