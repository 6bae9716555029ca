"""Worker processes: a supervisor that binds the listening socket, starts N worker processes that
serve on it, and stays out of the request path.

Spawn, not fork. A worker is a fresh interpreter (``sys.executable``) that imports the application
itself, from an import string (``module:attr``) or the script that is ``__main__``. Forking the
supervisor would copy whatever threads and locks the application (or a test runner, or a
logging handler) already holds, and a lock held by a thread that does not exist in the child
never comes free: gunicorn's known hang on the logging lock. A fresh interpreter inherits only
the listening socket and stderr, and SIGHUP then also loads new code. The cost is that a live
object cannot cross: ``Server(router, processes=N)`` must be findable as a module-level variable
(see :func:`find_app`).

Sharing the port, two ways (the numbers that chose the default are in docs/architecture.md):
- ``reuse_port`` (the default for TCP): each worker binds its own ``SO_REUSEPORT`` socket and the
  kernel spreads connections over them by a hash of their addresses, evenly. The supervisor
  holds the port, bound but not listening (see :func:`bind_for_workers`). A worker that stops
  serves what was queued on its socket first; one that dies takes its queue with it.
- one socket (``reuse_port=False``, and always for a Unix socket): bound here before any worker
  exists and inherited by every worker, which registers it with ``EPOLLEXCLUSIVE``
  (csrc/core/server.c): a new connection wakes one worker, and the backlog survives a worker's
  death or restart; but the worker that wakes first takes whole bursts of connections, so the
  spread is uneven.

Everything here runs on the thread that called :func:`Supervisor.run`, which must be the main
thread (it handles SIGTERM, SIGINT and SIGHUP), and starts no thread of its own.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

logger = logging.getLogger("mummyx")

# The worker's instructions (JSON), in its environment: how to find the app, its options, which
# descriptors it inherited.
SPEC_ENV = "MUMMYX_WORKER_SPEC"
# A worker's status pipe, lines from the worker to the supervisor: READY once it serves, followed
# by a warning for the supervisor to print once (or nothing); RECYCLE when it reached
# max_requests and wants a successor. End of file before READY means it failed to start.
READY = b"ready"
RECYCLE = b"recycle"

# Replacing a worker: a death within QUICK seconds of serving (or before) counts towards a crash
# loop, which ends the supervisor after CRASH_LOOP of them in a row; deaths within WINDOW seconds
# of each other delay the next start, doubling from BACKOFF up to BACKOFF_MAX.
QUICK = 1.0
CRASH_LOOP = 5
WINDOW = 10.0
BACKOFF = 0.1
BACKOFF_MAX = 5.0
KILL_GRACE = 1.0  # after shutdown_timeout, for the worker's interpreter to exit, then SIGKILL
TICK = 0.05  # how often the supervisor looks at its workers when nothing wakes it sooner


class WorkerFailed(RuntimeError):
    """A worker process could not start, or kept dying; ``status`` is the exit status to use."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# ---- the listening socket ----

def bind_tcp(host: Optional[str], port: int, backlog: int, *, reuse_port: bool = False,
             listen: bool = True) -> socket.socket:
    """A TCP socket bound as the core binds one (the first address that works; "[::1]" and ""
    allowed), listening unless ``listen`` is false (a port held for ``reuse_port`` workers)."""
    if host and host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                               socket.AI_PASSIVE)
    last: Optional[OSError] = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            if listen:
                sock.listen(backlog)
            return sock
        except OSError as exc:
            last = exc
            sock.close()
    code = last.errno if last is not None and last.errno else errno.EADDRNOTAVAIL
    raise OSError(code, f"cannot listen on {host or '*'}:{port}: {os.strerror(code)}")


