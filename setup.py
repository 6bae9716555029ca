"""Builds mummyx._mummyx, the C core and its CPython binding, from csrc/."""
import glob
import os

import setuptools
from setuptools import Extension, setup

# pyproject.toml's `license = "MIT"` (an SPDX expression, PEP 639) needs setuptools 77 or newer.
# pip and `python -m build` fetch that themselves; a direct `python setup.py build_ext` uses the
# environment's setuptools, whose older releases reject the file with a schema error.
if int(setuptools.__version__.split(".")[0]) < 77:
    raise SystemExit(f"setuptools {setuptools.__version__} cannot read pyproject.toml's SPDX "
                     "license; upgrade it first: pip install 'setuptools>=77.0.3,<85' (or pip "
                     "install -r tests/requirements.txt)")

# MUMMYX_SANITIZE=1 builds with ASan+UBSan (see .ci/run); MUMMYX_DEBUG=1 without optimisation.
sanitize = os.environ.get("MUMMYX_SANITIZE") == "1"
debug = os.environ.get("MUMMYX_DEBUG") == "1" or sanitize
werror = os.environ.get("MUMMYX_WERROR") == "1"

cflags = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
          "-Wno-cast-function-type", "-fvisibility=hidden"]
ldflags = []
if werror:
    cflags.append("-Werror")
if debug:
    # MX_DEBUG_COUNTS: live-object counters the tests check (_mummyx._debug_live_requests)
    cflags += ["-O1", "-g", "-fno-omit-frame-pointer", "-DMX_DEBUG_COUNTS"]
else:
    cflags += ["-O2"]
if sanitize:
    cflags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    ldflags += ["-fsanitize=address,undefined"]

sources = sorted(glob.glob("csrc/core/*.c")) + sorted(glob.glob("csrc/py/*.c"))

setup(
    ext_modules=[
        Extension(
            "mummyx._mummyx",
            sources=sources,
            include_dirs=["csrc/core"],
            libraries=["z", "pthread"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            depends=sorted(glob.glob("csrc/core/*.h") + glob.glob("csrc/py/*.h")),
        )
    ],
)
