"""mixload - a mixed, self-checking client workload over text, meta and binary.

Shared by the soak test (test_soak.py) and the ThreadSanitizer server stress
driver (tests/stress/server_stress.py).  Every request is built together with
a strict parser of its reply: a reply that does not have the exact shape the
protocol allows raises BadReply.  Values are runs of segments, each
"LLLL" + body + 8-hex CRC32 of key + body, the body naming the key, writer
and sequence number; set writes one segment and append/prepend add one, so
every value read back can be checked to be made only of whole writes for
that very key (Stats.verified counts those checks).  Counter keys ("cnt...")
hold decimal numbers only.
"""

import random
import re
import select
import socket
import struct
import threading
import time
import zlib


class BadReply(AssertionError):
    pass


class Closed(Exception):
    """The server closed the connection (allowed only where expected)."""


class Stats:
    FIELDS = ("ops", "connections", "malformed", "verified", "mid_value_disconnects",
              "slow_readers", "bursts", "flushes", "stats_calls", "server_closed")

    def __init__(self):
        self.lock = threading.Lock()
        for f in self.FIELDS:
            setattr(self, f, 0)

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self):
        with self.lock:
            return {f: getattr(self, f) for f in self.FIELDS}


# ---------------------------------------------------------------- values

def segment(key, writer, seq, pad):
    body = b"%s|w%d|s%d|" % (key, writer, seq) + bytes(
        97 + (seq + i) % 26 for i in range(pad))
    crc = zlib.crc32(key + body) & 0xFFFFFFFF
    return b"%04d" % len(body) + body + b"%08x" % crc


def value_ok(key, v):
    off = 0
    n = len(v)
    while off < n:
        if n - off < 12 or not v[off:off + 4].isdigit():
            return False
        blen = int(v[off:off + 4])
        if n - off < 12 + blen:
            return False
        body = v[off + 4:off + 4 + blen]
        if not body.startswith(key + b"|"):
            return False
        try:
            crc = int(v[off + 4 + blen:off + 12 + blen], 16)
        except ValueError:
            return False
        if crc != zlib.crc32(key + body) & 0xFFFFFFFF:
            return False
        off += 12 + blen
    return True


COUNTER_RE = re.compile(rb"\A[0-9]+ *\Z")


def counter_ok(v):
    return COUNTER_RE.match(v) is not None


# ---------------------------------------------------------------- connection

