#!/usr/bin/env python3
"""idle_conn.py - only the "memory per idle connection" row of perf_table.py.

Runs perf_table.idle_conn_bytes (10,000 connections, each served one
"version", then RSS delta / count) for memcached and memstashd, alternating
A B A B, and prints every run and the medians. Both servers get the same
flags. Example (from the repository root):

    python3 bench/perf/idle_conn.py --rounds 5

Options: --rounds N (default 5), --conns N (default 10000), --flags "..."
(default "-t 2 -m 1024 -c 12000 -U 0 -l 127.0.0.1"), --memstashd PATH,
--memcached PATH, --port N. Run as root, "-u root" is added (perf_table.start).
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perf_table  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--flags", default="-t 2 -m 1024 -c 12000 -U 0 -l 127.0.0.1")
    ap.add_argument("--memstashd", default=perf_table.MEMSTASHD)
    ap.add_argument("--memcached", default=perf_table.MEMCACHED)
    ap.add_argument("--port", type=int, default=perf_table.PORT)
    args = ap.parse_args()

    perf_table.SERVER_FLAGS = args.flags.split()
    perf_table.IDLE_CONNS = args.conns
    flags = perf_table.SERVER_FLAGS
    maxconns = int(flags[flags.index("-c") + 1]) if "-c" in flags else None
    servers = [("memcached", args.memcached, args.port), ("memstashd", args.memstashd, args.port + 1)]
    results = {name: [] for name, _, _ in servers}
    for rnd in range(args.rounds):
        order = servers if rnd % 2 == 0 else servers[::-1]
        for name, binary, port in order:
            b = perf_table.idle_conn_bytes(binary, port, maxconns)
            results[name].append(b)
            print(f"r{rnd} {name:9s} {b:7.1f} B/conn", flush=True)
    print(f"median over {args.rounds} rounds, {args.conns} idle connections, flags: {args.flags}")
    for name, _, _ in servers:
        xs = results[name]
        print(f"  {name:9s} {statistics.median(xs):7.1f} B/conn "
              f"(min {min(xs):.1f}, max {max(xs):.1f})")


if __name__ == "__main__":
    main()
