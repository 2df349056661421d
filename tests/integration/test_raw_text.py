"""Exact byte-level behaviour of the text protocol over a raw socket.

Expectations follow the Debian memcached 1.6.18 binary (memstash follows
1.6.18 where it and newer upstream differ).  Places where 1.6.18 differs from
the reference text (memcached-surface.md) or from newer memcached are marked
"1.6.18:".

Most tests share one server per module and namespace their keys with the
`keyprefix` fixture; tests that change global state (flush delay, stats reset,
cache_memlimit, exact counters) start their own server.

`conn.check(data, expected)` sends `data` + "version\\r\\n" and asserts that the
bytes before the VERSION line are exactly `expected`: every check therefore
also proves the connection is still in sync after the command.
"""

import re
import time

import pytest

from conftest import IS_MEMCACHED, poll_until

K251 = b"k" * 251
K250 = b"k" * 250


def b(s):
    return s.encode() if isinstance(s, str) else s


# ---------------------------------------------------------------------------
# Unknown commands, token counts, framing
# ---------------------------------------------------------------------------

def test_unknown_command(conn):
    conn.check(b"bogus\r\n", b"ERROR\r\n")
    conn.check(b"bogus with args\r\n", b"ERROR\r\n")
    # commands are case-sensitive
    conn.check(b"GET foo\r\n", b"ERROR\r\n")
    conn.check(b"Set foo 0 0 1\r\n", b"ERROR\r\n")
    # empty line
    conn.check(b"\r\n", b"ERROR\r\n")


@pytest.mark.parametrize("line", [
    b"get", b"gets", b"gat", b"gats",
    b"set k 0 0", b"set k 0", b"set k", b"set",
    b"add k 0 0", b"replace k 0 0", b"append k 0 0", b"prepend k 0 0",
    b"cas k 0 0 1", b"cas k 0 0", b"cas k 0 0 1 2 3 4",
    b"incr", b"incr k", b"incr k 1 2 3", b"decr", b"decr k",
    b"touch", b"touch k", b"touch k 1 2 3", b"touch k 10 noreply x",
    b"delete",
    b"verbosity", b"flush_all 0 0 0",
    b"set k 0 0 1 noreply extra",
    b"cache_memlimit",
])
def test_wrong_token_count_is_error(conn, line):
    # 1.6.18: a known command with the wrong number of tokens answers the
    # generic ERROR (newer memcached answers CLIENT_ERROR).  No data block is
    # read, so a following line is parsed as a command.
    conn.check(line + b"\r\n", b"ERROR\r\n")


def test_bare_newline_terminates_command_line(conn, keyprefix):
    k = b(keyprefix + "nl")
    conn.check(b"set " + k + b" 0 0 2\nab\r\nget " + k + b"\n",
               b"STORED\r\nVALUE " + k + b" 0 2\r\nab\r\nEND\r\n")


def test_spaces_and_tabs(conn, keyprefix):
    k = b(keyprefix + "sp")
    conn.check(b"set " + k + b" 0 0 1\r\nx\r\n", b"STORED\r\n")
    # leading spaces and repeated separators are tolerated; duplicates are
    # returned twice
    conn.check(b"   get  " + k + b"   " + k + b"  \r\n",
               b"VALUE " + k + b" 0 1\r\nx\r\nVALUE " + k + b" 0 1\r\nx\r\nEND\r\n")
    # a TAB is not a separator: it is part of the key
    kt = k + b"\tz"
    conn.check(b"set " + kt + b" 0 0 1\r\ny\r\nget " + kt + b"\r\n",
               b"STORED\r\nVALUE " + kt + b" 0 1\r\ny\r\nEND\r\n")


# ---------------------------------------------------------------------------
# Storage commands
# ---------------------------------------------------------------------------

def test_set_get_basic(conn, keyprefix):
    k = b(keyprefix + "a")
    conn.check(b"set " + k + b" 5 0 3\r\nabc\r\n", b"STORED\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 5 3\r\nabc\r\nEND\r\n")
    # overwrite, flags change
    conn.check(b"set " + k + b" 4294967295 0 2\r\nzz\r\n", b"STORED\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 4294967295 2\r\nzz\r\nEND\r\n")
    # zero-length value
    conn.check(b"set " + k + b" 0 0 0\r\n\r\n", b"STORED\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 0\r\n\r\nEND\r\n")
    # miss
    conn.check(b"get " + k + b"nothere\r\n", b"END\r\n")


def test_binary_safe_value(conn, keyprefix):
    k = b(keyprefix + "bin")
    val = bytes(range(256)) + b"\r\nEND\r\n\x00VERSION x\r\n" + bytes(range(255, -1, -1))
    conn.check(b"set " + k + b" 0 0 %d\r\n" % len(val) + val + b"\r\n", b"STORED\r\n")
    conn.check(b"get " + k + b"\r\n",
               b"VALUE " + k + b" 0 %d\r\n" % len(val) + val + b"\r\nEND\r\n")


def test_flags_out_of_range_truncated(conn, keyprefix):
    # 1.6.18 parses flags with strtoul and silently truncates to 32 bits
    # (surface.md 1.1): 4294967296 is STORED with flags 0.
    k = b(keyprefix + "f")
    conn.check(b"set " + k + b" 4294967296 0 1\r\nx\r\nget " + k + b"\r\n",
               b"STORED\r\nVALUE " + k + b" 0 1\r\nx\r\nEND\r\n")


def test_key_of_250_bytes_ok(conn):
    conn.check(b"set " + K250 + b" 0 0 1\r\nx\r\n", b"STORED\r\n")
    conn.check(b"get " + K250 + b"\r\n", b"VALUE " + K250 + b" 0 1\r\nx\r\nEND\r\n")
    conn.check(b"delete " + K250 + b"\r\n", b"DELETED\r\n")


@pytest.mark.parametrize("line,extra", [
    (b"get " + K251, b""),
    (b"gets " + K251, b""),
    (b"gat 0 " + K251, b""),
    (b"gats 0 " + K251, b""),
    (b"delete " + K251, b""),
    (b"incr " + K251 + b" 1", b""),
    (b"decr " + K251 + b" 1", b""),
    (b"touch " + K251 + b" 10", b""),
    # storage: 1.6.18 does not swallow the data block, the data line "x" is
    # then parsed as a command -> second ERROR
    (b"set " + K251 + b" 0 0 1", b"ERROR\r\n"),
    (b"add " + K251 + b" 0 0 1", b"ERROR\r\n"),
    (b"replace " + K251 + b" 0 0 1", b"ERROR\r\n"),
    (b"append " + K251 + b" 0 0 1", b"ERROR\r\n"),
    (b"prepend " + K251 + b" 0 0 1", b"ERROR\r\n"),
    (b"cas " + K251 + b" 0 0 1 1", b"ERROR\r\n"),
])
def test_key_too_long(conn, line, extra):
    data = line + b"\r\n" + (b"x\r\n" if extra else b"")
    conn.check(data, b"CLIENT_ERROR bad command line format\r\n" + extra)


