"""Meta protocol (mg ms md ma mn me) against a real server, black-box.

Every expectation here was checked against Debian's memcached 1.6.18
(MEMSTASHD=/usr/bin/memcached); tests marked memstash_only cover the few
places where memstashd reports its own values (me's cls/size).

Replies are compared byte for byte except CAS values (parsed from the reply
and checked for their relations) and seconds that depend on the server's
clock tick (t, l, la, exp), which are checked within a one-second window.
"""

import base64
import math
import re
import time

import pytest


def b64(s):
    return base64.b64encode(s).decode("ascii").encode("ascii")


def cas_of(line):
    m = re.search(rb" c(\d+)", line)
    assert m, "no c flag in %r" % line
    return int(m.group(1))


def flag_num(line, f):
    m = re.search(rb" " + f + rb"(-?\d+)", line)
    assert m, "no %r flag in %r" % (f, line)
    return int(m.group(1))


def stat_delta(before, after, names):
    return {n: int(after[n]) - int(before[n]) for n in names}


COUNTERS = ("cmd_get", "get_hits", "get_misses", "cmd_set", "cmd_touch", "touch_hits",
            "touch_misses", "delete_hits", "delete_misses", "incr_hits", "incr_misses",
            "decr_hits", "decr_misses", "cas_hits", "cas_misses", "cas_badval", "cmd_meta")


# ---------------------------------------------------------------------------
# mg
# ---------------------------------------------------------------------------

def test_mg_miss_and_hit(conn, keyprefix):
    k = (keyprefix + "a").encode()
    conn.check(b"mg " + k + b"\r\n", b"EN\r\n")
    conn.check(b"mg " + k + b" v\r\n", b"EN\r\n")
    conn.check(b"ms " + k + b" 3\r\nabc\r\n", b"HD\r\n")
    conn.check(b"mg " + k + b"\r\n", b"HD\r\n")
    conn.check(b"mg " + k + b" v\r\n", b"VA 3\r\nabc\r\n")
    conn.check(b"mg " + k + b" s v\r\n", b"VA 3 s3\r\nabc\r\n")


def test_mg_flags_echo_in_request_order(conn, keyprefix):
    k = (keyprefix + "a").encode()
    got = conn.call(b"ms " + k + b" 3 F42 c\r\nbar\r\n")
    cas = cas_of(got)
    assert got == b"HD c%d\r\n" % cas
    conn.check(b"mg " + k + b" s v f t c k O123 h l\r\n",
               b"VA 3 s3 f42 t-1 c%d k%s O123 h0 l0\r\nbar\r\n" % (cas, k))
    conn.check(b"mg " + k + b" Oxyz k c f s\r\n", b"HD Oxyz k%s c%d f42 s3\r\n" % (k, cas))
    # only O and k are echoed on a miss
    m = (keyprefix + "miss").encode()
    conn.check(b"mg " + m + b" s v f t c k Oq h l\r\n", b"EN k%s Oq\r\n" % m)


def test_mg_h_l_u(conn, keyprefix):
    k = (keyprefix + "a").encode()
    conn.check(b"ms " + k + b" 1\r\nx\r\n", b"HD\r\n")
    # u neither marks the item fetched nor counts as an access
    conn.check(b"mg " + k + b" u h\r\n", b"HD h0\r\n")
    conn.check(b"mg " + k + b" h\r\n", b"HD h0\r\n")
    conn.check(b"mg " + k + b" h\r\n", b"HD h1\r\n")
    conn.check(b"mg " + k + b" u h\r\n", b"HD h1\r\n")
    got = conn.call(b"mg " + k + b" l\r\n")
    assert flag_num(got, b"l") in (0, 1)
    # a new store resets fetched
    conn.check(b"ms " + k + b" 1\r\ny\r\nmg " + k + b" h\r\n", b"HD\r\nHD h0\r\n")


def seconds_window(start, end, slack=0.4):
    """Whole seconds a server clock that ticks once a second can show for an
    interval that began within [start[0], start[1]] and ended within
    [end[0], end[1]] (time.monotonic() readings around the two requests),
    allowing `slack` seconds of difference in how late its tick was at the
    two moments."""
    return (int(math.floor(end[0] - start[1] - slack)),
            int(math.floor(end[1] - start[0] + slack)) + 1)


def timed_call(conn, data):
    t0 = time.monotonic()
    got = conn.call(data)
    return got, (t0, time.monotonic())


