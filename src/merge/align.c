/* align.c - what the activation-matching merge methods share (align.h): PLeaS (pleas.c) and
 * OT fusion (otfusion.c). */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/calib_pass.h"
#include "io/file.h"
#include "kernels/kernels.h"
#include "math/lap.h"
#include "merge/align.h"
#include "sqz.h"

void align_gemm(int nt, int64_t M, int64_t N, int64_t K, const float *x, size_t ldx, int x_t, const float *w,
                size_t ldw, int w_t, float *y, size_t ldy, int acc) {
    if (M <= 0 || N <= 0) return;
    if (sqz_isa_best() != SQZ_ISA_AVX512) {
        cblas_sgemm(CblasRowMajor, x_t ? CblasTrans : CblasNoTrans, w_t ? CblasNoTrans : CblasTrans, (int)M, (int)N,
                    (int)K, 1.0f, x, (int)ldx, w, (int)ldw, acc ? 1.0f : 0.0f, y, (int)ldy);
        return;
    }
    enum { BN = 64, BM = 384 };
    const int64_t nb_n = (N + BN - 1) / BN, nb_m = (M + BM - 1) / BM, n_tasks = nb_n * nb_m;
    if (nt > n_tasks) nt = (int)n_tasks;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *strip = aligned_alloc(64, ((size_t)K * 32 * sizeof(float) + 63) & ~(size_t)63);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < n_tasks; task++) {
            const int64_t i0 = task / nb_n * BM, j0 = task % nb_n * BN;
            const int64_t mi = M - i0 < BM ? M - i0 : BM, nj = N - j0 < BN ? N - j0 : BN;
            if (strip)
                sqz_sgemm_avx512_ex((int)mi, (int)nj, K, x_t ? x + i0 : x + (size_t)i0 * ldx, ldx, x_t,
                                    w_t ? w + j0 : w + (size_t)j0 * ldw, ldw, w_t, y + (size_t)i0 * ldy + j0, ldy,
                                    acc, strip);
        }
        free(strip);
    }
}

/* ------------------------------------------------------------------ calibration windows */

/* Windows of C tokens, n of them spread evenly over ids[0..len), appended with owners O. */
static sqz_status add_windows(sqz_ctx *ctx, align_calib *c, const int32_t *ids, size_t len, size_t n, uint64_t O) {
    int32_t *t = realloc(c->ids, (c->T + n * c->C) * sizeof *t);
    uint64_t *o = realloc(c->own, (c->n_win + n) * sizeof *o);
    if (t) c->ids = t;
    if (o) c->own = o;
    if (!t || !o) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
    for (size_t w = 0; w < n; w++) {
        const size_t at = n > 1 ? w * (len - (size_t)c->C) / (n - 1) : 0;
        memcpy(c->ids + c->T + w * c->C, ids + at, (size_t)c->C * sizeof *ids);
        c->own[c->n_win + w] = O;
    }
    c->T += n * c->C, c->n_win += n;
    return SQZ_OK;
}

sqz_status align_calib_windows(merge_run *r, align_calib *c) {
    const sqz_merge_opts *o = r->opts;
    sqz_ctx *ctx = r->ctx;
    const int N = r->n_in;
    const char *text_of[64];
    for (int i = 0; i < N; i++) {
        text_of[i] = o->calib;
        for (int k = 0; k < o->n_task_calib; k++)
            if (merge_path_names(r->paths[i], o->task_calib_domain[k])) text_of[i] = o->task_calib_text[k];
        if (!text_of[i])
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s: no calibration text for model %s (--calib FILE, or --task-calib "
                            "DOMAIN=TEXT naming it)", r->cfg->path, r->paths[i]);
    }
    const size_t want = o->calib_tokens ? o->calib_tokens : 8192;
    c->C = o->calib_ctx > 0 ? o->calib_ctx : 256;
    const int max_ctx = r->models[0]->cfg.max_seq_len;
    if (max_ctx > 0 && c->C > max_ctx) c->C = max_ctx;
    sqz_status st = SQZ_OK;
    uint64_t done = 0;
    for (int i = 0; i < N && !st; i++) {
        if (done >> i & 1) continue;
        uint64_t O = 0;
        for (int k = i; k < N; k++)
            if (!strcmp(text_of[k], text_of[i])) O |= (uint64_t)1 << k;
        done |= O;
        char *text = NULL;
        size_t len = 0, n = 0;
        int32_t *ids = NULL;
        if ((st = sqz_file_read_all(ctx, text_of[i], (size_t)1 << 31, &text, &len))) break;
        st = sqz_tokenize(ctx, r->models[0], text, len, 0, &ids, &n);
        free(text);
        size_t nw = want / (size_t)c->C;
        if (nw > n / (size_t)c->C) nw = n / (size_t)c->C;
        if (!st && nw == 0)
            st = sqz_fail(ctx, SQZ_ERR_ARG, "%s: %zu tokens, less than one calibration window of %d (calib tokens %zu)",
                          text_of[i], n, c->C, want);
        if (!st) st = add_windows(ctx, c, ids, n, nw, O);
        sqz_free(ids);
    }
    return st;
}

