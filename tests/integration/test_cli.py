"""Command line, signals and process control.

Validated against Debian memcached 1.6.18.  Behaviours of 1.6.18 that differ
from the reference text or were surprising are noted inline ("1.6.18:").
"""

import os
import re
import signal
import socket
import stat
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import (IS_MEMCACHED, IS_ROOT, RawClient, STOP_TIMEOUT, free_port,
                      kill_pid, pid_alive, poll_until, require_binary, run_cli,
                      sanitizer_report, user_args)


def base_args(port):
    return ["-p", str(port), "-U", "0", "-l", "127.0.0.1"] + user_args()


# ---------------------------------------------------------------------------
# -h / -V / bad options
# ---------------------------------------------------------------------------

def test_help():
    rc, out, err = run_cli(["-h"])
    assert rc == 0, err
    assert re.search(r"^\s*-p[, ]", out, re.M), out[:500]
    if IS_MEMCACHED:
        assert out.startswith("memcached 1.6.18\n")
        assert re.search(r"^-p, --port=<num>\s+TCP port to listen on", out, re.M)
    for opt in ("-m", "-c", "-t", "-l", "-U", "-d", "-v", "-I", "-o"):
        assert re.search(r"^\s*%s[, ]" % re.escape(opt), out, re.M), opt


def test_version_flag():
    rc, out, err = run_cli(["-V"])
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].strip(), out
    if IS_MEMCACHED:
        assert out == "memcached 1.6.18\n"


@pytest.mark.memstash_only
def test_version_flag_names_memstashd():
    rc, out, _ = run_cli(["-V"])
    assert rc == 0
    assert out.startswith("memstashd "), out


# (args, regex the error message must match, case-insensitive).  The exact
# 1.6.18 texts are in the comments.
BAD_OPTIONS = [
    (["-t", "0"], r"thread|-t\b"),          # Number of threads must be greater than 0
    (["-t", "abc"], r"thread|-t\b"),
    (["-c", "0"], r"connection|-c\b"),      # Maximum connections must be greater than 0
    (["-c", "-5"], r"connection|-c\b"),
    (["-f", "1"], r"factor|-f\b"),          # Factor must be greater than 1
    (["-R", "0"], r"request|-R\b"),         # Number of requests per event must be greater than 0
    (["-I", "512"], r"item|size|-I\b"),     # Item max size cannot be less than 1024 bytes.
    (["-I", "100m", "-m", "64"], r"1/2|half|memory|-I\b"),  # Cannot set item size limit higher than 1/2 of memory max.
    (["-o", "bogus_option"], r"bogus_option"),          # Illegal suboption "bogus_option"
    (["-B", "wrong"], r"protocol|wrong|-B\b"),  # Invalid value for binding protocol: wrong
    (["-p", "70000"], r"port|-p\b"),        # ERROR: Invalid port number 70000.
    (["-Q"], r"option|argument|-Q|Q"),  # invalid option -- 'Q' / Illegal argument "?"
]


