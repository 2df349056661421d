"""Builds the memstash Python module (python/memstash.c) with setuptools.

    pip install --no-build-isolation --no-deps ./python        # from the repository root

libmemstash is compiled into the extension from ../src (client, proto,
common), so the installed module needs no libmemstash.so at run time; only
libcrypto (OpenSSL, for MD5 ketama points) and libc are linked dynamically.
Needs the Python headers and OpenSSL's (Debian: python3-dev libssl-dev) and
Debian's setuptools and wheel (python3-setuptools python3-wheel); nothing is
downloaded. The type stubs (memstash.pyi) are installed next to the module
and as a PEP 561 stub package (memstash-stubs, with py.typed).
"""

import glob
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")

if not os.path.isfile(os.path.join(SRC, "client", "ops.c")):
    raise SystemExit("memstash: %s/client/ops.c not found: build from a checkout of the whole "
                     "repository (pip install ./python from its root)" % SRC)

# The files python/CMakeLists.txt links in through memstash_static.
sources = [os.path.join(HERE, "memstash.c")]
for module in ("client", "proto", "common"):
    sources += sorted(glob.glob(os.path.join(SRC, module, "*.c")))


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        for line in f:
            if line.startswith("project(memstash VERSION "):
                return line.split()[2]
    return "0.0.0"


class build_ext_with_stubs(build_ext):
    """Also puts memstash.pyi beside the module and into memstash-stubs/ (PEP 561).

    (build_py does not run for a distribution without pure modules.)
    """

    def run(self):
        super().run()
        if self.inplace:
            return
        stub = os.path.join(HERE, "memstash.pyi")
        shutil.copyfile(stub, os.path.join(self.build_lib, "memstash.pyi"))
        pkg = os.path.join(self.build_lib, "memstash-stubs")
        os.makedirs(pkg, exist_ok=True)
        shutil.copyfile(stub, os.path.join(pkg, "__init__.pyi"))
        shutil.copyfile(os.path.join(HERE, "py.typed"), os.path.join(pkg, "py.typed"))


setup(
    name="memstash",
    version=project_version(),
    description="memstash client: a drop-in, thread-safe, faster python-memcached Client",
    python_requires=">=3.9",
    ext_modules=[
        Extension(
            "memstash",
            sources=sources,
            include_dirs=[os.path.join(ROOT, "include"), os.path.join(SRC, "client"),
                          os.path.join(SRC, "proto"), os.path.join(SRC, "common")],
            define_macros=[("_GNU_SOURCE", None)],
            extra_compile_args=["-std=c11", "-fvisibility=hidden", "-O2"],
            extra_link_args=["-Wl,--exclude-libs,ALL"],
            libraries=["crypto", "m", "pthread"],
        )
    ],
    cmdclass={"build_ext": build_ext_with_stubs},
    zip_safe=False,
)
