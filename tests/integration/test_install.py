"""make install's tree: cmake --install of the build under test into a DESTDIR.

The build directory comes from $MEMSTASH_BUILD_DIR (ctest sets it). The unit
file is checked with systemd-analyze verify where that command exists.
"""
import os
import shutil
import subprocess

import pytest

BUILD = os.environ.get("MEMSTASH_BUILD_DIR")

pytestmark = pytest.mark.skipif(not BUILD, reason="MEMSTASH_BUILD_DIR not set (run through ctest)")


def configured_prefix():
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith("CMAKE_INSTALL_PREFIX:"):
                return line.split("=", 1)[1].strip()
    return "/usr/local"


PREFIX = configured_prefix() if BUILD else "/usr/local"
# GNUInstallDirs: /usr keeps its configuration in /etc, other prefixes in <prefix>/etc.
SYSCONF = "/etc" if PREFIX == "/usr" else PREFIX + "/etc"
P = PREFIX.lstrip("/")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    env = dict(os.environ, DESTDIR=str(dest))
    out = subprocess.run(["cmake", "--install", BUILD], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return dest


EXPECTED = [
    P + "/bin/memstashd",
    P + "/bin/memstash",
    P + "/include/memstash/memstash.h",
    P + "/lib/libmemstash.a",
    P + "/lib/libmemstash.so",
    P + "/lib/pkgconfig/memstash.pc",
    P + "/share/man/man1/memstashd.1",
    P + "/share/man/man1/memstash.1",
    P + "/share/man/man3/libmemstash.3",
    P + "/lib/systemd/system/memstashd.service",
    SYSCONF.lstrip("/") + "/memstashd.conf",
]


@pytest.mark.parametrize("path", EXPECTED)
def test_installed(tree, path):
    assert (tree / path).exists(), path


def test_binaries_run(tree):
    out = subprocess.run([str(tree / P / "bin/memstashd"), "-V"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("memstashd ")
    env = dict(os.environ, LD_LIBRARY_PATH=str(tree / P / "lib"))
    out = subprocess.run([str(tree / P / "bin/memstash"), "--help"], capture_output=True,
                         text=True, timeout=30, env=env)
    assert out.returncode == 0 and "locate" in out.stdout


def test_pkg_config(tree):
    pc = (tree / P / "lib/pkgconfig/memstash.pc").read_text()
    assert "prefix=" + PREFIX in pc and "-lmemstash" in pc
    if shutil.which("pkg-config"):
        env = dict(os.environ, PKG_CONFIG_PATH=str(tree / P / "lib/pkgconfig"),
                   PKG_CONFIG_SYSROOT_DIR=str(tree))
        out = subprocess.run(["pkg-config", "--cflags", "--libs", "memstash"], env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "-lmemstash" in out.stdout


def test_man_pages_render(tree):
    if not shutil.which("man"):
        pytest.skip("man not installed")
    for page in ("man1/memstashd.1", "man1/memstash.1", "man3/libmemstash.3"):
        out = subprocess.run(["man", "-l", str(tree / P / "share/man" / page)],
                             capture_output=True, text=True, timeout=30,
                             env=dict(os.environ, MANPAGER="cat", PAGER="cat"))
        assert out.returncode == 0, out.stderr
        assert "NAME" in out.stdout and "SEE ALSO" in out.stdout


def test_unit_hardening(tree):
    unit = (tree / P / "lib/systemd/system/memstashd.service").read_text()
    assert "ExecStart=%s/bin/memstashd $MEMSTASHD_OPTS" % PREFIX in unit
    assert "EnvironmentFile=-/etc/memstashd.conf" in unit
    for line in ("DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet="):
        assert line in unit.splitlines(), line
    conf = (tree / SYSCONF.lstrip("/") / "memstashd.conf").read_text()
    assert "MEMSTASHD_OPTS=" in conf


def test_unit_verifies(tree, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    unit = (tree / P / "lib/systemd/system/memstashd.service").read_text()
    # Point ExecStart at the installed binary inside DESTDIR so verify can find it.
    local = tmp_path / "memstashd.service"
    local.write_text(unit.replace(PREFIX + "/bin/memstashd", str(tree / P / "bin/memstashd")))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(local)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
