/* test_lowrank.c - low rank (issue 17): the truncated SVD against naive references (plain: W
 * projected on the top eigenvectors of W^T W; whitened: the top eigenvectors of W H W^T, the
 * output covariance, which is the closed form of min ||(W - W') X|| over rank r, computed
 * without Cholesky), the whitened error = the tail of the singular values, the rank limit; the
 * low-rank type's products (decode rows split as a team splits them, batches, the reference)
 * against dense math on the stored factors for f32, f16 and q8_0 factors; and sqz_lowrank on
 * the embedded model: the sqzf loads with the ranks asked, its matrices are the SVD's, asvd
 * beats svd on held-out text at equal size, levels, and bad targets are one error with no
 * file. */
#include <string.h>
#include <unistd.h>

#include "formats/quant.h"
#include "kernels/kernels.h"
#include "math/eigen.h"
#include "model/model.h"
#include "prune/lowrank.h"
#include "sqz.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

/* W [m x n] with a decaying spectrum plus noise */
static void make_w(float *W, int m, int n) {
    for (int i = 0; i < m * n; i++) W[i] = (float)(0.05 * nrand());
    for (int k = 0; k < 8; k++) {
        double u[256], v[256];
        for (int i = 0; i < m; i++) u[i] = nrand();
        for (int j = 0; j < n; j++) v[j] = nrand();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) W[i * n + j] += (float)(u[i] * v[j] / (1 + k) / sqrt((double)n));
    }
}

/* P = B A, f64 */
static void product(const float *b, const float *a, int m, int n, int r, double *P) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < r; k++) s += (double)b[i * r + k] * a[k * n + j];
            P[i * n + j] = s;
        }
}

static double max_abs_diff(const double *a, const double *b, int n, double *scale) {
    double d = 0, s = 0;
    for (int i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i])), s = fmax(s, fabs(b[i]));
    if (scale) *scale = s;
    return d;
}

