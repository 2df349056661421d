#!/usr/bin/env python3
"""uring_compare.py - memstashd -o io_uring against the default (epoll) path and memcached.

Three columns in one run, on the rows of issue 7's table that say most about
a transport: 1-key get with 50 connections, get with pipeline depth 16, and
set with pipeline depth 16. The harness is perf_table.py's (same server
flags, preload, load generator, CPU per request from /proc/PID/stat); the
servers run A B C, and the order rotates every round. Prints per-column
medians with the spread (min..max over rounds) and writes the raw runs to
bench/results/uring-*.csv. A benchmark, not a test: it asserts nothing.

  bench/perf/uring_compare.py                     # ROUNDS=3 SECONDS_PER_RUN=4
  ROUNDS=5 SECONDS_PER_RUN=3 bench/perf/uring_compare.py
  URING_ENV="NAME=VALUE ..." adds variables to the io_uring server's environment.
"""
import csv
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perf_table as pt  # noqa: E402

ROWS = [
    ("get1", "-P text --ratio 1:0 --connections 50", "get, 1 key/request, 50 conns"),
    ("get_p16", "-P text --ratio 1:0 --connections 50 --pipeline 16", "get, pipeline 16"),
    ("set_p16", "-P text --ratio 0:1 --connections 50 --pipeline 16", "set, pipeline 16"),
]
URING_ENV = dict(kv.split("=", 1) for kv in os.environ.get("URING_ENV", "").split() if "=" in kv)
SERVERS = [
    ("memcached", pt.MEMCACHED, pt.PORT, [], {}),
    ("memstashd", pt.MEMSTASHD, pt.PORT + 1, [], {}),
    ("ms-io_uring", pt.MEMSTASHD, pt.PORT + 2, ["-o", "io_uring"], URING_ENV),
]


def start(binary, port, extra, env):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return pt.start(binary, port, extra)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main():
    os.makedirs(pt.OUT, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    csv_path = os.path.join(pt.OUT, f"uring-{stamp}.csv")
    fields = ["round", "row", "server", "ops_per_sec", "server_cpu_us_per_req", "p50", "p99",
              "p99.9", "errors"]
    rows = []
    with open(csv_path, "w", newline="") as out:
        w = csv.DictWriter(out, fieldnames=fields)
        w.writeheader()
        order = list(SERVERS)
        for rnd in range(1, pt.ROUNDS + 1):
            pt.log(f"round {rnd}/{pt.ROUNDS}: order {' '.join(s[0] for s in order)}")
            procs = {name: start(b, port, extra, env) for name, b, port, extra, env in SERVERS}
            try:
                for _, _, port, _, _ in SERVERS:
                    pt.preload(port, 100, pt.KEYS)
                for row, args, _ in ROWS:
                    for name, _, port, _, _ in order:
                        res = pt.measured(procs[name], port, args)
                        lat = res.get("latency_us", {})
                        d = {"round": rnd, "row": row, "server": name,
                             "ops_per_sec": res["ops_per_sec"],
                             "server_cpu_us_per_req": res["server_cpu_us_per_req"],
                             "p50": lat.get("p50", 0), "p99": lat.get("p99", 0),
                             "p99.9": lat.get("p99.9", 0), "errors": res.get("errors", 0)}
                        rows.append(d)
                        w.writerow(d)
                        out.flush()
                        pt.log(f"  r{rnd} {row:8s} {name:12s} {d['ops_per_sec']:>10.0f} ops/s "
                               f"srv {d['server_cpu_us_per_req']:5.2f} us/req "
                               f"p50 {d['p50']:7.1f} p99 {d['p99']:8.1f} us err {d['errors']}")
            finally:
                for p in procs.values():
                    pt.stop(p)
            order = order[1:] + order[:1]

    def cell(row, server, key, fmt):
        xs = [float(r[key]) for r in rows if r["row"] == row and r["server"] == server]
        if not xs:
            return "-"
        return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}..{fmt.format(max(xs))})"

    names = [s[0] for s in SERVERS]
    lines = [f"{pt.ROUNDS} rounds x {pt.SECS:g} s, {pt.CLIENT_THREADS} client threads, "
             f"{pt.KEYS} keys, server flags {' '.join(pt.SERVER_FLAGS)}; "
             "median (min..max over rounds)", ""]
    lines.append("| row | metric | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for row, _, desc in ROWS:
        for key, label, fmt in (("ops_per_sec", "ops/s", "{:,.0f}"),
                                ("server_cpu_us_per_req", "server CPU us/req", "{:.2f}"),
                                ("p50", "p50 us", "{:.0f}"), ("p99", "p99 us", "{:.0f}")):
            lines.append(f"| {row} ({desc}) | {label} | " +
                         " | ".join(cell(row, n, key, fmt) for n in names) + " |")
    lines.append("")
    lines.append(f"raw CSV: {os.path.relpath(csv_path, pt.ROOT)}")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(pt.OUT, f"uring-{stamp}.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
