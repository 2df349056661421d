"""Differential test: the server under test vs Debian's memcached 1.6.18.

Both run side by side with identical flags (-m 64 -t 2 -U 0 -l 127.0.0.1).
Each script is a list of steps sent on a fresh connection to both servers;
after every step the replies of both sides must be identical byte for byte,
except:
  * VERSION lines (version string),
  * STAT values (and, for STAT blocks, only the names monitoring tools read
    are compared - build-specific extras like ssl_*/ext_* are ignored),
  * CAS unique numbers: the n-th distinct CAS value seen on each side is
    replaced by the token CAS<n>, so equal/different CAS relations are still
    compared.
A connection closed by the server is compared too (token <CLOSED>).

To find where each step's replies end, "version\\r\\n" is appended to
synchronous steps and the reader stops at the matching VERSION line (or when
the connection closes).  Steps marked quiet are read until nothing arrives
for a short time instead.

Before each script, flush_all is sent to both servers (on a separate
connection) so every script starts from an empty cache.  Scripts avoid
clock-dependent observations (short TTLs, delayed flush taking effect): the
two processes' 1-second clocks tick at different moments.

When MEMSTASHD is memcached itself this compares memcached with memcached.
"""

import os
import re
import time

import pytest

from conftest import REFERENCE_MEMCACHED, ServerFactory

FLAGS = ("-m", "64", "-t", "2")

MONITORED = set("""pid uptime time version libevent pointer_size rusage_user rusage_system
max_connections curr_connections total_connections rejected_connections
connection_structures reserved_fds cmd_get cmd_set cmd_flush cmd_touch
get_hits get_misses get_expired get_flushed delete_misses delete_hits
incr_misses incr_hits decr_misses decr_hits cas_misses cas_hits cas_badval
touch_hits touch_misses store_too_large store_no_memory
bytes_read bytes_written limit_maxbytes accepting_conns listen_disabled_num
threads conn_yields hash_power_level hash_bytes malloc_fails bytes curr_items
total_items expired_unfetched evicted_unfetched evictions reclaimed
maxbytes maxconns tcpport udpport verbosity evictions domain_socket umask
growth_factor chunk_size num_threads reqs_per_event cas_enabled tcp_backlog
binding_protocol item_size_max maxconns_fast flush_enabled idle_timeout
sizes_status active_slabs total_malloced""".split())

CLASS_FIELDS = set("""number age evicted evicted_nonzero evicted_time outofmemory
tailrepairs reclaimed expired_unfetched evicted_unfetched mem_requested
chunk_size chunks_per_page total_pages total_chunks used_chunks free_chunks
free_chunks_end get_hits cmd_set delete_hits incr_hits decr_hits cas_hits
cas_badval touch_hits""".split())


def monitored(name):
    if name in MONITORED:
        return True
    m = re.match(r"(?:items:)?(\d+):(\w+)\Z", name)
    return bool(m and m.group(2) in CLASS_FIELDS)


# ---------------------------------------------------------------------------
# Reply normalisation
# ---------------------------------------------------------------------------

class Side:
    def __init__(self, name, server):
        self.name = name
        self.server = server
        self.cas_map = {}
        self.last_cas = {}       # key -> raw cas value (for dynamic steps)
        self.conn = None

    def norm_cas(self, cas):
        if cas not in self.cas_map:
            self.cas_map[cas] = "CAS%d" % (len(self.cas_map) + 1)
        return self.cas_map[cas]


def tokenize(buf, side, final):
    """Split a reply stream into tokens.  Returns (tokens, rest)."""
    tokens = []
    pos = 0
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            break
        line = buf[pos:nl]
        m = re.match(rb"VALUE (\S+) (\d+) (\d+)( \d+)?\Z", line)
        if m:
            n = int(m.group(3))
            end = nl + 2 + n + 2
            if len(buf) < end:
                break
            data = buf[nl + 2:end]
            if m.group(4):
                cas = int(m.group(4))
                side.last_cas[m.group(1)] = cas
                line = b"VALUE %s %s %s %s" % (m.group(1), m.group(2), m.group(3),
                                               side.norm_cas(cas).encode())
            tokens.append(line + b"\r\n" + data)
            pos = end
            continue
        if line.startswith(b"VERSION "):
            line = b"VERSION <v>"
        tokens.append(line)
        pos = nl + 2
    rest = buf[pos:]
    if final and rest:
        tokens.append(b"<PARTIAL>" + rest)
        rest = b""
    return tokens, rest


