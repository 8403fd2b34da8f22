/* bench_kernels.c - speed of the matrix kernels (src/kernels) on the model's shapes.
 *
 *   build/bench/bench_kernels [--threads-list 1,2] [--cold-mib 256] [--min-ms 40] [--quick]
 *
 * matvec (decode): GB/s = weight bytes / time, for f32/f16/bf16 on the shapes of
 * sqz-llama-26m (rows x cols = 512x512 wq/wo, 128x512 wk/wv, 1536x512 gate/up, 512x1536 down,
 * 4096x512 output) and a large 4096x4096 (f16 only). Variants:
 *   ref/avx2/avx512 - one thread looping y[r] = dot(row r, x) with sqz_dot_get(type, tier)
 *                     (tiers above sqz_isa_best() are skipped);
 *   matvec_Nt       - sqz_matvec with N threads (best tier, the library's own threading).
 * Each is measured "hot" (the same matrix again and again: it sits in cache) and "cold" (a
 * rotation through copies filling --cold-mib, so every call streams from memory as a decode
 * step does, where the model's 52 MB of weights exceed the cache).
 *
 * matmul (prefill): GFLOP/s = 2 * T * rows * cols / time for T = 512 tokens, sqz_matmul with N
 * threads against cblas_sgemm on the same f32 shape (openblas_set_num_threads(N), one call).
 *
 * Every figure is the best of 3 timings of at least --min-ms each. Human table on stderr,
 * one JSON object on stdout.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "formats/types.h"
#include "kernels/kernels.h"

#include "bench_util.h"

enum { MAX_THREAD_COUNTS = 8, MATMUL_T = 512, N_TIERS = 3 };

typedef struct shape {
    int rows, cols;
    const char *what;
    int f16_only;
} shape;

static const shape SHAPES[] = {
    { 512, 512, "wq/wo", 0 },       { 128, 512, "wk/wv", 0 },  { 1536, 512, "gate/up", 0 },
    { 512, 1536, "down", 0 },       { 4096, 512, "output", 0 }, { 4096, 4096, "large", 1 },
};
static const sqz_type TYPES[] = { SQZ_TYPE_F32, SQZ_TYPE_F16, SQZ_TYPE_BF16 };

typedef struct opts {
    int threads[MAX_THREAD_COUNTS];
    int n_threads;
    size_t cold_bytes;
    double min_s;
    int reps;
} opts;

static double r2(double x) { return round(x * 100) / 100; }

static uint64_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}

static float frand(uint64_t *s) { return (float)((double)(rng_next(s) >> 29) / 16777216.0 - 0.5); }

/* Fills n bytes with valid values of type t in [-0.5, 0.5) (no NaN, no subnormals), by
 * repeating a random 64 KiB tile. */
static void fill_type(void *dst, size_t n, sqz_type t) {
    enum { TILE = 1 << 16 };
    unsigned char tile[TILE];
    uint64_t s = 12345;
    for (size_t i = 0; i < TILE;) {
        float f = frand(&s);
        if (t == SQZ_TYPE_F32) {
            memcpy(tile + i, &f, 4);
            i += 4;
        } else {
            uint16_t h = t == SQZ_TYPE_F16 ? sqz_f32_to_f16(f) : sqz_f32_to_bf16(f);
            memcpy(tile + i, &h, 2);
            i += 2;
        }
    }
    for (size_t o = 0; o < n; o += TILE) memcpy((char *)dst + o, tile, n - o < TILE ? n - o : TILE);
}

/* ------------------------------------------------------------------ matvec */

typedef struct mv_job {
    const char *arena; /* n_copies matrices of bytes each, back to back */
    size_t bytes;
    int n_copies;
    sqz_type type;
    int rows, cols;
    const float *x;
    float *y;
    sqz_dot_fn dot;    /* non-NULL: a plain loop with this dot, one thread */
    int threads;       /* else sqz_matvec with this many threads */
} mv_job;

