/* test_kv_xlayer.c - the cross-layer / token / channel KV policies against naive references on
 * small random tensors:
 *  - xkv: full rank = exact attention; lower rank = exact attention over keys and values
 *    replaced (once out of the residual window) by their projection onto the top-r right
 *    singular subspace of the group's stacked prompt (naive Jacobi eigensolver in double);
 *  - proj: a projection file written here; full rank = exact; rank r = attention over keys and
 *    values projected on the first r rows;
 *  - minicache: gamma=0 = exact; gamma=1 = attention over |x| * normalize(x_a/|x_a| + x_b/|x_b|);
 *    the number of kept pairs equals the naive count for a middle gamma;
 *  - kvmerger: the states after a merge equal a naive re-implementation (scores, sets, pivots,
 *    Gaussian weights), and the next step attends over them;
 * plus bytes() and parameter errors. */
#include <stdint.h>

#include "formats/types.h"
#include "io/gguf.h"
#include "kv/kv.h"
#include "sqz.h"
#include "test.h"

int sqz_kv_minicache_kept(const void *state, int layer, int kv);
void sqz_kv_kvmerger_forget(void *state);
int sqz_kv_kvmerger_held(const void *state, int layer, int kv_head, const float **k,
                         const float **v, const float **score);

enum { L = 4, HQ = 4, HKV = 2, HD = 16, ROW = HKV * HD, MAXP = 96, GRP = HQ / HKV };

/* data: keys / values [L][MAXP][ROW] (with a shared component across layers and tokens so
 * the low-rank and merging structure is non-trivial), queries [L][MAXP][HQ*HD] */
static float K[L][MAXP][ROW], V[L][MAXP][ROW], Q[L][MAXP][HQ * HD];
/* what the reference attends over */
static float RK[L][MAXP][ROW], RV[L][MAXP][ROW];

static void fill(uint64_t seed, float mix) {
    uint64_t s = seed;
    float base[MAXP][ROW];
    for (int p = 0; p < MAXP; p++)
        for (int i = 0; i < ROW; i++) base[p][i] = test_frand(&s);
    for (int l = 0; l < L; l++)
        for (int p = 0; p < MAXP; p++) {
            for (int i = 0; i < ROW; i++) {
                K[l][p][i] = base[p][i] + mix * test_frand(&s);
                V[l][p][i] = 0.5f * base[p][i] + mix * test_frand(&s);
            }
            for (int i = 0; i < HQ * HD; i++) Q[l][p][i] = 2 * test_frand(&s);
        }
}

/* exact attention in double over RK/RV of layer l, positions 0..pos+t */
static void naive_attend(int l, int pos, int n, const float *q, float *out) {
    for (int t = 0; t < n; t++)
        for (int h = 0; h < HQ; h++) {
            const int g = h / GRP, P = pos + t + 1;
            double s[MAXP], mx = -1e300, sum = 0;
            for (int p = 0; p < P; p++) {
                double d = 0;
                for (int i = 0; i < HD; i++)
                    d += (double)q[(size_t)t * HQ * HD + h * HD + i] * RK[l][p][g * HD + i];
                s[p] = d / sqrt((double)HD);
                mx = s[p] > mx ? s[p] : mx;
            }
            for (int p = 0; p < P; p++) sum += (s[p] = exp(s[p] - mx));
            for (int i = 0; i < HD; i++) {
                double o = 0;
                for (int p = 0; p < P; p++) o += s[p] / sum * RV[l][p][g * HD + i];
                out[(size_t)t * HQ * HD + h * HD + i] = (float)o;
            }
        }
}

/* Symmetric eigen-decomposition by cyclic Jacobi, in double: a [n][n] destroyed, vectors as
 * rows of vec [n][n], values in w; sorted by decreasing value. */
static void jacobi(double *a, int n, double *vec, double *w) {
    for (int i = 0; i < n * n; i++) vec[i] = i % (n + 1) == 0;
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
        if (off < 1e-22) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                if (fabs(a[p * n + q]) < 1e-300) continue;
                const double th = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q]);
                const double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
                const double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    const double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq, a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    const double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk, a[q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {
                    const double vp = vec[p * n + k], vq = vec[q * n + k];
                    vec[p * n + k] = c * vp - s * vq, vec[q * n + k] = s * vp + c * vq;
                }
            }
    }
    for (int i = 0; i < n; i++) w[i] = a[i * n + i];
    for (int i = 0; i < n; i++) /* selection sort, decreasing */
        for (int j = i + 1; j < n; j++)
            if (w[j] > w[i]) {
                double t = w[i];
                w[i] = w[j], w[j] = t;
                for (int k = 0; k < n; k++) {
                    t = vec[i * n + k];
                    vec[i * n + k] = vec[j * n + k], vec[j * n + k] = t;
                }
            }
}

