/* cmd_search.c - sqz search MODEL -o OUT.gguf --db DB --bpw B | --bytes N --calib FILE
 * [--alloc knapsack|layerwise|uniform --type T] [--levels quant,depth], or
 * --levels depth --blocks N: EvoPress over per-matrix types or dropped blocks (include/sqz.h,
 * sqz_search). OUT.json gets the choice and the fitness curve. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int quiet_rank; /* under mpirun, ranks other than 0 print nothing */

static void on_gen(void *user, int gen, double fitness, double seconds) {
    const opts *o = user;
    if (o->json || o->no_progress || quiet_rank) return;
    (void)seconds;
    fprintf(stderr, "\r\033[K  generation %d: fitness (KL) %.6f", gen, fitness);
}

int cmd_search(sqz_ctx *ctx, const opts *o) {
    if (!o->out) return cli_die("search needs an output file: -o OUT.gguf");
    if (!o->calib) return cli_die("search scores candidates on calibration text: --calib FILE");
    const char *space = o->space ? o->space : "quant";
    const int joint = !strcmp(space, "quant,depth") || !strcmp(space, "depth,quant");
    const int quant = joint || !strcmp(space, "quant");
    if (!quant && strcmp(space, "depth")) return cli_die("--levels %s: unknown space (known: quant, depth, quant,depth)", space);
    if (quant && !o->db) return cli_die("search --levels quant needs a level database: --db DB (sqz levels)");
    const int uniform = o->search_alloc && !strcmp(o->search_alloc, "uniform");
    if (!quant && (o->search_alloc || o->type)) return cli_die("--alloc and --type choose the quant space's seed, not depth's");
    if (uniform && !o->type) return cli_die("search --alloc uniform needs --type T (q2_k..q6_k)");
    if (o->type && !uniform) return cli_die("--type T is --alloc uniform's type");
    if (quant && o->bpw > 0 && o->bytes > 0) return cli_die("search needs a budget: --bpw B or --bytes N, one of them");
    if (quant && !uniform && !(o->bpw > 0) && !o->bytes)
        return cli_die("search needs a budget: --bpw B or --bytes N, one of them");
    if (!quant && (o->drop_n > 0) == (o->drop_sub > 0))
        return cli_die("search --levels depth needs --blocks N or --sub N (sub-blocks), one of them");
    if (quant && o->drop_sub > 0) return cli_die("--sub N chooses sub-blocks to drop: --levels depth");
    if (o->checkpoint && o->resume) return cli_die("--checkpoint FILE or --resume FILE, one of them");
    /* under mpirun: ranks share the cores, and only rank 0 reports */
    int world = 1, local = 1, rank = 0;
    const int launched = sqz_finetune_dp_launched(&world, &local, &rank);
    quiet_rank = rank != 0;
    if (launched && o->threads <= 0) {
        const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        sqz_ctx_set_threads(ctx, ncpu / local > 1 ? (int)(ncpu / local) : 1);
    }
    sqz_model *mdl;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (cli_load_model_text(ctx, o, o->calib, 0, &mdl, &ids, &n_ids, NULL)) return 1;
    size_t n = n_ids;
    if (o->calib_tokens > 0 && (size_t)o->calib_tokens < n) n = (size_t)o->calib_tokens;
    char json_path[4096];
    snprintf(json_path, sizeof json_path, "%s.json", o->out);
    const sqz_search_opts so = {
        .space = space, .db = o->db, .bpw = o->bpw, .bytes = o->bytes, .alloc = o->search_alloc, .type = o->type,
        .n_drop = o->drop_sub > 0 ? o->drop_sub : o->drop_n, .sub = o->drop_sub > 0,
        .embd_type = o->embd_type, .calib = ids, .n_calib = n, .calib_ctx = o->calib_ctx,
        .pool_windows = o->pool_windows, .holdout_windows = o->holdout_windows, .generations = o->generations_set ? o->generations : -1,
        .offspring = o->offspring, .stages = o->stages, .seed = o->seed, .brute_force = o->brute_force,
        .checkpoint = o->resume ? o->resume : o->checkpoint, .checkpoint_every = o->checkpoint_every,
        .resume = o->resume != NULL, .max_generations_this_run = o->max_gens, .json_path = json_path,
        .on_generation = on_gen, .user = (void *)o,
    };
    sqz_search_result *r = malloc(sizeof *r);
    const sqz_status st = r ? sqz_search(ctx, mdl, o->out, &so, r) : SQZ_ERR_NOMEM;
    sqz_free(ids);
    sqz_model_free(mdl);
    if (launched) sqz_finetune_dp_shutdown();
    if (!o->json && !o->no_progress && rank == 0) fprintf(stderr, "\n");
    if (st) {
        free(r);
        return r ? cli_fail(ctx) : cli_die("out of memory");
    }
    if (rank != 0) {
        free(r);
        return 0;
    }
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "space", space);
        cJSON_AddBoolToObject(j, "finished", r->finished);
        cJSON_AddNumberToObject(j, "generations", r->generations);
        cJSON_AddNumberToObject(j, "evaluations", (double)r->evaluations);
        cJSON_AddNumberToObject(j, "seed_kl", r->seed_kl);
        cJSON_AddNumberToObject(j, "best_kl", r->best_kl);
        if (quant) {
            cJSON_AddNumberToObject(j, "seed_sum_kl", r->seed_sum_kl);
            cJSON_AddNumberToObject(j, "best_sum_kl", r->best_sum_kl);
            cJSON_AddNumberToObject(j, "budget_bytes", (double)r->budget_bytes);
            cJSON_AddStringToObject(j, "alloc", o->search_alloc ? o->search_alloc : "knapsack");
            if (r->holdout_windows) {
                cJSON_AddNumberToObject(j, "holdout_windows", r->holdout_windows);
                cJSON_AddNumberToObject(j, "holdout_seed_kl", r->holdout_seed_kl);
                cJSON_AddNumberToObject(j, "holdout_best_kl", r->holdout_best_kl);
                cJSON_AddNumberToObject(j, "holdout_gain_se", r->holdout_gain_se);
                cJSON_AddBoolToObject(j, "kept_seed", r->kept_seed);
            }
            if (joint) {
                cJSON *d = cJSON_CreateArray();
                for (int i = 0; i < r->n_dropped; i++) cJSON_AddItemToArray(d, cJSON_CreateNumber(r->dropped[i]));
                cJSON_AddItemToObject(j, "dropped", d);
            }
            if (r->n_importance) {
                cJSON *imp = cJSON_CreateArray();
                for (int i = 0; i < r->n_importance; i++) cJSON_AddItemToArray(imp, cJSON_CreateNumber(r->importance[i]));
                cJSON_AddItemToObject(j, "importance_lim", imp);
            }
        } else {
            cJSON *d = cJSON_CreateArray();
            for (int i = 0; i < r->n_dropped; i++) cJSON_AddItemToArray(d, cJSON_CreateNumber(r->dropped[i]));
            cJSON_AddItemToObject(j, "dropped", d);
            if (so.sub) {
                cJSON *da = cJSON_CreateArray(), *dm = cJSON_CreateArray();
                for (int i = 0; i < r->n_dropped_attn; i++) cJSON_AddItemToArray(da, cJSON_CreateNumber(r->dropped_attn[i]));
                for (int i = 0; i < r->n_dropped_mlp; i++) cJSON_AddItemToArray(dm, cJSON_CreateNumber(r->dropped_mlp[i]));
                cJSON_AddItemToObject(j, "dropped_attn", da);
                cJSON_AddItemToObject(j, "dropped_mlp", dm);
            }
        }
        cJSON_AddNumberToObject(j, "file_bytes", (double)r->file_bytes);
        cJSON_AddNumberToObject(j, "n_params", (double)r->n_params);
        cJSON_AddNumberToObject(j, "bits_per_weight", r->bits_per_weight);
        cJSON_AddStringToObject(j, "choice_json", json_path);
        cJSON_AddNumberToObject(j, "mpi_ranks", r->mpi_ranks);
        if (r->mpi_ranks > 1 && r->generations > 0)
            cJSON_AddNumberToObject(j, "mpi_bytes_per_generation", (double)r->mpi_bytes_sent / r->generations);
        cJSON_AddNumberToObject(j, "seconds", r->seconds);
        cli_print_json(j);
    } else if (!r->finished) {
        fprintf(stderr, "sqz: stopped after %d generations; resume with --resume %s\n", r->generations,
                so.checkpoint ? so.checkpoint : "(no checkpoint)");
    } else {
        fprintf(stderr, "sqz: wrote %s: %.3f MB, %.3f bits per weight; KL on the calibration pool %.6f (seed %.6f)%s; "
                "%d generations, %ld evaluations, %.1f s; the choice in %s\n", o->out, (double)r->file_bytes / 1e6,
                r->bits_per_weight, r->best_kl, r->seed_kl, quant ? "" : "", r->generations, r->evaluations,
                r->seconds, json_path);
        if (r->holdout_windows)
            fprintf(stderr, "sqz: held out (%d windows): KL %.6f, seed %.6f (gain %.6f +- %.6f): %s\n", r->holdout_windows,
                    r->holdout_best_kl, r->holdout_seed_kl, r->holdout_seed_kl - r->holdout_best_kl, r->holdout_gain_se,
                    r->kept_seed ? "not significantly better, the seed was written" : "the search's answer kept");
    }
    free(r);
    return 0;
}
