/* cmd_kvbench.c - sqz kvbench MODEL -f FILE [--ctx N] [--max-tokens N] [--kv SPEC ...]
 * [--kv-prefill N] [--json]: compares KV cache policies (KIVI q8/q4/q2, StreamingLLM, H2O,
 * SnapKV, f16, ...; without --kv every listed policy at its defaults plus the compositions
 * in `extra` below) on
 *  - memory: KV bytes per position of context (the policy's own bytes() once a context of
 *    --ctx positions is filled - the state the last scored token of a ppl window reads -
 *    divided by its length) and the ratio to an f16 cache (2 * layers * kv_heads * head_dim * 2
 *    bytes per position), and the same ratio at each decode context;
 *  - quality: perplexity over FILE and KL divergence against the same model with the exact f32
 *    cache, each window prefilled with --kv-prefill tokens (default 256) in one batch and then
 *    run one token at a time, so later tokens read the compressed cache;
 *  - speed: decode tokens/s at contexts 512, 1024, 2048, 4096 (those within the model's trained
 *    context): the session is filled to C-32 positions (the prefill batch, then batches of 64),
 *    then 32 single-token steps are timed, the last one at position C-1.
 * Uses include/sqz.h only. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { N_CTXS = 4, STEPS = 32, FILL_BATCH = 64 };
static const int ctxs[N_CTXS] = { 512, 1024, 2048, 4096 };

/* Compositions in the default set: a storage codec under an eviction policy reaches 4x and 8x
 * vs f16 near the quality of the f16 cache (see README). */
static const char *const extra[] = {
    "streaming:sink=4,window=1020+q4",
    "streaming:sink=4,window=508+q4",
    "h2o:budget=1024+q4",
    "streaming:sink=4,window=1020+q8",
    "minicache+q4",
    "xkv:rank=64+q8",
};

typedef struct bench_row {
    const char *policy;
    double bytes_per_token, ratio, ppl, kld, tps[N_CTXS], ratio_at[N_CTXS];
    int bytes_ctx;
} bench_row;

/* Fills a session to C - STEPS positions and times STEPS single-token evals; *bytes_out: the
 * cache bytes at C positions. Returns tokens/s or a negative number on failure. */
static double decode_tps(sqz_ctx *ctx, const sqz_model *m, const char *kv, int C, int prefill,
                         const int32_t *ids, size_t n_ids, size_t *bytes_out) {
    sqz_session *s;
    if (sqz_session_new_kv(ctx, m, C, kv, &s)) return -1;
    int32_t *toks = malloc((size_t)C * sizeof *toks);
    if (!toks) { sqz_session_free(s); return -1; }
    for (int i = 0; i < C; i++) toks[i] = ids[(size_t)i % n_ids];
    const int fill = C - STEPS;
    int p = 0;
    sqz_status st = SQZ_OK;
    while (p < fill && !st) {
        int n = p == 0 ? (prefill > 0 ? prefill : FILL_BATCH) : FILL_BATCH;
        if (n > fill - p) n = fill - p;
        st = sqz_session_eval(s, toks + p, n, NULL, 0);
        p += n;
    }
    double t0 = cli_now();
    for (int i = 0; i < STEPS && !st; i++) st = sqz_session_eval(s, toks + fill + i, 1, NULL, 0);
    double dt = cli_now() - t0;
    *bytes_out = sqz_session_kv_bytes(s);
    free(toks);
    sqz_session_free(s);
    return st ? -1 : (dt > 0 ? STEPS / dt : 0);
}