static sqz_kv *make(sqz_ctx *ctx, const char *spec) {
    sqz_kv_shape shape = { L, HQ, HKV, HD, MAXP, 0 };
    sqz_kv *kv = NULL;
    if (sqz_kv_new(ctx, &shape, spec, &kv)) printf("# %s: %s\n", spec, sqz_ctx_error(ctx));
    return kv;
}

/* One step of n tokens at pos through every layer: store, attend, compare with the naive
 * attention over RK/RV (which the caller set for this step). Returns the max abs error. */
static double step(sqz_kv *kv, int pos, int n, void (*ref)(int l, int pos, int n)) {
    double err = 0;
    float out[MAXP * HQ * HD], want[MAXP * HQ * HD];
    for (int l = 0; l < L; l++) {
        kv->policy->store(kv->state, l, pos, n, K[l][pos], V[l][pos]);
        kv->policy->attend(kv->state, l, pos, n, Q[l][pos], out, 1);
        ref(l, pos, n);
        naive_attend(l, pos, n, Q[l][pos], want);
        for (int i = 0; i < n * HQ * HD; i++) err = fmax(err, fabs(out[i] - want[i]));
    }
    return err;
}

static void ref_exact(int l, int pos, int n) {
    for (int p = 0; p < pos + n; p++)
        memcpy(RK[l][p], K[l][p], sizeof RK[l][p]), memcpy(RV[l][p], V[l][p], sizeof RV[l][p]);
}

/* ---- xkv reference: groups of 2 layers, basis from the first P0 tokens, window W */
static int x_rank, x_p0, x_win;
static double x_projk[L / 2][2 * ROW][2 * ROW], x_projv[L / 2][2 * ROW][2 * ROW]; /* B^T B */

static void xkv_basis(void) {
    static double a[2 * ROW * 2 * ROW], vec[2 * ROW * 2 * ROW], w[2 * ROW];
    const int W = 2 * ROW;
    for (int g = 0; g < L / 2; g++)
        for (int kv = 0; kv < 2; kv++) {
            memset(a, 0, sizeof a);
            for (int t = 0; t < x_p0; t++)
                for (int i = 0; i < W; i++)
                    for (int j = 0; j < W; j++) {
                        const float xi = kv ? V[2 * g + i / ROW][t][i % ROW] : K[2 * g + i / ROW][t][i % ROW];
                        const float xj = kv ? V[2 * g + j / ROW][t][j % ROW] : K[2 * g + j / ROW][t][j % ROW];
                        a[i * W + j] += (double)xi * xj;
                    }
            jacobi(a, W, vec, w);
            double(*P)[2 * ROW] = kv ? x_projv[g] : x_projk[g];
            for (int i = 0; i < W; i++)
                for (int j = 0; j < W; j++) {
                    double s = 0;
                    for (int r = 0; r < x_rank; r++) s += vec[r * W + i] * vec[r * W + j];
                    P[i][j] = s;
                }
        }
}

static void ref_xkv(int l, int pos, int n) {
    ref_exact(l, pos, n);
    if (pos < x_p0) return; /* prompt: exact */
    const int g = l / 2, off = (l % 2) * ROW;
    const int ncomp = pos + n - x_win < pos ? pos + n - x_win : pos;
    for (int p = 0; p < ncomp; p++)
        for (int kv = 0; kv < 2; kv++) {
            double(*P)[2 * ROW] = kv ? x_projv[g] : x_projk[g];
            for (int i = 0; i < ROW; i++) {
                double s = 0;
                for (int j = 0; j < 2 * ROW; j++)
                    s += P[off + i][j] * (kv ? V : K)[2 * g + j / ROW][p][j % ROW];
                (kv ? RV : RK)[l][p][i] = (float)s;
            }
        }
}

