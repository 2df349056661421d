"""The server through pymemcache 3.5.2 (Debian python3-pymemcache).

pymemcache 3.5.2 has no gat/gats (added in 4.x) and no raw_command; those
commands are covered in test_raw_text.py / test_differential.py.

Note pymemcache's default_noreply=True: storage calls then return True
without reading a reply.  Most tests use default_noreply=False so replies are
really checked; the noreply tests verify effects with a later read.
"""

import pytest
from pymemcache import serde
from pymemcache.client.base import Client
from pymemcache.exceptions import (MemcacheClientError, MemcacheIllegalInputError,
                                   MemcacheServerError)

from conftest import IS_MEMCACHED

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def mc(shared_server):
    c = Client((shared_server.host, shared_server.port), default_noreply=False,
               connect_timeout=5, timeout=10)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def mc_noreply(shared_server):
    c = Client((shared_server.host, shared_server.port), connect_timeout=5, timeout=10)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def mc_pickle(shared_server):
    c = Client((shared_server.host, shared_server.port), default_noreply=False,
               serde=serde.pickle_serde, connect_timeout=5, timeout=10)
    try:
        yield c
    finally:
        c.close()


def test_set_get(mc, keyprefix):
    k = keyprefix + "a"
    assert mc.set(k, b"hello") is True
    assert mc.get(k) == b"hello"
    assert mc.get(keyprefix + "missing") is None
    assert mc.get(keyprefix + "missing", default=b"dflt") == b"dflt"
    assert mc.set(k, b"") is True
    assert mc.get(k) == b""
    # without a serde, non-bytes values are stored as str(value)
    assert mc.set(k, 12345) is True
    assert mc.get(k) == b"12345"
    assert mc.set(k, "text") is True
    assert mc.get(k) == b"text"


class FlagSerde:
    """Stores (bytes, flags) tuples verbatim and returns them on read, so the
    flags the server hands back are visible."""

    def serialize(self, key, value):
        return value[0], value[1]

    def deserialize(self, key, value, flags):
        return value, flags


@pytest.fixture
def mc_flags(shared_server):
    c = Client((shared_server.host, shared_server.port), default_noreply=False,
               serde=FlagSerde(), connect_timeout=5, timeout=10)
    try:
        yield c
    finally:
        c.close()


def test_flags(mc_flags, keyprefix):
    k = keyprefix + "f"
    for flags in (0, 1, 123, 65535, 4294967295):
        assert mc_flags.set(k, (b"v", flags)) is True
        assert mc_flags.get(k) == (b"v", flags)
    # append/prepend keep the original flags
    assert mc_flags.set(k, (b"mid", 7)) is True
    assert mc_flags.append(k, (b"_end", 99)) is True
    assert mc_flags.prepend(k, (b"start_", 98)) is True
    assert mc_flags.get(k) == (b"start_mid_end", 7)


def test_binary_safe_values(mc, keyprefix):
    k = keyprefix + "bin"
    val = bytes(range(256)) * 64 + b"\r\nEND\r\n" + b"\x00" * 100
    assert mc.set(k, val) is True
    assert mc.get(k) == val
    assert mc.gets(k)[0] == val


def test_large_values_near_limit(mc):
    key = "bigkey"
    n = 1048576 - 48 - 8 - (len(key) + 1) - 2
    val = bytes((i * 13) & 0xFF for i in range(n))
    assert mc.set(key, val) is True
    assert mc.get(key) == val
    with pytest.raises(MemcacheServerError) as ei:
        mc.set(key, val + b"x")
    assert "object too large for cache" in str(ei.value)
    # the failed set removed the old value
    assert mc.get(key) is None
    # 2 MB too
    with pytest.raises(MemcacheServerError):
        mc.set(key, b"y" * (2 * 1024 * 1024))
    # connection still usable
    assert mc.set(key, b"small") is True
    assert mc.get(key) == b"small"
    mc.delete(key)


