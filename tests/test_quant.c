/* test_quant.c - llama.cpp's quantized formats (src/quant): dequantization of hand-built
 * blocks, round-trip error bounds and orderings on random data, the importance-matrix path,
 * and the independent check: llama-quantize's own GGUF files of sqz-llama-26m, whose blocks
 * sqz's quantizers must reproduce byte for byte from the F16 safetensors weights.
 *
 * The GGUF reader proper is written elsewhere; this file parses just enough of GGUF v3
 * itself (header, metadata skipped by type, tensor infos, aligned data start).
 */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ctx.h"
#include "formats/types.h"
#include "io/safetensors.h"
#include "formats/blocks.h"
#include "formats/quant.h"
#include "test.h"

/* ------------------------------------------------------------------ helpers */

/* The IQ4_NL levels as printed in ggml-common.h (kvalues_iq4nl): test data, not sqz's copy. */
static const int iq4nl_levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113 };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double rng_uniform(void) { /* in (0, 1) */
    return ((test_xorshift64(&rng_state) >> 11) + 0.5) / 9007199254740992.0;
}
static float rng_gauss(void) {
    return (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()));
}

static const sqz_type all_types[] = {
    SQZ_TYPE_Q4_0, SQZ_TYPE_Q4_1, SQZ_TYPE_Q5_0, SQZ_TYPE_Q5_1, SQZ_TYPE_Q8_0,
    SQZ_TYPE_Q8_1, SQZ_TYPE_Q2_K, SQZ_TYPE_Q3_K, SQZ_TYPE_Q4_K, SQZ_TYPE_Q5_K,
    SQZ_TYPE_Q6_K, SQZ_TYPE_Q8_K, SQZ_TYPE_IQ4_NL, SQZ_TYPE_IQ4_XS,
};
#define N_TYPES (int)(sizeof all_types / sizeof all_types[0])

/* sqrt(sum (a-b)^2 / sum b^2) */
static double rel_rmse(const float *a, const float *b, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

static int all_finite(const float *a, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

/* Dequantizes through the traits table (what the rest of sqz uses). */
static void to_float(sqz_type t, const void *q, float *out, int64_t n) {
    sqz_type_get(t)->to_float(q, out, n);
}

/* Counts elements where got != want exactly; prints the first. */
static int count_diff(const char *what, const float *got, const float *want, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            if (!bad) printf("#   %s: element %d got %.9g want %.9g\n", what, i, got[i], want[i]);
            bad++;
        }
    }
    return bad;
}

/* ------------------------------------------------------------------ hand-built blocks */

/* Each block below is assembled from the format's description (ggml-common.h's comments and
 * layout), with small integer quants and power-of-two scales so that every expected value is
 * exact in f32, then compared element for element. */

static void test_hand_simple(void) {
    float out[32], want[32];

    block_q8_0 q8 = { .d = 0x3800 }; /* 0.5 */
    for (int j = 0; j < 32; j++) { q8.qs[j] = (int8_t)(4 * j - 64); want[j] = (4 * j - 64) * 0.5f; }
    to_float(SQZ_TYPE_Q8_0, &q8, out, 32);
    CHECK(count_diff("q8_0", out, want, 32) == 0, "q8_0 hand block: x = d * q");

    block_q8_1 q81 = { .d = 0x3400 }; /* 0.25 */
    for (int j = 0; j < 32; j++) { q81.qs[j] = (int8_t)(127 - 8 * j); want[j] = (127 - 8 * j) * 0.25f; }
    to_float(SQZ_TYPE_Q8_1, &q81, out, 32);
    CHECK(count_diff("q8_1", out, want, 32) == 0, "q8_1 hand block: x = d * q");

    /* Q4_0: byte j = element j (low nibble) and element j+16 (high nibble), x = d * (q - 8) */
    block_q4_0 q40 = { .d = 0x3400 }; /* 0.25 */
    for (int j = 0; j < 16; j++) {
        const int lo = j, hi = 15 - j;
        q40.qs[j] = (uint8_t)(lo | hi << 4);
        want[j] = (lo - 8) * 0.25f;
        want[j + 16] = (hi - 8) * 0.25f;
    }
    to_float(SQZ_TYPE_Q4_0, &q40, out, 32);
    CHECK(count_diff("q4_0", out, want, 32) == 0, "q4_0 hand block: x = d * (q - 8)");
    /* the quantizer maps those values back to the same block: the largest magnitude (-2 at
     * q = 0) defines d = -max/8 = 0.25 exactly */
    block_q4_0 back;
    sqz_q4_0_from_float(want, &back, 32);
    CHECK(memcmp(&back, &q40, sizeof back) == 0, "q4_0 quantizer reproduces an exactly representable block");

    /* Q4_1: x = d * q + m */
    block_q4_1 q41 = { .d = 0x3800, .m = 0xbc00 }; /* 0.5, -1 */
    for (int j = 0; j < 16; j++) {
        const int lo = (3 * j) & 15, hi = (5 * j + 1) & 15;
        q41.qs[j] = (uint8_t)(lo | hi << 4);
        want[j] = lo * 0.5f - 1;
        want[j + 16] = hi * 0.5f - 1;
    }
    to_float(SQZ_TYPE_Q4_1, &q41, out, 32);
    CHECK(count_diff("q4_1", out, want, 32) == 0, "q4_1 hand block: x = d * q + m");
    block_q4_1 back41;
    sqz_q4_1_from_float(want, &back41, 32);
    float out2[32];
    to_float(SQZ_TYPE_Q4_1, &back41, out2, 32);
    CHECK(count_diff("q4_1 requantized", out2, want, 32) == 0, "q4_1 quantizer: min-max fit reproduces the values");

    /* Q5_0 / Q5_1: the 5th bit of element j is bit j of the little-endian u32 qh */
    block_q5_0 q50 = { .d = 0x3c00 }; /* 1 */
    block_q5_1 q51 = { .d = 0x3800, .m = 0x4000 }; /* 0.5, 2 */
    uint32_t qh = 0;
    int q5[32];
    for (int j = 0; j < 32; j++) {
        q5[j] = (7 * j + 3) % 32;
        if (q5[j] & 16) qh |= 1u << j;
    }
    for (int j = 0; j < 16; j++) {
        q50.qs[j] = q51.qs[j] = (uint8_t)((q5[j] & 15) | (q5[j + 16] & 15) << 4);
    }
    for (int b = 0; b < 4; b++) q50.qh[b] = q51.qh[b] = (uint8_t)(qh >> (8 * b));
    for (int j = 0; j < 32; j++) want[j] = (float)(q5[j] - 16);
    to_float(SQZ_TYPE_Q5_0, &q50, out, 32);
    CHECK(count_diff("q5_0", out, want, 32) == 0, "q5_0 hand block: x = d * (q - 16)");
    for (int j = 0; j < 32; j++) want[j] = q5[j] * 0.5f + 2;
    to_float(SQZ_TYPE_Q5_1, &q51, out, 32);
    CHECK(count_diff("q5_1", out, want, 32) == 0, "q5_1 hand block: x = d * q + m");

    /* IQ4_NL: x = d * levels[q] */
    block_iq4_nl nl = { .d = 0x3800 }; /* 0.5 */
    for (int j = 0; j < 16; j++) {
        const int lo = j, hi = (j * 7 + 5) & 15;
        nl.qs[j] = (uint8_t)(lo | hi << 4);
        want[j] = 0.5f * iq4nl_levels[lo];
        want[j + 16] = 0.5f * iq4nl_levels[hi];
    }
    to_float(SQZ_TYPE_IQ4_NL, &nl, out, 32);
    CHECK(count_diff("iq4_nl", out, want, 32) == 0, "iq4_nl hand block: x = d * levels[q]");
}

