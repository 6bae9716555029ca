"""Hypothesis properties against one live server per module.

1. A valid request split into arbitrary pieces parses exactly as when sent whole (and as sent).
2. Random bytes never crash the server: they get a 4xx (or 501/505) or a plain close, and the
   server still answers a normal request afterwards.
3. Query strings and percent-encoded paths round-trip through request.query and request.path.
"""
from __future__ import annotations

import base64
import json
import socket
import string
import time
import urllib.parse
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mummyx.testing import running

from conftest import parse_responses

TIMEOUT = 5.0
SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def echo(request) -> Dict[str, Any]:
    return {
        "method": request.method,
        "uri": request.uri,
        "path": request.path,
        "query": [list(p) for p in request.query.items()],
        "headers": [list(p) for p in request.headers.items()],
        "body": base64.b64encode(request.body).decode(),
        "version": request.http_version,
    }


@pytest.fixture(scope="module")
def server():
    with running(echo, workers=4, header_timeout=5.0) as srv:
        yield srv


# ---- socket helpers ------------------------------------------------------------------------

def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _read_until_close(s: socket.socket, timeout: float = TIMEOUT) -> Tuple[bytes, bool]:
    """Returns (bytes, closed): closed is False when the deadline passed first."""
    chunks: List[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), False
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not b:
            return b"".join(chunks), True
        chunks.append(b)


def send_pieces(port: int, pieces: List[bytes], half_close: bool = False) -> Tuple[bytes, bool]:
    with _connect(port) as s:
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(0.002)  # let each piece arrive as its own segment
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server already answered and closed
        if half_close:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return _read_until_close(s)


def split(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a] or [data]


def healthy(port: int) -> None:
    data, closed = send_pieces(port, [b"GET /health?x=1 HTTP/1.1\r\nHost: t\r\n"
                                      b"Connection: close\r\n\r\n"])
    assert closed
    r = parse_responses(data)
    assert len(r) == 1 and r[0]["status"] == 200
    assert json.loads(r[0]["body"])["path"] == "/health"


# ---- strategies ----------------------------------------------------------------------------

TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
PCHAR = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"

methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE", "HEAD"])
segment = st.one_of(
    st.text(PCHAR, min_size=0, max_size=12),
    # %00 is refused (400): a NUL never reaches a handler's path
    st.binary(min_size=1, max_size=4).filter(lambda b: 0 not in b)
    .map(lambda b: "".join(f"%{x:02X}" for x in b)),
)
paths = st.lists(segment, min_size=1, max_size=6).map(lambda segs: "/" + "/".join(segs))
queries = st.one_of(
    st.just(""),
    st.lists(st.tuples(st.text(PCHAR.replace("&", "").replace("=", ""), min_size=1, max_size=8),
                       st.text(PCHAR.replace("&", ""), max_size=8)),
             min_size=1, max_size=4)
    .map(lambda kv: "?" + "&".join(f"{k}={v}" for k, v in kv)),
)
header_names = st.text(TCHAR, min_size=1, max_size=16).map(lambda n: "X-" + n)
header_values = st.builds(
    lambda words: " ".join(words),
    st.lists(st.text(VCHAR, min_size=1, max_size=12), min_size=0, max_size=4),
)
headers = st.lists(st.tuples(header_names, header_values), max_size=8)
bodies = st.binary(max_size=1500)


