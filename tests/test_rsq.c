/* test_rsq.c - RSQ (src/quant/rsq.c; Sung et al. 2025) checked against independent numbers:
 *
 * (a) the rotation is exact: a rotated f32 model (norms folded, residual stream and per-head
 *     V/O rotated) gives the original's logits - on a tiny random model with biases and
 *     untied-able embeddings, on sqz-llama-26m (../shared), and through the public API
 *     (sqz_quantize --method rsq --type f32, written as GGUF and loaded back);
 * (b) the same seed gives the same bytes, another seed other bytes; an unsupported dim fails;
 * (c) attention concentration against a naive causal softmax written here (double), its
 *     normalization against numbers worked out by hand, the weighted Hessian against a naive
 *     sum of r_t x_t x_t^T;
 * (d) rsq q4_0 on the embedded model runs, reports every matrix, writes output.weight and
 *     scores held-out text better than round-to-nearest.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "quant/rsq.h"
#include "sqz.h"
#include "test.h"

static uint64_t rng = 0x1234567ull;
static float frand(void) { /* uniform in [-1, 1) */
    return (float)((test_xorshift64(&rng) >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}

static sqz_tensor rand_tensor(sqz_model *m, int64_t rows, int64_t cols, float scale, float offset) {
    float *d = sqz_model_own(m, malloc((size_t)(rows * cols) * sizeof *d));
    for (int64_t i = 0; i < rows * cols; i++) d[i] = offset + scale * frand();
    return (sqz_tensor){ .type = SQZ_TYPE_F32, .rows = rows, .cols = cols, .data = d };
}

/* A random llama with q/k/v and output biases and non-unit norms, tied embeddings. */
static sqz_model *tiny_model(sqz_ctx *ctx, int dim) {
    sqz_model *m = calloc(1, sizeof *m);
    sqz_config *c = &m->cfg;
    *c = (sqz_config){ .arch = SQZ_ARCH_LLAMA, .dim = dim, .hidden_dim = 96, .n_layers = 2, .n_heads = 4,
                       .n_kv_heads = 2, .head_dim = 16, .vocab_size = 50, .max_seq_len = 64,
                       .rope_theta = 10000, .norm_eps = 1e-5f, .rope_interleaved = 0,
                       .tied_embeddings = 1, .has_qkv_bias = 1, .bos_id = -1, .eos_id = -1 };
    m->ctx = ctx;
    m->format = "test";
    const int D = dim, F = c->hidden_dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    m->tok_embd = rand_tensor(m, c->vocab_size, D, 1.0f, 0);
    m->output = m->tok_embd;
    m->out_norm = rand_tensor(m, 1, D, 0.5f, 1.0f);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    for (int l = 0; l < c->n_layers; l++) {
        sqz_layer_weights *w = &m->layers[l];
        w->attn_norm = rand_tensor(m, 1, D, 0.5f, 1.0f);
        w->ffn_norm = rand_tensor(m, 1, D, 0.5f, 1.0f);
        w->wq = rand_tensor(m, qd, D, 0.3f, 0);
        w->wk = rand_tensor(m, kvd, D, 0.3f, 0);
        w->wv = rand_tensor(m, kvd, D, 0.3f, 0);
        w->wo = rand_tensor(m, D, qd, 0.2f, 0);
        w->bq = rand_tensor(m, 1, qd, 0.2f, 0);
        w->bk = rand_tensor(m, 1, kvd, 0.2f, 0);
        w->bv = rand_tensor(m, 1, kvd, 0.2f, 0);
        w->bo = rand_tensor(m, 1, D, 0.2f, 0);
        w->w_gate = rand_tensor(m, F, D, 0.3f, 0);
        w->w_up = rand_tensor(m, F, D, 0.3f, 0);
        w->w_down = rand_tensor(m, D, F, 0.2f, 0);
    }
    return m;
}

/* All logits of n tokens; NULL on failure. */
static float *logits_of(sqz_ctx *ctx, const sqz_model *m, const int32_t *ids, int n) {
    sqz_session *s;
    if (sqz_session_new(ctx, m, n, &s)) return NULL;
    float *lg = malloc((size_t)n * m->cfg.vocab_size * sizeof *lg);
    if (sqz_session_eval(s, ids, n, lg, 1)) {
        free(lg);
        lg = NULL;
    }
    sqz_session_free(s);
    return lg;
}

/* max |a - b| / max |a| over n values */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)a[i]));
    }
    return mx > 0 ? d / mx : d;
}

