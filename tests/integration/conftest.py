"""Shared fixtures for the memstashd black-box integration suite.

The server binary comes from the environment variable MEMSTASHD.  The suite is
validated against Debian's memcached 1.6.18 (MEMSTASHD=/usr/bin/memcached);
tests marked ``memstash_only`` are skipped when the binary's basename is
``memcached``.

Every process a test starts is stopped by its pid (SIGTERM, then SIGKILL after
a timeout) in a finally/teardown path, and a clean exit (code 0, no sanitizer
report on stderr) is asserted at teardown.
"""

import os
import re
import select
import shlex
import signal
import socket
import subprocess
import time

import pytest

# --------------------------------------------------------------------------
# Binary under test
# --------------------------------------------------------------------------

MEMSTASHD = os.environ.get("MEMSTASHD", "")
REFERENCE_MEMCACHED = "/usr/bin/memcached"
IS_MEMCACHED = os.path.basename(MEMSTASHD) == "memcached"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# Flags added to every MEMSTASHD server the suite starts, before the test's
# own (ctest runs some files again with "-o io_uring" this way).
EXTRA_ARGS = shlex.split(os.environ.get("MEMSTASHD_EXTRA_ARGS", ""))

# Startup / shutdown budgets.  Generous because the suite also runs under
# AddressSanitizer (~3x slower).  memcached 1.6.18 needs up to one clock tick
# (1 s) to act on SIGTERM/SIGINT.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "memstash_only: expectation specific to memstashd; skipped when the "
        "binary under test is memcached",
    )


def pytest_collection_modifyitems(config, items):
    if not IS_MEMCACHED:
        return
    skip = pytest.mark.skip(reason="memstash-specific expectation (binary is memcached)")
    for item in items:
        if "memstash_only" in item.keywords:
            item.add_marker(skip)


