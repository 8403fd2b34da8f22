/* ppl.c - perplexity over non-overlapping windows, and KL divergence against a base model.
 *
 * sqz's definition (the one reference.json uses): window w feeds tokens[w*n_ctx ..
 * w*n_ctx+len-1], len = min(n_ctx, n-1-w*n_ctx), and position i is scored against
 * tokens[w*n_ctx+i+1].
 *
 * llama.cpp's (llama-perplexity): chunk c feeds tokens[c*n_ctx .. (c+1)*n_ctx-1] (the first
 * replaced by BOS if the tokenizer adds BOS); positions n_ctx/2 .. n_ctx-2 are scored against
 * the next token, so a chunk scores n_ctx - 1 - n_ctx/2 tokens. Only whole chunks count.
 *
 * KL divergence: the base model runs over the same windows; at each scored position
 * KL(P_base || P_model) = sum_i p_base_i (log p_base_i - log p_model_i), as llama.cpp's
 * --kl-divergence reports it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "kernels/ops.h"
#include "eval/kld_cache.h"
#include "model/model.h"
#include "model/session.h"

typedef struct ppl_acc {
    double sum, sum2;  /* of the NLL */
    double *kld;       /* [scored positions] when measuring KLD */
    size_t n_agree;
} ppl_acc;

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Scores rows [t0, T) of a batch whose targets start at targets[0] (row t predicts
 * targets[t]); base: the base model's logits of the same rows, or NULL. */
static void score(ppl_acc *acc, size_t *n_scored, const float *logits, const float *base,
                  const int32_t *targets, int t0, int T, int V, int nt) {
    double s1 = 0, s2 = 0;
    size_t agree = 0;
    double *kld = acc->kld ? acc->kld + *n_scored - t0 : NULL;
#pragma omp parallel for num_threads(nt) reduction(+ : s1, s2, agree) if (T - t0 >= 64)
    for (int t = t0; t < T; t++) {
        const float *row = logits + (size_t)t * V;
        const double nll = sqz_logsumexp(row, V) - row[targets[t]];
        s1 += nll;
        s2 += nll * nll;
        if (base) {
            const float *b = base + (size_t)t * V;
            kld[t] = sqz_kl_logits(b, row, V);
            agree += argmax(b, V) == argmax(row, V);
        }
    }
    acc->sum += s1; /* batch sums in double: rounding does not grow with the text */
    acc->sum2 += s2;
    acc->n_agree += agree;
    if (T > t0) *n_scored += (size_t)(T - t0);
}