static void test_hand_k(void) {
    float out[256], want[256];

    /* Q2_K: 16 sub-blocks of 16; scales[k] = scale | min << 4; element e sits in byte
     * 32*(e/128) + e%32 at bits 2*((e%128)/32); x = d*sc*q - dmin*m. */
    {
        block_q2_K b;
        memset(&b, 0, sizeof b);
        b.d = 0x3c00;    /* 1 */
        b.dmin = 0x3800; /* 0.5 */
        for (int k = 0; k < 16; k++) b.scales[k] = (uint8_t)(((k + 1) & 15) | (k & 15) << 4);
        for (int e = 0; e < 256; e++) {
            const int q = (e * 7 + 3) % 4, k = e / 16;
            b.qs[32 * (e / 128) + e % 32] |= (uint8_t)(q << (2 * ((e % 128) / 32)));
            want[e] = 1.0f * ((k + 1) & 15) * q - 0.5f * (k & 15);
        }
        to_float(SQZ_TYPE_Q2_K, &b, out, 256);
        CHECK(count_diff("q2_k", out, want, 256) == 0, "q2_k hand block");
    }
    /* Q3_K: 3-bit quants q (x uses q - 4): low 2 bits as Q2_K, high bit of element e in bit
     * e/32 of hmask[e%32]; 6-bit scales s (x uses s - 32): low nibble of sub-block k in
     * scales[k] (k < 8) or the high nibble of scales[k-8], top 2 bits at scales[8 + k%4] bits
     * 2*(k/4). */
    {
        block_q3_K b;
        memset(&b, 0, sizeof b);
        b.d = 0x3800; /* 0.5 */
        int s6[16];
        for (int k = 0; k < 16; k++) {
            s6[k] = (k * 5 + 7) % 64;
            if (k < 8) b.scales[k] |= (uint8_t)(s6[k] & 15);
            else b.scales[k - 8] |= (uint8_t)((s6[k] & 15) << 4);
            b.scales[8 + k % 4] |= (uint8_t)((s6[k] >> 4) << (2 * (k / 4)));
        }
        for (int e = 0; e < 256; e++) {
            const int q = (e * 5 + 1) % 8;
            b.qs[32 * (e / 128) + e % 32] |= (uint8_t)((q & 3) << (2 * ((e % 128) / 32)));
            if (q & 4) b.hmask[e % 32] |= (uint8_t)(1 << (e / 32));
            want[e] = 0.5f * (s6[e / 16] - 32) * (q - 4);
        }
        to_float(SQZ_TYPE_Q3_K, &b, out, 256);
        CHECK(count_diff("q3_k", out, want, 256) == 0, "q3_k hand block");
    }
    /* Q4_K / Q5_K: 8 sub-blocks of 32, 6-bit scale sc and min m each: sub-blocks 0-3 in the
     * low 6 bits of scales[j] / scales[j+4]; sub-blocks 4-7: low nibbles in scales[j+4]
     * (sc low half, m high half), top 2 bits in bits 6-7 of scales[j-4] (sc) / scales[j] (m).
     * Quants: element e in byte 32*(e/64) + e%32, low nibble if e%64 < 32 else high;
     * Q5_K's 5th bit in qh[e%32] bit 2*(e/64) + (e%64 >= 32). x = d*sc*q - dmin*m. */
    {
        block_q4_K b4;
        block_q5_K b5;
        memset(&b4, 0, sizeof b4);
        memset(&b5, 0, sizeof b5);
        b4.d = b5.d = 0x3400;       /* 0.25 */
        b4.dmin = b5.dmin = 0x3000; /* 0.125 */
        int sc[8], mn[8];
        uint8_t packed[12] = { 0 };
        for (int j = 0; j < 8; j++) {
            sc[j] = (j * 9 + 5) % 64;
            mn[j] = (j * 13 + 40) % 64;
            if (j < 4) {
                packed[j] |= (uint8_t)sc[j];
                packed[j + 4] |= (uint8_t)mn[j];
            } else {
                packed[j + 4] = (uint8_t)((sc[j] & 15) | (mn[j] & 15) << 4);
                packed[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
                packed[j] |= (uint8_t)((mn[j] >> 4) << 6);
            }
        }
        memcpy(b4.scales, packed, 12);
        memcpy(b5.scales, packed, 12);
        float want5[256];
        for (int e = 0; e < 256; e++) {
            const int q4 = (e * 11 + 2) % 16, q5 = (e * 13 + 7) % 32, j = e / 32;
            const int byte = 32 * (e / 64) + e % 32, high = (e % 64) >= 32;
            b4.qs[byte] |= (uint8_t)(q4 << (4 * high));
            b5.qs[byte] |= (uint8_t)((q5 & 15) << (4 * high));
            if (q5 & 16) b5.qh[e % 32] |= (uint8_t)(1 << (2 * (e / 64) + high));
            want[e] = 0.25f * sc[j] * q4 - 0.125f * mn[j];
            want5[e] = 0.25f * sc[j] * q5 - 0.125f * mn[j];
        }
        to_float(SQZ_TYPE_Q4_K, &b4, out, 256);
        CHECK(count_diff("q4_k", out, want, 256) == 0, "q4_k hand block");
        to_float(SQZ_TYPE_Q5_K, &b5, out, 256);
        CHECK(count_diff("q5_k", out, want5, 256) == 0, "q5_k hand block");
    }
    /* Q6_K: 6-bit quants q (x uses q - 32), int8 scales per 16. Element e: half h = e/128,
     * quarter g = (e%128)/32, l = e%32; low nibble in ql[64h + l + 32*(g&1)], low half for
     * g < 2 else high half; top 2 bits in qh[32h + l] bits 2g. */
    {
        block_q6_K b;
        memset(&b, 0, sizeof b);
        b.d = 0x3800; /* 0.5 */
        for (int k = 0; k < 16; k++) b.scales[k] = (int8_t)((k * 37) % 200 - 100);
        for (int e = 0; e < 256; e++) {
            const int q = (e * 29 + 5) % 64, h = e / 128, g = (e % 128) / 32, l = e % 32;
            b.ql[64 * h + l + 32 * (g & 1)] |= (uint8_t)((q & 15) << (g >= 2 ? 4 : 0));
            b.qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * g));
            want[e] = 0.5f * b.scales[e / 16] * (q - 32);
        }
        to_float(SQZ_TYPE_Q6_K, &b, out, 256);
        CHECK(count_diff("q6_k", out, want, 256) == 0, "q6_k hand block");
    }
    /* IQ4_XS: 8 sub-blocks of 32 as IQ4_NL with 6-bit scales ls (x uses ls - 32): low nibble
     * k in scales_l[k/2] (low half for even k), top 2 bits in scales_h bits 2k. */
    {
        block_iq4_xs b;
        memset(&b, 0, sizeof b);
        b.d = 0x3400; /* 0.25 */
        int ls[8];
        for (int k = 0; k < 8; k++) {
            ls[k] = (k * 23 + 3) % 64;
            b.scales_l[k / 2] |= (uint8_t)((ls[k] & 15) << (4 * (k % 2)));
            b.scales_h |= (uint16_t)((ls[k] >> 4) << (2 * k));
        }
        for (int e = 0; e < 256; e++) {
            const int q = (e * 3 + e / 16) % 16, k = e / 32, r = e % 32;
            b.qs[16 * k + r % 16] |= (uint8_t)(q << (r >= 16 ? 4 : 0));
            want[e] = 0.25f * (ls[k] - 32) * iq4nl_levels[q];
        }
        to_float(SQZ_TYPE_IQ4_XS, &b, out, 256);
        CHECK(count_diff("iq4_xs", out, want, 256) == 0, "iq4_xs hand block");
    }
    /* Q8_K: f32 d; bsums = sums of 16 quants */
    {
        block_q8_K b;
        memset(&b, 0, sizeof b);
        b.d = 0.125f;
        for (int e = 0; e < 256; e++) {
            b.qs[e] = (int8_t)(e - 128);
            want[e] = 0.125f * (e - 128);
        }
        to_float(SQZ_TYPE_Q8_K, &b, out, 256);
        CHECK(count_diff("q8_k", out, want, 256) == 0, "q8_k hand block");
        block_q8_K back;
        sqz_q8_k_from_float(want, &back, 256);
        int ok = 1;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += back.qs[16 * j + i];
            ok &= back.bsums[j] == s;
        }
        to_float(SQZ_TYPE_Q8_K, &back, out, 256);
        CHECK(ok && rel_rmse(out, want, 256) < 1e-2, "q8_k quantizer: bsums are the sums of 16, values close");
    }
}

