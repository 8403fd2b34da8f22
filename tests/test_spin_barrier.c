/* test_spin_barrier.c - the decode team's barrier (core/spin_barrier.h): no thread leaves a
 * round before every thread has written that round's value, over many rounds, with as many
 * threads as cores and with more threads than cores (waiters must yield, not hang). */
#include <omp.h>

#include "core/spin_barrier.h"
#include "test.h"

enum { ROUNDS = 20000 };

/* each thread writes round r into its slot, meets the others, then checks every slot holds r;
 * the second barrier keeps a fast thread from writing round r + 1 before the others have read */
static int rounds_agree(sqz_spin_barrier *b, int nt, int rounds) {
    int *val = calloc((size_t)nt * 16, sizeof *val); /* one cache line per thread */
    int bad = 0, got_nt = 0;
    sqz_spin_barrier_reset(b);
#pragma omp parallel num_threads(nt) reduction(+ : bad)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#pragma omp single
        got_nt = nth;
        for (int r = 1; r <= rounds; r++) {
            __atomic_store_n(&val[tid * 16], r, __ATOMIC_RELAXED);
            sqz_spin_barrier_wait(b, tid, nth);
            for (int j = 0; j < nth; j++) bad += __atomic_load_n(&val[j * 16], __ATOMIC_RELAXED) != r;
            sqz_spin_barrier_wait(b, tid, nth);
        }
    }
    free(val);
    return got_nt < 1 ? -1 : bad;
}

int main(void) {
    sqz_spin_barrier b;
    CHECK(sqz_spin_barrier_init(&b, 8) == 0, "barrier for 8 threads");
    const int cores = omp_get_num_procs();
    const int teams[] = { 1, 2, cores, 2 * cores + 1 };
    for (int i = 0; i < 4; i++) {
        const int nt = teams[i] > 8 ? 8 : teams[i];
        /* oversubscribed teams wait by yielding: fewer rounds keep the test short */
        const int rounds = nt > cores ? ROUNDS / 20 : ROUNDS;
        const int bad = rounds_agree(&b, nt, rounds);
        CHECK(bad == 0, "%d threads (%d cores), %d rounds: %d reads saw another round", nt, cores,
              rounds, bad);
    }
    sqz_spin_barrier_free(&b);
    return test_done();
}
