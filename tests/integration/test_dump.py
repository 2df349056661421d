"""Listing what the cache holds: lru_crawler metadump / mgdump and
stats cachedump, checked against the items the test stored and, where the
two agree by design, against Debian's memcached 1.6.18 run beside it.

memstash-specific expectations (marked memstash_only):
  * requests pipelined behind a metadump are answered after its END
    (memcached 1.6.18 drops them);
  * mgdump exists (memcached has it from 1.6.19 on);
  * stats cachedump lists every live item of the class (memcached only those
    in its COLD LRU) and leaves out flushed items (memcached lists them until
    its crawler reclaims them).
"""

import base64
import re
import time
import urllib.parse

import pytest

from conftest import IS_MEMCACHED, REFERENCE_MEMCACHED, RawClient, poll_until

META_LINE = re.compile(
    rb"key=(\S+) exp=(-1|\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) size=(\d+)\Z")
CACHE_LINE = re.compile(rb"ITEM (\S+) \[(\d+) b; (\d+) s\]\Z")


def raw(srv, timeout=10.0):
    return RawClient(port=srv.port, timeout=timeout)


def metadump(c, arg=b"all", timeout=30.0):
    """Sends a metadump and returns {key bytes: fields} for its lines."""
    c.send(b"lru_crawler metadump " + arg + b"\r\n")
    body = c.read_until(re.compile(rb"(?:\A|\n)END\r\n"), timeout)
    lines = body[:-len(b"END\r\n")].split(b"\n")
    assert lines[-1] == b""
    rows = {}
    for line in lines[:-1]:
        m = META_LINE.match(line)
        assert m, "malformed metadump line %r" % line
        key = urllib.parse.unquote_to_bytes(m.group(1).decode())
        assert key not in rows, "key %r listed twice" % key
        rows[key] = {"exp": int(m.group(2)), "la": int(m.group(3)), "cas": int(m.group(4)),
                     "fetch": m.group(5) == b"yes", "cls": int(m.group(6)),
                     "size": int(m.group(7)), "raw": m.group(1)}
    return rows


def store(c, key, value, flags=0, exptime=0):
    c.check(b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(value), value), b"STORED\r\n")


def gets_cas(c, key):
    got = c.call(b"gets " + key + b"\r\n")
    return int(got.split(b"\r\n")[0].split()[4])


def fill(c, n, prefix=b"k", size=10):
    """n distinct keys with pipelined noreply sets, then a sync."""
    batch = []
    for i in range(n):
        batch.append(b"set %s%d 0 0 %d noreply\r\n%s\r\n" % (prefix, i, size, b"v" * size))
        if len(batch) == 2000:
            c.send(b"".join(batch))
            batch = []
    c.send(b"".join(batch))
    assert c.call(b"") == b""


def test_metadump_lists_every_item_with_its_metadata(server_factory):
    ms = server_factory()
    # memcached's flat LRU: its segmented one moves fetched items between
    # queues while the crawler walks them, and the dump can miss them.
    mc = server_factory("-o", "no_lru_maintainer", binary=REFERENCE_MEMCACHED)
    keys = {b"plain": (b"v1", 0), b"pct%20key": (b"v2", 100), b"caf\xc3\xa9": (b"v3", 0),
            b"a/b:c~d.e_f-g": (b"v4", 3600)}
    seen = {}
    for srv in (ms, mc):
        with raw(srv) as c:
            now = time.time()
            for k, (v, ttl) in keys.items():
                store(c, k, v, exptime=ttl)
            c.check(b"get plain\r\n", b"VALUE plain 0 2\r\nv1\r\nEND\r\n")
            rows = metadump(c)
            assert set(rows) == set(keys)
            for k, (v, ttl) in keys.items():
                r = rows[k]
                if ttl == 0:
                    assert r["exp"] == -1
                else:
                    assert abs(r["exp"] - (now + ttl)) <= 2
                assert abs(r["la"] - now) <= 2
                assert r["fetch"] == (k == b"plain")
                assert r["cas"] == gets_cas(c, k)
                assert r["cls"] >= 1 and r["size"] > len(k) + len(v)
            # The encoding keeps [A-Za-z0-9-._~] and escapes the rest as %XX.
            assert rows[b"pct%20key"]["raw"] == b"pct%2520key"
            assert rows[b"caf\xc3\xa9"]["raw"] == b"caf%C3%A9"
            assert rows[b"a/b:c~d.e_f-g"]["raw"] == b"a%2Fb%3Ac~d.e_f-g"
            seen[srv] = {k: (r["exp"] == -1, r["fetch"], r["raw"]) for k, r in rows.items()}
    assert seen[ms] == seen[mc]


