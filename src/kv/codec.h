/* kv/codec.h - storage codecs of the structural KV policies (eviction, merging, cross-layer and
 * channel projections): the format their kept rows or coefficient vectors are held in.
 *
 * A composed spec "POLICY[:params]+CODEC[:params]" (e.g. "xkv:rank=32+q8",
 * "streaming:window=508+q4:group=64") gives the policy that codec; alone, a structural policy
 * stores f16. Codecs: f32, f16, q8, q4, q2 - the quantized ones asymmetric per row with one
 * f16 (scale, min) per group= channels (default 32, a multiple of 32), the row formats of
 * kernels/attn.h, on which attention runs directly.
 *
 * Keys have a few channels of large magnitude, which per-row groups quantize badly (KIVI's
 * reason to quantize keys per channel). The quantized codecs therefore rotate each row first
 * (rot=1, the default, where n is a power of two): x' = H S x with S fixed random signs and H
 * the normalized Walsh-Hadamard matrix, an orthogonal map that spreads an outlier channel over
 * all channels (as QuaRot does for weights and KV caches). Dot products are unchanged when the
 * query is rotated the same way, and attention's output is rotated back once per head, so
 * attention still runs on the stored rows.
 *
 * Keys also carry large offsets that are the same for every token (some channels are never far
 * from a constant), on which per-row groups would spend their range. Softmax does not change
 * when every key of a head moves by the same vector (each score of a query moves by the same
 * q . mu), so policies with a quantizing codec store k - mu, mu the mean key of the head's
 * first stored step (sqz_kv_codec_centers): exact for attention, and it leaves the codes for
 * what varies.
 *
 * As in KIVI, the newest rows matter most to attention and are cheap to keep exact: policies
 * that keep rows per token hold the newest recent= (default 64) in f16 and encode a row when it
 * leaves them.
 *
 * Note the difference with the q8/q4/q2 policies (KIVI, kv/kivi.c): those quantize keys per
 * channel over groups of tokens, which needs whole, fixed groups of consecutive tokens; the
 * structural policies drop, merge or project rows, so their codec encodes every row on its own
 * (per token, as KIVI does for values). */
#ifndef SQZ_KV_CODEC_H
#define SQZ_KV_CODEC_H

#include "core/ctx.h"
#include "kernels/attn.h"

typedef struct sqz_kv_codec {
    sqz_kvrow_type type;
    int group; /* quantized types: requested channels per (scale, min) */
    int rot;   /* rotate rows before quantizing (rows of a power-of-two length) */
    int recent; /* quantized types: the newest `recent` rows stay f16 (KIVI's residual) */
} sqz_kv_codec;

/* "f32", "f16", "q8[:group=G,rot=0|1,recent=R]", "q4[...]", "q2[...]". */
sqz_status sqz_kv_codec_parse(sqz_ctx *ctx, const char *spec, sqz_kv_codec *out);
/* 1 if name (up to len chars) is a codec name. */
int sqz_kv_codec_known(const char *name, size_t len);
const char *sqz_kv_codec_name(const sqz_kv_codec *c);

/* The row format for rows of n channels (the group shrinks to n when larger); fails, naming
 * the policy and what the rows are, when n or the group do not fit the format. */
sqz_status sqz_kv_codec_fmt(sqz_ctx *ctx, const sqz_kv_codec *c, const char *policy,
                            const char *what, int n, sqz_kvrow_fmt *f);

/* Whether rows of format f are rotated (codec rot=1 and n a power of two); the rotation is
 * math/hadamard.h's sqz_hadamard_hashed (inverse = 0 before encoding, 1 after decoding). */
int sqz_kv_codec_rotates(const sqz_kv_codec *c, const sqz_kvrow_fmt *f);
/* Whether keys are centred before encoding (the quantized codecs). */
int sqz_kv_codec_centers(const sqz_kv_codec *c);
/* mu[dim] = mean of the n rows x[i * stride ..]. */
void sqz_kv_mean_rows(const float *x, int n, size_t stride, int dim, float *mu);
/* row = x - mu (mu NULL: x) encoded, rotated first when the codec rotates; x is not modified. */
void sqz_kv_codec_encode(const sqz_kv_codec *c, const sqz_kvrow_fmt *f, const float *x,
                         const float *mu, void *row);
/* x = row decoded (and rotated back). */
void sqz_kv_codec_decode(const sqz_kv_codec *c, const sqz_kvrow_fmt *f, const void *row, float *x);
/* The same with the attention kernels (SIMD), for policies that decode many rows per step. */
void sqz_kv_codec_decode_fast(const sqz_attn_kernels *kr, const sqz_kv_codec *c,
                              const sqz_kvrow_fmt *f, const void *row, float *x);

/* P consecutive positions of keys K and values V held as rows of format f (stride ld bytes),
 * encoded by codec c. */
typedef struct sqz_kv_rows {
    const sqz_kv_codec *c;
    const sqz_kvrow_fmt *f;
    const void *K, *V;
    size_t ld;
    int P;
} sqz_kv_rows;

/* Exact softmax attention of nq queries q[nq][n] over the positions of the parts together
 * (e.g. a quantized part and a recent part in f16): out[nq][n] = softmax(scale * q K^T) V;
 * s [nq][sum of P] is scratch and holds the attention probabilities on return (row stride:
 * the sum of P). No allocation. */
void sqz_kv_attend_parts(const sqz_attn_kernels *kr, const sqz_kv_rows *parts, int n_parts,
                         int nq, const float *q, float scale, float *s, float *out);

/* The same over one part. */
void sqz_kv_attend_rows(const sqz_attn_kernels *kr, const sqz_kv_codec *c,
                        const sqz_kvrow_fmt *f, int nq, const float *q, const void *K,
                        const void *V, size_t ld, int P, float scale, float *s, float *out);

#endif