/* ------------------------------------------------------------------ random data */

typedef struct {
    sqz_type t;
    double rel; /* relative RMSE on Gaussian data */
} type_err;

static double roundtrip_rel(sqz_type t, const float *x, int64_t n, float *y, void *q) {
    sqz_type_get(t)->from_float(x, q, n);
    to_float(t, q, y, n);
    return rel_rmse(y, x, n);
}

static void test_random(void) {
    enum { ROWS = 32, COLS = 1024, N = ROWS * COLS };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *y2 = malloc(N * sizeof *y2);
    void *q = malloc(N * 2), *q2 = malloc(N * 2); /* >= every type's bytes per element */
    for (int i = 0; i < N; i++) x[i] = rng_gauss();
    /* a few outliers, as real weights have */
    for (int i = 0; i < N; i += 997) x[i] *= 6;

    double rel[SQZ_TYPE_COUNT] = { 0 };
    for (int k = 0; k < N_TYPES; k++) {
        const sqz_type t = all_types[k];
        rel[t] = roundtrip_rel(t, x, N, y, q);
        printf("# gaussian rel RMSE %-6s %.5f\n", sqz_type_name(t), rel[t]);
        CHECK(all_finite(y, N), "%s round trip is finite", sqz_type_name(t));
        /* sqz_quantize_rows without an imatrix = the reference quantizer (IQ4_NL searches) */
        const size_t bytes = sqz_quantize_rows(t, x, q2, ROWS, COLS, NULL);
        CHECK(bytes == ROWS * sqz_type_row_size(t, COLS), "%s quantize_rows returns the bytes", sqz_type_name(t));
        if (t != SQZ_TYPE_IQ4_NL) {
            CHECK(memcmp(q, q2, bytes) == 0, "%s quantize_rows(NULL) = from_float", sqz_type_name(t));
        } else {
            to_float(t, q2, y2, N);
            const double r2 = rel_rmse(y2, x, N);
            printf("# gaussian rel RMSE iq4_nl with llama-quantize's search %.5f\n", r2);
            CHECK(r2 <= rel[t] * 1.02, "iq4_nl: the searched scales are no worse than the quick fit");
        }
    }
    /* more bits, less error: the k-quant ladder, and each 32-block type against its sibling */
    CHECK(rel[SQZ_TYPE_Q8_0] < rel[SQZ_TYPE_Q6_K] && rel[SQZ_TYPE_Q6_K] < rel[SQZ_TYPE_Q5_K] &&
              rel[SQZ_TYPE_Q5_K] < rel[SQZ_TYPE_Q4_K] && rel[SQZ_TYPE_Q4_K] < rel[SQZ_TYPE_Q3_K] &&
              rel[SQZ_TYPE_Q3_K] < rel[SQZ_TYPE_Q2_K],
          "rel RMSE: q8_0 < q6_k < q5_k < q4_k < q3_k < q2_k");
    CHECK(rel[SQZ_TYPE_Q5_0] < rel[SQZ_TYPE_Q4_0] && rel[SQZ_TYPE_Q5_1] < rel[SQZ_TYPE_Q4_1] &&
              rel[SQZ_TYPE_Q8_1] == rel[SQZ_TYPE_Q8_0],
          "rel RMSE: q5_0 < q4_0, q5_1 < q4_1, q8_1 = q8_0");
    CHECK(rel[SQZ_TYPE_IQ4_XS] < rel[SQZ_TYPE_Q4_0] && rel[SQZ_TYPE_IQ4_NL] < rel[SQZ_TYPE_Q4_0] &&
              rel[SQZ_TYPE_Q4_K] < rel[SQZ_TYPE_Q4_0],
          "rel RMSE: iq4_xs, iq4_nl and q4_k beat q4_0");
    /* absolute sanity: a b-bit grid on Gaussian blocks stays within a few times 2^-b */
    static const struct { sqz_type t; double lo, hi; } band[] = {
        { SQZ_TYPE_Q8_0, 0.002, 0.008 }, { SQZ_TYPE_Q6_K, 0.007, 0.03 }, { SQZ_TYPE_Q5_K, 0.015, 0.06 },
        { SQZ_TYPE_Q4_K, 0.03, 0.12 },   { SQZ_TYPE_Q3_K, 0.06, 0.25 },  { SQZ_TYPE_Q2_K, 0.12, 0.5 },
        { SQZ_TYPE_Q4_0, 0.05, 0.16 },   { SQZ_TYPE_IQ4_XS, 0.03, 0.12 },
    };
    for (size_t i = 0; i < sizeof band / sizeof band[0]; i++)
        CHECK(rel[band[i].t] > band[i].lo && rel[band[i].t] < band[i].hi, "%s rel RMSE %.4f in [%g, %g]",
              sqz_type_name(band[i].t), rel[band[i].t], band[i].lo, band[i].hi);

    /* Q8_0 / Q4_0 per-element bounds. Quants are rounded with d32 = amax/127 (or max/-8) but
     * stored with d16 = f16(d32): error <= d/2 (Q4_0: up to d on the clipped side) plus
     * |q| * |d16 - d32|. */
    {
        sqz_q8_0_from_float(x, q, N);
        to_float(SQZ_TYPE_Q8_0, q, y, N);
        const block_q8_0 *b = q;
        int bad = 0;
        for (int i = 0; i < N / 32; i++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * i + j]));
            const double d32 = amax / 127.0, d16 = sqz_f16_to_f32(b[i].d);
            const double bound = 0.5 * d32 + 127 * fabs(d16 - d32) + 1e-6 * amax;
            for (int j = 0; j < 32; j++) bad += fabs(y[32 * i + j] - x[32 * i + j]) > bound;
        }
        CHECK(bad == 0, "q8_0: |x - deq| <= d/2 (+ f16 rounding of d) everywhere (%d over)", bad);
        sqz_q4_0_from_float(x, q, N);
        to_float(SQZ_TYPE_Q4_0, q, y, N);
        const block_q4_0 *b4 = q;
        bad = 0;
        for (int i = 0; i < N / 32; i++) {
            const double d16 = fabs(sqz_f16_to_f32(b4[i].d));
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * i + j]));
            const double d32 = amax / 8.0;
            for (int j = 0; j < 32; j++) {
                const double xv = x[32 * i + j], e = fabs(y[32 * i + j] - xv);
                /* the side opposite to the largest magnitude can reach +8 levels, clipped to 7 */
                bad += e > d32 + 8 * fabs(d16 - d32) + 1e-6 * amax;
            }
        }
        CHECK(bad == 0, "q4_0: |x - deq| <= d (+ f16 rounding of d) everywhere (%d over)", bad);
    }

    /* zeros: every type gives zeros back, no NaN from 0/0 */
    {
        float z[256] = { 0 }, out[256];
        int ok = 1;
        for (int k = 0; k < N_TYPES; k++) {
            const sqz_type t = all_types[k];
            uint8_t buf[512];
            memset(buf, 0xa5, sizeof buf);
            sqz_type_get(t)->from_float(z, buf, 256);
            to_float(t, buf, out, 256);
            for (int i = 0; i < 256; i++)
                if (out[i] != 0) { ok = 0; printf("#   %s: zeros -> %g\n", sqz_type_name(t), out[i]); break; }
        }
        CHECK(ok, "all-zero input quantizes to zeros for every type");
    }

    /* bad arguments */
    CHECK(sqz_quantize_rows(SQZ_TYPE_Q4_K, x, q, 1, 100, NULL) == 0 &&
              sqz_quantize_rows((sqz_type)5, x, q, 1, 256, NULL) == 0,
          "quantize_rows refuses a row length that is not a multiple of the block, or an unknown type");
    CHECK(sqz_quantize_rows(SQZ_TYPE_F16, x, q, 2, 8, NULL) == 32, "quantize_rows converts to f16");

    /* Importance matrix: quantizers given per-column weights should lower the weighted error
     * sum_j w_j (x_j - q_j)^2 that the matrix stands for, against the same quantizer without. */
    {
        float *imat = malloc(COLS * sizeof *imat);
        for (int j = 0; j < COLS; j++) {
            const float g = rng_gauss();
            imat[j] = expf(2.0f * g); /* spread over orders of magnitude, as activations are */
        }
        static const sqz_type imt[] = { SQZ_TYPE_Q2_K, SQZ_TYPE_Q3_K, SQZ_TYPE_Q4_K, SQZ_TYPE_Q5_K,
                                        SQZ_TYPE_Q6_K, SQZ_TYPE_Q4_0, SQZ_TYPE_Q4_1, SQZ_TYPE_Q5_0,
                                        SQZ_TYPE_Q5_1, SQZ_TYPE_IQ4_NL, SQZ_TYPE_IQ4_XS };
        for (size_t k = 0; k < sizeof imt / sizeof imt[0]; k++) {
            const sqz_type t = imt[k];
            double e_plain = 0, e_imat = 0;
            sqz_quantize_rows(t, x, q, ROWS, COLS, NULL);
            to_float(t, q, y, N);
            sqz_quantize_rows(t, x, q2, ROWS, COLS, imat);
            to_float(t, q2, y2, N);
            for (int i = 0; i < N; i++) {
                const double w = imat[i % COLS];
                e_plain += w * ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
                e_imat += w * ((double)y2[i] - x[i]) * ((double)y2[i] - x[i]);
            }
            printf("# weighted error %-6s without imatrix %.4g, with %.4g (ratio %.3f)\n", sqz_type_name(t),
                   e_plain, e_imat, e_imat / e_plain);
            CHECK(all_finite(y2, N) && e_imat < e_plain * 0.97, "%s: the imatrix lowers the weighted error",
                  sqz_type_name(t));
        }
        /* a flat imatrix leaves the unweighted error where the reference quantizer has it */
        for (int j = 0; j < COLS; j++) imat[j] = 1;
        for (size_t k = 0; k < sizeof imt / sizeof imt[0]; k++) {
            const sqz_type t = imt[k];
            sqz_quantize_rows(t, x, q2, ROWS, COLS, imat);
            to_float(t, q2, y2, N);
            const double r = rel_rmse(y2, x, N);
            CHECK(r < rel[t] * 1.1 && r > rel[t] * 0.7, "%s: flat imatrix rel RMSE %.4f vs %.4f without",
                  sqz_type_name(t), r, rel[t]);
        }
        free(imat);
    }
    free(x); free(y); free(y2); free(q); free(q2);
}

