"""libmemcached's conformance checker (Debian name: memccapable), ASCII
protocol only (-a).  memccapable FLUSHES the server, so this module has its own (nothing else uses it).

Output format (libmemcached 1.1.4): one line per test,
"ascii <name><padding>[pass]" (or "[FAIL]" / "[skip]"), then
"All tests passed" and exit code 0.
"""

import re
import shutil
import subprocess

import pytest

MEMCCAPABLE = shutil.which("memccapable") or "/usr/bin/memccapable"

EXPECTED_TESTS = """version quit verbosity set set_noreply get gets mget flush
flush_noreply add add_noreply replace replace_noreply cas cas_noreply delete
delete_noreply incr incr_noreply decr decr_noreply append append_noreply
prepend prepend_noreply stat""".split()


def run_memccapable(port, *extra, timeout=120):
    proc = subprocess.Popen([MEMCCAPABLE, "-h", "127.0.0.1", "-p", str(port), "-t", "10", "-a"]
                            + list(extra),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        raise AssertionError("memccapable did not finish within %ds:\n%s"
                             % (timeout, out.decode(errors="replace")))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode, out.decode(errors="replace")


@pytest.fixture
def capable():
    if not shutil.which("memccapable") and not shutil.which(MEMCCAPABLE):
        pytest.skip("memccapable (libmemcached-tools) not installed")
    return MEMCCAPABLE


def test_memccapable_ascii(capable, shared_server):
    rc, out = run_memccapable(shared_server.port)
    results = {}
    for line in out.splitlines():
        m = re.match(r"ascii (.+?)\s+\[(\w+)\]\s*$", line)
        if m:
            results[m.group(1).replace(" ", "_")] = m.group(2)
    failed = {k: v for k, v in results.items() if v != "pass"}
    assert not failed, "memccapable failures: %s\n%s" % (failed, out)
    missing = [t for t in EXPECTED_TESTS if t not in results]
    assert not missing, "tests not run: %s\n%s" % (missing, out)
    assert "[FAIL]" not in out, out
    assert "All tests passed" in out, out
    assert rc == 0, out


@pytest.mark.parametrize("name", ["ascii cas", "ascii incr noreply", "ascii mget"])
def test_memccapable_single(capable, shared_server, name):
    """-T runs one named test (an unknown name silently runs nothing, so the
    test checks that exactly that one ran)."""
    rc, out = run_memccapable(shared_server.port, "-T", name)
    lines = [l for l in out.splitlines() if l.startswith("ascii ")]
    assert len(lines) == 1, out
    assert re.match(re.escape(name) + r"\s+\[pass\]\s*$", lines[0]), out
    assert rc == 0, out