def normalise_class_ids(names):
    """Size class ids depend on the engine's item header, not on the
    protocol: replace each distinct class id by its rank, so that "the small
    item and the large item sit in two classes, in this order" is still
    compared while the numbering itself is not."""
    names = list(names)
    ids = set()
    for n in names:
        parts = n.split(":")
        if len(parts) == 3 and parts[0] == "items" and parts[1].isdigit():
            ids.add(int(parts[1]))
        elif len(parts) == 2 and parts[0].isdigit():
            ids.add(int(parts[0]))
    rank = {cid: "cls%d" % i for i, cid in enumerate(sorted(ids))}
    out = []
    for n in names:
        parts = n.split(":")
        if len(parts) == 3 and parts[0] == "items" and parts[1].isdigit():
            n = "items:%s:%s" % (rank[int(parts[1])], parts[2])
        elif len(parts) == 2 and parts[0].isdigit():
            n = "%s:%s" % (rank[int(parts[0])], parts[1])
        out.append(n)
    return out


def collapse_stats(tokens):
    """Replace runs of STAT lines by one token listing monitored names."""
    out = []
    run = []
    for t in tokens + [None]:
        if t is not None and t.startswith(b"STAT "):
            run.append(t.split(b" ")[1].decode("ascii", "replace"))
            continue
        if run:
            names = sorted(normalise_class_ids(n for n in run if monitored(n)))
            out.append(("STATS", tuple(names)))
            run = []
        if t is not None:
            out.append(t)
    return out


# ---------------------------------------------------------------------------
# Exchange
# ---------------------------------------------------------------------------

SYNC_TIMEOUT = 3.0
QUIET = 0.25


def count_version_cmds(data):
    n = 0
    for line in data.split(b"\n"):
        if line.strip(b"\r ").split(b" ")[0:1] == [b"version"]:
            n += 1
    return n


def read_reply(conn, side, sync_versions, quiet, raw=b""):
    """Read one step's reply; returns normalised token list.  A quiet step's
    raw bytes so far can be passed in `raw` (see read_more)."""
    deadline = time.monotonic() + SYNC_TIMEOUT
    timed_out = False
    if quiet:
        raw += conn.read_quiet(QUIET, SYNC_TIMEOUT)
        side.quiet_raw = raw
    else:
        while True:
            toks, _ = tokenize(conn.buf, Side("probe", None), False)
            if toks.count(b"VERSION <v>") >= sync_versions and toks and toks[-1] == b"VERSION <v>":
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


class Quiet:
    """A step read until quiet (no version sentinel appended)."""

    def __init__(self, data):
        self.data = data


# memcached's reply to a crawler request while a crawl runs, e.g. one its LRU
# maintainer started on its own (about once a second while some class holds
# items): a transient refusal of memcached's, retried there.
CRAWLER_BUSY = b"BUSY currently processing crawler request"
BUSY_RETRIES = 100
SLOW_QUIET = 1.0


def is_memcached(side):
    return os.path.basename(side.server.binary) == "memcached"


def is_crawler_request(data):
    return data.startswith(b"lru_crawler ") and data.count(b"\n") == 1


def retry_while_busy(side, data, quiet, reply):
    """memcached answered BUSY to a lone crawler request: send it again
    (bounded) until the running crawl is over.  (Every crawler request gets
    some reply; a quiet read that got none yet was only held up by the
    running crawl, which holds the crawler's lock while it works.)"""
    for _ in range(BUSY_RETRIES):
        deadline = time.monotonic() + 10.0
        while quiet and not reply and not side.conn.eof and time.monotonic() < deadline:
            reply = read_more(side)
        if side.conn.eof or CRAWLER_BUSY not in reply:
            break
        time.sleep(0.05)
        side.conn.send(data if quiet else data + b"version\r\n")
        reply = read_reply(side.conn, side, count_version_cmds(data) + 1, quiet)
    return reply


def read_more(side):
    """A quiet step's reply differed: read on (a loaded host may answer after
    QUIET has passed) until nothing comes for SLOW_QUIET."""
    more = side.conn.read_quiet(SLOW_QUIET, SYNC_TIMEOUT)
    return read_reply(side.conn, side, 0, True, side.quiet_raw + more)


