#!/usr/bin/env python3
"""perf_table.py - issue 7's performance table: memstashd against memcached 1.6.

Driven by bench/perf_table.sh (read it for the knobs). Both servers run with
the same flags (-t 2 -m 1024 -c 4096), are driven by the same load generator
(`memstash bench --threads`, epoll, a few client threads with many connections
each), and alternate A B A B run by run. Each round starts both servers
fresh, preloads the same keys, then runs every row on A then B (the order of
A and B flips every round). The table shows medians over the rounds and the
memstashd/memcached ratios; the raw runs go to a CSV in bench/results/.

Server CPU per request is the server's utime+stime from /proc/PID/stat over
one bench invocation, divided by the requests it answered in that time
(measured rate x (warm-up + measured seconds)).

A benchmark, not a test: it asserts nothing and exits 0 unless something
could not run.
"""
import csv
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUICK = os.environ.get("QUICK", "0") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "3"))
SECS = float(os.environ.get("SECONDS_PER_RUN", "1" if QUICK else "4"))
CLIENT_THREADS = int(os.environ.get("CLIENT_THREADS", "2"))
KEYS = int(os.environ.get("KEYS", "100000"))
BIG_KEYS = int(os.environ.get("BIG_KEYS", "20000"))
IDLE_CONNS = int(os.environ.get("IDLE_CONNS", "2000" if QUICK else "10000"))
SERVER_FLAGS = os.environ.get("SERVER_FLAGS", "-t 2 -m 1024 -c 4096 -U 0 -l 127.0.0.1").split()
MEMSTASHD = os.environ.get("MEMSTASHD", os.path.join(ROOT, "build/src/server/memstashd"))
MEMCACHED = os.environ.get("MEMCACHED", "/usr/bin/memcached")
CLI = os.environ.get("MEMSTASH", os.path.join(ROOT, "build/src/cli/memstash"))
PORT = int(os.environ.get("PORT", "22140"))
OUT = os.path.join(ROOT, "bench/results")
IMG = os.environ.get("IMG_DIR", os.path.join(ROOT, "docs/img"))
SWEEP = [int(x) for x in os.environ.get(
    "SWEEP", "4,50,200" if QUICK else "1,4,16,50,200,800").split(",")]
SERVERS = [("memcached", MEMCACHED, PORT), ("memstashd", MEMSTASHD, PORT + 1)]
HZ = os.sysconf("SC_CLK_TCK")

# name, bench args, metric for the ratio, goal (ratio), description
ROWS = [
    ("get1", "-P text --ratio 1:0 --connections 50", "ops_per_sec", 1.0,
     "get, 1 key/request, no pipelining, 50 conns"),
    ("get_p16", "-P text --ratio 1:0 --connections 50 --pipeline 16", "ops_per_sec", 1.3,
     "get, pipeline depth 16"),
    ("set11_p16", "-P text --ratio 1:1 --connections 50 --pipeline 16", "ops_per_sec", 1.3,
     "get:set 1:1, pipeline 16"),
    ("set_p16", "-P text --ratio 0:1 --connections 50 --pipeline 16", "ops_per_sec", 1.3,
     "set only, pipeline 16"),
    ("mget50", "-P text --ratio 1:0 --connections 50 --multi 50", "keys_per_sec", 1.1,
     "multi-get of 50 keys (keys/s)"),
    ("meta_p16", "-P meta --ratio 1:0 --connections 50 --pipeline 16", "ops_per_sec", 1.2,
     "meta mg, pipeline 16"),
    ("bin_p16", "-P binary --ratio 1:0 --connections 50 --pipeline 16", "ops_per_sec", 1.2,
     "binary get, pipeline 16"),
    ("big16k", "-P text --ratio 1:0 --connections 50 --value-size 16384", "ops_per_sec", 1.0,
     "get of 16 KB values"),
]
LAT_LOADS = [0.5, 0.8]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, proc):
    for _ in range(100):
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not start")


def start(binary, port, extra=()):
    flags = list(SERVER_FLAGS)
    if extra:
        flags = [f for f in flags]
        for k, v in zip(extra[::2], extra[1::2]):
            if k in flags:
                flags[flags.index(k) + 1] = v
            else:
                flags += [k, v]
    if os.getuid() == 0:
        flags += ["-u", "root"]
    proc = subprocess.Popen([binary, "-p", str(port)] + flags)
    wait_port(port, proc)
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench(port, args, secs=None, extra=()):
    cmd = [CLI, "-s", f"127.0.0.1:{port}", "bench", "--threads", str(CLIENT_THREADS),
           "--time", str(secs or SECS), "--keys", str(KEYS), "--key-size", "32",
           "--json"] + args.split() + list(extra)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120 + 3 * (secs or SECS))
    if r.returncode not in (0, 3) or not r.stdout.strip():
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def measured(proc, port, args, secs=None, extra=()):
    """One bench run with the server's CPU over it."""
    c0 = cpu_ticks(proc.pid)
    res = bench(port, args, secs, extra)
    cpu = (cpu_ticks(proc.pid) - c0) / HZ
    secs = secs or SECS
    served = res["ops_per_sec"] * (secs + min(1.0, secs * 0.1))
    res["server_cpu_us_per_req"] = cpu * 1e6 / served if served else 0
    res["server_cpu_s"] = cpu
    return res


