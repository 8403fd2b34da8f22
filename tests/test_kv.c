/* test_kv.c - KV cache policies against naive references on small random tensors:
 *  - f16: exact attention (in double) over the f16-rounded cache;
 *  - q8/q4/q2 (KIVI): exact attention over the cache dequantized by a naive re-implementation
 *    of KIVI (keys per channel over groups of G tokens, values per token over groups of
 *    channels, f16 scale/min, the residual window in f32), so the fused kernels, the packing and
 *    the residual bookkeeping are all checked;
 *  - streaming/h2o/snapkv: exact attention restricted to the positions held, and the held
 *    positions equal those the definitions give (scores recomputed here in double);
 * plus memory accounting, parameter errors and, on the embedded model, perplexity through
 * sqz_perplexity (f32 token by token = batched; compressed policies ordered by their KLD). */
#include <stdint.h>

#include "formats/types.h"
#include "kv/kv.h"
#include "sqz.h"
#include "test.h"

int sqz_kv_evict_held(const void *state, int layer, int kv_head, const int **positions);

enum { L = 2, HQ = 4, HKV = 2, HD = 16, ROW = HKV * HD, MAXP = 160, GROUP = HQ / HKV };
enum { K_F16, K_KIVI, K_STREAM, K_H2O, K_SNAP };

typedef struct test_cfg {
    const char *spec;
    int kind;
    int bits, G, R;                 /* kivi */
    int sink, window;               /* streaming */
    int budget, recent, obs, pool;  /* h2o, snapkv */
} test_cfg;

typedef struct hist {
    float k[L][MAXP][ROW], v[L][MAXP][ROW];
    double score[L][HKV][MAXP];      /* h2o: accumulated attention */
    int held[L][HKV][MAXP], n_held[L][HKV];
    int compressed[L];
    uint64_t rng;
} hist;

static float f16r(float x) { return sqz_f16_to_f32(sqz_f32_to_f16(x)); }

/* naive KIVI parameters: min and (max-min)/qmax rounded to f16, codes with the rounded ones */
static void deq(const float *x, int n, int stride, int qmax, float *out, int ostride) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = x[i * stride] < lo ? x[i * stride] : lo;
        hi = x[i * stride] > hi ? x[i * stride] : hi;
    }
    float m = f16r(lo), s = f16r((hi - lo) / (float)qmax);
    for (int i = 0; i < n; i++) {
        int q = s > 0 ? (int)lrintf((x[i * stride] - m) / s) : 0;
        q = q < 0 ? 0 : q > qmax ? qmax : q;
        out[i * ostride] = m + s * (float)q;
    }
}

/* The cache as the policy should see it after P positions of layer l: kk, vv [P][ROW]. */
static void expected_rows(const test_cfg *c, const hist *H, int l, int P, float (*kk)[ROW],
                          float (*vv)[ROW]) {
    for (int p = 0; p < P; p++)
        for (int i = 0; i < ROW; i++) {
            kk[p][i] = H->k[l][p][i], vv[p][i] = H->v[l][p][i];
            if (c->kind == K_F16) kk[p][i] = f16r(kk[p][i]), vv[p][i] = f16r(vv[p][i]);
        }
    if (c->kind != K_KIVI) return;
    const int nq = P >= c->R ? c->G * ((P - c->R) / c->G) : 0, qmax = (1 << c->bits) - 1;
    const int vg = c->G < HD ? c->G : HD;
    for (int g0 = 0; g0 < nq; g0 += c->G)
        for (int i = 0; i < ROW; i++) deq(&H->k[l][g0][i], c->G, ROW, qmax, &kk[g0][i], ROW);
    for (int p = 0; p < nq; p++)
        for (int b = 0; b < ROW; b += vg) deq(&H->v[l][p][b], vg, 1, qmax, &vv[p][b], 1);
}