static void test_xkv(sqz_ctx *ctx) {
    const int ranks[2] = { 2 * ROW, 12 };
    for (int ri = 0; ri < 2; ri++) {
        x_rank = ranks[ri], x_p0 = 40, x_win = 4;
        fill(7, 0.3f);
        xkv_basis();
        char spec[64];
        snprintf(spec, sizeof spec, "xkv:rank=%d,group=2,window=%d+f32", x_rank, x_win);
        sqz_kv *kv = make(ctx, spec);
        CHECK(kv != NULL, "%s created", spec);
        if (!kv) continue;
        double e_pre = step(kv, 0, x_p0, ref_xkv), e_dec = 0;
        for (int p = x_p0; p < x_p0 + 30; p++) e_dec = fmax(e_dec, step(kv, p, 1, ref_xkv));
        CHECK(e_pre < 1e-4, "%s: prompt attention exact (max err %.2g)", spec, e_pre);
        CHECK(e_dec < 2e-4, "%s: decode attention = naive %s (max err %.2g)", spec,
              ri ? "rank-r SVD projection" : "exact attention", e_dec);
        if (ri) { /* and the low rank is visible: far from exact attention */
            sqz_kv *kx = make(ctx, spec);
            double ex = step(kx, 0, x_p0, ref_exact);
            for (int p = x_p0; p < x_p0 + 30; p++) ex = fmax(ex, step(kx, p, 1, ref_exact));
            CHECK(ex > 1e-2, "%s: differs from exact attention (%.2g)", spec, ex);
            sqz_kv_free(kx);
        }
        /* bytes: coefficients of positions < 70+1-4... after the last step (pos 69) the
         * compressed positions are [0, 66), the window holds 4 rows per layer */
        const size_t P = x_p0 + 30, nc = P - x_win;
        const size_t want = (L / 2) * 2 * (nc * x_rank + (size_t)x_rank * 2 * ROW) * 4 +
                            L * 2 * (size_t)x_win * ROW * 4;
        CHECK(kv->policy->bytes(kv->state) == want, "%s: bytes %zu = %zu", spec,
              kv->policy->bytes(kv->state), want);
        kv->policy->reset(kv->state);
        CHECK(kv->policy->bytes(kv->state) == 0, "%s: reset empties it", spec);
        /* after a reset the sequence starts again, identically */
        double e2 = step(kv, 0, x_p0, ref_xkv);
        for (int p = x_p0; p < x_p0 + 10; p++) e2 = fmax(e2, step(kv, p, 1, ref_xkv));
        CHECK(e2 < 2e-4, "%s: again after reset (max err %.2g)", spec, e2);
        sqz_kv_free(kv);
    }
}

/* ---- proj: a file with random orthonormal bases per layer and head */
static float PK[L][HKV][HD][HD], PV[L][HKV][HD][HD], EK[L][HKV][HD];
static int p_rank;

static int write_proj(sqz_ctx *ctx, const char *path) {
    uint64_t s = 99;
    static double a[HD * HD], vec[HD * HD], w[HD];
    for (int l = 0; l < L; l++)
        for (int h = 0; h < HKV; h++)
            for (int kv = 0; kv < 2; kv++) {
                double m[HD][HD];
                for (int i = 0; i < HD; i++)
                    for (int j = 0; j < HD; j++) m[i][j] = test_frand(&s);
                for (int i = 0; i < HD; i++)
                    for (int j = 0; j < HD; j++) {
                        double d = 0;
                        for (int k = 0; k < HD; k++) d += m[i][k] * m[j][k];
                        a[i * HD + j] = d;
                    }
                jacobi(a, HD, vec, w);
                for (int i = 0; i < HD; i++)
                    for (int j = 0; j < HD; j++) (kv ? PV : PK)[l][h][i][j] = (float)vec[i * HD + j];
                if (!kv)
                    for (int i = 0; i < HD; i++) EK[l][h][i] = (float)w[i];
            }
    sqz_gguf_writer *wr;
    if (sqz_gguf_writer_new(ctx, &wr)) return 0;
    sqz_gguf_writer_add_u32(wr, "sqz.kvproj.n_layers", L);
    sqz_gguf_writer_add_u32(wr, "sqz.kvproj.n_kv_heads", HKV);
    sqz_gguf_writer_add_u32(wr, "sqz.kvproj.head_dim", HD);
    sqz_gguf_writer_add_u32(wr, "sqz.kvproj.rank", HD);
    for (int l = 0; l < L; l++)
        for (int kv = 0; kv < 2; kv++) {
            char name[32];
            snprintf(name, sizeof name, "kvproj.%c.%d", kv ? 'v' : 'k', l);
            const int64_t ne[3] = { HD, HD, HKV };
            sqz_gguf_writer_add_tensor(wr, name, 3, ne, SQZ_TYPE_F32, kv ? (void *)PV[l] : (void *)PK[l],
                                       sizeof PK[l]);
        }
    for (int l = 0; l < L; l++) { /* key energies: what pairs=1 ranks RoPE pairs by */
        char name[32];
        snprintf(name, sizeof name, "kvproj.ek.%d", l);
        const int64_t ne[2] = { HD, HKV };
        sqz_gguf_writer_add_tensor(wr, name, 2, ne, SQZ_TYPE_F32, EK[l], sizeof EK[l]);
    }
    sqz_status st = sqz_gguf_writer_write(wr, path);
    sqz_gguf_writer_free(wr);
    return st == SQZ_OK;
}

