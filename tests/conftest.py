"""Shared fixtures: a live mummyx server on 127.0.0.1 per test, and raw-socket helpers."""
from __future__ import annotations

import gc
import socket
import time
from typing import Any, Callable, Iterator, List, Optional

import pytest

from mummyx import Router, Server, _mummyx
import mummyx.server as server_module
from mummyx.server import _close_all
from mummyx.testing import running


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Debug builds (MUMMYX_DEBUG=1, MUMMYX_SANITIZE=1): once every server is closed, no native
    request may be left. One that is was either never released by the core, or is held by a
    Request object that outlived its test (say, in the traceback of an exception the test keeps),
    and under ASan it shows up at exit as a leak from mx__req_new, or not, depending on what
    else keeps the session's objects alive past the interpreter's last collection."""
    if exitstatus != 0:
        return  # a failure's report may keep a frame, and with it a Request, alive
    _close_all()  # servers a test left open
    gc.collect()
    live = _mummyx._debug_live_requests()  # None in release builds
    # Handlers a close() gave up on (stuck past shutdown_timeout) finish on their own and only
    # then release their requests: give them a moment.
    deadline = time.monotonic() + 10
    while live and time.monotonic() < deadline:
        time.sleep(0.1)
        gc.collect()
        live = _mummyx._debug_live_requests()
    abandoned = getattr(server_module, "_abandoned_handlers", 0)
    if live and abandoned:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"{live} native request(s) still held by {abandoned} handler "
                                "thread(s) that close() left running on purpose (not a leak "
                                "check failure)", yellow=True)
        return
    if live:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"{live} native request(s) still alive after every server closed "
                                "(a Request kept past its test, or a reference never dropped)",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """serve(handler_or_router, **options) -> a started Server, closed after the test."""
    stack: List[Any] = []

    def start(handler: Any, **options: Any) -> Server:
        options.setdefault("workers", 4)
        cm = running(handler, **options)
        server = cm.__enter__()
        stack.append(cm)
        return server

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def raw_request(port: int, data: bytes, *, host: str = "127.0.0.1", timeout: float = 5.0,
                read_until_close: bool = True) -> bytes:
    """Send raw bytes, then read until the server closes (or timeout). Returns all bytes read."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
            if not read_until_close:
                break
        return b"".join(chunks)


def parse_responses(data: bytes) -> List[dict]:
    """Split a byte stream into HTTP/1.1 responses (Content-Length framed, or no body)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"incomplete response: {data[:200]!r}")
        lines = head.split(b"\r\n")
        version, status, *reason = lines[0].split(b" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.decode().lower(), value.strip().decode("latin-1")))
        hmap = {}
        for k, v in headers:
            hmap.setdefault(k, v)
        status_i = int(status)
        n = int(hmap.get("content-length", "0"))
        if 100 <= status_i < 200 or status_i in (204, 304):
            n = 0
        out.append({"version": version.decode(), "status": status_i,
                    "reason": (reason[0] if reason else b"").decode(), "headers": hmap,
                    "header_list": headers, "body": rest[:n]})
        data = rest[n:]
    return out