int cmd_kvbench(sqz_ctx *ctx, const opts *o) {
    if (!o->file) return cli_die("%s", "kvbench needs a text file: -f FILE");
    size_t len;
    char *text = cli_read_file(o->file, &len);
    if (!text) return 1;
    sqz_model *m;
    if (sqz_model_load(ctx, o->model, o->tokenizer, &m)) { free(text); return cli_fail(ctx); }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    sqz_status st = sqz_tokenize(ctx, m, text, len, 0, &ids, &n_ids);
    free(text);
    if (st || n_ids < 2) {
        sqz_model_free(m);
        sqz_free(ids);
        return st ? cli_fail(ctx) : cli_die("%s: too few tokens", o->file);
    }
    sqz_model_info info;
    sqz_model_get_info(m, &info);
    const int max_ctx = info.max_seq_len > 0 ? info.max_seq_len : 4096;
    const int n_ctx = o->n_ctx ? o->n_ctx : max_ctx;
    const int prefill = o->kv_prefill ? o->kv_prefill : 256;
    const double f16_bpt = 2.0 * info.n_layers * info.n_kv_heads * info.head_dim * 2;
    const char *specs[64];
    int n_specs = 0;
    if (o->n_kv)
        for (int i = 0; i < o->n_kv && n_specs < 64; i++) specs[n_specs++] = o->kv[i];
    else {
        for (int i = 0; sqz_kv_policy_name(i) && n_specs < 64; i++)
            if (strcmp(sqz_kv_policy_name(i), "f32")) specs[n_specs++] = sqz_kv_policy_name(i);
        for (size_t i = 0; i < sizeof extra / sizeof *extra && n_specs < 64; i++)
            specs[n_specs++] = extra[i];
    }
    bench_row *rows = calloc((size_t)n_specs, sizeof *rows);
    int rc = 0;
    if (!rows) { rc = cli_die("out of memory"); goto done; }
    for (int i = 0; i < n_specs && !rc; i++) {
        bench_row *r = &rows[i];
        r->policy = specs[i];
        if (!o->json) fprintf(stderr, "kvbench: %s\n", specs[i]);
        sqz_ppl_opts po = { .n_ctx = n_ctx, .max_tokens = (size_t)o->max_tokens, .kv = specs[i],
                            .kv_prefill = prefill, .kld_base = m, .kld_base_kv = "f32" };
        sqz_ppl_result pr;
        st = sqz_perplexity(ctx, m, ids, n_ids, &po, &pr);
        if (st == SQZ_ERR_ARG && !o->n_kv) {
            /* a policy that needs parameters (a calibration file...) has no default run */
            fprintf(stderr, "kvbench: skipping %s: %s\n", specs[i], sqz_ctx_error(ctx));
            memmove(specs + i, specs + i + 1, (size_t)(n_specs - i - 1) * sizeof *specs);
            n_specs--, i--;
            continue;
        }
        if (st) { rc = cli_fail(ctx); break; }
        r->ppl = pr.ppl;
        r->kld = pr.kld;
        for (int c = 0; c < N_CTXS; c++) {
            r->tps[c] = -1, r->ratio_at[c] = 0;
            if (ctxs[c] > max_ctx) continue;
            size_t b;
            r->tps[c] = decode_tps(ctx, m, specs[i], ctxs[c], prefill, ids, n_ids, &b);
            if (r->tps[c] < 0) { rc = cli_fail(ctx); break; }
            r->ratio_at[c] = b ? f16_bpt * ctxs[c] / (double)b : 0;
            if (ctxs[c] == n_ctx) r->bytes_per_token = (double)b / n_ctx, r->bytes_ctx = n_ctx;
        }
        if (rc) break;
        if (!r->bytes_ctx) { /* --ctx is none of the decode contexts: fill one of its own */
            size_t b;
            if (decode_tps(ctx, m, specs[i], n_ctx, prefill, ids, n_ids, &b) < 0) {
                rc = cli_fail(ctx);
                break;
            }
            r->bytes_per_token = (double)b / n_ctx, r->bytes_ctx = n_ctx;
        }
        r->ratio = r->bytes_per_token > 0 ? f16_bpt / r->bytes_per_token : 0;
    }
    if (rc) goto done;
    if (o->json) {
        cJSON *j = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(j, "rows");
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "file", o->file);
        cJSON_AddNumberToObject(j, "ctx", n_ctx);
        cJSON_AddNumberToObject(j, "kv_prefill", prefill);
        cJSON_AddNumberToObject(j, "f16_bytes_per_token", f16_bpt);
        for (int i = 0; i < n_specs; i++) {
            const bench_row *r = &rows[i];
            cJSON *row = cJSON_CreateObject();
            cJSON_AddStringToObject(row, "policy", r->policy);
            cJSON_AddNumberToObject(row, "bytes_per_token", r->bytes_per_token);
            cJSON_AddNumberToObject(row, "bytes_ctx", r->bytes_ctx);
            cJSON_AddNumberToObject(row, "ratio_vs_f16", r->ratio);
            cJSON_AddNumberToObject(row, "ppl", r->ppl);
            cJSON_AddNumberToObject(row, "kld", r->kld);
            cJSON *t = cJSON_AddObjectToObject(row, "decode_tps");
            cJSON *ra = cJSON_AddObjectToObject(row, "ratio_vs_f16_at");
            for (int c = 0; c < N_CTXS; c++) {
                char key[16];
                snprintf(key, sizeof key, "%d", ctxs[c]);
                if (r->tps[c] >= 0) cJSON_AddNumberToObject(t, key, r->tps[c]);
                else cJSON_AddNullToObject(t, key);
                if (r->tps[c] >= 0) cJSON_AddNumberToObject(ra, key, r->ratio_at[c]);
                else cJSON_AddNullToObject(ra, key);
            }
            cJSON_AddItemToArray(arr, row);
        }
        cli_print_json(j);
    } else {
        printf("%-28s %10s %7s %10s %10s", "policy", "B/token", "x f16", "ppl", "kld");
        for (int c = 0; c < N_CTXS; c++) printf("  tps@%-5d", ctxs[c]);
        printf("\n");
        for (int i = 0; i < n_specs; i++) {
            const bench_row *r = &rows[i];
            printf("%-28s %10.1f %7.2f %10.4f %10.6f", r->policy, r->bytes_per_token, r->ratio,
                   r->ppl, r->kld);
            for (int c = 0; c < N_CTXS; c++)
                if (r->tps[c] >= 0) printf("  %9.1f", r->tps[c]);
                else printf("  %9s", "-");
            printf("\n");
        }
        printf("(B/token: KV bytes held after a context of %d positions / %d; ppl and kld over "
               "windows of %d, %d-token prefill, kld vs the f32 cache)\n",
               n_specs ? rows[0].bytes_ctx : 0, n_specs ? rows[0].bytes_ctx : 0, n_ctx, prefill);
    }
done:
    free(rows);
    sqz_free(ids);
    sqz_model_free(m);
    return rc;
}
