/* kv/f32.c - the uncompressed KV policy: keys and values as f32, [layer][pos][Hkv*hd]. The
 * reference every compressed policy is measured against. */
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"

typedef struct kv_f32 {
    sqz_kv_dense d; /* f32 keys and values */
} kv_f32;

static void destroy(void *state) {
    kv_f32 *c = state;
    if (!c) return;
    sqz_kv_dense_free(&c->d);
    free(c);
}

static sqz_status create(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         const sqz_kv_codec *codec, void **state) {
    if (params && *params)
        return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy f32 takes no parameters (got '%s')", params);
    kv_f32 *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    return sqz_kv_create_end(ctx, shape, sqz_kv_dense_alloc(&c->d, shape, sizeof(float)), c,
                             destroy, state);
}

static void reset(void *state) { ((kv_f32 *)state)->d.n_pos = 0; }

/* Layer layer's keys (or values) [max_pos][Hkv*hd]. */
static float *layer_of(const kv_f32 *c, void *kv, int layer) {
    return (float *)kv + (size_t)layer * c->d.layer_elems;
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    kv_f32 *c = state;
    const size_t row = (size_t)c->d.shape.n_kv_heads * (size_t)c->d.shape.head_dim;
    float *kd = layer_of(c, c->d.k, layer) + (size_t)pos * row;
    float *vd = layer_of(c, c->d.v, layer) + (size_t)pos * row;
    memcpy(kd, k, (size_t)n * row * sizeof(float));
    memcpy(vd, v, (size_t)n * row * sizeof(float));
    if (pos + n > c->d.n_pos) c->d.n_pos = pos + n;
    return SQZ_OK;
}

static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    kv_f32 *c = state;
    const int ld = c->d.shape.n_kv_heads * c->d.shape.head_dim;
    sqz_attention_f32(layer_of(c, c->d.k, layer), layer_of(c, c->d.v, layer), ld, &c->d.shape,
                      pos, n, q, out, n_threads);
}

/* One decode step for KV heads [g0, g1) (kv.h): their slices of the new row, then attention of
 * their query heads, each KV head with its own slice of the scratch. */
static sqz_status store_attend_heads(void *state, int layer, int pos, const float *k,
                                     const float *v, const float *q, float *out, int g0, int g1) {
    kv_f32 *c = state;
    const sqz_kv_shape *sh = &c->d.shape;
    const int hd = sh->head_dim, ld = sh->n_kv_heads * hd, group = sh->n_heads / sh->n_kv_heads;
    float *K = layer_of(c, c->d.k, layer), *V = layer_of(c, c->d.v, layer);
    const size_t o = (size_t)pos * ld + (size_t)g0 * hd, len = (size_t)(g1 - g0) * hd;
    memcpy(K + o, k + (size_t)g0 * hd, len * sizeof(float));
    memcpy(V + o, v + (size_t)g0 * hd, len * sizeof(float));
    if (g0 == 0 && pos + 1 > c->d.n_pos) c->d.n_pos = pos + 1;
    for (int g = g0; g < g1; g++)
        sqz_attention_f32_group(K, V, ld, sh, pos, q, out, g,
                                c->d.scratch + (size_t)g * group * sh->max_pos);
    return SQZ_OK;
}

static size_t bytes(const void *state) { return sqz_kv_dense_bytes(&((const kv_f32 *)state)->d); }

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
