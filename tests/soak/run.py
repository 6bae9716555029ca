#!/usr/bin/env python3
"""Soak test: drives a mummyx server (tests/soak/app.py, a subprocess) with a mix of traffic, then
checks that its memory and open descriptors return to where they were.

    python tests/soak/run.py                  # the CI size (~30 s)
    python tests/soak/run.py --scale 10       # the long variant (~5 min)

Traffic per round (scale multiplies the rounds): wrk keep-alive requests (hundreds of
thousands at --scale 1 over all rounds), handlers that raise (500s), WebSocket sessions that
open, echo and close (some vanish without a close frame), SSE streams read to their end or
dropped mid-stream, streamed uploads, and clients that vanish mid-head or mid-body. After a warm-up
round the server's RSS and descriptor count are taken; after the soak they must be back within
the bounds (RSS + 8 MiB, descriptors exactly equal) once idle connections have timed out.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return {"rss_kb": int(out["VmRSS"].split()[0]), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(out["Threads"])}


def http(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def ws_session(port: int, messages: int, clean: bool) -> None:
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise AssertionError("no handshake response")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:80]
        rest = head.split(b"\r\n\r\n", 1)[1]
        for i in range(messages):
            payload = os.urandom(random.randint(1, 2000))
            mask = os.urandom(4)
            masked = bytes(b ^ mask[j % 4] for j, b in enumerate(payload))
            n = len(payload)
            hdr = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0xFE]) + struct.pack("!H", n)
            s.sendall(hdr + mask + masked)
            need = len(payload) + (2 if n < 126 else 4)
            while len(rest) < need:
                chunk = s.recv(65536)
                if not chunk:
                    raise AssertionError("connection closed mid-echo")
                rest += chunk
            rest = rest[need:]
        if clean:
            mask = os.urandom(4)
            body = struct.pack("!H", 1000)
            s.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[j % 4] for j, b in enumerate(body)))
            s.settimeout(5)
            while s.recv(4096):
                pass
        # else: vanish without a close frame


def round_of_traffic(port: int, wrk_seconds: float) -> dict:
    stats = {"wrk_requests": 0, "errors_500": 0, "ws": 0, "sse": 0, "uploads": 0, "vanished": 0}
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "-t1", "-c32", f"-d{max(1, int(wrk_seconds))}s", f"http://{HOST}:{port}/"],
                             capture_output=True, text=True, timeout=wrk_seconds + 30).stdout
        for line in out.splitlines():
            if "requests in" in line:
                stats["wrk_requests"] += int(line.split()[0])
    for _ in range(200):
        r = http(port, b"GET /raise HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert r.startswith(b"HTTP/1.1 500"), r[:60]
        stats["errors_500"] += 1
    for i in range(100):
        ws_session(port, messages=5, clean=i % 4 != 0)
        stats["ws"] += 1
    for i in range(100):
        if i % 3 == 0:  # drop mid-stream
            with socket.create_connection((HOST, port), timeout=5) as s:
                s.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
                s.recv(100)
        else:
            r = http(port, b"GET /events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert b"event 2" in r, r[-200:]
        stats["sse"] += 1
    for i in range(50):
        body = os.urandom(random.randint(1, 300_000))
        r = http(port, b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert r.endswith(str(len(body)).encode()), r[-100:]
        stats["uploads"] += 1
    for i in range(200):  # clients that vanish mid-head, mid-body, or mid-upload
        with socket.create_connection((HOST, port), timeout=5) as s:
            if i % 3 == 0:
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Partial: ")
            elif i % 3 == 1:
                s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"
                          + b"x" * 5000)
            else:
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # and leave before reading
        stats["vanished"] += 1
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=int, default=1, help="rounds = 4 x scale")
    ap.add_argument("--wrk-seconds", type=int, default=3)
    ap.add_argument("--rss-slack-mb", type=float, default=8.0)
    args = ap.parse_args()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, str(HERE / "app.py"), str(port)], env=env)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("soak: the server did not start")
                time.sleep(0.1)
        totals: dict = {}

        def settle() -> dict:
            time.sleep(6.5)  # idle_timeout (5 s) closes what the clients left behind
            return proc_status(server.pid)

        round_of_traffic(port, args.wrk_seconds)  # warm-up: caches, thread stacks, allocator
        before = settle()
        for _ in range(4 * args.scale):
            for k, v in round_of_traffic(port, args.wrk_seconds).items():
                totals[k] = totals.get(k, 0) + v
        after = settle()
        report = {"before": before, "after": after, "traffic": totals}
        print(json.dumps(report, indent=2))
        ok = (after["fds"] == before["fds"]
              and after["rss_kb"] <= before["rss_kb"] + args.rss_slack_mb * 1024
              and after["threads"] == before["threads"])
        if server.poll() is not None:
            print("soak: the server died", file=sys.stderr)
            return 1
        print("soak:", "OK" if ok else "FAILED", file=sys.stderr)
        return 0 if ok else 1
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