static void check_same_logits(sqz_ctx *ctx, const sqz_model *a, const sqz_model *b, const int32_t *ids,
                              int n, double tol, const char *what) {
    float *la = logits_of(ctx, a, ids, n), *lb = logits_of(ctx, b, ids, n);
    const size_t nv = (size_t)n * a->cfg.vocab_size;
    const double d = la && lb ? rel_diff(la, lb, nv) : INFINITY;
    CHECK(d < tol, "%s: rotated logits = original's over %d positions (max diff / max |logit| %.2e)", what, n, d);
    free(la);
    free(lb);
}

static void test_tiny(sqz_ctx *ctx) {
    sqz_model *m = tiny_model(ctx, 64);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (i * 17 + 3) % m->cfg.vocab_size;
    sqz_model *r1 = NULL, *r2 = NULL, *r3 = NULL;
    CHECK(sqz_rsq_rotate_model(ctx, m, 7, &r1) == SQZ_OK, "tiny model rotates");
    if (!r1) {
        sqz_model_free(m);
        return;
    }
    CHECK(!r1->cfg.tied_embeddings && r1->output.data != r1->tok_embd.data, "the rotated head is its own matrix");
    check_same_logits(ctx, m, r1, ids, 40, 1e-5, "tiny random model");
    /* the rotation did change the weights (a no-op would pass the check above) */
    const sqz_layer_weights *w0 = &m->layers[0], *w1 = &r1->layers[0];
    double moved = 0;
    for (int64_t i = 0; i < w0->wq.rows * w0->wq.cols; i++)
        moved = fmax(moved, fabs(((const float *)w0->wq.data)[i] - ((const float *)w1->wq.data)[i]));
    CHECK(moved > 0.1, "attn_q is rotated (max change %.3f)", moved);
    const float *n1 = w1->attn_norm.data;
    CHECK(n1[0] == 1.0f && n1[63] == 1.0f, "norms folded into the matrices (weight 1)");
    /* determinism */
    sqz_rsq_rotate_model(ctx, m, 7, &r2);
    sqz_rsq_rotate_model(ctx, m, 8, &r3);
    const size_t bytes = (size_t)(w1->wo.rows * w1->wo.cols) * sizeof(float);
    CHECK(r2 && !memcmp(r2->layers[1].wo.data, r1->layers[1].wo.data, bytes) &&
              !memcmp(r2->output.data, r1->output.data, (size_t)50 * 64 * sizeof(float)),
          "the same seed gives the same weights");
    CHECK(r3 && memcmp(r3->layers[1].wo.data, r1->layers[1].wo.data, bytes) != 0, "another seed, other weights");
    if (r3) check_same_logits(ctx, m, r3, ids, 40, 1e-5, "tiny random model, seed 8");
    sqz_model_free(r1);
    sqz_model_free(r2);
    sqz_model_free(r3);
    sqz_model_free(m);
    /* 56 = 8 * 7 has no Hadamard matrix here */
    sqz_model *odd = tiny_model(ctx, 56), *ro = NULL;
    CHECK(sqz_rsq_rotate_model(ctx, odd, 1, &ro) == SQZ_ERR_UNSUPPORTED && !ro && strstr(sqz_ctx_error(ctx), "56"),
          "dim 56 is an error: %s", sqz_ctx_error(ctx));
    sqz_model_free(odd);
}

