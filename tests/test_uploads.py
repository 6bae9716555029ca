"""Request bodies read by the handler: stream=True routes and read()/iter_body()/save_body().

A stream=True route runs its handler at the head and the handler pulls the body as it arrives;
the same three methods also read a buffered body. Covered here: every API on streamed and
buffered routes (Content-Length and chunked, empty, in many small writes, byte-exact via
sha256); save_body's file handling (return value, umask, temporary file next to the target,
nothing left behind on any failure); request.body on a streamed route; per-route max_body_len;
100-continue; early responses (the rest of the body is never parsed as a request);
disconnects; body_timeout; backpressure; flat memory (slow); concurrency; pipelining.

Bugs found while writing these are regression tests now.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import httpx
import pytest

from mummyx import ConnectionClosed, Request, Router, Server

TIMEOUT = 10.0
HIGH_MARK = 1 << 20  # bytes a streamed body may buffer before the I/O thread stops reading
ROOT = Path(__file__).resolve().parent.parent


# ---- a raw client ------------------------------------------------------------------------------

class Response:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers} {self.body[:100]!r}>"


class Client:
    """One TCP connection: send raw bytes, read Content-Length framed responses one by one."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Abort the connection with an RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_pieces(self, data: bytes, rng: random.Random, largest: int = 4096) -> None:
        """Send data in many writes of random sizes (1..largest), pausing now and then so the
        server sees them as separate reads."""
        i = 0
        n = 0
        while i < len(data):
            size = rng.randint(1, largest)
            self.sock.sendall(data[i:i + size])
            i += size
            n += 1
            if n % 8 == 0:
                time.sleep(0.0005)

    def _recv(self, deadline: float) -> bool:
        """Read more into buf; False at EOF (or RST). Raises socket.timeout past the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 16)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def response(self, timeout: float = TIMEOUT) -> Response:
        """The next response on the connection (interim 1xx responses included)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._recv(deadline):
                raise AssertionError(f"connection closed before a response; got {self.buf!r}")
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        n = 0 if status < 200 or status in (204, 304) else int(headers.get("content-length", 0))
        while len(rest) < n:
            if not self._recv(deadline):
                raise AssertionError(f"connection closed inside a response body: {rest!r}")
            rest = self.buf.partition(b"\r\n\r\n")[2]
        self.buf = rest[n:]
        return Response(status, headers, rest[:n])

    def final(self, timeout: float = TIMEOUT) -> Tuple[List[int], Response]:
        """The next final response, and the statuses of the interim ones before it."""
        interim = []
        while True:
            r = self.response(timeout)
            if r.status >= 200:
                return interim, r
            interim.append(r.status)

    def quiet_for(self, seconds: float) -> bytes:
        """Whatever arrives within `seconds` (b"" when the server says nothing); kept in buf."""
        deadline = time.monotonic() + seconds
        before = len(self.buf)
        try:
            while self._recv(deadline):
                pass
        except socket.timeout:
            pass
        return self.buf[before:]

    def closed_within(self, seconds: float) -> bool:
        """True when the server closes the connection within `seconds` (data is kept in buf)."""
        deadline = time.monotonic() + seconds
        try:
            while self._recv(deadline):
                pass
        except socket.timeout:
            return False
        return True


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes, rng: Optional[random.Random] = None, largest: int = 8192) -> bytes:
    """The chunked encoding of body, with random chunk sizes (1..largest) when rng is given."""
    out = []
    i = 0
    while i < len(body):
        size = rng.randint(1, largest) if rng else largest
        piece = body[i:i + size]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        i += size
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def framed(method: str, path: str, body: bytes, framing: str, *headers: str,
           rng: Optional[random.Random] = None) -> bytes:
    """A whole request with body framed by Content-Length ("cl") or chunked ("chunked")."""
    if framing == "cl":
        return head(method, path, f"Content-Length: {len(body)}", *headers) + body
    return head(method, path, "Transfer-Encoding: chunked", *headers) + chunked(body, rng)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(directory: Path) -> List[str]:
    """Temporary upload files left in directory."""
    return sorted(n for n in os.listdir(directory) if n.startswith(".mummyx-upload-"))


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Seen:
    """What handlers saw, reported from worker threads."""

    def __init__(self) -> None:
        self.q: "queue.Queue[Any]" = queue.Queue()

    def put(self, item: Any) -> None:
        self.q.put(item)

    def get(self, timeout: float = TIMEOUT) -> Any:
        return self.q.get(timeout=timeout)

    def empty(self) -> bool:
        return self.q.empty()


# ---- one handler for every reading API -------------------------------------------------------

APIS = ["read", "read_n", "iter_body", "save_body"]


def consume(request: Request, api: str, tmp: Path, size: int = 1000,
            buffered: bool = False) -> Tuple[bytes, Any]:
    """Reads the body with one API. Returns (the body, what the API returned: the part count
    or save_body's return value). Checks each API's own contract on the way."""
    if api == "read":
        data = request.read()
        assert request.read() == b"" and request.read(10) == b""  # at the end, stays there
        return data, 1
    if api == "read_n":
        assert request.read(0) == b""
        parts = []
        while True:
            part = request.read(size)
            if not part:
                break
            assert len(part) <= size, (len(part), size)
            parts.append(part)
        return b"".join(parts), len(parts)
    if api == "iter_body":
        chunks = list(request.iter_body(chunk_size=size))
        assert all(isinstance(c, bytes) and 0 < len(c) <= size for c in chunks)
        if buffered:  # the whole body is there: every chunk but the last is chunk_size
            assert all(len(c) == size for c in chunks[:-1])
        return b"".join(chunks), len(chunks)
    if api == "save_body":
        target = tmp / f"upload-{threading.get_ident()}-{time.monotonic_ns()}.bin"
        written = request.save_body(str(target))
        data = target.read_bytes()
        target.unlink()
        return data, written
    raise AssertionError(api)


def api_router(tmp: Path, seen: Seen) -> Router:
    """/s/<api> streams, /b/<api> buffers; both answer {"sha256", "len", "ret"} (no limits)."""
    def handler(buffered: bool) -> Callable[[Request], Dict[str, Any]]:
        def handle(request: Request) -> Dict[str, Any]:
            api = request.path_params["api"]
            size = int(request.query.get("size") or 1000)
            try:
                data, ret = consume(request, api, tmp, size, buffered)
            except BaseException as exc:
                seen.put(exc)
                raise
            seen.put("ok")
            return {"sha256": sha(data), "len": len(data), "ret": ret}
        return handle

    router = Router()
    router.post("/s/@api", handler(False), stream=True, max_body_len=None)
    router.post("/b/@api", handler(True), max_body_len=None)
    return router


@pytest.fixture
def api_server(serve, tmp_path):
    seen = Seen()
    server = serve(api_router(tmp_path, seen))
    server.seen = seen  # type: ignore[attr-defined]
    return server


def check_answer(r: Response, body: bytes, api: str) -> None:
    assert r.status == 200, r
    got = r.json()
    assert got["len"] == len(body)
    assert got["sha256"] == sha(body)
    if api == "save_body":
        assert got["ret"] == len(body)  # save_body returns the bytes written


# ---- every API, streamed and buffered, each framing --------------------------------------------

