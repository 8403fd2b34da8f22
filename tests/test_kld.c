/* test_kld.c - KL divergence and --kv plumbing of sqz_perplexity on the embedded model: a model
 * against itself has KLD 0 and full top-1 agreement; token-by-token evaluation after a prefill
 * gives the batched perplexity; bad arguments are clear errors. (The comparison with llama.cpp's
 * own KLD figures is in test_ppl, under SQZ_LONG.) */
#include "sqz.h"
#include "test.h"

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    /* one thread: token-by-token decode on a busy machine stalls a thread team at every
     * barrier, and this test is about the arithmetic (test_model covers the team path) */
    sqz_ctx_set_threads(ctx, 1);
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
    sqz_ppl_opts o = { .n_ctx = 128, .max_tokens = 1025, .kld_base = m };
    sqz_ppl_result r, r2;
    sqz_status st = sqz_perplexity(ctx, m, ids, n, &o, &r);
    CHECK(st == SQZ_OK && r.has_kld, "KLD against itself runs");
    CHECK(r.kld < 1e-9 && r.kld_p99 < 1e-9 && r.top1_agree == 1.0,
          "a model against itself: KLD %.2e, p99 %.2e, top-1 %.3f", r.kld, r.kld_p99, r.top1_agree);
    sqz_ppl_opts o2 = { .n_ctx = 128, .max_tokens = 1025, .kv = "f32", .kv_prefill = 16 };
    st = sqz_perplexity(ctx, m, ids, n, &o2, &r2);
    CHECK(st == SQZ_OK && r2.tokens == r.tokens, "token-by-token after a 16-token prefill scores the same tokens");
    CHECK_CLOSE(r2.ppl, r.ppl, 0, 1e-5, "token-by-token ppl %.6f equals batched %.6f", r2.ppl, r.ppl);
    sqz_ppl_opts bad = { .n_ctx = 128, .kv = "no-such-policy" };
    st = sqz_perplexity(ctx, m, ids, n, &bad, &r2);
    CHECK(st == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "no-such-policy"), "unknown KV policy: %s", sqz_ctx_error(ctx));
    sqz_ppl_opts bad2 = { .n_ctx = 1 };
    CHECK(sqz_perplexity(ctx, m, ids, n, &bad2, &r2) == SQZ_ERR_ARG, "context 1 refused: %s", sqz_ctx_error(ctx));
    free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
    return test_done();
}
