/* test_decode.c - multi-threaded decode (the team path of session.c: one parallel region per
 * token) against one-thread decode: the logits of every step of a token-by-token run agree to
 * 1e-4 of the largest |logit|, for
 *   - stories260K (assets/, f32, 8 query / 4 KV heads) with 2 and 3 threads (3 does not divide
 *     the KV heads: the path with a barrier before attention);
 *   - sqz-llama-26m as f16 (the HF folder), 2 threads, and as q4_k (converted here), 2 and 3
 *     threads (2: wo's and down's inputs quantized by parts; 3: wo's parts are not whole
 *     blocks, so every thread quantizes all of its input);
 * with the f32 cache (the default), f16 and KIVI q4 / q8 (all three attend inside the team;
 * KIVI with small groups and windows, so that its threads quantize their heads' token groups
 * within the 40 steps, and with the defaults), and streaming, which runs its own store + attend
 * between two regions. */
#include "sqz.h"
#include "test.h"

enum { NTOK = 40 };

/* logits[NTOK][V] of a token-by-token run of ids with threads threads and KV spec kv. */
static int decode_run(sqz_ctx *ctx, const sqz_model *m, const char *kv, int threads,
                      const int32_t *ids, float *logits, int V) {
    sqz_ctx_set_threads(ctx, threads);
    sqz_session *s;
    if (sqz_session_new_kv(ctx, m, NTOK, kv, &s)) return -1;
    int ok = 1;
    for (int t = 0; t < NTOK && ok; t++)
        ok = sqz_session_eval(s, &ids[t], 1, logits + (size_t)t * V, 0) == SQZ_OK;
    ok = ok && sqz_session_pos(s) == NTOK;
    sqz_session_free(s);
    return ok ? 0 : -1;
}

static void check_model(sqz_ctx *ctx, const char *name, const sqz_model *m, const int *threads,
                        int n_threads) {
    sqz_model_info info;
    sqz_model_get_info(m, &info);
    const int V = info.vocab_size;
    int32_t ids[NTOK];
    uint64_t rng = 12345;
    for (int t = 0; t < NTOK; t++) ids[t] = (int32_t)((test_xorshift64(&rng) >> 33) % (uint64_t)V);
    float *one = malloc(sizeof(float) * NTOK * V), *many = malloc(sizeof(float) * NTOK * V);
    const char *specs[] = { NULL, "f16", "q4", "q4:group=8,window=8", "q8:group=16,window=0",
                            "streaming:sink=4,window=16" };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        const char *kv = specs[i] ? specs[i] : "f32 (default)";
        if (decode_run(ctx, m, specs[i], 1, ids, one, V)) {
            CHECK(0, "%s, %s: 1-thread decode: %s", name, kv, sqz_ctx_error(ctx));
            continue;
        }
        double mag = 0;
        for (size_t j = 0; j < (size_t)NTOK * V; j++) mag = fmax(mag, fabs(one[j]));
        for (int k = 0; k < n_threads; k++) {
            if (decode_run(ctx, m, specs[i], threads[k], ids, many, V)) {
                CHECK(0, "%s, %s: %d-thread decode: %s", name, kv, threads[k], sqz_ctx_error(ctx));
                continue;
            }
            double err = 0;
            for (size_t j = 0; j < (size_t)NTOK * V; j++) err = fmax(err, fabs(many[j] - one[j]));
            CHECK(mag > 0 && err <= 1e-4 * mag,
                  "%s, KV %s: %d-thread decode = 1-thread decode over %d steps (max err %.2e, "
                  "|logit| <= %.2f)", name, kv, threads[k], NTOK, err, mag);
        }
    }
    free(one);
    free(many);
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &m) == SQZ_OK) {
        check_model(ctx, "stories260K", m, (const int[]){ 2, 3 }, 2);
        sqz_model_free(m);
    } else {
        CHECK(0, "stories260K loads: %s", sqz_ctx_error(ctx));
    }
    const char *dir = test_shared("models/sqz-llama-26m");
    if (!dir) {
        SKIP("sqz-llama-26m not in the shared folder");
        sqz_ctx_free(ctx);
        return test_done();
    }
    if (sqz_model_load(ctx, dir, NULL, &m) == SQZ_OK) {
        check_model(ctx, "sqz-llama-26m f16", m, (const int[]){ 2 }, 1);
        /* quantized: the types the kernels repack on AVX-512 (kernels/x16.h) and split over
         * 3 threads, whose row shares cut the 16-row groups */
        const char *types[] = { "q4_k", "q4_0", "q6_k" }; /* q8_0 shares q4_0's code path */
        for (int i = 0; i < 3; i++) {
            char path[] = "/tmp/sqz-test-decode-XXXXXX";
            const int fd = mkstemp(path);
            if (fd >= 0) close(fd);
            sqz_convert_opts o = { .type = types[i], .pure = 1 };
            sqz_convert_result r;
            sqz_model *q = NULL;
            sqz_status st = fd < 0 ? SQZ_ERR_IO : sqz_convert(ctx, m, path, &o, &r);
            if (st == SQZ_OK) st = sqz_model_load(ctx, path, NULL, &q);
            char name[64];
            snprintf(name, sizeof name, "sqz-llama-26m %s", types[i]);
            CHECK(st == SQZ_OK, "%s %s", name, st ? sqz_ctx_error(ctx) : "");
            if (q) check_model(ctx, name, q, (const int[]){ 2, 3 }, 2);
            sqz_model_free(q);
            unlink(path);
        }
        sqz_model_free(m);
    } else {
        CHECK(0, "sqz-llama-26m loads: %s", sqz_ctx_error(ctx));
    }
    sqz_ctx_free(ctx);
    return test_done();
}
