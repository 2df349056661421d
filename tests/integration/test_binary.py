"""The memcached binary protocol over raw TCP, byte for byte.

Expectations are those of Debian's memcached 1.6.18 (all verified live with
MEMSTASHD=/usr/bin/memcached).  Packets are built with struct here; nothing
from the server's own codec is used.

Helpers at the top (packet builders, parser, BinConn) are imported by
test_differential_binary.py and test_udp.py.

Most tests share one server per module and namespace their keys with the
`keyprefix` fixture; tests that flush, reset or need special flags start their
own server.  `BinConn.call(data)` sends data followed by a NOOP with a
sentinel opaque and returns every packet received before the NOOP reply: it
proves both the exact replies (quiet ones included) and that the connection
is still in sync afterwards.
"""

import collections
import re
import struct

import pytest

from conftest import IS_MEMCACHED

# ---------------------------------------------------------------------------
# Packets
# ---------------------------------------------------------------------------

HEADER = struct.Struct(">BBHBBHIIQ")
REQ_MAGIC = 0x80
RES_MAGIC = 0x81

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH = range(0x00, 0x09)
GETQ, NOOP, VERSION, GETK, GETKQ, APPEND, PREPEND, STAT = range(0x09, 0x11)
SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ, QUITQ, FLUSHQ = range(0x11, 0x19)
APPENDQ, PREPENDQ, VERBOSITY, TOUCH, GAT, GATQ = range(0x19, 0x1f)
SASL_LIST, SASL_AUTH, SASL_STEP, GATK, GATKQ = range(0x20, 0x25)

OK = 0x00
ENOENT = 0x01
EEXISTS = 0x02
E2BIG = 0x03
EINVAL = 0x04
NOT_STORED = 0x05
DELTA_BADVAL = 0x06
AUTH_ERROR = 0x20
UNKNOWN_COMMAND = 0x81

STATUS_TEXT = {
    ENOENT: b"Not found",
    EEXISTS: b"Data exists for key.",
    E2BIG: b"Too large.",
    EINVAL: b"Invalid arguments",
    NOT_STORED: b"Not stored.",
    DELTA_BADVAL: b"Non-numeric server-side value for incr or decr",
    AUTH_ERROR: b"Auth failure.",
    UNKNOWN_COMMAND: b"Unknown command",
    0x82: b"Out of memory",
}

NOOP_SENTINEL = 0x5E171E1


def req(op, key=b"", extras=b"", value=b"", opaque=0, cas=0, keylen=None, extlen=None,
        bodylen=None, magic=REQ_MAGIC, vbucket=0, datatype=0):
    """A request packet; the length fields may be overridden to lie."""
    kl = len(key) if keylen is None else keylen
    el = len(extras) if extlen is None else extlen
    bl = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    return HEADER.pack(magic, op, kl, el, datatype, vbucket, bl, opaque, cas) + extras + key + value


def res(op, status=OK, key=b"", extras=b"", value=b"", opaque=0, cas=0):
    """The exact bytes of a response packet."""
    return HEADER.pack(RES_MAGIC, op, len(key), len(extras), 0, status,
                       len(extras) + len(key) + len(value), opaque, cas) + extras + key + value


def err(op, status, opaque=0):
    """An error response: status text as the body, CAS 0."""
    return res(op, status, value=STATUS_TEXT[status], opaque=opaque)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def store_extras(flags=0, exptime=0):
    return struct.pack(">II", flags, exptime)


def arith_extras(delta, initial=0, exptime=0):
    return struct.pack(">QQI", delta, initial, exptime)


def noop(opaque=NOOP_SENTINEL):
    return req(NOOP, opaque=opaque)


Packet = collections.namedtuple(
    "Packet", "magic opcode keylen extlen datatype status bodylen opaque cas extras key value raw")


def parse_packets(buf):
    """Split buf into complete response packets: (list of Packet, rest)."""
    out = []
    pos = 0
    while len(buf) - pos >= 24:
        h = HEADER.unpack_from(buf, pos)
        magic, op, kl, el, dt, st, bl, opq, cas = h
        if len(buf) - pos < 24 + bl:
            break
        body = buf[pos + 24:pos + 24 + bl]
        out.append(Packet(magic, op, kl, el, dt, st, bl, opq, cas, body[:el], body[el:el + kl],
                          body[el + kl:], buf[pos:pos + 24 + bl]))
        pos += 24 + bl
    return out, buf[pos:]


