/* spin_barrier.h - a barrier for the threads of one parallel region that waits by spinning.
 *
 * Decode with a team of threads meets at a barrier about four times per layer. libgomp's
 * `omp barrier` costs ~1.7 us per meeting on this project's 2-core machines (tens of us per
 * token); a thread that publishes a counter in its own cache line and watches the others'
 * costs about one cache-line round trip (~0.3 us). Waiters spin, then yield the CPU after a
 * while, so an oversubscribed machine still makes progress. */
#ifndef SQZ_CORE_SPIN_BARRIER_H
#define SQZ_CORE_SPIN_BARRIER_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct sqz_spin_slot {
    _Alignas(64) _Atomic uint64_t passed; /* barriers this thread has reached */
    char pad[64 - sizeof(uint64_t)];
} sqz_spin_slot;

typedef struct sqz_spin_barrier {
    sqz_spin_slot *slot; /* [n] one cache line per thread */
    int n;
} sqz_spin_barrier;

/* Room for up to n threads; returns 0, or -1 when out of memory. Free with _free. */
int sqz_spin_barrier_init(sqz_spin_barrier *b, int n);
void sqz_spin_barrier_free(sqz_spin_barrier *b);

/* Starts counting again; only while no thread is inside a wait (before a parallel region). */
void sqz_spin_barrier_reset(sqz_spin_barrier *b);

/* Thread tid of a team of nth (nth <= n; the same nth for every thread, every thread calling
 * the same number of waits since the reset) returns once all nth have called it as often;
 * what each wrote before its call is visible to all after theirs. */
void sqz_spin_barrier_wait(sqz_spin_barrier *b, int tid, int nth);

#endif
