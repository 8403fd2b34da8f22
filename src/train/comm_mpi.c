/* comm_mpi.c - sqz_comm over Open MPI: ring allreduce / allgather on MPI_Sendrecv (bytes
 * counted as sent), control messages on MPI's own collectives. Without SQZ_MPI (no Open MPI
 * at build time) every entry point fails with a message that says how to get it. */
#include <stdlib.h>
#include <string.h>

#include "formats/types.h"
#include "train/comm.h"

int sqz_comm_launched(int *size, int *local_size, int *rank) {
    const char *s = getenv("OMPI_COMM_WORLD_SIZE"), *l = getenv("OMPI_COMM_WORLD_LOCAL_SIZE"),
               *r = getenv("OMPI_COMM_WORLD_RANK");
    const int n = s ? atoi(s) : 1;
    if (size) *size = n > 0 ? n : 1;
    if (local_size) *local_size = l && atoi(l) > 0 ? atoi(l) : 1;
    if (rank) *rank = r && atoi(r) > 0 ? atoi(r) : 0;
    return n > 1;
}

#ifndef SQZ_MPI

static sqz_status no_mpi(sqz_ctx *ctx) {
    return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "data-parallel training (--dp) needs Open MPI: this sqz "
                    "was built without it (install libopenmpi-dev and openmpi-bin, then rebuild)");
}
sqz_status sqz_comm_open(sqz_ctx *ctx, sqz_comm *c) {
    memset(c, 0, sizeof *c);
    return no_mpi(ctx);
}
void sqz_comm_close(sqz_comm *c) { (void)c; }
void sqz_comm_shutdown(void) {}
static sqz_status allreduce(sqz_comm *c, float *x, size_t n, int half) { return no_mpi(c->ctx); }
static sqz_status allgather_sizes(sqz_comm *c, uint64_t b, uint64_t *all) { return no_mpi(c->ctx); }
static sqz_status allgather(sqz_comm *c, const void *s, const uint64_t *all, void *r) {
    return no_mpi(c->ctx);
}
static sqz_status ctl_sum(sqz_comm *c, double *x, int n) { return no_mpi(c->ctx); }
static sqz_status ctl_same(sqz_comm *c, uint64_t v, int *same) { return no_mpi(c->ctx); }
static sqz_status ctl_bcast(sqz_comm *c, void *x, size_t n) { return no_mpi(c->ctx); }

#else

#include <mpi.h>

static int we_initialised;

sqz_status sqz_comm_open(sqz_ctx *ctx, sqz_comm *c) {
    memset(c, 0, sizeof *c);
    c->ctx = ctx;
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (fin) return sqz_fail(ctx, SQZ_ERR_UNSUPPORTED, "MPI was already finalised in this process");
    if (!init) {
        int provided;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return sqz_fail(ctx, SQZ_ERR_IO, "MPI_Init failed (run under mpirun)");
        we_initialised = 1;
    }
    /* errors come back as codes, not as an abort of every rank */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    return SQZ_OK;
}

void sqz_comm_close(sqz_comm *c) {
    free(c->scratch);
    c->scratch = NULL;
    c->scratch_cap = 0;
}

void sqz_comm_shutdown(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin && we_initialised) MPI_Finalize();
}

static sqz_status mpi_fail(sqz_comm *c, const char *what, int rc) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return sqz_fail(c->ctx, SQZ_ERR_IO, "MPI %s failed on rank %d: %s", what, c->rank, msg);
}

static void *scratch(sqz_comm *c, size_t bytes) {
    if (bytes > c->scratch_cap) {
        void *p = realloc(c->scratch, bytes);
        if (!p) return NULL;
        c->scratch = p;
        c->scratch_cap = bytes;
    }
    return c->scratch;
}

