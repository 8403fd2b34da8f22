/* kivi.h - attention kernels on KIVI's quantized KV cache (the q8/q4/q2 policies, kv/kivi.c).
 *
 * Codes of one head's row are hd channels packed along the row, low bits first: q8 one byte per
 * channel, q4 byte i = channels 2i (low nibble) and 2i+1, q2 byte i = channels 4i..4i+3 in bit
 * pairs 0-1, 2-3, 4-5, 6-7. A row's codes start at codes + p * ld.
 *
 * Keys are quantized per channel over a group of tokens (one scale_c, min_c per channel), so
 * q . k_p = (q . min) + (q * scale) . code_p: the kernel folds the group's parameters into the
 * queries once (qs = q * scale, qm = q . min), then does one dot of codes per token.
 * Values are quantized per token in groups of vg channels, the (scale, min) pairs f16; each
 * row is dequantized in registers (min + scale * code, one FMA) and accumulated for all
 * queries. Both kernels serve nq queries (the query heads of one KV head) per pass over the
 * codes, so each code is unpacked once for all of them. No dequantized copy is made.
 *
 * Tiers: reference (kivi_ref.c, the arithmetic the policy always had), AVX2 (kivi_avx2.c) and
 * AVX-512 (kivi_avx512.c), chosen at run time; a tier hands shapes it does not take (hd or vg
 * not a multiple of its vector width) to the tier below. tests/test_kivi.c compares them. */
#ifndef SQZ_KERNELS_KIVI_H
#define SQZ_KERNELS_KIVI_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Scores on one key group: s[r * sld + j] = scale * (q_r . (min + scale_k * code_j)) for the
 * J <= group tokens j and the nq queries q_r = q + r * hd; ks, km: the group's per-channel
 * scale and min of this head (hd f16 each). hd <= SQZ_KIVI_MAX_HD. */
typedef void (*sqz_kivi_kscores_fn)(int bits, int hd, int nq, const float *q, const uint16_t *ks,
                                    const uint16_t *km, const uint8_t *codes, size_t ld, int J,
                                    float scale, float *s, size_t sld);

/* y[r * hd + i] += sum_{p < P} w[r * wld + p] * (min_pb + scale_pb * code_p[i]), b = i / vg,
 * scale_pb = vs[p * pld + b], min_pb = vm[p * pld + b] (f16); r < nq. */
typedef void (*sqz_kivi_vaccum_fn)(int bits, int hd, int vg, int nq, const float *w, size_t wld,
                                   const uint8_t *codes, size_t ld, const uint16_t *vs,
                                   const uint16_t *vm, size_t pld, int P, float *y);

enum { SQZ_KIVI_MAX_HD = 1024 };

typedef struct sqz_kivi_kernels {
    sqz_kivi_kscores_fn kscores;
    sqz_kivi_vaccum_fn vaccum;
} sqz_kivi_kernels;

sqz_kivi_kernels sqz_kivi_kernels_ref(void);
sqz_kivi_kernels sqz_kivi_kernels_avx2(void);
sqz_kivi_kernels sqz_kivi_kernels_avx512(void);
/* Tier isa (lower tiers where the CPU lacks it is the caller's business: see sqz_isa_best). */
sqz_kivi_kernels sqz_kivi_kernels_get(sqz_isa isa);

#endif
