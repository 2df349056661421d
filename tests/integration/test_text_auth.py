"""Text-protocol authentication (-Y authfile), as memcached 1.5.15+ does it.

A connection must first send `set <any> <any> <any> <n>\\r\\n<user> <pass>\\r\\n`.
Every exchange runs against memstashd and Debian's memcached -Y with the same
file, one request per write (memcached drops the first of two auth replies
that arrive in one read; memstashd answers both).
"""

import subprocess
import time

import pytest

from conftest import (REFERENCE_MEMCACHED, ServerFactory, free_port, require_binary,
                      user_args)

USERS = {"bob": "pw1", "carol": "pw-two"}


@pytest.fixture
def authfile(tmp_path):
    path = tmp_path / "authfile"
    path.write_text("".join("%s:%s\n" % kv for kv in USERS.items()))
    return str(path)


@pytest.fixture
def pair(authfile, tmp_path):
    factory = ServerFactory(str(tmp_path))
    try:
        yield (factory("-Y", authfile),
               factory("-Y", authfile, binary=REFERENCE_MEMCACHED, name="memcached"))
    finally:
        factory.teardown()


def token(user, password, key=b"auth"):
    data = ("%s %s" % (user, password)).encode()
    return b"set %s 0 0 %d\r\n%s\r\n" % (key, len(data), data)


def script(srv, steps):
    """Sends each request on one connection, waiting for each answer line."""
    out = []
    with srv.client() as raw:
        for data in steps:
            raw.send(data)
            out.append(raw.read_line()[:-2])
    return out


def both(pair, steps):
    a = script(pair[0], steps)
    b = script(pair[1], steps)
    assert a == b, "memstashd %r != memcached %r" % (a, b)
    return a


def test_commands_before_auth_are_refused(pair):
    got = both(pair, [b"get foo\r\n", b"version\r\n", b"stats\r\n", b"mg foo v\r\n",
                      b"set x 0\r\n", b"delete foo\r\n"])
    assert got == [b"CLIENT_ERROR unauthenticated"] * 6


def test_good_token_then_normal_service(pair):
    got = both(pair, [token("bob", "pw1"), b"set k 5 0 3\r\nabc\r\n", b"touch k 0\r\n"])
    assert got[0] == b"STORED"
    assert got[1] == b"STORED"
    assert got[2] == b"TOUCHED"
    for srv in pair:
        with srv.client() as raw:
            raw.send(token("carol", "pw-two", key=b"anything"))
            assert raw.read_line()[:-2] == b"STORED"
            raw.send(b"get k\r\n")
            assert raw.read_until(b"END\r\n") == b"VALUE k 5 3\r\nabc\r\nEND\r\n"


def test_bad_tokens(pair):
    got = both(pair, [token("bob", "wrong"), token("mallory", "pw1"), token("bob", "pw1x"),
                      b"set k 0 0 6\r\nbobpw1\r\n", b"set k 0 0 5\r\nbob p\r\n",
                      b"get foo\r\n"])
    assert got == [b"CLIENT_ERROR authentication failure"] * 3 + [
        b"CLIENT_ERROR bad authentication token format",
        b"CLIENT_ERROR authentication failure",
        b"CLIENT_ERROR unauthenticated"]


def test_token_split_across_writes_and_noreply(pair):
    for srv in pair:
        with srv.client() as raw:
            raw.send(b"set k 0 0 7 noreply\r\nbob ")
            time.sleep(0.1)
            raw.send(b"pw1")
            time.sleep(0.1)
            raw.send(b"\r\n")
            assert raw.read_line()[:-2] == b"STORED"  # noreply does not apply to the token
            raw.send(b"get nokey\r\n")
            assert raw.read_line()[:-2] == b"END"


def test_bad_termination(pair):
    for srv in pair:
        with srv.client() as raw:
            raw.send(b"set k 0 0 7\r\nbob pw1XX")
            assert raw.read_line()[:-2] == b"CLIENT_ERROR bad command line termination"


def test_auth_stats(pair):
    for srv in pair:
        script(srv, [token("bob", "nope")])
        with srv.client() as raw:
            raw.send(token("bob", "pw1"))
            assert raw.read_line()[:-2] == b"STORED"
            stats = raw.stats()
        assert stats["auth_cmds"] == "2"
        assert stats["auth_errors"] == "1"


def test_binary_packet_gets_no_answer(pair):
    # -Y forces the text protocol: a binary header is an unfinished text line.
    for srv in pair:
        with srv.client(timeout=2.0) as raw:
            raw.send(b"\x80\x0b" + b"\x00" * 22)
            assert raw.read_quiet(quiet=0.5, total=2.0) == b""


def test_pymemcache_authenticates_with_a_set(pair):
    pymemcache = pytest.importorskip("pymemcache.client.base")
    for srv in pair:
        c = pymemcache.Client(("127.0.0.1", srv.port), timeout=5, connect_timeout=5)
        try:
            with pytest.raises(pymemcache.MemcacheClientError):
                c.get("k")
            c.close()
            assert c.set("auth", b"bob pw1", noreply=False)
            assert c.set("pk", b"pv", noreply=False)
            assert c.get("pk") == b"pv"
        finally:
            c.close()


@pytest.mark.parametrize("args,message", [
    (["-B", "binary"], "ERROR: You cannot allow the BINARY protocol while using ascii "
                       "authentication tokens.\n"),
    (["-B", "auto"], "ERROR: You cannot allow the BINARY protocol while using ascii "
                     "authentication tokens.\n"),
    (["-U", "PORT"], "Cannot use UDP with ascii authentication enabled (-U 0 to disable)\n"),
])
def test_startup_rules(authfile, args, message):
    args = [str(free_port()) if a == "PORT" else a for a in args]
    for binary in (require_binary(), REFERENCE_MEMCACHED):
        p = subprocess.run([binary, "-Y", authfile, "-p", str(free_port())] + user_args() + args,
                           capture_output=True, timeout=30)
        assert p.returncode == 64
        assert p.stderr.decode() == message


@pytest.mark.parametrize("content", ["bob:pw\n\ncarol:x\n", "bob:pw\nnocolon\n"])
def test_malformed_authfile(tmp_path, content):
    path = tmp_path / "bad"
    path.write_text(content)
    for binary in (require_binary(), REFERENCE_MEMCACHED):
        p = subprocess.run([binary, "-Y", str(path), "-p", str(free_port())] + user_args(),
                           capture_output=True, timeout=30)
        assert p.returncode == 1
        assert p.stderr.decode() == (
            "Authfile [%s] has a malformed entry. Should be 'user:password'" % path)


def test_missing_authfile(tmp_path):
    path = str(tmp_path / "missing")
    for binary in (require_binary(), REFERENCE_MEMCACHED):
        p = subprocess.run([binary, "-Y", path, "-p", str(free_port())] + user_args(),
                           capture_output=True, timeout=30)
        assert p.returncode == 1
        assert p.stderr.decode() == (
            "Could not open authfile [%s] for reading, error No such file or directory: "
            "No such file or directory\n" % path)
