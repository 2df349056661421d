"""storage_lib.py - shared pieces of the storage-target benchmarks (bench/storage_*.py).

Starts memstashd and Debian's memcached with identical flags on free loopback
ports, stops them by pid, talks the text protocol over raw sockets with
pipelining and noreply (fast enough from Python for a few million items), reads
`stats`, VmRSS, and draws the workload distributions (Facebook ETC key/value
sizes, Zipf key ranks). A benchmark library: it asserts nothing.
"""

import bisect
import csv
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMSTASHD = os.environ.get("MEMSTASHD", os.path.join(ROOT, "build/src/server/memstashd"))
MEMCACHED = os.environ.get("MEMCACHED", "/usr/bin/memcached")
RESULTS = os.path.join(ROOT, "bench", "results")
SERVERS = (("memcached", MEMCACHED), ("memstashd", MEMSTASHD))


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class Server:
    """One server process on a free loopback port; stop() kills it by pid."""

    def __init__(self, name, binary, flags):
        self.name = name
        self.port = free_port()
        argv = [binary, "-p", str(self.port), "-U", "0", "-l", "127.0.0.1"] + list(flags)
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("%s did not start: %s" % (name, " ".join(argv)))
                time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def rss(self):
        """Resident set size in bytes (VmRSS)."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def connect(self):
        return Conn(self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Conn:
    """A raw text-protocol connection with a buffered reader."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def readline(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            self._fill()

    def readexact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def stats(self, arg=""):
        self.send(("stats %s\r\n" % arg if arg else "stats\r\n").encode())
        out = {}
        while True:
            line = self.readline()
            if line == b"END":
                return out
            parts = line.decode().split(" ", 2)
            if parts[0] == "STAT" and len(parts) == 3:
                v = parts[2]
                try:
                    out[parts[1]] = int(v)
                except ValueError:
                    try:
                        out[parts[1]] = float(v)
                    except ValueError:
                        out[parts[1]] = v

    def set_noreply(self, items, ttl=0):
        """Pipelines `set k 0 ttl n noreply` for each (key bytes, value bytes)."""
        parts = []
        for k, v in items:
            parts.append(b"set %s 0 %d %d noreply\r\n%s\r\n" % (k, ttl, len(v), v))
        self.send(b"".join(parts))

    def sync(self):
        """Round trip that proves every earlier request was processed."""
        self.send(b"mn\r\n")
        while self.readline() != b"MN":
            pass

    def get_many(self, keys):
        """Pipelines one `get` per key; returns the set of keys that hit."""
        self.send(b"".join(b"get %s\r\n" % k for k in keys))
        hits = set()
        for _ in keys:
            while True:
                line = self.readline()
                if line == b"END":
                    break
                if line.startswith(b"VALUE "):
                    f = line.split(b" ")
                    self.readexact(int(f[3]) + 2)
                    hits.add(f[1])
                else:
                    raise RuntimeError("unexpected reply %r" % line)
        return hits


# ---- distributions --------------------------------------------------------

# Facebook ETC (Atikoglu et al., SIGMETRICS'12), as mutilate encodes it.
ETC_KEY_GEV = (30.7984, 8.20449, 0.078688)  # mu, sigma, k
ETC_VALUE_GPD = (15.0, 214.476, 0.348238)  # theta (tail starts past the spike), sigma, k
# The spike of small values (bytes: probability); the rest follows the GPD.
ETC_VALUE_SPIKE = (
    (0, 0.00536), (1, 0.00047), (2, 0.17820), (3, 0.09239), (4, 0.00018),
    (5, 0.02740), (6, 0.00065), (7, 0.00606), (8, 0.00023), (9, 0.00837),
    (10, 0.00837), (11, 0.08989), (12, 0.00092), (13, 0.00326), (14, 0.01980),
)


def etc_key_size(rng, lo=10, hi=250):
    mu, sigma, k = ETC_KEY_GEV
    u = rng.random()
    while u <= 0.0:
        u = rng.random()
    x = mu + sigma * ((-math.log(u)) ** (-k) - 1.0) / k
    return max(lo, min(hi, int(round(x))))


def etc_value_size(rng, hi=500 * 1024):
    u = rng.random()
    acc = 0.0
    for size, p in ETC_VALUE_SPIKE:
        acc += p
        if u < acc:
            return size
    theta, sigma, k = ETC_VALUE_GPD
    v = rng.random()
    x = theta + sigma * ((1.0 - v) ** (-k) - 1.0) / k
    return max(0, min(hi, int(x)))


class Zipf:
    """Ranks 0..n-1 with P(r) proportional to 1/(r+1)^alpha."""

    def __init__(self, n, alpha, rng):
        self.rng = rng
        acc = 0.0
        self.cum = []
        for r in range(n):
            acc += 1.0 / (r + 1) ** alpha
            self.cum.append(acc)
        self.total = acc

    def draw(self, count):
        cum, total, rnd = self.cum, self.total, self.rng.random
        return [bisect.bisect_left(cum, rnd() * total) for _ in range(count)]


VALUE_POOL = random.Random(1).randbytes(1 << 21).hex().encode()[: 1 << 21]


def value_of(n, salt=0):
    """n printable bytes (a slice of a fixed pool; contents do not matter)."""
    off = (salt * 7919) % (len(VALUE_POOL) - n - 1) if n < len(VALUE_POOL) - 1 else 0
    return VALUE_POOL[off : off + n]


def key_of(i, width):
    """A distinct key of exactly `width` bytes for index i."""
    s = b"k%d:" % i
    if len(s) > width:
        raise ValueError("key width too small for index")
    return s + b"x" * (width - len(s))


# ---- reporting ------------------------------------------------------------


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def write_csv(name, header, rows):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "%s-%s.csv" % (name, time.strftime("%Y%m%d-%H%M%S")))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    print("wrote %s" % os.path.relpath(path, ROOT))
    return path


def log(msg):
    print(msg, flush=True)
    sys.stdout.flush()
