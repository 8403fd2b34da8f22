/* kv.h - the KV cache, behind a small interface so that compressed policies (quantized,
 * merged across layers, projected...) plug in as rows of a table without touching the forward
 * pass. A policy both stores keys/values and computes attention over what it stored, so a
 * compressed policy can attend on its compressed form.
 *
 * Glossary: L layers, P positions held, Hq query heads, Hkv key/value heads, hd head_dim.
 * Keys arrive after RoPE. Query head h reads KV head h / (Hq / Hkv) (GQA).
 */
#ifndef SQZ_KV_KV_H
#define SQZ_KV_KV_H

#include <stddef.h>

#include "core/ctx.h"
#include "kv/codec.h"

typedef struct sqz_kv_shape {
    int n_layers;
    int n_heads;    /* query heads */
    int n_kv_heads;
    int head_dim;
    int max_pos;    /* positions the cache must be able to hold */
    int rope_interleaved; /* the keys' RoPE pairs: 1 (2i, 2i+1), 0 (i, i + head_dim/2) */
} sqz_kv_shape;

typedef struct sqz_kv_policy {
    const char *name;
    const char *help;
    /* params: the text after "name:" (may be NULL). codec: the storage codec of the rows the
     * policy keeps (f16 unless the spec composes another with '+'); NULL for the policies that
     * are a storage format themselves (takes_codec = 0). */
    sqz_status (*create)(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         const sqz_kv_codec *codec, void **state);
    void (*destroy)(void *state);
    void (*reset)(void *state);
    /* Stores n positions pos..pos+n-1 of layer: k, v are [n][Hkv*hd]. */
    sqz_status (*store)(void *state, int layer, int pos, int n, const float *k, const float *v);
    /* out[t][Hq*hd] = softmax(q[t] . K^T / sqrt(hd)) . V over positions 0..pos+t (causal), for
     * the n queries q[t][Hq*hd] at positions pos..pos+n-1, already stored. */
    void (*attend)(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads);
    /* Optional (NULL: decode calls store, then attend, between two parallel regions): one
     * decode step from inside the caller's thread team, so a token needs one parallel region.
     * Stores position pos's keys and values k, v [Hkv*hd] of KV heads [g0, g1) and writes out
     * [Hq*hd] for their query heads, over positions 0..pos. The team's threads call it at once
     * with disjoint, non-empty ranges that together cover every KV head: it may touch only
     * those heads' rows and scratch, and shared counters only from the call with g0 == 0. */
    sqz_status (*store_attend_heads)(void *state, int layer, int pos, const float *k,
                                     const float *v, const float *q, float *out, int g0, int g1);
    /* Bytes the cache holds now (data, scales, indices - what it really allocated for them). */
    size_t (*bytes)(const void *state);
    int takes_codec; /* "name+codec" composes */
} sqz_kv_policy;

typedef struct sqz_kv {
    const sqz_kv_policy *policy;
    void *state;
    sqz_kv_shape shape;
} sqz_kv;

/* spec: "name", "name:key=value,..." or, for a policy that takes a storage codec,
 * "name[:...]+codec[:...]"; NULL = "f32". */
sqz_status sqz_kv_new(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *spec, sqz_kv **out);
void sqz_kv_free(sqz_kv *kv);

/* The storage of the dense policies (f32, f16): keys and values [L][max_pos][Hkv*hd] of elem
 * bytes each, and per KV head a scratch [group * max_pos] of attention probabilities. */
typedef struct sqz_kv_dense {
    sqz_kv_shape shape;
    size_t elem;        /* bytes of one stored value */
    size_t layer_elems; /* max_pos * Hkv * hd */
    void *k, *v;
    float *scratch;
    int n_pos; /* highest position stored + 1 */
} sqz_kv_dense;

/* Sets d up for shape: 1 when every buffer was allocated, else 0 (sqz_kv_dense_free frees what
 * was). */
int sqz_kv_dense_alloc(sqz_kv_dense *d, const sqz_kv_shape *shape, size_t elem);
void sqz_kv_dense_free(sqz_kv_dense *d);
/* Bytes held: the keys and values of the positions stored. */
size_t sqz_kv_dense_bytes(const sqz_kv_dense *d);

/* The end of a policy's create: *state = c where ok (every allocation succeeded); else c
 * destroyed (destroy frees what was allocated) and SQZ_ERR_NOMEM naming the cache's length. */
sqz_status sqz_kv_create_end(sqz_ctx *ctx, const sqz_kv_shape *shape, int ok, void *c,
                             void (*destroy)(void *), void **state);

/* The table of policies, NULL-terminated. */
const sqz_kv_policy *const *sqz_kv_policies(void);

/* Exact attention over f32 keys/values laid out [P][Hkv*hd] with row stride ld floats: the
 * shared kernel of the f32 policy and the reference for compressed ones. */
void sqz_attention_f32(const float *keys, const float *values, int ld, const sqz_kv_shape *shape,
                       int pos, int n, const float *q, float *out, int n_threads);

/* The same for one query q[Hq*hd] at position pos (seeing positions 0..pos) and the query heads
 * of KV head g alone: out's rows of those heads. s: scratch of group * (pos + 1) floats. */
void sqz_attention_f32_group(const float *keys, const float *values, int ld,
                             const sqz_kv_shape *shape, int pos, const float *q, float *out, int g,
                             float *s);

#endif