@st.composite
def requests(draw) -> Tuple[bytes, Dict[str, Any]]:
    """A valid HTTP/1.1 request and what the server should report for it."""
    method = draw(methods)
    target = draw(paths) + draw(queries)
    hdrs = draw(headers)
    body = draw(bodies) if method != "HEAD" else b""
    chunked = bool(body) and draw(st.booleans())
    lines = [f"{method} {target} HTTP/1.1", "Host: example.test"]
    lines += [f"{n}: {v}" for n, v in hdrs]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 400), min_size=1, max_size=6))
        payload, i, k = b"", 0, 0
        while i < len(body):
            n = sizes[k % len(sizes)]
            piece = body[i:i + n]
            ext = ";ext=v" if draw(st.booleans()) else ""
            size = f"{len(piece):x}" if k % 2 else f"{len(piece):X}"
            payload += f"{size}{ext}\r\n".encode() + piece + b"\r\n"
            i += n
            k += 1
        payload += b"0\r\nX-Trailer: t\r\n\r\n" if draw(st.booleans()) else b"0\r\n\r\n"
    else:
        if body or draw(st.booleans()):
            lines.append(f"Content-Length: {len(body)}")
        payload = body
    lines.append("Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
    expect = {"method": method, "uri": target, "headers": hdrs, "body": body}
    return raw, expect


def _check_echo(response: Dict[str, Any], expect: Dict[str, Any]) -> Dict[str, Any]:
    assert response["status"] == 200, response
    if expect["method"] == "HEAD":
        return {}
    seen = json.loads(response["body"])
    assert seen["method"] == expect["method"]
    assert seen["uri"] == expect["uri"]
    assert base64.b64decode(seen["body"]) == expect["body"]
    ours = [[n, v] for n, v in seen["headers"] if n.lower().startswith("x-") and n != "X-Trailer"]
    assert [[n.lower(), v] for n, v in ours] == [[n.lower(), v] for n, v in expect["headers"]]
    return seen


# ---- property 1: splitting does not change parsing ----------------------------------------

@SETTINGS
@given(req=requests(), cuts=st.lists(st.integers(0, 1 << 16), max_size=8))
def test_split_request_parses_like_whole(server, req, cuts):
    raw, expect = req
    whole, closed = send_pieces(server.port, [raw])
    assert closed
    pieces = split(raw, cuts)
    parts, closed2 = send_pieces(server.port, pieces)
    assert closed2
    r_whole = parse_responses(whole)
    r_parts = parse_responses(parts)
    assert len(r_whole) == len(r_parts) == 1
    assert r_whole[0]["status"] == r_parts[0]["status"] == 200
    assert r_whole[0]["body"] == r_parts[0]["body"]
    _check_echo(r_parts[0], expect)
    if expect["method"] == "HEAD":
        assert r_whole[0]["headers"]["content-length"] == r_parts[0]["headers"]["content-length"]


@SETTINGS
@given(a=requests(), b=requests(), cuts=st.lists(st.integers(0, 1 << 16), max_size=8))
def test_split_pipelined_requests_parse_like_separate(server, a, b, cuts):
    raw_a, exp_a = a
    raw_b, exp_b = b
    keep_a = raw_a.replace(b"\r\nConnection: close\r\n", b"\r\n", 1)  # keep the connection open
    data, closed = send_pieces(server.port, split(keep_a + raw_b, cuts))
    assert closed
    if exp_a["method"] == "HEAD":  # a HEAD response has Content-Length but no body
        head_end = data.index(b"\r\n\r\n") + 4
        responses = parse_responses(data[:head_end]
                                    .replace(b"\r\nContent-Length:", b"\r\nX-Was-Length:")
                                    .replace(b"\r\ncontent-length:", b"\r\nX-Was-Length:"))
        responses += parse_responses(data[head_end:])
    else:
        responses = parse_responses(data)
    assert len(responses) == 2
    _check_echo(responses[0], exp_a)
    _check_echo(responses[1], exp_b)


# ---- property 2: garbage never hurts -------------------------------------------------------

PREFIXES = [
    b"", b"GET ", b"GET / ", b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n",
    b"GET / HTTP/1.1\r\nX-A: b\r\n", b"PUT /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n",
    b"HTTP/1.1 200 OK\r\n", b"\r\n\r\n", b"GET /\x00 HTTP/1.1\r\n", b"G\xffT / HTTP/1.1\r\n",
    b"GET / HTTP/9.9\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n",
]
garbage = st.one_of(
    st.binary(max_size=600),
    st.tuples(st.sampled_from(PREFIXES), st.binary(max_size=300)).map(lambda t: t[0] + t[1]),
    st.text(string.printable + "\x00\x7f\u00e9", max_size=300).map(lambda t: t.encode("utf-8")),
    st.lists(st.sampled_from([b"GET", b" ", b"/", b"HTTP/1.1", b"\r\n", b":", b"Host", b"\n",
                              b"\r", b"\t", b"Content-Length", b"Transfer-Encoding", b"chunked",
                              b"0", b"-1", b"ffffffffffffffffffff", b"\x00", b"\xff"]),
             max_size=40).map(b"".join),
)


def _is_acceptable_error_reply(data: bytes) -> bool:
    if data == b"":
        return True
    if not data.startswith(b"HTTP/1.1 "):
        return False
    status = data[9:12]
    return status.startswith(b"4") or status in (b"501", b"505")


def _may_hold_valid_request(data: bytes) -> bool:
    """True when the bytes might contain a complete valid request (a Host header, or HTTP/1.0,
    which needs none): then a success reply is right. Otherwise every head is malformed (an
    HTTP/1.1 request without Host is a 400), so only an error reply or a close is acceptable."""
    lowered = data.lower()
    return b"host" in lowered or b"http/1.0" in lowered


def _check_reply(data: bytes, reply: bytes) -> None:
    if _may_hold_valid_request(data):
        assert reply == b"" or reply.startswith(b"HTTP/1.1 "), (data[:120], reply[:200])
        return
    assert _is_acceptable_error_reply(reply), (data[:120], reply[:200])
    if reply:
        # exactly one complete error response, then the close
        assert len(parse_responses(reply)) == 1, reply[:300]


@SETTINGS
@given(data=garbage, cuts=st.lists(st.integers(0, 1 << 16), max_size=3))
def test_random_bytes_get_4xx_or_close(server, data, cuts):
    """Garbage, then EOF from the client: an error reply or a plain close, promptly."""
    reply, closed = send_pieces(server.port, split(data, cuts), half_close=True)
    assert closed, f"connection not closed within {TIMEOUT}s after garbage + EOF: {data[:80]!r}"
    _check_reply(data, reply)
    healthy(server.port)


@SETTINGS
@given(data=garbage)
def test_random_head_is_answered_without_waiting_for_eof(server, data):
    """Garbage ending in a blank line is a complete (malformed) head: the server answers it
    with an error or closes, without waiting for the client to go away."""
    data = data.replace(b"\r\n\r\n", b"") + b"\r\n\r\n"
    assume(data.strip(b"\r\n") != b"")  # only empty lines: the server may wait for a request
    with _connect(server.port) as s:
        s.sendall(data)
        reply, closed = _read_until_close(s, timeout=2.0)
    if _may_hold_valid_request(data):
        # a valid head may be waiting for its body; anything but a crash is fine
        assert reply == b"" or reply.startswith(b"HTTP/1.1 ")
    else:
        assert closed, f"no close within 2 s after a malformed head: {data[:120]!r} -> {reply[:120]!r}"
        _check_reply(data, reply)
    healthy(server.port)


# ---- property 3: query and path round-trips ------------------------------------------------

query_pairs = st.lists(
    st.tuples(st.text(min_size=1, max_size=10).filter(lambda s: "\x00" not in s),
              st.text(max_size=10).filter(lambda s: "\x00" not in s)),
    max_size=5)


@SETTINGS
@given(pairs=query_pairs)
def test_query_round_trip(server, pairs):
    target = "/q?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote_plus)
    raw = f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
    data, closed = send_pieces(server.port, [raw])
    assert closed
    r = parse_responses(data)[0]
    assert r["status"] == 200
    seen = json.loads(r["body"])
    assert seen["query"] == [list(p) for p in pairs]


path_segments = st.lists(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8),
    min_size=1, max_size=5)


@SETTINGS
@given(segs=path_segments)
def test_path_percent_decoding_round_trip(server, segs):
    target = "/" + "/".join(urllib.parse.quote(s, safe="") for s in segs)
    raw = f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
    data, closed = send_pieces(server.port, [raw])
    assert closed
    r = parse_responses(data)[0]
    assert r["status"] == 200
    seen = json.loads(r["body"])
    assert seen["path"] == "/" + "/".join(segs)
    assert seen["uri"] == target