/* Naive AttnCon: per head, causal softmax of q_i . k_j / sqrt(hd) in double, summed per key. */
static void naive_attncon(const float *q, const float *k, int T, int Hq, int Hkv, int hd, double *r) {
    const int qd = Hq * hd, kvd = Hkv * hd;
    for (int j = 0; j < T; j++) r[j] = 0;
    for (int h = 0; h < Hq; h++) {
        const int g = h / (Hq / Hkv);
        for (int i = 0; i < T; i++) {
            double s[64], mx = -1e300, sum = 0;
            for (int j = 0; j <= i; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++) d += (double)q[i * qd + h * hd + e] * k[j * kvd + g * hd + e];
                s[j] = d / sqrt((double)hd);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= i; j++) sum += s[j] = exp(s[j] - mx);
            for (int j = 0; j <= i; j++) r[j] += s[j] / sum;
        }
    }
}

static void test_importance(sqz_ctx *ctx) {
    enum { T = 37, Hq = 4, Hkv = 2, hd = 8 };
    static float q[T * Hq * hd], k[T * Hkv * hd];
    for (int i = 0; i < T * Hq * hd; i++) q[i] = 2.0f * frand();
    for (int i = 0; i < T * Hkv * hd; i++) k[i] = 2.0f * frand();
    float r[T];
    double want[T], sum = 0, err = 0;
    naive_attncon(q, k, T, Hq, Hkv, hd, want);
    CHECK(sqz_rsq_attn_concentration(ctx, q, k, T, Hq, Hkv, hd, r) == SQZ_OK, "attention concentration runs");
    for (int j = 0; j < T; j++) {
        err = fmax(err, fabs(r[j] - want[j]) / fmax(1.0, want[j]));
        sum += r[j];
    }
    CHECK(err < 1e-5, "AttnCon = naive causal softmax column sums (max rel. diff %.2e)", err);
    CHECK_CLOSE(sum, (double)Hq * T, 1e-3, 0, "every query spreads 1 per head: sum = Hq * T");
    CHECK(r[0] > r[T - 1], "the first key gets more attention than the last (%.3f > %.3f)", r[0], r[T - 1]);
    /* normalization: [1, 2, 3, 5] -> [0.1, 0.325, 0.55, 1] (min-max to [0.1, 1]) -> mean 1 */
    float v[4] = { 3, 1, 5, 2 };
    sqz_rsq_normalize(v, 4, 0.1f, 1.0f);
    const double m4 = (0.1 + 0.325 + 0.55 + 1.0) / 4;
    CHECK_CLOSE(v[0], 0.55 / m4, 1e-6, 0, "normalize: 3 -> 0.55 / mean");
    CHECK_CLOSE(v[1], 0.1 / m4, 1e-6, 0, "normalize: the least -> rmin / mean");
    CHECK_CLOSE(v[2], 1.0 / m4, 1e-6, 0, "normalize: the largest -> rmax / mean");
    CHECK_CLOSE(v[3], 0.325 / m4, 1e-6, 0, "normalize: 2 -> 0.325 / mean");
    float flat[3] = { 2, 2, 2 };
    sqz_rsq_normalize(flat, 3, 0.1f, 1.0f);
    CHECK(flat[0] == 1.0f && flat[2] == 1.0f, "normalize: constant importance -> all ones");
    /* weighted Hessian */
    enum { N = 9, d = 6 };
    float x[N * d], x0[N * d], w[N], tmp[d * d];
    double H[d * d] = { 0 }, Hn[d * d] = { 0 };
    for (int i = 0; i < N * d; i++) x0[i] = x[i] = frand();
    for (int t = 0; t < N; t++) w[t] = 0.05f + (float)t * 0.3f;
    for (int t = 0; t < N; t++)
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) Hn[i * d + j] += (double)w[t] * x0[t * d + i] * x0[t * d + j];
    sqz_rsq_hessian_add(H, tmp, x, w, N, d, 1);
    double herr = 0;
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) herr = fmax(herr, fabs(H[i * d + j] - Hn[i * d + j]));
    CHECK(herr < 1e-5, "H = sum r_t x_t x_t^T (upper triangle; max diff %.2e)", herr);
    /* wider than one of the GEMM's 96-row blocks (the last one partial), 1 and 2 threads, added
     * twice onto what H held */
    enum { N2 = 37, D2 = 203 };
    float *x2 = malloc(sizeof(float) * N2 * D2), *tmp2 = malloc(sizeof(float) * D2 * D2);
    double *H2 = malloc(sizeof(double) * D2 * D2), *R2 = calloc((size_t)D2 * D2, sizeof(double));
    for (int i = 0; i < N2 * D2; i++) x2[i] = frand();
    for (int t = 0; t < N2; t++)
        for (int i = 0; i < D2; i++)
            for (int j = i; j < D2; j++) R2[i * D2 + j] += 2.0 * x2[t * D2 + i] * x2[t * D2 + j];
    for (int nt = 1; nt <= 2; nt++) {
        for (int i = 0; i < D2 * D2; i++) H2[i] = 0;
        sqz_rsq_hessian_add(H2, tmp2, x2, NULL, N2, D2, nt);
        sqz_rsq_hessian_add(H2, tmp2, x2, NULL, N2, D2, nt);
        double e2 = 0;
        for (int i = 0; i < D2; i++)
            for (int j = i; j < D2; j++) e2 = fmax(e2, fabs(H2[i * D2 + j] - R2[i * D2 + j]));
        CHECK(e2 < 1e-4, "H of %d tokens x %d channels on %d thread(s) = double reference (max diff %.2e)", N2, D2,
              nt, e2);
    }
    free(x2), free(tmp2), free(H2), free(R2);
}

