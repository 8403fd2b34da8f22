/* finetune.c - sqz_finetune: the training loop (sampling, schedule, clipping, AdamW),
 * held-out perplexity, and writing the result. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

/* splitmix64: the data sampler's generator (seeded, the same offsets on every machine) */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void defaults(sqz_finetune_opts *o) {
    if (o->steps <= 0) o->steps = 150;
    if (o->batch <= 0) o->batch = 8;
    if (o->micro_batch <= 0 || o->micro_batch > o->batch) o->micro_batch = o->batch;
    if (o->ctx <= 0) o->ctx = 256;
    if (o->lr <= 0) o->lr = 3e-4f;
    if (o->warmup == 0) o->warmup = 20;
    if (o->beta1 <= 0) o->beta1 = 0.9f;
    if (o->beta2 <= 0) o->beta2 = 0.95f;
    if (o->eps <= 0) o->eps = 1e-8f;
    if (o->clip == 0) o->clip = 1.0f;
}

/* The learning rate of step s (0-based). */
static double lr_at(const sqz_finetune_opts *o, int s) {
    const int w = o->warmup > 0 ? o->warmup : 0;
    if (s < w) return o->lr * (double)(s + 1) / w;
    if (!o->cosine || o->steps <= w) return o->lr;
    const double f = (double)(s - w) / (double)(o->steps - w > 1 ? o->steps - w - 1 : 1);
    return o->min_lr + (o->lr - o->min_lr) * 0.5 * (1.0 + cos(M_PI * (f > 1 ? 1 : f)));
}

static sqz_status eval_ppl(sqz_ctx *ctx, const sqz_model *m, const sqz_train_params *tp,
                           sqz_layer_weights *layers, const sqz_finetune_opts *o, double *ppl) {
    sqz_model view;
    sqz_train_model_view(m, tp, tp->p, layers, &view);
    sqz_ppl_opts po = { 0 };
    po.n_ctx = o->ctx;
    po.max_tokens = o->eval_tokens;
    sqz_ppl_result r;
    const sqz_status st = sqz_perplexity(ctx, &view, o->eval, o->n_eval, &po, &r);
    *ppl = st == SQZ_OK ? r.ppl : 0;
    return st;
}

