/* test_prune_gptq.c - SparseGPT + GPTQ in one pass (prune/sgptq.h) against a naive reference on
 * small random matrices with a random SPD Hessian: the reference is plain loops in double - the
 * inverse Hessian by Gauss-Jordan, every column's error (w - q) / [H^-1]_jj pushed at once onto
 * all later columns by the OBS update -[H^-1]_j,: and column j then eliminated from H^-1; no
 * Cholesky factor, no lazy batches - with the same mask rule and the type's own block quantizer
 * (sqz_gptq_block_init / _set / _get, shared with GPTQ). Then: density 1 is GPTQ's bytes; the
 * joint pass beats pruning then rounding; the refusals. */
#include "prune/pruner.h"
#include "prune/sgptq.h"
#include "quant/gptq.h"
#include "formats/quant.h"
#include "sqz.h"
#include "test.h"

#define PRUNE_REF_SEED 0x9E3779B97F4A7C15ull
#include "prune_ref.h"

/* The naive joint pass (see the file comment): Q [rows x cols] the dequantized result, mask 1
 * for the removed weights. B: the mask block (unstructured), as sqz_sgptq rounds it. */
static void ref_sgptq(sqz_type type, const float *Wf, int rows, int cols, const double *H0, const sqz_prune_level *lv,
                      int B, double percdamp, float *Q, uint8_t *mask) {
    const int n = cols, qk = sqz_type_get(type)->block_size;
    const size_t ts = sqz_type_get(type)->type_size;
    double *H = malloc((size_t)n * n * sizeof *H), *A = malloc((size_t)n * 2 * n * sizeof *A);
    double *Hi = malloc((size_t)n * n * sizeof *Hi), *dseq = malloc((size_t)n * sizeof *dseq);
    double *W = malloc((size_t)rows * n * sizeof *W), *Wb = malloc((size_t)rows * n * sizeof *Wb);
    uint8_t *blk = malloc((size_t)rows * (n / qk) * ts);
    memcpy(H, H0, (size_t)n * n * sizeof *H);
    for (int i = 0; i < rows * n; i++) W[i] = Wf[i];
    double tr = 0;
    for (int i = 0; i < n; i++) {
        if (H[i * n + i] == 0) { /* dead input */
            H[i * n + i] = 1;
            for (int r = 0; r < rows; r++) W[r * n + i] = 0;
        }
        tr += H[i * n + i];
    }
    for (int i = 0; i < n; i++) H[i * n + i] += percdamp * tr / n;
    ref_inverse_seq(H, n, A, Hi, dseq); /* H^-1 and [H^-1]_ii with columns < i eliminated */
    memset(mask, 0, (size_t)rows * n);
    for (int i = 0; i < n; i++) {
        if (!lv->n && i % B == 0) { /* the batch's mask from the current weights, all rows */
            const int i2 = i + B < n ? i + B : n, cnt = i2 - i;
            float *sc = malloc((size_t)rows * cnt * sizeof *sc);
            uint8_t *pr = malloc((size_t)rows * cnt);
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < cnt; j++) {
                    const float w = (float)W[r * n + i + j], d = (float)sqrt(dseq[i + j]);
                    sc[r * cnt + j] = w * w / (d * d);
                }
            ref_smallest(sc, rows * cnt, (int)floor((1 - lv->density) * rows * cnt + 1e-7), pr);
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < cnt; j++) mask[r * n + i + j] = pr[r * cnt + j];
            free(sc);
            free(pr);
        }
        if (i % qk == 0)
            for (int r = 0; r < rows; r++) {
                if (lv->n) /* N:M: the groups starting in this block, provisionally (for the scales) */
                    for (int g = i; g < i + qk; g++) {
                        if (g % lv->m) continue;
                        float sc[64];
                        for (int j = 0; j < lv->m; j++) {
                            const float w = (float)W[r * n + g + j], d = (float)sqrt(dseq[g + j]);
                            sc[j] = w * w / (d * d);
                        }
                        ref_smallest(sc, lv->m, lv->m - lv->n, mask + r * n + g);
                    }
                float x[256], imp[256];
                for (int j = 0; j < qk; j++) {
                    const int k = mask[r * n + i + j];
                    x[j] = k ? 0.0f : (float)W[r * n + i + j];
                    imp[j] = (float)(1.0 / dseq[i + j]);
                    Wb[r * n + i + j] = W[r * n + i + j];
                }
                sqz_gptq_block_init(type, x, imp, blk + ((size_t)r * (n / qk) + i / qk) * ts);
            }
        if (lv->n && i % lv->m == 0 && i % qk) /* N:M: each group chooses again at its first column */
            for (int r = 0; r < rows; r++) {
                float sc[64];
                for (int j = 0; j < lv->m; j++) {
                    const float w = (float)W[r * n + i + j], d = (float)sqrt(dseq[i + j]);
                    sc[j] = w * w / (d * d);
                }
                ref_smallest(sc, lv->m, lv->m - lv->n, mask + r * n + i);
            }
        for (int r = 0; r < rows; r++) {
            void *b = blk + ((size_t)r * (n / qk) + i / qk) * ts;
            const double w = W[r * n + i];
            const float q = mask[r * n + i]   ? sqz_gptq_block_set(type, b, i % qk, 0.0f)
                            : w == Wb[r * n + i] ? sqz_gptq_block_get(type, b, i % qk) /* not moved: the quantizer's */
                                                 : sqz_gptq_block_set(type, b, i % qk, (float)w);
            Q[r * n + i] = q;
            const double e = (w - q) / Hi[i * n + i];
            for (int j = i + 1; j < n; j++) W[r * n + j] -= e * Hi[i * n + j];
        }
        for (int a = i + 1; a < n; a++) /* eliminate column i from H^-1 */
            for (int b = i + 1; b < n; b++) Hi[a * n + b] -= Hi[a * n + i] * Hi[i * n + b] / Hi[i * n + i];
    }
    free(H), free(A), free(Hi), free(dseq), free(W), free(Wb), free(blk);
}

