/* kv/kivi.c - KV cache policies "q8", "q4", "q2": KIVI (Liu et al. 2024, "KIVI: A Tuning-Free
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

#include "formats/types.h"
#include "kernels/attn.h"
#include "kernels/kivi.h"
#include "kernels/ops.h"
#include "kv/kv.h"
#include "core/params.h"

typedef struct kivi_layer {
    uint8_t *kq;          /* [max_groups][G][row_bytes] */
    uint16_t *ks, *km;    /* [max_groups][row] */
    uint8_t *vq;          /* [max_pos][row_bytes] */
    uint16_t *vs, *vm;    /* [max_pos][row / vg] */
    float *rk, *rv;       /* [R+G][row]: positions nq .. n-1 */
    int *n, *nq;          /* [Hkv] per KV head: positions stored; positions quantized (a
                             multiple of G). Equal for every head between calls; kept per head
                             so that threads storing disjoint heads never share a counter */
} kivi_layer;

typedef struct kivi {
    sqz_ctx *ctx;
    const char *name;
    sqz_kv_shape shape;
    int bits, G, vg, R, row, row_bytes, max_groups;
    kivi_layer *layers;
    sqz_kivi_kernels kk; /* scores and value sums on the codes */
    sqz_attn_kernels kr; /* the same on the f32 residual */
    float *scores;       /* [Hkv][group][max_pos] store_attend_heads' scratch, one per KV head */
} kivi;

static void destroy(void *state) {
    kivi *c = state;
    if (!c) return;
    if (c->layers)
        for (int l = 0; l < c->shape.n_layers; l++) {
            kivi_layer *L = &c->layers[l];
            free(L->kq), free(L->ks), free(L->km), free(L->vq), free(L->vs), free(L->vm);
            free(L->rk), free(L->rv), free(L->n), free(L->nq);
        }
    free(c->layers);
    free(c->scores);
    free(c);
}

static sqz_status create_bits(sqz_ctx *ctx, const sqz_kv_shape *shape, const char *params,
                              void **state, int bits, const char *name) {
    int G = 32, R = 64;
    char buf[128];
    const sqz_param p[] = { { "group", 'i', &G, 1, 4096 }, { "window", 'i', &R, 0, 1 << 20 } };
    sqz_status st = sqz_params_parse(ctx, "KV policy", name, params, p, 2, buf, sizeof buf);
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
    c->scores = malloc((size_t)shape->n_heads * (size_t)shape->max_pos * sizeof *c->scores);
    int ok = c->layers && c->scores;
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
        L->n = calloc((size_t)shape->n_kv_heads, sizeof *L->n);
        L->nq = calloc((size_t)shape->n_kv_heads, sizeof *L->nq);
        ok = L->kq && L->ks && L->km && L->vq && L->vs && L->vm && L->rk && L->rv && L->n && L->nq;
    }
    return sqz_kv_create_end(ctx, shape, ok, c, destroy, state);
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
    for (int l = 0; l < c->shape.n_layers; l++)
        for (int g = 0; g < c->shape.n_kv_heads; g++) c->layers[l].n[g] = c->layers[l].nq[g] = 0;
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

/* Quantizes KV head g's oldest G residual tokens (positions nq[g] .. nq[g]+G-1): its channels
 * [g hd, (g+1) hd) of the rows, which are whole bytes of the packed rows (create checks that
 * hd * bits is a multiple of 8), and drops them from its part of the residual. */
