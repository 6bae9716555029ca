"""Router and Server: the Python face of the C core (mummyx._mummyx.Core)."""
from __future__ import annotations

import atexit
import functools
import itertools
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union, overload

from . import _mummyx
from . import supervisor as _sup
from . import websocket as _ws
from ._structures import Headers, QueryParams
from .errors import HTTPError

logger = logging.getLogger("mummyx")
access_logger = logging.getLogger("mummyx.access")

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_UNSET: Any = object()


def _check_method(method: str) -> str:
    if not isinstance(method, str) or not method or not set(method) <= _TCHARS:
        raise ValueError(f"invalid HTTP method: {method!r}")
    return method.upper()


class Router:
    """Routes requests to handlers by method and path pattern.

    Routes are tried in registration order; the first match wins. Patterns: ``/literal``,
    ``@name`` (captures one segment into ``request.path_params``), ``*`` (any one segment),
    ``*.js`` / ``page_*`` (partial wildcards), ``**`` (one or more segments, may be followed by
    literals: ``/a/**/b``). Invalid patterns raise ``ValueError`` when registered.
    """

    def __init__(self) -> None:
        self._routes: List[Tuple[str, str, Handler, Any, bool]] = []
        self.not_found_handler: Optional[Callable[[Any], Any]] = None
        self.method_not_allowed_handler: Optional[Callable[[Any], Any]] = None
        self.error_handler: Optional[Callable[[Any, BaseException], Any]] = None

    @overload
    def add_route(self, method: str, path: str, handler: None = None, *,
                  max_body_len: Optional[int] = ..., stream: bool = ...) -> Callable[[H], H]: ...
    @overload
    def add_route(self, method: str, path: str, handler: H, *,
                  max_body_len: Optional[int] = ..., stream: bool = ...) -> H: ...
    def add_route(
        self,
        method: str,
        path: str,
        handler: Optional[Handler] = None,
        *,
        max_body_len: Any = _UNSET,
        stream: bool = False,
    ) -> Any:
        """Register ``handler`` for ``method`` and ``path``; without a handler, a decorator.

        ``max_body_len`` overrides the server's limit for this route (``None``: no limit).
        ``stream=True`` runs the handler as soon as the head is in; it reads the body as it
        arrives (``request.read()``, ``iter_body()``, ``save_body()``) instead of ``request.body``.
        """
        method = _check_method(method)
        _mummyx.validate_pattern(path)
        if max_body_len is not _UNSET and max_body_len is not None:
            if not isinstance(max_body_len, int) or max_body_len < 0:
                raise ValueError("max_body_len must be a non-negative int or None")

        def register(fn: H) -> H:
            if not callable(fn):
                raise TypeError(f"handler must be callable, not {type(fn).__name__}")
            self._routes.append((method, path, fn, max_body_len, bool(stream)))
            return fn

        if handler is None:
            return register
        register(handler)
        return handler

    @overload
    def get(self, path: str, handler: None = None, *,
            max_body_len: Optional[int] = ..., stream: bool = ...) -> Callable[[H], H]: ...
    @overload
    def get(self, path: str, handler: H, *, max_body_len: Optional[int] = ..., stream: bool = ...) -> H: ...
    def get(self, path: str, handler: Optional[Handler] = None, **kw: Any) -> Any:
        return self.add_route("GET", path, handler, **kw)

    @overload
    def head(self, path: str, handler: None = None, *,
            max_body_len: Optional[int] = ..., stream: bool = ...) -> Callable[[H], H]: ...
    @overload
    def head(self, path: str, handler: H, *, max_body_len: Optional[int] = ..., stream: bool = ...) -> H: ...
    def head(self, path: str, handler: Optional[Handler] = None, **kw: Any) -> Any:
        return self.add_route("HEAD", path, handler, **kw)

    @overload
    def post(self, path: str, handler: None = None, *,
            max_body_len: Optional[int] = ..., stream: bool = ...) -> Callable[[H], H]: ...
    @overload
    def post(self, path: str, handler: H, *, max_body_len: Optional[int] = ..., stream: bool = ...) -> H: ...
    def post(self, path: str, handler: Optional[Handler] = None, **kw: Any) -> Any:
        return self.add_route("POST", path, handler, **kw)

    @overload
    def put(self, path: str, handler: None = None, *,
            max_body_len: Optional[int] = ..., stream: bool = ...) -> Callable[[H], H]: ...
    @overload
    def put(self, path: str, handler: H, *, max_body_len: Optional[int] = ..., stream: bool = ...) -> H: ...
    def put(self, path: str, handler: Optional[Handler] = None, **kw: Any) -> Any:
        return self.add_route("PUT", path, handler, **kw)

    @overload
    def delete(self, path: str, handler: None = None, *,
            max_body_len: Optional[int] = ..., stream: bool = ...) -> Callable[[H], H]: ...
    @overload
    def delete(self, path: str, handler: H, *, max_body_len: Optional[int] = ..., stream: bool = ...) -> H: ...
    def delete(self, path: str, handler: Optional[Handler] = None, **kw: Any) -> Any:
        return self.add_route("DELETE", path, handler, **kw)

    @overload
    def patch(self, path: str, handler: None = None, *,
            max_body_len: Optional[int] = ..., stream: bool = ...) -> Callable[[H], H]: ...
    @overload
    def patch(self, path: str, handler: H, *, max_body_len: Optional[int] = ..., stream: bool = ...) -> H: ...
    def patch(self, path: str, handler: Optional[Handler] = None, **kw: Any) -> Any:
        return self.add_route("PATCH", path, handler, **kw)

    @overload
    def options(self, path: str, handler: None = None, *,
            max_body_len: Optional[int] = ..., stream: bool = ...) -> Callable[[H], H]: ...
    @overload
    def options(self, path: str, handler: H, *, max_body_len: Optional[int] = ..., stream: bool = ...) -> H: ...
    def options(self, path: str, handler: Optional[Handler] = None, **kw: Any) -> Any:
        return self.add_route("OPTIONS", path, handler, **kw)

    @property
    def routes(self) -> List[Tuple[str, str, Handler]]:
        """The registered (method, pattern, handler) triples, in matching order."""
        return [(m, p, h) for m, p, h, _, _ in self._routes]