@pytest.mark.parametrize("args,pattern", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_exits_nonzero(args, pattern):
    port = free_port()
    rc, out, err = run_cli(base_args(port) + args, timeout=15)
    assert rc != 0 and rc > 0, "rc=%r for %r" % (rc, args)
    msg = err + out
    assert msg.strip(), "no message for %r" % args
    assert re.search(pattern, msg, re.I), "message for %r: %r" % (args, msg)


def test_root_without_u_is_refused():
    if not IS_ROOT:
        pytest.skip("only meaningful when running as uid 0")
    port = free_port()
    rc, out, err = run_cli(["-p", str(port), "-U", "0", "-l", "127.0.0.1"], timeout=15)
    assert rc != 0
    assert "root" in (err + out).lower()


def test_bind_failure_on_busy_port():
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        rc, out, err = run_cli(base_args(port), timeout=15)
        assert rc != 0, "server started on a busy port"
        assert "in use" in (err + out).lower(), err
        if IS_MEMCACHED:
            assert rc == 71     # EX_OSERR
    finally:
        holder.close()


# ---------------------------------------------------------------------------
# daemon mode / pid file
# ---------------------------------------------------------------------------

def test_daemon_and_pidfile(tmp_path):
    binary = require_binary()
    port = free_port()
    pidfile = str(tmp_path / "memstash.pid")
    san_dir = tmp_path / "san"
    san_dir.mkdir()
    env = dict(os.environ)
    # the daemon's stderr goes to /dev/null: route sanitizer reports to files
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        env[var] = (env.get(var, "") + ":log_path=" + str(san_dir / var.lower())).lstrip(":")
    daemon_pid = None
    try:
        launcher = subprocess.run([binary, "-d", "-P", pidfile] + base_args(port),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, timeout=20)
        assert launcher.returncode == 0, launcher.stderr
        assert poll_until(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 10), \
            "pid file not written"
        with open(pidfile) as f:
            content = f.read()
        assert re.match(r"\d+\n?\Z", content), repr(content)
        daemon_pid = int(content)
        assert pid_alive(daemon_pid)
        # the pid file is written only once the listener exists: the very
        # first connection attempt must succeed
        probe = socket.create_connection(("127.0.0.1", port), timeout=5)
        probe.close()
        with RawClient("127.0.0.1", port) as c:
            c.check(b"set d 0 0 1\r\nx\r\nget d\r\n", b"STORED\r\nVALUE d 0 1\r\nx\r\nEND\r\n")
            assert int(c.stats()["pid"]) == daemon_pid
        os.kill(daemon_pid, signal.SIGTERM)
        assert poll_until(lambda: not pid_alive(daemon_pid), STOP_TIMEOUT), \
            "daemon did not exit on SIGTERM"
        # 1.6.18 removes the pid file on exit in daemon mode (only then)
        assert poll_until(lambda: not os.path.exists(pidfile), 5), "pid file not removed"
        reports = [p for p in san_dir.iterdir()]
        texts = "".join(p.read_text(errors="replace") for p in reports)
        assert not sanitizer_report(texts) and not reports, texts[-5000:]
    finally:
        if daemon_pid is not None:
            kill_pid(daemon_pid)


def test_pidfile_in_foreground(server_factory, tmp_path):
    pidfile = str(tmp_path / "fg.pid")
    srv = server_factory("-P", pidfile)
    assert poll_until(lambda: os.path.exists(pidfile), 5)
    with open(pidfile) as f:
        assert int(f.read()) == srv.pid


# ---------------------------------------------------------------------------
# connection limit
# ---------------------------------------------------------------------------

REJECT_LINE = b"ERROR Too many open connections\r\n"


def try_connect(srv):
    """(True, client) if the server serves the connection, (False, bytes
    received) if it was rejected."""
    c = RawClient("127.0.0.1", srv.port, timeout=3)
    try:
        c.send(b"version\r\n")
    except OSError:
        pass
    try:
        line = c.read_line(timeout=3)
    except AssertionError:
        data = c.buf
        c.close()
        return False, data
    if line.startswith(b"VERSION "):
        return True, c
    c.wait_closed(2)
    data = line + c.buf
    c.close()
    return False, data


def test_connection_limit(server_factory):
    limit = 30
    srv = server_factory("-c", str(limit), "-t", "2")
    accepted = []
    rejected = None
    try:
        # memcached counts file descriptors, not clients: find the number of
        # usable client connections empirically (bounded by -c)
        for _ in range(limit + 1):
            ok, c = try_connect(srv)
            if ok:
                accepted.append(c)
            else:
                rejected = c
                break
        assert rejected is not None, "no connection rejected with -c %d" % limit
        assert 1 <= len(accepted) <= limit
        assert rejected in (b"", REJECT_LINE) or rejected.startswith(b"ERROR Too many"), rejected
        # a new connection that sends nothing gets exactly the error line and
        # is then closed
        c = RawClient("127.0.0.1", srv.port, timeout=3)
        try:
            assert c.wait_closed(5), "over-limit connection not closed"
            assert c.buf == REJECT_LINE
        finally:
            c.close()
        # existing connections still work
        accepted[0].check(b"set c 0 0 1\r\nx\r\n", b"STORED\r\n")
        # free one slot: the server recovers
        accepted.pop().close()

        def reconnect():
            ok, c = try_connect(srv)
            if ok:
                accepted.append(c)
            return ok
        assert poll_until(reconnect, 5, 0.1), "server did not accept again after a close"
        st = accepted[0].stats()
        assert int(st["rejected_connections"]) >= 2
        assert st["max_connections"] == str(limit)
    finally:
        for c in accepted:
            c.close()


# ---------------------------------------------------------------------------
# memory limits
# ---------------------------------------------------------------------------

def test_disable_evictions_out_of_memory(server_factory):
    srv = server_factory("-m", "8", "-M")
    val = b"v" * (100 * 1024)
    stored = 0
    err = None
    with srv.client(timeout=10) as c:
        for i in range(400):
            c.send(b"set k%d 0 0 %d\r\n" % (i, len(val)) + val + b"\r\n")
            line = c.read_line()
            if line == b"STORED\r\n":
                stored += 1
                continue
            err = line
            break
        assert err == b"SERVER_ERROR out of memory storing object\r\n", err
        assert stored >= 10
        # the data block was swallowed: still in sync
        c.check(b"", b"")
        # nothing was evicted: the first item is still there
        c.send(b"get k0\r\n")
        assert c.read_line() == b"VALUE k0 0 %d\r\n" % len(val)
        assert c.read_exact(len(val) + 2) == val + b"\r\n"
        assert c.read_line() == b"END\r\n"
        # small items keep failing/succeeding without evicting
        st = c.stats()
        assert st["evictions"] == "0"
        assert int(st["store_no_memory"]) >= 1
        assert int(st["curr_items"]) == stored
        # deleting frees room again
        c.check(b"delete k0\r\n", b"DELETED\r\n")
        c.check(b"set again 0 0 %d\r\n" % len(val) + val + b"\r\n", b"STORED\r\n")
        assert c.stats(b"settings")["evictions"] == "off"


def test_small_memory_evicts_without_M(server_factory):
    srv = server_factory("-m", "8")
    val = b"e" * (100 * 1024)
    with srv.client(timeout=10) as c:
        c.check(b"".join(b"set k%d 0 0 %d\r\n" % (i, len(val)) + val + b"\r\n" for i in range(200)),
                b"STORED\r\n" * 200, timeout=30)
        st = c.stats()
        assert int(st["evictions"]) > 0
        assert int(st["curr_items"]) < 200
        assert c.call(b"get k199\r\n").startswith(b"VALUE k199 0 ")


@pytest.mark.memstash_only
def test_item_size_2k(server_factory):
    # 1.6.18 cannot run this: "-I 2k" alone is refused ("slab_chunk_max
    # (bytes: 524288) cannot be larger than -I"), and with
    # "-o slab_chunk_max=2" the Debian binary segfaults on the first set.
    srv = server_factory("-I", "2k")
    with srv.client() as c:
        c.check(b"set big 0 0 3000\r\n" + b"x" * 3000 + b"\r\n",
                b"SERVER_ERROR object too large for cache\r\n")
        c.check(b"set ok 0 0 1000\r\n" + b"y" * 1000 + b"\r\nget ok\r\n",
                b"STORED\r\nVALUE ok 0 1000\r\n" + b"y" * 1000 + b"\r\nEND\r\n")
        assert c.stats(b"settings")["item_size_max"] == "2048"


def test_item_size_small(server_factory):
    # the smallest -I the Debian 1.6.18 binary handles (slab_chunk_max must
    # not exceed -I, and values below 64 KB crash it)
    srv = server_factory("-I", "64k", "-o", "slab_chunk_max=64")
    with srv.client() as c:
        c.check(b"set big 0 0 70000\r\n" + b"x" * 70000 + b"\r\n",
                b"SERVER_ERROR object too large for cache\r\n")
        c.check(b"set ok 0 0 60000\r\n" + b"y" * 60000 + b"\r\n", b"STORED\r\n")
        assert c.call(b"get ok\r\n") == b"VALUE ok 0 60000\r\n" + b"y" * 60000 + b"\r\nEND\r\n"
        assert c.stats(b"settings")["item_size_max"] == "65536"


def test_item_size_large(server_factory):
    srv = server_factory("-I", "4m")
    val = bytes(range(256)) * (3 * 1024 * 1024 // 256)
    with srv.client(timeout=20) as c:
        c.check(b"set big 0 0 %d\r\n" % len(val) + val + b"\r\n", b"STORED\r\n")
        c.send(b"get big\r\n")
        assert c.read_line() == b"VALUE big 0 %d\r\n" % len(val)
        assert c.read_exact(len(val) + 2, timeout=20) == val + b"\r\n"
        assert c.read_line() == b"END\r\n"
        assert c.stats(b"settings")["item_size_max"] == str(4 * 1024 * 1024)


# ---------------------------------------------------------------------------
# idle timeout, -R, listeners, unix socket, verbosity
# ---------------------------------------------------------------------------

def test_idle_timeout(server_factory):
    srv = server_factory("-o", "idle_timeout=2")
    with srv.client() as busy, srv.client() as idle:
        idle.check(b"", b"")
        t0 = time.monotonic()
        closed = False
        # keep the other connection active meanwhile
        while time.monotonic() - t0 < 8:
            busy.check(b"", b"")
            if idle.wait_closed(0.25):
                closed = True
                break
        elapsed = time.monotonic() - t0
        assert closed, "idle connection not closed within 8 s"
        # 1.6.18 closes after 3-4 s for idle_timeout=2 (strictly greater than
        # the timeout on a 1 s clock, checked once a second)
        assert elapsed >= 1.5, "closed after only %.2fs" % elapsed
        busy.check(b"", b"")
        st = busy.stats()
        assert int(st["idle_kicks"]) >= 1
        assert busy.stats(b"settings")["idle_timeout"] == "2"


def test_reqs_per_event_1_pipelining(server_factory):
    srv = server_factory("-R", "1")
    send, exp = [], []
    for i in range(200):
        v = b"%d" % (i * 7)
        send.append(b"set r%d 0 0 %d\r\n%s\r\nget r%d\r\n" % (i, len(v), v, i))
        exp.append(b"STORED\r\nVALUE r%d 0 %d\r\n%s\r\nEND\r\n" % (i, len(v), v))
    with srv.client() as c:
        c.check(b"".join(send), b"".join(exp), timeout=30)
        st = c.stats()
        assert int(st["conn_yields"]) > 0
        assert c.stats(b"settings")["reqs_per_event"] == "1"


def test_listen_addr_with_port(server_factory):
    srv = server_factory(listen_arg="127.0.0.1:{port}")
    assert "-p" not in srv.args
    with srv.client() as c:
        c.check(b"set l 0 0 1\r\nx\r\nget l\r\n", b"STORED\r\nVALUE l 0 1\r\nx\r\nEND\r\n")


def ipv6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def test_listen_ipv6(server_factory):
    if not ipv6_available():
        pytest.skip("no IPv6 loopback")
    srv = server_factory(host="::1", listen_arg="[::1]:{port}")
    with srv.client() as c:
        c.check(b"set v6 0 0 1\r\nx\r\nget v6\r\n", b"STORED\r\nVALUE v6 0 1\r\nx\r\nEND\r\n")
        raw = c.request(b"stats conns\r\n", b"END\r\n")
        assert b"tcp6:[::1]:" in raw, raw


request_cleanup = []


@pytest.fixture(autouse=True, scope="module")
def _cleanup_short_dirs():
    yield
    for d in request_cleanup:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("mask", ["0700", "0755"])
def test_unix_socket(server_factory, tmp_path, mask):
    path = str(tmp_path / "ms.sock")
    if len(path) > 100:      # sun_path limit (108)
        short = tempfile.mkdtemp(prefix="msit")
        request_cleanup.append(short)
        path = os.path.join(short, "ms.sock")
    srv = server_factory("-a", mask, tcp=False, unix=path)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == int(mask, 8), oct(st.st_mode)
    with srv.client() as c:
        c.check(b"set u 0 0 1\r\nx\r\nget u\r\n", b"STORED\r\nVALUE u 0 1\r\nx\r\nEND\r\n")
        settings = c.stats(b"settings")
        assert settings["domain_socket"] == path
        assert settings["umask"] == mask.lstrip("0")
        conns = c.request(b"stats conns\r\n", b"END\r\n")
        assert ("unix:" + path).encode() in conns, conns


def test_verbose_logs_commands(server_factory):
    srv = server_factory("-vv")
    with srv.client() as c:
        c.check(b"set vvkey 0 0 1\r\nx\r\nget vvkey\r\n",
                b"STORED\r\nVALUE vvkey 0 1\r\nx\r\nEND\r\n")
    assert poll_until(lambda: "get vvkey" in srv.stderr_text(), 5), srv.stderr_text()[-2000:]
    err = srv.stderr_text()
    assert "set vvkey 0 0 1" in err
    if IS_MEMCACHED:
        assert re.search(r"^<\d+ get vvkey$", err, re.M), err[-2000:]
        assert re.search(r"^>\d+ STORED$", err, re.M), err[-2000:]


def test_verbosity_command_enables_logging(server_factory):
    srv = server_factory()
    with srv.client() as c:
        c.check(b"verbosity 2\r\n", b"OK\r\n")
        c.check(b"get logged_key\r\n", b"END\r\n")
        assert poll_until(lambda: "logged_key" in srv.stderr_text(), 5)
        assert c.stats(b"settings")["verbosity"] == "2"


# ---------------------------------------------------------------------------
# signals and shutdown
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1],
                         ids=["SIGTERM", "SIGINT", "SIGUSR1"])