def test_get_many(mc, keyprefix):
    values = {"%s%d" % (keyprefix, i): ("v%d" % i).encode() * (i % 7 + 1) for i in range(600)}
    assert mc.set_many(values) == []
    keys = list(values) + [keyprefix + "miss%d" % i for i in range(50)]
    got = mc.get_many(keys)
    assert got == values
    assert mc.get_multi(keys[:10]) == {k: values[k] for k in keys[:10]}
    assert mc.get_many([]) == {}
    gm = mc.gets_many(keys[:20])
    assert set(gm) == set(keys[:20])
    cas_ids = {v[1] for v in gm.values()}
    assert len(cas_ids) == 20
    assert all(gm[k][0] == values[k] for k in gm)


def test_gets_cas(mc, keyprefix):
    k = keyprefix + "c"
    assert mc.gets(k) == (None, None)
    assert mc.cas(k, b"v", b"1") is None          # NOT_FOUND
    mc.set(k, b"v1")
    v, cas = mc.gets(k)
    assert v == b"v1" and int(cas) > 0
    assert mc.cas(k, b"v2", cas) is True
    assert mc.get(k) == b"v2"
    assert mc.cas(k, b"v3", cas) is False         # EXISTS: stale cas
    assert mc.get(k) == b"v2"
    v, cas2 = mc.gets(k)
    assert cas2 != cas
    # noreply cas
    assert mc.cas(k, b"v4", cas2, noreply=True) is True
    assert mc.get(k) == b"v4"


def test_add_replace(mc, keyprefix):
    k = keyprefix + "ar"
    assert mc.replace(k, b"x") is False
    assert mc.add(k, b"1") is True
    assert mc.add(k, b"2") is False
    assert mc.get(k) == b"1"
    assert mc.replace(k, b"3") is True
    assert mc.get(k) == b"3"


def test_append_prepend(mc, keyprefix):
    k = keyprefix + "ap"
    assert mc.append(k, b"x") is False
    assert mc.prepend(k, b"x") is False
    mc.set(k, b"mid", flags=7)
    assert mc.append(k, b"_end") is True
    assert mc.prepend(k, b"start_") is True
    assert mc.get(k) == b"start_mid_end"


def test_delete(mc, keyprefix):
    k = keyprefix + "d"
    assert mc.delete(k) is False
    mc.set(k, b"x")
    assert mc.delete(k) is True
    assert mc.get(k) is None
    keys = [keyprefix + "dm%d" % i for i in range(20)]
    assert mc.set_many({kk: b"v" for kk in keys}) == []
    assert mc.delete_many(keys + [keyprefix + "nothere"]) is True
    assert mc.get_many(keys) == {}
    assert mc.delete_multi([]) is True


def test_incr_decr(mc, keyprefix):
    k = keyprefix + "n"
    assert mc.incr(k, 1) is None
    assert mc.decr(k, 1) is None
    mc.set(k, b"10")
    assert mc.incr(k, 5) == 15
    assert mc.decr(k, 3) == 12
    assert mc.decr(k, 100) == 0
    assert mc.get(k) == b"0 "             # padded in place
    mc.set(k, b"18446744073709551615")
    assert mc.incr(k, 1) == 0
    assert mc.incr(k, 18446744073709551615) == 18446744073709551615
    mc.set(k, b"abc")
    with pytest.raises(MemcacheClientError) as ei:
        mc.incr(k, 1)
    assert "non-numeric" in str(ei.value)
    with pytest.raises(MemcacheClientError):
        mc.decr(k, 1)
    mc.set(k, b"5")
    assert mc.incr(k, 1, noreply=True) is None
    assert mc.decr(k, 2, noreply=True) is None
    assert mc.get(k) == b"4"


def test_touch(mc, keyprefix):
    k = keyprefix + "t"
    assert mc.touch(k, 10) is False
    mc.set(k, b"x")
    assert mc.touch(k, 10) is True
    assert mc.touch(k, -1) is True
    assert mc.get(k) is None


