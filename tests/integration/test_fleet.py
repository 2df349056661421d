"""A memstashd fleet behind twemproxy (Debian's nutcracker).

Three memstashd on loopback ports behind one nutcracker with ketama
(fnv1a_64), auto_eject_hosts and server_failure_limit 1, driven by
pymemcache through the proxy only:

- 10,000 keys set through the proxy all read back with their values, and
  land on all three servers (curr_items > 0 on each, summing to 10,000);
- one backend is SIGKILLed by pid: after the proxy ejects it (bounded wait),
  keys of the surviving servers still hit, keys of the dead one miss (they
  now hash to a survivor), and sets of either kind succeed and read back;
- with unnamed servers (host:port:weight), nutcracker's ketama places every
  key where libmemstash's weighted ketama with the same key hash does
  (`memstash -d ketama-weighted -H fnv1a_64 locate`), so clients that go
  direct and clients that go through the proxy agree.

nutcracker runs in the foreground and is stopped by its pid. The per-server
split and the ejection time are printed (pytest -s shows them).
"""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import MEMSTASHD, free_port, kill_pid, pid_alive, wait_port

from pymemcache.client.base import Client

NUTCRACKER = os.environ.get("NUTCRACKER", "/usr/sbin/nutcracker")
BUILD_SRC = os.path.dirname(os.path.dirname(os.path.abspath(MEMSTASHD))) if MEMSTASHD else ""
CLI = os.environ.get("MEMSTASH_CLI") or os.path.join(BUILD_SRC, "cli", "memstash")
NKEYS = 10000
BATCH = 500
# Long enough that an ejected server stays out for the rest of the test.
RETRY_MS = 120000
EJECT_BUDGET = 20.0


def require_nutcracker():
    if not (os.path.isfile(NUTCRACKER) and os.access(NUTCRACKER, os.X_OK)):
        pytest.fail("nutcracker not found at %r: apt-get install nutcracker "
                    "(it is in the Makefile's TEST_PKGS)" % NUTCRACKER)


class Proxy:
    """One nutcracker process in the foreground, stopped by its pid."""

    def __init__(self, tmp_path, backends, hash_name="fnv1a_64", named=True):
        self.tmp = tmp_path
        self.backends = backends
        self.hash_name = hash_name
        self.named = named
        self.proc = None
        self.port = None
        self.stats_port = None

    def config(self):
        lines = [
            "memstash:",
            "  listen: 127.0.0.1:%d" % self.port,
            "  hash: %s" % self.hash_name,
            "  distribution: ketama",
            "  timeout: 10000",
            "  preconnect: true",
            "  auto_eject_hosts: true",
            "  server_retry_timeout: %d" % RETRY_MS,
            "  server_failure_limit: 1",
            "  servers:",
        ]
        for i, srv in enumerate(self.backends):
            lines.append("    - 127.0.0.1:%d:1%s" % (srv.port, " ms%d" % i if self.named else ""))
        return "\n".join(lines) + "\n"

    def start(self):
        last = ""
        for attempt in range(5):
            self.port, self.stats_port = free_port(), free_port()
            conf = os.path.join(str(self.tmp), "nutcracker%d.yml" % attempt)
            with open(conf, "w") as f:
                f.write(self.config())
            self.log = os.path.join(str(self.tmp), "nutcracker%d.log" % attempt)
            args = [NUTCRACKER, "-c", conf, "-s", str(self.stats_port), "-a", "127.0.0.1",
                    "-i", "200", "-o", self.log, "-v", "5",
                    "-p", os.path.join(str(self.tmp), "nutcracker%d.pid" % attempt)]
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_port("127.0.0.1", self.port, 15.0, self.proc):
                return
            self.stop()
            last = self.log_text()
        pytest.fail("nutcracker did not start:\n%s" % last[-3000:])

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            kill_pid(self.proc.pid, timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def client(self):
        return Client(("127.0.0.1", self.port), connect_timeout=5, timeout=15,
                      default_noreply=False)

    def stats(self):
        """nutcracker's stats JSON (one object per connection to -s)."""
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=5) as s:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data.decode())


@pytest.fixture
def fleet(server_factory, tmp_path):
    require_nutcracker()
    backends = [server_factory("-m", "64") for _ in range(3)]
    proxy = Proxy(tmp_path, backends)
    proxy.start()
    try:
        yield proxy
        assert proxy.proc.poll() is None, "nutcracker died:\n" + proxy.log_text()[-3000:]
    finally:
        proxy.stop()


def direct(srv):
    return Client(("127.0.0.1", srv.port), connect_timeout=5, timeout=5, default_noreply=False)


def chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def value_of(key, tag="v"):
    return ("%s:%s:%s" % (tag, key, key[::-1])).encode()


def set_all(client, keys, tag="v"):
    for part in chunks(keys, BATCH):
        failed = client.set_many({k: value_of(k, tag) for k in part})
        assert failed == [], "sets failed through the proxy: %r" % failed[:10]


def get_all(client, keys):
    got = {}
    for part in chunks(keys, BATCH):
        got.update(client.get_many(part))
    return got


def owners(backends, keys, skip=()):
    """key -> index of the backend that holds it, asked directly."""
    where = {}
    for i, srv in enumerate(backends):
        if i in skip:
            continue
        c = direct(srv)
        try:
            for k in get_all(c, keys):
                assert k not in where, "%s is on two servers" % k
                where[k] = i
        finally:
            c.close()
    return where


def curr_items(srv):
    c = direct(srv)
    try:
        return int(c.stats()[b"curr_items"])
    finally:
        c.close()


