"""WebSocket (RFC 6455, RFC 7692): request.upgrade_to_websocket(), events, frames, closing.

Two kinds of client: the `websockets` library (a conforming peer, for the happy paths and
compression) and a raw socket with the tiny frame codec below (for everything a conforming
client would never send: unmasked frames, reserved bits, bad opcodes, broken UTF-8, ...).
Every wait is bounded; the slowest tests use timeouts of a fraction of a second.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import struct
import threading
import time
import zlib
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import pytest
from websockets.exceptions import ConnectionClosed as WSClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from mummyx import (ConnectionClosed, HandshakeRefused, Message, MessageKind, Router, WebSocket,
                    WebSocketEvent)

HOST = "127.0.0.1"
TIMEOUT = 5.0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OPEN, MESSAGE, ERROR, CLOSE = (WebSocketEvent.OPEN, WebSocketEvent.MESSAGE, WebSocketEvent.ERROR,
                               WebSocketEvent.CLOSE)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# ------------------------------------------------------------------------------------------------
# Recording what the server's handler sees
# ------------------------------------------------------------------------------------------------

class Recorder:
    """A websocket_handler that records (websocket, event, message) and optionally echoes.

    Also checks the delivery contract as it goes: no two events of one connection run at once,
    nothing follows CLOSE.
    """

    def __init__(self, echo: bool = True, on_event: Optional[Callable[..., Any]] = None) -> None:
        self.echo = echo
        self.on_event = on_event
        self.events: List[Tuple[WebSocket, WebSocketEvent, Optional[Message]]] = []
        self.violations: List[str] = []
        self._active: Dict[int, int] = {}
        self._cond = threading.Condition()

    def __call__(self, ws: WebSocket, event: WebSocketEvent, message: Optional[Message]) -> None:
        with self._cond:
            if self._active.get(ws.id):
                self.violations.append(f"two events of connection {ws.id} at once")
            self._active[ws.id] = 1
            if any(w is ws and e is CLOSE for w, e, _ in self.events):
                self.violations.append(f"{event} after CLOSE on connection {ws.id}")
            self.events.append((ws, event, message))
            self._cond.notify_all()
        try:
            if self.on_event is not None:
                self.on_event(ws, event, message)
            if (self.echo and event is MESSAGE and message is not None
                    and message.kind in (MessageKind.TEXT, MessageKind.BINARY)):
                ws.send(message.data)
        finally:
            with self._cond:
                self._active[ws.id] = 0

    def wait(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_events(self, event: WebSocketEvent, count: int = 1, timeout: float = TIMEOUT) -> bool:
        return self.wait(lambda: self.count(event) >= count, timeout)

    def count(self, event: WebSocketEvent) -> int:
        return sum(1 for _, e, _ in self.events if e is event)

    def of(self, ws: WebSocket) -> List[Tuple[WebSocketEvent, Optional[Message]]]:
        with self._cond:
            return [(e, m) for w, e, m in self.events if w is ws]

    def sockets(self) -> List[WebSocket]:
        with self._cond:
            seen: List[WebSocket] = []
            for w, _, _ in self.events:
                if not any(w is s for s in seen):
                    seen.append(w)
            return seen

    def only(self) -> WebSocket:
        socks = self.sockets()
        assert len(socks) == 1, socks
        return socks[0]


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Polls predicate (for conditions no Recorder event announces)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def ws_router(path: str = "/ws", **upgrade: Any) -> Router:
    """A router whose GET `path` upgrades (with upgrade_to_websocket(**upgrade))."""
    router = Router()

    @router.get(path)
    def upgrade_handler(request: Any) -> None:
        request.upgrade_to_websocket(**upgrade)

    @router.get("/")
    def index(request: Any) -> None:
        request.respond(200, {"Content-Type": "text/plain"}, "plain http")

    return router


def ws_url(server: Any, path: str = "/ws") -> str:
    return f"ws://{HOST}:{server.port}{path}"


def client(server: Any, path: str = "/ws", **kw: Any) -> Any:
    kw.setdefault("open_timeout", TIMEOUT)
    kw.setdefault("close_timeout", TIMEOUT)
    return connect(ws_url(server, path), **kw)


# ------------------------------------------------------------------------------------------------
# A tiny raw-socket WebSocket client: masked frames out, unmasked frames in
# ------------------------------------------------------------------------------------------------

def mask_bytes(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 mask: bool = True, length_bits: Optional[int] = None) -> bytes:
    """One client frame. rsv: the 3 reserved bits (4 = RSV1). length_bits forces 7, 16 or 64."""
    n = len(payload)
    if length_bits is None:
        length_bits = 7 if n < 126 else 16 if n < 65536 else 64
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask else 0
    if length_bits == 7:
        head = bytes([b0, m | n])
    elif length_bits == 16:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class Frame(NamedTuple):
    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    length_bits: int


class RawWS:
    """A raw socket that did the opening handshake (or tried to: see `status`)."""

    def __init__(self, port: int, path: str = "/ws", headers: Sequence[Tuple[str, str]] = (),
                 *, key: Optional[str] = None, extra: bytes = b"", rcvbuf: Optional[int] = None,
                 timeout: float = TIMEOUT) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {self.key}",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + extra)
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed during the handshake: {self.buf!r}")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines_b = head.decode("latin-1").split("\r\n")
        self.status = int(lines_b[0].split()[1])
        self.headers: Dict[str, str] = {}
        for line in lines_b[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.status == 101:
            expected = base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == expected

    def __enter__(self) -> "RawWS":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()

    def send(self, opcode: int, payload: bytes = b"", **kw: Any) -> None:
        self.sock.sendall(encode_frame(opcode, payload, **kw))

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no frame in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError(f"connection closed ({len(self.buf)} bytes pending)")
            self.buf += chunk

    def recv_frame(self, timeout: float = TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "the server masked a frame (RFC 6455 5.1 forbids it)"
        n, at, bits = b1 & 0x7F, 2, 7
        if n == 126:
            self._fill(4, deadline)
            n, at, bits = struct.unpack("!H", self.buf[2:4])[0], 4, 16
        elif n == 127:
            self._fill(10, deadline)
            n, at, bits = struct.unpack("!Q", self.buf[2:10])[0], 10, 64
        self._fill(at + n, deadline)
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload, bits)

    def recv_data(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame that is not a ping or pong."""
        while True:
            f = self.recv_frame(timeout)
            if f.opcode not in (OP_PING, OP_PONG):
                return f

    def recv_close(self, timeout: float = TIMEOUT) -> Tuple[Optional[int], bytes]:
        """Skips frames up to a close frame; returns its (code, reason) (None: no payload)."""
        while True:
            f = self.recv_frame(timeout)
            if f.opcode == OP_CLOSE:
                if not f.payload:
                    return None, b""
                return struct.unpack("!H", f.payload[:2])[0], f.payload[2:]

    def wait_eof(self, timeout: float = TIMEOUT) -> bool:
        """Reads (and drops) until the server closes the connection; False on timeout."""
        deadline = time.monotonic() + timeout
        self.buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(65536):
                    return True
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True


def expect_protocol_close(raw: RawWS, code: int) -> None:
    """The server answers with a close frame carrying `code`, then closes the connection."""
    got, _ = raw.recv_close()
    assert got == code
    assert raw.wait_eof(), "the server did not close the TCP connection"


