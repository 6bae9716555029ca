"""request.multipart() and request.form(): parts as they arrive (stream=True routes) or from the
buffered body, Part.read/iter_chunks/save, the limits and malformed bodies answered with their
4xx (never a 500 or an ERROR log), a client that leaves mid-body, and form() for urlencoded and
multipart bodies.
"""
from __future__ import annotations

import hashlib
import logging
import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import httpx
import pytest

from mummyx import BadRequest, ConnectionClosed, FormData, Part, Request, Router, UploadedFile

TIMEOUT = 10.0
B = "xYzBoundary42"
CT = f"multipart/form-data; boundary={B}"


def part(name: str, data: bytes, *, filename: Optional[str] = None, extra: str = "",
         ctype: Optional[str] = None) -> bytes:
    cd = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{B}\r\nContent-Disposition: {cd}{extra}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def form_body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{B}--\r\n".encode()


def describe(request: Request, **kw: Any) -> List[Dict[str, Any]]:
    """Every part of the request with its attributes and data (as latin-1 text)."""
    out = []
    for p in request.multipart(**kw):
        out.append({"name": p.name, "filename": p.filename, "content_type": p.content_type,
                    "data": p.read().decode("latin-1")})
    return out


@pytest.fixture(params=["buffered", "stream"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def echo(serve: Any, mode: str) -> httpx.Client:
    """A server whose POST /parts describes the multipart body (on a buffered or streamed route)."""
    router = Router()
    router.post("/parts", lambda request: describe(request), stream=(mode == "stream"))
    server = serve(router)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        yield c


class Records(logging.Handler):
    """Collects the mummyx logger's records (any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []
        self.mu = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.mu:
            self.records.append(record)

    def wait_for(self, predicate: Any, timeout: float = TIMEOUT) -> Optional[logging.LogRecord]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.mu:
                for r in self.records:
                    if predicate(r):
                        return r
            time.sleep(0.01)
        return None

    def errors(self) -> List[logging.LogRecord]:
        with self.mu:
            return [r for r in self.records if r.levelno >= logging.WARNING]


@pytest.fixture
def log() -> Iterator[Records]:
    logger = logging.getLogger("mummyx")
    handler = Records()
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


# ---- parts ----

def test_fields_and_files_from_httpx(echo: httpx.Client) -> None:
    r = echo.post("/parts", data={"a": "1", "b": ["x", "y"]},
                  files={"up": ("notes.txt", b"hello\r\n--world", "text/plain"),
                         "raw": ("blob.bin", bytes(range(256)))})
    assert r.status_code == 200, r.text
    got = {(p["name"], p["data"]) for p in r.json()}
    assert got >= {("a", "1"), ("b", "x"), ("b", "y"), ("up", "hello\r\n--world"),
                   ("raw", bytes(range(256)).decode("latin-1"))}
    up = next(p for p in r.json() if p["name"] == "up")
    assert up["filename"] == "notes.txt" and up["content_type"] == "text/plain"
    a = next(p for p in r.json() if p["name"] == "a")
    assert a["filename"] is None and a["content_type"] is None


def test_empty_parts_and_empty_form(echo: httpx.Client) -> None:
    body = form_body(part("empty", b""),
                     part("f", b"", filename="", ctype="application/octet-stream"),
                     part("last", b"x"))
    r = echo.post("/parts", content=body, headers={"Content-Type": CT})
    assert r.json() == [
        {"name": "empty", "filename": None, "content_type": None, "data": ""},
        {"name": "f", "filename": "", "content_type": "application/octet-stream", "data": ""},
        {"name": "last", "filename": None, "content_type": None, "data": "x"}]
    # A form without parts (what a browser sends for a form with no fields)
    r = echo.post("/parts", content=f"--{B}--\r\n".encode(), headers={"Content-Type": CT})
    assert r.status_code == 200 and r.json() == []


def test_body_in_tiny_pieces_with_preamble_and_epilogue(serve: Any, mode: str) -> None:
    router = Router()
    router.post("/parts", lambda request: describe(request), stream=(mode == "stream"))
    server = serve(router)
    # near-misses of the delimiter: each a proper prefix of CRLF "--" boundary
    data = (b"\r\n--" + B.encode()[:-1] + b"!\r\n-\r\r\n--" + B.encode()[:5] + b"\r") * 5
    body = b"preamble\r\n" + form_body(part("d", data), part("e", b"z")) + b"epilogue"

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i:i + 7]

    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        r = c.post("/parts", content=pieces(), headers={"Content-Type": CT})
        assert [p["data"].encode("latin-1") for p in r.json()] == [data, b"z"]
        assert c.get("/nothing").status_code == 404  # the connection is still usable


def test_partial_reads_skips_and_stale_parts(serve: Any, mode: str) -> None:
    seen: "queue.Queue[Any]" = queue.Queue()
    router = Router()

    @router.post("/skip", stream=(mode == "stream"))
    def skip(request: Request) -> Dict[str, Any]:
        reader = request.multipart()
        first = next(reader)
        head = first.read(3)
        second = next(reader)  # skips the rest of the first part
        try:
            first.read()
        except RuntimeError as exc:
            seen.put(str(exc))
        chunks = list(second.iter_chunks(4))
        after = second.read()  # the part is over, but still the current one
        third = next(reader)  # never read: skipped by the end of iteration
        rest = list(reader)
        return {"head": head.decode(), "chunks": [c.decode() for c in chunks],
                "third": third.name, "rest": len(rest), "after": after.decode()}

    server = serve(router)
    body = form_body(part("a", b"0123456789" * 10000), part("b", b"abcdefghij"),
                     part("c", b"C" * 100000), part("d", b"D"))
    r = httpx.post(server.url + "/skip", content=body, headers={"Content-Type": CT},
                   timeout=TIMEOUT)
    assert r.json() == {"head": "012", "chunks": ["abcd", "efgh", "ij"], "third": "c",
                        "rest": 1, "after": ""}
    assert "moved on" in seen.get(timeout=TIMEOUT)


def test_read_sizes(serve: Any, mode: str) -> None:
    router = Router()

    @router.post("/sizes", stream=(mode == "stream"))
    def sizes(request: Request) -> List[int]:
        p = next(request.multipart())
        return [len(p.read(0)), len(p.read(1)), len(p.read(100000)), len(p.read(-1)),
                len(p.read(5))]

    server = serve(router)
    body = form_body(part("a", os.urandom(250000)))
    r = httpx.post(server.url + "/sizes", content=body, headers={"Content-Type": CT},
                   timeout=TIMEOUT)
    assert r.json() == [0, 1, 100000, 149999, 0]


def test_filename_star_and_unicode(echo: httpx.Client) -> None:
    raw = (f"--{B}\r\nContent-Disposition: form-data; name=\"caf\u00e9\"; "
           f"filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt\r\n\r\n"
           f"x\r\n--{B}\r\nContent-Disposition: form-data; name=\"q\\\"uote\"; "
           f"filename=\"../../\u65e5\u672c.txt\"\r\n\r\ny\r\n--{B}--\r\n").encode()
    r = echo.post("/parts", content=raw, headers={"Content-Type": CT})
    names = [(p["name"], p["filename"]) for p in r.json()]
    assert names == [("caf\u00e9", "\u20ac rates.txt"), ('q"uote', "../../\u65e5\u672c.txt")]
    # httpx encodes a non-ASCII file name its own way; it comes back as sent
    r = echo.post("/parts", files={"f": ("\u00fcber.txt", b"u")})
    assert r.json()[0]["filename"] == "\u00fcber.txt"


def test_part_headers(serve: Any) -> None:
    router = Router()

    @router.post("/h")
    def h(request: Request) -> Dict[str, Any]:
        p = next(iter(request.multipart()))
        assert isinstance(p, Part) and "filename='a.txt'" in repr(p)
        return {"items": p.headers.items(), "x": p.headers["x-extra"],
                "all": p.headers.getall("X-Multi"), "ct": p.headers.get("content-type")}

    server = serve(router)
    raw = (f"--{B}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n"
           f"X-Extra:   spaced value  \r\nX-Multi: 1\r\nx-multi: 2\r\n"
           f"Content-Type: text/csv; charset=utf-8\r\n\r\nbody\r\n--{B}--").encode()
    r = httpx.post(server.url + "/h", content=raw, headers={"Content-Type": CT}, timeout=TIMEOUT)
    assert r.json() == {
        "items": [["Content-Disposition", 'form-data; name="f"; filename="a.txt"'],
                  ["X-Extra", "spaced value"], ["X-Multi", "1"], ["x-multi", "2"],
                  ["Content-Type", "text/csv; charset=utf-8"]],
        "x": "spaced value", "all": ["1", "2"], "ct": "text/csv; charset=utf-8"}


def test_types_cannot_be_created() -> None:
    from mummyx import MultipartReader
    for tp in (Part, MultipartReader):
        with pytest.raises(TypeError):
            tp()


# ---- saving ----

def test_save_parts_on_a_buffered_route(serve: Any, tmp_path: Path) -> None:
    router = Router()

    @router.post("/save")
    def save(request: Request) -> Dict[str, int]:
        out = {}
        for p in request.multipart():
            if p.filename is not None:
                out[p.name] = p.save(tmp_path / f"{p.name}.bin")
        return out

    server = serve(router)
    a, b = os.urandom(70000), os.urandom(3)
    r = httpx.post(server.url + "/save", files={"a": ("a", a), "b": ("b", b), "e": ("e", b"")},
                   timeout=TIMEOUT)
    assert r.json() == {"a": len(a), "b": 3, "e": 0}
    assert (tmp_path / "a.bin").read_bytes() == a and (tmp_path / "b.bin").read_bytes() == b
    assert (tmp_path / "e.bin").read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin", "e.bin"]


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_big_file_saved_with_flat_memory(serve: Any, tmp_path: Path) -> None:
    size, chunk = 100 * 1024 * 1024, os.urandom(1024 * 1024)
    expected = hashlib.sha256()
    for _ in range(size // len(chunk)):
        expected.update(chunk)
    router = Router()

    @router.post("/upload", stream=True, max_body_len=None)
    def upload(request: Request) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for p in request.multipart():
            if p.filename is None:
                out[p.name] = p.read().decode()
            else:
                target = tmp_path / "big.bin"
                out["size"] = p.save(target)
        return out

    server = serve(router)

    def body() -> Iterator[bytes]:
        yield part("title", b"big one")
        yield (f'--{B}\r\nContent-Disposition: form-data; name="f"; filename="big.bin"'
               f"\r\n\r\n").encode()
        for _ in range(size // len(chunk)):
            yield chunk
        yield f"\r\n--{B}--\r\n".encode()

    base, peak, stop = _rss(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        r = httpx.post(server.url + "/upload", content=body(), headers={"Content-Type": CT},
                       timeout=60.0)
    finally:
        stop.set()
        sampler.join()
    assert r.json() == {"title": "big one", "size": size}
    got = hashlib.sha256()
    with open(tmp_path / "big.bin", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            got.update(block)
    assert got.hexdigest() == expected.hexdigest()
    if "ASAN_OPTIONS" not in os.environ:  # ASan's quarantine keeps freed memory resident
        assert peak[0] - base < 40 * 1024 * 1024, f"memory grew by {(peak[0] - base) >> 20} MiB"
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]


def test_truncated_body_raises_connection_closed_and_leaves_no_file(serve: Any,
                                                                    tmp_path: Path) -> None:
    seen: "queue.Queue[Any]" = queue.Queue()
    router = Router()

    @router.post("/cut", stream=True)
    def cut(request: Request) -> None:
        try:
            for p in request.multipart():
                p.save(tmp_path / "partial.bin")
        except BaseException as exc:
            seen.put(exc)
            raise
        seen.put(None)

    server = serve(router)
    body = form_body(part("f", os.urandom(500000), filename="x"))
    head = (f"POST /cut HTTP/1.1\r\nHost: x\r\nContent-Type: {CT}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        s.sendall(head + body[:200000])
        time.sleep(0.2)
    exc = seen.get(timeout=TIMEOUT)
    assert isinstance(exc, ConnectionClosed), exc
    assert list(tmp_path.iterdir()) == []


def test_waiting_save_releases_the_gil_and_guards_the_reader(serve: Any, tmp_path: Path) -> None:
    shared: Dict[str, Any] = {}
    saving = threading.Event()
    router = Router()

    @router.post("/slow", stream=True)
    def slow(request: Request) -> Dict[str, int]:
        p = next(request.multipart())
        shared["part"] = p
        saving.set()
        return {"saved": p.save(tmp_path / "slow.bin")}

    @router.get("/poke")
    def poke(request: Request) -> str:
        try:
            shared["part"].read(1)
        except RuntimeError as exc:
            return str(exc)
        return "read?"

    server = serve(router)
    body = form_body(part("f", b"a" * 100000, filename="s"))
    head = (f"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Type: {CT}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        s.sendall(head + body[:50000])
        assert saving.wait(TIMEOUT)
        time.sleep(0.1)  # save() now waits for body bytes, without the GIL
        r = httpx.get(server.url + "/poke", timeout=TIMEOUT)
        assert r.text == "the multipart reader is in use by another thread"
        s.sendall(body[50000:])
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"saved":100000}')
    assert (tmp_path / "slow.bin").read_bytes() == b"a" * 100000


def test_save_failure_leaves_nothing(serve: Any, tmp_path: Path) -> None:
    router = Router()

    @router.post("/bad")
    def bad(request: Request) -> Dict[str, Any]:
        p = next(request.multipart())
        try:
            p.save(tmp_path / "missing" / "x.bin")
        except OSError as exc:
            return {"errno": exc.errno, "rest": p.read().decode()}
        return {}

    server = serve(router)
    r = httpx.post(server.url + "/bad", files={"f": ("x", b"kept")}, timeout=TIMEOUT)
    assert r.json()["errno"] == 2 and r.json()["rest"] == "kept"
    assert list(tmp_path.iterdir()) == []


# ---- errors: the right 4xx, logged at INFO only ----

ERRORS = [
    pytest.param("text/plain", b"a=1", {}, 400, "not multipart/form-data", id="not-multipart"),
    pytest.param("multipart/form-data", b"--x--", {}, 400, "no valid boundary", id="no-boundary"),
    pytest.param("multipart/form-data; boundary=" + "b" * 71, b"", {}, 400, "no valid boundary",
                 id="long-boundary"),
    pytest.param(CT, f"--{B}\r\nContent-Disposition: attachment\r\n\r\nx\r\n--{B}--".encode(), {},
                 400, "malformed", id="not-form-data"),
    pytest.param(CT, f"--{B}\r\nX: y\r\n\r\nx\r\n--{B}--".encode(), {}, 400, "malformed",
                 id="no-disposition"),
    pytest.param(CT, f"--{B}\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--{B}x".encode(),
                 {}, 400, "malformed", id="boundary-prefix"),
    pytest.param(CT, form_body(part("a", b"1"))[:-8], {}, 400, "ended before", id="truncated"),
    pytest.param(CT, form_body(*[part(f"p{i}", b"") for i in range(4)]), {"max_parts": 3}, 413,
                 "more than 3 parts", id="too-many-parts"),
    pytest.param(CT, form_body(part("a", b"", extra="; x=" + "y" * 300)),
                 {"max_part_headers": 256}, 431, "larger than 256", id="headers-too-big"),
]


@pytest.mark.parametrize("ctype, body, limits, status, words", ERRORS)
def test_errors_answer_their_status_without_error_log(serve: Any, mode: str, log: Records,
                                                      ctype: str, body: bytes,
                                                      limits: Dict[str, int], status: int,
                                                      words: str) -> None:
    router = Router()
    router.post("/parts", lambda request: describe(request, **limits), stream=(mode == "stream"))
    server = serve(router)
    r = httpx.post(server.url + "/parts", content=body, headers={"Content-Type": ctype},
                   timeout=TIMEOUT)
    assert r.status_code == status, r.text
    assert words in r.text
    rec = log.wait_for(lambda rec: words in rec.getMessage())
    assert rec is not None and rec.levelno == logging.INFO
    assert log.errors() == []


def test_default_part_limit(serve: Any, log: Records) -> None:
    router = Router()
    router.post("/parts", lambda request: len(describe(request)) and "ok")
    server = serve(router, max_body_len=10 * 1024 * 1024)
    ok = form_body(*[part("p", b"") for _ in range(1000)])
    r = httpx.post(server.url + "/parts", content=ok, headers={"Content-Type": CT}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    over = form_body(*[part("p", b"") for _ in range(1001)])
    r = httpx.post(server.url + "/parts", content=over, headers={"Content-Type": CT},
                   timeout=TIMEOUT)
    assert r.status_code == 413 and "more than 1000 parts" in r.text
    assert log.errors() == []


def test_body_over_route_limit_is_413(serve: Any, log: Records) -> None:
    seen: "queue.Queue[Any]" = queue.Queue()
    router = Router()

    @router.post("/small", stream=True, max_body_len=100000)
    def small(request: Request) -> str:
        try:
            describe(request)
        except Exception as exc:
            seen.put(exc)
            raise
        return "read"

    router.post("/buffered", lambda request: describe(request), max_body_len=100000)
    server = serve(router)
    body = form_body(part("f", b"x" * 300000))
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50000]), body[i:i + 50000])
                       for i in range(0, len(body), 50000)) + b"0\r\n\r\n"
    # A Content-Length over the limit is refused before any handler runs; a chunked body is
    # cut when it crosses the limit, while the streamed handler reads it.
    for path, framing, data in [("/small", "Content-Length: %d" % len(body), body),
                                ("/buffered", "Content-Length: %d" % len(body), body),
                                ("/small", "Transfer-Encoding: chunked", chunked),
                                ("/buffered", "Transfer-Encoding: chunked", chunked)]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
            s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {CT}\r\n"
                       f"{framing}\r\n\r\n").encode())
            try:
                s.sendall(data)
            except OSError:
                pass  # the server answered and closed early
            answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413 "), (path, framing, answer[:100])
    assert isinstance(seen.get(timeout=TIMEOUT), ConnectionClosed)
    assert seen.empty()
    assert log.wait_for(lambda rec: "too large" in rec.getMessage()) is not None
    assert log.errors() == []


def test_handler_may_catch_bad_request(serve: Any, log: Records) -> None:
    router = Router()

    @router.post("/catch")
    def catch(request: Request) -> None:
        try:
            list(request.multipart())
        except BadRequest as exc:
            assert isinstance(exc, ValueError)
            request.respond(422, body=f"{exc.status}: {exc}")

    @router.post("/raise")
    def own(request: Request) -> None:
        raise BadRequest("no thanks", status=409)

    server = serve(router)
    r = httpx.post(server.url + "/catch", content=b"x", headers={"Content-Type": "text/csv"},
                   timeout=TIMEOUT)
    assert r.status_code == 422 and r.text == "400: the request body is not multipart/form-data"
    r = httpx.post(server.url + "/raise", timeout=TIMEOUT)
    assert r.status_code == 409 and r.text == "Conflict: no thanks"
    assert log.errors() == []


def test_error_is_sticky(serve: Any) -> None:
    router = Router()

    @router.post("/sticky")
    def sticky(request: Request) -> List[str]:
        reader = request.multipart()
        p = next(reader)
        out = []
        for call in (p.read, lambda: next(reader), p.read, lambda: next(reader)):
            try:
                out.append(repr(call()))
            except BadRequest as exc:
                out.append(f"{exc.status} {exc}")
        return out

    server = serve(router)
    body = f'--{B}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--{B}!!'.encode()
    r = httpx.post(server.url + "/sticky", content=body, headers={"Content-Type": CT},
                   timeout=TIMEOUT)
    # the part's data ended at the delimiter; what follows the boundary is the error
    assert r.json() == ["b'1'"] + ["400 malformed multipart/form-data body"] * 3


def test_bad_request_class() -> None:
    exc = BadRequest("too big", status=413)
    assert isinstance(exc, ValueError) and exc.status == 413 and str(exc) == "too big"
    assert BadRequest().status == 400 and BadRequest.status == 400
    with pytest.raises(ValueError):
        BadRequest("x", 500)
    import pickle
    assert pickle.loads(pickle.dumps(exc)).status == 413


# ---- form() ----

def form_server(serve: Any, mode: str, **kw: Any) -> str:
    router = Router()

    @router.post("/form", stream=(mode == "stream"), max_body_len=10 * 1024 * 1024)
    def form(request: Request) -> Dict[str, Any]:
        f = request.form(**kw)
        assert isinstance(f, FormData) and request.form(**kw) is f  # cached
        files = []
        for name, up in f.files.items():
            assert isinstance(up, UploadedFile)
            files.append([name, up.filename, up.content_type, up.data.decode("latin-1"), up.size])
        return {"fields": f.items(), "a": f.get("a"), "all": f.getall("a"), "files": files}

    return str(serve(router).url)


def test_form_urlencoded(serve: Any, mode: str) -> None:
    url = form_server(serve, mode)
    body = "a=1&b=two+words&a=%E2%82%AC%26x&empty=&c=caf\u00e9&d=100%25".encode()
    r = httpx.post(url + "/form", content=body,
                   headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                   timeout=TIMEOUT)
    assert r.json() == {
        "fields": [["a", "1"], ["b", "two words"], ["a", "\u20ac&x"], ["empty", ""],
                   ["c", "caf\u00e9"], ["d", "100%"]],
        "a": "1", "all": ["1", "\u20ac&x"], "files": []}
    r = httpx.post(url + "/form", data={"a": ["x", "y"]}, timeout=TIMEOUT)
    assert r.json()["all"] == ["x", "y"]


def test_form_urlencoded_in_pieces(serve: Any, mode: str) -> None:
    url = form_server(serve, mode)

    def pieces() -> Iterator[bytes]:
        for piece in (b"a=1&b=x", b"yz&a=", b"2" * 70000, b"&c=%4", b"1"):
            yield piece
            time.sleep(0.02)  # each piece arrives on its own

    r = httpx.post(url + "/form", content=pieces(),
                   headers={"Content-Type": "application/x-www-form-urlencoded"},
                   timeout=TIMEOUT)
    assert r.json()["fields"] == [["a", "1"], ["b", "xyz"], ["a", "2" * 70000], ["c", "A"]]


def test_form_multipart(serve: Any, mode: str) -> None:
    url = form_server(serve, mode)
    r = httpx.post(url + "/form", data={"a": ["1", "\u00fc"], "b": ""},
                   files=[("up", ("one.txt", b"1", "text/plain")), ("up", ("two.bin", b"22"))],
                   timeout=TIMEOUT)
    j = r.json()
    assert j["fields"] == [["a", "1"], ["a", "\u00fc"], ["b", ""]] and j["a"] == "1"
    assert j["files"] == [["up", "one.txt", "text/plain", "1", 1],
                          ["up", "two.bin", "application/octet-stream", "22", 2]]


def test_form_empty_and_wrong_type(serve: Any, mode: str, log: Records) -> None:
    url = form_server(serve, mode)
    with httpx.Client(base_url=url, timeout=TIMEOUT) as c:
        assert c.post("/form").json()["fields"] == []
        r = c.post("/form", content=b'{"a": 1}', headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "not a form" in r.text
    assert log.errors() == []


def test_form_limits(serve: Any, mode: str, log: Records) -> None:
    url = form_server(serve, mode, max_file_size=10, max_field_size=5)
    with httpx.Client(base_url=url, timeout=TIMEOUT) as c:
        r = c.post("/form", files={"f": ("f", b"x" * 10)}, data={"a": "12345"})
        assert r.status_code == 200
        r = c.post("/form", files={"f": ("f.txt", b"x" * 11)})
        assert r.status_code == 413 and "file 'f.txt' is larger than 10 bytes" in r.text
        r = c.post("/form", data={"a": "123456"}, files={"f": ("f", b"")})
        assert r.status_code == 413 and "field 'a'" in r.text
        r = c.post("/form", data={"a": "123456"})
        assert r.status_code == 413 and "form body" in r.text
    assert log.errors() == []


def test_form_streamed_default_file_limit(serve: Any) -> None:
    url = form_server(serve, "stream")
    router_limit = 1024 * 1024
    with httpx.Client(base_url=url, timeout=TIMEOUT) as c:
        r = c.post("/form", files={"f": ("f", b"x" * router_limit)})
        assert r.status_code == 200 and r.json()["files"][0][4] == router_limit
        r = c.post("/form", files={"f": ("f", b"x" * (router_limit + 1))})
        assert r.status_code == 413