def test_signal_exits_cleanly(server_factory, sig):
    srv = server_factory()
    with srv.client() as c:
        c.check(b"set s 0 0 1\r\nx\r\n", b"STORED\r\n")
        srv.send_signal(sig)
        rc = srv.wait_exit(STOP_TIMEOUT)
        assert rc == 0, "exit code %r after %s; stderr:\n%s" % (rc, sig, srv.stderr_text())
        # the client connection is gone too
        assert c.wait_closed(3)


def test_sighup_does_not_kill(server_factory):
    srv = server_factory()
    with srv.client() as c:
        c.check(b"set h 0 0 1\r\nx\r\n", b"STORED\r\n")
        srv.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert srv.alive(), "SIGHUP killed the server"
        c.check(b"get h\r\n", b"VALUE h 0 1\r\nx\r\nEND\r\n")
    with srv.client() as c2:
        c2.check(b"get h\r\n", b"VALUE h 0 1\r\nx\r\nEND\r\n")


def test_sigpipe_ignored(server_factory):
    srv = server_factory()
    # a client that requests a large value and disconnects immediately
    with srv.client() as c:
        c.check(b"set p 0 0 500000\r\n" + b"p" * 500000 + b"\r\n", b"STORED\r\n")
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.sendall(b"get p p p p p p p p\r\n")
        s.close()
    time.sleep(0.2)
    assert srv.alive()
    with srv.client() as c:
        c.check(b"get nothere\r\n", b"END\r\n")


@pytest.mark.parametrize("cmd", [b"shutdown", b"shutdown graceful"])
def test_shutdown_enabled(server_factory, cmd):
    srv = server_factory("-A")
    with srv.client() as c:
        assert c.stats(b"settings")["shutdown_command"] == "yes"
        c.send(cmd + b"\r\n")
        assert c.wait_closed(STOP_TIMEOUT), "connection not closed by %r" % cmd
        assert c.buf == b""
    rc = srv.wait_exit(STOP_TIMEOUT)
    assert rc == 0, "exit code %r after %r" % (rc, cmd)


def test_shutdown_invalid_mode(server_factory):
    srv = server_factory("-A")
    with srv.client() as c:
        c.check(b"shutdown now\r\n", b"CLIENT_ERROR invalid shutdown mode\r\n")
    assert srv.alive()
