/* test_train.c - the training engine (src/train/) against independent numbers:
 * ../shared/models/sqz-llama-14m/grad_reference.json (PyTorch, float64; see ../shared/README.md):
 * (a) the loss and every parameter's gradient L2 norm and max |g| on its fixed batch, within
 *     1e-4 relative;
 * (b) the gradients are bit-identical at 1 and 2 threads;
 * (c) 10 AdamW steps on that batch follow the reference's loss trajectory (1e-3 relative or
 *     1e-4 absolute);
 * (d) clipping scales to the requested norm; a quantized model is refused with a message;
 * (f) LoRA: the loss and the adapters' gradients equal what the full model's (checked in (a))
 *     give at W + s B A: dB = s G A^T, dA = s B^T G with G = dL/dW;
 * (e) the strided GEMM (AVX-512 kernel, threaded) equals its plain reference bit for bit in
 *     every operand layout, with and without accumulation;
 * (g) causal attention (blocks of query rows, the probabilities recomputed in the backward pass
 *     from each row's max and 1 / sum) against the plain full T x T softmax and its gradient in
 *     double, grouped-query heads, T not a multiple of the block.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "train/train.h"
#include "train/train_ops.h"
#include "test.h"

static cJSON *load_json(const char *path) {
    size_t len;
    uint8_t *b = test_read_file(path, &len);
    if (!b) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)b, len);
    free(b);
    return j;
}

static void grads_vs_reference(const sqz_train_params *tp, const float *g, const cJSON *ref) {
    const cJSON *grads = cJSON_GetObjectItem(ref, "grads");
    int n_ref = 0, n_ok = 0;
    double worst = 0;
    const char *worst_name = "";
    for (const cJSON *e = grads ? grads->child : NULL; e; e = e->next) {
        n_ref++;
        const sqz_train_tensor *t = sqz_train_find(tp, e->string);
        if (!t) {
            CHECK(0, "gradient of %s computed", e->string);
            continue;
        }
        const size_t n = (size_t)(t->rows * t->cols);
        double ss = 0, mx = 0;
        for (size_t i = 0; i < n; i++) {
            ss += (double)g[t->off + i] * g[t->off + i];
            mx = fmax(mx, fabs(g[t->off + i]));
        }
        const double l2 = sqrt(ss), rl2 = cJSON_GetObjectItem(e, "l2")->valuedouble,
                     rmx = cJSON_GetObjectItem(e, "max_abs")->valuedouble;
        const double err = fmax(fabs(l2 - rl2) / rl2, fabs(mx - rmx) / rmx);
        if (err <= 1e-4) n_ok++;
        else printf("# %s: l2 %.9g want %.9g, max %.9g want %.9g\n", e->string, l2, rl2, mx, rmx);
        if (err > worst) worst = err, worst_name = e->string;
    }
    CHECK(n_ref == tp->n_tensors, "the reference has a gradient for each of the %d tensors (%d)",
          tp->n_tensors, n_ref);
    CHECK(n_ref > 0 && n_ok == n_ref, "%d/%d gradients' L2 norm and max |g| within 1e-4 relative "
          "(worst %.2e, %s)", n_ok, n_ref, worst, worst_name);
}

static void gemm_layouts(void) {
    uint64_t rs = 7;
    enum { M = 29, N = 45, K = 37, LD = 53 };
    float *x = malloc(LD * LD * sizeof *x), *w = malloc(LD * LD * sizeof *w);
    float *y0 = malloc(M * LD * sizeof *y0), *y1 = malloc(M * LD * sizeof *y1);
    for (int i = 0; i < LD * LD; i++) x[i] = test_frand(&rs), w[i] = test_frand(&rs);
    int same = 1;
    const int exact = sqz_isa_best() == SQZ_ISA_AVX512;
    for (int c = 0; c < 8; c++) {
        const int x_t = c & 1, w_t = (c >> 1) & 1, acc = (c >> 2) & 1;
        for (int i = 0; i < M * LD; i++) y0[i] = y1[i] = test_frand(&rs);
        memcpy(y1, y0, M * LD * sizeof *y0);
        tops_gemm_ref(M, N, K, x, LD, x_t, w, LD, w_t, y0, LD, acc);
        tops_gemm(2, M, N, K, x, LD, x_t, w, LD, w_t, y1, LD, acc);
        /* AVX-512: sqz's kernel, the same fmaf chains; elsewhere OpenBLAS, to rounding */
        int ok = 1;
        for (int i = 0; i < M * LD; i++)
            ok &= exact ? y0[i] == y1[i] : fabsf(y0[i] - y1[i]) <= 1e-5f * (1 + fabsf(y0[i]));
        if (!ok) printf("# x_t %d w_t %d acc %d differ\n", x_t, w_t, acc);
        same &= ok;
    }
    CHECK(same, "strided GEMM == reference %s (8 layouts, %dx%dx%d)", exact ? "bit for bit" : "to 1e-5", M, N, K);
    free(x), free(w), free(y0), free(y1);
}

