"""Checks the source release: ``python -m build`` makes an sdist and a wheel without printing a
warning, the sdist holds everything the build needs, the metadata carries the SPDX license, and
a fresh venv installs the sdist (compiling it) and serves a request from it.

Usage: python scripts/dist_check.py   (``make dist-check``; needs the ``build`` package)
Prints one line per check and exits 1 if any failed.
"""
from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
# Lines of the build's output that mean something is wrong even though it succeeded:
# setuptools' deprecations, MANIFEST.in patterns matching nothing, compiler warnings.
WARNING = re.compile(r"warning|deprecat", re.IGNORECASE)


def tracked(pattern_dirs: List[str]) -> List[str]:
    """Files git tracks under these directories: what the sdist must carry."""
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", *pattern_dirs], capture_output=True,
                         text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


def main() -> int:
    failures: List[str] = []

    def check(ok: bool, what: str) -> None:
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory(prefix="mummyx-dist-") as tmp:
        out = Path(tmp) / "dist"
        # PYTHONDONTWRITEBYTECODE (set on some machines) makes setuptools warn that it skips
        # byte-compiling: a note about this machine, not about the package.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        build = subprocess.run([sys.executable, "-m", "build", "-o", str(out), str(ROOT)],
                               env=env, capture_output=True, text=True, check=False)
        log = build.stdout + build.stderr
        check(build.returncode == 0, "python -m build succeeds")
        if build.returncode != 0:
            print(log)
            return 1
        # pip's own notes about unreachable local indexes are the machine's, not the build's.
        warnings = [line for line in log.splitlines()
                    if WARNING.search(line) and "Location 'file://" not in line]
        check(not warnings, "python -m build prints no warning" +
              "".join(f"\n      {w}" for w in warnings[:20]))

        sdist = next(out.glob("mummyx-*.tar.gz"))
        wheel = next(out.glob("mummyx-*.whl"))
        with tarfile.open(sdist) as tar:
            names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        needed = tracked(["csrc", "mummyx"]) + ["LICENSE", "README.md", "pyproject.toml",
                                                "setup.py", "MANIFEST.in"]
        missing = sorted(set(needed) - names)
        check(not missing, f"sdist holds csrc/, mummyx/ and the build files ({len(needed)})" +
              (f": missing {missing[:10]}" if missing else ""))
        stray = sorted(n for n in names if n.endswith((".so", ".o", ".pyc")))
        check(not stray, "sdist holds no build products" + (f": {stray[:5]}" if stray else ""))

        with zipfile.ZipFile(wheel) as zf:
            meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            meta = email.message_from_bytes(zf.read(meta_name))
            licenses = [n for n in zf.namelist() if "/licenses/" in n]
        check(meta.get("License-Expression") == "MIT", "wheel metadata: License-Expression: MIT")
        check(any(n.endswith("/LICENSE") for n in licenses), "wheel carries LICENSE")

        # A fresh venv builds the sdist alone (no checkout beside it) and serves with it.
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(sdist)],
                                 cwd=tmp, env=env, capture_output=True, text=True, check=False)
        check(install.returncode == 0, "a fresh venv builds and installs the sdist")
        if install.returncode != 0:
            print(install.stdout + install.stderr)
        else:
            smoke = subprocess.run([str(venv / "bin" / "python"),
                                    str(ROOT / "scripts" / "smoke_serve.py")],
                                   cwd=tmp, env=env, capture_output=True, text=True, timeout=120,
                                   check=False)
            check(smoke.returncode == 0, "the installed sdist serves a request: " +
                  (smoke.stdout.strip() or smoke.stderr.strip()[-500:]))
    print('all checks passed' if not failures else f'{len(failures)} check(s) failed')
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
