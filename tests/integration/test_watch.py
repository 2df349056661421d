"""memcached 1.6's "watch" command: the connection becomes a log stream.

The line format is checked field by field, and the differential tests run the
same traffic against Debian's memcached 1.6.18 (/usr/bin/memcached) and
compare the lines once ts, gid and cfd (which differ by nature) are masked.
Only traffic where both servers log the same events is compared: memcached
also logs the internal lookups of storage commands as item_get lines, which
memstash does not, and a stored append/prepend reports the joined size there
but the appended size here (docs/operations.md, "Watchers").
"""

import os
import re
import socket
import time

import pytest

from conftest import IS_MEMCACHED, REFERENCE_MEMCACHED, RawClient

LINE_RE = re.compile(r"^ts=\d+\.\d+ gid=\d+ type=(\S+)( \S+=\S*)*$")


def watcher(srv, *flags):
    c = RawClient(srv.host, srv.port, timeout=5)
    c.send(b"watch" + b"".join(b" " + f for f in flags) + b"\r\n")
    assert c.read_line() == b"OK\r\n"
    return c


def read_lines(c, want, timeout=5.0):
    """Reads log lines until `want` of them arrived (bounded in time)."""
    deadline = time.monotonic() + timeout
    lines = []
    while len(lines) < want and time.monotonic() < deadline:
        try:
            line = c.read_until(b"\n", timeout=max(0.05, deadline - time.monotonic()))
        except AssertionError:
            break
        lines.append(line.decode().rstrip("\n"))
    return lines


def fields(line):
    assert LINE_RE.match(line), "not a memcached log line: %r" % line
    return dict(kv.split("=", 1) for kv in line.split(" "))


def masked(line):
    f = fields(line)
    for k in ("ts", "gid", "cfd", "rport"):
        f.pop(k, None)
    return f


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------


def test_fetchers_lines(server):
    with server.client() as c:
        c.check(b"set wkey 0 0 5\r\nhello\r\n", b"STORED\r\n")
    w = watcher(server, b"fetchers")
    with server.client() as c:
        c.check(b"get wkey\r\n", b"VALUE wkey 0 5\r\nhello\r\nEND\r\n")
        c.check(b"get w%20k\r\n", b"END\r\n")
        lines = read_lines(w, 2)
    assert len(lines) == 2, lines
    found, missing = fields(lines[0]), fields(lines[1])
    assert found["type"] == "item_get" and found["key"] == "wkey"
    assert found["status"] == "found" and found["size"] == "5" and found["clsid"] != "0"
    assert missing["key"] == "w%2520k" and missing["status"] == "not_found"
    assert missing["clsid"] == "0" and missing["size"] == "0"
    assert int(found["gid"]) < int(missing["gid"])
    assert abs(float(found["ts"]) - time.time()) < 600
    w.close()


@pytest.mark.memstash_only
def test_mutations_and_connevents(server):
    w = watcher(server, b"mutations", b"connevents")
    with server.client() as c:
        port = c.sock.getsockname()[1]
        c.check(b"set m1 0 100 2\r\nab\r\n", b"STORED\r\n")
        c.check(b"add m1 0 0 1\r\nx\r\n", b"NOT_STORED\r\n")
        c.check(b"cas m1 0 0 1 987654321\r\nx\r\n", b"EXISTS\r\n")
    # The readiness probe's connection may be logged too: pick ours by port.
    def ours(lines):
        return [f for f in lines if f.get("rport") == str(port) or f["type"] == "item_store"]
    lines = []
    deadline = time.monotonic() + 15
    while len(ours(lines)) < 5 and time.monotonic() < deadline:
        lines += [fields(l) for l in read_lines(w, 1, timeout=deadline - time.monotonic())]
    lines += [fields(l) for l in read_lines(w, 2, timeout=0.5)]  # and no more of ours
    mine = ours(lines)
    assert len(mine) == 5, lines
    new, st, add, cas, close = mine
    assert new["type"] == "conn_new" and new["rip"] == "127.0.0.1"
    assert new["rport"] == str(port) and new["transport"] == "tcp"
    assert st["type"] == "item_store" and st["status"] == "stored" and st["cmd"] == "set"
    assert st["size"] == "2" and st["ttl"] != "0"
    assert add["status"] == "not_stored" and add["cmd"] == "add"
    assert cas["status"] == "exists" and cas["cmd"] == "cas"
    assert close["type"] == "conn_close" and close["reason"] == "normal"
    assert close["cfd"] == new["cfd"] == st["cfd"]
    w.close()


def test_refusals(server_factory):
    srv = server_factory()
    with srv.client() as c:
        c.check(b"watch bogus\r\n", b"ERROR\r\n")
        c.check(b"watch fetchers extra\r\n", b"ERROR\r\n")
        # "noreply" is an unknown flag whose ERROR is suppressed.
        c.send(b"watch noreply\r\n")
        assert c.call(b"") == b""
    off = server_factory("-W")
    with off.client() as c:
        c.check(b"watch\r\n", b"CLIENT_ERROR watch commands not allowed\r\n")


def test_pipelined_before_watch(server):
    c = RawClient(server.host, server.port, timeout=5)
    c.send(b"get nothing\r\nwatch\r\n")
    assert c.read_until(b"OK\r\n") == b"END\r\nOK\r\n"
    with server.client() as d:
        d.check(b"get nothing2\r\n", b"END\r\n")
    assert fields(read_lines(c, 1)[0])["key"] == "nothing2"
    c.close()


