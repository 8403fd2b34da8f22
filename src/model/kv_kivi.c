/* kv_kivi.c - KV cache policies "q8", "q4", "q2": KIVI (Liu et al. 2024, "KIVI: A Tuning-Free
 * Asymmetric 2bit Quantization for KV Cache", ICML 2024).
 *
 * Keys have a few channels with large magnitudes, so they are quantized per channel: a group of
 * G consecutive tokens shares, for every channel, one scale and one minimum. Values have no such
 * outlier channels and are quantized per token, in groups of G channels. Both are asymmetric,
 * x ~= min + scale * code with code in [0, 2^bits - 1], scale and min kept as f16 as in the
 * paper's kernels. The most recent tokens stay in f32: KIVI keeps a residual of R tokens and
 * quantizes the keys a whole group of G tokens at a time, so here a group of G tokens is
 * quantized (keys and values together) when it falls entirely out of the R most recent tokens;
 * the residual thus holds between R and R+G-1 tokens. Parameters: group=G (default 32; the value
 * groups are min(G, head_dim) channels and must divide head_dim), window=R (default 64).
 *
 * Attention runs on the compressed form. For a key group, q . k_p = sum_c q_c (min_c + scale_c
 * code_pc) = (q . min) + sum_c (q_c scale_c) code_pc: q . min and q_c scale_c are computed once
 * per group and query, then each token costs one dot of the query-scaled codes. Values: each
 * weighted row p contributes w_p (min_pj + scale_pj code_pc). No dequantized copy of the cache
 * is ever made: the kernels of kernels/kivi.h (reference, AVX2, AVX-512) unpack codes in
 * registers, once for all the query heads of a KV head.
 *
 * Layout, per layer: key codes [groups][G][row bytes], key scale/min [groups][Hkv*hd] (f16);
 * value codes [pos][row bytes], value scale/min [pos][Hkv*hd/vg] (f16); residual keys and
 * values [R+G][Hkv*hd] (f32). Codes of one token row are packed along the channels, low bits
 * first.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/types.h"
#include "kernels/attn.h"
#include "kernels/kivi.h"
#include "kernels/ops.h"
#include "model/kv.h"
#include "model/kv_params.h"

typedef struct kivi_layer {
    uint8_t *kq;          /* [max_groups][G][row_bytes] */
    uint16_t *ks, *km;    /* [max_groups][row] */
    uint8_t *vq;          /* [max_pos][row_bytes] */
    uint16_t *vs, *vm;    /* [max_pos][row / vg] */
    float *rk, *rv;       /* [R+G][row]: positions nq .. n-1 */
    int n, nq;            /* positions stored; positions quantized (a multiple of G) */
} kivi_layer;

typedef struct kivi {
    sqz_ctx *ctx;
    const char *name;
    sqz_kv_shape shape;
    int bits, G, vg, R, row, row_bytes, max_groups;
    kivi_layer *layers;
    sqz_kivi_kernels kk; /* scores and value sums on the codes */
    sqz_attn_kernels kr; /* the same on the f32 residual */
} kivi;

static void destroy(void *state) {
    kivi *c = state;
    if (!c) return;
    if (c->layers)
        for (int l = 0; l < c->shape.n_layers; l++) {
            kivi_layer *L = &c->layers[l];
            free(L->kq), free(L->ks), free(L->km), free(L->vq), free(L->vs), free(L->vm);
            free(L->rk), free(L->rv);
        }
    free(c->layers);
    free(c);
}

