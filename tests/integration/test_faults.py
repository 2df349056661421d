"""Overload and fault handling.  Each test ends by checking that the server
still serves a fresh client.  Where memcached's behaviour is the reference,
/usr/bin/memcached runs side by side and both answers are compared."""

import os
import resource
import socket
import struct
import time

import pytest

from conftest import IS_MEMCACHED, REFERENCE_MEMCACHED, poll_until, pid_alive


def still_serves(srv, key=b"after_fault"):
    with srv.client() as c:
        c.check(b"set %s 0 0 2\r\nok\r\n" % key, b"STORED\r\n")
        c.check(b"get %s\r\n" % key, b"VALUE %s 0 2\r\nok\r\nEND\r\n" % key)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def reference(server_factory, *args):
    if not os.access(REFERENCE_MEMCACHED, os.X_OK):
        pytest.skip("no %s to compare with" % REFERENCE_MEMCACHED)
    return server_factory(*args, binary=REFERENCE_MEMCACHED, name="memcached")


def exchange(srv, data, quiet=0.5):
    """Sends data, returns (everything received, connection closed?)."""
    c = srv.client()
    try:
        try:
            c.send(data)
        except OSError:
            pass
        got = c.read_quiet(quiet=quiet, total=5.0)
        return got, c.eof
    finally:
        c.close()


def test_reader_that_never_reads(server_factory):
    """Pipelined gets of a 512 KiB value from a client that reads nothing:
    the server stops reading from it once its output cannot drain and
    queues at most OUT_BATCH_MAX (4 MiB) plus one reply, so its RSS stays
    bounded while the client keeps sending, and others are served."""
    srv = server_factory("-m", "64")
    big = b"v" * (512 * 1024)
    with srv.client() as c:
        c.check(b"set big 0 0 %d\r\n%s\r\n" % (len(big), big), b"STORED\r\n")
    base = rss_kb(srv.pid)
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    sent = 0
    peak = base
    try:
        end = time.monotonic() + 4.0
        burst = b"get big\r\n" * 512
        while time.monotonic() < end:
            try:
                sent += s.send(burst)
            except BlockingIOError:
                time.sleep(0.05)
            peak = max(peak, rss_kb(srv.pid))
        # 4 s of requests asking for gigabytes of replies
        assert sent > 64 * 1024
        assert peak - base < 48 * 1024, "RSS grew by %d KiB" % (peak - base)
        still_serves(srv)
    finally:
        s.close()
    still_serves(srv, b"after_close")


