#!/usr/bin/python3
"""storage_missratio.py - target 3: miss ratio of a cache-aside client.

The client does `get`; on a miss it `set`s the key (cache-aside). Keys are
drawn from Zipf(alpha) over a universe sized so its bytes are WS times the
cache (-m); each key has a fixed value size drawn from Facebook's ETC value
distribution, and a fraction of requests (--ohw, default 10%) go to keys used
exactly once (one-hit wonders). Requests go in pipelined batches (--batch
gets, then the sets for that batch's misses), the same for both servers.
The first --warm fraction of requests, and at least every request until
the server's first eviction, warm the cache; the miss ratio is counted over
the rest. Two figures are given: `miss`, every miss counted
(the goal's figure), and `cap_miss`, misses on keys requested before (no
first-time keys, no one-hit wonders): the part an eviction policy can change,
which compulsory misses otherwise hide.

memcached and memstashd run with identical flags, alternating A B A B for
--rounds rounds; each round uses the same key stream for both. Reports the
median miss ratios and memstashd/memcached (goal <= 0.9).

    bench/storage_missratio.py                  # alpha 1.0 and 0.8, WS 2x and 10x, 3 rounds
    bench/storage_missratio.py --quick
"""

import argparse
import random

import storage_lib as L

GOAL = 0.9


def build_universe(n, seed, cap):
    rng = random.Random(seed)
    keys = [L.key_of(i, max(L.etc_key_size(rng), 12)) for i in range(n)]
    sizes = [min(cap, L.etc_value_size(rng)) for _ in range(n)]
    return keys, sizes


def avg_item_bytes(keys, sizes):
    # Payload plus ~memcached's per-item overhead, to size the universe.
    return sum(len(k) + s + 60 for k, s in zip(keys, sizes)) / len(keys)


def stream(zipf, n_req, ohw, seed):
    rng = random.Random(seed)
    ranks = zipf.draw(n_req)
    out = []
    one = 0
    for r in ranks:
        if rng.random() < ohw:
            out.append(-1 - one)  # a one-hit wonder: never requested again
            one += 1
        else:
            out.append(r)
    return out


def run(server, reqs, keys, sizes, batch, warm):
    c = server.connect()
    misses = 0
    counted = 0
    cap_misses = 0
    cap_counted = 0
    seen = set()
    warm_done = False
    nwarm = int(len(reqs) * warm)
    for start in range(0, len(reqs), batch):
        chunk = reqs[start : start + batch]
        names = []
        for r in chunk:
            names.append(keys[r] if r >= 0 else b"ohw:%d" % (-r))
        hits = c.get_many(names)
        todo = {}
        for r, k in zip(chunk, names):
            if k not in hits and k not in todo:
                todo[k] = sizes[r] if r >= 0 else sizes[(-r) % len(sizes)]
        if not warm_done and start >= nwarm and (start // batch) % 20 == 0:
            warm_done = c.stats()["evictions"] > 0
        if warm_done:
            counted += len(chunk)
            misses += sum(1 for k in names if k not in hits)
            for r, k in zip(chunk, names):
                if r >= 0 and r in seen:
                    cap_counted += 1
                    cap_misses += k not in hits
        seen.update(r for r in chunk if r >= 0)
        if todo:
            c.set_noreply([(k, L.value_of(v, len(k))) for k, v in todo.items()])
    c.sync()
    s = c.stats()
    c.close()
    if counted == 0:
        raise RuntimeError("%s never evicted: raise --requests" % server.name)
    return misses / counted, cap_misses / max(1, cap_counted), s["evictions"], s["curr_items"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--memory", type=int, default=64, help="-m for both servers (MiB)")
    ap.add_argument("--alphas", default="1.0,0.8")
    ap.add_argument("--ws", default="2,10", help="working set / cache size ratios")
    ap.add_argument("--requests", type=int, default=2_000_000)
    ap.add_argument("--ohw", type=float, default=0.10)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--warm", type=float, default=0.4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one round, 1M requests")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    n_req = 1_000_000 if args.quick else args.requests
    flags = ["-m", str(args.memory), "-t", "2"]
    cache = args.memory << 20
    rows, summary = [], []
    for ws in (float(x) for x in args.ws.split(",")):
        probe_keys, probe_sizes = build_universe(20000, 7, 256 * 1024)
        n = int(ws * cache / avg_item_bytes(probe_keys, probe_sizes))
        keys, sizes = build_universe(n, 11, 256 * 1024)
        for alpha in (float(x) for x in args.alphas.split(",")):
            zipf = L.Zipf(n, alpha, random.Random(3))
            res = {"memcached": [], "memstashd": []}
            cap = {"memcached": [], "memstashd": []}
            for r in range(rounds):
                reqs = stream(zipf, n_req, args.ohw, 100 + r)
                for name, binary in L.SERVERS:
                    with L.Server(name, binary, flags) as srv:
                        mr, cmr, ev, items = run(srv, reqs, keys, sizes, args.batch, args.warm)
                    res[name].append(mr)
                    cap[name].append(cmr)
                    rows.append([alpha, ws, n, name, r, round(mr, 5), round(cmr, 5), ev, items])
                    L.log("alpha %.1f ws %4.1fx (%d keys) %-9s round %d: miss ratio %.4f, cap_miss %.4f "
                          "(evictions %d, items %d)" % (alpha, ws, n, name, r, mr, cmr, ev, items))
            a, b = L.median(res["memcached"]), L.median(res["memstashd"])
            ca, cb = L.median(cap["memcached"]), L.median(cap["memstashd"])
            summary.append([alpha, ws, n, round(a, 5), round(b, 5), round(b / a, 3), round(ca, 5),
                            round(cb, 5), round(cb / ca, 3) if ca else float("nan"), GOAL, "yes" if b / a <= GOAL else "no"])
    L.log("")
    L.log("%5s %5s %8s %9s %9s %6s %9s %9s %6s %5s %4s" % (
        "alpha", "ws", "keys", "mc_miss", "ms_miss", "ratio", "mc_cap", "ms_cap", "ratio", "goal", "met"))
    for s in summary:
        L.log("%5.1f %5.1f %8d %9.4f %9.4f %6.3f %9.4f %9.4f %6.3f %5.2f %4s" % tuple(s))
    L.log("(miss: all misses after warm-up, the goal's figure; cap: misses on keys seen before)")
    L.write_csv("storage_missratio", ["alpha", "ws", "keys", "server", "round", "miss_ratio",
                                      "cap_miss_ratio", "evictions", "curr_items"], rows)
    L.write_csv("storage_missratio-summary", ["alpha", "ws", "keys", "memcached_miss", "memstashd_miss",
                                              "ratio", "memcached_cap_miss", "memstashd_cap_miss",
                                              "cap_ratio", "goal", "met"], summary)


if __name__ == "__main__":
    main()