/* out[HD] = softmax(q . k_p / sqrt(HD)) . v_p over the np positions pos[] (kv head g); probs[] */
static void ref_attention(const float *q, int g, const int *pos, int np, float (*kk)[ROW],
                          float (*vv)[ROW], double *out, double *probs) {
    double mx = -1e300;
    for (int j = 0; j < np; j++) {
        double d = 0;
        for (int i = 0; i < HD; i++) d += (double)q[i] * kk[pos[j]][g * HD + i];
        probs[j] = d / sqrt((double)HD);
        mx = probs[j] > mx ? probs[j] : mx;
    }
    double sum = 0;
    for (int j = 0; j < np; j++) sum += probs[j] = exp(probs[j] - mx);
    for (int i = 0; i < HD; i++) out[i] = 0;
    for (int j = 0; j < np; j++) {
        probs[j] /= sum;
        for (int i = 0; i < HD; i++) out[i] += probs[j] * vv[pos[j]][g * HD + i];
    }
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* indices of the `want` largest of score[0..n) (ties: the later one) into keep[] */
static void top(const double *score, int n, int want, int *keep) {
    for (int k = 0; k < want && k < n; k++) {
        int best = -1;
        for (int j = 0; j < n; j++)
            if (!keep[j] && (best < 0 || score[j] >= score[best])) best = j;
        keep[best] = 1;
    }
}

/* Runs a 40-token prefill then single tokens up to 120 positions through the policy, checking
 * every attention output and (eviction) every held set. Returns the worst abs error and the
 * bytes after each step in bytes_at[P]. */
static double run_policy(const test_cfg *c, hist *H, size_t *bytes_at, double *exact_err) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_kv_shape shape = { .n_layers = L, .n_heads = HQ, .n_kv_heads = HKV, .head_dim = HD,
                           .max_pos = MAXP };
    sqz_kv *kv;
    if (sqz_kv_new(ctx, &shape, c->spec, &kv)) {
        CHECK(0, "%s: create: %s", c->spec, sqz_ctx_error(ctx));
        sqz_ctx_free(ctx);
        return 1e9;
    }
    memset(H->score, 0, sizeof H->score);
    memset(H->n_held, 0, sizeof H->n_held);
    memset(H->compressed, 0, sizeof H->compressed);
    static float kk[MAXP][ROW], vv[MAXP][ROW], ke[MAXP][ROW], ve[MAXP][ROW];
    float q[64][HQ * HD], out[64][HQ * HD];
    double worst = 0, worst_exact = 0, o[HD], oe[HD], probs[MAXP], pe[MAXP];
    int held_ok = 1;
    for (int pos = 0; pos < 120;) {
        const int n = pos == 0 ? 40 : 1;
        for (int l = 0; l < L; l++) {
            for (int t = 0; t < n; t++)
                for (int i = 0; i < ROW; i++) {
                    /* a few large key channels, as real keys have (KIVI's motivation) */
                    H->k[l][pos + t][i] = test_frand(&H->rng) * (i % 7 == 0 ? 4.0f : 1.0f) + 0.3f;
                    H->v[l][pos + t][i] = test_frand(&H->rng);
                }
            for (int t = 0; t < n; t++)
                for (int i = 0; i < HQ * HD; i++) q[t][i] = 2.0f * test_frand(&H->rng);
            if (kv->policy->store(kv->state, l, pos, n, H->k[l][pos], H->v[l][pos]) != SQZ_OK)
                CHECK(0, "%s: store at %d: %s", c->spec, pos, sqz_ctx_error(ctx));
            /* two threads for the prompt (the parallel path), one for single tokens: an
             * oversubscribed machine makes thread barriers per token slow */
            kv->policy->attend(kv->state, l, pos, n, q[0], out[0], n > 1 ? 2 : 1);
            expected_rows(c, H, l, pos + n, kk, vv);
            test_cfg exact = { .kind = K_STREAM };
            expected_rows(&exact, H, l, pos + n, ke, ve);
            int all[HKV][MAXP], n_all[HKV];
            double obs_score[HKV][MAXP] = { { 0 } };
            const int is_ev = c->kind >= K_STREAM;
            for (int g = 0; g < HKV; g++) {
                n_all[g] = 0;
                if (is_ev)
                    for (int j = 0; j < H->n_held[l][g]; j++) all[g][n_all[g]++] = H->held[l][g][j];
                else
                    for (int p = 0; p < pos; p++) all[g][n_all[g]++] = p;
                for (int t = 0; t < n; t++) all[g][n_all[g]++] = pos + t;
            }
            for (int t = 0; t < n; t++)
                for (int h = 0; h < HQ; h++) {
                    const int g = h / GROUP;
                    int np = 0;
                    while (np < n_all[g] && all[g][np] <= pos + t) np++;
                    ref_attention(q[t] + h * HD, g, all[g], np, kk, vv, o, probs);
                    int full[MAXP];
                    for (int p = 0; p <= pos + t; p++) full[p] = p;
                    ref_attention(q[t] + h * HD, g, full, pos + t + 1, ke, ve, oe, pe);
                    for (int i = 0; i < HD; i++) {
                        double e = fabs(out[t][h * HD + i] - o[i]);
                        worst = e > worst ? e : worst;
                        e = fabs(out[t][h * HD + i] - oe[i]);
                        worst_exact = e > worst_exact ? e : worst_exact;
                    }
                    for (int j = 0; j < np; j++) {
                        H->score[l][g][all[g][j]] += probs[j];
                        if (t >= n - c->obs) obs_score[g][j] += probs[j];
                    }
                }
            if (!is_ev) continue;
            /* the positions the definitions keep */
            for (int g = 0; g < HKV; g++) {
                int keep[MAXP] = { 0 }, na = n_all[g];
                const int last = all[g][na - 1];
                if (c->kind == K_STREAM) {
                    for (int j = 0; j < na; j++)
                        keep[j] = all[g][j] < c->sink || all[g][j] > last - c->window;
                } else if (c->kind == K_H2O) {
                    if (na <= c->budget) {
                        for (int j = 0; j < na; j++) keep[j] = 1;
                    } else {
                        double sc[MAXP];
                        for (int j = 0; j < na; j++) sc[j] = H->score[l][g][all[g][j]];
                        for (int j = na - c->recent; j < na; j++) keep[j] = 1;
                        top(sc, na - c->recent, c->budget - c->recent, keep);
                    }
                } else {
                    if (H->compressed[l] || n == 1 || na <= c->budget) {
                        for (int j = 0; j < na; j++) keep[j] = 1;
                    } else {
                        const int w = c->obs < n ? c->obs : n, prefix = na - w, r = c->pool / 2;
                        double pooled[MAXP];
                        for (int j = 0; j < prefix; j++) {
                            pooled[j] = 0;
                            for (int i = j - r; i <= j + r; i++)
                                if (i >= 0 && i < prefix) pooled[j] += obs_score[g][i];
                            pooled[j] /= c->pool;
                        }
                        for (int j = prefix; j < na; j++) keep[j] = 1;
                        top(pooled, prefix, c->budget - w, keep);
                    }
                }
                int m = 0;
                for (int j = 0; j < na; j++)
                    if (keep[j]) H->held[l][g][m++] = all[g][j];
                H->n_held[l][g] = m;
                const int *got;
                int ng = sqz_kv_evict_held(kv->state, l, g, &got);
                int same = ng == m;
                for (int j = 0; same && j < m; j++) same = got[j] == H->held[l][g][j];
                if (!same && held_ok) {
                    held_ok = 0;
                    printf("#   %s layer %d head %d after position %d: holds %d, expected %d\n",
                           c->spec, l, g, pos + n - 1, ng, m);
                }
                qsort(H->held[l][g], (size_t)m, sizeof(int), cmp_int);
            }
            if (c->kind == K_SNAP && n > 1 && n_all[0] > c->budget) H->compressed[l] = 1;
        }
        pos += n;
        bytes_at[pos] = kv->policy->bytes(kv->state);
    }
    if (c->kind >= K_STREAM) CHECK(held_ok, "%s keeps exactly the positions its definition gives", c->spec);
    sqz_kv_free(kv);
    sqz_ctx_free(ctx);
    *exact_err = worst_exact;
    return worst;
}

