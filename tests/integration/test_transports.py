"""Transports other than one IPv4 TCP listener: unix domain sockets (-s, -a),
IPv6 (-l [::1], -l [::1]:port), several listeners at once (comma separated
and repeated -l), and how `stats conns` names them (tcp:, tcp6:[...], unix:).

Expectations are Debian memcached 1.6.18's (verified live); where the
expectation is not a fixed value, memcached is run side by side with the
same arguments and compared.  Only 127.0.0.1, ::1 and unix sockets are used;
IPv6 tests skip when ::1 cannot be bound.
"""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import (IS_MEMCACHED, REFERENCE_MEMCACHED, MEMSTASHD, RawClient, ServerFactory,
                      free_port, poll_until, run_cli, user_args, wait_port)
from test_binary import GET, SET, BinConn, req, res, store_extras, u32


def have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


HAVE_IPV6 = have_ipv6()
needs_ipv6 = pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback (::1) on this machine")


def roundtrip(client, key):
    """A set and a get over a text connection."""
    client.check(b"set %s 7 0 5\r\nhello\r\n" % key, b"STORED\r\n")
    client.check(b"get %s\r\n" % key, b"VALUE %s 7 5\r\nhello\r\nEND\r\n" % key)


def conns_by_fd(client):
    out = {}
    for name, value in client.stats(b"conns").items():
        fd, field = name.split(":", 1)
        out.setdefault(fd, {})[field] = value
    return out


def listeners(conns):
    return sorted(e["addr"] for e in conns.values() if e.get("state") == "conn_listening")


def own_entry(conns, sock):
    """The stats conns entry of our own connection, found by its address."""
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        want = "tcp6:[%s]:%d" % (host, port)
    else:
        want = "tcp:%s:%d" % (host, port)
    found = [e for e in conns.values() if e.get("addr") == want]
    assert len(found) == 1, (want, conns)
    return found[0]


def start_raw(factory, *args):
    """Start with exactly these arguments (plus the conftest's -U 0 and -u);
    the caller waits for readiness itself."""
    return factory(*args, tcp=False, wait=False)


def wait_or_fail(srv, host, port):
    if not wait_port(host, port, proc=srv.proc):
        pytest.fail("%s not listening on %s:%d\n%s" % (" ".join(srv.args), host, port,
                                                        srv.stderr_text()))