/* ------------------------------------------------------------------ a minimal GGUF v3 reader */

typedef struct {
    char name[128];
    int n_dims;
    int64_t ne[4];
    uint32_t type;
    uint64_t offset;
} gg_tensor;

typedef struct {
    const uint8_t *map;
    size_t size, pos;
    int ok;
    uint64_t n_tensors;
    gg_tensor *t;
    size_t data_start;
    uint32_t alignment, head_count, head_count_kv;
} gg_file;

static const void *gg_take(gg_file *g, size_t n) {
    if (!g->ok || n > g->size - g->pos) { g->ok = 0; return NULL; }
    const void *p = g->map + g->pos;
    g->pos += n;
    return p;
}
static uint64_t gg_uint(gg_file *g, size_t n) { /* little-endian, n <= 8 */
    const uint8_t *p = gg_take(g, n);
    uint64_t v = 0;
    for (size_t i = 0; p && i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
/* A GGUF string: u64 length + bytes (not NUL-terminated). */
static const char *gg_str(gg_file *g, uint64_t *len) {
    *len = gg_uint(g, 8);
    return gg_take(g, *len);
}

/* Skips (or, for the few u32 keys we want, reads) one value of GGUF type ty. */
static void gg_value(gg_file *g, uint32_t ty, uint32_t *out_u32, int depth) {
    static const size_t sizes[13] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    if (ty == 8) {
        uint64_t len;
        gg_str(g, &len);
    } else if (ty == 9 && depth == 0) {
        const uint32_t ety = (uint32_t)gg_uint(g, 4);
        const uint64_t n = gg_uint(g, 8);
        if (ety < 13 && ety != 8 && ety != 9) {
            if (n > g->size) g->ok = 0;
            else gg_take(g, sizes[ety] * n);
        } else {
            for (uint64_t i = 0; g->ok && i < n; i++) gg_value(g, ety, NULL, depth + 1);
        }
    } else if (ty < 13 && ty != 9) {
        const uint64_t v = gg_uint(g, sizes[ty]);
        if (out_u32 && (ty == 4 || ty == 5)) *out_u32 = (uint32_t)v;
    } else {
        g->ok = 0;
    }
}

static int gg_open(const char *path, gg_file *g) {
    memset(g, 0, sizeof *g);
    const int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return 0; }
    g->size = (size_t)st.st_size;
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return 0;
    g->map = m;
    g->ok = 1;
    g->alignment = 32;
    const uint8_t *magic = gg_take(g, 4);
    const uint32_t version = (uint32_t)gg_uint(g, 4);
    if (!magic || memcmp(magic, "GGUF", 4) != 0 || version != 3) return 0;
    g->n_tensors = gg_uint(g, 8);
    const uint64_t n_kv = gg_uint(g, 8);
    for (uint64_t i = 0; g->ok && i < n_kv; i++) {
        uint64_t klen;
        const char *key = gg_str(g, &klen);
        const uint32_t ty = (uint32_t)gg_uint(g, 4);
        uint32_t *want = NULL;
#define KEY_IS(s) (key && klen == strlen(s) && memcmp(key, s, klen) == 0)
        if (KEY_IS("general.alignment")) want = &g->alignment;
        else if (KEY_IS("llama.attention.head_count")) want = &g->head_count;
        else if (KEY_IS("llama.attention.head_count_kv")) want = &g->head_count_kv;
#undef KEY_IS
        gg_value(g, ty, want, 0);
    }
    if (!g->ok || g->n_tensors > 100000) return 0;
    g->t = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->t);
    for (uint64_t i = 0; g->ok && i < g->n_tensors; i++) {
        gg_tensor *t = &g->t[i];
        uint64_t nlen;
        const char *name = gg_str(g, &nlen);
        if (!name || nlen >= sizeof t->name) { g->ok = 0; break; }
        memcpy(t->name, name, nlen);
        t->n_dims = (int)gg_uint(g, 4);
        if (t->n_dims < 1 || t->n_dims > 4) { g->ok = 0; break; }
        for (int d = 0; d < 4; d++) t->ne[d] = d < t->n_dims ? (int64_t)gg_uint(g, 8) : 1;
        t->type = (uint32_t)gg_uint(g, 4);
        t->offset = gg_uint(g, 8);
    }
    if (!g->ok || g->alignment == 0) return 0;
    g->data_start = (g->pos + g->alignment - 1) / g->alignment * g->alignment;
    return 1;
}

