/* test_drop.c - sqz_drop on the embedded model (stories260K): an explicit list writes a GGUF
 * with the other blocks renumbered and their weights unchanged (f32 out: bit for bit); ranking
 * drops the blocks of least influence, each BI in [0, 2] and matching a direct computation of
 * 1 - cos over the calibration tokens for block 0; bad parameters are one error and no file. */
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "model/session.h"
#include "sqz.h"
#include "test.h"

static int same_tensor(const sqz_tensor *a, const sqz_tensor *b) {
    if (a->rows != b->rows || a->cols != b->cols) return 0;
    float *x = malloc((size_t)a->cols * sizeof *x), *y = malloc((size_t)a->cols * sizeof *y);
    int same = 1;
    for (int64_t r = 0; r < a->rows && same; r++) {
        sqz_tensor_row_f32(a, r, x);
        sqz_tensor_row_f32(b, r, y);
        same = !memcmp(x, y, (size_t)a->cols * sizeof *x);
    }
    free(x), free(y);
    return same;
}

static int same_block(const sqz_layer_weights *a, const sqz_layer_weights *b) {
    return same_tensor(&a->attn_norm, &b->attn_norm) && same_tensor(&a->wq, &b->wq) && same_tensor(&a->wk, &b->wk) &&
           same_tensor(&a->wv, &b->wv) && same_tensor(&a->wo, &b->wo) && same_tensor(&a->ffn_norm, &b->ffn_norm) &&
           same_tensor(&a->w_gate, &b->w_gate) && same_tensor(&a->w_up, &b->w_up) && same_tensor(&a->w_down, &b->w_down);
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
    char dir[] = "/tmp/sqz-test-drop-XXXXXX";
    if (!mkdtemp(dir)) return test_done();
    char out[600], out2[600];
    snprintf(out, sizeof out, "%s/list.gguf", dir);
    snprintf(out2, sizeof out2, "%s/rank.gguf", dir);
    static sqz_drop_result r;
    const int list[2] = { 3, 1 };
    sqz_drop_opts o = { .blocks = list, .n_blocks = 2, .type = "f32" };
    CHECK(sqz_drop(ctx, m, out, &o, &r) == SQZ_OK && r.n_layers_out == 3 && r.influence[0] == -1,
          "blocks 3 and 1 dropped without calibration (%s)", sqz_ctx_error(ctx));
    sqz_model *d = NULL;
    CHECK(sqz_model_load(ctx, out, NULL, &d) == SQZ_OK && d->cfg.n_layers == 3, "the GGUF loads with 3 blocks (%s)",
          sqz_ctx_error(ctx));
    if (d) {
        CHECK(same_block(&d->layers[0], &m->layers[0]) && same_block(&d->layers[1], &m->layers[2]) &&
                  same_block(&d->layers[2], &m->layers[4]),
              "its blocks 0, 1, 2 are the original's 0, 2, 4, bit for bit");
        CHECK(!same_block(&d->layers[1], &m->layers[1]), "(and block 1 is not the original's block 1)");
        CHECK(same_tensor(&d->tok_embd, &m->tok_embd) && same_tensor(&d->out_norm, &m->out_norm),
              "embedding and final norm unchanged");
        sqz_model_free(d);
    }
    /* ranking: BI of block 0 by hand: the embeddings through block 0, 1 - cos per token */
    sqz_drop_opts od = { .n_drop = 2, .type = "f32", .calib = ids, .n_calib = n, .calib_ctx = 128 };
    CHECK(sqz_drop(ctx, m, out2, &od, &r) == SQZ_OK && r.n_layers_out == 3 && r.calib_tokens == n / 128 * 128,
          "2 blocks dropped by influence (%s)", sqz_ctx_error(ctx));
    int ok = 1, n_drop = 0;
    for (int l = 0; l < 5; l++) {
        ok &= r.influence[l] >= 0 && r.influence[l] <= 2;
        n_drop += r.dropped[l];
        for (int k = 0; k < 5; k++)
            if (r.dropped[l] && !r.dropped[k]) ok &= r.influence[l] <= r.influence[k];
    }
    CHECK(ok && n_drop == 2, "the two dropped blocks have the least influence (BI %.4f %.4f %.4f %.4f %.4f)",
          r.influence[0], r.influence[1], r.influence[2], r.influence[3], r.influence[4]);
    {
        sqz_session *s;
        sqz_session_new(ctx, m, 128, &s);
        const int D = m->cfg.dim;
        float *x0 = malloc((size_t)128 * D * sizeof *x0);
        double sum = 0;
        const size_t nw = n / 128;
        for (size_t w = 0; w < nw; w++) {
            for (int t = 0; t < 128; t++) sqz_tensor_row_f32(&m->tok_embd, ids[w * 128 + t], x0 + (size_t)t * D);
            memcpy(s->x, x0, (size_t)128 * D * sizeof *x0);
            sqz_session_reset(s);
            sqz_session_layer(s, &m->layers[0], 0, 128, NULL, NULL);
            for (int t = 0; t < 128; t++) {
                double ab = 0, aa = 0, bb = 0;
                for (int j = 0; j < D; j++) {
                    const double a = x0[(size_t)t * D + j], b = s->x[(size_t)t * D + j];
                    ab += a * b, aa += a * a, bb += b * b;
                }
                sum += 1 - ab / sqrt(aa * bb);
            }
        }
        free(x0);
        sqz_session_free(s);
        CHECK_CLOSE(r.influence[0], sum / (double)(nw * 128), 1e-6, 1e-4, "block 0's influence = 1 - cos by hand");
    }
    /* bad parameters: one error, no file */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.gguf", dir);
    const int rep[2] = { 2, 2 }, oob[1] = { 5 }, all[5] = { 0, 1, 2, 3, 4 };
    struct { sqz_drop_opts o; const char *want; } cases[] = {
        { { .n_drop = 5, .calib = ids, .n_calib = n, .calib_ctx = 128 }, "at least one must stay" },
        { { .n_drop = 1 }, "needs calibration" },
        { { .blocks = rep, .n_blocks = 2 }, "listed twice" },
        { { .blocks = oob, .n_blocks = 1 }, "does not exist" },
        { { .blocks = all, .n_blocks = 5 }, "at least one must stay" },
        { { .n_drop = 1, .blocks = oob, .n_blocks = 1 }, "one of them" },
        { { .blocks = list, .n_blocks = 2, .type = "q9" }, "unknown type" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const sqz_status st = sqz_drop(ctx, m, bad, &cases[i].o, NULL);
        CHECK(st != SQZ_OK && strstr(sqz_ctx_error(ctx), cases[i].want) && access(bad, F_OK) != 0, "refused: %s",
              sqz_ctx_error(ctx));
    }
    unlink(out), unlink(out2);
    rmdir(dir);
    sqz_free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
    return test_done();
}
