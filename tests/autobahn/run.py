#!/usr/bin/env python3
"""Run the Autobahn TestSuite WebSocket cases (via kosoku) against an echo server.

    python tests/autobahn/run.py                                   # mummyx echo server, 1-10,12-13
    python tests/autobahn/run.py --cases 1-7 --parallelism 1
    python tests/autobahn/run.py --server-cmd "python tests/autobahn/reference_echo.py {port}"

Starts the server command on a free 127.0.0.1 port ("{port}" in the command is replaced by the
port; without it the port is appended as the last argument), waits until it accepts TCP and
answers a WebSocket upgrade, then runs the selected cases with kosoku's fuzzing client, one
kosoku process per group (per sub-group for the long groups 9, 12 and 13), so a hang loses at
most that batch, and each batch has a time limit. Reports go to --out (default out/autobahn/): index.json (Autobahn format:
{agent: {case id: {behavior, behaviorClose, remoteCloseCode, duration, reportfile}}}),
index.html, one .json/.html per case, summary.json, server.log, kosoku.log.

Exit status: 0 when every selected case ended OK, NON-STRICT or INFORMATIONAL for both behaviour
and close; 1 when any did not (or did not run); 2 on a usage or setup error. See README.md here.
"""
from __future__ import annotations

import argparse
import fnmatch
import html
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_OUT = REPO / "out" / "autobahn"
DEFAULT_CASES = "1-10,12-13"
PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")
# What index.json says for cases kosoku gave no result for.
TIMEOUT, NOT_RUN = "TIMEOUT", "NOT RUN"
KOSOKU_MAIN = "from kosoku._cli import main; main()"
# The fixed handshake key kosoku itself uses; the probe checks the server's answer to it.
PROBE_KEY, PROBE_ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def log(msg: str = "") -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def case_sort_key(case_id: str) -> List[int]:
    return [int(p) for p in case_id.split(".")]


# --------------------------------------------------------------------------- case selection

def load_cases() -> Dict[str, type]:
    """kosoku's case index: case id -> case class (with DESCRIPTION / EXPECTATION)."""
    try:
        from kosoku.cases import CASES  # imports the vendored Autobahn case files
    except ImportError as exc:
        sys.exit(f"run.py: kosoku is not importable by {sys.executable} ({exc}); "
                 "pip install kosoku (needs Python >= 3.10)")
    return dict(CASES)


def expand_spec(spec: str, all_ids: List[str]) -> List[str]:
    """'1-10,12-13' / '9' / '7.1' / '9.7.*' / '7.1.5' -> the matching case ids, in case order."""
    picked = set()
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", token)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise ValueError(f"empty range {token!r}")
            hits = [c for c in all_ids if lo <= int(c.split(".")[0]) <= hi]
        elif re.fullmatch(r"\d+", token):
            hits = [c for c in all_ids if c.split(".")[0] == token]
        else:
            hits = [c for c in all_ids if fnmatch.fnmatchcase(c, token)]
            if not hits and not any(ch in token for ch in "*?["):
                hits = [c for c in all_ids if c.startswith(token + ".")]  # '7.1': sub-group
        if not hits:
            raise ValueError(f"{token!r} matches no case")
        picked.update(hits)
    return sorted(picked, key=case_sort_key)


# Groups whose cases are long (large messages, 1000-message round trips, compression) run one
# kosoku process per sub-group (e.g. 12.3), the others one per group: a process costs ~0.3 s.
SPLIT_GROUPS = {"9", "12", "13"}


def batch_key(case_id: str) -> str:
    """The kosoku run a case belongs to: '12.3.5' -> '12.3', '6.5.3' -> '6'."""
    parts = case_id.split(".")
    return ".".join(parts[:2]) if parts[0] in SPLIT_GROUPS else parts[0]


def make_batches(ids: List[str]) -> List[Tuple[str, List[str]]]:
    batches: Dict[str, List[str]] = {}
    for c in ids:
        batches.setdefault(batch_key(c), []).append(c)
    return list(batches.items())