def test_expire(mc, keyprefix):
    k = keyprefix + "e"
    assert mc.set(k, b"x", expire=-1) is True
    assert mc.get(k) is None
    assert mc.set(k, b"x", expire=1000) is True
    assert mc.get(k) == b"x"


def test_noreply_variants(mc_noreply, mc, keyprefix):
    k = keyprefix + "nr"
    c = mc_noreply
    assert c.set(k, b"1") is True
    assert c.add(k, b"2") is True            # not stored, reply not read
    assert c.replace(k, b"3") is True
    assert c.append(k, b"4") is True
    assert c.prepend(k, b"0") is True
    assert c.touch(k, 100) is True
    assert c.set_many({k + "a": b"A", k + "b": b"B"}) == []
    assert c.delete(k + "a") is True
    assert c.delete(k + "missing") is True
    assert c.delete_many([k + "b"]) is True
    assert c.get(k) == b"034"
    assert mc.get_many([k + "a", k + "b"]) == {}
    # a too-large noreply set is silently dropped and the connection stays
    # in sync
    assert c.set(k, b"z" * (1024 * 1024 + 10)) is True
    assert c.get(k) is None
    assert c.set(k, b"ok") is True
    assert c.get(k) == b"ok"


def test_pickle_serde(mc_pickle, keyprefix):
    k = keyprefix + "p"
    for value in ({"a": [1, 2, (3, 4)]}, [1.5, None, True], 42, "unicode ünïcødé", b"raw"):
        assert mc_pickle.set(k, value) is True
        assert mc_pickle.get(k) == value


def test_key_validation_client_side(mc):
    with pytest.raises(MemcacheIllegalInputError):
        mc.set("k" * 251, b"x")
    with pytest.raises(MemcacheIllegalInputError):
        mc.set("a b", b"x")
    assert mc.set("k" * 250, b"x") is True
    assert mc.get("k" * 250) == b"x"


def test_stats(mc, keyprefix):
    st = mc.stats()
    for f in (b"pid", b"uptime", b"curr_items", b"cmd_get", b"get_hits",
              b"get_misses", b"limit_maxbytes", b"threads", b"curr_connections"):
        assert f in st, f
    before = mc.stats()
    mc.set(keyprefix + "s", b"v")
    mc.get(keyprefix + "s")
    mc.get(keyprefix + "missing")
    after = mc.stats()
    assert after[b"cmd_get"] - before[b"cmd_get"] == 2
    assert after[b"get_hits"] - before[b"get_hits"] == 1
    assert after[b"get_misses"] - before[b"get_misses"] == 1
    assert after[b"cmd_set"] - before[b"cmd_set"] == 1
    settings = mc.stats("settings")
    assert settings[b"maxconns"] == 1024
    items = mc.stats("items")
    assert any(k.startswith(b"items:") for k in items)
    slabs = mc.stats("slabs")
    assert b"active_slabs" in slabs


def test_version(mc):
    v = mc.version()
    assert isinstance(v, bytes) and v
    if IS_MEMCACHED:
        assert v == b"1.6.18"


def test_flush_all(server):
    c = Client((server.host, server.port), default_noreply=False, connect_timeout=5, timeout=10)
    try:
        c.set("a", b"1")
        c.set("b", b"2")
        assert c.flush_all() is True
        assert c.get_many(["a", "b"]) == {}
        c.set("a", b"3")
        assert c.flush_all(noreply=True) is True
        assert c.get("a") is None
        c.set("a", b"4")
        assert c.get("a") == b"4"
        assert c.cache_memlimit(100) is True
        assert c.stats()[b"limit_maxbytes"] == 100 * 1024 * 1024
    finally:
        c.close()


def test_quit(shared_server):
    c = Client((shared_server.host, shared_server.port), default_noreply=False,
               connect_timeout=5, timeout=10)
    try:
        c.set("quitkey", b"v")
        c.quit()
        # reconnects transparently
        assert c.get("quitkey") == b"v"
    finally:
        c.close()
