"""Malformed and refused requests against a live mummyx server (RFC 9110/9112).

Every bad request must get one real response with the right status, a reason phrase, Date,
Content-Length and `Connection: close`; then the server closes the connection, and no byte that
followed the bad request is ever parsed as another request (checked with a handler that counts
every call it gets and a valid "smuggled" request appended to the bad one).
"""
from __future__ import annotations

import email.utils
import random
import re
import socket
import threading
import time
from datetime import datetime, timezone
from typing import List, Optional, Tuple

import pytest

from mummyx import Router

HOST = "127.0.0.1"
IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT$"
)
STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3}) ([\x21-\x7e][\x20-\x7e]*)$")
REASONS = {
    400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
    417: "Expectation Failed", 431: "Request Header Fields Too Large", 501: "Not Implemented",
    505: "HTTP Version Not Supported",
}
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"


def read_all(sock: socket.socket, timeout: float = 5.0) -> Tuple[bytes, bool]:
    """Reads until the server closes; returns (bytes, closed). closed is False on timeout."""
    sock.settimeout(0.25)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, True
        if not b:
            return data, True
        data += b
    return data, False


def split_responses(data: bytes) -> List[dict]:
    """Strictly splits a byte stream into Content-Length framed HTTP/1.1 responses."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {data[:300]!r}"
        lines = head.split(b"\r\n")
        m = STATUS_LINE.match(lines[0])
        assert m, f"bad status line {lines[0]!r}"
        headers: List[Tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            assert colon and name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name.decode().lower(), value.strip().decode("latin-1")))
        status = int(m.group(1))
        cls = [v for k, v in headers if k == "content-length"]
        if 100 <= status < 200 or status in (204, 304):
            n = 0
        else:
            assert len(cls) == 1 and cls[0].isdigit(), f"need one Content-Length: {head!r}"
            n = int(cls[0])
        assert len(rest) >= n, f"truncated body: {data[:300]!r}"
        out.append({"status": status, "reason": m.group(2).decode(), "headers": headers,
                    "body": rest[:n]})
        data = rest[n:]
    return out


def hget(resp: dict, name: str) -> List[str]:
    return [v for k, v in resp["headers"] if k == name]


def check_error_response(resp: dict, status: int) -> None:
    assert resp["status"] == status, resp
    assert resp["reason"] == REASONS[status], resp
    assert [v.lower() for v in hget(resp, "connection")] == ["close"], resp
    dates = hget(resp, "date")
    assert len(dates) == 1 and IMF_FIXDATE.match(dates[0]), resp
    when = email.utils.parsedate_to_datetime(dates[0])
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 10
    assert hget(resp, "content-length") == [str(len(resp["body"]))]


class Counter:
    """A plain handler that records every request it is given."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, str, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, request) -> None:
        with self.lock:
            self.calls.append((request.method, request.uri, request.body))
        request.respond(200, {"Content-Type": "text/plain"}, b"ok:" + request.uri.encode())


def exchange(port: int, data: bytes, *, byte_by_byte: bool = False,
             timeout: float = 5.0) -> Tuple[List[dict], bool]:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if byte_by_byte:
                for i in range(len(data)):
                    s.sendall(data[i:i + 1])
                    time.sleep(0.0005)
            else:
                s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before it has everything; what it sent still counts
        raw, closed = read_all(s, timeout)
    return split_responses(raw), closed


def h(*lines: str, version: str = "HTTP/1.1", method: str = "GET", target: str = "/",
      host: Optional[str] = "t", body: bytes = b"") -> bytes:
    out = [f"{method} {target} {version}"]
    if host is not None:
        out.append(f"Host: {host}")
    out.extend(lines)
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body


