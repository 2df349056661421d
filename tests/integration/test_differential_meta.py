"""Differential test of the meta protocol: the server under test vs Debian's
memcached 1.6.18, side by side, as test_differential.py does for the classic
text protocol.

Both run with identical flags (-m 64 -t 2 -U 0 -l 127.0.0.1). Each script is
a list of steps (byte streams, or functions of the side building one) sent on
a fresh connection to both servers; after every step the replies must be
identical, except:
  * CAS values: the n-th distinct CAS value seen on each side (a " c<n>" flag
    of a meta reply, "cas=<n>" of an ME line, the CAS of a VALUE line) is
    replaced by the token CAS<n>, so equal/different relations are still
    compared. "c0" (no CAS, on a failed ms) stays as is.
  * Seconds that follow the server's clock tick: the t<n> and l<n> flags and
    ME's exp= and la= may differ by one, since the two processes' 1-second
    clocks tick at different moments. "t-1" (no TTL) must match exactly.
  * ME's cls= and size=: memstash's size classes and item header differ on
    purpose (docs/protocol.md), so those two values are not compared.
  * VERSION lines and STAT lines: a STAT block is compared by the values of
    the request counters meta commands move (cmd_get, get_hits, cmd_set, ...),
    which scripts reset with "stats reset" first; other stats are ignored.
A step's replies end at a "version" sentinel appended to it (or at close).

Before each script, flush_all is sent to both servers so every script starts
from an empty cache. Scripts avoid clock-dependent outcomes (expiry within
the script, T-1 followed by t, whose huge unsigned value depends on uptime).

Steps can use the last CAS a side saw (side.last_cas) or the CAS a side saw
for a key echoed with k (side.key_cas[key]) to build a request.
"""

import os
import re
import time

import pytest

from conftest import REFERENCE_MEMCACHED, ServerFactory

FLAGS = ("-m", "64", "-t", "2")

# Counters a STAT block is compared by (exactly).
COUNTERS = ("cmd_get", "get_hits", "get_misses", "cmd_set", "cmd_touch", "touch_hits",
            "touch_misses", "delete_hits", "delete_misses", "incr_hits", "incr_misses",
            "decr_hits", "decr_misses", "cas_hits", "cas_misses", "cas_badval", "cmd_meta",
            "store_too_large", "store_no_memory")

META_RC = (b"HD", b"VA", b"EN", b"NF", b"NS", b"EX")
CLOCK_FLAG = re.compile(rb"([tl])(\d+)\Z")
ME_LINE = re.compile(rb"ME (\S+) exp=(-?\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=\d+ "
                     rb"size=\d+\Z")


class Side:
    def __init__(self, name, server):
        self.name = name
        self.server = server
        self.cas_map = {}
        self.last_cas = 0
        self.key_cas = {}
        self.conn = None

    def norm_cas(self, cas):
        if cas not in self.cas_map:
            self.cas_map[cas] = "CAS%d" % (len(self.cas_map) + 1)
        return self.cas_map[cas].encode()


class Clock:
    """A seconds value compared within one second of the other side's."""

    def __init__(self, text, value):
        self.text = text
        self.value = value

    def __eq__(self, other):
        return (isinstance(other, Clock) and self.text == other.text
                and abs(self.value - other.value) <= 1)

    def __repr__(self):
        return "%s~%d" % (self.text.decode(), self.value)


def norm_meta_line(line, side):
    """A meta reply line as a tuple of comparable parts."""
    parts = line.split(b" ")
    out = []
    key = None
    cas = None
    for i, p in enumerate(parts):
        if i == 0:
            out.append(p)
            continue
        if parts[0] == b"VA" and i == 1:
            out.append(p)
            continue
        m = re.match(rb"c(\d+)\Z", p)
        if m and m.group(1) != b"0":
            cas = int(m.group(1))
            out.append(b"c" + side.norm_cas(cas))
            continue
        m = CLOCK_FLAG.match(p)
        if m:
            out.append(Clock(m.group(1), int(m.group(2))))
            continue
        if p.startswith(b"k"):
            key = p[1:]
        out.append(p)
    if cas is not None:
        side.last_cas = cas
        if key is not None:
            side.key_cas[key] = cas
    return tuple(out)