@pytest.mark.parametrize("delivery", ["whole", "pieces", "bytewise"])
@pytest.mark.parametrize("framing", ["cl", "chunked"])
@pytest.mark.parametrize("mode", ["s", "b"])
@pytest.mark.parametrize("api", APIS)
def test_body_byte_exact(api_server, tmp_path, api, mode, framing, delivery):
    rng = random.Random(f"{api}{mode}{framing}{delivery}")
    body = rng.randbytes(257 if delivery == "bytewise" else 200_000)
    size = rng.choice([1, 7, 1000, 65536]) if delivery != "bytewise" else 3
    wire = framed("POST", f"/{mode}/{api}?size={size}", body, framing, "Connection: close",
                  rng=rng)
    with Client(api_server.port) as c:
        if delivery == "whole":
            c.send(wire)
        else:
            c.send_pieces(wire, rng, largest=1 if delivery == "bytewise" else 4096)
        check_answer(c.response(), body, api)
        assert c.closed_within(TIMEOUT)
    assert api_server.seen.get() == "ok"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("framing", ["cl", "chunked"])
@pytest.mark.parametrize("mode", ["s", "b"])
@pytest.mark.parametrize("api", APIS)
def test_body_larger_than_high_mark(api_server, api, mode, framing):
    """5 MiB: a streamed body passes the buffer's high mark, so reading pauses and resumes."""
    rng = random.Random(f"big{api}{mode}{framing}")
    body = rng.randbytes(5 << 20)
    wire = framed("POST", f"/{mode}/{api}?size=65536", body, framing, "Connection: close",
                  rng=random.Random(1))
    with Client(api_server.port) as c:
        sender = threading.Thread(target=c.send, args=(wire,))
        sender.start()
        check_answer(c.response(), body, api)
        sender.join(TIMEOUT)
        assert not sender.is_alive()
    assert api_server.seen.get() == "ok"


@pytest.mark.parametrize("framing", ["cl0", "none", "chunked0"])
@pytest.mark.parametrize("mode", ["s", "b"])
@pytest.mark.parametrize("api", APIS)
def test_empty_body(api_server, api, mode, framing):
    headers = {"cl0": ("Content-Length: 0",), "none": (),
               "chunked0": ("Transfer-Encoding: chunked",)}[framing]
    wire = head("POST", f"/{mode}/{api}", *headers, "Connection: close")
    if framing == "chunked0":
        wire += b"0\r\n\r\n"
    with Client(api_server.port) as c:
        c.send(wire)
        r = c.response()
    check_answer(r, b"", api)
    if api in ("read_n", "iter_body"):
        assert r.json()["ret"] == 0  # no empty chunk before the end
    assert api_server.seen.get() == "ok"


@pytest.mark.parametrize("framing", ["cl", "chunked"])
def test_handler_gets_bytes_before_the_body_ends(serve, framing):
    """Streaming for real: the handler has the first part while the rest is not yet sent."""
    seen = Seen()
    router = Router()

    @router.post("/s", stream=True)
    def s(request: Request) -> str:
        seen.put("started")
        for chunk in request.iter_body():
            seen.put(chunk)
        seen.put(None)
        return "done"

    server = serve(router)
    wire = framed("POST", "/s", b"first part|second part", framing)
    cut = wire.index(b"|") + 1
    with Client(server.port) as c:
        c.send(wire[:cut])
        assert seen.get() == "started"
        got = b""
        while got != b"first part|":
            got += seen.get()
        assert seen.empty()
        c.send(wire[cut:])
        while (chunk := seen.get()) is not None:
            got += chunk
        assert got == b"first part|second part"
        assert c.response().body == b"done"


def test_streamed_get_without_body(serve):
    """A stream=True GET route: the handler runs, and reading gives b"" at once."""
    router = Router()

    @router.get("/g", stream=True)
    def g(request: Request) -> str:
        return repr((request.read(), list(request.iter_body())))

    server = serve(router)
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.get(server.url + "/g").text == "(b'', [])"
        assert client.head(server.url + "/g").status_code == 200


def test_chunk_extensions_and_trailers_stream(api_server):
    body = b"hello, streamed world"
    wire = (head("POST", "/s/read", "Transfer-Encoding: chunked", "Connection: close")
            + b"5;ext=1\r\nhello\r\n10;a=\"b c\"\r\n, streamed world\r\n0\r\nX-Trailer: t\r\n\r\n")
    with Client(api_server.port) as c:
        c.send(wire)
        check_answer(c.response(), body, "read")


def test_buffered_read_and_body_agree(serve):
    """On a buffered route read() starts at the beginning whatever request.body did, and
    request.body stays whole whatever read() consumed."""
    router = Router()

    @router.post("/b")
    def b(request: Request) -> str:
        first = request.read(3)
        whole = request.body
        rest = request.read()
        return repr((first, whole, rest, request.body, request.read()))

    server = serve(router)
    with httpx.Client(timeout=TIMEOUT) as client:
        text = client.post(server.url + "/b", content=b"abcdefgh").text
    assert text == repr((b"abc", b"abcdefgh", b"defgh", b"abcdefgh", b""))


def test_read_then_save_body_saves_the_rest(serve, tmp_path):
    router = Router()

    @router.post("/s", stream=True)
    def s(request: Request) -> Dict[str, Any]:
        first = request.read(100)
        written = request.save_body(tmp_path / "rest.bin")
        return {"first": len(first), "written": written}

    server = serve(router)
    body = random.Random(5).randbytes(300_000)
    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.post(server.url + "/s", content=body)
    got = r.json()
    assert got["first"] <= 100 and got["first"] + got["written"] == len(body)
    assert (tmp_path / "rest.bin").read_bytes() == body[got["first"]:]


def test_iter_body_rejects_bad_chunk_size(serve):
    router = Router()

    @router.post("/s", stream=True)
    def s(request: Request) -> str:
        out = []
        for bad in (0, -1):
            try:
                request.iter_body(bad)
            except ValueError:
                out.append("ValueError")
        return ",".join(out) + ":" + str(len(request.read()))

    server = serve(router)
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.post(server.url + "/s", content=b"xyz").text == "ValueError,ValueError:3"


# ---- request.body on a streamed route ----------------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"payload"])
def test_body_attribute_raises_on_streamed_route(serve, body):
    router = Router()

    @router.post("/s", stream=True)
    def s(request: Request) -> str:
        try:
            request.body
        except RuntimeError as exc:
            return f"RuntimeError: {exc} | {request.read()!r}"
        return "no error"

    server = serve(router)
    with httpx.Client(timeout=TIMEOUT) as client:
        text = client.post(server.url + "/s", content=body).text
    assert text.startswith("RuntimeError: ") and "read()" in text
    assert text.endswith(repr(body))


# ---- save_body ---------------------------------------------------------------------------------

@pytest.fixture
def gate_router(tmp_path):
    """/save?name=N: save_body into tmp_path/N; /gated: waits for `gate` before reading. Every
    outcome (result or exception) goes to `seen`."""
    seen = Seen()
    gate = threading.Event()
    router = Router()

    @router.post("/save", stream=True, max_body_len=None)
    def save(request: Request) -> Dict[str, Any]:
        try:
            written = request.save_body(tmp_path / request.query["name"])
        except BaseException as exc:
            seen.put(exc)
            raise
        seen.put(written)
        return {"written": written}

    @router.post("/gated", stream=True, max_body_len=None)
    def gated(request: Request) -> Dict[str, Any]:
        seen.put("started")
        assert gate.wait(TIMEOUT)
        try:
            data = request.read()
        except BaseException as exc:
            seen.put(exc)
            time.sleep(0.2)  # let the server's 408 go first (see test_error_status_race)
            raise
        seen.put(len(data))
        return {"sha256": sha(data), "len": len(data)}

    router.seen = seen  # type: ignore[attr-defined]
    router.gate = gate  # type: ignore[attr-defined]
    return router