def test_mg_last_access_seconds(conn, keyprefix):
    """l counts from the store; the first fetch does not count as an access,
    the second does (memcached 1.6.18's segmented LRU)."""
    k = (keyprefix + "a").encode()
    _, stored = timed_call(conn, b"ms " + k + b" 1\r\nx\r\n")
    # Whole seconds on both sides, and a server clock that ticks in the
    # background: each reading is checked against the time that really
    # passed around the requests (about 2.5 and 1.5 s here), so a loaded host
    # that oversleeps widens the window instead of failing.
    time.sleep(2.5)
    got, first = timed_call(conn, b"mg " + k + b" l h\r\n")
    lo, hi = seconds_window(stored, first)
    assert lo <= flag_num(got, b"l") <= hi and lo >= 2
    got, second = timed_call(conn, b"mg " + k + b" l h\r\n")
    lo, hi = seconds_window(stored, second)
    assert lo <= flag_num(got, b"l") <= hi and lo >= 2  # still from the store
    time.sleep(1.5)
    got, third = timed_call(conn, b"mg " + k + b" l u\r\n")
    lo, hi = seconds_window(second, third)
    # from the second fetch (from the store it would be about 4)
    assert lo <= flag_num(got, b"l") <= hi
    got, fourth = timed_call(conn, b"me " + k + b"\r\n")
    la = int(re.search(rb" la=(\d+)", got).group(1))
    lo, hi = seconds_window(second, fourth)
    assert lo <= la <= hi


def test_mg_ttl_and_touch(conn, keyprefix):
    k = (keyprefix + "a").encode()
    conn.check(b"ms " + k + b" 1 T100\r\nx\r\n", b"HD\r\n")
    assert flag_num(conn.call(b"mg " + k + b" t\r\n"), b"t") in (99, 100)
    # t before T shows the old TTL, after it the new one
    got = conn.call(b"mg " + k + b" t T30 v\r\n")
    assert re.match(rb"VA 1 t(99|100)\r\nx\r\n\Z", got), got
    assert flag_num(conn.call(b"mg " + k + b" t\r\n"), b"t") in (29, 30)
    conn.check(b"mg " + k + b" T0 t\r\n", b"HD t-1\r\n")
    # T-1 expires the item at once
    conn.check(b"mg " + k + b" T-1\r\n", b"HD\r\n")
    conn.check(b"mg " + k + b" v\r\n", b"EN\r\n")


def test_mg_vivify_win_token(conn, keyprefix):
    k = (keyprefix + "v").encode()
    got = conn.call(b"mg " + k + b" N30 v c t s f h\r\n")
    cas = cas_of(got)
    m = re.match(rb"VA 0 c(\d+) t(30|29) s0 f0 h0 W\r\n\r\n\Z", got)
    assert m, got
    got = conn.call(b"mg " + k + b" N30 v c t\r\n")
    assert re.match(rb"VA 0 c%d t(30|29) Z\r\n\r\n\Z" % cas, got), got
    # the created item counts as fetched once
    conn.check(b"mg " + k + b" h\r\n", b"HD h1 Z\r\n")
    # storing the value clears the token
    conn.check(b"ms " + k + b" 2 T30\r\nok\r\nmg " + k + b" v\r\n", b"HD\r\nVA 2\r\nok\r\n")
    # N on a hit does nothing special
    conn.check(b"mg " + k + b" N30 s\r\n", b"HD s2\r\n")


def test_mg_vivify_ttl_order(conn, keyprefix):
    a = (keyprefix + "a").encode()
    b = (keyprefix + "b").encode()
    # t prints the TTL as it stands at its place in the request
    conn.check(b"mg " + a + b" t N50 T20\r\n", b"HD t-1 W\r\n")
    assert flag_num(conn.call(b"mg " + a + b" t\r\n"), b"t") in (19, 20)
    got = conn.call(b"mg " + b + b" T20 N50 t\r\n")
    assert re.match(rb"HD t(50|49) W\r\n\Z", got), got
    c = (keyprefix + "c").encode()
    got = conn.call(b"mg " + c + b" N50 t T20\r\n")
    assert re.match(rb"HD t(50|49) W\r\n\Z", got), got
    assert flag_num(conn.call(b"mg " + c + b" t\r\n"), b"t") in (19, 20)


def test_mg_recache(conn, keyprefix):
    k = (keyprefix + "r").encode()
    conn.check(b"ms " + k + b" 1 T100\r\nx\r\n", b"HD\r\n")
    assert conn.call(b"mg " + k + b" R30\r\n") == b"HD\r\n"
    conn.check(b"mg " + k + b" R200\r\n", b"HD W\r\n")
    conn.check(b"mg " + k + b" R200\r\n", b"HD Z\r\n")
    conn.check(b"mg " + k + b"\r\n", b"HD Z\r\n")
    # R compares with the TTL as an earlier T in the request left it
    n = (keyprefix + "n").encode()
    conn.check(b"ms " + n + b" 1 T100\r\nx\r\n", b"HD\r\n")
    conn.check(b"mg " + n + b" T60 R30\r\n", b"HD\r\n")
    conn.check(b"mg " + n + b" R90 T60\r\n", b"HD W\r\n")
    # no TTL: never
    z = (keyprefix + "z").encode()
    conn.check(b"ms " + z + b" 1\r\nx\r\nmg " + z + b" R99999\r\n", b"HD\r\nHD\r\n")
    # a freshly created item does not win by R (it won by N)
    v = (keyprefix + "viv").encode()
    got = conn.call(b"mg " + v + b" N30 R60\r\n")
    assert got == b"HD W\r\n"


