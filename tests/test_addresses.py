"""Where a server listens (IPv4, IPv6, Unix socket) and its lifecycle: start, close, context
manager."""
from __future__ import annotations

import errno
import os
import socket
import threading
import time
from typing import Any, List

import httpx
import pytest

from mummyx import Router, Server

from conftest import parse_responses

TIMEOUT = 5.0


def hello_router() -> Router:
    router = Router()
    router.get("/", lambda req: {"remote_addr": req.remote_addr, "path": req.path})
    router.get("/hello", lambda req: "hello")
    return router


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def connect_refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            # Some stacks accept then reset; a server that is really gone never answers.
            s.settimeout(1.0)
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            return s.recv(1024) == b""
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    except OSError:
        return True


# ---- IPv4 ----------------------------------------------------------------------------------

def test_start_returns_server_with_port_and_url():
    server = Server(hello_router(), workers=2)
    try:
        assert server.start(0, "127.0.0.1") is server
        assert isinstance(server.port, int) and 0 < server.port < 65536
        assert server.url == f"http://127.0.0.1:{server.port}"
        with httpx.Client(timeout=TIMEOUT) as c:
            r = c.get(server.url + "/")
        assert r.json() == {"remote_addr": "127.0.0.1", "path": "/"}
    finally:
        server.close()


def test_start_defaults_to_ephemeral_port_on_localhost():
    server = Server(hello_router(), workers=2).start()
    try:
        assert server.port > 0
        with httpx.Client(timeout=TIMEOUT) as c:
            assert c.get(f"http://127.0.0.1:{server.port}/hello").text == "hello"
    finally:
        server.close()


def test_start_on_a_chosen_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(hello_router(), workers=2)
    try:
        server.start(port, "127.0.0.1")
        assert server.port == port
        with httpx.Client(timeout=TIMEOUT) as c:
            assert c.get(f"http://127.0.0.1:{port}/hello").text == "hello"
    finally:
        server.close()


def test_two_servers_side_by_side(serve):
    r1, r2 = Router(), Router()
    r1.get("/", lambda req: "one")
    r2.get("/", lambda req: "two")
    s1, s2 = serve(r1), serve(r2)
    assert s1.port != s2.port
    with httpx.Client(timeout=TIMEOUT) as c:
        assert c.get(s1.url + "/").text == "one"
        assert c.get(s2.url + "/").text == "two"


# ---- IPv6 ----------------------------------------------------------------------------------

@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback():
    server = Server(hello_router(), workers=2).start(0, "::1")
    try:
        assert server.port > 0
        assert server.url == f"http://[::1]:{server.port}"
        with httpx.Client(timeout=TIMEOUT) as c:
            r = c.get(server.url + "/")
        assert r.status_code == 200
        assert r.json()["remote_addr"] == "::1"
        # raw AF_INET6 socket too
        with socket.create_connection(("::1", server.port), timeout=TIMEOUT) as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert parse_responses(data)[0]["body"] == b"hello"
    finally:
        server.close()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_bracketed_host_is_refused_or_accepted_consistently():
    """'::1' is the documented form; a bracketed '[::1]' must not bind somewhere unexpected."""
    server = Server(hello_router(), workers=2)
    try:
        try:
            server.start(0, "[::1]")
        except (ValueError, OSError):
            return
        with httpx.Client(timeout=TIMEOUT) as c:
            assert c.get(f"http://[::1]:{server.port}/hello").text == "hello"
    finally:
        server.close()


# ---- Unix socket ---------------------------------------------------------------------------

@pytest.fixture
def sock_path(tmp_path):
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path may be long.
    path = str(tmp_path / "mx.sock")
    if len(path.encode()) > 100:
        import tempfile
        d = tempfile.mkdtemp(prefix="mx")
        path = os.path.join(d, "mx.sock")
    return path


def test_unix_socket_with_httpx(sock_path):
    server = Server(hello_router(), workers=2).start(unix=sock_path)
    try:
        assert os.path.exists(sock_path)
        transport = httpx.HTTPTransport(uds=sock_path)
        with httpx.Client(transport=transport, timeout=TIMEOUT) as c:
            r = c.get("http://localhost/hello")
            assert r.status_code == 200 and r.text == "hello"
            r = c.get("http://localhost/")
            assert r.json()["path"] == "/"
    finally:
        server.close()