def http_exchange(port: int, request: bytes, timeout: float = TIMEOUT) -> Tuple[int, Dict[str, str],
                                                                                  bytes]:
    """Sends one raw request; returns the first response's status, headers and body."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in data:
                head, body = data.split(b"\r\n\r\n", 1)
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                status = int(head.split()[1])
                n = int(headers.get("content-length", "0"))
                if status == 101 or len(body) >= n:
                    return status, headers, body[:n]
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        raise AssertionError(f"no complete response: {data!r}")


def deflate_message(data: bytes) -> bytes:
    """permessage-deflate (RFC 7692 7.2.1): raw DEFLATE, sync-flushed, 00 00 ff ff removed."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_message(data: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    return d.decompress(data + b"\x00\x00\xff\xff")


# ================================================================================================
# Basics: echo, events and their order, the WebSocket object
# ================================================================================================

def test_echo_text_and_binary(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with client(server) as ws:
        ws.send("héllo wörld ✓")
        assert ws.recv(timeout=TIMEOUT) == "héllo wörld ✓"   # str arrives as str: a text frame
        ws.send(b"\x00\x01\xfe\xff")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01\xfe\xff"  # bytes stay binary
        ws.send("")
        assert ws.recv(timeout=TIMEOUT) == ""
        ws.send(b"")
        assert ws.recv(timeout=TIMEOUT) == b""
    assert rec.wait_events(CLOSE)
    assert not rec.violations


@pytest.mark.parametrize("make", [
    lambda i: bytes([65 + i % 26]) * 100_000,            # bytes: sent from the object itself
    lambda i: chr(0x3b1 + i % 20) * 50_000,              # non-ASCII str: its UTF-8 form
    lambda i: bytearray(bytes([65 + i % 26]) * 100_000),  # mutable: copied, never borrowed
])
def test_large_sends_arrive_intact_and_give_their_payload_back(serve, make):
    """Large immutable payloads are written from the Python object's memory without a copy; once
    written, the core gives each object back, so none stays referenced (checked by refcount)."""
    import sys
    payloads = [make(i) for i in range(8)]   # only the handler touches these objects
    expected = [make(i) for i in range(8)]   # equal contents, other objects, for the client side
    counts: Dict[str, Any] = {}

    def refcounts() -> List[int]:
        return [sys.getrefcount(payloads[i]) for i in range(len(payloads))]

    def on_event(ws: WebSocket, event: WebSocketEvent, message: Optional[Message]) -> None:
        if event is not MESSAGE or message is None:
            return
        if message.data == "go":
            counts["before"] = refcounts()
            for _ in range(3):
                for i in range(len(payloads)):
                    ws.send(payloads[i])
        elif message.data == "check":
            now = refcounts()
            ws.send("same" if now == counts["before"] else repr((now, counts["before"])))

    server = serve(ws_router(), websocket_handler=Recorder(echo=False, on_event=on_event))
    with client(server, compression=None) as ws:  # compressed frames are built, not borrowed
        ws.send("go")
        for _ in range(3):
            for want in expected:
                assert ws.recv(timeout=TIMEOUT) == (want if isinstance(want, str) else bytes(want))
        # every frame is written (the client has it all); a delivery drops what was given back
        deadline = time.monotonic() + TIMEOUT
        answer = ""
        while answer != "same" and time.monotonic() < deadline:
            ws.send("check")
            answer = ws.recv(timeout=TIMEOUT)
        assert answer == "same"


def test_plain_http_on_the_same_router(serve):
    server = serve(ws_router(), websocket_handler=Recorder())
    status, _, body = http_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"plain http")


def test_events_in_order_open_first_close_last_exactly_once(serve):
    rec = Recorder(echo=True)
    server = serve(ws_router(), websocket_handler=rec)
    with client(server) as ws:
        for i in range(20):
            ws.send(f"m{i}" if i % 2 else f"m{i}".encode())
        for i in range(20):
            assert ws.recv(timeout=TIMEOUT) == (f"m{i}" if i % 2 else f"m{i}".encode())
        ws.close(4321, "see you")
    assert rec.wait_events(CLOSE)
    time.sleep(0.1)  # anything wrongly delivered after CLOSE would show up now
    sock = rec.only()
    events = rec.of(sock)
    kinds = [e for e, _ in events]
    assert kinds[0] is OPEN and kinds[-1] is CLOSE
    assert kinds.count(OPEN) == 1 and kinds.count(CLOSE) == 1
    assert ERROR not in kinds  # a clean close is not an error
    msgs = [m for e, m in events if e is MESSAGE]
    assert [m.data for m in msgs] == [f"m{i}" if i % 2 else f"m{i}".encode() for i in range(20)]
    for i, m in enumerate(msgs):
        assert isinstance(m, Message)
        assert m.kind is (MessageKind.TEXT if i % 2 else MessageKind.BINARY)
        assert isinstance(m.data, str if i % 2 else bytes)
    assert all(m is None for e, m in events if e is not MESSAGE)
    assert sock.closed
    assert sock.close_code == 4321 and sock.close_reason == "see you"
    assert not rec.violations


def test_websocket_attributes_and_dict_key(serve):
    table: Dict[WebSocket, List[str]] = {}
    lock = threading.Lock()
    seen_ids: List[int] = []

    def handler(ws, event, message):
        with lock:
            if event is OPEN:
                assert ws not in table
                table[ws] = []
                seen_ids.append(ws.id)
            elif event is MESSAGE:
                table[ws].append(message.data)      # the same object as a key on every event
                ws.send(",".join(table[ws]))
            elif event is CLOSE:
                del table[ws]

    router = Router()

    @router.get("/ws")
    def up(request):
        ws = request.upgrade_to_websocket()
        assert ws.subprotocol is None
        assert ws.remote_addr == "127.0.0.1"
        assert isinstance(ws.id, int)
        assert not ws.closed
        assert ws.close_code is None and ws.close_reason is None
        assert hash(ws) == hash(ws)
        assert {ws: 1}[ws] == 1

    server = serve(router, websocket_handler=handler)
    with client(server) as a, client(server) as b:
        a.send("1")
        assert a.recv(timeout=TIMEOUT) == "1"
        b.send("x")
        assert b.recv(timeout=TIMEOUT) == "x"
        a.send("2")
        assert a.recv(timeout=TIMEOUT) == "1,2"
        b.send("y")
        assert b.recv(timeout=TIMEOUT) == "x,y"
    assert wait_until(lambda: not table), table
    assert len(set(seen_ids)) == 2


def test_websocket_cannot_be_instantiated():
    with pytest.raises(TypeError):
        WebSocket()


def test_exception_types():
    assert issubclass(ConnectionClosed, ConnectionError)
    assert issubclass(HandshakeRefused, ValueError)
    assert [e.name for e in WebSocketEvent] == ["OPEN", "MESSAGE", "ERROR", "CLOSE"]
    assert [k.name for k in MessageKind] == ["TEXT", "BINARY", "PING", "PONG"]


def test_send_before_open_as_in_the_spec(serve):
    """The issue's example: send from the upgrading handler, before OPEN is delivered."""
    rec = Recorder()
    router = Router()

    @router.get("/ws")
    def upgrade(request):
        websocket = request.upgrade_to_websocket()
        websocket.send("Hello world from WebSocket!")
        websocket.send(b"\x01\x02")

    server = serve(router, websocket_handler=rec)
    with client(server) as ws:
        assert ws.recv(timeout=TIMEOUT) == "Hello world from WebSocket!"
        assert ws.recv(timeout=TIMEOUT) == b"\x01\x02"
        ws.send("after")
        assert ws.recv(timeout=TIMEOUT) == "after"
    assert rec.wait_events(CLOSE)
    assert [e for e, _ in rec.of(rec.only())] == [OPEN, MESSAGE, CLOSE]