static void ref_proj(int l, int pos, int n) {
    for (int p = 0; p < pos + n; p++)
        for (int h = 0; h < HKV; h++)
            for (int kv = 0; kv < 2; kv++) {
                float(*P)[HD] = kv ? PV[l][h] : PK[l][h];
                const float *x = (kv ? V : K)[l][p] + h * HD;
                double c[HD];
                for (int r = 0; r < p_rank; r++) {
                    c[r] = 0;
                    for (int i = 0; i < HD; i++) c[r] += (double)P[r][i] * x[i];
                }
                for (int i = 0; i < HD; i++) {
                    double y = 0;
                    for (int r = 0; r < p_rank; r++) y += c[r] * P[r][i];
                    (kv ? RV : RK)[l][p][h * HD + i] = (float)y;
                }
            }
}

static void test_proj(sqz_ctx *ctx) {
    char path[] = "/tmp/sqz_test_kvproj_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK(fd >= 0 && write_proj(ctx, path), "projection file written");
    fill(11, 0.5f);
    const int ranks[2] = { HD, 5 };
    for (int ri = 0; ri < 2; ri++) {
        p_rank = ranks[ri];
        char spec[128];
        snprintf(spec, sizeof spec, "proj:file=%s,rank=%d,pairs=0+f32", path, p_rank);
        sqz_kv *kv = make(ctx, spec);
        CHECK(kv != NULL, "proj rank %d created", p_rank);
        if (!kv) continue;
        double e = step(kv, 0, 30, ref_proj);
        for (int p = 30; p < 40; p++) e = fmax(e, step(kv, p, 1, ref_proj));
        CHECK(e < 1e-4, "proj rank %d = naive %s (max err %.2g)", p_rank,
              ri ? "projected attention" : "exact attention", e);
        if (ri) {
            kv->policy->reset(kv->state);
            double ex = step(kv, 0, 30, ref_exact);
            CHECK(ex > 1e-2, "proj rank %d: differs from exact attention (%.2g)", p_rank, ex);
            kv->policy->reset(kv->state);
            for (int p = 0; p < 40; p++) step(kv, p, 1, ref_proj);
        }
        const size_t want = 2 * (size_t)L * HKV * p_rank * 40 * 4; /* coefficients only */
        CHECK(kv->policy->bytes(kv->state) == want, "proj rank %d: bytes %zu = %zu", p_rank,
              kv->policy->bytes(kv->state), want);
        sqz_kv_free(kv);
    }
    sqz_kv *kv = NULL;
    sqz_kv_shape shape = { L, HQ, HKV, HD, MAXP, 0 };
    char spec[128];
    snprintf(spec, sizeof spec, "proj:file=%s,rank=%d", path, HD + 1);
    CHECK(sqz_kv_new(ctx, &shape, spec, &kv) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "rank"),
          "proj: rank > head_dim refused (%s)", sqz_ctx_error(ctx));
    shape.head_dim = 8;
    snprintf(spec, sizeof spec, "proj:file=%s", path);
    CHECK(sqz_kv_new(ctx, &shape, spec, &kv) == SQZ_ERR_ARG, "proj: file of another shape refused (%s)",
          sqz_ctx_error(ctx));
    unlink(path);
}

/* proj pairs=1 keeps whole RoPE pairs of keys, so attention stays a function of relative
 * positions: turning every key and query by the same extra RoPE offset (which leaves every
 * q . k unchanged) leaves the outputs unchanged. A PCA basis mixing pairs (pairs=0 with the
 * random bases here) does not have that property: the same check fails for it. */
