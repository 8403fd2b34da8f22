/* generate.c - prompt -> batched prefill -> token-by-token decode -> text callback. */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/session.h"

sqz_status sqz_generate(sqz_ctx *ctx, const sqz_model *m, const char *prompt,
                        const sqz_generate_opts *o, sqz_text_fn on_text, void *user,
                        sqz_generate_result *res) {
    sqz_generate_result r = { 0 };
    if (res) *res = r;
    if (o->n_predict < 0) return sqz_fail(ctx, SQZ_ERR_ARG, "negative number of tokens to generate");
    int32_t *ids = NULL;
    size_t n_ids = 0;
    sqz_status st = sqz_tokenize(ctx, m, prompt ? prompt : "", prompt ? strlen(prompt) : 0,
                                 o->add_bos, &ids, &n_ids);
    if (st) return st;
    const int bos = sqz_tokenizer_bos(m->tok), eos = sqz_tokenizer_eos(m->tok);
    if (n_ids == 0) { /* an empty prompt starts from BOS, or fails if there is none */
        if (bos < 0) {
            free(ids);
            return sqz_fail(ctx, SQZ_ERR_ARG, "empty prompt and the tokenizer has no BOS token");
        }
        free(ids);
        ids = malloc(sizeof *ids);
        if (!ids) return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        ids[0] = bos;
        n_ids = 1;
    }
    const int max_ctx = (int)n_ids + o->n_predict;
    sqz_session *s = NULL;
    if ((st = sqz_session_new(ctx, m, max_ctx, &s))) {
        free(ids);
        return st;
    }
    const int V = m->cfg.vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    if (!logits) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        goto done;
    }
    uint64_t rng;
    sqz_rng_seed(&rng, o->sampler.seed);
    r.n_prompt = (int)n_ids;
    double t0 = sqz_now();
    if ((st = sqz_session_eval(s, ids, (int)n_ids, logits, 0))) goto done;
    double t1 = sqz_now();
    r.prompt_seconds = t1 - t0;
    int32_t prev = ids[n_ids - 1];
    char buf[256];
    for (int i = 0; i < o->n_predict; i++) {
        int32_t next = sqz_sample(&o->sampler, logits, V, &rng);
        if (o->stop_at_eos && (next == eos || next == bos)) break;
        r.n_generated++;
        size_t len = 0;
        sqz_tokenizer_decode(m->tok, prev, next, buf, sizeof buf, &len);
        if (len > sizeof buf) len = sizeof buf;
        if (len && on_text && on_text(user, buf, len)) break;
        prev = next;
        if (i + 1 < o->n_predict && (st = sqz_session_eval(s, &next, 1, logits, 0))) goto done;
    }
    r.gen_seconds = sqz_now() - t1;
    if (res) *res = r;
done:
    free(logits);
    free(ids);
    sqz_session_free(s);
    return st;
}
