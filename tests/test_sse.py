"""Server-Sent Events: request.respond_sse(), SSEStream, SSEChannel.

Streams are read two ways: with httpx-sse, and over raw sockets whose bytes are de-chunked by a
strict RFC 9112 decoder and interpreted by a strict WHATWG event-stream parser (sse_parser.py),
so the exact bytes on the wire are checked too.
"""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import httpx
import pytest
from httpx_sse import connect_sse

from mummyx import ConnectionClosed, Router, SSEChannel, SSEStream
from mummyx import _mummyx

from conftest import parse_responses
from sse_parser import (ChunkedDecoder, Event, EventStreamParser, SSEClient, SSEProtocolError,
                        expected_data, parse_stream)

TIMEOUT = 15.0 if "asan" in os.environ.get("LD_PRELOAD", "") else 5.0  # sanitizers are slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Hub:
    """Hands objects from handlers (worker threads) to the test."""

    def __init__(self) -> None:
        self.q: "queue.Queue[Any]" = queue.Queue()

    def put(self, x: Any) -> None:
        self.q.put(x)

    def get(self, timeout: float = TIMEOUT) -> Any:
        return self.q.get(timeout=timeout)

    def empty(self) -> bool:
        return self.q.empty()


def sse_server(serve, handler: Callable, path: str = "/sse", **options: Any):
    """A server with ``handler`` on GET ``path`` and a plain GET /plain. No heartbeat unless
    asked, so the bytes on the wire are exactly what the handler sends."""
    router = Router()
    router.get(path, handler)
    router.get("/plain", lambda req: req.respond(200, {"Content-Type": "text/plain"}, "plain"))
    options.setdefault("sse_heartbeat", 0)
    return serve(router, **options)