def test_send_from_other_threads(serve):
    """send() is thread-safe: several threads at once, each one's messages in its order."""
    threads_n, per_thread = 4, 50

    def blast(ws, t):
        for i in range(per_thread):
            ws.send(f"{t}:{i}")

    def on_event(ws, event, message):
        if event is OPEN:
            for t in range(threads_n):
                threading.Thread(target=blast, args=(ws, t), daemon=True).start()

    rec = Recorder(echo=False, on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec)
    with client(server) as ws:
        got = [ws.recv(timeout=TIMEOUT) for _ in range(threads_n * per_thread)]
    by_thread: Dict[str, List[int]] = {}
    for g in got:
        t, i = g.split(":")
        by_thread.setdefault(t, []).append(int(i))
    assert by_thread == {str(t): list(range(per_thread)) for t in range(threads_n)}


def test_send_kinds(serve):
    errors: List[BaseException] = []

    def on_event(ws, event, message):
        if event is not OPEN:
            return
        ws.send("as bytes", kind=MessageKind.BINARY)
        ws.send(b"as text", kind=MessageKind.TEXT)
        ws.send(bytearray(b"a bytearray"))
        ws.send(memoryview(b"a memoryview"))
        for bad, exc in [(lambda: ws.send(b"\xff\xfe", kind=MessageKind.TEXT), ValueError),
                         (lambda: ws.send(b"x" * 126, kind=MessageKind.PING), ValueError),
                         (lambda: ws.send(b"x", kind="text"), TypeError),
                         (lambda: ws.send(123), TypeError)]:
            try:
                bad()
            except exc as e:
                errors.append(e)
        ws.send(b"p", kind=MessageKind.PING)
        ws.send(b"unsolicited", kind=MessageKind.PONG)
        ws.send("end")

    rec = Recorder(echo=False, on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        assert raw.status == 101
        frames = [raw.recv_frame() for _ in range(7)]
    assert [(f.opcode, f.payload) for f in frames] == [
        (OP_BINARY, b"as bytes"), (OP_TEXT, b"as text"), (OP_BINARY, b"a bytearray"),
        (OP_BINARY, b"a memoryview"), (OP_PING, b"p"), (OP_PONG, b"unsolicited"),
        (OP_TEXT, b"end")]
    assert len(errors) == 4, errors


def test_handler_override_per_connection(serve):
    default, special = Recorder(), Recorder(echo=False)
    router = ws_router("/ws")
    router.get("/special", lambda request: request.upgrade_to_websocket(handler=special))
    server = serve(router, websocket_handler=default)
    with client(server, "/special") as ws:
        ws.send("hi")
        assert special.wait_events(MESSAGE)
    assert special.wait_events(CLOSE)
    assert default.events == []


def test_upgrade_without_any_handler_raises_runtime_error(serve):
    caught: List[BaseException] = []
    router = Router()

    @router.get("/ws")
    def up(request):
        try:
            request.upgrade_to_websocket()
        except BaseException as e:
            caught.append(e)
            raise

    server = serve(router)  # no websocket_handler
    with pytest.raises(InvalidStatus) as info:
        with client(server):
            pass
    assert info.value.response.status_code == 500  # the handler's exception: a 500
    assert len(caught) == 1 and type(caught[0]) is RuntimeError


def test_handler_exception_is_logged_and_connection_survives(serve, caplog):
    def on_event(ws, event, message):
        if event is MESSAGE and message.data == "boom":
            raise ZeroDivisionError("ws-boom-4711")

    rec = Recorder(echo=True, on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec)
    with caplog.at_level(logging.ERROR, logger="mummyx"):
        with client(server) as ws:
            ws.send("boom")  # raises in the handler before the echo
            ws.send("still here")
            assert ws.recv(timeout=TIMEOUT) == "still here"
        assert rec.wait_events(CLOSE)
        wait_until(lambda: any(r.exc_info and "ws-boom-4711" in str(r.exc_info[1])
                               for r in caplog.records))
    records = [r for r in caplog.records if r.exc_info and "ws-boom-4711" in str(r.exc_info[1])]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR and records[0].name == "mummyx"
    assert "Traceback" in logging.Formatter().format(records[0])


def test_websocket_attributes_writable_dict(serve):
    """A WebSocket has a __dict__: applications may hang their state on it."""
    def on_event(ws, event, message):
        if event is OPEN:
            ws.user = "alice"
        elif event is MESSAGE:
            ws.send(f"{ws.user}: {message.data}")

    server = serve(ws_router(), websocket_handler=Recorder(echo=False, on_event=on_event))
    with client(server) as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "alice: hi"


def test_many_connections_in_parallel(serve):
    """50 connections: each one's events in order and one at a time; connections overlap."""
    n_conns, n_msgs = 50, 3
    running_now = [0]
    peak = [0]
    lock = threading.Lock()

    def on_event(ws, event, message):
        if event is MESSAGE:
            with lock:
                running_now[0] += 1
                peak[0] = max(peak[0], running_now[0])
            time.sleep(0.02)
            with lock:
                running_now[0] -= 1

    rec = Recorder(echo=True, on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec, workers=8)
    conns = [RawWS(server.port) for _ in range(n_conns)]
    try:
        assert all(c.status == 101 for c in conns)
        for j in range(n_msgs):
            for i, c in enumerate(conns):
                c.send(OP_TEXT, f"{i}.{j}".encode())
        for i, c in enumerate(conns):
            got = [c.recv_data().payload for _ in range(n_msgs)]
            assert got == [f"{i}.{j}".encode() for j in range(n_msgs)]
        for c in conns:
            c.send(OP_CLOSE, close_payload(1000))
        for c in conns:
            assert c.recv_close()[0] == 1000
    finally:
        for c in conns:
            c.sock.close()
    assert rec.wait_events(CLOSE, n_conns)
    socks = rec.sockets()
    assert len(socks) == n_conns and len({s.id for s in socks}) == n_conns
    for s in socks:
        kinds = [e for e, _ in rec.of(s)]
        assert kinds == [OPEN] + [MESSAGE] * n_msgs + [CLOSE]
    assert not rec.violations
    assert peak[0] > 1, "different connections should run in parallel"


# ================================================================================================
# Closing, both ways
# ================================================================================================

def test_client_close_code_and_reason_reach_the_handler(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with client(server) as ws:
        ws.send("x")
        ws.recv(timeout=TIMEOUT)
        ws.close(3001, "custom reason ✓")
        assert ws.close_code == 3001  # the server echoed our code
    assert rec.wait_events(CLOSE)
    sock = rec.only()
    assert (sock.close_code, sock.close_reason) == (3001, "custom reason ✓")
    assert sock.closed


def test_server_close_with_code_and_reason(serve):
    after: List[BaseException] = []

    def on_event(ws, event, message):
        if event is MESSAGE:
            ws.close(4000, "go away")
            ws.close(4001, "ignored: a second close is a no-op")
            try:
                ws.send("too late")
            except ConnectionClosed as e:
                after.append(e)

    rec = Recorder(echo=False, on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec)
    with client(server) as ws:
        ws.send("please close")
        with pytest.raises(WSClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd.code == 4000 and info.value.rcvd.reason == "go away"
    assert rec.wait_events(CLOSE)
    sock = rec.only()
    assert sock.closed and sock.close_code == 4000  # the client echoed it
    assert len(after) == 1 and isinstance(after[0], ConnectionError)
    with pytest.raises(ConnectionClosed):
        sock.send("after CLOSE")
    sock.close()  # closing a closed socket is harmless


@pytest.mark.parametrize("code,reason", [(1005, ""), (1006, ""), (1015, ""), (999, ""),
                                         (5000, ""), (1000, "x" * 124)])
def test_close_rejects_bad_arguments(serve, code, reason):
    raised: List[BaseException] = []

    def on_event(ws, event, message):
        if event is OPEN:
            try:
                ws.close(code, reason)
            except ValueError as e:
                raised.append(e)
            ws.send("still open")

    server = serve(ws_router(), websocket_handler=Recorder(on_event=on_event))
    with client(server) as ws:
        assert ws.recv(timeout=TIMEOUT) == "still open"
    assert len(raised) == 1


def test_raw_close_echo_and_tcp_close_by_server(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        raw.send(OP_CLOSE, close_payload(1000, b"bye"))
        code, _ = raw.recv_close()
        assert code == 1000  # the peer's code, echoed (RFC 6455 5.5.1)
        assert raw.wait_eof(), "the server closes the TCP connection after the exchange"
    assert rec.wait_events(CLOSE)
    sock = rec.only()
    assert (sock.close_code, sock.close_reason) == (1000, "bye")
    assert [e for e, _ in rec.of(sock)] == [OPEN, CLOSE]


def test_raw_empty_close_is_echoed_empty(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        raw.send(OP_CLOSE)
        assert raw.recv_close() == (None, b"")
        assert raw.wait_eof()
    assert rec.wait_events(CLOSE)
    assert rec.only().close_code == 1005  # "no status received"


@pytest.mark.parametrize("payload", [close_payload(1005), close_payload(1006),
                                     close_payload(1004), close_payload(999),
                                     close_payload(2000), close_payload(5000),
                                     close_payload(1015), b"\x03"],
                         ids=["1005", "1006", "1004", "999", "2000", "5000", "1015", "1-byte"])
def test_raw_close_with_invalid_code_gets_1002(serve, payload):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port) as raw:
        raw.send(OP_CLOSE, payload)
        expect_protocol_close(raw, 1002)


def test_raw_close_with_invalid_utf8_reason_gets_1007(serve):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port) as raw:
        raw.send(OP_CLOSE, close_payload(1000, b"\xc3("))
        expect_protocol_close(raw, 1007)


def test_raw_abrupt_disconnect_gives_error_then_close_1006(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        raw.send(OP_TEXT, b"hi")
        assert raw.recv_data().payload == b"hi"
    assert rec.wait_events(CLOSE)
    sock = rec.only()
    assert [e for e, _ in rec.of(sock)] == [OPEN, MESSAGE, ERROR, CLOSE]
    assert sock.close_code == 1006
    with pytest.raises(ConnectionClosed):
        sock.send("gone")


def test_client_that_never_answers_our_close_is_cut_off(serve):
    def on_event(ws, event, message):
        if event is OPEN:
            ws.close(4002, "bye")

    rec = Recorder(on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec, websocket_close_timeout=0.5)
    with RawWS(server.port) as raw:
        assert raw.recv_close() == (4002, b"bye")
        t0 = time.monotonic()
        assert raw.wait_eof(TIMEOUT)  # we never answer the close
        elapsed = time.monotonic() - t0
    assert 0.3 < elapsed < 3.0, elapsed
    assert rec.wait_events(CLOSE)
    assert rec.only().close_code == 1006


def test_messages_after_our_close_are_still_delivered_until_the_peer_closes(serve):
    def on_event(ws, event, message):
        if event is OPEN:
            ws.close(1000)

    rec = Recorder(echo=False, on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        assert raw.recv_close()[0] == 1000
        raw.send(OP_TEXT, b"in flight")   # sent before the client saw our close: still valid
        raw.send(OP_CLOSE, close_payload(1000))
        assert raw.wait_eof()
    assert rec.wait_events(CLOSE)
    kinds = [(e, m.data if m else None) for e, m in rec.of(rec.only())]
    assert kinds == [(OPEN, None), (MESSAGE, "in flight"), (CLOSE, None)]
    assert rec.only().close_code == 1000


def test_server_close_closes_websockets_with_1001(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with client(server) as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"
        closer = threading.Thread(target=server.close, kwargs={"timeout": 3.0})
        t0 = time.monotonic()
        closer.start()
        with pytest.raises(WSClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd.code == 1001
        closer.join(TIMEOUT)
        assert not closer.is_alive()
        assert time.monotonic() - t0 < 4.0
    assert rec.wait_events(CLOSE)
    assert rec.only().close_code == 1001


# ================================================================================================
# Subprotocols and the opening handshake
# ================================================================================================

def test_subprotocol_first_offered_by_client_wins(serve):
    selected: List[Any] = []

    def on_event(ws, event, message):
        if event is OPEN:
            selected.append(ws.subprotocol)

    rec = Recorder(on_event=on_event)
    server = serve(ws_router(protocols=["chat", "superchat"]), websocket_handler=rec)
    with client(server, subprotocols=["superchat", "chat"]) as ws:
        assert ws.subprotocol == "superchat"
    with client(server, subprotocols=["other", "chat"]) as ws:
        assert ws.subprotocol == "chat"
    with client(server) as ws:
        assert ws.subprotocol is None
    assert rec.wait_events(OPEN, 3)
    assert sorted(selected, key=str) == sorted(["superchat", "chat", None], key=str)


def test_subprotocol_raw_headers(serve):
    server = serve(ws_router(protocols=["v2.proto", "v1.proto"]), websocket_handler=Recorder())
    with RawWS(server.port, headers=[("Sec-WebSocket-Protocol", "x, v1.proto"),
                                     ("Sec-WebSocket-Protocol", "v2.proto")]) as raw:
        assert raw.status == 101
        assert raw.headers["sec-websocket-protocol"] == "v1.proto"
    with RawWS(server.port, headers=[("Sec-WebSocket-Protocol", "V1.PROTO")]) as raw:
        assert raw.status == 101
        assert "sec-websocket-protocol" not in raw.headers  # names are case-sensitive
    with RawWS(server.port) as raw:
        assert raw.status == 101
        assert "sec-websocket-protocol" not in raw.headers


def test_upgrade_argument_errors(serve):
    results: Dict[str, BaseException] = {}
    router = Router()

    @router.get("/ws")
    def up(request):
        for name, kw in [("str", {"protocols": "chat"}), ("ints", {"protocols": [1]}),
                         ("handler", {"handler": 42})]:
            try:
                request.upgrade_to_websocket(**kw)
            except BaseException as e:
                results[name] = e
        request.upgrade_to_websocket()

    server = serve(router, websocket_handler=Recorder())
    with client(server) as ws:
        ws.send("ok")
        assert ws.recv(timeout=TIMEOUT) == "ok"
    assert {k: type(v) for k, v in results.items()} == {"str": TypeError, "ints": TypeError,
                                                        "handler": TypeError}


def test_upgrade_is_a_response_once(serve, caplog):
    """After upgrading: a second upgrade or a respond() raise; close() works before OPEN; an
    exception in the upgrading handler is logged and does not hurt the connection."""
    results: List[BaseException] = []
    router = Router()

    @router.get("/ws")
    def up(request):
        ws = request.upgrade_to_websocket()
        for again in (request.upgrade_to_websocket, lambda: request.respond(200, None, "x")):
            try:
                again()
            except RuntimeError as e:
                results.append(e)
        if request.query.get("close"):
            ws.close(4005, "early")  # before OPEN was delivered
        else:
            raise LookupError("after-upgrade-4711")

    rec = Recorder()
    server = serve(router, websocket_handler=rec)
    with RawWS(server.port, "/ws?close=1") as raw:
        assert raw.status == 101
        assert raw.recv_close() == (4005, b"early")
        raw.send(OP_CLOSE, close_payload(4005))
        assert raw.wait_eof()
    assert rec.wait_events(CLOSE)
    assert [e for e, _ in rec.of(rec.only())] == [OPEN, CLOSE]
    assert len(results) == 2
    with caplog.at_level(logging.ERROR, logger="mummyx"):
        with client(server) as ws:
            ws.send("fine")
            assert ws.recv(timeout=TIMEOUT) == "fine"
        assert wait_until(lambda: any(r.exc_info and "after-upgrade-4711" in str(r.exc_info[1])
                                      for r in caplog.records))


GOOD_KEY = base64.b64encode(b"0123456789abcdef").decode()


def handshake_request(method: str = "GET", version: str = "HTTP/1.1",
                      headers: Optional[List[Tuple[str, str]]] = None,
                      drop: Sequence[str] = ()) -> bytes:
    base = [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", GOOD_KEY), ("Sec-WebSocket-Version", "13")]
    replaced = {k.lower() for k, _ in (headers or [])}
    items = [(k, v) for k, v in base if k.lower() not in replaced and k not in drop]
    items += headers or []
    head = f"{method} /ws {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode()


HANDSHAKES = [
    # (id, request, expected status)
    ("ok", handshake_request(), 101),
    ("upgrade-case-insensitive", handshake_request(headers=[("Upgrade", "WebSocket")]), 101),
    ("upgrade-in-a-list", handshake_request(headers=[("Upgrade", "foo/1, websocket")]), 101),
    ("connection-list", handshake_request(headers=[("Connection", "keep-alive, UPGRADE")]), 101),
    ("connection-two-fields", handshake_request(headers=[("Connection", "keep-alive"),
                                                         ("Connection", "upgrade")]), 101),
    ("key-with-ows", handshake_request(headers=[("Sec-WebSocket-Key", f"  {GOOD_KEY} ")]), 101),
    ("post", handshake_request(method="POST"), 400),
    ("http-1.0", handshake_request(version="HTTP/1.0"), 400),
    ("no-upgrade", handshake_request(drop=["Upgrade"]), 400),
    ("upgrade-other", handshake_request(headers=[("Upgrade", "h2c")]), 400),
    ("upgrade-token-prefix", handshake_request(headers=[("Upgrade", "websocket/13")]), 400),
    ("no-connection", handshake_request(drop=["Connection"]), 400),
    ("connection-keep-alive", handshake_request(headers=[("Connection", "keep-alive")]), 400),
    ("connection-upgraded", handshake_request(headers=[("Connection", "upgraded")]), 400),
    ("no-key", handshake_request(drop=["Sec-WebSocket-Key"]), 400),
    ("key-15-bytes", handshake_request(
        headers=[("Sec-WebSocket-Key", base64.b64encode(b"x" * 15).decode())]), 400),
    ("key-17-bytes", handshake_request(
        headers=[("Sec-WebSocket-Key", base64.b64encode(b"x" * 17).decode())]), 400),
    ("key-not-base64", handshake_request(headers=[("Sec-WebSocket-Key", "!" * 22 + "==")]), 400),
    ("key-empty", handshake_request(headers=[("Sec-WebSocket-Key", "")]), 400),
    ("key-repeated", handshake_request(headers=[("Sec-WebSocket-Key", GOOD_KEY),
                                                ("Sec-WebSocket-Key", GOOD_KEY)]), 400),
    ("no-version", handshake_request(drop=["Sec-WebSocket-Version"]), 400),
    ("version-8", handshake_request(headers=[("Sec-WebSocket-Version", "8")]), 426),
    ("version-14", handshake_request(headers=[("Sec-WebSocket-Version", "14")]), 426),
]


@pytest.mark.parametrize("request_bytes,status", [(r, s) for _, r, s in HANDSHAKES],
                         ids=[i for i, _, _ in HANDSHAKES])
def test_handshake_rules(serve, caplog, request_bytes, status):
    refused: List[BaseException] = []
    rec = Recorder()

    def app(request):  # any method and path: the rules are checked by upgrade_to_websocket
        try:
            request.upgrade_to_websocket(handler=rec)
        except HandshakeRefused as e:
            refused.append(e)
            raise  # logged at INFO only

    server = serve(app)
    with caplog.at_level(logging.INFO, logger="mummyx"):
        got, headers, body = http_exchange(server.port, request_bytes)
        assert got == status, (got, body)
        if status == 101:
            assert headers["upgrade"].lower() == "websocket"
            assert headers["connection"].lower() == "upgrade"
            expected = base64.b64encode(hashlib.sha1(GOOD_KEY.encode() + GUID).digest()).decode()
            assert headers["sec-websocket-accept"] == expected
            assert rec.wait_events(CLOSE)
            assert not refused
        else:
            assert len(refused) == 1 and isinstance(refused[0], ValueError)
            if status == 426:
                assert headers.get("sec-websocket-version") == "13"
            assert wait_until(lambda: any(r.levelno == logging.INFO and r.name == "mummyx"
                                          for r in caplog.records))
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert rec.events == []


def test_refused_handshake_keeps_the_connection_usable(serve):
    router = ws_router()
    server = serve(router, websocket_handler=Recorder())
    with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as s:
        s.sendall(handshake_request(headers=[("Sec-WebSocket-Version", "8")])
                  + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + TIMEOUT
        while b"plain http" not in data and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 426 ")
    assert b"plain http" in data


def test_frame_in_the_same_packet_as_the_handshake(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    first = encode_frame(OP_TEXT, b"eager")
    with RawWS(server.port, extra=first) as raw:
        assert raw.status == 101
        assert raw.recv_data().payload == b"eager"


def test_handshake_pipelined_behind_a_slow_request(serve):
    """The 101 waits for the earlier response; bytes after the handshake are frames, not HTTP."""
    router = ws_router()

    @router.get("/slow")
    def slow(request):
        time.sleep(0.2)
        request.respond(200, {"Content-Type": "text/plain"}, "slow done")

    server = serve(router, websocket_handler=Recorder())
    with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + handshake_request()
                  + encode_frame(OP_TEXT, b"GET / HTTP/1.1"))
        data = b""
        while not data.endswith(b"GET / HTTP/1.1"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    first, rest = data.split(b"slow done", 1)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 101 ")
    assert rest.endswith(b"\r\n\r\n\x81\x0eGET / HTTP/1.1")


def test_no_close_without_open_when_the_client_leaves_early(serve):
    upgraded: List[WebSocket] = []
    router = Router()

    @router.get("/ws")
    def up(request):
        time.sleep(0.3)  # the client is gone by now
        upgraded.append(request.upgrade_to_websocket())

    rec = Recorder()
    server = serve(router, websocket_handler=rec)
    s = socket.create_connection((HOST, server.port), timeout=TIMEOUT)
    s.sendall(handshake_request())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    assert wait_until(lambda: bool(upgraded))
    assert wait_until(lambda: upgraded[0].closed)
    time.sleep(0.2)
    kinds = [e for _, e, _ in rec.events]
    # either nothing at all (the connection never opened) or a full OPEN ... CLOSE sequence
    assert kinds == [] or (kinds[0] is OPEN and kinds[-1] is CLOSE), kinds


# ================================================================================================
# Frames (raw socket)
# ================================================================================================

@pytest.mark.parametrize("size,bits", [(125, 7), (126, 16), (1000, 16), (65535, 16),
                                       (65536, 64), (200000, 64)])
def test_raw_frame_lengths(serve, size, bits):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec, max_message_len=1 << 20,
                   websocket_compression=False)
    payload = os.urandom(size)
    with RawWS(server.port) as raw:
        raw.send(OP_BINARY, payload)
        f = raw.recv_data()
        assert (f.opcode, f.fin, f.rsv, f.length_bits) == (OP_BINARY, True, 0, bits)
        assert f.payload == payload


def test_raw_non_minimal_lengths_are_accepted(serve):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port) as raw:
        raw.send(OP_TEXT, b"short in 16 bits", length_bits=16)
        assert raw.recv_data().payload == b"short in 16 bits"
        raw.send(OP_TEXT, b"short in 64 bits", length_bits=64)
        assert raw.recv_data().payload == b"short in 64 bits"


def test_raw_unmasked_frame_gets_1002(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        raw.send(OP_TEXT, b"not masked", mask=False)
        expect_protocol_close(raw, 1002)
    assert rec.wait_events(CLOSE)
    sock = rec.only()
    assert [e for e, _ in rec.of(sock)] == [OPEN, ERROR, CLOSE]  # the message is not delivered
    assert sock.close_code == 1002


@pytest.mark.parametrize("rsv", [4, 2, 1], ids=["rsv1", "rsv2", "rsv3"])
def test_raw_reserved_bits_get_1002(serve, rsv):
    server = serve(ws_router(), websocket_handler=Recorder(), websocket_compression=False)
    with RawWS(server.port) as raw:
        raw.send(OP_TEXT, b"x", rsv=rsv)
        expect_protocol_close(raw, 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_raw_reserved_opcode_gets_1002(serve, opcode):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port) as raw:
        raw.send(opcode, b"x")
        expect_protocol_close(raw, 1002)


@pytest.mark.parametrize("frames", [
    [encode_frame(OP_CONT, b"no message in progress")],
    [encode_frame(OP_TEXT, b"a", fin=False), encode_frame(OP_TEXT, b"b")],
    [encode_frame(OP_PING, b"x" * 126)],
    [encode_frame(OP_PING, b"x", fin=False)],
], ids=["stray-continuation", "new-message-inside-one", "long-ping", "fragmented-ping"])
def test_raw_fragmentation_and_control_frame_errors_get_1002(serve, frames):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port) as raw:
        raw.sock.sendall(b"".join(frames))
        expect_protocol_close(raw, 1002)


@pytest.mark.parametrize("frames", [
    [(OP_TEXT, b"\xff", True)],
    [(OP_TEXT, b"\xed\xa0\x80", True)],                        # a surrogate
    [(OP_TEXT, b"\xc0\xaf", True)],                            # overlong
    [(OP_TEXT, b"ok \xe2\x82", False), (OP_CONT, b"(", True)],  # broken across fragments
    [(OP_TEXT, b"truncated \xe2\x82", True)],
], ids=["ff", "surrogate", "overlong", "across-fragments", "truncated"])
def test_raw_invalid_utf8_text_gets_1007(serve, frames):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        for op, data, fin in frames:
            raw.send(op, data, fin=fin)
        expect_protocol_close(raw, 1007)
    assert rec.wait_events(CLOSE)
    assert MESSAGE not in [e for e, _ in rec.of(rec.only())]


def test_raw_utf8_split_across_fragments_is_fine(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    text = "añ€𝄞".encode()
    with RawWS(server.port) as raw:
        # every split point inside multi-byte sequences
        raw.send(OP_TEXT, text[:2], fin=False)
        raw.send(OP_CONT, text[2:5], fin=False)
        raw.send(OP_CONT, text[5:8], fin=False)
        raw.send(OP_CONT, text[8:])
        f = raw.recv_data()
        assert (f.opcode, f.payload) == (OP_TEXT, text)


def test_raw_fragmented_message_with_interleaved_ping(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        raw.send(OP_TEXT, b"Hello, ", fin=False)
        raw.send(OP_PING, b"ping-1")
        raw.send(OP_CONT, b"", fin=False)  # empty fragments are allowed
        raw.send(OP_PONG, b"unsolicited pong")
        raw.send(OP_CONT, b"fragmented ", fin=False)
        raw.send(OP_CONT, b"world")
        pong = raw.recv_frame()
        assert (pong.opcode, pong.payload) == (OP_PONG, b"ping-1")  # answered at once
        f = raw.recv_frame()
        assert (f.opcode, f.fin, f.payload) == (OP_TEXT, True, b"Hello, fragmented world")
        raw.send(OP_BINARY, b"\x00", fin=False)
        raw.send(OP_CONT, b"\x01")
        f = raw.recv_frame()
        assert (f.opcode, f.payload) == (OP_BINARY, b"\x00\x01")
    assert rec.wait_events(CLOSE)
    msgs = [m for e, m in rec.of(rec.only()) if e is MESSAGE]
    assert msgs == [Message(MessageKind.PING, b"ping-1"),
                    Message(MessageKind.PONG, b"unsolicited pong"),
                    Message(MessageKind.TEXT, "Hello, fragmented world"),
                    Message(MessageKind.BINARY, b"\x00\x01")]


def test_raw_ping_is_answered_and_delivered(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        raw.send(OP_PING, b"")
        raw.send(OP_PING, b"x" * 125)
        assert raw.recv_frame() == Frame(True, 0, OP_PONG, b"", 7)
        assert raw.recv_frame() == Frame(True, 0, OP_PONG, b"x" * 125, 7)
        assert rec.wait_events(MESSAGE, 2)
    msgs = [m for e, m in rec.of(rec.only()) if e is MESSAGE]
    assert msgs == [Message(MessageKind.PING, b""), Message(MessageKind.PING, b"x" * 125)]


def test_raw_close_in_the_middle_of_a_fragmented_message_is_echoed(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port) as raw:
        raw.send(OP_TEXT, b"half", fin=False)
        raw.send(OP_CLOSE, close_payload(1000))
        assert raw.recv_close()[0] == 1000
        assert raw.wait_eof()
    assert rec.wait_events(CLOSE)
    assert [e for e, _ in rec.of(rec.only())] == [OPEN, CLOSE]


def test_raw_frames_split_into_single_bytes(serve):
    server = serve(ws_router(), websocket_handler=Recorder())
    data = (encode_frame(OP_TEXT, b"one", fin=False) + encode_frame(OP_PING, b"p")
            + encode_frame(OP_CONT, b"two") + encode_frame(OP_BINARY, b"x" * 300))
    with RawWS(server.port) as raw:
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            raw.sock.sendall(data[i:i + 1])
        assert raw.recv_data().payload == b"onetwo"
        assert raw.recv_data().payload == b"x" * 300


# ================================================================================================
# Message size limit
# ================================================================================================

def test_message_at_the_limit_passes_one_over_gets_1009(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec, max_message_len=1024,
                   websocket_compression=False)
    with RawWS(server.port) as raw:
        raw.send(OP_BINARY, b"a" * 1024)
        assert raw.recv_data().payload == b"a" * 1024
        raw.send(OP_BINARY, b"a" * 1025)
        expect_protocol_close(raw, 1009)
    assert rec.wait_events(CLOSE)
    assert rec.only().close_code == 1009


def test_fragmented_message_over_the_limit_gets_1009(serve):
    server = serve(ws_router(), websocket_handler=Recorder(), max_message_len=1024)
    with RawWS(server.port) as raw:
        raw.send(OP_TEXT, b"a" * 600, fin=False)
        raw.send(OP_CONT, b"a" * 424, fin=False)   # 1024 so far: fine
        raw.send(OP_CONT, b"a")                    # 1025
        expect_protocol_close(raw, 1009)


def test_huge_announced_length_gets_1009_before_the_payload(serve):
    server = serve(ws_router(), websocket_handler=Recorder(), max_message_len=1024)
    with RawWS(server.port) as raw:
        # announce 2^40 bytes and send none of them: decided on the header alone
        raw.sock.sendall(bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 40) + os.urandom(4))
        expect_protocol_close(raw, 1009)


def test_64bit_length_with_top_bit_gets_1002(serve):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port) as raw:
        raw.sock.sendall(bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 63) + os.urandom(4))
        expect_protocol_close(raw, 1002)


def test_websockets_client_oversized_message(serve):
    server = serve(ws_router(), websocket_handler=Recorder(), max_message_len=4096)
    with client(server, compression=None) as ws:
        ws.send("x" * 4096)
        assert ws.recv(timeout=TIMEOUT) == "x" * 4096
        ws.send("x" * 5000)
        with pytest.raises(WSClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd.code == 1009


# ================================================================================================
# permessage-deflate (RFC 7692)
# ================================================================================================

def test_compression_negotiated_in_the_response_header(serve):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port, headers=[("Sec-WebSocket-Extensions",
                                      "permessage-deflate; client_max_window_bits")]) as raw:
        assert raw.status == 101
        ext = raw.headers.get("sec-websocket-extensions", "")
        assert ext.split(";")[0].strip() == "permessage-deflate"
    with RawWS(server.port) as raw:  # not offered: not negotiated
        assert "sec-websocket-extensions" not in raw.headers
    with RawWS(server.port, headers=[("Sec-WebSocket-Extensions", "x-unknown")]) as raw:
        assert "sec-websocket-extensions" not in raw.headers


@pytest.mark.parametrize("offer,answer", [
    ("permessage-deflate", "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits=10",
     "permessage-deflate; client_max_window_bits=10"),
    ('permessage-deflate; client_max_window_bits="12"',
     "permessage-deflate; client_max_window_bits=12"),
    ("permessage-deflate; server_max_window_bits=10",
     "permessage-deflate; server_max_window_bits=10"),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    # an invalid offer is declined and the next one tried (RFC 7692 7.1)
    ("permessage-deflate; server_max_window_bits=7, permessage-deflate; "
     "server_no_context_takeover", "permessage-deflate; server_no_context_takeover"),
    ("x-foo, permessage-deflate", "permessage-deflate"),
    ("permessage-deflate; unknown", None),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    ("permessage-deflate; client_no_context_takeover=1", None),
    ("permessage-deflate; server_max_window_bits=16", None),
])
def test_compression_negotiation_parameters(serve, offer, answer):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port, headers=[("Sec-WebSocket-Extensions", offer)]) as raw:
        assert raw.status == 101
        got = raw.headers.get("sec-websocket-extensions")
        if answer is None:
            assert got is None
        else:
            assert [p.strip() for p in got.split(";")] == [p.strip() for p in answer.split(";")]


@pytest.mark.parametrize("bits", [8, 10, 15])
def test_server_max_window_bits_is_respected(serve, bits):
    """What the server compresses must inflate with the window it announced."""
    server = serve(ws_router(), websocket_handler=Recorder(), max_message_len=1 << 20)
    words = [f"w{i:03d}x".encode() for i in range(300)]
    text = b" ".join(words[(i * 7919) % 300] for i in range(20000))
    offer = f"permessage-deflate; server_max_window_bits={bits}"
    with RawWS(server.port, headers=[("Sec-WebSocket-Extensions", offer)]) as raw:
        assert f"server_max_window_bits={bits}" in raw.headers["sec-websocket-extensions"]
        inflater = zlib.decompressobj(-bits)  # one inflater: the context carries over
        for _ in range(2):
            raw.send(OP_BINARY, text)
            f = raw.recv_data()
            assert f.rsv == 4 and len(f.payload) < len(text)
            assert inflater.decompress(f.payload + b"\x00\x00\xff\xff") == text


def test_compression_off_by_server_option(serve):
    server = serve(ws_router(), websocket_handler=Recorder(), websocket_compression=False)
    with RawWS(server.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]) as raw:
        assert raw.status == 101
        assert "sec-websocket-extensions" not in raw.headers
    with client(server) as ws:  # offers deflate by default
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("y" * 10000)
        assert ws.recv(timeout=TIMEOUT) == "y" * 10000


@pytest.mark.parametrize("compression", ["deflate", None])
def test_websockets_client_with_compression_on_and_off(serve, compression):
    server = serve(ws_router(), websocket_handler=Recorder(), max_message_len=1 << 20)
    with client(server, compression=compression) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        if compression:
            assert ext is not None and ext.startswith("permessage-deflate")
        else:
            assert ext is None
        texts = ["small", "abc" * 10000, "".join(chr(0x400 + i % 200) for i in range(50000)),
                 "abc" * 10000, "small", "x" * 16, "x" * 15]  # repeats: context takeover
        for t in texts:
            ws.send(t)
            assert ws.recv(timeout=TIMEOUT) == t
        blob = os.urandom(30000) + bytes(30000)
        ws.send(blob)
        assert ws.recv(timeout=TIMEOUT) == blob


def test_raw_compressed_messages_both_ways(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec)
    with RawWS(server.port, headers=[("Sec-WebSocket-Extensions",
                                      "permessage-deflate; server_no_context_takeover; "
                                      "client_no_context_takeover")]) as raw:
        assert raw.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        text = ("compress me " * 500).encode()
        raw.send(OP_TEXT, deflate_message(text), rsv=4)
        f = raw.recv_data()
        assert f.opcode == OP_TEXT
        assert f.rsv == 4, "a 6000-byte repetitive echo should come back compressed"
        assert len(f.payload) < len(text) // 10
        assert inflate_message(f.payload) == text
        # a compressed fragmented message: RSV1 on the first frame only
        part = deflate_message(b"fragmented " * 100)
        raw.send(OP_BINARY, part[:10], rsv=4, fin=False)
        raw.send(OP_CONT, part[10:])
        f = raw.recv_data()
        got = inflate_message(f.payload) if f.rsv else f.payload
        assert got == b"fragmented " * 100
        # uncompressed messages are allowed too (RSV1 clear)
        raw.send(OP_TEXT, b"plain")
        f = raw.recv_data()
        # every message is compressed once negotiated, even a short one (kosoku needs it)
        assert f.rsv == 4 and inflate_message(f.payload) == b"plain"
    assert rec.wait_events(CLOSE)
    msgs = [m.data for e, m in rec.of(rec.only()) if e is MESSAGE]
    assert msgs == [text.decode(), b"fragmented " * 100, "plain"]


def test_raw_rsv1_on_a_continuation_frame_gets_1002(serve):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]) as raw:
        part = deflate_message(b"abc" * 100)
        raw.send(OP_TEXT, part[:5], rsv=4, fin=False)
        raw.send(OP_CONT, part[5:], rsv=4)
        expect_protocol_close(raw, 1002)


def test_zip_bomb_is_bounded_by_max_message_len(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec, max_message_len=65536)
    bomb = deflate_message(bytes(50 * 1024 * 1024))  # 50 MiB of zeros in ~50 KiB
    assert len(bomb) < 65536
    with RawWS(server.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]) as raw:
        raw.send(OP_BINARY, bomb, rsv=4)
        expect_protocol_close(raw, 1009)
    assert rec.wait_events(CLOSE)
    assert MESSAGE not in [e for e, _ in rec.of(rec.only())]


def test_corrupt_compressed_data_gets_1007(serve):
    server = serve(ws_router(), websocket_handler=Recorder())
    with RawWS(server.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]) as raw:
        raw.send(OP_BINARY, b"\xff\xff\xff\xff garbage", rsv=4)
        expect_protocol_close(raw, 1007)


# ================================================================================================
# Keepalive pings and slow readers
# ================================================================================================

def test_ping_interval_disconnects_a_client_that_does_not_answer(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec, websocket_ping_interval=0.3)
    with RawWS(server.port) as raw:
        t0 = time.monotonic()
        f = raw.recv_frame(timeout=3.0)
        assert f.opcode == OP_PING
        assert raw.wait_eof(3.0), "a client that never answers pings is dropped"
        assert time.monotonic() - t0 < 3.0
    assert rec.wait_events(CLOSE)
    sock = rec.only()
    assert [e for e, _ in rec.of(sock)] == [OPEN, ERROR, CLOSE]
    assert sock.close_code == 1006


def test_ping_interval_keeps_an_answering_client(serve):
    rec = Recorder()
    server = serve(ws_router(), websocket_handler=rec, websocket_ping_interval=0.2)
    with RawWS(server.port) as raw:
        pings = 0
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:
            try:
                f = raw.recv_frame(timeout=deadline - time.monotonic())
            except socket.timeout:
                break
            assert f.opcode == OP_PING
            raw.send(OP_PONG, f.payload)
            pings += 1
        assert pings >= 2
        raw.send(OP_TEXT, b"alive")
        assert raw.recv_data().payload == b"alive"
    # the websockets client answers pings by itself
    with client(server) as ws:
        time.sleep(0.8)
        ws.send("still alive")
        assert ws.recv(timeout=TIMEOUT) == "still alive"
    assert rec.wait_events(CLOSE, 2)
    msgs = [m for _, e, m in rec.events if e is MESSAGE]
    assert any(m.kind is MessageKind.PONG for m in msgs)  # pongs reach the handler too


def _flood_until_closed(ws: WebSocket, out: List[Any]) -> None:
    n = 0
    try:
        while n < 100000:
            ws.send(b"x" * 16384)
            n += 1
        out.append(("never closed", n))
    except ConnectionClosed as e:
        out.append(("closed", n, e))


def test_slow_reader_send_raises_connection_closed(serve):
    """The outgoing queue is bounded: once a client that does not read fills it, send() raises
    ConnectionClosed instead of buffering more. (What should follow is in the next test.)"""
    results: List[Any] = []

    def on_event(ws, event, message):
        if event is OPEN:
            _flood_until_closed(ws, results)

    rec = Recorder(on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec, max_send_queue=256 * 1024)
    with RawWS(server.port, rcvbuf=4096):  # never reads
        assert wait_until(lambda: bool(results))
        assert results[0][0] == "closed", results
        assert isinstance(results[0][2], ConnectionError)
        sock = rec.only()
        assert sock.closed
        with pytest.raises(ConnectionClosed):
            sock.send("more")


def test_slow_reader_is_closed_with_1008_and_logged(serve, caplog):
    results: List[Any] = []

    def on_event(ws, event, message):
        if event is OPEN:
            _flood_until_closed(ws, results)

    rec = Recorder(on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec, max_send_queue=256 * 1024)
    with caplog.at_level(logging.INFO, logger="mummyx"):
        with RawWS(server.port, rcvbuf=4096) as raw:  # never reads while the server floods
            assert wait_until(lambda: bool(results))
            closed_in_time = rec.wait_events(CLOSE, timeout=2.0)
            events = [e for e, _ in rec.of(rec.only())]
            cut_off = raw.wait_eof(1.0)
        assert rec.wait_events(CLOSE)  # by now at least: the client went away
        logged = [r for r in caplog.records if r.name.startswith("mummyx")
                  and r.levelno >= logging.WARNING]
    assert closed_in_time, f"no CLOSE while the slow client stays connected: {events}"
    assert cut_off, "the server should drop a client that stops reading"
    assert rec.only().close_code == 1008
    assert logged, "the slow client should be logged"


# ================================================================================================
# Inbound flow control
# ================================================================================================

def test_reading_pauses_while_the_handler_is_busy(serve):
    """A client sending faster than its handler consumes must be slowed down (by TCP), not
    buffered without end: while the handler is blocked, the sender must block too."""
    release = threading.Event()
    msg_len, total = 60000, 500  # 30 MB in all

    def on_event(ws, event, message):
        if event is MESSAGE and message.data[:1] == b"F":
            release.wait(TIMEOUT)

    rec = Recorder(echo=False, on_event=on_event)
    server = serve(ws_router(), websocket_handler=rec)
    sent = [0]
    with RawWS(server.port) as raw:
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        frame_first = encode_frame(OP_BINARY, b"F" + bytes(msg_len - 1))
        frame = encode_frame(OP_BINARY, bytes(msg_len))

        def sender():
            try:
                raw.sock.settimeout(3 * TIMEOUT)
                raw.sock.sendall(frame_first)
                sent[0] += 1
                for _ in range(total - 1):
                    raw.sock.sendall(frame)
                    sent[0] += 1
            except OSError:
                pass

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        try:
            time.sleep(1.0)
            sent_while_blocked = sent[0] * msg_len
        finally:
            release.set()
        t.join(3 * TIMEOUT)
        assert rec.wait_events(MESSAGE, total, timeout=3 * TIMEOUT)  # nothing lost after resuming
    # IN_HIGH (1 MiB) plus what the kernel buffers; far below the 30 MB a client could push
    assert sent_while_blocked < 12 * 1024 * 1024, f"{sent_while_blocked} bytes taken in"


# ================================================================================================
# The examples (examples/ws_*.py) keep working
# ================================================================================================

def load_example(name: str) -> Any:
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"example_{name}_{time.monotonic_ns()}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_ws_echo(serve):
    ex = load_example("ws_echo")
    server = serve(ex.router, websocket_handler=ex.websocket_handler)
    with client(server) as ws:
        assert ws.recv(timeout=TIMEOUT) == "Hello world from WebSocket!"
        ws.send("echo me")
        assert ws.recv(timeout=TIMEOUT) == "echo me"
        ws.send(b"\x00bin")
        assert ws.recv(timeout=TIMEOUT) == b"\x00bin"


def test_example_ws_chat(serve):
    import json
    ex = load_example("ws_chat")
    server = serve(ex.router)
    status, headers, body = http_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"new WebSocket(" in body
    status, _, _ = http_exchange(server.port, handshake_request())  # no ?name=
    assert status == 400

    def recv(ws):
        return json.loads(ws.recv(timeout=TIMEOUT))

    with client(server, "/ws?name=alice") as alice:
        assert "welcome, alice" in recv(alice)["text"]
        assert recv(alice) == {"type": "notice", "text": "alice joined"}
        with client(server, "/ws?name=bob") as bob:
            assert "welcome, bob" in recv(bob)["text"]
            assert recv(alice) == {"type": "notice", "text": "bob joined"}
            assert recv(bob) == {"type": "notice", "text": "bob joined"}
            bob.send("hi all")
            for ws in (alice, bob):
                assert recv(ws) == {"type": "message", "name": "bob", "text": "hi all"}
            bob.send(b"binary is ignored")
            alice.send("hi bob")
            assert recv(bob) == {"type": "message", "name": "alice", "text": "hi bob"}
        assert recv(alice) == {"type": "message", "name": "alice", "text": "hi bob"}
        assert recv(alice) == {"type": "notice", "text": "bob left"}


def test_example_ws_broadcast(serve):
    ex = load_example("ws_broadcast")
    server = serve(ex.router, websocket_handler=ex.websocket_handler)
    status, _, body = http_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and b"new WebSocket(" in body
    with client(server) as a, client(server) as b:
        assert wait_until(lambda: len(ex._clients) == 2)
        assert ex.broadcast("news") == 2
        assert a.recv(timeout=TIMEOUT) == "news" and b.recv(timeout=TIMEOUT) == "news"
        stop = ex.start_ticker(0.05)
        try:
            tick = a.recv(timeout=TIMEOUT)
            assert len(tick) == 8 and tick[2] == tick[5] == ":"
        finally:
            stop.set()
        b.close()
        assert wait_until(lambda: len(ex._clients) == 1)
    assert wait_until(lambda: not ex._clients)
    assert ex.broadcast("nobody") == 0
