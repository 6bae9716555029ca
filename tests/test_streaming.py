"""Streamed responses: a handler's returned iterator, and request.respond_stream() writers.

Real sockets on 127.0.0.1: chunked framing on HTTP/1.1 checked byte for byte, close-delimited
bodies on HTTP/1.0, keep-alive after a stream ends, backpressure against a client that does not
read, a client that leaves mid-stream, and a producer that fails mid-stream (the connection is
cut, never ended as if complete).
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Dict, Iterator, List

import httpx
import pytest

from mummyx import ConnectionClosed, ResponseStream, Router

HOST = "127.0.0.1"
TIMEOUT = 5.0


def read_until_closed(s: socket.socket, limit: int = 1 << 26) -> bytes:
    data = bytearray()
    while len(data) < limit:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def dechunk(body: bytes) -> bytes:
    """Strict RFC 9112 7.1 chunked decoding; asserts the body ends with the last chunk."""
    out, pos = bytearray(), 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol], 16)
        pos = eol + 2
        if size == 0:
            assert body[pos:pos + 2] == b"\r\n", body[pos:pos + 20]
            return bytes(out)
        out += body[pos:pos + size]
        assert body[pos + size:pos + size + 2] == b"\r\n"
        pos += size + 2


def exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
        s.sendall(request)
        return read_until_closed(s)


def test_generator_of_str_is_sent_chunked(serve):
    router = Router()

    @router.get("/")
    def gen(request: Any) -> Iterator[str]:
        for i in range(100):
            yield f"line {i}\n"

    server = serve(router)
    raw = exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"content-type: text/plain; charset=utf-8" in head.lower()
    assert b"content-length" not in head.lower()
    assert dechunk(body) == "".join(f"line {i}\n" for i in range(100)).encode()


def test_generator_of_bytes_on_http10_is_close_delimited(serve):
    router = Router()
    router.get("/", lambda request: (bytes([i]) * 1000 for i in range(50)))
    server = serve(router)
    raw = exchange(server.port, b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"chunked" not in head.lower() and b"content-length" not in head.lower()
    assert b"content-type: application/octet-stream" in head.lower()
    assert body == b"".join(bytes([i]) * 1000 for i in range(50))  # ends when the server closes


def test_empty_generator_and_head_request(serve):
    router = Router()
    pulled: List[int] = []

    def gen(request: Any) -> Iterator[bytes]:
        for i in range(3):
            pulled.append(i)
            yield b"x"

    router.get("/empty", lambda request: iter(()))
    router.get("/", gen)
    server = serve(router)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        r = c.get("/empty")
        assert r.status_code == 200 and r.content == b""
        r = c.head("/")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["transfer-encoding"] == "chunked"
        r = c.get("/")  # the connection is still usable after both
        assert r.content == b"xxx"


def test_writer_from_another_thread_then_keep_alive(serve):
    router = Router()

    @router.get("/stream")
    def stream(request: Any) -> None:
        w = request.respond_stream(201, {"Content-Type": "text/csv", "X-Kind": "rows"})
        assert isinstance(w, ResponseStream) and not w.closed

        def produce() -> None:
            for i in range(200):
                w.write(f"{i},{i * i}\n")
            w.close()
        threading.Thread(target=produce).start()

    router.get("/next", lambda request: "after")
    server = serve(router)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        r = c.get("/stream")
        assert r.status_code == 201
        assert r.headers["content-type"] == "text/csv" and r.headers["x-kind"] == "rows"
        assert r.text == "".join(f"{i},{i * i}\n" for i in range(200))
        assert c.get("/next").text == "after"  # same connection: the stream ended cleanly


def test_writer_contract(serve):
    router = Router()
    seen: Dict[str, Any] = {}

    @router.get("/")
    def handler(request: Any) -> None:
        with request.respond_stream() as w:
            w.write(b"bytes,")
            w.write(bytearray(b"bytearray,"))
            w.write(memoryview(b"memoryview,"))
            w.write("str")
            w.write(b"")  # nothing: never a zero-size chunk
            try:
                w.write(12)  # type: ignore[arg-type]
            except TypeError as e:
                seen["type"] = str(e)
        seen["closed"] = w.closed
        try:
            w.write(b"late")
        except ConnectionClosed as e:
            seen["late"] = str(e)
        try:
            request.respond_stream()
        except RuntimeError as e:
            seen["twice"] = str(e)

    @router.get("/nobody")
    def nobody(request: Any) -> None:
        try:
            request.respond_stream(204)
        except ValueError as e:
            seen["204"] = str(e)
        request.respond(204)

    server = serve(router)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        assert c.get("/").text == "bytes,bytearray,memoryview,str"
        assert c.get("/nobody").status_code == 204
    assert "str or bytes" in seen["type"]
    assert seen["closed"] is True
    assert "closed" in seen["late"]
    assert "twice" in seen and "204" in seen["204"]


def test_slow_client_holds_the_producer_back(serve):
    """A client that does not read: the generator is pulled only until the server's queue
    (max_send_queue) and the kernel's socket buffers are full, not to the end."""
    router = Router()
    pulled = [0]
    total = 32 << 20

    def gen(request: Any) -> Iterator[bytes]:
        chunk = b"z" * 65536
        for _ in range(total // len(chunk)):
            pulled[0] += len(chunk)
            yield chunk

    router.get("/", gen)
    server = serve(router, max_send_queue=256 * 1024)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.connect((HOST, server.port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)
        held = pulled[0]
        assert held < 16 << 20, held  # queue + socket buffers, far from the 32 MiB
        s.settimeout(TIMEOUT)
        raw = read_until_closed(s, limit=total + (1 << 20))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert len(dechunk(body)) == total
    assert pulled[0] == total


def test_client_leaving_stops_the_producer(serve):
    router = Router()
    state: Dict[str, Any] = {"finally": threading.Event(), "pulled": 0}

    def gen(request: Any) -> Iterator[bytes]:
        try:
            while True:
                state["pulled"] += 1
                yield b"y" * 65536
        finally:
            state["finally"].set()

    router.get("/", gen)
    server = serve(router, max_send_queue=128 * 1024)
    with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200 OK")
    assert state["finally"].wait(TIMEOUT), "the generator was not closed"
    pulled = state["pulled"]
    time.sleep(0.2)
    assert state["pulled"] == pulled


def test_failing_generator_cuts_the_connection(serve, caplog):
    router = Router()

    def gen(request: Any) -> Iterator[str]:
        yield "partial "
        raise ValueError("boom in the middle")

    router.get("/", gen)
    router.get("/before", lambda request: (_ for _ in ()).throw(KeyError("before any chunk")))
    server = serve(router)
    raw = exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"partial " in body
    with pytest.raises((ValueError, IndexError)):
        dechunk(body)  # no last chunk: the client can tell the body is incomplete
    # a generator failing before its first chunk still gets a plain 500
    raw = exchange(server.port, b"GET /before HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 500")
    deadline = time.monotonic() + TIMEOUT
    while "boom in the middle" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "boom in the middle" in caplog.text


def test_with_block_exception_aborts(serve):
    router = Router()

    @router.get("/")
    def handler(request: Any) -> None:
        with request.respond_stream() as w:
            w.write("start ")
            raise RuntimeError("producer failed")

    server = serve(router)
    raw = exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    _, _, body = raw.partition(b"\r\n\r\n")
    assert b"start " in body
    with pytest.raises((ValueError, IndexError)):
        dechunk(body)
