/* decoupleq.c - decoupleQ's layer-wise alternating optimization (see decoupleq.h).
 *
 * Glossary: R rows in a chunk (<= CHUNK_ROWS), C = cols, g = group, G = C / g groups per row,
 * H the damped Hessian [C x C] (f64), U the upper Cholesky factor of H^-1 (H^-1 = U^T U) in
 * processing (act-order) order, f32 as GPTQ uses it; q codes, s / z scales / zeros [R x G];
 * S [C x G] with S[p][k] = sum of H[p][c] over the columns c of group k; P22 [G x G] the
 * group-by-group block sums of H (the zero-zero block of the normal equations, the same for
 * every row). "Candidate" arrays (q2, s2, z2, err2) hold a step's proposal until the per-row
 * acceptance test.
 *
 * Cost per row chunk and step: GPTQ, the objective and the least-squares step each take about
 * R * C^2 multiply-adds (GEMMs); the shrink search of round 1 one objective per candidate.
 * The paper's code tries 160 shrinks (grid 200, maxshrink 0.8); its result only seeds the
 * least-squares step that follows, and 16 (grid 20) end 0.2% higher (0.2765 vs 0.2758 of the
 * RTN objective on 256 rows of sqz-llama-26m's blk.0.attn_q, H from calibration text) in a
 * quarter of the time, so grid 20 is the default here.
 */
#include "quant/decoupleq.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dq2.h"
#include "math/hessian.h"

/* LAPACK, Fortran interface (see hessian.c: a row-major symmetric matrix is its own transpose,
 * so Fortran's 'L' is our upper triangle). */
extern void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda,
                   double *b, const int *ldb, int *info, size_t uplo_len);

enum { CHUNK_ROWS = 64, BATCH = 128 };

sqz_dq_opts sqz_dq_default_opts(void) {
    sqz_dq_opts o = { .group = 64, .iters = 4, .percdamp = 0.01, .act_order = 1, .grid = 20,
                      .maxshrink = 0.8, .threads = 0 };
    return o;
}

static inline float half_round(double x) { return sqz_f16_to_f32(sqz_f32_to_f16((float)x)); }

/* The stored weight: exactly dq2's to_float expression. */
static inline float dq_value(float s, float z, int q) { return s * (float)q + z; }

typedef struct {
    int64_t C;
    int g, G;
    const double *H;     /* [C x C] damped */
    const double *S;     /* [C x G] */
    const double *P22;   /* [G x G] */
    const float *U;      /* [C x C] upper factor of H^-1, processing order (NULL: no GPTQ) */
    const int64_t *perm; /* [C] processing position -> column */
    int iters, n_shrink;
    double grid;
} dq_plan;

typedef struct {
    double *E, *EH;  /* [R x C] */
    double *Tk, *Ak; /* [C x R], [g x R] */
    double *P11;     /* [R x G x G] */
    double *P, *y;   /* [2G x 2G], [2G] */
    double *x;       /* [R x 2G] least-squares solutions */
    float *wc, *eb;  /* GPTQ: working W [R x C] (processing order), batch errors [R x BATCH] */
} dq_work;

static void work_free(dq_work *w) {
    free(w->E), free(w->EH), free(w->Tk), free(w->Ak), free(w->P11), free(w->P), free(w->y);
    free(w->x), free(w->wc), free(w->eb);
}

static int work_alloc(dq_work *w, const dq_plan *p, int64_t R) {
    const size_t RC = (size_t)(R * p->C), G = (size_t)p->G;
    memset(w, 0, sizeof *w);
    w->E = malloc(RC * sizeof(double));
    w->EH = malloc(RC * sizeof(double));
    w->Tk = malloc((size_t)p->C * (size_t)R * sizeof(double));
    w->Ak = malloc((size_t)p->g * (size_t)R * sizeof(double));
    w->P11 = malloc((size_t)R * G * G * sizeof(double));
    w->P = malloc(4 * G * G * sizeof(double));
    w->y = malloc(2 * G * sizeof(double));
    w->x = malloc((size_t)R * 2 * G * sizeof(double));
    w->wc = malloc(RC * sizeof(float));
    w->eb = malloc((size_t)R * BATCH * sizeof(float));
    if (w->E && w->EH && w->Tk && w->Ak && w->P11 && w->P && w->y && w->x && w->wc && w->eb) return 0;
    work_free(w);
    return -1;
}

