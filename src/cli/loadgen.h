/*
 * loadgen.h - the epoll engine of `memstash bench` (--threads N).
 *
 * Unlike the default engine (one thread and one libmemstash handle per
 * connection, one request in flight), this one speaks the wire protocol
 * itself so that a few threads can drive many connections: each thread owns
 * an epoll set of non-blocking sockets to one server. It can keep several
 * requests in flight per connection (--pipeline), speak text, meta or binary,
 * and run open-loop at a fixed offered rate (--rate), where each latency is
 * measured from the moment the request was due, not from when it could be
 * sent, so a stalled server is not hidden (no coordinated omission).
 *
 * It reports ops/s, keys/s, p50..p99.9 and the client's own CPU time per
 * operation, and can write the latency CDF to a file for plotting.
 */
#ifndef MEMSTASH_CLI_LOADGEN_H
#define MEMSTASH_CLI_LOADGEN_H

#include "bench.h"

/*
 * Runs the epoll engine against the first server of `servers` ("host:port,...")
 * speaking `protocol` ("text", "meta" or "binary"; NULL is text). Returns the
 * tool's exit code: 0, 2 for a bad server or protocol, 3 on failures.
 */
int loadgen_run(const char *servers, const char *protocol, const struct bench_opts *o);

#endif
