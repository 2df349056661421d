#!/usr/bin/env python3
"""python_clients.py - ops/s of the memstash Python module against
python-memcached 1.59 (memcache) and pylibmc 1.6 (libmemcached), all three
on the same server, for get, set, get_multi(100) and set_multi(100).

For each round, each operation is timed for every client in turn (A B C, then
B C A, C A B ... as rounds go), so drift on a noisy machine hits all three
alike; many short rounds beat a few long ones there. The report is the
median ops/s per client and operation and the median over rounds of the
per-round ratio memstash/other.
A multi operation counts one op per call (100 keys).

    python3 bench/python_clients.py --server 127.0.0.1:11211 [--rounds 15]
        [--seconds 0.3] [--value-size 100] [--csv out.csv]

The memstash module is imported from $MEMSTASH_PYTHONPATH (or sys.path).
bench/python_clients.sh starts a memstashd and runs this.
"""

import argparse
import csv
import os
import statistics
import sys
import time

if os.environ.get("MEMSTASH_PYTHONPATH"):
    sys.path.insert(0, os.environ["MEMSTASH_PYTHONPATH"])

import memcache  # noqa: E402
import memstash  # noqa: E402
import pylibmc  # noqa: E402

NKEYS = 100
OPS = ("set", "get", "set_multi", "get_multi")


def make_clients(server):
    return [
        ("memstash", memstash.Client([server])),
        ("python-memcached", memcache.Client([server])),
        # pylibmc at its best: TCP_NODELAY, text protocol as the others.
        ("pylibmc", pylibmc.Client([server], binary=False, behaviors={"tcp_nodelay": True})),
    ]


def run_op(client, op, value, keys, mapping, seconds):
    """Calls op for about `seconds`; returns calls per second."""
    n = 0
    i = 0
    batch = 50
    t0 = time.perf_counter()
    deadline = t0 + seconds
    if op == "set":
        while True:
            for _ in range(batch):
                client.set(keys[i % NKEYS], value)
                i += 1
            n += batch
            if time.perf_counter() >= deadline:
                break
    elif op == "get":
        while True:
            for _ in range(batch):
                if client.get(keys[i % NKEYS]) is None:
                    raise SystemExit("get missed: the value was not stored")
                i += 1
            n += batch
            if time.perf_counter() >= deadline:
                break
    elif op == "get_multi":
        while True:
            for _ in range(5):
                got = client.get_multi(keys)
                if len(got) != NKEYS:
                    raise SystemExit("get_multi: %d of %d keys" % (len(got), NKEYS))
            n += 5
            if time.perf_counter() >= deadline:
                break
    elif op == "set_multi":
        while True:
            for _ in range(5):
                failed = client.set_multi(mapping)
                if failed:
                    raise SystemExit("set_multi failed for %d keys" % len(failed))
            n += 5
            if time.perf_counter() >= deadline:
                break
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="host:port of a memcached-compatible server")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=0.3, help="per client, op and round")
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--csv", help="write every measurement here")
    args = ap.parse_args()
    if args.rounds < 1 or args.seconds <= 0:
        ap.error("--rounds >= 1 and --seconds > 0")

    clients = make_clients(args.server)
    value = "v" * args.value_size
    keys = ["bench:py:%03d" % i for i in range(NKEYS)]
    mapping = {k: value for k in keys}
    # Every client reads what it wrote itself (same flags), from the same server.
    rows = []
    results = {(c, op): [] for c, _ in clients for op in OPS}
    for r in range(args.rounds):
        for op in OPS:
            # The order rotates every round (A B C, B C A, C A B...), so no client
            # always runs first or last after another one.
            k = (r + OPS.index(op)) % len(clients)
            for name, client in clients[k:] + clients[:k]:
                client.set_multi(mapping)
                ops = run_op(client, op, value, keys, mapping, args.seconds)
                results[(name, op)].append(ops)
                rows.append({"round": r + 1, "client": name, "op": op, "ops_per_s": round(ops, 1)})
        print("round %d/%d done" % (r + 1, args.rounds), file=sys.stderr, flush=True)

    print("# %d rounds x %.1f s, value %d bytes, server %s, python %s" %
          (args.rounds, args.seconds, args.value_size, args.server, sys.version.split()[0]))
    print("%-14s %14s %18s %12s %10s %10s" %
          ("op", "memstash", "python-memcached", "pylibmc", "vs py-mc", "vs pylibmc"))
    summary = []
    for op in OPS:
        med = {c: statistics.median(results[(c, op)]) for c, _ in clients}
        # Ratios: median over rounds of the per-round ratio (same round, same conditions).
        r_pm = statistics.median(a / b for a, b in zip(results[("memstash", op)],
                                                        results[("python-memcached", op)]))
        r_pl = statistics.median(a / b for a, b in zip(results[("memstash", op)],
                                                        results[("pylibmc", op)]))
        label = op + ("(100)" if op.endswith("multi") else "")
        print("%-14s %14.0f %18.0f %12.0f %9.2fx %9.2fx" %
              (label, med["memstash"], med["python-memcached"], med["pylibmc"], r_pm, r_pl))
        summary.append((op, r_pm, r_pl))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["round", "client", "op", "ops_per_s"])
            w.writeheader()
            w.writerows(rows)
        print("# measurements: %s" % args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
