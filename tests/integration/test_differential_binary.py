"""Differential test of the binary protocol: the server under test vs
Debian's memcached 1.6.18, byte stream against byte stream.

Both run side by side with identical flags (-m 64 -t 2 -U 0 -l 127.0.0.1),
as in test_differential.py (whose Side, monitored() and fmt() are reused).
Each script is a list of steps sent on a fresh connection to both servers;
after every step the packets received from both sides must be identical
byte for byte, except:
  * the VERSION reply's body (the version string),
  * STAT values: a run of STAT packets is compared by the names monitoring
    tools read (as in test_differential.py), and only the "detailed" dump
    packet is compared whole,
  * CAS fields in response headers: the n-th distinct non-zero CAS seen on
    each side becomes the token CAS<n>, so equal/different relations are
    still compared.
A connection closed by the server is compared too (token <CLOSED>), and so
is a trailing partial packet.

A synchronous step is sent followed by a NOOP with a sentinel opaque and read
until that NOOP's reply (or until the connection closes); a Quiet step is
read until nothing arrives for a short time (used where the server must
wait for more bytes: swallowing, partial packets).

Dynamic steps are callables taking the Side: side.cas_by_opaque maps the
opaque of each reply carrying a non-zero CAS to that raw CAS, so a later step
can send it back (e.g. a CAS-SET with the CAS a GET with opaque 1 returned).

Before each script, flush_all is sent to both servers on a separate text
connection.  Scripts avoid clock-dependent observations.
"""

import hashlib
import os
import time

import pytest

from conftest import IS_MEMCACHED, REFERENCE_MEMCACHED, ServerFactory
from test_differential import Side, fmt, monitored, normalise_class_ids
from test_binary import (
    ADD, ADDQ, APPEND, APPENDQ, DECR, DECRQ, DELETE, DELETEQ, FLUSH, FLUSHQ, GAT, GATK,
    GATKQ, GATQ, GET, GETK, GETKQ, GETQ, HEADER, INCR, INCRQ, NOOP, NOOP_SENTINEL, PREPEND,
    PREPENDQ, QUIT, QUITQ, REPLACE, REPLACEQ, SASL_AUTH, SASL_LIST, SASL_STEP, SET, SETQ,
    STAT, TOUCH, VERBOSITY, VERSION, BAD_LENGTHS, arith_extras, item_limit, noop, req, store_extras,
    u32, u64)

FLAGS = ("-m", "64", "-t", "2")
SYNC_TIMEOUT = 3.0
QUIET = 0.3


# ---------------------------------------------------------------------------
# Reply normalisation
# ---------------------------------------------------------------------------

def tokenize(buf, side, final):
    """Split a binary reply stream into normalised tokens: (tokens, rest).
    Returns the index of the sentinel NOOP token, or None, as third value."""
    tokens = []
    pos = 0
    sentinel = None
    while len(buf) - pos >= 24:
        magic, op, kl, el, dt, st, bl, opq, cas = HEADER.unpack_from(buf, pos)
        if len(buf) - pos < 24 + bl:
            break
        body = buf[pos + 24:pos + 24 + bl]
        ext, key, val = body[:el], body[el:el + kl], body[el + kl:]
        if magic != 0x81 or el + kl > bl:
            # not a response we can frame: keep the rest raw
            break
        if cas:
            side.cas_by_opaque[opq] = cas
            cas_tok = side.norm_cas(cas)
        else:
            cas_tok = "0"
        if op == NOOP and opq == NOOP_SENTINEL and not body:
            sentinel = len(tokens)
        if op == VERSION and st == 0:
            val = b"<version>"
        if op == STAT and st == 0 and kl > 0 and key != b"detailed":
            tokens.append(("STAT", key.decode("ascii", "replace")))
        else:
            tokens.append(("op=0x%02x st=0x%04x dt=%d opaque=%d cas=%s" % (op, st, dt, opq, cas_tok),
                           ext, key, val if len(val) < 400 else
                           (len(val), val[:100], val[-100:], hashlib.sha256(val).hexdigest())))
        pos += 24 + bl
    rest = buf[pos:]
    if final and rest:
        tokens.append(("<PARTIAL>", rest[:200], len(rest)))
        rest = b""
    return tokens, rest, sentinel


