"""libmemstash and the memstash tool against a real pool.

The pool is three memstashd instances plus one Debian memcached
(/usr/bin/memcached).  Every operation runs through the `memstash` tool and,
where a long-lived handle matters (failover, rejoin, get_multi), through
libmemstash itself via ctypes.  Placement is checked against the clients a
mixed fleet runs: pylibmc (libmemcached 1.1.4, ketama) and python-memcached
1.59 must agree with `memstash locate` on where each of 1,000 keys lives.

Paths: the tool comes from $MEMSTASH_CLI and the library from $MEMSTASH_LIB;
both default to the build tree next to $MEMSTASHD (src/cli/memstash and
src/client/libmemstash.so).
"""

import ctypes
import json
import os
import random
import socket
import string
import subprocess
import time

import pytest

from asan_rerun import ASAN_PRELOADED, links_asan, rerun_under_asan
from conftest import MEMSTASHD, REFERENCE_MEMCACHED, poll_until, sanitizer_report

BUILD_SRC = os.path.dirname(os.path.dirname(os.path.abspath(MEMSTASHD))) if MEMSTASHD else ""
CLI = os.environ.get("MEMSTASH_CLI") or os.path.join(BUILD_SRC, "cli", "memstash")
LIB = os.environ.get("MEMSTASH_LIB") or os.path.join(BUILD_SRC, "client", "libmemstash.so")

EXIT_OK, EXIT_OUTCOME, EXIT_USAGE, EXIT_FAILURE, EXIT_BADKEY = 0, 1, 2, 3, 4


def require_tools():
    if not (os.path.isfile(CLI) and os.access(CLI, os.X_OK)):
        pytest.fail("memstash tool not found at %r (set MEMSTASH_CLI)" % CLI)


# --------------------------------------------------------------------------
# Pool and helpers
# --------------------------------------------------------------------------

class Pool:
    def __init__(self, factory):
        self.factory = factory
        self.servers = [factory() for _ in range(3)]
        self.servers.append(factory(binary=REFERENCE_MEMCACHED))
        self.specs = ["127.0.0.1:%d" % s.port for s in self.servers]

    @property
    def spec(self):
        return ",".join(self.specs)

    def index_of(self, name):
        return self.specs.index(name)


@pytest.fixture
def pool(server_factory):
    require_tools()
    return Pool(server_factory)


def run(args, servers=None, stdin=None, timeout=30):
    """Runs the tool; returns (rc, stdout, stderr)."""
    cmd = [CLI] + (["-s", servers] if servers else []) + list(args)
    env = dict(os.environ)
    env.pop("MEMSTASH_SERVERS", None)
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=env)
    err = p.stderr.decode("utf-8", "replace")
    assert sanitizer_report(err) is None, err
    return p.returncode, p.stdout.decode("utf-8", "replace"), err


def run_json(args, servers, expect_rc=0):
    rc, out, err = run(["--json"] + list(args), servers)
    assert rc == expect_rc, (args, rc, out, err)
    return json.loads(out)


def raw_get(port, keys):
    """Keys (str) that the server on port holds, asked directly."""
    found = set()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = s.makefile("rb")
    try:
        for i in range(0, len(keys), 100):
            s.sendall(b"get " + b" ".join(k.encode() for k in keys[i:i + 100]) + b"\r\n")
            while True:
                line = f.readline()
                assert line, "connection closed"
                if line == b"END\r\n":
                    break
                parts = line.split()
                assert parts[0] == b"VALUE", line
                found.add(parts[1].decode())
                f.read(int(parts[3]) + 2)
    finally:
        f.close()
        s.close()
    return found


def holders(pool, keys):
    """key -> list of server indexes that hold it."""
    where = {}
    for i, srv in enumerate(pool.servers):
        for k in raw_get(srv.port, keys):
            where.setdefault(k, []).append(i)
    return where


