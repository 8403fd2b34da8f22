/* ctx.c - context lifecycle, error messages, status names. */
#define _POSIX_C_SOURCE 200809L
#include "core/ctx.h"

#include <cblas.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

const char *sqz_version(void) { return SQZ_VERSION; }

const char *sqz_status_str(sqz_status st) {
    switch (st) {
    case SQZ_OK: return "ok";
    case SQZ_ERR_IO: return "i/o error";
    case SQZ_ERR_FORMAT: return "invalid format";
    case SQZ_ERR_UNSUPPORTED: return "unsupported";
    case SQZ_ERR_ARG: return "invalid argument";
    case SQZ_ERR_NOMEM: return "out of memory";
    case SQZ_ERR_RANGE: return "out of range";
    case SQZ_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

static int online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* OpenBLAS's names for the kernel sets that use AVX-512 / at least AVX2 + FMA */
static int core_in(const char *core, const char *const *set) {
    for (; *set; set++)
        if (!strcasecmp(core, *set)) return 1;
    return 0;
}

const char *sqz_blas_coretype_hint(void) {
#if defined(__x86_64__)
    static const char *const avx512[] = { "SkylakeX", "Cooperlake", "SapphireRapids", NULL };
    static const char *const avx2[] = { "Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", NULL };
    const char *core = openblas_get_corename();
    if (getenv("OPENBLAS_CORETYPE") || !core) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512cd"))
        return core_in(core, avx512) ? NULL : "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return core_in(core, avx2) ? NULL : "Haswell";
#endif
    return NULL;
}

sqz_ctx *sqz_ctx_new(void) {
    sqz_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->n_threads = online_cpus();
    /* sqz runs OpenBLAS single-threaded inside its own OpenMP threads (kernels/matmul.c), so
     * that one pool of threads is all there is */
    openblas_set_num_threads(1);
    return ctx;
}

void sqz_ctx_free(sqz_ctx *ctx) { free(ctx); }

void sqz_ctx_set_threads(sqz_ctx *ctx, int n) { ctx->n_threads = n > 0 ? n : online_cpus(); }

int sqz_ctx_threads(const sqz_ctx *ctx) { return ctx->n_threads; }

void sqz_ctx_set_progress(sqz_ctx *ctx, sqz_progress_fn fn, void *user) {
    ctx->progress = fn;
    ctx->progress_user = user;
}

const char *sqz_ctx_error(const sqz_ctx *ctx) { return ctx->error; }

void sqz_free(void *p) { free(p); }

sqz_status sqz_fail(sqz_ctx *ctx, sqz_status st, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
        va_end(ap);
    }
    return st;
}

void sqz_progress(const sqz_ctx *ctx, const char *what, uint64_t done, uint64_t total) {
    if (ctx && ctx->progress) ctx->progress(ctx->progress_user, what, done, total);
}

double sqz_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