def brief(data, limit=200):
    return data if len(data) <= limit else data[:limit // 2] + b"..." + data[-limit // 4:]


class BinConn:
    """Binary-protocol view of a RawClient (bounded reads)."""

    def __init__(self, raw):
        self.raw = raw

    def send(self, data):
        self.raw.send(data)

    def read_packet(self, timeout=None):
        head = self.raw.read_exact(24, timeout)
        bl = HEADER.unpack(head)[6]
        body = self.raw.read_exact(bl, timeout) if bl else b""
        pk, rest = parse_packets(head + body)
        assert len(pk) == 1 and not rest
        return pk[0]

    def read_until_noop(self, opaque=NOOP_SENTINEL, timeout=None):
        out = []
        for _ in range(100000):
            p = self.read_packet(timeout)
            if p.opcode == NOOP and p.opaque == opaque:
                assert p.raw == res(NOOP, opaque=opaque), p.raw
                return out
            out.append(p)
        raise AssertionError("no NOOP reply within 100000 packets")

    def call(self, data, timeout=None):
        """Send data + NOOP; return the packets received before the NOOP
        reply (which must be exact)."""
        self.send(data + noop())
        return self.read_until_noop(timeout=timeout)

    def call1(self, data, timeout=None):
        got = self.call(data, timeout)
        assert len(got) == 1, "expected one reply to %r, got %r" % (brief(data), got)
        return got[0]

    def check(self, data, expected, timeout=None):
        """Send data + NOOP; the bytes before the NOOP reply must be exactly
        `expected`."""
        got = b"".join(p.raw for p in self.call(data, timeout))
        assert got == expected, "sent %r\nexpected %r\n     got %r" % (
            brief(data, 300), brief(expected, 300), brief(got, 300))

    def closed_after(self, data, timeout=5.0):
        """Send data; return (bytes received, closed?)."""
        self.send(data)
        closed = self.raw.wait_closed(timeout)
        got, self.raw.buf = self.raw.buf, b""
        return got, closed

    def close(self):
        self.raw.close()


def b(s):
    return s.encode() if isinstance(s, str) else s


def item_limit(nkey, flags=0):
    """Largest value memcached 1.6.18 stores at default -I 1m: 1 MiB minus
    the 48-byte header, 8-byte CAS, key + 1, client flags if non-zero and
    the 2-byte value terminator."""
    return 1024 * 1024 - 48 - 8 - (nkey + 1) - (4 if flags else 0) - 2


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

@pytest.fixture
def bconn(shared_server):
    c = BinConn(shared_server.client())
    try:
        yield c
    finally:
        c.close()


def new_bin(server, timeout=5.0):
    return BinConn(server.client(timeout=timeout))


def set_item(c, key, value, flags=0, exptime=0, opaque=0):
    p = c.call1(req(SET, key, store_extras(flags, exptime), value, opaque=opaque))
    assert p.raw == res(SET, opaque=opaque, cas=p.cas) and p.cas != 0, p
    return p.cas


def get_cas(c, key):
    p = c.call1(req(GET, key))
    assert p.status == OK, p
    return p.cas


# ---------------------------------------------------------------------------
# NOOP, VERSION, opaque
# ---------------------------------------------------------------------------

def test_noop_exact(bconn):
    bconn.check(req(NOOP, opaque=0xDEADBEEF), res(NOOP, opaque=0xDEADBEEF))
    # vbucket and datatype of a request are ignored
    bconn.check(req(NOOP, opaque=7, vbucket=0x1234), res(NOOP, opaque=7))


def test_version_matches_text_version(bconn, shared_server):
    p = bconn.call1(req(VERSION, opaque=0x01020304))
    assert (p.magic, p.opcode, p.status, p.keylen, p.extlen, p.datatype, p.opaque, p.cas) == \
        (RES_MAGIC, VERSION, OK, 0, 0, 0, 0x01020304, 0)
    assert re.match(rb"1\.6\.18\S*\Z", p.value), p.value
    with shared_server.client() as t:
        line = t.request(b"version\r\n")
    assert line == b"VERSION " + p.value + b"\r\n"


def test_opaque_echoed_in_every_reply(bconn, keyprefix):
    k = b(keyprefix + "k")
    got = bconn.call(req(SET, k, store_extras(), b"v", opaque=0xFFFFFFFF)
                     + req(GET, k, opaque=0) + req(GET, k + b"x", opaque=0x11223344))
    assert [p.opaque for p in got] == [0xFFFFFFFF, 0, 0x11223344]
    assert got[2].raw == err(GET, ENOENT, 0x11223344)


# ---------------------------------------------------------------------------
# GET family
# ---------------------------------------------------------------------------

def test_get_miss_exact(bconn, keyprefix):
    k = b(keyprefix + "nope")
    bconn.check(req(GET, k, opaque=5), err(GET, ENOENT, 5))
    # GETK misses carry the key and no text
    bconn.check(req(GETK, k, opaque=6), res(GETK, ENOENT, key=k, opaque=6))


def test_get_hit_exact(bconn, keyprefix):
    k = b(keyprefix + "hit")
    cas = set_item(bconn, k, b"hello\r\nworld\x00", flags=0xCAFEBABE)
    bconn.check(req(GET, k, opaque=1),
                res(GET, extras=u32(0xCAFEBABE), value=b"hello\r\nworld\x00", opaque=1, cas=cas))
    bconn.check(req(GETK, k, opaque=2),
                res(GETK, key=k, extras=u32(0xCAFEBABE), value=b"hello\r\nworld\x00",
                    opaque=2, cas=cas))
    # quiet hits are sent like loud ones (with their own quiet opcode)
    bconn.check(req(GETQ, k, opaque=3),
                res(GETQ, extras=u32(0xCAFEBABE), value=b"hello\r\nworld\x00", opaque=3, cas=cas))
    bconn.check(req(GETKQ, k, opaque=4),
                res(GETKQ, key=k, extras=u32(0xCAFEBABE), value=b"hello\r\nworld\x00",
                    opaque=4, cas=cas))


def test_empty_value(bconn, keyprefix):
    k = b(keyprefix + "e")
    cas = set_item(bconn, k, b"")
    bconn.check(req(GET, k), res(GET, extras=u32(0), cas=cas))


def test_quiet_get_batch_ended_by_noop(bconn, keyprefix):
    keys = [b(keyprefix + "q%03d" % i) for i in range(60)]
    cas = {}
    for i, k in enumerate(keys):
        if i % 3 == 0:
            cas[k] = set_item(bconn, k, b"v%d" % i, flags=i)
    batch = b"".join(req(GETKQ if i % 2 else GETQ, k, opaque=i) for i, k in enumerate(keys))
    expected = b""
    for i, k in enumerate(keys):
        if k in cas:
            op = GETKQ if i % 2 else GETQ
            expected += res(op, key=k if i % 2 else b"", extras=u32(i), value=b"v%d" % i,
                            opaque=i, cas=cas[k])
    bconn.check(batch, expected)
    # only misses: nothing at all before the NOOP reply
    bconn.check(b"".join(req(GETQ, k + b"_miss") + req(GETKQ, k + b"_miss") for k in keys), b"")


def test_noop_flushes_quiet_replies_in_order(bconn, keyprefix):
    k = b(keyprefix + "k")
    got = bconn.call(req(SETQ, k, store_extras(1), b"a", opaque=1)
                     + req(ADDQ, k, store_extras(), b"b", opaque=2)        # exists -> error sent
                     + req(GETQ, k, opaque=3)                             # hit -> sent
                     + req(REPLACEQ, k, store_extras(2), b"c", opaque=4)   # ok -> suppressed
                     + req(GETKQ, k, opaque=5))
    assert [(p.opcode, p.status, p.opaque) for p in got] == \
        [(ADDQ, EEXISTS, 2), (GETQ, OK, 3), (GETKQ, OK, 5)]
    assert got[0].raw == err(ADDQ, EEXISTS, 2)
    assert got[1].value == b"a" and got[1].extras == u32(1)
    assert got[2].value == b"c" and got[2].extras == u32(2) and got[2].key == k
    assert got[2].cas != got[1].cas


def test_many_pipelined_requests(bconn, keyprefix):
    n = 300
    keys = [b(keyprefix + "%d" % i) for i in range(n)]
    data = b"".join(req(SET, k, store_extras(i), b"%d" % i, opaque=i) for i, k in enumerate(keys))
    got = bconn.call(data)
    assert [(p.opcode, p.status, p.opaque) for p in got] == [(SET, OK, i) for i in range(n)]
    got2 = bconn.call(b"".join(req(GETK, k, opaque=i) for i, k in enumerate(keys)))
    assert [(p.key, p.value, p.extras, p.cas) for p in got2] == \
        [(k, b"%d" % i, u32(i), got[i].cas) for i, k in enumerate(keys)]


# ---------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------

def test_set_returns_new_cas_each_time(bconn, keyprefix):
    k = b(keyprefix + "s")
    c1 = set_item(bconn, k, b"1")
    c2 = set_item(bconn, k, b"2")
    assert c2 > c1
    bconn.check(req(GET, k), res(GET, extras=u32(0), value=b"2", cas=c2))


def test_setq_success_suppressed_errors_sent(bconn, keyprefix):
    k = b(keyprefix + "s")
    bconn.check(req(SETQ, k, store_extras(7), b"quiet", opaque=1), b"")
    p = bconn.call1(req(GET, k))
    assert (p.status, p.extras, p.value) == (OK, u32(7), b"quiet")
    # a quiet error is sent with the quiet opcode
    bconn.check(req(SETQ, k, store_extras(), b"x", cas=p.cas + 1000, opaque=9),
                err(SETQ, EEXISTS, 9))


def test_add(bconn, keyprefix):
    k = b(keyprefix + "a")
    p = bconn.call1(req(ADD, k, store_extras(3), b"first", opaque=1))
    assert p.raw == res(ADD, opaque=1, cas=p.cas) and p.cas
    bconn.check(req(ADD, k, store_extras(), b"second", opaque=2), err(ADD, EEXISTS, 2))
    bconn.check(req(GET, k), res(GET, extras=u32(3), value=b"first", cas=p.cas))
    bconn.check(req(ADDQ, k + b"2", store_extras(), b"x"), b"")
    bconn.check(req(ADDQ, k + b"2", store_extras(), b"x", opaque=3), err(ADDQ, EEXISTS, 3))


def test_replace(bconn, keyprefix):
    k = b(keyprefix + "r")
    bconn.check(req(REPLACE, k, store_extras(), b"x", opaque=1), err(REPLACE, ENOENT, 1))
    bconn.check(req(REPLACEQ, k, store_extras(), b"x", opaque=2), err(REPLACEQ, ENOENT, 2))
    set_item(bconn, k, b"old")
    p = bconn.call1(req(REPLACE, k, store_extras(9), b"new"))
    assert p.raw == res(REPLACE, cas=p.cas)
    bconn.check(req(GET, k), res(GET, extras=u32(9), value=b"new", cas=p.cas))
    bconn.check(req(REPLACEQ, k, store_extras(), b"newer"), b"")
    assert bconn.call1(req(GET, k)).value == b"newer"


def test_set_with_cas(bconn, keyprefix):
    k = b(keyprefix + "c")
    # CAS on a missing key: Not found
    bconn.check(req(SET, k, store_extras(), b"x", cas=12345, opaque=1), err(SET, ENOENT, 1))
    cas = set_item(bconn, k, b"v1")
    bconn.check(req(SET, k, store_extras(), b"v2", cas=cas + 1, opaque=2), err(SET, EEXISTS, 2))
    bconn.check(req(SETQ, k, store_extras(), b"v2", cas=cas - 1, opaque=3), err(SETQ, EEXISTS, 3))
    p = bconn.call1(req(SET, k, store_extras(4), b"v2", cas=cas, opaque=4))
    assert p.raw == res(SET, opaque=4, cas=p.cas) and p.cas > cas
    # the old CAS is now stale
    bconn.check(req(SET, k, store_extras(), b"v3", cas=cas), err(SET, EEXISTS))
    bconn.check(req(GET, k), res(GET, extras=u32(4), value=b"v2", cas=p.cas))
    # REPLACE honours CAS the same way
    bconn.check(req(REPLACE, k, store_extras(), b"v3", cas=cas), err(REPLACE, EEXISTS))
    p2 = bconn.call1(req(REPLACE, k, store_extras(), b"v3", cas=p.cas))
    assert p2.status == OK and p2.cas > p.cas


def test_delete(bconn, keyprefix):
    k = b(keyprefix + "d")
    bconn.check(req(DELETE, k, opaque=1), err(DELETE, ENOENT, 1))
    bconn.check(req(DELETEQ, k, opaque=2), err(DELETEQ, ENOENT, 2))
    set_item(bconn, k, b"x")
    # success: CAS 0 in the reply
    bconn.check(req(DELETE, k, opaque=3), res(DELETE, opaque=3))
    bconn.check(req(GET, k), err(GET, ENOENT))
    set_item(bconn, k, b"x")
    bconn.check(req(DELETEQ, k), b"")
    bconn.check(req(GET, k), err(GET, ENOENT))


def test_delete_with_cas(bconn, keyprefix):
    k = b(keyprefix + "d")
    cas = set_item(bconn, k, b"x")
    bconn.check(req(DELETE, k, cas=cas + 1), err(DELETE, EEXISTS))
    bconn.check(req(GET, k), res(GET, extras=u32(0), value=b"x", cas=cas))
    bconn.check(req(DELETE, k, cas=cas), res(DELETE))
    bconn.check(req(DELETE, k, cas=cas), err(DELETE, ENOENT))


def test_append_prepend(bconn, keyprefix):
    k = b(keyprefix + "ap")
    bconn.check(req(APPEND, k, value=b"x", opaque=1), err(APPEND, NOT_STORED, 1))
    bconn.check(req(PREPEND, k, value=b"x", opaque=2), err(PREPEND, NOT_STORED, 2))
    bconn.check(req(APPENDQ, k, value=b"x", opaque=3), err(APPENDQ, NOT_STORED, 3))
    bconn.check(req(PREPENDQ, k, value=b"x", opaque=4), err(PREPENDQ, NOT_STORED, 4))
    c0 = set_item(bconn, k, b"mid", flags=42)
    p = bconn.call1(req(APPEND, k, value=b"_end"))
    assert p.raw == res(APPEND, cas=p.cas) and p.cas > c0
    p = bconn.call1(req(PREPEND, k, value=b"start_"))
    assert p.raw == res(PREPEND, cas=p.cas)
    bconn.check(req(APPENDQ, k, value=b"!") + req(PREPENDQ, k, value=b"<"), b"")
    p2 = bconn.call1(req(GET, k))
    # flags are kept from the original item
    assert (p2.extras, p2.value) == (u32(42), b"<start_mid_end!")
    # an empty append is fine
    p4 = bconn.call1(req(APPEND, k, value=b""))
    assert p4.status == OK and p4.cas > p2.cas
    assert bconn.call1(req(GET, k)).value == b"<start_mid_end!"


def test_append_prepend_with_cas(bconn, keyprefix):
    k = b(keyprefix + "ap")
    cas = set_item(bconn, k, b"mid")
    # a CAS that does not match: Data exists, nothing appended
    bconn.check(req(APPEND, k, value=b"?", cas=cas + 1, opaque=1), err(APPEND, EEXISTS, 1))
    bconn.check(req(PREPENDQ, k, value=b"?", cas=cas + 1, opaque=2), err(PREPENDQ, EEXISTS, 2))
    bconn.check(req(GET, k), res(GET, extras=u32(0), value=b"mid", cas=cas))
    # the matching CAS: stored
    p = bconn.call1(req(APPEND, k, value=b"!", cas=cas))
    assert p.raw == res(APPEND, cas=p.cas) and p.cas > cas
    bconn.check(req(PREPENDQ, k, value=b"<", cas=p.cas), b"")
    assert bconn.call1(req(GET, k)).value == b"<mid!"


def test_expired_on_store(bconn, keyprefix):
    # an absolute time in the past (2001): stored, then gone at once
    k = b(keyprefix + "x")
    p = bconn.call1(req(SET, k, store_extras(0, 1000000000), b"gone"))
    assert p.status == OK
    bconn.check(req(GET, k), err(GET, ENOENT))
    # a relative TTL far enough: still there
    set_item(bconn, k, b"here", exptime=1000)
    assert bconn.call1(req(GET, k)).value == b"here"


# ---------------------------------------------------------------------------
# INCR / DECR
# ---------------------------------------------------------------------------

def test_incr_decr_existing(bconn, keyprefix):
    k = b(keyprefix + "n")
    set_item(bconn, k, b"10", flags=5)
    p = bconn.call1(req(INCR, k, arith_extras(5), opaque=1))
    assert p.raw == res(INCR, value=u64(15), opaque=1, cas=p.cas) and p.cas
    p = bconn.call1(req(DECR, k, arith_extras(3), opaque=2))
    assert p.raw == res(DECR, value=u64(12), opaque=2, cas=p.cas)
    # the reply's CAS is the item's
    g = bconn.call1(req(GET, k))
    assert (g.extras, g.value, g.cas) == (u32(5), b"12", p.cas)
    # decr stops at 0
    p = bconn.call1(req(DECR, k, arith_extras(100)))
    assert p.value == u64(0)
    # incr wraps at 2**64
    set_item(bconn, k, b"18446744073709551615")
    p = bconn.call1(req(INCR, k, arith_extras(2)))
    assert p.value == u64(1)
    # quiet variants: success suppressed
    bconn.check(req(INCRQ, k, arith_extras(10)) + req(DECRQ, k, arith_extras(1)), b"")
    assert bconn.call1(req(GET, k)).value.strip() == b"10"


def test_incr_initial_value_on_miss(bconn, keyprefix, shared_server):
    k = b(keyprefix + "n")
    p = bconn.call1(req(INCR, k, arith_extras(5, initial=1000, exptime=0), opaque=3))
    assert p.raw == res(INCR, value=u64(1000), opaque=3, cas=p.cas) and p.cas
    # stored as text with flags 0
    g = bconn.call1(req(GET, k))
    assert (g.extras, g.value, g.cas) == (u32(0), b"1000", p.cas)
    p = bconn.call1(req(INCR, k, arith_extras(5, initial=1000)))
    assert p.value == u64(1005)
    # DECR creates with the initial value too (not decremented)
    k2 = k + b"d"
    p = bconn.call1(req(DECR, k2, arith_extras(5, initial=7)))
    assert p.value == u64(7)
    # a text client sees the counter
    with shared_server.client() as t:
        t.check(b"get " + k2 + b"\r\n", b"VALUE " + k2 + b" 0 1\r\n7\r\nEND\r\n")
    # quiet: the creation is suppressed too
    k3 = k + b"q"
    bconn.check(req(INCRQ, k3, arith_extras(1, initial=42)), b"")
    assert bconn.call1(req(GET, k3)).value == b"42"


def test_incr_no_create(bconn, keyprefix):
    k = b(keyprefix + "n")
    bconn.check(req(INCR, k, arith_extras(1, 5, 0xFFFFFFFF), opaque=1), err(INCR, ENOENT, 1))
    bconn.check(req(DECR, k, arith_extras(1, 5, 0xFFFFFFFF), opaque=2), err(DECR, ENOENT, 2))
    bconn.check(req(INCRQ, k, arith_extras(1, 5, 0xFFFFFFFF), opaque=3), err(INCRQ, ENOENT, 3))
    bconn.check(req(DECRQ, k, arith_extras(1, 5, 0xFFFFFFFF), opaque=4), err(DECRQ, ENOENT, 4))
    bconn.check(req(GET, k), err(GET, ENOENT))
    # but an existing counter is incremented even with that exptime
    set_item(bconn, k, b"1")
    assert bconn.call1(req(INCR, k, arith_extras(1, 5, 0xFFFFFFFF))).value == u64(2)


def test_incr_non_numeric(bconn, keyprefix):
    k = b(keyprefix + "n")
    set_item(bconn, k, b"abc")
    bconn.check(req(INCR, k, arith_extras(1), opaque=1), err(INCR, DELTA_BADVAL, 1))
    bconn.check(req(DECRQ, k, arith_extras(1), opaque=2), err(DECRQ, DELTA_BADVAL, 2))


def test_incr_with_cas(bconn, keyprefix):
    k = b(keyprefix + "n")
    cas = set_item(bconn, k, b"1")
    bconn.check(req(INCR, k, arith_extras(1), cas=cas + 1), err(INCR, EEXISTS))
    p = bconn.call1(req(INCR, k, arith_extras(1), cas=cas))
    assert p.value == u64(2) and p.cas != cas


# ---------------------------------------------------------------------------
# TOUCH / GAT
# ---------------------------------------------------------------------------

def test_touch(bconn, keyprefix):
    k = b(keyprefix + "t")
    bconn.check(req(TOUCH, k, u32(100), opaque=1), err(TOUCH, ENOENT, 1))
    cas = set_item(bconn, k, b"val", flags=77)
    # a hit: flags only, no key, no value; CAS is the item's
    p = bconn.call1(req(TOUCH, k, u32(100), opaque=2))
    assert p.raw == res(TOUCH, extras=u32(77), opaque=2, cas=p.cas)
    assert bconn.call1(req(GET, k)).cas == p.cas
    del cas
    # touching to a time in the past expires it
    p = bconn.call1(req(TOUCH, k, u32(1000000000)))
    assert p.status == OK
    bconn.check(req(GET, k), err(GET, ENOENT))


def test_gat_family(bconn, keyprefix):
    k = b(keyprefix + "g")
    m = k + b"_miss"
    bconn.check(req(GAT, m, u32(10), opaque=1), err(GAT, ENOENT, 1))
    bconn.check(req(GATK, m, u32(10), opaque=2), res(GATK, ENOENT, key=m, opaque=2))
    bconn.check(req(GATQ, m, u32(10)) + req(GATKQ, m, u32(10)), b"")
    set_item(bconn, k, b"data", flags=3)
    p = bconn.call1(req(GAT, k, u32(100), opaque=3))
    assert p.raw == res(GAT, extras=u32(3), value=b"data", opaque=3, cas=p.cas)
    p2 = bconn.call1(req(GATK, k, u32(100), opaque=4))
    assert p2.raw == res(GATK, key=k, extras=u32(3), value=b"data", opaque=4, cas=p2.cas)
    p3 = bconn.call1(req(GATQ, k, u32(100), opaque=5))
    assert p3.raw == res(GATQ, extras=u32(3), value=b"data", opaque=5, cas=p3.cas)
    p4 = bconn.call1(req(GATKQ, k, u32(100), opaque=6))
    assert p4.raw == res(GATKQ, key=k, extras=u32(3), value=b"data", opaque=6, cas=p4.cas)
    # the last CAS is the item's
    assert bconn.call1(req(GET, k)).cas == p4.cas
    # GAT with a past absolute time returns the item, then it is gone
    p5 = bconn.call1(req(GAT, k, u32(1000000000)))
    assert p5.value == b"data"
    bconn.check(req(GET, k), err(GET, ENOENT))


# ---------------------------------------------------------------------------
# QUIT, FLUSH
# ---------------------------------------------------------------------------

def test_quit(shared_server):
    c = new_bin(shared_server)
    got, closed = c.closed_after(req(QUIT, opaque=77) + req(NOOP))
    c.close()
    assert closed and got == res(QUIT, opaque=77)


def test_quitq(shared_server):
    c = new_bin(shared_server)
    got, closed = c.closed_after(req(QUITQ, opaque=77) + req(NOOP))
    c.close()
    assert closed and got == b""


def test_quit_after_pipeline(shared_server, keyprefix):
    k = b(keyprefix + "k")
    c = new_bin(shared_server)
    got, closed = c.closed_after(req(SETQ, k, store_extras(), b"v") + req(GETK, k + b"x", opaque=1)
                                 + req(QUITQ) + req(GET, k))
    c.close()
    assert closed and got == res(GETK, ENOENT, key=k + b"x", opaque=1)
    with new_bin(shared_server).raw as r:
        assert BinConn(r).call1(req(GET, k)).value == b"v"


def test_flush(server):
    c = new_bin(server)
    set_item(c, b"a", b"1")
    set_item(c, b"b", b"2")
    c.check(req(FLUSH, opaque=3), res(FLUSH, opaque=3))
    c.check(req(GET, b"a") + req(GET, b"b"), err(GET, ENOENT) + err(GET, ENOENT))
    set_item(c, b"a", b"1")
    c.check(req(FLUSHQ, opaque=4), b"")
    c.check(req(GET, b"a"), err(GET, ENOENT))
    # with a 4-byte delay of 0: immediate
    set_item(c, b"a", b"1")
    c.check(req(FLUSH, extras=u32(0)), res(FLUSH))
    c.check(req(GET, b"a"), err(GET, ENOENT))
    # with a delay: items stay until then
    set_item(c, b"a", b"1")
    c.check(req(FLUSH, extras=u32(1000)), res(FLUSH))
    assert c.call1(req(GET, b"a")).value == b"1"
    c.check(req(FLUSHQ, extras=u32(2000)), b"")
    assert c.call1(req(GET, b"a")).value == b"1"
    # cmd_flush counts every one of them
    with server.client() as t:
        assert t.stats()["cmd_flush"] == "5"
    c.close()


def test_flush_disabled(server_factory):
    srv = server_factory("-F")
    c = new_bin(srv)
    set_item(c, b"a", b"1")
    c.check(req(FLUSH, opaque=1), err(FLUSH, AUTH_ERROR, 1))
    c.check(req(FLUSHQ, opaque=2), err(FLUSHQ, AUTH_ERROR, 2))
    c.check(req(FLUSH, extras=u32(5), opaque=3), err(FLUSH, AUTH_ERROR, 3))
    assert c.call1(req(GET, b"a")).value == b"1"
    c.close()


# ---------------------------------------------------------------------------
# STAT
# ---------------------------------------------------------------------------

def stat_packets(c, group=b"", opaque=0x51A7):
    got = c.call(req(STAT, group, opaque=opaque))
    assert got, "no reply to STAT %r" % group
    assert got[-1].raw == res(STAT, opaque=opaque), got[-1]
    for p in got[:-1]:
        assert (p.opcode, p.status, p.extlen, p.opaque, p.cas) == (STAT, OK, 0, opaque, 0), p
        assert p.keylen > 0
    return collections.OrderedDict((p.key.decode(), p.value.decode()) for p in got[:-1])


def test_stat_general_matches_text(bconn, shared_server):
    st = stat_packets(bconn)
    for name in ("pid", "uptime", "time", "version", "curr_connections", "total_connections",
                 "cmd_get", "cmd_set", "get_hits", "get_misses", "curr_items", "total_items",
                 "bytes", "limit_maxbytes", "threads", "evictions"):
        assert name in st, name
    with shared_server.client() as t:
        text = t.stats()
    # same names, in the same order, as the text protocol's stats
    assert list(st) == list(text)
    assert st["pid"] == text["pid"] and st["version"] == text["version"]
    assert st["limit_maxbytes"] == text["limit_maxbytes"]


def test_stat_settings(bconn, shared_server):
    st = stat_packets(bconn, b"settings")
    with shared_server.client() as t:
        text = t.stats(b"settings")
    assert list(st) == list(text)
    assert st["maxbytes"] == text["maxbytes"] == str(64 * 1024 * 1024)
    assert st["binding_protocol"] == "auto-negotiate"
    assert st["item_size_max"] == "1048576"


def test_stat_items_and_slabs(bconn, shared_server, keyprefix):
    set_item(bconn, b(keyprefix + "k"), b"x" * 10)
    items = stat_packets(bconn, b"items")
    assert any(re.match(r"items:\d+:number\Z", n) for n in items), list(items)
    slabs = stat_packets(bconn, b"slabs")
    assert "active_slabs" in slabs and "total_malloced" in slabs
    assert any(re.match(r"\d+:chunk_size\Z", n) for n in slabs), list(slabs)


def test_stat_reset_and_unknown(server):
    c = new_bin(server)
    c.call(req(GET, b"nope") + req(GET, b"nope2"))
    assert stat_packets(c)["get_misses"] == "2"
    # reset: only the end packet
    c.check(req(STAT, b"reset", opaque=9), res(STAT, opaque=9))
    assert stat_packets(c)["get_misses"] == "0"
    # an unknown group: Not found, no end packet
    c.check(req(STAT, b"bogus", opaque=8), err(STAT, ENOENT, 8))
    c.check(req(STAT, b"detail on", opaque=7), res(STAT, opaque=7))
    c.check(req(STAT, b"detail off", opaque=7), res(STAT, opaque=7))
    c.close()


# ---------------------------------------------------------------------------
# Malformed packets
# ---------------------------------------------------------------------------

BAD_LENGTHS = {
    "get_with_extras": req(GET, b"k", extras=u32(0)),
    "get_without_key": req(GET),
    "get_with_value": req(GET, b"k", value=b"v"),
    "getk_with_value": req(GETK, b"k", value=b"v"),
    "set_without_extras": req(SET, b"k", value=b"v"),
    "set_short_extras": req(SET, b"k", extras=u32(0), value=b"v"),
    "set_without_key": req(SET, extras=store_extras(), value=b"v"),
    "add_without_extras": req(ADD, b"k", value=b"v"),
    "replaceq_without_key": req(REPLACEQ, extras=store_extras()),
    "delete_with_extras": req(DELETE, b"k", extras=u32(0)),
    "delete_with_value": req(DELETE, b"k", value=b"v"),
    "incr_short_extras": req(INCR, b"k", extras=u64(1)),
    "incr_with_value": req(INCR, b"k", extras=arith_extras(1), value=b"1"),
    "decrq_without_key": req(DECRQ, extras=arith_extras(1)),
    "append_with_extras": req(APPEND, b"k", extras=u32(0), value=b"v"),
    "prepend_without_key": req(PREPEND, value=b"v"),
    "noop_with_body": req(NOOP, value=b"x"),
    "version_with_key": req(VERSION, b"k"),
    "quit_with_extras": req(QUIT, extras=u32(0)),
    "flush_with_8_extras": req(FLUSH, extras=u64(0)),
    "flush_with_key": req(FLUSH, b"k"),
    "flush_with_value": req(FLUSH, extras=u32(0), value=b"x"),
    "stat_with_extras": req(STAT, extras=u32(0)),
    "touch_without_extras": req(TOUCH, b"k"),
    "touch_without_key": req(TOUCH, extras=u32(0)),
    "gat_8_extras": req(GAT, b"k", extras=u64(0)),
    "gatkq_without_key": req(GATKQ, extras=u32(0)),
    "sasl_list_with_key": req(SASL_LIST, b"PLAIN"),
}


@pytest.mark.parametrize("name", sorted(BAD_LENGTHS))
def test_bad_lengths_invalid_arguments_and_close(shared_server, name):
    data = BAD_LENGTHS[name]
    op = data[1]
    c = new_bin(shared_server)
    got, closed = c.closed_after(data + noop())
    c.close()
    assert closed, "connection left open after %s" % name
    assert got == err(op, EINVAL), got


@pytest.mark.parametrize("keylen", [251, 1000, 16000])
def test_key_too_long_invalid_arguments_and_close(shared_server, keylen):
    for op in (GET, SET, DELETE, 0x55):
        c = new_bin(shared_server)
        extras = store_extras() if op == SET else b""
        got, closed = c.closed_after(req(op, b"k" * keylen, extras, opaque=3) + noop())
        c.close()
        assert closed and got == err(op, EINVAL, 3), (op, keylen, got)


def test_key_250_ok(bconn):
    k = b"K" * 250
    cas = set_item(bconn, k, b"x")
    bconn.check(req(GETK, k), res(GETK, key=k, extras=u32(0), value=b"x", cas=cas))
    bconn.check(req(DELETE, k), res(DELETE))


def test_key_longer_than_body_unknown_command_and_close(shared_server):
    for data in (req(GET, b"abc", bodylen=2), req(SET, b"k", store_extras(), bodylen=8),
                 req(GET, b"abc", keylen=5, bodylen=3)):
        c = new_bin(shared_server)
        got, closed = c.closed_after(data + noop())
        c.close()
        assert closed and got == err(data[1], UNKNOWN_COMMAND), got


def test_bad_magic_closes_silently(shared_server):
    c = new_bin(shared_server)
    c.check(req(NOOP, opaque=1), res(NOOP, opaque=1))
    got, closed = c.closed_after(req(NOOP, magic=0x81) + noop())
    c.close()
    assert closed and got == b""


@pytest.mark.parametrize("op", [VERBOSITY, 0x1f, 0x25, 0x30, 0x3c, 0x55, 0xff])
def test_unknown_opcode_swallows_body(bconn, keyprefix, op):
    # no body: just the error, connection in sync
    bconn.check(req(op, opaque=1), err(op, UNKNOWN_COMMAND, 1))
    # a body is swallowed: bodylen bytes AFTER extras and key (sic), so the
    # value and the first extlen + keylen bytes of what follows go too
    k = b(keyprefix + "k")
    body = req(op, b"abc", extras=u32(1), value=b"xyz", opaque=2)  # bodylen 10
    filler = b"0123456"  # 7 bytes: with "xyz" this is the 10 swallowed bytes
    bconn.check(body + filler + req(GET, k, opaque=3),
                err(op, UNKNOWN_COMMAND, 2) + err(GET, ENOENT, 3))


@pytest.mark.parametrize("op", [SASL_LIST, SASL_AUTH, SASL_STEP])
def test_sasl_opcodes_unknown_command(bconn, op):
    if op == SASL_LIST:
        bconn.check(req(op, opaque=4), err(op, UNKNOWN_COMMAND, 4))
    else:
        # key = mechanism, value = data: the value is swallowed
        bconn.check(req(op, b"PLAIN", value=b"\x00user\x00pass", opaque=4),
                    err(op, UNKNOWN_COMMAND, 4))


# ---------------------------------------------------------------------------
# Text <-> binary
# ---------------------------------------------------------------------------

def test_binary_set_text_get(bconn, shared_server, keyprefix):
    k = b(keyprefix + "bt")
    cas = set_item(bconn, k, b"bin\r\nvalue", flags=12345)
    with shared_server.client() as t:
        t.check(b"gets " + k + b"\r\n",
                b"VALUE %s 12345 10 %d\r\nbin\r\nvalue\r\nEND\r\n" % (k, cas))


def test_text_set_binary_get(bconn, shared_server, keyprefix):
    k = b(keyprefix + "tb")
    with shared_server.client() as t:
        t.check(b"set " + k + b" 4294967295 0 5\r\nhello\r\n", b"STORED\r\n")
        line = t.request(b"gets " + k + b"\r\n", b"END\r\n")
    cas = int(line.split(b"\r\n")[0].split()[-1])
    bconn.check(req(GETK, k), res(GETK, key=k, extras=u32(0xFFFFFFFF), value=b"hello", cas=cas))
    # binary incr of a text-stored counter and back
    with shared_server.client() as t:
        t.check(b"set " + k + b"n 0 0 2\r\n41\r\n", b"STORED\r\n")
    assert bconn.call1(req(INCR, k + b"n", arith_extras(1))).value == u64(42)
    with shared_server.client() as t:
        t.check(b"get " + k + b"n\r\n", b"VALUE " + k + b"n 0 2\r\n42\r\nEND\r\n")


def test_protocol_fixed_per_connection(shared_server):
    # a text connection does not understand binary packets afterwards (the
    # first byte decides); 0x80 in a text line is just an unknown command
    with shared_server.client() as t:
        t.check(b"", b"")  # a "version" line: this connection speaks text
        t.send(b"\x80\x0a\x00\x00\r\n")
        assert t.read_line() == b"ERROR\r\n"


# ---------------------------------------------------------------------------
# Large values
# ---------------------------------------------------------------------------

def test_value_500k(bconn, keyprefix):
    k = b(keyprefix + "big")
    v = bytes(range(256)) * 2000  # 512000 bytes
    cas = set_item(bconn, k, v, flags=1)
    bconn.check(req(GET, k), res(GET, extras=u32(1), value=v, cas=cas))


def test_value_at_item_size_limit(bconn, shared_server, keyprefix):
    k = b(keyprefix + "lim")
    n = item_limit(len(k))
    v = b"L" * n
    cas = set_item(bconn, k, v)
    bconn.check(req(GETK, k), res(GETK, key=k, extras=u32(0), value=v, cas=cas))
    with shared_server.client() as t:
        got = t.request(b"get " + k + b"\r\n", b"\r\nEND\r\n", timeout=10)
    assert got == b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, n, v)
    # with non-zero flags the limit is 4 bytes lower
    bconn.check(req(SET, k, store_extras(1), v, opaque=2), err(SET, E2BIG, 2))