def until(cond: Callable[[], bool], timeout: float = TIMEOUT, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def read_one_response(c: SSEClient, already: bytes = b"") -> Dict[str, Any]:
    """Reads one complete Content-Length framed response from c's socket."""
    data = already
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            rs = parse_responses(data)
            if rs and len(rs[0]["body"]) == int(rs[0]["headers"].get("content-length", "0")):
                return rs[0]
        except AssertionError:
            pass
        left = deadline - time.monotonic()
        assert left > 0, f"no complete response: {data[:300]!r}"
        c.sock.settimeout(left)
        b = c.sock.recv(65536)
        assert b, f"EOF before a complete response: {data[:300]!r}"
        data += b


# ---- the parser itself (against the WHATWG specification's examples) ---------------------

def test_parser_spec_examples():
    p = parse_stream(b"data: YHOO\ndata: +2\ndata: 10\n\n")
    assert p.events == [Event("message", "YHOO\n+2\n10")]

    p = parse_stream(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
                     b"data:  third event\n\n")
    assert p.events == [Event("message", "first event", "1"),
                        Event("message", "second event", ""),
                        Event("message", " third event", "")]
    assert p.comments == [" test stream"]

    p = parse_stream(b"data\n\ndata\ndata\n\ndata:", strict=False)
    assert [e.data for e in p.events] == ["", "\n"]  # the unterminated last event is dropped
    with pytest.raises(SSEProtocolError):
        parse_stream(b"data\n\ndata:")

    p = parse_stream(b"data:test\n\ndata: test\n\n")
    assert p.events == [Event("message", "test"), Event("message", "test")]


def test_parser_line_endings_split_anywhere():
    stream = "\ufeffevent: a\r\ndata: 1\rdata: 2\n\r\nid: x\ndata: é\r\r: c\r\nretry: 7\n\n"
    raw = stream.encode()
    whole = parse_stream(raw)
    assert whole.events == [Event("a", "1\n2"), Event("message", "é", "x")]
    assert whole.retry == 7 and whole.comments == [" c"]
    for cut in range(1, len(raw)):  # every split point, including inside CRLF and UTF-8
        p = EventStreamParser()
        p.feed(raw[:cut])
        p.feed(raw[cut:])
        p.close()
        assert p.events == whole.events, cut


def test_parser_strictness():
    for bad in (b"data: \xff\n\n", b"foo: bar\n\n", b"retry: 1x\n\n", b"id: a\x00b\n\n"):
        with pytest.raises(SSEProtocolError):
            parse_stream(bad)
        parse_stream(bad, strict=False)  # the lenient reading never raises
    lenient = parse_stream(b"id: 1\n\nid: a\x00b\nretry: x\nfoo\ndata: z\n\n", strict=False)
    assert lenient.events == [Event("message", "z", "1")] and lenient.retry is None


def test_chunked_decoder_strict():
    d = ChunkedDecoder()
    assert d.feed(b"5\r\nhello\r\n1") == [b"hello"]
    assert d.feed(b"0\r\n0123456789abcdef\r\n0\r\n\r\nrest") == [b"0123456789abcdef"]
    assert d.done and d.rest == b"rest" and d.size_lines == [b"5", b"10", b"0"]
    for bad in (b"5;ext=1\r\nhello\r\n", b"5\r\nhelloXX", b"0\r\nTrailer: x\r\n\r\n", b"-1\r\n"):
        with pytest.raises(SSEProtocolError):
            ChunkedDecoder().feed(bad)


# ---- the encoder (no server) ----------------------------------------------------------------

@pytest.mark.parametrize("args, wire", [
    (("hello", None, None, None), b"data: hello\n\n"),
    (("", None, None, None), b"data:\n\n"),
    (("a\nb", None, None, None), b"data: a\ndata: b\n\n"),
    (("a\r\nb", None, None, None), b"data: a\ndata: b\n\n"),
    (("a\rb", None, None, None), b"data: a\ndata: b\n\n"),
    (("a\n", None, None, None), b"data: a\ndata:\n\n"),
    (("\r\n", None, None, None), b"data:\ndata:\n\n"),
    (("\r\r\n\n", None, None, None), b"data:\ndata:\ndata:\ndata:\n\n"),
    ((" x", None, None, None), b"data:  x\n\n"),
    (("d", "ev", "7", 1500), b"event: ev\nid: 7\nretry: 1500\ndata: d\n\n"),
    (("d", "", "", 0), b"event: \nid: \nretry: 0\ndata: d\n\n"),
    (("d", None, 42, None), b"id: 42\ndata: d\n\n"),
    (("☃ 🎉", "é", "ü", None), "event: é\nid: ü\ndata: ☃ 🎉\n\n".encode()),
])
def test_encode_exact_bytes(args, wire):
    assert _mummyx.sse_encode(*args) == wire
    p = parse_stream(wire)
    data, event, id_, retry = args
    assert p.events == [Event(event or "message", expected_data(data),
                              "" if id_ is None else str(id_))]
    assert p.retry == retry


# ---- respond_sse: the head and the exact body ------------------------------------------------

def test_head_and_exact_chunks_then_keep_alive(serve):
    def handler(req):
        s = req.respond_sse()
        s.send("hello")
        s.send("two\nlines", event="greet", id="7", retry=2500)
        s.comment("note")
        s.comment()
        s.send("")
        s.close()

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse") as c:
        assert c.status == 200 and c.response_version == "HTTP/1.1"
        h = c.headers
        assert h["content-type"] == "text/event-stream; charset=utf-8"
        assert h["cache-control"] == "no-store"
        assert h["x-accel-buffering"] == "no"
        assert h["transfer-encoding"] == "chunked"
        assert "content-length" not in h and "content-encoding" not in h
        assert "connection" not in h and "date" in h
        names = [k for k, _ in c.header_list]
        assert len(names) == len(set(names)), c.header_list
        c.read_until_end()
        expected = [b"data: hello\n\n",
                    b"event: greet\nid: 7\nretry: 2500\ndata: two\ndata: lines\n\n",
                    b": note\n\n", b":\n\n", b"data:\n\n"]
        assert c.chunks == expected  # one chunk per call, in order
        assert c.dechunk.size_lines == [format(len(x), "x").encode() for x in expected] + [b"0"]
        assert c.raw.endswith(b"data:\n\n\r\n0\r\n\r\n")
        assert c.events == [Event("message", "hello"), Event("greet", "two\nlines", "7"),
                            Event("message", "", "7")]
        assert c.parser.retry == 2500 and c.parser.comments == [" note", ""]
        # The body ended properly, so the connection serves the next request.
        c.sock.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        r = read_one_response(c)
        assert r["status"] == 200 and r["body"] == b"plain"


def test_empty_stream_is_just_the_last_chunk(serve):
    server = sse_server(serve, lambda req: req.respond_sse().close())
    with SSEClient(server.port, "/sse") as c:
        c.read_until_end()
        assert c.raw == b"0\r\n\r\n" and c.chunks == [] and c.events == []


def test_caller_headers_are_added_and_stream_never_compressed(serve):
    def handler(req):
        s = req.respond_sse([("X-Extra", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                             ("Content-Length", "5")])
        s.send("z" * 5000)  # compressible, but a stream is never compressed
        s.close()

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse", headers={"Accept-Encoding": "gzip, deflate"}) as c:
        assert c.headers["x-extra"] == "1"
        assert [v for k, v in c.header_list if k == "set-cookie"] == ["a=1", "b=2"]
        assert c.headers["cache-control"] == "no-store"
        assert c.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert "content-length" not in c.headers and "content-encoding" not in c.headers
        c.read_until_end()
        assert c.events == [Event("message", "z" * 5000)]


@pytest.mark.parametrize("name, value", [
    ("Cache-Control", "no-cache"),
    ("content-type", "text/event-stream"),
    ("X-Accel-Buffering", "yes"),
])
def test_caller_headers_replace_defaults(serve, name, value):
    """Regression: the defaults were compared case-sensitively and never replaced."""
    def handler(req):
        req.respond_sse({name: value}).close()

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse") as c:
        assert [v for k, v in c.header_list if k == name.lower()] == [value]
        c.read_until_end()


# ---- field encoding through a live stream ------------------------------------------------------

ROUND_TRIP = [
    "", "a", "a\nb", "a\r\nb", "a\rb", "a\n", "\n", "\r\n\r\n", "\r\r", "\n\r", " lead",
    "  two spaces", "trail ", "tab\tsep", "ünïcödé ☃ 🎉 中文", "data: fake", ":colon",
    "id: x\n\nretry: 1", "nul\x00in", "\u2028\u2029\x85\x0b\x0c\x1c not line breaks",
    "\ufeffbom inside", "a\r\n\nb\r", "x" * 70000, "é" * 30000 + "\n" + "y" * 10,
]
EVENTS = ["", " spaced", "é", "a:b", "message", "with space"]


def _round_trip_handler(req):
    s = req.respond_sse()
    for i, data in enumerate(ROUND_TRIP):
        s.send(data, event=EVENTS[i % len(EVENTS)], id=f"id-{i}")
    s.send("after", id="")  # an empty id resets the last event ID
    s.close()


def _expected_round_trip() -> List[Event]:
    out = [Event(EVENTS[i % len(EVENTS)] or "message", expected_data(d), f"id-{i}")
           for i, d in enumerate(ROUND_TRIP)]
    return out + [Event("message", "after", "")]


def test_round_trip_strict_parser(serve):
    server = sse_server(serve, _round_trip_handler)
    with SSEClient(server.port, "/sse") as c:
        c.read_until_end()
        assert c.events == _expected_round_trip()
        assert b"\r" not in c.body  # the server writes LF line ends only
        # Each event is one chunk; re-parsing every chunk alone gives the same events.
        assert [parse_stream(ch).events[0].data for ch in c.chunks] == \
            [e.data for e in _expected_round_trip()]


def test_round_trip_httpx_sse(serve):
    server = sse_server(serve, _round_trip_handler)
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", server.url + "/sse") as source:
            assert source.response.status_code == 200
            got = [(e.event, e.data, e.id) for e in source.iter_sse()]
    want = [(e.type, e.data, e.last_event_id) for e in _expected_round_trip()]
    assert got == want


def test_retry_and_int_ids_httpx_sse(serve):
    def handler(req):
        s = req.respond_sse()
        s.send("a", id=1, retry=3000)
        s.send("b", id=2 ** 70)
        s.close()

    server = sse_server(serve, handler)
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", server.url + "/sse") as source:
            got = [(e.data, e.id, e.retry) for e in source.iter_sse()]
    assert got == [("a", "1", 3000), ("b", str(2 ** 70), None)]


def test_send_argument_validation(serve):
    hub = Hub()

    def handler(req):
        s = req.respond_sse()
        checks = {
            "event LF": lambda: s.send("x", event="a\nb"),
            "event CR": lambda: s.send("x", event="a\rb"),
            "event CRLF": lambda: s.send("x", event="a\r\n"),
            "id LF": lambda: s.send("x", id="a\nb"),
            "id CR": lambda: s.send("x", id="\r"),
            "id NUL": lambda: s.send("x", id="a\x00b"),
            "retry negative": lambda: s.send("x", retry=-1),
            "retry bool": lambda: s.send("x", retry=True),
            "retry float": lambda: s.send("x", retry=1.5),
            "retry str": lambda: s.send("x", retry="5"),
            "data bytes": lambda: s.send(b"x"),
            "data None": lambda: s.send(None),
            "event int": lambda: s.send("x", event=5),
            "id float": lambda: s.send("x", id=1.5),
            "positional event": lambda: s.send("x", "ev"),
            "comment bytes": lambda: s.comment(b"x"),
            "lone surrogate": lambda: s.send("\ud800"),
        }
        result = {}
        for name, fn in checks.items():
            try:
                fn()
                result[name] = None
            except Exception as exc:  # noqa: BLE001 - recorded and checked by the test
                result[name] = type(exc)
        s.send("ok", id=42, retry=0)
        s.close()
        hub.put(result)

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse") as c:
        c.read_until_end()
        result = hub.get()
        # Nothing of a refused call reached the wire.
        assert c.chunks == [b"id: 42\nretry: 0\ndata: ok\n\n"]
    value_errors = {"event LF", "event CR", "event CRLF", "id LF", "id CR", "id NUL",
                    "retry negative"}
    for name, exc in result.items():
        if name in value_errors:
            assert exc is ValueError, (name, exc)
        elif name == "lone surrogate":
            assert exc is not None and issubclass(exc, ValueError), (name, exc)
        else:
            assert exc is TypeError, (name, exc)


# ---- respond_sse misuse ------------------------------------------------------------------------

def test_respond_sse_twice_and_mixed_with_respond(serve):
    hub = Hub()

    def sse_then_sse(req):
        s = req.respond_sse()
        out = []
        for fn in (req.respond_sse, lambda: req.respond(200, body="x")):
            try:
                fn()
                out.append(None)
            except Exception as exc:  # noqa: BLE001
                out.append(type(exc))
        out.append((req.responded, req.status))
        s.send("still fine")
        s.close()
        hub.put(out)

    def respond_then_sse(req):
        req.respond(200, {"Content-Type": "text/plain"}, "plain first")
        try:
            req.respond_sse()
            hub.put(None)
        except Exception as exc:  # noqa: BLE001
            hub.put(type(exc))

    router = Router()
    router.get("/a", sse_then_sse)
    router.get("/b", respond_then_sse)
    server = serve(router, sse_heartbeat=0)
    with SSEClient(server.port, "/a") as c:
        c.read_until_end()
        assert c.events == [Event("message", "still fine")]
    assert hub.get() == [RuntimeError, RuntimeError, (True, 200)]
    r = httpx.get(server.url + "/b", timeout=TIMEOUT)
    assert r.status_code == 200 and r.text == "plain first"
    assert hub.get() is RuntimeError


@pytest.mark.parametrize("headers", [
    {"Bad Name": "x"},
    {"X-Ok": "line\r\nbreak"},
    {"X-Ok": "nul\x00"},
    {"Transfer-Encoding": "chunked"},
    [("X-Fine", "1"), ("", "empty name")],
])
def test_bad_header_raises_and_request_stays_open(serve, headers):
    hub = Hub()

    def handler(req):
        try:
            req.respond_sse(headers)
            hub.put(None)
        except Exception as exc:  # noqa: BLE001
            hub.put((type(exc), req.responded))
        s = req.respond_sse({"X-After": "1"})  # the failed call did not respond
        s.send("ok")
        s.close()

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse") as c:
        c.read_until_end()
        assert c.headers["x-after"] == "1" and c.events == [Event("message", "ok")]
    assert hub.get() == (ValueError, False)


def test_handler_errors_after_respond_sse_leave_the_stream_clean(serve):
    hub = Hub()

    def raiser(req):
        s = req.respond_sse()
        s.send("a")
        hub.put(s)
        raise RuntimeError("handler failed after respond_sse (expected in this test)")

    def returner(req):
        s = req.respond_sse()
        s.send("a")
        hub.put(s)
        return {"ignored": True}

    router = Router()
    router.get("/raise", raiser)
    router.get("/return", returner)
    server = serve(router, sse_heartbeat=0)
    for path in ("/raise", "/return"):
        with SSEClient(server.port, path) as c:
            s = hub.get()
            c.read_events(1)
            time.sleep(0.05)
            s.send("b")
            s.close()
            c.read_until_end()
            assert c.chunks == [b"data: a\n\n", b"data: b\n\n"], path


# ---- the SSEStream object ------------------------------------------------------------------

def test_stream_attributes(serve):
    hub = Hub()

    def handler(req):
        s = req.respond_sse()
        hub.put((s, {"closed": s.closed, "lei": s.last_event_id, "responded": req.responded,
                     "status": req.status, "wait0": s.wait_closed(0),
                     "wait_short": s.wait_closed(0.05), "repr": repr(s)}))

    server = sse_server(serve, handler)
    with pytest.raises(TypeError):
        SSEStream()
    with SSEClient(server.port, "/sse") as c1, \
            SSEClient(server.port, "/sse", headers={"Last-Event-ID": "abc-9"}) as c2:
        s1, info1 = hub.get()
        s2, info2 = hub.get()
        if info1["lei"] is not None:  # the two handlers may run in either order
            (s1, info1), (s2, info2) = (s2, info2), (s1, info1)
        assert isinstance(s1, SSEStream) and type(s1) is SSEStream
        assert info1 == {"closed": False, "lei": None, "responded": True, "status": 200,
                         "wait0": False, "wait_short": False, "repr": info1["repr"]}
        assert info2["lei"] == "abc-9" and s2.last_event_id == "abc-9"
        assert isinstance(s1.id, int) and s1.id != s2.id
        assert "open" in info1["repr"] and str(s1.id) in info1["repr"]
        s1.close()
        assert s1.closed  # at once, before the I/O thread wrote the end
        assert s1.wait_closed(TIMEOUT) is True
        assert "closed" in repr(s1)
        s1.close()  # idempotent
        c1.read_until_end()
        assert s2.closed is False
        s2.close()
        c2.read_until_end()
        assert s2.wait_closed() is True


def test_send_and_comment_on_closed_stream_raise(serve):
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()))
    with SSEClient(server.port, "/sse") as c:
        s = hub.get()
        s.send("one")
        s.close()
        with pytest.raises(ConnectionClosed):
            s.send("two")
        with pytest.raises(ConnectionClosed):
            s.comment("x")
        with pytest.raises(ConnectionError):  # ConnectionClosed is a ConnectionError
            s.send("three", event="e", id=1)
        c.read_until_end()
        assert c.chunks == [b"data: one\n\n"]
    assert s.wait_closed(TIMEOUT)
    with pytest.raises(ConnectionClosed):
        s.send("after the end")


