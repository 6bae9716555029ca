"""Packaging: the license and its metadata, what the sdist declares, and what happens when the
source folder shadows an installed mummyx (``python -m mummyx`` from the repository root).

The slow checks (build an sdist and wheels, install them in fresh venvs with no compiler) are
scripts: ``make dist-check``, ``make wheels wheels-check``; .ci/run runs them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import mummyx

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")  # 3.11+: the full suite runs on 3.11 and 3.13


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_is_mit_for_the_mummyx_authors() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 The mummyx authors" in text
    assert "WITHOUT WARRANTY OF ANY KIND" in text


def test_license_is_an_spdx_expression_with_its_file() -> None:
    project = pyproject()["project"]
    assert project["license"] == "MIT"  # a string (PEP 639), not the deprecated table
    assert project["license-files"] == ["LICENSE"]
    # PEP 639 forbids license classifiers beside a license expression
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_setuptools_is_bounded_to_versions_that_read_the_spdx_license() -> None:
    requires = pyproject()["build-system"]["requires"]
    (setuptools,) = [r for r in requires if r.startswith("setuptools")]
    # 77.0 is the first setuptools that takes `license = "MIT"` and license-files
    assert ">=77.0.3" in setuptools
    assert ",<" in setuptools, "an upper bound on the major version"


def test_manifest_ships_every_header_of_the_build() -> None:
    """setuptools puts the .c sources of an Extension into the sdist, not the headers they
    include: MANIFEST.in must name them, or a wheel built from the sdist fails to compile."""
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert "recursive-include csrc *.c *.h" in manifest
    assert list((ROOT / "csrc").rglob("*.h")), "the build has headers"


def test_version_agrees_with_pyproject() -> None:
    assert mummyx.__version__ == pyproject()["project"]["version"]


def copy_sources(dest: Path, *, with_extension: bool) -> Path:
    """A mummyx package folder at dest/mummyx: the .py files, plus the built extension if asked
    (an installed package), or without it (a checkout nobody built in)."""
    pkg = dest / "mummyx"
    pkg.mkdir(parents=True)
    for src in Path(mummyx.__file__).parent.iterdir():
        if src.suffix in (".py", ".pyi") or src.name == "py.typed":
            shutil.copy(src, pkg / src.name)
    if with_extension:
        shutil.copy(mummyx._mummyx.__file__, pkg / Path(mummyx._mummyx.__file__).name)
    return pkg


def run_python(args: list, cwd: Path, pythonpath: str = "") -> subprocess.CompletedProcess:
    # os.environ's rest is kept: under the sanitizer run it preloads ASan, which the built
    # extension needs before it can load
    env = dict(os.environ, PYTHONPATH=pythonpath)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_unbuilt_checkout_says_how_to_build(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    copy_sources(checkout, with_extension=False)
    done = run_python(["-c", "import mummyx"], cwd=checkout)
    assert done.returncode != 0
    assert "ImportError: mummyx's C extension is not built in" in done.stderr
    assert str(checkout / "mummyx") in done.stderr
    assert "python setup.py build_ext --inplace" in done.stderr
    assert "No module named 'mummyx._mummyx'" not in done.stderr


def test_checkout_shadowing_an_install_names_the_install(tmp_path: Path) -> None:
    """`pip install .` then `python -m mummyx` from the repository root: the checkout comes
    first on sys.path, and the message says where the installed package is and what to do."""
    checkout = tmp_path / "checkout"
    copy_sources(checkout, with_extension=False)
    installed = copy_sources(tmp_path / "site-packages", with_extension=True)
    done = run_python(["-m", "mummyx", "--help"], cwd=checkout,
                      pythonpath=str(installed.parent))
    assert done.returncode != 0
    assert f"the mummyx installed in {installed} is hidden behind it" in done.stderr
    assert "run from another directory" in done.stderr
    # ... and from another directory the installed package serves the CLI
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_python(["-m", "mummyx", "--help"], cwd=elsewhere, pythonpath=str(installed.parent))
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_a_missing_dependency_inside_the_extension_is_not_masked(tmp_path: Path) -> None:
    """Only the missing extension itself gets the explanation: an ImportError raised while the
    extension loads (a broken .so) keeps its own message."""
    checkout = tmp_path / "checkout"
    pkg = copy_sources(checkout, with_extension=False)
    (pkg / ("_mummyx" + EXTENSION_SUFFIXES[0])).write_bytes(b"not an ELF file")
    done = run_python(["-c", "import mummyx"], cwd=checkout)
    assert done.returncode != 0
    assert "not built in" not in done.stderr
    assert "ImportError" in done.stderr
