/* finetune.c - sqz_finetune: the training loop (sampling, schedule, clipping, AdamW),
 * held-out perplexity, and writing the result. */
#include <math.h>
#include "core/hash.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/export_hf.h"
#include "math/rng.h"
#include "train/gc.h"
#include "train/train.h"

const char *sqz_finetune_dp_methods(void) { return sqz_gc_names(); }
void sqz_finetune_dp_shutdown(void) { sqz_comm_shutdown(); }
int sqz_finetune_dp_launched(int *world, int *local, int *rank) {
    return sqz_comm_launched(world, local, rank);
}

/* what a checkpoint must have been made with (the step count may change on resume) */
static uint64_t recipe_hash(const sqz_finetune_opts *o, size_t n_params) {
    uint64_t h = sqz_fnv1a_init();
    const int iv[] = { o->batch, o->ctx, o->warmup, o->cosine, o->lora_rank };
    const float fv[] = { o->lr, o->min_lr, o->weight_decay, o->beta1, o->beta2, o->eps, o->clip, o->lora_alpha };
    h = sqz_fnv1a(h, iv, sizeof iv);
    h = sqz_fnv1a(h, fv, sizeof fv);
    h = sqz_fnv1a(h, &o->seed, sizeof o->seed);
    return sqz_fnv1a(h, &n_params, sizeof n_params);
}
/* what every rank must share */
static uint64_t opts_hash(const sqz_finetune_opts *o, size_t n_params) {
    uint64_t h = recipe_hash(o, n_params);
    const int iv[] = { o->steps, o->micro_batch, o->checkpoint_every, !!o->resume };
    h = sqz_fnv1a(h, iv, sizeof iv);
    return sqz_fnv1a(h, o->dp, strlen(o->dp));
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

/* One fine-tuning run's state. */
typedef struct ft_run {
    sqz_finetune_opts o;
    int gguf_out, use_lora, nt, bpr;
    sqz_comm comm;
    const sqz_gc_method *gcm; /* NULL: one process */
    sqz_gc_args gca;
    void *gcs;
    sqz_hf_export *hf;
    sqz_train_params tp;
    int have_tp;
    sqz_train_lora lo;
    sqz_train_acts *acts;
    float *grad, *m1, *m2;
    int32_t *x, *y;
    size_t *offs;
    sqz_layer_weights *layers;
    int step0;      /* steps done before this run (resume) */
    uint64_t rng;   /* the data sampler */
} ft_run;

static void release(ft_run *R) {
    if (R->gcm && R->gcs) R->gcm->destroy(R->gcs);
    sqz_train_acts_free(R->acts);
    if (R->have_tp) sqz_train_params_free(&R->tp);
    sqz_train_lora_free(&R->lo);
    sqz_hf_export_free(R->hf);
    free(R->grad), free(R->m1), free(R->m2), free(R->x), free(R->y), free(R->offs), free(R->layers);
}

/* Every rank learns whether any failed (a collective: all ranks call it, with what each did):
 * a rank that failed keeps its own error, the others get one that points to it. */
static sqz_status agree(sqz_ctx *ctx, ft_run *R, sqz_status st, sqz_status others, const char *what) {
    double failed = st != SQZ_OK;
    const sqz_status cs = sqz_comm_ctl_sum(&R->comm, &failed, 1);
    if (st || cs) return st ? st : cs;
    if (failed > 0)
        return sqz_fail(ctx, others, "finetune: rank %d of %d stops: %g other rank(s) failed to %s (see "
                        "their message)", R->comm.rank, R->comm.size, failed, what);
    return SQZ_OK;
}

/* What this rank's compressor state is saved with, and must be resumed with. */
static sqz_gc_ckpt gc_header(const ft_run *R, size_t n_train, int step) {
    return (sqz_gc_ckpt){ .hash = recipe_hash(&R->o, n_train), .n = n_train, .step = step,
                          .rank = R->comm.rank, .world = R->comm.size, .spec = R->o.dp };
}

/* After the compressor is made, on --resume: its state from this rank's side file; or, where
 * the run keeps none, a check that the checkpoint holds none it would drop (rank 0 looks). */
static sqz_status resume_gc(sqz_ctx *ctx, ft_run *R, size_t n_train) {
    if (R->gcm && R->gcm->state) {
        const sqz_gc_ckpt h = gc_header(R, n_train, R->step0);
        return sqz_gc_ckpt_read(ctx, R->o.resume, &h, R->gcm, R->gcs);
    }
    return R->comm.rank == 0 ? sqz_gc_ckpt_unused(ctx, R->o.resume, recipe_hash(&R->o, n_train), R->step0)
                             : SQZ_OK;
}

/* Everything checked and allocated before the first step; no communication, so each rank may
 * fail here on its own (the ranks then agree on the outcome). */
static sqz_status prepare(sqz_ctx *ctx, ft_run *R, const sqz_model *model, const int32_t *tokens,
                          size_t n_tokens, const char *out_path, sqz_finetune_result *result) {
    sqz_finetune_opts *o = &R->o;
    if (!out_path || !*out_path) return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: no output path");
    const size_t len = strlen(out_path);
    R->gguf_out = len >= 5 && !strcmp(out_path + len - 5, ".gguf");
    if (!R->gguf_out && o->lora_rank > 0)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: %s: a LoRA adapter is written as a .gguf file", out_path);
    if (!R->gguf_out && model->cfg.rope_interleaved)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: %s: a model with GGUF's RoPE layout is written as "
                        "a .gguf file", out_path);
    if (o->batch % R->comm.size)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: batch %d does not split over %d ranks", o->batch,
                        R->comm.size);
    R->bpr = o->batch / R->comm.size;
    if (R->gcm && (R->o.micro_batch > R->bpr || R->o.micro_batch == o->batch)) o->micro_batch = R->bpr;
    if (R->bpr % o->micro_batch)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: micro-batch %d does not divide the %d windows %s each "
                        "step", o->micro_batch, R->bpr, R->gcm ? "a rank trains on" : "of a batch");
    if (n_tokens < (size_t)o->ctx + 2)
        return sqz_fail(ctx, SQZ_ERR_ARG,
                        "finetune: the training text has %zu tokens; windows of %d need at least %d",
                        n_tokens, o->ctx + 1, o->ctx + 2);
    if (o->eval && o->n_eval < (size_t)o->ctx + 1)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: the held-out text has %zu tokens, fewer than "
                        "one window of %d", o->n_eval, o->ctx + 1);
    const int V = model->cfg.vocab_size;
    for (size_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return sqz_fail(ctx, SQZ_ERR_RANGE, "finetune: token %d at %zu is outside the vocabulary",
                            tokens[i], i);
    R->use_lora = o->lora_rank > 0;
    const unsigned targets = lora_targets(o->lora_targets);
    if (R->use_lora && !targets)
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: LoRA targets '%s': a comma list of q, k, v, o, "
                        "gate, up, down", o->lora_targets);
    sqz_status st;
    /* a folder: checked now, before any training (rank 0 writes) */
    if (!R->gguf_out && R->comm.rank == 0 && (st = sqz_hf_export_new(ctx, out_path, &R->hf))) return st;
    if ((st = sqz_train_params_from_model(ctx, model, R->use_lora, &R->tp))) return st;
    R->have_tp = 1;
    if (R->use_lora &&
        (st = sqz_train_lora_new(ctx, &R->tp, o->lora_rank, o->lora_alpha, targets, o->seed, &R->lo)))
        return st;
    const size_t n_train = R->use_lora ? R->lo.n : R->tp.n;
    const int B = o->micro_batch, T = o->ctx;
    R->grad = calloc(n_train, sizeof(float));
    R->m1 = calloc(n_train, sizeof(float));
    R->m2 = calloc(n_train, sizeof(float));
    R->x = malloc((size_t)B * T * sizeof *R->x);
    R->y = malloc((size_t)B * T * sizeof *R->y);
    R->offs = malloc((size_t)o->batch * sizeof *R->offs);
    R->layers = calloc((size_t)R->tp.cfg.n_layers, sizeof *R->layers);
    if (!R->grad || !R->m1 || !R->m2 || !R->x || !R->y || !R->offs || !R->layers)
        return sqz_fail(ctx, SQZ_ERR_NOMEM, "finetune: out of memory for %zu parameters", n_train);
    if ((st = sqz_train_acts_new(ctx, &R->tp.cfg, B, T, R->lo.rank, &R->acts))) return st;
    result->n_params = n_train;
    R->rng = o->seed;
    if (o->resume) {
        sqz_train_ckpt c = { .hash = recipe_hash(o, n_train), .n = n_train };
        if ((st = sqz_train_ckpt_read(ctx, o->resume, &c, R->use_lora ? R->lo.p : R->tp.p, R->m1, R->m2)))
            return st;
        if (c.step >= o->steps)
            return sqz_fail(ctx, SQZ_ERR_ARG, "--resume %s: the checkpoint is at step %d: --steps must be "
                            "more than that", o->resume, c.step);
        R->step0 = c.step, R->rng = c.rng;
    }
    if (R->gcm) {
        const sqz_gc_env env = {
            .ctx = ctx, .t = R->use_lora ? R->lo.t : R->tp.t, .n_tensors = R->use_lora ? R->lo.n_tensors : R->tp.n_tensors,
            .n = n_train, .comm = &R->comm, .steps = o->steps, .clip = o->clip > 0 ? o->clip : 0,
            .seed = o->seed, .n_threads = R->nt, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps,
        };
        if ((st = R->gcm->create(&env, &R->gca, &R->gcs))) return st;
    }
    return o->resume ? resume_gc(ctx, R, n_train) : SQZ_OK;
}