def clean_text(text: Optional[str], limit: int = 160) -> str:
    """A case DESCRIPTION (HTML-ish) as one plain line."""
    text = re.sub(r"<br\s*/?>", " ", text or "", flags=re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- processes

def kill_group(proc: "subprocess.Popen[bytes]", grace: float) -> None:
    """Stop a process started with start_new_session=True, and its children (its group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def server_argv(cmd: str, port: int) -> List[str]:
    argv = shlex.split(cmd)
    if not argv:
        raise ValueError("empty --server-cmd")
    if any("{port}" in a for a in argv):
        return [a.replace("{port}", str(port)) for a in argv]
    return argv + [str(port)]


def wait_for_port(proc: "subprocess.Popen[bytes]", port: int, timeout: float) -> Optional[str]:
    """None once 127.0.0.1:port accepts; else why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"server exited with status {proc.returncode} before listening"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return None
        except OSError:
            time.sleep(0.1)
    return f"server did not accept connections on 127.0.0.1:{port} within {timeout:.0f} s"


def probe_upgrade(port: int, path: str, timeout: float = 10.0) -> Optional[str]:
    """One plain WebSocket handshake, as kosoku sends it. None if the server answers 101 with
    the right Sec-WebSocket-Accept; else a description of what it did."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {PROBE_KEY}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(request)
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in data and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except socket.timeout:
        pass
    except OSError as exc:
        return f"probe failed: {exc}"
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    if not head:
        return f"no answer to a WebSocket upgrade request within {timeout:.0f} s"
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if not re.match(r"HTTP/1\.1 101\b", lines[0]) or headers.get("sec-websocket-accept") != PROBE_ACCEPT:
        return "unexpected answer to a WebSocket upgrade request:\n    " + "\n    ".join(lines[:20])
    return None


# --------------------------------------------------------------------------- reports

def log_tail(path: Path, lines: int = 40) -> None:
    text = path.read_bytes()[-8000:].decode("utf-8", "replace").splitlines()[-lines:]
    if text:
        log(f"autobahn: {path.name} (tail):")
        log("    " + "\n    ".join(text))


def prepare_outdir(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():
        if p.name == ".batches":
            shutil.rmtree(p)
        elif p.is_file() and (p.suffix in (".json", ".html") or p.name in ("server.log", "kosoku.log")):
            p.unlink()


def merge_batch(batch_dir: Path, out: Path, index: Dict[str, Dict[str, dict]]) -> Dict[str, str]:
    """Move one kosoku report into `out` and merge its index. Returns {case id: agent}."""
    seen: Dict[str, str] = {}
    index_file = batch_dir / "index.json"
    if not index_file.exists():
        return seen
    with open(index_file) as f:
        part = json.load(f)
    for agent, entries in part.items():
        for case_id, entry in entries.items():
            index.setdefault(agent, {})[case_id] = entry
            seen[case_id] = agent
    for p in batch_dir.iterdir():
        if p.name not in ("index.json", "index.html"):
            os.replace(p, out / p.name)
    return seen


def write_master_html(out: Path, index: Dict[str, Dict[str, dict]]) -> None:
    """index.html over every case, with kosoku's own renderer (best effort: private API)."""
    try:
        from kosoku._report import _master_html
    except ImportError:
        return
    cases = {}
    for agent, entries in index.items():
        for case_id, entry in entries.items():
            rf = entry.get("reportfile")
            if rf and (out / rf).exists():
                with open(out / rf) as f:
                    cases[(agent, case_id)] = json.load(f)
    try:
        text = _master_html({a: e for a, e in index.items()}, cases)
    except Exception as exc:  # a renderer change must not fail the run
        log(f"(index.html not written: {exc!r})")
        return
    (out / "index.html").write_text(text)


def case_details(out: Path, entry: dict) -> dict:
    rf = entry.get("reportfile")
    if rf and (out / rf).exists():
        with open(out / rf) as f:
            return json.load(f)
    return {}


# --------------------------------------------------------------------------- main

def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Run the Autobahn WebSocket cases (kosoku) against an echo server.")
    ap.add_argument("--server-cmd", default=None,
                    help='echo server command; "{port}" is replaced by the port (else the port '
                         "is appended). Default: this python tests/autobahn/echo_server.py PORT")
    ap.add_argument("--cases", default=DEFAULT_CASES,
                    help="comma list of groups, group ranges, case ids or globs "
                         f"(e.g. 1-10,12-13 / 9 / 7.1.5 / '12.1.*'). Default {DEFAULT_CASES}")
    ap.add_argument("--exclude", action="append", default=[], metavar="SPEC",
                    help="cases to leave out, same syntax (repeatable); for trying things out, "
                         "not for CI")
    ap.add_argument("--out", default=str(DEFAULT_OUT),
                    help=f"report directory (default {DEFAULT_OUT.relative_to(REPO)})")
    ap.add_argument("--parallelism", "-p", type=int, default=2,
                    help="cases kosoku runs at once within a batch (default 2)")
    ap.add_argument("--path", default="/", help="request path of the WebSocket URL (default /)")
    ap.add_argument("--timeout", type=float, default=2400.0,
                    help="seconds for the whole run; batches not started by then are "
                         "reported NOT RUN (default 2400)")
    ap.add_argument("--batch-timeout", type=float, default=900.0,
                    help="seconds for one batch (a group, or a sub-group of 9/12/13 such as "
                         "12.1, 18 cases); its unfinished cases are reported TIMEOUT (default 900)")
    ap.add_argument("--startup-timeout", type=float, default=30.0,
                    help="seconds for the server to start listening (default 30)")
    args = ap.parse_args(argv)
    if args.parallelism < 1:
        ap.error("--parallelism must be >= 1")
    if not args.path.startswith("/"):
        ap.error("--path must start with /")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = started + args.timeout
    server_cmd = args.server_cmd or f"{shlex.quote(sys.executable)} tests/autobahn/echo_server.py {{port}}"

    all_cases = load_cases()
    try:
        ids = expand_spec(args.cases, list(all_cases))
        excluded = set()
        for spec in args.exclude:
            excluded.update(expand_spec(spec, list(all_cases)))
    except ValueError as exc:
        log(f"run.py: --cases/--exclude: {exc}")
        return 2
    ids = [c for c in ids if c not in excluded]
    if not ids:
        log("run.py: no case selected")
        return 2
    batches = make_batches(ids)

    out = Path(args.out).resolve()
    prepare_outdir(out)
    batch_root = out / ".batches"
    batch_root.mkdir()

    port = free_port()
    try:
        argv_server = server_argv(server_cmd, port)
    except ValueError as exc:
        log(f"run.py: {exc}")
        return 2
    url = f"ws://127.0.0.1:{port}{args.path}"
    log(f"autobahn: {len(ids)} cases in {len(batches)} batches ({args.cases}"
        + (f", minus {','.join(args.exclude)}" if args.exclude else "") + f"), parallelism {args.parallelism}")
    log(f"autobahn: server: {' '.join(shlex.quote(a) for a in argv_server)}")
    log(f"autobahn: reports: {out}")

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server_log = open(out / "server.log", "wb")
    kosoku_log = open(out / "kosoku.log", "wb")
    server = subprocess.Popen(argv_server, cwd=str(REPO), env=env, stdin=subprocess.DEVNULL,
                              stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True)
    index: Dict[str, Dict[str, dict]] = {}
    missing: Dict[str, str] = {}   # case id -> TIMEOUT / NOT RUN
    batch_times: Dict[str, float] = {}
    server_note = ""
    try:
        problem = wait_for_port(server, port, args.startup_timeout)
        if problem is None:
            problem = probe_upgrade(port, args.path)
        if problem is not None:
            log(f"autobahn: setup failed: {problem}")
            kill_group(server, 10)
            server_log.flush()
            log_tail(out / "server.log")
            with open(out / "summary.json", "w") as f:
                json.dump({"server_cmd": server_cmd, "cases": args.cases, "setup_error": problem},
                          f, indent=2)
            return 2
        log(f"autobahn: server ready at {url} ({time.monotonic() - started:.1f} s)")

        for n, (key, batch_ids) in enumerate(batches, 1):
            now = time.monotonic()
            if now >= deadline or server.poll() is not None:
                for c in batch_ids:
                    missing[c] = NOT_RUN
                continue
            batch_dir = batch_root / key
            cmd = [sys.executable, "-c", KOSOKU_MAIN, url, "-o", str(batch_dir),
                   "-p", str(args.parallelism)]
            for c in batch_ids:
                cmd += ["-i", c]
            kosoku_log.write(f"\n==== {key}: {len(batch_ids)} cases\n".encode())
            kosoku_log.flush()
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=kosoku_log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            limit = min(args.batch_timeout, max(1.0, deadline - now))
            timed_out = False
            try:
                proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_group(proc, 5)
            except BaseException:
                kill_group(proc, 5)
                raise
            batch_times[key] = time.monotonic() - t0
            got = merge_batch(batch_dir, out, index) if batch_dir.exists() else {}
            for c in batch_ids:
                if c not in got:
                    missing[c] = TIMEOUT if timed_out else NOT_RUN
            bad = sum(1 for c, a in got.items()
                      if index[a][c]["behavior"] not in PASSING
                      or index[a][c]["behaviorClose"] not in PASSING)
            note = f"; TIMED OUT after {limit:.1f} s" if timed_out else ""
            if not timed_out and len(got) < len(batch_ids):
                note = f"; kosoku exited with status {proc.returncode} without a full report"
            log(f"  [{n:2d}/{len(batches)}] {key:<6} {len(batch_ids):3d} cases "
                f"{batch_times[key]:7.1f} s  "
                + ("all passed" if not bad and len(got) == len(batch_ids) else
                   f"{bad} failed, {len(batch_ids) - len(got)} without result") + note)
            if server.poll() is not None:
                server_note = f"the server exited with status {server.returncode} during {key}"
                log(f"autobahn: {server_note}; the remaining batches are not run")
    finally:
        kill_group(server, 15)
        server_log.close()
        kosoku_log.close()
        shutil.rmtree(batch_root, ignore_errors=True)
    elapsed = time.monotonic() - started

    # cases without a kosoku result go into index.json too, so the artifact shows them
    agent = next(iter(index), "unknown")
    for c, why in missing.items():
        index.setdefault(agent, {})[c] = {"behavior": why, "behaviorClose": why, "duration": None,
                                          "remoteCloseCode": None, "reportfile": None}
    for a in index:
        index[a] = dict(sorted(index[a].items(), key=lambda kv: case_sort_key(kv[0])))
    with open(out / "index.json", "w") as f:
        json.dump(index, f, sort_keys=False, indent=3)
    write_master_html(out, index)
    return summarise(out, index, ids, all_cases, batch_times, elapsed, args, server_cmd, server_note)


def summarise(out: Path, index: Dict[str, Dict[str, dict]], ids: List[str],
              all_cases: Dict[str, type], batch_times: Dict[str, float], elapsed: float,
              args: argparse.Namespace, server_cmd: str, server_note: str) -> int:
    entries: Dict[str, dict] = {}
    for agent_entries in index.values():
        entries.update(agent_entries)
    behavior: Dict[str, int] = {}
    close: Dict[str, int] = {}
    groups: Dict[str, Dict[str, Any]] = {}
    failures: List[Dict[str, Any]] = []
    for c in ids:
        e = entries[c]
        behavior[e["behavior"]] = behavior.get(e["behavior"], 0) + 1
        close[e["behaviorClose"]] = close.get(e["behaviorClose"], 0) + 1
        g = groups.setdefault(c.split(".")[0], {"cases": 0, "passed": 0, "failed": 0, "seconds": 0.0})
        g["cases"] += 1
        ok = e["behavior"] in PASSING and e["behaviorClose"] in PASSING
        g["passed" if ok else "failed"] += 1
        if not ok:
            d = case_details(out, e)
            failures.append({
                "id": c, "behavior": e["behavior"], "behaviorClose": e["behaviorClose"],
                "remoteCloseCode": e.get("remoteCloseCode"),
                "description": clean_text(d.get("description")
                                          or getattr(all_cases.get(c), "DESCRIPTION", "")),
                "result": clean_text(d.get("result", ""), 200),
                "resultClose": clean_text(d.get("resultClose", ""), 200),
                "reportfile": e.get("reportfile"),
            })
    for key, secs in batch_times.items():
        groups[key.split(".")[0]]["seconds"] += secs
    for g in groups.values():
        g["seconds"] = round(g["seconds"], 1)
    passed = len(ids) - len(failures)

    log("")
    log("autobahn: behavior:      " + ", ".join(f"{k} {v}" for k, v in sorted(behavior.items())))
    log("autobahn: behaviorClose: " + ", ".join(f"{k} {v}" for k, v in sorted(close.items())))
    log("autobahn: per group:  group  cases  passed  failed  seconds")
    for name in sorted(groups, key=int):
        s = groups[name]
        log(f"                       {name:>5}  {s['cases']:5d}  {s['passed']:6d}  {s['failed']:6d}  "
            f"{s['seconds']:7.1f}")
    if failures:
        log(f"autobahn: {len(failures)} case(s) outside OK / NON-STRICT / INFORMATIONAL:")
        for fl in failures[:200]:
            code = f" remote close {fl['remoteCloseCode']}" if fl["remoteCloseCode"] is not None else ""
            log(f"  {fl['id']:<8} behavior={fl['behavior']} close={fl['behaviorClose']}{code} -- "
                f"{fl['description']}")
            why = "; ".join(dict.fromkeys(x for x in (fl["result"], fl["resultClose"]) if x))
            if why:
                log(f"  {'':<8} {why}")
        if len(failures) > 200:
            log(f"  ... and {len(failures) - 200} more (see summary.json)")
    if server_note:
        log(f"autobahn: {server_note}")
        log_tail(out / "server.log")
    summary = {
        "server_cmd": server_cmd, "cases": args.cases, "exclude": args.exclude,
        "parallelism": args.parallelism, "elapsed_seconds": round(elapsed, 1),
        "total": len(ids), "passed": passed, "failed": len(failures),
        "behavior": behavior, "behaviorClose": close, "groups": groups,
        "failures": failures, "server_note": server_note or None,
    }
    with open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=2)
    log(f"autobahn: {elapsed:.0f} s; report {out / 'index.json'}")
    log(f"autobahn: {passed} passed, {len(failures)} failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