static void quantize_group(kivi *c, kivi_layer *L, int g) {
    const int G = c->G, row = c->row, rb = c->row_bytes, qmax = (1 << c->bits) - 1;
    const int hd = c->shape.head_dim, c0 = g * hd, c1 = c0 + hd, hb = hd * c->bits / 8;
    const int gi = L->nq[g] / G;
    uint8_t *kq = L->kq + (size_t)gi * G * rb;
    for (int j = 0; j < G; j++) memset(kq + (size_t)j * rb + (size_t)g * hb, 0, (size_t)hb);
    for (int ch = c0; ch < c1; ch++) {
        float scale, mn;
        qparams(L->rk + ch, G, (size_t)row, qmax, &L->ks[(size_t)gi * row + ch],
                &L->km[(size_t)gi * row + ch], &scale, &mn);
        for (int j = 0; j < G; j++)
            put_code(kq + (size_t)j * rb, c->bits, ch, qcode(L->rk[(size_t)j * row + ch], scale, mn, qmax));
    }
    const int nvg = row / c->vg;
    for (int j = 0; j < G; j++) {
        const int p = L->nq[g] + j;
        const float *x = L->rv + (size_t)j * row;
        uint8_t *vq = L->vq + (size_t)p * rb;
        memset(vq + (size_t)g * hb, 0, (size_t)hb);
        for (int b = c0 / c->vg; b < c1 / c->vg; b++) {
            float scale, mn;
            qparams(x + b * c->vg, c->vg, 1, qmax, &L->vs[(size_t)p * nvg + b],
                    &L->vm[(size_t)p * nvg + b], &scale, &mn);
            for (int i = b * c->vg; i < (b + 1) * c->vg; i++)
                put_code(vq, c->bits, i, qcode(x[i], scale, mn, qmax));
        }
    }
    const int left = L->n[g] - L->nq[g] - G;
    for (int j = 0; j < left; j++) { /* rows j + G -> j, this head's channels */
        memcpy(L->rk + (size_t)j * row + c0, L->rk + (size_t)(j + G) * row + c0, (size_t)hd * sizeof(float));
        memcpy(L->rv + (size_t)j * row + c0, L->rv + (size_t)(j + G) * row + c0, (size_t)hd * sizeof(float));
    }
    L->nq[g] += G;
}

/* Whether positions pos.. may be stored, by KV head g's counters (every head's are equal
 * between calls; a thread asks about its own heads only). */
static sqz_status store_check(const kivi_layer *L, int g, int pos) {
    if (pos < L->nq[g]) return SQZ_ERR_ARG; /* already quantized: cannot be overwritten */
    if (pos > L->n[g]) return SQZ_ERR_ARG;  /* a gap */
    return SQZ_OK;
}

/* KV head g's channels of n rows k, v at positions pos.. */
static void store_head(kivi *c, kivi_layer *L, int g, int pos, int n, const float *k, const float *v) {
    const size_t row = (size_t)c->row, hd = (size_t)c->shape.head_dim, c0 = (size_t)g * hd;
    L->n[g] = pos; /* rewriting positions still in the residual simply replaces them */
    for (int i = 0; i < n; i++) {
        const size_t r = (size_t)(L->n[g] - L->nq[g]) * row + c0;
        memcpy(L->rk + r, k + (size_t)i * row + c0, hd * sizeof(float));
        memcpy(L->rv + r, v + (size_t)i * row + c0, hd * sizeof(float));
        L->n[g]++;
        if (L->n[g] - L->nq[g] == c->R + c->G) quantize_group(c, L, g);
    }
}

static sqz_status store(void *state, int layer, int pos, int n, const float *k, const float *v) {
    kivi *c = state;
    kivi_layer *L = &c->layers[layer];
    if (store_check(L, 0, pos))
        return pos < L->nq[0]
                   ? sqz_fail(c->ctx, SQZ_ERR_ARG,
                              "KV policy %s: cannot overwrite position %d, already quantized",
                              c->name, pos)
                   : sqz_fail(c->ctx, SQZ_ERR_ARG, "KV policy %s: position %d stored before %d",
                              c->name, pos, L->n[0]);
    for (int g = 0; g < c->shape.n_kv_heads; g++) store_head(c, L, g, pos, n, k, v);
    return SQZ_OK;
}

/* Query t (at position pos + t) of KV head g: the query heads of g share its keys and values,
 * so the kernels (kernels/kivi.h) unpack each code once for all of them, and each key group's
 * scales are folded into the queries once per group. s: [group][pmax] scratch. */
