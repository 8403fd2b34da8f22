/* kv/f32.c - the uncompressed KV policy: keys and values as f32, [layer][pos][Hkv*hd]. The
 * reference every compressed policy is measured against. */
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"

typedef struct kv_f32 {
    sqz_kv_shape shape;
    size_t layer_floats; /* max_pos * Hkv * hd */
    float *k, *v;        /* [L][max_pos][Hkv*hd] */
    float *scratch;      /* [Hkv][group * max_pos] decode's attention probabilities, per KV head */
    int n_pos;           /* highest position stored + 1 */
} kv_f32;

static void destroy(void *state) {
    kv_f32 *c = state;
    if (!c) return;
    free(c->k);
    free(c->v);
    free(c->scratch);
    free(c);
}

static sqz_status create(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         const sqz_kv_codec *codec, void **state) {
    if (params && *params)
        return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy f32 takes no parameters (got '%s')", params);
    kv_f32 *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->shape = *shape;
    c->layer_floats = (size_t)shape->max_pos * (size_t)shape->n_kv_heads * (size_t)shape->head_dim;
    size_t total = c->layer_floats * (size_t)shape->n_layers;
    c->k = malloc(total * sizeof(float));
    c->v = malloc(total * sizeof(float));
    c->scratch = malloc((size_t)shape->n_heads * (size_t)shape->max_pos * sizeof(float));
    return sqz_kv_create_end(ctx, shape, c->k && c->v && c->scratch, c, destroy, state);
}

static void reset(void *state) { ((kv_f32 *)state)->n_pos = 0; }

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    kv_f32 *c = state;
    const size_t row = (size_t)c->shape.n_kv_heads * (size_t)c->shape.head_dim;
    float *kd = c->k + (size_t)layer * c->layer_floats + (size_t)pos * row;
    float *vd = c->v + (size_t)layer * c->layer_floats + (size_t)pos * row;
    memcpy(kd, k, (size_t)n * row * sizeof(float));
    memcpy(vd, v, (size_t)n * row * sizeof(float));
    if (pos + n > c->n_pos) c->n_pos = pos + n;
    return SQZ_OK;
}

static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    kv_f32 *c = state;
    const int ld = c->shape.n_kv_heads * c->shape.head_dim;
    sqz_attention_f32(c->k + (size_t)layer * c->layer_floats,
                      c->v + (size_t)layer * c->layer_floats, ld, &c->shape, pos, n, q, out,
                      n_threads);
}

/* One decode step for KV heads [g0, g1) (kv.h): their slices of the new row, then attention of
 * their query heads, each KV head with its own slice of the scratch. */
static sqz_status store_attend_heads(void *state, int layer, int pos, const float *k,
                                     const float *v, const float *q, float *out, int g0, int g1) {
    kv_f32 *c = state;
    const int hd = c->shape.head_dim, ld = c->shape.n_kv_heads * hd;
    const int group = c->shape.n_heads / c->shape.n_kv_heads;
    float *K = c->k + (size_t)layer * c->layer_floats, *V = c->v + (size_t)layer * c->layer_floats;
    const size_t o = (size_t)pos * ld + (size_t)g0 * hd, len = (size_t)(g1 - g0) * hd;
    memcpy(K + o, k + (size_t)g0 * hd, len * sizeof(float));
    memcpy(V + o, v + (size_t)g0 * hd, len * sizeof(float));
    if (g0 == 0 && pos + 1 > c->n_pos) c->n_pos = pos + 1;
    for (int g = g0; g < g1; g++)
        sqz_attention_f32_group(K, V, ld, &c->shape, pos, q, out, g,
                                c->scratch + (size_t)g * group * c->shape.max_pos);
    return SQZ_OK;
}

static size_t bytes(const void *state) {
    const kv_f32 *c = state;
    return 2 * (size_t)c->n_pos * (size_t)c->shape.n_layers * (size_t)c->shape.n_kv_heads *
           (size_t)c->shape.head_dim * sizeof(float);
}

const sqz_kv_policy sqz_kv_policy_f32 = {
    .name = "f32",
    .help = "uncompressed f32 keys and values (the reference)",
    .create = create,
    .destroy = destroy,
    .reset = reset,
    .store = store,
    .attend = attend,
    .store_attend_heads = store_attend_heads,
    .bytes = bytes,
};
