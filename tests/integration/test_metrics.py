"""The Prometheus endpoint (-o metrics_port=N) and the leveled, timestamped log.

Scrapes go through curl; traffic through pymemcache.  The Prometheus test
starts Debian's /usr/bin/prometheus on 127.0.0.1 against the endpoint and is
skipped only when that binary is absent.  memstash-only: memcached has no
metrics endpoint and untimestamped logs.
"""

import json
import os
import re
import signal
import subprocess
import time
import urllib.parse

import pytest
from pymemcache.client.base import Client

from conftest import free_port, wait_port

pytestmark = [
    pytest.mark.memstash_only,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

PROMETHEUS = "/usr/bin/prometheus"
CURL = "/usr/bin/curl"
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def curl(url, *args):
    """(status, headers text, body text) of one request through curl."""
    out = subprocess.run([CURL, "-sS", "-i", "--max-time", "10", *args, url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert out.returncode == 0, "curl %s failed: %s" % (url, out.stderr.decode())
    raw = out.stdout.decode("utf-8", "replace")
    head, _, body = raw.partition("\r\n\r\n")
    status = int(head.split("\r\n", 1)[0].split()[1])
    return status, head, body


def parse_labels(text):
    labels = {}
    pos = 0
    while pos < len(text):
        m = LABEL_RE.match(text, pos)
        assert m, "bad label set {%s}" % text
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def parse_exposition(body):
    """Parses the text format strictly: every sample's family has # HELP and
    # TYPE before it, families are contiguous, no sample repeats.  Returns
    ({(name, frozenset(labels.items())): float}, {family: type})."""
    samples, types, helps = {}, {}, {}
    closed = set()
    current = None
    for line in body.split("\n"):
        if line == "":
            continue
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            assert NAME_RE.match(name), line
            assert name not in helps, "HELP repeated for %s" % name
            helps[name] = text
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert typ in ("counter", "gauge", "untyped", "summary", "histogram"), line
            assert name in helps, "TYPE before HELP for %s" % name
            assert name not in types, "TYPE repeated for %s" % name
            types[name] = typ
            if current is not None and current != name:
                closed.add(current)
            current = name
            continue
        assert not line.startswith("#"), "stray comment: %r" % line
        m = SAMPLE_RE.match(line)
        assert m, "bad sample line %r" % line
        name = m.group(1)
        assert name in types and name in helps, "sample without HELP/TYPE: %r" % line
        assert name == current and name not in closed, "family %s not contiguous" % name
        labels = parse_labels(m.group(3) or "")
        value = float(m.group(4))
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate sample %r" % line
        samples[key] = value
    return samples, types


def value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    assert key in samples, "no sample %s%r" % (name, labels)
    return samples[key]


def scrape(port, host="127.0.0.1"):
    status, head, body = curl("http://%s/metrics" % fmt_host(host, port))
    assert status == 200, head
    assert re.search(r"(?im)^content-type: text/plain; version=0\.0\.4", head), head
    return parse_exposition(body)


def fmt_host(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def metrics_server(server_factory, *extra, host="127.0.0.1"):
    """A server with the endpoint on a free port; returns (server, port)."""
    port = free_port(host)
    srv = server_factory("-o", "metrics_port=%d" % port, *extra, host=host)
    assert wait_port(host, port, proc=srv.proc), "metrics port %d never opened" % port
    return srv, port


def listening_sockets(pid):
    """[(local address hex, port)] of the TCP sockets pid listens on."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for row in f:
                cols = row.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if state == "0A" and inode in inodes:
                    addr, port = local.split(":")
                    found.append((addr, int(port, 16)))
    return found


# --------------------------------------------------------------------------
# the endpoint
# --------------------------------------------------------------------------

def test_counters_follow_traffic(server_factory):
    srv, port = metrics_server(server_factory)
    before, _ = scrape(port)
    assert value(before, "memcached_up") == 1
    assert value(before, "memcached_current_items") == 0
    assert value(before, "memcached_commands_total", command="get", status="hit") == 0

    mc = Client((srv.host, srv.port), default_noreply=False, connect_timeout=5, timeout=10)
    try:
        for i in range(7):
            assert mc.set("mkey%d" % i, b"v" * (10 + i)) is True
        for i in range(5):
            assert mc.get("mkey%d" % i) == b"v" * (10 + i)
        for i in range(3):
            assert mc.get("absent%d" % i) is None
    finally:
        mc.close()

    after, types = scrape(port)
    with srv.client() as c:
        st = c.stats()
    assert value(after, "memcached_commands_total", command="set", status="hit") == 7
    assert value(after, "memcached_commands_total", command="get", status="hit") == 5
    assert value(after, "memcached_commands_total", command="get", status="miss") == 3
    assert value(after, "memcached_current_items") == 7
    assert value(after, "memcached_items_total") == 7
    assert types["memcached_commands_total"] == "counter"
    assert types["memcached_current_items"] == "gauge"
    # The same figures as the text protocol's stats.
    assert value(after, "memcached_current_bytes") == int(st["bytes"])
    assert value(after, "memcached_limit_bytes") == int(st["limit_maxbytes"])
    assert value(after, "memcached_version", version=st["version"]) == 1
    assert value(after, "memcached_read_bytes_total") > value(before, "memcached_read_bytes_total")
    assert value(after, "memcached_written_bytes_total") > 0
    assert value(after, "memcached_connections_total") >= 1
    assert value(after, "memcached_max_connections") == 1024
    # Per slab class: the items are all accounted for, and the hits too.
    slab_items = sum(v for (n, _), v in after.items() if n == "memcached_slab_current_items")
    assert slab_items == 7
    slab_hits = sum(v for (n, l), v in after.items()
                    if n == "memcached_slab_commands_total"
                    and dict(l).get("command") == "get")
    assert slab_hits == 5
    assert any(n == "memcached_slab_chunk_size_bytes" for n, _ in after)


def test_format_is_valid_and_complete(server_factory):
    srv, port = metrics_server(server_factory)
    with srv.client() as c:
        c.check(b"set fmt 0 0 3\r\nabc\r\n", b"STORED\r\n")
        general = c.stats()
        settings = c.stats(b"settings")
    samples, types = scrape(port)
    # Every stat is claimed by the mapping table: nothing falls back to untyped.
    untyped = sorted(n for n, t in types.items() if t == "untyped")
    assert not untyped, "stats without a metric mapping: %s" % untyped
    assert all(n.startswith("memcached_") for n in types)
    counters = [n for n, t in types.items() if t == "counter"]
    assert counters and all(n.endswith(("_total", "_seconds", "_bytes")) for n in counters)
    # Numeric settings are there too, including the new one.
    assert value(samples, "memcached_settings_metrics_port") == port
    assert int(settings["metrics_port"]) == port
    assert value(samples, "memcached_settings_item_size_max") == int(settings["item_size_max"])
    assert value(samples, "memcached_threads") == int(general["threads"])


def test_other_paths_and_methods(server_factory):
    _, port = metrics_server(server_factory)
    base = "http://127.0.0.1:%d" % port
    for path in ("/", "/metric", "/metrics/x", "/stats"):
        status, _, _ = curl(base + path)
        assert status == 404, path
    status, _, _ = curl(base + "/metrics?x=1")
    assert status == 200
    for method in ("POST", "PUT", "DELETE"):
        status, head, _ = curl(base + "/metrics", "-X", method)
        assert status == 405, method
        assert re.search(r"(?im)^allow: GET", head), head


def test_off_by_default(server_factory):
    srv = server_factory()
    with srv.client() as c:
        assert c.stats(b"settings")["metrics_port"] == "0"
    socks = listening_sockets(srv.pid)
    assert [p for _, p in socks] == [srv.port], socks
    srv0 = server_factory("-o", "metrics_port=0")
    assert [p for _, p in listening_sockets(srv0.pid)] == [srv0.port]


def test_binds_where_listen_binds(server_factory):
    srv, port = metrics_server(server_factory)
    socks = listening_sockets(srv.pid)
    # 127.0.0.1 is 0100007F in /proc's byte order; nothing on 0.0.0.0 or ::.
    assert ("0100007F", port) in socks, socks
    assert [a for a, p in socks if p == port] == ["0100007F"], socks


def test_binds_ipv6_listen_only(server_factory):
    try:
        free_port("::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    srv, port = metrics_server(server_factory, host="::1")
    samples, _ = scrape(port, host="::1")
    assert value(samples, "memcached_up") == 1
    out = subprocess.run([CURL, "-sS", "--max-time", "5", "http://127.0.0.1:%d/metrics" % port],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert out.returncode != 0, "metrics answered on 127.0.0.1 with -l ::1"
    assert [p for _, p in listening_sockets(srv.pid)].count(port) == 1


def test_bad_metrics_port(server_factory):
    srv = server_factory("-o", "metrics_port=70000", wait=False)
    assert srv.wait_exit() not in (None, 0)
    srv.expected_rc = None
    assert "metrics_port" in srv.stderr_text()


# --------------------------------------------------------------------------
# a real Prometheus
# --------------------------------------------------------------------------

def prom_query(prom_port, query):
    url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (prom_port, urllib.parse.quote(query))
    status, _, body = curl(url)
    if status != 200:
        return None
    data = json.loads(body)
    if data.get("status") != "success" or not data["data"]["result"]:
        return None
    return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]


def test_real_prometheus_scrapes(server_factory, tmp_path):
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip("%s is absent (Debian package prometheus)" % PROMETHEUS)
    srv, port = metrics_server(server_factory)
    with srv.client() as c:
        for i in range(11):
            c.check(b"set prom%d 0 0 2\r\nhi\r\n" % i, b"STORED\r\n")
        c.check(b"get prom1\r\n", b"VALUE prom1 0 2\r\nhi\r\nEND\r\n")
        expected_items = int(c.stats()["curr_items"])
    assert expected_items == 11

    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: memstash\n    scrape_interval: 1s\n"
        "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % port)
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [PROMETHEUS, "--config.file=%s" % config,
         "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
         "--web.listen-address=127.0.0.1:%d" % prom_port],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True)
    try:
        assert wait_port("127.0.0.1", prom_port, timeout=60, proc=proc), \
            "prometheus did not start: %s" % (tmp_path / "prometheus.log").read_text()
        deadline = time.monotonic() + 90
        got = None
        while time.monotonic() < deadline:
            got = prom_query(prom_port, "memcached_current_items")
            if got is not None and got[0][1] == expected_items:
                break
            time.sleep(0.5)
        assert got is not None and got[0][1] == expected_items, \
            "prometheus never saw memcached_current_items=%d (last: %r)" % (expected_items, got)
        assert got[0][0]["job"] == "memstash"
        up = prom_query(prom_port, 'up{job="memstash"}')
        assert up is not None and up[0][1] == 1
        hits = prom_query(prom_port, 'memcached_commands_total{command="get",status="hit"}')
        assert hits is not None and hits[0][1] == 1
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


# --------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------

def stop_and_read(srv):
    rc, killed = srv.stop()
    assert rc == 0 and not killed
    return srv.stderr_text()


def test_quiet_without_v(server_factory):
    srv, port = metrics_server(server_factory)
    with srv.client() as c:
        c.check(b"set q 0 0 1\r\nx\r\n", b"STORED\r\n")
        c.check(b"get nope\r\n", b"END\r\n")
    scrape(port)
    assert stop_and_read(srv) == ""


def test_vv_logs_connections_with_timestamps(server_factory):
    srv = server_factory("-vv")
    with srv.client() as c:
        assert c.call(b"version\r\n").startswith(b"VERSION ")
    text = stop_and_read(srv)
    lines = [l for l in text.split("\n") if l]
    assert lines, "nothing logged with -vv"
    for line in lines:
        assert TS_RE.match(line), "line without a timestamp: %r" % line
    assert any(re.search(r"Z <\d+ new auto-negotiating client connection$", l) for l in lines), text
    assert any(re.search(r"Z <\d+ version$", l) for l in lines), text
    # The timestamps are now, in UTC.
    stamp = time.strptime(lines[0][:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(stamp) - time.mktime(time.gmtime())) < 600


def test_levels_follow_v(server_factory):
    # -v: startup and shutdown, but no connection events.
    srv = server_factory("-v")
    with srv.client() as c:
        c.check(b"get x\r\n", b"END\r\n")
    text = stop_and_read(srv)
    assert re.search(r"Z memstashd \S+ started: pid %d" % srv.pid, text), text
    assert "new auto-negotiating client connection" not in text
    assert "Exiting normally" in text
    # -vvv adds internal state (a metrics scrape); -vv does not.
    srv2, port2 = metrics_server(server_factory, "-vv")
    scrape(port2)
    assert "metrics: served" not in stop_and_read(srv2)
    srv3, port3 = metrics_server(server_factory, "-vvv")
    scrape(port3)
    with srv3.client() as c:
        c.check(b"get y\r\n", b"END\r\n")
    text = stop_and_read(srv3)
    assert re.search(r"Z metrics: served \d+ bytes", text), text
    assert re.search(r"Z fd \d+ from tcp:127\.0\.0\.1:%d handed to worker \d+" % srv3.port, text), text