@pytest.fixture
def sock_dir():
    """A short directory for unix sockets.  memcached 1.6.18 reads a
    listening unix socket's name into a 28-byte buffer for stats conns, so
    only paths of up to 25 bytes are shown intact; pytest's tmp dirs are
    longer."""
    d = tempfile.mkdtemp(prefix="mst", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pair(tmp_path):
    """(memcached factory, server-under-test factory)."""
    if not os.access(REFERENCE_MEMCACHED, os.X_OK):
        pytest.skip("reference %s not installed" % REFERENCE_MEMCACHED)
    os.makedirs(str(tmp_path / "ref"))
    os.makedirs(str(tmp_path / "sut"))
    ref = ServerFactory(str(tmp_path / "ref"), binary=REFERENCE_MEMCACHED)
    sut = ServerFactory(str(tmp_path / "sut"))
    try:
        yield ref, sut
    finally:
        try:
            sut.teardown()
        finally:
            ref.teardown()


# ---------------------------------------------------------------------------
# Unix domain sockets
# ---------------------------------------------------------------------------

def test_unix_socket_serves_text_and_binary(server_factory, tmp_path):
    path = str(tmp_path / "mc.sock")
    srv = server_factory(tcp=False, unix=path)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    # default -a 0700
    assert stat.S_IMODE(st.st_mode) == 0o700
    with srv.client() as c:
        roundtrip(c, b"unix_k")
        settings = c.stats(b"settings")
        assert settings["domain_socket"] == path
        assert settings["umask"] == "700"
        assert settings["udpport"] == "0"
    with srv.client() as c:
        b = BinConn(c)
        p = b.call1(req(SET, b"unix_b", store_extras(3), b"bin"))
        assert p.raw == res(SET, cas=p.cas)
        b.check(req(GET, b"unix_b"), res(GET, extras=u32(3), value=b"bin", cas=p.cas))
    # several clients at once
    clients = [srv.client() for _ in range(10)]
    try:
        for i, c in enumerate(clients):
            c.send(b"get unix_k\r\n")
        for c in clients:
            assert c.read_until(b"END\r\n") == b"VALUE unix_k 7 5\r\nhello\r\nEND\r\n"
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("mask", ["0600", "0644", "0755", "0777", "660"])
def test_unix_socket_mask(server_factory, tmp_path, mask):
    path = str(tmp_path / "m.sock")
    srv = server_factory("-a", mask, tcp=False, unix=path)
    assert stat.S_IMODE(os.stat(path).st_mode) == int(mask, 8)
    with srv.client() as c:
        assert c.stats(b"settings")["umask"] == "%o" % int(mask, 8)
        roundtrip(c, b"mask_k")


def test_unix_socket_opens_no_tcp_or_udp_port(server_factory, tmp_path):
    path = str(tmp_path / "n.sock")
    port = free_port()
    srv = server_factory("-p", str(port), tcp=False, unix=path)
    with srv.client() as c:
        roundtrip(c, b"k")
        assert c.stats(b"settings")["tcpport"] == str(port)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        with pytest.raises(OSError):
            s.connect(("127.0.0.1", port))
    finally:
        s.close()
    assert srv.alive()


def test_unix_socket_disables_udp(server_factory, tmp_path):
    path = str(tmp_path / "u.sock")
    port = free_port()
    srv = server_factory("-p", str(port), "-U", str(port), tcp=False, unix=path)
    with srv.client() as c:
        roundtrip(c, b"k")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(0.5)
    try:
        u.sendto(b"\x00\x01\x00\x00\x00\x01\x00\x00version\r\n", ("127.0.0.1", port))
        with pytest.raises(OSError):  # timeout or ICMP refusal: nobody answers
            u.recvfrom(2048)
    finally:
        u.close()


def test_stale_socket_file_is_replaced(server_factory, tmp_path):
    path = str(tmp_path / "stale.sock")
    first = server_factory(tcp=False, unix=path)
    with first.client() as c:
        roundtrip(c, b"before")
    rc, _ = first.stop(signal.SIGKILL)
    first.expected_rc = None
    assert rc == -signal.SIGKILL
    # the killed server left its socket file behind
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    second = server_factory(tcp=False, unix=path)
    with second.client() as c:
        # a new server, an empty cache
        c.check(b"get before\r\n", b"END\r\n")
        roundtrip(c, b"after")


def test_regular_file_at_socket_path_is_not_replaced(tmp_path):
    path = str(tmp_path / "file.sock")
    with open(path, "w") as f:
        f.write("precious")
    rc, out, err = run_cli(["-U", "0", "-s", path] + user_args())
    assert rc == 71, (rc, err)
    with open(path) as f:
        assert f.read() == "precious"


def test_regular_file_at_socket_path_message_like_memcached(tmp_path):
    if not os.access(REFERENCE_MEMCACHED, os.X_OK):
        pytest.skip("reference %s not installed" % REFERENCE_MEMCACHED)
    path = str(tmp_path / "file.sock")
    with open(path, "w") as f:
        f.write("precious")
    got = []
    for binary in (REFERENCE_MEMCACHED, MEMSTASHD):
        rc, out, err = run_cli(["-U", "0", "-s", path] + user_args(), binary=binary)
        got.append((rc, out, err))
    assert got[1] == got[0]


def test_sigterm_as_soon_as_the_socket_answers_is_a_clean_exit(tmp_path):
    """A supervisor may stop the server the moment its socket accepts. The
    listener is open a little before the signal handlers exist; a SIGTERM in
    that window must still be a clean shutdown (exit 0), not a kill."""
    if IS_MEMCACHED:
        pytest.skip("memcached dies of a SIGTERM that arrives before its handler")
    for attempt in range(25):
        path = str(tmp_path / ("early%d.sock" % attempt))
        proc = subprocess.Popen([MEMSTASHD, "-U", "0", "-s", path] + user_args(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            answered = False
            while not answered and time.monotonic() < deadline and proc.poll() is None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                    answered = True
                except OSError:
                    pass
                finally:
                    s.close()
            assert answered, "server never accepted on %s" % path
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            proc.stderr.close()
        assert rc == 0, "attempt %d: exit status %d" % (attempt, rc)
        assert not os.path.lexists(path)


def test_socket_file_after_clean_exit(server_factory, tmp_path):
    path = str(tmp_path / "left.sock")
    srv = server_factory(tcp=False, unix=path)
    rc, killed = srv.stop()
    assert rc == 0 and not killed
    if IS_MEMCACHED:
        # 1.6.18 leaves the socket file behind (and replaces it at the next start)
        assert os.path.lexists(path) and stat.S_ISSOCK(os.lstat(path).st_mode)
    else:
        # memstashd removes it on a clean exit, on purpose (docs/protocol.md)
        assert not os.path.lexists(path)


def unix_settings(srv):
    with srv.client() as c:
        st = c.stats(b"settings")
    return st


def test_unix_settings_like_memcached(pair, tmp_path):
    got = []
    for i, factory in enumerate(pair):
        path = str(tmp_path / ("s%d.sock" % i))
        st = unix_settings(factory("-a", "0640", tcp=False, unix=path))
        got.append({k: st[k].replace(path, "<path>") for k in
                    ("domain_socket", "umask", "tcpport", "udpport", "maxconns")})
    assert got[0]["domain_socket"] == "<path>" and got[0]["umask"] == "640"
    assert got[1] == got[0]


def test_inter_setting_without_l_like_memcached(pair, tmp_path):
    # -s disables TCP, so no -l is needed to stay off the network
    got = []
    for i, factory in enumerate(pair):
        st = unix_settings(factory(tcp=False, unix=str(tmp_path / ("i%d.sock" % i))))
        got.append(st.get("inter"))
    assert got[0] == "NULL"
    assert got[1] == got[0]


# ---------------------------------------------------------------------------
# IPv6
# ---------------------------------------------------------------------------

@needs_ipv6
@pytest.mark.parametrize("form", ["[::1]", "::1"])
def test_ipv6_listener_with_p(server_factory, form):
    port = free_port("::1")
    srv = start_raw(server_factory, "-p", str(port), "-l", form)
    wait_or_fail(srv, "::1", port)
    with RawClient("::1", port) as c:
        roundtrip(c, b"v6")
        conns = conns_by_fd(c)
        assert listeners(conns) == ["tcp6:[::1]:%d" % port]
        me = own_entry(conns, c.sock)
        assert me["listen_addr"] == "tcp6:[::1]:%d" % port
    # not on IPv4
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        with pytest.raises(OSError):
            s.connect(("127.0.0.1", port))
    finally:
        s.close()


@needs_ipv6
def test_ipv6_listener_with_port_in_l(server_factory):
    srv = server_factory(host="::1", listen_arg="[::1]:{port}")
    with RawClient("::1", srv.port) as c:
        roundtrip(c, b"v6p")
        assert listeners(conns_by_fd(c)) == ["tcp6:[::1]:%d" % srv.port]
        assert c.stats(b"settings")["inter"] == "[::1]:%d" % srv.port


# ---------------------------------------------------------------------------
# Several listeners
# ---------------------------------------------------------------------------

def two_hosts():
    return ("127.0.0.1", "::1") if HAVE_IPV6 else ("127.0.0.1", "127.0.0.1")


def fmt_listen(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def fmt_conn(host, port):
    return "tcp6:[%s]:%d" % (host, port) if ":" in host else "tcp:%s:%d" % (host, port)


def check_all_serve(endpoints):
    """Every endpoint serves the same cache."""
    clients = [RawClient(h, p) for h, p in endpoints]
    try:
        for i, c in enumerate(clients):
            c.check(b"set multi%d 0 0 1\r\n%d\r\n" % (i, i), b"STORED\r\n")
        keys = b" ".join(b"multi%d" % i for i in range(len(clients)))
        expected = b"".join(b"VALUE multi%d 0 1\r\n%d\r\n" % (i, i) for i in range(len(clients)))
        for c in clients:
            c.check(b"get " + keys + b"\r\n", expected + b"END\r\n")
        conns = conns_by_fd(clients[0])
        assert listeners(conns) == sorted(fmt_conn(h, p) for h, p in endpoints)
        for (h, p), c in zip(endpoints, clients):
            assert own_entry(conns_by_fd(c), c.sock)["listen_addr"] == fmt_conn(h, p)
    finally:
        for c in clients:
            c.close()


def test_comma_separated_listeners(server_factory):
    h1, h2 = two_hosts()
    p1, p2 = free_port(h1), free_port(h2)
    while p2 == p1:
        p2 = free_port(h2)
    srv = start_raw(server_factory, "-l", fmt_listen(h1, p1) + "," + fmt_listen(h2, p2))
    wait_or_fail(srv, h1, p1)
    wait_or_fail(srv, h2, p2)
    check_all_serve([(h1, p1), (h2, p2)])


def test_repeated_l_options(server_factory):
    h1, h2 = two_hosts()
    ports = []
    while len(ports) < 3:
        p = free_port(h1)
        if p not in ports:
            ports.append(p)
    endpoints = [(h1, ports[0]), (h1, ports[1]), (h2, ports[2])]
    args = []
    for h, p in endpoints:
        args += ["-l", fmt_listen(h, p)]
    srv = start_raw(server_factory, *args)
    for h, p in endpoints:
        wait_or_fail(srv, h, p)
    check_all_serve(endpoints)


@needs_ipv6
def test_addresses_without_port_share_p(server_factory):
    port = free_port()
    srv = start_raw(server_factory, "-p", str(port), "-l", "127.0.0.1,[::1]")
    wait_or_fail(srv, "127.0.0.1", port)
    wait_or_fail(srv, "::1", port)
    check_all_serve([("127.0.0.1", port), ("::1", port)])


def test_duplicate_listener_fails_like_memcached(tmp_path):
    if not os.access(REFERENCE_MEMCACHED, os.X_OK):
        pytest.skip("reference %s not installed" % REFERENCE_MEMCACHED)
    port = free_port()
    spec = "127.0.0.1:%d,127.0.0.1:%d" % (port, port)
    got = []
    for binary in (REFERENCE_MEMCACHED, MEMSTASHD):
        got.append(run_cli(["-U", "0", "-l", spec] + user_args(), binary=binary))
    assert got[0][0] == 71
    assert got[1] == got[0]


# ---------------------------------------------------------------------------
# stats conns address formats
# ---------------------------------------------------------------------------

def test_stats_conns_tcp_format(shared_server):
    with shared_server.client() as c, shared_server.client() as other:
        other.check(b"get x\r\n", b"END\r\n")
        conns = conns_by_fd(c)
        port = shared_server.port
        lst = [e for e in conns.values() if e.get("state") == "conn_listening"]
        assert len(lst) == 1
        assert sorted(lst[0]) == ["addr", "secs_since_last_cmd", "state"]
        assert lst[0]["addr"] == "tcp:127.0.0.1:%d" % port
        for sock in (c.sock, other.sock):
            e = own_entry(conns, sock)
            assert sorted(e) == ["addr", "listen_addr", "secs_since_last_cmd", "state"]
            assert e["listen_addr"] == "tcp:127.0.0.1:%d" % port
            assert re.match(r"\d+\Z", e["secs_since_last_cmd"])


def test_stats_conns_states(shared_server):
    with shared_server.client() as c, shared_server.client() as idle:
        idle.check(b"get x\r\n", b"END\r\n")
        conns = conns_by_fd(c)
        assert own_entry(conns, c.sock)["state"] == "conn_parse_cmd"
        assert own_entry(conns, idle.sock)["state"] == "conn_read"


def test_stats_conns_listener_age(server):
    def age():
        with server.client() as c:
            lst = [e for e in conns_by_fd(c).values() if e.get("state") == "conn_listening"]
        return int(lst[0]["secs_since_last_cmd"]) >= 1
    assert poll_until(age, 3.5, 0.2)


@needs_ipv6
def test_stats_conns_tcp6_format(server_factory):
    srv = server_factory(host="::1", listen_arg="[::1]:{port}")
    with RawClient("::1", srv.port) as c:
        conns = conns_by_fd(c)
        assert listeners(conns) == ["tcp6:[::1]:%d" % srv.port]
        e = own_entry(conns, c.sock)
        assert e["listen_addr"] == "tcp6:[::1]:%d" % srv.port


def unix_entries(srv):
    with srv.client() as c:
        conns = conns_by_fd(c)
    lst = [e for e in conns.values() if e.get("state") == "conn_listening"]
    clients = [e for e in conns.values() if e.get("state") != "conn_listening"]
    return lst, clients


def test_stats_conns_unix_format(server_factory, sock_dir):
    path = os.path.join(sock_dir, "s")
    srv = server_factory(tcp=False, unix=path)
    lst, clients = unix_entries(srv)
    assert [e["addr"] for e in lst] == ["unix:" + path]
    # ours, and perhaps the readiness probe's if the server has not yet
    # noticed that it closed
    assert 1 <= len(clients) <= 2
    for e in clients:
        assert e["listen_addr"] == "unix:" + path
        assert sorted(e) == ["addr", "listen_addr", "secs_since_last_cmd", "state"]


def test_stats_conns_unix_client_addr(server_factory, sock_dir):
    srv = server_factory(tcp=False, unix=os.path.join(sock_dir, "s"))
    _, clients = unix_entries(srv)
    assert clients and all(e["addr"] == "?:<AF 0>" for e in clients), clients