/* err[r] = (w_r - Q_r)^T H (w_r - Q_r) for the R rows of W with codes q and s, z. */
static void objective(const dq_plan *p, dq_work *wk, const float *W, int64_t R, const uint8_t *q,
                      const float *s, const float *z, double *err) {
    const int64_t C = p->C;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            const int64_t k = r * p->G + c / p->g;
            wk->E[r * C + c] = (double)W[r * C + c] - (double)dq_value(s[k], z[k], q[r * C + c]);
        }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)C, 1.0, wk->E,
                (int)C, p->H, (int)C, 0.0, wk->EH, (int)C);
    for (int64_t r = 0; r < R; r++) err[r] = cblas_ddot((int)C, wk->E + r * C, 1, wk->EH + r * C, 1);
}

/* Codes for fixed s, z by GPTQ (Frantar et al. 2023, Algorithm 1 with lazy batches, as
 * gptq.c): each column in processing order is rounded onto its group's grid, and its error,
 * scaled by U, is pushed onto the columns not yet rounded. */
static void gptq_codes(const dq_plan *p, dq_work *wk, const float *W, int64_t R, const float *s,
                       const float *z, uint8_t *q) {
    const int64_t C = p->C;
    float *wc = wk->wc, *eb = wk->eb;
    for (int64_t r = 0; r < R; r++)
        for (int64_t i = 0; i < C; i++) wc[r * C + i] = W[r * C + p->perm[i]];
    for (int64_t i1 = 0; i1 < C; i1 += BATCH) {
        const int64_t i2 = i1 + BATCH < C ? i1 + BATCH : C;
        for (int64_t i = i1; i < i2; i++) {
            const int64_t c = p->perm[i];
            const float *u = p->U + i * C;
            for (int64_t r = 0; r < R; r++) {
                float *wr = wc + r * C;
                const float w = wr[i], sc = s[r * p->G + c / p->g], zc = z[r * p->G + c / p->g];
                const float f = sc != 0.0f ? (w - zc) / sc : 0.0f;
                const int k = f >= 3.0f ? 3 : f > 0.0f ? (int)floorf(f + 0.5f) : 0;
                q[r * C + c] = (uint8_t)k;
                const float e = (w - dq_value(sc, zc, k)) / u[i];
                eb[r * BATCH + (i - i1)] = e;
                for (int64_t j = i + 1; j < i2; j++) wr[j] -= e * u[j];
            }
        }
        if (i2 < C) /* the lazy update of the columns after the batch */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)(C - i2),
                        (int)(i2 - i1), -1.0f, eb, BATCH, p->U + i1 * C + i2, (int)C, 1.0f,
                        wc + i2, (int)C);
    }
}

/* Solves the 2G normal equations of one row (P, y in wk, overwritten): x = (s..., z...).
 * Returns 0, or -1 when P stays singular after damping 1% of its mean diagonal. */
static int solve_row(int G, double *P, double *y, double *x) {
    const int n = 2 * G, one = 1;
    double *a = malloc((size_t)n * n * sizeof *a);
    if (!a) return -1;
    double mean = 0;
    for (int i = 0; i < n; i++) mean += P[i * n + i] / n;
    for (int attempt = 0; attempt < 2; attempt++) {
        memcpy(a, P, (size_t)n * n * sizeof *a);
        memcpy(x, y, (size_t)n * sizeof *x);
        if (attempt) /* a group whose codes are all equal makes its s and z columns collinear */
            for (int i = 0; i < n; i++) a[i * n + i] += 0.01 * mean;
        int info = 0;
        dposv_("L", &n, &one, a, &n, x, &n, &info, 1);
        int ok = info == 0;
        for (int i = 0; ok && i < n; i++) ok = isfinite(x[i]);
        if (ok) {
            free(a);
            return 0;
        }
    }
    free(a);
    return -1;
}