def test_value_too_large_swallowed_in_sync(bconn, keyprefix):
    k = b(keyprefix + "big")
    n = item_limit(len(k)) + 1
    bconn.check(req(SET, k, store_extras(), b"x" * n, opaque=1) + req(GETK, k, opaque=2),
                err(SET, E2BIG, 1) + res(GETK, ENOENT, key=k, opaque=2))
    bconn.check(req(SETQ, k, store_extras(), b"y" * (2 * 1024 * 1024), opaque=3),
                err(SETQ, E2BIG, 3))
    bconn.check(req(ADD, k, store_extras(), b"y" * (n + 100), opaque=4), err(ADD, E2BIG, 4))
    # the connection is in sync: a normal set and get still work
    cas = set_item(bconn, k, b"small")
    bconn.check(req(GET, k), res(GET, extras=u32(0), value=b"small", cas=cas))


def test_append_beyond_limit(bconn, keyprefix):
    k = b(keyprefix + "ap")
    set_item(bconn, k, b"x" * 1000)
    n = item_limit(len(k))
    # the appended value fits alone but not with the old one: Not stored
    bconn.check(req(APPEND, k, value=b"y" * n, opaque=1), err(APPEND, NOT_STORED, 1))
    # the appended value alone is too large: Too large, value swallowed
    bconn.check(req(APPEND, k, value=b"y" * (n + 1), opaque=3), err(APPEND, E2BIG, 3))
    assert bconn.call1(req(GET, k)).value == b"x" * 1000
    # exactly up to the limit works
    p = bconn.call1(req(APPEND, k, value=b"y" * (n - 1000)))
    assert p.status == OK
    assert bconn.call1(req(GET, k)).value == b"x" * 1000 + b"y" * (n - 1000)