def bind_for_workers(host: Optional[str], port: int, unix: Optional[str], backlog: int,
                     reuse_port: Optional[bool]) -> Tuple[socket.socket, Optional[Dict[str, Any]]]:
    """What the supervisor binds before starting workers: (socket, the workers' ``reuse_port``
    instructions or None). ``reuse_port`` None means the default: True for TCP, where it spreads
    connections evenly (docs/architecture.md, Processes), False for a Unix socket.

    With reuse_port the socket only holds the port: bound first without SO_REUSEPORT, so that
    a port someone else holds (another server with SO_REUSEPORT included) fails here with
    EADDRINUSE instead of being silently shared, and only then marked SO_REUSEPORT so that this
    supervisor's own workers can bind beside it. It never listens, so it takes no connection.
    """
    if unix is not None:
        if reuse_port:
            raise ValueError("reuse_port is for TCP; a Unix socket is always shared")
        return bind_unix(unix, backlog), None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"invalid port: {port!r}")
    if reuse_port is False:
        return bind_tcp(host, port, backlog), None
    held = bind_tcp(host, port, backlog, listen=False)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # The address it resolved to (a name may resolve differently later), and the port (for 0).
    address, bound_port = held.getsockname()[:2]
    return held, {"host": address, "port": bound_port, "backlog": backlog}


def bind_unix(path: str, backlog: int) -> socket.socket:
    """A listening Unix socket at path; a stale socket file is replaced, other files are kept."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on unix:{path}: {exc.strerror}") from None
    return sock


# ---- finding the app in a fresh interpreter ----

def _main_ref() -> Optional[Dict[str, str]]:
    """How a worker re-runs ``__main__`` (as multiprocessing's spawn does, under the name
    ``__mp_main__``, so that its ``if __name__ == "__main__":`` block stays out)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return {"main_module": spec.name}
    path = getattr(main, "__file__", None)
    if path:
        return {"main_path": os.path.abspath(path)}
    return None


def find_app(*objects: Any) -> Optional[Dict[str, str]]:
    """Where the first of objects that a module holds at its top level lives: the worker's
    ``app`` instructions ({"module" or "main_module" or "main_path", "attr"}), or None."""
    for obj in objects:
        for name, module in list(sys.modules.items()):
            if module is None or name == "__mp_main__":
                continue
            try:
                attrs = vars(module)
            except TypeError:
                continue
            attr = next((k for k, v in list(attrs.items()) if v is obj and k.isidentifier()),
                        None)
            if attr is None:
                continue
            if name == "__main__":
                ref = _main_ref()
                if ref is not None:
                    return {**ref, "attr": attr}
                continue  # an interactive session: nothing a worker could import
            return {"module": name, "attr": attr}
    return None


# ---- the worker side ----

_in_worker_import = False  # true while a worker imports the app (Server.serve checks it)


def importing_in_worker() -> bool:
    """True while this process is a worker importing the app: a serve() then is a script's own
    call left outside ``if __name__ == "__main__":``."""
    return _in_worker_import


def _load_app(spec: Dict[str, Any]) -> Any:
    """Imports what spec["app"] names (TargetError / _ImportFailed as the CLI raises them)."""
    import runpy
    import types

    from .__main__ import TargetError, _ImportFailed, load_target

    global _in_worker_import
    app = spec["app"]
    _in_worker_import = True
    try:
        if "target" in app:  # the command line's module:attr
            return load_target(app["target"])
        if "module" in app:
            return load_target(f"{app['module']}:{app['attr']}")
        # The supervisor's __main__, re-run under another name.
        try:
            if "main_module" in app:
                namespace = runpy.run_module(app["main_module"], run_name="__mp_main__",
                                             alter_sys=False)
            else:
                namespace = runpy.run_path(app["main_path"], run_name="__mp_main__")
        except Exception as exc:
            raise _ImportFailed(app.get("main_module") or app["main_path"]) from exc
        module = types.ModuleType("__mp_main__")
        module.__dict__.update(namespace)
        sys.modules["__mp_main__"] = module
        if app["attr"] not in namespace:
            raise TargetError(f"{app.get('main_module') or app['main_path']} defines no "
                              f"{app['attr']!r} when run as a worker")
        return namespace[app["attr"]]
    finally:
        _in_worker_import = False


