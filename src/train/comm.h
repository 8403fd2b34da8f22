/* comm.h - the collectives data-parallel training uses, over Open MPI (comm_mpi.c).
 *
 * Gradient traffic goes through ring collectives written on MPI_Sendrecv, so that the bytes a
 * rank puts on the wire are counted where they are sent (bytes_sent), not computed from a
 * formula, and every rank ends with bit-identical sums (each chunk is reduced by one rank in
 * one order, then copied). Control messages (losses, checks, the small tables L-GreCo agrees
 * on) go through ctl_* and are counted apart (ctl_bytes). A build without Open MPI keeps the
 * API: sqz_comm_open fails with a message that says so.
 */
#ifndef SQZ_TRAIN_COMM_H
#define SQZ_TRAIN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

typedef struct sqz_comm {
    int rank, size;
    sqz_ctx *ctx;
    uint64_t bytes_sent;  /* gradient payload this rank sent */
    uint64_t ctl_bytes;   /* control payload this rank sent */
    double comm_s;        /* seconds inside the collectives */
    void *scratch;        /* grown on demand */
    size_t scratch_cap;
} sqz_comm;

/* 1 when this process was started by mpirun with more than one rank (from the environment,
 * before any MPI call; sets *size, *local_size (ranks on this machine) and *rank if non-NULL). */
int sqz_comm_launched(int *size, int *local_size, int *rank);
/* Joins the MPI world (initialising MPI once per process). */
sqz_status sqz_comm_open(sqz_ctx *ctx, sqz_comm *c);
void sqz_comm_close(sqz_comm *c);
/* MPI_Finalize, once, at process exit (a no-op when MPI was never initialised). */
void sqz_comm_shutdown(void);

/* x (n floats) <- the sum over ranks of x. */
sqz_status sqz_comm_allreduce(sqz_comm *c, float *x, size_t n);
/* The same with every value on the wire in IEEE half precision (sums kept in f32, the result
 * rounded to f16 on every rank alike). */
sqz_status sqz_comm_allreduce_f16(sqz_comm *c, float *x, size_t n);
/* Each rank contributes bytes of send; recv (sum of all ranks' bytes, caller-sized by
 * sqz_comm_allgather_sizes) gets rank 0's block, then rank 1's, ... */
sqz_status sqz_comm_allgather_sizes(sqz_comm *c, uint64_t bytes, uint64_t *all /* [size] */);
sqz_status sqz_comm_allgather(sqz_comm *c, const void *send, const uint64_t *all, void *recv);

/* Control: x (n doubles) <- the sum over ranks; *same <- 1 when every rank passed the same v. */
sqz_status sqz_comm_ctl_sum(sqz_comm *c, double *x, int n);
sqz_status sqz_comm_ctl_same(sqz_comm *c, uint64_t v, int *same);
/* Rank 0's n bytes to every rank. */
sqz_status sqz_comm_ctl_bcast(sqz_comm *c, void *x, size_t n);

#endif
