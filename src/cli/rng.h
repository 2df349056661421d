/*
 * rng.h - the random source of the bench engines (bench.c, loadgen.c):
 * xorshift64*, one state per thread, never zero.
 */
#ifndef MEMSTASH_CLI_RNG_H
#define MEMSTASH_CLI_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

#endif