static const char *lv_name(const sqz_prune_level *lv, char *buf) {
    if (lv->n) sprintf(buf, "%d:%d", lv->n, lv->m);
    else sprintf(buf, "density %g", lv->density);
    return buf;
}

static void test_reference(void) {
    const struct { sqz_type type; int rows, cols, block, B; } cases[] = {
        { SQZ_TYPE_Q4_0, 80, 128, 64, 64 }, /* two chunks of rows, two batches of two blocks */
        { SQZ_TYPE_Q8_0, 80, 128, 64, 64 },
        { SQZ_TYPE_Q4_K, 24, 512, 128, 256 }, /* a k-quant with a min: removed weights near 0 */
    };
    const sqz_prune_level levels[] = { { .density = 0.5 }, { .n = 2, .m = 4, .density = 0.5 } };
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, 3);
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const sqz_type type = cases[ci].type;
        const int R = cases[ci].rows, C = cases[ci].cols;
        double *H = malloc((size_t)C * C * sizeof *H);
        make_h(H, C, 3 * C, 0.5);
        for (int r = 0; r < C; r++) H[7 * C + r] = H[r * C + 7] = 0; /* a dead input */
        float *W = malloc((size_t)R * C * sizeof *W), *deq = malloc((size_t)R * C * sizeof *deq);
        float *ref = malloc((size_t)R * C * sizeof *ref), *rtn = malloc((size_t)R * C * sizeof *rtn);
        uint8_t *mk = malloc((size_t)R * C), *rmk = malloc((size_t)R * C);
        const size_t rs = sqz_type_row_size(type, C);
        uint8_t *out = malloc((size_t)R * rs);
        for (size_t li = 0; li < sizeof levels / sizeof *levels; li++) {
            const sqz_prune_level *lv = &levels[li];
            char buf[32];
            const char *what = lv_name(lv, buf);
            for (int i = 0; i < R * C; i++) W[i] = (float)nrand();
            const sqz_status st = sqz_sgptq(ctx, type, W, R, C, H, lv, 0.01, cases[ci].block, out, deq, mk);
            CHECK(st == SQZ_OK, "%s %s: ran (%s)", sqz_type_name(type), what, st ? sqz_ctx_error(ctx) : "");
            if (st) continue;
            ref_sgptq(type, W, R, C, H, lv, cases[ci].B, 0.01, ref, rmk);
            /* row by row, bit for bit (here every row; on another machine's BLAS a near-tie of
             * the rounding or of the scale search between f32 and double inputs may send a row
             * its own way from there on: at most a tenth of them) */
            int rows_same = 0;
            for (int r = 0; r < R; r++)
                rows_same += !memcmp(deq + r * C, ref + r * C, (size_t)C * sizeof *deq) &&
                             !memcmp(mk + r * C, rmk + r * C, (size_t)C);
            CHECK(rows_same >= R - R / 10,
                  "%s %s: the naive loop's mask and quantized weights, bit for bit, in %d of %d rows",
                  sqz_type_name(type), what, rows_same, R);
            /* the removed share: per batch (unstructured) or per group (N:M) */
            int share_ok = 1, zeros_ok = 1;
            for (int r = 0; r < R && lv->n; r++)
                for (int g = 0; g < C; g += lv->m) {
                    int z = 0;
                    for (int j = 0; j < lv->m; j++) z += mk[r * C + g + j];
                    share_ok &= z == lv->m - lv->n;
                }
            for (int b = 0; b < C && !lv->n; b += cases[ci].B) {
                int z = 0;
                for (int r = 0; r < R; r++)
                    for (int j = b; j < b + cases[ci].B; j++) z += mk[r * C + j];
                share_ok &= z == (int)floor((1 - lv->density) * R * cases[ci].B + 1e-7);
            }
            for (int i = 0; i < R * C; i++)
                if (mk[i] && type != SQZ_TYPE_Q4_K) zeros_ok &= deq[i] == 0.0f;
            CHECK(share_ok, "%s %s: each batch / group loses its exact share", sqz_type_name(type), what);
            if (type != SQZ_TYPE_Q4_K) CHECK(zeros_ok, "%s %s: the removed weights are stored as 0", sqz_type_name(type), what);
            /* to_float of the bytes is deq: the file's weights are the joint pass's */
            int bytes_ok = 1;
            for (int r = 0; r < R; r++) {
                sqz_type_get(type)->to_float(out + r * rs, rtn, C);
                bytes_ok &= !memcmp(rtn, deq + r * C, (size_t)C * sizeof *rtn);
            }
            CHECK(bytes_ok, "%s %s: the bytes dequantize to deq", sqz_type_name(type), what);
            /* better than SparseGPT alone followed by plain rounding */
            void *state = NULL;
            const sqz_pruner *p = NULL;
            char spec[48];
            snprintf(spec, sizeof spec, "sparsegpt:block=%d", cases[ci].B);
            sqz_pruner_open(NULL, spec, &p, &state);
            memcpy(rtn, W, (size_t)R * C * sizeof *rtn);
            p->prune(state, ctx, rtn, R, C, H, lv);
            free(state);
            sqz_quantize_rows(type, rtn, out, R, C, NULL);
            for (int r = 0; r < R; r++) sqz_type_get(type)->to_float(out + r * rs, rtn + r * C, C);
            const double e_j = out_err(W, deq, R, C, H), e_r = out_err(W, rtn, R, C, H);
            /* Q8_0's rounding is a sliver of the pruning error: within 1 % there (the masks differ) */
            CHECK(e_j < (type == SQZ_TYPE_Q8_0 ? 1.01 : 1.0) * e_r,
                  "%s %s: output error %.4g below sparsegpt-then-round's %.4g%s", sqz_type_name(type), what, e_j, e_r,
                  type == SQZ_TYPE_Q8_0 ? " (within 1 %)" : "");
        }
        free(H), free(W), free(deq), free(ref), free(rtn), free(mk), free(rmk), free(out);
    }
    sqz_ctx_free(ctx);
}