/* The checkpoint after `step` steps: rank 0's (weights, AdamW, sampler) and, for a compressor
 * with state, every rank's side file. Each is written to a temporary file and renamed only once
 * every rank has written its own, so a failure anywhere leaves the last whole set. (A crash
 * between the renames leaves files of two steps, which a resume refuses by their step.) */
static sqz_status save_checkpoint(sqz_ctx *ctx, ft_run *R, int step, uint64_t rng) {
    const char *path = R->o.checkpoint;
    const int lead = R->comm.rank == 0, side = R->gcm && R->gcm->state;
    const size_t n_train = R->use_lora ? R->lo.n : R->tp.n;
    sqz_status st = SQZ_OK, cs;
    int wrote = 0, wrote_side = 0; /* temporaries of this rank's to rename or remove (a failed
                                    * write removed its own; a name it could not open is not its) */
    if (lead) {
        const sqz_train_ckpt c = { .hash = recipe_hash(&R->o, n_train), .n = n_train, .rng = rng, .step = step };
        wrote = !(st = sqz_train_ckpt_write(ctx, path, &c, R->use_lora ? R->lo.p : R->tp.p, R->m1, R->m2));
    }
    if (!st && side) {
        const sqz_gc_ckpt h = gc_header(R, n_train, step);
        wrote_side = !(st = sqz_gc_ckpt_write(ctx, path, &h, R->gcm, R->gcs));
    }
    if (R->gcm) st = agree(ctx, R, st, SQZ_ERR_IO, "write the checkpoint");
    if (wrote_side && (cs = sqz_gc_ckpt_commit(ctx, path, R->comm.rank, !st)) && !st) st = cs;
    if (wrote && (cs = sqz_train_ckpt_commit(ctx, path, !st)) && !st) st = cs;
    if (!st && lead && !side) sqz_gc_ckpt_forget(path); /* no older run's state passes for this one's */
    return st;
}

