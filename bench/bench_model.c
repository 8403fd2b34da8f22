/* bench_model.c - end-to-end speed of one model against this machine's limits.
 *
 *   build/bench/bench_model [MODEL] [--threads-list 1,2] [--reps N] [--prompt 512] [--gen 128]
 *                           [--ppl-tokens 4097] [--ppl-ctx 1024] [--text FILE] [--quick]
 *
 * For each thread count, through the public API (include/sqz.h) only:
 *   prefill  - a PROMPT-token prompt in one sqz_session_eval call on a fresh session (last
 *              position's logits requested), tokens/s;
 *   decode   - GEN single-token evals after that prompt, logits requested, greedy next token;
 *              decode_empty: the same from an empty session (as llama-bench's tg128 measures);
 *   ppl      - sqz_perplexity over the first PPL_TOKENS tokens with n_ctx PPL_CTX, scored
 *              tokens / the time it reports.
 * Each figure is the best of REPS repetitions (the median is reported beside it).
 *
 * The machine's limits, measured in the same run:
 *   bandwidth - memcpy of a 512 MiB buffer, 1 thread and split over OpenMP threads; GB/s counts
 *               bytes read + bytes written (a read-only sum over the buffer is reported too);
 *   sgemm     - OpenBLAS cblas_sgemm, f32, square 1024^3 and the panel shape prefill runs
 *               (M = prompt tokens, N = 64 weight rows, K = dim); with n threads two ways:
 *               "blas_threads" (openblas_set_num_threads(n), one call) and "omp_parallel"
 *               (n OpenMP threads each running single-threaded sgemm on their own matrices,
 *               which is how sqz_matmul uses OpenBLAS).
 * Derived: decode ceiling = copy bandwidth / weight_bytes (every weight is read once per
 * decoded token); with --bw-bracket, each rep's decode from an empty session is also set
 * against copies of the bandwidth buffer just before and just after it (this VM's bandwidth
 * moves by +-25 % between minutes, so a share against a figure measured minutes earlier swings
 * from ~50 % to over 100 %), prefill GFLOP/s = 2 * matmul weights * tokens / time (attention not counted;
 * prefill_gflops_attn adds the causal attention's 2 * 2 * hd * T(T+1)/2 per head and layer).
 *
 * Output: a human table on stderr, one JSON object on stdout.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sqz.h"
#include "bench_util.h"

enum { MAX_THREAD_COUNTS = 16, MAX_REPS = 64, PANEL_ROWS = 64 };

typedef struct opts {
    const char *model;
    const char *text;
    const char *llamacpp;
    int threads[MAX_THREAD_COUNTS];
    int n_threads;
    int reps;
    int warmup; /* --warmup: one short untimed prefill + decode first (llama-bench does one) */
    int prompt;
    int gen;
    int ppl_ctx;
    size_t ppl_tokens;
    size_t bw_bytes;
    int bw_bracket; /* --bw-bracket: copy bandwidth measured around every decode0 rep */
} opts;

typedef struct stat3 {
    double best, median;
} stat3;

typedef struct run_result {
    int threads;
    stat3 prefill, decode, decode_empty, ppl; /* tokens/s */
    stat3 decode_empty_share;                /* --bw-bracket: % of the bracketing copies' ceiling */
    double ppl_value;
} run_result;

/* best = largest (rates), median of n values */
static stat3 summarize(double *v, int n) {
    stat3 s = { 0, 0 };
    if (n <= 0) return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.best = v[n - 1];
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    return s;
}

static void usage(void) {
    fprintf(stderr,
            "usage: bench_model [MODEL] [--threads-list 1,2] [--reps N] [--prompt 512] [--gen 128]\n"
            "                   [--ppl-tokens 4097] [--ppl-ctx 1024] [--text FILE]\n"
            "                   [--llamacpp FILE] [--bw-mib 512] [--bw-bracket] [--warmup] [--quick]\n");
}