def require_binary(path=None):
    path = path or MEMSTASHD
    if not path:
        pytest.fail("MEMSTASHD is not set: export MEMSTASHD=/path/to/memstashd "
                    "(or /usr/bin/memcached to validate the suite)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("MEMSTASHD=%r is not an executable file" % path)
    return path


def user_args():
    """Both servers refuse to start as root without -u."""
    return ["-u", "root"] if IS_ROOT else []


def sanitizer_report(text):
    for marker in SANITIZER_MARKERS:
        if marker in text:
            return marker
    return None


# --------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------

def free_port(host="127.0.0.1"):
    """A currently free TCP port on host (bind port 0, bounded retries)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last = None
    for _ in range(20):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, 0))
            return s.getsockname()[1]
        except OSError as e:  # pragma: no cover - extremely unlikely
            last = e
        finally:
            s.close()
    raise RuntimeError("could not find a free port: %r" % last)


def _listen_inodes(port):
    """Inodes of the TCP sockets listening on port (any address), from
    /proc/net/tcp{,6}; None when /proc cannot tell."""
    inodes = set()
    readable = False
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes if readable else None


def listens_on(pid, port):
    """True if process pid owns a socket listening on TCP port; also True
    when /proc cannot tell (not Linux, or no permission to look)."""
    inodes = _listen_inodes(port)
    if not inodes:
        return True
    fd_dir = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return True
    for fd in fds:
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def wait_port(host, port, timeout=START_TIMEOUT, proc=None):
    """Wait (bounded) until host:port accepts TCP connections.  With proc,
    the listener must be proc's own: a port handed out by free_port() can be
    taken by another process before proc binds it (proc then exits with
    "Address already in use" and the caller retries on another port), and a
    connection to that other process must not count as proc being ready."""
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            if proc is None or listens_on(proc.pid, port):
                return True
            time.sleep(0.02)
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    return False


def wait_unix(path, timeout=START_TIMEOUT, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(0.5)
            try:
                s.connect(path)
                return True
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    return False


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists"; look at /proc to tell.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_pid(pid, timeout=STOP_TIMEOUT):
    """SIGTERM a pid we started (e.g. a daemonised child), SIGKILL on timeout.
    Returns True if it went away after SIGTERM."""
    if not pid_alive(pid):
        return True
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False


# --------------------------------------------------------------------------
# Raw socket client
# --------------------------------------------------------------------------

VERSION_LINE = re.compile(rb"VERSION [^\r\n]+\r\n\Z")


class RawClient:
    """Minimal blocking text-protocol client with bounded reads."""

    def __init__(self, host="127.0.0.1", port=None, unix=None, timeout=5.0):
        self.timeout = timeout
        if unix is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    # -- low level -------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def _recv_some(self, deadline):
        """Receive once; returns False on timeout, True otherwise."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            return False
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, ConnectionAbortedError):
            data = b""
        if not data:
            self.eof = True
        self.buf += data
        return True

    def read_until(self, terminator, timeout=None):
        """Read until `terminator` (bytes, or compiled regex matched with
        search) is in the buffer; return everything through it.  Raises
        AssertionError on timeout or EOF with what was received so far."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if isinstance(terminator, bytes):
                idx = self.buf.find(terminator)
                if idx >= 0:
                    end = idx + len(terminator)
                    out, self.buf = self.buf[:end], self.buf[end:]
                    return out
            else:
                m = terminator.search(self.buf)
                if m:
                    out, self.buf = self.buf[:m.end()], self.buf[m.end():]
                    return out
            if self.eof:
                raise AssertionError("connection closed while waiting for %r; got %r"
                                     % (terminator, self.buf))
            if not self._recv_some(deadline):
                raise AssertionError("timeout waiting for %r; got %r"
                                     % (terminator, self.buf))

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            if self.eof:
                raise AssertionError("connection closed; wanted %d bytes, got %r"
                                     % (n, self.buf))
            if not self._recv_some(deadline):
                raise AssertionError("timeout; wanted %d bytes, got %r" % (n, self.buf))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self, timeout=None):
        return self.read_until(b"\r\n", timeout)

    def read_quiet(self, quiet=0.2, total=5.0):
        """Read until nothing arrives for `quiet` seconds (or EOF / total)."""
        end = time.monotonic() + total
        while not self.eof and time.monotonic() < end:
            if not self._recv_some(min(end, time.monotonic() + quiet)):
                break
        out, self.buf = self.buf, b""
        return out

    def wait_closed(self, timeout=5.0):
        """True if the server closes the connection within timeout.  Data
        received meanwhile stays in self.buf."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._recv_some(deadline):
                return False
        return True

    # -- conveniences ----------------------------------------------------
    def request(self, data, terminator=b"\r\n", timeout=None):
        self.send(data)
        return self.read_until(terminator, timeout)

    def call(self, data, timeout=None):
        """Send data followed by `version`; return every byte received before
        the VERSION line.  Proves both the exact reply and that the
        connection is still in sync afterwards.  `data` must not itself
        produce VERSION lines."""
        self.send(data + b"version\r\n")
        got = self.read_until(VERSION_LINE, timeout)
        m = re.search(rb"VERSION [^\r\n]+\r\n\Z", got)
        return got[:m.start()]

    def check(self, data, expected, timeout=None):
        got = self.call(data, timeout)
        assert got == expected, "sent %r\nexpected %r\n     got %r" % (data[:300], expected, got)

    def stats(self, group=b""):
        cmd = b"stats" + ((b" " + group) if group else b"") + b"\r\n"
        raw = self.request(cmd, b"END\r\n")
        out = {}
        for line in raw.split(b"\r\n"):
            if line.startswith(b"STAT "):
                parts = line.split(b" ", 2)
                out[parts[1].decode()] = parts[2].decode() if len(parts) > 2 else ""
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# Server process management
# --------------------------------------------------------------------------