def test_stale_win_recache_sequence(conn, keyprefix):
    """The flow from memcached's protocol.txt: invalidate with md I, one
    client wins the recache (W) while others see the stale value (X, Z),
    the winner stores with the CAS it saw, and the item is fresh again."""
    k = (keyprefix + "s").encode()
    got = conn.call(b"ms " + k + b" 2 T100 c\r\nv1\r\n")
    cas1 = cas_of(got)
    conn.check(b"md " + k + b" I T30\r\n", b"HD\r\n")
    got = conn.call(b"mg " + k + b" c t v\r\n")
    m = re.match(rb"VA 2 c(\d+) t(30|29) X W\r\nv1\r\n\Z", got)
    assert m, got
    cas2 = int(m.group(1))
    assert cas2 != cas1
    got = conn.call(b"mg " + k + b" c v\r\n")
    assert got == b"VA 2 c%d Z X\r\nv1\r\n" % cas2
    # the winner recaches with its CAS: a normal CAS store, fresh item
    got = conn.call(b"ms " + k + b" 2 C%d c T100\r\nv2\r\n" % cas2)
    cas3 = cas_of(got)
    assert got == b"HD c%d\r\n" % cas3 and cas3 != cas2
    conn.check(b"mg " + k + b" v\r\n", b"VA 2\r\nv2\r\n")
    # a second md I clears the token again: a new winner
    conn.check(b"md " + k + b" I\r\nmg " + k + b"\r\nmg " + k + b"\r\n",
               b"HD\r\nHD X W\r\nHD Z X\r\n")


def test_ms_invalidate_lower_cas(conn, keyprefix):
    k = (keyprefix + "i").encode()
    got = conn.call(b"ms " + k + b" 2 T100 c\r\nv1\r\n")
    cas = cas_of(got)
    conn.check(b"mg " + k + b" R1000\r\n", b"HD W\r\n")  # hand out the token
    # higher CAS than the item's: EX even with I
    conn.check(b"ms " + k + b" 2 I C%d\r\nv2\r\n" % (cas + 1000), b"EX\r\n")
    # lower CAS with I: stored, stale, old TTL and token kept
    got = conn.call(b"ms " + k + b" 2 I C%d T5 c\r\nv2\r\n" % (cas - 1))
    assert re.match(rb"HD c\d+\r\n\Z", got), got
    got = conn.call(b"mg " + k + b" v t\r\n")
    assert re.match(rb"VA 2 t(100|99|98) Z X\r\nv2\r\n\Z", got), got
    # without I a lower CAS is EX
    conn.check(b"ms " + k + b" 2 C1\r\nv3\r\n", b"EX\r\n")


def test_mg_quiet(conn, keyprefix):
    k = (keyprefix + "q").encode()
    m = (keyprefix + "m").encode()
    conn.check(b"ms " + k + b" 1\r\nx\r\n", b"HD\r\n")
    conn.check(b"mg " + m + b" v q\r\nmg " + k + b" v q\r\nmg " + m + b" k q Oa\r\nmn\r\n",
               b"VA 1\r\nx\r\nMN\r\n")
    conn.check(b"mg " + k + b" q\r\n", b"HD\r\n")


def test_mg_base64_keys(conn, keyprefix):
    raw = (keyprefix + "\x01 bin\xff").encode("latin1")
    enc = b64(raw)
    conn.check(b"ms " + enc + b" 1 b k\r\nx\r\n", b"HD k" + enc + b" b\r\n")
    conn.check(b"mg " + enc + b" b k v\r\n", b"VA 1 k" + enc + b" b\r\nx\r\n")
    # a key stored with b prints base64 even when fetched by its plain bytes
    plain = (keyprefix + "plain").encode()
    conn.check(b"ms " + b64(plain) + b" 1 b\r\ny\r\n", b"HD\r\n")
    conn.check(b"mg " + plain + b" k v\r\n", b"VA 1 k" + b64(plain) + b" b\r\ny\r\n")
    # and one stored plain prints plain even when asked with b
    p2 = (keyprefix + "p2").encode()
    conn.check(b"ms " + p2 + b" 1\r\nz\r\n", b"HD\r\n")
    conn.check(b"mg " + b64(p2) + b" b k\r\n", b"HD k" + p2 + b"\r\n")
    # a miss echoes the request's key and b
    miss = b64((keyprefix + "none").encode())
    conn.check(b"mg " + miss + b" b k\r\n", b"EN k" + miss + b" b\r\n")
    # an item created by N is not marked binary
    viv = (keyprefix + "viv").encode()
    conn.check(b"mg " + b64(viv) + b" b N0 k\r\n", b"HD k" + viv + b" W\r\n")
    # undecodable
    conn.check(b"mg !!!! b\r\n", b"CLIENT_ERROR error decoding key\r\n")