static void policy_tests(void) {
    static hist H;
    H.rng = 0x9e3779b97f4a7c15ull;
    const test_cfg cfgs[] = {
        { .spec = "f16", .kind = K_F16 },
        { .spec = "q8:group=8,window=8", .kind = K_KIVI, .bits = 8, .G = 8, .R = 8 },
        { .spec = "q4:group=8,window=16", .kind = K_KIVI, .bits = 4, .G = 8, .R = 16 },
        { .spec = "q2:group=4,window=0", .kind = K_KIVI, .bits = 2, .G = 4, .R = 0 },
        { .spec = "q4:group=32,window=20", .kind = K_KIVI, .bits = 4, .G = 32, .R = 20 },
        { .spec = "q2", .kind = K_KIVI, .bits = 2, .G = 32, .R = 64 },
        { .spec = "streaming:sink=3,window=20+f32", .kind = K_STREAM, .sink = 3, .window = 20 },
        { .spec = "streaming:sink=0,window=1+f32", .kind = K_STREAM, .sink = 0, .window = 1 },
        { .spec = "h2o:budget=24+f32", .kind = K_H2O, .budget = 24, .recent = 12 },
        { .spec = "h2o:budget=30,recent=5+f32", .kind = K_H2O, .budget = 30, .recent = 5 },
        { .spec = "snapkv:budget=16,obs=4,pool=3+f32", .kind = K_SNAP, .budget = 16, .obs = 4, .pool = 3 },
        { .spec = "snapkv:budget=60,obs=8+f32", .kind = K_SNAP, .budget = 60, .obs = 8, .pool = 7 },
    };
    static size_t bytes_at[MAXP + 1];
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
        const test_cfg *c = &cfgs[i];
        test_cfg cc = *c;
        if (cc.kind != K_SNAP) cc.obs = 1 << 20; /* obs_score unused */
        memset(bytes_at, 0, sizeof bytes_at);
        double ex, err = run_policy(&cc, &H, bytes_at, &ex);
        CHECK(err < 2e-5, "%s: attention = naive reference over what it holds (max err %.2e)",
              c->spec, err);
        if (c->kind == K_F16) CHECK(ex < 2e-3, "f16 within f16 rounding of exact (%.2e)", ex);
        if (c->kind == K_KIVI && c->bits == 8)
            CHECK(ex < 3e-2, "%s: close to exact attention (%.2e)", c->spec, ex);
        /* memory: what the buffers hold, after every step for f16 and KIVI (whose bytes drop
         * when a group leaves the f32 residual), at the end for the eviction policies */
        const size_t P = 120;
        int acc_ok = 1;
        for (size_t p = 40; p <= P; p++) {
            size_t want = 0;
            if (c->kind == K_F16) want = 2 * p * L * ROW * 2;
            else if (c->kind == K_KIVI) {
                const size_t nq = p >= (size_t)c->R ? (size_t)c->G * ((p - (size_t)c->R) / (size_t)c->G) : 0;
                const size_t rb = ROW * (size_t)c->bits / 8, vg = (size_t)(c->G < HD ? c->G : HD);
                want = L * (nq / (size_t)c->G * ((size_t)c->G * rb + 2 * ROW * 2) +
                            nq * (rb + 2 * (ROW / vg) * 2) + (p - nq) * ROW * 4 * 2);
            } else if (p == P) {
                size_t held = 0;
                for (int l = 0; l < L; l++)
                    for (int g = 0; g < HKV; g++) held += (size_t)H.n_held[l][g];
                want = held * (2 * HD * 4 + 4 + (c->kind == K_H2O ? 4 : 0));
            } else continue;
            if (bytes_at[p] != want) {
                if (acc_ok) printf("#   %zu positions: %zu bytes, expected %zu\n", p, bytes_at[p], want);
                acc_ok = 0;
            }
        }
        CHECK(acc_ok, "%s: bytes() = what its buffers hold (%zu at %zu positions)", c->spec,
              bytes_at[P], P);
        if (c->kind == K_KIVI && c->R < 32)
            CHECK(bytes_at[P] < 2 * P * L * ROW * 2, "%s: fewer bytes than f16 (%zu < %zu)", c->spec,
                  bytes_at[P], 2 * P * L * ROW * 2);
        if (c->kind == K_STREAM)
            CHECK(bytes_at[P] == bytes_at[P - 1], "%s: bytes stop growing at sink + window", c->spec);
    }
}