sqz_status sqz_perplexity(sqz_ctx *ctx, const sqz_model *m, const int32_t *tokens,
                          size_t n_tokens, const sqz_ppl_opts *o, sqz_ppl_result *res) {
    sqz_ppl_result r = { 0 };
    *res = r;
    if (o->n_ctx < 2) return sqz_fail(ctx, SQZ_ERR_ARG, "context %d too small for perplexity", o->n_ctx);
    size_t n = o->max_tokens && o->max_tokens < n_tokens ? o->max_tokens : n_tokens;
    if (n < 2) return sqz_fail(ctx, SQZ_ERR_ARG, "%zu tokens: perplexity needs at least 2", n);
    const sqz_model *base_m = o->kld_base;
    if (base_m && base_m->cfg.vocab_size != m->cfg.vocab_size)
        return sqz_fail(ctx, SQZ_ERR_ARG, "the KLD base has a vocabulary of %d, the model %d",
                        base_m->cfg.vocab_size, m->cfg.vocab_size);
    const int compat = o->mode == SQZ_PPL_LLAMACPP;
    const size_t C = (size_t)o->n_ctx;
    size_t n_windows = compat ? n / C : (n - 1 + C - 1) / C;
    if (compat && o->n_chunks > 0 && (size_t)o->n_chunks < n_windows) n_windows = (size_t)o->n_chunks;
    if (n_windows == 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "%zu tokens: fewer than one chunk of %d", n, o->n_ctx);
    const size_t first = compat ? C / 2 : 0; /* first scored position of a window */
    const size_t total = compat ? n_windows * (C - 1 - first) : n - 1;

    sqz_session *s = NULL, *bs = NULL;
    float *logits = NULL, *blogits = NULL;
    int32_t *chunk = NULL;
    ppl_acc acc = { 0 };
    /* the base's logits from a cache file when there is one for this run, else from the base
     * (writing the cache when asked) */
    sqz_kld_cache *cache = NULL;
    int cache_reads = 0;
    sqz_status st = SQZ_OK;
    if (o->kld_cache) {
        const sqz_kld_key key = { (uint32_t)m->cfg.vocab_size, (uint32_t)o->n_ctx, (uint32_t)o->mode,
                                  total, sqz_kld_tokens_hash(tokens, compat ? n_windows * C : n) };
        if (sqz_path_exists(o->kld_cache)) {
            if ((st = sqz_kld_cache_open(ctx, o->kld_cache, &key, &cache))) return st;
            cache_reads = 1;
            base_m = NULL;
        } else if (!base_m) {
            return sqz_fail(ctx, SQZ_ERR_ARG, "%s: no KLD cache there yet, and no base model to make it from",
                            o->kld_cache);
        } else if ((st = sqz_kld_cache_create(ctx, o->kld_cache, &key, &cache))) {
            return st;
        }
    }
    const int with_base = base_m || cache_reads;
    if ((st = sqz_session_new_kv(ctx, m, o->n_ctx, o->kv, &s))) goto done;
    if (base_m && (st = sqz_session_new_kv(ctx, base_m, o->n_ctx, o->kld_base_kv, &bs))) goto done;
    const int V = m->cfg.vocab_size, B = s->max_batch;
    logits = malloc((size_t)B * (size_t)V * sizeof(float));
    chunk = malloc(C * sizeof *chunk);
    if (with_base) {
        blogits = malloc((size_t)B * (size_t)V * sizeof(float));
        acc.kld = malloc(total * sizeof *acc.kld);
    }
    if (!logits || !chunk || (with_base && (!blogits || !acc.kld))) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "out of memory for %d x %d logits", B, V);
        goto done;
    }
    const int bos = m->tok ? sqz_tokenizer_bos(m->tok) : -1;
    const int add_bos = compat && m->tok && sqz_tokenizer_add_bos(m->tok) && bos >= 0;
    const int nt = ctx->n_threads;
    const double t0 = sqz_now();
    for (size_t w = 0; w < n_windows && !st; w++) {
        const size_t start = w * C;
        /* inputs of this window; targets are always the file's tokens */
        const size_t len = compat ? C : (n - 1 - start < C ? n - 1 - start : C);
        memcpy(chunk, tokens + start, len * sizeof *chunk);
        if (add_bos) chunk[0] = bos;
        const size_t last = compat ? C - 1 : len; /* positions [first, last) are scored */
        sqz_session_reset(s);
        if (bs) sqz_session_reset(bs);
        /* the model runs batched up to the prefill point, then one token at a time */
        const size_t batched = o->kv_prefill > 0 ? (size_t)o->kv_prefill : last;
        for (size_t c0 = 0; c0 < last && !st; c0 += (size_t)B) {
            const int T = last - c0 < (size_t)B ? (int)(last - c0) : B;
            const int want = c0 + (size_t)T > first; /* any scored position in this batch */
            const int t_first = c0 < first ? (int)(first - c0) : 0;
            if (bs && (st = sqz_session_eval(bs, chunk + c0, T, want ? blogits : NULL, 1))) break;
            if (cache && want) {
                float *rows = blogits + (size_t)t_first * V;
                st = cache_reads ? sqz_kld_cache_read(cache, rows, (size_t)(T - t_first))
                                 : sqz_kld_cache_write(cache, rows, (size_t)(T - t_first));
                if (st) break;
            }
            for (int t = 0; t < T && !st;) {
                /* a run of rows to evaluate in one call: up to the prefill point, or one */
                int run = c0 + (size_t)t < batched ? (int)(batched - c0 - (size_t)t) : 1;
                if (run > T - t) run = T - t;
                st = sqz_session_eval(s, chunk + c0 + t, run, want ? logits + (size_t)t * V : NULL, 1);
                t += run;
            }
            if (st) break;
            if (want)
                score(&acc, &r.tokens, logits, with_base ? blogits : NULL, tokens + start + c0 + 1, t_first,
                      T, V, nt);
            sqz_progress(ctx, "ppl", r.tokens, total);
        }
        if (!st) r.windows++;
    }
    if (st) goto done;
    r.seconds = sqz_now() - t0;
    r.nll = acc.sum / (double)r.tokens;
    r.ppl = exp(r.nll);
    /* standard error of the mean NLL, carried to ppl by the delta method */
    const double var = r.tokens > 1 ? (acc.sum2 / (double)r.tokens - r.nll * r.nll) : 0;
    const double sem = r.tokens > 1 ? sqrt((var > 0 ? var : 0) / (double)(r.tokens - 1)) : 0;
    r.ppl_stderr = r.ppl * sem;
    if (cache && (st = sqz_kld_cache_commit(cache))) goto done;
    if (with_base) {
        double sum = 0;
        for (size_t i = 0; i < r.tokens; i++) sum += acc.kld[i];
        r.has_kld = 1;
        r.kld = sum / (double)r.tokens;
        qsort(acc.kld, r.tokens, sizeof *acc.kld, cmp_double);
        r.kld_p99 = acc.kld[(size_t)(0.99 * (double)(r.tokens - 1))];
        r.top1_agree = (double)acc.n_agree / (double)r.tokens;
    }
    *res = r;
done:
    free(logits);
    free(blogits);
    free(chunk);
    free(acc.kld);
    sqz_session_free(s);
    sqz_session_free(bs);
    sqz_kld_cache_close(cache);
    return st;
}
