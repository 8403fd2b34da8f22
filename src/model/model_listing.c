/* model_listing.c - what `sqz info` lists: the weight tensors under GGUF's names, whatever the
 * source format, and the source file's metadata (GGUF). */
#include <stdio.h>
#include <string.h>

#include "io/gguf.h"
#include "model/model.h"

/* Per layer, in the order llama.cpp's files list them. */
static const struct { const char *name; size_t offset; } layer_fields[] = {
    { "attn_norm.weight", offsetof(sqz_layer_weights, attn_norm) },
    { "attn_q.weight", offsetof(sqz_layer_weights, wq) },
    { "attn_q.bias", offsetof(sqz_layer_weights, bq) },
    { "attn_k.weight", offsetof(sqz_layer_weights, wk) },
    { "attn_k.bias", offsetof(sqz_layer_weights, bk) },
    { "attn_v.weight", offsetof(sqz_layer_weights, wv) },
    { "attn_v.bias", offsetof(sqz_layer_weights, bv) },
    { "attn_output.weight", offsetof(sqz_layer_weights, wo) },
    { "attn_output.bias", offsetof(sqz_layer_weights, bo) },
    { "ffn_norm.weight", offsetof(sqz_layer_weights, ffn_norm) },
    { "ffn_gate.weight", offsetof(sqz_layer_weights, w_gate) },
    { "ffn_up.weight", offsetof(sqz_layer_weights, w_up) },
    { "ffn_down.weight", offsetof(sqz_layer_weights, w_down) },
};
enum { N_LAYER_FIELDS = sizeof layer_fields / sizeof *layer_fields };

/* The i-th present tensor: walks token_embd, the layers, output_norm, output (untied). */
static const sqz_tensor *nth(const sqz_model *m, size_t i, char *name, size_t cap) {
    size_t k = 0;
#define VISIT(t, ...)                                                                              \
    do {                                                                                           \
        if ((t)->data) {                                                                           \
            if (k == i) { snprintf(name, cap, __VA_ARGS__); return (t); }                          \
            k++;                                                                                   \
        }                                                                                          \
    } while (0)
    VISIT(&m->tok_embd, "token_embd.weight");
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int f = 0; f < N_LAYER_FIELDS; f++) {
            const sqz_tensor *t = (const sqz_tensor *)((const char *)&m->layers[l] + layer_fields[f].offset);
            VISIT(t, "blk.%d.%s", l, layer_fields[f].name);
        }
    VISIT(&m->out_norm, "output_norm.weight");
    if (!m->cfg.tied_embeddings) VISIT(&m->output, "output.weight");
#undef VISIT
    return NULL;
}

size_t sqz_model_n_tensors(const sqz_model *m) {
    char name[64];
    size_t n = 0;
    while (nth(m, n, name, sizeof name)) n++;
    return n;
}

int sqz_model_tensor(const sqz_model *m, size_t i, sqz_tensor_info *info) {
    memset(info, 0, sizeof *info);
    const sqz_tensor *t = nth(m, i, info->name, sizeof info->name);
    if (!t) return 0;
    info->type = sqz_type_name(t->type);
    info->n_dims = t->rows == 1 ? 1 : 2; /* the model's vectors (norms, biases) are its 1-row tensors */
    info->shape[0] = t->cols;
    info->shape[1] = info->n_dims == 2 ? t->rows : 1;
    info->bytes = sqz_tensor_nbytes(t);
    return 1;
}

size_t sqz_model_n_metadata(const sqz_model *m) { return m->gguf ? sqz_gguf_n_kv(m->gguf) : 0; }

/* Appends printf-formatted text to buf (size cap) at *len, truncating. */
static void put(char *buf, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#include <stdarg.h>
static void put(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    if (*len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (w > 0) *len = *len + (size_t)w < cap ? *len + (size_t)w : cap - 1;
}

static void put_str(char *buf, size_t cap, size_t *len, const char *s, size_t n) {
    put(buf, cap, len, "\"");
    for (size_t i = 0; i < n && i < 48; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 32 || c == '"' || c == '\\') put(buf, cap, len, "\\x%02x", c);
        else put(buf, cap, len, "%c", c);
    }
    put(buf, cap, len, n > 48 ? "...\"" : "\"");
}

const char *sqz_model_metadata(const sqz_model *m, size_t i, char *value, size_t cap) {
    if (!m->gguf || i >= sqz_gguf_n_kv(m->gguf) || cap == 0) return NULL;
    const sqz_gguf *g = m->gguf;
    size_t len = 0;
    value[0] = 0;
    const int type = sqz_gguf_kv_type(g, i);
    int64_t iv;
    double fv;
    size_t sl;
    const char *s;
    if (type == SQZ_GGUF_ARRAY) {
        int et;
        uint64_t n;
        const void *data;
        sqz_gguf_kv_arr(g, i, &et, &n, &data);
        put(value, cap, &len, "[%llu x %s]", (unsigned long long)n, sqz_gguf_type_name(et));
        for (uint64_t j = 0; j < n && j < 4; j++) {
            put(value, cap, &len, " ");
            if (et == SQZ_GGUF_STRING && (s = sqz_gguf_kv_str(g, i, j, &sl))) {
                put_str(value, cap, &len, s, sl);
            } else if (sqz_gguf_type_size(et)) {
                unsigned char b[8] = { 0 };
                memcpy(b, (const char *)data + j * sqz_gguf_type_size(et), sqz_gguf_type_size(et));
                if (et == SQZ_GGUF_F32) { float f; memcpy(&f, b, 4); put(value, cap, &len, "%g", f); }
                else if (et == SQZ_GGUF_F64) { double d; memcpy(&d, b, 8); put(value, cap, &len, "%g", d); }
                else { long long v = 0; memcpy(&v, b, sqz_gguf_type_size(et)); put(value, cap, &len, "%lld", v); }
            }
        }
        if (n > 4) put(value, cap, &len, " ...");
    } else if (type == SQZ_GGUF_STRING && (s = sqz_gguf_kv_str(g, i, 0, &sl))) {
        put_str(value, cap, &len, s, sl);
    } else if (type == SQZ_GGUF_BOOL) { /* raw: u32 value type, then the one-byte value */
        size_t rl;
        const unsigned char *raw = sqz_gguf_kv_raw(g, i, &rl);
        put(value, cap, &len, "%s", raw && rl >= 5 && raw[4] ? "true" : "false");
    } else if (sqz_gguf_kv_int(g, i, &iv)) {
        put(value, cap, &len, "%lld", (long long)iv);
    } else if (sqz_gguf_kv_f64(g, i, &fv)) {
        put(value, cap, &len, "%g", fv);
    }
    return sqz_gguf_kv_key(g, i);
}
