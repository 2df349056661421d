"""`memstash bench --threads`: the epoll load generator against a real memstashd.

Each run is short (0.5 s measured) and bounded; the assertions check what the
generator reports against what the server counted (`stats`), so a generator
that miscounts replies, or a server that drops pipelined requests, fails.
The tool comes from $MEMSTASH_CLI (set by ctest), else the build tree.
"""
import json
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CLI = os.environ.get("MEMSTASH_CLI") or os.path.join(HERE, "..", "..", "build", "src", "cli",
                                                       "memstash")


def bench(srv, *args, timeout=60):
    if not os.access(CLI, os.X_OK):
        pytest.fail("memstash tool not found at %r (set MEMSTASH_CLI)" % CLI)
    cmd = [CLI, "-s", "127.0.0.1:%d" % srv.port, "bench", "--threads", "2", "--time", "0.5",
           "--keys", "500", "--json"] + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def stat(srv, name):
    with srv.client() as c:
        return int(c.stats()[name])


@pytest.mark.parametrize("proto", ["text", "meta", "binary"])
@pytest.mark.parametrize("pipeline", ["1", "16"])
def test_gets_hit_every_preloaded_key(server, proto, pipeline):
    r = bench(server, "-P", proto, "--ratio", "1:0", "--connections", "6", "--pipeline", pipeline)
    assert r["protocol"] == proto
    assert r["ops"] > 0 and r["errors"] == 0
    assert r["hits"] == r["gets"] == r["ops"]
    assert r["sets"] == 0
    # The server answered at least every counted get plus the preload.
    assert stat(server, "get_hits") >= r["hits"]
    assert stat(server, "curr_items") == 500
    lat = r["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]


@pytest.mark.parametrize("proto", ["text", "meta", "binary"])
def test_multi_get_counts_keys(server, proto):
    r = bench(server, "-P", proto, "--ratio", "1:0", "--connections", "4", "--multi", "10")
    assert r["ops"] > 0 and r["errors"] == 0
    assert r["gets"] == 10 * r["ops"]
    assert r["keys_per_sec"] == pytest.approx(10 * r["ops_per_sec"], rel=1e-4)  # printed to 0.1


@pytest.mark.parametrize("proto", ["text", "meta", "binary"])
def test_sets_are_stored(server, proto):
    r = bench(server, "-P", proto, "--ratio", "0:1", "--connections", "4", "--pipeline", "8",
              "--value-size", "1000", "--no-prefill")
    assert r["sets"] == r["ops"] > 0 and r["errors"] == 0
    assert stat(server, "cmd_set") >= r["sets"]
    assert stat(server, "curr_items") <= 500


def test_open_loop_rate_is_held(server):
    r = bench(server, "--ratio", "1:0", "--connections", "4", "--pipeline", "4", "--rate", "2000")
    assert r["rate_target"] == 2000
    assert r["errors"] == 0
    # About 2000/s over the measured window, and never more than were due
    # (the margin is for a loaded machine, where replies can lag).
    due = 2000 * r["seconds"]
    assert 0.6 * due <= r["ops"] <= 1.05 * due + 20


def test_cdf_file(server, tmp_path):
    path = tmp_path / "cdf.txt"
    r = bench(server, "--ratio", "9:1", "--connections", "2", "--cdf", str(path))
    rows = [tuple(map(float, line.split())) for line in path.read_text().splitlines()]
    assert rows and rows[-1][1] == pytest.approx(1.0)
    assert all(a[0] < b[0] and a[1] <= b[1] for a, b in zip(rows, rows[1:]))
    assert r["ops"] > 0


def test_bad_usage(server):
    p = subprocess.run([CLI, "-s", "127.0.0.1:%d" % server.port, "-P", "ascii", "bench",
                        "--threads", "1", "--time", "0.1"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2
    p = subprocess.run([CLI, "bench", "--threads", "1", "--pipeline", "0"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2 and "bad --pipeline" in p.stderr
