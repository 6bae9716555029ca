"""Every code block in docs/ that is a full program runs, serves, and answers as the page says;
and every program in examples/ is listed in docs/examples.md and starts, serves and stops.

A page marks such a block with an HTML comment on the line before its fence (invisible on the
site):

    <!-- docs-test: GET /users/2 200 "2" -->
    ```python
    ...
    Server(router).serve(8080)
    ```

The check is ``METHOD PATH [STATUS] ["TEXT"]`` (TEXT runs to the last quote, so it may hold
quotes itself; without STATUS any status below 500 passes): METHOD is an HTTP method, ``WS`` (open a
WebSocket, TEXT must be in the first message) or ``SSE`` (TEXT must arrive on the stream). The
program runs in a subprocess whose ``Server.serve`` is pointed at 127.0.0.1 and a free port,
gets the request, then SIGTERM, after which it must exit 0, all within a timeout.
"""
from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

import mummyx

ROOT = Path(__file__).resolve().parent.parent
# Where the mummyx under test lives (the checkout, or site-packages in the smoke runs on other
# Pythons): the programs' subprocesses import that one.
MUMMYX_HOME = str(Path(mummyx.__file__).resolve().parent.parent)
DOCS = ROOT / "docs"
MARK = re.compile(r'^<!-- docs-test: (?P<method>[A-Z]+) (?P<path>\S+)'
                  r'(?: (?P<status>\d{3}))?(?: "(?P<text>.*)")? -->$')
TIMEOUT = 20.0  # seconds for a program to start, answer and stop

# Runs the block with Server.serve bound to 127.0.0.1:$DOCS_TEST_PORT, whatever the program asks.
RUNNER = """
import os, runpy, sys
import mummyx.server
_serve = mummyx.server.Server.serve
def serve(self, port=8080, host="localhost", *, unix=None):
    return _serve(self, int(os.environ["DOCS_TEST_PORT"]), "127.0.0.1")
mummyx.server.Server.serve = serve
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass
class Program:
    page: str
    line: int
    code: str
    method: str
    path: str
    status: Optional[int]
    text: Optional[str]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def marked_programs() -> List[Program]:
    """Each marked block of each page, with the check its marker asks for."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("<!-- docs-test"):
                continue
            m = MARK.match(line)
            assert m, f"{page.name}:{i + 1}: malformed marker {line!r}"
            assert i + 1 < len(lines) and lines[i + 1].strip() == "```python", \
                f"{page.name}:{i + 1}: a docs-test marker must sit right above a ```python fence"
            end = lines.index("```", i + 2)
            found.append(Program(page.name, i + 2, "\n".join(lines[i + 2:end]) + "\n",
                                 m["method"], m["path"],
                                 int(m["status"]) if m["status"] else None, m["text"]))
    return found


PROGRAMS = marked_programs()


def test_the_pages_mark_their_programs() -> None:
    """Guard against a marker syntax change that silently selects nothing."""
    pages = {p.page for p in PROGRAMS}
    assert len(PROGRAMS) >= 6, [p.id for p in PROGRAMS]
    for page in ("getting-started.md", "routing.md", "websockets.md", "sse.md"):
        assert page in pages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the program exited ({proc.returncode}) before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the program did not listen in time")


def wait_sigterm_caught(pid: int, deadline: float) -> None:
    """Waits until the process catches SIGTERM (its SigCgt mask in /proc has bit 15). serve()
    starts listening a moment before it installs its handler, so a SIGTERM sent as soon as a
    request was answered can still find the default action and kill the process."""
    bit = 1 << (signal.SIGTERM - 1)
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as f:
            caught = next(line for line in f if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & bit:
            return
        time.sleep(0.02)
    raise AssertionError("serve() never installed its SIGTERM handler")


def check_http(port: int, prog: Program) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(prog.method, prog.path)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
    finally:
        conn.close()
    if prog.status is None:
        assert response.status < 500, body
    else:
        assert response.status == prog.status, body
    if prog.text is not None:
        assert prog.text in body


def check_sse(port: int, prog: Program, deadline: float) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {prog.path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                     .encode())
        seen = b""
        while time.monotonic() < deadline and (prog.text or "").encode() not in seen:
            chunk = sock.recv(65536)
            if not chunk:
                break
            seen += chunk
    assert seen.startswith(b"HTTP/1.1 200"), seen[:200]
    assert b"text/event-stream" in seen
    assert (prog.text or "").encode() in seen, seen[:500]


def check_ws(port: int, prog: Program) -> None:
    ws_client = pytest.importorskip("websockets.sync.client")
    with ws_client.connect(f"ws://127.0.0.1:{port}{prog.path}", open_timeout=10) as ws:
        first = ws.recv(timeout=10)
        assert prog.text is None or prog.text in str(first)
        ws.send("echo me")
        # the first frame may be a greeting; the echo must come back within a few messages
        for _ in range(3):
            if ws.recv(timeout=10) == "echo me":
                break
        else:
            raise AssertionError("no echo")


def run_program(script: Path, prog: Program, cwd: Path) -> None:
    """Runs script with serve() on a free 127.0.0.1 port, makes prog's request, then SIGTERM:
    the program must exit 0 (serve() drains and returns) within the timeout."""
    port = free_port()
    env = dict(os.environ, DOCS_TEST_PORT=str(port), PORT=str(port), PYTHONPATH=MUMMYX_HOME)
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(script)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + TIMEOUT
    try:
        wait_listening(port, proc, deadline)
        if prog.method == "SSE":
            check_sse(port, prog, deadline)
        elif prog.method == "WS":
            check_ws(port, prog)
        else:
            check_http(port, prog)
        wait_sigterm_caught(proc.pid, deadline)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("prog", PROGRAMS, ids=[p.id for p in PROGRAMS])
def test_docs_program_runs(prog: Program, tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(prog.code)
    run_program(script, prog, tmp_path)


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_examples_page_lists_every_example() -> None:
    page = (DOCS / "examples.md").read_text()
    listed = set(re.findall(r"^\| `examples/(\w+\.py)` \|", page, re.MULTILINE))
    assert listed == {e.name for e in EXAMPLES}
    assert len(listed) >= 15


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_example_starts_serves_and_stops(example: Path, tmp_path: Path) -> None:
    """Each example serves GET / without a server error (several answer 404 there: they have
    no page) and exits 0 on SIGTERM. Examples that write files do so under tmp_path."""
    prog = Program("examples", 0, "", "GET", "/", None, None)
    run_program(example, prog, tmp_path)
