"""Growing and shrinking a pool with libmemstash's own placement.

- Key movement, from `memstash locate -` (libmemstash's dist code; no I/O,
  so the server addresses need not exist) over 100,000 keys: adding a 4th
  server to 3 moves about 1/4 of the keys, every one of them TO the new
  server; removing one of 4 moves exactly that server's keys and nothing
  else. Modula, for contrast, moves most keys. The fractions are printed
  against the ideal 1/N (pytest -s shows them).
- A mixed pool (2 memstashd + Debian's /usr/bin/memcached) through the
  memstash Python module with distribution='ketama' (libmemstash inside):
  1,000 keys set and read back, every server got keys, each key where
  `memstash locate` says.

Paths: the tool comes from $MEMSTASH_CLI (default: next to $MEMSTASHD in the
build tree), the Python module from $MEMSTASH_PYTHONPATH. A sanitizer build
of the module cannot be loaded by a plain python: then one test re-runs the
module tests in a child python with libasan preloaded.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from asan_rerun import (ASAN_PRELOADED, MODULE_ASAN_OPTIONS, links_asan, module_file,
                        rerun_under_asan)
from conftest import MEMSTASHD, REFERENCE_MEMCACHED, sanitizer_report

BUILD_SRC = os.path.dirname(os.path.dirname(os.path.abspath(MEMSTASHD))) if MEMSTASHD else ""
CLI = os.environ.get("MEMSTASH_CLI") or os.path.join(BUILD_SRC, "cli", "memstash")
MODPATH = os.environ.get("MEMSTASH_PYTHONPATH") or os.path.join(os.path.dirname(BUILD_SRC),
                                                                "python")
NKEYS = 100000
# Addresses only: locate does no I/O.
FOUR = ["10.0.0.%d:11211" % i for i in range(1, 5)]
KEYS = ["user:%06d:%x" % (i, (i * 2654435761) & 0xffffffff) for i in range(NKEYS)]


def require_cli():
    if not (os.path.isfile(CLI) and os.access(CLI, os.X_OK)):
        pytest.fail("memstash tool not found at %r (set MEMSTASH_CLI)" % CLI)


def locate(servers, args=(), keys=KEYS):
    """key -> server index, for every key, with one process."""
    require_cli()
    env = dict(os.environ)
    env.pop("MEMSTASH_SERVERS", None)
    p = subprocess.run([CLI, "-s", ",".join(servers), "--json"] + list(args) + ["locate", "-"],
                       input=("\n".join(keys) + "\n").encode(), capture_output=True,
                       timeout=120, env=env)
    err = p.stderr.decode("utf-8", "replace")
    assert sanitizer_report(err) is None, err
    assert p.returncode == 0, err
    rows = json.loads(p.stdout)
    assert [r["key"] for r in rows] == list(keys)
    return [servers.index(r["server"]) for r in rows]


def test_locate_reads_keys_from_stdin():
    keys = KEYS[:300]
    via_stdin = locate(FOUR, keys=keys)
    via_args = []
    for i in range(0, len(keys), 100):
        p = subprocess.run([CLI, "-s", ",".join(FOUR), "--json", "locate"] + keys[i:i + 100],
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        via_args += [FOUR.index(r["server"]) for r in json.loads(p.stdout)]
    assert via_stdin == via_args
    assert len(set(via_stdin)) == 4
    # A bad key on stdin is reported like one on the command line (exit 4).
    p = subprocess.run([CLI, "-s", ",".join(FOUR), "locate", "-"], input=b"ok\nbad key\n",
                       capture_output=True, timeout=60)
    assert p.returncode == 4, p
    assert p.stdout.decode().startswith("ok 10.0.0.")


KETAMA_MODES = {
    "ketama": [],
    "ketama-md5": ["-H", "md5"],
    "ketama-weighted": ["-d", "ketama-weighted"],
}


@pytest.mark.parametrize("mode", sorted(KETAMA_MODES))
def test_adding_a_server_moves_a_quarter_to_it(mode):
    args = KETAMA_MODES[mode]
    before = locate(FOUR[:3], args)
    after = locate(FOUR, args)
    moved = [i for i in range(NKEYS) if before[i] != after[i]]
    frac = len(moved) / NKEYS
    print("\n%s 3 -> 4 servers: %.4f of %d keys moved (ideal 1/4 = 0.25)" % (mode, frac, NKEYS))
    assert 0.20 <= frac <= 0.30, frac
    # Every moved key moved to the new server, and the new server got only those.
    assert all(after[i] == 3 for i in moved)
    assert sum(1 for s in after if s == 3) == len(moved)


@pytest.mark.parametrize("mode", sorted(KETAMA_MODES))
def test_removing_a_server_moves_only_its_keys(mode):
    args = KETAMA_MODES[mode]
    four = locate(FOUR, args)
    for gone in range(4):
        rest = FOUR[:gone] + FOUR[gone + 1:]
        three = [FOUR.index(rest[s]) for s in locate(rest, args)]
        moved = [i for i in range(NKEYS) if four[i] != three[i]]
        owned = [i for i in range(NKEYS) if four[i] == gone]
        print("%s 4 -> 3 servers (removed #%d): %.4f of keys moved (ideal 1/4 = 0.25)"
              % (mode, gone, len(moved) / NKEYS))
        # Exactly the removed server's keys move; no key of a survivor does.
        assert moved == owned
        assert all(three[i] != gone for i in moved)


def test_modula_moves_most_keys():
    """The contrast: hash % N remaps every key whose residue changes."""
    before = locate(FOUR[:3], ["-d", "modula"])
    after = locate(FOUR, ["-d", "modula"])
    frac = sum(1 for i in range(NKEYS) if before[i] != after[i]) / NKEYS
    print("\nmodula 3 -> 4 servers: %.4f of keys moved (ideal for modula: 3/4)" % frac)
    assert 0.65 <= frac <= 0.85, frac


# --------------------------------------------------------------------------
# A mixed memstashd + memcached pool through libmemstash (the Python module)
# --------------------------------------------------------------------------

MODULE_NEEDS_ASAN = links_asan(module_file(MODPATH))


def test_mixed_pool_under_asan():
    """A sanitizer build: run the module tests of this file with libasan preloaded."""
    if not MODULE_NEEDS_ASAN or ASAN_PRELOADED:
        pytest.skip("module is not a sanitizer build (or libasan is already preloaded)")
    rc, out = rerun_under_asan(__file__, "mixed_pool and not under_asan", MODULE_ASAN_OPTIONS, 550,
                               python_malloc=True)
    assert rc == 0, out[-10000:]
    assert "AddressSanitizer" not in out and "runtime error:" not in out, out[-10000:]
    assert " passed" in out, out[-3000:]


@pytest.fixture
def memstash_module():
    if not module_file(MODPATH):
        pytest.fail("memstash Python module not found in %r (set MEMSTASH_PYTHONPATH)"
                    % MODPATH)
    if MODULE_NEEDS_ASAN and not ASAN_PRELOADED:
        pytest.skip("sanitizer build: run by test_mixed_pool_under_asan")
    if MODPATH not in sys.path:
        sys.path.insert(0, MODPATH)
    import memstash
    return memstash


def raw_keys(port, keys):
    """Keys the server on port holds, asked directly."""
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


def test_mixed_pool_through_libmemstash(server_factory, memstash_module):
    servers = [server_factory(), server_factory(), server_factory(binary=REFERENCE_MEMCACHED)]
    specs = ["127.0.0.1:%d" % s.port for s in servers]
    keys = ["mixed:%04d" % i for i in range(1000)]
    mc = memstash_module.Client(specs, distribution="ketama")
    try:
        values = {k: "value of " + k for k in keys}
        assert mc.set_multi(values) == []
        got = mc.get_multi(keys)
    finally:
        mc.disconnect_all()
    assert got == values
    # Every server got keys, each key exactly where libmemstash's ketama says.
    held = [raw_keys(s.port, keys) for s in servers]
    split = [len(h) for h in held]
    print("\nmixed pool (memstashd, memstashd, memcached) split of 1000 keys: %s" % split)
    assert all(n > 0 for n in split) and sum(split) == 1000, split
    where = locate(specs, keys=keys)
    assert all(keys[i] in held[where[i]] for i in range(len(keys)))
