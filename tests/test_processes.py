"""Worker processes (mummyx/supervisor.py): real supervisors, real worker processes, real signals.

Each test writes a small app into a temporary directory and starts a supervisor there, either
through the command line (``python -m mummyx app:router --workers 2``) or through a script
calling ``Server(router, processes=2).serve()``. The app's ``/`` answers with the worker's pid,
so a test sees which process served it. Every process a test starts (the supervisor and, through
/proc, its workers) is killed when it ends, and every wait is bounded.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import pytest

import mummyx
from mummyx.supervisor import child_pids

START_TIMEOUT = 20.0  # seconds for a supervisor and its workers to start serving
STOP_TIMEOUT = 10.0

APP = textwrap.dedent('''
    import os, time
    from mummyx import Router, Server

    router = Router()

    @router.get("/")
    def index(request):
        return str(os.getpid())

    @router.get("/slow")
    def slow(request):
        time.sleep(float(request.query.get("s", "0.5")))
        return str(os.getpid())

    @router.get("/stuck")
    def stuck(request):
        time.sleep(60)
        return "too late"

    server = Server(router, processes=2, threads=4, shutdown_timeout=1.0)

    if __name__ == "__main__":
        server.serve(int(os.environ["PORT"]), "127.0.0.1")
''')

SINGLE = textwrap.dedent('''
    import os, sys, time
    from mummyx import Router, Server

    router = Router()

    @router.get("/stuck")
    def stuck(request):
        time.sleep(60)
        return "too late"

    if __name__ == "__main__":
        Server(router, threads=2, shutdown_timeout=1.0).serve(int(os.environ["PORT"]), "127.0.0.1")
        print("serve returned", flush=True)
''')


def _env(port: int, **extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    root = str(Path(mummyx.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env["PORT"] = str(port)
    env.pop("WEB_CONCURRENCY", None)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str = "/", timeout: float = 5.0) -> Tuple[int, str]:
    """One request on a new connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


class Supervised:
    """A supervisor process (CLI or script) and, through /proc, its workers."""

    def __init__(self, cwd: Path, args: List[str], port: int, **env: str) -> None:
        self.port = port
        self.out = open(cwd / f"out-{port}.txt", "w+")
        self.err = open(cwd / f"err-{port}.txt", "w+")
        self.proc = subprocess.Popen([sys.executable, *args], cwd=str(cwd), env=_env(port, **env),
                                     stdout=self.out, stderr=self.err)
        self.seen: Set[int] = set()  # every worker pid ever seen, to kill them all at the end

    def workers(self) -> List[int]:
        try:
            pids = child_pids(self.proc.pid)
        except OSError:
            return []
        self.seen.update(pids)
        return sorted(pids)

    def wait_serving(self, workers: int = 2) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the supervisor exited with {self.proc.returncode}:\n{self.stderr}")
            if len(self.workers()) == workers:
                try:
                    if get(self.port, timeout=1.0)[0] == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        pytest.fail(f"not serving with {workers} workers within {START_TIMEOUT} s:\n{self.stderr}")

    @property
    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    @property
    def stdout(self) -> str:
        self.out.seek(0)
        return self.out.read()

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        self.workers()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        for pid in self.seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.out.close()
        self.err.close()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "single.py").write_text(SINGLE)
    (tmp_path / "broken.py").write_text("raise RuntimeError('the app failed to import')\n")
    return tmp_path


@pytest.fixture
def supervise(app_dir: Path) -> Iterator[Callable[..., Supervised]]:
    started: List[Supervised] = []

    def start(*args: str, port: Optional[int] = None, wait: bool = True, **env: str) -> Supervised:
        port = port or free_port()
        sup = Supervised(app_dir, [*args, "--port", str(port)] if args[0] == "-m" else list(args),
                         port, **env)
        started.append(sup)
        if wait:
            sup.wait_serving()
        return sup

    yield start
    for sup in started:
        sup.cleanup()


class Load:
    """Threads sending requests on new connections until stopped; counts outcomes per pid."""

    def __init__(self, port: int, threads: int = 8, path: str = "/") -> None:
        self.port, self.path = port, path
        self.ok: Dict[int, int] = {}
        self.failed: List[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = get(self.port, self.path)
                with self._lock:
                    if status == 200:
                        self.ok[int(body)] = self.ok.get(int(body), 0) + 1
                    else:
                        self.failed.append(f"status {status}")
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failed.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10.0)

    @property
    def total(self) -> int:
        return sum(self.ok.values())


# ---- starting ----

def test_cli_workers_serve_from_two_processes(supervise) -> None:
    sup = supervise("-m", "mummyx", "app:router", "--workers", "2", "--threads", "2")
    workers = sup.workers()
    assert len(workers) == 2
    # Slow requests keep a worker's threads busy, so the other process gets its share.
    pids: Set[int] = set()
    deadline = time.monotonic() + 10.0
    while len(pids) < 2 and time.monotonic() < deadline:
        results: List[int] = []
        threads = [threading.Thread(target=lambda: results.append(int(get(sup.port, "/slow?s=0.3")[1])))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10.0)
        pids.update(results)
    assert pids == set(workers), (pids, workers)
    assert f"with 2 worker processes" in sup.stdout
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.stderr