def collapse_stats(tokens):
    out = []
    run = []
    for t in tokens + [None]:
        if t is not None and t[0] == "STAT":
            run.append(t[1])
            continue
        if run:
            names = sorted(normalise_class_ids(n for n in run if monitored(n)))
            out.append(("STATS", tuple(names)))
            run = []
        if t is not None:
            out.append(t)
    return out


class Quiet:
    """A step read until quiet (no NOOP sentinel appended)."""

    def __init__(self, data):
        self.data = data


def read_reply(conn, side, quiet, raw=b""):
    """One step's reply as normalised tokens.  A quiet step's raw bytes so
    far can be passed in `raw` (see read_more)."""
    deadline = time.monotonic() + SYNC_TIMEOUT
    timed_out = False
    if quiet:
        raw += conn.read_quiet(QUIET, SYNC_TIMEOUT)
        side.quiet_raw = raw
    else:
        while True:
            _, _, sentinel = tokenize(conn.buf, _probe(), False)
            if sentinel is not None or conn.eof:
                break
            if not conn._recv_some(deadline):
                timed_out = True
                break
        raw, conn.buf = conn.buf, b""
    tokens, _, _ = tokenize(raw, side, True)
    if conn.eof:
        tokens.append("<CLOSED>")
    elif timed_out:
        tokens.append("<NO SYNC>")
    return collapse_stats(tokens)


SLOW_QUIET = 1.0


def read_more(side):
    """A quiet step's reply differed: read on (a loaded host may answer after
    QUIET has passed) until nothing comes for SLOW_QUIET."""
    more = side.conn.read_quiet(SLOW_QUIET, SYNC_TIMEOUT)
    return read_reply(side.conn, side, True, side.quiet_raw + more)


def _probe():
    s = Side("probe", None)
    s.cas_by_opaque = {}
    return s


def run_script(sides, steps):
    transcript = []
    for side in sides:
        side.cas_map = {}
        side.cas_by_opaque = {}
        side.conn = side.server.client(timeout=SYNC_TIMEOUT)
    try:
        for i, step in enumerate(steps):
            quiet = isinstance(step, Quiet)
            datas = []
            for side in sides:
                data = step.data if quiet else step
                if callable(data):
                    data = data(side)
                datas.append(data)
                if side.conn.eof:
                    continue
                try:
                    side.conn.send(data if quiet else data + noop())
                except OSError:
                    pass
            replies = []
            for side in sides:
                side.quiet_raw = b""
                if side.conn.eof and not side.conn.buf:
                    replies.append(["<CLOSED>"])
                    continue
                replies.append(read_reply(side.conn, side, quiet))
            if quiet and replies[0] != replies[1]:
                replies = [read_more(side) for side in sides]
            transcript.append((datas[0], replies))
            if replies[0] != replies[1]:
                return i, datas, replies, transcript
        return None, None, None, transcript
    finally:
        for side in sides:
            side.conn.close()


# ---------------------------------------------------------------------------
# Scripts
# ---------------------------------------------------------------------------

def cas_of(opaque, delta=0):
    """The raw CAS this side returned in the reply with `opaque` (+ delta)."""
    return lambda side: side.cas_by_opaque[opaque] + delta


def dyn(op, key=b"", extras=b"", value=b"", opaque=0, cas=None):
    """A request whose CAS is computed per side (cas is a function of the
    side, e.g. cas_of(1))."""
    return lambda side: req(op, key, extras, value, opaque=opaque, cas=cas(side))


SE = store_extras
LIMIT3 = item_limit(3)           # largest value for a 3-byte key, flags 0
BIG_OK = b"v" * LIMIT3
BIG_NO = b"v" * (LIMIT3 + 1)
V500K = bytes(range(256)) * 2000
TOO_LARGE_PKT = req(SET, b"abc", SE(), BIG_NO, opaque=1)

