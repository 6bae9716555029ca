#!/usr/bin/env python3
"""Benchmark mummyx against its peers on this machine; print a table, write JSON.

    python benchmarks/run.py                 # everything, defaults (~8-9 min)
    python benchmarks/run.py --install       # first apt/pip-install wrk, nginx-light, the peers
    python benchmarks/run.py --duration 5 --servers mummyx,granian --scenarios plaintext
    python benchmarks/run.py --scenarios ws-32b,ws-16k,sse
    python benchmarks/run.py --scenarios upload-raw,upload-form

HTTP scenarios are driven by wrk; the WebSocket echo scenarios by wsbench.c, the SSE fan-out
scenario by ssebench.c and the upload scenarios by uploadbench.c (all compiled with cc -O2 into
benchmarks/results/build/ on first use).
See benchmarks/README.md for what is measured and how.
"""
from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
REPO = HERE.parent
BUILD = HERE / "results" / "build"  # git-ignored
PY = sys.executable
BODY = "Hello, World!"
PORT_RANGE = (18000, 19999)  # servers listen here (other engineers' tests stay out of it)

# kind: "http" (wrk), "ws" (wsbench: echo), "sse" (ssebench: fan-out), "upload" (uploadbench: one
# big request body stored to a file).
SCENARIOS = {
    "plaintext": {"kind": "http", "path": "/", "unit": "req/s",
                  "desc": 'GET / -> "Hello, World!" text/plain'},
    "sleep": {"kind": "http", "path": "/sleep", "unit": "req/s",
              "desc": 'GET /sleep -> sleep 10 ms, then "Hello, World!" (100 conns: ceiling 10,000 req/s)'},
    "ws-32b": {"kind": "ws", "path": "/ws", "unit": "msg/s", "size": 32,
               "desc": "WebSocket echo, 32-byte binary messages (--ws-connections x --ws-inflight in flight)"},
    "ws-16k": {"kind": "ws", "path": "/ws", "unit": "msg/s", "size": 16384,
               "desc": "WebSocket echo, 16 KiB binary messages (--ws-connections x --ws-inflight in flight)"},
    "sse": {"kind": "sse", "path": "/events", "unit": "ev/s",
            "desc": "SSE fan-out: 1 publisher, --sse-clients subscribers; events delivered/s at the best "
                    "publish rate of a doubling ramp (see README)"},
    "upload-raw": {"kind": "upload", "path": "/upload", "method": "PUT", "unit": "MB/s",
                   "desc": "PUT /upload: a --upload-mib (1 GiB) body of random bytes (Content-Length) streamed "
                           "to a file; MB/s and the server's peak RSS growth; saved file's size + SHA-256 checked"},
    "upload-form": {"kind": "upload", "path": "/form", "method": "POST", "unit": "MB/s", "multipart": True,
                    "desc": "POST /form: multipart/form-data with a small field and a --upload-mib (1 GiB) file part "
                            "streamed to a file; MB/s of file bytes and peak RSS growth; size + SHA-256 checked"},
}
SERVER_ORDER = ["mummyx", "granian", "uvicorn", "gunicorn", "socketify", "nginx", "ceiling"]
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
# Rows that are not Python peers: never the "best peer" of a target.
NOT_PEERS = {"mummyx", "nginx", "ceiling"}
BEST_PEER = "best peer"
# Target marker: mummyx's peak RSS growth during the upload must stay under `minimum` MiB.
RSS_GROWTH = "rss growth"

# Targets: (scenario, peer / None / BEST_PEER / RSS_GROWTH, minimum, strict). With a peer: mummyx rate /
# peer rate >= minimum (> when strict); BEST_PEER: the fastest clean Python peer of that scenario; None:
# mummyx rate >= minimum; RSS_GROWTH: mummyx's peak RSS growth < minimum MiB.
TARGETS = [
    ("plaintext", "granian", 1.5, False),
    ("plaintext", "uvicorn", 3.0, False),
    ("plaintext", "nginx", 0.5, False),
    ("sleep", None, 9500.0, False),
    ("ws-32b", "uvicorn", 2.0, False),
    ("ws-32b", "granian", 1.0, True),
    ("ws-16k", "uvicorn", 2.0, False),
    ("ws-16k", "granian", 1.0, True),
    ("sse", BEST_PEER, 5.0, False),
    ("upload-raw", BEST_PEER, 2.0, False),
    ("upload-raw", RSS_GROWTH, 32.0, True),
    ("upload-form", BEST_PEER, 2.0, False),
    ("upload-form", RSS_GROWTH, 32.0, True),
]