static void attend_one(const kivi *c, const kivi_layer *L, int pos, int t, int g, const float *q,
                       float *out, float *s, int pmax) {
    const int Hq = c->shape.n_heads, Hkv = c->shape.n_kv_heads, hd = c->shape.head_dim;
    const int group = Hq / Hkv;
    const int row = c->row, rb = c->row_bytes, G = c->G, vg = c->vg, bits = c->bits;
    const int nvg = row / vg, hb = hd * bits / 8; /* packed bytes of one head's channels */
    const float scale = 1.0f / sqrtf((float)hd);
    const sqz_kivi_kernels *kk = &c->kk;
    const sqz_attn_kernels *kr = &c->kr;
    const sqz_kvrow_fmt f32row = { SQZ_KVROW_F32, hd, hd };
    const int P = pos + t + 1, nqg = L->nq[g];
    const int nq = nqg < P ? nqg : P;
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
        kr->scores(&f32row, group, q0, L->rk + (size_t)(nq - nqg) * row + (size_t)g * hd,
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
                  L->rv + (size_t)(nq - nqg) * row + (size_t)g * hd,
                  (size_t)row * sizeof(float), P - nq, o0);
}

/* One work item is (query t, KV head g), spread over the threads. */
static void attend(void *state, int layer, int pos, int n, const float *q, float *out,
                   int n_threads) {
    const kivi *c = state;
    const kivi_layer *L = &c->layers[layer];
    const int Hkv = c->shape.n_kv_heads, group = c->shape.n_heads / Hkv;
    const int work = n * Hkv, pmax = pos + n;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1 && work > 1)
    {
        float *s = malloc((size_t)group * (size_t)pmax * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int w = 0; w < work; w++) attend_one(c, L, pos, w / Hkv, w % Hkv, q, out, s, pmax);
        free(s);
    }
}

/* One decode step for KV heads [g0, g1) (kv.h): called by the decode team's threads at once,
 * each with its own heads, which share no counter, byte or scratch. No sqz_fail here (the
 * threads would race on the message): the session reports the status. */
static sqz_status store_attend_heads(void *state, int layer, int pos, const float *k,
                                     const float *v, const float *q, float *out, int g0, int g1) {
    kivi *c = state;
    kivi_layer *L = &c->layers[layer];
    const int group = c->shape.n_heads / c->shape.n_kv_heads, mp = c->shape.max_pos;
    for (int g = g0; g < g1; g++)
        if (store_check(L, g, pos)) return SQZ_ERR_ARG;
    for (int g = g0; g < g1; g++) {
        store_head(c, L, g, pos, 1, k, v);
        attend_one(c, L, pos, 0, g, q, out, c->scores + (size_t)g * group * mp, pos + 1);
    }
    return SQZ_OK;
}

/* What the layers hold now: quantized key groups (codes + f16 scale/min per channel), quantized
 * value rows (codes + f16 scale/min per channel group), and the f32 residual rows. */
static size_t bytes(const void *state) {
    const kivi *c = state;
    const size_t row = (size_t)c->row, rb = (size_t)c->row_bytes, nvg = row / (size_t)c->vg;
    size_t total = 0;
    for (int l = 0; l < c->shape.n_layers; l++) {
        const kivi_layer *L = &c->layers[l];
        const size_t groups = (size_t)(L->nq[0] / c->G), nq = (size_t)L->nq[0];
        total += groups * ((size_t)c->G * rb + 2 * row * sizeof(uint16_t));
        total += nq * (rb + 2 * nvg * sizeof(uint16_t));
        total += (size_t)(L->n[0] - L->nq[0]) * 2 * row * sizeof(float);
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
        .store_attend_heads = store_attend_heads,                                              \
        .bytes = bytes,                                                                        \
    };
KIVI_POLICY(8)
KIVI_POLICY(4)
KIVI_POLICY(2)