static int parse_args(int argc, char **argv, opts *o, char *bufs, size_t cap) {
    const char *shared = getenv("SQZ_SHARED");
    if (!shared || !*shared) shared = "../shared";
    snprintf(bufs, cap / 3, "%s/models/sqz-llama-26m", shared);
    snprintf(bufs + cap / 3, cap / 3, "%s/data/domains/sotu.test.txt", shared);
    snprintf(bufs + 2 * (cap / 3), cap / 3, "%s/models/gguf/llamacpp.json", shared);
    o->model = bufs;
    o->text = bufs + cap / 3;
    o->llamacpp = bufs + 2 * (cap / 3);
    o->threads[0] = 1;
    o->threads[1] = 2;
    o->n_threads = 2;
    o->reps = 3;
    o->prompt = 512;
    o->gen = 128;
    o->ppl_ctx = 1024;
    o->ppl_tokens = 4 * 1024 + 1;
    o->bw_bytes = (size_t)512 << 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--warmup")) {
            o->warmup = 1;
            continue;
        }
        if (!strcmp(a, "--bw-bracket")) {
            o->bw_bracket = 1;
            continue;
        }
        if (!strcmp(a, "--quick")) {
            o->reps = 1;
            o->ppl_tokens = 1024 + 1;
            o->bw_bytes = (size_t)128 << 20;
            continue;
        }
        if (a[0] != '-') {
            o->model = a;
            continue;
        }
        if (!v) {
            usage();
            return -1;
        }
        i++;
        if (!strcmp(a, "--threads-list")) {
            o->n_threads = 0;
            for (const char *p = v; *p && o->n_threads < MAX_THREAD_COUNTS;) {
                char *end;
                long n = strtol(p, &end, 10);
                if (end == p || n <= 0 || n > 1024) {
                    fprintf(stderr, "bench_model: bad --threads-list '%s'\n", v);
                    return -1;
                }
                o->threads[o->n_threads++] = (int)n;
                p = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') {
                    fprintf(stderr, "bench_model: bad --threads-list '%s'\n", v);
                    return -1;
                }
            }
        } else if (!strcmp(a, "--reps")) {
            o->reps = atoi(v);
        } else if (!strcmp(a, "--prompt")) {
            o->prompt = atoi(v);
        } else if (!strcmp(a, "--gen")) {
            o->gen = atoi(v);
        } else if (!strcmp(a, "--ppl-tokens")) {
            o->ppl_tokens = (size_t)strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--ppl-ctx")) {
            o->ppl_ctx = atoi(v);
        } else if (!strcmp(a, "--text")) {
            o->text = v;
        } else if (!strcmp(a, "--llamacpp")) {
            o->llamacpp = v;
        } else if (!strcmp(a, "--bw-mib")) {
            o->bw_bytes = (size_t)strtoull(v, NULL, 10) << 20;
        } else {
            usage();
            return -1;
        }
    }
    if (o->reps < 1 || o->reps > MAX_REPS || o->prompt < 1 || o->gen < 0 || o->ppl_ctx < 2 ||
        (o->ppl_tokens < 2 && o->ppl_tokens != 0) || o->bw_bytes < ((size_t)1 << 20) || o->n_threads == 0) {
        fprintf(stderr, "bench_model: an option is out of range\n");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ machine limits */

/* memcpy of bytes, split over n OpenMP threads; GB/s of bytes read + written, best of reps. */
static double bw_copy(char *dst, const char *src, size_t bytes, int n, int reps) {
    double best = 0;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
#pragma omp parallel num_threads(n)
        {
            const int nt = omp_get_num_threads(), id = omp_get_thread_num();
            const size_t chunk = (bytes / (size_t)nt) & ~(size_t)4095;
            const size_t off = (size_t)id * chunk;
            const size_t len = id == nt - 1 ? bytes - off : chunk;
            memcpy(dst + off, src + off, len);
        }
        const double dt = now() - t0;
        const double gbs = 2.0 * (double)bytes / dt * 1e-9;
        if (gbs > best) best = gbs;
    }
    return best;
}

/* A read-only pass (what decode does to weights): XOR of the widest words the CPU loads (64
 * bytes with AVX-512, else 32), 4 independent accumulators, one software prefetch per line 4 KB
 * ahead, split over n threads; GB/s of bytes read, best of reps. The widest loads matter: on an
 * AVX-512 Xeon the 32-byte loop read ~25 GB/s at 2 threads where 64-byte loads read ~33, and a
 * ceiling the kernels can beat is no ceiling. */
typedef unsigned long long v4u64 __attribute__((vector_size(32)));
typedef unsigned long long v8u64 __attribute__((vector_size(64)));

static unsigned long long read_part32(const char *src, size_t w0, size_t w1) {
    const v4u64 *p = (const v4u64 *)src;
    v4u64 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
    for (size_t i = w0; i < w1; i += 4) {
        __builtin_prefetch(&p[i + 128]);
        __builtin_prefetch(&p[i + 130]);
        a0 ^= p[i];
        a1 ^= p[i + 1];
        a2 ^= p[i + 2];
        a3 ^= p[i + 3];
    }
    v4u64 a = a0 ^ a1 ^ a2 ^ a3;
    return a[0] ^ a[1] ^ a[2] ^ a[3];
}