static void mv_call(const mv_job *j, int copy) {
    const char *w = j->arena + (size_t)copy * j->bytes;
    if (j->dot) {
        const size_t rs = sqz_type_row_size(j->type, j->cols);
        for (int r = 0; r < j->rows; r++) j->y[r] = j->dot(w + (size_t)r * rs, j->x, j->cols);
    } else {
        sqz_tensor t = { j->type, j->cols, j->rows, w };
        sqz_matvec(&t, j->x, j->y, j->threads);
    }
}

/* GB/s, best of reps timings of >= min_s each */
static double mv_rate(const mv_job *j, const opts *o) {
    mv_call(j, 0); /* warm up */
    double best = 0;
    int copy = 0;
    for (int r = 0; r < o->reps; r++) {
        long calls = 0;
        const double t0 = now();
        double dt;
        do {
            for (int i = 0; i < 8; i++) {
                mv_call(j, copy);
                if (++copy == j->n_copies) copy = 0;
            }
            calls += 8;
        } while ((dt = now() - t0) < o->min_s);
        const double gbs = (double)j->bytes * (double)calls / dt * 1e-9;
        if (gbs > best) best = gbs;
    }
    return best;
}

/* ------------------------------------------------------------------ matmul */

static double mm_rate(const sqz_tensor *w, const float *x, float *y, int threads, int sgemm,
                      const float *w32, const opts *o) {
    const int T = MATMUL_T, N = (int)w->rows, K = (int)w->cols;
    if (sgemm) openblas_set_num_threads(threads);
    double best = 0;
    for (int r = 0; r <= o->reps; r++) { /* r = 0 warms up */
        long calls = 0;
        const double t0 = now();
        double dt;
        do {
            if (sgemm)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, x, K, w32, K,
                            0.0f, y, N);
            else
                sqz_matmul(w, x, T, y, threads);
            calls++;
        } while ((dt = now() - t0) < o->min_s);
        const double gf = 2.0 * T * N * (double)K * (double)calls / dt * 1e-9;
        if (r > 0 && gf > best) best = gf;
    }
    if (sgemm) openblas_set_num_threads(1);
    return best;
}

/* ------------------------------------------------------------------ main */