def worker_main() -> int:
    """A worker process: import the app, serve on the inherited socket until SIGTERM (or until
    the supervisor is gone), drain, exit. Its exit status tells the supervisor how it went."""
    from . import __main__ as cli
    from .server import Server

    spec = json.loads(os.environ.pop(SPEC_ENV))
    # A worker runs in a session of its own, away from the terminal's Ctrl-C: the supervisor
    # stops it with SIGTERM, and a stray SIGINT must not cut its drain short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for path in reversed(spec["sys_path"]):
        if path not in sys.path:
            sys.path.insert(0, path)
    if spec.get("log_level"):
        cli._setup_logging(spec["log_level"])
    try:
        target = _load_app(spec)
    except cli.TargetError as exc:
        return cli._fail(str(exc), cli.EXIT_USAGE)
    except cli._ImportFailed as exc:
        return cli._report_import_failure(exc)
    options = spec.get("options")
    notice = ""
    if isinstance(target, Server):
        server = target
        if spec.get("ignored"):  # said once, by the supervisor (see _ready)
            notice = (f"{cli.PROG}: warning: {spec['app']['attr']} is a Server, which keeps its "
                      f"own options; ignoring {', '.join(spec['ignored'])}")
    elif options is not None:
        try:
            server = Server(target, **options)
        except (TypeError, ValueError) as exc:
            return cli._fail(f"cannot create the server: {exc}", cli.EXIT_USAGE)
    else:
        return cli._fail(f"{spec['app']['attr']} is not a mummyx Server", cli.EXIT_USAGE)
    try:
        if spec.get("reuse_port"):
            where = spec["reuse_port"]
            sock = bind_tcp(where["host"], where["port"], where["backlog"], reuse_port=True)
            fd = sock.detach()
        else:
            fd = spec["fd"]
        server._serve_worker(fd, spec["status_fd"], spec["supervisor"], notice)
    except (OSError, ValueError, RuntimeError) as exc:
        return cli._fail(f"cannot serve: {exc}", cli.EXIT_ERROR)
    return 0


# ---- the supervisor side ----

_WORKER_CODE = "import sys, mummyx.supervisor as s; sys.exit(s.worker_main())"


class _Child:
    """One worker process, from its start to the moment it is reaped."""

    def __init__(self, proc: "subprocess.Popen[bytes]", status_r: int, slot: int) -> None:
        self.proc = proc
        self.status_r = status_r  # the status pipe (READY, RECYCLE); -1 once closed
        self.slot = slot
        self.ready_at: Optional[float] = None
        self.kill_at: Optional[float] = None  # set once asked to stop: SIGKILL after this
        self.replaces: Optional[_Child] = None  # a successor: the child it takes over from
        self.pending = b""  # a status line not yet complete

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close_status(self) -> None:
        if self.status_r >= 0:
            os.close(self.status_r)
            self.status_r = -1


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"exit status {status}"