static double proj_shift_err(sqz_ctx *ctx, const char *path, int pairs) {
    static float KR[L][MAXP][ROW], QR[L][MAXP][HQ * HD], o1[30 * HQ * HD], o2[30 * HQ * HD];
    const int T = 30, half = HD / 2, shift = 37;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < T; p++) {
            memcpy(KR[l][p], K[l][p], sizeof KR[l][p]);
            memcpy(QR[l][p], Q[l][p], sizeof QR[l][p]);
            for (int h = 0; h < HQ; h++)
                for (int i = 0; i < half; i++) { /* RoPE by `shift` more positions, HF pairs */
                    const double a = shift * pow(10000.0, -2.0 * i / HD), cs = cos(a), sn = sin(a);
                    float *x = QR[l][p] + h * HD, *y = h < HKV ? KR[l][p] + h * HD : NULL;
                    const float x0 = x[i], x1 = x[i + half];
                    x[i] = (float)(x0 * cs - x1 * sn), x[i + half] = (float)(x1 * cs + x0 * sn);
                    if (y) {
                        const float y0 = y[i], y1 = y[i + half];
                        y[i] = (float)(y0 * cs - y1 * sn), y[i + half] = (float)(y1 * cs + y0 * sn);
                    }
                }
        }
    char spec[160];
    snprintf(spec, sizeof spec, "proj:file=%s,rank=8,pairs=%d+f32", path, pairs);
    sqz_kv *ka = make(ctx, spec), *kb = make(ctx, spec);
    double err = ka && kb ? 0 : -1;
    for (int l = 0; ka && kb && l < L; l++) {
        ka->policy->store(ka->state, l, 0, T, K[l][0], V[l][0]);
        ka->policy->attend(ka->state, l, 0, T, Q[l][0], o1, 1);
        kb->policy->store(kb->state, l, 0, T, KR[l][0], V[l][0]);
        kb->policy->attend(kb->state, l, 0, T, QR[l][0], o2, 1);
        for (int i = 0; i < T * HQ * HD; i++) err = fmax(err, fabs(o1[i] - o2[i]));
    }
    sqz_kv_free(ka), sqz_kv_free(kb);
    return err;
}

static void test_proj_rope(sqz_ctx *ctx) {
    char path[] = "/tmp/sqz_test_kvproj_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK(fd >= 0 && write_proj(ctx, path), "projection file with key energies written");
    fill(21, 0.5f);
    const double e1 = proj_shift_err(ctx, path, 1), e0 = proj_shift_err(ctx, path, 0);
    CHECK(e1 >= 0 && e1 < 1e-4, "proj pairs=1: outputs unchanged by a common RoPE shift (%.2g)", e1);
    CHECK(e0 > 1e-3, "proj pairs=0 (PCA across pairs): a common RoPE shift changes outputs (%.2g)", e0);
    sqz_kv *kv = NULL;
    sqz_kv_shape shape = { L, HQ, HKV, HD, MAXP, 0 };
    char spec[160];
    snprintf(spec, sizeof spec, "proj:file=%s,rank=5,pairs=1", path);
    CHECK(sqz_kv_new(ctx, &shape, spec, &kv) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "even"),
          "proj pairs=1: odd rank refused (%s)", sqz_ctx_error(ctx));
    unlink(path);
}

/* ---- minicache: start=2 pairs layers 2 and 3 */
static float mc_gamma;
static void ref_minicache(int l, int pos, int n) {
    ref_exact(l, pos, n);
    if (l < 2) return;
    const int merged_end = l == 2 ? pos : pos + n;
    for (int p = 0; p < merged_end; p++)
        for (int h = 0; h < HKV; h++)
            for (int kv = 0; kv < 2; kv++) {
                const float *a = (kv ? V : K)[2][p] + h * HD, *b = (kv ? V : K)[3][p] + h * HD;
                double na = 0, nb = 0, dot = 0, e[HD], ne = 0;
                for (int i = 0; i < HD; i++) na += a[i] * a[i], nb += b[i] * b[i], dot += a[i] * b[i];
                na = sqrt(na), nb = sqrt(nb);
                if (acos(dot / (na * nb)) / M_PI > mc_gamma) continue; /* kept exact */
                /* SLERP at t = 1/2 by its definition */
                const double th = acos(dot / (na * nb));
                for (int i = 0; i < HD; i++) {
                    e[i] = (sin(th / 2) * a[i] / na + sin(th / 2) * b[i] / nb) / sin(th);
                    ne += e[i] * e[i];
                }
                (void)ne;
                /* magnitudes are stored as f16 */
                const double m = sqz_f16_to_f32(sqz_f32_to_f16((float)(l == 2 ? na : nb)));
                for (int i = 0; i < HD; i++) (kv ? RV : RK)[l][p][h * HD + i] = (float)(m * e[i]);
            }
}