# ---------------------------------------------------------------------------
# ms
# ---------------------------------------------------------------------------

def test_ms_modes(conn, keyprefix):
    k = (keyprefix + "k").encode()
    conn.check(b"ms " + k + b" 1 MA\r\nx\r\n", b"NS\r\n")
    conn.check(b"ms " + k + b" 1 MP\r\nx\r\n", b"NS\r\n")
    conn.check(b"ms " + k + b" 1 MR\r\nx\r\n", b"NS\r\n")
    conn.check(b"ms " + k + b" 1 ME\r\nb\r\n", b"HD\r\n")
    conn.check(b"ms " + k + b" 1 ME\r\nz\r\n", b"NS\r\n")
    conn.check(b"ms " + k + b" 1 MA\r\nc\r\n", b"HD\r\n")
    conn.check(b"ms " + k + b" 1 MP\r\na\r\n", b"HD\r\n")
    conn.check(b"mg " + k + b" v\r\n", b"VA 3\r\nabc\r\n")
    conn.check(b"ms " + k + b" 1 MR F7\r\nr\r\nmg " + k + b" v f\r\n", b"HD\r\nVA 1 f7\r\nr\r\n")
    conn.check(b"ms " + k + b" 1 MS\r\ns\r\nmg " + k + b" v f\r\n", b"HD\r\nVA 1 f0\r\ns\r\n")
    conn.check(b"ms " + k + b" 1 MX\r\nx\r\n", b"CLIENT_ERROR invalid mode for ms M token\r\n")
    conn.check(b"ms " + k + b" 1 Mss\r\nx\r\n", b"CLIENT_ERROR incorrect length for M token\r\n")
    # lowercase modes are refused
    conn.check(b"ms " + k + b" 1 Ms\r\nx\r\n", b"CLIENT_ERROR invalid mode for ms M token\r\n")


def test_ms_append_keeps_flags_and_ttl(conn, keyprefix):
    k = (keyprefix + "k").encode()
    conn.check(b"ms " + k + b" 2 F5 T100\r\nab\r\n", b"HD\r\n")
    conn.check(b"ms " + k + b" 2 MA F9 T0\r\ncd\r\n", b"HD\r\n")
    got = conn.call(b"mg " + k + b" v f t s\r\n")
    assert re.match(rb"VA 4 f5 t(100|99) s4\r\nabcd\r\n\Z", got), got


def test_ms_cas(conn, keyprefix):
    k = (keyprefix + "k").encode()
    conn.check(b"ms " + k + b" 1 C1\r\nx\r\n", b"NF\r\n")
    cas = cas_of(conn.call(b"ms " + k + b" 1 c\r\nx\r\n"))
    conn.check(b"ms " + k + b" 1 C%d c\r\ny\r\n" % (cas + 1), b"EX c0\r\n")
    conn.check(b"ms " + k + b" 1 C0\r\ny\r\n", b"EX\r\n")
    got = conn.call(b"ms " + k + b" 1 C%d c\r\ny\r\n" % cas)
    cas2 = cas_of(got)
    assert cas2 != cas
    # replace with C is a CAS; add ignores C
    conn.check(b"ms " + k + b" 1 MR C%d\r\nz\r\n" % cas, b"EX\r\n")
    conn.check(b"ms " + k + b" 1 ME C%d\r\nz\r\n" % cas2, b"NS\r\n")
    # append/prepend: C must match, C0 means no check
    conn.check(b"ms " + k + b" 1 MA C%d\r\nz\r\n" % cas, b"EX\r\n")
    conn.check(b"ms " + k + b" 1 MA C0\r\nz\r\n", b"HD\r\n")
    cas3 = cas_of(conn.call(b"mg " + k + b" c\r\n"))
    conn.check(b"ms " + k + b" 1 MP C%d\r\na\r\n" % cas3, b"HD\r\n")
    conn.check(b"mg " + k + b" v\r\n", b"VA 3\r\nayz\r\n")


def test_ms_echo_flags(conn, keyprefix):
    k = (keyprefix + "k").encode()
    got = conn.call(b"ms " + k + b" 1 k O99 c T0 F1 q s\r\nx\r\nmn\r\n")
    assert got == b"MN\r\n"
    got = conn.call(b"ms " + k + b" 1 k O99 c\r\nx\r\n")
    cas = cas_of(got)
    assert got == b"HD k%s O99 c%d\r\n" % (k, cas)
    conn.check(b"ms " + k + b" 1 c O1 k ME\r\nx\r\n", b"NS c0 O1 k%s\r\n" % k)
    conn.check(b"ms " + k + b" 1 q ME\r\nx\r\n", b"NS\r\n")