static void param_errors(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_kv_shape shape = { .n_layers = 1, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16,
                           .max_pos = 64 };
    const struct { const char *spec, *want1, *want2; } bad[] = {
        { "q4:foo=1", "q4", "foo" },
        { "q4:group=0", "q4", "group" },
        { "q8:group=abc", "q8", "group" },
        { "q2:group=12", "q2", "group" },
        { "q2:window=-1", "q2", "window" },
        { "q4:group=8,group=8", "q4", "group" },
        { "q4:group", "q4", "group" },
        { "f16:x=1", "f16", "x" },
        { "streaming:window=0", "streaming", "window" },
        { "streaming:budget=3", "streaming", "budget" },
        { "h2o:budget=10,recent=11", "h2o", "recent" },
        { "h2o:budget=0", "h2o", "budget" },
        { "snapkv:pool=4", "snapkv", "pool" },
        { "snapkv:budget=8,obs=9", "snapkv", "obs" },
        { "nosuch", "nosuch", "nosuch" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sqz_kv *kv = NULL;
        sqz_status st = sqz_kv_new(ctx, &shape, bad[i].spec, &kv);
        const char *e = sqz_ctx_error(ctx);
        CHECK(st == SQZ_ERR_ARG && !kv && strstr(e, bad[i].want1) && strstr(e, bad[i].want2),
              "'%s' refused: %s", bad[i].spec, e);
        sqz_kv_free(kv);
    }
    const char *good[] = { "f16", "q8", "q4:group=16", "q2:window=0", "streaming:sink=0,window=8",
                           "h2o:budget=8,recent=0", "snapkv:obs=1,budget=1,pool=1" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        sqz_kv *kv = NULL;
        CHECK(sqz_kv_new(ctx, &shape, good[i], &kv) == SQZ_OK, "'%s' accepted %s", good[i],
              kv ? "" : sqz_ctx_error(ctx));
        sqz_kv_free(kv);
    }
    int n = 0;
    while (sqz_kv_policy_name(n)) n++;
    CHECK(n >= 8 && !strcmp(sqz_kv_policy_name(0), "f32") && sqz_kv_policy_help(n - 1) &&
              !sqz_kv_policy_name(n + 5),
          "%d policies listed", n);
    sqz_ctx_free(ctx);
}

static void perplexity_tests(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, 1); /* token-by-token runs: thread barriers would dominate */
    sqz_model *m;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &m)) {
        CHECK(0, "load: %s", sqz_ctx_error(ctx));
        sqz_ctx_free(ctx);
        return;
    }
    FILE *f = fopen("assets/tinystories-valid-slice.txt", "rb");
    static char text[40000];
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    int32_t *ids = NULL;
    size_t n = 0;
    sqz_tokenize(ctx, m, text, len, 0, &ids, &n);
    sqz_ppl_opts o = { .n_ctx = 128, .max_tokens = 385 };
    sqz_ppl_result base, r;
    CHECK(sqz_perplexity(ctx, m, ids, n, &o, &base) == SQZ_OK, "batched perplexity");
    sqz_ppl_opts of = { .n_ctx = 128, .max_tokens = 385, .kv = "f32", .kv_prefill = 8 };
    CHECK(sqz_perplexity(ctx, m, ids, n, &of, &r) == SQZ_OK && r.tokens == base.tokens,
          "f32 token by token");
    CHECK_CLOSE(r.ppl, base.ppl, 0, 1e-5, "f32 cache token by token: ppl %.6f = batched %.6f",
                r.ppl, base.ppl);
    const char *specs[] = { "f16", "q8", "q4", "q2", "streaming:window=40", "h2o:budget=48",
                            "snapkv:budget=8,obs=4" };
    double kld[7];
    for (int i = 0; i < 7; i++) {
        sqz_ppl_opts oq = { .n_ctx = 128, .max_tokens = 385, .kv = specs[i], .kv_prefill = 16,
                            .kld_base = m, .kld_base_kv = "f32" };
        sqz_status st = sqz_perplexity(ctx, m, ids, n, &oq, &r);
        kld[i] = st == SQZ_OK ? r.kld : 1e9;
        CHECK(st == SQZ_OK && r.has_kld && r.ppl < base.ppl * 1.5,
              "%s: ppl %.4f (f32 %.4f), KLD %.2e vs the f32 cache", specs[i], r.ppl, base.ppl,
              kld[i]);
    }
    CHECK(kld[0] < 1e-5 && kld[1] < 1e-5, "f16 KLD %.2e and q8 KLD %.2e are rounding noise",
          kld[0], kld[1]);
    CHECK(kld[1] < kld[2] && kld[2] < kld[3], "KLD grows as bits shrink: q8 %.2e < q4 %.2e < q2 %.2e",
          kld[1], kld[2], kld[3]);
    free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
}

int main(void) {
    param_errors();
    policy_tests();
    perplexity_tests();
    return test_done();
}
