"""Test helpers for Server-Sent Events, independent of the code under test.

- ``EventStreamParser``: the WHATWG HTML "event stream" interpretation (section 9.2.6, "Parsing an
  event stream" and "Interpreting an event stream"), fed bytes incrementally. With
  ``strict=True`` it also raises ``SSEProtocolError`` for anything a conforming server has no
  reason to emit (invalid UTF-8, unknown fields, a non-numeric retry, an id with NUL, a stream
  that ends in the middle of an event).
- ``ChunkedDecoder``: a strict decoder of the HTTP/1.1 chunked transfer coding (RFC 9112 7.1)
  that keeps every chunk as it was framed on the wire.
- ``SSEClient``: a raw-socket client that sends one request, parses the response head, then
  de-chunks the body (or reads it until EOF on HTTP/1.0) into an ``EventStreamParser``.
"""
from __future__ import annotations

import codecs
import os
import re
import socket
import struct
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

# Under ASan+UBSan every allocation is slow, and this parser allocates per line.
DEFAULT_TIMEOUT = 15.0 if "asan" in os.environ.get("LD_PRELOAD", "") else 5.0

__all__ = ["Event", "SSEProtocolError", "EventStreamParser", "ChunkedDecoder", "SSEClient",
           "parse_stream", "expected_data"]


class SSEProtocolError(AssertionError):
    """The bytes break the event-stream or chunked-coding rules (an AssertionError so pytest
    reports it as a test failure with its message)."""


@dataclass(frozen=True)
class Event:
    """A dispatched MessageEvent: ``type`` defaults to "message"; ``last_event_id`` is the
    stream's last event ID string when the event was dispatched."""
    type: str
    data: str
    last_event_id: str = ""


_LINE_END = re.compile(r"\r\n|\r|\n")


class EventStreamParser:
    """Incremental WHATWG event-stream parser.

    ``feed(bytes)`` returns the events dispatched by those bytes. ``events``, ``comments``,
    ``retry`` (the reconnection time last set, or None) and ``last_event_id`` accumulate;
    ``records`` keeps events and comments in arrival order as ("event", Event) and
    ("comment", text) pairs. ``close()`` marks the end of the stream: pending data is
    discarded, as the specification says (strict mode raises instead).
    """

    def __init__(self, *, strict: bool = True) -> None:
        self.strict = strict
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict" if strict else "replace")
        self._text = ""  # decoded text not yet split into lines
        self._started = False  # the first character (a possible BOM) has been seen
        self._pending_cr = False  # the previous piece ended in CR: a following LF belongs to it
        self._data = ""  # data buffer
        self._event_type = ""  # event type buffer
        self._id_buffer = ""  # last event ID buffer
        self._in_event = False  # a field was seen since the last blank line
        self.last_event_id = ""  # the last event ID string
        self.retry: Optional[int] = None
        self.events: List[Event] = []
        self.comments: List[str] = []
        self.records: List[Tuple[str, Union[Event, str]]] = []
        self.closed = False

    # -- input --

    def feed(self, data: bytes) -> List[Event]:
        if self.closed:
            raise SSEProtocolError("bytes fed after the end of the stream")
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise SSEProtocolError(f"the stream is not valid UTF-8: {exc}") from None
        return self._feed_text(text)

    def close(self) -> List[Event]:
        """End of stream. Returns nothing new: an unterminated event is discarded."""
        try:
            tail = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise SSEProtocolError(f"the stream ends inside a UTF-8 sequence: {exc}") from None
        out = self._feed_text(tail)
        if self.strict and (self._text or self._in_event):
            raise SSEProtocolError(
                f"the stream ends inside an event (pending line {self._text!r}, "
                f"data {self._data!r}): it would be discarded")
        self._text = ""
        self.closed = True
        return out

    def _feed_text(self, text: str) -> List[Event]:
        if not text:
            return []
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]  # one leading BOM is skipped
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]  # the LF of a CRLF split between two reads
        buf = self._text + text
        out: List[Event] = []
        start = 0
        for m in _LINE_END.finditer(buf):
            if m.group() == "\r" and m.end() == len(buf):
                self._pending_cr = True  # a CR at the very end: an LF may follow in the next feed
            ev = self._line(buf[start:m.start()])
            start = m.end()
            if ev is not None:
                out.append(ev)
        self._text = buf[start:]
        return out

    # -- interpretation --

    def _line(self, line: str) -> Optional[Event]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            text = line[1:]
            self.comments.append(text)
            self.records.append(("comment", text))
            return None
        if ":" in line:
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        self._in_event = True
        if field == "event":
            self._event_type = value
        elif field == "data":
            self._data += value + "\n"
        elif field == "id":
            if "\0" in value:
                if self.strict:
                    raise SSEProtocolError(f"an id field with NUL: {line!r}")
            else:
                self._id_buffer = value
        elif field == "retry":
            if value and all("0" <= c <= "9" for c in value):
                self.retry = int(value)
            elif self.strict:
                raise SSEProtocolError(f"a retry field that is not ASCII digits: {line!r}")
        elif self.strict:
            raise SSEProtocolError(f"an unknown field {field!r} (line {line!r})")
        return None

    def _dispatch(self) -> Optional[Event]:
        self._in_event = False
        self.last_event_id = self._id_buffer
        if self._data == "":
            self._data = ""
            self._event_type = ""
            return None
        data = self._data[:-1] if self._data.endswith("\n") else self._data
        ev = Event(self._event_type or "message", data, self.last_event_id)
        self._data = ""
        self._event_type = ""
        self.events.append(ev)
        self.records.append(("event", ev))
        return ev