def stats_of(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = s.makefile("rb")
    out = {}
    try:
        s.sendall(b"stats\r\n")
        while True:
            line = f.readline()
            if not line or line == b"END\r\n":
                break
            parts = line.decode().split(" ", 2)
            out[parts[1]] = parts[2].strip()
    finally:
        f.close()
        s.close()
    return out


def locate(pool, keys, distribution, servers=None):
    """key -> server index according to `memstash locate`."""
    servers = servers or pool.spec
    result = {}
    for i in range(0, len(keys), 200):
        rows = run_json(["-d", distribution, "locate"] + keys[i:i + 200], servers)
        for row in rows:
            result[row["key"]] = pool.index_of(row["server"])
    return result


def random_keys(n, seed):
    rnd = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + ":_-./"
    # A leading letter: the tool would take "-x..." for an option.
    return ["%s%s%d" % (rnd.choice(string.ascii_letters),
                        "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))), i)
            for i in range(n)]


# --------------------------------------------------------------------------
# The tool: every command
# --------------------------------------------------------------------------

def test_help_documents_exit_codes():
    require_tools()
    rc, out, _ = run(["--help"])
    assert rc == 0
    for cmd in ("get", "set", "add", "replace", "delete", "touch", "incr", "decr", "stats",
                "flush", "version", "ping", "locate", "dump", "bench"):
        assert "\n  %s " % cmd in out, cmd
    for opt in ("--servers", "--distribution", "--timeout", "--json", "MEMSTASH_SERVERS",
                "--protocol", "--binary", "--keys-only", "--time", "--count", "--ratio",
                "--multi", "--value-size", "--connections", "--keys", "--zipf"):
        assert opt in out, opt
    assert "exit codes:" in out
    for code in range(6):
        assert "\n  %d  " % code in out, code
    rc, out, _ = run(["--version"])
    assert rc == 0 and out.startswith("memstash ")


def test_usage_errors():
    require_tools()
    assert run([])[0] == EXIT_USAGE
    assert run(["frobnicate"], "127.0.0.1:1")[0] == EXIT_USAGE
    assert run(["--distribution", "nope", "locate", "k"], "127.0.0.1:1")[0] == EXIT_USAGE
    assert run(["locate", "k"], "::1")[0] == EXIT_USAGE
    assert run(["set", "k"], "127.0.0.1:1")[0] == EXIT_USAGE
    assert run(["--timeout", "0", "ping"], "127.0.0.1:1")[0] == EXIT_USAGE


def test_every_command(pool):
    s = pool.spec
    assert run(["set", "alpha", "one"], s)[:2] == (EXIT_OK, "stored\n")
    assert run(["get", "alpha"], s)[:2] == (EXIT_OK, "one\n")
    assert run(["add", "alpha", "two"], s)[:2] == (EXIT_OUTCOME, "not stored\n")
    assert run(["add", "beta", "two"], s)[:2] == (EXIT_OK, "stored\n")
    assert run(["replace", "beta", "three"], s)[:2] == (EXIT_OK, "stored\n")
    assert run(["replace", "gamma", "x"], s)[:2] == (EXIT_OUTCOME, "not stored\n")
    got = run_json(["get", "alpha", "beta", "gamma"], s, EXIT_OUTCOME)
    assert got["alpha"]["value"] == "one" and got["beta"]["value"] == "three"
    assert got["gamma"] is None
    rc, out, err = run(["get", "alpha", "gamma"], s)
    assert rc == EXIT_OUTCOME and out == "alpha: one\n" and "gamma" in err
    # Value from stdin, flags and exptime.
    assert run(["-f", "42", "-e", "100", "set", "blob", "-"], s, stdin=b"a b\nc")[0] == 0
    got = run_json(["get", "blob"], s)
    assert got["blob"]["value"] == "a b\nc" and got["blob"]["flags"] == 42
    # incr / decr, with and without an initial value.
    assert run(["incr", "ctr"], s)[:2] == (EXIT_OUTCOME, "not found\n")
    assert run(["incr", "--initial", "10", "ctr", "5"], s)[:2] == (EXIT_OK, "10\n")
    assert run(["incr", "ctr", "5"], s)[:2] == (EXIT_OK, "15\n")
    assert run_json(["decr", "ctr", "20"], s) == {"key": "ctr", "value": 0}
    assert run(["incr", "alpha"], s)[0] == EXIT_FAILURE  # CLIENT_ERROR: not a number
    # touch
    assert run(["touch", "alpha", "1000"], s)[:2] == (EXIT_OK, "touched\n")
    assert run(["touch", "nope", "1000"], s)[:2] == (EXIT_OUTCOME, "not found\n")
    # delete
    assert run(["delete", "alpha"], s)[:2] == (EXIT_OK, "deleted\n")
    assert run(["delete", "alpha"], s)[:2] == (EXIT_OUTCOME, "not found\n")
    assert run_json(["delete", "beta"], s) == {"key": "beta", "outcome": "deleted"}
    # Server-wide commands answer per server.
    versions = run_json(["version"], s)
    assert sorted(versions) == sorted(pool.specs)
    assert versions[pool.specs[3]] == "1.6.18"
    pings = run_json(["ping"], s)
    assert all(v["ok"] for v in pings.values()) and len(pings) == 4
    stats = run_json(["stats"], s)
    assert len(stats) == 4 and all("curr_items" in v for v in stats.values())
    rc, out, _ = run(["stats", "settings"], s)
    assert rc == 0 and out.count("Server: ") == 4 and "maxbytes" in out
    assert run(["flush"], s)[0] == EXIT_OK
    assert run(["get", "blob"], s)[0] == EXIT_OUTCOME
    # MEMSTASH_SERVERS is read when --servers is absent.
    env = dict(os.environ, MEMSTASH_SERVERS=s)
    p = subprocess.run([CLI, "ping"], capture_output=True, env=env, timeout=30)
    assert p.returncode == 0 and p.stdout.count(b": ok") == 4


def test_bad_keys_never_reach_a_server(pool):
    s = pool.spec
    before = [int(stats_of(srv.port)["cmd_set"]) for srv in pool.servers]
    for key in ("a b", "a\n", "tab\tkey", "x" * 251, "", "del\x7f"):
        rc, out, err = run(["set", key, "v"], s)
        assert rc == EXIT_BADKEY, (key, rc, out, err)
        assert run(["get", key], s)[0] == EXIT_BADKEY
        assert run(["locate", key], s)[0] == EXIT_BADKEY
    after = [int(stats_of(srv.port)["cmd_set"]) for srv in pool.servers]
    assert before == after
    # 250 bytes, and UTF-8, are fine.
    assert run(["set", "k" * 250, "v"], s)[0] == 0
    assert run(["set", "\u00e9t\u00e9", "v"], s)[0] == 0
    assert run(["get", "\u00e9t\u00e9"], s)[:2] == (0, "v\n")
    # A namespace counts towards the 250 bytes and is not shown back.
    assert run(["-n", "ns:", "set", "k" * 247, "v"], s)[0] == 0
    assert run(["-n", "ns:", "set", "k" * 248, "v"], s)[0] == EXIT_BADKEY
    got = run_json(["-n", "ns:", "get", "k" * 247], s)
    assert got["k" * 247]["value"] == "v"


def test_keys_spread_over_all_servers(pool):
    s = pool.spec
    keys = random_keys(120, 3)
    for k in keys:
        assert run(["set", k, "v"], s)[0] == 0
    where = holders(pool, keys)
    assert all(len(where.get(k, [])) == 1 for k in keys)
    counts = [sum(1 for k in keys if where[k] == [i]) for i in range(4)]
    assert all(c >= 10 for c in counts), counts
    # ... exactly where `memstash locate` says.
    loc = locate(pool, keys, "ketama")
    assert all(where[k] == [loc[k]] for k in keys)


# --------------------------------------------------------------------------
# Placement agreement with libmemcached (pylibmc) and python-memcached
# --------------------------------------------------------------------------

def test_locate_agrees_with_pylibmc_ketama(pool):
    pylibmc = pytest.importorskip("pylibmc")
    keys = random_keys(1000, 11)
    mc = pylibmc.Client(pool.specs, behaviors={"ketama": True})
    for k in keys:
        mc.set(k, b"v")
    where = holders(pool, keys)
    loc = locate(pool, keys, "ketama")
    agree = sum(1 for k in keys if where.get(k) == [loc[k]])
    assert agree == 1000, "only %d/1000 keys where pylibmc put them" % agree
    assert len(set(loc.values())) == 4


def test_locate_agrees_with_pylibmc_ketama_weighted(pool):
    pylibmc = pytest.importorskip("pylibmc")
    keys = random_keys(1000, 12)
    weighted = ["%s:%d" % (spec, w) for spec, w in zip(pool.specs, (1, 2, 1, 3))]
    mc = pylibmc.Client(weighted, behaviors={"ketama_weighted": True})
    for k in keys:
        mc.set(k, b"v")
    where = holders(pool, keys)
    rows = []
    for i in range(0, 1000, 200):
        rows += run_json(["-d", "ketama-weighted", "locate"] + keys[i:i + 200], ",".join(weighted))
    agree = sum(1 for row in rows if where.get(row["key"]) == [row["index"]])
    assert agree == 1000, "only %d/1000 keys where pylibmc put them" % agree


def test_locate_agrees_with_python_memcached(pool):
    memcache = pytest.importorskip("memcache")
    keys = random_keys(1000, 13)
    mc = memcache.Client(pool.specs)
    for k in keys:
        assert mc.set(k, "v")
    mc.disconnect_all()
    where = holders(pool, keys)
    loc = locate(pool, keys, "python")
    agree = sum(1 for k in keys if where.get(k) == [loc[k]])
    assert agree == 1000, "only %d/1000 keys where python-memcached put them" % agree


# --------------------------------------------------------------------------
# Failover through the tool
# --------------------------------------------------------------------------

def test_killed_server_fails_over(pool):
    s = pool.spec
    keys = random_keys(200, 21)
    loc = locate(pool, keys, "ketama")
    victim = 1
    moved = [k for k in keys if loc[k] == victim][:20]
    kept = [k for k in keys if loc[k] != victim][:20]
    assert moved and kept
    pool.servers[victim].stop()
    # Keys of the dead server are stored on the next server of the continuum.
    for k in moved:
        rc, out, err = run(["set", k, "after"], s)
        assert rc == 0, (k, out, err)
    where = holders_alive(pool, moved, victim)
    for k in moved:
        assert len(where[k]) == 1 and where[k][0] != victim
    # Other keys do not move.
    for k in kept:
        assert run(["set", k, "v"], s)[0] == 0
    where = holders_alive(pool, kept, victim)
    assert all(where[k] == [loc[k]] for k in kept)
    # The next server on the continuum is what libmemcached (auto-eject) picks.
    alive = ",".join(spec for i, spec in enumerate(pool.specs) if i != victim)
    moved_loc = run_json(["locate"] + moved, alive)
    where = holders_alive(pool, moved, victim)
    for row in moved_loc:
        assert where[row["key"]] == [pool.index_of(row["server"])]
    # With failover off the same keys fail instead (a one-shot process sees
    # the refused connection; a long-lived handle then fails fast, see below).
    rc, out, err = run(["--no-failover", "set", moved[0], "x"], s)
    assert rc == EXIT_FAILURE and "connection failed" in err, err
    # get_multi over the broken pool still returns the rest (exit 3: some failed).
    rc, out, err = run(["--no-failover", "get", moved[0], kept[0]], s)
    assert rc == EXIT_FAILURE and "%s: v" % kept[0] in out


def holders_alive(pool, keys, dead):
    where = {}
    for i, srv in enumerate(pool.servers):
        if i == dead:
            continue
        for k in raw_get(srv.port, keys):
            where.setdefault(k, []).append(i)
    return where


# --------------------------------------------------------------------------
# The library through ctypes: failover, rejoin, get_multi
# --------------------------------------------------------------------------

ITEM_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint64)


class Lib:
    def __init__(self):
        if not os.path.isfile(LIB):
            pytest.fail("libmemstash not found at %r (set MEMSTASH_LIB)" % LIB)
        self.so = ctypes.CDLL(LIB)
        self.so.mst_strerror.restype = ctypes.c_char_p
        self.so.mst_server_name.restype = ctypes.c_char_p
        self.so.mst_last_error.restype = ctypes.c_char_p
        self.so.mst_server_is_dead.restype = ctypes.c_bool
        vp, cp, sz, ip = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p
        self.so.mst_set.argtypes = [vp, cp, sz, cp, sz, ctypes.c_uint32, ctypes.c_int32, ip]
        self.so.mst_locate.argtypes = [vp, cp, sz, ip]
        self.so.mst_get_multi.argtypes = [vp, ctypes.POINTER(cp), ctypes.POINTER(sz), sz,
                                          ctypes.c_bool, ITEM_CB, vp]
        self.so.mst_server_add.argtypes = [vp, cp]
        self.so.mst_server_remove.argtypes = [vp, cp]
        self.so.mst_server_name.argtypes = [vp, sz]
        self.so.mst_server_is_dead.argtypes = [vp, sz]
        self.so.mst_server_count.restype = sz
        self.so.mst_server_count.argtypes = [vp]
        self.so.mst_set_failure_limit.argtypes = [vp, ctypes.c_uint]
        self.so.mst_set_retry_interval.argtypes = [vp, ctypes.c_uint]
        self.so.mst_set_failover.argtypes = [vp, ctypes.c_bool]
        self.so.mst_last_error.argtypes = [vp]
        self.h = ctypes.c_void_p()
        assert self.so.mst_create(ctypes.byref(self.h)) == 0

    def close(self):
        self.so.mst_destroy(ctypes.byref(self.h))

    def call(self, name, *args):
        return getattr(self.so, "mst_" + name)(self.h, *args)

    def set(self, key, value):
        out = ctypes.c_int()
        k, v = key.encode(), value.encode()
        rc = self.call("set", k, len(k), v, len(v), 0, 0, ctypes.byref(out))
        return rc, out.value

    def locate(self, key):
        idx = ctypes.c_size_t()
        k = key.encode()
        rc = self.call("locate", k, len(k), ctypes.byref(idx))
        return rc, idx.value

    def get_multi(self, keys):
        found = {}

        def cb(arg, key, nkey, data, n, flags, cas):
            found[ctypes.string_at(key, nkey).decode()] = ctypes.string_at(data, n).decode()
            return 0
        cfun = ITEM_CB(cb)
        enc = [k.encode() for k in keys]
        arr = (ctypes.c_char_p * len(enc))(*enc)
        lens = (ctypes.c_size_t * len(enc))(*[len(k) for k in enc])
        rc = self.call("get_multi", arr, lens, ctypes.c_size_t(len(enc)), ctypes.c_bool(False),
                       cfun, None)
        return rc, found


# A sanitizer build of libmemstash cannot be loaded into a plain python: the
# ASan runtime must come first. The library tests then run in a child python
# with the runtime preloaded (test_library_under_asan).
LIB_NEEDS_ASAN = bool(MEMSTASHD) and os.path.isfile(LIB) and links_asan(LIB)


def test_library_under_asan():
    if not LIB_NEEDS_ASAN or ASAN_PRELOADED:
        pytest.skip("library is not a sanitizer build (or already preloaded)")
    rc, out = rerun_under_asan(__file__, "library and not under_asan",
                               "detect_leaks=0:verify_asan_link_order=0", 500,
                               python="/usr/bin/python3")
    assert rc == 0, out[-10000:]
    assert " passed" in out and "skipped" not in out.splitlines()[-1], out[-3000:]


@pytest.fixture
def lib():
    require_tools()
    if LIB_NEEDS_ASAN and not ASAN_PRELOADED:
        pytest.skip("sanitizer build: run by test_library_under_asan")
    handle = Lib()
    try:
        yield handle
    finally:
        handle.close()


MST_EDEAD = -11


def test_library_get_multi_touches_each_server_once(pool, lib):
    assert lib.call("server_add", pool.spec.encode()) == 0
    keys = random_keys(100, 31)
    for k in keys:
        assert lib.set(k, "v" + k) == (0, 3)  # MST_STORED
    before = [stats_of(srv.port) for srv in pool.servers]
    fresh = Lib()
    try:
        assert fresh.call("server_add", pool.spec.encode()) == 0
        rc, found = fresh.get_multi(keys)
    finally:
        fresh.close()
    after = [stats_of(srv.port) for srv in pool.servers]
    assert rc == 0 and found == {k: "v" + k for k in keys}
    for b, a in zip(before, after):
        # One connection per server (stats itself opened one more) and every
        # key asked for once.
        assert int(a["total_connections"]) - int(b["total_connections"]) == 2
    hits = sum(int(a["get_hits"]) - int(b["get_hits"]) for b, a in zip(before, after))
    assert hits == 100


def test_library_failover_and_rejoin(pool, lib):
    assert lib.call("server_add", pool.spec.encode()) == 0
    assert lib.call("set_failure_limit", 1) == 0
    assert lib.call("set_retry_interval", 1500) == 0
    keys = random_keys(300, 41)
    victim = 2
    home = {k: lib.locate(k)[1] for k in keys}
    moved = [k for k in keys if home[k] == victim]
    assert moved
    port = pool.servers[victim].port
    pool.servers[victim].stop()
    # First call on the dead server: connect fails, it is marked dead, and
    # the request goes to the key's new server at once.
    rc, outcome = lib.set(moved[0], "x")
    assert (rc, outcome) == (0, 3), lib.call("last_error")
    assert lib.call("server_is_dead", ctypes.c_size_t(victim))
    for k in moved:
        rc, idx = lib.locate(k)
        assert rc == 0 and idx != victim
        assert lib.set(k, "x") == (0, 3)
    # The server comes back on the same port and rejoins after the interval.
    pool.servers[victim] = pool.factory(port=port)
    deadline = time.monotonic() + 10
    while lib.call("server_is_dead", ctypes.c_size_t(victim)) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.1)
    assert all(lib.locate(k) == (0, victim) for k in moved)
    assert lib.set(moved[0], "back") == (0, 3)
    assert raw_get(port, [moved[0]]) == {moved[0]}


