#!/usr/bin/python3
"""storage_fill.py - targets 1 and 2: items stored under -m until eviction starts.

For each workload, memcached and memstashd are started fresh with the same
flags and filled, one after the other (A B A B ...), with distinct keys in
pipelined `set ... noreply` batches. After every batch a `stats` round trip
reads `evictions` and `curr_items`.

Counting rule (same for both servers): the figure is `curr_items` at the
first stats poll that shows evictions > 0, i.e. at the first eviction, give or
take one batch (--batch, default 1000 sets; the error is reported as
`batch_err`). Filling then continues to 2x that many sets, and curr_items and
RSS are read again ("steady", hash table and everything else included).

Workloads: fixed key/value sizes 20/16, 30/100, 30/200, 40/500 (target 1:
ratio of items, and memstashd RSS within -m + 10%), and `etc`, keys and values
drawn from Facebook's ETC distributions (target 2: items per MiB of RSS).

    bench/storage_fill.py                 # all workloads, 3 rounds, -m 64
    bench/storage_fill.py --quick         # 1 round
    bench/storage_fill.py --workloads 30/100,etc --rounds 5
"""

import argparse
import random
import time

import storage_lib as L

MIB = 1 << 20
GOALS = {"20/16": 1.6, "30/100": 1.25, "30/200": 1.15, "40/500": 1.05, "etc": 1.25}


def sizes_for(workload, seed):
    if workload == "etc":
        rng = random.Random(seed)
        while True:
            yield L.etc_key_size(rng), L.etc_value_size(rng)
    k, v = (int(x) for x in workload.split("/"))
    while True:
        yield k, v


def fill(server, workload, batch, seed, max_items, max_seconds):
    c = server.connect()
    gen = sizes_for(workload, seed)
    sent = 0
    first = None
    deadline = time.monotonic() + max_seconds
    stop_at = max_items
    while sent < stop_at and time.monotonic() < deadline:
        items = []
        for _ in range(batch):
            ks, vs = next(gen)
            items.append((L.key_of(sent, max(ks, 12)), L.value_of(vs, sent)))
            sent += 1
        c.set_noreply(items)
        s = c.stats()
        if first is None and s["evictions"] > 0:
            first = {"items": s["curr_items"], "bytes": s["bytes"], "rss": server.rss(), "sets": sent}
            stop_at = min(max_items, 2 * sent)
    s = c.stats()
    c.close()
    if first is None:
        raise RuntimeError("%s never evicted within %d sets" % (server.name, sent))
    return first, {"items": s["curr_items"], "bytes": s["bytes"], "rss": server.rss(), "sets": sent}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--memory", type=int, default=64, help="-m for both servers (MiB)")
    ap.add_argument("--workloads", default="20/16,30/100,30/200,40/500,etc")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="one round")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    flags = ["-m", str(args.memory), "-t", str(args.threads)]
    limit_rss = args.memory * MIB * 1.10
    rows = []
    summary = []
    for wl in args.workloads.split(","):
        per = {name: [] for name, _ in L.SERVERS}
        for r in range(rounds):
            for name, binary in L.SERVERS:
                with L.Server(name, binary, flags) as srv:
                    first, steady = fill(srv, wl, args.batch, 1000 + r, 40_000_000, 300)
                per[name].append((first, steady))
                rows.append([wl, name, r, first["items"], first["sets"], first["rss"], steady["items"],
                             steady["sets"], steady["rss"], args.batch])
                L.log("%-7s %-9s round %d: %8d items at first eviction (rss %.1f MiB), "
                      "%8d steady (rss %.1f MiB)" % (wl, name, r, first["items"], first["rss"] / MIB,
                                                    steady["items"], steady["rss"] / MIB))
        med = {}
        for name in per:
            med[name] = {
                "items": L.median([f["items"] for f, _ in per[name]]),
                "rss": L.median([s["rss"] for _, s in per[name]]),
                "steady": L.median([s["items"] for _, s in per[name]]),
            }
        a, b = med["memcached"], med["memstashd"]
        ratio = b["items"] / a["items"]
        per_mib = (b["steady"] / (b["rss"] / MIB)) / (a["steady"] / (a["rss"] / MIB))
        metric = per_mib if wl == "etc" else ratio
        goal = GOALS.get(wl, 0)
        summary.append([wl, a["items"], b["items"], round(ratio, 3), a["rss"], b["rss"],
                        round(per_mib, 3), goal, "yes" if metric >= goal else "no",
                        "yes" if b["rss"] <= limit_rss else "no"])
    L.log("")
    L.log("%-7s %10s %10s %7s %9s %9s %8s %5s %4s %7s" % ("wl", "mc_items", "ms_items", "ratio",
          "mc_rssMiB", "ms_rssMiB", "per_MiB", "goal", "met", "rss_ok"))
    for s in summary:
        L.log("%-7s %10d %10d %7.3f %9.1f %9.1f %8.3f %5.2f %4s %7s" % (
            s[0], s[1], s[2], s[3], s[4] / MIB, s[5] / MIB, s[6], s[7], s[8], s[9]))
    L.log("(ratio = items at first eviction; per_MiB = steady items per MiB of RSS; "
          "the goal applies to ratio for fixed sizes and per_MiB for etc; "
          "rss_ok = memstashd steady RSS <= -m + 10%)")
    L.write_csv("storage_fill", ["workload", "server", "round", "items_first_eviction", "sets_first_eviction",
                                 "rss_first_eviction", "items_steady", "sets_steady", "rss_steady",
                                 "batch_err"], rows)
    L.write_csv("storage_fill-summary", ["workload", "memcached_items", "memstashd_items", "ratio",
                                         "memcached_rss", "memstashd_rss", "items_per_mib_ratio", "goal",
                                         "met", "memstashd_rss_within_10pct"], summary)


if __name__ == "__main__":
    main()