/* The closed-form step: for each row, the (s, z) minimising the objective for codes q, into
 * wk->x [R x 2G] (a row whose system is singular gets NaN). */
static void fit_rows(const dq_plan *p, dq_work *wk, const float *W, int64_t R, const uint8_t *q) {
    const int64_t C = p->C;
    const int g = p->g, G = p->G;
    /* Hw = W H, one GEMM (in EH) */
    for (int64_t k = 0; k < R * C; k++) wk->E[k] = W[k];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)C, 1.0, wk->E,
                (int)C, p->H, (int)C, 0.0, wk->EH, (int)C);
    /* P11[r][j][k] = sum_{a in j, b in k} q_a H_ab q_b: Tk = H[:, group k] . q[:, group k]^T */
    for (int k = 0; k < G; k++) {
        for (int t = 0; t < g; t++)
            for (int64_t r = 0; r < R; r++) wk->Ak[t * R + r] = q[r * C + (int64_t)k * g + t];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)C, (int)R, g, 1.0,
                    p->H + (int64_t)k * g, (int)C, wk->Ak, (int)R, 0.0, wk->Tk, (int)R);
        for (int64_t r = 0; r < R; r++)
            for (int j = 0; j < G; j++) {
                double acc = 0;
                for (int t = 0; t < g; t++) {
                    const int64_t a = (int64_t)j * g + t;
                    acc += q[r * C + a] * wk->Tk[a * R + r];
                }
                wk->P11[((size_t)r * G + j) * G + k] = acc;
            }
    }
    const int n = 2 * G;
    for (int64_t r = 0; r < R; r++) {
        const uint8_t *qr = q + r * C;
        const double *hw = wk->EH + r * C;
        double *P = wk->P, *y = wk->y;
        for (int j = 0; j < G; j++) {
            double ys = 0, yz = 0;
            for (int t = 0; t < g; t++) {
                const int64_t a = (int64_t)j * g + t;
                ys += qr[a] * hw[a];
                yz += hw[a];
            }
            y[j] = ys, y[G + j] = yz;
            for (int k = 0; k < G; k++) {
                /* P11 symmetrised against rounding; P12[j][k] = sum_{a in j} q_a S[a][k] */
                P[j * n + k] = 0.5 * (wk->P11[((size_t)r * G + j) * G + k] +
                                      wk->P11[((size_t)r * G + k) * G + j]);
                double acc = 0;
                for (int t = 0; t < g; t++) {
                    const int64_t a = (int64_t)j * g + t;
                    acc += qr[a] * p->S[a * G + k];
                }
                P[j * n + G + k] = acc;
                P[(G + k) * n + j] = acc;
                P[(G + j) * n + G + k] = p->P22[j * G + k];
            }
        }
        if (solve_row(G, P, y, wk->x + r * n) != 0)
            for (int i = 0; i < n; i++) wk->x[r * n + i] = NAN;
    }
}

/* The candidates of fit_rows rounded to half (non-finite stays non-finite: rejected). */
static void fitted_sz(const dq_plan *p, const dq_work *wk, int64_t R, float *s, float *z) {
    const int G = p->G;
    for (int64_t r = 0; r < R; r++)
        for (int j = 0; j < G; j++) {
            s[r * G + j] = half_round(wk->x[r * 2 * G + j]);
            z[r * G + j] = half_round(wk->x[r * 2 * G + G + j]);
        }
}

/* Round 1's seed, as the paper's find_params with iters_for_scale 2: per row, the shrink p of
 * every group's range [min(x, 0), max(x, 0)] whose round-to-nearest codes give the lowest
 * objective, then least squares on those codes. Candidate codes go to qt, the best to qb. */
