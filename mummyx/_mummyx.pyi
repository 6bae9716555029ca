"""Type stubs for mummyx._mummyx, the C extension (csrc/py/).

``Request`` and ``ConnectionClosed`` are re-exported by ``mummyx``; ``validate_pattern`` and
``status_reason`` are helpers that ``mummyx.server`` uses; ``Core`` is the internal engine behind
``mummyx.Server``.
"""

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union, final, overload

from ._structures import Headers, QueryParams

# A response header value: str as is, int in decimal, bytes decoded as Latin-1.
_HeaderValue = Union[str, int, bytes]
_Body = Union[bytes, bytearray, memoryview, str]

class ConnectionClosed(ConnectionError):
    """The client connection is gone."""

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

def validate_pattern(pattern: str, /) -> None:
    """Raise ValueError if ``pattern`` is not a valid route pattern."""

def status_reason(status: int, /) -> str:
    """The standard reason phrase of an HTTP status (``'Unknown'`` if there is none)."""

# ---- internal ----

_Route = tuple[str, str, Callable[..., Any], int]

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
        workers: int = ...,
        max_headers_len: int = ...,
        max_body_len: int = ...,
        compression: bool = ...,
        header_timeout: float = ...,
        idle_timeout: float = ...,
        max_pipeline: int = ...,
        max_connections: int = ...,
        backlog: int = ...,
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