/* w0, w1 in 32-byte words, multiples of 8 */
__attribute__((target("avx512f"))) static unsigned long long read_part64(const char *src, size_t w0, size_t w1) {
    const v8u64 *p = (const v8u64 *)src;
    v8u64 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
    for (size_t i = w0 / 2; i < w1 / 2; i += 4) {
        __builtin_prefetch(&p[i + 64]);
        __builtin_prefetch(&p[i + 65]);
        __builtin_prefetch(&p[i + 66]);
        __builtin_prefetch(&p[i + 67]);
        a0 ^= p[i];
        a1 ^= p[i + 1];
        a2 ^= p[i + 2];
        a3 ^= p[i + 3];
    }
    v8u64 a = a0 ^ a1 ^ a2 ^ a3;
    return a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
}

static double bw_read(const char *src, size_t bytes, int n, int reps, unsigned long long *sink) {
    const int wide = __builtin_cpu_supports("avx512f");
    double best = 0;
    for (int r = 0; r < reps; r++) {
        unsigned long long acc_all = 0;
        const double t0 = now();
#pragma omp parallel num_threads(n) reduction(^ : acc_all)
        {
            const int nt = omp_get_num_threads(), id = omp_get_thread_num();
            const size_t words = bytes / sizeof(v4u64);
            const size_t chunk = (words / (size_t)nt) & ~(size_t)7;
            const size_t w0 = (size_t)id * chunk;
            const size_t w1 = id == nt - 1 ? (words & ~(size_t)7) : w0 + chunk;
            acc_all ^= wide ? read_part64(src, w0, w1) : read_part32(src, w0, w1);
        }
        const double dt = now() - t0;
        *sink ^= acc_all;
        const double gbs = (double)bytes / dt * 1e-9;
        if (gbs > best) best = gbs;
    }
    return best;
}

static void fill_rand(float *p, size_t n, unsigned *seed) {
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
    }
}

/* sgemm C[M][N] = A[M][K] . B[N][K]^T (the layout sqz_matmul uses), GFLOP/s, best of reps,
 * each rep running `calls` products per thread (so that one rep lasts long enough).
 * omp_parallel: n threads, each with its own matrices and single-threaded OpenBLAS;
 * otherwise one call with openblas_set_num_threads(n). */
static double sgemm_rate(int M, int N, int K, int n, int omp_parallel, int calls, int reps) {
    const int copies = omp_parallel ? n : 1;
    const size_t sa = (size_t)M * K, sb = (size_t)N * K, sc = (size_t)M * N;
    float *a = malloc(sa * copies * sizeof(float));
    float *b = malloc(sb * copies * sizeof(float));
    float *c = malloc(sc * copies * sizeof(float));
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return 0;
    }
    unsigned seed = 1;
    fill_rand(a, sa * copies, &seed);
    fill_rand(b, sb * copies, &seed);
    memset(c, 0, sc * copies * sizeof(float));
    openblas_set_num_threads(omp_parallel ? 1 : n);
    double best = 0;
    for (int r = 0; r <= reps; r++) { /* rep 0 warms up */
        const double t0 = now();
        if (omp_parallel) {
#pragma omp parallel num_threads(n)
            {
                const int id = omp_get_thread_num();
                for (int i = 0; i < calls; i++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f,
                                a + sa * id, K, b + sb * id, K, 0.0f, c + sc * id, N);
            }
        } else {
            for (int i = 0; i < calls; i++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K,
                            0.0f, c, N);
        }
        const double dt = now() - t0;
        const double gf = 2.0 * M * N * (double)K * calls * copies / dt * 1e-9;
        if (r > 0 && gf > best) best = gf;
    }
    openblas_set_num_threads(1); /* what the library expects (sqz_kernels_init) */
    free(a);
    free(b);
    free(c);
    return best;
}

typedef struct machine {
    int n;                 /* thread counts measured */
    int threads[MAX_THREAD_COUNTS];
    double copy_gbs[MAX_THREAD_COUNTS];
    double read_gbs[MAX_THREAD_COUNTS];
    double sq_blas[MAX_THREAD_COUNTS], sq_omp[MAX_THREAD_COUNTS];       /* 1024^3 */
    double panel_blas[MAX_THREAD_COUNTS], panel_omp[MAX_THREAD_COUNTS]; /* T x 64 x dim */
    int panel_m, panel_k;
} machine;

/* --bw-bracket's buffers (NULL src: off) */
typedef struct bw_buffers {
    char *src, *dst;
    size_t bytes;
} bw_buffers;