def test_library_fail_fast_without_failover(pool, lib):
    assert lib.call("server_add", pool.spec.encode()) == 0
    assert lib.call("set_failure_limit", 1) == 0
    assert lib.call("set_failover", ctypes.c_bool(False)) == 0
    keys = random_keys(200, 51)
    victim = 0
    moved = [k for k in keys if lib.locate(k)[1] == victim]
    pool.servers[victim].stop()
    assert lib.set(moved[0], "x")[0] == -5  # MST_ECONNECT: this call saw the failure
    t0 = time.monotonic()
    for k in moved[:10]:
        assert lib.set(k, "x")[0] == MST_EDEAD
    assert time.monotonic() - t0 < 1.0  # no connect attempts while dead
    assert lib.locate(moved[0])[0] == MST_EDEAD


def test_library_server_list_changes(pool, lib):
    assert lib.call("server_add", pool.specs[0].encode()) == 0
    assert lib.call("server_count") == 1
    assert lib.call("server_add", ",".join(pool.specs[1:]).encode()) == 0
    assert lib.call("server_count") == 4
    assert lib.call("server_name", ctypes.c_size_t(3)).decode() == pool.specs[3]
    assert lib.call("server_add", b"bad spec:x") == -1
    assert lib.call("server_count") == 4
    assert lib.call("server_remove", pool.specs[1].encode()) == 0
    assert lib.call("server_remove", pool.specs[1].encode()) == -16
    assert lib.call("server_count") == 3
    for k in random_keys(50, 61):
        assert lib.set(k, "v") == (0, 3)
    assert raw_get(pool.servers[1].port, random_keys(50, 61)) == set()


