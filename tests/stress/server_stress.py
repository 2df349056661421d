#!/usr/bin/python3
"""server_stress.py - many client threads against one memstashd over TCP.

Used by `make tsan` against a ThreadSanitizer build: every worker thread of
the server, the listener and the background thread run at once while the
clients mix text, meta and binary requests on overlapping keys (with
flush_all, stats of every group, malformed requests, pipelined bursts,
clients leaving mid-value, slow readers) and open and close connections all
the time.  Replies are checked as they arrive (tests/integration/mixload.py).

Usage: server_stress.py MEMSTASHD [--threads N] [--seconds S]
Exit status 0 when the server answered well throughout, exited 0 on SIGTERM
and printed no sanitizer report; 1 otherwise.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import mixload  # noqa: E402

MARKERS = ("ThreadSanitizer", "AddressSanitizer", "LeakSanitizer", "runtime error:")


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_port(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def client_thread(port, stats, writer, deadline, errors):
    w = mixload.Workload("127.0.0.1", port, stats, writer, nkeys=40, flush_every=4000)
    protos = ("text", "meta", "binary")
    try:
        while time.monotonic() < deadline:
            r = w.rng.random()
            if r < 0.05:
                w.disconnect_mid_value()
                continue
            if r < 0.08:
                w.slow_reader(nget=3, size=100 * 1024, pause=0.2)
                continue
            c = w.connect()
            try:
                proto = w.rng.choice(protos)
                w.run_ops(c, proto, w.rng.randrange(1, 60))
                if w.rng.random() < 0.3:
                    w.run_burst(c, proto, w.rng.randrange(2, 40))
            finally:
                c.close()
    except Exception:  # noqa: BLE001 - reported to the main thread
        errors.append(traceback.format_exc())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--threads", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--server-threads", type=int, default=4)
    args = ap.parse_args()

    port = free_port()
    env = dict(os.environ)
    env.setdefault("TSAN_OPTIONS", "halt_on_error=1 exitcode=66 second_deadlock_stack=1")
    errf = tempfile.NamedTemporaryFile(prefix="server_stress_", suffix=".stderr", delete=False)
    cmd = [args.binary, "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-m", "8",
           "-t", str(args.server_threads), "-c", "256"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=errf, env=env)
    ok = True
    stats = mixload.Stats()
    errors = []
    try:
        if not wait_port(port, proc):
            print("server_stress: server did not start", file=sys.stderr)
            ok = False
        else:
            deadline = time.monotonic() + args.seconds
            threads = [threading.Thread(target=client_thread,
                                        args=(port, stats, i, deadline, errors))
                       for i in range(args.threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.seconds + 120)
            if errors:
                ok = False
                print("server_stress: %d client thread(s) failed; first:\n%s"
                      % (len(errors), errors[0]), file=sys.stderr)
    finally:
        rc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        errf.close()
    with open(errf.name, "rb") as f:
        err = f.read().decode("utf-8", "replace")
    os.unlink(errf.name)
    report = [m for m in MARKERS if m in err]
    if report:
        ok = False
        print("server_stress: sanitizer report:\n%s" % err[-30000:], file=sys.stderr)
    if rc != 0:
        ok = False
        print("server_stress: server exited with %r" % rc, file=sys.stderr)
    print("server_stress: %s; server exit %r; %s"
          % (" ".join("%s=%d" % kv for kv in stats.as_dict().items()), rc,
             "clean" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
