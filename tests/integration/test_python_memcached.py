"""The server through python-memcached 1.59 (Debian python3-memcache,
`import memcache`).  Return conventions are those of 1.59 (clients.md §1):
delete returns 1 for DELETED *and* NOT_FOUND, storage commands return
True/False, incr/decr return int or None and leak ValueError on CLIENT_ERROR.
"""

import pickle

import memcache
import pytest

from conftest import IS_MEMCACHED


def make_client(srv, **kw):
    kw.setdefault("socket_timeout", 10)
    return memcache.Client(["%s:%d" % (srv.host, srv.port)], **kw)


@pytest.fixture
def mc(shared_server):
    c = make_client(shared_server)
    try:
        yield c
    finally:
        c.disconnect_all()


@pytest.fixture
def mc_cas(shared_server):
    c = make_client(shared_server, cache_cas=True)
    try:
        yield c
    finally:
        c.disconnect_all()


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def test_set_get_types(mc, keyprefix):
    k = keyprefix + "v"
    cases = [b"raw bytes \x00\xff\r\n", "unicode text: ünïcødé ✓ 漢字", 42, -7,
             2 ** 70, 1.5, None, True, [1, "two", 3.0], {"a": (1, 2)}, Point(3, 4)]
    for value in cases:
        assert mc.set(k, value) is True, value
        got = mc.get(k)
        assert got == value and type(got) is type(value), (value, got)


def test_flags_as_seen_by_raw_client(mc, shared_server, keyprefix):
    # python-memcached's flag conventions survive the round trip byte for byte
    k = keyprefix + "fl"
    with shared_server.client() as raw:
        for value, flags, data in ((b"b", 0, b"b"), ("s", 16, b"s"), (5, 2, b"5")):
            assert mc.set(k, value) is True
            assert raw.call(b"get " + k.encode() + b"\r\n") == \
                b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (k.encode(), flags, len(data), data)
        mc.set(k, [1, 2])
        got = raw.call(b"get " + k.encode() + b"\r\n")
        assert got.startswith(b"VALUE " + k.encode() + b" 1 ")
        body = got.split(b"\r\n", 1)[1].rsplit(b"\r\nEND\r\n", 1)[0]
        assert pickle.loads(body) == [1, 2]


def test_unicode_keys(mc):
    k = "über_ключ_键"
    assert mc.set(k, "wert") is True
    assert mc.get(k) == "wert"
    assert mc.get_multi([k]) == {k: "wert"}
    assert mc.delete(k) == 1


def test_compressed_values(mc, keyprefix):
    k = keyprefix + "z"
    value = "a" * 100000
    assert mc.set(k, value, min_compress_len=10) is True
    assert mc.get(k) == value


def test_set_multi_get_multi(mc, keyprefix):
    mapping = {"k%d" % i: ("value-%d" % i) * (i % 5 + 1) for i in range(500)}
    assert mc.set_multi(mapping, key_prefix=keyprefix) == []
    got = mc.get_multi(list(mapping) + ["missing1", "missing2"], key_prefix=keyprefix)
    assert got == mapping
    assert mc.get_multi([]) == {}
    # ints stay ints through the multi path
    assert mc.set_multi({"i1": 1, "i2": 2}, key_prefix=keyprefix) == []
    assert mc.get_multi(["i1", "i2"], key_prefix=keyprefix) == {"i1": 1, "i2": 2}


def test_add_replace_append_prepend(mc, keyprefix):
    k = keyprefix + "a"
    assert mc.replace(k, "x") is False
    assert mc.append(k, "x") is False
    assert mc.prepend(k, "x") is False
    assert mc.add(k, "mid") is True
    assert mc.add(k, "other") is False
    assert mc.append(k, "_end") is True
    assert mc.prepend(k, "start_") is True
    assert mc.get(k) == "start_mid_end"
    assert mc.replace(k, "new") is True
    assert mc.get(k) == "new"


def test_delete(mc, keyprefix):
    k = keyprefix + "d"
    mc.set(k, "x")
    assert mc.delete(k) == 1
    assert mc.get(k) is None
    # 1.59 returns 1 for NOT_FOUND too
    assert mc.delete(k) == 1
    assert mc.delete(k, noreply=True) == 1
    keys = ["m%d" % i for i in range(30)]
    assert mc.set_multi({kk: kk for kk in keys}, key_prefix=keyprefix) == []
    assert mc.delete_multi(keys, key_prefix=keyprefix) == 1
    assert mc.get_multi(keys, key_prefix=keyprefix) == {}


def test_delete_with_time_zero(mc, keyprefix):
    # python-memcached sends "delete <key> 0" when time is given; 1.6.18
    # accepts the legacy 0
    k = keyprefix + "d0"
    mc.set(k, "x")
    assert mc.delete(k, time=0) == 1
    assert mc.get(k) is None