static void test_svd(void) {
    enum { M = 40, N = 24, R = 6, T = 300 };
    float W[M * N], a[R * N], b[M * R];
    make_w(W, M, N);
    /* plain: reference W V_r V_r^T, V_r the top eigenvectors of W^T W */
    double G[N * N], P[M * N], Ref[M * N];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < M; k++) s += (double)W[k * N + i] * W[k * N + j];
            G[i * N + j] = s;
        }
    float V[R * N];
    CHECK(sqz_eigen_top(G, N, R, V, NULL) == 0, "eigenvectors of W^T W");
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < R; k++) {
                double c = 0;
                for (int q = 0; q < N; q++) c += (double)W[i * N + q] * V[k * N + q];
                s += c * V[k * N + j];
            }
            Ref[i * N + j] = s;
        }
    sqz_lr_svd d;
    CHECK(sqz_lr_svd_compute(NULL, W, M, N, NULL, 0, &d) == SQZ_OK && d.k == N, "plain SVD of 40 x 24");
    sqz_lr_svd_factors(&d, R, a, b);
    product(b, a, M, N, R, P);
    double sc, e = max_abs_diff(P, Ref, M * N, &sc);
    CHECK(e <= 1e-5 * sc, "plain rank 6 = W V_r V_r^T (max diff %.2g of %.2g)", e, sc);
    /* its Frobenius error is the tail of the singular values */
    double tail = 0, err = 0;
    for (int k = R; k < d.k; k++) tail += d.s[k] * d.s[k];
    for (int i = 0; i < M * N; i++) err += (W[i] - P[i]) * (W[i] - P[i]);
    CHECK_CLOSE(err, tail, 1e-9, 1e-5, "plain: ||W - B A||^2 = sum of the tail s^2 (%.6g)", tail);
    sqz_lr_svd_free(&d);

    /* whitened: inputs of very different scales; reference U_r U_r^T W, U_r the top
     * eigenvectors of W H W^T */
    static double X[T * N], H[N * N];
    double sc_in[N];
    for (int j = 0; j < N; j++) sc_in[j] = exp(1.5 * nrand());
    for (int t = 0; t < T; t++) {
        const double c = nrand();
        for (int j = 0; j < N; j++) X[t * N + j] = sc_in[j] * (nrand() + 0.7 * c);
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += X[t * N + i] * X[t * N + j];
            H[i * N + j] = s;
        }
    double O[M * M];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++) {
            double s = 0;
            for (int p = 0; p < N; p++)
                for (int q = 0; q < N; q++) s += (double)W[i * N + p] * H[p * N + q] * W[j * N + q];
            O[i * M + j] = s;
        }
    float U[R * M];
    CHECK(sqz_eigen_top(O, M, R, U, NULL) == 0, "eigenvectors of W H W^T");
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < R; k++) {
                double c = 0;
                for (int q = 0; q < M; q++) c += (double)U[k * M + q] * W[q * N + j];
                s += U[k * M + i] * c;
            }
            Ref[i * N + j] = s;
        }
    CHECK(sqz_lr_svd_compute(NULL, W, M, N, H, 0, &d) == SQZ_OK && d.l, "whitened SVD");
    sqz_lr_svd_factors(&d, R, a, b);
    product(b, a, M, N, R, P);
    e = max_abs_diff(P, Ref, M * N, &sc);
    CHECK(e <= 2e-4 * sc, "whitened rank 6 = U_r U_r^T W of the output covariance (max diff %.2g of %.2g)", e, sc);
    /* its output error tr(E H E^T) is the whitened tail; plain SVD's is larger */
    double werr = 0, perr = 0;
    float ap[R * N], bp[M * R];
    double Pp[M * N];
    sqz_lr_svd dp;
    sqz_lr_svd_compute(NULL, W, M, N, NULL, 0, &dp);
    sqz_lr_svd_factors(&dp, R, ap, bp);
    product(bp, ap, M, N, R, Pp);
    sqz_lr_svd_free(&dp);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < M; i++) {
            double y = 0, yw = 0, yp = 0;
            for (int j = 0; j < N; j++) {
                y += W[i * N + j] * X[t * N + j];
                yw += P[i * N + j] * X[t * N + j];
                yp += Pp[i * N + j] * X[t * N + j];
            }
            werr += (y - yw) * (y - yw);
            perr += (y - yp) * (y - yp);
        }
    tail = 0;
    for (int k = R; k < d.k; k++) tail += d.s[k] * d.s[k];
    CHECK_CLOSE(werr, tail, 1e-6, 1e-4, "whitened: ||(W - B A) X||^2 = the whitened tail (%.6g)", tail);
    CHECK(werr < 0.8 * perr, "whitened output error %.4g below plain SVD's %.4g", werr, perr);
    sqz_lr_svd_free(&d);

    /* ASVD's diagonal scaling with alpha 1 on a diagonal H is the Cholesky whitening (up to a
     * scale that cancels) */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (i != j) H[i * N + j] = 0;
    double Pd[M * N];
    CHECK(sqz_lr_svd_compute(NULL, W, M, N, H, 0, &d) == SQZ_OK, "whitened SVD, diagonal H");
    sqz_lr_svd_factors(&d, R, a, b);
    sqz_lr_svd_free(&d);
    product(b, a, M, N, R, P);
    CHECK(sqz_lr_svd_compute_ex(NULL, W, M, N, H, 0, 1.0, &d) == SQZ_OK, "ASVD-scaled SVD, alpha 1");
    sqz_lr_svd_factors(&d, R, a, b);
    sqz_lr_svd_free(&d);
    product(b, a, M, N, R, Pd);
    e = max_abs_diff(Pd, P, M * N, &sc);
    CHECK(e <= 1e-4 * sc, "alpha 1 on a diagonal H = the Cholesky whitening (max diff %.2g of %.2g)", e, sc);

    CHECK(sqz_lr_max_rank(512, 512) == 255 && sqz_lr_max_rank(1536, 512) == 383 && sqz_lr_max_rank(3, 5) == 1,
          "rank limits: 512x512 255, 1536x512 383, 3x5 1");
    const double s[4] = { 3, 2, 1, 0 };
    CHECK(sqz_lr_energy_rank(s, 4, 0.9) == 2 && sqz_lr_energy_rank(s, 4, 1.0) == 3 && sqz_lr_energy_rank(s, 4, 0.5) == 1,
          "energy ranks (9 + 4 + 1: 0.5 -> 1, 0.9 -> 2, 1 -> 3)");
}