SCRIPTS = {
    # --- basics ---------------------------------------------------------------
    "noop_version": [req(NOOP, opaque=1), req(VERSION, opaque=2),
                     req(NOOP, opaque=3, vbucket=77) + req(VERSION, opaque=4, vbucket=1)],
    "datatype_nonzero": [req(SET, b"abc", SE(1), b"v", opaque=1, datatype=1),
                         req(GET, b"abc", opaque=2, datatype=0xff)],
    "set_get": [req(SET, b"abc", SE(5, 0), b"hello", opaque=1),
                req(GET, b"abc", opaque=2) + req(GETK, b"abc", opaque=3)
                + req(GETQ, b"abc", opaque=4) + req(GETKQ, b"abc", opaque=5),
                req(GET, b"nope", opaque=6) + req(GETK, b"nope", opaque=7)
                + req(GETQ, b"nope", opaque=8) + req(GETKQ, b"nope", opaque=9),
                req(SET, b"abc", SE(0xffffffff, 0), b"", opaque=10) + req(GETK, b"abc")],
    "binary_safe_values": [req(SET, b"k\x00\xff", SE(), b"\r\nEND\r\n\x00\x80", opaque=1),
                           req(GETK, b"k\x00\xff", opaque=2)],
    "key_250": [req(SET, b"K" * 250, SE(), b"x"), req(GETK, b"K" * 250), req(DELETE, b"K" * 250)],
    "quiet_batch": [req(SET, b"e1", SE(), b"1") + req(SET, b"n1", SE(), b"5"),
                    req(SETQ, b"q1", SE(1), b"a", opaque=1)
                    + req(ADDQ, b"q1", SE(), b"b", opaque=2)
                    + req(ADDQ, b"q2", SE(), b"b", opaque=3)
                    + req(REPLACEQ, b"q3", SE(), b"c", opaque=4)
                    + req(REPLACEQ, b"q1", SE(2), b"c", opaque=5)
                    + req(APPENDQ, b"q1", value=b"+", opaque=6)
                    + req(PREPENDQ, b"q9", value=b"-", opaque=7)
                    + req(DELETEQ, b"q2", opaque=8)
                    + req(DELETEQ, b"q2", opaque=9)
                    + req(INCRQ, b"n1", arith_extras(5), opaque=10)
                    + req(DECRQ, b"e1", arith_extras(1), opaque=11)
                    + req(INCRQ, b"n2", arith_extras(1, 9, 0xffffffff), opaque=12)
                    + req(INCRQ, b"n3", arith_extras(1, 9), opaque=13)
                    + req(GETQ, b"q1", opaque=14) + req(GETKQ, b"q2", opaque=15)
                    + req(GATQ, b"q1", u32(0), opaque=16) + req(GATKQ, b"zz", u32(0), opaque=17)
                    + req(GETKQ, b"n1", opaque=18) + req(GETKQ, b"n3", opaque=19),
                    req(FLUSHQ, opaque=20) + req(GETQ, b"q1", opaque=21)],
    "quiet_only_misses": [b"".join(req(GETKQ, b"m%d" % i, opaque=i) for i in range(200))],
    "pipelined_many": [b"".join(req(SET, b"k%d" % i, SE(i), b"%d" % i, opaque=i) for i in range(150)),
                       b"".join(req(GETK, b"k%d" % i, opaque=i) + req(INCR, b"k%d" % i,
                                arith_extras(1), opaque=1000 + i) for i in range(150))],
    "opaque_echo": [req(GET, b"x", opaque=0xffffffff) + req(SET, b"x", SE(), b"1", opaque=0x80000000)
                    + req(DELETE, b"x", opaque=0x12345678) + req(VERSION, opaque=0xdeadbeef)],
    # --- storage -----------------------------------------------------------------
    "add_replace": [req(ADD, b"a", SE(1), b"1", opaque=1), req(ADD, b"a", SE(), b"2", opaque=2),
                    req(REPLACE, b"b", SE(), b"x", opaque=3), req(REPLACE, b"a", SE(3), b"3", opaque=4),
                    req(GET, b"a")],
    "set_cas": [req(SET, b"a", SE(), b"x", cas=99, opaque=1),
                req(SET, b"a", SE(), b"v1", opaque=2),
                dyn(SET, b"a", SE(), b"v2", opaque=3, cas=cas_of(2, 1)),
                dyn(SET, b"a", SE(7), b"v2", opaque=4, cas=cas_of(2)),
                dyn(SET, b"a", SE(), b"v3", opaque=5, cas=cas_of(2)),
                req(GET, b"a", opaque=6),
                dyn(REPLACE, b"a", SE(), b"v4", opaque=7, cas=cas_of(6)),
                dyn(ADD, b"a", SE(), b"v5", opaque=8, cas=cas_of(7)),
                dyn(SETQ, b"a", SE(), b"v6", opaque=9, cas=cas_of(7)),
                dyn(SETQ, b"a", SE(), b"v6", opaque=10, cas=cas_of(7, 5)),
                req(GETK, b"a", opaque=11),
                dyn(DELETE, b"a", opaque=12, cas=cas_of(11, 1)),
                dyn(DELETE, b"a", opaque=13, cas=cas_of(11)),
                dyn(SET, b"a", SE(), b"again", opaque=14, cas=cas_of(11))],
    "append_prepend": [req(APPEND, b"a", value=b"x", opaque=1) + req(PREPEND, b"a", value=b"x", opaque=2),
                       req(SET, b"a", SE(42), b"mid", opaque=3),
                       req(APPEND, b"a", value=b"_e", opaque=4) + req(PREPEND, b"a", value=b"s_", opaque=5),
                       req(APPENDQ, b"a", value=b"!", opaque=6) + req(PREPENDQ, b"a", value=b"<", opaque=7)
                       + req(APPENDQ, b"zz", value=b"!", opaque=8),
                       req(GETK, b"a", opaque=9),
                       req(APPEND, b"a", value=b"", opaque=10) + req(GET, b"a")],
    "append_prepend_cas": [req(SET, b"a", SE(), b"mid", opaque=1),
                           dyn(APPEND, b"a", value=b"?", opaque=2, cas=cas_of(1, 1)),
                           dyn(PREPENDQ, b"a", value=b"?", opaque=3, cas=cas_of(1, 1)),
                           req(GET, b"a", opaque=4),
                           dyn(APPEND, b"a", value=b"!", opaque=5, cas=cas_of(4)),
                           req(GET, b"a", opaque=6),
                           req(APPEND, b"zz", value=b"!", opaque=7, cas=5)],
    "delete": [req(DELETE, b"a", opaque=1), req(DELETEQ, b"a", opaque=2),
               req(SET, b"a", SE(), b"x") + req(DELETE, b"a", opaque=3) + req(GET, b"a"),
               req(SET, b"a", SE(), b"x") + req(DELETEQ, b"a", opaque=4) + req(GET, b"a")],
    "expiry_absolute_past": [req(SET, b"a", SE(0, 1000000000), b"x", opaque=1) + req(GET, b"a"),
                             req(SET, b"b", SE(0, 4000000000), b"y") + req(GET, b"b"),
                             req(SET, b"c", SE(0, 2592000), b"z") + req(GET, b"c"),
                             req(SET, b"d", SE(0, 2592001), b"w") + req(GET, b"d")],
    # --- incr / decr ---------------------------------------------------------------
    "incr_decr": [req(SET, b"n", SE(5), b"10"),
                  req(INCR, b"n", arith_extras(5), opaque=1) + req(DECR, b"n", arith_extras(3), opaque=2),
                  req(DECR, b"n", arith_extras(100)) + req(INCR, b"n", arith_extras(0)),
                  req(GETK, b"n"),
                  req(SET, b"w", SE(), b"18446744073709551615") + req(INCR, b"w", arith_extras(2)),
                  req(INCR, b"w", arith_extras(0xffffffffffffffff)) + req(GET, b"w")],
    "incr_padding_new_item": [req(SET, b"p", SE(), b"100") + req(DECR, b"p", arith_extras(1)) + req(GET, b"p"),
                              req(SET, b"q", SE(), b"99") + req(INCR, b"q", arith_extras(1)) + req(GET, b"q")],
    "incr_initial": [req(INCR, b"a", arith_extras(5, 1000), opaque=1) + req(GETK, b"a"),
                     req(INCR, b"a", arith_extras(5, 1000)),
                     req(DECR, b"b", arith_extras(5, 7)) + req(GET, b"b"),
                     req(INCR, b"c", arith_extras(1, 5, 0xffffffff)) + req(DECR, b"c", arith_extras(1, 5, 0xffffffff)),
                     req(INCRQ, b"c", arith_extras(1, 5, 0xffffffff), opaque=3),
                     req(INCR, b"d", arith_extras(1, 18446744073709551615)),
                     req(INCR, b"e", arith_extras(1, 5, 1000000000)) + req(GET, b"e"),
                     req(INCR, b"f", arith_extras(1, 5, 100)) + req(GET, b"f")],
    "incr_non_numeric": [req(SET, b"n", SE(), b"ab") + req(INCR, b"n", arith_extras(1)),
                         req(SET, b"n", SE(), b"") + req(INCR, b"n", arith_extras(1)),
                         req(SET, b"n", SE(), b"-1") + req(DECR, b"n", arith_extras(1)),
                         req(SET, b"n", SE(), b"12 ") + req(INCR, b"n", arith_extras(1)),
                         req(SET, b"n", SE(), b" 12") + req(INCR, b"n", arith_extras(1)),
                         req(SET, b"n", SE(), b"999999999999999999999") + req(INCR, b"n", arith_extras(1)),
                         req(SET, b"n", SE(), b"1\r\n") + req(INCRQ, b"n", arith_extras(1))],
    "incr_cas": [req(SET, b"n", SE(), b"1", opaque=1),
                 dyn(INCR, b"n", arith_extras(1), opaque=2, cas=cas_of(1, 1)),
                 dyn(INCR, b"n", arith_extras(1), opaque=3, cas=cas_of(1)),
                 req(INCR, b"m", arith_extras(1, 3), cas=77)],
    # --- touch / gat -----------------------------------------------------------------
    "touch_gat": [req(TOUCH, b"a", u32(10), opaque=1) + req(GAT, b"a", u32(10), opaque=2)
                  + req(GATK, b"a", u32(10), opaque=3) + req(GATQ, b"a", u32(10), opaque=4)
                  + req(GATKQ, b"a", u32(10), opaque=5),
                  req(SET, b"a", SE(9), b"data", opaque=6),
                  req(TOUCH, b"a", u32(100), opaque=7) + req(GAT, b"a", u32(100), opaque=8)
                  + req(GATK, b"a", u32(100), opaque=9) + req(GATQ, b"a", u32(100), opaque=10)
                  + req(GATKQ, b"a", u32(100), opaque=11) + req(GET, b"a", opaque=12),
                  req(GAT, b"a", u32(1000000000), opaque=13) + req(GET, b"a", opaque=14),
                  req(SET, b"b", SE(), b"x") + req(TOUCH, b"b", u32(1000000000)) + req(GETK, b"b")],
    # TOUCH/GAT do not check bodylen: the surplus is parsed as the next request
    "touch_surplus_body": [req(SET, b"a", SE(1), b"x"),
                           req(TOUCH, b"a", u32(0), value=req(NOOP, opaque=5), opaque=1),
                           req(GAT, b"a", u32(0), value=req(GETK, b"a", opaque=3), opaque=2),
                           req(GATKQ, b"a", u32(0), value=req(GETK, b"b", opaque=6), opaque=4)],
    # --- quit / flush ----------------------------------------------------------------
    "quit": [req(SET, b"a", SE(), b"x") + req(QUIT, opaque=3) + req(GET, b"a")],
    "quitq": [req(GETK, b"nope") + req(QUITQ, opaque=3) + req(GET, b"a")],
    "quit_after_quiet": [Quiet(req(SETQ, b"a", SE(), b"x") + req(ADDQ, b"a", SE(), b"y", opaque=4)
                               + req(QUIT, opaque=5))],
    "flush": [req(SET, b"a", SE(), b"x") + req(FLUSH, opaque=1) + req(GET, b"a"),
              req(SET, b"a", SE(), b"x") + req(FLUSHQ, opaque=2) + req(GET, b"a"),
              req(SET, b"a", SE(), b"x") + req(FLUSH, extras=u32(0), opaque=3) + req(GET, b"a"),
              req(SET, b"a", SE(), b"x") + req(FLUSHQ, extras=u32(0), opaque=4) + req(GET, b"a"),
              req(ADD, b"a", SE(), b"y") + req(GET, b"a")],
    # --- stat ---------------------------------------------------------------------------
    "stat_general": [req(STAT, opaque=1), req(STAT, b"", opaque=2)],
    "stat_settings": [req(STAT, b"settings", opaque=1)],
    "stat_prefix_matching": [req(STAT, b"settingsXYZ", opaque=1), req(STAT, b"set", opaque=2),
                             req(STAT, b"resetme", opaque=3), req(STAT, b"res", opaque=4)],
    "stat_unknown": [req(STAT, b"bogus", opaque=1), req(STAT, b"cachedump 1 1", opaque=3),
                     req(STAT, b"Settings", opaque=5), req(STAT, b" settings", opaque=6),
                     req(STAT, b"item", opaque=7), req(STAT, b"slab", opaque=8)],
    # "conns" is a text-protocol-only group in 1.6.18
    "stat_conns": [req(STAT, b"conns", opaque=2)],
    "stat_sizes": [req(STAT, b"sizes", opaque=1)],
    "stat_detail_on_off": [req(STAT, b"detail on", opaque=2), req(STAT, b"detail off", opaque=4),
                           req(STAT, b"detail", opaque=5), req(STAT, b"detail bogus", opaque=6)],
    # sub-commands are matched by prefix, with their leading space
    "stat_detail_prefix_match": [req(STAT, b"detail onx", opaque=8),
                                 req(STAT, b"detail offline", opaque=9),
                                 req(STAT, b"detail dumpster", opaque=10),
                                 req(STAT, b"detailon", opaque=7),
                                 req(STAT, b"detailoff", opaque=11),
                                 req(STAT, b"detail off") + req(STAT, b"detail  on", opaque=12)],
    # the dump is one STAT packet with key "detailed" and the text dump as value
    "stat_detail_dump": [req(STAT, b"detail off") + req(STAT, b"detail dump", opaque=1),
                         req(STAT, b"detail on", opaque=2),
                         req(SET, b"p:a", SE(), b"x") + req(GET, b"p:a") + req(GET, b"p:b")
                         + req(DELETE, b"p:a"),
                         req(STAT, b"detail dump", opaque=3),
                         req(STAT, b"detail off", opaque=4)],
    "stat_reset": [req(GET, b"x"), req(STAT, b"reset", opaque=1), req(STAT, opaque=2)],
    # --- malformed ----------------------------------------------------------------------
    "unknown_opcode_swallow": [req(0x55, opaque=1),
                               req(0x55, b"abc", u32(1), b"xyz", opaque=2) + b"0123456"
                               + req(GET, b"a", opaque=3),
                               req(0xff, b"k", value=b"v" * 5000, opaque=4) + b"F" * 1 + req(GET, b"a")],
    "verbosity_opcode": [req(VERBOSITY, extras=u32(1), opaque=1) + b"1234" + req(GET, b"a"),
                         req(VERBOSITY, opaque=2)],
    "unknown_opcode_swallow_split": [Quiet(req(0x1f, b"key", value=b"v" * 100, opaque=1)[:60]),
                                     Quiet(b"v" * 50),
                                     Quiet(b"v" * 20 + b"x" * 3),
                                     req(GET, b"a", opaque=2)],
    "sasl": [req(SASL_LIST, opaque=1), req(SASL_AUTH, b"PLAIN", value=b"\x00u\x00p", opaque=2),
             req(SASL_STEP, b"PLAIN", value=b"more", opaque=3) + req(GET, b"a"),
             req(SASL_AUTH, b"PLAIN", opaque=4)],
    "bad_magic_first_closes": [req(NOOP, opaque=1), Quiet(req(GET, b"a", magic=0x81) + noop())],
    "bad_magic_0x00": [req(NOOP, opaque=1), Quiet(b"\x00" * 24 + noop())],
    "keylen_over_body_closes": [Quiet(req(GET, b"abc", bodylen=2, opaque=1) + noop())],
    "extlen_key_over_body_closes": [Quiet(req(SET, b"k", SE(), bodylen=8, opaque=1) + noop())],
    "key_251_closes": [Quiet(req(GET, b"k" * 251, opaque=1) + noop())],
    "key_251_unknown_opcode_closes": [Quiet(req(0x77, b"k" * 251, opaque=1) + noop())],
    "key_huge_prefix_closes": [Quiet(req(GET, b"k" * 16361, opaque=1) + noop())],
    "key_16360_invalid": [Quiet(req(GET, b"k" * 16360, opaque=1) + noop())],
    "huge_bodylen_set": [Quiet(req(SET, b"abc", SE(), bodylen=0x40000000 + 11, opaque=1))],
    "get_with_value_closes": [Quiet(req(GET, b"a", value=b"zz", opaque=1) + noop())],
    "incr_bad_extras_closes": [Quiet(req(INCR, b"a", u64(1), opaque=1) + noop())],
    "flush_bad_extras_closes": [Quiet(req(FLUSH, extras=b"\0\0\0", opaque=1) + noop())],
    "version_with_body_closes": [Quiet(req(VERSION, value=b"x", opaque=1) + noop())],
    # STAT does not check bodylen either
    "stat_with_value": [req(STAT, b"settings", value=req(NOOP, opaque=9), opaque=1)],
    # --- large values -------------------------------------------------------------------
    "value_500k": [req(SET, b"big", SE(3), V500K, opaque=1), req(GET, b"big", opaque=2)],
    "value_at_limit": [req(SET, b"abc", SE(), BIG_OK, opaque=1), req(GETK, b"abc", opaque=2),
                       req(SET, b"abc", SE(1), BIG_OK, opaque=3), req(GET, b"abc", opaque=4)],
    "too_large": [req(SET, b"abc", SE(), BIG_NO, opaque=1) + req(GET, b"abc", opaque=2),
                  req(SETQ, b"abc", SE(), BIG_NO, opaque=3),
                  req(SET, b"abc", SE(), b"x" * (2 * 1024 * 1024), opaque=4)],
    "too_large_drops_old_value": [req(SET, b"abc", SE(), b"old", opaque=1),
                                  req(SET, b"abc", SE(), BIG_NO, opaque=2) + req(GET, b"abc", opaque=3),
                                  req(SET, b"abc", SE(), b"old", opaque=4),
                                  req(ADD, b"abc", SE(), BIG_NO, opaque=5) + req(GET, b"abc", opaque=6),
                                  req(SET, b"abc", SE(), b"old", opaque=7),
                                  req(REPLACE, b"abc", SE(), BIG_NO, opaque=8) + req(GET, b"abc", opaque=9),
                                  req(SET, b"abc", SE(), b"old", opaque=10),
                                  req(APPEND, b"abc", value=BIG_NO, opaque=11)
                                  + req(GET, b"abc", opaque=12),
                                  req(SETQ, b"abc", SE(), BIG_NO, opaque=13) + req(GET, b"abc", opaque=14)],
    "too_large_split": [Quiet(TOO_LARGE_PKT[:1000]),
                        Quiet(TOO_LARGE_PKT[1000:500000]),
                        TOO_LARGE_PKT[500000:] + req(GET, b"abc", opaque=2)],
    "append_over_limit": [req(SET, b"abc", SE(), b"x" * 1000, opaque=1),
                          req(APPEND, b"abc", value=b"y" * LIMIT3, opaque=2),
                          req(APPEND, b"abc", value=b"y" * (LIMIT3 - 999), opaque=3),
                          req(PREPEND, b"abc", value=b"y" * (LIMIT3 - 1000), opaque=4),
                          req(GET, b"abc", opaque=5)],
}