def tokenize(buf, side, final):
    """Split a reply stream into comparable tokens. Returns (tokens, rest)."""
    tokens = []
    pos = 0
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            break
        line = buf[pos:nl]
        m = re.match(rb"VA (\d+)( |\Z)", line)
        v = re.match(rb"VALUE (\S+) (\d+) (\d+)( \d+)?\Z", line)
        if m or v:
            n = int(m.group(1)) if m else int(v.group(3))
            end = nl + 2 + n + 2
            if len(buf) < end:
                break
            data = buf[nl + 2:end]
            if m:
                tokens.append((norm_meta_line(line, side), data))
            else:
                if v.group(4):
                    cas = int(v.group(4))
                    side.last_cas = cas
                    line = b"VALUE %s %s %s %s" % (v.group(1), v.group(2), v.group(3),
                                                   side.norm_cas(cas))
                tokens.append(line + b"\r\n" + data)
            pos = end
            continue
        me = ME_LINE.match(line)
        if me:
            tokens.append((b"ME", me.group(1), Clock(b"exp", int(me.group(2))),
                           Clock(b"la", int(me.group(3))), side.norm_cas(int(me.group(4))),
                           me.group(5)))
        elif line.split(b" ")[0] in META_RC:
            tokens.append(norm_meta_line(line, side))
        elif line.startswith(b"VERSION "):
            tokens.append(b"VERSION <v>")
        else:
            tokens.append(line)
        pos = nl + 2
    rest = buf[pos:]
    if final and rest:
        tokens.append(b"<PARTIAL>" + rest)
        rest = b""
    return tokens, rest


def collapse_stats(tokens):
    """Replace runs of STAT lines by the values of COUNTERS."""
    out = []
    run = {}
    in_run = False
    for t in tokens + [None]:
        if isinstance(t, bytes) and t.startswith(b"STAT "):
            parts = t.split(b" ", 2)
            run[parts[1].decode()] = parts[2].decode() if len(parts) > 2 else ""
            in_run = True
            continue
        if in_run:
            out.append(("STATS", tuple((n, run.get(n)) for n in COUNTERS)))
            run = {}
            in_run = False
        if t is not None:
            out.append(t)
    return out


SYNC_TIMEOUT = 3.0


def read_reply(conn, side, nversions):
    deadline = time.monotonic() + SYNC_TIMEOUT
    timed_out = False
    probe = Side("probe", None)
    while True:
        toks, _ = tokenize(conn.buf, probe, False)
        if toks.count(b"VERSION <v>") >= nversions and toks and toks[-1] == b"VERSION <v>":
            break
        if conn.eof:
            break
        if not conn._recv_some(deadline):
            timed_out = True
            break
    raw, conn.buf = conn.buf, b""
    tokens, _ = tokenize(raw, side, True)
    if conn.eof:
        tokens.append(b"<CLOSED>")
    elif timed_out:
        tokens.append(b"<NO SYNC>")
    return collapse_stats(tokens)


def count_version_cmds(data):
    n = 0
    for line in data.split(b"\n"):
        if line.strip(b"\r ").split(b" ")[0:1] == [b"version"]:
            n += 1
    return n


def run_script(sides, steps):
    transcript = []
    for side in sides:
        side.cas_map = {}
        side.last_cas = 0
        side.key_cas = {}
        side.conn = side.server.client(timeout=SYNC_TIMEOUT)
    try:
        for i, step in enumerate(steps):
            datas = []
            for side in sides:
                data = step(side) if callable(step) else step
                datas.append(data)
                if not side.conn.eof:
                    try:
                        side.conn.send(data + b"version\r\n")
                    except OSError:
                        pass
            replies = []
            for side, data in zip(sides, datas):
                if side.conn.eof:
                    replies.append([b"<CLOSED>"])
                    continue
                replies.append(read_reply(side.conn, side, count_version_cmds(data) + 1))
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

K250 = b"k" * 250
K251 = b"k" * 251
BIG = 1024 * 1024
O32 = b"O" + b"x" * 31
O33 = b"O" + b"x" * 32


