/* spin_barrier.c - see spin_barrier.h. */
#include "core/spin_barrier.h"

#include <sched.h>
#include <stdlib.h>

int sqz_spin_barrier_init(sqz_spin_barrier *b, int n) {
    b->slot = aligned_alloc(64, (size_t)n * sizeof *b->slot);
    b->n = b->slot ? n : 0;
    if (!b->slot) return -1;
    sqz_spin_barrier_reset(b);
    return 0;
}

void sqz_spin_barrier_free(sqz_spin_barrier *b) {
    free(b->slot);
    b->slot = NULL;
    b->n = 0;
}

void sqz_spin_barrier_reset(sqz_spin_barrier *b) {
    for (int i = 0; i < b->n; i++) atomic_store_explicit(&b->slot[i].passed, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

enum { SPINS_BEFORE_YIELD = 1 << 14 }; /* ~0.5-1 ms of pause instructions */

void sqz_spin_barrier_wait(sqz_spin_barrier *b, int tid, int nth) {
    /* release: this thread's writes before the barrier happen before the others' acquire */
    const uint64_t me = atomic_fetch_add_explicit(&b->slot[tid].passed, 1, memory_order_release) + 1;
    for (int j = 0; j < nth; j++) {
        if (j == tid) continue;
        unsigned spins = 0;
        while (atomic_load_explicit(&b->slot[j].passed, memory_order_acquire) < me) {
            if (++spins < SPINS_BEFORE_YIELD) cpu_relax();
            else sched_yield();
        }
    }
}