def test_metadump_class_filter_and_stats_items_agree(server):
    with raw(server) as c:
        store(c, b"small", b"x")
        store(c, b"big", b"y" * 5000)
        rows = metadump(c)
        classes = {r["cls"] for r in rows.values()}
        assert len(classes) == 2
        items = c.stats(b"items")
        for cls in classes:
            assert items["items:%d:number" % cls] == "1"
        small = rows[b"small"]["cls"]
        assert set(metadump(c, b"%d" % small)) == {b"small"}
        assert set(metadump(c, b"%d,%d" % (small, rows[b"big"]["cls"]))) == {b"small", b"big"}
        assert set(metadump(c, b"hash")) == {b"small", b"big"}


def test_expired_and_flushed_items_are_not_listed(server):
    with raw(server) as c:
        store(c, b"short", b"x", exptime=1)
        store(c, b"long", b"x")
        # A 1-second TTL runs out at the server's next clock tick or the one
        # after (bounded poll).
        assert poll_until(lambda: set(metadump(c)) == {b"long"}, 10.0, 0.1)
        c.check(b"flush_all\r\n", b"OK\r\n")
        assert metadump(c) == {}
        if not IS_MEMCACHED:  # memcached's cachedump still lists flushed items
            c.check(b"stats cachedump 1 0\r\n", b"END\r\n")


def test_big_dump_streams_every_key_once_to_a_slow_reader(server_factory):
    n = 60000
    srv = server_factory("-m", "128")
    with raw(srv, timeout=60.0) as c, raw(srv) as other:
        fill(c, n)
        c.send(b"lru_crawler metadump all\r\n")
        # Read slowly at first: the server must wait, not buffer the whole dump.
        first = c.sock.recv(4096)
        time.sleep(0.5)
        # Another client is served meanwhile.
        other.check(b"get k7\r\n", b"VALUE k7 0 10\r\nvvvvvvvvvv\r\nEND\r\n")
        c.buf = first
        body = c.read_until(re.compile(rb"\nEND\r\n"), timeout=60.0)
        lines = body.split(b"\n")[:-2]
        keys = [META_LINE.match(line).group(1) for line in lines]
        assert len(keys) == n and len(set(keys)) == n
        assert set(keys) == {b"k%d" % i for i in range(n)}
        # The connection is in sync afterwards.
        c.check(b"get k1\r\n", b"VALUE k1 0 10\r\nvvvvvvvvvv\r\nEND\r\n")


@pytest.mark.memstash_only
def test_requests_behind_a_dump_are_answered_after_it(server):
    with raw(server) as c:
        store(c, b"a", b"1")
        c.send(b"lru_crawler metadump all\r\nget a\r\nlru_crawler mgdump all\r\nget a\r\n")
        got = c.read_until(b"EN\r\nVALUE a 0 1\r\n1\r\nEND\r\n")
        assert re.match(rb"key=a exp=-1 la=\d+ cas=\d+ fetch=no cls=\d+ size=\d+\n"
                        rb"END\r\nVALUE a 0 1\r\n1\r\nEND\r\nmg a\r\nEN\r\n", got), got