def parse_stream(data: bytes, *, strict: bool = True, final: bool = True) -> EventStreamParser:
    """Parses a whole event stream; returns the parser (events, comments, retry...)."""
    p = EventStreamParser(strict=strict)
    p.feed(data)
    if final:
        p.close()
    return p


class ChunkedDecoder:
    """Strict RFC 9112 7.1 chunked decoder. ``feed`` returns the payloads of the chunks it
    completed; ``chunks`` keeps them all, ``done`` turns True after the last chunk and its empty
    trailer section, and ``rest`` holds any bytes that followed. Chunk extensions and trailer
    fields are refused (a server has no reason to send them here)."""

    _MAX_SIZE_LINE = 32

    def __init__(self) -> None:
        self._buf = b""
        self._need: Optional[int] = None  # payload bytes still expected for the current chunk
        self.chunks: List[bytes] = []
        self.size_lines: List[bytes] = []  # each chunk-size line as sent (without CRLF)
        self.done = False
        self.rest = b""

    def feed(self, data: bytes) -> List[bytes]:
        if self.done:
            self.rest += data
            return []
        self._buf += data
        out: List[bytes] = []
        while not self.done:
            if self._need is None:
                eol = self._buf.find(b"\r\n")
                if eol < 0:
                    if len(self._buf) > self._MAX_SIZE_LINE or b"\n" in self._buf:
                        raise SSEProtocolError(f"bad chunk-size line: {self._buf[:40]!r}")
                    break
                line = self._buf[:eol]
                if not line or any(c not in b"0123456789abcdefABCDEF" for c in line):
                    raise SSEProtocolError(f"bad chunk-size line: {line!r}")
                self.size_lines.append(line)
                size = int(line, 16)
                self._buf = self._buf[eol + 2:]
                if size == 0:
                    self._need = -1  # the trailer section: must be just CRLF
                else:
                    self._need = size
            elif self._need == -1:
                if len(self._buf) < 2:
                    break
                if self._buf[:2] != b"\r\n":
                    raise SSEProtocolError(f"trailer fields or junk after the last chunk: "
                                           f"{self._buf[:40]!r}")
                self.rest = self._buf[2:]
                self._buf = b""
                self.done = True
            else:
                if len(self._buf) < self._need + 2:
                    break
                payload = self._buf[:self._need]
                if self._buf[self._need:self._need + 2] != b"\r\n":
                    raise SSEProtocolError(
                        f"chunk data not followed by CRLF: {self._buf[self._need:][:20]!r}")
                self._buf = self._buf[self._need + 2:]
                self._need = None
                self.chunks.append(payload)
                out.append(payload)
        return out

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def idle(self) -> bool:
        """True between chunks (no chunk partially received)."""
        return self._need is None and not self._buf


