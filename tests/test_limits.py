"""Timeouts and limits against a live server: write_timeout, max_queue_time, shutdown_timeout."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from mummyx import Router, Server

HOST = "127.0.0.1"


def _recv_until_closed(sock: socket.socket, limit: float) -> tuple:
    """Reads until EOF/reset or limit seconds; returns (bytes received, closed)."""
    sock.settimeout(0.2)
    got = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return got, True
        if not data:
            return got, True
        got += len(data)
    return got, False


def test_write_timeout_drops_a_client_that_stops_reading(serve):
    big = b"x" * (32 << 20)
    router = Router()
    router.get("/big", lambda request: request.respond(200, body=big))
    server = serve(router, write_timeout=0.5)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((HOST, server.port))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(2.0)  # never read: the server's output is stuck for longer than write_timeout
        got, closed = _recv_until_closed(s, 5.0)
    assert closed and got < len(big), "the server should have given up on this client"


def test_write_timeout_spares_a_slow_but_steady_reader(serve):
    body = b"y" * (4 << 20)
    router = Router()
    router.get("/big", lambda request: request.respond(200, body=body))
    server = serve(router, write_timeout=0.5)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.connect((HOST, server.port))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        s.settimeout(5)
        got = 0
        while True:
            data = s.recv(256 * 1024)
            if not data:
                break
            got += len(data)
            time.sleep(0.01)  # slow, but the output keeps moving
    assert got > len(body)  # head + the whole body


def test_write_timeout_closes_a_stuck_sse_stream(serve):
    streams = []
    router = Router()

    @router.get("/events")
    def events(request):
        stream = request.respond_sse()
        streams.append(stream)

    server = serve(router, write_timeout=0.4, max_send_queue=64 << 20)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((HOST, server.port))
        s.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        deadline = time.monotonic() + 5
        while not streams and time.monotonic() < deadline:
            time.sleep(0.01)
        stream = streams[0]
        for _ in range(200):  # 6 MB that the client never reads
            stream.send("z" * 30000)
        assert stream.wait_closed(timeout=5.0)


def test_max_queue_time_sheds_while_every_worker_is_stuck(serve):
    release = threading.Event()
    router = Router()

    @router.get("/slow")
    def slow(request):
        release.wait(10)
        request.respond(200, body="slow")

    router.get("/fast", lambda request: request.respond(200, body="fast"))
    server = serve(router, workers=1, max_queue_time=0.2)
    blocker = socket.create_connection((HOST, server.port), timeout=10)
    try:
        blocker.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.2)  # the only worker is now stuck
        t0 = time.monotonic()
        with socket.create_connection((HOST, server.port), timeout=5) as s:
            s.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        elapsed = time.monotonic() - t0
        assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"\r\nRetry-After: 1\r\n" in data
        assert elapsed < 2.0  # answered by the I/O thread, not after the stuck handler
    finally:
        release.set()
        blocker.close()


def test_max_queue_time_off_by_default_waits(serve):
    router = Router()
    router.get("/", lambda request: (time.sleep(0.3), request.respond(200, body="ok")))
    server = serve(router, workers=1)
    results = []

    def get():
        with socket.create_connection((HOST, server.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            results.append(s.recv(100)[:12])

    threads = [threading.Thread(target=get) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [b"HTTP/1.1 200"] * 3


def test_shutdown_timeout_bounds_the_drain():
    started = threading.Event()
    router = Router()

    @router.get("/")
    def stuck(request):
        started.set()
        time.sleep(1.0)
        request.respond(200, body="late")

    server = Server(router, workers=2, shutdown_timeout=0.2).start()
    s = socket.create_connection((HOST, server.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert started.wait(5)
    t0 = time.monotonic()
    server.close()  # uses shutdown_timeout
    # the client's connection is closed when the drain runs out, without the late response
    got, closed = _recv_until_closed(s, 1.0)
    s.close()
    assert closed and got == 0
    assert time.monotonic() - t0 < 3.0


def test_write_timeout_drops_a_trickling_reader(serve):
    """Reading a few bytes at a time keeps the output moving, but below 1 KiB per write_timeout:
    that is a slow-read attack, and the connection is closed."""
    big = b"x" * (32 << 20)
    router = Router()
    router.get("/big", lambda request: request.respond(200, body=big))
    server = serve(router, write_timeout=0.4)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((HOST, server.port))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        s.settimeout(0.2)
        closed = False
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not closed:
            try:
                if not s.recv(16):
                    closed = True
            except socket.timeout:
                pass
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            time.sleep(0.1)
        if not closed:  # the kernel may still hold what was sent before the close: drain it
            got, closed = _recv_until_closed(s, 5.0)
    assert closed


_EMFILE_SERVER = r"""
import resource, sys
sys.path.insert(0, sys.argv[2])
from mummyx import Router, Server
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
router = Router()
router.get("/", lambda request: request.respond(200, body="ok"))
server = Server(router, workers=2, max_connections=10000).start(int(sys.argv[1]))
print("ready", flush=True)
sys.stdin.read()
server.close()
"""


def test_out_of_descriptors_never_spins_and_recovers(tmp_path):
    """EMFILE on accept: the server pauses accepting instead of spinning on the listening socket,
    and serves again once descriptors are free."""
    import os
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", _EMFILE_SERVER, str(port), repo],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    held: list = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(80):  # far more than the 48 descriptors the server may have
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            held.append(s)
        time.sleep(0.3)

        def cpu() -> float:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before = cpu()
        time.sleep(1.0)
        spent = cpu() - before
        assert spent < 0.5, f"the server burned {spent:.2f} s of CPU in 1 s while out of fds"
        for s in held:
            s.close()
        held.clear()
        deadline = time.monotonic() + 10
        while True:  # accepting resumes (the backlog's dead connections are answered or dropped)
            try:
                with socket.create_connection((HOST, port), timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server never served again"
            time.sleep(0.2)
    finally:
        for s in held:
            s.close()
        proc.stdin.close()
        proc.wait(15)