@pytest.mark.parametrize("flags", [0, 1])
def test_append_one_byte_over_limit(bconn, shared_server, keyprefix, flags):
    k = b(keyprefix + "ap")
    n = item_limit(len(k), flags)
    set_item(bconn, k, b"x" * 1000, flags=flags)
    # old + new = limit + 1: refused
    bconn.check(req(PREPENDQ, k, value=b"y" * (n - 999), opaque=2), err(PREPENDQ, NOT_STORED, 2))
    bconn.check(req(APPEND, k, value=b"y" * (n - 999), opaque=3), err(APPEND, NOT_STORED, 3))
    assert bconn.call1(req(GET, k)).value == b"x" * 1000
    with shared_server.client() as t:
        v = n - 999
        t.check(b"append %s 0 0 %d\r\n%s\r\n" % (k, v, b"z" * v), b"NOT_STORED\r\n")


# ---------------------------------------------------------------------------
# pylibmc, binary=True
# ---------------------------------------------------------------------------

@pytest.fixture
def mc(server):
    pylibmc = pytest.importorskip("pylibmc")
    c = pylibmc.Client(["127.0.0.1:%d" % server.port], binary=True,
                       behaviors={"cas": True, "tcp_nodelay": True,
                                  "connect_timeout": 5000, "receive_timeout": 5000000,
                                  "send_timeout": 5000000})
    try:
        yield c
    finally:
        c.disconnect_all()