def run_script(sides, steps):
    transcript = []
    for side in sides:
        side.cas_map = {}
        side.last_cas = {}
        side.conn = side.server.client(timeout=SYNC_TIMEOUT)
    try:
        for i, step in enumerate(steps):
            replies = []
            datas = []
            for side in sides:
                quiet = isinstance(step, Quiet)
                data = step.data if quiet else step
                if callable(data):
                    data = data(side)
                datas.append(data)
                if side.conn.eof:
                    continue
                payload = data if quiet else data + b"version\r\n"
                try:
                    side.conn.send(payload)
                except OSError:
                    pass
            quiet = isinstance(step, Quiet)
            for side, data in zip(sides, datas):
                side.quiet_raw = b""
                if side.conn.eof:
                    replies.append([b"<CLOSED>"])
                    continue
                reply = read_reply(side.conn, side, count_version_cmds(data) + 1, quiet)
                if is_memcached(side) and is_crawler_request(data):
                    reply = retry_while_busy(side, data, quiet, reply)
                replies.append(reply)
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

K251 = b"k" * 251
K250 = b"k" * 250
BIG = b"B" * (1024 * 1024)


def cas_cmd(key, value, flags=0, exptime=0, delta=0, noreply=False):
    def build(side):
        return b"cas %s %d %d %d %d%s\r\n%s\r\n" % (
            key, flags, exptime, len(value), side.last_cas.get(key, 0) + delta,
            b" noreply" if noreply else b"", value)
    return build


