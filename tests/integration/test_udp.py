"""UDP transport (-U <port>), as Debian's memcached 1.6.18 serves it.

Every datagram starts with an 8-byte frame header (big-endian u16 each):
request id, sequence number, total datagrams, reserved.  A request must fit
in one datagram (total 1); replies are split into datagrams of at most 1400
bytes (header included) numbered 0..n-1 with the total n, echoing the
request id.  Each response object is its own message: a multi-key get
arrives as one message per hit, END riding on the last one.

Servers are started with the conftest factory (TCP on -p as usual, plus
-U <free udp port>); where the expectation is a number that depends on the
server's internals (curr_connections), memcached 1.6.18 is started side by
side and compared.
"""

import os
import select
import socket
import struct
import time

import pytest

from conftest import IS_MEMCACHED, REFERENCE_MEMCACHED, ServerFactory, poll_until, wait_port
from test_binary import (GET, GETK, GETKQ, NOOP, SET, SETQ, err, parse_packets, req, res,
                         store_extras, u32, ENOENT)

FRAME = struct.Struct(">HHHH")
MAX_DGRAM = 1400
QUIET = 0.4        # no datagram for this long: the reply is complete
NO_REPLY = 0.5     # how long to wait to conclude that nothing comes
EXTRA = 0.05       # after the expected datagrams: none more may follow


def free_udp_port():
    for _ in range(20):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        # the TCP side of the same number is free too (for -U without -p)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
    raise RuntimeError("no free UDP port")


class UdpClient:
    def __init__(self, port, host="127.0.0.1"):
        self.addr = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.connect(self.addr)

    def send_raw(self, datagram):
        self.sock.send(datagram)

    def send(self, payload, rid=1, seq=0, total=1, reserved=0):
        self.sock.send(FRAME.pack(rid, seq, total, reserved) + payload)

    def recv_all(self, quiet=QUIET, total_timeout=2.5, n=None):
        """Datagrams until none arrives for `quiet` seconds; with n, until n
        have arrived and then none for a short EXTRA time (so a surplus
        datagram is still seen)."""
        out = []
        end = time.monotonic() + total_timeout
        while time.monotonic() < end and len(out) < 10000:
            wait = quiet if n is None or len(out) < n else EXTRA
            if n is not None and len(out) < n:
                wait = max(0.0, end - time.monotonic())
            r, _, _ = select.select([self.sock], [], [], wait)
            if not r:
                break
            out.append(self.sock.recv(65536))
        return out

    def request(self, payload, rid=1, n=1, quiet=QUIET):
        """Send one request; n = datagrams expected (None: read until quiet)."""
        self.send(payload, rid)
        return self.recv_all(quiet, n=n)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def split_messages(datagrams):
    """Group datagrams into messages: a message starts at seq 0 and holds
    `total` datagrams.  Returns a list of (rid, total, payload)."""
    msgs = []
    cur = None
    for d in datagrams:
        assert len(d) >= 8, d
        assert len(d) <= MAX_DGRAM, "datagram of %d bytes" % len(d)
        rid, seq, total, rsvd = FRAME.unpack(d[:8])
        assert rsvd == 0, d[:8]
        if seq == 0:
            assert cur is None or len(cur[2]) == cur[1], "incomplete message %r" % (cur,)
            if total == 0:
                # 1.6.18 sends a bare header with total 0 for a suppressed
                # (quiet) binary reply
                assert len(d) == 8, d
                msgs.append([rid, 0, []])
                cur = None
                continue
            cur = [rid, total, []]
            msgs.append(cur)
        assert cur is not None and rid == cur[0] and total == cur[1], d[:8]
        assert seq == len(cur[2]), "seq %d, expected %d" % (seq, len(cur[2]))
        cur[2].append(d[8:])
    for m in msgs:
        assert len(m[2]) == m[1], "message with %d of %d datagrams" % (len(m[2]), m[1])
    return [(m[0], m[1], b"".join(m[2])) for m in msgs]


def udp_server(factory, *extra):
    port = free_udp_port()
    srv = factory("-U", str(port), *extra)
    srv.udp_port = port
    return srv


@pytest.fixture(scope="module")
def userver(tmp_path_factory):
    factory = ServerFactory(str(tmp_path_factory.mktemp("udp")))
    try:
        yield udp_server(factory)
    finally:
        factory.teardown()


@pytest.fixture
def uc(userver):
    c = UdpClient(userver.udp_port)
    try:
        yield c
    finally:
        c.close()


def frame(rid, payload, seq=0, total=1):
    return FRAME.pack(rid, seq, total, 0) + payload


