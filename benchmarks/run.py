#!/usr/bin/env python3
"""Run wrk against mummyx and its peers on this machine; print a table, write JSON.

    python benchmarks/run.py                 # everything, defaults (~3-4 min)
    python benchmarks/run.py --install       # first apt/pip-install wrk, nginx-light, the peers
    python benchmarks/run.py --duration 5 --servers mummyx,granian --scenarios plaintext

See benchmarks/README.md for what is measured and how.
"""
from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import importlib.metadata
import json
import os
import platform
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
PY = sys.executable
BODY = "Hello, World!"

SCENARIOS = {
    # name: (url path, description)
    "plaintext": ("/", 'GET / -> "Hello, World!" text/plain'),
    "sleep": ("/sleep", 'GET /sleep -> sleep 10 ms, then "Hello, World!" (100 conns: ceiling 10,000 req/s)'),
}
SERVER_ORDER = ["mummyx", "granian", "uvicorn", "gunicorn", "socketify", "nginx"]
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")

# Targets: (scenario, peer or None, minimum). With a peer: mummyx req/s / peer req/s >= minimum;
# without one: mummyx req/s >= minimum.
TARGETS = [
    ("plaintext", "granian", 1.5),
    ("plaintext", "uvicorn", 3.0),
    ("plaintext", "nginx", 0.5),
    ("sleep", None, 9500.0),
]


# --------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
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

    def kill(self) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left; wait until it is gone."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
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
    """A peer: how to tell whether it is there, and how to start it for a scenario."""

    def __init__(self, name: str, label: str):
        self.name, self.label = name, label

    def unavailable(self, scenario: str) -> str | None:  # None => can run
        raise NotImplementedError

    def command(self, scenario: str, port: int, threads: int, tmp: Path) -> list[str]:
        raise NotImplementedError

    def version(self) -> str | None:
        return None

    def env(self) -> dict | None:  # None => inherit
        return None

    def notes(self, scenario: str, threads: int) -> str:
        return ""


