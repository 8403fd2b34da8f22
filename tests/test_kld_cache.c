/* test_kld_cache.c - the base logits cache of sqz_perplexity (--kld-cache): the cached KLD
 * equals the one computed on the fly (16-bit logits: within 1e-3 relative), a second run reads
 * the file instead of the base, a cache made for another run or truncated is refused with a
 * message, and a run that cannot make one leaves nothing behind. On the embedded model against
 * its own q4_0 conversion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/kld_cache.h"
#include "sqz.h"
#include "test.h"

/* the row codec alone: every logit back within half a step of its row's range / 65535 */
static void test_rows(sqz_ctx *ctx) {
    enum { V = 37, R = 5 };
    float rows[R][V], back[R][V], orig[R][V]; /* write replaces rows with what the file holds */
    for (int r = 0; r < R; r++)
        for (int i = 0; i < V; i++) rows[r][i] = r == 4 ? 3.0f : (float)((i * 7919 + r * 104729) % 1000) / 40.0f - 12.0f;
    memcpy(orig, rows, sizeof rows);
    const char *path = "/tmp/sqz-test-kld-rows.bin";
    remove(path);
    const sqz_kld_key key = { V, 64, 0, R, 1234 };
    sqz_kld_cache *c;
    CHECK(sqz_kld_cache_create(ctx, path, &key, &c) == SQZ_OK, "create");
    CHECK(sqz_kld_cache_write(c, &rows[0][0], 3) == SQZ_OK, "write 3 rows");
    CHECK(access(path, F_OK) != 0, "nothing at the path before commit");
    CHECK(sqz_kld_cache_commit(c) == SQZ_ERR_ARG, "commit with 3 of 5 rows refused: %s", sqz_ctx_error(ctx));
    CHECK(sqz_kld_cache_write(c, &rows[3][0], 2) == SQZ_OK && sqz_kld_cache_commit(c) == SQZ_OK, "5 rows committed");
    sqz_kld_cache_close(c);
    CHECK(sqz_kld_cache_open(ctx, path, &key, &c) == SQZ_OK && sqz_kld_cache_read(c, &back[0][0], R) == SQZ_OK,
          "read back");
    double worst = 0;
    for (int r = 0; r < R; r++) {
        float lo = orig[r][0], hi = orig[r][0];
        for (int i = 0; i < V; i++) lo = orig[r][i] < lo ? orig[r][i] : lo, hi = orig[r][i] > hi ? orig[r][i] : hi;
        const double half = hi > lo ? 0.5 * (hi - lo) / 65535.0 * 1.001 : 0;
        /* a shift of the whole row is allowed (same distribution): compare differences to
         * element 0 */
        for (int i = 0; i < V; i++) {
            const double e = fabs((double)(back[r][i] - back[r][0]) - (double)(orig[r][i] - orig[r][0]));
            if (back[r][i] != rows[r][i]) worst = 1; /* the writer's in-place rows = what is read */
            if (e > 2 * half + 1e-6 && e > worst) worst = e;
        }
    }
    CHECK(worst == 0, "every logit within half a step (worst excess %.2e)", worst);
    CHECK(sqz_kld_cache_read(c, &back[0][0], 1) == SQZ_ERR_ARG, "reading past the rows refused");
    sqz_kld_cache_close(c);
    sqz_kld_key other = key;
    other.tokens_hash++;
    CHECK(sqz_kld_cache_open(ctx, path, &other, &c) == SQZ_ERR_FORMAT && strstr(sqz_ctx_error(ctx), "the text"),
          "another text refused: %s", sqz_ctx_error(ctx));
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fclose(f);
    CHECK(truncate(path, size - 1) == 0 && sqz_kld_cache_open(ctx, path, &key, &c) == SQZ_ERR_FORMAT &&
          strstr(sqz_ctx_error(ctx), "truncated"), "truncated cache refused: %s", sqz_ctx_error(ctx));
    f = fopen(path, "wb");
    fputs("GGUF....", f);
    fclose(f);
    CHECK(sqz_kld_cache_open(ctx, path, &key, &c) == SQZ_ERR_FORMAT, "another file refused: %s", sqz_ctx_error(ctx));
    remove(path);
    CHECK(sqz_kld_cache_create(ctx, "/nonexistent-dir/x.bin", &key, &c) == SQZ_ERR_IO,
          "an unwritable place: %s", sqz_ctx_error(ctx));
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_ctx_set_threads(ctx, 1);
    test_rows(ctx);
    sqz_model *m = NULL, *q = NULL;
    const char *qpath = "/tmp/sqz-test-kld-q4_0.gguf", *cpath = "/tmp/sqz-test-kld-cache.bin";
    sqz_convert_opts co = { .type = "q4_0" };
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &m) ||
        sqz_convert(ctx, m, qpath, &co, NULL) || sqz_model_load(ctx, qpath, "assets/stories260K/tok512.bin", &q)) {
        CHECK(0, "setup: %s", sqz_ctx_error(ctx));
        return test_done();
    }
    FILE *f = fopen("assets/tinystories-valid-slice.txt", "rb");
    static char text[40000];
    const size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    int32_t *ids;
    size_t n;
    sqz_tokenize(ctx, m, text, len, 0, &ids, &n);
    remove(cpath);
    sqz_ppl_opts o = { .n_ctx = 128, .max_tokens = 1025, .kld_base = m };
    sqz_ppl_result plain, wrote, read;
    CHECK(sqz_perplexity(ctx, q, ids, n, &o, &plain) == SQZ_OK && plain.kld > 1e-4, "q4_0 vs f32: KLD %.5f", plain.kld);
    o.kld_cache = cpath;
    CHECK(sqz_perplexity(ctx, q, ids, n, &o, &wrote) == SQZ_OK && access(cpath, F_OK) == 0, "cache written");
    sqz_ppl_opts oc = { .n_ctx = 128, .max_tokens = 1025, .kld_cache = cpath }; /* no base at all */
    CHECK(sqz_perplexity(ctx, q, ids, n, &oc, &read) == SQZ_OK && read.has_kld, "cache read without the base");
    CHECK_CLOSE(wrote.kld, plain.kld, 0, 1e-3, "KLD while writing %.6f vs uncached %.6f", wrote.kld, plain.kld);
    CHECK_CLOSE(read.kld, plain.kld, 0, 1e-3, "KLD from the cache %.6f vs uncached %.6f", read.kld, plain.kld);
    CHECK(read.kld == wrote.kld && read.ppl == plain.ppl, "reading gives what writing measured; ppl unchanged");
    CHECK(fabs(read.top1_agree - plain.top1_agree) <= 0.002, "top-1 agreement %.4f vs %.4f", read.top1_agree,
          plain.top1_agree);
    oc.n_ctx = 64;
    CHECK(sqz_perplexity(ctx, q, ids, n, &oc, &read) == SQZ_ERR_FORMAT && strstr(sqz_ctx_error(ctx), "--ctx"),
          "another context refused: %s", sqz_ctx_error(ctx));
    remove(cpath);
    CHECK(sqz_perplexity(ctx, q, ids, n, &oc, &read) == SQZ_ERR_ARG && access(cpath, F_OK) != 0,
          "no cache and no base: %s", sqz_ctx_error(ctx));
    sqz_free(ids);
    sqz_model_free(q);
    sqz_model_free(m);
    remove(qpath);
    sqz_ctx_free(ctx);
    return test_done();
}