static void test_minicache(sqz_ctx *ctx) {
    fill(5, 0.6f);
    const float gammas[3] = { 0, 1, 0.25f };
    for (int gi = 0; gi < 3; gi++) {
        mc_gamma = gammas[gi];
        char spec[64];
        snprintf(spec, sizeof spec, "minicache:start=2,gamma=%g+f32", mc_gamma);
        sqz_kv *kv = make(ctx, spec);
        CHECK(kv != NULL, "%s created", spec);
        if (!kv) continue;
        double e = step(kv, 0, 20, ref_minicache);
        for (int p = 20; p < 30; p++) e = fmax(e, step(kv, p, 1, ref_minicache));
        CHECK(e < 1e-4, "%s = naive %s (max err %.2g)", spec,
              gi == 0 ? "exact attention" : "SLERP-merged attention", e);
        int want_kept[2] = { 0, 0 };
        for (int p = 0; p < 30; p++)
            for (int h = 0; h < HKV; h++)
                for (int kvi = 0; kvi < 2; kvi++) {
                    const float *a = (kvi ? V : K)[2][p] + h * HD, *b = (kvi ? V : K)[3][p] + h * HD;
                    double na = 0, nb = 0, dot = 0;
                    for (int i = 0; i < HD; i++) na += a[i] * a[i], nb += b[i] * b[i], dot += a[i] * b[i];
                    want_kept[kvi] += acos(dot / sqrt(na * nb)) / M_PI > mc_gamma;
                }
        CHECK(sqz_kv_minicache_kept(kv->state, 2, 0) == want_kept[0] &&
              sqz_kv_minicache_kept(kv->state, 3, 1) == want_kept[1],
              "%s: kept pairs K %d V %d (naive %d, %d)", spec, sqz_kv_minicache_kept(kv->state, 2, 0),
              sqz_kv_minicache_kept(kv->state, 2, 1), want_kept[0], want_kept[1]);
        const size_t P = 30, f32 = 2 * L * P * ROW * 4;
        const size_t want = 2 * 2 * P * ROW * 4 /* layers 0, 1 */ +
                            2 * P * HKV * (HD * 4 + 8) + (size_t)(want_kept[0] + want_kept[1]) * HD * 4;
        CHECK(kv->policy->bytes(kv->state) == want, "%s: bytes %zu = %zu (f32: %zu)", spec,
              kv->policy->bytes(kv->state), want, f32);
        sqz_kv_free(kv);
    }
}

/* ---- kvmerger: a naive merge of one head's states */
typedef struct mstate { double k[HD], v[HD], score; } mstate;

static int naive_merge(mstate *s, int n, int window, double thr) {
    int w = 0;
    static mstate out[MAXP];
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (i < n - window && j < n - window) {
            double d = 0, na = 0, nb = 0;
            for (int x = 0; x < HD; x++)
                d += s[j - 1].k[x] * s[j].k[x], na += s[j - 1].k[x] * s[j - 1].k[x], nb += s[j].k[x] * s[j].k[x];
            if (d / sqrt(na * nb) < thr) break;
            j++;
        }
        int piv = i;
        for (int t = i; t < j; t++)
            if (s[t].score > s[piv].score) piv = t;
        double d2[MAXP], s2 = 0, wsum = 0;
        mstate m = { { 0 }, { 0 }, 0 };
        for (int t = i; t < j; t++) {
            d2[t] = 0;
            for (int x = 0; x < HD; x++) d2[t] += (s[t].k[x] - s[piv].k[x]) * (s[t].k[x] - s[piv].k[x]);
            s2 += d2[t];
            m.score += s[t].score;
        }
        if (j - i > 1) s2 /= j - i - 1;
        for (int t = i; t < j; t++) {
            const double wt = s2 > 0 ? exp(-d2[t] / (2 * s2)) : 1;
            wsum += wt;
            for (int x = 0; x < HD; x++) m.k[x] += wt * s[t].k[x], m.v[x] += wt * s[t].v[x];
        }
        for (int x = 0; x < HD; x++) m.k[x] /= wsum, m.v[x] /= wsum;
        out[w++] = m;
        i = j;
    }
    memcpy(s, out, (size_t)w * sizeof *s);
    return w;
}

