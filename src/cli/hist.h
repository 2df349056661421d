/*
 * hist.h - the latency histogram shared by the bench engines (bench.c, loadgen.c).
 *
 * Log-linear: 16 sub-buckets per power of two, so a reported quantile is
 * within 7% of the true value. One per thread, merged at the end.
 */
#ifndef MEMSTASH_CLI_HIST_H
#define MEMSTASH_CLI_HIST_H

#include <math.h>
#include <stdint.h>

#define SUB_BITS 4
#define SUB      (1u << SUB_BITS)
#define NBUCKETS (64 * SUB)

struct hist {
    uint64_t n[NBUCKETS];
    uint64_t max;
};

static inline unsigned bucket_of(uint64_t v)
{
    if (v < SUB) {
        return (unsigned)v;
    }
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned sub = (unsigned)(v >> (msb - SUB_BITS)) & (SUB - 1);
    return (msb - SUB_BITS + 1) * SUB + sub;
}

/* The largest value that falls into bucket b. */
static inline uint64_t bucket_top(unsigned b)
{
    if (b < SUB) {
        return b;
    }
    unsigned msb = b / SUB + SUB_BITS - 1;
    uint64_t sub = b % SUB;
    uint64_t base = ((uint64_t)SUB + sub) << (msb - SUB_BITS);
    return base + ((uint64_t)1 << (msb - SUB_BITS)) - 1;
}

static inline void hist_add(struct hist *h, uint64_t ns)
{
    h->n[bucket_of(ns)]++;
    if (ns > h->max) {
        h->max = ns;
    }
}

static inline uint64_t hist_total(const struct hist *h)
{
    uint64_t t = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        t += h->n[b];
    }
    return t;
}

/* The value at quantile q (0..1), as the top of its bucket (capped at the max seen). */
static inline uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t total = hist_total(h);
    if (total == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank == 0) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        seen += h->n[b];
        if (seen >= rank) {
            uint64_t top = bucket_top(b);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

#endif