# ---------------------------------------------------------------------------
# Text over UDP
# ---------------------------------------------------------------------------

def test_set_get_exact_datagrams(uc):
    assert uc.request(b"set udp_a 5 0 3\r\nabc\r\n", rid=7) == [frame(7, b"STORED\r\n")]
    assert uc.request(b"get udp_a\r\n", rid=8) == [frame(8, b"VALUE udp_a 5 3\r\nabc\r\nEND\r\n")]
    assert uc.request(b"get udp_nope\r\n", rid=9) == [frame(9, b"END\r\n")]
    assert uc.request(b"delete udp_a\r\n", rid=10) == [frame(10, b"DELETED\r\n")]
    assert uc.request(b"bogus\r\n", rid=11) == [frame(11, b"ERROR\r\n")]


def test_value_set_over_udp_read_over_tcp(uc, userver):
    assert uc.request(b"set udp_t 1 0 2\r\nhi\r\n", rid=1) == [frame(1, b"STORED\r\n")]
    with userver.client() as t:
        t.check(b"get udp_t\r\n", b"VALUE udp_t 1 2\r\nhi\r\nEND\r\n")
        t.check(b"set udp_t2 2 0 2\r\nyo\r\n", b"STORED\r\n")
        line = t.request(b"gets udp_t2\r\n", b"END\r\n")
    assert uc.request(b"gets udp_t2\r\n", rid=2) == [frame(2, line)]


@pytest.mark.parametrize("rid", [0, 1, 0x00ff, 0x1234, 0x8000, 0xffff])
def test_request_id_echoed(uc, rid):
    got = uc.request(b"version\r\n", rid=rid)
    assert len(got) == 1
    assert got[0][:8] == FRAME.pack(rid, 0, 1, 0)
    assert got[0][8:].startswith(b"VERSION 1.6.18") and got[0].endswith(b"\r\n")


def test_noreply_sends_nothing(uc):
    assert uc.request(b"set udp_nr 0 0 1 noreply\r\nx\r\n", n=None, quiet=NO_REPLY) == []
    assert uc.request(b"get udp_nr\r\n", rid=3) == [frame(3, b"VALUE udp_nr 0 1\r\nx\r\nEND\r\n")]