def read_head(sock: socket.socket, deadline: float) -> Tuple[str, int, List[Tuple[str, str]],
                                                              bytes]:
    """Reads a response head. Returns (version, status, [(lower name, value)], leftover)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete response head; got {buf[:200]!r}")
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        if not b:
            raise SSEProtocolError(f"connection closed before the head ended: {buf[:200]!r}")
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    version, status, *_ = lines[0].split(b" ", 2)
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or name != name.strip():
            raise SSEProtocolError(f"bad header line {line!r}")
        headers.append((name.decode("ascii").lower(), value.strip().decode("latin-1")))
    return version.decode(), int(status), headers, rest


class SSEClient:
    """One raw connection: sends ``method path`` (and ``pipelined`` bytes right behind it, in the
    same write) and reads the response as an event stream.

    After the constructor returns, ``status``/``headers``/``header_list`` hold the head. Then
    ``read_events``, ``read_until_end`` or ``pump`` read the body: ``chunks`` (chunked only),
    ``body`` (de-chunked bytes so far), ``parser`` (strict EventStreamParser), ``ended`` (the
    last chunk arrived, or EOF on a close-delimited body), ``eof`` (the server closed).
    """

    def __init__(self, port: int, path: str = "/", *, method: str = "GET",
                 version: str = "HTTP/1.1", headers: Optional[Dict[str, str]] = None,
                 rcvbuf: Optional[int] = None, timeout: float = DEFAULT_TIMEOUT, host: str = "127.0.0.1",
                 read_head_now: bool = True, pipelined: bytes = b"") -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect(), so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.method = method
        self.version = version
        lines = [f"{method} {path} {version}", "Host: test"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.request_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.sock.sendall(self.request_bytes + pipelined)  # one write: one segment
        self.parser = EventStreamParser(strict=True)
        self.dechunk: Optional[ChunkedDecoder] = None
        self.raw = b""  # every body byte as received (before de-chunking)
        self.body = b""
        self.ended = False
        self.eof = False
        self.status = 0
        self.leftover = b""  # bytes after a HEAD response's head (there should be none)
        self.header_list: List[Tuple[str, str]] = []
        self.headers: Dict[str, str] = {}
        if read_head_now:
            self.read_head()

    # -- head --

    def read_head(self) -> None:
        version, self.status, self.header_list, rest = read_head(
            self.sock, time.monotonic() + self.timeout)
        self.response_version = version
        for k, v in self.header_list:
            self.headers.setdefault(k, v)
        te = self.headers.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise SSEProtocolError(f"unexpected Transfer-Encoding {te!r}")
            self.dechunk = ChunkedDecoder()
        if self.method == "HEAD":
            self.ended = True
            self.leftover = rest
            return
        if rest:
            self._body_bytes(rest)

    @property
    def chunked(self) -> bool:
        return self.dechunk is not None

    @property
    def chunks(self) -> List[bytes]:
        assert self.dechunk is not None, "not a chunked body"
        return self.dechunk.chunks

    @property
    def events(self) -> List[Event]:
        return self.parser.events

    # -- body --

    def _body_bytes(self, data: bytes) -> None:
        self.raw += data
        if self.dechunk is not None:
            payloads = self.dechunk.feed(data)
            for p in payloads:
                self.body += p
                self.parser.feed(p)
            if self.dechunk.done and not self.ended:
                self.ended = True  # bytes after the last chunk stay in dechunk.rest
                self.parser.close()
        else:
            if self.ended:
                raise SSEProtocolError(f"bytes after the end: {data[:80]!r}")
            self.body += data
            self.parser.feed(data)

    def _on_eof(self) -> None:
        self.eof = True
        if self.dechunk is None and not self.ended:
            self.ended = True  # close-delimited body: EOF is its end
            self.parser.close()

    def pump(self, timeout: float = 0.0) -> bool:
        """One recv, waiting up to ``timeout``. Returns False on timeout, True otherwise."""
        if self.eof:
            return True
        self.sock.settimeout(timeout if timeout > 0 else 0.0001)
        try:
            b = self.sock.recv(262144)
        except (socket.timeout, BlockingIOError):
            return False
        except ConnectionResetError:
            b = b""
        if not b:
            self._on_eof()
        else:
            self._body_bytes(b)
        return True

    def read_for(self, seconds: float) -> None:
        """Reads whatever arrives for ``seconds``."""
        deadline = time.monotonic() + seconds
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.pump(left)

    def read_events(self, n: int, timeout: Optional[float] = None) -> List[Event]:
        """Reads until at least ``n`` events arrived in total; returns all events so far."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.parser.events) < n:
            if self.eof:
                raise SSEProtocolError(
                    f"EOF after {len(self.parser.events)} of {n} events; body {self.body[-200:]!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.parser.events)} of {n} events after the timeout; "
                                   f"body tail {self.body[-200:]!r}")
            self.pump(left)
        return self.parser.events

    def read_until_end(self, timeout: Optional[float] = None) -> None:
        """Reads until the body ends (last chunk, or EOF when close-delimited)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.ended:
            if self.eof:
                raise SSEProtocolError(f"EOF before the last chunk; raw tail {self.raw[-200:]!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the body did not end; raw tail {self.raw[-200:]!r}")
            self.pump(left)

    def read_until_eof(self, timeout: Optional[float] = None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the server did not close the connection")
            self.pump(left)

    # -- teardown --

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Closes with an RST (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self) -> "SSEClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def expected_data(sent: str) -> str:
    """What a client's MessageEvent.data is for ``sent``: CRLF and CR become LF."""
    return sent.replace("\r\n", "\n").replace("\r", "\n")