/* The training steps. */
static sqz_status train(sqz_ctx *ctx, ft_run *R, const int32_t *tokens, size_t n_tokens,
                        sqz_finetune_result *result) {
    const sqz_finetune_opts *o = &R->o;
    const int nt = R->nt, B = o->micro_batch, T = o->ctx, lead = R->comm.rank == 0;
    const sqz_train_tensor *tab = R->use_lora ? R->lo.t : R->tp.t;
    const int n_tab = R->use_lora ? R->lo.n_tensors : R->tp.n_tensors;
    const size_t n_train = R->use_lora ? R->lo.n : R->tp.n;
    float *train_p = R->use_lora ? R->lo.p : R->tp.p, *grad = R->grad;
    const sqz_train_lora *lop = R->use_lora ? &R->lo : NULL;
    const size_t n_eval = o->eval_tokens && o->eval_tokens < o->n_eval ? o->eval_tokens : o->n_eval;
    if (o->eval && lead)
        result->eval_ppl_before = eval_ppl(&R->tp, lop, R->acts, B, T, o->eval, n_eval, R->x, R->y, nt);

    uint64_t rng = R->rng;
    sqz_adamw adam = { o->lr, o->beta1, o->beta2, o->eps, o->weight_decay };
    const int plain_step = R->gcm && R->gcm->owns_optimizer; /* the direction is the update */
    const int clip_here = !(R->gcm && R->gcm->owns_clipping) && o->clip > 0;
    const int n_micro = R->bpr / B;
    sqz_status st = SQZ_OK;
    for (int s = R->step0; s < o->steps; s++) {
        const double t0 = sqz_now();
        /* every rank draws the whole batch's windows; rank r trains on its r-th share */
        for (int b = 0; b < o->batch; b++)
            R->offs[b] = (size_t)(sqz_splitmix64(&rng) % (uint64_t)(n_tokens - (size_t)T - 1));
        memset(grad, 0, n_train * sizeof(float));
        double loss = 0;
        for (int mb = 0; mb < n_micro; mb++) {
            for (int b = 0; b < B; b++) {
                const size_t off = R->offs[R->comm.rank * R->bpr + mb * B + b];
                memcpy(R->x + (size_t)b * T, tokens + off, (size_t)T * sizeof *R->x);
                memcpy(R->y + (size_t)b * T, tokens + off + 1, (size_t)T * sizeof *R->y);
            }
            loss += sqz_train_forward(&R->tp, R->tp.p, lop, R->acts, R->x, R->y, nt) / n_micro;
            sqz_train_backward(&R->tp, R->tp.p, R->use_lora ? NULL : grad, lop, R->use_lora ? grad : NULL,
                               R->acts, nt);
        }
        if (n_micro > 1) /* each micro-batch's gradient is of its own mean: average them */
            for (size_t i = 0; i < n_train; i++) grad[i] /= (float)n_micro;
        const double t1 = sqz_now();
        result->compute_s += t1 - t0;
        if (R->gcm) {
            const double c0 = R->comm.comm_s;
            if ((st = R->gcm->exchange(R->gcs, grad, s))) return st;
            double l = loss;
            if ((st = sqz_comm_ctl_sum(&R->comm, &l, 1))) return st;
            loss = l / R->comm.size;
            const double comm = R->comm.comm_s - c0;
            result->comm_s += comm;
            result->compress_s += sqz_now() - t1 - comm;
        }
        const double norm = clip_here ? sqz_train_clip(grad, n_train, o->clip) : sqz_train_clip(grad, n_train, 0);
        sqz_adamw a = adam;
        a.lr = (float)lr_at(o, s);
        if (plain_step) sqz_train_sgd_step(tab, n_tab, train_p, grad, &a, nt);
        else sqz_train_adamw_step(tab, n_tab, train_p, grad, R->m1, R->m2, s + 1, &a, nt);
        const double dt = sqz_now() - t0;
        result->seconds += dt;
        /* the same on every rank (the loss is the mean over ranks) */
        if (o->checkpoint && isfinite(loss) &&
            ((o->checkpoint_every > 0 && (s + 1) % o->checkpoint_every == 0) || s + 1 == o->steps) &&
            (st = save_checkpoint(ctx, R, s + 1, rng)))
            return st;
        if (s == R->step0) result->first_loss = loss;
        result->last_loss = loss;
        result->steps = s + 1;
        double ppl = 0;
        if (o->eval && lead && ((o->eval_every > 0 && (s + 1) % o->eval_every == 0) || s + 1 == o->steps)) {
            ppl = eval_ppl(&R->tp, lop, R->acts, B, T, o->eval, n_eval, R->x, R->y, nt);
            if (s + 1 == o->steps) result->eval_ppl_after = ppl;
        }
        if (!isfinite(loss)) /* the same on every rank: the loss is the mean over ranks */
            return sqz_fail(ctx, SQZ_ERR_RANGE, "finetune: the loss is %g at step %d (learning rate "
                            "too high?)", loss, s + 1);
        if (lead && o->on_step) o->on_step(o->user, s + 1, loss, a.lr, norm, dt, ppl);
        char what[64];
        snprintf(what, sizeof what, "finetune loss %.3f", loss);
        if (lead) sqz_progress(ctx, what, (uint64_t)s + 1, (uint64_t)o->steps);
    }
    result->tokens_per_s = result->seconds > 0 ? (double)(o->steps - R->step0) * o->batch * T / result->seconds : 0;
    result->dp_bytes = R->comm.bytes_sent;
    result->dp_ctl_bytes = R->comm.ctl_bytes;
    return SQZ_OK;
}

