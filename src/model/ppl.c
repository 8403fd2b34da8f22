/* ppl.c - perplexity over non-overlapping windows.
 *
 * sqz's definition (the one reference.json uses): window w feeds tokens[w*n_ctx ..
 * w*n_ctx+len-1], len = min(n_ctx, n-1-w*n_ctx), and position i is scored against
 * tokens[w*n_ctx+i+1].
 *
 * llama.cpp's (llama-perplexity): chunk c feeds tokens[c*n_ctx .. (c+1)*n_ctx-1] (the first
 * replaced by BOS if the tokenizer adds BOS); positions n_ctx/2 .. n_ctx-2 are scored against
 * the next token, so a chunk scores n_ctx - 1 - n_ctx/2 tokens. Only whole chunks count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    const int compat = o->mode == SQZ_PPL_LLAMACPP;
    const size_t C = (size_t)o->n_ctx;
    size_t n_windows = compat ? n / C : (n - 1 + C - 1) / C;
    if (compat && o->n_chunks > 0 && (size_t)o->n_chunks < n_windows) n_windows = (size_t)o->n_chunks;
    if (n_windows == 0) {
        st = sqz_fail(ctx, SQZ_ERR_ARG, "%zu tokens: fewer than one chunk of %d", n, o->n_ctx);
        goto done;
    }
    const size_t first = compat ? C / 2 : 0; /* first scored position of a window */
    const size_t total = compat ? n_windows * (C - 1 - first) : n - 1;
    const int bos = m->tok ? sqz_tokenizer_bos(m->tok) : -1;
    const int add_bos = compat && m->tok && sqz_tokenizer_add_bos(m->tok) && bos >= 0;
    int32_t *chunk = malloc(C * sizeof *chunk);
    if (!chunk) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory");
        goto done;
    }
    double sum = 0, sum2 = 0;
    const double t0 = sqz_now();
    for (size_t w = 0; w < n_windows; w++) {
        const size_t start = w * C;
        /* inputs of this window; targets are always the file's tokens */
        const size_t len = compat ? C : (n - 1 - start < C ? n - 1 - start : C);
        memcpy(chunk, tokens + start, len * sizeof *chunk);
        if (add_bos) chunk[0] = bos;
        const size_t last = compat ? C - 1 : len; /* positions [first, last) are scored */
        sqz_session_reset(s);
        for (size_t c0 = 0; c0 < last; c0 += (size_t)B) {
            const int T = last - c0 < (size_t)B ? (int)(last - c0) : B;
            const int want = c0 + (size_t)T > first; /* any scored position in this batch */
            if ((st = sqz_session_eval(s, chunk + c0, T, want ? logits : NULL, 1))) break;
            const int t0 = c0 < first ? (int)(first - c0) : 0;
            double bsum = 0, bsum2 = 0;
#pragma omp parallel for num_threads(ctx->n_threads) reduction(+ : bsum, bsum2) if (T - t0 >= 64)
            for (int t = t0; t < T; t++) {
                const float *row = logits + (size_t)t * V;
                const double nll = sqz_logsumexp(row, V) - row[tokens[start + c0 + t + 1]];
                bsum += nll;
                bsum2 += nll * nll;
            }
            sum += bsum; /* batch sums in double: rounding does not grow with the text */
            sum2 += bsum2;
            if (T > t0) r.tokens += (size_t)(T - t0);
            sqz_progress(ctx, "ppl", r.tokens, total);
        }
        if (st) break;
        r.windows++;
    }
    free(chunk);
    if (st) goto done;
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