SCRIPTS = {
    # --- storage -----------------------------------------------------------
    "set_get": [b"set a 0 0 1\r\n1\r\n", b"get a\r\n", b"get a b a\r\n", b"get b\r\n"],
    "set_flags_exptime": [b"set a 123 1000 3\r\nabc\r\nget a\r\n",
                          b"set a 4294967295 0 0\r\n\r\nget a\r\n",
                          b"set a 4294967296 0 1\r\nx\r\nget a\r\n"],
    "set_binary": [b"set bin 0 0 10\r\n\x00\r\n\xff\r\nEND\r\nget bin\r\n"],
    "set_overwrite": [b"set a 1 0 1\r\nx\r\nset a 2 0 2\r\nyy\r\nget a\r\n"],
    "add": [b"add a 0 0 1\r\nx\r\n", b"add a 0 0 1\r\ny\r\n", b"get a\r\n"],
    "replace": [b"replace a 0 0 1\r\nx\r\n", b"set a 0 0 1\r\nx\r\nreplace a 5 0 2\r\nyy\r\nget a\r\n"],
    "append_prepend": [b"append a 0 0 1\r\nx\r\nprepend a 0 0 1\r\nx\r\n",
                       b"set a 42 0 3\r\nmid\r\nappend a 1 -1 2\r\n_e\r\nprepend a 2 -1 2\r\ns_\r\n",
                       b"get a\r\n", b"gets a\r\n"],
    "storage_noreply": [b"set a 0 0 1 noreply\r\n1\r\nadd a 0 0 1 noreply\r\n2\r\n"
                        b"replace a 0 0 1 noreply\r\n3\r\nappend a 0 0 1 noreply\r\n4\r\n"
                        b"prepend a 0 0 1 noreply\r\n5\r\nget a\r\n",
                        b"add b 0 0 1 noreply\r\nb\r\nreplace c 0 0 1 noreply\r\nc\r\n"
                        b"append c 0 0 1 noreply\r\nc\r\nget b c\r\n"],
    "storage_noreply_extra_token": [b"set a 0 0 1 noreply extra\r\nx\r\n", b"get a\r\n"],
    "storage_junk_instead_of_noreply": [b"set a 0 0 1 junk\r\nx\r\nget a\r\n"],
    "zero_length": [b"set z 0 0 0\r\n\r\nget z\r\nappend z 0 0 0\r\n\r\nget z\r\n"],
    "key_250": [b"set " + K250 + b" 0 0 1\r\nx\r\nget " + K250 + b"\r\ndelete " + K250 + b"\r\n"],
    "key_251_storage": [b"set " + K251 + b" 0 0 1\r\nx\r\n",
                        b"add " + K251 + b" 0 0 1\r\nx\r\n",
                        b"cas " + K251 + b" 0 0 1 1\r\nx\r\n",
                        b"append " + K251 + b" 0 0 1 noreply\r\nx\r\n"],
    "key_251_other": [b"get " + K251 + b"\r\n", b"gets a " + K251 + b"\r\n",
                      b"delete " + K251 + b"\r\n", b"incr " + K251 + b" 1\r\n",
                      b"decr " + K251 + b" 1\r\n", b"touch " + K251 + b" 1\r\n",
                      b"gat 1 " + K251 + b"\r\n", b"gats 1 " + K251 + b"\r\n"],
    # the set is a separate step: 1.6.18 also discards earlier *pipelined*
    # replies still waiting in the same batch when a multiget fails (a
    # lost STORED), which a reimplementation should not copy
    "key_251_multiget_collapses": [b"set a 0 0 1\r\nx\r\n", b"get a " + K251 + b" a\r\n"],
    "bad_flags": [b"set a abc 0 1\r\nx\r\n", b"set a -1 0 1\r\nx\r\n", b"set a 1x 0 1\r\nx\r\n",
                  b"get a\r\n"],
    "bad_exptime": [b"set a 0 abc 1\r\nx\r\n", b"add a 0 1.5 1\r\nx\r\n", b"get a\r\n"],
    "bad_length": [b"set a 0 0 -1\r\n", b"set a 0 0 abc\r\n", b"set a 0 0 2147483647\r\n",
                   b"set a 0 0 -2147483648\r\n", b"set a 0 0 1 noreply\r\nx\r\nget a\r\n"],
    "bad_data_chunk": [b"set a 0 0 1\r\nq\r\n", b"set a 0 0 3\r\nabcd\r\n",
                       b"set a 0 0 3\r\nabc\nX", b"set a 0 0 1\r\nxyz", b"get a\r\n",
                       b"set a 0 0 3 noreply\r\nabcd\r\n", b"get a\r\n"],
    "too_large": [b"set big 0 0 1\r\nq\r\n",
                  b"set big 0 0 %d\r\n" % len(BIG) + BIG + b"\r\n",
                  b"get big\r\n",
                  b"set big 0 0 %d\r\n" % len(BIG) + BIG + b"XY",
                  b"set big 0 0 1\r\nq\r\nset big 0 0 %d noreply\r\n" % len(BIG) + BIG + b"\r\nget big\r\n",
                  b"set big 0 0 1\r\nq\r\nappend big 0 0 %d\r\n" % len(BIG) + BIG + b"\r\nget big\r\n",
                  b"set abc 0 0 1048514\r\n" + b"v" * 1048514 + b"\r\n",
                  b"set abc 0 0 1048515\r\n" + b"v" * 1048515 + b"\r\n",
                  b"get abc\r\n"],
    "append_over_limit": [b"set a 0 0 1\r\nx\r\nappend a 0 0 1048000\r\n" + b"y" * 1048000
                          + b"\r\nappend a 0 0 1000\r\n" + b"z" * 1000 + b"\r\n"],
    # --- cas -----------------------------------------------------------------
    "cas_flow": [b"cas a 0 0 1 1\r\nx\r\n",
                 b"set a 3 0 2\r\nv1\r\ngets a\r\n",
                 cas_cmd(b"a", b"v2", flags=8),
                 b"gets a\r\n",
                 cas_cmd(b"a", b"v3", delta=-1),
                 cas_cmd(b"a", b"v3", delta=1000),
                 b"cas a 0 0 1 0\r\nx\r\n",
                 b"gets a\r\n",
                 cas_cmd(b"a", b"v4", noreply=True),
                 b"gets a\r\n",
                 b"delete a\r\n",
                 cas_cmd(b"a", b"v5")],
    "cas_changes_on_every_write": [b"set a 0 0 1\r\n1\r\ngets a\r\n", b"append a 0 0 1\r\n2\r\ngets a\r\n",
                                   b"incr a 1\r\ngets a\r\n", b"touch a 0\r\ngets a\r\n",
                                   b"gats 0 a\r\n", b"prepend a 0 0 1\r\n0\r\ngets a a\r\n"],
    "cas_bad_numbers": [b"set a 0 0 1\r\nx\r\n", b"cas a 0 0 1 abc\r\nx\r\n", b"cas a 0 0 1 -1\r\nx\r\n"],
    "gets_multi": [b"set a 1 0 1\r\na\r\nset b 2 0 1\r\nb\r\n", b"gets a b c a\r\n"],
    # --- delete ----------------------------------------------------------------
    "delete": [b"delete a\r\n", b"set a 0 0 1\r\nx\r\ndelete a\r\nget a\r\n",
               b"set a 0 0 1\r\nx\r\ndelete a 0\r\n", b"delete a 0 noreply\r\n",
               b"delete a 5\r\n", b"delete a x y\r\n", b"delete a noreply\r\n"],
    # --- incr/decr -------------------------------------------------------------
    "incr_decr": [b"incr n 1\r\ndecr n 1\r\n",
                  b"set n 5 0 2\r\n10\r\nincr n 5\r\ndecr n 3\r\nincr n 0\r\ndecr n 100\r\nget n\r\n",
                  b"incr n 99999999999\r\nget n\r\n"],
    # padding is observed only on items never fetched before the incr/decr:
    # 1.6.18 rewrites in place only while nobody else holds a reference, and
    # the background LRU maintainer may briefly hold one on recently fetched
    # ("active") items, in which case a new unpadded item is stored instead
    "incr_wrap_padding": [b"set n 0 0 20\r\n18446744073709551615\r\nincr n 1\r\nget n\r\n",
                          b"set m 0 0 20\r\n18446744073709551615\r\nincr m 1\r\n"
                          b"incr m 18446744073709551615\r\nincr m 2\r\nget m\r\n",
                          b"set p 0 0 3\r\n100\r\ndecr p 1\r\nget p\r\n",
                          b"incr p 1\r\nget p\r\n",
                          b"set q 0 0 2\r\n99\r\nincr q 1\r\nget q\r\n"],
    "incr_non_numeric": [b"set n 0 0 2\r\nab\r\nincr n 1\r\ndecr n 1\r\n",
                         b"set n 0 0 0\r\n\r\nincr n 1\r\n",
                         b"set n 0 0 3\r\n-12\r\nincr n 1\r\n",
                         b"set n 0 0 21\r\n999999999999999999999\r\nincr n 1\r\n",
                         b"set n 0 0 3\r\n 12\r\nincr n 1\r\n",
                         b"set n 0 0 3\r\n1 2\r\nincr n 1\r\n"],
    "incr_bad_delta": [b"set n 0 0 1\r\n5\r\n", b"incr n -1\r\n", b"incr n abc\r\n",
                       b"decr n 18446744073709551616\r\n", b"incr n 1x\r\n", b"get n\r\n"],
    "incr_noreply": [b"set n 0 0 1\r\n5\r\nincr n 3 noreply\r\ndecr n 1 noreply\r\nget n\r\n",
                     b"incr n abc noreply\r\nincr missing 1 noreply\r\n",
                     b"set s 0 0 1\r\nx\r\nincr s 1 noreply\r\n"],
    "incr_wrong_tokens": [b"incr\r\n", b"incr n\r\n", b"decr n 1 2 3\r\n"],
    # --- touch / gat -------------------------------------------------------------
    "touch": [b"touch a 10\r\n", b"set a 0 0 1\r\nx\r\ntouch a 10\r\n", b"touch a abc\r\n",
              b"touch a 100 noreply\r\n", b"touch a -1\r\nget a\r\n", b"touch a\r\n",
              b"touch a 1 2 3\r\n"],
    "gat_gats": [b"set a 3 0 1\r\na\r\nset b 4 0 2\r\nbb\r\n",
                 b"gat 100 a missing b\r\n", b"gats 100 a b\r\n", b"gets a\r\n",
                 b"gat 10 missing\r\n", b"gat 10\r\n", b"gat abc a\r\n", b"gats abc a\r\n",
                 b"gat\r\n", b"gats\r\n", b"gat -1 b\r\nget b\r\n"],
    # --- expiry (clock-independent) ----------------------------------------------
    "expiry_immediate": [b"set neg 0 -1 1\r\nn\r\nget neg\r\n",
                         b"set abs 0 1000000000 1\r\na\r\nget abs\r\n",
                         b"set fut 0 4000000000 1\r\nf\r\nget fut\r\n",
                         b"set long 0 2592000 1\r\nl\r\nget long\r\n",
                         b"add neg 0 0 1\r\nN\r\nget neg\r\n"],
    # --- flush_all ---------------------------------------------------------------
    "flush_all": [b"set a 0 0 1\r\nx\r\nflush_all\r\nget a\r\n",
                  b"set a 0 0 1\r\ny\r\nget a\r\n",
                  b"flush_all 0\r\n", b"flush_all -1\r\n", b"flush_all noreply\r\nget a\r\n",
                  b"flush_all abc\r\n", b"flush_all 0 0 0\r\n",
                  b"set b 0 0 1\r\nz\r\nflush_all 100\r\nget b\r\n", b"flush_all\r\nget b\r\n"],
    # --- errors / framing ----------------------------------------------------------
    "unknown_commands": [b"bogus\r\n", b"GET a\r\n", b"\r\n", b"   \r\n", b"set\r\n",
                         b"mn_nope\r\n"],
    "wrong_token_counts": [b"get\r\n", b"gets\r\n", b"set a 0 0\r\n", b"set a\r\n",
                           b"cas a 0 0 1\r\n", b"cas a 0 0 1 2 3 4\r\n", b"delete\r\n",
                           b"verbosity\r\n", b"verbosity 1 2 3\r\n", b"cache_memlimit\r\n"],
    "whitespace": [b"set a 0 0 1\r\nx\r\n", b"   get   a    a  \r\n", b"get a\n",
                   b"set t\tb 0 0 1\r\nz\r\nget t\tb\r\n", b"set  c  0  0  1\r\nc\r\nget c\r\n"],
    "pipelined": [b"".join(b"set k%d %d 0 %d\r\n%s\r\nget k%d\r\nincr k%d 1\r\nbogus\r\n"
                           % (i, i, len(b"%d" % i), b"%d" % i, i, i) for i in range(150))
                  + b"get " + b" ".join(b"k%d" % i for i in range(150)) + b"\r\n"],
    "long_get_line": [b"set a 0 0 1\r\nx\r\n",
                      b"get " + b" ".join(b"miss%05d" % i for i in range(3000)) + b" a\r\n"],
    "long_get_line_split": [b"set a 0 0 1\r\nx\r\n",
                            Quiet(b"get " + b" ".join(b"miss%05d" % i for i in range(500))),
                            b" a\r\n"],
    "junk_line_closes": [b"version\r\n", Quiet(b"j" * 3000), b"version\r\n"],
    "http_closes": [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
    "quit": [b"set a 0 0 1\r\nx\r\nquit\r\nget a\r\n"],
    "quit_mid_pipeline": [b"get a\r\nquit\r\nget a\r\n"],
    # --- admin -------------------------------------------------------------------
    "version_verbosity": [b"version\r\n", b"version x y\r\n", b"verbosity 1\r\n",
                          b"verbosity 0 noreply\r\n", b"verbosity abc\r\n", b"verbosity 0\r\n"],
    "shutdown_disabled": [b"shutdown\r\n", b"shutdown graceful\r\n"],
    "cache_memlimit": [b"cache_memlimit 4\r\n", b"cache_memlimit 2000000000\r\n",
                       b"cache_memlimit abc\r\n", b"cache_memlimit 64\r\n",
                       b"cache_memlimit 64 noreply\r\n"],
    "stats_general": [b"stats\r\n", b"stats \r\n"],
    "stats_settings": [b"stats settings\r\n"],
    "stats_unknown": [b"stats nonsense\r\n", b"stats bogus 1 2\r\n"],
    "stats_sizes": [b"stats sizes\r\n"],
    "stats_detail": [b"stats detail dump\r\n", b"stats detail on\r\n",
                     b"set p:a 0 0 1\r\nx\r\nget p:a\r\nget p:b\r\ndelete p:a\r\n",
                     b"stats detail dump\r\n", b"stats detail off\r\n", b"stats detail\r\n",
                     b"stats detail bogus\r\n"],
    "stats_reset": [b"stats reset\r\n"],
    # --- dumps and the crawler (replies that do not depend on stored items) ------
    "lru_crawler_args": [b"lru_crawler\r\n", b"lru_crawler foo\r\n", b"lru_crawler metadump\r\n",
                         b"lru_crawler metadump 64\r\n", b"lru_crawler metadump 0\r\n",
                         b"lru_crawler metadump 1,x\r\n", b"lru_crawler metadump all extra\r\n",
                         # A crawl that starts runs on in memcached (a second one
                         # answers BUSY at times): only refusals are compared.
                         b"lru_crawler crawl 64\r\n", b"lru_crawler crawl x\r\n",
                         b"lru_crawler crawl\r\n",
                         b"lru_crawler enable x\r\n", b"lru_crawler sleep 2000000\r\n",
                         b"lru_crawler sleep x\r\n", b"lru_crawler sleep -1\r\n",
                         b"lru_crawler sleep 100\r\n", b"lru_crawler tocrawl x\r\n",
                         b"lru_crawler tocrawl -1\r\n", b"lru_crawler tocrawl 0\r\n",
                         # memcached drops what is pipelined behind a dump: read these quietly.
                         Quiet(b"lru_crawler metadump 63\r\n"),
                         Quiet(b"lru_crawler metadump ,63,\r\n"), b"version\r\n"],
    "stats_cachedump_args": [b"stats cachedump\r\n", b"stats cachedump 1\r\n",
                             b"stats cachedump 64 0\r\n", b"stats cachedump x y\r\n",
                             b"stats cachedump -1 0\r\n", b"stats cachedump 1 -1\r\n",
                             b"stats cachedump 63 0\r\n", b"stats cachedump 63 0 0\r\n"],
}


# Scripts whose output depends on which slab classes hold items: flushed
# items stay linked until the background LRU crawler reclaims them, at
# moments that differ between the two processes, so these run on a fresh
# pair of servers.
FRESH_SCRIPTS = {
    "stats_items_slabs": [b"stats items\r\n",
                          b"set a 0 0 1\r\nx\r\nset b 0 0 3000\r\n" + b"y" * 3000 + b"\r\n",
                          b"stats items\r\n", b"stats slabs\r\n", b"stats reset\r\n",
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


@pytest.fixture
def fresh_sides(tmp_path):
    if not os.access(REFERENCE_MEMCACHED, os.X_OK):
        pytest.skip("reference %s not installed" % REFERENCE_MEMCACHED)
    ref_factory = ServerFactory(str(tmp_path / "ref"), binary=REFERENCE_MEMCACHED)
    sut_factory = ServerFactory(str(tmp_path / "sut"))
    os.makedirs(str(tmp_path / "ref"))
    os.makedirs(str(tmp_path / "sut"))
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


def fmt(tokens):
    return "\n".join("    %r" % ((t if not isinstance(t, bytes) or len(t) < 300
                                   else t[:150] + b"..." + t[-60:]),) for t in tokens)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script(sides, name):
    reset(sides)
    i, datas, replies, _ = run_script(sides, SCRIPTS[name])
    if i is not None:
        pytest.fail("script %r diverged at step %d\nsent: %r\nmemcached 1.6.18:\n%s\n"
                    "under test:\n%s" % (name, i, datas[0][:400], fmt(replies[0]), fmt(replies[1])),
                    pytrace=False)


@pytest.mark.parametrize("name", sorted(FRESH_SCRIPTS))
def test_script_fresh_servers(fresh_sides, name):
    i, datas, replies, _ = run_script(fresh_sides, FRESH_SCRIPTS[name])
    if i is not None:
        pytest.fail("script %r diverged at step %d\nsent: %r\nmemcached 1.6.18:\n%s\n"
                    "under test:\n%s" % (name, i, datas[0][:400], fmt(replies[0]), fmt(replies[1])),
                    pytrace=False)


def test_sentinel_detects_difference(sides):
    """Self-check of the harness: a step whose reply differs must be caught
    (the two sides are sent different bytes on purpose)."""
    reset(sides)
    steps = [lambda side: b"get nothere\r\n" if side.name == "memcached" else b"bogus\r\n"]
    i, _, replies, _ = run_script(sides, steps)
    assert i == 0
    assert replies[0] == [b"END", b"VERSION <v>"]
    assert replies[1] == [b"ERROR", b"VERSION <v>"]


def test_cas_normalisation_keeps_relations(sides):
    """CAS values are compared by relation: distinct values stay distinct."""
    reset(sides)
    i, _, _, transcript = run_script(sides, [b"set a 0 0 1\r\nx\r\nset b 0 0 1\r\ny\r\ngets a b a\r\n"])
    assert i is None
    toks = transcript[0][1][0]
    assert toks[2].startswith(b"VALUE a 0 1 CAS1\r\n")
    assert toks[3].startswith(b"VALUE b 0 1 CAS2\r\n")
    assert toks[4].startswith(b"VALUE a 0 1 CAS1\r\n")
    side = sides[0]
    assert len(side.cas_map) == 2
