"""Secure defaults (README "Security"): loopback only unless -l, UDP off,
no running as root without -u, `shutdown` only with -A, dumping off with -X.

Where a default is memcached's too, the same check runs against Debian's
memcached; the loopback default is memstash's own (memcached binds every
interface), so that one is asserted only for memstashd.
"""

import subprocess

import pytest

from conftest import IS_ROOT, REFERENCE_MEMCACHED, free_port, require_binary


def sockets(proto, port):
    """(local address hex, state) of every /proc/net/<proto>{,6} socket on port."""
    out = []
    for name in (proto, proto + "6"):
        try:
            with open("/proc/net/" + name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if int(hexport, 16) == port:
                out.append((name, addr, fields[3]))
    return out


@pytest.mark.memstash_only
def test_listens_on_loopback_only_by_default(server):
    listening = [s for s in sockets("tcp", server.port) if s[2] == "0A"]
    assert listening == [("tcp", "0100007F", "0A")]
    with server.client() as c:
        assert c.stats(b"settings")["inter"] == "127.0.0.1"


def test_udp_is_off_by_default(server):
    assert sockets("udp", server.port) == []
    with server.client() as c:
        assert c.stats(b"settings")["udpport"] == "0"


@pytest.mark.skipif(not IS_ROOT, reason="only meaningful when the tests run as root")
def test_refuses_root_without_u():
    for binary in (require_binary(), REFERENCE_MEMCACHED):
        p = subprocess.run([binary, "-p", str(free_port()), "-l", "127.0.0.1"],
                           capture_output=True, timeout=30)
        assert p.returncode == 64
        assert p.stderr.decode() == "can't run as root without the -u switch\n"


def test_shutdown_needs_A(server_factory):
    srv = server_factory()
    with srv.client() as c:
        assert c.call(b"shutdown\r\n") == b"ERROR: shutdown not enabled\r\n"
        assert c.call(b"shutdown graceful\r\n") == b"ERROR: shutdown not enabled\r\n"
        assert c.stats(b"settings")["shutdown_command"] == "no"
    assert srv.alive()
    enabled = server_factory("-A")
    with enabled.client() as c:
        assert c.stats(b"settings")["shutdown_command"] == "yes"
        c.send(b"shutdown\r\n")
        assert c.wait_closed(timeout=10.0)
    assert enabled.wait_exit(15.0) == 0


def test_dump_setting(server_factory):
    with server_factory().client() as c:
        assert c.stats(b"settings")["dump_enabled"] == "yes"
    with server_factory("-X").client() as c:
        assert c.stats(b"settings")["dump_enabled"] == "no"


def test_auth_settings_shown(server_factory, tmp_path):
    path = tmp_path / "authfile"
    path.write_text("u:p\n")
    with server_factory().client() as c:
        st = c.stats(b"settings")
        assert (st["auth_enabled_sasl"], st["auth_enabled_ascii"]) == ("no", "no")
    srv = server_factory("-Y", str(path))
    with srv.client() as c:
        c.send(b"set a 0 0 3\r\nu p\r\n")
        assert c.read_line() == b"STORED\r\n"
        assert c.stats(b"settings")["auth_enabled_ascii"] == str(path)