def test_pylibmc_binary_api(mc, server):
    import pylibmc
    assert mc.binary
    assert mc.set("a", "1") is True
    assert mc.get("a") == "1"
    assert mc.get("missing") is None
    assert mc.set("bytes", b"\x00\xffraw") is True
    assert mc.get("bytes") == b"\x00\xffraw"
    assert mc.set("obj", {"x": [1, 2]}) is True
    assert mc.get("obj") == {"x": [1, 2]}
    assert mc.set_multi({"m1": "v1", "m2": "v2", "m3": 3}) == []
    assert mc.get_multi(["m1", "m2", "m3", "nope"]) == {"m1": "v1", "m2": "v2", "m3": 3}
    assert mc.delete("m1") is True
    assert mc.delete("m1") is False
    assert mc.delete_multi(["m2", "m3"]) is True
    assert mc.get_multi(["m1", "m2", "m3"]) == {}
    # counters
    assert mc.set("n", 10) is True
    assert mc.incr("n") == 11
    assert mc.incr("n", 9) == 20
    assert mc.decr("n", 25) == 0
    with pytest.raises(pylibmc.NotFound):
        mc.incr("no_counter")
    mc.incr_multi(["n"], delta=5)
    assert mc.get("n") == 5
    # add / replace / append / prepend
    assert mc.add("ad", "x") is True
    assert mc.add("ad", "y") is False
    assert mc.replace("ad", "z") is True
    # binary REPLACE on a missing key answers Not found (0x01), which
    # libmemcached turns into NotFound
    with pytest.raises(pylibmc.NotFound):
        mc.replace("nothere", "z")
    assert mc.append("ad", "_e") is True
    assert mc.prepend("ad", "s_") is True
    assert mc.get("ad") == "s_z_e"
    assert mc.append("nothere", "x") is False
    # cas
    val, cas = mc.gets("ad")
    assert val == "s_z_e" and isinstance(cas, int) and cas > 0
    assert mc.cas("ad", "new", cas) is True
    assert mc.cas("ad", "newer", cas) is False
    assert mc.get("ad") == "new"
    assert mc.gets("nothere") == (None, None)
    # touch
    assert mc.touch("ad", 100) is True
    assert mc.touch("nothere", 100) is False
    # stats
    stats = mc.get_stats()
    assert len(stats) == 1
    name, st = stats[0]
    assert b(str(server.port)) in b(name)
    st = {b(k): b(v) for k, v in st.items()}
    assert int(st[b"cmd_set"]) >= 10 and st[b"version"].startswith(b"1.6.18")
    assert st[b"limit_maxbytes"] == b"67108864" and int(st[b"pid"]) == server.pid
    # (libmemcached 1.0.18 maps stats into a fixed struct, so group stats
    # are not observable through pylibmc)
    # flush
    assert mc.flush_all() is True
    assert mc.get_multi(["a", "bytes", "obj", "n", "ad"]) == {}


