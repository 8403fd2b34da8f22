/* test_arch.c - Qwen2 (Q/K/V biases), Mistral and untied Llama checkpoints against a naive
 * double-precision forward pass written here from the architecture's definition. The model is
 * tiny and random, written as a Hugging Face folder (config.json + F32 safetensors), so the
 * whole path - config parsing, tensor names, biases, GQA, HF RoPE pairing, untied output - is
 * checked against arithmetic that shares no code with the library. */
#include <stdint.h>

#include "sqz.h"
#include "test.h"

enum { D = 32, F = 48, L = 2, HQ = 4, HKV = 2, HD = 8, V = 50, NTOK = 6 };

typedef struct tensor_spec {
    char name[96];
    int rows, cols; /* rows = 0: vector */
    float *data;
} tensor_spec;

static uint64_t rng = 12345;
static float frand(void) { return 0.5f * test_frand(&rng); } /* [-0.5, 0.5) */

typedef struct model_w {
    tensor_spec t[64];
    int n;
} model_w;

static float *add(model_w *m, const char *name, int rows, int cols, float scale, float offset) {
    tensor_spec *s = &m->t[m->n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->rows = rows;
    s->cols = cols;
    int n = (rows ? rows : 1) * cols;
    s->data = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) s->data[i] = offset + scale * frand();
    return s->data;
}

static const float *get(const model_w *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return m->t[i].data;
    return NULL;
}

static void build(model_w *m, int bias, int untied) {
    char n[96];
    add(m, "model.embed_tokens.weight", V, D, 1.0f, 0);
    add(m, "model.norm.weight", 0, D, 0.2f, 1.0f);
    if (untied) add(m, "lm_head.weight", V, D, 0.5f, 0);
    for (int l = 0; l < L; l++) {
#define T(suffix, r, c, sc, off) (snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), add(m, n, r, c, sc, off))
        T("input_layernorm.weight", 0, D, 0.2f, 1.0f);
        T("self_attn.q_proj.weight", HQ * HD, D, 0.6f, 0);
        T("self_attn.k_proj.weight", HKV * HD, D, 0.6f, 0);
        T("self_attn.v_proj.weight", HKV * HD, D, 0.6f, 0);
        T("self_attn.o_proj.weight", D, HQ * HD, 0.6f, 0);
        if (bias) {
            T("self_attn.q_proj.bias", 0, HQ * HD, 1.0f, 0);
            T("self_attn.k_proj.bias", 0, HKV * HD, 1.0f, 0);
            T("self_attn.v_proj.bias", 0, HKV * HD, 1.0f, 0);
        }
        T("post_attention_layernorm.weight", 0, D, 0.2f, 1.0f);
        T("mlp.gate_proj.weight", F, D, 0.6f, 0);
        T("mlp.up_proj.weight", F, D, 0.6f, 0);
        T("mlp.down_proj.weight", D, F, 0.6f, 0);
#undef T
    }
}

static int write_folder(const char *dir, const model_w *m, const char *arch, int untied) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    if (!f) return 0;
    fprintf(f, "{\"architectures\": [\"%s\"], \"hidden_size\": %d, \"intermediate_size\": %d,"
               " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d,"
               " \"vocab_size\": %d, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0,"
               " \"max_position_embeddings\": 64, \"tie_word_embeddings\": %s, \"hidden_act\": \"silu\"}",
            arch, D, F, L, HQ, HKV, V, untied ? "false" : "true");
    fclose(f);
    /* safetensors: header JSON, then the tensors in order */
    char *hdr = malloc(1 << 16);
    size_t hl = 0, off = 0;
    hl += (size_t)sprintf(hdr + hl, "{");
    for (int i = 0; i < m->n; i++) {
        const tensor_spec *s = &m->t[i];
        size_t bytes = sizeof(float) * (size_t)(s->rows ? s->rows : 1) * s->cols;
        if (s->rows)
            hl += (size_t)sprintf(hdr + hl, "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [%d, %d], \"data_offsets\": [%zu, %zu]}",
                                  i ? ", " : "", s->name, s->rows, s->cols, off, off + bytes);
        else
            hl += (size_t)sprintf(hdr + hl, "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [%d], \"data_offsets\": [%zu, %zu]}",
                                  i ? ", " : "", s->name, s->cols, off, off + bytes);
        off += bytes;
    }
    hl += (size_t)sprintf(hdr + hl, "}");
    while (hl % 8) hdr[hl++] = ' ';
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    f = fopen(p, "wb");
    uint64_t n = hl;
    fwrite(&n, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    for (int i = 0; i < m->n; i++)
        fwrite(m->t[i].data, sizeof(float), (size_t)(m->t[i].rows ? m->t[i].rows : 1) * m->t[i].cols, f);
    fclose(f);
    free(hdr);
    return 1;
}

/* ---- the naive reference: straight from the definitions, in double */

static void matvec(const float *w, const double *x, int rows, int cols, double *y, const float *b) {
    for (int r = 0; r < rows; r++) {
        double s = b ? b[r] : 0;
        for (int c = 0; c < cols; c++) s += (double)w[r * cols + c] * x[c];
        y[r] = s;
    }
}

static void rmsnorm(const double *x, const float *w, double *y) {
    double ss = 0;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / D + 1e-6);
    for (int i = 0; i < D; i++) y[i] = x[i] * s * w[i];
}

/* HF "rotate half": dimension i pairs with i + HD/2 */
static void rope(double *v, int pos) {
    for (int i = 0; i < HD / 2; i++) {
        double a = pos * pow(10000.0, -2.0 * i / HD);
        double x0 = v[i], x1 = v[i + HD / 2];
        v[i] = x0 * cos(a) - x1 * sin(a);
        v[i + HD / 2] = x1 * cos(a) + x0 * sin(a);
    }
}

