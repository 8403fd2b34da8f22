/* test_prune_run.c - sqz_prune on the embedded model (stories260K): every method writes a GGUF
 * that loads, whose block matrices hold exactly the zeros the level asks for and whose token
 * embedding is untouched; Wanda and SparseGPT keep the held-out perplexity closer to the
 * dense model's than magnitude; per-matrix levels; bad parameters are one clear error and
 * leave no file. */
#include <string.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "sqz.h"
#include "test.h"

typedef struct errs {
    double sum;
    int n;
} errs;

static void on_tensor(void *user, const char *name, const char *level, double rel_err) {
    errs *e = user;
    e->sum += rel_err;
    e->n++;
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

/* The block matrices of the file at path: the least and the largest fraction of zeros, and
 * whether every row's groups of 4 hold at least 2 zeros (2:4); *embd_same: token_embd as in
 * orig. Returns the number of matrices (-1: the file does not load). */
static int file_zeros(sqz_ctx *ctx, const char *path, const sqz_model *orig, double *min_frac, double *max_frac,
                      int *nm_ok, int *embd_same) {
    sqz_model *m;
    if (sqz_model_load(ctx, path, NULL, &m)) return -1;
    *min_frac = 1;
    *max_frac = 0;
    *nm_ok = 1;
    int n_mats = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const sqz_layer_weights *w = &m->layers[l];
        const sqz_tensor *ts[7] = { &w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down };
        for (int k = 0; k < 7; k++) {
            float *row = malloc((size_t)ts[k]->cols * sizeof *row);
            uint64_t z = 0;
            for (int64_t r = 0; r < ts[k]->rows; r++) {
                sqz_tensor_row_f32(ts[k], r, row);
                for (int64_t j = 0; j < ts[k]->cols; j += 4) {
                    int zg = 0;
                    for (int q = 0; q < 4; q++) zg += row[j + q] == 0.0f;
                    *nm_ok &= zg >= 2;
                    z += (uint64_t)zg;
                }
            }
            free(row);
            const double f = (double)z / (double)(ts[k]->rows * ts[k]->cols);
            if (f < *min_frac) *min_frac = f;
            if (f > *max_frac) *max_frac = f;
            n_mats++;
        }
    }
    *embd_same = 1;
    float *a = malloc((size_t)m->cfg.dim * sizeof *a), *b = malloc((size_t)m->cfg.dim * sizeof *b);
    for (int64_t r = 0; r < m->tok_embd.rows; r++) {
        sqz_tensor_row_f32(&m->tok_embd, r, a);
        sqz_tensor_row_f32(&orig->tok_embd, r, b);
        *embd_same &= !memcmp(a, b, (size_t)m->cfg.dim * sizeof *a);
    }
    free(a);
    free(b);
    sqz_model_free(m);
    return n_mats;
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &m)) {
        CHECK(0, "load: %s", sqz_ctx_error(ctx));
        return test_done();
    }
    FILE *f = fopen("assets/tinystories-valid-slice.txt", "rb");
    static char text[40000];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    int32_t *ids;
    size_t n;
    sqz_tokenize(ctx, m, text, len, 0, &ids, &n);
    const size_t half = n / 2; /* calibrate on the second half, evaluate on the first */
    char dir[] = "/tmp/sqz-test-prune-XXXXXX";
    if (!mkdtemp(dir)) return test_done();
    const double p_dense = file_ppl(ctx, "assets/stories260K/stories260K.bin", ids, half);
    const char *methods[] = { "magnitude", "wanda", "sparsegpt" };
    double ppl[3], err[3];
    char out[3][512];
    for (int k = 0; k < 3; k++) {
        snprintf(out[k], sizeof out[k], "%s/%s.gguf", dir, methods[k]);
        errs e = { 0, 0 };
        sqz_prune_opts o = { .method = methods[k], .density = 0.5, .type = "f32", .calib = ids + half,
                             .n_calib = n - half, .calib_ctx = 128, .report = on_tensor, .report_user = &e };
        sqz_prune_result r;
        const sqz_status st = sqz_prune(ctx, m, out[k], &o, &r);
        CHECK(st == SQZ_OK && e.n == 5 * 7 && r.calib_tokens >= 128, "%s 50%% runs and reports 35 matrices (%s)",
              methods[k], sqz_ctx_error(ctx));
        CHECK(r.pruned >= r.block_params / 2 && r.pruned < r.block_params / 2 + r.block_params / 100,
              "%s: %llu of %llu block weights removed", methods[k], (unsigned long long)r.pruned,
              (unsigned long long)r.block_params);
        double lo, hi;
        int nm_ok, embd_same;
        const int nm = file_zeros(ctx, out[k], m, &lo, &hi, &nm_ok, &embd_same);
        CHECK(nm == 35 && lo >= 0.5 && hi < 0.52 && embd_same,
              "%s: the file's 35 block matrices are 50%%-%.1f%% zeros, token_embd untouched", methods[k], 100 * hi);
        ppl[k] = file_ppl(ctx, out[k], ids, half);
        err[k] = e.n ? e.sum / e.n : -1;
    }
    printf("# held-out ppl: dense %.4f, magnitude %.4f, wanda %.4f, sparsegpt %.4f; mean rel. output error %.4f %.4f "
           "%.4f\n", p_dense, ppl[0], ppl[1], ppl[2], err[0], err[1], err[2]);
    CHECK(ppl[1] > 0 && ppl[1] < ppl[0] && ppl[2] > 0 && ppl[2] < ppl[0],
          "wanda's and sparsegpt's held-out ppl (%.3f, %.3f) below magnitude's %.3f", ppl[1], ppl[2], ppl[0]);
    /* (Wanda's per-row groups need not beat magnitude's per-matrix one on this measure) */
    CHECK(err[2] < err[1] && err[2] < err[0], "rel. output error: sparsegpt %.4f below wanda's %.4f and magnitude's %.4f",
          err[2], err[1], err[0]);
    /* 2:4 and no calibration for magnitude */
    char nmp[600];
    snprintf(nmp, sizeof nmp, "%s/nm.gguf", dir);
    sqz_prune_opts o24 = { .method = "magnitude", .nm_n = 2, .nm_m = 4, .type = "f32" };
    sqz_prune_result r24;
    CHECK(sqz_prune(ctx, m, nmp, &o24, &r24) == SQZ_OK && r24.calib_tokens == 0 && r24.mean_rel_err == -1,
          "magnitude 2:4 without calibration (%s)", sqz_ctx_error(ctx));
    double lo, hi;
    int nm_ok, embd_same;
    CHECK(file_zeros(ctx, nmp, m, &lo, &hi, &nm_ok, &embd_same) == 35 && nm_ok && embd_same,
          "2:4: every group of four holds two zeros");
    /* sp8: the same pruned weights as sparse int8 in sqzf; the file loads, holds sp8 matrices
     * whose stored rows have exactly the pruned zeros, runs, and scores as the f32 file does
     * (int8 rounding aside) */
    {
        char spp[600];
        snprintf(spp, sizeof spp, "%s/mag.sqzf", dir);
        sqz_prune_opts os = { .method = "magnitude", .density = 0.5, .type = "sp8" };
        sqz_prune_result rs;
        CHECK(sqz_prune(ctx, m, spp, &os, &rs) == SQZ_OK, "magnitude 50%% to sp8 (%s)", sqz_ctx_error(ctx));
        sqz_model *sm = NULL, *fm = NULL;
        CHECK(sqz_model_load(ctx, spp, NULL, &sm) == SQZ_OK && sqz_model_load(ctx, out[0], NULL, &fm) == SQZ_OK,
              "the sqzf loads (%s)", sqz_ctx_error(ctx));
        if (sm && fm) {
            int n_sp8 = 0, zeros_same = 1, close = 1, mv_ok = 1;
            float *a = malloc(256 * sizeof *a), *b = malloc(256 * sizeof *b), *x = malloc(256 * sizeof *x);
            float *y = malloc(256 * sizeof *y), *yr = malloc(256 * sizeof *yr);
            for (int j = 0; j < 256; j++) x[j] = sinf(0.37f * (float)j);
            for (int l = 0; l < sm->cfg.n_layers; l++) {
                const sqz_tensor *ts[7] = { &sm->layers[l].wq, &sm->layers[l].wk, &sm->layers[l].wv, &sm->layers[l].wo,
                                            &sm->layers[l].w_gate, &sm->layers[l].w_up, &sm->layers[l].w_down };
                const sqz_tensor *tf[7] = { &fm->layers[l].wq, &fm->layers[l].wk, &fm->layers[l].wv, &fm->layers[l].wo,
                                            &fm->layers[l].w_gate, &fm->layers[l].w_up, &fm->layers[l].w_down };
                for (int k = 0; k < 7; k++) {
                    if (ts[k]->type != SQZ_TYPE_SP8) continue;
                    n_sp8++;
                    float amax = 0;
                    for (int64_t r = 0; r < ts[k]->rows; r++) {
                        sqz_tensor_row_f32(ts[k], r, a);
                        sqz_tensor_row_f32(tf[k], r, b);
                        for (int64_t j = 0; j < ts[k]->cols; j++) {
                            zeros_same &= (a[j] == 0) == (b[j] == 0);
                            amax = fmaxf(amax, fabsf(b[j]));
                        }
                        for (int64_t j = 0; j < ts[k]->cols; j++) close &= fabsf(a[j] - b[j]) <= amax / 127;
                    }
                    /* the model's product (decode path) against dense math on the stored rows: apart
                     * from f32 rounding they differ by x's Q8_0 rounding, at most half a step
                     * (block amax / 127) per element: |y - y_ref| <= sum_j |w_j| amax_b(j) / 254 */
                    sqz_matvec(ts[k], x, y, 2);
                    sqz_matmul_ref(ts[k], x, 1, yr);
                    for (int64_t r = 0; r < ts[k]->rows; r++) {
                        sqz_tensor_row_f32(ts[k], r, a);
                        double bound = 1e-5;
                        for (int64_t j0 = 0; j0 < ts[k]->cols; j0 += 32) {
                            float xa = 0;
                            for (int q = 0; q < 32; q++) xa = fmaxf(xa, fabsf(x[j0 + q]));
                            for (int q = 0; q < 32; q++) bound += fabsf(a[j0 + q]) * xa / 254 * 1.001;
                        }
                        mv_ok &= fabs((double)y[r] - yr[r]) <= bound;
                    }
                }
            }
            CHECK(n_sp8 == 30, "30 block matrices are sp8 (%d; ffn_down's rows of 172 are not a multiple of 32)", n_sp8);
            CHECK(zeros_same, "sp8 rows: zeros exactly where the f32 file's are");
            CHECK(close, "sp8 rows: the kept weights within one int8 step of the f32 file's");
            CHECK(mv_ok, "sp8 matvec = dense math on the stored weights, up to x's Q8_0 rounding (a per-row bound)");
            free(a), free(b), free(x), free(y), free(yr);
        }
        sqz_model_free(sm);
        sqz_model_free(fm);
        const double p_sp = file_ppl(ctx, spp, ids, half);
        CHECK(p_sp > 0 && fabs(p_sp - ppl[0]) < 0.02 * ppl[0], "sp8 held-out ppl %.4f within 2%% of the f32 file's %.4f",
              p_sp, ppl[0]);
        { /* the file says its sp8 row layout; one that says another (an older sqz's) is refused */
            FILE *f = fopen(spp, "r+b");
            char *buf = NULL;
            long n = 0;
            if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) > 0 && (buf = malloc((size_t)n)) && !fseek(f, 0, SEEK_SET))
                n = (long)fread(buf, 1, (size_t)n, f);
            const char *key = "sqz.sp8.layout";
            char *at = buf ? memmem(buf, (size_t)n, key, strlen(key)) : NULL;
            uint32_t ty = 0, v = 0;
            if (at) memcpy(&ty, at + strlen(key), 4), memcpy(&v, at + strlen(key) + 4, 4);
            CHECK(at && ty == 4 /* u32 */ && v == 2, "the sqzf has %s = 2", key);
            if (at && ty == 4) {
                const uint32_t old = 1;
                fseek(f, (long)(at - buf) + (long)strlen(key) + 4, SEEK_SET);
                fwrite(&old, 4, 1, f);
            }
            if (f) fclose(f);
            free(buf);
            sqz_model *om = NULL;
            const sqz_status ost = sqz_model_load(ctx, spp, NULL, &om);
            CHECK(ost == SQZ_ERR_FORMAT && strstr(sqz_ctx_error(ctx), "row layout 1"),
                  "an sqzf whose sp8 rows are layout 1 is refused: %s", sqz_ctx_error(ctx));
            sqz_model_free(om);
        }
        unlink(spp);
    }
    /* per-matrix levels: one matrix at 0.25, one 2:4, the rest dense */
    char lvp[600];
    snprintf(lvp, sizeof lvp, "%s/levels.json", dir);
    f = fopen(lvp, "wb");
    fputs("{\"blk.0.attn_q.weight\": 0.25, \"blk.3.ffn_up.weight\": \"2:4\"}", f);
    fclose(f);
    errs e = { 0, 0 };
    sqz_prune_opts ol = { .method = "sparsegpt", .levels = lvp, .calib = ids + half, .n_calib = n - half,
                          .calib_ctx = 128, .report = on_tensor, .report_user = &e };
    sqz_prune_result rl;
    CHECK(sqz_prune(ctx, m, nmp, &ol, &rl) == SQZ_OK && e.n == 2, "levels file: 2 matrices pruned, f16 file (%d; %s)",
          e.n, sqz_ctx_error(ctx));
    CHECK(file_ppl(ctx, nmp, ids, half) > 0, "the f16 file loads and scores");
    const uint64_t q0 = (uint64_t)m->layers[0].wq.rows * m->layers[0].wq.cols,
                   u3 = (uint64_t)m->layers[3].w_up.rows * m->layers[3].w_up.cols;
    CHECK(rl.pruned >= q0 * 3 / 4 + u3 / 2 && rl.pruned < q0 * 3 / 4 + u3 / 2 + 64,
          "levels file: %llu zeros (0.75 of attn_q's %llu and half of ffn_up's %llu)", (unsigned long long)rl.pruned,
          (unsigned long long)q0, (unsigned long long)u3);
    /* bad parameters: one clear error each, no file left */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.gguf", dir);
    struct { sqz_prune_opts o; const char *want; } cases[] = {
        { { .method = "magnitude", .density = 1.0 }, "outside (0, 1)" },
        { { .method = "magnitude", .density = -0.5 }, "outside (0, 1)" },
        { { .method = "magnitude" }, "required" },
        { { .method = "magnitude", .nm_n = 3, .nm_m = 5 }, "does not divide" },
        { { .method = "magnitude", .nm_n = 4, .nm_m = 2 }, "0 < N < M" },
        { { .method = "magnitude", .density = 0.5, .nm_n = 2, .nm_m = 4 }, "not both" },
        { { .method = "wanda", .density = 0.5 }, "calibration" },
        { { .method = "sparsegpt", .density = 0.5, .calib = ids, .n_calib = 10, .calib_ctx = 128 }, "calibration" },
        { { .method = "obs", .density = 0.5 }, "unknown pruning method" },
        { { .method = "sparsegpt:block=0", .density = 0.5 }, "block" },
        { { .method = "magnitude", .density = 0.5, .levels = "/nonexistent/levels.json" }, "cannot open" },
        { { .method = "magnitude", .density = 0.5, .type = "q9_9" }, "unknown type" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const sqz_status st = sqz_prune(ctx, m, bad, &cases[i].o, NULL);
        CHECK(st != SQZ_OK && strstr(sqz_ctx_error(ctx), cases[i].want) && access(bad, F_OK) != 0,
              "bad case %zu: %s", i, sqz_ctx_error(ctx));
    }
    f = fopen(lvp, "wb");
    fputs("{\"token_embd.weight\": 0.5}", f);
    fclose(f);
    sqz_prune_opts oe = { .method = "magnitude", .levels = lvp };
    CHECK(sqz_prune(ctx, m, bad, &oe, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "never pruned") &&
              access(bad, F_OK) != 0,
          "the token embedding is never pruned: %s", sqz_ctx_error(ctx));
    /* the table */
    int nt = 0;
    while (sqz_pruner_name(nt)) nt++;
    CHECK(nt == 3 && !sqz_pruner_help(3) && sqz_pruner_help(0) && sqz_pruner_needs_calib("magnitude") == 0 &&
              sqz_pruner_needs_calib("sparsegpt:damp=0.1") == 1 && sqz_pruner_needs_calib("x") == -1,
          "3 pruners listed, calibration needs");
    for (int k = 0; k < 3; k++) unlink(out[k]);
    unlink(nmp);
    unlink(lvp);
    rmdir(dir);
    sqz_free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
    return test_done();
}