/* (g): the plain attention in double: out, and with dout given, dq / dk / dv */
static void attention_naive(int B, int T, int Hq, int Hkv, int hd, const float *q, const float *k, const float *v,
                            const float *dout, double *out, double *dq, double *dk, double *dv) {
    const int qd = Hq * hd, kvd = Hkv * hd, G = Hq / Hkv;
    const double scale = 1.0 / sqrt(hd);
    double *p = malloc((size_t)T * sizeof *p), *dp = malloc((size_t)T * sizeof *dp);
    if (dout) memset(dk, 0, (size_t)B * T * kvd * sizeof *dk), memset(dv, 0, (size_t)B * T * kvd * sizeof *dv);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++)
            for (int t = 0; t < T; t++) {
                const float *Q = q + ((size_t)b * T + t) * qd + h * hd;
                const size_t kv0 = (size_t)b * T * kvd + (size_t)(h / G) * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += (double)Q[d] * k[kv0 + (size_t)j * kvd + d];
                    p[j] = s * scale, mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j <= t; j++) p[j] = exp(p[j] - mx), sum += p[j];
                for (int j = 0; j <= t; j++) p[j] /= sum;
                double *o = out + ((size_t)b * T + t) * qd + h * hd;
                for (int d = 0; d < hd; d++) {
                    o[d] = 0;
                    for (int j = 0; j <= t; j++) o[d] += p[j] * v[kv0 + (size_t)j * kvd + d];
                }
                if (!dout) continue;
                const float *dO = dout + ((size_t)b * T + t) * qd + h * hd;
                double dot = 0;
                for (int j = 0; j <= t; j++) {
                    dp[j] = 0;
                    for (int d = 0; d < hd; d++) dp[j] += (double)dO[d] * v[kv0 + (size_t)j * kvd + d];
                    dot += p[j] * dp[j];
                }
                double *dQ = dq + ((size_t)b * T + t) * qd + h * hd;
                for (int d = 0; d < hd; d++) dQ[d] = 0;
                for (int j = 0; j <= t; j++) {
                    const double ds = p[j] * (dp[j] - dot) * scale;
                    for (int d = 0; d < hd; d++) {
                        dQ[d] += ds * k[kv0 + (size_t)j * kvd + d];
                        dk[kv0 + (size_t)j * kvd + d] += ds * Q[d];
                        dv[kv0 + (size_t)j * kvd + d] += p[j] * dO[d];
                    }
                }
            }
    free(p), free(dp);
}

static double worst_rel(const float *a, const double *ref, size_t n) {
    double amax = 0, w = 0;
    for (size_t i = 0; i < n; i++) amax = fabs(ref[i]) > amax ? fabs(ref[i]) : amax;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs(a[i] - ref[i]) / amax);
    return w;
}