/* Density 1: nothing removed, and the bytes are GPTQ's (the paper's options: no refit, no
 * coordinate descent, no act-order; the same damping and block). */
static void test_density_one(void) {
    const sqz_type types[] = { SQZ_TYPE_Q4_0, SQZ_TYPE_Q8_0, SQZ_TYPE_Q4_K, SQZ_TYPE_Q6_K };
    enum { R = 70, C = 512 };
    static double H[C * C];
    make_h(H, C, 2 * C, 1.0);
    for (int r = 0; r < C; r++) H[3 * C + r] = H[r * C + 3] = 0;
    static float W[R * C], deq[R * C];
    static uint8_t mk[R * C];
    for (int i = 0; i < R * C; i++) W[i] = (float)nrand();
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, 2);
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        const size_t n = (size_t)R * sqz_type_row_size(types[t], C);
        uint8_t *a = malloc(n), *b = malloc(n);
        const sqz_prune_level one = { .density = 1 };
        const sqz_status s1 = sqz_sgptq(ctx, types[t], W, R, C, H, &one, 0.01, 128, a, deq, mk);
        sqz_gptq_opts o = sqz_gptq_default_opts();
        o.percdamp = 0.01, o.block = 128, o.refit = 0, o.cd_sweeps = 0, o.cond_imp = 1, o.act_order = 0;
        const sqz_status s2 = sqz_gptq_quantize(ctx, types[t], W, R, C, H, &o, b, NULL);
        int removed = 0;
        for (int i = 0; i < R * C; i++) removed += mk[i];
        CHECK(!s1 && !s2 && removed == 0 && !memcmp(a, b, n), "%s density 1: GPTQ's bytes, nothing removed",
              sqz_type_name(types[t]));
        free(a), free(b);
    }
    sqz_ctx_free(ctx);
}

