/*
 * fuzz_common.h - helpers shared by the libFuzzer drivers in tests/fuzz/.
 *
 * FUZZ_CHECK() aborts with the failed condition, file and line, so that a
 * broken invariant shows up in libFuzzer as a crash with a reproducer, just
 * like a sanitizer report. fuzz_copy() gives a parser exactly the bytes it
 * may read, in a heap block of that size, so that AddressSanitizer reports
 * any read past them.
 *
 * What this is not: a test framework. Only the drivers in this folder use
 * it, and everything is static inline so each driver stays one file.
 */
#ifndef MEMSTASH_FUZZ_COMMON_H
#define MEMSTASH_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noreturn)) static inline void fuzz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", what, file, line);
    abort();
}

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fuzz_fail(#cond, __FILE__, __LINE__);                                                  \
        }                                                                                          \
    } while (0)

/* A heap copy of p[0..n) in a block of exactly n bytes (1 when n is 0). */
static inline char *fuzz_copy(const void *p, size_t n)
{
    char *c = malloc(n > 0 ? n : 1);
    if (c == NULL) {
        abort();
    }
    if (n > 0) {
        memcpy(c, p, n);
    }
    return c;
}

/* True when [p, p + n) lies inside [base, base + len). A NULL p needs n == 0. */
static inline bool fuzz_span_in(const char *p, size_t n, const char *base, size_t len)
{
    if (p == NULL) {
        return n == 0;
    }
    return p >= base && p <= base + len && n <= (size_t)(base + len - p);
}

/* Offset of p from base, or -1 for NULL: compares spans of two copies. */
static inline long fuzz_off(const void *p, const void *base)
{
    return p == NULL ? -1L : (long)((const char *)p - (const char *)base);
}

/* FNV-1a, to seed the split choices and to fingerprint held values. */
static inline uint64_t fuzz_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ s[i]) * 1099511628211ull;
    }
    return h;
}

/* xorshift64*: deterministic chunk sizes for the streaming replays. */
static inline uint64_t fuzz_rand(uint64_t *state)
{
    uint64_t x = *state != 0 ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ull;
}

#endif
