"""Warm restart (-e FILE): a graceful stop (SIGUSR1 or "shutdown graceful")
saves the cache, and the next start with the same -e serves every unexpired
item again with its value, flags, CAS and expiry.

memcached keeps its items in a file-backed mapping; memstash writes them to
the file at the graceful stop instead (docs/operations.md), so these tests
run against memstashd only.
"""

import os
import re
import signal
import time

import pytest

from conftest import IS_MEMCACHED, RawClient

pytestmark = pytest.mark.skipif(IS_MEMCACHED, reason="memstash's warm restart file")

N_ITEMS = 100000
BATCH = 2000


def client(srv, timeout=30.0):
    return RawClient(port=srv.port, timeout=timeout)


def memfile_dir(tmp_path):
    d = tmp_path / "warm"
    d.mkdir()
    os.chmod(d, 0o777)  # the server may run as nobody (-u)
    return d


def fill(c, n, ttl_of):
    """Pipelined noreply sets of n items: key i, value, flags and TTL from i."""
    for lo in range(0, n, BATCH):
        c.send(b"".join(b"set w%d %d %d %d noreply\r\n%s\r\n"
                        % (i, i % 7, ttl_of(i), len(value(i)), value(i))
                        for i in range(lo, min(n, lo + BATCH))))
    assert c.call(b"") == b""


def value(i):
    return b"value-%d-" % i + b"x" * (i % 50)


def read_all(c, n):
    """{i: (flags, value, cas)} for keys w0..w(n-1) that hit, via gets."""
    out = {}
    pat = re.compile(rb"VALUE w(\d+) (\d+) (\d+) (\d+)\r\n")
    for lo in range(0, n, 500):
        keys = b" ".join(b"w%d" % i for i in range(lo, min(n, lo + 500)))
        c.send(b"gets " + keys + b"\r\n")
        body = c.read_until(re.compile(rb"(?:\A|\r\n)END\r\n"))
        pos = 0
        while True:
            m = pat.match(body, pos)
            if not m:
                break
            size = int(m.group(3))
            data = body[m.end():m.end() + size]
            out[int(m.group(1))] = (int(m.group(2)), data, int(m.group(4)))
            pos = m.end() + size + 2
        assert body[pos:] == b"END\r\n"
    return out


def remaining_ttls(c, keys):
    """mg ... t: seconds left (-1 = never) per key."""
    c.send(b"".join(b"mg %s t\r\n" % k for k in keys) + b"mn\r\n")
    body = c.read_until(b"MN\r\n")
    return [int(t) for t in re.findall(rb"HD t(-?\d+)", body)]


def test_100k_items_survive_a_graceful_restart(server_factory, tmp_path):
    memfile = str(memfile_dir(tmp_path) / "memory_file")
    flags = ("-m", "256", "-e", memfile)
    # Every 10th item lives 1 s only; every 3rd has an hour; the rest never expire.
    def ttl_of(i):
        return 1 if i % 10 == 0 else (3600 if i % 3 == 0 else 0)

    first = server_factory(*flags)
    with client(first) as c:
        fill(c, N_ITEMS, ttl_of)
        before = read_all(c, N_ITEMS)
        saved_at = time.time()
        ttl_before = remaining_ttls(c, [b"w3", b"w1"])
        read_at = time.monotonic()
    assert len(before) >= N_ITEMS * 9 // 10
    assert ttl_before[0] > 3590 and ttl_before[1] == -1
    rc, killed = first.stop(sig=signal.SIGUSR1, timeout=60)
    assert (rc, killed) == (0, False)
    assert os.path.getsize(memfile) > N_ITEMS * 20
    # The 1-second items run out meanwhile. Expiry crosses processes as a
    # unix time, and each server's whole-second clock (time(NULL) at start,
    # then monotonic ticks, each with its own phase) reads between 2 s behind
    # and 1 s ahead of the wall clock: the second server's clock is past the
    # first one's by at least 1 s (every 1-second item expired, and the TTL
    # of w3 lower than before) only from 3 s (plus a tick's lag) on.
    time.sleep(max(0.0, read_at + 3.5 - time.monotonic()))

    second = server_factory(*flags)
    assert not os.path.exists(memfile), "the file is used once, then removed"
    with client(second) as c:
        after = read_all(c, N_ITEMS)
        expect = {i: v for i, v in before.items() if ttl_of(i) != 1}
        assert after == expect  # values, flags and CAS values, all of them
        ttl_after = remaining_ttls(c, [b"w3", b"w1"])
        elapsed = time.time() - saved_at
        assert ttl_after[1] == -1
        # Between the two readings: elapsed (over 3.5 s), give or take the
        # two clocks' offsets (under 3 s apart).
        assert ttl_before[0] - elapsed - 3 <= ttl_after[0] <= ttl_before[0]
        # New CAS values are above every restored one.
        c.check(b"set fresh 0 0 1\r\nz\r\n", b"STORED\r\n")
        fresh_cas = int(c.call(b"gets fresh\r\n").split()[4])
        assert fresh_cas > max(cas for _, _, cas in after.values())
        # A restored CAS still works for cas.
        flags3, data3, cas3 = after[3]
        c.check(b"cas w3 0 0 1 %d\r\nq\r\n" % cas3, b"STORED\r\n")
        stats = c.stats()
        assert int(stats["curr_items"]) == len(expect) + 1


def test_shutdown_graceful_saves_and_sigterm_does_not(server_factory, tmp_path):
    memfile = str(memfile_dir(tmp_path) / "mf")
    srv = server_factory("-A", "-e", memfile)
    with client(srv) as c:
        c.check(b"set kept 3 0 2\r\nok\r\n", b"STORED\r\n")
        c.send(b"shutdown graceful\r\n")
        assert c.wait_closed(15)
    assert srv.wait_exit(30) == 0
    srv.stop()
    assert os.path.exists(memfile)

    srv = server_factory("-e", memfile)
    with client(srv) as c:
        c.check(b"get kept\r\n", b"VALUE kept 3 2\r\nok\r\nEND\r\n")
        c.check(b"set other 0 0 1\r\nz\r\n", b"STORED\r\n")
    # A plain stop does not save: the next start is cold.
    assert srv.stop() == (0, False)
    assert not os.path.exists(memfile)
    srv = server_factory("-e", memfile)
    with client(srv) as c:
        c.check(b"get kept\r\nget other\r\n", b"END\r\nEND\r\n")


def test_corrupt_or_truncated_file_means_a_cold_start(server_factory, tmp_path):
    memfile = str(memfile_dir(tmp_path) / "mf")
    srv = server_factory("-e", memfile)
    with client(srv) as c:
        fill(c, 500, lambda i: 0)
    assert srv.stop(sig=signal.SIGUSR1) == (0, False)
    size = os.path.getsize(memfile)
    with open(memfile, "r+b") as f:
        f.truncate(size // 2)
    srv = server_factory("-e", memfile)
    assert "truncated or corrupt" in srv.stderr_text()
    with client(srv) as c:
        c.check(b"get w1\r\n", b"END\r\n")
        assert c.stats()["curr_items"] == "0"
        c.check(b"set after 0 0 1\r\nz\r\n", b"STORED\r\n")
        c.check(b"get after\r\n", b"VALUE after 0 1\r\nz\r\nEND\r\n")
    srv.stop()
    with open(memfile, "wb") as f:
        f.write(b"not a restart file at all")
    srv = server_factory("-e", memfile)
    assert "starting with an empty cache" in srv.stderr_text()
    with client(srv) as c:
        c.check(b"get w1\r\n", b"END\r\n")
