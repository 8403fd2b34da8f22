/* bench_qkernels.c - decode speed of the quantized dot products (src/kernels/qdot_*.c) against
 * f16, per type.
 *
 *   build/bench/bench_qkernels [--threads-list 1,2] [--cold-mib 256] [--min-ms 40] [--quick]
 *                              [--types q4_0,q4_k,...] [--packed-only]
 *
 * For each type (f16 as the yardstick, then llama.cpp's quantized types) and each shape
 * (rows x cols = 4096x4096, out of cache; 512x1536, sqz-llama-26m's down projection):
 *   ref/avx2/avx512 - one thread looping y[r] = vec_dot_q(row r, xq) with that tier's kernel
 *                     (x quantized once outside the loop; f16: the f32-x dot of the tier);
 *   matvec_Nt       - sqz_matvec with N threads (quantizes x itself, best tier);
 *   packed_Nt       - the matrix repacked in 16-row groups (formats/x16.h) as the runtime runs
 *                     it where sqz_x16_worth_it (else "-"): x quantized once, the groups split
 *                     over N threads as decode's team splits them; GB/s of the packed bytes.
 * GB/s = weight bytes / time. Each is measured "cold" (calls rotate through copies filling
 * --cold-mib, so the weights stream from DRAM as in a real decode step) and, for the small
 * shape, "hot" too (the same matrix every call: the kernel's compute speed).
 * speedup_vs_f16 = f16's time / the type's time for the same shape, variant and threads: the
 * goal is that it tracks f16 bytes / type bytes (3.56 for Q4_0).
 * Best of 3 timings of at least --min-ms each; human table on stderr, one JSON object on
 * stdout. The weights are random bytes with sane f16 scales (speed does not depend on them).
 * other_processes_cores (in each type's last entry): the CPU other processes took meanwhile;
 * above ~0.1 that type's figures are noise, the 2-thread ones above all.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "formats/types.h"
#include "formats/x16.h"
#include "kernels/kernels.h"
#include "kernels/x16.h"

#include "bench_util.h"

static double r2(double x) { return round(x * 100) / 100; }

enum { MAX_THREAD_COUNTS = 8, N_TIERS = 3, MAX_TYPES = 16 };

static const sqz_type ALL_TYPES[] = {
    SQZ_TYPE_F16,  SQZ_TYPE_Q8_0, SQZ_TYPE_Q6_K,   SQZ_TYPE_Q5_K,   SQZ_TYPE_Q5_0, SQZ_TYPE_Q5_1,
    SQZ_TYPE_Q4_K, SQZ_TYPE_Q4_0, SQZ_TYPE_Q4_1,   SQZ_TYPE_IQ4_NL, SQZ_TYPE_IQ4_XS,
    SQZ_TYPE_Q3_K, SQZ_TYPE_Q2_K,
};

typedef struct shape {
    int rows, cols, hot;
    const char *what;
} shape;
static const shape SHAPES[] = { { 4096, 4096, 0, "large" }, { 5632, 2048, 0, "up-1.1b" },
                                { 2048, 5632, 0, "down-1.1b" }, { 512, 1536, 1, "down-26m" } };

typedef struct opts {
    int threads[MAX_THREAD_COUNTS], n_threads;
    sqz_type types[MAX_TYPES];
    int n_types;
    size_t cold_bytes;
    double min_s;
    int reps;
    int packed_only; /* --packed-only: only the packed_Nt columns */
} opts;

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnext(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Offsets of the f16 scale fields in a block (ggml layouts; see formats/blocks.h). */
static int f16_fields(sqz_type t, size_t off[2]) {
    switch (t) {
    case SQZ_TYPE_Q4_0: case SQZ_TYPE_Q5_0: case SQZ_TYPE_Q8_0: case SQZ_TYPE_IQ4_NL:
    case SQZ_TYPE_IQ4_XS: off[0] = 0; return 1;
    case SQZ_TYPE_Q4_1: case SQZ_TYPE_Q5_1: case SQZ_TYPE_Q4_K: case SQZ_TYPE_Q5_K:
        off[0] = 0, off[1] = 2; return 2;
    case SQZ_TYPE_Q2_K: off[0] = 80, off[1] = 82; return 2;
    case SQZ_TYPE_Q3_K: off[0] = 108; return 1;
    case SQZ_TYPE_Q6_K: off[0] = 208; return 1;
    default: return 0;
    }
}

/* n bytes of type t: a random 64 KiB tile (whole blocks, sane scales), repeated. */
static void fill_type(void *dst, size_t n, sqz_type t) {
    const sqz_type_traits *tr = sqz_type_get(t);
    const size_t bs = tr->type_size, tile = (65536 / bs) * bs;
    unsigned char *p = malloc(tile);
    for (size_t i = 0; i < tile; i++) p[i] = (unsigned char)(rnext() >> 56);
    size_t off[2];
    const int nf = t == SQZ_TYPE_F16 ? 0 : f16_fields(t, off);
    for (size_t b = 0; b < tile / bs; b++)
        for (int f = 0; f < nf; f++) {
            const uint16_t h = sqz_f32_to_f16(0.001f + 0.01f * (float)(rnext() % 1000) / 1000.0f);
            memcpy(p + b * bs + off[f], &h, 2);
        }
    if (t == SQZ_TYPE_F16)
        for (size_t i = 0; i < tile; i += 2) {
            const uint16_t h = sqz_f32_to_f16((float)((int)(rnext() % 2001) - 1000) / 2000.0f);
            memcpy(p + i, &h, 2);
        }
    for (size_t o = 0; o < n; o += tile) memcpy((char *)dst + o, p, n - o < tile ? n - o : tile);
    free(p);
}

/* copies of the rows x cols matrices of arena (n of them, bytes each) repacked in 16-row groups
 * into a new arena; *xbytes the packed size of one; NULL where the runtime does not repack */
static char *pack_arena(const char *arena, size_t bytes, int n, sqz_type t, int rows, int cols, size_t *xbytes) {
    if (!sqz_x16_worth_it(t, rows, cols)) return NULL;
    const sqz_type xt = sqz_x16_type_of(t);
    *xbytes = (sqz_x16_bytes(xt, rows, cols) + 63) & ~(size_t)63;
    char *p = aligned_alloc(64, *xbytes * (size_t)n);
    if (!p) return NULL;
    for (int c = 0; c < n; c++) sqz_x16_pack(t, arena + (size_t)c * bytes, rows, cols, p + (size_t)c * *xbytes);
    return p;
}

typedef struct job {
    const char *arena;
    size_t bytes; /* one matrix */
    int n_copies;
    sqz_type type;
    int rows, cols;
    const float *x;
    const void *xq; /* x quantized to sqz_act_type(type) */
    float *y;
    sqz_vec_dot_q_fn vdq; /* one of these two: a plain one-thread loop */
    sqz_dot_fn dot;
    int threads; /* else sqz_matvec with this many threads */
    int team;    /* packed: rows split over the threads as decode's team does (x quantized once) */
} job;

static void call(const job *j, int copy) {
    const char *w = j->arena + (size_t)copy * j->bytes;
    const size_t rs = sqz_type_row_size(j->type, j->cols);
    if (j->vdq) {
        for (int r = 0; r < j->rows; r++) j->y[r] = j->vdq(j->cols, w + (size_t)r * rs, j->xq);
    } else if (j->dot) {
        for (int r = 0; r < j->rows; r++) j->y[r] = j->dot(w + (size_t)r * rs, j->x, j->cols);
    } else if (j->team) {
        const sqz_tensor t = { j->type, j->cols, j->rows, w };
#pragma omp parallel num_threads(j->threads) if (j->threads > 1)
        {
            /* 16-row groups split evenly, as the session's team splits a matrix */
            const int nt = omp_get_num_threads(), id = omp_get_thread_num();
            const int64_t g = j->rows / 16;
            sqz_matvec_rows(&t, j->x, j->xq, j->y, g * id / nt * 16, g * (id + 1) / nt * 16);
        }
    } else {
        const sqz_tensor t = { j->type, j->cols, j->rows, w };
        sqz_matvec(&t, j->x, j->y, j->threads);
    }
}

/* seconds per call, best of reps timings of >= min_s each */
static double time_call(const job *j, const opts *o) {
    call(j, 0);
    double best = INFINITY;
    int copy = 0;
    for (int r = 0; r < o->reps; r++) {
        long calls = 0;
        const double t0 = now();
        double dt;
        do {
            call(j, copy);
            if (++copy == j->n_copies) copy = 0;
            calls++;
        } while ((dt = now() - t0) < o->min_s);
        if (dt / (double)calls < best) best = dt / (double)calls;
    }
    return best;
}

static int parse_args(int argc, char **argv, opts *o) {
    o->threads[0] = 1, o->threads[1] = 2, o->n_threads = 2;
    o->n_types = 0;
    for (size_t i = 0; i < sizeof ALL_TYPES / sizeof *ALL_TYPES; i++) o->types[o->n_types++] = ALL_TYPES[i];
    o->cold_bytes = (size_t)256 << 20;
    o->min_s = 0.04;
    o->reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) {
            o->min_s = 0.01, o->reps = 1, o->cold_bytes = (size_t)128 << 20;
        } else if (!strcmp(a, "--threads-list") && v) {
            o->n_threads = 0;
            for (const char *p = v; *p && o->n_threads < MAX_THREAD_COUNTS;) {
                char *end;
                const long n = strtol(p, &end, 10);
                if (end == p || n <= 0 || n > 1024 || (*end && *end != ',')) return -1;
                o->threads[o->n_threads++] = (int)n;
                p = *end ? end + 1 : end;
            }
            i++;
        } else if (!strcmp(a, "--types") && v) {
            o->n_types = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); tok && o->n_types < MAX_TYPES; tok = strtok(NULL, ",")) {
                int found = -1;
                for (int t = 0; t < SQZ_TYPE_COUNT; t++)
                    if (sqz_type_get(t) && !strcmp(sqz_type_name(t), tok)) found = t;
                if (found < 0) return -1;
                o->types[o->n_types++] = (sqz_type)found;
            }
            i++;
        } else if (!strcmp(a, "--packed-only")) {
            o->packed_only = 1;
        } else if (!strcmp(a, "--cold-mib") && v) {
            o->cold_bytes = (size_t)atol(v) << 20;
            i++;
        } else if (!strcmp(a, "--min-ms") && v) {
            o->min_s = atof(v) / 1000.0;
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    opts o = { .reps = 3 };
    if (parse_args(argc, argv, &o)) {
        fprintf(stderr, "usage: bench_qkernels [--threads-list 1,2] [--cold-mib 256] [--min-ms 40] "
                        "[--quick] [--types f16,q4_0,...] [--packed-only]\n");
        return 2;
    }
    sqz_kernels_init();
    const sqz_isa best = sqz_isa_best();
    int maxk = 0, maxr = 0;
    for (size_t s = 0; s < sizeof SHAPES / sizeof *SHAPES; s++) {
        if (SHAPES[s].cols > maxk) maxk = SHAPES[s].cols;
        if (SHAPES[s].rows > maxr) maxr = SHAPES[s].rows;
    }
    char *arena = malloc(o.cold_bytes);
    float *x = malloc(sizeof(float) * (size_t)maxk), *y = malloc(sizeof(float) * (size_t)maxr);
    void *xq = malloc((size_t)maxk * 2 + 4096), *xqp = malloc((size_t)maxk * 2 + 4096);
    if (!arena || !x || !y || !xq || !xqp) {
        fprintf(stderr, "bench_qkernels: out of memory\n");
        return 1;
    }
    for (int i = 0; i < maxk; i++) x[i] = (float)((int)(rnext() % 2001) - 1000) / 1000.0f;

    /* f16's seconds per call, [shape][hot][variant], for the speedups */
    enum { N_VAR = N_TIERS + 2 * MAX_THREAD_COUNTS, N_SHAPES = sizeof SHAPES / sizeof *SHAPES };
    double f16_s[N_SHAPES][2][N_VAR] = { { { 0 } } };

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "isa_best", sqz_isa_name(best));
    cJSON_AddNumberToObject(root, "cold_mib", (double)(o.cold_bytes >> 20));
    cJSON_AddStringToObject(root, "stat", "best of 3 timings; GB/s = weight bytes / time");
    cJSON *res = cJSON_AddArrayToObject(root, "matvec_gbs");
    fprintf(stderr, "matvec GB/s (weight bytes / time), speedup vs f16 in (); best ISA %s\n",
            sqz_isa_name(best));
    fprintf(stderr, "%-7s %-10s %-4s", "type", "shape", "");
    for (int t = 0; t < N_TIERS; t++) fprintf(stderr, " %13s", sqz_isa_name((sqz_isa)t));
    for (int i = 0; i < o.n_threads; i++) fprintf(stderr, "     matvec_%dt", o.threads[i]);
    for (int i = 0; i < o.n_threads; i++) fprintf(stderr, "     packed_%dt", o.threads[i]);
    fprintf(stderr, "\n");

    for (int ti = 0; ti < o.n_types; ti++) {
        const sqz_type type = o.types[ti];
        const cpu_mark mark0 = cpu_now();
        const sqz_type act = sqz_act_type(type);
        fill_type(arena, o.cold_bytes, type);
        for (size_t si = 0; si < sizeof SHAPES / sizeof *SHAPES; si++) {
            const shape *sh = &SHAPES[si];
            const size_t bytes = (size_t)sh->rows * sqz_type_row_size(type, sh->cols);
            if (act != SQZ_TYPE_F32) sqz_quantize_act_get(act, SQZ_ISA_REF)(x, xq, sh->cols);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "type", sqz_type_name(type));
            cJSON_AddNumberToObject(e, "rows", sh->rows);
            cJSON_AddNumberToObject(e, "cols", sh->cols);
            cJSON_AddNumberToObject(e, "bytes", (double)bytes);
            cJSON_AddNumberToObject(e, "bits_per_weight", r2(8.0 * (double)bytes / ((double)sh->rows * sh->cols)));
            size_t xbytes = 0;
            char *packed = pack_arena(arena, bytes, (int)(o.cold_bytes / bytes), type, sh->rows, sh->cols, &xbytes);
            for (int hot = sh->hot; hot >= 0; hot--) {
                job j = { arena, bytes, hot ? 1 : (int)(o.cold_bytes / bytes), type, sh->rows,
                          sh->cols, x, xq, y, NULL, NULL, 1, 0 };
                cJSON *c = cJSON_AddObjectToObject(e, hot ? "hot" : "cold");
                cJSON *sp = cJSON_AddObjectToObject(c, "speedup_vs_f16");
                char label[32];
                snprintf(label, sizeof label, "%dx%d", sh->rows, sh->cols);
                fprintf(stderr, "%-7s %-10s %-4s", sqz_type_name(type), label, hot ? "hot" : "cold");
                for (int v = 0; v < N_TIERS + 2 * o.n_threads; v++) {
                    char key[24];
                    j.arena = arena, j.bytes = bytes, j.type = type, j.xq = xq;
                    if (o.packed_only && v < N_TIERS + o.n_threads) {
                        fprintf(stderr, " %13s", "-");
                        continue;
                    }
                    if (v >= N_TIERS + o.n_threads) { /* packed, as the runtime runs it */
                        if (!packed) {
                            fprintf(stderr, " %13s", "-");
                            continue;
                        }
                        j.vdq = NULL, j.dot = NULL, j.team = 1;
                        j.arena = packed, j.bytes = xbytes, j.type = sqz_x16_type_of(type);
                        sqz_act_quantize(j.type, x, xqp, sh->cols);
                        j.xq = xqp;
                        j.threads = o.threads[v - N_TIERS - o.n_threads];
                        snprintf(key, sizeof key, "packed_%dt", j.threads);
                    } else if ((j.team = 0), v < N_TIERS) {
                        if (v > (int)best) {
                            fprintf(stderr, " %13s", "-");
                            continue;
                        }
                        j.vdq = act != SQZ_TYPE_F32 ? sqz_vec_dot_q_get(type, (sqz_isa)v) : NULL;
                        j.dot = act == SQZ_TYPE_F32 ? sqz_dot_get(type, (sqz_isa)v) : NULL;
                        snprintf(key, sizeof key, "%s", sqz_isa_name((sqz_isa)v));
                    } else {
                        j.vdq = NULL, j.dot = NULL;
                        j.threads = o.threads[v - N_TIERS];
                        snprintf(key, sizeof key, "matvec_%dt", j.threads);
                    }
                    const double s = time_call(&j, &o);
                    if (type == SQZ_TYPE_F16) f16_s[si][hot][v] = s;
                    const double gbs = (double)j.bytes / s * 1e-9;
                    cJSON_AddNumberToObject(c, key, r2(gbs));
                    const double f = f16_s[si][hot][v];
                    if (f > 0) cJSON_AddNumberToObject(sp, key, r2(f / s));
                    fprintf(stderr, " %6.1f (%4.2f)", gbs, f > 0 ? f / s : 0.0);
                }
                fprintf(stderr, "\n");
            }
            free(packed);
            cJSON_AddItemToArray(res, e);
        }
        const double others = others_cores(mark0, cpu_now());
        cJSON_AddNumberToObject(cJSON_GetArrayItem(res, cJSON_GetArraySize(res) - 1),
                                "other_processes_cores", others < 0 ? -1 : r2(others));
        if (others > 0.1)
            fprintf(stderr, "  (other processes used %.2f cores during %s: its figures, above all "
                            "with 2 threads, are not trustworthy)\n", others, sqz_type_name(type));
    }
    char *js = cJSON_PrintUnformatted(root);
    if (js) printf("%s\n", js);
    free(js);
    cJSON_Delete(root);
    free(arena), free(x), free(y), free(xq), free(xqp);
    return 0;
}