def test_startup_failure_exits_fast_with_the_workers_error(supervise) -> None:
    t0 = time.monotonic()
    sup = supervise("-m", "mummyx", "broken:router", "--workers", "2", wait=False)
    status = sup.wait(START_TIMEOUT)
    assert status == 1
    assert time.monotonic() - t0 < 10.0
    assert "RuntimeError: the app failed to import" in sup.stderr
    assert "failed to start" in sup.stderr
    assert not sup.workers()


def test_port_in_use_fails_in_the_supervisor(supervise) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sup = supervise("-m", "mummyx", "app:router", "--workers", "2",
                        port=taken.getsockname()[1], wait=False)
        assert sup.wait(START_TIMEOUT) == 1
    assert "cannot serve" in sup.stderr and "in use" in sup.stderr


def test_server_processes_from_a_script(supervise) -> None:
    sup = supervise("app.py")
    assert len(sup.workers()) == 2
    status, body = get(sup.port)
    assert status == 200 and int(body) in sup.workers()
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.stderr
    assert not sup.workers()


def test_server_processes_without_a_module_level_app_says_so(app_dir: Path) -> None:
    code = ("from mummyx import Router, Server\n"
            "def main():\n"
            "    router = Router()\n"
            "    Server(router, processes=2).serve(0)\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=str(app_dir), env=_env(0),
                            capture_output=True, text=True, timeout=START_TIMEOUT)
    assert result.returncode == 1
    assert "must import the app" in result.stderr
    assert "module-level variable" in result.stderr


def test_start_refuses_processes() -> None:
    server = mummyx.Server(lambda r: "x", processes=2)
    with pytest.raises(RuntimeError, match="serve"):
        server.start()
    server.close()


def test_workers_is_deprecated_for_threads() -> None:
    with pytest.warns(DeprecationWarning, match="threads="):
        server = mummyx.Server(lambda r: "x", workers=3)
    assert server.threads == 3 and server.workers == 3
    assert mummyx.Server(lambda r: "x", threads=5).threads == 5
    with pytest.raises(ValueError, match="processes"):
        mummyx.Server(lambda r: "x", processes=0)


# ---- supervision ----

# The two ways to share the port: a socket per worker (the default), one inherited socket.
SHARING = [["--reuse-port"], ["--no-reuse-port"]]


@pytest.mark.parametrize("sharing", SHARING)
def test_a_killed_worker_is_replaced_within_a_second_under_load(supervise,
                                                                 sharing: List[str]) -> None:
    sup = supervise("-m", "mummyx", "app:router", "--workers", "2", *sharing)
    before = sup.workers()
    load = Load(sup.port)
    try:
        time.sleep(0.5)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        replaced = None
        while time.monotonic() - t0 < 5.0:
            now = sup.workers()
            if len(now) == 2 and victim not in now:
                replaced = time.monotonic() - t0
                break
            time.sleep(0.02)
        time.sleep(0.5)
        served_before_stop = load.total
    finally:
        load.stop()
    assert replaced is not None and replaced < 1.0, f"replaced after {replaced}"
    # Only connections the killed worker held (or, with reuse_port, had queued) can fail.
    assert len(load.failed) <= 8, load.failed
    assert served_before_stop > 50
    assert "died (signal SIGKILL)" in sup.stderr
    new = [p for p in sup.workers() if p not in before][0]
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and new not in load.ok:
        status, body = get(sup.port, "/slow?s=0.2")
        load.ok[int(body)] = 1
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.stderr


def test_sigterm_drains_every_worker(supervise) -> None:
    sup = supervise("-m", "mummyx", "app:router", "--workers", "2", "--threads", "2")
    results: List[Tuple[int, str]] = []
    threads = [threading.Thread(target=lambda: results.append(get(sup.port, "/slow?s=1.0")))
               for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.4)  # the requests are in their handlers
    sup.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(10.0)
    assert sup.wait() == 0, sup.stderr
    assert [status for status, _ in results] == [200] * 4
    assert not sup.workers()


def test_sigint_drains_and_exits_130(supervise) -> None:
    sup = supervise("-m", "mummyx", "app:router", "--workers", "2")
    workers = sup.workers()
    sup.proc.send_signal(signal.SIGINT)
    assert sup.wait() == 130, sup.stderr
    assert "Traceback" not in sup.stderr
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except OSError:
        return True


def _sigterm_with_a_stuck_request(sup: Supervised) -> Tuple[float, List[object]]:
    """Sends SIGTERM while a request sits in /stuck (time.sleep(60)); checks the exit status is
    0 and returns (seconds the exit took, [what the stuck request got])."""
    result: List[object] = []

    def call() -> None:
        try:
            result.append(get(sup.port, "/stuck", timeout=10.0))
        except Exception as exc:
            result.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.4)  # the request is in its handler
    t0 = time.monotonic()
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.stderr
    seconds = time.monotonic() - t0
    caller.join(10.0)
    return seconds, result


