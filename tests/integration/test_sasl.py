"""SASL authentication (-S) over the binary protocol, as memcached 1.6 does it.

The SASL configuration is memcached's: SASL_CONF_PATH names a directory with
memcached.conf (mech_list, sasldb_path), the sasldb is made with
`saslpasswd2 -a memcached`, and MEMCACHED_SASL_PWDB names a user:password file
that PLAIN checks.  Every raw exchange runs against memstashd and, beside it,
Debian's /usr/bin/memcached -S with the same configuration; the answers must
be the same.
"""

import hashlib
import hmac
import os
import shutil
import socket
import subprocess

import pytest

from conftest import (IS_MEMCACHED, MEMSTASHD, REFERENCE_MEMCACHED, RawClient, ServerFactory,
                      free_port, require_binary, user_args)
from test_binary import (GET, NOOP, SASL_AUTH, SASL_LIST, SASL_STEP, SET, STAT, VERSION,
                         BinConn, req, store_extras)

USER = "alice"
PASSWORD = "s3cret-pw"
PWDB_USER = "bob"
PWDB_PASSWORD = "pwdb-pass"

AUTH_ERROR = 0x20
AUTH_CONTINUE = 0x21
UNKNOWN = 0x81

pytestmark = pytest.mark.skipif(shutil.which("saslpasswd2") is None,
                                reason="saslpasswd2 (sasl2-bin) is not installed")


@pytest.fixture
def sasl_conf(tmp_path, monkeypatch):
    """A SASL_CONF_PATH directory with a sasldb holding USER, and a pwdb
    file holding PWDB_USER, both exported to the servers' environment."""
    conf = tmp_path / "sasl"
    conf.mkdir()
    db = conf / "memcached.sasldb"
    (conf / "memcached.conf").write_text(
        "mech_list: plain cram-md5\nsasldb_path: %s\n" % db)
    subprocess.run(["saslpasswd2", "-a", "memcached", "-c", "-f", str(db), "-p", USER],
                   input=PASSWORD.encode(), check=True, timeout=30)
    pwdb = conf / "pwdb"
    pwdb.write_text("nobody:x\n%s:%s\n" % (PWDB_USER, PWDB_PASSWORD))
    monkeypatch.setenv("SASL_CONF_PATH", str(conf))
    monkeypatch.setenv("MEMCACHED_SASL_PWDB", str(pwdb))
    return conf


@pytest.fixture
def pair(sasl_conf, tmp_path):
    """memstashd -S and memcached -S with the same SASL configuration."""
    factory = ServerFactory(str(tmp_path))
    try:
        ours = factory("-S")
        ref = factory("-S", binary=REFERENCE_MEMCACHED, name="memcached")
        yield ours, ref
    finally:
        factory.teardown()


def packets(srv, data, expect, timeout=5.0):
    """Sends data on a new connection; returns `expect` packets as
    (opcode, status, body) and whether the server then closed."""
    with srv.client(timeout=timeout) as raw:
        b = BinConn(raw)
        b.send(data)
        out = []
        for _ in range(expect):
            p = b.read_packet()
            out.append((p.opcode, p.status, p.value))
        return out, raw.wait_closed(timeout=1.0)


def plain(user, password):
    return ("\0%s\0%s" % (user, password)).encode()


def both(pair, data, expect):
    ours, ref = pair
    a = packets(ours, data, expect)
    b = packets(ref, data, expect)
    assert a == b, "memstashd %r != memcached %r" % (a, b)
    return a


def test_list_mechs(pair):
    (got,), closed = both(pair, req(SASL_LIST), 1)
    assert got[:2] == (SASL_LIST, 0)
    mechs = got[2].split(b" ")
    assert b"PLAIN" in mechs and b"CRAM-MD5" in mechs
    assert not closed


def test_unauthenticated_request_is_refused_and_closed(pair):
    got, closed = both(pair, req(GET, b"foo"), 1)
    assert got == [(GET, AUTH_ERROR, b"Auth failure.")]
    assert closed
    got, closed = both(pair, req(STAT), 1)
    assert got == [(STAT, AUTH_ERROR, b"Auth failure.")]
    assert closed