def test_wait_closed_releases_the_gil(serve):
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()))
    with SSEClient(server.port, "/sse"):
        s = hub.get()
        count = 0
        stop = False

        def spin():
            nonlocal count
            while not stop:
                count += 1

        t = threading.Thread(target=spin)
        t.start()
        time.sleep(0.02)
        before = count
        assert s.wait_closed(0.3) is False
        during = count - before
        stop = True
        t.join()
        s.close()
    assert during > 1000, during  # the spinning thread ran while wait_closed waited


# ---- HTTP/1.0, HEAD, keep-alive ------------------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"Connection": "keep-alive"}])
def test_http10_is_close_delimited(serve, extra):
    def handler(req):
        s = req.respond_sse()
        s.send("one")
        s.send("two\nlines", event="x", id="1")
        s.comment("c")
        s.close()

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse", version="HTTP/1.0", headers=extra) as c:
        assert c.status == 200
        assert not c.chunked and "transfer-encoding" not in c.headers
        assert "content-length" not in c.headers
        assert c.headers["connection"].lower() == "close"
        c.read_until_eof()
        assert c.raw == b"data: one\n\nevent: x\nid: 1\ndata: two\ndata: lines\n\n: c\n\n"
        assert c.events == [Event("message", "one"), Event("x", "two\nlines", "1")]


