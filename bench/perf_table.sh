#!/usr/bin/env bash
# perf_table.sh - issue 7's table: memstashd against Debian's memcached 1.6, row by row.
#
# Runs every workload on both servers (same flags, same keys preloaded, same
# load generator: `memstash bench --threads`, epoll), alternating A B A B, and
# prints medians and memstashd/memcached ratios with the goals. Raw runs go to
# bench/results/perf-*.csv, the table to bench/results/perf-*.md, and PNG plots
# (throughput against connections, latency CDFs) to docs/img/.
# A benchmark, not a test: it asserts nothing. Full run: about 12 minutes.
#
#   bench/perf_table.sh                  # ROUNDS=3 SECONDS_PER_RUN=4
#   QUICK=1 bench/perf_table.sh          # 1 round of 1 s runs, fewer points (about 1 minute)
#   ROUNDS=5 SECONDS_PER_RUN=8 CLIENT_THREADS=2 KEYS=100000 bench/perf_table.sh
#   MEMSTASHD=/path/memstashd MEMCACHED=/usr/bin/memcached MEMSTASH=/path/memstash ...
# Needs: a build tree (make build), memcached and gnuplot-nox (make deps-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 bench/perf/perf_table.py "$@"