@pytest.mark.memstash_only
def test_watcher_limit_and_accounting(server):
    with server.client() as c:
        # The readiness probe's connection may still be open for a moment.
        assert wait_for(lambda: int(c.stats()["curr_connections"]) == 1), c.stats()
        base = 1
        ws = [watcher(server) for _ in range(20)]
        # Watchers stay counted as connections, as in memcached.
        assert wait_for(lambda: int(c.stats()["curr_connections"]) == base + 20)
        extra = RawClient(server.host, server.port, timeout=5)
        extra.check(b"watch\r\n", b"WATCHER_TOO_MANY log watcher limit reached\r\n")
        extra.close()
        for w in ws:
            w.close()
        assert wait_for(lambda: int(c.stats()["curr_connections"]) == base), c.stats()
        # Room again once they are gone.
        again = watcher(server)
        again.close()


@pytest.mark.memstash_only
def test_slow_watcher_is_told_what_it_skipped(server_factory):
    srv = server_factory("-o", "watcher_logbuf_size=8")
    # A small receive window, so the server's socket buffers fill quickly.
    w = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    w.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    w.settimeout(5)
    w.connect((srv.host, srv.port))
    try:
        w.sendall(b"watch\r\n")
        assert w.recv(4) == b"OK\r\n"
        with srv.client() as c:
            # ~10 MB of lines: more than the kernel's socket buffers hold.
            for _ in range(1000):
                c.send(b"get " + b" ".join(b"k%04d" % i for i in range(100)) + b"\r\n")
                c.read_until(b"END\r\n")
        got = b""
        deadline = time.monotonic() + 10
        while not re.search(rb"\nskipped=\d+\nts=", got) and time.monotonic() < deadline:
            with srv.client() as c:  # one more line after the reader catches up
                c.check(b"get after\r\n", b"END\r\n")
            try:
                got += w.recv(1 << 20)
            except socket.timeout:
                break
        assert re.search(rb"\nskipped=\d+\nts=", got), got[-500:]
        # Far fewer lines arrived than were produced.
        assert got.count(b"type=item_get") < 100000
    finally:
        w.close()


def test_server_stops_with_watchers(server):
    w = watcher(server, b"fetchers", b"connevents")
    rc, killed = server.stop()
    assert rc == 0 and not killed
    w.close()


# --------------------------------------------------------------------------
# against memcached 1.6.18
# --------------------------------------------------------------------------

def run_script(srv, flags, script, want):
    """The lines logged for script: the `want` lines expected (however late
    a loaded host delivers them; memcached's logger thread also sleeps up to
    a second when idle), then any surplus arriving within a second."""
    w = watcher(srv, *flags)
    with srv.client() as c:
        for req, expected in script:
            c.check(req, expected)
    lines = read_lines(w, want, timeout=15.0)
    if len(lines) == want:
        lines += read_lines(w, 100, timeout=1.0)
    w.close()
    return [masked(l) for l in lines]


FETCH_SCRIPT = [
    (b"get d1\r\n", b"END\r\n"),
    (b"set d1 0 0 3\r\nabc\r\n", b"STORED\r\n"),
]
FETCH_SCRIPT2 = [
    (b"get d1\r\n", b"VALUE d1 0 3\r\nabc\r\nEND\r\n"),
    (b"gets nokey\r\n", b"END\r\n"),
    (b"get d1 nokey d1\r\n", b"VALUE d1 0 3\r\nabc\r\nVALUE d1 0 3\r\nabc\r\nEND\r\n"),
    (b"touch d1 100\r\n", b"TOUCHED\r\n"),
    (b"touch nokey 100\r\n", b"NOT_FOUND\r\n"),
    (b"get k%\xc3\xa9y\r\n", b"END\r\n"),
]
MUTATION_SCRIPT = [
    (b"set x1 0 0 2\r\nab\r\n", b"STORED\r\n"),
    (b"add x1 0 0 1\r\nz\r\n", b"NOT_STORED\r\n"),
    (b"replace nox 0 0 1\r\nz\r\n", b"NOT_STORED\r\n"),
    (b"append nox 0 0 2\r\ncd\r\n", b"NOT_STORED\r\n"),
    (b"prepend nox 0 0 1\r\nz\r\n", b"NOT_STORED\r\n"),
    (b"cas x1 0 0 1 987654321\r\nz\r\n", b"EXISTS\r\n"),
    (b"cas nox 0 0 1 1\r\nz\r\n", b"NOT_FOUND\r\n"),
    (b"set x2 5 0 0\r\n\r\n", b"STORED\r\n"),
]


@pytest.mark.memstash_only
@pytest.mark.skipif(not os.access(REFERENCE_MEMCACHED, os.X_OK), reason="no /usr/bin/memcached")
def test_same_lines_as_memcached(server_factory):
    ours = server_factory()
    ref = server_factory(binary=REFERENCE_MEMCACHED)
    for srv in (ours, ref):
        with srv.client() as c:
            for req, expected in FETCH_SCRIPT:
                c.check(req, expected)
    got = {}
    for name, srv in (("memstash", ours), ("memcached", ref)):
        got[name] = (run_script(srv, [b"fetchers"], FETCH_SCRIPT2, 8),
                     run_script(srv, [b"mutations"], MUTATION_SCRIPT, len(MUTATION_SCRIPT)))
    assert got["memstash"][0] == got["memcached"][0]
    # memcached's ttl is its internal clock; both are 0 here (no exptime).
    assert got["memstash"][1] == got["memcached"][1]
    assert len(got["memstash"][0]) == 8 and len(got["memstash"][1]) == len(MUTATION_SCRIPT)