static int parse_args(int argc, char **argv, opts *o) {
    o->threads[0] = 1;
    o->threads[1] = 2;
    o->n_threads = 2;
    o->cold_bytes = (size_t)256 << 20;
    o->min_s = 0.04;
    o->reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) {
            o->min_s = 0.01;
            o->reps = 1;
            o->cold_bytes = (size_t)128 << 20;
        } else if (!strcmp(a, "--threads-list") && v) {
            o->n_threads = 0;
            for (const char *p = v; *p && o->n_threads < MAX_THREAD_COUNTS;) {
                char *end;
                long n = strtol(p, &end, 10);
                if (end == p || n <= 0 || n > 1024 || (*end && *end != ',')) {
                    fprintf(stderr, "bench_kernels: bad --threads-list '%s'\n", v);
                    return -1;
                }
                o->threads[o->n_threads++] = (int)n;
                p = *end ? end + 1 : end;
            }
            i++;
        } else if (!strcmp(a, "--cold-mib") && v) {
            o->cold_bytes = (size_t)strtoull(v, NULL, 10) << 20;
            i++;
        } else if (!strcmp(a, "--min-ms") && v) {
            o->min_s = atof(v) * 1e-3;
            i++;
        } else {
            fprintf(stderr, "usage: bench_kernels [--threads-list 1,2] [--cold-mib 256] "
                            "[--min-ms 40] [--quick]\n");
            return -1;
        }
    }
    if (o->n_threads == 0 || o->cold_bytes < ((size_t)1 << 20) || o->min_s <= 0) {
        fprintf(stderr, "bench_kernels: an option is out of range\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    opts o;
    if (parse_args(argc, argv, &o)) return 2;
    sqz_kernels_init();
    const sqz_isa best_isa = sqz_isa_best();
    const cpu_mark mark0 = cpu_now();

    /* the arena: the largest matrix, or copies filling cold_bytes */
    size_t max_bytes = 0;
    for (size_t s = 0; s < sizeof SHAPES / sizeof *SHAPES; s++) {
        size_t b = (size_t)SHAPES[s].rows * (size_t)SHAPES[s].cols * 4;
        if (b > max_bytes) max_bytes = b;
    }
    const size_t arena_bytes = o.cold_bytes > 2 * max_bytes ? o.cold_bytes : 2 * max_bytes;
    char *arena = aligned_alloc(4096, arena_bytes);
    const int max_k = 4096, max_n = 4096;
    float *x = malloc((size_t)MATMUL_T * max_k * sizeof(float));
    float *y = malloc((size_t)MATMUL_T * max_n * sizeof(float));
    float *w32 = malloc((size_t)max_n * max_k * sizeof(float));
    if (!arena || !x || !y || !w32) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        return 1;
    }
    uint64_t seed = 7;
    for (size_t i = 0; i < (size_t)MATMUL_T * max_k; i++) x[i] = frand(&seed);
    memset(y, 0, (size_t)MATMUL_T * max_n * sizeof(float));

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "isa_best", sqz_isa_name(best_isa));
    cJSON_AddStringToObject(root, "openblas_core", openblas_get_corename());
    cJSON_AddNumberToObject(root, "cold_mib", (double)(arena_bytes >> 20));
    cJSON_AddStringToObject(root, "stat", "best of 3 timings");
    cJSON *mvj = cJSON_AddArrayToObject(root, "matvec_gbs");
    cJSON *mmj = cJSON_AddArrayToObject(root, "matmul_gflops");

    fprintf(stderr, "matvec GB/s (weight bytes / time); hot = same matrix, cold = streaming "
                    "through %zu MiB; best ISA %s\n",
            arena_bytes >> 20, sqz_isa_name(best_isa));
    fprintf(stderr, "%-5s %-11s %-8s %-5s", "type", "shape", "what", "");
    for (int t = 0; t < N_TIERS; t++) fprintf(stderr, " %8s", sqz_isa_name((sqz_isa)t));
    for (int i = 0; i < o.n_threads; i++) fprintf(stderr, "  matvec_%dt", o.threads[i]);
    fprintf(stderr, "\n");

    for (size_t ti = 0; ti < sizeof TYPES / sizeof *TYPES; ti++) {
        const sqz_type type = TYPES[ti];
        fill_type(arena, arena_bytes, type);
        for (size_t si = 0; si < sizeof SHAPES / sizeof *SHAPES; si++) {
            const shape *sh = &SHAPES[si];
            if (sh->f16_only && type != SQZ_TYPE_F16) continue;
            const size_t bytes = (size_t)sh->rows * sqz_type_row_size(type, sh->cols);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "type", sqz_type_name(type));
            cJSON_AddNumberToObject(e, "rows", sh->rows);
            cJSON_AddNumberToObject(e, "cols", sh->cols);
            cJSON_AddStringToObject(e, "what", sh->what);
            cJSON_AddNumberToObject(e, "bytes", (double)bytes);
            for (int cold = 0; cold < 2; cold++) {
                mv_job j = { arena, bytes, cold ? (int)(arena_bytes / bytes) : 1, type,
                             sh->rows, sh->cols, x, y, NULL, 1 };
                cJSON *c = cJSON_AddObjectToObject(e, cold ? "cold" : "hot");
                char label[32];
                snprintf(label, sizeof label, "%dx%d", sh->rows, sh->cols);
                fprintf(stderr, "%-5s %-11s %-8s %-5s", sqz_type_name(type), label, sh->what,
                        cold ? "cold" : "hot");
                for (int t = 0; t < N_TIERS; t++) {
                    if (t > (int)best_isa) {
                        fprintf(stderr, " %8s", "-");
                        continue;
                    }
                    j.dot = sqz_dot_get(type, (sqz_isa)t);
                    const double g = mv_rate(&j, &o);
                    cJSON_AddNumberToObject(c, sqz_isa_name((sqz_isa)t), r2(g));
                    fprintf(stderr, " %8.1f", g);
                }
                j.dot = NULL;
                for (int i = 0; i < o.n_threads; i++) {
                    j.threads = o.threads[i];
                    const double g = mv_rate(&j, &o);
                    char k[24];
                    snprintf(k, sizeof k, "matvec_%dt", o.threads[i]);
                    cJSON_AddNumberToObject(c, k, r2(g));
                    fprintf(stderr, " %10.1f", g);
                }
                fprintf(stderr, "\n");
            }
            cJSON_AddItemToArray(mvj, e);
        }
    }

    fprintf(stderr, "\nmatmul GFLOP/s, T = %d tokens: sqz_matmul vs cblas_sgemm (f32, same shape)\n",
            MATMUL_T);
    fprintf(stderr, "%-5s %-11s %-8s", "type", "shape", "what");
    for (int i = 0; i < o.n_threads; i++) fprintf(stderr, "  sqz_%dt sgemm_%dt", o.threads[i], o.threads[i]);
    fprintf(stderr, "\n");
    for (size_t ti = 0; ti < sizeof TYPES / sizeof *TYPES; ti++) {
        const sqz_type type = TYPES[ti];
        fill_type(arena, max_bytes, type);
        for (size_t si = 0; si < sizeof SHAPES / sizeof *SHAPES; si++) {
            const shape *sh = &SHAPES[si];
            if (sh->f16_only && type != SQZ_TYPE_F16) continue;
            const sqz_tensor w = { type, sh->cols, sh->rows, arena };
            for (int r = 0; r < sh->rows; r++) /* the same weights as f32, for sgemm */
                sqz_tensor_row_f32(&w, r, w32 + (size_t)r * sh->cols);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "type", sqz_type_name(type));
            cJSON_AddNumberToObject(e, "T", MATMUL_T);
            cJSON_AddNumberToObject(e, "rows", sh->rows);
            cJSON_AddNumberToObject(e, "cols", sh->cols);
            cJSON_AddStringToObject(e, "what", sh->what);
            cJSON *sq = cJSON_AddObjectToObject(e, "sqz_matmul");
            cJSON *sg = cJSON_AddObjectToObject(e, "cblas_sgemm");
            char label[32];
            snprintf(label, sizeof label, "%dx%d", sh->rows, sh->cols);
            fprintf(stderr, "%-5s %-11s %-8s", sqz_type_name(type), label, sh->what);
            for (int i = 0; i < o.n_threads; i++) {
                char k[16];
                snprintf(k, sizeof k, "%d", o.threads[i]);
                const double a = mm_rate(&w, x, y, o.threads[i], 0, NULL, &o);
                const double b = mm_rate(&w, x, y, o.threads[i], 1, w32, &o);
                cJSON_AddNumberToObject(sq, k, r2(a));
                cJSON_AddNumberToObject(sg, k, r2(b));
                fprintf(stderr, " %7.1f %8.1f", a, b);
            }
            fprintf(stderr, "\n");
            cJSON_AddItemToArray(mmj, e);
        }
    }

    const double others = others_cores(mark0, cpu_now());
    cJSON_AddNumberToObject(root, "other_processes_cores", others < 0 ? -1 : r2(others));
    if (others > 0.1)
        fprintf(stderr, "\nWARNING: other processes used %.2f cores during the run: the numbers "
                        "(above all with 2 threads) are not trustworthy\n", others);

    char *js = cJSON_PrintUnformatted(root);
    if (js) printf("%s\n", js);
    free(js);
    cJSON_Delete(root);
    free(arena);
    free(x);
    free(y);
    free(w32);
    return 0;
}