static void attention_vs_naive(void) {
    enum { B = 2, T = 150, Hq = 4, Hkv = 2, hd = 16 }; /* 150: blocks of 64, 64, 22 */
    const size_t nq = (size_t)B * T * Hq * hd, nkv = (size_t)B * T * Hkv * hd;
    uint64_t rs = 11;
    float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
    float *dout = malloc(nq * sizeof *dout), *out = malloc(nq * sizeof *out), *st = malloc((size_t)B * Hq * T * 2 * sizeof *st);
    float *dq = malloc(nq * sizeof *dq), *dk = malloc(nkv * sizeof *dk), *dv = malloc(nkv * sizeof *dv);
    double *o0 = malloc(nq * sizeof *o0), *dq0 = malloc(nq * sizeof *dq0), *dk0 = malloc(nkv * sizeof *dk0),
           *dv0 = malloc(nkv * sizeof *dv0);
    for (size_t i = 0; i < nq; i++) q[i] = 2 * test_frand(&rs), dout[i] = test_frand(&rs);
    for (size_t i = 0; i < nkv; i++) k[i] = 2 * test_frand(&rs), v[i] = test_frand(&rs);
    memset(dk, 0x7f, nkv * sizeof *dk), memset(dv, 0x7f, nkv * sizeof *dv); /* (=): overwritten */
    tops_attention(2, B, T, Hq, Hkv, hd, q, k, v, st, out);
    tops_attention_back(2, B, T, Hq, Hkv, hd, q, k, v, st, dout, dq, dk, dv);
    attention_naive(B, T, Hq, Hkv, hd, q, k, v, dout, o0, dq0, dk0, dv0);
    const double e[4] = { worst_rel(out, o0, nq), worst_rel(dq, dq0, nq), worst_rel(dk, dk0, nkv), worst_rel(dv, dv0, nkv) };
    CHECK(e[0] < 1e-5 && e[1] < 1e-5 && e[2] < 1e-5 && e[3] < 1e-5,
          "causal attention == the plain T x T softmax in double (T %d, %d/%d heads): worst |diff| / max "
          "out %.1e dq %.1e dk %.1e dv %.1e", T, Hq, Hkv, e[0], e[1], e[2], e[3]);
    float *out1 = malloc(nq * sizeof *out1), *dq1 = malloc(nq * sizeof *dq1);
    tops_attention(1, B, T, Hq, Hkv, hd, q, k, v, st, out1);
    tops_attention_back(1, B, T, Hq, Hkv, hd, q, k, v, st, dout, dq1, dk, dv);
    CHECK(!memcmp(out, out1, nq * sizeof *out) && !memcmp(dq, dq1, nq * sizeof *dq), "attention: 1 thread == 2 threads bit for bit");
    free(q), free(k), free(v), free(dout), free(out), free(st), free(dq), free(dk), free(dv);
    free(o0), free(dq0), free(dk0), free(dv0), free(out1), free(dq1);
}

