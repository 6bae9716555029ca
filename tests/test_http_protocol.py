"""HTTP/1.1 protocol behaviour of a live mummyx server, checked with raw sockets (RFC 9110/9112).

Covers persistence (keep-alive, Connection: close, HTTP/1.0), pipelining order, request bodies
(Content-Length, chunked with extensions and trailers, in any split), body limits (413),
Expect: 100-continue (and 417), the invariant parts of every response (reason phrase, Date,
Content-Length, no body on HEAD/204/304), request-target forms, timeouts and many concurrent
connections. Malformed input is covered by test_http_errors.py.
"""
from __future__ import annotations

import email.utils
import json
import random
import re
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

import httpx
import pytest

from mummyx import Router

HOST = "127.0.0.1"
IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT$"
)
STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3}) ([\x21-\x7e][\x20-\x7e]*)$")


# ------------------------------------------------------------------------------------------------
# A strict little HTTP/1.1 client over one raw socket.
# ------------------------------------------------------------------------------------------------

class Response:
    def __init__(self, status: int, reason: str, headers: List[Tuple[str, str]], body: bytes,
                 raw_head: bytes) -> None:
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.body = body
        self.raw_head = raw_head

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        vals = self.getall(name)
        return vals[0] if vals else default

    def getall(self, name: str) -> List[str]:
        name = name.lower()
        return [v for k, v in self.header_list if k == name]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason!r} {self.header_list} {self.body[:80]!r}>"


