#!/usr/bin/python3
"""storage_hashgrow.py - target 6: no request stalls while the hash table grows.

Each server starts with the default hash table (2^16 buckets) and a memory
limit large enough for every item (--memory, default 2048 MiB), and is loaded
with --items distinct small items (default 10 million, key 20 / value 16)
through pipelined `set ... noreply` batches. Meanwhile a separate probe
process sends single `get`s of a hot key back to back (one in flight) and
records each round trip. The loader polls `stats` after every batch, noting
when `hash_is_expanding` is 1, so probe samples can be split into "during
growth" and "outside growth".

Reports per server: the expansions seen (hash_power_level from .. to), probe
p50/p99/p99.9/max in ms during growth and outside, and how many samples took
more than 1 ms. The machine's scheduler noise also shows up as >1 ms samples,
outside growth as much as inside, which is why both are given, for both
servers. Alternates A B for --rounds rounds.

    bench/storage_hashgrow.py                    # 10M items, 1 round
    bench/storage_hashgrow.py --quick            # 2M items
"""

import argparse
import multiprocessing as mp
import time

import storage_lib as L


def probe(port, stop, out):
    c = L.Conn(port)
    key = b"hot:probe"
    c.set_noreply([(key, b"x" * 16)])
    c.sync()
    samples = []
    while not stop.is_set():
        t0 = time.monotonic()
        c.send(b"get hot:probe\r\n")
        while c.readline() != b"END":
            pass
        samples.append((t0, time.monotonic() - t0))
    c.close()
    out.put(samples)


def pct(xs, p):
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def one(srv, args):
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    q = ctx.Queue()
    pr = ctx.Process(target=probe, args=(srv.port, stop, q))
    pr.start()
    c = srv.connect()
    s = c.stats()
    power0 = s["hash_power_level"]
    intervals = []  # (start, end) of observed growth
    grow_start = None
    i = 0
    t_start = time.monotonic()
    while i < args.items:
        m = min(args.batch, args.items - i)
        c.set_noreply([(L.key_of(i + j, args.klen), L.value_of(args.vlen, j)) for j in range(m)])
        i += m
        s = c.stats()
        now = time.monotonic()
        if s["hash_is_expanding"] and grow_start is None:
            grow_start = prev_now if i > m else t_start
        elif not s["hash_is_expanding"] and grow_start is not None:
            intervals.append((grow_start, now))
            grow_start = None
        prev_now = now
    # Let a growth still under way finish.
    deadline = time.monotonic() + 30
    while grow_start is not None and time.monotonic() < deadline:
        s = c.stats()
        if not s["hash_is_expanding"]:
            intervals.append((grow_start, time.monotonic()))
            grow_start = None
        time.sleep(0.01)
    load_secs = time.monotonic() - t_start
    stop.set()
    samples = q.get(timeout=60)
    pr.join(timeout=30)
    s = c.stats()
    c.close()

    def during(t):
        return any(a <= t <= b for a, b in intervals)

    grow = sorted(d * 1e3 for t, d in samples if during(t))
    rest = sorted(d * 1e3 for t, d in samples if not during(t) and t >= t_start)
    return {
        "power_from": power0, "power_to": s["hash_power_level"], "growths": len(intervals),
        "growth_secs": sum(b - a for a, b in intervals), "items": s["curr_items"],
        "evictions": s["evictions"], "load_secs": load_secs,
        "grow_n": len(grow), "grow_p50": pct(grow, 0.5), "grow_p99": pct(grow, 0.99),
        "grow_p999": pct(grow, 0.999), "grow_max": grow[-1] if grow else float("nan"),
        "grow_over1ms": sum(1 for d in grow if d > 1.0),
        "rest_n": len(rest), "rest_p99": pct(rest, 0.99), "rest_p999": pct(rest, 0.999),
        "rest_max": rest[-1] if rest else float("nan"), "rest_over1ms": sum(1 for d in rest if d > 1.0),
    }


FIELDS = ["power_from", "power_to", "growths", "growth_secs", "items", "evictions", "load_secs", "grow_n",
          "grow_p50", "grow_p99", "grow_p999", "grow_max", "grow_over1ms", "rest_n", "rest_p99", "rest_p999",
          "rest_max", "rest_over1ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--memory", type=int, default=2048)
    ap.add_argument("--items", type=int, default=10_000_000)
    ap.add_argument("--klen", type=int, default=20)
    ap.add_argument("--vlen", type=int, default=16)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="2M items")
    args = ap.parse_args()
    if args.quick:
        args.items = 2_000_000
    flags = ["-m", str(args.memory), "-t", "2"]
    rows = []
    res = {"memcached": [], "memstashd": []}
    for r in range(args.rounds):
        for name, binary in L.SERVERS:
            with L.Server(name, binary, flags) as srv:
                out = one(srv, args)
            res[name].append(out)
            rows.append([name, r] + [round(out[f], 4) if isinstance(out[f], float) else out[f] for f in FIELDS])
            L.log("%-9s round %d: " % (name, r) + " ".join(
                ("%s=%.3f" if isinstance(out[f], float) else "%s=%d") % (f, out[f]) for f in FIELDS))
    L.log("")
    summary = []
    for name in res:
        med = {f: L.median([o[f] for o in res[name]]) for f in FIELDS}
        summary.append([name] + [round(med[f], 4) for f in FIELDS])
        L.log("%-9s growth %d->%d: during growth p99 %.3f ms p99.9 %.3f ms max %.3f ms, %d of %d samples "
              "> 1 ms; outside growth p99.9 %.3f ms max %.3f ms, %d of %d > 1 ms" % (
                  name, med["power_from"], med["power_to"], med["grow_p99"], med["grow_p999"],
                  med["grow_max"], med["grow_over1ms"], med["grow_n"], med["rest_p999"], med["rest_max"],
                  med["rest_over1ms"], med["rest_n"]))
    L.write_csv("storage_hashgrow", ["server", "round"] + FIELDS, rows)
    L.write_csv("storage_hashgrow-summary", ["server"] + FIELDS, summary)


if __name__ == "__main__":
    main()
