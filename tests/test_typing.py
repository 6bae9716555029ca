"""The public API type-checks: mypy --strict accepts a realistic user program, rejects one with
deliberate mistakes (exactly on the lines whose comment starts with ``error:``), and stubtest
finds the extension's stub (mummyx/_mummyx.pyi) in agreement with the compiled module.

Skipped when mypy is not installed (it is in the ``test`` extra).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Set

import pytest

pytest.importorskip("mypy", reason="mypy is not installed (pip install .[test])")

ROOT = Path(__file__).resolve().parent.parent
GOOD = "tests/typing_sample.py"
BAD = "tests/typing_bad_sample.py"
TIMEOUT = 100.0  # seconds; a cold mypy run takes a few


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    # A private cache: the repository stays clean and an old cache cannot hide a change.
    return str(tmp_path_factory.mktemp("mypy-cache"))


def run_mypy(args: List[str], cache_dir: str) -> subprocess.CompletedProcess[str]:
    # Run from the repository root so that mypy checks this checkout's mummyx package (and
    # reports problems inside it) rather than some installed copy.
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", cache_dir,
         "--no-color-output", "--show-error-codes", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def marked_lines(path: str) -> Set[int]:
    text = (ROOT / path).read_text()
    return {n for n, line in enumerate(text.splitlines(), 1) if re.search(r"#\s*error:", line)}


def test_sample_program_passes_strict(cache_dir: str) -> None:
    result = run_mypy([GOOD], cache_dir)
    assert result.returncode == 0, (
        f"mypy --strict {GOOD} failed:\n{result.stdout}{result.stderr}")
    assert "Success" in result.stdout


def test_type_errors_are_caught(cache_dir: str) -> None:
    expected = marked_lines(BAD)
    assert len(expected) >= 10, "the bad sample lost its # error markers"
    result = run_mypy([BAD], cache_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 1, f"mypy should have failed on {BAD}:\n{output}"
    pattern = re.compile(rf"^{re.escape(BAD)}:(\d+): error:", re.MULTILINE)
    reported = {int(m.group(1)) for m in pattern.finditer(output)}
    missed = sorted(expected - reported)
    unexpected = sorted(reported - expected)
    assert not missed, f"mypy accepted lines {missed} of {BAD}, which are wrong:\n{output}"
    assert not unexpected, f"mypy rejected lines {unexpected} of {BAD}, which are fine:\n{output}"
    # Errors elsewhere (say, in mummyx itself) would make the check above meaningless.
    others = [line for line in output.splitlines()
              if ": error:" in line and not line.startswith(BAD)]
    assert not others, "mypy reported errors outside the sample:\n" + "\n".join(others)


def test_request_respond_with_a_str_status_is_rejected(cache_dir: str, tmp_path: Path) -> None:
    # The simplest mistake, on its own, so a failure here needs no decoding.
    src = tmp_path / "respond_str.py"
    src.write_text(
        "from mummyx import Request\n"
        "\n"
        "def handler(request: Request) -> None:\n"
        "    request.respond(\"200\")\n")
    result = run_mypy([str(src)], cache_dir)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{src}:4: error:" in result.stdout, result.stdout


def test_stub_matches_the_extension() -> None:
    pytest.importorskip("mypy.stubtest")
    args = [sys.executable, "-m", "mypy.stubtest", "mummyx._mummyx"]
    helptext = subprocess.run(args[:3] + ["--help"], capture_output=True, text=True,
                              timeout=TIMEOUT).stdout
    # PEP 800 @disjoint_base is too new to require of the stub (older type checkers reject it).
    if "--ignore-disjoint-bases" in helptext:
        args.append("--ignore-disjoint-bases")
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, f"stubtest:\n{result.stdout}{result.stderr}"