def test_version_needs_no_auth(pair):
    ours, _ = pair
    (got,), closed = packets(ours, req(VERSION), 1)
    assert got[:2] == (VERSION, 0) and got[2].startswith(b"1.6.")
    assert not closed


def test_plain_auth_then_commands(pair):
    data = (req(SASL_AUTH, b"PLAIN", value=plain(USER, PASSWORD))
            + req(SET, b"k", store_extras(7, 0), b"value")
            + req(GET, b"k") + req(NOOP))
    got, closed = both(pair, data, 4)
    assert got[0] == (SASL_AUTH, 0, b"Authenticated")
    assert got[1][:2] == (SET, 0)
    assert got[2] == (GET, 0, b"value")
    assert got[3] == (NOOP, 0, b"")
    assert not closed


def test_wrong_password_then_refused(pair):
    data = req(SASL_AUTH, b"PLAIN", value=plain(USER, "wrong")) + req(NOOP)
    got, closed = both(pair, data, 2)
    assert got == [(SASL_AUTH, AUTH_ERROR, b"Auth failure."), (NOOP, AUTH_ERROR, b"Auth failure.")]
    assert closed


def test_unknown_user_and_mech_and_early_step(pair):
    for data, op in ((req(SASL_AUTH, b"PLAIN", value=plain("mallory", PASSWORD)), SASL_AUTH),
                     (req(SASL_AUTH, b"BOGUS", value=plain(USER, PASSWORD)), SASL_AUTH),
                     (req(SASL_STEP, b"PLAIN", value=plain(USER, PASSWORD)), SASL_STEP)):
        got, _ = both(pair, data, 1)
        assert got == [(op, AUTH_ERROR, b"Auth failure.")]


def test_failed_reauth_drops_authentication(pair):
    data = (req(SASL_AUTH, b"PLAIN", value=plain(USER, PASSWORD))
            + req(SASL_AUTH, b"PLAIN", value=plain(USER, "wrong")) + req(GET, b"k"))
    got, closed = both(pair, data, 3)
    assert got[0] == (SASL_AUTH, 0, b"Authenticated")
    assert got[1] == (SASL_AUTH, AUTH_ERROR, b"Auth failure.")
    assert got[2] == (GET, AUTH_ERROR, b"Auth failure.")
    assert closed


@pytest.mark.memstash_only
def test_pwdb_file_is_checked_for_plain(pair):
    # Debian's memcached is built without --enable-sasl-pwdb, so only
    # memstashd is asked here; the sasldb user keeps working beside it.
    ours, _ = pair
    data = req(SASL_AUTH, b"PLAIN", value=plain(PWDB_USER, PWDB_PASSWORD)) + req(GET, b"nokey")
    got, _ = packets(ours, data, 2)
    assert got == [(SASL_AUTH, 0, b"Authenticated"), (GET, 0x01, b"Not found")]
    got, closed = packets(ours, req(SASL_AUTH, b"PLAIN", value=plain(PWDB_USER, "nope")), 1)
    assert got == [(SASL_AUTH, AUTH_ERROR, b"Auth failure.")]
    assert not closed
    got, _ = packets(ours, req(SASL_AUTH, b"PLAIN", value=plain(USER, PASSWORD)), 1)
    assert got == [(SASL_AUTH, 0, b"Authenticated")]


def cram_md5(srv, password):
    with srv.client() as raw:
        b = BinConn(raw)
        b.send(req(SASL_AUTH, b"CRAM-MD5"))
        p = b.read_packet()
        assert (p.opcode, p.status) == (SASL_AUTH, AUTH_CONTINUE)
        assert p.value.startswith(b"<") and p.value.endswith(b">")
        digest = hmac.new(password.encode(), p.value, hashlib.md5).hexdigest()
        b.send(req(SASL_STEP, b"CRAM-MD5", value=("%s %s" % (USER, digest)).encode())
               + req(GET, b"nokey"))
        step = b.read_packet()
        get = b.read_packet()
        return (step.opcode, step.status, step.value), (get.opcode, get.status)