# ---- callbacks the C core runs on worker threads ----

def _plain(request: Any, status: int) -> None:
    if not request.responded:
        try:
            request.respond(status, {"Content-Type": "text/plain; charset=utf-8"},
                            _mummyx.status_reason(status))
        except RuntimeError:
            pass  # another thread answered in the meantime


# Handler threads close() left running past its timeout, in this process (the debug-build check
# in tests/conftest.py allows for the requests they still hold).
_abandoned_handlers = 0


def _make_on_error(router: Optional[Router]) -> Callable[[Any, BaseException], None]:
    def run_error_handler(request: Any, exc: BaseException) -> None:
        error_handler = router.error_handler if router is not None else None
        if error_handler is not None and not request.responded:
            try:
                result = error_handler(request, exc)
                if result is not None and not request.responded:
                    _mummyx.respond_value(request, result)
            except Exception:
                logger.exception("error_handler raised while handling %s %s",
                                 request.method, request.uri)

    def on_error(request: Any, exc: BaseException) -> None:
        if isinstance(exc, (_mummyx.BadRequest, HTTPError)):
            # an answer the handler chose (HTTPError) or the client caused (BadRequest: a
            # malformed form, a limit): its status, no traceback; the error_handler may render it
            status = getattr(exc, "status", 400)
            logger.info("%s %s: %d %s", request.method, request.uri, status, exc)
            run_error_handler(request, exc)
            if not request.responded:
                headers = [("Content-Type", "text/plain; charset=utf-8")]
                if isinstance(exc, HTTPError):
                    if any(n.lower() == "content-type" for n, _ in exc.headers):
                        headers = []
                    headers += exc.headers
                    body = exc.body()
                else:
                    body = f"{_mummyx.status_reason(status)}: {exc}"
                try:
                    request.respond(status, headers, body)
                except (RuntimeError, ValueError):
                    _plain(request, status)
            return
        if isinstance(exc, (_mummyx.HandshakeRefused, _mummyx.ConnectionClosed)) and (
                request.responded or isinstance(exc, _mummyx.ConnectionClosed)):
            # the client's doing (a bad handshake, a vanished or malformed upload), not a bug
            logger.info("%s %s: %s", request.method, request.uri, exc)
            _plain(request, 500)
            return
        logger.error("handler for %s %s raised", request.method, request.uri,
                     exc_info=(type(exc), exc, exc.__traceback__))
        run_error_handler(request, exc)
        _plain(request, 500)
    return on_error