def test_library_gat_and_delete_multi(pool, lib):
    assert lib.call("server_add", pool.spec.encode()) == 0
    so = lib.so
    vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    so.mst_delete_multi.argtypes = [vp, ctypes.POINTER(cp), ctypes.POINTER(sz), sz,
                                    ctypes.POINTER(sz)]

    class Value(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("len", sz), ("flags", ctypes.c_uint32),
                    ("cas", ctypes.c_uint64)]
    so.mst_gat.argtypes = [vp, cp, sz, ctypes.c_int32, ctypes.POINTER(Value),
                           ctypes.POINTER(ctypes.c_int)]
    so.mst_value_clear.argtypes = [ctypes.POINTER(Value)]
    keys = random_keys(60, 71)
    for k in keys:
        assert lib.set(k, "v") == (0, 3)
    val, out = Value(), ctypes.c_int()
    k0 = keys[0].encode()
    assert so.mst_gat(lib.h, k0, len(k0), 1000, ctypes.byref(val), ctypes.byref(out)) == 0
    assert out.value == 1 and ctypes.string_at(val.data, val.len) == b"v"  # MST_HIT
    so.mst_value_clear(ctypes.byref(val))
    enc = [k.encode() for k in keys[:40]] + [b"missing-1", b"missing-2"]
    arr = (cp * len(enc))(*enc)
    lens = (sz * len(enc))(*[len(k) for k in enc])
    deleted = sz()
    assert so.mst_delete_multi(lib.h, arr, lens, len(enc), ctypes.byref(deleted)) == 0
    assert deleted.value == 40
    where = holders(pool, keys)
    assert sorted(where) == sorted(keys[40:])


def test_unix_socket_and_ipv6_servers(server_factory, tmp_path):
    require_tools()
    path = str(tmp_path / "ms.sock")
    unix_srv = server_factory(tcp=False, unix=path)
    servers = [path]
    try:
        v6 = server_factory(host="::1")
        servers.append("[::1]:%d" % v6.port)
    except BaseException:  # no IPv6 loopback here: the unix part still runs
        v6 = None
    spec = ",".join(servers)
    keys = random_keys(40, 81)
    for k in keys:
        assert run(["set", k, "v" + k], spec)[0] == 0
    got = run_json(["get"] + keys, spec)
    assert all(got[k]["value"] == "v" + k for k in keys)
    versions = run_json(["version"], spec)
    assert sorted(versions) == sorted(servers)
    with unix_srv.client() as c:
        on_unix = sum(1 for k in keys if c.request(b"get " + k.encode() + b"\r\n",
                                                   b"END\r\n") != b"END\r\n")
    assert on_unix == (len(keys) if v6 is None else on_unix)
    if v6 is not None:
        assert 0 < on_unix < len(keys)


def test_library_noreply(pool, lib):
    assert lib.call("server_add", pool.spec.encode()) == 0
    lib.so.mst_set_noreply.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    assert lib.call("set_noreply", True) == 0
    keys = random_keys(50, 91)
    for k in keys:
        assert lib.set(k, "v") == (0, 0)  # MST_NONE: no reply read
    # A noreply add that the server refuses sends nothing back either, and the
    # next call on the same connections still reads its own replies.
    so = lib.so
    so.mst_add.argtypes = so.mst_set.argtypes
    out = ctypes.c_int()
    k0 = keys[0].encode()
    assert so.mst_add(lib.h, k0, len(k0), b"x", 1, 0, 0, ctypes.byref(out)) == 0
    assert lib.call("set_noreply", False) == 0
    rc, found = lib.get_multi(keys)
    assert rc == 0 and found == {k: "v" for k in keys}


# --------------------------------------------------------------------------
# Protocols: every operation in text, meta (the default) and binary, against
# memstashd and against Debian memcached 1.6.18
# --------------------------------------------------------------------------

PROTO_TEXT, PROTO_META, PROTO_BINARY = 0, 1, 2
PROTOCOLS = {"text": PROTO_TEXT, "meta": PROTO_META, "binary": PROTO_BINARY}
(MST_NONE, MST_HIT, MST_MISS, MST_STORED, MST_NOT_STORED, MST_EXISTS, MST_NOT_FOUND,
 MST_DELETED, MST_TOUCHED) = range(9)
MST_ECLIENT, MST_ETOOBIG, MST_ENOTSUP = -10, -12, -13


class Value(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_size_t),
                ("flags", ctypes.c_uint32), ("cas", ctypes.c_uint64)]


STAT_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)


class Ops(Lib):
    """Lib with every operation typed, returning Python values."""

    def __init__(self, protocol=None):
        super().__init__()
        so = self.so
        vp, cp, sz, i32, u32, u64 = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                     ctypes.c_int32, ctypes.c_uint32, ctypes.c_uint64)
        po, pv = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(Value)
        pu64 = ctypes.POINTER(u64)
        for name in ("add", "replace"):
            getattr(so, "mst_" + name).argtypes = so.mst_set.argtypes
        for name in ("append", "prepend"):
            getattr(so, "mst_" + name).argtypes = [vp, cp, sz, cp, sz, po]
        so.mst_cas.argtypes = [vp, cp, sz, cp, sz, u32, i32, u64, po]
        so.mst_get.argtypes = [vp, cp, sz, pv, po]
        so.mst_gets.argtypes = [vp, cp, sz, pv, po]
        so.mst_gat.argtypes = [vp, cp, sz, i32, pv, po]
        so.mst_value_clear.argtypes = [pv]
        so.mst_delete.argtypes = [vp, cp, sz, po]
        so.mst_delete_multi.argtypes = [vp, ctypes.POINTER(cp), ctypes.POINTER(sz), sz,
                                        ctypes.POINTER(sz)]
        for name in ("incr", "decr"):
            getattr(so, "mst_" + name).argtypes = [vp, cp, sz, u64, pu64, i32, pu64, po]
        so.mst_touch.argtypes = [vp, cp, sz, i32, po]
        so.mst_flush_all.argtypes = [vp, i32]
        so.mst_version.argtypes = [vp, sz, ctypes.c_char_p, sz]
        so.mst_stats.argtypes = [vp, sz, cp, STAT_CB, vp]
        so.mst_set_protocol.argtypes = [vp, ctypes.c_int]
        so.mst_server_protocol.argtypes = [vp, sz]
        so.mst_set_noreply.argtypes = [vp, ctypes.c_bool]
        so.mst_set_namespace.argtypes = [vp, cp]
        so.mst_lease_get.argtypes = [vp, cp, sz, u32, u32, pv, po]
        so.mst_lease_set.argtypes = [vp, cp, sz, cp, sz, u32, i32, u64, po]
        so.mst_lease_invalidate.argtypes = [vp, cp, sz, i32, po]
        self.get_multi_cas = None
        if protocol is not None:
            assert self.call("set_protocol", protocol) == 0

    def store(self, cmd, key, value, flags=0, exptime=0, cas=None):
        out = ctypes.c_int()
        k, v = key.encode(), value if isinstance(value, bytes) else value.encode()
        if cmd in ("append", "prepend"):
            rc = self.call(cmd, k, len(k), v, len(v), ctypes.byref(out))
        elif cmd == "cas":
            rc = self.call(cmd, k, len(k), v, len(v), flags, exptime, cas, ctypes.byref(out))
        else:
            rc = self.call(cmd, k, len(k), v, len(v), flags, exptime, ctypes.byref(out))
        return rc, out.value

    def fetch(self, cmd, key, exptime=None):
        val, out = Value(), ctypes.c_int()
        k = key.encode()
        if cmd == "gat":
            rc = self.call(cmd, k, len(k), exptime, ctypes.byref(val), ctypes.byref(out))
        else:
            rc = self.call(cmd, k, len(k), ctypes.byref(val), ctypes.byref(out))
        data = ctypes.string_at(val.data, val.len) if val.data else None
        res = (rc, out.value, data, val.flags, val.cas)
        self.so.mst_value_clear(ctypes.byref(val))
        return res

    def arith(self, cmd, key, delta, initial=None, exptime=0):
        out, value = ctypes.c_int(), ctypes.c_uint64()
        k = key.encode()
        init = ctypes.byref(ctypes.c_uint64(initial)) if initial is not None else None
        rc = self.call(cmd, k, len(k), delta, init, exptime, ctypes.byref(value),
                       ctypes.byref(out))
        return rc, out.value, value.value

    def keyop(self, cmd, key, *args):
        out = ctypes.c_int()
        k = key.encode()
        rc = self.call(cmd, k, len(k), *args, ctypes.byref(out))
        return rc, out.value

    def get_multi_full(self, keys, with_cas=False):
        found = {}

        def cb(arg, key, nkey, data, n, flags, cas):
            found[ctypes.string_at(key, nkey).decode()] = (ctypes.string_at(data, n), flags, cas)
            return 0
        cfun = ITEM_CB(cb)
        enc = [k.encode() for k in keys]
        arr = (ctypes.c_char_p * len(enc))(*enc)
        lens = (ctypes.c_size_t * len(enc))(*[len(k) for k in enc])
        rc = self.call("get_multi", arr, lens, ctypes.c_size_t(len(enc)),
                       ctypes.c_bool(with_cas), cfun, None)
        return rc, found

    def delete_multi(self, keys):
        enc = [k.encode() for k in keys]
        arr = (ctypes.c_char_p * len(enc))(*enc)
        lens = (ctypes.c_size_t * len(enc))(*[len(k) for k in enc])
        deleted = ctypes.c_size_t()
        rc = self.call("delete_multi", arr, lens, len(enc), ctypes.byref(deleted))
        return rc, deleted.value

    def stats(self, i):
        got = {}

        def cb(arg, server, name, nname, value, nvalue):
            got[ctypes.string_at(name, nname).decode()] = ctypes.string_at(value, nvalue).decode()
            return 0
        cfun = STAT_CB(cb)
        rc = self.call("stats", ctypes.c_size_t(i), None, cfun, None)
        return rc, got

    def version(self, i):
        buf = ctypes.create_string_buffer(64)
        rc = self.call("version", ctypes.c_size_t(i), buf, 64)
        return rc, buf.value.decode()

    def lease_get(self, key, lease_ttl=30, recache=0):
        val, state = Value(), ctypes.c_int()
        k = key.encode()
        rc = self.call("lease_get", k, len(k), lease_ttl, recache, ctypes.byref(val),
                       ctypes.byref(state))
        data = ctypes.string_at(val.data, val.len) if val.data else None
        res = (rc, state.value, data, val.cas)
        self.so.mst_value_clear(ctypes.byref(val))
        return res

    def lease_set(self, key, value, cas, exptime=0, flags=0):
        out = ctypes.c_int()
        k, v = key.encode(), value.encode()
        rc = self.call("lease_set", k, len(k), v, len(v), flags, exptime, cas, ctypes.byref(out))
        return rc, out.value