static void test_refusals(void) {
    enum { R = 4, C = 128 };
    static double H[C * C];
    make_h(H, C, 2 * C, 0.5);
    static float W[R * C];
    static uint8_t out[R * C * 2];
    for (int i = 0; i < R * C; i++) W[i] = (float)nrand();
    sqz_ctx *ctx = sqz_ctx_new();
    const struct { sqz_type type; sqz_prune_level lv; int cols; sqz_status want; const char *msg; } cases[] = {
        { SQZ_TYPE_Q4_0, { .density = 0 }, C, SQZ_ERR_ARG, "outside (0, 1]" },
        { SQZ_TYPE_Q4_0, { .density = 1.5 }, C, SQZ_ERR_ARG, "outside (0, 1]" },
        { SQZ_TYPE_Q4_0, { .density = NAN }, C, SQZ_ERR_ARG, "outside (0, 1]" },
        { SQZ_TYPE_Q8_0, { .n = 3, .m = 5 }, C, SQZ_ERR_ARG, "M does not divide" },
        { SQZ_TYPE_Q8_0, { .n = 4, .m = 2 }, C, SQZ_ERR_ARG, "needs 0 < N < M" },
        { SQZ_TYPE_Q8_0, { .n = 2, .m = 3 }, 96, SQZ_ERR_ARG, "divide one another" },
        { SQZ_TYPE_Q4_0, { .density = 0.5 }, 100, SQZ_ERR_ARG, "multiple of" },
        { SQZ_TYPE_F16, { .density = 0.5 }, C, SQZ_ERR_UNSUPPORTED, "not supported" },
        { SQZ_TYPE_IQ4_NL, { .density = 0.5 }, C, SQZ_ERR_UNSUPPORTED, "not supported" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int c = cases[i].cols;
        double *Hc = malloc((size_t)c * c * sizeof *Hc);
        for (int a = 0; a < c; a++)
            for (int b = 0; b < c; b++) Hc[a * c + b] = a < C && b < C ? H[a * C + b] : (a == b);
        const sqz_status st = sqz_sgptq(ctx, cases[i].type, W, R, c, Hc, &cases[i].lv, 0.01, 128, out, NULL, NULL);
        CHECK(st == cases[i].want && strstr(sqz_ctx_error(ctx), cases[i].msg), "refused (%s): %s", cases[i].msg,
              sqz_ctx_error(ctx));
        free(Hc);
    }
    const sqz_prune_level half = { .density = 0.5 };
    CHECK(sqz_sgptq(ctx, SQZ_TYPE_Q4_0, W, R, C, NULL, &half, 0.01, 128, out, NULL, NULL) == SQZ_ERR_ARG,
          "no Hessian refused: %s", sqz_ctx_error(ctx));
    W[5] = NAN;
    CHECK(sqz_sgptq(ctx, SQZ_TYPE_Q4_0, W, R, C, H, &half, 0.01, 128, out, NULL, NULL) == SQZ_ERR_ARG &&
              strstr(sqz_ctx_error(ctx), "non-finite"),
          "a NaN weight refused: %s", sqz_ctx_error(ctx));
    sqz_ctx_free(ctx);
}

int main(void) {
    test_reference();
    test_density_one();
    test_refusals();
    return test_done();
}