static void gg_close(gg_file *g) {
    if (g->map) munmap((void *)g->map, g->size);
    free(g->t);
    memset(g, 0, sizeof *g);
}

/* The tensor's bytes, or NULL if its extent is outside the file or its type unknown. */
static const void *gg_data(const gg_file *g, const gg_tensor *t, size_t *nbytes) {
    const sqz_type_traits *tr = sqz_type_get((int)t->type);
    if (!tr || t->ne[0] % tr->block_size) return NULL;
    const size_t rows = (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
    *nbytes = rows * sqz_type_row_size((sqz_type)t->type, t->ne[0]);
    if (g->data_start + t->offset > g->size || *nbytes > g->size - g->data_start - t->offset) return NULL;
    return g->map + g->data_start + t->offset;
}

/* ------------------------------------------------------------------ GGUF vs safetensors */

/* The F16 original of a GGUF matrix as f32 [rows][cols], in GGUF's row order: llama.cpp's
 * converter permutes attn_q / attn_k rows within each head from HF's rotate-half pairing to
 * interleaved pairs: GGUF row (h, 2i + a) = HF row (h, a * head_dim/2 + i). NULL if absent. */
static float *original_of(const sqz_safetensors *st, const gg_file *g, const gg_tensor *t) {
    char hf[160];
    int layer = -1, n_head = 0;
    char part[64] = "";
    if (strcmp(t->name, "token_embd.weight") == 0) {
        snprintf(hf, sizeof hf, "model.embed_tokens.weight");
    } else if (sscanf(t->name, "blk.%d.%63[a-z_].weight", &layer, part) == 2) {
        static const struct { const char *gguf, *hf; } map[] = {
            { "attn_q", "self_attn.q_proj" }, { "attn_k", "self_attn.k_proj" },
            { "attn_v", "self_attn.v_proj" }, { "attn_output", "self_attn.o_proj" },
            { "ffn_gate", "mlp.gate_proj" },  { "ffn_up", "mlp.up_proj" },
            { "ffn_down", "mlp.down_proj" },
        };
        const char *h = NULL;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (strcmp(part, map[i].gguf) == 0) h = map[i].hf;
        if (!h) return NULL;
        snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", layer, h);
        if (strcmp(part, "attn_q") == 0) n_head = (int)g->head_count;
        if (strcmp(part, "attn_k") == 0) n_head = (int)g->head_count_kv;
    } else {
        return NULL;
    }
    const sqz_st_tensor *s = sqz_st_find(st, hf);
    if (!s || s->type != SQZ_TYPE_F16 || s->n_dims != 2 || s->shape[0] != t->ne[1] || s->shape[1] != t->ne[0])
        return NULL;
    const int64_t rows = t->ne[1], cols = t->ne[0];
    if (n_head > 0 && rows % (2 * n_head)) return NULL;
    float *out = malloc((size_t)(rows * cols) * sizeof *out);
    const int64_t hd = n_head > 0 ? rows / n_head : 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t src_row = r;
        if (n_head > 0) {
            const int64_t h = r / hd, w = r % hd, i = w / 2, a = w % 2;
            src_row = h * hd + a * (hd / 2) + i;
        }
        const uint8_t *p = (const uint8_t *)s->data + (size_t)(src_row * cols) * 2;
        for (int64_t c = 0; c < cols; c++) {
            uint16_t h16;
            memcpy(&h16, p + 2 * c, 2);
            out[r * cols + c] = sqz_f16_to_f32(h16);
        }
    }
    return out;
}