def _on_ws_error(websocket: Any, exc: BaseException) -> None:
    if isinstance(exc, _mummyx.ConnectionClosed):
        logger.warning("websocket %s from %s: %s", websocket.id, websocket.remote_addr, exc)
        return
    logger.error("websocket handler raised (connection %s from %s)", websocket.id,
                 websocket.remote_addr, exc_info=(type(exc), exc, exc.__traceback__))


def _on_no_response(request: Any) -> None:
    logger.warning("handler for %s %s returned without responding; sent 500",
                   request.method, request.uri)
    _plain(request, 500)


def _on_access(request: Any, seconds: float) -> None:
    if not access_logger.isEnabledFor(logging.INFO):
        return
    now = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    status = request.status if request.status is not None else "-"
    access_logger.info('%s - - [%s] "%s %s %s" %s %d %.6f', request.remote_addr or "-", now,
                       request.method, request.uri, request.http_version, status,
                       request.response_length, seconds)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _make_headers(items: List[Tuple[str, str]]) -> Headers:
    return Headers(items)


def _make_query(qs: str) -> QueryParams:
    return QueryParams(qs)


def _normalise(kind: str, value: Any) -> Any:
    # What Server has always accepted: anything for a switch, any number for seconds (None only
    # where the table allows it: the core says so).
    if kind == "bool":
        return bool(value)
    if kind == "float" and value is not None:
        return float(value)
    return value


def url_of(host: Optional[str], port: int, unix: Optional[str]) -> str:
    """``http://host:port`` to reach a server bound to host and port (``unix:/path``)."""
    if unix is not None:
        return f"unix:{unix}"
    host = host or "127.0.0.1"
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


class _Recycler:
    """``max_requests``: counts handler calls and, at the limit (plus up to ``jitter``, drawn
    once per process so that workers started together do not all recycle together), asks the
    supervisor once for a replacement, through the worker's status pipe. The supervisor starts
    the new worker and drains this one once the new one serves. Without a supervisor (one
    process) nothing asks, and nothing happens."""

    def __init__(self, limit: int, jitter: int) -> None:
        self.limit = limit + (random.randint(0, jitter) if jitter else 0)
        self._calls = itertools.count(1)  # next() on a count is atomic under the GIL
        self.status_fd = -1

    def tick(self) -> None:
        if next(self._calls) == self.limit and self.status_fd >= 0:
            try:
                os.write(self.status_fd, _sup.RECYCLE + b"\n")
            except OSError:  # pragma: no cover - the supervisor is gone: nothing to ask
                pass

    def counting(self, handler: Handler) -> Handler:
        tick = self.tick

        @functools.wraps(handler)
        def counted(request: Any) -> Any:
            tick()
            return handler(request)
        return counted


_UNGUARDED_SERVE = (
    "serve() was called while a worker process imported the app: the script serves at import "
    "time. Put the serve() call under `if __name__ == \"__main__\":`, as the worker processes "
    "re-run the script under another name to find the app")


# Started servers stay referenced until closed (like running threads), so one is never collected
# while its native threads run, and the atexit hook can join them all.
_live_servers: "set[Server]" = set()


