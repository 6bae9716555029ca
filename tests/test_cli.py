"""``python -m mummyx module:attr``: the command line, run as a real subprocess.

Each test writes a small application module into a temporary directory, starts the CLI there
(as ``uvicorn module:app`` would be started), waits until the port answers, talks to it with
httpx and stops it with a signal. Every wait is bounded.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest

import mummyx
from mummyx.__main__ import main

START_TIMEOUT = 20.0  # seconds for the CLI to import mummyx and the app and start listening
STOP_TIMEOUT = 10.0  # seconds for it to exit after a signal
PROMPT = 5.0  # what "promptly" means for an idle server

APP = textwrap.dedent('''
    import json
    from mummyx import Router, Server

    router = Router()

    @router.get("/")
    def index(request):
        return "hello from the cli"

    @router.post("/upload")
    def upload(request):
        return {"received": len(request.body)}

    def handler(request):
        return {"path": request.path, "method": request.method}

    class api:
        router = Router()

    @api.router.get("/nested")
    def nested(request):
        return "nested router"

    # Served as it is: its own options (a tiny body limit) must apply.
    server = Server(router, threads=2, max_body_len=10)

    not_servable = 42
''')

BROKEN = "import json\nraise RuntimeError('the app failed to import')\n"
MISSING_DEP = "import mummyx_no_such_dependency\n"


def _package_parent() -> str:
    # Let the child import the very mummyx this test process uses (a checkout or an install).
    return str(Path(mummyx.__file__).resolve().parent.parent)


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    parts = [_package_parent()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("WEB_CONCURRENCY", None)  # each test says how many processes it wants
    return env


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn_options() -> Dict[str, Any]:
    # A child inherits an ignored SIGINT (when this suite runs as `cmd &` in a script), and
    # Python then never raises KeyboardInterrupt. Only in that case, give the CLI the default
    # disposition a terminal would (preexec_fn is best avoided in a threaded parent otherwise).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return {"preexec_fn": _restore_sigint}
    return {}


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


Connector = Callable[[], socket.socket]


class Cli:
    """One `python -m mummyx` child process."""

    def __init__(self, cwd: Path, args: List[str], env: Optional[Dict[str, str]] = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mummyx", *args], cwd=str(cwd), env={**_child_env(), **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **_spawn_options())
        self.stdout = ""
        self.stderr = ""

    def wait_until_connectable(self, connect: Connector) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.communicate()
                pytest.fail(f"the CLI exited with {self.proc.returncode} before listening:\n"
                            f"stdout: {self.stdout}\nstderr: {self.stderr}")
            try:
                connect().close()
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        pytest.fail(f"the CLI did not listen within {START_TIMEOUT} s:\n"
                    f"stdout: {self.stdout}\nstderr: {self.stderr}")

    def wait_serving_line(self) -> str:
        """Reads stdout up to the "Serving on" line (a supervisor prints it once every worker
        serves, which can be after its socket already accepts) and returns it."""
        line: List[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(START_TIMEOUT)
        if not line or not line[0].startswith("Serving on"):
            self.kill()
            pytest.fail(f"no 'Serving on' line: {line}\nstderr: {self.stderr}")
        self.stdout += line[0]
        return line[0]

    def communicate(self, timeout: float = STOP_TIMEOUT) -> Tuple[str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout += out or ""
        self.stderr += err or ""
        return self.stdout, self.stderr

    def stop(self, sig: int) -> Tuple[int, float]:
        """Sends sig; returns (exit status, seconds it took to exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.communicate(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the CLI did not exit within {STOP_TIMEOUT} s of signal {sig}:\n"
                        f"stdout: {self.stdout}\nstderr: {self.stderr}")
        return self.proc.returncode, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.communicate(STOP_TIMEOUT)
        except (subprocess.TimeoutExpired, ValueError):
            pass


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "broken.py").write_text(BROKEN)
    (tmp_path / "missing_dep.py").write_text(MISSING_DEP)
    return tmp_path


