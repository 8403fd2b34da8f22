/* hash.h - FNV-1a (64-bit), the project's hash for "was this file made from the same inputs":
 * checkpoints, KL caches, level databases and search checkpoints keep one in their header. */
#ifndef SQZ_CORE_HASH_H
#define SQZ_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>


static inline uint64_t sqz_fnv1a_init(void) { return 0xcbf29ce484222325ull; }

/* h folded with the n bytes at p. */
static inline uint64_t sqz_fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

#endif