def test_pylibmc_binary_large_and_many(mc):
    big = "x" * 600000
    assert mc.set("big", big) is True
    assert mc.get("big") == big
    data = {"k%03d" % i: "v%d" % i for i in range(200)}
    assert mc.set_multi(data) == []
    assert mc.get_multi(list(data) + ["absent"]) == data
    mc.delete_multi(list(data)[:100])
    assert mc.get_multi(list(data)) == {k: v for k, v in list(data.items())[100:]}


# ---------------------------------------------------------------------------
# libmemcached's conformance checker, binary protocol only (it flushes: own
# server)
# ---------------------------------------------------------------------------

MEMCCAPABLE_BINARY_TESTS = """noop quit quitq set setq flush flushq add addq replace
replaceq delete deleteq get getq getk getkq incr incrq decr decrq version append appendq
prepend prependq stat""".split()


def test_memccapable_binary(server):
    import shutil
    import subprocess
    exe = shutil.which("memccapable")
    if not exe:
        pytest.skip("memccapable (libmemcached-tools) not installed")
    proc = subprocess.Popen([exe, "-h", "127.0.0.1", "-p", str(server.port), "-t", "10", "-b"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    out = out.decode(errors="replace")
    results = dict(re.findall(r"^binary (\w+)\s+\[(\w+)\]\s*$", out, re.M))
    assert sorted(results) == sorted(MEMCCAPABLE_BINARY_TESTS), out
    assert all(v == "pass" for v in results.values()), out
    assert "All tests passed" in out and proc.returncode == 0, out
