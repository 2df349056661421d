/*
 * micro.h - the tiny harness shared by the in-process micro benchmarks.
 *
 * A benchmark is a function that runs `n` operations of one kind and returns
 * a checksum (so the compiler cannot drop the work). micro_main() runs the
 * cases named on the command line (all by default) `n` times each and prints
 * "name ops ns/op ops/s". Instructions per op come from callgrind: see
 * run_callgrind.sh, which runs a case at two counts and divides the
 * difference, so setup costs cancel out.
 */
#ifndef MEMSTASH_BENCH_MICRO_H
#define MEMSTASH_BENCH_MICRO_H

#include <stdint.h>

struct micro_case {
    const char *name;
    uint64_t (*run)(uint64_t n);
};

/* argv: [-n COUNT] [case...]; returns the process exit code. */
int micro_main(int argc, char **argv, const struct micro_case *cases, unsigned ncases,
               uint64_t default_n);

#endif
