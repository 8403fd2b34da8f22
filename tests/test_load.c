/* test_load.c - llama2.c checkpoints: the embedded stories260K loads with the header's shapes;
 * truncated, padded and nonsense files are clear errors naming the file; missing paths too. */
#include <stdint.h>

#include "sqz.h"
#include "test.h"

static const char *M = "assets/stories260K/stories260K.bin";

static char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

static void write_file(const char *p, const void *d, size_t n) {
    FILE *f = fopen(p, "wb");
    fwrite(d, 1, n, f);
    fclose(f);
}

/* loading path fails with status want and a message naming path */
static void expect_fail(sqz_ctx *ctx, const char *path, sqz_status want, const char *what) {
    sqz_model *m = (sqz_model *)1;
    sqz_status st = sqz_model_load(ctx, path, NULL, &m);
    CHECK(st == want && m == NULL && strstr(sqz_ctx_error(ctx), path) != NULL,
          "%s: status '%s', message names the file: %s", what, sqz_status_str(st), sqz_ctx_error(ctx));
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m;
    sqz_status st = sqz_model_load(ctx, M, NULL, &m);
    CHECK(st == SQZ_OK, "stories260K loads (%s)", sqz_ctx_error(ctx));
    if (st == SQZ_OK) {
        sqz_model_info i;
        sqz_model_get_info(m, &i);
        CHECK(i.dim == 64 && i.hidden_dim == 172 && i.n_layers == 5 && i.n_heads == 8 &&
                  i.n_kv_heads == 4 && i.vocab_size == 512 && i.max_seq_len == 512,
              "header shapes: dim 64, ffn 172, 5 layers, 8/4 heads, vocab 512, seq 512");
        CHECK(i.rope_interleaved && i.tied_embeddings && !strcmp(i.format, "llama2c"),
              "llama2.c conventions: interleaved RoPE, shared classifier");
        CHECK(!strcmp(i.tokenizer, "llama2c") && i.bos_id == 1, "tok512.bin found beside the checkpoint");
        sqz_model_free(m);
    }
    char dir[] = "/tmp/sqz-test-load-XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return test_done(); }
    char p[512];
    size_t n;
    char *buf = slurp(M, &n);
    if (buf) {
        snprintf(p, sizeof p, "%s/truncated.bin", dir);
        write_file(p, buf, n - 1000);
        expect_fail(ctx, p, SQZ_ERR_FORMAT, "truncated checkpoint");
        snprintf(p, sizeof p, "%s/padded.bin", dir);
        char *big = malloc(n + 64);
        memcpy(big, buf, n);
        memset(big + n, 0, 64);
        write_file(p, big, n + 64);
        free(big);
        expect_fail(ctx, p, SQZ_ERR_FORMAT, "trailing bytes after the weights");
        snprintf(p, sizeof p, "%s/absurd.bin", dir);
        int32_t h[7] = { 1 << 30, 1 << 30, 1 << 20, 8, 4, 512, 512 };
        write_file(p, h, sizeof h);
        expect_fail(ctx, p, SQZ_ERR_FORMAT, "header with absurd sizes");
        snprintf(p, sizeof p, "%s/negheads.bin", dir);
        int32_t h2[7] = { 64, 172, 5, -8, 4, 512, 512 };
        write_file(p, h2, sizeof h2);
        expect_fail(ctx, p, SQZ_ERR_FORMAT, "header with negative heads");
        snprintf(p, sizeof p, "%s/short.bin", dir);
        write_file(p, buf, 10);
        expect_fail(ctx, p, SQZ_ERR_FORMAT, "file shorter than the header");
        free(buf);
    }
    snprintf(p, sizeof p, "%s/missing.bin", dir);
    expect_fail(ctx, p, SQZ_ERR_IO, "missing checkpoint");
    snprintf(p, sizeof p, "%s/nothing-here", dir);
    expect_fail(ctx, p, SQZ_ERR_IO, "missing folder");
    expect_fail(ctx, dir, SQZ_ERR_IO, "folder without config.json");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    sqz_ctx_free(ctx);
    return test_done();
}