# every malformed-length request of test_binary.py: Invalid arguments, close
SCRIPTS.update(("badlen_" + name, [req(NOOP, opaque=1), Quiet(data + noop())])
               for name, data in BAD_LENGTHS.items())


# Scripts whose output depends on which slab classes hold items or on a
# pending delayed flush: they run on a fresh pair of servers.
FRESH_SCRIPTS = {
    "stat_items_slabs": [req(STAT, b"items", opaque=1),
                         req(SET, b"a", SE(), b"x") + req(SET, b"b", SE(), b"y" * 3000),
                         req(STAT, b"items", opaque=2), req(STAT, b"slabs", opaque=3)],
    "flush_delayed": [req(SET, b"a", SE(), b"x") + req(FLUSH, extras=u32(1000), opaque=1)
                      + req(GET, b"a"),
                      req(FLUSHQ, extras=u32(2000), opaque=2) + req(GETK, b"a"),
                      req(STAT, b"settings", opaque=3)],
    # enabling the sizes histogram: one STAT packet and no end packet
    "stat_sizes_enable_disable": [req(STAT, b"sizes_enable", opaque=1),
                                  req(STAT, b"sizes_disable", opaque=2),
                                  req(STAT, b"sizes", opaque=3)],
    # a value length over INT_MAX: memcached's int swallow count is negative,
    # nothing is swallowed.  (1.6.18 then swallows a stale count left in the
    # reused connection structure by an earlier connection, so this runs on
    # fresh servers only.)
    "bodylen_over_int_max": [Quiet(req(SET, b"abc", SE(), bodylen=0x80000010, opaque=1)),
                             req(GET, b"abc", opaque=2)],
}


