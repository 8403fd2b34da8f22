/* finetune.c - sqz_finetune: the training loop (sampling, schedule, clipping, AdamW),
 * held-out perplexity, and writing the result. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/export_hf.h"
#include "math/rng.h"
#include "train/train.h"

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

/* Held-out perplexity as sqz_perplexity computes it (windows of T tokens, each position
 * predicting the next, every token after the first scored once), through the training forward
 * pass: the adapters count, and no copy of the weights is made. */
static double eval_ppl(const sqz_train_params *tp, const sqz_train_lora *lo, sqz_train_acts *a, int B,
                       int T, const int32_t *ids, size_t n, int32_t *x, int32_t *y, int nt) {
    /* windows of T inputs; the last may be shorter (its missing positions padded, not scored:
     * causal attention keeps the padding out of the scored positions) */
    const size_t n_win = (n - 1 + (size_t)T - 1) / (size_t)T;
    double nll = 0, cnt = 0;
    for (size_t w0 = 0; w0 < n_win; w0 += (size_t)B) {
        double scored = 0;
        for (int b = 0; b < B; b++) {
            int32_t *xb = x + (size_t)b * T, *yb = y + (size_t)b * T;
            const size_t st = (w0 + (size_t)b) * (size_t)T;
            for (int t = 0; t < T; t++) {
                const size_t i = st + (size_t)t;
                const int in = w0 + (size_t)b < n_win && i + 1 < n;
                xb[t] = in ? ids[i] : 0;
                yb[t] = in ? ids[i + 1] : -1;
                scored += in;
            }
        }
        nll += sqz_train_forward(tp, tp->p, lo, a, x, y, nt) * scored;
        cnt += scored;
    }
    return cnt ? exp(nll / cnt) : 0;
}

/* The bits of a comma list of q, k, v, o, gate, up, down (NULL: all); 0 for a bad name. */
static unsigned lora_targets(const char *spec) {
    static const char *const names[SQZ_LORA_N] = { "q", "k", "v", "o", "gate", "up", "down" };
    if (!spec) return (1u << SQZ_LORA_N) - 1;
    unsigned mask = 0;
    for (const char *p = spec; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        int found = 0;
        for (int i = 0; i < SQZ_LORA_N; i++)
            if (strlen(names[i]) == len && !strncmp(p, names[i], len)) mask |= 1u << i, found = 1;
        if (!found) return 0;
        p += len + (e ? 1 : 0);
    }
    return mask;
}

/* The trained weights as a Hugging Face folder: config.json made from the model's config, the
 * tokenizer.json beside the source when there is one, every tensor in out_type (f16 unless
 * "f32" / "bf16"). */
