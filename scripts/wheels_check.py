"""Installs each wheel in dist/ into a fresh venv where no compiler can be found, and serves a
request with it: proof that the wheels install and run without gcc or the zlib headers.

Usage: python scripts/wheels_check.py [WHEEL_DIR]   (``make wheels-check``; default: dist)

For each ``mummyx-*-cpXY-*.whl`` it finds that CPython (pyenv, the manylinux image's
/opt/python, or pythonX.Y on PATH), makes a venv in a temporary directory, installs the wheel
with ``--no-index --only-binary :all:`` (pip can neither download nor build anything), and runs
scripts/smoke_serve.py from outside the checkout with PATH holding only the venv's bin/, where
the script first checks that no cc, gcc or clang is reachable. Exits 1 if any wheel fails, 2 if
there is no wheel.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "scripts" / "smoke_serve.py"
COMPILERS = ("cc", "gcc", "clang", "c99", "x86_64-linux-gnu-gcc")


def find_python(version: str) -> Optional[str]:
    """The interpreter for 'X.Y', found as scripts/pythons.sh finds it."""
    out = subprocess.run(["bash", "-c", f". {ROOT}/scripts/pythons.sh && python_for {version}"],
                         capture_output=True, text=True, check=False)
    path = out.stdout.strip()
    return path or None


def stripped_env(venv: Path) -> dict:
    """The environment the wheel is installed and run in: PATH is the venv's bin/ alone, and
    CC/CXX point nowhere, so a build that tried to start would fail instead of succeeding
    quietly with the machine's gcc."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env.update(PATH=str(venv / "bin"), CC="/nonexistent/cc", CXX="/nonexistent/c++",
               PIP_DISABLE_PIP_VERSION_CHECK="1", VIRTUAL_ENV=str(venv))
    return env


def check_wheel(wheel: Path) -> bool:
    match = re.search(r"-cp(\d)(\d+)-", wheel.name)
    if not match:
        print(f"{wheel.name}: no CPython tag, skipped")
        return True
    version = f"{match.group(1)}.{match.group(2)}"
    python = find_python(version)
    if python is None:
        print(f"{wheel.name}: Python {version} not found here, skipped")
        return True
    with tempfile.TemporaryDirectory(prefix="mummyx-wheel-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        env = stripped_env(venv)
        leaked = [c for c in COMPILERS if shutil.which(c, path=env["PATH"])]
        if leaked:
            print(f"{wheel.name}: compilers still on PATH: {leaked}")
            return False
        steps = [
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
             "--only-binary", ":all:", str(wheel)],
            [str(venv / "bin" / "python"), str(SMOKE)],
        ]
        for cmd in steps:
            # cwd outside the checkout: the source folder must not shadow the installed package
            done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                                  timeout=300, check=False)
            if done.returncode != 0:
                print(f"{wheel.name}: FAILED: {' '.join(cmd)}\n{done.stdout}{done.stderr}")
                return False
        print(f"{wheel.name}: {done.stdout.strip()}")
    return True


def main(argv: list) -> int:
    # absolute: pip runs in a temporary directory
    wheel_dir = Path(argv[1]).resolve() if len(argv) > 1 else ROOT / "dist"
    wheels = sorted(Path(p) for p in glob.glob(str(wheel_dir / "mummyx-*.whl")))
    if not wheels:
        print(f"no mummyx wheel in {wheel_dir} (run `make wheels` first)")
        return 2
    failed = [w.name for w in wheels if not check_wheel(w)]
    print(f"{len(wheels) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
