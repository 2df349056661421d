"""The memstash Python module beyond python-memcached: cached() (cache-aside
without stampedes, on meta-protocol leases), invalidate(), one Client shared
by threads, the GIL released during network I/O, and docstrings.

The module comes from $MEMSTASH_PYTHONPATH (the build's python/ folder), as
in test_python_module.py. A sanitizer build of the module cannot be loaded
by a plain python: then one test re-runs this file with libasan preloaded.
"""

import multiprocessing
import os
import pydoc
import re
import subprocess
import sys
import threading
import time

import pytest

from asan_rerun import (ASAN_PRELOADED, MODULE_ASAN_OPTIONS, links_asan, module_file,
                        rerun_under_asan)
from conftest import ServerFactory, free_port, kill_pid, poll_until, wait_port

MODPATH = os.environ.get("MEMSTASH_PYTHONPATH", "")
if not MODPATH:
    pytestmark = pytest.mark.skip(
        reason="MEMSTASH_PYTHONPATH is not set (point it at <build>/python)")
else:
    sys.path.insert(0, MODPATH)


MODULE_NEEDS_ASAN = links_asan(module_file(MODPATH))


def test_module_under_asan():
    """A sanitizer build: run every other test of this file with libasan preloaded."""
    if not MODULE_NEEDS_ASAN or ASAN_PRELOADED:
        pytest.skip("module is not a sanitizer build (or libasan is already preloaded)")
    rc, out = rerun_under_asan(__file__, "not under_asan", MODULE_ASAN_OPTIONS, 550,
                               python_malloc=True)
    assert rc == 0, out[-10000:]
    assert "AddressSanitizer" not in out and "runtime error:" not in out, out[-10000:]
    assert " passed" in out, out[-3000:]


@pytest.fixture(scope="module")
def memstash():
    if MODULE_NEEDS_ASAN and not ASAN_PRELOADED:
        pytest.skip("sanitizer build of the module: run by test_module_under_asan")
    import memstash as m
    return m


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    f = ServerFactory(str(tmp_path_factory.mktemp("pycached")))
    try:
        yield f()
    finally:
        f.teardown()


def spec(srv):
    return "%s:%d" % (srv.host, srv.port)


@pytest.fixture
def client(server, memstash):
    with server.client() as raw:
        raw.check(b"flush_all\r\n", b"OK\r\n")
    c = memstash.Client([spec(server)], socket_timeout=10)
    try:
        yield c
    finally:
        c.disconnect_all()


# --------------------------------------------------------------------------
# cached()
# --------------------------------------------------------------------------

def test_cached_hit_miss_and_encoding(client):
    calls = []

    def loader(v):
        def f():
            calls.append(v)
            return v
        return f

    for i, v in enumerate(["text", b"bytes", 7, 2 ** 70, {"a": [1, 2]}, "é" * 10, b""]):
        k = "enc%d" % i
        assert client.cached(k, loader(v)) == v
        assert client.cached(k, loader("other")) == v      # a hit: the loader is not called
        assert client.get(k) == v                            # stored as set() would store it
    assert calls == ["text", b"bytes", 7, 2 ** 70, {"a": [1, 2]}, "é" * 10, b""]
    # Flags as set(): a str value reads back through a plain text get as str.
    client.set("plain", "x")
    assert client.cached("plain", loader("y")) == "x"
    # Expiry: a 1-second TTL runs out at the server's next clock tick or the
    # one after (bounded poll).
    assert client.cached("short", loader("s1"), time=1) == "s1"
    assert poll_until(lambda: client.get("short") is None, 10.0, 0.1)
    assert client.cached("short", loader("s2"), time=1) == "s2"