class Mummyx(Server):
    """Uses the installed mummyx; failing that, an in-place build in the repo (PYTHONPATH=repo)."""
    _err: str | None | bool = False
    _env: dict | None = None
    _source: str = ""

    def unavailable(self, scenario):
        if self._err is False:
            check = "mummyx; mummyx.Server; mummyx.Router"
            err = try_import(check)
            if err is None:
                self._source = "installed"
            elif (REPO / "mummyx" / "__init__.py").exists():
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                    [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
                err2 = try_import(check, env)
                if err2 is None:
                    err, self._env, self._source = None, env, "source tree"
                else:
                    err = f"{err}; from the source tree: {err2}"
            self._err = None if err is None else f"not installed ({err})"
        return self._err

    def env(self):
        return self._env

    def command(self, scenario, port, threads, tmp):
        return [PY, str(APPS / "mummyx_app.py"), str(port), str(threads)]

    def version(self):
        v = pkg_version("mummyx")
        if v is None and self._source == "source tree":
            m = re.search(r'__version__\s*=\s*"([^"]+)"', (REPO / "mummyx" / "__init__.py").read_text())
            v = (m.group(1) if m else "?") + " (source tree)"
        return v

    def notes(self, scenario, threads):
        return f"workers={threads}"


class Granian(Server):
    def unavailable(self, scenario):
        return None if pkg_version("granian") else "not installed (pip install granian)"

    def command(self, scenario, port, threads, tmp):
        return [PY, "-m", "granian", "--interface", "wsgi", "--http", "1", "--workers", "1",
                "--runtime-threads", "1", "--blocking-threads", str(threads),
                "--no-ws", "--no-access-log", "--log-level", "warning",
                "--host", "127.0.0.1", "--port", str(port), "wsgi_app:app"]

    def version(self):
        return pkg_version("granian")

    def notes(self, scenario, threads):
        return f"wsgi, blocking-threads={threads}"


class Uvicorn(Server):
    def unavailable(self, scenario):
        missing = [m for m in ("uvicorn", "httptools", "uvloop") if not pkg_version(m)]
        return f"not installed ({', '.join(missing)})" if missing else None

    def command(self, scenario, port, threads, tmp):
        return [PY, "-m", "uvicorn", "asgi_app:app", "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--http", "httptools", "--loop", "uvloop",
                "--no-access-log", "--log-level", "warning"]

    def version(self):
        return pkg_version("uvicorn")

    def notes(self, scenario, threads):
        return "asgi, httptools+uvloop" + (", asyncio.sleep" if scenario == "sleep" else "")


class Gunicorn(Server):
    def unavailable(self, scenario):
        return None if pkg_version("gunicorn") else "not installed (pip install gunicorn)"

    def command(self, scenario, port, threads, tmp):
        return [PY, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1",
                "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
                "--log-level", "warning", "wsgi_app:app"]

    def version(self):
        return pkg_version("gunicorn")

    def notes(self, scenario, threads):
        return f"gthread, threads={threads}"


class Socketify(Server):
    _err: str | None | bool = False

    def unavailable(self, scenario):
        if self._err is False:
            if not pkg_version("socketify"):
                self._err = "not installed (pip install socketify)"
            else:
                err = try_import("socketify")
                self._err = None if err is None else f"import failed ({err}); needs libuv1"
        return self._err

    def command(self, scenario, port, threads, tmp):
        return [PY, str(APPS / "socketify_app.py"), str(port)]

    def version(self):
        return pkg_version("socketify")

    def notes(self, scenario, threads):
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

    def command(self, scenario, port, threads, tmp):
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

    def notes(self, scenario, threads):
        return "1 worker_process" + (", echo_sleep" if scenario == "sleep" else "")


SERVERS: dict[str, Server] = {
    "mummyx": Mummyx("mummyx", "mummyx"),
    "granian": Granian("granian", "granian (WSGI)"),
    "uvicorn": Uvicorn("uvicorn", "uvicorn (httptools)"),
    "gunicorn": Gunicorn("gunicorn", "gunicorn (gthread)"),
    "socketify": Socketify("socketify", "socketify"),
    "nginx": Nginx("nginx", "nginx (ceiling)"),
}


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


# --------------------------------------------------------------------------- one run

def bench_one(args, server: Server, scenario: str) -> dict:
    threads = args.sleep_threads if scenario == "sleep" else args.plain_threads
    row = {"server": server.name, "label": server.label, "scenario": scenario,
           "status": "ok", "reason": None, "notes": server.notes(scenario, threads),
           "rps": None, "p99_ms": None, "p50_ms": None, "avg_ms": None, "max_ms": None,
           "requests": 0, "socket_errors": None, "non_2xx_3xx": None,
           "peak_rss_kb": None, "peak_rss_sampled_kb": None, "failed": False, "failures": [],
           "server_cpu": None, "other_cpu": None, "noisy": False,
           "command": None}
    why = server.unavailable(scenario)
    if why:
        row["status"] = "skipped" if why.startswith("skipped") else "not installed"
        row["reason"] = why
        return row

    path, _ = SCENARIOS[scenario]
    if args.wait_idle > 0:
        before = wait_for_idle(args.noise_limit, args.wait_idle,
                               parse_cpus(args.server_cpu), parse_cpus(args.client_cpu))
        row["other_cpu_before"] = round(before, 3)
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{server.name}-"))
    port = free_port()
    argv = pin(args.server_cpu, server.command(scenario, port, threads, tmp))
    row["command"] = " ".join(argv)
    url = f"http://127.0.0.1:{port}{path}"
    log(f"== {server.name:<10} {scenario:<10} {row['notes']}")
    sp = ServerProc(server.name, argv, APPS, tmp / "server.log", env=server.env())
    try:
        err = sp.wait_port(port, args.start_timeout)
        if err:
            row.update(status="failed", failed=True, reason=f"did not start: {err}")
            row["failures"].append(row["reason"])
            tail = sp.log_tail()
            row["server_log_tail"] = tail
            log(f"   failed to start: {err}\n" + "\n".join("   | " + ln for ln in tail.splitlines()))
            return row
        bad = preflight(url)
        if bad:
            row["failures"].append(f"bad response: {bad}")
        if args.warmup > 0:
            run_wrk(args, url, args.warmup)
        sampler = RssSampler(sp.proc.pid)
        sampler.start()
        load = OtherLoad(sp.proc.pid, parse_cpus(args.server_cpu), parse_cpus(args.client_cpu)).start()
        res, out = run_wrk(args, url, args.duration)
        server_cpu, other_cpu = load.stop()
        row["peak_rss_sampled_kb"] = sampler.stop()
        # CPUs' worth of work done by processes other than this server, wrk and the harness:
        # other sessions' builds/tests on a shared machine make the numbers unreliable.
        row["server_cpu"], row["other_cpu"] = round(server_cpu, 3), round(other_cpu, 3)
        if row["other_cpu"] is not None and row["other_cpu"] > args.noise_limit:
            row["noisy"] = True
        row["peak_rss_kb"] = sp.peak_hwm_kb() or row["peak_rss_sampled_kb"]
        if sp.proc.poll() is not None:
            row["failures"].append(f"server exited (code {sp.proc.returncode}) during the run")
            row["server_log_tail"] = sp.log_tail()
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
        row["failed"] = bool(row["failures"])
        log(f"   {fmt_rps(row['rps'])} req/s  p99 {fmt_ms(row['p99_ms'])}  "
            f"peak RSS {fmt_mb(row['peak_rss_kb'])}  server {row['server_cpu']} CPU, "
            f"others {row['other_cpu']} CPU" + (f"  FAIL: {'; '.join(row['failures'])}"
                                                        if row["failed"] else ""))
        return row
    finally:
        sp.kill()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- report

def fmt_rps(v) -> str:
    return "—" if v is None else f"{v:,.0f}"


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
    """mummyx req/s / peer req/s, whenever both produced a number (failed runs are still flagged)."""
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


def evaluate_targets(rows) -> list[dict]:
    """PASS/FAIL/n/a per target. A mummyx run with errors FAILs; a missing/failed peer gives n/a."""
    out = []
    for scenario, peer, minimum in TARGETS:
        m = find(rows, "mummyx", scenario)
        p = find(rows, peer, scenario) if peer else None
        if peer is None:
            desc = f"{scenario}: mummyx >= {minimum:,.0f} req/s"
        else:
            desc = f"{scenario}: mummyx >= {minimum:g}x {peer}"
        value, verdict, notes = None, "n/a", []
        m_ran = bool(m and m["status"] == "ok" and m["rps"])
        if not m_ran:
            notes.append(_why(m, "mummyx"))
        if peer is not None and not usable(p):
            notes.append(_why(p, peer))
        if m_ran and (peer is None or (p and p["rps"])):
            value = m["rps"] if peer is None else m["rps"] / p["rps"]
        if m_ran and m["failed"]:
            verdict = "FAIL"
            notes.insert(0, "mummyx run had errors")
        elif value is not None and (peer is None or usable(p)):
            verdict = "PASS" if value >= minimum else "FAIL"
        out.append({"target": desc, "scenario": scenario, "peer": peer, "minimum": minimum,
                    "value": value, "result": verdict, "note": "; ".join(notes)})
    return out


def render_table(rows, targets, args) -> str:
    head = ["scenario", "server", "req/s", "p99", "peak RSS", "mummyx/peer", "check", "config"]
    body = []
    for r in rows:
        if r["status"] != "ok":
            check = r["reason"] or r["status"]
        elif r["failed"]:
            check = "FAIL: " + "; ".join(r["failures"])
        else:
            check = "ok (all 2xx)"
        if r.get("noisy"):
            check += f"; NOISY: other processes used {r['other_cpu']:.2f} CPU"
        ratio = "—"
        if r.get("mummyx_ratio") is not None and r["server"] != "mummyx":
            ratio = f"{r['mummyx_ratio']:.2f}x"
        body.append([r["scenario"], r["label"], fmt_rps(r["rps"]), fmt_ms(r["p99_ms"]),
                     fmt_mb(r["peak_rss_kb"]), ratio, check, r["notes"] if r["status"] == "ok" else ""])
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    right = {2, 3, 4, 5}

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
        val = "—" if t["value"] is None else (f"{t['value']:,.0f} req/s" if t["peer"] is None
                                               else f"{t['value']:.2f}x")
        lines.append(f"  [{t['result']:<4}] {t['target']:<40} {val}" + (f"  ({t['note']})" if t["note"] else ""))
    lines.append("")
    noisy = [r for r in rows if r.get("noisy")]
    if noisy:
        lines.append(f"WARNING: {len(noisy)} run(s) shared the machine with other busy processes "
                     f"(> {args.noise_limit:g} CPU outside the server, wrk and this harness); "
                     "their numbers are low and unreliable. Re-run on an idle machine.")
    lines.append(f"wrk -t1 -c{args.connections} -d{args.duration:g}s --latency (+{args.warmup:g}s warm-up), "
                 f"server on CPU {args.server_cpu}, wrk on CPU {args.client_cpu}; "
                 "peak RSS = sum of VmHWM over the server's process tree.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10, help="seconds per recorded wrk run (default 10)")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of unrecorded warm-up before each run (default 2; 0 = none)")
    ap.add_argument("--connections", type=int, default=100, help="wrk connections (default 100)")
    ap.add_argument("--plain-threads", type=int, default=4,
                    help="thread-pool size for the plaintext scenario: mummyx workers, granian blocking threads, "
                         "gunicorn threads (default 4)")
    ap.add_argument("--sleep-threads", type=int, default=128,
                    help="thread-pool size for the sleep scenario (default 128; needs >= connections)")
    ap.add_argument("--servers", default=",".join(SERVER_ORDER),
                    help=f"comma-separated subset of {','.join(SERVER_ORDER)}")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of plaintext,sleep")
    ap.add_argument("--server-cpu", default="0", help="CPU list for servers (taskset -c; default 0)")
    ap.add_argument("--client-cpu", default="1", help="CPU list for wrk (taskset -c; default 1)")
    ap.add_argument("--no-pin", action="store_true", help="do not taskset the server or wrk")
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
    if not shutil.which("wrk"):
        log("error: wrk not found. Install it with `python benchmarks/run.py --install` "
            "or `apt-get install wrk`.")
        return 2

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
    rows = []
    try:
        for scenario in scenarios:
            for name in SERVER_ORDER:
                if name in servers:
                    rows.append(bench_one(args, SERVERS[name], scenario))
    finally:
        kill_all_servers()
    compute_ratios(rows)
    targets = evaluate_targets(rows)

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
        "git_commit": git_commit(),
    }
    config = {k: getattr(args, k) for k in ("duration", "warmup", "connections", "plain_threads",
                                            "sleep_threads", "server_cpu", "client_cpu", "noise_limit", "wait_idle")}
    config["scenarios"] = {s: SCENARIOS[s][1] for s in scenarios}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "config": config, "results": rows, "targets": targets,
                               "table": table}, indent=2) + "\n")
    log(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