# (id, raw request, expected status). Every entry is a complete head (plus body where needed),
# so the SMUGGLED request that the tests append can only ever be read as a separate request.
BAD_REQUESTS = [
    # --- request line (RFC 9112 3) ---
    ("extra-token-after-version", b"GET / HTTP/1.1 x\r\nHost: t\r\n\r\n", 400),
    ("two-spaces-after-method", b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("two-spaces-before-version", b"GET /  HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("tab-separator", b"GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("no-version", b"GET /\r\nHost: t\r\n\r\n", 400),
    ("lowercase-http", b"GET / http/1.1\r\nHost: t\r\n\r\n", 400),
    ("version-no-minor", b"GET / HTTP/1\r\nHost: t\r\n\r\n", 400),
    ("version-two-digit-minor", b"GET / HTTP/1.10\r\nHost: t\r\n\r\n", 400),
    ("version-two-digit-major", b"GET / HTTP/10.1\r\nHost: t\r\n\r\n", 400),
    ("leading-space", b" GET / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("method-not-token", b"G@T / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("method-with-nul", b"GE\x00T / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("target-with-ctl", b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("target-with-del", b"GET /a\x7fb HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("target-non-ascii", "GET /\u00e9 HTTP/1.1\r\nHost: t\r\n\r\n".encode("latin-1"), 400),
    ("target-not-a-form", b"GET foo HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("request-line-bare-lf", b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400),
    ("request-line-bare-cr", b"GET / HTTP/1.1\rHost: t\r\n\r\n", 400),
    # --- Host (RFC 9112 3.2) ---
    ("missing-host-1.1", h(host=None), 400),
    ("two-hosts-same", h("Host: t"), 400),
    ("two-hosts-different", h("Host: other"), 400),
    ("two-hosts-http10", h("Host: t", version="HTTP/1.0"), 400),
    ("host-with-space", h(host="a b"), 400),
    ("host-with-slash", h(host="a/b"), 400),
    ("host-with-at", h(host="user@evil"), 400),
    # --- field syntax (RFC 9112 5) ---
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    ("tab-before-colon", h("X-A\t: b"), 400),
    ("space-before-colon-other", h("Content-Length : 0"), 400),
    ("obs-fold-space", h("X-A: b", " continued"), 400),
    ("obs-fold-tab", h("X-A: b", "\tcontinued"), 400),
    ("first-field-starts-with-space", b"GET / HTTP/1.1\r\n Host: t\r\n\r\n", 400),
    ("empty-field-name", h(": value"), 400),
    ("no-colon", h("JustAName"), 400),
    ("field-name-with-space", h("X A: b"), 400),
    ("bare-cr-in-value", h("X-A: b\rc"), 400),
    ("bare-lf-in-value", h("X-A: b\nc"), 400),
    ("bare-lf-line-end", b"GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n", 400),
    ("bare-lf-head-end", b"GET / HTTP/1.1\r\nHost: t\r\n\n", 400),
    ("bare-cr-head-end", b"GET / HTTP/1.1\r\nHost: t\r\n\rX", 400),
    ("nul-in-value", h("X-A: b\x00c"), 400),
    ("nul-in-name", h("X-\x00A: b"), 400),
    ("ctl-0x01-in-value", h("X-A: \x01"), 400),
    ("esc-in-value", h("X-A: a\x1b[31m"), 400),
    ("del-in-value", h("X-A: a\x7f"), 400),
    ("vt-in-value", h("X-A: a\x0bb"), 400),
    ("non-ascii-in-name", h("X-\u00e9: b"), 400),
    # --- Content-Length (RFC 9112 6.3) ---
    ("cl-plus", h("Content-Length: +5", method="POST", body=b"hello"), 400),
    ("cl-space-inside", h("Content-Length: 5 5", method="POST", body=b"hello"), 400),
    ("cl-hex", h("Content-Length: 0x5", method="POST", body=b"hello"), 400),
    ("cl-negative", h("Content-Length: -1", method="POST"), 400),
    ("cl-empty", h("Content-Length: ", method="POST"), 400),
    ("cl-letters", h("Content-Length: five", method="POST", body=b"hello"), 400),
    ("cl-trailing-junk", h("Content-Length: 5a", method="POST", body=b"hello"), 400),
    ("cl-decimal", h("Content-Length: 5.0", method="POST", body=b"hello"), 400),
    ("cl-list", h("Content-Length: 5, 5", method="POST", body=b"hello"), 400),
    ("cl-repeated-equal", h("Content-Length: 5", "Content-Length: 5", method="POST",
                            body=b"hello"), 400),
    ("cl-repeated-different", h("Content-Length: 5", "Content-Length: 6", method="POST",
                                body=b"hello!"), 400),
    # --- Transfer-Encoding (RFC 9112 6.1, 6.3) ---
    ("cl-and-te", h("Content-Length: 5", "Transfer-Encoding: chunked", method="POST",
                    body=b"0\r\n\r\n"), 400),
    ("te-and-cl", h("Transfer-Encoding: chunked", "Content-Length: 5", method="POST",
                    body=b"0\r\n\r\n"), 400),
    ("te-gzip-only", h("Transfer-Encoding: gzip", method="POST", body=b"0\r\n\r\n"), 400),
    ("te-identity", h("Transfer-Encoding: identity", method="POST", body=b"0\r\n\r\n"), 400),
    ("te-chunked-then-gzip", h("Transfer-Encoding: chunked, gzip", method="POST",
                               body=b"0\r\n\r\n"), 400),
    ("te-chunked-twice", h("Transfer-Encoding: chunked, chunked", method="POST",
                           body=b"0\r\n\r\n"), 400),
    ("te-empty", h("Transfer-Encoding: ", method="POST", body=b"0\r\n\r\n"), 400),
    ("te-chunked-with-param", h("Transfer-Encoding: chunked;q=1", method="POST",
                                body=b"0\r\n\r\n"), 400),
    ("te-on-http10", h("Transfer-Encoding: chunked", method="POST", version="HTTP/1.0",
                       body=b"0\r\n\r\n"), 400),
    ("te-chunked-two-fields", h("Transfer-Encoding: chunked", "Transfer-Encoding: chunked",
                                method="POST", body=b"0\r\n\r\n"), 400),
    ("te-xchunked", h("Transfer-Encoding: xchunked", method="POST", body=b"0\r\n\r\n"), 400),
    ("te-gzip-chunked", h("Transfer-Encoding: gzip, chunked", method="POST",
                          body=b"0\r\n\r\n"), 501),
    ("te-split-gzip-then-chunked", h("Transfer-Encoding: gzip", "Transfer-Encoding: chunked",
                                     method="POST", body=b"0\r\n\r\n"), 501),
    # --- chunked framing (RFC 9112 7.1) ---
    ("chunk-size-not-hex", h("Transfer-Encoding: chunked", method="POST",
                             body=b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-negative", h("Transfer-Encoding: chunked", method="POST",
                              body=b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-0x", h("Transfer-Encoding: chunked", method="POST",
                        body=b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-leading-space", h("Transfer-Encoding: chunked", method="POST",
                                   body=b" 5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-empty", h("Transfer-Encoding: chunked", method="POST",
                           body=b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-overflow", h("Transfer-Encoding: chunked", method="POST",
                              body=b"10000000000000000\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-overflow-long", h("Transfer-Encoding: chunked", method="POST",
                                   body=b"f" * 40 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-bare-lf", h("Transfer-Encoding: chunked", method="POST",
                             body=b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-data-too-long", h("Transfer-Encoding: chunked", method="POST",
                              body=b"5\r\nhelloXX\r\n0\r\n\r\n"), 400),
    ("chunk-data-bare-lf", h("Transfer-Encoding: chunked", method="POST",
                             body=b"5\r\nhello\n0\r\n\r\n"), 400),
    ("chunk-ext-bad-char", h("Transfer-Encoding: chunked", method="POST",
                             body=b"5;a@b\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-unterminated-quote", h("Transfer-Encoding: chunked", method="POST",
                                       body=b'5;a="x\r\nhello\r\n0\r\n\r\n'), 400),
    ("chunk-trailer-obs-fold", h("Transfer-Encoding: chunked", method="POST",
                                 body=b"0\r\nT: a\r\n b\r\n\r\n"), 400),
    ("chunk-trailer-no-colon", h("Transfer-Encoding: chunked", method="POST",
                                 body=b"0\r\nTrailer\r\n\r\n"), 400),
    # --- versions (RFC 9110 6.2) ---
    ("http-1.2", h(version="HTTP/1.2"), 505),
    ("http-2.0", h(version="HTTP/2.0"), 505),
    ("http-3.0", h(version="HTTP/3.0"), 505),
    ("http-0.9", h(version="HTTP/0.9"), 505),
    # --- targets a handler must never see (RFC 9112 3.2: no fragment; no NUL in the path) ---
    ("fragment-in-target", h(target="/objects/5#x"), 400),
    ("fragment-after-query", h(target="/a?b=1#frag"), 400),
    ("fragment-absolute-form", h(target="http://t/a#x"), 400),
    ("nul-escape-in-path", h(target="/files/a%00.txt"), 400),
    ("nul-escape-in-segment-end", h(target="/a%00"), 400),
    # --- expectations (RFC 9110 10.1.1) ---
    ("expect-unknown", h("Expect: something-else"), 417),
    # --- garbage ---
    ("tls-client-hello", bytes.fromhex("1603010200010001fc0303") + bytes(range(32)) +
     b"\r\n\r\n", 400),
    ("json", b'{"jsonrpc": "2.0", "method": "x"}\r\n\r\n', 400),
    ("words", b"hello world\r\n\r\n", 400),
    ("binary", bytes([0xff, 0xfe, 0x00, 0x80, 0x90]) + b"\r\n\r\n", 400),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
]

IDS = [c[0] for c in BAD_REQUESTS]


@pytest.fixture
def counted(serve):
    counter = Counter()
    server = serve(counter, workers=2)
    return server, counter


@pytest.mark.parametrize("name,data,status", BAD_REQUESTS, ids=IDS)
def test_bad_request_answered_then_closed(counted, name, data, status):
    server, counter = counted
    responses, closed = exchange(server.port, data + SMUGGLED)
    assert len(responses) == 1, responses
    check_error_response(responses[0], status)
    assert closed, "the server must close the connection after an error response"
    time.sleep(0.05)
    assert counter.calls == [], "a rejected request, or bytes after it, reached the handler"


# Feeding the same bad bytes one at a time gives the same verdict (the parser decides at the byte
# that proves the error, whatever the split).
BYTEWISE = [c for c in BAD_REQUESTS if c[0] in {
    "two-spaces-after-method", "lowercase-http", "request-line-bare-lf", "missing-host-1.1",
    "two-hosts-same", "space-before-colon", "obs-fold-space", "bare-cr-in-value", "nul-in-value",
    "cl-plus", "cl-repeated-equal", "cl-and-te", "te-gzip-only", "te-gzip-chunked",
    "chunk-size-not-hex", "chunk-size-overflow", "chunk-data-too-long", "http-1.2", "http-2.0",
    "expect-unknown", "words",
}]


@pytest.mark.parametrize("name,data,status", BYTEWISE, ids=[c[0] for c in BYTEWISE])
def test_bad_request_byte_by_byte(counted, name, data, status):
    server, counter = counted
    responses, closed = exchange(server.port, data, byte_by_byte=True)
    assert len(responses) == 1, responses
    check_error_response(responses[0], status)
    assert closed
    assert counter.calls == []


# Valid requests near the rules above: these must NOT be rejected.
GOOD_REQUESTS = [
    ("http10-without-host", h(version="HTTP/1.0", host=None), b""),
    ("empty-host", h(host=""), b""),
    ("host-with-port", h(host="example.com:8080"), b""),
    ("host-ipv6-literal", h(host="[::1]:80"), b""),
    ("ows-around-value", h("X-A: \t b \t"), b""),
    ("no-space-after-colon", h("X-A:b"), b""),
    ("obs-text-in-value", h("X-A: caf\u00e9"), b""),
    ("tab-in-value", h("X-A: a\tb"), b""),
    ("cl-zero", h("Content-Length: 0", method="POST"), b""),
    ("cl-leading-zeros", h("Content-Length: 005", method="POST", body=b"hello"), b"hello"),
    ("te-chunked-uppercase", h("Transfer-Encoding: CHUNKED", method="POST",
                               body=b"5\r\nhello\r\n0\r\n\r\n"), b"hello"),
    ("chunk-size-uppercase-hex", h("Transfer-Encoding: chunked", method="POST",
                                   body=b"A\r\n0123456789\r\n0\r\n\r\n"), b"0123456789"),
    ("chunk-size-many-leading-zeros", h("Transfer-Encoding: chunked", method="POST",
                                        body=b"0000000000000000000005\r\nhello\r\n0\r\n\r\n"),
     b"hello"),
    ("cl-with-ows", h("Content-Length:   5  ", method="POST", body=b"hello"), b"hello"),
    ("te-chunked-with-ows", h("Transfer-Encoding:  chunked ", method="POST",
                              body=b"2\r\nhi\r\n0\r\n\r\n"), b"hi"),
    ("expect-continue-with-body-sent", h("Expect: 100-continue", "Content-Length: 2",
                                         method="POST", body=b"hi"), b"hi"),
    ("unknown-method", h(method="BREW"), b""),
    ("header-empty-value", h("X-Empty:"), b""),
    ("nul-escape-in-query", h(target="/?q=%00"), b""),  # the query is the handler's to judge
    ("percent-zero-other", h(target="/a%0a%20%01"), b""),
]


@pytest.mark.parametrize("name,data,body", GOOD_REQUESTS, ids=[c[0] for c in GOOD_REQUESTS])
def test_near_miss_requests_are_accepted(counted, name, data, body):
    server, counter = counted
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        s.sendall(data + b"GET /second HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        raw, closed = read_all(s)
    responses = split_responses(raw)
    statuses = [r["status"] for r in responses]
    if b" HTTP/1.0\r\n" in data and b"keep-alive" not in data:
        assert statuses == [200] and closed  # 1.0 without keep-alive: one request only
    else:
        assert statuses == [200, 200] and closed
        assert responses[1]["body"] == b"ok:/second"
    first = [c for c in counter.calls if c[1] != "/second"]  # the two may run in either order
    assert len(first) == 1 and first[0][2] == body


# ------------------------------------------------------------------------------------------------
# Size limits: 414 and 431
# ------------------------------------------------------------------------------------------------

def test_target_too_long_414_default(counted):
    server, counter = counted
    responses, closed = exchange(server.port, h(target="/" + "a" * 9000) + SMUGGLED)
    assert len(responses) == 1
    check_error_response(responses[0], 414)
    assert closed and counter.calls == []


def test_target_long_but_allowed_default(counted):
    server, counter = counted
    target = "/" + "a" * 7000
    responses, closed = exchange(server.port, h("Connection: close", target=target))
    assert [r["status"] for r in responses] == [200]
    assert counter.calls[0][1] == target


def test_target_too_long_414_small_limit(serve):
    counter = Counter()
    server = serve(counter, max_headers_len=1024)
    responses, closed = exchange(server.port, h(target="/" + "b" * 1000) + SMUGGLED)
    assert len(responses) == 1
    check_error_response(responses[0], 414)
    assert closed and counter.calls == []
    # Only the head's start was needed to decide: a target that never ends gets 414 too.
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        s.sendall(b"GET /" + b"c" * 2000)
        raw, closed = read_all(s)
    check_error_response(split_responses(raw)[0], 414)


def test_headers_too_large_431_default(counted):
    server, counter = counted
    responses, closed = exchange(server.port, h("X-Big: " + "v" * 9000) + SMUGGLED)
    assert len(responses) == 1
    check_error_response(responses[0], 431)
    assert closed and counter.calls == []


def test_many_headers_total_over_default_431(counted):
    server, counter = counted
    lines = [f"X-H{i}: " + "v" * 90 for i in range(90)]  # ~9 KiB in total
    responses, closed = exchange(server.port, h(*lines) + SMUGGLED)
    assert len(responses) == 1
    check_error_response(responses[0], 431)
    assert closed and counter.calls == []


def test_headers_just_under_default_accepted(counted):
    server, counter = counted
    data = h("X-Big: " + "v" * 7900, "Connection: close")
    assert len(data) < 8192
    responses, closed = exchange(server.port, data)
    assert [r["status"] for r in responses] == [200]


def test_headers_over_small_limit_431(serve):
    counter = Counter()
    server = serve(counter, max_headers_len=1024)
    responses, closed = exchange(server.port, h("X-Big: " + "v" * 1100) + SMUGGLED)
    assert len(responses) == 1
    check_error_response(responses[0], 431)
    assert closed and counter.calls == []
    # A head that fits the limit is fine.
    responses, closed = exchange(server.port, h("X-Big: " + "v" * 900, "Connection: close"))
    assert [r["status"] for r in responses] == [200]
    # A head that never ends is cut off at the limit, not buffered forever.
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: " + b"e" * 3000)
        raw, closed = read_all(s)
    check_error_response(split_responses(raw)[0], 431)
    assert closed


def test_too_many_header_fields_431(counted):
    server, counter = counted
    lines = [f"X-{i}: v" for i in range(300)]  # small, but far too many fields
    responses, closed = exchange(server.port, h(*lines) + SMUGGLED)
    assert len(responses) == 1
    check_error_response(responses[0], 431)
    assert closed and counter.calls == []


# ------------------------------------------------------------------------------------------------
# Smuggling and sequencing
# ------------------------------------------------------------------------------------------------

def test_cl_te_smuggling_never_reaches_handler(counted):
    server, counter = counted
    attack = (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED)
    responses, closed = exchange(server.port, attack)
    assert [r["status"] for r in responses] == [400]
    assert closed
    time.sleep(0.05)
    assert counter.calls == []


def test_bad_request_after_good_ones_on_keep_alive(counted):
    server, counter = counted
    data = h(target="/one") + h(target="/two") + b"GET /three HTTP/1.1\r\nHost : t\r\n\r\n" \
        + SMUGGLED
    responses, closed = exchange(server.port, data)
    assert [r["status"] for r in responses] == [200, 200, 400]
    assert responses[0]["body"] == b"ok:/one" and responses[1]["body"] == b"ok:/two"
    check_error_response(responses[2], 400)
    assert closed
    time.sleep(0.05)
    assert sorted(c[1] for c in counter.calls) == ["/one", "/two"]


def test_error_waits_for_slow_earlier_response(serve):
    router = Router()
    calls: List[str] = []

    @router.get("/slow")
    def slow(request):
        time.sleep(0.3)
        calls.append("slow")
        request.respond(200, body=b"slow")

    @router.get("/smuggled")
    def smuggled(request):
        calls.append("smuggled")
        request.respond(200, body=b"smuggled")

    server = serve(router, workers=2)
    data = h(target="/slow") + h(version="HTTP/2.0") + SMUGGLED
    responses, closed = exchange(server.port, data)
    assert [r["status"] for r in responses] == [200, 505]
    assert responses[0]["body"] == b"slow"
    check_error_response(responses[1], 505)
    assert closed
    assert calls == ["slow"]


def test_oversized_body_bytes_never_parsed(serve):
    counter = Counter()
    server = serve(counter, max_body_len=10)
    body = SMUGGLED * 3
    data = h(f"Content-Length: {len(body)}", method="POST", body=body)
    responses, closed = exchange(server.port, data)
    assert len(responses) == 1
    check_error_response(responses[0], 413)
    assert closed
    time.sleep(0.05)
    assert counter.calls == []


def test_chunked_oversized_then_smuggle(serve):
    counter = Counter()
    server = serve(counter, max_body_len=10)
    data = h("Transfer-Encoding: chunked", method="POST",
             body=b"20\r\n" + b"x" * 32 + b"\r\n0\r\n\r\n") + SMUGGLED
    responses, closed = exchange(server.port, data)
    assert len(responses) == 1
    check_error_response(responses[0], 413)
    assert closed
    time.sleep(0.05)
    assert counter.calls == []


def test_bad_chunk_after_valid_chunks(counted):
    server, counter = counted
    data = h("Transfer-Encoding: chunked", method="POST",
             body=b"3\r\nabc\r\n3\r\ndefXX\r\n0\r\n\r\n") + SMUGGLED
    responses, closed = exchange(server.port, data)
    assert len(responses) == 1
    check_error_response(responses[0], 400)
    assert closed and counter.calls == []


@pytest.mark.parametrize("seed", range(8))
def test_random_garbage_gets_400_or_close(counted, seed):
    """Random bytes: never a crash or hang, and never a 2xx; any answer is a 4xx/5xx with close."""
    server, counter = counted
    rng = random.Random(seed)
    garbage = rng.randbytes(rng.randint(1, 400)) + b"\r\n\r\n"
    responses, closed = exchange(server.port, garbage, timeout=4)
    assert closed or not responses  # a prefix that could still be valid may just wait
    for r in responses:
        assert 400 <= r["status"] < 600
        assert [v.lower() for v in hget(r, "connection")] == ["close"]
    assert counter.calls == []
    # The server is still healthy.
    responses, _ = exchange(server.port, h("Connection: close"))
    assert [r["status"] for r in responses] == [200]


def test_server_survives_error_storm(counted):
    server, counter = counted
    for name, data, status in BAD_REQUESTS[::3]:
        responses, closed = exchange(server.port, data)
        assert [r["status"] for r in responses] == [status], name
    responses, closed = exchange(server.port, h("Connection: close"))
    assert [r["status"] for r in responses] == [200]
    assert len(counter.calls) == 1


# ------------------------------------------------------------------------------------------------
# Slow bodies: body_timeout (a body must bring MX_BODY_MIN_BYTES = 1 KiB per period)


def _slow_body_server(serve, **options):
    router = Router()
    router.post("/", lambda request: request.respond(200, body=str(len(request.body))))
    return serve(router, **options)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_stalled_body_gets_408(serve, framing):
    server = _slow_body_server(serve, body_timeout=0.4)
    if framing == "chunked":
        head = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
    else:
        head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab"
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        t0 = time.monotonic()
        s.sendall(head)
        raw, closed = read_all(s, timeout=3)
        elapsed = time.monotonic() - t0
    responses = split_responses(raw)
    assert [r["status"] for r in responses] == [408] and closed
    assert 0.3 < elapsed < 2.0


def test_trickled_body_is_cut_off(serve):
    """A few bytes per period never satisfy the minimum rate (slow-POST attacks)."""
    server = _slow_body_server(serve, body_timeout=0.3)
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        got_408 = False
        for _ in range(20):
            try:
                s.sendall(b"x" * 10)
            except OSError:
                break
            time.sleep(0.1)
        raw, closed = read_all(s, timeout=2)
        got_408 = raw.startswith(b"HTTP/1.1 408 ")
    assert got_408 and closed


def test_steady_body_is_not_cut_off(serve):
    """A slow but steady upload (over 1 KiB per period) completes."""
    server = _slow_body_server(serve, body_timeout=0.3, max_body_len=100000)
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\nConnection: close\r\n\r\n")
        for _ in range(10):
            s.sendall(b"y" * 2000)
            time.sleep(0.1)
        raw, closed = read_all(s, timeout=3)
    responses = split_responses(raw)
    assert [r["status"] for r in responses] == [200]
    assert responses[0]["body"] == b"20000"


def test_body_timer_waits_for_100_continue(serve):
    """A client waiting for 100 Continue is not slow; the timer only runs once it may send."""
    server = _slow_body_server(serve, body_timeout=0.3)
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
                  b"Connection: close\r\n\r\n")
        s.settimeout(2)
        first = s.recv(100)
        assert first.startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"data")
        raw, closed = read_all(s, timeout=3)
    assert (first + raw).count(b"HTTP/1.1 200 OK") == 1