def with_cas(fmt, delta=0):
    """A step using the last CAS the side saw (plus delta)."""
    return lambda side: fmt % (side.last_cas + delta)


def with_key_cas(fmt, key, delta=0):
    return lambda side: fmt % (side.key_cas[key] + delta)


SCRIPTS = {
    # --- mg --------------------------------------------------------------------
    "mg_basic": [b"mg a\r\n", b"mg a v\r\n", b"ms a 3\r\nabc\r\n", b"mg a\r\n", b"mg a v\r\n",
                 b"mg a s v f t c k\r\n"],
    "mg_every_flag": [b"ms a 3 F77 T100 c\r\nbar\r\n",
                      b"mg a s v f t c k O123 h l\r\n",
                      b"mg a l h k O9 c t f v s\r\n",
                      b"mg a Oop k\r\n", b"mg a u h\r\n", b"mg a q k v\r\n",
                      b"mg missing s v f t c k Oq h l u\r\n",
                      b"mg a P L Pproxy Lhint v\r\n"],
    "mg_h_fetched": [b"ms a 1\r\nx\r\nmg a h\r\nmg a h\r\nmg a u h\r\n",
                     b"set a 0 0 1\r\ny\r\nmg a h\r\nget a\r\nmg a h\r\n",
                     b"ms a 1\r\nz\r\nmg a u h\r\nmg a u h\r\n"],
    "mg_last_access": [b"ms a 1\r\nx\r\nmg a l\r\nmg a l h\r\nme a\r\n"],
    "mg_touch": [b"ms a 1 T100\r\nx\r\nmg a t\r\n", b"mg a T30 t\r\n", b"mg a t T60\r\n",
                 b"mg a t\r\n", b"mg a T0 t v\r\n", b"mg nope T30 t\r\n",
                 b"ms b 1\r\ny\r\nmg b T2592000 t\r\n"],
    "mg_vivify": [b"mg v N30 v c t s f h k\r\n", b"mg v N30 v c t\r\n", b"mg v h l\r\n",
                  b"mg w N0 t\r\n", b"mg w N0 t\r\n", b"mg x t N50 T20\r\n", b"mg x t\r\n",
                  b"mg y T20 N50 t\r\n", b"mg z N30 q\r\nmg z N30 q\r\nmn\r\n",
                  b"ms v 2\r\nok\r\nmg v N30 v\r\n"],
    "mg_recache": [b"ms r 1 T100\r\nx\r\n", b"mg r R30 t\r\n", b"mg r R200 c\r\n",
                   b"mg r R200\r\n", b"mg r\r\n", b"ms n 1 T100\r\nx\r\nmg n T60 R30\r\n",
                   b"mg n R90 T60\r\n", b"ms z 1\r\nx\r\nmg z R99999\r\n",
                   b"mg nv N30 R60\r\nmg nv R60\r\n", b"ms r 1 T100\r\ny\r\nmg r R200\r\n",
                   b"mg r R-1\r\nmg r R0\r\n"],
    "mg_quiet": [b"ms a 1\r\nx\r\n",
                 b"mg m v q\r\nmg a v q\r\nmg m k q Oa\r\nmg a q\r\nmn\r\n",
                 b"mg m q k b\r\nmn\r\n"],
    "mg_errors": [b"mg\r\n", b"mg " + K251 + b" v\r\n", b"mg " + K250 + b" v\r\n",
                  b"mg a !\r\n", b"mg a v v\r\n", b"mg a E1\r\n", b"mg a S1\r\n",
                  b"mg a x\r\n", b"mg a Z\r\n", b"mg a Nx\r\n", b"mg a T\r\n", b"mg a Rz\r\n",
                  b"mg a " + b" ".join([b"v"] * 17) + b"\r\n",
                  b"mg a " + b" ".join([b"v"] * 18) + b"\r\n",
                  b"mg a \xff\r\n", b"mg a C1\r\n", b"mg a " + O32 + b"\r\n",
                  b"mg a Nx T1 !\r\n", b"mg a Tx Ny\r\n"],
    "mg_opaque_after_exec": [b"ms a 1 T100\r\nx\r\n", b"mg a t " + O33 + b" T30\r\n",
                             b"mg a t\r\n", b"mg a T30 " + O33 + b" t\r\n", b"mg a t\r\n",
                             b"mg v1 N50 " + O33 + b"\r\n", b"mg v1 t h\r\n",
                             b"mg v2 " + O33 + b" N50\r\n", b"mg v2 t h\r\n",
                             b"mg v3 " + O33 + b"\r\n", b"mg a h l " + O33 + b"\r\n",
                             b"mg a v " + O33 + b"\r\nmg a h\r\n",
                             b"stats reset\r\nmg a " + O33 + b"\r\nmg zz " + O33 + b"\r\nstats\r\n"],
    # --- ms --------------------------------------------------------------------
    "ms_modes": [b"ms k 1 MA\r\nx\r\nms k 1 MP\r\nx\r\nms k 1 MR\r\nx\r\n",
                 b"ms k 1 ME\r\nb\r\nms k 1 ME\r\nz\r\n",
                 b"ms k 1 MA\r\nc\r\nms k 1 MP\r\na\r\nmg k v\r\n",
                 b"ms k 1 MR F7\r\nr\r\nmg k v f\r\n", b"ms k 1 MS\r\ns\r\nmg k v f\r\n",
                 b"ms k 1 MX\r\nx\r\n", b"ms k 1 Mss\r\nx\r\n", b"ms k 1 Ms\r\nx\r\n",
                 b"ms k 1 M\r\nx\r\n", b"ms k 1 MA MR\r\nx\r\n", b"mg k v\r\n",
                 b"ms new 1 MA N30\r\nx\r\nmg new\r\n", b"ms k 1 MA N30 v h l t u\r\ny\r\n",
                 b"ms k 1 S1\r\nx\r\n", b"ms k 1 E5\r\nx\r\n", b"mg k v\r\n"],
    "ms_flags_ttl": [b"ms k 2 F5 T100\r\nab\r\nmg k v f t s\r\n",
                     b"ms k 2 MA F9 T0\r\ncd\r\nmg k v f t s\r\n",
                     b"ms k 2 MP\r\nef\r\nmg k v f t s\r\n",
                     b"ms k 1 F4294967295\r\nx\r\nmg k f\r\n",
                     b"ms k 1 F4294967296\r\nx\r\nmg k f\r\n",
                     b"ms k 1 F-1\r\nx\r\nmg k f\r\n", b"ms k 1 Fx\r\nx\r\nmg k f\r\n",
                     b"ms k 1 T2592000\r\nx\r\nmg k t\r\n",
                     b"ms k 1 T-1\r\nx\r\nmg k v\r\n"],
    "ms_cas": [b"ms k 1 C1\r\nx\r\n", b"ms k 1 c\r\nx\r\n",
               with_cas(b"ms k 1 C%d c\r\ny\r\n", 1), b"ms k 1 C0\r\ny\r\n",
               b"mg k c\r\n", with_cas(b"ms k 1 C%d c\r\ny\r\n"),
               with_cas(b"ms k 1 MR C%d\r\nz\r\n", -1), with_cas(b"ms k 1 ME C%d\r\nz\r\n"),
               with_cas(b"ms k 1 MA C%d\r\nz\r\n", -1), b"ms k 1 MA C0\r\nz\r\n",
               b"mg k c v\r\n", with_cas(b"ms k 1 MP C%d c\r\na\r\n"), b"mg k v c\r\n",
               b"ms k 1 Cx\r\nx\r\n", b"ms k 1 C18446744073709551616\r\nx\r\n"],
    "ms_invalidate": [b"ms k 2 T100 c\r\nv1\r\n", b"mg k R1000\r\n",
                      with_cas(b"ms k 2 I C%d\r\nv2\r\n", 1000),
                      with_cas(b"ms k 2 I C%d T5 c\r\nv2\r\n", -1), b"mg k v t c\r\n",
                      b"mg k v\r\n", b"ms k 2 C1\r\nv3\r\n", b"mg k c\r\n",
                      with_cas(b"ms k 2 I C%d\r\nv4\r\n"), b"mg k v\r\n",
                      b"ms k 1 I\r\nx\r\nmg k\r\n", b"ms k 1 I MA C1\r\ny\r\nmg k v\r\n",
                      b"ms j 1 c\r\nx\r\n", with_cas(b"ms j 1 I C%d\r\ny\r\nmg j v\r\n", -1)],
    "ms_echo": [b"ms k 1 k O99 c T0 F1 q s\r\nx\r\nmn\r\n", b"ms k 1 k O99 c\r\nx\r\n",
                b"ms k 1 c O1 k ME\r\nx\r\n", b"ms k 1 q ME\r\nx\r\n",
                b"ms k 1 b k\r\nx\r\n", b"ms a2V5 1 b k c O5\r\nx\r\n",
                b"ms k 1 " + O32 + b" k\r\nx\r\n"],
    "ms_data": [b"ms k 0\r\n\r\nmg k v s\r\n", b"ms k 10\r\n\x00\r\n\xffEND\r\n\r\nmg k v\r\n",
                b"ms k 3\r\nabcd\r\n", b"ms k 3 q\r\nabcd\r\n", b"ms k 3\r\nab\r\n\r\n",
                b"ms k 3 q\r\nabc\nX", b"ms k 1\r\nxyz", b"mg k v\r\n"],
    "ms_errors": [b"ms\r\n", b"ms k\r\nmn\r\n", b"ms k -1\r\nmn\r\n", b"ms k abc\r\nmn\r\n",
                  b"ms k 2147483646\r\nmn\r\n", b"ms k 5 !\r\nmn mn\r\n",
                  b"ms k 5 T1 T2\r\nmn mn\r\n", b"ms k 5 Tx\r\nmn mn\r\n",
                  b"ms k 5 " + O33 + b"\r\nmn mn\r\n", b"ms k 5 " + O33 + b" MX\r\nmn mn\r\n",
                  b"ms " + K251 + b" 1\r\nx\r\n", b"ms " + K250 + b" 1\r\nx\r\n",
                  b"ms k 1 " + b" ".join([b"q"] * 17) + b"\r\nx\r\n",
                  b"ms k 1 " + b" ".join([b"q"] * 16) + b"\r\nx\r\n",
                  b"ms !!!! 1 b\r\nx\r\n", b"mg k\r\n"],
    "ms_too_large": [b"ms big 1\r\nx\r\n",
                     b"ms big %d\r\n" % BIG + b"B" * BIG + b"\r\n", b"mg big v\r\n",
                     b"ms big 1\r\nx\r\n",
                     b"ms big %d MA q\r\n" % BIG + b"B" * BIG + b"\r\n", b"mg big v\r\n",
                     b"ms abc 1048514\r\n" + b"v" * 1048514 + b"\r\nmg abc s\r\n",
                     b"ms abc 1048515\r\n" + b"v" * 1048515 + b"\r\nmg abc s\r\n",
                     b"ms abc 1048510 F1\r\n" + b"v" * 1048510 + b"\r\nmg abc s\r\n",
                     b"ms abc 1048511 F1\r\n" + b"v" * 1048511 + b"\r\nmg abc s\r\n"],
    # --- md --------------------------------------------------------------------
    "md_basic": [b"md d\r\n", b"md d q\r\n", b"md d k O5\r\n",
                 b"ms d 1\r\nx\r\nmd d\r\nmg d\r\n", b"ms d 1\r\nx\r\nmd d q\r\nmn\r\n",
                 b"ms d 1\r\nx\r\nmd d k Oz T30\r\nmg d\r\n"],
    "md_cas": [b"ms d 1 c\r\nx\r\n", with_cas(b"md d C%d\r\n", 1), b"md d C0\r\n",
               with_cas(b"md d C%d q\r\n", 1), with_cas(b"md d C%d\r\nmg d\r\n")],
    "md_invalidate": [b"ms d 3 T100 c\r\nold\r\n", b"md d I T30 q\r\nmn\r\n",
                      b"mg d v c t\r\n", b"md d I C1\r\n", b"mg d\r\n", b"md d I\r\n",
                      b"mg d t\r\n", b"mg d c\r\n", with_cas(b"md d I C%d k\r\nmg d c\r\n"),
                      b"md d\r\nmg d\r\n", b"md nope I\r\n"],
    "md_errors": [b"md\r\n", b"md d !\r\n", b"md d q q\r\n", b"md d Cx\r\n", b"md d E5\r\n",
                  b"md d x\r\n", b"ms d 1\r\nx\r\nmd d " + O33 + b"\r\nmg d\r\n",
                  b"md " + K251 + b"\r\n", b"md d " + b" ".join([b"q"] * 18) + b"\r\n",
                  b"md !!!! b\r\n"],
    # --- ma --------------------------------------------------------------------
    "ma_modes": [b"ma n\r\n", b"ms n 2\r\n10\r\n", b"ma n v\r\n", b"ma n MI D4 v\r\n",
                 b"ma n M+ v\r\n", b"ma n MD D6 v\r\n", b"ma n M- D100 v\r\n", b"ma n\r\n",
                 b"mg n v\r\n", b"ma n Mx\r\n", b"ma n Mii\r\n", b"ma n Dx\r\n",
                 b"ma n D18446744073709551616\r\n", b"ma n D-1\r\n",
                 b"ms n 20\r\n18446744073709551615\r\nma n v\r\nmg n v\r\n",
                 b"ms n 2\r\nab\r\nma n\r\n", b"ms n 3\r\n 12\r\nma n v\r\n",
                 b"ms n 0\r\n\r\nma n\r\n", b"ms n 3\r\n100\r\nma n MD v\r\nmg n v\r\n"],
    "ma_vivify": [b"ma n N0 J10 v t\r\n", b"ma n N0 J99 v\r\n", b"ma n2 N50 MD v t\r\n",
                  b"mg n2 f v\r\n", b"ma n3 N0 J18446744073709551615 v\r\nma n3 v\r\n",
                  b"ma n4 t N0 T30 c\r\n", b"ma n5 T30 N60 t\r\nmg n5 t\r\n",
                  b"ma n6 N0 Jx\r\n", b"ma n7 N0 J-1\r\n", b"ma n8 Nx\r\n"],
    "ma_ttl_cas_echo": [b"ms n 1 T100 c\r\n5\r\n", b"ma n c t v k O1\r\n", b"ma n t T30\r\n",
                        b"ma n T40 t\r\n", with_cas(b"ma n C%d\r\n", -1),
                        with_cas(b"ma n C%d q k\r\n", -1), b"mg n c\r\n",
                        with_cas(b"ma n C%d v\r\n"), b"ma n C0 v c\r\n", b"ma none k O2\r\n",
                        b"ma none q\r\n", b"ma n b\r\n"],
    "ma_quiet": [b"ma n q\r\nma n N0 q v\r\nma n q v\r\nma n q c\r\nmn\r\n", b"mg n v\r\n",
                 b"ms s 1\r\nx\r\nma s q\r\nmn\r\n"],
    "ma_errors": [b"ma\r\n", b"ma n !\r\n", b"ma n v v\r\n", b"ma n Jx\r\n",
                  b"ma n N0 " + O33 + b"\r\n", b"ma n " + O33 + b" v\r\n", b"mg n v\r\n",
                  b"ma n T30 " + O33 + b"\r\nmg n t\r\n", b"ma n " + O33 + b" T40\r\nmg n t\r\n",
                  b"ma none " + O33 + b"\r\n", b"ma " + K251 + b"\r\n",
                  b"ma n " + b" ".join([b"q"] * 18) + b"\r\n"],
    # --- base64 keys -----------------------------------------------------------
    "base64_keys": [b"ms Zm9v 1 b k c\r\nx\r\n", b"mg foo k v\r\n", b"mg Zm9v b k v s\r\n",
                    b"ms bar 1 k\r\ny\r\n", b"mg YmFy b k\r\n", b"mg YmFy b k q\r\n",
                    b"mg bm9uZQ== b k\r\n", b"mg bm9uZQ== b k q\r\nmn\r\n",
                    b"mg bmV3 b N0 k\r\n", b"mg bmV3 b k\r\n", b"mg new k\r\n",
                    b"md Zm9v b k q O1\r\n", b"md Zm9v b k O1\r\n",
                    b"ma bnVt b N0 k v\r\n", b"ma bnVt b k v c t q\r\nmn\r\n",
                    b"ms Zm9v 1 b k O123 c MR\r\nx\r\n", b"ms Zm9v 1 b k O123 c ME\r\nx\r\n",
                    b"ms AQID/w== 2 b k\r\n\x00\x01\r\nmg AQID/w== b v k\r\n",
                    b"mg !!!! b\r\n", b"mg Zm9 b\r\n", b"mg Zm9v= b\r\n", b"mg Z=== b\r\n"],
    "base64_marks": [b"ms Zm9v 1 b\r\nx\r\n", b"ms foo 1 MA\r\ny\r\nmg foo k v\r\n",
                     b"ms foo 1\r\nx\r\nms Zm9v 1 b MA\r\ny\r\nmg foo k v\r\n",
                     b"ms Zm9v 1 b\r\nx\r\nma Zm9v b\r\nmg foo k v\r\n",
                     b"ms Zm9v 1 b\r\n1\r\nma Zm9v b\r\nmg foo k v\r\n",
                     b"ms Zm9v 1 b\r\n1\r\nma Zm9v b D10\r\nmg foo k v\r\n",
                     b"ms Zm9v 1 b\r\n1\r\nmd Zm9v b I\r\nmg foo k v\r\n",
                     b"ms Zm9v 1 b c\r\n1\r\n", with_cas(b"ms foo 1 I C%d\r\n2\r\nmg foo k v\r\n", -1),
                     b"set foo 0 0 1\r\nx\r\nmg foo k\r\n"],
    # --- stale / win flow ------------------------------------------------------
    "stale_win_flow": [b"ms s 2 T100 c\r\nv1\r\n", b"md s I T30\r\n", b"mg s c t v\r\n",
                       b"mg s c v\r\n", b"mg s c v N30 R30\r\n",
                       lambda side: b"ms s 2 C%d c T100\r\nv2\r\n" % side.last_cas,
                       b"mg s v c\r\n", b"md s I\r\nmg s\r\nmg s\r\n",
                       b"ms s 2 T100\r\nv3\r\nmg s v\r\n"],
    # --- mn / me / pipelines ---------------------------------------------------
    "mn": [b"mn\r\n", b"mn extra tokens here\r\n", b"mn\r\nmn\r\nmn\r\n"],
    "me": [b"me e\r\n", b"ms e 3 T100\r\nabc\r\n", b"me e\r\n", b"mg e h\r\n", b"me e\r\n",
           b"ms n 1\r\nx\r\nme n\r\n", b"ms AQ== 1 b\r\nx\r\nme AQ== b\r\n", b"me \x01\r\n",
           b"me AQ== x\r\n", b"me AQ== b extra\r\n", b"me\r\n", b"me " + K251 + b"\r\n",
           b"me !!!! b\r\n", b"me e v\r\n"],
    "quiet_batch": [b"".join(b"ms q%d 2 q T0\r\nv%d\r\n" % (i, i % 10) for i in range(50))
                    + b"mn\r\n",
                    b"".join(b"mg q%d v q k\r\n" % i for i in range(10))
                    + b"mg missing v q k\r\nmn\r\n",
                    b"".join(b"md q%d q\r\n" % i for i in range(5)) + b"md missing q O7\r\nmn\r\n",
                    b"mg q9 q !\r\nmn\r\n"],
    "pipelined": [b"".join(b"ms p%d %d c\r\n%d\r\nmg p%d v t\r\nma p%d v\r\nmd p%d q\r\n"
                           b"mg p%d v q\r\nbogus\r\n"
                           % (i, len(b"%d" % i), i, i, i, i, i) for i in range(150))
                  + b"mn\r\n"],
    "mixed_with_classic": [b"set a 5 0 1\r\nx\r\nmg a v f\r\nget a\r\n",
                           b"ms b 2 F3\r\nhi\r\ngets b\r\n", b"mg b c\r\n",
                           b"incr x 1\r\nma x N0\r\nincr x 5\r\nmg x v\r\n",
                           b"touch b 100\r\nmg b t\r\n", b"delete b\r\nmg b\r\n",
                           b"md a\r\nget a\r\n"],
    # --- counters --------------------------------------------------------------
    "counters": [b"stats reset\r\n",
                 b"mg a v\r\nmg a T10\r\n",
                 b"ms a 1\r\nx\r\nmg a v\r\nmg a T10\r\nmg b N10\r\nmg a u\r\n",
                 b"ms a 1 C99999\r\ny\r\nms z 1 C1\r\ny\r\nms a 1 MA\r\nz\r\nms q 1 MA\r\nz\r\n",
                 b"ms a 1 ME\r\nz\r\nms a 1 MR\r\nz\r\n",
                 b"mg a c\r\n", with_cas(b"ms a 1 C%d I\r\nw\r\n", -1),
                 b"md a I\r\nmd a C99999\r\nmd a\r\nmd a\r\n",
                 b"ma n\r\nma n N0\r\nma n\r\nma n MD\r\nma n C99999\r\nma m MD\r\n",
                 b"me n\r\nme nothing\r\nmn\r\n",
                 b"ms big %d\r\n" % BIG + b"B" * BIG + b"\r\n",
                 b"ms bad 1\r\nxyz\r\n",
                 b"stats\r\n"],
    "counters_errors": [b"stats reset\r\n",
                        b"mg a " + O33 + b"\r\nma a " + O33 + b"\r\nms a 1 !\r\nx\r\n"
                        b"md a !\r\nme\r\n",
                        b"ms a 1\r\n1\r\nmg a " + O33 + b"\r\nma a " + O33 + b"\r\n",
                        b"stats\r\n"],
}