/* the low-rank type's products against dense math on its stored factors */
static void test_kernels(sqz_type ft, double tol) {
    enum { M = 96, N = 128, R = 32, TT = 40 };
    float af[R * N], bf[M * R], x[TT * N], y[TT * M], yr[TT * M];
    for (int i = 0; i < R * N; i++) af[i] = (float)nrand();
    for (int i = 0; i < M * R; i++) bf[i] = (float)nrand() / 8;
    for (int i = 0; i < TT * N; i++) x[i] = (float)nrand();
    const size_t ars = sqz_type_row_size(ft, N), brs = sqz_type_row_size(ft, R);
    char *ad = malloc(R * ars), *bd = malloc(M * brs);
    if (ft == SQZ_TYPE_F32) memcpy(ad, af, sizeof af), memcpy(bd, bf, sizeof bf);
    else sqz_quantize_rows(ft, af, ad, R, N, NULL), sqz_quantize_rows(ft, bf, bd, M, R, NULL);
    sqz_lr_tensor lr = { { .type = ft, .rows = R, .cols = N, .data = ad }, { .type = ft, .rows = M, .cols = R, .data = bd } };
    const sqz_tensor w = { .type = SQZ_TYPE_LOWRANK, .rows = M, .cols = N, .data = &lr };
    /* dense reference from the stored (dequantized) factors, f64 */
    float *da = malloc(sizeof af), *db = malloc(sizeof bf);
    for (int r = 0; r < R; r++) sqz_tensor_row_f32(&lr.a, r, da + r * N);
    for (int r = 0; r < M; r++) sqz_tensor_row_f32(&lr.b, r, db + r * R);
    static double ref[TT * M];
    double amax = 0;
    for (int t = 0; t < TT; t++)
        for (int i = 0; i < M; i++) {
            double s = 0;
            for (int k = 0; k < R; k++) {
                double z = 0;
                for (int j = 0; j < N; j++) z += (double)da[k * N + j] * x[t * N + j];
                s += db[i * R + k] * z;
            }
            ref[t * M + i] = s;
            amax = fmax(amax, fabs(s));
        }
    const char *tn = sqz_type_name(ft);
    /* row_f32 of the factored matrix = b . a */
    float row[N];
    double rd = 0;
    sqz_tensor_row_f32(&w, 5, row);
    for (int j = 0; j < N; j++) {
        double s = 0;
        for (int k = 0; k < R; k++) s += (double)db[5 * R + k] * da[k * N + j];
        rd = fmax(rd, fabs(s - row[j]));
    }
    CHECK(rd < 1e-4, "%s factors: a row of the matrix is b[r] . a (diff %.2g)", tn, rd);
    sqz_matmul_ref(&w, x, TT, yr);
    double e = 0;
    for (int i = 0; i < TT * M; i++) e = fmax(e, fabs(yr[i] - ref[i]));
    CHECK(e <= 1e-4 * amax, "%s factors: matmul_ref = dense math (max diff %.2g of %.2g)", tn, e, amax);
    const int Ts[3] = { 1, 5, TT };
    for (int q = 0; q < 3; q++) {
        sqz_matmul(&w, x, Ts[q], y, 2);
        e = 0;
        for (int i = 0; i < Ts[q] * M; i++) e = fmax(e, fabs(y[i] - ref[i]));
        CHECK(e <= tol * amax, "%s factors: matmul of %d tokens = dense math (max diff %.2g of %.2g)", tn, Ts[q], e, amax);
    }
    /* decode: the input prepared once (sqz_act_quantize), rows in three shares as a team does */
    char *xq = malloc(sqz_act_bytes(w.type, N) + 1);
    sqz_act_quantize(w.type, x, xq, N);
    memset(y, 0, sizeof y);
    sqz_matvec_rows(&w, x, xq, y, 0, 16);
    sqz_matvec_rows(&w, x, xq, y, 16, 80);
    sqz_matvec_rows(&w, x, xq, y, 80, M);
    e = 0;
    for (int i = 0; i < M; i++) e = fmax(e, fabs(y[i] - ref[i]));
    CHECK(e <= tol * amax && sqz_matvec_rows_in_place(&w), "%s factors: decode rows in three shares = dense math (%.2g)",
          tn, e);
    free(xq), free(ad), free(bd), free(da), free(db);
}

