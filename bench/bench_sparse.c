/* bench_sparse.c - decode's matrix-vector speed of sqz's sparse int8 matrices (sp8,
 * formats/sp8.h) against Q8_0 (as the runtime runs it: repacked x16 where sqz does so), on the
 * 1.1B shape of the scale issue (dim 2048, ffn 5632, GQA 32/4 heads of 64: per layer q and o
 * 2048x2048, k and v 256x2048, gate and up 5632x2048, down 2048x5632), weights streamed from
 * memory (--layers layers' matrices, all visited in turn: far more than the last-level cache).
 *
 *   build/bench/bench_sparse [--layers 4] [--threads 1] [--densities 0.5,0.3] [--min-ms 300] [--isa avx2]
 *
 * Weights: iid uniform in [-1, 1], pruned by magnitude at density d by the threshold 1 - d
 * (exactly magnitude pruning for that distribution; speed does not depend on which weights);
 * Q8_0 holds the same pruned matrix (zeros and all). One "token" = one matvec with every
 * matrix; tokens/s and GB/s (bytes of the weights read) are the best of 3 timings of at least
 * --min-ms each (--isa avx2 or ref: that tier of sp8 instead of the best). Human lines on
 * stderr, one JSON object on stdout; other_processes_cores: the CPU other processes took
 * meanwhile (above ~0.1 the figures are noise). */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/sp8.h"
#include "formats/types.h"
#include "formats/x16.h"
#include "kernels/kernels.h"
#include "kernels/sp8.h"
#include "kernels/x16.h"

#include "bench_util.h"

enum { N_MATS = 7 };
static const int SHAPE[N_MATS][2] = { { 2048, 2048 }, { 256, 2048 }, { 256, 2048 }, { 2048, 2048 },
                                      { 5632, 2048 }, { 5632, 2048 }, { 2048, 5632 } };

typedef struct mats {
    int n;
    sqz_tensor *q8;       /* [n] */
    sqz_sp8_tensor *sp;   /* [n] */
    int64_t *rows, *cols; /* [n] */
    size_t q8_bytes, sp_bytes;
} mats;

static uint64_t rng = 0x243F6A8885A308D3ull;
static float urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

static int build(mats *m, int layers, double density) {
    m->n = layers * N_MATS;
    m->q8 = calloc((size_t)m->n, sizeof *m->q8);
    m->sp = calloc((size_t)m->n, sizeof *m->sp);
    m->rows = calloc((size_t)m->n, sizeof *m->rows);
    m->cols = calloc((size_t)m->n, sizeof *m->cols);
    if (!m->q8 || !m->sp || !m->rows || !m->cols) return -1;
    const float thr = (float)(1 - density);
    for (int i = 0; i < m->n; i++) {
        const int64_t R = SHAPE[i % N_MATS][0], C = SHAPE[i % N_MATS][1];
        float *W = malloc((size_t)(R * C) * sizeof *W);
        if (!W) return -1;
        for (int64_t k = 0; k < R * C; k++) {
            const float w = urand();
            W[k] = fabsf(w) < thr ? 0.0f : w;
        }
        /* Q8_0, repacked as the runtime does where it pays */
        const size_t rs = sqz_type_row_size(SQZ_TYPE_Q8_0, C);
        void *q = malloc(rs * (size_t)R);
        uint64_t *off = malloc((size_t)(R + 1) * sizeof *off);
        if (!q || !off) return -1;
        for (int64_t r = 0; r < R; r++) sqz_type_get(SQZ_TYPE_Q8_0)->from_float(W + r * C, (char *)q + r * rs, C);
        sqz_tensor t = { .type = SQZ_TYPE_Q8_0, .rows = R, .cols = C, .data = q };
        m->q8_bytes += rs * (size_t)R;
        if (sqz_x16_worth_it(SQZ_TYPE_Q8_0, R, C)) {
            const sqz_type xt = sqz_x16_type_of(SQZ_TYPE_Q8_0);
            void *p = aligned_alloc(64, (sqz_x16_bytes(xt, R, C) + 63) & ~(size_t)63);
            if (!p) return -1;
            sqz_x16_pack(SQZ_TYPE_Q8_0, q, R, C, p);
            free(q);
            t.type = xt;
            t.data = p;
        }
        m->q8[i] = t;
        sqz_sp8_pack(W, R, C, off, NULL);
        uint8_t *data = malloc(off[R]);
        if (!data) return -1;
        sqz_sp8_pack(W, R, C, off, data);
        m->sp[i] = (sqz_sp8_tensor){ off, data };
        m->sp_bytes += off[R];
        m->rows[i] = R;
        m->cols[i] = C;
        free(W);
    }
    return 0;
}

static void release(mats *m) {
    for (int i = 0; i < m->n; i++) {
        free((void *)m->q8[i].data);
        free((void *)m->sp[i].row_off);
        free((void *)m->sp[i].data);
    }
    free(m->q8);
    free(m->sp);
    free(m->rows);
    free(m->cols);
}