sqz_status sqz_finetune(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens,
                        size_t n_tokens, const sqz_finetune_opts *opts, const char *out_path,
                        const char *out_type, sqz_finetune_result *result) {
    sqz_finetune_opts o = *opts;
    defaults(&o);
    memset(result, 0, sizeof *result);
    if (!out_path || !*out_path) return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: no output path");
    const size_t len = strlen(out_path);
    if (len < 5 || strcmp(out_path + len - 5, ".gguf"))
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: %s: the output must be a .gguf file", out_path);
    if (o.batch % o.micro_batch)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: micro-batch %d does not divide batch %d",
                        o.micro_batch, o.batch);
    if (n_tokens < (size_t)o.ctx + 2)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "finetune: the training text has %zu tokens; windows of %d need at least %d",
                        n_tokens, o.ctx + 1, o.ctx + 2);
    if (o.eval && o.n_eval < (size_t)o.ctx + 1)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: the held-out text has %zu tokens, fewer than "
                        "one window of %d", o.n_eval, o.ctx + 1);
    const int nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    const int V = model->cfg.vocab_size;
    for (size_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return sqz_fail(ctx, SQZ_ERR_RANGE, "finetune: token %d at %zu is outside the vocabulary",
                            tokens[i], i);

    sqz_train_params tp;
    sqz_status st = sqz_train_params_from_model(ctx, model, &tp);
    if (st != SQZ_OK) return st;
    sqz_train_acts *acts = NULL;
    const int B = o.micro_batch, T = o.ctx;
    float *grad = calloc(tp.n, sizeof(float)), *m1 = calloc(tp.n, sizeof(float)),
          *m2 = calloc(tp.n, sizeof(float));
    int32_t *x = malloc((size_t)B * T * sizeof *x), *y = malloc((size_t)B * T * sizeof *y);
    sqz_layer_weights *layers = calloc((size_t)tp.cfg.n_layers, sizeof *layers);
    if (!grad || !m1 || !m2 || !x || !y || !layers) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "finetune: out of memory for %zu parameters", tp.n);
        goto done;
    }
    if ((st = sqz_train_acts_new(ctx, &tp.cfg, B, T, &acts)) != SQZ_OK) goto done;
    result->n_params = tp.n;
    if (o.eval && (st = eval_ppl(ctx, model, &tp, layers, &o, &result->eval_ppl_before)) != SQZ_OK)
        goto done;

    uint64_t rng = o.seed;
    const sqz_adamw adam = { o.lr, o.beta1, o.beta2, o.eps, o.weight_decay };
    const int n_micro = o.batch / o.micro_batch;
    for (int s = 0; s < o.steps; s++) {
        const double t0 = sqz_now();
        memset(grad, 0, tp.n * sizeof(float));
        double loss = 0;
        for (int mb = 0; mb < n_micro; mb++) {
            for (int b = 0; b < B; b++) {
                const size_t off = (size_t)(next_u64(&rng) % (uint64_t)(n_tokens - (size_t)T - 1));
                memcpy(x + (size_t)b * T, tokens + off, (size_t)T * sizeof *x);
                memcpy(y + (size_t)b * T, tokens + off + 1, (size_t)T * sizeof *y);
            }
            loss += sqz_train_forward(&tp, tp.p, acts, x, y, nt) / n_micro;
            sqz_train_backward(&tp, tp.p, acts, grad, nt);
        }
        if (n_micro > 1) /* each micro-batch's gradient is of its own mean: average them */
            for (size_t i = 0; i < tp.n; i++) grad[i] /= (float)n_micro;
        const double norm = sqz_train_clip(grad, tp.n, o.clip > 0 ? o.clip : 0);
        sqz_adamw a = adam;
        a.lr = (float)lr_at(&o, s);
        sqz_train_adamw_step(&tp, tp.p, grad, m1, m2, s + 1, &a, nt);
        const double dt = sqz_now() - t0;
        result->seconds += dt;
        if (s == 0) result->first_loss = loss;
        result->last_loss = loss;
        result->steps = s + 1;
        double ppl = 0;
        if (o.eval && ((o.eval_every > 0 && (s + 1) % o.eval_every == 0) || s + 1 == o.steps)) {
            if ((st = eval_ppl(ctx, model, &tp, layers, &o, &ppl)) != SQZ_OK) goto done;
            if (s + 1 == o.steps) result->eval_ppl_after = ppl;
        }
        if (!isfinite(loss)) {
            st = sqz_fail(ctx, SQZ_ERR_RANGE, "finetune: the loss is %g at step %d (learning rate "
                          "too high?)", loss, s + 1);
            goto done;
        }
        if (o.on_step) o.on_step(o.user, s + 1, loss, a.lr, norm, dt, ppl);
        char what[64];
        snprintf(what, sizeof what, "finetune loss %.3f", loss);
        sqz_progress(ctx, what, (uint64_t)s + 1, (uint64_t)o.steps);
    }
    result->tokens_per_s = result->seconds > 0 ? (double)o.steps * o.batch * T / result->seconds : 0;

    /* write: the trained f32 weights through sqz_convert, as any model */
    {
        sqz_model view;
        sqz_train_model_view(model, &tp, tp.p, layers, &view);
        sqz_convert_opts co = { 0 };
        co.type = out_type ? out_type : "f16";
        sqz_convert_result cr;
        st = sqz_convert(ctx, &view, out_path, &co, &cr);
    }
done:
    sqz_train_acts_free(acts);
    sqz_train_params_free(&tp);
    free(grad), free(m1), free(m2), free(x), free(y), free(layers);
    return st;
}
