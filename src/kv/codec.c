/* kv/codec.c - storage codecs of the structural KV policies (kv/codec.h). */
#include "kv/codec.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/ops.h"
#include "core/params.h"
#include "math/hadamard.h"

static const struct {
    const char *name;
    sqz_kvrow_type type;
} codecs[] = {
    { "f32", SQZ_KVROW_F32 }, { "f16", SQZ_KVROW_F16 }, { "q8", SQZ_KVROW_Q8 },
    { "q4", SQZ_KVROW_Q4 },   { "q2", SQZ_KVROW_Q2 },
};
enum { N_CODECS = sizeof codecs / sizeof codecs[0] };

int sqz_kv_codec_known(const char *name, size_t len) {
    for (int i = 0; i < N_CODECS; i++)
        if (strlen(codecs[i].name) == len && !strncmp(codecs[i].name, name, len)) return 1;
    return 0;
}

const char *sqz_kv_codec_name(const sqz_kv_codec *c) {
    for (int i = 0; i < N_CODECS; i++)
        if (codecs[i].type == c->type) return codecs[i].name;
    return "?";
}

sqz_status sqz_kv_codec_parse(sqz_ctx *ctx, const char *spec, sqz_kv_codec *out) {
    const char *colon = strchr(spec, ':');
    const size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    int i = 0;
    while (i < N_CODECS && !(strlen(codecs[i].name) == len && !strncmp(codecs[i].name, spec, len)))
        i++;
    if (i == N_CODECS)
        return sqz_fail(ctx, SQZ_ERR_ARG, "unknown KV storage codec '%.*s' (after '+': f32, f16, "
                        "q8, q4 or q2)", (int)len, spec);
    int group = 32, rot = 1, recent = 64;
    char buf[64];
    const sqz_param p[] = { { "group", 'i', &group, 32, 1 << 16 },
                               { "rot", 'i', &rot, 0, 1 },
                               { "recent", 'i', &recent, 0, 1 << 20 } };
    const int quant = sqz_kvrow_bits(codecs[i].type) > 0;
    sqz_status st = sqz_params_parse(ctx, "KV policy", codecs[i].name, colon ? colon + 1 : NULL, p,
                                        quant ? 3 : 0, buf, sizeof buf);
    if (st) return st;
    if (group % 32)
        return sqz_fail(ctx, SQZ_ERR_ARG, "KV codec %s: parameter 'group' = %d must be a multiple "
                        "of 32", codecs[i].name, group);
    out->type = codecs[i].type;
    out->group = group;
    out->rot = quant && rot;
    out->recent = quant ? recent : 0;
    return SQZ_OK;
}

sqz_status sqz_kv_codec_fmt(sqz_ctx *ctx, const sqz_kv_codec *c, const char *policy,
                            const char *what, int n, sqz_kvrow_fmt *f) {
    f->type = c->type;
    f->n = n;
    f->group = c->group < n ? c->group : n;
    if (sqz_kvrow_bits(c->type) && (n % 32 || n % f->group))
        return sqz_fail(ctx, SQZ_ERR_ARG, "KV policy %s: %s of %d channels cannot be stored as %s "
                        "(needs a multiple of 32 channels, and of group=%d)", policy, what, n,
                        sqz_kv_codec_name(c), f->group);
    return SQZ_OK;
}

int sqz_kv_codec_rotates(const sqz_kv_codec *c, const sqz_kvrow_fmt *f) {
    return c->rot && f->n >= 2 && !(f->n & (f->n - 1));
}

enum { ROT_BUF = 4096 }; /* floats of rotated rows on the stack */

int sqz_kv_codec_centers(const sqz_kv_codec *c) { return sqz_kvrow_bits(c->type) > 0; }

void sqz_kv_mean_rows(const float *x, int n, size_t stride, int dim, float *mu) {
    for (int i = 0; i < dim; i++) {
        double a = 0;
        for (int t = 0; t < n; t++) a += x[(size_t)t * stride + i];
        mu[i] = n > 0 ? (float)(a / n) : 0.0f;
    }
}