def test_unix_socket_raw(sock_path):
    server = Server(hello_router(), workers=2).start(unix=sock_path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect(sock_path)
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        responses = parse_responses(data)
        assert [r["body"] for r in responses] == [b"hello", b"hello"]
    finally:
        server.close()


def test_unix_socket_via_testing_running(sock_path):
    from mummyx.testing import running

    with running(hello_router(), unix=sock_path, workers=2):
        with httpx.Client(transport=httpx.HTTPTransport(uds=sock_path), timeout=TIMEOUT) as c:
            assert c.get("http://localhost/hello").text == "hello"


def test_unix_socket_stale_file_is_replaced_or_refused(sock_path):
    # A socket file left behind by a dead process: a fresh server may replace it or raise OSError,
    # but must never leave a half-started server behind.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()
    server = Server(hello_router(), workers=2)
    try:
        try:
            server.start(unix=sock_path)
        except OSError:
            return
        with httpx.Client(transport=httpx.HTTPTransport(uds=sock_path), timeout=TIMEOUT) as c:
            assert c.get("http://localhost/hello").text == "hello"
    finally:
        server.close()


# ---- context manager and close -------------------------------------------------------------

def test_context_manager_on_started_server():
    with Server(hello_router(), workers=2).start(0, "127.0.0.1") as server:
        port = server.port
        with httpx.Client(timeout=TIMEOUT) as c:
            assert c.get(server.url + "/hello").text == "hello"
    assert connect_refused("127.0.0.1", port)


def test_context_manager_starts_server():
    with Server(hello_router(), workers=2) as server:
        port = server.port
        assert port > 0
        with httpx.Client(timeout=TIMEOUT) as c:
            assert c.get(server.url + "/hello").text == "hello"
    assert connect_refused("127.0.0.1", port)


def test_context_manager_closes_on_exception():
    with pytest.raises(ZeroDivisionError):
        with Server(hello_router(), workers=2).start() as server:
            port = server.port
            1 / 0
    assert connect_refused("127.0.0.1", port)


def test_close_refuses_new_connections():
    server = Server(hello_router(), workers=2).start()
    port = server.port
    with httpx.Client(timeout=TIMEOUT) as c:
        assert c.get(server.url + "/hello").text == "hello"
    server.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()


def test_close_is_idempotent():
    server = Server(hello_router(), workers=2).start()
    server.close()
    server.close()


def test_close_without_start():
    Server(hello_router(), workers=2).close()


def test_close_returns_promptly_with_idle_keepalive_connection():
    server = Server(hello_router(), workers=2).start()
    c = httpx.Client(timeout=TIMEOUT)
    try:
        assert c.get(server.url + "/hello").text == "hello"  # leaves an idle keep-alive socket
        t0 = time.monotonic()
        server.close()
        assert time.monotonic() - t0 < 3.0
    finally:
        c.close()


def test_close_lets_in_flight_handler_finish():
    entered = threading.Event()
    router = Router()

    @router.get("/slow")
    def slow(request):
        entered.set()
        time.sleep(0.5)
        request.respond(200, body="finished")

    server = Server(router, workers=2).start()
    port = server.port
    result: List[Any] = []

    def call():
        try:
            with httpx.Client(timeout=TIMEOUT) as c:
                r = c.get(f"http://127.0.0.1:{port}/slow")
                result.append((r.status_code, r.text))
        except Exception as e:  # pragma: no cover - reported through the list
            result.append(e)

    t = threading.Thread(target=call)
    t.start()
    assert entered.wait(TIMEOUT)
    t0 = time.monotonic()
    server.close(timeout=5.0)
    closed_after = time.monotonic() - t0
    t.join(TIMEOUT)
    assert result == [(200, "finished")]
    assert closed_after < 4.0
    assert connect_refused("127.0.0.1", port)


def test_close_waits_for_handler_responding_from_other_thread():
    entered = threading.Event()
    router = Router()

    @router.get("/slow")
    def slow(request):
        entered.set()

        def later():
            time.sleep(0.3)
            request.respond(200, body="late but sent")

        t = threading.Thread(target=later)
        t.start()
        t.join()

    server = Server(router, workers=2).start()
    result: List[Any] = []
    url = server.url

    def call():
        with httpx.Client(timeout=TIMEOUT) as c:
            result.append(c.get(url + "/slow").text)

    t = threading.Thread(target=call)
    t.start()
    assert entered.wait(TIMEOUT)
    server.close(timeout=5.0)
    t.join(TIMEOUT)
    assert result == ["late but sent"]


def test_close_timeout_closes_connection_of_a_stuck_handler():
    """close(timeout) waits up to timeout for in-flight handlers, then closes their connections;
    it still joins the worker (a Python thread cannot be killed), so it returns once the stuck
    handler does."""
    release = threading.Event()
    entered = threading.Event()
    router = Router()

    @router.get("/stuck")
    def stuck(request):
        entered.set()
        release.wait(10)
        return "released"

    server = Server(router, workers=2).start()
    url = server.url
    outcome: List[Any] = []

    def call():
        t0 = time.monotonic()
        try:
            with httpx.Client(timeout=TIMEOUT) as c:
                outcome.append(c.get(url + "/stuck").status_code)
        except httpx.HTTPError as e:
            outcome.append(type(e).__name__)
        outcome.append(time.monotonic() - t0)

    t = threading.Thread(target=call)
    t.start()
    assert entered.wait(TIMEOUT)
    closer = threading.Thread(target=server.close, kwargs={"timeout": 0.5})
    try:
        closer.start()
        t.join(3.0)
        client_done = not t.is_alive()
    finally:
        release.set()
        closer.join(TIMEOUT)
        t.join(TIMEOUT)
    assert client_done, "the client of a stuck handler was not disconnected after close(timeout)"
    assert outcome[0] != 200 and outcome[1] < 3.0, outcome
    assert not closer.is_alive()


# ---- start errors --------------------------------------------------------------------------

def test_start_twice_raises_runtime_error():
    server = Server(hello_router(), workers=2).start()
    try:
        with pytest.raises(RuntimeError):
            server.start()
        with pytest.raises(RuntimeError):
            server.start(0, "127.0.0.1")
        with httpx.Client(timeout=TIMEOUT) as c:  # still serving after the failed second start
            assert c.get(server.url + "/hello").text == "hello"
    finally:
        server.close()


def test_start_after_close_raises_runtime_error():
    server = Server(hello_router(), workers=2).start()
    server.close()
    with pytest.raises(RuntimeError):
        server.start()


def test_bind_in_use_port_raises_oserror():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = Server(hello_router(), workers=2)
        try:
            with pytest.raises(OSError) as info:
                server.start(port, "127.0.0.1")
            assert info.value.errno in (None, errno.EADDRINUSE)
        finally:
            server.close()


def test_bind_port_of_another_mummyx_server_raises_oserror(serve):
    first = serve(hello_router())
    second = Server(hello_router(), workers=2)
    try:
        with pytest.raises(OSError):
            second.start(first.port, "127.0.0.1")
    finally:
        second.close()
    with httpx.Client(timeout=TIMEOUT) as c:  # the first one is untouched
        assert c.get(first.url + "/hello").text == "hello"


def test_failed_start_can_be_retried_on_another_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        server = Server(hello_router(), workers=2)
        try:
            with pytest.raises(OSError):
                server.start(holder.getsockname()[1], "127.0.0.1")
            server.start(0, "127.0.0.1")
            with httpx.Client(timeout=TIMEOUT) as c:
                assert c.get(server.url + "/hello").text == "hello"
        finally:
            server.close()


@pytest.mark.parametrize("host", ["not-an-address.invalid", "256.0.0.1"])
def test_bad_host_raises(host):
    server = Server(hello_router(), workers=2)
    try:
        with pytest.raises((OSError, ValueError)):
            server.start(0, host)
    finally:
        server.close()


@pytest.mark.parametrize("port", [-1, 65536, 100000])
def test_bad_port_raises(port):
    server = Server(hello_router(), workers=2)
    try:
        with pytest.raises((OSError, ValueError, OverflowError)):
            server.start(port, "127.0.0.1")
    finally:
        server.close()
