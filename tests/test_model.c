/* test_model.c - the forward pass against PyTorch's logits (reference.json): every position of
 * the reference prompt, first 8 logits to 1e-3, and the top-10 at the last position; batched
 * prefill against token-by-token decode; the tokenizer against the reference ids. */
#include "model/model.h"
#include "ref.h"
#include "sqz.h"

static void check_model(sqz_ctx *ctx, const char *name, int threads) {
    cJSON *ref = ref_load(name);
    if (!ref) return;
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    sqz_model *m;
    sqz_status st = sqz_model_load(ctx, test_shared(rel), NULL, &m);
    CHECK(st == SQZ_OK, "%s loads (%s)", name, sqz_ctx_error(ctx));
    if (st) { cJSON_Delete(ref); return; }
    sqz_ctx_set_threads(ctx, threads);
    sqz_model_info info;
    sqz_model_get_info(m, &info);
    CHECK(info.n_params == (uint64_t)cJSON_GetObjectItem(ref, "params")->valuedouble,
          "%s: %llu parameters as the reference counts", name, (unsigned long long)info.n_params);

    const char *prompt = cJSON_GetObjectItem(ref, "prompt")->valuestring;
    cJSON *want_ids = cJSON_GetObjectItem(ref, "prompt_ids");
    int32_t *ids;
    size_t n;
    st = sqz_tokenize(ctx, m, prompt, strlen(prompt), -1, &ids, &n);
    int same = st == SQZ_OK && (int)n == cJSON_GetArraySize(want_ids);
    for (size_t i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want_ids, (int)i)->valueint;
    CHECK(same, "%s: prompt tokenizes to prompt_ids", name);
    if (!same) goto out;

    const int V = info.vocab_size;
    float *logits = malloc(sizeof(float) * n * V), *step = malloc(sizeof(float) * V);
    sqz_session *s;
    sqz_session_new(ctx, m, 64, &s);
    st = sqz_session_eval(s, ids, (int)n, logits, 1);
    CHECK(st == SQZ_OK, "%s: batched eval of %zu tokens", name, n);
    cJSON *per_pos = cJSON_GetObjectItem(ref, "logits_first8_each_pos");
    double maxerr = 0;
    for (size_t p = 0; p < n; p++) {
        cJSON *row = cJSON_GetArrayItem(per_pos, (int)p);
        for (int i = 0; i < 8; i++) {
            double e = fabs(logits[p * V + i] - cJSON_GetArrayItem(row, i)->valuedouble);
            if (e > maxerr) maxerr = e;
        }
    }
    CHECK(maxerr <= 1e-3, "%s (%d threads): first 8 logits at all %zu positions within 1e-3 of PyTorch (max err %.2e)",
          name, threads, n, maxerr);
    cJSON *top = cJSON_GetObjectItem(ref, "last_logits_top10");
    maxerr = 0;
    for (int i = 0; i < cJSON_GetArraySize(top); i++) {
        cJSON *e = cJSON_GetArrayItem(top, i);
        int id = cJSON_GetArrayItem(e, 0)->valueint;
        double d = fabs(logits[(n - 1) * V + id] - cJSON_GetArrayItem(e, 1)->valuedouble);
        if (d > maxerr) maxerr = d;
    }
    CHECK(maxerr <= 1e-3, "%s: top-10 logits at the last position within 1e-3 (max err %.2e)", name, maxerr);

    /* decode one token at a time must give the batched logits */
    sqz_session_reset(s);
    maxerr = 0;
    for (size_t p = 0; p < n; p++) {
        sqz_session_eval(s, &ids[p], 1, step, 0);
        for (int i = 0; i < V; i++) {
            double e = fabs(step[i] - logits[p * V + i]);
            if (e > maxerr) maxerr = e;
        }
    }
    CHECK(maxerr <= 1e-4, "%s: token-by-token decode equals batched prefill (max err %.2e)", name, maxerr);
    CHECK(sqz_session_pos(s) == (int)n, "%s: session position advances", name);
    int32_t bad = V;
    CHECK(sqz_session_eval(s, &bad, 1, step, 0) == SQZ_ERR_RANGE, "%s: token id out of range is refused", name);
    sqz_session_free(s);
    free(logits);
    free(step);
out:
    free(ids);
    sqz_model_free(m);
    cJSON_Delete(ref);
}

int main(void) {
    sqz_ctx *ctx = sqz_ctx_new();
    check_model(ctx, "sqz-llama-26m", 2);
    check_model(ctx, "sqz-llama-26m", 1);
    check_model(ctx, "sqz-llama-14m", 2);
    sqz_ctx_free(ctx);
    return test_done();
}
