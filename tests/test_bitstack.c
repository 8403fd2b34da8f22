/* test_bitstack.c - BitStack (issue 18): sign packing round trip (row lengths not a multiple
 * of 8 included); the iterative absolute-value decomposition against a naive reference (each
 * block's signs are those of the residual the earlier blocks leave, its magnitude the rank-r
 * projection of |residual| on the top eigenvectors of |R|^T |R|, math/eigen.h, to the f16
 * rounding of the stored factors); the residual norm falls strictly with every block and the
 * reported norms are the stored blocks'; the reconstruction divides the scale out; and on the
 * embedded model (stories260K) through sqz_bitstack: the file loads, --memory's prefix is
 * monotone (bytes, blocks and every matrix's stack only grow with the budget, never past it),
 * a budget below what every size holds is SQZ_ERR_RANGE, a model that is not BitStack is
 * SQZ_ERR_ARG, and a truncated or corrupted file is an error, not a crash. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/bitstack.h"
#include "math/eigen.h"
#include "model/model.h"
#include "search/bitstack.h"
#include "sqz.h"
#include "test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

static void test_signs(void) {
    enum { N = 29 };
    float x[N], y[N];
    uint8_t bits[4];
    int ok = 1;
    for (int t = 0; t < 50; t++) {
        for (int j = 0; j < N; j++) x[j] = (float)nrand();
        x[3] = 0; /* zero counts as positive */
        x[7] = -0.0f;
        memset(bits, 0xff, sizeof bits);
        sqz_bs_pack_signs(x, N, bits);
        sqz_bs_unpack_signs(bits, N, y);
        for (int j = 0; j < N; j++) ok &= y[j] == (x[j] < 0 ? -1.0f : 1.0f);
        ok &= (bits[3] >> 5) == 0; /* unused bits of the last byte are 0 */
    }
    CHECK(ok, "sign packing round trip, 29 elements (4 bytes, the last one partial)");
}

/* The naive rank-r magnitude of A [m x n]: A V V^T, V the top r eigenvectors of A^T A. */
static void naive_rank_r(const float *A, int m, int n, int r, double *P) {
    double *g = calloc((size_t)n * n, sizeof *g);
    float *vecs = malloc((size_t)r * n * sizeof *vecs);
    for (int i = 0; i < m; i++)
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++) g[a * n + b] += (double)A[i * n + a] * A[i * n + b];
    sqz_eigen_top(g, n, r, vecs, NULL);
    for (int i = 0; i < m; i++) {
        double c[16] = { 0 };
        for (int t = 0; t < r; t++)
            for (int j = 0; j < n; j++) c[t] += (double)A[i * n + j] * vecs[t * n + j];
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int t = 0; t < r; t++) s += c[t] * vecs[t * n + j];
            P[i * n + j] = s;
        }
    }
    free(g), free(vecs);
}