static sqz_status create_bits(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                              void **state, int bits, const char *name) {
    int G = 32, R = 64;
    char buf[128];
    const sqz_kv_param p[] = { { "group", 'i', &G, 1, 4096 }, { "window", 'i', &R, 0, 1 << 20 } };
    sqz_status st = sqz_kv_parse_params(ctx, name, params, p, 2, buf, sizeof buf);
    if (st) return st;
    const int hd = shape->head_dim;
    const int vg = G < hd ? G : hd;
    if (hd % vg)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "KV policy %s: parameter 'group' = %d must divide head_dim %d (or exceed "
                        "it)", name, G, hd);
    if (hd > SQZ_KIVI_MAX_HD)
        return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: head_dim %d is over the %d its kernels "
                        "take", name, hd, SQZ_KIVI_MAX_HD);
    if ((hd * bits) % 8)
        return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: head_dim %d is not a whole number of bytes "
                        "at %d bits", name, hd, bits);
    kivi *c = calloc(1, sizeof *c);
    if (!c) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for the KV cache");
    c->ctx = ctx;
    c->name = name;
    c->shape = *shape;
    c->bits = bits, c->G = G, c->vg = vg, c->R = R;
    c->row = shape->n_kv_heads * hd;
    c->row_bytes = c->row * bits / 8;
    c->max_groups = shape->max_pos / G + 1;
    c->kk = sqz_kivi_kernels_get(sqz_isa_best());
    c->kr = sqz_attn_kernels_best();
    c->layers = calloc((size_t)shape->n_layers, sizeof *c->layers);
    int ok = c->layers != NULL;
    const size_t row = (size_t)c->row, rb = (size_t)c->row_bytes, mg = (size_t)c->max_groups;
    const size_t mp = (size_t)shape->max_pos, res = (size_t)(R + G);
    for (int l = 0; ok && l < shape->n_layers; l++) {
        kivi_layer *L = &c->layers[l];
        L->kq = malloc(mg * (size_t)G * rb);
        L->ks = malloc(mg * row * 2);
        L->km = malloc(mg * row * 2);
        L->vq = malloc(mp * rb);
        L->vs = malloc(mp * (row / (size_t)vg) * 2);
        L->vm = malloc(mp * (row / (size_t)vg) * 2);
        L->rk = malloc(res * row * sizeof(float));
        L->rv = malloc(res * row * sizeof(float));
        ok = L->kq && L->ks && L->km && L->vq && L->vs && L->vm && L->rk && L->rv;
    }
    if (!ok) {
        destroy(c);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for a KV cache of %d positions",
                        shape->max_pos);
    }
    *state = c;
    return SQZ_OK;
}

static sqz_status create_q8(sqz_ctx *ctx, const sqz_kv_shape *s, const char *p,
                           const sqz_kv_codec *codec, void **st) {
    return create_bits(ctx, s, p, st, 8, "q8");
}
static sqz_status create_q4(sqz_ctx *ctx, const sqz_kv_shape *s, const char *p,
                           const sqz_kv_codec *codec, void **st) {
    return create_bits(ctx, s, p, st, 4, "q4");
}
static sqz_status create_q2(sqz_ctx *ctx, const sqz_kv_shape *s, const char *p,
                           const sqz_kv_codec *codec, void **st) {
    return create_bits(ctx, s, p, st, 2, "q2");
}

static void reset(void *state) {
    kivi *c = state;
    for (int l = 0; l < c->shape.n_layers; l++) c->layers[l].n = c->layers[l].nq = 0;
}

/* Asymmetric parameters of the values x[0], x[stride], ... (n of them), rounded to f16; the
 * codes are then computed with the rounded parameters so that dequantization is consistent. */
static void qparams(const float *x, int n, size_t stride, int qmax, uint16_t *hs, uint16_t *hm,
                    float *scale, float *mn) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        float v = x[(size_t)i * stride];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *hm = sqz_f32_to_f16(lo);
    *hs = sqz_f32_to_f16((hi - lo) / (float)qmax);
    *mn = sqz_f16_to_f32(*hm);
    *scale = sqz_f16_to_f32(*hs);
}

static inline int qcode(float x, float scale, float mn, int qmax) {
    if (!(scale > 0)) return 0;
    int q = (int)lrintf((x - mn) / scale);
    return q < 0 ? 0 : q > qmax ? qmax : q;
}