static void test_kvmerger(sqz_ctx *ctx) {
    /* keys in runs of similar vectors: run lengths 1..5 */
    uint64_t rs = 3;
    fill(13, 0.5f);
    for (int l = 0; l < L; l++)
        for (int p = 1; p < MAXP; p++)
            if ((p * 7 + l) % 5 != 0)
                for (int i = 0; i < ROW; i++) K[l][p][i] = K[l][p - 1][i] + 0.05f * test_frand(&rs);
    const int P0 = 40, budget = 16, window = 4;
    const double thr = 0.9;
    char spec[96];
    snprintf(spec, sizeof spec, "kvmerger:threshold=%g,budget=%d,window=%d+f32", thr, budget, window);
    sqz_kv *kv = make(ctx, spec);
    CHECK(kv != NULL, "%s created", spec);
    if (!kv) return;
    /* the prompt: exact attention, then the merge */
    double e = step(kv, 0, P0, ref_exact);
    CHECK(e < 1e-4, "kvmerger: prompt attention exact (max err %.2g)", e);
    double worst = 0;
    int all_n = 1, total = 0;
    static mstate ms[L][HKV][MAXP];
    int nms[L][HKV];
    for (int l = 0; l < L; l++)
        for (int g = 0; g < HKV; g++) {
            mstate *s = ms[l][g];
            for (int p = 0; p < P0; p++) {
                for (int x = 0; x < HD; x++) s[p].k[x] = K[l][p][g * HD + x], s[p].v[x] = V[l][p][g * HD + x];
                s[p].score = 0;
            }
            /* scores: attention each state received from the prompt's queries (double) */
            for (int t = 0; t < P0; t++)
                for (int h = g * GRP; h < (g + 1) * GRP; h++) {
                    double sc[MAXP], mx = -1e300, sum = 0;
                    for (int p = 0; p <= t; p++) {
                        double d = 0;
                        for (int x = 0; x < HD; x++) d += (double)Q[l][t][h * HD + x] * s[p].k[x];
                        sc[p] = d / sqrt((double)HD);
                        mx = fmax(mx, sc[p]);
                    }
                    for (int p = 0; p <= t; p++) sum += (sc[p] = exp(sc[p] - mx));
                    for (int p = 0; p <= t; p++) s[p].score += sc[p] / sum;
                }
            nms[l][g] = naive_merge(s, P0, window, thr);
            const float *hk, *hv, *hs;
            const int n = sqz_kv_kvmerger_held(kv->state, l, g, &hk, &hv, &hs);
            all_n &= n == nms[l][g];
            total += n;
            for (int i = 0; i < n && i < nms[l][g]; i++) {
                for (int x = 0; x < HD; x++) {
                    worst = fmax(worst, fabs(hk[i * HD + x] - s[i].k[x]));
                    worst = fmax(worst, fabs(hv[i * HD + x] - s[i].v[x]));
                }
                worst = fmax(worst, fabs(hs[i] - s[i].score) / (1 + s[i].score));
            }
        }
    CHECK(all_n && total < L * HKV * P0, "kvmerger: merge sets = naive (%d states held of %d)", total,
          L * HKV * P0);
    CHECK(worst < 1e-4, "kvmerger: merged keys, values, scores = naive (max err %.2g)", worst);
    CHECK(kv->policy->bytes(kv->state) == (size_t)total * ((2 * HD + 1) * 4 + 1), "kvmerger: bytes = %zu",
          kv->policy->bytes(kv->state));
    /* one decode step attends over the merged states plus the new one */
    float out[HQ * HD];
    double err = 0;
    for (int l = 0; l < L; l++) {
        kv->policy->store(kv->state, l, P0, 1, K[l][P0], V[l][P0]);
        kv->policy->attend(kv->state, l, P0, 1, Q[l][P0], out, 1);
        for (int h = 0; h < HQ; h++) {
            const int g = h / GRP, n = nms[l][g];
            double sc[MAXP], mx = -1e300, sum = 0;
            for (int p = 0; p <= n; p++) {
                double d = 0;
                for (int x = 0; x < HD; x++)
                    d += (double)Q[l][P0][h * HD + x] * (p < n ? ms[l][g][p].k[x] : K[l][P0][g * HD + x]);
                sc[p] = d / sqrt((double)HD);
                mx = fmax(mx, sc[p]);
            }
            for (int p = 0; p <= n; p++) sum += (sc[p] = exp(sc[p] - mx));
            for (int x = 0; x < HD; x++) {
                double o = 0;
                for (int p = 0; p <= n; p++) o += sc[p] / sum * (p < n ? ms[l][g][p].v[x] : V[l][P0][g * HD + x]);
                err = fmax(err, fabs(o - out[h * HD + x]));
            }
        }
    }
    CHECK(err < 1e-4, "kvmerger: decode attends over the merged states (max err %.2g)", err);
    sqz_kv_free(kv);
}

/* kvmerger over many decode steps, each a merge pass: the memo of consecutive keys known apart
 * must not change a thing. A twin cache forgets the memo before every step (so it rescans every
 * cosine, as the policy did without it); held states and outputs must be bitwise the same. */