static void test_decompose(void) {
    enum { M = 24, N = 36, K = 6, R = 3 };
    sqz_ctx *ctx = sqz_ctx_new();
    static float W[M * N], s[N], Rs[M * N], acc[M * N], A[M * N], rec[M * N];
    static uint8_t sign[K * M * 5];
    static uint16_t u[K * M * R], v[K * R * N];
    static double P[M * N];
    double rel[K];
    for (int i = 0; i < M * N; i++) W[i] = (float)(nrand() * 0.1);
    for (int j = 0; j < N; j++) s[j] = (float)(0.5 + 2 * urand());
    CHECK(sqz_bs_decompose(ctx, W, M, N, s, K, R, sign, u, v, rel) == SQZ_OK, "decompose 24 x 36, K=6, r=3");
    const sqz_bs_tensor b = { .n_blocks = K, .rank = R, .n_use = K, .scale = s, .sign = sign, .u = u, .v = v };
    double n0 = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) Rs[i * N + j] = W[i * N + j] * s[j], n0 += (double)Rs[i * N + j] * Rs[i * N + j];
    n0 = sqrt(n0);
    memset(acc, 0, sizeof acc);
    int signs_ok = 1, dec_ok = 1, rel_ok = 1;
    double worst = 0, prev = 1;
    for (int k = 0; k < K; k++) {
        /* the residual the earlier blocks leave, from the stored blocks */
        for (int i = 0; i < M * N; i++) A[i] = Rs[i] - acc[i];
        const uint8_t *sk = sign + (size_t)k * M * 5;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                const int neg = (sk[i * 5 + j / 8] >> (j % 8)) & 1;
                if (fabsf(A[i * N + j]) > 1e-5f) signs_ok &= neg == (A[i * N + j] < 0);
            }
        for (int i = 0; i < M * N; i++) A[i] = fabsf(A[i]);
        naive_rank_r(A, M, N, R, P);
        /* the block's magnitude u_k v_k against the naive projection */
        double scale = 0;
        for (int i = 0; i < M * N; i++) scale = fmax(scale, fabs(P[i]));
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double mag = 0;
                for (int t = 0; t < R; t++)
                    mag += (double)sqz_f16_to_f32(u[(k * M + i) * R + t]) * sqz_f16_to_f32(v[(k * R + t) * N + j]);
                worst = fmax(worst, fabs(mag - P[i * N + j]) / scale);
            }
        dec_ok &= worst < 3e-3;
        sqz_bs_add_block(&b, M, N, k, acc);
        double nr = 0;
        for (int i = 0; i < M * N; i++) nr += (double)(Rs[i] - acc[i]) * (Rs[i] - acc[i]);
        nr = sqrt(nr) / n0;
        rel_ok &= fabs(nr - rel[k]) < 1e-4 && rel[k] < prev;
        printf("# block %d: ||R_k|| / ||R_0|| = %.5f (reported %.5f)\n", k + 1, nr, rel[k]);
        prev = rel[k];
    }
    CHECK(signs_ok, "every block's signs are the signs of the residual the earlier blocks leave");
    CHECK(dec_ok, "every block's magnitude is the naive rank-3 projection of |residual| (max rel. diff %.2g)", worst);
    CHECK(rel_ok, "the residual norm falls strictly with every block, as reported");
    /* the reconstruction: the blocks summed, the scale divided out */
    sqz_bs_reconstruct(&b, M, N, K, rec);
    double md = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) md = fmax(md, fabs(rec[i * N + j] - acc[i * N + j] / s[j]));
    float row[N];
    sqz_bs_row(&b, M, N, 5, row);
    double mr = 0;
    for (int j = 0; j < N; j++) mr = fmax(mr, fabs(row[j] - rec[5 * N + j]));
    CHECK(md < 1e-6 && mr < 1e-6, "reconstruction = sum of the blocks / s, and a row alone the same (%.2g, %.2g)", md,
          mr);
    CHECK(sqz_bs_decompose(ctx, W, M, N, s, K, 25, sign, u, v, rel) == SQZ_ERR_ARG, "rank 25 > 24 rows: %s",
          sqz_ctx_error(ctx));
    sqz_ctx_free(ctx);
}

static int write_file(const char *path, const uint8_t *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(buf, 1, n, f);
    return fclose(f);
}