/* Sends sb bytes to dst while receiving rb bytes from src, in pieces MPI's int counts hold. */
static sqz_status xchg(sqz_comm *c, const void *send, size_t sb, int dst, void *recv, size_t rb,
                       int src) {
    const size_t piece = (size_t)1 << 30;
    size_t so = 0, ro = 0;
    while (so < sb || ro < rb) {
        const int sn = (int)(sb - so < piece ? sb - so : piece), rn = (int)(rb - ro < piece ? rb - ro : piece);
        const int rc = MPI_Sendrecv((const char *)send + so, sn, MPI_BYTE, dst, 77, (char *)recv + ro, rn,
                                    MPI_BYTE, src, 77, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(c, "Sendrecv", rc);
        c->bytes_sent += (uint64_t)sn;
        so += (size_t)sn;
        ro += (size_t)rn;
    }
    return SQZ_OK;
}

/* chunk i of n split in N: [off(i), off(i+1)) */
static size_t chunk_off(size_t n, int N, int i) {
    return n / (size_t)N * (size_t)i + ((size_t)i < n % (size_t)N ? (size_t)i : n % (size_t)N);
}

/* One ring step: chunk sc of x goes to next while chunk rc comes from prev, added into x
 * (add = 1, reduce-scatter) or copied over it (allgather); values as f32 or f16 on the wire. */
static sqz_status ring_step(sqz_comm *c, float *x, size_t n, int sc, int rc, int half, int add, char *sb,
                           char *rb) {
    const int N = c->size;
    const size_t s0 = chunk_off(n, N, sc), s1 = chunk_off(n, N, sc + 1);
    const size_t r0 = chunk_off(n, N, rc), r1 = chunk_off(n, N, rc + 1), esz = half ? 2 : 4;
    if (half)
        for (size_t i = s0; i < s1; i++) ((uint16_t *)sb)[i - s0] = sqz_f32_to_f16(x[i]);
    else
        memcpy(sb, x + s0, (s1 - s0) * 4);
    const sqz_status st = xchg(c, sb, (s1 - s0) * esz, (c->rank + 1) % N, rb, (r1 - r0) * esz,
                               (c->rank + N - 1) % N);
    for (size_t i = r0; i < r1 && !st; i++) {
        const float v = half ? sqz_f16_to_f32(((uint16_t *)rb)[i - r0]) : ((float *)rb)[i - r0];
        x[i] = add ? x[i] + v : v;
    }
    return st;
}

/* Ring allreduce with values on the wire as f32 (half = 0) or f16 (half = 1). */
static sqz_status ring_allreduce(sqz_comm *c, float *x, size_t n, int half) {
    const int N = c->size, r = c->rank;
    if (N == 1 || n == 0) return SQZ_OK;
    const double t0 = sqz_now();
    const size_t maxc = n / (size_t)N + 1, esz = half ? 2 : 4;
    char *buf = scratch(c, 2 * maxc * esz);
    if (!buf) return sqz_fail(c->ctx, SQZ_ERR_NOMEM, "allreduce: out of memory");
    sqz_status st = SQZ_OK;
    /* reduce-scatter: after N - 1 steps rank r holds the full sum of chunk r + 1 */
    for (int k = 0; k < N - 1 && !st; k++)
        st = ring_step(c, x, n, ((r - k) % N + N) % N, ((r - k - 1) % N + N) % N, half, 1, buf, buf + maxc * esz);
    if (half) { /* the owner rounds its chunk as every other rank will receive it */
        const int own = (r + 1) % N;
        for (size_t i = chunk_off(n, N, own); i < chunk_off(n, N, own + 1); i++)
            x[i] = sqz_f16_to_f32(sqz_f32_to_f16(x[i]));
    }
    /* allgather of the reduced chunks */
    for (int k = 0; k < N - 1 && !st; k++)
        st = ring_step(c, x, n, ((r + 1 - k) % N + N) % N, ((r - k) % N + N) % N, half, 0, buf, buf + maxc * esz);
    c->comm_s += sqz_now() - t0;
    return st;
}

static sqz_status allreduce(sqz_comm *c, float *x, size_t n, int half) { return ring_allreduce(c, x, n, half); }

static sqz_status allgather_sizes(sqz_comm *c, uint64_t bytes, uint64_t *all) {
    const double t0 = sqz_now();
    const int rc = MPI_Allgather(&bytes, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    c->ctl_bytes += 8;
    c->comm_s += sqz_now() - t0;
    return rc == MPI_SUCCESS ? SQZ_OK : mpi_fail(c, "Allgather", rc);
}

/* Ring allgather: at step k rank r passes on the block of rank r - k. */
static sqz_status allgather(sqz_comm *c, const void *send, const uint64_t *all, void *recv) {
    const int N = c->size, r = c->rank;
    const double t0 = sqz_now();
    uint64_t off[N + 1];
    off[0] = 0;
    for (int i = 0; i < N; i++) off[i + 1] = off[i] + all[i];
    memcpy((char *)recv + off[r], send, all[r]);
    sqz_status st = SQZ_OK;
    const int next = (r + 1) % N, prev = (r + N - 1) % N;
    for (int k = 0; k < N - 1 && !st; k++) {
        const int sblk = ((r - k) % N + N) % N, rblk = ((r - k - 1) % N + N) % N;
        st = xchg(c, (char *)recv + off[sblk], all[sblk], next, (char *)recv + off[rblk], all[rblk], prev);
    }
    c->comm_s += sqz_now() - t0;
    return st;
}

static sqz_status ctl_sum(sqz_comm *c, double *x, int n) {
    const double t0 = sqz_now();
    const int rc = MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    c->ctl_bytes += (uint64_t)n * 8;
    c->comm_s += sqz_now() - t0;
    return rc == MPI_SUCCESS ? SQZ_OK : mpi_fail(c, "Allreduce", rc);
}

static sqz_status ctl_same(sqz_comm *c, uint64_t v, int *same) {
    uint64_t lo = v, hi = v;
    int rc = MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    c->ctl_bytes += 16;
    if (rc != MPI_SUCCESS) return mpi_fail(c, "Allreduce", rc);
    *same = lo == hi;
    return SQZ_OK;
}

static sqz_status ctl_bcast(sqz_comm *c, void *x, size_t n) {
    const int rc = MPI_Bcast(x, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (c->rank == 0) c->ctl_bytes += n;
    return rc == MPI_SUCCESS ? SQZ_OK : mpi_fail(c, "Bcast", rc);
}

#endif

/* ---- entry points: a world of one needs no MPI (tests build one by hand: size 1, rank 0) */
sqz_status sqz_comm_allreduce(sqz_comm *c, float *x, size_t n) {
    return c->size <= 1 ? SQZ_OK : allreduce(c, x, n, 0);
}
sqz_status sqz_comm_allreduce_f16(sqz_comm *c, float *x, size_t n) {
    if (c->size > 1) return allreduce(c, x, n, 1);
    for (size_t i = 0; i < n; i++) x[i] = sqz_f16_to_f32(sqz_f32_to_f16(x[i])); /* what the wire keeps */
    return SQZ_OK;
}
sqz_status sqz_comm_allgather_sizes(sqz_comm *c, uint64_t bytes, uint64_t *all) {
    if (c->size > 1) return allgather_sizes(c, bytes, all);
    all[0] = bytes;
    return SQZ_OK;
}
sqz_status sqz_comm_allgather(sqz_comm *c, const void *send, const uint64_t *all, void *recv) {
    if (c->size > 1) return allgather(c, send, all, recv);
    memcpy(recv, send, all[0]);
    return SQZ_OK;
}
sqz_status sqz_comm_ctl_sum(sqz_comm *c, double *x, int n) { return c->size <= 1 ? SQZ_OK : ctl_sum(c, x, n); }
sqz_status sqz_comm_ctl_same(sqz_comm *c, uint64_t v, int *same) {
    if (c->size > 1) return ctl_same(c, v, same);
    *same = 1;
    return SQZ_OK;
}
sqz_status sqz_comm_ctl_bcast(sqz_comm *c, void *x, size_t n) { return c->size <= 1 ? SQZ_OK : ctl_bcast(c, x, n); }
