/* kv/f16.c - KV cache policy "f16": keys and values stored as IEEE half precision (as most
 * inference engines keep their cache), [layer][kv head][pos][hd]: one head's rows are contiguous,
 * so a decode step streams them (at long contexts the cache is read from DRAM every token; rows
 * interleaved by head made every read a strided one). Attention runs on the f16 rows with the
 * kernels of kernels/attn.h (F16C conversion fused into the dot products), so no f32 copy of the
 * cache exists. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/types.h"
#include "kernels/attn.h"
#include "kv/kv.h"
#include "kv/codec.h"
#include "core/params.h"

typedef struct kv_f16 {
    sqz_kv_dense d;     /* f16 keys and values */
    sqz_kv_codec codec; /* f16 */
    sqz_kvrow_fmt fmt;  /* one head's row */
    sqz_attn_kernels kr;
} kv_f16;

static void destroy(void *state) {
    kv_f16 *c = state;
    if (!c) return;
    sqz_kv_dense_free(&c->d);
    free(c);
}

static sqz_status create(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         const sqz_kv_codec *codec, void **state) {
    sqz_status st = sqz_params_parse(ctx, "KV policy", "f16", params, NULL, 0, NULL, 0);
    if (st) return st;
    kv_f16 *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    const int ok = sqz_kv_dense_alloc(&c->d, shape, sizeof(uint16_t));
    c->codec = (sqz_kv_codec){ SQZ_KVROW_F16, shape->head_dim, 0, 0 };
    c->fmt = (sqz_kvrow_fmt){ SQZ_KVROW_F16, shape->head_dim, shape->head_dim };
    c->kr = sqz_attn_kernels_best();
    return sqz_kv_create_end(ctx, shape, ok, c, destroy, state);
}

static void reset(void *state) { ((kv_f16 *)state)->d.n_pos = 0; }

/* Position pos's keys and values of KV heads [g0, g1) (k, v: the whole row [Hkv*hd]). */
static void store_heads(kv_f16 *c, int layer, int pos, const float *k, const float *v, int g0,
                        int g1) {
    const size_t hd = (size_t)c->d.shape.head_dim, head = (size_t)c->d.shape.max_pos * hd;
    uint16_t *K = c->d.k, *V = c->d.v;
    for (int g = g0; g < g1; g++) {
        const size_t o = (size_t)layer * c->d.layer_elems + (size_t)g * head + (size_t)pos * hd;
        for (size_t i = 0; i < hd; i++) {
            K[o + i] = sqz_f32_to_f16(k[(size_t)g * hd + i]);
            V[o + i] = sqz_f32_to_f16(v[(size_t)g * hd + i]);
        }
    }
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    kv_f16 *c = state;
    const size_t row = (size_t)c->d.shape.n_kv_heads * (size_t)c->d.shape.head_dim;
    for (int t = 0; t < n; t++)
        store_heads(c, layer, pos + t, k + (size_t)t * row, v + (size_t)t * row, 0,
                    c->d.shape.n_kv_heads);
    if (pos + n > c->d.n_pos) c->d.n_pos = pos + n;
    return SQZ_OK;
}

/* KV head g's query heads for the n queries at positions pos..: its rows are read together
 * (each row converted once for all of them), the queries in order with g's scratch. */
static void attend_group(kv_f16 *c, int layer, int pos, int n, const float *q, float *out, int g) {
    const int Hq = c->d.shape.n_heads, Hkv = c->d.shape.n_kv_heads, hd = c->d.shape.head_dim;
    const int group = Hq / Hkv;
    const size_t head = (size_t)layer * c->d.layer_elems + (size_t)g * c->d.shape.max_pos * hd;
    const uint16_t *K = (const uint16_t *)c->d.k + head, *V = (const uint16_t *)c->d.v + head;
    const float scale = 1.0f / sqrtf((float)hd);
    float *s = c->d.scratch + (size_t)g * group * c->d.shape.max_pos;
    for (int t = 0; t < n; t++) {
        const size_t qo = (size_t)t * Hq * hd + (size_t)g * group * hd;
        sqz_kv_attend_rows(&c->kr, &c->codec, &c->fmt, group, q + qo, K, V, (size_t)hd * sizeof(uint16_t),
                           pos + t + 1, scale, s, out + qo);
    }
}

/* One work item per KV head. */
static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    kv_f16 *c = state;
    const int Hkv = c->d.shape.n_kv_heads;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1 && Hkv > 1)
    for (int g = 0; g < Hkv; g++) attend_group(c, layer, pos, n, q, out, g);
}

/* One decode step for KV heads [g0, g1) (kv.h). */
static sqz_status store_attend_heads(void *state, int layer, int pos, const float *k,
                                     const float *v, const float *q, float *out, int g0, int g1) {
    kv_f16 *c = state;
    store_heads(c, layer, pos, k, v, g0, g1);
    if (g0 == 0 && pos + 1 > c->d.n_pos) c->d.n_pos = pos + 1;
    for (int g = g0; g < g1; g++) attend_group(c, layer, pos, 1, q, out, g);
    return SQZ_OK;
}

static size_t bytes(const void *state) { return sqz_kv_dense_bytes(&((const kv_f16 *)state)->d); }

const sqz_kv_policy sqz_kv_policy_f16 = {
    .name = "f16",
    .help = "keys and values as f16 (attention on the f16 rows)",
    .create = create,
    .destroy = destroy,
    .reset = reset,
    .store = store,
    .attend = attend,
    .store_attend_heads = store_attend_heads,
    .bytes = bytes,
};
