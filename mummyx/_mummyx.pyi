"""Type stubs for mummyx._mummyx, the C extension (csrc/py/).

``Request`` and ``ConnectionClosed`` are re-exported by ``mummyx``; ``validate_pattern`` and
``status_reason`` are helpers that ``mummyx.server`` uses; ``Core`` is the internal engine behind
``mummyx.Server``.
"""

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Union, final, overload

from ._structures import Headers, QueryParams
from .forms import FormData

# A response header value: str as is, int in decimal, bytes decoded as Latin-1.
_HeaderValue = Union[str, int, bytes]
_Body = Union[bytes, bytearray, memoryview, str]

class Error(Exception):
    """The base class of every exception mummyx defines (BadRequest, ConnectionClosed,
    HandshakeRefused). Each also keeps its built-in base (ValueError, ConnectionError)."""

class ConnectionClosed(Error, ConnectionError):
    """The client connection is gone."""

class BadRequest(Error, ValueError):
    """The request's content is invalid (a malformed or over-limit form, say).

    A handler that lets it escape makes the client get ``status`` (400 by default, 413, 431, ...)
    and it is logged at INFO, not as an error.
    """

    status: int
    def __init__(self, message: str = "", status: int = 400) -> None:
        """``status`` is the 4xx the client gets when the handler lets this exception escape."""

@final
class Part:
    """One part of a multipart/form-data body, from iterating ``request.multipart()``.

    Only the current part is readable: once the reader has moved on, reading raises
    RuntimeError.
    """

    @property
    def name(self) -> str:
        """The form field name (the Content-Disposition ``name``)."""
    @property
    def filename(self) -> str | None:
        """The filename as sent (``filename*`` preferred), or None for a plain field.

        Untrusted: it may be empty or hold ``/``, ``\\`` or ``..``; never use it as a path.
        """
    @property
    def content_type(self) -> str | None:
        """The part's Content-Type, or None."""
    @property
    def headers(self) -> Headers:
        """The part's header fields (values decoded as UTF-8)."""
    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of the rest of this part (all of it when ``n < 0``).

        Fewer only at the part's end, ``b''`` after it. Blocks without the GIL on a streamed
        route; raises BadRequest for a malformed body, ConnectionClosed if the client leaves.
        """
    def iter_chunks(self, chunk_size: int = 65536) -> Iterator[bytes]:
        """Iterate over the rest of this part in chunks of at most ``chunk_size`` bytes."""
    def save(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], /) -> int:
        """Write the rest of this part to ``path`` in C without the GIL; return the bytes written.

        The data goes to a temporary file in the same directory, renamed into place once
        complete; on any failure nothing is left behind.
        """

@final
class MultipartReader(Iterator[Part]):
    """An iterator over the parts of a multipart/form-data body (``request.multipart()``).

    Moving to the next part skips whatever the handler left unread of the current one.
    """

    def __iter__(self) -> MultipartReader: ...
    def __next__(self) -> Part: ...

class HandshakeRefused(Error, ValueError):
    """The request is not a valid WebSocket handshake; the client was answered 400 or 426."""

@final
class WebSocket:
    """A WebSocket connection, from ``request.upgrade_to_websocket()``. Hashable."""

    def send(self, data: str | bytes | bytearray | memoryview, kind: Any = None) -> None:
        """Queue a message: str as text, bytes as binary (or as ``kind``, a MessageKind).

        Thread-safe and non-blocking; raises ConnectionClosed once the socket is closed.
        """
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake. Thread-safe; does nothing when already closing."""
    @property
    def closed(self) -> bool:
        """True once no more messages can be sent."""
    @property
    def close_code(self) -> int | None:
        """The peer's close code (1005: none given, 1006: abnormal), after CLOSE."""
    @property
    def close_reason(self) -> str | None:
        """The peer's close reason, after CLOSE."""
    @property
    def remote_addr(self) -> str:
        """The client's numeric address."""
    @property
    def subprotocol(self) -> str | None:
        """The subprotocol selected during the handshake, or None."""
    @property
    def id(self) -> int:
        """A number unique to this connection within its server."""

@final
class SSEStream:
    """A Server-Sent Events stream, from ``request.respond_sse()``. Thread-safe."""

    def send(self, data: str, *, event: str | None = None, id: str | int | None = None,
             retry: int | None = None) -> None:
        """Queue one event; raises ConnectionClosed once the stream is closed."""
    def comment(self, text: str = "") -> None:
        """Queue a comment line."""
    def send_encoded(self, payload: bytes, /) -> None:
        """Queue an event encoded by ``sse_encode`` (used by SSEChannel)."""
    def close(self) -> None:
        """End the stream cleanly."""
    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block without the GIL until the stream closes; False if the timeout passed first."""
    @property
    def closed(self) -> bool:
        """True once no more events can be sent."""
    @property
    def last_event_id(self) -> str | None:
        """The request's Last-Event-ID header, or None."""
    @property
    def id(self) -> int:
        """A number unique to this stream within its server."""