def test_save_body_writes_file_and_returns_size(serve, gate_router, tmp_path):
    server = serve(gate_router)
    body = random.Random(2).randbytes(3_000_000)
    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.post(server.url + "/save?name=out.bin", content=body)
    assert r.status_code == 200 and r.json() == {"written": len(body)}
    assert (tmp_path / "out.bin").read_bytes() == body
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]


@pytest.mark.parametrize("mask", [0o027, 0o002, 0o077])
def test_save_body_file_mode_follows_umask(serve, gate_router, tmp_path, mask):
    server = serve(gate_router)
    old = os.umask(mask)
    try:
        with httpx.Client(timeout=TIMEOUT) as client:
            r = client.post(server.url + "/save?name=m.bin", content=b"mode")
    finally:
        os.umask(old)
    assert r.status_code == 200
    assert (tmp_path / "m.bin").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("kind", ["str", "bytes", "pathlike", "relative"])
def test_save_body_path_types(serve, tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "t.bin"
    arg: Any = {"str": str(target), "bytes": os.fsencode(target), "pathlike": target,
                "relative": "t.bin"}[kind]
    router = Router()

    @router.put("/f", stream=True)
    def f(request: Request) -> str:
        return str(request.save_body(arg))

    server = serve(router)
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.put(server.url + "/f", content=b"12345").text == "5"
    assert target.read_bytes() == b"12345"
    assert leftovers(tmp_path) == []


def test_save_body_temp_file_in_target_dir_renamed_when_complete(serve, gate_router, tmp_path):
    """While the body is arriving it goes to a hidden temporary file in the target's directory;
    an existing target keeps its old content until the upload is complete."""
    server = serve(gate_router)
    (tmp_path / "t.bin").write_bytes(b"old content")
    body = random.Random(3).randbytes(500_000)
    with Client(server.port) as c:
        c.send(head("POST", "/save?name=t.bin", f"Content-Length: {len(body)}") + body[:200_000])
        assert wait_for(lambda: len(leftovers(tmp_path)) == 1)
        assert wait_for(lambda: (tmp_path / leftovers(tmp_path)[0]).stat().st_size == 200_000)
        assert (tmp_path / "t.bin").read_bytes() == b"old content"
        assert sorted(os.listdir(tmp_path)) == sorted(["t.bin", *leftovers(tmp_path)])
        c.send(body[200_000:])
        r = c.response()
    assert r.status == 200 and r.json() == {"written": len(body)}
    assert gate_router.seen.get() == len(body)
    assert sorted(os.listdir(tmp_path)) == ["t.bin"]
    assert (tmp_path / "t.bin").read_bytes() == body


def test_save_body_missing_directory_raises_oserror(serve, gate_router, tmp_path):
    server = serve(gate_router)
    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.post(server.url + "/save?name=no/such/dir/f.bin", content=b"x" * 1000)
    assert r.status_code == 500
    exc = gate_router.seen.get()
    assert isinstance(exc, FileNotFoundError), exc
    assert str(exc.filename) == str(tmp_path / "no/such/dir/f.bin")
    assert os.listdir(tmp_path) == []


def test_save_body_onto_a_directory_raises_and_leaves_nothing(serve, gate_router, tmp_path):
    server = serve(gate_router)
    (tmp_path / "d").mkdir()
    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.post(server.url + "/save?name=d", content=b"y" * 5000)
    assert r.status_code == 500
    exc = gate_router.seen.get()
    assert isinstance(exc, OSError) and not isinstance(exc, ConnectionClosed), exc
    assert os.listdir(tmp_path) == ["d"] and os.listdir(tmp_path / "d") == []


WRITE_FAILS_SERVER = r"""
import resource, signal, sys
from mummyx import Router, Server
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # write() fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
router = Router()
@router.put("/f", stream=True, max_body_len=None)
def f(request):
    try:
        request.save_body(sys.argv[1] + "/big.bin")
    except OSError as exc:
        request.respond(507, body=f"{type(exc).__name__} {exc.errno}")
server = Server(router, workers=2).start()
print(server.port, flush=True)
sys.stdin.read()
server.close()
"""


def test_save_body_write_error_raises_and_removes_temp(tmp_path):
    """A write that fails midway (here: the file size limit) raises OSError and leaves no
    file behind."""
    proc = subprocess.Popen([sys.executable, "-c", WRITE_FAILS_SERVER, str(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        port = int(proc.stdout.readline())
        with httpx.Client(timeout=TIMEOUT) as client:
            r = client.put(f"http://127.0.0.1:{port}/f", content=b"z" * 300_000)
        assert r.status_code == 507
        assert r.text == f"OSError {errno.EFBIG}"
        assert os.listdir(tmp_path) == []
    finally:
        proc.stdin.close()
        proc.wait(TIMEOUT)


def test_save_body_does_not_hold_the_gil(serve, gate_router, tmp_path):
    """A handler blocked in save_body (or read) while the body trickles in leaves the other
    workers free to run Python."""
    gate_router.get("/ping", lambda request: "pong")
    server = serve(gate_router, workers=3)
    gate_router.gate.set()
    with Client(server.port) as saving, Client(server.port) as reading:
        saving.send(head("POST", "/save?name=g.bin", "Content-Length: 10") + b"abc")
        reading.send(head("POST", "/gated", "Content-Length: 10") + b"abc")
        assert gate_router.seen.get() == "started"
        assert wait_for(lambda: len(leftovers(tmp_path)) == 1)
        time.sleep(0.1)  # both handlers are now blocked without the GIL
        with httpx.Client(timeout=2.0) as client:
            for _ in range(5):
                assert client.get(server.url + "/ping").text == "pong"
        saving.send(b"defghij")
        reading.send(b"defghij")
        assert saving.response().json() == {"written": 10}
        assert reading.response().json()["len"] == 10


# ---- save_body through a pipe (splice) -----------------------------------------------------------
#
# save_body of a Content-Length body on a streamed route moves the body socket -> pipe -> file
# with splice(2), once the body bytes that came with the head are taken. The server runs in this
# process, so its pipe descriptors are visible here: they show that the splice path is the one
# under test, and that it leaves no descriptor behind.

def pipe_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        except OSError:
            pass
    return n


def start_splicing(c: "Client", tmp_path: Path, seen: Seen, path: str, size: int,
                   *headers: str) -> int:
    """Sends the head of a `size`-byte save_body upload and 1000 body bytes; returns once the
    handler is saving and the server's pipe exists. Returns the pipe count before."""
    before = pipe_fds()
    c.send(head("POST", path, f"Content-Length: {size}", *headers) + b"p" * 1000)
    assert wait_for(lambda: len(leftovers(tmp_path)) == 1)
    c.send(b"p" * 1000)  # read on the socket after save_body asked for the pipe
    assert wait_for(lambda: pipe_fds() == before + 2), "save_body did not take the splice path"
    assert seen.empty()
    return before


def test_save_body_splices_a_content_length_body(serve, gate_router, tmp_path):
    server = serve(gate_router)
    body = b"p" * 2000 + random.Random(21).randbytes(3 << 20)
    with Client(server.port) as c:
        before = start_splicing(c, tmp_path, gate_router.seen, "/save?name=s.bin", len(body))
        c.send_pieces(body[2000:], random.Random(3), largest=200_000)
        assert c.response().json() == {"written": len(body)}
    assert gate_router.seen.get() == len(body)
    assert sha((tmp_path / "s.bin").read_bytes()) == sha(body)
    assert wait_for(lambda: pipe_fds() == before)  # closed with the request


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_disconnect_mid_splice_raises_and_leaves_nothing(serve, gate_router, tmp_path, how):
    server = serve(gate_router)
    with Client(server.port) as c:
        before = start_splicing(c, tmp_path, gate_router.seen, "/save?name=x.bin", 10 << 20)
        c.send(b"q" * 500_000)
        time.sleep(0.1)
        if how == "rst":
            c.reset()
    exc = gate_router.seen.get()
    assert isinstance(exc, ConnectionClosed), exc
    assert os.listdir(tmp_path) == []
    assert wait_for(lambda: pipe_fds() == before)


def test_body_timeout_mid_splice_408_and_leaves_nothing(serve, gate_router, tmp_path):
    server = serve(gate_router, body_timeout=0.5)
    with Client(server.port) as c:
        before = start_splicing(c, tmp_path, gate_router.seen, "/save?name=t.bin", 10 << 20)
        c.send(b"q" * 300_000)
        t0 = time.monotonic()
        interim, r = c.final()  # the client stalls
        assert r.status == 408 and time.monotonic() - t0 < 3.0
        assert c.closed_within(TIMEOUT)
    assert isinstance(gate_router.seen.get(), ConnectionClosed)
    assert os.listdir(tmp_path) == []
    assert wait_for(lambda: pipe_fds() == before)


def test_pipelined_requests_after_a_spliced_body(serve, gate_router, tmp_path):
    """The splice stops at the body's end: the requests sent right behind it, in the same
    writes, are parsed and answered in order (a second spliced upload among them)."""
    gate_router.get("/ping", lambda request: "pong")
    server = serve(gate_router)
    body = b"p" * 2000 + random.Random(22).randbytes(2 << 20)
    second = random.Random(23).randbytes(1 << 20)
    with Client(server.port) as c:
        start_splicing(c, tmp_path, gate_router.seen, "/save?name=a.bin", len(body))
        c.send_pieces(body[2000:] + head("GET", "/ping")
                      + framed("POST", "/save?name=b.bin", second, "cl")
                      + head("GET", "/ping", "Connection: close"), random.Random(4),
                      largest=300_000)
        got = [c.response() for _ in range(4)]
        assert c.closed_within(TIMEOUT)
    assert [r.status for r in got] == [200] * 4
    assert got[0].json() == {"written": len(body)} and got[2].json() == {"written": len(second)}
    assert got[1].body == got[3].body == b"pong"
    assert sha((tmp_path / "a.bin").read_bytes()) == sha(body)
    assert sha((tmp_path / "b.bin").read_bytes()) == sha(second)


def test_continue_then_spliced_body(serve, gate_router, tmp_path):
    """Expect: 100-continue: nothing of the body comes before the 100, so all of it goes
    through the pipe."""
    server = serve(gate_router)
    body = random.Random(24).randbytes(3 << 20)
    before = pipe_fds()
    with Client(server.port) as c:
        c.send(head("POST", "/save?name=c.bin", f"Content-Length: {len(body)}",
                    "Expect: 100-continue"))
        assert c.response().status == 100
        c.send(body[:1000])
        assert wait_for(lambda: pipe_fds() == before + 2)
        c.send(body[1000:])
        interim, r = c.final()
        assert interim == [] and r.json() == {"written": len(body)}
    assert sha((tmp_path / "c.bin").read_bytes()) == sha(body)


def test_read_after_a_failed_spliced_save_gets_the_rest(tmp_path):
    """save_body fails midway on the pipe path (the file size limit); the handler reads the
    rest of the body with read(): every byte, in order, after the ones save_body took; or
    parses it with multipart()."""
    proc = subprocess.Popen([sys.executable, "-c", READ_AFTER_FAILED_SAVE, str(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        port = int(proc.stdout.readline())
        body = random.Random(25).randbytes(3 << 20)
        with Client(port) as c:
            c.send(head("PUT", "/f", f"Content-Length: {len(body)}", "Expect: 100-continue"))
            assert c.response().status == 100
            c.send(body)
            got = c.response().json()
        assert got["errno"] == errno.EFBIG and got["rest_len"] > 0
        assert got["rest_sha256"] == sha(body[len(body) - got["rest_len"]:])
        assert os.listdir(tmp_path) == []
        # multipart() after the failed save: the parser borrows what the pipe holds
        form = (b"\r\n--bnd\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello"
                b"\r\n--bnd\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n"
                + b"w" * 700_000 + b"\r\n--bnd--\r\n")
        body = b"x" * (2 << 20) + form
        with Client(port) as c:
            c.send(head("PUT", "/m", f"Content-Length: {len(body)}", "Expect: 100-continue",
                        "Content-Type: multipart/form-data; boundary=bnd"))
            assert c.response().status == 100
            c.send(body)
            got = c.response().json()
        assert got == {"errno": errno.EFBIG, "parts": [["a", "hello"], ["b", "w" * 700_000]]}
        assert os.listdir(tmp_path) == []
    finally:
        proc.stdin.close()
        proc.wait(TIMEOUT)


READ_AFTER_FAILED_SAVE = r"""
import hashlib, resource, signal, sys
from mummyx import Router, Server
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
router = Router()
@router.put("/f", stream=True, max_body_len=None)
def f(request):
    try:
        request.save_body(sys.argv[1] + "/big.bin")
    except OSError as exc:
        rest = request.read()
        return {"errno": exc.errno, "rest_len": len(rest),
                "rest_sha256": hashlib.sha256(rest).hexdigest()}
@router.put("/m", stream=True, max_body_len=None)
def m(request):
    try:
        request.save_body(sys.argv[1] + "/big.bin")
    except OSError as exc:  # the rest, from the pipe, parsed as a form (the cut is preamble)
        return {"errno": exc.errno,
                "parts": [[p.name, p.read().decode()] for p in request.multipart()]}
server = Server(router, workers=2).start()
print(server.port, flush=True)
sys.stdin.read()
server.close()
"""


# ---- a client that goes away mid-body ----------------------------------------------------------

@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("api", ["read", "read_n", "iter_body", "save_body"])
def test_disconnect_mid_body_raises_connection_closed(serve, tmp_path, api, how):
    seen = Seen()
    router = Router()
    target = tmp_path / "partial.bin"

    @router.post("/u", stream=True)
    def u(request: Request) -> None:
        seen.put("started")
        try:
            if api == "save_body":
                request.save_body(target)
            else:
                consume(request, api, tmp_path)
        except BaseException as exc:
            seen.put(exc)
            raise
        seen.put("no error")

    server = serve(router)
    with Client(server.port) as c:
        c.send(head("POST", "/u", "Content-Length: 100000") + b"q" * 30_000)
        assert seen.get() == "started"
        if api == "save_body":
            assert wait_for(lambda: len(leftovers(tmp_path)) == 1)
        time.sleep(0.05)
        if how == "rst":
            c.reset()
    exc = seen.get()
    assert isinstance(exc, ConnectionClosed), exc
    assert os.listdir(tmp_path) == []  # a partial save_body leaves nothing


def test_disconnect_while_paused_delivers_what_was_sent_then_raises(serve):
    """The client fills the server's buffers (reading paused), then leaves. The handler still
    gets every byte that was sent, then ConnectionClosed."""
    seen = Seen()
    gate = threading.Event()
    router = Router()

    @router.post("/u", stream=True, max_body_len=None)
    def u(request: Request) -> None:
        assert gate.wait(TIMEOUT)
        got = hashlib.sha256()
        n = 0
        try:
            for chunk in request.iter_body():
                got.update(chunk)
                n += len(chunk)
        except ConnectionClosed:
            seen.put((n, got.hexdigest()))
            raise
        seen.put("no error")

    server = serve(router)
    payload = random.Random(9).randbytes(32 << 20)
    with Client(server.port) as c:
        c.send(head("POST", "/u", f"Content-Length: {len(payload) + 1}"))
        sent = push_for(c.sock, payload, 0.7)
        assert sent < len(payload)
    gate.set()
    n, digest = seen.get()
    assert n == sent and digest == sha(payload[:sent])


def test_server_close_wakes_a_blocked_reader(gate_router):
    """close() does not wait forever for a handler blocked on a body that never comes."""
    server = Server(gate_router, workers=2).start()
    gate_router.gate.set()
    try:
        with Client(server.port) as c:
            c.send(head("POST", "/gated", "Content-Length: 100") + b"abc")
            assert gate_router.seen.get() == "started"
            time.sleep(0.1)
            t0 = time.monotonic()
            server.close(timeout=0.5)
            assert time.monotonic() - t0 < 5.0
            assert isinstance(gate_router.seen.get(), ConnectionClosed)
            assert c.closed_within(TIMEOUT)
    finally:
        server.close()


# ---- max_body_len per route ---------------------------------------------------------------------

def limits_router(seen: Seen) -> Router:
    router = Router()

    def echo_len(request: Request) -> str:
        seen.put("handler")
        try:
            data = request.body if request.headers.get("x-buffered") else request.read()
        except BaseException as exc:
            seen.put(exc)
            time.sleep(0.2)  # let the server's 400/413 go first (see test_error_status_race)
            raise
        seen.put(len(data))
        return str(len(data))

    router.post("/b/default", echo_len)                          # the server's limit (1000)
    router.post("/b/ten", echo_len, max_body_len=10)
    router.post("/b/none", echo_len, max_body_len=None)
    router.post("/s/default", echo_len, stream=True)
    router.post("/s/ten", echo_len, stream=True, max_body_len=10)
    router.post("/s/hundred", echo_len, stream=True, max_body_len=100)
    router.post("/s/none", echo_len, stream=True, max_body_len=None)
    return router


@pytest.fixture
def limits(serve):
    seen = Seen()
    server = serve(limits_router(seen), max_body_len=1000)
    server.seen = seen  # type: ignore[attr-defined]
    return server


@pytest.mark.parametrize("framing", ["cl", "chunked"])
@pytest.mark.parametrize("path,limit", [("/b/default", 1000), ("/b/ten", 10),
                                        ("/s/default", 1000), ("/s/ten", 10),
                                        ("/s/hundred", 100)])
def test_route_limit_at_and_over(limits, framing, path, limit):
    buffered = ("X-Buffered: 1",) if path.startswith("/b/") else ()
    for size, ok in ((limit, True), (limit + 1, False)):
        with Client(limits.port) as c:
            c.send(framed("POST", path, b"a" * size, framing, *buffered, "Connection: close",
                          rng=random.Random(size)))
            r = c.response()
            assert c.closed_within(TIMEOUT)
        if ok:
            assert (r.status, r.body) == (200, str(size).encode())
        else:
            assert r.status == 413, r
            assert r.headers.get("connection") == "close"


@pytest.mark.parametrize("framing", ["cl", "chunked"])
@pytest.mark.parametrize("path", ["/b/none", "/s/none"])
def test_route_limit_none_is_unlimited(limits, framing, path):
    body = b"u" * 3_000_000  # 3000 x the server's limit
    buffered = ("X-Buffered: 1",) if path.startswith("/b/") else ()
    with Client(limits.port) as c:
        c.send(framed("POST", path, body, framing, *buffered, "Connection: close",
                      rng=random.Random(4)))
        r = c.response()
    assert (r.status, r.body) == (200, str(len(body)).encode())


@pytest.mark.parametrize("expect", [False, True])
def test_stream_content_length_over_limit_413_before_handler(limits, expect):
    extra = ("Expect: 100-continue",) if expect else ()
    with Client(limits.port) as c:
        c.send(head("POST", "/s/ten", "Content-Length: 11", *extra))
        interim, r = c.final()
        assert interim == [] and r.status == 413
        assert c.closed_within(TIMEOUT)
    time.sleep(0.1)
    assert limits.seen.empty()  # the handler never ran


@pytest.mark.parametrize("pattern", ["one-big-chunk", "many-small-chunks"])
def test_stream_chunked_over_limit_413_and_read_raises(limits, pattern):
    """The limit is crossed while the handler already runs: the client gets 413, and the
    handler's read raises ConnectionClosed (after the bytes within the limit)."""
    if pattern == "one-big-chunk":
        first = b"40\r\n" + b"a" * 64 + b"\r\n"      # within the limit of 100
        rest = b"40\r\n" + b"b" * 64 + b"\r\n0\r\n\r\n"
    else:
        first = b"8\r\naaaaaaaa\r\n" * 8
        rest = b"8\r\nbbbbbbbb\r\n" * 8 + b"0\r\n\r\n"
    with Client(limits.port) as c:
        c.send(head("POST", "/s/hundred", "Transfer-Encoding: chunked") + first)
        assert limits.seen.get() == "handler"
        time.sleep(0.05)
        c.send(rest + head("GET", "/s/none"))  # and a request that must never be parsed
        interim, r = c.final()
        assert r.status == 413 and r.headers.get("connection") == "close"
        assert c.closed_within(TIMEOUT)
        assert c.buf == b""
    exc = limits.seen.get()
    assert isinstance(exc, ConnectionClosed), exc
    time.sleep(0.1)
    assert limits.seen.empty()


def test_stream_malformed_chunked_400_and_read_raises(limits):
    with Client(limits.port) as c:
        c.send(head("POST", "/s/none", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n")
        assert limits.seen.get() == "handler"
        time.sleep(0.05)
        c.send(b"zz\r\nnot hex\r\n0\r\n\r\n")
        interim, r = c.final()
        assert r.status == 400 and r.headers.get("connection") == "close"
        assert c.closed_within(TIMEOUT)
    exc = limits.seen.get()
    assert isinstance(exc, ConnectionClosed), exc


RACE_SERVER = r"""
import os, sys
from mummyx import Router, Server
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # every thread on one CPU
router = Router()
@router.post("/s", stream=True, max_body_len=100)
def s(request):
    request.read()
server = Server(router, workers=2).start()
# The I/O thread (the one in epoll_wait) gets SCHED_IDLE: a worker it wakes runs at once.
io = []
for _ in range(100):
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/wchan") as f:
                if "epoll" in f.read():
                    io.append(int(tid))
        except OSError:
            pass
    if io:
        break
    import time; time.sleep(0.01)
if len(io) == 1:
    os.sched_setscheduler(io[0], os.SCHED_IDLE, os.sched_param(0))
print(server.port if len(io) == 1 else 0, flush=True)
sys.stdin.read()
server.close()
"""


@pytest.mark.parametrize("bad,status", [(b"ff\r\n", 413), (b"zz\r\n", 400)])
def test_error_status_race(bad, status):
    """The handler is blocked in read() when the body turns out too large or malformed: the
    client must get 413/400, never the 500 of the handler's ConnectionClosed. The race is made
    to show every time: a server process on one CPU whose I/O thread yields to any worker."""
    proc = subprocess.Popen([sys.executable, "-c", RACE_SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
                            text=True)
    try:
        port = int(proc.stdout.readline())
        if not port:
            pytest.skip("cannot tell the I/O thread (no /proc/*/task/*/wchan)")
        for _ in range(10):
            with Client(port) as c:
                c.send(head("POST", "/s", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n")
                time.sleep(0.01)  # the handler is now blocked in read()
                c.send(bad)
                assert c.final()[1].status == status
    finally:
        proc.stdin.close()
        proc.wait(TIMEOUT)


def test_stream_malformed_body_after_handler_answered(serve):
    """The handler answered before the body went bad: its answer stands, no 400 follows."""
    router = Router()

    @router.post("/s", stream=True)
    def s(request: Request) -> str:
        return "early"

    server = serve(router)
    with Client(server.port) as c:
        c.send(head("POST", "/s", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n")
        r = c.response()
        assert (r.status, r.body) == (200, b"early")
        try:
            c.send(b"zz\r\n\r\n")
        except OSError:
            pass
        assert c.closed_within(TIMEOUT)
        assert c.buf == b""


def test_stream_body_timeout_408_and_read_raises(serve, gate_router):
    server = serve(gate_router, body_timeout=0.5)
    gate_router.gate.set()
    with Client(server.port) as c:
        c.send(head("POST", "/gated", "Content-Length: 100") + b"abc")
        assert gate_router.seen.get() == "started"
        t0 = time.monotonic()
        interim, r = c.final()
        assert r.status == 408 and time.monotonic() - t0 < 3.0
        assert c.closed_within(TIMEOUT)
    assert isinstance(gate_router.seen.get(), ConnectionClosed)


def test_slow_handler_is_not_a_slow_client(serve, gate_router):
    """Reading paused because the handler is behind is not the client's slowness: no 408."""
    server = serve(gate_router, body_timeout=0.5)
    body = random.Random(6).randbytes(8 << 20)
    with Client(server.port) as c:
        sender = threading.Thread(
            target=c.send, args=(head("POST", "/gated", f"Content-Length: {len(body)}",
                                      "Connection: close") + body,))
        sender.start()
        assert gate_router.seen.get() == "started"
        time.sleep(1.25)  # 2.5 body timeouts, reading paused all along
        gate_router.gate.set()
        r = c.response()
        sender.join(TIMEOUT)
    assert r.status == 200 and r.json() == {"sha256": sha(body), "len": len(body)}


# ---- Expect: 100-continue ----------------------------------------------------------------------

@pytest.mark.parametrize("framing", ["cl", "chunked"])
def test_continue_only_when_the_handler_reads(serve, gate_router, framing):
    server = serve(gate_router)
    body = b"the body" * 1000
    wire = framed("POST", "/gated", body, framing, "Expect: 100-continue")
    head_part, _, body_part = wire.partition(b"\r\n\r\n")
    with Client(server.port) as c:
        c.send(head_part + b"\r\n\r\n")
        assert gate_router.seen.get() == "started"
        assert c.quiet_for(0.4) == b""  # the handler runs but has not read: no 100 yet
        gate_router.gate.set()
        r = c.response()
        assert r.status == 100
        c.send(body_part)
        interim, r = c.final()
        assert interim == [] and r.json() == {"sha256": sha(body), "len": len(body)}


def test_continue_sent_for_save_body(serve, gate_router, tmp_path):
    server = serve(gate_router)
    with Client(server.port) as c:
        c.send(head("POST", "/save?name=c.bin", "Content-Length: 4", "Expect: 100-continue"))
        assert c.response().status == 100
        c.send(b"data")
        assert c.response().json() == {"written": 4}
    assert (tmp_path / "c.bin").read_bytes() == b"data"


def refusing_router(seen: Seen) -> Router:
    router = Router()

    @router.post("/refuse", stream=True)
    def refuse(request: Request) -> None:
        seen.put("refuse")
        request.respond(401, {"WWW-Authenticate": "Bearer"}, "no")

    @router.post("/part", stream=True)
    def part(request: Request) -> None:
        seen.put(len(request.read(5)))  # reads a little, then answers
        request.respond(413, body="enough")

    @router.get("/smuggled")
    def smuggled(request: Request) -> str:
        seen.put("SMUGGLED")
        return "smuggled"

    return router


def test_continue_not_sent_when_handler_answers_without_reading(serve):
    seen = Seen()
    server = serve(refusing_router(seen))
    with Client(server.port) as c:
        c.send(head("POST", "/refuse", "Content-Length: 1000000", "Expect: 100-continue"))
        interim, r = c.final()
        assert interim == [] and (r.status, r.body) == (401, b"no")
        assert c.closed_within(TIMEOUT)
        assert c.buf == b""
    assert seen.get() == "refuse"


def test_early_answer_announces_close(serve):
    seen = Seen()
    server = serve(refusing_router(seen))
    with Client(server.port) as c:
        c.send(head("POST", "/refuse", "Content-Length: 1000000", "Expect: 100-continue"))
        interim, r = c.final()
        assert r.status == 401
        assert c.closed_within(TIMEOUT)
        assert r.headers.get("connection") == "close"


def test_continue_waits_for_earlier_pipelined_response(serve, gate_router):
    """The handler reads at once, but 100 Continue may not overtake the response before it."""
    gate_router.get("/slow", lambda request: (time.sleep(0.4), "slow")[1])
    server = serve(gate_router)
    gate_router.gate.set()
    with Client(server.port) as c:
        c.send(head("GET", "/slow") + head("POST", "/gated", "Content-Length: 3",
                                           "Expect: 100-continue"))
        r = c.response()
        assert (r.status, r.body) == (200, b"slow")
        assert c.response().status == 100
        c.send(b"abc")
        assert c.response().json()["len"] == 3


def test_continue_sent_late_leaves_a_full_body_timeout(serve):
    router = Router()

    @router.post("/late", stream=True)
    def late(request: Request) -> str:
        time.sleep(0.5)  # e.g. an authorization check, before reading
        return str(len(request.read()))

    server = serve(router, body_timeout=1.0)
    with Client(server.port) as c:
        c.send(head("POST", "/late", "Content-Length: 5", "Expect: 100-continue"))
        assert c.response().status == 100  # about 0.5 s after the head
        time.sleep(0.7)  # within body_timeout of the 100
        c.send(b"hello")
        interim, r = c.final()
        assert (r.status, r.body) == (200, b"5")


# ---- early responses: the rest of the body is never a request -----------------------------------

SMUGGLED = head("GET", "/smuggled")


@pytest.mark.parametrize("route", ["/refuse", "/part"])
@pytest.mark.parametrize("framing", ["cl", "chunked"])
def test_early_response_rest_never_parsed(serve, route, framing):
    """A request hidden in the body, and one after it: neither is ever answered."""
    seen = Seen()
    server = serve(refusing_router(seen))
    body = b"0123456789" + SMUGGLED * 3 + b"z" * 100
    wire = framed("POST", route, body, framing)
    cut = len(wire) - len(body) + 20 if framing == "cl" else wire.index(b"0123456789") + 20
    with Client(server.port) as c:
        c.send(wire[:cut])
        interim, r = c.final()
        assert r.status in (401, 413)
        try:
            c.send(wire[cut:] + SMUGGLED * 3)
        except OSError:
            pass
        assert c.closed_within(TIMEOUT)
        assert c.buf == b""  # nothing after the early response
    assert seen.get() in ("refuse", 1, 2, 3, 4, 5)
    time.sleep(0.2)
    assert seen.empty()


def test_early_response_while_client_pushes_a_big_body(serve):
    """The handler refuses while the client is blocked sending 20 MB: the client gets the
    answer, its send ends (drained or cut), and nothing it sent is parsed as a request."""
    seen = Seen()
    router = refusing_router(seen)

    @router.post("/late-refuse", stream=True, max_body_len=None)
    def late_refuse(request: Request) -> None:
        time.sleep(0.3)  # the client fills every buffer meanwhile
        seen.put("refused")
        request.respond(413, body="too much")

    server = serve(router)
    body = (SMUGGLED + b"x" * 1000) * 20_000
    errors: List[BaseException] = []

    def push(c: Client) -> None:
        try:
            c.send(head("POST", "/late-refuse", f"Content-Length: {len(body)}") + body)
            c.send(SMUGGLED)
        except OSError as exc:
            errors.append(exc)

    with Client(server.port) as c:
        sender = threading.Thread(target=push, args=(c,))
        sender.start()
        interim, r = c.final()
        assert (r.status, r.body) == (413, b"too much")
        sender.join(TIMEOUT)
        assert not sender.is_alive()
        assert c.closed_within(TIMEOUT)
        assert c.buf == b""
    assert seen.get() == "refused"
    time.sleep(0.2)
    assert seen.empty()


def test_early_large_response_does_not_deadlock_a_sending_client(serve):
    try:  # the response must not fit in the socket buffers
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            size = max(24 << 20, 2 * int(f.read().split()[2]) + (8 << 20))
    except (OSError, ValueError, IndexError):
        size = 24 << 20
    router = Router()

    @router.post("/big", stream=True, max_body_len=None)
    def big(request: Request) -> None:
        time.sleep(0.3)  # the client fills every buffer meanwhile
        request.respond(200, {"Content-Type": "application/octet-stream"}, b"r" * size)

    server = serve(router, compression=False)
    outcome: List[str] = []

    def send_all(c: Client) -> None:
        body = b"b" * (50 << 20)
        try:
            c.sock.settimeout(4.0)
            c.sock.sendall(head("POST", "/big", f"Content-Length: {len(body)}") + body)
            outcome.append("sent")
        except socket.timeout:
            outcome.append("stuck")
        except OSError as exc:
            outcome.append(f"cut: {exc!r}")  # the server gave up on the body: fine too

    with Client(server.port) as c:
        sender = threading.Thread(target=send_all, args=(c,))
        sender.start()
        sender.join(10.0)
        try:
            c.sock.shutdown(socket.SHUT_RDWR)  # wakes a sender still blocked
        except OSError:
            pass
        sender.join(TIMEOUT)
    assert outcome and outcome[0] != "stuck", outcome


# ---- backpressure and memory --------------------------------------------------------------------

def push_for(sock: socket.socket, data: bytes, seconds: float,
             marks: Optional[List[int]] = None) -> int:
    """Send as much of data as the peer takes within `seconds` (non-blocking); returns the
    byte count. marks, when given, gets the running count every 0.1 s."""
    sock.setblocking(False)
    sent = 0
    view = memoryview(data)
    start = time.monotonic()
    next_mark = start
    try:
        while sent < len(data):
            now = time.monotonic()
            if now - start >= seconds:
                break
            if marks is not None and now >= next_mark:
                marks.append(sent)
                next_mark += 0.1
            try:
                sent += sock.send(view[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.002)
    finally:
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)
    if marks is not None:
        marks.append(sent)
    return sent


def test_backpressure_slow_handler_blocks_fast_client(serve, gate_router):
    """While the handler sleeps, the server takes in a bounded amount (its 1 MiB buffer plus
    socket buffers), then the client's sends block; afterwards all 50 MB arrive intact. The
    socket buffers are the client's send buffer (tcp_wmem, 4 MiB) and the server's receive
    buffer, which TCP autotuning sizes after how fast the server read before the pause: about
    6 MiB here with the server's 1 MiB reads (the same with 256 KiB ones), under 2 MiB with
    64 KiB ones."""
    server = serve(gate_router)
    body = random.Random(7).randbytes(50 << 20)
    with Client(server.port) as c:
        c.send(head("POST", "/gated", f"Content-Length: {len(body)}", "Connection: close"))
        assert gate_router.seen.get() == "started"
        marks: List[int] = []
        sent = push_for(c.sock, body, 1.5, marks)
        assert sent < 16 << 20, f"{sent} bytes taken in while the handler slept"
        # blocked, not merely slow: nothing more went out in the last half second
        assert marks[-1] - marks[-6] < 256 << 10, marks
        gate_router.gate.set()
        c.send(body[sent:])
        r = c.response(timeout=30)
    assert r.status == 200 and r.json() == {"sha256": sha(body), "len": len(body)}
    assert gate_router.seen.get() == len(body)


MEMORY_SERVER = r"""
import sys
from mummyx import Router, Server
router = Router()
@router.put("/upload", stream=True, max_body_len=None)
def upload(request):
    request.respond(201, body=str(request.save_body(sys.argv[1] + "/big.bin")))
server = Server(router, workers=4).start()
print(server.port, flush=True)
sys.stdin.read()
server.close()
"""


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
@pytest.mark.parametrize("framing", ["cl", "chunked"])
def test_one_gigabyte_upload_memory_stays_flat(tmp_path, framing):
    proc = subprocess.Popen([sys.executable, "-c", MEMORY_SERVER, str(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        port = int(proc.stdout.readline())
        before = peak_rss_kib(proc.pid)
        mib = 1024
        block = random.Random(8).randbytes(1 << 20)

        def piece(i: int) -> bytes:
            return i.to_bytes(8, "big") + block[8:]  # every MiB different

        with Client(port, timeout=60) as c:
            if framing == "cl":
                c.send(head("PUT", "/upload", f"Content-Length: {mib << 20}"))
                for i in range(mib):
                    c.send(piece(i))
            else:
                c.send(head("PUT", "/upload", "Transfer-Encoding: chunked"))
                for i in range(mib):
                    c.send(b"100000\r\n" + piece(i) + b"\r\n")
                c.send(b"0\r\n\r\n")
            r = c.response(timeout=60)
        assert (r.status, r.body) == (201, str(mib << 20).encode())
        peak = peak_rss_kib(proc.pid)
        assert peak < 100 * 1024, f"peak RSS {peak} KiB (before the upload: {before} KiB)"
        with open(tmp_path / "big.bin", "rb") as f:
            for i in range(mib):
                assert f.read(1 << 20) == piece(i), f"MiB {i} differs"
            assert f.read(1) == b""
    finally:
        proc.stdin.close()
        proc.wait(TIMEOUT)


# ---- concurrency and keep-alive -----------------------------------------------------------------

def test_concurrent_uploads(serve, tmp_path):
    """Six uploads at once on four workers (two wait for a worker, reading paused), mixed
    APIs and framings, each in random pieces."""
    seen = Seen()
    server = serve(api_router(tmp_path, seen), workers=4)
    jobs = [(api, framing) for api in ("read", "save_body", "iter_body")
            for framing in ("cl", "chunked")]
    results: Dict[int, Any] = {}

    def upload(i: int, api: str, framing: str) -> None:
        rng = random.Random(i)
        body = rng.randbytes(3_000_000 + i)
        try:
            with Client(server.port, timeout=30) as c:
                c.send_pieces(framed("POST", f"/s/{api}?size=50000", body, framing,
                                     "Connection: close", rng=rng), rng, largest=200_000)
                r = c.response(timeout=30)
            results[i] = (r.status, r.json(), len(body), sha(body))
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=upload, args=(i, api, framing))
               for i, (api, framing) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(not t.is_alive() for t in threads)
    for i in range(len(jobs)):
        assert not isinstance(results[i], BaseException), (jobs[i], results[i])
        status, got, n, digest = results[i]
        assert status == 200 and got["len"] == n and got["sha256"] == digest, (jobs[i], got)
    assert leftovers(tmp_path) == []


def test_many_paused_uploads_all_resume(serve):
    """Many streamed bodies paused at the high mark at once, their readers asking to resume
    in batches the I/O thread handles together: every one resumes (a skipped wake-up would
    leave its upload paused until body_timeout)."""
    n, size = 16, 4_000_000
    router = Router()

    @router.post("/r", stream=True, max_body_len=None)
    def read_small(request: Request) -> None:
        got = 0
        while True:
            b = request.read(8192)
            if not b:
                break
            got += len(b)
        request.respond(200, {}, str(got))

    server = serve(router, workers=n, body_timeout=60)
    body = b"x" * size
    results: Dict[int, Any] = {}

    def upload(i: int) -> None:
        try:
            with Client(server.port, timeout=3 * TIMEOUT) as c:
                c.send(framed("POST", "/r", body, "cl", "Connection: close"))
                results[i] = c.response(timeout=3 * TIMEOUT)
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(6 * TIMEOUT)
    for i in range(n):
        r = results.get(i)
        assert isinstance(r, Response), (i, r)
        assert r.status == 200 and r.body == str(size).encode()


def test_pipelined_requests_after_streamed_ones(serve, tmp_path):
    """Streamed uploads (both framings) pipelined with other requests on one keep-alive
    connection: all answered, in order."""
    seen = Seen()
    router = api_router(tmp_path, seen)
    router.get("/ping", lambda request: "pong")

    @router.post("/slow-stream", stream=True)
    def slow_stream(request: Request) -> str:
        time.sleep(0.2)  # later requests are parsed and run meanwhile
        return sha(request.read())

    server = serve(router)
    bodies = [random.Random(i).randbytes(n) for i, n in enumerate((5000, 70000, 0, 300))]
    wire = (framed("POST", "/s/read", bodies[0], "cl")
            + head("GET", "/ping")
            + framed("POST", "/s/save_body", bodies[1], "chunked", rng=random.Random(1))
            + framed("POST", "/slow-stream", bodies[3], "chunked")
            + framed("POST", "/b/iter_body", bodies[2], "cl")
            + framed("POST", "/s/iter_body?size=7", bodies[3], "cl")
            + head("GET", "/ping", "Connection: close"))
    with Client(server.port) as c:
        c.send_pieces(wire, random.Random(2), largest=3000)
        got = [c.response() for _ in range(7)]
        assert c.closed_within(TIMEOUT)
    assert [r.status for r in got] == [200] * 7
    assert got[1].body == got[6].body == b"pong"
    assert got[3].body == sha(bodies[3]).encode()
    for r, body in ((got[0], bodies[0]), (got[2], bodies[1]), (got[4], bodies[2]),
                    (got[5], bodies[3])):
        assert r.json()["sha256"] == sha(body) and r.json()["len"] == len(body)


def test_keep_alive_after_streamed_bodies(serve, tmp_path):
    """One connection, a dozen streamed uploads of varied sizes one after another."""
    seen = Seen()
    server = serve(api_router(tmp_path, seen))
    rng = random.Random(11)
    with Client(server.port) as c:
        for i in range(12):
            body = rng.randbytes(rng.choice([0, 1, 100, 65536, 300_000]))
            api = APIS[i % 4]
            c.send(framed("POST", f"/s/{api}", body, "cl" if i % 3 else "chunked", rng=rng))
            check_answer(c.response(), body, api)


@pytest.mark.parametrize("framing", ["cl", "chunked"])
def test_keep_alive_after_body_ending_above_high_mark(serve, gate_router, framing):
    gate_router.get("/ping", lambda request: "pong")
    server = serve(gate_router)
    body = b"h" * (HIGH_MARK + 1)
    wire = framed("POST", "/gated", body, framing)
    with Client(server.port) as c:
        c.send(wire[:-100])  # buffered, just under the high mark: reading goes on
        assert gate_router.seen.get() == "started"
        time.sleep(0.3)
        c.send(wire[-100:])  # one read: the body's end, and the buffer over the high mark
        time.sleep(0.2)
        gate_router.gate.set()
        assert c.response().json()["len"] == len(body)
        c.send(head("GET", "/ping"))
        assert c.response(timeout=3.0).body == b"pong"


# ---- the example --------------------------------------------------------------------------------

def load_example(name: str) -> Any:
    import importlib.util
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}_{time.monotonic_ns()}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_upload(serve, tmp_path):
    ex = load_example("upload")
    ex.UPLOAD_DIR = str(tmp_path / "uploads")
    server = serve(ex.router)
    body = random.Random(12).randbytes(2_500_000)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        assert client.get("/files").json() == {}
        r = client.put("/files/data.bin", content=body)
        assert r.status_code == 201 and r.json() == {"name": "data.bin", "bytes": len(body)}
        assert client.put("/files/.hidden", content=b"x").status_code == 400
        assert client.get("/files").json() == {"data.bin": len(body)}
    assert (tmp_path / "uploads" / "data.bin").read_bytes() == body
    ex.UPLOAD_TOKEN = "s3cret"
    with Client(server.port) as c:  # refused before the body is sent: no 100 Continue
        c.send(head("PUT", "/files/other.bin", "Content-Length: 1000000",
                    "Expect: 100-continue"))
        interim, r = c.final()
        assert interim == [] and r.status == 401
    with Client(server.port) as c:
        c.send(head("PUT", "/files/other.bin", "Content-Length: 5", "Expect: 100-continue",
                    "Authorization: Bearer s3cret"))
        assert c.response().status == 100
        c.send(b"token")
        assert c.response().status == 201
    assert (tmp_path / "uploads" / "other.bin").read_bytes() == b"token"