/* keep: where the bandwidth buffers go when --bw-bracket wants them again (else freed) */
static int measure_machine(const opts *o, int dim, machine *m, bw_buffers *keep) {
    memset(m, 0, sizeof *m);
    m->n = o->n_threads;
    memcpy(m->threads, o->threads, sizeof m->threads);
    const size_t bytes = o->bw_bytes;
    char *src = aligned_alloc(4096, bytes), *dst = aligned_alloc(4096, bytes);
    if (!src || !dst) {
        free(src);
        free(dst);
        fprintf(stderr, "bench_model: cannot allocate 2 x %zu MiB for the bandwidth test\n",
                bytes >> 20);
        return -1;
    }
    /* touch every page (in parallel, so pages are spread as the threads will use them) */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < bytes; i += 4096) {
        src[i] = (char)i;
        dst[i] = 0;
    }
    memset(src, 1, bytes);
    unsigned long long sink = 0;
    for (int i = 0; i < m->n; i++) {
        m->copy_gbs[i] = bw_copy(dst, src, bytes, o->threads[i], 5);
        m->read_gbs[i] = bw_read(src, bytes, o->threads[i], 5, &sink);
    }
    if (keep) {
        *keep = (bw_buffers){ src, dst, bytes };
    } else {
        free(src);
        free(dst);
    }
    if (sink == 42) fputc(' ', stderr); /* keep the read loop alive */
    m->panel_m = o->prompt;
    m->panel_k = dim;
    /* calls per rep: about 2 GFLOP per thread and rep */
    const double panel_flops = 2.0 * o->prompt * PANEL_ROWS * (double)dim;
    int panel_calls = (int)(2e9 / panel_flops);
    if (panel_calls < 1) panel_calls = 1;
    for (int i = 0; i < m->n; i++) {
        const int n = o->threads[i];
        m->sq_blas[i] = sgemm_rate(1024, 1024, 1024, n, 0, 1, 5);
        m->sq_omp[i] = sgemm_rate(1024, 1024, 1024, n, 1, 1, 5);
        m->panel_blas[i] = sgemm_rate(o->prompt, PANEL_ROWS, dim, n, 0, panel_calls, 3);
        m->panel_omp[i] = sgemm_rate(o->prompt, PANEL_ROWS, dim, n, 1, panel_calls, 3);
    }
    return 0;
}

/* ------------------------------------------------------------------ model runs */

static int32_t *load_tokens(sqz_ctx *ctx, const sqz_model *model, const opts *o, size_t need,
                            size_t *n_out, const char **source) {
    int32_t *ids = NULL;
    size_t n = 0;
    FILE *f = fopen(o->text, "rb");
    if (f) {
        /* tokenize a prefix that surely holds `need` tokens (>= 8 bytes a token), else all */
        size_t cap = need * 8 + 4096;
        char *buf = malloc(cap);
        size_t len = buf ? fread(buf, 1, cap, f) : 0;
        fclose(f);
        if (buf && sqz_tokenize(ctx, model, buf, len, 0, &ids, &n) != SQZ_OK) {
            fprintf(stderr, "bench_model: tokenizing %s failed: %s\n", o->text,
                    sqz_ctx_error(ctx));
            ids = NULL;
            n = 0;
        }
        free(buf);
        *source = o->text;
    }
    sqz_model_info info;
    sqz_model_get_info(model, &info);
    if (n < need) { /* missing file or too short: fill with random valid ids */
        int32_t *all = malloc(need * sizeof *all);
        if (!all) {
            sqz_free(ids);
            return NULL;
        }
        if (n) memcpy(all, ids, n * sizeof *all);
        uint64_t st = 0x9E3779B97F4A7C15ull;
        for (size_t i = n; i < need; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            all[i] = (int32_t)((st >> 33) % (uint64_t)info.vocab_size);
        }
        if (!n) *source = "random ids";
        sqz_free(ids);
        ids = all;
        n = need;
    }
    *n_out = n;
    return ids;
}