def exercise_every_operation(h, nservers, tag):
    """The whole operation set on handle h; asserts the outcomes memcached gives."""
    p = tag + ":"
    # Storage commands and reads.
    assert h.store("set", p + "a", "one", flags=7) == (0, MST_STORED)
    assert h.fetch("get", p + "a")[:4] == (0, MST_HIT, b"one", 7)
    assert h.fetch("get", p + "a")[4] == 0  # no CAS without gets
    assert h.fetch("get", p + "missing")[:3] == (0, MST_MISS, None)
    assert h.store("add", p + "a", "x") == (0, MST_NOT_STORED)
    assert h.store("add", p + "b", "two") == (0, MST_STORED)
    assert h.store("replace", p + "b", "deux", flags=3) == (0, MST_STORED)
    assert h.store("replace", p + "nope", "x") == (0, MST_NOT_STORED)
    assert h.store("append", p + "b", "!") == (0, MST_STORED)
    assert h.store("prepend", p + "b", "<") == (0, MST_STORED)
    assert h.store("append", p + "nope", "x") == (0, MST_NOT_STORED)
    assert h.store("prepend", p + "nope", "x") == (0, MST_NOT_STORED)
    assert h.fetch("get", p + "b")[:4] == (0, MST_HIT, b"<deux!", 3)
    # CAS.
    rc, out, data, flags, cas = h.fetch("gets", p + "b")
    assert (rc, out, data) == (0, MST_HIT, b"<deux!") and cas != 0
    assert h.store("cas", p + "b", "new", flags=1, cas=cas + 1000) == (0, MST_EXISTS)
    assert h.store("cas", p + "b", "new", flags=1, cas=cas) == (0, MST_STORED)
    assert h.store("cas", p + "b", "x", cas=cas) == (0, MST_EXISTS)
    assert h.store("cas", p + "nope", "x", cas=1) == (0, MST_NOT_FOUND)
    assert h.fetch("gets", p + "b")[:4] == (0, MST_HIT, b"new", 1)
    # Empty and binary-safe values, big values.
    assert h.store("set", p + "empty", b"") == (0, MST_STORED)
    assert h.fetch("get", p + "empty")[:3] == (0, MST_HIT, b"")
    blob = bytes(range(256)) * 4 + b"\r\nEND\r\nVA 3\r\n"
    assert h.store("set", p + "blob", blob) == (0, MST_STORED)
    assert h.fetch("get", p + "blob")[2] == blob
    assert h.store("set", p + "big", b"z" * 500000) == (0, MST_STORED)
    assert h.fetch("get", p + "big")[2] == b"z" * 500000
    assert h.store("set", p + "huge", b"z" * (2 << 20))[0] == MST_ETOOBIG
    assert h.fetch("get", p + "a")[2] == b"one"  # the connection is still in step
    # Expiry: a negative exptime stores an already expired item.
    assert h.store("set", p + "gone", "v", exptime=-1) == (0, MST_STORED)
    assert h.fetch("get", p + "gone")[:2] == (0, MST_MISS)
    # Touch and get-and-touch.
    assert h.keyop("touch", p + "a", ctypes.c_int32(1000)) == (0, MST_TOUCHED)
    assert h.keyop("touch", p + "nope", ctypes.c_int32(1000)) == (0, MST_NOT_FOUND)
    assert h.fetch("gat", p + "a", 1000)[:4] == (0, MST_HIT, b"one", 7)
    assert h.fetch("gat", p + "nope", 1000)[:2] == (0, MST_MISS)
    assert h.fetch("gat", p + "a", -1)[:2] == (0, MST_HIT)  # expires it
    assert h.fetch("get", p + "a")[:2] == (0, MST_MISS)
    # incr / decr.
    assert h.arith("incr", p + "n", 5) == (0, MST_NOT_FOUND, 0)
    assert h.arith("incr", p + "n", 5, initial=10) == (0, MST_STORED, 10)
    assert h.arith("incr", p + "n", 5, initial=10) == (0, MST_STORED, 15)
    assert h.arith("decr", p + "n", 100) == (0, MST_STORED, 0)
    assert h.arith("decr", p + "m", 1, initial=7) == (0, MST_STORED, 7)
    assert h.arith("incr", p + "m", 2 ** 64 - 7) == (0, MST_STORED, 0)  # wraps
    assert h.arith("incr", p + "b", 1)[0] == MST_ECLIENT  # not a number
    assert h.fetch("get", p + "n")[2].rstrip() == b"0"  # decr pads with spaces in place
    # delete.
    assert h.keyop("delete", p + "b") == (0, MST_DELETED)
    assert h.keyop("delete", p + "b") == (0, MST_NOT_FOUND)
    # Multi-key calls over every server.
    keys = ["%sk%d" % (p, i) for i in range(100)]
    for i, k in enumerate(keys):
        assert h.store("set", k, "v%d" % i, flags=i) == (0, MST_STORED)
    rc, found = h.get_multi_full(keys + [p + "absent1", p + "absent2"])
    assert rc == 0 and sorted(found) == sorted(keys)
    assert all(found[k] == (b"v%d" % i, i, 0) for i, k in enumerate(keys))
    rc, found = h.get_multi_full(keys[:10], with_cas=True)
    assert rc == 0 and len(found) == 10 and all(v[2] != 0 for v in found.values())
    assert len({h.locate(k)[1] for k in keys}) == nservers
    assert h.delete_multi(keys[:50] + [p + "absent"]) == (0, 50)
    rc, found = h.get_multi_full(keys)
    assert rc == 0 and sorted(found) == sorted(keys[50:])
    # noreply: nothing is read back, later calls stay in step (a refused
    # add and a missing delete answer in meta and binary, and are skipped).
    assert h.call("set_noreply", True) == 0
    assert h.store("set", p + "q1", "quiet") == (0, MST_NONE)
    assert h.store("add", p + "q1", "refused") == (0, MST_NONE)
    assert h.keyop("delete", p + "nope") == (0, MST_NONE)
    assert h.keyop("touch", p + "q1", ctypes.c_int32(100)) == (0, MST_NONE)
    assert h.arith("incr", p + "nope", 1)[:2] == (0, MST_NONE)
    assert h.delete_multi([p + "nope1", keys[50]]) == (0, 0)
    assert h.call("set_noreply", False) == 0
    assert h.fetch("get", p + "q1")[:3] == (0, MST_HIT, b"quiet")
    rc, found = h.get_multi_full(keys)
    assert rc == 0 and sorted(found) == sorted(keys[51:])
    # Namespace: prefixed on the wire, stripped in get_multi.
    assert h.call("set_namespace", b"ns:") == 0
    assert h.store("set", "inner", "x") == (0, MST_STORED)
    rc, found = h.get_multi_full(["inner"])
    assert rc == 0 and found["inner"][0] == b"x"
    h.so.mst_set_hash_namespace.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    assert h.call("set_hash_namespace", True) == 0
    assert h.store("set", "inner", "y") == (0, MST_STORED)
    assert h.call("set_namespace", None) == 0
    assert h.fetch("get", "ns:inner")[2] == b"y"
    # Whole servers.
    for i in range(nservers):
        rc, ver = h.version(i)
        assert rc == 0 and ver
        rc, st = h.stats(i)
        assert rc == 0 and "curr_items" in st and "pid" in st
    assert h.call("flush_all", 0) == 0
    assert h.fetch("get", p + "q1")[:2] == (0, MST_MISS)