typedef struct {
    int tensors, identical;
    int64_t blocks, bad_blocks;
    double err_llama, err_sqz, err_requant, sum_sq; /* squared-error sums */
} type_stats;

/* Plausible relative RMSE of each type on these weights (llama.cpp's, with its imatrix, and
 * sqz's without), as a sanity band around what the bits allow. */
static void rel_band(uint32_t t, double *lo, double *hi) {
    switch (t) {
    case SQZ_TYPE_Q2_K: *lo = 0.15; *hi = 0.50; break;
    case SQZ_TYPE_Q3_K: *lo = 0.07; *hi = 0.25; break;
    case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q4_0: *lo = 0.03; *hi = 0.15; break;
    case SQZ_TYPE_Q5_K: *lo = 0.015; *hi = 0.07; break;
    case SQZ_TYPE_Q6_K: *lo = 0.007; *hi = 0.035; break;
    default: *lo = 0; *hi = 1; break;
    }
}

/* For every quantized matrix of the GGUF file: dequantize llama.cpp's blocks and measure them
 * against the F16 original; quantize the original with sqz (no imatrix) and compare bytes;
 * requantize llama.cpp's dequantized values with sqz and measure. expect_identical(t, name)
 * says where byte identity is required (no imatrix was involved). */
static void check_gguf(const char *label, const char *file, const sqz_safetensors *st, int quick,
                       int (*expect_identical)(const gg_tensor *)) {
    gg_file g;
    if (!gg_open(file, &g)) {
        CHECK(0, "%s: parse %s", label, file);
        gg_close(&g);
        return;
    }
    CHECK(g.n_tensors == 74 && g.head_count == 8 && g.head_count_kv == 2,
          "%s: GGUF v3 header, %llu tensors, %u/%u heads", label, (unsigned long long)g.n_tensors,
          g.head_count, g.head_count_kv);
    type_stats stats[SQZ_TYPE_COUNT];
    memset(stats, 0, sizeof stats);
    int missing = 0, must_match = 0, matched = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gg_tensor *t = &g.t[i];
        if (t->type == SQZ_TYPE_F32 || t->type == SQZ_TYPE_F16) continue;
        /* quick mode (sanitizers): layer 0 and the embeddings only */
        if (quick && strncmp(t->name, "blk.0.", 6) != 0 && strcmp(t->name, "token_embd.weight") != 0) continue;
        size_t nbytes;
        const void *qd = gg_data(&g, t, &nbytes);
        float *orig = qd ? original_of(st, &g, t) : NULL;
        if (!orig) {
            printf("#   %s: %s (type %u) has no data or no original\n", label, t->name, t->type);
            missing++;
            continue;
        }
        const sqz_type ty = (sqz_type)t->type;
        const int64_t rows = t->ne[1], cols = t->ne[0], n = rows * cols;
        float *deq = malloc((size_t)n * sizeof *deq), *deq2 = malloc((size_t)n * sizeof *deq2);
        uint8_t *mine = malloc(nbytes);
        to_float(ty, qd, deq, n);
        const size_t wrote = sqz_quantize_rows(ty, orig, mine, rows, cols, NULL);
        type_stats *s = &stats[ty];
        s->tensors++;
        const size_t bsz = sqz_type_get(ty)->type_size;
        int64_t bad = 0;
        for (size_t b = 0; wrote == nbytes && b < nbytes / bsz; b++)
            bad += memcmp(mine + b * bsz, (const uint8_t *)qd + b * bsz, bsz) != 0;
        if (wrote != nbytes) bad = (int64_t)(nbytes / bsz);
        s->blocks += (int64_t)(nbytes / bsz);
        s->bad_blocks += bad;
        s->identical += bad == 0;
        const int need = expect_identical(t);
        must_match += need;
        matched += need && bad == 0;
        if (need && bad) printf("#   %s: %s: %lld of %zu blocks differ\n", label, t->name, (long long)bad, nbytes / bsz);
        to_float(ty, mine, deq2, n);
        for (int64_t j = 0; j < n; j++) {
            s->sum_sq += (double)orig[j] * orig[j];
            s->err_llama += ((double)deq[j] - orig[j]) * ((double)deq[j] - orig[j]);
            s->err_sqz += ((double)deq2[j] - orig[j]) * ((double)deq2[j] - orig[j]);
        }
        /* requantize llama.cpp's values without an imatrix: must stay finite and close */
        sqz_quantize_rows(ty, deq, mine, rows, cols, NULL);
        to_float(ty, mine, deq2, n);
        for (int64_t j = 0; j < n; j++) s->err_requant += ((double)deq2[j] - orig[j]) * ((double)deq2[j] - orig[j]);
        free(deq); free(deq2); free(mine); free(orig);
    }
    CHECK(missing == 0, "%s: every quantized matrix has its F16 original (%d missing)", label, missing);
    if (must_match)
        CHECK(matched == must_match, "%s: %d/%d tensors quantized without imatrix are byte-identical to llama-quantize",
              label, matched, must_match);
    for (int ty = 0; ty < SQZ_TYPE_COUNT; ty++) {
        const type_stats *s = &stats[ty];
        if (!s->tensors) continue;
        const double rl = sqrt(s->err_llama / s->sum_sq), rs = sqrt(s->err_sqz / s->sum_sq);
        const double rq = sqrt(s->err_requant / s->sum_sq);
        printf("# %s %-5s %2d tensors: rel RMSE llama.cpp %.5f, sqz %.5f, sqz requantizing llama.cpp's %.5f; "
               "%d tensors / %lld of %lld blocks byte-identical\n",
               label, sqz_type_name(ty), s->tensors, rl, rs, rq, s->identical,
               (long long)(s->blocks - s->bad_blocks), (long long)s->blocks);
        double lo, hi;
        rel_band((uint32_t)ty, &lo, &hi);
        CHECK(rl > lo && rl < hi, "%s %s: llama.cpp's blocks dequantize to rel RMSE %.4f in [%g, %g]", label,
              sqz_type_name(ty), rl, lo, hi);
        CHECK(rs > 0.7 * rl && rs < 1.3 * rl, "%s %s: sqz without imatrix %.4f is close to llama.cpp's %.4f", label,
              sqz_type_name(ty), rs, rl);
        CHECK(isfinite(rq) && rq < 1.6 * rl,
              "%s %s: requantizing llama.cpp's values gives a similar error %.4f (%.4f)", label,
              sqz_type_name(ty), rq, rl);
    }
    gg_close(&g);
}

