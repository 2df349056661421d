"""memstashd -o io_uring: the io_uring I/O path (src/server/uring.c).

Skipped when the server reports "io_uring no" in stats settings (built
without liburing, or a kernel that refuses rings: the server then falls back
to epoll). ctest also runs test_raw_text, test_pymemcache, test_meta and
test_binary with MEMSTASHD_EXTRA_ARGS="-o io_uring".
"""

import socket
import threading
import time

import pytest
from pymemcache.client.base import Client

from conftest import poll_until

pytestmark = [pytest.mark.memstash_only,
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def settings(srv):
    c = srv.client()
    try:
        return c.stats(b"settings")
    finally:
        c.close()


def stat(srv, name):
    c = srv.client()
    try:
        return int(c.stats()[name])
    finally:
        c.close()


def conns_now(srv):
    """curr_connections once the connections of earlier checks are gone."""
    time.sleep(0.3)
    return stat(srv, "curr_connections")


def conns_back_to(srv, base, timeout):
    """curr_connections (counting the asking connection) falls to base."""
    return poll_until(lambda: stat(srv, "curr_connections") <= base, timeout)


def uring_server(server_factory, *extra, **kw):
    srv = server_factory("-o", "io_uring", "-t", "2", *extra, **kw)
    if settings(srv).get("io_uring") != "yes":
        pytest.skip("this build or kernel has no io_uring: the server fell back to epoll")
    return srv


def recv_until(s, end, limit=1 << 24):
    buf = b""
    while not buf.endswith(end):
        chunk = s.recv(1 << 20)
        if not chunk:
            raise AssertionError("connection closed after %d bytes" % len(buf))
        buf += chunk
        assert len(buf) <= limit
    return buf


def test_default_is_epoll(server_factory):
    srv = server_factory()
    assert settings(srv)["io_uring"] == "no"


def test_get_set_multiget(server_factory):
    srv = uring_server(server_factory)
    mc = Client((srv.host, srv.port), default_noreply=False, timeout=10)
    try:
        for i in range(200):
            assert mc.set("k%d" % i, b"v%d" % i)
        got = mc.get_many(["k%d" % i for i in range(200)] + ["missing"])
        assert got == {"k%d" % i: b"v%d" % i for i in range(200)}
        assert mc.incr("n", 1) is None
        mc.set("n", b"5")
        assert mc.incr("n", 3) == 8
        assert mc.delete("k0")
        assert mc.get("k0") is None
    finally:
        mc.close()


def test_large_values(server_factory):
    srv = uring_server(server_factory, "-I", "2m", "-m", "64")
    mc = Client((srv.host, srv.port), default_noreply=False, timeout=20)
    try:
        big = bytes(range(256)) * 4096  # 1 MiB
        assert mc.set("big", big)
        assert mc.get("big") == big
        # Several at once: the reply is far larger than one send.
        for i in range(4):
            assert mc.set("big%d" % i, big[i:] + big[:i])
        got = mc.get_many(["big%d" % i for i in range(4)])
        assert all(got["big%d" % i] == big[i:] + big[:i] for i in range(4))
    finally:
        mc.close()


def test_pipelining(server_factory):
    srv = uring_server(server_factory)
    s = socket.create_connection((srv.host, srv.port))
    try:
        n = 2000
        req = b"".join(b"set p%d 0 0 %d noreply\r\n%s\r\n" % (i, len(b"%d" % i), b"%d" % i)
                       for i in range(n))
        req += b"".join(b"get p%d\r\n" % i for i in range(n))
        s.sendall(req)
        buf = b""
        while buf.count(b"END\r\n") < n:
            chunk = s.recv(1 << 20)
            assert chunk
            buf += chunk
        assert buf.count(b"VALUE") == n
        assert b"VALUE p1999 0 4\r\n1999\r\nEND\r\n" in buf
    finally:
        s.close()


def test_many_connections(server_factory):
    srv = uring_server(server_factory, "-c", "1024")
    base = conns_now(srv)
    errors = []

    def run(t):
        try:
            socks = [socket.create_connection((srv.host, srv.port)) for _ in range(50)]
            for i, s in enumerate(socks):
                s.sendall(b"set c%d_%d 0 0 1\r\nx\r\n" % (t, i))
            for s in socks:
                assert recv_until(s, b"\r\n") == b"STORED\r\n"
            for i, s in enumerate(socks):
                s.sendall(b"get c%d_%d\r\n" % (t, i))
            for i, s in enumerate(socks):
                assert recv_until(s, b"END\r\n") == b"VALUE c%d_%d 0 1\r\nx\r\nEND\r\n" % (t, i)
            for s in socks:
                s.close()
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert conns_back_to(srv, base, 10)


def test_unix_socket(server_factory, tmp_path):
    path = str(tmp_path / "mc.sock")
    srv = server_factory("-o", "io_uring", tcp=False, unix=path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    try:
        s.sendall(b"stats settings\r\n")
        text = recv_until(s, b"END\r\n")
        if b"STAT io_uring yes" not in text:
            pytest.skip("no io_uring in this build or kernel")
        s.sendall(b"set u 0 0 3\r\nabc\r\nget u\r\n")
        assert recv_until(s, b"END\r\n") == b"STORED\r\nVALUE u 0 3\r\nabc\r\nEND\r\n"
    finally:
        s.close()


def test_disconnect_mid_reply(server_factory):
    """Clients that leave while a large reply is being sent, or with a
    request half sent, or while their data block is being read."""
    srv = uring_server(server_factory, "-I", "2m", "-m", "128")
    base = conns_now(srv)
    mc = Client((srv.host, srv.port), default_noreply=False, timeout=20)
    big = b"z" * (1024 * 1024)
    try:
        for i in range(8):
            assert mc.set("d%d" % i, big)
    finally:
        mc.close()
    keys = b" ".join(b"d%d" % i for i in range(8))
    for _ in range(20):
        s = socket.create_connection((srv.host, srv.port))
        s.sendall(b"get " + keys + b"\r\n")
        s.recv(1000)  # some of the reply, then gone with the rest unsent
        s.close()
    for _ in range(20):
        s = socket.create_connection((srv.host, srv.port))
        s.sendall(b"set half 0 0 100000\r\n" + b"y" * 5000)  # data block cut short
        s.close()
        s = socket.create_connection((srv.host, srv.port))
        s.sendall(b"get d1 d2")  # no end of line
        s.close()
    # RST instead of FIN, with a reply queued.
    s = socket.create_connection((srv.host, srv.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.sendall(b"get " + keys + b"\r\n")
    time.sleep(0.05)
    s.close()
    assert conns_back_to(srv, base, 10)
    mc = Client((srv.host, srv.port), default_noreply=False, timeout=20)
    try:
        assert mc.get("d7") == big
    finally:
        mc.close()


def test_slow_reader_write_stall(server_factory):
    """A client that never reads its replies: no more requests are read
    from it, and -o write_stall_timeout closes it (a send in flight is
    cancelled)."""
    srv = uring_server(server_factory, "-o", "write_stall_timeout=2", "-I", "2m",
                       "-m", "128")
    base = conns_now(srv)
    mc = Client((srv.host, srv.port), default_noreply=False, timeout=20)
    try:
        assert mc.set("s", b"q" * (1024 * 1024))
    finally:
        mc.close()
    s = socket.create_connection((srv.host, srv.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"get s s s s s s s s\r\n" * 4)
    time.sleep(1)
    assert stat(srv, "curr_connections") == base + 1  # held, not read from
    assert conns_back_to(srv, base, 20)
    s.close()
    # The server goes on serving.
    mc = Client((srv.host, srv.port), default_noreply=False, timeout=10)
    try:
        assert mc.set("after", b"1") and mc.get("after") == b"1"
    finally:
        mc.close()


def test_idle_timeout_cancels_recv(server_factory):
    srv = uring_server(server_factory, "-o", "idle_timeout=1")
    socks = [socket.create_connection((srv.host, srv.port)) for _ in range(10)]
    try:
        for s in socks:
            s.sendall(b"version\r\n")
            assert recv_until(s, b"\r\n").startswith(b"VERSION")
        for s in socks:
            s.settimeout(10)
            assert s.recv(100) == b""  # closed by the server
        assert stat(srv, "idle_kicks") >= 10
    finally:
        for s in socks:
            s.close()


def test_shutdown_with_connections_in_flight(server_factory):
    """SIGTERM while connections wait in recv and send: a clean exit (the
    factory asserts rc 0 and no sanitizer report)."""
    srv = uring_server(server_factory, "-I", "2m")
    mc = Client((srv.host, srv.port), default_noreply=False, timeout=20)
    try:
        assert mc.set("b", b"w" * (1024 * 1024))
    finally:
        mc.close()
    idle = [socket.create_connection((srv.host, srv.port)) for _ in range(20)]
    stuck = socket.create_connection((srv.host, srv.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"get b b b b\r\n")
    half = socket.create_connection((srv.host, srv.port))
    half.sendall(b"set h 0 0 500000\r\n" + b"x" * 1000)
    time.sleep(0.3)
    try:
        rc, killed = srv.stop()
        assert not killed and rc == 0
    finally:
        for s in idle + [stuck, half]:
            s.close()
