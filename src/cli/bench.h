/*
 * bench.h - `memstash bench`: a load generator over libmemstash.
 *
 * Each connection is a thread with its own handle cloned from the tool's
 * configured one. Every operation is a get (a get_multi of `multi` keys
 * when multi > 1) or a set, in the ratio asked, on keys drawn uniformly or
 * with Zipf popularity from a fixed key space. A progress line goes to
 * stderr every second; the end report gives ops/s and a latency histogram
 * with p50/p90/p99/p99.9. The run is bounded by a time, an operation
 * count, or both (whichever comes first).
 */
#ifndef MEMSTASH_CLI_BENCH_H
#define MEMSTASH_CLI_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mst;

struct bench_opts {
    double seconds;      /* 0: no time limit */
    uint64_t count;      /* operations in all; 0: no count limit */
    unsigned get_weight; /* get:set ratio */
    unsigned set_weight;
    unsigned multi;       /* keys per get (1: mst_get) */
    size_t value_size;    /* bytes per value */
    unsigned connections; /* threads, one handle each */
    uint64_t keys;        /* key space */
    double zipf;          /* exponent; 0: uniform */
    bool prefill;         /* set every key before measuring */
    bool json;
    /* The epoll engine (loadgen.h) runs when threads > 0. */
    unsigned threads;     /* client threads; the connections are spread over them */
    unsigned pipeline;    /* requests in flight per connection (default 1) */
    double rate;          /* offered ops/s over all threads; 0: closed loop */
    size_t key_size;      /* bytes per key (default 32) */
    const char *cdf_path; /* write the latency CDF here */
};

/* Defaults: 10 s, 9:1, multi 1, 100 B, 4 connections, 10000 keys, uniform, prefill. */
void bench_defaults(struct bench_opts *o);

/* Parses "G:S" (e.g. "9:1", "1:0"); false if malformed or both are 0. */
bool bench_parse_ratio(const char *s, unsigned *get, unsigned *set);

/*
 * Runs the benchmark with handles cloned from tmpl. Returns the tool's exit
 * code: 0, or 3 when operations failed (or none could run).
 */
int bench_run(const struct mst *tmpl, const struct bench_opts *o);

#endif