static void shrink_seed(const dq_plan *p, dq_work *wk, const float *W, int64_t R, uint8_t *qt,
                        uint8_t *qb, float *st, float *zt, double *errt, double *best) {
    const int64_t C = p->C;
    const int g = p->g, G = p->G;
    for (int64_t r = 0; r < R; r++) best[r] = INFINITY;
    for (int i = 0; i < p->n_shrink; i++) {
        const float sh = (float)(1.0 - i / p->grid);
        for (int64_t r = 0; r < R; r++)
            for (int j = 0; j < G; j++) {
                const float *x = W + r * C + (int64_t)j * g;
                float mn = 0, mx = 0;
                for (int t = 0; t < g; t++) mn = fminf(mn, x[t]), mx = fmaxf(mx, x[t]);
                const float sc = (mx - mn) * sh / 3.0f, zc = mn * sh;
                st[r * G + j] = sc, zt[r * G + j] = zc;
                for (int t = 0; t < g; t++) {
                    const float f = sc != 0.0f ? (x[t] - zc) / sc : 0.0f;
                    qt[r * C + (int64_t)j * g + t] =
                        (uint8_t)(f >= 3.0f ? 3 : f > 0.0f ? (int)floorf(f + 0.5f) : 0);
                }
            }
        objective(p, wk, W, R, qt, st, zt, errt);
        for (int64_t r = 0; r < R; r++)
            if (errt[r] < best[r]) {
                best[r] = errt[r];
                memcpy(qb + r * C, qt + r * C, (size_t)C);
            }
    }
    fit_rows(p, wk, W, R, qb);
}

/* Rows whose candidate objective is strictly lower take it (codes if q2, and s, z if s2).
 * Returns how many did. */
static int64_t accept(const dq_plan *p, int64_t R, const double *err2, double *err,
                      const uint8_t *q2, uint8_t *q, const float *s2, const float *z2, float *s,
                      float *z) {
    int64_t n = 0;
    for (int64_t r = 0; r < R; r++) {
        if (!(err2[r] < err[r])) continue;
        err[r] = err2[r];
        if (q2) memcpy(q + r * p->C, q2 + r * p->C, (size_t)p->C);
        if (s2) {
            memcpy(s + r * p->G, s2 + r * p->G, (size_t)p->G * sizeof *s);
            memcpy(z + r * p->G, z2 + r * p->G, (size_t)p->G * sizeof *z);
        }
        n++;
    }
    return n;
}

static double sum(const double *v, int64_t n) {
    double t = 0;
    for (int64_t i = 0; i < n; i++) t += v[i];
    return t;
}

/* The whole schedule on R rows. trace[SQZ_DQ_MAX_STEPS] gets the chunk's objective sums;
 * *rounds the rounds run. Returns 0, -1 on NOMEM, -2 on a scale / zero beyond half range. */