def test_http10_heartbeat_is_unframed(serve):
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()), sse_heartbeat=0.1)
    with SSEClient(server.port, "/sse", version="HTTP/1.0") as c:
        s = hub.get()
        c.read_for(0.35)
        s.close()
        c.read_until_eof()
        assert c.raw.startswith(b":\n\n:\n\n") and set(c.raw.split(b":\n\n")) == {b""}


def test_head_request(serve):
    hub = Hub()

    def handler(req):
        s = req.respond_sse()
        try:
            s.send("not for HEAD")
        except ConnectionClosed:
            pass
        hub.put((s, req.method))

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse", method="HEAD") as c:
        assert c.status == 200
        assert c.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert c.leftover == b""
        s, method = hub.get()
        assert method == "HEAD"
        assert s.wait_closed(TIMEOUT) is True and s.closed
        with pytest.raises(ConnectionClosed):
            s.send("x")
        # No body bytes were written: the next bytes are the next response.
        c.sock.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        r = read_one_response(c)
        assert r["status"] == 200 and r["body"] == b"plain"


def test_keep_alive_reuse_after_close_pipelined(serve):
    """A request pipelined behind the stream is answered once the stream ends."""
    def handler(req):
        s = req.respond_sse()
        s.send("1")
        s.send("2")
        s.close()

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse",
                   pipelined=b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n") as c:
        c.read_until_end()
        assert c.events == [Event("message", "1"), Event("message", "2")]
        r = read_one_response(c, c.dechunk.rest)
        assert r["status"] == 200 and r["body"] == b"plain"
        # and once more, sequentially, on the same connection
        c.sock.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        c.sock.settimeout(TIMEOUT)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += c.sock.recv(65536)
        head, _, body = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        d = ChunkedDecoder()
        d.feed(body)
        while not d.done:
            d.feed(c.sock.recv(65536))
        assert d.chunks == [b"data: 1\n\n", b"data: 2\n\n"] and d.rest == b""


def test_connection_close_request_ends_with_last_chunk_then_eof(serve):
    def handler(req):
        s = req.respond_sse()
        s.send("x")
        s.close()

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse", headers={"Connection": "close"}) as c:
        assert c.headers["connection"].lower() == "close"
        c.read_until_end()
        c.read_until_eof()
        assert c.chunks == [b"data: x\n\n"] and c.dechunk.rest == b""


def test_httpx_reuses_the_connection_after_close(serve):
    def handler(req):
        s = req.respond_sse()
        for i in range(3):
            s.send(str(i), id=i)
        s.close()

    server = sse_server(serve, handler)
    with httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(max_connections=1)) as client:
        for _ in range(3):
            with connect_sse(client, "GET", server.url + "/sse") as source:
                assert [e.data for e in source.iter_sse()] == ["0", "1", "2"]
            assert client.get(server.url + "/plain").text == "plain"


def test_idle_stream_outlives_idle_timeout(serve):
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()), idle_timeout=0.2)
    with SSEClient(server.port, "/sse") as c:
        s = hub.get()
        c.read_for(0.5)
        assert not c.eof and not s.closed and c.raw == b""  # no heartbeat, no timeout
        s.send("still here")
        c.read_events(1)
        s.close()
        c.read_until_end()


# ---- heartbeat ----------------------------------------------------------------------------

def test_heartbeat_on_idle_stream(serve):
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()), sse_heartbeat=0.15)
    with SSEClient(server.port, "/sse") as c:
        s = hub.get()
        t0 = time.monotonic()
        c.read_for(0.55)
        beats = len(c.chunks)
        assert 2 <= beats <= 4, c.chunks
        assert set(c.chunks) == {b":\n\n"} and c.events == []
        assert c.parser.comments == [""] * beats
        s.send("event")
        c.read_events(1)
        idx = c.chunks.index(b"data: event\n\n")
        deadline = time.monotonic() + 1.0
        while len(c.chunks) < idx + 2 and time.monotonic() < deadline:
            c.pump(0.05)
        assert c.chunks[idx + 1:] == [b":\n\n"]  # heartbeats go on after traffic
        assert time.monotonic() - t0 < 2
        s.close()
        c.read_until_end()


