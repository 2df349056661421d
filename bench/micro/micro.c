/*
 * micro.c - runs micro benchmark cases and reports ns/op and ops/s (see micro.h).
 */
#include "micro.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int micro_main(int argc, char **argv, const struct micro_case *cases, unsigned ncases,
               uint64_t default_n)
{
    uint64_t n = default_n;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "-n") == 0) {
        n = strtoull(argv[2], NULL, 10);
        first = 3;
    }
    if (n == 0) {
        fprintf(stderr, "usage: %s [-n COUNT] [case...]\n", argv[0]);
        return 2;
    }
    int rc = 0;
    for (unsigned i = 0; i < ncases; i++) {
        int wanted = first >= argc;
        for (int a = first; a < argc; a++) {
            wanted |= strcmp(argv[a], cases[i].name) == 0;
        }
        if (!wanted) {
            continue;
        }
        double t0 = now_s();
        uint64_t sum = cases[i].run(n);
        double dt = now_s() - t0;
        if (sum == 0) {
            fprintf(stderr, "%s: checksum 0, the case did no work\n", cases[i].name);
            rc = 1;
        }
        printf("%-24s %10llu ops %9.1f ns/op %12.0f ops/s\n", cases[i].name, (unsigned long long)n,
               dt * 1e9 / (double)n, (double)n / dt);
    }
    return rc;
}