static double file_ppl(sqz_ctx *ctx, const char *path, const int32_t *ids, size_t n) {
    sqz_model *m;
    if (sqz_model_load(ctx, path, NULL, &m)) return -1;
    sqz_ppl_opts o = { .n_ctx = 256, .max_tokens = 4097 };
    sqz_ppl_result r;
    double p = sqz_perplexity(ctx, m, ids, n, &o, &r) ? -1 : r.ppl;
    sqz_model_free(m);
    return p;
}

static void test_model(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &m)) {
        CHECK(0, "load: %s", sqz_ctx_error(ctx));
        return;
    }
    FILE *f = fopen("assets/tinystories-valid-slice.txt", "rb");
    static char text[40000];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    int32_t *ids;
    size_t n;
    sqz_tokenize(ctx, m, text, len, 0, &ids, &n);
    const size_t half = n / 2;
    char dir[] = "/tmp/sqz-test-lowrank-XXXXXX";
    if (!mkdtemp(dir)) return;
    char out[2][600];
    double ppl[2];
    const char *meth[2] = { "svd", "asvd" };
    uint64_t kept[2] = { 0, 0 };
    for (int k = 0; k < 2; k++) {
        snprintf(out[k], sizeof out[k], "%s/%s.sqzf", dir, meth[k]);
        sqz_lowrank_opts o = { .method = meth[k], .params = 0.6, .type = "f32", .calib = ids + half,
                               .n_calib = n - half, .calib_ctx = 128 };
        sqz_lowrank_result r;
        CHECK(sqz_lowrank(ctx, m, out[k], &o, &r) == SQZ_OK && r.n_factored == 35, "%s 60%% factors 35 matrices (%s)",
              meth[k], sqz_ctx_error(ctx));
        kept[k] = r.kept_params;
        CHECK(r.kept_params <= r.block_params * 6 / 10 && r.kept_params > r.block_params / 2,
              "%s: %llu of %llu block weights kept", meth[k], (unsigned long long)r.kept_params,
              (unsigned long long)r.block_params);
        ppl[k] = file_ppl(ctx, out[k], ids, half);
    }
    const double p_dense = file_ppl(ctx, "assets/stories260K/stories260K.bin", ids, half);
    printf("# held-out ppl: dense %.4f, svd 60%% %.4f, asvd 60%% %.4f\n", p_dense, ppl[0], ppl[1]);
    CHECK(kept[0] == kept[1] && ppl[1] > 0 && ppl[1] < ppl[0], "asvd's held-out ppl %.3f below svd's %.3f at equal size",
          ppl[1], ppl[0]);
    /* the file: low-rank matrices of the rank asked (wq 64x64: floor(0.6 * 32) = 19), whose
     * factors are the SVD's (f32: exactly what the SVD of the original gives) */
    sqz_model *lm = NULL;
    CHECK(sqz_model_load(ctx, out[0], NULL, &lm) == SQZ_OK, "the svd sqzf loads (%s)", sqz_ctx_error(ctx));
    if (lm) {
        const sqz_tensor *t = &lm->layers[2].wq;
        const sqz_lr_tensor *lr = t->data;
        CHECK(t->type == SQZ_TYPE_LOWRANK && lr->a.rows == 19 && lr->b.cols == 19 && t->rows == 64 && t->cols == 64,
              "blk.2.attn_q is low rank 19 (64 x 64)");
        /* llama2.c's q rows are in interleaved RoPE order already: no permutation, rows compare */
        float W[64 * 64], a[19 * 64], b[64 * 19];
        for (int r = 0; r < 64; r++) sqz_tensor_row_f32(&m->layers[2].wq, r, W + r * 64);
        sqz_lr_svd d;
        sqz_lr_svd_compute(ctx, W, 64, 64, NULL, 0, &d);
        sqz_lr_svd_factors(&d, 19, a, b);
        sqz_lr_svd_free(&d);
        double P[64 * 64], diff = 0, sc = 0;
        product(b, a, 64, 64, 19, P);
        float row[64];
        for (int r = 0; r < 64; r++) {
            sqz_tensor_row_f32(t, r, row);
            for (int j = 0; j < 64; j++) diff = fmax(diff, fabs(row[j] - P[r * 64 + j])), sc = fmax(sc, fabs(P[r * 64 + j]));
        }
        CHECK(diff <= 1e-5 * sc, "its rows are the rank-19 SVD of the original's (diff %.2g)", diff);
        float e0[64], e1[64];
        sqz_tensor_row_f32(&lm->tok_embd, 7, e0);
        sqz_tensor_row_f32(&m->tok_embd, 7, e1);
        CHECK(!memcmp(e0, e1, sizeof e0) && lm->tok_embd.type == SQZ_TYPE_F32, "token_embd untouched");
        sqz_model_free(lm);
    }
    /* bad files: the loader checks the factors (a rank that does not match, a missing B) */
    {
        FILE *in = fopen(out[0], "rb");
        fseek(in, 0, SEEK_END);
        const long sz = ftell(in);
        fseek(in, 0, SEEK_SET);
        char *buf = malloc((size_t)sz);
        const int rd = fread(buf, 1, (size_t)sz, in) == (size_t)sz;
        fclose(in);
        const char *key = "blk.2.attn_q.weight.lr_a";
        char *at = NULL;
        for (long i = 0; rd && i + 24 < sz && !at; i++)
            if (!memcmp(buf + i, key, strlen(key))) at = buf + i;
        CHECK(at != NULL, "the sqzf names %s", key);
        if (at) {
            char bad1[600], bad2[600];
            snprintf(bad1, sizeof bad1, "%s/badrank.sqzf", dir);
            snprintf(bad2, sizeof bad2, "%s/nob.sqzf", dir);
            uint64_t ne1;
            char *p1 = at + strlen(key) + 4 + 8; /* name, u32 n_dims, u64 ne[0], then ne[1] = the rank */
            memcpy(&ne1, p1, 8);
            const uint64_t r1 = ne1 - 1;
            memcpy(p1, &r1, 8);
            FILE *o1 = fopen(bad1, "wb");
            fwrite(buf, 1, (size_t)sz, o1);
            fclose(o1);
            memcpy(p1, &ne1, 8);
            char *b = NULL; /* the B factor's name -> another name: no B */
            for (long i = 0; i + 24 < sz && !b; i++)
                if (!memcmp(buf + i, "blk.2.attn_q.weight.lr_b", 24)) b = buf + i;
            if (b) b[23] = 'x';
            FILE *o2 = fopen(bad2, "wb");
            fwrite(buf, 1, (size_t)sz, o2);
            fclose(o2);
            sqz_model *bm = NULL;
            CHECK(ne1 == 19 && sqz_model_load(ctx, bad1, NULL, &bm) == SQZ_ERR_FORMAT &&
                      strstr(sqz_ctx_error(ctx), "do not make a 64 x 64 matrix"),
                  "lr_a of rank 18 with lr_b of rank 19 is refused: %s", sqz_ctx_error(ctx));
            sqz_model_free(bm);
            bm = NULL;
            CHECK(b && sqz_model_load(ctx, bad2, NULL, &bm) == SQZ_ERR_FORMAT && strstr(sqz_ctx_error(ctx), "without"),
                  "lr_a without lr_b is refused: %s", sqz_ctx_error(ctx));
            sqz_model_free(bm);
            unlink(bad1), unlink(bad2);
        }
        free(buf);
    }
    /* levels: one matrix an explicit rank, one dense, the rest none */
    char lv[600], lvo[600];
    snprintf(lv, sizeof lv, "%s/levels.json", dir);
    snprintf(lvo, sizeof lvo, "%s/lv.sqzf", dir);
    f = fopen(lv, "w");
    fputs("{\"blk.0.ffn_up.weight\": 12, \"blk.1.attn_v.weight\": 0.5, \"blk.1.attn_q.weight\": 1}", f);
    fclose(f);
    sqz_lowrank_opts ol = { .method = "svd", .levels = lv, .type = "f16" };
    sqz_lowrank_result rl;
    CHECK(sqz_lowrank(ctx, m, lvo, &ol, &rl) == SQZ_OK && rl.n_factored == 2 && rl.n_dense == 33,
          "levels: 2 factored, 33 dense (%s)", sqz_ctx_error(ctx));
    if (!sqz_model_load(ctx, lvo, NULL, &lm)) {
        const sqz_lr_tensor *up = lm->layers[0].w_up.data, *v = lm->layers[1].wv.data;
        CHECK(lm->layers[0].w_up.type == SQZ_TYPE_LOWRANK && up->a.rows == 12 && lm->layers[1].wv.type == SQZ_TYPE_LOWRANK &&
                  v->a.rows == 10 && lm->layers[1].wq.type != SQZ_TYPE_LOWRANK && up->a.type == SQZ_TYPE_F16,
              "levels: ffn_up rank 12, attn_v (32 x 64) at 0.5 rank 10, attn_q dense; f16 factors");
        sqz_model_free(lm);
    }
    /* bad targets: one error, no file */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.sqzf", dir);
    sqz_lowrank_opts ob = { .method = "svd", .rank_frac = 0.6 };
    CHECK(sqz_lowrank(ctx, m, bad, &ob, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "not below") &&
              access(bad, F_OK) != 0,
          "rank 0.6 x 64 = 38 >= 64*64/128: %s", sqz_ctx_error(ctx));
    f = fopen(lv, "w");
    fputs("{\"blk.0.ffn_up.weight\": 60}", f);
    fclose(f);
    CHECK(sqz_lowrank(ctx, m, bad, &ol, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "blk.0.ffn_up.weight: rank 60") &&
              access(bad, F_OK) != 0,
          "a level's rank above the limit: %s", sqz_ctx_error(ctx));
    sqz_lowrank_opts oa = { .method = "asvd", .params = 0.5 };
    CHECK(sqz_lowrank(ctx, m, bad, &oa, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "calibration"),
          "asvd without calibration: %s", sqz_ctx_error(ctx));
    sqz_lowrank_opts oq = { .method = "svd", .params = 0.5, .type = "q8_0" };
    CHECK(sqz_lowrank(ctx, m, bad, &oq, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "blocks of 32"),
          "q8_0 factors of rows of 172: %s", sqz_ctx_error(ctx));
    sqz_lowrank_opts ox = { .method = "svd:damp=0.1", .params = 0.5 };
    CHECK(sqz_lowrank(ctx, m, bad, &ox, NULL) == SQZ_ERR_ARG, "svd takes no damp: %s", sqz_ctx_error(ctx));
    sqz_lowrank_opts o2 = { .method = "svd", .params = 0.5, .energy = 0.9 };
    CHECK(sqz_lowrank(ctx, m, bad, &o2, NULL) == SQZ_ERR_ARG && access(bad, F_OK) != 0, "two targets: %s",
          sqz_ctx_error(ctx));
    /* lord: one budget, ranks differ between matrices of one shape */
    char lo[600];
    snprintf(lo, sizeof lo, "%s/lord.sqzf", dir);
    sqz_lowrank_opts od = { .method = "lord", .params = 0.6 };
    sqz_lowrank_result rd;
    CHECK(sqz_lowrank(ctx, m, lo, &od, &rd) == SQZ_OK && rd.kept_params <= rd.block_params * 6 / 10 &&
              rd.kept_params > rd.block_params * 55 / 100,
          "lord 60%%: %llu of %llu kept (%s)", (unsigned long long)rd.kept_params, (unsigned long long)rd.block_params,
          sqz_ctx_error(ctx));
    if (!sqz_model_load(ctx, lo, NULL, &lm)) {
        int64_t rmin = 1 << 30, rmax = 0;
        for (int l = 0; l < lm->cfg.n_layers; l++) {
            const sqz_lr_tensor *q = lm->layers[l].wq.data;
            if (lm->layers[l].wq.type != SQZ_TYPE_LOWRANK) continue;
            rmin = q->a.rows < rmin ? q->a.rows : rmin;
            rmax = q->a.rows > rmax ? q->a.rows : rmax;
        }
        CHECK(rmax > rmin, "lord: attn_q ranks differ by layer (%lld..%lld)", (long long)rmin, (long long)rmax);
        printf("# lord 60%% held-out ppl %.4f\n", file_ppl(ctx, lo, ids, half));
        sqz_model_free(lm);
    }
    unlink(out[0]), unlink(out[1]), unlink(lv), unlink(lvo), unlink(lo);
    rmdir(dir);
    sqz_free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
}

int main(void) {
    test_svd();
    test_kernels(SQZ_TYPE_F32, 1e-4);
    test_kernels(SQZ_TYPE_F16, 1e-3);
    test_kernels(SQZ_TYPE_Q8_0, 3e-2); /* decode and small batches quantize x and z to Q8_0 */
    test_model();
    return test_done();
}