static int dq_rows(const dq_plan *p, const float *W, int64_t R, uint8_t *q, float *s, float *z,
                   double *trace, int *rounds) {
    const int64_t C = p->C;
    const int G = p->G;
    dq_work wk;
    uint8_t *q2 = malloc((size_t)(R * C)), *q3 = malloc((size_t)(R * C));
    float *s2 = malloc((size_t)(R * G) * sizeof *s2), *z2 = malloc((size_t)(R * G) * sizeof *z2);
    double *err = malloc((size_t)R * sizeof *err), *err2 = malloc((size_t)R * sizeof *err2);
    double *err3 = malloc((size_t)R * sizeof *err3);
    int rc = 0;
    if (!q2 || !q3 || !s2 || !z2 || !err || !err2 || !err3 || work_alloc(&wk, p, R) != 0) {
        free(q2), free(q3), free(s2), free(z2), free(err), free(err2), free(err3);
        return -1;
    }
    /* 0: round-to-nearest on each group's min / max */
    for (int64_t r = 0; r < R && !rc; r++)
        for (int j = 0; j < G; j++) {
            sqz_dq2_rtn_group(W + r * C + (int64_t)j * p->g, p->g, &s[r * G + j], &z[r * G + j],
                              q + r * C + (int64_t)j * p->g);
            if (!isfinite(s[r * G + j]) || !isfinite(z[r * G + j])) rc = -2;
        }
    if (rc) goto done;
    objective(p, &wk, W, R, q, s, z, err);
    int n_steps = 0;
    trace[n_steps++] = sum(err, R);
    /* 1: GPTQ codes on that grid */
    gptq_codes(p, &wk, W, R, s, z, q2);
    objective(p, &wk, W, R, q2, s, z, err2);
    accept(p, R, err2, err, q2, q, NULL, NULL, s, z);
    trace[n_steps++] = sum(err, R);
    *rounds = 0;
    for (int it = 0; it < p->iters - 1; it++) {
        /* codes on a candidate grid */
        if (it == 0) {
            shrink_seed(p, &wk, W, R, q2, q3, s2, z2, err2, err3);
            fitted_sz(p, &wk, R, s2, z2);
        } else {
            memcpy(s2, s, (size_t)(R * G) * sizeof *s);
            memcpy(z2, z, (size_t)(R * G) * sizeof *z);
        }
        gptq_codes(p, &wk, W, R, s2, z2, q2);
        objective(p, &wk, W, R, q2, s2, z2, err2);
        const int64_t n_codes = accept(p, R, err2, err, q2, q, s2, z2, s, z);
        trace[n_steps++] = sum(err, R);
        ++*rounds;
        if (!n_codes) break;
        /* scale and zero in closed form for the current codes */
        fit_rows(p, &wk, W, R, q);
        fitted_sz(p, &wk, R, s2, z2);
        objective(p, &wk, W, R, q, s2, z2, err2);
        const int64_t n_sz = accept(p, R, err2, err, NULL, q, s2, z2, s, z);
        trace[n_steps++] = sum(err, R);
        if (!n_sz) break;
    }
    for (; n_steps < 2 + 2 * (p->iters - 1); n_steps++) trace[n_steps] = trace[n_steps - 1];
done:
    work_free(&wk);
    free(q2), free(q3), free(s2), free(z2), free(err), free(err2), free(err3);
    return rc;
}

/* S and P22 of H (see the glossary). */
static void group_sums(const double *H, int64_t C, int g, double *S, double *P22) {
    const int G = (int)(C / g);
    for (int64_t a = 0; a < C; a++)
        for (int k = 0; k < G; k++) {
            double acc = 0;
            for (int t = 0; t < g; t++) acc += H[a * C + (int64_t)k * g + t];
            S[a * G + k] = acc;
        }
    for (int j = 0; j < G; j++)
        for (int k = 0; k < G; k++) {
            double acc = 0;
            for (int t = 0; t < g; t++) acc += S[((int64_t)j * g + t) * G + k];
            P22[j * G + k] = acc;
        }
}

int sqz_dq_fit_scale_zero(const double *H, int64_t cols, int group, const float *w,
                          const uint8_t *q, double *s, double *z) {
    if (!H || !w || !q || !s || !z || group < 1 || cols < group || cols % group) return -1;
    const int G = (int)(cols / group);
    double *S = malloc((size_t)cols * G * sizeof *S), *P22 = malloc((size_t)G * G * sizeof *P22);
    dq_plan p = { .C = cols, .g = group, .G = G, .H = H, .S = S, .P22 = P22 };
    dq_work wk;
    int rc = -1;
    if (S && P22 && work_alloc(&wk, &p, 1) == 0) {
        group_sums(H, cols, group, S, P22);
        fit_rows(&p, &wk, w, 1, q);
        if (isfinite(wk.x[0])) {
            for (int j = 0; j < G; j++) s[j] = wk.x[j], z[j] = wk.x[G + j];
            rc = 0;
        }
        work_free(&wk);
    }
    free(S), free(P22);
    return rc;
}