def test_no_heartbeat_while_busy_and_none_when_disabled(serve):
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()), sse_heartbeat=0.4)
    with SSEClient(server.port, "/sse") as c:
        s = hub.get()
        stop = threading.Event()

        def sender():
            i = 0
            while not stop.wait(0.02):
                s.send(str(i))
                i += 1

        t = threading.Thread(target=sender)
        t.start()
        c.read_for(0.7)
        stop.set()
        t.join()
        assert c.parser.comments == [] and len(c.events) >= 10
        s.close()
        c.read_until_end()

    server0 = sse_server(serve, lambda req: hub.put(req.respond_sse()), sse_heartbeat=0)
    with SSEClient(server0.port, "/sse") as c:
        s = hub.get()
        c.read_for(0.4)
        assert c.raw == b""
        s.close()
        c.read_until_end()


# ---- threads ------------------------------------------------------------------------------

def test_handler_returns_while_another_thread_sends(serve):
    threads: List[threading.Thread] = []

    def handler(req):
        s = req.respond_sse()

        def produce():
            for i in range(5):
                s.send(f"tick {i}", id=i)
                time.sleep(0.01)
            s.close()

        t = threading.Thread(target=produce)
        threads.append(t)
        t.start()  # and the handler returns at once

    server = sse_server(serve, handler, workers=1)
    with SSEClient(server.port, "/sse") as c:
        # the only worker is free again while the stream runs
        assert httpx.get(server.url + "/plain", timeout=TIMEOUT).text == "plain"
        c.read_until_end()
        assert c.events == [Event("message", f"tick {i}", str(i)) for i in range(5)]
    for t in threads:
        t.join(TIMEOUT)


def test_sends_from_many_threads(serve):
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()))
    n_threads, per_thread = 8, 250
    with SSEClient(server.port, "/sse") as c:
        s = hub.get()
        barrier = threading.Barrier(n_threads)

        def sender(k: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                if i % 50 == 0:
                    s.comment(f"t{k}")
                s.send(f"t{k}\n{i}\n" + "p" * (i % 40), event=f"t{k}", id=f"{k}-{i}")

        ts = [threading.Thread(target=sender, args=(k,)) for k in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        s.close()
        c.read_until_end()
    assert len(c.events) == n_threads * per_thread
    seen: Dict[str, List[int]] = {}
    for e in c.events:
        k = e.type
        first, i, pad = e.data.split("\n")
        assert first == k and e.last_event_id == f"{k[1:]}-{i}"
        assert pad == "p" * (int(i) % 40)
        seen.setdefault(k, []).append(int(i))
    assert seen == {f"t{k}": list(range(per_thread)) for k in range(n_threads)}
    assert len(c.parser.comments) == n_threads * per_thread // 50


def test_many_streams_each_fed_by_its_own_thread_all_arrive(serve):
    """Wake-ups for many streams at once, each re-notified while the I/O thread is still walking
    the previous batch: no stream may be skipped (it would stall with data queued)."""
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()))
    n, per = 24, 1500
    socks = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        sock.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(sock)
    streams = [hub.get() for _ in range(n)]
    barrier = threading.Barrier(n)

    def sender(st: SSEStream) -> None:
        barrier.wait()
        for i in range(per):
            st.send(str(i))
            if i % 97 == 0:
                time.sleep(0.0005)  # let the queue drain so the next send notifies again
        st.close()

    threads = [threading.Thread(target=sender, args=(st,)) for st in streams]
    for t in threads:
        t.start()
    got = {sock.fileno(): bytearray() for sock in socks}
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    open_socks = set(got)
    deadline = time.monotonic() + 3 * TIMEOUT
    while open_socks and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            fd = key.fd
            data = key.fileobj.recv(1 << 18)  # type: ignore[union-attr]
            got[fd] += data
            if not data or got[fd].endswith(b"\r\n0\r\n\r\n"):
                sel.unregister(key.fileobj)
                open_socks.discard(fd)
    for t in threads:
        t.join(TIMEOUT)
    for sock in socks:
        sock.close()
    stalled = [fd for fd in got if not got[fd].endswith(b"\r\n0\r\n\r\n")]
    assert not stalled, f"{len(stalled)} of {n} streams never ended"
    for body in got.values():
        assert body.count(b"data: ") == per


def test_channel_publish_from_many_threads_same_order_everywhere(serve):
    channel = SSEChannel()

    def handler(req):
        channel.subscribe(req.respond_sse())

    server = sse_server(serve, handler)
    clients = [SSEClient(server.port, "/sse") for _ in range(3)]
    try:
        assert until(lambda: len(channel) == 3)
        reached: List[int] = []

        def publisher(k: int) -> None:
            for i in range(100):
                reached.append(channel.publish(f"{k}:{i}", id=f"{k}-{i}"))

        ts = [threading.Thread(target=publisher, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert reached == [3] * 400
        for c in clients:
            c.read_events(400)
        orders = [[e.data for e in c.events] for c in clients]
        assert orders[0] == orders[1] == orders[2] and len(orders[0]) == 400
        for k in range(4):
            mine = [int(d.split(":")[1]) for d in orders[0] if d.startswith(f"{k}:")]
            assert mine == list(range(100))
    finally:
        for c in clients:
            c.close()


def test_close_races_with_sends_and_waiters(serve):
    """Every send that returned before close() is delivered, in order, before the last chunk;
    every later one raises ConnectionClosed; every waiter wakes."""
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()))
    for _ in range(3):
        with SSEClient(server.port, "/sse") as c:
            s = hub.get()
            accepted: Dict[int, int] = {}
            woke: List[bool] = []
            barrier = threading.Barrier(5)

            def sender(k: int) -> None:
                barrier.wait()
                n = 0
                try:
                    for i in range(10000):
                        s.send(f"{k}:{i}")
                        n += 1
                except ConnectionClosed:
                    pass
                accepted[k] = n

            senders = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
            waiters = [threading.Thread(target=lambda: woke.append(s.wait_closed(TIMEOUT)))
                       for _ in range(3)]
            for t in senders + waiters:
                t.start()
            barrier.wait()
            time.sleep(0.003)
            s.close()
            for t in senders + waiters:
                t.join(TIMEOUT)
            # up to 40,000 events to parse in Python: about 7 s under ASan on a busy machine
            c.read_until_end(3 * TIMEOUT)
            assert woke == [True] * 3
            got: Dict[int, List[int]] = {k: [] for k in range(4)}
            for e in c.events:
                k, i = e.data.split(":")
                got[int(k)].append(int(i))
            assert got == {k: list(range(accepted[k])) for k in range(4)}
            assert c.dechunk.rest == b""


# ---- SSEChannel ---------------------------------------------------------------------------

