/* ppl.c - perplexity over non-overlapping windows (sqz's definition, the one reference.json
 * uses): window w feeds tokens[w*n_ctx .. w*n_ctx+len-1], len = min(n_ctx, n-1-w*n_ctx), and
 * position i is scored against tokens[w*n_ctx+i+1]. */
#include <math.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "model/model.h"
#include "model/session.h"

sqz_status sqz_perplexity(sqz_ctx *ctx, const sqz_model *m, const int32_t *tokens,
                          size_t n_tokens, const sqz_ppl_opts *o, sqz_ppl_result *res) {
    sqz_ppl_result r = { 0 };
    *res = r;
    if (o->n_ctx < 2) return sqz_fail(ctx, SQZ_ERR_ARG, "context %d too small for perplexity", o->n_ctx);
    size_t n = o->max_tokens && o->max_tokens < n_tokens ? o->max_tokens : n_tokens;
    if (n < 2) return sqz_fail(ctx, SQZ_ERR_ARG, "%zu tokens: perplexity needs at least 2", n);
    sqz_session *s = NULL;
    sqz_status st = sqz_session_new(ctx, m, o->n_ctx, &s);
    if (st) return st;
    const int V = m->cfg.vocab_size, B = s->max_batch;
    float *logits = malloc((size_t)B * (size_t)V * sizeof(float));
    if (!logits) {
        sqz_session_free(s);
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %d x %d logits", B, V);
    }
    double sum = 0, sum2 = 0;
    const size_t total = n - 1;
    const double t0 = sqz_now();
    for (size_t start = 0; start + 1 < n; start += (size_t)o->n_ctx) {
        const size_t len = n - 1 - start < (size_t)o->n_ctx ? n - 1 - start : (size_t)o->n_ctx;
        sqz_session_reset(s);
        for (size_t c0 = 0; c0 < len; c0 += (size_t)B) {
            const int T = len - c0 < (size_t)B ? (int)(len - c0) : B;
            if ((st = sqz_session_eval(s, tokens + start + c0, T, logits, 1))) goto done;
            for (int t = 0; t < T; t++) {
                const float *row = logits + (size_t)t * V;
                const double nll = sqz_logsumexp(row, V) - row[tokens[start + c0 + t + 1]];
                sum += nll;
                sum2 += nll * nll;
            }
            r.tokens += (size_t)T;
            sqz_progress(ctx, "ppl", r.tokens, total);
        }
        r.windows++;
    }
    r.seconds = sqz_now() - t0;
    r.nll = sum / (double)r.tokens;
    r.ppl = exp(r.nll);
    /* standard error of the mean NLL, carried to ppl by the delta method */
    const double var = r.tokens > 1 ? (sum2 / (double)r.tokens - r.nll * r.nll) : 0;
    const double sem = r.tokens > 1 ? sqrt((var > 0 ? var : 0) / (double)(r.tokens - 1)) : 0;
    r.ppl_stderr = r.ppl * sem;
    *res = r;
done:
    free(logits);
    sqz_session_free(s);
    return st;
}
