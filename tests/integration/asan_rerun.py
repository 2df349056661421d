"""asan_rerun.py - running a test file again under the ASan runtime.

A sanitizer build of libmemstash or of the memstash module cannot be loaded
into a plain python: the ASan runtime has to be loaded first. Tests that load
one check links_asan() and, when it holds, skip themselves; a single test of
the file then re-runs the file's selected tests in a child python with
libasan preloaded (rerun_under_asan) and asserts on its output.
"""

import glob
import os
import subprocess
import sys

ASAN_PRELOADED = "libasan" in os.environ.get("LD_PRELOAD", "")
# For a child python loading the sanitizer build of the memstash module.
MODULE_ASAN_OPTIONS = "detect_leaks=0:verify_asan_link_order=0:abort_on_error=0"


def module_file(modpath):
    """The built memstash extension under modpath, or ""."""
    found = glob.glob(os.path.join(modpath, "memstash*.so")) if modpath else []
    return found[0] if found else ""


def links_asan(path):
    """Whether the shared object at path needs the ASan runtime."""
    if not path:
        return False
    try:
        out = subprocess.run(["ldd", path], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return b"libasan" in out


def rerun_under_asan(test_file, select, asan_options, timeout, python=sys.executable,
                     python_malloc=False):
    """Runs `pytest -k select test_file` in a child python with libasan
    preloaded; returns (returncode, stdout + stderr)."""
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS=asan_options)
    if python_malloc:
        env["PYTHONMALLOC"] = "malloc"
    p = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select,
                        os.path.abspath(test_file)],
                       capture_output=True, env=env, timeout=timeout,
                       cwd=os.path.dirname(os.path.abspath(test_file)))
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    return p.returncode, out
