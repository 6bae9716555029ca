"""The command line: ``python -m mummyx module:attr`` serves a Router, handler or Server.

Like ``uvicorn module:app``: the current directory goes first on ``sys.path``, ``module`` is
imported, and ``attr`` (dotted names allowed: ``app:api.router``) is looked up in it. A Router or
a callable taking a Request is wrapped in a new :class:`mummyx.Server` built from the options;
a ``Server`` instance is served as it is. The server runs until Ctrl-C (exit status 130) or
SIGTERM (exit status 0), letting in-flight requests finish first.

Exit statuses: 0 after SIGTERM, 130 after Ctrl-C, 2 for a bad command line or a target that
cannot be found, 1 when the module raises on import or the server cannot start.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any, List, NoReturn, Optional, Sequence

from . import __version__
from ._mummyx import OPTIONS
from .server import Router, Server

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process stopped by Ctrl-C

# "mummyx" when started through the console script, "python -m mummyx" otherwise.
PROG = "mummyx" if os.path.basename(sys.argv[0] if sys.argv else "") == "mummyx" \
    else "python -m mummyx"


class TargetError(Exception):
    """The module:attr target is malformed or names nothing servable (exit status 2)."""


class _ImportFailed(Exception):
    """Importing the target module raised; the traceback is printed (exit status 1)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def _option_help(name: str) -> str:
    """The help of a server option, from the core's table: its doc and, unless automatic or
    off by default (then the doc says what happens), its default."""
    for option, _kind, default, doc, *_ in OPTIONS:
        if option == name:
            return doc if default is None else f"{doc} (default: {default})"
    raise KeyError(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a mummyx Router, handler or Server from an importable module.",
        epilog=f"Example: {PROG} myapp:router --port 8000 --workers 4 --threads 16",
    )
    parser.add_argument(
        "target", metavar="module:attr",
        help="what to serve: a Router, a callable taking a Request, or a Server "
             "(attr may be dotted: app:api.router)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; IPv4 or IPv6 (default: %(default)s; "
                             "0.0.0.0 or :: for every interface)")
    parser.add_argument("--port", type=_port, default=8080,
                        help="TCP port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--unix", metavar="PATH",
                        help="listen on this Unix socket instead of --host/--port")
    parser.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                        help="worker processes, sharing the port under a supervisor (default: "
                             "$WEB_CONCURRENCY, else 1: serve in this process)")
    # None: the option is not passed on, so Server takes the core's default
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help=_option_help("workers") + "; per process")
    parser.add_argument("--max-requests", type=_positive_int, default=None, metavar="N",
                        help="with --workers: replace a worker process after it handled N "
                             "requests (a new one serves before it drains)")
    parser.add_argument("--max-requests-jitter", type=_non_negative_int, default=0, metavar="N",
                        help="add a random 0..N to --max-requests per process, so that workers "
                             "do not all restart at once (default: %(default)s)")
    parser.add_argument("--reuse-port", action=argparse.BooleanOptionalAction, default=None,
                        help="with --workers: each process binds its own SO_REUSEPORT socket, "
                             "which spreads connections evenly (the default for TCP), or "
                             "(--no-reuse-port) all share one socket")
    parser.add_argument("--max-body-len", type=_non_negative_int, default=None, metavar="N",
                        help=_option_help("max_body_len"))
    parser.add_argument("--access-log", action="store_true",
                        help="log every request to the 'mummyx.access' logger (stderr)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error", "critical"],
                        help="level of the 'mummyx' loggers (default: %(default)s)")
    parser.add_argument("--version", action="version", version=f"mummyx {__version__}")
    return parser


def split_target(target: str) -> "tuple[str, str]":
    """``"module:attr"`` as (module, attr); TargetError when it is not of that form."""
    module_name, sep, attrs = target.partition(":")
    module_name, attrs = module_name.strip(), attrs.strip()
    if not sep or not module_name or not attrs:
        raise TargetError(f"target must look like 'module:attr' (e.g. 'myapp:router'), "
                          f"not {target!r}")
    return module_name, attrs


def load_target(target: str) -> Any:
    """Imports ``module`` and returns the object ``attr`` names (``"module:attr"``).

    Raises TargetError when the target is malformed, the module does not exist or the attribute
    is missing; _ImportFailed when the module exists but raises while it is imported.
    """
    module_name, attrs = split_target(target)
    # As uvicorn does: the application is looked for in the current directory first, also when
    # started through the 'mummyx' console script (python -m already puts it on sys.path).
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the module itself (or a package on its dotted path) missing is a bad target; a
        # missing import inside the module is the application's bug and gets its traceback.
        parts = module_name.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        if exc.name in prefixes:
            raise TargetError(f"cannot import module {module_name!r}: no module named "
                              f"{exc.name!r} (looked in {cwd} and sys.path)") from None
        raise _ImportFailed(module_name) from exc
    except Exception as exc:
        raise _ImportFailed(module_name) from exc
    obj: Any = module
    path: List[str] = []
    for name in attrs.split("."):
        path.append(name)
        if not name.isidentifier():
            raise TargetError(f"invalid attribute name {'.'.join(path)!r} in {target!r}")
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {'.'.join(path)!r}") \
                from None
    if not isinstance(obj, (Server, Router)) and not callable(obj):
        raise TargetError(f"{target} is a {type(obj).__name__}; expected a mummyx Router, a "
                          f"callable taking a Request, or a mummyx Server")
    return obj