def test_cached_loader_errors_release_the_lease(client):
    def boom():
        raise RuntimeError("loader failed")

    with pytest.raises(RuntimeError, match="loader failed"):
        client.cached("err", boom)
    # The failed winner gave the lease back: the next caller wins at once.
    t0 = time.monotonic()
    assert client.cached("err", lambda: "ok", lease_time=30) == "ok"
    assert time.monotonic() - t0 < 5
    with pytest.raises(TypeError):
        client.cached("x", "not callable")
    with pytest.raises(client.MemcachedKeyCharacterError):
        client.cached("bad key", lambda: 1)


def test_cached_without_a_server_calls_the_loader(memstash):
    c = memstash.Client(["127.0.0.1:%d" % free_port()], socket_timeout=1)
    assert c.cached("k", lambda: 42) == 42


def _cached_worker(spec_, nthreads, start, counter, results):
    import memstash
    c = memstash.Client([spec_], socket_timeout=10)

    def loader():
        with counter.get_lock():
            counter.value += 1
        time.sleep(0.5)
        return {"computed": True, "n": 12345}

    got = []

    def run():
        start.wait(30)
        got.append(c.cached("stampede", loader, time=60))

    threads = [threading.Thread(target=run) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    results.put((len(got), sum(1 for g in got if g == {"computed": True, "n": 12345}),
                 sum(1 for t in threads if t.is_alive())))


def test_cached_stampede_runs_the_loader_once(server, client):
    """4 processes x 50 threads (each process with its own Client) miss one key at
    once: the loader runs exactly once and every caller gets its value."""
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    counter = ctx.Value("i", 0)
    results = ctx.Queue()
    procs = [ctx.Process(target=_cached_worker, args=(spec(server), 50, start, counter, results))
             for _ in range(4)]
    try:
        for p in procs:
            p.start()
        time.sleep(0.5)
        start.set()
        outs = [results.get(timeout=90) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                kill_pid(p.pid)
    assert counter.value == 1
    assert outs == [(50, 50, 0)] * 4


def test_cached_serves_stale_while_recomputing(client):
    """After invalidate(), one caller recomputes and the others get the old value."""
    assert client.cached("st", lambda: "v1") == "v1"
    assert client.invalidate("st") == 1
    assert client.invalidate("missing") == 0
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def slow():
        entered.set()
        release.wait(30)      # recomputing until the main thread has looked
        return "v2"

    t = threading.Thread(target=lambda: seen.setdefault("winner", client.cached("st", slow)))
    t.start()
    try:
        assert entered.wait(10)
        # Meanwhile: the stale value, without calling this loader.
        for _ in range(5):
            assert client.cached("st", lambda: pytest.fail("second loader ran")) == "v1"
    finally:
        release.set()
        t.join(30)
    assert seen == {"winner": "v2"}
    assert client.cached("st", lambda: "v3") == "v2"
    assert client.get("st") == "v2"


def ttl_left(server, key):
    """Seconds the server says key has left (mg t), None on a miss."""
    with server.client() as raw:
        got = raw.call(b"mg " + key.encode() + b" t\r\n")
    m = re.match(rb"HD t(-?\d+)\r\n\Z", got)
    return int(m.group(1)) if m else None


def test_cached_recomputes_ahead_of_expiry(server, client):
    """With a TTL and recache_below, one caller recomputes before the item
    expires while the others keep getting the current value."""
    t0 = time.monotonic()
    assert client.cached("ttl", lambda: "old", time=30, recache_below=29) == "old"
    # Until fewer than 29 of its 30 seconds are left on the server's clock
    # (one or two ticks; polled rather than slept, the clock being the
    # server's).
    assert poll_until(lambda: (ttl_left(server, "ttl") or 30) < 29, 10.0, 0.1)
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def slow():
        entered.set()
        release.wait(30)
        return "new"

    t = threading.Thread(
        target=lambda: seen.setdefault("w", client.cached("ttl", slow, time=60, recache_below=29)))
    t.start()
    try:
        assert entered.wait(10)
        assert client.cached("ttl", lambda: pytest.fail("second loader ran"), time=60,
                             recache_below=29) == "old"
    finally:
        release.set()
        t.join(30)
    assert seen == {"w": "new"}
    assert time.monotonic() - t0 < 25, "too slow a run: the first item may have expired"
    # The recomputed value replaced the first item, with its own 60 s TTL
    # (more than the first item could have left).
    assert client.get("ttl") == "new"
    assert ttl_left(server, "ttl") > 30


# --------------------------------------------------------------------------
# Threads and the GIL
# --------------------------------------------------------------------------

def test_shared_client_overlapping_keys(client):
    """8 threads hammer one Client with set/get/incr/get_multi on the same keys:
    every value read back belongs to the key asked for, and no incr is lost."""
    keys = ["ov%d" % i for i in range(10)]
    assert client.set("ctr", "0") is True
    errors = []
    rounds = 250

    def work(t):
        try:
            for i in range(rounds):
                k = keys[(t + i) % len(keys)]
                v = {"key": k, "t": t, "i": i} if i % 2 else "%s|%d|%d" % (k, t, i)
                assert client.set(k, v) is True
                got = client.get(k)
                assert got is not None
                gk = got["key"] if isinstance(got, dict) else got.split("|")[0]
                assert gk == k, (k, got)
                assert client.incr("ctr") is not None
                if i % 10 == 0:
                    many = client.get_multi(keys)
                    for mk, mv in many.items():
                        assert (mv["key"] if isinstance(mv, dict) else mv.split("|")[0]) == mk
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    assert client.get("ctr") == str(8 * rounds)
    assert client.stats["incr"] == 8 * rounds


SLOW_SERVER = r"""
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    c, _ = s.accept()
    buf = b""
    while b"\r\n" not in buf:
        d = c.recv(4096)
        if not d:
            break
        buf += d
    if b"\r\n" in buf:
        time.sleep(2.5)
        try:
            c.sendall(b"END\r\n")
        except OSError:
            pass
    c.close()
"""


def test_gil_is_released_during_io(memstash):
    """A thread blocked on a slow server must not stop the others: the main
    thread keeps counting while get() waits 2.5 s for its reply."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(port)])
    try:
        assert wait_port("127.0.0.1", port, proc=proc), "slow server did not start"
        c = memstash.Client(["127.0.0.1:%d" % port], socket_timeout=10)
        out = {}

        def blocked():
            t0 = time.monotonic()
            out["value"] = c.get("slow")
            out["took"] = time.monotonic() - t0

        t = threading.Thread(target=blocked)
        t.start()
        time.sleep(0.2)       # the other thread is now inside get()
        count = 0
        t0 = time.monotonic()
        while t.is_alive() and time.monotonic() - t0 < 20:
            count += 1
        busy = time.monotonic() - t0
        t.join(10)
        assert out["value"] is None and out["took"] >= 2.4
        # Held GIL: this loop could not run until get() returned (a couple of
        # iterations at most). Released: it ran for about two seconds (at
        # least one even if the 0.2 s sleep overslept on a loaded host), at
        # some 10^5 to 10^6 iterations a second even on a loaded or
        # sanitizer run.
        assert busy >= 1.0
        assert count > 1000, count
    finally:
        kill_pid(proc.pid)
        proc.wait(10)


# --------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------

def test_every_public_method_has_a_docstring(memstash):
    public = [n for n in dir(memstash.Client) if not n.startswith("_")
              and callable(getattr(memstash.Client, n)) and not n.startswith("Memcached")]
    assert {"get", "set", "get_multi", "set_multi", "cached", "invalidate"} <= set(public)
    for n in public:
        doc = getattr(memstash.Client, n).__doc__
        assert doc and doc.strip(), n
    text = pydoc.render_doc(memstash.Client, renderer=pydoc.plaintext)
    for n in public:
        assert n + "(" in text, n
    assert "Cache-aside in one call" in text
    assert memstash.Client.__doc__ and memstash.__doc__