def test_key_too_long_in_multiget_collapses_response(conn, keyprefix):
    k = b(keyprefix + "mg")
    conn.check(b"set " + k + b" 0 0 1\r\nx\r\n", b"STORED\r\n")
    conn.check(b"get " + k + b" " + K251 + b" " + k + b"\r\n",
               b"CLIENT_ERROR bad command line format\r\n")


@pytest.mark.parametrize("line", [
    b"set K abc 0 1",      # non-numeric flags
    b"set K 0 abc 1",      # non-numeric exptime
    b"set K -1 0 1",       # negative flags
    b"set K 1x 0 1",       # trailing garbage in a number
    b"add K 0 zz 1",
    b"cas K 0 0 1 abc",    # non-numeric cas unique
])
def test_bad_numbers_in_storage_header(conn, keyprefix, line):
    # 1.6.18: error, no swallow -> the data line becomes an (unknown) command
    line = line.replace(b"K", b(keyprefix + "n"))
    conn.check(line + b"\r\nx\r\n", b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    conn.check(b"get " + b(keyprefix + "n") + b"\r\n", b"END\r\n")


@pytest.mark.parametrize("length", [b"-1", b"abc", b"2147483647", b"-2147483648"])
def test_bad_length(conn, keyprefix, length):
    # negative / unparsable / absurd length: error, nothing swallowed.
    # (Not tested: 1.6.18 truncates lengths >= 2^32 to int, so
    # "set k 0 0 4294967296" allocates a 0-byte item and reads 2 bytes of
    # the following line as its data - a bug, not a contract.)
    k = b(keyprefix + "len")
    conn.check(b"set " + k + b" 0 0 " + length + b"\r\n",
               b"CLIENT_ERROR bad command line format\r\n")
    conn.check(b"get " + k + b"\r\n", b"END\r\n")


def test_bad_data_chunk(conn, keyprefix):
    k = b(keyprefix + "bd")
    conn.check(b"set " + k + b" 0 0 1\r\nq\r\n", b"STORED\r\n")
    # data longer than announced: the server reads 3+2 bytes ("abcd\r"),
    # rejects them, and the leftover "\n" is an empty command -> ERROR
    conn.check(b"set " + k + b" 0 0 3\r\nabcd\r\n",
               b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    # the old value is untouched by a bad chunk
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 1\r\nq\r\nEND\r\n")
    # bare \n after the data: the server consumes exactly 3+2 bytes
    # ("abc\nX") and then parses the next line normally
    conn.check(b"set " + k + b" 0 0 3\r\nabc\nX", b"CLIENT_ERROR bad data chunk\r\n")
    # noreply hides the chunk error, but not the ERROR of the leftover line
    conn.check(b"set " + k + b" 0 0 3 noreply\r\nabcd\r\n", b"ERROR\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 1\r\nq\r\nEND\r\n")


def test_add_replace(conn, keyprefix):
    k = b(keyprefix + "ar")
    conn.check(b"replace " + k + b" 0 0 1\r\na\r\n", b"NOT_STORED\r\n")
    conn.check(b"add " + k + b" 1 0 1\r\nb\r\n", b"STORED\r\n")
    conn.check(b"add " + k + b" 2 0 1\r\nc\r\n", b"NOT_STORED\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 1 1\r\nb\r\nEND\r\n")
    conn.check(b"replace " + k + b" 3 0 2\r\ndd\r\n", b"STORED\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 3 2\r\ndd\r\nEND\r\n")


def test_append_prepend_keep_flags_and_ttl(conn, keyprefix):
    k = b(keyprefix + "ap")
    conn.check(b"append " + k + b" 0 0 1\r\nx\r\n", b"NOT_STORED\r\n")
    conn.check(b"prepend " + k + b" 0 0 1\r\nx\r\n", b"NOT_STORED\r\n")
    conn.check(b"set " + k + b" 42 0 3\r\nmid\r\n", b"STORED\r\n")
    # flags and exptime given to append/prepend are ignored (a negative
    # exptime would otherwise expire the item at once)
    conn.check(b"append " + k + b" 7 -1 4\r\n_end\r\n", b"STORED\r\n")
    conn.check(b"prepend " + k + b" 9 -1 6\r\nstart_\r\n", b"STORED\r\n")
    conn.check(b"get " + k + b"\r\n",
               b"VALUE " + k + b" 42 13\r\nstart_mid_end\r\nEND\r\n")


def test_append_too_large(conn, keyprefix):
    k = b(keyprefix + "apbig")
    conn.check(b"set " + k + b" 0 0 1\r\nx\r\n", b"STORED\r\n")
    # the appended chunk by itself exceeds the item size limit: swallowed,
    # and (unlike set) the existing item is kept
    big = b"y" * (1024 * 1024)
    conn.check(b"append " + k + b" 0 0 %d\r\n" % len(big) + big + b"\r\n",
               b"SERVER_ERROR object too large for cache\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 1\r\nx\r\nEND\r\n")
    # each part fits, the combination does not -> NOT_STORED
    part = b"y" * 1048000
    conn.check(b"append " + k + b" 0 0 %d\r\n" % len(part) + part + b"\r\n", b"STORED\r\n")
    conn.check(b"append " + k + b" 0 0 1000\r\n" + b"z" * 1000 + b"\r\n", b"NOT_STORED\r\n")
    conn.check(b"delete " + k + b"\r\n", b"DELETED\r\n")


def gets_cas(conn, key):
    conn.send(b"gets " + key + b"\r\n")
    hdr = conn.read_line()
    m = re.match(rb"VALUE (\S+) (\d+) (\d+) (\d+)\r\n\Z", hdr)
    assert m, hdr
    data = conn.read_exact(int(m.group(3)) + 2)
    assert conn.read_line() == b"END\r\n"
    return int(m.group(4)), data[:-2], int(m.group(2))


def test_cas_flow(conn, keyprefix):
    k = b(keyprefix + "cas")
    conn.check(b"cas " + k + b" 0 0 1 1\r\nx\r\n", b"NOT_FOUND\r\n")
    conn.check(b"set " + k + b" 3 0 2\r\nv1\r\n", b"STORED\r\n")
    cas1, val, flags = gets_cas(conn, k)
    assert (val, flags) == (b"v1", 3)
    assert cas1 > 0
    # mismatch (incl. 0)
    conn.check(b"cas " + k + b" 0 0 1 %d\r\nx\r\n" % (cas1 + 1000), b"EXISTS\r\n")
    conn.check(b"cas " + k + b" 0 0 1 0\r\nx\r\n", b"EXISTS\r\n")
    conn.check(b"cas " + k + b" 8 0 2 %d\r\nv2\r\n" % cas1, b"STORED\r\n")
    cas2, val, flags = gets_cas(conn, k)
    assert (val, flags) == (b"v2", 8)
    assert cas2 != cas1
    # the old unique is now stale
    conn.check(b"cas " + k + b" 0 0 1 %d\r\nx\r\n" % cas1, b"EXISTS\r\n")
    # every modification changes the CAS
    conn.check(b"append " + k + b" 0 0 1\r\na\r\n", b"STORED\r\n")
    cas3, val, _ = gets_cas(conn, k)
    assert val == b"v2a" and cas3 not in (cas1, cas2)
    conn.check(b"touch " + k + b" 0\r\n", b"TOUCHED\r\n")
    # noreply cas
    conn.check(b"cas " + k + b" 0 0 1 %d noreply\r\nn\r\n" % cas3, b"")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 1\r\nn\r\nEND\r\n")
    conn.check(b"delete " + k + b"\r\n", b"DELETED\r\n")
    conn.check(b"cas " + k + b" 0 0 1 %d\r\nx\r\n" % cas3, b"NOT_FOUND\r\n")


def test_gets_multiple_keys(conn, keyprefix):
    k1, k2 = b(keyprefix + "g1"), b(keyprefix + "g2")
    conn.check(b"set " + k1 + b" 1 0 1\r\na\r\nset " + k2 + b" 2 0 2\r\nbb\r\n",
               b"STORED\r\nSTORED\r\n")
    got = conn.call(b"gets " + k1 + b" nothere " + k2 + b"\r\n")
    m = re.match(rb"VALUE " + k1 + rb" 1 1 (\d+)\r\na\r\nVALUE " + k2
                 + rb" 2 2 (\d+)\r\nbb\r\nEND\r\n\Z", got)
    assert m, got
    assert m.group(1) != m.group(2)


def test_object_too_large_swallowed_and_old_value_deleted(conn, keyprefix):
    k = b(keyprefix + "big")
    conn.check(b"set " + k + b" 0 0 1\r\nq\r\n", b"STORED\r\n")
    big = b"x" * (1024 * 1024)
    conn.check(b"set " + k + b" 0 0 %d\r\n" % len(big) + big + b"\r\n",
               b"SERVER_ERROR object too large for cache\r\n")
    # the previous value was removed to avoid serving stale data
    conn.check(b"get " + k + b"\r\n", b"END\r\n")
    # swallowing consumes exactly <bytes>+2 bytes, whatever they are
    conn.check(b"set " + k + b" 0 0 %d\r\n" % len(big) + big + b"XY",
               b"SERVER_ERROR object too large for cache\r\n")
    # noreply also hides the SERVER_ERROR
    conn.check(b"set " + k + b" 0 0 1\r\nq\r\n", b"STORED\r\n")
    conn.check(b"set " + k + b" 0 0 %d noreply\r\n" % len(big) + big + b"\r\n", b"")
    conn.check(b"get " + k + b"\r\n", b"END\r\n")


def test_largest_value_at_default_item_size(conn):
    # 1 MiB item incl. 48 header + 8 cas + key+1 + 2 (verified on 1.6.18)
    key = b"abc"
    n = 1048576 - 48 - 8 - (len(key) + 1) - 2
    val = bytes((i * 7) & 0xff for i in range(n))
    conn.check(b"set abc 0 0 %d\r\n" % n + val + b"\r\n", b"STORED\r\n")
    conn.send(b"get abc\r\n")
    assert conn.read_line() == b"VALUE abc 0 %d\r\n" % n
    assert conn.read_exact(n + 2, timeout=20) == val + b"\r\n"
    assert conn.read_line() == b"END\r\n"
    conn.check(b"set abc 0 0 %d\r\n" % (n + 1) + val + b"x\r\n",
               b"SERVER_ERROR object too large for cache\r\n")
    conn.check(b"get abc\r\n", b"END\r\n")


# ---------------------------------------------------------------------------
# delete / touch / gat
# ---------------------------------------------------------------------------

def test_delete(conn, keyprefix):
    k = b(keyprefix + "d")
    conn.check(b"delete " + k + b"\r\n", b"NOT_FOUND\r\n")
    conn.check(b"set " + k + b" 0 0 1\r\nx\r\n", b"STORED\r\n")
    conn.check(b"delete " + k + b"\r\n", b"DELETED\r\n")
    conn.check(b"get " + k + b"\r\n", b"END\r\n")
    # legacy "delete <key> 0" is accepted (1.6.18)
    conn.check(b"set " + k + b" 0 0 1\r\nx\r\ndelete " + k + b" 0\r\n", b"STORED\r\nDELETED\r\n")
    conn.check(b"set " + k + b" 0 0 1\r\nx\r\ndelete " + k + b" 0 noreply\r\nget " + k + b"\r\n",
               b"STORED\r\nEND\r\n")
    # any other extra argument: usage error (two spaces after the period)
    usage = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
    conn.check(b"delete " + k + b" 5\r\n", usage)
    conn.check(b"delete " + k + b" a b\r\n", usage)


def test_touch(conn, keyprefix):
    k = b(keyprefix + "t")
    conn.check(b"touch " + k + b" 10\r\n", b"NOT_FOUND\r\n")
    conn.check(b"set " + k + b" 0 0 1\r\nx\r\n", b"STORED\r\n")
    conn.check(b"touch " + k + b" 10\r\n", b"TOUCHED\r\n")
    conn.check(b"touch " + k + b" abc\r\n", b"CLIENT_ERROR invalid exptime argument\r\n")
    conn.check(b"touch " + k + b" 100 noreply\r\n", b"")
    # negative exptime expires the item at once
    conn.check(b"touch " + k + b" -1\r\nget " + k + b"\r\n", b"TOUCHED\r\nEND\r\n")


def test_gat_gats(conn, keyprefix):
    k1, k2 = b(keyprefix + "1"), b(keyprefix + "2")
    conn.check(b"set " + k1 + b" 3 0 1\r\na\r\nset " + k2 + b" 4 0 2\r\nbb\r\n",
               b"STORED\r\nSTORED\r\n")
    conn.check(b"gat 100 " + k1 + b" missing " + k2 + b"\r\n",
               b"VALUE " + k1 + b" 3 1\r\na\r\nVALUE " + k2 + b" 4 2\r\nbb\r\nEND\r\n")
    got = conn.call(b"gats 100 " + k1 + b"\r\n")
    assert re.match(rb"VALUE " + k1 + rb" 3 1 \d+\r\na\r\nEND\r\n\Z", got), got
    cas, _, _ = gets_cas(conn, k1)
    assert got == b"VALUE " + k1 + b" 3 1 %d\r\na\r\nEND\r\n" % cas
    conn.check(b"gat 10 missing\r\n", b"END\r\n")
    # 1.6.18: gat with an exptime but no key -> END (newer: CLIENT_ERROR)
    conn.check(b"gat 10\r\n", b"END\r\n")
    conn.check(b"gat abc " + k1 + b"\r\n", b"CLIENT_ERROR invalid exptime argument\r\n")
    conn.check(b"gats abc " + k1 + b"\r\n", b"CLIENT_ERROR invalid exptime argument\r\n")
    # a negative TTL returns the value and expires the item
    conn.check(b"gat -1 " + k2 + b"\r\nget " + k2 + b"\r\n",
               b"VALUE " + k2 + b" 4 2\r\nbb\r\nEND\r\nEND\r\n")


# ---------------------------------------------------------------------------
# incr / decr
# ---------------------------------------------------------------------------

def test_incr_decr_basic(conn, keyprefix):
    k = b(keyprefix + "n")
    conn.check(b"incr " + k + b" 1\r\n", b"NOT_FOUND\r\n")
    conn.check(b"decr " + k + b" 1\r\n", b"NOT_FOUND\r\n")
    conn.check(b"set " + k + b" 5 0 2\r\n10\r\n", b"STORED\r\n")
    conn.check(b"incr " + k + b" 5\r\n", b"15\r\n")
    conn.check(b"decr " + k + b" 3\r\n", b"12\r\n")
    conn.check(b"incr " + k + b" 0\r\n", b"12\r\n")
    # decr floors at 0
    conn.check(b"decr " + k + b" 100\r\n", b"0\r\n")
    # flags are preserved
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 5 2\r\n0 \r\nEND\r\n")
    # growing past the old length allocates a longer value
    conn.check(b"incr " + k + b" 99999999999\r\n", b"99999999999\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 5 11\r\n99999999999\r\nEND\r\n")
    # CAS changes on incr
    c1, _, _ = gets_cas(conn, k)
    conn.check(b"incr " + k + b" 1\r\n", b"100000000000\r\n")
    c2, _, _ = gets_cas(conn, k)
    assert c1 != c2


def test_incr_wraps_and_padding(conn, keyprefix):
    k = b(keyprefix + "w")
    conn.check(b"set " + k + b" 0 0 20\r\n18446744073709551615\r\n", b"STORED\r\n")
    conn.check(b"incr " + k + b" 1\r\n", b"0\r\n")
    # rewritten in place, right-padded with spaces
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 20\r\n0" + b" " * 19 + b"\r\nEND\r\n")
    conn.check(b"incr " + k + b" 18446744073709551615\r\n", b"18446744073709551615\r\n")
    conn.check(b"incr " + k + b" 2\r\n", b"1\r\n")
    # 100 decr 1 -> "99 " (length stays 3)
    conn.check(b"set " + k + b" 0 0 3\r\n100\r\n", b"STORED\r\n")
    conn.check(b"decr " + k + b" 1\r\n", b"99\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 3\r\n99 \r\nEND\r\n")
    # ... and the padded value still counts as a number
    conn.check(b"incr " + k + b" 1\r\n", b"100\r\n")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 3\r\n100\r\nEND\r\n")
    # 99 incr 1 needs one more byte
    conn.check(b"set " + k + b" 0 0 2\r\n99\r\nincr " + k + b" 1\r\nget " + k + b"\r\n",
               b"STORED\r\n100\r\nVALUE " + k + b" 0 3\r\n100\r\nEND\r\n")


@pytest.mark.parametrize("value", [b"ab", b"", b"-12", b"999999999999999999999", b"1.5"])
def test_incr_non_numeric_value(conn, keyprefix, value):
    k = b(keyprefix + "nn")
    conn.check(b"set " + k + b" 0 0 %d\r\n" % len(value) + value + b"\r\n", b"STORED\r\n")
    err = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    conn.check(b"incr " + k + b" 1\r\n", err)
    conn.check(b"decr " + k + b" 1\r\n", err)


def test_incr_lenient_value_parsing(conn, keyprefix):
    k = b(keyprefix + "lv")
    # leading spaces allowed; text after a space ignored
    conn.check(b"set " + k + b" 0 0 3\r\n 12\r\nincr " + k + b" 1\r\n", b"STORED\r\n13\r\n")
    conn.check(b"set " + k + b" 0 0 3\r\n1 2\r\nincr " + k + b" 1\r\n", b"STORED\r\n2\r\n")


@pytest.mark.parametrize("delta", [b"-1", b"abc", b"18446744073709551616", b"1x"])
def test_incr_invalid_delta(conn, keyprefix, delta):
    k = b(keyprefix + "dl")
    conn.check(b"set " + k + b" 0 0 1\r\n5\r\n", b"STORED\r\n")
    err = b"CLIENT_ERROR invalid numeric delta argument\r\n"
    conn.check(b"incr " + k + b" " + delta + b"\r\n", err)
    conn.check(b"decr " + k + b" " + delta + b"\r\n", err)
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 1\r\n5\r\nEND\r\n")


# ---------------------------------------------------------------------------
# noreply
# ---------------------------------------------------------------------------

def test_noreply_suppresses_replies(conn, keyprefix):
    k = b(keyprefix + "nr")
    conn.check(
        b"set " + k + b" 0 0 1 noreply\r\n1\r\n"
        b"add " + k + b" 0 0 1 noreply\r\n2\r\n"           # NOT_STORED hidden
        b"replace " + k + b" 0 0 1 noreply\r\n3\r\n"
        b"append " + k + b" 0 0 1 noreply\r\n4\r\n"
        b"prepend " + k + b" 0 0 1 noreply\r\n5\r\n"
        b"incr " + k + b" 10 noreply\r\n"                 # 534 -> 544
        b"decr " + k + b" 4 noreply\r\n"                  # 540
        b"touch " + k + b" 0 noreply\r\n"
        b"cas " + k + b" 0 0 1 1 noreply\r\nx\r\n"         # EXISTS hidden
        b"incr " + k + b"missing 1 noreply\r\n"           # NOT_FOUND hidden
        b"delete " + k + b"missing noreply\r\n"
        b"verbosity 0 noreply\r\n",
        b"")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 3\r\n540\r\nEND\r\n")
    conn.check(b"delete " + k + b" noreply\r\nget " + k + b"\r\n", b"END\r\n")


def test_noreply_suppresses_errors(conn, keyprefix):
    k = b(keyprefix + "ne")
    conn.check(b"set " + k + b" 0 0 2\r\nab\r\n", b"STORED\r\n")
    conn.check(b"incr " + k + b" abc noreply\r\n"    # invalid delta: silent
               b"incr " + k + b" 1 noreply\r\n"      # non-numeric: silent
               b"set " + k + b" 0 0 -1 noreply\r\n"  # bad length: silent
               b"touch " + k + b" abc noreply\r\n",  # bad exptime: silent
               b"")
    conn.check(b"get " + k + b"\r\n", b"VALUE " + k + b" 0 2\r\nab\r\nEND\r\n")


def test_noreply_flush_all(server):
    with server.client() as c:
        c.check(b"set fk 0 0 1\r\nx\r\nflush_all noreply\r\nget fk\r\n", b"STORED\r\nEND\r\n")


# ---------------------------------------------------------------------------
# Expiry
# ---------------------------------------------------------------------------

def test_expiry(conn, keyprefix):
    p = b(keyprefix)
    past_abs = int(time.time()) - 3600
    conn.check(
        b"set " + p + b"ttl1 0 1 1\r\na\r\n"
        b"set " + p + b"ttl3 0 3 1\r\nb\r\n"
        b"set " + p + b"long 0 1000 1\r\nc\r\n"
        b"set " + p + b"neg 0 -1 1\r\nd\r\n"
        b"set " + p + b"abs 0 %d 1\r\ne\r\n" % past_abs
        + b"set " + p + b"absf 0 %d 1\r\nf\r\n" % (int(time.time()) + 3600)
        + b"set " + p + b"gat 0 1 1\r\ng\r\n",
        b"STORED\r\n" * 7)
    # negative TTL and absolute time in the past: expired at once
    conn.check(b"get " + p + b"neg " + p + b"abs\r\n", b"END\r\n")
    # TTL 3 needs at least two clock ticks: still there now
    conn.check(b"get " + p + b"ttl3 " + p + b"absf\r\n",
               b"VALUE " + p + b"ttl3 0 1\r\nb\r\nVALUE " + p + b"absf 0 1\r\nf\r\nEND\r\n")
    # extend the 1 s item with gat before it can expire? TTL 1 may expire at
    # the next tick, so only check gat's effect if it was still there
    got = conn.call(b"gat 100 " + p + b"gat\r\n")
    gat_alive = got != b"END\r\n"
    # TTL 1 is gone within ~2 s (bounded poll)
    gone = poll_until(lambda: conn.call(b"get " + p + b"ttl1\r\n") == b"END\r\n", 3.5, 0.1)
    assert gone, "TTL 1 item did not expire"
    gone3 = poll_until(lambda: conn.call(b"get " + p + b"ttl3\r\n") == b"END\r\n", 4.5, 0.1)
    assert gone3, "TTL 3 item did not expire"
    conn.check(b"get " + p + b"long " + p + b"absf\r\n",
               b"VALUE " + p + b"long 0 1\r\nc\r\nVALUE " + p + b"absf 0 1\r\nf\r\nEND\r\n")
    if gat_alive:
        conn.check(b"get " + p + b"gat\r\n", b"VALUE " + p + b"gat 0 1\r\ng\r\nEND\r\n")
    # expired items are absent for add (add succeeds)
    conn.check(b"add " + p + b"ttl1 0 0 1\r\nz\r\n", b"STORED\r\n")


def test_touch_extends_and_shortens(conn, keyprefix):
    k1, k2 = b(keyprefix + "a"), b(keyprefix + "b")
    conn.check(b"set " + k1 + b" 0 2 1\r\nx\r\nset " + k2 + b" 0 0 1\r\ny\r\n",
               b"STORED\r\nSTORED\r\n")
    conn.check(b"touch " + k1 + b" 0\r\ntouch " + k2 + b" 1\r\n", b"TOUCHED\r\nTOUCHED\r\n")
    assert poll_until(lambda: conn.call(b"get " + k2 + b"\r\n") == b"END\r\n", 3.5, 0.1)
    time.sleep(0.2)
    conn.check(b"get " + k1 + b"\r\n", b"VALUE " + k1 + b" 0 1\r\nx\r\nEND\r\n")


# ---------------------------------------------------------------------------
# flush_all
# ---------------------------------------------------------------------------

def test_flush_all_immediate(conn, keyprefix):
    p = b(keyprefix)
    conn.check(b"set " + p + b"1 0 0 1\r\na\r\nset " + p + b"2 0 0 1\r\nb\r\n",
               b"STORED\r\nSTORED\r\n")
    conn.check(b"flush_all\r\n", b"OK\r\n")
    conn.check(b"get " + p + b"1 " + p + b"2\r\n", b"END\r\n")
    # items stored after the flush are visible
    conn.check(b"set " + p + b"3 0 0 1\r\nc\r\nget " + p + b"3\r\n",
               b"STORED\r\nVALUE " + p + b"3 0 1\r\nc\r\nEND\r\n")
    conn.check(b"flush_all 0\r\nget " + p + b"3\r\n", b"OK\r\nEND\r\n")
    conn.check(b"set " + p + b"4 0 0 1\r\nd\r\nflush_all -1\r\nget " + p + b"4\r\n",
               b"STORED\r\nOK\r\nEND\r\n")
    conn.check(b"flush_all abc\r\n", b"CLIENT_ERROR invalid exptime argument\r\n")


def test_flush_all_delayed(server):
    # 1.6.18 quirk: "flush_all N" invalidates items whose last update is at or
    # before (now + N - 1) once that second is reached, i.e. with N=3 the items
    # vanish after 2 clock ticks, and items stored within the following
    # second are hit too.  The test only asserts what a correct delayed flush
    # must also do: present right after the command, gone within the delay
    # (plus one tick of clock slack).
    with server.client() as c:
        c.check(b"set dk 0 0 1\r\nx\r\n", b"STORED\r\n")
        t0 = time.monotonic()
        c.check(b"flush_all 3\r\n", b"OK\r\n")
        c.check(b"get dk\r\n", b"VALUE dk 0 1\r\nx\r\nEND\r\n")
        gone = poll_until(lambda: c.call(b"get dk\r\n") == b"END\r\n", 5.0, 0.1)
        elapsed = time.monotonic() - t0
        assert gone, "item still present 5 s after flush_all 3"
        # At least one whole tick, less the lag of the server's clock at the
        # flush (its background thread ticks every 0.1 s, later on a loaded
        # host).
        assert elapsed >= 0.6, "flush_all 3 acted after only %.2fs" % elapsed
        st = c.stats()
        assert int(st["cmd_flush"]) == 1


# ---------------------------------------------------------------------------
# Pipelining, long lines, connection-closing conditions
# ---------------------------------------------------------------------------

def test_pipelining_many_commands(conn, keyprefix):
    p = b(keyprefix)
    send, expect = [], []
    for i in range(300):
        k = p + b"%d" % i
        v = b"v%d" % i
        send.append(b"set " + k + b" %d 0 %d\r\n" % (i, len(v)) + v + b"\r\n")
        expect.append(b"STORED\r\n")
        send.append(b"get " + k + b"\r\n")
        expect.append(b"VALUE " + k + b" %d %d\r\n" % (i, len(v)) + v + b"\r\nEND\r\n")
        if i % 3 == 0:
            send.append(b"incr " + k + b" 1\r\n")
            expect.append(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
        if i % 5 == 0:
            send.append(b"bogus\r\n")
            expect.append(b"ERROR\r\n")
        if i % 7 == 0:
            send.append(b"delete " + k + b"\r\n")
            expect.append(b"DELETED\r\n")
    conn.check(b"".join(send), b"".join(expect), timeout=30)


def test_pipelining_split_across_packets(conn, keyprefix):
    k = b(keyprefix + "s")
    data = b"set " + k + b" 0 0 10\r\n0123456789\r\nget " + k + b"\r\n"
    for i in range(len(data)):
        conn.send(data[i:i + 1])
        if i % 7 == 0:
            time.sleep(0.001)
    assert conn.read_until(b"END\r\n") == \
        b"STORED\r\nVALUE " + k + b" 0 10\r\n0123456789\r\nEND\r\n"


def test_multiget_many_keys(conn, keyprefix):
    p = b(keyprefix)
    keys = [p + b"%04d" % i for i in range(400)]
    conn.check(b"".join(b"set " + k + b" 0 0 %d\r\n" % len(k) + k + b"\r\n" for k in keys),
               b"STORED\r\n" * len(keys))
    # a ~100 KB get line (the line buffer must grow past 2048 bytes)
    req = []
    exp = []
    for i in range(3000):
        k = keys[i % len(keys)] if i % 4 else p + b"miss%d" % i
        req.append(k)
        if i % 4:
            exp.append(b"VALUE " + k + b" 0 %d\r\n" % len(k) + k + b"\r\n")
    line = b"get " + b" ".join(req) + b"\r\n"
    assert len(line) > 50000
    conn.check(line, b"".join(exp) + b"END\r\n", timeout=30)


def test_long_get_line_arriving_slowly(conn, keyprefix):
    k = b(keyprefix + "x")
    conn.check(b"set " + k + b" 0 0 1\r\nx\r\n", b"STORED\r\n")
    part = b"get " + b" ".join([b(keyprefix) + b"m%d" % i for i in range(300)])
    assert len(part) > 2100
    conn.send(part)
    assert not conn.wait_closed(0.3), "server closed a long (incomplete) get line"
    conn.check(b" " + k + b"\r\n", b"VALUE " + k + b" 0 1\r\nx\r\nEND\r\n")


@pytest.mark.parametrize("n", [2049, 3000])
def test_junk_line_too_long_closes(shared_server, n):
    # Note: on 1.6.18 a complete long junk line that arrives in one read is
    # simply answered with ERROR; only more than 2048 buffered bytes without
    # a newline close the connection.
    with shared_server.client() as c:
        c.send(b"j" * n)
        assert c.wait_closed(5.0), "connection not closed after %d junk bytes" % n
        assert c.buf == b""
    with shared_server.client() as c:
        c.check(b"", b"")


@pytest.mark.parametrize("line", [b"GET / HTTP/1.1", b"POST /x HTTP/1.0",
                                  b"HEAD /index.html HTTP/1.1"])
def test_http_request_closes(shared_server, line):
    with shared_server.client() as c:
        c.send(line + b"\r\nHost: x\r\n\r\n")
        assert c.wait_closed(5.0), "connection not closed after %r" % line
        assert c.buf == b""


def test_http_word_in_known_command_is_harmless(conn):
    # only an unknown command whose last token starts with HTTP/ closes
    conn.check(b"get HTTP/1.1 a\r\n", b"END\r\n")
    conn.check(b"get a HTTP/1.1\r\n", b"END\r\n")


def test_quit(shared_server):
    with shared_server.client() as c:
        c.send(b"quit\r\n")
        assert c.wait_closed(5.0)
        assert c.buf == b""
    with shared_server.client() as c:
        # responses before quit are flushed; anything after it is ignored
        c.send(b"version\r\nset q 0 0 1\r\nx\r\nquit\r\nget q\r\n")
        assert c.wait_closed(5.0)
        assert re.match(rb"VERSION \S+\r\nSTORED\r\n\Z", c.buf), c.buf


# ---------------------------------------------------------------------------
# Admin commands
# ---------------------------------------------------------------------------

def test_version(conn):
    conn.send(b"version\r\n")
    line = conn.read_line()
    assert line.startswith(b"VERSION ") and len(line) > len(b"VERSION \r\n"), line
    assert re.match(rb"VERSION [\x21-\x7e]+\r\n\Z", line), line
    if IS_MEMCACHED:
        assert line == b"VERSION 1.6.18\r\n"
    # extra arguments are ignored
    conn.send(b"version extra args\r\n")
    assert conn.read_line() == line


def test_verbosity(conn):
    conn.check(b"verbosity 1\r\n", b"OK\r\n")
    conn.check(b"verbosity 0 noreply\r\n", b"")
    conn.check(b"verbosity 5\r\n", b"OK\r\n")     # clamped, still OK
    conn.check(b"verbosity abc\r\n", b"CLIENT_ERROR bad command line format\r\n")
    conn.check(b"verbosity 0\r\n", b"OK\r\n")
    conn.check(b"verbosity\r\n", b"ERROR\r\n")


def test_shutdown_not_enabled(conn):
    # 1.6.18 text (newer memcached says SERVER_ERROR: ...)
    conn.check(b"shutdown\r\n", b"ERROR: shutdown not enabled\r\n")
    conn.check(b"shutdown graceful\r\n", b"ERROR: shutdown not enabled\r\n")


def test_cache_memlimit(server):
    with server.client() as c:
        assert int(c.stats()["limit_maxbytes"]) == 64 * 1024 * 1024
        c.check(b"cache_memlimit 100\r\n", b"OK\r\n")
        assert int(c.stats()["limit_maxbytes"]) == 100 * 1024 * 1024
        assert int(c.stats(b"settings")["maxbytes"]) == 100 * 1024 * 1024
        c.check(b"cache_memlimit 80 noreply\r\n", b"")
        assert int(c.stats()["limit_maxbytes"]) == 80 * 1024 * 1024
        c.check(b"cache_memlimit 4\r\n",
                b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n")
        c.check(b"cache_memlimit 2000000000\r\n",
                b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n")
        c.check(b"cache_memlimit abc\r\n", b"ERROR\r\n")
        assert int(c.stats()["limit_maxbytes"]) == 80 * 1024 * 1024


# ---------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------

GENERAL_STATS = """pid uptime time version libevent pointer_size rusage_user rusage_system
max_connections curr_connections total_connections rejected_connections
connection_structures reserved_fds cmd_get cmd_set cmd_flush cmd_touch
get_hits get_misses get_expired get_flushed delete_misses delete_hits
incr_misses incr_hits decr_misses decr_hits cas_misses cas_hits cas_badval
touch_hits touch_misses store_too_large store_no_memory auth_cmds auth_errors
bytes_read bytes_written limit_maxbytes accepting_conns listen_disabled_num
time_in_listen_disabled_us threads conn_yields hash_power_level hash_bytes
hash_is_expanding malloc_fails bytes curr_items total_items expired_unfetched
evicted_unfetched evictions reclaimed""".split()

SETTINGS_STATS = """maxbytes maxconns tcpport udpport verbosity oldest evictions
domain_socket umask growth_factor chunk_size num_threads stat_key_prefix
detail_enabled reqs_per_event cas_enabled tcp_backlog binding_protocol
item_size_max maxconns_fast hashpower_init slab_reassign slab_automove
lru_crawler flush_enabled idle_timeout""".split()


def test_stats_general_fields(server):
    with server.client() as c:
        raw = c.request(b"stats\r\n", b"END\r\n")
        for line in raw.split(b"\r\n")[:-2]:
            assert re.match(rb"STAT [a-z_0-9:]+ [^\r\n]*\Z", line), line
        assert raw.endswith(b"\r\nEND\r\n")
        st = c.stats()
        missing = [f for f in GENERAL_STATS if f not in st]
        assert not missing, "missing stats: %s" % missing
        assert int(st["pid"]) == server.pid
        assert 0 <= int(st["uptime"]) < 60
        assert abs(int(st["time"]) - time.time()) < 5
        assert st["version"]
        if IS_MEMCACHED:
            assert st["version"] == "1.6.18"
        assert st["pointer_size"] in ("32", "64")
        assert st["threads"] == "4"
        assert st["max_connections"] == "1024"
        assert int(st["limit_maxbytes"]) == 64 * 1024 * 1024
        assert st["accepting_conns"] == "1"
        assert re.match(r"\d+\.\d{6}\Z", st["rusage_user"]), st["rusage_user"]
        for f in ("curr_items", "total_items", "cmd_get", "cmd_set", "get_hits",
                  "get_misses", "evictions", "bytes"):
            assert st[f] == "0", (f, st[f])
        assert int(st["curr_connections"]) >= 1


def test_stats_counters_move(server):
    with server.client() as c:
        s0 = c.stats()
        c.check(b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nadd a 0 0 1\r\nx\r\n",
                b"STORED\r\nSTORED\r\nNOT_STORED\r\n")
        c.check(b"get a b nope\r\n", b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n")
        for _ in range(2):
            assert re.match(rb"VALUE a 0 1 \d+\r\n1\r\nEND\r\n\Z", c.call(b"gets a\r\n"))
        c.check(b"incr a 1\r\nincr nope 1\r\ndecr b 1\r\ndecr nope 1\r\n",
                b"2\r\nNOT_FOUND\r\n1\r\nNOT_FOUND\r\n")
        c.check(b"touch a 0\r\ntouch nope 0\r\n", b"TOUCHED\r\nNOT_FOUND\r\n")
        c.check(b"cas a 0 0 1 1\r\nx\r\ncas nope 0 0 1 1\r\nx\r\n", b"EXISTS\r\nNOT_FOUND\r\n")
        c.check(b"delete b\r\ndelete nope\r\n", b"DELETED\r\nNOT_FOUND\r\n")
        c.check(b"set big 0 0 2000000\r\n" + b"x" * 2000000 + b"\r\n",
                b"SERVER_ERROR object too large for cache\r\n")
        c.check(b"flush_all\r\nget a\r\n", b"OK\r\nEND\r\n")
        s1 = c.stats()

    def d(name):
        return int(s1[name]) - int(s0[name])

    assert d("cmd_get") == 6            # 3 + gets x2 + get after flush
    assert d("get_hits") == 4
    assert d("get_misses") == 2         # nope + the flushed a
    assert d("get_flushed") == 1
    # set a, set b, add a, cas a (EXISTS), cas nope (NOT_FOUND); the
    # too-large set never allocated an item and is not counted
    assert d("cmd_set") == 5
    # in-place incr/decr store no new item; but 1.6.18 only updates in place
    # while nobody else holds a reference, and the LRU maintainer may briefly
    # hold one on these recently fetched items -> then a new item is stored
    assert 2 <= d("total_items") <= 4
    assert d("incr_hits") == 1 and d("incr_misses") == 1
    assert d("decr_hits") == 1 and d("decr_misses") == 1
    assert d("touch_hits") == 1 and d("touch_misses") == 1
    assert d("cmd_touch") == 2
    assert d("cas_badval") == 1 and d("cas_misses") == 1 and d("cas_hits") == 0
    assert d("delete_hits") == 1 and d("delete_misses") == 1
    assert d("cmd_flush") == 1
    assert d("store_too_large") == 1
    assert d("bytes_read") > 2000000
    assert d("bytes_written") > 0


def test_stats_items_bytes_and_connections(server):
    with server.client() as c:
        c.check(b"set a 0 0 5\r\nhello\r\nset b 0 0 5\r\nworld\r\n", b"STORED\r\nSTORED\r\n")
        st = c.stats()
        assert st["curr_items"] == "2"
        assert st["total_items"] == "2"
        assert int(st["bytes"]) > 10
        # A connection an earlier step closed may still be counted for a
        # moment: take the base once the count holds still.
        seen = []

        def settled():
            seen.append(int(c.stats()["curr_connections"]))
            time.sleep(0.1)
            return len(seen) > 1 and seen[-1] == seen[-2]
        assert poll_until(settled, 5.0)
        st = c.stats()
        base_curr = int(st["curr_connections"])
        base_total = int(st["total_connections"])
        others = [server.client() for _ in range(3)]
        try:
            for o in others:
                o.check(b"", b"")
            st = c.stats()
            assert int(st["curr_connections"]) == base_curr + 3
            assert int(st["total_connections"]) == base_total + 3
        finally:
            for o in others:
                o.close()

        def back():
            return int(c.stats()["curr_connections"]) == base_curr
        assert poll_until(back, 3.0), "curr_connections did not drop after closes"
        c.check(b"delete a\r\n", b"DELETED\r\n")
        assert c.stats()["curr_items"] == "1"


def test_stats_settings(server):
    with server.client() as c:
        st = c.stats(b"settings")
        missing = [f for f in SETTINGS_STATS if f not in st]
        assert not missing, "missing settings: %s" % missing
        assert st["maxbytes"] == str(64 * 1024 * 1024)
        assert st["maxconns"] == "1024"
        assert st["tcpport"] == str(server.port)
        assert st["udpport"] == "0"
        assert st["item_size_max"] == "1048576"
        assert st["evictions"] == "on"
        assert st["growth_factor"] == "1.25"
        assert st["chunk_size"] == "48"
        assert st["num_threads"] == "4"
        assert st["cas_enabled"] == "yes"
        assert st["binding_protocol"] == "auto-negotiate"
        assert st["reqs_per_event"] == "20"
        assert st["umask"] == "700"
        assert st["flush_enabled"] == "yes"
        assert st["idle_timeout"] == "0"
        assert st["verbosity"] == "0"
        assert st["stat_key_prefix"] == ":"
        assert st["detail_enabled"] == "no"
        assert st["tcp_backlog"] == "1024"
        assert st["maxconns_fast"] == "yes"
        assert st["domain_socket"] == "NULL"


def test_stats_items_and_slabs(server):
    with server.client() as c:
        assert c.request(b"stats items\r\n", b"END\r\n") == b"END\r\n"
        c.check(b"set a 0 0 1\r\nx\r\nset b 0 0 3000\r\n" + b"y" * 3000 + b"\r\n",
                b"STORED\r\nSTORED\r\n")
        items = c.stats(b"items")
        classes = sorted({int(k.split(":")[1]) for k in items})
        assert len(classes) == 2, items
        for cls in classes:
            for f in ("number", "age", "evicted", "evicted_nonzero", "evicted_time",
                      "outofmemory", "tailrepairs", "reclaimed", "expired_unfetched",
                      "evicted_unfetched", "mem_requested"):
                assert "items:%d:%s" % (cls, f) in items, (cls, f, items)
            assert items["items:%d:number" % cls] == "1"
        assert items["items:%d:evicted" % classes[0]] == "0"
        slabs = c.stats(b"slabs")
        assert slabs["active_slabs"] == "2"
        # both sizes share one 1 MiB segment (memcached: a page per class)
        assert int(slabs["total_malloced"]) >= 1024 * 1024
        for cls in classes:
            for f in ("chunk_size", "chunks_per_page", "total_pages", "total_chunks",
                      "used_chunks", "free_chunks", "free_chunks_end", "get_hits",
                      "cmd_set", "delete_hits", "incr_hits", "decr_hits", "cas_hits",
                      "cas_badval", "touch_hits"):
                assert "%d:%s" % (cls, f) in slabs, (cls, f)
            assert slabs["%d:used_chunks" % cls] == "1"
            assert int(slabs["%d:chunk_size" % cls]) * int(slabs["%d:chunks_per_page" % cls]) \
                <= 1024 * 1024
        # the small item sits in a smaller class than the 3000-byte one; class
        # sizes themselves belong to the engine (memcached's smallest chunk is
        # 96 bytes, memstash's differs), so only their order is compared
        assert classes[0] < classes[1]
        assert int(slabs["%d:chunk_size" % classes[0]]) < 3000
        assert int(slabs["%d:chunk_size" % classes[1]]) >= 3000


def test_stats_sizes_and_conns(server):
    with server.client() as c:
        assert c.request(b"stats sizes\r\n", b"END\r\n") == \
            b"STAT sizes_status disabled\r\nEND\r\n"
        raw = c.request(b"stats conns\r\n", b"END\r\n")
        me = c.sock.getsockname()
        lines = raw.split(b"\r\n")
        assert lines[-2:] == [b"END", b""]
        entries = {}
        for line in lines[:-2]:
            m = re.match(rb"STAT (\d+):(addr|listen_addr|state|secs_since_last_cmd) (\S+)\Z", line)
            assert m, line
            entries.setdefault(int(m.group(1)), {})[m.group(2).decode()] = m.group(3).decode()
        mine = [e for e in entries.values() if e.get("addr") == "tcp:%s:%d" % me]
        assert len(mine) == 1, entries
        assert mine[0]["listen_addr"] == "tcp:127.0.0.1:%d" % server.port
        assert mine[0]["state"].startswith("conn_")
        listeners = [e for e in entries.values() if e.get("state") == "conn_listening"]
        assert listeners and listeners[0]["addr"] == "tcp:127.0.0.1:%d" % server.port


def test_stats_reset(server):
    with server.client() as c:
        c.check(b"set a 0 0 1\r\nx\r\nget a\r\nget b\r\n",
                b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nEND\r\n")
        c.check(b"stats reset\r\n", b"RESET\r\n")
        st = c.stats()
        for f in ("cmd_get", "cmd_set", "get_hits", "get_misses", "total_items"):
            assert st[f] == "0", (f, st[f])
        # gauges are not reset
        assert st["curr_items"] == "1"
        assert int(st["curr_connections"]) >= 1


def test_stats_unknown_group(conn):
    conn.check(b"stats nonsense\r\n", b"ERROR\r\n")