static int run_model(sqz_ctx *ctx, const sqz_model *model, const opts *o, const int32_t *toks,
                     int threads, const bw_buffers *bw, run_result *res) {
    sqz_model_info info;
    sqz_model_get_info(model, &info);
    sqz_ctx_set_threads(ctx, threads);
    res->threads = threads;
    res->ppl_value = 0;
    double pf[MAX_REPS], dc[MAX_REPS], d0[MAX_REPS], pp[MAX_REPS], share[MAX_REPS];
    float *logits = malloc((size_t)info.vocab_size * sizeof(float));
    if (!logits) return -1;
    const sqz_sampler_opts greedy = { 0.0f, 1.0f, 0 };
    uint64_t rng;
    sqz_rng_seed(&rng, 0);
    if (o->warmup) { /* thread team, scratch buffers, the weights' first touch: untimed */
        sqz_session *s = NULL;
        const int n = o->prompt < 64 ? o->prompt : 64;
        int ok = sqz_session_new(ctx, model, n + 8, &s) == SQZ_OK &&
                 sqz_session_eval(s, toks, n, logits, 0) == SQZ_OK;
        for (int i = 0; ok && i < 8; i++) ok = sqz_session_eval(s, &toks[i], 1, logits, 0) == SQZ_OK;
        sqz_session_free(s);
        if (!ok) goto fail;
    }
    for (int r = 0; r < o->reps; r++) {
        sqz_session *s = NULL;
        if (sqz_session_new(ctx, model, o->prompt + o->gen, &s) != SQZ_OK) goto fail;
        double t0 = now();
        if (sqz_session_eval(s, toks, o->prompt, logits, 0) != SQZ_OK) {
            sqz_session_free(s);
            goto fail;
        }
        pf[r] = o->prompt / (now() - t0);
        t0 = now();
        for (int i = 0; i < o->gen; i++) {
            int32_t next = sqz_sample(&greedy, logits, info.vocab_size, &rng);
            if (sqz_session_eval(s, &next, 1, logits, 0) != SQZ_OK) {
                sqz_session_free(s);
                goto fail;
            }
        }
        dc[r] = o->gen ? o->gen / (now() - t0) : 0;

        /* decode from position 0: the first token is the prompt's, then greedy */
        sqz_session_reset(s);
        int32_t next = toks[0];
        const double copy0 = bw->src ? bw_copy(bw->dst, bw->src, bw->bytes, threads, 2) : 0;
        t0 = now();
        for (int i = 0; i < o->gen; i++) {
            if (sqz_session_eval(s, &next, 1, logits, 0) != SQZ_OK) {
                sqz_session_free(s);
                goto fail;
            }
            next = sqz_sample(&greedy, logits, info.vocab_size, &rng);
        }
        d0[r] = o->gen ? o->gen / (now() - t0) : 0;
        if (bw->src) { /* the ceiling from the copies just before and just after */
            const double copy1 = bw_copy(bw->dst, bw->src, bw->bytes, threads, 2);
            share[r] = 100 * d0[r] * (double)info.weight_bytes / (0.5 * (copy0 + copy1) * 1e9);
        } else {
            share[r] = 0;
        }
        sqz_session_free(s);

        pp[r] = 0;
        if (!o->ppl_tokens) continue; /* --ppl-tokens 0: no perplexity run */
        sqz_ppl_opts po = { .n_ctx = o->ppl_ctx, .max_tokens = o->ppl_tokens };
        sqz_ppl_result pr;
        if (sqz_perplexity(ctx, model, toks, o->ppl_tokens, &po, &pr) != SQZ_OK) goto fail;
        pp[r] = pr.seconds > 0 ? (double)pr.tokens / pr.seconds : 0;
        res->ppl_value = pr.ppl;
    }
    res->prefill = summarize(pf, o->reps);
    res->decode = summarize(dc, o->reps);
    res->decode_empty = summarize(d0, o->reps);
    res->decode_empty_share = summarize(share, o->reps);
    res->ppl = summarize(pp, o->reps);
    free(logits);
    return 0;
fail:
    fprintf(stderr, "bench_model: %s\n", sqz_ctx_error(ctx));
    free(logits);
    return -1;
}

/* ------------------------------------------------------------------ output */

static cJSON *load_llamacpp_speed(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = len > 0 ? malloc((size_t)len + 1) : NULL;
    cJSON *out = NULL;
    if (buf && fread(buf, 1, (size_t)len, f) == (size_t)len) {
        buf[len] = 0;
        cJSON *root = cJSON_Parse(buf);
        cJSON *sp = cJSON_DetachItemFromObject(root, "speed_2_threads");
        out = sp;
        cJSON_Delete(root);
    }
    free(buf);
    fclose(f);
    return out;
}

static cJSON *per_threads(const machine *m, const double *v) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < m->n; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", m->threads[i]);
        cJSON_AddNumberToObject(o, k, round(v[i] * 100) / 100);
    }
    return o;
}

static double r2(double x) { return round(x * 100) / 100; }

static double max2(double a, double b) { return a > b ? a : b; }