typedef struct errs {
    double sum;
    int n;
} errs;

static void on_tensor(void *user, const char *name, const char *type, double rel_err) {
    errs *e = user;
    e->sum += rel_err;
    e->n++;
}

static int has_tensor(const sqz_model *m, const char *name) {
    sqz_tensor_info ti;
    for (size_t i = 0; sqz_model_tensor(m, i, &ti); i++)
        if (!strcmp(ti.name, name)) return 1;
    return 0;
}

static double ppl_of(sqz_ctx *ctx, const sqz_model *m, const int32_t *ids, size_t n) {
    sqz_ppl_opts o = { .n_ctx = 256, .max_tokens = 4097 };
    sqz_ppl_result r;
    return sqz_perplexity(ctx, m, ids, n, &o, &r) ? -1 : r.ppl;
}

/* The public path: quantize to f32 (exact) and to q4_0, load the GGUF files back. */
static void test_public(sqz_ctx *ctx, const char *dir) {
    sqz_model *m;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &m)) {
        CHECK(0, "load: %s", sqz_ctx_error(ctx));
        return;
    }
    FILE *f = fopen("assets/tinystories-valid-slice.txt", "rb");
    static char text[40000];
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    int32_t *ids = NULL;
    size_t n = 0;
    sqz_tokenize(ctx, m, text, len, 0, &ids, &n);
    const size_t half = n / 2; /* calibrate on the second half, evaluate on the first */
    char path[3][600];
    const char *types[3] = { "f32", "q4_0", "q4_0" };
    for (int k = 0; k < 3; k++) {
        snprintf(path[k], sizeof path[k], "%s/%d.gguf", dir, k);
        errs e = { 0, 0 };
        sqz_quantize_opts o = { .method = k == 2 ? "gptq" : "rsq:seed=3", .type = types[k], .calib = ids + half,
                                .n_calib = n - half, .calib_ctx = 128, .report = on_tensor,
                                .report_user = &e };
        const sqz_status st = sqz_quantize(ctx, m, path[k], &o, NULL);
        /* gptq also quantizes the (tied) head by GPTQ; rsq's head is converted as it is */
        CHECK(st == SQZ_OK && e.n == 5 * 7 + (k == 2), "%s %s runs, %d matrices (%s)", o.method, types[k], e.n,
              st ? sqz_ctx_error(ctx) : "ok");
    }
    sqz_model *q[3] = { NULL, NULL, NULL };
    for (int k = 0; k < 3; k++) sqz_model_load(ctx, path[k], NULL, &q[k]);
    if (q[0]) {
        CHECK(has_tensor(q[0], "output.weight"), "the rotated file has its own output.weight");
        check_same_logits(ctx, m, q[0], ids, 64, 1e-4, "stories260K via sqz_quantize rsq f32");
    } else {
        CHECK(0, "rsq f32 output loads: %s", sqz_ctx_error(ctx));
    }
    sqz_quantize_opts rtn = { .method = "rtn", .type = "q4_0" };
    char rpath[600];
    snprintf(rpath, sizeof rpath, "%s/rtn.gguf", dir);
    sqz_model *qr = NULL;
    sqz_quantize(ctx, m, rpath, &rtn, NULL);
    sqz_model_load(ctx, rpath, NULL, &qr);
    const double p_f = ppl_of(ctx, m, ids, half), p_rtn = qr ? ppl_of(ctx, qr, ids, half) : -1;
    const double p_rsq = q[1] ? ppl_of(ctx, q[1], ids, half) : -1, p_gptq = q[2] ? ppl_of(ctx, q[2], ids, half) : -1;
    printf("# held-out ppl: f32 %.4f, rtn q4_0 %.4f, gptq q4_0 %.4f, rsq q4_0 %.4f\n", p_f, p_rtn, p_gptq, p_rsq);
    CHECK(p_rsq > 0 && p_rsq < p_rtn, "rsq q4_0's held-out ppl %.4f beats round-to-nearest's %.4f", p_rsq, p_rtn);
    /* bad input */
    sqz_quantize_opts bad = { .method = "rsq:rmin=2", .type = "q4_0", .calib = ids, .n_calib = n,
                              .calib_ctx = 128 };
    snprintf(rpath, sizeof rpath, "%s/bad.gguf", dir);
    CHECK(sqz_quantize(ctx, m, rpath, &bad, NULL) == SQZ_ERR_ARG && access(rpath, F_OK) != 0 &&
              strstr(sqz_ctx_error(ctx), "rmin"),
          "rsq:rmin=2 is an error: %s", sqz_ctx_error(ctx));
    bad.method = "rsq:rmin=0";
    CHECK(sqz_quantize(ctx, m, rpath, &bad, NULL) == SQZ_ERR_ARG && access(rpath, F_OK) != 0 &&
              strstr(sqz_ctx_error(ctx), "(0, 1]"),
          "rsq:rmin=0 is an error: %s", sqz_ctx_error(ctx));
    for (int k = 0; k < 3; k++) sqz_model_free(q[k]);
    sqz_model_free(qr);
    free(ids);
    sqz_model_free(m);
}