# --------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    """A port in PORT_RANGE that nothing listens on (falls back to any free port)."""
    lo, hi = PORT_RANGE
    for port in random.sample(range(lo, hi + 1), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def try_import(module: str, env: dict | None = None) -> str | None:
    """Import `module` in a fresh interpreter; None if fine, else the error's last line."""
    code = f"import {module}"
    try:
        p = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(APPS),
                           env=env)
    except subprocess.TimeoutExpired:
        return f"import {module} timed out"
    if p.returncode == 0:
        return None
    lines = [ln for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"import {module} failed (exit {p.returncode})"


def tool_version(argv: list[str]) -> str | None:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (p.stdout + p.stderr).strip().splitlines()
    return out[0].strip() if out else None


def git_commit() -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def pin(cpu: str | None, argv: list[str]) -> list[str]:
    if cpu is None or not shutil.which("taskset"):
        return argv
    return ["taskset", "-c", cpu] + argv


# --------------------------------------------------------------------------- process tree / memory

def tree_pids(root: int) -> list[int]:
    """root and all its descendants, via /proc/PID/task/TID/children."""
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
                except OSError:
                    pass
        except OSError:
            pass
    return seen


def status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_cpus(spec: str | None) -> set[int] | None:
    """taskset-style list ("0", "0,2", "0-1") -> set of CPU numbers."""
    if spec is None:
        return None
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.update(range(int(lo), int(hi) + 1))
        elif part:
            out.add(int(part))
    return out


def busy_by_cpu() -> dict[int, float]:
    """Per CPU, seconds spent in user+nice+system since boot (/proc/stat; irq/softirq excluded)."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3:4].isdigit():
                    fields = line.split()
                    out[int(fields[0][3:])] = (int(fields[1]) + int(fields[2]) + int(fields[3])) / _HZ
    except (OSError, ValueError, IndexError):
        pass
    return out


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree_cpu_s(root: int) -> float:
    total = 0
    for pid in tree_pids(root):
        rest = _stat_fields(pid)
        if rest:
            total += int(rest[11]) + int(rest[12])  # utime, stime
    return total / _HZ


def own_cpu_s() -> float:
    """This harness plus its reaped children (wrk)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


_PF_KTHREAD = 0x00200000


def user_procs_cpu(exclude: set[int]) -> dict[tuple[int, str], float]:
    """(pid, starttime) -> CPU seconds, for every user-space process not in `exclude`."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        rest = _stat_fields(int(name))
        if not rest or int(rest[6]) & _PF_KTHREAD:
            continue
        out[(int(name), rest[19])] = (int(rest[11]) + int(rest[12])) / _HZ
    return out


class OtherLoad:
    """CPU used by anything but the server's process tree, this harness and wrk, over a window.

    Two estimates, the larger wins: /proc/stat per CPU minus our own processes' time (catches
    short-lived processes such as compilers), and a /proc scan of long-lived processes.
    """

    def __init__(self, server_root: int | None, server_cpus: set[int] | None, client_cpus: set[int] | None):
        self.root, self.scpus, self.ccpus = server_root, server_cpus, client_cpus

    def _ours(self) -> set[int]:
        pids = set(tree_pids(os.getpid()))
        if self.root:
            pids.update(tree_pids(self.root))
        return pids

    def _snap(self):
        return (busy_by_cpu(), tree_cpu_s(self.root) if self.root else 0.0, own_cpu_s(),
                user_procs_cpu(self._ours()), time.monotonic())

    def start(self) -> "OtherLoad":
        self.s0 = self._snap()
        return self

    def stop(self) -> tuple[float, float]:
        """-> (server CPUs used, other CPUs used), both averaged over the window."""
        busy0, srv0, own0, procs0, t0 = self.s0
        busy1, srv1, own1, procs1, t1 = self._snap()
        wall = max(t1 - t0, 1e-6)
        d = {c: busy1.get(c, 0.0) - busy0.get(c, 0.0) for c in busy1}
        srv, own = srv1 - srv0, own1 - own0
        if self.scpus is not None and self.ccpus is not None and not (self.scpus & self.ccpus):
            on_s = sum(v for c, v in d.items() if c in self.scpus)
            on_c = sum(v for c, v in d.items() if c in self.ccpus)
            rest = sum(v for c, v in d.items() if c not in self.scpus | self.ccpus)
            stat_other = max(0.0, on_s - srv) + max(0.0, on_c - own) + rest
        else:
            stat_other = max(0.0, sum(d.values()) - srv - own)
        ours = self._ours()
        scan_other = sum(max(0.0, v - procs0.get(k, 0.0)) for k, v in procs1.items() if k[0] not in ours)
        return srv / wall, max(stat_other, scan_other) / wall


def wait_for_idle(limit_cpu: float, max_wait: float, scpus, ccpus) -> float:
    """Wait (up to max_wait s) until other processes use <= limit_cpu CPUs; return the last reading."""
    deadline = time.monotonic() + max_wait
    announced = False
    while True:
        probe = OtherLoad(None, scpus, ccpus).start()
        time.sleep(0.5)
        other = probe.stop()[1]
        if other <= limit_cpu or time.monotonic() >= deadline:
            return other
        if not announced:
            log(f"   machine busy ({other:.2f} CPU used by other processes); waiting up to {max_wait:.0f}s")
            announced = True


class RssSampler(threading.Thread):
    """Samples the summed VmRSS of the server's process tree every `interval` seconds."""

    def __init__(self, root: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.max_kb = 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            kb = sum(status_kb(p, "VmRSS") for p in tree_pids(self.root))
            self.max_kb = max(self.max_kb, kb)
            self._stop_evt.wait(self.interval)

    def stop(self) -> int:
        self._stop_evt.set()
        self.join(2)
        return self.max_kb


# --------------------------------------------------------------------------- servers

def _die_with_harness() -> None:
    """In the child before exec: SIGKILL it if the harness dies (even by SIGKILL)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; the normal kill path still applies
        pass


class ServerProc:
    """One server process group: started with its own session, always killed as a group."""

    live: "set[ServerProc]" = set()

    def __init__(self, name: str, argv: list[str], cwd: Path, log_path: Path, env: dict | None = None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, cwd=str(cwd), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env,
            preexec_fn=_die_with_harness if sys.platform.startswith("linux") else None,
        )
        self.pgid = self.proc.pid  # new session => pgid == pid
        ServerProc.live.add(self)

    def wait_port(self, port: int, timeout: float) -> str | None:
        """None once 127.0.0.1:port accepts; else why not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with code {self.proc.returncode} before accepting"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return None
            except OSError:
                time.sleep(0.05)
        return f"port {port} not accepting after {timeout:.0f}s"

    def peak_hwm_kb(self) -> int:
        return sum(status_kb(p, "VmHWM") for p in tree_pids(self.proc.pid))

    def log_tail(self, n: int = 15) -> str:
        try:
            self._log.flush()
            lines = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def kill(self, grace: float = 5.0) -> None:
        """SIGTERM the whole group, then (after `grace` s) SIGKILL whatever is left; wait until it is gone."""
        for sig, grace in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    self.proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
                if self.proc.poll() is not None and not self._group_alive():
                    break
            if self.proc.poll() is not None and not self._group_alive():
                break
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        ServerProc.live.discard(self)


def kill_all_servers() -> None:
    for sp in list(ServerProc.live):
        sp.kill()


class Server:
    """A peer: how to tell whether it is there, and how to start it for a scenario.

    `kinds`: the scenario kinds ("http", "ws", "sse", "upload") it takes part in; no row elsewhere.
    """
    kinds = ("http",)

    def __init__(self, name: str, label: str):
        self.name, self._label = name, label

    def label(self, scenario: str) -> str:
        return self._label

    def unavailable(self, scenario: str) -> str | None:  # None => can run
        raise NotImplementedError

    def command(self, scenario: str, port: int, threads: int, tmp: Path, args) -> list[str]:
        raise NotImplementedError

    def version(self) -> str | None:
        return None

    def env(self, scenario: str, args) -> dict | None:  # None => inherit
        return None

    def notes(self, scenario: str, threads: int, args) -> str:
        return ""


def kind(scenario: str) -> str:
    return SCENARIOS[scenario]["kind"]


def sse_env(args, rate: float) -> dict:
    """Publisher settings for the Python SSE apps (see apps/sse_*.py)."""
    return {**os.environ, "SSE_RATE": f"{rate:g}", "SSE_SUBSCRIBERS": str(args.sse_clients),
            "SSE_QUEUE": str(args.sse_queue)}


def upload_env(args) -> dict:
    """Where the upload apps (apps/upload_*_app.py, ceiling.c) save: this run's directory."""
    return {**os.environ, "UPLOAD_DIR": str(args.upload_run_dir)}


def is_form(scenario: str) -> bool:
    return bool(SCENARIOS[scenario].get("multipart"))


class Mummyx(Server):
    """Uses the installed mummyx; failing that, an in-place build in the repo (PYTHONPATH=repo)."""
    kinds = ("http", "ws", "sse", "upload")
    # What each kind of scenario needs from the package.
    _checks = {
        "http": "mummyx; mummyx.Server; mummyx.Router",
        "ws": "mummyx; mummyx.Server; mummyx.Router; mummyx.WebSocket; mummyx.WebSocketEvent; mummyx.Message",
        "sse": "mummyx; mummyx.Server; mummyx.Router; mummyx.SSEChannel",
        "upload": "mummyx; mummyx.Server; mummyx.Router; mummyx._mummyx.Request.save_body; "
                  "mummyx._mummyx.Request.multipart; mummyx._mummyx.Part.save",
    }
    _missing = {"ws": "WebSocket", "sse": "SSE", "upload": "streamed-upload"}

    def __init__(self, name, label):
        super().__init__(name, label)
        self._err: dict[str, str | None] = {}
        self._env: dict | None = None
        self._source = ""

    def unavailable(self, scenario):
        k = kind(scenario)
        if k not in self._err:
            check = self._checks[k]
            err = try_import(check, self._env)
            if err is None:
                self._source = self._source or ("source tree" if self._env else "installed")
            elif self._env is None and (REPO / "mummyx" / "__init__.py").exists():
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                    [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
                err2 = try_import(check, env)
                if err2 is None:
                    err, self._env, self._source = None, env, "source tree"
                else:
                    err = f"{err}; from the source tree: {err2}"
            if err is not None and k != "http":
                err = f"no {self._missing[k]} support yet: {err}"
            self._err[k] = None if err is None else f"not installed ({err})"
        return self._err[k]

    def env(self, scenario, args):
        return self._env

    def command(self, scenario, port, threads, tmp, args):
        k = kind(scenario)
        if k == "ws":
            return [PY, str(APPS / "mummyx_ws_app.py"), str(port), str(threads)]
        if k == "sse":
            return [PY, str(APPS / "mummyx_sse_app.py"), str(port), f"{args.sse_rate_now:g}", str(threads),
                    str(args.sse_clients)]
        if k == "upload":
            return [PY, str(APPS / "mummyx_upload_app.py"), str(port), str(threads), str(args.upload_run_dir)]
        return [PY, str(APPS / "mummyx_app.py"), str(port), str(threads)]

    def version(self):
        v = pkg_version("mummyx")
        if v is None and self._source == "source tree":
            m = re.search(r'__version__\s*=\s*"([^"]+)"', (REPO / "mummyx" / "__init__.py").read_text())
            v = (m.group(1) if m else "?") + " (source tree)"
        return v

    def notes(self, scenario, threads, args):
        if kind(scenario) == "upload":
            how = "multipart() + part.save()" if is_form(scenario) else "save_body()"
            return f"{how}, workers={threads}"
        return f"workers={threads}" + (", publisher thread" if kind(scenario) == "sse" else "")


class Granian(Server):
    kinds = ("http", "ws", "sse", "upload")

    def label(self, scenario):
        return {"http": "granian (WSGI)", "ws": "granian (RSGI)", "sse": "granian (ASGI)",
                "upload": "granian (RSGI)"}[kind(scenario)]

    def unavailable(self, scenario):
        if not pkg_version("granian"):
            return "not installed (pip install granian)"
        if is_form(scenario) and not pkg_version("streaming-form-data"):
            return "not installed (pip install streaming-form-data)"
        return None

    def command(self, scenario, port, threads, tmp, args):
        common = ["--http", "1", "--workers", "1", "--runtime-threads", "1", "--no-access-log",
                  "--log-level", "warning", "--host", "127.0.0.1", "--port", str(port)]
        k = kind(scenario)
        if k == "ws":
            return [PY, "-m", "granian", "--interface", "rsgi", "--ws"] + common + ["ws_rsgi_app:app"]
        if k == "sse":
            return [PY, "-m", "granian", "--interface", "asgi", "--no-ws", "--backlog", "4096"] + common + \
                ["sse_asgi_app:app"]
        if k == "upload":
            return [PY, "-m", "granian", "--interface", "rsgi", "--no-ws"] + common + ["upload_rsgi_app:app"]
        return [PY, "-m", "granian", "--interface", "wsgi", "--blocking-threads", str(threads), "--no-ws"] + \
            common + ["wsgi_app:app"]

    def env(self, scenario, args):
        if kind(scenario) == "upload":
            return upload_env(args)
        return sse_env(args, args.sse_rate_now) if kind(scenario) == "sse" else None

    def version(self):
        return pkg_version("granian")

    def notes(self, scenario, threads, args):
        k = kind(scenario)
        if k == "ws":
            return "rsgi, 1 worker"
        if k == "sse":
            return "asgi, hand-written fan-out (a queue per subscriber)"
        if k == "upload":
            return "rsgi, 1 worker, " + (f"streaming-form-data {pkg_version('streaming-form-data')}"
                                          if is_form(scenario) else "async for chunk -> file.write")
        return f"wsgi, blocking-threads={threads}"


class Uvicorn(Server):
    kinds = ("http", "ws", "sse", "upload")

    def label(self, scenario):
        return {"http": "uvicorn (httptools)", "ws": "uvicorn (websockets)",
                "sse": "uvicorn (sse-starlette)", "upload": "uvicorn (httptools)"}[kind(scenario)]

    def unavailable(self, scenario):
        need = {"http": ("uvicorn", "httptools", "uvloop"), "ws": ("uvicorn", "httptools", "uvloop", "websockets"),
                "sse": ("uvicorn", "httptools", "uvloop", "sse-starlette", "starlette"),
                "upload": ("uvicorn", "httptools", "uvloop")}[kind(scenario)]
        if is_form(scenario):
            need += ("streaming-form-data",)
        missing = [m for m in need if not pkg_version(m)]
        return f"not installed ({', '.join(missing)})" if missing else None

    def command(self, scenario, port, threads, tmp, args):
        app = {"http": "asgi_app:app", "ws": "ws_asgi_app:app", "sse": "sse_starlette_app:app",
               "upload": "upload_asgi_app:app"}[kind(scenario)]
        argv = [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--http", "httptools", "--loop", "uvloop",
                "--no-access-log", "--log-level", "warning"]
        if kind(scenario) == "ws":
            # websockets' Sans-I/O implementation: ~1.7x the legacy `--ws websockets` one here.
            argv += ["--ws", "websockets-sansio", "--ws-per-message-deflate", "false"]
        elif kind(scenario) == "sse":
            argv += ["--ws", "none", "--backlog", "4096"]
        elif kind(scenario) == "upload":
            argv += ["--ws", "none"]
        return argv

    def env(self, scenario, args):
        if kind(scenario) == "upload":
            return upload_env(args)
        return sse_env(args, args.sse_rate_now) if kind(scenario) == "sse" else None

    def version(self):
        return pkg_version("uvicorn")

    def notes(self, scenario, threads, args):
        k = kind(scenario)
        if k == "ws":
            return f"asgi, websockets {pkg_version('websockets')} (sans-io), uvloop"
        if k == "sse":
            return f"sse-starlette {pkg_version('sse-starlette')}, uvloop"
        if k == "upload":
            return "asgi, uvloop, " + (f"streaming-form-data {pkg_version('streaming-form-data')}"
                                       if is_form(scenario) else "receive() -> file.write")
        return "asgi, httptools+uvloop" + (", asyncio.sleep" if scenario == "sleep" else "")


class Gunicorn(Server):
    def unavailable(self, scenario):
        return None if pkg_version("gunicorn") else "not installed (pip install gunicorn)"

    def command(self, scenario, port, threads, tmp, args):
        return [PY, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1",
                "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
                "--log-level", "warning", "wsgi_app:app"]

    def version(self):
        return pkg_version("gunicorn")

    def notes(self, scenario, threads, args):
        return f"gthread, threads={threads}"


class Socketify(Server):
    kinds = ("http", "ws")
    _err: str | None | bool = False

    def unavailable(self, scenario):
        if self._err is False:
            if not pkg_version("socketify"):
                self._err = "not installed (pip install socketify)"
            else:
                err = try_import("socketify")
                self._err = None if err is None else f"import failed ({err}); needs libuv1"
        return self._err

    def command(self, scenario, port, threads, tmp, args):
        if kind(scenario) == "ws":
            return [PY, str(APPS / "socketify_ws_app.py"), str(port)]
        return [PY, str(APPS / "socketify_app.py"), str(port)]

    def version(self):
        return pkg_version("socketify")

    def notes(self, scenario, threads, args):
        if kind(scenario) == "ws":
            return "native App.ws, no compression"
        return "native App" + (", asyncio.sleep" if scenario == "sleep" else "")


class Nginx(Server):
    def _bin(self):
        return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

    def unavailable(self, scenario):
        if not self._bin():
            return "not installed (apt-get install nginx-light)"
        if scenario == "sleep" and not ECHO_MODULE.exists():
            return "skipped (no echo_sleep: apt-get install libnginx-mod-http-echo)"
        return None

    def command(self, scenario, port, threads, tmp, args):
        conf = (APPS / "nginx.conf.in").read_text()
        if ECHO_MODULE.exists():
            load = f"load_module {ECHO_MODULE};"
            sleep_loc = ('        location = /sleep {\n'
                         '            echo_sleep 0.01;\n'
                         '            echo -n "Hello, World!";\n'
                         '        }')
        else:
            load, sleep_loc = "", ""
        conf = (conf.replace("@LOAD_ECHO@", load).replace("@PREFIX@", str(tmp))
                .replace("@PORT@", str(port)).replace("@SLEEP_LOCATION@", sleep_loc))
        path = tmp / "nginx.conf"
        path.write_text(conf)
        return [self._bin(), "-p", str(tmp), "-c", str(path), "-e", "stderr"]

    def version(self):
        v = tool_version([self._bin() or "nginx", "-v"])
        return v.split("/", 1)[-1] if v else None

    def notes(self, scenario, threads, args):
        return "1 worker_process" + (", echo_sleep" if scenario == "sleep" else "")


class Ceiling(Server):
    """benchmarks/ceiling.c: the least a server can do in these scenarios (no Python)."""
    kinds = ("ws", "sse", "upload")

    def unavailable(self, scenario):
        path, err = build_tool("ceiling")
        return None if path else f"not built ({err})"

    def command(self, scenario, port, threads, tmp, args):
        path, _ = build_tool("ceiling")
        argv = [str(path), str(port)]
        if kind(scenario) == "sse":
            argv += [f"{args.sse_rate_now:g}", str(args.sse_clients)]
        return argv

    def env(self, scenario, args):
        return upload_env(args) if kind(scenario) == "upload" else None

    def version(self):
        return "benchmarks/ceiling.c"

    def notes(self, scenario, threads, args):
        if kind(scenario) == "upload":
            return ("C, read + memmem + write (1 MiB buffer)" if is_form(scenario)
                    else "C, splice socket -> pipe -> file (no user-space copy)")
        return "C, epoll, 1 thread" + (", timerfd publisher" if kind(scenario) == "sse" else "")


SERVERS: dict[str, Server] = {
    "mummyx": Mummyx("mummyx", "mummyx"),
    "granian": Granian("granian", "granian"),
    "uvicorn": Uvicorn("uvicorn", "uvicorn"),
    "gunicorn": Gunicorn("gunicorn", "gunicorn (gthread)"),
    "socketify": Socketify("socketify", "socketify"),
    "nginx": Nginx("nginx", "nginx (ceiling)"),
    "ceiling": Ceiling("ceiling", "C epoll (ceiling)"),
}


# --------------------------------------------------------------------------- C load generators

_built: dict[str, tuple[Path | None, str | None]] = {}


def build_tool(name: str) -> tuple[Path | None, str | None]:
    """Compile benchmarks/NAME.c into BUILD/NAME (cc -O2) unless it is up to date -> (path, error)."""
    if name in _built:
        return _built[name]
    src, out = HERE / f"{name}.c", BUILD / name
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    res: tuple[Path | None, str | None]
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        res = (out, None)
    elif not cc:
        res = (None, "no C compiler (cc) found")
    else:
        BUILD.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_suffix(".tmp")
        p = subprocess.run([cc, "-O2", "-o", str(tmp_out), str(src)], capture_output=True, text=True)
        if p.returncode == 0:
            tmp_out.replace(out)
            log(f"== built {out.relative_to(REPO)}")
            res = (out, None)
        else:
            res = (None, f"{cc} failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    _built[name] = res
    return res


# --------------------------------------------------------------------------- wrk

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _to_ms(num: str, unit: str) -> float:
    return float(num) * _UNITS_MS[unit]


def parse_wrk(out: str) -> dict:
    r: dict = {"requests": 0, "rps": None, "p50_ms": None, "p99_ms": None, "avg_ms": None,
               "max_ms": None, "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
               "non_2xx_3xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Latency\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)", out)
    if m:
        r["avg_ms"] = _to_ms(m.group(1), m.group(2))
        r["max_ms"] = _to_ms(m.group(5), m.group(6))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
        if m:
            r[key] = _to_ms(m.group(1), m.group(2))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non_2xx_3xx"] = int(m.group(1))
    return r


def run_wrk(args, url: str, duration: float) -> tuple[dict, str]:
    argv = pin(args.client_cpu, ["wrk", "-t1", f"-c{args.connections}", f"-d{max(1, int(round(duration)))}s",
                                 "--latency", url])
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        out = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        out += "\n[wrk timed out]"
    return parse_wrk(out), out


def preflight(url: str) -> str | None:
    """One request by hand: status 200, text/plain, body exactly "Hello, World!"."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read().decode(errors="replace")
            ctype = resp.headers.get("Content-Type", "")
            if resp.status != 200:
                return f"status {resp.status}"
            if not ctype.lower().startswith("text/plain"):
                return f"Content-Type {ctype!r}"
            if body != BODY:
                return f"body {body[:40]!r}"
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        return f"request failed: {e}"
    return None


# --------------------------------------------------------------------------- C load generators: run

def run_tool(args, name: str, tool_argv: list[str], timeout: float) -> tuple[dict | None, str, int]:
    """Run a compiled load generator pinned to the client CPU -> (its JSON or None, stderr+stdout, exit code)."""
    path, err = build_tool(name)
    if not path:
        return None, f"{name}: {err}", -1
    argv = pin(args.client_cpu, [str(path)] + tool_argv)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        out, rc = p.stdout, p.returncode
        text = (p.stderr or "") + (p.stdout or "")
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        text, rc = out + f"\n[{name} timed out after {timeout:.0f}s]", -1
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line), text, rc
            except ValueError:
                break
    return None, text, rc


# --------------------------------------------------------------------------- one run

def new_row(server: Server, scenario: str, threads: int, args) -> dict:
    return {"server": server.name, "label": server.label(scenario), "scenario": scenario,
            "unit": SCENARIOS[scenario]["unit"],
            "status": "ok", "reason": None, "notes": server.notes(scenario, threads, args),
            "rps": None, "p99_ms": None, "p50_ms": None, "avg_ms": None, "max_ms": None,
            "requests": 0, "socket_errors": None, "non_2xx_3xx": None,
            "peak_rss_kb": None, "peak_rss_sampled_kb": None, "failed": False, "failures": [],
            "warnings": [], "server_cpu": None, "other_cpu": None, "noisy": False, "client_cpu": None,
            "command": None}


class Started:
    """One server process for one (server, scenario) run; None-safe cleanup via close()."""

    def __init__(self, args, server: Server, scenario: str, threads: int, row: dict):
        self.args, self.row = args, row
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{server.name}-"))
        self.port = free_port()
        argv = pin(args.server_cpu, server.command(scenario, self.port, threads, self.tmp, args))
        row["command"] = " ".join(argv)
        self.sp = ServerProc(server.name, argv, APPS, self.tmp / "server.log", env=server.env(scenario, args))
        self.error = self.sp.wait_port(self.port, args.start_timeout)
        if self.error:
            tail = self.sp.log_tail()
            row["server_log_tail"] = tail
            log(f"   failed to start: {self.error}\n" + "\n".join("   | " + ln for ln in tail.splitlines()))

    def window(self) -> "Window":
        return Window(self.args, self.sp)

    def died(self) -> str | None:
        if self.sp.proc.poll() is not None:
            self.row["server_log_tail"] = self.sp.log_tail()
            return f"server exited (code {self.sp.proc.returncode}) during the run"
        return None

    def close(self, grace: float = 5.0) -> None:
        self.sp.kill(grace)
        shutil.rmtree(self.tmp, ignore_errors=True)


class Window:
    """RSS sampling and other-load accounting around a recorded run."""

    def __init__(self, args, sp: ServerProc):
        self.args, self.sp = args, sp
        self.sampler = RssSampler(sp.proc.pid)
        self.sampler.start()
        self.load = OtherLoad(sp.proc.pid, parse_cpus(args.server_cpu), parse_cpus(args.client_cpu)).start()

    def stop(self) -> dict:
        server_cpu, other_cpu = self.load.stop()
        sampled = self.sampler.stop()
        # CPUs' worth of work done by processes other than this server, the load generator and the
        # harness: other sessions' builds/tests on a shared machine make the numbers unreliable.
        return {"server_cpu": round(server_cpu, 3), "other_cpu": round(other_cpu, 3),
                "noisy": other_cpu > self.args.noise_limit, "peak_rss_sampled_kb": sampled,
                "peak_rss_kb": self.sp.peak_hwm_kb() or sampled}


def bench_one(args, server: Server, scenario: str) -> dict:
    k = kind(scenario)
    if k == "http":
        threads = args.sleep_threads if scenario == "sleep" else args.plain_threads
    elif k == "upload":
        threads = args.upload_workers
    else:
        threads = args.ws_workers
    row = new_row(server, scenario, threads, args)
    why = server.unavailable(scenario)
    if why:
        row["status"] = "skipped" if why.startswith("skipped") else "not installed"
        row["reason"] = why
        return row
    if k == "sse":
        return bench_sse(args, server, scenario, threads, row)
    if k == "upload":
        return bench_upload(args, server, scenario, threads, row)
    if args.wait_idle > 0:
        before = wait_for_idle(args.noise_limit, args.wait_idle,
                               parse_cpus(args.server_cpu), parse_cpus(args.client_cpu))
        row["other_cpu_before"] = round(before, 3)
    log(f"== {server.name:<10} {scenario:<10} {row['notes']}")
    st = Started(args, server, scenario, threads, row)
    try:
        if st.error:
            row.update(status="failed", failed=True, reason=f"did not start: {st.error}")
            row["failures"].append(row["reason"])
            return row
        if k == "http":
            measure_http(args, st, scenario, row)
        else:
            measure_ws(args, st, scenario, row)
        died = st.died()
        if died:
            row["failures"].append(died)
        row["failed"] = bool(row["failures"])
        log(f"   {fmt_rps(row['rps'])} {row['unit']}  p99 {fmt_ms(row['p99_ms'])}  "
            f"peak RSS {fmt_mb(row['peak_rss_kb'])}  server {row['server_cpu']} CPU, "
            f"others {row['other_cpu']} CPU" + (f", client {row['client_cpu']} CPU" if row["client_cpu"] else "")
            + (f"  FAIL: {'; '.join(row['failures'])}" if row["failed"] else ""))
        return row
    finally:
        st.close(5.0 if k == "http" else 1.0)


def measure_http(args, st: Started, scenario: str, row: dict) -> None:
    url = f"http://127.0.0.1:{st.port}{SCENARIOS[scenario]['path']}"
    bad = preflight(url)
    if bad:
        row["failures"].append(f"bad response: {bad}")
    if args.warmup > 0:
        run_wrk(args, url, args.warmup)
    win = st.window()
    res, out = run_wrk(args, url, args.duration)
    row.update(win.stop())
    row.update({k: res[k] for k in ("rps", "p99_ms", "p50_ms", "avg_ms", "max_ms", "requests",
                                     "socket_errors", "non_2xx_3xx")})
    row["wrk_output"] = out
    errs = sum(res["socket_errors"].values())
    if errs:
        row["failures"].append("socket errors " + ", ".join(
            f"{k} {v}" for k, v in res["socket_errors"].items() if v))
    if res["non_2xx_3xx"]:
        row["failures"].append(f"{res['non_2xx_3xx']} non-2xx/3xx responses")
    if not res["requests"] or res["rps"] is None:
        row["failures"].append("no requests completed (wrk output unparsable or empty)")


def _latency_ms(row: dict, lat: dict) -> None:
    for key, src in (("p50_ms", "p50"), ("p99_ms", "p99"), ("avg_ms", "mean"), ("max_ms", "max")):
        v = lat.get(src)
        row[key] = None if v is None else v / 1000.0


def _client_check(args, row: dict) -> None:
    cpu = row.get("client_cpu")
    if cpu is not None and cpu > args.client_bound:
        row["warnings"].append(f"CLIENT-BOUND: the load generator used {cpu:.2f} CPU")


def measure_ws(args, st: Started, scenario: str, row: dict) -> None:
    size = SCENARIOS[scenario]["size"]
    tool_argv = ["-p", str(st.port), "-u", SCENARIOS[scenario]["path"], "-c", str(args.ws_connections),
                 "-s", str(size), "-k", str(args.ws_inflight), "-d", f"{args.duration:g}",
                 "-w", f"{args.warmup:g}", "-q"]
    win = st.window()
    res, text, rc = run_tool(args, "wsbench", tool_argv, args.duration + args.warmup + 60)
    row.update(win.stop())
    row["tool_output"] = res if res is not None else text[-2000:]
    if res is None:
        row["failures"].append(f"wsbench gave no result (exit {rc}): {text.strip()[-300:]}")
        return
    row["rps"] = res["msgs_per_s"]
    row["requests"] = res["messages"]
    row["client_cpu"] = res["client_cpu"]
    _latency_ms(row, res["latency_us"])
    if res["error_count"]:
        errs = ", ".join(f"{k} {v}" for k, v in res["errors"].items() if v)
        row["failures"].append(f"wsbench errors: {errs} (first: {res['first_error']})")
    if not res["messages"]:
        row["failures"].append("no echo received")
    _client_check(args, row)


def sse_rates(args) -> tuple[list[float], bool]:
    """-> (rates to try, ramp?). A ramp stops at the first rate the server does not keep up with."""
    if args.sse_rates:
        return [float(r) for r in args.sse_rates.split(",") if r.strip()], False
    rates, r = [], float(args.sse_rate_start)
    while r <= args.sse_rate_max:
        rates.append(r)
        r *= 2
    return rates, True


def bench_sse(args, server: Server, scenario: str, threads: int, row: dict) -> dict:
    """One fresh server per publish rate; the row reports the step that delivered the most events/s."""
    rates, ramp = sse_rates(args)
    steps = []
    log(f"== {server.name:<10} {scenario:<10} {row['notes']}")
    for rate in rates:
        if args.wait_idle > 0:
            wait_for_idle(args.noise_limit, args.wait_idle, parse_cpus(args.server_cpu), parse_cpus(args.client_cpu))
        args.sse_rate_now = rate
        step = {"rate": rate, "failures": [], "rps": None}
        st = Started(args, server, scenario, threads, step)
        try:
            if st.error:
                step["failures"].append(f"did not start: {st.error}")
            else:
                tool_argv = ["-p", str(st.port), "-u", SCENARIOS[scenario]["path"], "-c", str(args.sse_clients),
                             "-d", f"{args.sse_duration:g}", "-w", f"{args.sse_warmup:g}", "-q"]
                win = st.window()
                res, text, rc = run_tool(args, "ssebench", tool_argv,
                                         args.sse_duration + args.sse_warmup + args.start_timeout + 60)
                step.update(win.stop())
                step["tool_output"] = res if res is not None else text[-2000:]
                if res is None:
                    step["failures"].append(f"ssebench gave no result (exit {rc}): {text.strip()[-300:]}")
                else:
                    step["rps"] = res["events_per_s"]
                    step["requests"] = res["events"]
                    step["client_cpu"] = res["client_cpu"]
                    step["published_per_s"] = res["published_per_s_estimate"]
                    step["delivery_ratio"] = res["delivery_ratio"]
                    _latency_ms(step, res["latency_us"])
                    if res["error_count"]:
                        errs = ", ".join(f"{k} {v}" for k, v in res["errors"].items() if v)
                        step["failures"].append(f"ssebench errors: {errs} (first: {res['first_error']})")
                    if not res["events"]:
                        step["failures"].append("no event received")
                died = st.died()
                if died:
                    step["failures"].append(died)
        finally:
            st.close(1.0)
        offered = rate * args.sse_clients
        step["kept_up"] = bool(not step["failures"] and step["rps"] and step["rps"] >= 0.9 * offered)
        steps.append(step)
        log(f"   {rate:>6g}/s x {args.sse_clients}: {fmt_rps(step['rps'])} ev/s  "
            f"(published ~{step.get('published_per_s') or 0:,.0f}/s)  p99 {fmt_ms(step.get('p99_ms'))}  "
            f"server {step.get('server_cpu')} CPU, others {step.get('other_cpu')} CPU, client {step.get('client_cpu')} CPU"
            + ("" if step["kept_up"] else "  (did not keep up)")
            + (f"  FAIL: {'; '.join(step['failures'])}" if step["failures"] else ""))
        if ramp and not step["kept_up"]:
            # A server that batches may still deliver more at a higher rate: go on while a missed
            # rate still beat the best so far by > 10 %; stop at errors.
            before = max((x["rps"] or 0 for x in steps[:-1] if not x["failures"]), default=0)
            if step["failures"] or not step["rps"] or step["rps"] <= 1.1 * before:
                break
    row["steps"] = steps
    row["command"] = steps[-1].get("command") if steps else None
    clean = [s for s in steps if not s["failures"] and s["rps"]]
    best = max(clean or [s for s in steps if s["rps"]] or steps, key=lambda s: s["rps"] or 0)
    kept = [s for s in clean if s["kept_up"]]
    if kept and not best["kept_up"]:
        # An overloaded rate (queues growing, latency in seconds) wins only by more than 10 %.
        best_kept = max(kept, key=lambda s: s["rps"])
        if best["rps"] <= 1.1 * best_kept["rps"]:
            best = best_kept
    for key in ("rps", "requests", "p50_ms", "p99_ms", "avg_ms", "max_ms", "server_cpu", "other_cpu", "noisy",
                "client_cpu", "peak_rss_kb", "peak_rss_sampled_kb", "published_per_s", "delivery_ratio", "command"):
        if key in best:
            row[key] = best[key]
    row["sse_rate"] = best["rate"]
    row["peak_rss_max_kb"] = max((s.get("peak_rss_kb") or 0 for s in steps), default=0) or None
    row["notes"] += f"; best at {best['rate']:g}/s published; ramp " + ", ".join(
        f"{s['rate']:g}/s: {fmt_k(s['rps'])}" + ("" if s["kept_up"] else "*") for s in steps)
    if not clean:
        row["failures"] = best["failures"] or ["no step completed"]
        if any("did not start" in f for f in row["failures"]):
            row.update(status="failed", reason=row["failures"][0])
    else:
        for s in steps:
            if s["failures"]:
                row["warnings"].append(f"at {s['rate']:g}/s: " + "; ".join(s["failures"]))
    row["failed"] = bool(row["failures"])
    _client_check(args, row)
    return row


# --------------------------------------------------------------------------- uploads

GIB = 1 << 30
FORM_BOUNDARY = "mummyxbench" + "7d3f0c9a5e1b4f2a8c6d0e9b1a2f3c4d"  # random data never holds it (p ~ 0)
FORM_FIELD = b"a small form field"


def form_wrap() -> tuple[str, str, str]:
    """-> (Content-Type, body before the file bytes, body after them) of the upload-form request."""
    b = FORM_BOUNDARY
    pre = (f"--{b}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n{FORM_FIELD.decode()}\r\n"
           f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob.bin\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n")
    return f"multipart/form-data; boundary={b}", pre, f"\r\n--{b}--\r\n"


def fs_type(path: Path) -> str:
    """Filesystem type of the mount holding path (longest mount-point prefix in /proc/mounts)."""
    best, typ = "", "?"
    try:
        real = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, typ = mnt, parts[2]
    except OSError:
        pass
    return typ


def upload_space_needed(args) -> int:
    """The source file + one saved copy (+ its temporary twin while renaming), with 1 GiB to spare."""
    return max(3 * GIB, 2 * args.upload_bytes + GIB)


def prepare_upload(args) -> None:
    """Picks the directory, checks free space, writes the random source file once (SHA-256 kept).

    Sets args.upload_base (a fresh directory, removed at exit), args.upload_src, args.upload_sha256,
    or args.upload_skip (why the upload rows are skipped).
    """
    args.upload_skip = None
    need = upload_space_needed(args)
    if args.upload_dir:
        parent = Path(args.upload_dir)
    else:
        # tmpfs by default: the numbers are the servers', not the disk's (the same for every server).
        shm = Path("/dev/shm")
        parent = Path(tempfile.gettempdir())
        if shm.is_dir() and os.access(shm, os.W_OK) and fs_type(shm) == "tmpfs":
            try:
                if shutil.disk_usage(shm).free >= need:
                    parent = shm
            except OSError:
                pass
    try:
        free = shutil.disk_usage(parent).free
    except OSError as e:
        args.upload_skip = f"skipped: cannot use {parent} ({e})"
        return
    if free < need:
        args.upload_skip = (f"skipped: only {free / GIB:.1f} GiB free in {parent} ({fs_type(parent)}); the upload "
                            f"scenarios need {need / GIB:.0f} GiB (--upload-dir DIR elsewhere, or a smaller --upload-mib)")
        log(f"== uploads {args.upload_skip}")
        return
    base = Path(tempfile.mkdtemp(prefix="mummyx-bench-upload-", dir=str(parent)))
    args.upload_base = base
    args.upload_fs = fs_type(base)
    atexit.register(shutil.rmtree, base, True)
    src = base / "source.bin"
    log(f"== writing {args.upload_bytes / 2**20:,.0f} MiB of random bytes to {src} ({args.upload_fs})")
    h = hashlib.sha256()
    left = args.upload_bytes
    with open(src, "wb") as f:
        while left:
            chunk = os.urandom(min(left, 16 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    args.upload_src, args.upload_sha256 = src, h.hexdigest()


class PidRssSampler(threading.Thread):
    """Sums VmRSS over a fixed set of pids every `interval` s (the server tree does not change mid-upload)."""

    def __init__(self, pids: list[int], interval: float):
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.max_kb = 0
        self.samples = 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while True:
            kb = sum(status_kb(p, "VmRSS") for p in self.pids)
            self.max_kb = max(self.max_kb, kb)
            self.samples += 1
            if self._stop_evt.wait(self.interval):
                return

    def stop(self) -> int:
        self._stop_evt.set()
        self.join(2)
        kb = sum(status_kb(p, "VmRSS") for p in self.pids)  # one last sample
        return max(self.max_kb, kb)


def reset_hwm(pids: list[int]) -> bool:
    """Resets each process's VmHWM to its current RSS (`5` > /proc/PID/clear_refs); False if any failed."""
    ok = True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def run_upload(args, port: int, scenario: str, nbytes: int | None = None) -> tuple[dict | None, str, int]:
    """One uploadbench run against PORT (all of the source file, or its first nbytes)."""
    sc = SCENARIOS[scenario]
    argv = ["-p", str(port), "-u", sc["path"], "-m", sc["method"], "-f", str(args.upload_src), "-q",
            "-t", f"{args.upload_timeout:g}"]
    if nbytes is not None:
        argv += ["-n", str(nbytes)]
    if is_form(scenario):
        ctype, pre, post = form_wrap()
        argv += ["-c", ctype, "-P", pre, "-S", post]
    return run_tool(args, "uploadbench", argv, args.upload_timeout + 30)


def check_saved(args, run_dir: Path, scenario: str, res: dict | None, text: str, rc: int, nbytes: int,
                sha256: str | None) -> list[str]:
    """What is wrong with one upload (response, saved file, leftovers); [] when all is right. Empties run_dir."""
    bad: list[str] = []
    name = "file" if is_form(scenario) else "blob"
    try:
        if res is None:
            bad.append(f"uploadbench gave no result (exit {rc}): {text.strip()[-300:]}")
            return bad
        if res.get("error"):
            bad.append(f"uploadbench: {res['error']}")
        if res.get("status") != 200:
            bad.append(f"status {res.get('status')} ({res.get('response_body', '')[:80]!r})")
        elif res.get("response_body", "").strip() != str(nbytes):
            bad.append(f"answered {res.get('response_body', '')[:40]!r}, expected {nbytes}")
        saved = run_dir / name
        others = sorted(p.name for p in run_dir.iterdir() if p.name != name)
        if others:
            bad.append("files left behind: " + ", ".join(others[:5]))
        if not saved.exists():
            bad.append(f"no {name} saved")
            return bad
        size = saved.stat().st_size
        if size != nbytes:
            bad.append(f"saved {size:,} bytes, sent {nbytes:,}")
        elif sha256:
            with open(saved, "rb") as f:
                got = hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else None
                if got is None:
                    h = hashlib.sha256()
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                    got = h.hexdigest()
            if got != sha256:
                bad.append("saved file's SHA-256 differs from what was sent")
        return bad
    finally:
        for p in list(run_dir.iterdir()):
            try:
                p.unlink()
            except OSError:
                pass


def bench_upload(args, server: Server, scenario: str, threads: int, row: dict) -> dict:
    """A fresh server; a small unrecorded upload; then --upload-reps recorded uploads of the whole source
    file (the fastest is reported), each checked (status, answer, size, SHA-256) and deleted."""
    if args.upload_skip:
        row["status"], row["reason"] = "skipped", args.upload_skip
        return row
    if args.wait_idle > 0:
        row["other_cpu_before"] = round(wait_for_idle(args.noise_limit, args.wait_idle,
                                                      parse_cpus(args.server_cpu), parse_cpus(args.client_cpu)), 3)
    log(f"== {server.name:<10} {scenario:<11} {row['notes']}")
    run_dir = Path(tempfile.mkdtemp(prefix=f"{server.name}-{scenario}-", dir=str(args.upload_base)))
    args.upload_run_dir = run_dir
    st = Started(args, server, scenario, threads, row)
    size = args.upload_bytes
    try:
        if st.error:
            row.update(status="failed", failed=True, reason=f"did not start: {st.error}")
            row["failures"].append(row["reason"])
            return row
        warm = min(size, args.upload_warmup_mib << 20)
        if warm:
            res, text, rc = run_upload(args, st.port, scenario, warm)
            bad = check_saved(args, run_dir, scenario, res, text, rc, warm, None)
            if bad:
                row["failures"].append("warm-up upload: " + "; ".join(bad))
                row["failed"] = True
                row["server_log_tail"] = st.sp.log_tail()
                log(f"   FAIL: {row['failures'][0]}")
                return row
        time.sleep(0.2)
        pids = tree_pids(st.sp.proc.pid)
        startup_hwm = st.sp.peak_hwm_kb()
        idle = {p: status_kb(p, "VmRSS") for p in pids}
        idle_kb = sum(idle.values())
        row["idle_rss_kb"] = idle_kb
        reps = []
        for i in range(args.upload_reps):
            if i and args.wait_idle > 0:
                wait_for_idle(args.noise_limit, args.wait_idle, parse_cpus(args.server_cpu), parse_cpus(args.client_cpu))
            hwm_ok = reset_hwm(pids)
            sampler = PidRssSampler(pids, args.upload_rss_interval)
            sampler.start()
            load = OtherLoad(st.sp.proc.pid, parse_cpus(args.server_cpu), parse_cpus(args.client_cpu)).start()
            res, text, rc = run_upload(args, st.port, scenario)
            server_cpu, other_cpu = load.stop()
            sampled_kb = sampler.stop()
            hwm = {p: status_kb(p, "VmHWM") for p in pids}
            rep: dict = {"mb_per_s": None, "seconds": None, "client_cpu": None,
                         "server_cpu": round(server_cpu, 3), "other_cpu": round(other_cpu, 3),
                         "noisy": other_cpu > args.noise_limit, "peak_rss_sampled_kb": sampled_kb,
                         "rss_samples": sampler.samples,
                         "peak_rss_hwm_kb": sum(hwm.values()) if hwm_ok else None}
            # Growth over the idle RSS: the 10 ms samples' peak, or VmHWM's (reset just before), whichever
            # is higher; per process, so a spike between two samples is not missed.
            growth = sampled_kb - idle_kb
            if hwm_ok:
                growth = max(growth, sum(max(0, hwm[p] - idle[p]) for p in pids))
            rep["rss_growth_kb"] = max(0, growth)
            if res is not None:
                rep.update(mb_per_s=res.get("mb_per_s"), seconds=res.get("seconds"), client_cpu=res.get("client_cpu"),
                           send_seconds=res.get("send_seconds"), status=res.get("status"))
            rep["failures"] = check_saved(args, run_dir, scenario, res, text, rc, size, args.upload_sha256)
            died = st.died()
            if died:
                rep["failures"].append(died)
            reps.append(rep)
            log(f"   #{i + 1}: {fmt_rps(rep['mb_per_s'])} MB/s in {rep['seconds'] or 0:.2f}s  RSS +"
                f"{rep['rss_growth_kb'] / 1024:.1f} MiB (idle {idle_kb / 1024:.1f} MiB)  server {rep['server_cpu']} "
                f"CPU, others {rep['other_cpu']} CPU, client {rep['client_cpu']} CPU"
                + (f"  FAIL: {'; '.join(rep['failures'])}" if rep["failures"] else ""))
            if died:
                break
        row["reps"] = reps
        clean = [r for r in reps if not r["failures"] and r["mb_per_s"]]
        best = max(clean or reps, key=lambda r: r["mb_per_s"] or 0)
        row["rps"] = best["mb_per_s"]
        for key in ("seconds", "client_cpu", "server_cpu", "other_cpu", "noisy", "peak_rss_sampled_kb"):
            row[key] = best.get(key)
        row["requests"] = len(reps)
        row["rss_growth_kb"] = max(r["rss_growth_kb"] for r in reps)  # the worst upload counts
        row["peak_rss_kb"] = max([startup_hwm] + [r["peak_rss_hwm_kb"] or r["peak_rss_sampled_kb"] for r in reps])
        row["notes"] += f"; best of {len(reps)}: " + ", ".join(fmt_rps(r["mb_per_s"]) for r in reps) + " MB/s"
        for r in reps:
            row["failures"].extend(f for f in r["failures"] if f not in row["failures"])
        row["failed"] = bool(row["failures"])
        _client_check(args, row)
        return row
    finally:
        st.close(1.0)
        shutil.rmtree(run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- report

def fmt_rps(v) -> str:
    return "—" if v is None else f"{v:,.0f}"


def fmt_k(v) -> str:
    if not v:
        return "0"
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"


def fmt_ms(v) -> str:
    if v is None:
        return "—"
    return f"{v * 1000:.0f}us" if v < 1 else f"{v:.2f}ms"


def fmt_mb(kb) -> str:
    return "—" if not kb else f"{kb / 1024:.1f} MB"


def find(rows, server, scenario):
    for r in rows:
        if r["server"] == server and r["scenario"] == scenario:
            return r
    return None


def usable(r) -> bool:
    return bool(r and r["status"] == "ok" and not r["failed"] and r["rps"])


def compute_ratios(rows) -> None:
    """mummyx rate / peer rate, whenever both produced a number (failed runs are still flagged)."""
    for r in rows:
        m = find(rows, "mummyx", r["scenario"])
        ok = m and m["rps"] and r["rps"] and r["status"] == "ok" and m["status"] == "ok"
        r["mummyx_ratio"] = (m["rps"] / r["rps"]) if ok else None


def _why(r, name) -> str:
    if r is None:
        return f"{name} not run"
    if r["status"] != "ok" or not r["rps"]:
        return f"{name} {r.get('reason') or 'failed'}"
    return f"{name} run had errors"


def best_peer(rows, scenario):
    """The fastest clean Python peer (not mummyx, nginx or the C ceiling) of a scenario, or None."""
    peers = [r for r in rows if r["scenario"] == scenario and r["server"] not in NOT_PEERS and usable(r)]
    return max(peers, key=lambda r: r["rps"]) if peers else None


def evaluate_targets(rows, scenarios) -> list[dict]:
    """PASS/FAIL/n/a per target. A mummyx run with errors FAILs; a missing/failed peer gives n/a."""
    out = []
    for scenario, peer, minimum, strict in TARGETS:
        if scenario not in scenarios:
            continue
        unit = SCENARIOS[scenario]["unit"]
        m = find(rows, "mummyx", scenario)
        notes: list[str] = []
        if peer == RSS_GROWTH:
            p = None
            desc = f"{scenario}: mummyx RSS growth {'<' if strict else '<='} {minimum:g} MiB"
        elif peer == BEST_PEER:
            p = best_peer(rows, scenario)
            if p is None:
                notes.append("no Python peer ran cleanly")
            desc = f"{scenario}: mummyx >= {minimum:g}x best peer"
        elif peer is not None:
            p = find(rows, peer, scenario)
            desc = f"{scenario}: mummyx {'>' if strict else '>='} {minimum:g}x {peer}"
        else:
            p = None
            desc = f"{scenario}: mummyx >= {minimum:,.0f} {unit}"
        value, verdict = None, "n/a"
        m_ran = bool(m and m["status"] == "ok" and m["rps"])
        if not m_ran:
            notes.append(_why(m, "mummyx"))
        if peer not in (None, BEST_PEER, RSS_GROWTH) and not usable(p):
            notes.append(_why(p, peer))
        if peer == RSS_GROWTH:
            if m_ran and m.get("rss_growth_kb") is not None:
                value = m["rss_growth_kb"] / 1024
        elif m_ran and (peer is None or (p and p["rps"])):
            value = m["rps"] if peer is None else m["rps"] / p["rps"]
        if peer == BEST_PEER and p is not None:
            notes.append(f"best peer: {p['label']}")
        if m_ran and m["failed"]:
            verdict = "FAIL"
            notes.insert(0, "mummyx run had errors")
        elif value is not None and peer == RSS_GROWTH:
            verdict = "PASS" if (value < minimum if strict else value <= minimum) else "FAIL"
        elif value is not None and (peer is None or usable(p)):
            ok = value > minimum if strict else value >= minimum
            verdict = "PASS" if ok else "FAIL"
        out.append({"target": desc, "scenario": scenario, "peer": peer,
                    "peer_used": p["server"] if p else None, "minimum": minimum, "strict": strict,
                    "value": value, "unit": "MiB" if peer == RSS_GROWTH else unit if peer is None else "x",
                    "result": verdict,
                    "note": "; ".join(notes)})
    return out


def fmt_growth(kb) -> str:
    return "—" if kb is None else f"+{kb / 1024:.1f} MiB"


def render_table(rows, targets, args) -> str:
    uploads = any(kind(r["scenario"]) == "upload" for r in rows)
    head = ["scenario", "server", "rate", "p99", "peak RSS"] + (["RSS growth"] if uploads else []) + \
        ["mummyx/peer", "check", "config"]
    body = []
    for r in rows:
        if r["status"] != "ok":
            check = r["reason"] or r["status"]
        elif r["failed"]:
            check = "FAIL: " + "; ".join(r["failures"])
        else:
            check = {"http": "ok (all 2xx)", "ws": "ok (all echoes verified)", "sse": "ok (all subscribed)",
                     "upload": "ok (answer, size, SHA-256 verified)"}[kind(r["scenario"])]
        for w in r.get("warnings") or []:
            check += f"; {w}"
        if r.get("noisy"):
            check += f"; NOISY: other processes used {r['other_cpu']:.2f} CPU"
        ratio = "—"
        if r.get("mummyx_ratio") is not None and r["server"] != "mummyx":
            ratio = f"{r['mummyx_ratio']:.2f}x"
        rate = "—" if r["rps"] is None else f"{fmt_rps(r['rps'])} {r.get('unit', 'req/s')}"
        body.append([r["scenario"], r["label"], rate, fmt_ms(r["p99_ms"]), fmt_mb(r["peak_rss_kb"])]
                    + ([fmt_growth(r.get("rss_growth_kb"))] if uploads else [])
                    + [ratio, check, r["notes"] if r["status"] == "ok" else ""])
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    right = {2, 3, 4, 5, 6} if uploads else {2, 3, 4, 5}

    def line(cells):
        return "  ".join((str(c).rjust(w) if i in right else str(c).ljust(w))
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [line(head), line(["-" * w for w in widths])]
    prev = None
    for cells in body:
        if prev is not None and cells[0] != prev:
            lines.append("")
        prev = cells[0]
        lines.append(line(cells))
    lines.append("")
    lines.append("Targets:")
    for t in targets:
        if t["value"] is None:
            val = "—"
        elif t["peer"] == RSS_GROWTH:
            val = f"{t['value']:.1f} MiB"
        elif t["peer"] is None:
            val = f"{t['value']:,.0f} {t['unit']}"
        else:
            val = f"{t['value']:.2f}x"
        lines.append(f"  [{t['result']:<4}] {t['target']:<40} {val}" + (f"  ({t['note']})" if t["note"] else ""))
    lines.append("")
    noisy = [r for r in rows if r.get("noisy")]
    if noisy:
        lines.append(f"WARNING: {len(noisy)} run(s) shared the machine with other busy processes "
                     f"(> {args.noise_limit:g} CPU outside the server, the load generator and this harness); "
                     "their numbers are low and unreliable. Re-run on an idle machine.")
    if any(kind(r["scenario"]) == "http" for r in rows):
        lines.append(f"http: wrk -t1 -c{args.connections} -d{args.duration:g}s --latency (+{args.warmup:g}s warm-up).")
    if any(kind(r["scenario"]) == "ws" for r in rows):
        lines.append(f"ws: wsbench -c{args.ws_connections} -k{args.ws_inflight} -d{args.duration:g} "
                     f"-w{args.warmup:g}: echoes/s, p99 = send -> echo round trip.")
    if any(kind(r["scenario"]) == "sse" for r in rows):
        rates, ramp = sse_rates(args)
        how = (f"publish rate doubled from {rates[0]:g}/s up to {rates[-1]:g}/s while a server delivers >= 90 % "
               "of it or > 10 % more than before" if ramp else "publish rates " + ",".join(f"{x:g}" for x in rates))
        lines.append(f"sse: ssebench -c{args.sse_clients} -d{args.sse_duration:g} -w{args.sse_warmup:g} per rate; "
                     f"{how}; best events/s reported (* = did not keep up), p99 = publish -> receive at that rate.")
    if uploads and getattr(args, "upload_src", None):
        lines.append(f"upload: uploadbench (sendfile) sends {args.upload_bytes / 2**20:,.0f} MiB of random bytes "
                     f"(multipart-wrapped for upload-form) to a fresh server, saved to {args.upload_fs} "
                     f"({args.upload_base.parent}); best of {args.upload_reps} after a {args.upload_warmup_mib} MiB "
                     "warm-up; MB/s = file bytes / 10^6 / (connect -> response); RSS growth = peak over the idle "
                     f"RSS (VmRSS every {args.upload_rss_interval * 1000:g} ms, VmHWM reset before each upload).")
    lines.append(f"Server on CPU {args.server_cpu}, load generator on CPU {args.client_cpu}; "
                 "peak RSS = sum of VmHWM over the server's process tree.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10,
                    help="seconds per recorded wrk / wsbench run (default 10)")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of unrecorded warm-up before each run (default 2; 0 = none)")
    ap.add_argument("--connections", type=int, default=100, help="wrk connections (default 100)")
    ap.add_argument("--plain-threads", type=int, default=4,
                    help="thread-pool size for the plaintext scenario: mummyx workers, granian blocking threads, "
                         "gunicorn threads (default 4)")
    ap.add_argument("--sleep-threads", type=int, default=128,
                    help="thread-pool size for the sleep scenario (default 128; needs >= connections)")
    ap.add_argument("--servers", default=",".join(SERVER_ORDER),
                    help=f"comma-separated subset of {','.join(SERVER_ORDER)}")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ws = ap.add_argument_group("WebSocket echo scenarios (ws-32b, ws-16k; load generator wsbench.c)")
    ws.add_argument("--ws-connections", type=int, default=100, help="WebSocket connections (default 100)")
    ws.add_argument("--ws-inflight", type=int, default=1,
                    help="messages in flight per connection: a new one is sent per echo received (default 1)")
    ws.add_argument("--ws-workers", type=int, default=4,
                    help="mummyx worker threads in the ws and sse scenarios (default 4)")
    sse = ap.add_argument_group("SSE fan-out scenario (sse; load generator ssebench.c)")
    sse.add_argument("--sse-clients", type=int, default=1000, help="subscribed connections (default 1000)")
    sse.add_argument("--sse-rate-start", type=float, default=50,
                     help="first publish rate of the ramp, events/s (default 50)")
    sse.add_argument("--sse-rate-max", type=float, default=6400,
                     help="highest publish rate of the ramp (default 6400); the rate doubles while the "
                          "server delivers >= 90%% of rate x clients, or still delivers > 10%% more than "
                          "at any lower rate")
    sse.add_argument("--sse-rates", default=None, metavar="R1,R2",
                     help="run exactly these publish rates instead of the ramp (best is reported)")
    sse.add_argument("--sse-duration", type=float, default=5, help="measured seconds per rate (default 5)")
    sse.add_argument("--sse-warmup", type=float, default=1,
                     help="unrecorded seconds per rate after all clients subscribed (default 1)")
    sse.add_argument("--sse-queue", type=int, default=256,
                     help="per-subscriber queue bound in the Python peers' apps; full = drop (default 256)")
    up = ap.add_argument_group("upload scenarios (upload-raw, upload-form; load generator uploadbench.c)")
    up.add_argument("--upload-mib", type=int, default=1024, help="body (file) size in MiB (default 1024 = 1 GiB)")
    up.add_argument("--upload-reps", type=int, default=3,
                    help="recorded uploads per server and scenario; the fastest is reported (default 3)")
    up.add_argument("--upload-warmup-mib", type=int, default=8,
                    help="size of the unrecorded upload before the idle RSS is read (default 8; 0 = none)")
    up.add_argument("--upload-dir", default=None, metavar="DIR",
                    help="where the source file and the servers' saved files go (in a fresh temp dir inside DIR; "
                         "default /dev/shm when it is tmpfs with room, else the system temp dir)")
    up.add_argument("--upload-workers", type=int, default=4, help="mummyx worker threads (default 4)")
    up.add_argument("--upload-rss-interval", type=float, default=0.01, metavar="S",
                    help="RSS sampling period during an upload (default 0.01)")
    up.add_argument("--upload-timeout", type=float, default=300, metavar="S",
                    help="give up on one upload after S seconds without progress (default 300)")
    ap.add_argument("--client-bound", type=float, default=0.9, metavar="CPU",
                    help="warn CLIENT-BOUND when wsbench/ssebench/uploadbench used more CPU than this (default 0.9)")
    ap.add_argument("--server-cpu", default="0", help="CPU list for servers (taskset -c; default 0)")
    ap.add_argument("--client-cpu", default="1", help="CPU list for the load generator (taskset -c; default 1)")
    ap.add_argument("--no-pin", action="store_true", help="do not taskset the server or the load generator")
    ap.add_argument("--noise-limit", type=float, default=0.1,
                    help="flag a run as NOISY when other processes used more than this many CPUs during it")
    ap.add_argument("--wait-idle", type=float, default=10, metavar="S",
                    help="before each run, wait up to S seconds for other processes to go below --noise-limit "
                         "(default 10; 0: don't wait, just flag the run NOISY)")
    ap.add_argument("--start-timeout", type=float, default=30, help="seconds to wait for a server's port")
    ap.add_argument("--out", default=str(HERE / "results" / "latest.json"), help="JSON output path")
    ap.add_argument("--install", action="store_true", help="run benchmarks/setup.sh first (apt + pip)")
    args = ap.parse_args(argv)

    if args.install:
        log("== running benchmarks/setup.sh")
        rc = subprocess.call(["bash", str(HERE / "setup.sh")], env={**os.environ, "PYTHON": PY})
        if rc != 0:
            log(f"setup.sh exited {rc}; continuing with whatever is installed")
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    elif not shutil.which("taskset"):
        log("warning: taskset not found; running unpinned")
        args.server_cpu = args.client_cpu = None
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            ap.error(f"unknown server {s!r}; choose from {','.join(SERVER_ORDER)}")
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}; choose from {','.join(SCENARIOS)}")
    kinds = {kind(s) for s in scenarios}
    if "http" in kinds and not shutil.which("wrk"):
        log("error: wrk not found. Install it with `python benchmarks/run.py --install` "
            "or `apt-get install wrk`.")
        return 2
    for k, tool in (("ws", "wsbench"), ("sse", "ssebench"), ("upload", "uploadbench")):
        if k in kinds:
            path, err = build_tool(tool)
            if not path:
                log(f"error: cannot build benchmarks/{tool}.c: {err}")
                return 2
    args.sse_rate_now = args.sse_rate_start
    args.upload_bytes = args.upload_mib << 20
    args.upload_src = args.upload_base = args.upload_fs = args.upload_sha256 = args.upload_run_dir = None
    args.upload_skip = None
    if args.upload_mib <= 0 or args.upload_reps <= 0:
        ap.error("--upload-mib and --upload-reps must be positive")
    # 1,000 SSE clients + the servers' own sockets: children inherit the raised limit.
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = max(args.sse_clients, args.ws_connections, args.connections) * 2 + 1024
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            if new < want:
                log(f"warning: open-file limit {new} (hard limit) may be too low for {args.sse_clients} SSE clients")
    except (ValueError, OSError) as e:
        log(f"warning: could not raise the open-file limit: {e}")

    # Keep the harness itself (sampler, parsing) off the server's core.
    if args.client_cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            cpus = {int(c) for c in args.client_cpu.split(",") if c.isdigit()}
            if cpus:
                os.sched_setaffinity(0, cpus)
        except OSError:
            pass

    atexit.register(kill_all_servers)

    def on_signal(signum, frame):
        kill_all_servers()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = _dt.datetime.now(_dt.timezone.utc)
    if "upload" in kinds:
        prepare_upload(args)
    rows = []
    try:
        for scenario in scenarios:
            for name in SERVER_ORDER:
                if name in servers and kind(scenario) in SERVERS[name].kinds:
                    rows.append(bench_one(args, SERVERS[name], scenario))
    finally:
        kill_all_servers()
    compute_ratios(rows)
    targets = evaluate_targets(rows, scenarios)

    table = render_table(rows, targets, args)
    print()
    print(table)

    meta = {
        "started": started.isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "wrk": tool_version(["wrk", "--version"]),
        "versions": {n: SERVERS[n].version() for n in servers},
        "peer_packages": {n: pkg_version(n) for n in ("websockets", "sse-starlette", "starlette", "uvloop",
                                                       "httptools", "streaming-form-data")},
        "git_commit": git_commit(),
    }
    config = {k: getattr(args, k) for k in ("duration", "warmup", "connections", "plain_threads",
                                            "sleep_threads", "server_cpu", "client_cpu", "noise_limit", "wait_idle",
                                            "ws_connections", "ws_inflight", "ws_workers", "sse_clients",
                                            "sse_rate_start", "sse_rate_max", "sse_rates", "sse_duration",
                                            "sse_warmup", "sse_queue", "client_bound", "upload_mib", "upload_reps",
                                            "upload_warmup_mib", "upload_workers", "upload_rss_interval",
                                            "upload_fs")}
    config["upload_dir"] = str(args.upload_base.parent) if args.upload_base else args.upload_dir
    config["scenarios"] = {s: SCENARIOS[s]["desc"] for s in scenarios}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "config": config, "results": rows, "targets": targets,
                               "table": table}, indent=2) + "\n")
    log(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
