/* ctx.h - the context every internal function takes: settings and the last error. */
#ifndef SQZ_CORE_CTX_H
#define SQZ_CORE_CTX_H

#include "sqz.h"

struct sqz_ctx {
    int n_threads;
    sqz_progress_fn progress;
    void *progress_user;
    char error[1024];
};

/* Records a formatted message on ctx (ctx may be NULL) and returns st, so that failure paths
 * read `return sqz_fail(ctx, SQZ_ERR_FORMAT, "%s: bad header", path);`. */
sqz_status sqz_fail(sqz_ctx *ctx, sqz_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports progress if a callback is set. */
void sqz_progress(const sqz_ctx *ctx, const char *what, uint64_t done, uint64_t total);

/* Monotonic wall-clock seconds. */
double sqz_now(void);

#endif