def test_a_stuck_worker_is_stopped_in_bounded_time(supervise) -> None:
    sup = supervise("app.py")  # shutdown_timeout=1.0
    seconds, result = _sigterm_with_a_stuck_request(sup)
    assert seconds < 4.0
    assert result and not (isinstance(result[0], tuple) and result[0][0] == 200)
    assert not sup.workers()


def test_single_process_serve_returns_despite_a_stuck_handler(supervise, app_dir: Path) -> None:
    port = free_port()
    sup = Supervised(app_dir, ["single.py"], port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                break
            except OSError:
                assert time.monotonic() < deadline, sup.stderr
                time.sleep(0.05)
        seconds, result = _sigterm_with_a_stuck_request(sup)
        assert seconds < 3.0  # shutdown_timeout=1.0, then 0.25 s for the workers
        assert "serve returned" in sup.stdout
        assert "1 handler thread(s) still running" in sup.stderr
        assert result and not (isinstance(result[0], tuple) and result[0][0] == 200)
    finally:
        sup.cleanup()



# ---- restarts ----


@pytest.mark.parametrize("sharing", SHARING)
def test_sighup_replaces_every_worker_without_a_failed_request(supervise,
                                                                sharing: List[str]) -> None:
    sup = supervise("-m", "mummyx", "app:router", "--workers", "2", *sharing)
    before = set(sup.workers())
    load = Load(sup.port)
    try:
        time.sleep(0.3)
        sup.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            now = set(sup.workers())
            if len(now) == 2 and not now & before:
                break
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        load.stop()
    after = set(sup.workers())
    assert len(after) == 2 and not after & before, (before, after)
    assert load.failed == [], load.failed[:5]
    served_by = set(load.ok)
    assert served_by & before and served_by & after, (served_by, before, after)
    assert "SIGHUP: restarting 2 worker processes" in sup.stderr
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.stderr


def test_max_requests_recycles_workers_gracefully(supervise) -> None:
    sup = supervise("-m", "mummyx", "app:router", "--workers", "2", "--max-requests", "20",
                    "--max-requests-jitter", "5")
    first = set(sup.workers())
    load = Load(sup.port, threads=4)
    try:
        # Two generations of workers: the first two recycled, and their successors too.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and len(set(load.ok) - first) < 4:
            time.sleep(0.05)
    finally:
        load.stop()
    assert load.failed == [], load.failed[:5]
    assert len(set(load.ok) - first) >= 4, load.ok
    assert sup.stderr.count("reached max_requests; replacing it") >= 4, sup.stderr
    # a recycled worker drained and exited: the supervisor keeps exactly two
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and len(sup.workers()) != 2:
        time.sleep(0.05)
    assert len(sup.workers()) == 2 and not set(sup.workers()) & first
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.stderr


def test_workers_exit_when_the_supervisor_is_killed(supervise) -> None:
    sup = supervise("-m", "mummyx", "app:router", "--workers", "2")
    workers = sup.workers()
    sup.proc.kill()
    sup.proc.wait(STOP_TIMEOUT)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and not _is_zombie(p)
                                              for p in workers):
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{p}") and not _is_zombie(p) for p in workers)


def test_a_script_serving_outside_its_main_guard_is_told_why(app_dir: Path) -> None:
    (app_dir / "unguarded.py").write_text(textwrap.dedent('''
        import os
        from mummyx import Router, Server
        router = Router()
        server = Server(router, processes=2)
        server.serve(int(os.environ["PORT"]), "127.0.0.1")
    '''))
    result = subprocess.run([sys.executable, "unguarded.py"], cwd=str(app_dir),
                            env=_env(free_port()), capture_output=True, text=True,
                            timeout=START_TIMEOUT)
    assert result.returncode == 1
    assert 'if __name__ == "__main__":' in result.stderr
    assert "WorkerFailed" in result.stderr and "failed to start" in result.stderr


def test_unix_socket_is_shared_by_the_workers(supervise, app_dir: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    sup = Supervised(app_dir, ["-m", "mummyx", "app:router", "--workers", "2", "--unix", path], 0)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while len(sup.workers()) < 2 or not os.path.exists(path):
            assert time.monotonic() < deadline and sup.proc.poll() is None, sup.stderr
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5.0)
            s.connect(path)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and int(reply.split(b"\r\n\r\n")[1]) in sup.workers()
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.wait() == 0, sup.stderr
        assert not os.path.exists(path)
    finally:
        sup.cleanup()
    result = subprocess.run([sys.executable, "-m", "mummyx", "app:router", "--workers", "2",
                             "--unix", path, "--reuse-port"], cwd=str(app_dir), env=_env(0),
                            capture_output=True, text=True, timeout=START_TIMEOUT)
    assert result.returncode == 2 and "reuse_port is for TCP" in result.stderr