@final
class ResponseStream:
    """A response body written piece by piece, from ``request.respond_stream()``. Thread-safe.

    Chunked on HTTP/1.1, close-delimited on HTTP/1.0. ``write`` blocks (without the GIL) while
    the client is more than ``max_send_queue`` behind. As a context manager it closes the body on
    a normal exit and aborts it (cuts the connection) on an exception."""

    def write(self, data: str | bytes | bytearray | memoryview, /) -> None:
        """Queue one chunk; raises ConnectionClosed once the client is gone or after close()."""
    def close(self) -> None:
        """End the body cleanly (the connection may be reused). Idempotent."""
    def abort(self) -> None:
        """Cut the connection without ending the body: the client sees a truncated response."""
    def __enter__(self) -> ResponseStream: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: Any, /) -> None: ...
    @property
    def closed(self) -> bool:
        """True once nothing more can be written."""

@final
class Request:
    """An HTTP request given to a handler. Created by the server only.

    Attributes are built on first access and then cached.
    """

    @property
    def method(self) -> str:
        """The request method, e.g. ``'GET'``."""
    @property
    def uri(self) -> str:
        """The raw request-target as sent, e.g. ``'/search?q=a+b'``."""
    @property
    def path(self) -> str:
        """The percent-decoded path, without the query string."""
    @property
    def query(self) -> QueryParams:
        """Query parameters: ``query[name]`` is the first value, ``query.getall(name)`` all."""
    @property
    def path_params(self) -> dict[str, str]:
        """Path segments captured by ``@name`` in the route pattern."""
    @property
    def headers(self) -> Headers:
        """Request headers: case-insensitive, order-keeping, repeated names kept."""
    @property
    def body(self) -> bytes:
        """The whole request body (``b''`` when there is none)."""
    @property
    def remote_addr(self) -> str:
        """The client's numeric address (``''`` on a Unix socket)."""
    @property
    def http_version(self) -> str:
        """``'HTTP/1.0'`` or ``'HTTP/1.1'``."""
    @property
    def responded(self) -> bool:
        """True once a final response was given."""
    @property
    def status(self) -> int | None:
        """The response status, or None before ``respond()``."""
    @property
    def response_length(self) -> int:
        """Bytes of response body sent (after compression), for the access log."""
    @property
    def allow(self) -> str | None:
        """For a method-not-allowed handler: the allowed methods (``'GET, HEAD'``); else None."""
    # Two overloads rather than one Union parameter, so that a dict literal mixing value types
    # ({"X-Count": 1, "X-Name": "a"}) is checked against the Mapping form.
    @overload
    def respond(
        self,
        status: int,
        headers: Mapping[str, _HeaderValue] | None = None,
        body: _Body = b"",
    ) -> None:
        """Send the final response (status 200..999).

        ``headers`` is a mapping or an iterable of (name, value) pairs (use pairs to repeat a
        name, e.g. Set-Cookie); values are str, int or bytes. A ``str`` body is sent as UTF-8
        and, without a Content-Type, gets ``text/plain; charset=utf-8``. Non-blocking and
        thread-safe; a second call raises RuntimeError; an invalid header or status raises
        ValueError.
        """
    @overload
    def respond(
        self,
        status: int,
        headers: Iterable[tuple[str, _HeaderValue]],
        body: _Body = b"",
    ) -> None: ...
    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of the body (all the rest when ``n < 0``); ``b''`` at its end.

        On a ``stream=True`` route this blocks (without the GIL) until data arrives; raises
        ConnectionClosed when the client leaves mid-body or sent a malformed body.
        """
    def iter_body(self, chunk_size: int = 65536) -> Iterator[bytes]:
        """Iterate over the (rest of the) body in chunks of at most ``chunk_size`` bytes."""
    def save_body(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], /) -> int:
        """Write the rest of the body to ``path`` in C without the GIL; return the bytes written.

        The data goes to a temporary file in the same directory, renamed into place once
        complete; on any failure nothing is left behind.
        """
    def multipart(self, max_parts: int = 1000, max_part_headers: int = 8192) -> MultipartReader:
        """Iterate over the parts of a multipart/form-data body as they arrive.

        On a ``stream=True`` route the body is read as the iteration goes (one pass); on other
        routes the buffered body is parsed in place (each call starts again from its start).
        Raises BadRequest: 400 for another Content-Type, a bad boundary or a malformed body,
        413 for more than ``max_parts`` parts, 431 for a part header block over
        ``max_part_headers`` bytes.
        """
    def form(self, *, max_file_size: int | None = None,
             max_field_size: int | None = None) -> FormData:
        """The fields and files of an urlencoded or multipart/form-data body, read whole.

        Files are kept in memory. The limits apply to each file and to each field (to the
        whole body when urlencoded); None means none on a buffered route (the route's
        ``max_body_len`` bounds the body) and 1 MiB on a ``stream=True`` route. Over a limit
        raises BadRequest(413); another Content-Type, BadRequest(400). Cached: a second call
        returns the same FormData.
        """
    def json(self) -> Any:
        """The body parsed as JSON; BadRequest (answered 400) when it is not valid UTF-8 JSON."""
    @property
    def cookies(self) -> dict[str, str]:
        """The cookies the client sent (RFC 6265; malformed pairs skipped)."""
    def respond_stream(
        self,
        status: int = 200,
        headers: Mapping[str, _HeaderValue] | Iterable[tuple[str, _HeaderValue]] | None = None,
    ) -> ResponseStream:
        """Answer with the head now and return a ResponseStream for the body (any thread)."""
    def respond_sse(
        self,
        headers: Mapping[str, _HeaderValue] | Iterable[tuple[str, _HeaderValue]] | None = None,
    ) -> SSEStream:
        """Answer 200 with ``text/event-stream`` and return the stream (it is the response)."""
    def upgrade_to_websocket(
        self,
        handler: Callable[[WebSocket, Any, Any], Any] | None = None,
        protocols: Sequence[str] | None = None,
    ) -> WebSocket:
        """Answer the WebSocket handshake with 101 and return the WebSocket.

        ``handler`` overrides the server's ``websocket_handler``; ``protocols`` lists the
        subprotocols this route accepts. Raises RuntimeError without any handler, and
        HandshakeRefused (after answering 400 or 426) when the request is not a valid handshake.
        """

def validate_pattern(pattern: str, /) -> None:
    """Raise ValueError if ``pattern`` is not a valid route pattern."""

def status_reason(status: int, /) -> str:
    """The standard reason phrase of an HTTP status (``'Unknown'`` if there is none)."""

def sse_encode(data: str, event: str | None, id: str | int | None, retry: int | None, /) -> bytes:
    """One event in the event-stream format."""

def sse_publish(streams: list[SSEStream], data: str, event: str | None, id: str | int | None,
                retry: int | None, keep: bool, /) -> tuple[int, bytes | None]:
    """Encode one event and queue it on every open stream: (reached, payload if keep)."""

def sse_fanout(streams: list[SSEStream], payload: bytes, /) -> int:
    """Queue the same encoded event on every stream; return how many took it."""

def respond_value(request: Request, value: Any, /) -> None:
    """Respond with what a handler returned: str as text, bytes-like as octet-stream, dict or
    list as JSON; TypeError for anything else (used by mummyx.server's error path)."""

def _debug_live_requests() -> int | None:
    """How many native requests exist now, in every server of the process; ``None`` unless the
    extension was built with ``MUMMYX_DEBUG=1`` or ``MUMMYX_SANITIZE=1``."""

# ---- internal ----

_OptionValue = Union[int, float, bool, None]
OPTIONS: tuple[tuple[str, str, _OptionValue, str, _OptionValue, _OptionValue], ...]
"""The server's options, from the core's table (csrc/core/options.c): (name, kind, default, doc,
minimum, maximum). kind is "int", "size", "float" or "bool"; a default of None means automatic
or off; a bound of None means none."""

_Route = tuple[str, str, Callable[..., Any], int, bool]

@final
class Core:
    """The C server core behind mummyx.Server (internal; its API may change at any time)."""

    def __init__(
        self,
        routes: Sequence[_Route] | None,
        handler: Callable[[Request], Any] | None,
        not_found: Callable[[Request], Any] | None,
        not_allowed: Callable[[Request], Any] | None,
        on_error: Callable[[Request, BaseException], Any] | None,
        on_no_response: Callable[[Request], Any] | None,
        on_access: Callable[[Request, float], Any] | None,
        json_dumps: Callable[[Any], str] | None,
        make_headers: Callable[[list[tuple[str, str]]], Any] | None,
        make_query: Callable[[str], Any] | None,
        websocket_handler: Callable[..., Any] | None = ...,
        on_ws_error: Callable[[WebSocket, BaseException], Any] | None = ...,
        ws_support: tuple[tuple[Any, ...], tuple[Any, ...], Any] | None = ...,
        options: dict[str, int | float | bool | None] | None = ...,
    ) -> None: ...
    def listen_tcp(self, host: str | None, port: int, /) -> int:
        """Bind and listen; returns the bound port. Raises OSError."""
    def listen_unix(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], /) -> None:
        """Bind and listen on a Unix socket (a stale socket file is replaced). Raises OSError."""
    def start(self) -> None:
        """Start the I/O thread and the workers."""
    def stop(self, timeout: float, /) -> None:
        """Stop accepting, drain for up to ``timeout`` seconds, close everything, join threads."""
    def wait(self, timeout: float, /) -> bool:
        """Block up to ``timeout`` seconds (GIL released); True once stopped."""
    @property
    def port(self) -> int:
        """The bound TCP port, or 0."""
    @property
    def workers(self) -> int:
        """Worker threads, as configured (the automatic count resolved)."""
