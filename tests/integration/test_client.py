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

from conftest import MEMSTASHD, REFERENCE_MEMCACHED, sanitizer_report

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
                "flush", "version", "ping", "locate"):
        assert "\n  %s " % cmd in out, cmd
    for opt in ("--servers", "--distribution", "--timeout", "--json", "MEMSTASH_SERVERS"):
        assert opt in out, opt
    assert "exit codes:" in out
    for code in range(5):
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


def _needs_asan(path):
    try:
        out = subprocess.run(["ldd", path], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return b"libasan" in out


# A sanitizer build of libmemstash cannot be loaded into a plain python: the
# ASan runtime must come first. The library tests then run in a child python
# with the runtime preloaded (test_library_under_asan).
LIB_NEEDS_ASAN = bool(MEMSTASHD) and os.path.isfile(LIB) and _needs_asan(LIB)
ASAN_PRELOADED = "libasan" in os.environ.get("LD_PRELOAD", "")


def test_library_under_asan():
    if not LIB_NEEDS_ASAN or ASAN_PRELOADED:
        pytest.skip("library is not a sanitizer build (or already preloaded)")
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    env = dict(os.environ, LD_PRELOAD=libasan,
               ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0")
    p = subprocess.run(["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-k", "library and not under_asan", os.path.abspath(__file__)],
                       capture_output=True, env=env, timeout=500,
                       cwd=os.path.dirname(os.path.abspath(__file__)))
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, out[-10000:]
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
