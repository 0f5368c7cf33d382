/*
 * core/rng.c: counter-based RNG (see rng.h). Each output is the SplitMix64
 * finalizer applied to a mix of seed, stream and counter.
 */
#include "core/rng.h"

#include <math.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

core_rng core_rng_make(uint64_t seed, uint64_t stream)
{
    core_rng r = {seed, stream, 0};
    return r;
}

uint64_t core_rng_u64(core_rng *r)
{
    uint64_t key =
        mix64(r->seed + 0x9e3779b97f4a7c15ULL) ^ mix64(r->stream * 0xd1b54a32d192ed03ULL);
    uint64_t v = mix64(key + (r->counter + 1) * 0x9e3779b97f4a7c15ULL);
    r->counter++;
    return v;
}

float core_rng_uniform(core_rng *r)
{
    return (float)(core_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

float core_rng_normal(core_rng *r)
{
    double u1 = ((double)(core_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(core_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t core_rng_below(core_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do {
        v = core_rng_u64(r);
    } while (v >= limit);
    return v % n;
}

void core_rng_shuffle_u32(core_rng *r, uint32_t *idx, uint64_t n)
{
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = core_rng_below(r, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
