"""mummyx.testing.running: a live server on a free port for users' own test suites."""
from __future__ import annotations

import gzip
import logging
import os
import socket
import tempfile
import threading
import time
from typing import Any, Dict, Iterator, List

import httpx
import pytest

from mummyx import Request, Router, Server
from mummyx.testing import running

router = Router()


@router.get("/")
def index(request: Request) -> str:
    return "hello"


@router.post("/upload")
def upload(request: Request) -> Dict[str, int]:
    return {"received": len(request.body)}


@router.get("/big")
def big(request: Request) -> str:
    return "compressible text " * 200


def echo_path(request: Request) -> Dict[str, str]:
    return {"path": request.path}


def refused(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port any more."""
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError:
        return True
    return False


# ---- what running() yields and when it stops ----

def test_yields_a_started_server_on_a_free_port() -> None:
    with running(router) as server:
        assert isinstance(server, Server)
        assert 0 < server.port < 65536
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert not server.closed
        response = httpx.get(server.url + "/", timeout=5.0)
        assert response.status_code == 200
        assert response.text == "hello"


def test_closes_the_server_afterwards() -> None:
    with running(router) as server:
        port = server.port
        assert httpx.get(server.url + "/", timeout=5.0).status_code == 200
    assert server.closed
    assert refused(port)


def test_closes_the_server_when_the_block_raises() -> None:
    with pytest.raises(KeyError):
        with running(router) as server:
            port = server.port
            raise KeyError("test failed")
    assert server.closed
    assert refused(port)


def test_each_call_gets_its_own_port() -> None:
    with running(router) as a, running(echo_path) as b:
        assert a.port != b.port
        assert httpx.get(a.url + "/", timeout=5.0).text == "hello"
        assert httpx.get(b.url + "/x", timeout=5.0).json() == {"path": "/x"}


def test_an_explicit_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with running(router, port=port) as server:
        assert server.port == port
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5.0).text == "hello"


def test_works_with_a_plain_callable() -> None:
    with running(echo_path) as server:
        response = httpx.get(server.url + "/any/where?x=1", timeout=5.0)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"path": "/any/where"}


def test_works_with_a_lambda() -> None:
    with running(lambda request: request.method) as server:
        assert httpx.delete(server.url + "/", timeout=5.0).text == "DELETE"


def test_lets_an_in_flight_request_finish_on_exit() -> None:
    started = threading.Event()

    def slow(request: Request) -> str:
        started.set()
        time.sleep(0.5)
        return "done"

    result: Dict[str, Any] = {}
    with running(slow) as server:
        def fetch() -> None:
            try:
                result["response"] = httpx.get(server.url + "/", timeout=10.0)
            except Exception as exc:  # pragma: no cover - reported by the asserts
                result["error"] = exc

        thread = threading.Thread(target=fetch)
        thread.start()
        assert started.wait(5.0)
    # Leaving the block closed the server, after the handler finished.
    thread.join(10.0)
    assert "error" not in result, result
    assert result["response"].text == "done"


# ---- options ----

def test_server_options_are_passed_through() -> None:
    with running(router, workers=2, max_body_len=10) as server:
        assert server.workers == 2
        ok = httpx.post(server.url + "/upload", content=b"x" * 10, timeout=5.0)
        assert ok.json() == {"received": 10}
        too_big = httpx.post(server.url + "/upload", content=b"x" * 11, timeout=5.0)
        assert too_big.status_code == 413


def test_compression_option() -> None:
    headers = {"Accept-Encoding": "gzip"}
    with running(router) as server:
        with httpx.Client(timeout=5.0) as client:
            response = client.get(server.url + "/big", headers=headers)
        assert response.headers.get("content-encoding") == "gzip"
        assert response.text == "compressible text " * 200  # httpx decompresses
    with running(router, compression=False) as server:
        raw = _raw_get(server.port, "/big", "Accept-Encoding: gzip\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"content-encoding" not in head.lower()
        assert body == b"compressible text " * 200
        with pytest.raises(OSError):
            gzip.decompress(body)


def test_access_log_option(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mummyx.access")
    with running(router, access_log=True) as server:
        assert httpx.get(server.url + "/?from=test", timeout=5.0).status_code == 200
        # The access log is written after the response went out: wait for it, briefly.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if any(r.name == "mummyx.access" for r in caplog.records):
                break
            time.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "mummyx.access"]
    assert any('"GET /?from=test HTTP/1.1" 200 5 ' in line for line in lines), lines


def test_bad_options_raise_before_serving() -> None:
    with pytest.raises(TypeError):
        with running(router, no_such_option=1):
            pass  # pragma: no cover
    with pytest.raises(ValueError):
        with running(router, workers=0):
            pass  # pragma: no cover


def test_unix_socket() -> None:
    sock_dir = tempfile.mkdtemp(prefix="mx-testing-")
    path = os.path.join(sock_dir, "t.sock")
    try:
        with running(router, unix=path) as server:
            assert server.url == f"unix:{path}"
            transport = httpx.HTTPTransport(uds=path)
            with httpx.Client(transport=transport, timeout=5.0) as client:
                assert client.get("http://mummyx/").text == "hello"
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(sock_dir)


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback")
def test_ipv6_host() -> None:
    with running(router, host="::1") as server:
        assert server.url == f"http://[::1]:{server.port}"
        assert httpx.get(server.url + "/", timeout=5.0).text == "hello"


def _raw_get(port: int, path: str, extra_headers: str = "") -> bytes:
    """One HTTP/1.1 request with Connection: close; returns every byte of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra_headers}Connection: close\r\n\r\n"
                  .encode())
        chunks: List[bytes] = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


# ---- the fixture pattern, as the README and mummyx.testing describe it ----

@pytest.fixture
def server() -> Iterator[Server]:
    with running(router) as server:
        yield server


@pytest.fixture(scope="module")
def shared_server() -> Iterator[Server]:
    # One server for every test of the module: faster, but tests then share its state.
    with running(router, workers=4) as server:
        yield server


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield client


def test_fixture_index(client: httpx.Client) -> None:
    assert client.get("/").text == "hello"


def test_fixture_upload(client: httpx.Client) -> None:
    assert client.post("/upload", content=b"abc").json() == {"received": 3}


def test_fixture_not_found(server: Server) -> None:
    assert httpx.get(server.url + "/missing", timeout=5.0).status_code == 404


_ports: List[int] = []


@pytest.mark.parametrize("attempt", [1, 2])
def test_module_scoped_fixture_is_shared(shared_server: Server, attempt: int) -> None:
    _ports.append(shared_server.port)
    assert httpx.get(shared_server.url + "/", timeout=5.0).text == "hello"
    assert len(set(_ports)) == 1