static void test_kvmerger_memo(sqz_ctx *ctx) {
    uint64_t rs = 11;
    fill(17, 0.5f);
    for (int l = 0; l < L; l++)
        for (int p = 1; p < MAXP; p++)
            if ((p * 3 + l) % 4 != 0)
                for (int i = 0; i < ROW; i++) K[l][p][i] = K[l][p - 1][i] + 0.08f * test_frand(&rs);
    const char *spec = "kvmerger:threshold=0.95,budget=8,window=3+f32";
    sqz_kv *a = make(ctx, spec), *b = make(ctx, spec);
    CHECK(a && b, "%s created twice", spec);
    if (!a || !b) {
        sqz_kv_free(a), sqz_kv_free(b);
        return;
    }
    const int P0 = 10;
    float oa[HQ * HD], ob[HQ * HD];
    int same = 1, held = 0, steps = 0;
    for (int l = 0; l < L; l++) {
        a->policy->store(a->state, l, 0, P0, K[l][0], V[l][0]);
        b->policy->store(b->state, l, 0, P0, K[l][0], V[l][0]);
    }
    for (int pos = P0; pos < MAXP; pos++, steps++)
        for (int l = 0; l < L; l++) {
            const int n = pos == P0 ? P0 : 1, p0 = pos == P0 ? 0 : pos;
            if (pos > P0) {
                a->policy->store(a->state, l, p0, n, K[l][p0], V[l][p0]);
                b->policy->store(b->state, l, p0, n, K[l][p0], V[l][p0]);
            }
            sqz_kv_kvmerger_forget(b->state);
            static float ya[MAXP * HQ * HD], yb[MAXP * HQ * HD];
            a->policy->attend(a->state, l, p0, n, Q[l][p0], ya, 1);
            b->policy->attend(b->state, l, p0, n, Q[l][p0], yb, 1);
            (void)oa, (void)ob;
            same &= !memcmp(ya, yb, (size_t)n * HQ * HD * sizeof(float));
            for (int g = 0; g < HKV; g++) {
                const float *ka, *va, *sa, *kb, *vb, *sb;
                const int na = sqz_kv_kvmerger_held(a->state, l, g, &ka, &va, &sa);
                static float kc[MAXP * HD], vc[MAXP * HD], sc[MAXP];
                memcpy(kc, ka, (size_t)na * HD * sizeof(float));
                memcpy(vc, va, (size_t)na * HD * sizeof(float));
                memcpy(sc, sa, (size_t)na * sizeof(float));
                const int nb = sqz_kv_kvmerger_held(b->state, l, g, &kb, &vb, &sb);
                same &= na == nb && !memcmp(kc, kb, (size_t)na * HD * sizeof(float)) &&
                        !memcmp(vc, vb, (size_t)na * HD * sizeof(float)) &&
                        !memcmp(sc, sb, (size_t)na * sizeof(float));
                held += na;
            }
        }
    CHECK(same, "kvmerger: %d steps with the apart memo = without it, bitwise (%d states held at "
          "the end, summed over steps)", steps, held);
    sqz_kv_free(a), sqz_kv_free(b);
}

static void test_errors(sqz_ctx *ctx) {
    sqz_kv_shape shape = { L, HQ, HKV, HD, MAXP, 0 };
    struct { const char *spec, *word; } bad[] = {
        { "xkv:rank=65", "rank" },          /* > 2 layers x 32 */
        { "xkv:bogus=1", "bogus" },
        { "xkv:group=9", "group" },
        { "xkv:window=0", "window" },
        { "minicache:gamma=1.5", "gamma" },
        { "minicache:start=x", "start" },
        { "kvmerger:threshold=2", "threshold" },
        { "kvmerger:budget=0", "budget" },
        { "proj", "file" },
        { "proj:file=/nonexistent/x.kvproj", "proj" },
        { "proj:rank=4,file=", "file" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sqz_kv *kv = NULL;
        sqz_status st = sqz_kv_new(ctx, &shape, bad[i].spec, &kv);
        CHECK(st != SQZ_OK && !kv && strstr(sqz_ctx_error(ctx), bad[i].word),
              "'%s' refused: %s", bad[i].spec, sqz_ctx_error(ctx));
    }
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    test_xkv(ctx);
    test_proj(ctx);
    test_minicache(ctx);
    test_kvmerger(ctx);
    test_kvmerger_memo(ctx);
    test_proj_rope(ctx);
    test_errors(ctx);
    sqz_ctx_free(ctx);
    return test_done();
}
