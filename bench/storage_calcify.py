#!/usr/bin/python3
"""storage_calcify.py - target 5: no slab calcification.

Per server (same flags, -m 64):
1. fresh: a new server is filled with --new-size values to its first
   eviction; that curr_items is what a fresh server stores.
2. switch: a new server is filled with --old-size values to 1.5x its
   capacity, then writes switch to --new-size values (new keys) at --rate
   sets per second. Every second, the items of the new size (sum of
   `number` over classes whose chunk is large enough for them, from `stats
   items` and `stats slabs`) are read. Reports the share of `fresh` reached at
   30 s and the time it first reached 90%.

Alternates A B A B for --rounds rounds; reports medians. Goal: >= 90% at 30 s.

    bench/storage_calcify.py               # 3 rounds
    bench/storage_calcify.py --quick
"""

import argparse
import time

import storage_lib as L

GOAL = 0.90


def fill_to_eviction(c, klen, vlen, base, batch, factor=1.0):
    ev0 = c.stats()["evictions"]
    i = 0
    target = None
    while True:
        c.set_noreply([(L.key_of(base + i + j, klen), L.value_of(vlen, j)) for j in range(batch)])
        i += batch
        s = c.stats()
        if target is None and s["evictions"] > ev0:
            target = int(i * factor)
            first = s["curr_items"]
        if target is not None and i >= target:
            return first


def new_size_items(c, min_chunk):
    slabs = c.stats("slabs")
    items = c.stats("items")
    n = 0
    for k, v in slabs.items():
        if k.endswith(":chunk_size") and v >= min_chunk:
            cls = k.split(":")[0]
            n += items.get("items:%s:number" % cls, 0)
    return n


def one(name, binary, flags, args):
    klen, new_total = args.klen, args.klen + args.new_size + 60
    with L.Server(name, binary, flags) as srv:
        c = srv.connect()
        fresh = fill_to_eviction(c, klen, args.new_size, 0, args.batch)
        c.close()
    with L.Server(name, binary, flags) as srv:
        c = srv.connect()
        fill_to_eviction(c, klen, args.old_size, 0, args.batch, 1.5)
        # A chunk that holds a new item is at least new_size + key bytes; old items are far smaller.
        min_chunk = (args.klen + args.new_size + args.klen + args.old_size) // 2 + 48
        assert min_chunk < new_total
        base = 50_000_000
        sent = 0
        start = time.monotonic()
        curve = []
        t90 = None
        next_poll = 1.0
        per_tick = max(1, args.rate // 50)
        while True:
            el = time.monotonic() - start
            if el >= args.seconds:
                break
            want = int(el * args.rate)
            if sent < want:
                m = min(per_tick, want - sent)
                c.set_noreply([(L.key_of(base + sent + j, klen), L.value_of(args.new_size, j))
                               for j in range(m)])
                sent += m
            else:
                time.sleep(0.005)
            if el >= next_poll:
                n = new_size_items(c, min_chunk)
                curve.append((round(el, 1), n))
                if t90 is None and n >= GOAL * fresh:
                    t90 = el
                next_poll += 1.0
        c.sync()
        n = new_size_items(c, min_chunk)
        curve.append((round(time.monotonic() - start, 1), n))
        c.close()
    return {"fresh": fresh, "at_end": n, "share": n / fresh, "t90_s": t90 if t90 else float("inf"),
            "sets": sent, "curve": curve}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--memory", type=int, default=64)
    ap.add_argument("--klen", type=int, default=30)
    ap.add_argument("--old-size", type=int, default=100)
    ap.add_argument("--new-size", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=20000, help="sets per second after the switch")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    flags = ["-m", str(args.memory), "-t", "2"]
    rows = []
    res = {"memcached": [], "memstashd": []}
    for r in range(rounds):
        for name, binary in L.SERVERS:
            out = one(name, binary, flags, args)
            res[name].append(out)
            rows.append([name, r, out["fresh"], out["at_end"], round(out["share"], 4), out["t90_s"], out["sets"]])
            L.log("%-9s round %d: fresh %d, after %ds %d (%.1f%%), 90%% at %.1fs; curve %s" % (
                name, r, out["fresh"], args.seconds, out["at_end"], 100 * out["share"], out["t90_s"],
                " ".join("%g:%d" % p for p in out["curve"][::3])))
    L.log("")
    summary = []
    for name in res:
        share = L.median([o["share"] for o in res[name]])
        t90 = L.median([o["t90_s"] for o in res[name]])
        summary.append([name, round(share, 4), t90, GOAL, "yes" if share >= GOAL else "no"])
        L.log("%-9s median share of fresh at %ds: %.3f, time to 90%%: %.1fs -> %s" % (
            name, args.seconds, share, t90, "met" if share >= GOAL else "not met"))
    L.write_csv("storage_calcify", ["server", "round", "fresh_items", "new_items_at_end", "share",
                                    "t90_s", "sets_after_switch"], rows)
    L.write_csv("storage_calcify-summary", ["server", "share", "t90_s", "goal", "met"], summary)


if __name__ == "__main__":
    main()