@atexit.register
def _close_all() -> None:
    # Native workers must be joined before the interpreter finalizes (STYLE rule 6).
    for server in list(_live_servers):
        try:
            server.close(timeout=1.0)
        except Exception:  # pragma: no cover - best effort at exit
            pass


# The server's options as the C core defines them (csrc/core/options.c): name -> default, the one
# place each default is written. None means automatic (workers) or off (the optional timeouts).
OPTION_DEFAULTS: Dict[str, Any] = {name: default for name, _, default, *_ in _mummyx.OPTIONS}
_D = OPTION_DEFAULTS


class Server:
    """An HTTP/1.1 server running ``handler`` (a Router, or any callable taking a Request).

    The C core runs one I/O thread and ``threads`` native worker threads; handlers may block.
    ``processes=N`` (N > 1) makes :meth:`serve` a supervisor of N worker processes, each one
    such server, sharing one listening socket (see :mod:`mummyx.supervisor`). Every option's
    default and meaning is in ``mummyx._mummyx.OPTIONS`` (also ``OPTION_DEFAULTS``); the table
    calls the thread count ``workers``, the name ``threads=`` replaced (``workers=`` still
    works, with a DeprecationWarning).
    """

    def __init__(
        self,
        handler: Union[Router, Callable[[Any], Any]],
        *,
        websocket_handler: Optional[Callable[..., Any]] = None,
        threads: Optional[int] = _D["workers"],
        processes: int = 1,
        reuse_port: Optional[bool] = None,
        max_requests: Optional[int] = None,
        max_requests_jitter: int = 0,
        workers: Optional[int] = _D["workers"],
        max_headers_len: int = _D["max_headers_len"],
        max_body_len: int = _D["max_body_len"],
        max_message_len: int = _D["max_message_len"],
        compression: bool = _D["compression"],
        access_log: bool = False,
        header_timeout: float = _D["header_timeout"],
        body_timeout: float = _D["body_timeout"],
        write_timeout: float = _D["write_timeout"],
        max_queue_time: Optional[float] = _D["max_queue_time"],
        shutdown_timeout: float = 10.0,
        idle_timeout: float = _D["idle_timeout"],
        max_pipeline: int = _D["max_pipeline"],
        max_connections: int = _D["max_connections"],
        backlog: int = _D["backlog"],
        max_send_queue: int = _D["max_send_queue"],
        sse_heartbeat: float = _D["sse_heartbeat"],
        websocket_compression: bool = _D["websocket_compression"],
        websocket_ping_interval: Optional[float] = _D["websocket_ping_interval"],
        websocket_close_timeout: float = _D["websocket_close_timeout"],
    ) -> None:
        if workers is not None:
            warnings.warn("Server(workers=N) is now Server(threads=N) (handler threads per "
                          "process; processes=N starts worker processes)", DeprecationWarning,
                          stacklevel=2)
            if threads is not None and threads != workers:
                raise TypeError("give threads= or workers= (its old name), not both")
            threads = workers
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be an int of at least 1, not {processes!r}")
        for name, value, least in (("max_requests", max_requests, 1),
                                   ("max_requests_jitter", max_requests_jitter, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < least):
                raise ValueError(f"{name} must be an int of at least {least}, not {value!r}")
        # The table's options by name, read off the parameters (so that adding one to the table
        # and to the signature is all it takes); the core checks each against the table.
        given = dict(locals(), workers=threads)
        options = {name: _normalise(kind, given[name]) for name, kind, *_ in _mummyx.OPTIONS}
        if not isinstance(handler, Router) and not callable(handler):
            raise TypeError("handler must be a Router or a callable taking a Request")
        self.handler = handler
        self.websocket_handler = websocket_handler
        self.max_message_len = max_message_len
        self.access_log = access_log
        self.shutdown_timeout = float(shutdown_timeout)
        router = handler if isinstance(handler, Router) else None
        # max_requests: every handler call counts towards the worker process's recycling.
        self._recycler = _Recycler(max_requests, max_requests_jitter) if max_requests else None
        count = self._recycler.counting if self._recycler else (lambda h: h)
        routes = None
        if router is not None:
            routes = [
                (m, p, count(h), max_body_len if mb is _UNSET else (-1 if mb is None else mb), st)
                for m, p, h, mb, st in router._routes
            ]
        self._core = _mummyx.Core(
            routes,
            None if isinstance(handler, Router) else count(handler),
            router.not_found_handler if router is not None else None,
            router.method_not_allowed_handler if router is not None else None,
            _make_on_error(router),
            _on_no_response,
            _on_access if access_log else None,
            _json_dumps,
            _make_headers,
            _make_query,
            websocket_handler=websocket_handler,
            on_ws_error=_on_ws_error,
            ws_support=_ws.SUPPORT,
            options=options,
        )
        self.threads: int = self._core.workers
        self.workers: int = self.threads  # the old name of threads
        self.processes = processes
        self.reuse_port = reuse_port  # None: the default (for TCP yes, see mummyx.supervisor)
        # What a worker process passes to Server() to make this one again (plain values only).
        self._worker_options: Dict[str, Any] = {
            ("threads" if name == "workers" else name): value for name, value in options.items()}
        self._worker_options.update(access_log=bool(access_log),
                                    shutdown_timeout=self.shutdown_timeout,
                                    max_requests=max_requests,
                                    max_requests_jitter=max_requests_jitter)
        self._supervised = False  # serving as a worker process
        self._host: Optional[str] = None
        self._unix: Optional[str] = None
        self._started = False
        self._closed = False
        self._lock = threading.Lock()

    # ---- lifecycle ----

    def _check_startable(self) -> None:
        if self._started:
            raise RuntimeError("server already started")
        if self._closed:
            raise RuntimeError("server is closed")

    def _bind_and_start(self, port: int, host: Optional[str], unix: Optional[str],
                        fd: Optional[int] = None) -> None:
        with self._lock:
            self._check_startable()
            if self.processes > 1 and fd is None:
                raise RuntimeError(f"processes={self.processes} runs worker processes under "
                                   "serve(), which supervises them; start() serves in this "
                                   "process only (use processes=1)")
            if fd is not None:
                self._core.listen_fd(fd)
            elif unix is not None:
                self._core.listen_unix(os.fspath(unix))
                self._unix = os.fspath(unix)
            else:
                if not isinstance(port, int) or not 0 <= port <= 65535:
                    raise ValueError(f"invalid port: {port!r}")
                self._core.listen_tcp(host, port)
                self._host = host
            self._core.start()
            self._started = True
            _live_servers.add(self)

    def start(self, port: int = 0, host: str = "127.0.0.1", *, unix: Optional[str] = None) -> "Server":
        """Bind and serve in the background; returns the server (``port``, ``url``)."""
        self._bind_and_start(port, host, unix)
        return self

    def serve(self, port: int = 8080, host: str = "localhost", *, unix: Optional[str] = None) -> None:
        """Bind and serve until Ctrl-C (raises KeyboardInterrupt after draining) or SIGTERM
        (returns normally after draining). A handler still running ``shutdown_timeout`` seconds
        into the drain is not waited for: its client is cut off, serve() returns, and the
        process can exit with the handler's thread still inside it.

        With ``processes=N`` (N > 1) this process becomes the supervisor of N worker processes
        and must be the main thread; each worker imports the app afresh, so the Server (or its
        Router) must be a module-level variable of an importable module or of the script run
        (whose ``serve()`` call must then sit under ``if __name__ == "__main__":``). Raises
        :class:`mummyx.supervisor.WorkerFailed` when a worker cannot start or workers keep dying.
        """
        if self.processes > 1:
            self._serve_processes(port, host, unix)
            return
        if _sup.importing_in_worker():
            raise RuntimeError(_UNGUARDED_SERVE)
        self._bind_and_start(port, host, unix)
        terminated = threading.Event()
        previous = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            def on_term(signum: int, frame: Any) -> None:
                terminated.set()
            try:
                previous = signal.signal(signal.SIGTERM, on_term)
            except (ValueError, OSError):  # pragma: no cover
                in_main = False
        logger.info("serving on %s", self.url)
        try:
            while not terminated.is_set():
                if self._core.wait(0.2):
                    break
        except BaseException:
            self.close()
            raise
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
        self.close()

    def _serve_processes(self, port: int, host: str, unix: Optional[str]) -> None:
        """serve() with processes > 1: this process supervises, the workers serve."""
        if _sup.importing_in_worker():
            raise RuntimeError(_UNGUARDED_SERVE)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(f"processes={self.processes}: serve() must run in the main thread, "
                               "where the supervisor handles SIGTERM, SIGINT and SIGHUP")
        with self._lock:
            self._check_startable()
            self._started = True  # a supervisor serves once, as a server does
        # The Server itself, as the module made it; else its handler, given this one's options.
        app, options = _sup.find_app(self), None
        if app is None and self.websocket_handler is None:
            app, options = _sup.find_app(self.handler), self._worker_options
        if app is None:
            raise RuntimeError(
                f"processes={self.processes} starts each worker process as a fresh interpreter, "
                "which must import the app: assign the Server (or its Router, when there is no "
                "websocket_handler) to a module-level variable of an importable module or of "
                "the script being run, or serve it with `python -m mummyx module:attr "
                f"--workers {self.processes}`")
        sock, reuse = _sup.bind_for_workers(host, port, None if unix is None else os.fspath(unix),
                                            int(self._worker_options["backlog"]),
                                            self.reuse_port)
        spec: Dict[str, Any] = {"app": app, "sys_path": sys.path, "options": options,
                                "reuse_port": reuse}
        try:
            self._host, self._unix = host, (os.fspath(unix) if unix is not None else None)
            self._supervisor_port = sock.getsockname()[1] if unix is None else 0
            supervisor = _sup.Supervisor(
                spec, self.processes, sock, shutdown_timeout=self.shutdown_timeout,
                on_ready=lambda: logger.info("serving on %s with %d worker processes",
                                             self.url, self.processes))
            ended_by = supervisor.run()
        finally:
            sock.close()
            if unix is not None:
                try:
                    os.unlink(unix)
                except OSError:
                    pass
            self._closed = True
        if ended_by == signal.SIGINT:
            raise KeyboardInterrupt

    def _serve_worker(self, fd: int, status_fd: int, supervisor_pid: int, notice: str = "") -> None:
        """Serves as one worker process: on the inherited listening socket fd, telling the
        supervisor through status_fd once serving (with a notice for it to print once), until
        SIGTERM or until the supervisor is gone."""
        self._supervised = True
        self._bind_and_start(0, None, None, fd=fd)
        terminated = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.set())
        try:
            os.write(status_fd, _sup.READY + notice.encode() + b"\n")
            if self._recycler is not None:
                self._recycler.status_fd = status_fd  # kept open: RECYCLE goes there later
            else:
                os.close(status_fd)
            while not terminated.is_set() and os.getppid() == supervisor_pid:
                if self._core.wait(0.2):
                    break
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.close()

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, let in-flight requests finish (up to ``timeout`` seconds, by default
        ``shutdown_timeout``), then close every connection and join every thread."""
        if timeout is None:
            timeout = self.shutdown_timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._started:
            left = self._core.stop(float(timeout))
            if left:
                global _abandoned_handlers
                _abandoned_handlers += left
                logger.warning("%d handler thread(s) still running %.1f s after the shutdown "
                               "began; not waiting for them", left, timeout)
        _live_servers.discard(self)

    def __enter__(self) -> "Server":
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- address ----

    @property
    def port(self) -> int:
        """The bound TCP port (0 before start or for a Unix socket)."""
        return int(self._core.port) or getattr(self, "_supervisor_port", 0)

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound address (``unix:/path`` for a Unix socket)."""
        return url_of(self._host, self.port, self._unix)

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._started else "new")
        where = self.url if self._started else ""
        return f"<mummyx.Server {state} {where}>".replace("  ", " ")