static int all_identical(const gg_tensor *t) { (void)t; return 1; }
/* In the imatrix files, only token_embd was quantized without imatrix data (the imatrix
 * covers the 56 blk.* matrices). */
static int embd_identical(const gg_tensor *t) { return strcmp(t->name, "token_embd.weight") == 0; }

static void test_gguf(void) {
    const char *stp = test_shared("models/sqz-llama-26m/model.safetensors");
    if (!stp) {
        SKIP("no ../shared/models/sqz-llama-26m: llama.cpp GGUF comparison");
        return;
    }
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_safetensors *st = NULL;
    if (sqz_st_open(ctx, stp, &st) != SQZ_OK) {
        CHECK(0, "open %s: %s", stp, sqz_ctx_error(ctx));
        sqz_ctx_free(ctx);
        return;
    }
    const int quick = test_quick();
    static const struct { const char *label, *rel; int (*ident)(const gg_tensor *); } files[] = {
        { "Q4_0-pure", "models/gguf/sqz-llama-26m-Q4_0-pure.gguf", all_identical },
        { "Q4_K_M-imatrix", "models/gguf/sqz-llama-26m-Q4_K_M-imatrix.gguf", embd_identical },
        { "Q2_K-imatrix", "models/gguf/sqz-llama-26m-Q2_K-imatrix.gguf", embd_identical },
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const char *p = test_shared(files[i].rel);
        if (!p) {
            SKIP("no %s", files[i].rel);
            continue;
        }
        check_gguf(files[i].label, p, st, quick, files[i].ident);
    }
    sqz_st_close(st);
    sqz_ctx_free(ctx);
}

int main(void) {
    test_hand_simple();
    test_hand_k();
    test_random();
    test_gguf();
    return test_done();
}
