/* test_train.c - the training engine (src/train/) against independent numbers:
 * ../shared/models/sqz-llama-14m/grad_reference.json (PyTorch, float64; see ../shared/README.md):
 * (a) the loss and every parameter's gradient L2 norm and max |g| on its fixed batch, within
 *     1e-4 relative;
 * (b) the gradients are bit-identical at 1 and 2 threads;
 * (c) 10 AdamW steps on that batch follow the reference's loss trajectory (1e-3 relative or
 *     1e-4 absolute);
 * (d) clipping scales to the requested norm; a quantized model is refused with a message;
 * (e) the strided GEMM (AVX-512 kernel, threaded) equals its plain reference bit for bit in
 *     every operand layout, with and without accumulation.
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

int main(void) {
    gemm_layouts();
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
    CHECK(sqz_train_params_from_model(ctx, m, &tp) == SQZ_OK, "parameters to f32: %s", sqz_ctx_error(ctx));
    sqz_train_acts *a = NULL;
    CHECK(sqz_train_acts_new(ctx, &tp.cfg, B, T, &a) == SQZ_OK, "activations for %d x %d", B, T);

    /* (a) */
    float *g1 = calloc(tp.n, sizeof *g1), *g2 = calloc(tp.n, sizeof *g2);
    const double loss = sqz_train_forward(&tp, tp.p, a, x, y, 1);
    CHECK_CLOSE(loss, cJSON_GetObjectItem(ref, "loss")->valuedouble, 0, 1e-5, "loss %.8f", loss);
    sqz_train_backward(&tp, tp.p, a, g1, 1);
    grads_vs_reference(&tp, g1, ref);

    /* (b) */
    const double loss2 = sqz_train_forward(&tp, tp.p, a, x, y, 2);
    sqz_train_backward(&tp, tp.p, a, g2, 2);
    CHECK(loss2 == loss && !memcmp(g1, g2, tp.n * sizeof *g1),
          "loss and gradients bit-identical at 1 and 2 threads");

    /* (c) */
    const cJSON *adam = cJSON_GetObjectItem(ref, "adamw");
    const cJSON *traj = cJSON_GetObjectItem(adam, "loss_before_each_step_then_final");
    sqz_adamw opt = { 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f };
    float *mom = calloc(tp.n, sizeof *mom), *var = calloc(tp.n, sizeof *var);
    int step = 0, traj_ok = 1;
    for (const cJSON *e = traj ? traj->child : NULL; e; e = e->next, step++) {
        const double l = sqz_train_forward(&tp, tp.p, a, x, y, 2), want = e->valuedouble;
        const int ok = fabs(l - want) <= fmax(1e-4, 1e-3 * fabs(want));
        if (!ok) printf("# AdamW loss before step %d: %.7f want %.7f\n", step + 1, l, want);
        traj_ok &= ok;
        if (!e->next) break;
        memset(g1, 0, tp.n * sizeof *g1);
        sqz_train_backward(&tp, tp.p, a, g1, 2);
        sqz_train_adamw_step(&tp, tp.p, g1, mom, var, step + 1, &opt, 2);
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
        const sqz_status st = sqz_train_params_from_model(ctx, m, &tq);
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