class Supervisor:
    """Starts ``processes`` workers from ``spec`` and keeps them running (see the module doc).

    ``spec`` is the worker's instructions without the per-child fields; ``sock`` the listening
    socket (or, with ``reuse_port``, the port held for the workers); ``on_ready`` is called once
    every first worker serves. :meth:`run` returns the signal that ended it (SIGTERM or SIGINT)
    or raises :class:`WorkerFailed`.
    """

    def __init__(self, spec: Dict[str, Any], processes: int, sock: socket.socket, *,
                 shutdown_timeout: float, on_ready: Optional[Callable[[], None]] = None) -> None:
        self.spec = dict(spec)
        self.processes = processes
        self.sock = sock
        self.shutdown_timeout = shutdown_timeout
        self.on_ready = on_ready
        self.slots: List[Optional[_Child]] = [None] * processes
        self.successors: List[Optional[_Child]] = [None] * processes
        self.respawn_at: List[Optional[float]] = [None] * processes
        self.draining: List[_Child] = []
        self.serving = False  # every first worker has become ready
        self.stop_signal: Optional[int] = None
        self.stop_forced = False
        self.hup = False
        self.failures = 0  # quick deaths in a row
        self.deaths: List[float] = []  # recent unexpected deaths (for the backoff)
        self.notices: Set[str] = set()  # warnings the workers sent with their "ready"

    # ---- starting workers ----

    def _spawn(self, slot: int) -> _Child:
        status_r, status_w = os.pipe()
        fds = [status_w]
        spec = dict(self.spec, status_fd=status_w, supervisor=os.getpid())
        if not spec.get("reuse_port"):
            spec["fd"] = self.sock.fileno()
            fds.append(self.sock.fileno())
        env = dict(os.environ, **{SPEC_ENV: json.dumps(spec)})
        try:
            # A session of its own: the terminal's Ctrl-C reaches only the supervisor, which
            # turns it into one SIGTERM per worker (start_new_session, unlike preexec_fn, is
            # safe in a process that has threads).
            proc = subprocess.Popen([sys.executable, "-c", _WORKER_CODE], pass_fds=fds, env=env,
                                    start_new_session=True)
        finally:
            os.close(status_w)
        os.set_blocking(status_r, False)
        child = _Child(proc, status_r, slot)
        logger.debug("started worker process %d (slot %d)", child.pid, slot)
        return child

    def _all_children(self) -> List[_Child]:
        children = [c for c in self.slots if c is not None]
        children += [c for c in self.successors if c is not None]
        return children + self.draining

    def _backoff(self, now: float) -> float:
        self.deaths = [t for t in self.deaths if now - t < WINDOW] + [now]
        if len(self.deaths) <= 1:
            return 0.0
        return float(min(BACKOFF * 2.0 ** (len(self.deaths) - 2), BACKOFF_MAX))

    # ---- what happened ----

    def _read_status(self, child: _Child, now: float) -> None:
        """Takes what the worker wrote to its status pipe (READY, RECYCLE lines)."""
        if child.status_r < 0:
            return
        try:
            data = os.read(child.status_r, 4096)
        except BlockingIOError:
            return
        if not data:  # it exited (before serving, or later: reaping says how)
            child.close_status()
            return
        child.pending += data
        while b"\n" in child.pending:
            line, child.pending = child.pending.split(b"\n", 1)
            if line.startswith(READY) and child.ready_at is None:
                self._ready(child, now, line[len(READY):].decode(errors="replace"))
            elif line == RECYCLE and self.stop_signal is None:
                self._recycle(child)

    def _recycle(self, child: _Child) -> None:
        """A worker reached max_requests: a successor takes its slot, then it drains."""
        if self.slots[child.slot] is child and self.successors[child.slot] is None:
            logger.info("worker process %d reached max_requests; replacing it", child.pid)
            self._succeed(child)

    def _ready(self, child: _Child, now: float, notice: str) -> None:
        child.ready_at = now
        if notice and notice not in self.notices:  # what every worker would say, said once
            self.notices.add(notice)
            print(notice, file=sys.stderr, flush=True)
        old = child.replaces
        if old is not None:  # a SIGHUP successor serves: its predecessor may drain now
            self.successors[child.slot] = None
            self.slots[child.slot] = child
            child.replaces = None
            if old.proc.poll() is None:
                self._terminate(old, now)
                self.draining.append(old)
        if not self.serving and all(c is not None and c.ready_at for c in self.slots):
            self.serving = True
            if self.on_ready is not None:
                self.on_ready()

    def _reaped(self, child: _Child, status: int, now: float) -> None:
        child.close_status()
        if child in self.draining:
            self.draining.remove(child)
            if status not in (0, -signal.SIGTERM):
                logger.warning("worker process %d ended with %s while draining", child.pid,
                               _describe(status))
            return
        slot = child.slot
        if self.stop_signal is not None:
            self.slots[slot] = None if self.slots[slot] is child else self.slots[slot]
            if self.successors[slot] is child:
                self.successors[slot] = None
            return
        if not self.serving:  # a first worker failed to start: the whole start failed
            raise WorkerFailed(f"worker process {child.pid} failed to start ({_describe(status)})",
                               status if status > 0 else 1)
        quick = child.ready_at is None or now - child.ready_at < QUICK
        self.failures = self.failures + 1 if quick else 0
        if self.successors[slot] is child:
            self.successors[slot] = None
            logger.error("worker process %d (restart of slot %d) failed to start (%s); the old "
                         "one keeps serving", child.pid, slot, _describe(status))
        else:
            self.slots[slot] = None
            delay = self._backoff(now)
            logger.warning("worker process %d died (%s); starting another%s", child.pid,
                           _describe(status), f" in {delay:.1f} s" if delay else "")
            if self.successors[slot] is None:
                self.respawn_at[slot] = now + delay
        if self.failures >= CRASH_LOOP:
            raise WorkerFailed(f"worker processes keep dying ({self.failures} in a row, the "
                               f"last with {_describe(status)}); giving up")

    def _terminate(self, child: _Child, now: float) -> None:
        if child.kill_at is None:
            child.kill_at = now + self.shutdown_timeout + KILL_GRACE
            self._signal(child, signal.SIGTERM)

    @staticmethod
    def _signal(child: _Child, signum: int) -> None:
        try:
            child.proc.send_signal(signum)
        except ProcessLookupError:  # pragma: no cover - reaped meanwhile
            pass

    # ---- the loop ----

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            self.hup = True
        elif self.stop_signal is None:
            self.stop_signal = signum
        else:
            self.stop_forced = True  # a second Ctrl-C or SIGTERM: stop waiting

    def _restart_all(self, now: float) -> None:
        logger.info("SIGHUP: restarting %d worker processes", self.processes)
        for slot, current in enumerate(self.slots):
            if current is not None and self.successors[slot] is None:
                self._succeed(current)

    def _succeed(self, child: _Child) -> None:
        """Starts the successor of child, in its slot; child drains once the successor serves
        (_ready), so the slot never goes without a serving worker."""
        successor = self._spawn(child.slot)
        successor.replaces = child
        self.successors[child.slot] = successor

    def _step(self, now: float) -> None:
        if self.stop_signal is not None:
            for child in self._all_children():
                if self.stop_forced and child.proc.poll() is None:
                    self._signal(child, signal.SIGKILL)
                self._terminate(child, now)
        elif self.hup:
            self.hup = False
            self._restart_all(now)
        for slot in range(self.processes):
            due = self.respawn_at[slot]
            if self.stop_signal is None and due is not None and now >= due:
                self.respawn_at[slot] = None
                self.slots[slot] = self._spawn(slot)
        for child in self._all_children():
            self._read_status(child, now)
            status = child.proc.poll()
            if status is not None:
                self._reaped(child, status, now)
            elif child.kill_at is not None and now >= child.kill_at:
                logger.warning("worker process %d still running %.1f s after SIGTERM; killing it",
                               child.pid, self.shutdown_timeout + KILL_GRACE)
                self._signal(child, signal.SIGKILL)
                child.kill_at = float("inf")

    def run(self) -> int:
        """Runs until SIGTERM or SIGINT has drained every worker; returns that signal."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous: Dict[int, Any] = {}
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            for signum in handled:
                previous[signum] = signal.signal(signum, self._on_signal)
            for slot in range(self.processes):
                self.slots[slot] = self._spawn(slot)
            while True:
                self._step(time.monotonic())
                if self.stop_signal is not None and not self._all_children():
                    return self.stop_signal
                waiting = [c.status_r for c in self._all_children() if c.status_r >= 0]
                select.select([wake_r, *waiting], [], [], TICK)
                try:
                    while os.read(wake_r, 64):
                        pass
                except BlockingIOError:
                    pass
        except BaseException:
            self._kill_all()
            raise
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for handled_signum, handler in previous.items():
                signal.signal(handled_signum, handler)
            os.close(wake_r)
            os.close(wake_w)
            for child in self._all_children():
                child.close_status()

    def _kill_all(self) -> None:
        """On the way out after a failure: SIGTERM every worker, SIGKILL what is left after the
        shutdown timeout, reap them all."""
        children = [c for c in self._all_children() if c.proc.poll() is None]
        for child in children:
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout + KILL_GRACE
        for child in children:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(child, signal.SIGKILL)
                child.proc.wait()


def child_pids(supervisor_pid: int) -> List[int]:
    """The live worker processes of a supervisor (Linux /proc), for tests and tools."""
    pids: List[int] = []
    for task in os.listdir(f"/proc/{supervisor_pid}/task"):
        try:
            with open(f"/proc/{supervisor_pid}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return pids