def make_pool(server_factory, kind, n=2):
    binary = REFERENCE_MEMCACHED if kind == "memcached" else None
    return [server_factory(binary=binary) for _ in range(n)]


@pytest.mark.parametrize("kind", ["memstashd", "memcached"])
@pytest.mark.parametrize("proto", ["text", "meta", "binary"])
def test_library_every_operation_in_each_protocol(server_factory, lib, kind, proto):
    require_tools()
    servers = make_pool(server_factory, kind)
    h = Ops(PROTOCOLS[proto])
    try:
        assert h.call("server_add", ",".join("127.0.0.1:%d" % s.port for s in servers)
                      .encode()) == 0
        exercise_every_operation(h, len(servers), proto)
        # The protocol really spoken: meta once the first call's "mn" was answered.
        for i in range(len(servers)):
            assert h.call("server_protocol", ctypes.c_size_t(i)) == PROTOCOLS[proto]
    finally:
        h.close()


def test_library_meta_is_what_goes_on_the_wire(server_factory, lib):
    """memcached -vv logs each command: after the first call (text, with the
    "mn" probe ahead of it) a default handle speaks meta, a text handle text
    and a binary handle binary."""
    require_tools()
    import re
    for proto, expect, forbid in (("meta", [rb"<\d+ mg ", rb"<\d+ ms ", rb"<\d+ md ",
                                            rb"<\d+ ma ", rb"<\d+ mn"],
                                   [rb"<\d+ set ", rb"<\d+ get ", rb"<\d+ delete "]),
                                  ("text", [rb"<\d+ set ", rb"<\d+ delete ", rb"<\d+ incr "],
                                   [rb"<\d+ m[gsdan]"]),
                                  ("binary", [rb"binary protocol"],
                                   [rb"<\d+ m[gsdan]", rb"<\d+ set "])):
        srv = server_factory("-vv", binary=REFERENCE_MEMCACHED)
        h = Ops(PROTOCOLS[proto])
        try:
            assert h.call("server_add", ("127.0.0.1:%d" % srv.port).encode()) == 0
            assert h.fetch("get", "warmup")[:2] == (0, MST_MISS)
            assert h.store("set", "k", "v") == (0, MST_STORED)
            assert h.fetch("get", "k")[2] == b"v"
            assert h.keyop("delete", "k") == (0, MST_DELETED)
            assert h.arith("incr", "n", 1, initial=1)[:2] == (0, MST_STORED)
        finally:
            h.close()
        deadline = time.monotonic() + 5
        log = b""
        while time.monotonic() < deadline:
            with open(srv.stderr_path, "rb") as f:
                log = f.read()
            if all(re.search(e, log) for e in expect):
                break
            time.sleep(0.05)
        for e in expect:
            assert re.search(e, log), (proto, e, log[-3000:])
        after_warmup = log.split(b"warmup", 1)[-1]
        for f in forbid:
            assert not re.search(f, after_warmup), (proto, f, after_warmup[-3000:])