static sqz_status write_hf(sqz_ctx *ctx, sqz_hf_export *hf, const char *tokenizer_json,
                           const sqz_train_params *tp, const char *out_type) {
    sqz_type type = SQZ_TYPE_F16;
    if (out_type && !strcmp(out_type, "f32")) type = SQZ_TYPE_F32;
    else if (out_type && !strcmp(out_type, "bf16")) type = SQZ_TYPE_BF16;
    else if (out_type && strcmp(out_type, "f16"))
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: a folder is written in f32, f16 or bf16, not %s", out_type);
    sqz_status st = sqz_hf_export_config(hf, &tp->cfg);
    if (!st && tokenizer_json) st = sqz_hf_export_tokenizer(hf, tokenizer_json);
    for (int i = 0; i < tp->n_tensors && !st; i++) {
        const sqz_train_tensor *t = &tp->t[i];
        const int64_t shape[2] = { t->rows, t->cols };
        st = t->rows > 1 ? sqz_hf_export_declare(hf, t->name, type, 2, shape)
                         : sqz_hf_export_declare(hf, t->name, type, 1, shape + 1);
    }
    if (!st) st = sqz_hf_export_begin(hf);
    for (int i = 0; i < tp->n_tensors && !st; i++)
        st = sqz_hf_export_put_f32(hf, tp->p + tp->t[i].off, (size_t)(tp->t[i].rows * tp->t[i].cols));
    if (!st) st = sqz_hf_export_finish(hf);
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
    const int gguf_out = len >= 5 && !strcmp(out_path + len - 5, ".gguf");
    if (!gguf_out && o.lora_rank > 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: %s: a LoRA adapter is written as a .gguf file", out_path);
    if (!gguf_out && model->cfg.rope_interleaved)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: %s: a model with GGUF's RoPE layout is written as "
                        "a .gguf file", out_path);
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

    const int use_lora = o.lora_rank > 0;
    const unsigned targets = lora_targets(o.lora_targets);
    if (use_lora && !targets)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: LoRA targets '%s': a comma list of q, k, v, o, "
                        "gate, up, down", o.lora_targets);
    sqz_hf_export *hf = NULL; /* a folder: checked now, before any training */
    sqz_status st = gguf_out ? SQZ_OK : sqz_hf_export_new(ctx, out_path, &hf);
    if (st) return st;
    sqz_train_params tp;
    sqz_train_lora lo = { 0 };
    st = sqz_train_params_from_model(ctx, model, use_lora, &tp);
    if (st != SQZ_OK) {
        sqz_hf_export_free(hf);
        return st;
    }
    if (use_lora && (st = sqz_train_lora_new(ctx, &tp, o.lora_rank, o.lora_alpha, targets, o.seed, &lo))) {
        sqz_train_params_free(&tp);
        sqz_hf_export_free(hf);
        return st;
    }
    /* what the optimizer trains: the whole model, or the adapters alone */
    const sqz_train_tensor *tab = use_lora ? lo.t : tp.t;
    const int n_tab = use_lora ? lo.n_tensors : tp.n_tensors;
    const size_t n_train = use_lora ? lo.n : tp.n;
    float *train_p = use_lora ? lo.p : tp.p;
    sqz_train_acts *acts = NULL;
    const int B = o.micro_batch, T = o.ctx;
    float *grad = calloc(n_train, sizeof(float)), *m1 = calloc(n_train, sizeof(float)),
          *m2 = calloc(n_train, sizeof(float));
    int32_t *x = malloc((size_t)B * T * sizeof *x), *y = malloc((size_t)B * T * sizeof *y);
    sqz_layer_weights *layers = calloc((size_t)tp.cfg.n_layers, sizeof *layers);
    if (!grad || !m1 || !m2 || !x || !y || !layers) {
        st = sqz_fail(ctx, SQZ_ERR_NOMEM, "finetune: out of memory for %zu parameters", tp.n);
        goto done;
    }
    if ((st = sqz_train_acts_new(ctx, &tp.cfg, B, T, lo.rank, &acts)) != SQZ_OK) goto done;
    result->n_params = n_train;
    const sqz_train_lora *lop = use_lora ? &lo : NULL;
    const size_t n_eval = o.eval_tokens && o.eval_tokens < o.n_eval ? o.eval_tokens : o.n_eval;
    if (o.eval) result->eval_ppl_before = eval_ppl(&tp, lop, acts, B, T, o.eval, n_eval, x, y, nt);

    uint64_t rng = o.seed;
    const sqz_adamw adam = { o.lr, o.beta1, o.beta2, o.eps, o.weight_decay };
    const int n_micro = o.batch / o.micro_batch;
    for (int s = 0; s < o.steps; s++) {
        const double t0 = sqz_now();
        memset(grad, 0, n_train * sizeof(float));
        double loss = 0;
        for (int mb = 0; mb < n_micro; mb++) {
            for (int b = 0; b < B; b++) {
                const size_t off = (size_t)(sqz_splitmix64(&rng) % (uint64_t)(n_tokens - (size_t)T - 1));
                memcpy(x + (size_t)b * T, tokens + off, (size_t)T * sizeof *x);
                memcpy(y + (size_t)b * T, tokens + off + 1, (size_t)T * sizeof *y);
            }
            loss += sqz_train_forward(&tp, tp.p, lop, acts, x, y, nt) / n_micro;
            sqz_train_backward(&tp, tp.p, use_lora ? NULL : grad, lop, use_lora ? grad : NULL, acts, nt);
        }
        if (n_micro > 1) /* each micro-batch's gradient is of its own mean: average them */
            for (size_t i = 0; i < n_train; i++) grad[i] /= (float)n_micro;
        const double norm = sqz_train_clip(grad, n_train, o.clip > 0 ? o.clip : 0);
        sqz_adamw a = adam;
        a.lr = (float)lr_at(&o, s);
        sqz_train_adamw_step(tab, n_tab, train_p, grad, m1, m2, s + 1, &a, nt);
        const double dt = sqz_now() - t0;
        result->seconds += dt;
        if (s == 0) result->first_loss = loss;
        result->last_loss = loss;
        result->steps = s + 1;
        double ppl = 0;
        if (o.eval && ((o.eval_every > 0 && (s + 1) % o.eval_every == 0) || s + 1 == o.steps)) {
            ppl = eval_ppl(&tp, lop, acts, B, T, o.eval, n_eval, x, y, nt);
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

    /* write: the adapters, or the trained f32 weights through sqz_convert as any model */
    if (use_lora) {
        st = sqz_train_lora_write(ctx, &lo, model, out_path);
    } else if (hf) {
        st = write_hf(ctx, hf, o.tokenizer_json, &tp, out_type);
    } else {
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
    sqz_train_lora_free(&lo);
    sqz_hf_export_free(hf);
    free(grad), free(m1), free(m2), free(x), free(y), free(layers);
    return st;
}
