/* kv_f16.c - KV cache policy "f16": keys and values stored as IEEE half precision (as most
 * inference engines keep their cache), [layer][pos][Hkv*hd]. Attention converts each key and
 * value row to f32 on the fly (F16C when the CPU has it), so no f32 copy of the cache exists. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/types.h"
#include "kernels/ops.h"
#include "model/kv.h"
#include "model/kv_params.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_F16C_PATH 1
__attribute__((target("avx,f16c"))) static void cvt_f16c(const uint16_t *src, float *dst, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = sqz_f16_to_f32(src[i]);
}
#endif

static void cvt_ref(const uint16_t *src, float *dst, int n) {
    for (int i = 0; i < n; i++) dst[i] = sqz_f16_to_f32(src[i]);
}

typedef void (*cvt_fn)(const uint16_t *, float *, int);

typedef struct kv_f16 {
    sqz_kv_shape shape;
    size_t layer_elems; /* max_pos * Hkv * hd */
    uint16_t *k, *v;    /* [L][max_pos][Hkv*hd] */
    int n_pos;
    cvt_fn cvt;
} kv_f16;

static sqz_status create(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                         void **state) {
    sqz_status st = sqz_kv_parse_params(ctx, "f16", params, NULL, 0);
    if (st) return st;
    kv_f16 *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->shape = *shape;
    c->layer_elems = (size_t)shape->max_pos * (size_t)shape->n_kv_heads * (size_t)shape->head_dim;
    size_t total = c->layer_elems * (size_t)shape->n_layers;
    c->k = malloc(total * sizeof(uint16_t));
    c->v = malloc(total * sizeof(uint16_t));
    if (!c->k || !c->v) {
        free(c->k);
        free(c->v);
        free(c);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for a KV cache of %d positions",
                        shape->max_pos);
    }
    c->cvt = cvt_ref;
#ifdef HAVE_F16C_PATH
    if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx")) c->cvt = cvt_f16c;
#endif
    *state = c;
    return SQZ_OK;
}

static void destroy(void *state) {
    kv_f16 *c = state;
    if (!c) return;
    free(c->k);
    free(c->v);
    free(c);
}

static void reset(void *state) { ((kv_f16 *)state)->n_pos = 0; }

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    kv_f16 *c = state;
    const size_t row = (size_t)c->shape.n_kv_heads * (size_t)c->shape.head_dim;
    uint16_t *kd = c->k + (size_t)layer * c->layer_elems + (size_t)pos * row;
    uint16_t *vd = c->v + (size_t)layer * c->layer_elems + (size_t)pos * row;
    for (size_t i = 0; i < (size_t)n * row; i++) {
        kd[i] = sqz_f32_to_f16(k[i]);
        vd[i] = sqz_f32_to_f16(v[i]);
    }
    if (pos + n > c->n_pos) c->n_pos = pos + n;
    return SQZ_OK;
}

static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    const kv_f16 *c = state;
    const int Hq = c->shape.n_heads, hd = c->shape.head_dim, group = Hq / c->shape.n_kv_heads;
    const int row = c->shape.n_kv_heads * hd;
    const uint16_t *K = c->k + (size_t)layer * c->layer_elems;
    const uint16_t *V = c->v + (size_t)layer * c->layer_elems;
    const float scale = 1.0f / sqrtf((float)hd);
    const int work = n * Hq;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1 && work > 1)
    {
        float *s = malloc((size_t)(pos + n) * sizeof(float));
        float *x = malloc((size_t)hd * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int w = 0; w < work; w++) {
            const int t = w / Hq, h = w % Hq, g = h / group, P = pos + t + 1;
            const float *qh = q + (size_t)t * Hq * hd + (size_t)h * hd;
            for (int p = 0; p < P; p++) {
                c->cvt(K + (size_t)p * row + (size_t)g * hd, x, hd);
                float d = 0;
                for (int i = 0; i < hd; i++) d += qh[i] * x[i];
                s[p] = d * scale;
            }
            sqz_softmax(s, P);
            float *o = out + (size_t)t * Hq * hd + (size_t)h * hd;
            memset(o, 0, (size_t)hd * sizeof(float));
            for (int p = 0; p < P; p++) {
                c->cvt(V + (size_t)p * row + (size_t)g * hd, x, hd);
                const float wp = s[p];
                for (int i = 0; i < hd; i++) o[i] += wp * x[i];
            }
        }
        free(s);
        free(x);
    }
}

static size_t bytes(const void *state) {
    const kv_f16 *c = state;
    return 2 * (size_t)c->n_pos * (size_t)c->shape.n_layers * (size_t)c->shape.n_kv_heads *
           (size_t)c->shape.head_dim * sizeof(uint16_t);
}

const sqz_kv_policy sqz_kv_policy_f16 = {
    .name = "f16",
    .help = "keys and values as f16 (converted on the fly in attention)",
    .create = create,
    .destroy = destroy,
    .reset = reset,
    .store = store,
    .attend = attend,
    .bytes = bytes,
};