/* (f): tp's parameters at the model's start; x, y a batch */
static void lora_vs_full(sqz_ctx *ctx, sqz_train_params *tp, int B, int T, const int32_t *x,
                         const int32_t *y) {
    sqz_train_lora lo;
    CHECK(sqz_train_lora_new(ctx, tp, 4, 8.0f, (1u << SQZ_LORA_N) - 1, 3, &lo) == SQZ_OK, "LoRA rank 4");
    uint64_t rs = 11;
    for (int i = 1; i < lo.n_tensors; i += 2) /* B random (it starts at zero) */
        for (int64_t j = 0; j < lo.t[i].rows * lo.t[i].cols; j++) lo.p[lo.t[i].off + j] = 0.05f * test_frand(&rs);
    /* W_eff = W + s B A for every adapted matrix, in a copy of the parameters */
    float *pe = malloc(tp->n * sizeof *pe);
    memcpy(pe, tp->p, tp->n * sizeof *pe);
    for (int l = 0; l < tp->cfg.n_layers; l++) {
        const sqz_train_layer *L = &tp->L[l];
        const size_t w[SQZ_LORA_N] = { L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down };
        for (int tg = 0; tg < SQZ_LORA_N; tg++) {
            const float *A = lo.p + lo.a[l][tg], *Bm = lo.p + lo.b[l][tg];
            const sqz_train_tensor *tb = NULL;
            for (int i = 0; i < lo.n_tensors; i++) if (lo.t[i].off == lo.b[l][tg]) tb = &lo.t[i];
            const int64_t rows = tb->rows, cols = lo.t[tb - lo.t - 1].cols;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++) {
                    double d = 0;
                    for (int k = 0; k < 4; k++) d += (double)Bm[r * 4 + k] * A[k * cols + c];
                    pe[w[tg] + (size_t)(r * cols + c)] += (float)(lo.scale * d);
                }
        }
    }
    sqz_train_acts *a = NULL, *al = NULL;
    sqz_train_acts_new(ctx, &tp->cfg, B, T, 0, &a);
    sqz_train_acts_new(ctx, &tp->cfg, B, T, 4, &al);
    float *G = calloc(tp->n, sizeof *G), *lg = calloc(lo.n, sizeof *lg);
    const double l_full = sqz_train_forward(tp, pe, NULL, a, x, y, 2);
    sqz_train_backward(tp, pe, G, NULL, NULL, a, 2);
    const double l_lora = sqz_train_forward(tp, tp->p, &lo, al, x, y, 2);
    sqz_train_backward(tp, tp->p, NULL, &lo, lg, al, 2);
    CHECK_CLOSE(l_lora, l_full, 0, 1e-5, "LoRA loss == the full model's at W + s B A (%.6f)", l_lora);
    double worst = 0;
    for (int l = 0; l < tp->cfg.n_layers; l++) {
        const sqz_train_layer *L = &tp->L[l];
        const size_t w[SQZ_LORA_N] = { L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down };
        for (int tg = 0; tg < SQZ_LORA_N; tg++) {
            const float *A = lo.p + lo.a[l][tg], *Bm = lo.p + lo.b[l][tg], *g = G + w[tg];
            int ib = 0;
            for (int i = 0; i < lo.n_tensors; i++) if (lo.t[i].off == lo.b[l][tg]) ib = i;
            const int64_t rows = lo.t[ib].rows, cols = lo.t[ib - 1].cols;
            double e2 = 0, n2 = 0;
            for (int64_t r = 0; r < rows; r++) /* dB = s G A^T */
                for (int k = 0; k < 4; k++) {
                    double d = 0;
                    for (int64_t c = 0; c < cols; c++) d += (double)g[r * cols + c] * A[k * cols + c];
                    d *= lo.scale;
                    const double got = lg[lo.b[l][tg] + (size_t)(r * 4 + k)];
                    e2 += (got - d) * (got - d), n2 += d * d;
                }
            for (int k = 0; k < 4; k++) /* dA = s B^T G */
                for (int64_t c = 0; c < cols; c++) {
                    double d = 0;
                    for (int64_t r = 0; r < rows; r++) d += (double)Bm[r * 4 + k] * g[r * cols + c];
                    d *= lo.scale;
                    const double got = lg[lo.a[l][tg] + (size_t)(k * cols + c)];
                    e2 += (got - d) * (got - d), n2 += d * d;
                }
            const double rel = sqrt(e2 / (n2 > 0 ? n2 : 1));
            if (rel > worst) worst = rel;
        }
    }
    CHECK(worst < 1e-4, "LoRA gradients == s G A^T and s B^T G of the full gradient (worst rel %.2e)", worst);
    sqz_train_acts_free(a);
    sqz_train_acts_free(al);
    sqz_train_lora_free(&lo);
    free(pe), free(G), free(lg);
}