def test_proxy_spreads_and_serves_10000_keys(fleet):
    keys = ["fleet:%05d" % i for i in range(NKEYS)]
    c = fleet.client()
    try:
        set_all(c, keys)
        got = get_all(c, keys)
    finally:
        c.close()
    assert len(got) == NKEYS, "%d of %d keys read back" % (len(got), NKEYS)
    bad = [k for k in keys if got[k] != value_of(k)]
    assert bad == [], "wrong values for %r" % bad[:10]

    split = [curr_items(srv) for srv in fleet.backends]
    print("\nfleet split over 3 memstashd (nutcracker ketama fnv1a_64): %s = %s"
          % (split, ["%.1f%%" % (100.0 * n / NKEYS) for n in split]))
    assert all(n > 0 for n in split), split
    assert sum(split) == NKEYS, split
    # Every key is on exactly one server, and the counts agree with curr_items.
    where = owners(fleet.backends, keys)
    assert len(where) == NKEYS
    assert [sum(1 for k in keys if where[k] == i) for i in range(3)] == split


def test_proxy_ejects_a_killed_backend(fleet):
    keys = ["eject:%05d" % i for i in range(NKEYS)]
    c = fleet.client()
    try:
        set_all(c, keys)
    finally:
        c.close()
    where = owners(fleet.backends, keys)
    assert len(where) == NKEYS
    victim = 1
    dead_keys = [k for k in keys if where[k] == victim]
    live_keys = [k for k in keys if where[k] != victim]
    assert dead_keys and live_keys

    srv = fleet.backends[victim]
    os.kill(srv.pid, signal.SIGKILL)
    srv.wait_exit(10)
    srv.expected_rc = None  # killed on purpose
    assert not pid_alive(srv.pid)

    # The proxy ejects the server on its first failure; until then a request
    # for one of its keys fails. Poll (bounded) with a key of the dead server.
    probe = dead_keys[0]
    start = time.monotonic()
    served = False
    attempts = 0
    while time.monotonic() - start < EJECT_BUDGET:
        attempts += 1
        c = fleet.client()
        try:
            if c.set(probe, b"after") and c.get(probe) == b"after":
                served = True
                break
        except Exception:  # pymemcache raises on the proxy's SERVER_ERROR / close
            pass
        finally:
            c.close()
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    print("\nkilled backend ms%d (%d of %d keys): proxy served its keys again after "
          "%.2f s (%d attempts)" % (victim, len(dead_keys), NKEYS, elapsed, attempts))
    assert served, "the proxy did not eject the dead server within %.0f s:\n%s" % (
        EJECT_BUDGET, fleet.log_text()[-3000:])

    c = fleet.client()
    try:
        # Keys of the survivors still hit, with their values.
        got = get_all(c, live_keys)
        assert len(got) == len(live_keys), "%d of %d surviving keys hit" % (
            len(got), len(live_keys))
        assert all(got[k] == value_of(k) for k in live_keys)
        # Keys of the dead server now hash to a survivor, where they miss.
        rest = dead_keys[1:]
        got = get_all(c, rest)
        assert got == {}, "dead server's keys unexpectedly hit: %r" % list(got)[:10]
        # Sets succeed and read back, for both kinds of key.
        moved, kept = rest[:500], live_keys[:500]
        set_all(c, moved + kept, tag="new")
        got = get_all(c, moved + kept)
        assert len(got) == len(moved) + len(kept)
        assert all(got[k] == value_of(k, "new") for k in moved + kept)
    finally:
        c.close()
    # Where they went: the moved keys on survivors, the kept keys where they were.
    now = owners(fleet.backends, moved + kept, skip=(victim,))
    assert all(now[k] != victim for k in moved)
    assert all(now[k] == where[k] for k in kept)
    spread = sorted(set(now[k] for k in moved))
    print("dead server's keys re-homed on survivors %s" % spread)

    # nutcracker counted the ejection (its stats refresh every 200 ms).
    def ejects():
        pool = fleet.stats().get("memstash", {})
        return pool.get("server_ejects", 0)
    deadline = time.monotonic() + 5
    while ejects() < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ejects() >= 1


@pytest.mark.parametrize("hash_name", ["fnv1a_64", "md5"])
def test_proxy_places_keys_like_libmemstash_weighted_ketama(server_factory, tmp_path, hash_name):
    """nutcracker's ketama is libmemcached's weighted ketama (160 points per
    equal-weight server, MD5 points named host:port-i) with its key hash."""
    require_nutcracker()
    if not (os.path.isfile(CLI) and os.access(CLI, os.X_OK)):
        pytest.fail("memstash tool not found at %r (set MEMSTASH_CLI)" % CLI)
    backends = [server_factory("-m", "64") for _ in range(3)]
    proxy = Proxy(tmp_path, backends, hash_name=hash_name, named=False)
    proxy.start()
    try:
        keys = ["place:%s:%04d" % (hash_name, i) for i in range(3000)]
        c = proxy.client()
        try:
            set_all(c, keys)
        finally:
            c.close()
        assert proxy.proc.poll() is None
    finally:
        proxy.stop()
    where = owners(backends, keys)
    assert len(where) == len(keys)
    specs = ["127.0.0.1:%d" % s.port for s in backends]
    p = subprocess.run([CLI, "-s", ",".join(specs), "-d", "ketama-weighted", "-H", hash_name,
                        "--json", "locate", "-"], input=("\n".join(keys) + "\n").encode(),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    loc = {r["key"]: specs.index(r["server"]) for r in json.loads(p.stdout)}
    agree = sum(1 for k in keys if where[k] == loc[k])
    print("\nnutcracker ketama %s vs memstash -d ketama-weighted -H %s: %d/%d keys agree"
          % (hash_name, hash_name, agree, len(keys)))
    assert agree == len(keys)
    assert len(set(where.values())) == 3