void sqz_kv_codec_encode(const sqz_kv_codec *c, const sqz_kvrow_fmt *f, const float *x,
                         const float *mu, void *row) {
    const int rot = sqz_kv_codec_rotates(c, f) && f->n <= ROT_BUF;
    if (!rot && !mu) {
        sqz_kvrow_encode(f, x, row);
        return;
    }
    float t[ROT_BUF];
    if (f->n > ROT_BUF) { /* not rotated; centred in pieces is not worth it: plain */
        sqz_kvrow_encode(f, x, row);
        return;
    }
    for (int i = 0; i < f->n; i++) t[i] = mu ? x[i] - mu[i] : x[i];
    if (rot) sqz_hadamard_hashed(t, f->n, 0);
    sqz_kvrow_encode(f, t, row);
}

void sqz_kv_codec_decode(const sqz_kv_codec *c, const sqz_kvrow_fmt *f, const void *row, float *x) {
    sqz_kvrow_decode(f, row, x);
    if (sqz_kv_codec_rotates(c, f) && f->n <= ROT_BUF) sqz_hadamard_hashed(x, f->n, 1);
}

void sqz_kv_codec_decode_fast(const sqz_attn_kernels *kr, const sqz_kv_codec *c,
                              const sqz_kvrow_fmt *f, const void *row, float *x) {
    static const float one = 1.0f;
    memset(x, 0, (size_t)f->n * sizeof(float));
    kr->accum(f, 1, &one, 1, row, 0, 1, x); /* x += 1 * row */
    if (sqz_kv_codec_rotates(c, f) && f->n <= ROT_BUF) sqz_hadamard_hashed(x, f->n, 1);
}

void sqz_kv_attend_parts(const sqz_attn_kernels *kr, const sqz_kv_rows *parts, int n_parts,
                         int nq, const float *q, float scale, float *s, float *out) {
    const int n = parts[0].f->n;
    int P = 0;
    for (int i = 0; i < n_parts; i++) P += parts[i].P;
    /* rotated queries and rotated partial outputs, a chunk of queries at a time */
    const int chunk = n <= ROT_BUF ? ROT_BUF / n : 1;
    float qr[ROT_BUF], acc[ROT_BUF];
    for (int j0 = 0; j0 < nq; j0 += chunk) {
        const int m = nq - j0 < chunk ? nq - j0 : chunk;
        const float *qj = q + (size_t)j0 * n;
        float *sj = s + (size_t)j0 * P, *oj = out + (size_t)j0 * n;
        int off = 0;
        for (int i = 0; i < n_parts; i++) {
            const sqz_kv_rows *r = &parts[i];
            const int rot = sqz_kv_codec_rotates(r->c, r->f) && n <= ROT_BUF;
            const float *qq = qj;
            if (rot) {
                memcpy(qr, qj, (size_t)m * n * sizeof(float));
                for (int j = 0; j < m; j++) sqz_hadamard_hashed(qr + (size_t)j * n, n, 0);
                qq = qr;
            }
            if (r->P) kr->scores(r->f, m, qq, r->K, r->ld, r->P, scale, sj + off, (size_t)P);
            off += r->P;
        }
        for (int j = 0; j < m; j++) kr->softmax(sj + (size_t)j * P, P);
        memset(oj, 0, (size_t)m * (size_t)n * sizeof(float));
        off = 0;
        for (int i = 0; i < n_parts; i++) {
            const sqz_kv_rows *r = &parts[i];
            const int rot = sqz_kv_codec_rotates(r->c, r->f) && n <= ROT_BUF;
            if (r->P && !rot) kr->accum(r->f, m, sj + off, (size_t)P, r->V, r->ld, r->P, oj);
            if (r->P && rot) {
                memset(acc, 0, (size_t)m * (size_t)n * sizeof(float));
                kr->accum(r->f, m, sj + off, (size_t)P, r->V, r->ld, r->P, acc);
                for (int j = 0; j < m; j++) {
                    sqz_hadamard_hashed(acc + (size_t)j * n, n, 1);
                    for (int x = 0; x < n; x++) oj[(size_t)j * n + x] += acc[(size_t)j * n + x];
                }
            }
            off += r->P;
        }
    }
}

void sqz_kv_attend_rows(const sqz_attn_kernels *kr, const sqz_kv_codec *c,
                        const sqz_kvrow_fmt *f, int nq, const float *q, const void *K,
                        const void *V, size_t ld, int P, float scale, float *s, float *out) {
    const sqz_kv_rows part = { c, f, K, V, ld, P };
    sqz_kv_attend_parts(kr, &part, 1, nq, q, scale, s, out);
}