int main(void) {
    gemm_layouts();
    attention_vs_naive();
    const char *dir = test_shared("models/sqz-llama-14m");
    const char *refp = test_shared("models/sqz-llama-14m/grad_reference.json");
    const char *textp = test_shared("data/domains/sotu.test.txt");
    if (!dir || !refp || !textp) {
        SKIP("sqz-llama-14m / grad_reference.json not found (set SQZ_SHARED)");
        return test_done();
    }
    cJSON *ref = load_json(refp);
    CHECK(ref != NULL, "grad_reference.json parses");
    if (!ref) return test_done();
    const int B = cJSON_GetObjectItem(ref, "B")->valueint, T = cJSON_GetObjectItem(ref, "T")->valueint;

    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m = NULL;
    CHECK(sqz_model_load(ctx, dir, NULL, &m) == SQZ_OK, "load sqz-llama-14m: %s", sqz_ctx_error(ctx));
    size_t tl;
    uint8_t *text = test_read_file(textp, &tl);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    CHECK(sqz_tokenize(ctx, m, (const char *)text, tl < 40000 ? tl : 40000, 0, &ids, &n_ids) == SQZ_OK &&
              n_ids > (size_t)(B * (T + 1)), "tokenize the batch (%zu tokens)", n_ids);
    const cJSON *f16 = cJSON_GetObjectItem(ref, "tokens_first16");
    int same = 1, k = 0;
    for (const cJSON *e = f16 ? f16->child : NULL; e; e = e->next, k++) same &= ids[k] == e->valueint;
    CHECK(same && k == 16, "the first 16 tokens are the reference's");

    int32_t *x = malloc((size_t)B * T * sizeof *x), *y = malloc((size_t)B * T * sizeof *y);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            x[b * T + t] = ids[b * (T + 1) + t];
            y[b * T + t] = ids[b * (T + 1) + t + 1];
        }

    sqz_train_params tp;
    CHECK(sqz_train_params_from_model(ctx, m, 0, &tp) == SQZ_OK, "parameters to f32: %s", sqz_ctx_error(ctx));
    sqz_train_acts *a = NULL;
    CHECK(sqz_train_acts_new(ctx, &tp.cfg, B, T, 0, &a) == SQZ_OK, "activations for %d x %d", B, T);

    /* (a) */
    float *g1 = calloc(tp.n, sizeof *g1), *g2 = calloc(tp.n, sizeof *g2);
    const double loss = sqz_train_forward(&tp, tp.p, NULL, a, x, y, 1);
    CHECK_CLOSE(loss, cJSON_GetObjectItem(ref, "loss")->valuedouble, 0, 1e-5, "loss %.8f", loss);
    sqz_train_backward(&tp, tp.p, g1, NULL, NULL, a, 1);
    grads_vs_reference(&tp, g1, ref);

    /* (b) */
    const double loss2 = sqz_train_forward(&tp, tp.p, NULL, a, x, y, 2);
    sqz_train_backward(&tp, tp.p, g2, NULL, NULL, a, 2);
    CHECK(loss2 == loss && !memcmp(g1, g2, tp.n * sizeof *g1),
          "loss and gradients bit-identical at 1 and 2 threads");

    /* (f), at the model's own weights (before (c) moves them) */
    lora_vs_full(ctx, &tp, B, T, x, y);

    /* (c) */
    const cJSON *adam = cJSON_GetObjectItem(ref, "adamw");
    const cJSON *traj = cJSON_GetObjectItem(adam, "loss_before_each_step_then_final");
    sqz_adamw opt = { 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f };
    float *mom = calloc(tp.n, sizeof *mom), *var = calloc(tp.n, sizeof *var);
    int step = 0, traj_ok = 1;
    for (const cJSON *e = traj ? traj->child : NULL; e; e = e->next, step++) {
        const double l = sqz_train_forward(&tp, tp.p, NULL, a, x, y, 2), want = e->valuedouble;
        const int ok = fabs(l - want) <= fmax(1e-4, 1e-3 * fabs(want));
        if (!ok) printf("# AdamW loss before step %d: %.7f want %.7f\n", step + 1, l, want);
        traj_ok &= ok;
        if (!e->next) break;
        memset(g1, 0, tp.n * sizeof *g1);
        sqz_train_backward(&tp, tp.p, g1, NULL, NULL, a, 2);
        sqz_train_adamw_step(tp.t, tp.n_tensors, tp.p, g1, mom, var, step + 1, &opt, 2);
    }
    CHECK(traj_ok && step == 10, "10 AdamW steps follow the reference's loss trajectory (%d steps)", step);

    /* (d) */
    float v[4] = { 3, 4, 0, 0 };
    const double nrm = sqz_train_clip(v, 4, 1.0);
    CHECK(fabs(nrm - 5) < 1e-9 && fabs(hypot(v[0], v[1]) - 1.0) < 1e-5, "clip to norm 1 (was %.3f)", nrm);

    sqz_train_acts_free(a);
    sqz_train_params_free(&tp);
    free(g1), free(g2), free(mom), free(var), free(x), free(y), free(text);
    sqz_free(ids);
    sqz_model_free(m);

    const char *q = test_shared("models/gguf/sqz-llama-26m-Q4_0-pure.gguf");
    if (q && sqz_model_load(ctx, q, NULL, &m) == SQZ_OK) {
        sqz_train_params tq;
        const sqz_status st = sqz_train_params_from_model(ctx, m, 0, &tq);
        CHECK(st == SQZ_ERR_UNSUPPORTED && strstr(sqz_ctx_error(ctx), "q4_0"),
              "full training of a Q4_0 model is refused: %s", sqz_ctx_error(ctx));
        sqz_model_free(m);
    } else {
        SKIP("no Q4_0 GGUF in shared/models/gguf");
    }
    sqz_ctx_free(ctx);
    cJSON_Delete(ref);
    return test_done();
}