def _setup_logging(level_name: str) -> None:
    """Sends the 'mummyx' loggers to stderr, unless the application configured them itself."""
    level = getattr(logging, level_name.upper())
    log = logging.getLogger("mummyx")
    access = logging.getLogger("mummyx.access")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(level)
    if not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))  # already common log format
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def _report_import_failure(exc: _ImportFailed) -> int:
    """Prints the traceback of the app's import and says so; returns the exit status."""
    cause = exc.__cause__
    assert cause is not None
    traceback.print_exception(type(cause), cause, cause.__traceback__)
    return _fail(f"importing module {exc.args[0]!r} raised {type(cause).__name__} "
                 "(traceback above)", EXIT_ERROR)


def _serve(server: Server, args: argparse.Namespace) -> int:
    """Starts the server, prints its URL and waits for SIGTERM or Ctrl-C."""
    terminated = threading.Event()

    def on_term(signum: int, frame: Optional[FrameType]) -> None:
        terminated.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            server.start(args.port, args.host, unix=args.unix)
        except (OSError, ValueError, RuntimeError) as exc:
            return _fail(f"cannot serve: {exc}", EXIT_ERROR)
        print(f"Serving on {server.url} (Ctrl-C to stop)", flush=True)
        try:
            # Event.wait in the main thread is interrupted by signals, so Ctrl-C raises
            # KeyboardInterrupt here; the timeout keeps the wait short in any case.
            while not terminated.wait(0.5):
                pass
        finally:
            server.close()  # stops accepting, lets in-flight requests finish, joins threads
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def _processes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """--workers, else $WEB_CONCURRENCY (as uvicorn and gunicorn read it), else 1."""
    if args.workers is not None:
        return int(args.workers)
    env = os.environ.get("WEB_CONCURRENCY", "").strip()
    if not env:
        return 1
    try:
        return _positive_int(env)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"WEB_CONCURRENCY: {exc}")
        raise  # pragma: no cover - parser.error exits


def _server_options(args: argparse.Namespace) -> "dict[str, Any]":
    """The Server options the command line sets (the others keep the core's defaults)."""
    options: dict[str, Any] = {"access_log": args.access_log}
    if args.threads is not None:
        options["threads"] = args.threads
    if args.max_body_len is not None:
        options["max_body_len"] = args.max_body_len
    if args.max_requests is not None:
        options.update(max_requests=args.max_requests,
                       max_requests_jitter=args.max_requests_jitter)
    return options


def _ignored_for_server(args: argparse.Namespace) -> List[str]:
    """The flags a Server target does not take (it keeps its own options)."""
    return [flag for flag, value in (("--threads", args.threads),
                                     ("--max-body-len", args.max_body_len),
                                     ("--max-requests", args.max_requests),
                                     ("--access-log", args.access_log or None))
            if value is not None]


def _supervise(args: argparse.Namespace, processes: int) -> int:
    """--workers N > 1: this process binds the socket and supervises N worker processes, each
    importing the target itself (this one never does)."""
    from . import supervisor as sup
    from .server import OPTION_DEFAULTS, url_of

    try:
        split_target(args.target)
    except TargetError as exc:
        return _fail(str(exc), EXIT_USAGE)
    _setup_logging(args.log_level)
    backlog = int(OPTION_DEFAULTS["backlog"])
    spec: dict[str, Any] = {"app": {"target": args.target, "attr": args.target},
                            "sys_path": sys.path, "options": _server_options(args),
                            "ignored": _ignored_for_server(args), "log_level": args.log_level}
    try:
        sock, spec["reuse_port"] = sup.bind_for_workers(args.host, args.port, args.unix, backlog,
                                                        args.reuse_port)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(f"cannot serve: {exc.strerror or exc}", EXIT_ERROR)
    url = url_of(args.host, sock.getsockname()[1] if args.unix is None else 0, args.unix)
    try:
        supervisor = sup.Supervisor(
            spec, processes, sock, shutdown_timeout=10.0,
            on_ready=lambda: print(f"Serving on {url} with {processes} worker processes "
                                   "(Ctrl-C to stop)", flush=True))
        ended_by = supervisor.run()
    except sup.WorkerFailed as exc:
        return _fail(str(exc), exc.status)
    finally:
        sock.close()
        if args.unix is not None:
            try:
                os.unlink(args.unix)
            except OSError:
                pass
    return EXIT_INTERRUPTED if ended_by == signal.SIGINT else EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        processes = _processes(parser, args)
        if processes > 1:
            return _supervise(args, processes)
        try:
            target = load_target(args.target)
        except TargetError as exc:
            return _fail(str(exc), EXIT_USAGE)
        except _ImportFailed as exc:
            return _report_import_failure(exc)
        # Only now, so that a failed start leaves the logging configuration as it was.
        _setup_logging(args.log_level)
        if isinstance(target, Server):
            ignored = _ignored_for_server(args)
            if ignored:
                print(f"{PROG}: warning: {args.target} is a Server, which keeps its own "
                      f"options; ignoring {', '.join(ignored)}", file=sys.stderr)
            server = target
        else:
            try:
                server = Server(target, **_server_options(args))
            except (TypeError, ValueError) as exc:
                return _fail(f"cannot create the server: {exc}", EXIT_USAGE)
        return _serve(server, args)
    except KeyboardInterrupt:
        # Ctrl-C: the server (if any) has been closed on the way out; say nothing more.
        return EXIT_INTERRUPTED


def _run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    _run()