def test_ms_zero_length_and_binary_value(conn, keyprefix):
    k = (keyprefix + "k").encode()
    conn.check(b"ms " + k + b" 0\r\n\r\nmg " + k + b" v s\r\n", b"HD\r\nVA 0 s0\r\n\r\n")
    val = b"\x00\r\n\xffEND\r\n"
    conn.check(b"ms " + k + b" %d\r\n%s\r\nmg " % (len(val), val) + k + b" v\r\n",
               b"HD\r\nVA %d\r\n%s\r\n" % (len(val), val))


def test_ms_bad_data_chunk(conn, keyprefix):
    k = (keyprefix + "k").encode()
    # the 3 bytes after "abc" must be \r\n; the rest is read as commands
    conn.check(b"ms " + k + b" 3\r\nabcd\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    conn.check(b"ms " + k + b" 3 q\r\nabcd\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    conn.check(b"mg " + k + b" v\r\n", b"EN\r\n")


def test_ms_errors_swallow_data(conn, keyprefix):
    k = (keyprefix + "k").encode()
    # flag errors: the data block is discarded, not run as a command
    conn.check(b"ms " + k + b" 5 !\r\nmn mn\r\n", b"CLIENT_ERROR invalid flag\r\n")
    conn.check(b"ms " + k + b" 5 T1 T2\r\nmn mn\r\n", b"CLIENT_ERROR duplicate flag\r\n")
    conn.check(b"ms " + k + b" 5 Tx\r\nmn mn\r\n",
               b"CLIENT_ERROR bad token in command line format\r\n")
    conn.check(b"ms " + k + b" 5 O" + b"x" * 32 + b"\r\nmn mn\r\n",
               b"CLIENT_ERROR opaque token too long\r\n")
    # no datalen or a bad one: nothing to discard, the block is a command
    conn.check(b"ms " + k + b"\r\nmn\r\n", b"CLIENT_ERROR bad command line format\r\nMN\r\n")
    conn.check(b"ms " + k + b" -1\r\nmn\r\n", b"CLIENT_ERROR bad command line format\r\nMN\r\n")
    conn.check(b"ms " + k + b" abc\r\nmn\r\n", b"CLIENT_ERROR bad command line format\r\nMN\r\n")
    conn.check(b"mg " + k + b"\r\n", b"EN\r\n")


def test_ms_too_large(conn, keyprefix):
    k = (keyprefix + "big").encode()
    conn.check(b"ms " + k + b" 1\r\nx\r\n", b"HD\r\n")
    n = 1024 * 1024
    conn.check(b"ms " + k + b" %d\r\n" % n + b"B" * n + b"\r\n",
               b"SERVER_ERROR object too large for cache\r\n")
    # the failed store dropped the old value, whatever the mode
    conn.check(b"mg " + k + b" v\r\n", b"EN\r\n")
    conn.check(b"ms " + k + b" 1\r\nx\r\n", b"HD\r\n")
    conn.check(b"ms " + k + b" %d MA q\r\n" % n + b"B" * n + b"\r\n",
               b"SERVER_ERROR object too large for cache\r\n")
    conn.check(b"mg " + k + b" v\r\n", b"EN\r\n")


# ---------------------------------------------------------------------------
# md
# ---------------------------------------------------------------------------

def test_md(conn, keyprefix):
    k = (keyprefix + "d").encode()
    conn.check(b"md " + k + b"\r\n", b"NF\r\n")
    conn.check(b"md " + k + b" q\r\n", b"NF\r\n")
    conn.check(b"md " + k + b" k O5\r\n", b"NF k%s O5\r\n" % k)
    conn.check(b"ms " + k + b" 1\r\nx\r\nmd " + k + b"\r\nmg " + k + b"\r\n",
               b"HD\r\nHD\r\nEN\r\n")
    conn.check(b"ms " + k + b" 1\r\nx\r\nmd " + k + b" q\r\nmn\r\n", b"HD\r\nMN\r\n")
    conn.check(b"ms " + k + b" 1\r\nx\r\nmd " + k + b" k Oz T30\r\n", b"HD\r\nHD k%s Oz\r\n" % k)


def test_md_cas(conn, keyprefix):
    k = (keyprefix + "d").encode()
    cas = cas_of(conn.call(b"ms " + k + b" 1 c\r\nx\r\n"))
    conn.check(b"md " + k + b" C%d\r\n" % (cas + 1), b"EX\r\n")
    conn.check(b"md " + k + b" C0\r\n", b"EX\r\n")
    conn.check(b"md " + k + b" C%d q\r\n" % (cas + 1), b"EX\r\n")
    conn.check(b"md " + k + b" C%d\r\nmg " % cas + k + b"\r\n", b"HD\r\nEN\r\n")


def test_md_invalidate(conn, keyprefix):
    k = (keyprefix + "d").encode()
    cas = cas_of(conn.call(b"ms " + k + b" 3 T100 c\r\nold\r\n"))
    conn.check(b"md " + k + b" I T30 q\r\nmn\r\n", b"MN\r\n")
    got = conn.call(b"mg " + k + b" v c t\r\n")
    m = re.match(rb"VA 3 c(\d+) t(30|29) X W\r\nold\r\n\Z", got)
    assert m, got
    assert int(m.group(1)) != cas
    # I with a mismatched CAS changes nothing
    conn.check(b"md " + k + b" I C1\r\n", b"EX\r\n")
    conn.check(b"mg " + k + b"\r\n", b"HD Z X\r\n")
    # I without T keeps the TTL; the token is cleared again
    conn.check(b"md " + k + b" I\r\n", b"HD\r\n")
    got = conn.call(b"mg " + k + b" t\r\n")
    assert re.match(rb"HD t(30|29|28) X W\r\n\Z", got), got


def test_md_errors(conn, keyprefix):
    k = (keyprefix + "d").encode()
    conn.check(b"md " + k + b" !\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n")
    conn.check(b"md " + k + b" q q\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n")
    conn.check(b"md " + k + b" Cx\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n")
    conn.check(b"ms " + k + b" 1\r\nx\r\nmd " + k + b" O" + b"x" * 32 + b"\r\nmg " + k + b"\r\n",
               b"HD\r\nCLIENT_ERROR opaque token too long\r\nHD\r\n")


# ---------------------------------------------------------------------------
# ma
# ---------------------------------------------------------------------------

def test_ma_modes_and_delta(conn, keyprefix):
    k = (keyprefix + "n").encode()
    conn.check(b"ma " + k + b"\r\n", b"NF\r\n")
    conn.check(b"ms " + k + b" 2\r\n10\r\n", b"HD\r\n")
    conn.check(b"ma " + k + b" v\r\n", b"VA 2\r\n11\r\n")
    conn.check(b"ma " + k + b" MI D4 v\r\n", b"VA 2\r\n15\r\n")
    conn.check(b"ma " + k + b" M+ v\r\n", b"VA 2\r\n16\r\n")
    conn.check(b"ma " + k + b" MD D6 v\r\n", b"VA 2\r\n10\r\n")
    conn.check(b"ma " + k + b" M- D100 v\r\n", b"VA 1\r\n0\r\n")
    conn.check(b"ma " + k + b"\r\n", b"HD\r\n")
    conn.check(b"ma " + k + b" Mx\r\n", b"CLIENT_ERROR invalid mode for ma M token\r\n")
    conn.check(b"ma " + k + b" Dx\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n")
    conn.check(b"ms " + k + b" 20\r\n18446744073709551615\r\nma " + k + b" v\r\n",
               b"HD\r\nVA 1\r\n0\r\n")
    conn.check(b"ms " + k + b" 2\r\nab\r\nma " + k + b"\r\n",
               b"HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n")


def test_ma_vivify(conn, keyprefix):
    k = (keyprefix + "n").encode()
    got = conn.call(b"ma " + k + b" N0 J10 v t\r\n")
    assert got == b"VA 2 t-1\r\n10\r\n"
    # present: the delta applies, J is ignored
    conn.check(b"ma " + k + b" N0 J99 v\r\n", b"VA 2\r\n11\r\n")
    k2 = (keyprefix + "n2").encode()
    got = conn.call(b"ma " + k2 + b" N50 MD v t\r\n")
    assert re.match(rb"VA 1 t(50|49)\r\n0\r\n\Z", got), got
    # items created by ma have client flags 0
    conn.check(b"mg " + k2 + b" f v\r\n", b"VA 1 f0\r\n0\r\n")


def test_ma_ttl_cas_and_echo(conn, keyprefix):
    k = (keyprefix + "n").encode()
    cas = cas_of(conn.call(b"ms " + k + b" 1 T100 c\r\n5\r\n"))
    got = conn.call(b"ma " + k + b" c t v k O1\r\n")
    m = re.match(rb"VA 1 c(\d+) t(100|99) k%s O1\r\n6\r\n\Z" % k, got)
    assert m, got
    cas2 = int(m.group(1))
    assert cas2 != cas
    # t before T shows the TTL before it
    got = conn.call(b"ma " + k + b" t T30\r\n")
    assert re.match(rb"HD t(100|99|98)\r\n\Z", got), got
    got = conn.call(b"ma " + k + b" T40 t\r\n")
    assert re.match(rb"HD t(40|39)\r\n\Z", got), got
    conn.check(b"ma " + k + b" C%d\r\n" % cas, b"EX\r\n")
    conn.check(b"ma " + k + b" C%d q k\r\n" % cas, b"EX k%s\r\n" % k)
    cas3 = cas_of(conn.call(b"mg " + k + b" c\r\n"))
    conn.check(b"ma " + k + b" C%d v\r\n" % cas3, b"VA 1\r\n9\r\n")
    # C0 means no check on ma
    conn.check(b"ma " + k + b" C0 v\r\n", b"VA 2\r\n10\r\n")
    conn.check(b"ma " + (keyprefix + "none").encode() + b" k O2\r\n",
               b"NF k%s O2\r\n" % (keyprefix + "none").encode())


def test_ma_quiet(conn, keyprefix):
    k = (keyprefix + "n").encode()
    # q hides success on an existing item, not on one N created
    conn.check(b"ma " + k + b" q\r\nma " + k + b" N0 q v\r\nma " + k + b" q v\r\nmn\r\n",
               b"NF\r\nVA 1\r\n0\r\nMN\r\n")
    conn.check(b"mg " + k + b" v\r\n", b"VA 1\r\n1\r\n")


# ---------------------------------------------------------------------------
# mn, me, pipelines, errors
# ---------------------------------------------------------------------------

def test_mn(conn):
    conn.check(b"mn\r\n", b"MN\r\n")
    conn.check(b"mn extra tokens here\r\n", b"MN\r\n")


def test_quiet_batch(conn, keyprefix):
    keys = [(keyprefix + "%d" % i).encode() for i in range(50)]
    batch = b"".join(b"ms %s 2 q T0\r\nv%d\r\n" % (k, i % 10) for i, k in enumerate(keys))
    conn.check(batch + b"mn\r\n", b"MN\r\n")
    # hits come back, misses are hidden, in request order
    req = b"".join(b"mg %s v q k\r\n" % k for k in keys[:10])
    req += b"mg " + (keyprefix + "missing").encode() + b" v q k\r\n"
    want = b"".join(b"VA 2 k%s\r\nv%d\r\n" % (k, i) for i, k in enumerate(keys[:10]))
    conn.check(req + b"mn\r\n", want + b"MN\r\n")
    # deletes: only the misses show
    dels = b"".join(b"md %s q\r\n" % k for k in keys[:5])
    dels += b"md " + (keyprefix + "missing").encode() + b" q O7\r\n"
    conn.check(dels + b"mn\r\n", b"NF O7\r\nMN\r\n")
    # errors always show
    conn.check(b"mg " + keys[9] + b" q !\r\nmn\r\n", b"CLIENT_ERROR invalid flag\r\nMN\r\n")


def test_me(conn, keyprefix):
    k = (keyprefix + "e").encode()
    conn.check(b"me " + k + b"\r\n", b"EN\r\n")
    cas = cas_of(conn.call(b"ms " + k + b" 3 T100 c\r\nabc\r\n"))
    got = conn.call(b"me " + k + b"\r\n")
    m = re.match(rb"ME %s exp=(-?\d+) la=(\d+) cas=%d fetch=no cls=(\d+) size=(\d+)\r\n\Z"
                 % (k, cas), got)
    assert m, got
    assert int(m.group(1)) in (-100, -99)
    assert int(m.group(2)) in (0, 1)
    # me does not bump: still unfetched
    conn.check(b"mg " + k + b" h\r\n", b"HD h0\r\n")
    got = conn.call(b"me " + k + b"\r\n")
    assert b" fetch=yes " in got
    n = (keyprefix + "noexp").encode()
    conn.check(b"ms " + n + b" 1\r\nx\r\n", b"HD\r\n")
    assert b" exp=-1 " in conn.call(b"me " + n + b"\r\n")
    # base64: only "b" as the third token decodes; binary keys print encoded
    raw = (keyprefix + "\x01").encode()
    conn.check(b"ms " + b64(raw) + b" 1 b\r\nx\r\n", b"HD\r\n")
    assert conn.call(b"me " + b64(raw) + b" b\r\n").startswith(b"ME " + b64(raw) + b" exp=-1 ")
    assert conn.call(b"me " + raw + b"\r\n").startswith(b"ME " + b64(raw) + b" exp=-1 ")
    conn.check(b"me " + b64(raw) + b" x\r\n", b"EN\r\n")
    conn.check(b"me\r\n", b"CLIENT_ERROR bad command line format\r\n")
    conn.check(b"me " + b"k" * 251 + b"\r\n", b"CLIENT_ERROR bad command line format\r\n")


@pytest.mark.memstash_only
def test_me_reports_memstash_item_size(conn, keyprefix):
    k = (keyprefix + "e").encode()
    conn.check(b"ms " + k + b" 3\r\nabc\r\n", b"HD\r\n")
    got = conn.call(b"me " + k + b"\r\n")
    size = int(re.search(rb" size=(\d+)", got).group(1))
    # 18-byte header, 1 byte of value length, no flags, no stored "\r\n"
    # (docs/storage.md)
    assert size == 18 + 1 + len(k) + 3


def test_errors(conn, keyprefix):
    k = (keyprefix + "x").encode()
    for cmd in (b"mg", b"ms", b"md", b"ma"):
        conn.check(cmd + b"\r\n", b"ERROR\r\n")
    conn.check(b"mg " + b"k" * 251 + b" v\r\n", b"CLIENT_ERROR bad command line format\r\n")
    conn.check(b"mg " + k + b" !\r\n", b"CLIENT_ERROR invalid flag\r\n")
    conn.check(b"mg " + k + b" v v\r\n", b"CLIENT_ERROR duplicate flag\r\n")
    conn.check(b"mg " + k + b" E1\r\n", b"CLIENT_ERROR invalid flag\r\n")
    conn.check(b"mg " + k + b" Nx\r\n", b"CLIENT_ERROR bad token in command line format\r\n")
    conn.check(b"mg " + k + b" " + b" ".join([b"v"] * 18) + b"\r\n",
               b"CLIENT_ERROR options flags are too long\r\n")
    conn.check(b"ma " + k + b" Jx\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n")
    conn.check(b"mo " + k + b"\r\n", b"ERROR\r\n")
    # meta and classic commands mix on one connection
    conn.check(b"set " + k + b" 5 0 1\r\nx\r\nmg " + k + b" v f\r\nget " + k + b"\r\n",
               b"STORED\r\nVA 1 f5\r\nx\r\nVALUE " + k + b" 5 1\r\nx\r\nEND\r\n")


def test_opaque_too_long_after_running(conn, keyprefix):
    """mg and ma run before 1.6.18 notices an over-long O: flags before the O
    apply, flags after it do not."""
    k = (keyprefix + "o").encode()
    big = b"O" + b"x" * 32
    err = b"CLIENT_ERROR opaque token too long\r\n"
    conn.check(b"ms " + k + b" 1 T100\r\nx\r\n", b"HD\r\n")
    conn.check(b"mg " + k + b" " + big + b" T30\r\n", err)
    assert flag_num(conn.call(b"mg " + k + b" t\r\n"), b"t") in (99, 100, 98)
    conn.check(b"mg " + k + b" T30 " + big + b"\r\n", err)
    assert flag_num(conn.call(b"mg " + k + b" t\r\n"), b"t") in (29, 30)
    v = (keyprefix + "v").encode()
    conn.check(b"mg " + v + b" N50 " + big + b"\r\n", err)
    got = conn.call(b"mg " + v + b" t h\r\n")  # created, TTL set, no token, no bump
    assert re.match(rb"HD t(50|49) h0\r\n\Z", got), got
    n = (keyprefix + "n").encode()
    conn.check(b"ma " + n + b" N0 " + big + b"\r\n", err)
    conn.check(b"ma " + n + b" " + big + b" v\r\n", err)
    conn.check(b"mg " + n + b" v\r\n", b"VA 1\r\n1\r\n")
    conn.check(b"ma " + (keyprefix + "none").encode() + b" " + big + b"\r\n", err)


# ---------------------------------------------------------------------------
# counters
# ---------------------------------------------------------------------------

def test_counters(server):
    with server.client() as c:
        before = c.stats()
        c.check(b"mg a v\r\nmg a T10\r\n", b"EN\r\nEN\r\n")
        c.check(b"ms a 1\r\nx\r\nmg a v\r\nmg a T10\r\nmg b N10\r\n",
                b"HD\r\nVA 1\r\nx\r\nHD\r\nHD W\r\n")
        c.check(b"ms a 1 C99999\r\ny\r\nms z 1 C1\r\ny\r\nms a 1 MA\r\nz\r\nms q 1 MA\r\nz\r\n",
                b"EX\r\nNF\r\nHD\r\nNS\r\n")
        cas = cas_of(c.call(b"mg a c\r\n"))
        c.check(b"ms a 1 C%d I\r\nw\r\n" % (cas - 1), b"HD\r\n")
        c.check(b"md a I\r\nmd a C99999\r\nmd a\r\nmd a\r\n", b"HD\r\nEX\r\nHD\r\nNF\r\n")
        c.check(b"ma n\r\nma n N0\r\nma n\r\nma n MD\r\nma n C99999\r\nma m MD\r\n",
                b"NF\r\nHD\r\nHD\r\nHD\r\nEX\r\nNF\r\n")
        got = c.call(b"me n\r\nme nothing\r\nmn\r\n")
        assert re.match(rb"ME n exp=-1 la=0 cas=\d+ fetch=no cls=\d+ size=\d+\r\nEN\r\nMN\r\n\Z",
                        got), got
        after = c.stats()
    d = stat_delta(before, after, COUNTERS)
    assert d == {
        "cmd_get": 5,        # 2 misses, mg a v, mg a c, created b
        "get_hits": 3,
        "get_misses": 2,     # a miss with T counts as a get miss
        "cmd_set": 6,
        "cmd_touch": 1,
        "touch_hits": 1,
        "touch_misses": 0,
        "delete_hits": 1,
        "delete_misses": 2,  # EX counts as a miss
        "incr_hits": 1,
        "incr_misses": 1,
        "decr_hits": 1,
        "decr_misses": 1,
        "cas_hits": 1,       # the invalidating store
        "cas_misses": 1,
        "cas_badval": 1,
        "cmd_meta": 2,
    }, d