void align_calib_free(align_calib *c) {
    free(c->ids), free(c->own);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------ f32 blocks */

sqz_tensor *align_field(sqz_layer_weights *w, const out_tensor *o) {
    return (sqz_tensor *)((char *)w + o->spec->at);
}

void align_free_layer(sqz_layer_weights *w) {
    const sqz_tensor *t[SQZ_LAYER_N_TENSORS];
    sqz_layer_tensors(w, t);
    for (int k = 0; k < SQZ_LAYER_N_TENSORS; k++) free((void *)t[k]->data);
    memset(w, 0, sizeof *w);
}

int align_permute_matrix(float *W, int64_t rows, int64_t cols, const int *rp, int rb, const int *cp, int cb) {
    float *t = malloc((size_t)(rows * cols) * sizeof *t);
    if (!t) return -1;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t sr = rp ? (int64_t)rp[r / rb] * rb + r % rb : r;
        for (int64_t c = 0; c < cols; c++)
            t[r * cols + c] = W[sr * cols + (cp ? (int64_t)cp[c / cb] * cb + c % cb : c)];
    }
    memcpy(W, t, (size_t)(rows * cols) * sizeof *t);
    free(t);
    return 0;
}

sqz_status align_load_layer(merge_run *r, int i, int l, const char *who, sqz_layer_weights *w) {
    memset(w, 0, sizeof *w);
    for (int k = 0; k < r->n_list; k++) {
        const out_tensor *o = &r->list[k];
        if (o->layer != l || !o->spec) continue;
        sqz_tensor *t = align_field(w, o);
        float *d = malloc((size_t)(o->rows * o->cols) * sizeof *d);
        if (!d || merge_load_slab(r, i, o, d)) {
            free(d);
            align_free_layer(w);
            return sqz_fail(r->ctx, SQZ_ERR_NOMEM, "%s: out of memory", who);
        }
        *t = (sqz_tensor){ .type = SQZ_TYPE_F32, .rows = o->rows, .cols = o->cols, .data = d };
    }
    return SQZ_OK;
}

float *align_load_outer(merge_run *r, int i, const out_tensor *o) {
    float *d = malloc((size_t)(o->rows * o->cols) * sizeof *d);
    if (d && merge_load_slab(r, i, o, d)) {
        free(d);
        return NULL;
    }
    return d;
}

/* ------------------------------------------------------------------ statistics */

int align_correlate(int nt, const float *A, int a, const float *B, int b, size_t T, float *out) {
    double *ma = calloc((size_t)a * 2, sizeof *ma), *mb = calloc((size_t)b * 2, sizeof *mb);
    if (!ma || !mb) {
        free(ma), free(mb);
        return -1;
    }
    for (size_t t = 0; t < T; t++) {
        for (int j = 0; j < a; j++) ma[j] += A[t * a + j], ma[a + j] += (double)A[t * a + j] * A[t * a + j];
        for (int j = 0; j < b; j++) mb[j] += B[t * b + j], mb[b + j] += (double)B[t * b + j] * B[t * b + j];
    }
    for (int j = 0; j < a; j++) ma[j] /= T, ma[a + j] = sqrt(fmax(ma[a + j] / T - ma[j] * ma[j], 0)) + 1e-8;
    for (int j = 0; j < b; j++) mb[j] /= T, mb[b + j] = sqrt(fmax(mb[b + j] / T - mb[j] * mb[j], 0)) + 1e-8;
    align_gemm(nt, a, b, (int64_t)T, A, (size_t)a, 1, B, (size_t)b, 1, out, (size_t)b, 0);
    for (int j = 0; j < a; j++)
        for (int k = 0; k < b; k++)
            out[(size_t)j * b + k] = (float)((out[(size_t)j * b + k] / T - ma[j] * mb[k]) / (ma[a + j] * mb[b + k]));
    free(ma), free(mb);
    return 0;
}