def test_cram_md5_challenge_response(pair):
    for srv in pair:
        step, get = cram_md5(srv, PASSWORD)
        assert step == (SASL_STEP, 0, b"Authenticated")
        assert get == (GET, 0x01)
        step, get = cram_md5(srv, "wrong")
        assert step == (SASL_STEP, AUTH_ERROR, b"Auth failure.")
        assert get == (GET, AUTH_ERROR)


def test_text_protocol_is_closed(pair):
    for srv in pair:
        with srv.client(timeout=3.0) as raw:
            raw.send(b"version\r\n" * 4)
            assert raw.wait_closed(timeout=3.0)


def test_auth_stats(pair):
    ours, ref = pair
    for srv in pair:
        packets(srv, req(SASL_AUTH, b"PLAIN", value=plain(USER, "bad")), 1)
        data = (req(SASL_AUTH, b"PLAIN", value=plain(USER, PASSWORD)) + req(STAT, b"")
                + req(NOOP))
        with srv.client() as raw:
            b = BinConn(raw)
            b.send(data)
            assert b.read_packet().status == 0
            stats = {}
            for _ in range(1000):
                p = b.read_packet()
                if not p.key:
                    break
                stats[p.key] = p.value
        assert stats[b"auth_cmds"] == b"2"
        assert stats[b"auth_errors"] == b"1"


def test_pylibmc(pair):
    pylibmc = pytest.importorskip("pylibmc")
    for srv in pair:
        addr = ["127.0.0.1:%d" % srv.port]
        good = pylibmc.Client(addr, binary=True, username=USER, password=PASSWORD)
        try:
            assert good.set("plk", b"pv")
            assert good.get("plk") == b"pv"
            assert good.add("plk2", "5")
            assert good.incr("plk2", 1) == 6
        finally:
            good.disconnect_all()
        for kw in ({"username": USER, "password": "wrong"}, {}):
            bad = pylibmc.Client(addr, binary=True, **kw)
            try:
                with pytest.raises(pylibmc.Error):
                    bad.set("plk", b"x")
                try:
                    value = bad.get("plk")
                except pylibmc.Error:
                    value = None
                assert value is None
            finally:
                bad.disconnect_all()
        check = pylibmc.Client(addr, binary=True, username=USER, password=PASSWORD)
        try:
            assert check.get("plk") == b"pv"
        finally:
            check.disconnect_all()


@pytest.mark.parametrize("args,message", [
    (["-B", "ascii"], "ERROR: You cannot allow the ASCII protocol while using SASL.\n"),
    (["-B", "auto"], "ERROR: You cannot allow the ASCII protocol while using SASL.\n"),
])
def test_startup_rules(sasl_conf, args, message):
    for binary in (require_binary(), REFERENCE_MEMCACHED):
        p = subprocess.run([binary, "-S", "-p", str(free_port())] + user_args() + args,
                           capture_output=True, timeout=30)
        assert p.returncode == 64
        assert p.stderr.decode() == message


def test_udp_is_refused(sasl_conf):
    for binary in (require_binary(), REFERENCE_MEMCACHED):
        p = subprocess.run([binary, "-S", "-p", str(free_port()), "-U", str(free_port())]
                           + user_args(), capture_output=True, timeout=30)
        assert p.returncode == 64
        assert p.stderr.decode() == (
            "ERROR: Cannot enable UDP while using binary SASL authentication.\n")


def test_without_sasl_the_opcodes_are_unknown(server):
    got, closed = packets(server, req(SASL_LIST) + req(SASL_AUTH, b"PLAIN", value=b"\0a\0b"), 2)
    assert [g[:2] for g in got] == [(SASL_LIST, UNKNOWN), (SASL_AUTH, UNKNOWN)]
    assert not closed