# memstashd differences (bugs to fix); the tests flip to XPASS when fixed.
KNOWN_DIFFERENCES = {
}


# ---------------------------------------------------------------------------
# Fixtures and tests
# ---------------------------------------------------------------------------

def _factories(base):
    ref = ServerFactory(os.path.join(base, "ref"), binary=REFERENCE_MEMCACHED)
    sut = ServerFactory(os.path.join(base, "sut"))
    os.makedirs(ref.logdir, exist_ok=True)
    os.makedirs(sut.logdir, exist_ok=True)
    return ref, sut


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    if not os.access(REFERENCE_MEMCACHED, os.X_OK):
        pytest.skip("reference %s not installed" % REFERENCE_MEMCACHED)
    ref_factory, sut_factory = _factories(str(tmp_path_factory.mktemp("bindiff")))
    try:
        yield [Side("memcached", ref_factory(*FLAGS)), Side("under-test", sut_factory(*FLAGS))]
    finally:
        try:
            sut_factory.teardown()
        finally:
            ref_factory.teardown()


@pytest.fixture
def fresh_sides(tmp_path):
    if not os.access(REFERENCE_MEMCACHED, os.X_OK):
        pytest.skip("reference %s not installed" % REFERENCE_MEMCACHED)
    ref_factory, sut_factory = _factories(str(tmp_path))
    try:
        yield [Side("memcached", ref_factory(*FLAGS)), Side("under-test", sut_factory(*FLAGS))]
    finally:
        try:
            sut_factory.teardown()
        finally:
            ref_factory.teardown()