/* The adapters, or the trained f32 weights (through sqz_convert as any model, or a folder). */
static sqz_status write_out(sqz_ctx *ctx, ft_run *R, const sqz_model *model, const char *out_path,
                            const char *out_type, const sqz_finetune_result *res) {
    if (R->use_lora) return sqz_train_lora_write(ctx, &R->lo, model, out_path);
    /* the card: the caller's, with the recipe and the held-out perplexity after training */
    sqz_model_card card = R->o.card ? *R->o.card : (sqz_model_card){ 0 };
    char params[200];
    snprintf(params, sizeof params, "%d steps of %d windows x %d tokens, AdamW, peak lr %g%s, weight decay %g",
             R->o.steps, R->o.batch, R->o.ctx, (double)R->o.lr, R->o.cosine ? " (cosine)" : "",
             (double)R->o.weight_decay);
    if (!card.method) card.method = "finetune";
    if (!card.parameters) card.parameters = params;
    if (!(card.ppl > 0) && res->eval_ppl_after > 0) card.ppl = res->eval_ppl_after;
    if (R->hf) {
        sqz_status st = R->o.card ? sqz_hf_export_card(R->hf, &card) : SQZ_OK;
        return st ? st : write_hf(ctx, R->hf, R->o.tokenizer_json, &R->tp, out_type);
    }
    sqz_model view;
    sqz_train_model_view(model, &R->tp, R->tp.p, R->layers, &view);
    sqz_convert_opts co = { 0 };
    co.type = out_type ? out_type : "f16";
    co.card = R->o.card ? &card : NULL;
    sqz_convert_result cr;
    return sqz_convert(ctx, &view, out_path, &co, &cr);
}