/* The sp8 tier measured (--isa: the best the CPU runs, or avx2 / ref), and its product as
 * sqz_sp8_matvec runs it: x quantized once, rows split over the threads. */
static sqz_sp8_matvec_fn sp8_fn;
static void sp8_matvec(const sqz_sp8_tensor *m, int64_t rows, int64_t cols, const float *x, void *xq, float *y,
                       int threads) {
    sqz_sp8_act_quantize(x, xq, cols);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        sp8_fn(m, cols, xq, y, rows * t / nt, rows * (t + 1) / nt);
    }
}

/* Seconds per token (best of 3 runs of >= min_ms), sp8 (sparse = 1) or Q8_0. */
static double time_tokens(const mats *m, int sparse, int threads, double min_ms, const float *x, float *y, void *xq) {
    double best = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        int tokens = 0;
        const double t0 = now();
        double el;
        do {
            for (int i = 0; i < m->n; i++)
                if (sparse) sp8_matvec(&m->sp[i], m->rows[i], m->cols[i], x, xq, y, threads);
                else sqz_matvec(&m->q8[i], x, y, threads);
            tokens++;
            el = now() - t0;
        } while (el * 1e3 < min_ms);
        if (el / tokens < best) best = el / tokens;
    }
    return best;
}

int main(int argc, char **argv) {
    int layers = 4, threads = 1;
    sqz_isa isa = SQZ_ISA_AVX512;
    double min_ms = 300, dens[8] = { 0.5, 0.3 };
    int n_dens = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--layers") && v) layers = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--min-ms") && v) min_ms = atof(argv[++i]);
        else if (!strcmp(a, "--isa") && v) {
            v = argv[++i];
            isa = !strcmp(v, "ref") ? SQZ_ISA_REF : !strcmp(v, "avx2") ? SQZ_ISA_AVX2 : SQZ_ISA_AVX512;
        }
        else if (!strcmp(a, "--densities") && v) {
            n_dens = 0;
            for (char *s = argv[++i]; *s && n_dens < 8;) {
                dens[n_dens++] = strtod(s, &s);
                if (*s == ',') s++;
                else break;
            }
        } else {
            fprintf(stderr, "usage: bench_sparse [--layers N] [--threads N] [--densities 0.5,0.3] [--min-ms MS] [--isa avx512|avx2|ref]\n");
            return 2;
        }
    }
    sqz_kernels_init();
    sp8_fn = sqz_sp8_matvec_get(isa);
    const char *tier = sp8_fn == sqz_sp8_matvec_vbmi2 ? "avx512-vbmi2" : sp8_fn == sqz_sp8_matvec_avx2 ? "avx2" : "reference";
    fprintf(stderr, "sp8 kernel: %s\n", tier);
    float *x = malloc(5632 * sizeof *x), *y = malloc(5632 * sizeof *y);
    void *xq = malloc(sqz_sp8_act_bytes(5632));
    for (int k = 0; k < 5632; k++) x[k] = urand();
    cJSON *out = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(out, "results");
    cJSON_AddStringToObject(out, "shape", "1.1B layer (2048, ffn 5632, kv 256)");
    cJSON_AddNumberToObject(out, "layers", layers);
    cJSON_AddNumberToObject(out, "threads", threads);
    cJSON_AddStringToObject(out, "sp8_kernel", tier);
    for (int di = 0; di < n_dens; di++) {
        mats m;
        memset(&m, 0, sizeof m);
        if (build(&m, layers, dens[di])) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        const cpu_mark c0 = cpu_now();
        const double tq = time_tokens(&m, 0, threads, min_ms, x, y, xq);
        const double ts = time_tokens(&m, 1, threads, min_ms, x, y, xq);
        const double others = others_cores(c0, cpu_now());
        fprintf(stderr,
                "density %.2f: Q8_0 %.1f MB %.2f ms/token (%.1f GB/s) | sp8 %.1f MB %.2f ms/token (%.1f GB/s) | "
                "speed-up %.2fx, bytes %.2fx; other processes %.2f cores\n",
                dens[di], m.q8_bytes / 1e6, tq * 1e3, m.q8_bytes / tq / 1e9, m.sp_bytes / 1e6, ts * 1e3,
                m.sp_bytes / ts / 1e9, tq / ts, (double)m.q8_bytes / m.sp_bytes, others);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "density", dens[di]);
        cJSON_AddNumberToObject(r, "q8_0_bytes", (double)m.q8_bytes);
        cJSON_AddNumberToObject(r, "sp8_bytes", (double)m.sp_bytes);
        cJSON_AddNumberToObject(r, "q8_0_ms_per_token", tq * 1e3);
        cJSON_AddNumberToObject(r, "sp8_ms_per_token", ts * 1e3);
        cJSON_AddNumberToObject(r, "speedup_vs_q8_0", tq / ts);
        cJSON_AddNumberToObject(r, "other_processes_cores", others);
        cJSON_AddItemToArray(rows, r);
        release(&m);
    }
    char *s = cJSON_PrintUnformatted(out);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(out);
    free(x);
    free(y);
    free(xq);
    return 0;
}
