/* cmd_kvbench.c - sqz kvbench MODEL -f FILE [--ctx N] [--max-tokens N] [--kv SPEC ...]
 * [--kv-prefill N] [--kld-cache FILE] [--no-decode] [--json]: compares KV cache policies (KIVI q8/q4/q2, StreamingLLM, H2O,
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
 *    context): a session per policy is filled to C-32 positions (the prefill batch, then
 *    batches of 64), then 32 single-token steps, the last one at position C-1, run round-robin
 *    over the policies (a loaded machine slows them alike); tokens/s = 1 / the median step.
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
    "minicache+q4",
};

typedef struct bench_row {
    const char *policy;
    double bytes_per_token, ratio, ppl, kld, tps[N_CTXS], ratio_at[N_CTXS];
    int bytes_ctx;
} bench_row;

/* A session of policy kv filled to C - STEPS positions (the prefill batch, then batches of
 * FILL_BATCH), ready for STEPS timed single-token steps; NULL on failure. */
static sqz_session *filled(sqz_ctx *ctx, const sqz_model *m, const char *kv, int C, int prefill,
                           const int32_t *toks) {
    sqz_session *s;
    if (sqz_session_new_kv(ctx, m, C, kv, &s)) return NULL;
    const int fill = C - STEPS;
    sqz_status st = SQZ_OK;
    for (int p = 0; p < fill && !st;) {
        int n = p == 0 ? (prefill > 0 ? prefill : FILL_BATCH) : FILL_BATCH;
        if (n > fill - p) n = fill - p;
        st = sqz_session_eval(s, toks + p, n, NULL, 0);
        p += n;
    }
    if (st) {
        sqz_session_free(s);
        return NULL;
    }
    return s;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Decode speed at context C for every row: all sessions are filled first, then the STEPS
 * single-token steps run round-robin over the policies, so a busy machine slows them alike;
 * tps = 1 / the median step time. bytes[i]: the cache bytes of row i after the last step (C
 * positions). Returns 0; 1 on failure (the message in ctx); 2 out of memory. */
static int decode_round(sqz_ctx *ctx, const sqz_model *m, bench_row *rows, int n_rows, int C,
                        int prefill, const int32_t *ids, size_t n_ids, size_t *bytes) {
    int32_t *toks = malloc((size_t)C * sizeof *toks);
    sqz_session **ss = calloc((size_t)n_rows, sizeof *ss);
    double *dt = malloc((size_t)n_rows * STEPS * sizeof *dt);
    int rc = !toks || !ss || !dt ? 2 : 0;
    for (int i = 0; !rc && i < C; i++) toks[i] = ids[(size_t)i % n_ids];
    for (int i = 0; !rc && i < n_rows; i++) rc = !(ss[i] = filled(ctx, m, rows[i].policy, C, prefill, toks));
    for (int k = 0; !rc && k < STEPS; k++)
        for (int i = 0; !rc && i < n_rows; i++) {
            const double t0 = cli_now();
            rc = sqz_session_eval(ss[i], toks + C - STEPS + k, 1, NULL, 0) != SQZ_OK;
            dt[(size_t)i * STEPS + k] = cli_now() - t0;
        }
    for (int i = 0; !rc && i < n_rows; i++) {
        qsort(dt + (size_t)i * STEPS, STEPS, sizeof *dt, cmp_double);
        const double med = dt[(size_t)i * STEPS + STEPS / 2];
        bytes[i] = sqz_session_kv_bytes(ss[i]);
        for (int c = 0; c < N_CTXS; c++)
            if (ctxs[c] == C) rows[i].tps[c] = med > 0 ? 1.0 / med : 0;
    }
    for (int i = 0; ss && i < n_rows; i++) sqz_session_free(ss[i]);
    free(toks), free(ss), free(dt);
    return rc;
}

int cmd_kvbench(sqz_ctx *ctx, const opts *o) {
    if (!o->file) return cli_die("%s", "kvbench needs a text file: -f FILE");
    sqz_model *m;
    int32_t *ids;
    size_t n_ids;
    if (cli_load_model_text(ctx, o, o->file, 0, &m, &ids, &n_ids, NULL)) return 1;
    if (n_ids < 2) {
        sqz_model_free(m);
        sqz_free(ids);
        return cli_die("%s: too few tokens", o->file);
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
                            .kv_prefill = prefill, .kld_base = m, .kld_base_kv = "f32",
                            .kld_cache = o->kld_cache /* the f32 cache's logits once for all rows */ };
        sqz_ppl_result pr;
        const sqz_status st = sqz_perplexity(ctx, m, ids, n_ids, &po, &pr);
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
        for (int c = 0; c < N_CTXS; c++) r->tps[c] = -1;
    }
    size_t *bytes = rc ? NULL : malloc((size_t)(n_specs ? n_specs : 1) * sizeof *bytes);
    if (!rc && !bytes) rc = cli_die("out of memory");
    /* speed and bytes at each decode context; the ratio at --ctx (filled on its own when it is
     * none of them) */
    for (int c = 0; c <= N_CTXS && !rc; c++) {
        const int C = c < N_CTXS ? ctxs[c] : n_ctx;
        if (c < N_CTXS && (C > max_ctx || o->no_decode)) continue;
        if (c == N_CTXS && rows[0].bytes_ctx) break;
        if (!o->json) fprintf(stderr, "kvbench: decode at %d positions\n", C);
        const int dr = decode_round(ctx, m, rows, n_specs, C, prefill, ids, n_ids, bytes);
        if (dr) {
            rc = dr == 2 ? cli_die("out of memory") : cli_fail(ctx);
            break;
        }
        for (int i = 0; i < n_specs; i++) {
            if (c < N_CTXS) rows[i].ratio_at[c] = bytes[i] ? f16_bpt * C / (double)bytes[i] : 0;
            if (C == n_ctx) {
                rows[i].bytes_per_token = (double)bytes[i] / n_ctx, rows[i].bytes_ctx = n_ctx;
                rows[i].ratio = bytes[i] ? f16_bpt * n_ctx / (double)bytes[i] : 0;
            }
        }
    }
    free(bytes);
    /* --no-decode: the fill at --ctx (for the bytes) times its steps too; not reported */
    for (int i = 0; o->no_decode && i < n_specs; i++)
        for (int c = 0; c < N_CTXS; c++) rows[i].tps[c] = -1;
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