static void reference(const model_w *m, const int32_t *tok, int untied, double *logits /* [NTOK][V] */) {
    static double K[L][NTOK][HKV * HD], Vv[L][NTOK][HKV * HD];
    char n[96];
    for (int t = 0; t < NTOK; t++) {
        double x[D], xb[D], q[HQ * HD], att[HQ * HD], o[D], g[F], u[F];
        for (int i = 0; i < D; i++) x[i] = get(m, "model.embed_tokens.weight")[tok[t] * D + i];
        for (int l = 0; l < L; l++) {
#define W(suffix) (snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), get(m, n))
            rmsnorm(x, W("input_layernorm.weight"), xb);
            matvec(W("self_attn.q_proj.weight"), xb, HQ * HD, D, q, W("self_attn.q_proj.bias"));
            matvec(W("self_attn.k_proj.weight"), xb, HKV * HD, D, K[l][t], W("self_attn.k_proj.bias"));
            matvec(W("self_attn.v_proj.weight"), xb, HKV * HD, D, Vv[l][t], W("self_attn.v_proj.bias"));
            for (int h = 0; h < HQ; h++) rope(q + h * HD, t);
            for (int h = 0; h < HKV; h++) rope(K[l][t] + h * HD, t);
            for (int h = 0; h < HQ; h++) {
                const int g = h / (HQ / HKV);
                double s[NTOK], mx = -1e300, sum = 0;
                for (int p = 0; p <= t; p++) {
                    s[p] = 0;
                    for (int i = 0; i < HD; i++) s[p] += q[h * HD + i] * K[l][p][g * HD + i];
                    s[p] /= sqrt((double)HD);
                    if (s[p] > mx) mx = s[p];
                }
                for (int p = 0; p <= t; p++) sum += (s[p] = exp(s[p] - mx));
                for (int i = 0; i < HD; i++) {
                    double a = 0;
                    for (int p = 0; p <= t; p++) a += s[p] / sum * Vv[l][p][g * HD + i];
                    att[h * HD + i] = a;
                }
            }
            matvec(W("self_attn.o_proj.weight"), att, D, HQ * HD, o, NULL);
            for (int i = 0; i < D; i++) x[i] += o[i];
            rmsnorm(x, W("post_attention_layernorm.weight"), xb);
            matvec(W("mlp.gate_proj.weight"), xb, F, D, g, NULL);
            matvec(W("mlp.up_proj.weight"), xb, F, D, u, NULL);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            matvec(W("mlp.down_proj.weight"), g, D, F, o, NULL);
            for (int i = 0; i < D; i++) x[i] += o[i];
#undef W
        }
        rmsnorm(x, get(m, "model.norm.weight"), xb);
        matvec(untied ? get(m, "lm_head.weight") : get(m, "model.embed_tokens.weight"), xb, V, D,
               logits + t * V, NULL);
    }
}

static void check_arch(sqz_ctx *ctx, const char *arch, int bias, int untied, int threads) {
    model_w m = { .n = 0 };
    build(&m, bias, untied);
    char dir[] = "/tmp/sqz-test-arch-XXXXXX";
    if (!mkdtemp(dir) || !write_folder(dir, &m, arch, untied)) { CHECK(0, "write %s folder", arch); return; }
    sqz_model *model;
    sqz_status st = sqz_model_load(ctx, dir, NULL, &model);
    CHECK(st == SQZ_OK, "%s (bias %d, untied %d) loads: %s", arch, bias, untied, sqz_ctx_error(ctx));
    if (st == SQZ_OK) {
        sqz_model_info info;
        sqz_model_get_info(model, &info);
        CHECK(info.has_qkv_bias == bias && info.tied_embeddings == !untied && info.rope_interleaved == 0,
              "%s: info reports bias %d, tied %d, HF rope pairing", arch, info.has_qkv_bias, info.tied_embeddings);
        const int32_t tok[NTOK] = { 3, 17, 42, 0, 49, 17 };
        double ref[NTOK * V];
        reference(&m, tok, untied, ref);
        float got[NTOK * V];
        sqz_ctx_set_threads(ctx, threads);
        sqz_session *s;
        sqz_session_new(ctx, model, 16, &s);
        sqz_session_eval(s, tok, NTOK, got, 1); /* batched */
        double err = 0, mag = 0;
        for (int i = 0; i < NTOK * V; i++) {
            err = fmax(err, fabs(got[i] - ref[i]));
            mag = fmax(mag, fabs(ref[i]));
        }
        CHECK(err < 1e-4 * (1 + mag), "%s batched logits vs naive double reference (%d threads): max err %.2e (|logit| <= %.1f)",
              arch, threads, err, mag);
        sqz_session_reset(s);
        err = 0;
        for (int t = 0; t < NTOK; t++) { /* token by token */
            sqz_session_eval(s, &tok[t], 1, got, 0);
            for (int i = 0; i < V; i++) err = fmax(err, fabs(got[i] - ref[t * V + i]));
        }
        CHECK(err < 1e-4 * (1 + mag), "%s decode logits vs naive reference (%d threads): max err %.2e", arch, threads, err);
        sqz_session_free(s);
        sqz_model_free(model);
    }
    for (int i = 0; i < m.n; i++) free(m.t[i].data);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) CHECK(0, "cleanup %s", dir);
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    for (int threads = 1; threads <= 2; threads++) {
        check_arch(ctx, "Qwen2ForCausalLM", 1, 0, threads);
        check_arch(ctx, "Qwen2ForCausalLM", 1, 1, threads);
        check_arch(ctx, "MistralForCausalLM", 0, 1, threads);
        check_arch(ctx, "LlamaForCausalLM", 0, 0, threads);
    }
    sqz_ctx_free(ctx);
    return test_done();
}