class Server:
    """One server process.  Created and started by the factory fixture."""

    def __init__(self, binary, extra, logdir, name, tcp=True, host="127.0.0.1",
                 unix=None, port=None, listen_arg=None):
        self.binary = binary
        self.extra = list(extra)
        self.logdir = logdir
        self.name = name
        self.tcp = tcp
        self.host = host
        self.unix = unix
        self.port = port
        self.listen_arg = listen_arg
        self.proc = None
        self.args = None
        self.stderr_path = os.path.join(logdir, name + ".stderr")
        self.stdout_path = os.path.join(logdir, name + ".stdout")
        # Teardown expectations; tests may relax them (e.g. expected_rc=None
        # when the test itself asserted how the process ended).
        self.expected_rc = 0
        self.returncode = None

    def build_args(self):
        args = [self.binary]
        if self.tcp and self.listen_arg:
            # the port comes from the -l argument itself (e.g. 127.0.0.1:PORT)
            args += ["-U", "0", "-l", self.listen_arg]
        elif self.tcp:
            args += ["-p", str(self.port), "-U", "0", "-l", self.host]
        else:
            args += ["-U", "0"]
        if self.unix:
            args += ["-s", self.unix]
        args += user_args()
        if self.binary == MEMSTASHD:
            args += EXTRA_ARGS
        args += self.extra
        return args

    def start(self):
        self.args = self.build_args()
        self._err = open(self.stderr_path, "ab")
        self._out = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err,
                                     close_fds=True)
        return self.proc

    def wait_ready(self, timeout=START_TIMEOUT):
        if self.unix and not self.tcp:
            return wait_unix(self.unix, timeout, self.proc)
        return wait_port(self.host, self.port, timeout, self.proc)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout_text(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def send_signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Stop by pid; returns (returncode, killed)."""
        killed = False
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            if self.wait_exit(timeout) is None:
                killed = True
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.returncode = self.proc.wait(timeout=10)
        for f in (self._err, self._out):
            try:
                f.close()
            except Exception:
                pass
        return self.returncode, killed

    def client(self, timeout=5.0):
        if self.unix and not self.tcp:
            return RawClient(unix=self.unix, timeout=timeout)
        return RawClient(self.host, self.port, timeout=timeout)

    def check_teardown(self, rc, killed):
        """Problems found after stopping (list of strings)."""
        problems = []
        err = self.stderr_text()
        marker = sanitizer_report(err)
        if marker:
            problems.append("sanitizer report (%s) on stderr of %s:\n%s"
                            % (marker, " ".join(self.args), err[-20000:]))
        if killed:
            problems.append("%s did not exit within %.0fs of SIGTERM; SIGKILLed"
                            % (" ".join(self.args), STOP_TIMEOUT))
        elif self.expected_rc is not None and rc != self.expected_rc:
            problems.append("%s exited with %r (expected %r); stderr:\n%s"
                            % (" ".join(self.args), rc, self.expected_rc, err[-5000:]))
        return problems


class ServerFactory:
    """Callable: factory(*extra_flags, ...) -> started, ready Server."""

    def __init__(self, logdir, binary=None):
        self.logdir = logdir
        self.binary = binary
        self.servers = []
        self.count = 0

    def __call__(self, *extra, tcp=True, host="127.0.0.1", unix=None,
                 wait=True, binary=None, listen_arg=None, port=None, name=None):
        binary = require_binary(binary or self.binary)
        attempts = 5 if (tcp and port is None) else 1
        last_err = ""
        for _ in range(attempts):
            self.count += 1
            p = port if port is not None else (free_port(host) if tcp else None)
            srv = Server(binary, extra, self.logdir,
                         name or ("server%d" % self.count), tcp=tcp, host=host,
                         unix=unix, port=p,
                         listen_arg=(listen_arg.format(port=p) if listen_arg else None))
            srv.start()
            self.servers.append(srv)
            if not wait:
                return srv
            if srv.wait_ready():
                return srv
            # Did not come up: if it died with a bind error, retry on a new
            # port; anything else is a real failure.
            if srv.alive():
                srv.stop()
                srv.expected_rc = None
                pytest.fail("server did not accept connections within %.0fs: %s\n%s"
                            % (START_TIMEOUT, " ".join(srv.args), srv.stderr_text()))
            srv.stop()
            srv.expected_rc = None
            last_err = srv.stderr_text()
            if "in use" not in last_err.lower():
                break
        pytest.fail("server failed to start: %s\n%s" % (" ".join(srv.args), last_err))

    def teardown(self):
        problems = []
        for srv in self.servers:
            if srv.proc is None:
                continue
            rc, killed = srv.stop()
            problems += srv.check_teardown(rc, killed)
        self.servers = []
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def server_factory(tmp_path):
    """Start servers with custom flags: server_factory("-m", "8", "-M")."""
    factory = ServerFactory(str(tmp_path))
    try:
        yield factory
    finally:
        factory.teardown()


@pytest.fixture
def server(server_factory):
    """A fresh server with default flags for this test only."""
    return server_factory()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server shared by a module's tests (each test uses its own keys).
    Its clean exit is asserted when the module finishes."""
    factory = ServerFactory(str(tmp_path_factory.mktemp("shared")))
    try:
        yield factory()
    finally:
        factory.teardown()


@pytest.fixture
def conn(shared_server):
    """A raw text-protocol connection to the module's shared server."""
    c = shared_server.client()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def keyprefix(request):
    """A per-test key prefix so tests sharing a server never collide."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)
    return name[-60:] + "_"


def run_cli(args, timeout=20.0, binary=None):
    """Run the binary to completion (for -h, -V, bad options ...).  The
    process is killed by pid if it does not exit in time."""
    binary = require_binary(binary)
    proc = subprocess.Popen([binary] + list(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError("%r did not exit within %.0fs" % (args, timeout))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    marker = sanitizer_report(err.decode("utf-8", "replace"))
    assert marker is None, "sanitizer report for %r:\n%s" % (args, err.decode("utf-8", "replace"))
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def poll_until(fn, timeout, interval=0.05):
    """Call fn() until it returns a truthy value or timeout; returns the last
    value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