int align_match(const float *sim, int n, int *col_of_row) {
    double *c = malloc((size_t)n * n * sizeof *c);
    if (!c) return -1;
    for (size_t k = 0; k < (size_t)n * n; k++) c[k] = -(double)sim[k];
    const int rc = sqz_lap_solve(c, n, col_of_row);
    free(c);
    return rc;
}

void align_kv_head_sims(const float *ckv, int Hkv, int hd, float *out) {
    const int kvd = Hkv * hd;
    for (int g = 0; g < Hkv; g++)
        for (int g2 = 0; g2 < Hkv; g2++) {
            double s = 0;
            for (int j = 0; j < hd; j++)
                s += ckv[(size_t)(g * hd + j) * 2 * kvd + g2 * hd + j] +
                     ckv[(size_t)(kvd + g * hd + j) * 2 * kvd + kvd + g2 * hd + j];
            out[g * Hkv + g2] = (float)s;
        }
}

void align_q_head_sims(const float *catt, int Hq, int Hkv, int hd, int g, int g2, float *out) {
    const int G = Hq / Hkv, qd = Hq * hd;
    for (int a = 0; a < G; a++)
        for (int b = 0; b < G; b++) {
            const int h = g * G + a, h2 = g2 * G + b;
            double s = 0;
            for (int j = 0; j < hd; j++) s += catt[(size_t)(h * hd + j) * qd + h2 * hd + j];
            out[a * G + b] = (float)s;
        }
}

/* ------------------------------------------------------------------ activations */

typedef struct acts {
    sqz_ctx *ctx;
    const sqz_layer_weights *w;
    int C, kvd, row0;
    size_t win;
    float *kv, *att, *z;
} acts;

static sqz_status next_window(void *user) {
    ((acts *)user)->win++;
    return SQZ_OK;
}

static void capture(void *user, int layer, int site, const float *x, int Tb, int dim) {
    acts *c = user;
    const size_t row = c->win * (size_t)c->C + (size_t)c->row0;
    const int nt = c->ctx->n_threads, kvd = c->kvd;
    if (site == SQZ_SITE_QKV && c->kv) {
        align_gemm(nt, Tb, c->w->wk.rows, dim, x, (size_t)dim, 0, c->w->wk.data, (size_t)dim, 0,
                   c->kv + row * 2 * kvd, 2 * (size_t)kvd, 0);
        align_gemm(nt, Tb, c->w->wv.rows, dim, x, (size_t)dim, 0, c->w->wv.data, (size_t)dim, 0,
                   c->kv + row * 2 * kvd + kvd, 2 * (size_t)kvd, 0);
    } else if (site == SQZ_SITE_O && c->att) {
        memcpy(c->att + row * dim, x, (size_t)Tb * dim * sizeof *x);
    } else if (site == SQZ_SITE_DOWN && c->z) {
        memcpy(c->z + row * dim, x, (size_t)Tb * dim * sizeof *x);
    }
}

sqz_status align_block_acts(sqz_ctx *ctx, sqz_session *s, const sqz_layer_weights *w, int l, float *X,
                            const align_calib *c, float *kv, float *att, float *z) {
    acts a = { .ctx = ctx, .w = w, .C = c->C, .kvd = (int)w->wk.rows, .kv = kv, .att = att, .z = z };
    return sqz_calib_layer_pass(s, w, l, X, c->n_win, c->C, -1, capture, &a, &a.row0, next_window, &a);
}

/* ------------------------------------------------------------------ output */

sqz_status align_write_config(merge_run *r, int m, int F, sqz_hf_export *e) {
    size_t len = 0;
    char *js = merge_source_config_json(r->ctx, r->paths[0], &len);
    sqz_status st;
    if (js && m != F) {
        cJSON *j = cJSON_ParseWithLength(js, len);
        cJSON *f = j ? cJSON_GetObjectItem(j, "intermediate_size") : NULL;
        char *out = NULL;
        if (f) cJSON_SetNumberValue(f, m);
        if (f && (out = cJSON_Print(j))) {
            free(js);
            js = out, len = strlen(out);
        } else {
            free(out);
            free(js), js = NULL;
        }
        cJSON_Delete(j);
    }
    if (js) st = sqz_hf_export_config_json(e, js, len);
    else {
        sqz_config c = r->models[0]->cfg;
        c.rope_interleaved = 0;
        c.hidden_dim = m;
        st = sqz_hf_export_config(e, &c);
    }
    free(js);
    return st;
}

double align_param(const merge_run *r, int p) {
    double v;
    if (merge_value_eval(r->cfg->g[p], "", 0, &v)) return v;
    return r->method->defaults[p];
}