class Conn:
    """A blocking socket with a buffered, deadline-bounded reader."""

    def __init__(self, host, port, timeout=20.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(str(e))

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise BadReply("timeout waiting for a reply; have %r" % bytes(self.buf[:200]))
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise BadReply("timeout waiting for a reply; have %r" % bytes(self.buf[:200]))
        try:
            data = self.sock.recv(1 << 18)
        except (ConnectionResetError, ConnectionAbortedError):
            data = b""
        if not data:
            raise Closed("EOF with %r buffered" % bytes(self.buf[:200]))
        self.buf += data

    def line(self):
        deadline = time.monotonic() + self.timeout
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            if len(self.buf) > 8192:
                raise BadReply("reply line longer than 8 KiB: %r" % bytes(self.buf[:200]))
            self._fill(deadline)

    def exact(self, n):
        deadline = time.monotonic() + self.timeout
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- replies

OOM_STORE = b"SERVER_ERROR out of memory storing object"
OOM = b"SERVER_ERROR out of memory"
STORE_REPLIES = {b"STORED", b"NOT_STORED", b"EXISTS", b"NOT_FOUND", OOM_STORE}
NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value"


def expect_in(line, allowed, what):
    if line not in allowed:
        raise BadReply("%s: unexpected reply %r" % (what, line))
    return line


class Workload:
    """One worker's op generator; `stats` is shared, `writer` unique."""

    def __init__(self, host, port, stats, writer, nkeys=64, seed=None,
                 big_values=True, flush_every=2000):
        self.host, self.port = host, port
        self.stats = stats
        self.writer = writer
        self.nkeys = nkeys
        self.rng = random.Random(seed if seed is not None else writer)
        self.seq = 0
        self.big_values = big_values
        self.flush_every = flush_every
        self.in_burst = False

    # -- helpers ----------------------------------------------------------
    def key(self):
        return b"k%d" % self.rng.randrange(self.nkeys)

    def counter(self):
        return b"cnt%d" % self.rng.randrange(8)

    def new_value(self, key):
        self.seq += 1
        r = self.rng.random()
        pad = self.rng.randrange(3000) if r < 0.2 else self.rng.randrange(80)
        return segment(key, self.writer, self.seq, pad)

    def check_value(self, key, v):
        if key.startswith(b"cnt"):
            if not counter_ok(v):
                raise BadReply("counter %r holds %r" % (key, v[:80]))
        elif not value_ok(key, v):
            raise BadReply("value of %r does not verify: %r" % (key, v[:120]))
        self.stats.add(verified=1)

    def connect(self):
        c = Conn(self.host, self.port)
        self.stats.add(connections=1)
        return c

    # -- text -------------------------------------------------------------
    def text_op(self):
        """Returns (request bytes, reply parser(conn))."""
        r = self.rng.random()
        if r < 0.30:
            keys = [self.key() for _ in range(self.rng.choice((1, 1, 1, 3, 8)))]
            if self.rng.random() < 0.2:
                keys.append(self.counter())
            cmd = self.rng.choice((b"get", b"gets"))
            return b"%s %s\r\n" % (cmd, b" ".join(keys)), \
                lambda c: self.text_values(c, keys, cmd == b"gets")
        if r < 0.55:
            k = self.key()
            v = self.new_value(k)
            cmd = self.rng.choice((b"set", b"set", b"add", b"replace", b"append", b"prepend"))
            return b"%s %s 5 0 %d\r\n%s\r\n" % (cmd, k, len(v), v), \
                lambda c: expect_in(c.line(), STORE_REPLIES, cmd.decode())
        if r < 0.60:
            k = self.key()
            v = self.new_value(k)
            cas = self.rng.randrange(1, 1 << 20)
            return b"cas %s 0 0 %d %d\r\n%s\r\n" % (k, len(v), cas, v), \
                lambda c: expect_in(c.line(), STORE_REPLIES, "cas")
        if r < 0.70:
            k = self.counter()
            if self.rng.random() < 0.15:
                n = b"%d" % self.rng.randrange(1000)
                return b"set %s 0 0 %d\r\n%s\r\n" % (k, len(n), n), \
                    lambda c: expect_in(c.line(), STORE_REPLIES, "set counter")
            cmd = self.rng.choice((b"incr", b"decr"))
            return b"%s %s %d\r\n" % (cmd, k, self.rng.randrange(100)), self.text_arith
        if r < 0.78:
            k = self.key() if self.rng.random() < 0.8 else self.counter()
            return b"delete %s\r\n" % k, \
                lambda c: expect_in(c.line(), {b"DELETED", b"NOT_FOUND"}, "delete")
        if r < 0.84:
            k = self.key()
            return b"touch %s %d\r\n" % (k, self.rng.choice((0, 100))), \
                lambda c: expect_in(c.line(), {b"TOUCHED", b"NOT_FOUND"}, "touch")
        if r < 0.88:
            k = self.key()
            return b"gat 0 %s\r\n" % k, lambda c: self.text_values(c, [k], False)
        if r < 0.90:
            return b"version\r\n", self.text_version
        if r < 0.905:
            # a worker changes the verbosity every other worker reads
            return b"verbosity %d\r\n" % self.rng.randrange(2), \
                lambda c: expect_in(c.line(), {b"OK"}, "verbosity")
        if r < 0.92:
            grp = self.rng.choice((b"", b" items", b" slabs", b" settings", b" conns"))
            self.stats.add(stats_calls=1)
            return b"stats%s\r\n" % grp, self.text_stats
        if self.rng.randrange(self.flush_every // 80 + 1) == 0:
            self.stats.add(flushes=1)
            return b"flush_all\r\n", lambda c: expect_in(c.line(), {b"OK"}, "flush_all")
        return self.text_malformed()

    def text_malformed(self):
        self.stats.add(malformed=1)
        # a get of a too-long key is left out of bursts: memcached 1.6 then
        # answers it in more than one way
        choice = self.rng.randrange(1 if self.in_burst else 0, 6)
        if choice == 2:
            return b"bogus_command x y\r\n", \
                lambda c: expect_in(c.line(), {b"ERROR"}, "unknown command")
        if choice == 1:
            return b"set zz_bad 0 0 notanumber\r\n", \
                lambda c: expect_in(c.line(), {b"CLIENT_ERROR bad command line format"}, "bad set")
        if choice == 0:
            return b"get " + b"x" * 251 + b"\r\n", self.text_long_key
        if choice == 3:
            return b"incr zz_bad notanumber\r\n", \
                lambda c: expect_in(c.line(), {b"CLIENT_ERROR invalid numeric delta argument"},
                                    "bad incr")
        if choice == 4:
            return b"\r\n", lambda c: expect_in(c.line(), {b"ERROR"}, "empty line")
        # a data block longer than announced: memcached answers bad data
        # chunk and then parses the rest of the block as a command
        return b"set zz_bad 0 0 3\r\nabcdef\r\n", self.text_bad_chunk

    def text_long_key(self, c):
        # memcached 1.6 sends END first when the connection had an earlier
        # response object around; either way the error line follows
        line = c.line()
        if line == b"END":
            line = c.line()
        expect_in(line, {b"CLIENT_ERROR bad command line format"}, "long key")

    def text_bad_chunk(self, c):
        # (under memory pressure the store fails first and the block is
        # swallowed just the same)
        expect_in(c.line(), {b"CLIENT_ERROR bad data chunk", OOM_STORE}, "bad chunk")
        # the leftover "def" ... is read as a command
        expect_in(c.line(), {b"ERROR"}, "bad chunk leftover")

    def text_values(self, c, keys, with_cas):
        seen = 0
        while True:
            line = c.line()
            if line == b"END":
                return
            parts = line.split(b" ")
            if parts[0] != b"VALUE" or len(parts) != (5 if with_cas else 4):
                raise BadReply("get: bad line %r" % line)
            k, n = parts[1], parts[3]
            if k not in keys or not parts[2].isdigit() or not n.isdigit() or \
                    (with_cas and not parts[4].isdigit()):
                raise BadReply("get: bad VALUE line %r for %r" % (line, keys))
            data = c.exact(int(n) + 2)
            if data[-2:] != b"\r\n":
                raise BadReply("get: value not followed by CRLF")
            self.check_value(k, data[:-2])
            seen += 1
            if seen > len(keys):
                raise BadReply("get: more values than keys")

    def text_arith(self, c):
        line = c.line()
        if line.isdigit() or line in (b"NOT_FOUND", NON_NUMERIC, OOM):
            return line
        raise BadReply("incr/decr: unexpected reply %r" % line)

    def text_version(self, c):
        line = c.line()
        if not line.startswith(b"VERSION "):
            raise BadReply("version: %r" % line)

    def text_stats(self, c):
        n = 0
        while True:
            line = c.line()
            if line == b"END":
                return
            if not re.match(rb"\ASTAT [^ ]+ [^\r\n]*\Z", line):
                raise BadReply("stats: bad line %r" % line)
            n += 1
            if n > 100000:
                raise BadReply("stats: endless")

    # -- meta -------------------------------------------------------------
    def meta_op(self):
        r = self.rng.random()
        if r < 0.35:
            k = self.key()
            return b"mg %s v f c k t\r\n" % k, lambda c: self.meta_get(c, k)
        if r < 0.65:
            k = self.key()
            v = self.new_value(k)
            mode = self.rng.choice((b"", b"", b" MA", b" MP", b" ME", b" MR"))
            return b"ms %s %d T0 F3%s\r\n%s\r\n" % (k, len(v), mode, v), \
                lambda c: expect_in(c.line(), {b"HD", b"NS", b"EX", b"NF", OOM_STORE}, "ms")
        if r < 0.75:
            k = self.counter()
            return b"ma %s N0 J7 D%d v\r\n" % (k, self.rng.randrange(50)), self.meta_arith
        if r < 0.85:
            k = self.key()
            flags = self.rng.choice((b"", b" I T30"))
            return b"md %s%s\r\n" % (k, flags), \
                lambda c: expect_in(c.line(), {b"HD", b"NF"}, "md")
        if r < 0.90:
            return b"mn\r\n", lambda c: expect_in(c.line(), {b"MN"}, "mn")
        if r < 0.95:
            k = self.key()
            return b"me %s\r\n" % k, self.meta_debug
        self.stats.add(malformed=1)
        if self.rng.random() < 0.5:
            return b"mg %s v ~\r\n" % self.key(), \
                lambda c: expect_in(c.line(), {b"CLIENT_ERROR invalid flag"}, "bad mg")
        return b"mg %s v\r\n" % (b"x" * 251), \
            lambda c: expect_in(c.line(), {b"CLIENT_ERROR bad command line format"}, "long mg")

    def meta_get(self, c, key):
        line = c.line()
        if line in (b"EN", b"EN k" + key):
            return
        parts = line.split(b" ")
        if parts[0] != b"VA" or len(parts) < 2 or not parts[1].isdigit():
            raise BadReply("mg: %r" % line)
        flags = {p[:1]: p[1:] for p in parts[2:]}
        if flags.get(b"k") != key or b"f" not in flags or not flags.get(b"c", b"x").isdigit():
            raise BadReply("mg: bad flags in %r" % line)
        data = c.exact(int(parts[1]) + 2)
        if data[-2:] != b"\r\n":
            raise BadReply("mg: value not followed by CRLF")
        self.check_value(key, data[:-2])

    def meta_arith(self, c):
        line = c.line()
        if line in (b"NF", NON_NUMERIC, OOM, b"SERVER_ERROR Out of memory allocating new item"):
            return
        parts = line.split(b" ")
        if parts[0] != b"VA" or len(parts) != 2 or not parts[1].isdigit():
            raise BadReply("ma: %r" % line)
        data = c.exact(int(parts[1]) + 2)
        if not data[:-2].isdigit() or data[-2:] != b"\r\n":
            raise BadReply("ma: value %r" % data)

    def meta_debug(self, c):
        line = c.line()
        if line != b"EN" and not line.startswith(b"ME "):
            raise BadReply("me: %r" % line)

    # -- binary -----------------------------------------------------------
    def bin_req(self, opcode, key=b"", extras=b"", value=b"", cas=0, opaque=0):
        hdr = struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0,
                          len(key) + len(extras) + len(value), opaque, cas)
        return hdr + extras + key + value

    def bin_reply(self, c, opcode, opaque):
        hdr = c.exact(24)
        magic, op, klen, elen, _dt, status, blen, opq, cas = struct.unpack(">BBHBBHIIQ", hdr)
        if magic != 0x81 or op != opcode or opq != opaque or klen + elen > blen or \
                blen > 64 << 20:
            raise BadReply("binary: bad header %r for opcode %#x" % (hdr, opcode))
        body = c.exact(blen)
        return status, body[:elen], body[elen:elen + klen], body[elen + klen:], cas

    def bin_op(self):
        r = self.rng.random()
        opq = self.rng.randrange(1 << 32)
        if r < 0.35:
            k = self.key()
            op = self.rng.choice((0x00, 0x0c))  # GET, GETK
            return self.bin_req(op, k, opaque=opq), lambda c: self.bin_get(c, op, opq, k)
        if r < 0.65:
            k = self.key()
            v = self.new_value(k)
            op = self.rng.choice((0x01, 0x01, 0x02, 0x03, 0x0e, 0x0f))
            extras = struct.pack(">II", 7, 0) if op in (1, 2, 3) else b""
            return self.bin_req(op, k, extras, v, opaque=opq), \
                lambda c: self.bin_status(c, op, opq, {0, 1, 2, 5, 0x82}, "store")
        if r < 0.75:
            k = self.counter()
            op = self.rng.choice((0x05, 0x06))
            extras = struct.pack(">QQI", self.rng.randrange(100), 5, 0)
            return self.bin_req(op, k, extras, opaque=opq), \
                lambda c: self.bin_arith(c, op, opq)
        if r < 0.85:
            k = self.key()
            return self.bin_req(0x04, k, opaque=opq), \
                lambda c: self.bin_status(c, 0x04, opq, {0, 1}, "delete")
        if r < 0.90:
            k = self.key()
            return self.bin_req(0x1c, k, struct.pack(">I", 0), opaque=opq), \
                lambda c: self.bin_status(c, 0x1c, opq, {0, 1}, "touch")
        if r < 0.95:
            return self.bin_req(0x0a, opaque=opq), \
                lambda c: self.bin_status(c, 0x0a, opq, {0}, "noop")
        if r < 0.97:
            self.stats.add(stats_calls=1)
            return self.bin_req(0x10, opaque=opq), lambda c: self.bin_stats(c, opq)
        self.stats.add(malformed=1)
        # an unknown opcode without a body: status 0x81, the connection stays
        # usable (with a body, memcached holds the reply until more arrives)
        return self.bin_req(0x7e, opaque=opq), \
            lambda c: self.bin_status(c, 0x7e, opq, {0x81}, "unknown opcode")

    def bin_status(self, c, op, opq, allowed, what):
        status, _e, _k, _v, _cas = self.bin_reply(c, op, opq)
        if status not in allowed:
            raise BadReply("binary %s: status %#x" % (what, status))
        return status

    def bin_get(self, c, op, opq, key):
        status, extras, k, v, _cas = self.bin_reply(c, op, opq)
        if status == 1:
            return
        if status != 0 or len(extras) != 4 or (op == 0x0c and k != key):
            raise BadReply("binary get: status %#x extras %r key %r" % (status, extras, k))
        self.check_value(key, v)

    def bin_arith(self, c, op, opq):
        status, _e, _k, v, _cas = self.bin_reply(c, op, opq)
        if status == 0 and len(v) != 8:
            raise BadReply("binary incr: value %r" % v)
        if status not in (0, 6, 0x82):
            raise BadReply("binary incr: status %#x" % status)

    def bin_stats(self, c, opq):
        for _ in range(100000):
            status, _e, k, _v, _cas = self.bin_reply(c, 0x10, opq)
            if status != 0:
                raise BadReply("binary stat: status %#x" % status)
            if not k:
                return
        raise BadReply("binary stat: endless")

    # -- driving ----------------------------------------------------------
    def make_op(self, proto):
        return {"text": self.text_op, "meta": self.meta_op, "binary": self.bin_op}[proto]()

    def run_ops(self, c, proto, n):
        """n requests one by one."""
        for _ in range(n):
            req, parse = self.make_op(proto)
            c.send(req)
            parse(c)
            self.stats.add(ops=1)

    def run_burst(self, c, proto, n):
        """n requests written at once, then every reply read in order."""
        self.in_burst = True
        try:
            ops = [self.make_op(proto) for _ in range(n)]
        finally:
            self.in_burst = False
        c.send(b"".join(req for req, _ in ops))
        for i, (_req, parse) in enumerate(ops):
            try:
                parse(c)
            except BadReply as e:
                raise BadReply("%s\nin a burst after %r" % (e, [r[:60] for r, _ in ops[:i + 1]]))
        self.stats.add(ops=n, bursts=1)

    def disconnect_mid_value(self):
        """A client that announces a value and leaves halfway through it."""
        c = self.connect()
        try:
            proto = self.rng.choice(("text", "meta", "binary"))
            k = self.key()
            v = self.new_value(k) + b"x" * 2000
            if proto == "text":
                req = b"set %s 0 0 %d\r\n%s" % (k, len(v) + 5000, v)
            elif proto == "meta":
                req = b"ms %s %d\r\n%s" % (k, len(v) + 5000, v)
            else:
                full = self.bin_req(0x01, k, struct.pack(">II", 0, 0), v + b"y" * 5000)
                req = full[:len(full) - 3000]
            c.send(req)
        finally:
            c.close()
        self.stats.add(mid_value_disconnects=1)

    def slow_reader(self, nget=6, size=200 * 1024, pause=0.5):
        """Pipelines gets of a big value and reads nothing for a while."""
        c = self.connect()
        try:
            k = b"big%d" % self.writer
            self.seq += 1
            v = segment(k, self.writer, self.seq, 9000)
            v = v * (size // len(v))
            c.send(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
            line = c.line()
            expect_in(line, STORE_REPLIES, "set big")
            if line != b"STORED":
                return
            c.send(b"get %s\r\n" % k * nget)
            time.sleep(pause)
            for _ in range(nget):
                head = c.line()
                if head == b"END":
                    continue  # evicted or flushed meanwhile
                if head != b"VALUE %s 0 %d" % (k, len(v)):
                    raise BadReply("slow reader: %r" % head)
                data = c.exact(len(v) + 2)
                self.check_value(k, data[:-2])
                expect_in(c.line(), {b"END"}, "slow reader end")
        finally:
            c.close()
        self.stats.add(slow_readers=1)