def preload(port, value_size, keys):
    bench(port, f"-P text --ratio 1:0 --connections 1 --value-size {value_size}", 0.2,
          ["--keys", str(keys)])


def idle_conn_bytes(binary, port, maxconns=None):
    """RSS delta per connection over IDLE_CONNS idle ones; -c is IDLE_CONNS + 100 unless given."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE_CONNS + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    proc = start(binary, port, ["-c", str(maxconns or IDLE_CONNS + 100)])
    socks = []
    try:
        # One connection served first, so lazily made per-worker state exists before the baseline.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"version\r\n")
        s.recv(100)
        s.close()
        time.sleep(0.3)
        base = rss_kb(proc.pid)
        for i in range(IDLE_CONNS):
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
        for s in socks:  # every connection has been served once, then sits idle
            s.sendall(b"version\r\n")
        for s in socks:
            s.recv(100)
        time.sleep(0.5)
        after = rss_kb(proc.pid)
        return (after - base) * 1024 / IDLE_CONNS
    finally:
        for s in socks:
            s.close()
        stop(proc)


def median(xs):
    return statistics.median(xs) if xs else 0.0


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(IMG, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    csv_path = os.path.join(OUT, f"perf-{stamp}.csv")
    fields = ["round", "row", "server", "connections", "rate_target", "ops_per_sec",
              "keys_per_sec", "server_cpu_us_per_req", "client_cpu_us_per_op", "p50", "p90",
              "p99", "p99.9", "max", "errors", "hits", "gets", "value"]
    rows = []
    out = open(csv_path, "w", newline="")
    w = csv.DictWriter(out, fieldnames=fields)
    w.writeheader()

    def record(rnd, row, server, res, value=""):
        lat = res.get("latency_us", {})
        d = {"round": rnd, "row": row, "server": server,
             "connections": res.get("connections", ""), "rate_target": res.get("rate_target", 0),
             "ops_per_sec": res.get("ops_per_sec", 0), "keys_per_sec": res.get("keys_per_sec", 0),
             "server_cpu_us_per_req": res.get("server_cpu_us_per_req", 0),
             "client_cpu_us_per_op": res.get("client_cpu_us_per_op", 0),
             "p50": lat.get("p50", 0), "p90": lat.get("p90", 0), "p99": lat.get("p99", 0),
             "p99.9": lat.get("p99.9", 0), "max": lat.get("max", 0),
             "errors": res.get("errors", 0), "hits": res.get("hits", 0),
             "gets": res.get("gets", 0), "value": value}
        rows.append(d)
        w.writerow(d)
        out.flush()
        log(f"  r{rnd} {row:10s} {server:9s} {d['ops_per_sec']:>11.0f} ops/s "
            f"{d['keys_per_sec']:>11.0f} keys/s srv {d['server_cpu_us_per_req']:6.2f} us/req "
            f"cli {d['client_cpu_us_per_op']:6.2f} us/op p99 {d['p99']:8.1f} us "
            f"err {d['errors']}")

    order = list(SERVERS)
    for rnd in range(1, ROUNDS + 1):
        log(f"round {rnd}/{ROUNDS}: {order[0][0]} first")
        procs = {name: start(binary, port) for name, binary, port in SERVERS}
        try:
            for name, _, port in SERVERS:
                preload(port, 100, KEYS)
            for row, args, _, _, _ in ROWS:
                if row == "big16k":
                    for name, _, port in SERVERS:
                        preload(port, 16384, BIG_KEYS)
                    args = args + f" --keys {BIG_KEYS}"
                for name, _, port in order:
                    record(rnd, row, name, measured(procs[name], port, args))
            # Throughput against the connection count (get, 1 key, no pipelining).
            for name, _, port in SERVERS:
                preload(port, 100, KEYS)
            for conns in SWEEP:
                for name, _, port in order:
                    res = measured(procs[name], port, f"-P text --ratio 1:0 --connections {conns}")
                    record(rnd, f"conns{conns}", name, res, conns)
        finally:
            for p in procs.values():
                stop(p)
        order.reverse()

    # Fixed offered load: a fraction of memcached's median peak on the get1 row.
    peak = median([r["ops_per_sec"] for r in rows
                   if r["row"] == "get1" and r["server"] == "memcached"])
    cdfs = {}
    for rnd in range(1, ROUNDS + 1):
        procs = {name: start(binary, port) for name, binary, port in SERVERS}
        try:
            for name, _, port in SERVERS:
                preload(port, 100, KEYS)
            for load in LAT_LOADS:
                rate = peak * load
                for name, _, port in order:
                    cdf = os.path.join(OUT, f"perf-{stamp}-cdf-{name}-{int(load * 100)}-r{rnd}.txt")
                    res = measured(procs[name], port,
                                   f"-P text --ratio 1:0 --connections 50 --pipeline 8 --rate {rate:.0f}",
                                   extra=["--cdf", cdf])
                    record(rnd, f"lat{int(load * 100)}", name, res, f"{rate:.0f}")
                    cdfs.setdefault((name, load), []).append((res["latency_us"]["p99"], cdf))
        finally:
            for p in procs.values():
                stop(p)
        order.reverse()

    # Memory per idle connection.
    for rnd in range(1, ROUNDS + 1):
        for name, binary, port in order:
            b = idle_conn_bytes(binary, port)
            rows.append({"round": rnd, "row": "idle", "server": name, "value": b})
            w.writerow({"round": rnd, "row": "idle", "server": name, "value": f"{b:.1f}"})
            log(f"  r{rnd} idle       {name:9s} {b:8.1f} B/conn ({IDLE_CONNS} conns)")
        order.reverse()
    out.close()

    def med(row, server, key):
        return median([float(r[key]) for r in rows if r["row"] == row and r["server"] == server])

    def paired(row, key):
        """Median over rounds of memstashd/memcached within the round (adjacent runs)."""
        out = []
        for rnd in range(1, ROUNDS + 1):
            a = [float(r[key]) for r in rows
                 if r["row"] == row and r["server"] == "memcached" and r["round"] == rnd]
            b = [float(r[key]) for r in rows
                 if r["row"] == row and r["server"] == "memstashd" and r["round"] == rnd]
            if a and b and a[0] > 0:
                out.append(b[0] / a[0])
        return median(out)

    lines = []
    lines.append(f"memstashd vs memcached: {ROUNDS} rounds, {SECS:g} s per run, "
                 f"{CLIENT_THREADS} client threads, {KEYS} keys, 32 B keys, 100 B values; "
                 f"medians; server flags {' '.join(SERVER_FLAGS)}")
    lines.append("")
    lines.append("| row | workload | memcached ops/s | memstashd ops/s | ratio | paired | goal | "
                 "srv CPU us/req mc / ms (ratio) | client CPU us/op mc / ms | "
                 "p50 us mc / ms | p99 us mc / ms | p99.9 us mc / ms |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row, _, metric, goal, desc in ROWS:
        a, b = med(row, "memcached", metric), med(row, "memstashd", metric)
        ratio = b / a if a else 0
        ca, cb = (med(row, "memcached", "server_cpu_us_per_req"),
                  med(row, "memstashd", "server_cpu_us_per_req"))
        cratio = cb / ca if ca else 0
        unit = " keys/s" if metric == "keys_per_sec" else ""
        lines.append(
            f"| {row} | {desc} | {a:,.0f}{unit} | {b:,.0f}{unit} | **{ratio:.2f}x** | "
            f"{paired(row, metric):.2f}x | >= {goal}x{' ok' if ratio >= goal else ' MISS'} | "
            f"{ca:.2f} / {cb:.2f} ({cratio:.2f}x, paired "
            f"{paired(row, 'server_cpu_us_per_req'):.2f}x"
            f"{', goal <= 0.85x' if row == 'get1' else ''}) | "
            f"{med(row, 'memcached', 'client_cpu_us_per_op'):.2f} / "
            f"{med(row, 'memstashd', 'client_cpu_us_per_op'):.2f} | "
            f"{med(row, 'memcached', 'p50'):.0f} / {med(row, 'memstashd', 'p50'):.0f} | "
            f"{med(row, 'memcached', 'p99'):.0f} / {med(row, 'memstashd', 'p99'):.0f} | "
            f"{med(row, 'memcached', 'p99.9'):.0f} / {med(row, 'memstashd', 'p99.9'):.0f} |")
    for load in LAT_LOADS:
        row = f"lat{int(load * 100)}"
        goal = 1.0 if load == 0.5 else 0.8
        a99, b99 = med(row, "memcached", "p99"), med(row, "memstashd", "p99")
        a999, b999 = med(row, "memcached", "p99.9"), med(row, "memstashd", "p99.9")
        r99 = b99 / a99 if a99 else 0
        r999 = b999 / a999 if a999 else 0
        ok = "ok" if max(r99, r999) <= goal else "MISS"
        lines.append(
            f"| {row} | fixed load {int(load * 100)}% of memcached peak ({peak * load:,.0f}/s), "
            f"p99 / p99.9 | {a99:.0f} / {a999:.0f} us | {b99:.0f} / {b999:.0f} us | "
            f"**{r99:.2f}x / {r999:.2f}x** | {paired(row, 'p99'):.2f}x / "
            f"{paired(row, 'p99.9'):.2f}x | <= {goal}x {ok} | "
            f"{med(row, 'memcached', 'server_cpu_us_per_req'):.2f} / "
            f"{med(row, 'memstashd', 'server_cpu_us_per_req'):.2f} | "
            f"{med(row, 'memcached', 'client_cpu_us_per_op'):.2f} / "
            f"{med(row, 'memstashd', 'client_cpu_us_per_op'):.2f} | "
            f"{med(row, 'memcached', 'p50'):.0f} / {med(row, 'memstashd', 'p50'):.0f} | "
            f"{a99:.0f} / {b99:.0f} | {a999:.0f} / {b999:.0f} |")
    ia, ib = med("idle", "memcached", "value"), med("idle", "memstashd", "value")
    lines.append(f"| idle | memory per idle connection ({IDLE_CONNS} conns, RSS delta) | "
                 f"{ia:.0f} B | {ib:.0f} B | {ib / ia if ia else 0:.2f}x | | <= 512 B"
                 f"{' ok' if ib <= 512 else ' MISS'} | | | | | |")
    lines.append("")
    lines.append("Throughput against connections (get, 1 key, no pipelining), ops/s medians:")
    lines.append("")
    lines.append("| connections | memcached | memstashd | ratio |")
    lines.append("|---|---|---|---|")
    sweep_path = os.path.join(OUT, f"perf-{stamp}-sweep.dat")
    with open(sweep_path, "w") as f:
        for conns in SWEEP:
            a = med(f"conns{conns}", "memcached", "ops_per_sec")
            b = med(f"conns{conns}", "memstashd", "ops_per_sec")
            f.write(f"{conns} {a:.0f} {b:.0f}\n")
            lines.append(f"| {conns} | {a:,.0f} | {b:,.0f} | {b / a if a else 0:.2f}x |")
    lines.append("")
    lines.append(f"raw CSV: {os.path.relpath(csv_path, ROOT)}")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(OUT, f"perf-{stamp}.md"), "w") as f:
        f.write(table + "\n")
    plot(sweep_path, cdfs)


def plot(sweep_path, cdfs):
    """PNGs with gnuplot: throughput against connections, latency CDFs (median-p99 round)."""
    def pick(name, load):
        runs = sorted(cdfs.get((name, load), []))
        return runs[len(runs) // 2][1] if runs else None

    script = [
        "set terminal pngcairo size 900,560 noenhanced" if has_cairo() else
        "set terminal png size 900,560",
        f"set output '{os.path.join(IMG, 'perf-throughput-connections.png')}'",
        "set title 'get, 1 key/request, no pipelining: throughput against connections'",
        "set xlabel 'connections'", "set ylabel 'ops/s'", "set logscale x", "set grid",
        "set key left top", "set yrange [0:*]",
        f"plot '{sweep_path}' using 1:2 with linespoints lw 2 title 'memcached 1.6', "
        f"'' using 1:3 with linespoints lw 2 title 'memstashd'",
        f"set output '{os.path.join(IMG, 'perf-latency-cdf.png')}'",
        "set title 'get latency CDF at fixed offered load (open loop, 50 connections)'",
        "set xlabel 'latency (us)'", "set ylabel 'fraction of requests'",
        "set logscale x", "set yrange [0:1]", "set key right bottom", "unset logscale y",
    ]
    curves = []
    for load in LAT_LOADS:
        for name in ("memcached", "memstashd"):
            p = pick(name, load)
            if p:
                dash = "dt 1" if name == "memstashd" else "dt 2"
                curves.append(f"'{p}' using 1:2 with lines lw 2 {dash} "
                              f"title '{name} at {int(load * 100)}% of memcached peak'")
    if curves:
        script.append("plot " + ", ".join(curves))
    try:
        subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)
        log(f"plots in {IMG}")
    except (OSError, subprocess.CalledProcessError) as e:
        log(f"no plots: {e} (install gnuplot-nox: make deps-bench)")


def has_cairo():
    try:
        r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
        return "pngcairo" in (r.stdout + r.stderr)
    except OSError:
        return False


if __name__ == "__main__":
    main()
