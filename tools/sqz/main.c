/* sqz - the command-line tool. A thin layer over include/sqz.h: parse arguments (args.c's
 * tables of commands and options), call the library (cmd_*.c), print text (or one JSON object
 * with --json) on stdout; logs, progress and errors go to stderr. Every failure prints one line
 * "sqz: <message>" and exits with status 1 (2 for a usage error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* ---- progress bar on stderr, only when it is a terminal */

typedef struct progress_state {
    double t0;
    int shown;
} progress_state;

static void progress_bar(void *user, const char *what, uint64_t done, uint64_t total) {
    progress_state *p = user;
    if (!p->t0) p->t0 = cli_now();
    const double el = cli_now() - p->t0;
    const int W = 30;
    const int fill = total ? (int)((double)done / (double)total * W) : W;
    char bar[64];
    for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
    bar[W] = 0;
    const double eta = done ? el * (double)(total - done) / (double)done : 0;
    fprintf(stderr, "\r%s [%s] %llu/%llu  %.0f/s  eta %.0fs ", what, bar, (unsigned long long)done,
            (unsigned long long)total, el > 0 ? (double)done / el : 0.0, eta);
    if (done >= total) fprintf(stderr, "\n");
    p->shown = 1;
}

/* Debian's OpenBLAS chose its kernels when it loaded; where it chose far worse ones than this
 * CPU runs, start again with the right ones (sqz_blas_coretype_hint). SQZ_NO_REEXEC=1 keeps
 * the first choice. If the exec fails, go on as loaded. */
static void reexec_for_blas(char **argv) {
    const char *core = sqz_blas_coretype_hint();
    if (!core || getenv("SQZ_NO_REEXEC") || setenv("OPENBLAS_CORETYPE", core, 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
}

int main(int argc, char **argv) {
    reexec_for_blas(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        cli_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sqz %s\n", SQZ_VERSION);
        return 0;
    }
    const cli_command *cmd = cli_find_command(argv[1]);
    if (!cmd) {
        fprintf(stderr, "sqz: unknown command '%s' (see sqz --help)\n", argv[1]);
        return 2;
    }
    opts o = { .n_predict = 128, .temp = 0.8f, .top_p = 0.9f, .seed = 42 };
    int rc = cli_parse_args(cmd, argc - 2, argv + 2, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.model && cmd->run != cmd_report) { /* report's operands are result files */
        fprintf(stderr, "sqz: %s needs a MODEL (see sqz --help)\n", cmd->name);
        return 2;
    }
    sqz_ctx *ctx = sqz_ctx_new();
    if (!ctx) return cli_die("out of memory");
    if (o.threads) sqz_ctx_set_threads(ctx, o.threads);
    progress_state ps = { 0 };
    if (!o.no_progress && isatty(2)) sqz_ctx_set_progress(ctx, progress_bar, &ps);
    rc = cmd->run(ctx, &o);
    sqz_ctx_free(ctx);
    return rc;
}