sqz_status sqz_decoupleq(sqz_ctx *ctx, const float *W, int64_t rows, int64_t cols,
                         const double *H, const sqz_dq_opts *opts, uint8_t *codes, float *scale,
                         float *zero, float *deq, sqz_dq_stats *stats) {
    const sqz_dq_opts o = opts ? *opts : sqz_dq_default_opts();
    if (!W || !H) return sqz_fail(ctx, SQZ_ERR_ARG, "decoupleq: %s is NULL", W ? "H" : "W");
    if (o.group < 1 || rows < 1 || cols < 1 || cols % o.group)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "decoupleq: %lld x %lld matrix: cols must be a positive multiple of the "
                        "group size %d",
                        (long long)rows, (long long)cols, o.group);
    if (cols > 46340) /* LAPACK's int dimensions */
        return sqz_fail(ctx, SQZ_ERR_ARG, "decoupleq: %lld columns is too many", (long long)cols);
    if (o.iters < 1 || o.iters > 32 || o.grid < 1 || !(o.maxshrink > 0 && o.maxshrink <= 1) ||
        !(o.percdamp >= 0 && isfinite(o.percdamp)))
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "decoupleq: bad options (iters %d must be 1..32, grid %d >= 1, maxshrink "
                        "%g in (0, 1], percdamp %g >= 0)",
                        o.iters, o.grid, o.maxshrink, o.percdamp);
    for (int64_t k = 0; k < rows * cols; k++)
        if (!isfinite(W[k]))
            return sqz_fail(ctx, SQZ_ERR_ARG, "decoupleq: W has a non-finite entry at (%lld, %lld)",
                            (long long)(k / cols), (long long)(k % cols));
    const size_t nn = (size_t)cols * (size_t)cols;
    const int G = (int)(cols / o.group);
    double *Hd = malloc(nn * sizeof *Hd), *Hp = malloc(nn * sizeof *Hp);
    double *S = malloc((size_t)cols * G * sizeof *S), *P22 = malloc((size_t)G * G * sizeof *P22);
    float *U = malloc(nn * sizeof *U);
    int64_t *perm = malloc((size_t)cols * sizeof *perm), *tmp = malloc((size_t)cols * sizeof *tmp);
    uint8_t *q = codes ? codes : malloc((size_t)(rows * cols));
    float *s = scale ? scale : malloc((size_t)(rows * G) * sizeof *s);
    float *z = zero ? zero : malloc((size_t)(rows * G) * sizeof *z);
    const int64_t nchunks = (rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
    double *traces = calloc((size_t)nchunks * SQZ_DQ_MAX_STEPS, sizeof *traces);
    int *rounds = calloc((size_t)nchunks, sizeof *rounds);
    sqz_status st = SQZ_OK;
    if (!Hd || !Hp || !S || !P22 || !U || !perm || !tmp || !q || !s || !z || !traces || !rounds) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "decoupleq: out of memory for a %lld x %lld matrix",
                      (long long)rows, (long long)cols);
        goto done;
    }
    memcpy(Hd, H, nn * sizeof *Hd);
    double mean = 0;
    for (size_t k = 0; k < nn; k++)
        if (!isfinite(Hd[k])) {
            st = sqz_fail(ctx, SQZ_ERR_ARG, "decoupleq: H has a non-finite entry at (%lld, %lld)",
                          (long long)(k / (size_t)cols), (long long)(k % (size_t)cols));
            goto done;
        }
    mean = sqz_hessian_fix_dead(Hd, cols, NULL); /* the sum until divided just below */
    const double damp = o.percdamp * mean / (double)cols;
    const int info = sqz_hessian_prepare(Hd, cols, damp, o.act_order, perm, tmp, Hp, U);
    if (info != 0) {
        st = sqz_fail(ctx, SQZ_ERR_ARG,
                      "decoupleq: H is not positive definite after damping (percdamp %g; LAPACK "
                      "info %d)",
                      o.percdamp, info);
        goto done;
    }
    group_sums(Hd, cols, o.group, S, P22);
    const int n_shrink = (int)ceil(o.maxshrink * o.grid - 1e-9);
    const dq_plan p = { .C = cols, .g = o.group, .G = G, .H = Hd, .S = S, .P22 = P22, .U = U,
                        .perm = perm, .iters = o.iters, .n_shrink = n_shrink > 0 ? n_shrink : 1,
                        .grid = o.grid };
    const int nth = o.threads > 0 ? o.threads : ctx && ctx->n_threads > 0 ? ctx->n_threads : 1;
    int failed = 0;