def test_channel_api(serve):
    with pytest.raises(ValueError):
        SSEChannel(replay=-1)
    channel = SSEChannel()
    assert len(channel) == 0 and channel.publish("nobody") == 0
    with pytest.raises(TypeError):
        channel.subscribe(object())
    with pytest.raises(ValueError):
        channel.publish("x", event="a\nb")
    with pytest.raises(ValueError):
        channel.publish("x", id="a\rb")
    with pytest.raises(ValueError):
        channel.publish("x", retry=-5)
    hub = Hub()

    def handler(req):
        s = req.respond_sse()
        channel.subscribe(s)
        channel.subscribe(s)  # twice: still one subscription
        hub.put(s)

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse") as a, SSEClient(server.port, "/sse") as b:
        sa, sb = hub.get(), hub.get()
        assert len(channel) == 2 and "subscribers=2" in repr(channel)
        assert channel.publish("both", event="e", id=1, retry=100) == 2
        channel.unsubscribe(sa)
        channel.unsubscribe(sa)  # not subscribed: no error
        assert len(channel) == 1
        assert channel.publish("only b", id=2) == 1
        sb.close()
        assert channel.publish("nobody", id=3) == 0 and len(channel) == 0
        sa.send("direct")
        sa.close()
        a.read_until_end()
        b.read_until_end()
        assert a.events == [Event("e", "both", "1"), Event("message", "direct", "1")]
        assert b.events == [Event("e", "both", "1"), Event("message", "only b", "2")]
        assert a.chunks[0] == b"event: e\nid: 1\nretry: 100\ndata: both\n\n"


def test_channel_subscribe_closed_stream_is_ignored(serve):
    channel = SSEChannel(replay=2)
    channel.publish("old", id=1)
    hub = Hub()

    def handler(req):
        s = req.respond_sse()
        s.close()
        channel.subscribe(s)
        hub.put(s)

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse") as c:
        hub.get()
        c.read_until_end()
        assert c.raw == b"0\r\n\r\n"
    assert len(channel) == 0


@pytest.mark.parametrize("last_event_id, want", [
    (None, ["e3", "x", "e4", "e5"]),
    ("3", ["x", "e4", "e5"]),
    ("4", ["e5"]),
    ("5", []),
    ("unknown", ["e3", "x", "e4", "e5"]),
    ("1", ["e3", "x", "e4", "e5"]),  # fell out of the replay window: everything kept
])
def test_channel_replay_after_last_event_id(serve, last_event_id, want):
    channel = SSEChannel(replay=4)
    for i in (1, 2, 3):
        channel.publish(f"e{i}", id=i)
    channel.publish("x")  # no id: replayed too, but never matched
    for i in (4, 5):
        channel.publish(f"e{i}", event="tick", id=str(i))
    hub = Hub()

    def handler(req):
        s = req.respond_sse()
        hub.put(s.last_event_id)
        channel.subscribe(s)

    server = sse_server(serve, handler)
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    with SSEClient(server.port, "/sse", headers=headers) as c:
        assert hub.get() == last_event_id
        assert until(lambda: len(channel) == 1)
        assert channel.publish("live", id=6) == 1
        c.read_events(len(want) + 1)
        assert [e.data for e in c.events] == want + ["live"]
        assert c.events[-1].last_event_id == "6"


def test_channel_replay_with_httpx_sse_reconnect(serve):
    channel = SSEChannel(replay=10)

    def handler(req):
        channel.subscribe(req.respond_sse())

    server = sse_server(serve, handler)
    for i in range(1, 4):
        channel.publish(f"m{i}", id=i)
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", server.url + "/sse") as source:
            it = source.iter_sse()
            first = [next(it) for _ in range(3)]
        assert [(e.data, e.id) for e in first] == [("m1", "1"), ("m2", "2"), ("m3", "3")]
        assert until(lambda: len(channel) == 0)  # the client left
        for i in range(4, 6):
            channel.publish(f"m{i}", id=i)
        # an EventSource reconnects with the last id it saw
        with connect_sse(client, "GET", server.url + "/sse",
                         headers={"Last-Event-ID": first[-1].id}) as source:
            it = source.iter_sse()
            again = [next(it) for _ in range(2)]
        assert [(e.data, e.id) for e in again] == [("m4", "4"), ("m5", "5")]


def test_channel_replay_zero_keeps_nothing(serve):
    channel = SSEChannel()
    channel.publish("before", id=1)

    def handler(req):
        channel.subscribe(req.respond_sse())

    server = sse_server(serve, handler)
    with SSEClient(server.port, "/sse", headers={"Last-Event-ID": "0"}) as c:
        assert until(lambda: len(channel) == 1)
        channel.publish("after", id=2)
        c.read_events(1)
        c.read_for(0.05)
        assert [e.data for e in c.events] == ["after"]