static inline void put_code(uint8_t *row, int bits, int i, int code) {
    const int per = 8 / bits, sh = (i % per) * bits;
    row[i / per] = (uint8_t)((row[i / per] & ~(((1 << bits) - 1) << sh)) | (code << sh));
}

/* Quantizes the oldest G residual tokens of L (positions nq .. nq+G-1) and drops them from the
 * residual. */
static void quantize_group(kivi *c, kivi_layer *L) {
    const int G = c->G, row = c->row, rb = c->row_bytes, qmax = (1 << c->bits) - 1;
    const int gi = L->nq / G;
    uint8_t *kq = L->kq + (size_t)gi * G * rb;
    memset(kq, 0, (size_t)G * rb);
    for (int ch = 0; ch < row; ch++) {
        float scale, mn;
        qparams(L->rk + ch, G, (size_t)row, qmax, &L->ks[(size_t)gi * row + ch],
                &L->km[(size_t)gi * row + ch], &scale, &mn);
        for (int j = 0; j < G; j++)
            put_code(kq + (size_t)j * rb, c->bits, ch, qcode(L->rk[(size_t)j * row + ch], scale, mn, qmax));
    }
    const int nvg = row / c->vg;
    for (int j = 0; j < G; j++) {
        const int p = L->nq + j;
        const float *x = L->rv + (size_t)j * row;
        uint8_t *vq = L->vq + (size_t)p * rb;
        memset(vq, 0, (size_t)rb);
        for (int b = 0; b < nvg; b++) {
            float scale, mn;
            qparams(x + b * c->vg, c->vg, 1, qmax, &L->vs[(size_t)p * nvg + b],
                    &L->vm[(size_t)p * nvg + b], &scale, &mn);
            for (int i = b * c->vg; i < (b + 1) * c->vg; i++)
                put_code(vq, c->bits, i, qcode(x[i], scale, mn, qmax));
        }
    }
    const int left = L->n - L->nq - G;
    memmove(L->rk, L->rk + (size_t)G * row, (size_t)left * row * sizeof(float));
    memmove(L->rv, L->rv + (size_t)G * row, (size_t)left * row * sizeof(float));
    L->nq += G;
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    kivi *c = state;
    kivi_layer *L = &c->layers[layer];
    if (pos < L->nq)
        return sqz_fail(c->ctx, SQZ_ERR_ARG,
                        "KV policy %s: cannot overwrite position %d, already quantized", c->name,
                        pos);
    if (pos > L->n)
        return sqz_fail(c->ctx, SQZ_ERR_ARG, "KV policy %s: position %d stored before %d",
                        c->name, pos, L->n);
    L->n = pos; /* rewriting positions still in the residual simply replaces them */
    const size_t row = (size_t)c->row;
    for (int i = 0; i < n; i++) {
        memcpy(L->rk + (size_t)(L->n - L->nq) * row, k + (size_t)i * row, row * sizeof(float));
        memcpy(L->rv + (size_t)(L->n - L->nq) * row, v + (size_t)i * row, row * sizeof(float));
        L->n++;
        if (L->n - L->nq == c->R + c->G) quantize_group(c, L);
    }
    return SQZ_OK;
}

/* One work item is (query t, KV head g): the query heads of g share its keys and values, so
 * the kernels (kernels/kivi.h) unpack each code once for all of them, and each key group's
 * scales are folded into the queries once per group. */
static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    const kivi *c = state;
    const kivi_layer *L = &c->layers[layer];
    const int Hq = c->shape.n_heads, Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim;
    const int group = Hq / Hkv;
    const int row = c->row, rb = c->row_bytes, G = c->G, vg = c->vg, bits = c->bits;
    const int nvg = row / vg, hb = hd * bits / 8; /* packed bytes of one head's channels */
    const float scale = 1.0f / sqrtf((float)hd);
    const int work = n * Hkv, pmax = pos + n;
    const sqz_kivi_kernels *kk = &c->kk;
    const sqz_attn_kernels *kr = &c->kr;
    const sqz_kvrow_fmt f32row = { SQZ_KVROW_F32, hd, hd };