#pragma omp parallel for num_threads(nth) schedule(dynamic, 1) if (nth > 1 && nchunks > 1) \
    reduction(min : failed)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        const int64_t r0 = ch * CHUNK_ROWS, R = rows - r0 < CHUNK_ROWS ? rows - r0 : CHUNK_ROWS;
        const int rc = dq_rows(&p, W + r0 * cols, R, q + r0 * cols, s + r0 * G, z + r0 * G,
                               traces + ch * SQZ_DQ_MAX_STEPS, &rounds[ch]);
        if (rc < failed) failed = rc;
    }
    if (failed == -1) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "decoupleq: out of memory");
        goto done;
    }
    if (failed == -2) {
        st = sqz_fail(ctx, SQZ_ERR_ARG, "decoupleq: W's range exceeds half precision's scale / zero");
        goto done;
    }
    if (deq)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                const int64_t k = r * G + c / o.group;
                deq[r * cols + c] = dq_value(s[k], z[k], q[r * cols + c]);
            }
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->n_steps = 2 + 2 * (o.iters - 1);
        for (int64_t ch = 0; ch < nchunks; ch++) { /* in chunk order: deterministic sums */
            for (int k = 0; k < stats->n_steps; k++)
                stats->objective[k] += traces[ch * SQZ_DQ_MAX_STEPS + k];
            if (rounds[ch] > stats->rounds_run) stats->rounds_run = rounds[ch];
        }
    }
done:
    free(Hd), free(Hp), free(S), free(P22), free(U), free(perm), free(tmp), free(traces), free(rounds);
    if (q != codes) free(q);
    if (s != scale) free(s);
    if (z != zero) free(z);
    return st;
}

sqz_status sqz_decoupleq_dq2(sqz_ctx *ctx, const float *W, int64_t rows, int64_t cols,
                             const double *H, const sqz_dq_opts *opts, void *out, float *deq,
                             sqz_dq_stats *stats) {
    const sqz_dq_opts o = opts ? *opts : sqz_dq_default_opts();
    if (o.group != QK_DQ2)
        return sqz_fail(ctx, SQZ_ERR_ARG, "decoupleq: dq2 stores groups of %d, not %d", QK_DQ2,
                        o.group);
    if (!out) return sqz_fail(ctx, SQZ_ERR_ARG, "decoupleq: out is NULL");
    if (rows < 1 || cols < 1 || cols % QK_DQ2) /* before allocating rows x cols codes */
        return sqz_decoupleq(ctx, W, rows, cols, H, &o, NULL, NULL, NULL, NULL, NULL);
    const int64_t G = cols / QK_DQ2;
    uint8_t *q = malloc((size_t)(rows * cols));
    float *s = malloc((size_t)(rows * G) * sizeof *s), *z = malloc((size_t)(rows * G) * sizeof *z);
    sqz_status st;
    if (!q || !s || !z) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "decoupleq: out of memory");
    } else if (!(st = sqz_decoupleq(ctx, W, rows, cols, H, &o, q, s, z, deq, stats))) {
        block_dq2 *b = out;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < G; j++)
                sqz_dq2_pack(&b[r * G + j], s[r * G + j], z[r * G + j], q + r * cols + j * QK_DQ2);
    }
    free(q), free(s), free(z);
    return st;
}