@pytest.fixture
def cli(app_dir: Path) -> Iterator[Callable[..., Tuple["Cli", str]]]:
    """cli(*args, host="127.0.0.1") -> (Cli, base url): a started CLI, listening on a free port."""
    started: List[Cli] = []

    def start(*args: str, host: str = "127.0.0.1",
              env: Optional[Dict[str, str]] = None) -> Tuple[Cli, str]:
        port = free_port(host)
        proc = Cli(app_dir, [*args, "--host", host, "--port", str(port)], env)
        started.append(proc)
        proc.wait_until_connectable(lambda: socket.create_connection((host, port), timeout=1.0))
        url_host = f"[{host}]" if ":" in host else host
        return proc, f"http://{url_host}:{port}"

    yield start
    for proc in started:
        proc.kill()


def run_cli(cwd: Path, *args: str, timeout: float = START_TIMEOUT,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs the CLI to completion (for targets that must fail)."""
    return subprocess.run([sys.executable, "-m", "mummyx", *args], cwd=str(cwd),
                          env={**_child_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout,
                          **_spawn_options())


# ---- serving and stopping ----

# One process with two handler threads, and two worker processes under a supervisor.
MODES = [["--threads", "2"], ["--workers", "2"]]


@pytest.mark.parametrize("mode", MODES)
def test_serves_a_router_and_exits_0_on_sigterm(cli, mode: List[str]) -> None:
    proc, url = cli("app:router", *mode)
    proc.wait_serving_line()
    response = httpx.get(url + "/", timeout=5.0)
    assert response.status_code == 200
    assert response.text == "hello from the cli"
    assert httpx.get(url + "/nowhere", timeout=5.0).status_code == 404
    status, seconds = proc.stop(signal.SIGTERM)
    assert status == 0, proc.stderr
    assert seconds < PROMPT
    assert f"Serving on {url}" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_exits_130_quietly(cli, mode: List[str]) -> None:
    proc, url = cli("app:router", *mode)
    assert httpx.get(url + "/", timeout=5.0).status_code == 200
    status, seconds = proc.stop(signal.SIGINT)
    assert status == 130, proc.stderr
    assert seconds < PROMPT
    assert "Traceback" not in proc.stderr
    assert "KeyboardInterrupt" not in proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_lets_an_in_flight_request_finish(app_dir: Path, cli, mode: List[str]) -> None:
    (app_dir / "slow.py").write_text(textwrap.dedent('''
        import time
        from mummyx import Router
        router = Router()

        @router.get("/slow")
        def slow(request):
            time.sleep(1.0)
            return "finished"
    '''))
    proc, url = cli("slow:router", *mode)
    with httpx.Client(timeout=10.0) as client:
        result: Dict[str, Any] = {}

        def fetch() -> None:
            try:
                result["response"] = client.get(url + "/slow")
            except Exception as exc:  # pragma: no cover - reported below
                result["error"] = exc

        thread = threading.Thread(target=fetch)
        thread.start()
        time.sleep(0.3)  # the request is now inside the handler
        status, _ = proc.stop(signal.SIGTERM)
        thread.join(10.0)
    assert status == 0, proc.stderr
    assert "error" not in result, result
    assert result["response"].status_code == 200
    assert result["response"].text == "finished"


def test_serves_a_plain_callable(cli) -> None:
    proc, url = cli("app:handler")
    response = httpx.post(url + "/any/path?x=1", content=b"", timeout=5.0)
    assert response.status_code == 200
    assert response.json() == {"path": "/any/path", "method": "POST"}
    assert proc.stop(signal.SIGTERM)[0] == 0


def test_dotted_attribute(cli) -> None:
    proc, url = cli("app:api.router")
    assert httpx.get(url + "/nested", timeout=5.0).text == "nested router"
    assert httpx.get(url + "/", timeout=5.0).status_code == 404  # only the nested router
    assert proc.stop(signal.SIGTERM)[0] == 0


def test_server_instance_is_served_as_is(cli) -> None:
    proc, url = cli("app:server")
    assert httpx.get(url + "/", timeout=5.0).text == "hello from the cli"
    # The module's Server has max_body_len=10: its options are kept.
    assert httpx.post(url + "/upload", content=b"x" * 5, timeout=5.0).json() == {"received": 5}
    assert httpx.post(url + "/upload", content=b"x" * 50, timeout=5.0).status_code == 413
    assert proc.stop(signal.SIGTERM)[0] == 0
    assert "warning" not in proc.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_server_instance_warns_about_ignored_options(cli, workers: str) -> None:
    proc, url = cli("app:server", "--workers", workers, "--threads", "3", "--max-body-len", "1000")
    assert httpx.post(url + "/upload", content=b"x" * 50, timeout=5.0).status_code == 413
    assert proc.stop(signal.SIGTERM)[0] == 0
    # --workers applies to a Server too (it is how many of it run); the warning comes once
    assert proc.stderr.count("ignoring --threads, --max-body-len") == 1, proc.stderr


def test_web_concurrency_sets_the_worker_processes(cli) -> None:
    proc, url = cli("app:router", env={"WEB_CONCURRENCY": "2"})
    assert proc.wait_serving_line().startswith(f"Serving on {url} with 2 worker processes")
    assert httpx.get(url + "/", timeout=5.0).text == "hello from the cli"
    assert proc.stop(signal.SIGTERM)[0] == 0
    # --workers wins over the environment
    proc, url = cli("app:router", "--workers", "1", env={"WEB_CONCURRENCY": "2"})
    assert proc.stop(signal.SIGTERM)[0] == 0
    assert "worker processes" not in proc.stdout


def test_bad_web_concurrency_exits_2(app_dir: Path) -> None:
    result = run_cli(app_dir, "app:router", env={"WEB_CONCURRENCY": "many"})
    assert result.returncode == 2
    assert "WEB_CONCURRENCY: not an integer: 'many'" in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_module_raising_on_import_exits_1_with_workers(app_dir: Path, workers: str) -> None:
    result = run_cli(app_dir, "broken:router", "--workers", workers, "--port", str(free_port()))
    assert result.returncode == 1
    assert "the app failed to import" in result.stderr


def test_max_body_len_option(cli) -> None:
    proc, url = cli("app:router", "--max-body-len", "16")
    assert httpx.post(url + "/upload", content=b"y" * 16, timeout=5.0).json() == {"received": 16}
    assert httpx.post(url + "/upload", content=b"y" * 17, timeout=5.0).status_code == 413
    assert proc.stop(signal.SIGTERM)[0] == 0


def test_access_log_option(cli) -> None:
    proc, url = cli("app:router", "--access-log")
    assert httpx.get(url + "/?q=1", timeout=5.0).status_code == 200
    assert httpx.get(url + "/missing", timeout=5.0).status_code == 404
    assert proc.stop(signal.SIGTERM)[0] == 0
    assert '"GET /?q=1 HTTP/1.1" 200 18 ' in proc.stderr


def test_no_access_log_by_default(cli) -> None:
    proc, url = cli("app:router")
    assert httpx.get(url + "/", timeout=5.0).status_code == 200
    assert proc.stop(signal.SIGTERM)[0] == 0
    assert '"GET / HTTP/1.1"' not in proc.stderr


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_host(cli) -> None:
    proc, url = cli("app:router", host="::1")
    assert url.startswith("http://[::1]:")
    assert httpx.get(url + "/", timeout=5.0).text == "hello from the cli"
    assert proc.stop(signal.SIGTERM)[0] == 0
    assert f"Serving on {url}" in proc.stdout


def test_unix_socket(app_dir: Path) -> None:
    # AF_UNIX paths are limited to about 100 bytes: keep this one short.
    sock_dir = tempfile.mkdtemp(prefix="mx-cli-")
    path = os.path.join(sock_dir, "app.sock")
    proc = Cli(app_dir, ["app:router", "--unix", path])
    try:
        def connect() -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(1.0)
                s.connect(path)
            except OSError:
                s.close()
                raise
            return s

        proc.wait_until_connectable(connect)
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, timeout=5.0) as client:
            response = client.get("http://mummyx/")
        assert response.status_code == 200
        assert response.text == "hello from the cli"
        status, seconds = proc.stop(signal.SIGTERM)
        assert status == 0, proc.stderr
        assert seconds < PROMPT
        assert f"Serving on unix:{path}" in proc.stdout
    finally:
        proc.kill()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(sock_dir)


# ---- errors ----

@pytest.mark.parametrize("target, message", [
    ("app", "must look like 'module:attr'"),
    ("app:", "must look like 'module:attr'"),
    (":router", "must look like 'module:attr'"),
    ("no_such_module_xyz:app", "cannot import module 'no_such_module_xyz'"),
    ("no_such_package_xyz.sub:app", "no module named 'no_such_package_xyz'"),
    ("app:nope", "module 'app' has no attribute 'nope'"),
    ("app:api.nope", "module 'app' has no attribute 'api.nope'"),
    ("app:not_servable", "expected a mummyx Router, a callable taking a Request, or a mummyx Server"),
])
def test_bad_target_exits_2(app_dir: Path, target: str, message: str) -> None:
    t0 = time.monotonic()
    result = run_cli(app_dir, target, "--port", str(free_port()))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "Serving on" not in result.stdout
    assert time.monotonic() - t0 < START_TIMEOUT


def test_module_raising_on_import_exits_1_with_traceback(app_dir: Path) -> None:
    result = run_cli(app_dir, "broken:router")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "the app failed to import" in result.stderr


def test_missing_dependency_inside_the_module_is_not_a_bad_target(app_dir: Path) -> None:
    # The module exists; what it imports does not: that is the app's bug, shown in full.
    result = run_cli(app_dir, "missing_dep:router")
    assert result.returncode == 1
    assert "mummyx_no_such_dependency" in result.stderr
    assert "Traceback" in result.stderr


def test_port_in_use_exits_1(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli(app_dir, "app:router", "--port", str(port))
    assert result.returncode == 1
    assert "cannot serve" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [
    [],
    ["app:router", "--port", "70000"],
    ["app:router", "--port", "http"],
    ["app:router", "--workers", "0"],
    ["app:router", "--threads", "0"],
    ["app:router", "--max-body-len", "-1"],
    ["app:router", "--no-such-option"],
])
def test_bad_command_line_exits_2(app_dir: Path, args: List[str]) -> None:
    result = run_cli(app_dir, *args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_help_and_version(app_dir: Path) -> None:
    result = run_cli(app_dir, "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--workers", "--threads", "--unix", "--access-log",
                   "--max-body-len", "--reuse-port", "WEB_CONCURRENCY"):
        assert option in result.stdout
    result = run_cli(app_dir, "--version")
    assert result.returncode == 0
    assert mummyx.__version__ in result.stdout


# ---- main(argv) in-process, as the console script calls it ----

def test_main_returns_2_for_a_bad_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["not-a-target"]) == 2
    assert "must look like 'module:attr'" in capsys.readouterr().err
    assert main(["mummyx_no_such_module_q:app"]) == 2
    assert "cannot import module" in capsys.readouterr().err
    # A start that failed leaves the process's logging configuration alone.
    assert logging.getLogger("mummyx.access").propagate
    assert not logging.getLogger("mummyx").handlers


def test_console_script_entry_point_is_main() -> None:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not running from a checkout")
    assert 'mummyx = "mummyx.__main__:main"' in pyproject.read_text()
    assert callable(main)
