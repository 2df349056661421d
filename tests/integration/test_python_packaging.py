"""`pip install ./python` builds the memstash module offline, with Debian's
setuptools (no build isolation, no index), linking libmemstash statically.

The sources the package needs (python/, src/, include/ and the top-level
CMakeLists.txt that carries the version) are copied to a scratch folder
first, so the build starts from what a clean clone holds and leaves nothing
in the worktree. The module is installed with --target into another scratch
folder, imported from there in a child python, and used against a memstashd.
"""

import ast
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ServerFactory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pip_install_builds_a_static_module(tmp_path):
    if not os.path.isfile("/usr/bin/python3"):
        pytest.skip("Debian's /usr/bin/python3 is required")
    src = tmp_path / "clone"
    src.mkdir()
    for d in ("python", "src", "include"):
        shutil.copytree(os.path.join(ROOT, d), src / d,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    shutil.copy(os.path.join(ROOT, "CMakeLists.txt"), src / "CMakeLists.txt")
    target = tmp_path / "site"
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONDONTWRITEBYTECODE="1")
    for k in ("LD_PRELOAD", "PYTHONPATH", "MEMSTASH_PYTHONPATH"):
        env.pop(k, None)
    p = subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "--no-build-isolation",
                        "--no-deps", "--no-index", "--target", str(target), "./python"],
                       cwd=str(src), env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-5000:]

    sos = [f for f in os.listdir(target) if f.startswith("memstash") and f.endswith(".so")]
    assert len(sos) == 1, os.listdir(target)
    ldd = subprocess.run(["ldd", str(target / sos[0])], capture_output=True, text=True,
                         timeout=30).stdout
    assert "libc.so" in ldd
    assert "libmemstash" not in ldd and "libmemcached" not in ldd, ldd

    # Stubs: beside the module and as a PEP 561 stub package, naming every public method.
    assert (target / "memstash-stubs" / "py.typed").is_file()
    stub = (target / "memstash-stubs" / "__init__.pyi").read_text()
    assert stub == (target / "memstash.pyi").read_text()
    tree = ast.parse(stub)
    client = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Client"][0]
    declared = {n.name for n in client.body if isinstance(n, ast.FunctionDef)}

    (tmp_path / "logs").mkdir()
    factory = ServerFactory(str(tmp_path / "logs"))
    try:
        srv = factory()
        code = (
            "import memstash, sys\n"
            "assert memstash.__file__.startswith(sys.argv[1]), memstash.__file__\n"
            "c = memstash.Client(['%s:%d'])\n"
            "assert c.set('pkg', {'installed': 1}) is True\n"
            "assert c.get('pkg') == {'installed': 1}\n"
            "assert c.cached('pkg2', lambda: 'v') == 'v' and c.get('pkg2') == 'v'\n"
            "print(' '.join(n for n in dir(memstash.Client) if not n.startswith('_')\n"
            "               and callable(getattr(memstash.Client, n))\n"
            "               and not n.startswith('Memcached')))\n" % (srv.host, srv.port))
        r = subprocess.run(["/usr/bin/python3", "-c", code, str(target)], cwd=str(tmp_path),
                           env=dict(env, PYTHONPATH=str(target)), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        factory.teardown()
    public = set(r.stdout.split())
    assert {"get", "set", "cached", "get_multi"} <= public
    assert public <= declared, sorted(public - declared)
