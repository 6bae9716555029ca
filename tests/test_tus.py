"""tus 1.0.0 resumable uploads (mummyx.tus): the protocol with raw requests for every status it
defines, resuming after a dropped connection and after a restart, concurrent writers, checksums,
expiry, on_complete, flat memory, and the official tuspy client against the server."""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest

from mummyx import Router, Server
from mummyx.testing import running
from mummyx.tus import TusUploads, Upload, parse_metadata

V = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def digest(algo: str, data: bytes) -> str:
    return f"{algo} {b64(hashlib.new(algo, data).digest())}"


def wait_for(cond: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


class Tus:
    """A started server with one TusUploads mounted, and a client for it."""

    def __init__(self, serve: Callable[..., Server], directory: Path, **options: Any) -> None:
        self.directory = directory
        self.completed: List[Upload] = []
        self.threads: List[str] = []

        def on_complete(upload: Upload) -> None:
            self.threads.append(threading.current_thread().name)
            self.completed.append(upload)

        options.setdefault("on_complete", on_complete)
        router = Router()
        self.uploads = TusUploads(directory, **options).mount(router)
        self.server = serve(router)
        self.client = httpx.Client(base_url=self.server.url, timeout=10.0)

    def create(self, length: int, metadata: Optional[str] = None, **headers: str) -> str:
        h = {**V, "Upload-Length": str(length), **headers}
        if metadata is not None:
            h["Upload-Metadata"] = metadata
        r = self.client.post("/files/", headers=h)
        assert r.status_code == 201, r.text
        return str(r.headers["Location"])

    def patch(self, url: str, offset: int, data: Any, **headers: str) -> httpx.Response:
        h = {**V, "Upload-Offset": str(offset), "Content-Type": OCTET, **headers}
        return self.client.patch(url, headers=h, content=data)

    def head(self, url: str) -> httpx.Response:
        return self.client.head(url, headers=V)

    def offset(self, url: str) -> int:
        return int(self.head(url).headers["Upload-Offset"])

    def data(self, url: str) -> bytes:
        return (self.directory / url.rsplit("/", 1)[1]).read_bytes()

    def finished(self, n: int = 1) -> bool:
        """Whether exactly n uploads were completed: on_complete has returned by the time the
        request that completed an upload is answered, so there is nothing to wait for."""
        return len(self.completed) == n

    def files(self) -> List[str]:
        return sorted(os.listdir(self.directory))


@pytest.fixture
def tus(serve: Callable[..., Server], tmp_path: Path) -> Iterator[Callable[..., Tus]]:
    made: List[Tus] = []

    def make(**options: Any) -> Tus:
        t = Tus(serve, tmp_path / f"uploads{len(made)}", **options)
        made.append(t)
        return t

    yield make
    for t in made:
        t.client.close()
        t.uploads.close()


def raw_patch_head(path: str, offset: int, length: int, extra: str = "") -> bytes:
    return (f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: {OCTET}\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return int(data.split(b" ", 2)[1])


# ---- discovery and creation ----

def test_options_advertises_the_server(tus: Callable[..., Tus]) -> None:
    t = tus(max_size=1 << 30)
    for url in ("/files/", "/files", "/files/" + "ab" * 16):
        r = t.client.options(url)  # OPTIONS needs no Tus-Resumable
        assert r.status_code == 204
        assert r.headers["Tus-Resumable"] == "1.0.0"
        assert r.headers["Tus-Version"] == "1.0.0"
        assert r.headers["Tus-Extension"].split(",") == [
            "creation", "creation-with-upload", "termination", "checksum", "expiration"]
        assert r.headers["Tus-Max-Size"] == str(1 << 30)
        assert r.headers["Tus-Checksum-Algorithm"].split(",") == ["sha1", "md5", "sha256"]
    t2 = tus(expire_after=None)
    r = t2.client.options("/files/")
    assert "expiration" not in r.headers["Tus-Extension"] and "Tus-Max-Size" not in r.headers


def test_create_head_patch_complete(tus: Callable[..., Tus]) -> None:
    t = tus()
    meta = f"filename {b64('résumé.pdf'.encode())},is_confidential"
    r = t.client.post("/files/", headers={**V, "Upload-Length": "11", "Upload-Metadata": meta})
    assert r.status_code == 201 and r.headers["Tus-Resumable"] == "1.0.0"
    url = r.headers["Location"]
    assert url.startswith("/files/") and len(url) == len("/files/") + 32
    expires = parsedate_to_datetime(r.headers["Upload-Expires"]).timestamp()
    assert abs(expires - (time.time() + 86400)) < 5
    h = t.head(url)
    assert h.status_code == 200
    assert h.headers["Upload-Offset"] == "0" and h.headers["Upload-Length"] == "11"
    assert h.headers["Upload-Metadata"] == meta  # as the client sent it
    assert h.headers["Cache-Control"] == "no-store" and "Upload-Expires" in h.headers
    r = t.patch(url, 0, b"hello ")
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "6"
    assert "Upload-Expires" in r.headers and r.content == b""
    assert t.offset(url) == 6 and t.completed == []
    r = t.patch(url, 6, b"world")
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "11"
    assert "Upload-Expires" not in r.headers  # a finished upload does not expire
    assert t.data(url) == b"hello world"
    assert t.finished()
    (up,) = t.completed
    assert up.id == url.rsplit("/", 1)[1] and up.path == str(t.directory / up.id)
    assert up.metadata == {"filename": "résumé.pdf", "is_confidential": ""}
    assert up.raw_metadata == meta and up.length == up.offset == 11 and up.complete
    assert up.expires is None
    assert t.threads[0] != "MainThread" and not t.threads[0].startswith("mummyx-tus")
    # an empty PATCH at the end is fine and does not complete it again
    assert t.patch(url, 11, b"").status_code == 204
    h = t.head(url)
    assert h.headers["Upload-Offset"] == "11" and "Upload-Expires" not in h.headers
    assert len(t.completed) == 1
    assert t.uploads.get(up.id) == up


def test_creation_errors(tus: Callable[..., Tus]) -> None:
    t = tus(max_size=1000)

    def post(**h: str) -> httpx.Response:
        return t.client.post("/files/", headers={**V, **h})

    assert post().status_code == 400  # no Upload-Length
    for bad in ("-1", "abc", "1.5", "", "9" * 30):
        assert post(**{"Upload-Length": bad}).status_code == 400, bad
    assert post(**{"Upload-Defer-Length": "1"}).status_code == 400  # not supported
    assert post(**{"Upload-Length": "1001"}).status_code == 413
    assert post(**{"Upload-Length": "1000"}).status_code == 201
    for meta in ("k not-base64!", "k YQ==,k YQ==", ",k YQ==", "a YQ==,,b YQ=="):
        assert post(**{"Upload-Length": "1", "Upload-Metadata": meta}).status_code == 400, meta
    assert post(**{"Upload-Length": "1", "Upload-Metadata": ""}).status_code == 201
    # a body without the tus content type is refused
    r = t.client.post("/files/", headers={**V, "Upload-Length": "3"}, content=b"abc")
    assert r.status_code == 415
    assert len([f for f in t.files() if f.endswith(".info")]) == 2


def test_empty_upload_completes_at_creation(tus: Callable[..., Tus]) -> None:
    t = tus()
    url = t.create(0, f"name {b64(b'empty')}")
    assert t.finished()
    assert t.completed[0].metadata == {"name": "empty"} and t.data(url) == b""
    assert t.offset(url) == 0 and t.patch(url, 0, b"").status_code == 204
    assert t.patch(url, 0, b"x").status_code == 413
    assert len(t.completed) == 1


def test_creation_with_upload(tus: Callable[..., Tus]) -> None:
    t = tus()
    h = {**V, "Content-Type": OCTET}
    r = t.client.post("/files/", headers={**h, "Upload-Length": "10"}, content=b"01234")
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "5"
    url = r.headers["Location"]
    assert t.patch(url, 5, b"56789").status_code == 204 and t.data(url) == b"0123456789"
    # the whole upload in the POST
    r = t.client.post("/files/", headers={**h, "Upload-Length": "3",
                                          "Upload-Checksum": digest("sha256", b"abc")},
                      content=b"abc")
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "3"
    assert "Upload-Expires" not in r.headers
    assert t.finished(2)
    # a bad checksum: the upload exists (Location) but holds nothing
    r = t.client.post("/files/", headers={**h, "Upload-Length": "3",
                                          "Upload-Checksum": digest("sha1", b"abd")},
                      content=b"abc")
    assert r.status_code == 460 and r.headers["Upload-Offset"] == "0"
    assert t.offset(r.headers["Location"]) == 0
    # more data than Upload-Length
    r = t.client.post("/files/", headers={**h, "Upload-Length": "2"}, content=b"abc")
    assert r.status_code == 413


# ---- statuses ----

def test_tus_resumable_is_required(tus: Callable[..., Tus]) -> None:
    t = tus()
    url = t.create(4)
    for version in (None, "0.2.2", "1.0"):
        h = {} if version is None else {"Tus-Resumable": version}
        for r in (t.client.post("/files/", headers={**h, "Upload-Length": "4"}),
                  t.client.head(url, headers=h),
                  t.client.patch(url, headers={**h, "Upload-Offset": "0", "Content-Type": OCTET},
                                 content=b"abcd"),
                  t.client.delete(url, headers=h)):
            assert r.status_code == 412, (version, r.request.method)
            assert r.headers["Tus-Version"] == "1.0.0"
            assert r.headers["Tus-Resumable"] == "1.0.0"
    assert t.offset(url) == 0 and len([f for f in t.files() if f.endswith(".info")]) == 1


def test_patch_errors(tus: Callable[..., Tus]) -> None:
    t = tus()
    url = t.create(10)
    assert t.patch(url, 0, b"abc", **{"Content-Type": "application/octet-stream"}).status_code == 415
    r = t.client.patch(url, headers={**V, "Upload-Offset": "0"}, content=b"abc")
    assert r.status_code == 415
    r = t.client.patch(url, headers={**V, "Content-Type": OCTET}, content=b"abc")
    assert r.status_code == 400  # no Upload-Offset
    for bad in ("-1", "x", "1e3"):
        assert t.patch(url, 0, b"abc", **{"Upload-Offset": bad}).status_code == 400
    assert t.patch(url, 1, b"abc").status_code == 409
    assert t.patch(url, 0, b"abcdefghijk").status_code == 413  # past Upload-Length
    assert t.patch(url, 0, b"abc", **{"Upload-Checksum": "crc32 AAAAAA=="}).status_code == 400
    assert t.patch(url, 0, b"abc", **{"Upload-Checksum": "sha1 !!!"}).status_code == 400
    assert t.patch(url, 0, b"abc", **{"Upload-Checksum": "sha1 " + b64(b"short")}).status_code == 400
    # a chunked body that goes past Upload-Length is refused and nothing of it is kept
    r = t.patch(url, 0, iter([b"abcdef", b"ghijkl"]))
    assert r.status_code == 413
    assert t.offset(url) == 0 and t.data(url) == b""
    assert t.patch(url, 0, iter([b"abc", b"def"])).status_code == 204  # chunked, fits
    assert t.offset(url) == 6 and t.data(url) == b"abcdef"
    # unknown and malformed ids, including path traversal attempts
    for bad in ("0" * 32, "AB" * 16, "..%2F..%2Fetc%2Fpasswd", "..", "%2E%2E", "x"):
        u = "/files/" + bad
        assert t.head(u).status_code == 404, bad
        assert t.patch(u, 0, b"a").status_code == 404, bad
        assert t.client.delete(u, headers=V).status_code == 404, bad
    assert t.client.get(url).status_code == 405


def test_termination(tus: Callable[..., Tus]) -> None:
    t = tus()
    url = t.create(10)
    assert t.patch(url, 0, b"abc").status_code == 204
    assert len(t.files()) == 3
    r = t.client.delete(url, headers=V)
    assert r.status_code == 204 and r.headers["Tus-Resumable"] == "1.0.0"
    assert t.files() == []
    assert t.head(url).status_code == 404
    assert t.patch(url, 3, b"def").status_code == 404
    assert t.client.delete(url, headers=V).status_code == 404
    # a finished upload can be terminated too, also after on_complete moved its file away
    url = t.create(2)
    assert t.patch(url, 0, b"ok").status_code == 204
    assert t.finished()
    os.rename(t.completed[0].path, t.directory.parent / "moved")
    assert t.offset(url) == 2
    assert t.client.delete(url, headers=V).status_code == 204 and t.files() == []


def test_method_override(tus: Callable[..., Tus]) -> None:
    t = tus()
    url = t.create(4)
    h = {**V, "Content-Type": OCTET, "Upload-Offset": "0"}
    r = t.client.post(url, headers={**h, "X-HTTP-Method-Override": "PATCH"}, content=b"data")
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "4"
    assert t.client.post(url, headers=V).status_code == 405
    assert t.client.post(url, headers={**V, "X-HTTP-Method-Override": "DELETE"}).status_code == 204
    assert t.head(url).status_code == 404


# ---- checksums ----

@pytest.mark.parametrize("algo", ["sha1", "md5", "sha256"])
def test_checksum(tus: Callable[..., Tus], algo: str) -> None:
    t = tus()
    url = t.create(8)
    assert t.patch(url, 0, b"abcd", **{"Upload-Checksum": digest(algo, b"abcd")}).status_code == 204
    r = t.patch(url, 4, b"efgh", **{"Upload-Checksum": digest(algo, b"efgX")})
    assert r.status_code == 460
    assert t.offset(url) == 4 and t.data(url) == b"abcd"  # the chunk was discarded
    # a chunked body, the algorithm's name in capitals
    name, value = digest(algo, b"efgh").split(" ")
    r = t.patch(url, 4, iter([b"ef", b"gh"]), **{"Upload-Checksum": f"{name.upper()} {value}"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "8"
    assert t.data(url) == b"abcdefgh"


# ---- resuming ----

def left_at(caplog: pytest.LogCaptureFixture, offset: int) -> bool:
    """Whether the server logged (INFO) that a client left mid-body with the upload at offset."""
    return any(f"is at offset {offset}" in r.getMessage() for r in caplog.records)


def test_resume_after_dropped_connection(tus: Callable[..., Tus],
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mummyx")
    t = tus()
    data = os.urandom(300_000)
    url = t.create(len(data))
    with socket.create_connection(("127.0.0.1", t.server.port)) as s:
        s.sendall(raw_patch_head(url, 0, len(data)) + data[:123_456])
    # what arrived before the connection dropped is kept (no checksum was asked for)
    assert wait_for(lambda: left_at(caplog, 123_456))
    assert t.offset(url) == 123_456
    assert t.patch(url, 0, b"").status_code == 409
    r = t.patch(url, 123_456, data[123_456:])
    assert r.status_code == 204 and t.data(url) == data
    assert t.finished(1)


def test_dropped_connection_with_checksum_keeps_nothing(tus: Callable[..., Tus],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mummyx")
    t = tus()
    data = os.urandom(200_000)
    url = t.create(len(data))
    extra = f"Upload-Checksum: {digest('sha1', data)}\r\n"
    with socket.create_connection(("127.0.0.1", t.server.port)) as s:
        s.sendall(raw_patch_head(url, 0, len(data), extra) + data[:100_000])
    # the part cannot be verified: it is dropped
    assert wait_for(lambda: left_at(caplog, 0))
    assert t.offset(url) == 0 and t.data(url) == b""
    assert "write" not in json.loads((t.directory / (url[-32:] + ".info")).read_text())
    r = t.patch(url, 0, data, **{"Upload-Checksum": digest("sha1", data)})
    assert r.status_code == 204 and t.data(url) == data


def test_resume_after_restart(tmp_path: Path) -> None:
    directory = tmp_path / "up"
    data = os.urandom(100_000)
    done: List[Upload] = []
    router = Router()
    first = TusUploads(directory, on_complete=done.append).mount(router)
    with running(router, workers=4) as server, httpx.Client(base_url=server.url) as c:
        url = c.post("/files/", headers={**V, "Upload-Length": str(len(data)),
                                         "Upload-Metadata": f"n {b64(b'x')}"}).headers["Location"]
        r = c.patch(url, headers={**V, "Upload-Offset": "0", "Content-Type": OCTET},
                    content=data[:40_000])
        assert r.status_code == 204
    first.close()
    # a new server process (here: a new Server and TusUploads) on the same directory
    router = Router()
    second = TusUploads(directory, on_complete=done.append).mount(router)
    try:
        with running(router, workers=4) as server, httpx.Client(base_url=server.url) as c:
            h = c.head(url, headers=V)
            assert h.status_code == 200 and h.headers["Upload-Offset"] == "40000"
            assert h.headers["Upload-Metadata"] == f"n {b64(b'x')}"
            r = c.patch(url, headers={**V, "Upload-Offset": "40000", "Content-Type": OCTET},
                        content=data[40_000:])
            assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
            assert len(done) == 1  # before the answer
    finally:
        second.close()
    assert len(done) == 1 and Path(done[0].path).read_bytes() == data
    assert done[0].metadata == {"n": "x"}


def test_crash_during_a_write_is_settled(tus: Callable[..., Tus]) -> None:
    """A process that died mid-PATCH leaves a "write" record; the next request settles it."""
    t = tus()
    url = t.create(10)
    uid = url[-32:]
    info_path = t.directory / (uid + ".info")
    # as if the server died after writing 6 bytes of an unverified PATCH
    info = json.loads(info_path.read_text())
    info["write"] = {"start": 0, "verify": False}
    info_path.write_text(json.dumps(info))
    (t.directory / uid).write_bytes(b"abcdef")
    assert t.offset(url) == 6 and "write" not in json.loads(info_path.read_text())
    # ... and after 3 bytes of a verified one: undone
    info = json.loads(info_path.read_text())
    info["write"] = {"start": 6, "verify": True}
    info_path.write_text(json.dumps(info))
    (t.directory / uid).write_bytes(b"abcdefXYZ")
    assert t.offset(url) == 6 and t.data(url) == b"abcdef"
    # ... and the data lost part of what was committed (a power loss: no fsync): the offset
    # goes back instead of zeros filling the gap
    os.truncate(t.directory / uid, 4)
    assert t.patch(url, 6, b"ghij").status_code == 409
    assert t.offset(url) == 4
    assert t.patch(url, 4, b"efghij").status_code == 204
    assert t.data(url) == b"abcdefghij" and t.finished(1)
    # as if the process died while on_complete ran: the sweeper runs it again
    info = json.loads(info_path.read_text())
    info["notified"] = False
    info_path.write_text(json.dumps(info))
    assert t.uploads.sweep() == 0 and t.finished(2)
    assert json.loads(info_path.read_text())["notified"] and t.uploads.sweep() == 0
    assert t.finished(2)


def test_lock_is_shared_with_other_processes(tus: Callable[..., Tus]) -> None:
    """Two server processes on one directory: the flock excludes writers across processes."""
    t = tus()
    url = t.create(4)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1]); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(t.directory / (url[-32:] + ".lock"))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert t.patch(url, 0, b"abcd").status_code == 423
        assert t.client.delete(url, headers=V).status_code == 423
        assert t.head(url).status_code == 200  # reading needs no lock
    finally:
        holder.communicate("", timeout=10)
    assert t.patch(url, 0, b"abcd").status_code == 204 and t.finished(1)


# ---- concurrency ----

def test_concurrent_patch_gets_423_then_409(tus: Callable[..., Tus]) -> None:
    t = tus()
    data = os.urandom(200_000)
    url = t.create(len(data))
    with socket.create_connection(("127.0.0.1", t.server.port), timeout=10) as s:
        s.sendall(raw_patch_head(url, 0, len(data)) + data[:50_000])
        # while the first PATCH is in progress (it records that it writes), others are locked out
        info = t.directory / (url[-32:] + ".info")
        assert wait_for(lambda: "write" in json.loads(info.read_text()))
        assert t.patch(url, 0, b"").status_code == 423
        assert t.patch(url, 0, data).status_code == 423
        assert t.client.delete(url, headers=V).status_code == 423
        s.sendall(data[50_000:])
        assert read_status(s) == 204
    assert t.patch(url, 0, data).status_code == 409
    assert t.data(url) == data and t.offset(url) == len(data)


def test_racing_writers_never_corrupt(tus: Callable[..., Tus]) -> None:
    t = tus()
    size = 512 * 1024
    url = t.create(size)
    n = 8
    barrier = threading.Barrier(n)
    results: Dict[int, Any] = {}

    def writer(i: int) -> None:
        with httpx.Client(base_url=t.server.url, timeout=10) as c:
            barrier.wait()
            try:
                r = c.patch(url, headers={**V, "Upload-Offset": "0", "Content-Type": OCTET},
                            content=bytes([i]) * size)
                results[i] = r.status_code
            except httpx.TransportError as e:  # refused early while still sending
                results[i] = e

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    winners = [i for i, st in results.items() if st == 204]
    assert len(winners) == 1, results
    assert all(st in (204, 409, 423) or isinstance(st, Exception) for st in results.values())
    assert sum(st in (409, 423) for st in results.values()) >= n // 2, results
    assert t.data(url) == bytes([winners[0]]) * size
    assert t.finished(1)


# ---- expiration ----

def test_expired_uploads_are_swept(tus: Callable[..., Tus]) -> None:
    t = tus(expire_after=0.4, sweep_interval=0.1)
    url = t.create(10)
    assert t.patch(url, 0, b"abc").status_code == 204
    done = t.create(2)
    assert t.patch(done, 0, b"ok").status_code == 204
    assert wait_for(lambda: t.head(url).status_code == 404, 5.0)
    assert t.files() == sorted([done[-32:], done[-32:] + ".info", done[-32:] + ".lock"])
    time.sleep(0.5)
    assert t.head(done).status_code == 200  # finished uploads do not expire


def test_expired_upload_on_access(tus: Callable[..., Tus]) -> None:
    t = tus(expire_after=1.0, sweep_interval=3600)
    url = t.create(10)
    time.sleep(0.6)
    r = t.patch(url, 0, b"a")  # data moves the expiry forward
    assert r.status_code == 204
    assert parsedate_to_datetime(r.headers["Upload-Expires"]).timestamp() > time.time() - 1
    time.sleep(0.6)
    assert t.head(url).status_code == 200
    time.sleep(0.6)
    assert t.patch(url, 1, b"b").status_code == 410
    assert t.files() == [] and t.head(url).status_code == 404
    url = t.create(10)
    time.sleep(1.1)
    assert t.head(url).status_code == 410 and t.uploads.sweep() == 0
    url = t.create(10)
    time.sleep(1.1)
    assert t.uploads.get(url[-32:]) is None
    assert t.uploads.sweep() == 1 and t.files() == []


# ---- on_complete, memory, API ----

def test_on_complete_error_is_logged_once(tus: Callable[..., Tus],
                                          caplog: pytest.LogCaptureFixture) -> None:
    calls: List[str] = []

    def boom(upload: Upload) -> None:
        calls.append(upload.id)
        raise RuntimeError("boom")

    t = tus(on_complete=boom)
    url = t.create(1)
    assert t.patch(url, 0, b"x").status_code == 204
    assert any("on_complete raised" in r.message for r in caplog.records)
    t.uploads.sweep()
    assert calls == [url[-32:]] and t.offset(url) == 1


def test_large_upload_streams_with_flat_memory(tus: Callable[..., Tus]) -> None:
    t = tus()
    size = 48 * 1024 * 1024
    url = t.create(size)
    piece = os.urandom(256 * 1024)
    tracemalloc.start()
    try:
        r = t.patch(url, 0, (piece for _ in range(size // len(piece))))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(size)
    assert peak < 4 * 1024 * 1024, peak  # Python-side: a few 64 KiB pieces, not the body
    assert (t.directory / url[-32:]).stat().st_size == size


def test_api(tus: Callable[..., Tus], tmp_path: Path) -> None:
    assert parse_metadata("a YQ==, b ,c") == {"a": b"a", "b": b"", "c": b""}
    with pytest.raises(ValueError):
        parse_metadata("a YQ==,a YQ==")
    for bad in ("files", "/files/@id/", "/a*b/"):
        with pytest.raises(ValueError):
            TusUploads(tmp_path / "x", prefix=bad)
    t = tus(prefix="/api/uploads")
    r = t.client.post("/api/uploads", headers={**V, "Upload-Length": "3"})
    url = r.headers["Location"]
    assert r.status_code == 201 and url.startswith("/api/uploads/")
    up = t.uploads.get(url[-32:])
    assert up is not None and up.offset == 0 and not up.complete and up.expires is not None
    assert t.uploads.get("../etc") is None and not t.uploads.remove("nope")
    assert t.uploads.remove(url[-32:]) and t.files() == []


# ---- the official client ----

def test_tuspy_client_uploads_a_large_file_in_chunks(tus: Callable[..., Tus],
                                                     tmp_path: Path) -> None:
    client_mod = pytest.importorskip("tusclient.client")
    t = tus()
    src = tmp_path / "big.bin"
    data = os.urandom(20 * 1024 * 1024)
    src.write_bytes(data)
    client = client_mod.TusClient(t.server.url + "/files/")
    first = client.uploader(str(src), chunk_size=1024 * 1024, upload_checksum=True,
                            metadata={"filename": "big.bin", "filetype": "application/x-test"})
    first.upload(stop_at=7 * 1024 * 1024)  # stop part way, as an interrupted client would
    assert first.url is not None and t.offset(first.url) == 7 * 1024 * 1024
    resumed = client.uploader(str(src), url=first.url, chunk_size=1024 * 1024,
                              upload_checksum=True)
    assert resumed.offset == 7 * 1024 * 1024  # asked the server with HEAD
    resumed.upload()
    assert t.finished()
    (up,) = t.completed
    assert up.metadata == {"filename": "big.bin", "filetype": "application/x-test"}
    assert hashlib.sha256(Path(up.path).read_bytes()).digest() == hashlib.sha256(data).digest()