int main(int argc, char **argv) {
    opts o;
    char paths[3 * 1024];
    if (parse_args(argc, argv, &o, paths, sizeof paths)) return 2;

    sqz_ctx *ctx = sqz_ctx_new();
    if (!ctx) return 1;
    sqz_model *model = NULL;
    double t0 = now();
    if (sqz_model_load(ctx, o.model, NULL, &model) != SQZ_OK) {
        fprintf(stderr, "bench_model: %s\n", sqz_ctx_error(ctx));
        sqz_ctx_free(ctx);
        return 1;
    }
    const double load_s = now() - t0;
    sqz_model_info info;
    sqz_model_get_info(model, &info);
    if (o.prompt + o.gen > (info.max_seq_len > 0 ? info.max_seq_len : 1 << 20))
        fprintf(stderr, "bench_model: note: prompt + gen exceeds the trained context %d\n",
                info.max_seq_len);

    const size_t need = o.ppl_tokens > (size_t)o.prompt ? o.ppl_tokens : (size_t)o.prompt;
    size_t n_toks = 0;
    const char *tok_source = "random ids";
    int32_t *toks = load_tokens(ctx, model, &o, need, &n_toks, &tok_source);
    if (!toks) {
        fprintf(stderr, "bench_model: out of memory\n");
        return 1;
    }

    /* matmul weights a token goes through in prefill (output matrix: last position only) */
    const double D = info.dim, F = info.hidden_dim, hd = info.head_dim;
    const double qd = info.n_heads * hd, kvd = info.n_kv_heads * hd;
    const double per_layer = D * qd + 2 * D * kvd + qd * D + 3 * D * F;
    const double mm_params = per_layer * info.n_layers;
    const double T = o.prompt;
    const double prefill_flops = 2 * mm_params * T;
    const double attn_flops = (double)info.n_layers * info.n_heads * 2.0 * 2.0 * hd * T * (T + 1) / 2;
    /* KV cache bytes one decoded token reads, on average over the generated positions (f32) */
    const double kv_bytes = 2.0 * info.n_layers * kvd * 4 * (o.prompt + o.gen / 2.0);

    const cpu_mark mark0 = cpu_now();
    machine mach;
    fprintf(stderr, "bench_model: measuring the machine (bandwidth, sgemm)...\n");
    bw_buffers bb = { NULL, NULL, o.bw_bytes };
    if (measure_machine(&o, info.dim, &mach, o.bw_bracket ? &bb : NULL)) return 1;
    run_result runs[MAX_THREAD_COUNTS];
    for (int i = 0; i < o.n_threads; i++) {
        fprintf(stderr, "bench_model: %d thread(s)...\n", o.threads[i]);
        if (run_model(ctx, model, &o, toks, o.threads[i], &bb, &runs[i])) return 1;
    }
    free(bb.src), free(bb.dst);

    const double others = others_cores(mark0, cpu_now());

    /* ---- human table */
    fprintf(stderr, "\nmodel %s: %s %s, %d layers, dim %d, ffn %d, vocab %d, %.1fM params, "
                    "%.1f MB weights (loaded in %.2f s)\n",
            o.model, info.arch, info.weight_type, info.n_layers, info.dim, info.hidden_dim,
            info.vocab_size, (double)info.n_params / 1e6, (double)info.weight_bytes / 1e6, load_s);
    fprintf(stderr, "tokens: %s; prompt %d, gen %d, ppl %zu tokens at n_ctx %d; best of %d reps "
                    "(median in JSON)\n",
            tok_source, o.prompt, o.gen, o.ppl_tokens, o.ppl_ctx, o.reps);
    fprintf(stderr, "openblas core: %s\n", openblas_get_corename());
    if (others > 0.1)
        fprintf(stderr, "WARNING: other processes used %.2f cores during the run: the numbers "
                        "(above all with 2 threads) are not trustworthy\n", others);
    fprintf(stderr, "\n");
    fprintf(stderr, "%-8s %10s %10s %14s %16s %16s %16s\n", "threads", "copy GB/s", "read GB/s",
            "sgemm 1024^3", "sgemm 1024 omp", "sgemm panel", "sgemm panel omp");
    for (int i = 0; i < mach.n; i++)
        fprintf(stderr, "%-8d %10.1f %10.1f %14.1f %16.1f %16.1f %16.1f\n", mach.threads[i],
                mach.copy_gbs[i], mach.read_gbs[i], mach.sq_blas[i], mach.sq_omp[i],
                mach.panel_blas[i], mach.panel_omp[i]);
    fprintf(stderr, "(sgemm in GFLOP/s; panel = %d x %d x %d, the shape prefill runs)\n\n",
            mach.panel_m, PANEL_ROWS, mach.panel_k);
    fprintf(stderr, "%-8s %12s %11s %12s %11s %11s %9s %14s %10s %10s\n", "threads",
            "prefill t/s", "decode t/s", "decode0 t/s", "ppl t/s", "ceiling t/s", "decode %",
            "prefill GF/s", "% sgemm", "% panel");

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", o.model);
    cJSON_AddStringToObject(root, "weight_type", info.weight_type);
    cJSON_AddNumberToObject(root, "n_params", (double)info.n_params);
    cJSON_AddNumberToObject(root, "matmul_params", mm_params);
    cJSON_AddNumberToObject(root, "weight_bytes", (double)info.weight_bytes);
    cJSON_AddStringToObject(root, "tokens_from", tok_source);
    cJSON_AddNumberToObject(root, "prompt", o.prompt);
    cJSON_AddNumberToObject(root, "gen", o.gen);
    cJSON_AddNumberToObject(root, "ppl_tokens", (double)o.ppl_tokens);
    cJSON_AddNumberToObject(root, "ppl_ctx", o.ppl_ctx);
    cJSON_AddNumberToObject(root, "reps", o.reps);
    cJSON_AddStringToObject(root, "stat", "best of reps (fields *_median: median)");
    cJSON_AddNumberToObject(root, "other_processes_cores", others < 0 ? -1 : r2(others));
    cJSON *mj = cJSON_AddObjectToObject(root, "machine");
    cJSON_AddStringToObject(mj, "openblas_core", openblas_get_corename());
    cJSON *bw = cJSON_AddObjectToObject(mj, "bandwidth_gbs");
    cJSON_AddNumberToObject(bw, "buffer_mib", (double)(o.bw_bytes >> 20));
    cJSON_AddItemToObject(bw, "copy", per_threads(&mach, mach.copy_gbs));
    cJSON_AddItemToObject(bw, "read", per_threads(&mach, mach.read_gbs));
    cJSON_AddStringToObject(bw, "how", "copy: memcpy, (bytes read + written) / time; "
                                       "read: XOR over the buffer, bytes / time; best of 5");
    cJSON *sg = cJSON_AddObjectToObject(mj, "sgemm_gflops");
    cJSON *sq = cJSON_AddObjectToObject(sg, "square_1024");
    cJSON_AddItemToObject(sq, "blas_threads", per_threads(&mach, mach.sq_blas));
    cJSON_AddItemToObject(sq, "omp_parallel", per_threads(&mach, mach.sq_omp));
    char pname[64];
    snprintf(pname, sizeof pname, "panel_%dx%dx%d", mach.panel_m, PANEL_ROWS, mach.panel_k);
    cJSON *pn = cJSON_AddObjectToObject(sg, pname);
    cJSON_AddItemToObject(pn, "blas_threads", per_threads(&mach, mach.panel_blas));
    cJSON_AddItemToObject(pn, "omp_parallel", per_threads(&mach, mach.panel_omp));
    cJSON_AddStringToObject(sg, "how",
                            "C[M][N] = A[M][K] B[N][K]^T; blas_threads: openblas_set_num_threads(n), "
                            "one call; omp_parallel: n OpenMP threads each running 1-thread "
                            "sgemm on its own matrices (as sqz_matmul does); best of reps");

    cJSON *rj = cJSON_AddArrayToObject(root, "runs");
    for (int i = 0; i < o.n_threads; i++) {
        const run_result *r = &runs[i];
        const double ceil_tps = mach.copy_gbs[i] * 1e9 / (double)info.weight_bytes;
        const double ceil_kv = mach.copy_gbs[i] * 1e9 / ((double)info.weight_bytes + kv_bytes);
        const double pf_gf = prefill_flops * r->prefill.best / T * 1e-9;
        const double pf_gf_attn = (prefill_flops + attn_flops) * r->prefill.best / T * 1e-9;
        const double sgemm = max2(mach.sq_blas[i], mach.sq_omp[i]);
        const double panel = max2(mach.panel_blas[i], mach.panel_omp[i]);
        const double dec_pct = 100 * r->decode.best / ceil_tps;
        fprintf(stderr,
                "%-8d %12.1f %11.1f %12.1f %11.1f %11.1f %8.1f%% %14.1f %9.1f%% %9.1f%%\n",
                r->threads, r->prefill.best, r->decode.best, r->decode_empty.best, r->ppl.best,
                ceil_tps, dec_pct, pf_gf, 100 * pf_gf / sgemm, 100 * pf_gf / panel);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "threads", r->threads);
        cJSON_AddNumberToObject(e, "prefill_tps", r2(r->prefill.best));
        cJSON_AddNumberToObject(e, "prefill_tps_median", r2(r->prefill.median));
        cJSON_AddNumberToObject(e, "decode_tps", r2(r->decode.best));
        cJSON_AddNumberToObject(e, "decode_tps_median", r2(r->decode.median));
        cJSON_AddNumberToObject(e, "decode_empty_tps", r2(r->decode_empty.best));
        cJSON_AddNumberToObject(e, "decode_empty_pct_of_ceiling",
                                r2(100 * r->decode_empty.best / ceil_tps));
        if (o.bw_bracket) { /* each rep against the copies around it; median and best over reps */
            cJSON_AddNumberToObject(e, "decode_empty_pct_of_bracketing_copy_median", r2(r->decode_empty_share.median));
            cJSON_AddNumberToObject(e, "decode_empty_pct_of_bracketing_copy_best", r2(r->decode_empty_share.best));
            fprintf(stderr, "%-8d decode0 against the copy bandwidth measured around each rep: median %.1f%%, "
                            "best %.1f%% of %d reps\n", r->threads, r->decode_empty_share.median,
                    r->decode_empty_share.best, o.reps);
        }
        cJSON_AddNumberToObject(e, "ppl_tps", r2(r->ppl.best));
        cJSON_AddNumberToObject(e, "ppl_tps_median", r2(r->ppl.median));
        cJSON_AddNumberToObject(e, "ppl", round(r->ppl_value * 1e4) / 1e4);
        cJSON_AddNumberToObject(e, "decode_ceiling_tps", r2(ceil_tps));
        cJSON_AddNumberToObject(e, "decode_pct_of_ceiling", r2(dec_pct));
        cJSON_AddNumberToObject(e, "decode_ceiling_with_kv_tps", r2(ceil_kv));
        cJSON_AddNumberToObject(e, "prefill_gflops", r2(pf_gf));
        cJSON_AddNumberToObject(e, "prefill_gflops_with_attn", r2(pf_gf_attn));
        cJSON_AddNumberToObject(e, "prefill_pct_of_sgemm", r2(100 * pf_gf / sgemm));
        cJSON_AddNumberToObject(e, "prefill_pct_of_sgemm_panel", r2(100 * pf_gf / panel));
        cJSON_AddItemToArray(rj, e);
    }
    fprintf(stderr, "\ndecode: %d tokens after the %d-token prompt; decode0: from an empty "
                    "context (as llama-bench tg);\n"
                    "ceiling = copy bandwidth / weight bytes (%.1f MB; KV adds %.1f MB a token "
                    "at this context); prefill GF/s = 2 * %.1fM matmul weights * tokens / s "
                    "(no attention);\n%% sgemm = of the better 1024^3 sgemm rate at that thread "
                    "count, %% panel = of the %s shape.\n",
            o.gen, o.prompt, (double)info.weight_bytes / 1e6, kv_bytes / 1e6, mm_params / 1e6, pname);

    /* llama.cpp's figures are for sqz-llama-26m: shown only beside that model */
    cJSON *lc = strstr(o.model, "sqz-llama-26m") ? load_llamacpp_speed(o.llamacpp) : NULL;
    if (lc) {
        cJSON_AddItemToObject(root, "llama_cpp_2_threads", lc);
        fprintf(stderr, "llama.cpp, 2 threads (%s):", o.llamacpp);
        cJSON *tps = cJSON_GetObjectItem(lc, "tokens_per_s");
        cJSON *it;
        cJSON_ArrayForEach(it, tps) {
            cJSON *pp = cJSON_GetObjectItem(it, "pp512"), *tg = cJSON_GetObjectItem(it, "tg128");
            fprintf(stderr, "  %s pp512 %g tg128 %g;", it->string,
                    cJSON_IsNumber(pp) ? pp->valuedouble : 0,
                    cJSON_IsNumber(tg) ? tg->valuedouble : 0);
        }
        fprintf(stderr, "\n");
        /* sqz's 2-thread run against llama.cpp's F16 (sqz's decode0 is the like of tg128) */
        cJSON *f16 = cJSON_GetObjectItem(tps, "F16");
        cJSON *pp = cJSON_GetObjectItem(f16, "pp512"), *tg = cJSON_GetObjectItem(f16, "tg128");
        for (int i = 0; i < o.n_threads; i++) {
            if (runs[i].threads != 2 || !cJSON_IsNumber(pp) || !cJSON_IsNumber(tg)) continue;
            const double a = runs[i].prefill.best / pp->valuedouble;
            const double b = runs[i].decode_empty.best / tg->valuedouble;
            cJSON *cmp = cJSON_AddObjectToObject(lc, "sqz_2_threads_over_llama_cpp_f16");
            cJSON_AddNumberToObject(cmp, "prefill", r2(a));
            cJSON_AddNumberToObject(cmp, "decode_empty", r2(b));
            fprintf(stderr, "sqz / llama.cpp F16 at 2 threads: prefill %.2fx, decode0 %.2fx\n", a, b);
        }
    }

    char *js = cJSON_PrintUnformatted(root);
    if (js) printf("%s\n", js);
    free(js);
    cJSON_Delete(root);
    sqz_free(toks);
    sqz_model_free(model);
    sqz_ctx_free(ctx);
    return 0;
}