static void test_shared_model(sqz_ctx *ctx) {
    const char *path = test_shared("models/sqz-llama-26m");
    if (!path) {
        SKIP("../shared/models/sqz-llama-26m not found");
        return;
    }
    sqz_model *m, *r = NULL;
    if (sqz_model_load(ctx, path, NULL, &m)) {
        CHECK(0, "load: %s", sqz_ctx_error(ctx));
        return;
    }
    const char *text = "The President said that the state of the Union is strong, and that Congress";
    int32_t *ids;
    size_t n;
    sqz_tokenize(ctx, m, text, strlen(text), 0, &ids, &n);
    CHECK(sqz_rsq_rotate_model(ctx, m, 42, &r) == SQZ_OK, "sqz-llama-26m rotates");
    if (r) check_same_logits(ctx, m, r, ids, (int)n, 1e-4, "sqz-llama-26m");
    sqz_model_free(r);
    free(ids);
    sqz_model_free(m);
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, 1); /* it checks arithmetic; a team spins idle on a busy machine */
    test_tiny(ctx);
    test_importance(ctx);
    char dir[] = "/tmp/sqz-test-rsq-XXXXXX";
    if (mkdtemp(dir)) {
        test_public(ctx, dir);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) CHECK(0, "cleanup");
    }
    test_shared_model(ctx);
    sqz_ctx_free(ctx);
    return test_done();
}