@pytest.mark.memstash_only
def test_mgdump_lines_replay_as_meta_gets(server):
    with raw(server) as c:
        store(c, b"t1", b"a")
        store(c, b"t2", b"b")
        bkey = b"bin\x00key"
        b64 = base64.b64encode(bkey)
        c.check(b"ms %s 1 b\r\nz\r\n" % b64, b"HD\r\n")
        c.send(b"lru_crawler mgdump all\r\n")
        body = c.read_until(re.compile(rb"(?:\A|\r\n)EN\r\n"))
        lines = body.split(b"\r\n")[:-2]
        assert sorted(lines) == sorted([b"mg t1", b"mg t2", b"mg %s b" % b64])
        # Each line is a valid request: replaying them hits every item.
        c.send(b"".join(line + b" v\r\n" for line in lines) + b"mn\r\n")
        replies = c.read_until(b"MN\r\n")
        assert replies.count(b"VA 1") == 3


def test_dumps_refused_with_X(server_factory):
    answers = []
    for binary in (None, REFERENCE_MEMCACHED):
        srv = server_factory("-X", binary=binary)
        with raw(srv) as c:
            answers.append(c.call(b"lru_crawler metadump all\r\nstats cachedump 1 0\r\n"))
            if binary is None and not IS_MEMCACHED:  # mgdump is 1.6.19+
                c.check(b"lru_crawler mgdump all\r\n", b"ERROR key dump not allowed\r\n")
    assert answers[0] == answers[1] == (b"ERROR metadump not allowed\r\n"
                                        b"CLIENT_ERROR stats cachedump not allowed\r\n")


@pytest.mark.memstash_only
def test_cachedump_limit_and_cap(server_factory):
    """memcached lists only items that reached its COLD LRU, so a fresh item
    is missing there; memstash lists every live item of the class."""
    srv = server_factory("-m", "128")
    with raw(srv, timeout=30.0) as c:
        store(c, b"solo", b"12345", exptime=500)
        cls = metadump(c)[b"solo"]["cls"]
        got = c.call(b"stats cachedump %d 0\r\n" % cls)
        m = CACHE_LINE.match(got.split(b"\r\n")[0])
        assert m and m.group(1) == b"solo" and m.group(2) == b"5"
        assert abs(int(m.group(3)) - (time.time() + 500)) <= 2
        # A limit, then the 2 MB cap of memcached.
        long_prefix = b"p" * 200
        fill(c, 12000, prefix=long_prefix, size=5)
        big = metadump(c)[long_prefix + b"0"]["cls"]
        got = c.call(b"stats cachedump %d 3\r\n" % big)
        assert got.count(b"ITEM ") == 3 and got.endswith(b"END\r\n")
        got = c.call(b"stats cachedump %d 0\r\n" % big)
        assert got.endswith(b"END\r\n")
        lines = got.split(b"\r\n")[:-2]
        assert all(CACHE_LINE.match(line) for line in lines)
        # 12,000 lines of ~225 bytes exceed 2 MB: the reply stops at the cap.
        assert 1000 < len(lines) < 12000
        assert len(got) <= 2 * 1024 * 1024 + 5


@pytest.mark.memstash_only
def test_crawler_disable_and_enable(server):
    """memcached 1.6.18's replies, checked by hand against it: its own answer
    to a metadump right after a disable depends on when its crawler thread
    stops ("ERROR an unknown error happened" while it winds down), so this is
    not a side-by-side test."""
    with raw(server) as c:
        c.check(b"lru_crawler disable\r\nlru_crawler disable\r\n", b"OK\r\nOK\r\n")
        c.check(b"lru_crawler metadump all\r\nlru_crawler mgdump all\r\n"
                b"lru_crawler crawl all\r\n",
                b"CLIENT_ERROR lru crawler disabled\r\n" * 3)
        c.check(b"lru_crawler enable\r\nlru_crawler enable\r\n",
                b"OK\r\nERROR failed to start lru crawler thread\r\n")
        store(c, b"back", b"1")
        assert set(metadump(c)) == {b"back"}
        # memstash has no crawl to wait for: every accepted crawl is OK.
        c.check(b"lru_crawler crawl all\r\nlru_crawler crawl 1,2,3\r\nlru_crawler crawl 63\r\n",
                b"OK\r\n" * 3)
        assert c.stats(b"settings")["lru_crawler"] == "yes"