def reset(sides):
    for side in sides:
        with side.server.client() as c:
            c.check(b"flush_all\r\n", b"OK\r\n")


def fail_divergence(name, i, datas, replies):
    pytest.fail("script %r diverged at step %d\nsent: %r\nmemcached 1.6.18:\n%s\n"
                "under test:\n%s" % (name, i, datas[0][:300], fmt(replies[0]), fmt(replies[1])),
                pytrace=False)


def params(scripts):
    out = []
    for name in sorted(scripts):
        marks = []
        if name in KNOWN_DIFFERENCES:
            marks.append(pytest.mark.xfail(not IS_MEMCACHED, strict=True,
                                           reason=KNOWN_DIFFERENCES[name]))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", params(SCRIPTS))
def test_script(sides, name):
    reset(sides)
    i, datas, replies, _ = run_script(sides, SCRIPTS[name])
    if i is not None:
        fail_divergence(name, i, datas, replies)


@pytest.mark.parametrize("name", params(FRESH_SCRIPTS))
def test_script_fresh_servers(fresh_sides, name):
    i, datas, replies, _ = run_script(fresh_sides, FRESH_SCRIPTS[name])
    if i is not None:
        fail_divergence(name, i, datas, replies)


def test_sentinel_detects_difference(sides):
    """Self-check of the harness: a step whose reply differs must be caught
    (the two sides are sent different bytes on purpose)."""
    reset(sides)
    steps = [lambda side: req(GET, b"x", opaque=1) if side.name == "memcached"
             else req(GETK, b"x", opaque=1)]
    i, _, replies, _ = run_script(sides, steps)
    assert i == 0
    assert replies[0][0][0].startswith("op=0x00 st=0x0001")
    assert replies[1][0][0].startswith("op=0x0c st=0x0001")


def test_cas_normalisation_keeps_relations(sides):
    reset(sides)
    i, _, _, transcript = run_script(sides, [req(SET, b"a", SE(), b"x", opaque=1)
                                             + req(SET, b"b", SE(), b"y", opaque=2)
                                             + req(GET, b"a", opaque=3)])
    assert i is None
    toks = transcript[0][1][0]
    assert [t[0].split()[-1] for t in toks] == ["cas=CAS1", "cas=CAS2", "cas=CAS1", "cas=0"]
    assert sides[0].cas_by_opaque[1] == sides[0].cas_by_opaque[3] != sides[0].cas_by_opaque[2]


def test_closed_connection_is_compared(sides):
    reset(sides)
    i, _, _, transcript = run_script(sides, [Quiet(req(QUIT, opaque=1))])
    assert i is None
    assert transcript[0][1][0][-1] == "<CLOSED>"