sqz_status sqz_finetune(sqz_ctx *ctx, const sqz_model *model, const int32_t *tokens,
                        size_t n_tokens, const sqz_finetune_opts *opts, const char *out_path,
                        const char *out_type, sqz_finetune_result *result) {
    memset(result, 0, sizeof *result);
    sqz_status sub_st = sqz_model_require_subblocks(ctx, model, "finetune");
    if (sub_st) return sub_st;
    ft_run R;
    memset(&R, 0, sizeof R);
    R.o = *opts;
    defaults(&R.o);
    R.nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    R.comm.size = 1;
    sqz_status st;
    if (R.o.dp) {
        /* join the world first, so that a bad spec or world is reported before any work */
        if ((st = sqz_gc_parse(ctx, R.o.dp, &R.gcm, &R.gca))) return st;
        if ((st = sqz_comm_open(ctx, &R.comm))) return st;
        result->dp_rank = R.comm.rank, result->dp_world = R.comm.size;
    } else if (sqz_comm_launched(&R.comm.size, NULL, NULL)) {
        return sqz_fail(ctx, SQZ_ERR_ARG, "finetune: started as one of %d MPI ranks without --dp: each "
                        "rank would train alone and write the same file (add --dp none, or a compressor)",
                        R.comm.size);
    }
    st = prepare(ctx, &R, model, tokens, n_tokens, out_path, result);
    if (R.gcm) { /* every rank learns whether any failed, and that all run the same options */
        int same = 0;
        st = agree(ctx, &R, st, SQZ_ERR_ARG, "start");
        const sqz_status cs = sqz_comm_ctl_same(&R.comm, opts_hash(&R.o, result->n_params), &same);
        if (!st && cs) st = cs;
        else if (!st && !same)
            st = sqz_fail(ctx, SQZ_ERR_ARG, "finetune: the %d ranks were given different options or models "
                          "(every rank must run the same command)", R.comm.size);
    }
    if (!st) st = train(ctx, &R, tokens, n_tokens, result);
    if (!st && R.comm.rank == 0) st = write_out(ctx, &R, model, out_path, out_type, result);
    release(&R);
    sqz_comm_close(&R.comm);
    return st;
}