def test_channel_fan_out_to_200_clients(serve):
    channel = SSEChannel()
    n, n_events = 200, 20

    def handler(req):
        channel.subscribe(req.respond_sse())  # and return: no worker is held per client

    server = sse_server(serve, handler, workers=4)
    clients = [SSEClient(server.port, "/sse") for _ in range(n)]
    try:
        assert all(c.status == 200 for c in clients)
        assert until(lambda: len(channel) == n)
        for i in range(n_events):
            assert channel.publish(f"m{i}\n{'#' * i}", event="m", id=i) == n
        sel = selectors.DefaultSelector()
        for c in clients:
            sel.register(c.sock, selectors.EVENT_READ, c)
        waiting = set(clients)
        deadline = time.monotonic() + 10
        while waiting and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                c = key.data
                c.pump(0.001)
                if len(c.events) >= n_events:
                    waiting.discard(c)
                    sel.unregister(c.sock)
        sel.close()
        assert not waiting, f"{len(waiting)} clients did not get every event"
        want = [Event("m", f"m{i}\n{'#' * i}", str(i)) for i in range(n_events)]
        for c in clients:
            assert c.events == want
        # half of them leave; the channel drops them without any publish
        for c in clients[::2]:
            c.close()
        assert until(lambda: len(channel) == n // 2, 2.0), len(channel)
        assert channel.publish("last") == n // 2
        for c in clients[1::2]:
            c.read_events(n_events + 1)
            assert c.events[-1].data == "last"
    finally:
        for c in clients:
            c.close()
    assert until(lambda: len(channel) == 0, 2.0)


# ---- disconnects --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["close", "reset"])
def test_disconnect_detected_without_traffic(serve, how):
    hub, done = Hub(), Hub()
    channel = SSEChannel()

    def handler(req):
        s = req.respond_sse()
        channel.subscribe(s)
        hub.put(s)
        ok = s.wait_closed(TIMEOUT)
        done.put((ok, time.monotonic()))

    server = sse_server(serve, handler)
    c = SSEClient(server.port, "/sse")
    s = hub.get()
    time.sleep(0.05)
    assert not s.closed and len(channel) == 1
    t_close = time.monotonic()
    c.close() if how == "close" else c.reset()
    ok, t_done = done.get()
    assert ok is True and s.closed
    assert t_done - t_close < 1.0
    assert len(channel) == 0
    with pytest.raises(ConnectionClosed):
        s.send("gone")


@pytest.mark.parametrize("how", ["close", "reset"])
def test_disconnect_detected_while_sending(serve, how):
    hub, stopped = Hub(), Hub()

    def handler(req):
        s = req.respond_sse()

        def produce():
            i = 0
            try:
                while True:
                    s.send(f"{i}")
                    i += 1
                    time.sleep(0.01)
            except ConnectionClosed:
                stopped.put(time.monotonic())

        threading.Thread(target=produce, daemon=True).start()
        hub.put(s)

    server = sse_server(serve, handler)
    c = SSEClient(server.port, "/sse")
    s = hub.get()
    c.read_events(3)
    t_close = time.monotonic()
    c.close() if how == "close" else c.reset()
    t_stop = stopped.get()
    assert t_stop - t_close < 1.0
    assert s.closed and s.wait_closed(1.0)


def test_disconnect_before_respond_sse(serve):
    """The client leaves while the handler still works; the stream it then opens is closed."""
    entered, done = Hub(), Hub()

    def handler(req):
        entered.put(True)
        time.sleep(0.2)
        s = req.respond_sse()
        t = time.monotonic()
        done.put((s.wait_closed(TIMEOUT), time.monotonic() - t))

    server = sse_server(serve, handler)
    c = SSEClient(server.port, "/sse", read_head_now=False)
    entered.get()
    c.close()
    ok, waited = done.get()
    assert ok is True and waited < 1.0


def test_disconnect_detected_after_half_close_before_stream(serve):
    """The client's FIN arrives while the handler still works: the stream it then opens ends
    (regression: attach left EPOLLIN off, so the EOF was never seen)."""
    hub = Hub()

    def handler(req):
        time.sleep(0.2)
        s = req.respond_sse()
        try:
            s.send("hi")
        except ConnectionClosed:
            pass
        hub.put(s)

    server = sse_server(serve, handler)
    c = SSEClient(server.port, "/sse", read_head_now=False)
    c.sock.shutdown(socket.SHUT_WR)  # request sent, nothing more to say
    c.read_head()
    s = hub.get()
    c.close()
    assert s.wait_closed(1.0), "the stream of a client that closed was not closed in 1 s"


def test_disconnect_detected_when_pipeline_limit_paused_reading(serve):
    """Regression: reading paused by max_pipeline stayed off once the stream took over."""
    hub = Hub()

    def handler(req):
        s = req.respond_sse()
        s.send("hi")
        hub.put(s)

    server = sse_server(serve, handler, max_pipeline=1)
    c = SSEClient(server.port, "/sse",  # a request pipelined behind the stream
                  pipelined=b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
    c.read_events(1)
    s = hub.get()
    time.sleep(0.05)
    c.close()
    assert s.wait_closed(1.0), "the stream of a client that closed was not closed in 1 s"


def test_pipelined_slow_request_after_stream_survives_heartbeat_timer(serve):
    """Regression: the heartbeat timer outlived the stream and closed the connection while a
    request pipelined behind it was still in its handler."""
    def handler(req):
        s = req.respond_sse()
        s.send("hi")
        s.close()

    def slow(req):
        time.sleep(0.5)
        req.respond(200, {"Content-Type": "text/plain"}, "slow")

    router = Router()
    router.get("/sse", handler)
    router.get("/slow", slow)
    server = serve(router, sse_heartbeat=0.1)
    with SSEClient(server.port, "/sse",
                   pipelined=b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n") as c:
        c.read_until_end()
        r = read_one_response(c, c.dechunk.rest)
        assert r["status"] == 200 and r["body"] == b"slow"


# ---- slow clients -------------------------------------------------------------------------

def test_slow_client_is_dropped_from_channel_fast_one_kept(serve):
    channel = SSEChannel()
    hub = Hub()

    def handler(req):
        s = req.respond_sse()
        channel.subscribe(s)
        hub.put(s)

    server = sse_server(serve, handler, max_send_queue=64 * 1024)
    slow = SSEClient(server.port, "/sse", rcvbuf=4096)  # reads the head, then never again
    s_slow = hub.get()
    fast = SSEClient(server.port, "/sse")
    s_fast = hub.get()
    reader_error: List[BaseException] = []

    def read_fast() -> None:
        try:
            fast.read_until_end(20)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            reader_error.append(exc)

    reader = threading.Thread(target=read_fast)
    reader.start()
    try:
        payload = "y" * 8000
        i = 0
        start = time.monotonic()
        while not s_slow.closed and i < 2000 and time.monotonic() - start < 15:
            channel.publish(f"{i:06d}{payload}", id=i)
            i += 1
            # keep the reading client at most a few events behind, so only the slow one fills
            while i - len(fast.events) > 3 and not s_fast.closed and time.monotonic() - start < 15:
                time.sleep(0.0002)
        assert s_slow.closed, f"not dropped after {i} events ({i * 8 / 1024:.0f} MiB)"
        assert s_slow.wait_closed(1.0)
        assert not s_fast.closed
        assert len(channel) == 1
        for k in range(5):
            assert channel.publish(f"{i + k:06d}after", id=i + k) == 1
        total = i + 5
        s_fast.close()
        reader.join(TIMEOUT)
        assert not reader_error, reader_error
        assert [int(e.data[:6]) for e in fast.events] == list(range(total))
        # The slow client's connection was closed: what it can still read ends without the
        # last chunk (it never got a clean end).
        slow.read_until_eof(TIMEOUT)
        assert not slow.dechunk.done
        assert len(slow.events) < i
    finally:
        slow.close()
        fast.close()
        reader.join(TIMEOUT)


def test_slow_client_send_raises_connection_closed(serve):
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()),
                        max_send_queue=64 * 1024)
    with SSEClient(server.port, "/sse", rcvbuf=4096) as c:
        s = hub.get()
        chunk = "z" * 8000
        sent = 0
        start = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while time.monotonic() - start < 15:
                s.send(chunk)
                sent += len(chunk)
                if sent % (4 * len(chunk)) == 0:
                    time.sleep(0.001)
        assert sent >= 48 * 1024  # the bound did not refuse a client that just started
        assert sent < 32 * 1024 * 1024  # ... and is a bound
        assert s.closed and s.wait_closed(1.0)
        with pytest.raises(ConnectionClosed):
            s.comment()
        c.read_until_eof(TIMEOUT)
        assert not c.dechunk.done


def test_event_larger_than_send_queue_goes_to_a_reading_client(serve):
    """The bound is on the backlog: one event larger than max_send_queue still goes to a client
    that keeps up (the queue was empty), while a second one behind unread data is refused."""
    hub = Hub()
    server = sse_server(serve, lambda req: hub.put(req.respond_sse()),
                        max_send_queue=16 * 1024)
    with SSEClient(server.port, "/sse") as c:
        s = hub.get()
        s.send("small")
        c.read_events(1)
        s.send("L" * 20000)
        c.read_events(2)
        assert c.events == [Event("message", "small"), Event("message", "L" * 20000)]
        assert not s.closed


# ---- server shutdown ----------------------------------------------------------------------

def test_server_close_ends_open_streams(serve):
    hub, done = Hub(), Hub()

    def waiting(req):  # a handler blocked in wait_closed() with no timeout
        s = req.respond_sse()
        s.send("w")
        hub.put(s)
        done.put(s.wait_closed())

    def held(req):  # a stream whose handler returned; the test holds it
        s = req.respond_sse()
        s.send("h")
        hub.put(s)

    router = Router()
    router.get("/wait", waiting)
    router.get("/held", held)
    server = serve(router, sse_heartbeat=0)
    c11 = SSEClient(server.port, "/wait")
    c10 = SSEClient(server.port, "/held", version="HTTP/1.0")
    c11b = SSEClient(server.port, "/held")
    streams = [hub.get() for _ in range(3)]
    for c in (c11, c10, c11b):
        c.read_events(1)
    t = time.monotonic()
    server.close(timeout=5)
    assert time.monotonic() - t < 3
    assert done.get() is True
    for s in streams:
        assert s.closed and s.wait_closed(0) is True
        with pytest.raises(ConnectionClosed):
            s.send("too late")
    for c in (c11, c11b):
        c.read_until_end()  # a proper last chunk
        c.read_until_eof()
        assert c.dechunk.rest == b""
    c10.read_until_eof()
    assert c10.ended
    for c in (c11, c10, c11b):
        c.close()


def test_stream_started_while_server_closes_ends_at_once(serve):
    entered, done = Hub(), Hub()

    def handler(req):
        entered.put(True)
        time.sleep(0.3)
        s = req.respond_sse()
        done.put(s.wait_closed(TIMEOUT))

    server = sse_server(serve, handler)
    c = SSEClient(server.port, "/sse", read_head_now=False)
    entered.get()
    t = time.monotonic()
    server.close(timeout=5)
    assert time.monotonic() - t < 2
    assert done.get() is True
    c.read_head()
    assert c.headers["connection"].lower() == "close"
    c.read_until_end()
    c.close()


def test_stream_started_after_close_timeout_is_closed(serve):
    """Regression: a stream created after the I/O thread stopped was never closed, so
    wait_closed() blocked and Server.close() waited for it."""
    entered, done = Hub(), Hub()

    def handler(req):
        entered.put(True)
        time.sleep(0.4)
        try:
            s = req.respond_sse()
        except ConnectionClosed:  # refusing at once would be a fine answer too
            done.put((True, 0.0))
            return
        t = time.monotonic()
        done.put((s.wait_closed(2.0), time.monotonic() - t))

    server = sse_server(serve, handler)
    c = SSEClient(server.port, "/sse", read_head_now=False)
    try:
        entered.get()
        t = time.monotonic()
        server.close(timeout=0.1)
        closed_in = time.monotonic() - t
        ok, waited = done.get()
        assert ok and waited < 1.0, (ok, waited)
        assert closed_in < 1.5, closed_in
    finally:
        c.close()


# ---- examples -------------------------------------------------------------------------------

def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_sse_clock(serve):
    clock = _load_example("sse_clock")
    clock.INTERVAL = 0.05
    server = serve(clock.router, sse_heartbeat=0)
    with httpx.Client(timeout=TIMEOUT) as client:
        page = client.get(server.url + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "new EventSource" in page.text and "/events" in page.text
        with connect_sse(client, "GET", server.url + "/events") as source:
            it = source.iter_sse()
            ticks = [next(it) for _ in range(3)]
        assert [e.event for e in ticks] == ["tick"] * 3
        assert [int(e.id) for e in ticks] == [1, 2, 3]
        assert ticks[0].retry is not None
        with connect_sse(client, "GET", server.url + "/events",
                         headers={"Last-Event-ID": "41"}) as source:
            assert next(source.iter_sse()).id == "42"  # resumes after the last id


def test_example_sse_dashboard(serve):
    dash = _load_example("sse_dashboard")
    feeder = dash.Feeder(dash.channel, interval=0.02)
    feeder.start()
    try:
        server = serve(dash.router, sse_heartbeat=0)
        with httpx.Client(timeout=TIMEOUT) as client:
            page = client.get(server.url + "/")
            assert "new EventSource" in page.text
            with connect_sse(client, "GET", server.url + "/events") as source:
                it = source.iter_sse()
                events = [next(it) for _ in range(3)]
            for e in events:
                assert e.event == "metrics"
                metrics = json.loads(e.data)
                assert {"cpu", "requests", "users", "time"} <= metrics.keys()
            ids = [int(e.id) for e in events]
            assert ids == sorted(ids) and len(set(ids)) == 3
    finally:
        feeder.stop()


def test_forgotten_stream_is_ended_when_collected(serve):
    """A stream nobody holds any more (the handler returned without keeping or closing it) is
    ended like a collected file is closed, instead of being kept open by heartbeats."""
    router = Router()

    @router.get("/events")
    def events(request):
        request.respond_sse().send("only")

    server = serve(router, sse_heartbeat=0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert b"data: only\n\n" in data and data.endswith(b"0\r\n\r\n")