@pytest.mark.memstash_only
def test_reader_that_never_reads_is_closed(server_factory):
    """Capped output, then closed: a client that takes none of its pending
    output for -o write_stall_timeout seconds loses its connection (the
    default is 60 s; memcached keeps such a client forever). A slow reader
    that keeps reading is not closed."""
    srv = server_factory("-o", "write_stall_timeout=3")
    big = b"v" * (256 * 1024)
    reply_len = len(b"VALUE big 0 %d\r\n" % len(big)) + len(big) + len(b"\r\nEND\r\n")
    # One control connection for everything else, and counts that wait for
    # the server to have accepted the new connections: on a loaded machine
    # (the sanitizer run beside another test) a connection opened or closed
    # just before a count may not be counted yet, which made this flaky.
    ctl = srv.client()
    assert ctl.stats(b"settings")["write_stall_timeout"] == "3"
    ctl.check(b"set big 0 0 %d\r\n%s\r\n" % (len(big), big), b"STORED\r\n")

    def conns():
        return int(ctl.stats()["curr_connections"])

    base = conns()
    stuck = socket.create_connection(("127.0.0.1", srv.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # A small receive buffer: each read below frees it and the kernel tells
    # the server at once, as a reader that keeps reading does.
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    slow.connect(("127.0.0.1", srv.port))
    slow.settimeout(30.0)
    try:
        stuck.sendall(b"get big\r\n" * 64)
        slow.sendall(b"get big\r\n" * 16)
        assert poll_until(lambda: conns() == base + 2, 10.0)
        # The slow reader takes up to 32 KiB every 0.1 s, for 9 s: under
        # 3 MB, less than its 4 MB of replies, so its output stays blocked
        # all along. (The timeout leaves room for a loaded machine, such as
        # the sanitizer run beside another test, to starve this loop for a
        # second or two without the slow reader counting as stalled.)
        got = 0
        deadline = time.monotonic() + 9.0
        while time.monotonic() < deadline:
            got += len(slow.recv(32 * 1024))
            time.sleep(0.1)
        # The stuck one was closed by the server (its unread replies still
        # sit in kernel buffers, so the client itself would see EOF only
        # after draining them): one connection fewer, the slow one stays.
        assert poll_until(lambda: conns() == base + 1, 5.0)
        assert conns() == base + 1
        # The slow reader still gets every byte of its replies.
        want = 16 * reply_len
        end = time.monotonic() + 30.0
        while got < want and time.monotonic() < end:
            d = slow.recv(1 << 20)
            assert d, "the slow reader was closed after %d of %d bytes" % (got, want)
            got += len(d)
        assert got == want
        still_serves(srv)
    finally:
        stuck.close()
        slow.close()
        ctl.close()


def open_until_refused(srv, limit):
    """Opens connections until one is refused; returns (open ones, refusal)."""
    conns = []
    for _ in range(limit):
        c = srv.client()
        c.send(b"version\r\n")
        line = c.read_until(b"\r\n")
        if not line.startswith(b"VERSION"):
            assert c.wait_closed(5.0)
            c.close()
            return conns, line
        conns.append(c)
    raise AssertionError("no connection refused after %d" % limit)


@pytest.mark.parametrize("which", ["memstashd", "memcached"])
def test_maxconns_and_recovery(server_factory, which):
    if which == "memcached":
        srv = reference(server_factory, "-c", "32")
    else:
        srv = server_factory("-c", "32")
    conns, refusal = open_until_refused(srv, 60)
    try:
        assert refusal == b"ERROR Too many open connections\r\n"
        assert 1 <= len(conns) < 32
        with conns[0] as c:
            if which == "memstashd":
                # Counted before the refusal is written: visible at once.
                assert int(c.stats()["rejected_connections"]) >= 1
            else:
                # memcached counts it after writing and closing, in its
                # listener thread: the client can ask before that.
                assert poll_until(lambda: int(c.stats()["rejected_connections"]) >= 1, 5.0)
    finally:
        for c in conns:
            c.close()
    # once connections close the server accepts again
    assert poll_until(lambda: _serves(srv), 10.0)
    still_serves(srv)


def _serves(srv):
    try:
        with srv.client() as c:
            return c.request(b"version\r\n").startswith(b"VERSION")
    except (AssertionError, OSError):
        return False


def test_item_size_over_half_the_memory_limit_is_refused():
    """-m 1 -I 2m (an item larger than all memory): both servers refuse to
    start, with the same message."""
    from conftest import MEMSTASHD, run_cli, user_args
    rc, _out, err = run_cli(["-m", "1", "-I", "2m", "-p", "0", "-U", "0"] + user_args())
    assert rc != 0 and "Cannot set item size limit higher than 1/2 of memory max." in err
    if not IS_MEMCACHED and os.access(REFERENCE_MEMCACHED, os.X_OK):
        rc2, _o, err2 = run_cli(["-m", "1", "-I", "2m", "-p", "0", "-U", "0"] + user_args(),
                                binary=REFERENCE_MEMCACHED)
        assert rc2 == rc and err2 == err
    assert MEMSTASHD


def test_items_filling_the_memory_limit(server_factory):
    """-m 2 -I 1m and 900 KB values, each near half of all memory: the same
    answers as memcached, value after value."""
    value = b"x" * (900 * 1000)
    req = b"".join(b"set big%d 0 0 %d\r\n%s\r\n" % (i, len(value), value) for i in range(4))
    req += b"get big3\r\nmn\r\n"
    ours = server_factory("-m", "2", "-I", "1m")
    got = exchange(ours, req, quiet=1.0)
    if not IS_MEMCACHED:
        ref = reference(server_factory, "-m", "2", "-I", "1m")
        assert got == exchange(ref, req, quiet=1.0)
    assert got[0].endswith(b"MN\r\n") and not got[1]
    still_serves(ours)


@pytest.mark.memstash_only  # memcached 1.6.18 leaves the queued clients waiting
def test_accept_hits_emfile(server_factory):
    """With its open-file limit lowered under it (prlimit), accept() fails
    with EMFILE: the server pauses accepting, keeps serving the connections
    it has, and accepts again once some close."""
    srv = server_factory("-c", "1024", "-t", "2")
    nfds = len(os.listdir("/proc/%d/fd" % srv.pid))
    resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (nfds + 6, nfds + 6))
    conns = []
    stuck = []
    try:
        for _ in range(12):
            c = srv.client(timeout=1.0)
            c.send(b"version\r\n")
            try:
                assert c.read_until(b"\r\n", 1.0).startswith(b"VERSION")
                conns.append(c)
            except AssertionError:
                stuck.append(c)  # queued in the backlog, not accepted
        assert 1 <= len(conns) <= 8 and stuck, (len(conns), len(stuck))
        # the accepted ones still work
        conns[0].check(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n")
        for c in conns:
            c.close()
        conns = []
        # the queued client is accepted now and gets its answer
        c = stuck[0]
        assert c.read_until(b"\r\n", 10.0).startswith(b"VERSION")
    finally:
        for c in conns + stuck:
            c.close()
    assert pid_alive(srv.pid)
    still_serves(srv)


HUGE = [
    ("text set 2^31", b"set k 0 0 2147483648\r\n"),
    ("text set 2^32-1", b"set k 0 0 4294967295\r\n"),
    ("meta ms 2^32-1", b"ms k 4294967295\r\n"),
    ("meta ms 2^31", b"ms k 2147483648 T0\r\n"),
    ("binary body 0xFFFFFFF0",
     struct.pack(">BBHBBHIIQ", 0x80, 0x01, 1, 8, 0, 0, 0xFFFFFFF0, 0, 0)
     + struct.pack(">II", 0, 0) + b"k" + b"v" * 64),
]


@pytest.mark.parametrize("name,req", HUGE, ids=[h[0] for h in HUGE])
def test_huge_lengths(server_factory, name, req):
    """2 GB and 4 GB lengths: memcached's answer and connection state,
    and no allocation of that size (RSS stays small)."""
    ours = server_factory("-m", "64")
    before = rss_kb(ours.pid)
    binary = req[:1] == b"\x80"
    got = exchange(ours, req if binary else req + b"mn\r\n")
    assert rss_kb(ours.pid) - before < 64 * 1024
    if not IS_MEMCACHED:
        ref = reference(server_factory, "-m", "64")
        want = exchange(ref, req if binary else req + b"mn\r\n")
        if binary and got != want:
            # memcached 1.6.18 sends nothing for a body length over 2^31
            # (its swallow count goes negative: it waits or closes);
            # memstashd answers E2BIG ("Too large.") and closes.
            assert want[0] == b""
            assert got == (struct.pack(">BBHBBHIIQ", 0x81, 0x01, 0, 0, 0, 3, 10, 0, 0)
                           + b"Too large.", True)
        else:
            assert got == want, "%s: memstashd %r, memcached %r" % (name, got, want)
    still_serves(ours)


def test_long_lines_are_bounded(server_factory):
    """A line without newline: closed after 2048 bytes unless it is a get,
    and a get line is closed at TEXT_MULTIGET_LINE_MAX (2 MiB)."""
    srv = server_factory()
    with srv.client() as c:
        c.send(b"set " + b"k" * 4000)
        assert c.wait_closed(5.0)
    with srv.client() as c:
        c.send(b"get " + b"k1 " * 10000)  # 30 KB: a multiget may be long
        time.sleep(0.3)
        c.send(b"\r\n")
        assert c.read_until(b"END\r\n") == b"END\r\n"
    if not IS_MEMCACHED:
        with srv.client(timeout=20.0) as c:
            chunk = b"key " * 16384
            try:
                for _ in range(3 * 1024 * 1024 // len(chunk)):
                    c.send(chunk)
            except OSError:
                pass
            assert c.wait_closed(10.0)
    still_serves(srv)


MEMSTASHD_FAULT = os.environ.get("MEMSTASHD_FAULT", "")


def bin_set(key, value, opaque):
    return struct.pack(">BBHBBHIIQ", 0x80, 0x01, len(key), 8, 0, 0, 8 + len(key) + len(value),
                       opaque, 0) + struct.pack(">II", 0, 0) + key + value


@pytest.mark.memstash_only
def test_allocation_failures(server_factory, monkeypatch):
    """memstashd_fault (MEMSTASH_FAULT_INJECTION) with every 2nd item
    allocation failing: memcached's out-of-memory answers in each protocol,
    the refused data blocks are swallowed, and the server keeps going."""
    if not (MEMSTASHD_FAULT and os.access(MEMSTASHD_FAULT, os.X_OK)):
        pytest.skip("MEMSTASHD_FAULT (the memstashd_fault build) is not set")
    monkeypatch.setenv("MEMSTASH_FAULT_ALLOC_EVERY", "2")
    srv = server_factory(binary=MEMSTASHD_FAULT)
    oom_store = b"SERVER_ERROR out of memory storing object\r\n"
    with srv.client() as c:
        c.check(b"set a 0 0 1\r\nx\r\n", b"STORED\r\n")            # 1st allocation
        c.check(b"set b 0 0 1\r\nx\r\n", oom_store)                # 2nd fails
        c.check(b"set c 0 0 1\r\nx\r\n", b"STORED\r\n")
        c.check(b"append a 0 0 2\r\nyy\r\n", oom_store)            # its data block
        # data block allocated, the joined item not: memcached says NOT_STORED
        c.check(b"append a 0 0 2\r\nyy\r\n", b"NOT_STORED\r\n")
        c.check(b"set n 0 0 1\r\n9\r\n", b"STORED\r\n")
        c.check(b"incr n 1\r\n", b"SERVER_ERROR out of memory\r\n")  # "10" needs a new item
        c.check(b"incr n 100\r\n", b"109\r\n")
        c.check(b"ms m 2\r\nhi\r\n", oom_store)
        c.check(b"ms m2 2\r\nhi\r\n", b"HD\r\n")
    with srv.client() as c:  # a binary connection
        c.send(bin_set(b"bk", b"vv", 1) + bin_set(b"bk", b"vv", 2))
        first = c.read_exact(24 + len(b"Out of memory"))
        assert first[:2] == b"\x81\x01" and first[6:8] == b"\x00\x82" and \
            first.endswith(b"Out of memory")
        second = c.read_exact(24)
        assert second[:2] == b"\x81\x01" and second[6:8] == b"\x00\x00"
    with srv.client() as c:
        c.check(b"get a b c m2 bk\r\n",
                b"VALUE a 0 1\r\nx\r\nVALUE c 0 1\r\nx\r\nVALUE m2 0 2\r\nhi\r\n"
                b"VALUE bk 0 2\r\nvv\r\nEND\r\n")
        s = c.stats()
        assert int(s["curr_items"]) == 5
    assert srv.alive()
