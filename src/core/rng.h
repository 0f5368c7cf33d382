/*
 * core/rng.h: a seeded counter-based random number generator.
 *
 * A generator is (seed, stream, counter); the n-th number is a pure function
 * of those three, so the whole state is three integers that a checkpoint can
 * store, and independent streams (one per rank, per epoch, per purpose) are
 * made by choosing a different stream id rather than by sharing state.
 */
#ifndef CORE_RNG_H
#define CORE_RNG_H

#include <stdint.h>

typedef struct core_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter;
} core_rng;

core_rng core_rng_make(uint64_t seed, uint64_t stream);
uint64_t core_rng_u64(core_rng *r);
/* Uniform in [0, 1). */
float core_rng_uniform(core_rng *r);
/* Standard normal (Box-Muller). */
float core_rng_normal(core_rng *r);
/* Uniform integer in [0, n); n > 0. Unbiased. */
uint64_t core_rng_below(core_rng *r, uint64_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void core_rng_shuffle_u32(core_rng *r, uint32_t *idx, uint64_t n);

#endif
