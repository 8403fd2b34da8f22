/* use_sqz.c - a program that uses an installed libsqz the way a user would (built by
 * tests/cli/install.sh with `pkg-config --cflags --libs sqz`): load a model, score a text,
 * and see a bad path fail with sqz's message. Prints TAP lines.
 * usage: use_sqz MODEL.bin TOKENIZER.bin */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqz.h>

static int failed;
static void check(int ok, const char *what) {
    printf("%s - %s\n", ok ? "ok" : "not ok", what);
    failed |= !ok;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    check(strcmp(sqz_version(), SQZ_VERSION) == 0, "C: the library's version is the header's");
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m = NULL;
    check(sqz_model_load(ctx, "/nonexistent/model.bin", NULL, &m) == SQZ_ERR_IO && !m &&
              strstr(sqz_ctx_error(ctx), "/nonexistent/model.bin"),
          "C: a bad path fails with SQZ_ERR_IO and a message naming it");
    if (sqz_model_load(ctx, argv[1], argv[2], &m) != SQZ_OK) {
        printf("not ok - C: load %s: %s\n", argv[1], sqz_ctx_error(ctx));
        return 1;
    }
    sqz_model_info info;
    sqz_model_get_info(m, &info);
    check(info.n_layers == 5 && info.vocab_size == 512, "C: stories260K: 5 layers, 512 tokens");
    const char *text = "Once upon a time, there was a little girl named Lily. She loved to play.";
    int32_t *ids;
    size_t n;
    check(sqz_tokenize(ctx, m, text, strlen(text), 1, &ids, &n) == SQZ_OK && n > 8,
          "C: tokenize");
    sqz_ppl_opts po = { .n_ctx = 64 };
    sqz_ppl_result r;
    sqz_status st = sqz_perplexity(ctx, m, ids, n, &po, &r);
    check(st == SQZ_OK && isfinite(r.ppl) && r.ppl > 1 && r.ppl < 100,
          "C: perplexity is finite and plausible");
    sqz_free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
    return failed;
}