@pytest.mark.parametrize("size", [1392 - 40, 5000, 100000])
def test_large_value_spans_datagrams(uc, userver, size):
    key = b"udp_big%d" % size
    value = bytes((i * 7) % 251 for i in range(size))
    with userver.client() as t:
        t.check(b"set %s 3 0 %d\r\n%s\r\n" % (key, size, value), b"STORED\r\n")
    expected = b"VALUE %s 3 %d\r\n%s\r\nEND\r\n" % (key, size, value)
    n = -(-len(expected) // (MAX_DGRAM - 8))
    got = uc.request(b"get " + key + b"\r\n", rid=0x4242, n=n)
    assert len(got) == n
    for i, d in enumerate(got):
        assert FRAME.unpack(d[:8]) == (0x4242, i, n, 0)
        assert len(d) == (MAX_DGRAM if i < n - 1 else 8 + len(expected) - (n - 1) * (MAX_DGRAM - 8))
    assert split_messages(got) == [(0x4242, n, expected)]


def test_value_set_over_udp_spanning_many_bytes(uc):
    # a request may be large as long as it is one datagram
    value = b"u" * 8000
    assert uc.request(b"set udp_big_req 0 0 8000\r\n" + value + b"\r\n", rid=5) == \
        [frame(5, b"STORED\r\n")]
    msgs = split_messages(uc.request(b"get udp_big_req\r\n", rid=6, n=6))
    assert msgs == [(6, 6, b"VALUE udp_big_req 0 8000\r\n" + value + b"\r\nEND\r\n")]


def test_multi_datagram_request_dropped(uc):
    # memcached checks total == 1 only: any other total is dropped silently
    for seq, total in ((0, 2), (1, 2), (2, 3), (0, 0), (0, 0xffff)):
        uc.send(b"get udp_x\r\n", rid=9, seq=seq, total=total)
    uc.send(b"set udp_x 0 0 1\r\n", rid=9, seq=0, total=2)
    uc.send(b"x\r\n", rid=9, seq=1, total=2)
    assert uc.recv_all(NO_REPLY) == []
    # still serving, and nothing was stored
    assert uc.request(b"get udp_x\r\n", rid=10) == [frame(10, b"END\r\n")]


def test_seq_ignored_when_total_is_one(uc):
    uc.send(b"get udp_x\r\n", rid=9, seq=5, total=1)
    assert uc.recv_all() == [frame(9, b"END\r\n")]


def test_short_datagram_ignored(uc):
    uc.send_raw(b"\x00\x01\x00")
    uc.send_raw(b"")
    uc.send_raw(b"\x00\x01\x00\x00\x00\x01\x00")
    assert uc.request(b"get udp_x\r\n", rid=11) == [frame(11, b"END\r\n")]


def test_multiget_one_message_per_hit(uc):
    assert uc.request(b"set udp_m 5 0 3\r\nabc\r\n", rid=1) == [frame(1, b"STORED\r\n")]
    got = uc.request(b"get udp_m udp_m udp_none udp_m\r\n", rid=2, n=3)
    assert got == [frame(2, b"VALUE udp_m 5 3\r\nabc\r\n"),
                   frame(2, b"VALUE udp_m 5 3\r\nabc\r\n"),
                   frame(2, b"VALUE udp_m 5 3\r\nabc\r\nEND\r\n")]


def test_multiget_content(uc):
    """Whatever the message split, the bytes of a multi-get are those of TCP."""
    assert uc.request(b"set udp_c 5 0 3\r\nabc\r\n", rid=1) == [frame(1, b"STORED\r\n")]
    msgs = split_messages(uc.request(b"get udp_c udp_none udp_c\r\n", rid=2, n=None))
    assert all(m[0] == 2 for m in msgs)
    assert b"".join(m[2] for m in msgs) == b"VALUE udp_c 5 3\r\nabc\r\n" * 2 + b"END\r\n"
    # hits large enough to need several datagrams each
    big = b"B" * 3000
    assert uc.request(b"set udp_cb 0 0 3000\r\n" + big + b"\r\n", rid=3) == \
        [frame(3, b"STORED\r\n")]
    msgs = split_messages(uc.request(b"get udp_cb udp_c udp_cb\r\n", rid=4, n=None))
    assert all(m[0] == 4 for m in msgs)
    item = b"VALUE udp_cb 0 3000\r\n" + big + b"\r\n"
    assert b"".join(m[2] for m in msgs) == item + b"VALUE udp_c 5 3\r\nabc\r\n" + item + b"END\r\n"


# ---------------------------------------------------------------------------
# Binary over UDP (1.6.18 answers it: the first byte 0x80 selects it)
# ---------------------------------------------------------------------------

def test_binary_over_udp(uc):
    got = uc.request(req(SET, b"udp_b", store_extras(9), b"val", opaque=5), rid=21)
    assert len(got) == 1 and got[0][:8] == FRAME.pack(21, 0, 1, 0)
    pk, rest = parse_packets(got[0][8:])
    assert not rest and len(pk) == 1 and pk[0].raw == res(SET, opaque=5, cas=pk[0].cas)
    cas = pk[0].cas
    assert uc.request(req(GETK, b"udp_b", opaque=6), rid=22) == \
        [frame(22, res(GETK, key=b"udp_b", extras=u32(9), value=b"val", opaque=6, cas=cas))]
    assert uc.request(req(GET, b"udp_nob", opaque=7), rid=23) == [frame(23, err(GET, ENOENT, 7))]


def test_binary_quiet_reply_over_udp(uc):
    assert uc.request(req(GETKQ, b"udp_nob"), rid=24) == [FRAME.pack(24, 0, 0, 0)]
    assert uc.request(req(SETQ, b"udp_qq", store_extras(), b"v"), rid=25) == \
        [FRAME.pack(25, 0, 0, 0)]
    assert uc.request(b"get udp_qq\r\n", rid=26) == [frame(26, b"VALUE udp_qq 0 1\r\nv\r\nEND\r\n")]


def test_binary_pipeline_in_one_datagram(uc):
    got = uc.request(req(SETQ, b"udp_p", store_extras(), b"v", opaque=1)
                     + req(GETK, b"udp_p", opaque=2) + req(GET, b"udp_pn", opaque=3)
                     + req(NOOP, opaque=4), rid=30, n=4)
    assert len(got) == 4, got
    assert got[0] == FRAME.pack(30, 0, 0, 0)
    p = [parse_packets(d[8:])[0] for d in got[1:]]
    assert [d[:8] for d in got[1:]] == [FRAME.pack(30, 0, 1, 0)] * 3
    assert [len(x) for x in p] == [1, 1, 1]
    assert p[0][0].raw == res(GETK, key=b"udp_p", extras=u32(0), value=b"v", opaque=2,
                              cas=p[0][0].cas)
    assert p[1][0].raw == err(GET, ENOENT, 3)
    assert p[2][0].raw == res(NOOP, opaque=4)


def test_binary_pipeline_content(uc):
    msgs = split_messages(uc.request(req(SETQ, b"udp_q", store_extras(), b"v", opaque=1)
                                     + req(GETK, b"udp_q", opaque=2)
                                     + req(GET, b"udp_qn", opaque=3) + req(NOOP, opaque=4),
                                     rid=31, n=None))
    pk, rest = parse_packets(b"".join(m[2] for m in msgs))
    assert not rest
    assert [(p.opcode, p.status, p.opaque) for p in pk] == [(GETK, 0, 2), (GET, ENOENT, 3),
                                                            (NOOP, 0, 4)]


# ---------------------------------------------------------------------------
# Compared with memcached: connection counts, settings, stats conns
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def upair(tmp_path_factory):
    """memcached 1.6.18 and the server under test, both with -U and -t 3."""
    if not os.access(REFERENCE_MEMCACHED, os.X_OK):
        pytest.skip("reference %s not installed" % REFERENCE_MEMCACHED)
    base = str(tmp_path_factory.mktemp("udppair"))
    os.makedirs(os.path.join(base, "ref"))
    os.makedirs(os.path.join(base, "sut"))
    ref = ServerFactory(os.path.join(base, "ref"), binary=REFERENCE_MEMCACHED)
    sut = ServerFactory(os.path.join(base, "sut"))
    try:
        yield udp_server(ref, "-t", "3"), udp_server(sut, "-t", "3")
    finally:
        try:
            sut.teardown()
        finally:
            ref.teardown()


def test_curr_connections_counts_udp_like_memcached(upair):
    clients = [srv.client() for srv in upair]
    try:
        for srv, c in zip(upair, clients):
            assert c.stats(b"settings")["udpport"] == str(srv.udp_port)

        def counts():
            return [int(c.stats()["curr_connections"]) for c in clients]
        # a connection closed just before (the readiness probe) may still be
        # counted for a moment: poll, bounded, until both agree
        got = poll_until(lambda: (lambda n: n if n[0] == n[1] else None)(counts()), 3.0, 0.1)
        assert got, "curr_connections: memcached %d, under test %d" % tuple(counts())
        # our client plus one UDP conn per worker thread
        assert got[0] == 1 + 3
    finally:
        for c in clients:
            c.close()


def test_udpport_setting_is_zero_without_udp(shared_server):
    with shared_server.client() as c:
        assert c.stats(b"settings")["udpport"] == "0"


def conns_by_fd(client):
    out = {}
    for name, value in client.stats(b"conns").items():
        fd, field = name.split(":", 1)
        out.setdefault(fd, {})[field] = value
    return out


def udp_conn_entries(srv):
    with srv.client() as c:
        conns = conns_by_fd(c)
    return sorted(sorted((k, v) for k, v in e.items() if k != "secs_since_last_cmd")
                  for e in conns.values() if e.get("addr", "").startswith("udp"))


def test_stats_conns_lists_udp_sockets_like_memcached(upair):
    # one UDP conn per worker thread, on both
    counts = [len(udp_conn_entries(srv)) for srv in upair]
    assert counts[0] == 3 and counts[1] == counts[0], counts


def test_stats_conns_udp_entries_like_memcached(upair):
    got = []
    for srv in upair:
        entries = udp_conn_entries(srv)
        got.append([[(k, v.replace(str(srv.udp_port), "<port>")) for k, v in e]
                    for e in entries])
    assert got[0] == [[("UDP", "UDP"), ("addr", "udp:127.0.0.1:<port>"),
                       ("state", "conn_read")]] * 3
    assert got[1] == got[0]


def test_udp_port_without_p_moves_tcp(server_factory):
    port = free_udp_port()
    srv = server_factory("-U", str(port), "-l", "127.0.0.1", tcp=False, wait=False)
    srv.expected_rc = None  # asserted here instead
    try:
        # UDP answering proves the server is up
        with UdpClient(port) as u:
            got = []
            for _ in range(60):
                try:
                    u.send(b"get x\r\n", rid=3)
                    got = u.recv_all(0.25, total_timeout=0.25, n=1)
                except ConnectionRefusedError:  # not listening yet (ICMP)
                    time.sleep(0.1)
                if got or srv.proc.poll() is not None:
                    break
            assert got == [frame(3, b"END\r\n")], srv.stderr_text()
        assert wait_port("127.0.0.1", port, timeout=1.0, proc=srv.proc), \
            "no TCP listener on the -U port %d" % port
    finally:
        rc, killed = srv.stop()
        assert not killed and rc == 0, (rc, srv.stderr_text())