class Conn:
    """One client connection: send raw bytes, read strictly framed responses, detect EOF."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        b = self.sock.recv(65536)
        if not b:
            raise EOFError(f"server closed the connection; unread: {self.buf[:200]!r}")
        self.buf += b

    def read_response(self, *, head: bool = False) -> Response:
        """Reads exactly one response. head=True: the request was HEAD (no body follows)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw_head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw_head.split(b"\r\n")
        m = STATUS_LINE.match(lines[0])
        assert m, f"bad status line: {lines[0]!r}"
        status = int(m.group(1))
        headers: List[Tuple[str, str]] = []
        for line in lines[1:]:
            assert b"\n" not in line and b"\r" not in line, line
            name, colon, value = line.partition(b":")
            assert colon and name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
        resp = Response(status, m.group(2).decode("latin-1"), headers, b"", raw_head)
        cls = resp.getall("content-length")
        assert not resp.getall("transfer-encoding"), resp
        if 100 <= status < 200 or status in (204, 304):
            assert cls == [], f"Content-Length on a {status}: {resp!r}"
            return resp
        assert len(cls) == 1 and cls[0].isdigit(), f"need exactly one Content-Length: {resp!r}"
        n = 0 if head else int(cls[0])
        while len(self.buf) < n:
            self._fill()
        resp.body, self.buf = self.buf[:n], self.buf[n:]
        return resp

    def read_final(self, *, head: bool = False) -> Response:
        """Reads responses until a final (non-1xx) one."""
        while True:
            r = self.read_response(head=head)
            if r.status >= 200:
                return r

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """True when the server closes (EOF or reset) within timeout with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            if self.buf:
                return False
            b = self.sock.recv(65536)
            return b == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def still_open(self, wait: float = 0.2) -> bool:
        """True when nothing (no bytes, no EOF) arrives within wait seconds."""
        self.sock.settimeout(wait)
        try:
            b = self.sock.recv(65536)
            self.buf += b
            return False
        except socket.timeout:
            return True
        except ConnectionResetError:
            return False
        finally:
            self.sock.settimeout(self.timeout)


def req(method: str = "GET", target: str = "/", headers: Optional[Dict[str, str]] = None,
        body: bytes = b"", version: str = "HTTP/1.1", host: Optional[str] = "t") -> bytes:
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body: bytes, sizes: List[int]) -> bytes:
    out = b""
    i = 0
    for n in sizes:
        out += b"%x\r\n" % n + body[i:i + n] + b"\r\n"
        i += n
    assert i == len(body)
    return out + b"0\r\n\r\n"


def check_common(r: Response) -> None:
    """Invariants of every final response (RFC 9110 6.6.1, 15; RFC 9112 4, 6)."""
    assert r.reason.strip(), r
    dates = r.getall("date")
    assert len(dates) == 1, r
    assert IMF_FIXDATE.match(dates[0]), dates[0]
    when = email.utils.parsedate_to_datetime(dates[0])
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 10, dates[0]


def echo_router() -> Router:
    router = Router()

    @router.get("/")
    def index(request):
        request.respond(200, {"Content-Type": "text/plain"}, b"hello")

    @router.post("/echo")
    def echo(request):
        request.respond(200, {"Content-Type": "application/octet-stream"}, request.body)

    @router.put("/echo")
    def echo_put(request):
        request.respond(200, {"Content-Type": "application/octet-stream"}, request.body)

    @router.get("/echo")
    def echo_get(request):
        request.respond(200, {"Content-Type": "application/octet-stream"}, request.body)

    @router.get("/n/@i")
    def numbered(request):
        request.respond(200, {"Content-Type": "text/plain"}, "n" + request.path_params["i"])

    return router


# ------------------------------------------------------------------------------------------------
# Persistence (RFC 9112 9.3)
# ------------------------------------------------------------------------------------------------

def test_http11_keep_alive_by_default(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        for i in range(5):
            c.send(req(target=f"/n/{i}"))
            r = c.read_response()
            assert r.status == 200 and r.body == f"n{i}".encode()
            assert r.get("connection") is None or "close" not in r.get("connection").lower()
            check_common(r)
        assert c.still_open(0.3)


def test_http11_connection_close_honoured(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req(headers={"Connection": "close"}))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello"
        assert r.get("connection", "").lower() == "close"
        assert c.closed_by_server()


@pytest.mark.parametrize("value", ["CLOSE", "keep-alive, close", "foo , Close"])
def test_connection_close_token_in_list_case_insensitive(serve, value):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req(headers={"Connection": value}))
        r = c.read_response()
        assert r.status == 200
        assert r.get("connection", "").lower() == "close"
        assert c.closed_by_server()


def test_http10_closes_by_default(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req(version="HTTP/1.0", host=None))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello"
        assert (r.get("connection") or "close").lower() == "close"
        assert c.closed_by_server()


def test_http10_keep_alive_opt_in(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        for i in range(3):
            c.send(req(target=f"/n/{i}", version="HTTP/1.0", host=None,
                       headers={"Connection": "keep-alive"}))
            r = c.read_response()
            assert r.status == 200 and r.body == f"n{i}".encode()
            assert r.get("connection", "").lower() == "keep-alive"
            check_common(r)
        # A 1.0 request without the opt-in ends the connection.
        c.send(req(version="HTTP/1.0", host=None))
        r = c.read_response()
        assert r.status == 200
        assert (r.get("connection") or "close").lower() == "close"
        assert c.closed_by_server()


def test_http10_keep_alive_on_server_generated_404(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req(target="/missing", version="HTTP/1.0", host=None,
                   headers={"Connection": "keep-alive"}))
        r = c.read_response()
        assert r.status == 404
        assert r.get("connection", "").lower() == "keep-alive"
        c.send(req(target="/", version="HTTP/1.0", host=None, headers={"Connection": "keep-alive"}))
        assert c.read_response().body == b"hello"


def test_handler_connection_close_header_closes(serve):
    def handler(request):
        request.respond(200, {"Connection": "close"}, b"bye")

    server = serve(handler)
    with Conn(server.port) as c:
        c.send(req() + req())
        r = c.read_response()
        assert r.status == 200 and r.body == b"bye"
        assert r.getall("connection") == ["close"]
        assert c.closed_by_server()


def test_client_half_close_still_answered(serve):
    """A client that shuts down its sending side after a request still gets the answer."""
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req(target="/n/1") + req(target="/n/2"))
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_response().body == b"n1"
        assert c.read_response().body == b"n2"
        assert c.closed_by_server()


# ------------------------------------------------------------------------------------------------
# Pipelining (RFC 9112 9.3.2)
# ------------------------------------------------------------------------------------------------

def test_pipelined_answered_in_order_when_handlers_finish_out_of_order(serve):
    done: List[str] = []
    lock = threading.Lock()
    router = Router()

    @router.get("/slow/@i")
    def slow(request):
        time.sleep(0.3)
        with lock:
            done.append("slow" + request.path_params["i"])
        request.respond(200, body="slow" + request.path_params["i"])

    @router.get("/fast/@i")
    def fast(request):
        with lock:
            done.append("fast" + request.path_params["i"])
        request.respond(200, body="fast" + request.path_params["i"])

    server = serve(router, workers=4)
    names = ["slow0", "fast1", "fast2", "slow3", "fast4"]
    with Conn(server.port) as c:
        c.send(b"".join(req(target=f"/{n[:4]}/{n[4:]}") for n in names))
        bodies = [c.read_response().body.decode() for _ in names]
    assert bodies == names
    # The fast handlers really did finish first, so the server had to reorder.
    assert done.index("fast1") < done.index("slow0"), done
    assert done.index("fast2") < done.index("slow0"), done


def test_pipeline_longer_than_max_pipeline(serve):
    server = serve(echo_router(), max_pipeline=4, workers=2)
    n = 60
    with Conn(server.port) as c:
        c.send(b"".join(req(target=f"/n/{i}") for i in range(n)))
        for i in range(n):
            r = c.read_response()
            assert (r.status, r.body) == (200, f"n{i}".encode())
        assert c.still_open(0.2)


def test_pipeline_of_100_with_large_max_pipeline(serve):
    server = serve(echo_router(), max_pipeline=128, workers=4)
    with Conn(server.port) as c:
        c.send(b"".join(req(target=f"/n/{i}") for i in range(100)) + req(target="/n/last"))
        for i in list(range(100)) + ["last"]:
            assert c.read_response().body == f"n{i}".encode()


def test_pipelined_bodies_mixed_framing(serve):
    server = serve(echo_router())
    bodies = [b"first", b"", b"x" * 5000, b"chunky body", b"\x00\r\n\r\nGET / HTTP/1.1\r\n\r\n"]
    stream = (
        req("POST", "/echo", {"Content-Length": str(len(bodies[0]))}, bodies[0])
        + req("POST", "/echo", {"Content-Length": "0"})
        + req("PUT", "/echo", {"Content-Length": str(len(bodies[2]))}, bodies[2])
        + req("POST", "/echo", {"Transfer-Encoding": "chunked"}, chunked(bodies[3], [5, 6]))
        + req("POST", "/echo", {"Content-Length": str(len(bodies[4]))}, bodies[4])
    )
    with Conn(server.port) as c:
        c.send(stream)
        for b in bodies:
            r = c.read_response()
            assert r.status == 200 and r.body == b
        assert c.still_open(0.2)


def test_pipelined_stream_in_random_pieces(serve):
    server = serve(echo_router())
    rng = random.Random(1234)
    stream = b"".join(
        req("POST", "/echo", {"Content-Length": "3"}, b"%03d" % i) if i % 2 else
        req("POST", "/echo", {"Transfer-Encoding": "chunked"}, chunked(b"c%03d" % i, [1, 3]))
        for i in range(12)
    )
    with Conn(server.port) as c:
        i = 0
        while i < len(stream):
            n = rng.randint(1, 40)
            c.send(stream[i:i + n])
            i += n
            time.sleep(0.001)
        for i in range(12):
            expect = b"%03d" % i if i % 2 else b"c%03d" % i
            assert c.read_response().body == expect


def test_requests_after_connection_close_are_never_answered(serve):
    calls: List[str] = []
    router = Router()

    @router.get("/@name")
    def h(request):
        calls.append(request.path_params["name"])
        request.respond(200, body=request.path_params["name"])

    server = serve(router)
    with Conn(server.port) as c:
        c.send(req(target="/a") + req(target="/b", headers={"Connection": "close"})
               + req(target="/c") + req(target="/d"))
        assert c.read_response().body == b"a"
        r = c.read_response()
        assert r.body == b"b" and r.get("connection") == "close"
        assert c.closed_by_server()
    time.sleep(0.1)
    assert sorted(calls) == ["a", "b"]


def test_http10_pipeline_stops_after_non_keep_alive_request(serve):
    calls: List[str] = []

    def handler(request):
        calls.append(request.path)
        request.respond(200, body=request.path)

    server = serve(handler)
    with Conn(server.port) as c:
        c.send(req(target="/a", version="HTTP/1.0", host=None) + req(target="/b"))
        assert c.read_response().body == b"/a"
        assert c.closed_by_server()
    time.sleep(0.1)
    assert calls == ["/a"]


# ------------------------------------------------------------------------------------------------
# Request bodies (RFC 9112 6, 7.1)
# ------------------------------------------------------------------------------------------------

def test_content_length_body_echoed(serve):
    server = serve(echo_router())
    body = bytes(range(256)) * 3
    with Conn(server.port) as c:
        c.send(req("POST", "/echo", {"Content-Length": str(len(body))}, body))
        r = c.read_response()
        assert r.status == 200 and r.body == body
        check_common(r)


def test_content_length_body_in_pieces(serve):
    server = serve(echo_router())
    body = b"0123456789" * 30
    with Conn(server.port) as c:
        c.send(req("POST", "/echo", {"Content-Length": str(len(body))}))
        for i in range(0, len(body), 37):
            time.sleep(0.002)
            c.send(body[i:i + 37])
        assert c.read_response().body == body


def test_large_body_under_limit(serve):
    server = serve(echo_router(), max_body_len=2 * 1024 * 1024)
    body = random.Random(7).randbytes(1024 * 1024 + 17)
    r = httpx.post(server.url + "/echo", content=body, timeout=10,
                   headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.content == body


def test_body_on_get_is_read_and_framing_kept(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req("GET", "/echo", {"Content-Length": "4"}, b"abcd") + req(target="/n/2"))
        assert c.read_response().body == b"abcd"
        assert c.read_response().body == b"n2"


CHUNKED_FORMS = [
    # (wire body, decoded body)
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"5;ext=1\r\nhello\r\n6 ; a ; b=\"q\\\"x;y\"\r\n world\r\n0;last\r\n\r\n", b"hello world"),
    (b"A\r\n0123456789\r\nf\r\nabcdefghijklmno\r\n0\r\n\r\n", b"0123456789abcdefghijklmno"),
    (b"000005\r\nhello\r\n000\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n0\r\nX-Trailer: one\r\nOther: two\r\n\r\n", b"hello"),
    (b"0\r\n\r\n", b""),
    (b"1\r\n\x00\r\n2\r\n\r\n\r\n0\r\n\r\n", b"\x00\r\n"),
]


@pytest.mark.parametrize("wire,decoded", CHUNKED_FORMS)
def test_chunked_body_one_piece(serve, wire, decoded):
    seen = {}

    def handler(request):
        seen["trailer"] = request.headers.get("X-Trailer")
        seen["te"] = request.headers.get("Transfer-Encoding")
        request.respond(200, {"Content-Type": "application/octet-stream"}, request.body)

    server = serve(handler)
    with Conn(server.port) as c:
        c.send(req("POST", "/", {"Transfer-Encoding": "chunked"}, wire) + req(target="/after"))
        r = c.read_response()
        assert r.status == 200 and r.body == decoded
        r2 = c.read_response()  # the connection is still in sync after the body
        assert r2.status == 200
    assert seen["trailer"] is None  # trailers are read and discarded


def test_chunked_body_byte_by_byte(serve):
    server = serve(echo_router())
    wire = CHUNKED_FORMS[1][0].replace(b"0;last\r\n\r\n", b"0;last\r\nT: v\r\n\r\n")
    with Conn(server.port) as c:
        c.send(req("POST", "/echo", {"Transfer-Encoding": "chunked"}))
        for i in range(len(wire)):
            c.send(wire[i:i + 1])
            time.sleep(0.001)
        assert c.read_response().body == b"hello world"
        c.send(req(target="/n/9"))
        assert c.read_response().body == b"n9"


@pytest.mark.parametrize("seed", range(6))
def test_chunked_body_random_pieces(serve, seed):
    server = serve(echo_router())
    rng = random.Random(seed)
    body = rng.randbytes(rng.randint(0, 3000))
    sizes: List[int] = []
    left = len(body)
    while left:
        n = min(left, rng.randint(1, 700))
        sizes.append(n)
        left -= n
    wire = b""
    i = 0
    for n in sizes:
        ext = rng.choice([b"", b";a", b";a=b", b' ;q="x y"'])
        wire += b"%x" % n + ext + b"\r\n" + body[i:i + n] + b"\r\n"
        i += n
    wire += b"0\r\nTrailer-A: 1\r\n\r\n"
    head = req("POST", "/echo", {"Transfer-Encoding": "chunked"})
    stream = head + wire + req(target="/n/5")
    with Conn(server.port) as c:
        i = 0
        while i < len(stream):
            n = rng.randint(1, 300)
            c.send(stream[i:i + n])
            i += n
            if rng.random() < 0.3:
                time.sleep(0.001)
        r = c.read_response()
        assert r.status == 200 and r.body == body
        assert c.read_response().body == b"n5"


def test_transfer_encoding_chunked_case_insensitive(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req("POST", "/echo", {"Transfer-Encoding": "Chunked"}, chunked(b"abc", [3])))
        assert c.read_response().body == b"abc"


# ------------------------------------------------------------------------------------------------
# Body limits (413)
# ------------------------------------------------------------------------------------------------

def _counting_echo():
    calls: List[bytes] = []

    def handler(request):
        calls.append(request.body)
        request.respond(200, {"Content-Type": "application/octet-stream"}, request.body)

    return handler, calls


def test_content_length_at_limit_accepted(serve):
    handler, calls = _counting_echo()
    server = serve(handler, max_body_len=100)
    with Conn(server.port) as c:
        c.send(req("POST", "/", {"Content-Length": "100"}, b"x" * 100))
        assert c.read_response().body == b"x" * 100


def test_content_length_over_limit_413_before_body(serve):
    handler, calls = _counting_echo()
    server = serve(handler, max_body_len=100)
    with Conn(server.port) as c:
        # Only the head is sent: the declared length alone must get the 413.
        c.send(req("POST", "/", {"Content-Length": "101"}))
        r = c.read_response()
        assert r.status == 413 and r.reason
        assert r.get("connection") == "close"
        check_common(r)
        c.send(b"y" * 101)  # the late body is not taken as a request
        assert c.closed_by_server()
    assert calls == []


def test_content_length_huge_413(serve):
    handler, calls = _counting_echo()
    server = serve(handler)
    with Conn(server.port) as c:
        c.send(req("POST", "/", {"Content-Length": str(2 ** 40)}))
        r = c.read_response()
        assert r.status == 413 and r.get("connection") == "close"
        assert c.closed_by_server()
    assert calls == []


def test_chunked_growing_past_limit_413(serve):
    handler, calls = _counting_echo()
    server = serve(handler, max_body_len=100)
    with Conn(server.port) as c:
        c.send(req("POST", "/", {"Transfer-Encoding": "chunked"}))
        c.send(b"3c\r\n" + b"a" * 60 + b"\r\n")
        time.sleep(0.05)
        c.send(b"3c\r\n" + b"b" * 60 + b"\r\n")
        r = c.read_response()
        assert r.status == 413 and r.get("connection") == "close"
        check_common(r)
        assert c.closed_by_server()
    assert calls == []


def test_chunked_exactly_at_limit_accepted(serve):
    handler, calls = _counting_echo()
    server = serve(handler, max_body_len=100)
    with Conn(server.port) as c:
        c.send(req("POST", "/", {"Transfer-Encoding": "chunked"}, chunked(b"z" * 100, [60, 40])))
        assert c.read_response().body == b"z" * 100


def test_chunked_single_huge_chunk_size_413(serve):
    handler, calls = _counting_echo()
    server = serve(handler, max_body_len=100)
    with Conn(server.port) as c:
        c.send(req("POST", "/", {"Transfer-Encoding": "chunked"}) + b"100000\r\n" + b"q" * 200)
        r = c.read_response()
        assert r.status == 413 and r.get("connection") == "close"
        assert c.closed_by_server()
    assert calls == []


def test_route_max_body_len_override(serve):
    router = Router()
    router.add_route("POST", "/small", lambda r: r.respond(200, body=r.body), max_body_len=10)
    router.add_route("POST", "/big", lambda r: r.respond(200, body=r.body))
    server = serve(router, max_body_len=100)
    with Conn(server.port) as c:
        c.send(req("POST", "/big", {"Content-Length": "50"}, b"b" * 50))
        assert c.read_response().body == b"b" * 50
        c.send(req("POST", "/small", {"Content-Length": "10"}, b"s" * 10))
        assert c.read_response().body == b"s" * 10
        c.send(req("POST", "/small", {"Content-Length": "11"}, b"s" * 11))
        r = c.read_response()
        assert r.status == 413 and r.get("connection") == "close"
        assert c.closed_by_server()


# ------------------------------------------------------------------------------------------------
# Expect (RFC 9110 10.1.1)
# ------------------------------------------------------------------------------------------------

def test_expect_100_continue_content_length(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req("POST", "/echo", {"Content-Length": "5", "Expect": "100-continue"}))
        r = c.read_response()
        assert (r.status, r.reason) == (100, "Continue")
        assert r.header_list == []
        c.send(b"hello")
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello"
        check_common(r)
        c.send(req(target="/n/3"))  # still keep-alive
        assert c.read_response().body == b"n3"


def test_expect_100_continue_chunked_case_insensitive(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req("POST", "/echo", {"Transfer-Encoding": "chunked", "Expect": "100-Continue"}))
        r = c.read_response()
        assert r.status == 100
        c.send(chunked(b"hello world", [4, 7]))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello world"


def test_expect_100_continue_not_sent_when_body_too_large(serve):
    handler, calls = _counting_echo()
    server = serve(handler, max_body_len=10)
    with Conn(server.port) as c:
        c.send(req("POST", "/", {"Content-Length": "11", "Expect": "100-continue"}))
        r = c.read_response()
        assert r.status == 413 and r.get("connection") == "close"
        assert c.closed_by_server()
    assert calls == []


def test_expect_100_continue_waits_for_earlier_pipelined_response(serve):
    router = echo_router()

    @router.get("/slow")
    def slow(request):
        time.sleep(0.3)
        request.respond(200, body=b"slow")

    server = serve(router)
    with Conn(server.port) as c:
        c.send(req(target="/slow")
               + req("POST", "/echo", {"Content-Length": "3", "Expect": "100-continue"}))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"slow")
        assert c.read_response().status == 100
        c.send(b"abc")
        assert c.read_response().body == b"abc"


def test_expect_100_continue_ignored_on_http10(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req("POST", "/echo", {"Content-Length": "2", "Expect": "100-continue"}, b"hi",
                   version="HTTP/1.0", host=None))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hi"


@pytest.mark.parametrize("value", ["something-else", "100-continue, foo", "200-ok"])
def test_unknown_expectation_417(serve, value):
    handler, calls = _counting_echo()
    server = serve(handler)
    with Conn(server.port) as c:
        c.send(req("POST", "/", {"Content-Length": "2", "Expect": value}, b"hi"))
        r = c.read_response()
        assert r.status == 417 and r.reason == "Expectation Failed"
        assert r.get("connection") == "close"
        check_common(r)
        assert c.closed_by_server()
    assert calls == []


def test_httpx_expect_continue_roundtrip(serve):
    server = serve(echo_router())
    with httpx.Client(timeout=5) as client:
        r = client.post(server.url + "/echo", content=b"payload",
                        headers={"Expect": "100-continue"})
    assert r.status_code == 200 and r.content == b"payload"


# ------------------------------------------------------------------------------------------------
# Response invariants (RFC 9110 6.6.1, 8.6, 9.3.2, 15; RFC 9112 6.3)
# ------------------------------------------------------------------------------------------------

def status_router() -> Router:
    router = Router()

    @router.get("/status/@code")
    def status(request):
        code = int(request.path_params["code"])
        request.respond(code, {"Content-Type": "text/plain"}, b"body-that-may-be-dropped")

    @router.get("/text")
    def text(request):
        return "some text"

    @router.get("/wrong-cl")
    def wrong_cl(request):
        request.respond(200, {"Content-Length": "999"}, b"abc")

    @router.post("/only-post")
    def only_post(request):
        request.respond(200, body=b"p")

    return router


@pytest.mark.parametrize("code,reason", [
    (200, "OK"), (201, "Created"), (202, "Accepted"), (301, "Moved Permanently"),
    (302, "Found"), (400, "Bad Request"), (403, "Forbidden"), (404, "Not Found"),
    (418, "I'm a teapot"), (500, "Internal Server Error"), (503, "Service Unavailable"),
])
def test_status_reason_date_content_length(serve, code, reason):
    server = serve(status_router())
    with Conn(server.port) as c:
        c.send(req(target=f"/status/{code}"))
        r = c.read_response()
        assert (r.status, r.reason) == (code, reason)
        assert r.body == b"body-that-may-be-dropped"
        assert r.getall("content-length") == [str(len(r.body))]
        check_common(r)


def test_unregistered_status_still_has_reason_phrase(serve):
    server = serve(status_router())
    with Conn(server.port) as c:
        c.send(req(target="/status/299"))
        r = c.read_response()
        assert r.status == 299 and r.reason.strip()
        check_common(r)


@pytest.mark.parametrize("code", [204, 304])
def test_no_content_length_and_no_body_on_204_304(serve, code):
    server = serve(status_router())
    with Conn(server.port) as c:
        # Pipelined with a follow-up: any stray body bytes would corrupt the next response.
        c.send(req(target=f"/status/{code}") + req(target="/text"))
        r = c.read_response()
        assert r.status == code
        assert r.getall("content-length") == [] and r.getall("transfer-encoding") == []
        check_common(r)
        r2 = c.read_response()
        assert (r2.status, r2.body) == (200, b"some text")


def test_head_served_by_get_route_without_body(serve):
    server = serve(status_router())
    with Conn(server.port) as c:
        c.send(req("GET", "/text"))
        g = c.read_response()
        c.send(req("HEAD", "/text") + req("GET", "/text"))
        h = c.read_response(head=True)
        assert h.status == 200
        assert h.getall("content-length") == g.getall("content-length") == ["9"]
        assert h.get("content-type") == g.get("content-type")
        check_common(h)
        # If the HEAD response carried a body, this would read it instead of the GET response.
        g2 = c.read_response()
        assert (g2.status, g2.body) == (200, b"some text")
        assert c.buf == b""


def test_head_matches_get_with_compression(serve):
    router = Router()
    text = "All work and no play makes Jack a dull boy.\n" * 100

    @router.get("/long")
    def long(request):
        request.respond(200, {"Content-Type": "text/plain"}, text)

    server = serve(router)
    for enc in ("gzip", "identity"):
        with Conn(server.port) as c:
            c.send(req("GET", "/long", {"Accept-Encoding": enc})
                   + req("HEAD", "/long", {"Accept-Encoding": enc}) + req("GET", "/long"))
            g = c.read_response()
            if enc == "gzip":
                assert g.get("content-encoding") == "gzip"  # the case worth checking
            hd = c.read_response(head=True)
            assert hd.getall("content-length") == g.getall("content-length")
            assert hd.get("content-encoding") == g.get("content-encoding")
            assert c.read_response().status == 200  # nothing was left over from the HEAD


def test_head_on_missing_path_no_body(serve):
    server = serve(status_router())
    with Conn(server.port) as c:
        c.send(req("HEAD", "/nope") + req("GET", "/text"))
        h = c.read_response(head=True)
        assert h.status == 404 and h.getall("content-length")
        assert c.read_response().body == b"some text"


def test_server_generated_404_and_405(serve):
    server = serve(status_router())
    with Conn(server.port) as c:
        c.send(req("GET", "/nope"))
        r = c.read_response()
        assert (r.status, r.reason) == (404, "Not Found")
        check_common(r)
        c.send(req("GET", "/only-post"))
        r = c.read_response()
        assert (r.status, r.reason) == (405, "Method Not Allowed")
        assert "POST" in r.get("allow", "")
        check_common(r)
        c.send(req("GET", "/text"))  # neither closes the connection
        assert c.read_response().body == b"some text"


def test_handler_content_length_replaced_by_real_length(serve):
    server = serve(status_router())
    with Conn(server.port) as c:
        c.send(req(target="/wrong-cl") + req(target="/text"))
        r = c.read_response()
        assert r.getall("content-length") == ["3"] and r.body == b"abc"
        assert c.read_response().body == b"some text"


def test_handler_fault_500_has_invariants(serve):
    def handler(request):
        raise ValueError("boom")

    server = serve(handler)
    with Conn(server.port) as c:
        c.send(req())
        r = c.read_response()
        assert (r.status, r.reason) == (500, "Internal Server Error")
        check_common(r)


# ------------------------------------------------------------------------------------------------
# Request-target forms (RFC 9112 3.2)
# ------------------------------------------------------------------------------------------------

def test_absolute_form_routes_to_path(serve):
    router = Router()

    @router.get("/path")
    def path(request):
        return {"path": request.path, "x": request.query.get("x"), "uri": request.uri}

    server = serve(router)
    with Conn(server.port) as c:
        c.send(req(target="http://example.com/path?x=1", host="example.com"))
        r = c.read_response()
        assert r.status == 200
        assert json.loads(r.body) == {"path": "/path", "x": "1",
                                      "uri": "http://example.com/path?x=1"}


def test_absolute_form_scheme_case_insensitive_and_https(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req(target="HTTP://Example.COM/n/7", host="Example.COM")
               + req(target="https://example.com/n/8", host="example.com"))
        assert c.read_response().body == b"n7"
        assert c.read_response().body == b"n8"


def test_absolute_form_without_path_is_root(serve):
    router = Router()
    router.get("/", lambda r: r.respond(200, body=f"{r.path}|{r.query.get('x')}"))
    server = serve(router)
    with Conn(server.port) as c:
        c.send(req(target="http://example.com", host="example.com")
               + req(target="http://example.com?x=1", host="example.com"))
        assert c.read_response().body == b"/|None"
        assert c.read_response().body == b"/|1"


def test_upgrade_to_unsupported_protocol_is_ignored(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req(headers={"Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings",
                            "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}) + req(target="/n/2"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello")
        assert c.read_response().body == b"n2"


def test_options_asterisk_answered_by_router(serve):
    server = serve(echo_router())
    with Conn(server.port) as c:
        c.send(req("OPTIONS", "*") + req(target="/"))
        r = c.read_response()
        assert 200 <= r.status < 500 and r.reason
        check_common(r)
        assert c.read_response().body == b"hello"


def test_options_asterisk_reaches_plain_handler(serve):
    seen = {}

    def handler(request):
        seen["method"], seen["uri"] = request.method, request.uri
        request.respond(204, {"Allow": "GET, OPTIONS"})

    server = serve(handler)
    with Conn(server.port) as c:
        c.send(req("OPTIONS", "*"))
        r = c.read_response()
        assert r.status == 204 and r.get("allow") == "GET, OPTIONS"
    assert seen == {"method": "OPTIONS", "uri": "*"}


# ------------------------------------------------------------------------------------------------
# Timeouts
# ------------------------------------------------------------------------------------------------

def test_header_timeout_partial_head_gets_408(serve):
    handler, calls = _counting_echo()
    server = serve(handler, header_timeout=0.5)
    with Conn(server.port) as c:
        t0 = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert r.status == 408 and r.reason == "Request Timeout"
        assert r.get("connection") == "close"
        check_common(r)
        assert 0.3 < elapsed < 1.5, elapsed
        assert c.closed_by_server()
    assert calls == []


def test_header_timeout_not_reset_by_dribbling(serve):
    """Slowloris: a byte every 0.1 s must not keep a head alive past header_timeout."""
    handler, calls = _counting_echo()
    server = serve(handler, header_timeout=0.5)
    with Conn(server.port) as c:
        t0 = time.monotonic()
        c.send(b"G")
        got = b""
        c.sock.settimeout(0.1)
        while time.monotonic() - t0 < 3.0:
            try:
                b = c.sock.recv(4096)
            except socket.timeout:
                try:
                    c.send(b"X")
                except (BrokenPipeError, ConnectionResetError):
                    break
                continue
            except ConnectionResetError:
                break
            if not b:
                break
            got += b
        elapsed = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 408 "), got
        assert elapsed < 1.6, elapsed
    assert calls == []


def test_idle_timeout_closes_keep_alive_connection(serve):
    server = serve(echo_router(), idle_timeout=0.5)
    with Conn(server.port) as c:
        c.send(req())
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.closed_by_server(timeout=2.0)
        assert 0.3 < time.monotonic() - t0 < 1.5


def test_idle_timeout_closes_silent_new_connection(serve):
    server = serve(echo_router(), idle_timeout=0.5)
    with Conn(server.port) as c:
        t0 = time.monotonic()
        c.sock.settimeout(2.0)
        data = b""
        try:
            while True:
                b = c.sock.recv(4096)
                if not b:
                    break
                data += b
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 1.5
        assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data


def test_timeouts_do_not_cut_slow_handler(serve):
    router = echo_router()

    @router.get("/slow")
    def slow(request):
        time.sleep(1.0)
        request.respond(200, body=b"done")

    server = serve(router, header_timeout=0.4, idle_timeout=0.4)
    with Conn(server.port) as c:
        c.send(req(target="/slow"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"done")
        c.send(req(target="/n/1"))
        assert c.read_response().body == b"n1"


def test_idle_connection_reused_before_timeout(serve):
    server = serve(echo_router(), idle_timeout=1.0, header_timeout=1.0)
    with Conn(server.port) as c:
        for i in range(3):
            c.send(req(target=f"/n/{i}"))
            assert c.read_response().body == f"n{i}".encode()
            time.sleep(0.4)


# ------------------------------------------------------------------------------------------------
# Many connections
# ------------------------------------------------------------------------------------------------

def test_many_concurrent_keep_alive_connections(serve):
    server = serve(echo_router(), workers=4)
    n_conns, n_rounds = 200, 5
    t0 = time.monotonic()
    conns = [Conn(server.port, timeout=15) for _ in range(n_conns)]
    try:
        for rnd in range(n_rounds):
            for i, c in enumerate(conns):
                c.send(req(target=f"/n/{i}-{rnd}"))
            for i, c in enumerate(conns):
                r = c.read_response()
                assert (r.status, r.body) == (200, f"n{i}-{rnd}".encode())
        for c in conns[:10]:
            assert c.still_open(0.01)
    finally:
        for c in conns:
            c.close()
    assert time.monotonic() - t0 < 30


def test_many_threads_with_httpx(serve):
    server = serve(echo_router(), workers=4)
    errors: List[BaseException] = []

    def worker(k: int) -> None:
        try:
            with httpx.Client(timeout=10) as client:
                for j in range(5):
                    body = f"{k}:{j}".encode() * (k + 1)
                    r = client.post(server.url + "/echo", content=body)
                    assert r.status_code == 200 and r.content == body
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads)


def test_max_connections_excess_connections_wait_their_turn(serve):
    server = serve(echo_router(), max_connections=5)
    conns = [Conn(server.port, timeout=5) for _ in range(8)]
    try:
        for i, c in enumerate(conns):
            c.send(req(target=f"/n/{i}"))
        for i, c in enumerate(conns[:5]):
            assert c.read_response().body == f"n{i}".encode()
        for c in conns[:5]:
            c.close()
        for i, c in enumerate(conns[5:], start=5):
            assert c.read_response().body == f"n{i}".encode()
    finally:
        for c in conns:
            c.close()


# ------------------------------------------------------------------------------------------------
# Robustness of the connection itself
# ------------------------------------------------------------------------------------------------

def test_413_reaches_client_still_sending_large_body(serve):
    """The error response is not destroyed by a reset while the client is still uploading."""
    handler, calls = _counting_echo()
    server = serve(handler, max_body_len=100)
    with Conn(server.port, timeout=10) as c:
        c.send(req("POST", "/", {"Content-Length": str(4_000_000)}))
        errors: List[BaseException] = []

        def upload() -> None:
            try:
                c.sock.sendall(b"x" * 4_000_000)
            except OSError as e:  # the server may stop reading after lingering
                errors.append(e)

        t = threading.Thread(target=upload)
        t.start()
        r = c.read_response()
        assert r.status == 413 and r.get("connection") == "close"
        t.join(15)
        assert not t.is_alive()
    assert calls == []


def test_large_responses_to_slow_reader_pipelined(serve):
    big = bytes(range(256)) * 8192  # 2 MiB
    router = Router()

    @router.get("/big/@i")
    def bigh(request):
        request.respond(200, {"Content-Type": "application/octet-stream"},
                        request.path_params["i"].encode() + big)

    server = serve(router)
    with Conn(server.port, timeout=10) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        c.send(req(target="/big/a") + req(target="/big/b") + req(target="/big/c"))
        time.sleep(0.2)  # let the server fill the socket buffers and wait for writability
        for name in (b"a", b"b", b"c"):
            r = c.read_response()
            assert r.status == 200 and len(r.body) == len(big) + 1
            assert r.body[:1] == name and r.body[1:] == big


def test_client_disconnect_while_handler_runs(serve):
    started = threading.Event()
    finished = threading.Event()
    router = echo_router()

    @router.get("/slow")
    def slow(request):
        started.set()
        time.sleep(0.3)
        request.respond(200, body=b"late")  # the client is gone: must not break anything
        finished.set()

    server = serve(router)
    for _ in range(3):
        started.clear()
        finished.clear()
        c = Conn(server.port)
        c.send(req(target="/slow"))
        assert started.wait(5)
        c.close()
        assert finished.wait(5)
    with Conn(server.port) as c:
        c.send(req(target="/n/1"))
        assert c.read_response().body == b"n1"


def test_incomplete_body_then_client_closes(serve):
    handler, calls = _counting_echo()
    server = serve(handler)
    for framing in ({"Content-Length": "100"}, {"Transfer-Encoding": "chunked"}):
        c = Conn(server.port)
        body = b"only part" if "Content-Length" in framing else b"64\r\nonly part"
        c.send(req("POST", "/", framing, body))
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_server(3.0)
        c.close()
    time.sleep(0.1)
    assert calls == []
    with Conn(server.port) as c:
        c.send(req("POST", "/", {"Content-Length": "2"}, b"ok"))
        assert c.read_response().body == b"ok"


def test_header_timeout_on_pipelined_partial_head_keeps_earlier_response(serve):
    """Regression: the header timer of an unfinished pipelined head used to close the connection
    at once, dropping the response of the complete request before it."""
    router = echo_router()

    @router.get("/slow")
    def slow(request):
        time.sleep(0.8)
        request.respond(200, body=b"slow")

    server = serve(router, header_timeout=0.3)
    with Conn(server.port) as c:
        # A complete request whose handler takes 0.8 s, then a head that never ends.
        c.send(req(target="/slow") + b"GET / HTTP/1.1\r\nHo")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"slow")
        # Then a 408 for the unfinished head, in its pipeline place, and the close.
        rest = c.buf
        c.sock.settimeout(3.0)
        try:
            while True:
                b = c.sock.recv(65536)
                if not b:
                    break
                rest += b
        except ConnectionResetError:
            pass
        assert rest.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), rest
        assert b"\r\nConnection: close\r\n" in rest, rest


@pytest.mark.parametrize("tail", [
    b"GET /n/1 HTTP/1.1\r\nHo",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
], ids=["partial-head", "partial-body"])
def test_half_close_after_partial_request_answers_complete_ones(serve, tail):
    """Regression: EOF with a partial request buffered used to close at once, dropping the
    response of the earlier complete request (whose handler still ran)."""
    calls: List[str] = []
    router = echo_router()

    @router.get("/slow")
    def slow(request):
        time.sleep(0.3)
        calls.append("slow")
        request.respond(200, body=b"slow")

    server = serve(router)
    with Conn(server.port) as c:
        c.send(req(target="/slow") + tail)
        c.sock.shutdown(socket.SHUT_WR)  # the client will send nothing more
        try:
            r = c.read_response()
        finally:
            time.sleep(0.5)
            assert calls == ["slow"]  # the handler ran in any case
        assert (r.status, r.body) == (200, b"slow")
        # the unfinished request may get an error response (or none) before the close
        rest = c.buf
        c.sock.settimeout(3.0)
        try:
            while True:
                b = c.sock.recv(65536)
                if not b:
                    break
                rest += b
        except ConnectionResetError:
            pass
        assert rest == b"" or rest.startswith(b"HTTP/1.1 4"), rest