def test_incr_decr(mc, keyprefix):
    k = keyprefix + "n"
    assert mc.incr(k) is None
    assert mc.decr(k) is None
    assert mc.set(k, 10) is True
    assert mc.incr(k) == 11
    assert mc.incr(k, 9) == 20
    assert mc.decr(k, 5) == 15
    assert mc.decr(k, 100) == 0
    assert mc.get(k) == 0                  # "0 " parses as int
    mc.set(k, 18446744073709551615)
    assert mc.incr(k, 1) == 0
    mc.set(k, 5)
    assert mc.incr(k, 3, noreply=True) is None
    assert mc.get(k) == 8
    mc.set(k, "text")
    with pytest.raises(ValueError):
        mc.incr(k)
    # the connection stays usable after the error
    assert mc.get(k) == "text"


def test_touch(mc, keyprefix):
    k = keyprefix + "t"
    assert mc.touch(k, 10) == 0
    mc.set(k, "x", time=1000)
    assert mc.touch(k, 0) == 1
    assert mc.touch(k, -1) == 1
    assert mc.get(k) is None


def test_expiry_negative_and_absolute(mc, keyprefix):
    import time
    k = keyprefix + "e"
    assert mc.set(k, "x", time=-1) is True
    assert mc.get(k) is None
    assert mc.set(k, "x", time=int(time.time()) - 100) is True
    assert mc.get(k) is None
    assert mc.set(k, "x", time=int(time.time()) + 100) is True
    assert mc.get(k) == "x"


def test_gets_cas(mc_cas, keyprefix):
    mc = mc_cas
    k = keyprefix + "c"
    assert mc.gets(k) is None
    mc.set(k, "v1")
    assert mc.gets(k) == "v1"
    assert mc.cas(k, "v2") is True         # matching cas id
    assert mc.get(k) == "v2"
    assert mc.cas(k, "v3") is False        # id is stale now -> EXISTS
    assert mc.get(k) == "v2"
    assert mc.gets(k) == "v2"
    other = make_client_from(mc)
    try:
        other.set(k, "changed")
    finally:
        other.disconnect_all()
    assert mc.cas(k, "mine") is False
    assert mc.get(k) == "changed"
    # cas on a key whose id is not cached is a plain set
    mc.reset_cas()
    assert mc.cas(k, "plain") is True
    assert mc.get(k) == "plain"


def make_client_from(c):
    return memcache.Client([str(s).split(" ")[0] for s in c.servers], socket_timeout=10)


def test_too_large_value(mc, keyprefix):
    k = keyprefix + "big"
    mc.set(k, b"small")
    # exactly 1 MiB passes the client check; the server refuses it
    assert mc.set(k, b"x" * (1024 * 1024)) is False
    assert mc.get(k) is None
    assert mc.set(k, b"y" * 1000000) is True
    assert mc.get(k) == b"y" * 1000000


def test_get_stats(mc, shared_server):
    stats = mc.get_stats()
    assert len(stats) == 1
    name, st = stats[0]
    assert name == "%s:%d (1)" % (shared_server.host, shared_server.port)
    for f in ("pid", "uptime", "time", "version", "curr_connections",
              "total_connections", "cmd_get", "cmd_set", "get_hits", "get_misses",
              "bytes", "curr_items", "total_items", "evictions", "limit_maxbytes",
              "threads"):
        assert f in st, f
    assert int(st["pid"]) == shared_server.pid
    if IS_MEMCACHED:
        assert st["version"] == "1.6.18"
    settings = mc.get_stats("settings")[0][1]
    assert settings["maxconns"] == "1024"
    assert settings["tcpport"] == str(shared_server.port)


def test_flush_all(server):
    mc = make_client(server)
    try:
        assert mc.set_multi({"a": 1, "b": 2}) == []
        assert mc.flush_all() is None
        assert mc.get_multi(["a", "b"]) == {}
        assert mc.set("a", 3) is True
        assert mc.get("a") == 3
        st = mc.get_stats()[0][1]
        assert st["cmd_flush"] == "1"
    finally:
        mc.disconnect_all()


def test_noreply_storage(mc, keyprefix):
    k = keyprefix + "nr"
    assert mc.set(k, "1", noreply=True) is True
    assert mc.add(k, "2", noreply=True) is True
    assert mc.replace(k, "3", noreply=True) is True
    assert mc.append(k, "4", noreply=True) is True
    assert mc.prepend(k, "0", noreply=True) is True
    assert mc.set_multi({k + "x": "X"}, noreply=True) == []
    assert mc.touch(k, 100, noreply=True) == 1
    assert mc.get(k) == "034"
    assert mc.get(k + "x") == "X"