#pragma omp parallel num_threads(n_threads) if (n_threads > 1 && work > 1)
    {
        float *s = malloc((size_t)group * (size_t)pmax * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int w = 0; w < work; w++) {
            const int t = w / Hkv, g = w % Hkv, P = pos + t + 1;
            const int nq = L->nq < P ? L->nq : P;
            const float *q0 = q + (size_t)t * Hq * hd + (size_t)g * group * hd;
            /* scores on quantized key groups: (q . min) + (q * scale) . codes */
            for (int gi = 0; gi * G < nq; gi++) {
                const int j1 = nq - gi * G < G ? nq - gi * G : G;
                kk->kscores(bits, hd, group, q0, L->ks + (size_t)gi * row + (size_t)g * hd,
                            L->km + (size_t)gi * row + (size_t)g * hd,
                            L->kq + (size_t)gi * G * rb + (size_t)g * hb, (size_t)rb, j1, scale,
                            s + gi * G, (size_t)pmax);
            }
            /* scores on the f32 residual */
            if (P > nq)
                kr->scores(&f32row, group, q0, L->rk + (size_t)(nq - L->nq) * row + (size_t)g * hd,
                           (size_t)row * sizeof(float), P - nq, scale, s + nq, (size_t)pmax);
            float *o0 = out + (size_t)t * Hq * hd + (size_t)g * group * hd;
            for (int r = 0; r < group; r++) kr->softmax(s + (size_t)r * pmax, P);
            memset(o0, 0, (size_t)group * hd * sizeof(float));
            const int b0 = g * hd / vg;
            if (nq)
                kk->vaccum(bits, hd, vg, group, s, (size_t)pmax, L->vq + (size_t)g * hb, (size_t)rb,
                           L->vs + b0, L->vm + b0, (size_t)nvg, nq, o0);
            if (P > nq)
                kr->accum(&f32row, group, s + nq, (size_t)pmax,
                          L->rv + (size_t)(nq - L->nq) * row + (size_t)g * hd,
                          (size_t)row * sizeof(float), P - nq, o0);
        }
        free(s);
    }
}

/* What the layers hold now: quantized key groups (codes + f16 scale/min per channel), quantized
 * value rows (codes + f16 scale/min per channel group), and the f32 residual rows. */
static size_t bytes(const void *state) {
    const kivi *c = state;
    const size_t row = (size_t)c->row, rb = (size_t)c->row_bytes, nvg = row / (size_t)c->vg;
    size_t total = 0;
    for (int l = 0; l < c->shape.n_layers; l++) {
        const kivi_layer *L = &c->layers[l];
        const size_t groups = (size_t)(L->nq / c->G), nq = (size_t)L->nq;
        total += groups * ((size_t)c->G * rb + 2 * row * sizeof(uint16_t));
        total += nq * (rb + 2 * nvg * sizeof(uint16_t));
        total += (size_t)(L->n - L->nq) * 2 * row * sizeof(float);
    }
    return total;
}

#define KIVI_POLICY(bits)                                                                      \
    const sqz_kv_policy sqz_kv_policy_q##bits = {                                              \
        .name = "q" #bits,                                                                     \
        .help = "KIVI " #bits "-bit: keys per channel, values per token, asymmetric; "         \
                "group=32 tokens/channels, window=64 recent tokens in f32",                    \
        .create = create_q##bits,                                                              \
        .destroy = destroy,                                                                    \
        .reset = reset,                                                                        \
        .store = store,                                                                        \
        .attend = attend,                                                                      \
        .bytes = bytes,                                                                        \
    };
KIVI_POLICY(8)
KIVI_POLICY(4)
KIVI_POLICY(2)