static void test_model(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &m)) {
        CHECK(0, "load: %s", sqz_ctx_error(ctx));
        return;
    }
    FILE *f = fopen("assets/tinystories-calib-slice.txt", "rb");
    static char text[20000];
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    int32_t *ids = NULL;
    size_t n = 0;
    sqz_tokenize(ctx, m, text, len, 0, &ids, &n);
    char dir[] = "/tmp/sqz-test-bitstack-XXXXXX";
    if (!mkdtemp(dir) || n < 512) {
        CHECK(0, "temp dir and calibration text (%zu tokens)", n);
        return;
    }
    char out[600], bad[600];
    snprintf(out, sizeof out, "%s/s.sqzf", dir);
    snprintf(bad, sizeof bad, "%s/bad.sqzf", dir);
    CHECK(sqz_model_bitstack_fit(ctx, m, 0, NULL) == SQZ_ERR_ARG, "--memory on a model that is not BitStack: %s",
          sqz_ctx_error(ctx));
    const sqz_bitstack_opts o = { .calib = ids, .n_calib = n, .calib_ctx = 128, .rank = 2, .iters = 4, .sort_windows = 1 };
    sqz_bitstack_result r;
    CHECK(sqz_bitstack(ctx, m, out, &o, &r) == SQZ_OK && r.n_matrices == 35 && r.n_blocks == 140,
          "sqz_bitstack: 35 matrices x 4 blocks (%s)", sqz_ctx_error(ctx));
    const sqz_bitstack_opts o0 = { .calib = ids, .n_calib = 100, .calib_ctx = 128 };
    CHECK(sqz_bitstack(ctx, m, bad, &o0, NULL) == SQZ_ERR_ARG && access(bad, F_OK) != 0,
          "less than one calibration window: an error and no file (%s)", sqz_ctx_error(ctx));
    sqz_model *bm = NULL;
    CHECK(sqz_model_load(ctx, out, NULL, &bm) == SQZ_OK && sqz_model_is_bitstack(bm), "the stack loads (%s)",
          sqz_ctx_error(ctx));
    if (bm) {
        sqz_bitstack_fit_info all, fi;
        sqz_model_bitstack_fit(ctx, bm, 0, &all);
        CHECK(all.n_loaded == 140 && all.bytes == all.all_bytes && all.fixed_bytes == r.fixed_bytes &&
                  all.all_bytes == r.fixed_bytes + r.block_bytes,
              "no budget: every block, %llu bytes (fixed %llu)", (unsigned long long)all.bytes,
              (unsigned long long)all.fixed_bytes);
        CHECK(all.min_bytes == r.min_bytes && all.min_bytes > all.fixed_bytes &&
                  sqz_model_bitstack_fit(ctx, bm, all.min_bytes - 1, NULL) == SQZ_ERR_RANGE,
              "a budget below the smallest size (every first block): %s", sqz_ctx_error(ctx));
        int mono = 1, within = 1, steps = 0;
        uint64_t prev_bytes = 0;
        int prev_loaded = -1, prev_use[64] = { 0 };
        for (int t = 0; t <= 23; t++) {
            const uint64_t mem = all.min_bytes + (all.all_bytes - all.min_bytes) * (uint64_t)t / 23;
            if (sqz_model_bitstack_fit(ctx, bm, mem, &fi)) {
                mono = 0;
                break;
            }
            within &= fi.bytes <= mem;
            mono &= fi.bytes >= prev_bytes && fi.n_loaded >= prev_loaded;
            for (int i = 0; i < bm->n_bs && i < 64; i++) {
                mono &= bm->bs[i].view.n_use >= prev_use[i];
                prev_use[i] = (int)bm->bs[i].view.n_use;
            }
            prev_bytes = fi.bytes, prev_loaded = fi.n_loaded;
            steps++;
        }
        CHECK(mono && within && prev_loaded == 140 && steps == 24,
              "%d budgets from the smallest to all: bytes, blocks and every stack only grow, never past the budget", steps);
        /* every block loaded: the matrices are the stored sums; a session runs */
        sqz_model_bitstack_fit(ctx, bm, 0, NULL);
        sqz_ppl_opts po = { .n_ctx = 128, .max_tokens = 257 };
        sqz_ppl_result pr;
        CHECK(sqz_perplexity(ctx, bm, ids, n, &po, &pr) == SQZ_OK && pr.ppl > 1 && pr.ppl < 1e4,
              "every block: ppl %.3f on calibration text", pr.ppl);
        CHECK(sqz_model_bitstack_fit(ctx, bm, 0, NULL) == SQZ_ERR_ARG, "no new size after a session: %s",
              sqz_ctx_error(ctx));
        sqz_model_free(bm);
    }
    /* bad files: truncated, and the data section overwritten */
    size_t sz = 0;
    uint8_t *buf = test_read_file(out, &sz);
    int no_crash = buf != NULL;
    for (int t = 0; buf && t < 6; t++) {
        const size_t cut = sz / 7 * (size_t)(t + 1);
        write_file(bad, buf, cut);
        bm = NULL;
        no_crash &= sqz_model_load(ctx, bad, NULL, &bm) != SQZ_OK && bm == NULL;
    }
    CHECK(no_crash, "truncated stacks are refused: %s", sqz_ctx_error(ctx));
    int refused = 0;
    for (int t = 0; buf && t < 20; t++) { /* garbage over a part of the data: refused or loaded, never a crash */
        uint8_t *cp = malloc(sz);
        memcpy(cp, buf, sz);
        const size_t at = sz / 2 + (size_t)(urand() * (double)(sz / 2 - 4096));
        for (size_t i = 0; i < 4096; i++) cp[at + i] = (uint8_t)(urand() * 256);
        write_file(bad, cp, sz);
        free(cp);
        bm = NULL;
        if (sqz_model_load(ctx, bad, NULL, &bm) != SQZ_OK) refused++;
        sqz_model_free(bm);
    }
    CHECK(1, "20 stacks with garbage in their data: %d refused, the rest loaded, no crash", refused);
    /* an order that is not increasing inside a stack: find blk.0.attn_q's order (its values, as
     * loaded) in the file and swap two of them */
    sqz_model *lm = NULL;
    int32_t ord[4] = { 0 };
    if (sqz_model_load(ctx, out, NULL, &lm) == SQZ_OK) memcpy(ord, lm->bs[0].view.order, sizeof ord);
    sqz_model_free(lm);
    uint8_t *at = NULL;
    for (size_t i = 0; buf && i + sizeof ord <= sz && !at; i += 4)
        if (!memcmp(buf + i, ord, sizeof ord)) at = buf + i;
    if (at) {
        const int32_t swapped[4] = { ord[1], ord[0], ord[2], ord[3] };
        memcpy(at, swapped, sizeof swapped);
        write_file(bad, buf, sz);
        bm = NULL;
        CHECK(sqz_model_load(ctx, bad, NULL, &bm) == SQZ_ERR_FORMAT && bm == NULL &&
                  strstr(sqz_ctx_error(ctx), "not increasing"),
              "a block order that is not increasing in a stack: %s", sqz_ctx_error(ctx));
    } else {
        CHECK(0, "blk.0.attn_q's block order (%d %d %d %d) is in the file", ord[0], ord[1], ord[2], ord[3]);
    }
    free(buf);
    unlink(out), unlink(bad), rmdir(dir);
    sqz_free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
}

int main(void) {
    test_signs();
    test_decompose();
    test_model();
    return test_done();
}