class OldTextServer:
    """A memcached < 1.6 stand-in: text get/set/delete/incr/version; ERROR
    for anything else (mn, mg, ms...). Runs in a thread of the test."""

    def __init__(self):
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.data = {}
        self.commands = []
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        import threading
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def conn(self, c):
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                parts = line.split()
                if not parts:
                    c.sendall(b"ERROR\r\n")
                    continue
                cmd = parts[0].decode()
                self.commands.append(cmd)
                if cmd in ("get", "gets"):
                    out = b""
                    for k in parts[1:]:
                        if k in self.data:
                            fl, v = self.data[k]
                            out += b"VALUE %s %d %d%s\r\n%s\r\n" % (
                                k, fl, len(v), b" 1" if cmd == "gets" else b"", v)
                    c.sendall(out + b"END\r\n")
                elif cmd in ("set", "add"):
                    v = f.read(int(parts[4]) + 2)[:-2]
                    if cmd == "add" and parts[1] in self.data:
                        c.sendall(b"NOT_STORED\r\n")
                        continue
                    self.data[parts[1]] = (int(parts[2]), v)
                    if parts[-1] != b"noreply":
                        c.sendall(b"STORED\r\n")
                elif cmd == "delete":
                    found = self.data.pop(parts[1], None) is not None
                    c.sendall(b"DELETED\r\n" if found else b"NOT_FOUND\r\n")
                elif cmd == "incr":
                    if parts[1] not in self.data:
                        c.sendall(b"NOT_FOUND\r\n")
                        continue
                    fl, v = self.data[parts[1]]
                    v = b"%d" % (int(v) + int(parts[2]))
                    self.data[parts[1]] = (fl, v)
                    c.sendall(v + b"\r\n")
                elif cmd == "version":
                    c.sendall(b"VERSION 1.4.25\r\n")
                else:
                    c.sendall(b"ERROR\r\n")
        except OSError:
            pass
        finally:
            f.close()
            c.close()

    def close(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(timeout=5)


def test_library_falls_back_to_text_for_old_servers(server_factory, lib):
    """A server that answers ERROR to "mn" (memcached < 1.6) is spoken to in
    text, in the same pool as servers that speak meta."""
    require_tools()
    old = OldTextServer()
    new = server_factory()
    h = Ops()
    try:
        assert h.call("server_add", ("127.0.0.1:%d,127.0.0.1:%d" % (old.port, new.port))
                      .encode()) == 0
        keys = random_keys(60, 101)
        for k in keys:
            assert h.store("set", k, "v" + k) == (0, MST_STORED)
        rc, found = h.get_multi_full(keys)
        assert rc == 0 and {k: v[0].decode() for k, v in found.items()} == \
            {k: "v" + k for k in keys}
        assert h.call("server_protocol", ctypes.c_size_t(0)) == PROTO_TEXT
        assert h.call("server_protocol", ctypes.c_size_t(1)) == PROTO_META
        on_old = [k for k in keys if h.locate(k)[1] == 0]
        assert on_old
        assert h.arith("incr", on_old[0] + "n", 1, initial=4) == (0, MST_STORED, 4)
        assert h.arith("incr", on_old[0] + "n", 1, initial=4)[2] in (4, 5)
        assert h.keyop("delete", on_old[0]) == (0, MST_DELETED)
        # Nothing but text reached the old server, apart from the probes.
        assert set(old.commands) - {"mn"} <= {"get", "gets", "set", "add", "delete", "incr"}
        assert old.commands.count("mn") >= 1
        # Leases need meta: refused for keys of the old server.
        assert h.lease_get(on_old[1])[0] == MST_ENOTSUP
    finally:
        h.close()
        old.close()


# --------------------------------------------------------------------------
# Leases: stampede-safe cache-aside over the meta protocol
# --------------------------------------------------------------------------

LEASE_HIT, LEASE_STALE, LEASE_WON, LEASE_WAIT = range(4)


def lease_round(handles, key, expect_first, old_value=None):
    """All handles ask for key at once (one thread each). Returns the value
    every worker ended up with and the number of wins. The winner recomputes
    (slowly) and stores; the others wait (no value) or serve the stale one,
    retrying until the new value lands."""
    import threading
    n = len(handles)
    barrier = threading.Barrier(n)
    lock = threading.Lock()
    states = {"first": [], "wins": 0, "final": [None] * n, "stale_seen": [], "errors": []}

    def worker(i):
        h = handles[i]
        try:
            barrier.wait(timeout=30)
            rc, state, data, cas = h.lease_get(key, lease_ttl=10)
            assert rc == 0, h.call("last_error")
            with lock:
                states["first"].append(state)
            deadline = time.monotonic() + 20
            while True:
                if state == LEASE_WON:
                    with lock:
                        states["wins"] += 1
                    if old_value is not None:
                        assert data == old_value  # the stale value comes with the win
                    time.sleep(0.5)  # "recompute"
                    new = "%s-by-%d" % (key, i)
                    assert h.lease_set(key, new, cas, exptime=100) == (0, MST_STORED)
                elif state == LEASE_STALE:
                    assert data == old_value
                    with lock:
                        states["stale_seen"].append(i)
                elif state == LEASE_WAIT:
                    assert data is None
                else:
                    assert state == LEASE_HIT
                    states["final"][i] = data.decode()
                    return
                assert time.monotonic() < deadline, "no value landed"
                time.sleep(0.02)
                rc, state, data, cas = h.lease_get(key, lease_ttl=10)
                assert rc == 0
        except BaseException as e:  # reported by the main thread
            with lock:
                states["errors"].append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not states["errors"], states["errors"]
    assert sorted(states["first"]) == sorted([LEASE_WON] + [expect_first] * (n - 1)), states
    assert states["wins"] == 1, states
    assert len(set(states["final"])) == 1 and states["final"][0].startswith(key + "-by-")
    return states["final"][0]


@pytest.mark.parametrize("kind", ["memstashd", "memcached"])
def test_library_lease_one_winner_per_round(server_factory, lib, kind):
    require_tools()
    servers = make_pool(server_factory, kind)
    spec = ",".join("127.0.0.1:%d" % s.port for s in servers).encode()
    handles = [Ops() for _ in range(8)]
    try:
        for h in handles:
            assert h.call("server_add", spec) == 0
        for rnd in range(3):
            key = "lease-%s-%d" % (kind, rnd)
            # A cold miss: one worker wins, the others wait, the value lands.
            value = lease_round(handles, key, LEASE_WAIT)
            assert handles[0].fetch("get", key)[2] == value.encode()
            # Invalidated: one worker wins again, the others serve the stale value.
            assert handles[0].keyop("lease_invalidate", key, ctypes.c_int32(30)) == \
                (0, MST_DELETED)
            newer = lease_round(handles, key, LEASE_STALE, old_value=value.encode())
            assert handles[1].fetch("get", key)[2] == newer.encode()
            rc, state, data, _ = handles[2].lease_get(key)
            assert (rc, state, data) == (0, LEASE_HIT, newer.encode())
        assert handles[0].keyop("lease_invalidate", "never-there", ctypes.c_int32(0)) == \
            (0, MST_NOT_FOUND)
    finally:
        for h in handles:
            h.close()


def test_library_lease_details(server_factory, lib):
    """Recache ahead of expiry, an abandoned lease, and the protocols that
    have no leases."""
    require_tools()
    srv = server_factory()
    spec = ("127.0.0.1:%d" % srv.port).encode()
    a, b, t = Ops(), Ops(), Ops(PROTO_TEXT)
    try:
        for h in (a, b, t):
            assert h.call("server_add", spec) == 0
        # recache_below: a fresh item about to expire is won by one caller,
        # the others keep getting it as a hit.
        assert a.store("set", "r", "old", exptime=5) == (0, MST_STORED)
        rc, state, data, cas = a.lease_get("r", recache=100)
        assert (rc, state, data) == (0, LEASE_WON, b"old")
        assert b.lease_get("r", recache=100)[:3] == (0, LEASE_HIT, b"old")
        assert a.lease_set("r", "new", cas) == (0, MST_STORED)
        assert b.lease_get("r")[:3] == (0, LEASE_HIT, b"new")
        # An abandoned lease ends with its lease_ttl: the next caller wins.
        rc, state, _, cas_a = a.lease_get("abandoned", lease_ttl=1)
        assert (rc, state) == (0, LEASE_WON)
        assert b.lease_get("abandoned", lease_ttl=1)[1] == LEASE_WAIT
        # The 1-second lease runs out at the server's next clock tick or the
        # one after: poll (bounded) while b is told to wait.
        got = poll_until(lambda: (lambda r: r if r[1] != LEASE_WAIT else None)(
            b.lease_get("abandoned", lease_ttl=1)), 10.0, 0.1)
        assert got, "the abandoned lease never ran out"
        rc, state, data, cas_b = got
        assert (rc, state, data) == (0, LEASE_WON, None)
        assert b.lease_set("abandoned", "fresh", cas_b, exptime=100) == (0, MST_STORED)
        assert a.lease_get("abandoned")[:3] == (0, LEASE_HIT, b"fresh")
        # The first winner storing late: stored, but stale, so the next
        # reader recomputes it once more.
        assert a.lease_set("abandoned", "late", cas_a) == (0, MST_STORED)
        assert b.lease_get("abandoned")[:3] == (0, LEASE_WON, b"late")
        assert a.lease_get("abandoned")[:3] == (0, LEASE_STALE, b"late")
        # Bad arguments, and no leases in text.
        assert a.lease_get("x", lease_ttl=0)[0] == -1  # MST_EINVAL
        assert t.lease_get("x")[0] == MST_ENOTSUP
        assert t.lease_set("x", "v", 1)[0] == MST_ENOTSUP
    finally:
        for h in (a, b, t):
            h.close()


# --------------------------------------------------------------------------
# The tool: protocols, dump, bench
# --------------------------------------------------------------------------

@pytest.mark.parametrize("proto", ["text", "meta", "binary"])
def test_tool_in_each_protocol(pool, proto):
    s = pool.spec
    args = ["--protocol", proto]
    assert run(args + ["set", "p-a", "one"], s)[:2] == (EXIT_OK, "stored\n")
    assert run(args + ["add", "p-a", "x"], s)[:2] == (EXIT_OUTCOME, "not stored\n")
    assert run(args + ["incr", "--initial", "3", "p-n", "2"], s)[:2] == (EXIT_OK, "3\n")
    assert run(args + ["incr", "p-n", "2"], s)[:2] == (EXIT_OK, "5\n")
    assert run(args + ["touch", "p-a", "100"], s)[:2] == (EXIT_OK, "touched\n")
    got = run_json(args + ["get", "p-a", "p-n", "p-none"], s, EXIT_OUTCOME)
    assert got["p-a"]["value"] == "one" and got["p-n"]["value"] == "5" and got["p-none"] is None
    assert run(args + ["delete", "p-a"], s)[:2] == (EXIT_OK, "deleted\n")
    assert len(run_json(args + ["version"], s)) == 4
    assert run(["-b", "get", "p-n"], s)[:2] == (EXIT_OK, "5\n")
    assert run(["--protocol", "nope", "get", "k"], s)[0] == EXIT_USAGE


def test_tool_dump(server_factory):
    """memcached and memstashd list keys with lru_crawler metadump; the binary
    protocol has no dump facility (exit 5, documented)."""
    require_tools()
    # memcached's segmented LRU moves fetched items between queues while its
    # crawler walks them, so a metadump can miss them: use its flat LRU.
    mc = server_factory("-o", "no_lru_maintainer", binary=REFERENCE_MEMCACHED)
    spec = "127.0.0.1:%d" % mc.port
    items = {"d-a": "1", "d-b": "two words", "d-nl": "x\ny", "d%pct": "p"}
    for k, v in items.items():
        assert run(["-f", "9", "-e", "1000", "set", k, "-"], spec, stdin=v.encode())[0] == 0
    rows = run_json(["dump"], spec)
    got = {r["key"]: r for r in rows}
    assert sorted(got) == sorted(items)
    for k, v in items.items():
        assert got[k]["value"] == v and got[k]["flags"] == 9 and got[k]["cas"] > 0
        assert got[k]["exptime"] > time.time()
        assert got[k]["server"] == spec
    rc, out, _ = run(["dump"], spec)
    assert rc == 0 and "d-a: 1\n" in out and "d-nl: x\\ny\n" in out
    rc, out, _ = run(["--keys-only", "dump"], spec)
    assert rc == 0 and sorted(l.split()[0] for l in out.splitlines()) == sorted(items)
    # Every protocol but binary can dump.
    assert run(["-P", "text", "dump"], spec)[0] == 0
    assert run(["-b", "dump"], spec)[0] == 5
    # A namespace shows only its keys, without the prefix.
    assert run(["-n", "ns:", "set", "inner", "v"], spec)[0] == 0
    rows = run_json(["-n", "ns:", "dump"], spec)
    assert [(r["key"], r["value"]) for r in rows] == [("inner", "v")]
    # A pool of memcached and memstashd dumps both.
    ms = server_factory()
    ms_spec = "127.0.0.1:%d" % ms.port
    assert run(["-f", "3", "set", "on-ms", "v2"], ms_spec)[0] == 0
    rc, out, err = run(["--json", "dump"], "%s,%s" % (spec, ms_spec))
    assert rc == 0, err
    rows = json.loads(out)
    assert len(rows) == len(items) + 2
    mine = [r for r in rows if r["server"] == ms_spec]
    assert [(r["key"], r["value"], r["flags"]) for r in mine] == [("on-ms", "v2", 3)]
    # A memstashd started with -X refuses: exit 5 and a message, the others still dumped.
    nodump = server_factory("-X")
    rc, out, err = run(["--json", "dump"], "%s,127.0.0.1:%d" % (spec, nodump.port))
    assert rc == 5 and "dump" in err
    assert len(json.loads(out)) == len(items) + 1


def test_tool_top(server_factory):
    """top: per-interval rates from stats deltas, a down server shown as such."""
    require_tools()
    srv = server_factory()
    spec = "127.0.0.1:%d,127.0.0.1:1" % srv.port  # port 1: nothing listens
    env = dict(os.environ)
    env.pop("MEMSTASH_SERVERS", None)
    p = subprocess.Popen([CLI, "-s", spec, "--json", "top", "--count", "3", "--interval", "700"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        time.sleep(0.3)
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        f = s.makefile("rb")
        s.sendall(b"".join(b"set top%d 0 0 1 noreply\r\nx\r\n" % i for i in range(500)))
        s.sendall(b"".join(b"get top%d\r\n" % i for i in range(400, 700)))
        for _ in range(300):
            line = f.readline()
            if line.startswith(b"VALUE"):
                f.readline()
                f.readline()
            assert line.startswith((b"VALUE", b"END"))
        s.close()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert sanitizer_report(err.decode()) is None
    frames = [json.loads(line) for line in out.decode().splitlines()]
    assert len(frames) == 3
    sets = gets = hits = 0.0
    for fr in frames:
        up, down = fr["servers"]
        assert up["up"] is True and down == {"server": "127.0.0.1:1", "up": False}
        sets += up["set_per_s"] * fr["interval_s"]
        g = up["get_per_s"] * fr["interval_s"]
        gets += g
        if up["hit_ratio"] is not None:
            hits += g * up["hit_ratio"]
        assert fr["total"]["items"] == up["items"]
    assert abs(sets - 500) < 3 and abs(gets - 300) < 3 and abs(hits - 100) < 3
    assert frames[-1]["servers"][0]["items"] == 500
    assert frames[-1]["servers"][0]["connections"] >= 1
    # The text view: a header, the servers and the total.
    rc, text, _ = run(["top", "--count", "1", "--interval", "100"], spec)
    assert rc == 0
    assert "GET/s" in text and "127.0.0.1:1" in text and "down" in text and "total" in text
    assert run(["top", "extra"], spec)[0] == EXIT_USAGE
    assert run(["top", "--interval", "5"], spec)[0] == EXIT_USAGE
    # No server answers: exit 3.
    assert run(["top", "--count", "1", "--interval", "100"], "127.0.0.1:1")[0] == 3


def test_tool_bench(pool):
    s = pool.spec
    # Bounded by --count, machine-readable.
    # A generous I/O timeout: the suite also runs under ASan on a loaded host,
    # and a timed-out operation would end the run with exit 3.
    got = run_json(["-t", "10000", "bench", "--count", "3000", "--connections", "3", "--ratio", "4:1",
                    "--multi", "5", "--value-size", "64", "--keys", "500", "--zipf", "0.99"], s)
    assert got["ops"] == 3000 and got["errors"] == 0 and got["connections"] == 3
    assert got["gets"] + got["sets"] * 1 > 0 and got["hits"] == got["gets"]  # prefilled
    assert got["ops_per_sec"] > 0 and got["keys_per_sec"] > got["ops_per_sec"]
    lat = got["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert sum(c for _, c in got["histogram_us"]) == 3000
    # Bounded by --time, human-readable, with a progress line every second.
    t0 = time.monotonic()
    rc, out, err = run(["-t", "10000", "bench", "--time", "2.2", "--connections", "2", "--ratio",
                        "1:1"], s)
    assert rc == 0 and 2.0 < time.monotonic() - t0 < 20
    assert err.count(" ops/s ") >= 2, err
    assert "ops/s)" in out and "p99.9" in out and "histogram:" in out
    # Usage errors, and a dead pool (every operation fails: exit 3).
    assert run(["bench", "--ratio", "x"], s)[0] == EXIT_USAGE
    assert run(["bench", "--time", "0"], s)[0] == EXIT_USAGE
    assert run(["bench", "extra"], s)[0] == EXIT_USAGE
    rc, out, err = run(["bench", "--count", "50", "--no-prefill"], "127.0.0.1:1")
    assert rc == EXIT_FAILURE and "errors:" in out
