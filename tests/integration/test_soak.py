"""Soak: hundreds of connections of random work for SOAK_SECONDS (default 60).

20 client threads each keep 10 connections open (200 in all, under -c 400),
every connection speaking one protocol (text, meta or binary) picked at
random, and run random requests on overlapping keys: single requests,
pipelined bursts, malformed requests, flush_all and stats, plus clients
that leave halfway through a value, slow readers that pipeline gets of a big
value and stop reading for a while, and connection churn.  Asserted:
- the server stays up and exits cleanly at the end (the conftest teardown
  checks the exit code and that no sanitizer, LeakSanitizer included,
  reported anything);
- every reply parses as well-formed and every value read back verifies (it
  was written for that key: mixload.py);
- the RSS (VmRSS of /proc/PID/status, sampled every 0.5 s) stays under
  -m plus RSS_SLACK_MB (more in the ASan tree, whose allocator keeps
  freed memory in quarantine and has shadow memory).
The figures are printed at the end (run pytest with -s to see them).
"""

import os
import random
import threading
import time
import traceback

import mixload
from conftest import MEMSTASHD, pid_alive

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
THREADS = 20
CONNS_PER_THREAD = 10
MEM_MB = 16


def is_asan(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


ASAN = is_asan(MEMSTASHD)
# memstashd normally stays well under -m + 40 MiB (buffers of 200
# connections, the hash table, thread stacks); ASan adds its shadow,
# quarantine (capped below) and allocator metadata.
RSS_SLACK_MB = 112 if ASAN else 48


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def soak_thread(port, stats, writer, deadline, errors):
    w = mixload.Workload("127.0.0.1", port, stats, writer, nkeys=500,
                         seed=random.randrange(1 << 30), flush_every=20000)
    protos = ("text", "meta", "binary")
    conns = []
    try:
        for _ in range(CONNS_PER_THREAD):
            conns.append([w.connect(), w.rng.choice(protos)])
        while time.monotonic() < deadline:
            r = w.rng.random()
            if r < 0.01:
                w.disconnect_mid_value()
                continue
            if r < 0.015:
                w.slow_reader(nget=4, size=256 * 1024, pause=0.3)
                continue
            slot = conns[w.rng.randrange(len(conns))]
            if r < 0.03:
                # churn: this slot gets a fresh connection
                slot[0].close()
                slot[0], slot[1] = w.connect(), w.rng.choice(protos)
                continue
            if r < 0.10:
                w.run_burst(slot[0], slot[1], w.rng.randrange(2, 50))
            else:
                w.run_ops(slot[0], slot[1], w.rng.randrange(1, 10))
    except Exception:  # noqa: BLE001 - reported by the test
        errors.append(traceback.format_exc())
    finally:
        for c, _ in conns:
            c.close()


def test_soak(server_factory):
    if ASAN:
        # keep ASan's quarantine of freed memory small so RSS means something
        os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + \
            ":quarantine_size_mb=16"
    srv = server_factory("-m", str(MEM_MB), "-c", "400", "-t", "4")
    stats = mixload.Stats()
    errors = []
    deadline = time.monotonic() + SOAK_SECONDS
    threads = [threading.Thread(target=soak_thread,
                                args=(srv.port, stats, i, deadline, errors))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    max_rss = 0
    samples = 0
    try:
        while any(t.is_alive() for t in threads):
            assert pid_alive(srv.pid), "server died during the soak"
            max_rss = max(max_rss, rss_kb(srv.pid))
            samples += 1
            time.sleep(0.5)
    finally:
        for t in threads:
            t.join(SOAK_SECONDS + 120)
    assert not any(t.is_alive() for t in threads), "client threads did not finish"
    assert srv.alive(), "server exited during the soak"
    # still serving, and the counters agree that much happened
    with srv.client() as c:
        s = c.stats()
    figures = stats.as_dict()
    print("\nsoak: %.0f s, %d client threads x %d connections; %s; server total_connections=%s "
          "curr_items=%s evictions=%s; max RSS %.1f MiB (limit -m %d + %d MiB, %d samples)%s"
          % (SOAK_SECONDS, THREADS, CONNS_PER_THREAD,
             " ".join("%s=%d" % kv for kv in figures.items()), s["total_connections"],
             s["curr_items"], s["evictions"], max_rss / 1024.0, MEM_MB, RSS_SLACK_MB, samples,
             " [ASan]" if ASAN else ""))
    assert not errors, "%d client thread(s) failed; first:\n%s" % (len(errors), errors[0])
    assert figures["ops"] > 1000 and figures["verified"] > 100
    assert figures["malformed"] > 0 and figures["mid_value_disconnects"] > 0
    assert figures["slow_readers"] > 0 and figures["bursts"] > 0
    assert int(s["total_connections"]) >= THREADS * CONNS_PER_THREAD
    assert max_rss <= (MEM_MB + RSS_SLACK_MB) * 1024, \
        "RSS %d KiB over -m %d MiB + %d MiB" % (max_rss, MEM_MB, RSS_SLACK_MB)
