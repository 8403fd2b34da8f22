/* rng.h - splitmix64, the project's seeded generator where a sequence must be the same on every
 * machine (Hadamard signs, training data order, LoRA initialization). */
#ifndef SQZ_MATH_RNG_H
#define SQZ_MATH_RNG_H

#include <stdint.h>

/* Advances *s and returns the next 64 random bits. */
uint64_t sqz_splitmix64(uint64_t *s);

#endif
