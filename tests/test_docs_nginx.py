"""The nginx configuration of docs/deployment.md works as the page says: nginx accepts it, and a
mummyx server behind it answers HTTP, upgrades WebSockets through it, and streams SSE events
through it while the stream stays open.

Skipped where nginx is not installed (.ci/run installs it). The page's `listen 443 ssl` becomes
a plain listener on a free 127.0.0.1 port, and its upstream points at the test's server.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from mummyx import Router, WebSocketEvent
from mummyx.testing import running

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
PAGE = Path(__file__).resolve().parent.parent / "docs" / "deployment.md"


def documented_config() -> str:
    """The first ```nginx block of the deployment page: upstream, map and server."""
    blocks = re.findall(r"```nginx\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert blocks, "docs/deployment.md has no nginx block"
    return str(blocks[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_conf(tmp: Path, listen: int, upstream: int) -> Path:
    site = documented_config()
    assert "listen 443 ssl;" in site and "server 127.0.0.1:8080;" in site
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen};")
    site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream};")
    user = "user root;" if os.geteuid() == 0 else ""  # workers must reach the temp dirs
    conf = tmp / "nginx.conf"
    conf.write_text(f"""{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
{site}
}}
""")
    return conf


def make_router() -> Router:
    router = Router()

    @router.get("/health")
    def health(request):  # type: ignore[no-untyped-def]
        return "ok"

    @router.get("/ws")
    def ws(request):  # type: ignore[no-untyped-def]
        def echo(websocket, event, message):  # type: ignore[no-untyped-def]
            if event is WebSocketEvent.MESSAGE and isinstance(message.data, str):
                websocket.send(message.data)
        request.upgrade_to_websocket(echo)

    @router.get("/events")
    def events(request):  # type: ignore[no-untyped-def]
        stream = request.respond_sse()
        stream.send("first")
        stream.wait_closed(30)  # the stream stays open: only unbuffered events get through

    return router


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[int]:
    """A mummyx server behind nginx configured as the page says; yields nginx's port."""
    with running(make_router(), workers=4) as server:
        port = free_port()
        conf = nginx_conf(tmp_path, port, server.port)
        test = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp_path)],
                              capture_output=True, text=True, check=False)
        assert test.returncode == 0, test.stderr
        proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path), "-g",
                                 "daemon off;"], stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None, proc.communicate()[1]
                    assert time.monotonic() < deadline, "nginx did not listen"
                    time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


def test_http_through_nginx(proxied: int) -> None:
    httpx = pytest.importorskip("httpx")
    response = httpx.get(f"http://127.0.0.1:{proxied}/health", timeout=10)
    assert response.status_code == 200
    assert response.text == "ok"
    assert "nginx" in response.headers["server"]  # it did go through the proxy


def test_websocket_through_nginx(proxied: int) -> None:
    client = pytest.importorskip("websockets.sync.client")
    with client.connect(f"ws://127.0.0.1:{proxied}/ws", open_timeout=10) as ws:
        ws.send("through the proxy")
        assert ws.recv(timeout=10) == "through the proxy"


def test_sse_event_arrives_while_the_stream_is_open(proxied: int) -> None:
    """The handler keeps its stream open after one event: the event must reach the client
    through nginx now, not when the response ends (the page says no extra setting is needed)."""
    with socket.create_connection(("127.0.0.1", proxied), timeout=5) as sock:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        seen = b""
        deadline = time.monotonic() + 5
        while b"data: first" not in seen and time.monotonic() < deadline:
            seen += sock.recv(65536)
    assert seen.startswith(b"HTTP/1.1 200"), seen[:300]
    assert b"data: first" in seen