# ---------------------------------------------------------------------------
# Fixtures and tests
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    if not os.access(REFERENCE_MEMCACHED, os.X_OK):
        pytest.skip("reference %s not installed" % REFERENCE_MEMCACHED)
    ref_factory = ServerFactory(str(tmp_path_factory.mktemp("ref")), binary=REFERENCE_MEMCACHED)
    sut_factory = ServerFactory(str(tmp_path_factory.mktemp("sut")))
    try:
        ref = ref_factory(*FLAGS)
        sut = sut_factory(*FLAGS)
        yield [Side("memcached", ref), Side("under-test", sut)]
    finally:
        try:
            sut_factory.teardown()
        finally:
            ref_factory.teardown()


def reset(sides):
    for side in sides:
        with side.server.client() as c:
            c.check(b"flush_all\r\n", b"OK\r\n")


def fmt(tokens):
    def short(t):
        if isinstance(t, bytes) and len(t) >= 300:
            return t[:150] + b"..." + t[-60:]
        return t
    return "\n".join("    %r" % (short(t),) for t in tokens)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script(sides, name):
    reset(sides)
    i, datas, replies, _ = run_script(sides, SCRIPTS[name])
    if i is not None:
        pytest.fail("script %r diverged at step %d\nsent: %r\nmemcached 1.6.18:\n%s\n"
                    "under test:\n%s" % (name, i, datas[0][:400], fmt(replies[0]),
                                         fmt(replies[1])), pytrace=False)


def test_harness_detects_difference(sides):
    """Self-check: differing replies are caught, clock values within one
    second are not."""
    reset(sides)
    steps = [lambda side: b"mg nothere\r\n" if side.name == "memcached" else b"mn\r\n"]
    i, _, replies, _ = run_script(sides, steps)
    assert i == 0
    assert replies[0] == [(b"EN",), b"VERSION <v>"]
    assert replies[1] == [b"MN", b"VERSION <v>"]
    a = Side("a", None)
    b = Side("b", None)
    assert tokenize(b"HD t10 l2 c55\r\n", a, True)[0] == tokenize(b"HD t9 l3 c7\r\n", b, True)[0]
    assert tokenize(b"HD t10\r\n", a, True)[0] != tokenize(b"HD t8\r\n", b, True)[0]
    assert tokenize(b"HD t-1\r\n", a, True)[0] != tokenize(b"HD t0\r\n", b, True)[0]
    assert tokenize(b"HD c9\r\n", a, True)[0] != tokenize(b"HD c7\r\n", b, True)[0]
